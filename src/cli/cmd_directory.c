/* cmd_directory.c: "kurier directory export|import": the whole directory (domains,
 * mailboxes with their password hashes, aliases, sender grants, relay routes) as a
 * text stream, written from and read into whichever backend the config names (SQLite or
 * PostgreSQL), so data moves between them. The format is docs/postgres.md's; import
 * checks every line before it changes anything and is idempotent. */
#include "core/compat.h"

#include <errno.h>

#include "cli/cli.h"
#include "core/core.h"
#include "store/store.h"

#define HEADER "# kurier directory 1"
#define MAX_FIELDS 6

static int usage(void)
{
    fprintf(stderr, "usage: kurier directory export\n"
                    "       kurier directory import [FILE]   (default: standard input)\n");
    return 2;
}

/* --- export ---------------------------------------------------------------- */

/* One field: tab, line ends and backslash escaped. */
static void put_field(const char *s)
{
    putchar('\t');
    for (; *s; s++) {
        switch (*s) {
        case '\t':
            fputs("\\t", stdout);
            break;
        case '\n':
            fputs("\\n", stdout);
            break;
        case '\r':
            fputs("\\r", stdout);
            break;
        case '\\':
            fputs("\\\\", stdout);
            break;
        default:
            putchar(*s);
        }
    }
}

struct exp {
    struct store *st;
    long n;
};

static void exp_domain(void *arg, const struct store_domain *d)
{
    static const char *const modes[] = {"enforce", "log", "off"};
    struct exp *x = arg;
    int m = store_domain_binding(x->st, d->name);
    fputs("domain", stdout);
    put_field(d->name);
    put_field(d->catchall);
    put_field(modes[m >= 0 && m <= 2 ? m : 0]);
    putchar('\n');
    x->n++;
}

static void exp_mailbox(void *arg, const struct store_mailbox_row *m)
{
    struct exp *x = arg;
    char q[32];
    snprintf(q, sizeof q, "%lld", m->quota);
    fputs("mailbox", stdout);
    put_field(m->address);
    put_field(m->hash);
    put_field(q);
    put_field(m->active ? "1" : "0");
    putchar('\n');
    x->n++;
}

static void exp_pair(void *arg, const char *a, const char *b)
{
    struct exp *x = arg;
    fputs(x->n < 0 ? "grant" : "alias", stdout);
    put_field(a);
    put_field(b);
    putchar('\n');
}

static void exp_relay(void *arg, const struct store_relay *r)
{
    (void)arg;
    fputs("relay", stdout);
    put_field(r->match);
    put_field(r->hosts);
    put_field(r->username);
    put_field(r->password);
    put_field(r->tls);
    putchar('\n');
}

static int do_export(struct store *st)
{
    struct exp x = {.st = st};
    printf("%s\n", HEADER);
    struct exp g = {.st = st, .n = -1};
    if (store_domain_list(st, exp_domain, &x) != 0 ||
        store_mailbox_dump(st, exp_mailbox, &x) != 0 || store_alias_list(st, exp_pair, &x) != 0 ||
        store_grant_list(st, NULL, exp_pair, &g) != 0 || store_relay_list(st, exp_relay, NULL) != 0)
        return cli_fail("cannot export the directory (%s): database error",
                        store_directory_backend(st));
    if (fflush(stdout) != 0 || ferror(stdout)) return cli_fail("cannot write the export");
    return 0;
}

/* --- import ---------------------------------------------------------------- */

struct rec {
    long line;
    int nf;
    char *f[MAX_FIELDS + 1]; /* f[0] the kind */
};

static const struct {
    const char *kind;
    int nf; /* fields after the kind */
} kinds[] = {{"domain", 3}, {"mailbox", 4}, {"alias", 2}, {"grant", 2}, {"relay", 5}};

/* Split line (modified in place) at tabs and undo the escapes. 0, or -1 with why. */
static int split(char *line, struct rec *r, const char **why)
{
    r->nf = 0;
    char *p = line;
    for (;;) {
        if (r->nf > MAX_FIELDS) {
            *why = "too many fields";
            return -1;
        }
        r->f[r->nf++] = p;
        char *out = p;
        while (*p && *p != '\t') {
            if (*p != '\\') {
                *out++ = *p++;
                continue;
            }
            p++;
            switch (*p) {
            case 't':
                *out++ = '\t';
                break;
            case 'n':
                *out++ = '\n';
                break;
            case 'r':
                *out++ = '\r';
                break;
            case '\\':
                *out++ = '\\';
                break;
            default:
                *why = "invalid escape (\\t, \\n, \\r and \\\\ are known)";
                return -1;
            }
            p++;
        }
        int more = *p == '\t';
        *p = '\0';
        *out = '\0';
        if (!more) break;
        p++;
    }
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strcmp(r->f[0], kinds[i].kind) != 0) continue;
        if (r->nf - 1 != kinds[i].nf) {
            *why = "wrong number of fields";
            return -1;
        }
        return 0;
    }
    *why = "unknown record (expected domain, mailbox, alias, grant or relay)";
    return -1;
}

/* A whole decimal number >= 0 into *out. */
static int parse_count(const char *s, long long *out)
{
    char *end;
    errno = 0;
    if (!*s || *s == '-' || *s == '+') return -1;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

/* Field checks that need no database. NULL when fine. */
static const char *check_rec(const struct rec *r)
{
    const char *k = r->f[0];
    if (strcmp(k, "domain") == 0) {
        const char *b = r->f[3];
        if (strcmp(b, "enforce") != 0 && strcmp(b, "log") != 0 && strcmp(b, "off") != 0)
            return "sender binding must be enforce, log or off";
    } else if (strcmp(k, "mailbox") == 0) {
        long long q;
        if (parse_count(r->f[3], &q) != 0) return "quota must be a number of bytes";
        if (strcmp(r->f[4], "0") != 0 && strcmp(r->f[4], "1") != 0) return "active must be 0 or 1";
        if (strlen(r->f[2]) >= sizeof((struct store_mailbox_row *)0)->hash)
            return "password hash too long";
    }
    return NULL;
}

static void has_grant(void *arg, const char *user, const char *grant)
{
    const char **want = arg;
    (void)user;
    if (strcmp(grant, want[0]) == 0) want[1] = grant;
}

/* Apply one checked record; 0 or -1 with err filled. Present entries are left or
 * updated, never duplicated. */
static int apply(struct store *st, const struct rec *r, long counts[5], char *err, size_t errsize)
{
    const char *k = r->f[0];
    if (strcmp(k, "domain") == 0) {
        int have = store_domain_get(st, r->f[1], NULL);
        if (have < 0) return err_set(err, errsize, "database error"), -1;
        if (!have && store_domain_add(st, r->f[1], err, errsize) != 0) return -1;
        if (store_domain_set_catchall(st, r->f[1], r->f[2], err, errsize) != 0) return -1;
        if (store_domain_set_binding(st, r->f[1], r->f[3], err, errsize) != 0) return -1;
        counts[0]++;
    } else if (strcmp(k, "mailbox") == 0) {
        struct store_mailbox_row m = {0};
        str_copy(m.address, r->f[1], sizeof m.address);
        str_copy(m.hash, r->f[2], sizeof m.hash);
        parse_count(r->f[3], &m.quota);
        m.active = strcmp(r->f[4], "1") == 0;
        int rc = store_mailbox_load(st, &m, err, errsize);
        explicit_bzero(m.hash, sizeof m.hash);
        if (rc != 0) return -1;
        counts[1]++;
    } else if (strcmp(k, "alias") == 0) {
        char **t = NULL;
        size_t n = 0;
        char *want = xstrdup(r->f[2]);
        str_lower(want);
        int have = store_alias_get(st, r->f[1], &t, &n);
        int found = 0;
        for (size_t i = 0; have > 0 && i < n; i++)
            found |= strcmp(t[i], want) == 0;
        store_strv_free(t, n);
        free(want);
        if (have < 0) return err_set(err, errsize, "database error"), -1;
        if (!found && store_alias_add(st, r->f[1], r->f[2], err, errsize) != 0) return -1;
        counts[2]++;
    } else if (strcmp(k, "grant") == 0) {
        char *u = xstrdup(r->f[1]), *g = xstrdup(r->f[2]);
        str_lower(u);
        str_lower(g);
        const char *want[2] = {g, NULL};
        int rc = store_grant_list(st, u, has_grant, want);
        int found = want[1] != NULL;
        free(u);
        free(g);
        if (rc != 0) return err_set(err, errsize, "database error"), -1;
        if (!found && store_grant_add(st, r->f[1], r->f[2], err, errsize) != 0) return -1;
        counts[3]++;
    } else {
        if (store_relay_add(st, r->f[1], r->f[2], r->f[3], r->f[4], r->f[5], err, errsize) != 0)
            return -1;
        counts[4]++;
    }
    return 0;
}

static void free_recs(struct rec *recs, size_t n, char **lines)
{
    for (size_t i = 0; i < n; i++)
        cli_wipe(lines[i]);
    free(lines);
    free(recs);
}

static int do_import(struct cli_dir *d, const char *file)
{
    FILE *fp = file ? fopen(file, "re") : stdin;
    const char *name = file ? file : "<stdin>";
    if (!fp) return cli_fail("cannot open %s: %s", file, strerror(errno));
    struct rec *recs = NULL;
    char **lines = NULL;
    size_t n = 0, cap = 0;
    int errors = 0, header = 0;
    long lineno = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, fp)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if ((size_t)len != strlen(line)) {
            cli_fail("%s:%ld: NUL byte in line", name, lineno);
            errors++;
            continue;
        }
        if (!header) {
            if (strcmp(line, HEADER) != 0) {
                cli_fail("%s:%ld: not a kurier directory export (expected \"%s\" first)", name,
                         lineno, HEADER);
                errors++;
                break;
            }
            header = 1;
            continue;
        }
        if (!*line || line[0] == '#') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            recs = xrealloc(recs, cap * sizeof *recs);
            lines = xrealloc(lines, cap * sizeof *lines);
        }
        lines[n] = xstrdup(line);
        struct rec *r = &recs[n];
        r->line = lineno;
        const char *why = NULL;
        if (split(lines[n], r, &why) != 0 || (why = check_rec(r)) != NULL) {
            cli_fail("%s:%ld: %s", name, lineno, why);
            errors++;
            cli_wipe(lines[n]);
            continue;
        }
        n++;
    }
    if (line) explicit_bzero(line, lcap);
    free(line);
    int rerr = ferror(fp);
    if (file) fclose(fp);
    if (rerr) errors++, cli_fail("cannot read %s", name);
    if (!header && !errors) errors++, cli_fail("%s: empty input (no \"%s\" line)", name, HEADER);
    if (errors) {
        free_recs(recs, n, lines);
        return cli_fail("nothing imported: %d error%s", errors, errors == 1 ? "" : "s");
    }
    /* domains first, then mailboxes (grants need them), then the rest, whatever the
     * order of the lines */
    static const char *const order[] = {"domain", "mailbox", "alias", "grant", "relay"};
    long counts[5] = {0};
    char err[512];
    int rc = 0;
    for (size_t o = 0; o < 5 && !rc; o++) {
        for (size_t i = 0; i < n && !rc; i++) {
            if (strcmp(recs[i].f[0], order[o]) != 0) continue;
            if (apply(d->st, &recs[i], counts, err, sizeof err) != 0)
                rc = cli_fail("%s:%ld: %s", name, recs[i].line, err);
        }
    }
    free_recs(recs, n, lines);
    if (rc) return rc;
    printf("imported into %s: %ld domains, %ld mailboxes, %ld aliases, %ld grants, %ld relay "
           "routes\n",
           store_directory_backend(d->st), counts[0], counts[1], counts[2], counts[3], counts[4]);
    return 0;
}

int cmd_directory(int argc, char **argv)
{
    if (argc < 2) return usage();
    int is_export = strcmp(argv[1], "export") == 0, is_import = strcmp(argv[1], "import") == 0;
    if ((!is_export && !is_import) || (is_export && argc != 2) || (is_import && argc > 3))
        return usage();
    struct cli_dir d;
    if (cli_dir_open(&d) != 0) return 1;
    int rc = is_export ? do_export(d.st) : do_import(&d, argc == 3 ? argv[2] : NULL);
    cli_dir_close(&d);
    return rc;
}
