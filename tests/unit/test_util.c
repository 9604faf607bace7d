/* test_util.c: ip_parse() for IP literals, and err_set(), the formatter behind every
 * (err, errsize) pair, path_relative(), strict base64 (RFC 4648 vectors, padding
 * and alphabet errors, long inputs), time_iso8601() and the string list (strs). */
#include "core/compat.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "check.h"
#include "core/core.h"

static void test_ip_parse(void)
{
    static const struct {
        const char *in;
        int family; /* 0: not an IP literal */
    } cases[] = {
        {"192.0.2.1", AF_INET},
        {"127.0.0.5", AF_INET},
        {"2001:db8::1", AF_INET6},
        {"::1", AF_INET6},
        {"::ffff:192.0.2.1", AF_INET6},
        {"", 0},
        {"192.0.2", 0},
        {"192.0.2.256", 0},
        {"[2001:db8::1]", 0},
        {"mx.example.org", 0},
        {"192.0.2.1:25", 0},
        {" 192.0.2.1", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0xAA, sizeof ss);
        socklen_t len = 7;
        int r = ip_parse(cases[i].in, &ss, &len);
        if (!cases[i].family) {
            CHECK(r == -1, "\"%s\": got %d, want -1", cases[i].in, r);
            CHECK(len == 7, "\"%s\": len changed to %u", cases[i].in, (unsigned)len);
            continue;
        }
        CHECK(r == 0, "\"%s\": got %d, want 0", cases[i].in, r);
        CHECK(ss.ss_family == cases[i].family, "\"%s\": family %d", cases[i].in, ss.ss_family);
        char back[INET6_ADDRSTRLEN] = "";
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *v4 = (const struct sockaddr_in *)&ss;
            CHECK(len == sizeof *v4 && v4->sin_port == 0, "\"%s\": len %u port %u", cases[i].in,
                  (unsigned)len, v4->sin_port);
            inet_ntop(AF_INET, &v4->sin_addr, back, sizeof back);
        } else {
            const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&ss;
            CHECK(len == sizeof *v6 && v6->sin6_port == 0 && v6->sin6_flowinfo == 0 &&
                      v6->sin6_scope_id == 0,
                  "\"%s\": len %u, not zeroed", cases[i].in, (unsigned)len);
            inet_ntop(AF_INET6, &v6->sin6_addr, back, sizeof back);
        }
        CHECK(strcmp(back, cases[i].in) == 0, "\"%s\": reads back as \"%s\"", cases[i].in, back);
    }
    /* len is optional */
    struct sockaddr_storage ss;
    CHECK(ip_parse("192.0.2.1", &ss, NULL) == 0, "NULL len refused");
}

/* The way from kurierd's working folder (its state_dir) to every configured path. */
static void test_path_relative(void)
{
    static const struct {
        const char *base, *path, *want;
    } cases[] = {
        {"/a/b/var", "/a/b/var/spool", "spool"},
        {"/a/b/var", "/a/b/var", "."},
        {"/a/b/var", "/a/b/etc/k.conf", "../etc/k.conf"},
        {"/a/b/var", "/a/b", ".."},
        {"/a/b/var", "/a", "../.."},
        {"/a/b/var", "/a/bc/x", "../../bc/x"},
        {"/a/b/var", "/a/b/variant/x", "../variant/x"},
        {"/a/b/var", "/etc/k.conf", "/etc/k.conf"}, /* only "/" in common */
        {"/", "/x", "/x"},
        {"/a/b", "/a/b/c/d", "c/d"},
        {"/root/kurier/var", "/root/kurier/var/tls/*.pem", "tls/*.pem"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *r = path_relative(cases[i].base, cases[i].path);
        CHECK(strcmp(r, cases[i].want) == 0, "(%s, %s): got \"%s\", want \"%s\"", cases[i].base,
              cases[i].path, r, cases[i].want);
        free(r);
    }
}

/* A list of strings grows past its first array, keeps them in order, and is empty
 * and usable again after strs_free (ASan: every string freed). */
static void test_strs(void)
{
    struct strs l = {0};
    char want[32];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 100; i++) {
            snprintf(want, sizeof want, "s%d", i);
            strs_add(&l, xstrdup(want));
        }
        CHECK(l.n == 100, "round %d: %zu strings", round, l.n);
        for (size_t i = 0; i < l.n; i++) {
            snprintf(want, sizeof want, "s%zu", i);
            CHECK(strcmp(l.v[i], want) == 0, "round %d: [%zu] = %s", round, i, l.v[i]);
        }
        strs_free(&l);
        CHECK(l.n == 0 && l.cap == 0 && !l.v, "round %d: not empty after strs_free", round);
    }
}

/* base64 decode cases; plain == NULL means "must fail". plen for binary output. */
struct dec_case {
    const char *in;
    const char *plain;
    size_t plen;
};

static const struct dec_case dec_cases[] = {
    /* RFC 4648 10 test vectors */
    {"", "", 0},
    {"Zg==", "f", 1},
    {"Zm8=", "fo", 2},
    {"Zm9v", "foo", 3},
    {"Zm9vYg==", "foob", 4},
    {"Zm9vYmE=", "fooba", 5},
    {"Zm9vYmFy", "foobar", 6},
    /* RFC 4954 4: "=" is an empty response */
    {"=", "", 0},
    /* RFC 4616 4 examples */
    {"AHRpbQB0YW5zdGFhZnRhbnN0YWFm", "\0tim\0tanstaaftanstaaf", 21},
    {"QWRtaW4AdGltAHRhbnN0YWFmdGFuc3RhYWY=", "Admin\0tim\0tanstaaftanstaaf", 26},
    /* binary, all alphabet characters */
    {"+/+/", "\xfb\xff\xbf", 3},
    {"AAAA", "\0\0\0", 3},
    {"////", "\xff\xff\xff", 3},
    /* bad length */
    {"Z", NULL, 0},
    {"Zg", NULL, 0},
    {"Zg=", NULL, 0},
    {"Zm9vY", NULL, 0},
    /* bad padding */
    {"==", NULL, 0},
    {"====", NULL, 0},
    {"Z===", NULL, 0},
    {"Zg=a", NULL, 0},
    {"Z=g=", NULL, 0},
    {"Zg==Zg==", NULL, 0}, /* padding in the middle */
    {"Zm9=Zm9v", NULL, 0},
    {"=Zm9", NULL, 0},
    /* non-zero unused bits (RFC 4648 3.5) */
    {"Zh==", NULL, 0},
    {"Zm9=", NULL, 0},
    {"Zm+=", NULL, 0},
    /* bad characters */
    {"Zm9v\r\n", NULL, 0},
    {"Zm 9", NULL, 0},
    {"Zm9v Zm9v", NULL, 0},
    {"Zm-_", NULL, 0}, /* base64url alphabet */
    {"Zm9\x80", NULL, 0},
    {"Zm9.", NULL, 0},
    {"*", NULL, 0},
    /* what OpenSSL's EVP_DecodeBlock alone would let through */
    {"    Zm9v", NULL, 0},     /* leading white space */
    {"Zm9v\r\n\r\n", NULL, 0}, /* trailing line ends */
    {"Zm9v----", NULL, 0},     /* trailing '-' */
    {"Zm9v    ", NULL, 0},     /* trailing white space */
    {"Zm=v", NULL, 0},         /* '=' read as zero bits */
    {"Zm9vZ=9v", NULL, 0},
};

static void test_base64_decode(void)
{
    for (size_t i = 0; i < sizeof dec_cases / sizeof dec_cases[0]; i++) {
        const struct dec_case *c = &dec_cases[i];
        unsigned char out[128];
        size_t outlen = 99;
        memset(out, 'x', sizeof out);
        int r = base64_decode(c->in, strlen(c->in), out, sizeof out, &outlen);
        if (!c->plain) {
            CHECK(r == -1, "decode \"%s\": expected failure, got %d", c->in, r);
            continue;
        }
        CHECK(r == 0, "decode \"%s\": failed", c->in);
        if (r != 0) continue;
        CHECK(outlen == c->plen, "decode \"%s\": length %zu, want %zu", c->in, outlen, c->plen);
        CHECK(outlen == c->plen && memcmp(out, c->plain, c->plen) == 0,
              "decode \"%s\": wrong bytes", c->in);
        CHECK(out[outlen] == '\0', "decode \"%s\": not NUL-terminated", c->in);
        /* encode gives the same text back (except the special "=") */
        if (strcmp(c->in, "=") != 0) {
            char enc[128];
            size_t enclen = 0;
            int e = base64_encode(out, outlen, enc, sizeof enc, &enclen);
            CHECK(e == 0 && enclen == strlen(c->in) && strcmp(enc, c->in) == 0,
                  "encode round trip of \"%s\": got \"%s\"", c->in, e == 0 ? enc : "(fail)");
        }
    }
}

/* Output buffer sizes: exact fits, and one byte too small. */
static void test_base64_sizes(void)
{
    unsigned char out[8];
    size_t n;
    CHECK(base64_decode("Zm9vYmFy", 8, out, 6, &n) == 0 && n == 6, "exact fit without NUL");
    CHECK(base64_decode("Zm9vYmFy", 8, out, 5, &n) == -1, "one byte short must fail");
    CHECK(base64_decode("Zm9vYg==", 8, out, 4, &n) == 0 && n == 4, "padded exact fit");
    CHECK(base64_decode("Zm9vYg==", 8, out, 3, &n) == -1, "padded one short");
    CHECK(base64_decode("", 0, out, 0, &n) == 0 && n == 0, "empty into no room");
    CHECK(base64_decode("=", 1, out, 0, &n) == 0 && n == 0, "\"=\" into no room");

    char enc[16];
    size_t m = 7;
    CHECK(base64_encode((const unsigned char *)"foobar", 6, enc, 9, &m) == 0 && m == 8,
          "encode exact fit");
    CHECK(base64_encode((const unsigned char *)"foobar", 6, enc, 8, &m) == -1,
          "encode without room for NUL");
    CHECK(base64_encode((const unsigned char *)"f", 1, enc, 5, NULL) == 0 &&
              strcmp(enc, "Zg==") == 0,
          "encode with outlen NULL");
    CHECK(base64_encode((const unsigned char *)"", 0, enc, 1, &m) == 0 && m == 0 && enc[0] == '\0',
          "encode empty");
    CHECK(base64_encode((const unsigned char *)"", 0, enc, 0, &m) == -1,
          "encode empty without room");
}

/* Long inputs: every byte value, lengths 0..3000, round trip; a bad byte anywhere. */
static void test_base64_long(void)
{
    enum { MAX = 3000 };
    unsigned char *raw = xmalloc(MAX);
    char *enc = xmalloc(MAX / 3 * 4 + 8);
    unsigned char *dec = xmalloc(MAX + 1);
    for (size_t i = 0; i < MAX; i++)
        raw[i] = (unsigned char)(i * 7 + i / 256);
    int bad = 0;
    for (size_t len = 0; len <= MAX; len += (len < 20 ? 1 : 97)) {
        size_t el, dl;
        if (base64_encode(raw, len, enc, MAX / 3 * 4 + 8, &el) != 0 || el != (len + 2) / 3 * 4 ||
            base64_decode(enc, el, dec, MAX + 1, &dl) != 0 || dl != len ||
            memcmp(dec, raw, len) != 0) {
            bad++;
            printf("FAIL long round trip at length %zu\n", len);
        }
    }
    CHECK(bad == 0, "long round trips");

    size_t el, dl;
    base64_encode(raw, 2997, enc, MAX / 3 * 4 + 8, &el);
    int caught = 0;
    for (size_t pos = 0; pos < el; pos += 37) {
        char save = enc[pos];
        enc[pos] = pos % 2 ? '=' : '!';
        caught += base64_decode(enc, el, dec, MAX + 1, &dl) == -1;
        enc[pos] = save;
    }
    CHECK(caught == (int)((el + 36) / 37), "a bad character anywhere in a long input is caught");
    free(raw);
    free(enc);
    free(dec);
}

/* ISO 8601 in UTC whatever TZ says; a buffer too small gives "", never a cut date. */
static void test_time_iso8601(void)
{
    char t[32];
    time_iso8601(t, sizeof t, 0);
    CHECK(strcmp(t, "1970-01-01T00:00:00Z") == 0, "the epoch");
    time_iso8601(t, sizeof t, 1795564800 + 13 * 3600 + 20 * 60 + 5);
    CHECK(strcmp(t, "2026-11-25T13:20:05Z") == 0, "a date");
    time_iso8601(t, 21, 0);
    CHECK(strcmp(t, "1970-01-01T00:00:00Z") == 0, "21 bytes are enough");
    time_iso8601(t, 20, 0);
    CHECK(t[0] == '\0', "20 bytes are not");
}

int main(void)
{
    test_time_iso8601();
    test_ip_parse();
    test_path_relative();
    test_strs();
    test_base64_decode();
    test_base64_sizes();
    test_base64_long();
    static const struct {
        size_t size; /* buffer bytes offered */
        const char *want;
    } cases[] = {
        {64, "no such domain example.org"},
        {27, "no such domain example.org"},
        {10, "no such d"}, /* cut, still terminated */
        {1, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[65]; /* one spare byte to see an overrun */
        memset(buf, 'x', sizeof buf);
        err_set(buf, cases[i].size, "no such %s %s", "domain", "example.org");
        CHECK(strcmp(buf, cases[i].want) == 0, "size %zu: got \"%s\", want \"%s\"", cases[i].size,
              buf, cases[i].want);
        CHECK(buf[cases[i].size] == 'x', "size %zu: wrote past the buffer", cases[i].size);
    }

    /* NULL buffer or size 0: nothing written, nothing crashes. */
    err_set(NULL, 64, "ignored %d", 1);
    char untouched[4] = "abc";
    err_set(untouched, 0, "ignored %d", 2);
    CHECK(strcmp(untouched, "abc") == 0, "size 0 wrote \"%s\"", untouched);
    return check_summary();
}
