/* metrics.c: the registry of metrics (one table row per family) and its HTTP listener
 * (libevent's evhttp). Series are made on first use; label values come from the
 * code (listener addresses, check names, status words), never from peers, and their
 * number is capped all the same. */
#include "core/compat.h"

#include <pthread.h>
#include <stdarg.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "core/core.h"
#include "core/metrics.h"

enum mtype { MT_COUNTER, MT_GAUGE, MT_HISTOGRAM };

#define MAX_LABELS 3
#define MAX_BUCKETS 16
#define MAX_SERIES 4096 /* a bug that makes label values up stops here */

static const double delay_buckets[] = {0.1, 0.5, 1, 5, 30, 60, 300, 900, 3600, 14400, 86400, -1};
static const double batch_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, -1};
static const double flush_buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, -1};

static const struct family {
    const char *name, *help;
    enum mtype type;
    const char *labels[MAX_LABELS + 1];
    const double *buckets; /* ends with -1 */
} families[MET_COUNT] = {
    [MET_CONNECTIONS] = {"kurier_smtp_connections_total",
                         "SMTP connections accepted.",
                         MT_COUNTER,
                         {"listener"},
                         NULL},
    [MET_SESSIONS] =
        {"kurier_smtp_sessions", "SMTP sessions open now.", MT_GAUGE, {"listener"}, NULL},
    [MET_ACCEPTED] = {"kurier_messages_accepted_total",
                      "Messages queued from SMTP clients (250 after the end of data).",
                      MT_COUNTER,
                      {"listener"},
                      NULL},
    [MET_REJECTED] = {"kurier_messages_rejected_total",
                      "Commands refused with a 4xx or 5xx reply, by the stage (command) and "
                      "the reason (the check that decided, or the reply class).",
                      MT_COUNTER,
                      {"listener", "stage", "reason"},
                      NULL},
    [MET_DELIVERIES] = {"kurier_deliveries_total",
                        "Delivery results per recipient, by status (sent, deferred, bounced) "
                        "and reply class (2, 4, 5: the enhanced status code's class).",
                        MT_COUNTER,
                        {"status", "class"},
                        NULL},
    [MET_DELIVERY_DELAY] = {"kurier_delivery_delay_seconds",
                            "Time from arrival to delivery of each delivered recipient.",
                            MT_HISTOGRAM,
                            {NULL},
                            delay_buckets},
    [MET_DNS_LOOKUPS] = {"kurier_dns_lookups_total",
                         "DNS lookups answered, by query type.",
                         MT_COUNTER,
                         {"type"},
                         NULL},
    [MET_DNS_FAILURES] = {"kurier_dns_failures_total",
                          "DNS lookups that failed (tempfail, bogus), by query type.",
                          MT_COUNTER,
                          {"type", "status"},
                          NULL},
    [MET_TLS_HANDSHAKES] = {"kurier_tls_handshakes_total",
                            "TLS handshakes completed, inbound and outbound, by protocol "
                            "version.",
                            MT_COUNTER,
                            {"direction", "version"},
                            NULL},
    [MET_AUTH] = {"kurier_auth_total",
                  "SMTP AUTH attempts by result (success, failure).",
                  MT_COUNTER,
                  {"result"},
                  NULL},
    [MET_SPOOL_BATCH] = {"kurier_spool_commit_batch_size",
                         "Messages made durable by one spool group commit (one fsync).",
                         MT_HISTOGRAM,
                         {NULL},
                         batch_buckets},
    [MET_SPOOL_FLUSH] = {"kurier_spool_flush_seconds",
                         "Time one spool group commit took (envelopes, sync, renames).",
                         MT_HISTOGRAM,
                         {NULL},
                         flush_buckets},
    [MET_QUEUE_MESSAGES] = {"kurier_queue_messages",
                            "Messages in the queue by state (active: being delivered; "
                            "ready: due now; deferred: waiting for a retry; held).",
                            MT_GAUGE,
                            {"state"},
                            NULL},
    [MET_QUEUE_AGE] = {"kurier_queue_messages_by_age",
                       "Messages in the queue by time since arrival (5m: under 5 minutes, "
                       "1h: 5 minutes to 1 hour, 1d: 1 hour to 1 day, older: more).",
                       MT_GAUGE,
                       {"age"},
                       NULL},
    [MET_STATE_DOWN] = {"kurier_state_unavailable_total",
                        "Checks decided by their fail mode because the shared state "
                        "(Redis, state { }) was unreachable, by check (greylist, rate, "
                        "auth).",
                        MT_COUNTER,
                        {"check"},
                        NULL},
};

struct series {
    enum metric m;
    char *labels; /* 'a="x",b="y"' or "" */
    double value; /* counter, gauge; histogram: the sum */
    unsigned long long count;
    unsigned long long buckets[MAX_BUCKETS];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct series *series;
static size_t nseries;
static int enabled;
static void (*collector)(void *);
static void *collector_arg;

static size_t nlabels(enum metric m)
{
    size_t n = 0;
    while (n < MAX_LABELS && families[m].labels[n])
        n++;
    return n;
}

/* 'name="value",...' with the text format's escapes (\\, \", \n). */
static char *format_labels(enum metric m, va_list ap)
{
    struct buf b;
    buf_init(&b, 0);
    size_t n = nlabels(m);
    for (size_t i = 0; i < n; i++) {
        const char *v = va_arg(ap, const char *);
        buf_printf(&b, "%s%s=\"", i ? "," : "", families[m].labels[i]);
        for (const char *p = v ? v : ""; *p; p++) {
            if (*p == '\\' || *p == '"')
                buf_printf(&b, "\\%c", *p);
            else if (*p == '\n')
                buf_puts(&b, "\\n");
            else
                buf_append(&b, p, 1);
        }
        buf_puts(&b, "\"");
    }
    if (!b.data) buf_puts(&b, "");
    return buf_take(&b);
}

/* The series of m with these labels, made when new; NULL past MAX_SERIES. Locked. */
static struct series *find(enum metric m, char *labels)
{
    for (size_t i = 0; i < nseries; i++)
        if (series[i].m == m && strcmp(series[i].labels, labels) == 0) {
            free(labels);
            return &series[i];
        }
    if (nseries >= MAX_SERIES) {
        free(labels);
        return NULL;
    }
    series = xrealloc(series, (nseries + 1) * sizeof *series);
    struct series *s = &series[nseries++];
    memset(s, 0, sizeof *s);
    s->m = m;
    s->labels = labels;
    return s;
}

enum op { OP_ADD, OP_SET, OP_OBSERVE };

static void update(enum metric m, enum op op, double v, va_list ap)
{
    if (!__atomic_load_n(&enabled, __ATOMIC_RELAXED) || m < 0 || m >= MET_COUNT) return;
    char *labels = format_labels(m, ap);
    pthread_mutex_lock(&lock);
    struct series *s = find(m, labels);
    if (s) {
        if (op == OP_ADD)
            s->value += v;
        else if (op == OP_SET)
            s->value = v;
        else {
            s->value += v;
            s->count++;
            for (size_t i = 0; i < MAX_BUCKETS && families[m].buckets[i] >= 0; i++)
                if (v <= families[m].buckets[i]) s->buckets[i]++;
        }
    }
    pthread_mutex_unlock(&lock);
}

void metrics_add(enum metric m, double v, ...)
{
    va_list ap;
    va_start(ap, v);
    update(m, OP_ADD, v, ap);
    va_end(ap);
}

void metrics_set(enum metric m, double v, ...)
{
    va_list ap;
    va_start(ap, v);
    update(m, OP_SET, v, ap);
    va_end(ap);
}

void metrics_observe(enum metric m, double v, ...)
{
    va_list ap;
    va_start(ap, v);
    update(m, families[m].type == MT_HISTOGRAM ? OP_OBSERVE : OP_ADD, v, ap);
    va_end(ap);
}

void metrics_set_collector(void (*fn)(void *arg), void *arg)
{
    collector = fn;
    collector_arg = arg;
}

/* Numbers as Prometheus writes them: integers without a fraction, +Inf. */
static void put_num(struct buf *b, double v)
{
    if (v == (double)(long long)v && v < 1e15 && v > -1e15)
        buf_printf(b, "%lld", (long long)v);
    else
        buf_printf(b, "%.9g", v);
}

static void put_le(struct buf *b, const char *labels, const char *le)
{
    buf_printf(b, "{%s%sle=\"%s\"}", labels, *labels ? "," : "", le);
}

char *metrics_text(void)
{
    if (collector) {
        pthread_mutex_lock(&lock);
        for (size_t i = 0; i < nseries; i++)
            if (series[i].m == MET_QUEUE_MESSAGES || series[i].m == MET_QUEUE_AGE)
                series[i].value = 0;
        pthread_mutex_unlock(&lock);
        collector(collector_arg);
    }
    struct buf b;
    buf_init(&b, 0);
    static const char *const tname[] = {"counter", "gauge", "histogram"};
    pthread_mutex_lock(&lock);
    for (int m = 0; m < MET_COUNT; m++) {
        const struct family *f = &families[m];
        buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, tname[f->type]);
        int any = 0;
        for (size_t i = 0; i < nseries; i++) {
            const struct series *s = &series[i];
            if ((int)s->m != m) continue;
            any = 1;
            if (f->type != MT_HISTOGRAM) {
                buf_puts(&b, f->name);
                if (*s->labels) buf_printf(&b, "{%s}", s->labels);
                buf_puts(&b, " ");
                put_num(&b, s->value);
                buf_puts(&b, "\n");
                continue;
            }
            unsigned long long cum = 0;
            for (size_t k = 0; k < MAX_BUCKETS && f->buckets[k] >= 0; k++) {
                char le[32];
                snprintf(le, sizeof le, "%g", f->buckets[k]);
                cum = s->buckets[k]; /* counted cumulatively in update() */
                buf_printf(&b, "%s_bucket", f->name);
                put_le(&b, s->labels, le);
                buf_printf(&b, " %llu\n", cum);
            }
            buf_printf(&b, "%s_bucket", f->name);
            put_le(&b, s->labels, "+Inf");
            buf_printf(&b, " %llu\n%s_sum", s->count, f->name);
            if (*s->labels) buf_printf(&b, "{%s}", s->labels);
            buf_puts(&b, " ");
            put_num(&b, s->value);
            buf_printf(&b, "\n%s_count", f->name);
            if (*s->labels) buf_printf(&b, "{%s}", s->labels);
            buf_printf(&b, " %llu\n", s->count);
        }
        /* a family without labels is there from the start, at zero */
        if (!any && !f->labels[0]) {
            if (f->type == MT_HISTOGRAM) {
                for (size_t k = 0; k < MAX_BUCKETS && f->buckets[k] >= 0; k++)
                    buf_printf(&b, "%s_bucket{le=\"%g\"} 0\n", f->name, f->buckets[k]);
                buf_printf(&b, "%s_bucket{le=\"+Inf\"} 0\n%s_sum 0\n%s_count 0\n", f->name, f->name,
                           f->name);
            } else {
                buf_printf(&b, "%s 0\n", f->name);
            }
        }
    }
    pthread_mutex_unlock(&lock);
    return buf_take(&b);
}

/* --- the HTTP listener ------------------------------------------------------------ */

struct metrics_http {
    struct evhttp *http;
};

static void answer(struct evhttp_request *req, int code, const char *reason, const char *type,
                   const char *body)
{
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) evbuffer_add(out, body, strlen(body));
    evhttp_send_reply(req, code, reason, out);
    evbuffer_free(out);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    (void)arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (path && strcmp(path, "/metrics") == 0) {
        char *text = metrics_text();
        answer(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text);
        free(text);
    } else if (path && strcmp(path, "/healthz") == 0) {
        answer(req, 200, "OK", "text/plain; charset=utf-8", "ok\n");
    } else {
        answer(req, 404, "Not Found", "text/plain; charset=utf-8",
               "not found: kurier serves /metrics and /healthz\n");
    }
}

/* "PORT", "IP:PORT", "[IPv6]:PORT" into host and port; 0 done, -1 bad. */
static int split_listen(const char *s, char *host, size_t hsize, unsigned *port)
{
    const char *p;
    size_t hl;
    if (s[0] == '[') {
        const char *e = strchr(s, ']');
        if (!e || e[1] != ':') return -1;
        hl = (size_t)(e - s - 1);
        if (hl >= hsize) return -1;
        memcpy(host, s + 1, hl);
        p = e + 2;
    } else if ((p = strrchr(s, ':'))) {
        hl = (size_t)(p - s);
        if (hl >= hsize || memchr(s, ':', hl)) return -1;
        memcpy(host, s, hl);
        p++;
    } else {
        hl = strlen("127.0.0.1");
        memcpy(host, "127.0.0.1", hl);
        p = s;
    }
    host[hl] = '\0';
    char *end;
    unsigned long n = strtoul(p, &end, 10);
    if (!*p || *end || n == 0 || n > 65535) return -1;
    struct sockaddr_storage ss;
    if (ip_parse(host, &ss, NULL) != 0) return -1;
    *port = (unsigned)n;
    return 0;
}

struct metrics_http *metrics_http_start(struct event_base *base, const char *listen, char *err,
                                        size_t errsize)
{
    err[0] = '\0';
    if (!listen || !*listen) return NULL;
    char host[64];
    unsigned port;
    if (split_listen(listen, host, sizeof host, &port) != 0) {
        snprintf(err, errsize,
                 "metrics_listen \"%s\": not PORT, IP:PORT or [IPv6]:PORT (an IP address, "
                 "not a name)",
                 listen);
        return NULL;
    }
    struct metrics_http *h = xcalloc(1, sizeof *h);
    h->http = evhttp_new(base);
    if (!h->http || evhttp_bind_socket(h->http, host, (ev_uint16_t)port) != 0) {
        snprintf(err, errsize, "metrics_listen %s: cannot listen: %s", listen, strerror(errno));
        metrics_http_free(h);
        return NULL;
    }
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(h->http, 8192); /* requests are tiny */
    evhttp_set_max_body_size(h->http, 0);
    evhttp_set_timeout(h->http, 30);
    evhttp_set_gencb(h->http, on_request, h);
    __atomic_store_n(&enabled, 1, __ATOMIC_RELAXED);
    return h;
}

void metrics_http_free(struct metrics_http *h)
{
    if (!h) return;
    __atomic_store_n(&enabled, 0, __ATOMIC_RELAXED);
    if (h->http) evhttp_free(h->http);
    free(h);
}
