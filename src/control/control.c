/* control.c: the daemon side of the control socket. One request line per
 * connection, dispatched to the scheduler; one reply line, then close.
 * The client side (control_request) lives in client.c. */
#include "core/compat.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/control.h"
#include "core/core.h"
#include "queue/queue.h"

#define CONTROL_LINE_MAX 512
#define CONTROL_TIMEOUT 5 /* seconds to send the request line */

struct control {
    struct event_base *base;
    struct evconnlistener *lis;
    char *path;
    struct queue *q;
    void (*reload_cb)(void *arg);
    void *arg;
    struct conn *conns;
};

struct conn {
    struct control *c;
    struct bufferevent *bev;
    int replied;
    struct conn *prev, *next;
};

static void conn_free(struct conn *k)
{
    struct control *c = k->c;
    if (k->prev)
        k->prev->next = k->next;
    else
        c->conns = k->next;
    if (k->next) k->next->prev = k->prev;
    bufferevent_free(k->bev);
    free(k);
}

static int is_queue_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > QUEUE_ID_LEN) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= 'a' && s[i] <= 'z')))
            return 0;
    return 1;
}

/* Run one request; the reply (without newline) goes into reply. */
static void dispatch(struct control *c, char *line, char *reply, size_t size)
{
    char *arg = strchr(line, ' ');
    if (arg) {
        *arg++ = '\0';
        while (*arg == ' ')
            arg++;
    }
    int has_arg = arg && *arg;
    if (strcmp(line, "ping") == 0 && !has_arg) {
        str_copy(reply, "ok pong", size);
    } else if (strcmp(line, "flush") == 0 && !has_arg) {
        queue_flush(c->q);
        str_copy(reply, "ok flushed", size);
    } else if (strcmp(line, "pickup") == 0 && !has_arg) {
        queue_pickup(c->q);
        str_copy(reply, "ok", size);
    } else if (strcmp(line, "reload") == 0 && !has_arg) {
        if (c->reload_cb) c->reload_cb(c->arg);
        str_copy(reply, "ok reloading", size);
    } else if (has_arg && (strcmp(line, "delete") == 0 || strcmp(line, "hold") == 0 ||
                           strcmp(line, "release") == 0)) {
        int all = strcmp(arg, "ALL") == 0;
        if (!is_queue_id(arg) || (all && strcmp(line, "delete") != 0)) {
            char esc[64];
            log_escape(esc, sizeof esc, arg, strlen(arg));
            snprintf(reply, size, "error no such message %s", esc);
            return;
        }
        int r;
        const char *done;
        if (line[0] == 'd') {
            r = queue_delete(c->q, arg);
            done = "deleted";
        } else if (line[0] == 'h') {
            r = queue_hold(c->q, arg);
            done = "held";
        } else {
            r = queue_release(c->q, arg);
            done = "released";
        }
        if (r == 0)
            snprintf(reply, size, "ok %s %s", done, arg);
        else if (r == 1) /* release of a message that is not held */
            snprintf(reply, size, "error %s is not held", arg);
        else
            snprintf(reply, size, "error no such message %s", arg);
    } else {
        str_copy(reply, "error unknown request", size);
    }
}

static void reply_and_close(struct conn *k, const char *reply)
{
    k->replied = 1;
    bufferevent_disable(k->bev, EV_READ);
    bufferevent_set_timeouts(k->bev, NULL, NULL);
    struct evbuffer *out = bufferevent_get_output(k->bev);
    evbuffer_add_printf(out, "%s\n", reply);
    /* closed from the write callback once the output buffer drained */
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct conn *k = arg;
    if (k->replied) return;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = 0;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
    if (!line) {
        if (evbuffer_get_length(in) > CONTROL_LINE_MAX)
            reply_and_close(k, "error request too long");
        return;
    }
    char reply[256];
    if (n > CONTROL_LINE_MAX || strlen(line) != n) {
        str_copy(reply, "error request too long", sizeof reply);
    } else {
        char esc[CONTROL_LINE_MAX * 4 + 1];
        log_debug("control", "request: %s", log_escape(esc, sizeof esc, line, n));
        dispatch(k->c, line, reply, sizeof reply);
    }
    free(line);
    reply_and_close(k, reply);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct conn *k = arg;
    if (k->replied && evbuffer_get_length(bufferevent_get_output(bev)) == 0) conn_free(k);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *k = arg;
    if ((what & BEV_EVENT_EOF) && !k->replied) {
        /* a request without the final newline, then shutdown(SHUT_WR) */
        struct evbuffer *in = bufferevent_get_input(bev);
        if (evbuffer_get_length(in) > 0 && evbuffer_add(in, "\n", 1) == 0) {
            on_read(bev, k);
            return;
        }
    }
    if ((what & BEV_EVENT_EOF) && k->replied &&
        evbuffer_get_length(bufferevent_get_output(bev)) > 0)
        return; /* the reply still goes out; on_write closes */
    if (what & BEV_EVENT_TIMEOUT) log_debug("control", "request timed out");
    conn_free(k); /* error, timeout or EOF: nothing more to say */
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct control *c = arg;
    struct bufferevent *bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    struct conn *k = xcalloc(1, sizeof *k);
    k->c = c;
    k->bev = bev;
    k->next = c->conns;
    if (c->conns) c->conns->prev = k;
    c->conns = k;
    struct timeval tv = {CONTROL_TIMEOUT, 0};
    bufferevent_set_timeouts(bev, &tv, &tv);
    bufferevent_setwatermark(bev, EV_READ, 0, CONTROL_LINE_MAX + 2);
    bufferevent_setcb(bev, on_read, on_write, on_event, k);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void on_accept_error(struct evconnlistener *lis, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();
    log_err("control", "accept on control socket: %s", evutil_socket_error_to_string(e));
}

struct control *control_new(struct event_base *base, const char *path, struct queue *q,
                            void (*reload_cb)(void *arg), void *arg)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (str_copy(sun.sun_path, path, sizeof sun.sun_path) >= sizeof sun.sun_path) {
        log_err("control", "control socket path too long: %s", path);
        return NULL;
    }
    /* replace a stale socket, but never another kind of file */
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            log_err("control", "%s exists and is not a socket", path);
            return NULL;
        }
        unlink(path);
    }
    /* create the socket with mode 0600 from the start (no window for others) */
    mode_t old = umask(0177);
    /* no callback yet: the listener stays disabled until control_new set it */
    struct evconnlistener *lis =
        evconnlistener_new_bind(base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
                                (struct sockaddr *)&sun, (int)sizeof sun);
    int e = errno;
    umask(old);
    if (!lis) {
        log_err("control", "cannot listen on %s: %s", path, strerror(e));
        return NULL;
    }
    if (chmod(path, 0600) != 0) log_warn("control", "cannot chmod %s: %s", path, strerror(errno));
    struct control *c = xcalloc(1, sizeof *c);
    c->base = base;
    c->lis = lis;
    c->path = xstrdup(path);
    c->q = q;
    c->reload_cb = reload_cb;
    c->arg = arg;
    evconnlistener_set_cb(lis, on_accept, c);
    evconnlistener_set_error_cb(lis, on_accept_error);
    return c;
}

void control_free(struct control *c)
{
    if (!c) return;
    while (c->conns)
        conn_free(c->conns);
    evconnlistener_free(c->lis);
    unlink(c->path);
    free(c->path);
    free(c);
}
