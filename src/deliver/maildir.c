/* maildir.c: local delivery into <root>/<domain>/<local>/Maildir (Dovecot-compatible
 * names with S=size, LF line ends). Blocking; runs on a worker. Routing and quota
 * policy at RCPT time are the router's; the layout and its usage are core/maildir.c's. */
#include "core/compat.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "core/core.h"
#include "deliver/deliver.h"

static atomic_uint deliver_counter;

static enum deliver_status result(struct deliver_result *res, enum deliver_status st,
                                  const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum deliver_status result(struct deliver_result *res, enum deliver_status st,
                                  const char *dsn, const char *fmt, ...)
{
    res->status = st;
    str_copy(res->dsn, dsn, sizeof res->dsn);
    str_copy(res->relay, "local", sizeof res->relay);
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(res->text, sizeof res->text, fmt, ap) < 0) res->text[0] = '\0';
    va_end(ap);
    return st;
}

static int ensure_dir(const char *path, unsigned uid, unsigned gid)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
    if (mkdir_p(path, 0700) != 0) return -1;
    if ((uid || gid) && chown(path, uid ? uid : (unsigned)-1, gid ? gid : (unsigned)-1) != 0)
        return -1;
    return 0;
}

/* Create the Maildir and the mailbox folders above it (owned by uid/gid when set). */
static int make_maildir(const char *root, const char *md, unsigned uid, unsigned gid)
{
    /* own every folder below root that we create: domain, local, Maildir */
    size_t rl = strlen(root);
    char *p = xstrdup(md);
    int r = 0;
    for (char *s = p + rl + 1; *s && r == 0; s++) {
        if (*s != '/') continue;
        *s = '\0';
        r = ensure_dir(p, uid, gid);
        *s = '/';
    }
    free(p);
    static const char *subs[] = {"", "/cur", "/new", "/tmp"};
    for (size_t i = 0; i < 4 && r == 0; i++) {
        char *d = xasprintf("%s%s", md, subs[i]);
        r = ensure_dir(d, uid, gid);
        free(d);
    }
    return r;
}

/* Header values must not break the header block. */
static void put_header(struct buf *b, const char *name, const char *val)
{
    buf_printf(b, "%s: <", name);
    for (const char *p = val; *p; p++)
        if (*p != '\r' && *p != '\n') buf_append(b, p, 1);
    buf_puts(b, ">\n");
}

/* Hostname for a Maildir name: '/' and ':' encoded as Maildir wants. */
static void put_host(struct buf *b, const char *h)
{
    for (const char *p = h && *h ? h : "localhost"; *p; p++) {
        if (*p == '/')
            buf_puts(b, "\\057");
        else if (*p == ':')
            buf_puts(b, "\\072");
        else if (*p == ',')
            buf_puts(b, "\\054");
        else
            buf_append(b, p, 1);
    }
}

/* Copy the message, CRLF -> LF. Returns bytes written or -1 (errno set). */
static long long copy_content(int in, off_t off, long long len, int out)
{
    char ib[65536], ob[65536];
    long long total = 0;
    int cr = 0; /* a CR ended the previous chunk */
    for (;;) {
        size_t want = len < (long long)sizeof ib ? (size_t)len : sizeof ib;
        ssize_t n = want ? pread(in, ib, want, off) : 0;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) break;
        off += n;
        len -= n;
        size_t o = 0;
        for (ssize_t i = 0; i < n; i++) {
            char c = ib[i];
            if (cr) {
                cr = 0;
                if (c != '\n') ob[o++] = '\r'; /* a bare CR stays */
            }
            if (c == '\r') {
                cr = 1;
                continue;
            }
            ob[o++] = c;
            if (o >= sizeof ob - 1) {
                if (write_all(out, ob, o) != 0) return -1;
                total += (long long)o;
                o = 0;
            }
        }
        if (write_all(out, ob, o) != 0) return -1;
        total += (long long)o;
    }
    if (cr) {
        if (write_all(out, "\r", 1) != 0) return -1;
        total++;
    }
    return total;
}

/* One copy written into tmp/, waiting for its batch's flush. */
struct maildir_put {
    struct deliver_result *res; /* the caller's, filled by the commit */
    char *tmp, *dst, *newdir;
    int fd;
    dev_t dev;
    unsigned long long seq; /* open order */
    int failed;             /* the batch could not make it durable: res says why */
    int done;               /* the batch holding it has finished (under gc_lock) */
    struct maildir_put *next;
};

static atomic_ullong open_seq;

struct maildir_put *deliver_maildir_write(const struct deliver_maildir_req *req,
                                          struct deliver_result *res)
{
    memset(res, 0, sizeof *res);
    char *md = maildir_path_new(req->root, req->address);
    if (!md) {
        result(res, DELIVER_PERM, "5.1.3", "bad mailbox address for a Maildir: %s", req->address);
        return NULL;
    }
    struct maildir_put *p = NULL;
    char *tmp = NULL;
    int fd = -1;
    struct stat cst;
    if (fstat(req->content_fd, &cst) != 0) {
        result(res, DELIVER_TEMP, "4.3.0", "cannot read the queued message: %s", strerror(errno));
        goto out;
    }
    if (req->quota > 0) {
        long long used = maildir_usage(req->root, req->address);
        if (used < 0) used = 0;
        if (used + req->content_len > req->quota) {
            result(res, DELIVER_TEMP, "4.2.2", "mailbox full (%lld of %lld bytes used)", used,
                   req->quota);
            goto out;
        }
    }
    if (make_maildir(req->root, md, req->uid, req->gid) != 0) {
        result(res, DELIVER_TEMP, "4.3.0", "cannot create %s: %s", md, strerror(errno));
        goto out;
    }

    /* unique base name: time.M<usec>P<pid>Q<counter>.host */
    struct timeval tv;
    gettimeofday(&tv, NULL);
    unsigned q = atomic_fetch_add(&deliver_counter, 1) + 1;
    struct buf name;
    buf_init(&name, 0);
    buf_printf(&name, "%lld.M%ldP%ldQ%u.", (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(),
               q);
    put_host(&name, req->hostname);
    tmp = xasprintf("%s/tmp/%s", md, name.data);
    unsigned long long seq = atomic_fetch_add(&open_seq, 1);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        result(res, DELIVER_TEMP, "4.3.0", "cannot create %s: %s", tmp, strerror(errno));
        buf_release(&name);
        free(tmp);
        tmp = NULL;
        goto out;
    }
    struct stat fst;
    if (fstat(fd, &fst) != 0 ||
        ((req->uid || req->gid) &&
         fchown(fd, req->uid ? req->uid : (unsigned)-1, req->gid ? req->gid : (unsigned)-1) != 0)) {
        result(res, DELIVER_TEMP, "4.3.0", "cannot chown %s: %s", tmp, strerror(errno));
        buf_release(&name);
        goto out;
    }
    struct buf hdr;
    buf_init(&hdr, 0);
    put_header(&hdr, "Return-Path", req->return_path ? req->return_path : "");
    const char *to = req->orig_rcpt && *req->orig_rcpt ? req->orig_rcpt : req->address;
    /* Delivered-To has no angle brackets by convention (Postfix, Dovecot) */
    buf_puts(&hdr, "Delivered-To: ");
    for (const char *c = to; *c; c++)
        if (*c != '\r' && *c != '\n') buf_append(&hdr, c, 1);
    buf_puts(&hdr, "\n");
    long long size = -1;
    if (write_all(fd, hdr.data, hdr.len) == 0) {
        size = copy_content(req->content_fd, (off_t)req->content_off, req->content_len, fd);
        if (size >= 0) size += (long long)hdr.len;
    }
    buf_release(&hdr);
    if (size < 0) {
        result(res, DELIVER_TEMP, "4.3.0", "cannot write %s: %s", tmp, strerror(errno));
        buf_release(&name);
        goto out;
    }
    p = xcalloc(1, sizeof *p);
    p->res = res;
    p->tmp = tmp;
    p->dst = xasprintf("%s/new/%s,S=%lld", md, name.data, size);
    p->newdir = xasprintf("%s/new", md);
    p->fd = fd;
    p->dev = fst.st_dev;
    p->seq = seq;
    buf_release(&name);
    tmp = NULL;
    fd = -1;
    /* until the commit says otherwise */
    result(res, DELIVER_TEMP, "4.3.0", "delivery not committed");
out:
    if (fd >= 0) close(fd);
    if (tmp) unlink(tmp);
    free(tmp);
    free(md);
    return p;
}

/* --- group commit -------------------------------------------------------------
 * Deliveries that finish writing close together share their flushes, as the
 * spool's batch does: the first worker to commit while no batch is being flushed
 * takes every copy waiting (its own and other workers') and flushes them as one
 * batch; the others wait for it and the next batch collects what arrives meanwhile.
 * A batch: one syncfs() per file system (or fdatasync per file), link into new/,
 * one fsync per distinct new/. A failed flush defers every copy of the batch. */

static pthread_mutex_t gc_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gc_cond = PTHREAD_COND_INITIALIZER;
static struct maildir_put *gc_waiting; /* committed, not yet taken by a batch */
static int gc_flushing;                /* a worker flushes a batch */
static atomic_int gc_syncfs = -1;      /* syncfs_usable(), once */

/* syncfs(2) reports writeback errors only since Linux 5.8; before that, and on
 * other systems, each file is fdatasync'd (as the spool does). */
static int syncfs_usable(void)
{
#ifdef __linux__
    struct utsname u;
    int major = 0, minor = 0;
    if (uname(&u) == 0 && sscanf(u.release, "%d.%d", &major, &minor) == 2)
        return major > 5 || (major == 5 && minor >= 8);
#endif
    return 0;
}

static void put_fail(struct maildir_put *p, const char *what, int err)
{
    if (p->failed) return;
    p->failed = 1;
    result(p->res, DELIVER_TEMP, "4.3.0", "%s: %s", what, strerror(err));
}

/* The data of every copy on disk: syncfs() on each file system, with the earliest
 * opened file of the batch there (syncfs reports the errors seen since that file
 * was opened, so those of every later one too); else fdatasync each file. A batch
 * of one copy is fdatasync'd: the same one flush, without waiting for whatever else
 * is dirty on the file system. Returns 0, or -1 with errno. */
static int batch_flush_data(struct maildir_put *list)
{
    if (atomic_load(&gc_syncfs) < 0) atomic_store(&gc_syncfs, syncfs_usable());
    int use_syncfs = atomic_load(&gc_syncfs) && list->next;
    for (struct maildir_put *p = list; p; p = p->next) {
        if (!use_syncfs) {
            if (fdatasync(p->fd) != 0) return -1;
            continue;
        }
        int seen = 0;
        for (struct maildir_put *o = list; o != p && !seen; o = o->next)
            seen = o->dev == p->dev;
        if (seen) continue;
        struct maildir_put *first = p;
        for (struct maildir_put *o = p->next; o; o = o->next)
            if (o->dev == p->dev && o->seq < first->seq) first = o;
        if (syncfs(first->fd) != 0) return -1;
    }
    return 0;
}

static void batch_run(struct maildir_put *list)
{
    if (batch_flush_data(list) != 0) { /* the whole batch is deferred */
        int e = errno;
        for (struct maildir_put *p = list; p; p = p->next)
            put_fail(p, "cannot write the message (flush failed)", e);
    }
    for (struct maildir_put *p = list; p; p = p->next) {
        close(p->fd);
        p->fd = -1;
        if (p->failed) continue;
        /* link() fails rather than replace an existing file; fall back to rename on
         * file systems without hard links */
        if (link(p->tmp, p->dst) == 0) {
            unlink(p->tmp);
        } else if (errno == EEXIST || rename(p->tmp, p->dst) != 0) {
            put_fail(p, "cannot move into new/", errno);
            continue;
        }
        free(p->tmp);
        p->tmp = NULL;
    }
    /* one fsync per distinct new/ */
    for (struct maildir_put *p = list; p; p = p->next) {
        if (p->failed) continue;
        int seen = 0;
        for (struct maildir_put *o = list; o != p && !seen; o = o->next)
            seen = !o->failed && strcmp(o->newdir, p->newdir) == 0;
        if (seen || fsync_dir(p->newdir) == 0) continue;
        int e = errno;
        for (struct maildir_put *o = p; o; o = o->next)
            if (!o->failed && strcmp(o->newdir, p->newdir) == 0) {
                unlink(o->dst);
                put_fail(o, "cannot fsync new/", e);
            }
    }
    for (struct maildir_put *p = list; p; p = p->next)
        if (!p->failed) result(p->res, DELIVER_OK, "2.0.0", "delivered to maildir");
}

static void put_free(struct maildir_put *p)
{
    if (p->fd >= 0) close(p->fd);
    if (p->tmp) unlink(p->tmp);
    free(p->tmp);
    free(p->dst);
    free(p->newdir);
    free(p);
}

void deliver_maildir_commit(struct maildir_put **puts, size_t n)
{
    pthread_mutex_lock(&gc_lock);
    for (size_t i = 0; i < n; i++) {
        puts[i]->done = 0;
        puts[i]->next = gc_waiting;
        gc_waiting = puts[i];
    }
    for (;;) {
        size_t left = 0;
        for (size_t i = 0; i < n; i++)
            left += !puts[i]->done;
        if (!left) break;
        if (gc_flushing) {
            pthread_cond_wait(&gc_cond, &gc_lock);
            continue;
        }
        struct maildir_put *batch = gc_waiting;
        gc_waiting = NULL;
        gc_flushing = 1;
        pthread_mutex_unlock(&gc_lock);
        batch_run(batch);
        pthread_mutex_lock(&gc_lock);
        gc_flushing = 0;
        while (batch) { /* their owners may free them once done is set */
            struct maildir_put *next = batch->next;
            batch->done = 1;
            batch = next;
        }
        pthread_cond_broadcast(&gc_cond);
    }
    pthread_mutex_unlock(&gc_lock);
    for (size_t i = 0; i < n; i++)
        put_free(puts[i]);
}

enum deliver_status deliver_maildir(const struct deliver_maildir_req *req,
                                    struct deliver_result *res)
{
    struct maildir_put *p = deliver_maildir_write(req, res);
    if (p) deliver_maildir_commit(&p, 1);
    return res->status;
}
