/* sqlite_dir.c: the directory (domains, mailboxes, aliases, sender grants, sender
 * bindings, relay routes) in SQLite, or handed to dir_pg.c when PostgreSQL is attached.
 * Validation, lowercasing and the wording of errors happen here for both backends;
 * passwords are hashed here and never logged. Opening the file, the migrations and
 * the statement helpers are sqlite.c's (through sqlite_int.h). */
#include "core/compat.h"

#include <crypt.h>
#include <errno.h>
#include <sqlite3.h>

#include "core/core.h"
#include "store/dir_pg.h"
#include "store/sqlite_int.h"
#include "store/store.h"

/* Checked when the mailbox does not exist, so that an unknown user costs the same
 * as a wrong password (hash of a random password, the salt is public anyway). */
static const char dummy_hash[] =
    "$y$j9T$cS58RCME4jch3w8OVt0tH1$lOvCje1mynhfDq1dMeK4IT6NPL6zhSHkzcquHt7Vnv7";

/* Stored for a mailbox created without a password: no crypt output ever equals it. */
#define LOCKED_HASH "!"

/* --- validation ------------------------------------------------------------ */

static int norm_domain(const char *in, char *out, size_t outsize, char *err, size_t errsize)
{
    size_t len = in ? strlen(in) : 0;
    if (!len || !addr_domain_valid(in, len, 0)) {
        err_set(err, errsize, "invalid domain name \"%s\"", in ? in : "");
        return -1;
    }
    if (str_copy(out, in, outsize) >= outsize) {
        err_set(err, errsize, "domain name too long");
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
        err_set(err, errsize, "invalid address \"%s\": %s", in ? in : "",
                r < 0 && why ? why : "expected local@domain");
        return -1;
    }
    int rc = 0;
    char *f = addr_format(&a);
    str_lower(f);
    if (str_copy(out, f, ADDR_SIZE) >= ADDR_SIZE) {
        err_set(err, errsize, "address too long");
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
    long long n = stmt_count(st, "SELECT count(*) FROM domains WHERE name = ?1", domain);
    if (n < 0) return stmt_fail(st, err, errsize);
    if (n == 0) err_set(err, errsize, "no such domain %s", domain);
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
        err_set(err, errsize, "empty password");
        return -1;
    }
    if (strchr(password, '\n') || strchr(password, '\r')) {
        err_set(err, errsize, "password contains a line break");
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

/* --- domains --------------------------------------------------------------- */

int store_domain_add(struct store *st, const char *name, char *err, size_t errsize)
{
    char d[256];
    if (norm_domain(name, d, sizeof d, err, errsize) != 0) return -1;
    if (st->pg) return dir_pg_domain_add(st->pg, d, err, errsize);
    return stmt_exec(st, "INSERT INTO domains (name) VALUES (?1)", (const char *[]){d}, 1, err,
                     errsize, "domain %s exists", d);
}

/* The refusal to delete domain d that still has nm mailboxes and na aliases. */
static void domain_busy(const char *d, long long nm, long long na, char *err, size_t errsize)
{
    char what[128] = "";
    int n;
    if (nm && na)
        n = snprintf(what, sizeof what, "%lld mailbox%s and %lld alias%s", nm, nm == 1 ? "" : "es",
                     na, na == 1 ? "" : "es");
    else if (nm)
        n = snprintf(what, sizeof what, "%lld mailbox%s", nm, nm == 1 ? "" : "es");
    else
        n = snprintf(what, sizeof what, "%lld alias%s", na, na == 1 ? "" : "es");
    if (n < 0 || (size_t)n >= sizeof what) what[0] = '\0';
    err_set(err, errsize, "domain %s still has %s; delete %s first", d, what,
            nm + na == 1 ? "it" : "them");
}

int store_domain_del(struct store *st, const char *name, char *err, size_t errsize)
{
    char d[256];
    if (norm_domain(name, d, sizeof d, err, errsize) != 0) return -1;
    if (st->pg) {
        long long nm = 0, na = 0;
        if (dir_pg_domain_del(st->pg, d, &nm, &na, err, errsize) != 0) return -1;
        if (nm > 0 || na > 0) domain_busy(d, nm, na, err, errsize);
        return nm > 0 || na > 0 ? -1 : 0;
    }
    store_lock(st);
    int rc = -1;
    int r = domain_exists(st, d, err, errsize);
    if (r <= 0) goto out;
    long long nm = stmt_count(st, "SELECT count(*) FROM mailboxes WHERE domain = ?1", d);
    long long na = stmt_count(
        st, "SELECT count(*) FROM aliases WHERE substr(source, -length(?1) - 1) = '@' || ?1", d);
    if (nm < 0 || na < 0) {
        stmt_fail(st, err, errsize);
        goto out;
    }
    if (nm > 0 || na > 0) {
        domain_busy(d, nm, na, err, errsize);
        goto out;
    }
    rc = stmt_exec(st, "DELETE FROM domains WHERE name = ?1", (const char *[]){d}, 1, err, errsize,
                   NULL);
out:
    store_unlock(st);
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
    if (st->pg) return dir_pg_domain_set(st->pg, d, "catchall", c, err, errsize);
    return stmt_exec(st, "UPDATE domains SET catchall = ?2 WHERE name = ?1", (const char *[]){d, c},
                     2, err, errsize, "no such domain %s", d);
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
    if (st->pg) return dir_pg_domain_get(st->pg, d, out);
    sqlite3_stmt *s =
        stmt_open(st, "SELECT name, catchall FROM domains WHERE name = ?1", (const char *[]){d}, 1);
    int rc = stmt_row(s);
    if (rc > 0 && out) row_domain(s, out);
    stmt_close(st, s);
    return rc;
}

int store_domain_list(struct store *st, void (*cb)(void *arg, const struct store_domain *d),
                      void *arg)
{
    if (st->pg) return dir_pg_domain_list(st->pg, cb, arg);
    sqlite3_stmt *s = stmt_open(st, "SELECT name, catchall FROM domains ORDER BY name", NULL, 0);
    int rc;
    while ((rc = stmt_row(s)) > 0) {
        struct store_domain d;
        row_domain(s, &d);
        cb(arg, &d);
    }
    stmt_close(st, s);
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
        err_set(err, errsize, "invalid sender binding mode \"%s\" (enforce, log or off)",
                mode ? mode : "");
        return -1;
    }
    if (st->pg) return dir_pg_domain_set(st->pg, d, "sender_binding", m, err, errsize);
    return stmt_exec(st, "UPDATE domains SET sender_binding = ?2 WHERE name = ?1",
                     (const char *[]){d, m}, 2, err, errsize, "no such domain %s", d);
}

int store_domain_binding(struct store *st, const char *domain)
{
    char d[256];
    if (!domain || str_copy(d, domain, sizeof d) >= sizeof d) return 0;
    str_lower(d);
    if (st->pg) {
        char m[16];
        int r = dir_pg_domain_binding(st->pg, d, m, sizeof m);
        for (int i = 0; r > 0 && i < 3; i++)
            if (strcmp(m, binding_names[i]) == 0) return i;
        return r < 0 ? -1 : 0;
    }
    sqlite3_stmt *s =
        stmt_open(st, "SELECT sender_binding FROM domains WHERE name = ?1", (const char *[]){d}, 1);
    int rc = stmt_row(s);
    if (rc > 0) {
        const char *m = (const char *)sqlite3_column_text(s, 0);
        rc = 0; /* anything unexpected counts as the strict default */
        for (int i = 0; m && i < 3; i++)
            if (strcmp(m, binding_names[i]) == 0) rc = i;
    }
    stmt_close(st, s);
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
        err_set(err, errsize, "negative quota");
        return -1;
    }
    char *hash = password ? hash_password(password) : xstrdup(LOCKED_HASH);
    if (!hash) {
        err_set(err, errsize, "cannot hash password: %s", strerror(errno));
        return -1;
    }
    if (st->pg) {
        int r = dir_pg_mailbox_add(st->pg, a, local, domain, hash, quota, err, errsize);
        explicit_bzero(hash, strlen(hash));
        free(hash);
        return r;
    }
    store_lock(st);
    int rc = -1;
    if (domain_exists(st, domain, err, errsize) > 0) {
        sqlite3_stmt *s =
            stmt_open(st,
                      "INSERT INTO mailboxes (address, local, domain, password, quota) "
                      "VALUES (?1, ?2, ?3, ?4, ?5)",
                      (const char *[]){a, local, domain, hash}, 4);
        if (s) sqlite3_bind_int64(s, 5, quota);
        rc = stmt_done(st, s, err, errsize, "mailbox %s exists", a);
    }
    store_unlock(st);
    explicit_bzero(hash, strlen(hash));
    free(hash);
    return rc;
}

/* UPDATE/DELETE one mailbox; "no such mailbox" when nothing changed. */
static int mailbox_change(struct store *st, const char *sql, const char *a, sqlite3_int64 *num,
                          const char *text, char *err, size_t errsize)
{
    sqlite3_stmt *s = stmt_open(st, sql, (const char *[]){a, text}, text ? 2 : 1);
    if (s && num) sqlite3_bind_int64(s, 2, *num);
    return stmt_done(st, s, err, errsize, "no such mailbox %s", a);
}

int store_mailbox_del(struct store *st, const char *address, char *err, size_t errsize)
{
    char a[ADDR_SIZE];
    if (norm_addr(address, a, NULL, NULL, err, errsize) != 0) return -1;
    if (st->pg) return dir_pg_mailbox_del(st->pg, a, err, errsize);
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
        err_set(err, errsize, "cannot hash password: %s", strerror(errno));
        return -1;
    }
    int rc = st->pg ? dir_pg_mailbox_passwd(st->pg, a, hash, err, errsize)
                    : mailbox_change(st, "UPDATE mailboxes SET password = ?2 WHERE address = ?1", a,
                                     NULL, hash, err, errsize);
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
        err_set(err, errsize, "negative quota");
        return -1;
    }
    if (st->pg) return dir_pg_mailbox_set_quota(st->pg, a, quota, err, errsize);
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
                       const char *sql, int active_only)
{
    char a[ADDR_SIZE];
    if (!address || str_copy(a, address, sizeof a) >= sizeof a) return 0;
    str_lower(a);
    if (st->pg) return dir_pg_mailbox_get(st->pg, a, active_only, out);
    sqlite3_stmt *s = stmt_open(st, sql, (const char *[]){a}, 1);
    int rc = stmt_row(s);
    if (rc > 0 && out) row_mailbox(s, out);
    stmt_close(st, s);
    return rc;
}

int store_mailbox_get(struct store *st, const char *address, struct store_mailbox *out)
{
    return mailbox_get(st, address, out, "SELECT address, quota FROM mailboxes WHERE address = ?1",
                       0);
}

int store_mailbox_lookup(struct store *st, const char *address, struct store_mailbox *out)
{
    return mailbox_get(st, address, out,
                       "SELECT address, quota FROM mailboxes WHERE address = ?1 AND active = 1", 1);
}

int store_mailbox_list(struct store *st, const char *domain,
                       void (*cb)(void *arg, const struct store_mailbox *m), void *arg)
{
    char d[256] = "";
    if (domain && str_copy(d, domain, sizeof d) >= sizeof d) return 0;
    str_lower(d);
    if (st->pg) return dir_pg_mailbox_list(st->pg, domain ? d : NULL, cb, arg);
    sqlite3_stmt *s =
        stmt_open(st,
                  domain ? "SELECT address, quota FROM mailboxes WHERE domain = ?1 ORDER BY address"
                         : "SELECT address, quota FROM mailboxes ORDER BY domain, address",
                  (const char *[]){d}, domain ? 1 : 0);
    int rc;
    while ((rc = stmt_row(s)) > 0) {
        struct store_mailbox m;
        row_mailbox(s, &m);
        cb(arg, &m);
    }
    stmt_close(st, s);
    return rc;
}

int store_mailbox_dump(struct store *st, void (*cb)(void *arg, const struct store_mailbox_row *m),
                       void *arg)
{
    if (st->pg) return dir_pg_mailbox_dump(st->pg, cb, arg);
    sqlite3_stmt *s = stmt_open(
        st, "SELECT address, password, quota, active FROM mailboxes ORDER BY domain, address", NULL,
        0);
    int rc;
    while ((rc = stmt_row(s)) > 0) {
        struct store_mailbox_row m = {0};
        const char *a = (const char *)sqlite3_column_text(s, 0);
        const char *h = (const char *)sqlite3_column_text(s, 1);
        str_copy(m.address, a ? a : "", sizeof m.address);
        str_copy(m.hash, h ? h : "", sizeof m.hash);
        m.quota = sqlite3_column_int64(s, 2);
        m.active = sqlite3_column_int(s, 3) != 0;
        cb(arg, &m);
        explicit_bzero(m.hash, sizeof m.hash);
    }
    stmt_close(st, s);
    return rc;
}

int store_mailbox_load(struct store *st, const struct store_mailbox_row *m, char *err,
                       size_t errsize)
{
    char a[ADDR_SIZE], local[ADDR_SIZE], domain[256];
    if (norm_addr(m->address, a, local, domain, err, errsize) != 0) return -1;
    /* a crypt(3) string or the locked marker: printable, no blanks */
    size_t hl = strlen(m->hash);
    int bad = hl == 0 || hl >= sizeof m->hash || (m->hash[0] != '$' && strcmp(m->hash, "!") != 0);
    for (size_t i = 0; i < hl && !bad; i++)
        bad = (unsigned char)m->hash[i] <= ' ' || (unsigned char)m->hash[i] >= 127;
    if (bad) {
        err_set(err, errsize, "invalid password hash for %s (expected a crypt(3) string or \"!\")",
                a);
        return -1;
    }
    if (m->quota < 0) {
        err_set(err, errsize, "negative quota");
        return -1;
    }
    struct store_mailbox_row row = *m;
    str_copy(row.address, a, sizeof row.address);
    row.active = m->active != 0;
    int rc = -1;
    if (st->pg) {
        rc = dir_pg_mailbox_load(st->pg, &row, local, domain, err, errsize);
    } else {
        store_lock(st);
        if (domain_exists(st, domain, err, errsize) > 0) {
            sqlite3_stmt *s = stmt_open(
                st,
                "INSERT INTO mailboxes (address, local, domain, password, quota, active) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (address) DO UPDATE SET "
                "password = excluded.password, quota = excluded.quota, active = excluded.active",
                (const char *[]){a, local, domain, row.hash}, 4);
            if (s) {
                sqlite3_bind_int64(s, 5, row.quota);
                sqlite3_bind_int(s, 6, row.active);
            }
            rc = stmt_done(st, s, err, errsize, NULL);
        }
        store_unlock(st);
    }
    explicit_bzero(row.hash, sizeof row.hash);
    return rc;
}

enum auth_result store_mailbox_auth(struct store *st, const char *address, const char *password)
{
    char a[ADDR_SIZE];
    char *stored = NULL;
    int found = 0, rc = 0;
    if (!password) password = "";
    if (address && str_copy(a, address, sizeof a) < sizeof a && st->pg) {
        str_lower(a);
        char *h = NULL;
        int r = dir_pg_mailbox_hash(st->pg, a, &h);
        if (r > 0 && strncmp(h, "$", 1) == 0) {
            stored = h;
            found = 1;
        } else if (h) {
            free(h);
        }
        if (r < 0) rc = -1;
    } else if (address && str_copy(a, address, sizeof a) < sizeof a) {
        str_lower(a);
        sqlite3_stmt *s =
            stmt_open(st, "SELECT password FROM mailboxes WHERE address = ?1 AND active = 1",
                      (const char *[]){a}, 1);
        int r = stmt_row(s);
        if (r > 0) {
            const char *p = (const char *)sqlite3_column_text(s, 0);
            if (p && strncmp(p, "$", 1) == 0) {
                stored = xstrdup(p);
                found = 1;
            }
        } else if (r < 0) {
            rc = -1;
        }
        stmt_close(st, s);
    }
    if (rc < 0) return AUTH_TEMPFAIL;
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
    return found && match ? AUTH_OK : AUTH_DENIED;
}

/* --- aliases --------------------------------------------------------------- */

int store_alias_add(struct store *st, const char *source, const char *target, char *err,
                    size_t errsize)
{
    char s_[ADDR_SIZE], t[ADDR_SIZE], sd[256];
    if (norm_addr(source, s_, NULL, sd, err, errsize) != 0) return -1;
    if (norm_addr(target, t, NULL, NULL, err, errsize) != 0) return -1;
    if (st->pg) return dir_pg_alias_add(st->pg, s_, t, sd, err, errsize);
    store_lock(st);
    int rc = -1;
    int r = domain_exists(st, sd, err, errsize);
    if (r == 0) err_set(err, errsize, "alias source %s is not in a local domain", s_);
    if (r > 0)
        rc = stmt_exec(st, "INSERT INTO aliases (source, target) VALUES (?1, ?2)",
                       (const char *[]){s_, t}, 2, err, errsize, "alias %s -> %s exists", s_, t);
    store_unlock(st);
    return rc;
}

int store_alias_del(struct store *st, const char *source, const char *target, char *err,
                    size_t errsize)
{
    char s_[ADDR_SIZE], t[ADDR_SIZE];
    if (norm_addr(source, s_, NULL, NULL, err, errsize) != 0) return -1;
    if (target && norm_addr(target, t, NULL, NULL, err, errsize) != 0) return -1;
    if (st->pg) return dir_pg_alias_del(st->pg, s_, target ? t : NULL, err, errsize);
    if (target)
        return stmt_exec(st, "DELETE FROM aliases WHERE source = ?1 AND target = ?2",
                         (const char *[]){s_, t}, 2, err, errsize, "no such alias %s -> %s", s_, t);
    return stmt_exec(st, "DELETE FROM aliases WHERE source = ?1", (const char *[]){s_}, 1, err,
                     errsize, "no such alias %s", s_);
}

int store_alias_get(struct store *st, const char *source, char ***targets, size_t *n)
{
    *targets = NULL;
    *n = 0;
    char a[ADDR_SIZE];
    if (!source || str_copy(a, source, sizeof a) >= sizeof a) return 0;
    str_lower(a);
    if (st->pg) return dir_pg_alias_get(st->pg, a, targets, n);
    sqlite3_stmt *s = stmt_open(st, "SELECT target FROM aliases WHERE source = ?1 ORDER BY target",
                                (const char *[]){a}, 1);
    size_t cap = 0;
    int r;
    while ((r = stmt_row(s)) > 0) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        if (*n == cap) {
            cap = cap ? cap * 2 : 4;
            *targets = xrealloc(*targets, cap * sizeof **targets);
        }
        (*targets)[(*n)++] = xstrdup(t ? t : "");
    }
    stmt_close(st, s);
    if (r == 0) return *n > 0;
    store_strv_free(*targets, *n);
    *targets = NULL;
    *n = 0;
    return -1;
}

/* Call cb with the two text columns of each row of s (from stmt_open()), then
 * stmt_close() it. 0 or -1. */
static int list_pairs(struct store *st, sqlite3_stmt *s,
                      void (*cb)(void *arg, const char *a, const char *b), void *arg)
{
    int rc;
    while ((rc = stmt_row(s)) > 0) {
        const char *a = (const char *)sqlite3_column_text(s, 0);
        const char *b = (const char *)sqlite3_column_text(s, 1);
        cb(arg, a ? a : "", b ? b : "");
    }
    stmt_close(st, s);
    return rc;
}

int store_alias_list(struct store *st,
                     void (*cb)(void *arg, const char *source, const char *target), void *arg)
{
    if (st->pg) return dir_pg_alias_list(st->pg, cb, arg);
    return list_pairs(
        st, stmt_open(st, "SELECT source, target FROM aliases ORDER BY source, target", NULL, 0),
        cb, arg);
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
    if (st->pg) return dir_pg_grant_add(st->pg, u, g, err, errsize);
    store_lock(st);
    int rc = -1;
    long long n = stmt_count(st, "SELECT count(*) FROM mailboxes WHERE address = ?1", u);
    if (n < 0) {
        stmt_fail(st, err, errsize);
        goto out;
    }
    if (n == 0) {
        err_set(err, errsize, "no such mailbox %s", u);
        goto out;
    }
    if (strcmp(u, g) == 0) {
        err_set(err, errsize, "%s is the mailbox itself: it needs no grant", g);
        goto out;
    }
    rc = stmt_exec(st, "INSERT INTO grants (user, \"grant\") VALUES (?1, ?2)",
                   (const char *[]){u, g}, 2, err, errsize, "grant %s -> %s exists", u, g);
out:
    store_unlock(st);
    return rc;
}

int store_grant_del(struct store *st, const char *user, const char *grant, char *err,
                    size_t errsize)
{
    char u[ADDR_SIZE], g[ADDR_SIZE];
    if (norm_addr(user, u, NULL, NULL, err, errsize) != 0) return -1;
    if (norm_grant(grant, g, err, errsize) != 0) return -1;
    if (st->pg) return dir_pg_grant_del(st->pg, u, g, err, errsize);
    return stmt_exec(st, "DELETE FROM grants WHERE user = ?1 AND \"grant\" = ?2",
                     (const char *[]){u, g}, 2, err, errsize, "no such grant %s -> %s", u, g);
}

int store_grant_list(struct store *st, const char *user,
                     void (*cb)(void *arg, const char *user, const char *grant), void *arg)
{
    char u[ADDR_SIZE] = "";
    if (user && str_copy(u, user, sizeof u) >= sizeof u) return 0;
    str_lower(u);
    if (st->pg) return dir_pg_grant_list(st->pg, user ? u : NULL, cb, arg);
    return list_pairs(
        st,
        stmt_open(st,
                  user ? "SELECT user, \"grant\" FROM grants WHERE user = ?1 ORDER BY \"grant\""
                       : "SELECT user, \"grant\" FROM grants ORDER BY user, \"grant\"",
                  (const char *[]){u}, user ? 1 : 0),
        cb, arg);
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
    if (st->pg) return dir_pg_sender_owned(st->pg, u, a, dgrant);
    /* Alias sources that reach the user, directly or through other aliases, up to
     * the 10 levels route.c expands; then the user's grants. ?3 unbound (NULL) when
     * there is no domain: it matches no grant. */
    long long n = stmt_int(st,
                           "WITH RECURSIVE reach(addr, depth) AS ("
                           "  SELECT ?1, 0"
                           "  UNION SELECT aliases.source, reach.depth + 1"
                           "  FROM aliases JOIN reach ON aliases.target = reach.addr"
                           "  WHERE reach.depth < 10)"
                           " SELECT (SELECT count(*) FROM reach WHERE addr = ?2)"
                           " + (SELECT count(*) FROM grants WHERE user = ?1"
                           "    AND (\"grant\" = ?2 OR \"grant\" = ?3))",
                           (const char *[]){u, a, dgrant}, dgrant[0] ? 3 : 2);
    return n < 0 ? -1 : n > 0;
}

void store_strv_free(char **v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* --- relay routes (per sender / sender domain) ------------------------------ */

int store_relay_add(struct store *st, const char *match, const char *hosts, const char *username,
                    const char *password, const char *tls, char *err, size_t errsize)
{
    char m[ADDR_SIZE];
    if (norm_grant(match, m, err, errsize) != 0) return -1;
    /* the config file's parser for relay_host: a bad port must not become 25 */
    if (conf_hostlist_check(hosts, err, errsize) != 0) return -1;
    if (strlen(hosts) >= sizeof((struct store_relay *)0)->hosts) {
        err_set(err, errsize, "relay host list too long (at most %zu bytes)",
                sizeof((struct store_relay *)0)->hosts - 1);
        return -1;
    }
    if (!tls) tls = "";
    if (*tls && strcmp(tls, "encrypt") != 0 && strcmp(tls, "verify") != 0 &&
        strcmp(tls, "may") != 0 && strcmp(tls, "none") != 0 && strcmp(tls, "implicit") != 0) {
        err_set(err, errsize,
                "invalid tls \"%s\" (expected none, may, encrypt, verify or implicit)", tls);
        return -1;
    }
    if (!username) username = "";
    if (!password) password = "";
    if (strlen(username) > 255 || strlen(password) > 255) {
        err_set(err, errsize, "user name or password too long (at most 255 bytes)");
        return -1;
    }
    if ((*username != 0) != (*password != 0)) {
        err_set(err, errsize, "give both a user name and a password, or neither");
        return -1;
    }
    if (st->pg) {
        struct store_relay r = {0};
        str_copy(r.match, m, sizeof r.match);
        str_copy(r.hosts, hosts, sizeof r.hosts);
        str_copy(r.username, username, sizeof r.username);
        str_copy(r.password, password, sizeof r.password);
        str_copy(r.tls, tls, sizeof r.tls);
        int rc = dir_pg_relay_add(st->pg, &r, err, errsize);
        explicit_bzero(r.password, sizeof r.password);
        return rc;
    }
    return stmt_exec(st,
                     "INSERT OR REPLACE INTO relay_routes (match, hosts, username, password, tls) "
                     "VALUES (?1, ?2, ?3, ?4, ?5)",
                     (const char *[]){m, hosts, username, password, tls}, 5, err, errsize, NULL);
}

int store_relay_del(struct store *st, const char *match, char *err, size_t errsize)
{
    char m[ADDR_SIZE];
    if (norm_grant(match, m, err, errsize) != 0) return -1;
    if (st->pg) return dir_pg_relay_del(st->pg, m, err, errsize);
    return stmt_exec(st, "DELETE FROM relay_routes WHERE match = ?1", (const char *[]){m}, 1, err,
                     errsize, "no relay route for %s", m);
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
    if (st->pg) return dir_pg_relay_get(st->pg, a, d, out);
    /* the exact address wins over its domain */
    sqlite3_stmt *s = stmt_open(st,
                                "SELECT match, hosts, username, password, tls FROM relay_routes "
                                "WHERE match = ?1 OR match = ?2 ORDER BY match = ?1 DESC LIMIT 1",
                                (const char *[]){a, d}, 2);
    int rc = stmt_row(s);
    if (rc > 0) row_relay(s, out);
    stmt_close(st, s);
    return rc;
}

int store_relay_list(struct store *st, void (*cb)(void *arg, const struct store_relay *r),
                     void *arg)
{
    if (st->pg) return dir_pg_relay_list(st->pg, cb, arg);
    sqlite3_stmt *s = stmt_open(
        st, "SELECT match, hosts, username, password, tls FROM relay_routes ORDER BY match", NULL,
        0);
    int rc;
    while ((rc = stmt_row(s)) > 0) {
        struct store_relay rr;
        row_relay(s, &rr);
        cb(arg, &rr);
    }
    stmt_close(st, s);
    return rc;
}
