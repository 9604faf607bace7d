/* store.h: the directory (domains, mailboxes, aliases, credentials) and policy
 * state. Backends: SQLite, embedded (store/sqlite.c); the directory can go to PostgreSQL
 * (store/dir_pg.c, store_attach_postgres()) and the policy state several nodes share to
 * Redis (store/state_redis.c, store_attach_redis()). All calls block briefly:
 * the daemon calls them from worker threads (core/work.h), the CLI directly. One
 * struct store may be used from several threads (SQLite serialized mode). */
#ifndef KURIER_STORE_H
#define KURIER_STORE_H

#include <stddef.h>

#include "core/auth_result.h"

struct store;

/* Open the directory database at path; create the file and schema when create is
 * set. owner: when non-NULL and running as root, chown the database files to that
 * user so the daemon can use them after dropping privileges.
 * NULL on error with err filled. */
struct store *store_open(const char *path, int create, const char *owner, char *err,
                         size_t errsize);
void store_free(struct store *st);
/* Keep the directory (domains, mailboxes, aliases, sender grants, relay routes) in the
 * PostgreSQL database named by conninfo (a libpq connection string) from now on; the
 * SQLite file stays open for this node's policy state. Creates the schema when it can
 * connect; an unreachable server is only logged (each directory call then fails with a
 * database error until it answers again: lookups tempfail, docs/postgres.md). -1 with err
 * filled when conninfo does not parse. Call before the store is shared between threads. */
int store_attach_postgres(struct store *st, const char *conninfo, char *err, size_t errsize);
/* "postgres" or "sqlite": where the directory calls go. */
const char *store_directory_backend(const struct store *st);

/* Every function below returns 0 done, -1 failed with err filled ("no such domain
 * example.org", "mailbox demo@example.test exists", database errors), unless it says
 * otherwise. Domains and local parts are compared case-insensitively, as every
 * mailbox provider does (stored lowercased). */

struct store_domain {
    char name[256];
    char catchall[320]; /* "" = none: mail to unknown users is refused at RCPT */
};
int store_domain_add(struct store *st, const char *name, char *err, size_t errsize);
int store_domain_del(struct store *st, const char *name, char *err, size_t errsize);
/* catchall: local part or full address that receives mail for unknown users; ""
 * or NULL turns it off. */
int store_domain_set_catchall(struct store *st, const char *name, const char *catchall, char *err,
                              size_t errsize);
/* 1 found (out filled when non-NULL), 0 not found, -1 error. */
int store_domain_get(struct store *st, const char *name, struct store_domain *out);
int store_domain_list(struct store *st, void (*cb)(void *arg, const struct store_domain *d),
                      void *arg);

struct store_mailbox {
    char address[320]; /* local@domain, lowercased */
    long long quota;   /* bytes, 0 = unlimited */
};
/* password is hashed with crypt(3) (yescrypt "$y$", the Debian 12 default; Dovecot
 * reads it as {CRYPT}). The domain must exist. */
int store_mailbox_add(struct store *st, const char *address, const char *password, long long quota,
                      char *err, size_t errsize);
int store_mailbox_del(struct store *st, const char *address, char *err, size_t errsize);
int store_mailbox_passwd(struct store *st, const char *address, const char *password, char *err,
                         size_t errsize);
int store_mailbox_set_quota(struct store *st, const char *address, long long quota, char *err,
                            size_t errsize);
/* 1 found, 0 not found, -1 error. */
int store_mailbox_get(struct store *st, const char *address, struct store_mailbox *out);
/* As store_mailbox_get, but only an active mailbox counts (route.c uses it):
 * 1 found and active, 0 not found or disabled, -1 error. */
int store_mailbox_lookup(struct store *st, const char *address, struct store_mailbox *out);
int store_mailbox_list(struct store *st, const char *domain /* NULL = all */,
                       void (*cb)(void *arg, const struct store_mailbox *m), void *arg);
/* The directory as a credential backend (auth/auth.c asks it on a worker): AUTH_OK
 * password matches, AUTH_DENIED does not (or no such or disabled mailbox),
 * AUTH_TEMPFAIL database error. Constant effort whether or not the mailbox exists (a
 * dummy hash is checked). */
enum auth_result store_mailbox_auth(struct store *st, const char *address, const char *password);

/* A mailbox as stored, for kurier directory export|import: the password hash itself
 * (crypt(3) "$y$...", or "!" for a mailbox without a password) and whether it is active. */
struct store_mailbox_row {
    char address[320];
    char hash[256];
    long long quota;
    int active;
};
/* Each mailbox with its hash, ordered by domain and address; cb runs inside the call (the
 * hash is wiped after it). 0 done, -1 database error. */
int store_mailbox_dump(struct store *st, void (*cb)(void *arg, const struct store_mailbox_row *m),
                       void *arg);
/* Insert m, or replace the hash, quota and active flag of the mailbox with its address.
 * Errors: invalid address or hash, "no such domain ...", database errors. */
int store_mailbox_load(struct store *st, const struct store_mailbox_row *m, char *err,
                       size_t errsize);

/* Aliases: source address -> target address (local mailbox, another alias, or an
 * external address once outbound delivery exists). Several rows per source. */
int store_alias_add(struct store *st, const char *source, const char *target, char *err,
                    size_t errsize);
/* target NULL: delete every target of source. */
int store_alias_del(struct store *st, const char *source, const char *target, char *err,
                    size_t errsize);
/* Targets of source into a new array of new strings (*n set). 1 found, 0 none, -1
 * error. Free with store_strv_free(). */
int store_alias_get(struct store *st, const char *source, char ***targets, size_t *n);
int store_alias_list(struct store *st,
                     void (*cb)(void *arg, const char *source, const char *target), void *arg);
void store_strv_free(char **v, size_t n);

/* --- sender binding (policy/sender_login.c, docs/directory.md) ----------------
 * An authenticated user may use as envelope sender and in From:/Sender: only the
 * addresses they own: their mailbox, alias sources that reach it, and grants. */

/* Grant user (an existing mailbox) the right to send as grant: a full address
 * "local@domain" or a whole domain "@domain"; neither needs to be local (a user may
 * send as their address at another provider). Removed with the mailbox. Errors:
 * "no such mailbox ...", "grant ... exists", invalid input. */
int store_grant_add(struct store *st, const char *user, const char *grant, char *err,
                    size_t errsize);
/* Errors: "no such grant user -> grant". */
int store_grant_del(struct store *st, const char *user, const char *grant, char *err,
                    size_t errsize);
/* Each grant of user (NULL = every user), ordered by user and grant; cb runs inside
 * the call with strings borrowed for the call. 0 done, -1 database error. */
int store_grant_list(struct store *st, const char *user,
                     void (*cb)(void *arg, const char *user, const char *grant), void *arg);
/* Set a domain's binding mode: "enforce" (the default: refuse addresses the user
 * does not own), "log" (accept, log a warning) or "off". */
int store_domain_set_binding(struct store *st, const char *domain, const char *mode, char *err,
                             size_t errsize);
/* The binding mode of domain: 0 enforce, 1 log, 2 off, -1 database error. A domain
 * we do not host gets 0 (enforce). The policy check asks for the domain of the
 * AUTHENTICATED USER, whatever the sender address's domain. */
int store_domain_binding(struct store *st, const char *domain);
/* Whether user may send as address (both compared case-insensitively): 1 owned, 0
 * not, -1 database error. Owned: the null sender "" (bounces from clients are rare
 * but legal); address equal to user; an alias source whose targets reach user
 * directly or through other aliases (up to 10 levels, as routing expands them);
 * a grant equal to address; a grant "@domain" for address's domain. A catch-all
 * grants nothing. */
int store_sender_owned(struct store *st, const char *user, const char *address);

/* --- relay routes (deliver/remote.c, docs/outbound.md) -------------------------
 * Mail from a sender ("user@domain") or a whole sender domain ("@domain") goes
 * through the given relay hosts, with the customer's login there. The password is
 * stored as given (it must be sent) and never logged; the file is mode 0660. */
struct store_relay {
    char match[321];    /* "user@domain" or "@domain", lowercased */
    char hosts[1024];   /* "HOST[:PORT][,HOST[:PORT]...]", first reachable wins */
    char username[256]; /* "" = no AUTH */
    char password[256];
    char tls[16]; /* "" (default: encrypt with credentials), "none", "may", "encrypt",
                     "verify", "implicit" (port 465) */
};
/* Add, or replace the route of match. hosts: "HOST[:PORT][,HOST[:PORT]...]", checked by
 * conf_hostlist_check(). Errors: invalid match, hosts or tls, only one
 * of username and password. */
int store_relay_add(struct store *st, const char *match, const char *hosts, const char *username,
                    const char *password, const char *tls, char *err, size_t errsize);
/* Errors: "no relay route for MATCH". */
int store_relay_del(struct store *st, const char *match, char *err, size_t errsize);
/* The route for an envelope sender: its exact address first, then "@domain".
 * 1 found (out filled), 0 none (also for the null sender), -1 database error. */
int store_relay_get(struct store *st, const char *sender, struct store_relay *out);
/* Every route ordered by match; cb runs inside the call. 0 done, -1 database error. */
int store_relay_list(struct store *st, void (*cb)(void *arg, const struct store_relay *r),
                     void *arg);

/* --- greylisting state (policy/greylist.c, docs/inbound.md) ---------------------
 * The interface a shared store (Redis) would implement too: one call judges a
 * triplet atomically, one purges expired entries. Times are Unix seconds. */
struct store_grey_params {
    int delay;          /* seconds a new triplet must wait before a retry passes */
    int retry_window;   /* seconds after the delay within which the retry must come */
    int lifetime;       /* seconds a passed triplet, or a network's passes, are kept */
    int auto_allowlist; /* passed triplets after which a network passes at once; 0 off */
};
struct store_grey_result {
    int greylisted;      /* 1: refuse for now */
    int wait;            /* greylisted: seconds until a retry passes */
    int net_allowlisted; /* passed because the network is auto-allowlisted */
    int first_pass;      /* passed now for the first time (the retry after the delay) */
};
/* Judge the triplet (net: the client's /24 or /64 as text; sender "" for the null
 * sender; both addresses compared case-insensitively) at time now, and record it: a
 * new triplet (or one retried after delay + retry_window, or unseen for lifetime) is
 * greylisted for delay; a retry before the delay is greylisted for the rest; a retry
 * after it passes and counts for the network; a passed triplet passes. With
 * auto_allowlist N, a network that passed N triplets (within lifetime) passes. 0 done
 * (out filled), -1 database error. */
int store_grey_check(struct store *st, const char *net, const char *sender, const char *rcpt,
                     const struct store_grey_params *p, long long now,
                     struct store_grey_result *out);
/* Delete triplets never retried within delay + retry_window, and passed triplets and
 * networks unseen for lifetime. 0 done, -1 database error. */
/* --- egress benches (egress/bench.c, docs/egress.md) -------------------------------
 * A source address out of service for a destination ("" = every destination).
 * put: insert or replace (addr, dest). del: dest NULL removes every row of addr.
 * list: every row, cb once each (borrowed strings). 0 done, -1 database error. */
int store_egress_bench_put(struct store *st, const char *addr, const char *dest, const char *reason,
                           long long since, long long until);
int store_egress_bench_del(struct store *st, const char *addr, const char *dest);
int store_egress_bench_list(struct store *st,
                            void (*cb)(void *arg, const char *addr, const char *dest,
                                       const char *reason, long long since, long long until),
                            void *arg);

int store_grey_purge(struct store *st, const struct store_grey_params *p, long long now);

/* Administration (kurier greylist). One triplet or network as stored. */
struct store_grey_triplet {
    const char *net, *sender, *rcpt; /* borrowed for the callback; sender "" = null sender */
    long long first_seen, last_seen;
    int passed;
};
struct store_grey_net {
    const char *net; /* borrowed for the callback */
    long long passes, last_seen;
};
/* Call triplet() for each triplet (by network, sender, recipient), then net() for
 * each network with passed retries (by network). 0 done, -1 database error. */
int store_grey_list(struct store *st,
                    void (*triplet)(void *arg, const struct store_grey_triplet *t),
                    void (*net)(void *arg, const struct store_grey_net *n), void *arg);
/* Forget entries: triplets whose network is net (when non-NULL) and whose sender is
 * sender (when non-NULL; compared case-insensitively, "" = null sender), and with
 * net given and no sender, that network's passes too; both NULL: everything. A
 * forgotten triplet is new again (greylisted at its next attempt). *ntriplets and
 * *nnets get the numbers deleted. 0 done, -1 database error. */
int store_grey_clear(struct store *st, const char *net, const char *sender, long *ntriplets,
                     long *nnets);
/* Let the network net pass at once, as an auto-allowlisted one (passes set to at
 * least `passes`, last seen now): it stays allowed while auto_allowlist is on and
 * mail comes within lifetime. 0 done, -1 database error. */
int store_grey_allow(struct store *st, const char *net, long long passes, long long now);

/* --- blocklist monitoring (egress/monitor.c, docs/egress.md) --------------------
 * The state of each of our egress addresses on each DNS list it is looked up in,
 * and the history of changes. States are "listed", "clear" or "unknown". */
struct store_listing {
    char address[64];      /* "192.0.2.10", "2001:db8::10" */
    char zone[254];        /* the list: "bl.spamcop.net" */
    char state[16];        /* "listed", "clear", "unknown" */
    char previous[16];     /* history: the state before; "" in the current state */
    char code[64];         /* the list's answer ("127.0.0.2"), "" when none */
    char txt[300];         /* its TXT record, "" when none */
    char delist_url[1024]; /* the list's delisting page for this address, "" when none */
    long long since;       /* when the state began (a clear address: since when it is
                              unlisted) */
    long long time;        /* history: when the change was seen; current state: since */
};
/* Set the state of (l->address, l->zone) to l (with l->since); with history, also add
 * a history row (l->previous, at l->time). One transaction. 0 done, -1 database
 * error. */
int store_listing_put(struct store *st, const struct store_listing *l, int history);
/* Each current state (of address, or of all when NULL), ordered by address and zone;
 * cb runs inside the call. 0 done, -1 database error. */
int store_listing_list(struct store *st, const char *address,
                       void (*cb)(void *arg, const struct store_listing *l), void *arg);
/* The last limit changes (all when limit <= 0) of address (NULL: of every address),
 * oldest first. 0 done, -1 database error. */
int store_listing_history(struct store *st, const char *address, int limit,
                          void (*cb)(void *arg, const struct store_listing *l), void *arg);

/* --- answers of SMTP probes (policy/relay_verify.c, docs/inbound.md) ------------
 * Whether the server behind us takes an address, remembered until expires (Unix
 * seconds). kind names the question ("rcpt": a relay-domain recipient, "sender": a
 * sender callout); addresses are compared case-insensitively. */
struct store_verify {
    int ok;            /* 1 the server took the address, 0 it refused it (5xx) */
    int code;          /* its reply code */
    char text[512];    /* its reply ("550 5.1.1 user unknown"), for our refusal */
    long long expires; /* Unix seconds */
};
/* The answer for (kind, address) that has not expired at now: 1 found (out filled),
 * 0 none, -1 database error. */
int store_verify_get(struct store *st, const char *kind, const char *address, long long now,
                     struct store_verify *out);
/* Remember v for (kind, address), replacing an older answer. 0 done, -1 error. */
int store_verify_put(struct store *st, const char *kind, const char *address,
                     const struct store_verify *v);
/* Delete the answers expired at now. 0 done, -1 database error. */
int store_verify_purge(struct store *st, long long now);

/* --- sending accounts under watch (abuse/abuse.c, docs/abuse.md) ----------------
 * Locked accounts, the evidence of each signal, and each account's messages per hour
 * (its baseline). Accounts are stored lower case. */
struct store_abuse_lock {
    char account[320];
    long long since; /* Unix seconds */
    int score;
    char reason[512]; /* the signal that crossed the threshold, with its numbers */
};
/* Lock (or update the lock of) l->account. 0 done, -1 database error. */
int store_abuse_lock_put(struct store *st, const struct store_abuse_lock *l);
/* 1 removed, 0 was not locked, -1 database error. */
int store_abuse_lock_del(struct store *st, const char *account);
/* Each lock, by account; cb runs inside the call. 0 done, -1 database error; with
 * Redis (store_attach_redis), 1: Redis is unreachable and the locks listed are this
 * node's cache of them. */
int store_abuse_lock_list(struct store *st, void (*cb)(void *arg, const struct store_abuse_lock *l),
                          void *arg);
struct store_abuse_evidence {
    char account[320];
    long long time;
    char signal[64];
    int score;
    char evidence[1024];
};
/* Keep e. 0 done, -1 database error. */
int store_abuse_evidence_add(struct store *st, const struct store_abuse_evidence *e);
/* Each piece of evidence about account (NULL: every account) since the Unix time
 * since, oldest first, at most limit (the newest). 0 done, -1 database error. */
int store_abuse_evidence_list(struct store *st, const char *account, long long since, int limit,
                              void (*cb)(void *arg, const struct store_abuse_evidence *e),
                              void *arg);
/* Forget the evidence about account (after an unlock), and rows older than before of
 * every account. 0 done, -1 database error. */
int store_abuse_evidence_clear(struct store *st, const char *account, long long before);
/* Messages of account in the hour starting at hour (window number); rows older than
 * oldest are deleted. 0 done, -1 database error. */
int store_abuse_hour_put(struct store *st, const char *account, long long hour, int messages,
                         long long oldest);
/* The account's mean messages per hour over its hours with mail since hour number
 * since (*mean, 0 without history) and how many such hours (*hours). 0/-1. */
int store_abuse_baseline(struct store *st, const char *account, long long since, double *mean,
                         int *hours);
/* The account's counters as text (abuse.c's format), stored at Unix time updated,
 * replacing the row before. 0 done, -1 database error. */
int store_abuse_state_put(struct store *st, const char *account, long long updated,
                          const char *state);
/* Each account's counters stored since the Unix time since; cb runs inside the call
 * (its strings are valid during it). 0 done, -1 database error. */
int store_abuse_state_list(struct store *st, long long since,
                           void (*cb)(void *arg, const char *account, const char *state),
                           void *arg);
/* --- what each account sent, and complaints (abuse/complaints.c, docs/abuse.md) --
 * One row per message accepted from an authenticated user or a local sender, kept
 * for complaints { retention } so a complaint can name the account. */
struct store_sent {
    char queue_id[32];
    char message_id[256]; /* "<local@domain>" as in the header, "" when none */
    char account[320];    /* the AUTH user, or the local user name */
    char sender[320];     /* envelope sender, "" for <> */
    long long time;       /* Unix seconds of arrival */
};
/* Record e (a row with the same queue ID is replaced). 0 done, -1 database error. */
int store_sent_add(struct store *st, const struct store_sent *e);
/* Find the message by queue_id (when non-empty), else by message_id (when non-empty;
 * the newest row): 1 found by queue ID, 2 found by Message-ID (out filled), 0 none,
 * -1 database error. */
int store_sent_find(struct store *st, const char *queue_id, const char *message_id,
                    struct store_sent *out);
/* Delete rows older than before (Unix seconds). 0 done, -1 database error. */
int store_sent_purge(struct store *st, long long before);

/* A complaint as recorded; strings borrowed ("" when unknown; account "" = no match). */
struct store_complaint {
    const char *account, *queue_id, *message_id;
    const char *format;        /* "arf", "spamcop" */
    const char *feedback_type; /* ARF Feedback-Type ("abuse"), "" */
    const char *source_ip, *reporter;
    const char *report_id; /* queue ID of the report itself */
    long long time;
};
int store_complaint_add(struct store *st, const struct store_complaint *c);
/* Each complaint (of account, or all when NULL), oldest first; cb runs inside the
 * call. 0 done, -1 database error. */
int store_complaint_list(struct store *st, const char *account,
                         void (*cb)(void *arg, const struct store_complaint *c), void *arg);
/* --- DMARC aggregate report data (policy/dmarc.c, docs/inbound.md) ---------------
 * One row per day (UTC, "2026-12-06"), sending address, From: domain, the domain whose
 * policy applied, the disposition (none, quarantine, reject) and the DMARC-aligned
 * DKIM and SPF results (pass or fail), with a count. All strings borrowed. */
struct store_dmarc {
    const char *day, *source_ip, *header_from, *policy_domain, *disposition, *dkim, *spf;
};
/* Count one message. 0 done, -1 database error. */
int store_dmarc_count(struct store *st, const struct store_dmarc *r);

/* --- shared state (store/state_redis.c, docs/cluster.md) --------------------------
 * With state { backend redis; }, the policy state several nodes share lives in Redis:
 * greylisting, egress benches, blocklist listings, probe answers, account locks (also
 * written to this file: each node's cache of them while Redis is down) and evidence;
 * the functions above keep their contract and go there. The rest (sent log,
 * complaints, DMARC counts, hourly volumes, counters) stays in this node's file.
 * While Redis is unreachable those functions fail (-1) at once, and it is tried again
 * after a backoff (100 ms doubling to 5 s). */
struct kconf;
/* Use Redis as conf's state { } says (servers, sentinel_master, prefix, timeout_ms);
 * nothing is connected yet (Redis may be down at start). Call before other threads use
 * st. 0 done, -1 with err filled (a server that is not HOST[:PORT]). */
int store_attach_redis(struct store *st, const struct kconf *conf, char *err, size_t errsize);
/* 1 when a and b differ in what is read once at start (state { } backend, servers,
 * sentinel_master, prefix, timeout_ms, refresh: a reload does not apply them), else 0. */
int store_state_conf_differs(const struct kconf *a, const struct kconf *b);
/* 1 when the policy state is shared (Redis attached), else 0. */
int store_shared(const struct store *st);
/* A counter shared by the nodes, in a window of window seconds sliding in twelfths (as
 * abuse's windows): add n to the counter name (a short label and an account, e.g.
 * "messages_per_hour:user@example.org") at Unix time now; *count gets the window's
 * total, n included. Atomic: two nodes never both see the same total. 0 done, -1 no
 * shared state or Redis unreachable. */
int store_rate_add(struct store *st, const char *name, int window, long long now, int n,
                   int *count);
/* A set shared by the nodes, of the members seen in the last window seconds (as
 * abuse's distinct recipients): add member (a short string, e.g. a hash) to the set
 * name at Unix time now, or renew its time; *count gets how many distinct members the
 * window holds, member included. Past max members a new one is not kept but counted
 * (max + 1), so a flood cannot grow the set. Atomic. 0 done, -1 no shared state or
 * Redis unreachable. */
int store_distinct_add(struct store *st, const char *name, int window, long long now,
                       const char *member, int max, int *count);
/* AUTH failures counted by every node (auth/limits.c also counts on its own node): addr
 * the client's address key (auth/limits.c's: IPv6 as its /64), account lowercased.
 * blocked: 1 the address or the (address, account) pair is blocked now, 0 not, -1 no
 * shared state or unreachable. record: a failure (ok 0) counts for both; past max_addr
 * (address) or max_pair (pair) failures within window seconds that one is blocked for
 * block seconds; a success (ok 1) clears the pair's count. Returns the larger count
 * (0 after a success), -1 no shared state or unreachable. */
int store_authfail_blocked(struct store *st, const char *addr, const char *account);
int store_authfail_record(struct store *st, const char *addr, const char *account, int ok,
                          int window, int block, int max_addr, int max_pair);

#endif
