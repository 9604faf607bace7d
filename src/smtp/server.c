/* server.c: the whole inbound SMTP dialogue (RFC 5321, with PIPELINING, CHUNKING,
 * SIZE, 8BITMIME, SMTPUTF8, DSN) as one state machine; the message content (DATA,
 * BDAT) is server_data.c's, AUTH server_auth.c's. Policy and spool are asked
 * through struct smtp_ops; this file never decides where mail goes. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/metrics.h"
#include "smtp/session.h"

/* Indexed by enum smtp_state; the static assert keeps the two in step. */
static const char *const state_names[] = {"INIT", "READY", "MAIL", "RCPT", "DATA",
                                          "BDAT", "CHUNK", "AUTH", "QUIT"};
_Static_assert(sizeof state_names / sizeof state_names[0] == SMTP_ST_COUNT,
               "state_names must name every state");

static struct smtp_session *sessions;
static size_t nsessions;
static int shutting_down; /* smtp_sessions_close_all() ran: closing sessions do not linger */

/* Replies a client has not read yet: above OUT_MAX its commands wait (as Postfix's
 * smtpd blocks on a full socket) until the output drained to OUT_MAX / 2, so a
 * client that pipelines without reading costs a bounded amount of memory. Under
 * TLS the socket below the filter holds at most OUT_LOW of encrypted bytes. */
#define OUT_MAX (256 * 1024)
#define OUT_LOW (64 * 1024)
/* Seconds the last replies of a closing session get to leave (no progress). */
#define CLOSE_LINGER 10

static size_t output_pending(struct smtp_session *s);
static void output_went(struct smtp_session *s);

/* --- writing replies --------------------------------------------------------------
 *
 * A plain session's replies are written by session_flush() once the callback that made
 * them returned (the loop runs the flush event before it polls again): the replies to
 * a pipelined group go out in one write, and no write event is armed (two epoll_ctl
 * calls and a loop turn per reply) while the socket takes them. What it does not take
 * is left to the bufferevent (EV_WRITE on until it is all out, with the write timeout).
 * Under TLS the filter writes as before. */
static struct smtp_session *flush_head; /* sessions with replies waiting */
static struct event *flush_ev;

/* 1 when something was written and all of it went out. */
static int flush_write(struct smtp_session *s)
{
    struct evbuffer *o = bufferevent_get_output(s->bev);
    if (!s->direct || evbuffer_get_length(o) == 0) return 0;
    if (bufferevent_get_enabled(s->bev) & EV_WRITE) return 0; /* libevent writes the rest */
    evutil_socket_t fd = bufferevent_getfd(s->bev);
    /* a bufferevent keeps its output's start frozen but while it writes itself */
    evbuffer_unfreeze(o, 1);
    while (evbuffer_get_length(o) > 0)
        if (evbuffer_write(o, fd) <= 0) break;
    evbuffer_freeze(o, 1);
    if (evbuffer_get_length(o) > 0) {
        /* a full socket or an error: the bufferevent goes on and reports (event_cb) */
        bufferevent_enable(s->bev, EV_WRITE);
        return 0;
    }
    return 1;
}

void session_flush(struct smtp_session *s)
{
    (void)flush_write(s); /* the caller goes on with the session itself */
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    while (flush_head) {
        struct smtp_session *s = flush_head;
        flush_head = s->flush_next;
        s->flush_next = NULL;
        s->flush_queued = 0;
        if (flush_write(s)) output_went(s);
    }
}

static void flush_unlink(struct smtp_session *s)
{
    if (!s->flush_queued) return;
    for (struct smtp_session **p = &flush_head; *p; p = &(*p)->flush_next)
        if (*p == s) {
            *p = s->flush_next;
            break;
        }
    s->flush_next = NULL;
    s->flush_queued = 0;
}

/* The output buffer got bytes: write them once this callback is done. */
static void output_added(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    struct smtp_session *s = arg;
    if (!info->n_added || !s->direct || s->flush_queued) return;
    if (!flush_ev) flush_ev = event_new(s->srv->base, -1, 0, flush_cb, NULL);
    s->flush_queued = 1;
    s->flush_next = flush_head;
    flush_head = s;
    event_active(flush_ev, EV_TIMEOUT, 0);
}

/* Replies written by the session from now on (a plain socket's bufferevent). */
static void output_direct(struct smtp_session *s)
{
    s->direct = 1;
    bufferevent_disable(s->bev, EV_WRITE);
    evbuffer_add_cb(bufferevent_get_output(s->bev), output_added, s);
}

/* STARTTLS: what is queued goes out first, then the TLS filter writes. */
static void output_undirect(struct smtp_session *s)
{
    if (!s->direct) return;
    session_flush(s);
    flush_unlink(s);
    s->direct = 0;
    evbuffer_remove_cb(bufferevent_get_output(s->bev), output_added, s);
    bufferevent_enable(s->bev, EV_WRITE);
}

/* Seconds without input (0: none), and without progress sending replies: a client
 * that does not read them is gone (RFC 5321 4.5.3.2.7: the server timeout). Under
 * TLS the socket below the filter gets the write timeout too. */
void session_timeouts(struct smtp_session *s, int rd, int wr)
{
    struct timeval r = {.tv_sec = rd}, w = {.tv_sec = wr};
    bufferevent_set_timeouts(s->bev, rd ? &r : NULL, &w);
    struct bufferevent *under = bufferevent_get_underlying(s->bev);
    if (under) bufferevent_set_timeouts(under, NULL, &w);
}

size_t smtp_sessions_count(void)
{
    return nsessions;
}

/* --- replies --------------------------------------------------------------- */

/* The one function that sends a reply: it only sends. */
void session_reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    struct evbuffer *o = bufferevent_get_output(s->bev);
    if (enh && *enh)
        evbuffer_add_printf(o, "%d %s %s\r\n", code, enh, text);
    else
        evbuffer_add_printf(o, "%d %s\r\n", code, text);
    log_debug("smtp", "%s[%s]: > %d %s %s", s->peer.name, s->peer.addr, code, enh ? enh : "", text);
}

static void session_free(struct smtp_session *s);
void session_process_input(struct smtp_session *s);

/* A client error: reply, count it, hang up after too many (Postfix's
 * smtpd_hard_error_limit). */
void session_fail(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    session_reply(s, code, enh, "%s", text);
    if (++s->errors >= s->conf->errors) {
        log_info(s->logname, "too many errors after %s from %s[%s]", state_names[s->state],
                 s->peer.name, s->peer.addr);
        session_reply(s, 421, "4.7.0", "%s Error: too many errors, closing the connection",
                      s->conf->hostname);
        session_close(s);
    }
}

void session_set_state(struct smtp_session *s, enum smtp_state st)
{
    if (s->state != st)
        log_debug("smtp", "%s[%s]: %s -> %s", s->peer.name, s->peer.addr, state_names[s->state],
                  state_names[st]);
    s->state = st;
}

/* --- transaction ------------------------------------------------------------- */

void session_txn_clear(struct smtp_session *s)
{
    struct smtp_txn *t = &s->txn;
    if (t->state && s->srv->ops->txn_end)
        s->srv->ops->txn_end(s->srv->ops->ctx, &s->peer, t, s->id[0] ? s->id : NULL, s->txn_code,
                             s->txn_check);
    t->state = NULL;
    s->txn_code = 0;
    s->txn_check = NULL;
    addr_clear(&t->sender);
    free(t->envid);
    for (size_t i = 0; i < t->nrcpts; i++) {
        addr_clear(&t->rcpts[i].addr);
        free(t->rcpts[i].orcpt);
    }
    free(t->rcpts);
    memset(t, 0, sizeof *t);
    t->size = -1;
    s->have_txn = 0;
    if (s->msg) {
        s->srv->ops->msg_abort(s->msg);
        s->msg = NULL;
    }
    s->id[0] = '\0';
    buf_release(&s->out);
    buf_release(&s->hdr);
    s->hdr_done = 0;
    s->msg_failed = s->too_big = 0;
    s->chunk_left = 0;
    s->chunk_last = 0;
}

/* Log a refusal in Postfix's shape so pflogsumm and fail2ban read it. */
void session_log_reject(struct smtp_session *s, const char *cmd, int code, const char *enh,
                        const char *text, const char *rcpt)
{
    char from[600] = "", to[600] = "", helo[300] = "";
    if (s->have_txn) {
        char *f = addr_format(&s->txn.sender);
        char esc[520];
        snprintf(from, sizeof from, " from=<%s>", log_escape(esc, sizeof esc, f, strlen(f)));
        free(f);
    }
    if (rcpt) {
        char esc[520];
        snprintf(to, sizeof to, " to=<%s>", log_escape(esc, sizeof esc, rcpt, strlen(rcpt)));
    }
    if (s->peer.helo) {
        char esc[260];
        snprintf(helo, sizeof helo, " helo=<%s>",
                 log_escape(esc, sizeof esc, s->peer.helo, strlen(s->peer.helo)));
    }
    metrics_add(MET_REJECTED, 1, s->peer.listener->address, cmd, enh);
    log_info(s->logname, "%s: reject: %s from %s[%s]: %d %s %s;%s%s proto=%s%s",
             s->id[0] ? s->id : "NOQUEUE", cmd, s->peer.name, s->peer.addr, code, enh, text, from,
             to, s->peer.esmtp ? "ESMTP" : "SMTP", helo);
}

/* --- commands ------------------------------------------------------------------ */

static int starttls_offered(const struct smtp_session *s)
{
    return s->srv->tls && s->srv->listen->tls == LISTEN_TLS_STARTTLS && !s->peer.tls;
}

/* RFC 4954 4: no AUTH over plaintext unless the listener explicitly allows it. */
int session_auth_offered(const struct smtp_session *s)
{
    return s->srv->listen->auth && !s->peer.auth_user &&
           (s->peer.tls || s->srv->listen->auth_plaintext);
}

static void ehlo_reply(struct smtp_session *s)
{
    struct evbuffer *o = bufferevent_get_output(s->bev);
    evbuffer_add_printf(o, "250-%s\r\n", s->conf->hostname);
    evbuffer_add_printf(o, "250-PIPELINING\r\n");
    evbuffer_add_printf(o, "250-SIZE %zu\r\n", s->conf->message_size);
    evbuffer_add_printf(o, "250-8BITMIME\r\n");
    evbuffer_add_printf(o, "250-SMTPUTF8\r\n");
    evbuffer_add_printf(o, "250-ENHANCEDSTATUSCODES\r\n");
    evbuffer_add_printf(o, "250-CHUNKING\r\n");
    if (starttls_offered(s)) evbuffer_add_printf(o, "250-STARTTLS\r\n");
    if (session_auth_offered(s)) evbuffer_add_printf(o, "250-AUTH PLAIN LOGIN\r\n");
    evbuffer_add_printf(o, "250 DSN\r\n");
}

static void cmd_helo(struct smtp_session *s, struct smtp_cmd *c)
{
    int esmtp = c->verb == SMTP_V_EHLO;
    if (esmtp)
        s->n_ehlo++;
    else
        s->n_helo++;
    /* RFC 5321 4.1.4: HELO/EHLO resets the transaction. */
    session_txn_clear(s);
    free(s->peer.helo);
    s->peer.helo = xstrdup(c->arg ? c->arg : "");
    s->peer.esmtp = esmtp;
    session_set_state(s, SMTP_ST_READY);
    if (esmtp)
        ehlo_reply(s);
    else
        session_reply(s, 250, NULL, "%s", s->conf->hostname);
}

static void mail_judged(void *arg, const struct smtp_verdict *v);

static void cmd_mail(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_mail++;
    if (s->srv->listen->require_auth && !s->peer.auth_user) {
        session_log_reject(s, "MAIL", 530, "5.7.0", "Authentication required", NULL);
        session_fail(s, 530, "5.7.0", "Authentication required: log in with AUTH first");
        return;
    }
    if (c->size >= 0 && (unsigned long long)c->size > s->conf->message_size) {
        session_log_reject(s, "MAIL", 552, "5.3.4", "Message size exceeds fixed limit", NULL);
        session_fail(s, 552, "5.3.4", "Message size exceeds fixed limit of %zu bytes",
                     s->conf->message_size);
        return;
    }
    if ((c->path.flags & ADDR_F_UTF8) && !c->smtputf8) {
        session_fail(s, 553, "5.6.7", "Sender address needs SMTPUTF8: add the SMTPUTF8 parameter");
        return;
    }
    session_txn_clear(s);
    struct smtp_txn *t = &s->txn;
    t->sender = c->path;
    memset(&c->path, 0, sizeof c->path);
    t->size = c->size;
    t->body = c->body;
    t->smtputf8 = c->smtputf8;
    t->ret = c->ret;
    t->envid = c->envid;
    c->envid = NULL;
    s->have_txn = 1;
    if (s->srv->ops->txn_new) t->state = s->srv->ops->txn_new(s->srv->ops->ctx, &s->peer);
    s->pending = PENDING_JUDGE;
    s->pending_handle =
        s->srv->ops->judge(s->srv->ops->ctx, &s->peer, t, SMTP_STAGE_MAIL, NULL, mail_judged, s);
}

static void mail_judged(void *arg, const struct smtp_verdict *v)
{
    struct smtp_session *s = arg;
    s->pending = PENDING_NONE;
    s->pending_handle = NULL;
    if (v->code) {
        session_log_reject(s, "MAIL", v->code, v->enh, v->text, NULL);
        s->txn_code = v->code;
        s->txn_check = v->check;
        session_txn_clear(s);
        session_fail(s, v->code, v->enh, "%s", v->text);
    } else {
        session_set_state(s, SMTP_ST_MAIL);
        session_reply(s, 250, "2.1.0", "Ok");
    }
    session_process_input(s);
}

static void rcpt_judged(void *arg, const struct smtp_verdict *v);

static void cmd_rcpt(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_rcpt++;
    struct smtp_txn *t = &s->txn;
    if (t->nrcpts >= (size_t)s->conf->recipients) {
        session_fail(s, 452, "4.5.3",
                     "Too many recipients in one message; send the rest in another");
        return;
    }
    if ((c->path.flags & ADDR_F_UTF8) && !t->smtputf8) {
        session_fail(s, 553, "5.6.7",
                     "Recipient address needs SMTPUTF8: give the SMTPUTF8 parameter with MAIL");
        return;
    }
    struct smtp_rcpt *r = &s->pending_rcpt;
    memset(r, 0, sizeof *r);
    r->addr = c->path;
    memset(&c->path, 0, sizeof c->path);
    if (!r->addr.domain) /* RFC 5321 4.1.1.3: "<Postmaster>" means our postmaster */
        r->addr.domain = xstrdup(s->conf->hostname);
    r->notify = c->notify;
    r->orcpt = c->orcpt;
    c->orcpt = NULL;
    s->pending = PENDING_JUDGE;
    s->pending_handle = s->srv->ops->judge(s->srv->ops->ctx, &s->peer, t, SMTP_STAGE_RCPT, &r->addr,
                                           rcpt_judged, s);
}

static void rcpt_judged(void *arg, const struct smtp_verdict *v)
{
    struct smtp_session *s = arg;
    struct smtp_rcpt *r = &s->pending_rcpt;
    s->pending = PENDING_NONE;
    s->pending_handle = NULL;
    if (v->code) {
        char *a = addr_format(&r->addr);
        session_log_reject(s, "RCPT", v->code, v->enh, v->text, a);
        free(a);
        s->txn_code = v->code;
        s->txn_check = v->check;
        addr_clear(&r->addr);
        free(r->orcpt);
        session_fail(s, v->code, v->enh, "%s", v->text);
    } else {
        struct smtp_txn *t = &s->txn;
        if (v->rcpt_local[0]) { /* taken under its plain address (BATV) */
            free(r->addr.local);
            r->addr.local = xstrdup(v->rcpt_local);
            r->addr.flags &= ~(unsigned)ADDR_F_QUOTED;
        }
        if (t->nrcpts == t->cap) {
            t->cap = t->cap ? t->cap * 2 : 4;
            t->rcpts = xrealloc(t->rcpts, t->cap * sizeof *t->rcpts);
        }
        t->rcpts[t->nrcpts++] = *r;
        session_set_state(s, SMTP_ST_RCPT);
        session_reply(s, 250, "2.1.5", "Ok");
    }
    memset(r, 0, sizeof *r);
    session_process_input(s);
}

static void cmd_rset(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_rset++;
    session_txn_clear(s);
    session_set_state(s, s->peer.helo ? SMTP_ST_READY : SMTP_ST_INIT);
    session_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_noop(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_other++;
    session_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_quit(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_quit++;
    session_reply(s, 221, "2.0.0", "Bye");
    session_set_state(s, SMTP_ST_QUIT);
    session_close(s);
}

static void cmd_help(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_other++;
    session_reply(s, 214, "2.0.0",
                  "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY; see RFC 5321");
}

static void cmd_vrfy(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_other++;
    /* RFC 5321 3.5.3: 252 without disclosing who exists. */
    session_reply(s, 252, "2.5.0",
                  "Cannot VRFY user, but will accept the message and attempt delivery");
}

static void cmd_expn(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_other++;
    session_fail(s, 502, "5.5.1", "EXPN is not available");
}

static void session_callbacks(struct smtp_session *s);

static void cmd_starttls(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_starttls++;
    if (!starttls_offered(s)) {
        session_fail(s, s->peer.tls ? 503 : 502, "5.5.1",
                     s->peer.tls ? "TLS is already active" : "STARTTLS is not offered here");
        return;
    }
    SSL *ssl = smtp_tls_ssl_new(s->srv->tls);
    if (!ssl) {
        session_reply(s, 454, "4.7.0", "TLS not available due to a temporary reason");
        return;
    }
    session_reply(s, 220, "2.0.0", "Ready to start TLS");
    /* RFC 3207 4.2 / CVE-2011-0411: whatever the client pipelined after STARTTLS was
     * sent in plaintext and must never be executed inside TLS. */
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t junk = evbuffer_get_length(in);
    if (junk) {
        log_info(s->logname,
                 "discarded %zu bytes of plaintext pipelined after STARTTLS from %s[%s]", junk,
                 s->peer.name, s->peer.addr);
        evbuffer_drain(in, junk);
    }
    output_undirect(s);
    struct bufferevent *tls = bufferevent_openssl_filter_new(
        s->srv->base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!tls) {
        SSL_free(ssl);
        session_reply(s, 454, "4.7.0", "TLS not available due to a temporary reason");
        return;
    }
    s->bev = tls;
    session_callbacks(s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    /* RFC 3207 4.2: forget everything learnt before TLS; the client must EHLO again. */
    s->peer.tls = 1;
    s->peer.esmtp = 0;
    free(s->peer.helo);
    s->peer.helo = NULL;
    session_txn_clear(s);
    session_set_state(s, SMTP_ST_INIT);
}

/* The dialogue: each verb, the states it is allowed in, its handler. */
static const struct {
    enum smtp_verb verb;
    unsigned states;
    void (*fn)(struct smtp_session *, struct smtp_cmd *);
} commands[] = {
    {SMTP_V_EHLO, ST(SMTP_ST_INIT) | ST(SMTP_ST_READY) | ST(SMTP_ST_MAIL) | ST(SMTP_ST_RCPT),
     cmd_helo},
    {SMTP_V_HELO, ST(SMTP_ST_INIT) | ST(SMTP_ST_READY) | ST(SMTP_ST_MAIL) | ST(SMTP_ST_RCPT),
     cmd_helo},
    {SMTP_V_MAIL, ST(SMTP_ST_READY), cmd_mail},
    {SMTP_V_RCPT, ST(SMTP_ST_MAIL) | ST(SMTP_ST_RCPT), cmd_rcpt},
    {SMTP_V_DATA, ST(SMTP_ST_RCPT), session_cmd_data},
    {SMTP_V_BDAT, ST(SMTP_ST_RCPT) | ST(SMTP_ST_BDAT), session_cmd_bdat},
    {SMTP_V_RSET, ~0u, cmd_rset},
    {SMTP_V_NOOP, ~0u, cmd_noop},
    {SMTP_V_QUIT, ~0u, cmd_quit},
    {SMTP_V_HELP, ~0u, cmd_help},
    {SMTP_V_VRFY, ~0u, cmd_vrfy},
    {SMTP_V_EXPN, ~0u, cmd_expn},
    {SMTP_V_STARTTLS, ST(SMTP_ST_INIT) | ST(SMTP_ST_READY), cmd_starttls},
    {SMTP_V_AUTH, ST(SMTP_ST_READY), session_cmd_auth},
};

static void sequence_error(struct smtp_session *s, enum smtp_verb v)
{
    const char *why;
    if (s->state == SMTP_ST_INIT && v != SMTP_V_QUIT)
        why = "send HELO/EHLO first";
    else if (s->state == SMTP_ST_BDAT && v == SMTP_V_DATA)
        why = "DATA cannot follow BDAT; finish with BDAT LAST";
    else if (v == SMTP_V_MAIL)
        why = "nested MAIL command";
    else if (v == SMTP_V_RCPT)
        why = "send MAIL first";
    else if (v == SMTP_V_DATA || v == SMTP_V_BDAT)
        why = s->state == SMTP_ST_MAIL ? "no valid recipients" : "send MAIL and RCPT first";
    else
        why = "finish the message first";
    session_fail(s, 503, "5.5.1", "Bad sequence of commands: %s", why);
}

/* The command line as the debug trace shows it: never a SASL response, neither a line
 * of the AUTH exchange nor AUTH's initial response (base64 of user and password). */
static const char *trace_line(const struct smtp_session *s, const char *line, size_t len, char *esc,
                              size_t size)
{
    if (s->state == SMTP_ST_AUTH) return "(SASL response not logged)";
    if (len >= 4 && strncasecmp(line, "AUTH", 4) == 0 && (len == 4 || line[4] == ' ')) {
        size_t m = 5;
        while (m < len && line[m] != ' ')
            m++;
        if (m >= len) return log_escape(esc, size, line, len); /* no initial response */
        char shown[64];
        snprintf(shown, sizeof shown, "%.*s (initial response not logged)", (int)(m > 32 ? 32 : m),
                 line);
        return log_escape(esc, size, shown, strlen(shown));
    }
    return log_escape(esc, size, line, len);
}

static void handle_line(struct smtp_session *s, const char *line, size_t len)
{
    struct smtp_cmd c;
    struct smtp_err err;
    s->n_cmds++;
    if (log_debug_on("smtp")) {
        char esc[600];
        log_debug("smtp", "%s[%s]: < %s", s->peer.name, s->peer.addr,
                  trace_line(s, line, len, esc, sizeof esc));
    }
    if (s->state == SMTP_ST_AUTH) {
        session_auth_step(s, line, len);
        return;
    }
    memset(&c, 0, sizeof c);
    if (smtp_parse_cmd(line, len, &c, &err) != 0) {
        if (c.verb == SMTP_V_UNKNOWN) s->n_other++;
        if (c.verb == SMTP_V_MAIL || c.verb == SMTP_V_RCPT)
            session_log_reject(s, smtp_verb_name(c.verb), err.code, err.enh, err.text, NULL);
        session_fail(s, err.code, err.enh, "%s", err.text);
        smtp_cmd_clear(&c);
        return;
    }
    if (s->refused && c.verb != SMTP_V_QUIT) {
        /* RFC 5321 3.1: after a 554 greeting, 503 to everything until QUIT */
        if (c.verb == SMTP_V_UNKNOWN) s->n_other++;
        session_fail(s, 503, "5.5.1", "Bad sequence of commands: this session was refused; QUIT");
        smtp_cmd_clear(&c);
        return;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (commands[i].verb != c.verb) continue;
        if (!(commands[i].states & ST(s->state)))
            sequence_error(s, c.verb);
        else
            commands[i].fn(s, &c);
        smtp_cmd_clear(&c);
        return;
    }
    s->n_other++;
    session_fail(s, 500, "5.5.2", "Command not recognized");
    smtp_cmd_clear(&c);
}

/* A client that sends a command before the reply to the previous one while
 * PIPELINING was not offered to it (RFC 2920 3.1: only after EHLO's reply said so):
 * postscreen's pipelining test, for role mx listeners. Logged once. */
static void note_pipelining(struct smtp_session *s, const char *line, size_t len, size_t more)
{
    char esc[100];
    s->peer.bad_pipelining = 1;
    log_info(s->logname, "improper pipelining from %s[%s]: %zu bytes after \"%s\" before its reply",
             s->peer.name, s->peer.addr, more,
             log_escape(esc, sizeof esc, line, len < 40 ? len : 40));
}

void session_process_input(struct smtp_session *s)
{
    /* before the greeting (the name lookup, the pause) an early talker's bytes wait */
    while (!s->closing && s->pending == PENDING_NONE && s->greeted) {
        if (output_pending(s) > OUT_MAX) { /* write_cb goes on once the client read */
            s->out_full = 1;
            break;
        }
        /* fetched each time: STARTTLS replaces the bufferevent */
        struct evbuffer *in = bufferevent_get_input(s->bev);
        /* RFC 4954 4: SASL responses may be up to 12288 octets */
        size_t maxline = s->state == SMTP_ST_AUTH ? 12288 + 2 : s->conf->line_length;
        if (s->state == SMTP_ST_CHUNK) { /* may complete with no byte ("BDAT 0 LAST") */
            session_read_chunk(s, in);
            if (s->state == SMTP_ST_CHUNK) break; /* need more bytes */
            continue;
        }
        if (evbuffer_get_length(in) == 0) break;
        if (s->state == SMTP_ST_DATA) {
            session_read_data(s, in);
            continue;
        }
        struct evbuffer_ptr eol = evbuffer_search(in, "\n", 1, NULL);
        if (eol.pos < 0) {
            if (evbuffer_get_length(in) > maxline) {
                /* RFC 5321 4.5.3.1.4: the line is too long; drop it up to its end */
                evbuffer_drain(in, evbuffer_get_length(in));
                if (!s->discard_line) {
                    s->discard_line = 1;
                    session_fail(s, 500, "5.5.2", "Line too long (the limit is %zu bytes)",
                                 maxline);
                }
            }
            break;
        }
        size_t n = (size_t)eol.pos + 1;
        if (s->discard_line) {
            evbuffer_drain(in, n);
            s->discard_line = 0;
            continue;
        }
        if (n > maxline) {
            evbuffer_drain(in, n);
            session_fail(s, 500, "5.5.2", "Line too long (the limit is %zu bytes)", maxline);
            continue;
        }
        char *line = xmalloc(n + 1);
        evbuffer_remove(in, line, n);
        size_t len = n - 1;
        if (len && line[len - 1] == '\r') len--;
        line[len] = '\0';
        size_t more = evbuffer_get_length(in);
        if (more && !s->peer.esmtp && !s->peer.bad_pipelining && s->state != SMTP_ST_AUTH &&
            s->peer.listener->role == LISTEN_MX)
            note_pipelining(s, line, len, more);
        handle_line(s, line, len);
        free(line);
    }
}

/* --- connections ---------------------------------------------------------------- */

/* Bytes still waiting to go out, including below a TLS filter. */
static size_t output_pending(struct smtp_session *s)
{
    size_t n = evbuffer_get_length(bufferevent_get_output(s->bev));
    struct bufferevent *under = bufferevent_get_underlying(s->bev);
    if (under) n += evbuffer_get_length(bufferevent_get_output(under));
    return n;
}

static void free_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_session *s = arg;
    /* a message being committed cannot be called back: committed() frees */
    if (s->pending == PENDING_COMMIT) return;
    /* under a TLS filter the last reply may still sit in the socket's buffer: give
     * it a moment (bounded) to leave */
    if (!s->gone && output_pending(s) > 0 && s->free_tries++ < 100) {
        evtimer_add(s->ev_free, &(struct timeval){.tv_usec = 20000});
        return;
    }
    session_free(s);
}

static void session_free(struct smtp_session *s)
{
    if (s->pending == PENDING_JUDGE && s->pending_handle) {
        s->srv->ops->judge_cancel(s->pending_handle);
        addr_clear(&s->pending_rcpt.addr);
        free(s->pending_rcpt.orcpt);
    }
    if (s->pending == PENDING_AUTH && s->pending_handle)
        s->srv->ops->auth_cancel(s->pending_handle);
    if (s->pending == PENDING_LOOKUP && s->pending_handle)
        s->srv->ops->lookup_cancel(s->pending_handle);
    free(s->auth_user_try);
    session_auth_reset(s);
    /* Postfix's shape: only the commands that were used, then the total. */
    char counts[256] = "";
    size_t o = 0;
    const struct {
        const char *name;
        int n;
    } cnt[] = {{"ehlo", s->n_ehlo},         {"helo", s->n_helo},    {"mail", s->n_mail},
               {"rcpt", s->n_rcpt},         {"data", s->n_data},    {"bdat", s->n_bdat},
               {"starttls", s->n_starttls}, {"auth", s->n_auth},    {"rset", s->n_rset},
               {"quit", s->n_quit},         {"unknown", s->n_other}};
    for (size_t i = 0; i < sizeof cnt / sizeof cnt[0]; i++) {
        if (!cnt[i].n) continue;
        int w = snprintf(counts + o, sizeof counts - o, " %s=%d", cnt[i].name, cnt[i].n);
        if (w > 0 && (size_t)w < sizeof counts - o) o += (size_t)w;
    }
    log_info(s->logname, "disconnect from %s[%s]%s commands=%d", s->peer.name, s->peer.addr, counts,
             s->n_cmds);
    session_txn_clear(s);
    flush_unlink(s);
    bufferevent_free(s->bev);
    if (s->ev_free) event_free(s->ev_free);
    if (s->ev_greet) event_free(s->ev_greet); /* a pause cut short by a hang-up */
    free(s->peer.helo);
    free(s->peer.auth_user);
    if (s->prev)
        s->prev->next = s->next;
    else
        sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    nsessions--;
    metrics_add(MET_SESSIONS, -1, s->peer.listener->address);
    conf_unref(s->conf); /* after the cancels: a policy run borrows it */
    free(s);
}

/* Free the session after its pending output went out (never from inside a callback
 * that its own I/O is on the stack of: the free is deferred to the loop). A client
 * that is gone, or a shutdown, does not wait for the output: free_cb gives it a
 * bounded moment. A commit in flight keeps the session until committed(). */
void session_maybe_free(struct smtp_session *s)
{
    if (!s->closing || s->pending == PENDING_COMMIT) return;
    if (!s->gone && !shutting_down && evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
        return; /* write_cb comes back, or the write timeout */
    if (!s->ev_free) s->ev_free = evtimer_new(s->srv->base, free_cb, s);
    if (!evtimer_pending(s->ev_free, NULL)) event_active(s->ev_free, EV_TIMEOUT, 0);
}

void session_close(struct smtp_session *s)
{
    if (!s->closing) /* the last replies get a short, fixed time to leave */
        session_timeouts(s, 0, CLOSE_LINGER);
    s->closing = 1;
    bufferevent_disable(s->bev, EV_READ);
    session_maybe_free(s);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    session_process_input(arg);
}

/* Output went out (down to the low watermark, or all of it by session_flush). */
static void output_went(struct smtp_session *s)
{
    if (s->out_full && output_pending(s) <= OUT_MAX / 2) {
        s->out_full = 0;
        session_process_input(s); /* the commands that waited for the client to read */
    }
    session_maybe_free(s);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_session *s = arg;
    /* the rest session_flush() left is out: replies are written directly again */
    if (s->direct && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
    output_went(s);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_session *s = arg;
    if (what & BEV_EVENT_CONNECTED) { /* TLS handshake completed */
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        if (ssl) {
            smtp_tls_describe(ssl, s->peer.tls_info, sizeof s->peer.tls_info);
            metrics_add(MET_TLS_HANDSHAKES, 1, "inbound", SSL_get_version(ssl));
            s->peer.tls = 1;
            log_info(s->logname, "Anonymous TLS connection established from %s[%s]: %s",
                     s->peer.name, s->peer.addr, s->peer.tls_info);
        }
        return;
    }
    if ((what & BEV_EVENT_ERROR) && bufferevent_openssl_get_ssl(bev)) {
        unsigned long e;
        char why[256] = "";
        while ((e = bufferevent_get_openssl_error(bev)))
            ERR_error_string_n(e, why, sizeof why);
        if (why[0])
            log_info(s->logname, "TLS error from %s[%s]: %s", s->peer.name, s->peer.addr, why);
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_WRITING)) {
        /* the client does not read its replies: nothing more can reach it */
        if (!s->closing)
            log_info(s->logname, "timeout sending replies after %s to %s[%s]",
                     state_names[s->state], s->peer.name, s->peer.addr);
        s->gone = 1;
        session_close(s);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        log_info(s->logname, "timeout after %s from %s[%s]", state_names[s->state], s->peer.name,
                 s->peer.addr);
        session_reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->conf->hostname);
        session_close(s);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (s->state != SMTP_ST_QUIT && !s->closing)
            log_info(s->logname, "lost connection after %s from %s[%s]", state_names[s->state],
                     s->peer.name, s->peer.addr);
        /* After an error nothing can be sent any more: free without flushing. After
         * EOF the client may still read (a half-close): the replies get CLOSE_LINGER
         * seconds, and a reset ends it at once. */
        if (what & BEV_EVENT_ERROR) s->gone = 1;
        session_close(s);
    }
}

static void session_callbacks(struct smtp_session *s)
{
    bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
    /* Bound what a pipelining client can make us buffer while we think, and what it
     * can make us hold of replies it does not read (OUT_MAX). */
    bufferevent_setwatermark(s->bev, EV_READ, 0, 256 * 1024);
    bufferevent_setwatermark(s->bev, EV_WRITE, OUT_LOW, 0);
    struct bufferevent *under = bufferevent_get_underlying(s->bev);
    if (under) bufferevent_setwatermark(under, EV_WRITE, 0, OUT_LOW);
    session_timeouts(s, s->conf->command_timeout, s->conf->command_timeout);
}

static size_t sessions_from(const struct sockaddr_storage *sa)
{
    size_t n = 0;
    for (struct smtp_session *s = sessions; s; s = s->next) {
        /* closing sessions count: their socket and buffers are still held */
        if (s->peer.sa.ss_family != sa->ss_family) continue;
        if (sa->ss_family == AF_INET &&
            ((const struct sockaddr_in *)&s->peer.sa)->sin_addr.s_addr ==
                ((const struct sockaddr_in *)sa)->sin_addr.s_addr)
            n++;
        if (sa->ss_family == AF_INET6 &&
            memcmp(&((const struct sockaddr_in6 *)&s->peer.sa)->sin6_addr,
                   &((const struct sockaddr_in6 *)sa)->sin6_addr, 16) == 0)
            n++;
    }
    return n;
}

/* Bytes that came before the greeting although a pause was made for them:
 * postscreen's pregreet test. Logged with the start of what was sent. */
static void note_early_talker(struct smtp_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t n = evbuffer_get_length(in);
    if (!s->ev_greet || n == 0) return;
    char head[64], esc[200];
    ev_ssize_t got = evbuffer_copyout(in, head, sizeof head);
    size_t hl = got > 0 ? (size_t)got : 0;
    for (size_t i = 0; i < hl; i++)
        if (head[i] == '\r' || head[i] == '\n') hl = i;
    s->peer.early_talker = 1;
    log_info(s->logname, "early talker %s[%s]: %zu bytes before the greeting: \"%s\"", s->peer.name,
             s->peer.addr, n, log_escape(esc, sizeof esc, head, hl));
}

/* The connection is accepted, its client known and the pause over: log it and say
 * hello (or refuse an early talker, as pregreet_action says). */
static void greet(struct smtp_session *s)
{
    log_info(s->logname, "connect from %s[%s]", s->peer.name, s->peer.addr);
    s->greeted = 1;
    note_early_talker(s);
    int action = s->peer.listener->pregreet_action;
    if (s->peer.early_talker && action != CONF_PREGREET_SCORE) {
        static const char why[] = "Protocol error: commands sent before the greeting";
        session_log_reject(s, "CONNECT", 554, "5.5.0", why, NULL);
        session_reply(s, 554, "5.5.0", "%s Error: %s; wait for the 220 greeting", s->conf->hostname,
                      "you sent commands before the greeting");
        if (action == CONF_PREGREET_DROP) {
            session_close(s);
            return;
        }
        s->refused = 1; /* RFC 5321 3.1: wait for QUIT */
        return;
    }
    session_reply(s, 220, NULL, "%s ESMTP kurier", s->conf->hostname);
}

/* Greet once the name lookup and the pause are both over; then go on with what an
 * early talker sent. */
static void greet_if_ready(struct smtp_session *s)
{
    if (s->closing || s->greeted || s->pending == PENDING_LOOKUP) return;
    if (s->ev_greet && evtimer_pending(s->ev_greet, NULL)) return;
    greet(s);
    session_process_input(s);
}

static void name_found(void *arg, const char *name, enum rdns_status st, const char *ptr)
{
    struct smtp_session *s = arg;
    s->pending = PENDING_NONE;
    s->pending_handle = NULL;
    str_copy(s->peer.name, name && *name ? name : "unknown", sizeof s->peer.name);
    s->peer.rdns = st;
    str_copy(s->peer.ptr_name, ptr ? ptr : "", sizeof s->peer.ptr_name);
    greet_if_ready(s);
}

static void pause_over(evutil_socket_t fd, short what, void *arg)
{
    greet_if_ready(arg);
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct smtp_server *srv = arg;
    const struct kconf *conf = conf_ref(srv->conf); /* dropped in session_free */
    struct smtp_session *s = xcalloc(1, sizeof *s);
    s->srv = srv;
    s->conf = conf;
    s->t_start = time_mono();
    /* numbered like Postfix's per-session smtpd processes, starting after our pid so
     * the numbers do not repeat across a quick restart */
    static unsigned long session_no;
    if (!session_no) session_no = (unsigned long)getpid() * 1000;
    snprintf(s->logname, sizeof s->logname, "smtpd[%lu]", ++session_no);
    s->peer.conf = conf;
    s->peer.listener = srv->listen;
    memcpy(&s->peer.sa, sa, (size_t)salen < sizeof s->peer.sa ? (size_t)salen : sizeof s->peer.sa);
    if (getnameinfo(sa, (socklen_t)salen, s->peer.addr, sizeof s->peer.addr, NULL, 0,
                    NI_NUMERICHOST) != 0)
        str_copy(s->peer.addr, "unknown", sizeof s->peer.addr);
    str_copy(s->peer.name, "unknown", sizeof s->peer.name); /* until the lookup says more */
    for (size_t i = 0; i < conf->ntrusted; i++)
        if (conf_net_match(&conf->trusted[i], sa)) s->peer.trusted = 1;
    s->txn.size = -1;
    SSL *ssl = NULL;
    if (srv->listen->tls == LISTEN_TLS_IMPLICIT && srv->tls) ssl = smtp_tls_ssl_new(srv->tls);
    if (ssl) /* RFC 8314: TLS from the first byte; the greeting goes out after the handshake */
        s->bev = bufferevent_openssl_socket_new(srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                BEV_OPT_CLOSE_ON_FREE);
    else
        s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    session_callbacks(s);
    if (!ssl) output_direct(s);
    s->next = sessions;
    if (sessions) sessions->prev = s;
    sessions = s;
    nsessions++;
    metrics_add(MET_CONNECTIONS, 1, s->peer.listener->address);
    metrics_add(MET_SESSIONS, 1, s->peer.listener->address);
    if (nsessions > (size_t)conf->connections) {
        log_info(s->logname, "connect from %s[%s]", s->peer.name, s->peer.addr);
        log_warn(s->logname, "too many connections: %zu, refusing %s[%s]", nsessions - 1,
                 s->peer.name, s->peer.addr);
        session_reply(s, 421, "4.7.0", "%s Error: too many connections, try again later",
                      conf->hostname);
        session_close(s);
        return;
    }
    if (sessions_from(&s->peer.sa) > (size_t)conf->connections_per_ip) {
        log_info(s->logname, "connect from %s[%s]", s->peer.name, s->peer.addr);
        log_warn(s->logname, "too many connections from %s[%s]", s->peer.name, s->peer.addr);
        session_reply(s, 421, "4.7.0",
                      "%s Error: too many connections from your address, try later",
                      conf->hostname);
        session_close(s);
        return;
    }
    bufferevent_enable(s->bev, s->direct ? EV_READ : EV_READ | EV_WRITE);
    if (srv->listen->role == LISTEN_MX && srv->listen->pregreet_wait > 0 && !s->peer.trusted) {
        /* postscreen's greet wait: bots talk at once, real servers wait for the banner.
         * The name lookup runs meanwhile; a hang-up frees the timer (session_free). */
        s->ev_greet = evtimer_new(srv->base, pause_over, s);
        evtimer_add(s->ev_greet, &(struct timeval){.tv_sec = srv->listen->pregreet_wait});
    }
    if (conf->reverse_dns && srv->ops->lookup_name) {
        /* as Postfix: the client's name is known before the greeting; what an early
         * talker sends meanwhile waits in the input buffer */
        s->pending = PENDING_LOOKUP;
        s->pending_handle =
            srv->ops->lookup_name(srv->ops->ctx, (struct sockaddr *)&s->peer.sa, name_found, s);
        return;
    }
    greet_if_ready(s);
}

static void accept_error_cb(struct evconnlistener *lev, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();
    log_warn("smtpd", "accept: %s", evutil_socket_error_to_string(e));
}

struct smtp_server *smtp_server_new(struct event_base *base, const struct conf_listen *l,
                                    const struct kconf *conf, const struct smtp_ops *ops)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICHOST};
    struct addrinfo *res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", l->port);
    int rc = getaddrinfo(l->host[0] ? l->host : NULL, port, &hints, &res);
    if (rc != 0 || !res) {
        log_err("kurierd", "listen %s: %s", l->address, gai_strerror(rc));
        return NULL;
    }
    struct smtp_server *srv = xcalloc(1, sizeof *srv);
    srv->base = base;
    srv->conf = conf_ref(conf);
    srv->listen = l;
    srv->ops = ops;
    srv->lev = evconnlistener_new_bind(base, accept_cb, srv,
                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                           LEV_OPT_DISABLED | LEV_OPT_CLOSE_ON_EXEC,
                                       1024, res->ai_addr, (int)res->ai_addrlen);
    freeaddrinfo(res);
    if (!srv->lev) {
        log_err("kurierd", "listen %s: %s", l->address, strerror(errno));
        conf_unref(srv->conf);
        free(srv);
        return NULL;
    }
    evconnlistener_set_error_cb(srv->lev, accept_error_cb);
    return srv;
}

void smtp_server_set_tls(struct smtp_server *srv, struct smtp_tls *tls)
{
    srv->tls = tls;
}

void smtp_server_start(struct smtp_server *srv)
{
    if (srv->lev) evconnlistener_enable(srv->lev);
}

void smtp_server_set_conf(struct smtp_server *srv, const struct kconf *conf,
                          const struct conf_listen *l)
{
    const struct kconf *old = srv->conf;
    srv->conf = conf_ref(conf);
    srv->listen = l;
    conf_unref(old);
}

void smtp_server_stop(struct smtp_server *srv)
{
    if (srv->lev) evconnlistener_free(srv->lev);
    srv->lev = NULL;
}

void smtp_server_free(struct smtp_server *srv)
{
    if (!srv) return;
    smtp_server_stop(srv);
    conf_unref(srv->conf);
    free(srv);
}

void smtp_sessions_close_all(void)
{
    shutting_down = 1;
    for (struct smtp_session *s = sessions; s; s = s->next) {
        if (s->closing) {
            session_maybe_free(s); /* no more waiting for a client that does not read */
            continue;
        }
        /* A message whose end is being judged or committed is answered first: a 421
         * now, and the message stored after all, would be sent twice. */
        if (s->pending == PENDING_COMMIT ||
            (s->pending == PENDING_JUDGE &&
             (s->state == SMTP_ST_DATA || s->state == SMTP_ST_CHUNK))) {
            s->close_after_commit = 1;
            continue;
        }
        session_reply(s, 421, "4.3.2", "%s Service shutting down, try again later",
                      s->conf->hostname);
        session_close(s);
    }
}
