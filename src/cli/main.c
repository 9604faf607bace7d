/* main.c: the kurier command's entry point: global options, then one cmd_*() per
 * noun (cli.h). Also sendmail(1) and mailq(1) when called by those names. */
#include "core/compat.h"

#include <libgen.h>

#include "cli/cli.h"
#include "core/core.h"

static const char *conf_path;

const char *cli_conf_path(void)
{
    if (conf_path) return conf_path;
    const char *env = getenv("KURIER_CONF");
    return env && *env ? env : "/etc/kurier/kurier.conf";
}

struct kconf *cli_load_conf(void)
{
    struct conf_errors errs = {0};
    struct kconf *c = conf_load(cli_conf_path(), &errs);
    if (!c) {
        conf_errors_print(&errs, stderr);
        conf_errors_free(&errs);
        exit(1);
    }
    conf_errors_free(&errs);
    return c;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: kurier [-c FILE] COMMAND ...\n"
            "  config check [FILE] | config dump | config doc\n"
            "  domain add|del|list|catchall ...\n"
            "  mailbox add|del|list|passwd|quota ...\n"
            "  alias add|del|list ...\n"
            "  relay add MATCH HOST[:PORT][,HOST...] [--user U --password-stdin] | del | list\n"
            "  queue list [--account USER]|show ID|flush|delete ID|ALL|hold ID|release ID\n"
            "  auth blocks [--clear ADDRESS|ACCOUNT]\n"
            "  account status [USER] [--json] | account unlock USER [--release|--delete]\n"
            "  greylist list [--json] | clear --all|IP|NET [--sender A] | allow IP|NET\n"
            "  egress status [--json] | bench|unbench ADDRESS [--destination D] [--for DUR]\n"
            "  tls selfsigned HOST [--cert FILE] [--key FILE] [--force]\n"
            "  dns lookup mx|a|aaaa|txt|ptr|tlsa NAME [--resolver IP@PORT]\n"
            "  dns records DOMAIN [--check] [--resolver IP@PORT]\n"
            "  dkim keygen DOMAIN [--selector S] [--type rsa|ed25519] | rotate DOMAIN\n"
            "  dkim retire DOMAIN SELECTOR | list [DOMAIN] | check DOMAIN\n"
            "  check-client IP [--helo NAME] [--from A] [--to B] [--listen ADDRESS]\n"
            "  spf check IP SENDER [--helo NAME] [--resolver IP@PORT]\n"
            "  replies classify [--rules FILE] \"550 5.7.1 TEXT\" | replies check [FILE]\n"
            "  rbl check IP|DOMAIN [--list ZONE]... [--json] | rbl lists\n"
            "  smtp send --to HOST:PORT [--tls MODE] [--auth U:P] --from A --rcpt B FILE\n"
            "  monitor status|history [ADDRESS] [--limit N]\n"
            "  complaints list [--account ADDRESS]\n"
            "  newaliases   (check the aliases file, make kurierd reload it)\n"
            "The config file is -c FILE, else $KURIER_CONF, else /etc/kurier/kurier.conf.\n");
}

int main(int argc, char **argv)
{
    char *me = basename(argv[0]);
    log_init("stderr", "kurier", LOG_LV_WARN);
    if (strcmp(me, "sendmail") == 0) return cmd_sendmail(argc, argv);
    if (strcmp(me, "mailq") == 0) return cmd_mailq(argc, argv);
    if (strcmp(me, "newaliases") == 0) return cmd_newaliases(argc, argv);

    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            conf_path = argv[i + 1];
            i += 2;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage();
            return 0;
        } else {
            fprintf(stderr, "kurier: unknown option %s\n", argv[i]);
            usage();
            return 2;
        }
    }
    if (i >= argc) {
        usage();
        return 2;
    }
    static const struct {
        const char *noun;
        int (*fn)(int, char **);
    } cmds[] = {
        /* clang-format off */
        {"config", cmd_config}, {"domain", cmd_domain}, {"mailbox", cmd_mailbox},
        {"alias", cmd_alias},   {"queue", cmd_queue},   {"sendmail", cmd_sendmail},
        {"mailq", cmd_mailq},   {"tls", cmd_tls},       {"dns", cmd_dns},
        {"smtp", cmd_smtp},     {"relay", cmd_relay},   {"auth", cmd_auth},
        {"check-client", cmd_check_client},
        {"greylist", cmd_greylist},
        {"spf", cmd_spf},
        {"replies", cmd_replies},
        {"rbl", cmd_rbl},
        {"monitor", cmd_monitor},
        {"egress", cmd_egress},
        {"dkim", cmd_dkim},
        {"account", cmd_account},
        {"complaints", cmd_complaints},
        {"newaliases", cmd_newaliases},
        /* clang-format on */
    };
    for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++)
        if (strcmp(argv[i], cmds[k].noun) == 0) return cmds[k].fn(argc - i, argv + i);
    fprintf(stderr, "kurier: unknown command \"%s\"\n", argv[i]);
    usage();
    return 2;
}
