/* test_auth.c: the daemon's AUTH check (auth/auth.c) on a real SQLite directory, a
 * real loop and worker pool: the answers as enum auth_result, the brute-force block
 * answered without asking the backend, cancelling, and a Dovecot socket that is not
 * there. Also the DSN-trust rule (policy/dsn_trust.c) as a table. No network. */
#include "core/compat.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <unistd.h>

#include "auth/auth.h"
#include "core/core.h"
#include "policy/policy.h"
#include "store/store.h"

#include "check.h"

struct answer {
    int n;
    enum auth_result r;
    struct event_base *base;
};

static void answered(void *arg, enum auth_result r)
{
    struct answer *a = arg;
    a->n++;
    a->r = r;
    event_base_loopbreak(a->base);
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {}

/* One check, run until it answers (or 30 s pass: a safety net, not a timing test). */
static enum auth_result check(struct event_base *base, struct auth *au, const struct kconf *c,
                              const char *ip, const char *user, const char *pass)
{
    struct answer a = {.base = base};
    struct auth_check *h = auth_check_start(au, c, ip, user, pass, answered, &a);
    CHECK(h != NULL && a.n == 0, "answered inside auth_check_start");
    double deadline = time_mono() + 30;
    /* a tick, so that the loop wakes and the deadline is checked even if nothing else
     * happens (a lost completion then fails the test instead of hanging it) */
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    event_add(tick, &(struct timeval){.tv_sec = 1});
    while (a.n == 0 && time_mono() < deadline)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(tick);
    CHECK(a.n == 1, "%s: %d answers", user, a.n);
    return a.n == 1 ? a.r : (enum auth_result)99;
}

static void test_directory(struct event_base *base, struct store *st)
{
    struct kconf c = {0};
    c.auth_backend = CONF_AUTH_DIRECTORY;
    c.auth_max_failures = 2;
    c.auth_max_failures_address = 100;
    c.auth_window = 900;
    c.auth_block_time = 3600;
    c.auth_delay_max = 0; /* failures are answered at once */
    struct auth *au = auth_new(base, &c, st);

    CHECK(check(base, au, &c, "192.0.2.1", "demo@example.test", "secret") == AUTH_OK, "good");
    CHECK(check(base, au, &c, "192.0.2.1", "DEMO@example.test", "secret") == AUTH_OK,
          "case-insensitive user");
    CHECK(check(base, au, &c, "192.0.2.1", "demo@example.test", "wrong") == AUTH_DENIED, "wrong");
    CHECK(check(base, au, &c, "192.0.2.1", "nobody@example.test", "secret") == AUTH_DENIED,
          "unknown user");
    CHECK(check(base, au, &c, "192.0.2.1", "demo@example.test", "wrong") == AUTH_DENIED,
          "second failure");
    /* two failures for the pair: blocked, even with the right password */
    CHECK(check(base, au, &c, "192.0.2.1", "demo@example.test", "secret") == AUTH_BLOCKED,
          "blocked pair");
    CHECK(check(base, au, &c, "192.0.2.2", "demo@example.test", "secret") == AUTH_OK,
          "another address is not blocked");
    CHECK(auth_limits_clear(auth_limits_of(au), "192.0.2.1", time_mono()) == 1, "clear");
    CHECK(check(base, au, &c, "192.0.2.1", "demo@example.test", "secret") == AUTH_OK,
          "good after clear");

    /* cancelled before the answer: done never runs */
    struct answer a = {.base = base};
    struct auth_check *h =
        auth_check_start(au, &c, "192.0.2.3", "demo@example.test", "secret", answered, &a);
    auth_check_cancel(h);
    /* one more check runs the loop past where the cancelled one would have answered */
    CHECK(check(base, au, &c, "192.0.2.3", "demo@example.test", "secret") == AUTH_OK, "after");
    CHECK(a.n == 0, "cancelled check answered");
    auth_free(au);
}

static void test_dovecot_missing(struct event_base *base, const char *dir)
{
    struct kconf c = {0};
    c.auth_backend = CONF_AUTH_DOVECOT;
    char *sock = xasprintf("%s/no-such-socket", dir);
    c.auth_dovecot_socket = sock;
    c.auth_max_failures = 2;
    c.auth_max_failures_address = 100;
    c.auth_window = 900;
    c.auth_block_time = 3600;
    struct auth *au = auth_new(base, &c, NULL);
    for (int i = 0; i < 3; i++) /* a temporary failure is not counted against the client */
        CHECK(check(base, au, &c, "192.0.2.1", "demo@example.test", "secret") == AUTH_TEMPFAIL,
              "dovecot missing, try %d", i);
    auth_free(au);
    free(sock);
}

static void test_dsn_trust(void)
{
    static const struct {
        int null_sender, trusted;
        int want;
        const char *why;
    } cases[] = {
        {0, 1, 1, NULL},
        {0, 0, 0, "untrusted sender"},
        {1, 1, 0, "null sender"},
        {1, 0, 0, "null sender"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = "unset";
        int r = policy_dsn_allowed(cases[i].null_sender, cases[i].trusted, &why);
        CHECK(r == cases[i].want, "dsn case %zu: %d", i, r);
        CHECK(cases[i].why ? why && strcmp(why, cases[i].why) == 0 : why == NULL,
              "dsn case %zu: why %s", i, why ? why : "(null)");
        CHECK(policy_dsn_allowed(cases[i].null_sender, cases[i].trusted, NULL) == cases[i].want,
              "dsn case %zu without why", i);
    }
    CHECK(policy_dsn_trusted("demo@example.test", 0) == 1, "authenticated");
    CHECK(policy_dsn_trusted(NULL, 1) == 1, "trusted network");
    CHECK(policy_dsn_trusted(NULL, 0) == 0, "anyone else");
}

int main(void)
{
    char tmpl[] = "/tmp/kurier-test-auth-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) {
        perror("mkdtemp");
        return 1;
    }
    log_init("stderr", "kurier", LOG_LV_ERR);
    test_dsn_trust();

    char *path = xasprintf("%s/kurier.db", dir);
    char err[256];
    struct store *st = store_open(path, 1, NULL, err, sizeof err);
    CHECK(st != NULL, "open: %s", err);
    evthread_use_pthreads(); /* the workers wake the loop from their threads */
    struct event_base *base = event_base_new();
    CHECK(base && work_init(base, 2) == 0, "work_init");
    if (st && base) {
        CHECK(store_domain_add(st, "example.test", err, sizeof err) == 0, "domain: %s", err);
        CHECK(store_mailbox_add(st, "demo@example.test", "secret", 0, err, sizeof err) == 0,
              "mailbox: %s", err);
        test_directory(base, st);
        test_dovecot_missing(base, dir);
    }
    work_shutdown();
    if (base) event_base_free(base);
    store_free(st);
    free(path);
    char *cmd = xasprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", dir);
    free(cmd);
    return check_summary();
}
