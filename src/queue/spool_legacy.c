/* spool_legacy.c: the spool's per-message files: the import of the old layout
 * (queue/ID.msg + ID.env, before segments) at the start, and corrupt/ (messages
 * quarantined as ID.msg + ID.env for an admin; `kurier queue corrupt`). */
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

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---------------------------------------------- the old layout (before segments) */

struct legacy {
    char id[QUEUE_ID_LEN + 1];
    struct seg *cseg, *eseg;
    off_t coff, eoff;
    size_t clen, elen;
};

static void legacy_unlink(const struct spool *s, const char *id)
{
    static const char *const ext[] = {".env", ".msg"};
    for (int i = 0; i < 2; i++) {
        char *p = xasprintf("%s/%s%s", s->queue, id, ext[i]);
        unlink(p);
        free(p);
    }
}

/* A legacy file that does not read: to corrupt/, as the scheduler would. */
static void legacy_corrupt(const struct spool *s, const char *id, const char *why)
{
    char *cdir = xasprintf("%s/corrupt", s->dir);
    if (mkdir(cdir, 0700) == 0 || errno == EEXIST) {
        static const char *const ext[] = {".msg", ".env"};
        for (int i = 0; i < 2; i++) {
            char *from = xasprintf("%s/%s%s", s->queue, id, ext[i]);
            char *to = xasprintf("%s/%s%s", cdir, id, ext[i]);
            (void)rename(from, to);
            free(from);
            free(to);
        }
        fsync_dir(cdir);
    }
    log_warn("qmgr", "%s: corrupt envelope: %s: moved to %s", id, why, cdir);
    free(cdir);
}

/* Messages of the old layout (queue/ID.msg and queue/ID.env, before segments) are
 * appended to a segment, made durable, then their files removed: an upgrade keeps
 * every queued message and its state. */
static int import_legacy(struct spool *s)
{
    DIR *d = opendir(s->queue);
    if (!d) return -1;
    char **ids = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strlen(de->d_name) != QUEUE_ID_LEN + 4 || strcmp(de->d_name + QUEUE_ID_LEN, ".env"))
            continue;
        char *id = xstrndup(de->d_name, QUEUE_ID_LEN);
        if (!spool_id_valid(id)) {
            free(id);
            continue;
        }
        if (n == cap) ids = xrealloc(ids, (cap = cap ? cap * 2 : 64) * sizeof *ids);
        ids[n++] = id;
    }
    closedir(d);
    if (n == 0) {
        free(ids);
        return 0;
    }
    qsort(ids, n, sizeof *ids, cmp_str);
    unsigned long before = s->last_no; /* the segments made from here on get flushed */
    struct legacy *lg = xcalloc(n, sizeof *lg);
    size_t nl = 0;
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        char *ep = xasprintf("%s/%s.env", s->queue, ids[i]);
        char *mp = xasprintf("%s/%s.msg", s->queue, ids[i]);
        size_t elen = 0;
        char *text = file_read(ep, &elen);
        int fd = open(mp, O_RDONLY | O_CLOEXEC);
        struct stat st;
        char err[600];
        struct spool_env *env = NULL;
        if (text) env = env_parse(text, elen, ids[i], ep, err, sizeof err);
        if (!text || fd < 0 || fstat(fd, &st) != 0) {
            snprintf(err, sizeof err, "cannot read %s: %s", text ? mp : ep, strerror(errno));
        }
        if (!env || fd < 0) {
            legacy_corrupt(s, ids[i], err);
        } else if (ent_find(s, ids[i])) { /* imported before a crash: files left */
            legacy_unlink(s, ids[i]);
        } else {
            struct legacy *l = &lg[nl];
            str_copy(l->id, ids[i], sizeof l->id);
            l->clen = (size_t)st.st_size;
            l->elen = elen;
            if (seg_append(s, SEG_CONTENT, l->id, NULL, l->clen, fd, 0, &l->cseg, &l->coff) != 0 ||
                seg_append(s, SEG_ENV, l->id, text, elen, -1, 0, &l->eseg, &l->eoff) != 0)
                r = -1;
            else
                nl++;
        }
        spool_env_free(env);
        if (fd >= 0) close(fd);
        free(text);
        free(ep);
        free(mp);
    }
    int e = errno;
    /* every segment written to is flushed (a big import fills several) */
    for (struct seg *g = s->segs; g && r == 0; g = g->next)
        if (g->no > before && seg_sync(s, g) != 0) r = -1, e = errno;
    if (r == 0) {
        for (size_t i = 0; i < nl; i++) {
            struct ent *en = ent_add(s, lg[i].id);
            ent_set_content(en, lg[i].cseg, lg[i].coff, lg[i].clen);
            ent_set_env(en, lg[i].eseg, lg[i].eoff, lg[i].elen);
            legacy_unlink(s, lg[i].id);
        }
        if (fsync_dir(s->queue) != 0) log_err("qmgr", "fsync %s: %s", s->queue, strerror(errno));
        if (nl) log_info("qmgr", "imported %zu message(s) of the old queue files", nl);
    }
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    free(lg);
    errno = e;
    return r;
}

int spool_import_legacy(struct spool *s, char *err, size_t errsize)
{
    if (import_legacy(s) == 0) return 0;
    snprintf(err, errsize, "cannot import the old queue files in %s: %s", s->queue,
             strerror(errno));
    return -1;
}

/* ------------------------------------------------- corrupt messages */

static char *corrupt_dir(const struct spool *s)
{
    return xasprintf("%s/corrupt", s->dir);
}

/* Write p[0..len) into dir/name, durably. 0, -1. */
static int write_file(const char *dir, const char *id, const char *ext, const char *p, size_t len)
{
    char *path = xasprintf("%s/%s%s", dir, id, ext);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int r = fd < 0 || write_all(fd, p, len) != 0 || fsync(fd) != 0 ? -1 : 0;
    int e = errno;
    if (fd >= 0) close(fd);
    free(path);
    errno = e;
    return r;
}

int spool_quarantine(struct spool *s, const char *id)
{
    if (!spool_id_valid(id) || need_index(s) != 0) {
        errno = EINVAL;
        return -1;
    }
    /* the message goes to corrupt/ID.env and corrupt/ID.msg, files an admin can read */
    size_t elen = 0;
    char *content = NULL, *text = NULL;
    size_t clen = 0;
    pthread_mutex_lock(&s->mu);
    struct ent *e = ent_find(s, id);
    if (e && (text = env_text(s, id, &elen))) {
        clen = e->clen;
        content = xmalloc(clen + 1);
        if (pread_all(e->cseg->fd, content, clen, e->coff) != 0) {
            free(content);
            content = NULL;
        }
    }
    int en = e ? errno : ENOENT;
    pthread_mutex_unlock(&s->mu);
    char *cdir = corrupt_dir(s);
    int r = -1;
    if (!text || !content) goto out;
    if (mkdir(cdir, 0700) != 0 && errno != EEXIST) goto out;
    if (write_file(cdir, id, ".msg", content, clen) != 0 ||
        write_file(cdir, id, ".env", text, elen) != 0 || fsync_dir(cdir) != 0)
        goto out;
    if (spool_remove(s, id) != 0) goto out;
    r = 0;
out:
    en = r == 0 ? 0 : errno ? errno : en;
    free(text);
    free(content);
    free(cdir);
    errno = en;
    return r;
}

/* Call cb for every ID with a DIR/ID.env, sorted. 0 done, -1 cannot read DIR. */
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
    call_sorted(ids, n, cb, arg);
    return 0;
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
    if (!moved) { /* still queued: its latest envelope record */
        if (need_index(s) != 0) return -1;
        size_t len = 0;
        struct stat st;
        pthread_mutex_lock(&s->mu);
        struct ent *e = ent_find(s, id);
        char *text = e ? env_text(s, id, &len) : NULL;
        if (text) {
            *size = e->clen;
            *mtime = fstat(e->eseg->fd, &st) == 0 ? st.st_mtime : 0;
        }
        pthread_mutex_unlock(&s->mu);
        if (!text) return -1;
        char where[64];
        snprintf(where, sizeof where, "envelope of %s", id);
        struct spool_env *env = env_parse(text, len, id, where, why, whysize);
        if (env) snprintf(why, whysize, "%s: the envelope reads well", where);
        spool_env_free(env);
        free(text);
        return 0;
    }
    char *dir = corrupt_dir(s);
    char *envp = xasprintf("%s/%s.env", dir, id), *msg = xasprintf("%s/%s.msg", dir, id);
    struct stat st;
    int r = -1;
    size_t len = 0;
    char *text = stat(envp, &st) == 0 ? file_read(envp, &len) : NULL;
    if (text) {
        *mtime = st.st_mtime;
        *size = stat(msg, &st) == 0 ? (size_t)st.st_size : 0;
        struct spool_env *e = env_parse(text, len, id, envp, why, whysize);
        if (e) /* an admin repaired it: it still waits in corrupt/ */
            snprintf(why, whysize, "%s: the envelope reads well now", envp);
        spool_env_free(e);
        free(text);
        r = 0;
    }
    free(envp);
    free(msg);
    free(dir);
    return r;
}
