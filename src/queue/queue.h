/* queue.h: the spool on disk (spool.c, the only writer of spool/), the envelope
 * (envelope.c), the maildrop (maildrop.c) and its pickup (pickup.c), the scheduler
 * that walks the spool (sched.c) and DSNs (dsn.c). Callers get queue IDs, never paths.
 *
 * Layout under spool_dir (for admins: docs/queue.md "The spool on disk"):
 *   queue/NNNNNNNNNN.seg  segment files, numbered in the order they were made: the
 *                   messages as records appended one after the other (format in
 *                   segment.h): a message's content (our Received: header first),
 *                   its envelope ("key: value" lines as envelope.c writes them, one
 *                   "rcpt:" line per recipient with its state), each later state of
 *                   the envelope, and a removal record when it leaves the queue.
 *                   Every record has a length and a CRC-32C. New segments are
 *                   preallocated (16 MiB, or the size of a bigger message); one
 *                   fdatasync makes a whole group commit durable. The oldest segment
 *                   is deleted once no queued message has its content or latest
 *                   envelope in it. `kurier queue show ID` prints a message.
 *   queue/writer.lock     flock()ed by the one process that may append: kurierd, or
 *                   the CLI changing the queue while no daemon runs
 *   maildrop/       sendmail(1) drops files here (mode 1733), picked up by the daemon
 *   corrupt/ID.env, corrupt/ID.msg  a message whose envelope could not be read (does
 *                   not parse): written out of the segments by the scheduler, kept for
 *                   an admin as plain files; created when first needed
 * A message is in the queue iff its latest records are a content record and, after
 * it, an envelope record (not a removal). The old layout (queue/ID.msg and
 * queue/ID.env files) is imported into segments by spool_import_legacy(). */
#ifndef KURIER_QUEUE_H
#define KURIER_QUEUE_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

#define QUEUE_ID_LEN 14 /* fixed width, sortable by arrival */

enum rcpt_state {
    RCPT_ST_QUEUED = 0, /* not tried yet or deferred: will be tried */
    RCPT_ST_SENT,       /* delivered (locally or to the next hop) */
    RCPT_ST_BOUNCED,    /* failed for good */
};

struct spool_rcpt {
    char *addr;      /* where it goes (after alias expansion) */
    char *orig;      /* the address the client gave in RCPT TO */
    char *orcpt;     /* DSN ORCPT ("rfc822;a@b") or NULL */
    unsigned notify; /* SMTP_NOTIFY_* bits, 0 = not given */
    enum rcpt_state state;
    int attempts;
    time_t next_try; /* 0 = now */
    char dsn[8];     /* last enhanced status "4.2.0" or "" */
    char *diag;      /* last result text (remote reply or local reason), or NULL */
    /* added for DSNs (dsn.c) */
    char *relay;     /* last attempt's next hop "mx.example.org[192.0.2.7]:25", "local", or NULL */
    time_t last_try; /* when it was last tried, 0 = never */
    unsigned notified; /* DSN_BIT(kind) of each notice already queued for this recipient */
};

struct spool_env {
    char id[QUEUE_ID_LEN + 1];
    char *sender; /* "" for the null sender */
    time_t arrival;
    size_t size;                            /* bytes of the content */
    char *client_name, *client_addr, *helo; /* NULL for local submission */
    char *proto;                            /* "ESMTP", "ESMTPS", "ESMTPSA", "SMTP", "local" */
    char *auth_user;                        /* NULL when not authenticated */
    char *envid;                            /* DSN ENVID or NULL */
    int ret;                                /* SMTP_RET_* */
    int body;                               /* SMTP_BODY_* */
    int smtputf8;
    int held;         /* on hold: the scheduler leaves it alone */
    int delay_warned; /* a delay notice was sent */
    struct spool_rcpt *rcpts;
    size_t nrcpts;
    /* added for DSNs (dsn.c) */
    int dsn_trusted; /* the sender may get DSNs: authenticated, local submission or a client in
                        relay.trusted_networks (DESIGN.md "No backscatter"); 0 in envelopes
                        written before this field existed */
    /* added for egress pools (route_pool()) */
    char *listener; /* the listen address it came in on ("127.0.0.1:2587"), NULL: local */
    int no_forward; /* failed SPF or scored high at reception (policy_txn_no_forward()): our
                       directory's remote targets (forwards) are left out, local copies
                       delivered (docs/forwarding.md) */
};

/* --- the envelope (envelope.c: pure, no files) ------------------------------ */
void spool_env_free(struct spool_env *e); /* frees members and e; NULL-safe */
/* The envelope of a notice we write ourselves (a report, a lock notice): from the
 * null sender (it never bounces), protocol local, 7bit, to one recipient who gets no
 * DSN of it. Free with spool_env_free. */
struct spool_env *spool_env_notice(const char *to, time_t arrival);
/* A deep copy of e (every field and recipient); caller frees with spool_env_free. */
struct spool_env *envelope_dup(const struct spool_env *e);
/* Serialise / parse the envelope text. parse: 0 done, -1 bad (line number in *bad_line). */
char *spool_env_format(const struct spool_env *e);
int spool_env_parse(const char *text, size_t len, struct spool_env *out, int *bad_line);
/* Decode one value of the envelope text: "\xNN" escapes, nothing else. Reads only
 * p[0..len). A new string (caller frees), or NULL when an escape is bad, cut short or
 * decodes to NUL. */
char *spool_unescape(const char *p, size_t len);
const char *rcpt_state_name(enum rcpt_state s); /* "queued", "sent", "bounced" */

struct spool;

/* The daemon's spool: open (and create, mode 0700, maildrop 1733) the spool at dir,
 * take the writer lock (queue/writer.lock; waits up to 5 s, then fails), read the
 * segments into the index (a bad record is logged and it and the rest of its
 * segment skipped) and remove what was left in the old incoming/ folder (never
 * acknowledged). NULL on error with a message in err. */
struct spool *spool_open(const char *dir, char *err, size_t errsize);
/* Right after spool_open(): import the messages of the old layout (queue/ID.msg +
 * ID.env) into segments, durably, then remove their files; one whose envelope does
 * not read goes to corrupt/. 0 done (or nothing to import), -1 with err set. */
int spool_import_legacy(struct spool *s, char *err, size_t errsize);
/* For the CLI tools: use an existing spool without creating or changing anything;
 * read-only (spool_update and spool_remove fail with EROFS) until spool_lock(). The
 * segments are read at the first use, up to their last complete record (one the
 * running daemon is writing is left out). NULL with a message in err when dir/queue
 * is missing. */
struct spool *spool_attach(const char *dir, char *err, size_t errsize);
/* For the CLI when no daemon runs: become the spool's writer (queue/writer.lock,
 * without waiting) and read the segments anew. 0 done, -1 with err set (locked: a
 * daemon runs). Changes go to a new segment of their own. */
int spool_lock(struct spool *s, char *err, size_t errsize);
void spool_free(struct spool *s);
const char *spool_dir(const struct spool *s);
/* A new unique queue ID, sortable by arrival (microseconds + counter). */
void spool_new_id(char id[QUEUE_ID_LEN + 1]);
/* 1 when id has the form spool_new_id() gives (QUEUE_ID_LEN letters of its alphabet). */
int spool_id_valid(const char *id);

/* --- receiving a message (event-loop thread) ------------------------------ */
struct spool_msg;
/* Start a message. Its content is held in memory (beyond 256 KiB in an unnamed
 * temporary file in queue/) until the commit appends it to a segment. Never NULL. */
struct spool_msg *spool_msg_new(struct spool *s);
const char *spool_msg_id(const struct spool_msg *m);
/* Append content bytes (not on disk yet; the commit writes and flushes them).
 * 0 done, -1 failed (disk full...): the caller answers 451 4.3.0 and aborts. */
int spool_msg_write(struct spool_msg *m, const void *p, size_t len);
/* Overwrite len bytes of the content already written, at offset: a header field known
 * only at the end of the message (Authentication-Results with DKIM and DMARC) goes
 * into room written for it before, as the DKIM signer's fields do; the file is not
 * copied. 0 done; -1 outside what was written, with a signer (spool_msg_sign(): its
 * room shifts the offsets), or the write failed. */
int spool_msg_rewrite(struct spool_msg *m, size_t offset, const void *p, size_t len);
/* Commit (env->id and env->size are set here): on a worker, the content and envelope
 * records of this and the other messages waiting are appended to the current
 * segment and made durable with one fdatasync (group commit). done(arg, ok) runs on
 * the loop thread: ok=1 the message is durable (send 250), ok=0 it is not (send 451:
 * a write or the flush of its batch failed; it is not queued). m is consumed either
 * way; env stays the caller's. */
void spool_msg_commit(struct spool_msg *m, struct spool_env *env, void (*done)(void *arg, int ok),
                      void *arg);
/* Abandon the message (nothing of it was written), m freed. NULL-safe. */
void spool_msg_abort(struct spool_msg *m);

/* --- the queue, for the scheduler and the tools --------------------------- */
/* Call cb for every queued message (sorted by ID). 0 done, -1 error. */
int spool_scan(struct spool *s, void (*cb)(void *arg, const char *id), void *arg);
/* Load an envelope. NULL when missing or unreadable (err says why), with errno
 * ENOENT when there is no such message, EBADMSG when the envelope is corrupt (does
 * not parse, names another ID, or has no recipients: cut short); another errno is a
 * read error that may pass. Caller frees. */
struct spool_env *spool_load(struct spool *s, const char *id, char *err, size_t errsize);
/* Write the envelope's new state durably: an envelope record, flushed (blocking: call
 * from a worker or the CLI). 0 done, -1 failed (errno: ENOENT the message is gone,
 * EROFS an attached spool without spool_lock()). */
int spool_update(struct spool *s, const struct spool_env *env);
/* Hold (held 1) or release (held 0) the message of the loaded envelope env, for the
 * scheduler and the CLI alike: sets env->held and, on release, makes every recipient
 * due now (next_try 0), then rewrites the envelope (spool_update; blocking). 0 done,
 * 1 env is already held / not held (nothing written), -1 the rewrite failed (errno). */
int spool_set_held(struct spool *s, struct spool_env *env, int held);
/* Remove a message: a removal record. 0 done, -1 failed: errno ENOENT when there is
 * no such message (as for spool_load, also for an invalid ID). The record is not
 * flushed: after a crash the message may come back and be tried again. */
int spool_remove(struct spool *s, const char *id);
/* Where a message's content is, for the transports: bytes [off, off + len) of the
 * file fd (a segment; read them with pread). */
struct spool_content {
    int fd; /* the caller closes it; it stays readable when the message is removed */
    long long off, len;
};
/* 0 with *c filled, -1 with c->fd -1 (errno ENOENT: no such message). */
int spool_open_content(struct spool *s, const char *id, struct spool_content *c);

/* Corrupt messages (spool_load failed with EBADMSG), as Postfix's corrupt queue:
 * write the content and the envelope text to corrupt/ID.msg and corrupt/ID.env, then
 * remove the message (blocking; worker or CLI), so the scheduler stops trying it.
 * 0 done, -1 failed (errno set). */
int spool_quarantine(struct spool *s, const char *id);
/* Call cb for every message in corrupt/ (sorted by ID). 0 done (also when corrupt/
 * does not exist), -1 error. */
int spool_scan_corrupt(struct spool *s, void (*cb)(void *arg, const char *id), void *arg);
/* For the tools: about a corrupt message in corrupt/ (moved = 1) or still queued
 * (moved = 0), why its envelope does not load (into why), the size of its content
 * (0 when missing) and when its envelope last changed. 0 done, -1 no such file. */
int spool_corrupt_info(struct spool *s, const char *id, int moved, char *why, size_t whysize,
                       size_t *size, time_t *mtime);

/* --- sendmail(1) maildrop --------------------------------------------------- */
/* Write a maildrop file (envelope + content) as an unprivileged user. The file is
 * complete and fsync'd before it becomes visible. 0 done, -1 failed (err says). */
int maildrop_write(const char *spool_dir, const char *sender, char **rcpts, size_t nrcpts,
                   const char *content, size_t len, const char *user, char *err, size_t errsize);
/* The maildrop file format: "sender: <a@b>", one "rcpt: <x@y>" per recipient and
 * "user: NAME" (claimed by the submitter) lines, an empty line, then the message
 * with CRLF line ends, not dot-stuffed. Names are "ID.RANDOM" (unguessable: the
 * files are world-readable so the daemon can read them, the directory is not).
 *
 * For the pickup (daemon, blocking: run on a worker). List the complete files
 * (names sorted, so oldest first): 0 with *names (caller frees with
 * maildrop_list_free) and *n set, -1 when the directory cannot be read. */
int maildrop_list(const char *spool_dir, char ***names, size_t *n);
void maildrop_list_free(char **names, size_t n);
struct maildrop_file {
    struct spool_env *env; /* sender and rcpts (addr = orig), proto "local",
                              arrival = file mtime; size = content bytes */
    char *user;            /* the "user:" line as claimed, or NULL */
    unsigned uid;          /* the file's owner: who really submitted it */
    int fd;                /* read-only, positioned at the content */
    long long offset;      /* where the content starts in the file */
    /* an imported message (a transfer file, below): the node it came from and its
       queue ID there; NULL for sendmail's files */
    char *origin_node, *origin_id;
};
/* Open and parse one file. Refuses symlinks, hard links and non-regular files, and
 * addresses that SMTP's MAIL FROM / RCPT TO parser would refuse, and source routes
 * (sendmail never writes them): err names the line.
 * 0 done (close with maildrop_close), -1 bad or unreadable (err says; a bad file
 * should be moved aside or removed by the caller). */
int maildrop_open(const char *spool_dir, const char *name, struct maildrop_file *out, char *err,
                  size_t errsize);
void maildrop_close(struct maildrop_file *f);
/* Imported messages ("kurier queue import", queue/transfer.h): a transfer file starts
 * with the line "transfer: NODE ID" (the node it came from, its queue ID there), then
 * the whole envelope in the spool's format (spool_env_format: recipients with their
 * states, DSN fields, arrival, held...), an empty line and the content as it was
 * queued (taken as it is: no Received: header, no line-end change, no signature).
 * maildrop_open honours it only from root or the daemon's own user (env as written,
 * origin_* set); from anyone else it is a bad file. sendmail's files never start so.
 *
 * Writing one (CLI, blocking): created hidden as maildrop/.import-NAME, so the pickup
 * does not see it until published. new: NULL with err set; write/close/publish: 0
 * done, -1 failed (err). close fsyncs; publish renames it into place (call
 * maildrop_sync after the last one); free removes it unless published (NULL-safe). */
struct maildrop_out;
struct maildrop_out *maildrop_transfer_new(const char *spool_dir, const char *node,
                                           const struct spool_env *env, char *err, size_t errsize);
int maildrop_out_write(struct maildrop_out *o, const void *p, size_t n, char *err, size_t errsize);
int maildrop_out_close(struct maildrop_out *o, char *err, size_t errsize);
int maildrop_out_publish(struct maildrop_out *o, char *err, size_t errsize);
void maildrop_out_free(struct maildrop_out *o);
/* fsync the maildrop folder (after publishing). 0 done, -1 failed (errno). */
int maildrop_sync(const char *spool_dir);
/* Remove a picked-up file (after the spool commit said ok). 0 done, -1 failed. */
int maildrop_remove(const char *spool_dir, const char *name);
/* Maildrop content with every line ending made CRLF: a bare LF or a bare CR ends a
 * line as CRLF does (RFC 5321 2.3.8), so no bare CR or LF reaches the spool and the
 * next hop (a bare CR before "." is read as end of data by some servers). New string
 * (caller frees), its length in *outlen. */
char *maildrop_crlf(const char *p, size_t len, size_t *outlen);

/* --- maildrop pickup (pickup.c: daemon only, event-loop thread) ------------- */
struct event_base;
struct kconf;
struct pickup;
/* Pick up maildrop files into s: a scan every conf->maildrop_scan seconds (default 5),
 * on pickup_now(), and at once after a scan that queued files but left more behind.
 * A worker lists and reads the files (at most 100 a scan, each
 * within conf->message_size; a bad one is moved aside as .bad-NAME); on the loop each
 * becomes a new message (our Received: header naming the file's owner, proto "local",
 * dsn_trusted 1; a transfer file's message as it came, see above) committed through
 * the spool, its file removed once durable, then queued(arg, id) runs on the loop
 * thread. conf and s are borrowed. NULL when the
 * timer cannot be created. */
struct pickup *pickup_new(struct event_base *base, const struct kconf *conf, struct spool *s,
                          void (*queued)(void *arg, const char *id), void *arg);
/* Use a new configuration from the next scan on (the timer interval at once). */
void pickup_set_conf(struct pickup *p, const struct kconf *conf);
/* Scan now, unless a scan or its commits are still in progress. */
void pickup_now(struct pickup *p);
/* Stop: cancels a running scan. Commits already handed to the spool finish and
 * remove their files, but queued is not called any more. NULL-safe. */
void pickup_free(struct pickup *p);

/* --- the scheduler (daemon only, event-loop thread) ----------------------- */
struct event_base;
struct kconf;
struct store;
struct queue;
/* The queue holds a reference to conf (conf_ref()), and each job one to the
 * configuration it started with. */
struct queue *queue_new(struct event_base *base, const struct kconf *conf, struct spool *s,
                        struct store *st);
void queue_free(struct queue *q);
/* Use a new configuration (after a reload) for the jobs started from now on: takes a
 * reference to conf and drops the old one; running jobs keep theirs. */
void queue_set_conf(struct queue *q, const struct kconf *conf);
/* The remote transport (deliver/remote.c) for recipients outside our
 * domains; borrowed, set once before the loop runs. Without it they stay queued
 * ("remote delivery is not available yet"). A message's due remote recipients are
 * grouped by domain, one remote_deliver() per domain, on the loop thread. */
struct remote;
void queue_set_remote(struct queue *q, struct remote *r);
/* A message was committed: schedule it now. */
void queue_add(struct queue *q, const char *id);
/* A new message was accepted (received over SMTP or picked up): hand it to the intake
 * hook when one is set (which calls queue_add() when done with it), else queue_add(). */
void queue_accept(struct queue *q, const char *id);
/* The intake hook (abuse/complaints.c reads each accepted message first); NULL: none.
 * Set once before the loop runs. */
void queue_set_intake(struct queue *q, void (*intake)(void *arg, const char *id), void *arg);
/* Retry every deferred recipient now ("kurier queue flush"). */
void queue_flush(struct queue *q);
/* The metrics collector (metrics_set_collector(queue_metrics, q)): sets the queue
 * gauges, messages by state and by age. Loop thread. */
void queue_metrics(void *q);
/* Tools through the control socket: 0 done, -1 no such message. */
int queue_delete(struct queue *q, const char *id); /* id "ALL" deletes everything */
int queue_hold(struct queue *q, const char *id);
/* Release; also 1: the message is not held. env_held is what its envelope says (read
 * off the loop, on a worker: spool_load() blocks); it counts only while the scheduler
 * has not read or changed "held" itself since the start. Loop thread, never blocks. */
int queue_release(struct queue *q, const char *id, int env_held);
/* Pick up maildrop files now (also done on a timer). */
void queue_pickup(struct queue *q);

/* --- delivery status notifications (dsn.c) --------------------------------
 * RFC 3464 reports to the sender: a bounce when recipients failed for good, a delay
 * notice while they are still retried, and a success report when NOTIFY=SUCCESS asked
 * for one. Each is multipart/report; report-type=delivery-status with (1) a text/plain
 * part in conf->locale ("en" or "de") that quotes the remote server (name, IP, the
 * command it answered, its words) and says in plain words what the problem means and
 * what the sender can do, (2) message/delivery-status, (3) the original headers
 * (text/rfc822-headers), or the whole message (message/rfc822) for a bounce when the
 * client asked RET=FULL. DSNs go only to trusted senders and never to <>, so kurier
 * is never a backscatter source (DESIGN.md). docs/dsn.md tells what senders see. */
struct spool;
enum dsn_kind { DSN_FAILED = 0, DSN_DELAYED, DSN_DELIVERED };
#define DSN_BIT(kind) (1u << (kind)) /* for spool_rcpt.notified */

/* Build the whole DSN message (headers and body, CRLF line ends) about the recipients
 * env->rcpts[idx[0..n)], from MAILER-DAEMON@conf->hostname to env->sender. Reads the
 * original's headers (or all of it for RET=FULL) from content with pread (NULL: none
 * available; the part then says so). Blocking read: call on a worker, or in tests.
 * Does not check dsn_allowed or dsn_wanted. Returns a new NUL-terminated string (*len
 * its length), caller frees; NULL when n == 0 or an index is out of range. */
char *dsn_build(const struct kconf *conf, const struct spool_env *env,
                const struct spool_content *content, enum dsn_kind kind, const size_t *idx,
                size_t n, size_t *len);
/* 1 when recipient r asked for (or by default gets) this kind of notice (RFC 3461
 * 4.1): NOTIFY=NEVER none; NOTIFY given: only the kinds named; NOTIFY absent: failure
 * and delay notices, no success reports. Also 0 when r->notified has the kind. */
int dsn_wanted(const struct spool_rcpt *r, enum dsn_kind kind);
/* 1 when env's sender may receive DSNs, else 0 with *why (static) set to "null sender"
 * (never answer a bounce) or "untrusted sender" (env->dsn_trusted is 0: the sender
 * address may be forged, a DSN could be backscatter). why may be NULL. The caller
 * logs the refusal, e.g. "ID: sender non-delivery notification suppressed
 * (untrusted sender)" with dsn_kind_notice(). The rule is policy_dsn_allowed()'s. */
int dsn_allowed(const struct spool_env *env, const char **why);
/* "non-delivery", "delay", "delivery status": Postfix's names in log lines
 * "ID: sender non-delivery notification: NEWID". */
const char *dsn_kind_notice(enum dsn_kind kind);
/* The recipients that still owe a notice of this kind: state BOUNCED (DSN_FAILED),
 * QUEUED (DSN_DELAYED) or SENT (DSN_DELIVERED), and dsn_wanted() (so not yet
 * notified). Writes their indexes to idx (room for env->nrcpts) and returns how
 * many. Does not check dsn_allowed. For the scheduler: a message whose recipients
 * are all final stays in the spool while this is non-zero for DSN_FAILED (and
 * dsn_allowed), so a crash before the bounce is durable never loses it. */
size_t dsn_pending(const struct spool_env *env, enum dsn_kind kind, size_t *idx);

struct dsn_req;
/* Queue a DSN (event-loop thread). Keeps those of env->rcpts[idx[0..n)] for which
 * dsn_wanted() says yes; builds the DSN on a worker (content from the spool by
 * env->id), then commits it into s as a new message from <> to env->sender
 * (proto "local", dsn_trusted 0, NOTIFY=NEVER: a bounce never bounces) and logs
 * "ID: sender non-delivery notification: NEWID". env and idx are copied; the request
 * holds a reference to conf until it ends.
 * Returns a handle, or NULL when nothing was queued (dsn_allowed says no, no
 * recipient wants this notice): then done never runs.
 * done(arg, new_id) runs once on the loop thread: new_id is the DSN's queue ID (now
 * durable; the caller passes it to queue_add() and may then record DSN_BIT(kind) in
 * the recipients' notified), or NULL when it could not be queued (logged here). */
struct dsn_req *dsn_queue(struct spool *s, const struct kconf *conf, const struct spool_env *env,
                          enum dsn_kind kind, const size_t *idx, size_t n,
                          void (*done)(void *arg, const char *new_id), void *arg);
/* Forget a request whose done has not run yet: done will not run (call from the
 * owner's _free). A DSN already handed to the spool is still committed; the next start
 * of the daemon finds it in the queue. NULL-safe. */
void dsn_cancel(struct dsn_req *r);

#endif
