/* mime.c: writing MIME and RFC 5322 text: quoted-printable bodies (RFC 2045), RFC 2047
 * encoded words for non-ASCII header text, and header fields folded at 78 columns.
 * Encoders only; for notices today (queue/dsn.c), DKIM and ARF reports next. */
#include "core/compat.h"

#include "core/buf.h"
#include "core/mime.h"
#include "core/util.h"

/* A header field folded at spaces so no line passes 78 columns where possible. */
void mime_put_field(struct buf *b, const char *name, const char *value)
{
    size_t col = strlen(name) + 1;
    buf_printf(b, "%s:", name);
    const char *p = value;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *w = p;
        while (*w && *w != ' ')
            w++;
        if (w == p) break;
        size_t wl = (size_t)(w - p);
        if (col > strlen(name) + 1 && col + 1 + wl > 78) {
            buf_puts(b, "\r\n");
            col = 0;
        }
        buf_puts(b, " ");
        buf_append(b, p, wl);
        col += 1 + wl;
        p = w;
    }
    buf_puts(b, "\r\n");
}

/* RFC 2047 Q-encoded words for a UTF-8 header text, each at most 75 characters. */
void mime_put_encoded_words(struct buf *b, const char *s)
{
    const char *pre = "=?UTF-8?Q?";
    size_t wl = 0;
    int open = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char enc[16];
        if (*p == ' ')
            str_copy(enc, "_", sizeof enc);
        else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                 strchr("!*+-/", *p))
            snprintf(enc, sizeof enc, "%c", *p);
        else
            snprintf(enc, sizeof enc, "=%02X", *p);
        /* a multibyte character stays in one word: measure it whole */
        size_t need = strlen(enc);
        if (*p >= 0xC0)
            for (const unsigned char *q = p + 1; (*q & 0xC0) == 0x80; q++)
                need += 3;
        if (open && (*p & 0xC0) != 0x80 && wl + need + 2 > 75) {
            buf_puts(b, "?=\r\n ");
            open = 0;
        }
        if (!open) {
            buf_puts(b, pre);
            wl = strlen(pre);
            open = 1;
        }
        buf_puts(b, enc);
        wl += strlen(enc);
    }
    if (open) buf_puts(b, "?=");
}

/* Quoted-printable (RFC 2045 6.7) of CRLF text. */
void mime_put_qp(struct buf *b, const char *p, size_t n)
{
    size_t col = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\r' && i + 1 < n && p[i + 1] == '\n') {
            buf_puts(b, "\r\n");
            col = 0;
            i++;
            continue;
        }
        int at_eol = i + 1 >= n || p[i + 1] == '\r';
        char enc[4];
        if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !at_eol))
            snprintf(enc, sizeof enc, "%c", c);
        else
            snprintf(enc, sizeof enc, "=%02X", c);
        size_t el = strlen(enc);
        if (col + el > 75) {
            buf_puts(b, "=\r\n");
            col = 0;
        }
        buf_puts(b, enc);
        col += el;
    }
}
