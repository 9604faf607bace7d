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
    int content_fd;          /* the queued message: content_len bytes from content_off */
    long long content_off, content_len;
    const char *hostname; /* for the unique file name */
    unsigned uid, gid;    /* owner of created dirs/files when running as root; 0 = keep */
};

/* Deliver one copy into <root>/<domain>/<local>/Maildir: deliver_maildir_write, then
 * deliver_maildir_commit of that one copy. Returns res->status. */
enum deliver_status deliver_maildir(const struct deliver_maildir_req *req,
                                    struct deliver_result *res);

/* Local delivery in two steps, so that copies written close together share their
 * flushes (group commit, as the spool's batch):
 * deliver_maildir_write writes one copy into the Maildir's tmp/ (not yet durable),
 * with "Return-Path:" and "Delivered-To:" on top, creating the Maildir (cur, new,
 * tmp) when missing. Returns a pending copy (owned by the caller until it is given
 * to deliver_maildir_commit), with res saying DELIVER_TEMP "not committed" until
 * then; or NULL with res filled: quota full DELIVER_TEMP 4.2.2 (over quota for good
 * after the lifetime), a write error (full disk) DELIVER_TEMP 4.3.0, a bad address
 * DELIVER_PERM 5.1.3. res must stay valid until the commit returns. */
struct maildir_put;
struct maildir_put *deliver_maildir_write(const struct deliver_maildir_req *req,
                                          struct deliver_result *res);
/* Make n pending copies durable and move them into new/, then free them. Blocks
 * (a worker): joins the batch shared by every worker thread committing at the same
 * time (one syncfs() per file system, or fdatasync per file for a batch of one copy
 * and on kernels before 5.8; link into new/; one fsync per distinct new/). Each
 * copy's res is DELIVER_OK "delivered to maildir", or DELIVER_TEMP 4.3.0 when its
 * batch's flush failed (every copy of that batch) or its own link or new/ fsync did. */
void deliver_maildir_commit(struct maildir_put **puts, size_t n);

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

/* What a sender's remote delivery needs from the directory: its relay route (the
 * login the hops borrow), MAIL FROM signed with BATV or rewritten with SRS. */
struct remote_sender {
    int ready; /* looked up (remote_sender_lookup()) */
    struct store_relay *relay;
    int relay_rc;
    char *batv_sender; /* or NULL */
    char *srs_sender;  /* or NULL */
};

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
    int batv_sign;           /* the sender is one of our users (spool_env.dsn_trusted): MAIL FROM
                                carries it signed when its domain has BATV (core/batv.h) */
    /* which egress pool (route_pool()): the sender's login and the listen address the
     * mail came in on, or NULL */
    const char *auth_user, *listener;
    int forward;    /* the recipients are forward targets of our directory (aliases,
                       mailbox forwards, reverse SRS): a sender not in our domains
                       is rewritten with SRS when srs { } is on (core/srs.h) */
    int content_fd; /* size bytes from content_off */
    long long content_off;
    unsigned long long size;
    /* looked up already on a worker (remote_sender_lookup()), or NULL: remote_deliver()
     * takes what it holds over instead of handing the lookup to a worker itself */
    struct remote_sender *pre;
    /* output: one per recipient, filled before done runs */
    struct deliver_result *results;
};

/* Worker thread: look up what remote_deliver() needs for job's sender (job->sender,
 * batv_sign, forward), with the directory st and the configuration conf, into out
 * (ready set). Free with remote_sender_clear() unless remote_deliver() took it. */
void remote_sender_lookup(struct store *st, const struct kconf *conf, const struct remote_job *job,
                          struct remote_sender *out);
void remote_sender_clear(struct remote_sender *s);

/* The remote holds a reference to conf (conf_ref()), and each request one to the
 * configuration it started with. */
struct remote *remote_new(struct event_base *base, const struct kconf *conf, struct dns *dns,
                          struct store *st);
/* Requests started from now on use conf (a reload): takes a reference to it and
 * drops the old one; running requests keep theirs. */
void remote_set_conf(struct remote *r, const struct kconf *conf);
void remote_free(struct remote *r); /* cancels every job: no done runs */
/* Tell fn about the answers remote servers gave to each message's recipients (for the
 * abuse signals): account is the job's auth_user (only jobs with one are told), id its
 * queue ID, replies the recipients that got an answer, unknown those answered
 * user-unknown, blocked those answered that our address is blocklisted (egress
 * reply classifier). Runs on the loop thread from a reply's handling; fn NULL stops. */
void remote_set_observer(struct remote *r,
                         void (*fn)(void *arg, const char *account, const char *id, size_t replies,
                                    size_t unknown, size_t blocked),
                         void *arg);

struct remote_req;
/* Deliver job; done(arg) runs on the loop thread when every result is filled
 * (never before remote_deliver returns). Temporary problems (DNS, connection, 4xx)
 * give DELIVER_TEMP with the reason; 5xx gives DELIVER_PERM. */
struct remote_req *remote_deliver(struct remote *r, struct remote_job *job, void (*done)(void *arg),
                                  void *arg);
void remote_cancel(struct remote_req *q);

/* --- address verification probes (probe.c): asynchronous, on the loop thread -----
 * Does the next hop take an address? A connection, EHLO (STARTTLS as the hop's tls
 * says), MAIL FROM:<>, RCPT TO:<address>, RSET, QUIT: no message is sent. Probes to
 * one host (name and port) at once are limited to verify { concurrency }; more wait
 * for a slot. The whole probe, waiting included, ends within verify { timeout }. */

struct prober;
struct probe_req;

enum probe_status {
    PROBE_OK = 0,  /* the host took the address (2xx to RCPT) */
    PROBE_REFUSED, /* the host refused it for good (5xx to RCPT) */
    PROBE_TEMP,    /* no judgement: 4xx, 5xx before RCPT, no connection, timeout, DNS */
};

struct probe_result {
    enum probe_status status;
    int code;        /* the reply code to RCPT (or of the last refusal), 0 when none */
    char text[600];  /* OK/REFUSED: the host's reply "550 5.1.1 text"; TEMP: why */
    char relay[300]; /* "mx.example.org[192.0.2.7]" that answered, "" when none did */
};

/* dns is borrowed and must outlive the prober. */
struct prober *prober_new(struct event_base *base, struct dns *dns);
/* Cancels every probe (no done runs). NULL-safe. */
void prober_free(struct prober *p);
/* Probe address (local@domain) at the next hop of its domain: with mx_only 0 as
 * route_next() says for a message to it with the null sender (a transport's relay
 * hosts, relay_host, or the MX), with mx_only 1 at the domain's own MX hosts. Hosts
 * are tried in turn while they cannot be reached or refuse to talk. conf is the
 * caller's (the probe holds a reference). done(arg, res) runs once on the loop
 * thread, never before probe_start returns, unless probe_cancel comes first. */
struct probe_req *probe_start(struct prober *p, const struct kconf *conf, const char *address,
                              int mx_only, void (*done)(void *arg, const struct probe_result *res),
                              void *arg);
/* Stop a probe: its connection is closed, its slot freed, done never runs. NULL-safe. */
void probe_cancel(struct probe_req *q);

#endif
