/* sqlite_state.c: policy state in the directory's SQLite file: greylisting triplets and
 * networks, the blocklist state of our egress addresses and its history, answers of
 * address probes, egress benches, sending accounts under watch (locks, evidence, hourly
 * volumes, counters), what each account sent and the complaints about it, DMARC result
 * counts. The file, its schema and the statement helpers are sqlite.c's. */
#include "core/compat.h"

#include <sqlite3.h>

#include "core/core.h"
#include "store/sqlite_int.h"
#include "store/state_redis.h"
#include "store/store.h"

/* --- greylisting state ------------------------------------------------------- */

/* Run sql with the strings v[0..n) at ?1.. and the integers iv[0..ni) after them; 1
 * a row is ready (read it, then stmt_close()), 0 none / done, -1 error. The lock is
 * held until stmt_close(). */
static int grey_step(struct store *st, sqlite3_stmt **out, const char *sql, const char *const *v,
                     int n, const long long *iv, int ni)
{
    sqlite3_stmt *s = stmt_open(st, sql, v, n);
    for (int i = 0; s && i < ni; i++)
        sqlite3_bind_int64(s, n + i + 1, iv[i]);
    *out = s;
    return stmt_row(s);
}

static int grey_exec(struct store *st, const char *sql, const char *const *v, int n,
                     const long long *iv, int ni)
{
    sqlite3_stmt *s;
    int rc = grey_step(st, &s, sql, v, n, iv, ni);
    stmt_close(st, s);
    return rc < 0 ? -1 : 0;
}

/* Column i of the row s as text, "" for NULL; borrowed until the next stmt_row(). */
static const char *col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? (const char *)t : "";
}

static int grey_check_locked(struct store *st, const char *net, const char *sender,
                             const char *rcpt, const struct store_grey_params *p, long long now,
                             struct store_grey_result *out)
{
    sqlite3_stmt *s;
    const char *k1[] = {net};
    const char *k3[] = {net, sender, rcpt};
    if (p->auto_allowlist > 0) {
        int rc = grey_step(st, &s, "SELECT passes, last_seen FROM grey_networks WHERE net = ?1", k1,
                           1, NULL, 0);
        long long passes = rc > 0 ? sqlite3_column_int64(s, 0) : 0;
        long long last = rc > 0 ? sqlite3_column_int64(s, 1) : 0;
        stmt_close(st, s);
        if (rc < 0) return -1;
        if (rc > 0 && passes >= p->auto_allowlist && now - last <= p->lifetime) {
            out->net_allowlisted = 1;
            return grey_exec(st, "UPDATE grey_networks SET last_seen = ?2 WHERE net = ?1", k1, 1,
                             (long long[]){now}, 1);
        }
    }
    int rc = grey_step(st, &s,
                       "SELECT first_seen, last_seen, passed FROM grey_triplets "
                       "WHERE net = ?1 AND sender = ?2 AND rcpt = ?3",
                       k3, 3, NULL, 0);
    long long first = rc > 0 ? sqlite3_column_int64(s, 0) : 0;
    long long last = rc > 0 ? sqlite3_column_int64(s, 1) : 0;
    int passed = rc > 0 ? sqlite3_column_int(s, 2) : 0;
    stmt_close(st, s);
    if (rc < 0) return -1;
    if (rc == 0 || (passed && now - last > p->lifetime) ||
        (!passed && now - first > (long long)p->delay + p->retry_window)) {
        /* new, forgotten, or retried too late: the delay starts (again) now */
        out->greylisted = 1;
        out->wait = p->delay;
        return grey_exec(st,
                         "INSERT OR REPLACE INTO grey_triplets (net, sender, rcpt, first_seen, "
                         "last_seen, passed) VALUES (?1, ?2, ?3, ?4, ?4, 0)",
                         k3, 3, (long long[]){now}, 1);
    }
    if (!passed && now - first < p->delay) {
        out->greylisted = 1;
        out->wait = (int)(p->delay - (now - first));
        return grey_exec(st,
                         "UPDATE grey_triplets SET last_seen = ?4 "
                         "WHERE net = ?1 AND sender = ?2 AND rcpt = ?3",
                         k3, 3, (long long[]){now}, 1);
    }
    if (grey_exec(st,
                  "UPDATE grey_triplets SET last_seen = ?4, passed = 1 "
                  "WHERE net = ?1 AND sender = ?2 AND rcpt = ?3",
                  k3, 3, (long long[]){now}, 1) != 0)
        return -1;
    if (passed) return 0;
    out->first_pass = 1;
    /* a network forgotten (lifetime) starts counting again */
    return grey_exec(st,
                     "INSERT INTO grey_networks (net, passes, last_seen) VALUES (?1, 1, ?2) "
                     "ON CONFLICT(net) DO UPDATE SET passes = CASE WHEN ?2 - last_seen > ?3 "
                     "THEN 1 ELSE passes + 1 END, last_seen = ?2",
                     k1, 1, (long long[]){now, p->lifetime}, 2);
}

int store_grey_check(struct store *st, const char *net, const char *sender, const char *rcpt,
                     const struct store_grey_params *p, long long now,
                     struct store_grey_result *out)
{
    char sl[ADDR_SIZE], rl[ADDR_SIZE];
    memset(out, 0, sizeof *out);
    str_copy(sl, sender ? sender : "", sizeof sl);
    str_copy(rl, rcpt, sizeof rl);
    str_lower(sl);
    str_lower(rl);
    if (st->redis) return redis_grey_check(st->redis, net, sl, rl, p, now, out);
    store_lock(st); /* recursive: held over the whole transaction, as the statements lock too */
    int rc = -1;
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK) {
        rc = grey_check_locked(st, net, sl, rl, p, now, out);
        if (sqlite3_exec(st->db, rc == 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK)
            rc = -1;
    }
    if (rc != 0) sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    store_unlock(st);
    return rc;
}

int store_grey_purge(struct store *st, const struct store_grey_params *p, long long now)
{
    if (st->redis) return 0; /* Redis keys expire by themselves */
    store_lock(st);
    int rc =
        grey_exec(st,
                  "DELETE FROM grey_triplets WHERE (passed = 0 AND first_seen < ?1) OR "
                  "(passed = 1 AND last_seen < ?2)",
                  NULL, 0, (long long[]){now - p->delay - p->retry_window, now - p->lifetime}, 2);
    if (rc == 0)
        rc = grey_exec(st, "DELETE FROM grey_networks WHERE last_seen < ?1", NULL, 0,
                       (long long[]){now - p->lifetime}, 1);
    store_unlock(st);
    return rc;
}

int store_grey_list(struct store *st,
                    void (*triplet)(void *arg, const struct store_grey_triplet *t),
                    void (*net)(void *arg, const struct store_grey_net *n), void *arg)
{
    if (st->redis) return redis_grey_list(st->redis, triplet, net, arg);
    sqlite3_stmt *s;
    int rc;
    for (rc =
             grey_step(st, &s,
                       "SELECT net, sender, rcpt, first_seen, last_seen, passed FROM grey_triplets "
                       "ORDER BY net, sender, rcpt",
                       NULL, 0, NULL, 0);
         rc > 0; rc = stmt_row(s)) {
        struct store_grey_triplet t = {
            .net = col_text(s, 0),
            .sender = col_text(s, 1),
            .rcpt = col_text(s, 2),
            .first_seen = sqlite3_column_int64(s, 3),
            .last_seen = sqlite3_column_int64(s, 4),
            .passed = sqlite3_column_int(s, 5),
        };
        triplet(arg, &t);
    }
    stmt_close(st, s);
    if (rc < 0) return -1;
    for (rc = grey_step(st, &s, "SELECT net, passes, last_seen FROM grey_networks ORDER BY net",
                        NULL, 0, NULL, 0);
         rc > 0; rc = stmt_row(s)) {
        struct store_grey_net n = {
            .net = col_text(s, 0),
            .passes = sqlite3_column_int64(s, 1),
            .last_seen = sqlite3_column_int64(s, 2),
        };
        net(arg, &n);
    }
    stmt_close(st, s);
    return rc < 0 ? -1 : 0;
}

/* --- blocklist monitoring (egress/monitor.c) ----------------------------------- */

int store_listing_put(struct store *st, const struct store_listing *l, int history)
{
    if (st->redis) return redis_listing_put(st->redis, l, history);
    const char *v[] = {l->address, l->zone, l->state, l->code, l->txt, l->delist_url, l->previous};
    store_lock(st);
    int ok = sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    sqlite3_stmt *s;
    long long t = l->since;
    if (ok) {
        ok = grey_step(st, &s,
                       "INSERT OR REPLACE INTO egress_listings (address, zone, state, code, txt, "
                       "delist_url, since) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                       v, 6, &t, 1) == 0;
        stmt_close(st, s);
    }
    t = l->time;
    if (ok && history) {
        ok = grey_step(st, &s,
                       "INSERT INTO egress_history (address, zone, state, code, txt, delist_url, "
                       "previous, time) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                       v, 7, &t, 1) == 0;
        stmt_close(st, s);
    }
    ok = sqlite3_exec(st->db, ok ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK && ok;
    store_unlock(st);
    return ok ? 0 : -1;
}

static void row_listing(sqlite3_stmt *s, struct store_listing *out, int history)
{
    memset(out, 0, sizeof *out);
    char *dst[] = {out->address, out->zone,       out->state,   out->code,
                   out->txt,     out->delist_url, out->previous};
    size_t size[] = {sizeof out->address, sizeof out->zone, sizeof out->state,
                     sizeof out->code,    sizeof out->txt,  sizeof out->delist_url,
                     sizeof out->previous};
    for (int i = 0; i < (history ? 7 : 6); i++)
        str_copy(dst[i], col_text(s, i), size[i]);
    out->time = out->since = sqlite3_column_int64(s, 7);
}

static int listing_rows(struct store *st, const char *sql, const char *address, long long limit,
                        int history, void (*cb)(void *arg, const struct store_listing *l),
                        void *arg)
{
    sqlite3_stmt *s;
    const char *v[] = {address ? address : ""};
    int rc = grey_step(st, &s, sql, v, 1, &limit, 1);
    while (rc > 0) {
        struct store_listing l;
        row_listing(s, &l, history);
        cb(arg, &l);
        rc = stmt_row(s);
    }
    stmt_close(st, s);
    return rc < 0 ? -1 : 0;
}

int store_grey_clear(struct store *st, const char *net, const char *sender, long *ntriplets,
                     long *nnets)
{
    char sl[ADDR_SIZE];
    str_copy(sl, sender ? sender : "", sizeof sl);
    str_lower(sl);
    /* ?1 NULL: any network; ?2 NULL: any sender */
    const char *v[] = {net, sender ? sl : NULL};
    if (st->redis) return redis_grey_clear(st->redis, net, sender ? sl : NULL, ntriplets, nnets);
    *ntriplets = *nnets = 0;
    store_lock(st);
    int rc = grey_exec(st,
                       "DELETE FROM grey_triplets WHERE (?1 IS NULL OR net = ?1) AND "
                       "(?2 IS NULL OR sender = ?2)",
                       v, 2, NULL, 0);
    if (rc == 0) *ntriplets = (long)sqlite3_changes(st->db);
    if (rc == 0 && !sender) {
        rc = grey_exec(st, "DELETE FROM grey_networks WHERE ?1 IS NULL OR net = ?1", v, 1, NULL, 0);
        if (rc == 0) *nnets = (long)sqlite3_changes(st->db);
    }
    store_unlock(st);
    return rc;
}

int store_grey_allow(struct store *st, const char *net, long long passes, long long now)
{
    if (st->redis) return redis_grey_allow(st->redis, net, passes, now);
    const char *v[] = {net};
    return grey_exec(st,
                     "INSERT INTO grey_networks (net, passes, last_seen) VALUES (?1, ?2, ?3) "
                     "ON CONFLICT(net) DO UPDATE SET passes = MAX(passes, ?2), last_seen = ?3",
                     v, 1, (long long[]){passes, now}, 2);
}

int store_listing_list(struct store *st, const char *address,
                       void (*cb)(void *arg, const struct store_listing *l), void *arg)
{
    if (st->redis) return redis_listing_list(st->redis, address, cb, arg);
    return listing_rows(st,
                        "SELECT address, zone, state, code, txt, delist_url, '', since "
                        "FROM egress_listings WHERE (?1 = '' OR address = ?1) AND ?2 >= 0 "
                        "ORDER BY address, zone",
                        address, 0, 0, cb, arg);
}

int store_listing_history(struct store *st, const char *address, int limit,
                          void (*cb)(void *arg, const struct store_listing *l), void *arg)
{
    if (st->redis) return redis_listing_history(st->redis, address, limit, cb, arg);
    /* the newest limit rows, told oldest first */
    return listing_rows(st,
                        "SELECT * FROM (SELECT address, zone, state, code, txt, delist_url, "
                        "previous, time, id FROM egress_history WHERE (?1 = '' OR address = ?1) "
                        "ORDER BY id DESC LIMIT ?2) ORDER BY id",
                        address, limit > 0 ? limit : -1, 1, cb, arg);
}

/* --- probe answers (verification cache) -------------------------------------- */

int store_verify_get(struct store *st, const char *kind, const char *address, long long now,
                     struct store_verify *out)
{
    char al[ADDR_SIZE];
    str_copy(al, address, sizeof al);
    str_lower(al);
    const char *k[] = {kind, al};
    sqlite3_stmt *s;
    if (st->redis) return redis_verify_get(st->redis, kind, al, now, out);
    memset(out, 0, sizeof *out);
    int rc = grey_step(st, &s,
                       "SELECT ok, code, text, expires FROM verify_cache "
                       "WHERE kind = ?1 AND address = ?2 AND expires > ?3",
                       k, 2, (long long[]){now}, 1);
    if (rc > 0) {
        out->ok = sqlite3_column_int(s, 0);
        out->code = sqlite3_column_int(s, 1);
        str_copy(out->text, col_text(s, 2), sizeof out->text);
        out->expires = sqlite3_column_int64(s, 3);
    }
    stmt_close(st, s);
    return rc;
}

int store_verify_put(struct store *st, const char *kind, const char *address,
                     const struct store_verify *v)
{
    char al[ADDR_SIZE];
    str_copy(al, address, sizeof al);
    str_lower(al);
    const char *k[] = {kind, al, v->text};
    if (st->redis) return redis_verify_put(st->redis, kind, al, v);
    return grey_exec(st,
                     "INSERT OR REPLACE INTO verify_cache (kind, address, text, ok, code, expires) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                     k, 3, (long long[]){v->ok, v->code, v->expires}, 3);
}

int store_verify_purge(struct store *st, long long now)
{
    if (st->redis) return 0; /* Redis keys expire by themselves */
    return grey_exec(st, "DELETE FROM verify_cache WHERE expires <= ?1", NULL, 0,
                     (long long[]){now}, 1);
}

/* --- egress benches ---------------------------------------------------------------- */

int store_egress_bench_put(struct store *st, const char *addr, const char *dest, const char *reason,
                           long long since, long long until)
{
    if (st->redis) return redis_bench_put(st->redis, addr, dest, reason, since, until);
    return grey_exec(st,
                     "INSERT OR REPLACE INTO egress_bench (addr, dest, reason, since, until) "
                     "VALUES (?1, ?2, ?3, ?4, ?5)",
                     (const char *const[]){addr, dest ? dest : "", reason ? reason : ""}, 3,
                     (long long[]){since, until}, 2);
}

int store_egress_bench_del(struct store *st, const char *addr, const char *dest)
{
    if (st->redis) return redis_bench_del(st->redis, addr, dest);
    if (!dest)
        return grey_exec(st, "DELETE FROM egress_bench WHERE addr = ?1",
                         (const char *const[]){addr}, 1, NULL, 0);
    return grey_exec(st, "DELETE FROM egress_bench WHERE addr = ?1 AND dest = ?2",
                     (const char *const[]){addr, dest}, 2, NULL, 0);
}

int store_egress_bench_list(struct store *st,
                            void (*cb)(void *arg, const char *addr, const char *dest,
                                       const char *reason, long long since, long long until),
                            void *arg)
{
    if (st->redis) return redis_bench_list(st->redis, cb, arg);
    sqlite3_stmt *s = stmt_open(
        st, "SELECT addr, dest, reason, since, until FROM egress_bench ORDER BY addr, dest", NULL,
        0);
    int rc;
    while ((rc = stmt_row(s)) > 0) {
        cb(arg, col_text(s, 0), col_text(s, 1), col_text(s, 2), sqlite3_column_int64(s, 3),
           sqlite3_column_int64(s, 4));
    }
    stmt_close(st, s);
    return rc;
}

/* --- sending accounts under watch (abuse/abuse.c) ----------------------------- */

static int sqlite_lock_put(struct store *st, const struct store_abuse_lock *l)
{
    const char *k[] = {l->account, l->reason};
    return grey_exec(st,
                     "INSERT OR REPLACE INTO abuse_locks (account, reason, since, score) "
                     "VALUES (lower(?1), ?2, ?3, ?4)",
                     k, 2, (long long[]){l->since, l->score}, 2);
}

static int sqlite_lock_del(struct store *st, const char *account)
{
    const char *k[] = {account};
    if (grey_exec(st, "DELETE FROM abuse_locks WHERE account = lower(?1)", k, 1, NULL, 0) != 0)
        return -1;
    return sqlite3_changes(st->db) > 0;
}

static int sqlite_lock_list(struct store *st,
                            void (*cb)(void *arg, const struct store_abuse_lock *l), void *arg)
{
    sqlite3_stmt *s;
    int rc =
        grey_step(st, &s, "SELECT account, since, score, reason FROM abuse_locks ORDER BY account",
                  NULL, 0, NULL, 0);
    while (rc > 0) {
        struct store_abuse_lock l = {0};
        str_copy(l.account, col_text(s, 0), sizeof l.account);
        l.since = sqlite3_column_int64(s, 1);
        l.score = sqlite3_column_int(s, 2);
        str_copy(l.reason, col_text(s, 3), sizeof l.reason);
        cb(arg, &l);
        rc = stmt_row(s);
    }
    stmt_close(st, s);
    return rc < 0 ? -1 : 0;
}

/* With Redis, the locks are also written here: this node's cache of them, read while
 * Redis is down (so a locked account stays locked: its AUTH fails closed). A list read
 * from Redis replaces the cache when it differs. */
int store_abuse_lock_put(struct store *st, const struct store_abuse_lock *l)
{
    if (!st->redis) return sqlite_lock_put(st, l);
    int rc = redis_lock_put(st->redis, l);
    sqlite_lock_put(st, l);
    return rc;
}

int store_abuse_lock_del(struct store *st, const char *account)
{
    if (!st->redis) return sqlite_lock_del(st, account);
    int rc = redis_lock_del(st->redis, account);
    sqlite_lock_del(st, account);
    return rc;
}

struct lock_set {
    struct store_abuse_lock *v;
    size_t n;
};

static void lock_collect(void *arg, const struct store_abuse_lock *l)
{
    struct lock_set *s = arg;
    s->v = xrealloc(s->v, (s->n + 1) * sizeof *s->v);
    s->v[s->n++] = *l;
}

int store_abuse_lock_list(struct store *st, void (*cb)(void *arg, const struct store_abuse_lock *l),
                          void *arg)
{
    if (!st->redis) return sqlite_lock_list(st, cb, arg);
    struct lock_set shared = {0}, cached = {0};
    int fresh;
    if (redis_lock_all(st->redis, &shared.v, &shared.n, &fresh) != 0) {
        /* Redis down: this node's cache, and 1 says so */
        int rc = sqlite_lock_list(st, cb, arg);
        return rc == 0 ? 1 : rc;
    }
    if (fresh) { /* Redis lost its data (or is new): the locks known here go back */
        sqlite_lock_list(st, lock_collect, &cached);
        for (size_t i = 0; i < cached.n; i++)
            redis_lock_put(st->redis, &cached.v[i]);
        if (cached.n)
            log_warn("state", "Redis had no state: %zu account locks written again", cached.n);
        free(cached.v);
        cached = (struct lock_set){0};
        if (redis_mark(st->redis) != 0 ||
            redis_lock_all(st->redis, &shared.v, &shared.n, &fresh) != 0) {
            int rc = sqlite_lock_list(st, cb, arg);
            return rc == 0 ? 1 : rc;
        }
    }
    int same = sqlite_lock_list(st, lock_collect, &cached) == 0 && cached.n == shared.n;
    for (size_t i = 0; same && i < shared.n; i++)
        same = strcmp(shared.v[i].account, cached.v[i].account) == 0 &&
               shared.v[i].since == cached.v[i].since;
    if (!same) {
        for (size_t i = 0; i < cached.n; i++)
            sqlite_lock_del(st, cached.v[i].account);
        for (size_t i = 0; i < shared.n; i++)
            sqlite_lock_put(st, &shared.v[i]);
    }
    for (size_t i = 0; i < shared.n; i++)
        cb(arg, &shared.v[i]);
    free(shared.v);
    free(cached.v);
    return 0;
}

int store_abuse_evidence_add(struct store *st, const struct store_abuse_evidence *e)
{
    if (st->redis) return redis_evidence_add(st->redis, e);
    const char *k[] = {e->account, e->signal, e->evidence};
    return grey_exec(st,
                     "INSERT INTO abuse_evidence (account, signal, evidence, time, score) "
                     "VALUES (lower(?1), ?2, ?3, ?4, ?5)",
                     k, 3, (long long[]){e->time, e->score}, 2);
}

int store_abuse_evidence_list(struct store *st, const char *account, long long since, int limit,
                              void (*cb)(void *arg, const struct store_abuse_evidence *e),
                              void *arg)
{
    if (st->redis) return redis_evidence_list(st->redis, account, since, limit, cb, arg);
    const char *k[] = {account ? account : ""};
    sqlite3_stmt *s;
    int rc = grey_step(st, &s,
                       "SELECT * FROM (SELECT account, time, signal, score, evidence, id "
                       "FROM abuse_evidence WHERE (?1 = '' OR account = lower(?1)) AND time >= ?2 "
                       "ORDER BY id DESC LIMIT ?3) ORDER BY id",
                       k, 1, (long long[]){since, limit > 0 ? limit : -1}, 2);
    while (rc > 0) {
        struct store_abuse_evidence e = {0};
        str_copy(e.account, col_text(s, 0), sizeof e.account);
        e.time = sqlite3_column_int64(s, 1);
        str_copy(e.signal, col_text(s, 2), sizeof e.signal);
        e.score = sqlite3_column_int(s, 3);
        str_copy(e.evidence, col_text(s, 4), sizeof e.evidence);
        cb(arg, &e);
        rc = stmt_row(s);
    }
    stmt_close(st, s);
    return rc < 0 ? -1 : 0;
}

int store_abuse_evidence_clear(struct store *st, const char *account, long long before)
{
    if (st->redis) return redis_evidence_clear(st->redis, account, before);
    const char *k[] = {account ? account : ""};
    return grey_exec(st, "DELETE FROM abuse_evidence WHERE account = lower(?1) OR time < ?2", k, 1,
                     (long long[]){before}, 1);
}

int store_abuse_hour_put(struct store *st, const char *account, long long hour, int messages,
                         long long oldest)
{
    const char *k[] = {account};
    if (grey_exec(st,
                  "INSERT OR REPLACE INTO abuse_hours (account, hour, messages) "
                  "VALUES (lower(?1), ?2, ?3)",
                  k, 1, (long long[]){hour, messages}, 2) != 0)
        return -1;
    return grey_exec(st, "DELETE FROM abuse_hours WHERE account = lower(?1) AND hour < ?2", k, 1,
                     (long long[]){oldest}, 1);
}

int store_abuse_baseline(struct store *st, const char *account, long long since, double *mean,
                         int *hours)
{
    const char *k[] = {account};
    sqlite3_stmt *s;
    int rc = grey_step(st, &s,
                       "SELECT count(*), coalesce(avg(messages), 0) FROM abuse_hours "
                       "WHERE account = lower(?1) AND hour >= ?2 AND messages > 0",
                       k, 1, (long long[]){since}, 1);
    *hours = rc > 0 ? sqlite3_column_int(s, 0) : 0;
    *mean = rc > 0 ? sqlite3_column_double(s, 1) : 0;
    stmt_close(st, s);
    return rc < 0 ? -1 : 0;
}

int store_abuse_state_put(struct store *st, const char *account, long long updated,
                          const char *state)
{
    const char *k[] = {account, state};
    return grey_exec(st,
                     "INSERT OR REPLACE INTO abuse_state (account, state, updated) "
                     "VALUES (lower(?1), ?2, ?3)",
                     k, 2, (long long[]){updated}, 1);
}

int store_abuse_state_list(struct store *st, long long since,
                           void (*cb)(void *arg, const char *account, const char *state), void *arg)
{
    sqlite3_stmt *s;
    int rc = grey_step(st, &s, "SELECT account, state FROM abuse_state WHERE updated >= ?1", NULL,
                       0, (long long[]){since}, 1);
    while (rc > 0) {
        cb(arg, col_text(s, 0), col_text(s, 1));
        rc = stmt_row(s);
    }
    stmt_close(st, s);
    return rc < 0 ? -1 : 0;
}

/* --- what each account sent, and complaints (abuse/complaints.c) --------------- */

int store_sent_add(struct store *st, const struct store_sent *e)
{
    const char *k[] = {e->queue_id, e->message_id, e->account, e->sender};
    return grey_exec(
        st,
        "INSERT OR REPLACE INTO sent_log (queue_id, message_id, account, sender, time) "
        "VALUES (?1, ?2, ?3, ?4, ?5)",
        k, 4, (long long[]){e->time}, 1);
}

static void sent_row(sqlite3_stmt *s, struct store_sent *out)
{
    str_copy(out->queue_id, col_text(s, 0), sizeof out->queue_id);
    str_copy(out->message_id, col_text(s, 1), sizeof out->message_id);
    str_copy(out->account, col_text(s, 2), sizeof out->account);
    str_copy(out->sender, col_text(s, 3), sizeof out->sender);
    out->time = sqlite3_column_int64(s, 4);
}

int store_sent_find(struct store *st, const char *queue_id, const char *message_id,
                    struct store_sent *out)
{
    memset(out, 0, sizeof *out);
    for (int pass = 0; pass < 2; pass++) {
        const char *key = pass == 0 ? queue_id : message_id;
        if (!key || !*key) continue;
        const char *k[] = {key};
        sqlite3_stmt *s;
        int rc = grey_step(st, &s,
                           pass == 0 ? "SELECT queue_id, message_id, account, sender, time "
                                       "FROM sent_log WHERE queue_id = ?1"
                                     : "SELECT queue_id, message_id, account, sender, time "
                                       "FROM sent_log WHERE message_id = ?1 "
                                       "ORDER BY time DESC LIMIT 1",
                           k, 1, NULL, 0);
        if (rc > 0) sent_row(s, out);
        stmt_close(st, s);
        if (rc != 0) return rc < 0 ? -1 : pass + 1;
    }
    return 0;
}

int store_sent_purge(struct store *st, long long before)
{
    return grey_exec(st, "DELETE FROM sent_log WHERE time < ?1", NULL, 0, (long long[]){before}, 1);
}

int store_complaint_add(struct store *st, const struct store_complaint *c)
{
    const char *k[] = {c->account,       c->queue_id,  c->message_id, c->format,
                       c->feedback_type, c->source_ip, c->reporter,   c->report_id};
    return grey_exec(st,
                     "INSERT INTO complaints (account, queue_id, message_id, format, "
                     "feedback_type, source_ip, reporter, report_id, time) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                     k, 8, (long long[]){c->time}, 1);
}

int store_complaint_list(struct store *st, const char *account,
                         void (*cb)(void *arg, const struct store_complaint *c), void *arg)
{
    const char *k[] = {account};
    sqlite3_stmt *s = stmt_open(st,
                                account ? "SELECT account, queue_id, message_id, format, "
                                          "feedback_type, source_ip, reporter, report_id, time "
                                          "FROM complaints WHERE account = ?1 ORDER BY id"
                                        : "SELECT account, queue_id, message_id, format, "
                                          "feedback_type, source_ip, reporter, report_id, time "
                                          "FROM complaints ORDER BY id",
                                k, account ? 1 : 0);
    int rc;
    while ((rc = stmt_row(s)) > 0) {
        const char *v[8];
        for (int i = 0; i < 8; i++)
            v[i] = col_text(s, i);
        struct store_complaint c = {.account = v[0],
                                    .queue_id = v[1],
                                    .message_id = v[2],
                                    .format = v[3],
                                    .feedback_type = v[4],
                                    .source_ip = v[5],
                                    .reporter = v[6],
                                    .report_id = v[7],
                                    .time = sqlite3_column_int64(s, 8)};
        cb(arg, &c);
    }
    stmt_close(st, s);
    return rc < 0 ? -1 : 0;
}

int store_dmarc_count(struct store *st, const struct store_dmarc *r)
{
    const char *k[] = {r->day,         r->source_ip, r->header_from, r->policy_domain,
                       r->disposition, r->dkim,      r->spf};
    return grey_exec(st,
                     "INSERT INTO dmarc_counts (day, source_ip, header_from, policy_domain, "
                     "disposition, dkim, spf, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1) "
                     "ON CONFLICT (day, source_ip, header_from, policy_domain, disposition, dkim, "
                     "spf) DO UPDATE SET count = count + 1",
                     k, 7, NULL, 0);
}
