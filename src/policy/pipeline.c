/* pipeline.c: runs the checks of a stage in order (the built-in ones, then the
 * listener's `checks`) and folds their verdicts: scores add up against the listener's
 * thresholds, one log line tells each check's result. Authenticated sessions skip
 * every check that judges the client. */
#include "core/compat.h"

#include <stdarg.h>

#include <event2/event.h>

#include "core/addr.h"
#include "core/buf.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/util.h"
#include "policy/policy.h"

/* Always run, first (cheap, and a refused recipient needs no DNS query). batv strips
 * a BATV tag before the recipient check looks the address up. */
static const struct policy_check *const builtin_checks[] = {
    &policy_check_batv,
    &policy_check_recipient,
    &policy_check_sender_login,
    &policy_check_sender_verify,
};
#define NBUILTIN (sizeof builtin_checks / sizeof builtin_checks[0])
/* Run when the listener's `checks` names them, in its order. */
static const struct policy_check *const optional_checks[] = {
    &policy_check_dnsbl, &policy_check_rhsbl,   &policy_check_pregreet, &policy_check_rdns,
    &policy_check_spf,   &policy_check_policyd, &policy_check_dkim,     &policy_check_dmarc,
};
#define NOPTIONAL (sizeof optional_checks / sizeof optional_checks[0])
/* Always run, last: a relay-domain recipient is probed only for a client the DNS lists
 * let through, and refused before greylisting could delay it; greylisting sees the
 * score the checks before it added up. */
static const struct policy_check *const final_checks[] = {
    &policy_check_relay_verify,
    &policy_check_greylist,
};
#define NFINAL (sizeof final_checks / sizeof final_checks[0])

static const struct policy_check *const all_checks[] = {
    &policy_check_batv,          &policy_check_recipient,    &policy_check_sender_login,
    &policy_check_sender_verify, &policy_check_dnsbl,        &policy_check_rhsbl,
    &policy_check_pregreet,      &policy_check_rdns,         &policy_check_spf,
    &policy_check_policyd,       &policy_check_relay_verify, &policy_check_greylist,
    &policy_check_dkim,          &policy_check_dmarc,
};
#define NCHECKS (sizeof all_checks / sizeof all_checks[0])
_Static_assert(NCHECKS == NBUILTIN + NOPTIONAL + NFINAL, "all_checks lists every check");

struct policy_run {
    const struct policy_check **owned; /* the run's list when built from the listener */
    const struct policy_check *const *checks;
    size_t nchecks;
    struct policy_ctx ctx; /* the caller's, with score kept current */
    enum policy_stage stage;
    size_t next;  /* index of the next check to consider */
    void *handle; /* the running check's handle */
    const struct policy_check *running;
    int score;
    int judged;                 /* a check that judges the client ran: log the stage */
    int score_handled;          /* a check with acts_on_score ran */
    struct policy_verdict best; /* the SCORE verdict with a text that added most */
    struct buf log;             /* "dnsbl=+4 (...) rhsbl=0" */
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
    void (*trace)(void *, const struct policy_check *, const struct policy_verdict *);
    void *trace_arg;
    struct event *ev_start; /* defers the first step out of policy_run_start */
    struct addr rcpt;       /* RCPT: the recipient as a check rewrote it (ctx.rcpt then) */
    char rcpt_local[ADDR_LOCAL_MAX + 1]; /* its local part, for the session ("" none) */
};

static struct event_base *loop_base;

void policy_init(struct event_base *base)
{
    loop_base = base;
}

struct event_base *policy_loop(void)
{
    return loop_base;
}

const char *policy_stage_name(enum policy_stage s)
{
    static const char *names[] = {"CONNECT", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE"};
    return s < POLICY_NSTAGES ? names[s] : "?";
}

void policy_verdict_set(struct policy_verdict *v, enum policy_kind kind, int code, const char *enh,
                        const char *fmt, ...)
{
    va_list ap;
    memset(v, 0, sizeof *v);
    v->kind = kind;
    v->code = code;
    str_copy(v->enh, enh, sizeof v->enh);
    va_start(ap, fmt);
    vsnprintf(v->text, sizeof v->text, fmt, ap);
    va_end(ap);
}

static const char *kind_name(enum policy_kind k)
{
    static const char *names[] = {"pass", "accept", "score", "greylist", "tempfail", "reject"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

static void run_free(struct policy_run *r)
{
    if (r->ev_start) event_free(r->ev_start);
    free(r->owned);
    addr_clear(&r->rcpt);
    buf_release(&r->log);
    free(r);
}

/* The stage's log line: each check's result and the sum (only when a check that
 * judges the client had something to say; the built-in checks log their refusals
 * through the session's reject line). */
static void log_stage(struct policy_run *r, const struct policy_verdict *v)
{
    if (!r->log.len) return;
    const struct conf_listen *l = r->ctx.listener;
    char to[300] = "";
    if (r->ctx.rcpt) {
        char *a = addr_format(r->ctx.rcpt), esc[260];
        snprintf(to, sizeof to, " to=<%s>", log_escape(esc, sizeof esc, a, strlen(a)));
        free(a);
    }
    log_info("policy",
             "%s from %s[%s]:%s %.*s; score=%d reject_score=%d greylist_score=%d "
             "result=%s%s%s",
             policy_stage_name(r->stage), r->ctx.client_name, r->ctx.client_addr, to,
             (int)r->log.len, r->log.data ? r->log.data : "", r->score, l ? l->reject_score : 0,
             l ? l->greylist_score : 0, kind_name(v->kind), v->check ? " by " : "",
             v->check ? v->check : "");
}

static void finish(struct policy_run *r, const struct policy_verdict *v)
{
    void (*done)(void *, const struct policy_verdict *) = r->done;
    void *arg = r->arg;
    struct policy_verdict out = *v;
    str_copy(out.rcpt_local, r->rcpt_local, sizeof out.rcpt_local);
    log_stage(r, &out);
    if (r->ctx.txn) policy_txn_stage_done(r->ctx.txn, r->stage, r->score);
    run_free(r);
    done(arg, &out);
}

/* A check took the recipient under another local part: the checks after it see that. */
static void rewrite_rcpt(struct policy_run *r, const char *local)
{
    struct addr a;
    addr_copy(&a, r->ctx.rcpt);
    free(a.local);
    a.local = xstrdup(local);
    a.flags &= ~(unsigned)ADDR_F_QUOTED;
    addr_clear(&r->rcpt);
    r->rcpt = a;
    r->ctx.rcpt = &r->rcpt;
    str_copy(r->rcpt_local, local, sizeof r->rcpt_local);
}

/* The stage ends by score: REJECT (reject_score) or GREYLIST (greylist_score). */
static void finish_by_score(struct policy_run *r, enum policy_kind kind)
{
    struct policy_verdict v;
    if (kind == POLICY_REJECT && r->best.text[0]) {
        v = r->best;
        v.kind = POLICY_REJECT;
        if (v.code < 500 || v.code > 599) v.code = 554;
        if (v.enh[0] != '5') str_copy(v.enh, "5.7.1", sizeof v.enh);
    } else if (kind == POLICY_REJECT) {
        policy_verdict_set(&v, POLICY_REJECT, 554, "5.7.1",
                           "Service unavailable; client [%s] has a poor reputation (score %d)",
                           r->ctx.client_addr, r->score);
        v.check = "score";
    } else {
        policy_verdict_set(&v, POLICY_GREYLIST, 451, "4.7.1",
                           "Service temporarily unavailable; client [%s] has a poor reputation "
                           "(score %d), try again later",
                           r->ctx.client_addr, r->score);
        v.check = r->best.check ? r->best.check : "score";
    }
    v.score = r->score;
    finish(r, &v);
}

static void run_next(struct policy_run *r);

static void check_done(void *arg, const struct policy_verdict *v)
{
    struct policy_run *r = arg;
    const struct policy_check *c = r->running;
    r->handle = NULL;
    /* the stage's log line: checks that judge the client and found something (a
     * check without lists says nothing) */
    if (c->judges_client_ip &&
        (v->detail[0] || (v->kind != POLICY_PASS && !(v->kind == POLICY_SCORE && !v->score)))) {
        if (v->kind == POLICY_SCORE)
            buf_printf(&r->log, "%s%s=%+d", r->log.len ? " " : "", c->name, v->score);
        else
            buf_printf(&r->log, "%s%s=%s", r->log.len ? " " : "", c->name, kind_name(v->kind));
        if (v->detail[0]) buf_printf(&r->log, " (%s)", v->detail);
    }
    if (r->trace) r->trace(r->trace_arg, c, v);
    if (r->ctx.txn) policy_txn_note(r->ctx.txn, c, v);
    if (v->rcpt_local[0] && r->stage == POLICY_RCPT && r->ctx.rcpt &&
        (v->kind == POLICY_PASS || v->kind == POLICY_SCORE || v->kind == POLICY_ACCEPT))
        rewrite_rcpt(r, v->rcpt_local);
    switch (v->kind) {
    case POLICY_PASS:
        if (c->acts_on_score) r->score_handled = 1;
        break;
    case POLICY_SCORE:
        r->score += v->score;
        if (c->acts_on_score) r->score_handled = 1;
        if (v->score > 0 && v->text[0] && v->score > r->best.score) {
            r->best = *v;
            if (!r->best.check) r->best.check = c->name;
        }
        if (r->ctx.listener && r->ctx.listener->reject_score > 0 &&
            r->score >= r->ctx.listener->reject_score) {
            finish_by_score(r, POLICY_REJECT);
            return;
        }
        break;
    case POLICY_ACCEPT:
    case POLICY_GREYLIST:
    case POLICY_TEMPFAIL:
    case POLICY_REJECT: {
        struct policy_verdict out = *v;
        if (!out.check) out.check = c->name;
        out.score = r->score;
        finish(r, &out);
        return;
    }
    }
    run_next(r);
}

static int applies(const struct policy_run *r, const struct policy_check *c)
{
    if (!(c->stages & (1u << r->stage))) return 0;
    if (c->wanted && !c->wanted(&r->ctx, r->stage)) return 0;
    return !policy_check_skipped(c, &r->ctx);
}

static void run_next(struct policy_run *r)
{
    while (r->next < r->nchecks && !applies(r, r->checks[r->next]))
        r->next++;
    if (r->next >= r->nchecks) {
        const struct conf_listen *l = r->ctx.listener;
        /* with a transaction, the MAIL stage's score waits for RCPT, where greylisting
         * has its triplet */
        int carried = r->ctx.txn && r->stage == POLICY_MAIL;
        if (l && l->greylist_score > 0 && r->score >= l->greylist_score && !r->score_handled &&
            !carried) {
            finish_by_score(r, POLICY_GREYLIST);
            return;
        }
        struct policy_verdict v = {.kind = POLICY_PASS, .score = r->score};
        finish(r, &v);
        return;
    }
    r->running = r->checks[r->next++];
    r->ctx.score = r->score;
    r->handle = r->running->start(&r->ctx, r->stage, check_done, r);
}

/* Deferred first step, so done never runs inside policy_run_start. */
static void start_cb(evutil_socket_t fd, short what, void *arg)
{
    run_next(arg);
}

const struct policy_check *const *policy_checks(size_t *n)
{
    *n = NCHECKS;
    return all_checks;
}

const struct policy_check *policy_check_find(const char *name)
{
    for (size_t i = 0; i < NOPTIONAL; i++)
        if (strcmp(optional_checks[i]->name, name) == 0) return optional_checks[i];
    return NULL;
}

int policy_check_skipped(const struct policy_check *c, const struct policy_ctx *ctx)
{
    /* Submission is not MX: IP reputation never judges an authenticated client. */
    return c->judges_client_ip && ctx->auth_user != NULL;
}

struct policy_run *policy_run_start(const struct policy_ctx *ctx, enum policy_stage stage,
                                    void (*done)(void *, const struct policy_verdict *), void *arg)
{
    const char *words = ctx->listener && ctx->listener->checks ? ctx->listener->checks : "";
    size_t cap = NBUILTIN + NFINAL + 1;
    for (const char *p = words; *p; p++)
        cap += *p == ' ';
    const struct policy_check **list = xcalloc(cap + NOPTIONAL, sizeof *list);
    size_t n = 0;
    for (size_t i = 0; i < NBUILTIN; i++)
        list[n++] = builtin_checks[i];
    for (const char *p = words; *p;) {
        size_t len = strcspn(p, " ");
        char name[64];
        if (len > 0 && len < sizeof name) {
            memcpy(name, p, len);
            name[len] = '\0';
            const struct policy_check *c = policy_check_find(name);
            if (c) list[n++] = c; /* the config only holds known names */
        }
        p += len;
        while (*p == ' ')
            p++;
    }
    for (size_t i = 0; i < NFINAL; i++)
        list[n++] = final_checks[i];
    struct policy_run *r =
        policy_run_start_with(ctx, stage, (const struct policy_check *const *)list, n, done, arg);
    r->owned = list;
    return r;
}

struct policy_run *policy_run_start_with(const struct policy_ctx *ctx, enum policy_stage stage,
                                         const struct policy_check *const *checks, size_t nchecks,
                                         void (*done)(void *, const struct policy_verdict *),
                                         void *arg)
{
    struct policy_run *r = xcalloc(1, sizeof *r);
    r->checks = checks;
    r->nchecks = nchecks;
    r->ctx = *ctx;
    r->stage = stage;
    if (ctx->txn && stage == POLICY_RCPT) r->score = policy_txn_carry(ctx->txn);
    r->done = done;
    r->arg = arg;
    buf_init(&r->log, 4096);
    r->ev_start = event_new(loop_base, -1, 0, start_cb, r);
    event_active(r->ev_start, EV_TIMEOUT, 0);
    return r;
}

void policy_run_trace(struct policy_run *r,
                      void (*fn)(void *arg, const struct policy_check *c,
                                 const struct policy_verdict *v),
                      void *arg)
{
    r->trace = fn;
    r->trace_arg = arg;
}

void policy_run_cancel(struct policy_run *r)
{
    if (!r) return;
    if (r->handle && r->running && r->running->cancel) r->running->cancel(r->handle);
    run_free(r);
}
