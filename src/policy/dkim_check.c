/* dkim_check.c: DKIM verification as a check of the pipeline (policy.h,
 * docs/inbound.md). At the end of the message the keys of the signatures that
 * dkim_stream.c found are looked up (async DNS, all at once) and every signature
 * judged. Parsing, canonicalization and cryptography are core/dkim.c's and
 * core/dkim_verify.c's. */
#include "core/compat.h"

#include <event2/event.h>

#include "core/authres.h"
#include "core/dkim_verify.h"
#include "core/log.h"
#include "dns/dns.h"
#include "policy/dkim_stream.h"
#include "policy/policy.h"

enum { SKEW = 300 }; /* seconds a t= may lie in the future (clocks differ) */

struct lookup {
    struct dkim_job *j;
    size_t idx;
    struct dns_query *q;
};

struct dkim_job {
    struct policy_txn *txn;
    struct policy_dkim_stream *d;
    struct event *ev; /* defers an answer without lookups */
    struct lookup look[POLICY_DKIM_MAX];
    size_t pending;
    char result[POLICY_DKIM_MAX][16];
    char why[POLICY_DKIM_MAX][160];
    int bits[POLICY_DKIM_MAX];
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
};

static void job_free(struct dkim_job *j)
{
    for (size_t i = 0; i < POLICY_DKIM_MAX; i++)
        if (j->look[i].q) dns_cancel(j->look[i].q);
    if (j->ev) event_free(j->ev);
    free(j);
}

static void set_result(struct dkim_job *j, size_t i, const char *res, const char *why)
{
    str_copy(j->result[i], res, sizeof j->result[i]);
    str_copy(j->why[i], why, sizeof j->why[i]);
}

static void finish(struct dkim_job *j)
{
    struct policy_verdict v = {.kind = POLICY_PASS, .check = "dkim"};
    struct policy_dkim_stream *d = j->d;
    size_t n = d ? d->nsig : 0;
    struct policy_auth *pa = j->txn ? policy_txn_auth(j->txn) : NULL;
    struct authres *ar = j->txn ? policy_txn_authres(j->txn) : NULL;
    int npass = 0;
    if (ar && n == 0) authres_add(ar, "dkim", "none", d && d->cut ? "header too long" : NULL);
    for (size_t i = 0; i < n; i++) {
        const struct stream_sig *s = &d->sigs[i];
        if (!strcmp(j->result[i], "pass")) npass++;
        if (ar) {
            char comment[200];
            if (!strcmp(j->result[i], "pass"))
                snprintf(comment, sizeof comment, "%d-bit %s key%s%s", j->bits[i],
                         s->sig.alg == DKIM_ED25519_SHA256 ? "ed25519" : "rsa",
                         j->why[i][0] ? ", " : "", j->why[i]); /* "key in testing mode" */
            else
                str_copy(comment, j->why[i], sizeof comment);
            authres_add(ar, "dkim", j->result[i], comment);
            if (s->sig.d[0]) authres_prop(ar, "header", "d", s->sig.d);
            if (s->sig.s[0]) authres_prop(ar, "header", "s", s->sig.s);
            if (s->sig.b_head[0]) authres_prop(ar, "header", "b", s->sig.b_head);
        }
        if (pa && pa->ndkim < POLICY_DKIM_MAX) {
            str_copy(pa->dkim[pa->ndkim].result, j->result[i], sizeof pa->dkim[0].result);
            str_copy(pa->dkim[pa->ndkim].d, s->sig.d, sizeof pa->dkim[0].d);
            pa->ndkim++;
        }
    }
    snprintf(v.detail, sizeof v.detail, "%zu signature%s, %d pass", n, n == 1 ? "" : "s", npass);
    v.result = n == 0 ? "none" : npass ? "pass" : "fail";
    void (*done)(void *, const struct policy_verdict *) = j->done;
    void *darg = j->arg;
    job_free(j);
    done(darg, &v);
}

static void deferred(evutil_socket_t fd, short what, void *arg)
{
    finish(arg);
}

/* Judge signature i with the key record(s) found. */
static void judge(struct dkim_job *j, size_t i, const struct dns_result *r)
{
    const struct stream_sig *s = &j->d->sigs[i];
    if (r->status == DNS_TEMPFAIL || r->status == DNS_BOGUS) {
        set_result(j, i, "temperror", "key lookup failed");
        return;
    }
    if (r->status != DNS_OK || r->nstrs == 0) {
        set_result(j, i, "permerror", "no key for signature");
        return;
    }
    struct dkim_key key;
    char err[160] = "";
    int ok = 0;
    for (size_t k = 0; k < r->nstrs && !ok; k++)
        ok = dkim_key_parse(r->strs[k], strlen(r->strs[k]), &key, err, sizeof err) == 0;
    if (!ok) {
        set_result(j, i, "permerror", err);
        return;
    }
    if (!key.plen) {
        set_result(j, i, "permerror", "key revoked");
        return;
    }
    if (key.strict && s->sig.i[0]) { /* t=s: i= in d= itself (RFC 6376 3.6.1) */
        const char *at = strrchr(s->sig.i, '@');
        if (!at || strcasecmp(at + 1, s->sig.d) != 0) {
            set_result(j, i, "permerror", "i= is a subdomain but the key says t=s");
            return;
        }
    }
    int rc = dkim_sig_check(&s->sig, &key, j->d->hdr.data ? j->d->hdr.data : "", j->d->hdr_end,
                            j->d->hdr.data + s->off, s->len, &j->bits[i], err, sizeof err);
    if (rc < 0)
        set_result(j, i, "permerror", err);
    else if (rc == 0)
        set_result(j, i, "fail", err);
    else if (key.testing)
        set_result(j, i, "pass", "key in testing mode");
    else
        set_result(j, i, "pass", "");
}

static void on_key(void *arg, const struct dns_result *r)
{
    struct lookup *lk = arg;
    struct dkim_job *j = lk->j;
    lk->q = NULL;
    judge(j, lk->idx, r);
    if (--j->pending == 0) finish(j);
}

/* What can be said before the key: "" when the key decides. */
static void precheck(struct dkim_job *j, size_t i, long long now)
{
    struct stream_sig *s = &j->d->sigs[i];
    if (s->bad) {
        set_result(j, i, "permerror", s->err);
        return;
    }
    if (s->sig.alg == DKIM_RSA_SHA1) { /* RFC 8301 3.1 */
        set_result(j, i, "permerror", "rsa-sha1 is not accepted (RFC 8301)");
        return;
    }
    if (s->sig.x >= 0 && s->sig.x + SKEW < now) {
        set_result(j, i, "fail", "signature expired");
        return;
    }
    if (s->sig.t >= 0 && s->sig.t > now + SKEW) {
        set_result(j, i, "permerror", "signature from the future (t=)");
        return;
    }
    unsigned char bh[32];
    size_t bhl = sizeof bh;
    dkim_body_final(&s->body, bh);
    s->hashing = 0;
    unsigned long long total = s->body.length;
    if (s->sig.l >= 0 && (unsigned long long)s->sig.l > total) {
        set_result(j, i, "permerror", "l= is longer than the body");
        return;
    }
    if (bhl != s->sig.bhlen || memcmp(bh, s->sig.bh, bhl) != 0) {
        set_result(j, i, "fail", "body hash did not verify");
        return;
    }
    /* l= shorter than the body: whatever follows is not signed; anyone could have
     * added it (RFC 6376 8.2): the signature proves too little */
    if (s->sig.l >= 0 && (unsigned long long)s->sig.l < total) {
        set_result(j, i, "policy", "l= leaves part of the body unsigned");
        return;
    }
}

static void *dkim_start(const struct policy_ctx *ctx, enum policy_stage stage,
                        void (*done)(void *, const struct policy_verdict *), void *arg)
{
    struct dkim_job *j = xcalloc(1, sizeof *j);
    j->done = done;
    j->arg = arg;
    j->txn = ctx->txn;
    j->d = ctx->txn ? policy_txn_dkim(ctx->txn) : NULL;
    struct policy_dkim_stream *d = j->d;
    if (d) policy_dkim_stream_end(d);
    long long now = (long long)time(NULL);
    for (size_t i = 0; d && !d->cut && i < d->nsig; i++) {
        precheck(j, i, now);
        if (j->result[i][0]) continue;
        if (!ctx->dns) {
            set_result(j, i, "temperror", "no resolver");
            continue;
        }
        char name[400];
        if (snprintf(name, sizeof name, "%s._domainkey.%s", d->sigs[i].sig.s, d->sigs[i].sig.d) >=
            (int)sizeof name) {
            set_result(j, i, "permerror", "key name too long");
            continue;
        }
        j->look[i] = (struct lookup){.j = j, .idx = i};
        j->pending++;
        j->look[i].q = dns_query_txt(ctx->dns, name, on_key, &j->look[i]);
    }
    if (!j->pending) {
        j->ev = event_new(policy_loop(), -1, 0, deferred, j);
        event_active(j->ev, EV_TIMEOUT, 0);
    }
    return j;
}

static void dkim_cancel(void *handle)
{
    job_free(handle);
}

const struct policy_check policy_check_dkim = {
    .name = "dkim",
    .stages = 1u << POLICY_EOM,
    .judges_client_ip = 1, /* never for authenticated sessions */
    .start = dkim_start,
    .cancel = dkim_cancel,
};
