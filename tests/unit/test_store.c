/* test_store.c: the SQLite directory: domain/mailbox/alias CRUD, errors, password
 * hashing and auth, case folding, schema reopen. Uses a temp dir, no network. */
#include "core/compat.h"

#include <crypt.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "store/store.h"

#include "check.h"

enum op { DOM_ADD, DOM_DEL, DOM_CATCH, MB_ADD, MB_DEL, MB_PASS, MB_QUOTA, AL_ADD, AL_DEL };

struct step {
    enum op op;
    const char *a, *b;
    long long q;
    int want;               /* 0 ok, -1 fail */
    const char *err_substr; /* when failing: expected part of the message */
};

static const struct step steps[] = {
    {DOM_ADD, "Example.TEST", NULL, 0, 0, NULL},
    {DOM_ADD, "example.test", NULL, 0, -1, "domain example.test exists"},
    {DOM_ADD, "other.test", NULL, 0, 0, NULL},
    {DOM_ADD, "bad..domain", NULL, 0, -1, "invalid domain"},
    {DOM_ADD, "", NULL, 0, -1, "invalid domain"},
    {DOM_DEL, "nope.test", NULL, 0, -1, "no such domain nope.test"},
    {MB_ADD, "Demo@Example.Test", "secret", 1000, 0, NULL},
    {MB_ADD, "demo@example.test", "x", 0, -1, "mailbox demo@example.test exists"},
    {MB_ADD, "bob@example.test", "hunter2", 0, 0, NULL},
    {MB_ADD, "x@nodomain.test", "pw", 0, -1, "no such domain nodomain.test"},
    {MB_ADD, "not an address", "pw", 0, -1, "invalid address"},
    {MB_ADD, "nobody@", "pw", 0, -1, "invalid address"},
    {MB_ADD, "empty@example.test", "", 0, -1, "empty password"},
    {MB_ADD, "neg@example.test", "pw", -1, -1, "negative quota"},
    {MB_ADD, "locked@other.test", NULL, 0, 0, NULL},
    {MB_DEL, "ghost@example.test", NULL, 0, -1, "no such mailbox ghost@example.test"},
    {MB_PASS, "ghost@example.test", "pw", 0, -1, "no such mailbox"},
    {MB_QUOTA, "BOB@example.test", NULL, 5000, 0, NULL},
    {MB_QUOTA, "ghost@example.test", NULL, 5000, -1, "no such mailbox"},
    {DOM_DEL, "example.test", NULL, 0, -1,
     "domain example.test still has 2 mailboxes; delete them first"},
    {AL_ADD, "Info@Example.test", "Demo@example.test", 0, 0, NULL},
    {AL_ADD, "info@example.test", "demo@example.test", 0, -1, "exists"},
    {AL_ADD, "info@example.test", "someone@remote.example", 0, 0, NULL},
    {AL_ADD, "x@remote.example", "demo@example.test", 0, -1, "not in a local domain"},
    {AL_ADD, "x@example.test", "bad target", 0, -1, "invalid address"},
    {AL_DEL, "nope@example.test", NULL, 0, -1, "no such alias"},
    {AL_DEL, "info@example.test", "nobody@example.test", 0, -1, "no such alias"},
    {DOM_CATCH, "example.test", "Demo", 0, 0, NULL},
    {DOM_CATCH, "other.test", "all@Example.test", 0, 0, NULL},
    {DOM_CATCH, "nope.test", "x", 0, -1, "no such domain"},
    {DOM_CATCH, "example.test", "bad local part@", 0, -1, "invalid address"},
};

static void run_step(struct store *st, size_t i, const struct step *s)
{
    char err[256] = "";
    int r = -2;
    switch (s->op) {
    case DOM_ADD:
        r = store_domain_add(st, s->a, err, sizeof err);
        break;
    case DOM_DEL:
        r = store_domain_del(st, s->a, err, sizeof err);
        break;
    case DOM_CATCH:
        r = store_domain_set_catchall(st, s->a, s->b, err, sizeof err);
        break;
    case MB_ADD:
        r = store_mailbox_add(st, s->a, s->b, s->q, err, sizeof err);
        break;
    case MB_DEL:
        r = store_mailbox_del(st, s->a, err, sizeof err);
        break;
    case MB_PASS:
        r = store_mailbox_passwd(st, s->a, s->b, err, sizeof err);
        break;
    case MB_QUOTA:
        r = store_mailbox_set_quota(st, s->a, s->q, err, sizeof err);
        break;
    case AL_ADD:
        r = store_alias_add(st, s->a, s->b, err, sizeof err);
        break;
    case AL_DEL:
        r = store_alias_del(st, s->a, s->b, err, sizeof err);
        break;
    }
    CHECK(r == s->want, "step %zu (%s %s): got %d want %d, err \"%s\"", i, s->a, s->b ? s->b : "-",
          r, s->want, err);
    if (s->want < 0 && s->err_substr)
        CHECK(strstr(err, s->err_substr) != NULL, "step %zu: err \"%s\" lacks \"%s\"", i, err,
              s->err_substr);
}

static void count_domain(void *arg, const struct store_domain *d)
{
    (void)d;
    (*(int *)arg)++;
}

static void count_mailbox(void *arg, const struct store_mailbox *m)
{
    (void)m;
    (*(int *)arg)++;
}

static void count_alias(void *arg, const char *s, const char *t)
{
    (void)s;
    (void)t;
    (*(int *)arg)++;
}

static const char *db_password(const char *path, const char *addr, char *out, size_t size)
{
    sqlite3 *db;
    out[0] = '\0';
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) return out;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "SELECT password FROM mailboxes WHERE address = ?1", -1, &s, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(s, 1, addr, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW)
            str_copy(out, (const char *)sqlite3_column_text(s, 0), size);
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return out;
}

/* Several threads share one struct store (serialized mode, as the daemon's workers). */
struct thr {
    struct store *st;
    int bad;
};

static void *thread_main(void *arg)
{
    struct thr *t = arg;
    char err[256];
    for (int i = 0; i < 50; i++) {
        struct store_mailbox m;
        if (store_mailbox_lookup(t->st, "locked@other.test", &m) != 1) t->bad++;
        char **v = NULL;
        size_t n = 0;
        if (store_alias_get(t->st, "nobody@other.test", &v, &n) != 0) t->bad++;
        if (store_domain_add(t->st, "bad..name", err, sizeof err) != -1 ||
            !strstr(err, "invalid domain"))
            t->bad++;
    }
    if (store_mailbox_auth(t->st, "locked@other.test", "x") != 0) t->bad++;
    return NULL;
}

static void collect_grant(void *arg, const char *user, const char *grant)
{
    char *out = arg;
    size_t len = strlen(out);
    snprintf(out + len, 512 - len, "%s%s>%s", len ? " " : "", user, grant);
}

/* Sender binding: grants, per-domain modes, ownership (aliases, grants, domains). */
static void test_sender_binding(const char *dir)
{
    char *path = xasprintf("%s/binding.db", dir);
    char err[256];
    struct store *st = store_open(path, 1, NULL, err, sizeof err);
    CHECK(st != NULL, "open: %s", err);
    if (!st) {
        free(path);
        return;
    }
    static const char *const setup[][2] = {
        {"example.test", NULL},
        {"other.test", NULL},
        {"u@example.test", "pw"},
        {"v@example.test", "pw"},
        {"w@other.test", "pw"},
        {"sales@example.test", "team@example.test"},
        {"team@example.test", "u@example.test"},
        {"team@example.test", "v@example.test"},
        {"info@example.test", "u@example.test"},
        {"loop1@example.test", "loop2@example.test"},
        {"loop2@example.test", "loop1@example.test"},
    };
    for (size_t i = 0; i < sizeof setup / sizeof setup[0]; i++) {
        const char *a = setup[i][0], *b = setup[i][1];
        int r = !b                ? store_domain_add(st, a, err, sizeof err)
                : !strchr(b, '@') ? store_mailbox_add(st, a, b, 0, err, sizeof err)
                                  : store_alias_add(st, a, b, err, sizeof err);
        CHECK(r == 0, "setup %zu: %s", i, err);
    }

    /* Grants: validation and errors. */
    struct {
        int add; /* 1 add, 0 del */
        const char *user, *grant;
        int want;
        const char *err_substr;
    } g[] = {
        {1, "U@Example.test", "Boss@Example.TEST", 0, NULL},
        {1, "u@example.test", "boss@example.test", -1,
         "grant u@example.test -> boss@example.test exists"},
        {1, "u@example.test", "@Other.Test", 0, NULL},
        {1, "u@example.test", "me@gmail.example", 0, NULL},
        {1, "u@example.test", "@bad..domain", -1, "invalid domain"},
        {1, "u@example.test", "not an address", -1, "invalid address"},
        {1, "u@example.test", "", -1, "invalid address"},
        {1, "u@example.test", "u@example.test", -1, "needs no grant"},
        {1, "ghost@example.test", "x@example.test", -1, "no such mailbox ghost@example.test"},
        {1, "bad user", "x@example.test", -1, "invalid address"},
        {1, "v@example.test", "shared@example.test", 0, NULL},
        {0, "v@example.test", "nothing@example.test", -1,
         "no such grant v@example.test -> nothing@example.test"},
        {0, "v@example.test", "@nowhere.test", -1, "no such grant"},
        {0, "V@example.test", "SHARED@example.test", 0, NULL},
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        err[0] = '\0';
        int r = g[i].add ? store_grant_add(st, g[i].user, g[i].grant, err, sizeof err)
                         : store_grant_del(st, g[i].user, g[i].grant, err, sizeof err);
        CHECK(r == g[i].want, "grant step %zu (%s %s): got %d, err \"%s\"", i, g[i].user,
              g[i].grant, r, err);
        if (g[i].want < 0 && g[i].err_substr)
            CHECK(strstr(err, g[i].err_substr) != NULL, "grant step %zu: err \"%s\" lacks \"%s\"",
                  i, err, g[i].err_substr);
    }
    char list[512] = "";
    CHECK(store_grant_list(st, NULL, collect_grant, list) == 0, "grant list");
    CHECK(strcmp(list, "u@example.test>@other.test u@example.test>boss@example.test "
                       "u@example.test>me@gmail.example") == 0,
          "grants: %s", list);
    list[0] = '\0';
    CHECK(store_grant_list(st, "V@example.test", collect_grant, list) == 0 && list[0] == '\0',
          "grants of v: %s", list);

    /* Ownership. */
    struct {
        const char *user, *addr;
        int want;
    } own[] = {
        {"u@example.test", "u@example.test", 1},
        {"u@example.test", "U@EXAMPLE.TEST", 1}, /* case-insensitive */
        {"U@Example.Test", "u@example.test", 1},
        {"u@example.test", "", 1},                  /* the null sender */
        {"u@example.test", "v@example.test", 0},    /* someone else's mailbox */
        {"u@example.test", "info@example.test", 1}, /* alias -> u */
        {"u@example.test", "team@example.test", 1}, /* alias -> u, v */
        {"v@example.test", "team@example.test", 1},
        {"u@example.test", "sales@example.test", 1}, /* sales -> team -> u */
        {"v@example.test", "info@example.test", 0},  /* info -> u only */
        {"u@example.test", "loop1@example.test", 0}, /* a cycle ends */
        {"u@example.test", "boss@example.test", 1},  /* granted address */
        {"u@example.test", "Boss@example.test", 1},
        {"u@example.test", "anyone@other.test", 1}, /* granted domain */
        {"u@example.test", "w@OTHER.test", 1},
        {"u@example.test", "x@sub.other.test", 0}, /* not a subdomain grant */
        {"u@example.test", "me@gmail.example", 1},
        {"u@example.test", "you@gmail.example", 0},
        {"v@example.test", "shared@example.test", 0}, /* revoked */
        {"v@example.test", "anyone@other.test", 0},
        {"w@other.test", "u@example.test", 0},
        {"u@example.test", "nodomain", 0},
        {"ghost@example.test", "ghost@example.test", 1}, /* the store does not judge logins */
    };
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        CHECK(store_sender_owned(st, own[i].user, own[i].addr) == own[i].want,
              "owned %zu: %s as %s", i, own[i].user, own[i].addr);

    /* Modes per domain. */
    CHECK(store_domain_binding(st, "example.test") == 0, "default enforce");
    CHECK(store_domain_binding(st, "notours.test") == 0, "unknown domain: enforce");
    CHECK(store_domain_set_binding(st, "Example.TEST", "log", err, sizeof err) == 0, "%s", err);
    CHECK(store_domain_binding(st, "EXAMPLE.test") == 1, "log");
    CHECK(store_domain_set_binding(st, "other.test", "off", err, sizeof err) == 0, "%s", err);
    CHECK(store_domain_binding(st, "other.test") == 2, "off");
    CHECK(store_domain_set_binding(st, "other.test", "enforce", err, sizeof err) == 0, "%s", err);
    CHECK(store_domain_binding(st, "other.test") == 0, "enforce again");
    CHECK(store_domain_set_binding(st, "other.test", "strict", err, sizeof err) == -1 &&
              strstr(err, "invalid sender binding mode \"strict\"") != NULL,
          "bad mode: %s", err);
    CHECK(store_domain_set_binding(st, "other.test", NULL, err, sizeof err) == -1, "NULL mode");
    CHECK(store_domain_set_binding(st, "nope.test", "log", err, sizeof err) == -1 &&
              strstr(err, "no such domain nope.test") != NULL,
          "unknown domain: %s", err);

    /* Grants go with their mailbox: a new mailbox of the same name starts clean. */
    CHECK(store_mailbox_del(st, "u@example.test", err, sizeof err) == 0, "%s", err);
    list[0] = '\0';
    CHECK(store_grant_list(st, NULL, collect_grant, list) == 0 && list[0] == '\0',
          "grants after mailbox del: %s", list);
    CHECK(store_mailbox_add(st, "u@example.test", "pw", 0, err, sizeof err) == 0, "%s", err);
    CHECK(store_sender_owned(st, "u@example.test", "boss@example.test") == 0, "old grant kept");
    store_free(st);
    free(path);
}

/* A schema-1 file (before sender binding) is migrated on open; its data stays. */
static void test_migration_v1(const char *dir)
{
    char *path = xasprintf("%s/v1.db", dir);
    sqlite3 *db;
    if (sqlite3_open(path, &db) == SQLITE_OK) {
        sqlite3_exec(db,
                     "CREATE TABLE domains (name TEXT PRIMARY KEY,"
                     "  catchall TEXT NOT NULL DEFAULT '');"
                     "CREATE TABLE mailboxes (address TEXT PRIMARY KEY, local TEXT NOT NULL,"
                     "  domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,"
                     "  password TEXT NOT NULL, quota INTEGER NOT NULL DEFAULT 0,"
                     "  active INTEGER NOT NULL DEFAULT 1);"
                     "CREATE TABLE aliases (source TEXT NOT NULL, target TEXT NOT NULL,"
                     "  PRIMARY KEY (source, target));"
                     "CREATE TABLE schema_version (version INTEGER NOT NULL);"
                     "INSERT INTO schema_version VALUES (1);"
                     "INSERT INTO domains (name, catchall) VALUES ('old.test', 'x');"
                     "INSERT INTO mailboxes (address, local, domain, password)"
                     "  VALUES ('a@old.test', 'a', 'old.test', '!');"
                     "PRAGMA user_version = 1;",
                     NULL, NULL, NULL);
        sqlite3_close(db);
    }
    char err[256];
    struct store *st = store_open(path, 0, NULL, err, sizeof err);
    CHECK(st != NULL, "open v1: %s", err);
    if (st) {
        struct store_domain d;
        CHECK(store_domain_get(st, "old.test", &d) == 1 && strcmp(d.catchall, "x") == 0,
              "v1 domain kept");
        CHECK(store_domain_binding(st, "old.test") == 0, "v1 domain: enforce");
        CHECK(store_grant_add(st, "a@old.test", "@old.test", err, sizeof err) == 0, "%s", err);
        CHECK(store_sender_owned(st, "a@old.test", "b@old.test") == 1, "grant after migration");
        store_free(st);
    }
    int uv = -1, sv = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(db,
                               "SELECT (SELECT version FROM schema_version), user_version"
                               " FROM pragma_user_version",
                               -1, &s, NULL) == SQLITE_OK) {
            if (sqlite3_step(s) == SQLITE_ROW) {
                sv = sqlite3_column_int(s, 0);
                uv = sqlite3_column_int(s, 1);
            }
            sqlite3_finalize(s);
        }
        sqlite3_close(db);
    }
    /* Migrated to the newest version (2 brought sender binding; later ones may follow). */
    CHECK(uv >= 2 && sv == uv, "versions after migration: user_version %d, table %d", uv, sv);
    free(path);
}

/* Greylisting state: a timeline of (time, triplet) -> expected answer, with the
 * retry window, lifetime, auto-allowlisting and purging; then it survives a reopen. */
/* kurier greylist: list, clear by network and by sender, allow. */
struct grey_seen {
    char lines[8][200];
    size_t n;
};

static void seen_triplet(void *arg, const struct store_grey_triplet *t)
{
    struct grey_seen *g = arg;
    if (g->n < 8)
        snprintf(g->lines[g->n++], sizeof g->lines[0], "T %s <%s> <%s> %d", t->net, t->sender,
                 t->rcpt, t->passed);
}

static void seen_net(void *arg, const struct store_grey_net *n)
{
    struct grey_seen *g = arg;
    if (g->n < 8)
        snprintf(g->lines[g->n++], sizeof g->lines[0], "N %s %lld %lld", n->net, n->passes,
                 n->last_seen);
}

static void grey_expect(struct store *st, const char *const *want, size_t nwant, const char *step)
{
    struct grey_seen g = {0};
    CHECK(store_grey_list(st, seen_triplet, seen_net, &g) == 0, "%s: list", step);
    CHECK(g.n == nwant, "%s: %zu entries, want %zu", step, g.n, nwant);
    for (size_t i = 0; i < g.n && i < nwant; i++)
        CHECK(strcmp(g.lines[i], want[i]) == 0, "%s: entry %zu is \"%s\", want \"%s\"", step, i,
              g.lines[i], want[i]);
}

static void test_grey_admin(struct store *st, const struct store_grey_params *p)
{
    long nt, nn;
    struct store_grey_result r;
    CHECK(store_grey_clear(st, NULL, NULL, &nt, &nn) == 0, "clear all");
    grey_expect(st, NULL, 0, "empty");
    store_grey_check(st, "192.0.2.0/24", "A@x.test", "u@y.test", p, 10000, &r);
    store_grey_check(st, "192.0.2.0/24", "", "u@y.test", p, 10000, &r);
    store_grey_check(st, "198.51.100.0/24", "a@x.test", "u@y.test", p, 10000, &r);
    store_grey_check(st, "198.51.100.0/24", "a@x.test", "u@y.test", p, 10400, &r); /* passes */
    const char *const all[] = {
        "T 192.0.2.0/24 <> <u@y.test> 0", "T 192.0.2.0/24 <a@x.test> <u@y.test> 0",
        "T 198.51.100.0/24 <a@x.test> <u@y.test> 1", "N 198.51.100.0/24 1 10400"};
    grey_expect(st, all, 4, "listed");
    CHECK(store_grey_clear(st, NULL, "A@X.test", &nt, &nn) == 0 && nt == 2 && nn == 0,
          "clear by sender: %ld %ld", nt, nn);
    const char *const left[] = {"T 192.0.2.0/24 <> <u@y.test> 0", "N 198.51.100.0/24 1 10400"};
    grey_expect(st, left, 2, "after clear by sender");
    CHECK(store_grey_clear(st, "198.51.100.0/24", NULL, &nt, &nn) == 0 && nt == 0 && nn == 1,
          "clear by network: %ld %ld", nt, nn);
    CHECK(store_grey_allow(st, "203.0.113.0/24", 5, 20000) == 0, "allow");
    CHECK(store_grey_allow(st, "203.0.113.0/24", 2, 20001) == 0, "allow again");
    const char *const allowed[] = {"T 192.0.2.0/24 <> <u@y.test> 0", "N 203.0.113.0/24 5 20001"};
    grey_expect(st, allowed, 2, "allowed");
    struct store_grey_params pa = *p;
    pa.auto_allowlist = 5;
    CHECK(store_grey_check(st, "203.0.113.0/24", "n@x.test", "u@y.test", &pa, 20002, &r) == 0 &&
              !r.greylisted && r.net_allowlisted,
          "allowed network greylisted");
    CHECK(store_grey_clear(st, NULL, NULL, &nt, &nn) == 0 && nt == 1 && nn == 1,
          "clear all: %ld %ld", nt, nn);
}

static void test_greylist(const char *dir)
{
    char *path = xasprintf("%s/grey.db", dir);
    char err[256];
    struct store *st = store_open(path, 1, NULL, err, sizeof err);
    CHECK(st != NULL, "open: %s", err);
    if (!st) goto out;
    const struct store_grey_params p = {
        .delay = 300, .retry_window = 1000, .lifetime = 5000, .auto_allowlist = 2};
    static const struct {
        long long t;
        const char *net, *from, *to;
        int grey, wait, allowlisted;
    } tl[] = {
        {1000, "192.0.2.0/24", "a@x.test", "u@y.test", 1, 300, 0},    /* new */
        {1100, "192.0.2.0/24", "A@X.test", "u@y.test", 1, 200, 0},    /* early, case folded */
        {1300, "192.0.2.0/24", "a@x.test", "u@y.test", 0, 0, 0},      /* after the delay */
        {1301, "192.0.2.0/24", "a@x.test", "u@y.test", 0, 0, 0},      /* known */
        {1400, "192.0.2.0/24", "", "u@y.test", 1, 300, 0},            /* null sender */
        {3000, "192.0.2.0/24", "", "u@y.test", 1, 300, 0},            /* too late: anew */
        {3300, "192.0.2.0/24", "", "u@y.test", 0, 0, 0},              /* 2nd pass */
        {3301, "192.0.2.0/24", "new@x.test", "u@y.test", 0, 0, 1},    /* allowlisted */
        {3302, "2001:db8::/64", "new@x.test", "u@y.test", 1, 300, 0}, /* another net */
        {9000, "192.0.2.0/24", "b@x.test", "u@y.test", 1, 300, 0},    /* net forgotten */
    };
    for (size_t i = 0; i < sizeof tl / sizeof tl[0]; i++) {
        struct store_grey_result r;
        int rc = store_grey_check(st, tl[i].net, tl[i].from, tl[i].to, &p, tl[i].t, &r);
        CHECK(rc == 0 && r.greylisted == tl[i].grey && r.wait == tl[i].wait &&
                  r.net_allowlisted == tl[i].allowlisted,
              "grey step %zu: rc %d greylisted %d wait %d allowlisted %d", i, rc, r.greylisted,
              r.wait, r.net_allowlisted);
    }
    store_free(st);
    /* after a reopen (a restart) the state is there; a purge forgets expired entries */
    st = store_open(path, 0, NULL, err, sizeof err);
    CHECK(st != NULL, "reopen: %s", err);
    if (!st) goto out;
    struct store_grey_result r;
    CHECK(store_grey_check(st, "2001:db8::/64", "new@x.test", "u@y.test", &p, 3700, &r) == 0 &&
              !r.greylisted && r.first_pass,
          "state lost in reopen");
    CHECK(store_grey_purge(st, &p, 9001) == 0, "purge");
    CHECK(store_grey_check(st, "2001:db8::/64", "new@x.test", "u@y.test", &p, 9002, &r) == 0 &&
              r.greylisted,
          "purged triplet still known");
    test_grey_admin(st, &p);
    store_free(st);
out:
    free(path);
}

/* Probe answers: expiry, case-insensitive keys, kinds kept apart, replace, purge. */
static void test_verify_cache(const char *dir)
{
    char *path = xasprintf("%s/verify.db", dir);
    char err[256];
    struct store *st = store_open(path, 1, NULL, err, sizeof err);
    CHECK(st != NULL, "open: %s", err);
    if (!st) goto out;
    struct store_verify v = {
        .ok = 0, .code = 550, .text = "host h said: 550 5.1.1 no", .expires = 100};
    CHECK(store_verify_put(st, "rcpt", "Bob@Relay.test", &v) == 0, "put");
    struct store_verify g;
    CHECK(store_verify_get(st, "rcpt", "bob@relay.TEST", 99, &g) == 1 && g.ok == 0 &&
              g.code == 550 && strcmp(g.text, v.text) == 0 && g.expires == 100,
          "get before expiry");
    CHECK(store_verify_get(st, "rcpt", "bob@relay.test", 100, &g) == 0, "expired at 100");
    CHECK(store_verify_get(st, "sender", "bob@relay.test", 50, &g) == 0, "other kind");
    v = (struct store_verify){.ok = 1, .code = 250, .text = "ok", .expires = 200};
    CHECK(store_verify_put(st, "rcpt", "bob@relay.test", &v) == 0, "replace");
    CHECK(store_verify_get(st, "rcpt", "bob@relay.test", 150, &g) == 1 && g.ok == 1, "replaced");
    CHECK(store_verify_purge(st, 199) == 0, "purge");
    CHECK(store_verify_get(st, "rcpt", "bob@relay.test", 150, &g) == 1, "kept by purge at 199");
    CHECK(store_verify_purge(st, 200) == 0, "purge 200");
    CHECK(store_verify_get(st, "rcpt", "bob@relay.test", 0, &g) == 0, "purged at 200");
    store_free(st);
out:
    free(path);
}

static void count_lock(void *arg, const struct store_abuse_lock *l)
{
    int *n = arg;
    (*n)++;
    CHECK(strcmp(l->account, "joe@example.test") == 0 && l->score == 100 && l->since == 7 &&
              strcmp(l->reason, "spamtrap") == 0,
          "lock row %s %d", l->account, l->score);
}

static void count_evidence(void *arg, const struct store_abuse_evidence *e)
{
    int *n = arg;
    (*n)++;
}

static void state_seen(void *arg, const char *account, const char *state)
{
    char *got = arg;
    size_t n = strlen(got);
    snprintf(got + n, 64 - n, "%s=%s;", account, state);
}

/* Locked accounts, evidence, hourly volumes, counters (abuse/abuse.c): names lower case. */
static void test_abuse(const char *dir)
{
    char *path = xasprintf("%s/abuse.db", dir);
    char err[256];
    struct store *st = store_open(path, 1, NULL, err, sizeof err);
    CHECK(st != NULL, "open: %s", err);
    if (!st) goto out;
    struct store_abuse_lock l = {
        .account = "Joe@Example.test", .since = 7, .score = 100, .reason = "spamtrap"};
    CHECK(store_abuse_lock_put(st, &l) == 0, "lock put");
    int n = 0;
    CHECK(store_abuse_lock_list(st, count_lock, &n) == 0 && n == 1, "one lock, %d", n);
    struct store_abuse_evidence e = {
        .account = "JOE@example.test", .time = 10, .signal = "x", .score = 5, .evidence = "e"};
    CHECK(store_abuse_evidence_add(st, &e) == 0, "evidence");
    e.time = 20;
    CHECK(store_abuse_evidence_add(st, &e) == 0, "evidence 2");
    n = 0;
    CHECK(store_abuse_evidence_list(st, "joe@example.test", 15, 0, count_evidence, &n) == 0 &&
              n == 1,
          "evidence since 15: %d", n);
    CHECK(store_abuse_hour_put(st, "joe@example.test", 100, 4, 0) == 0, "hour 100");
    CHECK(store_abuse_hour_put(st, "joe@example.test", 101, 0, 0) == 0, "hour 101 (empty)");
    CHECK(store_abuse_hour_put(st, "joe@example.test", 102, 8, 0) == 0, "hour 102");
    double mean = 0;
    int hours = 0;
    CHECK(store_abuse_baseline(st, "Joe@example.test", 0, &mean, &hours) == 0 && hours == 2 &&
              mean == 6.0,
          "baseline %d hours, mean %g", hours, mean);
    CHECK(store_abuse_hour_put(st, "joe@example.test", 103, 1, 102) == 0, "hour 103, trim");
    CHECK(store_abuse_baseline(st, "joe@example.test", 0, &mean, &hours) == 0 && hours == 2,
          "trimmed: %d hours", hours);
    CHECK(store_abuse_lock_del(st, "joe@EXAMPLE.test") == 1, "unlock");
    CHECK(store_abuse_lock_del(st, "joe@example.test") == 0, "not locked");
    CHECK(store_abuse_evidence_clear(st, "joe@example.test", 0) == 0, "clear");
    n = 0;
    CHECK(store_abuse_evidence_list(st, NULL, 0, 0, count_evidence, &n) == 0 && n == 0,
          "evidence cleared: %d", n);
    /* each account's counters: one row, replaced; listed by the time it was written */
    CHECK(store_abuse_state_put(st, "Joe@example.test", 50, "1 old") == 0, "state put");
    CHECK(store_abuse_state_put(st, "joe@example.test", 60, "1 new") == 0, "state replaced");
    CHECK(store_abuse_state_put(st, "ann@example.test", 10, "1 ann") == 0, "state ann");
    char got[64] = "";
    n = 0;
    CHECK(store_abuse_state_list(st, 20, state_seen, got) == 0 &&
              strcmp(got, "joe@example.test=1 new;") == 0,
          "states since 20: %s", got);
    store_free(st);
out:
    free(path);
}

/* What each account sent: found by queue ID, else by Message-ID (the newest), purged by
 * age; complaints listed per account. */
static int ncomplaints;
static void count_complaint(void *arg, const struct store_complaint *c)
{
    ncomplaints++;
    CHECK(strcmp(c->account, "a@x.test") == 0 && strcmp(c->format, "arf") == 0 &&
              strcmp(c->queue_id, "Q1") == 0 && c->time == 5,
          "complaint row %s %s", c->account, c->format);
}

static void test_sent_log(const char *dir)
{
    char *path = xasprintf("%s/sent.db", dir);
    char err[256];
    struct store *st = store_open(path, 1, NULL, err, sizeof err);
    CHECK(st != NULL, "open: %s", err);
    if (!st) goto out;
    struct store_sent e = {.queue_id = "Q1",
                           .message_id = "<m@x>",
                           .account = "a@x.test",
                           .sender = "a@x.test",
                           .time = 100};
    CHECK(store_sent_add(st, &e) == 0, "add");
    e = (struct store_sent){
        .queue_id = "Q2", .message_id = "<m@x>", .account = "b@x.test", .time = 200};
    CHECK(store_sent_add(st, &e) == 0, "add 2");
    struct store_sent g;
    CHECK(store_sent_find(st, "Q1", "<m@x>", &g) == 1 && strcmp(g.account, "a@x.test") == 0 &&
              strcmp(g.sender, "a@x.test") == 0 && g.time == 100,
          "by queue id");
    CHECK(store_sent_find(st, "QX", "<m@x>", &g) == 2 && strcmp(g.account, "b@x.test") == 0,
          "by message-id, newest: %s", g.account);
    CHECK(store_sent_find(st, "", "<none@x>", &g) == 0, "none");
    CHECK(store_sent_find(st, NULL, NULL, &g) == 0, "no keys");
    CHECK(store_sent_purge(st, 150) == 0, "purge");
    CHECK(store_sent_find(st, "Q1", "", &g) == 0 && store_sent_find(st, "Q2", "", &g) == 1,
          "purged before 150 only");
    CHECK(store_complaint_add(st, &(struct store_complaint){.account = "a@x.test",
                                                            .queue_id = "Q1",
                                                            .message_id = "",
                                                            .format = "arf",
                                                            .feedback_type = "abuse",
                                                            .source_ip = "",
                                                            .reporter = "",
                                                            .report_id = "R1",
                                                            .time = 5}) == 0,
          "complaint add");
    CHECK(store_complaint_list(st, "a@x.test", count_complaint, NULL) == 0 && ncomplaints == 1,
          "list a: %d", ncomplaints);
    CHECK(store_complaint_list(st, "b@x.test", count_complaint, NULL) == 0 && ncomplaints == 1,
          "list b");
    store_free(st);
out:
    free(path);
}

static void dump_one(void *arg, const struct store_mailbox_row *m)
{
    struct store_mailbox_row *out = arg;
    if (strcmp(m->address, "load@x.test") == 0) *out = *m;
}

/* store_mailbox_load/dump (kurier directory import/export): the hash moves as it is,
 * a second load replaces, bad hashes and unknown domains are refused. */
static void test_mailbox_load(const char *dir)
{
    char *path = xasprintf("%s/load.db", dir);
    char err[256];
    struct store *st = store_open(path, 1, NULL, err, sizeof err);
    CHECK(st != NULL, "open: %s", err);
    if (!st) goto out;
    CHECK(strcmp(store_directory_backend(st), "sqlite") == 0, "backend");
    CHECK(store_domain_add(st, "x.test", err, sizeof err) == 0, "%s", err);
    struct store_mailbox_row src = {0};
    src.active = -1;
    struct store_mailbox_row r = {.address = "Load@X.test", .quota = 7, .active = 1};
    str_copy(r.hash, "!", sizeof r.hash);
    CHECK(store_mailbox_load(st, &r, err, sizeof err) == 0, "load: %s", err);
    CHECK(store_mailbox_dump(st, dump_one, &src) == 0 && src.quota == 7 && src.active == 1 &&
              strcmp(src.hash, "!") == 0,
          "dump: quota %lld active %d", src.quota, src.active);
    CHECK(store_mailbox_auth(st, "load@x.test", "pw") == AUTH_DENIED, "locked cannot log in");
    /* a second load of the same address replaces hash and quota */
    r.quota = 9;
    str_copy(r.hash, crypt("pw", "$y$j9T$cS58RCME4jch3w8OVt0tH1$"), sizeof r.hash);
    CHECK(store_mailbox_load(st, &r, err, sizeof err) == 0, "replace: %s", err);
    CHECK(store_mailbox_auth(st, "load@x.test", "pw") == AUTH_OK, "loaded hash logs in");
    struct store_mailbox m;
    CHECK(store_mailbox_get(st, "load@x.test", &m) == 1 && m.quota == 9, "quota replaced");
    str_copy(r.hash, "plain text", sizeof r.hash);
    CHECK(store_mailbox_load(st, &r, err, sizeof err) == -1 && strstr(err, "invalid password hash"),
          "bad hash: %s", err);
    str_copy(r.hash, "!", sizeof r.hash);
    str_copy(r.address, "a@nowhere.test", sizeof r.address);
    CHECK(store_mailbox_load(st, &r, err, sizeof err) == -1 &&
              strstr(err, "no such domain nowhere.test"),
          "unknown domain: %s", err);
    store_free(st);
out:
    free(path);
}

int main(void)
{
    char tmpl[] = "/tmp/kurier-test-store-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) {
        perror("mkdtemp");
        return 1;
    }
    char *path = xasprintf("%s/sub/kurier.db", dir);
    char err[256];

    /* Opening without create fails on a missing file. */
    struct store *st = store_open(path, 0, NULL, err, sizeof err);
    CHECK(st == NULL, "open without create succeeded");
    store_free(st);

    st = store_open(path, 1, "no-such-user-kurier-test", err, sizeof err);
    CHECK(st != NULL, "open: %s", err);
    if (!st) goto done;

    test_greylist(dir);
    test_verify_cache(dir);
    test_abuse(dir);
    test_sent_log(dir);
    test_mailbox_load(dir);
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        run_step(st, i, &steps[i]);

    struct store_domain d;
    CHECK(store_domain_get(st, "EXAMPLE.test", &d) == 1, "domain get");
    CHECK(strcmp(d.name, "example.test") == 0, "domain name %s", d.name);
    CHECK(strcmp(d.catchall, "demo") == 0, "catchall %s", d.catchall);
    CHECK(store_domain_get(st, "other.test", &d) == 1 &&
              strcmp(d.catchall, "all@example.test") == 0,
          "catchall full address %s", d.catchall);
    CHECK(store_domain_get(st, "nope.test", &d) == 0, "unknown domain found");
    CHECK(store_domain_set_catchall(st, "other.test", NULL, err, sizeof err) == 0, "%s", err);
    CHECK(store_domain_get(st, "other.test", &d) == 1 && d.catchall[0] == '\0', "catchall off");

    struct store_mailbox m;
    CHECK(store_mailbox_get(st, "DEMO@example.TEST", &m) == 1, "mailbox get");
    CHECK(strcmp(m.address, "demo@example.test") == 0 && m.quota == 1000, "mailbox %s %lld",
          m.address, m.quota);
    CHECK(store_mailbox_get(st, "bob@example.test", &m) == 1 && m.quota == 5000, "quota %lld",
          m.quota);
    CHECK(store_mailbox_lookup(st, "bob@example.test", &m) == 1, "lookup");
    CHECK(store_mailbox_get(st, "ghost@example.test", &m) == 0, "ghost found");

    int n = 0;
    CHECK(store_domain_list(st, count_domain, &n) == 0 && n == 2, "domains %d", n);
    n = 0;
    CHECK(store_mailbox_list(st, NULL, count_mailbox, &n) == 0 && n == 3, "mailboxes %d", n);
    n = 0;
    CHECK(store_mailbox_list(st, "Example.test", count_mailbox, &n) == 0 && n == 2,
          "mailboxes in example.test %d", n);
    n = 0;
    CHECK(store_alias_list(st, count_alias, &n) == 0 && n == 2, "aliases %d", n);

    char **t = NULL;
    size_t nt = 0;
    CHECK(store_alias_get(st, "INFO@example.test", &t, &nt) == 1 && nt == 2, "alias get %zu", nt);
    if (nt == 2)
        CHECK(strcmp(t[0], "demo@example.test") == 0 && strcmp(t[1], "someone@remote.example") == 0,
              "alias targets %s %s", t[0], t[1]);
    store_strv_free(t, nt);
    CHECK(store_alias_get(st, "nobody@example.test", &t, &nt) == 0 && nt == 0 && !t, "alias none");

    /* Passwords: yescrypt hash, good/bad/unknown/locked, case-folded address. */
    char hash[256];
    db_password(path, "demo@example.test", hash, sizeof hash);
    CHECK(strncmp(hash, "$y$", 3) == 0, "hash %.3s...", hash);
    CHECK(strstr(hash, "secret") == NULL, "plain password stored");
    struct {
        const char *addr, *pw;
        int want;
    } auth[] = {
        {"demo@example.test", "secret", 1}, {"Demo@EXAMPLE.test", "secret", 1},
        {"demo@example.test", "Secret", 0}, {"demo@example.test", "", 0},
        {"demo@example.test", NULL, 0},     {"ghost@example.test", "secret", 0},
        {"locked@other.test", "", 0},       {"locked@other.test", "!", 0},
        {"bob@example.test", "hunter2", 1},
    };
    for (size_t i = 0; i < sizeof auth / sizeof auth[0]; i++)
        CHECK(store_mailbox_auth(st, auth[i].addr, auth[i].pw) == auth[i].want, "auth %zu %s", i,
              auth[i].addr);
    CHECK(store_mailbox_passwd(st, "demo@example.test", "new pw", err, sizeof err) == 0, "%s", err);
    CHECK(store_mailbox_auth(st, "demo@example.test", "secret") == 0, "old password still works");
    CHECK(store_mailbox_auth(st, "demo@example.test", "new pw") == 1, "new password");
    char hash2[256];
    db_password(path, "demo@example.test", hash2, sizeof hash2);
    CHECK(strncmp(hash2, "$y$", 3) == 0 && strcmp(hash, hash2) != 0, "rehash");

    /* Deleting: aliases keep a domain alive too; then everything goes. */
    CHECK(store_mailbox_del(st, "demo@example.test", err, sizeof err) == 0, "%s", err);
    CHECK(store_mailbox_del(st, "BOB@example.test", err, sizeof err) == 0, "%s", err);
    CHECK(store_domain_del(st, "example.test", err, sizeof err) == -1 &&
              strstr(err, "still has 2 aliases") != NULL,
          "del with aliases: %s", err);
    CHECK(store_alias_del(st, "info@example.test", "demo@example.test", err, sizeof err) == 0, "%s",
          err);
    CHECK(store_domain_del(st, "example.test", err, sizeof err) == -1 &&
              strstr(err, "still has 1 alias; delete it first") != NULL,
          "del with 1 alias: %s", err);
    CHECK(store_alias_del(st, "info@example.test", NULL, err, sizeof err) == 0, "%s", err);
    CHECK(store_domain_del(st, "Example.test", err, sizeof err) == 0, "%s", err);
    CHECK(store_domain_get(st, "example.test", NULL) == 0, "domain still there");
    store_free(st);

    /* Reopen without create: schema is there, data persisted. */
    st = store_open(path, 0, NULL, err, sizeof err);
    CHECK(st != NULL, "reopen: %s", err);
    if (st) {
        CHECK(store_mailbox_get(st, "locked@other.test", NULL) == 1, "persisted");
        /* A second connection (the CLI next to the daemon) sees writes at once. */
        struct store *st2 = store_open(path, 1, NULL, err, sizeof err);
        CHECK(st2 != NULL, "second open: %s", err);
        if (st2) {
            CHECK(store_domain_add(st2, "third.test", err, sizeof err) == 0, "%s", err);
            CHECK(store_domain_get(st, "third.test", NULL) == 1, "not visible");
            store_free(st2);
        }
        pthread_t th[4];
        struct thr targ[4];
        for (int i = 0; i < 4; i++) {
            targ[i] = (struct thr){.st = st};
            pthread_create(&th[i], NULL, thread_main, &targ[i]);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            CHECK(targ[i].bad == 0, "thread %d: %d bad results", i, targ[i].bad);
        }
        store_free(st);
    }

    /* A file that is not a kurier directory is refused without create. */
    char *empty = xasprintf("%s/empty.db", dir);
    sqlite3 *db;
    if (sqlite3_open(empty, &db) == SQLITE_OK) {
        sqlite3_exec(db, "CREATE TABLE x(y)", NULL, NULL, NULL);
        sqlite3_close(db);
    }
    st = store_open(empty, 0, NULL, err, sizeof err);
    CHECK(st == NULL && strstr(err, "not a kurier directory") != NULL, "empty db: %s", err);
    store_free(st);
    store_free(NULL);
    free(empty);

    test_sender_binding(dir);
    test_migration_v1(dir);

done : {
    char *cmd = xasprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", dir);
    free(cmd);
}
    free(path);
    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0;
}
