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

enum deliver_status deliver_maildir(const struct deliver_maildir_req *req,
                                    struct deliver_result *res)
{
    memset(res, 0, sizeof *res);
    char *md = maildir_path_new(req->root, req->address);
    if (!md)
        return result(res, DELIVER_PERM, "5.1.3", "bad mailbox address for a Maildir: %s",
                      req->address);
    enum deliver_status st;
    char *tmp = NULL, *dst = NULL, *newdir = NULL;
    int fd = -1;
    struct stat cst;
    if (fstat(req->content_fd, &cst) != 0) {
        st = result(res, DELIVER_TEMP, "4.3.0", "cannot read the queued message: %s",
                    strerror(errno));
        goto out;
    }
    if (req->quota > 0) {
        long long used = maildir_usage(req->root, req->address);
        if (used < 0) used = 0;
        if (used + req->content_len > req->quota) {
            st = result(res, DELIVER_TEMP, "4.2.2", "mailbox full (%lld of %lld bytes used)", used,
                        req->quota);
            goto out;
        }
    }
    if (make_maildir(req->root, md, req->uid, req->gid) != 0) {
        st = result(res, DELIVER_TEMP, "4.3.0", "cannot create %s: %s", md, strerror(errno));
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
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        st = result(res, DELIVER_TEMP, "4.3.0", "cannot create %s: %s", tmp, strerror(errno));
        buf_release(&name);
        free(tmp);
        tmp = NULL;
        goto out;
    }
    if ((req->uid || req->gid) &&
        fchown(fd, req->uid ? req->uid : (unsigned)-1, req->gid ? req->gid : (unsigned)-1) != 0) {
        st = result(res, DELIVER_TEMP, "4.3.0", "cannot chown %s: %s", tmp, strerror(errno));
        buf_release(&name);
        goto out;
    }
    struct buf hdr;
    buf_init(&hdr, 0);
    put_header(&hdr, "Return-Path", req->return_path ? req->return_path : "");
    const char *to = req->orig_rcpt && *req->orig_rcpt ? req->orig_rcpt : req->address;
    /* Delivered-To has no angle brackets by convention (Postfix, Dovecot) */
    buf_puts(&hdr, "Delivered-To: ");
    for (const char *p = to; *p; p++)
        if (*p != '\r' && *p != '\n') buf_append(&hdr, p, 1);
    buf_puts(&hdr, "\n");
    long long size = -1;
    if (write_all(fd, hdr.data, hdr.len) == 0) {
        size = copy_content(req->content_fd, (off_t)req->content_off, req->content_len, fd);
        if (size >= 0) size += (long long)hdr.len;
    }
    buf_release(&hdr);
    if (size < 0 || fsync(fd) != 0) {
        st = result(res, DELIVER_TEMP, "4.3.0", "cannot write %s: %s", tmp, strerror(errno));
        buf_release(&name);
        goto out;
    }
    close(fd);
    fd = -1;
    dst = xasprintf("%s/new/%s,S=%lld", md, name.data, size);
    buf_release(&name);
    /* link() fails rather than replace an existing file; fall back to rename on
     * file systems without hard links */
    if (link(tmp, dst) == 0) {
        unlink(tmp);
    } else if (errno == EEXIST || rename(tmp, dst) != 0) {
        st = result(res, DELIVER_TEMP, "4.3.0", "cannot move into %s/new: %s", md, strerror(errno));
        goto out;
    }
    free(tmp);
    tmp = NULL;
    newdir = xasprintf("%s/new", md);
    if (fsync_dir(newdir) != 0) {
        st = result(res, DELIVER_TEMP, "4.3.0", "cannot fsync %s: %s", newdir, strerror(errno));
        unlink(dst);
        goto out;
    }
    st = result(res, DELIVER_OK, "2.0.0", "delivered to maildir");
out:
    if (fd >= 0) close(fd);
    if (tmp) unlink(tmp);
    free(tmp);
    free(dst);
    free(newdir);
    free(md);
    return st;
}
