/* cmd_dir.c: "kurier domain|mailbox|alias ...": manage the directory in the SQLite
 * file named by the config's "directory". Works on the file directly (store/), so it
 * needs no running daemon; passwords are read without echo and never printed. */
#include "core/compat.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "store/store.h"

/* "100M", "2G", "512k", "1048576", "0"; binary units (K = 1024), optional "B" /
 * "iB". 0 done, -1 bad. */
static int parse_size(const char *s, long long *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-' || *s == '+') return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return -1;
    unsigned shift = 0;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    case 't':
    case 'T':
        shift = 40;
        end++;
        break;
    default:
        break;
    }
    if (shift && (*end == 'i' || *end == 'I')) end++;
    if (*end == 'b' || *end == 'B') end++;
    if (*end) return -1;
    if (v > (unsigned long long)(LLONG_MAX >> shift)) return -1;
    *out = (long long)(v << shift);
    return 0;
}

static void format_size(char *dst, size_t size, long long v)
{
    static const char units[] = "KMGT";
    int u = -1;
    while (v > 0 && u < 3 && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    int n = v == 0 && u < 0 ? snprintf(dst, size, "unlimited")
            : u < 0         ? snprintf(dst, size, "%lld", v)
                            : snprintf(dst, size, "%lld%c", v, units[u]);
    if (n < 0 || (size_t)n >= size) str_copy(dst, "?", size);
}

/* Read one line from fp into a new string without the line end; NULL at EOF. */
static char *read_line(FILE *fp)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, fp);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return line;
}

/* Prompt on the terminal with echo off. NULL on error or EOF. */
static char *tty_prompt(FILE *tty, const char *prompt)
{
    int fd = fileno(tty);
    struct termios old, quiet;
    int have = tcgetattr(fd, &old) == 0;
    fputs(prompt, tty);
    fflush(tty);
    if (have) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        quiet.c_lflag |= ECHONL;
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    char *pw = read_line(tty);
    if (have) tcsetattr(fd, TCSAFLUSH, &old);
    return pw;
}

enum pw_source { PW_DEFAULT = 0, PW_STDIN, PW_ARG };

/* The new password for address: from --password, one line of stdin, or asked twice
 * on the terminal. New string (cli_wipe() it), NULL after printing an error. */
static char *get_password(enum pw_source src, const char *arg, const char *address)
{
    if (src == PW_ARG) return xstrdup(arg);
    if (src == PW_STDIN || !isatty(STDIN_FILENO)) {
        char *pw = read_line(stdin);
        if (!pw) cli_fail("no password on standard input");
        return pw;
    }
    FILE *tty = fopen("/dev/tty", "r+e");
    if (!tty) {
        cli_fail("cannot open the terminal: %s", strerror(errno));
        return NULL;
    }
    char *prompt = xasprintf("New password for %s: ", address);
    char *a = tty_prompt(tty, prompt);
    char *b = a ? tty_prompt(tty, "Retype the password: ") : NULL;
    free(prompt);
    fclose(tty);
    if (!a || !b) {
        cli_wipe(a);
        cli_wipe(b);
        cli_fail("no password given");
        return NULL;
    }
    if (strcmp(a, b) != 0) {
        cli_wipe(a);
        cli_wipe(b);
        cli_fail("the passwords do not match");
        return NULL;
    }
    cli_wipe(b);
    return a;
}

/* --- domain ---------------------------------------------------------------- */

static int domain_usage(void)
{
    fprintf(stderr, "usage: kurier domain add [--if-missing] NAME\n"
                    "       kurier domain del NAME\n"
                    "       kurier domain list [--json]\n"
                    "       kurier domain catchall NAME ADDRESS|LOCALPART|off\n"
                    "       kurier domain binding NAME enforce|log|off\n");
    return 2;
}

struct dir_list {
    struct store *st;
    int json;
};

/* Columns: name, catch-all ("-" = none), sender binding mode. */
static void print_domain(void *arg, const struct store_domain *d)
{
    static const char *const modes[] = {"enforce", "log", "off"};
    struct dir_list *L = arg;
    int m = store_domain_binding(L->st, d->name);
    if (L->json) {
        struct cli_json j;
        cli_json_begin(&j);
        cli_json_str(&j, "domain", d->name);
        cli_json_str(&j, "catchall", d->catchall[0] ? d->catchall : NULL);
        cli_json_str(&j, "binding", m >= 0 && m <= 2 ? modes[m] : NULL);
        cli_json_end(&j);
        return;
    }
    printf("%-40s %-30s %s\n", d->name, d->catchall[0] ? d->catchall : "-",
           m >= 0 && m <= 2 ? modes[m] : "?");
}

int cmd_domain(int argc, char **argv)
{
    int json = cli_json_flag(&argc, argv);
    if (argc < 2) return domain_usage();
    const char *verb = argv[1];
    if (json && strcmp(verb, "list") != 0)
        return cli_fail("domain %s has no --json output", verb), 2;
    int if_missing = 0;
    const char *args[2] = {NULL, NULL};
    int nargs = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--if-missing") == 0 && strcmp(verb, "add") == 0)
            if_missing = 1;
        else if (argv[i][0] == '-' && argv[i][1])
            return cli_fail("unknown option %s", argv[i]), domain_usage();
        else if (nargs < 2)
            args[nargs++] = argv[i];
        else
            return domain_usage();
    }
    int want = strcmp(verb, "list") == 0                                       ? 0
               : strcmp(verb, "catchall") == 0 || strcmp(verb, "binding") == 0 ? 2
               : strcmp(verb, "add") == 0 || strcmp(verb, "del") == 0          ? 1
                                                                               : -1;
    if (want < 0 || nargs != want) return domain_usage();

    struct cli_dir d;
    if (cli_dir_open(&d) != 0) return 1;
    char err[512];
    int rc = 0;
    if (strcmp(verb, "add") == 0) {
        if (if_missing && store_domain_get(d.st, args[0], NULL) == 1) goto out;
        if (store_domain_add(d.st, args[0], err, sizeof err) != 0) rc = cli_fail("%s", err);
    } else if (strcmp(verb, "del") == 0) {
        if (store_domain_del(d.st, args[0], err, sizeof err) != 0) rc = cli_fail("%s", err);
    } else if (strcmp(verb, "catchall") == 0) {
        const char *c = strcmp(args[1], "off") == 0 ? NULL : args[1];
        if (store_domain_set_catchall(d.st, args[0], c, err, sizeof err) != 0)
            rc = cli_fail("%s", err);
    } else if (strcmp(verb, "binding") == 0) {
        if (store_domain_set_binding(d.st, args[0], args[1], err, sizeof err) != 0)
            rc = cli_fail("%s", err);
    } else {
        struct dir_list L = {.st = d.st, .json = json};
        if (store_domain_list(d.st, print_domain, &L) != 0)
            rc = cli_fail("cannot list domains: database error");
    }
out:
    cli_dir_close(&d);
    return rc;
}

/* --- mailbox --------------------------------------------------------------- */

static int mailbox_usage(void)
{
    fprintf(stderr,
            "usage: kurier mailbox add [--if-missing] ADDRESS [--password-stdin | --password PW]"
            " [--quota SIZE]\n"
            "       kurier mailbox del ADDRESS\n"
            "       kurier mailbox list [DOMAIN] [--json]\n"
            "       kurier mailbox passwd ADDRESS [--password-stdin | --password PW]\n"
            "       kurier mailbox quota ADDRESS SIZE      (SIZE like 100M, 2G; 0 = unlimited)\n"
            "       kurier mailbox grant ADDRESS SENDER|@DOMAIN   (may also send as SENDER)\n"
            "       kurier mailbox revoke ADDRESS SENDER|@DOMAIN\n"
            "       kurier mailbox grants [ADDRESS]\n"
            "       kurier mailbox forward ADDRESS TARGET... [--keep]   (--keep: a copy stays)\n"
            "       kurier mailbox forward ADDRESS --off | --show\n"
            "Without a password option the password is asked twice on the terminal, or read\n"
            "as one line from standard input when that is not a terminal.\n");
    return 2;
}

static void print_mailbox(void *arg, const struct store_mailbox *m)
{
    if (*(const int *)arg) {
        struct cli_json j;
        cli_json_begin(&j);
        cli_json_str(&j, "address", m->address);
        cli_json_int(&j, "quota", m->quota); /* bytes, 0: unlimited */
        cli_json_end(&j);
        return;
    }
    char q[32];
    format_size(q, sizeof q, m->quota);
    printf("%-48s %s\n", m->address, q);
}

static void print_grant(void *arg, const char *user, const char *grant)
{
    (void)arg;
    printf("%-48s %s\n", user, grant);
}

static void print_target(void *arg, const char *source, const char *target)
{
    if (strcmp(source, (const char *)arg) == 0) printf("%s\n", target);
}

/* "mailbox forward ADDRESS TARGET... [--keep]": the mailbox's alias rows are replaced
 * by the targets (an alias wins over a mailbox: docs/directory.md), plus the mailbox
 * itself with --keep; "--off" removes them, "--show" lists them. */
static int mailbox_forward(int argc, char **argv)
{
    int keep = 0, off = 0, show = 0;
    const char *addr = NULL;
    const char **targets = xcalloc((size_t)argc, sizeof *targets);
    size_t nt = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--keep") == 0)
            keep = 1;
        else if (strcmp(argv[i], "--off") == 0)
            off = 1;
        else if (strcmp(argv[i], "--show") == 0)
            show = 1;
        else if (argv[i][0] == '-') {
            free(targets);
            cli_fail("unknown option %s", argv[i]);
            return mailbox_usage();
        } else if (!addr)
            addr = argv[i];
        else
            targets[nt++] = argv[i];
    }
    if (!addr || (off + show > 1) || ((off || show) && (nt || keep)) || (!off && !show && !nt)) {
        free(targets);
        return mailbox_usage();
    }
    struct cli_dir d;
    if (cli_dir_open(&d) != 0) {
        free(targets);
        return 1;
    }
    char err[512], *a = xstrdup(addr);
    str_lower(a);
    int rc = 0;
    char **old = NULL;
    size_t nold = 0;
    if (store_mailbox_get(d.st, a, NULL) != 1) {
        rc = cli_fail("no such mailbox %s", a);
    } else if (show) {
        if (store_alias_list(d.st, print_target, a) != 0)
            rc = cli_fail("cannot list forwards: database error");
    } else if (store_alias_get(d.st, a, &old, &nold) < 0) {
        rc = cli_fail("cannot read forwards: database error");
    } else {
        if (nold && store_alias_del(d.st, a, NULL, err, sizeof err) != 0) rc = cli_fail("%s", err);
        for (size_t i = 0; i < nt && !rc; i++) {
            if (!strchr(targets[i], '@') || str_ieq(targets[i], a))
                rc = cli_fail("forward target %s: give a full address other than the mailbox "
                              "(--keep keeps a copy)",
                              targets[i]);
            else if (store_alias_add(d.st, a, targets[i], err, sizeof err) != 0)
                rc = cli_fail("%s", err);
        }
        if (!rc && keep && store_alias_add(d.st, a, a, err, sizeof err) != 0)
            rc = cli_fail("%s", err);
    }
    if (old) store_strv_free(old, nold);
    free(a);
    free(targets);
    cli_dir_close(&d);
    return rc;
}

int cmd_mailbox(int argc, char **argv)
{
    int json = cli_json_flag(&argc, argv);
    if (argc < 2) return mailbox_usage();
    if (strcmp(argv[1], "forward") == 0) return mailbox_forward(argc, argv);
    const char *verb = argv[1];
    if (json && strcmp(verb, "list") != 0)
        return cli_fail("mailbox %s has no --json output", verb), 2;
    int is_add = strcmp(verb, "add") == 0, is_passwd = strcmp(verb, "passwd") == 0;
    int if_missing = 0;
    enum pw_source pw_src = PW_DEFAULT;
    const char *pw_arg = NULL;
    long long quota = 0;
    const char *args[2] = {NULL, NULL};
    int nargs = 0;
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        if (is_add && strcmp(o, "--if-missing") == 0) {
            if_missing = 1;
        } else if ((is_add || is_passwd) && strcmp(o, "--password-stdin") == 0) {
            if (pw_src != PW_DEFAULT) return mailbox_usage();
            pw_src = PW_STDIN;
        } else if ((is_add || is_passwd) && strcmp(o, "--password") == 0 && i + 1 < argc) {
            if (pw_src != PW_DEFAULT) return mailbox_usage();
            pw_src = PW_ARG;
            pw_arg = argv[++i];
        } else if (is_add && strcmp(o, "--quota") == 0 && i + 1 < argc) {
            if (parse_size(argv[++i], &quota) != 0)
                return cli_fail("invalid size \"%s\" (examples: 500M, 2G, 0)", argv[i]), 2;
        } else if (o[0] == '-' && o[1]) {
            cli_fail("unknown or incomplete option %s", o);
            return mailbox_usage();
        } else if (nargs < 2) {
            args[nargs++] = o;
        } else {
            return mailbox_usage();
        }
    }
    int is_grant = strcmp(verb, "grant") == 0, is_revoke = strcmp(verb, "revoke") == 0;
    int ok = (is_add || is_passwd || strcmp(verb, "del") == 0)          ? nargs == 1
             : strcmp(verb, "list") == 0 || strcmp(verb, "grants") == 0 ? nargs <= 1
             : is_grant || is_revoke                                    ? nargs == 2
                                     : strcmp(verb, "quota") == 0 && nargs == 2;
    if (!ok) return mailbox_usage();
    if (strcmp(verb, "quota") == 0 && parse_size(args[1], &quota) != 0)
        return cli_fail("invalid size \"%s\" (examples: 500M, 2G, 0)", args[1]), 2;

    struct cli_dir d;
    if (cli_dir_open(&d) != 0) return 1;
    char err[512];
    int rc = 0;
    if (is_add || is_passwd) {
        if (is_add && if_missing && store_mailbox_get(d.st, args[0], NULL) == 1) goto out;
        if (is_passwd && store_mailbox_get(d.st, args[0], NULL) != 1) {
            rc = cli_fail("no such mailbox %s", args[0]);
            goto out;
        }
        char *pw = get_password(pw_src, pw_arg, args[0]);
        if (!pw) {
            rc = 1;
            goto out;
        }
        int r = is_add ? store_mailbox_add(d.st, args[0], pw, quota, err, sizeof err)
                       : store_mailbox_passwd(d.st, args[0], pw, err, sizeof err);
        cli_wipe(pw);
        if (r != 0) rc = cli_fail("%s", err);
    } else if (strcmp(verb, "del") == 0) {
        if (store_mailbox_del(d.st, args[0], err, sizeof err) != 0) rc = cli_fail("%s", err);
    } else if (strcmp(verb, "quota") == 0) {
        if (store_mailbox_set_quota(d.st, args[0], quota, err, sizeof err) != 0)
            rc = cli_fail("%s", err);
    } else if (is_grant) {
        if (store_grant_add(d.st, args[0], args[1], err, sizeof err) != 0) rc = cli_fail("%s", err);
    } else if (is_revoke) {
        if (store_grant_del(d.st, args[0], args[1], err, sizeof err) != 0) rc = cli_fail("%s", err);
    } else if (strcmp(verb, "grants") == 0) {
        if (args[0] && store_mailbox_get(d.st, args[0], NULL) != 1)
            rc = cli_fail("no such mailbox %s", args[0]);
        else if (store_grant_list(d.st, args[0], print_grant, NULL) != 0)
            rc = cli_fail("cannot list grants: database error");
    } else {
        if (args[0] && store_domain_get(d.st, args[0], NULL) != 1)
            rc = cli_fail("no such domain %s", args[0]);
        else if (store_mailbox_list(d.st, args[0], print_mailbox, &json) != 0)
            rc = cli_fail("cannot list mailboxes: database error");
    }
out:
    cli_dir_close(&d);
    return rc;
}

/* --- alias ----------------------------------------------------------------- */

static int alias_usage(void)
{
    fprintf(stderr, "usage: kurier alias add SOURCE TARGET\n"
                    "       kurier alias del SOURCE [TARGET]\n"
                    "       kurier alias list [--json]\n");
    return 2;
}

static void print_alias(void *arg, const char *source, const char *target)
{
    if (*(const int *)arg) {
        struct cli_json j;
        cli_json_begin(&j);
        cli_json_str(&j, "source", source);
        cli_json_str(&j, "target", target);
        cli_json_end(&j);
        return;
    }
    printf("%-48s %s\n", source, target);
}

int cmd_alias(int argc, char **argv)
{
    int json = cli_json_flag(&argc, argv);
    if (argc < 2) return alias_usage();
    const char *verb = argv[1];
    if (json && strcmp(verb, "list") != 0)
        return cli_fail("alias %s has no --json output", verb), 2;
    int n = argc - 2;
    for (int i = 2; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1]) {
            cli_fail("unknown option %s", argv[i]);
            return alias_usage();
        }
    int ok = strcmp(verb, "add") == 0   ? n == 2
             : strcmp(verb, "del") == 0 ? n == 1 || n == 2
                                        : strcmp(verb, "list") == 0 && n == 0;
    if (!ok) return alias_usage();

    struct cli_dir d;
    if (cli_dir_open(&d) != 0) return 1;
    char err[512];
    int rc = 0;
    if (strcmp(verb, "add") == 0) {
        if (store_alias_add(d.st, argv[2], argv[3], err, sizeof err) != 0) rc = cli_fail("%s", err);
    } else if (strcmp(verb, "del") == 0) {
        if (store_alias_del(d.st, argv[2], n == 2 ? argv[3] : NULL, err, sizeof err) != 0)
            rc = cli_fail("%s", err);
    } else {
        if (store_alias_list(d.st, print_alias, &json) != 0)
            rc = cli_fail("cannot list aliases: database error");
    }
    cli_dir_close(&d);
    return rc;
}
