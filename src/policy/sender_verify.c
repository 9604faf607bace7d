/* sender_verify.c: is the envelope sender of an unauthenticated client deliverable
 * (docs/inbound.md)? A sender in one of our domains must be a mailbox, alias or
 * catch-all (route_resolve); any other domain needs an MX or A/AAAA record, and a
 * null MX (RFC 7505) says it sends no mail: refused. A failure is greylisted
 * (greylist.c) or refused, per listener. With sender_callout, the sender's MX is also
 * asked whether it takes the sender (deliver/probe.c, the answer cached as
 * relay_verify.c's). */
#include "core/compat.h"

#include <event2/event.h>

#include "deliver/deliver.h"
#include "dns/dns.h"
#include "policy/greylist.h"
#include "route/route.h"
#include "store/store.h"

enum sv_step { SV_LOCAL = 0, SV_MX, SV_A, SV_AAAA };

struct sv {
    const struct policy_ctx *ctx; /* borrowed: valid while the check runs */
    enum sv_step step;
    struct work_job *job;
    struct dns_query *q;
    struct greylist_job *grey;
    struct probe_req *probe; /* the callout */
    int rc;                  /* store_verify_get's answer */
    struct store_verify ans; /* the callout's answer, cached or fresh */
    struct event *ev;
    struct store *store;
    const struct kconf *conf; /* a reference: a reload may drop the daemon's */
    char *sender;
    const char *domain; /* into sender */
    enum route_kind route;
    char why[200]; /* the failure, "" when verified */
    struct policy_verdict v;
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
};

static void sv_free(struct sv *s)
{
    if (s->ev) event_free(s->ev);
    conf_unref(s->conf);
    free(s->sender);
    free(s);
}

static void sv_answer(struct sv *s, const struct policy_verdict *v)
{
    struct policy_verdict out = *v;
    void (*done)(void *, const struct policy_verdict *) = s->done;
    void *arg = s->arg;
    sv_free(s);
    done(arg, &out);
}

static void sv_answer_ev(evutil_socket_t fd, short what, void *arg)
{
    struct sv *s = arg;
    sv_answer(s, &s->v);
}

static void grey_done(void *arg, const struct policy_verdict *v)
{
    struct sv *s = arg;
    s->grey = NULL;
    sv_answer(s, v);
}

/* The sender is verified (why "") or failed (why set): answer per listener. */
static void sv_judge(struct sv *s)
{
    const struct policy_ctx *ctx = s->ctx;
    struct policy_verdict v = {.kind = POLICY_PASS};
    if (!*s->why) {
        sv_answer(s, &v);
        return;
    }
    if (ctx->listener->sender_verify == CONF_SV_REJECT) {
        int mailbox = s->route == ROUTE_NOUSER || s->ans.code >= 500; /* not the domain */
        policy_verdict_set(&v, POLICY_REJECT, 550, mailbox ? "5.1.0" : "5.1.8",
                           "<%s>: Sender address rejected: %s", s->sender, s->why);
        sv_answer(s, &v);
        return;
    }
    if (ctx->listener->greylist == CONF_GREY_OFF) {
        log_info("sender_verify", "client=[%s] from=<%s>: %s; accepted (greylist off)",
                 ctx->client_addr, s->sender, s->why);
        sv_answer(s, &v);
        return;
    }
    char why[256];
    snprintf(why, sizeof why, "sender verification failed: %s", s->why);
    s->grey = greylist_triplet_start(ctx, why, grey_done, s);
}

/* --- the callout: does the sender's MX take the sender? ----------------------------- */

#define CALLOUT_KIND "sender"

static void callout_refused(struct sv *s, const char *text)
{
    snprintf(s->why, sizeof s->why, "callout to its MX: %.180s", text);
}

/* Worker thread. */
static void callout_put_run(void *arg)
{
    struct sv *s = arg;
    if (store_verify_put(s->store, CALLOUT_KIND, s->sender, &s->ans) != 0)
        log_warn("sender_verify", "from=<%s>: cannot remember the callout's answer", s->sender);
}

static void callout_put_done(void *arg)
{
    struct sv *s = arg;
    s->job = NULL;
    sv_judge(s);
}

static void callout_probed(void *arg, const struct probe_result *res)
{
    struct sv *s = arg;
    s->probe = NULL;
    static const char *const names[] = {"accepted", "refused", "unverified"};
    log_info("sender_verify", "callout from=<%s> relay=%s result=%s (%s)", s->sender,
             res->relay[0] ? res->relay : "none", names[res->status], res->text);
    if (res->status == PROBE_TEMP) { /* no answer is no failure; not remembered */
        sv_judge(s);
        return;
    }
    int ok = res->status == PROBE_OK;
    const struct kconf *c = s->ctx->conf;
    s->ans = (struct store_verify){
        .ok = ok,
        .code = res->code,
        .expires = (long long)time(NULL) + (ok ? c->verify_positive_ttl : c->verify_negative_ttl),
    };
    if (snprintf(s->ans.text, sizeof s->ans.text, "host %s said: %s", res->relay, res->text) < 0)
        str_copy(s->ans.text, res->text, sizeof s->ans.text);
    if (!ok) callout_refused(s, s->ans.text);
    s->job = work_submit(callout_put_run, callout_put_done, s);
}

/* Worker thread: a remembered answer? */
static void callout_lookup_run(void *arg)
{
    struct sv *s = arg;
    s->rc = store_verify_get(s->store, CALLOUT_KIND, s->sender, (long long)time(NULL), &s->ans);
}

static void callout_lookup_done(void *arg)
{
    struct sv *s = arg;
    s->job = NULL;
    if (s->rc > 0) {
        log_info("sender_verify", "callout from=<%s> result=%s (cached: %s)", s->sender,
                 s->ans.ok ? "accepted" : "refused", s->ans.text);
        if (!s->ans.ok) callout_refused(s, s->ans.text);
        sv_judge(s);
        return;
    }
    memset(&s->ans, 0, sizeof s->ans);
    /* the sender domain's MX; for one of our relay domains (whose MX is us) its server */
    const struct conf_transport *t = route_transport(s->ctx->conf, s->domain);
    int mx_only = !(t && t->relay_domain);
    s->probe = probe_start(s->ctx->prober, s->ctx->conf, s->sender, mx_only, callout_probed, s);
}

/* The domain can receive mail: done, or (sender_callout) ask its MX about the sender. */
static void sv_domain_ok(struct sv *s)
{
    if (!s->ctx->listener->sender_callout || !s->ctx->prober) {
        sv_judge(s);
        return;
    }
    s->job = work_submit(callout_lookup_run, callout_lookup_done, s);
}

static void sv_dns_done(void *arg, const struct dns_result *r)
{
    struct sv *s = arg;
    s->q = NULL;
    struct policy_verdict v;
    if (r->status == DNS_TEMPFAIL || r->status == DNS_BOGUS) {
        policy_verdict_set(&v, POLICY_TEMPFAIL, 451, "4.4.3",
                           "<%s>: Sender address rejected: temporary DNS failure looking up "
                           "domain %s, try again later",
                           s->sender, s->domain);
        sv_answer(s, &v);
        return;
    }
    if (s->step == SV_MX && r->status == DNS_OK && r->null_mx) {
        /* RFC 7505 3: the domain accepts no mail, so it sends none either */
        policy_verdict_set(&v, POLICY_REJECT, 550, "5.1.8",
                           "<%s>: Sender address rejected: domain %s accepts no mail (null MX)",
                           s->sender, s->domain);
        sv_answer(s, &v);
        return;
    }
    if (r->status == DNS_OK) {
        sv_domain_ok(s); /* an MX, A or AAAA record */
        return;
    }
    if (r->status == DNS_NXDOMAIN) {
        snprintf(s->why, sizeof s->why, "domain %s does not exist", s->domain);
        sv_judge(s);
        return;
    }
    /* NODATA: on to the next record type */
    if (s->step == SV_MX) {
        s->step = SV_A;
        s->q = dns_query_a(s->ctx->dns, s->domain, sv_dns_done, s);
    } else if (s->step == SV_A) {
        s->step = SV_AAAA;
        s->q = dns_query_aaaa(s->ctx->dns, s->domain, sv_dns_done, s);
    } else {
        snprintf(s->why, sizeof s->why, "domain %s has no MX or A/AAAA record", s->domain);
        sv_judge(s);
    }
}

/* Worker thread: is the sender ours, and does it exist? */
static void sv_local_run(void *arg)
{
    struct sv *s = arg;
    struct route_result rr;
    struct route_postmaster pm;
    route_postmaster_init(&pm, s->conf);
    s->route = route_resolve(s->store, &pm, s->sender, &rr);
    route_result_clear(&rr);
}

static void sv_local_done(void *arg)
{
    struct sv *s = arg;
    s->job = NULL;
    struct policy_verdict v;
    switch (s->route) {
    case ROUTE_REMOTE:
        s->step = SV_MX;
        s->q = dns_query_mx(s->ctx->dns, s->domain, sv_dns_done, s);
        return;
    case ROUTE_NOUSER:
        snprintf(s->why, sizeof s->why, "no such user in our domain %s", s->domain);
        break;
    case ROUTE_ERROR:
        policy_verdict_set(&v, POLICY_TEMPFAIL, 451, "4.3.0",
                           "<%s>: Sender address rejected: temporary directory failure, try "
                           "again later",
                           s->sender);
        sv_answer(s, &v);
        return;
    case ROUTE_LOCAL:
    case ROUTE_LOOP: /* it exists; the loop is the recipient check's business */
        break;
    }
    sv_judge(s);
}

/* Off, a trusted client, no resolver or the null sender: nothing to verify. */
static int sv_wanted(const struct policy_ctx *ctx, enum policy_stage stage)
{
    int mode = ctx->listener ? ctx->listener->sender_verify : CONF_SV_OFF;
    return !(mode == CONF_SV_OFF || ctx->trusted || !ctx->dns || !ctx->sender ||
             !ctx->sender->local || !ctx->sender->domain);
}

static void *sv_start(const struct policy_ctx *ctx, enum policy_stage stage,
                      void (*done)(void *, const struct policy_verdict *), void *arg)
{
    struct sv *s = xcalloc(1, sizeof *s);
    s->ctx = ctx;
    s->done = done;
    s->arg = arg;
    s->v.kind = POLICY_PASS;
    s->store = ctx->store;
    int mode = ctx->listener ? ctx->listener->sender_verify : CONF_SV_OFF;
    /* the null sender has nothing to verify (greylisting still sees it, greylist.c) */
    if (mode == CONF_SV_OFF || ctx->trusted || !ctx->dns || !ctx->sender || !ctx->sender->local ||
        !ctx->sender->domain) {
        s->ev = event_new(policy_loop(), -1, 0, sv_answer_ev, s);
        event_active(s->ev, EV_TIMEOUT, 0);
        return s;
    }
    s->sender = addr_format(ctx->sender);
    const char *at = strrchr(s->sender, '@');
    s->domain = at ? at + 1 : s->sender;
    s->conf = conf_ref(ctx->conf);
    s->step = SV_LOCAL;
    s->job = work_submit(sv_local_run, sv_local_done, s);
    return s;
}

/* A hang-up while a lookup runs: the DNS query and the directory job are cancelled,
 * their callbacks never run. */
static void sv_cancel(void *handle)
{
    struct sv *s = handle;
    if (s->job) work_cancel(s->job);
    if (s->q) dns_cancel(s->q);
    probe_cancel(s->probe);
    greylist_triplet_cancel(s->grey);
    sv_free(s);
}

const struct policy_check policy_check_sender_verify = {
    .name = "sender_verify",
    .stages = 1u << POLICY_RCPT,
    .judges_client_ip = 1,
    .start = sv_start,
    .cancel = sv_cancel,
    .wanted = sv_wanted,
};
