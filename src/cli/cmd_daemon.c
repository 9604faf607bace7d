/* cmd_daemon.c: "kurier reload" and "kurier stop": the running kurierd, asked over
 * its control socket (control.h), as SIGHUP and SIGTERM would. */
#include "core/compat.h"

#include <time.h>

#include "cli/cli.h"
#include "control/control.h"
#include "core/core.h"

int cmd_reload(int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "kurier: reload takes no arguments, not \"%s\"\n", argv[1]);
        return 2;
    }
    struct kconf *conf = cli_load_conf();
    char reply[512];
    int r = control_request(conf->control_socket, "reload", reply, sizeof reply);
    conf_free(conf);
    if (r != 0) return cli_fail("%s", reply);
    printf("kurierd: %s\n", reply);
    return 0;
}

int cmd_stop(int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "kurier: stop takes no arguments, not \"%s\"\n", argv[1]);
        return 2;
    }
    struct kconf *conf = cli_load_conf();
    char reply[512];
    int r = control_request(conf->control_socket, "stop", reply, sizeof reply);
    if (r != 0) {
        conf_free(conf);
        return cli_fail("%s", reply);
    }
    /* wait until it has gone: sessions get shutdown_grace, those storing a message
     * 30 s more (kurierd.c), and a margin */
    time_t deadline = time(NULL) + (time_t)conf->shutdown_grace + 60;
    while (control_request(conf->control_socket, "ping", reply, sizeof reply) != -1) {
        if (time(NULL) > deadline) {
            conf_free(conf);
            return cli_fail("kurierd is still running %ld s after \"stop\"",
                            (long)conf->shutdown_grace + 60);
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    conf_free(conf);
    printf("kurierd: stopped\n");
    return 0;
}
