/* parse.c: pure SMTP parsers: command lines with ESMTP parameters, xtext, and the
 * smuggling-safe DATA/BDAT byte scanner. No I/O, no globals; the session (server.c)
 * decides what to do with the results. */
#include "core/compat.h"

#include <limits.h>
#include <stdarg.h>
#include <strings.h>

#include "core/core.h"
#include "smtp/smtp.h"

static const char *const verb_names[SMTP_V_COUNT] = {
    [SMTP_V_UNKNOWN] = "UNKNOWN", [SMTP_V_HELO] = "HELO",         [SMTP_V_EHLO] = "EHLO",
    [SMTP_V_MAIL] = "MAIL",       [SMTP_V_RCPT] = "RCPT",         [SMTP_V_DATA] = "DATA",
    [SMTP_V_BDAT] = "BDAT",       [SMTP_V_RSET] = "RSET",         [SMTP_V_NOOP] = "NOOP",
    [SMTP_V_QUIT] = "QUIT",       [SMTP_V_HELP] = "HELP",         [SMTP_V_VRFY] = "VRFY",
    [SMTP_V_EXPN] = "EXPN",       [SMTP_V_STARTTLS] = "STARTTLS", [SMTP_V_AUTH] = "AUTH",
};

const char *smtp_verb_name(enum smtp_verb v)
{
    if ((int)v < 0 || v >= SMTP_V_COUNT) return "UNKNOWN";
    return verb_names[v];
}

void smtp_cmd_clear(struct smtp_cmd *cmd)
{
    if (!cmd) return;
    free(cmd->arg);
    addr_clear(&cmd->path);
    free(cmd->envid);
    free(cmd->auth);
    free(cmd->orcpt);
    memset(cmd, 0, sizeof *cmd);
    cmd->size = -1;
}

static int set_err(struct smtp_err *err, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int set_err(struct smtp_err *err, int code, const char *enh, const char *fmt, ...)
{
    va_list ap;
    err->code = code;
    err->enh = enh;
    va_start(ap, fmt);
    if (vsnprintf(err->text, sizeof err->text, fmt, ap) < 0) err->text[0] = '\0';
    va_end(ap);
    return -1;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* RFC 3461 4: xtext = *( xchar / hexchar ); xchar is "!".."~" except "+" and "=". */
char *smtp_xtext_decode(const char *p, size_t len)
{
    char *out = xmalloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '+') {
            int h, l;
            if (len - i < 3) goto bad;
            h = hexval((unsigned char)p[i + 1]);
            l = hexval((unsigned char)p[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0)) goto bad;
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else if (c >= '!' && c <= '~' && c != '=') {
            out[o++] = (char)c;
        } else
            goto bad;
    }
    out[o] = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

/* Parse an unsigned decimal of 1..20 digits; -1 when empty, not digits or over max. */
static int parse_ull(const char *p, size_t len, unsigned long long max, unsigned long long *out)
{
    unsigned long long v = 0;
    if (len == 0) return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned d;
        if (p[i] < '0' || p[i] > '9') return -1;
        d = (unsigned)(p[i] - '0');
        if (v > (max - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int word_is(const char *p, size_t len, const char *w)
{
    return strlen(w) == len && strncasecmp(p, w, len) == 0;
}

/* RFC 3461 4.1 NOTIFY="NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" ). */
static int parse_notify(const char *p, size_t len, unsigned *out)
{
    unsigned v = 0;
    size_t i = 0;
    if (word_is(p, len, "NEVER")) {
        *out = SMTP_NOTIFY_NEVER;
        return 0;
    }
    while (i <= len) {
        const char *c = memchr(p + i, ',', len - i);
        size_t n = c ? (size_t)(c - (p + i)) : len - i;
        if (word_is(p + i, n, "SUCCESS"))
            v |= SMTP_NOTIFY_SUCCESS;
        else if (word_is(p + i, n, "FAILURE"))
            v |= SMTP_NOTIFY_FAILURE;
        else if (word_is(p + i, n, "DELAY"))
            v |= SMTP_NOTIFY_DELAY;
        else
            return -1;
        i += n + 1;
        if (!c) break;
    }
    *out = v;
    return 0;
}

/* RFC 3461 4.2 ORCPT=addr-type ";" xtext; kept as "type;decoded". */
static char *parse_orcpt(const char *p, size_t len)
{
    const char *semi = memchr(p, ';', len);
    const char *type;
    char *dec, *res;
    size_t tl;
    if (!semi || len > 500) return NULL;
    tl = (size_t)(semi - p);
    if (word_is(p, tl, "rfc822"))
        type = "rfc822";
    else if (word_is(p, tl, "utf-8"))
        type = "utf-8";
    else
        return NULL;
    if (semi + 1 == p + len) return NULL;
    dec = smtp_xtext_decode(semi + 1, len - tl - 1);
    if (!dec) return NULL;
    res = xasprintf("%s;%s", type, dec);
    free(dec);
    return res;
}

enum {
    P_SIZE = 1,
    P_BODY = 2,
    P_SMTPUTF8 = 4,
    P_RET = 8,
    P_ENVID = 16,
    P_AUTH = 32,
    P_NOTIFY = 64,
    P_ORCPT = 128
};

static const struct {
    const char *name;
    unsigned bit;
    enum smtp_verb verb;
} param_table[] = {
    {"SIZE", P_SIZE, SMTP_V_MAIL},         {"BODY", P_BODY, SMTP_V_MAIL},
    {"SMTPUTF8", P_SMTPUTF8, SMTP_V_MAIL}, {"RET", P_RET, SMTP_V_MAIL},
    {"ENVID", P_ENVID, SMTP_V_MAIL},       {"AUTH", P_AUTH, SMTP_V_MAIL},
    {"NOTIFY", P_NOTIFY, SMTP_V_RCPT},     {"ORCPT", P_ORCPT, SMTP_V_RCPT},
};

/* One "KEYWORD[=value]" of MAIL or RCPT. */
static int parse_param(struct smtp_cmd *cmd, const char *p, size_t len, unsigned *seen,
                       struct smtp_err *err)
{
    const char *eq = memchr(p, '=', len);
    size_t kl = eq ? (size_t)(eq - p) : len;
    const char *v = eq ? eq + 1 : NULL;
    size_t vl = eq ? len - kl - 1 : 0;
    unsigned bit = 0;
    int kw_ok = kl > 0 && kl <= 32;

    for (size_t i = 0; i < kl && kw_ok; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c == '-' && i > 0)))
            kw_ok = 0;
    }
    if (!kw_ok) return set_err(err, 501, "5.5.4", "Malformed parameter; expected KEYWORD=value.");
    for (size_t i = 0; i < sizeof param_table / sizeof param_table[0]; i++)
        if (param_table[i].verb == cmd->verb && word_is(p, kl, param_table[i].name))
            bit = param_table[i].bit;
    if (!bit) return set_err(err, 555, "5.5.4", "Unsupported parameter %.*s.", (int)kl, p);
    if (*seen & bit) return set_err(err, 501, "5.5.4", "Duplicate parameter %.*s.", (int)kl, p);
    *seen |= bit;
    if (bit == P_SMTPUTF8) {
        if (v) return set_err(err, 501, "5.5.4", "SMTPUTF8 takes no value.");
        cmd->smtputf8 = 1;
        return 0;
    }
    if (!v || vl == 0)
        return set_err(err, 501, "5.5.4", "Parameter %.*s needs a value.", (int)kl, p);
    switch (bit) {
    case P_SIZE: {
        unsigned long long n;
        if (parse_ull(v, vl, LLONG_MAX, &n) < 0)
            return set_err(err, 501, "5.5.4", "SIZE must be a number of bytes.");
        cmd->size = (long long)n;
        return 0;
    }
    case P_BODY:
        if (word_is(v, vl, "7BIT"))
            cmd->body = SMTP_BODY_7BIT;
        else if (word_is(v, vl, "8BITMIME"))
            cmd->body = SMTP_BODY_8BITMIME;
        else if (word_is(v, vl, "BINARYMIME"))
            cmd->body = SMTP_BODY_BINARYMIME;
        else
            return set_err(err, 501, "5.5.4", "BODY must be 7BIT, 8BITMIME or BINARYMIME.");
        return 0;
    case P_RET:
        if (word_is(v, vl, "FULL"))
            cmd->ret = SMTP_RET_FULL;
        else if (word_is(v, vl, "HDRS"))
            cmd->ret = SMTP_RET_HDRS;
        else
            return set_err(err, 501, "5.5.4", "RET must be FULL or HDRS.");
        return 0;
    case P_ENVID:
        if (vl > 100 || !(cmd->envid = smtp_xtext_decode(v, vl)))
            return set_err(err, 501, "5.5.4", "ENVID must be xtext of at most 100 characters.");
        return 0;
    case P_AUTH:
        if (vl > 500 || !(cmd->auth = smtp_xtext_decode(v, vl)))
            return set_err(err, 501, "5.5.4", "AUTH= must be an xtext-encoded address or <>.");
        return 0;
    case P_NOTIFY:
        if (parse_notify(v, vl, &cmd->notify) < 0)
            return set_err(err, 501, "5.5.4",
                           "NOTIFY must be NEVER or a list of SUCCESS, FAILURE and DELAY.");
        return 0;
    case P_ORCPT:
        if (!(cmd->orcpt = parse_orcpt(v, vl)))
            return set_err(err, 501, "5.5.4",
                           "ORCPT must be rfc822; or utf-8; followed by an xtext address.");
        return 0;
    }
    return set_err(err, 501, "5.5.4", "Malformed parameter.");
}

/* MAIL FROM:<path> [params] or RCPT TO:<path> [params]; p is after the verb. */
static int parse_mail_rcpt(struct smtp_cmd *cmd, const char *p, size_t len, struct smtp_err *err)
{
    int mail = cmd->verb == SMTP_V_MAIL;
    const char *kw = mail ? "FROM:" : "TO:";
    size_t kl = strlen(kw), i;
    unsigned seen = 0;
    const char *aerr = "bad address";
    int n;

    if (len < kl || strncasecmp(p, kw, kl) != 0)
        return set_err(err, 501, "5.5.4",
                       mail ? "Syntax: MAIL FROM:<address> [parameters]"
                            : "Syntax: RCPT TO:<address> [parameters]");
    i = kl;
    /* RFC 5321 has no space after the colon; many clients send one. */
    while (i < len && p[i] == ' ')
        i++;
    n = addr_parse(p + i, len - i, ADDR_O_UTF8 | (mail ? ADDR_O_ALLOW_NULL : 0), &cmd->path, &aerr);
    if (n < 0 && !mail && len - i >= 12 && strncasecmp(p + i, "<postmaster>", 12) == 0) {
        /* RFC 5321 4.1.1.3: "<Postmaster>" without a domain must be accepted. */
        cmd->path.local = xstrdup("postmaster");
        n = 12;
    }
    if (n < 0) {
        if (mail) return set_err(err, 501, "5.1.7", "Bad sender address syntax: %s.", aerr);
        return set_err(err, 501, "5.1.3", "Bad recipient address syntax: %s.", aerr);
    }
    i += (size_t)n;
    if (i < len && p[i] != ' ')
        return set_err(err, 501, "5.5.4", "Unexpected text after the address.");
    while (i < len) {
        size_t s;
        while (i < len && p[i] == ' ')
            i++;
        s = i;
        while (i < len && p[i] != ' ')
            i++;
        if (i == s) break;
        for (size_t k = s; k < i; k++)
            if ((unsigned char)p[k] >= 0x80 || (unsigned char)p[k] < 0x21)
                return set_err(err, 501, "5.5.4", "Parameters must be printable ASCII.");
        if (parse_param(cmd, p + s, i - s, &seen, err) < 0) return -1;
    }
    if (mail && (cmd->path.flags & ADDR_F_UTF8) && !cmd->smtputf8)
        return set_err(err, 553, "5.6.7",
                       "8-bit address needs SMTPUTF8; add the SMTPUTF8 parameter to MAIL.");
    return 0;
}

static const struct {
    const char *name;
    enum smtp_verb verb;
} verb_table[] = {
    {"HELO", SMTP_V_HELO},         {"EHLO", SMTP_V_EHLO}, {"MAIL", SMTP_V_MAIL},
    {"RCPT", SMTP_V_RCPT},         {"DATA", SMTP_V_DATA}, {"BDAT", SMTP_V_BDAT},
    {"RSET", SMTP_V_RSET},         {"NOOP", SMTP_V_NOOP}, {"QUIT", SMTP_V_QUIT},
    {"HELP", SMTP_V_HELP},         {"VRFY", SMTP_V_VRFY}, {"EXPN", SMTP_V_EXPN},
    {"STARTTLS", SMTP_V_STARTTLS}, {"AUTH", SMTP_V_AUTH},
};

static int parse_cmd(const char *line, size_t len, struct smtp_cmd *cmd, struct smtp_err *err)
{
    size_t i = 0, vl, al;
    const char *a;

    if (len == 0)
        return set_err(err, 500, "5.5.2", "Empty command line; expected a command such as EHLO.");
    if (memchr(line, '\0', len))
        return set_err(err, 500, "5.5.2", "Command line contains a NUL byte.");
    while (i < len && line[i] != ' ')
        i++;
    vl = i;
    for (size_t k = 0; k < sizeof verb_table / sizeof verb_table[0]; k++)
        if (word_is(line, vl, verb_table[k].name)) cmd->verb = verb_table[k].verb;
    if (cmd->verb == SMTP_V_UNKNOWN) return set_err(err, 500, "5.5.2", "Command not recognized.");
    while (i < len && line[i] == ' ')
        i++;
    a = line + i;
    al = len - i;

    if (cmd->verb == SMTP_V_MAIL || cmd->verb == SMTP_V_RCPT) {
        /* Control bytes are never valid; 8-bit bytes only inside the address. */
        for (size_t k = 0; k < al; k++)
            if ((unsigned char)a[k] < 0x20 || a[k] == 0x7f)
                return set_err(err, 501, "5.5.2", "Command line contains a control character.");
        return parse_mail_rcpt(cmd, a, al, err);
    }
    for (size_t k = 0; k < al; k++) {
        unsigned char c = (unsigned char)a[k];
        if (c >= 0x80)
            return set_err(err, 501, "5.5.4", "%s arguments must be ASCII.",
                           smtp_verb_name(cmd->verb));
        if (c < 0x20 || c == 0x7f)
            return set_err(err, 501, "5.5.2", "Command line contains a control character.");
    }
    while (al > 0 && a[al - 1] == ' ')
        al--;

    switch (cmd->verb) {
    case SMTP_V_HELO:
    case SMTP_V_EHLO:
        if (al == 0)
            return set_err(err, 501, "5.5.4", "%s requires a domain or address literal.",
                           smtp_verb_name(cmd->verb));
        cmd->arg = xstrndup(a, al);
        return 0;
    case SMTP_V_DATA:
    case SMTP_V_RSET:
    case SMTP_V_QUIT:
    case SMTP_V_STARTTLS:
        if (al > 0)
            return set_err(err, 501, "5.5.4", "%s takes no arguments.", smtp_verb_name(cmd->verb));
        return 0;
    case SMTP_V_BDAT: {
        size_t s = 0;
        while (s < al && a[s] != ' ')
            s++;
        if (parse_ull(a, s, ULLONG_MAX, &cmd->chunk_size) < 0)
            return set_err(err, 501, "5.5.4", "Syntax: BDAT <size in bytes> [LAST]");
        while (s < al && a[s] == ' ')
            s++;
        if (s < al) {
            if (!word_is(a + s, al - s, "LAST"))
                return set_err(err, 501, "5.5.4", "Syntax: BDAT <size in bytes> [LAST]");
            cmd->last = 1;
        }
        return 0;
    }
    default:
        if (al > 0) cmd->arg = xstrndup(a, al);
        return 0;
    }
}

int smtp_parse_cmd(const char *line, size_t len, struct smtp_cmd *cmd, struct smtp_err *err)
{
    enum smtp_verb v;
    memset(cmd, 0, sizeof *cmd);
    cmd->size = -1;
    err->code = 0;
    err->enh = "";
    err->text[0] = '\0';
    if (parse_cmd(line, len, cmd, err) == 0) return 0;
    v = cmd->verb;
    smtp_cmd_clear(cmd);
    cmd->verb = v;
    return -1;
}

/* ---- DATA / BDAT scanner ---------------------------------------------------------
 * d->st holds two small machines: bits 0-3 the line-end / dot state, bits 4-7 the
 * header-name tracker, bit 8 "started". Only <CRLF>.<CRLF> ends DATA (RFC 5321 4.1.1.4);
 * a bare LF or CR never starts a line for that purpose, so "<LF>.<LF>" and friends
 * cannot end the message early (SMTP smuggling). */

enum { D_BOL = 0, D_MID, D_CR, D_DOT, D_DOTCR };
enum { H_START = 0, H_CR, H_NAME, H_SP, H_SKIP };
#define ST_STARTED 0x100

struct scan {
    struct smtp_data *d;
    struct buf *out;
    const char *p;
    size_t run; /* start of the pending run of input bytes to copy to out */
    unsigned ds, hs;
};

static void flush(struct scan *s, size_t end)
{
    if (s->out && end > s->run) (void)buf_append(s->out, s->p + s->run, end - s->run);
    s->run = end;
}

/* Header tracking on the output stream: count "Received:" at line start until the
 * first empty line. Any LF ends a header line here. */
static void hdr_byte(struct scan *s, unsigned char c)
{
    struct smtp_data *d = s->d;
    if (c == '\n') {
        if (s->hs == H_START || s->hs == H_CR) d->in_headers = 0;
        s->hs = H_START;
        d->hdr_len = 0;
        return;
    }
    switch (s->hs) {
    case H_START:
        if (c == '\r') {
            s->hs = H_CR;
            return;
        }
        if (c == ' ' || c == '\t' || c == ':') {
            s->hs = H_SKIP;
            return;
        }
        /* fall through */
    case H_NAME:
        if (c == ':') {
            if (d->hdr_len == 8 && strncasecmp(d->hdr, "received", 8) == 0) d->received++;
            s->hs = H_SKIP;
        } else if (c == ' ' || c == '\t') {
            s->hs = (d->hdr_len == 8 && strncasecmp(d->hdr, "received", 8) == 0) ? H_SP : H_SKIP;
        } else if (c > 32 && c < 127 && d->hdr_len < 8) {
            d->hdr[d->hdr_len++] = (char)c;
            s->hs = H_NAME;
        } else
            s->hs = H_SKIP;
        return;
    case H_SP:
        if (c == ':') {
            d->received++;
            s->hs = H_SKIP;
        } else if (c != ' ' && c != '\t')
            s->hs = H_SKIP;
        return;
    default:
        s->hs = H_SKIP;
        return;
    }
}

/* One more character in the current line (RFC 5322 2.1.1 limit, 998 by default). */
static void line_char(struct smtp_data *d)
{
    size_t max = d->max_line ? d->max_line : 998;
    if (++d->line_len > max) d->flags |= SMTP_DATA_LONG_LINE;
}

/* Account for one output byte (already in out or in the pending run). CR is counted
 * as a line character only once it is known to be bare. */
static void out_byte(struct scan *s, unsigned char c)
{
    struct smtp_data *d = s->d;
    if (c == '\n') {
        d->line_len = 0;
    } else if (c != '\r') {
        if (c == '\0') d->flags |= SMTP_DATA_NUL;
        line_char(d);
    }
    if (d->in_headers) hdr_byte(s, c);
}

/* A byte inside a line (not a dot at line start, not a held CR). */
static void mid_byte(struct scan *s, unsigned char c)
{
    if (c == '\r') {
        s->ds = D_CR;
    } else if (c == '\n') {
        s->d->flags |= SMTP_DATA_BARE_LF;
        s->ds = D_MID;
    } else
        s->ds = D_MID;
    out_byte(s, c);
}

size_t smtp_data_feed(struct smtp_data *d, const char *p, size_t len, struct buf *out)
{
    struct scan s = {d, out, p, 0, 0, 0};
    size_t i;
    if (!(d->st & ST_STARTED)) {
        d->st = ST_STARTED;
        d->in_headers = 1;
        d->received = 0;
        d->hdr_len = 0;
        d->line_len = 0;
    }
    if (d->done) return 0;
    s.ds = (unsigned)d->st & 0xf;
    s.hs = ((unsigned)d->st >> 4) & 0xf;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        /* The body's ordinary bytes up to the next CR in one step: what mid_byte()
         * does for each of them (no header to scan, no bare LF, no NUL in the run) is
         * only counting the line's length. A run with anything else goes byte by
         * byte (fuzz/fuzz_smtp_data.c compares the two). */
        if (!d->in_headers && (s.ds == D_MID || (s.ds == D_BOL && (c != '.' || d->bdat))) &&
            c != '\r') {
            const char *cr = memchr(p + i, '\r', len - i);
            size_t e = cr ? (size_t)(cr - p) : len;
            if (!memchr(p + i, '\n', e - i) && !memchr(p + i, '\0', e - i)) {
                size_t max = d->max_line ? d->max_line : 998;
                d->line_len += e - i;
                if (d->line_len > max) d->flags |= SMTP_DATA_LONG_LINE;
                s.ds = D_MID;
                i = e - 1;
                continue;
            }
        }
        switch (s.ds) {
        case D_BOL:
            if (c == '.' && !d->bdat) {
                /* RFC 5321 4.5.2: drop the first dot of a line. */
                flush(&s, i);
                s.run = i + 1;
                s.ds = D_DOT;
            } else
                mid_byte(&s, c);
            break;
        case D_DOT:
            if (c == '\r') {
                /* Hold the CR: with an LF it is the end marker. */
                flush(&s, i);
                s.run = i + 1;
                s.ds = D_DOTCR;
            } else
                mid_byte(&s, c);
            break;
        case D_DOTCR:
            if (c == '\n') {
                d->done = 1;
                s.run = i + 1;
                i++;
                goto end;
            }
            d->flags |= SMTP_DATA_BARE_CR;
            if (out) (void)buf_append(out, "\r", 1);
            out_byte(&s, '\r');
            line_char(d);
            s.ds = D_MID;
            mid_byte(&s, c);
            break;
        case D_CR:
            if (c == '\n') {
                s.ds = D_BOL;
                out_byte(&s, c);
            } else {
                d->flags |= SMTP_DATA_BARE_CR;
                line_char(d); /* the bare CR is part of the line */
                mid_byte(&s, c);
            }
            break;
        default:
            mid_byte(&s, c);
            break;
        }
    }
end:
    flush(&s, i);
    d->st = (int)(ST_STARTED | s.ds | (s.hs << 4));
    return i;
}
