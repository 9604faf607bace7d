/* tls.c: server TLS contexts per listener (OpenSSL 3): certificates chosen by SNI,
 * one protocol and cipher policy, self-signed certificates for first start. The
 * STARTTLS dialogue and the bufferevent plumbing are server.c's. */
#include "core/compat.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/core.h"
#include "smtp/smtp.h"

/* TLS 1.2: forward secrecy and AEAD only (Mozilla "intermediate"); TLS 1.3 keeps
 * OpenSSL's default suites, all of which are AEAD with forward secrecy. */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                                   \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"

/* One certificate: its own SSL_CTX (SNI switches the connection to it). */
struct tls_cert {
    SSL_CTX *ctx;
    X509 *x509; /* borrowed from ctx */
};

/* The whole object hangs off the default SSL_CTX as ex_data and is freed together
 * with it, i.e. when smtp_tls_free() was called and the last SSL using it is gone:
 * the SNI callback of a running handshake never sees freed memory. */
struct smtp_tls {
    struct tls_cert *certs; /* [0] is the default */
    size_t ncerts;
};

static int tls_ex_index = -1;
static pthread_once_t tls_ex_once = PTHREAD_ONCE_INIT;

static void tls_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    struct smtp_tls *t = ptr;
    if (!t) return;
    /* certs[0].ctx is the parent being freed right now */
    for (size_t i = 1; i < t->ncerts; i++)
        SSL_CTX_free(t->certs[i].ctx);
    free(t->certs);
    free(t);
}

static void tls_ex_init(void)
{
    tls_ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tls_ex_free);
}

/* err = "what: OpenSSL's reason (detail)" from the first queued error, the most
 * specific one; empties the error queue. */
static void tls_err(char *err, size_t errsize, const char *what)
{
    const char *data = NULL;
    int flags = 0;
    unsigned long e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags);
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    char other[64];
    if (!reason) {
        snprintf(other, sizeof other, e ? "error %lx" : "unknown error", e);
        reason = other;
    }
    if (!(flags & ERR_TXT_STRING) || !data || !*data) data = NULL;
    if (err && errsize)
        snprintf(err, errsize, data ? "%s: %s (%s)" : "%s: %s%s", what, reason, data ? data : "");
    ERR_clear_error();
}

/* The file must be readable now: gives "no such file or directory" with the name,
 * which OpenSSL 3 only reports as "system lib". */
static int readable(const char *path, char *err, size_t errsize)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errsize, "%s: %s", path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

/* A context with kurier's policy and one certificate/key. NULL with err filled. */
static SSL_CTX *ctx_load(const char *cert, const char *key, char *err, size_t errsize)
{
    ERR_clear_error();
    if (!cert || !key) {
        snprintf(err, errsize, "TLS needs a certificate and a key file");
        return NULL;
    }
    if (readable(cert, err, errsize) < 0 || readable(key, err, errsize) < 0) return NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        tls_err(err, errsize, "SSL_CTX_new");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_clear_options(ctx, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
    /* 10,000 idle sessions: give the 2 x 16 KiB record buffers back when idle. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"kurier", 6);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        tls_err(err, errsize, "cipher list");
        goto fail;
    }
    char what[1024];
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(what, sizeof what, "%s: cannot load the certificate", cert);
        tls_err(err, errsize, what);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        unsigned long e = ERR_peek_error();
        if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(what, sizeof what, "%s: not the key of %s", key, cert);
        else
            snprintf(what, sizeof what, "%s: cannot load the private key", key);
        tls_err(err, errsize, what);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* RFC 6066 3: pick the certificate for the requested name; none matching (or no
 * name) keeps the default. Never refuses the handshake. */
static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    struct smtp_tls *t = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || !*name) return SSL_TLSEXT_ERR_OK;
    size_t len = strlen(name);
    if (len && name[len - 1] == '.') len--; /* "mx.example.org." */
    for (size_t i = 0; i < t->ncerts; i++) {
        /* RFC 6125 6.4: SAN DNS names, CN only when there are none; "*" is a whole
         * left-most label. */
        if (X509_check_host(t->certs[i].x509, name, len, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                            NULL) == 1) {
            if (i > 0 && !SSL_set_SSL_CTX(ssl, t->certs[i].ctx)) {
                *alert = SSL_AD_INTERNAL_ERROR;
                return SSL_TLSEXT_ERR_ALERT_FATAL;
            }
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_OK;
}

static void certs_push(struct smtp_tls *t, SSL_CTX *ctx)
{
    t->certs = xrealloc(t->certs, (t->ncerts + 1) * sizeof *t->certs);
    t->certs[t->ncerts].ctx = ctx;
    t->certs[t->ncerts].x509 = SSL_CTX_get0_certificate(ctx);
    t->ncerts++;
}

struct smtp_tls *smtp_tls_new(const char *cert, const char *key, char *err, size_t errsize)
{
    pthread_once(&tls_ex_once, tls_ex_init);
    if (tls_ex_index < 0) {
        tls_err(err, errsize, "SSL_CTX_get_ex_new_index");
        return NULL;
    }
    SSL_CTX *ctx = ctx_load(cert, key, err, errsize);
    if (!ctx) return NULL;
    struct smtp_tls *t = xcalloc(1, sizeof *t);
    if (!SSL_CTX_set_ex_data(ctx, tls_ex_index, t)) {
        free(t);
        tls_err(err, errsize, "SSL_CTX_set_ex_data");
        SSL_CTX_free(ctx);
        return NULL;
    }
    certs_push(t, ctx);
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, t);
    return t;
}

int smtp_tls_add_sni(struct smtp_tls *t, const char *cert, const char *key, char *err,
                     size_t errsize)
{
    SSL_CTX *ctx = ctx_load(cert, key, err, errsize);
    if (!ctx) return -1;
    certs_push(t, ctx);
    return 0;
}

struct smtp_tls *smtp_tls_for_listener(const struct conf_listen *l, char *err, size_t errsize)
{
    if (l->tls == LISTEN_TLS_NONE) return NULL;
    struct smtp_tls *t = smtp_tls_new(l->tls_cert, l->tls_key, err, errsize);
    if (!t) return NULL;
    if (l->sni_certs) {
        glob_t g;
        if (glob(l->sni_certs, 0, NULL, &g) == 0) {
            for (size_t i = 0; i < g.gl_pathc; i++) {
                if (smtp_tls_add_sni(t, g.gl_pathv[i], g.gl_pathv[i], err, errsize) != 0) {
                    globfree(&g);
                    smtp_tls_free(t);
                    return NULL;
                }
            }
            globfree(&g);
        }
    }
    return t;
}

SSL *smtp_tls_ssl_new(struct smtp_tls *t)
{
    SSL *ssl = SSL_new(t->certs[0].ctx);
    if (!ssl) {
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

void smtp_tls_free(struct smtp_tls *t)
{
    if (!t) return;
    /* frees t through tls_ex_free once no SSL holds the default context */
    SSL_CTX_free(t->certs[0].ctx);
}

const char *smtp_tls_describe(SSL *ssl, char *buf, size_t size)
{
    if (!size) return buf;
    const SSL_CIPHER *c = ssl ? SSL_get_current_cipher(ssl) : NULL;
    if (!c) {
        str_copy(buf, "no TLS", size);
        return buf;
    }
    int alg_bits = 0;
    int bits = SSL_CIPHER_get_bits(c, &alg_bits);
    snprintf(buf, size, "%s with cipher %s (%d/%d bits)", SSL_get_version(ssl),
             SSL_CIPHER_get_name(c), bits, alg_bits);
    return buf;
}

/* --- self-signed certificates ----------------------------------------------- */

/* Write a PEM object to path atomically (temporary file, fsync, rename) with
 * exactly the given mode and group (unchanged when (gid_t)-1). 0 done, -1 with err
 * filled. */
static int write_pem(const char *path, mode_t mode, gid_t group, EVP_PKEY *pkey, X509 *x509,
                     char *err, size_t errsize)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        snprintf(err, errsize, "%s: file name too long", path);
        return -1;
    }
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(err, errsize, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    /* group first: the key is readable by that group only once it is the right one */
    if ((group != (gid_t)-1 && fchown(fd, (uid_t)-1, group) != 0) ||
        fchmod(fd, mode) != 0) { /* the umask may have taken bits of 0644 */
        snprintf(err, errsize, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        snprintf(err, errsize, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    int ok =
        pkey ? PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, x509);
    if (!ok) {
        tls_err(err, errsize, tmp);
        fclose(f);
        unlink(tmp);
        return -1;
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        snprintf(err, errsize, "%s: %s", tmp, strerror(errno));
        fclose(f);
        unlink(tmp);
        return -1;
    }
    if (fclose(f) != 0) {
        snprintf(err, errsize, "%s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, errsize, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Add one v3 extension from its text form (value is ours, never peer input). */
static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext) return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* subjectAltName DNS:host built as a structure: host never goes through the
 * comma-separated config syntax. */
static int add_san(X509 *x, const char *host)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *gen = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    int ok = gens && gen && ia5 && ASN1_STRING_set(ia5, host, (int)strlen(host));
    if (ok) {
        GENERAL_NAME_set0_value(gen, GEN_DNS, ia5);
        ia5 = NULL;
        ok = sk_GENERAL_NAME_push(gens, gen) > 0;
        if (ok) gen = NULL;
    }
    if (ok) ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1;
    ASN1_IA5STRING_free(ia5);
    GENERAL_NAME_free(gen);
    GENERAL_NAMES_free(gens);
    return ok ? 0 : -1;
}

static X509 *make_cert(const char *host, EVP_PKEY *pkey)
{
    X509 *x = X509_new();
    if (!x) return NULL;
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    ASN1_INTEGER *sn = NULL;
    X509_NAME *name = NULL;
    int ok = X509_set_version(x, X509_VERSION_3) && RAND_bytes(serial, sizeof serial) == 1;
    if (ok) {
        serial[0] &= 0x7f; /* RFC 5280 4.1.2.2: positive, at most 20 octets */
        serial[0] |= 0x40; /* and never shortened to fewer octets */
        ok = (bn = BN_bin2bn(serial, sizeof serial, NULL)) != NULL &&
             (sn = BN_to_ASN1_INTEGER(bn, NULL)) != NULL && X509_set_serialNumber(x, sn);
    }
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL &&
         X509_gmtime_adj(X509_getm_notAfter(x), 730L * 24 * 3600) != NULL;
    if (ok) ok = (name = X509_NAME_new()) != NULL;
    ok = ok &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)host, -1, -1,
                                    0) &&
         X509_set_subject_name(x, name) && X509_set_issuer_name(x, name) &&
         X509_set_pubkey(x, pkey);
    ok = ok && add_san(x, host) == 0 &&
         add_ext(x, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
         add_ext(x, NID_key_usage, "critical,digitalSignature") == 0 &&
         add_ext(x, NID_ext_key_usage, "serverAuth") == 0 &&
         add_ext(x, NID_subject_key_identifier, "hash") == 0 &&
         X509_sign(x, pkey, EVP_sha256()) > 0;
    X509_NAME_free(name);
    ASN1_INTEGER_free(sn);
    BN_free(bn);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

int smtp_tls_selfsigned(const char *host, const char *certfile, const char *keyfile,
                        gid_t key_group, char *err, size_t errsize)
{
    ERR_clear_error();
    size_t hlen = host ? strlen(host) : 0;
    if (!hlen || hlen > 253 || !addr_domain_valid(host, hlen, 0)) {
        snprintf(err, errsize, "\"%s\" is not a valid host name", host ? host : "");
        return -1;
    }
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!pkey) {
        tls_err(err, errsize, "generating a P-256 key");
        return -1;
    }
    X509 *x = make_cert(host, pkey);
    if (!x) {
        tls_err(err, errsize, "making the certificate");
        EVP_PKEY_free(pkey);
        return -1;
    }
    mode_t key_mode = key_group != (gid_t)-1 ? 0640 : 0600;
    int r = write_pem(keyfile, key_mode, key_group, pkey, NULL, err, errsize);
    if (r == 0) r = write_pem(certfile, 0644, (gid_t)-1, NULL, x, err, errsize);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return r;
}
