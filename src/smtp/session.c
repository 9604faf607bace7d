/* session.c: one inbound SMTP session below the dialogue: its replies and errors,
 * state, timeouts, the end of its transaction, its connection's events, its close
 * and free, and the list of live sessions. Commands are server.c's (told of input
 * through the server's input hook), the message content server_data.c's, AUTH
 * server_auth.c's. */
#include "core/compat.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <sys/socket.h>

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

/* Under TLS the socket below the filter holds at most OUT_LOW of encrypted bytes
 * (OUT_MAX: session.h). */
#define OUT_LOW (64 * 1024)
/* Seconds the last replies of a closing session get to leave (no progress). */
#define CLOSE_LINGER 10

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

/* Forget a half-done AUTH exchange. */
void session_auth_reset(struct smtp_session *s)
{
    free(s->auth_login_user);
    s->auth_login_user = NULL;
    s->auth_mech[0] = '\0';
}

/* --- input ----------------------------------------------------------------------- */

/* The dialogue's input loop (server.c), through the hook its server set. */
void session_process_input(struct smtp_session *s)
{
    s->srv->input(s);
}

/* --- connections ---------------------------------------------------------------- */

/* Bytes still waiting to go out, including below a TLS filter. */
size_t session_output_pending(struct smtp_session *s)
{
    size_t n = evbuffer_get_length(bufferevent_get_output(s->bev));
    struct bufferevent *under = bufferevent_get_underlying(s->bev);
    if (under) n += evbuffer_get_length(bufferevent_get_output(under));
    return n;
}

static void output_went(struct smtp_session *s);

/* --- writing replies --------------------------------------------------------------
 *
 * A plain session's replies are written by flush_write() once the callback that made
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

void session_output_direct(struct smtp_session *s)
{
    s->direct = 1;
    bufferevent_disable(s->bev, EV_WRITE);
    evbuffer_add_cb(bufferevent_get_output(s->bev), output_added, s);
}

/* STARTTLS: what is queued goes out first, then the TLS filter writes. */
void session_output_undirect(struct smtp_session *s)
{
    if (!s->direct) return;
    session_flush(s);
    flush_unlink(s);
    s->direct = 0;
    evbuffer_remove_cb(bufferevent_get_output(s->bev), output_added, s);
    bufferevent_enable(s->bev, EV_WRITE);
}

static void free_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_session *s = arg;
    /* a message being committed cannot be called back: committed() frees */
    if (s->pending == PENDING_COMMIT) return;
    /* under a TLS filter the last reply may still sit in the socket's buffer: give
     * it a moment (bounded) to leave */
    if (!s->gone && session_output_pending(s) > 0 && s->free_tries++ < 100) {
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

/* Output went out (down to the low watermark, or all of it by flush_write). */
static void output_went(struct smtp_session *s)
{
    if (s->out_full && session_output_pending(s) <= OUT_MAX / 2) {
        s->out_full = 0;
        session_process_input(s); /* the commands that waited for the client to read */
    }
    session_maybe_free(s);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_session *s = arg;
    /* the rest flush_write() left is out: replies are written directly again */
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

void session_callbacks(struct smtp_session *s)
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

/* --- the list of sessions --------------------------------------------------------- */

void session_link(struct smtp_session *s)
{
    s->next = sessions;
    if (sessions) sessions->prev = s;
    sessions = s;
    nsessions++;
}

size_t sessions_from(const struct sockaddr_storage *sa)
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
