/* abuse_store.c: abuse/'s writes to the directory (store.h), one at a time in order on
 * a worker, with what each means once stored. The accounts, and the text of their
 * counters, are abuse_acct.c's. Loop thread only. */
#include "core/compat.h"

#include <unistd.h>

#include "abuse/abuse_int.h"

/* --- writes to the directory, on a worker ----------------------------------------- */

static void lock_collect(void *arg, const struct store_abuse_lock *l)
{
    struct wjob *w = arg;
    w->locks = xrealloc(w->locks, (w->nlocks + 1) * sizeof *w->locks);
    w->locks[w->nlocks++] = *l;
}

/* One piece of evidence as a line of the lock's notices, appended to the struct buf arg. */
static void evidence_line(void *arg, const struct store_abuse_evidence *e)
{
    struct buf *b = arg;
    char t[32];
    time_iso8601(t, sizeof t, (time_t)e->time);
    buf_printf(b, "  %s  %s  +%d  %s\r\n", t, e->signal, e->score, e->evidence);
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
        int n;
        if (store_rate_add(st, w->text, (int)w->hour, (long long)time(NULL), 1, &n) == 0)
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

/* A write done: its failure and its log line logged (a read of the locks, a shared
 * count: nothing), then what it means, by the file that queued it (w->done). */
static void wjob_finish(struct abuse *ab, struct wjob *w, int notify)
{
    static const char *const what[] = {"the evidence", "the lock", "the unlock",
                                       "the hourly volume", "the counters"};
    if (w->kind != WK_SYNC && w->kind != WK_FAILED) {
        if (w->rc != 0) log_err("abuse", "account=%s: cannot store %s", w->account, what[w->kind]);
        if (w->logline) log_warn("abuse", "%s", w->logline);
    }
    if (w->done) w->done(ab, w, notify);
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
