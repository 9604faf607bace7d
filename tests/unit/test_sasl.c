/* test_sasl.c: table tests for smtp/sasl.c: RFC 4616 PLAIN messages (base64 is
 * core's: test_util.c). */
#include "core/compat.h"

#include "core/core.h"
#include "smtp/smtp.h"

#include "check.h"

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
    CHECK(base64_decode(resp, strlen(resp), dec, sizeof dec, &n) == 0 &&
              smtp_sasl_plain_parse(dec, n, az2, sizeof az2, ac2, sizeof ac2, pw2, sizeof pw2) ==
                  0 &&
              strcmp(ac2, "tim") == 0 && strcmp(pw2, "tanstaaftanstaaf") == 0,
          "AUTH PLAIN initial response");
}

int main(void)
{
    test_plain();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
