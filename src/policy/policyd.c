/* policyd.c: policy delegation: asks the listener's policy_service in Postfix's policy
 * delegation protocol (SMTPD_POLICY_README: "name=value" lines, an empty line ends a
 * request and its reply) and turns the action into a verdict. Connections are kept
 * per server address and reused; the reply and action parsers are pure (fuzzed). */
#include "core/compat.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/addr.h"
#include "core/buf.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/util.h"
#include "policy/policy.h"

#define PD_MAX_REPLY 4096 /* bytes of one reply; a longer one is an error */
#define PD_MAX_VALUE 1000 /* bytes of one attribute value we send */
#define PD_MAX_CONNS 16   /* connections at once to one server; more requests wait */
#define PD_MAX_IDLE 300   /* seconds an unused connection is kept (Postfix's max_idle) */
#define PD_MAX_TTL 1000   /* seconds a connection is reused at most (Postfix's max_ttl) */
#define PD_TRIES 2        /* a reused connection found closed is retried once */

/* --- pure helpers ------------------------------------------------------------ */

long policy_policyd_reply(const char *p, size_t len, char *action, size_t actsize)
{
    size_t i = 0;
    int have = 0;
    if (actsize) action[0] = '\0';
    while (i < len) {
        const char *nl = memchr(p + i, '\n', len - i);
        if (!nl) return 0;
        size_t end = (size_t)(nl - p), llen = end - i;
        if (llen && p[end - 1] == '\r') llen--;
        if (memchr(p + i, '\0', llen)) return -1;
        if (llen == 0) return have ? (long)(end + 1) : -1;
        const char *eq = memchr(p + i, '=', llen);
        if (!eq || eq == p + i) return -1;
        size_t nlen = (size_t)(eq - (p + i));
        if (!have && nlen == 6 && memcmp(p + i, "action", 6) == 0) {
            size_t vlen = llen - nlen - 1;
            if (actsize) {
                size_t c = vlen < actsize - 1 ? vlen : actsize - 1;
                memcpy(action, eq + 1, c);
                action[c] = '\0';
            }
            have = 1;
        }
        i = end + 1;
    }
    return 0;
}

static int word_is(const char *w, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(w, name, len) == 0;
}

/* An enhanced status code at the start of text ("5.7.1 " or the whole text): its
 * length, else 0. RFC 3463: class.subject.detail, 1-3 digits each; ours fit in 7. */
static size_t enh_len(const char *t)
{
    size_t i = 0;
    if (t[0] != '2' && t[0] != '4' && t[0] != '5') return 0;
    if (t[1] != '.') return 0;
    i = 2;
    for (int part = 0; part < 2; part++) {
        size_t d = strspn(t + i, "0123456789");
        if (d < 1 || d > 3) return 0;
        i += d;
        if (part == 0) {
            if (t[i] != '.') return 0;
            i++;
        }
    }
    if (t[i] != '\0' && t[i] != ' ') return 0;
    return i < 8 ? i : 0;
}

/* A refusal: code, enh (its class follows the code's), text or dflt. */
static void refuse(struct policy_verdict *v, enum policy_kind kind, int code, const char *enh,
                   const char *text, const char *dflt)
{
    v->kind = kind;
    v->code = code;
    str_copy(v->enh, enh, sizeof v->enh);
    size_t e = enh_len(text);
    if (e) {
        memcpy(v->enh, text, e);
        v->enh[e] = '\0';
        v->enh[0] = (char)('0' + code / 100); /* "REJECT 4.7.1 x" still says 5.7.1 */
        text += e;
        while (*text == ' ')
            text++;
    }
    str_copy(v->text, *text ? text : dflt, sizeof v->text);
}

int policy_policyd_action(const char *action, struct policy_verdict *v)
{
    memset(v, 0, sizeof *v);
    const char *a = action;
    while (*a == ' ' || *a == '\t')
        a++;
    size_t wlen = strcspn(a, " \t");
    const char *rest = a + wlen;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    /* what the server said, printable, for the log line and the reply */
    char text[sizeof v->text], shown[150];
    policy_dnsbl_text(rest, strlen(rest), text, sizeof text);
    policy_dnsbl_text(a, strlen(a), shown, sizeof shown);
    snprintf(v->detail, sizeof v->detail, "action=%s", shown);
    v->kind = POLICY_PASS;
    if (wlen == 0) return -1;
    /* access(5): an all-numerical result is OK */
    if (strspn(a, "0123456789") == strlen(a)) {
        v->kind = POLICY_ACCEPT;
        return 0;
    }
    if (wlen == 3 && strspn(a, "0123456789") == 3 && (a[0] == '4' || a[0] == '5')) {
        int code = atoi(a);
        if (a[0] == '4')
            refuse(v, POLICY_TEMPFAIL, code, "4.7.1", text, "Try again later");
        else
            refuse(v, POLICY_REJECT, code, "5.7.1", text, "Access denied");
        return 0;
    }
    if (word_is(a, wlen, "OK")) {
        v->kind = POLICY_ACCEPT;
        return 0;
    }
    if (word_is(a, wlen, "DUNNO") || word_is(a, wlen, "WARN") || word_is(a, wlen, "INFO") ||
        word_is(a, wlen, "PREPEND") || word_is(a, wlen, "DEFER_IF_REJECT"))
        return 0; /* nothing to do here (the log line shows it); PREPEND is not supported */
    if (word_is(a, wlen, "REJECT")) {
        refuse(v, POLICY_REJECT, 554, "5.7.1", text, "Access denied");
        return 0;
    }
    if (word_is(a, wlen, "DEFER")) {
        refuse(v, POLICY_TEMPFAIL, 450, "4.7.1", text, "Try again later");
        return 0;
    }
    if (word_is(a, wlen, "DEFER_IF_PERMIT")) {
        /* the greylisting answer (postgrey's): the checks before it did not refuse */
        refuse(v, POLICY_GREYLIST, 450, "4.7.1", text, "Try again later");
        return 0;
    }
    if (word_is(a, wlen, "HOLD") || word_is(a, wlen, "DISCARD") || word_is(a, wlen, "FILTER") ||
        word_is(a, wlen, "REDIRECT") || word_is(a, wlen, "BCC"))
        return 1;
    return -1;
}

/* --- connections -------------------------------------------------------------- */

struct pd_req;

struct pd_service {
    char addr[128]; /* as configured: the key */
    struct sockaddr_storage sa;
    socklen_t salen;
    struct pd_conn *idle; /* connections waiting for a request */
    size_t nconns;        /* open ones, idle and busy */
    struct pd_req *wait;  /* requests waiting for a connection, first first */
    struct pd_service *next;
};

struct pd_conn {
    struct pd_service *svc;
    struct bufferevent *bev;
    struct pd_req *req; /* the request it carries; NULL when idle */
    time_t born;
    int used;               /* replies read on it: a reused one may have been closed */
    struct event *idle_tmr; /* closes it after PD_MAX_IDLE unused */
    struct pd_conn *next;   /* in svc->idle */
};

struct pd_req {
    struct pd_service *svc;
    struct pd_conn *conn; /* sent on it, reply pending */
    int waiting;          /* in svc->wait */
    struct pd_req *wnext;
    struct buf text; /* the request's attributes, kept for a retry */
    int tries;       /* times sent */
    int timeout;
    int default_action; /* enum conf_policy_default */
    enum policy_stage stage;
    char subject[280]; /* "<bob@example.org>: Recipient address rejected: " */
    struct event *tmr; /* the request's deadline */
    struct event *ev_done;
    struct policy_verdict v;
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
};

static struct pd_service *services;

static void req_dispatch(struct pd_req *r);
static void req_fail(struct pd_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void wait_remove(struct pd_req *r)
{
    if (!r->waiting) return;
    for (struct pd_req **pp = &r->svc->wait; *pp; pp = &(*pp)->wnext)
        if (*pp == r) {
            *pp = r->wnext;
            break;
        }
    r->waiting = 0;
    r->wnext = NULL;
}

static void conn_close(struct pd_conn *c)
{
    struct pd_service *svc = c->svc;
    for (struct pd_conn **pp = &svc->idle; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    if (c->req) c->req->conn = NULL;
    bufferevent_free(c->bev);
    if (c->idle_tmr) event_free(c->idle_tmr);
    free(c);
    svc->nconns--;
    /* room for a waiting request */
    if (svc->wait) {
        struct pd_req *r = svc->wait;
        wait_remove(r);
        req_dispatch(r);
    }
}

static void conn_send(struct pd_conn *c, struct pd_req *r)
{
    if (c->idle_tmr) event_del(c->idle_tmr);
    c->req = r;
    r->conn = c;
    r->tries++;
    bufferevent_write(c->bev, r->text.data, r->text.len);
}

/* The reply came: take the next waiting request, or wait idle. */
static void conn_release(struct pd_conn *c)
{
    struct pd_service *svc = c->svc;
    c->req = NULL;
    c->used++;
    if (time(NULL) - c->born >= PD_MAX_TTL) {
        conn_close(c);
        return;
    }
    if (svc->wait) {
        struct pd_req *r = svc->wait;
        wait_remove(r);
        conn_send(c, r);
        return;
    }
    c->next = svc->idle;
    svc->idle = c;
    struct timeval tv = {.tv_sec = PD_MAX_IDLE};
    evtimer_add(c->idle_tmr, &tv);
}

static void idle_expired(evutil_socket_t fd, short what, void *arg)
{
    conn_close(arg);
}

static void req_answer(struct pd_req *r)
{
    if (r->tmr) evtimer_del(r->tmr);
    wait_remove(r);
    event_active(r->ev_done, EV_TIMEOUT, 0);
}

/* The server's action, as the verdict. */
static void req_action(struct pd_req *r, const char *action)
{
    struct policy_verdict v;
    int rc = policy_policyd_action(action, &v);
    char esc[200];
    log_escape(esc, sizeof esc, action, strlen(action));
    if (rc != 0) {
        req_fail(r, "%s action \"%s\"", rc > 0 ? "unsupported" : "unknown", esc);
        return;
    }
    if (v.kind == POLICY_TEMPFAIL || v.kind == POLICY_REJECT || v.kind == POLICY_GREYLIST) {
        char text[sizeof v.text];
        size_t n = str_copy(text, r->subject, sizeof text);
        if (n < sizeof text) str_copy(text + n, v.text, sizeof text - n);
        str_copy(v.text, text, sizeof v.text);
    } else if (strncasecmp(action, "WARN", 4) == 0 &&
               (action[4] == ' ' || action[4] == '\t' || !action[4])) {
        log_warn("policy", "policy service %s: %s", r->svc->addr, esc);
    }
    r->v = v;
    req_answer(r);
}

static void conn_read(struct bufferevent *bev, void *arg)
{
    struct pd_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    if (!c->req) {
        log_warn("policy", "policy service %s: sent data without a request; closing", c->svc->addr);
        conn_close(c);
        return;
    }
    struct pd_req *r = c->req;
    char action[512];
    size_t n = len < PD_MAX_REPLY ? len : PD_MAX_REPLY;
    long used = policy_policyd_reply((const char *)evbuffer_pullup(in, (ssize_t)n), n, action,
                                     sizeof action);
    if (used == 0 && len < PD_MAX_REPLY) return; /* more to come */
    if (used <= 0) {
        conn_close(c);
        if (used == 0)
            req_fail(r, "reply longer than %d bytes", PD_MAX_REPLY);
        else
            req_fail(r, "malformed reply (no action, or a line without '=')");
        return;
    }
    evbuffer_drain(in, (size_t)used);
    if (evbuffer_get_length(in) > 0) {
        /* more than one reply to one request: out of step, not reused */
        r->conn = NULL;
        c->req = NULL;
        conn_close(c);
    } else {
        r->conn = NULL;
        conn_release(c);
    }
    req_action(r, action);
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
    struct pd_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) return;
    struct pd_req *r = c->req;
    int err = EVUTIL_SOCKET_ERROR();
    int stale = c->used > 0 && evbuffer_get_length(bufferevent_get_input(bev)) == 0;
    conn_close(c);
    if (!r) return; /* an idle connection the server closed */
    if (stale && r->tries < PD_TRIES) {
        /* the server closed a connection we had kept: try a fresh one */
        log_debug("policy", "policy service %s: kept connection closed, reconnecting",
                  r->svc->addr);
        req_dispatch(r);
        return;
    }
    if (what & BEV_EVENT_EOF)
        req_fail(r, "connection closed before the reply");
    else
        req_fail(r, "%s", err ? strerror(err) : "connection error");
}

/* A new connection (connect in progress), or NULL with errno set. */
static struct pd_conn *conn_open(struct pd_service *svc)
{
    int fd = socket(svc->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return NULL;
    int inprogress = 0;
    if (connect(fd, (const struct sockaddr *)&svc->sa, svc->salen) != 0) {
        if (errno != EINPROGRESS) {
            int e = errno;
            close(fd);
            errno = e;
            return NULL;
        }
        inprogress = 1;
    }
    struct pd_conn *c = xcalloc(1, sizeof *c);
    c->svc = svc;
    c->born = time(NULL);
    c->bev = bufferevent_socket_new(policy_loop(), fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) abort();
    if (inprogress) bufferevent_socket_connect(c->bev, NULL, 0);
    c->idle_tmr = evtimer_new(policy_loop(), idle_expired, c);
    bufferevent_setcb(c->bev, conn_read, NULL, conn_event, c);
    /* a server that talks on and on fills at most this (then the reply is refused) */
    bufferevent_setwatermark(c->bev, EV_READ, 0, PD_MAX_REPLY + 1);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    svc->nconns++;
    return c;
}

static void req_dispatch(struct pd_req *r)
{
    struct pd_service *svc = r->svc;
    while (svc->idle) {
        struct pd_conn *c = svc->idle;
        svc->idle = c->next;
        c->next = NULL;
        if (time(NULL) - c->born >= PD_MAX_TTL) {
            conn_close(c);
            continue;
        }
        conn_send(c, r);
        return;
    }
    if (svc->nconns >= PD_MAX_CONNS) {
        struct pd_req **pp = &svc->wait;
        while (*pp)
            pp = &(*pp)->wnext;
        *pp = r;
        r->waiting = 1;
        return;
    }
    struct pd_conn *c = conn_open(svc);
    if (!c) {
        req_fail(r, "cannot connect: %s", strerror(errno));
        return;
    }
    conn_send(c, r);
}

static struct pd_service *service_get(const char *addr)
{
    for (struct pd_service *s = services; s; s = s->next)
        if (strcmp(s->addr, addr) == 0) return s;
    struct pd_service *s = xcalloc(1, sizeof *s);
    char why[256];
    if (strlen(addr) >= sizeof s->addr ||
        conf_policy_service_parse(addr, &s->sa, &s->salen, why, sizeof why) != 0) {
        free(s); /* the config loader checked it */
        return NULL;
    }
    str_copy(s->addr, addr, sizeof s->addr);
    s->next = services;
    services = s;
    return s;
}

void policy_policyd_shutdown(void)
{
    struct pd_service **pp = &services;
    while (*pp) {
        struct pd_service *s = *pp;
        s->wait = NULL;
        while (s->idle)
            conn_close(s->idle);
        if (s->nconns) { /* a request still runs (cannot happen): keep what it uses */
            pp = &s->next;
            continue;
        }
        *pp = s->next;
        free(s);
    }
}

/* --- the check ---------------------------------------------------------------- */

static void req_free(struct pd_req *r)
{
    if (r->conn) {
        /* its reply would come later, to nobody: the connection goes */
        struct pd_conn *c = r->conn;
        c->req = NULL;
        r->conn = NULL;
        conn_close(c);
    }
    wait_remove(r);
    if (r->tmr) event_free(r->tmr);
    if (r->ev_done) event_free(r->ev_done);
    buf_release(&r->text);
    free(r);
}

static void req_done(evutil_socket_t fd, short what, void *arg)
{
    struct pd_req *r = arg;
    struct policy_verdict v = r->v;
    void (*done)(void *, const struct policy_verdict *) = r->done;
    void *darg = r->arg;
    req_free(r);
    done(darg, &v);
}

static void req_fail(struct pd_req *r, const char *fmt, ...)
{
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    int defer = r->default_action == CONF_PDEF_DEFER;
    log_warn("policy", "policy service %s: %s; policy_default_action %s", r->svc->addr, why,
             defer ? "defer" : "dunno");
    memset(&r->v, 0, sizeof r->v);
    if (defer)
        policy_verdict_set(&r->v, POLICY_TEMPFAIL, 451, "4.3.5", "Server configuration problem");
    else
        r->v.kind = POLICY_PASS;
    snprintf(r->v.detail, sizeof r->v.detail, "%.150s; %s", why, defer ? "defer" : "dunno");
    req_answer(r);
}

static void req_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct pd_req *r = arg;
    if (r->conn) {
        struct pd_conn *c = r->conn;
        c->req = NULL;
        r->conn = NULL;
        conn_close(c);
    }
    wait_remove(r);
    req_fail(r, "no reply within %ds", r->timeout);
}

/* One "name=value\n" line; control bytes in value become '?', cut to PD_MAX_VALUE. */
static void attr(struct buf *b, const char *name, const char *value)
{
    buf_printf(b, "%s=", name);
    size_t n = strlen(value);
    if (n > PD_MAX_VALUE) n = PD_MAX_VALUE;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)value[i];
        char c = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
        buf_append(b, &c, 1);
    }
    buf_puts(b, "\n");
}

static void attr_addr(struct buf *b, const char *name, const struct addr *a)
{
    char *s = a ? addr_format(a) : xstrdup("");
    attr(b, name, s);
    free(s);
}

static unsigned long long fnv(unsigned long long h, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ULL;
    return h;
}

/* The attributes Postfix sends (SMTPD_POLICY_README "Protocol description"). */
static void build_request(struct buf *b, const struct policy_ctx *ctx, enum policy_stage stage)
{
    char num[64];
    attr(b, "request", "smtpd_access_policy");
    attr(b, "protocol_state", policy_stage_name(stage));
    attr(b, "protocol_name", ctx->esmtp ? "ESMTP" : "SMTP");
    attr(b, "helo_name", ctx->helo ? ctx->helo : "");
    attr(b, "queue_id", "");
    attr_addr(b, "sender", ctx->sender);
    /* after RCPT: the recipient only when there is just one (as Postfix) */
    const struct addr *rcpt = ctx->rcpt;
    if (!rcpt && stage == POLICY_EOM && ctx->nrcpts == 1 && ctx->rcpts) rcpt = ctx->rcpts[0];
    attr_addr(b, "recipient", rcpt);
    snprintf(num, sizeof num, "%zu", ctx->nrcpts);
    attr(b, "recipient_count", num);
    attr(b, "client_address", ctx->client_addr);
    attr(b, "client_name", ctx->client_name);
    attr(b, "reverse_client_name", ctx->client_name);
    const struct sockaddr *sa = (const struct sockaddr *)&ctx->client_sa;
    unsigned port = sa->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)sa)->sin_port)
                    : sa->sa_family == AF_INET6
                        ? ntohs(((const struct sockaddr_in6 *)sa)->sin6_port)
                        : 0;
    snprintf(num, sizeof num, "%u", port);
    attr(b, "client_port", num);
    /* the same for every request of one mail transaction of the session */
    unsigned long long h = 14695981039346656037ULL;
    uintptr_t who = (uintptr_t)ctx->sender;
    h = fnv(h, &who, sizeof who);
    h = fnv(h, ctx->client_addr, strlen(ctx->client_addr));
    if (ctx->sender && ctx->sender->local)
        h = fnv(h, ctx->sender->local, strlen(ctx->sender->local));
    if (ctx->sender && ctx->sender->domain)
        h = fnv(h, ctx->sender->domain, strlen(ctx->sender->domain));
    snprintf(num, sizeof num, "%x.%llx.%u", (unsigned)getpid(), h, port);
    attr(b, "instance", num);
    attr(b, "sasl_method", "");
    attr(b, "sasl_username", ctx->auth_user ? ctx->auth_user : "");
    attr(b, "sasl_sender", "");
    long long size = stage == POLICY_EOM      ? (long long)ctx->msg_size
                     : ctx->size_declared > 0 ? ctx->size_declared
                                              : 0;
    snprintf(num, sizeof num, "%lld", size);
    attr(b, "size", num);
    attr(b, "ccert_subject", "");
    attr(b, "ccert_issuer", "");
    attr(b, "ccert_fingerprint", "");
    attr(b, "ccert_pubkey_fingerprint", "");
    attr(b, "encryption_protocol", "");
    attr(b, "encryption_cipher", "");
    attr(b, "encryption_keysize", "0");
    attr(b, "etrn_domain", "");
    attr(b, "stress", "");
    if (ctx->listener) {
        attr(b, "server_address", ctx->listener->host);
        snprintf(num, sizeof num, "%d", ctx->listener->port);
        attr(b, "server_port", num);
    }
    attr(b, "policy_context", "");
    attr(b, "compatibility_level", "3.6");
    attr(b, "mail_version", "kurier");
    buf_puts(b, "\n");
}

static void *policyd_start(const struct policy_ctx *ctx, enum policy_stage stage,
                           void (*done)(void *, const struct policy_verdict *), void *arg)
{
    static const enum policy_stage stages[] = {POLICY_MAIL, POLICY_RCPT, POLICY_EOM};
    struct pd_req *r = xcalloc(1, sizeof *r);
    const struct conf_listen *l = ctx->listener;
    r->done = done;
    r->arg = arg;
    r->ev_done = event_new(policy_loop(), -1, 0, req_done, r);
    r->v.kind = POLICY_PASS;
    if (!l || !l->policy_service || (unsigned)l->policy_stage >= 3 ||
        stage != stages[l->policy_stage] || !(r->svc = service_get(l->policy_service))) {
        /* not asked now: answer on the next loop turn, never inside start */
        event_active(r->ev_done, EV_TIMEOUT, 0);
        return r;
    }
    r->stage = stage;
    r->timeout = l->policy_timeout > 0 ? l->policy_timeout : 10;
    r->default_action = l->policy_default_action;
    if (stage == POLICY_RCPT || stage == POLICY_MAIL) {
        const struct addr *a = stage == POLICY_RCPT ? ctx->rcpt : ctx->sender;
        char *s = a ? addr_format(a) : xstrdup("");
        char esc[200];
        policy_dnsbl_text(s, strlen(s), esc, sizeof esc);
        snprintf(r->subject, sizeof r->subject, "<%s>: %s address rejected: ", esc,
                 stage == POLICY_RCPT ? "Recipient" : "Sender");
        free(s);
    }
    buf_init(&r->text, 0);
    build_request(&r->text, ctx, stage);
    r->tmr = evtimer_new(policy_loop(), req_timeout, r);
    struct timeval tv = {.tv_sec = r->timeout};
    evtimer_add(r->tmr, &tv);
    req_dispatch(r);
    return r;
}

static void policyd_cancel(void *handle)
{
    req_free(handle);
}

/* Judges the client as the admin's policy server sees fit: never for authenticated
 * sessions (submission is not MX). The stage is the listener's policy_stage. */
const struct policy_check policy_check_policyd = {
    .name = "policy",
    .stages = (1u << POLICY_MAIL) | (1u << POLICY_RCPT) | (1u << POLICY_EOM),
    .judges_client_ip = 1,
    .start = policyd_start,
    .cancel = policyd_cancel,
};
