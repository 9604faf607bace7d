/* server.c: the whole inbound SMTP dialogue (RFC 5321, with PIPELINING, CHUNKING,
 * SIZE, 8BITMIME, SMTPUTF8, DSN) as one state machine. Policy and spool are asked
 * through struct smtp_ops; this file never decides where mail goes. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "smtp/smtp.h"

enum smtp_state {
    SMTP_ST_INIT = 0, /* greeted, no HELO/EHLO yet */
    SMTP_ST_READY,    /* HELO/EHLO done, no transaction */
    SMTP_ST_MAIL,     /* MAIL accepted, no recipient yet */
    SMTP_ST_RCPT,     /* at least one recipient */
    SMTP_ST_DATA,     /* reading DATA content */
    SMTP_ST_BDAT,     /* BDAT chunks being received (between chunks) */
    SMTP_ST_CHUNK,    /* reading the bytes of one BDAT chunk */
    SMTP_ST_QUIT,     /* closing */
    SMTP_ST_COUNT
};

static const char *const state_names[] = {"INIT", "READY", "MAIL",  "RCPT",
                                          "DATA", "BDAT",  "CHUNK", "QUIT"};

#define ST(x) (1u << (x))

enum pending_kind { PENDING_NONE = 0, PENDING_JUDGE, PENDING_COMMIT };

struct smtp_server {
    struct event_base *base;
    struct evconnlistener *lev;
    const struct kconf *conf;
    const struct conf_listen *listen;
    const struct smtp_ops *ops;
};

struct smtp_session {
    struct smtp_server *srv;
    const struct kconf *conf;
    struct bufferevent *bev;
    struct smtp_peer peer;
    enum smtp_state state;
    struct smtp_txn txn;
    int have_txn;
    int errors;
    int closing;            /* no more input is processed; freed once output is flushed */
    int discard_line;       /* dropping the rest of an over-long command line */
    int close_after_commit; /* shutting down: answer the message, then 421 */
    enum pending_kind pending;
    void *pending_handle;
    struct smtp_rcpt pending_rcpt; /* the RCPT being judged */
    /* message content */
    void *msg;
    char id[32];
    struct smtp_data data;
    struct buf out;
    int msg_failed; /* disk write failed: answer 451 at the end */
    int too_big;    /* over message_size: answer 552 at the end */
    unsigned long long chunk_left;
    int chunk_last;
    double t_start;
    /* counters for the disconnect line, as Postfix's */
    int n_ehlo, n_helo, n_mail, n_rcpt, n_data, n_bdat, n_rset, n_quit, n_other, n_cmds;
    struct event *ev_free;
    struct smtp_session *prev, *next;
};

static struct smtp_session *sessions;
static size_t nsessions;

size_t smtp_sessions_count(void)
{
    return nsessions;
}

/* --- replies --------------------------------------------------------------- */

/* The one function that sends a reply: it only sends. */
static void reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
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

static void session_close(struct smtp_session *s);
static void process_input(struct smtp_session *s);

/* A client error: reply, count it, hang up after too many (Postfix's
 * smtpd_hard_error_limit). */
static void fail(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    reply(s, code, enh, "%s", text);
    if (++s->errors >= s->conf->errors) {
        log_info("smtpd", "too many errors after %s from %s[%s]", state_names[s->state],
                 s->peer.name, s->peer.addr);
        reply(s, 421, "4.7.0", "%s Error: too many errors, closing the connection",
              s->conf->hostname);
        session_close(s);
    }
}

static void set_state(struct smtp_session *s, enum smtp_state st)
{
    if (s->state != st)
        log_debug("smtp", "%s[%s]: %s -> %s", s->peer.name, s->peer.addr, state_names[s->state],
                  state_names[st]);
    s->state = st;
}

/* --- transaction ------------------------------------------------------------- */

static void txn_clear(struct smtp_session *s)
{
    struct smtp_txn *t = &s->txn;
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
    s->msg_failed = s->too_big = 0;
    s->chunk_left = 0;
    s->chunk_last = 0;
}

/* Log a refusal in Postfix's shape so pflogsumm and fail2ban read it. */
static void log_reject(struct smtp_session *s, const char *cmd, int code, const char *enh,
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
    log_info("smtpd", "%s: reject: %s from %s[%s]: %d %s %s;%s%s proto=%s%s",
             s->id[0] ? s->id : "NOQUEUE", cmd, s->peer.name, s->peer.addr, code, enh, text, from,
             to, s->peer.esmtp ? "ESMTP" : "SMTP", helo);
}

/* --- commands ------------------------------------------------------------------ */

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
    txn_clear(s);
    free(s->peer.helo);
    s->peer.helo = xstrdup(c->arg ? c->arg : "");
    s->peer.esmtp = esmtp;
    set_state(s, SMTP_ST_READY);
    if (esmtp)
        ehlo_reply(s);
    else
        reply(s, 250, NULL, "%s", s->conf->hostname);
}

static void cmd_mail(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_mail++;
    if (c->size >= 0 && (unsigned long long)c->size > s->conf->message_size) {
        log_reject(s, "MAIL", 552, "5.3.4", "Message size exceeds fixed limit", NULL);
        fail(s, 552, "5.3.4", "Message size exceeds fixed limit of %zu bytes",
             s->conf->message_size);
        return;
    }
    if ((c->path.flags & ADDR_F_UTF8) && !c->smtputf8) {
        fail(s, 553, "5.6.7", "Sender address needs SMTPUTF8: add the SMTPUTF8 parameter");
        return;
    }
    txn_clear(s);
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
    set_state(s, SMTP_ST_MAIL);
    reply(s, 250, "2.1.0", "Ok");
}

static void rcpt_judged(void *arg, const struct smtp_verdict *v);

static void cmd_rcpt(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_rcpt++;
    struct smtp_txn *t = &s->txn;
    if (t->nrcpts >= (size_t)s->conf->recipients) {
        fail(s, 452, "4.5.3", "Too many recipients in one message; send the rest in another");
        return;
    }
    if ((c->path.flags & ADDR_F_UTF8) && !t->smtputf8) {
        fail(s, 553, "5.6.7",
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
        log_reject(s, "RCPT", v->code, v->enh, v->text, a);
        free(a);
        addr_clear(&r->addr);
        free(r->orcpt);
        fail(s, v->code, v->enh, "%s", v->text);
    } else {
        struct smtp_txn *t = &s->txn;
        if (t->nrcpts == t->cap) {
            t->cap = t->cap ? t->cap * 2 : 4;
            t->rcpts = xrealloc(t->rcpts, t->cap * sizeof *t->rcpts);
        }
        t->rcpts[t->nrcpts++] = *r;
        set_state(s, SMTP_ST_RCPT);
        reply(s, 250, "2.1.5", "Ok");
    }
    memset(r, 0, sizeof *r);
    process_input(s);
}

/* Open the queue file and write our Received: header (RFC 5321 4.4). */
static int message_open(struct smtp_session *s)
{
    s->msg = s->srv->ops->msg_open(s->srv->ops->ctx, s->id, sizeof s->id);
    if (!s->msg) return -1;
    char date[64];
    time_rfc5322(date, sizeof date, time(NULL));
    struct buf h;
    buf_init(&h, 0);
    char helo[300];
    log_escape(helo, sizeof helo, s->peer.helo, strlen(s->peer.helo));
    const char *with = s->peer.esmtp ? (s->peer.auth_user ? (s->peer.tls ? "ESMTPSA" : "ESMTPA")
                                                          : (s->peer.tls ? "ESMTPS" : "ESMTP"))
                                     : "SMTP";
    buf_printf(&h, "Received: from %s (%s [%s])\r\n\tby %s (kurier) with %s id %s", helo,
               s->peer.name, s->peer.addr, s->conf->hostname, with, s->id);
    if (s->txn.nrcpts == 1) {
        char *a = addr_format(&s->txn.rcpts[0].addr);
        char esc[600];
        buf_printf(&h, "\r\n\tfor <%s>", log_escape(esc, sizeof esc, a, strlen(a)));
        free(a);
    }
    buf_printf(&h, "; %s\r\n", date);
    int r = s->srv->ops->msg_write(s->msg, h.data, h.len);
    buf_release(&h);
    if (r != 0) {
        s->srv->ops->msg_abort(s->msg);
        s->msg = NULL;
        return -1;
    }
    buf_init(&s->out, 0);
    return 0;
}

static void cmd_data(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_data++;
    memset(&s->data, 0, sizeof s->data);
    s->data.max_line = 998;
    if (message_open(s) != 0) {
        reply(s, 451, "4.3.0", "Temporary local problem storing the message, try again later");
        return;
    }
    set_state(s, SMTP_ST_DATA);
    reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
    bufferevent_set_timeouts(s->bev, &(struct timeval){.tv_sec = s->conf->data_timeout}, NULL);
}

static void cmd_bdat(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_bdat++;
    if (s->state != SMTP_ST_BDAT) {
        memset(&s->data, 0, sizeof s->data);
        s->data.bdat = 1;
        s->data.max_line = 998;
        if (message_open(s) != 0) s->msg_failed = 1;
    }
    s->chunk_left = c->chunk_size;
    s->chunk_last = c->last;
    set_state(s, SMTP_ST_CHUNK);
    bufferevent_set_timeouts(s->bev, &(struct timeval){.tv_sec = s->conf->data_timeout}, NULL);
}

static void cmd_rset(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_rset++;
    txn_clear(s);
    set_state(s, s->peer.helo ? SMTP_ST_READY : SMTP_ST_INIT);
    reply(s, 250, "2.0.0", "Ok");
}

static void cmd_noop(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_other++;
    reply(s, 250, "2.0.0", "Ok");
}

static void cmd_quit(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_quit++;
    reply(s, 221, "2.0.0", "Bye");
    set_state(s, SMTP_ST_QUIT);
    session_close(s);
}

static void cmd_help(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_other++;
    reply(s, 214, "2.0.0",
          "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY; see RFC 5321");
}

static void cmd_vrfy(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_other++;
    /* RFC 5321 3.5.3: 252 without disclosing who exists. */
    reply(s, 252, "2.5.0", "Cannot VRFY user, but will accept the message and attempt delivery");
}

static void cmd_expn(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_other++;
    fail(s, 502, "5.5.1", "EXPN is not available");
}

static void cmd_notyet(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_other++;
    fail(s, 502, "5.5.1", "%s is not offered here", smtp_verb_name(c->verb));
}

/* The dialogue: each verb, the states it is allowed in, its handler. */
static const struct {
    enum smtp_verb verb;
    unsigned states;
    void (*fn)(struct smtp_session *, struct smtp_cmd *);
    const char *sequence_hint; /* 503 text when sent in the wrong state */
} commands[] = {
    {SMTP_V_EHLO, ST(SMTP_ST_INIT) | ST(SMTP_ST_READY) | ST(SMTP_ST_MAIL) | ST(SMTP_ST_RCPT),
     cmd_helo, "finish the message first"},
    {SMTP_V_HELO, ST(SMTP_ST_INIT) | ST(SMTP_ST_READY) | ST(SMTP_ST_MAIL) | ST(SMTP_ST_RCPT),
     cmd_helo, "finish the message first"},
    {SMTP_V_MAIL, ST(SMTP_ST_READY), cmd_mail, NULL},
    {SMTP_V_RCPT, ST(SMTP_ST_MAIL) | ST(SMTP_ST_RCPT), cmd_rcpt, "send MAIL first"},
    {SMTP_V_DATA, ST(SMTP_ST_RCPT), cmd_data, NULL},
    {SMTP_V_BDAT, ST(SMTP_ST_RCPT) | ST(SMTP_ST_BDAT), cmd_bdat, NULL},
    {SMTP_V_RSET, ~0u, cmd_rset, NULL},
    {SMTP_V_NOOP, ~0u, cmd_noop, NULL},
    {SMTP_V_QUIT, ~0u, cmd_quit, NULL},
    {SMTP_V_HELP, ~0u, cmd_help, NULL},
    {SMTP_V_VRFY, ~0u, cmd_vrfy, NULL},
    {SMTP_V_EXPN, ~0u, cmd_expn, NULL},
    {SMTP_V_STARTTLS, ~0u, cmd_notyet, NULL},
    {SMTP_V_AUTH, ~0u, cmd_notyet, NULL},
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
    fail(s, 503, "5.5.1", "Bad sequence of commands: %s", why);
}

static void handle_line(struct smtp_session *s, const char *line, size_t len)
{
    struct smtp_cmd c;
    struct smtp_err err;
    s->n_cmds++;
    if (log_debug_on("smtp")) {
        char esc[600];
        log_debug("smtp", "%s[%s]: < %s", s->peer.name, s->peer.addr,
                  log_escape(esc, sizeof esc, line, len));
    }
    memset(&c, 0, sizeof c);
    if (smtp_parse_cmd(line, len, &c, &err) != 0) {
        if (c.verb == SMTP_V_UNKNOWN) s->n_other++;
        if (c.verb == SMTP_V_MAIL || c.verb == SMTP_V_RCPT)
            log_reject(s, smtp_verb_name(c.verb), err.code, err.enh, err.text, NULL);
        fail(s, err.code, err.enh, "%s", err.text);
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
    fail(s, 500, "5.5.2", "Command not recognized");
    smtp_cmd_clear(&c);
}

/* --- message content ------------------------------------------------------------ */

static void content_flush(struct smtp_session *s, int force)
{
    if (s->out.len == 0 || (!force && s->out.len < 65536)) return;
    if (!s->too_big && !s->msg_failed && s->msg) {
        if (s->txn.msg_size + s->out.len > s->conf->message_size) {
            s->too_big = 1;
        } else if (s->srv->ops->msg_write(s->msg, s->out.data, s->out.len) != 0) {
            s->msg_failed = 1;
        }
    }
    s->txn.msg_size += s->out.len;
    buf_reset(&s->out);
}

static void committed(void *arg, int ok);

/* The end of the message (DATA's final dot or BDAT LAST): judge it, then commit. */
static void message_end(struct smtp_session *s)
{
    content_flush(s, 1);
    bufferevent_set_timeouts(s->bev, &(struct timeval){.tv_sec = s->conf->command_timeout}, NULL);
    const char *cmd = s->data.bdat ? "BDAT" : "DATA";
    int code = 0;
    const char *enh = NULL;
    char text[300];
    if (s->msg_failed || !s->msg) {
        code = 451, enh = "4.3.0";
        snprintf(text, sizeof text, "Temporary local problem storing the message, try again");
    } else if (s->too_big) {
        code = 552, enh = "5.3.4";
        snprintf(text, sizeof text, "Message size exceeds fixed limit of %zu bytes",
                 s->conf->message_size);
    } else if (s->data.flags & SMTP_DATA_BARE_LF) {
        code = 550, enh = "5.6.0";
        snprintf(text, sizeof text,
                 "Message refused: it contains a bare LF (a line break without CR), which "
                 "SMTP forbids; fix the sending program");
    } else if (s->data.flags & SMTP_DATA_BARE_CR) {
        code = 550, enh = "5.6.0";
        snprintf(text, sizeof text,
                 "Message refused: it contains a bare CR (a CR without LF), which SMTP "
                 "forbids; fix the sending program");
    } else if (s->data.flags & SMTP_DATA_NUL) {
        code = 550, enh = "5.6.0";
        snprintf(text, sizeof text, "Message refused: it contains NUL bytes");
    } else if (s->data.flags & SMTP_DATA_LONG_LINE) {
        code = 550, enh = "5.6.0";
        snprintf(text, sizeof text,
                 "Message refused: a line is longer than 998 characters (RFC 5322 2.1.1)");
    } else if (s->data.received > s->conf->hop_count) {
        code = 554, enh = "5.4.6";
        snprintf(text, sizeof text,
                 "Too many hops (%d Received: headers): the message is probably looping",
                 s->data.received);
    }
    if (code) {
        log_reject(s, cmd, code, enh, text, NULL);
        txn_clear(s);
        set_state(s, SMTP_ST_READY);
        fail(s, code, enh, "%s", text);
        return;
    }
    void *msg = s->msg;
    s->msg = NULL;
    s->pending = PENDING_COMMIT;
    s->srv->ops->msg_commit(s->srv->ops->ctx, msg, &s->peer, &s->txn, committed, s);
}

static void session_free(struct smtp_session *s);

static void committed(void *arg, int ok)
{
    struct smtp_session *s = arg;
    s->pending = PENDING_NONE;
    if (ok) {
        log_info("smtpd", "%s: client=%s[%s]%s%s", s->id, s->peer.name, s->peer.addr,
                 s->peer.auth_user ? ", sasl_username=" : "",
                 s->peer.auth_user ? s->peer.auth_user : "");
        if (!s->closing) reply(s, 250, "2.0.0", "Ok: queued as %s", s->id);
    } else {
        log_warn("smtpd", "%s: message from %s[%s] could not be stored", s->id, s->peer.name,
                 s->peer.addr);
        if (!s->closing)
            reply(s, 451, "4.3.0", "Temporary local problem storing the message, try again");
    }
    txn_clear(s);
    set_state(s, SMTP_ST_READY);
    if (s->close_after_commit && !s->closing) {
        reply(s, 421, "4.3.2", "%s Service shutting down, try again later", s->conf->hostname);
        s->closing = 1;
    }
    if (s->closing) {
        /* the client went away while we synced: the message is queued all the same */
        session_close(s);
        return;
    }
    process_input(s);
}

/* Feed DATA bytes from the input buffer. */
static void read_data(struct smtp_session *s, struct evbuffer *in)
{
    while (evbuffer_get_length(in) > 0 && !s->data.done) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) break;
        size_t used = smtp_data_feed(&s->data, v.iov_base, v.iov_len, &s->out);
        evbuffer_drain(in, used);
        content_flush(s, 0);
    }
    if (s->data.done) message_end(s);
}

/* Feed the bytes of one BDAT chunk. */
static void read_chunk(struct smtp_session *s, struct evbuffer *in)
{
    while (s->chunk_left > 0 && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) break;
        size_t n = v.iov_len < s->chunk_left ? v.iov_len : (size_t)s->chunk_left;
        smtp_data_feed(&s->data, v.iov_base, n, &s->out);
        evbuffer_drain(in, n);
        s->chunk_left -= n;
        content_flush(s, 0);
    }
    if (s->chunk_left > 0) return;
    if (s->chunk_last) {
        message_end(s);
        return;
    }
    set_state(s, SMTP_ST_BDAT);
    if (s->msg_failed)
        fail(s, 451, "4.3.0", "Temporary local problem storing the message, try again");
    else
        reply(s, 250, "2.0.0", "%zu bytes received so far", s->txn.msg_size + s->out.len);
}

static void process_input(struct smtp_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t maxline = s->conf->line_length;
    while (!s->closing && s->pending == PENDING_NONE) {
        if (s->state == SMTP_ST_CHUNK) { /* may complete with no byte ("BDAT 0 LAST") */
            read_chunk(s, in);
            if (s->state == SMTP_ST_CHUNK) break; /* need more bytes */
            continue;
        }
        if (evbuffer_get_length(in) == 0) break;
        if (s->state == SMTP_ST_DATA) {
            read_data(s, in);
            continue;
        }
        struct evbuffer_ptr eol = evbuffer_search(in, "\n", 1, NULL);
        if (eol.pos < 0) {
            if (evbuffer_get_length(in) > maxline) {
                /* RFC 5321 4.5.3.1.4: the line is too long; drop it up to its end */
                evbuffer_drain(in, evbuffer_get_length(in));
                if (!s->discard_line) {
                    s->discard_line = 1;
                    fail(s, 500, "5.5.2", "Line too long (the limit is %zu bytes)", maxline);
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
            fail(s, 500, "5.5.2", "Line too long (the limit is %zu bytes)", maxline);
            continue;
        }
        char *line = xmalloc(n + 1);
        evbuffer_remove(in, line, n);
        size_t len = n - 1;
        if (len && line[len - 1] == '\r') len--;
        line[len] = '\0';
        handle_line(s, line, len);
        free(line);
    }
}

/* --- connections ---------------------------------------------------------------- */

static void free_cb(evutil_socket_t fd, short what, void *arg)
{
    session_free(arg);
}

static void session_free(struct smtp_session *s)
{
    if (s->pending == PENDING_JUDGE && s->pending_handle) {
        s->srv->ops->judge_cancel(s->pending_handle);
        addr_clear(&s->pending_rcpt.addr);
        free(s->pending_rcpt.orcpt);
    }
    /* Postfix's shape: only the commands that were used, then the total. */
    char counts[256] = "";
    size_t o = 0;
    const struct {
        const char *name;
        int n;
    } cnt[] = {{"ehlo", s->n_ehlo}, {"helo", s->n_helo}, {"mail", s->n_mail},
               {"rcpt", s->n_rcpt}, {"data", s->n_data}, {"bdat", s->n_bdat},
               {"rset", s->n_rset}, {"quit", s->n_quit}, {"unknown", s->n_other}};
    for (size_t i = 0; i < sizeof cnt / sizeof cnt[0]; i++) {
        if (!cnt[i].n) continue;
        int w = snprintf(counts + o, sizeof counts - o, " %s=%d", cnt[i].name, cnt[i].n);
        if (w > 0 && (size_t)w < sizeof counts - o) o += (size_t)w;
    }
    log_info("smtpd", "disconnect from %s[%s]%s commands=%d", s->peer.name, s->peer.addr, counts,
             s->n_cmds);
    txn_clear(s);
    bufferevent_free(s->bev);
    if (s->ev_free) event_free(s->ev_free);
    free(s->peer.helo);
    free(s->peer.auth_user);
    if (s->prev)
        s->prev->next = s->next;
    else
        sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    nsessions--;
    free(s);
}

/* Free the session after its pending output went out (never from inside a callback
 * that its own I/O is on the stack of: the free is deferred to the loop). */
static void maybe_free(struct smtp_session *s)
{
    if (!s->closing || s->pending == PENDING_COMMIT) return;
    if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0) return;
    if (!s->ev_free) s->ev_free = event_new(s->srv->base, -1, 0, free_cb, s);
    event_active(s->ev_free, EV_TIMEOUT, 0);
}

static void session_close(struct smtp_session *s)
{
    s->closing = 1;
    bufferevent_disable(s->bev, EV_READ);
    maybe_free(s);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    process_input(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    maybe_free(arg);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_session *s = arg;
    if (what & BEV_EVENT_TIMEOUT) {
        log_info("smtpd", "timeout after %s from %s[%s]", state_names[s->state], s->peer.name,
                 s->peer.addr);
        reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->conf->hostname);
        session_close(s);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (s->state != SMTP_ST_QUIT)
            log_info("smtpd", "lost connection after %s from %s[%s]", state_names[s->state],
                     s->peer.name, s->peer.addr);
        evbuffer_drain(bufferevent_get_output(bev),
                       evbuffer_get_length(bufferevent_get_output(bev)));
        session_close(s);
    }
}

static size_t sessions_from(const struct sockaddr_storage *sa)
{
    size_t n = 0;
    for (struct smtp_session *s = sessions; s; s = s->next) {
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

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct smtp_server *srv = arg;
    const struct kconf *conf = srv->conf;
    struct smtp_session *s = xcalloc(1, sizeof *s);
    s->srv = srv;
    s->conf = conf;
    s->t_start = time_mono();
    s->peer.conf = conf;
    s->peer.listener = srv->listen;
    memcpy(&s->peer.sa, sa, (size_t)salen < sizeof s->peer.sa ? (size_t)salen : sizeof s->peer.sa);
    if (getnameinfo(sa, (socklen_t)salen, s->peer.addr, sizeof s->peer.addr, NULL, 0,
                    NI_NUMERICHOST) != 0)
        str_copy(s->peer.addr, "unknown", sizeof s->peer.addr);
    /* Reverse DNS comes with the dns module; until then the name is "unknown". */
    str_copy(s->peer.name, "unknown", sizeof s->peer.name);
    for (size_t i = 0; i < conf->ntrusted; i++)
        if (conf_net_match(&conf->trusted[i], sa)) s->peer.trusted = 1;
    s->txn.size = -1;
    s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
    /* Bound what a pipelining client can make us buffer while we think. */
    bufferevent_setwatermark(s->bev, EV_READ, 0, 256 * 1024);
    bufferevent_set_timeouts(s->bev, &(struct timeval){.tv_sec = conf->command_timeout}, NULL);
    s->next = sessions;
    if (sessions) sessions->prev = s;
    sessions = s;
    nsessions++;
    log_info("smtpd", "connect from %s[%s]", s->peer.name, s->peer.addr);

    if (nsessions > (size_t)conf->connections) {
        log_warn("smtpd", "too many connections: %zu, refusing %s[%s]", nsessions - 1, s->peer.name,
                 s->peer.addr);
        reply(s, 421, "4.7.0", "%s Error: too many connections, try again later", conf->hostname);
        session_close(s);
        return;
    }
    if (sessions_from(&s->peer.sa) > (size_t)conf->connections_per_ip) {
        log_warn("smtpd", "too many connections from %s[%s]", s->peer.name, s->peer.addr);
        reply(s, 421, "4.7.0", "%s Error: too many connections from your address, try later",
              conf->hostname);
        session_close(s);
        return;
    }
    reply(s, 220, NULL, "%s ESMTP kurier", conf->hostname);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
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
    srv->conf = conf;
    srv->listen = l;
    srv->ops = ops;
    srv->lev = evconnlistener_new_bind(base, accept_cb, srv,
                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                           LEV_OPT_DISABLED | LEV_OPT_CLOSE_ON_EXEC,
                                       1024, res->ai_addr, (int)res->ai_addrlen);
    freeaddrinfo(res);
    if (!srv->lev) {
        log_err("kurierd", "listen %s: %s", l->address, strerror(errno));
        free(srv);
        return NULL;
    }
    evconnlistener_set_error_cb(srv->lev, accept_error_cb);
    return srv;
}

void smtp_server_start(struct smtp_server *srv)
{
    if (srv->lev) evconnlistener_enable(srv->lev);
}

void smtp_server_set_conf(struct smtp_server *srv, const struct kconf *conf,
                          const struct conf_listen *l)
{
    srv->conf = conf;
    srv->listen = l;
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
    free(srv);
}

void smtp_sessions_close_all(void)
{
    for (struct smtp_session *s = sessions; s; s = s->next) {
        if (s->closing) continue;
        if (s->pending == PENDING_COMMIT) { /* answer the message first */
            s->close_after_commit = 1;
            continue;
        }
        reply(s, 421, "4.3.2", "%s Service shutting down, try again later", s->conf->hostname);
        session_close(s);
    }
}
