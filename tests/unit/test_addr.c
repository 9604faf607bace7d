/* test_addr.c: table tests for the RFC 5321 path parser and formatter (core/addr.c). */
#include "core/compat.h"

#include "core/core.h"

#include "check.h"

#define ALL (-2) /* the whole input is consumed */
#define NB ADDR_O_NO_BRACKETS
#define U8 ADDR_O_UTF8
#define NUL_OK ADDR_O_ALLOW_NULL

struct ok_case {
    const char *in;
    unsigned opts;
    int ret;
    const char *local, *domain;
    unsigned flags;
};

static const struct ok_case ok_cases[] = {
    {"<user@example.org>", 0, ALL, "user", "example.org", 0},
    {"<User.Name+tag@Example.ORG>", 0, ALL, "User.Name+tag", "example.org", 0},
    {"<a@b>", 0, ALL, "a", "b", 0},
    {"<a@b> SIZE=10", 0, 5, "a", "b", 0},
    {"<>", NUL_OK, ALL, NULL, NULL, ADDR_F_NULL},
    {"<> BODY=8BITMIME", NUL_OK, 2, NULL, NULL, ADDR_F_NULL},
    {"<@a.example,@b.example:user@c.example>", 0, ALL, "user", "c.example", ADDR_F_ROUTE},
    {"<@local:user@other>", 0, ALL, "user", "other", ADDR_F_ROUTE},
    {"<\"john doe\"@example.org>", 0, ALL, "john doe", "example.org", ADDR_F_QUOTED},
    {"<\"a\\\"b\\\\c\"@x.y>", 0, ALL, "a\"b\\c", "x.y", ADDR_F_QUOTED},
    {"<\"\"@x.y>", 0, ALL, "", "x.y", ADDR_F_QUOTED},
    {"<\"user@other\"@local>", 0, ALL, "user@other", "local", ADDR_F_QUOTED},
    {"<user%other@local>", 0, ALL, "user%other", "local", 0},
    {"<other!user@local>", 0, ALL, "other!user", "local", 0},
    {"<a@[192.0.2.1]>", 0, ALL, "a", "[192.0.2.1]", ADDR_F_IPLIT},
    {"<a@[IPv6:2001:db8::1]>", 0, ALL, "a", "[ipv6:2001:db8::1]", ADDR_F_IPLIT},
    {"<a@[ipv6:::1]>", 0, ALL, "a", "[ipv6:::1]", ADDR_F_IPLIT},
    {"<a-b@x-y.z1-2.example>", 0, ALL, "a-b", "x-y.z1-2.example", 0},
    {"<!#$%&'*+-/=?^_`{|}~@x>", 0, ALL, "!#$%&'*+-/=?^_`{|}~", "x", 0},
    {"<jörg@bücher.example>", U8, ALL, "jörg", "bücher.example", ADDR_F_UTF8},
    {"<\"jö rg\"@x>", U8, ALL, "jö rg", "x", ADDR_F_UTF8 | ADDR_F_QUOTED},
    {"<用户@例子.广告>", U8, ALL, "用户", "例子.广告", ADDR_F_UTF8},
    {"user@Example.org", NB, ALL, "user", "example.org", 0},
    {"user@example.org rest", NB, 16, "user", "example.org", 0},
    {"postmaster", NB | ADDR_O_LOCAL_ONLY, ALL, "postmaster", NULL, 0},
    {"user@host", NB | ADDR_O_LOCAL_ONLY, ALL, "user", "host", 0},
    {"<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x>", 0, ALL,
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "x", 0},
    {"<a@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.b>", 0, ALL, "a",
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.b", 0},
};

struct bad_case {
    const char *in;
    unsigned opts;
    const char *err;
};

static const struct bad_case bad_cases[] = {
    {"", 0, "missing address"},
    {"user@example.org", 0, "address must be enclosed in <>"},
    {"<>", 0, "empty address <> not allowed here"},
    {"<user>", 0, "missing domain"},
    {"<user@>", 0, "missing domain"},
    {"<@example.org>", 0, "bad source route"},
    {"<user@example.org", 0, "missing > at end of address"},
    {"<user@example.org.>", 0, "domain ends with a dot"},
    {"<user@example..org>", 0, "empty label in domain"},
    {"<user@.example.org>", 0, "empty label in domain"},
    {"<user@-example.org>", 0, "domain label starts or ends with a hyphen"},
    {"<user@example-.org>", 0, "domain label starts or ends with a hyphen"},
    {"<user@exa_mple.org>", 0, "bad character in domain"},
    {"<user@exa mple.org>", 0, "bad character in domain"},
    {"<a@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.b>", 0,
     "domain label longer than 63 characters"},
    {"<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x>", 0,
     "local part too long"},
    {"<.user@x>", 0, "misplaced dot in local part"},
    {"<user.@x>", 0, "misplaced dot in local part"},
    {"<us..er@x>", 0, "misplaced dot in local part"},
    {"<us er@x>", 0, "bad character in local part"},
    {"<us(er@x>", 0, "bad character in local part"},
    {"<\"user@x>", 0, "unterminated quoted string"},
    {"<\"us\\", 0, "unterminated quoted string"},
    {"<\"a\"b@x>", 0, "bad character in local part"},
    {"<\"a\tb\"@x>", 0, "bad character in quoted string"},
    {"<jörg@x>", 0, "8-bit address needs SMTPUTF8"},
    {"<j@bücher.example>", 0, "8-bit address needs SMTPUTF8"},
    {"<j\xff@x>", U8, "address is not valid UTF-8"},
    {"<j\xc3@x>", U8, "address is not valid UTF-8"},
    {"<j\xc0\xaf@x>", U8, "address is not valid UTF-8"},
    {"<j\xed\xa0\x80@x>", U8, "address is not valid UTF-8"},
    {"<j@x\xe2\x82>", U8, "address is not valid UTF-8"},
    {"<a@[1.2.3]>", 0, "bad address literal"},
    {"<a@[1.2.3.4.5]>", 0, "bad address literal"},
    {"<a@[01.2.3.4]>", 0, "bad address literal"},
    {"<a@[IPv6:zz::1]>", 0, "bad address literal"},
    {"<a@[IPv6:1.2.3.4]>", 0, "bad address literal"},
    {"<a@[1.2.3.4>", 0, "unterminated address literal"},
    {"<a@[tag:stuff]>", 0, "bad address literal"},
    {"<@a,b:user@c>", 0, "bad source route"},
    {"<@a:>", 0, "missing local part"},
    {"<@a,@b>", 0, "bad source route"},
    {"postmaster", NB, "missing domain"},
    {"<postmaster>", ADDR_O_LOCAL_ONLY, "missing domain"},
    {"a@b c", 0, "address must be enclosed in <>"},
    {"<a@b c>", 0, "bad character in domain"},
};

static void test_ok(void)
{
    for (size_t i = 0; i < sizeof ok_cases / sizeof ok_cases[0]; i++) {
        const struct ok_case *c = &ok_cases[i];
        struct addr a;
        const char *err = "unset";
        int want = c->ret == ALL ? (int)strlen(c->in) : c->ret;
        int r = addr_parse(c->in, strlen(c->in), c->opts, &a, &err);
        CHECK(r == want, "%s: ret %d want %d (%s)", c->in, r, want, r < 0 ? err : "");
        if (r < 0) continue;
        CHECK((a.local == NULL) == (c->local == NULL) &&
                  (!a.local || strcmp(a.local, c->local) == 0),
              "%s: local [%s] want [%s]", c->in, a.local ? a.local : "(null)",
              c->local ? c->local : "(null)");
        CHECK((a.domain == NULL) == (c->domain == NULL) &&
                  (!a.domain || strcmp(a.domain, c->domain) == 0),
              "%s: domain [%s] want [%s]", c->in, a.domain ? a.domain : "(null)",
              c->domain ? c->domain : "(null)");
        CHECK(a.flags == c->flags, "%s: flags %u want %u", c->in, a.flags, c->flags);

        /* Round trip: format, parse again, same local and domain. */
        char *f = addr_format(&a);
        char *again = (c->opts & NB) ? xstrdup(f) : xasprintf("<%s>", f);
        struct addr b;
        r = addr_parse(again, strlen(again), c->opts | NUL_OK, &b, &err);
        CHECK(r == (int)strlen(again), "%s: round trip of [%s] failed: %s", c->in, again,
              r < 0 ? err : "partial");
        if (r > 0) {
            CHECK((!a.local && !b.local) || (a.local && b.local && !strcmp(a.local, b.local)),
                  "%s: round trip local differs", c->in);
            CHECK((!a.domain && !b.domain) || (a.domain && b.domain && !strcmp(a.domain, b.domain)),
                  "%s: round trip domain differs", c->in);
        }
        struct addr cp;
        addr_copy(&cp, &a);
        CHECK(cp.flags == a.flags && (!a.local || !strcmp(cp.local, a.local)), "%s: copy", c->in);
        addr_clear(&cp);
        addr_clear(&b);
        free(again);
        free(f);
        addr_clear(&a);
    }
}

static void test_bad(void)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *c = &bad_cases[i];
        struct addr a;
        const char *err = "unset";
        int r = addr_parse(c->in, strlen(c->in), c->opts, &a, &err);
        CHECK(r == -1, "%s: accepted (ret %d)", c->in, r);
        CHECK(r != -1 || strcmp(err, c->err) == 0, "%s: error [%s] want [%s]", c->in, err, c->err);
        CHECK(a.local == NULL && a.domain == NULL, "%s: out not empty on error", c->in);
        if (r >= 0) addr_clear(&a);
    }
}

static void test_limits(void)
{
    /* Domain of 255 bytes is fine, 256 is not; a path over 256 is refused. */
    char dom[300], in[400];
    struct addr a;
    const char *err = "";
    size_t n = 0;
    while (n < 255) {
        size_t l = 255 - n >= 64 ? 63 : 255 - n;
        memset(dom + n, 'd', l);
        n += l;
        if (n < 255) dom[n++] = '.';
    }
    dom[n] = '\0';
    CHECK(addr_domain_valid(dom, n, 0) == 1, "255-byte domain invalid");
    snprintf(in, sizeof in, "a@%s", dom);
    CHECK(addr_parse(in, strlen(in), NB, &a, &err) == -1 && !strcmp(err, "address too long"),
          "bare 257-byte mailbox: %s", err);
    dom[254] = '\0';
    snprintf(in, sizeof in, "<a@%.*s>", 252, dom);
    CHECK(addr_parse(in, strlen(in), 0, &a, &err) == 256, "256-byte path refused: %s", err);
    addr_clear(&a);
    snprintf(in, sizeof in, "<ab@%.*s>", 252, dom);
    CHECK(addr_parse(in, strlen(in), 0, &a, &err) == -1 && !strcmp(err, "address too long"),
          "257-byte path: %s", err);
    char big[300];
    memset(big, 'a', 256);
    big[256] = '\0';
    for (int i = 63; i < 256; i += 64)
        big[i] = '.';
    CHECK(addr_domain_valid(big, 256, 0) == 0, "256-byte domain valid");

    CHECK(addr_domain_valid("example.org", 11, 0) == 1, "example.org");
    CHECK(addr_domain_valid("example.org.", 12, 0) == 0, "trailing dot");
    CHECK(addr_domain_valid("exa mple", 8, 0) == 0, "space");
    CHECK(addr_domain_valid("bücher.de", strlen("bücher.de"), 0) == 0, "utf8 without opt");
    CHECK(addr_domain_valid("bücher.de", strlen("bücher.de"), U8) == 1, "utf8 with opt");
    CHECK(addr_domain_valid("", 0, 0) == 0, "empty");
}

static void test_format(void)
{
    struct {
        const char *local, *domain, *want;
    } t[] = {
        {"user", "example.org", "user@example.org"},
        {"john doe", "x", "\"john doe\"@x"},
        {"a\"b\\c", "x", "\"a\\\"b\\\\c\"@x"},
        {"", "x", "\"\"@x"},
        {".a", "x", "\".a\"@x"},
        {"a..b", "x", "\"a..b\"@x"},
        {"user@other", "local", "\"user@other\"@local"},
        {"postmaster", NULL, "postmaster"},
        {"jörg", "x", "jörg@x"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct addr a = {(char *)t[i].local, (char *)t[i].domain, 0};
        char *f = addr_format(&a);
        CHECK(strcmp(f, t[i].want) == 0, "format [%s] got [%s] want [%s]", t[i].local, f,
              t[i].want);
        free(f);
    }
    struct addr null = {NULL, NULL, ADDR_F_NULL};
    char *f = addr_format(&null);
    CHECK(strcmp(f, "") == 0, "null path formats as empty");
    free(f);
}

static void test_routing(void)
{
    struct {
        const char *in;
        int want;
    } t[] = {
        {"<user%other@local>", 1},  {"<\"user@other\"@local>", 1}, {"<other!user@local>", 1},
        {"<@local:user@other>", 0}, {"<user@local>", 0},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct addr a;
        const char *err;
        int r = addr_parse(t[i].in, strlen(t[i].in), 0, &a, &err);
        CHECK(r > 0 && addr_has_routing_chars(&a) == t[i].want, "routing chars %s", t[i].in);
        addr_clear(&a);
    }
}

/* International domains (core/idn.h): A-labels for DNS, invalid IDNs refused. */
static void test_idn(void)
{
    char out[256];
    const char *why = NULL;
    CHECK(idn_to_alabel("b\xc3\xbc"
                        "cher.Test",
                        out, sizeof out, &why) == 0 &&
              strcmp(out, "xn--bcher-kva.test") == 0,
          "got %s", out);
    CHECK(idn_to_alabel("MX.Example.ORG", out, sizeof out, &why) == 0 &&
              strcmp(out, "mx.example.org") == 0,
          "ASCII lowercased: %s", out);
    CHECK(idn_to_alabel("b\xe2\x98\x83.test", out, sizeof out, &why) == -1 && why &&
              strstr(why, "invalid international domain name"),
          "snowman refused: %s", why ? why : "-");
    CHECK(idn_to_alabel("b\xc3.test", out, sizeof out, &why) == -1, "bad UTF-8 refused");
    struct addr a = {0};
    const char *err = NULL;
    const char *bad = "<kunde@b\xe2\x98\x83.test>";
    CHECK(addr_parse(bad, strlen(bad), ADDR_O_UTF8, &a, &err) < 0 && err &&
              strstr(err, "invalid international domain name"),
          "RCPT with an invalid IDN: %s", err ? err : "-");
    addr_clear(&a);
    const char *good = "<kunde@b\xc3\xbc"
                       "cher.test>";
    CHECK(addr_parse(good, strlen(good), ADDR_O_UTF8, &a, &err) == (int)strlen(good),
          "a valid IDN is taken");
    addr_clear(&a);
}

int main(void)
{
    test_idn();
    test_ok();
    test_bad();
    test_limits();
    test_format();
    test_routing();
    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0;
}
