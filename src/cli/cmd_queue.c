/* cmd_queue.c: "kurier queue ..." and mailq(1). Reads the spool directly (users who
 * may not read it get the listing from the daemon); changes go through the daemon's
 * control socket, or straight to the spool under its writer lock when no daemon runs
 * (the daemon is the segments' only writer while it runs). */
#include "core/compat.h"

#include <strings.h>

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "control/control.h"
#include "core/core.h"
#include "queue/queue.h"
#include "smtp/smtp.h"

static void usage(void)
{
    fprintf(stderr, "usage: kurier queue list [--account USER] [--json]\n"
                    "       kurier queue show [--body] ID [--json]\n"
                    "       kurier queue flush\n"
                    "       kurier queue delete ID|ALL\n"
                    "       kurier queue hold ID\n"
                    "       kurier queue release ID\n"
                    "       kurier queue export --all|ID... [--remove] > STREAM\n"
                    "       kurier queue import < STREAM\n");
}

static struct spool *open_spool(const struct kconf *conf)
{
    char err[512];
    struct spool *s = spool_attach(conf->spool_dir, err, sizeof err);
    if (!s) fprintf(stderr, "kurier: %s\n", err);
    return s;
}

/* Print a value from the spool (peer bytes) safely on a terminal. */
static void put_safe(FILE *out, const char *s)
{
    char esc[1024];
    log_escape(esc, sizeof esc, s, strlen(s));
    fputs(esc, out);
}

/* --- list -------------------------------------------------------------------- */

struct list_ctx {
    struct spool *s;
    const char *account; /* --account: only its messages; NULL: all */
    int json;            /* one JSON object per message (docs/json.md) */
    size_t n;
    unsigned long long bytes;
};

static void list_head(struct list_ctx *c)
{
    if (c->n == 0)
        printf("-Queue ID-      --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
    c->n++;
}

static void list_date(char *date, size_t size, time_t t)
{
    struct tm tm;
    localtime_r(&t, &tm);
    if (strftime(date, size, "%a %b %d %H:%M:%S", &tm) == 0) date[0] = '\0';
}

/* A message whose envelope does not load, still in queue/ (the daemon moves it
 * aside when it next tries it) or in corrupt/: its ID, content size, when the
 * envelope last changed, and why it does not load. */
static void list_corrupt(struct list_ctx *c, const char *id, int moved)
{
    char why[600], date[32];
    size_t size = 0;
    time_t mtime = 0;
    if (spool_corrupt_info(c->s, id, moved, why, sizeof why, &size, &mtime) != 0)
        return; /* gone meanwhile */
    if (c->json) {
        struct cli_json j;
        cli_json_begin(&j);
        cli_json_str(&j, "id", id);
        cli_json_int(&j, "size", (long long)size);
        cli_json_time(&j, "arrival", (long long)mtime);
        cli_json_bool(&j, "corrupt", 1);
        cli_json_bool(&j, "kept_aside", moved);
        cli_json_str(&j, "error", why);
        cli_json_end(&j);
        return;
    }
    list_head(c);
    c->bytes += size;
    list_date(date, sizeof date, mtime);
    printf("%-14s %9zu %-20s  (corrupt envelope%s)\n", id, size, date,
           moved ? ", kept in corrupt/ for an admin" : "");
    printf("%49s(", "");
    put_safe(stdout, why);
    printf(")\n\n");
}

static void list_corrupt_one(void *arg, const char *id)
{
    list_corrupt(arg, id, 1);
}

/* The recipients as a JSON array (queue list and queue show). */
static void json_rcpts(struct cli_json *j, const struct spool_env *e, int full)
{
    cli_json_array(j, "recipients");
    for (size_t i = 0; i < e->nrcpts; i++) {
        const struct spool_rcpt *r = &e->rcpts[i];
        cli_json_object(j, NULL);
        cli_json_str(j, "address", r->addr);
        if (full) cli_json_str(j, "original", r->orig);
        if (full) cli_json_str(j, "orcpt", r->orcpt);
        cli_json_str(j, "state", rcpt_state_name(r->state));
        cli_json_int(j, "attempts", r->attempts);
        cli_json_time(j, "last_try", (long long)r->last_try);
        cli_json_time(j, "next_try",
                      r->state == RCPT_ST_QUEUED && !e->held ? (long long)r->next_try : 0);
        cli_json_str(j, "dsn", r->dsn[0] ? r->dsn : NULL);
        cli_json_str(j, "diag", r->diag);
        if (full) cli_json_str(j, "relay", r->relay);
        cli_json_close(j);
    }
    cli_json_close(j);
}

/* The envelope fields both JSON outputs share (docs/json.md). */
static void json_env(struct cli_json *j, const struct spool_env *e)
{
    cli_json_str(j, "id", e->id);
    cli_json_int(j, "size", (long long)e->size);
    cli_json_time(j, "arrival", (long long)e->arrival);
    cli_json_str(j, "sender", e->sender);
    cli_json_str(j, "auth_user", e->auth_user);
    cli_json_bool(j, "held", e->held);
    cli_json_bool(j, "corrupt", 0);
}

static void list_env(struct list_ctx *c, const struct spool_env *e)
{
    if (c->account && (!e->auth_user || strcasecmp(e->auth_user, c->account) != 0)) return;
    if (c->json) {
        struct cli_json j;
        cli_json_begin(&j);
        json_env(&j, e);
        json_rcpts(&j, e, 0);
        cli_json_end(&j);
        return;
    }
    list_head(c);
    c->bytes += e->size;
    char date[32];
    list_date(date, sizeof date, e->arrival);
    printf("%-14s %9zu %-20s  ", e->id, e->size, date);
    put_safe(stdout, e->sender[0] ? e->sender : "MAILER-DAEMON");
    printf("%s\n", e->held ? " (held)" : "");
    for (size_t i = 0; i < e->nrcpts; i++) {
        const struct spool_rcpt *r = &e->rcpts[i];
        printf("%47s", "");
        put_safe(stdout, r->addr);
        printf("  %s", rcpt_state_name(r->state));
        if (r->attempts) printf(", %d attempt%s", r->attempts, r->attempts == 1 ? "" : "s");
        printf("\n");
        if (r->diag && r->state != RCPT_ST_SENT) {
            printf("%49s(", "");
            if (r->dsn[0]) printf("%s ", r->dsn);
            put_safe(stdout, r->diag);
            printf(")\n");
        }
    }
    printf("\n");
}

static void list_one(void *arg, const char *id)
{
    struct list_ctx *c = arg;
    char err[512];
    struct spool_env *e = spool_load(c->s, id, err, sizeof err);
    if (!e) {
        if (errno == EBADMSG)
            list_corrupt(c, id, 0);
        else if (errno != ENOENT) /* removed meanwhile: not an error */
            fprintf(stderr, "kurier: %s\n", err);
        return;
    }
    list_env(c, e);
    spool_env_free(e);
}

static void list_end(const struct list_ctx *c)
{
    if (c->json) return; /* an empty queue is no line */
    if (c->n == 0)
        printf("Mail queue is empty\n");
    else
        printf("-- %llu Kbytes in %zu Request%s.\n", (c->bytes + 1023) / 1024, c->n,
               c->n == 1 ? "" : "s");
}

/* A user who may not read the spool (as Postfix's showq does for mailq): the daemon
 * sends the envelopes, cut down to what the listing shows, read-only. */
static int queue_list_daemon(const struct kconf *conf, const char *account, int json)
{
    char *text, reply[1024];
    size_t len;
    int r = control_request_text(conf->control_socket, "list", &text, &len, reply, sizeof reply);
    if (r != 0) {
        if (r < 0) /* no daemon to ask */
            fprintf(stderr, "kurier: cannot read the queue in %s: %s; %s\n", conf->spool_dir,
                    strerror(EACCES), reply);
        else
            fprintf(stderr, "kurier: %s\n", reply);
        return 1;
    }
    struct list_ctx c = {.account = account, .json = json};
    for (size_t i = 0; i < len;) { /* envelopes, each followed by an empty line */
        const char *end = strstr(text + i, "\n\n");
        size_t n = end ? (size_t)(end - (text + i)) + 1 : len - i;
        struct spool_env *e = xcalloc(1, sizeof *e);
        int bad;
        if (spool_env_parse(text + i, n, e, &bad) == 0) {
            list_env(&c, e);
            spool_env_free(e);
        } else {
            free(e);
            fprintf(stderr, "kurier: a malformed queue listing from kurierd (line %d)\n", bad);
        }
        i += n + 1;
    }
    free(text);
    list_end(&c);
    return 0;
}

static int queue_list(const struct kconf *conf, const char *account, int json)
{
    char qdir[4096];
    if (snprintf(qdir, sizeof qdir, "%s/queue", conf->spool_dir) < (int)sizeof qdir &&
        access(qdir, R_OK | X_OK) != 0 && errno == EACCES)
        return queue_list_daemon(conf, account, json);
    struct spool *s = open_spool(conf);
    if (!s) return 1;
    struct list_ctx c = {.s = s, .account = account, .json = json};
    int rc = spool_scan(s, list_one, &c);
    if (rc == 0 && !account) rc = spool_scan_corrupt(s, list_corrupt_one, &c);
    spool_free(s);
    if (rc != 0) {
        fprintf(stderr, "kurier: cannot read the queue in %s: %s\n", conf->spool_dir,
                strerror(errno));
        return 1;
    }
    list_end(&c);
    return 0;
}

/* --- show -------------------------------------------------------------------- */

/* "Sun, 06 Dec 2026 14:54:48 +0000" */
static void put_date(const char *label, time_t t)
{
    char date[64];
    time_rfc5322(date, sizeof date, t);
    printf("%s%s", label, date);
}

static void put_field(const char *key, const char *val)
{
    if (!val) return;
    printf("%s: ", key);
    put_safe(stdout, val);
    printf("\n");
}

/* The envelope for people: its keys, with dates instead of epoch seconds. */
static void show_env(const struct spool_env *e)
{
    printf("id: %s\n", e->id);
    printf("sender: <");
    put_safe(stdout, e->sender);
    printf(">\n");
    put_date("arrival: ", e->arrival);
    printf("\nsize: %zu bytes\n", e->size);
    if (e->client_name || e->client_addr) {
        printf("client: ");
        put_safe(stdout, e->client_name ? e->client_name : "unknown");
        printf(" [");
        put_safe(stdout, e->client_addr ? e->client_addr : "");
        printf("]\n");
    }
    put_field("helo", e->helo);
    put_field("proto", e->proto);
    put_field("auth", e->auth_user);
    put_field("envid", e->envid);
    if (e->ret) printf("ret: %s\n", e->ret == SMTP_RET_FULL ? "FULL" : "HDRS");
    static const char *const body[] = {NULL, "7BIT", "8BITMIME", "BINARYMIME"};
    if (e->body > 0 && e->body <= SMTP_BODY_BINARYMIME) printf("body: %s\n", body[e->body]);
    if (e->smtputf8) printf("smtputf8: yes\n");
    if (e->held) printf("held: yes (not delivered until released)\n");
    if (e->delay_warned) printf("delay notice: sent\n");
    const char *why = NULL;
    if (!dsn_allowed(e, &why)) printf("delivery reports: none (%s)\n", why);
    time_t now = time(NULL);
    for (size_t i = 0; i < e->nrcpts; i++) {
        const struct spool_rcpt *r = &e->rcpts[i];
        printf("rcpt: <");
        put_safe(stdout, r->addr);
        printf(">\n");
        if (r->orig && strcmp(r->orig, r->addr) != 0) {
            printf("    orig: <");
            put_safe(stdout, r->orig);
            printf(">\n");
        }
        if (r->orcpt) put_field("    orcpt", r->orcpt);
        static const struct {
            unsigned bit;
            const char *name;
        } notify[] = {{SMTP_NOTIFY_NEVER, "NEVER"},
                      {SMTP_NOTIFY_SUCCESS, "SUCCESS"},
                      {SMTP_NOTIFY_FAILURE, "FAILURE"},
                      {SMTP_NOTIFY_DELAY, "DELAY"}};
        const char *sep = "    notify: ";
        for (size_t k = 0; k < sizeof notify / sizeof notify[0]; k++)
            if (r->notify & notify[k].bit) {
                printf("%s%s", sep, notify[k].name);
                sep = ",";
            }
        if (r->notify) printf("\n");
        printf("    state: %s, %d attempt%s\n", rcpt_state_name(r->state), r->attempts,
               r->attempts == 1 ? "" : "s");
        if (r->last_try) {
            put_date("    last attempt: ", r->last_try);
            if (r->relay) {
                printf(" (relay ");
                put_safe(stdout, r->relay);
                printf(")");
            }
            printf("\n");
        }
        if (r->state == RCPT_ST_QUEUED) {
            if (e->held)
                printf("    next attempt: when released\n");
            else if (r->next_try <= now)
                printf("    next attempt: now (when the daemon runs)\n");
            else
                put_date("    next attempt: ", r->next_try), printf("\n");
        }
        static const char *const kinds[] = {"failure", "delay", "success"};
        sep = "    notified: ";
        for (int k = DSN_FAILED; k <= DSN_DELIVERED; k++)
            if (r->notified & DSN_BIT(k)) {
                printf("%s%s", sep, kinds[k]);
                sep = ", ";
            }
        if (r->notified) printf("\n");
        if (r->dsn[0] || r->diag) {
            printf("    last result: %s%s", r->dsn, r->dsn[0] && r->diag ? " " : "");
            put_safe(stdout, r->diag ? r->diag : "");
            printf("\n");
        }
    }
}

/* queue show --json: the whole envelope, no content. */
static void show_json(const struct spool_env *e)
{
    struct cli_json j;
    cli_json_begin(&j);
    json_env(&j, e);
    cli_json_str(&j, "client_name", e->client_name);
    cli_json_str(&j, "client_addr", e->client_addr);
    cli_json_str(&j, "helo", e->helo);
    cli_json_str(&j, "proto", e->proto);
    cli_json_str(&j, "envid", e->envid);
    cli_json_str(&j, "ret", e->ret ? (e->ret == SMTP_RET_FULL ? "FULL" : "HDRS") : NULL);
    static const char *const body[] = {NULL, "7BIT", "8BITMIME", "BINARYMIME"};
    cli_json_str(&j, "body", e->body > 0 && e->body <= SMTP_BODY_BINARYMIME ? body[e->body] : NULL);
    cli_json_bool(&j, "smtputf8", e->smtputf8);
    cli_json_bool(&j, "delay_warned", e->delay_warned);
    json_rcpts(&j, e, 1);
    cli_json_end(&j);
}

static int queue_show(const struct kconf *conf, const char *id, int body, int json)
{
    struct spool *s = open_spool(conf);
    if (!s) return 1;
    char err[512];
    struct spool_env *e = spool_load(s, id, err, sizeof err);
    if (!e) {
        int en = errno;
        char why[600];
        size_t size;
        time_t mtime;
        if (en == EBADMSG)
            fprintf(stderr, "kurier: %s: corrupt envelope: %s\n", id, err);
        else if (en == ENOENT && spool_corrupt_info(s, id, 1, why, sizeof why, &size, &mtime) == 0)
            fprintf(stderr, "kurier: %s: corrupt envelope, kept in %s/corrupt/: %s\n", id,
                    conf->spool_dir, why);
        else if (en == ENOENT)
            fprintf(stderr, "kurier: no such message %s\n", id);
        else
            fprintf(stderr, "kurier: %s\n", err);
        spool_free(s);
        return 1;
    }
    if (json) {
        show_json(e);
        spool_env_free(e);
        spool_free(s);
        return 0;
    }
    show_env(e);
    spool_env_free(e);
    struct spool_content content;
    int r = spool_open_content(s, id, &content);
    spool_free(s);
    if (r != 0) {
        fprintf(stderr, "kurier: cannot open the message %s: %s\n", id, strerror(errno));
        return 1;
    }
    printf("\n");
    /* the content is a stretch of a segment file: read just it */
    FILE *f = lseek(content.fd, (off_t)content.off, SEEK_SET) < 0 ? NULL : fdopen(content.fd, "r");
    if (!f) {
        close(content.fd);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long long left = content.len;
    while (left > 0 && (n = getline(&line, &cap, f)) > 0) {
        if (n > left) n = (ssize_t)left; /* the next record follows */
        left -= n;
        line[n] = '\0';
        if (n >= 2 && line[n - 2] == '\r' && line[n - 1] == '\n') {
            line[n - 2] = '\n';
            line[--n] = '\0';
        }
        if (!body && line[0] == '\n') break; /* end of the header */
        fwrite(line, 1, (size_t)n, stdout);
    }
    free(line);
    fclose(f);
    return 0;
}

/* --- changes ------------------------------------------------------------------ */

struct del_ctx {
    struct spool *s;
    int n;
};

static void delete_one(void *arg, const char *id)
{
    struct del_ctx *c = arg;
    if (spool_remove(c->s, id) == 0) c->n++;
}

/* Without a daemon: act on the spool itself. */
static int direct(const struct kconf *conf, const char *verb, const char *id)
{
    struct spool *s = open_spool(conf);
    if (!s) return 1;
    int rc = 0;
    char err[512];
    /* the daemon is the only writer while it runs: its lock tells it is there */
    if (spool_lock(s, err, sizeof err) != 0) {
        fprintf(stderr, "kurier: %s\n", err);
        spool_free(s);
        return 1;
    }
    if (strcmp(verb, "delete") == 0 && strcmp(id, "ALL") == 0) {
        struct del_ctx c = {.s = s};
        spool_scan(s, delete_one, &c);
        printf("deleted %d message%s\n", c.n, c.n == 1 ? "" : "s");
    } else if (strcmp(verb, "delete") == 0) {
        if (spool_remove(s, id) == 0) {
            printf("deleted %s\n", id);
        } else {
            if (errno == ENOENT)
                fprintf(stderr, "kurier: no such message %s\n", id);
            else
                fprintf(stderr, "kurier: cannot delete %s: %s\n", id, strerror(errno));
            rc = 1;
        }
    } else {
        int hold = strcmp(verb, "hold") == 0;
        struct spool_env *e = spool_load(s, id, err, sizeof err);
        if (!e) {
            if (errno == ENOENT)
                fprintf(stderr, "kurier: no such message %s\n", id);
            else
                fprintf(stderr, "kurier: %s\n", err);
            rc = 1;
        } else {
            int r = spool_set_held(s, e, hold); /* a release is tried as soon as the daemon runs */
            if (r == 1 && !hold) {
                fprintf(stderr, "kurier: %s is not held\n", id);
                rc = 1;
            } else if (r >= 0) {
                printf("%s %s\n", hold ? "held" : "released", id);
            } else {
                fprintf(stderr, "kurier: cannot update %s: %s\n", id, strerror(errno));
                rc = 1;
            }
            spool_env_free(e);
        }
    }
    spool_free(s);
    return rc;
}

static int change(const struct kconf *conf, const char *verb, const char *id)
{
    char req[256], reply[1024];
    if (snprintf(req, sizeof req, "%s%s%s", verb, id ? " " : "", id ? id : "") >= (int)sizeof req) {
        fprintf(stderr, "kurier: no such message %s\n", id);
        return 1;
    }
    int r = control_request(conf->control_socket, req, reply, sizeof reply);
    if (r == 0) {
        printf("%s\n", reply[0] ? reply : "ok");
        return 0;
    }
    if (r == 1) {
        fprintf(stderr, "kurier: %s\n", reply);
        return 1;
    }
    /* no daemon */
    if (strcmp(verb, "flush") == 0) {
        printf("kurierd is not running; queued messages will be tried when it starts\n");
        return 0;
    }
    char qdir[4096]; /* a user who may not change the spool is told so, not "no such message" */
    if (snprintf(qdir, sizeof qdir, "%s/queue", conf->spool_dir) < (int)sizeof qdir &&
        access(qdir, W_OK | X_OK) != 0 && errno == EACCES) {
        fprintf(stderr, "kurier: permission denied: cannot change the queue in %s (%s)\n",
                conf->spool_dir, reply);
        return 1;
    }
    return direct(conf, verb, id);
}

int cmd_queue(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 2;
    }
    int json = cli_json_flag(&argc, argv);
    if (argc < 2) {
        usage();
        return 2;
    }
    const char *verb = argv[1];
    int rc;
    if (json && strcmp(verb, "list") != 0 && strcmp(verb, "show") != 0) {
        fprintf(stderr, "kurier: queue %s has no --json output\n", verb);
        usage();
        return 2;
    }
    if (strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0) {
        usage();
        return 0;
    }
    if (strcmp(verb, "list") == 0 &&
        (argc == 2 || (argc == 4 && strcmp(argv[2], "--account") == 0 && argv[3][0]))) {
        struct kconf *conf = cli_load_conf();
        rc = queue_list(conf, argc == 4 ? argv[3] : NULL, json);
        conf_free(conf);
        return rc;
    }
    if (strcmp(verb, "show") == 0 && (argc == 3 || argc == 4)) {
        int body = 0;
        const char *id = NULL;
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "--body") == 0)
                body = 1;
            else if (!id)
                id = argv[i];
            else
                id = NULL, i = argc; /* two IDs */
        }
        if (!id || (argc == 4 && !body) || (body && json)) {
            usage();
            return 2;
        }
        struct kconf *conf = cli_load_conf();
        rc = queue_show(conf, id, body, json);
        conf_free(conf);
        return rc;
    }
    if (strcmp(verb, "flush") == 0 && argc == 2) {
        struct kconf *conf = cli_load_conf();
        rc = change(conf, "flush", NULL);
        conf_free(conf);
        return rc;
    }
    if (strcmp(verb, "export") == 0 && argc >= 3) {
        int all = 0, remove = 0, nids = 0;
        char **ids = argv + 2;
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "--all") == 0)
                all = 1;
            else if (strcmp(argv[i], "--remove") == 0)
                remove = 1;
            else if (argv[i][0] == '-' || !spool_id_valid(argv[i]))
                return cli_fail("no such message %s", argv[i]);
            else
                ids[nids++] = argv[i]; /* the IDs move to the front of argv + 2 */
        }
        if (all == !!nids) { /* --all, or IDs: one of them */
            usage();
            return 2;
        }
        struct kconf *conf = cli_load_conf();
        rc = queue_export(conf, all, ids, nids, remove);
        conf_free(conf);
        return rc;
    }
    if (strcmp(verb, "import") == 0 && argc == 2) {
        struct kconf *conf = cli_load_conf();
        rc = queue_import(conf);
        conf_free(conf);
        return rc;
    }
    if ((strcmp(verb, "delete") == 0 || strcmp(verb, "hold") == 0 ||
         strcmp(verb, "release") == 0) &&
        argc == 3) {
        if (strcmp(argv[2], "ALL") == 0 && strcmp(verb, "delete") != 0) {
            fprintf(stderr, "kurier: %s ALL is not supported\n", verb);
            return 2;
        }
        struct kconf *conf = cli_load_conf();
        rc = change(conf, verb, argv[2]);
        conf_free(conf);
        return rc;
    }
    usage();
    return 2;
}

int cmd_mailq(int argc, char **argv)
{
    /* mailq options (-v, -q ...) are accepted and ignored; --json as queue list's */
    int json = cli_json_flag(&argc, argv);
    struct kconf *conf = cli_load_conf();
    int rc = queue_list(conf, NULL, json);
    conf_free(conf);
    return rc;
}
