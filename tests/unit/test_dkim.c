/* test_dkim.c: the pure DKIM pieces (core/dkim.c): RFC 6376 3.4.5's canonicalization
 * examples, body hashes of known bodies, the tag-list parser, header selection with
 * over-signing and the signature field without its b= value. */
#include "core/compat.h"

#include <openssl/evp.h>

#include "core/core.h"
#include "core/dkim.h"

#include "check.h"

/* RFC 6376 3.4.5 */
static const char ex_hdr[] = "A: X\r\nB : Y\t\r\n\tZ  \r\n";
static const char ex_body[] = " C \r\nD \t E\r\n\r\n\r\n";

static char *canon_body(enum dkim_canon c, const char *body, size_t len, size_t piece)
{
    /* the canonical bytes themselves: hash them and compare with the hash of the
     * expectation, fed in pieces of the given size */
    struct dkim_body b;
    dkim_body_init(&b, c, UINT64_MAX);
    for (size_t i = 0; i < len; i += piece)
        dkim_body_feed(&b, body + i, len - i < piece ? len - i : piece);
    unsigned char md[32];
    dkim_body_final(&b, md);
    char *hex = xmalloc(65);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

static char *sha_hex(const char *s, size_t len)
{
    unsigned char md[32];
    unsigned int n;
    EVP_Digest(s, len, md, &n, EVP_sha256(), NULL);
    char *hex = xmalloc(65);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

static void body_case(enum dkim_canon c, const char *in, const char *want)
{
    char *w = sha_hex(want, strlen(want));
    static const size_t pieces[] = {1, 2, 3, 7, 4096};
    for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++) {
        char *got = canon_body(c, in, strlen(in), pieces[k]);
        CHECK(strcmp(got, w) == 0, "%s body \"%s\" (pieces of %zu)",
              c == DKIM_CANON_RELAXED ? "relaxed" : "simple", in, pieces[k]);
        free(got);
    }
    free(w);
}

static void test_rfc_example(void)
{
    struct buf out;
    for (int c = 0; c < 2; c++) {
        buf_init(&out, 0);
        int n = dkim_select_headers(&out, (enum dkim_canon)c, ex_hdr, strlen(ex_hdr), "a:b", 3);
        CHECK(n == 2, "two fields selected, got %d", n);
        const char *want =
            c == DKIM_CANON_RELAXED ? "a:X\r\nb:Y Z\r\n" : "A: X\r\nB : Y\t\r\n\tZ  \r\n";
        CHECK(out.len == strlen(want) && memcmp(out.data, want, out.len) == 0,
              "header canon %d: got \"%s\"", c, out.data);
        buf_release(&out);
    }
    body_case(DKIM_CANON_RELAXED, ex_body, " C\r\nD E\r\n");
    body_case(DKIM_CANON_SIMPLE, ex_body, " C \r\nD \t E\r\n");
}

static void test_bodies(void)
{
    /* empty bodies: simple is one CRLF, relaxed nothing (3.4.3, 3.4.4) */
    body_case(DKIM_CANON_SIMPLE, "", "\r\n");
    body_case(DKIM_CANON_RELAXED, "", "");
    body_case(DKIM_CANON_SIMPLE, "\r\n\r\n", "\r\n");
    body_case(DKIM_CANON_RELAXED, "\r\n\r\n", "");
    /* a last line without CRLF gets one */
    body_case(DKIM_CANON_SIMPLE, "abc", "abc\r\n");
    body_case(DKIM_CANON_RELAXED, "abc  ", "abc\r\n");
    /* inner empty lines stay, trailing ones go; WSP-only lines are empty in relaxed */
    body_case(DKIM_CANON_RELAXED, "a\r\n\r\n \t\r\nb\r\n \r\n\r\n", "a\r\n\r\n\r\nb\r\n");
    body_case(DKIM_CANON_SIMPLE, "a\r\n\r\n \r\n", "a\r\n\r\n \r\n");
    /* bare LF is a line end, a bare CR is content */
    body_case(DKIM_CANON_RELAXED, "a\nb\rc\n", "a\r\nb\rc\r\n");
    body_case(DKIM_CANON_RELAXED, "  lead\t\tin  side \r\n", " lead in side\r\n");
    /* UTF-8 passes through */
    body_case(DKIM_CANON_RELAXED,
              "Gr\xc3\xbc\xc3\x9f"
              "e \r\n",
              "Gr\xc3\xbc\xc3\x9f"
              "e\r\n");

    /* a known value: the body of RFC 8463 A.3, whose bh= is given */
    struct dkim_body b;
    dkim_body_init(&b, DKIM_CANON_RELAXED, UINT64_MAX);
    const char *rfc8463 = "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n";
    dkim_body_feed(&b, rfc8463, strlen(rfc8463));
    unsigned char md[32];
    dkim_body_final(&b, md);
    char b64[64];
    size_t bl = 0;
    base64_encode(md, 32, b64, sizeof b64, &bl);
    CHECK(strcmp(b64, "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=") == 0, "RFC 8463 bh=, got %s",
          b64);

    /* l= limits what is hashed, not what is counted */
    dkim_body_init(&b, DKIM_CANON_SIMPLE, 3);
    dkim_body_feed(&b, "abcdef\r\n", 8);
    CHECK(b.length == 8, "length %llu", (unsigned long long)b.length);
    dkim_body_final(&b, md);
    char *h1 = sha_hex("abc", 3);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    CHECK(strcmp(hex, h1) == 0, "l=3 hashes abc");
    free(h1);
}

struct tag_case {
    const char *in;
    int n;                      /* -1: malformed */
    const char *name2, *value2; /* the second tag, when n >= 2 */
};

static const struct tag_case tag_cases[] = {
    {"", 0, NULL, NULL},
    {"v=1", 1, NULL, NULL},
    {"v=1;", 1, NULL, NULL},
    {"v=1; a=rsa-sha256", 2, "a", "rsa-sha256"},
    {" v = 1 ;\r\n\ta =  rsa-sha256 ; ", 2, "a", "rsa-sha256"},
    {"v=1; b=abc def\r\n ghi", 2, "b", "abc def\r\n ghi"},
    {"v=1; x=", 2, "x", ""},
    {"v=1; h=From:To:Subject", 2, "h", "From:To:Subject"},
    {"v=1; t_2=ok", 2, "t_2", "ok"},
    {"v=1; v=2", -1, NULL, NULL},   /* duplicate */
    {"v=1; =x", -1, NULL, NULL},    /* no name */
    {"v=1; 1a=x", -1, NULL, NULL},  /* name starts with a digit */
    {"v=1; a", -1, NULL, NULL},     /* no "=" */
    {"v=1; a b=c", -1, NULL, NULL}, /* space in a name */
    {"v=1; a=\x01", -1, NULL, NULL},
    {"v=1; a=\xc3\xa4", -1, NULL, NULL},
    {";", -1, NULL, NULL},
};

static void test_tags(void)
{
    for (size_t i = 0; i < sizeof tag_cases / sizeof tag_cases[0]; i++) {
        const struct tag_case *t = &tag_cases[i];
        struct dkim_tag tags[DKIM_TAGS_MAX];
        size_t pos = 999;
        int n = dkim_tags_parse(t->in, strlen(t->in), tags, DKIM_TAGS_MAX, &pos);
        CHECK(n == t->n, "\"%s\": %d tags, want %d", t->in, n, t->n);
        if (n < 0) CHECK(pos <= strlen(t->in), "\"%s\": error position %zu", t->in, pos);
        if (n >= 2 && t->name2) {
            CHECK(tags[1].name_len == strlen(t->name2) &&
                      memcmp(tags[1].name, t->name2, tags[1].name_len) == 0,
                  "\"%s\": second name", t->in);
            CHECK(tags[1].value_len == strlen(t->value2) &&
                      memcmp(tags[1].value, t->value2, tags[1].value_len) == 0,
                  "\"%s\": second value \"%.*s\"", t->in, (int)tags[1].value_len, tags[1].value);
            CHECK(dkim_tag_find(tags, (size_t)n, t->name2) == &tags[1], "find");
        }
    }
    struct dkim_tag tags[2];
    CHECK(dkim_tags_parse("a=1;b=2;c=3", 11, tags, 2, NULL) == -1, "too many tags");
    char dst[16];
    CHECK(dkim_value_compact("ab c\r\n\td", 8, dst, sizeof dst) == 4 && strcmp(dst, "abcd") == 0,
          "compact");
    CHECK(dkim_value_compact("abcdef", 6, dst, 4) == -1, "compact overflow");
    enum dkim_canon h, b;
    CHECK(dkim_canon_parse("relaxed/simple", 14, &h, &b) == 0 && h == DKIM_CANON_RELAXED &&
              b == DKIM_CANON_SIMPLE,
          "c=relaxed/simple");
    CHECK(dkim_canon_parse("relaxed", 7, &h, &b) == 0 && b == DKIM_CANON_SIMPLE, "c=relaxed");
    CHECK(dkim_canon_parse("relaxed/", 8, &h, &b) == -1, "c=relaxed/");
    CHECK(dkim_canon_parse("loose", 5, &h, &b) == -1, "c=loose");
}

static void test_selection(void)
{
    const char *hdr = "From: a@x\r\nTo: b@y\r\nSubject: one\r\nReceived: r\r\nSubject: two\r\n"
                      "X-Empty:\r\n";
    struct buf out;
    buf_init(&out, 0);
    /* bottom-up; a second From: (over-signing) and a missing Cc: add nothing */
    int n = dkim_select_headers(&out, DKIM_CANON_RELAXED, hdr, strlen(hdr),
                                "From:Subject:subject:Subject:Cc:From: x-empty", 45);
    CHECK(n == 4, "4 fields, got %d", n);
    const char *want = "from:a@x\r\nsubject:two\r\nsubject:one\r\nx-empty:\r\n";
    CHECK(strcmp(out.data, want) == 0, "selection: \"%s\"", out.data);
    buf_release(&out);

    const char *sig = "DKIM-Signature: v=1; a=rsa-sha256; b=AbC\r\n dEf= ; bh=xyz=;\r\n\td=x";
    struct hdr_field f;
    CHECK(hdr_next(sig, strlen(sig), &f) > 0, "sig field");
    buf_init(&out, 0);
    dkim_sig_field_canon(&out, DKIM_CANON_RELAXED, f.name, f.name_len, f.value, f.value_len);
    CHECK(strcmp(out.data, "dkim-signature:v=1; a=rsa-sha256; b=; bh=xyz=; d=x") == 0,
          "relaxed without b=: \"%s\"", out.data);
    buf_release(&out);
    buf_init(&out, 0);
    dkim_sig_field_canon(&out, DKIM_CANON_SIMPLE, f.name, f.name_len, f.value, f.value_len);
    CHECK(strcmp(out.data, "DKIM-Signature: v=1; a=rsa-sha256; b=; bh=xyz=;\r\n\td=x") == 0,
          "simple without b=: \"%s\"", out.data);
    buf_release(&out);
    /* b= last, and "bh" is not "b" */
    const char *sig2 = "DKIM-Signature: bh=1; b=zz";
    CHECK(hdr_next(sig2, strlen(sig2), &f) > 0, "sig2 field");
    buf_init(&out, 0);
    dkim_sig_field_canon(&out, DKIM_CANON_RELAXED, f.name, f.name_len, f.value, f.value_len);
    CHECK(strcmp(out.data, "dkim-signature:bh=1; b=") == 0, "b= last: \"%s\"", out.data);
    buf_release(&out);
}

int main(void)
{
    test_rfc_example();
    test_bodies();
    test_tags();
    test_selection();
    return check_summary();
}
