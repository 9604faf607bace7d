/* abuse_acct.c: the accounts of abuse/ (abuse_int.h's struct acct): the table by
 * name, an account's score and its lists of what it was seen doing; its counters
 * written to the directory (table abuse_state) through abuse_store.c and read back at
 * start with the scores and the locks. What they mean (limits, signals, when to lock)
 * is abuse.c's. Loop thread only. */
#include "core/compat.h"

#include <stdint.h>

#include "abuse/abuse_int.h"
#include "auth/auth.h"

static void state_write(struct abuse *ab, struct acct *a);

/* --- the table --------------------------------------------------------------------- */

uint64_t name_hash(const struct abuse *ab, const char *s)
{
    uint64_t h = 1469598103934665603ULL ^ ab->seed; /* FNV-1a, seeded per start */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h ^ (h >> 29);
}

void acct_free(struct acct *a)
{
    free(a->name);
    free(a->dist);
    free(a->doms);
    free(a);
}

static void forget_idle(struct abuse *ab, time_t now)
{
    time_t keep = ab->conf->abuse_day > ab->conf->abuse_score_window ? ab->conf->abuse_day
                                                                     : ab->conf->abuse_score_window;
    for (size_t i = 0; i < ab->nbuckets; i++)
        for (struct acct **pp = &ab->b[i]; *pp;) {
            struct acct *a = *pp;
            if (!a->locked && now - a->last_seen > keep / 4) {
                if (a->dirty) state_write(ab, a);
                *pp = a->next;
                acct_free(a);
                ab->n--;
            } else {
                pp = &a->next;
            }
        }
}

struct acct *acct_get(struct abuse *ab, const char *account, int create)
{
    char name[320];
    str_copy(name, account, sizeof name);
    str_lower(name);
    uint64_t h = name_hash(ab, name);
    struct acct *a;
    for (a = ab->b[h & (ab->nbuckets - 1)]; a; a = a->next)
        if (a->hash == h && strcmp(a->name, name) == 0) break;
    time_t now = time(NULL);
    if (a || !create) {
        if (a) a->last_seen = now;
        return a;
    }
    if (ab->n >= ACCOUNTS_MAX) {
        forget_idle(ab, now);
        if (ab->n >= ACCOUNTS_MAX) return NULL; /* logged by the caller's lack of state */
    }
    a = xcalloc(1, sizeof *a);
    a->name = xstrdup(name);
    a->hash = h;
    a->last_seen = now;
    a->baseline = -1;
    a->hour_no = a->baseline_asked = -1;
    a->baseline_signalled = a->nets_signalled = -1;
    a->newdom_signalled = a->newsnd_signalled = -1;
    a->unknown_signalled = a->blocked_signalled = -1;
    size_t i = h & (ab->nbuckets - 1);
    a->next = ab->b[i];
    ab->b[i] = a;
    ab->n++;
    return a;
}

/* --- what an account did: its score, the lists of what it was seen using ----------- */

int score_of(const struct abuse *ab, const struct acct *a, time_t now)
{
    int s = 0;
    for (size_t i = 0; i < a->nsig; i++)
        if (now - a->sig[i].t < ab->conf->abuse_score_window) s += a->sig[i].score;
    return s;
}

/* Remember h in v (at most max; then the oldest goes); known, its time is updated. */
void seen_put(struct seen **v, size_t *n, size_t *cap, size_t max, uint64_t h, time_t t)
{
    size_t oldest = 0;
    for (size_t i = 0; i < *n; i++) {
        if ((*v)[i].h == h) {
            if ((*v)[i].t < t) (*v)[i].t = t;
            return;
        }
        if ((*v)[i].t < (*v)[oldest].t) oldest = i;
    }
    if (*n < max) {
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 8;
            if (*cap > max) *cap = max;
            *v = xrealloc(*v, *cap * sizeof **v);
        }
        oldest = (*n)++;
    }
    (*v)[oldest] = (struct seen){.h = h, .t = t};
}

int seen_has(const struct seen *v, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].h == h) return 1;
    return 0;
}

/* --- counters that survive a restart (table abuse_state) ------------------------------
 * One text row per account: "1 SEEN HOUR_NO HOUR_MSGS BASELINE_MILLI BASE_SIG NEWDOM_SIG
 * NEWSND_SIG UNKNOWN_SIG BLOCKED_SIG", then "w K SLOT N" per window slot in use,
 * "d HASH T" per distinct recipient, "D HASH T" per domain, "S HASH T" per sender. */

static void state_write(struct abuse *ab, struct acct *a)
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

void acct_load(struct abuse *ab, time_t now)
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
