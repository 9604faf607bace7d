/* control.h: the control socket (a Unix stream socket, conf control_socket) through
 * which the CLI asks the running daemon to act on its queue and its AUTH limiter.
 * One request line, one reply, then the daemon closes:
 *   request:  "flush" | "delete ID" | "delete ALL" | "hold ID" | "release ID" |
 *             "pickup" | "reload" | "stop" | "ping" | "list" | "auth-blocks" |
 *             "auth-clear ADDRESS|ACCOUNT" | "egress-status [json]" |
 *             "egress-bench ADDRESS DESTINATION|* SECONDS REASON" (0 s: until lifted) |
 *             "egress-unbench ADDRESS [DESTINATION|*]" (none: every bench of it)
 *             "auth-clear ADDRESS|ACCOUNT" | "account-status [USER]" |
 *             "account-status-json [USER]" | "account-unlock USER [keep|release|delete]"
 *   reply:    "ok <text>" | "error <text>", one line; for "list" and "auth-blocks"
 *             "ok" then text lines (a leading "." doubled) and a line "." alone
 *   list:        the queue, one envelope (spool format, only what mailq shows: ID,
 *                sender, arrival, size, held, recipients with state and last error)
 *                followed by an empty line per message
 *   egress-status: egress_status()'s text or JSON (egress/bench.h)
 *   account-status[-json]: the text (or JSON) of abuse_status_start() (abuse/abuse.h)
 *   list for root and the daemon's user also carries each message's login (auth_user)
 *   auth-blocks: one block per line: ADDRESS TAB ACCOUNT (escaped; empty: the whole
 *                address) TAB FAILURES TAB SECONDS-LEFT
 * The socket is mode 0666 in a folder others may pass through; the daemon asks the
 * kernel who connected (SO_PEERCRED): anyone may "ping" and "list" (as Postfix's
 * mailq works for every user), everything else is for root and the daemon's user
 * ("error permission denied: ..."). Later: the HTTP admin API and metrics live here. */
#ifndef KURIER_CONTROL_H
#define KURIER_CONTROL_H

#include <stddef.h>

struct event_base;
struct queue;
struct spool;
struct auth_limits;
struct control;

/* Daemon side: listen on path (replacing a stale socket). reload_cb runs for
 * "reload" and returns 0 when the new configuration is in force, -1 when it was
 * refused (the reply is then "error ..."). NULL on error (logged). */
struct control *control_new(struct event_base *base, const char *path, struct queue *q,
                            int (*reload_cb)(void *arg), void *arg);
/* "stop" (root and the daemon's user): stop_cb(arg of control_new) starts the same
 * shutdown as SIGTERM; the reply "ok stopping" is sent at once. Without it (the
 * default) "stop" is unknown. */
void control_set_stop(struct control *c, void (*stop_cb)(void *arg));
/* What "list" reads and what "auth-blocks"/"auth-clear" act on; both borrowed until
 * control_free. Without them (NULL) those requests are unknown. */
void control_set_state(struct control *c, struct spool *spool, struct auth_limits *limits);
/* What "account-status" and "account-unlock" act on (borrowed; NULL: unknown). */
struct abuse;
void control_set_abuse(struct control *c, struct abuse *abuse);
void control_free(struct control *c);

/* Client side (CLI; blocking, 10 s timeout): send one request, read the reply line
 * into reply (without the newline).
 * Returns 0 when the daemon answered "ok", 1 when it answered "error" or the socket
 * refused us (reply says "permission denied: ..."), -1 when no daemon listens there
 * (reply says why: "kurierd is not running (...)"). */
int control_request(const char *path, const char *request, char *reply, size_t replysize);
/* The same for a request answered with text ("list", "auth-blocks"): on 0, *text is
 * the text (lines ending in LF, dots undone; caller frees) and *len its length. The
 * timeout is 60 s, counted from the last byte received. On 1 and -1 *text is NULL and
 * reply says why (also 1 when the text ended early). */
int control_request_text(const char *path, const char *request, char **text, size_t *len,
                         char *reply, size_t replysize);

#endif
