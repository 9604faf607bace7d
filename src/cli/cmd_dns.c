/* cmd_dns.c: "kurier dns lookup TYPE NAME": one query through kurier's own resolver
 * (src/dns), printed one line per record, so admins see what the daemon sees. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "dns/dns.h"

struct lookup {
    const char *type, *name;
    int json;
    int status; /* exit status once answered, -1 while waiting */
    struct event_base *base;
};

static int usage(void)
{
    fprintf(stderr,
            "usage: kurier dns lookup mx|a|aaaa|txt|ptr|tlsa NAME [--resolver IP[@PORT]]\n"
            "           [--insecure DOMAIN]... [--trust-anchor FILE] [--timeout SEC]\n"
            "           [--port N] [--json]\n"
            "  ptr takes an IP address; tlsa asks _PORT._tcp.NAME (port 25 by default).\n"
            "  The resolver is --resolver, else the config's \"resolver\", else the system's.\n"
            "  Prints one record per line, or nxdomain | nodata | tempfail: WHY |\n"
            "  bogus: WHY, and \"secure\" when DNSSEC validated the answer. Exit 0 when\n"
            "  records were found, 1 otherwise. --json: one object (docs/json.md).\n");
    return 2;
}

/* Peer bytes (TXT) made safe for a terminal. */
static void print_text(const char *prefix, const char *s)
{
    size_t n = strlen(s);
    char *esc = xmalloc(4 * n + 1);
    log_escape(esc, 4 * n + 1, s, n);
    printf("%s %s\n", prefix, esc);
    free(esc);
}

static const char *addr_text(const struct sockaddr_storage *ss, char *ip, size_t size)
{
    const struct sockaddr *sa = (const struct sockaddr *)ss;
    const void *a = sa->sa_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    return inet_ntop(sa->sa_family, a, ip, (socklen_t)size);
}

/* The answer as one JSON object (docs/json.md). */
static void print_json(const struct lookup *lk, const struct dns_result *r)
{
    static const char *const st[] = {[DNS_OK] = "ok",
                                     [DNS_NXDOMAIN] = "nxdomain",
                                     [DNS_NODATA] = "nodata",
                                     [DNS_TEMPFAIL] = "tempfail",
                                     [DNS_BOGUS] = "bogus"};
    char ip[INET6_ADDRSTRLEN];
    struct cli_json j;
    cli_json_begin(&j);
    cli_json_str(&j, "name", lk->name);
    cli_json_str(&j, "type", lk->type);
    cli_json_str(&j, "status", st[r->status]);
    cli_json_str(&j, "why", r->status == DNS_TEMPFAIL || r->status == DNS_BOGUS ? r->why : NULL);
    cli_json_bool(&j, "secure", r->secure);
    if (r->status == DNS_OK || r->status == DNS_NODATA || r->status == DNS_NXDOMAIN)
        cli_json_int(&j, "ttl", r->ttl);
    else
        cli_json_str(&j, "ttl", NULL);
    cli_json_bool(&j, "null_mx", r->status == DNS_OK && r->null_mx);
    cli_json_array(&j, "records");
    for (size_t i = 0; r->status == DNS_OK && i < r->nmx && !r->null_mx; i++) {
        cli_json_object(&j, NULL);
        cli_json_str(&j, "type", "mx");
        cli_json_int(&j, "pref", r->mx[i].pref);
        cli_json_str(&j, "host", r->mx[i].host);
        cli_json_close(&j);
    }
    for (size_t i = 0; r->status == DNS_OK && i < r->naddrs; i++) {
        if (!addr_text(&r->addrs[i], ip, sizeof ip)) continue;
        cli_json_object(&j, NULL);
        cli_json_str(&j, "type", r->addrs[i].ss_family == AF_INET ? "a" : "aaaa");
        cli_json_str(&j, "address", ip);
        cli_json_close(&j);
    }
    for (size_t i = 0; r->status == DNS_OK && i < r->nstrs; i++) {
        cli_json_object(&j, NULL);
        cli_json_str(&j, "type", lk->type);
        cli_json_str(&j, strcmp(lk->type, "ptr") == 0 ? "host" : "text", r->strs[i]);
        cli_json_close(&j);
    }
    for (size_t i = 0; r->status == DNS_OK && i < r->ntlsa; i++) {
        struct buf hex;
        buf_init(&hex, 0);
        for (size_t k = 0; k < r->tlsa[i].len; k++)
            buf_printf(&hex, "%02x", r->tlsa[i].data[k]);
        cli_json_object(&j, NULL);
        cli_json_str(&j, "type", "tlsa");
        cli_json_int(&j, "usage", r->tlsa[i].usage);
        cli_json_int(&j, "selector", r->tlsa[i].selector);
        cli_json_int(&j, "mtype", r->tlsa[i].mtype);
        cli_json_str(&j, "data", hex.data ? hex.data : "");
        cli_json_close(&j);
        buf_release(&hex);
    }
    cli_json_end(&j);
}

static void on_answer(void *arg, const struct dns_result *r)
{
    struct lookup *lk = arg;
    char ip[INET6_ADDRSTRLEN];
    lk->status = r->status == DNS_OK ? 0 : 1;
    if (lk->json) {
        print_json(lk, r);
        event_base_loopbreak(lk->base);
        return;
    }
    switch (r->status) {
    case DNS_OK:
        if (r->null_mx) printf("nullmx\n");
        for (size_t i = 0; i < r->nmx && !r->null_mx; i++)
            printf("mx %u %s\n", r->mx[i].pref, r->mx[i].host);
        for (size_t i = 0; i < r->naddrs; i++) {
            const struct sockaddr *sa = (const struct sockaddr *)&r->addrs[i];
            const void *a = sa->sa_family == AF_INET
                                ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                                : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
            if (inet_ntop(sa->sa_family, a, ip, sizeof ip))
                printf("%s %s\n", sa->sa_family == AF_INET ? "a" : "aaaa", ip);
        }
        for (size_t i = 0; i < r->nstrs; i++)
            print_text(lk->type, r->strs[i]);
        for (size_t i = 0; i < r->ntlsa; i++) {
            printf("tlsa %u %u %u ", r->tlsa[i].usage, r->tlsa[i].selector, r->tlsa[i].mtype);
            for (size_t k = 0; k < r->tlsa[i].len; k++)
                printf("%02x", r->tlsa[i].data[k]);
            printf("\n");
        }
        break;
    case DNS_NXDOMAIN:
        printf("nxdomain\n");
        break;
    case DNS_NODATA:
        printf("nodata\n");
        break;
    case DNS_TEMPFAIL:
        printf("tempfail: %s\n", r->why ? r->why : "unknown");
        break;
    case DNS_BOGUS:
        printf("bogus: %s\n", r->why ? r->why : "unknown");
        break;
    }
    if (r->secure) printf("secure\n");
    if (r->status == DNS_OK || r->status == DNS_NODATA || r->status == DNS_NXDOMAIN)
        printf("ttl %d\n", r->ttl);
    event_base_loopbreak(lk->base);
}

int cmd_dns(int argc, char **argv)
{
    const char *resolver = NULL, *anchor = NULL;
    const char *insecure[17] = {NULL};
    size_t ninsecure = 0;
    int timeout = 0, port = 25;
    const char *pos[3];
    int npos = 0;

    if (argc >= 2 && strcmp(argv[1], "records") == 0) return cmd_dns_records(argc - 1, argv + 1);
    int json = cli_json_flag(&argc, argv);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (strcmp(a, "--resolver") == 0 && has_val) {
            resolver = argv[++i];
        } else if (strcmp(a, "--trust-anchor") == 0 && has_val) {
            anchor = argv[++i];
        } else if (strcmp(a, "--insecure") == 0 && has_val) {
            if (ninsecure >= 16) return usage();
            insecure[ninsecure++] = argv[++i];
        } else if (strcmp(a, "--timeout") == 0 && has_val) {
            timeout = atoi(argv[++i]);
            if (timeout <= 0) return usage();
        } else if (strcmp(a, "--port") == 0 && has_val) {
            port = atoi(argv[++i]);
            if (port <= 0 || port > 65535) return usage();
        } else if (a[0] == '-') {
            return usage();
        } else if (npos < 3) {
            pos[npos++] = a;
        } else {
            return usage();
        }
    }
    if (npos != 3 || strcmp(pos[0], "lookup") != 0) return usage();
    const char *type = pos[1], *name = pos[2];
    static const char *const types[] = {"mx", "a", "aaaa", "txt", "ptr", "tlsa"};
    int known = 0;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
        known |= strcmp(type, types[k]) == 0;
    if (!known) return usage();
    struct sockaddr_storage ss;
    if (strcmp(type, "ptr") == 0 && ip_parse(name, &ss, NULL) != 0) {
        fprintf(stderr, "kurier: \"%s\" is not an IP address\n", name);
        return 2;
    }

    char *conf_res = resolver ? NULL : cli_conf_resolver();
    struct event_base *base = event_base_new();
    if (!base) {
        fprintf(stderr, "kurier: cannot create the event loop\n");
        free(conf_res);
        return 1;
    }
    char err[256];
    struct dns *d = dns_new(base, resolver ? resolver : conf_res, anchor,
                            ninsecure ? insecure : NULL, err, sizeof err);
    free(conf_res);
    if (!d) {
        fprintf(stderr, "kurier: %s\n", err);
        event_base_free(base);
        return 1;
    }
    if (timeout) dns_set_timeout(d, timeout);

    struct lookup lk = {.type = type, .name = name, .json = json, .status = -1, .base = base};
    if (strcmp(type, "mx") == 0)
        dns_query_mx(d, name, on_answer, &lk);
    else if (strcmp(type, "a") == 0)
        dns_query_a(d, name, on_answer, &lk);
    else if (strcmp(type, "aaaa") == 0)
        dns_query_aaaa(d, name, on_answer, &lk);
    else if (strcmp(type, "txt") == 0)
        dns_query_txt(d, name, on_answer, &lk);
    else if (strcmp(type, "ptr") == 0)
        dns_query_ptr(d, (struct sockaddr *)&ss, on_answer, &lk);
    else
        dns_query_tlsa(d, name, port, on_answer, &lk);
    while (lk.status < 0)
        if (event_base_loop(base, EVLOOP_ONCE) < 0) break;
    dns_free(d);
    event_base_free(base);
    if (fflush(stdout) != 0) return 1;
    return lk.status < 0 ? 1 : lk.status;
}
