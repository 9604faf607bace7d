/* util.c: helpers the kurier subcommands share: the config file (chosen by main.c's
 * -c, loaded here), the error line, and the directory database opened from the
 * config. Parsing and printing stay with each command. */
#include "core/compat.h"

#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "store/store.h"

static const char *conf_path;

void cli_conf_set_path(const char *path)
{
    conf_path = path;
}

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

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("kurier: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_dir_open(struct cli_dir *d)
{
    char err[512];
    d->conf = cli_load_conf();
    d->st = store_open(d->conf->directory, 1, d->conf->user, err, sizeof err);
    if (d->st && d->conf->dir_backend == CONF_DIR_POSTGRES &&
        store_attach_postgres(d->st, d->conf->dir_conninfo, err, sizeof err) != 0) {
        store_free(d->st);
        d->st = NULL;
    }
    if (!d->st) {
        cli_fail("%s", err);
        conf_free(d->conf);
        d->conf = NULL;
        return -1;
    }
    /* the greylisting, locks and benches the daemons share */
    if (d->conf->state_backend == CONF_STATE_REDIS &&
        store_attach_redis(d->st, d->conf, err, sizeof err) != 0) {
        cli_fail("%s", err);
        store_free(d->st);
        conf_free(d->conf);
        d->conf = NULL;
        return -1;
    }
    return 0;
}

void cli_dir_close(struct cli_dir *d)
{
    store_free(d->st);
    conf_free(d->conf);
}

void cli_wipe(char *s)
{
    if (!s) return;
    explicit_bzero(s, strlen(s));
    free(s);
}

/* The config's resolver when a config file is there and loads; "" otherwise (the
 * system's, with a warning when the file has errors). The caller frees it. */
char *cli_conf_resolver(void)
{
    const char *path = cli_conf_path();
    if (access(path, R_OK) != 0) return xstrdup("");
    struct conf_errors errs = {0};
    struct kconf *c = conf_load(path, &errs);
    char *res = xstrdup(c && c->resolver ? c->resolver : "");
    if (!c) fprintf(stderr, "kurier: %s has errors; using the system resolver\n", path);
    conf_errors_free(&errs);
    conf_free(c);
    return res;
}
