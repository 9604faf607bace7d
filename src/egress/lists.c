/* lists.c: the built-in table of common DNS block lists and the check of one address
 * or domain against many of them (all A queries at once, then TXT for the listed).
 * Knows what answers mean; the DNS itself is dns/'s. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>

#include "core/buf.h"
#include "core/conf.h"
#include "core/util.h"
#include "dns/dns.h"
#include "egress/lists.h"

#define IP4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (d))

/* Refusal codes: the lists' own documentation (Spamhaus "return codes", SURBL and
 * URIBL "127.0.0.1 means your queries are blocked"). */
const struct egress_list egress_lists[] = {
    {"Spamhaus ZEN",
     "zen.spamhaus.org",
     EGRESS_LIST_IP,
     {{0, 0}, {0, 0}},
     "https://check.spamhaus.org/results/?query={}"},
    {"SpamCop",
     "bl.spamcop.net",
     EGRESS_LIST_IP,
     {{0, 0}, {0, 0}},
     "https://www.spamcop.net/bl.shtml?{}"},
    {"Barracuda",
     "b.barracudacentral.org",
     EGRESS_LIST_IP,
     {{0, 0}, {0, 0}},
     "https://www.barracudacentral.org/lookups/lookup-reputation"},
    {"PSBL",
     "psbl.surriel.com",
     EGRESS_LIST_IP,
     {{0, 0}, {0, 0}},
     "https://psbl.org/listing?ip={}"},
    {"Mailspike",
     "bl.mailspike.net",
     EGRESS_LIST_IP,
     {{0, 0}, {0, 0}},
     "https://mailspike.org/anubis/lookup.html"},
    {"UCEPROTECT level 1",
     "dnsbl-1.uceprotect.net",
     EGRESS_LIST_IP,
     {{0, 0}, {0, 0}},
     "https://www.uceprotect.net/en/rblcheck.php?ipr={}"},
    {"SpamRATS",
     "all.spamrats.com",
     EGRESS_LIST_IP,
     {{0, 0}, {0, 0}},
     "https://www.spamrats.com/lookup.php?ip={}"},
    {"DroneBL",
     "dnsbl.dronebl.org",
     EGRESS_LIST_IP,
     {{0, 0}, {0, 0}},
     "https://dronebl.org/lookup?ip={}"},
    {"GBUdb Truncate",
     "truncate.gbudb.net",
     EGRESS_LIST_IP,
     {{0, 0}, {0, 0}},
     "https://www.gbudb.com/truncate/"},
    {"Spamhaus DBL",
     "dbl.spamhaus.org",
     EGRESS_LIST_DOMAIN,
     {{IP4(127, 0, 1, 255), IP4(127, 0, 1, 255)}, {0, 0}},
     "https://check.spamhaus.org/results/?query={}"},
    {"SURBL",
     "multi.surbl.org",
     EGRESS_LIST_DOMAIN,
     {{IP4(127, 0, 0, 1), IP4(127, 0, 0, 1)}, {0, 0}},
     "https://surbl.org/surbl-analysis"},
    {"URIBL",
     "multi.uribl.com",
     EGRESS_LIST_DOMAIN,
     {{IP4(127, 0, 0, 1), IP4(127, 0, 0, 1)}, {0, 0}},
     "https://admin.uribl.com/"},
};
const size_t egress_nlists = sizeof egress_lists / sizeof egress_lists[0];

/* zone without a trailing dot, lowercased, into out. 0 done, -1 too long. */
static int norm_zone(const char *zone, char *out, size_t outsize)
{
    size_t n = strlen(zone);
    if (n > 0 && zone[n - 1] == '.') n--;
    if (n + 1 > outsize) return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)zone[i]);
    out[n] = '\0';
    return 0;
}

const struct egress_list *egress_list_find(const char *zone)
{
    char z[256];
    if (norm_zone(zone, z, sizeof z) != 0) return NULL;
    for (size_t i = 0; i < egress_nlists; i++)
        if (strcmp(egress_lists[i].zone, z) == 0) return &egress_lists[i];
    return NULL;
}

int egress_list_is_refusal(const struct egress_list *l, const unsigned char a[4])
{
    uint32_t v = IP4(a[0], a[1], a[2], a[3]);
    if (a[0] != 127) return 1; /* RFC 5782 2.1: codes are in 127.0.0.0/8 */
    /* Spamhaus: .252 typing error, .254 public resolver, .255 excessive queries, .253
     * reserved; no list uses them for listings */
    if (v >= IP4(127, 255, 255, 252)) return 1;
    for (size_t i = 0; l && i < sizeof l->refused / sizeof l->refused[0]; i++)
        if (l->refused[i].lo && v >= l->refused[i].lo && v <= l->refused[i].hi) return 1;
    return 0;
}

static int domain_ok(const char *d)
{
    size_t n = strlen(d);
    if (n == 0 || n > 200 || !strchr(d, '.') || d[0] == '.' || d[n - 1] == '.' || strstr(d, ".."))
        return 0;
    return strspn(d, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") == n;
}

int egress_list_qname(const char *subject, const char *zone, enum egress_list_kind *kind, char *out,
                      size_t outsize)
{
    unsigned char ip[16];
    char z[256];
    int n;
    if (norm_zone(zone, z, sizeof z) != 0 || !z[0]) return -1;
    if (inet_pton(AF_INET6, subject, ip) == 1 && !IN6_IS_ADDR_V4MAPPED((struct in6_addr *)ip)) {
        /* RFC 5782 2.4: 32 nibbles, least significant first */
        static const char hex[] = "0123456789abcdef";
        char nib[65];
        for (int i = 0; i < 16; i++) {
            nib[4 * i] = hex[ip[15 - i] & 0xf];
            nib[4 * i + 1] = '.';
            nib[4 * i + 2] = hex[ip[15 - i] >> 4];
            nib[4 * i + 3] = '.';
        }
        nib[64] = '\0';
        n = snprintf(out, outsize, "%s%s", nib, z);
        if (kind) *kind = EGRESS_LIST_IP;
    } else if (inet_pton(AF_INET6, subject, ip) == 1 || inet_pton(AF_INET, subject, ip + 12) == 1) {
        const unsigned char *a = ip + 12;
        n = snprintf(out, outsize, "%u.%u.%u.%u.%s", a[3], a[2], a[1], a[0], z);
        if (kind) *kind = EGRESS_LIST_IP;
    } else if (domain_ok(subject)) {
        char d[256];
        norm_zone(subject, d, sizeof d);
        n = snprintf(out, outsize, "%s.%s", d, z);
        if (kind) *kind = EGRESS_LIST_DOMAIN;
    } else {
        return -1;
    }
    return n < 0 || (size_t)n >= outsize ? -1 : 0;
}

const char *egress_list_delist_url(const struct egress_list *l, const char *subject, char *out,
                                   size_t outsize)
{
    if (outsize == 0) return out;
    out[0] = '\0';
    if (!l || !l->delist) return out;
    const char *ph = strstr(l->delist, "{}");
    if (!ph)
        snprintf(out, outsize, "%s", l->delist);
    else
        snprintf(out, outsize, "%.*s%s%s", (int)(ph - l->delist), l->delist, subject, ph + 2);
    return out;
}

const char *egress_rbl_status_name(enum egress_rbl_status s)
{
    static const char *const names[] = {"not listed", "listed", "refused", "error"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "error";
}

/* --- the check -------------------------------------------------------------------- */

struct one {
    struct egress_rbl_check *c;
    struct conf_dnsbl_site site;
    char qname[320];
    struct dns_query *q, *tq; /* A, then TXT when listed */
};

struct egress_rbl_check {
    struct dns *dns;
    char subject[256];
    struct one *one;
    struct egress_rbl_result *res;
    size_t n, pending;
    egress_rbl_cb cb;
    void *arg;
};

static void check_free(struct egress_rbl_check *c)
{
    for (size_t i = 0; i < c->n; i++) {
        dns_cancel(c->one[i].q);
        dns_cancel(c->one[i].tq);
    }
    free(c->one);
    free(c->res);
    free(c);
}

static void one_done(struct egress_rbl_check *c)
{
    if (--c->pending > 0) return;
    egress_rbl_cb cb = c->cb;
    void *arg = c->arg;
    struct egress_rbl_result *res = c->res;
    size_t n = c->n;
    c->res = NULL;
    check_free(c);
    cb(arg, res, n);
    free(res);
}

/* Printable ASCII only, runs of anything else become one space. */
static void clean_text(const char *t, char *out, size_t outsize)
{
    size_t n = 0;
    int space = 0;
    for (; *t && n + 2 < outsize; t++) {
        unsigned char ch = (unsigned char)*t;
        if (ch > 0x20 && ch < 0x7f) {
            if (space && n > 0) out[n++] = ' ';
            space = 0;
            out[n++] = (char)ch;
        } else {
            space = 1;
        }
    }
    out[n] = '\0';
}

static void txt_answered(void *arg, const struct dns_result *r)
{
    struct one *o = arg;
    struct egress_rbl_check *c = o->c;
    struct egress_rbl_result *res = &c->res[o - c->one];
    o->tq = NULL;
    if (r->status == DNS_OK && r->nstrs > 0) clean_text(r->strs[0], res->txt, sizeof res->txt);
    one_done(c);
}

static void a_answered(void *arg, const struct dns_result *r)
{
    struct one *o = arg;
    struct egress_rbl_check *c = o->c;
    struct egress_rbl_result *res = &c->res[o - c->one];
    o->q = NULL;
    if (r->status == DNS_TEMPFAIL || r->status == DNS_BOGUS) {
        res->status = EGRESS_RBL_ERROR;
        snprintf(res->error, sizeof res->error, "%s", r->why ? r->why : dns_status_name(r->status));
        one_done(c);
        return;
    }
    int listed = 0, refused = 0;
    size_t len = 0;
    for (size_t i = 0; r->status == DNS_OK && i < r->naddrs; i++) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&r->addrs[i];
        if (sin->sin_family != AF_INET) continue;
        const unsigned char *a = (const unsigned char *)&sin->sin_addr;
        int k = snprintf(res->codes + len, sizeof res->codes - len, "%s%u.%u.%u.%u", len ? "," : "",
                         a[0], a[1], a[2], a[3]);
        if (k > 0 && len + (size_t)k < sizeof res->codes) len += (size_t)k;
        if (egress_list_is_refusal(res->known, a))
            refused = 1;
        else if (conf_dnsbl_site_match(&o->site, a))
            listed = 1;
    }
    res->status = listed ? EGRESS_RBL_LISTED : refused ? EGRESS_RBL_REFUSED : EGRESS_RBL_NOT_LISTED;
    if (listed) {
        egress_list_delist_url(res->known, c->subject, res->delist, sizeof res->delist);
        o->tq = dns_query_txt(c->dns, o->qname, txt_answered, o);
        return; /* one_done when the TXT answer is in */
    }
    one_done(c);
}

struct egress_rbl_check *egress_rbl_check_start(struct dns *dns, const char *subject,
                                                const char *const *specs, size_t nspecs,
                                                egress_rbl_cb cb, void *arg, char *err,
                                                size_t errsize)
{
    if (nspecs == 0) {
        snprintf(err, errsize, "no lists to check");
        return NULL;
    }
    if (strlen(subject) >= 254) {
        snprintf(err, errsize, "\"%.60s...\" is too long", subject);
        return NULL;
    }
    struct egress_rbl_check *c = xcalloc(1, sizeof *c);
    c->dns = dns;
    c->cb = cb;
    c->arg = arg;
    str_copy(c->subject, subject, sizeof c->subject);
    c->one = xcalloc(nspecs, sizeof *c->one);
    c->res = xcalloc(nspecs, sizeof *c->res);
    c->n = nspecs;
    for (size_t i = 0; i < nspecs; i++) {
        struct one *o = &c->one[i];
        char why[256];
        o->c = c;
        if (conf_dnsbl_site_parse(specs[i], &o->site, why, sizeof why) != 0) {
            snprintf(err, errsize, "list \"%s\": %s", specs[i], why);
            goto bad;
        }
        if (egress_list_qname(subject, o->site.zone, NULL, o->qname, sizeof o->qname) != 0) {
            snprintf(err, errsize,
                     "\"%s\" is not an IPv4 or IPv6 address or a domain name "
                     "(letters, digits, '-', '.')",
                     subject);
            goto bad;
        }
        str_copy(c->res[i].zone, o->site.zone, sizeof c->res[i].zone);
        c->res[i].known = egress_list_find(o->site.zone);
    }
    /* every callback runs later, on the loop: count them all before the first */
    c->pending = nspecs;
    for (size_t i = 0; i < nspecs; i++)
        c->one[i].q = dns_query_a(dns, c->one[i].qname, a_answered, &c->one[i]);
    return c;
bad:
    check_free(c);
    return NULL;
}

void egress_rbl_check_cancel(struct egress_rbl_check *c)
{
    if (c) check_free(c);
}
