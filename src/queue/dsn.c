/* dsn.c: delivery status notifications (RFC 3464) to the sender: bounce, delay notice,
 * success report, in English or German. Decides who may get one (no backscatter) and
 * queues it through the spool; when to send one is the scheduler's decision. */
#include "core/compat.h"

#include <errno.h>
#include <unistd.h>

#include "core/core.h"
#include "policy/policy.h"
#include "queue/dsn.h"
#include "queue/queue.h"

#define DSN_HEADERS_MAX (256 * 1024)    /* original header section returned at most */
#define DSN_FULL_MAX (10 * 1024 * 1024) /* RET=FULL above this returns headers only */
#define WRAP 72                         /* text part line width */

enum lang { LANG_EN = 0, LANG_DE };

/* ------------------------------------------------------------- helpers */

/* Replace control bytes with spaces (remote words go into header fields). */
static char *clean_dup(const char *s)
{
    char *o = xstrdup(s ? s : "");
    for (char *p = o; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
    return o;
}

static int is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 0;
    return 1;
}

static int has_8bit(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80) return 1;
    return 0;
}

/* The remote quote inside a diag text: "host NAME[IP] said: REPLY (in reply to X
 * command)". Fills the host name and the bare reply; 0 when diag has none. */
static int remote_parts(const char *diag, char *host, size_t hsize, char **reply)
{
    const char *h = NULL;
    for (const char *p = diag; p && (p = strstr(p, "host ")); p++)
        if (p == diag || p[-1] == ' ') {
            h = p;
            break;
        }
    if (!h) return 0;
    const char *said = strstr(h, " said: ");
    const char *br = strchr(h + 5, '[');
    if (!said || !br || br > said) return 0;
    size_t hl = (size_t)(br - (h + 5));
    if (hl >= hsize) hl = hsize - 1;
    memcpy(host, h + 5, hl);
    host[hl] = '\0';
    const char *r = said + 7;
    const char *end = strstr(r, " (in reply to ");
    *reply = end ? xstrndup(r, (size_t)(end - r)) : xstrdup(r);
    return 1;
}

/* Host name of a relay "mx.example.org[192.0.2.7]:25" ("" for "local" / NULL). */
static void relay_host(const char *relay, char *dst, size_t size)
{
    dst[0] = '\0';
    if (!relay || strcmp(relay, "local") == 0 || strcmp(relay, "none") == 0) return;
    const char *br = strchr(relay, '[');
    size_t n = br ? (size_t)(br - relay) : strlen(relay);
    if (n == 0 && br) { /* no name: use the address literal */
        const char *e = strchr(br, ']');
        n = e ? (size_t)(e - relay) + 1 : strlen(relay);
    }
    if (n >= size) n = size - 1;
    memcpy(dst, relay, n);
    dst[n] = '\0';
}

static void fmt_date(char *dst, size_t size, time_t t, enum lang lang)
{
    if (lang == LANG_EN) {
        time_rfc5322(dst, size, t);
        return;
    }
    struct tm tm;
    localtime_r(&t, &tm);
    if (strftime(dst, size, "%d.%m.%Y %H:%M (%z)", &tm) == 0 && size) dst[0] = '\0';
}

static void fmt_span(char *dst, size_t size, int secs, enum lang lang)
{
    int de = lang == LANG_DE;
    if (secs >= 86400 && secs % 86400 == 0)
        snprintf(dst, size, "%d %s", secs / 86400,
                 secs == 86400 ? (de ? "Tag" : "day") : (de ? "Tage" : "days"));
    else if (secs >= 3600 && secs % 3600 == 0)
        snprintf(dst, size, "%d %s", secs / 3600,
                 secs == 3600 ? (de ? "Stunde" : "hour") : (de ? "Stunden" : "hours"));
    else
        snprintf(dst, size, "%d %s", secs, de ? "Sekunden" : "seconds");
}

/* Fill a text's "%s" places with a, then b (texts are data, not printf formats). */
static char *fill(const char *tmpl, const char *a, const char *b)
{
    struct buf out;
    buf_init(&out, 0);
    const char *args[2] = {a, b};
    int k = 0;
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '%' && p[1] == 's') {
            buf_puts(&out, k < 2 && args[k] ? args[k] : "");
            k++;
            p++;
        } else {
            buf_append(&out, p, 1);
        }
    }
    return buf_take(&out);
}

/* Expand %H (hostname) and %L (lifetime) in a class text. */
static char *expand(const char *tmpl, const char *host, const char *life)
{
    struct buf b;
    buf_init(&b, 0);
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '%' && (p[1] == 'H' || p[1] == 'L')) {
            buf_puts(&b, p[1] == 'H' ? host : life);
            p++;
        } else {
            buf_append(&b, p, 1);
        }
    }
    return buf_take(&b);
}

/* Append text word-wrapped at WRAP columns with CRLF line ends; "\n" in text starts
 * a new line. indent applies to every line. Never splits a word. */
static void put_wrapped(struct buf *b, const char *text, int indent)
{
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t plen = nl ? (size_t)(nl - p) : strlen(p);
        size_t col = 0;
        int first = 1;
        size_t i = 0;
        if (plen == 0) buf_puts(b, "\r\n");
        while (i < plen) {
            while (i < plen && p[i] == ' ')
                i++;
            size_t w = i;
            while (w < plen && p[w] != ' ')
                w++;
            if (w == i) break;
            size_t wl = w - i;
            if (!first && col + 1 + wl > WRAP) {
                buf_puts(b, "\r\n");
                first = 1;
            }
            if (first) {
                buf_printf(b, "%*s", indent, "");
                col = (size_t)indent;
            } else {
                buf_puts(b, " ");
                col++;
            }
            buf_append(b, p + i, wl);
            col += wl;
            first = 0;
            i = w;
        }
        if (plen) buf_puts(b, "\r\n");
        if (!nl) break;
        p = nl + 1;
    }
}

/* Read up to max bytes of the original from offset 0. NULL when unreadable. */
static char *read_original(const struct spool_content *c, size_t max, size_t *len)
{
    if (!c || c->fd < 0) return NULL;
    if ((long long)max > c->len) max = (size_t)c->len;
    struct buf b;
    buf_init(&b, 0);
    char tmp[16384];
    off_t off = (off_t)c->off;
    while (b.len < max) {
        size_t want = max - b.len < sizeof tmp ? max - b.len : sizeof tmp;
        ssize_t r = pread(c->fd, tmp, want, off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            buf_release(&b);
            return NULL;
        }
        if (r == 0) break;
        buf_append(&b, tmp, (size_t)r);
        off += r;
    }
    *len = b.len;
    return buf_take(&b);
}

/* Append p[0..n) with every line ending as CRLF (bare LF or CR fixed). */
static void put_crlf(struct buf *b, const char *p, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\r' && p[i] != '\n') continue;
        buf_append(b, p + start, i - start);
        buf_puts(b, "\r\n");
        if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n') i++;
        start = i + 1;
    }
    buf_append(b, p + start, n - start);
    if (n && p[n - 1] != '\n' && p[n - 1] != '\r') buf_puts(b, "\r\n");
}

/* Length of the header section (through the empty line, or all of it). */
static size_t header_len(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') continue;
        if (i + 1 < n && p[i + 1] == '\n') return i + 1;
        if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n') return i + 1;
    }
    return n;
}

/* "rfc822;a@b" -> "rfc822; a@b" for Original-Recipient (RFC 3464 2.3.1). */
static char *orcpt_field(const char *orcpt)
{
    const char *semi = strchr(orcpt, ';');
    if (!semi) return xasprintf("rfc822; %s", orcpt);
    const char *a = semi + 1;
    while (*a == ' ')
        a++;
    return xasprintf("%.*s; %s", (int)(semi - orcpt), orcpt, a);
}

/* ---------------------------------------------------------- dsn_build */

static const char *action_name(enum dsn_kind kind, const struct spool_rcpt *r)
{
    if (kind == DSN_FAILED) return "failed";
    if (kind == DSN_DELAYED) return "delayed";
    return r->relay && strcmp(r->relay, "local") != 0 ? "relayed" : "delivered";
}

static void default_status(enum dsn_kind kind, const struct spool_rcpt *r, char *dst, size_t size)
{
    /* RFC 3463: the class digit follows the action; subject and detail are kept */
    char want = kind == DSN_FAILED ? '5' : kind == DSN_DELAYED ? '4' : '2';
    int c, s, d;
    if (!reply_parse_enh(r->dsn, &c, &s, &d) || (kind != DSN_DELIVERED && c == 2))
        snprintf(dst, size, "%c.0.0", want);
    else if (kind == DSN_DELIVERED && c != 2)
        str_copy(dst, "2.0.0", size);
    else
        snprintf(dst, size, "%c.%d.%d", want, s % 1000, d % 1000);
}

/* The human-readable part for one recipient. */
static void human_rcpt(struct buf *t, const struct texts *tx, const struct kconf *conf,
                       const struct spool_env *env, const struct spool_rcpt *r, enum dsn_kind kind,
                       enum lang lang)
{
    char *addr = clean_dup(r->addr);
    char *diag = r->diag ? clean_dup(r->diag) : NULL;
    const char *host = conf->hostname ? conf->hostname : "localhost";
    buf_printf(t, "<%s>:\n", addr);
    if (kind == DSN_DELIVERED) {
        char rh[300];
        relay_host(r->relay, rh, sizeof rh);
        if (rh[0]) {
            char *s = fill(tx->relayed, r->relay, NULL);
            char *c = clean_dup(s);
            put_wrapped(t, c, 4);
            free(c);
            free(s);
        } else {
            put_wrapped(t, tx->delivered_local, 4);
        }
    } else if (diag) {
        char rhost[300];
        char *reply = NULL;
        if (remote_parts(diag, rhost, sizeof rhost, &reply)) {
            put_wrapped(t, diag, 4); /* "host X[ip] said: 550 ... (in reply to RCPT TO command)" */
        } else {
            char *s = fill(tx->we_said, host, NULL);
            char *line =
                xasprintf("%s %s%s%s", s, r->dsn[0] ? r->dsn : "", r->dsn[0] ? " " : "", diag);
            put_wrapped(t, line, 4);
            free(line);
            free(s);
        }
        free(reply);
    }
    if (kind != DSN_DELIVERED) {
        enum dsn_class cl = reply_classify(r->dsn, diag);
        /* expiry: also explain what the last error was about (a blocklist, say) */
        const char *last = diag ? strstr(diag, "last error: ") : NULL;
        enum dsn_class cl2 = cl == CL_EXPIRED && last ? reply_classify(NULL, last + 12) : CL_NONE;
        if (cl2 == CL_PERM_OTHER) cl2 = CL_NONE;
        /* our blocked addresses, not the recipient's server, kept it: say only that */
        if (cl2 == CL_POOL_BLOCKED) cl = CL_NONE;
        /* while we retry, only say what helps now; the rest is in the retry text */
        if (kind == DSN_DELAYED && cl != CL_FULL && cl != CL_BLOCKED && cl != CL_SIZE &&
            cl != CL_POOL_BLOCKED)
            cl = CL_NONE;
        char life[64];
        fmt_span(life, sizeof life, conf->lifetime > 0 ? conf->lifetime : 5 * 86400, lang);
        enum dsn_class list[2] = {cl, cl2};
        for (int k = 0; k < 2; k++) {
            if (list[k] == CL_NONE || !tx->cls[list[k]]) continue;
            int blocked = list[k] == CL_BLOCKED || list[k] == CL_POOL_BLOCKED;
            const char *tm = kind == DSN_DELAYED && blocked ? tx->blocked_delay : tx->cls[list[k]];
            char *s = expand(tm, host, life);
            buf_puts(t, "\n");
            put_wrapped(t, s, 4);
            free(s);
            if (blocked && diag && strcasestr(diag, "http")) put_wrapped(t, tx->url, 4);
        }
        if (kind == DSN_DELAYED) {
            char until[64] = "";
            fmt_date(until, sizeof until, env->arrival + (conf->lifetime > 0 ? conf->lifetime : 0),
                     lang);
            char *s = fill(tx->temp, until, NULL);
            buf_puts(t, "\n");
            put_wrapped(t, s, 4);
            free(s);
        }
    }
    buf_puts(t, "\n");
    free(addr);
    free(diag);
}

static void status_rcpt(struct buf *b, const struct kconf *conf, const struct spool_env *env,
                        const struct spool_rcpt *r, enum dsn_kind kind)
{
    char date[64], status[16], rh[300] = "";
    char *reply = NULL;
    buf_puts(b, "\r\n");
    if (r->orcpt) {
        char *o = orcpt_field(r->orcpt);
        char *c = clean_dup(o);
        mime_put_field(b, "Original-Recipient", c);
        free(c);
        free(o);
    }
    char *addr = clean_dup(r->addr);
    char *fr = xasprintf("%s; %s", is_ascii(addr) ? "rfc822" : "utf-8", addr);
    mime_put_field(b, "Final-Recipient", fr);
    free(fr);
    free(addr);
    buf_printf(b, "Action: %s\r\n", action_name(kind, r));
    default_status(kind, r, status, sizeof status);
    buf_printf(b, "Status: %s\r\n", status);
    char *diag = r->diag ? clean_dup(r->diag) : NULL;
    int remote = diag && remote_parts(diag, rh, sizeof rh, &reply);
    if (!rh[0]) relay_host(r->relay, rh, sizeof rh);
    if (rh[0]) {
        char *m = xasprintf("dns; %s", rh);
        mime_put_field(b, "Remote-MTA", m);
        free(m);
    }
    if (remote) {
        char *d = xasprintf("smtp; %s", reply);
        mime_put_field(b, "Diagnostic-Code", d);
        free(d);
    } else if (diag && kind != DSN_DELIVERED) {
        char *d = xasprintf("X-Kurier; %s", diag);
        mime_put_field(b, "Diagnostic-Code", d);
        free(d);
    }
    if (r->last_try) {
        time_rfc5322(date, sizeof date, r->last_try);
        buf_printf(b, "Last-Attempt-Date: %s\r\n", date);
    }
    if (kind == DSN_DELAYED && conf->lifetime > 0) {
        time_rfc5322(date, sizeof date, env->arrival + conf->lifetime);
        buf_printf(b, "Will-Retry-Until: %s\r\n", date);
    }
    free(reply);
    free(diag);
}

char *dsn_build(const struct kconf *conf, const struct spool_env *env,
                const struct spool_content *content, enum dsn_kind kind, const size_t *idx,
                size_t n, size_t *len)
{
    if (n == 0 || kind < DSN_FAILED || kind > DSN_DELIVERED) return NULL;
    for (size_t i = 0; i < n; i++)
        if (idx[i] >= env->nrcpts) return NULL;
    enum lang lang = conf->locale && strcmp(conf->locale, "de") == 0 ? LANG_DE : LANG_EN;
    const struct texts *tx = lang == LANG_DE ? &dsn_texts_de : &dsn_texts_en;
    const char *host = conf->hostname ? conf->hostname : "localhost";
    char date[64], uniq[QUEUE_ID_LEN + 1];
    spool_new_id(uniq);

    /* the original: headers, or all of it for a bounce with RET=FULL */
    int full = kind == DSN_FAILED && env->ret == SMTP_RET_FULL;
    size_t olen = 0;
    char *orig = read_original(content, full ? DSN_FULL_MAX + 1 : DSN_HEADERS_MAX, &olen);
    int too_big = 0;
    if (orig && full && olen > DSN_FULL_MAX) {
        full = 0;
        too_big = 1;
    }
    if (orig && !full) olen = header_len(orig, olen);

    /* part 1: for people */
    struct buf t;
    buf_init(&t, 0);
    char *intro = fill(tx->intro[kind], host, NULL);
    put_wrapped(&t, intro, 0);
    free(intro);
    buf_puts(&t, "\r\n");
    fmt_date(date, sizeof date, env->arrival, lang);
    char *ml = fill(tx->msg_line, date, env->id);
    put_wrapped(&t, ml, 0);
    free(ml);
    if (too_big) put_wrapped(&t, tx->headers_only, 0);
    if (!orig) put_wrapped(&t, tx->no_content, 0);
    buf_puts(&t, "\r\n");
    for (size_t i = 0; i < n; i++) {
        struct buf one;
        buf_init(&one, 0);
        human_rcpt(&one, tx, conf, env, &env->rcpts[idx[i]], kind, lang);
        put_crlf(&t, one.data, one.len);
        buf_release(&one);
    }

    /* the message */
    struct buf b;
    buf_init(&b, 0);
    char boundary[128];
    snprintf(boundary, sizeof boundary, "%s.%s/%s", env->id, uniq, host);
    time_rfc5322(date, sizeof date, time(NULL));
    buf_printf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", host);
    char *to = clean_dup(env->sender);
    buf_printf(&b, "To: <%s>\r\n", to);
    free(to);
    buf_puts(&b, "Subject: ");
    if (is_ascii(tx->subject[kind]))
        buf_puts(&b, tx->subject[kind]);
    else
        mime_put_encoded_words(&b, tx->subject[kind]);
    buf_puts(&b, "\r\n");
    buf_printf(&b, "Date: %s\r\n", date);
    buf_printf(&b, "Message-ID: <%s.%s@%s>\r\n", uniq, env->id, host);
    buf_puts(&b, "Auto-Submitted: auto-replied\r\n");
    buf_puts(&b, "MIME-Version: 1.0\r\n");
    buf_printf(&b,
               "Content-Type: multipart/report; report-type=delivery-status;\r\n"
               "\tboundary=\"%s\"\r\n",
               boundary);
    buf_puts(&b, "Content-Language: ");
    buf_puts(&b, lang == LANG_DE ? "de" : "en");
    buf_puts(&b, "\r\n\r\nThis is a MIME-encapsulated message.\r\n\r\n");

    buf_printf(&b, "--%s\r\n", boundary);
    buf_puts(&b, "Content-Description: Notification\r\n");
    buf_puts(&b, "Content-Type: text/plain; charset=utf-8\r\n");
    if (has_8bit(t.data, t.len)) {
        buf_puts(&b, "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
        mime_put_qp(&b, t.data, t.len);
    } else {
        buf_puts(&b, "Content-Transfer-Encoding: 7bit\r\n\r\n");
        buf_append(&b, t.data, t.len);
    }
    buf_release(&t);

    /* part 2: for machines (RFC 3464 2.2, 2.3) */
    buf_printf(&b, "\r\n--%s\r\n", boundary);
    buf_puts(&b, "Content-Description: Delivery report\r\n");
    buf_puts(&b, "Content-Type: message/delivery-status\r\n\r\n");
    buf_printf(&b, "Reporting-MTA: dns; %s\r\n", host);
    buf_printf(&b, "X-Kurier-Queue-ID: %s\r\n", env->id);
    char *snd = clean_dup(env->sender);
    buf_printf(&b, "X-Kurier-Sender: %s; %s\r\n", is_ascii(snd) ? "rfc822" : "utf-8", snd);
    free(snd);
    if (env->envid) {
        char *e = clean_dup(env->envid);
        mime_put_field(&b, "Original-Envelope-Id", e);
        free(e);
    }
    time_rfc5322(date, sizeof date, env->arrival);
    buf_printf(&b, "Arrival-Date: %s\r\n", date);
    for (size_t i = 0; i < n; i++)
        status_rcpt(&b, conf, env, &env->rcpts[idx[i]], kind);

    /* part 3: the original */
    buf_printf(&b, "\r\n--%s\r\n", boundary);
    if (orig) {
        buf_printf(&b, "Content-Description: %s\r\n",
                   full ? "Undelivered Message" : "Message Headers");
        buf_printf(&b, "Content-Type: %s\r\n", full ? "message/rfc822" : "text/rfc822-headers");
        if (has_8bit(orig, olen)) buf_puts(&b, "Content-Transfer-Encoding: 8bit\r\n");
        buf_puts(&b, "\r\n");
        put_crlf(&b, orig, olen);
    } else {
        buf_puts(&b, "Content-Description: Message Headers\r\n");
        buf_puts(&b, "Content-Type: text/rfc822-headers\r\n\r\n");
    }
    free(orig);
    buf_printf(&b, "\r\n--%s--\r\n", boundary);
    *len = b.len;
    return buf_take(&b);
}

/* ---------------------------------------------------------- policy */

int dsn_wanted(const struct spool_rcpt *r, enum dsn_kind kind)
{
    if (r->notified & DSN_BIT(kind)) return 0;
    if (r->notify & SMTP_NOTIFY_NEVER) return 0;
    unsigned bit = kind == DSN_FAILED    ? SMTP_NOTIFY_FAILURE
                   : kind == DSN_DELAYED ? SMTP_NOTIFY_DELAY
                                         : SMTP_NOTIFY_SUCCESS;
    if (r->notify) return (r->notify & bit) != 0;
    return kind != DSN_DELIVERED; /* RFC 3461 4.1: default FAILURE (and DELAY, at our choice) */
}

int dsn_allowed(const struct spool_env *env, const char **why)
{
    return policy_dsn_allowed(!env->sender || !*env->sender, env->dsn_trusted, why);
}

size_t dsn_pending(const struct spool_env *env, enum dsn_kind kind, size_t *idx)
{
    enum rcpt_state want = kind == DSN_FAILED    ? RCPT_ST_BOUNCED
                           : kind == DSN_DELAYED ? RCPT_ST_QUEUED
                                                 : RCPT_ST_SENT;
    size_t n = 0;
    for (size_t i = 0; i < env->nrcpts; i++)
        if (env->rcpts[i].state == want && dsn_wanted(&env->rcpts[i], kind)) idx[n++] = i;
    return n;
}

const char *dsn_kind_notice(enum dsn_kind kind)
{
    switch (kind) {
    case DSN_FAILED:
        return "non-delivery";
    case DSN_DELAYED:
        return "delay";
    case DSN_DELIVERED:
        return "delivery status";
    }
    return "delivery status";
}

/* ---------------------------------------------------------- dsn_queue */

struct dsn_req {
    struct spool *s;
    const struct kconf *conf; /* a reference */
    struct spool_env *env;    /* our copy */
    enum dsn_kind kind;
    size_t *idx, n;
    struct work_job *job; /* while building */
    int committing;       /* handed to the spool: only done may be dropped */
    char *text;
    size_t len;
    void (*done)(void *arg, const char *new_id);
    void *arg;
    struct spool_env *out; /* the DSN's envelope while it is committed */
};

static void req_free(struct dsn_req *r)
{
    spool_env_free(r->env);
    spool_env_free(r->out);
    free(r->idx);
    free(r->text);
    conf_unref(r->conf);
    free(r);
}

/* Worker: read the original and build the text. */
static void build_run(void *arg)
{
    struct dsn_req *r = arg;
    struct spool_content c;
    int have = spool_open_content(r->s, r->env->id, &c) == 0;
    r->text = dsn_build(r->conf, r->env, have ? &c : NULL, r->kind, r->idx, r->n, &r->len);
    if (have) close(c.fd);
}

static void commit_done(void *arg, int ok)
{
    struct dsn_req *r = arg;
    const char *id = ok ? r->out->id : NULL;
    if (ok)
        log_info("bounce", "%s: sender %s notification: %s", r->env->id, dsn_kind_notice(r->kind),
                 r->out->id);
    else
        log_err("bounce", "%s: cannot queue the sender %s notification", r->env->id,
                dsn_kind_notice(r->kind));
    if (r->done) r->done(r->arg, id);
    req_free(r);
}

static void fail(struct dsn_req *r, const char *why)
{
    log_err("bounce", "%s: cannot queue the sender %s notification: %s", r->env->id,
            dsn_kind_notice(r->kind), why);
    if (r->done) r->done(r->arg, NULL);
    req_free(r);
}

/* Loop thread: write the DSN into the spool and commit it. */
static void build_done(void *arg)
{
    struct dsn_req *r = arg;
    r->job = NULL;
    if (!r->text) {
        fail(r, "cannot build it");
        return;
    }
    struct spool_msg *m = spool_msg_new(r->s);
    if (!m) {
        fail(r, "cannot create a spool file");
        return;
    }
    char date[64];
    time_rfc5322(date, sizeof date, time(NULL));
    const char *host = r->conf->hostname ? r->conf->hostname : "localhost";
    char *hdr = xasprintf("Received: by %s (kurier, delivery report for %s)\r\n\tid %s; %s\r\n",
                          host, r->env->id, spool_msg_id(m), date);
    int w = spool_msg_write(m, hdr, strlen(hdr));
    free(hdr);
    if (w == 0) w = spool_msg_write(m, r->text, r->len);
    if (w != 0) {
        spool_msg_abort(m);
        fail(r, "cannot write the spool file");
        return;
    }
    struct spool_env *e = xcalloc(1, sizeof *e);
    e->sender = xstrdup(""); /* RFC 5321 4.5.5: a DSN has the null reverse-path */
    e->arrival = time(NULL);
    e->proto = xstrdup("local");
    e->body = has_8bit(r->text, r->len) ? SMTP_BODY_8BITMIME : SMTP_BODY_7BIT;
    e->smtputf8 = !is_ascii(r->env->sender);
    e->dsn_trusted = 0; /* a bounce never bounces */
    e->rcpts = xcalloc(1, sizeof *e->rcpts);
    e->nrcpts = 1;
    e->rcpts[0].addr = xstrdup(r->env->sender);
    e->rcpts[0].orig = xstrdup(r->env->sender);
    e->rcpts[0].notify = SMTP_NOTIFY_NEVER;
    e->rcpts[0].state = RCPT_ST_QUEUED;
    free(r->text);
    r->text = NULL;
    r->out = e;
    r->committing = 1;
    spool_msg_commit(m, e, commit_done, r);
}

struct dsn_req *dsn_queue(struct spool *s, const struct kconf *conf, const struct spool_env *env,
                          enum dsn_kind kind, const size_t *idx, size_t n,
                          void (*done)(void *arg, const char *new_id), void *arg)
{
    if (!dsn_allowed(env, NULL)) return NULL;
    size_t *keep = xcalloc(n ? n : 1, sizeof *keep), k = 0;
    for (size_t i = 0; i < n; i++)
        if (idx[i] < env->nrcpts && dsn_wanted(&env->rcpts[idx[i]], kind)) keep[k++] = idx[i];
    if (!k) {
        free(keep);
        return NULL;
    }
    struct dsn_req *r = xcalloc(1, sizeof *r);
    r->s = s;
    r->conf = conf_ref(conf);
    r->env = envelope_dup(env);
    r->kind = kind;
    r->idx = keep;
    r->n = k;
    r->done = done;
    r->arg = arg;
    r->job = work_submit(build_run, build_done, r);
    return r;
}

void dsn_cancel(struct dsn_req *r)
{
    if (!r) return;
    if (r->committing) { /* the spool owns the commit; its callback frees r */
        r->done = NULL;
        return;
    }
    if (r->job) work_cancel(r->job);
    req_free(r);
}
