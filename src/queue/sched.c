/* sched.c: the scheduler. Keeps a small in-memory index of queued messages, runs
 * deliveries (route + maildir), retries with backoff, expiry and admin operations;
 * maildrop pickup is pickup.c's. Loop thread only; all disk and directory work runs
 * in worker jobs. */
#include "core/compat.h"

#include <errno.h>
#include <event2/event.h>
#include <unistd.h>

#include "core/core.h"
#include "core/metrics.h"
#include "deliver/deliver.h"
#include "queue/queue.h"
#include "route/route.h"

enum job_kind { JOB_DELIVER = 0, JOB_REMOVE, JOB_HOLD };

/* Local copies of one message written before they are committed together (each
 * holds an open file). */
#define SCHED_PUTS_MAX 32

struct qent;

struct qjob {
    enum job_kind kind;
    struct queue *q;
    const struct kconf *conf; /* the configuration when the job started (a reference) */
    struct qent *e;
    struct work_job *wj;
    char id[QUEUE_ID_LEN + 1];
    /* inputs */
    int announce; /* log the qmgr "from=" line */
    int flush;    /* every queued recipient is due now */
    int hold;     /* JOB_HOLD: 1 hold, 0 release */
    double t_submit;
    /* outputs */
    int gone;        /* the envelope is missing (or corrupt, moved aside) */
    int loaded;      /* the envelope was read: held is what it says */
    int announced;   /* the qmgr "from=" line was logged */
    int failed;      /* could not load/update: try again later */
    int held;        /* the envelope says held */
    int removed;     /* the message left the queue */
    time_t next_due; /* earliest next_try of the queued recipients */
    /* delivery in phases: worker (route, local) -> loop (remote) -> worker (record) */
    int phase;                    /* 0 attempt, 1 remote deliveries running, 2 record */
    int rstarted;                 /* phase 1: remote_start() ran */
    struct spool_env *env;        /* kept between the phases */
    struct spool_content content; /* fd -1 when not open */
    struct rcpt_out *ro;          /* per envelope recipient; o == NULL: not tried now */
    struct rgroup **groups;       /* phase 1 */
    size_t ngroups, rpending;
    double t_start;
    /* delivery status notifications, queued from the loop thread after the attempt
     * is recorded (env stays loaded until then): recipients owed a notice per kind */
    size_t *dsn_idx[3];
    size_t dsn_n[3];
    struct dsn_req *dsn_req[3];
    int dsn_queued[3];   /* the notice of that kind is durable in the queue */
    int dsn_outstanding; /* requests whose done has not run */
    struct dsn_cb {
        struct qjob *j;
        int kind;
    } dsn_cb[3];
    /* local copies written, waiting for their flush (local_commit) */
    struct maildir_put *puts[SCHED_PUTS_MAX];
    struct outcome *put_o[SCHED_PUTS_MAX];
    size_t nputs;
    struct qjob *prev, *next;
};

struct qent {
    char id[QUEUE_ID_LEN + 1];
    time_t due;    /* earliest next_try among queued recipients (0 = unknown/now) */
    int held;      /* on hold (as far as we know) */
    int busy;      /* a job works on this message */
    int deleted;   /* delete requested */
    int hold_op;   /* -1 none, 0 release, 1 hold requested */
    int flush;     /* retry every queued recipient now */
    int announced; /* qmgr "from=" logged in this process */
    /* held is what the envelope says (read or changed since the start) */
    int held_known;
    /* notices that could not be queued, in a row (backoff) */
    int dsn_fails;
    struct qent *prev, *next;
};

struct queue {
    struct event_base *base;
    void (*intake)(void *arg, const char *id); /* queue_set_intake(), or NULL */
    void *intake_arg;
    const struct kconf *conf;
    struct spool *spool;
    struct store *store;
    struct qent *head, *tail;
    struct qjob *jobs;     /* outstanding worker jobs */
    int ndeliv;            /* delivery jobs in flight on workers */
    int nremote;           /* messages waiting for remote deliveries */
    struct remote *remote; /* NULL: remote recipients stay queued */
    struct event *ev_run;
    time_t run_at; /* when ev_run fires, valid while pending */
    struct pickup *pickup;
};

/* Messages waiting for remote deliveries at once (each holds its envelope and an
 * open content file; remote.c queues them per destination). */
#define SCHED_REMOTE_MAX 200

static void run_queue(struct queue *q);
static void entry_maint(struct queue *q, struct qent *e);

/* --- index ----------------------------------------------------------------- */

static struct qent *entry_find(struct queue *q, const char *id)
{
    for (struct qent *e = q->head; e; e = e->next)
        if (strcmp(e->id, id) == 0) return e;
    return NULL;
}

static struct qent *entry_add(struct queue *q, const char *id)
{
    struct qent *e = entry_find(q, id);
    if (e) return e;
    e = xcalloc(1, sizeof *e);
    str_copy(e->id, id, sizeof e->id);
    e->hold_op = -1;
    e->prev = q->tail;
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    return e;
}

static void entry_free(struct queue *q, struct qent *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        q->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        q->tail = e->prev;
    free(e);
}

/* --- timers ---------------------------------------------------------------- */

/* Run the queue in secs seconds (0: on the next loop turn), unless it runs sooner. */
static void arm(struct queue *q, time_t secs)
{
    if (secs < 0) secs = 0;
    if (secs > 3600) secs = 3600; /* survive clock jumps */
    time_t at = time(NULL) + secs;
    if (evtimer_pending(q->ev_run, NULL) && q->run_at <= at) return;
    struct timeval tv = {secs, 0};
    q->run_at = at;
    evtimer_add(q->ev_run, &tv);
}

static void on_run(evutil_socket_t fd, short what, void *arg)
{
    run_queue(arg);
}

/* --- jobs ------------------------------------------------------------------ */

static struct qjob *job_new(struct queue *q, struct qent *e, enum job_kind kind)
{
    struct qjob *j = xcalloc(1, sizeof *j);
    j->kind = kind;
    j->q = q;
    j->conf = conf_ref(q->conf);
    j->e = e;
    if (e) str_copy(j->id, e->id, sizeof j->id);
    j->t_submit = time_wall();
    j->content.fd = -1;
    j->next = q->jobs;
    if (q->jobs) q->jobs->prev = j;
    q->jobs = j;
    if (e) e->busy = 1;
    return j;
}

static void job_unlink(struct queue *q, struct qjob *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        q->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
}

static void groups_free(struct qjob *j);
static void ro_free(struct qjob *j);

static void job_free(struct qjob *j)
{
    groups_free(j);
    ro_free(j);
    if (j->content.fd >= 0) close(j->content.fd);
    spool_env_free(j->env);
    for (int k = 0; k < 3; k++) {
        dsn_cancel(j->dsn_req[k]);
        free(j->dsn_idx[k]);
    }
    conf_unref(j->conf);
    free(j);
}

/* 1 when the message is still queued (or that cannot be told now). */
static int env_exists(struct queue *q, const char *id)
{
    char err[256];
    struct spool_env *e = spool_load(q->spool, id, err, sizeof err);
    int r = e != NULL || errno != ENOENT;
    spool_env_free(e);
    return r;
}

/* Worker: load the job's envelope. NULL when that failed: j->gone when the message
 * left the queue, or its envelope was corrupt and the message is now in corrupt/
 * (kept for an admin, never retried); j->failed when it may work later. */
static struct spool_env *job_load(struct qjob *j)
{
    char err[512] = "";
    struct spool_env *env = spool_load(j->q->spool, j->id, err, sizeof err);
    if (env) {
        j->loaded = 1;
        return env;
    }
    if (errno == EBADMSG) {
        if (spool_quarantine(j->q->spool, j->id) == 0) {
            log_err("qmgr", "%s: corrupt envelope, message moved to %s/corrupt/: %s", j->id,
                    spool_dir(j->q->spool), err);
            j->gone = 1;
        } else {
            log_err("qmgr", "%s: corrupt envelope, cannot move it to %s/corrupt/ (%s): %s", j->id,
                    spool_dir(j->q->spool), strerror(errno), err);
            j->failed = 1;
        }
        return NULL;
    }
    if (!env_exists(j->q, j->id)) {
        j->gone = 1;
        return NULL;
    }
    log_err("qmgr", "%s: cannot load envelope: %s", j->id, err);
    j->failed = 1;
    return NULL;
}

/* --- delivery (worker side) ------------------------------------------------ */

/* One target's result: the transport's, or the scheduler's own (no route...). */
struct outcome {
    const char *comp;          /* "local", "smtp" or "qmgr" */
    char *to;                  /* target address */
    struct deliver_result res; /* relay: "local", "none" or the next hop */
    double c, d;               /* route time, transport time */
    int remote;                /* waits for remote delivery (loop thread, remote.c) */
};

/* The outcomes of one recipient's attempt (one per target after alias expansion). */
struct rcpt_out {
    struct outcome *o;
    size_t n;
};

/* One remote_job: a message's due remote targets in one recipient domain. */
struct rgroup {
    struct qjob *j;
    char *domain;
    int forward; /* targets of our aliases/forwards: the sender gets SRS (core/srs.h) */
    const char **rcpts;
    unsigned *notify;
    const char **orcpt;
    struct outcome **outs; /* into the job's rcpt_out arrays */
    size_t n, cap;
    struct deliver_result *res;
    struct remote_job job;
    struct remote_sender pre; /* the sender's lookups, made with the job's (worker) */
    struct remote_req *req;
    double t0;
};

struct loglines {
    char **v;
    size_t n, cap;
};

static void lines_add(struct loglines *l, char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = s;
}

static void lines_free(struct loglines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

static void outcome_set(struct outcome *o, enum deliver_status st, const char *dsn,
                        const char *text)
{
    o->res.status = st;
    str_copy(o->res.dsn, dsn, sizeof o->res.dsn);
    str_copy(o->res.text, text, sizeof o->res.text);
}

static void outcome_relay(struct outcome *o, const char *relay)
{
    str_copy(o->res.relay, relay, sizeof o->res.relay);
}

/* Seconds as Postfix prints delays: "0" when below 10 ms, else 2 decimals. */
static void fmt_delay(char *dst, size_t size, double v)
{
    if (v < 0.005)
        str_copy(dst, "0", size);
    else
        snprintf(dst, size, "%.2f", v);
}

static time_t retry_delay(const struct kconf *c, int attempts)
{
    double d = c->retry_first > 0 ? c->retry_first : 60;
    for (int i = 1; i < attempts && d < c->retry_max; i++)
        d *= c->retry_backoff > 1.0 ? c->retry_backoff : 1.0;
    if (c->retry_max > 0 && d > c->retry_max) d = c->retry_max;
    return (time_t)d;
}

static void lifetime_text(char *dst, size_t size, int secs)
{
    if (secs >= 86400 && secs % 86400 == 0)
        snprintf(dst, size, "%d day%s", secs / 86400, secs == 86400 ? "" : "s");
    else if (secs >= 3600 && secs % 3600 == 0)
        snprintf(dst, size, "%d hour%s", secs / 3600, secs == 3600 ? "" : "s");
    else
        snprintf(dst, size, "%d seconds", secs);
}

/* Worker: make the local copies written so far durable and move them into new/, in
 * the batch shared with the other workers' deliveries; a copy counts as delivered
 * only after that (its outcome says so), before anything is recorded. */
static void local_commit(struct qjob *j)
{
    if (!j->nputs) return;
    double t0 = time_mono();
    deliver_maildir_commit(j->puts, j->nputs);
    double d = time_mono() - t0;
    for (size_t i = 0; i < j->nputs; i++)
        j->put_o[i]->d += d;
    j->nputs = 0;
}

/* Route one recipient and deliver to each target; fills outs (new array). */
static size_t rcpt_attempt(struct qjob *j, const struct spool_env *env, const struct spool_rcpt *r,
                           const struct spool_content *content, struct outcome **outs)
{
    struct queue *q = j->q;
    struct route_result rr;
    memset(&rr, 0, sizeof rr);
    double t0 = time_mono();
    struct route_postmaster pm;
    route_postmaster_init(&pm, j->conf);
    enum route_kind kind = route_resolve(q->store, &pm, r->addr, &rr);
    double troute = time_mono() - t0;
    size_t n = rr.ntargets > 0 && (kind == ROUTE_LOCAL || kind == ROUTE_REMOTE) ? rr.ntargets : 1;
    struct outcome *o = xcalloc(n, sizeof *o);
    for (size_t i = 0; i < n; i++) {
        o[i].comp = "local";
        outcome_relay(&o[i], "local");
        o[i].c = troute;
    }
    switch (kind) {
    case ROUTE_NOUSER:
        o[0].to = xstrdup(r->addr);
        outcome_set(&o[0], DELIVER_PERM, "5.1.1", "no such mailbox");
        break;
    case ROUTE_LOOP:
        o[0].to = xstrdup(r->addr);
        outcome_set(&o[0], DELIVER_PERM, "5.4.6", "mail forwarding loop (alias expansion)");
        break;
    case ROUTE_ERROR:
        o[0].to = xstrdup(r->addr);
        o[0].comp = "qmgr";
        outcome_relay(&o[0], "none");
        outcome_set(&o[0], DELIVER_TEMP, "4.3.0", "directory lookup failed");
        break;
    case ROUTE_LOCAL:
    case ROUTE_REMOTE:
        for (size_t i = 0; i < n; i++) {
            const struct route_target *t = rr.ntargets ? &rr.targets[i] : NULL;
            enum route_kind tk = t ? t->kind : kind;
            o[i].to = xstrdup(t && t->addr ? t->addr : r->addr);
            if (tk != ROUTE_LOCAL && env->no_forward && !str_ieq(o[i].to, r->addr) &&
                !srs_is_srs(r->addr, strcspn(r->addr, "@"))) {
                /* forwarding with care: mail that failed SPF or scored high is not
                 * passed on to another provider (docs/forwarding.md); bounces to our
                 * SRS addresses go back as ever */
                o[i].comp = "qmgr";
                outcome_relay(&o[i], "none");
                outcome_set(&o[i], DELIVER_OK, "2.0.0",
                            "not forwarded: the message failed SPF or scored as spam");
                continue;
            }
            if (tk != ROUTE_LOCAL && q->remote) {
                /* delivered on the loop thread after this worker part (remote_start) */
                o[i].remote = 1;
                o[i].comp = "smtp";
                outcome_relay(&o[i], "none");
                continue;
            }
            if (tk != ROUTE_LOCAL) {
                /* no remote transport wired in: keep the recipient queued */
                o[i].comp = "qmgr";
                outcome_relay(&o[i], "none");
                outcome_set(&o[i], DELIVER_TEMP, "4.4.0", "remote delivery is not available yet");
                continue;
            }
            if (content->fd < 0) {
                outcome_set(&o[i], DELIVER_TEMP, "4.3.0", "cannot open the queued message");
                continue;
            }
            struct deliver_maildir_req req = {
                .root = j->conf->maildir_root,
                .address = o[i].to,
                .quota = t ? t->quota : 0,
                .return_path = env->sender ? env->sender : "",
                .orig_rcpt = o[i].to,
                .content_fd = content->fd,
                .content_off = content->off,
                .content_len = content->len,
                .hostname = j->conf->hostname,
                .uid = 0,
                .gid = 0,
            };
            double t1 = time_mono();
            struct maildir_put *put = deliver_maildir_write(&req, &o[i].res);
            o[i].d = time_mono() - t1;
            outcome_relay(&o[i], "local");
            if (!put) continue;
            /* durable with the other copies written close together (local_commit) */
            if (j->nputs == SCHED_PUTS_MAX) local_commit(j);
            j->puts[j->nputs] = put;
            j->put_o[j->nputs++] = &o[i];
        }
        break;
    }
    route_result_clear(&rr);
    *outs = o;
    return n;
}

static void ro_free(struct qjob *j)
{
    if (!j->ro) return;
    size_t n = j->env ? j->env->nrcpts : 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < j->ro[i].n; k++)
            free(j->ro[i].o[k].to);
        free(j->ro[i].o);
    }
    free(j->ro);
    j->ro = NULL;
}

/* Worker: which notices the sender is owed (bounce, delay notice, success report),
 * decided on the new recipient states before they are persisted. No backscatter: an
 * untrusted or null sender gets none, and that is logged once per newly bounced
 * message. A delay notice nobody may or wants to get is marked as done. */
static void dsn_plan(struct qjob *j, const size_t *bounced, size_t nbounced)
{
    struct spool_env *env = j->env;
    const struct kconf *c = j->conf;
    const char *why = NULL;
    int allowed = dsn_allowed(env, &why);
    int delay_due = 0;
    for (size_t i = 0; i < env->nrcpts; i++)
        if (env->rcpts[i].state == RCPT_ST_QUEUED) delay_due = 1;
    delay_due = delay_due && !env->delay_warned && c->delay_warning > 0 &&
                time(NULL) >= env->arrival + c->delay_warning;
    if (!allowed) {
        if (nbounced) { /* a warning: nobody will hear of this failure but the admin */
            const struct spool_rcpt *r = &env->rcpts[bounced[0]];
            char from[520], to[520], diag[600], more[32] = "";
            log_escape(from, sizeof from, env->sender ? env->sender : "",
                       env->sender ? strlen(env->sender) : 0);
            log_escape(to, sizeof to, r->addr, strlen(r->addr));
            log_escape(diag, sizeof diag, r->diag ? r->diag : "", r->diag ? strlen(r->diag) : 0);
            if (nbounced > 1) snprintf(more, sizeof more, " and %zu more", nbounced - 1);
            log_warn("qmgr",
                     "%s: sender %s notification suppressed (%s): from=<%s>, to=<%s>%s, "
                     "dsn=%s, reason=%s",
                     j->id, dsn_kind_notice(DSN_FAILED), why, from, to, more, r->dsn, diag);
        }
        if (delay_due) env->delay_warned = 1; /* nobody may get one: done with it */
        return;
    }
    for (int k = DSN_FAILED; k <= DSN_DELIVERED; k++) {
        if (k == DSN_DELAYED && !delay_due) continue;
        size_t *idx = xcalloc(env->nrcpts ? env->nrcpts : 1, sizeof *idx);
        size_t n = dsn_pending(env, (enum dsn_kind)k, idx);
        if (n) {
            j->dsn_idx[k] = idx;
            j->dsn_n[k] = n;
        } else {
            free(idx);
        }
    }
    if (delay_due && !j->dsn_n[DSN_DELAYED]) env->delay_warned = 1; /* nobody wants one */
}

/* Worker: turn this attempt's outcomes into recipient states, persist them, then
 * log them (DESIGN.md durability: persist before reporting). */
static void deliver_record(struct qjob *j)
{
    struct queue *q = j->q;
    const struct kconf *c = j->conf;
    struct spool_env *env = j->env;
    int changed = 0;
    struct loglines lines = {0};
    size_t *bounced = xcalloc(env->nrcpts ? env->nrcpts : 1, sizeof *bounced);
    size_t nbounced = 0;
    for (size_t i = 0; i < env->nrcpts; i++) {
        struct spool_rcpt *r = &env->rcpts[i];
        struct outcome *o = j->ro[i].o;
        size_t n = j->ro[i].n;
        if (!o) continue;
        enum deliver_status agg = DELIVER_OK;
        const struct outcome *worst = &o[0];
        for (size_t k = 0; k < n; k++) {
            if (o[k].res.status == DELIVER_TEMP ||
                (o[k].res.status == DELIVER_PERM && agg == DELIVER_OK)) {
                agg = o[k].res.status;
                worst = &o[k];
            }
        }
        time_t tnow = time(NULL);
        int expired = agg == DELIVER_TEMP && c->lifetime > 0 && tnow >= env->arrival + c->lifetime;
        if (expired) {
            char life[64], text[512];
            lifetime_text(life, sizeof life, c->lifetime);
            int tn =
                snprintf(text, sizeof text, "message expired after %s in the queue; last error: %s",
                         life, worst->res.text);
            if (tn < 0) str_copy(text, "message expired in the queue", sizeof text);
            for (size_t k = 0; k < n; k++)
                if (o[k].res.status == DELIVER_TEMP)
                    outcome_set(&o[k], DELIVER_PERM, "5.4.7", text);
            agg = DELIVER_PERM;
        }
        changed = 1;
        str_copy(r->dsn, worst->res.dsn, sizeof r->dsn);
        free(r->diag);
        r->diag = xstrdup(worst->res.text);
        free(r->relay); /* for DSNs: Remote-MTA, Last-Attempt-Date */
        r->relay = strcmp(worst->res.relay, "none") != 0 ? xstrdup(worst->res.relay) : NULL;
        r->last_try = tnow;
        if (agg == DELIVER_OK) {
            r->state = RCPT_ST_SENT;
        } else if (agg == DELIVER_PERM) {
            r->state = RCPT_ST_BOUNCED;
            bounced[nbounced++] = i;
        } else {
            r->attempts++;
            r->next_try = tnow + retry_delay(c, r->attempts);
            /* a retry due after the lifetime would bounce late: the last try is at
             * its end (a temporary failure then bounces, above) */
            if (c->lifetime > 0 && r->next_try > env->arrival + c->lifetime)
                r->next_try = env->arrival + c->lifetime;
        }
        const char *orig = r->orig && *r->orig ? r->orig : r->addr;
        for (size_t k = 0; k < n; k++) {
            char to[600], origx[600], text[1100], total[32], a[32], b[32], cc[32], d[32];
            log_escape(to, sizeof to, o[k].to, strlen(o[k].to));
            log_escape(origx, sizeof origx, orig, strlen(orig));
            log_escape(text, sizeof text, o[k].res.text, strlen(o[k].res.text));
            for (char *p = text; *p; p++) /* pflogsumm reads the reason up to ')' */
                if (*p == '(' || *p == ')') *p = *p == '(' ? '[' : ']';
            double t_end = time_wall();
            snprintf(total, sizeof total, "%.2f", t_end > env->arrival ? t_end - env->arrival : 0);
            fmt_delay(a, sizeof a, j->t_submit - (double)env->arrival);
            fmt_delay(b, sizeof b, j->t_start - j->t_submit);
            fmt_delay(cc, sizeof cc, o[k].c);
            fmt_delay(d, sizeof d, o[k].d);
            static const char *stname[] = {"sent", "deferred", "bounced"};
            char *line = xasprintf(
                "%s\t%s: to=<%s>%s%s%s, relay=%s, delay=%s, delays=%s/%s/%s/%s, dsn=%s, "
                "status=%s (%s)",
                o[k].comp, j->id, to, str_ieq(orig, o[k].to) ? "" : ", orig_to=<",
                str_ieq(orig, o[k].to) ? "" : origx, str_ieq(orig, o[k].to) ? "" : ">",
                o[k].res.relay, total, a, b, cc, d, o[k].res.dsn, stname[o[k].res.status], text);
            lines_add(&lines, line);
            metrics_add(MET_DELIVERIES, 1, stname[o[k].res.status], (char[2]){o[k].res.dsn[0], 0});
            if (o[k].res.status == DELIVER_OK)
                metrics_observe(MET_DELIVERY_DELAY,
                                t_end > env->arrival ? t_end - env->arrival : 0);
        }
    }
    ro_free(j);
    if (j->content.fd >= 0) close(j->content.fd);
    j->content.fd = -1;

    size_t nqueued = 0;
    time_t due = 0;
    for (size_t i = 0; i < env->nrcpts; i++) {
        const struct spool_rcpt *r = &env->rcpts[i];
        if (r->state != RCPT_ST_QUEUED) continue;
        if (!nqueued || r->next_try < due) due = r->next_try;
        nqueued++;
    }
    j->next_due = due;
    /* The notices the sender is owed. A message stays in the spool until its bounce
     * is durable in the queue, so a crash in between loses nothing. */
    int warned = env->delay_warned;
    dsn_plan(j, bounced, nbounced);
    free(bounced);
    changed |= env->delay_warned != warned;

    /* DESIGN.md durability: persist the states before they are reported. When
     * nothing is left to do the removal is that record (one directory update
     * instead of rewriting the envelope first); a crash right after delivery may
     * then deliver a recipient twice, never lose one. */
    if (!nqueued && !j->dsn_n[DSN_FAILED] && !j->dsn_n[DSN_DELIVERED]) {
        if (spool_remove(q->spool, j->id) != 0 && env_exists(q, j->id)) {
            log_err("qmgr", "%s: cannot remove the finished message; will retry", j->id);
            j->failed = 1;
            lines_free(&lines);
            return;
        }
        j->removed = 1;
    } else if (changed && spool_update(q->spool, env) != 0) {
        log_err("qmgr", "%s: cannot record delivery status; will retry", j->id);
        j->failed = 1;
        lines_free(&lines);
        return;
    }
    for (size_t i = 0; i < lines.n; i++) {
        char *tab = strchr(lines.v[i], '\t');
        *tab = '\0';
        log_info(lines.v[i], "%s", tab + 1);
    }
    lines_free(&lines);
    if (j->removed) log_info("qmgr", "%s: removed", j->id);
}

static void remote_groups(struct qjob *j);

/* Worker, phase 0: load, route every due recipient, deliver local targets. Remote
 * targets are left for the loop thread (phase 1, remote_start). */
static void deliver_run(void *arg)
{
    struct qjob *j = arg;
    struct queue *q = j->q;
    j->t_start = time_wall();
    struct spool_env *env = job_load(j);
    if (!env) return;
    if (env->held) {
        j->held = 1;
        spool_env_free(env);
        return;
    }
    char sender[600];
    log_escape(sender, sizeof sender, env->sender ? env->sender : "",
               env->sender ? strlen(env->sender) : 0);

    time_t now = time(NULL);
    int opened = 0;
    size_t nremote = 0;
    j->env = env;
    j->ro = xcalloc(env->nrcpts ? env->nrcpts : 1, sizeof *j->ro);
    for (size_t i = 0; i < env->nrcpts; i++) {
        struct spool_rcpt *r = &env->rcpts[i];
        if (r->state != RCPT_ST_QUEUED) continue;
        if (!j->flush && r->next_try > now) continue;
        if (!opened) {
            /* as Postfix's qmgr when a message enters the active queue */
            if (j->announce)
                log_info("qmgr", "%s: from=<%s>, size=%zu, nrcpt=%zu (queue active)", j->id, sender,
                         env->size, env->nrcpts);
            j->announced = j->announce;
            spool_open_content(q->spool, j->id, &j->content);
            opened = 1;
        }
        j->ro[i].n = rcpt_attempt(j, env, r, &j->content, &j->ro[i].o);
        for (size_t k = 0; k < j->ro[i].n; k++) {
            if (!j->ro[i].o[k].remote) continue;
            if (j->content.fd < 0) {
                j->ro[i].o[k].remote = 0;
                outcome_set(&j->ro[i].o[k], DELIVER_TEMP, "4.3.0",
                            "cannot open the queued message");
                continue;
            }
            nremote++;
        }
    }
    local_commit(j);
    if (nremote) {
        remote_groups(j);
        j->phase = 1; /* deliver_done starts the remote deliveries */
        return;
    }
    deliver_record(j);
}

/* Worker, phase 2: remote results are in; record everything. */
static void record_run(void *arg)
{
    deliver_record(arg);
}

/* --- remote deliveries (loop thread) ----------------------------------------- */

static void groups_free(struct qjob *j)
{
    for (size_t g = 0; g < j->ngroups; g++) {
        struct rgroup *rg = j->groups[g];
        if (rg->req) remote_cancel(rg->req);
        free(rg->domain);
        free(rg->rcpts);
        free(rg->notify);
        free(rg->orcpt);
        free(rg->outs);
        free(rg->res);
        remote_sender_clear(&rg->pre); /* unless remote_deliver took it */
        free(rg);
    }
    free(j->groups);
    j->groups = NULL;
    j->ngroups = 0;
}

static void deliver_done(void *arg);

static void remote_all_done(struct qjob *j)
{
    struct queue *q = j->q;
    groups_free(j);
    q->nremote--;
    q->ndeliv++;
    j->phase = 2;
    j->wj = work_submit(record_run, deliver_done, j);
}

static void group_done(void *arg)
{
    struct rgroup *g = arg;
    struct qjob *j = g->j;
    g->req = NULL;
    double d = time_mono() - g->t0;
    for (size_t k = 0; k < g->n; k++) {
        struct outcome *o = g->outs[k];
        const struct deliver_result *res = &g->res[k];
        static const char *const defdsn[] = {"2.0.0", "4.0.0", "5.0.0"};
        o->res = *res;
        if (!o->res.dsn[0]) str_copy(o->res.dsn, defdsn[res->status], sizeof o->res.dsn);
        if (!o->res.text[0]) str_copy(o->res.text, "delivery failed", sizeof o->res.text);
        if (!o->res.relay[0]) outcome_relay(o, "none");
        o->d = d;
        o->remote = 0;
    }
    if (--j->rpending == 0) remote_all_done(j);
}

static struct rgroup *group_for(struct qjob *j, const char *domain, int forward)
{
    for (size_t g = 0; g < j->ngroups; g++)
        if (str_ieq(j->groups[g]->domain, domain) && j->groups[g]->forward == forward)
            return j->groups[g];
    struct rgroup *rg = xcalloc(1, sizeof *rg);
    rg->j = j;
    rg->forward = forward;
    rg->domain = xstrdup(domain);
    str_lower(rg->domain);
    j->groups = xrealloc(j->groups, (j->ngroups + 1) * sizeof *j->groups);
    j->groups[j->ngroups++] = rg;
    return rg;
}

/* Worker, end of phase 0: group the remote targets by recipient domain, one
 * remote_job per domain (and per kind: a forward, a target our directory expanded
 * the recipient into, leaves with a rewritten sender; mail relayed as addressed does
 * not), and look up what each needs of the directory for its sender here rather
 * than in a worker job of remote_deliver's own. */
static void remote_groups(struct qjob *j)
{
    struct spool_env *env = j->env;
    for (size_t i = 0; i < env->nrcpts; i++)
        for (size_t k = 0; k < j->ro[i].n; k++) {
            struct outcome *o = &j->ro[i].o[k];
            if (!o->remote) continue;
            const char *at = strrchr(o->to, '@');
            struct rgroup *g = group_for(j, at ? at + 1 : "", !str_ieq(o->to, env->rcpts[i].addr));
            if (g->n == g->cap) {
                g->cap = g->cap ? g->cap * 2 : 4;
                g->rcpts = xrealloc(g->rcpts, g->cap * sizeof *g->rcpts);
                g->notify = xrealloc(g->notify, g->cap * sizeof *g->notify);
                g->orcpt = xrealloc(g->orcpt, g->cap * sizeof *g->orcpt);
                g->outs = xrealloc(g->outs, g->cap * sizeof *g->outs);
            }
            g->rcpts[g->n] = o->to;
            g->notify[g->n] = env->rcpts[i].notify;
            g->orcpt[g->n] = env->rcpts[i].orcpt;
            g->outs[g->n] = o;
            g->n++;
        }
    j->rpending = j->ngroups;
    for (size_t g = 0; g < j->ngroups; g++) {
        struct rgroup *rg = j->groups[g];
        rg->res = xcalloc(rg->n, sizeof *rg->res);
        rg->job = (struct remote_job){
            .id = j->id,
            .sender = env->sender ? env->sender : "",
            .domain = rg->domain,
            .rcpts = rg->rcpts,
            .nrcpts = rg->n,
            .notify = rg->notify,
            .orcpt = rg->orcpt,
            .envid = env->envid,
            .ret = env->ret,
            .body = env->body,
            .smtputf8 = env->smtputf8,
            .batv_sign = env->dsn_trusted,
            .auth_user = env->auth_user,
            .listener = env->listener,
            .forward = rg->forward,
            .content_fd = j->content.fd,
            .content_off = j->content.off,
            .size = env->size,
            .results = rg->res,
        };
        remote_sender_lookup(j->q->store, j->conf, &rg->job, &rg->pre);
        rg->job.pre = &rg->pre;
    }
}

/* Loop thread: start the remote deliveries remote_groups() prepared. */
static void remote_start(struct qjob *j)
{
    struct queue *q = j->q;
    q->ndeliv--;
    q->nremote++;
    j->rstarted = 1;
    for (size_t g = 0; g < j->ngroups; g++)
        j->groups[g]->t0 = time_mono();
    /* remote_deliver never calls back before it returns */
    for (size_t g = 0; g < j->ngroups; g++)
        j->groups[g]->req = remote_deliver(q->remote, &j->groups[g]->job, group_done, j->groups[g]);
}

/* --- delivery status notifications (loop thread, then a worker) ------------------ */

/* Worker, phase 4: record which notices are now queued, then drop the message when
 * nothing is left to do for it. */
static void dsn_record_run(void *arg)
{
    struct qjob *j = arg;
    struct queue *q = j->q;
    struct spool_env *env = job_load(j);
    if (!env) return;
    for (int k = DSN_FAILED; k <= DSN_DELIVERED; k++) {
        if (!j->dsn_queued[k]) continue;
        for (size_t i = 0; i < j->dsn_n[k]; i++)
            if (j->dsn_idx[k][i] < env->nrcpts) env->rcpts[j->dsn_idx[k][i]].notified |= DSN_BIT(k);
        if (k == DSN_DELAYED) env->delay_warned = 1;
    }
    size_t nqueued = 0;
    for (size_t i = 0; i < env->nrcpts; i++)
        if (env->rcpts[i].state == RCPT_ST_QUEUED) nqueued++;
    size_t *tmp = xcalloc(env->nrcpts ? env->nrcpts : 1, sizeof *tmp);
    int owed = dsn_allowed(env, NULL) &&
               (dsn_pending(env, DSN_FAILED, tmp) || dsn_pending(env, DSN_DELIVERED, tmp));
    free(tmp);
    if (!nqueued && !owed) {
        if (spool_remove(q->spool, j->id) == 0) log_info("qmgr", "%s: removed", j->id);
        j->removed = 1;
    } else if (spool_update(q->spool, env) != 0) {
        j->failed = 1;
    }
    spool_env_free(env);
}

static void deliver_done(void *arg);

static void dsn_queued_cb(void *arg, const char *new_id);

/* Queue the notices the sender is owed (dsn_plan); the job finishes when they are
 * durable (dsn_record_run). */
static void dsn_start(struct qjob *j)
{
    j->phase = 3;
    for (int k = DSN_FAILED; k <= DSN_DELIVERED; k++) {
        if (!j->dsn_n[k]) continue;
        struct dsn_cb *cb = &j->dsn_cb[k];
        cb->j = j;
        cb->kind = k;
        j->dsn_req[k] = dsn_queue(j->q->spool, j->conf, j->env, (enum dsn_kind)k, j->dsn_idx[k],
                                  j->dsn_n[k], dsn_queued_cb, cb);
        if (j->dsn_req[k]) j->dsn_outstanding++;
    }
    if (!j->dsn_outstanding) j->wj = work_submit(dsn_record_run, deliver_done, j);
}

static void dsn_queued_cb(void *arg, const char *new_id)
{
    struct dsn_cb *cb = arg;
    struct qjob *j = cb->j;
    j->dsn_req[cb->kind] = NULL;
    if (new_id) {
        j->dsn_queued[cb->kind] = 1;
        queue_add(j->q, new_id);
    }
    if (--j->dsn_outstanding == 0) j->wj = work_submit(dsn_record_run, deliver_done, j);
}

static void deliver_done(void *arg)
{
    struct qjob *j = arg;
    struct queue *q = j->q;
    struct qent *e = j->e;
    j->wj = NULL;
    if (j->phase == 1 && !j->rstarted) {
        remote_start(j);
        return;
    }
    if (j->phase < 3 && j->env && !j->failed &&
        (j->dsn_n[DSN_FAILED] || j->dsn_n[DSN_DELAYED] || j->dsn_n[DSN_DELIVERED])) {
        dsn_start(j);
        return;
    }
    job_unlink(q, j);
    q->ndeliv--;
    e->busy = 0;
    if (j->announced) e->announced = 1;
    if (j->gone || j->removed) {
        entry_free(q, e);
    } else {
        if (j->held) e->held = 1;
        if (j->loaded) e->held_known = 1;
        if (j->failed)
            e->due = time(NULL) + (q->conf->retry_first > 0 ? q->conf->retry_first : 60);
        else if (!j->held)
            e->due = j->next_due;
        int dsn_failed = 0;
        for (int k = DSN_FAILED; j->phase == 3 && k <= DSN_DELIVERED; k++)
            if (j->dsn_n[k] && !j->dsn_queued[k]) dsn_failed = 1;
        if (dsn_failed && !j->failed && !j->held) {
            /* A notice could not be queued (disk full...) and the message waits for
             * it: back off as for a deferred recipient. Without this a message with
             * no recipient left would be due at once, again and again. */
            time_t at = time(NULL) + retry_delay(q->conf, ++e->dsn_fails);
            if (!e->due || e->due > at) e->due = at;
        } else if (j->phase == 3) {
            e->dsn_fails = 0;
        }
        entry_maint(q, e);
    }
    job_free(j);
    arm(q, 0);
}

static void start_delivery(struct queue *q, struct qent *e)
{
    struct qjob *j = job_new(q, e, JOB_DELIVER);
    j->announce = !e->announced;
    j->flush = e->flush;
    e->flush = 0;
    q->ndeliv++;
    j->wj = work_submit(deliver_run, deliver_done, j);
}

/* --- admin operations (worker side) ---------------------------------------- */

static void remove_run(void *arg)
{
    struct qjob *j = arg;
    if (spool_remove(j->q->spool, j->id) == 0)
        log_info("qmgr", "%s: removed (deleted by admin)", j->id);
    else
        j->failed = 1;
}

static void hold_run(void *arg)
{
    struct qjob *j = arg;
    struct spool_env *env = job_load(j);
    if (!env) return;
    if (spool_set_held(j->q->spool, env, j->hold) < 0) {
        log_err("qmgr", "%s: cannot update envelope", j->id);
        j->failed = 1;
        spool_env_free(env);
        return;
    }
    log_info("qmgr", "%s: %s by admin", j->id, j->hold ? "held" : "released");
    j->held = env->held;
    spool_env_free(env);
}

static void admin_done(void *arg)
{
    struct qjob *j = arg;
    struct queue *q = j->q;
    struct qent *e = j->e;
    job_unlink(q, j);
    e->busy = 0;
    if (j->kind == JOB_REMOVE || j->gone) {
        entry_free(q, e); /* a failed removal is logged by the spool; forget it */
    } else {
        if (!j->failed) {
            e->held = j->held;
            e->held_known = 1;
        }
        if (!e->held) e->due = 0;
        entry_maint(q, e);
    }
    job_free(j);
    arm(q, 0);
}

/* Start the pending admin operation of e, if any and e is idle. */
static void entry_maint(struct queue *q, struct qent *e)
{
    if (e->busy) return;
    if (e->deleted) {
        struct qjob *j = job_new(q, e, JOB_REMOVE);
        j->wj = work_submit(remove_run, admin_done, j);
    } else if (e->hold_op >= 0) {
        struct qjob *j = job_new(q, e, JOB_HOLD);
        j->hold = e->hold_op;
        e->hold_op = -1;
        j->wj = work_submit(hold_run, admin_done, j);
    }
}

/* --- the run --------------------------------------------------------------- */

static void run_queue(struct queue *q)
{
    time_t now = time(NULL);
    int max = q->conf->workers > 0 ? q->conf->workers : 1;
    time_t next = 0;
    int have_next = 0;
    for (struct qent *e = q->head; e; e = e->next) {
        if (e->busy || e->held || e->deleted || e->hold_op >= 0) continue;
        if (e->flush || e->due <= now) {
            if (q->ndeliv < max && q->nremote < SCHED_REMOTE_MAX) start_delivery(q, e);
            continue; /* else a finishing job runs the queue again */
        }
        if (!have_next || e->due < next) next = e->due;
        have_next = 1;
    }
    if (have_next) arm(q, next - now);
}

static void scan_cb(void *arg, const char *id)
{
    entry_add(arg, id);
}

static void pickup_queued(void *arg, const char *id)
{
    queue_accept(arg, id);
}

struct queue *queue_new(struct event_base *base, const struct kconf *conf, struct spool *s,
                        struct store *st)
{
    struct queue *q = xcalloc(1, sizeof *q);
    q->base = base;
    q->conf = conf_ref(conf);
    q->spool = s;
    q->store = st;
    q->ev_run = evtimer_new(base, on_run, q);
    q->pickup = pickup_new(base, conf, s, pickup_queued, q);
    if (!q->ev_run || !q->pickup) {
        log_err("qmgr", "cannot create scheduler timers");
        queue_free(q);
        return NULL;
    }
    /* all state comes from the spool: the scheduler survives restarts */
    if (spool_scan(s, scan_cb, q) != 0) log_err("qmgr", "cannot scan the queue");
    size_t n = 0;
    for (struct qent *e = q->head; e; e = e->next)
        n++;
    log_info("qmgr", "scheduler started: %zu message%s in the queue", n, n == 1 ? "" : "s");
    pickup_now(q->pickup);
    arm(q, 0);
    return q;
}

void queue_free(struct queue *q)
{
    if (!q) return;
    while (q->jobs) {
        struct qjob *j = q->jobs;
        job_unlink(q, j);
        if (j->wj) work_cancel(j->wj);
        job_free(j);
    }
    while (q->head)
        entry_free(q, q->head);
    if (q->ev_run) event_free(q->ev_run);
    pickup_free(q->pickup);
    conf_unref(q->conf);
    free(q);
}

void queue_set_remote(struct queue *q, struct remote *r)
{
    q->remote = r;
}

void queue_set_conf(struct queue *q, const struct kconf *conf)
{
    const struct kconf *old = q->conf; /* freed here unless others still hold it */
    q->conf = conf_ref(conf);
    conf_unref(old);
    pickup_set_conf(q->pickup, conf);
    arm(q, 0);
}

void queue_add(struct queue *q, const char *id)
{
    struct qent *e = entry_add(q, id);
    e->due = 0;
    arm(q, 0);
}

void queue_set_intake(struct queue *q, void (*intake)(void *arg, const char *id), void *arg)
{
    q->intake = intake;
    q->intake_arg = arg;
}

void queue_accept(struct queue *q, const char *id)
{
    if (q->intake)
        q->intake(q->intake_arg, id);
    else
        queue_add(q, id);
}

void queue_flush(struct queue *q)
{
    for (struct qent *e = q->head; e; e = e->next) {
        e->flush = 1;
        e->due = 0;
    }
    log_info("qmgr", "queue flushed by admin");
    arm(q, 0);
}

/* Deletion is done by a worker job; the reply goes out at once (the message is
 * already out of the scheduler's reach). A crash before the job ran keeps it. */
int queue_delete(struct queue *q, const char *id)
{
    if (strcmp(id, "ALL") == 0) {
        for (struct qent *e = q->head, *next; e; e = next) {
            next = e->next; /* entry_maint never frees synchronously */
            e->deleted = 1;
            entry_maint(q, e);
        }
        return 0;
    }
    struct qent *e = entry_find(q, id);
    if (!e || e->deleted) return -1;
    e->deleted = 1;
    entry_maint(q, e);
    return 0;
}

int queue_hold(struct queue *q, const char *id)
{
    struct qent *e = entry_find(q, id);
    if (!e || e->deleted) return -1;
    e->held = 1;
    e->held_known = 1;
    e->hold_op = 1;
    entry_maint(q, e);
    return 0;
}

int queue_release(struct queue *q, const char *id, int env_held)
{
    struct qent *e = entry_find(q, id);
    if (!e || e->deleted) return -1;
    /* what the scheduler knows wins over the caller's read, which may be older; not
     * read since the start: the envelope's word (unreadable: released anyway, the
     * job reports it) */
    int held = e->hold_op >= 0 ? e->hold_op : e->held_known ? e->held : env_held;
    if (!held) return 1;
    e->hold_op = 0;
    entry_maint(q, e);
    return 0;
}

void queue_pickup(struct queue *q)
{
    pickup_now(q->pickup);
}

/* --- metrics ------------------------------------------------------------------- */

/* When the message came: queue IDs begin with 52 bits of microseconds since the epoch
 * (spool_new_id()). 0 when id is not one. */
static time_t id_time(const char *id)
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    unsigned __int128 v = 0;
    for (size_t i = 0; i < QUEUE_ID_LEN; i++) {
        const char *p = id[i] ? strchr(alphabet, id[i]) : NULL;
        if (!p) return 0;
        v = v * 32 + (unsigned)(p - alphabet);
    }
    return (time_t)((uint64_t)(v >> 18) / 1000000u);
}

void queue_metrics(void *arg)
{
    struct queue *q = arg;
    time_t now = time(NULL);
    double st[4] = {0}, age[4] = {0};
    for (const struct qent *e = q->head; e; e = e->next) {
        if (e->deleted) continue;
        st[e->busy ? 0 : e->held ? 3 : e->due > now ? 2 : 1]++;
        time_t t = id_time(e->id), a = t && now > t ? now - t : 0;
        age[a < 300 ? 0 : a < 3600 ? 1 : a < 86400 ? 2 : 3]++;
    }
    static const char *const stn[] = {"active", "ready", "deferred", "held"};
    static const char *const agen[] = {"5m", "1h", "1d", "older"};
    for (int i = 0; i < 4; i++) {
        metrics_set(MET_QUEUE_MESSAGES, st[i], stn[i]);
        metrics_set(MET_QUEUE_AGE, age[i], agen[i]);
    }
}
