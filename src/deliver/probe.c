/* probe.c: address verification probes (deliver.h): does a next hop take an address?
 * EHLO, MAIL FROM:<>, RCPT TO, RSET, QUIT, and no message. Which hops is route/'s, the
 * dialogue smtp/client.c's, what an answer means for the client at our door policy/'s.
 * Probes per downstream host are limited; each probe has one deadline. Loop thread. */
#include "core/compat.h"

#include <event2/event.h>
#include <netinet/in.h>

#include "core/core.h"
#include "deliver/deliver.h"
#include "dns/dns.h"
#include "route/route.h"
#include "smtp/smtp.h"

#define PROBE_MAX_ADDRS 8 /* addresses tried per host */

/* A downstream host: probes to it at once are limited to verify { concurrency }. */
struct pdest {
    char *key; /* "host:port" */
    int active;
    struct probe_req *wait_head, *wait_tail;
    struct pdest *prev, *next;
};

struct prober {
    struct event_base *base;
    struct dns *dns;
    struct smtp_client_tls_ctx *tls;
    struct pdest *dests;
    struct probe_req *reqs;
    struct smtp_client **dead; /* freed on the next loop turn, outside their callbacks */
    size_t ndead;
    struct event *ev_reap;
};

struct probe_req {
    struct prober *p;
    const struct kconf *conf; /* a reference, for the probe's lifetime */
    char *rcpt;
    char domain[256];
    void (*done)(void *arg, const struct probe_result *res);
    void *arg;
    int finished;
    struct route_next route; /* the hops, tried in turn from hi */
    size_t hi;
    struct pdest *dest; /* the current host's */
    int slot, waiting;
    struct dns_query *q;
    int aaaa_phase; /* the A answer is in; AAAA asked */
    struct sockaddr_storage addrs[2 * PROBE_MAX_ADDRS];
    size_t naddrs, ai;
    int tls_fallback;
    struct smtp_client *c;
    struct smtp_client_msg msg;
    struct smtp_client_reply rreply;
    const char *rcpts[1];
    struct probe_result res; /* the answer, or the last failure */
    struct event *ev_timeout, *ev_done;
    struct probe_req *prev, *next, *wnext;
};

static void host_start(struct probe_req *q);
static void connect_next(struct probe_req *q);

/* --- helpers ---------------------------------------------------------------------- */

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct prober *p = arg;
    size_t n = p->ndead;
    struct smtp_client **v = p->dead;
    p->dead = NULL;
    p->ndead = 0;
    for (size_t i = 0; i < n; i++)
        smtp_client_free(v[i]); /* QUIT when the dialogue is in sync */
    free(v);
}

/* Free a client on the next loop turn: we may be inside its callback. */
static void bury(struct prober *p, struct smtp_client *c)
{
    if (!c) return;
    p->dead = xrealloc(p->dead, (p->ndead + 1) * sizeof *p->dead);
    p->dead[p->ndead++] = c;
    struct timeval tv = {0, 0};
    evtimer_add(p->ev_reap, &tv);
}

static void res_set(struct probe_result *r, enum probe_status st, int code, const char *relay,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void res_set(struct probe_result *r, enum probe_status st, int code, const char *relay,
                    const char *fmt, ...)
{
    r->status = st;
    r->code = code;
    str_copy(r->relay, relay ? relay : "", sizeof r->relay);
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(r->text, sizeof r->text, fmt, ap) < 0) r->text[0] = '\0';
    va_end(ap);
}

/* "mx.example.org[192.0.2.7]:25" -> "mx.example.org[192.0.2.7]" */
static void peer_noport(char *dst, size_t size, const char *peer)
{
    str_copy(dst, peer ? peer : "", size);
    char *rb = strrchr(dst, ']');
    if (rb && rb[1] == ':') rb[1] = '\0';
}

/* A reply as "550 5.1.1 text" (without repeating what the text already says). */
static void reply_text(char *dst, size_t size, const struct smtp_client_reply *rp)
{
    size_t el = strlen(rp->enh);
    int n = el && strncmp(rp->text, rp->enh, el) != 0
                ? snprintf(dst, size, "%d %s %s", rp->code, rp->enh, rp->text)
                : snprintf(dst, size, "%d %s", rp->code, rp->text);
    if (n < 0 && size) dst[0] = '\0'; /* a long text is cut */
}

static struct pdest *dest_get(struct prober *p, const char *key)
{
    for (struct pdest *d = p->dests; d; d = d->next)
        if (strcmp(d->key, key) == 0) return d;
    struct pdest *d = xcalloc(1, sizeof *d);
    d->key = xstrdup(key);
    d->next = p->dests;
    if (p->dests) p->dests->prev = d;
    p->dests = d;
    return d;
}

static void dest_maybe_free(struct prober *p, struct pdest *d)
{
    if (d->active || d->wait_head) return;
    if (d->prev)
        d->prev->next = d->next;
    else
        p->dests = d->next;
    if (d->next) d->next->prev = d->prev;
    free(d->key);
    free(d);
}

static void wait_remove(struct pdest *d, struct probe_req *q)
{
    struct probe_req **pp = &d->wait_head, *prev = NULL;
    while (*pp && *pp != q) {
        prev = *pp;
        pp = &(*pp)->wnext;
    }
    if (!*pp) return;
    *pp = q->wnext;
    if (d->wait_tail == q) d->wait_tail = prev;
    q->wnext = NULL;
}

/* Give back q's slot (or its place in the queue) and forget the host; the next
 * waiter, if any, goes on. */
static void slot_release(struct probe_req *q)
{
    struct pdest *d = q->dest;
    if (!d) return;
    q->dest = NULL;
    if (q->waiting) {
        wait_remove(d, q);
        q->waiting = 0;
    }
    if (q->slot) {
        q->slot = 0;
        d->active--;
        if (d->wait_head) {
            struct probe_req *w = d->wait_head;
            wait_remove(d, w);
            w->waiting = 0;
            w->dest = NULL;
            host_start(w); /* takes the slot just freed */
        }
    }
    dest_maybe_free(q->p, d);
}

/* Stop everything q has running (its callbacks will not come). Never called inside a
 * callback of q->c: those take the client out of q and bury it first, while a client
 * freed here at once cannot deliver a callback that is already due. */
static void release(struct probe_req *q)
{
    if (q->q) dns_cancel(q->q);
    q->q = NULL;
    smtp_client_free(q->c);
    q->c = NULL;
    slot_release(q);
    evtimer_del(q->ev_timeout);
}

static void req_free(struct probe_req *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        q->p->reqs = q->next;
    if (q->next) q->next->prev = q->prev;
    event_free(q->ev_timeout);
    event_free(q->ev_done);
    conf_unref(q->conf);
    free(q->rcpt);
    free(q);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    struct probe_req *q = arg;
    struct probe_result res = q->res;
    void (*done)(void *, const struct probe_result *) = q->done;
    void *darg = q->arg;
    req_free(q);
    done(darg, &res);
}

/* The answer is q->res: tell the owner on the next loop turn (never inside a call of
 * the owner's, or inside another probe's release). */
static void finish(struct probe_req *q)
{
    if (q->finished) return;
    q->finished = 1;
    release(q);
    event_active(q->ev_done, EV_TIMEOUT, 0);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct probe_req *q = arg;
    char last[600] = "";
    if (q->res.text[0] && snprintf(last, sizeof last, "; last error: %s", q->res.text) < 0)
        last[0] = '\0';              /* a long text is cut */
    char relay[sizeof q->res.relay]; /* res_set() must not copy onto itself */
    str_copy(relay, q->res.relay, sizeof relay);
    res_set(&q->res, PROBE_TEMP, 0, relay, "no answer within %ds%s", q->conf->verify_timeout, last);
    finish(q);
}

/* --- the dialogue ------------------------------------------------------------------- */

static void on_probed(void *arg, struct smtp_client *c, int ok)
{
    struct probe_req *q = arg;
    char host[300], rep[560];
    peer_noport(host, sizeof host, smtp_client_peer(c));
    const struct smtp_client_reply *rr = &q->rreply;
    reply_text(rep, sizeof rep, rr);
    const char *stage = rr->stage ? rr->stage : "";
    if (rr->code >= 200 && rr->code < 300) {
        res_set(&q->res, PROBE_OK, rr->code, host, "%s", rep);
    } else if (rr->code >= 500 && strcmp(stage, "RCPT TO") == 0) {
        res_set(&q->res, PROBE_REFUSED, rr->code, host, "%s", rep);
    } else if (rr->code > 0) {
        /* 4xx, or MAIL FROM:<> refused: the address could not be judged */
        res_set(&q->res, PROBE_TEMP, rr->code, host, "host %s said: %s (in reply to %s command)",
                host, rep, *stage ? stage : "MAIL FROM");
    } else {
        res_set(&q->res, PROBE_TEMP, 0, host, "%s", rr->text);
    }
    (void)ok; /* a broken connection after the answer does not change it */
    q->c = NULL;
    bury(q->p, c); /* we are inside its callback */
    finish(q);
}

static void on_ready(void *arg, struct smtp_client *c, int ok)
{
    struct probe_req *q = arg;
    if (ok) {
        q->rcpts[0] = q->rcpt;
        q->msg = (struct smtp_client_msg){
            .sender = "",
            .rcpts = q->rcpts,
            .nrcpts = 1,
            .content_fd = -1,
            .probe = 1,
            .rcpt_reply = &q->rreply,
        };
        smtp_client_send(c, &q->msg, on_probed, q);
        return;
    }
    const struct smtp_client_reply *rp = smtp_client_last(c);
    char host[300];
    peer_noport(host, sizeof host, smtp_client_peer(c));
    const char *stage = rp->stage ? rp->stage : "";
    q->c = NULL;
    bury(q->p, c);
    if (rp->code == 0 && strcmp(stage, "STARTTLS") == 0 &&
        q->route.hops[q->hi].tls == CONF_TLS_MAY && !q->tls_fallback) {
        q->tls_fallback = 1; /* as remote.c: opportunistic TLS falls back to plain */
        connect_next(q);
        return;
    }
    q->tls_fallback = 0;
    if (rp->code > 0) { /* the host answered, but not for a probe: the next host */
        char rep[560];
        reply_text(rep, sizeof rep, rp);
        res_set(&q->res, PROBE_TEMP, rp->code, host, "host %s refused to talk to me: %s", host,
                rep);
        slot_release(q);
        q->hi++;
        host_start(q);
        return;
    }
    res_set(&q->res, PROBE_TEMP, 0, host, "%s", rp->text);
    q->ai++;
    connect_next(q);
}

static void connect_next(struct probe_req *q)
{
    const struct kconf *c = q->conf;
    const struct route_hop *h = &q->route.hops[q->hi];
    if (q->ai < q->naddrs) {
        struct sockaddr_storage *sa = &q->addrs[q->ai];
        socklen_t len;
        if (sa->ss_family == AF_INET6) {
            ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)h->port);
            len = sizeof(struct sockaddr_in6);
        } else {
            ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)h->port);
            len = sizeof(struct sockaddr_in);
        }
        int t = c->verify_timeout;
        struct smtp_client_opts o = {
            .helo = c->out_helo ? c->out_helo : c->hostname,
            .dst = (const struct sockaddr *)sa,
            .dstlen = len,
            .peer_name = h->name,
            .tls = q->tls_fallback ? SMTP_CTLS_NONE : (enum smtp_client_tls)h->tls,
            .implicit_tls = h->implicit_tls,
            .ca_file = c->out_ca_file,
            .connect_timeout = c->out_connect_timeout < t ? c->out_connect_timeout : t,
            .command_timeout = t,
            .data_timeout = t,
        };
        q->c = smtp_client_new(q->p->base, q->p->tls, &o, on_ready, q);
        return;
    }
    /* every address of this host failed: the next host */
    slot_release(q);
    q->hi++;
    host_start(q);
}

/* --- addresses and hosts ------------------------------------------------------------ */

static void on_addr(void *arg, const struct dns_result *res)
{
    struct probe_req *q = arg;
    q->q = NULL;
    const struct route_hop *h = &q->route.hops[q->hi];
    if (res->status == DNS_OK)
        for (size_t i = 0; i < res->naddrs && i < PROBE_MAX_ADDRS; i++)
            q->addrs[q->naddrs++] = res->addrs[i];
    else if (res->status != DNS_NXDOMAIN && res->status != DNS_NODATA)
        res_set(&q->res, PROBE_TEMP, 0, "",
                "Host or domain name not found. Name service error "
                "for name=%s: Host not found, try again",
                h->name);
    if (!q->aaaa_phase) {
        q->aaaa_phase = 1;
        q->q = dns_query_aaaa(q->p->dns, h->name, on_addr, q);
        if (q->q) return;
    }
    if (q->naddrs == 0 && res->status != DNS_TEMPFAIL)
        res_set(&q->res, PROBE_TEMP, 0, "", "Host or domain name not found: %s has no address",
                h->name);
    q->ai = 0;
    connect_next(q);
}

/* Start on hop q->route.hops[q->hi]: wait for a slot, or resolve it and connect. */
static void host_start(struct probe_req *q)
{
    if (q->hi >= q->route.nhops) {
        if (!q->res.text[0])
            res_set(&q->res, PROBE_TEMP, 0, "", "no usable host for %s", q->domain);
        finish(q);
        return;
    }
    const struct route_hop *h = &q->route.hops[q->hi];
    char key[300];
    snprintf(key, sizeof key, "%s:%d", h->name, h->port);
    struct pdest *d = dest_get(q->p, key);
    q->dest = d;
    int limit = q->conf->verify_concurrency > 0 ? q->conf->verify_concurrency : 1;
    if (d->active >= limit) {
        q->waiting = 1;
        q->wnext = NULL;
        if (d->wait_tail)
            d->wait_tail->wnext = q;
        else
            d->wait_head = q;
        d->wait_tail = q;
        log_debug("smtp", "probe for <%s>: waiting for a slot to %s", q->rcpt, key);
        return;
    }
    d->active++;
    q->slot = 1;
    q->naddrs = q->ai = 0;
    q->aaaa_phase = 0;
    q->tls_fallback = 0;
    if (ip_parse(h->name, &q->addrs[0], NULL) == 0) {
        q->naddrs = 1;
        connect_next(q);
        return;
    }
    q->q = dns_query_a(q->p->dns, h->name, on_addr, q);
    if (!q->q) {
        res_set(&q->res, PROBE_TEMP, 0, "", "cannot start a DNS query for %s", h->name);
        slot_release(q);
        q->hi++;
        host_start(q);
    }
}

static void on_mx(void *arg, const struct dns_result *res)
{
    struct probe_req *q = arg;
    q->q = NULL;
    if (route_mx(q->conf, &q->route.hops[0], res, &q->route) != ROUTE_NEXT_OK) {
        res_set(&q->res, PROBE_TEMP, 0, "", "%s", q->route.text);
        finish(q);
        return;
    }
    q->hi = 0;
    host_start(q);
}

/* --- public -------------------------------------------------------------------------- */

struct prober *prober_new(struct event_base *base, struct dns *dns)
{
    struct prober *p = xcalloc(1, sizeof *p);
    p->base = base;
    p->dns = dns;
    char err[256] = "";
    p->tls = smtp_client_tls_new(err, sizeof err);
    if (!p->tls) log_err("smtp", "TLS for probes unavailable: %s", err);
    p->ev_reap = evtimer_new(base, on_reap, p);
    if (!p->ev_reap) abort(); /* out of memory */
    return p;
}

void prober_free(struct prober *p)
{
    if (!p) return;
    while (p->reqs)
        probe_cancel(p->reqs);
    on_reap(-1, 0, p);
    event_free(p->ev_reap);
    smtp_client_tls_free(p->tls);
    free(p);
}

struct probe_req *probe_start(struct prober *p, const struct kconf *conf, const char *rcpt,
                              int mx_only, void (*done)(void *arg, const struct probe_result *res),
                              void *arg)
{
    struct probe_req *q = xcalloc(1, sizeof *q);
    q->p = p;
    q->conf = conf_ref(conf);
    q->rcpt = xstrdup(rcpt);
    const char *at = strrchr(rcpt, '@');
    str_copy(q->domain, at ? at + 1 : "", sizeof q->domain);
    str_lower(q->domain);
    q->done = done;
    q->arg = arg;
    q->ev_timeout = evtimer_new(p->base, on_timeout, q);
    q->ev_done = event_new(p->base, -1, 0, on_done, q);
    if (!q->ev_timeout || !q->ev_done) abort(); /* out of memory */
    q->next = p->reqs;
    if (p->reqs) p->reqs->prev = q;
    p->reqs = q;
    evtimer_add(q->ev_timeout, &(struct timeval){.tv_sec = conf->verify_timeout});
    if (mx_only) { /* the domain's own MX hosts, whatever transports say */
        struct route_hop *h = &q->route.hops[0];
        *h = (struct route_hop){.kind = ROUTE_HOP_MX,
                                .port = conf->out_port,
                                .pref = -1,
                                .tls = (enum conf_out_tls)conf->out_tls};
        str_copy(h->name, q->domain, sizeof h->name);
        q->route.nhops = 1;
    } else if (route_next(conf, q->domain, NULL, 0, &q->route) != ROUTE_NEXT_OK) {
        res_set(&q->res, PROBE_TEMP, 0, "", "%s", q->route.text);
        finish(q);
        return q;
    }
    if (!q->domain[0]) {
        res_set(&q->res, PROBE_TEMP, 0, "", "no domain in <%s>", rcpt);
        finish(q);
    } else if (q->route.nhops == 1 && q->route.hops[0].kind == ROUTE_HOP_MX) {
        q->q = dns_query_mx(p->dns, q->route.hops[0].name, on_mx, q);
        if (!q->q) {
            res_set(&q->res, PROBE_TEMP, 0, "", "cannot start a DNS query for %s", q->domain);
            finish(q);
        }
    } else {
        q->hi = 0;
        host_start(q); /* every answer comes later, through a callback */
    }
    return q;
}

void probe_cancel(struct probe_req *q)
{
    if (!q) return;
    release(q);
    req_free(q);
}
