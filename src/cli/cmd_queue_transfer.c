/* cmd_queue_transfer.c: "kurier queue export" and "kurier queue import", the hand-over
 * of queued messages to another node (docs/queue.md). The stream is transfer.c's;
 * export reads the spool through queue.h, import hands each message to the daemon
 * through the maildrop as sendmail does, so the daemon queues it through its own
 * commit path (at once when it runs, at its start when not). */
#include "core/compat.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "control/control.h"
#include "core/core.h"
#include "queue/queue.h"
#include "queue/transfer.h"

/* --- export ---------------------------------------------------------------------- */

static void scan_push(void *arg, const char *id)
{
    strs_add(arg, xstrdup(id));
}

/* The whole content of message id, its length in *len; NULL with errno set. The
 * content is a stretch (offset, length) of a segment file (spool_open_content). */
static char *content_read(struct spool *s, const char *id, size_t *len)
{
    struct spool_content c;
    if (spool_open_content(s, id, &c) != 0) return NULL;
    size_t n = (size_t)c.len;
    char *p = xmalloc(n ? n : 1);
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(c.fd, p + got, n - got, (off_t)(c.off + (long long)got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int en = r < 0 ? errno : EIO; /* shorter than the spool said */
            free(p);
            close(c.fd);
            errno = en;
            return NULL;
        }
        got += (size_t)r;
    }
    close(c.fd);
    *len = n;
    return p;
}

static int stdout_write(void *arg, const void *p, size_t n)
{
    return fwrite(p, 1, n, stdout) == n ? 0 : -1;
}

/* stdout is a pipe: wait until its reader has taken every byte (FIONREAD 0 on the
 * pipe), so that a reader that went away early (an importer that failed at once, a
 * "head") is noticed, which a write that already fitted into the pipe never tells.
 * 0 drained (or not a pipe, or no way to tell), -1 the reader closed its end with
 * bytes unread. */
static int pipe_drained(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) return 0;
    for (;;) {
        int n = 0;
        if (ioctl(fd, FIONREAD, &n) != 0 || n == 0) return 0;
        struct pollfd p = {.fd = fd}; /* POLLERR comes without asking: no reader left */
        if (poll(&p, 1, 100) > 0 && (p.revents & (POLLERR | POLLHUP)))
            return ioctl(fd, FIONREAD, &n) == 0 && n > 0 ? -1 : 0;
    }
}

/* Remove the exported messages: through the daemon while it runs (it may be working
 * on one), else from the spool itself. Returns how many could not be removed. */
static size_t export_remove(const struct kconf *conf, struct spool *s, const struct strs *ids)
{
    size_t failed = 0;
    int daemon = 1;
    for (size_t i = 0; i < ids->n; i++) {
        char req[64], reply[512];
        snprintf(req, sizeof req, "delete %s", ids->v[i]);
        int r = daemon ? control_request(conf->control_socket, req, reply, sizeof reply) : -1;
        if (r == 0) continue;
        if (r == 1 && strncmp(reply, "no such message", 15) == 0) continue; /* gone meanwhile */
        if (r == 1 && strstr(reply, "permission denied")) { /* the same for every one */
            fprintf(stderr, "kurier: nothing removed: %s\n", reply);
            return ids->n - i;
        }
        if (r == 1) {
            fprintf(stderr, "kurier: %s: not removed: %s\n", ids->v[i], reply);
            failed++;
            continue;
        }
        if (daemon) { /* no daemon: the spool itself, for this one and the rest */
            char err[512];
            daemon = 0;
            if (spool_lock(s, err, sizeof err) != 0) { /* a daemon came up meanwhile */
                fprintf(stderr, "kurier: nothing more removed: %s\n", err);
                return failed + ids->n - i;
            }
        }
        if (spool_remove(s, ids->v[i]) != 0 && errno != ENOENT) {
            fprintf(stderr, "kurier: %s: not removed: %s\n", ids->v[i], strerror(errno));
            failed++;
        }
    }
    return failed;
}

int queue_export(const struct kconf *conf, int all, char **argv_ids, int nids, int remove)
{
    if (isatty(STDOUT_FILENO))
        return cli_fail("queue export writes a stream for \"kurier queue import\": send it to "
                        "a file or a pipe, not a terminal");
    if (!transfer_node_valid(conf->hostname))
        return cli_fail("the hostname \"%s\" cannot name this node in the stream", conf->hostname);
    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    char err[512];
    struct spool *s = spool_attach(conf->spool_dir, err, sizeof err);
    if (!s) return cli_fail("%s", err);
    struct strs ids = {0}, done = {0};
    int rc = 0;
    size_t skipped = 0;
    if (all) {
        if (spool_scan(s, scan_push, &ids) != 0) {
            rc = cli_fail("cannot read the queue in %s: %s", conf->spool_dir, strerror(errno));
            goto out;
        }
    } else {
        for (int i = 0; i < nids; i++) { /* every ID must exist before a byte is written */
            struct spool_env *e = spool_load(s, argv_ids[i], err, sizeof err);
            if (!e) {
                if (errno == ENOENT)
                    rc = cli_fail("no such message %s", argv_ids[i]);
                else
                    rc = cli_fail("%s", err);
                goto out;
            }
            spool_env_free(e);
            strs_add(&ids, xstrdup(argv_ids[i]));
        }
    }
    struct transfer_enc *enc = transfer_enc_new(conf->hostname, stdout_write, NULL);
    int werr = !enc;
    for (size_t i = 0; i < ids.n && !werr; i++) {
        const char *id = ids.v[i];
        struct spool_env *e = spool_load(s, id, err, sizeof err);
        if (!e) {
            if (errno == ENOENT && all) continue; /* delivered meanwhile */
            fprintf(stderr, "kurier: %s: not exported: %s\n", id,
                    errno == EBADMSG ? "corrupt envelope (see kurier queue list)" : err);
            skipped++;
            continue;
        }
        size_t len = 0;
        char *content = content_read(s, id, &len);
        if (!content) {
            if (errno != ENOENT || !all) {
                fprintf(stderr, "kurier: %s: not exported: cannot read its content: %s\n", id,
                        strerror(errno));
                skipped++;
            }
            spool_env_free(e);
            continue;
        }
        werr = transfer_enc_message(enc, e, len) != 0 ||
               transfer_enc_content(enc, content, len) != 0 || transfer_enc_message_end(enc) != 0;
        free(content);
        spool_env_free(e);
        if (!werr) strs_add(&done, xstrdup(id));
    }
    /* the stream counts as written once it is all out: flushed, and on disk when
       stdout is a file */
    struct stat st;
    if (!werr) werr = transfer_enc_finish(enc) != 0 || fflush(stdout) != 0;
    if (!werr && fstat(STDOUT_FILENO, &st) == 0 && S_ISREG(st.st_mode))
        werr = fsync(STDOUT_FILENO) != 0;
    if (werr) {
        rc = cli_fail("cannot write the stream: %s; %s", strerror(errno),
                      remove ? "nothing was removed" : "it is incomplete");
        transfer_enc_free(enc);
        goto out;
    }
    if (remove && pipe_drained(STDOUT_FILENO) != 0) {
        rc = cli_fail("the reader of the stream went away before it read all of it; nothing "
                      "was removed");
        transfer_enc_free(enc);
        goto out;
    }
    fprintf(stderr, "kurier: exported %llu message%s (%llu bytes) from node %s\n",
            transfer_enc_count(enc), transfer_enc_count(enc) == 1 ? "" : "s",
            transfer_enc_bytes(enc), conf->hostname);
    transfer_enc_free(enc);
    if (remove) {
        size_t failed = export_remove(conf, s, &done);
        fprintf(stderr, "kurier: removed %zu exported message%s from this node\n", done.n - failed,
                done.n - failed == 1 ? "" : "s");
        if (failed) rc = 1;
    }
    if (skipped) {
        fprintf(stderr, "kurier: %zu message%s not exported (see above)\n", skipped,
                skipped == 1 ? "" : "s");
        rc = 1;
    }
out:
    strs_free(&ids);
    strs_free(&done);
    spool_free(s);
    return rc;
}

/* --- import ---------------------------------------------------------------------- */

/* The messages this node imported, "NODE ID" each, so that importing a stream again
 * does not queue them twice: state_dir/queue-imported, lines "SECONDS NODE ID",
 * locked (flock) for the whole import; lines older than IMPORTED_KEEP are dropped. */
#define IMPORTED_KEEP (30 * 24 * 3600)

struct key_set { /* open addressing */
    char **slot;
    size_t cap, n;
};

static size_t key_hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int key_has(const struct key_set *k, const char *key)
{
    if (!k->cap) return 0;
    for (size_t i = key_hash(key) & (k->cap - 1);; i = (i + 1) & (k->cap - 1)) {
        if (!k->slot[i]) return 0;
        if (strcmp(k->slot[i], key) == 0) return 1;
    }
}

static void key_add(struct key_set *k, const char *key)
{
    if ((k->n + 1) * 2 > k->cap) {
        struct key_set bigger = {xcalloc(k->cap ? k->cap * 2 : 1024, sizeof(char *)),
                                 k->cap ? k->cap * 2 : 1024, 0};
        for (size_t i = 0; i < k->cap; i++)
            if (k->slot[i]) {
                key_add(&bigger, k->slot[i]);
                free(k->slot[i]);
            }
        free(k->slot);
        *k = bigger;
    }
    size_t i = key_hash(key) & (k->cap - 1);
    while (k->slot[i]) {
        if (strcmp(k->slot[i], key) == 0) return;
        i = (i + 1) & (k->cap - 1);
    }
    k->slot[i] = xstrdup(key);
    k->n++;
}

static void key_set_free(struct key_set *k)
{
    for (size_t i = 0; i < k->cap; i++)
        free(k->slot[i]);
    free(k->slot);
}

/* Read the file (fd, locked) into k; lines too old are left out, and the file is
 * rewritten without them when they are most of it. */
static void imported_load(int fd, struct key_set *k)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size == 0) return;
    size_t len = (size_t)st.st_size;
    char *text = xmalloc(len + 1);
    ssize_t got = pread(fd, text, len, 0);
    if (got < 0) got = 0;
    text[got] = '\0';
    time_t now = time(NULL);
    struct buf keep;
    buf_init(&keep, 0);
    size_t lines = 0, kept = 0;
    for (char *p = text, *nl; *p; p = nl + 1) {
        if (!(nl = strchr(p, '\n'))) break; /* a line cut short by a crash */
        *nl = '\0';
        lines++;
        char *sp = strchr(p, ' ');
        long long t = strtoll(p, NULL, 10);
        if (!sp || t < now - IMPORTED_KEEP) continue;
        key_add(k, sp + 1);
        buf_printf(&keep, "%s\n", p);
        kept++;
    }
    if (lines > 1000 && kept * 2 < lines && ftruncate(fd, 0) == 0)
        (void)!pwrite(fd, keep.data ? keep.data : "", keep.len, 0);
    buf_release(&keep);
    free(text);
}

struct staged {
    struct maildrop_out *out;
    char *key; /* "NODE ID" */
};

struct import_ctx {
    const struct kconf *conf;
    struct key_set seen; /* imported before, or earlier in this stream */
    struct staged *v;
    size_t n, cap;
    struct maildrop_out *cur; /* the message being read */
    char *cur_key;
};

static long import_read(void *arg, void *p, size_t n)
{
    size_t r = fread(p, 1, n, stdin);
    if (r == 0 && ferror(stdin)) return -1;
    return (long)r;
}

static int import_begin(void *arg, const char *node, const struct spool_env *env,
                        unsigned long long len, char *err, size_t errsize)
{
    struct import_ctx *c = arg;
    char *key = xasprintf("%s %s", node, env->id);
    if (key_has(&c->seen, key)) {
        free(key);
        return 1;
    }
    /* the envelope as it was, but due now: what deferred it there (that node's address
       or network) may not hold here; attempts and arrival keep counting */
    struct spool_env *e = envelope_dup(env);
    for (size_t i = 0; i < e->nrcpts; i++)
        if (e->rcpts[i].state == RCPT_ST_QUEUED) e->rcpts[i].next_try = 0;
    c->cur = maildrop_transfer_new(c->conf->spool_dir, node, e, err, errsize);
    spool_env_free(e);
    if (!c->cur) {
        free(key);
        return -1;
    }
    c->cur_key = key;
    return 0;
}

static int import_content(void *arg, const void *p, size_t n, char *err, size_t errsize)
{
    struct import_ctx *c = arg;
    return maildrop_out_write(c->cur, p, n, err, errsize);
}

static int import_end(void *arg, char *err, size_t errsize)
{
    struct import_ctx *c = arg;
    if (maildrop_out_close(c->cur, err, errsize) != 0) return -1;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->v = xrealloc(c->v, c->cap * sizeof *c->v);
    }
    c->v[c->n++] = (struct staged){c->cur, c->cur_key};
    key_add(&c->seen, c->cur_key);
    c->cur = NULL;
    c->cur_key = NULL;
    return 0;
}

int queue_import(const struct kconf *conf)
{
    if (isatty(STDIN_FILENO))
        return cli_fail("queue import reads a stream of \"kurier queue export\" on standard "
                        "input: redirect it from a file or a pipe");
    char *path = xasprintf("%s/queue-imported", conf->state_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        int rc = cli_fail("cannot open %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        free(path);
        return rc;
    }
    struct import_ctx c = {.conf = conf};
    imported_load(fd, &c.seen);
    static const struct transfer_dec_ops ops = {import_read, import_begin, import_content,
                                                import_end};
    struct transfer_stats st;
    char err[1024];
    int rc = 0;
    if (transfer_decode(&ops, &c, &st, err, sizeof err) != 0) {
        /* all or nothing: what was staged goes, a stream that is not whole queues none */
        rc = cli_fail("cannot import: %s; nothing was imported", err);
        goto out;
    }
    size_t published = 0;
    struct buf rec;
    buf_init(&rec, 0);
    time_t now = time(NULL);
    for (size_t i = 0; i < c.n; i++) {
        if (maildrop_out_publish(c.v[i].out, err, sizeof err) != 0) {
            fprintf(stderr, "kurier: %s: %s\n", c.v[i].key, err);
            rc = 1;
            continue;
        }
        published++;
        buf_printf(&rec, "%lld %s\n", (long long)now, c.v[i].key);
    }
    /* visible first, remembered after: a crash between the two imports a message
       twice on a second run, never not at all */
    if (published && maildrop_sync(conf->spool_dir) != 0)
        fprintf(stderr, "kurier: cannot fsync %s/maildrop: %s\n", conf->spool_dir, strerror(errno));
    if (rec.len && (write_all(fd, rec.data, rec.len) != 0 || fsync(fd) != 0))
        fprintf(stderr,
                "kurier: cannot record the imported messages in %s: %s (importing the "
                "stream again would queue them twice)\n",
                path, strerror(errno));
    buf_release(&rec);
    printf("imported %zu message%s from node %s", published, published == 1 ? "" : "s", st.node);
    if (st.skipped) printf(", skipped %llu imported before", st.skipped);
    printf("\n");
    if (published) {
        char reply[512];
        if (control_request(conf->control_socket, "pickup", reply, sizeof reply) < 0)
            printf("kurierd is not running; it queues them when it starts\n");
    }
out:
    for (size_t i = 0; i < c.n; i++) {
        maildrop_out_free(c.v[i].out);
        free(c.v[i].key);
    }
    free(c.v);
    maildrop_out_free(c.cur);
    free(c.cur_key);
    key_set_free(&c.seen);
    close(fd); /* the lock goes with it */
    free(path);
    return rc;
}
