/* complaints.c: the intake of abuse complaints and the record of what each account
 * sent. Every accepted message passes here on a worker before it is scheduled
 * (queue_set_intake); parsing is arf.c's, the table store/'s. Never drops mail: the
 * message is queued whatever happens here. */
#include "core/compat.h"

#include <errno.h>
#include <event2/event.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "abuse/complaints.h"
#include "core/core.h"
#include "queue/queue.h"
#include "store/store.h"

#define HEADER_READ 65536 /* bytes read of a message that is only recorded */
#define PURGE_EVERY 3600  /* seconds between purges of the record */

struct cjob {
    struct complaints *cx;
    struct cjob *prev, *next;
    struct work_job *wj;      /* NULL once the worker part is done */
    struct event *hold;       /* test hook: the result waits */
    const struct kconf *conf; /* a reference, for the worker */
    char id[QUEUE_ID_LEN + 1];
    /* results, for the loop thread */
    char err[256];      /* the message could not be read: why */
    int report;         /* sent to a complaint address */
    int recorded;       /* sent by an account: recorded (1), recording failed (-1) */
    char account[320];  /* who sent it (recorded), or whom the complaint names */
    int match;          /* store_sent_find: 1 by queue ID, 2 by Message-ID, 0 none, -1 error */
    struct complaint c; /* the report */
    char rcpt[320];     /* the complaint address it went to */
};

struct complaints {
    struct event_base *base;
    const struct kconf *const *conf;
    struct spool *spool;
    struct store *store;
    struct queue *q;
    complaint_cb cb;
    void *cb_arg;
    struct cjob *jobs; /* running */
    struct event *ev_purge;
    struct work_job *purge_job;
    long long purge_before; /* for the purge on the worker */
    int test_delay;         /* KURIER_TEST_DELAY "intake=MS" (tests only), 0 = none */
};

/* 1 when address (as in the envelope) is one of the space-separated list. */
static int listed(const char *list, const char *address)
{
    size_t n = strlen(address);
    for (const char *p = list; p && *p;) {
        size_t k = strcspn(p, " ");
        if (k == n && k && strncasecmp(p, address, n) == 0) return 1;
        p += k;
        while (*p == ' ')
            p++;
    }
    return 0;
}

/* Read up to max bytes of the content into a new buffer (*n set). */
static char *read_head(const struct spool_content *c, size_t max, size_t *n)
{
    if ((long long)max > c->len) max = (size_t)c->len;
    char *b = xmalloc(max + 1);
    size_t got = 0;
    while (got < max) {
        ssize_t r = pread(c->fd, b + got, max - got, (off_t)(c->off + (long long)got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    b[got] = '\0';
    *n = got;
    return b;
}

/* Worker: load the envelope, record the sender, parse a report. */
static void job_run(void *arg)
{
    struct cjob *j = arg;
    struct complaints *cx = j->cx;
    const struct kconf *conf = j->conf;
    struct spool_env *env = spool_load(cx->spool, j->id, j->err, sizeof j->err);
    if (!env) return;
    j->err[0] = '\0';
    for (size_t i = 0; i < env->nrcpts && !j->report; i++) {
        const struct spool_rcpt *r = &env->rcpts[i];
        const char *hit = listed(conf->complaint_addresses, r->orig)   ? r->orig
                          : listed(conf->complaint_addresses, r->addr) ? r->addr
                                                                       : NULL;
        if (hit) {
            j->report = 1;
            str_copy(j->rcpt, hit, sizeof j->rcpt);
        }
    }
    int local = env->proto && strcmp(env->proto, "local") == 0;
    int record = env->auth_user || local;
    if (!record && !j->report) {
        spool_env_free(env);
        return;
    }
    struct spool_content content;
    if (spool_open_content(cx->spool, j->id, &content) != 0) {
        snprintf(j->err, sizeof j->err, "cannot open the queued message");
        spool_env_free(env);
        return;
    }
    size_t n = 0;
    char *msg = read_head(&content, j->report ? COMPLAINT_MAX_INPUT : HEADER_READ, &n);
    close(content.fd);
    if (record) {
        struct store_sent s = {.time = (long long)env->arrival};
        char userid[128];
        complaint_scan_headers(msg, n, conf->hostname, s.queue_id, s.message_id, userid,
                               sizeof userid);
        str_copy(s.queue_id, j->id, sizeof s.queue_id);
        str_copy(s.account,
                 env->auth_user ? env->auth_user
                 : userid[0]    ? userid
                                : "local",
                 sizeof s.account);
        str_copy(s.sender, env->sender ? env->sender : "", sizeof s.sender);
        j->recorded = store_sent_add(cx->store, &s) == 0 ? 1 : -1;
        if (!j->report) str_copy(j->account, s.account, sizeof j->account);
    }
    if (j->report) {
        struct complaint *c = &j->c;
        if (complaint_parse(msg, n, conf->hostname, c) != COMPLAINT_NONE &&
            (c->queue_id[0] || c->message_id[0])) {
            struct store_sent s;
            j->match = store_sent_find(cx->store, c->queue_id, c->message_id, &s);
            if (j->match > 0) {
                str_copy(j->account, s.account, sizeof j->account);
                /* the record knows both: complete what the report lacked */
                if (!c->queue_id[0]) str_copy(c->queue_id, s.queue_id, sizeof c->queue_id);
                if (!c->message_id[0]) str_copy(c->message_id, s.message_id, sizeof c->message_id);
            }
        }
        if (c->format != COMPLAINT_NONE &&
            store_complaint_add(
                cx->store, &(struct store_complaint){.account = j->match > 0 ? j->account : "",
                                                     .queue_id = c->queue_id,
                                                     .message_id = c->message_id,
                                                     .format = complaint_format_name(c->format),
                                                     .feedback_type = c->feedback_type,
                                                     .source_ip = c->source_ip,
                                                     .reporter = c->reporter,
                                                     .report_id = j->id,
                                                     .time = (long long)time(NULL)}) != 0)
            snprintf(j->err, sizeof j->err, "cannot record the complaint in the directory");
    }
    free(msg);
    spool_env_free(env);
}

static char *esc(char *dst, size_t size, const char *s)
{
    return log_escape(dst, size, s, strlen(s));
}

/* Loop thread: log, hand a match on, then schedule the message as usual. */
static void job_finish(struct cjob *j)
{
    struct complaints *cx = j->cx;
    if (j->prev)
        j->prev->next = j->next;
    else
        cx->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    if (j->err[0]) log_warn("complaints", "%s: %s", j->id, j->err);
    if (j->recorded < 0)
        log_warn("complaints", "%s: cannot record the sender %s in the directory", j->id,
                 j->account);
    if (j->report) {
        const struct complaint *c = &j->c;
        char rcpt[400], rep[400], qid[64], mid[400], ft[64], ip[100], ua[200];
        esc(rcpt, sizeof rcpt, j->rcpt);
        esc(rep, sizeof rep, c->reporter);
        esc(qid, sizeof qid, c->queue_id);
        esc(mid, sizeof mid, c->message_id);
        esc(ft, sizeof ft, c->feedback_type);
        esc(ip, sizeof ip, c->source_ip);
        esc(ua, sizeof ua, c->user_agent);
        if (c->format == COMPLAINT_NONE) {
            log_warn("complaints",
                     "%s: unmatched report to %s from <%s>: not a report kurier can read "
                     "(ARF or SpamCop); delivered for a human",
                     j->id, rcpt, rep);
        } else if (j->match <= 0) {
            log_warn("complaints",
                     "%s: unmatched %s complaint to %s from <%s>: queue_id=%s message_id=%s%s; "
                     "delivered for a human",
                     j->id, complaint_format_name(c->format), rcpt, rep, qid[0] ? qid : "none",
                     mid[0] ? mid : "none",
                     j->match < 0 ? " (directory lookup failed)" : " (not in the record)");
        } else {
            char acc[400];
            esc(acc, sizeof acc, j->account);
            log_warn("complaints",
                     "%s: %s complaint against account %s matched by %s: queue_id=%s "
                     "message_id=%s feedback_type=%s source_ip=%s user_agent=%s reporter=<%s>",
                     j->id, complaint_format_name(c->format), acc,
                     j->match == 1 ? "queue-id" : "message-id", qid, mid[0] ? mid : "none",
                     ft[0] ? ft : "none", ip[0] ? ip : "none", ua[0] ? ua : "none", rep);
            if (cx->cb) cx->cb(cx->cb_arg, j->account, c);
        }
    }
    queue_add(cx->q, j->id);
    if (j->hold) event_free(j->hold);
    conf_unref(j->conf);
    free(j);
}

static void job_held(evutil_socket_t fd, short what, void *arg)
{
    job_finish(arg);
}

static void job_done(void *arg)
{
    struct cjob *j = arg;
    j->wj = NULL;
    if (j->cx->test_delay > 0) {
        j->hold = evtimer_new(j->cx->base, job_held, j);
        int ms = j->cx->test_delay;
        struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
        evtimer_add(j->hold, &tv);
        return;
    }
    job_finish(j);
}

void complaints_accepted(void *arg, const char *id)
{
    struct complaints *cx = arg;
    struct cjob *j = xcalloc(1, sizeof *j);
    j->cx = cx;
    j->conf = conf_ref(*cx->conf);
    str_copy(j->id, id, sizeof j->id);
    j->next = cx->jobs;
    if (cx->jobs) cx->jobs->prev = j;
    cx->jobs = j;
    j->wj = work_submit(job_run, job_done, j);
}

/* --- purge of the record ------------------------------------------------------ */

static void purge_run(void *arg)
{
    struct complaints *cx = arg;
    if (store_sent_purge(cx->store, cx->purge_before) != 0)
        log_warn("complaints", "cannot purge the sent-mail record");
}

static void purge_done(void *arg)
{
    struct complaints *cx = arg;
    cx->purge_job = NULL;
    evtimer_add(cx->ev_purge, &(struct timeval){.tv_sec = PURGE_EVERY});
}

static void purge_fire(evutil_socket_t fd, short what, void *arg)
{
    struct complaints *cx = arg;
    int keep = (*cx->conf)->complaint_retention;
    cx->purge_before = (long long)time(NULL) - (keep > 0 ? keep : 30 * 86400);
    cx->purge_job = work_submit(purge_run, purge_done, cx);
}

struct complaints *complaints_new(struct event_base *base, const struct kconf *const *conf,
                                  struct spool *sp, struct store *st, struct queue *q,
                                  complaint_cb cb, void *arg)
{
    struct complaints *cx = xcalloc(1, sizeof *cx);
    cx->base = base;
    cx->conf = conf;
    cx->spool = sp;
    cx->store = st;
    cx->q = q;
    cx->cb = cb;
    cx->cb_arg = arg;
    cx->ev_purge = evtimer_new(base, purge_fire, cx);
    if (!cx->ev_purge) {
        free(cx);
        return NULL;
    }
    evtimer_add(cx->ev_purge, &(struct timeval){.tv_sec = 1});
    /* the test hook of glue.h's KURIER_TEST_DELAY, for the intake: "intake=MS" */
    const char *d = getenv("KURIER_TEST_DELAY");
    const char *in = d ? strstr(d, "intake=") : NULL;
    if (in) {
        cx->test_delay = atoi(in + 7);
        log_warn("kurierd",
                 "KURIER_TEST_DELAY: accepted messages wait %d ms before they are "
                 "queued (tests only)",
                 cx->test_delay);
    }
    return cx;
}

void complaints_free(struct complaints *cx)
{
    if (!cx) return;
    while (cx->jobs) {
        struct cjob *j = cx->jobs;
        cx->jobs = j->next;
        if (j->wj) work_cancel(j->wj);
        if (j->hold) event_free(j->hold);
        conf_unref(j->conf);
        free(j);
    }
    if (cx->purge_job) work_cancel(cx->purge_job);
    event_free(cx->ev_purge);
    free(cx);
}
