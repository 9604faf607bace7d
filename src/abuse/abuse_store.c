/* abuse_store.c: abuse/'s persistence: the writes to the directory (store.h), one at
 * a time in order on a worker, with what each means once stored; each account's
 * counters (table abuse_state) written and read back, the scores and locks read at
 * start. The account state itself is abuse.c's (abuse_int.h). Loop thread only. */
#include "core/compat.h"

#include <event2/event.h>
#include <unistd.h>

#include "abuse/abuse_int.h"
#include "auth/auth.h"

/* --- writes to the directory, on a worker ----------------------------------------- */

static void lock_collect(void *arg, const struct store_abuse_lock *l)
{
    struct wjob *w = arg;
    w->locks = xrealloc(w->locks, (w->nlocks + 1) * sizeof *w->locks);
    w->locks[w->nlocks++] = *l;
}

static void wjob_run(void *arg)
{
    struct wjob *w = arg;
    struct store *st = w->ab->store;
    if (w->ab->test_delay > 0 && !atomic_load(&w->ab->freeing))
        usleep((useconds_t)w->ab->test_delay * 1000);
    switch (w->kind) {
    case WK_EVIDENCE:
        w->rc = store_abuse_evidence_add(st, &w->ev);
        break;
    case WK_LOCK: {
        w->rc = store_abuse_lock_put(st, &w->lock);
        struct buf b; /* the evidence for the notices */
        buf_init(&b, 0);
        store_abuse_evidence_list(st, w->account, 0, 50, evidence_line, &b);
        w->text = buf_take(&b);
        break;
    }
    case WK_UNLOCK:
        w->rc = store_abuse_lock_del(st, w->account) < 0 ||
                        store_abuse_evidence_clear(st, w->account, time(NULL) - 90 * 86400) != 0
                    ? -1
                    : 0;
        break;
    case WK_HOUR: {
        w->rc = w->hour >= 0 && w->messages > 0
                    ? store_abuse_hour_put(st, w->account, w->hour, w->messages, w->oldest)
                    : 0;
        int hours = 0;
        if (store_abuse_baseline(st, w->account, w->oldest, &w->mean, &hours) != 0) {
            w->mean = 0;
            w->rc = -1;
        }
        break;
    }
    case WK_STATE:
        w->rc = store_abuse_state_put(st, w->account, (long long)time(NULL), w->text);
        break;
    case WK_SYNC: /* 0: read from Redis; 1: Redis down (this node's cache); -1 */
        w->rc = store_abuse_lock_list(st, lock_collect, w);
        break;
    case WK_FAILED: { /* a failed recipient, counted across the nodes */
        char name[400];
        shared_name(name, sizeof name, CONF_ABUSE_FAILED_HOUR, w->account);
        int n;
        if (store_rate_add(st, name, (int)w->hour, (long long)time(NULL), 1, &n) == 0)
            w->messages = n;
        break;
    }
    }
    atomic_store(&w->ran, 1);
}

static void wjob_pop_free(struct abuse *ab)
{
    struct wjob *w = ab->wjobs;
    ab->wjobs = w->next;
    if (!ab->wjobs) ab->wjobs_tail = NULL;
    free(w->text);
    free(w->logline);
    free(w->locks);
    free(w);
}

/* What a write means once it is stored: its log line, the lock's notices, the
 * baseline read with an hour. The account is looked up again: it may be gone. */
static void wjob_finish(struct abuse *ab, struct wjob *w, int notify)
{
    static const char *const what[] = {"the evidence", "the lock", "the unlock",
                                       "the hourly volume", "the counters"};
    if (w->kind == WK_SYNC) {
        ab->sync_pending = 0;
        /* a lock or unlock queued after the read is newer than what it saw */
        int newer = 0;
        for (const struct wjob *o = w->next; o; o = o->next)
            newer |= o->kind == WK_LOCK || o->kind == WK_UNLOCK;
        if (w->rc == 0 && notify && !newer) abuse_sync_locks(ab, w->locks, w->nlocks);
        return;
    }
    if (w->kind == WK_FAILED) { /* unreachable: the node's own count (set at queueing) */
        if (notify) abuse_failed_counted(ab, w->account, w->messages);
        return;
    }
    if (w->kind == WK_LOCK) {
        struct acct *a = acct_get(ab, w->account, 0);
        if (a) a->lock_unstored = w->rc != 0;
    }
    if (w->rc != 0) log_err("abuse", "account=%s: cannot store %s", w->account, what[w->kind]);
    if (w->logline) log_warn("abuse", "%s", w->logline);
    if (w->kind == WK_LOCK && notify) send_notices(ab, w->account, w->lock.reason, w->text);
    if (w->kind == WK_HOUR) {
        struct acct *a = acct_get(ab, w->account, 0);
        if (a && a->baseline_asked == w->cur) a->baseline = w->mean;
    }
}

static void wjob_done(void *arg)
{
    struct wjob *w = arg; /* the first of ab->wjobs */
    struct abuse *ab = w->ab;
    w->work = NULL;
    wjob_finish(ab, w, 1);
    wjob_pop_free(ab);
    if (ab->wjobs) ab->wjobs->work = work_submit(wjob_run, wjob_done, ab->wjobs);
}

struct wjob *wjob_new(struct abuse *ab, enum wkind kind, const char *account)
{
    struct wjob *w = xcalloc(1, sizeof *w);
    w->ab = ab;
    w->kind = kind;
    str_copy(w->account, account, sizeof w->account);
    return w;
}

void wjob_push(struct abuse *ab, struct wjob *w)
{
    if (ab->wjobs_tail)
        ab->wjobs_tail->next = w;
    else
        ab->wjobs = w;
    ab->wjobs_tail = w;
    if (ab->wjobs == w) w->work = work_submit(wjob_run, wjob_done, w);
}

/* --- counters that survive a restart (table abuse_state) ------------------------------
 * One text row per account: "1 SEEN HOUR_NO HOUR_MSGS BASELINE_MILLI BASE_SIG NEWDOM_SIG
 * NEWSND_SIG UNKNOWN_SIG BLOCKED_SIG", then "w K SLOT N" per window slot in use,
 * "d HASH T" per distinct recipient, "D HASH T" per domain, "S HASH T" per sender. */

void state_write(struct abuse *ab, struct acct *a)
{
    a->dirty = 0;
    struct buf b;
    buf_init(&b, 0);
    buf_printf(&b, "1 %lld %lld %d %lld %lld %lld %lld %lld %lld", a->msgs_seen, a->hour_no,
               a->hour_msgs, a->baseline < 0 ? -1LL : (long long)(a->baseline * 1000),
               a->baseline_signalled, a->newdom_signalled, a->newsnd_signalled,
               a->unknown_signalled, a->blocked_signalled);
    for (int k = 0; k < NWIN; k++)
        for (int i = 0; i < SLOTS; i++)
            if (a->w[k].n[i]) buf_printf(&b, " w %d %lld %d", k, a->w[k].slot[i], a->w[k].n[i]);
    for (size_t i = 0; i < a->ndist; i++)
        buf_printf(&b, " d %llu %lld", (unsigned long long)a->dist[i].h, (long long)a->dist[i].t);
    for (size_t i = 0; i < a->ndoms; i++)
        buf_printf(&b, " D %llu %lld", (unsigned long long)a->doms[i].h, (long long)a->doms[i].t);
    for (size_t i = 0; i < SENDERS_MAX; i++)
        if (a->senders[i].h)
            buf_printf(&b, " S %llu %lld", (unsigned long long)a->senders[i].h,
                       (long long)a->senders[i].t);
    struct wjob *w = wjob_new(ab, WK_STATE, a->name);
    w->text = buf_take(&b);
    wjob_push(ab, w);
}

/* A row of abuse_state read at start (the format above); a bad row is skipped. */
static void state_read(void *arg, const char *account, const char *state)
{
    struct abuse *ab = arg;
    const char *p = state;
    char *end;
    long long v[10];
    for (int i = 0; i < 10; i++) {
        v[i] = strtoll(p, &end, 10);
        if (end == p) {
            log_err("abuse", "account=%s: stored counters unreadable (ignored)", account);
            return;
        }
        p = end;
    }
    if (v[0] != 1) return;
    struct acct *a = acct_get(ab, account, 1);
    if (!a) return;
    a->msgs_seen = v[1];
    a->hour_no = v[2];
    a->hour_msgs = (int)v[3];
    a->baseline = v[4] < 0 ? -1 : (double)v[4] / 1000;
    a->baseline_asked = v[4] < 0 ? -1 : a->hour_no;
    a->baseline_signalled = v[5];
    a->newdom_signalled = v[6];
    a->newsnd_signalled = v[7];
    a->unknown_signalled = v[8];
    a->blocked_signalled = v[9];
    size_t nsnd = 0;
    for (;;) {
        while (*p == ' ')
            p++;
        char tag = *p;
        if (!tag || !strchr("wdDS", tag) || p[1] != ' ') break;
        p += 2;
        unsigned long long h = strtoull(p, &end, 10); /* a hash, or w's window */
        if (end == p) break;
        p = end;
        long long x = (long long)h;
        long long y = strtoll(p, &end, 10);
        if (end == p) break;
        p = end;
        if (tag == 'w') {
            long long z = strtoll(p, &end, 10);
            if (end == p) break;
            p = end;
            if (x >= 0 && x < NWIN) {
                int i = (int)(((y % SLOTS) + SLOTS) % SLOTS);
                a->w[x].slot[i] = y;
                a->w[x].n[i] = (int)z;
            }
        } else if (tag == 'd') {
            if (a->ndist < DISTINCT_MAX) {
                if (a->ndist == a->capdist) {
                    a->capdist = a->capdist ? a->capdist * 2 : 16;
                    a->dist = xrealloc(a->dist, a->capdist * sizeof *a->dist);
                }
                a->dist[a->ndist].h = h;
                a->dist[a->ndist++].t = (time_t)y;
            }
        } else if (tag == 'D') {
            seen_put(&a->doms, &a->ndoms, &a->capdoms, DOMAINS_MAX, h, (time_t)y);
        } else if (nsnd < SENDERS_MAX) {
            a->senders[nsnd].h = h;
            a->senders[nsnd++].t = (time_t)y;
        }
    }
}

/* Scores are the evidence of score_window, read at start. */
static void score_read(void *arg, const struct store_abuse_evidence *e)
{
    struct abuse *ab = arg;
    struct acct *a = acct_get(ab, e->account, 1);
    if (!a) return;
    if (a->nsig == SIGNALS_MAX) {
        memmove(a->sig, a->sig + 1, (SIGNALS_MAX - 1) * sizeof *a->sig);
        a->nsig--;
    }
    a->sig[a->nsig++] = (struct signal_rec){.t = (time_t)e->time, .score = e->score};
}

void flush_dirty(struct abuse *ab)
{
    for (size_t i = 0; i < ab->nbuckets; i++)
        for (struct acct *a = ab->b[i]; a; a = a->next)
            if (a->dirty) state_write(ab, a);
}

void flush_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush_dirty(arg);
}

static void lock_restored(void *arg, const struct store_abuse_lock *l)
{
    struct abuse *ab = arg;
    struct acct *a = acct_get(ab, l->account, 1);
    if (!a) return;
    a->locked = 1;
    a->locked_since = (time_t)l->since;
    str_copy(a->reason, l->reason, sizeof a->reason);
    auth_lock_set(ab->auth, a->name, 1);
    log_info("abuse", "account=%s locked since %lld (%s)", a->name, l->since, l->reason);
}

void abuse_store_load(struct abuse *ab, time_t now)
{
    struct store *st = ab->store;
    if (store_abuse_state_list(st, (long long)now - STATE_KEEP, state_read, ab) != 0)
        log_err("abuse", "cannot read the accounts' counters from the directory");
    if (store_abuse_evidence_list(st, NULL, (long long)now - ab->conf->abuse_score_window, 0,
                                  score_read, ab) != 0)
        log_err("abuse", "cannot read the accounts' scores from the directory");
    int rc = store_abuse_lock_list(st, lock_restored, ab);
    if (rc < 0) log_err("abuse", "cannot read the locked accounts from the directory");
    if (rc == 1) /* docs/cluster.md: a locked account stays locked */
        log_warn("abuse", "shared state unreachable: the locks this node knew apply");
}

void abuse_store_drain(struct abuse *ab)
{
    while (ab->wjobs) { /* in order; the first may be on a worker */
        struct wjob *w = ab->wjobs;
        if (w->work) work_cancel(w->work);
        if (!atomic_load(&w->ran)) wjob_run(w); /* never started: write it now */
        wjob_finish(ab, w, 0);                  /* no notices: the spool closes */
        wjob_pop_free(ab);
    }
}
