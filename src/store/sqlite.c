/* sqlite.c: the directory (domains, mailboxes, aliases, password hashes) in one SQLite
 * file that Dovecot can read too. Validation and lowercasing happen here; routing
 * decisions are route.c's. Passwords are hashed here and never logged. */
#include "core/compat.h"

#include <crypt.h>
#include <errno.h>
#include <libgen.h>
#include <pwd.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "store/store.h"

/* Bump when a migration is appended to migrations[]. */
#define SCHEMA_VERSION 3

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
};

/* Checked when the mailbox does not exist, so that an unknown user costs the same
 * as a wrong password (hash of a random password, the salt is public anyway). */
static const char dummy_hash[] =
    "$y$j9T$cS58RCME4jch3w8OVt0tH1$lOvCje1mynhfDq1dMeK4IT6NPL6zhSHkzcquHt7Vnv7";

/* Stored for a mailbox created without a password: no crypt output ever equals it. */
#define LOCKED_HASH "!"

struct store {
    sqlite3 *db;
};

#define ADDR_SIZE 320

static void seterr(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errsize, const char *fmt, ...)
{
    if (!err || !errsize) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
    if (n < 0) err[0] = '\0';
}

static int db_fail(struct store *st, char *err, size_t errsize)
{
    seterr(err, errsize, "database error: %s", sqlite3_errmsg(st->db));
    return -1;
}

/* The db mutex is recursive in serialized mode: holding it over a whole call makes
 * multi-statement operations and sqlite3_errmsg() consistent across threads. */
static void lock(struct store *st)
{
    sqlite3_mutex_enter(sqlite3_db_mutex(st->db));
}

static void unlock(struct store *st)
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

/* Run a statement with up to two text parameters that returns no rows. Returns 0 or
 * -1 (err filled); *changes set when non-NULL. */
static int exec2(struct store *st, const char *sql, const char *a, const char *b, int *changes,
                 char *err, size_t errsize)
{
    sqlite3_stmt *s = prep(st, sql);
    if (!s) return db_fail(st, err, errsize);
    if (a) bind_text(s, 1, a);
    if (b) bind_text(s, 2, b);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) return db_fail(st, err, errsize);
    if (changes) *changes = sqlite3_changes(st->db);
    return 0;
}

/* Count rows of a "SELECT count(*) ... ?1" query. -1 on error. */
static long long count1(struct store *st, const char *sql, const char *a)
{
    sqlite3_stmt *s = prep(st, sql);
    if (!s) return -1;
    bind_text(s, 1, a);
    long long n = -1;
    if (sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

/* --- validation ------------------------------------------------------------ */

static int norm_domain(const char *in, char *out, size_t outsize, char *err, size_t errsize)
{
    size_t len = in ? strlen(in) : 0;
    if (!len || !addr_domain_valid(in, len, 0)) {
        seterr(err, errsize, "invalid domain name \"%s\"", in ? in : "");
        return -1;
    }
    if (str_copy(out, in, outsize) >= outsize) {
        seterr(err, errsize, "domain name too long");
        return -1;
    }
    str_lower(out);
    return 0;
}

/* Parse a bare mailbox "local@domain" and write it lowercased. local (when
 * non-NULL, >= ADDR_SIZE) gets the unquoted local part and domain (>= 256) the
 * domain. */
static int norm_addr(const char *in, char *out, char *local, char *domain, char *err,
                     size_t errsize)
{
    struct addr a = {0};
    const char *why = NULL;
    size_t len = in ? strlen(in) : 0;
    int r = len ? addr_parse(in, len, ADDR_O_NO_BRACKETS, &a, &why) : -1;
    if (r < 0 || (size_t)r != len || !a.local || !a.domain) {
        if (r >= 0) addr_clear(&a);
        seterr(err, errsize, "invalid address \"%s\": %s", in ? in : "",
               r < 0 && why ? why : "expected local@domain");
        return -1;
    }
    int rc = 0;
    char *f = addr_format(&a);
    str_lower(f);
    if (str_copy(out, f, ADDR_SIZE) >= ADDR_SIZE) {
        seterr(err, errsize, "address too long");
        rc = -1;
    } else {
        if (local) {
            str_copy(local, a.local, ADDR_SIZE);
            str_lower(local);
        }
        if (domain) {
            str_copy(domain, a.domain, 256);
            str_lower(domain);
        }
    }
    free(f);
    addr_clear(&a);
    return rc;
}

/* 1 exists, 0 no (err filled), -1 db error (err filled). */
static int domain_exists(struct store *st, const char *domain, char *err, size_t errsize)
{
    long long n = count1(st, "SELECT count(*) FROM domains WHERE name = ?1", domain);
    if (n < 0) return db_fail(st, err, errsize);
    if (n == 0) seterr(err, errsize, "no such domain %s", domain);
    return n > 0;
}

/* --- passwords ------------------------------------------------------------- */

/* Hash password with a fresh yescrypt salt into a new string; NULL on failure. */
static char *hash_password(const char *password)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt)) return NULL;
    struct crypt_data *cd = xcalloc(1, sizeof *cd);
    char *h = crypt_rn(password, salt, cd, sizeof *cd);
    char *out = h && strncmp(h, "$y$", 3) == 0 ? xstrdup(h) : NULL;
    explicit_bzero(cd, sizeof *cd);
    free(cd);
    return out;
}

static int check_password(const char *password, char *err, size_t errsize)
{
    if (!password) return 0;
    if (!*password) {
        seterr(err, errsize, "empty password");
        return -1;
    }
    if (strchr(password, '\n') || strchr(password, '\r')) {
        seterr(err, errsize, "password contains a line break");
        return -1;
    }
    return 0;
}

/* Constant-time comparison of two NUL-terminated strings (time depends on the
 * length of b only). */
static int ct_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < lb; i++)
        d |= (unsigned char)(a[i < la ? i : 0] ^ b[i]);
    return d == 0;
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
    if (pragma_int(st, "PRAGMA user_version", &version) != 0) return db_fail(st, err, errsize);
    if (version > SCHEMA_VERSION) {
        seterr(err, errsize, "%s has schema version %d, newer than this kurier (%d)", path, version,
               SCHEMA_VERSION);
        return -1;
    }
    if (version == SCHEMA_VERSION) return 0;
    if (version == 0 && !create) {
        seterr(err, errsize, "%s is not a kurier directory (no schema)", path);
        return -1;
    }
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(st, err, errsize);
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
    db_fail(st, err, errsize);
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

struct store *store_open(const char *path, int create, const char *owner, char *err, size_t errsize)
{
    if (!path || !*path) {
        seterr(err, errsize, "no directory database path configured");
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
                seterr(err, errsize, "cannot create %s: %s", dir, strerror(errno));
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
        seterr(err, errsize, "cannot open %s: %s", path,
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
            seterr(err, errsize, "cannot open %s: %s", path, sqlite3_errmsg(st->db));
            sqlite3_finalize(s);
            goto fail;
        }
        mode = xstrdup((const char *)sqlite3_column_text(s, 0));
        sqlite3_finalize(s);
    }
    if (!str_ieq(mode, "wal")) log_warn("store", "%s: journal mode %s, not wal", path, mode);
    free(mode);
    if (sqlite3_exec(st->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL) != SQLITE_OK) {
        db_fail(st, err, errsize);
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
    sqlite3_close_v2(st->db);
    free(st);
}

/* --- domains --------------------------------------------------------------- */

int store_domain_add(struct store *st, const char *name, char *err, size_t errsize)
{
    char d[256];
    if (norm_domain(name, d, sizeof d, err, errsize) != 0) return -1;
    lock(st);
    int rc = -1;
    sqlite3_stmt *s = prep(st, "INSERT INTO domains (name) VALUES (?1)");
    if (!s) {
        db_fail(st, err, errsize);
        goto out;
    }
    bind_text(s, 1, d);
    int r = sqlite3_step(s);
    sqlite3_finalize(s);
    if (r == SQLITE_DONE)
        rc = 0;
    else if (r == SQLITE_CONSTRAINT_PRIMARYKEY)
        seterr(err, errsize, "domain %s exists", d);
    else
        db_fail(st, err, errsize);
out:
    unlock(st);
    return rc;
}

int store_domain_del(struct store *st, const char *name, char *err, size_t errsize)
{
    char d[256];
    if (norm_domain(name, d, sizeof d, err, errsize) != 0) return -1;
    lock(st);
    int rc = -1;
    int r = domain_exists(st, d, err, errsize);
    if (r <= 0) goto out;
    long long nm = count1(st, "SELECT count(*) FROM mailboxes WHERE domain = ?1", d);
    long long na = count1(
        st, "SELECT count(*) FROM aliases WHERE substr(source, -length(?1) - 1) = '@' || ?1", d);
    if (nm < 0 || na < 0) {
        db_fail(st, err, errsize);
        goto out;
    }
    if (nm > 0 || na > 0) {
        char what[128] = "";
        int n;
        if (nm && na)
            n = snprintf(what, sizeof what, "%lld mailbox%s and %lld alias%s", nm,
                         nm == 1 ? "" : "es", na, na == 1 ? "" : "es");
        else if (nm)
            n = snprintf(what, sizeof what, "%lld mailbox%s", nm, nm == 1 ? "" : "es");
        else
            n = snprintf(what, sizeof what, "%lld alias%s", na, na == 1 ? "" : "es");
        if (n < 0 || (size_t)n >= sizeof what) what[0] = '\0';
        seterr(err, errsize, "domain %s still has %s; delete %s first", d, what,
               nm + na == 1 ? "it" : "them");
        goto out;
    }
    rc = exec2(st, "DELETE FROM domains WHERE name = ?1", d, NULL, NULL, err, errsize);
out:
    unlock(st);
    return rc;
}

int store_domain_set_catchall(struct store *st, const char *name, const char *catchall, char *err,
                              size_t errsize)
{
    char d[256], c[ADDR_SIZE] = "";
    if (norm_domain(name, d, sizeof d, err, errsize) != 0) return -1;
    if (catchall && *catchall) {
        if (strchr(catchall, '@')) {
            if (norm_addr(catchall, c, NULL, NULL, err, errsize) != 0) return -1;
        } else {
            /* A local part in the same domain: validate it as local@domain. */
            char *full = xasprintf("%s@%s", catchall, d);
            int r = norm_addr(full, c, NULL, NULL, err, errsize);
            free(full);
            if (r != 0) return -1;
            char *at = strrchr(c, '@');
            if (at) *at = '\0';
        }
    }
    lock(st);
    int changes = 0;
    int rc =
        exec2(st, "UPDATE domains SET catchall = ?2 WHERE name = ?1", d, c, &changes, err, errsize);
    if (rc == 0 && changes == 0) {
        seterr(err, errsize, "no such domain %s", d);
        rc = -1;
    }
    unlock(st);
    return rc;
}

static void row_domain(sqlite3_stmt *s, struct store_domain *out)
{
    const char *n = (const char *)sqlite3_column_text(s, 0);
    const char *c = (const char *)sqlite3_column_text(s, 1);
    str_copy(out->name, n ? n : "", sizeof out->name);
    str_copy(out->catchall, c ? c : "", sizeof out->catchall);
}

int store_domain_get(struct store *st, const char *name, struct store_domain *out)
{
    char d[256];
    if (!name || str_copy(d, name, sizeof d) >= sizeof d) return 0;
    str_lower(d);
    lock(st);
    int rc = -1;
    sqlite3_stmt *s = prep(st, "SELECT name, catchall FROM domains WHERE name = ?1");
    if (s) {
        bind_text(s, 1, d);
        int r = sqlite3_step(s);
        if (r == SQLITE_ROW) {
            if (out) row_domain(s, out);
            rc = 1;
        } else if (r == SQLITE_DONE) {
            rc = 0;
        }
        sqlite3_finalize(s);
    }
    unlock(st);
    return rc;
}

int store_domain_list(struct store *st, void (*cb)(void *arg, const struct store_domain *d),
                      void *arg)
{
    lock(st);
    int rc = -1;
    sqlite3_stmt *s = prep(st, "SELECT name, catchall FROM domains ORDER BY name");
    if (s) {
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
            struct store_domain d;
            row_domain(s, &d);
            cb(arg, &d);
        }
        if (r == SQLITE_DONE) rc = 0;
        sqlite3_finalize(s);
    }
    unlock(st);
    return rc;
}

static const char *const binding_names[] = {"enforce", "log", "off"};

int store_domain_set_binding(struct store *st, const char *domain, const char *mode, char *err,
                             size_t errsize)
{
    char d[256];
    if (norm_domain(domain, d, sizeof d, err, errsize) != 0) return -1;
    const char *m = NULL;
    for (size_t i = 0; i < sizeof binding_names / sizeof binding_names[0]; i++)
        if (mode && strcmp(mode, binding_names[i]) == 0) m = binding_names[i];
    if (!m) {
        seterr(err, errsize, "invalid sender binding mode \"%s\" (enforce, log or off)",
               mode ? mode : "");
        return -1;
    }
    lock(st);
    int changes = 0;
    int rc = exec2(st, "UPDATE domains SET sender_binding = ?2 WHERE name = ?1", d, m, &changes,
                   err, errsize);
    if (rc == 0 && changes == 0) {
        seterr(err, errsize, "no such domain %s", d);
        rc = -1;
    }
    unlock(st);
    return rc;
}

int store_domain_binding(struct store *st, const char *domain)
{
    char d[256];
    if (!domain || str_copy(d, domain, sizeof d) >= sizeof d) return 0;
    str_lower(d);
    lock(st);
    int rc = -1;
    sqlite3_stmt *s = prep(st, "SELECT sender_binding FROM domains WHERE name = ?1");
    if (s) {
        bind_text(s, 1, d);
        int r = sqlite3_step(s);
        if (r == SQLITE_ROW) {
            const char *m = (const char *)sqlite3_column_text(s, 0);
            rc = 0; /* anything unexpected counts as the strict default */
            for (int i = 0; m && i < 3; i++)
                if (strcmp(m, binding_names[i]) == 0) rc = i;
        } else if (r == SQLITE_DONE) {
            rc = 0;
        }
        sqlite3_finalize(s);
    }
    unlock(st);
    return rc;
}

/* --- mailboxes ------------------------------------------------------------- */

int store_mailbox_add(struct store *st, const char *address, const char *password, long long quota,
                      char *err, size_t errsize)
{
    char a[ADDR_SIZE], local[ADDR_SIZE], domain[256];
    if (norm_addr(address, a, local, domain, err, errsize) != 0) return -1;
    if (check_password(password, err, errsize) != 0) return -1;
    if (quota < 0) {
        seterr(err, errsize, "negative quota");
        return -1;
    }
    char *hash = password ? hash_password(password) : xstrdup(LOCKED_HASH);
    if (!hash) {
        seterr(err, errsize, "cannot hash password: %s", strerror(errno));
        return -1;
    }
    lock(st);
    int rc = -1;
    if (domain_exists(st, domain, err, errsize) <= 0) goto out;
    sqlite3_stmt *s = prep(st, "INSERT INTO mailboxes (address, local, domain, password, quota) "
                               "VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!s) {
        db_fail(st, err, errsize);
        goto out;
    }
    bind_text(s, 1, a);
    bind_text(s, 2, local);
    bind_text(s, 3, domain);
    bind_text(s, 4, hash);
    sqlite3_bind_int64(s, 5, quota);
    int r = sqlite3_step(s);
    sqlite3_finalize(s);
    if (r == SQLITE_DONE)
        rc = 0;
    else if (r == SQLITE_CONSTRAINT_PRIMARYKEY)
        seterr(err, errsize, "mailbox %s exists", a);
    else
        db_fail(st, err, errsize);
out:
    unlock(st);
    explicit_bzero(hash, strlen(hash));
    free(hash);
    return rc;
}

/* UPDATE/DELETE one mailbox; "no such mailbox" when nothing changed. */
static int mailbox_change(struct store *st, const char *sql, const char *a, sqlite3_int64 *num,
                          const char *text, char *err, size_t errsize)
{
    lock(st);
    int rc = -1;
    sqlite3_stmt *s = prep(st, sql);
    if (!s) {
        db_fail(st, err, errsize);
        goto out;
    }
    bind_text(s, 1, a);
    if (num) sqlite3_bind_int64(s, 2, *num);
    if (text) bind_text(s, 2, text);
    int r = sqlite3_step(s);
    sqlite3_finalize(s);
    if (r != SQLITE_DONE)
        db_fail(st, err, errsize);
    else if (sqlite3_changes(st->db) == 0)
        seterr(err, errsize, "no such mailbox %s", a);
    else
        rc = 0;
out:
    unlock(st);
    return rc;
}

int store_mailbox_del(struct store *st, const char *address, char *err, size_t errsize)
{
    char a[ADDR_SIZE];
    if (norm_addr(address, a, NULL, NULL, err, errsize) != 0) return -1;
    return mailbox_change(st, "DELETE FROM mailboxes WHERE address = ?1", a, NULL, NULL, err,
                          errsize);
}

int store_mailbox_passwd(struct store *st, const char *address, const char *password, char *err,
                         size_t errsize)
{
    char a[ADDR_SIZE];
    if (norm_addr(address, a, NULL, NULL, err, errsize) != 0) return -1;
    if (check_password(password, err, errsize) != 0) return -1;
    char *hash = password ? hash_password(password) : xstrdup(LOCKED_HASH);
    if (!hash) {
        seterr(err, errsize, "cannot hash password: %s", strerror(errno));
        return -1;
    }
    int rc = mailbox_change(st, "UPDATE mailboxes SET password = ?2 WHERE address = ?1", a, NULL,
                            hash, err, errsize);
    explicit_bzero(hash, strlen(hash));
    free(hash);
    return rc;
}

int store_mailbox_set_quota(struct store *st, const char *address, long long quota, char *err,
                            size_t errsize)
{
    char a[ADDR_SIZE];
    if (norm_addr(address, a, NULL, NULL, err, errsize) != 0) return -1;
    if (quota < 0) {
        seterr(err, errsize, "negative quota");
        return -1;
    }
    sqlite3_int64 q = quota;
    return mailbox_change(st, "UPDATE mailboxes SET quota = ?2 WHERE address = ?1", a, &q, NULL,
                          err, errsize);
}

static void row_mailbox(sqlite3_stmt *s, struct store_mailbox *out)
{
    const char *a = (const char *)sqlite3_column_text(s, 0);
    str_copy(out->address, a ? a : "", sizeof out->address);
    out->quota = sqlite3_column_int64(s, 1);
}

/* Lookup without validation: lookups of malformed addresses simply find nothing. */
static int mailbox_get(struct store *st, const char *address, struct store_mailbox *out,
                       const char *sql)
{
    char a[ADDR_SIZE];
    if (!address || str_copy(a, address, sizeof a) >= sizeof a) return 0;
    str_lower(a);
    lock(st);
    int rc = -1;
    sqlite3_stmt *s = prep(st, sql);
    if (s) {
        bind_text(s, 1, a);
        int r = sqlite3_step(s);
        if (r == SQLITE_ROW) {
            if (out) row_mailbox(s, out);
            rc = 1;
        } else if (r == SQLITE_DONE) {
            rc = 0;
        }
        sqlite3_finalize(s);
    }
    unlock(st);
    return rc;
}

int store_mailbox_get(struct store *st, const char *address, struct store_mailbox *out)
{
    return mailbox_get(st, address, out, "SELECT address, quota FROM mailboxes WHERE address = ?1");
}

int store_mailbox_lookup(struct store *st, const char *address, struct store_mailbox *out)
{
    return mailbox_get(st, address, out,
                       "SELECT address, quota FROM mailboxes WHERE address = ?1 AND active = 1");
}

int store_mailbox_list(struct store *st, const char *domain,
                       void (*cb)(void *arg, const struct store_mailbox *m), void *arg)
{
    char d[256] = "";
    if (domain && str_copy(d, domain, sizeof d) >= sizeof d) return 0;
    str_lower(d);
    lock(st);
    int rc = -1;
    sqlite3_stmt *s =
        prep(st, domain ? "SELECT address, quota FROM mailboxes WHERE domain = ?1 ORDER BY address"
                        : "SELECT address, quota FROM mailboxes ORDER BY domain, address");
    if (s) {
        if (domain) bind_text(s, 1, d);
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
            struct store_mailbox m;
            row_mailbox(s, &m);
            cb(arg, &m);
        }
        if (r == SQLITE_DONE) rc = 0;
        sqlite3_finalize(s);
    }
    unlock(st);
    return rc;
}

int store_mailbox_auth(struct store *st, const char *address, const char *password)
{
    char a[ADDR_SIZE];
    char *stored = NULL;
    int found = 0, rc = 0;
    if (!password) password = "";
    if (address && str_copy(a, address, sizeof a) < sizeof a) {
        str_lower(a);
        lock(st);
        sqlite3_stmt *s =
            prep(st, "SELECT password FROM mailboxes WHERE address = ?1 AND active = 1");
        if (!s) {
            rc = -1;
        } else {
            bind_text(s, 1, a);
            int r = sqlite3_step(s);
            if (r == SQLITE_ROW) {
                const char *p = (const char *)sqlite3_column_text(s, 0);
                if (p && strncmp(p, "$", 1) == 0) {
                    stored = xstrdup(p);
                    found = 1;
                }
            } else if (r != SQLITE_DONE) {
                rc = -1;
            }
            sqlite3_finalize(s);
        }
        unlock(st);
    }
    if (rc < 0) return -1;
    /* Same work whether or not the mailbox exists (or is locked). */
    const char *setting = found ? stored : dummy_hash;
    struct crypt_data *cd = xcalloc(1, sizeof *cd);
    const char *h = crypt_rn(password, setting, cd, sizeof *cd);
    int match = h && ct_equal(h, setting);
    explicit_bzero(cd, sizeof *cd);
    free(cd);
    if (stored) {
        explicit_bzero(stored, strlen(stored));
        free(stored);
    }
    return found && match;
}

/* --- aliases --------------------------------------------------------------- */

int store_alias_add(struct store *st, const char *source, const char *target, char *err,
                    size_t errsize)
{
    char s_[ADDR_SIZE], t[ADDR_SIZE], sd[256];
    if (norm_addr(source, s_, NULL, sd, err, errsize) != 0) return -1;
    if (norm_addr(target, t, NULL, NULL, err, errsize) != 0) return -1;
    lock(st);
    int rc = -1;
    int r = domain_exists(st, sd, err, errsize);
    if (r == 0) seterr(err, errsize, "alias source %s is not in a local domain", s_);
    if (r <= 0) goto out;
    sqlite3_stmt *s = prep(st, "INSERT INTO aliases (source, target) VALUES (?1, ?2)");
    if (!s) {
        db_fail(st, err, errsize);
        goto out;
    }
    bind_text(s, 1, s_);
    bind_text(s, 2, t);
    r = sqlite3_step(s);
    sqlite3_finalize(s);
    if (r == SQLITE_DONE)
        rc = 0;
    else if (r == SQLITE_CONSTRAINT_PRIMARYKEY)
        seterr(err, errsize, "alias %s -> %s exists", s_, t);
    else
        db_fail(st, err, errsize);
out:
    unlock(st);
    return rc;
}

int store_alias_del(struct store *st, const char *source, const char *target, char *err,
                    size_t errsize)
{
    char s_[ADDR_SIZE], t[ADDR_SIZE];
    if (norm_addr(source, s_, NULL, NULL, err, errsize) != 0) return -1;
    if (target && norm_addr(target, t, NULL, NULL, err, errsize) != 0) return -1;
    lock(st);
    int changes = 0;
    int rc = target ? exec2(st, "DELETE FROM aliases WHERE source = ?1 AND target = ?2", s_, t,
                            &changes, err, errsize)
                    : exec2(st, "DELETE FROM aliases WHERE source = ?1", s_, NULL, &changes, err,
                            errsize);
    if (rc == 0 && changes == 0) {
        if (target)
            seterr(err, errsize, "no such alias %s -> %s", s_, t);
        else
            seterr(err, errsize, "no such alias %s", s_);
        rc = -1;
    }
    unlock(st);
    return rc;
}

int store_alias_get(struct store *st, const char *source, char ***targets, size_t *n)
{
    *targets = NULL;
    *n = 0;
    char a[ADDR_SIZE];
    if (!source || str_copy(a, source, sizeof a) >= sizeof a) return 0;
    str_lower(a);
    lock(st);
    int rc = -1;
    sqlite3_stmt *s = prep(st, "SELECT target FROM aliases WHERE source = ?1 ORDER BY target");
    if (s) {
        bind_text(s, 1, a);
        size_t cap = 0;
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(s, 0);
            if (*n == cap) {
                cap = cap ? cap * 2 : 4;
                *targets = xrealloc(*targets, cap * sizeof **targets);
            }
            (*targets)[(*n)++] = xstrdup(t ? t : "");
        }
        sqlite3_finalize(s);
        if (r == SQLITE_DONE) {
            rc = *n > 0;
        } else {
            store_strv_free(*targets, *n);
            *targets = NULL;
            *n = 0;
        }
    }
    unlock(st);
    return rc;
}

int store_alias_list(struct store *st,
                     void (*cb)(void *arg, const char *source, const char *target), void *arg)
{
    lock(st);
    int rc = -1;
    sqlite3_stmt *s = prep(st, "SELECT source, target FROM aliases ORDER BY source, target");
    if (s) {
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
            const char *a = (const char *)sqlite3_column_text(s, 0);
            const char *t = (const char *)sqlite3_column_text(s, 1);
            cb(arg, a ? a : "", t ? t : "");
        }
        if (r == SQLITE_DONE) rc = 0;
        sqlite3_finalize(s);
    }
    unlock(st);
    return rc;
}

/* --- sender grants --------------------------------------------------------- */

/* A grant "local@domain" or "@domain", lowercased into out (ADDR_SIZE). */
static int norm_grant(const char *in, char *out, char *err, size_t errsize)
{
    if (in && in[0] == '@') {
        char d[256];
        if (norm_domain(in + 1, d, sizeof d, err, errsize) != 0) return -1;
        int n = snprintf(out, ADDR_SIZE, "@%s", d);
        return n < 0 || n >= ADDR_SIZE ? -1 : 0;
    }
    return norm_addr(in, out, NULL, NULL, err, errsize);
}

int store_grant_add(struct store *st, const char *user, const char *grant, char *err,
                    size_t errsize)
{
    char u[ADDR_SIZE], g[ADDR_SIZE];
    if (norm_addr(user, u, NULL, NULL, err, errsize) != 0) return -1;
    if (norm_grant(grant, g, err, errsize) != 0) return -1;
    lock(st);
    int rc = -1;
    long long n = count1(st, "SELECT count(*) FROM mailboxes WHERE address = ?1", u);
    if (n < 0) {
        db_fail(st, err, errsize);
        goto out;
    }
    if (n == 0) {
        seterr(err, errsize, "no such mailbox %s", u);
        goto out;
    }
    if (strcmp(u, g) == 0) {
        seterr(err, errsize, "%s is the mailbox itself: it needs no grant", g);
        goto out;
    }
    sqlite3_stmt *s = prep(st, "INSERT INTO grants (user, \"grant\") VALUES (?1, ?2)");
    if (!s) {
        db_fail(st, err, errsize);
        goto out;
    }
    bind_text(s, 1, u);
    bind_text(s, 2, g);
    int r = sqlite3_step(s);
    sqlite3_finalize(s);
    if (r == SQLITE_DONE)
        rc = 0;
    else if (r == SQLITE_CONSTRAINT_PRIMARYKEY)
        seterr(err, errsize, "grant %s -> %s exists", u, g);
    else
        db_fail(st, err, errsize);
out:
    unlock(st);
    return rc;
}

int store_grant_del(struct store *st, const char *user, const char *grant, char *err,
                    size_t errsize)
{
    char u[ADDR_SIZE], g[ADDR_SIZE];
    if (norm_addr(user, u, NULL, NULL, err, errsize) != 0) return -1;
    if (norm_grant(grant, g, err, errsize) != 0) return -1;
    lock(st);
    int changes = 0;
    int rc = exec2(st, "DELETE FROM grants WHERE user = ?1 AND \"grant\" = ?2", u, g, &changes, err,
                   errsize);
    if (rc == 0 && changes == 0) {
        seterr(err, errsize, "no such grant %s -> %s", u, g);
        rc = -1;
    }
    unlock(st);
    return rc;
}

int store_grant_list(struct store *st, const char *user,
                     void (*cb)(void *arg, const char *user, const char *grant), void *arg)
{
    char u[ADDR_SIZE] = "";
    if (user && str_copy(u, user, sizeof u) >= sizeof u) return 0;
    str_lower(u);
    lock(st);
    int rc = -1;
    sqlite3_stmt *s =
        prep(st, user ? "SELECT user, \"grant\" FROM grants WHERE user = ?1 ORDER BY \"grant\""
                      : "SELECT user, \"grant\" FROM grants ORDER BY user, \"grant\"");
    if (s) {
        if (user) bind_text(s, 1, u);
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
            const char *a = (const char *)sqlite3_column_text(s, 0);
            const char *g = (const char *)sqlite3_column_text(s, 1);
            cb(arg, a ? a : "", g ? g : "");
        }
        if (r == SQLITE_DONE) rc = 0;
        sqlite3_finalize(s);
    }
    unlock(st);
    return rc;
}

int store_sender_owned(struct store *st, const char *user, const char *address)
{
    char u[ADDR_SIZE], a[ADDR_SIZE];
    if (!address || !*address) return 1; /* the null sender "<>" */
    if (!user || str_copy(u, user, sizeof u) >= sizeof u) return 0;
    if (str_copy(a, address, sizeof a) >= sizeof a) return 0;
    str_lower(u);
    str_lower(a);
    if (strcmp(u, a) == 0) return 1;
    const char *at = strrchr(a, '@');
    char dgrant[ADDR_SIZE + 1] = "";
    if (at && at[1]) str_copy(dgrant, at, sizeof dgrant);
    lock(st);
    int rc = -1;
    /* Alias sources that reach the user, directly or through other aliases, up to
     * the 10 levels route.c expands; then the user's grants. */
    sqlite3_stmt *s = prep(st, "WITH RECURSIVE reach(addr, depth) AS ("
                               "  SELECT ?1, 0"
                               "  UNION SELECT aliases.source, reach.depth + 1"
                               "  FROM aliases JOIN reach ON aliases.target = reach.addr"
                               "  WHERE reach.depth < 10)"
                               " SELECT (SELECT count(*) FROM reach WHERE addr = ?2)"
                               " + (SELECT count(*) FROM grants WHERE user = ?1"
                               "    AND (\"grant\" = ?2 OR \"grant\" = ?3))");
    if (s) {
        bind_text(s, 1, u);
        bind_text(s, 2, a);
        if (dgrant[0]) bind_text(s, 3, dgrant); /* unbound (NULL) matches no grant */
        if (sqlite3_step(s) == SQLITE_ROW) rc = sqlite3_column_int64(s, 0) > 0;
        sqlite3_finalize(s);
    }
    unlock(st);
    return rc;
}

void store_strv_free(char **v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* --- relay routes (per sender / sender domain) ------------------------------ */

/* "host[:port]" list separated by commas or spaces; each host a name or an IP
 * literal ("[2001:db8::1]:587"). */
static int relay_hosts_valid(const char *hosts)
{
    if (!hosts || !*hosts || strlen(hosts) >= 1024) return 0;
    return strspn(hosts,
                  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[], ") ==
           strlen(hosts);
}

int store_relay_add(struct store *st, const char *match, const char *hosts, const char *username,
                    const char *password, const char *tls, char *err, size_t errsize)
{
    char m[ADDR_SIZE];
    if (norm_grant(match, m, err, errsize) != 0) return -1;
    if (!relay_hosts_valid(hosts)) {
        seterr(err, errsize, "invalid relay host list \"%s\" (expected HOST[:PORT][,HOST...])",
               hosts ? hosts : "");
        return -1;
    }
    if (!tls) tls = "";
    if (*tls && strcmp(tls, "encrypt") != 0 && strcmp(tls, "verify") != 0 &&
        strcmp(tls, "may") != 0 && strcmp(tls, "none") != 0) {
        seterr(err, errsize, "invalid tls \"%s\" (expected none, may, encrypt or verify)", tls);
        return -1;
    }
    if (!username) username = "";
    if (!password) password = "";
    if (strlen(username) > 255 || strlen(password) > 255) {
        seterr(err, errsize, "user name or password too long (at most 255 bytes)");
        return -1;
    }
    if ((*username != 0) != (*password != 0)) {
        seterr(err, errsize, "give both a user name and a password, or neither");
        return -1;
    }
    lock(st);
    int rc = -1;
    sqlite3_stmt *s = prep(st, "INSERT OR REPLACE INTO relay_routes (match, hosts, username, "
                               "password, tls) VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!s) {
        db_fail(st, err, errsize);
        goto out;
    }
    bind_text(s, 1, m);
    bind_text(s, 2, hosts);
    bind_text(s, 3, username);
    bind_text(s, 4, password);
    bind_text(s, 5, tls);
    int r = sqlite3_step(s);
    sqlite3_finalize(s);
    if (r == SQLITE_DONE)
        rc = 0;
    else
        db_fail(st, err, errsize);
out:
    unlock(st);
    return rc;
}

int store_relay_del(struct store *st, const char *match, char *err, size_t errsize)
{
    char m[ADDR_SIZE];
    if (norm_grant(match, m, err, errsize) != 0) return -1;
    lock(st);
    int changes = 0;
    int rc =
        exec2(st, "DELETE FROM relay_routes WHERE match = ?1", m, NULL, &changes, err, errsize);
    if (rc == 0 && changes == 0) {
        seterr(err, errsize, "no relay route for %s", m);
        rc = -1;
    }
    unlock(st);
    return rc;
}

static void row_relay(sqlite3_stmt *s, struct store_relay *out)
{
    const char *v[5];
    for (int i = 0; i < 5; i++) {
        v[i] = (const char *)sqlite3_column_text(s, i);
        if (!v[i]) v[i] = "";
    }
    str_copy(out->match, v[0], sizeof out->match);
    str_copy(out->hosts, v[1], sizeof out->hosts);
    str_copy(out->username, v[2], sizeof out->username);
    str_copy(out->password, v[3], sizeof out->password);
    str_copy(out->tls, v[4], sizeof out->tls);
}

int store_relay_get(struct store *st, const char *sender, struct store_relay *out)
{
    char a[ADDR_SIZE], d[ADDR_SIZE + 1] = "";
    if (!sender || !*sender || str_copy(a, sender, sizeof a) >= sizeof a) return 0;
    str_lower(a);
    const char *at = strrchr(a, '@');
    if (!at || !at[1]) return 0;
    str_copy(d, at, sizeof d);
    lock(st);
    int rc = -1;
    /* the exact address wins over its domain */
    sqlite3_stmt *s = prep(st, "SELECT match, hosts, username, password, tls FROM relay_routes "
                               "WHERE match = ?1 OR match = ?2 ORDER BY match = ?1 DESC LIMIT 1");
    if (s) {
        bind_text(s, 1, a);
        bind_text(s, 2, d);
        int r = sqlite3_step(s);
        if (r == SQLITE_ROW) {
            row_relay(s, out);
            rc = 1;
        } else if (r == SQLITE_DONE) {
            rc = 0;
        }
        sqlite3_finalize(s);
    }
    unlock(st);
    return rc;
}

int store_relay_list(struct store *st, void (*cb)(void *arg, const struct store_relay *r),
                     void *arg)
{
    lock(st);
    int rc = -1;
    sqlite3_stmt *s =
        prep(st, "SELECT match, hosts, username, password, tls FROM relay_routes ORDER BY match");
    if (s) {
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
            struct store_relay rr;
            row_relay(s, &rr);
            cb(arg, &rr);
        }
        if (r == SQLITE_DONE) rc = 0;
        sqlite3_finalize(s);
    }
    unlock(st);
    return rc;
}
