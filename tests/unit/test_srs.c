/* test_srs.c: SRS addresses (core/srs.h): vectors from the reference algorithm of
 * libsrs2/postsrsd (tests/integration/srsref.py, written from libsrs2's srs2.c),
 * SRS1 for addresses rewritten elsewhere, reversing, expiry around the modulo-1024
 * wrap, secret rotation, case-insensitive hashes, and the secrets file. */
#include "core/compat.h"

#include "check.h"
#include "core/core.h"

static struct srs_secret secret(const char *s)
{
    struct srs_secret k = {.len = strlen(s)};
    memcpy(k.secret, s, k.len);
    return k;
}

/* srsref.forward(secret, sender, "srs.our.example", day) */
static const struct {
    const char *sender;
    long day;
    const char *srs;
} vectors[] = {
    {"alice@strict.example", 20428, "SRS0=RZ3F=6M=strict.example=alice@srs.our.example"},
    {"bob.smith@Example.ORG", 1023, "SRS0=4qLu=77=Example.ORG=bob.smith@srs.our.example"},
    {"x=y@a.example", 1024, "SRS0=oCx3=AA=a.example=x=y@srs.our.example"},
    {"SRS0=AbCd=XY=orig.example=joe@fwd1.example", 20428,
     "SRS1=BTQT=fwd1.example==AbCd=XY=orig.example=joe@srs.our.example"},
    {"SRS1=Zz9+=fwd1.example==AbCd=XY=orig.example=joe@fwd2.example", 20428,
     "SRS1=BTQT=fwd1.example==AbCd=XY=orig.example=joe@srs.our.example"},
};

static enum srs_result rev(const char *addr, const struct srs_secret *k, size_t n, long today,
                           int max_days, char *out, size_t outsize)
{
    const char *at = strrchr(addr, '@');
    return srs_reverse(addr, (size_t)(at - addr), k, n, today, max_days, out, outsize);
}

static void test_vectors(void)
{
    struct srs_secret k = secret("postsrsd-secret-0123");
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        char out[320];
        CHECK(srs_forward(&k, vectors[i].sender, "srs.our.example", vectors[i].day, out,
                          sizeof out) == 0,
              "forward %zu", i);
        CHECK(strcmp(out, vectors[i].srs) == 0, "vector %zu: %s != %s", i, out, vectors[i].srs);
    }
    char out[320];
    CHECK(rev(vectors[0].srs, &k, 1, 20428, 21, out, sizeof out) == SRS_VALID &&
              strcmp(out, "alice@strict.example") == 0,
          "SRS0 reverses: %s", out);
    CHECK(rev(vectors[2].srs, &k, 1, 1024, 21, out, sizeof out) == SRS_VALID &&
              strcmp(out, "x=y@a.example") == 0,
          "an '=' in the local part survives: %s", out);
    CHECK(rev(vectors[3].srs, &k, 1, 20428, 21, out, sizeof out) == SRS_VALID &&
              strcmp(out, "SRS0=AbCd=XY=orig.example=joe@fwd1.example") == 0,
          "SRS1 goes back to the first forwarder: %s", out);
    /* case-insensitive hash, tag and stamp (some relays lowercase addresses) */
    CHECK(rev("srs0=rz3f=6m=strict.example=alice@srs.our.example", &k, 1, 20428, 21, out,
              sizeof out) == SRS_VALID,
          "lower case");
    CHECK(rev("SRS0+RZ3F=6M=strict.example=alice@x", &k, 1, 20428, 21, out, sizeof out) ==
              SRS_VALID,
          "separator + and upper case");
    char small[10];
    CHECK(srs_forward(&k, "alice@strict.example", "srs.our.example", 1, small, sizeof small) == -1,
          "too small");
    CHECK(srs_forward(&k, "no-at", "srs.our.example", 1, out, sizeof out) == -1, "no @");
    CHECK(srs_forward(&k, "@x.example", "srs.our.example", 1, out, sizeof out) == -1, "no local");
    CHECK(srs_forward(&k, "SRS1=abcd@x.example", "srs.our.example", 1, out, sizeof out) == -1,
          "malformed SRS1");
}

static void test_refused(void)
{
    struct srs_secret k = secret("postsrsd-secret-0123");
    char out[320] = "untouched";
    CHECK(rev("alice@srs.our.example", &k, 1, 20428, 21, out, sizeof out) == SRS_NOT_SRS, "plain");
    CHECK(rev("SRS0=RZ3G=6M=strict.example=alice@x", &k, 1, 20428, 21, out, sizeof out) ==
              SRS_BAD_HASH,
          "forged hash");
    CHECK(rev("SRS0=RZ3F=6M=strict.example=mallory@x", &k, 1, 20428, 21, out, sizeof out) ==
              SRS_BAD_HASH,
          "other user");
    CHECK(rev("SRS0=RZ3F=6N=strict.example=alice@x", &k, 1, 20428, 21, out, sizeof out) ==
              SRS_BAD_HASH,
          "changed stamp");
    CHECK(rev("SRS0=RZ3=6M=strict.example=alice@x", &k, 1, 20428, 21, out, sizeof out) ==
              SRS_MALFORMED,
          "short hash");
    CHECK(rev("SRS0=RZ3F=6!=strict.example=alice@x", &k, 1, 20428, 21, out, sizeof out) ==
              SRS_MALFORMED,
          "bad stamp");
    CHECK(rev("SRS0=RZ3F=6M=strict.example@x", &k, 1, 20428, 21, out, sizeof out) == SRS_MALFORMED,
          "no user");
    CHECK(rev("SRS0=RZ3F=6M==alice@x", &k, 1, 20428, 21, out, sizeof out) == SRS_MALFORMED,
          "empty host");
    CHECK(strcmp(out, "untouched") == 0, "out written only when valid");
    struct srs_secret other = secret("some-other-secret-42");
    CHECK(rev(vectors[0].srs, &other, 1, 20428, 21, out, sizeof out) == SRS_BAD_HASH,
          "other secret");
}

static void test_expiry(void)
{
    struct srs_secret k = secret("expiry-secret-0123");
    char srs[320], out[320];
    long made = 21503; /* 21503 % 1024 = 1023: the stamp wraps the next day */
    CHECK(srs_forward(&k, "u@strict.example", "srs.our.example", made, srs, sizeof srs) == 0,
          "sign");
    CHECK(strncmp(srs + 10, "77=", 3) == 0, "stamp 1023 is 77: %s", srs);
    CHECK(rev(srs, &k, 1, made, 21, out, sizeof out) == SRS_VALID, "valid when made");
    CHECK(rev(srs, &k, 1, made + 21, 21, out, sizeof out) == SRS_VALID, "valid on its last day");
    CHECK(rev(srs, &k, 1, made + 22, 21, out, sizeof out) == SRS_EXPIRED, "expired the day after");
    CHECK(rev(srs, &k, 1, made - 1, 21, out, sizeof out) == SRS_EXPIRED, "from the future");
    CHECK(rev(srs, &k, 1, made + 1024, 21, out, sizeof out) == SRS_VALID,
          "the stamp repeats after 1024 days (as in libsrs2)");
}

static void test_rotation(void)
{
    struct srs_secret keys[2] = {secret("new-secret-abcdefgh"), secret("old-secret-abcdefgh")};
    char out[320];
    /* srsref.forward() with each secret on day 20500 */
    const char *old_addr = "SRS0=hlRJ=AU=strict.example=carol@srs.our.example";
    const char *new_addr = "SRS0=mfP1=AU=strict.example=carol@srs.our.example";
    CHECK(srs_forward(&keys[0], "carol@strict.example", "srs.our.example", 20500, out,
                      sizeof out) == 0 &&
              strcmp(out, new_addr) == 0,
          "the first secret signs: %s", out);
    CHECK(rev(old_addr, keys, 2, 20501, 21, out, sizeof out) == SRS_VALID, "old secret verifies");
    CHECK(rev(new_addr, keys, 2, 20501, 21, out, sizeof out) == SRS_VALID, "new secret verifies");
    CHECK(rev(old_addr, keys, 1, 20501, 21, out, sizeof out) == SRS_BAD_HASH, "retired secret");
}

static void test_secrets_file(void)
{
    struct srs_secret s[SRS_SECRETS_MAX];
    size_t n = 0;
    int line = 0;
    char why[200];
    const char *ok = "# newest first\n  first-secret-0123456  \n\nsecond-secret-0123456\r\n";
    CHECK(srs_secrets_parse(ok, strlen(ok), s, &n, &line, why, sizeof why) == 0 && n == 2 &&
              s[0].len == 20 && memcmp(s[0].secret, "first-secret-0123456", 20) == 0,
          "two secrets, trimmed");
    const char *shortone = "ok-secret-0123456789\nshort\n";
    CHECK(srs_secrets_parse(shortone, strlen(shortone), s, &n, &line, why, sizeof why) == -1 &&
              line == 2,
          "short secret on line 2: %s", why);
    CHECK(srs_secrets_parse("# none\n", 7, s, &n, &line, why, sizeof why) == -1 && line == 0,
          "empty file");
}

static void test_conf(void)
{
    struct kconf c = {0};
    struct srs_secret k = secret("postsrsd-secret-0123");
    CHECK(srs_forward_new(&c, "alice@strict.example", 20428 * 86400L) == NULL, "off");
    c.srs_domain = (char *)"srs.our.example";
    c.srs_secrets = &k;
    c.nsrs_secrets = 1;
    c.srs_max_age = 21 * 86400 - 5;
    CHECK(srs_max_days(&c) == 21, "max days rounded up");
    char *a = srs_forward_new(&c, "alice@strict.example", 20428 * 86400L + 3600);
    CHECK(a && strcmp(a, vectors[0].srs) == 0, "forward_new: %s", a ? a : "NULL");
    free(a);
    CHECK(srs_forward_new(&c, "", 0) == NULL, "null sender");
    CHECK(srs_forward_new(&c, "x@SRS.our.example", 0) == NULL, "our SRS domain");
}

int main(void)
{
    test_vectors();
    test_refused();
    test_expiry();
    test_rotation();
    test_secrets_file();
    test_conf();
    return check_summary();
}
