/* smtp_ops.c: struct smtp_ops for the daemon's sessions (glue.h): judge runs the policy
 * pipeline, msg_open/write/commit/abort go to the spool (a committed message is handed
 * to the scheduler), auth asks auth/, lookup_name dns/. Decisions are the modules';
 * this file only translates between their structs. */
#include "core/compat.h"

#include <event2/event.h>

#include "abuse/abuse.h"
#include "auth/auth.h"
#include "dns/dns.h"
#include "glue/glue.h"
#include "policy/policy.h"
#include "queue/dkim_sign.h"
#include "queue/queue.h"
#include "smtp/smtp.h"

/* The KURIER_TEST_DELAY hook (glue.h): milliseconds, 0 = none. */
static struct {
    int judge, commit;
} test_delays;

void glue_test_delay_init(void)
{
    const char *p = getenv("KURIER_TEST_DELAY");
    while (p && *p) {
        int *slot = strncmp(p, "judge=", 6) == 0    ? &test_delays.judge
                    : strncmp(p, "commit=", 7) == 0 ? &test_delays.commit
                                                    : NULL;
        const char *eq = strchr(p, '=');
        if (slot && eq) *slot = atoi(eq + 1);
        p = strchr(p, ',');
        if (p) p++;
    }
    if (test_delays.judge || test_delays.commit)
        log_warn("kurierd", "KURIER_TEST_DELAY: verdicts wait %d ms, commits %d ms (tests only)",
                 test_delays.judge, test_delays.commit);
}

static struct event *test_hold(struct event_base *base, int ms,
                               void (*cb)(evutil_socket_t, short, void *), void *arg)
{
    struct event *e = evtimer_new(base, cb, arg);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(e, &tv);
    return e;
}

/* --- smtp_ops: the session's view of policy and spool ----------------------- */

struct judge {
    struct glue *g;
    struct policy_ctx ctx;
    const struct addr **rcpts; /* EOM: ctx.rcpts */
    struct policy_run *run;    /* NULL once the pipeline answered */
    enum smtp_stage stage;
    struct event *hold;         /* test hook: the verdict waits */
    struct work_job *work;      /* shared state: the account's count across the nodes */
    int abuse;                  /* an authenticated MAIL or RCPT: the abuse limits first */
    struct abuse_shared shared; /* those counts, -1 none */
    char *rcpt_text;            /* RCPT: the recipient counted on the worker */
    char account[320];
    struct smtp_verdict v;
    void (*done)(void *, const struct smtp_verdict *);
    void *arg;
};

static void judge_answer(struct judge *j)
{
    void (*done)(void *, const struct smtp_verdict *) = j->done;
    void *darg = j->arg;
    struct smtp_verdict v = j->v;
    if (j->hold) event_free(j->hold);
    free(j->rcpts);
    free(j->rcpt_text);
    free(j);
    done(darg, &v);
}

static void judge_held(evutil_socket_t fd, short what, void *arg)
{
    judge_answer(arg);
}

static void judge_done(void *arg, const struct policy_verdict *pv)
{
    struct judge *j = arg;
    j->run = NULL;
    /* a refused recipient of an authenticated client counts against its account */
    if (j->g->abuse && j->ctx.auth_user && j->stage == SMTP_STAGE_RCPT &&
        pv->kind == POLICY_REJECT && j->ctx.rcpt) {
        char *r = addr_format(j->ctx.rcpt);
        abuse_rcpt_failed(j->g->abuse, j->ctx.auth_user, r);
        free(r);
    }
    if (pv->kind == POLICY_REJECT || pv->kind == POLICY_TEMPFAIL || pv->kind == POLICY_GREYLIST) {
        j->v.code = pv->code;
        str_copy(j->v.enh, pv->enh, sizeof j->v.enh);
        str_copy(j->v.text, pv->text, sizeof j->v.text);
        j->v.check = pv->check;
    } else {
        str_copy(j->v.rcpt_local, pv->rcpt_local, sizeof j->v.rcpt_local);
    }
    if (test_delays.judge > 0) {
        j->hold = test_hold(j->g->base, test_delays.judge, judge_held, j);
        return;
    }
    judge_answer(j);
}

static void shared_run(void *arg);
static void shared_done(void *arg);
static void judge_go(struct judge *j);

static void *ops_judge(void *ctx, const struct smtp_peer *peer, const struct smtp_txn *txn,
                       enum smtp_stage stage, const struct addr *rcpt,
                       void (*done)(void *, const struct smtp_verdict *), void *arg)
{
    struct glue *g = ctx;
    struct judge *j = xcalloc(1, sizeof *j);
    j->g = g;
    j->ctx.conf = peer->conf;
    j->ctx.listener = peer->listener;
    j->ctx.store = g->store;
    j->ctx.dns = g->dns;
    j->ctx.prober = g->prober;
    j->ctx.client_sa = peer->sa;
    str_copy(j->ctx.client_addr, peer->addr, sizeof j->ctx.client_addr);
    str_copy(j->ctx.client_name, peer->name, sizeof j->ctx.client_name);
    j->ctx.helo = peer->helo;
    j->ctx.esmtp = peer->esmtp;
    j->ctx.auth_user = peer->auth_user;
    j->ctx.trusted = peer->trusted;
    j->ctx.rdns = peer->rdns;
    str_copy(j->ctx.ptr_name, peer->ptr_name, sizeof j->ctx.ptr_name);
    j->ctx.early_talker = peer->early_talker;
    j->ctx.bad_pipelining = peer->bad_pipelining;
    j->ctx.sender = txn ? &txn->sender : NULL;
    j->ctx.rcpt = rcpt;
    j->ctx.nrcpts = txn ? txn->nrcpts : 0;
    j->ctx.size_declared = txn ? txn->size : -1;
    if (txn && stage == SMTP_STAGE_EOM) {
        j->rcpts = xcalloc(txn->nrcpts ? txn->nrcpts : 1, sizeof *j->rcpts);
        for (size_t i = 0; i < txn->nrcpts; i++)
            j->rcpts[i] = &txn->rcpts[i].addr;
        j->ctx.rcpts = j->rcpts;
        j->ctx.msg_size = (unsigned long long)txn->msg_size + txn->added_size;
    }
    j->ctx.headers = txn ? txn->headers : NULL;
    j->ctx.headers_len = txn ? txn->headers_len : 0;
    j->ctx.headers_cut = txn ? txn->headers_cut : 0;
    j->ctx.txn = txn ? txn->state : NULL;
    j->done = done;
    j->arg = arg;
    j->stage = stage;
    /* an authenticated client's MAIL and RCPT count against its account's limits
     * first (with a shared state, counted across the nodes on a worker) */
    j->shared = (struct abuse_shared){.count = -1, .distinct = -1, .failed = -1};
    j->abuse = g->abuse && peer->auth_user && txn &&
               (stage == SMTP_STAGE_MAIL || (stage == SMTP_STAGE_RCPT && rcpt));
    /* an attempt refused before it is counted (a locked account, a message with too
     * many recipients) is not counted across the nodes either */
    if (j->abuse && abuse_shared(g->abuse) &&
        !abuse_refused_uncounted(g->abuse, peer->auth_user, stage == SMTP_STAGE_RCPT,
                                 j->ctx.nrcpts)) {
        str_copy(j->account, peer->auth_user, sizeof j->account);
        if (stage == SMTP_STAGE_RCPT) j->rcpt_text = addr_format(rcpt);
        j->work = work_submit(shared_run, shared_done, j);
        return j;
    }
    judge_go(j);
    return j;
}

/* Worker thread. */
static void shared_run(void *arg)
{
    struct judge *j = arg;
    abuse_shared_count(j->g->abuse, j->ctx.conf, j->account, j->rcpt_text, &j->shared);
}

static void shared_done(void *arg)
{
    struct judge *j = arg;
    j->work = NULL;
    judge_go(j);
}

/* The abuse limits (over one, the answer comes from the loop as a verdict would), then
 * the policy pipeline. */
static void judge_go(struct judge *j)
{
    struct glue *g = j->g;
    if (j->abuse) {
        char *r = j->stage == SMTP_STAGE_RCPT ? addr_format(j->ctx.rcpt) : NULL;
        int over = j->stage == SMTP_STAGE_MAIL
                       ? abuse_check_mail(g->abuse, j->ctx.auth_user, j->shared.count, &j->v.code,
                                          j->v.enh, j->v.text, sizeof j->v.text)
                       : abuse_check_rcpt(g->abuse, j->ctx.auth_user, r, j->ctx.nrcpts, &j->shared,
                                          &j->v.code, j->v.enh, j->v.text, sizeof j->v.text);
        free(r);
        if (over) {
            j->v.check = "abuse";
            j->hold = test_hold(g->base, 0, judge_held, j);
            return;
        }
    }
    _Static_assert(
        (int)SMTP_STAGE_CONNECT == (int)POLICY_CONNECT &&
            (int)SMTP_STAGE_HELO == (int)POLICY_HELO && (int)SMTP_STAGE_MAIL == (int)POLICY_MAIL &&
            (int)SMTP_STAGE_RCPT == (int)POLICY_RCPT && (int)SMTP_STAGE_DATA == (int)POLICY_DATA &&
            (int)SMTP_STAGE_EOM == (int)POLICY_EOM,
        "enum smtp_stage and enum policy_stage differ");
    j->run = policy_run_start(&j->ctx, (enum policy_stage)j->stage, judge_done, j);
}

static void ops_judge_cancel(void *handle)
{
    struct judge *j = handle;
    if (j->work) work_cancel(j->work);
    if (j->run) policy_run_cancel(j->run);
    if (j->hold) event_free(j->hold);
    free(j->rcpts);
    free(j->rcpt_text);
    free(j);
}

/* The transaction's policy record (policy_txn): what the checks found, for the
 * message's headers and its log line. */
static void *ops_txn_new(void *ctx, const struct smtp_peer *peer)
{
    return policy_txn_new(peer->conf->hostname);
}

static void ops_txn_end(void *ctx, const struct smtp_peer *peer, const struct smtp_txn *txn,
                        const char *id, int code, const char *check)
{
    const char *action = code == 250                               ? "accept"
                         : code == 0                               ? "none"
                         : check && strcmp(check, "greylist") == 0 ? "greylist"
                         : code < 500                              ? "tempfail"
                                                                   : "reject";
    char *from = addr_format(&txn->sender);
    policy_txn_log(txn->state, id, peer->name, peer->addr, from, action);
    free(from);
    policy_txn_free(txn->state);
}

static void ops_msg_headers(void *ctx, const struct smtp_peer *peer, const struct smtp_txn *txn,
                            struct buf *out, char *hdr, size_t *len)
{
    /* RFC 8601 5: a field that claims our authserv-id comes from outside (a client in
     * relay.trusted_networks, a content filter re-injecting, keeps its fields) */
    if (hdr && !peer->trusted) {
        size_t n = 0;
        *len = authres_strip(hdr, *len, peer->conf->hostname, &n);
        if (n)
            log_info("policy",
                     "client %s[%s]: removed %zu Authentication-Results field%s "
                     "claiming %s",
                     peer->name, peer->addr, n, n == 1 ? "" : "s", peer->conf->hostname);
    }
    if (txn->state)
        policy_txn_headers(txn->state, peer->conf, peer->listener, peer->auth_user, peer->addr,
                           peer->name, hdr, hdr ? *len : 0, out);
}

static void ops_msg_content(void *ctx, const struct smtp_peer *peer, const struct smtp_txn *txn,
                            const void *p, size_t len)
{
    if (txn->state) policy_txn_content(txn->state, peer->listener, peer->auth_user, p, len);
}

static void *ops_msg_open(void *ctx, const struct smtp_peer *peer, char *id, size_t idsize)
{
    struct glue *g = ctx;
    struct spool_msg *m = spool_msg_new(g->spool);
    if (m) str_copy(id, spool_msg_id(m), idsize);
    /* our users' mail is signed as ours; mail from elsewhere (forwarded too) is not */
    if (m && peer->auth_user) spool_msg_sign(m);
    return m;
}

static int ops_msg_write(void *msg, const void *p, size_t len)
{
    return spool_msg_write(msg, p, len);
}

static void ops_msg_abort(void *msg)
{
    spool_msg_abort(msg);
}

/* A message handed to the spool, until its commit answers. */
struct stored {
    struct glue *g;
    struct spool_env *env;
    char id[QUEUE_ID_LEN + 1];
    int ok;
    struct event *hold; /* test hook: the answer waits */
    void (*done)(void *, int);
    void *arg;
};

static void stored_answer(struct stored *c)
{
    c->done(c->arg, c->ok);
    /* after an exit past the shutdown deadline the queue is gone: the next start finds
     * the message in the spool */
    if (c->ok && c->g->queue) queue_accept(c->g->queue, c->id);
    if (c->hold) event_free(c->hold);
    free(c);
}

static void stored_held(evutil_socket_t fd, short what, void *arg)
{
    stored_answer(arg);
}

static void stored_done(void *arg, int ok)
{
    struct stored *c = arg;
    str_copy(c->id, c->env->id, sizeof c->id);
    spool_env_free(c->env);
    c->env = NULL;
    c->ok = ok;
    if (test_delays.commit > 0) {
        c->hold = test_hold(c->g->base, test_delays.commit, stored_held, c);
        return;
    }
    stored_answer(c);
}

static char *opt_dup(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void ops_msg_commit(void *ctx, void *msg, const struct smtp_peer *peer,
                           const struct smtp_txn *txn, void (*done)(void *, int), void *arg)
{
    struct glue *g = ctx;
    struct spool_env *e = xcalloc(1, sizeof *e);
    e->sender = addr_format(&txn->sender);
    e->arrival = time(NULL);
    e->client_name = xstrdup(peer->name);
    e->client_addr = xstrdup(peer->addr);
    e->helo = opt_dup(peer->helo);
    e->proto = xstrdup(!peer->esmtp      ? "SMTP"
                       : peer->auth_user ? (peer->tls ? "ESMTPSA" : "ESMTPA")
                       : peer->tls       ? "ESMTPS"
                                         : "ESMTP");
    e->auth_user = opt_dup(peer->auth_user);
    e->listener = peer->listener ? opt_dup(peer->listener->address) : NULL;
    e->envid = opt_dup(txn->envid);
    e->ret = txn->ret;
    e->body = txn->body;
    e->smtputf8 = txn->smtputf8;
    e->dsn_trusted = policy_dsn_trusted(peer->auth_user, peer->trusted);
    e->no_forward = policy_txn_no_forward(txn->state, peer->listener);
    e->rcpts = xcalloc(txn->nrcpts, sizeof *e->rcpts);
    e->nrcpts = txn->nrcpts;
    const char **addrs = xcalloc(txn->nrcpts ? txn->nrcpts : 1, sizeof *addrs);
    for (size_t i = 0; i < txn->nrcpts; i++) {
        struct spool_rcpt *r = &e->rcpts[i];
        r->addr = addr_format(&txn->rcpts[i].addr);
        r->orig = xstrdup(r->addr);
        r->orcpt = opt_dup(txn->rcpts[i].orcpt);
        r->notify = txn->rcpts[i].notify;
        r->state = RCPT_ST_QUEUED;
        addrs[i] = r->addr;
    }
    /* a locked account's mail (or the message that locks it) is queued on hold */
    if (g->abuse && peer->auth_user)
        e->held = abuse_message(g->abuse, peer->auth_user, e->sender, spool_msg_id(msg), addrs,
                                e->nrcpts);
    free(addrs);
    /* Authentication-Results: now that the end-of-data checks (DKIM, DMARC) added
     * theirs, into the room policy_txn_headers() left below our Received: */
    if (txn->state) {
        struct buf ar;
        buf_init(&ar, 0);
        size_t at = policy_txn_authres_field(txn->state, peer->auth_user, &ar);
        if (ar.len && spool_msg_rewrite(msg, at, ar.data, ar.len) != 0)
            log_warn("smtpd", "%s: Authentication-Results not updated", spool_msg_id(msg));
        buf_release(&ar);
    }
    struct stored *c = xcalloc(1, sizeof *c);
    c->g = g;
    c->env = e;
    c->done = done;
    c->arg = arg;
    spool_msg_commit(msg, e, stored_done, c);
}

/* --- AUTH and the client's name: the modules do it all ------------------------- */

static void *ops_auth(void *ctx, const struct smtp_peer *peer, const char *mech, const char *user,
                      const char *pass, void (*done)(void *, enum auth_result), void *arg)
{
    struct glue *g = ctx;
    return auth_check_start(g->auth, peer->conf, peer->addr, user, pass, done, arg);
}

static void ops_auth_cancel(void *handle)
{
    auth_check_cancel(handle);
}

static void *ops_lookup_name(void *ctx, const struct sockaddr *sa,
                             void (*done)(void *, const char *, enum rdns_status, const char *),
                             void *arg)
{
    struct glue *g = ctx;
    return dns_client_name(g->dns, sa, done, arg);
}

static void ops_lookup_cancel(void *handle)
{
    dns_client_name_cancel(handle);
}

void glue_smtp_ops(struct glue *g, struct smtp_ops *ops)
{
    *ops = (struct smtp_ops){
        .ctx = g,
        .judge = ops_judge,
        .judge_cancel = ops_judge_cancel,
        .txn_new = ops_txn_new,
        .txn_end = ops_txn_end,
        .msg_headers = ops_msg_headers,
        .msg_content = ops_msg_content,
        .msg_open = ops_msg_open,
        .msg_write = ops_msg_write,
        .msg_commit = ops_msg_commit,
        .msg_abort = ops_msg_abort,
        .auth = ops_auth,
        .auth_cancel = ops_auth_cancel,
        .lookup_name = ops_lookup_name,
        .lookup_cancel = ops_lookup_cancel,
    };
}
