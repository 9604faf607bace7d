/* dir_pg.c: the directory in PostgreSQL, shared by every node and read by Dovecot: SQL
 * and connections only (validation, hashing and error texts are sqlite_dir.c's). Blocking
 * libpq on the calling worker or CLI thread, each query with a deadline (architecture.md). */
#include "core/compat.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>

#include "core/core.h"
#include "store/dir_pg.h"

#define SCHEMA_VERSION 1
#define POOL_MAX 16     /* idle connections kept */
#define TIMEOUT_MS 5000 /* one query, and the connection's statement_timeout */
#define BACKOFF_MAX_MS 5000

/* The tables, as docs/postgres.md shows them (Dovecot's passdb/userdb read mailboxes).
 * Append a new step for a new version; never edit a released one. */
static const char *const schema[] = {
    "CREATE TABLE IF NOT EXISTS kurier_schema (version integer NOT NULL);"
    "CREATE TABLE IF NOT EXISTS domains ("
    "  name text PRIMARY KEY,"
    "  catchall text NOT NULL DEFAULT '',"
    "  sender_binding text NOT NULL DEFAULT 'enforce'"
    "    CHECK (sender_binding IN ('enforce', 'log', 'off')));"
    "CREATE TABLE IF NOT EXISTS mailboxes ("
    "  address text PRIMARY KEY,"
    "  local text NOT NULL,"
    "  domain text NOT NULL REFERENCES domains(name) ON DELETE CASCADE,"
    "  password text NOT NULL,"
    "  quota bigint NOT NULL DEFAULT 0,"
    "  active integer NOT NULL DEFAULT 1);"
    "CREATE INDEX IF NOT EXISTS mailboxes_domain ON mailboxes(domain);"
    "CREATE TABLE IF NOT EXISTS aliases ("
    "  source text NOT NULL,"
    "  target text NOT NULL,"
    "  PRIMARY KEY (source, target));"
    "CREATE INDEX IF NOT EXISTS aliases_target ON aliases(target);"
    "CREATE TABLE IF NOT EXISTS grants ("
    "  \"user\" text NOT NULL REFERENCES mailboxes(address) ON DELETE CASCADE,"
    "  \"grant\" text NOT NULL,"
    "  PRIMARY KEY (\"user\", \"grant\"));"
    "CREATE TABLE IF NOT EXISTS relay_routes ("
    "  match text PRIMARY KEY,"
    "  hosts text NOT NULL,"
    "  username text NOT NULL DEFAULT '',"
    "  password text NOT NULL DEFAULT '',"
    "  tls text NOT NULL DEFAULT '');",
};

struct dir_pg {
    char *conninfo;
    pthread_mutex_t mu;
    PGconn *idle[POOL_MAX];
    int nidle;
    int schema_ok;
    int down;           /* the last connection attempt failed (logged once) */
    long long retry_at; /* monotonic ms: no new attempt before */
    int backoff_ms;
    char last_err[256];
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libpq's message without its line ends. */
static void set_pg_err(char *err, size_t errsize, const char *what, const char *msg)
{
    char m[256];
    size_t n = 0;
    for (const char *p = msg ? msg : ""; *p && n + 1 < sizeof m; p++) {
        int blank = *p == '\n' || *p == '\r' || *p == '\t' || *p == ' ';
        if (blank && (n == 0 || m[n - 1] == ' ')) continue; /* one line, single spaces */
        m[n++] = blank ? ' ' : *p;
    }
    while (n > 0 && m[n - 1] == ' ')
        n--;
    m[n] = '\0';
    err_set(err, errsize, "database error: PostgreSQL%s%s: %s", what ? " " : "", what ? what : "",
            m[0] ? m : "unknown error");
}

/* Wait until sock is ready for events or deadline passes: 1 ready, 0 timed out, -1. */
static int wait_sock(int sock, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) return 0;
        struct pollfd p = {.fd = sock, .events = events};
        int r = poll(&p, 1, (int)left);
        if (r > 0) return 1;
        if (r == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

/* Run sql on c with the n text parameters v, within TIMEOUT_MS. The last result
 * (caller PQclear()s it) or NULL when the connection failed or timed out (err filled;
 * the connection is then useless). */
static PGresult *run(PGconn *c, const char *sql, const char *const *v, int n, char *err,
                     size_t errsize)
{
    long long deadline = now_ms() + TIMEOUT_MS;
    /* without parameters: the simple protocol, which takes several statements */
    if (!(n ? PQsendQueryParams(c, sql, n, NULL, v, NULL, NULL, 0) : PQsendQuery(c, sql)))
        goto broken;
    int sock = PQsocket(c);
    for (;;) {
        int f = PQflush(c);
        if (f < 0) goto broken;
        if (f == 0) break;
        if (wait_sock(sock, POLLOUT | POLLIN, deadline) <= 0) goto timeout;
        if (!PQconsumeInput(c)) goto broken;
    }
    PGresult *last = NULL;
    for (;;) {
        while (PQisBusy(c)) {
            if (wait_sock(sock, POLLIN, deadline) <= 0) {
                PQclear(last);
                goto timeout;
            }
            if (!PQconsumeInput(c)) {
                PQclear(last);
                goto broken;
            }
        }
        PGresult *r = PQgetResult(c);
        if (!r) break;
        PQclear(last);
        last = r;
    }
    if (!last || PQstatus(c) == CONNECTION_BAD) {
        PQclear(last);
        goto broken;
    }
    return last;
timeout:
    err_set(err, errsize, "database error: PostgreSQL did not answer within %d s",
            TIMEOUT_MS / 1000);
    return NULL;
broken:
    set_pg_err(err, errsize, NULL, PQerrorMessage(c));
    return NULL;
}

/* Create or upgrade the schema, serialized between nodes by an advisory lock. */
static int make_schema(PGconn *c, char *err, size_t errsize)
{
    PGresult *r = run(c,
                      "BEGIN; SELECT pg_advisory_xact_lock(5872339001);"
                      "CREATE TABLE IF NOT EXISTS kurier_schema (version integer NOT NULL);"
                      "SELECT coalesce(max(version), 0) FROM kurier_schema",
                      NULL, 0, err, errsize);
    if (!r) return -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        set_pg_err(err, errsize, NULL, PQresultErrorMessage(r));
        PQclear(r);
        PQclear(run(c, "ROLLBACK", NULL, 0, err, errsize));
        return -1;
    }
    int version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (version > SCHEMA_VERSION) {
        err_set(err, errsize,
                "the PostgreSQL directory has schema version %d, newer than this kurier (%d)",
                version, SCHEMA_VERSION);
        PQclear(run(c, "ROLLBACK", NULL, 0, err, errsize));
        return -1;
    }
    for (int v = version; v < SCHEMA_VERSION; v++) {
        char *sql = xasprintf("%s DELETE FROM kurier_schema; INSERT INTO kurier_schema VALUES (%d)",
                              schema[v], v + 1);
        r = run(c, sql, NULL, 0, err, errsize);
        free(sql);
        if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
            if (r) set_pg_err(err, errsize, "schema", PQresultErrorMessage(r));
            PQclear(r);
            PQclear(run(c, "ROLLBACK", NULL, 0, err, errsize));
            return -1;
        }
        PQclear(r);
    }
    r = run(c, "COMMIT", NULL, 0, err, errsize);
    int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    if (r && !ok) set_pg_err(err, errsize, NULL, PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

/* A new connection (statement_timeout set, schema made once), or NULL with err filled.
 * Backoff: after a failed attempt the next waits 0.25 s, doubling up to 5 s; calls in
 * between fail at once with the last error. */
static PGconn *connect_new(struct dir_pg *pg, char *err, size_t errsize)
{
    pthread_mutex_lock(&pg->mu);
    long long now = now_ms();
    if (pg->down && now < pg->retry_at) {
        err_set(err, errsize, "%s", pg->last_err);
        pthread_mutex_unlock(&pg->mu);
        return NULL;
    }
    if (pg->down) pg->retry_at = now + pg->backoff_ms; /* one thread tries; others wait */
    pthread_mutex_unlock(&pg->mu);

    /* connect_timeout first: a value in conninfo (expanded from dbname) overrides it */
    static const char *const keys[] = {"connect_timeout", "dbname", "application_name", NULL};
    const char *vals[] = {"5", pg->conninfo, "kurier", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    int ok = c && PQstatus(c) == CONNECTION_OK;
    if (!ok) {
        set_pg_err(err, errsize, "unreachable", c ? PQerrorMessage(c) : "out of memory");
    } else {
        char sql[64];
        snprintf(sql, sizeof sql, "SET statement_timeout = %d", TIMEOUT_MS);
        PGresult *r = run(c, sql, NULL, 0, err, errsize);
        ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
        if (r && !ok) set_pg_err(err, errsize, NULL, PQresultErrorMessage(r));
        PQclear(r);
    }
    pthread_mutex_lock(&pg->mu);
    int need_schema = ok && !pg->schema_ok;
    pthread_mutex_unlock(&pg->mu);
    if (need_schema) {
        ok = make_schema(c, err, errsize) == 0;
        if (ok) {
            pthread_mutex_lock(&pg->mu);
            pg->schema_ok = 1;
            pthread_mutex_unlock(&pg->mu);
        }
    }
    pthread_mutex_lock(&pg->mu);
    if (ok) {
        if (pg->down) log_info("store", "PostgreSQL directory reachable again");
        pg->down = 0;
        pg->backoff_ms = 0;
    } else {
        if (!pg->down) log_warn("store", "PostgreSQL directory: %s", err);
        pg->down = 1;
        pg->backoff_ms = pg->backoff_ms ? pg->backoff_ms * 2 : 250;
        if (pg->backoff_ms > BACKOFF_MAX_MS) pg->backoff_ms = BACKOFF_MAX_MS;
        pg->retry_at = now_ms() + pg->backoff_ms;
        str_copy(pg->last_err, err, sizeof pg->last_err);
    }
    pthread_mutex_unlock(&pg->mu);
    if (!ok) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

static PGconn *conn_get(struct dir_pg *pg, int *pooled, char *err, size_t errsize)
{
    pthread_mutex_lock(&pg->mu);
    PGconn *c = pg->nidle ? pg->idle[--pg->nidle] : NULL;
    pthread_mutex_unlock(&pg->mu);
    *pooled = c != NULL;
    return c ? c : connect_new(pg, err, errsize);
}

static void conn_put(struct dir_pg *pg, PGconn *c)
{
    if (!c) return;
    if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE) {
        pthread_mutex_lock(&pg->mu);
        if (pg->nidle < POOL_MAX) {
            pg->idle[pg->nidle++] = c;
            c = NULL;
        }
        pthread_mutex_unlock(&pg->mu);
    }
    PQfinish(c);
}

/* One statement on a pooled connection: the result (PQclear() it; check its status:
 * a server-side error such as a unique violation comes back as a result), or NULL when
 * no connection answered (err filled). A pooled connection found dead (the server
 * restarted since) is replaced once. */
static PGresult *query(struct dir_pg *pg, const char *sql, const char *const *v, int n, char *err,
                       size_t errsize)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        int pooled = 0;
        PGconn *c = conn_get(pg, &pooled, err, errsize);
        if (!c) return NULL;
        PGresult *r = run(c, sql, v, n, err, errsize);
        if (r || PQstatus(c) == CONNECTION_OK) { /* answered, or timed out */
            if (!r) {
                PQfinish(c); /* mid-query: unusable */
                return NULL;
            }
            conn_put(pg, c);
            return r;
        }
        PQfinish(c);
        if (!pooled) break;
    }
    return NULL;
}

static int ok_status(const PGresult *r)
{
    ExecStatusType s = PQresultStatus(r);
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

/* A query that returns rows: the result, or NULL (err, when given, filled). */
static PGresult *rows(struct dir_pg *pg, const char *sql, const char *const *v, int n, char *err,
                      size_t errsize)
{
    char e[256];
    if (!err) {
        err = e;
        errsize = sizeof e;
    }
    PGresult *r = query(pg, sql, v, n, err, errsize);
    if (r && !ok_status(r)) {
        set_pg_err(err, errsize, NULL, PQresultErrorMessage(r));
        PQclear(r);
        r = NULL;
    }
    return r;
}

/* A statement without rows. With fmt: no row changed, or a unique or foreign key
 * violation, is that message. 0 or -1. */
static int change(struct dir_pg *pg, const char *sql, const char *const *v, int n, char *err,
                  size_t errsize, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static int change(struct dir_pg *pg, const char *sql, const char *const *v, int n, char *err,
                  size_t errsize, const char *fmt, ...)
{
    PGresult *r = query(pg, sql, v, n, err, errsize);
    if (!r) return -1;
    int rc = -1;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    int dup = state && (strcmp(state, "23505") == 0 || strcmp(state, "23503") == 0);
    if (fmt && (dup || (ok_status(r) && strcmp(PQcmdTuples(r), "0") == 0))) {
        va_list ap;
        va_start(ap, fmt);
        err_vset(err, errsize, fmt, ap);
        va_end(ap);
    } else if (!ok_status(r)) {
        set_pg_err(err, errsize, NULL, PQresultErrorMessage(r));
    } else {
        rc = 0;
    }
    PQclear(r);
    return rc;
}

/* The integer in the first column of the first row, -1 on error. */
static long long count(struct dir_pg *pg, const char *sql, const char *const *v, int n, char *err,
                       size_t errsize)
{
    PGresult *r = rows(pg, sql, v, n, err, errsize);
    long long x = r && PQntuples(r) > 0 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return x;
}

/* --- open / close ---------------------------------------------------------- */

struct dir_pg *dir_pg_new(const char *conninfo, char *err, size_t errsize)
{
    char *perr = NULL;
    PQconninfoOption *o = PQconninfoParse(conninfo ? conninfo : "", &perr);
    if (!o) {
        set_pg_err(err, errsize, "conninfo", perr ? perr : "out of memory");
        PQfreemem(perr);
        return NULL;
    }
    PQconninfoFree(o);
    struct dir_pg *pg = xcalloc(1, sizeof *pg);
    pg->conninfo = xstrdup(conninfo);
    pthread_mutex_init(&pg->mu, NULL);
    char e[256];
    conn_put(pg, connect_new(pg, e, sizeof e)); /* schema now; failures are logged */
    return pg;
}

void dir_pg_free(struct dir_pg *pg)
{
    if (!pg) return;
    for (int i = 0; i < pg->nidle; i++)
        PQfinish(pg->idle[i]);
    pthread_mutex_destroy(&pg->mu);
    free(pg->conninfo);
    free(pg);
}

/* --- domains --------------------------------------------------------------- */

int dir_pg_domain_add(struct dir_pg *pg, const char *d, char *err, size_t errsize)
{
    return change(pg, "INSERT INTO domains (name) VALUES ($1)", &d, 1, err, errsize,
                  "domain %s exists", d);
}

int dir_pg_domain_del(struct dir_pg *pg, const char *d, long long *nm, long long *na, char *err,
                      size_t errsize)
{
    /* one statement: the counts, and the delete only when both are zero */
    PGresult *r = rows(pg,
                       "WITH c AS (SELECT"
                       "  (SELECT count(*) FROM domains WHERE name = $1::text) AS nd,"
                       "  (SELECT count(*) FROM mailboxes WHERE domain = $1) AS nm,"
                       "  (SELECT count(*) FROM aliases"
                       "   WHERE right(source, length($1) + 1) = '@' || $1) AS na),"
                       " del AS (DELETE FROM domains WHERE name = $1"
                       "  AND (SELECT nm + na FROM c) = 0 RETURNING 1)"
                       " SELECT nd, nm, na FROM c",
                       &d, 1, err, errsize);
    if (!r) return -1;
    long long nd = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    *nm = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    *na = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    PQclear(r);
    if (nd == 0) {
        err_set(err, errsize, "no such domain %s", d);
        return -1;
    }
    return 0;
}

int dir_pg_domain_set(struct dir_pg *pg, const char *d, const char *column, const char *value,
                      char *err, size_t errsize)
{
    const char *sql = strcmp(column, "catchall") == 0
                          ? "UPDATE domains SET catchall = $2 WHERE name = $1"
                          : "UPDATE domains SET sender_binding = $2 WHERE name = $1";
    return change(pg, sql, (const char *[]){d, value}, 2, err, errsize, "no such domain %s", d);
}

static void row_domain(const PGresult *r, int i, struct store_domain *out)
{
    str_copy(out->name, PQgetvalue(r, i, 0), sizeof out->name);
    str_copy(out->catchall, PQgetvalue(r, i, 1), sizeof out->catchall);
}

int dir_pg_domain_get(struct dir_pg *pg, const char *d, struct store_domain *out)
{
    PGresult *r = rows(pg, "SELECT name, catchall FROM domains WHERE name = $1", &d, 1, NULL, 0);
    if (!r) return -1;
    int found = PQntuples(r) > 0;
    if (found && out) row_domain(r, 0, out);
    PQclear(r);
    return found;
}

int dir_pg_domain_list(struct dir_pg *pg, void (*cb)(void *arg, const struct store_domain *d),
                       void *arg)
{
    PGresult *r = rows(pg, "SELECT name, catchall FROM domains ORDER BY name", NULL, 0, NULL, 0);
    if (!r) return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        struct store_domain d;
        row_domain(r, i, &d);
        cb(arg, &d);
    }
    PQclear(r);
    return 0;
}

int dir_pg_domain_binding(struct dir_pg *pg, const char *d, char *mode, size_t modesize)
{
    PGresult *r = rows(pg, "SELECT sender_binding FROM domains WHERE name = $1", &d, 1, NULL, 0);
    if (!r) return -1;
    int found = PQntuples(r) > 0;
    if (found) str_copy(mode, PQgetvalue(r, 0, 0), modesize);
    PQclear(r);
    return found;
}

/* --- mailboxes ------------------------------------------------------------- */

int dir_pg_mailbox_add(struct dir_pg *pg, const char *a, const char *local, const char *domain,
                       const char *hash, long long quota, char *err, size_t errsize)
{
    char q[32];
    snprintf(q, sizeof q, "%lld", quota);
    long long n =
        count(pg, "SELECT count(*) FROM domains WHERE name = $1", &domain, 1, err, errsize);
    if (n < 0) return -1;
    if (n == 0) {
        err_set(err, errsize, "no such domain %s", domain);
        return -1;
    }
    return change(pg,
                  "INSERT INTO mailboxes (address, local, domain, password, quota) "
                  "VALUES ($1, $2, $3, $4, $5)",
                  (const char *[]){a, local, domain, hash, q}, 5, err, errsize, "mailbox %s exists",
                  a);
}

int dir_pg_mailbox_load(struct dir_pg *pg, const struct store_mailbox_row *m, const char *local,
                        const char *domain, char *err, size_t errsize)
{
    char q[32];
    snprintf(q, sizeof q, "%lld", m->quota);
    return change(pg,
                  "INSERT INTO mailboxes (address, local, domain, password, quota, active) "
                  "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (address) DO UPDATE SET "
                  "password = EXCLUDED.password, quota = EXCLUDED.quota, active = EXCLUDED.active",
                  (const char *[]){m->address, local, domain, m->hash, q, m->active ? "1" : "0"}, 6,
                  err, errsize, "no such domain %s", domain);
}

int dir_pg_mailbox_del(struct dir_pg *pg, const char *a, char *err, size_t errsize)
{
    return change(pg, "DELETE FROM mailboxes WHERE address = $1", &a, 1, err, errsize,
                  "no such mailbox %s", a);
}

int dir_pg_mailbox_passwd(struct dir_pg *pg, const char *a, const char *hash, char *err,
                          size_t errsize)
{
    return change(pg, "UPDATE mailboxes SET password = $2 WHERE address = $1",
                  (const char *[]){a, hash}, 2, err, errsize, "no such mailbox %s", a);
}

int dir_pg_mailbox_set_quota(struct dir_pg *pg, const char *a, long long quota, char *err,
                             size_t errsize)
{
    char q[32];
    snprintf(q, sizeof q, "%lld", quota);
    return change(pg, "UPDATE mailboxes SET quota = $2 WHERE address = $1", (const char *[]){a, q},
                  2, err, errsize, "no such mailbox %s", a);
}

static void row_mailbox(const PGresult *r, int i, struct store_mailbox *out)
{
    str_copy(out->address, PQgetvalue(r, i, 0), sizeof out->address);
    out->quota = strtoll(PQgetvalue(r, i, 1), NULL, 10);
}

int dir_pg_mailbox_get(struct dir_pg *pg, const char *a, int active_only, struct store_mailbox *out)
{
    PGresult *r =
        rows(pg,
             active_only ? "SELECT address, quota FROM mailboxes WHERE address = $1 AND active = 1"
                         : "SELECT address, quota FROM mailboxes WHERE address = $1",
             &a, 1, NULL, 0);
    if (!r) return -1;
    int found = PQntuples(r) > 0;
    if (found && out) row_mailbox(r, 0, out);
    PQclear(r);
    return found;
}

int dir_pg_mailbox_list(struct dir_pg *pg, const char *domain,
                        void (*cb)(void *arg, const struct store_mailbox *m), void *arg)
{
    PGresult *r =
        rows(pg,
             domain ? "SELECT address, quota FROM mailboxes WHERE domain = $1 ORDER BY address"
                    : "SELECT address, quota FROM mailboxes ORDER BY domain, address",
             &domain, domain ? 1 : 0, NULL, 0);
    if (!r) return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        struct store_mailbox m;
        row_mailbox(r, i, &m);
        cb(arg, &m);
    }
    PQclear(r);
    return 0;
}

int dir_pg_mailbox_dump(struct dir_pg *pg, void (*cb)(void *arg, const struct store_mailbox_row *m),
                        void *arg)
{
    PGresult *r = rows(pg,
                       "SELECT address, password, quota, active FROM mailboxes "
                       "ORDER BY domain, address",
                       NULL, 0, NULL, 0);
    if (!r) return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        struct store_mailbox_row m = {0};
        str_copy(m.address, PQgetvalue(r, i, 0), sizeof m.address);
        str_copy(m.hash, PQgetvalue(r, i, 1), sizeof m.hash);
        m.quota = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        m.active = atoi(PQgetvalue(r, i, 3)) != 0;
        cb(arg, &m);
        explicit_bzero(m.hash, sizeof m.hash);
    }
    PQclear(r);
    return 0;
}

int dir_pg_mailbox_hash(struct dir_pg *pg, const char *a, char **hash)
{
    *hash = NULL;
    PGresult *r = rows(pg, "SELECT password FROM mailboxes WHERE address = $1 AND active = 1", &a,
                       1, NULL, 0);
    if (!r) return -1;
    int found = PQntuples(r) > 0;
    if (found) *hash = xstrdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return found;
}

/* --- aliases --------------------------------------------------------------- */

int dir_pg_alias_add(struct dir_pg *pg, const char *s, const char *t, const char *sdomain,
                     char *err, size_t errsize)
{
    long long n =
        count(pg, "SELECT count(*) FROM domains WHERE name = $1", &sdomain, 1, err, errsize);
    if (n < 0) return -1;
    if (n == 0) {
        err_set(err, errsize, "alias source %s is not in a local domain", s);
        return -1;
    }
    return change(pg, "INSERT INTO aliases (source, target) VALUES ($1, $2)",
                  (const char *[]){s, t}, 2, err, errsize, "alias %s -> %s exists", s, t);
}

int dir_pg_alias_del(struct dir_pg *pg, const char *s, const char *t, char *err, size_t errsize)
{
    if (t)
        return change(pg, "DELETE FROM aliases WHERE source = $1 AND target = $2",
                      (const char *[]){s, t}, 2, err, errsize, "no such alias %s -> %s", s, t);
    return change(pg, "DELETE FROM aliases WHERE source = $1", &s, 1, err, errsize,
                  "no such alias %s", s);
}

int dir_pg_alias_get(struct dir_pg *pg, const char *s, char ***targets, size_t *n)
{
    *targets = NULL;
    *n = 0;
    PGresult *r =
        rows(pg, "SELECT target FROM aliases WHERE source = $1 ORDER BY target", &s, 1, NULL, 0);
    if (!r) return -1;
    int nt = PQntuples(r);
    if (nt > 0) {
        *targets = xcalloc((size_t)nt, sizeof **targets);
        for (int i = 0; i < nt; i++)
            (*targets)[i] = xstrdup(PQgetvalue(r, i, 0));
        *n = (size_t)nt;
    }
    PQclear(r);
    return nt > 0;
}

static int pairs(struct dir_pg *pg, const char *sql, const char *const *v, int n,
                 void (*cb)(void *arg, const char *a, const char *b), void *arg)
{
    PGresult *r = rows(pg, sql, v, n, NULL, 0);
    if (!r) return -1;
    for (int i = 0; i < PQntuples(r); i++)
        cb(arg, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
    PQclear(r);
    return 0;
}

int dir_pg_alias_list(struct dir_pg *pg, void (*cb)(void *arg, const char *s, const char *t),
                      void *arg)
{
    return pairs(pg, "SELECT source, target FROM aliases ORDER BY source, target", NULL, 0, cb,
                 arg);
}

/* --- grants ---------------------------------------------------------------- */

int dir_pg_grant_add(struct dir_pg *pg, const char *u, const char *g, char *err, size_t errsize)
{
    long long n =
        count(pg, "SELECT count(*) FROM mailboxes WHERE address = $1", &u, 1, err, errsize);
    if (n < 0) return -1;
    if (n == 0) {
        err_set(err, errsize, "no such mailbox %s", u);
        return -1;
    }
    if (strcmp(u, g) == 0) {
        err_set(err, errsize, "%s is the mailbox itself: it needs no grant", g);
        return -1;
    }
    return change(pg, "INSERT INTO grants (\"user\", \"grant\") VALUES ($1, $2)",
                  (const char *[]){u, g}, 2, err, errsize, "grant %s -> %s exists", u, g);
}

int dir_pg_grant_del(struct dir_pg *pg, const char *u, const char *g, char *err, size_t errsize)
{
    return change(pg, "DELETE FROM grants WHERE \"user\" = $1 AND \"grant\" = $2",
                  (const char *[]){u, g}, 2, err, errsize, "no such grant %s -> %s", u, g);
}

int dir_pg_grant_list(struct dir_pg *pg, const char *u,
                      void (*cb)(void *arg, const char *u, const char *g), void *arg)
{
    return pairs(pg,
                 u ? "SELECT \"user\", \"grant\" FROM grants WHERE \"user\" = $1 ORDER BY \"grant\""
                   : "SELECT \"user\", \"grant\" FROM grants ORDER BY \"user\", \"grant\"",
                 &u, u ? 1 : 0, cb, arg);
}

int dir_pg_sender_owned(struct dir_pg *pg, const char *u, const char *a, const char *dgrant)
{
    /* as sqlite_dir.c: alias sources reaching the user (10 levels), then the grants; "" as
     * dgrant matches no grant (grants are never empty) */
    long long n = count(pg,
                        "WITH RECURSIVE reach(addr, depth) AS ("
                        "  SELECT $1::text, 0"
                        "  UNION SELECT aliases.source, reach.depth + 1"
                        "  FROM aliases JOIN reach ON aliases.target = reach.addr"
                        "  WHERE reach.depth < 10)"
                        " SELECT (SELECT count(*) FROM reach WHERE addr = $2)"
                        " + (SELECT count(*) FROM grants WHERE \"user\" = $1"
                        "    AND (\"grant\" = $2 OR \"grant\" = $3))",
                        (const char *[]){u, a, dgrant}, 3, NULL, 0);
    return n < 0 ? -1 : n > 0;
}

/* --- relay routes ---------------------------------------------------------- */

int dir_pg_relay_add(struct dir_pg *pg, const struct store_relay *r, char *err, size_t errsize)
{
    return change(pg,
                  "INSERT INTO relay_routes (match, hosts, username, password, tls) "
                  "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (match) DO UPDATE SET "
                  "hosts = EXCLUDED.hosts, username = EXCLUDED.username, "
                  "password = EXCLUDED.password, tls = EXCLUDED.tls",
                  (const char *[]){r->match, r->hosts, r->username, r->password, r->tls}, 5, err,
                  errsize, NULL);
}

int dir_pg_relay_del(struct dir_pg *pg, const char *m, char *err, size_t errsize)
{
    return change(pg, "DELETE FROM relay_routes WHERE match = $1", &m, 1, err, errsize,
                  "no relay route for %s", m);
}

static void row_relay(const PGresult *r, int i, struct store_relay *out)
{
    str_copy(out->match, PQgetvalue(r, i, 0), sizeof out->match);
    str_copy(out->hosts, PQgetvalue(r, i, 1), sizeof out->hosts);
    str_copy(out->username, PQgetvalue(r, i, 2), sizeof out->username);
    str_copy(out->password, PQgetvalue(r, i, 3), sizeof out->password);
    str_copy(out->tls, PQgetvalue(r, i, 4), sizeof out->tls);
}

int dir_pg_relay_get(struct dir_pg *pg, const char *a, const char *d, struct store_relay *out)
{
    PGresult *r = rows(pg,
                       "SELECT match, hosts, username, password, tls FROM relay_routes "
                       "WHERE match = $1 OR match = $2 ORDER BY match = $1 DESC LIMIT 1",
                       (const char *[]){a, d}, 2, NULL, 0);
    if (!r) return -1;
    int found = PQntuples(r) > 0;
    if (found) row_relay(r, 0, out);
    PQclear(r);
    return found;
}

int dir_pg_relay_list(struct dir_pg *pg, void (*cb)(void *arg, const struct store_relay *r),
                      void *arg)
{
    PGresult *r = rows(pg,
                       "SELECT match, hosts, username, password, tls FROM relay_routes "
                       "ORDER BY match",
                       NULL, 0, NULL, 0);
    if (!r) return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        struct store_relay rr;
        row_relay(r, i, &rr);
        cb(arg, &rr);
    }
    PQclear(r);
    return 0;
}
