/* test_route.c: route_resolve() over a temp SQLite directory: mailboxes, remote
 * domains, alias expansion (recursive, dedup, loops, depth), catch-all, postmaster. */
#include "core/compat.h"

#include <sqlite3.h>
#include <unistd.h>

#include "core/core.h"
#include "route/route.h"
#include "store/store.h"

static int passed, failed;

struct setup {
    char kind; /* d domain, m mailbox, a alias, c catch-all */
    const char *a, *b;
    long long q;
};

static const struct setup setup[] = {
    {'d', "example.test", NULL, 0},
    {'d', "catch.test", NULL, 0},
    {'d', "far.test", NULL, 0},
    {'m', "demo@example.test", "pw", 1024},
    {'m', "bob@example.test", "pw", 0},
    {'m', "both@example.test", "pw", 0},
    {'m', "all@catch.test", "pw", 7},
    {'m', "self@example.test", "pw", 0},
    /* plain alias, list with remote member, nested, dedup */
    {'a', "info@example.test", "demo@example.test", 0},
    {'a', "team@example.test", "demo@example.test", 0},
    {'a', "team@example.test", "bob@example.test", 0},
    {'a', "team@example.test", "friend@remote.example", 0},
    {'a', "team@example.test", "info@example.test", 0},
    /* alias wins over mailbox */
    {'a', "both@example.test", "bob@example.test", 0},
    /* loops */
    {'a', "loop1@example.test", "loop2@example.test", 0},
    {'a', "loop2@example.test", "loop1@example.test", 0},
    {'a', "selfloop@example.test", "selfloop@example.test", 0},
    /* keep a copy: alias listing itself */
    {'a', "self@example.test", "self@example.test", 0},
    {'a', "self@example.test", "copy@remote.example", 0},
    /* stale target skipped; all-stale is NOUSER */
    {'a', "stale@example.test", "gone@example.test", 0},
    {'a', "stale@example.test", "bob@example.test", 0},
    {'a', "dead@example.test", "gone@example.test", 0},
    /* forward only to remote */
    {'a', "fwd@example.test", "someone@remote.example", 0},
    /* c0 -> ... -> c10 -> bob: 11 alias levels, too deep; from c1 it is 10 */
    {'a', "c0@example.test", "c1@example.test", 0},
    {'a', "c1@example.test", "c2@example.test", 0},
    {'a', "c2@example.test", "c3@example.test", 0},
    {'a', "c3@example.test", "c4@example.test", 0},
    {'a', "c4@example.test", "c5@example.test", 0},
    {'a', "c5@example.test", "c6@example.test", 0},
    {'a', "c6@example.test", "c7@example.test", 0},
    {'a', "c7@example.test", "c8@example.test", 0},
    {'a', "c8@example.test", "c9@example.test", 0},
    {'a', "c9@example.test", "c10@example.test", 0},
    {'a', "c10@example.test", "bob@example.test", 0},
    /* catch-all: local part; far.test's catch-all is a remote address */
    {'c', "catch.test", "all", 0},
    {'c', "far.test", "elsewhere@remote.example", 0},
    {'a', "alias@catch.test", "bob@example.test", 0},
};

struct want {
    const char *addr;
    enum route_kind kind;
    const char *targets; /* "L:addr R:addr ..." in order, NULL = no targets */
    int pm;              /* index into pms: the configured postmaster, 0 = none */
};

/* RFC 5321 4.5.1: where postmaster@ goes without an alias, mailbox or catch-all */
static const struct route_postmaster pms[] = {
    {NULL, NULL},
    {"mx.example.test", "Bob@example.test"},
    {"mx.example.test", "root@mx.example.test"},    /* hostname not hosted: would loop */
    {"mx.example.test", "postmaster@example.test"}, /* itself */
    {"mx.example.test", "admin@remote.example"},
};

static const struct want wants[] = {
    {"demo@example.test", ROUTE_LOCAL, "L:demo@example.test", 0},
    {"DEMO@Example.TEST", ROUTE_LOCAL, "L:demo@example.test", 0},
    {"ghost@example.test", ROUTE_NOUSER, NULL, 0},
    {"someone@remote.example", ROUTE_REMOTE, "R:someone@remote.example", 0},
    {"Someone@Remote.Example", ROUTE_REMOTE, "R:someone@remote.example", 0},
    {"info@example.test", ROUTE_LOCAL, "L:demo@example.test", 0},
    {"team@example.test", ROUTE_LOCAL,
     "L:bob@example.test L:demo@example.test R:friend@remote.example", 0},
    {"both@example.test", ROUTE_LOCAL, "L:bob@example.test", 0},
    {"loop1@example.test", ROUTE_LOOP, NULL, 0},
    {"selfloop@example.test", ROUTE_NOUSER, NULL, 0},
    {"self@example.test", ROUTE_LOCAL, "R:copy@remote.example L:self@example.test", 0},
    {"stale@example.test", ROUTE_LOCAL, "L:bob@example.test", 0},
    {"dead@example.test", ROUTE_NOUSER, NULL, 0},
    {"fwd@example.test", ROUTE_LOCAL, "R:someone@remote.example", 0},
    {"c1@example.test", ROUTE_LOCAL, "L:bob@example.test", 0},
    {"c0@example.test", ROUTE_LOOP, NULL, 0},
    {"anything@catch.test", ROUTE_LOCAL, "L:all@catch.test", 0},
    {"all@catch.test", ROUTE_LOCAL, "L:all@catch.test", 0},
    {"alias@catch.test", ROUTE_LOCAL, "L:bob@example.test", 0},
    {"postmaster@catch.test", ROUTE_LOCAL, "L:all@catch.test", 0},
    {"postmaster@example.test", ROUTE_NOUSER, NULL, 0},
    {"postmaster@example.test", ROUTE_LOCAL, "L:bob@example.test", 1},
    {"PostMaster@Example.Test", ROUTE_LOCAL, "L:bob@example.test", 1},
    {"postmaster@mx.example.test", ROUTE_LOCAL, "L:bob@example.test", 1},
    {"postmaster@far.test", ROUTE_LOCAL, "R:elsewhere@remote.example", 1},
    {"postmaster@catch.test", ROUTE_LOCAL, "L:all@catch.test", 1},
    {"postmaster@remote.example", ROUTE_REMOTE, "R:postmaster@remote.example", 1},
    {"root@mx.example.test", ROUTE_REMOTE, "R:root@mx.example.test", 1},
    {"ghost@example.test", ROUTE_NOUSER, NULL, 1},
    {"postmaster@example.test", ROUTE_NOUSER, NULL, 2},
    {"postmaster@mx.example.test", ROUTE_NOUSER, NULL, 2},
    {"postmaster@example.test", ROUTE_LOOP, NULL, 3},
    {"postmaster@example.test", ROUTE_LOCAL, "R:admin@remote.example", 4},
    {"whoever@far.test", ROUTE_LOCAL, "R:elsewhere@remote.example", 0},
    {"nodomain", ROUTE_NOUSER, NULL, 0},
    {"", ROUTE_NOUSER, NULL, 0},
};

static void check(struct store *st, size_t i, const struct want *w)
{
    struct route_result r;
    enum route_kind k = route_resolve(st, w->pm ? &pms[w->pm] : NULL, w->addr, &r);
    char got[1024] = "";
    size_t off = 0;
    for (size_t j = 0; j < r.ntargets && off < sizeof got; j++) {
        int n = snprintf(got + off, sizeof got - off, "%s%c:%s", j ? " " : "",
                         r.targets[j].kind == ROUTE_LOCAL ? 'L' : 'R', r.targets[j].addr);
        if (n < 0) break;
        off += (size_t)n;
    }
    int ok = k == w->kind && r.kind == w->kind && strcmp(got, w->targets ? w->targets : "") == 0;
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL %zu %s: kind %d (result %d) want %d; targets \"%s\" want \"%s\"\n", i, w->addr,
               k, r.kind, w->kind, got, w->targets ? w->targets : "");
    }
    route_result_clear(&r);
}

int main(void)
{
    log_init("stderr", "test_route", LOG_LV_ERR);
    char tmpl[] = "/tmp/kurier-test-route-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) {
        perror("mkdtemp");
        return 1;
    }
    char *path = xasprintf("%s/kurier.db", dir);
    char err[256];
    struct store *st = store_open(path, 1, NULL, err, sizeof err);
    if (!st) {
        printf("FAIL open: %s\n0 passed, 1 failed\n", err);
        return 1;
    }
    for (size_t i = 0; i < sizeof setup / sizeof setup[0]; i++) {
        const struct setup *s = &setup[i];
        int r = -1;
        if (s->kind == 'd') r = store_domain_add(st, s->a, err, sizeof err);
        if (s->kind == 'm') r = store_mailbox_add(st, s->a, s->b, s->q, err, sizeof err);
        if (s->kind == 'a') r = store_alias_add(st, s->a, s->b, err, sizeof err);
        if (s->kind == 'c') r = store_domain_set_catchall(st, s->a, s->b, err, sizeof err);
        if (r != 0) {
            failed++;
            printf("FAIL setup %zu %s: %s\n", i, s->a, err);
        }
    }
    for (size_t i = 0; i < sizeof wants / sizeof wants[0]; i++)
        check(st, i, &wants[i]);

    /* Quota is carried to the target. */
    struct route_result r;
    if (route_resolve(st, NULL, "info@example.test", &r) == ROUTE_LOCAL && r.ntargets == 1 &&
        r.targets[0].quota == 1024)
        passed++;
    else {
        failed++;
        printf("FAIL quota through alias\n");
    }
    route_result_clear(&r);
    route_result_clear(&r); /* twice is harmless */

    /* A closed/broken database gives ROUTE_ERROR: drop the tables under it. */
    sqlite3 *db;
    if (sqlite3_open(path, &db) == SQLITE_OK &&
        sqlite3_exec(db, "DROP TABLE aliases", NULL, NULL, NULL) == SQLITE_OK) {
        enum route_kind k = route_resolve(st, NULL, "demo@example.test", &r);
        if (k == ROUTE_ERROR && r.ntargets == 0)
            passed++;
        else {
            failed++;
            printf("FAIL db error gave %d\n", k);
        }
        route_result_clear(&r);
    } else {
        failed++;
        printf("FAIL cannot drop table\n");
    }
    sqlite3_close(db);

    store_free(st);
    char *cmd = xasprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", dir);
    free(cmd);
    free(path);
    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0;
}
