/* sched_int.h: what the scheduler (sched.c) and its delivery attempts (attempt.c)
 * share: the index entry, the job, the queue, and a job's per-target outcomes. Not
 * for other modules: queue.h is the queue's interface. */
#ifndef KURIER_SCHED_INT_H
#define KURIER_SCHED_INT_H

#include <time.h>

#include "core/core.h"
#include "deliver/deliver.h"
#include "queue/queue.h"

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

/* attempt.c: the delivery attempt on a worker */
/* Worker: the job's envelope, or NULL (gone, corrupt: j->gone; j->failed: later). */
struct spool_env *job_load(struct qjob *j);
/* Worker, end of phase 0: the remote targets grouped per domain, senders looked up. */
void remote_groups(struct qjob *j);
/* Phase 0: load, route every due recipient, deliver local targets; remote targets
 * are grouped for the loop thread (phase 1). */
void deliver_run(void *arg);
/* Phase 2: the remote results are in; record everything. */
void record_run(void *arg);
void ro_free(struct qjob *j);
/* The outcome's next hop as logged ("none" when there was none). */
void outcome_relay(struct outcome *o, const char *relay);
/* Seconds until the next try after attempts failed tries. */
time_t retry_delay(const struct kconf *c, int attempts);

#endif
