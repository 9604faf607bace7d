/* cmd_monitor.c: "kurier monitor status|history [ADDRESS]": what the daemon's
 * blocklist monitor (egress/monitor.c) found about our egress addresses, read from
 * the directory database. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <time.h>

#include "cli/cli.h"
#include "core/core.h"
#include "store/store.h"

static int usage(void)
{
    fprintf(stderr, "usage: kurier monitor status [ADDRESS] [--json]\n"
                    "       kurier monitor history [ADDRESS] [--limit N] [--json]\n");
    return 2;
}

static void fmt_time(char *dst, size_t size, long long t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(dst, size, "%Y-%m-%d %H:%M:%SZ", &tm);
}

static void print_details(const struct store_listing *l)
{
    if (l->code[0]) printf("    code %s\n", l->code);
    if (l->txt[0]) printf("    txt  %s\n", l->txt);
    if (l->delist_url[0] && strcmp(l->state, "clear") != 0)
        printf("    delist %s\n", l->delist_url);
}

struct rows {
    int n, json, history;
};

/* One listing (status) or change (history) as a JSON line (docs/json.md). */
static void json_row(const struct rows *r, const struct store_listing *l)
{
    struct cli_json j;
    cli_json_begin(&j);
    cli_json_str(&j, "address", l->address);
    cli_json_str(&j, "zone", l->zone);
    cli_json_str(&j, "state", l->state);
    if (r->history) cli_json_str(&j, "previous", l->previous);
    cli_json_time(&j, r->history ? "time" : "since", l->time);
    cli_json_str(&j, "code", l->code[0] ? l->code : NULL);
    cli_json_str(&j, "txt", l->txt[0] ? l->txt : NULL);
    cli_json_str(&j, "delist_url", l->delist_url[0] ? l->delist_url : NULL);
    cli_json_end(&j);
}

static void status_row(void *arg, const struct store_listing *l)
{
    struct rows *r = arg;
    r->n++;
    if (r->json) {
        json_row(r, l);
        return;
    }
    char t[40];
    fmt_time(t, sizeof t, l->time);
    printf("%-39s %-28s %-8s since %s\n", l->address, l->zone, l->state, t);
    print_details(l);
}

static void history_row(void *arg, const struct store_listing *l)
{
    struct rows *r = arg;
    r->n++;
    if (r->json) {
        json_row(r, l);
        return;
    }
    char t[40];
    fmt_time(t, sizeof t, l->time);
    printf("%s %-39s %-28s %s -> %s\n", t, l->address, l->zone, l->previous, l->state);
    print_details(l);
}

int cmd_monitor(int argc, char **argv)
{
    int json = cli_json_flag(&argc, argv);
    if (argc < 2) return usage();
    int history = strcmp(argv[1], "history") == 0;
    if (!history && strcmp(argv[1], "status") != 0) return usage();
    const char *address = NULL;
    long limit = 50;
    for (int i = 2; i < argc; i++) {
        if (history && strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
            char *end;
            limit = strtol(argv[++i], &end, 10);
            if (*end || limit < 1 || limit > 1000000) return cli_fail("--limit takes 1 to 1000000");
        } else if (argv[i][0] == '-' || address) {
            return usage();
        } else {
            struct sockaddr_storage ss;
            socklen_t len;
            if (ip_parse(argv[i], &ss, &len) != 0)
                return cli_fail("\"%s\" is not an IPv4 or IPv6 address", argv[i]);
            address = argv[i];
        }
    }
    struct cli_dir d;
    if (cli_dir_open(&d) != 0) return 1;
    char canon[64] = "";
    if (address) { /* as the monitor writes it: "2001:db8::1", not "2001:DB8:0::1" */
        unsigned char ip[16];
        int fam = strchr(address, ':') ? AF_INET6 : AF_INET;
        if (inet_pton(fam, address, ip) == 1) inet_ntop(fam, ip, canon, sizeof canon);
    }
    struct rows rows = {.json = json, .history = history};
    int rc;
    if (history)
        rc = store_listing_history(d.st, address ? canon : NULL, (int)limit, history_row, &rows);
    else
        rc = store_listing_list(d.st, address ? canon : NULL, status_row, &rows);
    cli_dir_close(&d);
    if (rc != 0) return cli_fail("cannot read the directory database");
    if (!rows.n && !json)
        printf(history ? "no changes recorded%s%s\n" : "nothing recorded%s%s\n",
               address ? " for " : "", address ? canon : "");
    return 0;
}
