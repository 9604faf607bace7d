/* smtp.h: the SMTP protocol module. parse.c: pure parsers for command lines, ESMTP
 * parameters and the DATA/BDAT byte stream (fuzzed). server.c: the inbound
 * dialogue as one state machine (server_auth.c its AUTH exchange); it asks policy
 * and spool through small interfaces and never decides delivery itself. sasl.c: the
 * PLAIN message; tls.c: server TLS contexts; client.c: the outbound client. */
#ifndef KURIER_SMTP_H
#define KURIER_SMTP_H

#include <stddef.h>
#include <sys/types.h>
#include "core/core.h"

/* An error reply decided by a parser or a check: code, enhanced code, text. */
struct smtp_err {
    int code;        /* 501 */
    const char *enh; /* "5.5.4" (static) */
    char text[256];  /* human sentence, no CRLF */
};

enum smtp_verb {
    SMTP_V_UNKNOWN = 0,
    SMTP_V_HELO,
    SMTP_V_EHLO,
    SMTP_V_MAIL,
    SMTP_V_RCPT,
    SMTP_V_DATA,
    SMTP_V_BDAT,
    SMTP_V_RSET,
    SMTP_V_NOOP,
    SMTP_V_QUIT,
    SMTP_V_HELP,
    SMTP_V_VRFY,
    SMTP_V_EXPN,
    SMTP_V_STARTTLS,
    SMTP_V_AUTH,
    SMTP_V_COUNT
};

/* enum smtp_body, smtp_ret, smtp_notify: core/esmtp.h (the queue stores them too) */

struct smtp_cmd {
    enum smtp_verb verb;
    char *arg; /* text after the verb, leading spaces removed (HELO/EHLO/VRFY/AUTH/HELP/
                  NOOP); NULL when none */
    /* MAIL / RCPT */
    struct addr path;
    /* MAIL parameters (RFC 1870, 6152, 6531, 3461, 4954) */
    long long size;      /* SIZE=, -1 when not given */
    enum smtp_body body; /* BODY= */
    int smtputf8;        /* SMTPUTF8 */
    enum smtp_ret ret;   /* RET= */
    char *envid;         /* ENVID=, xtext-decoded */
    char *auth;          /* AUTH=, xtext-decoded ("<>" kept) */
    /* RCPT parameters (RFC 3461) */
    unsigned notify; /* SMTP_NOTIFY_* bits */
    char *orcpt;     /* ORCPT=, "rfc822;addr" with the address xtext-decoded */
    /* BDAT */
    unsigned long long chunk_size;
    int last; /* BDAT ... LAST */
};

/* Parse one command line (len bytes, without the CRLF). utf8: SMTPUTF8 was
 * negotiated for this transaction (addresses may be UTF-8).
 * Returns 0 with cmd filled (free with smtp_cmd_clear), or -1 with err filled
 * (500 5.5.2 unknown verb / 501 5.5.4 bad arguments / 553 5.1.x bad address /
 * 555 5.5.4 unknown parameter ...), cmd->verb still set when the verb was known. */
int smtp_parse_cmd(const char *line, size_t len, struct smtp_cmd *cmd, struct smtp_err *err);
void smtp_cmd_clear(struct smtp_cmd *cmd);
/* Verb name ("MAIL") for logs. */
const char *smtp_verb_name(enum smtp_verb v);

/* Incremental scanner of the message byte stream (DATA or BDAT). */
enum smtp_data_flag {
    SMTP_DATA_BARE_LF = 1,   /* LF not preceded by CR */
    SMTP_DATA_BARE_CR = 2,   /* CR not followed by LF */
    SMTP_DATA_LONG_LINE = 4, /* a line over max_line bytes (without CRLF) */
    SMTP_DATA_NUL = 8,       /* a NUL byte */
};

struct smtp_data {
    /* set by the caller before the first feed (zero the struct first) */
    int bdat;        /* 1: BDAT chunk bytes: no dot-unstuffing, no end marker */
    size_t max_line; /* 998 (RFC 5322 2.1.1) */
    /* results */
    unsigned flags; /* smtp_data_flag bits seen so far */
    int done;       /* DATA: "<CRLF>.<CRLF>" seen; no byte after it was consumed */
    int in_headers; /* still in the header section */
    int received;   /* "Received:" header fields counted in the header section */
    /* internal */
    int st;
    size_t line_len;
    char hdr[10];
    size_t hdr_len;
};

/* Feed len bytes. Message bytes (dot-unstuffed in DATA mode, line ends exactly as
 * received) are appended to out. Returns the number of bytes consumed: all of them,
 * or in DATA mode fewer when the end marker was reached (d->done set; the rest
 * belongs to the next command). Never fails: problems are recorded in d->flags. */
size_t smtp_data_feed(struct smtp_data *d, const char *p, size_t len, struct buf *out);

/* xtext (RFC 3461 4): decode into a new string; NULL when malformed. */
char *smtp_xtext_decode(const char *p, size_t len);

/* --- the inbound server (server.c) ------------------------------------------ */

#include <sys/socket.h>

struct event_base;

enum smtp_stage { /* enum policy_stage's values: pinned where the two meet (ops_judge) */
                  SMTP_STAGE_CONNECT = 0,
                  SMTP_STAGE_HELO,
                  SMTP_STAGE_MAIL,
                  SMTP_STAGE_RCPT,
                  SMTP_STAGE_DATA,
                  SMTP_STAGE_EOM,
};

/* Who is talking to us. Owned by the session. */
struct smtp_peer {
    const struct kconf *conf;           /* the configuration the session started with; the
                                           session holds a reference until it is freed */
    const struct conf_listen *listener; /* in conf */
    struct sockaddr_storage sa;
    char addr[64];      /* "192.0.2.7", "2001:db8::1" */
    char name[256];     /* verified reverse name, or "unknown" */
    char *helo;         /* HELO/EHLO argument or NULL */
    int esmtp;          /* EHLO was used */
    int tls;            /* the session is encrypted */
    char tls_info[128]; /* "TLSv1.3 with cipher ... (256/256 bits)" */
    char *auth_user;    /* authenticated user or NULL */
    int trusted;        /* client address in relay.trusted_networks */
    /* pre-greeting tests (role mx listeners), for policy/pregreet.c */
    enum rdns_status rdns; /* what the reverse lookup said */
    char ptr_name[256];    /* the PTR name found, confirmed or not ("" none) */
    int early_talker;      /* sent bytes before the greeting (pregreet_wait) */
    int bad_pipelining;    /* sent a command before the reply to the previous one while
                              PIPELINING was not offered (before EHLO's reply, or HELO) */
};

struct smtp_rcpt {
    struct addr addr;
    unsigned notify; /* SMTP_NOTIFY_* */
    char *orcpt;     /* "rfc822;a@b" or NULL */
};

/* One mail transaction, from MAIL to the end of the message. */
struct smtp_txn {
    struct addr sender;
    long long size; /* SIZE= or -1 */
    enum smtp_body body;
    int smtputf8;
    enum smtp_ret ret;
    char *envid;
    struct smtp_rcpt *rcpts;
    size_t nrcpts, cap;
    size_t msg_size;   /* content bytes received so far */
    size_t added_size; /* our Received: and fix-up headers, queued before the content */
    /* the message's header section as received (at most 64 KiB), for EOM checks */
    const char *headers;
    size_t headers_len;
    int headers_cut; /* the header section was longer: headers holds only its start */
    void *state;     /* the layers above's record of it (ops->txn_new), or NULL */
};

/* A verdict from the layers above: code 0 = go on; otherwise the reply to send. */
struct smtp_verdict {
    int code;
    char enh[8];
    char text[300];
    const char *check; /* which check decided, for the log */
    /* RCPT, accepted: the recipient's local part as it is taken ("" unchanged), e.g.
     * without its BATV tag; the transaction keeps the recipient so. */
    char rcpt_local[ADDR_LOCAL_MAX + 1];
};

/* What the session asks of the layers above (policy, spool). The daemon fills it;
 * every callback runs on the loop thread. */
struct smtp_ops {
    void *ctx;
    /* Judge a stage (rcpt set at the RCPT stage). done runs exactly once, never before
     * judge returns, unless judge_cancel is called first. Returns the handle. */
    void *(*judge)(void *ctx, const struct smtp_peer *peer, const struct smtp_txn *txn,
                   enum smtp_stage stage, const struct addr *rcpt,
                   void (*done)(void *arg, const struct smtp_verdict *v), void *arg);
    void (*judge_cancel)(void *handle);
    /* A transaction starts (MAIL, before it is judged): the record the layers above keep
     * of it (txn->state; NULL: none). NULL txn_new: no records. */
    void *(*txn_new)(void *ctx, const struct smtp_peer *peer);
    /* Its end, for each txn_new: queued (code 250, id its queue ID), refused (code and
     * check of the last refusal: of MAIL, a RCPT, or the end of the message; id NULL
     * before DATA), or given up (code 0: RSET, a new MAIL, the client left). Frees
     * txn->state. */
    void (*txn_end)(void *ctx, const struct smtp_peer *peer, const struct smtp_txn *txn,
                    const char *id, int code, const char *check);
    /* The message's header section is complete: append the header fields the layers
     * above want on top of it (after our Received:, CRLF-ended) to out, and edit the
     * client's header section hdr (*len bytes) in place, removing fields (*len set to
     * what is left). NULL: nothing. */
    void (*msg_headers)(void *ctx, const struct smtp_peer *peer, const struct smtp_txn *txn,
                        struct buf *out, char *hdr, size_t *len);
    /* The client's content as it is queued, in order: its header section (after
     * msg_headers' edits), then the body, dot-unstuffed; for checks that hash it
     * (DKIM). Not called for content that is not queued (too big). NULL: nothing. */
    void (*msg_content)(void *ctx, const struct smtp_peer *peer, const struct smtp_txn *txn,
                        const void *p, size_t len);
    /* Start storing a message of peer's; id receives its queue ID. NULL on failure. */
    void *(*msg_open)(void *ctx, const struct smtp_peer *peer, char *id, size_t idsize);
    /* Append content; 0 done, -1 failed (disk). */
    int (*msg_write)(void *msg, const void *p, size_t len);
    /* Make it durable; done(arg, ok) later: ok=1 durable and queued. msg consumed. */
    void (*msg_commit)(void *ctx, void *msg, const struct smtp_peer *peer,
                       const struct smtp_txn *txn, void (*done)(void *arg, int ok), void *arg);
    void (*msg_abort)(void *msg);
    /* Check a login (AUTH). done(arg, result) runs later, after any brute-force
     * delay: AUTH_OK, AUTH_DENIED (wrong credentials), AUTH_BLOCKED (refused for now:
     * too many failures from this address or for this account), AUTH_TEMPFAIL. */
    void *(*auth)(void *ctx, const struct smtp_peer *peer, const char *mech, const char *user,
                  const char *pass, void (*done)(void *arg, enum auth_result result), void *arg);
    void (*auth_cancel)(void *handle);
    /* The client's verified name (PTR confirmed by A/AAAA), asked before the greeting
     * when the config says reverse_dns on. done(arg, name, st, ptr) runs once, later:
     * name is the host name or "unknown", st what the lookup found, ptr the PTR name
     * (confirmed or not, "" when none). NULL lookup_name: no lookups. */
    void *(*lookup_name)(void *ctx, const struct sockaddr *sa,
                         void (*done)(void *arg, const char *name, enum rdns_status st,
                                      const char *ptr),
                         void *arg);
    void (*lookup_cancel)(void *handle);
};

struct smtp_server;
/* Bind and listen on l's address (call as root, before dropping privileges); l is
 * conf's, and the server holds a reference to conf (conf_ref()). NULL on error
 * (logged). The listener does not accept until smtp_server_start. */
struct smtp_tls;
struct smtp_server *smtp_server_new(struct event_base *base, const struct conf_listen *l,
                                    const struct kconf *conf, const struct smtp_ops *ops);
/* The TLS context for STARTTLS / implicit TLS (borrowed; NULL = no TLS). */
void smtp_server_set_tls(struct smtp_server *srv, struct smtp_tls *tls);
void smtp_server_start(struct smtp_server *srv);
/* New sessions use conf and its listener l from now on (SIGHUP): the server takes a
 * reference to conf and drops the old one. Each session holds a reference to the
 * configuration it started with, so running sessions keep theirs until they end. */
void smtp_server_set_conf(struct smtp_server *srv, const struct kconf *conf,
                          const struct conf_listen *l);
/* Stop accepting and close the listening socket. */
void smtp_server_stop(struct smtp_server *srv);
void smtp_server_free(struct smtp_server *srv);
/* Sessions open now, over all listeners. */
size_t smtp_sessions_count(void);
/* Shutdown: say 421 and close every session that is not in the middle of storing a
 * message (those close when their commit finished). */
void smtp_sessions_close_all(void);

/* --- TLS (tls.c) ------------------------------------------------------------ */

/* OpenSSL's SSL, without pulling <openssl/ssl.h> into every includer. */
typedef struct ssl_st SSL;

/* A server TLS context per listener: a default certificate and optional extra
 * certificates chosen by SNI. TLS 1.2 minimum; for TLS 1.2 only ECDHE with AES-GCM
 * or ChaCha20-Poly1305; server cipher preference; no compression, no
 * renegotiation. Keys are read here, so create contexts before dropping
 * privileges. */
struct smtp_tls;

/* Load the default certificate chain (PEM) and private key. Returns a new context,
 * or NULL with err filled ("cert.pem: no such file", "key.pem: key values
 * mismatch": file name and OpenSSL's reason). Free with smtp_tls_free. */
struct smtp_tls *smtp_tls_new(const char *cert, const char *key, char *err, size_t errsize);
/* Add another certificate. A client's SNI name picks the first certificate whose
 * SAN DNS names (or CN when there are none) match it, "*.example.org" matching one
 * label; an unknown name or no SNI gets the default (checked first, so it wins
 * ties). cert and key may name one PEM file holding both. 0 done, -1 with err
 * filled. */
int smtp_tls_add_sni(struct smtp_tls *t, const char *cert, const char *key, char *err,
                     size_t errsize);
/* The context of a listen { } block: tls_cert and tls_key, plus one certificate per
 * file matching sni_certs (a glob; each file holds certificate and key). NULL for a
 * listener without TLS, or on failure with err filled (the file and why). Read at
 * start (before the privilege drop) and again on reload. */
struct smtp_tls *smtp_tls_for_listener(const struct conf_listen *l, char *err, size_t errsize);
/* A new SSL in server mode for one connection (caller frees with SSL_free; it keeps
 * the context alive by itself). NULL on failure (OpenSSL out of memory). */
SSL *smtp_tls_ssl_new(struct smtp_tls *t);
/* NULL-safe. Running SSLs stay valid. */
void smtp_tls_free(struct smtp_tls *t);
/* Postfix-style description of an established connection for logs and Received
 * headers: "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)". Writes into
 * buf (always NUL-terminated) and returns buf. */
const char *smtp_tls_describe(SSL *ssl, char *buf, size_t size);
/* Write a new self-signed certificate for host (CN=host, SAN DNS:host, ECDSA P-256,
 * valid 2 years): certificate to certfile (0644), key to keyfile: mode 0640 with
 * group key_group (the daemon's, so that it reads the key again on SIGHUP after
 * dropping privileges), or 0600 when key_group is (gid_t)-1. Each file appears
 * whole with its final mode and group, replacing an existing one. 0 done, -1 with
 * err filled. */
int smtp_tls_selfsigned(const char *host, const char *certfile, const char *keyfile,
                        gid_t key_group, char *err, size_t errsize);

/* --- SASL helpers for AUTH (sasl.c): pure, no I/O --------------------------- */

/* RFC 4616 PLAIN message: [authzid] NUL authcid NUL passwd. Copies the three fields
 * as NUL-terminated strings (authzid "" when absent). 0 done; -1 when malformed:
 * not exactly two NULs, empty authcid or passwd, or a field not fitting its buffer. */
int smtp_sasl_plain_parse(const unsigned char *msg, size_t len, char *authzid, size_t azsize,
                          char *authcid, size_t acsize, char *passwd, size_t pwsize);

/* --- SMTP client (client.c) --------------------------------------------------
 * One outbound connection as a state machine on the loop: entering a state sends
 * its command, a reply is judged by the state it answers; with PIPELINING the
 * MAIL/RCPT/DATA group goes out at once and replies are matched in order (a send
 * and a receive cursor). The connection may carry several messages (reuse). */

enum smtp_client_tls {
    SMTP_CTLS_NONE = 0, /* never STARTTLS */
    SMTP_CTLS_MAY,      /* STARTTLS when offered; a failed handshake falls back to plain
                           on a new connection is the caller's choice */
    SMTP_CTLS_ENCRYPT,  /* STARTTLS required, certificate not checked */
    SMTP_CTLS_VERIFY,   /* STARTTLS required, certificate must verify for tls_name */
};

struct smtp_client_opts {
    const char *helo;           /* our hostname for EHLO/HELO */
    const struct sockaddr *dst; /* where to connect (port included) */
    socklen_t dstlen;
    const struct sockaddr *src; /* source address to bind, or NULL */
    socklen_t srclen;
    const char *peer_name; /* "mx.example.org" for logs, SNI and verification */
    enum smtp_client_tls tls;
    const char *ca_file;   /* for SMTP_CTLS_VERIFY; NULL = system store */
    int implicit_tls;      /* TLS from the first byte (RFC 8314 3.3, port 465), before
                              the greeting; tls NONE or MAY count as ENCRYPT */
    const char *auth_user; /* AUTH PLAIN (LOGIN fallback) when set; only ever
                              sent inside TLS */
    const char *auth_pass;
    int connect_timeout; /* seconds (RFC 5321 4.5.3.2: greeting 5m) */
    int command_timeout; /* MAIL 5m, RCPT 5m, DATA init 2m, ... simplified */
    int data_timeout;    /* data block 3m, end of data 10m */
};

/* One reply or local failure, for logs and DSNs. */
struct smtp_client_reply {
    int code;          /* 250, 550, ... ; 0 for a local/network failure */
    char enh[8];       /* "5.1.1"; derived from the code when the server gave none */
    char text[512];    /* the server's words (multi-line joined with "; "), or ours:
                          "connection timed out", "TLS handshake failed: ..." */
    const char *stage; /* static: "connect", "TLS" (implicit), "greeting", "EHLO", "STARTTLS",
                          "AUTH", "MAIL FROM", "RCPT TO", "DATA", "end of data" */
};

/* What the peer offered in its EHLO reply. */
struct smtp_client_caps {
    int esmtp, pipelining, starttls, size_given, eightbit, smtputf8, dsn, chunking;
    unsigned long long size; /* SIZE limit, 0 = none given */
    int auth_plain, auth_login;
};

/* A message to send over an established connection. */
struct smtp_client_msg {
    const char *sender;       /* "" for the null sender */
    const char *const *rcpts; /* nrcpts addresses */
    size_t nrcpts;
    const unsigned *notify;   /* per recipient SMTP_NOTIFY_* bits, or NULL */
    const char *const *orcpt; /* per recipient ORCPT ("rfc822;a@b") or NULL entries */
    const char *envid;        /* or NULL */
    enum smtp_ret ret;
    enum smtp_body body;
    int smtputf8;
    unsigned long long size; /* bytes of content, for SIZE= */
    int content_fd;          /* the message (CRLF lines): its size bytes from content_off,
                                read with pread; the client dot-stuffs it */
    long long content_off;
    int probe; /* an address verification probe: MAIL and RCPT, then RSET
                  instead of DATA; no content is read (content_fd unused) */
    /* results, filled by the client before the callback */
    struct smtp_client_reply *rcpt_reply; /* caller allocates nrcpts of them */
    struct smtp_client_reply reply;       /* the final reply to the message (end of
                                             data), or the MAIL/DATA refusal */
};

struct smtp_client;
struct smtp_client_tls_ctx; /* client SSL_CTX(s), shared by all connections */

struct smtp_client_tls_ctx *smtp_client_tls_new(char *err, size_t errsize);
void smtp_client_tls_free(struct smtp_client_tls_ctx *t);

/* Connect, read the greeting, EHLO (HELO fallback), STARTTLS as opts->tls says, EHLO
 * again, AUTH when asked. ready(arg, c, ok) runs later on the loop thread: ok=1 ready
 * for messages (smtp_client_caps() tells what the peer offers), ok=0 failed: the
 * reason is in *smtp_client_last(c); free c with smtp_client_free. opts and its
 * strings are copied. */
struct smtp_client *smtp_client_new(struct event_base *base, struct smtp_client_tls_ctx *tls,
                                    const struct smtp_client_opts *opts,
                                    void (*ready)(void *arg, struct smtp_client *c, int ok),
                                    void *arg);
const struct smtp_client_caps *smtp_client_caps(const struct smtp_client *c);
const struct smtp_client_reply *smtp_client_last(const struct smtp_client *c);
/* "mx.example.org[192.0.2.7]:25" */
const char *smtp_client_peer(const struct smtp_client *c);
/* "TLSv1.3 with cipher ..." or "" when not encrypted */
const char *smtp_client_tls_info(const struct smtp_client *c);
/* 1 when the connection is encrypted and the peer's certificate verified for
 * opts->peer_name (against opts->ca_file or the system store), in any TLS mode;
 * for logs ("Verified" / "Untrusted TLS connection"). */
int smtp_client_tls_verified(const struct smtp_client *c);

/* Send one message. done(arg, c, ok) later: ok=1 the dialogue stayed in sync (the
 * connection may carry another message; each recipient's outcome is in
 * msg->rcpt_reply[i] and msg->reply — a recipient is delivered when its RCPT got 2xx
 * and msg->reply is 2xx), ok=0 the connection is unusable (timeouts, dropped
 * connection; recipients without a final answer have code 0 and the stage). Checks
 * SIZE and SMTPUTF8 against the caps first and fails those locally (5.3.4, 5.6.7)
 * without sending. */
void smtp_client_send(struct smtp_client *c, struct smtp_client_msg *msg,
                      void (*done)(void *arg, struct smtp_client *c, int ok), void *arg);
/* RSET between messages is done by the client itself. QUIT and free; cancels any
 * callback. NULL-safe. */
void smtp_client_free(struct smtp_client *c);

#endif
