/* server_data.c: the message content of an inbound session: DATA and BDAT chunks
 * streamed into the queue file (dot-unstuffing and line checks by smtp_data_feed()),
 * the header section kept for the end-of-message checks, the size cap, and the end
 * of data (judged, then committed). The dialogue around it is server.c's. */
#include "core/compat.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <time.h>

#include "core/metrics.h"
#include "smtp/session.h"

/* Open the queue file. Our Received: header and submission fix-ups are written
 * when the client's header section is complete (header_end). */
static int message_open(struct smtp_session *s)
{
    s->msg = s->srv->ops->msg_open(s->srv->ops->ctx, &s->peer, s->id, sizeof s->id);
    if (!s->msg) return -1;
    buf_init(&s->out, 0);
    buf_init(&s->hdr, 0);
    s->hdr_done = 0;
    return 0;
}

/* The header section is complete (or too long to keep): write our Received:
 * header (RFC 5321 4.4), the submission fix-ups (RFC 6409 8.2, 8.3), then the
 * client's headers. */
static void header_end(struct smtp_session *s)
{
    s->hdr_done = 1;
    s->txn.headers = s->hdr.data;
    s->txn.headers_len = s->hdr.len;
    char date[64];
    time_t now = time(NULL);
    time_rfc5322(date, sizeof date, now);
    struct buf h;
    buf_init(&h, 0);
    char helo[300];
    log_escape(helo, sizeof helo, s->peer.helo, strlen(s->peer.helo));
    const char *with = s->peer.esmtp ? (s->peer.auth_user ? (s->peer.tls ? "ESMTPSA" : "ESMTPA")
                                                          : (s->peer.tls ? "ESMTPS" : "ESMTP"))
                                     : "SMTP";
    if (s->srv->listen->hide_client && s->peer.auth_user)
        buf_printf(&h, "Received: by %s (kurier) with %s id %s", s->conf->hostname, with, s->id);
    else
        buf_printf(&h, "Received: from %s (%s [%s])\r\n\tby %s (kurier) with %s id %s", helo,
                   s->peer.name, s->peer.addr, s->conf->hostname, with, s->id);
    if (s->peer.tls && s->peer.tls_info[0]) buf_printf(&h, "\r\n\t(%s)", s->peer.tls_info);
    if (s->txn.nrcpts == 1) {
        char *a = addr_format(&s->txn.rcpts[0].addr);
        char esc[600];
        buf_printf(&h, "\r\n\tfor <%s>", log_escape(esc, sizeof esc, a, strlen(a)));
        free(a);
    }
    buf_printf(&h, "; %s\r\n", date);
    /* the layers above's fields (Received-SPF:, Authentication-Results:); they may drop
     * client fields (a forged Authentication-Results: with our name) */
    if (s->srv->ops->msg_headers && s->hdr.data) {
        s->srv->ops->msg_headers(s->srv->ops->ctx, &s->peer, &s->txn, &h, s->hdr.data, &s->hdr.len);
        s->hdr.data[s->hdr.len] = '\0';
        s->txn.headers_len = s->hdr.len;
    } else if (s->srv->ops->msg_headers) {
        size_t none = 0;
        s->srv->ops->msg_headers(s->srv->ops->ctx, &s->peer, &s->txn, &h, NULL, &none);
    }
    if (s->peer.auth_user || s->srv->listen->role == LISTEN_SUBMISSION)
        header_complete(&h, s->hdr.data ? s->hdr.data : "", s->hdr.len,
                        &(struct hdr_complete){
                            .date = date, .msgid_left = s->id, .msgid_domain = s->conf->hostname});
    if (!s->msg_failed && s->msg && s->srv->ops->msg_write(s->msg, h.data, h.len) != 0)
        s->msg_failed = 1;
    s->txn.added_size = h.len;
    buf_release(&h);
    if (s->hdr.len && !s->msg_failed && s->msg &&
        s->srv->ops->msg_write(s->msg, s->hdr.data, s->hdr.len) != 0)
        s->msg_failed = 1;
    if (s->hdr.len && s->srv->ops->msg_content)
        s->srv->ops->msg_content(s->srv->ops->ctx, &s->peer, &s->txn, s->hdr.data, s->hdr.len);
    s->txn.msg_size += s->hdr.len;
}

void session_cmd_data(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_data++;
    memset(&s->data, 0, sizeof s->data);
    s->data.max_line = 998;
    if (message_open(s) != 0) {
        session_reply(s, 451, "4.3.0",
                      "Temporary local problem storing the message, try again later");
        return;
    }
    session_set_state(s, SMTP_ST_DATA);
    session_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
    session_timeouts(s, s->conf->data_timeout, s->conf->command_timeout);
}

void session_cmd_bdat(struct smtp_session *s, struct smtp_cmd *c)
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
    session_set_state(s, SMTP_ST_CHUNK);
    session_timeouts(s, s->conf->data_timeout, s->conf->command_timeout);
}

/* --- message content ------------------------------------------------------------ */

#define HDR_KEEP_MAX (64 * 1024) /* header bytes kept in memory for EOM checks */

/* 1 when p holds the empty line that ends the header section (RFC 5322 2.1). */
static int header_section_ends(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) { /* i: the start of a line */
        if (p[i] == '\n' || (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n')) return 1;
        const char *nl = memchr(p + i, '\n', len - i);
        if (!nl) break;
        i = (size_t)(nl - p);
    }
    return 0;
}

/* Move scanned content from s->out to the queue file. Until the header section
 * ended it is kept in s->hdr (bounded), so that EOM checks can read it; a longer
 * header section is marked cut (the checks that need all of it refuse it). */
static void content_flush(struct smtp_session *s, int force)
{
    if (!s->hdr_done) {
        size_t cut = s->out.len;
        if (s->hdr.len + cut > HDR_KEEP_MAX) cut = HDR_KEEP_MAX - s->hdr.len;
        buf_append(&s->hdr, s->out.data ? s->out.data : "", cut);
        buf_consume(&s->out, cut);
        if (!s->data.in_headers || force || s->hdr.len >= HDR_KEEP_MAX) {
            if (s->hdr.len >= HDR_KEEP_MAX && (s->out.len > 0 || !force) &&
                !header_section_ends(s->hdr.data, s->hdr.len))
                s->txn.headers_cut = 1;
            header_end(s);
        }
        if (!s->hdr_done) return;
    }
    if (s->out.len == 0 || (!force && s->out.len < 65536)) return;
    if (!s->too_big && !s->msg_failed && s->msg) {
        if (s->txn.msg_size + s->out.len > s->conf->message_size) {
            s->too_big = 1;
        } else if (s->srv->ops->msg_write(s->msg, s->out.data, s->out.len) != 0) {
            s->msg_failed = 1;
        } else if (s->srv->ops->msg_content) {
            s->srv->ops->msg_content(s->srv->ops->ctx, &s->peer, &s->txn, s->out.data, s->out.len);
        }
    }
    s->txn.msg_size += s->out.len;
    buf_reset(&s->out);
}

static void committed(void *arg, int ok);
static void eom_judged(void *arg, const struct smtp_verdict *v);

/* The end of the message (DATA's final dot or BDAT LAST): judge it, then commit. */
static void message_end(struct smtp_session *s)
{
    content_flush(s, 1);
    session_timeouts(s, s->conf->command_timeout, s->conf->command_timeout);
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
        session_log_reject(s, cmd, code, enh, text, NULL);
        s->txn_code = code;
        s->txn_check = NULL;
        session_txn_clear(s);
        session_set_state(s, SMTP_ST_READY);
        session_fail(s, code, enh, "%s", text);
        return;
    }
    /* the content checks of the policy pipeline (sender binding on From:, ...) */
    log_debug("smtp", "%s[%s]: %s: end of data, %zu bytes: judging", s->peer.name, s->peer.addr,
              s->id, s->txn.msg_size);
    s->pending = PENDING_JUDGE;
    s->pending_handle = s->srv->ops->judge(s->srv->ops->ctx, &s->peer, &s->txn, SMTP_STAGE_EOM,
                                           NULL, eom_judged, s);
}

/* Shutting down and the message is answered: say so and close. 1 when closed. */
static int close_after_message(struct smtp_session *s)
{
    if (!s->close_after_commit || s->closing) return 0;
    session_reply(s, 421, "4.3.2", "%s Service shutting down, try again later", s->conf->hostname);
    session_close(s);
    return 1;
}

static void eom_judged(void *arg, const struct smtp_verdict *v)
{
    struct smtp_session *s = arg;
    s->pending = PENDING_NONE;
    s->pending_handle = NULL;
    if (s->closing) {
        /* the client left before its answer: it sends the message again, so it is not
         * stored (committing now would also outlive the session) */
        log_info(s->logname,
                 "%s: message from %s[%s] dropped: the client left before the end "
                 "of data was answered",
                 s->id, s->peer.name, s->peer.addr);
        session_txn_clear(s);
        session_maybe_free(s);
        return;
    }
    if (v->code) {
        session_log_reject(s, s->data.bdat ? "BDAT" : "DATA", v->code, v->enh, v->text, NULL);
        s->txn_code = v->code;
        s->txn_check = v->check;
        session_txn_clear(s);
        session_set_state(s, SMTP_ST_READY);
        session_fail(s, v->code, v->enh, "%s", v->text);
        if (!close_after_message(s)) session_process_input(s);
        return;
    }
    log_debug("smtp", "%s[%s]: %s: end of data accepted, committing", s->peer.name, s->peer.addr,
              s->id);
    void *msg = s->msg;
    s->msg = NULL;
    s->pending = PENDING_COMMIT;
    s->srv->ops->msg_commit(s->srv->ops->ctx, msg, &s->peer, &s->txn, committed, s);
}

static void committed(void *arg, int ok)
{
    struct smtp_session *s = arg;
    s->pending = PENDING_NONE;
    if (ok) {
        if (!s->closing) {
            session_reply(s, 250, "2.0.0", "Ok: queued as %s", s->id);
            session_flush(s); /* before the log lines and the rest of the batch */
        }
        metrics_add(MET_ACCEPTED, 1, s->peer.listener->address);
        log_info(s->logname, "%s: client=%s[%s]%s%s", s->id, s->peer.name, s->peer.addr,
                 s->peer.auth_user ? ", sasl_username=" : "",
                 s->peer.auth_user ? s->peer.auth_user : "");
    } else {
        log_warn(s->logname, "%s: message from %s[%s] could not be stored", s->id, s->peer.name,
                 s->peer.addr);
        if (!s->closing)
            session_reply(s, 451, "4.3.0",
                          "Temporary local problem storing the message, try again");
    }
    s->txn_code = ok ? 250 : 451;
    s->txn_check = NULL;
    session_txn_clear(s);
    session_set_state(s, SMTP_ST_READY);
    if (close_after_message(s)) return;
    if (s->closing) {
        /* the client went away while we synced: the message is queued all the same;
         * the session waited for this callback to be freed */
        session_maybe_free(s);
        return;
    }
    session_process_input(s);
}

/* Feed DATA bytes from the input buffer. */
void session_read_data(struct smtp_session *s, struct evbuffer *in)
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
void session_read_chunk(struct smtp_session *s, struct evbuffer *in)
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
    session_set_state(s, SMTP_ST_BDAT);
    if (s->msg_failed)
        session_fail(s, 451, "4.3.0", "Temporary local problem storing the message, try again");
    else
        session_reply(s, 250, "2.0.0", "%zu bytes received so far", s->txn.msg_size + s->out.len);
}
