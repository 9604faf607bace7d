/* abuse_lock.c: what a lock does, and its undoing: AUTH refused through auth/'s lock
 * set, the account's queued mail held (released or deleted on an unlock) through
 * queue/, the postmaster and the owner (owners_file) told by a mail committed into
 * the spool; locks decided on other nodes read (every state.refresh) and applied
 * here. When to lock (counters, limits, signals) is abuse.c's; the accounts are
 * abuse_acct.c's, the writes abuse_store.c's. Loop thread only. */
#include "core/compat.h"

#include <event2/event.h>
#include <strings.h>

#include "abuse/abuse.h"
#include "abuse/abuse_int.h"
#include "auth/auth.h"
#include "core/esmtp.h"
#include "queue/queue.h"
#include "store/store.h"

struct owner {
    char *name; /* "user@example.org" or "@example.org", lower case */
    char *addr; /* where the owner is told of a lock */
};

struct job {
    struct abuse *ab;
    struct work_job *work;
    char *account;
    enum abuse_held what; /* ABUSE_KEEP: hold them (a lock) */
    char **ids;
    size_t nids;
    struct event *ev; /* a lock: holds again the messages not in the scheduler yet */
    int tries;
    struct job *next;
};

struct notice {
    struct abuse *ab; /* NULL once abuse_free ran */
    struct spool_env *env;
    struct notice *next;
};

/* --- the account's mail: held on a lock, released or deleted on an unlock ---------- */

static void job_scan_one(void *arg, const char *id)
{
    struct job *j = arg;
    char err[256];
    struct spool_env *e = spool_load(j->ab->spool, id, err, sizeof err);
    if (!e) return;
    if (e->auth_user && strcasecmp(e->auth_user, j->account) == 0 &&
        (j->what == ABUSE_KEEP ? !e->held : j->what == ABUSE_DELETE || e->held)) {
        j->ids = xrealloc(j->ids, (j->nids + 1) * sizeof *j->ids);
        j->ids[j->nids++] = xstrdup(id);
    }
    spool_env_free(e);
}

static void job_run(void *arg)
{
    struct job *j = arg;
    spool_scan(j->ab->spool, job_scan_one, j);
}

static void job_retry(evutil_socket_t fd, short what, void *arg);

static void job_free(struct job *j)
{
    if (j->ev) event_free(j->ev);
    for (size_t i = 0; i < j->nids; i++)
        free(j->ids[i]);
    free(j->ids);
    free(j->account);
    free(j);
}

#define HOLD_TRIES 60 /* a lock's hold is tried again each second for a minute */

/* Do what j says to its messages. A message committed just before a lock may not be in
 * the scheduler yet (its commit or the complaint intake still runs): a lock holds it
 * again a second later, HOLD_TRIES times. A release is of messages the scan (on the
 * worker) read as held. */
static void job_apply(struct job *j)
{
    struct abuse *ab = j->ab;
    size_t done = 0, left = 0;
    for (size_t i = 0; i < j->nids; i++) {
        int r = !ab->queue                 ? -1
                : j->what == ABUSE_KEEP    ? queue_hold(ab->queue, j->ids[i])
                : j->what == ABUSE_RELEASE ? queue_release(ab->queue, j->ids[i], 1)
                                           : queue_delete(ab->queue, j->ids[i]);
        if (r == 0) done++;
        if (r != 0 && j->what == ABUSE_KEEP)
            j->ids[left++] = j->ids[i];
        else
            free(j->ids[i]);
    }
    j->nids = left;
    static const char *const verbs[] = {"held", "released", "deleted"};
    if (j->tries == 0 || done)
        log_info("abuse", "account=%s decision=%s messages=%zu", j->account, verbs[j->what], done);
    if (left && ab->queue && j->tries++ < HOLD_TRIES) {
        if (!j->ev) j->ev = evtimer_new(ab->base, job_retry, j);
        if (j->ev) {
            evtimer_add(j->ev, &(struct timeval){.tv_sec = 1});
            return;
        }
    }
    for (struct job **pp = &ab->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    job_free(j);
}

static void job_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    job_apply(arg);
}

static void job_done(void *arg)
{
    struct job *j = arg;
    j->work = NULL;
    job_apply(j);
}

static void mail_job(struct abuse *ab, const char *account, enum abuse_held what)
{
    if (!ab->spool) return;
    struct job *j = xcalloc(1, sizeof *j);
    j->ab = ab;
    j->account = xstrdup(account);
    j->what = what;
    j->next = ab->jobs;
    ab->jobs = j;
    j->work = work_submit(job_run, job_done, j);
}

/* --- the notices: the postmaster's, and the owner's (owners_file) ----------------- */

static void owners_free(struct abuse *ab)
{
    for (size_t i = 0; i < ab->nowners; i++) {
        free(ab->owners[i].name);
        free(ab->owners[i].addr);
    }
    free(ab->owners);
    ab->owners = NULL;
    ab->nowners = 0;
}

/* owners_file: "NAME ADDRESS" lines, NAME an account or @domain. */
void owners_load(struct abuse *ab)
{
    owners_free(ab);
    const char *path = ab->conf->abuse_owners_file;
    if (!path) return;
    FILE *f = fopen(path, "r");
    if (!f) {
        log_err("abuse", "owners_file %s: %s (owners are not told of locks)", path,
                strerror(errno));
        return;
    }
    char line[1024];
    int lineno = 0;
    while (fgets(line, sizeof line, f) && ab->nowners < OVERRIDES_MAX) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char name[320], addr[320];
        int end = 0;
        if (sscanf(line, " %*s%n", &end) == EOF || end == 0) continue; /* empty */
        if (sscanf(line, " %319s %319s %n", name, addr, &end) != 2 || line[end] != '\0' ||
            !strchr(addr, '@') || addr[0] == '@' || strchr(addr, '<')) {
            log_err("abuse", "%s:%d: expected \"NAME ADDRESS\" (line ignored)", path, lineno);
            continue;
        }
        ab->owners = xrealloc(ab->owners, (ab->nowners + 1) * sizeof *ab->owners);
        ab->owners[ab->nowners++] =
            (struct owner){.name = str_lower(xstrdup(name)), .addr = xstrdup(addr)};
    }
    fclose(f);
    log_info("abuse", "owners_file %s: %zu owners", path, ab->nowners);
}

/* Where the owner of account is told of a lock, or NULL. */
static const char *owner_of(const struct abuse *ab, const char *account)
{
    const char *at = strchr(account, '@'), *addr = NULL;
    for (size_t i = 0; i < ab->nowners; i++) {
        if (strcmp(ab->owners[i].name, account) == 0) return ab->owners[i].addr;
        if (at && strcmp(ab->owners[i].name, at) == 0) addr = ab->owners[i].addr;
    }
    return addr;
}

static void notice_committed(void *arg, int ok)
{
    struct notice *n = arg;
    if (n->ab) {
        for (struct notice **pp = &n->ab->notices; *pp; pp = &(*pp)->next)
            if (*pp == n) {
                *pp = n->next;
                break;
            }
        if (ok && n->ab->queue) queue_add(n->ab->queue, n->env->id);
    }
    if (ok)
        log_info("abuse", "%s: lock notice to <%s>", n->env->id, n->env->rcpts[0].addr);
    else
        log_err("abuse", "cannot queue a lock notice");
    spool_env_free(n->env);
    free(n);
}

/* One notice of the lock of account, to the address to. */
static void notice_mail(struct abuse *ab, const char *account, const char *reason,
                        const char *evidence, const char *to, int owner)
{
    const struct kconf *c = ab->conf;
    struct spool_msg *m = spool_msg_new(ab->spool);
    if (!m) return;
    time_t now = time(NULL);
    const char *host = c->hostname ? c->hostname : "localhost";
    char date[64];
    time_rfc5322(date, sizeof date, now);
    struct buf b;
    buf_init(&b, 0);
    buf_printf(&b, "Received: by %s (kurier, abuse)\r\n\tid %s; %s\r\n", host, spool_msg_id(m),
               date);
    buf_printf(&b,
               "From: Mail Delivery System <MAILER-DAEMON@%s>\r\nTo: <%s>\r\n"
               "Subject: Account %s locked for sending (suspected compromise)\r\n"
               "Date: %s\r\nMessage-ID: <%s.abuse@%s>\r\nAuto-Submitted: auto-generated\r\n"
               "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
               "Content-Transfer-Encoding: 7bit\r\n\r\n",
               host, to, account, date, spool_msg_id(m), host);
    if (owner)
        buf_printf(&b,
                   "You get this mail because this address is given as the owner's\r\n"
                   "contact for the account %s.\r\n\r\n",
                   account);
    buf_printf(&b,
               "kurier on %s has locked the account %s for sending.\r\n\r\n"
               "Reason: %s\r\n\r\n"
               "Logins of the account are refused (535 5.7.8); mail to it is still\r\n"
               "received. Its queued mail is on hold: not delivered, not deleted.\r\n\r\n"
               "Evidence (newest last):\r\n%s",
               host, account, reason, evidence ? evidence : "");
    if (owner)
        buf_printf(&b, "\r\nPlease change the account's password and check the devices that\r\n"
                       "use it, then ask your provider to unlock it.\r\n");
    else
        buf_printf(&b,
                   "\r\nWhen the account is safe again (new password, the owner's devices\r\n"
                   "checked):\r\n"
                   "  kurier account status %s\r\n"
                   "  kurier account unlock %s --release   (or --delete for its held mail)\r\n",
                   account, account);
    /* non-ASCII evidence was escaped; keep the body 7bit */
    for (size_t i = 0; i < b.len; i++)
        if ((unsigned char)b.data[i] >= 0x80) b.data[i] = '?';
    int w = spool_msg_write(m, b.data, b.len);
    buf_release(&b);
    if (w != 0) {
        spool_msg_abort(m);
        log_err("abuse", "account=%s: cannot write the lock notice", account);
        return;
    }
    struct spool_env *e = spool_env_notice(to, now); /* a notice never bounces */
    struct notice *n = xcalloc(1, sizeof *n);
    n->ab = ab;
    n->env = e;
    n->next = ab->notices;
    ab->notices = n;
    spool_msg_commit(m, e, notice_committed, n);
}

/* The notices of a lock, once it is stored: the postmaster's (mail_to), and the
 * owner's when owners_file names an address for the account or its domain. */
static void send_notices(struct abuse *ab, const char *account, const char *reason,
                         const char *evidence)
{
    const struct kconf *c = ab->conf;
    const char *to = c->abuse_mail_to ? c->abuse_mail_to : c->postmaster;
    const char *owner = owner_of(ab, account);
    if (!ab->spool || ((!to || !*to) && !owner)) return;
    time_t now = time(NULL);
    if (now - ab->notice_window >= 3600) {
        ab->notice_window = now;
        ab->nnotices = 0;
    }
    if (ab->nnotices++ >= NOTICES_PER_HOUR) {
        log_warn("abuse", "account=%s: no lock notice (%d this hour already)", account,
                 NOTICES_PER_HOUR);
        return;
    }
    if (to && *to) notice_mail(ab, account, reason, evidence, to, 0);
    if (owner) notice_mail(ab, account, reason, evidence, owner, 1);
}

/* --- the lock ------------------------------------------------------------------- */

/* a locked since then for reason: logins refused. */
static void acct_set_locked(struct abuse *ab, struct acct *a, time_t since, const char *reason)
{
    a->locked = 1;
    a->locked_since = since;
    str_copy(a->reason, reason, sizeof a->reason);
    auth_lock_set(ab->auth, a->name, 1);
}

/* a unlocked: a fresh start, the old evidence and counters go with the lock. */
static void acct_set_unlocked(struct abuse *ab, struct acct *a)
{
    a->locked = 0;
    a->reason[0] = '\0';
    a->nsig = 0;
    memset(a->w, 0, sizeof a->w);
    a->ndist = 0;
    a->dirty = 1;
    auth_lock_set(ab->auth, a->name, 0);
}

/* The lock written (else written again at the next read of the shared locks): its
 * notices, with the evidence read with it. The account may be gone. */
static void lock_done(struct abuse *ab, struct wjob *w, int notify)
{
    struct acct *a = acct_get(ab, w->account, 0);
    if (a) a->lock_unstored = w->rc != 0;
    if (notify) send_notices(ab, w->account, w->lock.reason, w->text);
}

/* The write of a's lock, with score; the caller may add a logline, then pushes it. */
static struct wjob *lock_write(struct abuse *ab, struct acct *a, int score)
{
    struct wjob *w = wjob_new(ab, WK_LOCK, a->name);
    w->done = lock_done;
    w->lock = (struct store_abuse_lock){.since = a->locked_since, .score = score};
    str_copy(w->lock.account, a->name, sizeof w->lock.account);
    str_copy(w->lock.reason, a->reason, sizeof w->lock.reason);
    return w;
}

void acct_lock(struct abuse *ab, struct acct *a, const char *why)
{
    acct_set_locked(ab, a, time(NULL), why);
    /* stored after the evidence before it; then logged and the notices sent */
    struct wjob *w = lock_write(ab, a, score_of(ab, a, a->locked_since));
    struct buf b;
    buf_init(&b, 0);
    buf_printf(&b, "account=%s decision=lock score=%d reason=\"%s\"", a->name, w->lock.score, why);
    w->logline = buf_take(&b);
    wjob_push(ab, w);
    mail_job(ab, a->name, ABUSE_KEEP);
}

int abuse_locked(struct abuse *ab, const char *account)
{
    struct acct *a = acct_get(ab, account, 0);
    return a && a->locked;
}

/* Shared state: the locks read from Redis (v[0..n)), applied to the accounts here: a
 * lock decided on another node locks (AUTH refused, mail held), an unlock there
 * unlocks; a lock whose write failed here is written again. */
static void abuse_sync_locks(struct abuse *ab, const struct store_abuse_lock *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct acct *a = acct_get(ab, v[i].account, 1);
        if (!a || a->locked) continue;
        acct_set_locked(ab, a, (time_t)v[i].since, v[i].reason);
        log_warn("abuse", "account=%s decision=lock source=shared reason=\"%s\"", a->name,
                 a->reason);
        mail_job(ab, a->name, ABUSE_KEEP);
    }
    for (size_t b = 0; b < ab->nbuckets; b++)
        for (struct acct *a = ab->b[b]; a; a = a->next) {
            if (!a->locked) continue;
            size_t i = 0;
            while (i < n && strcmp(v[i].account, a->name) != 0)
                i++;
            if (i < n) continue;
            if (a->lock_unstored) { /* decided here while Redis was down */
                struct wjob *w = lock_write(ab, a, score_of(ab, a, time(NULL)));
                a->lock_unstored = 0;
                wjob_push(ab, w);
                continue;
            }
            acct_set_unlocked(ab, a); /* unlocked on another node */
            log_warn("abuse", "account=%s decision=unlock source=shared", a->name);
        }
}

static void sync_done(struct abuse *ab, struct wjob *w, int notify)
{
    ab->sync_pending = 0;
    /* a lock or unlock queued after the read is newer than what it saw */
    int newer = 0;
    for (const struct wjob *o = w->next; o; o = o->next)
        newer |= o->kind == WK_LOCK || o->kind == WK_UNLOCK;
    if (w->rc == 0 && notify && !newer) abuse_sync_locks(ab, w->locks, w->nlocks);
}

void sync_fire(evutil_socket_t fd, short what, void *arg)
{
    struct abuse *ab = arg;
    if (ab->sync_pending) return;
    ab->sync_pending = 1;
    struct wjob *w = wjob_new(ab, WK_SYNC, "");
    w->done = sync_done;
    wjob_push(ab, w);
}

int abuse_unlock(struct abuse *ab, const char *account, enum abuse_held what, char *msg,
                 size_t msgsize)
{
    struct acct *a = acct_get(ab, account, 0);
    if (!a || !a->locked) {
        snprintf(msg, msgsize, "account %s is not locked", account);
        return -1;
    }
    acct_set_unlocked(ab, a);
    wjob_push(ab, wjob_new(ab, WK_UNLOCK, a->name)); /* after the lock's own write */
    static const char *const verbs[] = {"kept on hold", "released", "deleted"};
    log_warn("abuse", "account=%s decision=unlock held_mail=%s", a->name, verbs[what]);
    if (what != ABUSE_KEEP) mail_job(ab, a->name, what);
    snprintf(msg, msgsize, "account %s unlocked; its held mail is %s", a->name, verbs[what]);
    return 0;
}

void abuse_lock_free(struct abuse *ab)
{
    while (ab->jobs) {
        struct job *j = ab->jobs;
        ab->jobs = j->next;
        if (j->work) work_cancel(j->work);
        job_free(j);
    }
    for (struct notice *n = ab->notices; n; n = n->next)
        n->ab = NULL; /* the commit finishes; the next start queues it */
    owners_free(ab);
}
