/* auth.c: the daemon's AUTH check. The brute-force limits are asked and fed on the
 * loop; the backend (directory or Dovecot) runs on a worker; a failure is answered
 * only after the limiter's delay. The SMTP dialogue around it is smtp/server_auth.c's. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <strings.h>

#include "auth/auth.h"
#include "core/metrics.h"
#include "store/store.h"

struct auth {
    struct event_base *base;
    struct store *store;
    struct dovecot_auth *dovecot; /* auth backend dovecot (chosen at start-up), else NULL */
    struct auth_limits *limits;
    char **locked; /* lower case; few: a compromise is rare */
    size_t nlocked;
    void (*observe)(void *, const char *, const char *, int);
    void *observe_arg;
};

struct auth_check {
    struct auth *a;
    const struct kconf *conf;
    struct work_job *job;
    struct event *timer; /* delays the answer after failures */
    char ip[64];
    char *user, *pass;
    enum auth_result result;
    int shared_down; /* the shared failure counters were unreachable (state.auth_fail) */
    void (*done)(void *, enum auth_result);
    void *arg;
};

struct auth *auth_new(struct event_base *base, const struct kconf *conf, struct store *store)
{
    struct auth *a = xcalloc(1, sizeof *a);
    a->base = base;
    a->store = store;
    if (conf->auth_backend == CONF_AUTH_DOVECOT)
        a->dovecot = dovecot_auth_new(conf->auth_dovecot_socket);
    a->limits = auth_limits_new();
    return a;
}

void auth_free(struct auth *a)
{
    if (!a) return;
    auth_limits_free(a->limits);
    dovecot_auth_free(a->dovecot);
    for (size_t i = 0; i < a->nlocked; i++)
        free(a->locked[i]);
    free(a->locked);
    free(a);
}

struct auth_limits *auth_limits_of(struct auth *a)
{
    return a->limits;
}

static ssize_t lock_find(struct auth *a, const char *account)
{
    for (size_t i = 0; i < a->nlocked; i++)
        if (strcasecmp(a->locked[i], account) == 0) return (ssize_t)i;
    return -1;
}

int auth_lock_set(struct auth *a, const char *account, int locked)
{
    ssize_t i = lock_find(a, account);
    if (locked && i < 0) {
        a->locked = xrealloc(a->locked, (a->nlocked + 1) * sizeof *a->locked);
        a->locked[a->nlocked] = xstrdup(account);
        str_lower(a->locked[a->nlocked++]);
        return 1;
    }
    if (!locked && i >= 0) {
        free(a->locked[i]);
        a->locked[i] = a->locked[--a->nlocked];
        return 1;
    }
    return 0;
}

int auth_locked(struct auth *a, const char *account)
{
    return lock_find(a, account) >= 0;
}

void auth_set_observer(struct auth *a,
                       void (*observe)(void *arg, const char *user, const char *ip, int ok),
                       void *arg)
{
    a->observe = observe;
    a->observe_arg = arg;
}

static void check_free(struct auth_check *c)
{
    if (c->timer) event_free(c->timer);
    if (c->pass) explicit_bzero(c->pass, strlen(c->pass));
    free(c->pass);
    free(c->user);
    free(c);
}

static void check_answer(evutil_socket_t fd, short what, void *arg)
{
    struct auth_check *c = arg;
    void (*done)(void *, enum auth_result) = c->done;
    void *darg = c->arg;
    enum auth_result result = c->result;
    check_free(c);
    done(darg, result);
}

static void check_backend(struct auth_check *c);

static void check_answer_in(struct auth_check *c, double seconds)
{
    c->timer = evtimer_new(c->a->base, check_answer, c);
    struct timeval tv = {.tv_sec = (time_t)seconds,
                         .tv_usec = (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    evtimer_add(c->timer, &tv);
}

static void check_run(void *arg)
{
    struct auth_check *c = arg;
    /* with a shared state, the failures of every node count (docs/cluster.md) */
    struct store *st = c->a->store;
    char key[INET6_ADDRSTRLEN + 4], user[320];
    int shared = store_shared(st);
    if (shared) {
        auth_limits_addr_key(c->ip, key, sizeof key);
        str_copy(user, c->user, sizeof user);
        str_lower(user);
        int b = store_authfail_blocked(st, key, user);
        if (b == 1) {
            c->result = AUTH_BLOCKED;
            return;
        }
        c->shared_down = b < 0;
        if (c->shared_down && c->conf->state_auth_fail == CONF_FAIL_CLOSED) {
            c->result = AUTH_TEMPFAIL;
            return;
        }
    }
    check_backend(c);
    if (shared && !c->shared_down && c->result != AUTH_TEMPFAIL)
        store_authfail_record(st, key, user, c->result == AUTH_OK, c->conf->auth_window,
                              c->conf->auth_block_time, c->conf->auth_max_failures_address,
                              c->conf->auth_max_failures);
}

static void check_backend(struct auth_check *c)
{
    if (c->a->dovecot) {
        char err[512];
        c->result = dovecot_auth_check(c->a->dovecot, c->user, c->pass, c->ip, err, sizeof err);
        if (c->result == AUTH_TEMPFAIL) log_warn("kurierd", "AUTH from [%s]: %s", c->ip, err);
    } else {
        c->result = store_mailbox_auth(c->a->store, c->user, c->pass);
    }
}

static void check_ran(void *arg)
{
    struct auth_check *c = arg;
    c->job = NULL;
    double delay = 0;
    if (c->shared_down) {
        metrics_add(MET_STATE_DOWN, 1, "auth");
        log_warn("auth", "AUTH from [%s]: shared failure counters unreachable (auth_fail %s)",
                 c->ip, c->conf->state_auth_fail == CONF_FAIL_CLOSED ? "closed" : "open");
    }
    if (c->result != AUTH_TEMPFAIL && c->result != AUTH_BLOCKED) {
        delay = auth_limits_record(c->a->limits, c->conf, c->ip, c->user, c->result == AUTH_OK,
                                   time_mono());
        if (c->a->observe) c->a->observe(c->a->observe_arg, c->user, c->ip, c->result == AUTH_OK);
    }
    if (c->result == AUTH_OK && auth_locked(c->a, c->user)) c->result = AUTH_LOCKED;
    check_answer_in(c, delay);
}

struct auth_check *auth_check_start(struct auth *a, const struct kconf *conf, const char *ip,
                                    const char *user, const char *pass,
                                    void (*done)(void *arg, enum auth_result result), void *arg)
{
    struct auth_check *c = xcalloc(1, sizeof *c);
    c->a = a;
    c->conf = conf;
    str_copy(c->ip, ip, sizeof c->ip);
    c->user = xstrdup(user);
    c->pass = xstrdup(pass);
    c->done = done;
    c->arg = arg;
    if (auth_limits_blocked(a->limits, conf, c->ip, user, time_mono())) {
        c->result = AUTH_BLOCKED;
        check_answer_in(c, 0);
    } else {
        c->job = work_submit(check_run, check_ran, c);
    }
    return c;
}

void auth_check_cancel(struct auth_check *c)
{
    if (c->job) work_cancel(c->job);
    check_free(c);
}
