/* test_dkim.c: table tests for DKIM's and DMARC's pure parts: tag lists, signatures,
 * key records, canonicalization (RFC 6376 3.4.5's example), DMARC records, the public
 * suffix list and From: domains (core/dkim_verify.c, core/dmarc.c). */
#include "core/compat.h"

#include <openssl/evp.h>

#include "core/buf.h"
#include "core/dkim_verify.h"
#include "core/dmarc.h"
#include "core/util.h"

#include "check.h"

static void test_tags(void)
{
    static const struct {
        const char *in;
        int ok;
        size_t n;
    } cases[] = {
        {"a=1; b=2", 1, 2}, {" a = 1 ;\r\n\tb=x y ; ", 1, 2},
        {"a=", 1, 1},       {"", 1, 0},
        {"a=1;a=2", 0, 0},  {"=1", 0, 0},
        {"a", 0, 0},        {"1a=2", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dkim_tag t[DKIM_TAGS_MAX];
        size_t n = 99;
        char err[100];
        int rc = dkim_tags_parse(cases[i].in, strlen(cases[i].in), t, DKIM_TAGS_MAX, &n, err,
                                 sizeof err);
        CHECK((rc == 0) == cases[i].ok, "case %zu: %s", i, cases[i].in);
        if (rc == 0) CHECK(n == cases[i].n, "case %zu: n=%zu", i, n);
    }
    struct dkim_tag t[4];
    size_t n;
    char err[100];
    CHECK(dkim_tags_parse(" b = x  y ;", 11, t, 4, &n, err, sizeof err) == 0 && n == 1 &&
              t[0].len == 4 && memcmp(t[0].val, "x  y", 4) == 0,
          "value trimmed");
}

static void test_sig(void)
{
    static const struct {
        const char *in;
        int ok;
    } cases[] = {
        {"v=1; a=rsa-sha256; d=Example.COM; s=sel; h=From:To; bh=AAAA; b=AA AA", 1},
        {"v=1; a=ed25519-sha256; c=relaxed; d=a.test; s=s; h=from; bh=AAAA; b=AAAA; "
         "i=x@sub.a.test; l=10; t=5; x=6",
         1},
        {"v=1; a=rsa-sha1; d=a.test; s=s; h=from; bh=AAAA; b=AAAA", 1},
        {"v=2; a=rsa-sha256; d=a.test; s=s; h=from; bh=AAAA; b=AAAA", 0},
        {"v=1; a=rsa-md5; d=a.test; s=s; h=from; bh=AAAA; b=AAAA", 0},
        {"v=1; a=rsa-sha256; d=a.test; s=s; h=to; bh=AAAA; b=AAAA", 0}, /* no From */
        {"v=1; a=rsa-sha256; d=a.test; s=s; h=from; bh=AAAA", 0},       /* no b= */
        {"v=1; a=rsa-sha256; d=a.test; s=s; h=from; bh=AAAA; b=AAAA; i=x@b.test", 0},
        {"v=1; a=rsa-sha256; d=a.test; s=s; h=from; bh=AAAA; b=AAAA; t=9; x=8", 0},
        {"v=1; a=rsa-sha256; d=a.test; s=s; h=from; bh=AAAA; b=AAAA; c=odd/simple", 0},
        {"v=1; a=rsa-sha256; d=a.test; s=s; h=from; bh=AAAA; b=AAAA; l=x", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dkim_sig s;
        char err[160];
        int rc = dkim_sig_parse(cases[i].in, strlen(cases[i].in), &s, err, sizeof err);
        CHECK((rc == 0) == cases[i].ok, "case %zu: %s (%s)", i, cases[i].in, rc ? err : "ok");
    }
    struct dkim_sig s;
    char err[160];
    const char *v = "v=1; a=rsa-sha256; c=simple/relaxed; d=Example.COM; s=sel; "
                    "h=From : To:from; bh=AAAA; b=AAAAAAAAAAAA";
    CHECK(dkim_sig_parse(v, strlen(v), &s, err, sizeof err) == 0, "%s", err);
    CHECK(strcmp(s.d, "example.com") == 0 && strcmp(s.s, "sel") == 0, "d=%s s=%s", s.d, s.s);
    CHECK(!s.hrelaxed && s.brelaxed && s.nh == 3 && strcmp(s.hnames[2], "from") == 0, "h=");
    CHECK(strcmp(s.b_head, "AAAAAAAA") == 0 && s.l == -1, "b_head %s", s.b_head);
}

static void test_key(void)
{
    static const struct {
        const char *in;
        int ok, type, strict;
    } cases[] = {
        {"v=DKIM1; k=rsa; p=AAAA", 1, DKIM_KEY_RSA, 0},
        {"k=ed25519; t=s:y; p=AAAA", 1, DKIM_KEY_ED25519, 1},
        {"v=DKIM1; p=", 1, DKIM_KEY_RSA, 0}, /* revoked */
        {"p=AAAA; v=DKIM1", 0, 0, 0},        /* v= must come first */
        {"v=DKIM1; k=dsa; p=AAAA", 0, 0, 0},
        {"v=DKIM1; s=tls; p=AAAA", 0, 0, 0},
        {"v=DKIM1; k=rsa", 0, 0, 0},
        {"v=DKIM1; p=A!AA", 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dkim_key k;
        char err[160];
        int rc = dkim_key_parse(cases[i].in, strlen(cases[i].in), &k, err, sizeof err);
        CHECK((rc == 0) == cases[i].ok, "case %zu: %s", i, cases[i].in);
        if (rc == 0 && cases[i].ok)
            CHECK((int)k.type == cases[i].type && k.strict == cases[i].strict, "case %zu", i);
    }
}

/* The body hash of body fed in pieces of step bytes equals SHA-256 of want. */
static void body_case(const char *body, int relaxed, long long limit, const char *want, size_t step)
{
    struct dkim_body *b = dkim_body_new(relaxed, DKIM_RSA_SHA256, limit);
    size_t len = strlen(body);
    for (size_t i = 0; i < len; i += step)
        dkim_body_update(b, body + i, len - i < step ? len - i : step);
    unsigned char h[64], w[64];
    unsigned long long total = 0;
    size_t hl = dkim_body_final(b, h, &total);
    dkim_body_free(b);
    unsigned int wl = 0;
    size_t want_len = strlen(want);
    if (limit >= 0 && (size_t)limit < want_len) want_len = (size_t)limit;
    EVP_Digest(want, want_len, w, &wl, EVP_sha256(), NULL);
    CHECK(hl == wl && memcmp(h, w, hl) == 0, "body %s relaxed=%d step=%zu", body, relaxed, step);
    CHECK(total == strlen(want), "total %llu for %s", total, body);
}

static void test_canon(void)
{
    /* RFC 6376 3.4.5 */
    const char *body = " C \r\nD \t E\r\n\r\n\r\n";
    for (size_t step = 1; step <= 20; step += 3) {
        body_case(body, 1, -1, " C\r\nD E\r\n", step);
        body_case(body, 0, -1, " C \r\nD \t E\r\n", step);
    }
    body_case("", 0, -1, "\r\n", 1);
    body_case("", 1, -1, "", 1);
    body_case("\r\n\r\n", 0, -1, "\r\n", 1);
    body_case("no end", 1, -1, "no end\r\n", 2);
    body_case("a\r\nb\r\n", 0, 3, "a\r\nb\r\n", 1); /* l=3 */
    body_case("  \r\nx\r\n", 1, -1, "\r\nx\r\n", 1);

    struct buf out;
    buf_init(&out, 0);
    const char *h = "SUBJect : AbC  \r\n\tdef ";
    dkim_canon_header(h, strlen(h), 1, 1, &out);
    CHECK(out.len == strlen("subject:AbC def\r\n") &&
              memcmp(out.data, "subject:AbC def\r\n", out.len) == 0,
          "relaxed header %.*s", (int)out.len, out.data);
    buf_reset(&out);
    dkim_canon_header(h, strlen(h), 0, 0, &out);
    CHECK(out.len == strlen(h) && memcmp(out.data, h, out.len) == 0, "simple header");
    buf_release(&out);
}

static void test_dmarc_record(void)
{
    static const struct {
        const char *in;
        int rc, p, sp, pct, adkim;
    } cases[] = {
        {"v=DMARC1; p=reject", 1, DMARC_P_REJECT, DMARC_P_REJECT, 100, 0},
        {"v=DMARC1;p=none;sp=quarantine;pct=20;adkim=s", 1, DMARC_P_NONE, DMARC_P_QUARANTINE, 20,
         1},
        {"v=DMARC1; p=bogus; rua=mailto:a@b", 1, DMARC_P_NONE, DMARC_P_NONE, 100, 0},
        {"v=DMARC1; p=bogus", -1, 0, 0, 0, 0},
        {"v=DMARC1; p=none; pct=101", -1, 0, 0, 0, 0},
        {"v=spf1 -all", 0, 0, 0, 0, 0},
        {"hello", 0, 0, 0, 0, 0},
        {"p=reject; v=DMARC1", 0, 0, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dmarc_record r;
        char err[160];
        int rc = dmarc_record_parse(cases[i].in, strlen(cases[i].in), &r, err, sizeof err);
        CHECK(rc == cases[i].rc, "case %zu: %s: %d", i, cases[i].in, rc);
        if (rc == 1)
            CHECK((int)r.p == cases[i].p && (int)r.sp == cases[i].sp && r.pct == cases[i].pct &&
                      r.adkim_strict == cases[i].adkim,
                  "case %zu", i);
    }
}

static void test_psl(void)
{
    const char *list = "// comment\ncom\nco.uk\n*.ck\n!www.ck\n";
    struct psl *l = psl_parse(list, strlen(list));
    static const struct {
        const char *in, *org;
        int rc;
    } cases[] = {
        {"a.b.example.co.uk", "example.co.uk", 0},
        {"example.com", "example.com", 0},
        {"mail.example.com", "example.com", 0},
        {"www.ck", "www.ck", 0},
        {"a.b.ck", "a.b.ck", 0},
        {"a.x.test", "x.test", 0}, /* the default rule "*" */
        {"co.uk", "co.uk", -1},
        {"com", "com", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char org[256];
        int rc = psl_org_domain(l, cases[i].in, org, sizeof org);
        CHECK(rc == cases[i].rc && strcmp(org, cases[i].org) == 0, "%s -> %s (%d)", cases[i].in,
              org, rc);
    }
    CHECK(dmarc_aligned(l, "mail.example.co.uk", "example.co.uk", 0), "relaxed");
    CHECK(!dmarc_aligned(l, "mail.example.co.uk", "example.co.uk", 1), "strict");
    CHECK(!dmarc_aligned(l, "a.co.uk", "b.co.uk", 0), "different organisations");
    psl_free(l);
    psl_free(NULL);

    char d[256];
    const char *f = " \"Alice\" <alice@Example.COM>";
    CHECK(dmarc_from_domain(f, strlen(f), d, sizeof d) == 0 && strcmp(d, "example.com") == 0, "%s",
          d);
    f = "a@b.example, c@d.example";
    CHECK(dmarc_from_domain(f, strlen(f), d, sizeof d) == -1, "two addresses");
}

int main(void)
{
    test_tags();
    test_sig();
    test_key();
    test_canon();
    test_dmarc_record();
    test_psl();
    return check_summary();
}
