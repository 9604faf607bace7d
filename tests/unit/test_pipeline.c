/* test_pipeline.c: the policy pipeline's folding of verdicts, its deferral promise,
 * and "submission is not MX": a check that judges the client IP never runs for an
 * authenticated session, whatever the listener; this holds for every check the
 * pipeline has, so each future DNSBL/greylisting/reputation check is covered. */
#include "core/compat.h"

#include <event2/event.h>

#include "policy/policy.h"

#include "check.h"

static struct event_base *base;

/* A fake check: answers a fixed verdict on the next loop turn, counts its runs. */
struct fake {
    struct policy_check check;
    enum policy_kind kind;
    int score;
    int runs;
};

struct fake_call {
    struct fake *f;
    struct event *ev;
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
};

static struct fake fakes[4];

static void fake_fire(evutil_socket_t fd, short what, void *arg)
{
    struct fake_call *c = arg;
    struct policy_verdict v;
    if (c->f->kind == POLICY_REJECT)
        policy_verdict_set(&v, POLICY_REJECT, 554, "5.7.1", "listed by %s", c->f->check.name);
    else
        policy_verdict_set(&v, c->f->kind, 0, "", "%s", "");
    v.score = c->f->score;
    void (*done)(void *, const struct policy_verdict *) = c->done;
    void *darg = c->arg;
    event_free(c->ev);
    free(c);
    done(darg, &v);
}

/* Each fake has its own start function so it knows itself. */
#define FAKE_START(n)                                                                              \
    static void *fake_start_##n(const struct policy_ctx *ctx, enum policy_stage stage,             \
                                void (*done)(void *, const struct policy_verdict *), void *arg)    \
    {                                                                                              \
        struct fake_call *c = xcalloc(1, sizeof *c);                                               \
        c->f = &fakes[n];                                                                          \
        c->f->runs++;                                                                              \
        c->done = done;                                                                            \
        c->arg = arg;                                                                              \
        c->ev = event_new(base, -1, 0, fake_fire, c);                                              \
        event_active(c->ev, EV_TIMEOUT, 0);                                                        \
        return c;                                                                                  \
    }
FAKE_START(0)
FAKE_START(1)
FAKE_START(2)
FAKE_START(3)

static void fake_cancel(void *h)
{
    struct fake_call *c = h;
    event_free(c->ev);
    free(c);
}

static void setup(void)
{
    static void *(*starts[4])(const struct policy_ctx *, enum policy_stage,
                              void (*)(void *, const struct policy_verdict *),
                              void *) = {fake_start_0, fake_start_1, fake_start_2, fake_start_3};
    static const char *names[4] = {"dnsbl-like", "greylist-like", "content", "late"};
    for (int i = 0; i < 4; i++) {
        memset(&fakes[i], 0, sizeof fakes[i]);
        fakes[i].check.name = names[i];
        fakes[i].check.stages = 1u << POLICY_RCPT;
        fakes[i].check.start = starts[i];
        fakes[i].check.cancel = fake_cancel;
        fakes[i].kind = POLICY_PASS;
    }
}

struct result {
    int done;
    int returned; /* policy_run_start had returned when done ran */
    struct policy_verdict v;
};

static void on_done(void *arg, const struct policy_verdict *v)
{
    struct result *r = arg;
    r->done++;
    r->v = *v;
}

static struct result run(const struct policy_ctx *ctx, const struct policy_check *const *checks,
                         size_t n)
{
    struct result r = {0};
    struct policy_run *pr = policy_run_start_with(ctx, POLICY_RCPT, checks, n, on_done, &r);
    CHECK(r.done == 0, "done ran inside policy_run_start");
    (void)pr;
    for (int i = 0; i < 100 && !r.done; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    CHECK(r.done == 1, "done ran %d times", r.done);
    return r;
}

int main(void)
{
    base = event_base_new();
    policy_init(base);
    struct policy_ctx ctx = {0};
    const struct policy_check *checks[4];
    for (int i = 0; i < 4; i++)
        checks[i] = &fakes[i].check;

    /* all pass: PASS, every check ran once, scores add up */
    setup();
    fakes[0].kind = POLICY_SCORE;
    fakes[0].score = 3;
    fakes[1].kind = POLICY_SCORE;
    fakes[1].score = 4;
    struct result r = run(&ctx, checks, 4);
    CHECK(r.v.kind == POLICY_PASS && r.v.score == 7, "kind %d score %d", r.v.kind, r.v.score);
    for (int i = 0; i < 4; i++)
        CHECK(fakes[i].runs == 1, "check %d ran %d times", i, fakes[i].runs);

    /* a reject stops the stage and names the check */
    setup();
    fakes[1].kind = POLICY_REJECT;
    r = run(&ctx, checks, 4);
    CHECK(r.v.kind == POLICY_REJECT && r.v.code == 554, "kind %d", r.v.kind);
    CHECK(r.v.check && strcmp(r.v.check, "greylist-like") == 0, "check %s",
          r.v.check ? r.v.check : "(null)");
    CHECK(fakes[2].runs == 0 && fakes[3].runs == 0, "checks after a reject ran");

    /* accept skips the rest */
    setup();
    fakes[0].kind = POLICY_ACCEPT;
    r = run(&ctx, checks, 4);
    CHECK(r.v.kind == POLICY_ACCEPT && fakes[1].runs == 0, "accept did not end the stage");

    /* a check for another stage does not run */
    setup();
    fakes[0].check.stages = 1u << POLICY_MAIL;
    fakes[0].kind = POLICY_REJECT;
    r = run(&ctx, checks, 4);
    CHECK(r.v.kind == POLICY_PASS && fakes[0].runs == 0, "MAIL check ran at RCPT");

    /* no checks at all: still deferred */
    r = run(&ctx, checks, 0);
    CHECK(r.v.kind == POLICY_PASS, "empty pipeline");

    /* Submission is not MX: IP-judging checks never run for authenticated clients */
    setup();
    fakes[0].check.judges_client_ip = 1;
    fakes[0].kind = POLICY_REJECT;
    fakes[1].check.judges_client_ip = 1;
    fakes[1].kind = POLICY_REJECT;
    struct policy_ctx authed = {0};
    authed.auth_user = "demo@example.test";
    r = run(&authed, checks, 4);
    CHECK(r.v.kind == POLICY_PASS, "authenticated client judged by IP checks (kind %d)", r.v.kind);
    CHECK(fakes[0].runs == 0 && fakes[1].runs == 0, "IP checks ran for an authenticated client");
    CHECK(fakes[2].runs == 1, "content check did not run");
    /* the same checks do run for an unauthenticated client */
    setup();
    fakes[0].check.judges_client_ip = 1;
    fakes[0].kind = POLICY_REJECT;
    r = run(&ctx, checks, 4);
    CHECK(r.v.kind == POLICY_REJECT && fakes[0].runs == 1, "IP check skipped for MX client");

    /* every check the real pipeline has obeys the rule */
    size_t n;
    const struct policy_check *const *real = policy_checks(&n);
    CHECK(n >= 1, "the pipeline has no checks");
    for (size_t i = 0; i < n; i++) {
        CHECK(policy_check_skipped(real[i], &authed) == real[i]->judges_client_ip,
              "check %s: skipped=%d judges_ip=%d", real[i]->name,
              policy_check_skipped(real[i], &authed), real[i]->judges_client_ip);
        CHECK(!policy_check_skipped(real[i], &ctx), "check %s skipped for MX clients",
              real[i]->name);
    }

    /* cancel: done never runs */
    setup();
    struct result rc = {0};
    struct policy_run *pr = policy_run_start_with(&ctx, POLICY_RCPT, checks, 4, on_done, &rc);
    policy_run_cancel(pr); /* before its first step */
    for (int i = 0; i < 20; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    CHECK(rc.done == 0, "done ran after cancel");

    event_base_free(base);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
