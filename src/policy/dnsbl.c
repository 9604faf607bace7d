/* dnsbl.c: DNS lists (RFC 5782). dnsbl: the client's address against the listener's
 * dnsbl_sites; rhsbl: the MAIL FROM domain and the HELO name against rhsbl_sites.
 * One A query per (name, zone), all at once; a TXT query for the list that weighed
 * most. Answers become a score (POLICY_SCORE); thresholds are the pipeline's. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>

#include <event2/event.h>

#include "core/addr.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/util.h"
#include "dns/dns.h"
#include "policy/policy.h"

#define MAX_SITES 64 /* entries per listener taken into account */

/* --- pure helpers ------------------------------------------------------------ */

int policy_dnsbl_qname(int family, const unsigned char *ip, const char *zone, char *out,
                       size_t outsize)
{
    int n;
    if (family == AF_INET) {
        n = snprintf(out, outsize, "%u.%u.%u.%u.%s", ip[3], ip[2], ip[1], ip[0], zone);
    } else if (family == AF_INET6) {
        /* RFC 5782 2.4: 32 nibbles, least significant first */
        char nib[65];
        static const char hex[] = "0123456789abcdef";
        for (int i = 0; i < 16; i++) {
            nib[4 * i] = hex[ip[15 - i] & 0xf];
            nib[4 * i + 1] = '.';
            nib[4 * i + 2] = hex[ip[15 - i] >> 4];
            nib[4 * i + 3] = '.';
        }
        nib[64] = '\0';
        n = snprintf(out, outsize, "%s%s", nib, zone);
    } else {
        return -1;
    }
    return n < 0 || (size_t)n >= outsize ? -1 : 0;
}

int policy_dnsbl_is_code(const unsigned char a[4])
{
    if (a[0] != 127) return 0; /* RFC 5782 2.1: codes are in 127.0.0.0/8 */
    /* Spamhaus: 127.255.255.252 typing error, .254 public resolver, .255 too many
     * queries; .253 reserved. None is a listing. */
    if (a[1] == 255 && a[2] == 255 && a[3] >= 252) return 0;
    return 1;
}

size_t policy_dnsbl_text(const char *txt, size_t len, char *out, size_t outsize)
{
    size_t n = 0;
    int space = 0;
    if (outsize == 0) return 0;
    for (size_t i = 0; i < len && n + 1 < outsize; i++) {
        unsigned char c = (unsigned char)txt[i];
        if (c > 0x20 && c < 0x7f) {
            if (space && n > 0 && n + 2 < outsize) out[n++] = ' ';
            space = 0;
            out[n++] = (char)c;
        } else {
            space = 1;
        }
    }
    out[n] = '\0';
    return n;
}

/* --- the checks ------------------------------------------------------------- */

enum subject { SUBJ_CLIENT, SUBJ_SENDER, SUBJ_HELO };

struct lookup {
    struct dnsbl_job *job;
    struct dns_query *q;
    enum subject subj;
    char name[256]; /* the client address or the domain looked up */
    char qname[512];
    const char *zone; /* borrowed from job->sites */
    int answered;
    unsigned char codes[8][4]; /* listing codes answered */
    int ncodes;
    int weight; /* of the sites its codes matched */
};

struct dnsbl_job {
    struct dns *dns;
    const char *check;             /* "dnsbl" or "rhsbl" */
    struct conf_dnsbl_site *sites; /* the listener's, parsed (nsites) */
    size_t nsites;
    struct lookup *lk; /* room for maxlk */
    size_t nlk, maxlk, pending;
    struct lookup *top;     /* the lookup whose TXT names the refusal */
    struct dns_query *txtq; /* its TXT query */
    struct event *ev;       /* answers "nothing listed" without any query */
    char txt[256];
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
};

static void job_free(struct dnsbl_job *j)
{
    for (size_t i = 0; i < j->nlk; i++)
        dns_cancel(j->lk[i].q);
    dns_cancel(j->txtq);
    if (j->ev) event_free(j->ev);
    free(j->sites);
    free(j->lk);
    free(j);
}

static const char *subject_text(const struct lookup *l, char *buf, size_t size)
{
    if (l->subj == SUBJ_CLIENT)
        snprintf(buf, size, "client [%s]", l->name);
    else
        snprintf(buf, size, "%s %s", l->subj == SUBJ_SENDER ? "sender domain" : "helo name",
                 l->name);
    return buf;
}

/* Everything answered: add up the weights, hand over the verdict, free the job. */
static void job_finish(struct dnsbl_job *j)
{
    struct policy_verdict v;
    memset(&v, 0, sizeof v);
    v.kind = j->nlk ? POLICY_SCORE : POLICY_PASS; /* no list, nothing asked: pass */
    v.check = j->check;
    int score = 0;
    size_t dlen = 0;
    /* a site counts once, whichever of its lookups matched (sender and HELO) */
    for (size_t s = 0; s < j->nsites; s++) {
        const struct lookup *hit = NULL;
        const unsigned char *code = NULL;
        for (size_t i = 0; i < j->nlk && !hit; i++) {
            const struct lookup *l = &j->lk[i];
            if (strcmp(l->zone, j->sites[s].zone) != 0) continue;
            for (int c = 0; c < l->ncodes && !hit; c++)
                if (conf_dnsbl_site_match(&j->sites[s], l->codes[c])) {
                    hit = l;
                    code = l->codes[c];
                }
        }
        if (!hit) continue;
        score += j->sites[s].weight;
        int n = snprintf(v.detail + dlen, sizeof v.detail - dlen, "%s%s %s=%u.%u.%u.%u*%d",
                         dlen ? ", " : "", hit->name, hit->zone, code[0], code[1], code[2], code[3],
                         j->sites[s].weight);
        if (n > 0 && dlen + (size_t)n < sizeof v.detail) dlen += (size_t)n;
    }
    v.score = score;
    if (!dlen && j->nlk) str_copy(v.detail, "not listed", sizeof v.detail);
    if (j->top) {
        char subj[300];
        v.code = 554;
        str_copy(v.enh, "5.7.1", sizeof v.enh);
        /* the list's words may be cut; its name and the subject never are */
        int n = snprintf(v.text, sizeof v.text, "Service unavailable; %.120s blocked using %.100s",
                         subject_text(j->top, subj, sizeof subj), j->top->zone);
        if (j->txt[0] && n > 0 && (size_t)n + 3 < sizeof v.text) {
            str_copy(v.text + n, "; ", sizeof v.text - (size_t)n);
            str_copy(v.text + n + 2, j->txt, sizeof v.text - (size_t)n - 2);
        }
    }
    void (*done)(void *, const struct policy_verdict *) = j->done;
    void *arg = j->arg;
    job_free(j);
    done(arg, &v);
}

static void nothing_to_do(evutil_socket_t fd, short what, void *arg)
{
    job_finish(arg);
}

static void txt_answered(void *arg, const struct dns_result *r)
{
    struct dnsbl_job *j = arg;
    j->txtq = NULL;
    if (r->status == DNS_OK && r->nstrs > 0)
        policy_dnsbl_text(r->strs[0], strlen(r->strs[0]), j->txt, sizeof j->txt);
    job_finish(j);
}

/* All A answers are in: find the lookup with the greatest positive weight and ask
 * for its TXT record (the refusal quotes it), or finish. */
static void all_answered(struct dnsbl_job *j)
{
    for (size_t i = 0; i < j->nlk; i++) {
        struct lookup *l = &j->lk[i];
        for (size_t s = 0; s < j->nsites; s++) {
            if (strcmp(l->zone, j->sites[s].zone) != 0) continue;
            for (int c = 0; c < l->ncodes; c++)
                if (conf_dnsbl_site_match(&j->sites[s], l->codes[c])) {
                    l->weight += j->sites[s].weight;
                    break;
                }
        }
        if (l->weight > 0 && (!j->top || l->weight > j->top->weight)) j->top = l;
    }
    if (j->top) {
        j->txtq = dns_query_txt(j->dns, j->top->qname, txt_answered, j);
        return;
    }
    job_finish(j);
}

static void a_answered(void *arg, const struct dns_result *r)
{
    struct lookup *l = arg;
    struct dnsbl_job *j = l->job;
    l->q = NULL;
    l->answered = 1;
    if (r->status == DNS_OK) {
        for (size_t i = 0; i < r->naddrs; i++) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)&r->addrs[i];
            if (sin->sin_family != AF_INET) continue;
            const unsigned char *a = (const unsigned char *)&sin->sin_addr;
            if (!policy_dnsbl_is_code(a)) {
                /* RFC 5782 2.1 / Spamhaus return codes: a refusal, never a listing */
                log_warn("policy",
                         "%s: %s answered %u.%u.%u.%u for %s: not a listing code "
                         "(query refused or list misconfigured; check the resolver "
                         "and the list's terms of use)",
                         j->check, l->zone, a[0], a[1], a[2], a[3], l->name);
                continue;
            }
            if (l->ncodes < (int)(sizeof l->codes / sizeof l->codes[0]))
                memcpy(l->codes[l->ncodes++], a, 4);
        }
    } else if (r->status == DNS_TEMPFAIL || r->status == DNS_BOGUS) {
        log_warn("policy", "%s: lookup %s failed (%s): not listed for now", j->check, l->qname,
                 r->why ? r->why : dns_status_name(r->status));
    }
    if (--j->pending == 0) all_answered(j);
}

/* Add the lookups of name under every distinct zone of the sites. */
static void add_lookups(struct dnsbl_job *j, enum subject subj, const char *name, int family,
                        const unsigned char *ip)
{
    for (size_t s = 0; s < j->nsites; s++) {
        int dup = 0;
        for (size_t i = 0; i < j->nlk && !dup; i++)
            dup = strcmp(j->lk[i].zone, j->sites[s].zone) == 0 && strcmp(j->lk[i].name, name) == 0;
        if (dup || j->nlk >= j->maxlk) continue;
        struct lookup *l = &j->lk[j->nlk];
        memset(l, 0, sizeof *l);
        l->job = j;
        l->subj = subj;
        l->zone = j->sites[s].zone;
        str_copy(l->name, name, sizeof l->name);
        int r = family ? policy_dnsbl_qname(family, ip, l->zone, l->qname, sizeof l->qname)
                       : (snprintf(l->qname, sizeof l->qname, "%s.%s", name, l->zone) <
                                  (int)sizeof l->qname
                              ? 0
                              : -1);
        if (r == 0) j->nlk++;
    }
}

/* A domain worth looking up: a dotted name of letters, digits, '-' and '_', not an
 * address literal. */
static int domain_ok(const char *d)
{
    size_t n = strlen(d);
    return n > 0 && n < 200 && strchr(d, '.') && d[0] != '.' && d[n - 1] != '.' &&
           strspn(d, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") == n;
}

static void *start(const struct policy_ctx *ctx, const char *check, const char *sites,
                   void (*done)(void *, const struct policy_verdict *), void *arg)
{
    struct dnsbl_job *j = xcalloc(1, sizeof *j);
    j->dns = ctx->dns;
    j->check = check;
    j->done = done;
    j->arg = arg;
    /* sized by the config: a job without lists costs nothing more */
    size_t words = 0;
    for (const char *p = sites ? sites : ""; *p; p++)
        words += (p == sites || p[-1] == ' ') && *p != ' ';
    if (words > MAX_SITES) words = MAX_SITES;
    j->sites = words ? xcalloc(words, sizeof *j->sites) : NULL;
    j->maxlk = 2 * words; /* a name per site and subject: client, or sender and HELO */
    j->lk = j->maxlk ? xcalloc(j->maxlk, sizeof *j->lk) : NULL;
    for (const char *p = sites ? sites : ""; *p && j->nsites < words;) {
        size_t len = strcspn(p, " ");
        char one[600], why[300];
        if (len > 0 && len < sizeof one) {
            memcpy(one, p, len);
            one[len] = '\0';
            if (conf_dnsbl_site_parse(one, &j->sites[j->nsites], why, sizeof why) == 0) j->nsites++;
        }
        p += len;
        while (*p == ' ')
            p++;
    }
    if (strcmp(check, "dnsbl") == 0) {
        const struct sockaddr *sa = (const struct sockaddr *)&ctx->client_sa;
        if (sa->sa_family == AF_INET) {
            add_lookups(j, SUBJ_CLIENT, ctx->client_addr, AF_INET,
                        (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr);
        } else if (sa->sa_family == AF_INET6) {
            const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
            if (IN6_IS_ADDR_V4MAPPED(a6))
                add_lookups(j, SUBJ_CLIENT, ctx->client_addr, AF_INET, a6->s6_addr + 12);
            else
                add_lookups(j, SUBJ_CLIENT, ctx->client_addr, AF_INET6, a6->s6_addr);
        }
    } else {
        if (ctx->sender && ctx->sender->domain && domain_ok(ctx->sender->domain))
            add_lookups(j, SUBJ_SENDER, ctx->sender->domain, 0, NULL);
        if (ctx->helo && domain_ok(ctx->helo)) {
            char helo[256];
            str_copy(helo, ctx->helo, sizeof helo);
            for (char *c = helo; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            add_lookups(j, SUBJ_HELO, helo, 0, NULL);
        }
    }
    if (!j->dns) j->nlk = 0; /* no resolver (tools, tests): nothing to ask */
    /* every callback runs later, on the loop: count them all before the first */
    j->pending = j->nlk;
    for (size_t i = 0; i < j->nlk; i++) {
        log_debug("policy", "%s: looking up %s", check, j->lk[i].qname);
        j->lk[i].q = dns_query_a(j->dns, j->lk[i].qname, a_answered, &j->lk[i]);
    }
    if (j->nlk == 0) {
        /* nothing to ask: answer on the next loop turn, never inside start */
        j->ev = event_new(policy_loop(), -1, 0, nothing_to_do, j);
        event_active(j->ev, EV_TIMEOUT, 0);
    }
    return j;
}

/* A listener without lists, or no resolver: nothing to ask. */
static int dnsbl_wanted(const struct policy_ctx *ctx, enum policy_stage stage)
{
    return ctx->dns && ctx->listener && ctx->listener->dnsbl_sites && *ctx->listener->dnsbl_sites;
}

static int rhsbl_wanted(const struct policy_ctx *ctx, enum policy_stage stage)
{
    return ctx->dns && ctx->listener && ctx->listener->rhsbl_sites && *ctx->listener->rhsbl_sites;
}

static void *dnsbl_start(const struct policy_ctx *ctx, enum policy_stage stage,
                         void (*done)(void *, const struct policy_verdict *), void *arg)
{
    return start(ctx, "dnsbl", ctx->listener ? ctx->listener->dnsbl_sites : NULL, done, arg);
}

static void *rhsbl_start(const struct policy_ctx *ctx, enum policy_stage stage,
                         void (*done)(void *, const struct policy_verdict *), void *arg)
{
    return start(ctx, "rhsbl", ctx->listener ? ctx->listener->rhsbl_sites : NULL, done, arg);
}

static void cancel(void *handle)
{
    job_free(handle);
}

/* Both judge the client's reputation: never run for authenticated sessions. */
const struct policy_check policy_check_dnsbl = {
    .name = "dnsbl",
    .stages = 1u << POLICY_RCPT,
    .judges_client_ip = 1,
    .start = dnsbl_start,
    .cancel = cancel,
    .wanted = dnsbl_wanted,
};

const struct policy_check policy_check_rhsbl = {
    .name = "rhsbl",
    .stages = 1u << POLICY_RCPT,
    .judges_client_ip = 1,
    .start = rhsbl_start,
    .cancel = cancel,
    .wanted = rhsbl_wanted,
};
