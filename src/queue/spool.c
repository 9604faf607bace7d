/* spool.c: the on-disk queue (layout in queue.h). Only writer of spool/; callers
 * get IDs, never paths. Owns queue IDs and group commit; the envelope text format is
 * envelope.c's, what happens to queued messages the scheduler's (sched.c). */
#include "core/compat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "core/core.h"
#include "core/metrics.h"
#include "queue/dkim_sign.h"
#include "queue/msgid.h"
#include "queue/queue.h"

struct spool {
    char *dir;
    char *incoming, *queue, *maildrop;
    /* group commit, touched on the loop thread only */
    struct commit *pending, **pending_tail;
    struct batch *inflight;
    int use_syncfs; /* batch_sync() */
};

struct spool_msg {
    struct spool *s;
    char id[QUEUE_ID_LEN + 1];
    int fd;
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
    struct commit *next;
};

struct batch {
    struct spool *s;
    struct commit *list;
    struct work_job *job;
};

/* ------------------------------------------------------------------ IDs */

/* Crockford's base32: digits and uppercase without I, L, O, U. Sorted by ASCII. */
static const char id_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t id_last_us;
static unsigned id_counter;

/* 70 bits: 52 bits of microseconds since the epoch (good until 2112), 10 bits of a
 * per-process counter, 8 bits of the pid so the daemon and sendmail never collide. */
void spool_new_id(char id[QUEUE_ID_LEN + 1])
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    pthread_mutex_lock(&id_lock);
    if (us <= id_last_us) {
        us = id_last_us;
        if (++id_counter >= 1024) { /* counter exhausted: borrow the next microsecond */
            us++;
            id_counter = 0;
        }
    } else {
        id_counter = 0;
    }
    id_last_us = us;
    unsigned ctr = id_counter;
    pthread_mutex_unlock(&id_lock);

    uint64_t hi = us & ((UINT64_C(1) << 52) - 1);                     /* top 52 bits */
    uint64_t lo = ((uint64_t)ctr << 8) | ((uint64_t)getpid() & 0xff); /* low 18 bits */
    /* 70 bits = hi(52) . lo(18); emit 14 groups of 5 bits, most significant first */
    for (int i = QUEUE_ID_LEN - 1; i >= 0; i--) {
        id[i] = id_alphabet[lo & 31];
        lo = (lo >> 5) | ((hi & 31) << 13);
        hi >>= 5;
    }
    id[QUEUE_ID_LEN] = '\0';
}

int spool_id_valid(const char *id)
{
    if (!id || strlen(id) != QUEUE_ID_LEN) return 0;
    for (int i = 0; i < QUEUE_ID_LEN; i++)
        if (!strchr(id_alphabet, id[i]) || id[i] == '\0') return 0;
    return 1;
}

/* ---------------------------------------------------------- the spool */

static char *path_of(const char *dir, const char *id, const char *ext)
{
    return xasprintf("%s/%s%s", dir, id, ext);
}

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

static int syncfs_usable(void);

static struct spool *spool_alloc(const char *dir)
{
    struct spool *s = xcalloc(1, sizeof *s);
    s->dir = xstrdup(dir);
    s->incoming = xasprintf("%s/incoming", dir);
    s->queue = xasprintf("%s/queue", dir);
    s->maildrop = xasprintf("%s/maildrop", dir);
    s->pending_tail = &s->pending;
    s->use_syncfs = syncfs_usable();
    return s;
}

struct spool *spool_open(const char *dir, char *err, size_t errsize)
{
    struct spool *s = spool_alloc(dir);
    /* the spool itself only needs to be traversable: sendmail(1) run by any user
     * reaches maildrop/ through it */
    if (make_dir(dir, 0711, err, errsize) || make_dir(s->incoming, 0700, err, errsize) ||
        make_dir(s->queue, 0700, err, errsize) || make_dir(s->maildrop, 01733, err, errsize)) {
        spool_free(s);
        return NULL;
    }
    DIR *d = opendir(s->incoming);
    if (!d) {
        snprintf(err, errsize, "cannot open %s: %s", s->incoming, strerror(errno));
        spool_free(s);
        return NULL;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            log_info("cleanup", "removed unacknowledged %s/%s", s->incoming, de->d_name);
    }
    closedir(d);
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
    free(s->dir);
    free(s->incoming);
    free(s->queue);
    free(s->maildrop);
    free(s);
}

const char *spool_dir(const struct spool *s)
{
    return s->dir;
}

struct spool_msg *spool_msg_new(struct spool *s)
{
    struct spool_msg *m = xcalloc(1, sizeof *m);
    m->s = s;
    for (int tries = 0; tries < 5; tries++) {
        spool_new_id(m->id);
        char *p = path_of(s->incoming, m->id, ".msg");
        m->fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        int e = errno;
        free(p);
        if (m->fd >= 0) return m;
        if (e != EEXIST) {
            log_err("smtpd", "cannot create %s/%s.msg: %s", s->incoming, m->id, strerror(e));
            break;
        }
    }
    free(m);
    return NULL;
}

const char *spool_msg_id(const struct spool_msg *m)
{
    return m->id;
}

void spool_msg_sign(struct spool_msg *m)
{
    if (!m->dkim && m->size == 0) m->dkim = dkim_sign_new(m->id);
}

int spool_msg_write(struct spool_msg *m, const void *p, size_t len)
{
    if (m->dkim && !m->failed) {
        if (dkim_sign_write(m->dkim, m, p, len) == 0) return 0;
        m->failed = 1;
        return -1;
    }
    return spool_msg_put(m, p, len);
}

off_t spool_msg_offset(const struct spool_msg *m)
{
    return (off_t)m->size;
}

int spool_msg_put_at(struct spool_msg *m, off_t off, const void *p, size_t len)
{
    if (m->failed) return -1;
    const char *s = p;
    while (len > 0) {
        ssize_t n = pwrite(m->fd, s, len, off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            log_err("smtpd", "%s: cannot write %s/%s.msg: %s", m->id, m->s->incoming, m->id,
                    n < 0 ? strerror(errno) : "short write");
            m->failed = 1;
            return -1;
        }
        s += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

int spool_msg_put(struct spool_msg *m, const void *p, size_t len)
{
    if (m->failed) return -1;
    msgid_scan(&m->mid, p, len);
    if (write_all(m->fd, p, len) != 0) {
        log_err("smtpd", "%s: cannot write %s/%s.msg: %s", m->id, m->s->incoming, m->id,
                strerror(errno));
        m->failed = 1;
        return -1;
    }
    m->size += len;
    return 0;
}

static void unlink_id(const char *dir, const char *id, const char *ext)
{
    char *p = path_of(dir, id, ext);
    unlink(p);
    free(p);
}

int spool_msg_rewrite(struct spool_msg *m, size_t offset, const void *p, size_t len)
{
    /* a signer's room shifts the content: offsets of the caller's would be off */
    if (m->dkim || offset > m->size || len > m->size - offset) return -1;
    return spool_msg_put_at(m, (off_t)offset, p, len);
}

void spool_msg_abort(struct spool_msg *m)
{
    if (!m) return;
    dkim_sign_free(m->dkim);
    if (m->fd >= 0) close(m->fd);
    unlink_id(m->s->incoming, m->id, ".msg");
    unlink_id(m->s->incoming, m->id, ".env");
    free(m);
}

/* Remove every trace of a failed commit (worker or loop thread). */
static void commit_cleanup(struct commit *c)
{
    struct spool *s = c->m->s;
    unlink_id(s->incoming, c->m->id, ".msg");
    unlink_id(s->incoming, c->m->id, ".env");
    unlink_id(s->queue, c->m->id, ".env");
    unlink_id(s->queue, c->m->id, ".msg");
}

/* Shutdown: forget a commit without calling done. Its files stay where they are:
 * in incoming/ they are removed at the next spool_open; in queue/ the message is
 * kept (at worst delivered although the client saw no 250). */
static void commit_discard(struct commit *c)
{
    if (c->m->fd >= 0) close(c->m->fd);
    free(c->m);
    free(c->envtext);
    free(c->msgid);
    free(c);
}

/* syncfs(2) reports writeback errors (of any file on the file system) only since
 * Linux 5.8; before that a failed write could go unnoticed. Elsewhere, and on older
 * kernels, the batch fsyncs each file. */
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

/* Make the content and envelope files of the batch durable. One syncfs() of the
 * spool's file system writes them all and flushes the disk cache once, where an
 * fsync() per file costs one cache flush each (2 per message): this is what makes
 * the commit a group commit. The files are in incoming/, on the spool's file system
 * (they are renamed into queue/ next). 0 done, -1 failed (errno set). */
static int batch_sync(struct spool *s, struct commit *list, int *envfd)
{
#ifdef __linux__
    if (s->use_syncfs) {
        int dfd = open(s->incoming, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) return -1;
        int r = syncfs(dfd);
        int e = errno;
        close(dfd);
        errno = e;
        return r;
    }
#endif
    int i = 0;
    for (struct commit *c = list; c; c = c->next, i++) {
        if (c->m->failed || envfd[i] < 0) continue;
        if (fsync(c->m->fd) != 0 || fsync(envfd[i]) != 0) {
            log_err("cleanup", "%s: fsync: %s", c->m->id, strerror(errno));
            c->m->failed = 1;
        }
    }
    return 0;
}

/* Worker: make the whole batch durable: write every envelope, sync content and
 * envelopes (batch_sync), rename both into queue/, fsync queue/ once. */
static void batch_run(void *arg)
{
    struct batch *b = arg;
    struct spool *s = b->s;
    int any = 0, n = 0;
    for (struct commit *c = b->list; c; c = c->next)
        n++;
    log_debug("queue", "group commit of %d message(s)", n);
    double t0 = time_mono();
    int *envfd = xcalloc((size_t)n, sizeof *envfd);
    int i = 0;
    for (struct commit *c = b->list; c; c = c->next, i++) {
        envfd[i] = -1;
        c->ok = 0;
        if (c->m->failed) continue;
        char *p = path_of(s->incoming, c->m->id, ".env");
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        free(p);
        if (fd >= 0 && write_all(fd, c->envtext, strlen(c->envtext)) == 0) {
            envfd[i] = fd;
            continue;
        }
        log_err("cleanup", "%s: write envelope: %s", c->m->id, strerror(errno));
        if (fd >= 0) close(fd);
    }
    if (batch_sync(s, b->list, envfd) != 0) {
        log_err("cleanup", "syncfs %s: %s", s->incoming, strerror(errno));
        for (i = 0; i < n; i++)
            if (envfd[i] >= 0) close(envfd[i]);
        for (i = 0; i < n; i++)
            envfd[i] = -1;
    }
    i = 0;
    for (struct commit *c = b->list; c; c = c->next, i++) {
        if (envfd[i] < 0) continue;
        close(envfd[i]);
        if (c->m->failed) continue;
        const char *id = c->m->id;
        char *from = path_of(s->incoming, id, ".msg"), *to = path_of(s->queue, id, ".msg");
        int bad = rename(from, to) != 0;
        free(from);
        free(to);
        if (!bad) {
            from = path_of(s->incoming, id, ".env");
            to = path_of(s->queue, id, ".env");
            bad = rename(from, to) != 0;
            free(from);
            free(to);
        }
        if (bad) {
            log_err("cleanup", "%s: rename into queue: %s", id, strerror(errno));
            continue;
        }
        c->ok = 1;
        any = 1;
    }
    free(envfd);
    if (any && fsync_dir(s->queue) != 0) {
        log_err("cleanup", "fsync %s: %s", s->queue, strerror(errno));
        for (struct commit *c = b->list; c; c = c->next)
            c->ok = 0;
    }
    /* incoming/ is not fsync'd: a rename that did not reach it leaves a stale file
     * there, which spool_open() cleans at the next start */
    for (struct commit *c = b->list; c; c = c->next)
        if (!c->ok) commit_cleanup(c);
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
    free(b);
    /* start the next batch before the callbacks so their commits join a later one */
    batch_start(s);
    while (c) {
        struct commit *n = c->next;
        char id[QUEUE_ID_LEN + 1];
        str_copy(id, c->m->id, sizeof id);
        close(c->m->fd);
        free(c->m);
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
        if (dkim_sign_finish(m->dkim, m) != 0) m->failed = 1;
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
    *m->s->pending_tail = c;
    m->s->pending_tail = &c->next;
    batch_start(m->s);
}

/* ------------------------------------------------------ the queue */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Call cb for every ID with a DIR/ID.env, sorted. 0 done, -1 cannot read DIR. */
static int scan_dir(const char *dir, void (*cb)(void *arg, const char *id), void *arg);

int spool_scan(struct spool *s, void (*cb)(void *arg, const char *id), void *arg)
{
    return scan_dir(s->queue, cb, arg);
}

static int scan_dir(const char *dir, void (*cb)(void *arg, const char *id), void *arg)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    char **ids = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l != QUEUE_ID_LEN + 4 || strcmp(de->d_name + QUEUE_ID_LEN, ".env") != 0) continue;
        char *id = xstrndup(de->d_name, QUEUE_ID_LEN);
        if (!spool_id_valid(id)) {
            free(id);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            ids = xrealloc(ids, cap * sizeof *ids);
        }
        ids[n++] = id;
    }
    closedir(d);
    if (n) qsort(ids, n, sizeof *ids, cmp_str);
    for (size_t i = 0; i < n; i++) {
        cb(arg, ids[i]);
        free(ids[i]);
    }
    free(ids);
    return 0;
}

/* Load the envelope at path p, which must be id's. NULL with err set, and errno
 * EBADMSG when the file is there but corrupt. */
static struct spool_env *load_path(const char *p, const char *id, char *err, size_t errsize)
{
    size_t len;
    char *text = file_read(p, &len);
    if (!text) {
        int e = errno;
        if (e == ENOENT)
            snprintf(err, errsize, "no such message %s", id);
        else
            snprintf(err, errsize, "cannot read %s: %s", p, strerror(e));
        errno = e;
        return NULL;
    }
    struct spool_env *e = xcalloc(1, sizeof *e);
    int line = 0;
    if (spool_env_parse(text, len, e, &line) != 0) {
        snprintf(err, errsize, "%s:%d: malformed envelope line", p, line);
        free(e);
        e = NULL;
    } else if (strcmp(e->id, id) != 0) {
        snprintf(err, errsize, "%s: envelope names another ID %s", p, e->id);
        spool_env_free(e);
        e = NULL;
    } else if (e->nrcpts == 0) { /* every writer puts one at least: cut short */
        snprintf(err, errsize, "%s: envelope has no recipients (truncated?)", p);
        spool_env_free(e);
        e = NULL;
    }
    free(text);
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
    char *p = path_of(s->queue, id, ".env");
    struct spool_env *e = load_path(p, id, err, errsize);
    int en = errno;
    free(p);
    errno = en;
    return e;
}

static pthread_mutex_t tmp_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned tmp_counter;

int spool_update(struct spool *s, const struct spool_env *env)
{
    if (!spool_id_valid(env->id)) return -1;
    pthread_mutex_lock(&tmp_lock);
    unsigned n = ++tmp_counter;
    pthread_mutex_unlock(&tmp_lock);
    char *tmp = xasprintf("%s/%s.upd%ld.%u", s->incoming, env->id, (long)getpid(), n);
    char *dst = path_of(s->queue, env->id, ".env");
    char *text = spool_env_format(env);
    int r = -1;
    struct stat st;
    if (stat(dst, &st) != 0) { /* removed meanwhile: do not resurrect it */
        goto out;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_err("qmgr", "%s: cannot create %s: %s", env->id, tmp, strerror(errno));
        goto out;
    }
    /* root (the CLI while the daemon is down) keeps the file the daemon's */
    if (geteuid() == 0 && (st.st_uid != 0 || st.st_gid != 0) &&
        fchown(fd, st.st_uid, st.st_gid) != 0) {
        log_err("qmgr", "%s: cannot chown %s: %s", env->id, tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    if (write_all(fd, text, strlen(text)) != 0 || fsync(fd) != 0) {
        log_err("qmgr", "%s: cannot write %s: %s", env->id, tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (rename(tmp, dst) != 0) {
        log_err("qmgr", "%s: cannot rename %s: %s", env->id, tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (fsync_dir(s->queue) != 0) {
        log_err("qmgr", "%s: fsync %s: %s", env->id, s->queue, strerror(errno));
        goto out;
    }
    r = 0;
out:
    free(text);
    free(tmp);
    free(dst);
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
    if (!spool_id_valid(id)) {
        errno = ENOENT;
        return -1;
    }
    char *p = path_of(s->queue, id, ".env");
    int r = unlink(p);
    free(p);
    if (r != 0) return -1;
    unlink_id(s->queue, id, ".msg");
    /* No directory fsync, as Postfix: if a crash undoes the unlink, the message is
     * simply tried again (a recipient delivered twice at most, DESIGN.md). */
    return 0;
}

/* ------------------------------------------------- corrupt messages */

static char *corrupt_dir(const struct spool *s)
{
    return xasprintf("%s/corrupt", s->dir);
}

int spool_quarantine(struct spool *s, const char *id)
{
    if (!spool_id_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    char *cdir = corrupt_dir(s);
    int r = -1;
    if (mkdir(cdir, 0700) != 0 && errno != EEXIST) goto out;
    /* content first, as a commit renames it: queue/ID.env is the last to go */
    static const char *const ext[] = {".msg", ".env"};
    for (int i = 0; i < 2; i++) {
        char *from = path_of(s->queue, id, ext[i]), *to = path_of(cdir, id, ext[i]);
        int bad = rename(from, to) != 0 && (i == 1 || errno != ENOENT);
        free(from);
        free(to);
        if (bad) goto out;
    }
    if (fsync_dir(cdir) != 0 || fsync_dir(s->queue) != 0) goto out;
    r = 0;
out:;
    int e = errno;
    free(cdir);
    errno = e;
    return r;
}

int spool_scan_corrupt(struct spool *s, void (*cb)(void *arg, const char *id), void *arg)
{
    char *cdir = corrupt_dir(s);
    int r = scan_dir(cdir, cb, arg);
    if (r != 0 && errno == ENOENT) r = 0; /* nothing was ever corrupt */
    free(cdir);
    return r;
}

int spool_corrupt_info(struct spool *s, const char *id, int moved, char *why, size_t whysize,
                       size_t *size, time_t *mtime)
{
    if (!spool_id_valid(id)) return -1;
    char *dir = moved ? corrupt_dir(s) : xstrdup(s->queue);
    char *env = path_of(dir, id, ".env"), *msg = path_of(dir, id, ".msg");
    struct stat st;
    int r = -1;
    if (stat(env, &st) == 0) {
        *mtime = st.st_mtime;
        *size = stat(msg, &st) == 0 ? (size_t)st.st_size : 0;
        struct spool_env *e = load_path(env, id, why, whysize);
        if (e) /* an admin repaired it: it still waits in corrupt/ */
            snprintf(why, whysize, "%s: the envelope reads well now", env);
        spool_env_free(e);
        r = 0;
    }
    free(env);
    free(msg);
    free(dir);
    return r;
}

int spool_open_content(struct spool *s, const char *id)
{
    if (!spool_id_valid(id)) return -1;
    char *p = path_of(s->queue, id, ".msg");
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    free(p);
    return fd;
}
