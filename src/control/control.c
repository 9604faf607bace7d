/* control.c: the daemon side of the control socket. One request line per
 * connection, dispatched to the scheduler or the AUTH limiter; one reply (a line, or
 * "ok" and a dot-terminated text), then close. Who asks is told by SO_PEERCRED: root
 * and the daemon's user may do everything, others only read the queue listing.
 * The client side (control_request) lives in client.c. */
#include "core/compat.h"

#include <errno.h>
#include <pwd.h>
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
#include "abuse/abuse.h"
#include "auth/auth.h"
#include "egress/bench.h"
#include "queue/queue.h"

#define CONTROL_LINE_MAX 512
#define CONTROL_TIMEOUT 5        /* seconds to send the request line */
#define CONTROL_WRITE_TIMEOUT 30 /* seconds without progress sending a reply */
#define CONTROL_UNPRIV_MAX 16    /* connections of unprivileged users at once */

struct control {
    struct event_base *base;
    struct evconnlistener *lis;
    char *path;
    struct queue *q;
    int (*reload_cb)(void *arg);
    void (*stop_cb)(void *arg);
    void *arg;
    struct conn *conns;
    struct spool *spool;        /* for "list"; NULL: not offered */
    struct auth_limits *limits; /* for "auth-blocks", "auth-clear"; NULL: not offered */
    struct abuse *abuse;        /* for "account-*"; NULL: not offered */
    uid_t uid;                  /* the daemon's user */
    char user[64];              /* its name, for the refusal */
    size_t nunpriv;
    int test_delay; /* KURIER_TEST_DELAY "control=MS": worker reads wait (tests only) */
};

struct conn {
    struct control *c;
    struct bufferevent *bev;
    int replied;
    int privileged;              /* root or the daemon's user (SO_PEERCRED) */
    struct work_job *job;        /* "list" being built, or "release"'s envelope read, on a worker */
    struct buf text;             /* its result */
    struct abuse_status *status; /* "account-status" being made (on a worker) */
    char id[QUEUE_ID_LEN + 1];   /* "release": the message */
    int env_held;                /* and what its envelope says (unreadable: 1) */
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
    if (k->job) work_cancel(k->job);
    abuse_status_cancel(k->status);
    buf_release(&k->text);
    if (!k->privileged) c->nunpriv--;
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

static void reply_and_close(struct conn *k, const char *reply);

/* Reply "ok", then text line by line (a line starting with "." gets another "."
 * in front, as in SMTP's DATA), then "." alone; then close. */
static void reply_text_and_close(struct conn *k, const char *text, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(k->bev);
    evbuffer_add(out, "ok\n", 3);
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
        if (text[i] == '.') evbuffer_add(out, ".", 1);
        evbuffer_add(out, text + i, n);
        evbuffer_add(out, "\n", 1);
        i += n + 1;
    }
    reply_and_close(k, ".");
}

/* --- "list": the queue as mailq shows it, for anyone --------------------------- */

/* One envelope with only what mailq shows (no client, login, relay or original
 * addresses: anyone may ask), in the envelope format, then an empty line. */
static void list_one(void *arg, const char *id)
{
    struct conn *k = arg;
    char err[512];
    struct spool_env *e = spool_load(k->c->spool, id, err, sizeof err);
    if (!e) {
        if (errno != ENOENT) /* removed meanwhile: not an error */
            log_warn("control", "queue listing: %s", err);
        return;
    }
    struct spool_env r = {.sender = e->sender,
                          .arrival = e->arrival,
                          .size = e->size,
                          .held = e->held,
                          /* the login only for those who may see it (queue list --account) */
                          .auth_user = k->privileged ? e->auth_user : NULL,
                          .nrcpts = e->nrcpts};
    memcpy(r.id, e->id, sizeof r.id);
    r.rcpts = xcalloc(e->nrcpts ? e->nrcpts : 1, sizeof *r.rcpts);
    for (size_t i = 0; i < e->nrcpts; i++) {
        struct spool_rcpt *d = &r.rcpts[i];
        const struct spool_rcpt *src = &e->rcpts[i];
        d->addr = src->addr;
        d->state = src->state;
        d->attempts = src->attempts;
        memcpy(d->dsn, src->dsn, sizeof d->dsn);
        d->diag = src->diag;
    }
    char *text = spool_env_format(&r);
    buf_puts(&k->text, text);
    buf_puts(&k->text, "\n");
    free(text);
    free(r.rcpts);
    spool_env_free(e);
}

static void list_run(void *arg)
{
    struct conn *k = arg;
    if (spool_scan(k->c->spool, list_one, k) != 0) {
        buf_reset(&k->text);
        buf_printf(&k->text, "error cannot read the queue: %s", strerror(errno));
    }
}

static void list_done(void *arg)
{
    struct conn *k = arg;
    k->job = NULL;
    if (strncmp(k->text.data ? k->text.data : "", "error ", 6) == 0)
        reply_and_close(k, k->text.data);
    else
        reply_text_and_close(k, k->text.data ? k->text.data : "", k->text.len);
    buf_release(&k->text);
}

/* --- "release ID": whether it is held may need its envelope, read on a worker ------ */

static void release_run(void *arg)
{
    struct conn *k = arg;
    if (k->c->test_delay > 0) usleep((useconds_t)k->c->test_delay * 1000);
    char err[256];
    struct spool_env *e = k->c->spool ? spool_load(k->c->spool, k->id, err, sizeof err) : NULL;
    k->env_held = !e || e->held;
    spool_env_free(e);
}

static void release_reply(struct conn *k, char *reply, size_t size)
{
    int r = queue_release(k->c->q, k->id, k->env_held);
    if (r == 0)
        snprintf(reply, size, "ok released %s", k->id);
    else if (r == 1)
        snprintf(reply, size, "error %s is not held", k->id);
    else
        snprintf(reply, size, "error no such message %s", k->id);
}

/* Runs only while k lives: conn_free cancels the job (and waits for a running one). */
static void release_done(void *arg)
{
    struct conn *k = arg;
    k->job = NULL;
    char reply[256];
    release_reply(k, reply, sizeof reply);
    reply_and_close(k, reply);
}

/* --- "account-status": the evidence is read on a worker (abuse.h) ------------------ */

/* Runs only while k lives: conn_free cancels it. */
static void status_done(void *arg, const char *text, size_t len)
{
    struct conn *k = arg;
    k->status = NULL;
    reply_text_and_close(k, text, len);
}

/* --- "auth-blocks", "auth-clear WHAT" ----------------------------------------------- */

static void block_line(void *arg, const char *addr, const char *account, int failures,
                       double seconds_left)
{
    struct buf *b = arg;
    char esc[1024] = "";
    if (account) log_escape(esc, sizeof esc, account, strlen(account)); /* client's bytes */
    buf_printf(b, "%s\t%s\t%d\t%.0f\n", addr, esc, failures, seconds_left);
}

/* --- "egress-status", "egress-bench", "egress-unbench" (docs/egress.md) ------------ */

/* 0 with a one-line reply, 1 when a text reply is sent, -1 not an egress request. */
static int dispatch_egress(struct conn *k, const char *verb, char *arg, char *reply, size_t size)
{
    char *w[4] = {0};
    int n = 0;
    if (strcmp(verb, "egress-status") == 0) {
        if (arg && *arg && strcmp(arg, "json") != 0) return -1;
        struct buf b;
        buf_init(&b, 0);
        egress_status(&b, arg && *arg);
        reply_text_and_close(k, b.data ? b.data : "", b.len);
        buf_release(&b);
        return 1;
    }
    int bench = strcmp(verb, "egress-bench") == 0;
    if (!bench && strcmp(verb, "egress-unbench") != 0) return -1;
    /* egress-bench ADDR DEST SECONDS REASON...; egress-unbench ADDR [DEST]; DEST "*":
     * every destination, and for unbench without DEST every bench of ADDR */
    while (arg && *arg && n < (bench ? 3 : 2)) {
        w[n++] = arg;
        arg = strchr(arg, ' ');
        if (arg) {
            *arg++ = '\0';
            while (*arg == ' ')
                arg++;
        }
    }
    if (bench) w[3] = arg;
    char esc[128];
    log_escape(esc, sizeof esc, w[0] ? w[0] : "", w[0] ? strlen(w[0]) : 0);
    if (!w[0] || (bench && (!w[2] || !w[3] || !*w[3])) || (!bench && arg && *arg)) {
        str_copy(reply,
                 bench ? "error usage: egress-bench ADDRESS DESTINATION|* SECONDS REASON"
                       : "error usage: egress-unbench ADDRESS [DESTINATION|*]",
                 size);
        return 0;
    }
    const char *dest = w[1] && strcmp(w[1], "*") != 0 ? w[1] : NULL;
    if (dest &&
        (strlen(dest) > 253 ||
         strspn(dest, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") !=
             strlen(dest))) {
        snprintf(reply, size, "error invalid destination (expected a host name, a domain or *)");
        return 0;
    }
    int r;
    if (bench) {
        char *end;
        long long secs = strtoll(w[2], &end, 10);
        if (*end || secs < 0) {
            str_copy(reply, "error invalid duration", size);
            return 0;
        }
        char reason[EGRESS_REASON_MAX + 1];
        log_escape(reason, sizeof reason, w[3], strlen(w[3]));
        r = egress_bench(w[0], dest, reason, secs ? time(NULL) + (time_t)secs : 0);
        if (r == 0)
            snprintf(reply, size, "ok benched %s for %s", esc, dest ? dest : "all destinations");
    } else {
        r = w[1] ? egress_unbench(w[0], dest) : egress_unbench_all(w[0]);
        if (r >= 0) snprintf(reply, size, "ok lifted %d bench%s of %s", r, r == 1 ? "" : "es", esc);
    }
    if (r < 0)
        snprintf(reply, size, "error %s is not an IP address", esc);
    else
        log_info("control", "egress %s %s by admin", bench ? "bench" : "unbench", esc);
    return 0;
}

/* Run one request: 0 with a one-line reply (without newline) in reply, 1 when the
 * reply is sent (or will be, from a worker's completion). */
static int dispatch(struct conn *k, char *line, char *reply, size_t size)
{
    struct control *c = k->c;
    char *arg = strchr(line, ' ');
    if (arg) {
        *arg++ = '\0';
        while (*arg == ' ')
            arg++;
    }
    int has_arg = arg && *arg;
    int r0;
    /* everyone may ping and read the queue listing (as Postfix's showq); changing
     * anything, or seeing who is blocked, is for root and the daemon's user */
    int everyone = (strcmp(line, "ping") == 0 || strcmp(line, "list") == 0) && !has_arg;
    if (!everyone && !k->privileged) {
        char esc[40];
        log_escape(esc, sizeof esc, line, strlen(line));
        snprintf(reply, size, "error permission denied: \"%s\" is for root and user %s only", esc,
                 c->user);
        return 0;
    }
    if (strcmp(line, "ping") == 0 && !has_arg) {
        str_copy(reply, "ok pong", size);
    } else if (strcmp(line, "list") == 0 && !has_arg && c->spool) {
        buf_init(&k->text, 0);
        k->job = work_submit(list_run, list_done, k);
        return 1;
    } else if (strcmp(line, "auth-blocks") == 0 && !has_arg && c->limits) {
        struct buf b;
        buf_init(&b, 0);
        auth_limits_each_block(c->limits, time_mono(), block_line, &b);
        reply_text_and_close(k, b.data ? b.data : "", b.len);
        buf_release(&b);
        return 1;
    } else if (strcmp(line, "auth-clear") == 0 && has_arg && c->limits) {
        int n = auth_limits_clear(c->limits, arg, time_mono());
        char esc[160];
        log_escape(esc, sizeof esc, arg, strlen(arg));
        log_info("control", "auth blocks cleared for %s by admin: %d", esc, n);
        snprintf(reply, size, "ok cleared %d block%s for %s", n, n == 1 ? "" : "s", esc);
    } else if (strncmp(line, "egress-", 7) == 0 &&
               (r0 = dispatch_egress(k, line, has_arg ? arg : NULL, reply, size)) >= 0) {
        return r0;
    } else if ((strcmp(line, "account-status") == 0 || strcmp(line, "account-status-json") == 0) &&
               c->abuse) {
        k->status =
            abuse_status_start(c->abuse, has_arg ? arg : NULL, line[14] == '-', status_done, k);
        return 1;
    } else if (strcmp(line, "account-unlock") == 0 && has_arg && c->abuse) {
        char *what = strchr(arg, ' ');
        if (what) *what++ = '\0';
        enum abuse_held h = !what || strcmp(what, "keep") == 0 ? ABUSE_KEEP
                            : strcmp(what, "release") == 0     ? ABUSE_RELEASE
                            : strcmp(what, "delete") == 0      ? ABUSE_DELETE
                                                               : (enum abuse_held) - 1;
        char msg[600];
        if ((int)h < 0) {
            str_copy(reply, "error the held mail is kept, released or deleted", size);
        } else {
            int r = abuse_unlock(c->abuse, arg, h, msg, sizeof msg);
            str_copy(reply, r == 0 ? "ok " : "error ", size);
            str_copy(reply + strlen(reply), msg, size - strlen(reply));
        }
    } else if (strcmp(line, "flush") == 0 && !has_arg) {
        queue_flush(c->q);
        str_copy(reply, "ok flushed", size);
    } else if (strcmp(line, "pickup") == 0 && !has_arg) {
        queue_pickup(c->q);
        str_copy(reply, "ok", size);
    } else if (strcmp(line, "reload") == 0 && !has_arg) {
        if (c->reload_cb && c->reload_cb(c->arg) != 0)
            str_copy(reply, "error reload refused, the running configuration stays (see the log)",
                     size);
        else
            str_copy(reply, "ok reloaded", size);
    } else if (strcmp(line, "stop") == 0 && !has_arg && c->stop_cb) {
        log_info("control", "stop requested by admin");
        c->stop_cb(c->arg);
        str_copy(reply, "ok stopping", size);
    } else if (has_arg && strcmp(line, "release") == 0 && is_queue_id(arg)) {
        str_copy(k->id, arg, sizeof k->id);
        k->job = work_submit(release_run, release_done, k);
        return 1;
    } else if (has_arg && (strcmp(line, "delete") == 0 || strcmp(line, "hold") == 0 ||
                           strcmp(line, "release") == 0)) {
        int all = strcmp(arg, "ALL") == 0;
        if (!is_queue_id(arg) || (all && strcmp(line, "delete") != 0)) {
            char esc[64];
            log_escape(esc, sizeof esc, arg, strlen(arg));
            snprintf(reply, size, "error no such message %s", esc);
            return 0;
        }
        int r = line[0] == 'd' ? queue_delete(c->q, arg) : queue_hold(c->q, arg);
        if (r == 0)
            snprintf(reply, size, "ok %s %s", line[0] == 'd' ? "deleted" : "held", arg);
        else
            snprintf(reply, size, "error no such message %s", arg);
    } else {
        str_copy(reply, "error unknown request", size);
    }
    return 0;
}

static void reply_and_close(struct conn *k, const char *reply)
{
    k->replied = 1;
    bufferevent_disable(k->bev, EV_READ);
    /* a client that stops reading a long listing does not hold its slot forever */
    struct timeval wt = {CONTROL_WRITE_TIMEOUT, 0};
    bufferevent_set_timeouts(k->bev, NULL, &wt);
    struct evbuffer *out = bufferevent_get_output(k->bev);
    evbuffer_add_printf(out, "%s\n", reply);
    /* closed from the write callback once the output buffer drained */
}

/* Answer the request line (n bytes, NUL-terminated, no line end); frees line. */
static void on_line(struct conn *k, char *line, size_t n)
{
    char reply[256];
    if (n > CONTROL_LINE_MAX || strlen(line) != n) {
        str_copy(reply, "error request too long", sizeof reply);
    } else {
        char esc[CONTROL_LINE_MAX * 4 + 1];
        log_debug("control", "request: %s", log_escape(esc, sizeof esc, line, n));
        k->replied = 1; /* no second request on this connection */
        if (dispatch(k, line, reply, sizeof reply) == 1) {
            if (k->job || k->status) { /* the reply comes when the worker is done */
                bufferevent_disable(k->bev, EV_READ);
                bufferevent_set_timeouts(k->bev, NULL, NULL);
            }
            free(line);
            return;
        }
    }
    free(line);
    reply_and_close(k, reply);
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
    on_line(k, line, n);
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
        /* a request without the final newline, then shutdown(SHUT_WR); the end of
         * the input buffer is frozen outside libevent's read: take the bytes out */
        struct evbuffer *in = bufferevent_get_input(bev);
        size_t n = evbuffer_get_length(in);
        if (n > 0 && n <= CONTROL_LINE_MAX) {
            char *line = xmalloc(n + 1);
            evbuffer_remove(in, line, n);
            line[n] = '\0';
            if (line[n - 1] == '\r') line[--n] = '\0';
            on_line(k, line, n);
            return;
        }
    }
    if ((what & BEV_EVENT_EOF) && k->replied &&
        (k->job || k->status || evbuffer_get_length(bufferevent_get_output(bev)) > 0)) {
        bufferevent_disable(bev, EV_READ);
        return; /* the reply still goes out (after the listing is built); on_write closes */
    }
    if (what & BEV_EVENT_TIMEOUT) log_debug("control", "request timed out");
    conn_free(k); /* error, timeout or EOF: nothing more to say */
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct control *c = arg;
    struct ucred cred;
    socklen_t credlen = sizeof cred;
    int privileged = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) == 0 &&
                     (cred.uid == 0 || cred.uid == c->uid);
    if (!privileged && c->nunpriv >= CONTROL_UNPRIV_MAX) {
        static const char busy[] = "error busy, try again\n";
        ssize_t w = send(fd, busy, sizeof busy - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)w;
        evutil_closesocket(fd);
        return;
    }
    struct bufferevent *bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    struct conn *k = xcalloc(1, sizeof *k);
    k->c = c;
    k->bev = bev;
    k->privileged = privileged;
    if (!privileged) c->nunpriv++;
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
                            int (*reload_cb)(void *arg), void *arg)
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
    /* mode 0666: anyone may connect; what they may ask is decided per request from
     * the peer's credentials (SO_PEERCRED) */
    mode_t old = umask(0111);
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
    if (chmod(path, 0666) != 0) log_warn("control", "cannot chmod %s: %s", path, strerror(errno));
    struct control *c = xcalloc(1, sizeof *c);
    c->uid = geteuid();
    struct passwd *pw = getpwuid(c->uid);
    if (pw)
        str_copy(c->user, pw->pw_name, sizeof c->user);
    else
        snprintf(c->user, sizeof c->user, "%u", (unsigned)c->uid);
    c->base = base;
    c->lis = lis;
    c->path = xstrdup(path);
    c->q = q;
    c->reload_cb = reload_cb;
    c->arg = arg;
    /* the test hook of glue.h's KURIER_TEST_DELAY, for the worker reads: "control=MS" */
    const char *d = getenv("KURIER_TEST_DELAY");
    const char *in = d ? strstr(d, "control=") : NULL;
    if (in) {
        c->test_delay = atoi(in + 8);
        log_warn("kurierd", "KURIER_TEST_DELAY: control reads wait %d ms (tests only)",
                 c->test_delay);
    }
    evconnlistener_set_cb(lis, on_accept, c);
    evconnlistener_set_error_cb(lis, on_accept_error);
    return c;
}

void control_set_state(struct control *c, struct spool *spool, struct auth_limits *limits)
{
    c->spool = spool;
    c->limits = limits;
}

void control_set_abuse(struct control *c, struct abuse *abuse)
{
    c->abuse = abuse;
}

void control_set_stop(struct control *c, void (*stop_cb)(void *arg))
{
    c->stop_cb = stop_cb;
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
