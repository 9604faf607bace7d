/* cmd_check.c: "kurier check-client IP [--helo H] [--from A] [--to B] [--listen ADDR]":
 * runs the policy pipeline of a listener for a hypothetical unauthenticated client
 * (MAIL, then RCPT) with the daemon's resolver and directory, and prints each
 * check's verdict, so an admin sees why a client is refused. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <signal.h>

#include "cli/cli.h"
#include "core/core.h"
#include "dns/dns.h"
#include "policy/policy.h"
#include "store/store.h"

static int usage(void)
{
    fprintf(stderr,
            "usage: kurier check-client IP [--helo NAME] [--from ADDRESS] [--to ADDRESS]\n"
            "           [--listen ADDRESS]\n"
            "  Runs the checks of a listener (the first role mx one, or --listen as written\n"
            "  in the config) for a client at IP that did not log in: MAIL FROM (default\n"
            "  the null sender), then RCPT TO (default postmaster@hostname). Prints each\n"
            "  check's verdict and the stage's; exit 0 when the client would be accepted,\n"
            "  1 when refused or deferred. With reverse_dns on, the client's name is looked\n"
            "  up first, as the daemon does (the rdns check weighs it).\n");
    return 2;
}

struct check_run {
    struct event_base *base;
    int done;
    struct policy_verdict v;
};

static const char *kind_word(enum policy_kind k)
{
    static const char *names[] = {"pass", "accept", "score", "greylist", "tempfail", "reject"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

static void on_trace(void *arg, const struct policy_check *c, const struct policy_verdict *v)
{
    printf("  %-12s %s", c->name, kind_word(v->kind));
    if (v->kind == POLICY_SCORE) printf(" %+d", v->score);
    if (v->detail[0]) printf(" (%s)", v->detail);
    if (v->kind >= POLICY_GREYLIST && v->code) printf(": %d %s %s", v->code, v->enh, v->text);
    printf("\n");
}

struct name_run {
    struct event_base *base;
    int done;
    struct policy_ctx *ctx;
};

static void on_name(void *arg, const char *name, enum rdns_status st, const char *ptr)
{
    struct name_run *nr = arg;
    str_copy(nr->ctx->client_name, name, sizeof nr->ctx->client_name);
    nr->ctx->rdns = st;
    str_copy(nr->ctx->ptr_name, ptr, sizeof nr->ctx->ptr_name);
    nr->done = 1;
    event_base_loopbreak(nr->base);
}

/* The client's name as the daemon finds it before the greeting (reverse_dns on):
 * the rdns check weighs what this says. */
static void lookup_name(struct event_base *base, struct dns *dns, struct policy_ctx *ctx)
{
    static const char *const words[] = {
        [RDNS_UNCHECKED] = "not looked up", [RDNS_OK] = "confirmed",
        [RDNS_NO_PTR] = "no PTR record",    [RDNS_MISMATCH] = "does not resolve back",
        [RDNS_TEMPFAIL] = "DNS failure",
    };
    struct name_run nr = {.base = base, .ctx = ctx};
    dns_client_name(dns, (const struct sockaddr *)&ctx->client_sa, on_name, &nr);
    while (!nr.done)
        event_base_loop(base, EVLOOP_ONCE);
    char esc[300];
    printf("reverse DNS: %s (%s)\n",
           ctx->ptr_name[0] ? log_escape(esc, sizeof esc, ctx->ptr_name, strlen(ctx->ptr_name))
                            : "none",
           words[ctx->rdns]);
}

static void on_done(void *arg, const struct policy_verdict *v)
{
    struct check_run *cr = arg;
    cr->v = *v;
    cr->done = 1;
    event_base_loopbreak(cr->base);
}

/* Run one stage; prints its checks and its verdict. 0 accepted, 1 refused. */
static int run_stage(struct event_base *base, const struct policy_ctx *ctx, enum policy_stage stage)
{
    struct check_run cr = {.base = base};
    printf("%s:\n", policy_stage_name(stage));
    struct policy_run *r = policy_run_start(ctx, stage, on_done, &cr);
    policy_run_trace(r, on_trace, NULL);
    while (!cr.done)
        event_base_loop(base, EVLOOP_ONCE);
    const struct conf_listen *l = ctx->listener;
    printf("  => %s", kind_word(cr.v.kind == POLICY_SCORE ? POLICY_PASS : cr.v.kind));
    if (cr.v.code) printf(": %d %s %s", cr.v.code, cr.v.enh, cr.v.text);
    printf(" (score %d, reject_score %d, greylist_score %d)\n", cr.v.score, l->reject_score,
           l->greylist_score);
    return cr.v.kind == POLICY_GREYLIST || cr.v.kind == POLICY_TEMPFAIL ||
                   cr.v.kind == POLICY_REJECT
               ? 1
               : 0;
}

static int parse_path(const char *s, struct addr *out, const char *what)
{
    const char *err = NULL;
    char *br = xasprintf("<%s>", s);
    int n = addr_parse(br, strlen(br), ADDR_O_UTF8, out, &err);
    int ok = n > 0 && (size_t)n == strlen(br);
    free(br);
    if (!ok) {
        addr_clear(out);
        return cli_fail("invalid %s address \"%s\": %s", what, s, err ? err : "trailing text");
    }
    return 0;
}

int cmd_check_client(int argc, char **argv)
{
    const char *ip = NULL, *helo = NULL, *from = "", *to = NULL, *listen = NULL;
    for (int i = 1; i < argc; i++) {
        const char **opt = strcmp(argv[i], "--helo") == 0     ? &helo
                           : strcmp(argv[i], "--from") == 0   ? &from
                           : strcmp(argv[i], "--to") == 0     ? &to
                           : strcmp(argv[i], "--listen") == 0 ? &listen
                                                              : NULL;
        if (opt) {
            if (i + 1 >= argc) return usage();
            *opt = argv[++i];
        } else if (argv[i][0] == '-' || ip) {
            return usage();
        } else {
            ip = argv[i];
        }
    }
    if (!ip) return usage();

    struct policy_ctx ctx = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&ctx.client_sa;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ctx.client_sa;
    if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1)
        sin->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1)
        sin6->sin6_family = AF_INET6;
    else
        return cli_fail("invalid client address \"%s\": expected IPv4 or IPv6", ip);
    str_copy(ctx.client_addr, ip, sizeof ctx.client_addr);
    str_copy(ctx.client_name, "unknown", sizeof ctx.client_name);

    struct addr sender = {0}, rcpt = {0};
    if (*from && parse_path(from, &sender, "sender") != 0) return 1;
    struct cli_dir d;
    conf_read_secrets(1); /* the BATV check needs the keys, as the daemon has them */
    if (cli_dir_open(&d) != 0) {
        addr_clear(&sender);
        return 1;
    }
    int rc = 1;
    struct event_base *base = NULL;
    struct dns *dns = NULL;
    char *to_default = NULL;
    const struct conf_listen *l = NULL;
    for (const struct conf_listen *x = d.conf->listeners; x && !l; x = x->next)
        if (listen ? strcmp(x->address, listen) == 0 : x->role == LISTEN_MX) l = x;
    if (!l) {
        cli_fail(listen ? "no listener \"%s\" in %s" : "no role mx listener in %s%s",
                 listen ? listen : cli_conf_path(), listen ? cli_conf_path() : "");
        goto out;
    }
    if (!to) to = to_default = xasprintf("postmaster@%s", d.conf->hostname);
    if (parse_path(to, &rcpt, "recipient") != 0) goto out;

    signal(SIGPIPE, SIG_IGN); /* a policy server may close its end (policyd.c) */
    evthread_use_pthreads();  /* the worker pool wakes the loop from its threads */
    base = event_base_new();
    if (!base || work_init(base, 1) != 0) {
        cli_fail("cannot set up the event loop");
        goto out;
    }
    policy_init(base);
    static const char *const test_zones[] = {"test.", NULL};
    char err[256];
    const char *res = d.conf->resolver;
    dns = dns_new(base, res, NULL, res && *res ? test_zones : NULL, err, sizeof err);
    if (!dns) {
        cli_fail("resolver: %s", err);
        work_shutdown();
        goto out;
    }
    ctx.conf = d.conf;
    ctx.listener = l;
    ctx.store = d.st;
    ctx.dns = dns;
    ctx.helo = helo;
    ctx.esmtp = helo != NULL;
    ctx.sender = &sender;
    ctx.size_declared = -1;
    ctx.trusted = 0;
    for (size_t i = 0; i < d.conf->ntrusted; i++)
        if (conf_net_match(&d.conf->trusted[i], (const struct sockaddr *)&ctx.client_sa))
            ctx.trusted = 1;
    printf("client [%s] on listen %s, helo=%s from=<%s> to=<%s>\n", ip, l->address,
           helo ? helo : "(none)", from, to);
    if (d.conf->reverse_dns) lookup_name(base, dns, &ctx);
    /* one transaction, as a session's: the MAIL stage's score (spf) counts at RCPT */
    ctx.txn = policy_txn_new(d.conf->hostname);
    rc = run_stage(base, &ctx, POLICY_MAIL);
    if (rc == 0) {
        ctx.rcpt = &rcpt;
        rc = run_stage(base, &ctx, POLICY_RCPT);
    }
    policy_txn_free(ctx.txn);
    printf("%s\n", rc == 0 ? "accepted" : "refused");
    dns_free(dns);
    policy_policyd_shutdown();
    work_shutdown();
out:
    if (base) event_base_free(base);
    free(to_default);
    addr_clear(&sender);
    addr_clear(&rcpt);
    cli_dir_close(&d);
    return rc;
}
