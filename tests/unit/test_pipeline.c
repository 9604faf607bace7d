/* test_pipeline.c: the policy pipeline's folding of verdicts, its deferral promise,
 * and "submission is not MX": a check that judges the client IP never runs for an
 * authenticated session, whatever the listener; this holds for every check the
 * pipeline has, so each future DNSBL/greylisting/reputation check is covered. */
#include "core/compat.h"

#include <event2/event.h>

#include <arpa/inet.h>

#include "core/conf.h"
#include "policy/policy.h"

#include "check.h"

static struct event_base *base;

/* A fake check: answers a fixed verdict on the next loop turn, counts its runs. */
struct fake {
    struct policy_check check;
    enum policy_kind kind;
    int score;
    int runs;
    const char *rcpt_local; /* answered as the verdict's rcpt_local */
    char seen_local[65];    /* ctx->rcpt->local when it started */
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
    if (c->f->rcpt_local) str_copy(v.rcpt_local, c->f->rcpt_local, sizeof v.rcpt_local);
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
        if (ctx->rcpt && ctx->rcpt->local)                                                         \
            str_copy(c->f->seen_local, ctx->rcpt->local, sizeof c->f->seen_local);                 \
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

/* pregreet.c: the facts the session gathered, weighed with the listener's scores. */
static void test_pregreet_checks(void)
{
    struct conf_listen l = {.reject_score = 100,
                            .early_talker_score = 5,
                            .pipelining_score = 4,
                            .rdns_missing_score = 3,
                            .rdns_mismatch_score = 2};
    static const struct {
        int early, piped;
        enum rdns_status rdns;
        const char *ptr;
        int kind, score;  /* the stage's result */
        const char *text; /* part of the best refusal text, NULL: none */
    } t[] = {
        {0, 0, RDNS_OK, "mx.example.org", POLICY_PASS, 0, NULL},
        {0, 0, RDNS_UNCHECKED, "", POLICY_PASS, 0, NULL},
        {0, 0, RDNS_TEMPFAIL, "", POLICY_PASS, 0, NULL},
        {1, 0, RDNS_OK, "x", POLICY_PASS, 5, "sent commands before the greeting"},
        {0, 1, RDNS_OK, "x", POLICY_PASS, 4, "pipelined commands without PIPELINING"},
        {1, 1, RDNS_NO_PTR, "", POLICY_PASS, 12, "sent commands before the greeting"},
        {0, 0, RDNS_NO_PTR, "", POLICY_PASS, 3, "has no reverse DNS (PTR) record"},
        {0, 0, RDNS_MISMATCH, "liar\r\nx.example", POLICY_PASS, 2,
         "name liar\\x0d\\x0ax.example does not resolve back"},
    };
    const struct policy_check *checks[] = {&policy_check_pregreet, &policy_check_rdns};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct policy_ctx c = {0};
        c.listener = &l;
        str_copy(c.client_addr, "192.0.2.9", sizeof c.client_addr);
        c.early_talker = t[i].early;
        c.bad_pipelining = t[i].piped;
        c.rdns = t[i].rdns;
        str_copy(c.ptr_name, t[i].ptr, sizeof c.ptr_name);
        l.reject_score = 100;
        struct result r = run(&c, checks, 2);
        CHECK((int)r.v.kind == t[i].kind && r.v.score == t[i].score,
              "pregreet %zu: kind %d score %d", i, r.v.kind, r.v.score);
        if (!t[i].text) continue;
        /* at the reject score the text of the finding that weighed most is the reply */
        l.reject_score = t[i].score;
        r = run(&c, checks, 2);
        CHECK(r.v.kind == POLICY_REJECT && r.v.code == 554 && strstr(r.v.text, t[i].text),
              "pregreet %zu: kind %d text \"%s\"", i, r.v.kind, r.v.text);
    }
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

    /* thresholds: scores add up; reject_score ends the stage at once with the text of
     * the check that added most; greylist_score at the end of the stage */
    struct conf_listen l = {.reject_score = 10, .greylist_score = 5};
    struct policy_ctx lctx = {0};
    lctx.listener = &l;
    str_copy(lctx.client_addr, "192.0.2.9", sizeof lctx.client_addr);
    setup();
    fakes[0].kind = POLICY_SCORE;
    fakes[0].score = 6;
    fakes[1].kind = POLICY_SCORE;
    fakes[1].score = 4;
    r = run(&lctx, checks, 4);
    CHECK(r.v.kind == POLICY_REJECT && r.v.code == 554 && r.v.score == 10, "kind %d score %d",
          r.v.kind, r.v.score);
    CHECK(strcmp(r.v.enh, "5.7.1") == 0 && strstr(r.v.text, "[192.0.2.9]"), "text %s", r.v.text);
    CHECK(fakes[2].runs == 0, "checks after the reject score ran");
    setup();
    fakes[0].kind = POLICY_SCORE;
    fakes[0].score = 5;
    r = run(&lctx, checks, 4);
    CHECK(r.v.kind == POLICY_GREYLIST && r.v.code == 451 && strcmp(r.v.enh, "4.7.1") == 0,
          "greylist score: kind %d code %d", r.v.kind, r.v.code);
    CHECK(fakes[3].runs == 1, "greylisting by score ended the stage early");
    /* a negative weight (an allowlist) offsets a listing */
    setup();
    fakes[0].kind = POLICY_SCORE;
    fakes[0].score = 12;
    fakes[1].kind = POLICY_SCORE;
    fakes[1].score = -8;
    checks[0] = &fakes[1].check;
    checks[1] = &fakes[0].check;
    r = run(&lctx, checks, 4);
    CHECK(r.v.kind == POLICY_PASS && r.v.score == 4, "allowlist first: kind %d score %d", r.v.kind,
          r.v.score);
    checks[0] = &fakes[0].check;
    checks[1] = &fakes[1].check;
    /* a check that acts on the score itself (greylisting) takes over greylist_score */
    setup();
    fakes[0].kind = POLICY_SCORE;
    fakes[0].score = 7;
    fakes[1].check.acts_on_score = 1;
    r = run(&lctx, checks, 4);
    CHECK(r.v.kind == POLICY_PASS && r.v.score == 7, "acts_on_score: kind %d", r.v.kind);
    /* thresholds of 0 are off */
    struct conf_listen off = {0};
    lctx.listener = &off;
    setup();
    fakes[0].kind = POLICY_SCORE;
    fakes[0].score = 1000;
    r = run(&lctx, checks, 4);
    CHECK(r.v.kind == POLICY_PASS && r.v.score == 1000, "thresholds 0: kind %d", r.v.kind);

    /* a check that takes the recipient under another local part (BATV): the checks
     * after it see that address, the stage's verdict carries it; the caller's stays */
    setup();
    struct addr tagged = {.local = "prvs=1123abcdef=bob", .domain = "example.org"};
    struct policy_ctx rctx = {0};
    rctx.rcpt = &tagged;
    fakes[0].rcpt_local = "bob";
    r = run(&rctx, checks, 4);
    CHECK(r.v.kind == POLICY_PASS && strcmp(r.v.rcpt_local, "bob") == 0, "rewritten: %s",
          r.v.rcpt_local);
    CHECK(strcmp(fakes[0].seen_local, "prvs=1123abcdef=bob") == 0 &&
              strcmp(fakes[1].seen_local, "bob") == 0 && strcmp(fakes[3].seen_local, "bob") == 0,
          "later checks see the plain address: %s %s", fakes[0].seen_local, fakes[1].seen_local);
    CHECK(strcmp(tagged.local, "prvs=1123abcdef=bob") == 0, "caller's address untouched");
    setup();
    r = run(&rctx, checks, 4);
    CHECK(r.v.rcpt_local[0] == '\0', "no rewrite: %s", r.v.rcpt_local);

    /* DNS list sites (Postfix's postscreen_dnsbl_sites syntax) */
    struct conf_dnsbl_site site;
    char why[300];
    const unsigned char c2[4] = {127, 0, 0, 2}, c12[4] = {127, 0, 0, 12}, c4[4] = {127, 0, 1, 4},
                        far[4] = {192, 0, 2, 1}, wl[4] = {127, 0, 15, 3};
    CHECK(conf_dnsbl_site_parse("zen.Example.ORG.=127.0.0.[2..11]*3", &site, why, sizeof why) == 0,
          "%s", why);
    CHECK(strcmp(site.zone, "zen.example.org") == 0 && site.weight == 3, "zone %s", site.zone);
    CHECK(conf_dnsbl_site_match(&site, c2) && !conf_dnsbl_site_match(&site, c12), "range");
    CHECK(conf_dnsbl_site_parse("wl.example=127.0.[0..255].[1;3]*-5", &site, why, sizeof why) == 0,
          "%s", why);
    CHECK(site.weight == -5 && conf_dnsbl_site_match(&site, wl) &&
              !conf_dnsbl_site_match(&site, c2),
          "list filter");
    CHECK(conf_dnsbl_site_parse("bl.example", &site, why, sizeof why) == 0 && site.weight == 1 &&
              conf_dnsbl_site_match(&site, c4) && !conf_dnsbl_site_match(&site, far),
          "no filter: 127/8");
    static const char *const bad_sites[] = {
        "",
        "=127.0.0.2",
        "bl..example",
        "bl.example=127.0.0",
        "bl.example*",
        "bl.example=127.0.0.[2..1]",
        "bl.example=127.0.0.256",
        "bl.example*x",
        "bl example",
        "bl.example=127.0.0.[2",
    };
    for (size_t i = 0; i < sizeof bad_sites / sizeof bad_sites[0]; i++)
        CHECK(conf_dnsbl_site_parse(bad_sites[i], &site, why, sizeof why) == -1, "accepted \"%s\"",
              bad_sites[i]);

    /* query names (RFC 5782 2.1, 2.4) */
    char qn[300];
    unsigned char v4[4] = {192, 0, 2, 9}, v6[16];
    inet_pton(AF_INET6, "2001:db8::1:2", v6);
    CHECK(policy_dnsbl_qname(AF_INET, v4, "bl.example", qn, sizeof qn) == 0 &&
              strcmp(qn, "9.2.0.192.bl.example") == 0,
          "v4 %s", qn);
    CHECK(policy_dnsbl_qname(AF_INET6, v6, "bl.example", qn, sizeof qn) == 0 &&
              strcmp(qn, "2.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2."
                         "bl.example") == 0,
          "v6 %s", qn);
    CHECK(policy_dnsbl_qname(AF_INET, v4, "bl.example", qn, 10) == -1, "short buffer");
    /* listing codes: 127/8 but not Spamhaus's refusals */
    const unsigned char r254[4] = {127, 255, 255, 254}, r252[4] = {127, 255, 255, 252},
                        r251[4] = {127, 255, 255, 251};
    CHECK(policy_dnsbl_is_code(c2) && policy_dnsbl_is_code(r251), "listing codes");
    CHECK(!policy_dnsbl_is_code(r254) && !policy_dnsbl_is_code(r252) && !policy_dnsbl_is_code(far),
          "refusal codes");
    /* TXT text: printable, one space for runs of other bytes, trimmed */
    char t[32];
    static const char raw[] = "  see\r\n https://x\x01\x80y  ";
    CHECK(policy_dnsbl_text(raw, sizeof raw - 1, t, sizeof t) == 15 &&
              strcmp(t, "see https://x y") == 0,
          "text \"%s\"", t);
    CHECK(policy_dnsbl_text("abcdefgh", 8, t, 5) == 4 && strcmp(t, "abcd") == 0, "cut \"%s\"", t);

    /* cancel: done never runs */
    setup();
    struct result rc = {0};
    struct policy_run *pr = policy_run_start_with(&ctx, POLICY_RCPT, checks, 4, on_done, &rc);
    policy_run_cancel(pr); /* before its first step */
    for (int i = 0; i < 20; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    CHECK(rc.done == 0, "done ran after cancel");

    test_pregreet_checks();

    event_base_free(base);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
