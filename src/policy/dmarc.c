/* dmarc.c: DMARC (RFC 7489) as a check of the pipeline (policy.h, docs/inbound.md):
 * at the end of the message the From: domain's policy is looked up (then its
 * organisational domain's), evaluated with the aligned SPF and DKIM results the
 * checks before it left in the record, and the listener's action applied. Counts go
 * to the store for aggregate reports. The record parser and the public suffix list
 * are core/dmarc.c's. */
#include "core/compat.h"

#include <event2/event.h>

#include "core/authres.h"
#include "core/conf.h"
#include "core/dmarc.h"
#include "core/header.h"
#include "core/log.h"
#include "core/util.h"
#include "core/work.h"
#include "dns/dns.h"
#include "policy/policy.h"
#include "store/store.h"

#ifndef KURIER_PSL_FILE
#define KURIER_PSL_FILE "/usr/share/publicsuffix/public_suffix_list.dat"
#endif

/* The public suffix list, read once (loop thread). Missing: the default rule only. */
static const struct psl *psl_get(void)
{
    static struct psl *l;
    static int tried;
    if (tried) return l;
    tried = 1;
    const char *path = getenv("KURIER_PSL_FILE");
    if (!path || !*path) path = KURIER_PSL_FILE;
    size_t len = 0;
    char *text = file_read(path, &len);
    if (!text) {
        log_warn("dmarc",
                 "cannot read the public suffix list %s: organisational domains are the last "
                 "two labels (install Debian's publicsuffix package)",
                 path);
        return NULL;
    }
    l = psl_parse(text, len);
    free(text);
    return l;
}

struct dmarc_job {
    struct policy_txn *txn;
    const struct conf_listen *l;
    struct store *store;
    struct dns *dns;
    struct dns_query *q;
    struct event *ev; /* defers an answer without lookups */
    char from[256], org[256];
    char client_addr[64];
    int at_org; /* the lookup in flight is the organisational domain's */
    struct policy_verdict v;
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
};

static void job_free(struct dmarc_job *j)
{
    if (j->q) dns_cancel(j->q);
    if (j->ev) event_free(j->ev);
    free(j);
}

static void answer(struct dmarc_job *j)
{
    void (*done)(void *, const struct policy_verdict *) = j->done;
    void *darg = j->arg;
    struct policy_verdict v = j->v;
    job_free(j);
    done(darg, &v);
}

static void deferred(evutil_socket_t fd, short what, void *arg)
{
    answer(arg);
}

static void answer_later(struct dmarc_job *j)
{
    j->ev = event_new(policy_loop(), -1, 0, deferred, j);
    event_active(j->ev, EV_TIMEOUT, 0);
}

static void note(struct dmarc_job *j, const char *result, const char *comment)
{
    if (!j->txn) return;
    struct authres *ar = policy_txn_authres(j->txn);
    authres_add(ar, "dmarc", result, comment);
    if (j->from[0]) authres_prop(ar, "header", "from", j->from);
}

/* Aggregate data (worker: the store may block). */
struct agg {
    struct store *st;
    char day[16], ip[64], from[256], pdomain[256], dis[16], dkim[8], spf[8];
};

static void agg_run(void *arg)
{
    struct agg *a = arg;
    struct store_dmarc r = {a->day, a->ip, a->from, a->pdomain, a->dis, a->dkim, a->spf};
    if (store_dmarc_count(a->st, &r) != 0)
        log_warn("dmarc", "cannot count a result for aggregate reports (database error)");
}

static void agg_done(void *arg)
{
    free(arg);
}

static void count(struct dmarc_job *j, const char *pdomain, const char *dis, int dkim_ok,
                  int spf_ok)
{
    if (!j->store) return;
    struct agg *a = xcalloc(1, sizeof *a);
    a->st = j->store;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(a->day, sizeof a->day, "%Y-%m-%d", &tm);
    str_copy(a->ip, j->client_addr, sizeof a->ip);
    str_copy(a->from, j->from, sizeof a->from);
    str_copy(a->pdomain, pdomain, sizeof a->pdomain);
    str_copy(a->dis, dis, sizeof a->dis);
    str_copy(a->dkim, dkim_ok ? "pass" : "fail", sizeof a->dkim);
    str_copy(a->spf, spf_ok ? "pass" : "fail", sizeof a->spf);
    work_submit(agg_run, agg_done, a); /* owns a; no session needed */
}

static void evaluate(struct dmarc_job *j, const struct dmarc_record *rec, const char *pdomain)
{
    const struct psl *psl = psl_get();
    const struct policy_auth *pa = j->txn ? policy_txn_auth(j->txn) : NULL;
    int spf_ok = 0, dkim_ok = 0;
    if (pa) {
        spf_ok = strcmp(pa->spf, "pass") == 0 &&
                 dmarc_aligned(psl, pa->spf_domain, j->from, rec->aspf_strict);
        for (size_t i = 0; i < pa->ndkim && !dkim_ok; i++)
            dkim_ok = strcmp(pa->dkim[i].result, "pass") == 0 &&
                      dmarc_aligned(psl, pa->dkim[i].d, j->from, rec->adkim_strict);
    }
    /* RFC 7489 6.6.3: sp= applies when the record is the organisational domain's */
    enum dmarc_policy p = j->at_org ? rec->sp : rec->p;
    enum dmarc_policy dis = DMARC_P_NONE;
    int pass = spf_ok || dkim_ok;
    if (!pass) {
        dis = p;
        /* pct: the policy applies to that share of failing mail; the rest gets the
         * next lower one (RFC 7489 6.6.4). arc4random: random() was never seeded, so
         * every start drew the same sequence */
        if (rec->pct < 100 && dis != DMARC_P_NONE && (int)arc4random_uniform(100) >= rec->pct)
            dis = dis == DMARC_P_REJECT ? DMARC_P_QUARANTINE : DMARC_P_NONE;
    }
    char comment[160];
    snprintf(comment, sizeof comment, "p=%s sp=%s dis=%s", dmarc_policy_name(rec->p),
             dmarc_policy_name(rec->sp), dmarc_policy_name(dis));
    note(j, pass ? "pass" : "fail", comment);
    count(j, pdomain, dmarc_policy_name(dis), dkim_ok, spf_ok);
    j->v.result = pass ? "pass" : "fail";
    snprintf(j->v.detail, sizeof j->v.detail, "%s %.120s p=%s dis=%s", pass ? "pass" : "fail",
             j->from, dmarc_policy_name(p), dmarc_policy_name(dis));
    if (pass || dis == DMARC_P_NONE) return;
    int act = dis == DMARC_P_REJECT ? j->l->dmarc_reject : j->l->dmarc_quarantine;
    if (act == CONF_ACTION_REJECT) {
        policy_verdict_set(&j->v, POLICY_REJECT, 550, "5.7.1",
                           "Message refused: the DMARC policy of %s (p=%s) rejects mail that "
                           "fails its SPF and DKIM checks",
                           j->from, dmarc_policy_name(dis));
    } else if (act == CONF_ACTION_TEMPFAIL) {
        policy_verdict_set(&j->v, POLICY_TEMPFAIL, 451, "4.7.1",
                           "The DMARC policy of %s (p=%s) fails; try again later", j->from,
                           dmarc_policy_name(dis));
    } else if (act) {
        policy_verdict_set(&j->v, POLICY_SCORE, 550, "5.7.1",
                           "Message refused: the DMARC policy of %s (p=%s) fails", j->from,
                           dmarc_policy_name(dis));
        j->v.score = act;
    }
    j->v.check = "dmarc";
    j->v.result = "fail";
    snprintf(j->v.detail, sizeof j->v.detail, "fail %.120s p=%s dis=%s", j->from,
             dmarc_policy_name(p), dmarc_policy_name(dis));
}

static void lookup(struct dmarc_job *j, const char *domain);

static void on_txt(void *arg, const struct dns_result *r)
{
    struct dmarc_job *j = arg;
    j->q = NULL;
    const char *domain = j->at_org ? j->org : j->from;
    if (r->status == DNS_TEMPFAIL || r->status == DNS_BOGUS) {
        note(j, "temperror", "policy lookup failed");
        j->v.result = "temperror";
        answer(j);
        return;
    }
    struct dmarc_record rec, found;
    int nfound = 0, broken = 0;
    char err[160] = "";
    for (size_t i = 0; r->status == DNS_OK && i < r->nstrs; i++) {
        int rc = dmarc_record_parse(r->strs[i], strlen(r->strs[i]), &rec, err, sizeof err);
        if (rc == 1) {
            found = rec;
            nfound++;
        } else if (rc < 0) {
            broken++;
        }
    }
    if (nfound == 1) {
        evaluate(j, &found, domain);
        answer(j);
        return;
    }
    if (nfound == 0 && broken == 0 && !j->at_org && strcmp(j->org, j->from) != 0) {
        j->at_org = 1; /* RFC 7489 6.6.3: the organisational domain's record */
        lookup(j, j->org);
        return;
    }
    if (nfound > 1 || broken) {
        char why[200];
        snprintf(why, sizeof why, "%.80s at _dmarc.%.100s", nfound > 1 ? "several records" : err,
                 domain);
        note(j, "permerror", why);
        j->v.result = "permerror";
    } else {
        note(j, "none", "no policy");
        j->v.result = "none";
    }
    answer(j);
}

static void lookup(struct dmarc_job *j, const char *domain)
{
    char name[300];
    snprintf(name, sizeof name, "_dmarc.%s", domain);
    j->q = dns_query_txt(j->dns, name, on_txt, j);
}

/* The one From: domain of the header section, or -1 (with a reason). */
static int from_domain(const struct policy_ctx *ctx, char *out, size_t outsize, const char **why)
{
    size_t nfrom = 0;
    int ok = -1;
    *why = "no From: field";
    for (size_t i = 0; ctx->headers && i < ctx->headers_len;) {
        struct hdr_field f;
        int r = hdr_next(ctx->headers + i, ctx->headers_len - i, &f);
        if (r == 0) break;
        if (r < 0) {
            if (!f.line_len) break;
            i += f.line_len;
            continue;
        }
        if (hdr_name_is(&f, "From")) {
            nfrom++;
            ok = dmarc_from_domain(f.value, f.value_len, out, outsize);
            *why = ok ? "no single address in From:" : NULL;
        }
        i += (size_t)r;
    }
    if (nfrom > 1) {
        *why = "several From: fields";
        return -1;
    }
    return ok;
}

static void *dmarc_start(const struct policy_ctx *ctx, enum policy_stage stage,
                         void (*done)(void *, const struct policy_verdict *), void *arg)
{
    struct dmarc_job *j = xcalloc(1, sizeof *j);
    j->done = done;
    j->arg = arg;
    j->txn = ctx->txn;
    j->l = ctx->listener;
    j->store = ctx->store;
    j->dns = ctx->dns;
    j->v = (struct policy_verdict){.kind = POLICY_PASS, .check = "dmarc"};
    str_copy(j->client_addr, ctx->client_addr, sizeof j->client_addr);
    const char *why = NULL;
    if (from_domain(ctx, j->from, sizeof j->from, &why) != 0) {
        j->from[0] = '\0';
        note(j, "none", why);
        j->v.result = "none";
        answer_later(j);
        return j;
    }
    if (!ctx->dns || !j->l) {
        note(j, "none", "no resolver");
        j->v.result = "none";
        answer_later(j);
        return j;
    }
    psl_org_domain(psl_get(), j->from, j->org, sizeof j->org);
    lookup(j, j->from);
    return j;
}

static void dmarc_cancel(void *handle)
{
    job_free(handle);
}

const struct policy_check policy_check_dmarc = {
    .name = "dmarc",
    .stages = 1u << POLICY_EOM,
    .judges_client_ip = 1, /* never for authenticated sessions */
    .start = dmarc_start,
    .cancel = dmarc_cancel,
};
