/* test_dkim_verify.c: table tests for DKIM verification's and DMARC's pure parts:
 * tag lists as the verifier reads them, signatures, key records, canonicalization
 * (RFC 6376 3.4.5's example) through the verifier's parameters, a signature made here
 * and checked by dkim_sig_check(), DMARC records, the public suffix list and From:
 * domains (core/dkim.c, core/dkim_verify.c, core/dmarc.c). The signer's side of
 * core/dkim.c: test_dkim.c. */
#include "core/compat.h"

#include <openssl/evp.h>

#include "core/buf.h"
#include "core/dkim.h"
#include "core/header.h"
#include "core/dkim_verify.h"
#include "core/dmarc.h"
#include "core/util.h"

#include "check.h"

static void test_tags(void)
{
    static const struct {
        const char *in;
        int n; /* -1: malformed */
    } cases[] = {
        {"a=1; b=2", 2}, {" a = 1 ;\r\n\tb=x y ; ", 2},
        {"a=", 1},       {"", 0},
        {"a=1;a=2", -1}, {"=1", -1},
        {"a", -1},       {"1a=2", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dkim_tag t[DKIM_TAGS_MAX];
        int n = dkim_tags_parse(cases[i].in, strlen(cases[i].in), t, DKIM_TAGS_MAX, NULL);
        CHECK(n == cases[i].n, "case %zu: %s: n=%d", i, cases[i].in, n);
    }
    struct dkim_tag t[4];
    CHECK(dkim_tags_parse(" b = x  y ;", 11, t, 4, NULL) == 1 && t[0].value_len == 4 &&
              memcmp(t[0].value, "x  y", 4) == 0,
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

/* The body hash of body fed in pieces of step bytes, as the verifier sets it up from
 * c= and l= (limit -1: none), equals SHA-256 of want. */
static void body_case(const char *body, int relaxed, long long limit, const char *want, size_t step)
{
    struct dkim_body b;
    dkim_body_init(&b, relaxed ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE,
                   limit >= 0 ? (uint64_t)limit : UINT64_MAX);
    size_t len = strlen(body);
    for (size_t i = 0; i < len; i += step)
        dkim_body_feed(&b, body + i, len - i < step ? len - i : step);
    unsigned char h[32], w[64];
    dkim_body_final(&b, h);
    unsigned int wl = 0;
    size_t want_len = strlen(want);
    if (limit >= 0 && (size_t)limit < want_len) want_len = (size_t)limit;
    EVP_Digest(want, want_len, w, &wl, EVP_sha256(), NULL);
    CHECK(wl == sizeof h && memcmp(h, w, sizeof h) == 0, "body %s relaxed=%d step=%zu", body,
          relaxed, step);
    CHECK(b.length == strlen(want), "total %llu for %s", (unsigned long long)b.length, body);
}

/* One header field canonicalized as the verifier does it. */
static void canon_field(const char *field, enum dkim_canon c, int crlf, struct buf *out)
{
    struct hdr_field f;
    CHECK(hdr_next(field, strlen(field), &f) > 0, "field %s", field);
    dkim_canon_header(out, c, f.name, f.name_len, f.value, f.value_len, crlf);
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
    canon_field(h, DKIM_CANON_RELAXED, 1, &out);
    CHECK(out.len == strlen("subject:AbC def\r\n") &&
              memcmp(out.data, "subject:AbC def\r\n", out.len) == 0,
          "relaxed header %.*s", (int)out.len, out.data);
    buf_reset(&out);
    canon_field(h, DKIM_CANON_SIMPLE, 0, &out);
    CHECK(out.len == strlen(h) && memcmp(out.data, h, out.len) == 0, "simple header");
    buf_release(&out);
}

/* A signature made here over a header section with core/dkim.c's selection and b=
 * removal checks with dkim_sig_check(); a changed field, or a wrong key, does not. */
static void test_sig_check(void)
{
    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    CHECK(kc && EVP_PKEY_keygen_init(kc) == 1 && EVP_PKEY_keygen(kc, &pk) == 1, "keygen");
    EVP_PKEY_CTX_free(kc);
    struct dkim_key key = {.type = DKIM_KEY_ED25519};
    key.plen = sizeof key.p;
    CHECK(EVP_PKEY_get_raw_public_key(pk, key.p, &key.plen) == 1 && key.plen == 32, "pub");

    const char *hdrs = "Received: x\r\nFrom: A <a@x.test>\r\nTo:  b@y.test\r\n"
                       "Subject: Hi\r\n\tthere\r\n";
    const char *head = "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=x.test;\r\n"
                       "\ts=sel; h=from:to:subject:from; bh=AAAA;\r\n\tb=";
    struct buf data, field;
    buf_init(&data, 0);
    buf_init(&field, 0);
    dkim_select_headers(&data, DKIM_CANON_RELAXED, hdrs, strlen(hdrs), "from:to:subject:from", 20);
    struct hdr_field f;
    CHECK(hdr_next(head, strlen(head), &f) > 0, "field");
    dkim_sig_field_canon(&data, DKIM_CANON_RELAXED, f.name, f.name_len, f.value, f.value_len);
    unsigned char h[32], sigb[64];
    unsigned int hl = 0;
    size_t sl = sizeof sigb;
    EVP_Digest(data.data, data.len, h, &hl, EVP_sha256(), NULL);
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    CHECK(EVP_DigestSignInit(mc, NULL, NULL, NULL, pk) == 1 &&
              EVP_DigestSign(mc, sigb, &sl, h, hl) == 1,
          "sign");
    EVP_MD_CTX_free(mc);
    char b64[100];
    size_t bl = 0;
    base64_encode(sigb, sl, b64, sizeof b64, &bl);
    buf_printf(&field, "%s%s", head, b64);

    struct dkim_sig sig;
    char err[160];
    CHECK(hdr_next(field.data, field.len, &f) > 0, "signed field");
    CHECK(dkim_sig_parse(f.value, f.value_len, &sig, err, sizeof err) == 0, "%s", err);
    int bits = 0;
    CHECK(dkim_sig_check(&sig, &key, hdrs, strlen(hdrs), field.data, field.len, &bits, err,
                         sizeof err) == 1 &&
              bits == 256,
          "valid: %s", err);
    const char *changed = "Received: x\r\nFrom: A <a@x.test>\r\nTo:  b@y.test\r\n"
                          "Subject: Hi\r\n\tthere!\r\n";
    CHECK(dkim_sig_check(&sig, &key, changed, strlen(changed), field.data, field.len, &bits, err,
                         sizeof err) == 0,
          "changed subject");
    /* an added From: above is what the over-signing catches */
    const char *added = "From: evil@z.test\r\nReceived: x\r\nFrom: A <a@x.test>\r\n"
                        "To:  b@y.test\r\nSubject: Hi\r\n\tthere\r\n";
    CHECK(dkim_sig_check(&sig, &key, added, strlen(added), field.data, field.len, &bits, err,
                         sizeof err) == 0,
          "added From:");
    key.p[0] ^= 1;
    CHECK(dkim_sig_check(&sig, &key, hdrs, strlen(hdrs), field.data, field.len, &bits, err,
                         sizeof err) != 1,
          "wrong key");
    buf_release(&data);
    buf_release(&field);
    EVP_PKEY_free(pk);
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
    test_sig_check();
    test_dmarc_record();
    test_psl();
    return check_summary();
}
