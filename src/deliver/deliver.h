/* deliver.h: transports, one result type for all: Maildir delivery (maildir.c,
 * blocking, on a worker thread) and remote SMTP delivery (remote.c, asynchronous, on
 * the loop thread). Where mail goes is route/'s decision. */
#ifndef KURIER_DELIVER_H
#define KURIER_DELIVER_H

#include <stddef.h>

enum deliver_status { DELIVER_OK = 0, DELIVER_TEMP, DELIVER_PERM };

struct deliver_result {
    enum deliver_status status;
    char dsn[8];       /* "2.0.0", "4.2.2", "5.1.1" */
    char text[512];    /* "delivered to maildir", or the reason / remote reply */
    char relay[300];   /* "local", "mx.example.org[192.0.2.7]:25" */
    int code;          /* remote reply code, 0 for local results */
    const char *stage; /* static: the command the remote answered ("RCPT TO"), or NULL */
};

struct deliver_maildir_req {
    const char *root;        /* maildir_root */
    const char *address;     /* mailbox local@domain */
    long long quota;         /* bytes, 0 = none */
    const char *return_path; /* envelope sender, "" for <> */
    const char *orig_rcpt;   /* for Delivered-To: the mailbox address */
    int content_fd;          /* the queued message, read from offset 0 (pread) */
    const char *hostname;    /* for the unique file name */
    unsigned uid, gid;       /* owner of created dirs/files when running as root; 0 = keep */
};

/* Deliver one copy into <root>/<domain>/<local>/Maildir: write tmp/, fsync, link or
 * rename into new/, fsync new/. Adds "Return-Path:" and "Delivered-To:" on top.
 * Creates the Maildir (cur, new, tmp) when missing. Quota full -> DELIVER_TEMP 4.2.2
 * (over quota for good after the lifetime). Returns res->status. */
enum deliver_status deliver_maildir(const struct deliver_maildir_req *req,
                                    struct deliver_result *res);

/* --- remote delivery (remote.c): asynchronous, on the loop thread -----------------
 * Where a remote recipient goes is route/'s decision (route_next, route_mx: sender
 * relay with its login, transport, relay_host with fallbacks, else the domain's MX
 * hosts by preference, its A/AAAA as implicit MX; null MX 5.1.10, loops 5.4.6).
 * remote.c looks up the sender's relay route on a worker, the MX in dns/, tries the
 * hops in turn and each host's addresses (IPv4 then IPv6); connections are reused
 * per destination, with a per-destination concurrency limit.
 * Egress pools (docs/egress.md): the mail's pool (route_pool()) gives each
 * connection its source address (egress_pick(): by weight, skipping addresses
 * benched for that host's organisation) and EHLO name; connections are reused per
 * destination and source. A reply that says our address is blocklisted (even 5xx)
 * benches it for the receiver and the refused recipients go again at once from
 * another address; when none is left the pool's fallback decides (another pool,
 * a relay, or DELIVER_TEMP "all our sending addresses are blocked by ..."). */

struct dns;
struct store;
struct kconf;
struct event_base;
struct remote;

struct remote_job {
    /* input (borrowed until done runs) */
    const char *id;     /* queue ID, for logs */
    const char *sender; /* "" for the null sender */
    const char *domain; /* the recipients' domain (one job, one domain) */
    const char *const *rcpts;
    size_t nrcpts;
    const unsigned *notify;   /* SMTP_NOTIFY_* per recipient, or NULL */
    const char *const *orcpt; /* or NULL */
    const char *envid;
    int ret, body, smtputf8; /* SMTP_RET_*, SMTP_BODY_* */
    /* which egress pool (route_pool()): the sender's login and the listen address the
     * mail came in on, or NULL */
    const char *auth_user, *listener;
    int content_fd;
    unsigned long long size;
    /* output: one per recipient, filled before done runs */
    struct deliver_result *results;
};

/* The remote holds a reference to conf (conf_ref()), and each request one to the
 * configuration it started with. */
struct remote *remote_new(struct event_base *base, const struct kconf *conf, struct dns *dns,
                          struct store *st);
/* Requests started from now on use conf (a reload): takes a reference to it and
 * drops the old one; running requests keep theirs. */
void remote_set_conf(struct remote *r, const struct kconf *conf);
void remote_free(struct remote *r); /* cancels every job: no done runs */

struct remote_req;
/* Deliver job; done(arg) runs on the loop thread when every result is filled
 * (never before remote_deliver returns). Temporary problems (DNS, connection, 4xx)
 * give DELIVER_TEMP with the reason; 5xx gives DELIVER_PERM. */
struct remote_req *remote_deliver(struct remote *r, struct remote_job *job, void (*done)(void *arg),
                                  void *arg);
void remote_cancel(struct remote_req *q);

#endif
