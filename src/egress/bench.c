/* bench.c: which source address may send where (bench.h): benches and slow-down
 * marks per address and destination, volume counters, the weighted pick within a
 * pool, and the status listing. Loop thread only; benches are written through to
 * the directory database on a worker. The replies that bench are judged in
 * replies_bridge.c; delivery itself is deliver/remote.c's. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <stdatomic.h>

#include "core/core.h"
#include "egress/bench.h"
#include "store/store.h"

struct bench {
    char addr[64];
    char *dest; /* lowercased; NULL = every destination */
    char *reason;
    time_t since, until;
    struct bench *next;
};

struct slow {
    char addr[64];
    char org[256];
    time_t until;
    struct slow *next;
};

struct dvol {
    char org[256];
    struct egress_volume v;
    struct dvol *next;
};

struct vol {
    char addr[64];
    time_t hour, day; /* start of the counted hour and day */
    struct egress_volume v;
    struct dvol *dests;
    struct vol *next;
};

struct wrr {
    char pool[64];
    char addr[64];
    long cur;
    struct wrr *next;
};

/* A write to the database, on a worker. */
struct wjob {
    struct work_job *job;
    atomic_int ran;
    int del;
    char addr[64];
    char *dest; /* "" = every destination; del: NULL = every row of addr */
    char *reason;
    time_t since, until;
    struct wjob *next;
};

static struct {
    struct store *st;
    const struct kconf *conf;
    struct bench *benches;
    struct slow *slows;
    struct vol *vols;
    struct wrr *wrrs;
    struct wjob *jobs, *jobs_tail; /* pending writes, oldest first */
    struct event *ev_sync;         /* shared state: the benches read every state.refresh */
    struct work_job *sync_job;
    struct bench *sync_list; /* what sync_job read */
    int sync_rc;
} g;

/* --- helpers ------------------------------------------------------------------- */

/* addr in canonical form into out; -1 when it is not an IP address. */
static int canon(const char *addr, char out[64])
{
    unsigned char b[16];
    if (addr && inet_pton(AF_INET, addr, b) == 1 && inet_ntop(AF_INET, b, out, 64)) return 0;
    if (addr && inet_pton(AF_INET6, addr, b) == 1 && inet_ntop(AF_INET6, b, out, 64)) return 0;
    return -1;
}

static int is_ip(const char *s)
{
    char tmp[64];
    return canon(s, tmp) == 0;
}

void egress_org(const char *host, char *out, size_t size)
{
    char h[256];
    str_copy(h, host ? host : "", sizeof h);
    str_lower(h);
    size_t n = strlen(h);
    while (n && h[n - 1] == '.')
        h[--n] = '\0';
    if (is_ip(h)) {
        str_copy(out, h, size);
        return;
    }
    /* the last two labels; three under a two-letter country code with a generic
     * second level ("example.co.uk") */
    const char *last = strrchr(h, '.');
    if (!last) {
        str_copy(out, h, size);
        return;
    }
    const char *p = last;
    while (p > h && p[-1] != '.')
        p--;
    const char *two = p; /* "outlook.com" */
    size_t sl = (size_t)(last - two);
    int generic = strlen(last + 1) == 2 &&
                  (sl <= 3 && (strncmp(two, "co", sl) == 0 || strncmp(two, "com", sl) == 0 ||
                               strncmp(two, "net", sl) == 0 || strncmp(two, "org", sl) == 0 ||
                               strncmp(two, "gov", sl) == 0 || strncmp(two, "ac", sl) == 0));
    if (generic && two > h) {
        p = two - 1;
        while (p > h && p[-1] != '.')
            p--;
        two = p;
    }
    str_copy(out, two, size);
}

static char *lower_dup(const char *s)
{
    char *d = xstrdup(s);
    str_lower(d);
    size_t n = strlen(d);
    while (n && d[n - 1] == '.')
        d[--n] = '\0';
    return d;
}

static int live(time_t until, time_t now)
{
    return until == 0 || until > now;
}

static struct bench **bench_find(const char *addr, const char *dest);

/* --- persistence ----------------------------------------------------------------- */

static void wjob_run(void *arg)
{
    struct wjob *w = arg;
    if (g.st) {
        int rc = w->del ? store_egress_bench_del(g.st, w->addr, w->dest)
                        : store_egress_bench_put(g.st, w->addr, w->dest, w->reason,
                                                 (long long)w->since, (long long)w->until);
        if (rc != 0) log_warn("egress", "cannot store the bench of %s: database error", w->addr);
    }
    atomic_store(&w->ran, 1);
}

/* Writes go one at a time, in order (a bench and its lifting must not race on two
 * workers): the first of g.jobs is the one submitted. */
static void wjob_pop_free(void)
{
    struct wjob *w = g.jobs;
    g.jobs = w->next;
    if (!g.jobs) g.jobs_tail = NULL;
    free(w->dest);
    free(w->reason);
    free(w);
}

static void wjob_done(void *arg)
{
    wjob_pop_free(); /* arg is the first */
    if (g.jobs) g.jobs->job = work_submit(wjob_run, wjob_done, g.jobs);
}

static void persist(int del, const char *addr, const char *dest, const char *reason, time_t since,
                    time_t until)
{
    if (!g.st) return;
    struct wjob *w = xcalloc(1, sizeof *w);
    w->del = del;
    str_copy(w->addr, addr, sizeof w->addr);
    w->dest = dest ? xstrdup(dest) : del ? NULL : xstrdup("");
    w->reason = xstrdup(reason ? reason : "");
    w->since = since;
    w->until = until;
    if (g.jobs_tail)
        g.jobs_tail->next = w;
    else
        g.jobs = w;
    g.jobs_tail = w;
    if (g.jobs == w) w->job = work_submit(wjob_run, wjob_done, w);
}

/* arg: the list (struct bench **) the bench is added to. */
static void load_cb(void *arg, const char *addr, const char *dest, const char *reason,
                    long long since, long long until)
{
    struct bench **head = arg;
    time_t now = time(NULL);
    struct bench *b = xcalloc(1, sizeof *b);
    if (canon(addr, b->addr) != 0 || !live((time_t)until, now)) {
        free(b);
        return;
    }
    b->dest = *dest ? xstrdup(dest) : NULL;
    b->reason = xstrdup(reason);
    b->since = (time_t)since;
    b->until = (time_t)until;
    b->next = *head;
    *head = b;
}

static void bench_list_free(struct bench *b)
{
    while (b) {
        struct bench *next = b->next;
        free(b->dest);
        free(b->reason);
        free(b);
        b = next;
    }
}

/* Worker thread. */
static void sync_run(void *arg)
{
    g.sync_list = NULL;
    g.sync_rc = store_egress_bench_list(g.st, load_cb, &g.sync_list);
}

/* The shared benches replace ours, unless a write of ours is pending (it is newer). */
static void sync_done(void *arg)
{
    g.sync_job = NULL;
    struct bench *list = g.sync_list;
    g.sync_list = NULL;
    if (g.sync_rc != 0 || g.jobs) {
        bench_list_free(list);
        return;
    }
    for (struct bench *b = list; b; b = b->next) {
        struct bench **pp = bench_find(b->addr, b->dest);
        if (!pp)
            log_info("egress", "bench addr=%s destination=%s until=%lld source=shared", b->addr,
                     b->dest ? b->dest : "*", (long long)b->until);
    }
    bench_list_free(g.benches);
    g.benches = list;
}

static void sync_fire(evutil_socket_t fd, short what, void *arg)
{
    if (g.st && !g.sync_job && !g.jobs) g.sync_job = work_submit(sync_run, sync_done, NULL);
}

void egress_bench_sync_start(struct event_base *base, int seconds)
{
    if (!g.st || !store_shared(g.st) || g.ev_sync) return;
    g.ev_sync = event_new(base, -1, EV_PERSIST, sync_fire, NULL);
    if (g.ev_sync) event_add(g.ev_sync, &(struct timeval){.tv_sec = seconds > 0 ? seconds : 1});
}

int egress_bench_init(struct store *st)
{
    g.st = st;
    if (!st) return 0;
    if (store_egress_bench_list(st, load_cb, &g.benches) != 0) {
        log_warn("egress", "cannot read the egress benches from the directory");
        return -1;
    }
    return 0;
}

void egress_bench_shutdown(void)
{
    if (g.ev_sync) event_free(g.ev_sync);
    g.ev_sync = NULL;
    if (g.sync_job) work_cancel(g.sync_job);
    g.sync_job = NULL;
    bench_list_free(g.sync_list);
    g.sync_list = NULL;
    while (g.jobs) { /* in order; the first may be on a worker */
        struct wjob *w = g.jobs;
        if (w->job) work_cancel(w->job);
        if (!atomic_load(&w->ran)) wjob_run(w); /* never started: write it now */
        wjob_pop_free();
    }
    while (g.benches) {
        struct bench *b = g.benches;
        g.benches = b->next;
        free(b->dest);
        free(b->reason);
        free(b);
    }
    while (g.slows) {
        struct slow *s = g.slows;
        g.slows = s->next;
        free(s);
    }
    while (g.vols) {
        struct vol *v = g.vols;
        g.vols = v->next;
        while (v->dests) {
            struct dvol *d = v->dests;
            v->dests = d->next;
            free(d);
        }
        free(v);
    }
    while (g.wrrs) {
        struct wrr *w = g.wrrs;
        g.wrrs = w->next;
        free(w);
    }
    conf_unref(g.conf);
    g.conf = NULL;
    g.st = NULL;
}

void egress_set_conf(const struct kconf *c)
{
    const struct kconf *old = g.conf;
    g.conf = conf_ref(c);
    conf_unref(old);
}

void egress_status_conf(const struct kconf **out)
{
    *out = g.conf;
}

/* --- benches ----------------------------------------------------------------------- */

static struct bench **bench_find(const char *addr, const char *dest)
{
    for (struct bench **pp = &g.benches; *pp; pp = &(*pp)->next) {
        struct bench *b = *pp;
        if (strcmp(b->addr, addr) != 0) continue;
        if (!dest ? !b->dest : b->dest && strcasecmp(b->dest, dest) == 0) return pp;
    }
    return NULL;
}

int egress_bench(const char *addr, const char *destination, const char *reason, time_t until)
{
    char a[64];
    if (canon(addr, a) != 0) return -1;
    char *dest = destination && *destination ? lower_dup(destination) : NULL;
    char r[EGRESS_REASON_MAX + 1];
    str_copy(r, reason && *reason ? reason : "benched", sizeof r);
    struct bench **pp = bench_find(a, dest);
    struct bench *b;
    time_t now = time(NULL);
    if (pp) {
        b = *pp;
        free(dest);
        free(b->reason);
        if (!live(b->until, now)) b->since = now;
    } else {
        b = xcalloc(1, sizeof *b);
        str_copy(b->addr, a, sizeof b->addr);
        b->dest = dest;
        b->since = now;
        b->next = g.benches;
        g.benches = b;
    }
    b->reason = xstrdup(r);
    b->until = until;
    char esc[2 * EGRESS_REASON_MAX];
    log_escape(esc, sizeof esc, b->reason, strlen(b->reason)); /* a peer's words */
    log_info("egress", "bench addr=%s destination=%s until=%lld reason=\"%s\"", b->addr,
             b->dest ? b->dest : "*", (long long)until, esc);
    persist(0, b->addr, b->dest, b->reason, b->since, b->until);
    return 0;
}

static void bench_free_at(struct bench **pp)
{
    struct bench *b = *pp;
    *pp = b->next;
    log_info("egress", "unbench addr=%s destination=%s", b->addr, b->dest ? b->dest : "*");
    persist(1, b->addr, b->dest ? b->dest : "", NULL, 0, 0);
    free(b->dest);
    free(b->reason);
    free(b);
}

int egress_unbench(const char *addr, const char *destination)
{
    char a[64];
    if (canon(addr, a) != 0) return -1;
    char *dest = destination && *destination ? lower_dup(destination) : NULL;
    struct bench **pp = bench_find(a, dest);
    free(dest);
    if (!pp) return 0;
    bench_free_at(pp);
    return 1;
}

int egress_unbench_all(const char *addr)
{
    char a[64];
    if (canon(addr, a) != 0) return -1;
    int n = 0;
    for (struct bench **pp = &g.benches; *pp;) {
        if (strcmp((*pp)->addr, a) == 0) {
            bench_free_at(pp);
            n++;
        } else {
            pp = &(*pp)->next;
        }
    }
    return n;
}

int egress_is_benched(const char *addr, const char *host, char *reason, size_t rsize)
{
    char a[64], org[256], h[256];
    if (canon(addr, a) != 0) return 0;
    str_copy(h, host ? host : "", sizeof h);
    str_lower(h);
    egress_org(h, org, sizeof org);
    time_t now = time(NULL);
    for (struct bench *b = g.benches; b; b = b->next) {
        if (strcmp(b->addr, a) != 0 || !live(b->until, now)) continue;
        if (!b->dest || strcmp(b->dest, h) == 0 || strcmp(b->dest, org) == 0) {
            if (reason) str_copy(reason, b->reason, rsize);
            return 1;
        }
    }
    return 0;
}

void egress_bench_list(void (*cb)(void *arg, const struct egress_bench_info *b), void *arg)
{
    time_t now = time(NULL);
    for (struct bench *b = g.benches; b; b = b->next) {
        if (!live(b->until, now)) continue;
        struct egress_bench_info i = {b->addr, b->dest, b->reason, b->since, b->until};
        cb(arg, &i);
    }
}

/* --- slow-down marks ------------------------------------------------------------- */

void egress_slow(const char *addr, const char *host, const char *reason, time_t until)
{
    char a[64], org[256];
    if (canon(addr, a) != 0) return;
    egress_org(host, org, sizeof org);
    struct slow *s;
    for (s = g.slows; s; s = s->next)
        if (strcmp(s->addr, a) == 0 && strcmp(s->org, org) == 0) break;
    if (!s) {
        s = xcalloc(1, sizeof *s);
        str_copy(s->addr, a, sizeof s->addr);
        str_copy(s->org, org, sizeof s->org);
        s->next = g.slows;
        g.slows = s;
    }
    s->until = until;
    char esc[2 * EGRESS_REASON_MAX];
    log_escape(esc, sizeof esc, reason ? reason : "", reason ? strlen(reason) : 0);
    log_info("egress", "slow down addr=%s destination=%s until=%lld reason=\"%s\"", a, org,
             (long long)until, esc);
}

int egress_is_slow(const char *addr, const char *host)
{
    char a[64], org[256];
    if (canon(addr, a) != 0) return 0;
    egress_org(host, org, sizeof org);
    time_t now = time(NULL);
    for (struct slow *s = g.slows; s; s = s->next)
        if (strcmp(s->addr, a) == 0 && strcmp(s->org, org) == 0) return s->until > now;
    return 0;
}

void egress_slow_list(const char *addr, void (*cb)(void *arg, const char *org, time_t until),
                      void *arg)
{
    char a[64];
    if (canon(addr, a) != 0) return;
    time_t now = time(NULL);
    for (struct slow *s = g.slows; s; s = s->next)
        if (strcmp(s->addr, a) == 0 && s->until > now) cb(arg, s->org, s->until);
}

/* --- volume ------------------------------------------------------------------------ */

static struct vol *vol_get(const char *a, int create)
{
    struct vol *v;
    for (v = g.vols; v; v = v->next)
        if (strcmp(v->addr, a) == 0) break;
    if (!v && create) {
        v = xcalloc(1, sizeof *v);
        str_copy(v->addr, a, sizeof v->addr);
        v->next = g.vols;
        g.vols = v;
    }
    if (!v) return NULL;
    time_t now = time(NULL);
    if (now - v->hour >= 3600) {
        v->hour = now - now % 3600;
        v->v.msgs_hour = v->v.rcpts_hour = 0;
        for (struct dvol *d = v->dests; d; d = d->next)
            d->v.msgs_hour = d->v.rcpts_hour = 0;
    }
    if (now - v->day >= 86400) {
        v->day = now - now % 86400;
        v->v.msgs_day = v->v.rcpts_day = 0;
        while (v->dests) {
            struct dvol *d = v->dests;
            v->dests = d->next;
            free(d);
        }
    }
    return v;
}

void egress_count(const char *addr, const char *host, size_t nrcpts)
{
    char a[64], org[256];
    if (canon(addr, a) != 0) return;
    struct vol *v = vol_get(a, 1);
    egress_org(host, org, sizeof org);
    struct dvol *d;
    for (d = v->dests; d; d = d->next)
        if (strcmp(d->org, org) == 0) break;
    if (!d) {
        d = xcalloc(1, sizeof *d);
        str_copy(d->org, org, sizeof d->org);
        d->next = v->dests;
        v->dests = d;
    }
    struct egress_volume *t[2] = {&v->v, &d->v};
    for (int i = 0; i < 2; i++) {
        t[i]->msgs_hour++;
        t[i]->msgs_day++;
        t[i]->rcpts_hour += nrcpts;
        t[i]->rcpts_day += nrcpts;
    }
}

void egress_volume_get(const char *addr, struct egress_volume *out)
{
    char a[64];
    memset(out, 0, sizeof *out);
    if (canon(addr, a) != 0) return;
    struct vol *v = vol_get(a, 0);
    if (v) *out = v->v;
}

void egress_volume_dests(const char *addr,
                         void (*cb)(void *arg, const char *org, const struct egress_volume *v),
                         void *arg)
{
    char a[64];
    if (canon(addr, a) != 0) return;
    struct vol *v = vol_get(a, 0);
    for (struct dvol *d = v ? v->dests : NULL; d; d = d->next)
        cb(arg, d->org, &d->v);
}

/* --- the pick within a pool -------------------------------------------------------- */

static struct wrr *wrr_get(const char *pool, const char *addr)
{
    for (struct wrr *w = g.wrrs; w; w = w->next)
        if (strcmp(w->pool, pool) == 0 && strcmp(w->addr, addr) == 0) return w;
    struct wrr *w = xcalloc(1, sizeof *w);
    str_copy(w->pool, pool, sizeof w->pool);
    str_copy(w->addr, addr, sizeof w->addr);
    w->next = g.wrrs;
    g.wrrs = w;
    return w;
}

const struct conf_egress_source *egress_pick(const struct conf_egress_pool *p, const char *host,
                                             char *why, size_t whylen)
{
    if (!p || p->nsrc == 0) return NULL;
    /* pass 0: neither benched nor slowed; pass 1: slowed ones too */
    for (int pass = 0; pass < 2; pass++) {
        long total = 0;
        struct wrr *best = NULL;
        const struct conf_egress_source *bests = NULL;
        for (size_t i = 0; i < p->nsrc; i++) {
            const struct conf_egress_source *s = &p->src[i];
            if (egress_is_benched(s->addr, host, why, whylen)) continue;
            if (pass == 0 && egress_is_slow(s->addr, host)) continue;
            struct wrr *w = wrr_get(p->name, s->addr);
            w->cur += s->weight;
            total += s->weight;
            if (!best || w->cur > best->cur) {
                best = w;
                bests = s;
            }
        }
        if (best) {
            best->cur -= total;
            return bests;
        }
    }
    return NULL;
}
