/* test_tls.c: smtp/tls.c without network: self-signed certificates in a temporary
 * folder, loading errors, and in-memory handshakes (BIO pairs) checking the SNI
 * choice, the protocol floor and the Postfix-style description. */
#include "core/compat.h"

#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/core.h"
#include "smtp/smtp.h"

#include "check.h"

static char dir[256];

static char *path(const char *name)
{
    return xasprintf("%s/%s", dir, name);
}

/* A certificate with arbitrary names that smtp_tls_selfsigned does not make:
 * san = "DNS:*.wild.test" or NULL for a CN-only certificate. */
static int write_custom(const char *cn, const char *san, const char *certfile, const char *keyfile)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    int ok = pkey && x && name && X509_set_version(x, X509_VERSION_3) &&
             ASN1_INTEGER_set(X509_get_serialNumber(x), 7) &&
             X509_gmtime_adj(X509_getm_notBefore(x), 0) &&
             X509_gmtime_adj(X509_getm_notAfter(x), 3600) &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                        -1, 0) &&
             X509_set_subject_name(x, name) && X509_set_issuer_name(x, name) &&
             X509_set_pubkey(x, pkey);
    if (ok && san) {
        X509V3_CTX v3;
        X509V3_set_ctx_nodb(&v3);
        X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
        ok = ext && X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    ok = ok && X509_sign(x, pkey, EVP_sha256()) > 0;
    FILE *fc = ok ? fopen(certfile, "w") : NULL;
    FILE *fk = ok ? fopen(keyfile, "w") : NULL;
    ok = fc && fk && PEM_write_X509(fc, x) &&
         PEM_write_PrivateKey(fk, pkey, NULL, NULL, 0, NULL, NULL);
    if (fc) fclose(fc);
    if (fk) fclose(fk);
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return ok ? 0 : -1;
}

struct client_opts {
    const char *sni;
    int max_version; /* 0: any */
    const char *ciphers;
};

/* Handshake a client against a server SSL through a BIO pair. 0 when both sides
 * finished; cn receives the server certificate's CN. The server SSL is freed. */
static int handshake(SSL *srv, const struct client_opts *o, char *cn, size_t cnsize, char *desc,
                     size_t descsize)
{
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
    if (o->max_version) {
        SSL_CTX_set_min_proto_version(cctx, 0);
        SSL_CTX_set_max_proto_version(cctx, o->max_version);
    }
    if (o->ciphers) SSL_CTX_set_cipher_list(cctx, o->ciphers);
    SSL *cli = SSL_new(cctx);
    SSL_set_connect_state(cli);
    if (o->sni) SSL_set_tlsext_host_name(cli, o->sni);
    BIO *bc, *bs;
    BIO_new_bio_pair(&bc, 0, &bs, 0);
    SSL_set_bio(cli, bc, bc);
    SSL_set_bio(srv, bs, bs);
    int cdone = 0, sdone = 0, rc = -1;
    for (int i = 0; i < 100 && !(cdone && sdone); i++) {
        if (!cdone) {
            int r = SSL_do_handshake(cli);
            if (r == 1)
                cdone = 1;
            else if (SSL_get_error(cli, r) != SSL_ERROR_WANT_READ)
                break;
        }
        if (!sdone) {
            int r = SSL_do_handshake(srv);
            if (r == 1)
                sdone = 1;
            else if (SSL_get_error(srv, r) != SSL_ERROR_WANT_READ)
                break;
        }
    }
    if (cdone && sdone) {
        rc = 0;
        cn[0] = '\0';
        X509 *peer = SSL_get1_peer_certificate(cli);
        if (peer) {
            X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, (int)cnsize);
            X509_free(peer);
        }
        smtp_tls_describe(srv, desc, descsize);
    }
    ERR_clear_error();
    SSL_free(cli);
    SSL_free(srv);
    SSL_CTX_free(cctx);
    return rc;
}

static void test_selfsigned(void)
{
    char err[512];
    char *crt = path("a.crt"), *key = path("a.key");
    CHECK(smtp_tls_selfsigned("mx.example.org", crt, key, (gid_t)-1, err, sizeof err) == 0,
          "selfsigned: %s", err);
    struct stat st;
    CHECK(stat(key, &st) == 0 && (st.st_mode & 07777) == 0600, "key mode %o",
          (unsigned)(st.st_mode & 07777));
    CHECK(stat(crt, &st) == 0 && (st.st_mode & 07777) == 0644, "cert mode %o",
          (unsigned)(st.st_mode & 07777));

    /* the certificate says what was asked */
    FILE *f = fopen(crt, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f) fclose(f);
    CHECK(x != NULL, "certificate readable");
    if (x) {
        char cn[256] = "";
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
        CHECK(strcmp(cn, "mx.example.org") == 0, "CN %s", cn);
        CHECK(X509_check_host(x, "mx.example.org", 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL) ==
                  1,
              "SAN DNS:mx.example.org");
        CHECK(X509_check_host(x, "other.example.org", 0, 0, NULL) == 0, "no other names");
        int days = 0, secs = 0;
        ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x));
        CHECK(days >= 729 && days <= 731, "valid %d days", days);
        EVP_PKEY *pk = X509_get0_pubkey(x);
        CHECK(pk && EVP_PKEY_is_a(pk, "EC"), "EC key");
        CHECK(X509_check_ca(x) == 0, "not a CA");
        CHECK(X509_get_version(x) == X509_VERSION_3, "v3");
        X509_free(x);
    }

    /* overwriting replaces the files and keeps the modes */
    CHECK(chmod(key, 0644) == 0 &&
              smtp_tls_selfsigned("mx.example.org", crt, key, (gid_t)-1, err, sizeof err) == 0 &&
              stat(key, &st) == 0 && (st.st_mode & 07777) == 0600,
          "replacing restores 0600");

    /* with the daemon's group: 0640 and that group, from the moment it is there */
    CHECK(smtp_tls_selfsigned("mx.example.org", crt, key, getegid(), err, sizeof err) == 0 &&
              stat(key, &st) == 0 && (st.st_mode & 07777) == 0640 && st.st_gid == getegid(),
          "key for a group: mode %o gid %u", (unsigned)(st.st_mode & 07777), (unsigned)st.st_gid);

    /* bad host names and unwritable places */
    static const char *bad_hosts[] = {"", "bad host", "a,DNS:evil.test", "-x.test", "a..b"};
    for (size_t i = 0; i < sizeof bad_hosts / sizeof bad_hosts[0]; i++) {
        char *c2 = path("bad.crt"), *k2 = path("bad.key");
        CHECK(smtp_tls_selfsigned(bad_hosts[i], c2, k2, (gid_t)-1, err, sizeof err) == -1 &&
                  access(k2, F_OK) != 0,
              "host \"%s\" refused", bad_hosts[i]);
        free(c2);
        free(k2);
    }
    CHECK(smtp_tls_selfsigned("mx.example.org", "/nonexistent-dir/c.pem", "/nonexistent-dir/k.pem",
                              (gid_t)-1, err, sizeof err) == -1 &&
              strstr(err, "/nonexistent-dir/k.pem"),
          "unwritable: %s", err);
    free(crt);
    free(key);
}

static void test_load_errors(void)
{
    char err[512];
    char *crt = path("a.crt"), *key = path("a.key");
    char *missing = path("missing.pem"), *garbage = path("garbage.pem");
    char *bcrt = path("b0.crt"), *bkey = path("b0.key");
    FILE *f = fopen(garbage, "w");
    if (f) {
        fputs("not a certificate\n", f);
        fclose(f);
    }
    smtp_tls_selfsigned("other.example.org", bcrt, bkey, (gid_t)-1, err, sizeof err);

    struct {
        const char *cert, *key, *want1, *want2;
    } cases[] = {
        {missing, key, missing, "No such file"},
        {crt, missing, missing, "No such file"},
        {garbage, key, garbage, "no start line"},
        {crt, garbage, garbage, ""},
        {crt, bkey, bkey, "mismatch"},
        {NULL, key, "certificate", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        struct smtp_tls *t = smtp_tls_new(cases[i].cert, cases[i].key, err, sizeof err);
        CHECK(t == NULL && strstr(err, cases[i].want1) && strstr(err, cases[i].want2),
              "load case %zu: got \"%s\"", i, err);
        smtp_tls_free(t);
    }
    /* one PEM file holding certificate and key, in either order (SNI folders) */
    char *comb = path("comb.pem");
    for (int order = 0; order < 2; order++) {
        size_t lc, lk;
        char *c = file_read(crt, &lc), *k = file_read(key, &lk);
        FILE *cf = fopen(comb, "w");
        if (cf && c && k) {
            fwrite(order ? k : c, 1, order ? lk : lc, cf);
            fwrite(order ? c : k, 1, order ? lc : lk, cf);
        }
        if (cf) fclose(cf);
        free(c);
        free(k);
        struct smtp_tls *ct = smtp_tls_new(comb, comb, err, sizeof err);
        CHECK(ct != NULL, "combined PEM, order %d: %s", order, err);
        smtp_tls_free(ct);
    }
    unlink(comb);
    free(comb);

    struct smtp_tls *t = smtp_tls_new(crt, key, err, sizeof err);
    CHECK(t != NULL, "load: %s", err);
    CHECK(t && smtp_tls_add_sni(t, bcrt, key, err, sizeof err) == -1 && strstr(err, "mismatch"),
          "add_sni mismatch: %s", err);
    CHECK(ERR_peek_error() == 0, "error queue left empty");
    smtp_tls_free(t);
    smtp_tls_free(NULL);
    free(crt);
    free(key);
    free(missing);
    free(garbage);
    free(bcrt);
    free(bkey);
}

struct sni_case {
    const char *sni;
    const char *cn; /* expected server certificate CN */
};

static const struct sni_case sni_cases[] = {
    {NULL, "mx.example.org"},
    {"mx.example.org", "mx.example.org"},
    {"mail.other.test", "mail.other.test"},
    {"MAIL.Other.TEST", "mail.other.test"},
    {"mail.other.test.", "mail.other.test"},
    {"x.wild.test", "wildcard"},
    {"a.b.wild.test", "mx.example.org"}, /* "*" is one label */
    {"wild.test", "mx.example.org"},
    {"cn-only.test", "cn-only.test"},       /* CN when there is no SAN */
    {"named.test", "cn-of-named.test"},     /* matched by its SAN */
    {"cn-of-named.test", "mx.example.org"}, /* CN ignored when SANs exist */
    {"unknown.example", "mx.example.org"},
    {"other.test", "mx.example.org"},
};

static void test_sni(void)
{
    char err[512], cn[256], desc[128];
    char *crt = path("a.crt"), *key = path("a.key");
    char *bcrt = path("b.crt"), *bkey = path("b.key");
    char *wcrt = path("w.crt"), *wkey = path("w.key");
    char *ccrt = path("c.crt"), *ckey = path("c.key");
    char *ncrt = path("n.crt"), *nkey = path("n.key");
    CHECK(smtp_tls_selfsigned("mail.other.test", bcrt, bkey, (gid_t)-1, err, sizeof err) == 0,
          "b: %s", err);
    CHECK(write_custom("wildcard", "DNS:*.wild.test", wcrt, wkey) == 0, "wildcard cert");
    CHECK(write_custom("cn-only.test", NULL, ccrt, ckey) == 0, "CN-only cert");
    CHECK(write_custom("cn-of-named.test", "DNS:named.test", ncrt, nkey) == 0, "named cert");

    struct smtp_tls *t = smtp_tls_new(crt, key, err, sizeof err);
    CHECK(t != NULL, "default: %s", err);
    if (!t) return;
    CHECK(smtp_tls_add_sni(t, bcrt, bkey, err, sizeof err) == 0, "sni b: %s", err);
    CHECK(smtp_tls_add_sni(t, wcrt, wkey, err, sizeof err) == 0, "sni w: %s", err);
    CHECK(smtp_tls_add_sni(t, ccrt, ckey, err, sizeof err) == 0, "sni c: %s", err);
    CHECK(smtp_tls_add_sni(t, ncrt, nkey, err, sizeof err) == 0, "sni n: %s", err);

    for (size_t i = 0; i < sizeof sni_cases / sizeof sni_cases[0]; i++) {
        struct client_opts o = {.sni = sni_cases[i].sni};
        SSL *s = smtp_tls_ssl_new(t);
        int r = handshake(s, &o, cn, sizeof cn, desc, sizeof desc);
        CHECK(r == 0 && strcmp(cn, sni_cases[i].cn) == 0, "SNI %s: got %s, want %s",
              sni_cases[i].sni ? sni_cases[i].sni : "(none)", r == 0 ? cn : "(failed)",
              sni_cases[i].cn);
    }

    /* descriptions */
    struct client_opts o13 = {.sni = "mx.example.org"};
    CHECK(handshake(smtp_tls_ssl_new(t), &o13, cn, sizeof cn, desc, sizeof desc) == 0 &&
              strncmp(desc, "TLSv1.3 with cipher TLS_", 24) == 0 && strstr(desc, " bits)"),
          "TLS 1.3 description: %s", desc);
    struct client_opts o12 = {.max_version = TLS1_2_VERSION};
    CHECK(handshake(smtp_tls_ssl_new(t), &o12, cn, sizeof cn, desc, sizeof desc) == 0 &&
              strcmp(desc, "TLSv1.2 with cipher ECDHE-ECDSA-AES256-GCM-SHA384 (256/256 bits)") == 0,
          "TLS 1.2 description: %s", desc);
    char small[8];
    CHECK(strcmp(smtp_tls_describe(NULL, small, sizeof small), "no TLS") == 0, "no TLS");

    /* policy: no TLS 1.1, no CBC or static-RSA suites in TLS 1.2 */
    struct client_opts o11 = {.max_version = TLS1_1_VERSION, .ciphers = "DEFAULT:@SECLEVEL=0"};
    CHECK(handshake(smtp_tls_ssl_new(t), &o11, cn, sizeof cn, desc, sizeof desc) == -1,
          "TLS 1.1 refused");
    struct client_opts ocbc = {.max_version = TLS1_2_VERSION,
                               .ciphers = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384"};
    CHECK(handshake(smtp_tls_ssl_new(t), &ocbc, cn, sizeof cn, desc, sizeof desc) == -1,
          "CBC suites refused");
    struct client_opts ochacha = {.max_version = TLS1_2_VERSION,
                                  .ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305"};
    CHECK(handshake(smtp_tls_ssl_new(t), &ochacha, cn, sizeof cn, desc, sizeof desc) == 0 &&
              strstr(desc, "CHACHA20"),
          "ChaCha20 accepted: %s", desc);

    /* an SSL outlives its context: freeing t mid-way is safe (ASan watches) */
    SSL *late = smtp_tls_ssl_new(t);
    smtp_tls_free(t);
    struct client_opts ob = {.sni = "mail.other.test"};
    CHECK(handshake(late, &ob, cn, sizeof cn, desc, sizeof desc) == 0 &&
              strcmp(cn, "mail.other.test") == 0,
          "SNI after smtp_tls_free: %s", cn);

    char *files[] = {crt, key, bcrt, bkey, wcrt, wkey, ccrt, ckey, ncrt, nkey};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        free(files[i]);
}

static void cleanup(void)
{
    static const char *names[] = {"a.crt",  "a.key", "b.crt",      "b.key", "b0.crt",
                                  "b0.key", "w.crt", "w.key",      "c.crt", "c.key",
                                  "n.crt",  "n.key", "garbage.pem"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *p = path(names[i]);
        unlink(p);
        free(p);
    }
    rmdir(dir);
}

int main(void)
{
    str_copy(dir, "/tmp/kurier-test-tls-XXXXXX", sizeof dir);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_selfsigned();
    test_load_errors();
    test_sni();
    cleanup();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
