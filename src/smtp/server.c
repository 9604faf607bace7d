/* server.c: the whole inbound SMTP dialogue (RFC 5321, with PIPELINING, CHUNKING,
 * SIZE, 8BITMIME, SMTPUTF8, DSN) as one state machine, and the listener that starts
 * sessions; the message content (DATA, BDAT) is server_data.c's, AUTH
 * server_auth.c's, a session's replies, connection and free session.c's. Policy and
 * spool are asked through struct smtp_ops; this file never decides where mail goes. */
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

/* --- commands ------------------------------------------------------------------ */

static int starttls_offered(const struct smtp_session *s)
{
    return s->srv->tls && s->srv->listen->tls == LISTEN_TLS_STARTTLS && !s->peer.tls;
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
    session_output_undirect(s);
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

/* The input loop: commands (and DATA, BDAT, AUTH lines) while the session waits
 * for nothing; the parts below go on through session_process_input(). */
static void process_input(struct smtp_session *s)
{
    /* before the greeting (the name lookup, the pause) an early talker's bytes wait */
    while (!s->closing && s->pending == PENDING_NONE && s->greeted) {
        if (session_output_pending(s) > OUT_MAX) { /* write_cb goes on once the client read */
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
    if (!ssl) session_output_direct(s);
    session_link(s);
    metrics_add(MET_CONNECTIONS, 1, s->peer.listener->address);
    metrics_add(MET_SESSIONS, 1, s->peer.listener->address);
    if (smtp_sessions_count() > (size_t)conf->connections) {
        log_info(s->logname, "connect from %s[%s]", s->peer.name, s->peer.addr);
        log_warn(s->logname, "too many connections: %zu, refusing %s[%s]",
                 smtp_sessions_count() - 1, s->peer.name, s->peer.addr);
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
    srv->input = process_input;
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
