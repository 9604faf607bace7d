/* commands.c: the table of kurier's commands and subcommands, and everything made
 * from it: "kurier help", --help, "did you mean", the check of long options, the
 * bash completion and the kurier(1) manual page. The commands themselves (cmd_*.c)
 * only parse what the table lets through. */
#include "core/compat.h"

#include <ctype.h>
#include <limits.h>

#include "cli/cli.h"
#include "core/core.h"

#define V(...) ((const struct cli_verb[]){__VA_ARGS__, {NULL, NULL, NULL}}), 0

/* clang-format off */
static const struct cli_command commands[] = {
    {"config", cmd_config, "check, show and document the configuration", NULL, V(
        {"check", "[FILE]", "check a configuration file (default: the one in use); names the line and column of every error"},
        {"dump", "", "print the effective configuration, defaults included"},
        {"doc", "", "print the configuration reference (docs/config.md)"},
        {"man", "", "print the same reference as the manual page kurier.conf(5)"})},
    {"domain", cmd_domain, "the hosted domains", NULL, V(
        {"add", "[--if-missing] NAME", "host a domain"},
        {"del", "NAME", "stop hosting a domain"},
        {"list", "[--json]", "list the domains with their catch-all and sender binding"},
        {"catchall", "NAME ADDRESS|LOCALPART|off", "where mail to unknown local parts goes"},
        {"binding", "NAME enforce|log|off", "whether senders must use their login's addresses"})},
    {"mailbox", cmd_mailbox, "local mailboxes, their passwords, quotas and sender grants", NULL, V(
        {"add", "[--if-missing] ADDRESS [--password-stdin | --password PW] [--quota SIZE]", "create a mailbox (the password is asked when no option gives it)"},
        {"del", "ADDRESS", "delete a mailbox (its Maildir stays)"},
        {"list", "[DOMAIN] [--json]", "list the mailboxes"},
        {"passwd", "ADDRESS [--password-stdin | --password PW]", "set a mailbox's password"},
        {"quota", "ADDRESS SIZE", "set a quota (100M, 2G; 0 unlimited)"},
        {"grant", "ADDRESS SENDER|@DOMAIN", "let a login also send as SENDER"},
        {"revoke", "ADDRESS SENDER|@DOMAIN", "take a grant back"},
        {"grants", "[ADDRESS]", "list the grants"},
        {"forward", "ADDRESS TARGET... [--keep] | ADDRESS --off | ADDRESS --show", "forward a mailbox to other addresses (SRS-rewritten; --keep: a copy stays)"})},
    {"alias", cmd_alias, "aliases of hosted addresses", NULL, V(
        {"add", "SOURCE TARGET", "mail to SOURCE also goes to TARGET"},
        {"del", "SOURCE [TARGET]", "delete an alias (all its targets without TARGET)"},
        {"list", "[--json]", "list the aliases"})},
    {"relay", cmd_relay, "smarthosts per sender, with the customer's login", NULL, V(
        {"add", "MATCH HOST[:PORT][,HOST[:PORT]...] [--user U --password-stdin] [--tls none|may|encrypt|verify|implicit]", "route the mail of a sender (user@example.org) or sender domain (@example.org)"},
        {"del", "MATCH", "delete a sender route"},
        {"list", "[--json]", "list the sender routes"})},
    {"directory", cmd_directory, "move the whole directory between backends (SQLite, PostgreSQL)", NULL, V(
        {"export", "", "write domains, mailboxes (with password hashes), aliases, grants and relay routes to standard output"},
        {"import", "[FILE]", "read an export into the configured backend; checks every line first, idempotent"})},
    {"queue", cmd_queue, "the mail queue", NULL, V(
        {"list", "[--account USER] [--json]", "list the queued messages (as mailq)"},
        {"show", "[--body] [--json] ID", "show a message's envelope (and its content with --body)"},
        {"flush", "", "retry every deferred message now"},
        {"delete", "ID|ALL", "delete a message, or all of them"},
        {"hold", "ID", "keep a message from being delivered"},
        {"release", "ID", "let a held message go"},
        {"export", "--all [--remove] | ID... [--remove]", "write queued messages as a stream for \"queue import\" on another node (--remove: then delete them here)"},
        {"import", "", "queue the messages of a \"queue export\" stream read on standard input"})},
    {"auth", cmd_auth, "blocks of the AUTH brute-force limiter", NULL, V(
        {"blocks", "[--clear ADDRESS|ACCOUNT] [--json]", "list the blocked clients, or lift blocks"})},
    {"account", cmd_account, "sending accounts: limits, signals, locks", NULL, V(
        {"status", "[USER] [--json]", "an account's counters, signals and lock"},
        {"unlock", "USER [--release|--delete]", "unlock an account; its held mail is kept, released or deleted"})},
    {"greylist", cmd_greylist, "the greylisting state", NULL, V(
        {"list", "[--json]", "triplets and auto-allowlisted networks"},
        {"clear", "--all | IP|NET [--sender ADDRESS] | --sender ADDRESS", "forget triplets"},
        {"allow", "IP|NET", "let a client network pass at once"})},
    {"egress", cmd_egress, "source addresses for remote delivery", NULL, V(
        {"status", "[--json]", "the pools, their addresses and benches"},
        {"bench", "ADDRESS [--destination D] [--for DURATION] [--reason TEXT]", "stop sending from an address (to one destination)"},
        {"unbench", "ADDRESS [--destination D]", "send from an address again"})},
    {"tls", cmd_tls, "certificates", NULL, V(
        {"selfsigned", "HOST [--cert FILE] [--key FILE] [--force]", "make a self-signed certificate and key"})},
    {"dns", cmd_dns, "DNS lookups and the records a domain needs", NULL, V(
        {"lookup", "mx|a|aaaa|txt|ptr|tlsa NAME [--resolver IP[@PORT]] [--insecure DOMAIN]... [--trust-anchor FILE] [--timeout SEC] [--port N] [--json]", "ask DNS as the daemon does"},
        {"records", "DOMAIN [--check] [--resolver IP[@PORT]]", "the records DOMAIN needs (MX, SPF, DKIM, DMARC, ...), checked with --check"})},
    {"dkim", cmd_dkim, "DKIM signing keys", NULL, V(
        {"keygen", "DOMAIN [--selector S] [--type rsa|ed25519] [--bits N]", "make a key and print its TXT record"},
        {"rotate", "DOMAIN [--selector S] [--type rsa|ed25519] [--bits N]", "make a new key that signs after a reload"},
        {"retire", "DOMAIN SELECTOR", "stop using a key"},
        {"list", "[DOMAIN]", "list the keys"},
        {"check", "DOMAIN [--resolver IP[@PORT]]", "compare the published records with the keys"})},
    {"spf", cmd_spf, "SPF evaluation", NULL, V(
        {"check", "IP SENDER [--helo NAME] [--receiver NAME] [--header] [--resolver IP[@PORT]] [--insecure DOMAIN]... [--timeout SEC]", "what SPF says about IP sending for SENDER"})},
    {"check-client", cmd_check_client, "run a listener's checks for a hypothetical client",
     "IP [--helo NAME] [--from ADDRESS] [--to ADDRESS] [--listen ADDRESS]", NULL, 0},
    {"replies", cmd_replies, "the remote reply classifier", NULL, V(
        {"classify", "[--rules FILE] [--code N] [--enh X.Y.Z] TEXT...", "the class of a remote SMTP reply and the rule that decided it"},
        {"check", "[FILE]", "check a rules file"})},
    {"rbl", cmd_rbl, "DNS block lists", NULL, V(
        {"check", "IP|DOMAIN [--list ZONE[=FILTER]]... [--json] [--resolver IP[@PORT]] [--timeout SEC]", "is an address or domain listed?"},
        {"lists", "", "the built-in lists"})},
    {"monitor", cmd_monitor, "the blocklist monitor's findings about our addresses", NULL, V(
        {"status", "[ADDRESS] [--json]", "the current state"},
        {"history", "[ADDRESS] [--limit N] [--json]", "listings and delistings"})},
    {"complaints", cmd_complaints, "abuse complaints that came in", NULL, V(
        {"list", "[--account ADDRESS] [--json]", "the complaints, oldest first"})},
    {"log", cmd_log, "the log lines of a message's life", NULL, V(
        {"trace", "ID|MESSAGE-ID|ADDRESS [--file FILE|-]", "every log line of a message (by queue ID, Message-ID or address), in order"})},
    {"smtp", cmd_smtp, "SMTP by hand", NULL, V(
        {"send", "--to HOST:PORT --from ADDR --rcpt ADDR [--rcpt ADDR]... [--source IP] [--tls none|may|encrypt|verify|implicit|implicit-verify] [--ca-file FILE] [--peer-name NAME] [--auth USER:PASS] [--helo NAME] [--timeout SEC] [--notify never|success,failure,delay] [--orcpt] [--ret full|hdrs] [--envid ID] [--8bitmime] [--smtputf8] [--count N] FILE", "send a message to a server and print its answers"})},
    {"reload", cmd_reload, "make the running daemon read its configuration again (as SIGHUP)", "", NULL, 0},
    {"stop", cmd_stop, "stop the running daemon (as SIGTERM) and wait until it has exited", "", NULL, 0},
    {"sendmail", cmd_sendmail, "submit a message as sendmail(1) does", "[-t] [-i] [-f SENDER] [-F NAME] [RCPT...]", NULL, 1},
    {"mailq", cmd_mailq, "list the queue as mailq(1) does", "", NULL, 1},
    {"newaliases", cmd_newaliases, "check the aliases file and make the daemon read it again", "", NULL, 0},
    {"completion", cmd_completion, "shell completion", NULL, V(
        {"bash", "", "print the bash completion script"})},
    {"help", cmd_help, "help on a command", "[--man] [COMMAND [SUBCOMMAND]]", NULL, 0},
};
/* clang-format on */

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const char *const global_opts[] = {"--config", "--help", "--version", NULL};

const struct cli_command *cli_command_find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static const struct cli_verb *verb_find(const struct cli_command *c, const char *name)
{
    for (const struct cli_verb *v = c->verbs; v && v->name; v++)
        if (strcmp(v->name, name) == 0) return v;
    return NULL;
}

/* --- did you mean ------------------------------------------------------------- */

/* Optimal string alignment distance: insertions, deletions, substitutions and swaps
 * of two neighbours ("lsit" for "list") count one each. */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < c)
                c = d[i - 2][j - 2] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

struct suggest {
    const char *word;
    const char *best;
    int bestd;
};

static void consider(struct suggest *s, const char *cand)
{
    size_t n = strlen(s->word);
    int limit = n <= 4 ? 1 : n <= 8 ? 2 : 3;
    int d = edit_distance(s->word, cand);
    /* a prefix typed short ("conf", "del") also counts */
    if (d > limit && n >= 3 && strncmp(cand, s->word, n) == 0) d = limit;
    if (d <= limit && d < s->bestd) {
        s->bestd = d;
        s->best = cand;
    }
}

/* Print "kurier: WHAT \"WORD\"" with " (did you mean \"X\"?)" when a candidate is
 * close, and where to find help. Returns 2, the exit status for usage errors. */
static int usage_error(const char *what, const char *word, const char *const *cands,
                       const char *help_for)
{
    struct suggest s = {word, NULL, 99};
    for (size_t i = 0; cands && cands[i]; i++)
        consider(&s, cands[i]);
    char esc[200];
    log_escape(esc, sizeof esc, word, strlen(word));
    fprintf(stderr, "kurier: %s \"%s\"", what, esc);
    if (s.best) fprintf(stderr, " (did you mean \"%s\"?)", s.best);
    fprintf(stderr, "\nTry \"kurier help%s%s\".\n", help_for ? " " : "", help_for ? help_for : "");
    return 2;
}

int cli_unknown_command(const char *word)
{
    const char *cands[NCOMMANDS + 1];
    for (size_t i = 0; i < NCOMMANDS; i++)
        cands[i] = commands[i].name;
    cands[NCOMMANDS] = NULL;
    return usage_error("unknown command", word, cands, NULL);
}

int cli_unknown_global_option(const char *word)
{
    return usage_error("unknown option", word, global_opts, NULL);
}

/* The long options named in a synopsis ("[--user U --password-stdin]"), as
 * candidates; at most max. */
static size_t synopsis_options(const char *syn, const char **opts, char store[][40], size_t max)
{
    size_t n = 0;
    for (const char *p = syn; p && (p = strstr(p, "--")) && n < max;) {
        size_t len = 2;
        while (p[len] && (isalnum((unsigned char)p[len]) || p[len] == '-'))
            len++;
        if (len > 2 && len < 40) {
            int dup = 0;
            memcpy(store[n], p, len);
            store[n][len] = '\0';
            for (size_t i = 0; i < n; i++)
                dup |= strcmp(opts[i], store[n]) == 0;
            if (!dup) {
                opts[n] = store[n];
                n++;
            }
        }
        p += len;
    }
    return n;
}

#define MAX_OPTS 48

/* --- help --------------------------------------------------------------------- */

static void print_verb(FILE *out, const struct cli_command *c, const struct cli_verb *v, int first)
{
    fprintf(out, "%s kurier %s %s%s%s\n", first ? "usage:" : "      ", c->name, v->name,
            v->args[0] ? " " : "", v->args);
}

static void help_command(FILE *out, const struct cli_command *c, const struct cli_verb *only)
{
    if (!c->verbs) {
        fprintf(out, "usage: kurier %s%s%s\n  %s\n", c->name, c->args[0] ? " " : "", c->args,
                c->summary);
    } else if (only) {
        print_verb(out, c, only, 1);
        fprintf(out, "  %s\n", only->summary);
    } else {
        for (const struct cli_verb *v = c->verbs; v->name; v++)
            print_verb(out, c, v, v == c->verbs);
        fprintf(out, "%s:\n", c->summary);
        for (const struct cli_verb *v = c->verbs; v->name; v++)
            fprintf(out, "  %-12s %s\n", v->name, v->summary);
    }
    fprintf(out, "Exit status: 0 done, 1 failed, 2 usage error. See kurier(1).\n");
}

void cli_help_all(FILE *out)
{
    fprintf(out, "usage: kurier [-c FILE] COMMAND [SUBCOMMAND] [ARGS...]\n"
                 "       kurier help [COMMAND [SUBCOMMAND]] | COMMAND [SUBCOMMAND] --help\n"
                 "       kurier --version\n"
                 "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const struct cli_command *c = &commands[i];
        fprintf(out, "  %-12s %s", c->name, c->summary);
        for (const struct cli_verb *v = c->verbs; v && v->name; v++)
            fprintf(out, "%s%s", v == c->verbs ? ": " : ", ", v->name);
        fputc('\n', out);
    }
    fprintf(out, "Options (before COMMAND): -c FILE, --config FILE: the configuration (else\n"
                 "$KURIER_CONF, else /etc/kurier/kurier.conf); -h, --help; -V, --version; -- ends\n"
                 "the options. Exit status: 0 done, 1 failed, 2 usage error. See kurier(1).\n");
}

/* --- operands ------------------------------------------------------------------- */

/* The operands a synopsis asks for, from its words: one not in brackets is required,
 * one in brackets optional, "WORD..." any number; the word after an option ("--user
 * U") is its value, not an operand; " | " at the top separates alternatives, of which
 * the loosest counts. missing: the first required operand the fewest given lack. */
#define MAX_OPERANDS 8
struct operands {
    int min, max; /* max INT_MAX: no limit */
    char names[MAX_OPERANDS][48];
};

static size_t next_word(const char **p)
{
    while (**p == ' ')
        (*p)++;
    return strcspn(*p, " ");
}

static void synopsis_operands(const char *syn, struct operands *o)
{
    o->min = INT_MAX;
    o->max = 0;
    int depth = 0, prev_opt = 0, amin = 0, amax = 0;
    char names[MAX_OPERANDS][48] = {{0}};
    for (const char *p = syn;;) {
        size_t len = next_word(&p);
        int end = len == 0, before = depth;
        for (size_t i = 0; i < len; i++)
            depth += p[i] == '[' ? 1 : p[i] == ']' ? -1 : 0;
        if (end || (len == 1 && *p == '|' && before == 0)) {
            if (amin < o->min) {
                o->min = amin;
                memcpy(o->names, names, sizeof names);
            }
            if (amax > o->max) o->max = amax;
            if (end) break;
            amin = amax = prev_opt = 0;
        } else if (len == 1 && *p == '|') {
            prev_opt = 0;
        } else {
            size_t lead = strspn(p, "[");
            if (p[lead] == '-') {
                prev_opt = p[len - 1] != ']'; /* "--user U", not "[--force]" */
            } else if (prev_opt) {
                prev_opt = 0;
            } else {
                /* "RCPT..." repeats, "HOST[,HOST...]" is one word */
                int d = 0, many = 0;
                for (size_t i = lead; i < len; i++) {
                    d += p[i] == '[' ? 1 : p[i] == ']' ? -1 : 0;
                    many |= d <= 0 && strncmp(p + i, "...", 3) == 0;
                }
                if (before == 0 && lead == 0) {
                    if (amin < MAX_OPERANDS) {
                        size_t n = many ? len - 3 : len;
                        if (n >= sizeof names[0]) n = sizeof names[0] - 1;
                        memcpy(names[amin], p, n);
                        names[amin][n] = '\0';
                    }
                    amin++;
                }
                amax = many || amax == INT_MAX ? INT_MAX : amax + 1;
            }
        }
        p += len;
    }
}

/* Whether the option name takes a value in the synopsis ("--user U"). */
static int synopsis_option_value(const char *syn, const char *name)
{
    size_t nlen = strlen(name);
    for (const char *p = syn; (p = strstr(p, name)) != NULL; p += nlen) {
        if ((p > syn && p[-1] != ' ' && p[-1] != '[' && p[-1] != '|') ||
            isalnum((unsigned char)p[nlen]) || p[nlen] == '-')
            continue;
        if (p[nlen] != ' ') return 0; /* "--force]", "--release|" */
        const char *q = p + nlen;
        size_t len = next_word(&q);
        return len > 0 && !(len == 1 && *q == '|') && q[strspn(q, "[")] != '-';
    }
    return 0;
}

/* Count argv's operands (from first) against the synopsis: a usage error names the
 * first word too many or the first operand missing. 0 when they fit, else 2. */
static int check_operands(const struct cli_command *c, const struct cli_verb *v, const char *syn,
                          int first, int argc, char **argv)
{
    struct operands o;
    synopsis_operands(syn, &o);
    int n = 0, ended = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!ended && strcmp(a, "--") == 0) {
            ended = 1;
            continue;
        }
        if (!ended && strncmp(a, "--", 2) == 0) {
            char name[40];
            size_t len = strcspn(a, "=");
            if (len < sizeof name && !a[len]) {
                memcpy(name, a, len + 1);
                if (synopsis_option_value(syn, name)) i++;
            }
            continue;
        }
        if (n++ < o.max) continue;
        char esc[200];
        log_escape(esc, sizeof esc, a, strlen(a));
        help_command(stderr, c, v);
        fprintf(stderr, "kurier: unexpected argument \"%s\" for \"%s%s%s\"\n", esc, c->name,
                v ? " " : "", v ? v->name : "");
        fprintf(stderr, "Try \"kurier help %s%s%s\".\n", c->name, v ? " " : "", v ? v->name : "");
        return 2;
    }
    if (n >= o.min) return 0;
    help_command(stderr, c, v);
    fprintf(stderr, "kurier: missing %s for \"%s%s%s\"\n",
            n < MAX_OPERANDS ? o.names[n] : "arguments", c->name, v ? " " : "", v ? v->name : "");
    fprintf(stderr, "Try \"kurier help %s%s%s\".\n", c->name, v ? " " : "", v ? v->name : "");
    return 2;
}

/* --- checking a command line before the command sees it ---------------------------- */

static int is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

int cli_run(const struct cli_command *c, int argc, char **argv)
{
    if (c->raw) { /* sendmail, mailq: their own options */
        if (argc >= 2 && strcmp(argv[1], "--help") == 0) {
            help_command(stdout, c, NULL);
            return 0;
        }
        return c->fn(argc, argv);
    }
    const struct cli_verb *v = NULL;
    if (c->verbs && argc >= 2 && argv[1][0] != '-') {
        v = verb_find(c, argv[1]);
        if (!v) {
            const char *cands[32];
            size_t n = 0;
            for (const struct cli_verb *w = c->verbs; w->name && n < 31; w++)
                cands[n++] = w->name;
            cands[n] = NULL;
            char what[80];
            snprintf(what, sizeof what, "unknown %s subcommand", c->name);
            help_command(stderr, c, NULL);
            return usage_error(what, argv[1], cands, c->name);
        }
    }
    /* --help anywhere (before "--"), -h right after the command or subcommand */
    int first = v ? 2 : 1;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0 || (i <= first && is_help(argv[i]))) {
            help_command(stdout, c, v);
            return 0;
        }
    if (c->verbs && argc < 2) {
        help_command(stderr, c, NULL);
        fprintf(stderr, "kurier: %s needs a subcommand\n", c->name);
        return 2;
    }
    /* long options: only those of the synopsis (of any subcommand when none is given) */
    const char *opts[MAX_OPTS + 1];
    char store[MAX_OPTS][40];
    size_t nopts = 0;
    if (!c->verbs)
        nopts = synopsis_options(c->args, opts, store, MAX_OPTS);
    else if (v)
        nopts = synopsis_options(v->args, opts, store, MAX_OPTS);
    else
        for (const struct cli_verb *w = c->verbs; w->name; w++)
            nopts += synopsis_options(w->args, opts + nopts, store + nopts, MAX_OPTS - nopts);
    opts[nopts] = NULL;
    for (int i = first; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strncmp(argv[i], "--", 2) != 0) continue;
        char name[40];
        size_t len = strcspn(argv[i], "=");
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, argv[i], len);
        name[len] = '\0';
        int known = 0;
        for (size_t k = 0; k < nopts; k++)
            known |= strcmp(opts[k], name) == 0;
        if (!known) {
            char what[120], help[80];
            snprintf(what, sizeof what, "unknown option for %s%s%s", c->name, v ? " " : "",
                     v ? v->name : "");
            snprintf(help, sizeof help, "%s%s%s", c->name, v ? " " : "", v ? v->name : "");
            help_command(stderr, c, v);
            return usage_error(what, argv[i], opts, help);
        }
    }
    /* too many or too few operands: name the first word too many, or what is missing */
    const char *syn = v ? v->args : c->verbs ? NULL : c->args;
    if (syn && check_operands(c, v, syn, first, argc, argv) != 0) return 2;
    int rc = c->fn(argc, argv);
    if (rc == 2 && c->fn != cmd_rbl) /* rbl check: 2 is also "the answer is unknown" */
        fprintf(stderr, "kurier: bad arguments for \"%s%s%s\"; see \"kurier help %s%s%s\"\n",
                c->name, v ? " " : "", v ? v->name : "", c->name, v ? " " : "", v ? v->name : "");
    return rc;
}

/* --- kurier help -------------------------------------------------------------- */

static void man_commands(FILE *out);

int cmd_help(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--man") == 0) {
        man_commands(stdout);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (argc == 1) {
        cli_help_all(stdout);
        return 0;
    }
    if (argc > 3) {
        fprintf(stderr, "kurier: help takes a command and a subcommand, not \"%s\"\n", argv[3]);
        return 2;
    }
    const struct cli_command *c = cli_command_find(argv[1]);
    if (!c) return cli_unknown_command(argv[1]);
    const struct cli_verb *v = NULL;
    if (argc == 3) {
        v = c->verbs ? verb_find(c, argv[2]) : NULL;
        if (!v) {
            const char *cands[32];
            size_t n = 0;
            for (const struct cli_verb *w = c->verbs; w && w->name && n < 31; w++)
                cands[n++] = w->name;
            cands[n] = NULL;
            char what[80];
            snprintf(what, sizeof what, "unknown %s subcommand", c->name);
            return usage_error(what, argv[2], cands, c->name);
        }
    }
    help_command(stdout, c, v);
    return 0;
}

/* --- bash completion ---------------------------------------------------------- */

static void completion_bash(FILE *out)
{
    fprintf(out, "# bash completion for kurier; generated by \"kurier completion bash\" from "
                 "its command table.\n"
                 "_kurier()\n{\n"
                 "    local cur prev words cword i cmd= sub=\n"
                 "    _init_completion 2>/dev/null || { cur=${COMP_WORDS[COMP_CWORD]};"
                 " prev=${COMP_WORDS[COMP_CWORD-1]}; words=(\"${COMP_WORDS[@]}\");"
                 " cword=$COMP_CWORD; }\n"
                 "    case $prev in -c|--config) COMPREPLY=($(compgen -f -- \"$cur\")); return;; "
                 "esac\n"
                 "    for ((i = 1; i < cword; i++)); do\n"
                 "        case ${words[i]} in\n"
                 "        -c|--config) ((i++));;\n"
                 "        -*) ;;\n"
                 "        *) if [[ -z $cmd ]]; then cmd=${words[i]}; elif [[ -z $sub ]]; then "
                 "sub=${words[i]}; fi;;\n"
                 "        esac\n"
                 "    done\n"
                 "    if [[ -z $cmd ]]; then\n"
                 "        COMPREPLY=($(compgen -W \"-c --config --help --version");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, " %s", commands[i].name);
    fprintf(out, "\" -- \"$cur\"))\n        return\n    fi\n    local words_for=\n"
                 "    case $cmd in\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const struct cli_command *c = &commands[i];
        if (c->raw) continue;
        fprintf(out, "    %s)\n", c->name);
        if (c->verbs) {
            fprintf(out, "        if [[ -z $sub ]]; then words_for=\"--help");
            for (const struct cli_verb *v = c->verbs; v->name; v++)
                fprintf(out, " %s", v->name);
            fprintf(out, "\"\n        else case $sub in\n");
            for (const struct cli_verb *v = c->verbs; v->name; v++) {
                const char *opts[MAX_OPTS + 1];
                char store[MAX_OPTS][40];
                size_t n = synopsis_options(v->args, opts, store, MAX_OPTS);
                fprintf(out, "            %s) words_for=\"--help", v->name);
                for (size_t k = 0; k < n; k++)
                    fprintf(out, " %s", opts[k]);
                fprintf(out, "\";;\n");
            }
            fprintf(out, "            esac\n        fi;;\n");
        } else {
            const char *opts[MAX_OPTS + 1];
            char store[MAX_OPTS][40];
            size_t n = synopsis_options(c->args, opts, store, MAX_OPTS);
            fprintf(out, "        words_for=\"--help");
            if (strcmp(c->name, "help") == 0)
                for (size_t k = 0; k < NCOMMANDS; k++)
                    fprintf(out, " %s", commands[k].name);
            for (size_t k = 0; k < n; k++)
                fprintf(out, " %s", opts[k]);
            fprintf(out, "\";;\n");
        }
    }
    fprintf(out, "    esac\n"
                 "    if [[ $cur == -* || -z $sub || $cmd == help ]]; then\n"
                 "        COMPREPLY=($(compgen -W \"$words_for\" -- \"$cur\"))\n"
                 "    else\n"
                 "        COMPREPLY=($(compgen -f -- \"$cur\"))\n"
                 "    fi\n"
                 "}\n"
                 "complete -F _kurier kurier\n");
}

int cmd_completion(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "bash") != 0) return 2;
    completion_bash(stdout);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* --- kurier(1) ---------------------------------------------------------------- */

static void man_commands(FILE *out)
{
    fprintf(out,
            ".\\\" kurier(1): generated by \"kurier help --man\" from the command table in "
            "src/cli/commands.c; do not edit.\n"
            ".TH KURIER 1 \"%s\" \"kurier %s\" \"kurier manual\"\n"
            ".SH NAME\nkurier \\- administer the kurier mail transfer agent\n"
            ".SH SYNOPSIS\n.B kurier\n.RB [ \\-c\n.IR FILE ]\n.I COMMAND\n"
            ".RI [ SUBCOMMAND ]\n.RI [ ARGS ...]\n.br\n"
            ".B kurier help\n.RI [ COMMAND\n.RI [ SUBCOMMAND ]]\n.br\n"
            ".B kurier \\-\\-version\n"
            ".SH DESCRIPTION\n"
            ".B kurier\nmanages the directory (domains, mailboxes, aliases), the queue and "
            "the running\n.BR kurierd (8)\nthrough its control socket, and checks "
            "configuration, DNS and routes.\nCalled as\n.B sendmail\nor\n.B mailq\n"
            "it behaves as those commands (see SENDMAIL below).\n"
            ".PP\nEvery command and subcommand takes\n.BR \\-\\-help ;\n"
            "a misspelt command, subcommand or option is named in the error, with the "
            "closest match.\n"
            ".SH OPTIONS\nGlobal options come before the command.\n"
            ".TP\n.BR \\-c \" \" \\fIFILE\\fR ,\\ \\-\\-config \" \" \\fIFILE\\fR\n"
            "The configuration file; without it\n.B $KURIER_CONF\n"
            "or\n.IR /etc/kurier/kurier.conf .\n"
            ".TP\n.BR \\-h \", \" \\-\\-help\nList the commands.\n"
            ".TP\n.BR \\-V \", \" \\-\\-version\nPrint the version.\n"
            ".TP\n.B \\-\\-\nEnds the global options.\n"
            ".SH COMMANDS\n",
            KURIER_VERSION_DATE, KURIER_VERSION);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const struct cli_command *c = &commands[i];
        if (!c->verbs) {
            fputs(".TP\n\\fBkurier ", out);
            roff_puts(out, c->name);
            fputs("\\fR ", out);
            roff_puts(out, c->args);
            fputs("\n", out);
            roff_puts(out, c->summary);
            fputs(".\n", out);
            continue;
        }
        fprintf(out, ".SS %s: ", c->name);
        roff_puts(out, c->summary);
        fputs("\n", out);
        for (const struct cli_verb *v = c->verbs; v->name; v++) {
            fputs(".TP\n\\fBkurier ", out);
            roff_puts(out, c->name);
            fputs(" ", out);
            roff_puts(out, v->name);
            fputs("\\fR ", out);
            roff_puts(out, v->args);
            fputs("\n", out);
            roff_puts(out, v->summary);
            fputs(".\n", out);
        }
    }
    fprintf(out,
            ".SH SENDMAIL\n"
            "Installed as\n.I /usr/sbin/sendmail\n(and\n.I /usr/bin/mailq\n"
            "for\n.BR mailq )\nthe same binary reads a message on standard input and queues it "
            "through the maildrop folder, also while the daemon is down, as mail programs, "
            "cron and\n.BR mail (1)\nexpect. It knows\n.B \\-t\n(recipients from the "
            "header),\n.B \\-i\nand\n.B \\-oi\n(a lone dot does not end the message),\n"
            ".B \\-f\n.I SENDER\n(envelope sender; only root and the daemon's user may name "
            "another one),\n.B \\-F\n.I NAME\n(full name for a From: it adds),\n.B \\-bp\n"
            "(as mailq) and\n.B \\-q\n(flush); other historic options such as\n.BR \\-oem ,\n"
            ".BR \\-odi ,\n.B \\-v\nare accepted and ignored. Its exit status follows\n"
            ".IR sysexits.h ,\nas sendmail's does (64 usage, 75 temporary failure).\n"
            ".SH EXIT STATUS\n.TP\n.B 0\ndone\n.TP\n.B 1\nfailed (the reason is printed)\n"
            ".TP\n.B 2\nusage error: an unknown command, subcommand or option, or missing "
            "arguments\n"
            ".SH ENVIRONMENT\n.TP\n.B KURIER_CONF\nThe configuration file when\n.B \\-c\n"
            "is not given.\n"
            ".SH FILES\n.TP\n.I /etc/kurier/kurier.conf\nThe configuration, see\n"
            ".BR kurier.conf (5).\n"
            ".SH SEE ALSO\n.BR kurierd (8),\n.BR kurier.conf (5)\n");
}
