/* client_reply.c: reading the next hop's replies: one line at a time into the
 * reply being collected (code, RFC 3463 enhanced code, text), and the service
 * extensions of its EHLO reply. Below client.c: it calls nothing back. */
#include "core/compat.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "smtp/client_int.h"

/* Lines of one reply at most: a longer one is not an SMTP reply. */
#define MAX_REPLY_LINES 200

/* One line of a 250 EHLO reply after the first: a service extension. */
static void caps_line(struct smtp_client_caps *k, const char *t, size_t n)
{
    size_t w = 0;
    while (w < n && t[w] != ' ' && t[w] != '=')
        w++;
    char kw[32];
    if (w == 0 || w >= sizeof kw) return;
    memcpy(kw, t, w);
    kw[w] = 0;
    const char *arg = t + w + (w < n);
    size_t alen = n - w - (w < n);
    if (str_ieq(kw, "PIPELINING"))
        k->pipelining = 1;
    else if (str_ieq(kw, "STARTTLS"))
        k->starttls = 1;
    else if (str_ieq(kw, "8BITMIME"))
        k->eightbit = 1;
    else if (str_ieq(kw, "SMTPUTF8"))
        k->smtputf8 = 1;
    else if (str_ieq(kw, "DSN"))
        k->dsn = 1;
    else if (str_ieq(kw, "CHUNKING"))
        k->chunking = 1;
    else if (str_ieq(kw, "SIZE")) {
        k->size_given = 1;
        k->size = 0;
        for (size_t i = 0; i < alen && isdigit((unsigned char)arg[i]); i++)
            if (k->size < 1000000000000000ULL) k->size = k->size * 10 + (unsigned)(arg[i] - '0');
    } else if (str_ieq(kw, "AUTH")) {
        /* "AUTH PLAIN LOGIN" and the old "AUTH=PLAIN LOGIN" */
        size_t i = 0;
        while (i < alen) {
            while (i < alen && arg[i] == ' ')
                i++;
            size_t s = i;
            while (i < alen && arg[i] != ' ')
                i++;
            if (i - s == 5 && strncasecmp(arg + s, "PLAIN", 5) == 0) k->auth_plain = 1;
            if (i - s == 5 && strncasecmp(arg + s, "LOGIN", 5) == 0) k->auth_login = 1;
        }
    }
}

/* Length of an RFC 3463 enhanced code of class cls at the start of t ("5.1.1 "),
 * 0 when there is none. */
static size_t enh_len(const char *t, size_t n, int cls)
{
    size_t i = 0;
    if (n < 5 || t[0] != '0' + cls || t[1] != '.') return 0;
    i = 2;
    for (int part = 0; part < 2; part++) {
        size_t s = i;
        while (i < n && isdigit((unsigned char)t[i]) && i - s < 3)
            i++;
        if (i == s) return 0;
        if (part == 0) {
            if (i >= n || t[i] != '.') return 0;
            i++;
        }
    }
    if (i < n && t[i] != ' ') return 0;
    return i;
}

/* client_int.h says what it returns. */
int client_reply_line(struct smtp_client *c, const char *line, size_t len)
{
    if (len < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
        !isdigit((unsigned char)line[2]) || (len > 3 && line[3] != ' ' && line[3] != '-'))
        return -1;
    if (line[0] < '2' || line[0] > '5') return -1;
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (c->cur_lines == 0) {
        memset(&c->cur, 0, sizeof c->cur);
        c->cur.code = code;
    }
    if (++c->cur_lines > MAX_REPLY_LINES) return -1;
    const char *t = len > 3 ? line + 4 : line + len;
    size_t tl = len > 3 ? len - 4 : 0;
    size_t el = enh_len(t, tl, c->cur.code / 100);
    if (el) {
        if (!c->cur.enh[0] && el < sizeof c->cur.enh) {
            memcpy(c->cur.enh, t, el);
            c->cur.enh[el] = 0;
        }
        t += el;
        tl -= el;
        while (tl && *t == ' ')
            t++, tl--;
    }
    if (c->state == CL_EHLO && code == 250 && c->cur_lines > 1) caps_line(&c->caps, t, tl);
    if (tl) {
        size_t o = strlen(c->cur.text);
        if (o && o + 2 < sizeof c->cur.text) {
            memcpy(c->cur.text + o, "; ", 2);
            o += 2;
        }
        for (size_t i = 0; i < tl && o + 1 < sizeof c->cur.text; i++) {
            unsigned char ch = (unsigned char)t[i];
            c->cur.text[o++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
        }
        c->cur.text[o] = 0;
    }
    return len == 3 || line[3] == ' ';
}
