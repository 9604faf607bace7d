/* cmd_config.c: "kurier config check [FILE] | dump | doc | man": validate a config
 * file, print the effective configuration, print docs/config.md or kurier.conf(5).
 * All the work is in core/conf.c. */
#include "core/compat.h"

#include "cli/cli.h"
#include "core/core.h"

static int usage(void)
{
    fprintf(stderr, "usage: kurier config check [FILE] | config dump | config doc | config man\n");
    return 2;
}

static int config_check(const char *file)
{
    struct conf_errors errs = {0};
    conf_read_secrets(1); /* as the daemon reads it: the key files too */
    struct kconf *c = conf_load(file, &errs);
    if (!c) {
        conf_errors_print(&errs, stderr);
        conf_errors_free(&errs);
        return 1;
    }
    conf_errors_free(&errs);
    conf_free(c);
    printf("%s: ok\n", file);
    return 0;
}

int cmd_config(int argc, char **argv)
{
    if (argc < 2) return usage();
    const char *verb = argv[1];
    if (strcmp(verb, "check") == 0 && argc <= 3)
        return config_check(argc == 3 ? argv[2] : cli_conf_path());
    if (strcmp(verb, "dump") == 0 && argc == 2) {
        struct kconf *c = cli_load_conf();
        conf_dump(c, stdout);
        conf_free(c);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (strcmp(verb, "doc") == 0 && argc == 2) {
        conf_doc_markdown(stdout);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (strcmp(verb, "man") == 0 && argc == 2) { /* kurier.conf(5), installed by make */
        conf_doc_man(stdout, KURIER_VERSION, KURIER_VERSION_DATE);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    return usage();
}
