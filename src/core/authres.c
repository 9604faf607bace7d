/* authres.c: Authentication-Results (RFC 8601): a builder for our field and the
 * check for fields that claim our authserv-id (pure, fuzzed). What each method's
 * result means is left to the checks that add them. */
#include "core/compat.h"

#include "core/authres.h"
#include "core/header.h"

void authres_init(struct authres *a, const char *authserv_id)
{
    memset(a, 0, sizeof *a);
    a->authserv_id = xstrdup(authserv_id);
    buf_init(&a->items, 0);
}

void authres_release(struct authres *a)
{
    if (!a) return;
    free(a->authserv_id);
    a->authserv_id = NULL;
    buf_release(&a->items);
    a->n = 0;
}

/* RFC 2045 5.1 token character. */
static int is_token(unsigned char c)
{
    return c > 32 && c < 127 && !strchr("()<>@,;:\\\"/[]?=", c);
}

/* A printable ASCII byte for a comment or quoted-string: control characters are
 * dropped (0), non-ASCII becomes '?'. */
static int safe_char(unsigned char c)
{
    if (c >= 0x80) return '?';
    if (c < 32 || c == 127) return c == '\t' ? ' ' : 0;
    return c;
}

void authres_add(struct authres *a, const char *method, const char *result, const char *comment)
{
    buf_printf(&a->items, ";\r\n\t%s=%s", method, result);
    if (comment && *comment) {
        buf_puts(&a->items, " (");
        for (const unsigned char *p = (const unsigned char *)comment; *p; p++) {
            int c = safe_char(*p);
            if (!c) continue;
            if (c == '(' || c == ')' || c == '\\') buf_append(&a->items, "\\", 1);
            char ch = (char)c;
            buf_append(&a->items, &ch, 1);
        }
        buf_puts(&a->items, ")");
    }
    a->n++;
}

/* value is token, or token@token (RFC 8601 2.3 pvalue's mailbox form) */
static int plain_pvalue(const char *v)
{
    const char *at = strchr(v, '@');
    size_t n = strlen(v);
    if (!n) return 0;
    for (size_t i = 0; i < n; i++)
        if (v + i != at && !is_token((unsigned char)v[i])) return 0;
    return !at || (at != v + n - 1 && !strchr(at + 1, '@'));
}

void authres_prop(struct authres *a, const char *ptype, const char *property, const char *value)
{
    if (!a->n) return;
    buf_printf(&a->items, " %s.%s=", ptype, property);
    if (plain_pvalue(value)) {
        buf_puts(&a->items, value);
        return;
    }
    buf_append(&a->items, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        int c = safe_char(*p);
        if (!c) continue;
        if (c == '"' || c == '\\') buf_append(&a->items, "\\", 1);
        char ch = (char)c;
        buf_append(&a->items, &ch, 1);
    }
    buf_append(&a->items, "\"", 1);
}

void authres_header(const struct authres *a, struct buf *out)
{
    buf_printf(out, "Authentication-Results: %s", a->authserv_id ? a->authserv_id : "localhost");
    if (!a->n)
        buf_puts(out, "; none");
    else
        buf_append(out, a->items.data, a->items.len);
    buf_puts(out, "\r\n");
}

/* src (a field built here) without its comments and the space before each. */
static void drop_comments(const char *src, size_t len, struct buf *out)
{
    int quoted = 0, depth = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (depth == 0 && !quoted && c == ' ' && i + 1 < len && src[i + 1] == '(') continue;
        if (c == '\\' && (quoted || depth)) {
            if (!depth) buf_append(out, src + i, i + 1 < len ? 2 : 1);
            i++;
            continue;
        }
        if (!quoted && c == '(') {
            depth++;
            continue;
        }
        if (!quoted && depth && c == ')') {
            depth--;
            continue;
        }
        if (depth) continue;
        if (c == '"') quoted = !quoted;
        buf_append(out, &c, 1);
    }
}

enum { LINE_MAX_LEN = 998 };

/* text (a field without its final CRLF) padded to room bytes with the CRLF, to out. */
static int pad_field(const char *text, size_t len, size_t room, struct buf *out)
{
    if (len + 2 > room) return -1;
    size_t need = room - len - 2;
    /* the lines and their padding, last line first */
    size_t nl = 1;
    for (size_t i = 0; i + 1 < len; i++)
        if (text[i] == '\r' && text[i + 1] == '\n') nl++;
    size_t *start = xcalloc(nl, sizeof *start), *llen = xcalloc(nl, sizeof *llen),
           *pad = xcalloc(nl, sizeof *pad);
    size_t k = 0, s0 = 0;
    for (size_t i = 0; i + 1 < len; i++)
        if (text[i] == '\r' && text[i + 1] == '\n') {
            start[k] = s0;
            llen[k++] = i - s0;
            s0 = i + 2;
        }
    start[k] = s0;
    llen[k] = len - s0;
    for (size_t i = nl; i-- > 0 && need > 0;) {
        size_t slack = llen[i] < LINE_MAX_LEN ? LINE_MAX_LEN - llen[i] : 0;
        pad[i] = need < slack ? need : slack;
        need -= pad[i];
    }
    /* what is left: lines "\t(   )" (5 bytes with the CRLF before them, and spaces) */
    struct buf extra;
    buf_init(&extra, 0);
    int rc = 0;
    while (need > 0) {
        size_t e = need < LINE_MAX_LEN - 3 ? need : LINE_MAX_LEN - 3;
        if (e < 5) { /* too short for a line: take some of the padding of another */
            size_t want = 5 - e, i = 0;
            while (i < nl && pad[i] < want)
                i++;
            if (i == nl) {
                rc = -1;
                break;
            }
            pad[i] -= want;
            need += want;
            e = 5;
        }
        buf_puts(&extra, "\r\n\t(");
        for (size_t j = 5; j < e; j++)
            buf_append(&extra, " ", 1);
        buf_append(&extra, ")", 1);
        need -= e;
    }
    if (rc == 0) {
        for (size_t i = 0; i < nl; i++) {
            if (i) buf_puts(out, "\r\n");
            buf_append(out, text + start[i], llen[i]);
            for (size_t j = 0; j < pad[i]; j++)
                buf_append(out, " ", 1);
        }
        buf_append(out, extra.data ? extra.data : "", extra.len);
        buf_puts(out, "\r\n");
    }
    buf_release(&extra);
    free(start);
    free(llen);
    free(pad);
    return rc;
}

int authres_header_room(const struct authres *a, size_t room, struct buf *out)
{
    struct buf f, bare;
    buf_init(&f, 0);
    buf_init(&bare, 0);
    authres_header(a, &f);
    f.len -= 2; /* the CRLF: pad_field() puts it back */
    int rc = pad_field(f.data, f.len, room, out);
    if (rc != 0) {
        drop_comments(f.data, f.len, &bare);
        rc = pad_field(bare.data ? bare.data : "", bare.len, room, out);
    }
    buf_release(&f);
    buf_release(&bare);
    return rc;
}

/* Skip white space, line ends (folding) and comments (nested, with quoted pairs).
 * Returns the new position; -1 for an unclosed comment. */
static long skip_cfws(const char *p, size_t len, size_t i)
{
    int depth = 0;
    while (i < len) {
        char c = p[i];
        if (depth == 0 && (c == ' ' || c == '\t' || c == '\r' || c == '\n')) {
            i++;
        } else if (c == '(') {
            if (++depth > 64) return -1;
            i++;
        } else if (depth > 0 && c == ')') {
            depth--;
            i++;
        } else if (depth > 0 && c == '\\') {
            i += 2;
        } else if (depth > 0) {
            i++;
        } else {
            break;
        }
    }
    if (depth > 0) return -1;
    return (long)(i > len ? len : i);
}

int authres_claims(const char *value, size_t len, const char *authserv_id)
{
    long at = skip_cfws(value, len, 0);
    if (at < 0 || (size_t)at >= len) return 0;
    size_t i = (size_t)at;
    char id[256];
    size_t n = 0;
    if (value[i] == '"') {
        for (i++; i < len && value[i] != '"'; i++) {
            char c = value[i];
            if (c == '\\') {
                if (++i >= len) return 0;
                c = value[i];
            } else if (c == '\r' || c == '\n') {
                continue; /* folding inside the quoted-string */
            }
            if (n + 1 >= sizeof id) return 0;
            id[n++] = c;
        }
        if (i >= len) return 0; /* unclosed */
    } else {
        while (i < len && is_token((unsigned char)value[i])) {
            if (n + 1 >= sizeof id) return 0;
            id[n++] = value[i++];
        }
    }
    id[n] = '\0';
    return n > 0 && str_ieq(id, authserv_id);
}

size_t authres_strip(char *hdr, size_t len, const char *authserv_id, size_t *removed)
{
    size_t i = 0, nremoved = 0;
    while (i < len) {
        struct hdr_field f;
        int r = hdr_next(hdr + i, len - i, &f);
        if (r == 0) break;
        size_t flen = r > 0 ? (size_t)r : f.line_len;
        if (flen == 0) break; /* cannot happen: hdr_next always consumes a line */
        if (r > 0 && hdr_name_is(&f, "Authentication-Results") &&
            authres_claims(f.value, f.value_len, authserv_id)) {
            memmove(hdr + i, hdr + i + flen, len - i - flen);
            len -= flen;
            nremoved++;
            continue;
        }
        i += flen;
    }
    if (removed) *removed = nremoved;
    return len;
}
