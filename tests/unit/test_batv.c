/* test_batv.c: BATV prvs tags (core/batv.h): vectors computed outside kurier (Python's
 * hmac over Exim's input "K" "DDD" "local@domain"), expiry around the modulo-1000
 * wrap, key rotation, case-insensitive parsing, key files and the batv { } settings. */
#include "core/compat.h"

#include "check.h"
#include "core/core.h"

static struct batv_key key(int num, const char *secret)
{
    struct batv_key k = {.num = num, .len = strlen(secret)};
    memcpy(k.secret, secret, k.len);
    return k;
}

/* Tags made by python3: hmac.new(secret, str(K) + "%03d" % (day % 1000) + addr,
 * sha1).hexdigest()[:6], i.e. what Exim's ${prvs{addr}{secret}{K}} gives on the day
 * whose expiry stamp is DDD. */
static const struct {
    const char *secret;
    int num;
    long day;
    const char *addr, *tagged;
} vectors[] = {
    {"exim-secret-0123456789", 0, 20437, "alice@example.org", "prvs=043743cfe0=alice@example.org"},
    {"another-secret-key-42", 3, 999, "bob.smith@example.net",
     "prvs=399946edb0=bob.smith@example.net"},
    {"another-secret-key-42", 3, 1000, "bob.smith@example.net",
     "prvs=30002d9a16=bob.smith@example.net"},
    {"0123456789abcdef", 9, 5, "x@a.example", "prvs=9005c0a0f6=x@a.example"},
};

static enum batv_result check_tag(const char *tagged, const struct batv_key *keys, size_t n,
                                  long today, int max_days)
{
    const char *at = strrchr(tagged, '@');
    struct batv_tag t;
    if (!batv_parse(tagged, (size_t)(at - tagged), &t)) return (enum batv_result) - 1;
    return batv_verify(&t, at + 1, keys, n, today, max_days);
}

static void test_vectors(void)
{
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        struct batv_key k = key(vectors[i].num, vectors[i].secret);
        char out[300];
        CHECK(batv_sign(&k, vectors[i].addr, vectors[i].day, out, sizeof out) == 0, "sign %zu", i);
        CHECK(strcmp(out, vectors[i].tagged) == 0, "vector %zu: %s != %s", i, out,
              vectors[i].tagged);
        /* valid on its expiry day and the max_days before it */
        for (int d = 0; d <= 7; d++)
            CHECK(check_tag(vectors[i].tagged, &k, 1, vectors[i].day - d, 7) == BATV_VALID,
                  "vector %zu valid %d days before expiry", i, d);
    }
    char small[20];
    struct batv_key k = key(0, "0123456789abcdef");
    CHECK(batv_sign(&k, "alice@example.org", 1, small, sizeof small) == -1, "too small");
    CHECK(batv_sign(&k, "no-at-sign", 1, small, sizeof small) == -1, "no @");
}

static void test_expiry(void)
{
    struct batv_key k = key(1, "expiry-secret-0123");
    char out[300];
    long today = 20999; /* 20999 % 1000 = 999: tags made today expire across the wrap */
    CHECK(batv_sign(&k, "u@example.org", today + 7, out, sizeof out) == 0, "sign");
    CHECK(strncmp(out, "prvs=1006", 9) == 0, "expiry day wraps to 006: %s", out);
    CHECK(check_tag(out, &k, 1, today, 7) == BATV_VALID, "valid when made");
    CHECK(check_tag(out, &k, 1, today + 7, 7) == BATV_VALID, "valid on its last day");
    CHECK(check_tag(out, &k, 1, today + 8, 7) == BATV_EXPIRED, "expired the day after");
    CHECK(check_tag(out, &k, 1, today + 500, 7) == BATV_EXPIRED, "long expired");
    CHECK(check_tag(out, &k, 1, today + 1000, 7) == BATV_VALID,
          "the day number repeats after 1000 days (as in every prvs implementation)");
    CHECK(check_tag(out, &k, 1, today - 1, 7) == BATV_EXPIRED,
          "a stamp more than max_days ahead is not accepted");
    CHECK(check_tag(out, &k, 1, today + 2, 30) == BATV_VALID, "longer max_age");
    /* the signature is checked before the day: a forged stamp is "bad", not "expired" */
    char forged[300];
    str_copy(forged, out, sizeof forged);
    forged[8] = forged[8] == '9' ? '8' : '9';
    CHECK(check_tag(forged, &k, 1, today, 7) == BATV_BAD, "changed day: bad signature");
}

static void test_rotation(void)
{
    struct batv_key keys[2] = {key(2, "new-secret-0123456789"), key(1, "old-secret-0123456789")};
    char old_tag[300], new_tag[300], other[300];
    long today = 20500;
    CHECK(batv_sign(&keys[1], "carol@example.org", today + 7, old_tag, sizeof old_tag) == 0,
          "sign old");
    CHECK(batv_sign(&keys[0], "carol@example.org", today + 7, new_tag, sizeof new_tag) == 0,
          "sign new");
    CHECK(strncmp(new_tag, "prvs=2", 6) == 0 && strncmp(old_tag, "prvs=1", 6) == 0, "key numbers");
    CHECK(check_tag(old_tag, keys, 2, today, 7) == BATV_VALID, "old key still verifies");
    CHECK(check_tag(new_tag, keys, 2, today, 7) == BATV_VALID, "new key verifies");
    CHECK(check_tag(old_tag, keys, 1, today, 7) == BATV_NOKEY, "retired key: unknown");
    struct batv_key wrong = key(2, "some-other-secret-xyz");
    CHECK(batv_sign(&wrong, "carol@example.org", today + 7, other, sizeof other) == 0,
          "sign other");
    CHECK(check_tag(other, keys, 2, today, 7) == BATV_BAD, "same number, other secret: bad");
    /* the signature covers the address: moving a tag to another user fails */
    char moved[300];
    snprintf(moved, sizeof moved, "%.16smallory@example.org", new_tag);
    CHECK(check_tag(moved, keys, 2, today, 7) == BATV_BAD, "tag moved to another user: %s", moved);
    /* the domain is compared in lower case; the local part as written */
    char upper[300];
    snprintf(upper, sizeof upper, "%.16scarol@EXAMPLE.ORG", new_tag);
    CHECK(check_tag(upper, keys, 2, today, 7) == BATV_VALID, "domain case");
}

static void test_parse(void)
{
    struct batv_tag t;
    const char *lp = "PRVS=043743CFE0=alice";
    CHECK(batv_parse(lp, strlen(lp), &t) == 1, "upper case prefix and hex");
    CHECK(t.keynum == 0 && t.day == 437 && memcmp(t.hash, "43cfe0", 6) == 0, "fields");
    CHECK(t.local_len == 5 && memcmp(t.local, "alice", 5) == 0, "plain local part");
    struct batv_key k = key(0, "exim-secret-0123456789");
    CHECK(check_tag("PRVS=043743CFE0=alice@example.org", &k, 1, 20437, 7) == BATV_VALID,
          "upper-case hex verifies");
    CHECK(check_tag("prvs=043743CfE0=alice@example.org", &k, 1, 20437, 7) == BATV_VALID,
          "mixed-case hex verifies");
    const char *not_tags[] = {
        "alice",
        "prvs=043743cfe0=",      /* nothing after the tag */
        "prvs=043743cfe0alice",  /* no '=' after the tag */
        "prvs=043743cfg0=alice", /* not hex */
        "prvs=a43743cfe0=alice", /* key number not a digit */
        "prvs=04x743cfe0=alice", /* day not digits */
        "prvs=043743cfe=alice",  /* short hash */
        "prv=043743cfe0=alice",  /* prefix */
        "alice=043743cfe0=prvs", /* the old local=tag order is not read */
        "prvs=",
        "",
    };
    for (size_t i = 0; i < sizeof not_tags / sizeof not_tags[0]; i++)
        CHECK(batv_parse(not_tags[i], strlen(not_tags[i]), &t) == 0, "not a tag: %s", not_tags[i]);
    /* the plain part may hold '=' itself (a tag of a tagged address is never made) */
    lp = "prvs=043743cfe0=a=b";
    CHECK(batv_parse(lp, strlen(lp), &t) == 1 && t.local_len == 3, "a=b");
}

static void test_keys_file(void)
{
    struct batv_key keys[BATV_KEYS_MAX];
    size_t n = 0;
    int line = 0;
    char why[256];
    const char *good =
        "# keys, newest first\n\n2   new-secret-0123456789  \r\n 1\told-secret-0123456789\n";
    CHECK(batv_keys_parse(good, strlen(good), keys, &n, &line, why, sizeof why) == 0, "%s", why);
    CHECK(n == 2 && keys[0].num == 2 && keys[1].num == 1, "two keys, order kept");
    CHECK(keys[0].len == 21 && memcmp(keys[0].secret, "new-secret-0123456789", 21) == 0,
          "secret trimmed");
    const struct {
        const char *text;
        int line;
        const char *why;
    } bad[] = {
        {"", 0, "no key"},
        {"# only a comment\n", 0, "no key"},
        {"1 short\n", 1, "has 5 bytes"},
        {"1 new-secret-0123456789\nx old-secret-0123456789\n", 2, "key number"},
        {"1 new-secret-0123456789\n1 old-secret-0123456789\n", 2, "given twice"},
        {"12 new-secret-0123456789\n", 1, "key number"},
        {"3\n", 1, "key number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        line = -1;
        int r = batv_keys_parse(bad[i].text, strlen(bad[i].text), keys, &n, &line, why, sizeof why);
        CHECK(r == -1 && line == bad[i].line && strstr(why, bad[i].why), "bad file %zu: %d %s", i,
              line, why);
    }
}

static void test_conf(void)
{
    struct batv_key keys[1] = {key(5, "conf-secret-0123456789")};
    struct kconf c = {.batv_domains = "example.org Example.NET",
                      .batv_max_age = 7 * 86400,
                      .batv_keys = keys,
                      .nbatv_keys = 1};
    CHECK(batv_domain_on(&c, "example.org") == 1, "listed");
    CHECK(batv_domain_on(&c, "EXAMPLE.net") == 1, "listed, any case");
    CHECK(batv_domain_on(&c, "sub.example.org") == 0, "subdomains are not");
    CHECK(batv_domain_on(&c, "example.com") == 0, "not listed");
    c.batv_domains = "all";
    CHECK(batv_domain_on(&c, "example.com") == 2, "all: the caller asks its directory");
    c.nbatv_keys = 0;
    CHECK(batv_domain_on(&c, "example.com") == 0, "no keys: off");
    c.nbatv_keys = 1;
    c.batv_domains = NULL;
    CHECK(batv_domain_on(&c, "example.com") == 0, "off by default");
    CHECK(batv_max_days(&c) == 7, "7d");
    c.batv_max_age = 7 * 86400 + 1;
    CHECK(batv_max_days(&c) == 8, "rounded up");
    c.batv_max_age = 7 * 86400;

    time_t now = 1765000000; /* day 20428 */
    char *s = batv_sign_new(&c, "dave@example.org", now);
    CHECK(s && strncmp(s, "prvs=5", 6) == 0 && strstr(s, "=dave@example.org"), "%s", s ? s : "");
    CHECK(s && check_tag(s, keys, 1, batv_day(now), 7) == BATV_VALID, "signs for max_age");
    CHECK(s && check_tag(s, keys, 1, batv_day(now) + 8, 7) == BATV_EXPIRED, "then expires");
    CHECK(batv_sign_new(&c, s ? s : "x", now) == NULL, "never signs twice");
    free(s);
    CHECK(batv_sign_new(&c, "\"a b\"@example.org", now) == NULL, "quoted local part");
    CHECK(batv_sign_new(&c, "a123456789b123456789c123456789d123456789e12345678@example.org", now) ==
              NULL,
          "a tagged local part would pass 64 bytes");
    CHECK(batv_sign_new(&c, "nodomain", now) == NULL, "no @");
}

int main(void)
{
    test_vectors();
    test_expiry();
    test_rotation();
    test_parse();
    test_keys_file();
    test_conf();
    return check_summary();
}
