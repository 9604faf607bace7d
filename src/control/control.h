/* control.h: the control socket (a Unix stream socket, conf control_socket) through
 * which the CLI asks the running daemon to act on its queue. One request line, one
 * reply line, then the daemon closes:
 *   request:  "flush" | "delete ID" | "delete ALL" | "hold ID" | "release ID" |
 *             "pickup" | "reload" | "ping"
 *   reply:    "ok <text>" | "error <text>"
 * The socket is mode 0600, owned by the daemon's user: only root and that user may
 * talk to it. Later: the HTTP admin API and metrics live here too. */
#ifndef KURIER_CONTROL_H
#define KURIER_CONTROL_H

#include <stddef.h>

struct event_base;
struct queue;
struct control;

/* Daemon side: listen on path (replacing a stale socket). reload_cb runs for
 * "reload". NULL on error (logged). */
struct control *control_new(struct event_base *base, const char *path, struct queue *q,
                            void (*reload_cb)(void *arg), void *arg);
void control_free(struct control *c);

/* Client side (CLI; blocking, 10 s timeout): send one request, read the reply line
 * into reply (without the newline).
 * Returns 0 when the daemon answered "ok", 1 when it answered "error", -1 when no
 * daemon listens there (reply says why: "kurierd is not running (...)"). */
int control_request(const char *path, const char *request, char *reply, size_t replysize);

#endif
