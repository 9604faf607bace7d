/* cmd_log.c: "kurier log trace ID|MESSAGE-ID|ADDRESS": every log line of a message's
 * life (its SMTP session, cleanup, queue manager, deliveries, the notices it caused)
 * from a log file or the journal. Reads text only; knows the line shapes log.h
 * promises ("ID: key=value", "smtpd[N]" per session), nothing of the daemon. */
#include "core/compat.h"

#include <strings.h>

#include <ctype.h>
#include <errno.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "queue/queue.h"

static int usage(void)
{
    fprintf(stderr,
            "usage: kurier log trace ID|MESSAGE-ID|ADDRESS [--file FILE]\n"
            "  prints every log line of the message with that queue ID or Message-ID, or of\n"
            "  every message from or to that address: its SMTP session, queueing,\n"
            "  delivery attempts and the notices it caused. The lines come from --file\n"
            "  (\"-\": standard input), else the config's log { file }, else the journal\n"
            "  (journalctl), else /var/log/mail.log. Exit 1 when nothing was found.\n");
    return 2;
}

static void lines_read(struct strs *L, FILE *f)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        strs_add(L, xstrndup(line, (size_t)n));
    }
    free(line);
}

/* The queue ID a line is about: the word after a program tag's "]: ", when it is an
 * ID followed by ':'. Copied into id; 0 found, -1 none. */
static int line_qid(const char *line, char *id, size_t size)
{
    /* each "]: " in turn: the journal may put its own "kurierd[PID]: " in front */
    for (const char *p = line; (p = strstr(p, "]: ")); p++) {
        const char *w = p + 3;
        size_t n = 0;
        while (isalnum((unsigned char)w[n]))
            n++;
        if (w[n] != ':' || n == 0 || n >= size) continue;
        memcpy(id, w, n);
        id[n] = '\0';
        if (spool_id_valid(id)) return 0;
    }
    return -1;
}

/* "smtpd[17]" of an SMTP session's line; 0 found, -1 none. */
static int line_session(const char *line, char *tag, size_t size)
{
    const char *p = strstr(line, "/smtpd[");
    const char *e = p ? strstr(p, "]: ") : NULL;
    if (!p || !e || (size_t)(e - p) >= size) return -1;
    memcpy(tag, p + 1, (size_t)(e - p));
    tag[e - p] = '\0';
    return 0;
}

struct idset {
    char (*v)[QUEUE_ID_LEN + 8];
    size_t n;
};

static int idset_has(const struct idset *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], id) == 0) return 1;
    return 0;
}

static int idset_add(struct idset *s, const char *id)
{
    if (idset_has(s, id) || strlen(id) >= sizeof s->v[0]) return 0;
    s->v = xrealloc(s->v, (s->n + 1) * sizeof s->v[0]);
    str_copy(s->v[s->n++], id, sizeof s->v[0]);
    return 1;
}

/* Does the line name the address or Message-ID (case-insensitively, in <>)? */
static int names(const char *line, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = line; (p = strchr(p, '<')); p++)
        if (strncasecmp(p + 1, needle, n) == 0 && p[1 + n] == '>') return 1;
    return 0;
}

/* The lines of one message's life, marked in keep[]. */
static void trace(const struct strs *L, const char *what, char *keep)
{
    struct idset ids = {0};
    char id[64], tag[64];
    char needle[1024];
    size_t wl = strlen(what);
    if (wl >= 2 && what[0] == '<' && what[wl - 1] == '>') /* <id@host> as written */
        snprintf(needle, sizeof needle, "%.*s", (int)(wl - 2), what + 1);
    else
        str_copy(needle, what, sizeof needle);

    if (spool_id_valid(what)) idset_add(&ids, what);
    /* lines that name it: "ID: message-id=<X>", from=<X>, to=<X>, rejects of it */
    for (size_t i = 0; i < L->n; i++) {
        if (!names(L->v[i], needle)) continue;
        keep[i] = 1;
        if (line_qid(L->v[i], id, sizeof id) == 0) idset_add(&ids, id);
    }
    /* the notices (bounces, delay and success reports) a message caused, and theirs */
    for (int more = 1; more;) {
        more = 0;
        for (size_t i = 0; i < L->n; i++) {
            const char *p = strstr(L->v[i], " notification: ");
            if (!p || line_qid(L->v[i], id, sizeof id) != 0 || !idset_has(&ids, id)) continue;
            more |= idset_add(&ids, p + strlen(" notification: "));
        }
    }
    for (size_t i = 0; i < L->n; i++)
        if (line_qid(L->v[i], id, sizeof id) == 0 && idset_has(&ids, id)) keep[i] = 1;
    /* the SMTP session around each message: its lines from "connect from" to
     * "disconnect from" (session numbers start again when kurierd restarts) */
    for (size_t i = 0; i < L->n; i++) {
        if (keep[i] != 1 || line_session(L->v[i], tag, sizeof tag) != 0) continue;
        size_t a = i, b = i;
        while (a > 0) {
            char t2[64];
            if (line_session(L->v[a], t2, sizeof t2) == 0 && strcmp(t2, tag) == 0 &&
                strstr(L->v[a], "]: connect from "))
                break;
            a--;
        }
        while (b + 1 < L->n) {
            char t2[64];
            if (line_session(L->v[b], t2, sizeof t2) == 0 && strcmp(t2, tag) == 0 &&
                strstr(L->v[b], "]: disconnect from "))
                break;
            b++;
        }
        for (size_t k = a; k <= b; k++) {
            char t2[64];
            if (!keep[k] && line_session(L->v[k], t2, sizeof t2) == 0 && strcmp(t2, tag) == 0)
                keep[k] = 2; /* not a message line: no session of its own is looked up */
        }
    }
    free(ids.v);
}

/* The config's log { file }, when a config is there and says one. */
static char *conf_log_file(void)
{
    const char *path = cli_conf_path();
    if (access(path, R_OK) != 0) return NULL;
    struct conf_errors errs = {0};
    struct kconf *c = conf_load(path, &errs);
    char *f = c && c->log_file && *c->log_file ? xstrdup(c->log_file) : NULL;
    conf_errors_free(&errs);
    conf_free(c);
    return f;
}

int cmd_log(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage();
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "trace") != 0) {
        if (argc >= 2) fprintf(stderr, "kurier: log: unknown verb \"%s\"\n", argv[1]);
        return usage();
    }
    const char *what = NULL, *file = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--file") == 0 && i + 1 < argc)
            file = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1])
            return cli_fail("log trace: unknown option %s", argv[i]), usage();
        else if (!what)
            what = argv[i];
        else
            return cli_fail("log trace: one ID, Message-ID or address, not \"%s\"", argv[i]),
                   usage();
    }
    if (!what || !*what) return usage();

    char *cfile = file ? NULL : conf_log_file();
    if (cfile) file = cfile;
    FILE *f = NULL;
    int from_pipe = 0;
    const char *source;
    if (file && strcmp(file, "-") == 0) {
        f = stdin;
        source = "standard input";
    } else if (file) {
        f = fopen(file, "r");
        source = file;
    } else if (access("/bin/journalctl", X_OK) == 0 || access("/usr/bin/journalctl", X_OK) == 0) {
        /* kurierd's lines, whether it logs to syslog or its stderr goes to the journal */
        f = popen("journalctl --no-pager -q -o short _COMM=kurierd 2>/dev/null", "r");
        from_pipe = 1;
        source = "the journal";
    } else {
        source = file = "/var/log/mail.log";
        f = fopen(file, "r");
    }
    if (!f) {
        int rc = cli_fail("cannot read %s: %s", source, strerror(errno));
        free(cfile);
        return rc;
    }
    struct strs L = {0};
    lines_read(&L, f);
    if (from_pipe)
        pclose(f);
    else if (f != stdin)
        fclose(f);
    char *keep = xcalloc(L.n ? L.n : 1, 1);
    trace(&L, what, keep);
    size_t shown = 0;
    for (size_t i = 0; i < L.n; i++) {
        if (keep[i]) {
            puts(L.v[i]);
            shown++;
        }
    }
    strs_free(&L);
    free(keep);
    int rc = 0;
    if (!shown) rc = cli_fail("no log lines about %s in %s", what, source);
    free(cfile);
    return rc;
}
