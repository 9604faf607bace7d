/* remote.c: remote delivery (deliver.h): asks route/ for the next hops, resolves
 * hosts, keeps connections per destination with a concurrency limit, and turns
 * replies into per-recipient results. Which hops and in what order is route/'s; the
 * SMTP dialogue is smtp/client.c's; DSNs are queue/'s. Loop thread. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>

#include "core/core.h"
#include "deliver/deliver.h"
#include "dns/dns.h"
#include "egress/bench.h"
#include "egress/replies.h"
#include "route/route.h"
#include "smtp/smtp.h"

#define MAX_ADDRS 8 /* addresses per family and host */

/* route/ gives conf's TLS levels; the client takes smtp/'s: the same order. */
_Static_assert((int)CONF_TLS_NONE == (int)SMTP_CTLS_NONE &&
                   (int)CONF_TLS_MAY == (int)SMTP_CTLS_MAY &&
                   (int)CONF_TLS_ENCRYPT == (int)SMTP_CTLS_ENCRYPT &&
                   (int)CONF_TLS_VERIFY == (int)SMTP_CTLS_VERIFY,
               "enum conf_out_tls and enum smtp_client_tls differ");

struct dest;

/* An established connection: in use by one request, or idle in its dest. */
struct conn {
    struct smtp_client *c;
    struct dest *d;
    struct remote *r;
    struct event *ev_idle;
    struct conn *next;
};

/* A destination: host, port, TLS policy and login. Connections to it are reused
 * and limited to outbound { concurrency }. */
struct dest {
    char *key;
    int active; /* slots held by requests: resolving, connecting or sending */
    int limit;  /* 1 while its source address is slowed down for it, else 0 (conf) */
    int pin;    /* > 0 while a caller up the stack still uses it */
    struct conn *idle;
    struct remote_req *wait_head, *wait_tail;
    struct dest *prev, *next;
};

struct remote {
    struct event_base *base;
    const struct kconf *conf;
    struct dns *dns;
    struct store *st;
    struct smtp_client_tls_ctx *tls;
    struct dest *dests;
    struct remote_req *reqs;
    struct smtp_client **dead; /* freed on the next loop turn, outside their callbacks */
    size_t ndead;
    struct event *ev_reap;
    int freeing;
    void (*observe)(void *arg, const char *account, const char *id, size_t replies, size_t unknown,
                    size_t blocked);
    void *observe_arg;
};

enum req_state { RQ_ROUTE = 0, RQ_MX, RQ_WAIT, RQ_ADDR, RQ_CONNECT, RQ_SEND, RQ_DONE };

struct remote_req {
    struct remote *r;
    const struct kconf *conf; /* the configuration when it started (a reference) */
    struct remote_job *job;
    void (*done)(void *arg);
    void *arg;
    enum req_state state;
    /* the sender's relay route, BATV and SRS (looked up on a worker) */
    struct work_job *wj;
    struct remote_sender snd;
    /* the next hops (route/), tried in turn from hi */
    struct route_next route;
    size_t hi;
    /* the current host */
    struct dest *dest;
    int slot; /* holds one of dest->active */
    struct dns_query *qmx, *qa, *qaaaa;
    struct sockaddr_storage a4[MAX_ADDRS], a6[MAX_ADDRS], addrs[2 * MAX_ADDRS];
    size_t na4, na6, naddrs, ai;
    int a_done, aaaa_done;
    enum dns_status a_st, aaaa_st;
    int no_reuse, tls_fallback, reused;
    struct smtp_client *connecting;
    struct conn *conn;
    struct smtp_client_msg msg;
    struct smtp_client_reply *rreply;
    /* egress: the mail's pool (in conf; NULL: the system's source address), the
     * current host's source (in conf), and the recipients still to send (indexes
     * into job; all at first, fewer after a blocklist refusal of some) */
    const struct conf_egress_pool *pool;
    const struct conf_egress_source *src;
    size_t *idx, nidx;
    const char **srcpts, **sorcpt;
    unsigned *snotify;
    int any_benched, fell_back, retries;
    int src_kept; /* woken from a destination's wait: keep the source picked before */
    /* the last failure: every recipient's result when no host took the message */
    enum deliver_status fail_st;
    char fail_dsn[8];
    char fail_text[512];
    char fail_relay[300];
    int fail_code;
    const char *fail_stage;
    struct event *ev_done;
    struct remote_req *prev, *next;
    struct remote_req *wnext; /* in dest's wait queue */
};

static void host_start(struct remote_req *q);
static void host_resolve(struct remote_req *q);
static void connect_next(struct remote_req *q);
static void send_msg(struct remote_req *q, struct conn *cn);

/* --- small helpers ---------------------------------------------------------- */

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct remote *r = arg;
    size_t n = r->ndead;
    struct smtp_client **v = r->dead;
    r->dead = NULL;
    r->ndead = 0;
    for (size_t i = 0; i < n; i++)
        smtp_client_free(v[i]);
    free(v);
}

/* Free a client on the next loop turn: we may be inside its callback. */
static void bury(struct remote *r, struct smtp_client *c)
{
    if (!c) return;
    r->dead = xrealloc(r->dead, (r->ndead + 1) * sizeof *r->dead);
    r->dead[r->ndead++] = c;
    struct timeval tv = {0, 0};
    evtimer_add(r->ev_reap, &tv);
}

/* snprintf that cuts long peer texts silently (results have fixed sizes). */
static void fmt_to(char *dst, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fmt_to(char *dst, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, size, fmt, ap);
    va_end(ap);
    if (n < 0 && size) dst[0] = '\0';
}

/* "mx.example.org[192.0.2.7]:25" -> "mx.example.org[192.0.2.7]" */
static void peer_noport(char *dst, size_t size, const char *peer)
{
    str_copy(dst, peer ? peer : "", size);
    char *rb = strrchr(dst, ']');
    if (rb && rb[1] == ':') rb[1] = '\0';
}

/* "550 5.1.1 text" from a reply, without repeating what the text already says. */
static void fmt_reply(char *dst, size_t size, const struct smtp_client_reply *rp)
{
    char code[8];
    snprintf(code, sizeof code, "%d", rp->code);
    const char *t = rp->text;
    size_t el = strlen(rp->enh);
    if (strncmp(t, code, 3) == 0)
        str_copy(dst, t, size);
    else if (el && strncmp(t, rp->enh, el) != 0)
        fmt_to(dst, size, "%d %s %s", rp->code, rp->enh, t);
    else
        fmt_to(dst, size, "%d %s", rp->code, t);
}

/* The Postfix-shaped diagnostic for a reply or a local failure (logs and DSNs). */
static void fmt_diag(char *dst, size_t size, const char *peer, const struct smtp_client_reply *rp)
{
    char host[300], rep[512];
    peer_noport(host, sizeof host, peer);
    const char *stage = rp->stage ? rp->stage : "";
    if (rp->code > 0) {
        fmt_reply(rep, sizeof rep, rp);
        if (strcmp(stage, "greeting") == 0 || strcmp(stage, "connect") == 0)
            fmt_to(dst, size, "host %s refused to talk to me: %s", host, rep);
        else if (strcmp(stage, "end of data") == 0)
            fmt_to(dst, size, "host %s said: %s (in reply to end of DATA command)", host, rep);
        else
            fmt_to(dst, size, "host %s said: %s (in reply to %s command)", host, rep, stage);
    } else if (strcmp(stage, "connect") == 0) {
        str_copy(dst, rp->text, size); /* the client says "connect to H[IP]:25: why" */
    } else if (rp->enh[0] == '5') {
        fmt_to(dst, size, "refused to send to %s: %s", host, rp->text);
    } else {
        fmt_to(dst, size, "conversation with %s failed at %s: %s", host,
               *stage ? stage : "an unknown stage", rp->text);
    }
}

static void result_set(struct deliver_result *res, enum deliver_status st, const char *dsn,
                       int code, const char *stage, const char *relay, const char *text)
{
    res->status = st;
    str_copy(res->dsn, dsn, sizeof res->dsn);
    str_copy(res->text, text, sizeof res->text);
    str_copy(res->relay, relay, sizeof res->relay);
    res->code = code;
    res->stage = stage;
}

/* Remember the latest failure (it becomes everyone's result if nothing succeeds). */
static void fail_set(struct remote_req *q, enum deliver_status st, const char *dsn, int code,
                     const char *stage, const char *relay, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static void fail_set(struct remote_req *q, enum deliver_status st, const char *dsn, int code,
                     const char *stage, const char *relay, const char *fmt, ...)
{
    q->fail_st = st;
    str_copy(q->fail_dsn, dsn, sizeof q->fail_dsn);
    q->fail_code = code;
    q->fail_stage = stage;
    str_copy(q->fail_relay, relay ? relay : "", sizeof q->fail_relay);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(q->fail_text, sizeof q->fail_text, fmt, ap);
    va_end(ap);
    if (n < 0) str_copy(q->fail_text, "delivery failed", sizeof q->fail_text);
}

/* A failure reported by the client: temporary unless the server said 5xx outside
 * STARTTLS/AUTH (a login problem is ours to fix, never the sender's). */
static void fail_from_reply(struct remote_req *q, const char *peer,
                            const struct smtp_client_reply *rp)
{
    char text[512];
    fmt_diag(text, sizeof text, peer, rp);
    const char *stage = rp->stage ? rp->stage : "";
    int perm = rp->code >= 500 && strcmp(stage, "AUTH") != 0 && strcmp(stage, "STARTTLS") != 0;
    const char *dsn = rp->enh[0] ? rp->enh : perm ? "5.0.0" : "4.4.2";
    if (!perm && dsn[0] == '5') dsn = rp->code == 0 ? "4.4.2" : "4.7.0";
    if (perm && dsn[0] != '5') dsn = "5.0.0";
    if (rp->code == 0 && strcmp(stage, "connect") == 0) dsn = "4.4.1";
    fail_set(q, perm ? DELIVER_PERM : DELIVER_TEMP, dsn, rp->code, rp->stage, peer, "%s", text);
}

/* --- destinations and connections -------------------------------------------- */

static struct dest *dest_get(struct remote *r, const char *key)
{
    for (struct dest *d = r->dests; d; d = d->next)
        if (strcmp(d->key, key) == 0) return d;
    struct dest *d = xcalloc(1, sizeof *d);
    d->key = xstrdup(key);
    d->next = r->dests;
    if (r->dests) r->dests->prev = d;
    r->dests = d;
    return d;
}

static void dest_maybe_free(struct remote *r, struct dest *d)
{
    if (d->active || d->pin || d->idle || d->wait_head) return;
    if (d->prev)
        d->prev->next = d->next;
    else
        r->dests = d->next;
    if (d->next) d->next->prev = d->prev;
    free(d->key);
    free(d);
}

static void wait_remove(struct dest *d, struct remote_req *q)
{
    struct remote_req **pp = &d->wait_head, *prev = NULL;
    while (*pp && *pp != q) {
        prev = *pp;
        pp = &(*pp)->wnext;
    }
    if (!*pp) return;
    *pp = q->wnext;
    if (d->wait_tail == q) d->wait_tail = prev;
    q->wnext = NULL;
}

/* A slot or an idle connection became free: the first waiter goes on. */
static void dest_wake(struct remote *r, struct dest *d)
{
    if (r->freeing) return;
    int limit = d->limit ? d->limit : r->conf->out_concurrency > 0 ? r->conf->out_concurrency : 1;
    d->pin++;
    while (d->wait_head && (d->idle || d->active < limit)) {
        struct remote_req *w = d->wait_head;
        wait_remove(d, w);
        w->dest = NULL;
        host_start(w); /* finds the idle connection or takes the slot */
    }
    d->pin--;
}

/* Give back q's slot (and forget the destination). */
static void slot_release(struct remote_req *q)
{
    struct dest *d = q->dest;
    if (!d) return;
    q->dest = NULL;
    d->pin++;
    if (q->slot) {
        q->slot = 0;
        d->active--;
        dest_wake(q->r, d);
    }
    d->pin--;
    dest_maybe_free(q->r, d);
}

static void conn_free(struct conn *cn)
{
    if (!cn) return;
    if (cn->ev_idle) event_free(cn->ev_idle);
    free(cn);
}

static void conn_unlink_idle(struct conn *cn)
{
    for (struct conn **pp = &cn->d->idle; *pp; pp = &(*pp)->next)
        if (*pp == cn) {
            *pp = cn->next;
            break;
        }
    cn->next = NULL;
}

static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct conn *cn = arg;
    struct remote *r = cn->r;
    struct dest *d = cn->d;
    conn_unlink_idle(cn);
    smtp_client_free(cn->c); /* says QUIT */
    conn_free(cn);
    dest_maybe_free(r, d);
}

/* After a message: keep the connection for the next job to this destination. */
static void conn_park(struct remote_req *q, struct conn *cn)
{
    struct remote *r = q->r;
    struct dest *d = q->dest;
    int idle = q->conf->out_idle;
    if (idle <= 0 || r->freeing) {
        bury(r, cn->c);
        conn_free(cn);
    } else {
        cn->d = d;
        if (!cn->ev_idle) cn->ev_idle = evtimer_new(r->base, on_idle_timeout, cn);
        struct timeval tv = {idle, 0};
        evtimer_add(cn->ev_idle, &tv);
        cn->next = d->idle;
        d->idle = cn;
    }
    slot_release(q);
}

/* --- finishing ------------------------------------------------------------------ */

static void req_unlink(struct remote_req *q)
{
    struct remote *r = q->r;
    if (q->prev)
        q->prev->next = q->next;
    else
        r->reqs = q->next;
    if (q->next) q->next->prev = q->prev;
}

static void req_free(struct remote_req *q)
{
    if (q->ev_done) event_free(q->ev_done);
    free(q->idx);
    free(q->srcpts);
    free(q->sorcpt);
    free(q->snotify);
    free(q->rreply);
    remote_sender_clear(&q->snd);
    conf_unref(q->conf);
    free(q);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    struct remote_req *q = arg;
    req_unlink(q);
    void (*done)(void *) = q->done;
    void *darg = q->arg;
    req_free(q);
    done(darg);
}

static void finish(struct remote_req *q)
{
    slot_release(q);
    q->state = RQ_DONE;
    struct timeval tv = {0, 0};
    evtimer_add(q->ev_done, &tv);
}

/* Nothing took the message: every recipient gets the last failure. */
static void finish_fail(struct remote_req *q)
{
    struct remote_job *job = q->job;
    if (!q->fail_text[0]) fail_set(q, DELIVER_TEMP, "4.4.0", 0, NULL, "", "no host to deliver to");
    for (size_t k = 0; k < q->nidx; k++)
        result_set(&job->results[q->idx[k]], q->fail_st, q->fail_dsn, q->fail_code, q->fail_stage,
                   q->fail_relay[0] ? q->fail_relay : "none", q->fail_text);
    log_debug("smtp", "%s: %s via %s: %s", job->id, job->domain, q->route.via ? q->route.via : "-",
              q->fail_text);
    finish(q);
}

/* --- egress: what a reply says about our source address ----------------------- */

/* A refusal rp from the current host: an "ip-blocklist" reply benches q's source
 * for the host's organisation and returns 1 (the caller sends again from another
 * address); a reputation or rate-limit reply slows the source down for it (0). */
static int judge_reply(struct remote_req *q, const char *peer, const struct smtp_client_reply *rp)
{
    if (!q->src || rp->code < 400) return 0;
    const char *host = q->route.hops[q->hi].name;
    enum egress_reply k = egress_reply_kind(rp->code, rp->enh, rp->text);
    time_t now = time(NULL);
    if (k == EGRESS_REPLY_SLOW) {
        egress_slow(q->src->addr, host, rp->text, now + q->conf->out_slow_time);
        return 0;
    }
    if (k != EGRESS_REPLY_BLOCKLIST || q->retries >= 64) return 0;
    q->retries++;
    char org[256], reason[512];
    egress_org(host, org, sizeof org);
    fmt_diag(reason, sizeof reason, peer, rp);
    egress_bench(q->src->addr, org, reason, now + q->conf->out_bench_time);
    log_info("smtp",
             "%s: %s refused our address %s as blocklisted: benched for %s, sending "
             "from another address",
             q->job->id, peer, q->src->addr, org);
    return 1;
}

static int is2xx(int code);

/* Tell the observer (abuse/) what the answers to this attempt's recipients say:
 * user-unknown and blocklist shares are signals against the sending account. */
static void observe_replies(struct remote_req *q)
{
    struct remote *r = q->r;
    if (!r->observe || !q->job->auth_user || !*q->job->auth_user) return;
    const struct smtp_client_reply *mr = &q->msg.reply;
    size_t replies = 0, unknown = 0, blocked = 0;
    for (size_t k = 0; k < q->nidx; k++) {
        const struct smtp_client_reply *rr = &q->rreply[k];
        const struct smtp_client_reply *use = is2xx(rr->code) || rr->code == 0 ? mr : rr;
        if (use->code == 0) continue; /* no answer: the connection broke */
        replies++;
        if (use->code < 400) continue;
        if (egress_reply_classify(egress_replies_current(), use->code, use->enh, use->text, NULL) ==
            REPLY_USER_UNKNOWN)
            unknown++;
        else if (egress_reply_kind(use->code, use->enh, use->text) == EGRESS_REPLY_BLOCKLIST)
            blocked++;
    }
    if (replies)
        r->observe(r->observe_arg, q->job->auth_user, q->job->id, replies, unknown, blocked);
}

/* Keep only the recipients marked in keep (by position in the current subset). */
static void subset_keep(struct remote_req *q, const unsigned char *keep)
{
    size_t n = 0;
    for (size_t k = 0; k < q->nidx; k++)
        if (keep[k]) q->idx[n++] = q->idx[k];
    q->nidx = n;
}

/* --- sending ------------------------------------------------------------------- */

static int is2xx(int code)
{
    return code >= 200 && code < 300;
}

static void on_sent(void *arg, struct smtp_client *c, int ok)
{
    struct remote_req *q = arg;
    struct remote_job *job = q->job;
    struct conn *cn = q->conn;
    q->conn = NULL;
    const char *peer = smtp_client_peer(c);
    const struct smtp_client_reply *mr = &q->msg.reply;
    int answered = mr->code != 0;
    for (size_t k = 0; k < q->nidx; k++)
        if (q->rreply[k].code) answered = 1;

    if (!ok && q->reused && !answered) {
        /* the server closed the idle connection meanwhile: a new one, same host */
        log_debug("smtp", "%s: reused connection to %s was closed; reconnecting", job->id, peer);
        bury(q->r, cn->c);
        conn_free(cn);
        q->reused = 0;
        q->no_reuse = 1;
        host_resolve(q); /* keeps the slot */
        return;
    }
    if (mr->code >= 400 && mr->stage && strcmp(mr->stage, "MAIL FROM") == 0 &&
        judge_reply(q, peer, mr)) {
        /* our address is blocklisted there: the same host from another address */
        bury(q->r, cn->c);
        conn_free(cn);
        slot_release(q);
        q->no_reuse = 0;
        host_start(q);
        return;
    }
    if (ok && mr->code >= 400 && mr->code < 500 && mr->stage &&
        strcmp(mr->stage, "MAIL FROM") == 0) {
        /* the host takes no mail from us now: try the next one */
        fail_from_reply(q, peer, mr);
        conn_park(q, cn);
        q->hi++;
        q->no_reuse = 0;
        host_start(q);
        return;
    }
    observe_replies(q);
    char text[512];
    unsigned char *again = xcalloc(q->nidx ? q->nidx : 1, 1);
    size_t nagain = 0, nsent = 0;
    int data_blocked = -1; /* the end-of-data reply judged once */
    for (size_t k = 0; k < q->nidx; k++) {
        const struct smtp_client_reply *rr = &q->rreply[k];
        struct deliver_result *res = &job->results[q->idx[k]];
        const struct smtp_client_reply *use = rr;
        if (is2xx(rr->code)) {
            if (is2xx(mr->code)) {
                fmt_reply(text, sizeof text, mr);
                result_set(res, DELIVER_OK, mr->enh[0] == '2' ? mr->enh : "2.0.0", mr->code,
                           mr->stage, peer, text);
                nsent++;
                continue;
            }
            use = mr;
        } else if (rr->code == 0) {
            use = mr;
        }
        if (use == mr && mr->code >= 400) {
            if (data_blocked < 0) data_blocked = judge_reply(q, peer, mr);
            if (data_blocked) {
                again[k] = 1;
                nagain++;
                continue;
            }
        } else if (use != mr && rr->code >= 400 && judge_reply(q, peer, rr)) {
            again[k] = 1;
            nagain++;
            continue;
        }
        /* a refusal, or a connection that broke before the final answer */
        fmt_diag(text, sizeof text, peer, use);
        enum deliver_status st = use->code >= 500                       ? DELIVER_PERM
                                 : use->code == 0 && use->enh[0] == '5' ? DELIVER_PERM
                                                                        : DELIVER_TEMP;
        const char *dsn = use->enh[0] ? use->enh : st == DELIVER_PERM ? "5.0.0" : "4.0.0";
        if (st == DELIVER_TEMP && dsn[0] != '4') dsn = "4.4.2";
        result_set(res, st, dsn, use->code, use->stage, peer, text);
    }
    if (nsent && q->src) egress_count(q->src->addr, q->route.hops[q->hi].name, nsent);
    if (nagain) {
        /* the refused recipients go again at once, from another address */
        subset_keep(q, again);
        free(again);
        bury(q->r, cn->c);
        conn_free(cn);
        slot_release(q);
        q->no_reuse = 0;
        host_start(q);
        return;
    }
    free(again);
    if (ok) {
        conn_park(q, cn);
    } else {
        bury(q->r, cn->c);
        conn_free(cn);
    }
    finish(q);
}

static void send_msg(struct remote_req *q, struct conn *cn)
{
    struct remote_job *job = q->job;
    q->state = RQ_SEND;
    q->conn = cn;
    free(q->rreply);
    q->rreply = xcalloc(q->nidx ? q->nidx : 1, sizeof *q->rreply);
    for (size_t k = 0; k < q->nidx; k++) {
        size_t i = q->idx[k];
        q->srcpts[k] = job->rcpts[i];
        q->snotify[k] = job->notify ? job->notify[i] : 0;
        q->sorcpt[k] = job->orcpt ? job->orcpt[i] : NULL;
    }
    q->msg = (struct smtp_client_msg){
        .sender = q->snd.srs_sender    ? q->snd.srs_sender
                  : q->snd.batv_sender ? q->snd.batv_sender
                  : job->sender        ? job->sender
                                       : "",
        .rcpts = q->srcpts,
        .nrcpts = q->nidx,
        .notify = job->notify ? q->snotify : NULL,
        .orcpt = job->orcpt ? q->sorcpt : NULL,
        .envid = job->envid,
        .ret = (enum smtp_ret)job->ret,
        .body = (enum smtp_body)job->body,
        .smtputf8 = job->smtputf8,
        .size = job->size,
        .content_fd = job->content_fd,
        .content_off = job->content_off,
        .rcpt_reply = q->rreply,
    };
    log_debug("smtp", "%s: sending to %s%s%s%s", job->id, smtp_client_peer(cn->c),
              q->src ? " from " : "", q->src ? q->src->addr : "",
              q->reused ? " (reused connection)" : "");
    smtp_client_send(cn->c, &q->msg, on_sent, q);
}

/* --- connecting ----------------------------------------------------------------- */

static void on_ready(void *arg, struct smtp_client *c, int ok)
{
    struct remote_req *q = arg;
    q->connecting = NULL;
    if (ok) {
        struct conn *cn = xcalloc(1, sizeof *cn);
        cn->c = c;
        cn->r = q->r;
        cn->d = q->dest;
        q->reused = 0;
        q->tls_fallback = 0;
        send_msg(q, cn);
        return;
    }
    const struct smtp_client_reply *rp = smtp_client_last(c);
    const char *peer = smtp_client_peer(c);
    fail_from_reply(q, peer, rp);
    log_debug("smtp", "%s: %s", q->job->id, q->fail_text);
    const char *stage = rp->stage ? rp->stage : "";
    int tls_failed = rp->code == 0 && strcmp(stage, "STARTTLS") == 0;
    int answered = rp->code != 0;
    bury(q->r, c);
    if (tls_failed && q->route.hops[q->hi].tls == CONF_TLS_MAY && !q->tls_fallback) {
        /* opportunistic TLS: a broken handshake falls back to plain on a new
         * connection (RFC 3207 leaves the choice to the client) */
        q->tls_fallback = 1;
        connect_next(q);
        return;
    }
    q->tls_fallback = 0;
    if (answered && judge_reply(q, peer, rp)) { /* our address is blocklisted there */
        slot_release(q);
        q->no_reuse = 0;
        host_start(q);
        return;
    }
    if (answered) { /* the host itself said no: the next host, not the next address */
        slot_release(q);
        q->hi++;
        q->no_reuse = 0;
        host_start(q);
        return;
    }
    q->ai++;
    connect_next(q);
}

static void connect_next(struct remote_req *q)
{
    const struct kconf *c = q->conf;
    while (q->ai < q->naddrs) {
        struct sockaddr_storage *sa = &q->addrs[q->ai];
        const struct route_hop *h = &q->route.hops[q->hi];
        socklen_t len;
        if (sa->ss_family == AF_INET6) {
            ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)h->port);
            len = sizeof(struct sockaddr_in6);
        } else {
            ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)h->port);
            len = sizeof(struct sockaddr_in);
        }
        const struct conf_egress_source *src = q->src;
        if (src && src->sa.ss_family != sa->ss_family) { /* not from this source */
            fail_set(q, DELIVER_TEMP, "4.4.1", 0, "connect", h->name,
                     "no route from source address %s to %s (another address family)", src->addr,
                     h->name);
            q->ai++;
            continue;
        }
        struct smtp_client_opts o = {
            .helo = src && src->ehlo ? src->ehlo
                    : c->out_helo    ? c->out_helo
                                     : c->hostname,
            .dst = (const struct sockaddr *)sa,
            .dstlen = len,
            .src = src ? (const struct sockaddr *)&src->sa : NULL,
            .srclen = src ? (socklen_t)src->salen : 0,
            .peer_name = h->name,
            .tls = q->tls_fallback ? SMTP_CTLS_NONE : (enum smtp_client_tls)h->tls,
            .implicit_tls = h->implicit_tls,
            .ca_file = c->out_ca_file,
            .auth_user = h->auth_user,
            .auth_pass = h->auth_pass,
            .connect_timeout = c->out_connect_timeout,
            .command_timeout = c->out_command_timeout,
            .data_timeout = c->out_data_timeout,
        };
        q->state = RQ_CONNECT;
        q->connecting = smtp_client_new(q->r->base, q->r->tls, &o, on_ready, q);
        if (q->connecting) return;
        fail_set(q, DELIVER_TEMP, "4.3.0", 0, "connect", "", "cannot start an SMTP connection");
        q->ai++;
    }
    /* every address of this host failed: the next host */
    slot_release(q);
    q->hi++;
    q->no_reuse = 0;
    host_start(q);
}

/* --- resolving hosts ----------------------------------------------------------- */

static void copy_addrs(struct sockaddr_storage *dst, size_t *n, const struct dns_result *res)
{
    *n = 0;
    if (res->status != DNS_OK) return;
    for (size_t i = 0; i < res->naddrs && *n < MAX_ADDRS; i++)
        dst[(*n)++] = res->addrs[i];
}

static void addrs_ready(struct remote_req *q)
{
    if (!q->a_done || !q->aaaa_done) return;
    const struct route_hop *h = &q->route.hops[q->hi];
    q->naddrs = 0;
    /* IPv4 first, then IPv6: both families are tried in turn */
    for (size_t i = 0; i < q->na4; i++)
        q->addrs[q->naddrs++] = q->a4[i];
    for (size_t i = 0; i < q->na6; i++)
        q->addrs[q->naddrs++] = q->a6[i];
    if (q->naddrs == 0) {
        int temp = q->a_st == DNS_TEMPFAIL || q->a_st == DNS_BOGUS || q->aaaa_st == DNS_TEMPFAIL ||
                   q->aaaa_st == DNS_BOGUS;
        if (temp)
            fail_set(q, DELIVER_TEMP, "4.4.3", 0, NULL, "",
                     "Host or domain name not found. Name service error for name=%s type=A: "
                     "Host not found, try again",
                     h->name);
        else if (h->implicit_mx)
            fail_set(q, DELIVER_PERM, "5.1.2", 0, NULL, "",
                     "Host or domain name not found. Name service error for name=%s type=A: "
                     "Host found but no data record of requested type",
                     h->name);
        else
            fail_set(q, DELIVER_TEMP, "4.4.3", 0, NULL, "",
                     "Host or domain name not found. Name service error for name=%s type=A: "
                     "Host not found",
                     h->name);
        slot_release(q);
        q->hi++;
        q->no_reuse = 0;
        host_start(q);
        return;
    }
    q->ai = 0;
    connect_next(q);
}

static void on_a(void *arg, const struct dns_result *res)
{
    struct remote_req *q = arg;
    q->qa = NULL;
    q->a_st = res->status;
    copy_addrs(q->a4, &q->na4, res);
    q->a_done = 1;
    addrs_ready(q);
}

static void on_aaaa(void *arg, const struct dns_result *res)
{
    struct remote_req *q = arg;
    q->qaaaa = NULL;
    q->aaaa_st = res->status;
    copy_addrs(q->a6, &q->na6, res);
    q->aaaa_done = 1;
    addrs_ready(q);
}

/* Addresses of the current host (q holds a slot). */
static void host_resolve(struct remote_req *q)
{
    const struct route_hop *h = &q->route.hops[q->hi];
    q->state = RQ_ADDR;
    q->a_done = q->aaaa_done = 0;
    q->na4 = q->na6 = q->naddrs = q->ai = 0;
    if (ip_parse(h->name, &q->addrs[0], NULL) == 0) {
        q->naddrs = 1;
        connect_next(q);
        return;
    }
    q->qa = dns_query_a(q->r->dns, h->name, on_a, q);
    q->qaaaa = dns_query_aaaa(q->r->dns, h->name, on_aaaa, q);
    if (!q->qa) {
        q->a_done = 1;
        q->a_st = DNS_TEMPFAIL;
    }
    if (!q->qaaaa) {
        q->aaaa_done = 1;
        q->aaaa_st = DNS_TEMPFAIL;
    }
    if (q->a_done && q->aaaa_done) addrs_ready(q);
}

/* The pool whose addresses are tried after p's (fallback pool), or NULL. */
static const struct conf_egress_pool *pool_next(const struct remote_req *q,
                                                const struct conf_egress_pool *p)
{
    if (p->fallback != CONF_EGRESS_FB_POOL) return NULL;
    return conf_egress_pool_find(q->conf, p->fallback_arg);
}

/* The source for host from the mail's pool, then its fallback pools; NULL when every
 * one is benched there (why gets a reason). */
static const struct conf_egress_source *source_pick(struct remote_req *q, const char *host,
                                                    char *why, size_t whylen)
{
    const struct conf_egress_pool *p = q->pool;
    for (int depth = 0; p && depth < 8; depth++, p = pool_next(q, p)) {
        const struct conf_egress_source *s = egress_pick(p, host, why, whylen);
        if (s) return s;
    }
    return NULL;
}

/* What happens when every address is benched: the last pool of the fallback chain's
 * choice (hold or relay). */
static const struct conf_egress_pool *pool_last(const struct remote_req *q)
{
    const struct conf_egress_pool *p = q->pool, *n;
    for (int depth = 0; p && depth < 8 && (n = pool_next(q, p)); depth++)
        p = n;
    return p;
}

/* Start on hop q->route.hops[q->hi]: pick the source address, reuse an idle
 * connection, wait for a slot, or resolve and connect. After the last host, every
 * recipient left gets the last failure (or the pool's fallback relay takes over). */
static void host_start(struct remote_req *q)
{
    struct remote *r = q->r;
    const struct route_hop *h;
    for (;;) {
        if (q->hi >= q->route.nhops) {
            const struct conf_egress_pool *last = pool_last(q);
            if (q->any_benched && !q->fell_back && last && last->fallback == CONF_EGRESS_FB_RELAY &&
                route_hosts(q->conf, last->fallback_arg, &q->route) == ROUTE_NEXT_OK &&
                q->route.nhops) {
                /* every address is benched there: the pool's smarthost takes it */
                log_info("smtp",
                         "%s: every address of pool %s is benched for %s: handing "
                         "over to %s",
                         q->job->id, q->pool->name, q->job->domain, last->fallback_arg);
                q->fell_back = 1;
                q->hi = 0;
                continue;
            }
            finish_fail(q);
            return;
        }
        h = &q->route.hops[q->hi];
        if (q->src_kept) { /* the pick made before waiting for a slot stands */
            q->src_kept = 0;
            break;
        }
        q->src = NULL;
        if (!q->pool) break;
        char why[512] = "";
        q->src = source_pick(q, h->name, why, sizeof why);
        if (q->src) break;
        char org[256];
        egress_org(h->name, org, sizeof org);
        fail_set(q, DELIVER_TEMP, "4.7.1", 0, NULL, h->name,
                 "all our sending addresses are blocked by %s (%s); last refusal: %s", h->name, org,
                 why);
        log_debug("smtp", "%s: every address of pool %s is benched for %s", q->job->id,
                  q->pool->name, h->name);
        q->any_benched = 1;
        q->hi++;
        q->no_reuse = 0;
    }
    char key[800];
    snprintf(key, sizeof key, "%s:%d|%d%s|%s|%s", h->name, h->port, (int)h->tls,
             h->implicit_tls ? "i" : "", h->auth_user ? h->auth_user : "",
             q->src ? q->src->addr : "");
    struct dest *d = dest_get(r, key);
    q->dest = d;
    d->limit = q->src && egress_is_slow(q->src->addr, h->name) ? 1 : 0;
    if (!q->no_reuse && d->idle) {
        struct conn *cn = d->idle;
        conn_unlink_idle(cn);
        evtimer_del(cn->ev_idle);
        d->active++;
        q->slot = 1;
        q->reused = 1;
        send_msg(q, cn);
        return;
    }
    int limit = d->limit ? d->limit : q->conf->out_concurrency > 0 ? q->conf->out_concurrency : 1;
    if (d->active >= limit) {
        q->state = RQ_WAIT;
        q->wnext = NULL;
        if (d->wait_tail)
            d->wait_tail->wnext = q;
        else
            d->wait_head = q;
        d->wait_tail = q;
        q->src_kept = 1;
        log_debug("smtp", "%s: waiting for a connection slot to %s", q->job->id, key);
        return;
    }
    d->active++;
    q->slot = 1;
    host_resolve(q);
}

/* --- routes (decided by route/) ---------------------------------------------- */

/* A route/ failure: every recipient gets it. */
static void route_fail(struct remote_req *q)
{
    fail_set(q, q->route.status == ROUTE_NEXT_PERM ? DELIVER_PERM : DELIVER_TEMP, q->route.dsn, 0,
             NULL, "none", "%s", q->route.text);
    finish_fail(q);
}

static void on_mx(void *arg, const struct dns_result *res)
{
    struct remote_req *q = arg;
    q->qmx = NULL;
    if (route_mx(q->conf, &q->route.hops[0], res, &q->route) != ROUTE_NEXT_OK) {
        route_fail(q);
        return;
    }
    q->hi = 0;
    host_start(q);
}

/* The sender's relay route is known (or none was looked up): take route/'s hops;
 * a lone MX hop is looked up first. */
static void route_start(struct remote_req *q)
{
    struct remote_job *job = q->job;
    q->state = RQ_MX;
    q->pool = route_pool(q->conf, job->sender, job->auth_user, job->listener);
    char alabel[256];
    const char *why;
    if (idn_to_alabel(job->domain, alabel, sizeof alabel, &why) != 0) {
        /* RFC 5891: only a valid IDN has an A-label form that DNS could know */
        fail_set(q, DELIVER_PERM, "5.1.2", 0, NULL, "none", "%s: %s", job->domain, why);
        finish_fail(q);
        return;
    }
    if (route_next(q->conf, job->domain, q->snd.relay, q->snd.relay_rc, &q->route) !=
        ROUTE_NEXT_OK) {
        route_fail(q);
        return;
    }
    if (q->route.nhops == 1 && q->route.hops[0].kind == ROUTE_HOP_MX) {
        q->qmx = dns_query_mx(q->r->dns, q->route.hops[0].name, on_mx, q);
        if (!q->qmx) {
            fail_set(q, DELIVER_TEMP, "4.4.3", 0, NULL, "none", "cannot start a DNS query");
            finish_fail(q);
        }
        return;
    }
    log_debug("smtp", "%s: %s via %s (%zu host%s)", job->id, job->domain, q->route.via,
              q->route.nhops, q->route.nhops == 1 ? "" : "s");
    q->hi = 0;
    host_start(q);
}

void remote_sender_lookup(struct store *st, const struct kconf *conf, const struct remote_job *job,
                          struct remote_sender *out)
{
    *out = (struct remote_sender){.ready = 1};
    if (!st || !job->sender || !job->sender[0]) return; /* the null sender: none of it */
    out->relay_rc = route_relay_lookup(st, job->sender, &out->relay);
    /* BATV: only MAIL FROM is signed; spool, logs and DSNs keep the real sender */
    const char *at = strrchr(job->sender, '@');
    int on = job->batv_sign && at ? batv_domain_on(conf, at + 1) : 0;
    if (on == 2) { /* domains all: is it a domain we host? */
        struct route_result rr;
        enum route_kind k = route_resolve(st, NULL, job->sender, &rr);
        route_result_clear(&rr);
        on = k != ROUTE_REMOTE && k != ROUTE_ERROR;
    }
    if (on) out->batv_sender = batv_sign_new(conf, job->sender, time(NULL));
    /* SRS: a forward of a stranger's mail leaves in the name of srs { domain }, so
     * the receiver's SPF check sees our domain (docs/forwarding.md) */
    if (job->forward && at && srs_enabled(conf) && !out->batv_sender) {
        struct route_result rr;
        enum route_kind k = route_resolve(st, NULL, job->sender, &rr);
        route_result_clear(&rr);
        if (k == ROUTE_REMOTE) out->srs_sender = srs_forward_new(conf, job->sender, time(NULL));
    }
}

void remote_sender_clear(struct remote_sender *s)
{
    route_relay_free(s->relay);
    free(s->batv_sender);
    free(s->srs_sender);
    *s = (struct remote_sender){0};
}

static void route_lookup_run(void *arg)
{
    struct remote_req *q = arg;
    remote_sender_lookup(q->r->st, q->conf, q->job, &q->snd);
}

static void route_lookup_done(void *arg)
{
    struct remote_req *q = arg;
    q->wj = NULL;
    route_start(q);
}

/* --- public --------------------------------------------------------------------- */

struct remote *remote_new(struct event_base *base, const struct kconf *conf, struct dns *dns,
                          struct store *st)
{
    struct remote *r = xcalloc(1, sizeof *r);
    r->base = base;
    r->conf = conf_ref(conf);
    r->dns = dns;
    r->st = st;
    char err[256] = "";
    r->tls = smtp_client_tls_new(err, sizeof err);
    if (!r->tls) log_err("smtp", "outbound TLS unavailable: %s", err);
    r->ev_reap = evtimer_new(base, on_reap, r);
    if (!r->ev_reap) {
        smtp_client_tls_free(r->tls);
        conf_unref(r->conf);
        free(r);
        return NULL;
    }
    return r;
}

void remote_set_conf(struct remote *r, const struct kconf *conf)
{
    const struct kconf *old = r->conf;
    r->conf = conf_ref(conf);
    conf_unref(old);
}

struct remote_req *remote_deliver(struct remote *r, struct remote_job *job, void (*done)(void *arg),
                                  void *arg)
{
    struct remote_req *q = xcalloc(1, sizeof *q);
    q->r = r;
    q->conf = conf_ref(r->conf);
    q->job = job;
    q->done = done;
    q->arg = arg;
    q->ev_done = evtimer_new(r->base, on_done, q);
    if (!q->ev_done) abort(); /* out of memory */
    q->next = r->reqs;
    if (r->reqs) r->reqs->prev = q;
    r->reqs = q;
    for (size_t i = 0; i < job->nrcpts; i++)
        result_set(&job->results[i], DELIVER_TEMP, "4.4.0", 0, NULL, "none", "not attempted");
    size_t n = job->nrcpts ? job->nrcpts : 1;
    q->idx = xcalloc(n, sizeof *q->idx);
    q->srcpts = xcalloc(n, sizeof *q->srcpts);
    q->sorcpt = xcalloc(n, sizeof *q->sorcpt);
    q->snotify = xcalloc(n, sizeof *q->snotify);
    for (size_t i = 0; i < job->nrcpts; i++)
        q->idx[i] = i;
    q->nidx = job->nrcpts;
    if (job->pre && job->pre->ready) { /* the caller's worker looked it up */
        q->snd = *job->pre;
        *job->pre = (struct remote_sender){0};
        route_start(q); /* callbacks are all deferred: done never runs before we return */
    } else if (r->st && job->sender && job->sender[0]) {
        q->wj = work_submit(route_lookup_run, route_lookup_done, q);
    } else {
        route_start(q);
    }
    return q;
}

void remote_cancel(struct remote_req *q)
{
    if (!q) return;
    struct remote *r = q->r;
    if (q->wj) work_cancel(q->wj);
    if (q->qmx) dns_cancel(q->qmx);
    if (q->qa) dns_cancel(q->qa);
    if (q->qaaaa) dns_cancel(q->qaaaa);
    if (q->connecting) smtp_client_free(q->connecting);
    if (q->conn) {
        smtp_client_free(q->conn->c);
        conn_free(q->conn);
    }
    if (q->state == RQ_WAIT && q->dest) {
        wait_remove(q->dest, q);
        struct dest *d = q->dest;
        q->dest = NULL;
        dest_maybe_free(r, d);
    }
    slot_release(q);
    req_unlink(q);
    req_free(q);
}

void remote_set_observer(struct remote *r,
                         void (*fn)(void *arg, const char *account, const char *id, size_t replies,
                                    size_t unknown, size_t blocked),
                         void *arg)
{
    r->observe = fn;
    r->observe_arg = arg;
}

void remote_free(struct remote *r)
{
    if (!r) return;
    r->freeing = 1;
    while (r->reqs)
        remote_cancel(r->reqs);
    while (r->dests) {
        struct dest *d = r->dests;
        while (d->idle) {
            struct conn *cn = d->idle;
            d->idle = cn->next;
            smtp_client_free(cn->c);
            conn_free(cn);
        }
        r->dests = d->next;
        free(d->key);
        free(d);
    }
    on_reap(-1, 0, r);
    event_free(r->ev_reap);
    smtp_client_tls_free(r->tls);
    conf_unref(r->conf);
    free(r);
}
