/* cmd_replies.c: "kurier replies classify TEXT" and "kurier replies check [FILE]":
 * the egress reply classifier (egress/replies.h) by hand, with the rules the daemon
 * would use, so an admin sees which class a remote reply gets and by which rule. */
#include "core/compat.h"

#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "egress/replies.h"

static int usage(void)
{
    fprintf(stderr,
            "usage: kurier replies classify [--rules FILE] [--code N] [--enh X.Y.Z] TEXT...\n"
            "       kurier replies check [FILE]\n"
            "  classify: prints the class of a remote SMTP reply (\"550 5.7.1 text\", or the\n"
            "  text with --code and --enh) and the rule that decided it (FILE:LINE).\n"
            "  check: reads a rules file and reports its first error as FILE:LINE.\n"
            "  The rules are --rules FILE, else reply_rules of the config, else\n"
            "  %s. Exit 0 done, 1 a bad rules file, 2 usage.\n",
            egress_replies_default_path());
    return 2;
}

/* reply_rules of the config when there is a readable config; a copy or NULL. */
static char *conf_rules_path(void)
{
    if (access(cli_conf_path(), R_OK) != 0) return NULL;
    struct kconf *c = cli_load_conf();
    char *p = c->reply_rules ? xstrdup(c->reply_rules) : NULL;
    conf_free(c);
    return p;
}

/* The rules: given, the config's or the shipped ones. NULL with the error printed, or
 * (soft set) NULL without an error when the shipped file is missing. */
static struct reply_rules *load(const char *given, char **used, int *soft)
{
    char *path = given ? xstrdup(given) : conf_rules_path();
    int is_default = !path;
    if (!path) path = xstrdup(egress_replies_default_path());
    *used = path;
    if (soft && is_default && access(path, F_OK) != 0) {
        fprintf(stderr,
                "kurier: %s is missing (not installed?); classifying by the enhanced status "
                "code only\n",
                path);
        *soft = 1;
        return NULL;
    }
    char err[600];
    struct reply_rules *r = egress_reply_rules_load(path, err, sizeof err);
    if (!r) cli_fail("%s", err);
    return r;
}

static int classify(int argc, char **argv)
{
    const char *rules = NULL, *enh = NULL;
    int code = 0;
    struct buf text;
    buf_init(&text, 65536);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--rules") == 0 && i + 1 < argc) {
            rules = argv[++i];
        } else if (strcmp(a, "--code") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 200 || v > 599) {
                buf_release(&text);
                fprintf(stderr, "kurier: --code wants a reply code 200-599, not \"%s\"\n", argv[i]);
                return 2;
            }
            code = (int)v;
        } else if (strcmp(a, "--enh") == 0 && i + 1 < argc) {
            enh = argv[++i];
        } else if (a[0] == '-' && a[1] == '-') {
            buf_release(&text);
            return usage();
        } else if ((text.len && buf_append(&text, " ", 1) != 0) ||
                   buf_append(&text, a, strlen(a)) != 0) {
            buf_release(&text);
            fprintf(stderr, "kurier: the reply text is longer than 64 KiB\n");
            return 2;
        }
    }
    if (text.len == 0) {
        buf_release(&text);
        return usage();
    }
    char *path;
    int soft = 0;
    struct reply_rules *r = load(rules, &path, &soft);
    if (!r && !soft) {
        free(path);
        buf_release(&text);
        return 1;
    }
    const struct reply_rule *m = NULL;
    enum reply_kind k = egress_reply_classify(r, code, enh, text.data, &m);
    printf("class: %s\n", egress_reply_kind_name(k));
    if (m)
        printf("rule: %s:%d: %s\n", m->file, m->line, m->text);
    else
        printf("rule: none in %s (%s)\n", path,
               k == REPLY_OTHER ? "nothing matched" : "decided by the enhanced status code");
    egress_reply_rules_free(r);
    free(path);
    buf_release(&text);
    return fflush(stdout) == 0 ? 0 : 1;
}

int cmd_replies(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "classify") == 0) return classify(argc, argv);
    if (argc >= 2 && argc <= 3 && strcmp(argv[1], "check") == 0) {
        char *path;
        struct reply_rules *r = load(argc == 3 ? argv[2] : NULL, &path, NULL);
        if (r) printf("%s: %zu rules, ok\n", path, egress_reply_rules_count(r));
        egress_reply_rules_free(r);
        free(path);
        return r ? 0 : 1;
    }
    return usage();
}
