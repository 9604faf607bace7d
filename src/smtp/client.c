/* client.c: one outbound SMTP connection (RFC 5321 with PIPELINING, STARTTLS, AUTH,
 * SIZE, 8BITMIME, SMTPUTF8, DSN) as a state machine on the loop; the TLS handshake is
 * client_tls.c's. It reports what the peer said; what that means for delivery (retry,
 * bounce, bench an IP) is deliver/'s. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "smtp/client_int.h"

static const char *const state_names[] = {
    "CONNECT",   "GREETING",  "EHLO",  "HELO", "STARTTLS", "HANDSHAKE", "AUTH PLAIN", "AUTH LOGIN",
    "AUTH USER", "AUTH PASS", "READY", "TXN",  "CONTENT",  "DOT",       "DEAD"};

/* The commands of one transaction, in the order they are sent. */
enum txn_kind {
    TX_RSET,     /* before a message on a reused connection */
    TX_MAIL,     /* MAIL FROM */
    TX_RCPT,     /* RCPT TO for msg->rcpts[rcpt] */
    TX_DATA,     /* DATA */
    TX_RSET_END, /* instead of DATA when no recipient was accepted (no PIPELINING) */
};

struct txn_cmd {
    enum txn_kind kind;
    size_t rcpt;
};

#define DEF_CONNECT_TIMEOUT 30
#define DEF_COMMAND_TIMEOUT 300
#define DEF_DATA_TIMEOUT 600
#define MAX_REPLY_LINE 4096    /* RFC 5321 4.5.3.1.5 says 512; be lenient */
#define PUMP_HIGH (128 * 1024) /* content queued ahead of the socket */
#define ADDR_MAX 1000

static void on_reply(struct smtp_client *c, const struct smtp_client_reply *r);
static void client_enter(struct smtp_client *c, enum cl_state st);
static void client_start_tls(struct smtp_client *c);

/* --- small helpers ----------------------------------------------------------- */

static void set_timeouts(struct smtp_client *c, int rd, int wr)
{
    struct timeval r = {.tv_sec = rd}, w = {.tv_sec = wr};
    bufferevent_set_timeouts(c->bev, rd > 0 ? &r : NULL, wr > 0 ? &w : NULL);
}

/* r cleared, then filled with code, enhanced code, stage and text. */
static void client_reply_set(struct smtp_client_reply *r, int code, const char *enh,
                             const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void client_reply_set(struct smtp_client_reply *r, int code, const char *enh,
                             const char *stage, const char *fmt, ...)
{
    va_list ap;
    memset(r, 0, sizeof *r);
    r->code = code;
    str_copy(r->enh, enh, sizeof r->enh);
    r->stage = stage;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof r->text, fmt, ap);
    va_end(ap);
}

static int is_2xx(const struct smtp_client_reply *r)
{
    return r->code >= 200 && r->code < 300;
}

/* The command whose reply we wait for, as the stage named in replies. */
static const char *current_stage(const struct smtp_client *c)
{
    switch (c->state) {
    case CL_CONNECT:
        return "connect";
    case CL_GREETING:
        return "greeting";
    case CL_EHLO:
        return "EHLO";
    case CL_HELO:
        return "HELO";
    case CL_STARTTLS:
        return "STARTTLS";
    case CL_HANDSHAKE:
        return c->greeted ? "STARTTLS" : "TLS";
    case CL_AUTH_PLAIN:
    case CL_AUTH_LOGIN:
    case CL_AUTH_USER:
    case CL_AUTH_PASS:
        return "AUTH";
    case CL_TXN:
        if (c->recvd < c->ncmds) {
            switch (c->cmds[c->recvd].kind) {
            case TX_RSET:
            case TX_RSET_END:
                return "RSET";
            case TX_MAIL:
                return "MAIL FROM";
            case TX_RCPT:
                return "RCPT TO";
            case TX_DATA:
                return "DATA";
            }
        }
        return "DATA";
    case CL_CONTENT:
    case CL_DOT:
        return "end of data";
    case CL_READY:
    case CL_DEAD:
        break;
    }
    return "MAIL FROM";
}

/* The one function that sends a command: it only sends (and traces). shown replaces
 * the command in the trace when it carries a secret. */
static void send_cmd(struct smtp_client *c, const char *shown, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void send_cmd(struct smtp_client *c, const char *shown, const char *fmt, ...)
{
    struct evbuffer *o = bufferevent_get_output(c->bev);
    va_list ap;
    va_start(ap, fmt);
    if (log_debug_on("smtp")) {
        char line[1024];
        va_list aq;
        va_copy(aq, ap);
        vsnprintf(line, sizeof line, fmt, aq);
        va_end(aq);
        log_msg(LOG_LV_DEBUG, "smtp", "%s: > %s", c->peer, shown ? shown : line);
    }
    evbuffer_add_vprintf(o, fmt, ap);
    va_end(ap);
    evbuffer_add(o, "\r\n", 2);
}

/* xtext (RFC 3461 4) of s appended to b. */
static void xtext_put(struct buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p >= '!' && *p <= '~' && *p != '+' && *p != '=')
            buf_append(b, p, 1);
        else
            buf_printf(b, "+%02X", *p);
    }
}

/* An address we can put between <> on the wire. */
static int addr_ok(const char *a)
{
    size_t n = strlen(a);
    if (n > ADDR_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)a[i];
        if (ch < 0x20 || ch == 0x7f || ch == '<' || ch == '>') return 0;
    }
    return 1;
}

/* --- callbacks to the owner: always from ev_notify, never from our own calls --- */

static void notify(struct smtp_client *c, enum pending_cb which, int ok)
{
    c->pending = which;
    c->pending_ok = ok;
    event_active(c->ev_notify, EV_TIMEOUT, 0);
}

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_client *c = arg;
    enum pending_cb which = c->pending;
    int ok = c->pending_ok;
    c->pending = PEND_NONE;
    /* nothing touches c after the callback: it may free c */
    if (which == PEND_READY && c->ready) {
        void (*cb)(void *, struct smtp_client *, int) = c->ready;
        c->ready = NULL;
        cb(c->ready_arg, c, ok);
    } else if (which == PEND_DONE && c->done) {
        void (*cb)(void *, struct smtp_client *, int) = c->done;
        c->done = NULL;
        c->msg = NULL;
        cb(c->done_arg, c, ok);
    }
}

/* --- failures -------------------------------------------------------------------- */

/* Every recipient (and the message) still without an answer gets r. */
static void msg_fill(struct smtp_client_msg *m, const struct smtp_client_reply *r)
{
    for (size_t i = 0; i < m->nrcpts; i++)
        if (!m->rcpt_reply[i].stage) m->rcpt_reply[i] = *r;
    if (!m->reply.stage) m->reply = *r;
}

/* The connection is unusable (network, timeout, 421, protocol error): tell whoever
 * waits, with r as the reason. */
static void client_die(struct smtp_client *c, const struct smtp_client_reply *r)
{
    enum cl_state was = c->state;
    c->last = *r;
    c->quit_ok = 0;
    c->state = CL_DEAD;
    if (c->bev) bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    log_debug("smtp", "%s: %s -> DEAD: %s", c->peer, state_names[was], r->text);
    if (c->pending != PEND_NONE) return; /* the outcome was already decided */
    if (c->msg) {
        msg_fill(c->msg, r);
        notify(c, PEND_DONE, 0);
    } else if (c->ready) {
        notify(c, PEND_READY, 0);
    }
}

/* The set-up dialogue failed by a reply (or a local decision) while in sync. */
static void setup_fail(struct smtp_client *c, const struct smtp_client_reply *r)
{
    c->last = *r;
    c->quit_ok = r->code != 421;
    log_debug("smtp", "%s: %s -> DEAD: %d %s", c->peer, state_names[c->state], r->code, r->text);
    c->state = CL_DEAD;
    if (c->ready) notify(c, PEND_READY, 0);
}

/* --- the set-up dialogue ------------------------------------------------------ */

static void become_ready(struct smtp_client *c)
{
    client_enter(c, CL_READY);
    if (c->ready) notify(c, PEND_READY, 1);
}

/* After the (last) EHLO: AUTH when asked, else ready. */
static void auth_or_ready(struct smtp_client *c)
{
    struct smtp_client_reply r;
    if (!c->auth_user) {
        become_ready(c);
        return;
    }
    if (!c->tls_on) {
        client_reply_set(&r, 0, "4.7.0", "AUTH",
                         "AUTH not attempted: the connection to %s is not encrypted", c->peer);
        setup_fail(c, &r);
    } else if (c->caps.auth_plain) {
        client_enter(c, CL_AUTH_PLAIN);
    } else if (c->caps.auth_login) {
        client_enter(c, CL_AUTH_LOGIN);
    } else {
        client_reply_set(&r, 0, "4.7.0", "AUTH",
                         "%s offers no AUTH mechanism we support (PLAIN, LOGIN)", c->peer);
        setup_fail(c, &r);
    }
}

static void after_ehlo(struct smtp_client *c)
{
    if (c->tls_on || c->o.tls == SMTP_CTLS_NONE) {
        auth_or_ready(c);
        return;
    }
    if (c->caps.starttls && c->tls) {
        client_enter(c, CL_STARTTLS);
        return;
    }
    if (c->o.tls == SMTP_CTLS_MAY) {
        auth_or_ready(c);
        return;
    }
    struct smtp_client_reply r;
    client_reply_set(&r, 0, "4.7.4", "STARTTLS", "TLS is required, but %s",
                     c->tls ? "was not offered by the peer" : "no client TLS context is set up");
    setup_fail(c, &r);
}

static char *b64(const char *p, size_t n)
{
    size_t size = 4 * ((n + 2) / 3) + 1;
    char *out = xmalloc(size);
    if (base64_encode((const unsigned char *)p, n, out, size, NULL) < 0) out[0] = 0;
    return out;
}

/* --- the transaction ---------------------------------------------------------- */

static void send_mail(struct smtp_client *c)
{
    const struct smtp_client_msg *m = c->msg;
    struct buf b;
    buf_init(&b, 0);
    buf_printf(&b, "MAIL FROM:<%s>", m->sender);
    if (c->caps.size_given && m->size) buf_printf(&b, " SIZE=%llu", m->size);
    if (c->caps.eightbit && m->body == SMTP_BODY_8BITMIME) buf_puts(&b, " BODY=8BITMIME");
    if (c->caps.eightbit && m->body == SMTP_BODY_7BIT) buf_puts(&b, " BODY=7BIT");
    if (c->caps.smtputf8 && m->smtputf8) buf_puts(&b, " SMTPUTF8");
    if (c->caps.dsn) {
        if (m->ret == SMTP_RET_FULL) buf_puts(&b, " RET=FULL");
        if (m->ret == SMTP_RET_HDRS) buf_puts(&b, " RET=HDRS");
        if (m->envid && *m->envid) {
            buf_puts(&b, " ENVID=");
            xtext_put(&b, m->envid);
        }
    }
    send_cmd(c, NULL, "%s", b.data);
    buf_release(&b);
}

static void send_rcpt(struct smtp_client *c, size_t i)
{
    const struct smtp_client_msg *m = c->msg;
    struct buf b;
    buf_init(&b, 0);
    buf_printf(&b, "RCPT TO:<%s>", m->rcpts[i]);
    unsigned n = m->notify ? m->notify[i] : 0;
    if (c->caps.dsn && n) {
        if (n & SMTP_NOTIFY_NEVER)
            buf_puts(&b, " NOTIFY=NEVER");
        else {
            const char *sep = " NOTIFY=";
            if (n & SMTP_NOTIFY_SUCCESS) buf_printf(&b, "%sSUCCESS", sep), sep = ",";
            if (n & SMTP_NOTIFY_FAILURE) buf_printf(&b, "%sFAILURE", sep), sep = ",";
            if (n & SMTP_NOTIFY_DELAY) buf_printf(&b, "%sDELAY", sep);
        }
    }
    const char *orcpt = m->orcpt ? m->orcpt[i] : NULL;
    if (c->caps.dsn && orcpt && *orcpt) {
        const char *semi = strchr(orcpt, ';');
        buf_puts(&b, " ORCPT=");
        if (semi) {
            buf_append(&b, orcpt, (size_t)(semi - orcpt) + 1);
            xtext_put(&b, semi + 1);
        } else {
            buf_puts(&b, "rfc822;");
            xtext_put(&b, orcpt);
        }
    }
    send_cmd(c, NULL, "%s", b.data);
    buf_release(&b);
}

/* Push commands up to the send cursor's limit: the whole group with PIPELINING
 * (RFC 2920 3.1: DATA is last in the group), else one at a time. */
static void txn_push(struct smtp_client *c)
{
    size_t limit = c->caps.pipelining ? c->ncmds : c->recvd + 1;
    while (c->sent < limit && c->sent < c->ncmds) {
        struct txn_cmd *k = &c->cmds[c->sent++];
        if (!c->caps.pipelining && k->kind == TX_DATA && c->accepted == 0) k->kind = TX_RSET_END;
        switch (k->kind) {
        case TX_RSET:
        case TX_RSET_END:
            send_cmd(c, NULL, "RSET");
            break;
        case TX_MAIL:
            send_mail(c);
            break;
        case TX_RCPT:
            send_rcpt(c, k->rcpt);
            break;
        case TX_DATA:
            send_cmd(c, NULL, "DATA");
            break;
        }
    }
}

/* The message is over and the dialogue in sync. */
static void txn_end(struct smtp_client *c)
{
    client_enter(c, CL_READY);
    notify(c, PEND_DONE, 1);
}

/* No recipient was accepted: the message's reply is the last refusal. */
static void no_rcpt_reply(struct smtp_client *c)
{
    struct smtp_client_msg *m = c->msg;
    if (m->reply.stage) return;
    for (size_t i = m->nrcpts; i-- > 0;)
        if (m->rcpt_reply[i].stage && !is_2xx(&m->rcpt_reply[i])) {
            m->reply = m->rcpt_reply[i];
            return;
        }
    client_reply_set(&m->reply, 554, "5.5.1", "RCPT TO", "no recipient was accepted");
}

/* A reply in CL_TXN answers cmds[recvd]. */
static void txn_reply(struct smtp_client *c, const struct smtp_client_reply *r)
{
    struct smtp_client_msg *m = c->msg;
    if (c->recvd >= c->sent) { /* a reply to nothing we sent: out of sync */
        struct smtp_client_reply u;
        client_reply_set(&u, 0, "4.5.0", r->stage, "unexpected reply from %s: %d %.200s", c->peer,
                         r->code, r->text);
        client_die(c, &u);
        return;
    }
    struct txn_cmd *k = &c->cmds[c->recvd++];
    if (r->code == 421) { /* the server is closing the connection */
        client_die(c, r);
        return;
    }
    switch (k->kind) {
    case TX_RSET:
        if (!is_2xx(r)) {
            client_die(c, r);
            return;
        }
        break;
    case TX_MAIL:
        if (is_2xx(r)) {
            c->mail_ok = 1;
            break;
        }
        msg_fill(m, r); /* every recipient shares the refusal */
        if (!c->caps.pipelining) {
            txn_end(c);
            return;
        }
        break; /* the pipelined RCPT and DATA replies still come */
    case TX_RCPT:
        if (!c->mail_ok) break;
        m->rcpt_reply[k->rcpt] = *r;
        if (is_2xx(r)) c->accepted++;
        break;
    case TX_DATA:
        if (r->code == 354) {
            if (c->mail_ok && c->accepted) {
                client_enter(c, CL_CONTENT);
            } else { /* RFC 2920 3.1: an empty message ends what we never wanted */
                no_rcpt_reply(c);
                c->dot_only = 1;
                client_enter(c, CL_DOT);
            }
            return;
        }
        if (c->mail_ok && c->accepted)
            m->reply = *r;
        else
            no_rcpt_reply(c);
        txn_end(c);
        return;
    case TX_RSET_END:
        if (m->probe && c->mail_ok && c->accepted)
            m->reply = *r; /* the probe is over: the recipients' replies tell */
        else
            no_rcpt_reply(c);
        txn_end(c);
        return;
    }
    txn_push(c);
}

/* Queue content until the output holds PUMP_HIGH bytes: dot-stuffed (RFC 5321
 * 4.5.2), a bare LF or a bare CR sent as CRLF (RFC 5321 2.3.8: never a bare CR or LF
 * to the next hop; some read "\r.\r\n" as the end of data), ending in CRLF "." CRLF. */
static void pump(struct smtp_client *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char in[16384], stuffed[3 * sizeof in]; /* "\r." becomes "\r\n.." */
    while (c->state == CL_CONTENT && evbuffer_get_length(out) < PUMP_HIGH) {
        /* the message is size bytes at content_off (a record of a spool segment) */
        unsigned long long left = c->msg->size > (unsigned long long)c->off
                                      ? c->msg->size - (unsigned long long)c->off
                                      : 0;
        ssize_t n = left == 0 ? 0
                              : pread(c->msg->content_fd, in, left < sizeof in ? left : sizeof in,
                                      (off_t)c->msg->content_off + c->off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            struct smtp_client_reply r;
            client_reply_set(&r, 0, "4.3.0", "end of data", "cannot read the message: %s",
                             strerror(errno));
            client_die(c, &r); /* the server waits for content we cannot give: hang up */
            return;
        }
        if (n == 0) {
            if (c->prev == '\r')
                evbuffer_add(out, "\n", 1);
            else if (c->prev != '\n')
                evbuffer_add(out, "\r\n", 2);
            client_enter(c, CL_DOT);
            return;
        }
        char *o = stuffed;
        unsigned char prev = c->prev;
        for (ssize_t i = 0; i < n;) {
            /* A line that ends in CRLF (or the chunk's end) with no other CR in it is
             * copied as it is, after the stuffed dot it may start with; anything else
             * goes byte by byte. */
            const char *nl = memchr(in + i, '\n', (size_t)(n - i));
            ssize_t end = nl ? nl - in + 1 : n;
            const char *cr = memchr(in + i, '\r', (size_t)(end - i));
            int clean = prev != '\r' || in[i] == '\n';
            if (nl)
                clean &= cr ? cr == nl - 1 : nl == in + i && prev == '\r';
            else
                clean &= !cr || cr == in + n - 1;
            if (clean) {
                if (prev == '\n' && in[i] == '.') *o++ = '.';
                memcpy(o, in + i, (size_t)(end - i));
                o += end - i;
                prev = (unsigned char)in[end - 1];
                i = end;
                continue;
            }
            for (; i < end; i++) {
                unsigned char b = (unsigned char)in[i];
                if (prev == '\r' && b != '\n') /* a bare CR ends its line */
                    *o++ = (char)(prev = '\n');
                if (b == '\n' && prev != '\r') *o++ = '\r';
                if (b == '.' && prev == '\n') *o++ = '.';
                *o++ = (char)b;
                prev = b;
            }
        }
        c->prev = prev;
        c->off += n;
        evbuffer_add(out, stuffed, (size_t)(o - stuffed));
    }
}

/* --- states ------------------------------------------------------------------- */

/* Enter a state: set its timeouts and send its command. */
static void client_enter(struct smtp_client *c, enum cl_state st)
{
    if (c->state != st)
        log_debug("smtp", "%s: %s -> %s", c->peer, state_names[c->state], state_names[st]);
    c->state = st;
    int cmd = c->o.command_timeout, data = c->o.data_timeout;
    switch (st) {
    case CL_CONNECT:
    case CL_GREETING:
        set_timeouts(c, c->o.connect_timeout, c->o.connect_timeout);
        break;
    case CL_EHLO:
        set_timeouts(c, cmd, cmd);
        send_cmd(c, NULL, "EHLO %s", c->helo);
        break;
    case CL_HELO:
        set_timeouts(c, cmd, cmd);
        memset(&c->caps, 0, sizeof c->caps);
        send_cmd(c, NULL, "HELO %s", c->helo);
        break;
    case CL_STARTTLS:
        set_timeouts(c, cmd, cmd);
        send_cmd(c, NULL, "STARTTLS");
        break;
    case CL_HANDSHAKE:
        set_timeouts(c, cmd, cmd);
        break;
    case CL_AUTH_PLAIN: {
        size_t ul = strlen(c->auth_user), pl = strlen(c->auth_pass);
        char *msg = xmalloc(ul + pl + 2);
        msg[0] = 0;
        memcpy(msg + 1, c->auth_user, ul);
        msg[1 + ul] = 0;
        memcpy(msg + 2 + ul, c->auth_pass, pl);
        char *e = b64(msg, ul + pl + 2);
        set_timeouts(c, cmd, cmd);
        send_cmd(c, "AUTH PLAIN (credentials)", "AUTH PLAIN %s", e);
        explicit_bzero(msg, ul + pl + 2);
        explicit_bzero(e, strlen(e));
        free(msg);
        free(e);
        break;
    }
    case CL_AUTH_LOGIN:
        set_timeouts(c, cmd, cmd);
        send_cmd(c, NULL, "AUTH LOGIN");
        break;
    case CL_AUTH_USER: {
        char *e = b64(c->auth_user, strlen(c->auth_user));
        send_cmd(c, "(user name)", "%s", e);
        free(e);
        break;
    }
    case CL_AUTH_PASS: {
        char *e = b64(c->auth_pass, strlen(c->auth_pass));
        send_cmd(c, "(password)", "%s", e);
        explicit_bzero(e, strlen(e));
        free(e);
        break;
    }
    case CL_READY:
        /* idle: no timeout, but reading stays on to notice a close or a 421 */
        set_timeouts(c, 0, 0);
        c->quit_ok = 1;
        break;
    case CL_TXN:
        set_timeouts(c, cmd, cmd);
        txn_push(c);
        break;
    case CL_CONTENT:
        /* while sending, no reply is due: only writes are timed */
        set_timeouts(c, 0, data);
        c->off = 0;
        c->prev = '\n';
        pump(c);
        break;
    case CL_DOT:
        set_timeouts(c, data, data);
        evbuffer_add(bufferevent_get_output(c->bev), ".\r\n", 3);
        log_debug("smtp", "%s: > .", c->peer);
        break;
    case CL_DEAD:
        break;
    }
}

/* A whole reply, judged by the state it answers. */
static void on_reply(struct smtp_client *c, const struct smtp_client_reply *r)
{
    c->last = *r;
    switch (c->state) {
    case CL_GREETING:
        c->greeted = r->code == 220;
        if (r->code == 220)
            client_enter(c, CL_EHLO);
        else
            setup_fail(c, r);
        break;
    case CL_EHLO:
        if (is_2xx(r)) {
            c->caps.esmtp = 1;
            after_ehlo(c);
        } else if (r->code >= 500) {
            client_enter(c, CL_HELO); /* RFC 5321 3.2: a server that does not do ESMTP */
        } else {
            setup_fail(c, r);
        }
        break;
    case CL_HELO:
        if (is_2xx(r))
            after_ehlo(c);
        else
            setup_fail(c, r);
        break;
    case CL_STARTTLS:
        if (r->code == 220)
            client_start_tls(c);
        else if (c->o.tls == SMTP_CTLS_MAY)
            auth_or_ready(c);
        else
            setup_fail(c, r);
        break;
    case CL_AUTH_PLAIN:
    case CL_AUTH_PASS:
        if (r->code == 235)
            become_ready(c);
        else
            setup_fail(c, r);
        break;
    case CL_AUTH_LOGIN:
        if (r->code == 334)
            client_enter(c, CL_AUTH_USER);
        else
            setup_fail(c, r);
        break;
    case CL_AUTH_USER:
        if (r->code == 334)
            client_enter(c, CL_AUTH_PASS);
        else
            setup_fail(c, r);
        break;
    case CL_TXN:
        txn_reply(c, r);
        break;
    case CL_DOT:
        if (!c->dot_only) c->msg->reply = *r;
        if (r->code == 421) {
            client_die(c, r);
            break;
        }
        txn_end(c);
        break;
    case CL_CONTENT: /* a reply before the end of the content: out of sync */
        c->msg->reply = *r;
        client_die(c, r);
        break;
    case CL_READY: { /* unasked: a 421 on an idle connection, or noise */
        struct smtp_client_reply d = *r;
        client_die(c, &d);
        break;
    }
    case CL_CONNECT:
    case CL_HANDSHAKE:
    case CL_DEAD:
        break;
    }
}

/* --- reading replies ----------------------------------------------------------- */

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_client *c = arg;
    /* the greeting's read event may come before the connect's write event */
    if (c->state == CL_CONNECT) {
        if (c->o.implicit_tls) { /* a server speaking first: TLS drains it */
            client_start_tls(c);
            return;
        }
        client_enter(c, CL_GREETING);
    }
    /* fetched each time: STARTTLS replaces the bufferevent */
    while (c->state != CL_DEAD && c->state != CL_HANDSHAKE) {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        size_t n;
        char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
        if (!line) {
            if (evbuffer_get_length(in) > MAX_REPLY_LINE) {
                struct smtp_client_reply r;
                client_reply_set(&r, 0, "4.5.0", current_stage(c), "reply line from %s is too long",
                                 c->peer);
                client_die(c, &r);
            }
            return;
        }
        if (log_debug_on("smtp")) {
            char esc[600];
            log_msg(LOG_LV_DEBUG, "smtp", "%s: < %s", c->peer,
                    log_escape(esc, sizeof esc, line, n));
        }
        int st = client_reply_line(c, line, n);
        if (st < 0) {
            char esc[200];
            struct smtp_client_reply r;
            client_reply_set(&r, 0, "4.5.0", current_stage(c), "malformed reply from %s: %s",
                             c->peer, log_escape(esc, sizeof esc, line, n));
            free(line);
            c->cur_lines = 0;
            client_die(c, &r);
            return;
        }
        free(line);
        if (st == 0) continue;
        c->cur_lines = 0;
        if (!c->cur.enh[0]) /* RFC 3463: the class alone when the server gave none */
            memcpy(c->cur.enh, (char[]){(char)('0' + c->cur.code / 100), '.', '0', '.', '0', 0}, 6);
        c->cur.stage = current_stage(c);
        struct smtp_client_reply r = c->cur;
        on_reply(c, &r);
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_client *c = arg;
    if (c->state == CL_CONTENT) pump(c);
}

/* What we were doing, for "lost connection with X while ...". */
static const char *doing(const struct smtp_client *c)
{
    switch (c->state) {
    case CL_GREETING:
        return "receiving the initial server greeting";
    case CL_EHLO:
    case CL_HELO:
        return "performing the EHLO handshake";
    case CL_CONTENT:
        return "sending message body";
    case CL_DOT:
        return "waiting for the reply to end of data";
    case CL_READY:
        return "idle";
    default:
        break;
    }
    static char buf[64];
    snprintf(buf, sizeof buf, "waiting for the reply to %s", current_stage(c));
    return buf;
}

/* TLS is not possible or failed (client_tls.c says why): the connection dies. */
static void tls_fail(struct smtp_client *c, const char *why)
{
    struct smtp_client_reply r;
    client_reply_set(&r, 0, "4.7.5", c->greeted ? "STARTTLS" : "TLS", "%s", why);
    ERR_clear_error();
    client_die(c, &r);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_client *c = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (what & BEV_EVENT_CONNECTED) {
        if (c->state == CL_CONNECT) {
            log_debug("smtp", "%s: connected", c->peer);
            if (c->o.implicit_tls) {
                client_start_tls(c);
                return;
            }
            client_enter(c, CL_GREETING);
            /* the greeting may already sit in the input buffer */
            if (evbuffer_get_length(bufferevent_get_input(bev)) > 0) read_cb(bev, c);
        } else if (c->state == CL_HANDSHAKE) {
            client_tls_done(c);
            /* implicit TLS (RFC 8314 3.3): the greeting comes inside TLS */
            client_enter(c, c->greeted ? CL_EHLO : CL_GREETING);
        }
        return;
    }
    if (c->state == CL_DEAD) return;
    if (c->state == CL_HANDSHAKE) {
        char why[sizeof c->last.text];
        client_tls_failure(c, what, why, sizeof why);
        tls_fail(c, why);
        return;
    }
    struct smtp_client_reply r;
    if (c->state == CL_CONNECT) {
        client_reply_set(&r, 0, "4.4.1", "connect", "connect to %s: %s", c->peer,
                         what & BEV_EVENT_TIMEOUT ? "Connection timed out"
                                                  : evutil_socket_error_to_string(err));
    } else if (what & BEV_EVENT_TIMEOUT) {
        client_reply_set(&r, 0, "4.4.2", current_stage(c),
                         "conversation with %s timed out while %s", c->peer, doing(c));
    } else if ((what & BEV_EVENT_ERROR) && err && !(what & BEV_EVENT_EOF)) {
        client_reply_set(&r, 0, "4.4.2", current_stage(c), "lost connection with %s while %s: %s",
                         c->peer, doing(c), evutil_socket_error_to_string(err));
    } else {
        client_reply_set(&r, 0, "4.4.2", current_stage(c), "lost connection with %s while %s",
                         c->peer, doing(c));
    }
    ERR_clear_error();
    client_die(c, &r);
}

/* The connection's bufferevent reports to us (again once STARTTLS wraps it). */
static void client_set_callbacks(struct smtp_client *c)
{
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
}

/* 220 to STARTTLS, or connected with implicit TLS: wrap the connection in TLS and
 * start the handshake (CL_HANDSHAKE); on failure the client dies. */
static void client_start_tls(struct smtp_client *c)
{
    char why[sizeof c->last.text];
    if (client_tls_wrap(c, why, sizeof why) != 0) {
        tls_fail(c, why);
        return;
    }
    client_set_callbacks(c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    client_enter(c, CL_HANDSHAKE);
}

/* --- public ------------------------------------------------------------------ */

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void peer_format(struct smtp_client *c)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (c->dst.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)&c->dst;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        port = ntohs(s->sin_port);
    } else if (c->dst.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&c->dst;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
        port = ntohs(s->sin6_port);
    }
    snprintf(c->peer, sizeof c->peer, "%s[%s]:%d", c->peer_name ? c->peer_name : ip, ip, port);
}

/* Open the socket (bound to src when given) and start a non-blocking connect.
 * 0 started, -1 with r filled. */
static int start_connect(struct smtp_client *c, struct smtp_client_reply *r)
{
    int fd = socket(c->dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        client_reply_set(r, 0, "4.4.1", "connect", "connect to %s: socket: %s", c->peer,
                         strerror(errno));
        return -1;
    }
    if (c->o.src) {
#ifdef IP_BIND_ADDRESS_NO_PORT
        int one = 1; /* pick the port at connect time: more connections per source */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
        if (bind(fd, (const struct sockaddr *)&c->src, c->o.srclen) < 0) {
            char ip[INET6_ADDRSTRLEN] = "?";
            const void *a = c->src.ss_family == AF_INET6
                                ? (const void *)&((struct sockaddr_in6 *)&c->src)->sin6_addr
                                : (const void *)&((struct sockaddr_in *)&c->src)->sin_addr;
            inet_ntop(c->src.ss_family, a, ip, sizeof ip);
            client_reply_set(r, 0, "4.4.1", "connect", "connect to %s: cannot bind to %s: %s",
                             c->peer, ip, strerror(errno));
            close(fd);
            return -1;
        }
    }
    c->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        client_reply_set(r, 0, "4.4.1", "connect", "connect to %s: out of memory", c->peer);
        return -1;
    }
    client_set_callbacks(c);
    client_enter(c, CL_CONNECT);
    if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)&c->dst, c->o.dstlen) < 0) {
        client_reply_set(r, 0, "4.4.1", "connect", "connect to %s: %s", c->peer,
                         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        return -1;
    }
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    return 0;
}

struct smtp_client *smtp_client_new(struct event_base *base, struct smtp_client_tls_ctx *tls,
                                    const struct smtp_client_opts *opts,
                                    void (*ready_cb)(void *arg, struct smtp_client *c, int ok),
                                    void *arg)
{
    struct smtp_client *c = xcalloc(1, sizeof *c);
    c->base = base;
    c->tls = tls;
    c->o = *opts;
    c->helo = xstrdup(opts->helo && *opts->helo ? opts->helo : "localhost");
    c->peer_name = opts->peer_name && *opts->peer_name ? xstrdup(opts->peer_name) : NULL;
    c->ca_file = dup_or_null(opts->ca_file);
    c->auth_user = opts->auth_user && *opts->auth_user ? xstrdup(opts->auth_user) : NULL;
    c->auth_pass = xstrdup(opts->auth_pass ? opts->auth_pass : "");
    if (c->o.connect_timeout <= 0) c->o.connect_timeout = DEF_CONNECT_TIMEOUT;
    if (c->o.command_timeout <= 0) c->o.command_timeout = DEF_COMMAND_TIMEOUT;
    if (c->o.data_timeout <= 0) c->o.data_timeout = DEF_DATA_TIMEOUT;
    if (c->o.implicit_tls && c->o.tls < SMTP_CTLS_ENCRYPT) c->o.tls = SMTP_CTLS_ENCRYPT;
    c->ready = ready_cb;
    c->ready_arg = arg;
    c->ev_notify = event_new(base, -1, 0, notify_cb, c);
    if (!c->ev_notify) abort();
    c->state = CL_CONNECT;
    struct smtp_client_reply r;
    int bad = 0;
    if (!opts->dst || opts->dstlen > sizeof c->dst || opts->dstlen == 0) {
        client_reply_set(&r, 0, "4.4.1", "connect", "no destination address");
        bad = 1;
    } else {
        memcpy(&c->dst, opts->dst, opts->dstlen);
    }
    if (opts->src && (opts->srclen > sizeof c->src || opts->srclen == 0)) {
        client_reply_set(&r, 0, "4.4.1", "connect", "bad source address");
        bad = 1;
    } else if (opts->src) {
        memcpy(&c->src, opts->src, opts->srclen);
    }
    c->o.dst = (const struct sockaddr *)&c->dst;
    c->o.src = opts->src ? (const struct sockaddr *)&c->src : NULL;
    c->o.helo = c->o.peer_name = c->o.ca_file = c->o.auth_user = c->o.auth_pass = NULL;
    peer_format(c);
    if (bad || start_connect(c, &r) < 0) {
        c->last = r;
        c->state = CL_DEAD;
        notify(c, PEND_READY, 0);
    }
    return c;
}

const struct smtp_client_caps *smtp_client_caps(const struct smtp_client *c)
{
    return &c->caps;
}

const struct smtp_client_reply *smtp_client_last(const struct smtp_client *c)
{
    return &c->last;
}

const char *smtp_client_peer(const struct smtp_client *c)
{
    return c->peer;
}

const char *smtp_client_tls_info(const struct smtp_client *c)
{
    return c->tls_on ? c->tls_info : "";
}

int smtp_client_tls_verified(const struct smtp_client *c)
{
    return c->tls_on && c->tls_verified;
}

/* A message that fails before anything is sent: every recipient gets r. */
static void send_local_fail(struct smtp_client *c, const struct smtp_client_reply *r, int ok)
{
    msg_fill(c->msg, r);
    notify(c, PEND_DONE, ok);
}

void smtp_client_send(struct smtp_client *c, struct smtp_client_msg *msg,
                      void (*done)(void *arg, struct smtp_client *c, int ok), void *arg)
{
    c->msg = msg;
    c->done = done;
    c->done_arg = arg;
    memset(&msg->reply, 0, sizeof msg->reply);
    for (size_t i = 0; i < msg->nrcpts; i++)
        memset(&msg->rcpt_reply[i], 0, sizeof msg->rcpt_reply[i]);
    struct smtp_client_reply r;
    if (c->state != CL_READY || c->pending != PEND_NONE) {
        client_reply_set(&r, 0, "4.4.2", "MAIL FROM", "connection to %s is not usable%s%s", c->peer,
                         c->last.text[0] ? ": " : "", c->last.text);
        if (c->pending != PEND_NONE) { /* misuse: a callback is still due */
            log_err("smtp", "%s: smtp_client_send while a callback is pending", c->peer);
            abort();
        }
        send_local_fail(c, &r, 0);
        return;
    }
    if (msg->nrcpts == 0) {
        client_reply_set(&r, 554, "5.5.1", "RCPT TO", "no recipients");
        send_local_fail(c, &r, 1);
        return;
    }
    if (!addr_ok(msg->sender)) {
        client_reply_set(&r, 553, "5.1.7", "MAIL FROM", "bad sender address syntax");
        send_local_fail(c, &r, 1);
        return;
    }
    if (c->caps.size_given && c->caps.size && msg->size > c->caps.size) {
        client_reply_set(&r, 552, "5.3.4", "MAIL FROM",
                         "message too big for %s (%llu bytes, limit %llu)", c->peer, msg->size,
                         c->caps.size);
        send_local_fail(c, &r, 1);
        return;
    }
    if (msg->smtputf8 && !c->caps.smtputf8) {
        client_reply_set(&r, 553, "5.6.7", "MAIL FROM", "%s does not support SMTPUTF8", c->peer);
        send_local_fail(c, &r, 1);
        return;
    }
    /* the command list: [RSET] MAIL RCPT... DATA */
    free(c->cmds);
    c->cmds = xcalloc(msg->nrcpts + 3, sizeof *c->cmds);
    c->ncmds = c->sent = c->recvd = 0;
    /* RFC 5321 4.1.1.5: start each further message on the connection from a clean
     * state */
    if (c->nmsgs++ > 0) c->cmds[c->ncmds++].kind = TX_RSET;
    c->cmds[c->ncmds++].kind = TX_MAIL;
    size_t nvalid = 0;
    for (size_t i = 0; i < msg->nrcpts; i++) {
        if (!addr_ok(msg->rcpts[i])) {
            client_reply_set(&msg->rcpt_reply[i], 553, "5.1.3", "RCPT TO",
                             "bad recipient address syntax");
            continue;
        }
        c->cmds[c->ncmds].kind = TX_RCPT;
        c->cmds[c->ncmds++].rcpt = i;
        nvalid++;
    }
    if (!nvalid) {
        no_rcpt_reply(c);
        notify(c, PEND_DONE, 1);
        return;
    }
    /* a probe ends with RSET where a message sends DATA (RFC 5321 3.3: no content) */
    c->cmds[c->ncmds++].kind = msg->probe ? TX_RSET_END : TX_DATA;
    c->mail_ok = 0;
    c->accepted = 0;
    c->dot_only = 0;
    client_enter(c, CL_TXN);
}

/* After QUIT: the connection lives on its own until the command has left (bounded),
 * then closes. */
struct quit_linger {
    struct bufferevent *bev;
    struct event *ev;
    int tries;
};

static size_t output_pending(struct bufferevent *bev)
{
    size_t n = evbuffer_get_length(bufferevent_get_output(bev));
    struct bufferevent *under = bufferevent_get_underlying(bev);
    if (under) n += evbuffer_get_length(bufferevent_get_output(under));
    return n;
}

static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
    struct quit_linger *l = arg;
    if (output_pending(l->bev) > 0 && l->tries++ < 100) {
        evtimer_add(l->ev, &(struct timeval){.tv_usec = 20000});
        return;
    }
    bufferevent_free(l->bev);
    event_free(l->ev);
    free(l);
}

void smtp_client_free(struct smtp_client *c)
{
    if (!c) return;
    if (c->bev && c->quit_ok && (c->state == CL_READY || c->state == CL_DEAD)) {
        send_cmd(c, NULL, "QUIT");
        struct quit_linger *l = xcalloc(1, sizeof *l);
        l->bev = c->bev;
        l->ev = evtimer_new(c->base, linger_cb, l);
        if (!l->ev) abort();
        bufferevent_setcb(l->bev, NULL, NULL, NULL, NULL);
        bufferevent_set_timeouts(l->bev, NULL, NULL);
        bufferevent_enable(l->bev, EV_READ | EV_WRITE);
        event_active(l->ev, EV_TIMEOUT, 0);
        c->bev = NULL;
    }
    if (c->bev) bufferevent_free(c->bev);
    event_free(c->ev_notify);
    free(c->cmds);
    free(c->helo);
    free(c->peer_name);
    free(c->ca_file);
    free(c->auth_user);
    if (c->auth_pass) explicit_bzero(c->auth_pass, strlen(c->auth_pass));
    free(c->auth_pass);
    free(c);
}
