/* cmd_dns_records.c: "kurier dns records DOMAIN [--check]": every record a hosted
 * domain publishes for mail through us (MX, SPF with our egress addresses, DKIM,
 * DMARC, MTA-STS and TLS-RPT), and the PTR each egress address needs; --check asks
 * DNS and names each difference (docs/dkim.md). */
#include "core/compat.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>

#include "cli/cli.h"
#include "core/core.h"
#include "dns/dns.h"

static int usage(void)
{
    fprintf(stderr, "usage: kurier dns records DOMAIN [--check] [--resolver IP[@PORT]]\n"
                    "  Prints the records DOMAIN needs for mail through this server (zone file\n"
                    "  lines); the egress addresses are monitor.addresses. --check compares them\n"
                    "  with DNS, one line each, \"DIFF\" in front of a difference; exit 1 when a\n"
                    "  required record differs (MTA-STS and TLS-RPT are suggestions).\n");
    return 2;
}

/* The egress addresses (single addresses of monitor.addresses) as text. */
static size_t egress(const struct kconf *c, char out[][64], size_t max, int *net)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nmon_addresses && n < max; i++) {
        const struct conf_net *a = &c->mon_addresses[i];
        char ip[INET6_ADDRSTRLEN];
        inet_ntop(a->family, a->addr, ip, sizeof ip);
        int full = a->prefix == (a->family == AF_INET ? 32 : 128);
        if (full)
            snprintf(out[n], 64, "%s", ip);
        else
            snprintf(out[n], 64, "%s/%d", ip, a->prefix);
        net[n] = !full;
        n++;
    }
    return n;
}

static char *spf_record(const struct kconf *c, char addrs[][64], int *net, size_t n)
{
    struct buf b;
    buf_init(&b, 0);
    buf_puts(&b, "v=spf1");
    for (size_t i = 0; i < n; i++)
        buf_printf(&b, " %s:%s", strchr(addrs[i], ':') ? "ip6" : "ip4", addrs[i]);
    if (n == 0) buf_printf(&b, " a:%s", c->hostname);
    buf_puts(&b, " ~all");
    (void)net;
    return buf_take(&b);
}

static int has_token(const char *rec, const char *tok)
{
    size_t l = strlen(tok);
    for (const char *p = rec; (p = strstr(p, tok)); p += l)
        if ((p == rec || p[-1] == ' ') && (p[l] == ' ' || p[l] == '\0')) return 1;
    return 0;
}

struct checker {
    const char *resolver;
    int diffs, hard;
};

/* One TXT lookup: the first string starting with prefix (new), or NULL; *status. */
static char *txt_with(struct checker *k, const char *name, const char *prefix, int *status)
{
    struct cli_dns_answer a;
    if (cli_dns_ask(k->resolver, "txt", name, &a) != 0) exit(1);
    *status = a.status;
    char *r = NULL;
    for (size_t i = 0; i < a.nstrs && !r; i++)
        if (strncasecmp(a.strs[i], prefix, strlen(prefix)) == 0) r = xstrdup(a.strs[i]);
    cli_dns_answer_free(&a);
    return r;
}

static void say(struct checker *k, int ok, int required, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void say(struct checker *k, int ok, int required, const char *what, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s %s: ", ok ? "ok  " : required ? "DIFF" : "NOTE", what);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (!ok) {
        k->diffs++;
        if (required) k->hard++;
    }
}

static void check_txt(struct checker *k, const char *what, const char *name, const char *prefix,
                      int required)
{
    int st;
    char *rec = txt_with(k, name, prefix, &st);
    if (st == DNS_TEMPFAIL || st == DNS_BOGUS)
        say(k, 0, required, what, "lookup of %s failed", name);
    else if (!rec)
        say(k, 0, required, what, "no \"%s\" record at %s", prefix, name);
    else
        say(k, 1, required, what, "%s", rec);
    free(rec);
}

static int check_all(const struct kconf *c, const char *domain, const char *resolver,
                     char addrs[][64], int *net, size_t n)
{
    struct checker k = {.resolver = resolver};
    /* MX: one of them must be us */
    struct cli_dns_answer a;
    if (cli_dns_ask(resolver, "mx", domain, &a) != 0) return 1;
    int mx_ok = 0;
    struct buf seen;
    buf_init(&seen, 0);
    for (size_t i = 0; i < a.nstrs; i++) {
        const char *host = strchr(a.strs[i], ' ');
        if (host && strcasecmp(host + 1, c->hostname) == 0) mx_ok = 1;
        buf_printf(&seen, "%s%s", i ? ", " : "", a.strs[i]);
    }
    if (mx_ok)
        say(&k, 1, 1, "MX", "%s", seen.data);
    else
        say(&k, 0, 1, "MX", "DNS has %s, expected %s", a.nstrs ? seen.data : "no MX", c->hostname);
    buf_release(&seen);
    cli_dns_answer_free(&a);

    /* SPF: each egress address named */
    int st;
    char *spf = txt_with(&k, domain, "v=spf1", &st);
    if (!spf) {
        say(&k, 0, 1, "SPF", "no v=spf1 record at %s", domain);
    } else {
        struct buf miss;
        buf_init(&miss, 0);
        for (size_t i = 0; i < n; i++) {
            char tok[160];
            snprintf(tok, sizeof tok, "%s:%.63s", strchr(addrs[i], ':') ? "ip6" : "ip4", addrs[i]);
            if (!has_token(spf, tok)) buf_printf(&miss, "%s%s", miss.len ? ", " : "", tok);
        }
        if (miss.len && (strstr(spf, "include:") || strstr(spf, "redirect=")))
            say(&k, 0, 1, "SPF",
                "%s does not name %s itself; it has include:/redirect=: check with kurier spf "
                "check IP postmaster@%s",
                spf, miss.data, domain);
        else if (miss.len)
            say(&k, 0, 1, "SPF", "%s lacks %s", spf, miss.data);
        else
            say(&k, 1, 1, "SPF", "%s", spf);
        buf_release(&miss);
    }
    free(spf);

    /* DKIM: cmd_dkim.c prints its own lines */
    fflush(stdout);
    if (cli_dkim_records_count(c, domain) == 0)
        say(&k, 0, 1, "DKIM", "no keys for %s: kurier dkim keygen %s", domain, domain);
    else if (cli_dkim_check(c, domain, resolver) != 0)
        k.diffs++, k.hard++;

    char *name = xasprintf("_dmarc.%s", domain);
    check_txt(&k, "DMARC", name, "v=DMARC1", 1);
    free(name);
    name = xasprintf("_mta-sts.%s", domain);
    check_txt(&k, "MTA-STS", name, "v=STSv1", 0);
    free(name);
    name = xasprintf("_smtp._tls.%s", domain);
    check_txt(&k, "TLS-RPT", name, "v=TLSRPTv1", 0);
    free(name);

    /* PTR of each egress address: our host name */
    for (size_t i = 0; i < n; i++) {
        if (net[i]) continue;
        if (cli_dns_ask(resolver, "ptr", addrs[i], &a) != 0) return 1;
        int ok = 0;
        for (size_t j = 0; j < a.nstrs; j++)
            if (strcasecmp(a.strs[j], c->hostname) == 0) ok = 1;
        char what[160];
        snprintf(what, sizeof what, "PTR %.63s", addrs[i]);
        if (ok)
            say(&k, 1, 1, what, "%s", c->hostname);
        else
            say(&k, 0, 1, what, "DNS has %s, expected %s", a.nstrs ? a.strs[0] : "no PTR",
                c->hostname);
        cli_dns_answer_free(&a);
    }
    printf("%d difference%s\n", k.diffs, k.diffs == 1 ? "" : "s");
    return k.hard ? 1 : 0;
}

int cmd_dns_records(int argc, char **argv)
{
    const char *domain_arg = NULL, *resolver = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--check") == 0)
            check = 1;
        else if (strcmp(argv[i], "--resolver") == 0 && i + 1 < argc)
            resolver = argv[++i];
        else if (argv[i][0] == '-' || domain_arg)
            return usage();
        else
            domain_arg = argv[i];
    }
    if (!domain_arg) return usage();
    char domain[256];
    snprintf(domain, sizeof domain, "%s", domain_arg);
    for (char *p = domain; *p; p++) {
        *p = (char)tolower((unsigned char)*p);
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '.')) {
            fprintf(stderr, "kurier: \"%s\" is not a domain name\n", domain_arg);
            return 2;
        }
    }
    struct kconf *c = cli_load_conf();
    char addrs[64][64];
    int net[64];
    size_t n = egress(c, addrs, 64, net);
    int r = 0;
    if (check) {
        r = check_all(c, domain, resolver, addrs, net, n);
    } else {
        printf("; mail for %s through %s\n", domain, c->hostname);
        printf("%s. IN MX 10 %s.\n", domain, c->hostname);
        char *spf = spf_record(c, addrs, net, n);
        if (n == 0)
            printf("; no egress addresses configured (monitor.addresses): SPF names the host\n");
        printf("%s. IN TXT \"%s\"\n", domain, spf);
        free(spf);
        if (cli_dkim_records_count(c, domain) == 0)
            printf("; no DKIM keys for %s: create them with kurier dkim keygen %s\n", domain,
                   domain);
        else
            cli_dkim_records(c, domain);
        printf("; DMARC: start by watching (p=none), then quarantine, then reject\n");
        printf("_dmarc.%s. IN TXT \"v=DMARC1; p=none; rua=mailto:postmaster@%s\"\n", domain,
               domain);
        printf("; suggested: MTA-STS (RFC 8461; the policy is served at "
               "https://mta-sts.%s/.well-known/mta-sts.txt:\n"
               ";   version: STSv1 / mode: testing / mx: %s / max_age: 86400)\n",
               domain, c->hostname);
        char day[16];
        time_t now = time(NULL);
        strftime(day, sizeof day, "%Y%m%d", gmtime(&now));
        printf("_mta-sts.%s. IN TXT \"v=STSv1; id=%s\"\n", domain, day);
        printf("; suggested: TLS reporting (RFC 8460)\n");
        printf("_smtp._tls.%s. IN TXT \"v=TLSRPTv1; rua=mailto:postmaster@%s\"\n", domain, domain);
        if (n) printf("; in the reverse zones of the egress addresses (their owner's):\n");
        for (size_t i = 0; i < n; i++) {
            struct sockaddr_storage ss;
            char rev[128];
            if (net[i] || ip_parse(addrs[i], &ss, NULL) != 0 ||
                dns_ptr_name((struct sockaddr *)&ss, rev, sizeof rev) != 0) {
                printf("; %s: each address of it needs a PTR to %s\n", addrs[i], c->hostname);
                continue;
            }
            printf("%s. IN PTR %s.\n", rev, c->hostname);
        }
    }
    conf_free(c);
    if (fflush(stdout) != 0) r = 1;
    return r;
}
