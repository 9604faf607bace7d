/* pickup.c: the daemon's side of the maildrop. Scans spool/maildrop/ on a timer and on
 * request, checks and reads each file on a worker, commits it through the spool as a
 * new message and removes the file; the file format is maildrop.c's, what happens to
 * the new message the scheduler's. Loop thread, except the scan. */
#include "core/compat.h"

#include <errno.h>
#include <event2/event.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "queue/dkim_sign.h"
#include "queue/queue.h"

/* One maildrop file, read by the scan. */
struct pickup_item {
    char *name;            /* maildrop file name */
    struct spool_env *env; /* from the file; handed to the commit */
    char *user;            /* the submitter's user name (from the file's owner) */
    unsigned uid;
    char *content;
    size_t len;
    char *origin_node, *origin_id; /* an imported message (transfer file), else NULL */
    struct pickup_item *next;
};

/* The commits may outlive the scheduler (no cancel in the spool API): pickup_free
 * only marks p freed while commits are outstanding; the last one frees it. */
struct pickup {
    struct spool *spool;
    const struct kconf *conf; /* a reference */
    struct event *ev;         /* the scan timer */
    void (*queued)(void *arg, const char *id);
    void *arg;
    struct pickup_scan *scan; /* running on a worker, or NULL */
    int busy;                 /* a scan or its commits are in progress */
    int pending;              /* commits outstanding */
    int freed;                /* pickup_free ran: only the commits keep p */
    int more;                 /* the last scan left files for the next one: scan again
                                 as soon as its commits are done, not on the timer */
    int progress;             /* a file of the last scan was queued (no rescan at once
                                 while nothing can be queued: the disk is full, say) */
    char *spool_dir;          /* for removing picked-up files after the spool is gone */
};

struct pickup_scan {
    struct pickup *p;
    const struct kconf *conf; /* the configuration when the scan started (a reference) */
    struct work_job *wj;
    struct pickup_item *items; /* result */
    int more;                  /* more than PICKUP_BATCH files were there */
};

struct pickup_commit {
    struct pickup *p;
    struct pickup_item *item;
};

static void pickup_item_free(struct pickup_item *it)
{
    free(it->name);
    spool_env_free(it->env);
    free(it->user);
    free(it->content);
    free(it->origin_node);
    free(it->origin_id);
    free(it);
}

static void pickup_items_free(struct pickup_item *it)
{
    while (it) {
        struct pickup_item *next = it->next;
        pickup_item_free(it);
        it = next;
    }
}

#define PICKUP_BATCH 100 /* files per scan: bounds the memory of one scan */

/* Move a bad file aside as .bad-NAME (not listed again), keep it for a person. */
static void pickup_move_aside(const char *dir, const char *name)
{
    char from[4096], to[4096];
    int a = snprintf(from, sizeof from, "%s/maildrop/%s", dir, name);
    int b = snprintf(to, sizeof to, "%s/maildrop/.bad-%s", dir, name);
    if (a < 0 || (size_t)a >= sizeof from || b < 0 || (size_t)b >= sizeof to) return;
    if (rename(from, to) != 0) unlink(from);
}

static char *read_content(int fd, long long offset, size_t max, size_t *len, char *err,
                          size_t errsize)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < offset) {
        snprintf(err, errsize, "cannot stat: %s", strerror(errno));
        return NULL;
    }
    size_t n = (size_t)(st.st_size - offset);
    if (max && n > max) {
        snprintf(err, errsize, "message too large (%zu bytes, limit %zu)", n, max);
        return NULL;
    }
    char *p = xmalloc(n + 1);
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, p + got, n - got, (off_t)(offset + (long long)got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            snprintf(err, errsize, "cannot read: %s", r < 0 ? strerror(errno) : "short file");
            free(p);
            return NULL;
        }
        got += (size_t)r;
    }
    p[n] = '\0';
    *len = n;
    return p;
}

/* Worker: list the maildrop, parse and read the files. */
static void pickup_scan_run(void *arg)
{
    struct pickup_scan *j = arg;
    const char *dir = spool_dir(j->p->spool);
    char **names = NULL;
    size_t n = 0;
    if (maildrop_list(dir, &names, &n) != 0) {
        log_err("pickup", "cannot read %s/maildrop: %s", dir, strerror(errno));
        return;
    }
    struct pickup_item **tail = &j->items;
    j->more = n > PICKUP_BATCH;
    for (size_t i = 0; i < n && i < PICKUP_BATCH; i++) {
        struct maildrop_file f;
        char err[512] = "";
        if (maildrop_open(dir, names[i], &f, err, sizeof err) != 0) {
            char name[300];
            log_escape(name, sizeof name, names[i], strlen(names[i]));
            log_err("pickup", "bad maildrop file %s (moved aside as .bad-%s): %s", name, name, err);
            pickup_move_aside(dir, names[i]);
            continue;
        }
        size_t len = 0;
        /* an imported message was accepted within the other node's limit: no limit here */
        char *content = read_content(f.fd, f.offset, f.origin_id ? 0 : j->conf->message_size, &len,
                                     err, sizeof err);
        if (!content) {
            char name[300];
            log_escape(name, sizeof name, names[i], strlen(names[i]));
            log_err("pickup", "maildrop file %s from uid %u (moved aside as .bad-%s): %s", name,
                    f.uid, name, err);
            maildrop_close(&f);
            pickup_move_aside(dir, names[i]);
            continue;
        }
        /* any local user can write here, not only sendmail: no bare CR or LF goes on
           (an imported message is taken as it was queued, from root or us only) */
        if (!f.origin_id) {
            size_t clen;
            char *crlf = maildrop_crlf(content, len, &clen);
            free(content);
            content = crlf;
            len = clen;
        }
        struct pickup_item *it = xcalloc(1, sizeof *it);
        it->origin_node = f.origin_node;
        it->origin_id = f.origin_id;
        f.origin_node = f.origin_id = NULL;
        it->name = xstrdup(names[i]);
        it->env = f.env;
        f.env = NULL;
        it->uid = f.uid;
        /* the file's owner is who submitted it; the claimed name is not trusted */
        struct passwd pw, *pwp = NULL;
        char pwbuf[4096];
        if (getpwuid_r(f.uid, &pw, pwbuf, sizeof pwbuf, &pwp) == 0 && pwp)
            it->user = xstrdup(pw.pw_name);
        else
            it->user = xasprintf("%u", f.uid);
        it->content = content;
        it->len = len;
        maildrop_close(&f);
        *tail = it;
        tail = &it->next;
    }
    maildrop_list_free(names, n);
}

void pickup_now(struct pickup *p);

/* A scan and its commits are done: the next scan comes with the timer, or now when
 * this one left files behind (a burst of sendmail runs, an import). */
static void pickup_idle(struct pickup *p)
{
    p->busy = 0;
    if (p->more && p->progress) {
        p->more = 0;
        pickup_now(p);
    }
}

static void pickup_commit_done(void *arg, int ok)
{
    struct pickup_commit *pc = arg;
    struct pickup *p = pc->p;
    struct pickup_item *it = pc->item;
    p->pending--;
    if (ok) {
        p->progress = 1;
        /* Blocking unlink on the loop thread: one small metadata operation. A crash
         * just before it means the message is queued twice, never lost. */
        if (maildrop_remove(p->spool_dir, it->name) != 0)
            log_err("pickup", "%s: cannot remove maildrop file %s", it->env->id, it->name);
        char sender[600];
        const char *snd = it->env->sender ? it->env->sender : "";
        log_escape(sender, sizeof sender, snd, strlen(snd));
        if (it->origin_id) /* the old ID -> the new one, for "kurier log trace" and people */
            log_info("pickup", "%s: uid=%u from=<%s> imported from %s queue ID %s", it->env->id,
                     it->uid, sender, it->origin_node, it->origin_id);
        else
            log_info("pickup", "%s: uid=%u from=<%s>", it->env->id, it->uid, sender);
        if (!p->freed) p->queued(p->arg, it->env->id);
    } else {
        log_err("pickup", "cannot queue maildrop file %s from uid %u; will retry", it->name,
                it->uid);
    }
    pickup_item_free(it);
    free(pc);
    if (!p->freed) {
        if (!p->pending) pickup_idle(p);
    } else if (!p->pending) {
        conf_unref(p->conf);
        free(p->spool_dir);
        free(p);
    }
}

/* Write a sendmail submission into m: our Received: header, then the content; the
 * envelope made a local submission's. 0 done, -1 failed. */
static int pickup_write_local(struct pickup *p, struct pickup_item *it, struct spool_msg *m)
{
    spool_msg_sign(m); /* a local sender's mail is ours */
    char date[64];
    time_rfc5322(date, sizeof date, time(NULL));
    /* as Postfix's pickup: "(Postfix, from userid 1000)" */
    char *hdr = xasprintf("Received: by %s (kurier, from userid %s) id %s; %s\r\n",
                          p->conf->hostname, it->user, spool_msg_id(m), date);
    int r = spool_msg_write(m, hdr, strlen(hdr));
    free(hdr);
    if (r == 0) r = spool_msg_write(m, it->content, it->len);
    free(it->env->proto);
    it->env->proto = xstrdup("local");
    it->env->dsn_trusted = 1; /* a local user: bounces may go back to them */
    return r;
}

/* Loop thread: turn one maildrop file into a queued message. */
static void pickup_queue_item(struct pickup *p, struct pickup_item *it)
{
    struct spool_msg *m = spool_msg_new(p->spool);
    if (!m) { /* logged by the spool; the file stays for the next scan */
        pickup_item_free(it);
        return;
    }
    /* imported: content and envelope as the other node queued them */
    int r = it->origin_id ? spool_msg_write(m, it->content, it->len) : pickup_write_local(p, it, m);
    free(it->content);
    it->content = NULL;
    if (r != 0) {
        spool_msg_abort(m);
        pickup_item_free(it);
        return;
    }
    struct pickup_commit *pc = xcalloc(1, sizeof *pc);
    pc->p = p;
    pc->item = it;
    p->pending++;
    spool_msg_commit(m, it->env, pickup_commit_done, pc);
}

static void pickup_scan_done(void *arg)
{
    struct pickup_scan *j = arg;
    struct pickup *p = j->p;
    struct pickup_item *it = j->items;
    p->scan = NULL;
    p->more = j->more;
    conf_unref(j->conf);
    free(j);
    while (it) {
        struct pickup_item *next = it->next;
        it->next = NULL;
        pickup_queue_item(p, it);
        it = next;
    }
    if (!p->pending) pickup_idle(p);
}

void pickup_now(struct pickup *p)
{
    if (p->busy) return; /* one scan at a time: a file is never picked twice */
    p->busy = 1;
    p->progress = 0;
    struct pickup_scan *j = xcalloc(1, sizeof *j);
    j->p = p;
    j->conf = conf_ref(p->conf);
    p->scan = j;
    j->wj = work_submit(pickup_scan_run, pickup_scan_done, j);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    pickup_now(arg);
}

static void arm_timer(struct pickup *p)
{
    struct timeval tv = {p->conf->maildrop_scan > 0 ? p->conf->maildrop_scan : 5, 0};
    event_add(p->ev, &tv);
}

struct pickup *pickup_new(struct event_base *base, const struct kconf *conf, struct spool *s,
                          void (*queued)(void *arg, const char *id), void *arg)
{
    struct pickup *p = xcalloc(1, sizeof *p);
    p->spool = s;
    p->conf = conf_ref(conf);
    p->queued = queued;
    p->arg = arg;
    p->spool_dir = xstrdup(spool_dir(s));
    p->ev = event_new(base, -1, EV_PERSIST, on_timer, p);
    if (!p->ev) {
        conf_unref(p->conf);
        free(p->spool_dir);
        free(p);
        return NULL;
    }
    arm_timer(p);
    return p;
}

void pickup_set_conf(struct pickup *p, const struct kconf *conf)
{
    const struct kconf *old = p->conf;
    p->conf = conf_ref(conf);
    conf_unref(old);
    if (evtimer_pending(p->ev, NULL)) arm_timer(p);
}

void pickup_free(struct pickup *p)
{
    if (!p) return;
    if (p->scan) {
        work_cancel(p->scan->wj);
        pickup_items_free(p->scan->items);
        conf_unref(p->scan->conf);
        free(p->scan);
        p->scan = NULL;
    }
    event_free(p->ev);
    p->ev = NULL;
    p->freed = 1;
    if (!p->pending) {
        conf_unref(p->conf);
        free(p->spool_dir);
        free(p);
    }
}
