/* dns.c: the async resolver: libunbound in thread mode, its answer pipe watched by a
 * libevent event, answers turned into struct dns_result with the parsers of
 * parse.c. Callbacks always run from the loop, never inside a dns_query_*() call.
 * Also the client-name check (PTR, then forward confirmation) built on them. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <unbound.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/idn.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "dns/dns.h"

enum { RR_A = 1, RR_PTR = 12, RR_MX = 15, RR_TXT = 16, RR_AAAA = 28, RR_TLSA = 52 };

#define NAME_CACHE 64 /* clients' names remembered (direct-mapped by address) */

/* A client's name as last found, until the smallest TTL of its answers ran out:
 * without it every session's reverse lookup crossed libunbound's pipes to its
 * thread and back, about 20 system calls, though its cache had the answer. */
struct name_cached {
    struct sockaddr_storage sa;
    double expires; /* time_mono(); 0: empty */
    enum rdns_status st;
    char name[256];
};

struct dns {
    struct event_base *base;
    struct ub_ctx *ctx;
    struct event *ev; /* ub_fd() readable: answers waiting for ub_process() */
    struct dns_query *queries;
    int timeout;    /* seconds */
    int in_process; /* inside ub_process(): ub_ctx_delete() must wait */
    int dead;       /* dns_free() was called inside ub_process() */
    struct name_cached names[NAME_CACHE];
};

struct dns_query {
    struct dns *d;
    struct dns_query *prev, *next;
    int rrtype;
    int async_id;
    int started;         /* ub_resolve_async() accepted it: async_id is valid */
    int starting;        /* inside ub_resolve_async(): an answer now must be deferred */
    struct event *timer; /* timeout, or a deferred answer when early/pending */
    dns_cb cb;
    void *arg;
    int early; /* failed before libunbound had it: early_status/early_why */
    enum dns_status early_status;
    const char *early_why;
    int pending; /* libunbound answered while starting: pending_err/res */
    int pending_err;
    struct ub_result *pending_res;
};

static uint32_t rnd32(void *arg)
{
    (void)arg;
    return arc4random();
}

const char *dns_status_name(enum dns_status s)
{
    switch (s) {
    case DNS_OK:
        return "ok";
    case DNS_NXDOMAIN:
        return "nxdomain";
    case DNS_NODATA:
        return "nodata";
    case DNS_TEMPFAIL:
        return "tempfail";
    case DNS_BOGUS:
        return "bogus";
    }
    return "unknown";
}

static void result_release(struct dns_result *r)
{
    free(r->mx);
    free(r->addrs);
    for (size_t i = 0; i < r->nstrs; i++)
        free(r->strs[i]);
    free(r->strs);
    for (size_t i = 0; i < r->ntxt; i++)
        free(r->txt[i]);
    free(r->txt);
    free(r->txt_len);
    for (size_t i = 0; i < r->ntlsa; i++)
        free(r->tlsa[i].data);
    free(r->tlsa);
}

static size_t rr_count(const struct ub_result *res)
{
    size_t n = 0;
    while (res->data[n])
        n++;
    return n;
}

/* Fill r from records of res (havedata set). 0 at least one usable record, -1 none:
 * every record was malformed. */
static int parse_records(int rrtype, const struct ub_result *res, struct dns_result *r)
{
    size_t n = rr_count(res);
    if (n == 0) return -1;
    switch (rrtype) {
    case RR_MX: {
        r->mx = xcalloc(n, sizeof *r->mx);
        for (size_t i = 0; i < n; i++)
            if (dns_parse_mx((unsigned char *)res->data[i], (size_t)res->len[i], &r->mx[r->nmx]) ==
                0)
                r->nmx++;
        if (r->nmx == 0) return -1;
        r->nmx = dns_mx_sort(r->mx, r->nmx, rnd32, NULL, &r->null_mx);
        return 0;
    }
    case RR_A:
    case RR_AAAA:
        r->addrs = xcalloc(n, sizeof *r->addrs);
        for (size_t i = 0; i < n; i++) {
            struct sockaddr_storage *ss = &r->addrs[r->naddrs];
            if (rrtype == RR_A && res->len[i] == 4) {
                struct sockaddr_in *sin = (struct sockaddr_in *)ss;
                sin->sin_family = AF_INET;
                memcpy(&sin->sin_addr, res->data[i], 4);
                r->naddrs++;
            } else if (rrtype == RR_AAAA && res->len[i] == 16) {
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
                sin6->sin6_family = AF_INET6;
                memcpy(&sin6->sin6_addr, res->data[i], 16);
                r->naddrs++;
            }
        }
        return r->naddrs ? 0 : -1;
    case RR_TXT:
    case RR_PTR:
        r->strs = xcalloc(n, sizeof *r->strs);
        if (rrtype == RR_TXT) {
            r->txt = xcalloc(n, sizeof *r->txt);
            r->txt_len = xcalloc(n, sizeof *r->txt_len);
        }
        for (size_t i = 0; i < n; i++) {
            size_t len = (size_t)res->len[i];
            const unsigned char *p = (unsigned char *)res->data[i];
            if (rrtype == RR_TXT) {
                char *b = xmalloc(len + 1);
                if (dns_parse_txt_bytes(p, len, b, len + 1, &r->txt_len[r->ntxt]) == 0)
                    r->txt[r->ntxt++] = b;
                else
                    free(b);
                char *s = xmalloc(len + 1); /* the joined text is always shorter */
                if (dns_parse_txt(p, len, s, len + 1) == 0)
                    r->strs[r->nstrs++] = s;
                else
                    free(s);
            } else {
                char name[256];
                int used = dns_parse_name(p, len, name, sizeof name);
                if (used > 0 && (size_t)used == len && name[0]) r->strs[r->nstrs++] = xstrdup(name);
            }
        }
        return r->nstrs || r->ntxt ? 0 : -1;
    case RR_TLSA:
        r->tlsa = xcalloc(n, sizeof *r->tlsa);
        for (size_t i = 0; i < n; i++) {
            struct dns_tlsa t;
            if (dns_parse_tlsa((unsigned char *)res->data[i], (size_t)res->len[i], &t) != 0)
                continue;
            unsigned char *copy = xmalloc(t.len);
            memcpy(copy, t.data, t.len);
            t.data = copy;
            r->tlsa[r->ntlsa++] = t;
        }
        return r->ntlsa ? 0 : -1;
    }
    return -1;
}

/* libunbound's answer (err from its callback) into r. */
static void convert(int rrtype, int err, const struct ub_result *res, struct dns_result *r)
{
    memset(r, 0, sizeof *r);
    if (err || !res) {
        r->status = DNS_TEMPFAIL;
        r->why = err ? ub_strerror(err) : "no answer";
        return;
    }
    r->secure = res->secure;
    r->ttl = res->ttl;
    if (res->bogus) {
        r->status = DNS_BOGUS;
        r->why = "DNSSEC validation failed";
        r->secure = 0;
        log_debug("dns", "bogus answer for %s: %s", res->qname ? res->qname : "?",
                  res->why_bogus ? res->why_bogus : "no reason given");
        return;
    }
    if (res->nxdomain || res->rcode == 3) {
        r->status = DNS_NXDOMAIN;
        return;
    }
    switch (res->rcode) {
    case 0:
        break;
    case 2:
        r->status = DNS_TEMPFAIL;
        r->why = "SERVFAIL";
        return;
    case 5:
        r->status = DNS_TEMPFAIL;
        r->why = "REFUSED";
        return;
    default:
        r->status = DNS_TEMPFAIL;
        r->why = "DNS server error";
        return;
    }
    /* libunbound: data[] is only usable when havedata is set. */
    if (!res->havedata || !res->data) {
        r->status = DNS_NODATA;
        return;
    }
    if (parse_records(rrtype, res, r) != 0) {
        result_release(r);
        memset(r, 0, sizeof *r);
        r->status = DNS_TEMPFAIL;
        r->why = "malformed answer";
        return;
    }
    r->status = DNS_OK;
}

static void unlink_query(struct dns_query *q)
{
    struct dns *d = q->d;
    if (q->prev)
        q->prev->next = q->next;
    else
        d->queries = q->next;
    if (q->next) q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

static void query_free(struct dns_query *q)
{
    unlink_query(q);
    if (q->timer) event_free(q->timer);
    if (q->pending_res) ub_resolve_free(q->pending_res);
    free(q);
}

/* The query type as the metrics label it. */
static const char *rrtype_name(int t)
{
    return t == RR_A      ? "a"
           : t == RR_AAAA ? "aaaa"
           : t == RR_MX   ? "mx"
           : t == RR_TXT  ? "txt"
           : t == RR_PTR  ? "ptr"
           : t == RR_TLSA ? "tlsa"
                          : "other";
}

/* Hand r to the user: the query is freed first, so the callback may start new
 * queries, cancel others or free the resolver. */
static void deliver(struct dns_query *q, const struct dns_result *r)
{
    metrics_add(MET_DNS_LOOKUPS, 1, rrtype_name(q->rrtype));
    if (r->status == DNS_TEMPFAIL || r->status == DNS_BOGUS)
        metrics_add(MET_DNS_FAILURES, 1, rrtype_name(q->rrtype), dns_status_name(r->status));
    dns_cb cb = q->cb;
    void *arg = q->arg;
    query_free(q);
    cb(arg, r);
}

static void finish_ub(struct dns_query *q, int err, struct ub_result *res)
{
    struct dns_result r;
    convert(q->rrtype, err, res, &r);
    log_debug("dns", "answer type %d: %s%s%s", q->rrtype, dns_status_name(r.status),
              r.why ? " " : "", r.why ? r.why : "");
    deliver(q, &r);
    result_release(&r);
    if (res) ub_resolve_free(res);
}

static void on_ub_answer(void *mydata, int err, struct ub_result *res)
{
    struct dns_query *q = mydata;
    if (q->starting) {
        /* Not expected from libunbound 1.17 (answers come only from ub_process),
         * but the contract forbids a callback inside dns_query_*(): defer it. */
        q->pending = 1;
        q->pending_err = err;
        q->pending_res = res;
        struct timeval now = {0, 0};
        evtimer_add(q->timer, &now);
        return;
    }
    finish_ub(q, err, res);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct dns_query *q = arg;
    struct dns_result r;
    (void)fd;
    (void)what;
    if (q->pending) {
        struct ub_result *res = q->pending_res;
        q->pending_res = NULL;
        finish_ub(q, q->pending_err, res);
        return;
    }
    memset(&r, 0, sizeof r);
    if (q->early) {
        r.status = q->early_status;
        r.why = q->early_why;
    } else {
        if (q->started) ub_cancel(q->d->ctx, q->async_id);
        q->started = 0;
        r.status = DNS_TEMPFAIL;
        r.why = "timeout";
        log_debug("dns", "query type %d timed out after %ds", q->rrtype, q->d->timeout);
    }
    deliver(q, &r);
}

static void on_ub_fd(evutil_socket_t fd, short what, void *arg)
{
    struct dns *d = arg;
    (void)fd;
    (void)what;
    d->in_process++;
    int err = ub_process(d->ctx);
    d->in_process--;
    if (err) log_warn("dns", "resolver: %s", ub_strerror(err));
    if (d->dead && d->in_process == 0) {
        ub_ctx_delete(d->ctx);
        free(d);
    }
}

static int set_opt(struct ub_ctx *ctx, const char *opt, const char *val, char *err, size_t errsize)
{
    int e = ub_ctx_set_option(ctx, opt, val);
    if (e) snprintf(err, errsize, "resolver option %s %s: %s", opt, val, ub_strerror(e));
    return e ? -1 : 0;
}

/* libunbound's built-in empty zones (RFC 6761, 6762, 7686, 8375 names and the
 * private and loopback reverse zones) answer NXDOMAIN without asking anybody. When
 * we forward to a resolver (configured or from resolv.conf), that resolver is the
 * admin's and may serve them (a lab's "remote.test", a LAN's "home.arpa", PTRs of
 * 10/8): like the system resolver Postfix uses, ask it for every name but
 * localhost. "transparent" with no local data lifts a built-in zone (libunbound
 * 1.17 ignores "nodefault"); these names are not in the signed root, so they are
 * not DNSSEC-validated either. */
static const char *const special_zones[] = {
    "test.",
    "invalid.",
    "onion.",
    "home.arpa.",
    "127.in-addr.arpa.",
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
    NULL,
};

static int forward_everything(struct ub_ctx *ctx, char *err, size_t errsize)
{
    const char *const *zones = special_zones;
    if (set_opt(ctx, "unblock-lan-zones:", "yes", err, errsize) ||
        set_opt(ctx, "insecure-lan-zones:", "yes", err, errsize))
        return -1;
    for (size_t i = 0; zones[i]; i++) {
        char zone[128];
        snprintf(zone, sizeof zone, "%s transparent", zones[i]);
        if (set_opt(ctx, "local-zone:", zone, err, errsize) ||
            set_opt(ctx, "domain-insecure:", zones[i], err, errsize))
            return -1;
    }
    return 0;
}

struct dns *dns_new(struct event_base *base, const char *resolver, const char *trust_anchor,
                    const char *const *insecure_domains, char *err, size_t errsize)
{
    struct ub_ctx *ctx = ub_ctx_create();
    int e, forwarding = 0;
    if (!ctx) {
        snprintf(err, errsize, "cannot create the resolver (libunbound)");
        return NULL;
    }
    /* Threads, not a forked process: answers come back through ub_fd(). */
    if ((e = ub_ctx_async(ctx, 1)) != 0) {
        snprintf(err, errsize, "resolver threads: %s", ub_strerror(e));
        goto fail;
    }
    if (resolver && *resolver) {
        if ((e = ub_ctx_set_fwd(ctx, resolver)) != 0) {
            snprintf(err, errsize, "resolver \"%s\": %s (want IP or IP@PORT)", resolver,
                     ub_strerror(e));
            goto fail;
        }
        if (forward_everything(ctx, err, errsize) != 0) goto fail;
        forwarding = 1;
    } else {
        e = ub_ctx_resolvconf(ctx, NULL);
        if (e) /* no usable resolv.conf: resolve from the root servers ourselves */
            log_warn("dns", "/etc/resolv.conf: %s; resolving from the root servers",
                     ub_strerror(e));
        else if (forward_everything(ctx, err, errsize) != 0)
            goto fail;
        else
            forwarding = 1;
        e = ub_ctx_hosts(ctx, "/etc/hosts");
        if (e) log_debug("dns", "/etc/hosts: %s", ub_strerror(e));
    }
    if (trust_anchor && *trust_anchor) {
        /* libunbound only reads the file at the first query; fail here instead. */
        if (access(trust_anchor, R_OK) != 0) {
            snprintf(err, errsize, "trust anchor %s: %s", trust_anchor, strerror(errno));
            goto fail;
        }
        if ((e = ub_ctx_add_ta_file(ctx, trust_anchor)) != 0) {
            snprintf(err, errsize, "trust anchor %s: %s", trust_anchor, ub_strerror(e));
            goto fail;
        }
    }
    for (size_t i = 0; insecure_domains && insecure_domains[i]; i++) {
        const char *dom = insecure_domains[i];
        size_t n = strlen(dom);
        if (n == 0 || n > 253) {
            snprintf(err, errsize, "insecure domain \"%s\": not a domain name", dom);
            goto fail;
        }
        char zone[300];
        snprintf(zone, sizeof zone, "%s%s transparent", dom, dom[n - 1] == '.' ? "" : ".");
        /* libunbound 1.17 ignores "nodefault"; "transparent" lifts built-in zones
         * such as test. (testing-peers.md). Once is enough: a second local-zone for
         * the same name makes libunbound warn. */
        int lifted = 0;
        for (size_t k = 0; forwarding && special_zones[k]; k++)
            lifted |= strncasecmp(zone, special_zones[k], strlen(special_zones[k])) == 0 &&
                      zone[strlen(special_zones[k])] == ' ';
        if (set_opt(ctx, "domain-insecure:", dom, err, errsize) ||
            (!lifted && set_opt(ctx, "local-zone:", zone, err, errsize)))
            goto fail;
    }

    /* Apply the settings now rather than at the first query: a bad trust anchor
     * fails here, and files are read before the daemon drops privileges. Removing
     * a zone that does not exist is libunbound's only public way to finalize. */
    if ((e = ub_ctx_zone_remove(ctx, "kurier-finalize.invalid.")) != 0) {
        snprintf(err, errsize, "resolver setup: %s%s", ub_strerror(e),
                 trust_anchor && *trust_anchor ? " (check the trust anchor file)" : "");
        goto fail;
    }

    struct dns *d = xcalloc(1, sizeof *d);
    d->base = base;
    d->ctx = ctx;
    d->timeout = 30;
    d->ev = event_new(base, ub_fd(ctx), EV_READ | EV_PERSIST, on_ub_fd, d);
    if (!d->ev || event_add(d->ev, NULL) != 0) {
        snprintf(err, errsize, "cannot watch the resolver pipe");
        if (d->ev) event_free(d->ev);
        free(d);
        goto fail;
    }
    return d;
fail:
    ub_ctx_delete(ctx);
    return NULL;
}

void dns_set_timeout(struct dns *d, int seconds)
{
    if (d && seconds > 0) d->timeout = seconds;
}

void dns_free(struct dns *d)
{
    if (!d || d->dead) return;
    while (d->queries)
        dns_cancel(d->queries);
    event_free(d->ev);
    d->ev = NULL;
    if (d->in_process) {
        d->dead = 1; /* on_ub_fd() deletes the context after ub_process() returns */
        return;
    }
    ub_ctx_delete(d->ctx);
    free(d);
}

void dns_cancel(struct dns_query *q)
{
    if (!q) return;
    if (q->started) ub_cancel(q->d->ctx, q->async_id);
    query_free(q);
}

static struct dns_query *query_new(struct dns *d, int rrtype, dns_cb cb, void *arg)
{
    struct dns_query *q = xcalloc(1, sizeof *q);
    q->d = d;
    q->rrtype = rrtype;
    q->cb = cb;
    q->arg = arg;
    q->timer = evtimer_new(d->base, on_timer, q);
    if (!q->timer) abort(); /* libevent allocation failure: out of memory */
    q->next = d->queries;
    if (d->queries) d->queries->prev = q;
    d->queries = q;
    return q;
}

static struct dns_query *query_fail(struct dns_query *q, enum dns_status st, const char *why)
{
    struct timeval now = {0, 0};
    q->early = 1;
    q->early_status = st;
    q->early_why = why;
    evtimer_add(q->timer, &now);
    return q;
}

/* A name we are willing to ask for: 1..253 characters (a trailing dot allowed), no
 * empty labels, labels of at most 63, printable ASCII; spaces are legal in a label
 * (SPF macros can make them, RFC 7208 7.3) and go to libunbound as \032. */
static int name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n > 0 && name[n - 1] == '.') n--;
    if (n == 0 || n > 253) return 0;
    size_t lab = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.') {
            if (lab == 0) return 0;
            lab = 0;
            continue;
        }
        if (c < 0x20 || c >= 0x7f || c == '\\' || ++lab > 63) return 0;
    }
    return lab > 0;
}

static struct dns_query *query_start(struct dns *d, const char *name, int rrtype, dns_cb cb,
                                     void *arg)
{
    struct dns_query *q = query_new(d, rrtype, cb, arg);
    /* RFC 5890: DNS knows international names in their A-label form only */
    char alabel[256];
    if (idn_is_utf8(name)) {
        const char *why;
        if (idn_to_alabel(name, alabel, sizeof alabel, &why) != 0)
            return query_fail(q, DNS_NXDOMAIN, why);
        name = alabel;
    }
    if (!name_ok(name)) return query_fail(q, DNS_NXDOMAIN, "invalid name");
    log_debug("dns", "query %s type %d", name, rrtype);
    char esc[4 * 254];
    size_t o = 0;
    for (const char *p = name; *p; p++) {
        if (*p == ' ') {
            memcpy(esc + o, "\\032", 4);
            o += 4;
        } else {
            esc[o++] = *p;
        }
    }
    esc[o] = '\0';
    q->starting = 1;
    int e = ub_resolve_async(d->ctx, esc, rrtype, 1 /* IN */, q, on_ub_answer, &q->async_id);
    q->starting = 0;
    if (e) {
        log_warn("dns", "cannot start query for %s: %s", name, ub_strerror(e));
        return query_fail(q, DNS_TEMPFAIL, ub_strerror(e));
    }
    if (q->pending) return q; /* answered already: the timer delivers it */
    q->started = 1;
    struct timeval tv = {d->timeout, 0};
    evtimer_add(q->timer, &tv);
    return q;
}

struct dns_query *dns_query_mx(struct dns *d, const char *domain, dns_cb cb, void *arg)
{
    return query_start(d, domain, RR_MX, cb, arg);
}

struct dns_query *dns_query_a(struct dns *d, const char *host, dns_cb cb, void *arg)
{
    return query_start(d, host, RR_A, cb, arg);
}

struct dns_query *dns_query_aaaa(struct dns *d, const char *host, dns_cb cb, void *arg)
{
    return query_start(d, host, RR_AAAA, cb, arg);
}

struct dns_query *dns_query_txt(struct dns *d, const char *name, dns_cb cb, void *arg)
{
    return query_start(d, name, RR_TXT, cb, arg);
}

struct dns_query *dns_query_ptr(struct dns *d, const struct sockaddr *sa, dns_cb cb, void *arg)
{
    char name[128];
    if (dns_ptr_name(sa, name, sizeof name) != 0) {
        struct dns_query *q = query_new(d, RR_PTR, cb, arg);
        return query_fail(q, DNS_NXDOMAIN, "not an IP address");
    }
    return query_start(d, name, RR_PTR, cb, arg);
}

struct dns_query *dns_query_tlsa(struct dns *d, const char *host, int port, dns_cb cb, void *arg)
{
    char name[300];
    if (port <= 0 || port > 65535 || !host ||
        snprintf(name, sizeof name, "_%d._tcp.%s", port, host) >= (int)sizeof name) {
        struct dns_query *q = query_new(d, RR_TLSA, cb, arg);
        return query_fail(q, DNS_NXDOMAIN, "invalid name");
    }
    return query_start(d, name, RR_TLSA, cb, arg);
}
/* --- the client's name: PTR, confirmed by A/AAAA (forward-confirmed rDNS) ------- */

#define NAME_LOOKUP_MAX 10 /* seconds before the client is greeted as "unknown" */

struct dns_client_name {
    struct dns *d;
    struct sockaddr_storage sa;
    struct dns_query *q;
    struct event *timer;
    int ttl;    /* smallest TTL of the answers so far, -1 none yet */
    int cached; /* answered from d->names: st */
    enum rdns_status st;
    char name[256];
    void (*done)(void *, const char *, enum rdns_status, const char *);
    void *arg;
};

static size_t name_slot(const struct sockaddr_storage *sa)
{
    const unsigned char *p;
    size_t len;
    if (sa->ss_family == AF_INET6) {
        p = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        len = 16;
    } else {
        p = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr.s_addr;
        len = 4;
    }
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h % NAME_CACHE;
}

static void note_ttl(struct dns_client_name *n, int ttl)
{
    if (n->ttl < 0 || ttl < n->ttl) n->ttl = ttl;
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

static void name_finish(struct dns_client_name *n, enum rdns_status st)
{
    /* a failure to ask is not remembered: the next session asks again */
    if (!n->cached && st != RDNS_TEMPFAIL && n->ttl > 0) {
        struct name_cached *c = &n->d->names[name_slot(&n->sa)];
        c->sa = n->sa;
        c->st = st;
        c->expires = time_mono() + n->ttl;
        str_copy(c->name, n->name, sizeof c->name);
    }
    void (*done)(void *, const char *, enum rdns_status, const char *) = n->done;
    void *arg = n->arg;
    char ptr[256]; /* n is freed before the call */
    str_copy(ptr, n->name, sizeof ptr);
    if (n->q) dns_cancel(n->q);
    event_free(n->timer);
    free(n);
    done(arg, st == RDNS_OK ? ptr : "unknown", st, ptr);
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) return 0;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

static void name_forward(void *arg, const struct dns_result *r)
{
    struct dns_client_name *n = arg;
    n->q = NULL;
    note_ttl(n, r->ttl);
    for (size_t i = 0; r->status == DNS_OK && i < r->naddrs; i++)
        if (same_addr(&r->addrs[i], &n->sa)) {
            name_finish(n, RDNS_OK);
            return;
        }
    /* the name does not lead back: not trusted (a failure to ask is not a mismatch) */
    name_finish(n, r->status == DNS_TEMPFAIL || r->status == DNS_BOGUS ? RDNS_TEMPFAIL
                                                                       : RDNS_MISMATCH);
}

static void name_ptr(void *arg, const struct dns_result *r)
{
    struct dns_client_name *n = arg;
    n->q = NULL;
    note_ttl(n, r->ttl);
    if (r->status != DNS_OK || r->nstrs == 0 || !r->strs[0][0]) {
        name_finish(n, r->status == DNS_TEMPFAIL || r->status == DNS_BOGUS ? RDNS_TEMPFAIL
                                                                           : RDNS_NO_PTR);
        return;
    }
    str_copy(n->name, r->strs[0], sizeof n->name);
    n->q = n->sa.ss_family == AF_INET6 ? dns_query_aaaa(n->d, n->name, name_forward, n)
                                       : dns_query_a(n->d, n->name, name_forward, n);
    if (!n->q) name_finish(n, RDNS_TEMPFAIL);
}

static void name_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct dns_client_name *n = arg;
    name_finish(n, n->cached ? n->st : RDNS_TEMPFAIL);
}

struct dns_client_name *dns_client_name(struct dns *d, const struct sockaddr *sa,
                                        void (*done)(void *arg, const char *name,
                                                     enum rdns_status st, const char *ptr),
                                        void *arg)
{
    struct dns_client_name *n = xcalloc(1, sizeof *n);
    n->d = d;
    memcpy(&n->sa, sa,
           sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    n->done = done;
    n->arg = arg;
    n->ttl = -1;
    n->timer = evtimer_new(d->base, name_timeout, n);
    const struct name_cached *c = &d->names[name_slot(&n->sa)];
    if (c->expires > 0 && same_addr(&c->sa, &n->sa) && time_mono() < c->expires) {
        n->cached = 1; /* answered on the next loop turn, as a lookup would be */
        n->st = c->st;
        str_copy(n->name, c->name, sizeof n->name);
        evtimer_add(n->timer, &(struct timeval){0});
        return n;
    }
    evtimer_add(n->timer, &(struct timeval){.tv_sec = NAME_LOOKUP_MAX});
    n->q = dns_query_ptr(d, sa, name_ptr, n); /* never calls back before returning */
    if (!n->q) { /* cannot even ask: greet as unknown, on the next loop turn */
        evtimer_del(n->timer);
        evtimer_add(n->timer, &(struct timeval){0});
    }
    return n;
}

void dns_client_name_cancel(struct dns_client_name *n)
{
    if (n->q) dns_cancel(n->q);
    event_free(n->timer);
    free(n);
}
