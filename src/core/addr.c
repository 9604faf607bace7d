/* addr.c: RFC 5321 4.1.2 Path / Mailbox parser and formatter (with RFC 6531 UTF-8).
 * Pure: no I/O, no globals. Deciding what an address means (routing, policy) is left
 * to the callers. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <strings.h>

#include "core/addr.h"
#include "core/buf.h"
#include "core/idn.h"

/* RFC 5321 4.1.2 atext (RFC 5322 3.2.3). */
static int is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static int is_let_dig(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0 when malformed. */
static size_t utf8_seq(const unsigned char *p, size_t len)
{
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (len < n) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

/* Checks an 8-bit byte at p[i]: returns the sequence length, or 0 with *err set. */
static size_t eight_bit(const unsigned char *p, size_t len, unsigned opts, unsigned *flags,
                        const char **err)
{
    size_t n;
    if (!(opts & ADDR_O_UTF8)) {
        *err = "8-bit address needs SMTPUTF8";
        return 0;
    }
    n = utf8_seq(p, len);
    if (!n) {
        *err = "address is not valid UTF-8";
        return 0;
    }
    *flags |= ADDR_F_UTF8;
    return n;
}

/* Parse a domain name (LDH labels, or U-labels with ADDR_O_UTF8) at the start of p;
 * stops at the first byte that cannot belong to it. Returns its length (>0) or -1
 * with *err set. */
static int parse_domain(const char *s, size_t len, unsigned opts, unsigned *flags, const char **err)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    int u_labels = 0;
    for (;;) {
        size_t start = i;
        while (i < len) {
            if (is_let_dig(p[i]) || p[i] == '-') {
                i++;
            } else if (p[i] >= 0x80) {
                size_t n = eight_bit(p + i, len - i, opts, flags, err);
                if (!n) return -1;
                i += n;
                u_labels = 1;
            } else
                break;
        }
        if (i == start) {
            int stop = i >= len || p[i] == '>';
            if (i < len && p[i] == '.')
                *err = "empty label in domain";
            else if (start == 0)
                *err = stop ? "missing domain" : "bad character in domain";
            else
                *err = stop ? "domain ends with a dot" : "bad character in domain";
            return -1;
        }
        if (i - start > 63) {
            *err = "domain label longer than 63 characters";
            return -1;
        }
        if (p[start] == '-' || p[i - 1] == '-') {
            *err = "domain label starts or ends with a hyphen";
            return -1;
        }
        if (i > ADDR_DOMAIN_MAX) {
            *err = "domain too long";
            return -1;
        }
        if (i < len && p[i] == '.') {
            i++;
            continue;
        }
        if (u_labels) { /* RFC 6531 3.3: U-labels must be valid IDNA2008 (RFC 5891) */
            char name[ADDR_DOMAIN_MAX + 1], alabel[ADDR_DOMAIN_MAX + 1];
            memcpy(name, s, i);
            name[i] = '\0';
            if (idn_to_alabel(name, alabel, sizeof alabel, err) != 0) return -1;
        }
        return (int)i;
    }
}

int addr_domain_valid(const char *d, size_t len, unsigned opts)
{
    unsigned flags = 0;
    const char *err;
    int n = parse_domain(d, len, opts, &flags, &err);
    return n > 0 && (size_t)n == len;
}

/* Address literal "[...]" at p (p[0] == '['). Returns its length or -1. */
static int parse_literal(const char *p, size_t len, const char **err)
{
    const char *end = memchr(p, ']', len);
    char tmp[64];
    unsigned char bin[16];
    size_t n;
    if (!end) {
        *err = "unterminated address literal";
        return -1;
    }
    n = (size_t)(end - p - 1);
    if (n >= 5 && strncasecmp(p + 1, "IPv6:", 5) == 0) {
        if (n - 5 >= sizeof tmp) goto bad;
        memcpy(tmp, p + 6, n - 5);
        tmp[n - 5] = '\0';
        if (strlen(tmp) != n - 5 || inet_pton(AF_INET6, tmp, bin) != 1) goto bad;
    } else {
        if (n >= sizeof tmp) goto bad;
        memcpy(tmp, p + 1, n);
        tmp[n] = '\0';
        if (strlen(tmp) != n || inet_pton(AF_INET, tmp, bin) != 1) goto bad;
    }
    return (int)(n + 2);
bad:
    *err = "bad address literal";
    return -1;
}

/* Source route "@a,@b:" at p (p[0] == '@'); RFC 5321 4.1.2 A-d-l. Returns its length
 * including the ':' or -1. */
static int parse_route(const char *p, size_t len, unsigned opts, const char **err)
{
    size_t i = 0;
    unsigned flags = 0;
    for (;;) {
        int n;
        if (i >= len || p[i] != '@') break;
        i++;
        n = parse_domain(p + i, len - i, opts, &flags, err);
        if (n < 0) return -1;
        i += (size_t)n;
        if (i < len && p[i] == ',') {
            i++;
            continue;
        }
        if (i < len && p[i] == ':') return (int)i + 1;
        break;
    }
    *err = "bad source route";
    return -1;
}

/* Local part (Dot-string or Quoted-string) at p. Appends the unquoted value to val.
 * Returns the length as written, or -1. */
static int parse_local(const char *s, size_t len, unsigned opts, unsigned *flags, struct buf *val,
                       const char **err)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    if (len > 0 && p[0] == '"') {
        *flags |= ADDR_F_QUOTED;
        i = 1;
        for (;;) {
            if (i >= len) {
                *err = "unterminated quoted string";
                return -1;
            }
            if (p[i] == '"') return (int)i + 1;
            if (p[i] == '\\') {
                if (i + 1 >= len) {
                    *err = "unterminated quoted string";
                    return -1;
                }
                if (p[i + 1] < 32 || p[i + 1] > 126) {
                    *err = "bad character in quoted string";
                    return -1;
                }
                buf_append(val, p + i + 1, 1);
                i += 2;
            } else if (p[i] >= 0x80) {
                size_t n = eight_bit(p + i, len - i, opts, flags, err);
                if (!n) return -1;
                buf_append(val, p + i, n);
                i += n;
            } else if (p[i] >= 32 && p[i] <= 126) {
                buf_append(val, p + i, 1);
                i++;
            } else {
                *err = "bad character in quoted string";
                return -1;
            }
        }
    }
    for (;;) {
        size_t start = i;
        while (i < len) {
            if (is_atext(p[i])) {
                i++;
            } else if (p[i] >= 0x80) {
                size_t n = eight_bit(p + i, len - i, opts, flags, err);
                if (!n) return -1;
                i += n;
            } else
                break;
        }
        if (i == start) {
            if (start == 0 && (i >= len || p[i] == '@' || p[i] == '>'))
                *err = "missing local part";
            else if (i < len && p[i] != '.' && p[i] != '@' && p[i] != '>')
                *err = "bad character in local part";
            else
                *err = "misplaced dot in local part";
            return -1;
        }
        if (i < len && p[i] == '.') {
            i++;
            continue;
        }
        buf_append(val, p, i);
        return (int)i;
    }
}

int addr_parse(const char *p, size_t len, unsigned opts, struct addr *out, const char **err)
{
    size_t i = 0;
    unsigned flags = 0;
    int brackets = !(opts & ADDR_O_NO_BRACKETS);
    const char *e = "bad address";
    struct buf local;
    int n;

    memset(out, 0, sizeof *out);
    buf_init(&local, 0);
    if (brackets) {
        if (len == 0 || p[0] != '<') {
            e = len == 0 ? "missing address" : "address must be enclosed in <>";
            goto fail;
        }
        i = 1;
        if (i < len && p[i] == '>') {
            if (!(opts & ADDR_O_ALLOW_NULL)) {
                e = "empty address <> not allowed here";
                goto fail;
            }
            out->flags = ADDR_F_NULL;
            return 2;
        }
        if (i < len && p[i] == '@') {
            n = parse_route(p + i, len - i, opts, &e);
            if (n < 0) goto fail;
            i += (size_t)n;
            flags |= ADDR_F_ROUTE;
        }
    }
    n = parse_local(p + i, len - i, opts, &flags, &local, &e);
    if (n < 0) goto fail;
    if (n > ADDR_LOCAL_MAX) {
        e = "local part too long";
        goto fail;
    }
    i += (size_t)n;
    if (i < len && p[i] == '@') {
        size_t d = ++i;
        if (i < len && p[i] == '[') {
            n = parse_literal(p + i, len - i, &e);
            flags |= ADDR_F_IPLIT;
        } else
            n = parse_domain(p + i, len - i, opts, &flags, &e);
        if (n < 0) goto fail;
        i += (size_t)n;
        out->domain = str_lower(xstrndup(p + d, (size_t)n));
    } else if (!(opts & ADDR_O_NO_BRACKETS) || !(opts & ADDR_O_LOCAL_ONLY)) {
        e = i < len && p[i] != '>' ? "bad character in local part" : "missing domain";
        goto fail;
    }
    if (brackets) {
        if (i >= len || p[i] != '>') {
            e = i >= len ? "missing > at end of address" : "bad character in domain";
            goto fail;
        }
        i++;
    }
    if (i > ADDR_PATH_MAX - (brackets ? 0 : 2)) {
        e = "address too long";
        goto fail;
    }
    out->local = buf_take(&local);
    out->flags = flags;
    return (int)i;
fail:
    buf_release(&local);
    free(out->domain);
    memset(out, 0, sizeof *out);
    if (err) *err = e;
    return -1;
}

void addr_clear(struct addr *a)
{
    if (!a) return;
    free(a->local);
    free(a->domain);
    memset(a, 0, sizeof *a);
}

void addr_copy(struct addr *out, const struct addr *in)
{
    out->local = in->local ? xstrdup(in->local) : NULL;
    out->domain = in->domain ? xstrdup(in->domain) : NULL;
    out->flags = in->flags;
}

/* RFC 5321 Dot-string (atext, or UTF-8 from RFC 6531, separated by single dots). */
static int is_dot_string(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    int prev_dot = 1;
    if (!*p) return 0;
    for (; *p; p++) {
        if (*p == '.') {
            if (prev_dot) return 0;
            prev_dot = 1;
        } else if (is_atext(*p) || *p >= 0x80) {
            prev_dot = 0;
        } else
            return 0;
    }
    return !prev_dot;
}

char *addr_format(const struct addr *a)
{
    struct buf b;
    if (!a->local) return xstrdup("");
    buf_init(&b, 0);
    if (is_dot_string(a->local)) {
        buf_puts(&b, a->local);
    } else {
        buf_puts(&b, "\"");
        for (const char *p = a->local; *p; p++) {
            if (*p == '"' || *p == '\\') buf_puts(&b, "\\");
            buf_append(&b, p, 1);
        }
        buf_puts(&b, "\"");
    }
    if (a->domain) {
        buf_puts(&b, "@");
        buf_puts(&b, a->domain);
    }
    return buf_take(&b);
}

int addr_has_routing_chars(const struct addr *a)
{
    return a->local && strpbrk(a->local, "%!@") != NULL;
}
