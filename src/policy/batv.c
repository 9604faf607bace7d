/* batv.c: the backscatter filter (docs/inbound.md "BATV"). At RCPT, for a recipient
 * in a domain with BATV: a tag prvs=KDDDSSSSSS= is stripped (the checks after this
 * one and the session see the plain address); a bounce (null sender) is accepted
 * only at an address with a valid tag. Tags themselves are core/batv.c's; signing
 * our senders is deliver/remote.c's. */
#include "core/compat.h"

#include <event2/event.h>

#include "core/batv.h"
#include "policy/policy.h"
#include "store/store.h"

struct batv_job {
    struct work_job *job;
    struct event *ev;
    struct store *store;
    char domain[ADDR_DOMAIN_MAX + 1];
    char rcpt[ADDR_PATH_MAX + 2]; /* as the client gave it, for the log */
    char local[ADDR_LOCAL_MAX + 1];
    int tagged;              /* a syntactically valid tag; local holds the plain part */
    enum batv_result result; /* of the tag, when tagged */
    int judge_bounce;        /* a bounce from a client we judge (not logged in, not trusted) */
    int hosted;              /* domains all: 1 hosted, 0 not, -1 directory error */
    struct policy_verdict v;
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
};

static void batv_job_free(struct batv_job *j)
{
    if (j->ev) event_free(j->ev);
    free(j);
}

/* The verdict, once we know whether the domain is ours (domains all). */
static void batv_decide(struct batv_job *j)
{
    struct policy_verdict *v = &j->v;
    memset(v, 0, sizeof *v);
    v->kind = POLICY_PASS;
    if (j->hosted == 0) return; /* domains all, and not a domain we host: not ours to judge */
    if (j->hosted < 0) {
        policy_verdict_set(v, POLICY_TEMPFAIL, 451, "4.3.0",
                           "<%s>: Recipient address rejected: temporary directory failure, "
                           "try again later",
                           j->rcpt);
        return;
    }
    if (j->judge_bounce && (!j->tagged || j->result != BATV_VALID)) {
        /* RFC 5321 4.5.1: postmaster takes every mail, bounces included */
        if (!j->tagged && strcasecmp(j->local, "postmaster") == 0) return;
        const char *why = !j->tagged                  ? "no BATV signature"
                          : j->result == BATV_EXPIRED ? "BATV signature expired"
                                                      : "bad BATV signature";
        policy_verdict_set(v, POLICY_REJECT, 550, "5.7.1",
                           "Bounce rejected: we did not send the original message (%s)", why);
        snprintf(v->detail, sizeof v->detail, "%s", why);
        return;
    }
    if (j->tagged) {
        str_copy(v->rcpt_local, j->local, sizeof v->rcpt_local);
        snprintf(v->detail, sizeof v->detail, "tag %s", batv_result_name(j->result));
        log_info("policy", "batv: <%s>: tag %s, taken as <%s@%s>", j->rcpt,
                 batv_result_name(j->result), j->local, j->domain);
    }
}

static void batv_answer(struct batv_job *j)
{
    struct policy_verdict v = j->v;
    void (*done)(void *, const struct policy_verdict *) = j->done;
    void *arg = j->arg;
    batv_job_free(j);
    done(arg, &v);
}

static void batv_answer_ev(evutil_socket_t fd, short what, void *arg)
{
    batv_answer(arg);
}

/* Worker thread: domains all: is the recipient's domain one we host? */
static void batv_hosted_run(void *arg)
{
    struct batv_job *j = arg;
    j->hosted = store_domain_get(j->store, j->domain, NULL);
    batv_decide(j);
}

static void batv_hosted_done(void *arg)
{
    struct batv_job *j = arg;
    j->job = NULL;
    batv_answer(j);
}

/* Only recipients in a domain with BATV. */
static int batv_wanted(const struct policy_ctx *ctx, enum policy_stage stage)
{
    const struct addr *a = ctx->rcpt;
    return a && a->local && a->domain && batv_domain_on(ctx->conf, a->domain);
}

static void *batv_start(const struct policy_ctx *ctx, enum policy_stage stage,
                        void (*done)(void *, const struct policy_verdict *), void *arg)
{
    struct batv_job *j = xcalloc(1, sizeof *j);
    j->done = done;
    j->arg = arg;
    j->store = ctx->store;
    j->hosted = 1;
    const struct addr *a = ctx->rcpt;
    int on = 0;
    if (stage == POLICY_RCPT && a && a->local && a->domain &&
        strlen(a->domain) < sizeof j->domain && strlen(a->local) < sizeof j->local)
        on = batv_domain_on(ctx->conf, a->domain);
    /* an SRS address carries its own signature, checked by the recipient check
     * (route/: reverse SRS); bounces to it are what it is for (docs/forwarding.md) */
    if (on && srs_is_srs(a->local, strlen(a->local))) on = 0;
    if (on) {
        str_copy(j->domain, a->domain, sizeof j->domain);
        char *s = addr_format(a);
        str_copy(j->rcpt, s, sizeof j->rcpt);
        free(s);
        struct batv_tag t;
        if (batv_parse(a->local, strlen(a->local), &t)) {
            j->tagged = 1;
            j->result = batv_verify(&t, a->domain, ctx->conf->batv_keys, ctx->conf->nbatv_keys,
                                    batv_day(time(NULL)), batv_max_days(ctx->conf));
            memcpy(j->local, t.local, t.local_len);
            j->local[t.local_len] = '\0';
        } else {
            str_copy(j->local, a->local, sizeof j->local);
        }
        int null_sender = !ctx->sender || !ctx->sender->local;
        j->judge_bounce = null_sender && !ctx->auth_user && !ctx->trusted;
    }
    if (on == 2 && (j->tagged || j->judge_bounce) && j->store) {
        j->job = work_submit(batv_hosted_run, batv_hosted_done, j);
        return j;
    }
    if (on)
        batv_decide(j);
    else
        j->v.kind = POLICY_PASS;
    j->ev = event_new(policy_loop(), -1, 0, batv_answer_ev, j);
    event_active(j->ev, EV_TIMEOUT, 0);
    return j;
}

static void batv_cancel(void *handle)
{
    struct batv_job *j = handle;
    if (j->job) work_cancel(j->job);
    batv_job_free(j);
}

const struct policy_check policy_check_batv = {
    .name = "batv",
    .stages = 1u << POLICY_RCPT,
    .judges_client_ip = 0, /* it judges bounces, and spares logged-in and trusted clients */
    .start = batv_start,
    .cancel = batv_cancel,
    .wanted = batv_wanted,
};
