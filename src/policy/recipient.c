/* recipient.c: the RCPT check every listener runs first: is the recipient ours (a
 * mailbox, alias or catch-all with room left), or may this client relay? Unknown
 * local users are refused here, never bounced later (no backscatter). At the end of
 * the message it checks the real size against every local recipient's room left:
 * a message that would sit in the queue as "mailbox full" and expire is refused
 * while the client can still tell its sender (docs/dsn.md). */
#include "core/compat.h"

#include "policy/policy.h"
#include "route/route.h"
#include "store/store.h"

struct rcpt_job {
    struct work_job *job;
    struct store *store;
    const char *maildir_root;
    const struct kconf *conf; /* a reference: a reload may drop the daemon's (reverse SRS,
                               * local names) */
    char *address;
    int may_relay;
    int no_forward; /* policy_txn_no_forward(): forward-only recipients are refused */
    enum policy_stage stage;
    long long size; /* RCPT: SIZE= (-1 none); EOM: the queued message's bytes */
    char **rcpts;   /* EOM: every recipient */
    size_t nrcpts;
    int gets_bounce;        /* EOM: the sender would be told of a later failure */
    struct policy_txn *txn; /* RCPT: told what passed (lives while the check runs) */
    int quota;              /* RCPT: a target is a local mailbox with a quota */
    struct policy_verdict v;
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
};

/* Room in the local mailboxes of a route for a message of size bytes (-1: only "is
 * any of them full"): 0 fits everywhere, 1 some mailbox is full or has too little
 * room left (for now), 2 the message is bigger than a mailbox's whole quota. Notes in
 * j->quota that a target has a quota. */
static int room(struct rcpt_job *j, const struct route_result *rr, long long size)
{
    int worst = 0;
    for (size_t i = 0; i < rr->ntargets; i++) {
        const struct route_target *t = &rr->targets[i];
        if (t->kind != ROUTE_LOCAL || t->quota <= 0) continue;
        j->quota = 1;
        if (size > t->quota) return 2;
        long long used = maildir_usage(j->maildir_root, t->addr);
        if (used < 0) used = 0; /* as deliver_maildir counts it */
        if (used >= t->quota || (size > 0 && used + size > t->quota)) worst = 1;
    }
    return worst;
}

/* Does address only forward (every target remote, none a local copy)? A bounce to
 * one of our SRS addresses is not a forward of the sender's mail. */
static int forward_only(const char *address, const struct route_result *rr)
{
    if (srs_is_srs(address, strcspn(address, "@")) || rr->ntargets == 0) return 0;
    for (size_t i = 0; i < rr->ntargets; i++)
        if (rr->targets[i].kind == ROUTE_LOCAL) return 0;
    return 1;
}

/* Worker thread, end of message: does the message fit the mailboxes of its local
 * recipients? Recipients that are not local mailboxes (any more) are the queue's
 * business. Fits none: 552 5.2.2. Fits some: accepted when the sender gets a bounce
 * for the others, else 452 4.2.2 for the message (one reply ends DATA, and an
 * accepted message that later expires unannounced would be lost). */
static void rcpt_run_eom(struct rcpt_job *j)
{
    size_t nfit = 0;
    const char *full = NULL;
    struct route_postmaster pm;
    route_postmaster_init(&pm, j->conf);
    for (size_t i = 0; i < j->nrcpts; i++) {
        struct route_result rr;
        int r = 0;
        if (route_resolve(j->store, &pm, j->rcpts[i], &rr) == ROUTE_LOCAL)
            r = room(j, &rr, j->size);
        route_result_clear(&rr);
        if (r == 0)
            nfit++;
        else if (!full)
            full = j->rcpts[i];
    }
    if (!full) return;
    if (nfit == 0)
        policy_verdict_set(&j->v, POLICY_REJECT, 552, "5.2.2",
                           "Message refused: %lld bytes do not fit in the mailbox of <%s>%s",
                           j->size, full, j->nrcpts > 1 ? " nor of any other recipient" : "");
    else if (!j->gets_bounce)
        policy_verdict_set(&j->v, POLICY_TEMPFAIL, 452, "4.2.2",
                           "Message not accepted: %lld bytes do not fit in the mailbox of <%s>; "
                           "try again later, or send it to the other recipients without <%s>",
                           j->size, full, full);
}

/* Worker thread: directory lookup and quota check. */
static void rcpt_run(void *arg)
{
    struct rcpt_job *j = arg;
    struct route_result rr;
    struct policy_verdict *v = &j->v;
    memset(v, 0, sizeof *v);
    v->kind = POLICY_PASS;
    if (j->stage == POLICY_EOM) {
        rcpt_run_eom(j);
        return;
    }
    struct route_postmaster pm;
    route_postmaster_init(&pm, j->conf);
    enum route_kind k = route_resolve(j->store, &pm, j->address, &rr);
    switch (k) {
    case ROUTE_LOCAL:
        if (j->no_forward && forward_only(j->address, &rr)) {
            policy_verdict_set(v, POLICY_REJECT, 550, "5.7.1",
                               "<%s>: Recipient address rejected: this address forwards to "
                               "another provider, and this message failed SPF or scored as "
                               "spam here: it is not forwarded",
                               j->address);
            break;
        }
        switch (room(j, &rr, j->size)) {
        case 0:
            break;
        case 1:
            if (j->size > 0)
                policy_verdict_set(v, POLICY_TEMPFAIL, 452, "4.2.2",
                                   "<%s>: Recipient address rejected: not enough room left in "
                                   "the mailbox for a message of %lld bytes, try again later",
                                   j->address, j->size);
            else
                policy_verdict_set(v, POLICY_TEMPFAIL, 452, "4.2.2",
                                   "<%s>: Recipient address rejected: mailbox is full, "
                                   "try again later",
                                   j->address);
            break;
        default:
            policy_verdict_set(v, POLICY_REJECT, 552, "5.2.2",
                               "<%s>: Recipient address rejected: a message of %lld bytes is "
                               "bigger than the mailbox can hold",
                               j->address, j->size);
            break;
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
    conf_unref(j->conf);
    for (size_t i = 0; i < j->nrcpts; i++)
        free(j->rcpts[i]);
    free(j->rcpts);
    free(j->address);
    free(j);
}

static void rcpt_done(void *arg)
{
    struct rcpt_job *j = arg;
    struct policy_verdict v = j->v;
    if (j->stage == POLICY_RCPT && j->txn && v.kind == POLICY_PASS)
        policy_txn_rcpt_passed(j->txn, j->quota);
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
    j->conf = conf_ref(ctx->conf);
    j->stage = stage;
    j->txn = ctx->txn;
    if (stage == POLICY_RCPT) {
        j->address = addr_format(ctx->rcpt);
        j->size = ctx->size_declared;
    } else {
        j->nrcpts = ctx->rcpts ? ctx->nrcpts : 0;
        j->rcpts = xcalloc(j->nrcpts ? j->nrcpts : 1, sizeof *j->rcpts);
        for (size_t i = 0; i < j->nrcpts; i++)
            j->rcpts[i] = addr_format(ctx->rcpts[i]);
        j->size = (long long)ctx->msg_size;
    }
    j->may_relay = ctx->trusted || ctx->auth_user != NULL;
    j->no_forward = !j->may_relay && policy_txn_no_forward(ctx->txn, ctx->listener);
    if (stage == POLICY_RCPT && ctx->rcpt && ctx->rcpt->domain) {
        /* a relay domain: we are its MX, its own server is behind us (relay_verify.c) */
        const struct conf_transport *t = route_transport(ctx->conf, ctx->rcpt->domain);
        if (t && t->relay_domain) j->may_relay = 1;
    }
    /* as the queue decides (dsn_allowed): a trusted sender, never the null sender */
    j->gets_bounce = policy_dsn_allowed(!ctx->sender || !ctx->sender->local,
                                        policy_dsn_trusted(ctx->auth_user, ctx->trusted), NULL);
    j->done = done;
    j->arg = arg;
    j->job = work_submit(rcpt_run, rcpt_done, j);
    return j;
}

/* At the end of the message only when a recipient has a quota to measure it against
 * (spares most messages a worker hand-off before their commit). */
static int rcpt_wanted(const struct policy_ctx *ctx, enum policy_stage stage)
{
    return stage != POLICY_EOM || !ctx->txn || policy_txn_rcpt_quota(ctx->txn, ctx->nrcpts);
}

static void rcpt_cancel(void *handle)
{
    struct rcpt_job *j = handle;
    work_cancel(j->job);
    rcpt_job_free(j);
}

const struct policy_check policy_check_recipient = {
    .name = "recipient",
    .stages = 1u << POLICY_RCPT | 1u << POLICY_EOM,
    .judges_client_ip = 0,
    .start = rcpt_start,
    .wanted = rcpt_wanted,
    .cancel = rcpt_cancel,
};
