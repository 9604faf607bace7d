/* test_authres.c: table tests for the Authentication-Results builder and for the
 * recognition and removal of fields that claim our authserv-id (core/authres.c). */
#include "core/compat.h"

#include "core/core.h"

#include "check.h"

static const struct {
    const char *value;
    int claims; /* for "mx.example.net" */
} claims_cases[] = {
    {" mx.example.net; spf=pass smtp.mailfrom=a@b", 1},
    {"mx.example.net;none", 1},
    {" MX.Example.NET; dkim=pass", 1},
    {" mx.example.net 1; spf=pass", 1}, /* with a version */
    {" (comment) mx.example.net; none", 1},
    {" (nested (comment) \\) ) mx.example.net; none", 1},
    {"\r\n\tmx.example.net;\r\n\tspf=pass", 1}, /* folded before the id */
    {" \"mx.example.net\"; dmarc=pass", 1},
    {" \"mx.exa\\mple.net\"; dmarc=pass", 1}, /* quoted-pair */
    {" mx.example.net.evil; spf=pass", 0},
    {" evil.mx.example.net; spf=pass", 0},
    {" other.example; spf=pass smtp.mailfrom=mx.example.net", 0},
    {" mx.example.ne; spf=pass", 0},
    {"", 0},
    {"   ", 0},
    {" (unclosed mx.example.net; none", 0},
    {" \"mx.example.net; none", 0}, /* unclosed quote */
    {" ; spf=pass", 0},
};

static void test_claims(void)
{
    for (size_t i = 0; i < sizeof claims_cases / sizeof claims_cases[0]; i++) {
        const char *v = claims_cases[i].value;
        CHECK(authres_claims(v, strlen(v), "mx.example.net") == claims_cases[i].claims,
              "case %zu: %s", i, v);
    }
}

static const struct {
    const char *in, *out;
    size_t removed;
} strip_cases[] = {
    {"Authentication-Results: mx.example.net; spf=pass\r\nSubject: x\r\n\r\nbody\r\n",
     "Subject: x\r\n\r\nbody\r\n", 1},
    {"Subject: x\r\nAuthentication-Results: mx.example.net;\r\n\tspf=pass\r\n\tdkim=pass\r\n"
     "To: a@b\r\n\r\n",
     "Subject: x\r\nTo: a@b\r\n\r\n", 1},
    {"Authentication-Results: other.example; spf=pass\r\n"
     "authentication-results: MX.example.net; none\r\n"
     "Authentication-Results: \"mx.example.net\"; none\r\n\r\n",
     "Authentication-Results: other.example; spf=pass\r\n\r\n", 2},
    /* after the end of the header section nothing is touched */
    {"Subject: x\r\n\r\nAuthentication-Results: mx.example.net; none\r\n",
     "Subject: x\r\n\r\nAuthentication-Results: mx.example.net; none\r\n", 0},
    /* LF-only line ends, a malformed line kept */
    {"bad line\nAuthentication-Results: mx.example.net; none\nX: y\n", "bad line\nX: y\n", 1},
    /* the last field without a line end */
    {"X: y\r\nAuthentication-Results: mx.example.net; none", "X: y\r\n", 1},
    {"", "", 0},
};

static void test_strip(void)
{
    for (size_t i = 0; i < sizeof strip_cases / sizeof strip_cases[0]; i++) {
        char *h = xstrdup(strip_cases[i].in);
        size_t removed = 99;
        size_t n = authres_strip(h, strlen(h), "mx.example.net", &removed);
        CHECK(n == strlen(strip_cases[i].out) && memcmp(h, strip_cases[i].out, n) == 0,
              "case %zu: got %.*s", i, (int)n, h);
        CHECK(removed == strip_cases[i].removed, "case %zu: removed %zu", i, removed);
        free(h);
    }
}

static void test_builder(void)
{
    struct authres a;
    struct buf out;
    authres_init(&a, "mx.example.net");
    buf_init(&out, 0);
    authres_header(&a, &out);
    CHECK(strcmp(out.data, "Authentication-Results: mx.example.net; none\r\n") == 0, "%s",
          out.data);
    buf_reset(&out);
    authres_prop(&a, "smtp", "mailfrom", "ignored@before.result"); /* no result yet */
    authres_add(&a, "spf", "fail", "a (b) \\c\r\nd\x80");
    authres_prop(&a, "smtp", "mailfrom", "alice@example.com");
    authres_add(&a, "spf", "pass", NULL);
    authres_prop(&a, "smtp", "helo", "bad helo; \"x\"\r\n");
    authres_add(&a, "iprev", "pass", "");
    authres_prop(&a, "policy", "iprev", "2001:db8::1");
    authres_header(&a, &out);
    const char *want = "Authentication-Results: mx.example.net;\r\n"
                       "\tspf=fail (a \\(b\\) \\\\cd?) smtp.mailfrom=alice@example.com;\r\n"
                       "\tspf=pass smtp.helo=\"bad helo; \\\"x\\\"\";\r\n"
                       "\tiprev=pass policy.iprev=\"2001:db8::1\"\r\n";
    CHECK(strcmp(out.data, want) == 0, "%s", out.data);
    /* a field we write is one that we would remove */
    const char *colon = strchr(out.data, ':');
    CHECK(authres_claims(colon + 1, out.len - (size_t)(colon + 1 - out.data), "mx.example.net"),
          "own field");
    buf_release(&out);
    authres_release(&a);
    authres_release(NULL);
}

/* 1 when every line of the field in b (CRLF-ended) is at most 998 bytes and none is
 * only white space (RFC 5322 2.1.1, 3.2.2). */
static int lines_ok(const struct buf *b)
{
    size_t s = 0;
    for (size_t i = 0; i + 1 < b->len; i++) {
        if (b->data[i] != '\r' || b->data[i + 1] != '\n') continue;
        if (i - s > 998) return 0;
        size_t k = s;
        while (k < i && (b->data[k] == ' ' || b->data[k] == '\t'))
            k++;
        if (k == i) return 0;
        s = i + 2;
    }
    return 1;
}

/* b without white space, line ends and empty comments "()". */
static char *squeeze(const struct buf *b, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < b->len && o + 1 < size; i++) {
        char c = b->data[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
        if (c == ')' && o > 0 && out[o - 1] == '(') {
            o--;
            continue;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
}

/* The field padded to its room (written early, filled in at the commit). */
static void test_room(void)
{
    struct authres a;
    authres_init(&a, "mx.example.net");
    authres_add(&a, "spf", "pass", NULL);
    authres_prop(&a, "smtp", "mailfrom", "a@example.com");
    struct buf b, plain;
    buf_init(&b, 0);
    buf_init(&plain, 0);
    authres_header(&a, &plain);
    static const size_t rooms[] = {0, 1, 2, 3, 4, 5, 6, 7, 300, 1500, 5000};
    for (size_t i = 0; i < sizeof rooms / sizeof rooms[0]; i++) {
        size_t room = plain.len + rooms[i];
        buf_reset(&b);
        CHECK(authres_header_room(&a, room, &b) == 0 && b.len == room, "room +%zu: %zu", rooms[i],
              b.len);
        CHECK(lines_ok(&b), "room +%zu: lines", rooms[i]);
        char x[8000], y[8000];
        CHECK(memcmp(b.data + b.len - 2, "\r\n", 2) == 0 &&
                  strcmp(squeeze(&b, x, sizeof x), squeeze(&plain, y, sizeof y)) == 0,
              "room +%zu: the same field: %s", rooms[i], x);
    }
    /* too small: without the comments, else nothing */
    authres_add(&a, "dkim", "fail", "body hash did not verify (l=)");
    authres_prop(&a, "header", "d", "a \"(b)\"");
    buf_reset(&plain);
    authres_header(&a, &plain);
    buf_reset(&b);
    CHECK(authres_header_room(&a, plain.len - 10, &b) == 0 && b.len == plain.len - 10, "shorter");
    buf_append(&b, "", 1);
    CHECK(strstr(b.data, "dkim=fail header.d=\"a \\\"(b)\\\"\"") && !strstr(b.data, "verify"),
          "comments dropped: %s", b.data);
    buf_reset(&b);
    CHECK(authres_header_room(&a, 40, &b) == -1 && b.len == 0, "does not fit");
    buf_release(&b);
    buf_release(&plain);
    authres_release(&a);
}

int main(void)
{
    test_room();
    test_claims();
    test_strip();
    test_builder();
    return check_summary();
}
