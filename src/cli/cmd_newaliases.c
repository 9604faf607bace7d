/* cmd_newaliases.c: newaliases(1) (also "sendmail -bi" and "kurier newaliases"):
 * check the aliases file the configuration names, print every error as FILE:LINE,
 * and make a running kurierd read it again (a reload over the control socket). The
 * file itself is read by the daemon (conf_load()); there is no database to build. */
#include "core/compat.h"

#include <sysexits.h>

#include "cli/cli.h"
#include "control/control.h"
#include "core/core.h"

int cmd_newaliases(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: newaliases\n"
               "  Checks the aliases file named by \"aliases\" in kurier.conf (/etc/aliases\n"
               "  format) and makes a running kurierd reload it. Errors name the file and\n"
               "  line; exit 0 when the file is good, 1 when not.\n");
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "newaliases: unexpected argument \"%s\"\nusage: newaliases\n", argv[1]);
        return 2;
    }
    struct kconf *conf = cli_load_conf();
    if (!conf->aliases_file) {
        fprintf(stderr,
                "newaliases: no aliases file is configured: set \"aliases "
                "/etc/aliases;\" in %s\n",
                cli_conf_path());
        conf_free(conf);
        return 1;
    }
    struct conf_errors errs = {0};
    struct aliases *a = aliases_load(conf->aliases_file, &errs);
    if (!a) {
        conf_errors_print(&errs, stderr);
        fprintf(stderr, "newaliases: %s has %zu error%s; kurierd keeps the aliases it has\n",
                conf->aliases_file, errs.n, errs.n == 1 ? "" : "s");
        conf_errors_free(&errs);
        conf_free(conf);
        return 1;
    }
    printf("newaliases: %s: %zu alias%s\n", conf->aliases_file, a->n, a->n == 1 ? "" : "es");
    aliases_free(a);
    conf_errors_free(&errs);
    char reply[512];
    int r = control_request(conf->control_socket, "reload", reply, sizeof reply);
    if (r < 0)
        printf("newaliases: kurierd is not running; it reads the file when it starts\n");
    else if (r > 0)
        fprintf(stderr, "newaliases: kurierd did not reload: %s\n", reply);
    else
        printf("newaliases: kurierd reloads it\n");
    conf_free(conf);
    return r > 0 ? 1 : 0;
}
