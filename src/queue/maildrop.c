/* maildrop.c: the sendmail(1) drop box under spool/maildrop (format in queue.h).
 * Writing runs as any local user; reading and removing is the daemon's pickup. */
#include "core/compat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "queue/queue.h"
#include "queue/transfer.h"

static int has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return 1;
    return 0;
}

int maildrop_write(const char *spool_dir, const char *sender, char **rcpts, size_t nrcpts,
                   const char *content, size_t len, const char *user, char *err, size_t errsize)
{
    if (has_ctl(sender) || (user && has_ctl(user))) {
        snprintf(err, errsize, "control characters in sender or user name");
        return -1;
    }
    struct buf b;
    buf_init(&b, 0);
    buf_printf(&b, "sender: <%s>\n", sender);
    for (size_t i = 0; i < nrcpts; i++) {
        if (has_ctl(rcpts[i])) {
            snprintf(err, errsize, "control characters in a recipient");
            buf_release(&b);
            return -1;
        }
        buf_printf(&b, "rcpt: <%s>\n", rcpts[i]);
    }
    if (user) buf_printf(&b, "user: %s\n", user);
    buf_puts(&b, "\n");

    char id[QUEUE_ID_LEN + 1];
    unsigned char rnd[8];
    spool_new_id(id);
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        snprintf(err, errsize, "getrandom: %s", strerror(errno));
        buf_release(&b);
        return -1;
    }
    char name[64];
    snprintf(name, sizeof name, "%s.%02x%02x%02x%02x%02x%02x%02x%02x", id, rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    char *dir = xasprintf("%s/maildrop", spool_dir);
    char *tmp = xasprintf("%s/.tmp-%s", dir, name);
    char *dst = xasprintf("%s/%s", dir, name);
    int r = -1;
    /* 0644: the daemon's user must read it; the 1733 directory hides the name */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        snprintf(err, errsize, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    fchmod(fd, 0644); /* whatever the umask */
    if (write_all(fd, b.data, b.len) != 0 || write_all(fd, content, len) != 0 || fsync(fd) != 0) {
        snprintf(err, errsize, "cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (rename(tmp, dst) != 0) {
        snprintf(err, errsize, "cannot rename %s: %s", tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    fsync_dir(dir); /* may fail for lack of read access; the daemon's pickup syncs */
    r = 0;
out:
    buf_release(&b);
    free(dir);
    free(tmp);
    free(dst);
    return r;
}

/* --- imported messages ("kurier queue import") ---------------------------------- */

struct maildrop_out {
    char *tmp, *dst; /* hidden while being written, then its maildrop name */
    int fd;
    int published;
};

struct maildrop_out *maildrop_transfer_new(const char *spool_dir, const char *node,
                                           const struct spool_env *env, char *err, size_t errsize)
{
    if (!transfer_node_valid(node) || !spool_id_valid(env->id)) {
        snprintf(err, errsize, "bad node name or queue ID");
        return NULL;
    }
    char id[QUEUE_ID_LEN + 1];
    unsigned char rnd[8];
    spool_new_id(id);
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        snprintf(err, errsize, "getrandom: %s", strerror(errno));
        return NULL;
    }
    struct maildrop_out *o = xcalloc(1, sizeof *o);
    char name[64];
    snprintf(name, sizeof name, "%s.%02x%02x%02x%02x%02x%02x%02x%02x", id, rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    o->tmp = xasprintf("%s/maildrop/.import-%s", spool_dir, name);
    o->dst = xasprintf("%s/maildrop/%s", spool_dir, name);
    /* 0644 as sendmail's files: the daemon's user must read it */
    o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (o->fd < 0) {
        snprintf(err, errsize, "cannot create %s: %s", o->tmp, strerror(errno));
        free(o->tmp);
        o->tmp = NULL;
        maildrop_out_free(o);
        return NULL;
    }
    fchmod(o->fd, 0644);
    char *text = spool_env_format(env);
    char *head = xasprintf("transfer: %s %s\n%s\n", node, env->id, text);
    free(text);
    int r = maildrop_out_write(o, head, strlen(head), err, errsize);
    free(head);
    if (r != 0) {
        maildrop_out_free(o);
        return NULL;
    }
    return o;
}

int maildrop_out_write(struct maildrop_out *o, const void *p, size_t n, char *err, size_t errsize)
{
    if (o->fd < 0 || write_all(o->fd, p, n) != 0) {
        snprintf(err, errsize, "cannot write %s: %s", o->tmp, strerror(errno));
        return -1;
    }
    return 0;
}

int maildrop_out_close(struct maildrop_out *o, char *err, size_t errsize)
{
    int r = o->fd >= 0 ? fsync(o->fd) : -1;
    if (o->fd >= 0 && close(o->fd) != 0) r = -1;
    o->fd = -1;
    if (r != 0) snprintf(err, errsize, "cannot write %s: %s", o->tmp, strerror(errno));
    return r;
}

int maildrop_out_publish(struct maildrop_out *o, char *err, size_t errsize)
{
    if (o->fd >= 0 || rename(o->tmp, o->dst) != 0) {
        snprintf(err, errsize, "cannot rename %s: %s", o->tmp, strerror(errno));
        return -1;
    }
    o->published = 1;
    return 0;
}

void maildrop_out_free(struct maildrop_out *o)
{
    if (!o) return;
    if (o->fd >= 0) close(o->fd);
    if (o->tmp && !o->published) unlink(o->tmp);
    free(o->tmp);
    free(o->dst);
    free(o);
}

int maildrop_sync(const char *spool_dir)
{
    char *dir = xasprintf("%s/maildrop", spool_dir);
    int r = fsync_dir(dir);
    free(dir);
    return r;
}

static int name_ok(const char *n)
{
    return n[0] && n[0] != '.' && !strchr(n, '/');
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int maildrop_list(const char *spool_dir, char ***names, size_t *n)
{
    char *dir = xasprintf("%s/maildrop", spool_dir);
    DIR *d = opendir(dir);
    free(dir);
    *names = NULL;
    *n = 0;
    if (!d) return -1;
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!name_ok(de->d_name)) continue; /* ".tmp-*" are being written */
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *names = xrealloc(*names, cap * sizeof **names);
        }
        (*names)[(*n)++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (*n) qsort(*names, *n, sizeof **names, cmp_str);
    return 0;
}

void maildrop_list_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* "<...>" at v..v+len, parsed as SMTP's MAIL FROM and RCPT TO paths are (a local
 * user must not get past the checks a remote client meets): the address in a new
 * string, NULL with *why set. */
static char *path_parse(const char *v, size_t len, int sender, int *utf8, const char **why)
{
    struct addr a = {0};
    int n = addr_parse(v, len, ADDR_O_UTF8 | (sender ? ADDR_O_ALLOW_NULL : 0), &a, why);
    if (n < 0) return NULL;
    if ((size_t)n != len) {
        *why = "trailing characters after the address";
        addr_clear(&a);
        return NULL;
    }
    if (a.flags & ADDR_F_ROUTE) {
        *why = "source routes are not allowed here";
        addr_clear(&a);
        return NULL;
    }
    if (a.flags & ADDR_F_UTF8) *utf8 = 1;
    char *s = addr_format(&a);
    addr_clear(&a);
    return s;
}

/* A line's bytes for a log message: escaped, and cut to a readable length. */
static void quote_line(char *dst, size_t size, const char *p, size_t n)
{
    log_escape(dst, size, p, n > 300 ? 300 : n);
}

char *maildrop_crlf(const char *p, size_t len, size_t *outlen)
{
    struct buf b;
    buf_init(&b, 0);
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '\r' && p[i] != '\n') continue;
        buf_append(&b, p + start, i - start);
        buf_append(&b, "\r\n", 2);
        if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n') i++;
        start = i + 1;
    }
    buf_append(&b, p + start, len - start);
    *outlen = b.len;
    char *s = buf_take(&b);
    return s ? s : xstrdup("");
}

/* the envelope part: sendmail's few lines, or an imported message's whole envelope */
#define MAILDROP_HEAD_MAX (TRANSFER_ENV_MAX + 64 * 1024)

/* The head of a transfer file (b[0..off), its empty line included): "transfer: NODE
 * ID" and the envelope in the spool's format. Only root and the daemon's own user may
 * hand over a whole envelope (sender, states, DSN fields, login): any local user can
 * write to the maildrop. 0 done, -1 with err set. */
static int open_transfer(const char *path, const char *p, size_t off, const struct stat *st,
                         struct spool_env *e, struct maildrop_file *out, char *err, size_t errsize)
{
    if (st->st_uid != 0 && st->st_uid != geteuid()) {
        snprintf(err, errsize,
                 "%s: an imported message from uid %u (only root and kurierd's user may "
                 "import)",
                 path, (unsigned)st->st_uid);
        return -1;
    }
    const char *nl = memchr(p, '\n', off);
    size_t n = (size_t)(nl - p);
    const char *sp = memchr(p + 10, ' ', n - 10);
    char node[TRANSFER_NODE_MAX + 1], id[QUEUE_ID_LEN + 1];
    size_t nn = sp ? (size_t)(sp - (p + 10)) : 0;
    if (!sp || nn > TRANSFER_NODE_MAX || (size_t)(nl - sp - 1) != QUEUE_ID_LEN) goto malformed;
    memcpy(node, p + 10, nn);
    node[nn] = '\0';
    memcpy(id, sp + 1, QUEUE_ID_LEN);
    id[QUEUE_ID_LEN] = '\0';
    if (!transfer_node_valid(node) || !spool_id_valid(id)) goto malformed;
    int bad = 0;
    const char *text = nl + 1;
    size_t len = off - 1 - (size_t)(text - p); /* without the empty line */
    if (spool_env_parse(text, len, e, &bad) != 0) {
        snprintf(err, errsize, "%s:%d: malformed envelope line of an imported message", path,
                 bad + 1);
        return -1;
    }
    if (!e->sender || !e->nrcpts) {
        snprintf(err, errsize, "%s: an imported message without recipients", path);
        return -1;
    }
    out->origin_node = xstrdup(node);
    out->origin_id = xstrdup(id);
    return 0;
malformed:
    snprintf(err, errsize, "%s:1: malformed transfer line", path);
    return -1;
}

int maildrop_open(const char *spool_dir, const char *name, struct maildrop_file *out, char *err,
                  size_t errsize)
{
    memset(out, 0, sizeof *out);
    out->fd = -1;
    if (!name_ok(name)) {
        snprintf(err, errsize, "bad maildrop file name");
        return -1;
    }
    char *path = xasprintf("%s/maildrop/%s", spool_dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    struct buf b;
    buf_init(&b, 0);
    struct spool_env *e = xcalloc(1, sizeof *e);
    if (fd < 0) {
        snprintf(err, errsize, "cannot open %s: %s", path, strerror(errno));
        goto bad;
    }
    /* a local user must not make us read /etc/shadow via a symlink or hard link */
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
        snprintf(err, errsize, "%s: not a plain file", path);
        goto bad;
    }
    /* read the envelope part up to the empty line */
    size_t off = 0;
    int line = 0;
    for (;;) {
        char chunk[4096];
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            snprintf(err, errsize, "%s: truncated envelope", path);
            goto bad;
        }
        buf_append(&b, chunk, (size_t)n);
        char *end = memmem(b.data, b.len, "\n\n", 2);
        if (end) {
            off = (size_t)(end - b.data) + 2;
            break;
        }
        if (b.len > MAILDROP_HEAD_MAX) {
            snprintf(err, errsize, "%s: envelope too long", path);
            goto bad;
        }
    }
    if (off > 10 && memcmp(b.data, "transfer: ", 10) == 0) {
        if (open_transfer(path, b.data, off, &st, e, out, err, errsize) != 0) goto bad;
    }
    for (size_t i = 0; i + 1 < off && !out->origin_id;) {
        line++;
        char *nl = memchr(b.data + i, '\n', off - i);
        size_t n = (size_t)(nl - (b.data + i));
        const char *p = b.data + i;
        i += n + 1;
        if (n == 0) break;
        const char *why = NULL;
        if (n > 8 && memcmp(p, "sender: ", 8) == 0 && !e->sender) {
            if ((e->sender = path_parse(p + 8, n - 8, 1, &e->smtputf8, &why))) continue;
        } else if (n > 6 && memcmp(p, "rcpt: ", 6) == 0) {
            char *a = path_parse(p + 6, n - 6, 0, &e->smtputf8, &why);
            if (a) {
                e->rcpts = xrealloc(e->rcpts, (e->nrcpts + 1) * sizeof *e->rcpts);
                memset(&e->rcpts[e->nrcpts], 0, sizeof *e->rcpts);
                e->rcpts[e->nrcpts].addr = a;
                e->rcpts[e->nrcpts].orig = xstrdup(a);
                e->nrcpts++;
                continue;
            }
        } else if (n > 6 && memcmp(p, "user: ", 6) == 0 && !out->user) {
            out->user = xstrndup(p + 6, n - 6);
            continue;
        }
        char q[1300];
        quote_line(q, sizeof q, p, n);
        if (why)
            snprintf(err, errsize, "%s:%d: bad %s address (%s): %s", path, line,
                     p[0] == 's' ? "sender" : "recipient", why, q);
        else
            snprintf(err, errsize, "%s:%d: malformed maildrop line: %s", path, line, q);
        goto bad;
    }
    if (!e->sender || !e->nrcpts) {
        snprintf(err, errsize, "%s: no %s", path, e->sender ? "recipients" : "sender");
        goto bad;
    }
    if (lseek(fd, (off_t)off, SEEK_SET) < 0) {
        snprintf(err, errsize, "%s: seek: %s", path, strerror(errno));
        goto bad;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    if (!out->origin_id) {
        e->proto = xstrdup("local");
        e->arrival = st.st_mtime;
    }
    e->size = (size_t)st.st_size - off;
    out->env = e;
    out->uid = (unsigned)st.st_uid;
    out->fd = fd;
    out->offset = (long long)off;
    buf_release(&b);
    free(path);
    return 0;
bad:
    if (fd >= 0) close(fd);
    spool_env_free(e);
    free(out->user);
    out->user = NULL;
    free(out->origin_node);
    free(out->origin_id);
    out->origin_node = out->origin_id = NULL;
    buf_release(&b);
    free(path);
    return -1;
}

void maildrop_close(struct maildrop_file *f)
{
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    spool_env_free(f->env);
    free(f->user);
    free(f->origin_node);
    free(f->origin_id);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

int maildrop_remove(const char *spool_dir, const char *name)
{
    if (!name_ok(name)) return -1;
    char *path = xasprintf("%s/maildrop/%s", spool_dir, name);
    int r = unlink(path);
    free(path);
    if (r != 0) return -1;
    char *dir = xasprintf("%s/maildrop", spool_dir);
    fsync_dir(dir);
    free(dir);
    return 0;
}
