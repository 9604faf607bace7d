/* sched.c: the scheduler. Keeps a small in-memory index of queued messages, starts
 * delivery attempts (attempt.c, on a worker) and their remote deliveries, retries with
 * backoff, expiry, DSNs and admin operations; maildrop pickup is pickup.c's. Loop
 * thread only; all disk and directory work runs in worker jobs. */
#include "core/compat.h"

#include <errno.h>
#include <event2/event.h>
#include <unistd.h>

#include "core/core.h"
#include "core/metrics.h"
#include "deliver/deliver.h"
#include "queue/queue.h"
#include "queue/sched_int.h"
#include "route/route.h"

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
