/* attempt.c: one delivery attempt of a queued message, on a worker: route every
 * due recipient, write the local copies, then (after the loop thread's remote
 * deliveries) record the outcomes in the envelope, log them as Postfix does, and plan
 * the notices (DSN) the sender gets. The scheduler (sched.c) decides when. */
#include "core/compat.h"

#include <errno.h>
#include <unistd.h>

#include "core/metrics.h"
#include "queue/sched_int.h"
#include "route/route.h"

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
struct spool_env *job_load(struct qjob *j)
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
void remote_groups(struct qjob *j)
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

static void outcome_set(struct outcome *o, enum deliver_status st, const char *dsn,
                        const char *text)
{
    o->res.status = st;
    str_copy(o->res.dsn, dsn, sizeof o->res.dsn);
    str_copy(o->res.text, text, sizeof o->res.text);
}

void outcome_relay(struct outcome *o, const char *relay)
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

time_t retry_delay(const struct kconf *c, int attempts)
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

void ro_free(struct qjob *j)
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
    struct strs lines = {0};
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
            strs_add(&lines, line);
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
            strs_free(&lines);
            return;
        }
        j->removed = 1;
    } else if (changed && spool_update(q->spool, env) != 0) {
        log_err("qmgr", "%s: cannot record delivery status; will retry", j->id);
        j->failed = 1;
        strs_free(&lines);
        return;
    }
    for (size_t i = 0; i < lines.n; i++) {
        char *tab = strchr(lines.v[i], '\t');
        *tab = '\0';
        log_info(lines.v[i], "%s", tab + 1);
    }
    strs_free(&lines);
    if (j->removed) log_info("qmgr", "%s: removed", j->id);
}

/* Worker, phase 0: load, route every due recipient, deliver local targets. Remote
 * targets are left for the loop thread (phase 1, remote_start). */
void deliver_run(void *arg)
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
void record_run(void *arg)
{
    deliver_record(arg);
}
