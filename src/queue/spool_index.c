/* spool_index.c: the spool's in-memory index (queue ID -> its content and latest
 * envelope records) and the recovery scan that rebuilds it from the segments at the
 * start, skipping torn records, with the segment files' names and reads that the
 * files above it use too. Writing segments is spool.c's. */
#include "core/compat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "queue/queue.h"
#include "queue/segment.h"
#include "queue/spool_int.h"

/* ---------------------------------------------------------- the index */

static size_t id_hash(const struct spool *s, const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < QUEUE_ID_LEN && id[i]; i++)
        h = (h ^ (unsigned char)id[i]) * 16777619u;
    return h & (s->tabsize - 1);
}

struct ent *ent_find(struct spool *s, const char *id)
{
    if (!s->tab) return NULL;
    for (struct ent *e = s->tab[id_hash(s, id)]; e; e = e->next)
        if (strcmp(e->id, id) == 0) return e;
    return NULL;
}

struct ent *ent_add(struct spool *s, const char *id)
{
    if (s->nent >= s->tabsize) { /* grow: rehash into twice the buckets */
        size_t old = s->tabsize;
        struct ent **ot = s->tab;
        s->tabsize = old ? old * 2 : 1024;
        s->tab = xcalloc(s->tabsize, sizeof *s->tab);
        for (size_t i = 0; i < old; i++)
            for (struct ent *e = ot[i], *n; e; e = n) {
                n = e->next;
                size_t h = id_hash(s, e->id);
                e->next = s->tab[h];
                s->tab[h] = e;
            }
        free(ot);
    }
    struct ent *e = xcalloc(1, sizeof *e);
    str_copy(e->id, id, sizeof e->id);
    size_t h = id_hash(s, id);
    e->next = s->tab[h];
    s->tab[h] = e;
    s->nent++;
    return e;
}

void ent_set_content(struct ent *e, struct seg *g, off_t off, size_t len)
{
    if (e->cseg) {
        e->cseg->live--;
        e->cseg->live_bytes -= e->clen;
    }
    e->cseg = g;
    e->coff = off;
    e->clen = len;
    g->live++;
    g->live_bytes += len;
}

void ent_set_env(struct ent *e, struct seg *g, off_t off, size_t len)
{
    if (e->eseg) {
        e->eseg->live--;
        e->eseg->live_bytes -= e->elen;
    }
    e->eseg = g;
    e->eoff = off;
    e->elen = len;
    g->live++;
    g->live_bytes += len;
}

void ent_drop(struct spool *s, struct ent *e)
{
    struct ent **pp = &s->tab[id_hash(s, e->id)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    if (e->cseg) {
        e->cseg->live--;
        e->cseg->live_bytes -= e->clen;
    }
    if (e->eseg) {
        e->eseg->live--;
        e->eseg->live_bytes -= e->elen;
    }
    s->nent--;
    free(e);
}

void index_clear(struct spool *s)
{
    for (size_t i = 0; i < s->tabsize; i++)
        for (struct ent *e = s->tab[i], *n; e; e = n) {
            n = e->next;
            free(e);
        }
    free(s->tab);
    s->tab = NULL;
    s->tabsize = s->nent = 0;
    for (struct seg *g = s->segs, *n; g; g = n) {
        n = g->next;
        if (g->fd >= 0) close(g->fd);
        free(g);
    }
    s->segs = s->cur = NULL;
    s->indexed = 0;
}

/* "NNNNNNNNNN.seg": its number, else 0. */
static unsigned long seg_name_no(const char *name)
{
    if (strlen(name) != 14 || strcmp(name + 10, ".seg") != 0) return 0;
    unsigned long no = 0;
    for (int i = 0; i < 10; i++) {
        if (name[i] < '0' || name[i] > '9') return 0;
        no = no * 10 + (unsigned long)(name[i] - '0');
    }
    return no;
}

/* --------------------------------------------------- reading the segments */

char *seg_path(const struct spool *s, unsigned long no)
{
    return xasprintf("%s/%010lu.seg", s->queue, no);
}

int pread_all(int fd, void *p, size_t len, off_t off)
{
    char *b = p;
    while (len > 0) {
        ssize_t n = pread(fd, b, len, off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EIO; /* shorter than its record says */
            return -1;
        }
        b += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

/* Read the records of g (s->mu held or no other thread yet) into the index, up to
 * the end of what was written or the first bad record: a write cut short by a crash
 * (a torn record at the end) or garbled bytes. What follows a bad record is never
 * read: its length cannot be trusted. Content payloads are checked by the daemon
 * only (the CLI reads headers and envelopes, not whole messages). */
static void seg_read(struct spool *s, struct seg *g, off_t size)
{
    off_t off = 0;
    const char *why = NULL;
    char *buf = NULL;
    size_t bufcap = 0;
    while (off + SEG_HDR <= size) {
        unsigned char h[SEG_HDR];
        struct seg_rec r;
        if (pread_all(g->fd, h, SEG_HDR, off) != 0) {
            why = "cannot be read";
            break;
        }
        int d = seg_rec_decode(h, &r, &why);
        if (d == 0) break;
        if (d < 0) break;
        if ((off_t)r.len > size - off - SEG_HDR) {
            why = "record longer than the file (cut short)";
            break;
        }
        off_t at = off + SEG_HDR;
        if (r.type != SEG_CONTENT || s->writer) { /* check the payload */
            uint32_t crc = 0;
            size_t left = r.len;
            off_t o = at;
            if (bufcap == 0) buf = xmalloc(bufcap = 65536);
            while (left > 0) {
                size_t want = left < bufcap ? left : bufcap;
                if (pread_all(g->fd, buf, want, o) != 0) break;
                crc = crc32c(crc, buf, want);
                o += (off_t)want;
                left -= want;
            }
            if (left > 0 || crc != r.pcrc) {
                why = left > 0 ? "cannot be read" : "payload checksum mismatch";
                break;
            }
        }
        struct ent *e = ent_find(s, r.id);
        if (r.type == SEG_CONTENT) {
            if (!e) e = ent_add(s, r.id);
            ent_set_content(e, g, at, r.len);
        } else if (r.type == SEG_ENV) {
            /* an envelope without its content: a message whose content went with an
             * older segment after it was removed (its removal record not flushed) */
            if (e && e->cseg) ent_set_env(e, g, at, r.len);
        } else if (e) {
            ent_drop(s, e);
        }
        off += SEG_HDR + (off_t)r.len;
    }
    if (!why && off < size &&
        size - off < SEG_HDR) { /* less than a header left: zeros, or a header cut short */
        unsigned char t[SEG_HDR] = {0}, z[SEG_HDR] = {0};
        size_t left = (size_t)(size - off);
        if (pread_all(g->fd, t, left, off) != 0 || memcmp(t, z, left) != 0)
            why = "record header cut short";
    }
    free(buf);
    g->end = off;
    if (why && s->writer)
        log_warn("qmgr",
                 "segment %s/%010lu.seg: bad record at offset %lld (%s): skipped it and the "
                 "%lld bytes after it",
                 s->queue, g->no, (long long)off, why,
                 (long long)(size - off > SEG_HDR ? size - off - SEG_HDR : 0));
}

static int cmp_ulong(const void *a, const void *b)
{
    unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
    return x < y ? -1 : x > y;
}

/* Read every segment of queue/ into the index. 0 done, -1 (errno set). */
int index_load(struct spool *s)
{
    DIR *d = opendir(s->queue);
    if (!d) return -1;
    unsigned long *nos = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned long no = seg_name_no(de->d_name);
        if (!no) continue;
        if (n == cap) nos = xrealloc(nos, (cap = cap ? cap * 2 : 16) * sizeof *nos);
        nos[n++] = no;
    }
    closedir(d);
    if (n) qsort(nos, n, sizeof *nos, cmp_ulong);
    struct seg **tail = &s->segs;
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        char *p = seg_path(s, nos[i]);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        int e = errno;
        free(p);
        if (fd < 0 && e == ENOENT) continue; /* the daemon reclaimed it meanwhile */
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            if (fd >= 0) close(fd);
            errno = e;
            r = -1;
            break;
        }
        struct seg *g = xcalloc(1, sizeof *g);
        g->no = nos[i];
        g->fd = fd;
        g->cap = st.st_size;
        g->closed = 1; /* a restarted writer never appends behind what it found */
        *tail = g;
        tail = &g->next;
        if (g->no > s->last_no) s->last_no = g->no;
        seg_read(s, g, st.st_size);
    }
    free(nos);
    /* content without its envelope: a message never committed */
    for (size_t i = 0; i < s->tabsize; i++)
        for (struct ent *e = s->tab[i], *nx; e; e = nx) {
            nx = e->next;
            if (!e->eseg) ent_drop(s, e);
        }
    if (r == 0) s->indexed = 1;
    return r;
}

/* For the CLI: read the segments at the first use. 0, -1 (errno set). */
int need_index(struct spool *s)
{
    if (s->indexed) return 0;
    pthread_mutex_lock(&s->mu);
    int r = s->indexed ? 0 : index_load(s);
    if (r != 0) {
        int e = errno;
        index_clear(s);
        errno = e;
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}
