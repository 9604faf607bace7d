/* cmd_rbl.c: "kurier rbl check IP|DOMAIN": one address or domain against many DNS
 * lists at once (egress/lists.h), as mxtoolbox's blacklist check does, through
 * kurier's own resolver; "kurier rbl lists": the built-in table. */
#include "core/compat.h"

#include <event2/event.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "dns/dns.h"
#include "egress/lists.h"

#define SPECS_MAX 64

static int usage(void)
{
    fprintf(stderr,
            "usage: kurier rbl check IP|DOMAIN [--list ZONE[=FILTER]]... [--json]\n"
            "           [--resolver IP[@PORT]] [--timeout SEC]\n"
            "       kurier rbl lists\n"
            "  check: asks every list at once whether the IPv4/IPv6 address or the domain is\n"
            "  listed and prints per list: listed (codes, TXT, delisting page), not listed,\n"
            "  refused (the list would not answer: 127.255.255.252-255, an answer outside\n"
            "  127/8, or the list's own refusal code) or error. The lists are --list, else\n"
            "  rbl_lists (addresses) or rbl_domain_lists (domains) of the config, else the\n"
            "  built-in ones (\"kurier rbl lists\"). The resolver is --resolver, else the\n"
            "  config's, else the system's. Exit 0 listed nowhere, 1 listed somewhere,\n"
            "  2 usage, a DNS error or a refusal (the answer is unknown).\n");
    return 2;
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

struct run {
    struct event_base *base;
    int done, json;
    const char *subject;
    enum egress_list_kind kind;
    int rc;
};

static void print_json(const struct run *run, const struct egress_rbl_result *res, size_t n)
{
    size_t counts[4] = {0};
    for (size_t i = 0; i < n; i++)
        counts[res[i].status]++;
    printf("{\"subject\": ");
    json_str(run->subject);
    printf(", \"kind\": \"%s\", \"listed\": %zu, \"not_listed\": %zu, \"refused\": %zu, "
           "\"errors\": %zu, \"results\": [",
           run->kind == EGRESS_LIST_IP ? "ip" : "domain", counts[EGRESS_RBL_LISTED],
           counts[EGRESS_RBL_NOT_LISTED], counts[EGRESS_RBL_REFUSED], counts[EGRESS_RBL_ERROR]);
    for (size_t i = 0; i < n; i++) {
        const struct egress_rbl_result *r = &res[i];
        printf("%s\n  {\"list\": ", i ? "," : "");
        json_str(r->zone);
        printf(", \"name\": ");
        if (r->known)
            json_str(r->known->name);
        else
            printf("null");
        printf(", \"status\": \"%s\", \"codes\": [", egress_rbl_status_name(r->status));
        for (const char *p = r->codes; *p;) {
            size_t len = strcspn(p, ",");
            printf("%s\"%.*s\"", p == r->codes ? "" : ", ", (int)len, p);
            p += len + (p[len] == ',');
        }
        printf("], \"txt\": ");
        if (r->status == EGRESS_RBL_LISTED)
            json_str(r->txt);
        else
            printf("null");
        printf(", \"delist\": ");
        if (r->delist[0])
            json_str(r->delist);
        else
            printf("null");
        printf(", \"error\": ");
        if (r->status == EGRESS_RBL_ERROR)
            json_str(r->error);
        else
            printf("null");
        printf("}");
    }
    printf("\n]}\n");
}

static void print_text(const struct run *run, const struct egress_rbl_result *res, size_t n)
{
    size_t counts[4] = {0};
    int width = 0;
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(res[i].zone) > width) width = (int)strlen(res[i].zone);
    printf("%s against %zu list%s:\n", run->subject, n, n == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++) {
        const struct egress_rbl_result *r = &res[i];
        counts[r->status]++;
        printf("  %-*s  %s", width, r->zone, egress_rbl_status_name(r->status));
        if (r->codes[0]) printf(" (%s)", r->codes);
        if (r->status == EGRESS_RBL_REFUSED) printf(": the list refused to answer this resolver");
        if (r->status == EGRESS_RBL_ERROR) printf(": %s", r->error);
        printf("\n");
        if (r->status == EGRESS_RBL_LISTED) {
            if (r->txt[0]) printf("  %-*s    txt: %s\n", width, "", r->txt);
            if (r->delist[0]) printf("  %-*s    delist: %s\n", width, "", r->delist);
        }
    }
    printf("%zu listed, %zu not listed, %zu refused, %zu error%s\n", counts[EGRESS_RBL_LISTED],
           counts[EGRESS_RBL_NOT_LISTED], counts[EGRESS_RBL_REFUSED], counts[EGRESS_RBL_ERROR],
           counts[EGRESS_RBL_ERROR] == 1 ? "" : "s");
}

static void on_done(void *arg, const struct egress_rbl_result *res, size_t n)
{
    struct run *run = arg;
    int listed = 0, unknown = 0;
    for (size_t i = 0; i < n; i++) {
        listed |= res[i].status == EGRESS_RBL_LISTED;
        unknown |= res[i].status == EGRESS_RBL_REFUSED || res[i].status == EGRESS_RBL_ERROR;
    }
    if (run->json)
        print_json(run, res, n);
    else
        print_text(run, res, n);
    run->rc = listed ? 1 : unknown ? 2 : 0;
    run->done = 1;
    event_base_loopbreak(run->base);
}

/* Split a space-separated spec list (the config's) into specs[]; returns the count. */
static size_t split_specs(char *s, const char **specs, size_t max)
{
    size_t n = 0;
    for (char *p = s; *p && n < max;) {
        while (*p == ' ')
            p++;
        if (!*p) break;
        specs[n++] = p;
        p += strcspn(p, " ");
        if (*p) *p++ = '\0';
    }
    return n;
}

static int lists(void)
{
    printf("%-24s %-7s %-20s %s\n", "zone", "kind", "name", "delisting page");
    for (size_t i = 0; i < egress_nlists; i++) {
        const struct egress_list *l = &egress_lists[i];
        printf("%-24s %-7s %-20s %s\n", l->zone, l->kind == EGRESS_LIST_IP ? "ip" : "domain",
               l->name, l->delist ? l->delist : "-");
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

static int check(int argc, char **argv)
{
    const char *specs[SPECS_MAX];
    size_t nspecs = 0;
    const char *resolver = NULL, *subject = NULL;
    int timeout = 10, json = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--list") == 0 && i + 1 < argc) {
            if (nspecs >= SPECS_MAX) {
                fprintf(stderr, "kurier: at most %d lists\n", SPECS_MAX);
                return 2;
            }
            specs[nspecs++] = argv[++i];
        } else if (strcmp(a, "--resolver") == 0 && i + 1 < argc) {
            resolver = argv[++i];
        } else if (strcmp(a, "--timeout") == 0 && i + 1 < argc) {
            timeout = atoi(argv[++i]);
            if (timeout <= 0) return usage();
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (a[0] == '-' || subject) {
            return usage();
        } else {
            subject = a;
        }
    }
    if (!subject) return usage();
    struct run run = {.json = json, .subject = subject};
    char qname[320];
    if (egress_list_qname(subject, "x.example", &run.kind, qname, sizeof qname) != 0) {
        fprintf(stderr,
                "kurier: \"%s\" is not an IPv4 or IPv6 address or a domain name "
                "(letters, digits, '-', '.')\n",
                subject);
        return 2;
    }

    struct kconf *conf = access(cli_conf_path(), R_OK) == 0 ? cli_load_conf() : NULL;
    char *conf_specs = NULL;
    if (nspecs == 0 && conf) {
        const char *s = run.kind == EGRESS_LIST_IP ? conf->rbl_lists : conf->rbl_domain_lists;
        if (s && *s) {
            conf_specs = xstrdup(s);
            nspecs = split_specs(conf_specs, specs, SPECS_MAX);
        }
    }
    if (nspecs == 0) /* the built-in lists of the subject's kind */
        for (size_t i = 0; i < egress_nlists && nspecs < SPECS_MAX; i++)
            if (egress_lists[i].kind == run.kind) specs[nspecs++] = egress_lists[i].zone;
    char *res_conf = NULL;
    if (!resolver && conf) resolver = res_conf = xstrdup(conf->resolver ? conf->resolver : "");

    int rc = 2;
    struct dns *d = NULL;
    struct egress_rbl_check *c = NULL;
    run.base = event_base_new();
    if (!run.base) {
        fprintf(stderr, "kurier: cannot create the event loop\n");
        goto out;
    }
    static const char *const test_zones[] = {"test.", NULL};
    char err[512];
    d = dns_new(run.base, resolver, NULL, resolver && *resolver ? test_zones : NULL, err,
                sizeof err);
    if (!d) {
        fprintf(stderr, "kurier: resolver: %s\n", err);
        goto out;
    }
    dns_set_timeout(d, timeout);
    c = egress_rbl_check_start(d, subject, specs, nspecs, on_done, &run, err, sizeof err);
    if (!c) {
        fprintf(stderr, "kurier: %s\n", err);
        goto out;
    }
    while (!run.done)
        if (event_base_loop(run.base, EVLOOP_ONCE) < 0) break;
    if (!run.done) {
        egress_rbl_check_cancel(c);
        fprintf(stderr, "kurier: the event loop failed\n");
        goto out;
    }
    rc = fflush(stdout) == 0 ? run.rc : 2;
out:
    dns_free(d);
    if (run.base) event_base_free(run.base);
    free(conf_specs);
    free(res_conf);
    conf_free(conf);
    return rc;
}

int cmd_rbl(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "check") == 0) return check(argc, argv);
    if (argc == 2 && strcmp(argv[1], "lists") == 0) return lists();
    return usage();
}
