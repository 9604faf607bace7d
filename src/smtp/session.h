/* session.h: private to src/smtp/server*.c and session.c (not part of smtp.h): one
 * inbound SMTP session's state, shared by the dialogue (server.c), the message
 * content (server_data.c), the AUTH exchange (server_auth.c) and what all three
 * stand on (session.c). Nothing outside the smtp folder includes it. */
#ifndef KURIER_SMTP_SESSION_H
#define KURIER_SMTP_SESSION_H

#include "smtp/smtp.h"

struct bufferevent;
struct evconnlistener;
struct event;
struct evbuffer;
struct sockaddr_storage;
struct smtp_session;

enum smtp_state {
    SMTP_ST_INIT = 0, /* greeted, no HELO/EHLO yet */
    SMTP_ST_READY,    /* HELO/EHLO done, no transaction */
    SMTP_ST_MAIL,     /* MAIL accepted, no recipient yet */
    SMTP_ST_RCPT,     /* at least one recipient */
    SMTP_ST_DATA,     /* reading DATA content */
    SMTP_ST_BDAT,     /* BDAT chunks being received (between chunks) */
    SMTP_ST_CHUNK,    /* reading the bytes of one BDAT chunk */
    SMTP_ST_AUTH,     /* AUTH exchange: the next line is a SASL response */
    SMTP_ST_QUIT,     /* closing */
    SMTP_ST_COUNT
};

#define ST(x) (1u << (x))

enum pending_kind { PENDING_NONE = 0, PENDING_JUDGE, PENDING_COMMIT, PENDING_AUTH, PENDING_LOOKUP };

struct smtp_server {
    struct event_base *base;
    struct evconnlistener *lev;
    const struct kconf *conf;         /* for new sessions; a reference (conf_ref()) */
    const struct conf_listen *listen; /* in conf */
    const struct smtp_ops *ops;
    struct smtp_tls *tls;
    /* server.c's input loop, run by session_process_input() */
    void (*input)(struct smtp_session *s);
};

struct smtp_session {
    struct smtp_server *srv;
    const struct kconf *conf; /* the one it started with; a reference, also peer.conf */
    struct bufferevent *bev;
    struct smtp_peer peer;
    enum smtp_state state;
    struct smtp_txn txn;
    int have_txn;
    int txn_code;          /* how the transaction ends (ops->txn_end): 250 queued, the last
                              refusal's code, 0 given up */
    const char *txn_check; /* the check of that refusal (static), or NULL */
    int errors;
    int closing;      /* no more input is processed; freed once output is flushed */
    int gone;         /* the client cannot be written to (reset, write timeout): freed
                         without flushing */
    int out_full;     /* too many unread replies: input waits (server.c OUT_MAX) */
    int direct;       /* plain socket: replies are written at the end of the callback
                         that made them, no write event while the socket takes them */
    int flush_queued; /* on the list of sessions with replies to write */
    struct smtp_session *flush_next;
    int discard_line;       /* dropping the rest of an over-long command line */
    int close_after_commit; /* shutting down while the message's end is judged or committed:
                               answer the message, then 421 */
    int free_tries;         /* waits for the last bytes to leave before the free */
    char logname[32];       /* "smtpd[N]": this session's lines share N */
    enum pending_kind pending;
    void *pending_handle;
    struct smtp_rcpt pending_rcpt; /* the RCPT being judged */
    /* AUTH exchange */
    char auth_mech[8];     /* "PLAIN" or "LOGIN" */
    char *auth_login_user; /* LOGIN: the user name, waiting for the password */
    /* header section buffered until it ends, for EOM checks and fix-ups */
    struct buf hdr;
    int hdr_done;
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
    int n_starttls, n_auth;
    char *auth_user_try; /* the user name being checked */
    struct event *ev_free;
    /* the greeting: sent once the name is known and the pause (pregreet_wait) is over */
    struct event *ev_greet; /* the pause's timer, NULL when there is none */
    int greeted;            /* the greeting went out: commands are read from now on */
    int refused;            /* greeted with 554 (pregreet_action reject): only QUIT */
    struct smtp_session *prev, *next;
};

/* Replies a client has not read yet: above OUT_MAX its commands wait (as Postfix's
 * smtpd blocks on a full socket) until the output drained to OUT_MAX / 2, so a
 * client that pipelines without reading costs a bounded amount of memory. */
#define OUT_MAX (256 * 1024)

/* session.c */
/* The one function that sends a reply: it only sends. */
void session_reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A client error: reply, count it, hang up after too many. */
void session_fail(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void session_set_state(struct smtp_session *s, enum smtp_state st);
/* Go on with buffered input (after an asynchronous step finished): the dialogue's
 * input loop, s->srv->input. */
void session_process_input(struct smtp_session *s);
/* Seconds without input (0: none) and without progress sending replies. */
void session_timeouts(struct smtp_session *s, int rd, int wr);
/* End the transaction (ops->txn_end), abort its queue file, forget its content. */
void session_txn_clear(struct smtp_session *s);
/* Forget a half-done AUTH exchange. */
void session_auth_reset(struct smtp_session *s);
/* Log a refusal in Postfix's shape (rcpt: the recipient, or NULL). */
void session_log_reject(struct smtp_session *s, const char *cmd, int code, const char *enh,
                        const char *text, const char *rcpt);
/* Bytes still waiting to go out, including below a TLS filter. */
size_t session_output_pending(struct smtp_session *s);
/* A plain socket's session writes its replies itself (session.c, "writing replies");
 * session_output_undirect() hands writing back to the bufferevent (STARTTLS). */
void session_output_direct(struct smtp_session *s);
void session_output_undirect(struct smtp_session *s);
/* Write the replies made so far now rather than once the callback returned (the 250
 * of a commit, ahead of the batch's other work); the caller goes on with the session
 * (input, closing) itself. */
void session_flush(struct smtp_session *s);
/* The session's bufferevent (again after STARTTLS wraps it) reports to session.c:
 * input goes to session_process_input(); watermarks and the command timeout set. */
void session_callbacks(struct smtp_session *s);
/* Stop reading; the session is freed once its replies left. */
void session_close(struct smtp_session *s);
/* Free the session once its pending output went out, deferred to the loop (never
 * from inside its own I/O's callback); a commit in flight keeps it. */
void session_maybe_free(struct smtp_session *s);
/* Put a new session on the list of live sessions (smtp_sessions_count(),
 * smtp_sessions_close_all()); the free takes it off. */
void session_link(struct smtp_session *s);
/* Live sessions (closing ones too) from the address of sa. */
size_t sessions_from(const struct sockaddr_storage *sa);

/* server_data.c: the message content (DATA, BDAT) */
void session_cmd_data(struct smtp_session *s, struct smtp_cmd *c);
void session_cmd_bdat(struct smtp_session *s, struct smtp_cmd *c);
/* Feed DATA bytes from in (state SMTP_ST_DATA); ends the message at the final dot. */
void session_read_data(struct smtp_session *s, struct evbuffer *in);
/* Feed the bytes of one BDAT chunk (state SMTP_ST_CHUNK); ends the message after LAST. */
void session_read_chunk(struct smtp_session *s, struct evbuffer *in);

/* server_auth.c: AUTH PLAIN/LOGIN (RFC 4954) */
/* AUTH is offered now: the listener allows it, not yet authenticated, and TLS is on
 * (or auth_plaintext). */
int session_auth_offered(const struct smtp_session *s);
void session_cmd_auth(struct smtp_session *s, struct smtp_cmd *c);
/* The next line of an AUTH exchange (state SMTP_ST_AUTH). */
void session_auth_step(struct smtp_session *s, const char *line, size_t len);

#endif
