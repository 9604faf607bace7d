/* auth.h: who may log in (AUTH). The credential backends: Dovecot's auth socket
 * (dovecot.c) and the SQLite directory (its hashes and their check stay with the
 * directory: store_mailbox_auth()); the brute-force limiter (limits.c); and the check
 * that puts them together for the daemon (auth.c): limits on the loop, the backend on
 * a worker, the answer delayed after failures. Every answer is an enum auth_result
 * (core/auth_result.h), from the backend up to the SMTP reply. */
#ifndef KURIER_AUTH_H
#define KURIER_AUTH_H

#include <stddef.h>

#include "core/core.h"

struct event_base;
struct store;

/* --- the AUTH check (auth.c) ------------------------------------------------------ */

struct auth;
struct auth_limits;
/* The daemon's login checker: conf's auth backend (chosen here, once: the directory
 * in store, or a Dovecot socket), with a new brute-force limiter. store is borrowed
 * and must outlive the checker. Never NULL. */
struct auth *auth_new(struct event_base *base, const struct kconf *conf, struct store *store);
/* No check may be running. NULL does nothing. */
void auth_free(struct auth *a);
/* The checker's limiter (borrowed), for the control socket's auth-blocks/auth-clear. */
struct auth_limits *auth_limits_of(struct auth *a);

struct auth_check;
/* Check user and pass for a client at ip ("192.0.2.7"), with conf's auth limits
 * (auth.max_failures, ...). A blocked address or pair is answered AUTH_BLOCKED at
 * once, without asking the backend. Otherwise the backend runs on a worker, the
 * outcome is counted, and a failure is answered after the limiter's delay.
 * done(arg, result) runs once on the loop, never inside this call: AUTH_OK,
 * AUTH_DENIED, AUTH_BLOCKED or AUTH_TEMPFAIL (logged here). The strings are copied
 * (the password is wiped when done); conf must stay valid until done runs. Returns a
 * handle for auth_check_cancel(). */
struct auth_check *auth_check_start(struct auth *a, const struct kconf *conf, const char *ip,
                                    const char *user, const char *pass,
                                    void (*done)(void *arg, enum auth_result result), void *arg);
/* done will not run; waits for a backend check already running on a worker. */
void auth_check_cancel(struct auth_check *c);

/* Locked accounts (abuse/ decides and persists; the set is kept here): the right
 * password of a locked account is answered AUTH_LOCKED. Names compare case-
 * insensitively. Set locked 1 or 0; returns 1 when that changed something. */
int auth_lock_set(struct auth *a, const char *account, int locked);
/* 1 when account is locked. */
int auth_locked(struct auth *a, const char *account);
/* Who hears of each login outcome (one observer; NULL: none): observe(arg, user, ip,
 * ok) runs on the loop once the backend answered (not for blocked or temporarily
 * failed checks), before the lock is looked at, so it may lock the account. */
void auth_set_observer(struct auth *a,
                       void (*observe)(void *arg, const char *user, const char *ip, int ok),
                       void *arg);

/* --- backend: Dovecot's auth socket (dovecot.c, docs/submission.md) ------------
 * Optional AUTH backend (kurier.conf auth { backend dovecot; }): passwords are
 * checked by Dovecot's auth service over its auth-client unix socket, the SASL
 * protocol Postfix speaks to Dovecot (version 1). Calls block (one round trip,
 * Dovecot's own failure delay included): the daemon makes them on worker threads.
 * One handle may be used from several threads at once: each call takes an idle
 * connection from a small pool or opens a new one; a connection that failed is
 * closed, and the next call connects again. */
struct dovecot_auth;

/* A handle for the socket at socket_path (copied). Connects lazily, on the first
 * check, so Dovecot may start later. Never NULL. */
struct dovecot_auth *dovecot_auth_new(const char *socket_path);
/* Check user and pass with mechanism PLAIN, service "smtp", client_ip (may be NULL
 * or "" when unknown) as the remote address Dovecot sees. AUTH_OK (1) accepted,
 * AUTH_DENIED (0) rejected (bad credentials, unknown or disabled user),
 * AUTH_TEMPFAIL (-1) temporary failure with err filled
 * (socket missing or closed, timeout after 20s, protocol error, or Dovecot's own
 * temporary failure such as its passdb being down). */
enum auth_result dovecot_auth_check(struct dovecot_auth *d, const char *user, const char *pass,
                                    const char *client_ip, char *err, size_t errsize);
/* Close every connection and free the handle. NULL does nothing. No check may run. */
void dovecot_auth_free(struct dovecot_auth *d);

/* The protocol's pure parts, exposed for tests/unit/test_dovecot.c. */
struct dovecot_handshake {
    int version; /* server's VERSION line seen with major 1 */
    int plain;   /* server offers MECH PLAIN */
};
/* Feed one server line of the handshake (len bytes, without the LF) into h. 0 more
 * lines expected, 1 DONE and usable, -1 unusable with err filled (other major
 * version, PLAIN not offered, DONE before VERSION). Unknown lines are skipped. */
int dovecot_handshake_line(struct dovecot_handshake *h, const char *line, size_t len, char *err,
                           size_t errsize);
/* A new AUTH request line for request id, LF-terminated: PLAIN with user and pass
 * as the initial response (base64), service=smtp, nologin, secured, no-penalty,
 * rip=client_ip when it is an IP address. Holds the password: the caller wipes and frees it. */
char *dovecot_request_new(unsigned id, const char *user, const char *pass, const char *client_ip);
enum dovecot_reply {
    DOVECOT_R_BAD = -1,  /* malformed OK/FAIL/CONT line */
    DOVECOT_R_OTHER = 0, /* another request's answer or an unknown line: skip it */
    DOVECOT_R_OK,
    DOVECOT_R_FAIL,     /* credentials refused */
    DOVECOT_R_TEMPFAIL, /* FAIL with "temp" or code=temp_fail */
    DOVECOT_R_CONT      /* a challenge: never expected for PLAIN with a response */
};
/* Judge one server line (len bytes, without the LF) as the answer to request id.
 * reason (may be NULL) gets the reply's reason= text, or "". */
enum dovecot_reply dovecot_reply_parse(const char *line, size_t len, unsigned id, char *reason,
                                       size_t reasonsize);

/* --- brute-force protection (limits.c) -------------------------------------------
 * Failed logins are counted per client address (IPv6: per /64) and per (address,
 * account) pair over auth.window, never per account alone: nobody can lock a user out
 * from elsewhere. Each failure delays the answer a little more (1s, 2s, 4s ...
 * auth.delay_max); past auth.max_failures the pair, past auth.max_failures_address the
 * whole address, is refused for auth.block_time. The table is keyed with SipHash (a
 * random key per start: its keys include names the client chose) and holds at most
 * 100,000 entries (then the least recently used go). In memory on this node (later:
 * shared through the state store). Loop thread only. */
struct auth_limits;
/* Aborts when OpenSSL has no SipHash or no random key (cannot happen on OpenSSL 3). */
struct auth_limits *auth_limits_new(void);
void auth_limits_free(struct auth_limits *al);
/* Before a login is checked: 1 when the address, or this account from this address,
 * is blocked now. */
int auth_limits_blocked(struct auth_limits *al, const struct kconf *c, const char *ip,
                        const char *user, double now);
/* Record the outcome. Returns the delay in seconds to wait before answering a
 * failure (0 for success). */
double auth_limits_record(struct auth_limits *al, const struct kconf *c, const char *ip,
                          const char *user, int ok, double now);
/* Call cb for every block in force (least recently used first): addr is the address
 * ("192.0.2.7", "2001:db8:1:2::/64"), account the account (lower case, as the client
 * sent it: escape before printing) or NULL for a block of the whole address. The
 * strings are borrowed for the call. */
void auth_limits_each_block(struct auth_limits *al, double now,
                            void (*cb)(void *arg, const char *addr, const char *account,
                                       int failures, double seconds_left),
                            void *arg);
/* Forget everything counted about what: a client address (an IPv6 address or its
 * "/64" stands for its /64) with all its pairs, or else an account in every pair.
 * Returns how many blocks were lifted. */
int auth_limits_clear(struct auth_limits *al, const char *what, double now);
/* Entries held now (addresses and pairs, blocked or counting); for tests. */
size_t auth_limits_size(const struct auth_limits *al);
/* The key a client address is counted under (auth/limits.c and the shared counters of
 * store_authfail_*): the address, IPv6 as its /64, IPv4-mapped as IPv4. 1 when ip is an
 * address, else 0 (key = ip as given). */
int auth_limits_addr_key(const char *ip, char *key, size_t size);

#endif
