/* cmd_greylist.c: "kurier greylist list|clear|allow": the greylisting state in the
 * directory database (triplets and auto-allowlisted networks, store.h). Works on the
 * SQLite file directly, as the daemon reads it at every RCPT: a change counts for the
 * next attempt, without a reload. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>

#include "cli/cli.h"
#include "core/core.h"
#include "policy/policy.h"
#include "store/store.h"

static int usage(void)
{
    fprintf(stderr,
            "usage: kurier greylist list [--json]\n"
            "       kurier greylist clear --all | IP|NET [--sender ADDRESS] | --sender ADDRESS\n"
            "       kurier greylist allow IP|NET\n"
            "  list: triplets (client network, sender, recipient) with their state, and the\n"
            "  client networks with passed retries (auto-allowlisting).\n"
            "  clear: forget triplets (and with IP|NET or --all, the networks' passes): the\n"
            "  next attempt of a forgotten triplet is greylisted again.\n"
            "  allow: let a client network pass at once, as if auto-allowlisted (needs\n"
            "  greylist { auto_allowlist } on; allow_networks in the config is permanent).\n"
            "  IP|NET: a client address, or its network as greylisting keys it (/24, /64).\n");
    return 2;
}

/* An address, or a network as greylisting keys clients (/24 IPv4, /64 IPv6), as
 * the stored text ("192.0.2.0/24"). 0 done, -1 with the error printed. */
static int parse_net(const char *arg, char *out, size_t outsize)
{
    char ip[INET6_ADDRSTRLEN + 8];
    str_copy(ip, arg, sizeof ip);
    char *slash = strchr(ip, '/');
    long prefix = -1;
    if (slash) {
        char *end;
        *slash = '\0';
        prefix = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end) prefix = -2;
    }
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    else
        return cli_fail("invalid client address or network \"%s\"", arg);
    int want = ss.ss_family == AF_INET ||
                       (ss.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
                   ? 24
                   : 64;
    if (slash && prefix != want)
        return cli_fail("invalid network \"%s\": greylisting keys clients by /24 (IPv4) or /64 "
                        "(IPv6); give an address or such a network",
                        arg);
    policy_greylist_net(&ss, out, outsize);
    return 0;
}

/* "42s", "5m", "3h", "2d": ages for people. */
static const char *human(long long secs, char *buf, size_t size)
{
    if (secs < 0) secs = 0;
    if (secs < 120)
        snprintf(buf, size, "%llds", secs);
    else if (secs < 7200)
        snprintf(buf, size, "%lldm", secs / 60);
    else if (secs < 2 * 86400)
        snprintf(buf, size, "%lldh", secs / 3600);
    else
        snprintf(buf, size, "%lldd", secs / 86400);
    return buf;
}

struct lister {
    const struct kconf *conf;
    long long now;
    int json;
    size_t ntriplets, nnets;
};

/* What a triplet means now, as greylisting would judge its next attempt. */
static const char *triplet_state(const struct lister *L, const struct store_grey_triplet *t,
                                 long long *retry_in)
{
    const struct kconf *c = L->conf;
    *retry_in = 0;
    if (t->passed) return L->now - t->last_seen > c->grey_lifetime ? "expired" : "passed";
    long long age = L->now - t->first_seen;
    if (age > (long long)c->grey_delay + c->grey_retry_window) return "expired";
    if (age < c->grey_delay) {
        *retry_in = c->grey_delay - age;
        return "greylisted";
    }
    return "retry-due";
}

static void on_triplet(void *arg, const struct store_grey_triplet *t)
{
    struct lister *L = arg;
    long long retry_in;
    const char *state = triplet_state(L, t, &retry_in);
    if (L->json) {
        struct cli_json j;
        cli_json_begin(&j);
        cli_json_str(&j, "kind", "triplet");
        cli_json_str(&j, "network", t->net);
        cli_json_str(&j, "sender", t->sender);
        cli_json_str(&j, "recipient", t->rcpt);
        cli_json_str(&j, "state", state);
        cli_json_int(&j, "retry_in", retry_in);
        cli_json_time(&j, "first_seen", t->first_seen);
        cli_json_time(&j, "last_seen", t->last_seen);
        cli_json_int(&j, "age", L->now - t->first_seen);
        cli_json_end(&j);
    } else {
        char net[80], from[400], to[400], a[32], b[32], w[32];
        if (!L->ntriplets) printf("triplets:\n");
        printf("  %s <%s> -> <%s>: %s", log_escape(net, sizeof net, t->net, strlen(t->net)),
               log_escape(from, sizeof from, t->sender, strlen(t->sender)),
               log_escape(to, sizeof to, t->rcpt, strlen(t->rcpt)), state);
        if (retry_in) printf(" (a retry passes in %s)", human(retry_in, w, sizeof w));
        printf(", first seen %s ago, last seen %s ago\n",
               human(L->now - t->first_seen, a, sizeof a),
               human(L->now - t->last_seen, b, sizeof b));
    }
    L->ntriplets++;
}

static void on_net(void *arg, const struct store_grey_net *n)
{
    struct lister *L = arg;
    const struct kconf *c = L->conf;
    int allowed = c->grey_auto_allowlist > 0 && n->passes >= c->grey_auto_allowlist &&
                  L->now - n->last_seen <= c->grey_lifetime;
    if (L->json) {
        struct cli_json j;
        cli_json_begin(&j);
        cli_json_str(&j, "kind", "network");
        cli_json_str(&j, "network", n->net);
        cli_json_int(&j, "passes", n->passes);
        cli_json_bool(&j, "allowlisted", allowed);
        cli_json_time(&j, "last_seen", n->last_seen);
        cli_json_end(&j);
    } else {
        char net[80], a[32];
        if (!L->nnets) printf("networks:\n");
        printf("  %s: %lld passed retr%s, %s, last seen %s ago\n",
               log_escape(net, sizeof net, n->net, strlen(n->net)), n->passes,
               n->passes == 1 ? "y" : "ies", allowed ? "auto-allowlisted" : "not allowlisted",
               human(L->now - n->last_seen, a, sizeof a));
    }
    L->nnets++;
}

static int grey_list(struct cli_dir *d, int json)
{
    struct lister L = {.conf = d->conf, .now = (long long)time(NULL), .json = json};
    /* --json: one object per line, triplets first (JSON Lines, docs/json.md) */
    if (store_grey_list(d->st, on_triplet, on_net, &L) != 0)
        return cli_fail("cannot list greylisting entries: database error");
    if (!json && !L.ntriplets && !L.nnets) {
        printf("no greylisting entries\n");
    }
    return 0;
}

int cmd_greylist(int argc, char **argv)
{
    if (argc < 2) return usage();
    const char *verb = argv[1];
    const char *target = NULL, *sender = NULL;
    int all = 0, json = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--all") == 0)
            all = 1;
        else if (strcmp(argv[i], "--sender") == 0 && i + 1 < argc)
            sender = argv[++i];
        else if (argv[i][0] == '-' || target)
            return usage();
        else
            target = argv[i];
    }
    int is_list = strcmp(verb, "list") == 0, is_clear = strcmp(verb, "clear") == 0,
        is_allow = strcmp(verb, "allow") == 0;
    if ((is_list && (target || sender || all)) || (!is_list && json) ||
        (is_clear && all == (target || sender)) || (is_allow && (!target || sender || all)) ||
        (!is_list && !is_clear && !is_allow))
        return usage();
    char net[64] = "";
    if (target && parse_net(target, net, sizeof net) != 0) return 1;
    /* the null sender as the greylisting stores it */
    if (sender && (strcmp(sender, "<>") == 0)) sender = "";
    if (sender && *sender == '<' && sender[strlen(sender) - 1] == '>')
        return cli_fail("give the sender without angle brackets (\"<>\" for the null sender)");

    struct cli_dir d;
    if (cli_dir_open(&d) != 0) return 1;
    int rc = 0;
    if (is_list) {
        rc = grey_list(&d, json);
    } else if (is_clear) {
        long nt = 0, nn = 0;
        if (store_grey_clear(d.st, target ? net : NULL, sender, &nt, &nn) != 0)
            rc = cli_fail("cannot clear greylisting entries: database error");
        else
            printf("forgot %ld triplet%s and %ld network%s\n", nt, nt == 1 ? "" : "s", nn,
                   nn == 1 ? "" : "s");
    } else {
        int need = d.conf->grey_auto_allowlist;
        if (store_grey_allow(d.st, net, need > 0 ? need : 1, (long long)time(NULL)) != 0)
            rc = cli_fail("cannot allow %s: database error", net);
        else if (need <= 0)
            rc = cli_fail("recorded %s, but greylist { auto_allowlist } is 0 (off), so it does "
                          "not pass: use greylist { allow_networks %s; } instead",
                          net, net);
        else
            printf("network %s passes greylisting from now on (while it sends within %s)\n", net,
                   "greylist lifetime");
    }
    cli_dir_close(&d);
    return rc;
}
