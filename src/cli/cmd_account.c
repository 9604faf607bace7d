/* cmd_account.c: "kurier account status [USER] [--json]" and "kurier account unlock
 * USER [--release|--delete]": the sending accounts the running daemon watches
 * (abuse/abuse.c), through its control socket, so that an unlock takes effect at
 * once. */
#include "core/compat.h"

#include "cli/cli.h"
#include "control/control.h"
#include "core/core.h"

static int usage(void)
{
    fprintf(stderr, "usage: kurier account status [USER] [--json]\n"
                    "       kurier account unlock USER [--release|--delete]\n");
    return 2;
}

static int status(const char *user, int json)
{
    char req[600], *text, reply[1024];
    size_t len;
    if (snprintf(req, sizeof req, "account-status%s%s%s", json ? "-json" : "", user ? " " : "",
                 user ? user : "") >= (int)sizeof req ||
        (user && strpbrk(user, "\r\n ")))
        return cli_fail("not an account: %s", user);
    struct kconf *conf = cli_load_conf();
    int r = control_request_text(conf->control_socket, req, &text, &len, reply, sizeof reply);
    conf_free(conf);
    if (r != 0) return cli_fail("%s", reply);
    if (!json && len == 0)
        printf("No account has signals, limits in use or a lock\n");
    else
        fwrite(text, 1, len, stdout);
    free(text);
    return 0;
}

static int unlock(const char *user, const char *what)
{
    char req[600], reply[1024];
    if (snprintf(req, sizeof req, "account-unlock %s %s", user, what) >= (int)sizeof req ||
        strpbrk(user, "\r\n "))
        return cli_fail("not an account: %s", user);
    struct kconf *conf = cli_load_conf();
    int r = control_request(conf->control_socket, req, reply, sizeof reply);
    conf_free(conf);
    if (r != 0)
        return cli_fail("%s", r > 0 && strncmp(reply, "error ", 6) == 0 ? reply + 6 : reply);
    printf("%s\n", strncmp(reply, "ok ", 3) == 0 ? reply + 3 : reply);
    return 0;
}

int cmd_account(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage();
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "status") == 0) {
        const char *user = NULL;
        int json = 0;
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "--json") == 0)
                json = 1;
            else if (argv[i][0] != '-' && !user && argv[i][0])
                user = argv[i];
            else
                return usage();
        }
        return status(user, json);
    }
    if (argc >= 3 && strcmp(argv[1], "unlock") == 0 && argv[2][0] && argv[2][0] != '-') {
        const char *what = "keep";
        if (argc == 4 && strcmp(argv[3], "--release") == 0)
            what = "release";
        else if (argc == 4 && strcmp(argv[3], "--delete") == 0)
            what = "delete";
        else if (argc != 3)
            return usage();
        return unlock(argv[2], what);
    }
    return usage();
}
