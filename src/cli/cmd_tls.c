/* cmd_tls.c: "kurier tls selfsigned HOST": a first certificate so that STARTTLS
 * works from the first start. Certificate making itself is smtp/tls.c's. */
#include "core/compat.h"

#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "smtp/smtp.h"

static int tls_usage(void)
{
    fprintf(stderr, "usage: kurier tls selfsigned HOST [--cert FILE] [--key FILE] [--force]\n"
                    "  writes a self-signed certificate for HOST (default files: "
                    "STATE_DIR/tls/cert.pem and key.pem)\n");
    return 2;
}

/* Create the folder that holds path (mkdir -p, 0755). 0 done, -1 printed. */
static int make_parent(const char *path)
{
    char *copy = xstrdup(path);
    const char *d = dirname(copy);
    int r = mkdir_p(d, 0755);
    if (r != 0) fprintf(stderr, "kurier: cannot create %s: %s\n", d, strerror(errno));
    free(copy);
    return r;
}

static int selfsigned(int argc, char **argv)
{
    const char *host = NULL, *cert = NULL, *key = NULL;
    int force = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--cert") == 0 && i + 1 < argc)
            cert = argv[++i];
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (strcmp(argv[i], "--force") == 0)
            force = 1;
        else if (argv[i][0] != '-' && !host)
            host = argv[i];
        else
            return tls_usage();
    }
    if (!host) return tls_usage();

    int rc = 1;
    struct kconf *conf = NULL;
    char *cert_def = NULL, *key_def = NULL;
    if (!cert || !key || geteuid() == 0) {
        conf = cli_load_conf();
        cert_def = xasprintf("%s/tls/cert.pem", conf->state_dir);
        key_def = xasprintf("%s/tls/key.pem", conf->state_dir);
        if (!cert) cert = cert_def;
        if (!key) key = key_def;
    }
    /* kurierd reads the key again on SIGHUP, after dropping to conf's user: as root
     * the key gets that user's group (0640); otherwise the daemon runs as us (0600). */
    gid_t key_group = (gid_t)-1;
    const char *group_name = NULL;
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam(conf->user);
        if (!pw) {
            fprintf(stderr,
                    "kurier: user \"%s\" (\"user\" in %s) does not exist: create it first "
                    "(useradd --system %s), kurierd must be able to read the key\n",
                    conf->user, cli_conf_path(), conf->user);
            goto out;
        }
        key_group = pw->pw_gid;
        struct group *gr = getgrgid(key_group);
        group_name = gr ? gr->gr_name : conf->user;
    }

    struct stat st;
    if (strcmp(cert, key) == 0) {
        fprintf(stderr, "kurier: certificate and key must be different files\n");
        goto out;
    }
    if (!force && (lstat(cert, &st) == 0 || lstat(key, &st) == 0)) {
        fprintf(stderr, "kurier: %s exists; use --force to replace it\n",
                lstat(key, &st) == 0 ? key : cert);
        goto out;
    }
    if (make_parent(cert) != 0 || make_parent(key) != 0) goto out;
    char err[1024];
    if (smtp_tls_selfsigned(host, cert, key, key_group, err, sizeof err) != 0) {
        fprintf(stderr, "kurier: %s\n", err);
        goto out;
    }
    if (group_name)
        printf("wrote %s (self-signed for %s, valid 2 years) and %s (mode 0640, group %s)\n", cert,
               host, key, group_name);
    else
        printf("wrote %s (self-signed for %s, valid 2 years) and %s (mode 0600)\n", cert, host,
               key);
    printf("in a listen block: tls starttls; cert %s; key %s;\n", cert, key);
    rc = 0;
out:
    free(cert_def);
    free(key_def);
    conf_free(conf);
    return rc;
}

int cmd_tls(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "selfsigned") == 0) return selfsigned(argc, argv);
    return tls_usage();
}
