/* test_store.c: the SQLite directory: domain/mailbox/alias CRUD, errors, password
 * hashing and auth, case folding, schema reopen. Uses a temp dir, no network. */
#include "core/compat.h"

#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "store/store.h"

static int passed, failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            passed++;                                                                              \
        } else {                                                                                   \
            failed++;                                                                              \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                 \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

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

done : {
    char *cmd = xasprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", dir);
    free(cmd);
}
    free(path);
    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0;
}
