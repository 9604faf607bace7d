/* greylist.c: greylisting at RCPT (docs/inbound.md): a new triplet (client network,
 * sender, recipient) is refused with 451 until the client retries after the delay.
 * The state lives in the directory (store_grey_check); this file picks the triplet,
 * applies the allowlists of the config and purges expired entries on a timer. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>

#include "core/metrics.h"
#include "policy/greylist.h"
#include "store/store.h"

struct greylist_job {
    struct work_job *job;
    struct event *ev; /* defers an answer decided on the loop (allowlists) */
    struct store *store;
    struct store_grey_params params;
    char net[64];
    char *sender, *rcpt, *why;
    char client[64];
    struct store_grey_result res;
    int rc;                  /* store_grey_check's answer */
    int shared;              /* the state is in Redis (docs/cluster.md) */
    int fail_open;           /* ... and when unreachable: pass (state.greylist_fail open) */
    struct policy_verdict v; /* the answer */
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
};

void policy_greylist_net(const struct sockaddr_storage *ss, char *out, size_t outsize)
{
    unsigned char a[16];
    char txt[INET6_ADDRSTRLEN] = "?";
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
    if (ss->ss_family == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
        memcpy(a, &s6->sin6_addr, 16);
        memset(a + 8, 0, 8);
        inet_ntop(AF_INET6, a, txt, sizeof txt);
        snprintf(out, outsize, "%s/64", txt);
        return;
    }
    if (ss->ss_family == AF_INET6)
        memcpy(a, (const unsigned char *)&s6->sin6_addr + 12, 4);
    else if (ss->ss_family == AF_INET)
        memcpy(a, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    else
        memset(a, 0, 4);
    a[3] = 0;
    inet_ntop(AF_INET, a, txt, sizeof txt);
    snprintf(out, outsize, "%s/24", txt);
}

/* 1 when domain is d or below one of the space-separated list's domains. */
static int domain_listed(const char *list, const char *d)
{
    size_t dl = strlen(d);
    for (const char *p = list; p && *p;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n && n <= dl && strncasecmp(d + dl - n, p, n) == 0 && (n == dl || d[dl - n - 1] == '.'))
            return 1;
        p += n;
    }
    return 0;
}

static void job_free(struct greylist_job *j)
{
    if (j->ev) event_free(j->ev);
    free(j->sender);
    free(j->rcpt);
    free(j->why);
    free(j);
}

static void answer(struct greylist_job *j)
{
    struct policy_verdict v = j->v;
    void (*done)(void *, const struct policy_verdict *) = j->done;
    void *arg = j->arg;
    job_free(j);
    done(arg, &v);
}

static void answer_ev(evutil_socket_t fd, short what, void *arg)
{
    answer(arg);
}

/* Worker thread. */
static void grey_run(void *arg)
{
    struct greylist_job *j = arg;
    j->rc = store_grey_check(j->store, j->net, j->sender, j->rcpt, &j->params,
                             (long long)time(NULL), &j->res);
}

/* Loop thread: the verdict, and one log line for each decision that matters. */
static void grey_done(void *arg)
{
    struct greylist_job *j = arg;
    j->job = NULL;
    struct policy_verdict *v = &j->v;
    v->kind = POLICY_PASS;
    if (j->rc != 0 && j->fail_open) {
        /* docs/cluster.md: Redis unreachable, greylisting fails open */
        log_warn("greylist",
                 "passed client=[%s] net=%s from=<%s> to=<%s>: shared state "
                 "unreachable (greylist_fail open)",
                 j->client, j->net, j->sender, j->rcpt);
        metrics_add(MET_STATE_DOWN, 1, "greylist");
    } else if (j->rc != 0) {
        if (j->shared) {
            log_warn("greylist",
                     "deferred client=[%s] net=%s from=<%s> to=<%s>: shared state "
                     "unreachable (greylist_fail closed)",
                     j->client, j->net, j->sender, j->rcpt);
            metrics_add(MET_STATE_DOWN, 1, "greylist");
        }
        policy_verdict_set(v, POLICY_TEMPFAIL, 451, "4.3.0",
                           "Temporary failure of the greylisting database, try again later");
    } else if (j->res.greylisted) {
        policy_verdict_set(v, POLICY_GREYLIST, 451, "4.7.1", "Greylisted, try again in %d seconds",
                           j->res.wait);
        log_info("greylist",
                 "greylisted client=[%s] net=%s from=<%s> to=<%s> wait=%ds reason=\"%s\"",
                 j->client, j->net, j->sender, j->rcpt, j->res.wait, j->why);
    } else if (j->res.first_pass) {
        log_info("greylist", "passed client=[%s] net=%s from=<%s> to=<%s>", j->client, j->net,
                 j->sender, j->rcpt);
    }
    answer(j);
}

struct greylist_job *greylist_triplet_start(const struct policy_ctx *ctx, const char *why,
                                            void (*done)(void *, const struct policy_verdict *),
                                            void *arg)
{
    const struct kconf *c = ctx->conf;
    struct greylist_job *j = xcalloc(1, sizeof *j);
    j->store = ctx->store;
    j->params = (struct store_grey_params){.delay = c->grey_delay,
                                           .retry_window = c->grey_retry_window,
                                           .lifetime = c->grey_lifetime,
                                           .auto_allowlist = c->grey_auto_allowlist};
    policy_greylist_net(&ctx->client_sa, j->net, sizeof j->net);
    j->shared = store_shared(j->store);
    j->fail_open = j->shared && c->state_greylist_fail == CONF_FAIL_OPEN;
    str_copy(j->client, ctx->client_addr, sizeof j->client);
    j->sender = ctx->sender ? addr_format(ctx->sender) : xstrdup("");
    j->rcpt = ctx->rcpt ? addr_format(ctx->rcpt) : xstrdup("");
    j->why = xstrdup(why ? why : "");
    j->done = done;
    j->arg = arg;
    j->v.kind = POLICY_PASS;
    int allowed = 0;
    for (size_t i = 0; i < c->ngrey_allow_nets && !allowed; i++)
        allowed = conf_net_match(&c->grey_allow_nets[i], (const struct sockaddr *)&ctx->client_sa);
    if (!allowed && ctx->sender && ctx->sender->domain)
        allowed = domain_listed(c->grey_allow_domains, ctx->sender->domain);
    if (allowed) {
        j->ev = event_new(policy_loop(), -1, 0, answer_ev, j);
        event_active(j->ev, EV_TIMEOUT, 0);
        return j;
    }
    j->job = work_submit(grey_run, grey_done, j);
    return j;
}

void greylist_triplet_cancel(struct greylist_job *j)
{
    if (!j) return;
    if (j->job) work_cancel(j->job);
    job_free(j);
}

/* --- the check ------------------------------------------------------------------ */

/* Mode suspicious: the checks before this one (DNS lists, ...) added up to the
 * listener's greylist_score (0: never by score). A failed sender verification
 * (sender_verify.c) greylists in this mode on its own. */
static int suspicious(const struct policy_ctx *ctx)
{
    int t = ctx->listener ? ctx->listener->greylist_score : 0;
    return t > 0 && ctx->score >= t;
}

struct grey_check {
    struct greylist_job *triplet;
    struct event *ev;
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
};

static void check_pass(evutil_socket_t fd, short what, void *arg)
{
    struct grey_check *g = arg;
    struct policy_verdict v = {.kind = POLICY_PASS};
    void (*done)(void *, const struct policy_verdict *) = g->done;
    void *darg = g->arg;
    event_free(g->ev);
    free(g);
    done(darg, &v);
}

static void check_triplet_done(void *arg, const struct policy_verdict *v)
{
    struct grey_check *g = arg;
    void (*done)(void *, const struct policy_verdict *) = g->done;
    void *darg = g->arg;
    free(g);
    done(darg, v);
}

static void *grey_start(const struct policy_ctx *ctx, enum policy_stage stage,
                        void (*done)(void *, const struct policy_verdict *), void *arg)
{
    struct grey_check *g = xcalloc(1, sizeof *g);
    g->done = done;
    g->arg = arg;
    int mode = ctx->listener ? ctx->listener->greylist : CONF_GREY_OFF;
    int judge = !ctx->trusted && ctx->rcpt &&
                (mode == CONF_GREY_ALWAYS || (mode == CONF_GREY_SUSPICIOUS && suspicious(ctx)));
    if (judge) {
        g->triplet =
            greylist_triplet_start(ctx, mode == CONF_GREY_ALWAYS ? "greylist always" : "suspicious",
                                   check_triplet_done, g);
    } else {
        g->ev = event_new(policy_loop(), -1, 0, check_pass, g);
        event_active(g->ev, EV_TIMEOUT, 0);
    }
    return g;
}

static void grey_cancel(void *handle)
{
    struct grey_check *g = handle;
    greylist_triplet_cancel(g->triplet);
    if (g->ev) event_free(g->ev);
    free(g);
}

const struct policy_check policy_check_greylist = {
    .name = "greylist",
    .stages = 1u << POLICY_RCPT,
    .judges_client_ip = 1,
    .acts_on_score = 1,
    .start = grey_start,
    .cancel = grey_cancel,
};

/* --- purging expired entries ------------------------------------------------------ */

static struct {
    struct event *ev;
    struct store *store;
    const struct kconf *const *conf;
    struct work_job *job;
    struct store_grey_params params;
} purge;

static void purge_arm(void)
{
    int secs = (*purge.conf)->grey_purge_interval;
    evtimer_add(purge.ev, &(struct timeval){.tv_sec = secs > 0 ? secs : 3600});
}

static void purge_run(void *arg)
{
    if (store_grey_purge(purge.store, &purge.params, (long long)time(NULL)) != 0)
        log_warn("greylist", "purging expired greylisting entries failed (database error)");
}

static void purge_done(void *arg)
{
    purge.job = NULL;
    log_debug("greylist", "expired greylisting entries purged");
    purge_arm();
}

static void purge_fire(evutil_socket_t fd, short what, void *arg)
{
    const struct kconf *c = *purge.conf;
    purge.params = (struct store_grey_params){.delay = c->grey_delay,
                                              .retry_window = c->grey_retry_window,
                                              .lifetime = c->grey_lifetime,
                                              .auto_allowlist = c->grey_auto_allowlist};
    purge.job = work_submit(purge_run, purge_done, NULL);
}

void policy_greylist_purge_start(struct event_base *base, struct store *st,
                                 const struct kconf *const *conf)
{
    purge.store = st;
    purge.conf = conf;
    purge.ev = evtimer_new(base, purge_fire, NULL);
    /* once soon after start (entries expired while we were down), then every interval */
    evtimer_add(purge.ev, &(struct timeval){.tv_sec = 1});
}

void policy_greylist_purge_stop(void)
{
    if (purge.job) work_cancel(purge.job);
    purge.job = NULL;
    if (purge.ev) event_free(purge.ev);
    purge.ev = NULL;
}
