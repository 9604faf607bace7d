/* spf_check.c: SPF as a check of the pipeline (docs/inbound.md): at MAIL, the MAIL
 * FROM identity (HELO's for the null sender) through spf.c's check_host(); the
 * listener's spf_* say what each result does. The result goes into the transaction's
 * record as Received-SPF: (RFC 7208 9.1) and an spf Authentication-Results entry
 * (RFC 8601 2.7.2). Evaluation is spf.c's; headers are put on by the session. */
#include "core/compat.h"

#include <event2/event.h>

#include "core/authres.h"
#include "policy/policy.h"
#include "policy/spf.h"

struct spf_job {
    struct spf_check *c; /* NULL once it answered */
    struct event *ev;    /* defers a pass without DNS */
    struct policy_txn *txn;
    const struct conf_listen *l;
    char *sender, *helo, *hostname;
    char client_addr[64];
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
};

static void job_free(struct spf_job *j)
{
    if (j->ev) event_free(j->ev);
    free(j->sender);
    free(j->helo);
    free(j->hostname);
    free(j);
}

/* The listener's action for r: a score, CONF_ACTION_REJECT or _TEMPFAIL. */
static int action_for(const struct conf_listen *l, enum spf_result r)
{
    if (!l) return 0;
    switch (r) {
    case SPF_FAIL:
        return l->spf_fail;
    case SPF_SOFTFAIL:
        return l->spf_softfail;
    case SPF_TEMPERROR:
        return l->spf_temperror;
    case SPF_PERMERROR:
        return l->spf_permerror;
    case SPF_NONE:
    case SPF_NEUTRAL:
    case SPF_PASS:
        break;
    }
    return 0;
}

static void on_spf(void *arg, enum spf_result r, const char *text, int from_exp)
{
    struct spf_job *j = arg;
    j->c = NULL;
    /* the explanation is the sender domain's text (remote): one printable line */
    char why[256];
    policy_dnsbl_text(text, strlen(text), why, sizeof why);
    const char *name = spf_result_name(r);
    const char *identity = j->sender[0] ? j->sender : j->helo;

    if (j->txn) {
        char field[1024];
        if (spf_received_header(field, sizeof field, r, why, j->hostname, j->client_addr, j->sender,
                                j->helo) == 0)
            policy_txn_add_field(j->txn, field);
        /* for DMARC: the result and the domain it is about */
        struct policy_auth *pa = policy_txn_auth(j->txn);
        str_copy(pa->spf, name, sizeof pa->spf);
        const char *at = strrchr(identity, '@');
        str_copy(pa->spf_domain, at ? at + 1 : identity, sizeof pa->spf_domain);
        str_lower(pa->spf_domain);
        struct authres *ar = policy_txn_authres(j->txn);
        authres_add(ar, "spf", name, why);
        if (j->sender[0])
            authres_prop(ar, "smtp", "mailfrom", j->sender);
        else
            authres_prop(ar, "smtp", "helo", j->helo);
    }

    struct policy_verdict v;
    int act = action_for(j->l, r);
    int error = r == SPF_TEMPERROR || r == SPF_PERMERROR;
    if (act == CONF_ACTION_REJECT) {
        /* RFC 7208 8.4 and RFC 7372 3.2: 550 5.7.23 with the explanation; an error
         * result 5.7.24 */
        policy_verdict_set(&v, POLICY_REJECT, 550, error ? "5.7.24" : "5.7.23",
                           "SPF %s for %s from [%s]: %s", name, identity, j->client_addr, why);
    } else if (act == CONF_ACTION_TEMPFAIL) {
        /* RFC 7208 8.6: a temperror is 451 4.4.3 */
        policy_verdict_set(&v, POLICY_TEMPFAIL, 451,
                           r == SPF_TEMPERROR ? "4.4.3"
                           : error            ? "4.7.24"
                                              : "4.7.23",
                           "SPF %s for %s from [%s]: %s; try again later", name, identity,
                           j->client_addr, why);
    } else if (act) {
        /* a score: its text is the refusal when the sum reaches reject_score and SPF
         * weighed most */
        policy_verdict_set(&v, POLICY_SCORE, 550, error ? "5.7.24" : "5.7.23",
                           "SPF %s for %s from [%s]: %s", name, identity, j->client_addr, why);
        v.score = act;
    } else {
        memset(&v, 0, sizeof v);
        v.kind = POLICY_PASS;
    }
    v.check = "spf";
    v.result = name;
    char esc[200];
    snprintf(v.detail, sizeof v.detail, "%s %s%s", name, identity,
             from_exp ? " (explanation given)" : "");
    log_escape(esc, sizeof esc, v.detail, strlen(v.detail));
    str_copy(v.detail, esc, sizeof v.detail);
    void (*done)(void *, const struct policy_verdict *) = j->done;
    void *darg = j->arg;
    job_free(j);
    done(darg, &v);
}

static void no_dns(evutil_socket_t fd, short what, void *arg)
{
    struct spf_job *j = arg;
    struct policy_verdict v = {.kind = POLICY_PASS};
    void (*done)(void *, const struct policy_verdict *) = j->done;
    void *darg = j->arg;
    job_free(j);
    done(darg, &v);
}

static void *spf_start(const struct policy_ctx *ctx, enum policy_stage stage,
                       void (*done)(void *, const struct policy_verdict *), void *arg)
{
    struct spf_job *j = xcalloc(1, sizeof *j);
    j->done = done;
    j->arg = arg;
    j->txn = ctx->txn;
    j->l = ctx->listener;
    j->sender = ctx->sender ? addr_format(ctx->sender) : xstrdup("");
    j->helo = xstrdup(ctx->helo ? ctx->helo : "");
    j->hostname = xstrdup(ctx->conf && ctx->conf->hostname ? ctx->conf->hostname : "localhost");
    str_copy(j->client_addr, ctx->client_addr, sizeof j->client_addr);
    if (!ctx->dns) {
        j->ev = event_new(policy_loop(), -1, 0, no_dns, j);
        event_active(j->ev, EV_TIMEOUT, 0);
        return j;
    }
    j->c = spf_check_start(policy_loop(), ctx->dns, (const struct sockaddr *)&ctx->client_sa,
                           j->sender, j->helo, j->hostname, on_spf, j);
    return j;
}

static void spf_cancel(void *handle)
{
    struct spf_job *j = handle;
    spf_check_cancel(j->c);
    job_free(j);
}

const struct policy_check policy_check_spf = {
    .name = "spf",
    .stages = 1u << POLICY_MAIL,
    .judges_client_ip = 1,
    .start = spf_start,
    .cancel = spf_cancel,
};
