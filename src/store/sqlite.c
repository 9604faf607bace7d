/* sqlite.c: the one SQLite file (which Dovecot can read too): opening it, the
 * migrations, the attached PostgreSQL directory and the statement helpers (with their
 * cache) shared through sqlite_int.h. The directory in it (domains, mailboxes,
 * aliases, password hashes) is sqlite_dir.c's; the policy state kept in the same file
 * is sqlite_state.c's; routing decisions are route.c's. */
#include "core/compat.h"

#include <errno.h>
#include <libgen.h>
#include <pwd.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "store/dir_pg.h"
#include "store/sqlite_int.h"
#include "store/state_redis.h"
#include "store/store.h"

/* Bump when a migration is appended to migrations[]. */
#define SCHEMA_VERSION 11

/* migrations[i] takes the schema from user_version i to i+1. Never edit a released
 * entry: append a new one. */
static const char *const migrations[] = {
    "CREATE TABLE IF NOT EXISTS domains ("
    "  name TEXT PRIMARY KEY,"
    "  catchall TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE IF NOT EXISTS mailboxes ("
    "  address TEXT PRIMARY KEY,"
    "  local TEXT NOT NULL,"
    "  domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,"
    "  password TEXT NOT NULL,"
    "  quota INTEGER NOT NULL DEFAULT 0,"
    "  active INTEGER NOT NULL DEFAULT 1);"
    "CREATE INDEX IF NOT EXISTS mailboxes_domain ON mailboxes(domain);"
    "CREATE TABLE IF NOT EXISTS aliases ("
    "  source TEXT NOT NULL,"
    "  target TEXT NOT NULL,"
    "  PRIMARY KEY (source, target));"
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);"
    "DELETE FROM schema_version;"
    "INSERT INTO schema_version (version) VALUES (1);",
    /* 2: sender binding (policy/sender_login.c): extra addresses a user may send as,
     * and the per-domain mode. A grant goes with its mailbox. */
    "CREATE TABLE IF NOT EXISTS grants ("
    "  user TEXT NOT NULL REFERENCES mailboxes(address) ON DELETE CASCADE,"
    "  \"grant\" TEXT NOT NULL,"
    "  PRIMARY KEY (user, \"grant\"));"
    "ALTER TABLE domains ADD COLUMN sender_binding TEXT NOT NULL DEFAULT 'enforce'"
    "  CHECK (sender_binding IN ('enforce', 'log', 'off'));"
    "UPDATE schema_version SET version = 2;",
    /* 3: relay routes per sender or sender domain (deliver/remote.c), with the
     * customer's credentials at the other provider (kept in clear: they are sent). */
    "CREATE TABLE IF NOT EXISTS relay_routes ("
    "  match TEXT PRIMARY KEY,"
    "  hosts TEXT NOT NULL,"
    "  username TEXT NOT NULL DEFAULT '',"
    "  password TEXT NOT NULL DEFAULT '',"
    "  tls TEXT NOT NULL DEFAULT '');"
    "UPDATE schema_version SET version = 3;",
    /* 4: greylisting state (policy/greylist.c): triplets (client network, sender,
     * recipient) and client networks with their passed retries (auto-allowlist). */
    "CREATE TABLE IF NOT EXISTS grey_triplets ("
    "  net TEXT NOT NULL,"
    "  sender TEXT NOT NULL,"
    "  rcpt TEXT NOT NULL,"
    "  first_seen INTEGER NOT NULL,"
    "  last_seen INTEGER NOT NULL,"
    "  passed INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (net, sender, rcpt));"
    "CREATE TABLE IF NOT EXISTS grey_networks ("
    "  net TEXT PRIMARY KEY,"
    "  passes INTEGER NOT NULL DEFAULT 0,"
    "  last_seen INTEGER NOT NULL);"
    "UPDATE schema_version SET version = 4;",
    /* 5: blocklist monitoring of our egress addresses (egress/monitor.c): the state of
     * each (address, list), and every change with what the list said. */
    "CREATE TABLE IF NOT EXISTS egress_listings ("
    "  address TEXT NOT NULL,"
    "  zone TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  code TEXT NOT NULL DEFAULT '',"
    "  txt TEXT NOT NULL DEFAULT '',"
    "  delist_url TEXT NOT NULL DEFAULT '',"
    "  since INTEGER NOT NULL,"
    "  PRIMARY KEY (address, zone));"
    "CREATE TABLE IF NOT EXISTS egress_history ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  time INTEGER NOT NULL,"
    "  address TEXT NOT NULL,"
    "  zone TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  previous TEXT NOT NULL,"
    "  code TEXT NOT NULL DEFAULT '',"
    "  txt TEXT NOT NULL DEFAULT '',"
    "  delist_url TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX IF NOT EXISTS egress_history_address ON egress_history(address, id);"
    "UPDATE schema_version SET version = 5;",
    /* 6: answers of SMTP probes (policy/relay_verify.c): does the server behind us
     * take this recipient? Positive and negative, each with its expiry. */
    "CREATE TABLE IF NOT EXISTS verify_cache ("
    "  kind TEXT NOT NULL,"
    "  address TEXT NOT NULL,"
    "  ok INTEGER NOT NULL,"
    "  code INTEGER NOT NULL DEFAULT 0,"
    "  text TEXT NOT NULL DEFAULT '',"
    "  expires INTEGER NOT NULL,"
    "  PRIMARY KEY (kind, address));"
    "UPDATE schema_version SET version = 6;",
    /* 7: egress benches (egress/bench.c): a source address out of service for a
     * destination ('' = every destination) until a time (0 = until lifted). */
    "CREATE TABLE IF NOT EXISTS egress_bench ("
    "  addr TEXT NOT NULL,"
    "  dest TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  since INTEGER NOT NULL,"
    "  until INTEGER NOT NULL,"
    "  PRIMARY KEY (addr, dest));"
    "UPDATE schema_version SET version = 7;",
    /* 8: sending accounts under watch (abuse/abuse.c): locks, evidence of signals,
     * messages per hour (the baseline). */
    "CREATE TABLE IF NOT EXISTS abuse_locks ("
    "  account TEXT PRIMARY KEY,"
    "  since INTEGER NOT NULL,"
    "  score INTEGER NOT NULL,"
    "  reason TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE IF NOT EXISTS abuse_evidence ("
    "  id INTEGER PRIMARY KEY,"
    "  account TEXT NOT NULL,"
    "  time INTEGER NOT NULL,"
    "  signal TEXT NOT NULL,"
    "  score INTEGER NOT NULL,"
    "  evidence TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX IF NOT EXISTS abuse_evidence_account ON abuse_evidence(account, id);"
    "CREATE TABLE IF NOT EXISTS abuse_hours ("
    "  account TEXT NOT NULL,"
    "  hour INTEGER NOT NULL,"
    "  messages INTEGER NOT NULL,"
    "  PRIMARY KEY (account, hour));"
    "UPDATE schema_version SET version = 8;",
    /* 9: what each account sent (abuse/complaints.c): queue ID, Message-ID, account,
     * envelope sender, time; kept for complaints { retention }. And the complaints
     * that came in (kurier complaints list). */
    "CREATE TABLE IF NOT EXISTS sent_log ("
    "  queue_id TEXT PRIMARY KEY,"
    "  message_id TEXT NOT NULL DEFAULT '',"
    "  account TEXT NOT NULL,"
    "  sender TEXT NOT NULL DEFAULT '',"
    "  time INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS sent_log_message_id ON sent_log(message_id);"
    "CREATE INDEX IF NOT EXISTS sent_log_time ON sent_log(time);"
    "CREATE TABLE IF NOT EXISTS complaints ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  time INTEGER NOT NULL,"
    "  account TEXT NOT NULL DEFAULT '',"
    "  queue_id TEXT NOT NULL DEFAULT '',"
    "  message_id TEXT NOT NULL DEFAULT '',"
    "  format TEXT NOT NULL DEFAULT '',"
    "  feedback_type TEXT NOT NULL DEFAULT '',"
    "  source_ip TEXT NOT NULL DEFAULT '',"
    "  reporter TEXT NOT NULL DEFAULT '',"
    "  report_id TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX IF NOT EXISTS complaints_account ON complaints(account, id);"
    "UPDATE schema_version SET version = 9;",
    /* 10: each account's counters, windows, known recipient domains and senders
     * (abuse/abuse.c), so that they survive a restart. */
    "CREATE TABLE IF NOT EXISTS abuse_state ("
    "  account TEXT PRIMARY KEY,"
    "  updated INTEGER NOT NULL,"
    "  state TEXT NOT NULL DEFAULT '');"
    "UPDATE schema_version SET version = 10;",
    /* 11: DMARC results counted for aggregate reports (policy/dmarc.c): per day, sending
     * address and From: domain, the disposition and the aligned DKIM and SPF results */
    "CREATE TABLE IF NOT EXISTS dmarc_counts ("
    "  day TEXT NOT NULL,"
    "  source_ip TEXT NOT NULL,"
    "  header_from TEXT NOT NULL,"
    "  policy_domain TEXT NOT NULL,"
    "  disposition TEXT NOT NULL,"
    "  dkim TEXT NOT NULL,"
    "  spf TEXT NOT NULL,"
    "  count INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (day, source_ip, header_from, policy_domain, disposition, dkim, spf));"
    "UPDATE schema_version SET version = 11;",
};

int stmt_fail(struct store *st, char *err, size_t errsize)
{
    err_set(err, errsize, "database error: %s", sqlite3_errmsg(st->db));
    return -1;
}

/* The db mutex is recursive in serialized mode: holding it over a whole call makes
 * multi-statement operations and sqlite3_errmsg() consistent across threads. */
void store_lock(struct store *st)
{
    sqlite3_mutex_enter(sqlite3_db_mutex(st->db));
}

void store_unlock(struct store *st)
{
    sqlite3_mutex_leave(sqlite3_db_mutex(st->db));
}

static sqlite3_stmt *prep(struct store *st, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) return NULL;
    return s;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
}

/* Every statement goes through stmt_open(), then stmt_row() for queries, then
 * stmt_close() or (statements without rows) stmt_done(). */

/* Lock the database, prepare sql and bind the n strings of v to ?1..?n (parameters
 * past n stay NULL). The statement, or NULL when prepare failed (the lock is held
 * either way: pass the result to stmt_close() or stmt_done()). */
sqlite3_stmt *stmt_open(struct store *st, const char *sql, const char *const *v, int n)
{
    store_lock(st);
    sqlite3_stmt *s = NULL;
    for (int i = 0; i < st->ncache && !s; i++) {
        if (st->cache[i].busy || strcmp(st->cache[i].sql, sql) != 0) continue;
        st->cache[i].busy = 1;
        s = st->cache[i].s;
    }
    if (!s && st->ncache < STMT_CACHE &&
        sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) == SQLITE_OK &&
        s) {
        st->cache[st->ncache].sql = xstrdup(sql);
        st->cache[st->ncache].s = s;
        st->cache[st->ncache].busy = 1;
        st->ncache++;
    } else if (!s) {
        s = prep(st, sql); /* cache full, or the same statement is open twice */
    }
    for (int i = 0; s && i < n; i++)
        bind_text(s, i + 1, v[i]);
    return s;
}

/* Finish s without unlocking: a cached statement is reset for the next stmt_open(),
 * any other finalized. */
static void stmt_release(struct store *st, sqlite3_stmt *s)
{
    for (int i = 0; s && i < st->ncache; i++) {
        if (st->cache[i].s != s) continue;
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        st->cache[i].busy = 0;
        return;
    }
    sqlite3_finalize(s);
}

/* Step a query: 1 a row is ready for sqlite3_column_*(), 0 no more rows, -1 error
 * (also for s NULL). */
int stmt_row(sqlite3_stmt *s)
{
    int r = s ? sqlite3_step(s) : SQLITE_ERROR;
    return r == SQLITE_ROW ? 1 : r == SQLITE_DONE ? 0 : -1;
}

void stmt_close(struct store *st, sqlite3_stmt *s)
{
    stmt_release(st, s);
    store_unlock(st);
}

/* Run s, a statement that returns no rows, and stmt_close() it. When fmt is non-NULL
 * the statement must change a row: if it changed none or would duplicate a primary
 * key, err gets the message from fmt. 0 done, -1 (err filled). */
static int stmt_vdone(struct store *st, sqlite3_stmt *s, char *err, size_t errsize, const char *fmt,
                      va_list ap) __attribute__((format(printf, 5, 0)));
static int stmt_vdone(struct store *st, sqlite3_stmt *s, char *err, size_t errsize, const char *fmt,
                      va_list ap)
{
    int rc = -1;
    int r = s ? sqlite3_step(s) : SQLITE_ERROR;
    stmt_release(st, s);
    if (fmt &&
        (r == SQLITE_CONSTRAINT_PRIMARYKEY || (r == SQLITE_DONE && sqlite3_changes(st->db) == 0)))
        err_vset(err, errsize, fmt, ap);
    else if (r != SQLITE_DONE)
        stmt_fail(st, err, errsize);
    else
        rc = 0;
    store_unlock(st);
    return rc;
}

int stmt_done(struct store *st, sqlite3_stmt *s, char *err, size_t errsize, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = stmt_vdone(st, s, err, errsize, fmt, ap);
    va_end(ap);
    return rc;
}

/* stmt_done() of sql with the n strings of v as parameters. */
int stmt_exec(struct store *st, const char *sql, const char *const *v, int n, char *err,
              size_t errsize, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = stmt_vdone(st, stmt_open(st, sql, v, n), err, errsize, fmt, ap);
    va_end(ap);
    return rc;
}

/* The first column of the first row of a query with the n strings of v as
 * parameters, as an integer ("SELECT count(*) ..."); -1 on error. */
long long stmt_int(struct store *st, const char *sql, const char *const *v, int n)
{
    sqlite3_stmt *s = stmt_open(st, sql, v, n);
    long long r = stmt_row(s) > 0 ? sqlite3_column_int64(s, 0) : -1;
    stmt_close(st, s);
    return r;
}

/* Count rows of a "SELECT count(*) ... ?1" query. -1 on error. */
long long stmt_count(struct store *st, const char *sql, const char *a)
{
    return stmt_int(st, sql, &a, 1);
}

/* --- open / close ---------------------------------------------------------- */

static void chown_path(const char *path, uid_t uid, gid_t gid)
{
    if (chown(path, uid, gid) != 0 && errno != ENOENT)
        log_warn("store", "chown %s: %s", path, strerror(errno));
}

static void apply_owner(const char *path, const char *owner, const char *created_dir)
{
    if (!owner || !*owner || geteuid() != 0) return;
    struct passwd pw, *res = NULL;
    char pwbuf[4096];
    if (getpwnam_r(owner, &pw, pwbuf, sizeof pwbuf, &res) != 0 || !res) return;
    chown_path(path, pw.pw_uid, pw.pw_gid);
    static const char *const suffix[] = {"-wal", "-shm"};
    for (size_t i = 0; i < 2; i++) {
        char *p = xasprintf("%s%s", path, suffix[i]);
        chown_path(p, pw.pw_uid, pw.pw_gid);
        free(p);
    }
    if (!created_dir) return;
    /* Every directory we created, from the database's folder up to created_dir. */
    char *tmp = xstrdup(path);
    size_t top = strlen(created_dir);
    for (char *slash = strrchr(tmp, '/'); slash && slash > tmp; slash = strrchr(tmp, '/')) {
        *slash = '\0';
        if (strlen(tmp) < top) break;
        chown_path(tmp, pw.pw_uid, pw.pw_gid);
    }
    free(tmp);
}

static int pragma_int(struct store *st, const char *sql, int *out)
{
    sqlite3_stmt *s = prep(st, sql);
    if (!s) return -1;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : -1;
}

static int migrate(struct store *st, const char *path, int create, char *err, size_t errsize)
{
    int version = 0;
    if (pragma_int(st, "PRAGMA user_version", &version) != 0) return stmt_fail(st, err, errsize);
    if (version > SCHEMA_VERSION) {
        err_set(err, errsize, "%s has schema version %d, newer than this kurier (%d)", path,
                version, SCHEMA_VERSION);
        return -1;
    }
    if (version == SCHEMA_VERSION) return 0;
    if (version == 0 && !create) {
        err_set(err, errsize, "%s is not a kurier directory (no schema)", path);
        return -1;
    }
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return stmt_fail(st, err, errsize);
    /* Re-read inside the write lock: another process may have migrated meanwhile. */
    if (pragma_int(st, "PRAGMA user_version", &version) != 0) goto fail;
    for (int v = version; v < SCHEMA_VERSION; v++) {
        if (sqlite3_exec(st->db, migrations[v], NULL, NULL, NULL) != SQLITE_OK) goto fail;
        char sql[64];
        int n = snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        if (n < 0 || (size_t)n >= sizeof sql) goto fail;
        if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK) goto fail;
    }
    if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) goto fail;
    return 0;
fail:
    stmt_fail(st, err, errsize);
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

struct store *store_open(const char *path, int create, const char *owner, char *err, size_t errsize)
{
    if (!path || !*path) {
        err_set(err, errsize, "no directory database path configured");
        return NULL;
    }
    char *created_dir = NULL;
    struct stat sb;
    int existed = stat(path, &sb) == 0;
    if (create && !existed) {
        char *tmp = xstrdup(path);
        char *dir = dirname(tmp);
        if (stat(dir, &sb) != 0) {
            /* Remember the topmost folder that is missing: apply_owner() hands over
             * everything from there down. */
            char *up = xstrdup(dir);
            for (;;) {
                char *c = xstrdup(up);
                char *parent = dirname(c);
                int missing = strcmp(parent, up) != 0 && stat(parent, &sb) != 0;
                if (missing) str_copy(up, parent, strlen(up) + 1);
                free(c);
                if (!missing) break;
            }
            if (mkdir_p(dir, 0750) != 0) {
                err_set(err, errsize, "cannot create %s: %s", dir, strerror(errno));
                free(up);
                free(tmp);
                return NULL;
            }
            created_dir = up;
        }
        free(tmp);
    }
    struct store *st = xcalloc(1, sizeof *st);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
        err_set(err, errsize, "cannot open %s: %s", path,
                st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    /* Files holding password hashes: group rw for Dovecot (WAL needs write). */
    if (!existed) chmod(path, 0660);
    sqlite3_busy_timeout(st->db, 5000);
    sqlite3_extended_result_codes(st->db, 1);
    char *mode = NULL;
    {
        sqlite3_stmt *s = prep(st, "PRAGMA journal_mode = WAL");
        if (!s || sqlite3_step(s) != SQLITE_ROW) {
            err_set(err, errsize, "cannot open %s: %s", path, sqlite3_errmsg(st->db));
            sqlite3_finalize(s);
            goto fail;
        }
        mode = xstrdup((const char *)sqlite3_column_text(s, 0));
        sqlite3_finalize(s);
    }
    if (!str_ieq(mode, "wal")) log_warn("store", "%s: journal mode %s, not wal", path, mode);
    free(mode);
    if (sqlite3_exec(st->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL) != SQLITE_OK) {
        stmt_fail(st, err, errsize);
        goto fail;
    }
    if (migrate(st, path, create, err, errsize) != 0) goto fail;
    /* The -wal and -shm files exist now (WAL mode, schema read): hand them over. */
    apply_owner(path, owner, created_dir);
    free(created_dir);
    return st;
fail:
    free(created_dir);
    store_free(st);
    return NULL;
}

void store_free(struct store *st)
{
    if (!st) return;
    for (int i = 0; i < st->ncache; i++) {
        sqlite3_finalize(st->cache[i].s);
        free(st->cache[i].sql);
    }
    sqlite3_close_v2(st->db);
    dir_pg_free(st->pg);
    redis_state_free(st->redis);
    free(st);
}

int store_attach_postgres(struct store *st, const char *conninfo, char *err, size_t errsize)
{
    struct dir_pg *pg = dir_pg_new(conninfo, err, errsize);
    if (!pg) return -1;
    dir_pg_free(st->pg);
    st->pg = pg;
    return 0;
}

const char *store_directory_backend(const struct store *st)
{
    return st->pg ? "postgres" : "sqlite";
}
