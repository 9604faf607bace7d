/* pregreet.c: postscreen-like tests of how a client behaves (docs/inbound.md). The
 * session gathers the facts (early talk during the greeting pause, pipelining before
 * PIPELINING was offered, the reverse lookup); these checks only weigh them with the
 * listener's scores. Nothing here does I/O. */
#include "core/compat.h"

#include <event2/event.h>

#include "core/conf.h"
#include "core/util.h"
#include "policy/policy.h"

struct fact_check {
    struct event *ev; /* defers the answer out of start */
    struct policy_verdict v;
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
};

static void answer(evutil_socket_t fd, short what, void *arg)
{
    struct fact_check *f = arg;
    struct policy_verdict v = f->v;
    void (*done)(void *, const struct policy_verdict *) = f->done;
    void *darg = f->arg;
    event_free(f->ev);
    free(f);
    done(darg, &v);
}

static void *defer(struct policy_verdict *v, void (*done)(void *, const struct policy_verdict *),
                   void *arg)
{
    struct fact_check *f = xcalloc(1, sizeof *f);
    f->v = *v;
    f->done = done;
    f->arg = arg;
    f->ev = event_new(policy_loop(), -1, 0, answer, f);
    event_active(f->ev, EV_TIMEOUT, 0);
    return f;
}

static void cancel(void *handle)
{
    struct fact_check *f = handle;
    event_free(f->ev);
    free(f);
}

/* Add one finding to v: its weight, its words in the detail, and the refusal text
 * when it weighs most so far (used when the score reaches reject_score). */
static void found(struct policy_verdict *v, int *top, int weight, const char *detail,
                  const char *text)
{
    v->kind = POLICY_SCORE;
    v->score += weight;
    size_t dl = strlen(v->detail);
    snprintf(v->detail + dl, sizeof v->detail - dl, "%s%s", dl ? ", " : "", detail);
    if (!v->text[0] || weight > *top) {
        *top = weight;
        v->code = 554;
        str_copy(v->enh, "5.7.1", sizeof v->enh);
        str_copy(v->text, text, sizeof v->text);
    }
}

static void *pregreet_start(const struct policy_ctx *ctx, enum policy_stage stage,
                            void (*done)(void *, const struct policy_verdict *), void *arg)
{
    struct policy_verdict v = {.kind = POLICY_PASS};
    const struct conf_listen *l = ctx->listener;
    int top = 0;
    char text[300];
    if (l && ctx->early_talker) {
        snprintf(text, sizeof text,
                 "Service unavailable; client [%s] sent commands before the greeting",
                 ctx->client_addr);
        found(&v, &top, l->early_talker_score, "talked before the greeting", text);
    }
    if (l && ctx->bad_pipelining) {
        snprintf(text, sizeof text,
                 "Service unavailable; client [%s] pipelined commands without PIPELINING",
                 ctx->client_addr);
        found(&v, &top, l->pipelining_score, "pipelining before EHLO offered it", text);
    }
    return defer(&v, done, arg);
}

static void *rdns_start(const struct policy_ctx *ctx, enum policy_stage stage,
                        void (*done)(void *, const struct policy_verdict *), void *arg)
{
    struct policy_verdict v = {.kind = POLICY_PASS};
    const struct conf_listen *l = ctx->listener;
    int top = 0;
    char text[300], detail[300];
    if (l && ctx->rdns == RDNS_NO_PTR) {
        snprintf(text, sizeof text,
                 "Service unavailable; client [%s] has no reverse DNS (PTR) record",
                 ctx->client_addr);
        snprintf(detail, sizeof detail, "no PTR for %s", ctx->client_addr);
        found(&v, &top, l->rdns_missing_score, detail, text);
    } else if (l && ctx->rdns == RDNS_MISMATCH) {
        /* the PTR name is remote data: only printable ASCII reaches reply and log */
        char name[200];
        log_escape(name, sizeof name, ctx->ptr_name, strlen(ctx->ptr_name));
        snprintf(text, sizeof text,
                 "Service unavailable; client [%s]: its reverse DNS name %.120s does not "
                 "resolve back to it",
                 ctx->client_addr, name);
        snprintf(detail, sizeof detail, "PTR %.120s does not resolve to %s", name,
                 ctx->client_addr);
        found(&v, &top, l->rdns_mismatch_score, detail, text);
    }
    return defer(&v, done, arg);
}

/* Both judge the client: never run for authenticated sessions. At RCPT, with the DNS
 * lists, so that the scores add up in one stage. */
const struct policy_check policy_check_pregreet = {
    .name = "pregreet",
    .stages = 1u << POLICY_RCPT,
    .judges_client_ip = 1,
    .start = pregreet_start,
    .cancel = cancel,
};

const struct policy_check policy_check_rdns = {
    .name = "rdns",
    .stages = 1u << POLICY_RCPT,
    .judges_client_ip = 1,
    .start = rdns_start,
    .cancel = cancel,
};
