/* recipient.c: the RCPT check every listener runs first: is the recipient ours (a
 * mailbox, alias or catch-all with room left), or may this client relay? Unknown
 * local users are refused here, never bounced later (no backscatter). */
#include "core/compat.h"

#include "policy/policy.h"
#include "route/route.h"
#include "store/store.h"

struct rcpt_job {
    struct work_job *job;
    struct store *store;
    const char *maildir_root;
    char *hostname, *postmaster; /* copies: a reload may free the config */
    char *address;
    int may_relay;
    struct policy_verdict v;
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
};

/* Worker thread: directory lookup and quota check. */
static void rcpt_run(void *arg)
{
    struct rcpt_job *j = arg;
    struct route_result rr;
    struct policy_verdict *v = &j->v;
    struct route_postmaster pm = {.hostname = j->hostname, .address = j->postmaster};
    enum route_kind k = route_resolve(j->store, &pm, j->address, &rr);
    memset(v, 0, sizeof *v);
    v->kind = POLICY_PASS;
    switch (k) {
    case ROUTE_LOCAL:
        for (size_t i = 0; i < rr.ntargets; i++) {
            const struct route_target *t = &rr.targets[i];
            if (t->kind != ROUTE_LOCAL || t->quota <= 0) continue;
            long long used = maildir_usage(j->maildir_root, t->addr);
            if (used >= t->quota) {
                policy_verdict_set(v, POLICY_TEMPFAIL, 452, "4.2.2",
                                   "<%s>: Recipient address rejected: mailbox is full, "
                                   "try again later",
                                   j->address);
                break;
            }
        }
        break;
    case ROUTE_REMOTE:
        if (!j->may_relay)
            policy_verdict_set(v, POLICY_REJECT, 554, "5.7.1",
                               "<%s>: Relay access denied: this server only accepts mail "
                               "for the domains it hosts",
                               j->address);
        break;
    case ROUTE_NOUSER:
        policy_verdict_set(v, POLICY_REJECT, 550, "5.1.1",
                           "<%s>: Recipient address rejected: no such user here", j->address);
        break;
    case ROUTE_LOOP:
        policy_verdict_set(v, POLICY_REJECT, 550, "5.4.6",
                           "<%s>: Recipient address rejected: alias loop in our directory",
                           j->address);
        break;
    case ROUTE_ERROR:
        policy_verdict_set(v, POLICY_TEMPFAIL, 451, "4.3.0",
                           "<%s>: Recipient address rejected: temporary directory failure, "
                           "try again later",
                           j->address);
        break;
    }
    route_result_clear(&rr);
}

static void rcpt_job_free(struct rcpt_job *j)
{
    free(j->hostname);
    free(j->postmaster);
    free(j->address);
    free(j);
}

static void rcpt_done(void *arg)
{
    struct rcpt_job *j = arg;
    struct policy_verdict v = j->v;
    void (*done)(void *, const struct policy_verdict *) = j->done;
    void *darg = j->arg;
    rcpt_job_free(j);
    done(darg, &v);
}

static void *rcpt_start(const struct policy_ctx *ctx, enum policy_stage stage,
                        void (*done)(void *, const struct policy_verdict *), void *arg)
{
    struct rcpt_job *j = xcalloc(1, sizeof *j);
    j->store = ctx->store;
    j->maildir_root = ctx->conf->maildir_root;
    j->hostname = xstrdup(ctx->conf->hostname);
    j->postmaster = ctx->conf->postmaster ? xstrdup(ctx->conf->postmaster) : NULL;
    j->address = addr_format(ctx->rcpt);
    j->may_relay = ctx->trusted || ctx->auth_user != NULL;
    j->done = done;
    j->arg = arg;
    j->job = work_submit(rcpt_run, rcpt_done, j);
    return j;
}

static void rcpt_cancel(void *handle)
{
    struct rcpt_job *j = handle;
    work_cancel(j->job);
    rcpt_job_free(j);
}

const struct policy_check policy_check_recipient = {
    .name = "recipient",
    .stages = 1u << POLICY_RCPT,
    .judges_client_ip = 0,
    .start = rcpt_start,
    .cancel = rcpt_cancel,
};
