/* envelope.c: the envelope of a queued message in memory (struct spool_env) and as
 * text (queue/ID.env: "key: value" lines, fuzzed). Pure: no files; the spool reads
 * and writes them. */
#include "core/compat.h"

#include "core/core.h"
#include "queue/queue.h"

const char *rcpt_state_name(enum rcpt_state s)
{
    switch (s) {
    case RCPT_ST_QUEUED:
        return "queued";
    case RCPT_ST_SENT:
        return "sent";
    case RCPT_ST_BOUNCED:
        return "bounced";
    }
    return "queued";
}

struct spool_env *spool_env_notice(const char *to, time_t arrival)
{
    struct spool_env *e = xcalloc(1, sizeof *e);
    e->sender = xstrdup("");
    e->arrival = arrival;
    e->proto = xstrdup("local");
    e->body = SMTP_BODY_7BIT;
    e->rcpts = xcalloc(1, sizeof *e->rcpts);
    e->nrcpts = 1;
    e->rcpts[0].addr = xstrdup(to);
    e->rcpts[0].orig = xstrdup(to);
    e->rcpts[0].notify = SMTP_NOTIFY_NEVER;
    e->rcpts[0].state = RCPT_ST_QUEUED;
    return e;
}

void spool_env_free(struct spool_env *e)
{
    if (!e) return;
    free(e->sender);
    free(e->client_name);
    free(e->client_addr);
    free(e->helo);
    free(e->proto);
    free(e->auth_user);
    free(e->listener);
    free(e->envid);
    for (size_t i = 0; i < e->nrcpts; i++) {
        free(e->rcpts[i].addr);
        free(e->rcpts[i].orig);
        free(e->rcpts[i].orcpt);
        free(e->rcpts[i].diag);
        free(e->rcpts[i].relay);
    }
    free(e->rcpts);
    free(e);
}

/* Escape a value: control bytes, DEL and '\\' as \xNN; with spaces also ' ' (for
 * fields separated by spaces) and '<' '>' '[' ']' inside brackets. Bytes >= 0x80
 * stay as they are, so UTF-8 addresses remain readable. */
static void put_esc(struct buf *b, const char *s, int spaces)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int esc = *p < 0x20 || *p == 0x7f || *p == '\\' ||
                  (spaces && (*p == ' ' || *p == '<' || *p == '>' || *p == '[' || *p == ']'));
        if (esc)
            buf_printf(b, "\\x%02X", *p);
        else
            buf_append(b, p, 1);
    }
}

static const char *body_name(int body)
{
    switch (body) {
    case SMTP_BODY_7BIT:
        return "7BIT";
    case SMTP_BODY_8BITMIME:
        return "8BITMIME";
    case SMTP_BODY_BINARYMIME:
        return "BINARYMIME";
    }
    return NULL;
}

static const char *ret_name(int ret)
{
    switch (ret) {
    case SMTP_RET_FULL:
        return "FULL";
    case SMTP_RET_HDRS:
        return "HDRS";
    }
    return NULL;
}

/* A flag set in the envelope: a comma list of names, each one bit. */
struct flag_name {
    const char *name;
    unsigned bit;
};
#define NFLAGS(t) (sizeof(t) / sizeof(t)[0])

static const struct flag_name notify_names[] = {
    {"NEVER", SMTP_NOTIFY_NEVER},
    {"SUCCESS", SMTP_NOTIFY_SUCCESS},
    {"FAILURE", SMTP_NOTIFY_FAILURE},
    {"DELAY", SMTP_NOTIFY_DELAY},
};

/* A relay as one space-free word that people still read: "mx.example.org[192.0.2.7]:25". */
static void put_esc_word(struct buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p <= 0x20 || *p == 0x7f || *p == '\\')
            buf_printf(b, "\\x%02X", *p);
        else
            buf_append(b, p, 1);
    }
}

static const struct flag_name notified_names[] = {
    {"failed", DSN_BIT(DSN_FAILED)},
    {"delayed", DSN_BIT(DSN_DELAYED)},
    {"delivered", DSN_BIT(DSN_DELIVERED)},
};

/* " key=NAME,NAME" for the bits set; nothing when none is. */
static void put_flags(struct buf *b, const char *key, const struct flag_name *t, size_t n,
                      unsigned bits)
{
    const char *sep = "=";
    if (!bits) return;
    buf_printf(b, " %s", key);
    for (size_t k = 0; k < n; k++) {
        if (!(bits & t[k].bit)) continue;
        buf_printf(b, "%s%s", sep, t[k].name);
        sep = ",";
    }
}

static void put_line(struct buf *b, const char *key, const char *val)
{
    if (!val) return;
    buf_printf(b, "%s: ", key);
    put_esc(b, val, 0);
    buf_puts(b, "\n");
}

char *spool_env_format(const struct spool_env *e)
{
    struct buf b;
    buf_init(&b, 0);
    char date[64];
    buf_printf(&b, "id: %s\n", e->id);
    buf_puts(&b, "sender: <");
    put_esc(&b, e->sender ? e->sender : "", 1);
    buf_puts(&b, ">\n");
    time_rfc5322(date, sizeof date, e->arrival);
    buf_printf(&b, "arrival: %lld (%s)\n", (long long)e->arrival, date);
    buf_printf(&b, "size: %zu\n", e->size);
    if ((e->client_name && *e->client_name) || (e->client_addr && *e->client_addr)) {
        buf_puts(&b, "client: ");
        put_esc(&b, e->client_name ? e->client_name : "", 1);
        buf_puts(&b, " [");
        put_esc(&b, e->client_addr ? e->client_addr : "", 1);
        buf_puts(&b, "]\n");
    }
    put_line(&b, "helo", e->helo);
    put_line(&b, "proto", e->proto);
    put_line(&b, "auth", e->auth_user);
    put_line(&b, "listener", e->listener);
    put_line(&b, "envid", e->envid);
    if (ret_name(e->ret)) buf_printf(&b, "ret: %s\n", ret_name(e->ret));
    if (body_name(e->body)) buf_printf(&b, "body: %s\n", body_name(e->body));
    if (e->smtputf8) buf_puts(&b, "smtputf8: 1\n");
    if (e->held) buf_puts(&b, "held: 1\n");
    if (e->delay_warned) buf_puts(&b, "delay_warned: 1\n");
    if (e->dsn_trusted) buf_puts(&b, "dsn_trusted: 1\n");
    if (e->no_forward) buf_puts(&b, "no_forward: 1\n");
    for (size_t i = 0; i < e->nrcpts; i++) {
        const struct spool_rcpt *r = &e->rcpts[i];
        buf_puts(&b, "rcpt: <");
        put_esc(&b, r->addr ? r->addr : "", 1);
        buf_puts(&b, ">");
        if (r->orig) {
            buf_puts(&b, " orig=<");
            put_esc(&b, r->orig, 1);
            buf_puts(&b, ">");
        }
        if (r->orcpt) {
            buf_puts(&b, " orcpt=");
            put_esc(&b, r->orcpt, 1);
        }
        put_flags(&b, "notify", notify_names, NFLAGS(notify_names), r->notify);
        buf_printf(&b, " state=%s attempts=%d next=%lld", rcpt_state_name(r->state), r->attempts,
                   (long long)r->next_try);
        if (r->last_try) buf_printf(&b, " last=%lld", (long long)r->last_try);
        if (r->relay) {
            buf_puts(&b, " relay=");
            put_esc_word(&b, r->relay);
        }
        put_flags(&b, "notified", notified_names, NFLAGS(notified_names), r->notified);
        if (r->dsn[0]) {
            buf_puts(&b, " dsn=");
            put_esc(&b, r->dsn, 1);
        }
        if (r->diag) { /* last: the rest of the line, spaces kept for people */
            buf_puts(&b, " diag=");
            put_esc(&b, r->diag, 0);
        }
        buf_puts(&b, "\n");
    }
    return buf_take(&b);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Unescape p[0..len) into a new string. NULL when an escape is bad or decodes to
 * NUL (values are C strings). */
static char *unesc(const char *p, size_t len)
{
    char *out = xmalloc(len + 1), *o = out;
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '\\') {
            if (p[i] == '\0') goto bad;
            *o++ = p[i];
            continue;
        }
        /* an escape is 4 bytes, p[i..i+3], all inside the value */
        if (len - i < 4 || p[i + 1] != 'x') goto bad;
        int h = hexval((unsigned char)p[i + 2]), l = hexval((unsigned char)p[i + 3]);
        if (h < 0 || l < 0 || (h == 0 && l == 0)) goto bad;
        *o++ = (char)(h * 16 + l);
        i += 3;
    }
    *o = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

char *spool_unescape(const char *p, size_t len)
{
    return unesc(p, len);
}

static int parse_ll(const char *p, size_t len, long long max, long long *out)
{
    if (len == 0 || len > 19) return -1;
    long long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        int d = p[i] - '0';
        if (v > (max - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* "<escaped>" -> new string, or NULL */
static char *unesc_bracket(const char *p, size_t len)
{
    if (len < 2 || p[0] != '<' || p[len - 1] != '>') return NULL;
    return unesc(p + 1, len - 2);
}

static int set_str(char **dst, char *v)
{
    if (!v) return -1;
    if (*dst) { /* duplicate key */
        free(v);
        return -1;
    }
    *dst = v;
    return 0;
}

/* Parse "NAME,NAME" of table t: every name known, none twice, at least one. */
static int parse_flags(const char *p, size_t len, const struct flag_name *t, size_t nt,
                       unsigned *out)
{
    unsigned bits = 0;
    while (len) {
        const char *c = memchr(p, ',', len);
        size_t n = c ? (size_t)(c - p) : len;
        size_t k;
        for (k = 0; k < nt; k++)
            if (strlen(t[k].name) == n && memcmp(t[k].name, p, n) == 0) break;
        if (k == nt || (bits & t[k].bit)) return -1;
        bits |= t[k].bit;
        if (!c) break;
        if (n + 1 == len) return -1; /* trailing comma */
        p += n + 1;
        len -= n + 1;
    }
    if (!bits) return -1;
    *out = bits;
    return 0;
}

static int parse_rcpt(const char *p, size_t len, struct spool_env *e)
{
    struct spool_rcpt r = {0};
    int have_state = 0;
    size_t i = 0;
    while (i < len) {
        const char *sp = memchr(p + i, ' ', len - i);
        if (len - i > 5 && memcmp(p + i, "diag=", 5) == 0) sp = NULL; /* rest of line */
        size_t n = sp ? (size_t)(sp - (p + i)) : len - i;
        const char *f = p + i;
        if (n == 0) goto bad;
        if (f == p) { /* the address comes first */
            if (!(r.addr = unesc_bracket(f, n))) goto bad;
        } else {
            const char *eq = memchr(f, '=', n);
            if (!eq) goto bad;
            size_t kl = (size_t)(eq - f);
            const char *v = eq + 1;
            size_t vl = n - kl - 1;
            long long num;
#define KEY(k) (kl == sizeof(k) - 1 && memcmp(f, k, kl) == 0)
            if (KEY("orig")) {
                if (set_str(&r.orig, unesc_bracket(v, vl))) goto bad;
            } else if (KEY("orcpt")) {
                if (set_str(&r.orcpt, unesc(v, vl))) goto bad;
            } else if (KEY("notify")) {
                if (r.notify || parse_flags(v, vl, notify_names, NFLAGS(notify_names), &r.notify))
                    goto bad;
            } else if (KEY("state")) {
                if (have_state++) goto bad;
                if (vl == 6 && memcmp(v, "queued", 6) == 0)
                    r.state = RCPT_ST_QUEUED;
                else if (vl == 4 && memcmp(v, "sent", 4) == 0)
                    r.state = RCPT_ST_SENT;
                else if (vl == 7 && memcmp(v, "bounced", 7) == 0)
                    r.state = RCPT_ST_BOUNCED;
                else
                    goto bad;
            } else if (KEY("attempts")) {
                if (parse_ll(v, vl, 1000000000, &num)) goto bad;
                r.attempts = (int)num;
            } else if (KEY("next")) {
                if (parse_ll(v, vl, (long long)1 << 40, &num)) goto bad;
                r.next_try = (time_t)num;
            } else if (KEY("last")) {
                if (r.last_try || parse_ll(v, vl, (long long)1 << 40, &num) || !num) goto bad;
                r.last_try = (time_t)num;
            } else if (KEY("relay")) {
                if (set_str(&r.relay, unesc(v, vl))) goto bad;
            } else if (KEY("notified")) {
                if (r.notified ||
                    parse_flags(v, vl, notified_names, NFLAGS(notified_names), &r.notified))
                    goto bad;
            } else if (KEY("dsn")) {
                char *d = unesc(v, vl);
                if (!d || strlen(d) >= sizeof r.dsn || r.dsn[0] || !d[0]) {
                    free(d);
                    goto bad;
                }
                str_copy(r.dsn, d, sizeof r.dsn);
                free(d);
            } else if (KEY("diag")) {
                if (set_str(&r.diag, unesc(v, vl))) goto bad;
            } else {
                goto bad;
            }
#undef KEY
        }
        i += n + (sp ? 1 : 0);
        if (sp && i == len) goto bad; /* trailing space */
    }
    if (!r.addr) goto bad;
    e->rcpts = xrealloc(e->rcpts, (e->nrcpts + 1) * sizeof *e->rcpts);
    e->rcpts[e->nrcpts++] = r;
    return 0;
bad:
    free(r.addr);
    free(r.orig);
    free(r.orcpt);
    free(r.diag);
    free(r.relay);
    return -1;
}

static int parse_flag(const char *v, size_t vl, int *dst)
{
    if (*dst || vl != 1 || (v[0] != '0' && v[0] != '1')) return -1;
    *dst = v[0] == '1';
    return 0;
}

static int parse_line(const char *p, size_t len, struct spool_env *e, int *seen)
{
    const char *colon = memchr(p, ':', len);
    if (!colon || (size_t)(colon - p) + 1 >= len || colon[1] != ' ') return -1;
    size_t kl = (size_t)(colon - p);
    const char *v = colon + 2;
    size_t vl = len - kl - 2;
    long long num;
#define KEY(k) (kl == sizeof(k) - 1 && memcmp(p, k, kl) == 0)
    if (KEY("rcpt")) return parse_rcpt(v, vl, e);
    if (KEY("id")) {
        if (*seen & 1 || vl != QUEUE_ID_LEN) return -1;
        memcpy(e->id, v, vl);
        e->id[vl] = '\0';
        if (!spool_id_valid(e->id)) return -1;
        *seen |= 1;
        return 0;
    }
    if (KEY("sender")) {
        if (set_str(&e->sender, unesc_bracket(v, vl))) return -1;
        *seen |= 2;
        return 0;
    }
    if (KEY("arrival")) {
        if (*seen & 4) return -1;
        const char *sp = memchr(v, ' ', vl);
        size_t nl = sp ? (size_t)(sp - v) : vl;
        if (parse_ll(v, nl, (long long)1 << 40, &num)) return -1;
        e->arrival = (time_t)num; /* the "(date)" after it is for people */
        *seen |= 4;
        return 0;
    }
    if (KEY("size")) {
        if (*seen & 8 || parse_ll(v, vl, (long long)1 << 50, &num)) return -1;
        e->size = (size_t)num;
        *seen |= 8;
        return 0;
    }
    if (KEY("client")) {
        /* "NAME [ADDR]": both escaped with spaces and brackets, so split at " [" */
        const char *sp = memchr(v, ' ', vl);
        if (!sp || e->client_name || e->client_addr) return -1;
        size_t nl = (size_t)(sp - v);
        const char *a = sp + 1;
        size_t al = vl - nl - 1;
        if (al < 2 || a[0] != '[' || a[al - 1] != ']') return -1;
        char *name = unesc(v, nl), *addr = unesc(a + 1, al - 2);
        if (!name || !addr || (!*name && !*addr)) {
            free(name);
            free(addr);
            return -1;
        }
        if (*name)
            e->client_name = name;
        else
            free(name);
        if (*addr)
            e->client_addr = addr;
        else
            free(addr);
        return 0;
    }
    if (KEY("helo")) return set_str(&e->helo, unesc(v, vl));
    if (KEY("proto")) return set_str(&e->proto, unesc(v, vl));
    if (KEY("auth")) return set_str(&e->auth_user, unesc(v, vl));
    if (KEY("listener")) return set_str(&e->listener, unesc(v, vl));
    if (KEY("envid")) return set_str(&e->envid, unesc(v, vl));
    if (KEY("ret")) {
        if (e->ret) return -1;
        if (vl == 4 && memcmp(v, "FULL", 4) == 0)
            e->ret = SMTP_RET_FULL;
        else if (vl == 4 && memcmp(v, "HDRS", 4) == 0)
            e->ret = SMTP_RET_HDRS;
        else
            return -1;
        return 0;
    }
    if (KEY("body")) {
        if (e->body) return -1;
        for (int b = SMTP_BODY_7BIT; b <= SMTP_BODY_BINARYMIME; b++) {
            const char *n = body_name(b);
            if (strlen(n) == vl && memcmp(n, v, vl) == 0) {
                e->body = b;
                return 0;
            }
        }
        return -1;
    }
    if (KEY("smtputf8")) return parse_flag(v, vl, &e->smtputf8);
    if (KEY("held")) return parse_flag(v, vl, &e->held);
    if (KEY("delay_warned")) return parse_flag(v, vl, &e->delay_warned);
    if (KEY("dsn_trusted")) return parse_flag(v, vl, &e->dsn_trusted);
    if (KEY("no_forward")) return parse_flag(v, vl, &e->no_forward);
#undef KEY
    return -1;
}

int spool_env_parse(const char *text, size_t len, struct spool_env *out, int *bad_line)
{
    memset(out, 0, sizeof *out);
    int seen = 0, line = 0;
    size_t i = 0;
    while (i < len) {
        line++;
        const char *nl = memchr(text + i, '\n', len - i);
        if (!nl) goto bad; /* every line ends with LF */
        size_t n = (size_t)(nl - (text + i));
        if (n == 0 || parse_line(text + i, n, out, &seen) != 0) goto bad;
        i += n + 1;
    }
    if ((seen & 3) != 3) { /* id and sender are required */
        line++;
        goto bad;
    }
    return 0;
bad:
    if (bad_line) *bad_line = line;
    /* free the members but keep out itself (the caller's) */
    struct spool_env *tmp = xmalloc(sizeof *tmp);
    *tmp = *out;
    spool_env_free(tmp);
    memset(out, 0, sizeof *out);
    return -1;
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

struct spool_env *envelope_dup(const struct spool_env *e)
{
    struct spool_env *d = xmalloc(sizeof *d);
    *d = *e;
    d->sender = dup_or_null(e->sender);
    d->client_name = dup_or_null(e->client_name);
    d->client_addr = dup_or_null(e->client_addr);
    d->helo = dup_or_null(e->helo);
    d->proto = dup_or_null(e->proto);
    d->auth_user = dup_or_null(e->auth_user);
    d->listener = dup_or_null(e->listener);
    d->envid = dup_or_null(e->envid);
    d->rcpts = xcalloc(e->nrcpts ? e->nrcpts : 1, sizeof *d->rcpts);
    for (size_t i = 0; i < e->nrcpts; i++) {
        struct spool_rcpt *r = &d->rcpts[i];
        *r = e->rcpts[i];
        r->addr = dup_or_null(r->addr);
        r->orig = dup_or_null(r->orig);
        r->orcpt = dup_or_null(r->orcpt);
        r->diag = dup_or_null(r->diag);
        r->relay = dup_or_null(r->relay);
    }
    return d;
}
