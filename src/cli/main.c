/* main.c: the kurier command's entry point: global options, then the command from
 * the table (commands.c). Also sendmail(1) and mailq(1) when called by those names. */
#include "core/compat.h"

#include <libgen.h>

#include "cli/cli.h"
#include "core/core.h"

int main(int argc, char **argv)
{
    char *me = basename(argv[0]);
    log_init("stderr", "kurier", LOG_LV_WARN);
    if (strcmp(me, "sendmail") == 0) return cmd_sendmail(argc, argv);
    if (strcmp(me, "mailq") == 0) return cmd_mailq(argc, argv);
    if (strcmp(me, "newaliases") == 0) return cmd_newaliases(argc, argv);

    /* global options, getopt_long style: -c FILE, -cFILE, --config FILE,
     * --config=FILE, -h, --help, -V, --version; "--" ends them */
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "kurier: option %s needs a FILE\n", a);
                return 2;
            }
            cli_conf_set_path(argv[i + 1]);
            i += 2;
        } else if (strncmp(a, "--config=", 9) == 0 && a[9]) {
            cli_conf_set_path(a + 9);
            i++;
        } else if (strncmp(a, "-c", 2) == 0 && a[2]) {
            cli_conf_set_path(a + 2);
            i++;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli_help_all(stdout);
            return 0;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("kurier %s\n", KURIER_VERSION);
            return 0;
        } else {
            return cli_unknown_global_option(a);
        }
    }
    if (i >= argc) {
        cli_help_all(stderr);
        fprintf(stderr, "kurier: no command given\n");
        return 2;
    }
    const struct cli_command *c = cli_command_find(argv[i]);
    if (!c) return cli_unknown_command(argv[i]);
    return cli_run(c, argc - i, argv + i);
}
