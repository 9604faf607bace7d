/* pipeline.c: runs the configured checks of a stage in order and folds their
 * verdicts. Authenticated sessions skip every check that judges the client IP. */
#include "core/compat.h"

#include <stdarg.h>

#include <event2/event.h>

#include "policy/policy.h"

/* The checks in order. Later: taken from the listener's config. */
static const struct policy_check *const all_checks[] = {
    &policy_check_recipient,
    &policy_check_sender_login,
    &policy_check_sender_verify,
    &policy_check_greylist,
};
#define NCHECKS (sizeof all_checks / sizeof all_checks[0])

struct policy_run {
    const struct policy_check *const *checks;
    size_t nchecks;
    const struct policy_ctx *ctx;
    enum policy_stage stage;
    size_t next;  /* index of the next check to consider */
    void *handle; /* the running check's handle */
    const struct policy_check *running;
    int score;
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
    struct event *ev_start; /* defers the first step out of policy_run_start */
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

static void run_next(struct policy_run *r);

static void finish(struct policy_run *r, const struct policy_verdict *v)
{
    void (*done)(void *, const struct policy_verdict *) = r->done;
    void *arg = r->arg;
    if (r->ev_start) event_free(r->ev_start);
    free(r);
    done(arg, v);
}

static void check_done(void *arg, const struct policy_verdict *v)
{
    struct policy_run *r = arg;
    r->handle = NULL;
    switch (v->kind) {
    case POLICY_PASS:
        break;
    case POLICY_SCORE:
        r->score += v->score;
        break;
    case POLICY_ACCEPT:
    case POLICY_GREYLIST:
    case POLICY_TEMPFAIL:
    case POLICY_REJECT: {
        struct policy_verdict out = *v;
        if (!out.check) out.check = r->running->name;
        finish(r, &out);
        return;
    }
    }
    run_next(r);
}

static int applies(const struct policy_run *r, const struct policy_check *c)
{
    if (!(c->stages & (1u << r->stage))) return 0;
    return !policy_check_skipped(c, r->ctx);
}

static void run_next(struct policy_run *r)
{
    while (r->next < r->nchecks && !applies(r, r->checks[r->next]))
        r->next++;
    if (r->next >= r->nchecks) {
        struct policy_verdict v = {.kind = POLICY_PASS, .score = r->score};
        finish(r, &v);
        return;
    }
    r->running = r->checks[r->next++];
    r->handle = r->running->start(r->ctx, r->stage, check_done, r);
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

int policy_check_skipped(const struct policy_check *c, const struct policy_ctx *ctx)
{
    /* Submission is not MX: IP reputation never judges an authenticated client. */
    return c->judges_client_ip && ctx->auth_user != NULL;
}

struct policy_run *policy_run_start(const struct policy_ctx *ctx, enum policy_stage stage,
                                    void (*done)(void *, const struct policy_verdict *), void *arg)
{
    return policy_run_start_with(ctx, stage, all_checks, NCHECKS, done, arg);
}

struct policy_run *policy_run_start_with(const struct policy_ctx *ctx, enum policy_stage stage,
                                         const struct policy_check *const *checks, size_t nchecks,
                                         void (*done)(void *, const struct policy_verdict *),
                                         void *arg)
{
    struct policy_run *r = xcalloc(1, sizeof *r);
    r->checks = checks;
    r->nchecks = nchecks;
    r->ctx = ctx;
    r->stage = stage;
    r->done = done;
    r->arg = arg;
    r->ev_start = event_new(loop_base, -1, 0, start_cb, r);
    event_active(r->ev_start, EV_TIMEOUT, 0);
    return r;
}

void policy_run_cancel(struct policy_run *r)
{
    if (!r) return;
    if (r->handle && r->running && r->running->cancel) r->running->cancel(r->handle);
    if (r->ev_start) event_free(r->ev_start);
    free(r);
}
