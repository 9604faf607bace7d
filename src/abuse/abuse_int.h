/* abuse_int.h: private to abuse/: the account state, the ordered queue of writes to
 * the directory and what each file lends those above it. Floors, from the ground:
 * abuse_store.c (the writes), abuse_acct.c (the accounts), abuse_lock.c (the lock),
 * abuse.c (limits, signals, when to lock), abuse_status.c; each calls only those below
 * it (a write's completion reaches up through wjob.done). Not for other modules: their
 * contract is abuse.h. Loop thread. */
#ifndef KURIER_ABUSE_INT_H
#define KURIER_ABUSE_INT_H

#include <event2/util.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "abuse/abuse.h"
#include "core/core.h"
#include "store/store.h"

struct job;
struct notice;
struct override;
struct owner;

#define SLOTS 12            /* a window is 12 slots: it slides in twelfths */
#define ACCOUNTS_MAX 100000 /* accounts tracked; then idle unlocked ones are forgotten */
#define DISTINCT_MAX 20000  /* recipient addresses remembered per account and day */
#define SIGNALS_MAX 64      /* recent signals per account that make up its score */
#define NETS_MAX 32         /* client networks remembered per account */
#define NOTICES_PER_HOUR 20 /* lock notices mailed an hour (the log has all) */
#define OVERRIDES_MAX 100000
#define DOMAINS_MAX 256         /* recipient domains remembered per account (the oldest goes) */
#define SENDERS_MAX 16          /* envelope senders remembered per account */
#define STATE_FLUSH 5           /* seconds between writes of changed counters */
#define STATE_KEEP (90 * 86400) /* counters not written for longer are not read at start */
#define FAILS_SLOTS                                                                                \
    4096 /* failed logins by account name: a fixed table, so names the                             \
            client makes up cannot grow it (a collision forgets) */

struct window {
    long long slot[SLOTS];
    int n[SLOTS];
};

/* The windows of an account: the limits' (by enum conf_abuse_limit), then these. */
enum {
    W_NEWDOM = CONF_ABUSE_NLIMITS, /* recipients' domains it never wrote to */
    W_NEWSND,                      /* envelope senders it did not use before */
    W_REPLIES,                     /* remote answers to its recipients */
    W_UNKNOWN,                     /* ... that said user-unknown */
    W_BLOCKED,                     /* ... that said our address is blocklisted */
    NWIN
};

struct seen {
    uint64_t h; /* addr_hash() of a domain or sender (unseeded: stored) */
    time_t t;
};

struct signal_rec {
    time_t t;
    int score;
};

struct acct {
    char *name; /* lower case */
    uint64_t hash;
    struct acct *next;
    time_t last_seen;
    struct window w[NWIN]; /* RCPTS_MESSAGE unused */
    struct {
        uint64_t h;
        time_t t;
    } * dist;
    size_t ndist, capdist;
    long long hour_no; /* the hour hour_msgs counts */
    int hour_msgs;
    double baseline;          /* mean messages in its busy hours; < 0: not read yet */
    long long baseline_asked; /* the hour whose baseline was asked for on a worker */
    long long baseline_signalled;
    struct seen *doms; /* known recipient domains, at most DOMAINS_MAX */
    size_t ndoms, capdoms;
    struct seen senders[SENDERS_MAX];
    long long msgs_seen; /* messages since it is watched (learn_messages) */
    long long newdom_signalled, newsnd_signalled, unknown_signalled, blocked_signalled;
    int dirty; /* counters changed since they were last written */
    struct {
        char net[48];
        time_t t;
    } nets[NETS_MAX];
    long long nets_signalled;
    struct signal_rec sig[SIGNALS_MAX];
    size_t nsig;
    int locked;
    time_t locked_since;
    int lock_unstored; /* the lock's write failed (shared state down): written again */
    char reason[512];
};

/* A write to the directory (and what reads belong to it), on a worker. Writes go one
 * at a time, in order (a lock after its evidence; an unlock after the lock). The
 * completion finds the account again by name (it may be gone) and logs the line that
 * says the decision, once it is stored. */
enum wkind { WK_EVIDENCE = 0, WK_LOCK, WK_UNLOCK, WK_HOUR, WK_STATE, WK_SYNC, WK_FAILED };
struct wjob {
    struct abuse *ab;
    struct work_job *work;
    atomic_int ran;
    enum wkind kind;
    int rc;
    char account[320];
    struct store_abuse_evidence ev; /* WK_EVIDENCE */
    struct store_abuse_lock lock;   /* WK_LOCK */
    long long hour, oldest, cur;    /* WK_HOUR: the finished hour (-1 none), its */
    int messages;                   /* messages, rows before oldest go; cur: now;
                                       WK_FAILED: the failed recipients across the nodes,
                                       else (Redis unreachable) this node's */
    double mean;                    /* WK_HOUR: the baseline read */
    char *text;                     /* WK_STATE: the counters; WK_LOCK: evidence read;
                                       WK_FAILED: the shared counter's name */
    char *logline;                  /* logged (warning) when done, or NULL */
    struct store_abuse_lock *locks; /* WK_SYNC: the shared locks read */
    size_t nlocks;
    /* What it means once done, the queuer's (NULL: nothing more): on the loop, after
     * a failed write and the logline are logged; notify 0 when abuse_free runs the
     * writes left (no notices, no locks then). */
    void (*done)(struct abuse *ab, struct wjob *w, int notify);
    struct wjob *next;
};

struct abuse {
    struct event_base *base;
    const struct kconf *conf;
    struct store *store;
    struct auth *auth;
    struct spool *spool;
    struct queue *queue;
    struct acct **b;
    size_t nbuckets, n;
    uint64_t seed;
    struct override *ov;
    size_t nov;
    struct owner *owners;
    size_t nowners;
    struct wjob *wjobs, *wjobs_tail; /* pending writes, oldest first */
    struct event *ev_flush;
    struct event *ev_sync; /* shared state: the locks read every state.refresh */
    int sync_pending;
    int test_delay;     /* KURIER_TEST_DELAY "abuse=MS": each write, each status read waits */
    atomic_int freeing; /* abuse_free runs the writes left: no test delay then */
    struct job *jobs;
    struct notice *notices;
    time_t notice_window;
    int nnotices;
    struct {
        uint64_t h;
        int fails;
        time_t start;
    } fails[FAILS_SLOTS];
};

/* --- abuse_store.c, the ground floor: writes to the directory, one at a time in order
 * --------------------------------------------------- */

/* A write for account; the caller fills the rest (w->done: what it means once done),
 * then queues it (wjob_push). */
struct wjob *wjob_new(struct abuse *ab, enum wkind kind, const char *account);
/* Queue w, filled: a worker may run it at once. */
void wjob_push(struct abuse *ab, struct wjob *w);
/* abuse_free: the writes left, in order, run here (on this thread; the first may be on
 * a worker: waited for); no notices then. */
void abuse_store_drain(struct abuse *ab);

/* --- abuse_acct.c, above abuse_store.c: the accounts, their counters kept across
 * restarts ------------------------------------------------------------------------- */

/* The account (name in any case); created (NULL: too many) when create. */
struct acct *acct_get(struct abuse *ab, const char *account, int create);
void acct_free(struct acct *a);
/* s hashed with this start's seed (the table's, and the failed logins' by name). */
uint64_t name_hash(const struct abuse *ab, const char *s);
/* The account's score: its signals within the score window. */
int score_of(const struct abuse *ab, const struct acct *a, time_t now);
/* Remember h at t in the list v (n used, cap allocated, at most max: the oldest goes). */
void seen_put(struct seen **v, size_t *n, size_t *cap, size_t max, uint64_t h, time_t t);
/* 1 when h is in v[0..n), else 0. */
int seen_has(const struct seen *v, size_t n, uint64_t h);
/* Write the counters of every changed account; flush_fire: the same, as a timer. */
void flush_dirty(struct abuse *ab);
void flush_fire(evutil_socket_t fd, short what, void *arg);
/* At start, before any mail: the counters, the scores (the evidence of the score
 * window) and the locks, read from the directory (errors logged). */
void acct_load(struct abuse *ab, time_t now);

/* --- abuse_lock.c, above abuse_acct.c: what a lock does, for abuse.c
 * --------------------------------------------------- */

/* Lock a for why (logged once stored): AUTH refused, its queued mail held, the
 * notices sent once the lock is stored. */
void acct_lock(struct abuse *ab, struct acct *a, const char *why);
/* Shared state, a timer (every state.refresh): the locks read from Redis, then applied
 * to the accounts here (a lock decided on another node locks, an unlock there
 * unlocks; a lock whose write failed here is written again). */
void sync_fire(evutil_socket_t fd, short what, void *arg);
/* Read owners_file ("NAME ADDRESS": who is told of a lock besides the postmaster)
 * again (errors logged). */
void owners_load(struct abuse *ab);
/* abuse_free: the mail jobs left cancelled, the notices being committed left to finish
 * without ab, the owners forgotten. */
void abuse_lock_free(struct abuse *ab);

/* --- abuse.c, above abuse_lock.c: windows and limits, for abuse_status.c (on top)
 * --------------------------------------------------- */

/* The limits' names, by enum conf_abuse_limit (as in the config). */
extern const char *const limit_names[CONF_ABUSE_NLIMITS];
/* Events in the window's span (seconds) up to now; window_of: the span of a limit. */
int win_count(const struct window *w, int window, time_t now);
int window_of(const struct kconf *c, int limit);
/* The account's soft and hard value of limit: its own line, its domain's, or the
 * default. */
void limit_of(const struct abuse *ab, const char *account, int limit, int *soft, int *hard);

#endif
