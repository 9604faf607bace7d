/* cmd_auth.c: "kurier auth blocks [--clear ADDRESS|ACCOUNT]": list and lift the
 * brute-force blocks the running daemon holds in memory (auth/limits.c), through
 * its control socket. */
#include "core/compat.h"

#include "cli/cli.h"
#include "control/control.h"
#include "core/core.h"

static int usage(void)
{
    fprintf(stderr, "usage: kurier auth blocks [--json] | auth blocks --clear ADDRESS|ACCOUNT\n");
    return 2;
}

/* "1h02m", "59m58s", "42s" */
static void print_duration(long s)
{
    char d[32];
    if (s >= 3600)
        snprintf(d, sizeof d, "%ldh%02ldm", s / 3600, s % 3600 / 60);
    else if (s >= 60)
        snprintf(d, sizeof d, "%ldm%02lds", s / 60, s % 60);
    else
        snprintf(d, sizeof d, "%lds", s);
    printf("%s\n", d);
}

static int list_blocks(const struct kconf *conf, int json)
{
    char *text, reply[1024];
    size_t len;
    int r =
        control_request_text(conf->control_socket, "auth-blocks", &text, &len, reply, sizeof reply);
    if (r != 0)
        return cli_fail("%s%s", reply, r < 0 ? " (blocks live in the daemon's memory only)" : "");
    size_t n = 0;
    for (char *line = text, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = '\0';
        /* ADDRESS TAB ACCOUNT TAB FAILURES TAB SECONDS (the daemon escaped the account) */
        char *f[4];
        size_t k = 0;
        for (char *p = line; k < 4; k++) {
            f[k] = p;
            char *t = strchr(p, '\t');
            if (!t) break;
            *t = '\0';
            p = t + 1;
        }
        if (k != 3) continue;
        if (json) { /* docs/json.md */
            struct cli_json j;
            cli_json_begin(&j);
            cli_json_str(&j, "address", f[0]);
            cli_json_str(&j, "account", f[1][0] ? f[1] : NULL);
            cli_json_int(&j, "failures", strtol(f[2], NULL, 10));
            cli_json_int(&j, "blocked_for", strtol(f[3], NULL, 10));
            cli_json_end(&j);
            continue;
        }
        if (n++ == 0)
            printf("%-24s %-32s %10s  %s\n", "-Client address-", "-Account-", "-Failures-",
                   "-Blocked for-");
        printf("%-24s %-32s %10s  ", f[0], f[1][0] ? f[1] : "(every account)", f[2]);
        print_duration(strtol(f[3], NULL, 10));
    }
    free(text);
    if (n == 0 && !json) printf("No AUTH blocks\n");
    return 0;
}

int cmd_auth(int argc, char **argv)
{
    int json = cli_json_flag(&argc, argv);
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage();
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "blocks") != 0) return usage();
    if (argc == 2) {
        struct kconf *conf = cli_load_conf();
        int rc = list_blocks(conf, json);
        conf_free(conf);
        return rc;
    }
    if (argc != 4 || strcmp(argv[2], "--clear") != 0 || !argv[3][0] || json) return usage();
    char req[600], reply[1024];
    if (snprintf(req, sizeof req, "auth-clear %s", argv[3]) >= (int)sizeof req ||
        strpbrk(argv[3], "\r\n"))
        return cli_fail("not an address or account: %s", argv[3]);
    struct kconf *conf = cli_load_conf();
    int r = control_request(conf->control_socket, req, reply, sizeof reply);
    conf_free(conf);
    if (r != 0)
        return cli_fail("%s%s", reply, r < 0 ? " (blocks live in the daemon's memory only)" : "");
    printf("%s\n", reply);
    return 0;
}
