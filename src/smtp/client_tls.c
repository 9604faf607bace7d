/* client_tls.c: TLS of an outbound SMTP connection: STARTTLS (RFC 3207) and implicit
 * TLS (RFC 8314), SNI and certificate name checks, and the client TLS context. The
 * dialogue around it (its states, AUTH, and what a TLS failure does) is client.c's;
 * nothing here calls back into it. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/metrics.h"
#include "smtp/client_int.h"

struct smtp_client_tls_ctx {
    SSL_CTX *ctx;
};

/* --- STARTTLS (RFC 3207) ---------------------------------------------------------- */

static int is_ip_literal(const char *s)
{
    unsigned char a[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* 220 to STARTTLS: wrap the connection in TLS; the handshake starts. */
int client_tls_wrap(struct smtp_client *c, char *why, size_t whysize)
{
    if (!c->tls) {
        snprintf(why, whysize, "TLS with %s not possible: no client TLS context is set up",
                 c->peer);
        return -1;
    }
    SSL *ssl = SSL_new(c->tls->ctx);
    if (!ssl) {
        snprintf(why, whysize, "TLS with %s not possible: out of memory", c->peer);
        return -1;
    }
    SSL_set_connect_state(ssl);
    if (c->peer_name && !is_ip_literal(c->peer_name)) SSL_set_tlsext_host_name(ssl, c->peer_name);
    if (c->peer_name) {
        /* checked in every mode so that the log can say "Verified"; only VERIFY
         * makes a failure fatal */
        if (is_ip_literal(c->peer_name))
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), c->peer_name);
        else {
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            SSL_set1_host(ssl, c->peer_name);
        }
    }
    if (c->ca_file) {
        X509_STORE *st = X509_STORE_new();
        if (!st || !X509_STORE_load_file(st, c->ca_file)) {
            X509_STORE_free(st);
            SSL_free(ssl);
            snprintf(why, whysize, "cannot load CA file %s", c->ca_file);
            return -1;
        }
        SSL_set1_verify_cert_store(ssl, st);
        X509_STORE_free(st);
    }
    SSL_set_verify(ssl, c->o.tls == SMTP_CTLS_VERIFY ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);

    /* RFC 3207 4.2 / CVE-2011-0411: nothing the server sent before the handshake
     * may be taken as a reply inside TLS. */
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    struct bufferevent *t = bufferevent_openssl_filter_new(
        c->base, c->bev, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!t) {
        SSL_free(ssl);
        snprintf(why, whysize, "TLS with %s not possible: out of memory", c->peer);
        return -1;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(t, 1);
    c->bev = t;
    return 0;
}

/* The handshake completed. */
void client_tls_done(struct smtp_client *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    smtp_tls_describe(ssl, c->tls_info, sizeof c->tls_info);
    metrics_add(MET_TLS_HANDSHAKES, 1, "outbound", SSL_get_version(ssl));
    c->tls_on = 1;
    c->tls_verified =
        SSL_get0_peer_certificate(ssl) && SSL_get_verify_result(ssl) == X509_V_OK && c->peer_name;
    log_info("smtp", "%s TLS connection established to %s: %s",
             c->tls_verified ? "Verified" : "Untrusted", c->peer, c->tls_info);
    /* RFC 3207 4.2: forget everything learnt before TLS. */
    memset(&c->caps, 0, sizeof c->caps);
}

void client_tls_failure(struct smtp_client *c, short what, char *out, size_t outsize)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (c->o.tls == SMTP_CTLS_VERIFY && vr != X509_V_OK) {
        snprintf(out, outsize, "TLS handshake with %s failed: certificate verification failed: %s",
                 c->peer, X509_verify_cert_error_string(vr));
        return;
    }
    unsigned long e, first = 0;
    while ((e = bufferevent_get_openssl_error(c->bev)))
        if (!first) first = e;
    char why[256];
    if (first)
        ERR_error_string_n(first, why, sizeof why);
    else if (what & BEV_EVENT_TIMEOUT)
        str_copy(why, "timed out", sizeof why);
    else if (what & BEV_EVENT_EOF)
        str_copy(why, "connection closed by peer", sizeof why);
    else
        str_copy(why, errno ? strerror(errno) : "unknown error", sizeof why);
    snprintf(out, outsize, "TLS handshake with %s failed: %s", c->peer, why);
}

struct smtp_client_tls_ctx *smtp_client_tls_new(char *err, size_t errsize)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        unsigned long e = ERR_get_error();
        snprintf(err, errsize, "SSL_CTX_new: %s", e ? ERR_reason_error_string(e) : "unknown error");
        ERR_clear_error();
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* the system store; a missing one only makes verification fail later */
    SSL_CTX_set_default_verify_paths(ctx);
    ERR_clear_error();
    struct smtp_client_tls_ctx *t = xcalloc(1, sizeof *t);
    t->ctx = ctx;
    return t;
}

void smtp_client_tls_free(struct smtp_client_tls_ctx *t)
{
    if (!t) return;
    SSL_CTX_free(t->ctx); /* running SSLs hold their own reference */
    free(t);
}
