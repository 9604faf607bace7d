/* spool.c: the on-disk queue (layout in queue.h): messages as records appended to
 * segment files (record format in segment.h), an index of them in memory, group
 * commit with one flush per batch, reclamation of segments nothing lives in. Only
 * writer of spool/queue; callers get IDs, never paths. The envelope text format is
 * envelope.c's, what happens to queued messages the scheduler's (sched.c), queue IDs
 * queue_id.c's. The index and the recovery scan are in spool_index.c below, the old
 * layout and corrupt/ in spool_legacy.c above (shared through spool_int.h). */
#include "core/compat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "core/metrics.h"
#include "queue/dkim_sign.h"
#include "queue/msgid.h"
#include "queue/queue.h"
#include "queue/segment.h"
#include "queue/spool_int.h"

#define SEG_SIZE (16 * 1024 * 1024) /* a new segment; a bigger message gets one its size */
#define MEM_MAX                                                                                    \
    (256 * 1024) /* content held in memory while received; more goes                               \
                    to an unnamed temporary file in queue/ */

struct spool_msg {
    struct spool *s;
    char id[QUEUE_ID_LEN + 1];
    struct buf mem; /* the content, up to MEM_MAX */
    int tmpfd;      /* beyond it: an unnamed file, -1 none */
    size_t size;
    int failed;
    struct dkim_sign *dkim; /* spool_msg_sign(): content passes through it */
    struct msgid_scan mid;  /* the Message-ID field, for the cleanup log line */
};

struct commit {
    struct spool_msg *m;
    char *envtext;
    char *msgid; /* logged once committed */
    void (*done)(void *arg, int ok);
    void *arg;
    int ok;
    struct seg *cseg, *eseg; /* where its records went (pinned), NULL: not written */
    off_t coff, eoff;
    size_t elen;
    struct commit *next;
};

struct batch {
    struct spool *s;
    struct commit *list;
    struct work_job *job;
    int tend; /* after it, reclaiming or making the next segment is due (tend_want) */
};

/* ---------------------------------------------------------- segments */

static int pwrite_all(int fd, const void *p, size_t len, off_t off)
{
    const char *b = p;
    while (len > 0) {
        ssize_t n = pwrite(fd, b, len, off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EIO;
            return -1;
        }
        b += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

/* Files created as root (the CLI, the daemon before it drops privileges) belong to
 * queue/'s owner, so the daemon can always open them. */
static int own_file(const struct spool *s, int fd)
{
    struct stat st;
    if (geteuid() != 0 || stat(s->queue, &st) != 0 || (st.st_uid == 0 && st.st_gid == 0)) return 0;
    return fchown(fd, st.st_uid, st.st_gid);
}

/* Make segment file no with room for need bytes at least (no lock needed). Its name
 * is made durable here (queue/ fsync'd), so a flush of the file is all its records
 * need. smaller: on a full disk try a smaller file too. The file's descriptor, its
 * size in *capp; -1 when it cannot be made (logged, errno set, nothing left behind). */
static int seg_file_make(struct spool *s, unsigned long no, off_t need, int smaller, off_t *capp)
{
    char *p = seg_path(s, no);
    int fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    off_t cap = 0;
    int e = 0;
    if (fd < 0) {
        e = errno;
    } else if (own_file(s, fd) != 0) {
        e = errno;
    } else if (s->prealloc) {
        /* full disk: fails now, not in a later write. A small file system gets a
         * smaller segment: room for the record and the reserve (seg_append), or for
         * the record alone. */
        off_t sizes[3] = {need > s->seg_size ? need : s->seg_size, need + s->seg_size / 16, need};
        for (int i = 0; i < (smaller ? 3 : 1); i++) {
            cap = sizes[i];
            if (i && (cap >= sizes[i - 1] || ftruncate(fd, 0) != 0)) continue;
            if (!(e = posix_fallocate(fd, 0, cap))) break;
        }
    }
    if (!e && fsync_dir(s->queue) != 0) e = errno;
    if (e) {
        log_err("qmgr", "cannot create segment %s: %s", p, strerror(e));
        if (fd >= 0) {
            close(fd);
            unlink(p);
        }
        free(p);
        errno = e;
        return -1;
    }
    free(p);
    *capp = cap;
    return fd;
}

static struct seg *seg_new(unsigned long no, int fd, off_t cap)
{
    struct seg *g = xcalloc(1, sizeof *g);
    g->no = no;
    g->fd = fd;
    g->cap = cap;
    return g;
}

static void seg_link(struct spool *s, struct seg *g)
{
    struct seg **pp = &s->segs;
    while (*pp)
        pp = &(*pp)->next;
    *pp = g;
}

/* A new segment after the last one, room for need bytes at least (s->mu held): the
 * one made ahead when it is there and big enough, else one made now. NULL when it
 * cannot be made (logged, errno set). */
static struct seg *seg_create(struct spool *s, off_t need)
{
    while (s->spare_making) /* its number is taken: a segment made now would come after it */
        pthread_cond_wait(&s->spare_cv, &s->mu);
    s->spare_failed = 0;
    struct seg *g = s->spare;
    s->spare = NULL;
    if (g && need <= g->cap) {
        seg_link(s, g);
        return g;
    }
    if (g) { /* a giant record: the empty spare goes, a bigger segment comes after it */
        char *p = seg_path(s, g->no);
        unlink(p);
        free(p);
        close(g->fd);
        free(g);
    }
    unsigned long no = s->last_no + 1;
    off_t cap;
    int fd = seg_file_make(s, no, need, 1, &cap);
    if (fd < 0) return NULL;
    s->last_no = no;
    g = seg_new(no, fd, cap);
    seg_link(s, g);
    return g;
}

/* ------------------------------------------------------------- made ahead
 *
 * Making a segment costs a flush of queue/ (about a millisecond): a batch that had to
 * make one waited that much longer, and every session's commit behind it. So once the
 * current segment is half full a worker makes the next one (spare_make), outside the
 * lock, under the number after the last; seg_create takes it. While it is being made
 * no other segment is (seg_create waits for it), so the numbers, which are the order
 * of the records at a restart, stay in the order of use. A spare left unused at a stop
 * is an empty segment, skipped at the start and removed when it is the oldest. */

/* Is the next segment to be made now? When the current one is half full and none
 * is made, being made or failed since (s->mu held). */
static int spare_due(const struct spool *s)
{
    const struct seg *g = s->cur;
    return g && g->cap && g->end > g->cap / 2 && !s->spare && !s->spare_making && !s->spare_failed;
}

/* Worker (tend_run): make the next segment when it is due. */
static void spare_make(struct spool *s)
{
    pthread_mutex_lock(&s->mu);
    if (!spare_due(s)) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    unsigned long no = ++s->last_no;
    s->spare_making = 1;
    pthread_mutex_unlock(&s->mu);
    off_t cap;
    int fd = seg_file_make(s, no, s->seg_size, 0, &cap);
    pthread_mutex_lock(&s->mu);
    s->spare_making = 0;
    if (fd >= 0) {
        s->spare = seg_new(no, fd, cap);
        log_debug("qmgr", "segment %s/%010lu.seg made ahead", s->queue, no);
    } else {
        s->spare_failed = 1;
    }
    pthread_cond_broadcast(&s->spare_cv);
    pthread_mutex_unlock(&s->mu);
}

/* Copy len bytes of fd from offset in to g at off, and their CRC-32C. */
static int copy_crc(int from, off_t in, int to, size_t len, off_t off, uint32_t *crc)
{
    char b[65536];
    *crc = 0;
    while (len > 0) {
        size_t want = len < sizeof b ? len : sizeof b;
        if (pread_all(from, b, want, in) != 0 || pwrite_all(to, b, want, off) != 0) return -1;
        *crc = crc32c(*crc, b, want);
        in += (off_t)want;
        off += (off_t)want;
        len -= want;
    }
    return 0;
}

/* Append one record (s->mu held): the payload is p[0..len) or, when p is NULL, len
 * bytes of srcfd from srcoff. The current segment takes it when it has room, else a new
 * one. *gp and *offp: where the payload went. 0 done, -1 failed (logged, errno set):
 * the segment takes nothing more, so no later record follows a torn one. */
int seg_append(struct spool *s, enum seg_type t, const char *id, const void *p, size_t len,
               int srcfd, off_t srcoff, struct seg **gp, off_t *offp)
{
    if (len > UINT32_MAX - SEG_HDR) {
        errno = EFBIG;
        return -1;
    }
    off_t need = SEG_HDR + (off_t)len;
    struct seg *g = s->cur;
    if (g && g->closed) g = s->cur = NULL;
    /* New messages leave the last 1/16 of a segment free: when no new segment can be
     * made (a full disk), envelope updates and removals still have room, so the
     * messages already accepted can be delivered and their states recorded. */
    off_t reserve = t == SEG_CONTENT ? s->seg_size / 16 : 0;
    off_t cap = g ? (g->cap ? g->cap : s->seg_size) : 0;
    if (g && g->end > 0 && g->end + need + reserve > cap) {
        struct seg *n = seg_create(s, need);
        if (n) {
            g->closed = 1;
            g = s->cur = n;
        } else if (reserve || g->end + need > cap) {
            return -1;
        }
    }
    if (!g && !(g = s->cur = seg_create(s, need))) return -1;
    off_t at = g->end;
    struct seg_rec r = {.type = t, .len = (uint32_t)len};
    str_copy(r.id, id, sizeof r.id);
    int bad;
    if (p) {
        r.pcrc = crc32c(0, p, len);
        bad = pwrite_all(g->fd, p, len, at + SEG_HDR);
    } else {
        bad = copy_crc(srcfd, srcoff, g->fd, len, at + SEG_HDR, &r.pcrc);
    }
    if (!bad) {
        unsigned char h[SEG_HDR];
        seg_rec_encode(&r, h);
        bad = pwrite_all(g->fd, h, SEG_HDR, at);
    }
    if (bad) {
        int e = errno;
        log_err("qmgr", "%s: cannot write to segment %010lu.seg: %s", id, g->no, strerror(e));
        g->failed = g->closed = 1;
        s->cur = NULL;
        errno = e;
        return -1;
    }
    g->end = at + need;
    *gp = g;
    *offp = at + SEG_HDR;
    return 0;
}

/* Make what was written to g durable: one fdatasync. Flushes run one at a time, and a
 * segment whose flush failed once fails every later one: Linux reports a write-back
 * error to one fsync only, and may drop the pages it could not write. */
int seg_sync(struct spool *s, struct seg *g)
{
    pthread_mutex_lock(&s->sync_mu);
    int r = fdatasync(g->fd);
    int e = errno;
    pthread_mutex_lock(&s->mu);
    if (r != 0) {
        log_err("qmgr", "fdatasync %s/%010lu.seg: %s", s->queue, g->no, strerror(e));
        g->failed = g->closed = 1;
        if (s->cur == g) s->cur = NULL;
    } else if (g->failed) {
        r = -1;
        e = EIO;
    }
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&s->sync_mu);
    errno = e;
    return r;
}

/* Copy the queued messages of g, the oldest segment, to the current one (content
 * and latest envelope records, flushed), so that g can go: otherwise one message
 * deferred for days would keep every segment after it. An update or removal of a
 * message meanwhile comes after its copy in the file and wins, in the index too.
 * reclaim_mu held (nothing deletes g meanwhile). 0 done, -1 failed (g stays). */
static int relocate(struct spool *s, struct seg *g)
{
    struct moved {
        char id[QUEUE_ID_LEN + 1];
        struct seg *cseg, *eseg, *old_eseg;
        off_t coff, eoff, old_eoff;
        size_t clen, elen;
    } *mv = NULL;
    size_t n = 0, cap = 0;
    struct seg *touched[16];
    int nt = 0, bad = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->tabsize && !bad; i++)
        for (struct ent *e = s->tab[i]; e && !bad; e = e->next) {
            if (e->cseg != g && e->eseg != g) continue;
            if (n == cap) mv = xrealloc(mv, (cap = cap ? cap * 2 : 16) * sizeof *mv);
            struct moved *m = &mv[n];
            str_copy(m->id, e->id, sizeof m->id);
            m->old_eseg = e->eseg;
            m->old_eoff = e->eoff;
            m->clen = e->clen;
            m->elen = e->elen;
            if (seg_append(s, SEG_CONTENT, e->id, NULL, e->clen, e->cseg->fd, e->coff, &m->cseg,
                           &m->coff) != 0 ||
                seg_append(s, SEG_ENV, e->id, NULL, e->elen, e->eseg->fd, e->eoff, &m->eseg,
                           &m->eoff) != 0) {
                bad = 1;
                break;
            }
            m->cseg->pins++;
            m->eseg->pins++;
            n++;
            struct seg *gs[2] = {m->cseg, m->eseg};
            for (int k = 0; k < 2; k++) {
                int seen = 0;
                for (int t = 0; t < nt; t++)
                    seen |= touched[t] == gs[k];
                if (seen) continue;
                if (nt == (int)(sizeof touched / sizeof touched[0]))
                    bad = 1;
                else
                    touched[nt++] = gs[k];
            }
        }
    pthread_mutex_unlock(&s->mu);
    for (int t = 0; t < nt && !bad; t++)
        if (seg_sync(s, touched[t]) != 0) bad = 1;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < n; i++) {
        struct moved *m = &mv[i];
        struct ent *e = ent_find(s, m->id);
        if (!bad && e) {
            ent_set_content(e, m->cseg, m->coff, m->clen);
            if (e->eseg == m->old_eseg && e->eoff == m->old_eoff)
                ent_set_env(e, m->eseg, m->eoff, m->elen);
        }
        m->cseg->pins--;
        m->eseg->pins--;
    }
    pthread_mutex_unlock(&s->mu);
    if (!bad)
        log_info("qmgr", "%s/%010lu.seg: %zu queued message(s) copied forward to free it", s->queue,
                 g->no, n);
    free(mv);
    return bad ? -1 : 0;
}

/* What reclaim() would do with the oldest segment now (s->mu held): 0 nothing, 1
 * remove it, 2 copy its messages forward first. */
static int reclaim_due(struct spool *s)
{
    struct seg *g = s->segs;
    if (!g || g == s->cur || g->pins) return 0;
    if (!g->live) return 1;
    size_t nseg = 0;
    long long total = 0, live = 0;
    for (struct seg *x = s->segs; x; x = x->next) {
        nseg++;
        total += x->end;
        live += (long long)x->live_bytes;
    }
    return s->prealloc && nseg >= 3 && total > 2 * live + 2 * (long long)s->seg_size ? 2 : 0;
}

/* Remove the oldest segments while nothing lives in them, in order and each removal
 * made durable before the next: a later segment may hold the removal records of an
 * earlier one's messages, so it must never go first. When the segments hold more
 * than twice what is queued (and two segments more), the oldest one's messages are
 * copied forward first (relocate). Writer only, no lock held. */
static void reclaim(struct spool *s)
{
    if (!s->writer || pthread_mutex_trylock(&s->reclaim_mu) != 0) return;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int due = reclaim_due(s);
        struct seg *g = s->segs;
        if (due != 1) {
            pthread_mutex_unlock(&s->mu);
            if (due == 2 && relocate(s, g) == 0) continue;
            break;
        }
        s->segs = g->next;
        pthread_mutex_unlock(&s->mu);
        char *p = seg_path(s, g->no);
        if (s->reclaim_delay) { /* tests: a kill -9 lands in the middle of it */
            log_info("qmgr", "reclaiming %s (KURIER_TEST_DELAY: %d ms)", p, s->reclaim_delay);
            usleep((useconds_t)s->reclaim_delay * 1000);
        }
        if (unlink(p) != 0)
            log_err("qmgr", "cannot remove %s: %s", p, strerror(errno));
        else
            log_info("qmgr", "%s reclaimed: no queued message left in it", p);
        free(p);
        close(g->fd);
        free(g);
        if (fsync_dir(s->queue) != 0) log_err("qmgr", "fsync %s: %s", s->queue, strerror(errno));
    }
    pthread_mutex_unlock(&s->reclaim_mu);
}

/* --------------------------------------------------- tending, off the commit path
 *
 * Removing a dead segment (unlink, flush of queue/), copying an old one's messages
 * forward and making the next one cost flushes of their own: none of that runs in a
 * batch, whose 250s would wait for it. After a batch the loop thread starts one job
 * for them when one is due (and none is running); removals and envelope updates,
 * made on workers, reclaim as they go. */

static void tend_run(void *arg)
{
    struct spool *s = arg;
    reclaim(s);
    spare_make(s);
}

static void tend_done(void *arg)
{
    struct spool *s = arg;
    s->tend_job = NULL;
}

/* Loop thread, after a batch that found tending due (the batch's worker asked, under
 * s->mu, which the loop thread never waits for: a batch holds it while it writes). */
static void tend_want(struct spool *s, int due)
{
    if (due && s->prealloc && !s->tend_job) s->tend_job = work_submit(tend_run, tend_done, s);
}

/* ---------------------------------------------------------- the spool */

static int make_dir(const char *path, mode_t mode, char *err, size_t errsize)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
    if (mkdir_p(path, mode) != 0 || chmod(path, mode) != 0) {
        snprintf(err, errsize, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int test_delay(const char *key)
{
    const char *d = getenv("KURIER_TEST_DELAY");
    const char *p = d ? strstr(d, key) : NULL;
    return p ? atoi(p + strlen(key)) : 0;
}

static struct spool *spool_alloc(const char *dir)
{
    struct spool *s = xcalloc(1, sizeof *s);
    s->dir = xstrdup(dir);
    s->queue = xasprintf("%s/queue", dir);
    s->maildrop = xasprintf("%s/maildrop", dir);
    s->pending_tail = &s->pending;
    s->lockfd = -1;
    s->seg_size = SEG_SIZE;
    const char *sz = getenv("KURIER_TEST_SEGMENT_SIZE"); /* tests only */
    if (sz && atol(sz) >= 4096) s->seg_size = atol(sz);
    s->reclaim_delay = test_delay("reclaim=");
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->sync_mu, NULL);
    pthread_mutex_init(&s->reclaim_mu, NULL);
    pthread_cond_init(&s->spare_cv, NULL);
    return s;
}

/* Take queue/writer.lock: one writer at a time (the daemon, or the CLI while no
 * daemon runs). 0, -1 with err set. */
static int take_lock(struct spool *s, char *err, size_t errsize)
{
    char *p = xasprintf("%s/writer.lock", s->queue);
    int fd = open(p, O_RDONLY | O_CREAT | O_CLOEXEC, 0644); /* empty; any user may lock */
    if (fd < 0) {
        snprintf(err, errsize, "cannot open %s: %s", p, strerror(errno));
        free(p);
        return -1;
    }
    (void)own_file(s, fd);
    /* the daemon waits a little for a CLI command that holds it for a moment */
    int r, tries = s->prealloc ? 50 : 1;
    while ((r = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EWOULDBLOCK && --tries > 0)
        usleep(100 * 1000);
    if (r != 0) {
        if (errno == EWOULDBLOCK)
            snprintf(err, errsize,
                     "%s is locked: another kurierd (or kurier queue) is writing "
                     "to the queue",
                     p);
        else
            snprintf(err, errsize, "cannot lock %s: %s", p, strerror(errno));
        close(fd);
        free(p);
        return -1;
    }
    free(p);
    s->lockfd = fd;
    return 0;
}

struct spool *spool_open(const char *dir, char *err, size_t errsize)
{
    struct spool *s = spool_alloc(dir);
    s->writer = s->prealloc = 1;
    /* the spool itself only needs to be traversable: sendmail(1) run by any user
     * reaches maildrop/ through it */
    if (make_dir(dir, 0711, err, errsize) || make_dir(s->queue, 0700, err, errsize) ||
        make_dir(s->maildrop, 01733, err, errsize) || take_lock(s, err, errsize)) {
        spool_free(s);
        return NULL;
    }
    /* the old layout received into incoming/: what is left there was never acknowledged */
    char *inc = xasprintf("%s/incoming", dir);
    DIR *d = opendir(inc);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
            if (unlinkat(dirfd(d), de->d_name, 0) == 0)
                log_info("cleanup", "removed unacknowledged %s/%s", inc, de->d_name);
        }
        closedir(d);
        rmdir(inc);
    }
    free(inc);
    if (index_load(s) != 0) {
        snprintf(err, errsize, "cannot read the segments in %s: %s", s->queue, strerror(errno));
        spool_free(s);
        return NULL;
    }
    reclaim(s);
    return s;
}

struct spool *spool_attach(const char *dir, char *err, size_t errsize)
{
    struct stat st;
    char *q = xasprintf("%s/queue", dir);
    int r = stat(q, &st);
    int e = errno;
    free(q);
    if (r != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errsize, "cannot open spool %s/queue: %s", dir,
                 r != 0 ? strerror(e) : "not a directory");
        return NULL;
    }
    return spool_alloc(dir);
}

int spool_lock(struct spool *s, char *err, size_t errsize)
{
    if (s->writer) return 0;
    if (take_lock(s, err, errsize) != 0) return -1;
    pthread_mutex_lock(&s->mu);
    index_clear(s); /* what was read before the lock may be old */
    int r = index_load(s);
    int e = errno;
    pthread_mutex_unlock(&s->mu);
    if (r != 0) {
        snprintf(err, errsize, "cannot read the segments in %s: %s", s->queue, strerror(e));
        close(s->lockfd);
        s->lockfd = -1;
        return -1;
    }
    s->writer = 1;
    return 0;
}

static void commit_discard(struct commit *c);

void spool_free(struct spool *s)
{
    if (!s) return;
    if (s->inflight) {
        work_cancel(s->inflight->job);
        struct commit *c = s->inflight->list;
        while (c) {
            struct commit *n = c->next;
            commit_discard(c);
            c = n;
        }
        free(s->inflight);
    }
    struct commit *c = s->pending;
    while (c) {
        struct commit *n = c->next;
        commit_discard(c);
        c = n;
    }
    work_cancel(s->tend_job); /* waits for a reclamation or a spare being made */
    if (s->spare) {           /* its file stays: an empty segment */
        close(s->spare->fd);
        free(s->spare);
    }
    index_clear(s);
    if (s->lockfd >= 0) close(s->lockfd);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->sync_mu);
    pthread_mutex_destroy(&s->reclaim_mu);
    pthread_cond_destroy(&s->spare_cv);
    free(s->dir);
    free(s->queue);
    free(s->maildrop);
    free(s);
}

const char *spool_dir(const struct spool *s)
{
    return s->dir;
}

/* ------------------------------------------------------ receiving a message */

struct spool_msg *spool_msg_new(struct spool *s)
{
    struct spool_msg *m = xcalloc(1, sizeof *m);
    m->s = s;
    m->tmpfd = -1;
    buf_init(&m->mem, 0);
    spool_new_id(m->id);
    return m;
}

const char *spool_msg_id(const struct spool_msg *m)
{
    return m->id;
}

static void msg_write_failed(struct spool_msg *m, const char *what)
{
    log_err("smtpd", "%s: cannot %s the message's content: %s", m->id, what, strerror(errno));
    m->failed = 1;
}

/* The writes of the content, the signer's too (struct dkim_sign_out): put appends,
 * put_at writes over what was written. 0, -1 (logged; the message failed). */
static int msg_put_at(void *arg, off_t off, const void *p, size_t len)
{
    struct spool_msg *m = arg;
    if (m->failed) return -1;
    if (off < 0 || (size_t)off > m->size || len > m->size - (size_t)off) return -1;
    if (m->tmpfd < 0) {
        memcpy(m->mem.data + off, p, len);
        return 0;
    }
    if (pwrite_all(m->tmpfd, p, len, off) != 0) {
        msg_write_failed(m, "write");
        return -1;
    }
    return 0;
}

/* A message outgrew MEM_MAX: move its content to an unnamed file on the spool's file
 * system (no name, so nothing to clean up after a crash). */
static int msg_spill(struct spool_msg *m)
{
    int fd = -1;
#ifdef O_TMPFILE
    fd = open(m->s->queue, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
#endif
    if (fd < 0) {
        char *p = xasprintf("%s/.tmp-%s-XXXXXX", m->s->queue, m->id);
        fd = mkostemp(p, O_CLOEXEC);
        if (fd >= 0) unlink(p);
        free(p);
    }
    if (fd < 0 || write_all(fd, m->mem.data ? m->mem.data : "", m->mem.len) != 0) {
        msg_write_failed(m, "store");
        if (fd >= 0) close(fd);
        return -1;
    }
    buf_release(&m->mem);
    m->tmpfd = fd;
    return 0;
}

static int msg_put(void *arg, const void *p, size_t len)
{
    struct spool_msg *m = arg;
    if (m->failed) return -1;
    msgid_scan(&m->mid, p, len);
    if (m->tmpfd < 0 && m->size + len > MEM_MAX && msg_spill(m) != 0) return -1;
    if (m->tmpfd < 0) {
        buf_append(&m->mem, p, len);
    } else if (write_all(m->tmpfd, p, len) != 0) {
        msg_write_failed(m, "store");
        return -1;
    }
    m->size += len;
    return 0;
}

static off_t msg_offset(const void *arg)
{
    const struct spool_msg *m = arg;
    return (off_t)m->size;
}

void spool_msg_sign(struct spool_msg *m)
{
    if (m->dkim || m->size != 0) return;
    struct dkim_sign_out out = {msg_put, msg_put_at, msg_offset, m};
    m->dkim = dkim_sign_new(m->id, &out);
}

int spool_msg_write(struct spool_msg *m, const void *p, size_t len)
{
    if (m->dkim && !m->failed) {
        if (dkim_sign_write(m->dkim, p, len) == 0) return 0;
        m->failed = 1;
        return -1;
    }
    return msg_put(m, p, len);
}

int spool_msg_rewrite(struct spool_msg *m, size_t offset, const void *p, size_t len)
{
    /* a signer's room shifts the content: offsets of the caller's would be off */
    if (m->dkim || offset > m->size || len > m->size - offset) return -1;
    return msg_put_at(m, (off_t)offset, p, len);
}

static void msg_free(struct spool_msg *m)
{
    dkim_sign_free(m->dkim);
    if (m->tmpfd >= 0) close(m->tmpfd);
    buf_release(&m->mem);
    free(m);
}

void spool_msg_abort(struct spool_msg *m)
{
    if (m) msg_free(m); /* nothing of it is on disk yet */
}

/* Shutdown: forget a commit without calling done. Records already written stay: the
 * message is kept when its envelope record made it (at worst delivered although the
 * client saw no 250). */
static void commit_discard(struct commit *c)
{
    msg_free(c->m);
    free(c->envtext);
    free(c->msgid);
    free(c);
}

/* Worker: append the content and envelope records of every message of the batch,
 * flush each segment written to once (one fdatasync, usually one segment), then add
 * the messages to the index. A failed write or flush fails the whole batch (451 for
 * each of its messages; what was acknowledged before is untouched). */
static void batch_run(void *arg)
{
    struct batch *b = arg;
    struct spool *s = b->s;
    int n = 0, bad = 0;
    struct seg *touched[8];
    int ntouched = 0;
    double t0 = time_mono();
    pthread_mutex_lock(&s->mu);
    for (struct commit *c = b->list; c; c = c->next) {
        n++;
        c->ok = 0;
        if (c->m->failed) continue;
        struct spool_msg *m = c->m;
        if (bad || seg_append(s, SEG_CONTENT, m->id,
                              m->tmpfd < 0 ? (m->mem.data ? m->mem.data : "") : NULL, m->size,
                              m->tmpfd, 0, &c->cseg, &c->coff) != 0) {
            bad = 1;
            continue;
        }
        c->cseg->pins++;
        c->elen = strlen(c->envtext);
        if (seg_append(s, SEG_ENV, m->id, c->envtext, c->elen, -1, 0, &c->eseg, &c->eoff) != 0) {
            bad = 1;
            continue;
        }
        c->eseg->pins++;
        struct seg *gs[2] = {c->cseg, c->eseg};
        for (int k = 0; k < 2; k++) {
            int seen = 0;
            for (int t = 0; t < ntouched; t++)
                seen |= touched[t] == gs[k];
            if (seen) continue;
            if (ntouched == (int)(sizeof touched / sizeof touched[0])) { /* a batch of giants */
                bad = 1;
                break;
            }
            touched[ntouched++] = gs[k];
        }
    }
    pthread_mutex_unlock(&s->mu);
    log_debug("queue", "group commit of %d message(s) in %d segment(s)", n, ntouched);
    for (int t = 0; t < ntouched && !bad; t++)
        if (seg_sync(s, touched[t]) != 0) bad = 1;
    pthread_mutex_lock(&s->mu);
    for (struct commit *c = b->list; c; c = c->next) {
        if (!bad && c->eseg) {
            struct ent *e = ent_find(s, c->m->id);
            if (!e) e = ent_add(s, c->m->id);
            ent_set_content(e, c->cseg, c->coff, c->m->size);
            ent_set_env(e, c->eseg, c->eoff, c->elen);
            c->ok = 1;
        } else if (c->eseg) { /* written, maybe durable: say it is gone (best effort) */
            struct seg *g;
            off_t o;
            (void)seg_append(s, SEG_REMOVE, c->m->id, "", 0, -1, 0, &g, &o);
        }
        if (c->cseg) c->cseg->pins--;
        if (c->eseg) c->eseg->pins--;
    }
    b->tend = reclaim_due(s) || spare_due(s);
    pthread_mutex_unlock(&s->mu);
    metrics_observe(MET_SPOOL_BATCH, n);
    metrics_observe(MET_SPOOL_FLUSH, time_mono() - t0);
}

static void batch_start(struct spool *s);

/* Loop thread: report the batch, then start the next one. */
static void batch_done(void *arg)
{
    struct batch *b = arg;
    struct spool *s = b->s;
    s->inflight = NULL;
    struct commit *c = b->list;
    int tend = b->tend;
    free(b);
    /* start the next batch before the callbacks so their commits join a later one */
    batch_start(s);
    tend_want(s, tend);
    while (c) {
        struct commit *n = c->next;
        char id[QUEUE_ID_LEN + 1];
        str_copy(id, c->m->id, sizeof id);
        msg_free(c->m);
        free(c->envtext);
        c->done(c->arg, c->ok);
        /* as Postfix's cleanup: grep finds a message by its Message-ID */
        if (c->ok) log_info("cleanup", "%s: message-id=%s", id, c->msgid);
        free(c->msgid);
        free(c);
        c = n;
    }
}

static void batch_start(struct spool *s)
{
    if (s->inflight || !s->pending) return;
    struct batch *b = xcalloc(1, sizeof *b);
    b->s = s;
    b->list = s->pending;
    s->pending = NULL;
    s->pending_tail = &s->pending;
    s->inflight = b;
    b->job = work_submit(batch_run, batch_done, b);
}

void spool_msg_commit(struct spool_msg *m, struct spool_env *env, void (*done)(void *arg, int ok),
                      void *arg)
{
    if (m->dkim) { /* the DKIM-Signature: fields go in before the batch syncs */
        if (dkim_sign_finish(m->dkim) != 0) m->failed = 1;
        dkim_sign_free(m->dkim);
        m->dkim = NULL;
    }
    str_copy(env->id, m->id, sizeof env->id);
    env->size = m->size;
    struct commit *c = xcalloc(1, sizeof *c);
    c->m = m;
    c->envtext = spool_env_format(env);
    c->msgid = msgid_scan_take(&m->mid);
    c->done = done;
    c->arg = arg;
    if (!m->s->writer) c->m->failed = 1; /* cannot happen: the daemon opens, not attaches */
    *m->s->pending_tail = c;
    m->s->pending_tail = &c->next;
    batch_start(m->s);
}

/* ------------------------------------------------------ the queue */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void call_sorted(char **ids, size_t n, void (*cb)(void *arg, const char *id), void *arg)
{
    if (n) qsort(ids, n, sizeof *ids, cmp_str);
    for (size_t i = 0; i < n; i++) {
        cb(arg, ids[i]);
        free(ids[i]);
    }
    free(ids);
}

int spool_scan(struct spool *s, void (*cb)(void *arg, const char *id), void *arg)
{
    if (need_index(s) != 0) return -1;
    pthread_mutex_lock(&s->mu);
    char **ids = xcalloc(s->nent ? s->nent : 1, sizeof *ids);
    size_t n = 0;
    for (size_t i = 0; i < s->tabsize; i++)
        for (struct ent *e = s->tab[i]; e; e = e->next)
            ids[n++] = xstrdup(e->id);
    pthread_mutex_unlock(&s->mu);
    call_sorted(ids, n, cb, arg);
    return 0;
}

/* The envelope text of id (s->mu held): a new string, or NULL (errno ENOENT: no such
 * message; else a read error). */
char *env_text(struct spool *s, const char *id, size_t *len)
{
    struct ent *e = ent_find(s, id);
    if (!e) {
        errno = ENOENT;
        return NULL;
    }
    char *t = xmalloc(e->elen + 1);
    if (pread_all(e->eseg->fd, t, e->elen, e->eoff) != 0) {
        free(t);
        return NULL;
    }
    t[e->elen] = '\0';
    *len = e->elen;
    return t;
}

/* Parse the envelope text of id. NULL with err set and errno EBADMSG when it does not
 * read as id's envelope. where names it for people. */
struct spool_env *env_parse(const char *text, size_t len, const char *id, const char *where,
                            char *err, size_t errsize)
{
    struct spool_env *e = xcalloc(1, sizeof *e);
    int line = 0;
    if (spool_env_parse(text, len, e, &line) != 0) {
        snprintf(err, errsize, "%s:%d: malformed envelope line", where, line);
        free(e);
        e = NULL;
    } else if (strcmp(e->id, id) != 0) {
        snprintf(err, errsize, "%s: envelope names another ID %s", where, e->id);
        spool_env_free(e);
        e = NULL;
    } else if (e->nrcpts == 0) { /* every writer puts one at least: cut short */
        snprintf(err, errsize, "%s: envelope has no recipients (truncated?)", where);
        spool_env_free(e);
        e = NULL;
    }
    if (!e) errno = EBADMSG;
    return e;
}

struct spool_env *spool_load(struct spool *s, const char *id, char *err, size_t errsize)
{
    if (!spool_id_valid(id)) {
        snprintf(err, errsize, "no such message %s", id);
        errno = ENOENT;
        return NULL;
    }
    if (need_index(s) != 0) {
        snprintf(err, errsize, "cannot read the queue in %s: %s", s->queue, strerror(errno));
        return NULL;
    }
    size_t len = 0;
    pthread_mutex_lock(&s->mu);
    char *text = env_text(s, id, &len);
    int en = errno;
    pthread_mutex_unlock(&s->mu);
    if (!text) {
        if (en == ENOENT)
            snprintf(err, errsize, "no such message %s", id);
        else
            snprintf(err, errsize, "cannot read the envelope of %s: %s", id, strerror(en));
        errno = en;
        return NULL;
    }
    char where[64];
    snprintf(where, sizeof where, "envelope of %s", id);
    struct spool_env *e = env_parse(text, len, id, where, err, errsize);
    en = errno;
    free(text);
    errno = en;
    return e;
}

/* Append an envelope record for an indexed message and flush it; the index points
 * to it once durable. Blocking. 0, -1 (errno; ENOENT: no such message). */
static int env_append(struct spool *s, const char *id, const char *text, size_t len)
{
    if (!s->writer) {
        errno = EROFS;
        return -1;
    }
    struct seg *g;
    off_t off;
    pthread_mutex_lock(&s->mu);
    if (!ent_find(s, id)) { /* removed meanwhile: do not resurrect it */
        pthread_mutex_unlock(&s->mu);
        errno = ENOENT;
        return -1;
    }
    int r = seg_append(s, SEG_ENV, id, text, len, -1, 0, &g, &off);
    if (r == 0) g->pins++;
    pthread_mutex_unlock(&s->mu);
    if (r != 0) return -1;
    r = seg_sync(s, g);
    int e = errno;
    pthread_mutex_lock(&s->mu);
    struct ent *en = ent_find(s, id);
    if (r == 0 && en) ent_set_env(en, g, off, len);
    g->pins--;
    pthread_mutex_unlock(&s->mu);
    reclaim(s);
    errno = e;
    return r;
}

int spool_update(struct spool *s, const struct spool_env *env)
{
    if (!spool_id_valid(env->id)) return -1;
    if (need_index(s) != 0) return -1;
    char *text = spool_env_format(env);
    int r = env_append(s, env->id, text, strlen(text));
    if (r != 0 && errno != ENOENT)
        log_err("qmgr", "%s: cannot write the envelope: %s", env->id, strerror(errno));
    free(text);
    return r;
}

int spool_set_held(struct spool *s, struct spool_env *env, int held)
{
    held = held != 0;
    if (env->held == held) return 1;
    env->held = held;
    if (!held) /* released: try it now, not when the last deferral said */
        for (size_t i = 0; i < env->nrcpts; i++)
            env->rcpts[i].next_try = 0;
    return spool_update(s, env);
}

int spool_remove(struct spool *s, const char *id)
{
    if (!spool_id_valid(id) || need_index(s) != 0) {
        errno = ENOENT;
        return -1;
    }
    if (!s->writer) {
        errno = EROFS;
        return -1;
    }
    pthread_mutex_lock(&s->mu);
    struct ent *e = ent_find(s, id);
    int r = -1;
    if (!e) {
        errno = ENOENT;
    } else {
        struct seg *g;
        off_t off;
        /* Not flushed, as Postfix does not fsync the folder: if a crash loses the
         * record, the message is simply tried again (delivered twice at most, DESIGN.md). */
        r = seg_append(s, SEG_REMOVE, id, "", 0, -1, 0, &g, &off);
        if (r == 0) ent_drop(s, e);
    }
    int en = errno;
    pthread_mutex_unlock(&s->mu);
    if (r == 0) reclaim(s);
    errno = en;
    return r;
}

int spool_open_content(struct spool *s, const char *id, struct spool_content *c)
{
    c->fd = -1;
    c->off = c->len = 0;
    if (!spool_id_valid(id)) {
        errno = ENOENT;
        return -1;
    }
    if (need_index(s) != 0) return -1;
    pthread_mutex_lock(&s->mu);
    struct ent *e = ent_find(s, id);
    int fd = -1;
    if (!e) {
        errno = ENOENT;
    } else if ((fd = fcntl(e->cseg->fd, F_DUPFD_CLOEXEC, 0)) >= 0) {
        c->off = e->coff;
        c->len = (long long)e->clen;
    }
    int en = errno;
    pthread_mutex_unlock(&s->mu);
    c->fd = fd;
    errno = en;
    return fd >= 0 ? 0 : -1;
}
