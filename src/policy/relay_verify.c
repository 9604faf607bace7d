/* relay_verify.c: recipients of relay domains (transport DOMAIN { relay_domain on; }:
 * we are the MX in front of the domain's own server) are checked at RCPT with an SMTP
 * probe at that server (deliver/probe.c); the answers are remembered in the directory
 * database (store_verify_*, a TTL for each kind of answer) and purged on a timer.
 * Delivery of accepted mail is the queue's (route/: the transport's relay).
 * Forwards too (srs { verify_forward }): a recipient of ours that only forwards to one
 * remote address is probed at that address's server, so its refusal is our 550 at
 * RCPT rather than a bounce later (docs/forwarding.md); no answer lets it pass. */
#include "core/compat.h"

#include <event2/event.h>

#include "deliver/deliver.h"
#include "route/route.h"
#include "store/store.h"
#include "policy/policy.h"

#define KIND "rcpt"

struct rv {
    const struct kconf *conf; /* the session's: valid while the check runs */
    struct store *store;
    struct prober *prober;
    char *rcpt;
    int forward;  /* srs { verify_forward }: rcpt may be a forward of ours */
    char *target; /* the forward's target, probed instead of rcpt; NULL none */
    struct work_job *job;
    struct probe_req *probe;
    struct event *ev;
    int rc;                  /* store_verify_get's answer */
    struct store_verify ans; /* the cached answer, or the one to remember */
    struct policy_verdict v;
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
};

static void rv_free(struct rv *r)
{
    if (r->ev) event_free(r->ev);
    free(r->rcpt);
    free(r->target);
    free(r);
}

static void rv_answer(struct rv *r)
{
    struct policy_verdict v = r->v;
    void (*done)(void *, const struct policy_verdict *) = r->done;
    void *arg = r->arg;
    rv_free(r);
    done(arg, &v);
}

static void rv_answer_ev(evutil_socket_t fd, short what, void *arg)
{
    rv_answer(arg);
}

/* The verdict for an answer of the downstream server (fresh or remembered). */
static void verdict_from(struct rv *r, int ok, const char *text)
{
    if (ok)
        r->v = (struct policy_verdict){.kind = POLICY_PASS};
    else if (r->target)
        policy_verdict_set(&r->v, POLICY_REJECT, 550, "5.1.1",
                           "<%s>: Recipient address rejected: it forwards to <%s>, which is "
                           "undeliverable: %s",
                           r->rcpt, r->target, text);
    else
        policy_verdict_set(&r->v, POLICY_REJECT, 550, "5.1.1",
                           "<%s>: Recipient address rejected: undeliverable address: %s", r->rcpt,
                           text);
}

/* Worker thread: remember the answer. */
static void put_run(void *arg)
{
    struct rv *r = arg;
    if (store_verify_put(r->store, KIND, r->target ? r->target : r->rcpt, &r->ans) != 0)
        log_warn("relay_verify", "to=<%s>: cannot remember the probe's answer (database error)",
                 r->rcpt);
}

static void put_done(void *arg)
{
    struct rv *r = arg;
    r->job = NULL;
    rv_answer(r);
}

static void probed(void *arg, const struct probe_result *res)
{
    struct rv *r = arg;
    r->probe = NULL;
    static const char *const names[] = {"accepted", "refused", "unverified"};
    if (r->target)
        log_info("relay_verify", "probe to=<%s> forward_of=<%s> relay=%s result=%s (%s)", r->target,
                 r->rcpt, res->relay[0] ? res->relay : "none", names[res->status], res->text);
    else
        log_info("relay_verify", "probe to=<%s> relay=%s result=%s (%s)", r->rcpt,
                 res->relay[0] ? res->relay : "none", names[res->status], res->text);
    if (res->status == PROBE_TEMP && r->target) {
        /* a forward's target that cannot say now: the queue will try (and bounce) */
        rv_answer(r);
        return;
    }
    if (res->status == PROBE_TEMP) {
        /* not remembered: the next RCPT asks again */
        policy_verdict_set(&r->v, POLICY_TEMPFAIL, 450, "4.4.1",
                           "<%s>: Recipient address rejected: unverified address: %s; try again "
                           "later",
                           r->rcpt, res->text);
        rv_answer(r);
        return;
    }
    int ok = res->status == PROBE_OK;
    long long now = (long long)time(NULL);
    r->ans = (struct store_verify){
        .ok = ok,
        .code = res->code,
        .expires = now + (ok ? r->conf->verify_positive_ttl : r->conf->verify_negative_ttl),
    };
    if (snprintf(r->ans.text, sizeof r->ans.text, "host %s said: %s", res->relay, res->text) < 0)
        str_copy(r->ans.text, res->text, sizeof r->ans.text); /* a long text is cut */
    verdict_from(r, ok, r->ans.text);
    r->job = work_submit(put_run, put_done, r);
}

/* Worker thread: a remembered answer? */
static void lookup_run(void *arg)
{
    struct rv *r = arg;
    if (r->forward) {
        /* only an address that forwards to exactly one remote address, keeping no
         * copy; an SRS address goes back to a sender, who is not asked */
        struct route_result rr = {0};
        if (!srs_is_srs(r->rcpt, strcspn(r->rcpt, "@")) &&
            route_resolve(r->store, NULL, r->rcpt, &rr) == ROUTE_LOCAL && rr.ntargets == 1 &&
            rr.targets[0].kind == ROUTE_REMOTE && strcmp(rr.targets[0].addr, r->rcpt) != 0)
            r->target = xstrdup(rr.targets[0].addr);
        route_result_clear(&rr);
        if (!r->target) {
            r->rc = -2; /* nothing to probe */
            return;
        }
    }
    r->rc = store_verify_get(r->store, KIND, r->target ? r->target : r->rcpt, (long long)time(NULL),
                             &r->ans);
}

static void lookup_done(void *arg)
{
    struct rv *r = arg;
    r->job = NULL;
    if (r->rc == -2) {
        rv_answer(r);
        return;
    }
    if (r->rc > 0) {
        log_info("relay_verify", "to=<%s> result=%s (cached: %s)", r->rcpt,
                 r->ans.ok ? "accepted" : "refused", r->ans.text);
        verdict_from(r, r->ans.ok, r->ans.text);
        rv_answer(r);
        return;
    }
    if (r->rc < 0) /* the server behind us can still answer */
        log_warn("relay_verify", "to=<%s>: probe cache lookup failed (database error)", r->rcpt);
    r->probe = probe_start(r->prober, r->conf, r->target ? r->target : r->rcpt, 0, probed, r);
}

/* A recipient of a relay domain that verifies its recipients, or a forward that SRS
 * verification probes; nothing else. */
static int rv_wanted(const struct policy_ctx *ctx, enum policy_stage stage)
{
    if (!ctx->rcpt || !ctx->rcpt->domain) return 0;
    const struct conf_transport *t = route_transport(ctx->conf, ctx->rcpt->domain);
    if (t && t->relay_domain && t->verify_recipients) return 1;
    return !t && ctx->conf->srs_verify_forward && ctx->prober && !ctx->auth_user && !ctx->trusted;
}

static void *rv_start(const struct policy_ctx *ctx, enum policy_stage stage,
                      void (*done)(void *, const struct policy_verdict *), void *arg)
{
    struct rv *r = xcalloc(1, sizeof *r);
    r->conf = ctx->conf;
    r->store = ctx->store;
    r->prober = ctx->prober;
    r->done = done;
    r->arg = arg;
    r->v.kind = POLICY_PASS;
    const struct conf_transport *t =
        ctx->rcpt && ctx->rcpt->domain ? route_transport(ctx->conf, ctx->rcpt->domain) : NULL;
    /* only strangers: our users and trusted networks get a bounce for a typo */
    if (t && t->relay_domain && t->verify_recipients && !ctx->prober)
        str_copy(r->v.detail, "relay domain: recipient not probed here", sizeof r->v.detail);
    int relay = t && t->relay_domain && t->verify_recipients;
    r->forward = !t && ctx->conf->srs_verify_forward && ctx->rcpt && ctx->rcpt->domain;
    if ((!relay && !r->forward) || !ctx->prober || ctx->auth_user || ctx->trusted) {
        r->ev = event_new(policy_loop(), -1, 0, rv_answer_ev, r);
        event_active(r->ev, EV_TIMEOUT, 0);
        return r;
    }
    r->rcpt = addr_format(ctx->rcpt);
    str_lower(r->rcpt);
    r->job = work_submit(lookup_run, lookup_done, r);
    return r;
}

/* A hang-up while the cache is asked or the probe runs: both are cancelled (the probe's
 * connection closed), their callbacks never run. */
static void rv_cancel(void *handle)
{
    struct rv *r = handle;
    if (r->job) work_cancel(r->job);
    probe_cancel(r->probe);
    rv_free(r);
}

const struct policy_check policy_check_relay_verify = {
    .name = "relay_verify",
    .stages = 1u << POLICY_RCPT,
    .judges_client_ip = 0,
    .start = rv_start,
    .cancel = rv_cancel,
    .wanted = rv_wanted,
};

/* --- purging expired answers ------------------------------------------------------ */

static struct {
    struct event *ev;
    struct store *store;
    const struct kconf *const *conf;
    struct work_job *job;
} purge;

static void purge_run(void *arg)
{
    if (store_verify_purge(purge.store, (long long)time(NULL)) != 0)
        log_warn("relay_verify", "purging expired probe answers failed (database error)");
}

static void purge_done(void *arg)
{
    purge.job = NULL;
    int secs = (*purge.conf)->verify_purge_interval;
    evtimer_add(purge.ev, &(struct timeval){.tv_sec = secs > 0 ? secs : 3600});
}

static void purge_fire(evutil_socket_t fd, short what, void *arg)
{
    purge.job = work_submit(purge_run, purge_done, NULL);
}

void policy_relay_verify_purge_start(struct event_base *base, struct store *st,
                                     const struct kconf *const *conf)
{
    purge.store = st;
    purge.conf = conf;
    purge.ev = evtimer_new(base, purge_fire, NULL);
    evtimer_add(purge.ev, &(struct timeval){.tv_sec = 1});
}

void policy_relay_verify_purge_stop(void)
{
    if (purge.job) work_cancel(purge.job);
    purge.job = NULL;
    if (purge.ev) event_free(purge.ev);
    purge.ev = NULL;
}
