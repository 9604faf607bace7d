/* cmd_relay.c: "kurier relay add|del|list": relay routes per sender or sender domain
 * (a customer's smarthost at another provider, with their login) in the directory.
 * Works on the SQLite file directly; the password is read from stdin and never
 * printed (list masks it). The daemon reads the routes at each delivery. */
#include "core/compat.h"

#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "store/store.h"

static int usage(void)
{
    fprintf(stderr,
            "usage: kurier relay add MATCH HOST[:PORT][,HOST[:PORT]...] [--user U "
            "--password-stdin] [--tls none|may|encrypt|verify|implicit]\n"
            "       kurier relay del MATCH\n"
            "       kurier relay list [--json]\n"
            "MATCH is a sender address (user@example.org) or a sender domain (@example.org);\n"
            "mail from it goes through the hosts in order (the next when one is unreachable).\n"
            "With a login, TLS is at least \"encrypt\": the password never travels in clear.\n");
    return 2;
}

/* One line from stdin without the line end; new string or NULL. */
static char *read_secret(void)
{
    char buf[512];
    if (!fgets(buf, sizeof buf, stdin)) return NULL;
    size_t n = strcspn(buf, "\r\n");
    buf[n] = '\0';
    char *s = n ? xstrdup(buf) : NULL;
    explicit_bzero(buf, sizeof buf);
    return s;
}

static void print_route(void *arg, const struct store_relay *r)
{
    if (*(const int *)arg) { /* the password never, only whether there is one */
        struct cli_json j;
        cli_json_begin(&j);
        cli_json_str(&j, "match", r->match);
        cli_json_str(&j, "hosts", r->hosts);
        cli_json_str(&j, "username", r->username[0] ? r->username : NULL);
        cli_json_bool(&j, "password", r->password[0] != '\0');
        cli_json_str(&j, "tls", r->tls[0] ? r->tls : NULL);
        cli_json_end(&j);
        return;
    }
    printf("%-40s %-40s %s%s %s\n", r->match, r->hosts, r->username[0] ? r->username : "-",
           r->password[0] ? ":********" : "", r->tls[0] ? r->tls : "default");
}

int cmd_relay(int argc, char **argv)
{
    int json = cli_json_flag(&argc, argv);
    if (argc < 2) return usage();
    if (json && strcmp(argv[1], "list") != 0)
        return cli_fail("relay %s has no --json output", argv[1]), 2;
    const char *verb = argv[1];
    const char *args[2] = {NULL, NULL};
    size_t nargs = 0;
    const char *user = NULL, *tls = NULL;
    int pw_stdin = 0;
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--user") == 0 && i + 1 < argc)
            user = argv[++i];
        else if (strcmp(o, "--password-stdin") == 0)
            pw_stdin = 1;
        else if (strcmp(o, "--tls") == 0 && i + 1 < argc)
            tls = argv[++i];
        else if (o[0] == '-' && o[1])
            return usage();
        else if (nargs < 2)
            args[nargs++] = o;
        else
            return usage();
    }
    int is_add = strcmp(verb, "add") == 0;
    if ((is_add && nargs != 2) || (strcmp(verb, "del") == 0 && nargs != 1) ||
        (strcmp(verb, "list") == 0 && nargs != 0) ||
        (!is_add && strcmp(verb, "del") != 0 && strcmp(verb, "list") != 0))
        return usage();
    if (!is_add && (user || tls || pw_stdin)) return usage();
    if (is_add && (user != NULL) != pw_stdin)
        return cli_fail("--user and --password-stdin go together");

    char *password = NULL;
    if (pw_stdin) {
        password = read_secret();
        if (!password) return cli_fail("no password on standard input");
    }
    struct cli_dir d;
    if (cli_dir_open(&d) != 0) {
        cli_wipe(password);
        return 1;
    }
    struct store *st = d.st;
    char err[512];
    int rc = 0;
    if (is_add) {
        if (store_relay_add(st, args[0], args[1], user, password, tls, err, sizeof err) != 0)
            rc = cli_fail("%s", err);
    } else if (strcmp(verb, "del") == 0) {
        if (store_relay_del(st, args[0], err, sizeof err) != 0) rc = cli_fail("%s", err);
    } else if (store_relay_list(st, print_route, &json) != 0) {
        rc = cli_fail("cannot list relay routes: database error");
    }
    cli_wipe(password);
    cli_dir_close(&d);
    return rc;
}
