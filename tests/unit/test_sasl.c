/* test_sasl.c: table tests for smtp/sasl.c: strict base64 (RFC 4648 vectors,
 * padding and alphabet errors, long inputs) and RFC 4616 PLAIN messages. */
#include "core/compat.h"

#include "core/core.h"
#include "smtp/smtp.h"

#include "check.h"

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
};

static void test_decode(void)
{
    for (size_t i = 0; i < sizeof dec_cases / sizeof dec_cases[0]; i++) {
        const struct dec_case *c = &dec_cases[i];
        unsigned char out[128];
        size_t outlen = 99;
        memset(out, 'x', sizeof out);
        int r = smtp_b64_decode(c->in, strlen(c->in), out, sizeof out, &outlen);
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
            int e = smtp_b64_encode(out, outlen, enc, sizeof enc, &enclen);
            CHECK(e == 0 && enclen == strlen(c->in) && strcmp(enc, c->in) == 0,
                  "encode round trip of \"%s\": got \"%s\"", c->in, e == 0 ? enc : "(fail)");
        }
    }
}

/* Output buffer sizes: exact fits, and one byte too small. */
static void test_sizes(void)
{
    unsigned char out[8];
    size_t n;
    CHECK(smtp_b64_decode("Zm9vYmFy", 8, out, 6, &n) == 0 && n == 6, "exact fit without NUL");
    CHECK(smtp_b64_decode("Zm9vYmFy", 8, out, 5, &n) == -1, "one byte short must fail");
    CHECK(smtp_b64_decode("Zm9vYg==", 8, out, 4, &n) == 0 && n == 4, "padded exact fit");
    CHECK(smtp_b64_decode("Zm9vYg==", 8, out, 3, &n) == -1, "padded one short");
    CHECK(smtp_b64_decode("", 0, out, 0, &n) == 0 && n == 0, "empty into no room");
    CHECK(smtp_b64_decode("=", 1, out, 0, &n) == 0 && n == 0, "\"=\" into no room");

    char enc[16];
    size_t m = 7;
    CHECK(smtp_b64_encode((const unsigned char *)"foobar", 6, enc, 9, &m) == 0 && m == 8,
          "encode exact fit");
    CHECK(smtp_b64_encode((const unsigned char *)"foobar", 6, enc, 8, &m) == -1,
          "encode without room for NUL");
    CHECK(smtp_b64_encode((const unsigned char *)"f", 1, enc, 5, NULL) == 0 &&
              strcmp(enc, "Zg==") == 0,
          "encode with outlen NULL");
    CHECK(smtp_b64_encode((const unsigned char *)"", 0, enc, 1, &m) == 0 && m == 0 &&
              enc[0] == '\0',
          "encode empty");
    CHECK(smtp_b64_encode((const unsigned char *)"", 0, enc, 0, &m) == -1,
          "encode empty without room");
}

/* Long inputs: every byte value, lengths 0..3000, round trip; a bad byte anywhere. */
static void test_long(void)
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
        if (smtp_b64_encode(raw, len, enc, MAX / 3 * 4 + 8, &el) != 0 || el != (len + 2) / 3 * 4 ||
            smtp_b64_decode(enc, el, dec, MAX + 1, &dl) != 0 || dl != len ||
            memcmp(dec, raw, len) != 0) {
            bad++;
            printf("FAIL long round trip at length %zu\n", len);
        }
    }
    CHECK(bad == 0, "long round trips");

    size_t el, dl;
    smtp_b64_encode(raw, 2997, enc, MAX / 3 * 4 + 8, &el);
    int caught = 0;
    for (size_t pos = 0; pos < el; pos += 37) {
        char save = enc[pos];
        enc[pos] = pos % 2 ? '=' : '!';
        caught += smtp_b64_decode(enc, el, dec, MAX + 1, &dl) == -1;
        enc[pos] = save;
    }
    CHECK(caught == (int)((el + 36) / 37), "a bad character anywhere in a long input is caught");
    free(raw);
    free(enc);
    free(dec);
}

struct plain_case {
    const char *msg;
    size_t len;
    int ok;
    const char *authzid, *authcid, *passwd;
};

#define P(s) s, sizeof(s) - 1

static const struct plain_case plain_cases[] = {
    /* RFC 4616 4 */
    {P("\0tim\0tanstaaftanstaaf"), 1, "", "tim", "tanstaaftanstaaf"},
    {P("Admin\0tim\0tanstaaftanstaaf"), 1, "Admin", "tim", "tanstaaftanstaaf"},
    {P("\0user@example.org\0p\xc3\xa4ss word"), 1, "", "user@example.org", "p\xc3\xa4ss word"},
    {P("u\0u\0p"), 1, "u", "u", "p"},
    /* malformed */
    {P(""), 0, NULL, NULL, NULL},
    {P("tim"), 0, NULL, NULL, NULL},
    {P("tim\0secret"), 0, NULL, NULL, NULL},
    {P("\0tim"), 0, NULL, NULL, NULL},
    {P("\0\0secret"), 0, NULL, NULL, NULL},      /* empty authcid */
    {P("\0tim\0"), 0, NULL, NULL, NULL},         /* empty passwd */
    {P("\0\0"), 0, NULL, NULL, NULL},            /* both empty */
    {P("\0tim\0sec\0ret"), 0, NULL, NULL, NULL}, /* NUL in passwd */
    {P("\0tim\0secret\0"), 0, NULL, NULL, NULL},
    {P("a\0b\0c\0d"), 0, NULL, NULL, NULL},
};

static void test_plain(void)
{
    for (size_t i = 0; i < sizeof plain_cases / sizeof plain_cases[0]; i++) {
        const struct plain_case *c = &plain_cases[i];
        char az[64], ac[64], pw[64];
        int r = smtp_sasl_plain_parse((const unsigned char *)c->msg, c->len, az, sizeof az, ac,
                                      sizeof ac, pw, sizeof pw);
        if (!c->ok) {
            CHECK(r == -1 && ac[0] == '\0' && pw[0] == '\0', "plain case %zu: expected failure", i);
            continue;
        }
        CHECK(r == 0, "plain case %zu: failed", i);
        CHECK(r == 0 && strcmp(az, c->authzid) == 0 && strcmp(ac, c->authcid) == 0 &&
                  strcmp(pw, c->passwd) == 0,
              "plain case %zu: got [%s] [%s] [%s]", i, az, ac, pw);
    }

    /* field size limits: exactly fitting, and one byte too long */
    char az[4], ac[4], pw[4];
    const unsigned char fit[] = "abc\0def\0ghi";
    CHECK(smtp_sasl_plain_parse(fit, sizeof fit - 1, az, 4, ac, 4, pw, 4) == 0 &&
              strcmp(az, "abc") == 0 && strcmp(ac, "def") == 0 && strcmp(pw, "ghi") == 0,
          "fields filling their buffers");
    const unsigned char az_long[] = "abcd\0def\0ghi";
    const unsigned char ac_long[] = "abc\0defg\0ghi";
    const unsigned char pw_long[] = "abc\0def\0ghij";
    CHECK(smtp_sasl_plain_parse(az_long, sizeof az_long - 1, az, 4, ac, 4, pw, 4) == -1,
          "authzid too long");
    CHECK(smtp_sasl_plain_parse(ac_long, sizeof ac_long - 1, az, 4, ac, 4, pw, 4) == -1,
          "authcid too long");
    CHECK(smtp_sasl_plain_parse(pw_long, sizeof pw_long - 1, az, 4, ac, 4, pw, 4) == -1 &&
              az[0] == '\0' && ac[0] == '\0' && pw[0] == '\0',
          "passwd too long, nothing left behind");

    /* the whole AUTH PLAIN path: base64 then parse */
    const char *resp = "AHRpbQB0YW5zdGFhZnRhbnN0YWFm";
    unsigned char dec[64];
    size_t n;
    char az2[64], ac2[64], pw2[64];
    CHECK(smtp_b64_decode(resp, strlen(resp), dec, sizeof dec, &n) == 0 &&
              smtp_sasl_plain_parse(dec, n, az2, sizeof az2, ac2, sizeof ac2, pw2, sizeof pw2) ==
                  0 &&
              strcmp(ac2, "tim") == 0 && strcmp(pw2, "tanstaaftanstaaf") == 0,
          "AUTH PLAIN initial response");
}

int main(void)
{
    test_decode();
    test_sizes();
    test_long();
    test_plain();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
