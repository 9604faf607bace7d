/* monitor.c: our egress addresses against DNS lists, on a timer (docs/egress.md).
 * Owns the state of each (address, list) and its history in the directory; the
 * lookups are policy/dnsbl.c's query names and answer codes; reports are notify.c's,
 * taking an address out of service is the callback's. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/event.h>

#include "core/core.h"
#include "dns/dns.h"
#include "egress/lists.h"
#include "egress/monitor.h"
#include "policy/policy.h"
#include "store/store.h"

/* --- pure helpers ------------------------------------------------------------ */

const char monitor_default_lists[] = "zen.spamhaus.org bl.spamcop.net b.barracudacentral.org "
                                     "psbl.surriel.com bl.mailspike.net dnsbl-1.uceprotect.net";

const char *monitor_state_name(enum monitor_state s)
{
    switch (s) {
    case MONITOR_CLEAR:
        return "clear";
    case MONITOR_LISTED:
        return "listed";
    case MONITOR_UNKNOWN:
        return "unknown";
    default:
        return "none";
    }
}

int monitor_state_parse(const char *name)
{
    for (int s = MONITOR_NONE; s <= MONITOR_UNKNOWN; s++)
        if (strcmp(name, monitor_state_name((enum monitor_state)s)) == 0) return s;
    return -1;
}

int monitor_step(struct monitor_track *t, enum monitor_result r, time_t now, int hold)
{
    switch (r) {
    case MONITOR_R_LISTED:
        t->clear_since = 0;
        if (t->state == MONITOR_LISTED) return 0;
        t->state = MONITOR_LISTED;
        t->since = now;
        return 1;
    case MONITOR_R_CLEAR:
        if (t->state == MONITOR_CLEAR) return 0;
        if (t->state == MONITOR_LISTED) {
            if (!t->clear_since) t->clear_since = now;
            if (now - t->clear_since < hold) return 0;
            t->since = t->clear_since;
            t->clear_since = 0;
            t->state = MONITOR_CLEAR;
            return 1;
        }
        {
            int first = t->state == MONITOR_NONE;
            t->state = MONITOR_CLEAR;
            t->since = now;
            return first ? 2 : 1; /* unknown -> clear: the list answers again */
        }
    case MONITOR_R_REFUSED:
        /* a refusal says nothing about the address: a listing stays */
        if (t->state == MONITOR_LISTED || t->state == MONITOR_UNKNOWN) return 0;
        t->state = MONITOR_UNKNOWN;
        t->since = now;
        return 1;
    case MONITOR_R_ERROR:
        return 0;
    }
    return 0;
}

int monitor_delist_url(const char *tmpl, const char *zone, const char *ip, char *out,
                       size_t outsize)
{
    if (outsize == 0) return -1;
    out[0] = '\0';
    if (!tmpl) { /* the built-in page of a known list (egress/lists.c) */
        egress_list_delist_url(egress_list_find(zone), ip, out, outsize);
        return 0;
    }
    size_t n = 0;
    for (const char *p = tmpl; *p;) {
        const char *piece = p;
        size_t len = 1;
        if (strncmp(p, "$ip", 3) == 0) {
            piece = ip;
            len = strlen(ip);
            p += 3;
        } else {
            p++;
        }
        if (n + len >= outsize) {
            out[n] = '\0';
            return -1;
        }
        memcpy(out + n, piece, len);
        n += len;
    }
    out[n] = '\0';
    return 0;
}

/* --- the monitor ---------------------------------------------------------------- */

struct mlist {
    struct conf_dnsbl_site site; /* zone and filter */
    char *delist;                /* the configured page (URL template), or NULL */
};

struct mpair {
    struct monitor *m;
    char addr[64];
    int family;
    unsigned char ip[16];
    size_t list; /* index into m->lists */
    struct monitor_track t;
    char code[64]; /* the answer(s) of the last listing or refusal */
    char txt[300];
    int failing; /* the last lookup got no answer (logged once) */
    /* the lookup in flight */
    struct dns_query *q;
    char qname[320];
    char new_code[64];
};

struct monitor {
    struct event_base *base;
    struct dns *dns;
    const struct kconf *conf; /* a reference */
    struct store *st;
    monitor_cb on_change;
    void *arg;
    struct event *timer;
    char **extra; /* monitor_set_addresses() */
    size_t nextra;
    int dirty; /* the configuration or addresses changed: rebuild before the next round */
    struct mlist *lists;
    size_t nlists;
    struct mpair *pairs;
    size_t npairs;
    /* the round */
    int running;
    size_t next, inflight;
    double round_start;
    /* states read back at start-up */
    int loaded;
    struct work_job *load_job;
    struct store_listing *restored;
    size_t nrestored;
    /* store writes: pending on the loop, batch on a worker */
    struct store_listing *pending;
    int *pending_hist;
    size_t npending;
    struct store_listing *batch;
    int *batch_hist;
    size_t nbatch;
    int batch_written;
    struct work_job *write_job;
};

static void start_round(struct monitor *m);

/* Every address of the configuration and the extra ones, each once, as text. */
static void add_addr(char ***v, size_t *n, int family, const unsigned char *ip)
{
    char a[INET6_ADDRSTRLEN];
    inet_ntop(family, ip, a, sizeof a);
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i], a) == 0) return;
    *v = xrealloc(*v, (*n + 1) * sizeof **v);
    (*v)[(*n)++] = xstrdup(a);
}

static void collect_addrs(const struct monitor *m, char ***v, size_t *n)
{
    const struct kconf *c = m->conf;
    for (size_t i = 0; i < c->nmon_addresses; i++) {
        const struct conf_net *net = &c->mon_addresses[i];
        size_t len = net->family == AF_INET ? 4 : 16;
        int bits = (int)len * 8 - net->prefix;
        size_t hosts = bits > 8 ? 256 : (size_t)1 << bits; /* the config allows 256 */
        unsigned char ip[16];
        memcpy(ip, net->addr, len);
        for (size_t h = 0; h < hosts; h++) {
            add_addr(v, n, net->family, ip);
            for (size_t b = len; b-- > 0;) /* next address, big-endian */
                if (++ip[b]) break;
        }
    }
    for (size_t i = 0; i < m->nextra; i++) {
        unsigned char ip[16];
        if (inet_pton(AF_INET, m->extra[i], ip) == 1)
            add_addr(v, n, AF_INET, ip);
        else if (inet_pton(AF_INET6, m->extra[i], ip) == 1)
            add_addr(v, n, AF_INET6, ip);
    }
}

static void free_lists(struct mlist *lists, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(lists[i].delist);
    free(lists);
}

/* The lists of the configuration (or the built-in set) with their delisting pages,
 * into m->lists (the caller freed or kept the old ones). */
static void build_lists(struct monitor *m)
{
    m->lists = NULL;
    m->nlists = 0;
    const char *spec = m->conf->mon_lists ? m->conf->mon_lists : monitor_default_lists;
    for (const char *p = spec; *p;) {
        size_t len = strcspn(p, " ");
        char one[600], why[300];
        struct conf_dnsbl_site site;
        if (len > 0 && len < sizeof one) {
            memcpy(one, p, len);
            one[len] = '\0';
            int dup = 0;
            if (conf_dnsbl_site_parse(one, &site, why, sizeof why) == 0) {
                for (size_t i = 0; i < m->nlists && !dup; i++)
                    dup = strcmp(m->lists[i].site.zone, site.zone) == 0;
                if (!dup) {
                    m->lists = xrealloc(m->lists, (m->nlists + 1) * sizeof *m->lists);
                    m->lists[m->nlists].site = site;
                    m->lists[m->nlists].delist = NULL;
                    m->nlists++;
                }
            }
        }
        p += len;
        while (*p == ' ')
            p++;
    }
    /* "ZONE URL ZONE URL ...": the URL starts after the zone's space */
    const char *d = m->conf->mon_delist;
    while (d && *d) {
        size_t zl = strcspn(d, " ");
        const char *url = d[zl] ? d + zl + 1 : d + zl;
        size_t ul = strcspn(url, " ");
        for (size_t i = 0; i < m->nlists; i++)
            if (strlen(m->lists[i].site.zone) == zl && strncmp(m->lists[i].site.zone, d, zl) == 0) {
                free(m->lists[i].delist); /* a later line wins */
                m->lists[i].delist = xstrndup(url, ul);
            }
        d = url + ul;
        while (*d == ' ')
            d++;
    }
}

/* The delisting page of p's list for its address. */
static void pair_delist(const struct monitor *m, const struct mpair *p, char *out, size_t size)
{
    const struct mlist *l = &m->lists[p->list];
    monitor_delist_url(l->delist, l->site.zone, p->addr, out, size);
}

/* Rebuild the pairs from the configuration, keeping the state of those that stay. */
static void rebuild(struct monitor *m)
{
    struct mpair *old = m->pairs;
    size_t nold = m->npairs;
    struct mlist *keep = m->lists; /* the old zones, for matching */
    size_t nkeep = m->nlists;
    build_lists(m);
    char **addrs = NULL;
    size_t naddrs = 0;
    collect_addrs(m, &addrs, &naddrs);
    m->npairs = naddrs * m->nlists;
    m->pairs = m->npairs ? xcalloc(m->npairs, sizeof *m->pairs) : NULL;
    size_t k = 0;
    for (size_t a = 0; a < naddrs; a++) {
        for (size_t l = 0; l < m->nlists; l++, k++) {
            struct mpair *p = &m->pairs[k];
            p->m = m;
            str_copy(p->addr, addrs[a], sizeof p->addr);
            p->family = strchr(p->addr, ':') ? AF_INET6 : AF_INET;
            inet_pton(p->family, p->addr, p->ip);
            p->list = l;
            for (size_t o = 0; o < nold; o++)
                if (strcmp(old[o].addr, p->addr) == 0 &&
                    strcmp(keep[old[o].list].site.zone, m->lists[l].site.zone) == 0) {
                    p->t = old[o].t;
                    memcpy(p->code, old[o].code, sizeof p->code);
                    memcpy(p->txt, old[o].txt, sizeof p->txt);
                    p->failing = old[o].failing;
                }
        }
        free(addrs[a]);
    }
    free(addrs);
    free_lists(keep, nkeep);
    free(old);
    m->dirty = 0;
}

/* --- store writes (a worker) ----------------------------------------------------- */

static void write_rows(struct store *st, const struct store_listing *rows, const int *hist,
                       size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (store_listing_put(st, &rows[i], hist[i]) != 0)
            log_warn("monitor", "cannot store the state of %s on %s (database error)",
                     rows[i].address, rows[i].zone);
}

static void write_run(void *arg)
{
    struct monitor *m = arg;
    write_rows(m->st, m->batch, m->batch_hist, m->nbatch);
    m->batch_written = 1;
}

static void write_start(struct monitor *m);

static void write_done(void *arg)
{
    struct monitor *m = arg;
    m->write_job = NULL;
    free(m->batch);
    free(m->batch_hist);
    m->batch = NULL;
    m->batch_hist = NULL;
    m->nbatch = 0;
    if (m->npending) write_start(m);
}

static void write_start(struct monitor *m)
{
    m->batch = m->pending;
    m->batch_hist = m->pending_hist;
    m->nbatch = m->npending;
    m->batch_written = 0;
    m->pending = NULL;
    m->pending_hist = NULL;
    m->npending = 0;
    m->write_job = work_submit(write_run, write_done, m);
}

static void store_pair(struct monitor *m, const struct mpair *p, enum monitor_state previous,
                       int history, const char *delist)
{
    if (!m->st) return;
    m->pending = xrealloc(m->pending, (m->npending + 1) * sizeof *m->pending);
    m->pending_hist = xrealloc(m->pending_hist, (m->npending + 1) * sizeof *m->pending_hist);
    struct store_listing *l = &m->pending[m->npending];
    memset(l, 0, sizeof *l);
    str_copy(l->address, p->addr, sizeof l->address);
    str_copy(l->zone, m->lists[p->list].site.zone, sizeof l->zone);
    str_copy(l->state, monitor_state_name(p->t.state), sizeof l->state);
    str_copy(l->previous, monitor_state_name(previous), sizeof l->previous);
    if (p->t.state != MONITOR_CLEAR) {
        str_copy(l->code, p->code, sizeof l->code);
        str_copy(l->txt, p->txt, sizeof l->txt);
    }
    str_copy(l->delist_url, delist, sizeof l->delist_url);
    l->since = (long long)p->t.since;
    l->time = (long long)time(NULL);
    m->pending_hist[m->npending++] = history;
    if (!m->write_job) write_start(m);
}

/* --- changes ---------------------------------------------------------------------- */

static void report(struct monitor *m, struct mpair *p, enum monitor_state previous, int restored)
{
    char delist[1100], txt[400];
    pair_delist(m, p, delist, sizeof delist);
    const char *zone = m->lists[p->list].site.zone;
    log_escape(txt, sizeof txt, p->txt, strlen(p->txt));
    if (restored)
        log_info("monitor", "address=%s, list=%s, state=listed (since the last run), code=%s",
                 p->addr, zone, p->code);
    else if (p->t.state == MONITOR_LISTED)
        log_warn("monitor", "address=%s, list=%s, state=listed (was %s), code=%s, txt=\"%s\"%s%s",
                 p->addr, zone, monitor_state_name(previous), p->code, txt,
                 *delist ? ", delist=" : "", delist);
    else if (p->t.state == MONITOR_UNKNOWN)
        log_warn("monitor",
                 "address=%s, list=%s, state=unknown (was %s), code=%s: not a listing code "
                 "(query refused or list misconfigured; check the resolver and the list's "
                 "terms of use)",
                 p->addr, zone, monitor_state_name(previous), p->code);
    else
        log_info("monitor", "address=%s, list=%s, state=clear (was %s)", p->addr, zone,
                 monitor_state_name(previous));
    if (!restored) store_pair(m, p, previous, 1, delist);
    struct monitor_event ev = {
        .address = p->addr,
        .zone = zone,
        .state = p->t.state,
        .previous = previous,
        .code = p->t.state == MONITOR_CLEAR ? "" : p->code,
        .txt = p->t.state == MONITOR_LISTED ? p->txt : "",
        .delist_url = delist,
        .since = p->t.since,
        .time = time(NULL),
        .restored = restored,
    };
    if (m->on_change) m->on_change(m->arg, &ev);
}

static void apply(struct mpair *p, enum monitor_result r, const char *code, const char *txt)
{
    struct monitor *m = p->m;
    enum monitor_state previous = p->t.state;
    int hold = m->conf->mon_hold;
    if (r == MONITOR_R_LISTED || r == MONITOR_R_REFUSED) {
        /* a listing's details may change while it stays listed; a refusal never
         * overwrites a listing's */
        if (r == MONITOR_R_LISTED || p->t.state != MONITOR_LISTED) {
            str_copy(p->code, code, sizeof p->code);
            str_copy(p->txt, txt ? txt : "", sizeof p->txt);
        }
    }
    if (r == MONITOR_R_CLEAR && p->t.state == MONITOR_LISTED && !p->t.clear_since && hold > 0)
        log_info("monitor", "address=%s, list=%s: no longer listed; clear after %ds unlisted",
                 p->addr, m->lists[p->list].site.zone, hold);
    int ch = monitor_step(&p->t, r, time(NULL), hold);
    if (ch == 1) {
        report(m, p, previous, 0);
    } else if (ch == 2) {
        char delist[1100];
        pair_delist(m, p, delist, sizeof delist);
        store_pair(m, p, previous, 0, delist);
        log_debug("monitor", "address=%s, list=%s: not listed", p->addr,
                  m->lists[p->list].site.zone);
    }
}

/* --- lookups ------------------------------------------------------------------------ */

static void launch(struct monitor *m);

static void lookup_done(struct mpair *p, enum monitor_result r, const char *txt)
{
    struct monitor *m = p->m;
    p->q = NULL;
    apply(p, r, p->new_code, txt);
    m->inflight--;
    launch(m);
}

static void txt_answered(void *arg, const struct dns_result *r)
{
    struct mpair *p = arg;
    char txt[300] = "";
    if (r->status == DNS_OK && r->nstrs > 0)
        policy_dnsbl_text(r->strs[0], strlen(r->strs[0]), txt, sizeof txt);
    lookup_done(p, MONITOR_R_LISTED, txt);
}

static void append_code(char *dst, size_t size, const unsigned char *a)
{
    size_t n = strlen(dst);
    snprintf(dst + n, size - n, "%s%u.%u.%u.%u", n ? "," : "", a[0], a[1], a[2], a[3]);
}

static void a_answered(void *arg, const struct dns_result *r)
{
    struct mpair *p = arg;
    struct monitor *m = p->m;
    const struct conf_dnsbl_site *site = &m->lists[p->list].site;
    p->q = NULL;
    p->new_code[0] = '\0';
    if (r->status == DNS_TEMPFAIL || r->status == DNS_BOGUS) {
        if (!p->failing)
            log_warn("monitor", "lookup %s failed (%s): state of %s on %s unchanged", p->qname,
                     r->why ? r->why : dns_status_name(r->status), p->addr, site->zone);
        p->failing = 1;
        lookup_done(p, MONITOR_R_ERROR, NULL);
        return;
    }
    p->failing = 0;
    int listed = 0;
    char refused[64] = "";
    for (size_t i = 0; r->status == DNS_OK && i < r->naddrs; i++) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&r->addrs[i];
        if (sin->sin_family != AF_INET) continue;
        const unsigned char *a = (const unsigned char *)&sin->sin_addr;
        if (!policy_dnsbl_is_code(a)) {
            /* RFC 5782 2.1 / Spamhaus return codes: a refusal, never a listing */
            if (!refused[0]) append_code(refused, sizeof refused, a);
        } else if (conf_dnsbl_site_match(site, a)) {
            append_code(p->new_code, sizeof p->new_code, a);
            listed = 1;
        }
    }
    if (listed) {
        log_debug("monitor", "%s: listed (%s)", p->qname, p->new_code);
        p->q = dns_query_txt(m->dns, p->qname, txt_answered, p);
        return;
    }
    if (refused[0]) {
        log_debug("monitor", "%s: refused (%s)", p->qname, refused);
        str_copy(p->new_code, refused, sizeof p->new_code);
        lookup_done(p, MONITOR_R_REFUSED, NULL);
        return;
    }
    lookup_done(p, MONITOR_R_CLEAR, NULL);
}

static void arm(struct monitor *m, double secs)
{
    long us = secs > 0 ? (long)(secs * 1e6) : 0;
    struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};
    evtimer_add(m->timer, &tv);
}

/* Start lookups up to the limit; end the round when all are answered. */
static void launch(struct monitor *m)
{
    int limit = m->conf->mon_concurrency > 0 ? m->conf->mon_concurrency : 1;
    while (m->next < m->npairs && m->inflight < (size_t)limit) {
        struct mpair *p = &m->pairs[m->next++];
        if (policy_dnsbl_qname(p->family, p->ip, m->lists[p->list].site.zone, p->qname,
                               sizeof p->qname) != 0)
            continue;
        m->inflight++;
        p->q = dns_query_a(m->dns, p->qname, a_answered, p);
    }
    if (m->running && m->next >= m->npairs && m->inflight == 0) {
        m->running = 0;
        double took = time_mono() - m->round_start;
        log_debug("monitor", "round done: %zu lookups in %.1fs", m->npairs, took);
        arm(m, m->conf->mon_interval - took);
    }
}

static void start_round(struct monitor *m)
{
    if (m->dirty) rebuild(m);
    m->round_start = time_mono();
    if (!m->npairs || !m->dns) {
        arm(m, m->conf->mon_interval);
        return;
    }
    log_debug("monitor", "round started: %zu addresses x %zu lists", m->npairs / m->nlists,
              m->nlists);
    m->running = 1;
    m->next = 0;
    launch(m);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct monitor *m = arg;
    if (!m->loaded || m->running) return;
    start_round(m);
}

/* --- start-up: the states of the last run ---------------------------------------- */

static void load_row(void *arg, const struct store_listing *l)
{
    struct monitor *m = arg;
    m->restored = xrealloc(m->restored, (m->nrestored + 1) * sizeof *m->restored);
    m->restored[m->nrestored++] = *l;
}

static void load_run(void *arg)
{
    struct monitor *m = arg;
    if (store_listing_list(m->st, NULL, load_row, m) != 0)
        log_warn("monitor", "cannot read the last states (database error): starting afresh");
}

static void load_done(void *arg)
{
    struct monitor *m = arg;
    m->load_job = NULL;
    m->loaded = 1;
    rebuild(m);
    for (size_t i = 0; i < m->nrestored; i++) {
        const struct store_listing *l = &m->restored[i];
        int s = monitor_state_parse(l->state);
        for (size_t k = 0; k < m->npairs && s > MONITOR_NONE; k++) {
            struct mpair *p = &m->pairs[k];
            if (strcmp(p->addr, l->address) != 0 ||
                strcmp(m->lists[p->list].site.zone, l->zone) != 0)
                continue;
            p->t.state = (enum monitor_state)s;
            p->t.since = (time_t)l->since;
            str_copy(p->code, l->code, sizeof p->code);
            str_copy(p->txt, l->txt, sizeof p->txt);
            if (s == MONITOR_LISTED) report(m, p, MONITOR_LISTED, 1);
        }
    }
    free(m->restored);
    m->restored = NULL;
    m->nrestored = 0;
    start_round(m);
}

/* --- public ------------------------------------------------------------------------- */

struct monitor *monitor_new(struct event_base *base, struct dns *dns, const struct kconf *conf,
                            struct store *st, monitor_cb on_change, void *arg)
{
    struct monitor *m = xcalloc(1, sizeof *m);
    m->base = base;
    m->dns = dns;
    m->conf = conf_ref(conf);
    m->st = st;
    m->on_change = on_change;
    m->arg = arg;
    m->dirty = 1;
    m->timer = evtimer_new(base, on_timer, m);
    if (st)
        m->load_job = work_submit(load_run, load_done, m);
    else {
        m->loaded = 1;
        arm(m, 0);
    }
    return m;
}

static void changed(struct monitor *m)
{
    m->dirty = 1;
    if (m->loaded && !m->running) arm(m, 0);
}

void monitor_set_conf(struct monitor *m, const struct kconf *conf)
{
    /* the lists and pairs own what they use: a round in flight ends with them, and
     * the next one is built from the new configuration */
    const struct kconf *old = m->conf;
    m->conf = conf_ref(conf);
    conf_unref(old);
    changed(m);
}

void monitor_set_addresses(struct monitor *m, const char *const *addrs, size_t n)
{
    for (size_t i = 0; i < m->nextra; i++)
        free(m->extra[i]);
    free(m->extra);
    m->extra = n ? xcalloc(n, sizeof *m->extra) : NULL;
    m->nextra = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ip[16];
        if (inet_pton(AF_INET, addrs[i], ip) != 1 && inet_pton(AF_INET6, addrs[i], ip) != 1) {
            log_warn("monitor", "not an IP address, not watched: \"%.100s\"", addrs[i]);
            continue;
        }
        m->extra[m->nextra++] = xstrdup(addrs[i]);
    }
    changed(m);
}

void monitor_free(struct monitor *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->npairs; i++)
        dns_cancel(m->pairs[i].q);
    if (m->load_job) work_cancel(m->load_job);
    if (m->write_job) {
        work_cancel(m->write_job); /* waits for a running write */
        if (!m->batch_written) write_rows(m->st, m->batch, m->batch_hist, m->nbatch);
    }
    if (m->npending) write_rows(m->st, m->pending, m->pending_hist, m->npending);
    free(m->batch);
    free(m->batch_hist);
    free(m->pending);
    free(m->pending_hist);
    free(m->restored);
    if (m->timer) event_free(m->timer);
    for (size_t i = 0; i < m->nextra; i++)
        free(m->extra[i]);
    free(m->extra);
    free_lists(m->lists, m->nlists);
    free(m->pairs);
    conf_unref(m->conf);
    free(m);
}
