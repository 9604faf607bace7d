/* notify.c: telling people about a blocklist change of one of our addresses (the
 * monitor's events): a plain-text mail in en/de committed into the spool like a DSN,
 * and a JSON POST to a webhook (libevent's HTTP client). Never blocks, never retries;
 * what to do about a listing is the egress pools' business. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/core.h"
#include "core/esmtp.h"
#include "core/mime.h"
#include "dns/dns.h"
#include "egress/monitor.h"
#include "queue/queue.h"

#define WEBHOOKS_MAX 32         /* POSTs in flight; more are dropped (logged) */
#define WEBHOOK_REPLY_MAX 65536 /* bytes of a webhook's answer we read */
/* Report mails per hour: a resolver that every list refuses, or a whole network
 * listed at once, must not flood the postmaster (the log, the history and the webhook
 * still have every change). */
#define MAILS_PER_HOUR 20

/* --- texts ---------------------------------------------------------------------- */

static void iso_time(char *dst, size_t size, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(dst, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

char *monitor_event_json(const struct monitor_event *ev, const char *host)
{
    struct buf b;
    buf_init(&b, 0);
    char since[32], at[32];
    iso_time(since, sizeof since, ev->since);
    iso_time(at, sizeof at, ev->time);
    const char *fields[][2] = {
        {"event", monitor_state_name(ev->state)},
        {"address", ev->address},
        {"list", ev->zone},
        {"state", monitor_state_name(ev->state)},
        {"previous", monitor_state_name(ev->previous)},
        {"code", ev->code ? ev->code : ""},
        {"txt", ev->txt ? ev->txt : ""},
        {"delist_url", ev->delist_url ? ev->delist_url : ""},
        {"since", since},
        {"time", at},
        {"host", host ? host : ""},
    };
    buf_puts(&b, "{");
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        buf_puts(&b, i ? ", " : "");
        buf_json_str(&b, fields[i][0]);
        buf_puts(&b, ": ");
        buf_json_str(&b, fields[i][1]);
    }
    buf_puts(&b, "}\n");
    return buf_take(&b);
}

struct texts {
    const char *subject[4]; /* by enum monitor_state: listed, clear, unknown */
    const char *intro[4];
    const char *what[4];
    const char *l_address, *l_list, *l_state, *l_code, *l_txt, *l_delist, *l_since, *l_time;
    const char *footer;
};

static const struct texts texts_en = {
    .subject = {[MONITOR_LISTED] = "%s is listed on %s",
                [MONITOR_CLEAR] = "%s is no longer listed on %s",
                [MONITOR_UNKNOWN] = "%s: the list %s refuses to answer"},
    .intro = {[MONITOR_LISTED] = "One of the sending addresses of %s has been put on a "
                                 "blocklist.",
              [MONITOR_CLEAR] = "One of the sending addresses of %s is no longer on a "
                                "blocklist.",
              [MONITOR_UNKNOWN] = "A blocklist does not answer the lookups of %s."},
    .what = {[MONITOR_LISTED] = "Receivers that use this list refuse mail from this address. "
                                "Mail is sent through other addresses of its pool while it is "
                                "listed. Find out why it was listed (a compromised account, a "
                                "customer sending spam), stop the cause, then ask the list for "
                                "removal on its delisting page.",
             [MONITOR_CLEAR] = "The address has been unlisted for the hold time and is used "
                               "for sending again.",
             [MONITOR_UNKNOWN] = "The answer is a refusal code, not a listing: the list does "
                                 "not serve this resolver (public resolvers are often refused) "
                                 "or asks for registration. Check the resolver and the list's "
                                 "terms of use; until then this list is not watched."},
    .l_address = "Address",
    .l_list = "List",
    .l_state = "State",
    .l_code = "Answer",
    .l_txt = "Reason given",
    .l_delist = "Delisting",
    .l_since = "Since",
    .l_time = "Seen at",
    .footer = "History: kurier monitor history %s",
};

static const struct texts texts_de = {
    .subject = {[MONITOR_LISTED] = "%s steht auf der Sperrliste %s",
                [MONITOR_CLEAR] = "%s steht nicht mehr auf der Sperrliste %s",
                [MONITOR_UNKNOWN] = "%s: die Sperrliste %s verweigert die Antwort"},
    .intro = {[MONITOR_LISTED] = "Eine der Absendeadressen von %s wurde auf eine Sperrliste "
                                 "gesetzt.",
              [MONITOR_CLEAR] = "Eine der Absendeadressen von %s steht nicht mehr auf einer "
                                "Sperrliste.",
              [MONITOR_UNKNOWN] = "Eine Sperrliste beantwortet die Abfragen von %s nicht."},
    .what = {[MONITOR_LISTED] = "Empfänger, die diese Liste nutzen, nehmen von dieser Adresse "
                                "keine Mail an. Solange sie gelistet ist, geht Mail über andere "
                                "Adressen ihres Pools hinaus. Finden Sie den Grund (ein "
                                "übernommenes Konto, ein Kunde, der Spam versendet), beseitigen "
                                "Sie ihn und beantragen Sie dann die Austragung auf der Seite "
                                "der Liste.",
             [MONITOR_CLEAR] = "Die Adresse war für die Wartezeit nicht mehr gelistet und wird "
                               "wieder zum Versand genutzt.",
             [MONITOR_UNKNOWN] = "Die Antwort ist ein Verweigerungscode, kein Eintrag: die Liste "
                                 "bedient diesen Resolver nicht (öffentliche Resolver werden oft "
                                 "abgewiesen) oder verlangt eine Registrierung. Prüfen Sie den "
                                 "Resolver und die Nutzungsbedingungen der Liste; bis dahin wird "
                                 "diese Liste nicht überwacht."},
    .l_address = "Adresse",
    .l_list = "Liste",
    .l_state = "Zustand",
    .l_code = "Antwort",
    .l_txt = "Begründung",
    .l_delist = "Austragung",
    .l_since = "Seit",
    .l_time = "Festgestellt",
    .footer = "Verlauf: kurier monitor history %s",
};

/* tmpl with its "%s" replaced by a, then b, in turn (the texts are data, not formats). */
static void fill(char *dst, size_t size, const char *tmpl, const char *a, const char *b)
{
    struct buf t;
    buf_init(&t, 0);
    const char *args[] = {a, b};
    int k = 0;
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '%' && p[1] == 's' && k < 2) {
            buf_puts(&t, args[k++]);
            p++;
        } else {
            buf_append(&t, p, 1);
        }
    }
    str_copy(dst, t.data ? t.data : "", size);
    buf_release(&t);
}

static const char *state_word(enum monitor_state s, int de)
{
    if (!de) return monitor_state_name(s);
    return s == MONITOR_LISTED ? "gelistet" : s == MONITOR_CLEAR ? "nicht gelistet" : "unbekannt";
}

/* Text wrapped at 72 columns, CRLF line ends. */
static void put_wrapped(struct buf *b, const char *text)
{
    size_t col = 0;
    for (const char *p = text; *p;) {
        size_t w = strcspn(p, " ");
        if (col && col + 1 + w > 72) {
            buf_puts(b, "\r\n");
            col = 0;
        } else if (col) {
            buf_puts(b, " ");
            col++;
        }
        buf_append(b, p, w);
        col += w;
        p += w;
        while (*p == ' ')
            p++;
    }
    buf_puts(b, "\r\n");
}

static void put_line(struct buf *b, const char *label, const char *value)
{
    if (!value || !*value) return;
    buf_printf(b, "  %-14s %s\r\n", label, value);
}

char *monitor_report_mail(const struct kconf *conf, const struct monitor_event *ev, const char *to,
                          size_t *len)
{
    int de = conf->locale && strcmp(conf->locale, "de") == 0;
    const struct texts *tx = de ? &texts_de : &texts_en;
    const char *host = conf->hostname ? conf->hostname : "localhost";
    enum monitor_state s =
        ev->state == MONITOR_LISTED || ev->state == MONITOR_CLEAR ? ev->state : MONITOR_UNKNOWN;
    char subject[600], line[600], since[64], at[64], date[64], id[QUEUE_ID_LEN + 1];
    fill(subject, sizeof subject, tx->subject[s], ev->address, ev->zone);
    time_rfc5322(since, sizeof since, ev->since);
    time_rfc5322(at, sizeof at, ev->time);
    time_rfc5322(date, sizeof date, time(NULL));
    spool_new_id(id);

    struct buf t;
    buf_init(&t, 0);
    fill(line, sizeof line, tx->intro[s], host, "");
    put_wrapped(&t, line);
    buf_puts(&t, "\r\n");
    put_line(&t, tx->l_address, ev->address);
    put_line(&t, tx->l_list, ev->zone);
    snprintf(line, sizeof line, "%s (%s)", state_word(ev->state, de), state_word(ev->previous, de));
    put_line(&t, tx->l_state, line);
    put_line(&t, tx->l_code, ev->code);
    put_line(&t, tx->l_txt, ev->txt);
    put_line(&t, tx->l_delist, ev->delist_url);
    put_line(&t, tx->l_since, since);
    put_line(&t, tx->l_time, at);
    buf_puts(&t, "\r\n");
    put_wrapped(&t, tx->what[s]);
    buf_puts(&t, "\r\n");
    fill(line, sizeof line, tx->footer, ev->address, "");
    put_wrapped(&t, line);

    struct buf b;
    buf_init(&b, 0);
    buf_printf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", host);
    buf_printf(&b, "To: <%s>\r\n", to);
    buf_puts(&b, "Subject: ");
    int ascii = 1;
    for (const char *p = subject; *p; p++)
        ascii &= (unsigned char)*p < 0x80;
    char subj[700];
    snprintf(subj, sizeof subj, "[kurier] %s", subject);
    if (ascii)
        buf_puts(&b, subj);
    else
        mime_put_encoded_words(&b, subj);
    buf_puts(&b, "\r\n");
    buf_printf(&b, "Date: %s\r\n", date);
    buf_printf(&b, "Message-ID: <%s.monitor@%s>\r\n", id, host);
    buf_puts(&b, "Auto-Submitted: auto-generated\r\n");
    buf_printf(&b, "X-Kurier-Monitor: %s %s %s\r\n", monitor_state_name(ev->state), ev->address,
               ev->zone);
    buf_puts(&b, "MIME-Version: 1.0\r\n");
    buf_puts(&b, "Content-Type: text/plain; charset=utf-8\r\n");
    buf_printf(&b, "Content-Language: %s\r\n", de ? "de" : "en");
    buf_puts(&b, "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    mime_put_qp(&b, t.data, t.len);
    buf_release(&t);
    *len = b.len;
    return buf_take(&b);
}

/* --- the notifier ------------------------------------------------------------------ */

struct mail_req {
    struct monitor_notify *n; /* NULL once the notifier is gone */
    struct spool_env *env;
    char what[400]; /* for the log line */
    struct mail_req *next;
};

struct hook {
    struct monitor_notify *n;
    struct dns_query *q; /* resolving the webhook's host */
    struct evhttp_connection *conn;
    char *json;
    char host[256], path[1100];
    int port, tls;
    struct bufferevent *bev; /* https: the TLS layer, for its error */
    const char *err;         /* why the request failed, static */
    struct hook *next;
};

struct monitor_notify {
    struct event_base *base;
    struct dns *dns;
    const struct kconf *conf; /* a reference */
    struct spool *spool;
    struct queue *queue;
    struct mail_req *mails;
    struct hook *hooks;
    size_t nhooks;
    time_t mail_window; /* start of the hour the mails are counted in */
    int nmails;         /* mails in that hour */
    SSL_CTX *tls;       /* for https webhooks, made when first needed */
    char *tls_ca_file;  /* the CA file it was made with (NULL: the system store) */
};

/* A client context that verifies the webhook's certificate against outbound's
 * ca_file (or the system store); NULL when it cannot be made (logged). */
static SSL_CTX *tls_ctx(struct monitor_notify *n)
{
    const char *ca = n->conf->out_ca_file;
    if (n->tls &&
        ((!ca && !n->tls_ca_file) || (ca && n->tls_ca_file && strcmp(ca, n->tls_ca_file) == 0)))
        return n->tls;
    SSL_CTX_free(n->tls); /* a reload changed the CA file */
    free(n->tls_ca_file);
    n->tls_ca_file = ca ? xstrdup(ca) : NULL;
    n->tls = SSL_CTX_new(TLS_client_method());
    int ok = n->tls && SSL_CTX_set_min_proto_version(n->tls, TLS1_2_VERSION) == 1 &&
             (ca ? SSL_CTX_load_verify_locations(n->tls, ca, NULL) == 1
                 : SSL_CTX_set_default_verify_paths(n->tls) == 1);
    if (!ok) {
        const char *why = ERR_reason_error_string(ERR_peek_last_error());
        log_warn("monitor", "webhook: cannot set up TLS%s%s: %s", ca ? " with CA file " : "",
                 ca ? ca : "", why ? why : "error");
        ERR_clear_error();
        SSL_CTX_free(n->tls);
        n->tls = NULL;
        return NULL;
    }
    SSL_CTX_set_verify(n->tls, SSL_VERIFY_PEER, NULL);
    return n->tls;
}

static void mail_unlink(struct monitor_notify *n, struct mail_req *r)
{
    for (struct mail_req **pp = &n->mails; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            return;
        }
}

static void mail_committed(void *arg, int ok)
{
    struct mail_req *r = arg;
    if (ok)
        log_info("monitor", "%s: report %s to <%s>", r->env->id, r->what, r->env->rcpts[0].addr);
    else
        log_err("monitor", "cannot queue the report %s", r->what);
    if (r->n) {
        mail_unlink(r->n, r);
        if (ok && r->n->queue) queue_add(r->n->queue, r->env->id);
    }
    spool_env_free(r->env);
    free(r);
}

static void send_mail(struct monitor_notify *n, const struct monitor_event *ev)
{
    const struct kconf *c = n->conf;
    const char *to = c->mon_mail_to ? c->mon_mail_to : c->postmaster;
    if (!to || !*to || !n->spool) return;
    time_t now = time(NULL);
    if (now - n->mail_window >= 3600) {
        n->mail_window = now;
        n->nmails = 0;
    }
    if (n->nmails >= MAILS_PER_HOUR) {
        if (n->nmails++ == MAILS_PER_HOUR)
            log_warn("monitor",
                     "%d report mails this hour: further changes are not mailed until %lds "
                     "from now (see kurier monitor history)",
                     MAILS_PER_HOUR, (long)(n->mail_window + 3600 - now));
        return;
    }
    n->nmails++;
    char what[400];
    snprintf(what, sizeof what, "%s %s on %s", monitor_state_name(ev->state), ev->address,
             ev->zone);
    size_t len;
    char *text = monitor_report_mail(c, ev, to, &len);
    struct spool_msg *m = spool_msg_new(n->spool);
    int w = m ? 0 : -1;
    if (m) {
        char date[64];
        time_rfc5322(date, sizeof date, time(NULL));
        char *hdr = xasprintf("Received: by %s (kurier, blocklist monitor)\r\n\tid %s; %s\r\n",
                              c->hostname ? c->hostname : "localhost", spool_msg_id(m), date);
        w = spool_msg_write(m, hdr, strlen(hdr));
        free(hdr);
        if (w == 0) w = spool_msg_write(m, text, len);
        if (w != 0) spool_msg_abort(m);
    }
    free(text);
    if (w != 0) {
        log_err("monitor", "cannot queue the report %s: cannot write a spool file", what);
        return;
    }
    /* a report never bounces; its body is quoted-printable (7bit) */
    struct spool_env *e = spool_env_notice(to, time(NULL));
    struct mail_req *r = xcalloc(1, sizeof *r);
    r->n = n;
    r->env = e;
    str_copy(r->what, what, sizeof r->what);
    r->next = n->mails;
    n->mails = r;
    spool_msg_commit(m, e, mail_committed, r);
}

static void hook_free(struct hook *h)
{
    struct monitor_notify *n = h->n;
    for (struct hook **pp = &n->hooks; *pp; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    n->nhooks--;
    dns_cancel(h->q);
    free(h->json);
    free(h);
}

static void hook_error(enum evhttp_request_error e, void *arg)
{
    struct hook *h = arg;
    unsigned long tls_err = h->bev ? bufferevent_get_openssl_error(h->bev) : 0;
    if (tls_err) {
        const char *r = ERR_reason_error_string(tls_err);
        h->err = r ? r : "TLS failed";
        return;
    }
    switch (e) {
    case EVREQ_HTTP_TIMEOUT:
        h->err = "timed out";
        break;
    case EVREQ_HTTP_EOF:
        h->err = "connection closed";
        break;
    case EVREQ_HTTP_INVALID_HEADER:
        h->err = "invalid answer";
        break;
    case EVREQ_HTTP_DATA_TOO_LONG:
        h->err = "answer too long";
        break;
    default:
        h->err = "cannot connect";
        break;
    }
}

static void hook_answered(struct evhttp_request *req, void *arg)
{
    struct hook *h = arg;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    if (code >= 200 && code < 300)
        log_info("monitor", "webhook %s:%d: answered %d", h->host, h->port, code);
    else if (code)
        log_warn("monitor", "webhook %s:%d: answered %d; the report is not sent again", h->host,
                 h->port, code);
    else
        log_warn("monitor", "webhook %s:%d: no answer (%s); the report is not sent again", h->host,
                 h->port, h->err ? h->err : "cannot connect");
    h->conn = NULL; /* freed by libevent when this returns (free_on_completion) */
    hook_free(h);
}

static void hook_post(struct hook *h, const char *ip)
{
    struct monitor_notify *n = h->n;
    if (h->tls) {
        SSL_CTX *ctx = tls_ctx(n);
        SSL *ssl = ctx ? SSL_new(ctx) : NULL;
        struct bufferevent *bev = NULL;
        if (ssl) {
            unsigned char bin[16];
            int literal =
                inet_pton(AF_INET, h->host, bin) == 1 || inet_pton(AF_INET6, h->host, bin) == 1;
            if (literal) {
                X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), h->host);
            } else {
                SSL_set_tlsext_host_name(ssl, h->host);
                SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                SSL_set1_host(ssl, h->host);
            }
            bev = bufferevent_openssl_socket_new(n->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                 BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
            if (!bev) SSL_free(ssl);
        }
        if (bev) {
            /* servers often close without a TLS close_notify after the answer */
            bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
            h->conn = evhttp_connection_base_bufferevent_new(n->base, NULL, bev, ip,
                                                             (unsigned short)h->port);
            if (!h->conn)
                bufferevent_free(bev);
            else
                h->bev = bev; /* owned by the connection */
        }
    } else {
        h->conn = evhttp_connection_base_new(n->base, NULL, ip, (unsigned short)h->port);
    }
    struct evhttp_request *req = h->conn ? evhttp_request_new(hook_answered, h) : NULL;
    if (!req) {
        log_warn("monitor", "webhook %s:%d: cannot create the request", h->host, h->port);
        if (h->conn) evhttp_connection_free(h->conn);
        h->conn = NULL;
        hook_free(h);
        return;
    }
    evhttp_request_set_error_cb(req, hook_error);
    evhttp_connection_set_timeout(h->conn, n->conf->mon_webhook_timeout);
    evhttp_connection_set_retries(h->conn, 0);
    evhttp_connection_set_max_body_size(h->conn, WEBHOOK_REPLY_MAX);
    evhttp_connection_set_max_headers_size(h->conn, WEBHOOK_REPLY_MAX);
    struct evkeyvalq *hdrs = evhttp_request_get_output_headers(req);
    char hosthdr[300];
    snprintf(hosthdr, sizeof hosthdr, strchr(h->host, ':') ? "[%s]:%d" : "%s:%d", h->host, h->port);
    evhttp_add_header(hdrs, "Host", hosthdr);
    evhttp_add_header(hdrs, "Content-Type", "application/json");
    evhttp_add_header(hdrs, "User-Agent", "kurier-monitor");
    evhttp_add_header(hdrs, "Connection", "close");
    evbuffer_add(evhttp_request_get_output_buffer(req), h->json, strlen(h->json));
    if (evhttp_make_request(h->conn, req, EVHTTP_REQ_POST, h->path) != 0) {
        /* the request is freed by libevent on failure */
        log_warn("monitor", "webhook %s:%d: cannot send the request", h->host, h->port);
        evhttp_connection_free(h->conn);
        h->conn = NULL;
        hook_free(h);
        return;
    }
    evhttp_connection_free_on_completion(h->conn);
}

static void hook_resolved(void *arg, const struct dns_result *r)
{
    struct hook *h = arg;
    h->q = NULL;
    char ip[INET6_ADDRSTRLEN] = "";
    if (r->status == DNS_OK && r->naddrs > 0) {
        const struct sockaddr *sa = (const struct sockaddr *)&r->addrs[0];
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
        else
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof ip);
    }
    if (!ip[0]) {
        log_warn("monitor", "webhook %s: no address (%s); the report is not sent", h->host,
                 r->why ? r->why : dns_status_name(r->status));
        hook_free(h);
        return;
    }
    hook_post(h, ip);
}

static void send_hook(struct monitor_notify *n, const struct monitor_event *ev)
{
    const struct kconf *c = n->conf;
    if (!c->mon_webhook) return;
    if (n->nhooks >= WEBHOOKS_MAX) {
        log_warn("monitor", "webhook: %d reports in flight; report %s %s on %s dropped",
                 WEBHOOKS_MAX, monitor_state_name(ev->state), ev->address, ev->zone);
        return;
    }
    struct hook *h = xcalloc(1, sizeof *h);
    char why[300];
    if (conf_url_parse(c->mon_webhook, &h->tls, h->host, sizeof h->host, &h->port, h->path,
                       sizeof h->path, why, sizeof why) != 0) {
        log_warn("monitor", "webhook: %s", why); /* conf_load checked it: cannot happen */
        free(h);
        return;
    }
    h->n = n;
    h->json = monitor_event_json(ev, c->hostname);
    h->next = n->hooks;
    n->hooks = h;
    n->nhooks++;
    unsigned char bin[16];
    if (inet_pton(AF_INET, h->host, bin) == 1 || inet_pton(AF_INET6, h->host, bin) == 1) {
        hook_post(h, h->host);
    } else if (n->dns) {
        h->q = dns_query_a(n->dns, h->host, hook_resolved, h);
    } else {
        log_warn("monitor", "webhook %s: no resolver; the report is not sent", h->host);
        hook_free(h);
    }
}

struct monitor_notify *monitor_notify_new(struct event_base *base, struct dns *dns,
                                          const struct kconf *conf, struct spool *s,
                                          struct queue *q)
{
    struct monitor_notify *n = xcalloc(1, sizeof *n);
    n->base = base;
    n->dns = dns;
    n->conf = conf_ref(conf);
    n->spool = s;
    n->queue = q;
    return n;
}

void monitor_notify_set_conf(struct monitor_notify *n, const struct kconf *conf)
{
    const struct kconf *old = n->conf;
    n->conf = conf_ref(conf);
    conf_unref(old);
}

void monitor_notify(struct monitor_notify *n, const struct monitor_event *ev)
{
    if (!n || ev->restored) return;
    if (n->conf->mon_mail) send_mail(n, ev);
    send_hook(n, ev);
}

void monitor_notify_free(struct monitor_notify *n)
{
    if (!n) return;
    while (n->hooks) {
        struct hook *h = n->hooks;
        if (h->conn) evhttp_connection_free(h->conn); /* no callback runs */
        h->conn = NULL;
        hook_free(h);
    }
    for (struct mail_req *r = n->mails; r; r = r->next)
        r->n = NULL; /* the spool's commit still ends and frees it */
    SSL_CTX_free(n->tls);
    free(n->tls_ca_file);
    conf_unref(n->conf);
    free(n);
}
