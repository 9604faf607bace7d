/* dovecot.c: the client side of Dovecot's authentication protocol (auth-client
 * socket, version 1; what Postfix's smtpd_sasl_type = dovecot speaks). Owns the
 * connections to the socket; the brute-force limits are auth.c's, the replies
 * smtp/server_auth.c's. */
#include "core/compat.h"

#include <errno.h>
#include <pthread.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/core.h"
#include "auth/auth.h"

#define DV_TIMEOUT 20  /* seconds for connect, each write and each read */
#define DV_LINE 16384  /* longest server line (handshake lines are short) */
#define DV_IDLE_MAX 16 /* connections kept open between checks */
/* Seconds an idle connection is kept. After a Dovecot restart the old auth process
 * serves its open connections until they close; this bounds how long we talk to it
 * (Postfix gets the same from recycling its smtpd processes). */
#define DV_IDLE_TIME 60

struct dv_conn {
    int fd;
    unsigned next_id;
    int timed_out;     /* the last failure was a timeout: Dovecot hangs, do not retry */
    double idle_since; /* time_mono() when put back into the pool */
    size_t pos, len;   /* unread bytes are buf[pos..len) */
    char buf[DV_LINE];
    struct dv_conn *next;
};

struct dovecot_auth {
    char *path;
    pthread_mutex_t lock; /* guards idle and nidle */
    struct dv_conn *idle;
    int nidle;
};

/* --- pure protocol parts --------------------------------------------------------- */

/* A cursor over the TAB-separated fields of one line. */
struct fields {
    const char *p, *end;
    int done;
};

/* Next field into f/flen; 0 when none is left. "" yields one empty field. */
static int next_field(struct fields *fs, const char **f, size_t *flen)
{
    if (fs->done) return 0;
    const char *tab = memchr(fs->p, '\t', (size_t)(fs->end - fs->p));
    *f = fs->p;
    if (tab) {
        *flen = (size_t)(tab - fs->p);
        fs->p = tab + 1;
    } else {
        *flen = (size_t)(fs->end - fs->p);
        fs->p = fs->end;
        fs->done = 1;
    }
    return 1;
}

static int field_is(const char *f, size_t flen, const char *word)
{
    size_t n = strlen(word);
    return flen == n && memcmp(f, word, n) == 0;
}

/* Decimal unsigned without sign or leading junk; -1 when not one. */
static long long field_uint(const char *f, size_t flen)
{
    if (flen == 0 || flen > 10) return -1;
    long long v = 0;
    for (size_t i = 0; i < flen; i++) {
        if (f[i] < '0' || f[i] > '9') return -1;
        v = v * 10 + (f[i] - '0');
    }
    return v;
}

int dovecot_handshake_line(struct dovecot_handshake *h, const char *line, size_t len, char *err,
                           size_t errsize)
{
    if (len && line[len - 1] == '\r') len--;
    struct fields fs = {line, line + len, 0};
    const char *f;
    size_t flen;
    next_field(&fs, &f, &flen);
    if (field_is(f, flen, "VERSION")) {
        const char *maj;
        size_t majlen;
        if (!next_field(&fs, &maj, &majlen) || field_uint(maj, majlen) != 1) {
            err_set(err, errsize, "unsupported protocol version \"%.*s\" (want 1)",
                    (int)(len > 40 ? 40 : len), line);
            return -1;
        }
        h->version = 1;
    } else if (field_is(f, flen, "MECH")) {
        const char *mech;
        size_t mlen;
        if (next_field(&fs, &mech, &mlen) && mlen == 5 && strncasecmp(mech, "PLAIN", 5) == 0)
            h->plain = 1;
    } else if (field_is(f, flen, "DONE")) {
        if (!h->version) {
            err_set(err, errsize, "handshake ended without a VERSION line");
            return -1;
        }
        if (!h->plain) {
            err_set(err, errsize, "PLAIN is not offered (add plain to auth_mechanisms)");
            return -1;
        }
        return 1;
    }
    return 0; /* SPID, CUID, COOKIE and whatever later versions add */
}

/* An IPv4 or IPv6 address as text: only these go into rip=, so no peer-chosen byte
 * can reach the TAB-separated request. */
static int looks_like_ip(const char *s)
{
    if (!s || !*s || strlen(s) > 45) return 0;
    for (; *s; s++)
        if (!strchr("0123456789abcdefABCDEF:.", *s)) return 0;
    return 1;
}

char *dovecot_request_new(unsigned id, const char *user, const char *pass, const char *client_ip)
{
    /* RFC 4616: authzid (empty) NUL authcid NUL passwd. */
    size_t ulen = strlen(user), plen = strlen(pass);
    size_t rawlen = ulen + plen + 2;
    unsigned char *raw = xmalloc(rawlen);
    raw[0] = '\0';
    memcpy(raw + 1, user, ulen);
    raw[1 + ulen] = '\0';
    memcpy(raw + 2 + ulen, pass, plen);
    size_t b64size = (rawlen + 2) / 3 * 4 + 1;
    char *b64 = xmalloc(b64size);
    if (base64_encode(raw, rawlen, b64, b64size, NULL) != 0) abort(); /* sized above */
    explicit_bzero(raw, rawlen);
    free(raw);
    char rip[64] = "";
    if (looks_like_ip(client_ip)) {
        int n = snprintf(rip, sizeof rip, "\trip=%s", client_ip);
        if (n < 0 || (size_t)n >= sizeof rip) rip[0] = '\0';
    }
    /* secured: kurier itself decides whether AUTH may go without TLS (auth_plaintext),
     * so Dovecot's disable_plaintext_auth must not refuse it a second time.
     * no-penalty: kurier delays answers after failures itself (auth { }) on its event
     * loop; Dovecot's per-address penalty (up to 15s) would hold a worker thread. */
    char *req = xasprintf(
        "AUTH\t%u\tPLAIN\tservice=smtp\tnologin%s\tsecured\tno-penalty\tresp=%s\n", id, rip, b64);
    explicit_bzero(b64, strlen(b64));
    free(b64);
    return req;
}

/* Copy a Dovecot tab-escaped value (\001 followed by 1, t, r, n, 0) unescaped. */
static void unescape_into(char *dst, size_t dstsize, const char *src, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < dstsize; i++) {
        char ch = src[i];
        if (ch == '\001' && i + 1 < len) {
            char e = src[++i];
            ch = e == 't' ? '\t' : e == 'r' ? '\r' : e == 'n' ? '\n' : e == '1' ? '\001' : e;
        }
        dst[o++] = ch;
    }
    dst[o] = '\0';
}

enum dovecot_reply dovecot_reply_parse(const char *line, size_t len, unsigned id, char *reason,
                                       size_t reasonsize)
{
    if (reason && reasonsize) reason[0] = '\0';
    if (len && line[len - 1] == '\r') len--;
    struct fields fs = {line, line + len, 0};
    const char *f;
    size_t flen;
    next_field(&fs, &f, &flen);
    enum dovecot_reply kind;
    if (field_is(f, flen, "OK"))
        kind = DOVECOT_R_OK;
    else if (field_is(f, flen, "FAIL"))
        kind = DOVECOT_R_FAIL;
    else if (field_is(f, flen, "CONT"))
        kind = DOVECOT_R_CONT;
    else
        return DOVECOT_R_OTHER;
    if (!next_field(&fs, &f, &flen)) return DOVECOT_R_BAD;
    long long rid = field_uint(f, flen);
    if (rid < 0) return DOVECOT_R_BAD;
    if (rid != (long long)id) return DOVECOT_R_OTHER;
    if (kind == DOVECOT_R_CONT) return kind; /* the rest is the challenge */
    while (next_field(&fs, &f, &flen)) {
        if (kind == DOVECOT_R_FAIL &&
            (field_is(f, flen, "temp") || field_is(f, flen, "code=temp_fail")))
            kind = DOVECOT_R_TEMPFAIL;
        else if (flen >= 7 && memcmp(f, "reason=", 7) == 0 && reason && reasonsize)
            unescape_into(reason, reasonsize, f + 7, flen - 7);
    }
    return kind;
}

/* --- connections ------------------------------------------------------------------ */

static void conn_close(struct dv_conn *c)
{
    if (!c) return;
    if (c->fd >= 0) close(c->fd);
    free(c);
}

static int conn_send(struct dv_conn *c, const char *s, size_t len, char *err, size_t errsize)
{
    while (len > 0) {
        ssize_t n = send(c->fd, s, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            err_set(err, errsize, "write: %s",
                    (c->timed_out = errno == EAGAIN || errno == EWOULDBLOCK) ? "timed out"
                                                                             : strerror(errno));
            return -1;
        }
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One line into line and len (without the LF), valid until the next call. 0 done, -1
 * failed with err filled. */
static int conn_line(struct dv_conn *c, const char **line, size_t *len, char *err, size_t errsize)
{
    for (;;) {
        char *nl = memchr(c->buf + c->pos, '\n', c->len - c->pos);
        if (nl) {
            *line = c->buf + c->pos;
            *len = (size_t)(nl - *line);
            c->pos = (size_t)(nl - c->buf) + 1;
            return 0;
        }
        memmove(c->buf, c->buf + c->pos, c->len - c->pos);
        c->len -= c->pos;
        c->pos = 0;
        if (c->len == sizeof c->buf) {
            err_set(err, errsize, "line longer than %d bytes", DV_LINE);
            return -1;
        }
        ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n == 0)
            err_set(err, errsize, "connection closed by Dovecot");
        else
            err_set(err, errsize, "read: %s",
                    (c->timed_out = errno == EAGAIN || errno == EWOULDBLOCK) ? "timed out"
                                                                             : strerror(errno));
        return -1;
    }
}

static struct dv_conn *conn_open(const char *path, char *err, size_t errsize)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        err_set(err, errsize, "socket path too long");
        return NULL;
    }
    str_copy(sa.sun_path, path, sizeof sa.sun_path);
    struct dv_conn *c = xcalloc(1, sizeof *c);
    c->next_id = 1;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        err_set(err, errsize, "socket: %s", strerror(errno));
        conn_close(c);
        return NULL;
    }
    struct timeval tv = {.tv_sec = DV_TIMEOUT};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        err_set(err, errsize, "connect: %s", strerror(errno));
        conn_close(c);
        return NULL;
    }
    char hello[64];
    int n = snprintf(hello, sizeof hello, "VERSION\t1\t2\nCPID\t%ld\n", (long)getpid());
    if (n < 0 || (size_t)n >= sizeof hello || conn_send(c, hello, (size_t)n, err, errsize) != 0) {
        conn_close(c);
        return NULL;
    }
    struct dovecot_handshake h = {0};
    for (;;) {
        const char *line;
        size_t len;
        if (conn_line(c, &line, &len, err, errsize) != 0) {
            conn_close(c);
            return NULL;
        }
        int r = dovecot_handshake_line(&h, line, len, err, errsize);
        if (r < 0) {
            conn_close(c);
            return NULL;
        }
        if (r == 1) return c;
    }
}

/* One request on c, answered as dovecot_auth_check. After AUTH_TEMPFAIL, *broken is 0 when
 * Dovecot answered a temporary failure (c stays usable), 1 after a protocol error,
 * 2 when the connection failed (worth one retry on a fresh one). */
static enum auth_result conn_check(struct dv_conn *c, const char *user, const char *pass,
                                   const char *ip, int *broken, char *err, size_t errsize)
{
    *broken = 1;
    unsigned id = c->next_id++;
    char *req = dovecot_request_new(id, user, pass, ip);
    size_t reqlen = strlen(req);
    int r = conn_send(c, req, reqlen, err, errsize);
    explicit_bzero(req, reqlen);
    free(req);
    if (r != 0) {
        *broken = 2;
        return AUTH_TEMPFAIL;
    }
    for (;;) {
        const char *line;
        size_t len;
        if (conn_line(c, &line, &len, err, errsize) != 0) {
            *broken = 2;
            return AUTH_TEMPFAIL;
        }
        char reason[256];
        switch (dovecot_reply_parse(line, len, id, reason, sizeof reason)) {
        case DOVECOT_R_OK:
            return AUTH_OK;
        case DOVECOT_R_FAIL:
            return AUTH_DENIED;
        case DOVECOT_R_TEMPFAIL:
            err_set(err, errsize, "temporary failure: %s", reason[0] ? reason : "(no reason)");
            *broken = 0;
            return AUTH_TEMPFAIL;
        case DOVECOT_R_CONT:
            err_set(err, errsize, "unexpected challenge to PLAIN with a response");
            return AUTH_TEMPFAIL;
        case DOVECOT_R_BAD: {
            char esc[200];
            log_escape(esc, sizeof esc, line, len > 80 ? 80 : len);
            err_set(err, errsize, "bad reply \"%s\"", esc);
            return AUTH_TEMPFAIL;
        }
        case DOVECOT_R_OTHER:
            break;
        }
    }
}

/* --- public API ------------------------------------------------------------------- */

struct dovecot_auth *dovecot_auth_new(const char *socket_path)
{
    struct dovecot_auth *d = xcalloc(1, sizeof *d);
    d->path = xstrdup(socket_path);
    pthread_mutex_init(&d->lock, NULL);
    return d;
}

/* The most recently used idle connection, or NULL. Those idle longer than
 * DV_IDLE_TIME are closed; the pool is ordered newest first, so they are a tail. */
static struct dv_conn *take_idle(struct dovecot_auth *d)
{
    double now = time_mono();
    pthread_mutex_lock(&d->lock);
    struct dv_conn **pp = &d->idle;
    int fresh = 0;
    while (*pp && now - (*pp)->idle_since <= DV_IDLE_TIME) {
        pp = &(*pp)->next;
        fresh++;
    }
    struct dv_conn *stale = *pp;
    *pp = NULL;
    d->nidle = fresh;
    struct dv_conn *c = d->idle;
    if (c) {
        d->idle = c->next;
        d->nidle--;
    }
    pthread_mutex_unlock(&d->lock);
    while (stale) {
        struct dv_conn *next = stale->next;
        conn_close(stale);
        stale = next;
    }
    return c;
}

enum auth_result dovecot_auth_check(struct dovecot_auth *d, const char *user, const char *pass,
                                    const char *client_ip, char *err, size_t errsize)
{
    char why[256] = "";
    /* A pooled connection may have died with a Dovecot restart: then try once more
     * on a fresh one. A fresh connection's failure is final. */
    for (int attempt = 0; attempt < 2; attempt++) {
        struct dv_conn *c = take_idle(d);
        int pooled = c != NULL;
        if (!c) {
            c = conn_open(d->path, why, sizeof why);
            if (!c) break;
        }
        c->next = NULL;
        int broken;
        enum auth_result r = conn_check(c, user, pass, client_ip, &broken, why, sizeof why);
        if (r == AUTH_TEMPFAIL && broken) {
            int retry = broken == 2 && pooled && !c->timed_out;
            conn_close(c);
            if (retry) continue;
            break;
        }
        pthread_mutex_lock(&d->lock);
        if (d->nidle < DV_IDLE_MAX) {
            c->idle_since = time_mono();
            c->next = d->idle;
            d->idle = c;
            d->nidle++;
            c = NULL;
        }
        pthread_mutex_unlock(&d->lock);
        conn_close(c);
        if (r != AUTH_TEMPFAIL) return r;
        break;
    }
    err_set(err, errsize, "dovecot auth socket %s: %s", d->path, why);
    return AUTH_TEMPFAIL;
}

void dovecot_auth_free(struct dovecot_auth *d)
{
    if (!d) return;
    while (d->idle) {
        struct dv_conn *next = d->idle->next;
        conn_close(d->idle);
        d->idle = next;
    }
    pthread_mutex_destroy(&d->lock);
    free(d->path);
    free(d);
}
