/* client_int.h: private to src/smtp/client*.c (not part of smtp.h): one outbound
 * connection's state, shared by the dialogue (client.c), its TLS (client_tls.c) and
 * the reading of replies (client_reply.c), which client.c calls and which never call
 * back.
 * Nothing outside the smtp folder includes it. */
#ifndef KURIER_SMTP_CLIENT_INT_H
#define KURIER_SMTP_CLIENT_INT_H

#include <sys/socket.h>

#include "smtp/smtp.h"

struct bufferevent;
struct event;
struct event_base;
struct txn_cmd;

/* Each state names the command whose reply it waits for; entering it sends that
 * command (client_enter()), and on_reply() judges a reply by the state it answers. */
enum cl_state {
    CL_CONNECT = 0, /* TCP connect running */
    CL_GREETING,    /* waiting for the 220 greeting */
    CL_EHLO,        /* EHLO sent */
    CL_HELO,        /* EHLO refused with 5xx: HELO sent */
    CL_STARTTLS,    /* STARTTLS sent */
    CL_HANDSHAKE,   /* TLS handshake running */
    CL_AUTH_PLAIN,  /* AUTH PLAIN with initial response sent */
    CL_AUTH_LOGIN,  /* AUTH LOGIN sent, 334 for the user name wanted */
    CL_AUTH_USER,   /* AUTH LOGIN: user name sent */
    CL_AUTH_PASS,   /* AUTH LOGIN: password sent */
    CL_READY,       /* idle between messages */
    CL_TXN,         /* RSET/MAIL/RCPT/DATA: the send and receive cursors say where */
    CL_CONTENT,     /* streaming the message */
    CL_DOT,         /* end of data sent */
    CL_DEAD,        /* failed or lost: unusable */
};

enum pending_cb { PEND_NONE = 0, PEND_READY, PEND_DONE };

struct smtp_client {
    struct event_base *base;
    struct smtp_client_tls_ctx *tls;
    struct bufferevent *bev;
    struct event *ev_notify;
    enum cl_state state;
    /* options, copied */
    struct smtp_client_opts o;
    struct sockaddr_storage dst, src;
    char *helo, *peer_name, *ca_file, *auth_user, *auth_pass;
    char peer[320];
    /* what we learnt */
    struct smtp_client_caps caps;
    int tls_on, tls_verified;
    int greeted; /* the 220 greeting came (implicit TLS: the handshake comes first) */
    char tls_info[128];
    struct smtp_client_reply last;
    int quit_ok; /* failed by a reply but in sync: QUIT may be sent on free */
    /* the reply being read */
    struct smtp_client_reply cur;
    int cur_lines;
    /* callbacks, run from ev_notify only */
    enum pending_cb pending;
    int pending_ok;
    void (*ready)(void *arg, struct smtp_client *c, int ok);
    void *ready_arg;
    void (*done)(void *arg, struct smtp_client *c, int ok);
    void *done_arg;
    /* the message being sent */
    struct smtp_client_msg *msg;
    int nmsgs;
    struct txn_cmd *cmds;
    size_t ncmds, sent, recvd; /* send and receive cursors */
    int mail_ok;
    size_t accepted;
    int dot_only;       /* 354 to a DATA nobody wanted: only the dot goes out */
    off_t off;          /* content bytes read so far */
    unsigned char prev; /* last content byte sent, '\n' at the start */
};

/* --- client_tls.c ----------------------------------------------------------------- */

/* 220 to STARTTLS, or connected with implicit TLS: wrap c->bev in a TLS filter (SNI,
 * the peer's name and the CA file checked as c->o asks) and drop what the server sent
 * before (RFC 3207 4.2). 0 done: c->bev is the filter, its handshake starting, the
 * caller sets its callbacks; -1 with why filled (at most whysize bytes), the
 * connection as it was. */
int client_tls_wrap(struct smtp_client *c, char *why, size_t whysize);
/* The handshake completed: record what TLS we got (tls_on, tls_verified, tls_info),
 * log it, and forget the capabilities learnt before it. */
void client_tls_done(struct smtp_client *c);
/* Why the handshake failed (what: the bufferevent's event flags), into out. */
void client_tls_failure(struct smtp_client *c, short what, char *out, size_t outsize);

/* client_reply.c: one reply line (without CRLF) of the reply c->cur collects (and
 * of c->caps while the EHLO reply comes). 1: the reply is complete, 0: more lines
 * follow, -1: not an SMTP reply. */
int client_reply_line(struct smtp_client *c, const char *line, size_t len);

#endif
