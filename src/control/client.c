/* client.c: the CLI side of the control socket (control_request in control.h): one
 * request line, one reply line or text, 10 s timeout. The daemon side is control.c. */
#include "core/compat.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/control.h"
#include "core/core.h"

#define CONTROL_TIMEOUT_MS 10000
#define CONTROL_TEXT_TIMEOUT_MS 60000 /* a listing is built first: allow for a big queue */

static void set_reply(char *reply, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_reply(char *reply, size_t size, const char *fmt, ...)
{
    if (!reply || !size) return;
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(reply, size, fmt, ap) < 0) reply[0] = '\0';
    va_end(ap);
}

/* Wait for fd to become ready for events before the deadline. 1 ready, 0 timeout,
 * -1 error. */
static int wait_fd(int fd, short events, double deadline)
{
    for (;;) {
        int ms = (int)((deadline - time_mono()) * 1000);
        if (ms <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, ms);
        if (r < 0 && errno == EINTR) continue;
        return r < 0 ? -1 : r > 0;
    }
}

/* Connect and send the request line: 0 with *fdp (non-blocking) and *deadline set,
 * else control_request's 1 or -1 with reply set. */
static int send_request(const char *path, const char *request, char *reply, size_t replysize,
                        int *fdp, double *deadline)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (str_copy(sa.sun_path, path, sizeof sa.sun_path) >= sizeof sa.sun_path) {
        set_reply(reply, replysize, "kurierd is not running (socket path too long: %s)", path);
        return -1;
    }
    if (strchr(request, '\n') || strchr(request, '\r')) {
        set_reply(reply, replysize, "bad request");
        return 1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_reply(reply, replysize, "kurierd is not running (socket: %s)", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        if (e == EACCES || e == EPERM) { /* it may well run: we may not talk to it */
            set_reply(reply, replysize,
                      "permission denied: cannot talk to kurierd (%s: %s); run as root or "
                      "the kurier user",
                      path, strerror(e));
            return 1;
        }
        set_reply(reply, replysize, "kurierd is not running (%s: %s)", path, strerror(e));
        return -1;
    }
    *deadline = time_mono() + CONTROL_TIMEOUT_MS / 1000.0;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    char *line = xasprintf("%s\n", request);
    size_t len = strlen(line), off = 0;
    while (off < len) {
        ssize_t n = send(fd, line + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
            wait_fd(fd, POLLOUT, *deadline) > 0)
            continue;
        set_reply(reply, replysize, "cannot talk to kurierd (%s: %s)", path,
                  n < 0 ? strerror(errno) : "timeout");
        free(line);
        close(fd);
        return 1;
    }
    free(line);
    *fdp = fd;
    return 0;
}

/* Judge the first reply line (NUL-terminated, no newline): 0 "ok", 1 otherwise. */
static int judge_line(const char *buf, char *reply, size_t replysize)
{
    if (strncmp(buf, "ok", 2) == 0 && (buf[2] == '\0' || buf[2] == ' ')) {
        set_reply(reply, replysize, "%s", buf[2] ? buf + 3 : "");
        return 0;
    }
    if (strncmp(buf, "error", 5) == 0 && (buf[5] == '\0' || buf[5] == ' '))
        set_reply(reply, replysize, "%s", buf[5] ? buf + 6 : "");
    else
        set_reply(reply, replysize, "unexpected reply from kurierd: %s", buf);
    return 1;
}

int control_request(const char *path, const char *request, char *reply, size_t replysize)
{
    int fd;
    double deadline;
    int rc = send_request(path, request, reply, replysize, &fd, &deadline);
    if (rc != 0) return rc;
    rc = 1;
    char buf[4096];
    size_t got = 0;
    for (;;) {
        if (got == sizeof buf - 1) break; /* an over-long reply: keep its start */
        ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (n > 0) {
            got += (size_t)n;
            if (memchr(buf, '\n', got)) break;
            continue;
        }
        if (n == 0) break;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int w = wait_fd(fd, POLLIN, deadline);
            if (w > 0) continue;
            set_reply(reply, replysize, "kurierd did not answer within %d seconds",
                      CONTROL_TIMEOUT_MS / 1000);
            goto out;
        }
        set_reply(reply, replysize, "cannot read from kurierd (%s)", strerror(errno));
        goto out;
    }
    buf[got] = '\0';
    char *nl = memchr(buf, '\n', got);
    if (nl) *nl = '\0';
    if (nl && nl > buf && nl[-1] == '\r') nl[-1] = '\0';
    rc = judge_line(buf, reply, replysize);
out:
    close(fd);
    return rc;
}

int control_request_text(const char *path, const char *request, char **text, size_t *len,
                         char *reply, size_t replysize)
{
    *text = NULL;
    *len = 0;
    int fd;
    double deadline;
    int rc = send_request(path, request, reply, replysize, &fd, &deadline);
    if (rc != 0) return rc;
    rc = 1;
    deadline = time_mono() + CONTROL_TEXT_TIMEOUT_MS / 1000.0;
    /* read everything up to the daemon's close, then take it apart */
    struct buf in;
    buf_init(&in, 0);
    char chunk[16384];
    for (;;) {
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n > 0) {
            buf_append(&in, chunk, (size_t)n);
            deadline = time_mono() + CONTROL_TEXT_TIMEOUT_MS / 1000.0;
            continue;
        }
        if (n == 0) break;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (wait_fd(fd, POLLIN, deadline) > 0) continue;
            set_reply(reply, replysize, "kurierd did not answer within %d seconds",
                      CONTROL_TEXT_TIMEOUT_MS / 1000);
            goto out;
        }
        set_reply(reply, replysize, "cannot read from kurierd (%s)", strerror(errno));
        goto out;
    }
    char *p = in.data;
    char *nl = p ? memchr(p, '\n', in.len) : NULL;
    if (!nl) {
        set_reply(reply, replysize, "kurierd closed the connection without an answer");
        goto out;
    }
    *nl = '\0';
    if (nl > p && nl[-1] == '\r') nl[-1] = '\0';
    if (judge_line(p, reply, replysize) != 0) goto out;
    struct buf t;
    buf_init(&t, 0);
    int ended = 0;
    for (char *l = nl + 1; l < p + in.len;) {
        char *e = memchr(l, '\n', (size_t)(p + in.len - l));
        if (!e) break; /* a last line without its newline: cut off */
        if (e - l == 1 && l[0] == '.') {
            ended = 1;
            break;
        }
        if (l[0] == '.') l++;
        buf_append(&t, l, (size_t)(e + 1 - l));
        l = e + 1;
    }
    if (!ended) {
        buf_release(&t);
        set_reply(reply, replysize, "the answer from kurierd ended early");
        goto out;
    }
    *len = t.len;
    *text = buf_take(&t);
    rc = 0;
out:
    buf_release(&in);
    close(fd);
    return rc;
}
