/* header.c: RFC 5322 header fields (2.2, 3.2.2 folding), address-list parsing (3.4
 * with the 4.4 obsolete forms) and header completion (3.6). Pure: no I/O, no
 * globals. What an address means (a bare local part, an odd domain) is left to the
 * callers. */
#include "core/compat.h"

#include <strings.h>

#include "core/buf.h"
#include "core/header.h"

#define COMMENT_DEPTH_MAX 64

static int is_wsp(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 5322 2.2 ftext: printable US-ASCII except colon. */
static int is_ftext(unsigned char c)
{
    return c >= 33 && c <= 126 && c != ':';
}

/* RFC 5322 3.2.3 atext; 8-bit bytes too (RFC 6532 3.2: UTF-8 in atoms). */
static int is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    if (c >= 0x80) return 1;
    return c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* End of the line that starts at i: *end is where its content stops (before CRLF or
 * LF), the return value where the next line starts. */
static size_t line_next(const char *p, size_t len, size_t i, size_t *end)
{
    const char *nl = memchr(p + i, '\n', len - i);
    size_t e = nl ? (size_t)(nl - p) : len;
    size_t next = nl ? e + 1 : len;
    if (e > i && p[e - 1] == '\r') e--;
    *end = e;
    return next;
}

int hdr_next(const char *p, size_t len, struct hdr_field *f)
{
    memset(f, 0, sizeof *f);
    if (len == 0 || p[0] == '\n' || (p[0] == '\r' && (len == 1 || p[1] == '\n'))) return 0;

    /* The field is its first line and every following line that starts with WSP
     * (RFC 5322 2.2.3). A line of only WSP counts as a continuation too. */
    size_t end, first_end;
    size_t next = line_next(p, len, 0, &first_end);
    end = first_end;
    while (next < len && is_wsp((unsigned char)p[next]))
        next = line_next(p, len, next, &end);
    f->line_len = next;

    size_t i = 0;
    while (i < first_end && is_ftext((unsigned char)p[i]))
        i++;
    size_t name_len = i;
    /* RFC 5322 4.5.8 obs-optional: WSP between the name and the colon. */
    while (i < first_end && is_wsp((unsigned char)p[i]))
        i++;
    if (name_len == 0 || i >= first_end || p[i] != ':') return -1;

    f->name = p;
    f->name_len = name_len;
    f->value = p + i + 1;
    f->value_len = end - (i + 1);
    /* Counts beyond INT_MAX cannot be returned; such a header is not plausible. */
    if (next > 0x7fffffff) return -1;
    return (int)next;
}

int hdr_name_is(const struct hdr_field *f, const char *name)
{
    size_t n = strlen(name);
    return f->name && f->name_len == n && strncasecmp(f->name, name, n) == 0;
}

static int is_trim(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

char *hdr_unfold(const char *value, size_t len, char *dst, size_t dstsize)
{
    if (dstsize == 0) return dst;
    size_t s = 0, e = len, o = 0;
    while (s < e && is_trim((unsigned char)value[s]))
        s++;
    while (e > s && is_trim((unsigned char)value[e - 1]))
        e--;
    /* RFC 5322 3.2.2: unfolding removes the line ends; the WSP after them stays. */
    for (size_t i = s; i < e && o + 1 < dstsize; i++) {
        if (value[i] == '\r' || value[i] == '\n') continue;
        dst[o++] = value[i];
    }
    dst[o] = '\0';
    return dst;
}

/* ---- address lists ---- */

/* Token types: the specials stand for themselves. */
enum { T_ATOM = 256, T_QSTR, T_DLIT };

struct tok {
    int type;
    size_t off, len; /* text (without the quotes or brackets) */
};

struct ps {
    const char *p;
    struct tok *t;
    size_t nt, cap_t, i;
    char **out;
    size_t nout, cap_out;
    int groups;    /* groups seen: "undisclosed-recipients:;" is a valid empty list */
    int no_groups; /* a mailbox-list: a group is malformed */
};

static void tok_add(struct ps *s, int type, size_t off, size_t len)
{
    if (s->nt == s->cap_t) {
        s->cap_t = s->cap_t ? s->cap_t * 2 : 16;
        s->t = xrealloc(s->t, s->cap_t * sizeof *s->t);
    }
    s->t[s->nt++] = (struct tok){type, off, len};
}

/* Skip a comment starting at p[i] == '('; returns the index after it, or -1 when it is
 * unterminated or nested deeper than COMMENT_DEPTH_MAX (RFC 5322 3.2.2). */
static long skip_comment(const char *p, size_t len, size_t i)
{
    int depth = 0;
    while (i < len) {
        char c = p[i++];
        if (c == '\\') {
            if (i >= len) return -1;
            i++;
        } else if (c == '(') {
            if (++depth > COMMENT_DEPTH_MAX) return -1;
        } else if (c == ')') {
            if (--depth == 0) return (long)i;
        }
    }
    return -1;
}

/* Scan a quoted string or domain literal body after its opening byte up to close;
 * returns the index of close, or -1 (unterminated, NUL, or for a literal a nested
 * '['). */
static long scan_quoted(const char *p, size_t len, size_t i, char close)
{
    while (i < len) {
        char c = p[i];
        if (c == close) return (long)i;
        if (c == '\0' || (close == ']' && c == '[')) return -1;
        if (c == '\\') {
            if (i + 1 >= len || p[i + 1] == '\0') return -1;
            i++;
        }
        i++;
    }
    return -1;
}

/* Split the value into tokens; comments and folding whitespace are dropped
 * (RFC 5322 3.2.2 CFWS, 3.2.3 atoms, 3.2.4 quoted strings, 3.4.1 domain literals). */
static int lex(struct ps *s, size_t len)
{
    const char *p = s->p;
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)p[i];
        if (is_trim(c)) {
            i++;
        } else if (c == '(') {
            long e = skip_comment(p, len, i);
            if (e < 0) return -1;
            i = (size_t)e;
        } else if (c == '"' || c == '[') {
            long e = scan_quoted(p, len, i + 1, c == '"' ? '"' : ']');
            if (e < 0) return -1;
            tok_add(s, c == '"' ? T_QSTR : T_DLIT, i + 1, (size_t)e - (i + 1));
            i = (size_t)e + 1;
        } else if (strchr("<>@,;:.", c) && c) {
            tok_add(s, c, i, 1);
            i++;
        } else if (is_atext(c)) {
            size_t st = i;
            while (i < len && is_atext((unsigned char)p[i]))
                i++;
            tok_add(s, T_ATOM, st, i - st);
        } else {
            return -1; /* ')' ']' '\\' outside their pairs, NUL, controls */
        }
    }
    return 0;
}

static int peek(const struct ps *s)
{
    return s->i < s->nt ? s->t[s->i].type : 0;
}

/* Append a token's text: quoted-pairs resolved, line ends of folding removed
 * (RFC 5322 3.2.4); in domain literals all folding whitespace is dropped. */
static void tok_text(const struct ps *s, const struct tok *t, struct buf *b)
{
    const char *p = s->p + t->off;
    if (t->type == T_ATOM) {
        buf_append(b, p, t->len);
        return;
    }
    for (size_t i = 0; i < t->len; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < t->len)
            c = p[++i];
        else if (t->type == T_DLIT && is_wsp((unsigned char)c))
            continue;
        if (c == '\r' || c == '\n') continue;
        buf_append(b, &c, 1);
    }
}

static void out_add(struct ps *s, char *a)
{
    if (s->nout == s->cap_out) {
        s->cap_out = s->cap_out ? s->cap_out * 2 : 4;
        s->out = xrealloc(s->out, s->cap_out * sizeof *s->out);
    }
    s->out[s->nout++] = a;
}

/* A domain at s->i: one domain literal, or atoms separated by single dots. Appended
 * to b when b is not NULL, ASCII-lowercased. */
static int parse_domain(struct ps *s, struct buf *b)
{
    size_t start = b ? b->len : 0;
    if (peek(s) == T_DLIT) {
        if (b) {
            buf_append(b, "[", 1);
            tok_text(s, &s->t[s->i], b);
            buf_append(b, "]", 1);
        }
        s->i++;
    } else {
        for (;;) {
            if (peek(s) != T_ATOM) return -1;
            if (b) tok_text(s, &s->t[s->i], b);
            s->i++;
            if (peek(s) != '.') break;
            if (b) buf_append(b, ".", 1);
            s->i++;
        }
    }
    if (b)
        for (size_t k = start; k < b->len; k++)
            if (b->data[k] >= 'A' && b->data[k] <= 'Z') b->data[k] = (char)(b->data[k] - 'A' + 'a');
    return 0;
}

/* addr-spec in tokens s->i .. end (exclusive), all of which it must use:
 * local-part ["@" domain]. The local part is words and dots (obs-local-part; stray
 * dots are kept, as some providers issue "a..b@"); two words need a dot between
 * them. Without "@" the bare local part is returned ("From: root"). */
static int parse_spec(struct ps *s, size_t end)
{
    struct buf b;
    buf_init(&b, 0);
    int words = 0, last_word = 0;
    while (s->i < end && peek(s) != '@') {
        int ty = peek(s);
        if (ty == T_ATOM || ty == T_QSTR) {
            if (last_word) goto bad;
            tok_text(s, &s->t[s->i], &b);
            words++;
            last_word = 1;
        } else if (ty == '.') {
            buf_append(&b, ".", 1);
            last_word = 0;
        } else {
            goto bad;
        }
        s->i++;
    }
    if (!words) goto bad;
    if (s->i < end) {
        s->i++; /* '@' */
        buf_append(&b, "@", 1);
        if (parse_domain(s, &b) < 0) goto bad;
    }
    if (s->i != end || b.len == 0) goto bad; /* a lone "" is no address */
    out_add(s, buf_take(&b));
    return 0;
bad:
    buf_release(&b);
    return -1;
}

static int is_angle_stop(int ty)
{
    return ty == '>' || ty == '<' || ty == ',' || ty == ';' || ty == ':';
}

/* angle-addr at s->i == '<': ["@" domain *("," ["@" domain]) ":"] addr-spec ">"
 * (RFC 5322 4.4 obs-route; the route is dropped). */
static int parse_angle(struct ps *s)
{
    s->i++;
    if (peek(s) == '@' || peek(s) == ',') {
        int hops = 0;
        for (;;) {
            int ty = peek(s);
            if (ty == ',') {
                s->i++;
            } else if (ty == '@') {
                s->i++;
                if (parse_domain(s, NULL) < 0) return -1;
                hops++;
            } else if (ty == ':' && hops) {
                s->i++;
                break;
            } else {
                return -1;
            }
        }
    }
    size_t k = s->i;
    while (k < s->nt && !is_angle_stop(s->t[k].type))
        k++;
    if (k >= s->nt || s->t[k].type != '>' || k == s->i) return -1; /* unbalanced, "<>" */
    if (parse_spec(s, k) < 0) return -1;
    s->i = k + 1;
    return 0;
}

static int parse_address(struct ps *s, int in_group);

/* group after its ':': [mailbox-list] ";" (RFC 5322 3.4). A missing ';' at the end
 * of the value is tolerated ("undisclosed-recipients:"). */
static int parse_group(struct ps *s)
{
    s->groups++;
    for (;;) {
        while (peek(s) == ',')
            s->i++;
        if (peek(s) == ';') {
            s->i++;
            return 0;
        }
        if (peek(s) == 0) return 0;
        if (parse_address(s, 1) < 0) return -1;
        int ty = peek(s);
        if (ty == ';' || ty == 0) continue;
        if (ty != ',') return -1;
    }
}

/* One address at s->i: decided by the first '<' (name-addr), ':' (group) or neither
 * (addr-spec) before the next ',' or ';'. Display names are skipped unchecked,
 * so "a@b.example <a@b.example>" and encoded words pass. */
static int parse_address(struct ps *s, int in_group)
{
    size_t j = s->i;
    for (; j < s->nt; j++) {
        int ty = s->t[j].type;
        if (ty == '<' || ty == ':' || ty == ',' || ty == ';') break;
        if (ty == '>') return -1;
    }
    if (j < s->nt && s->t[j].type == '<') {
        s->i = j;
        return parse_angle(s);
    }
    if (j < s->nt && s->t[j].type == ':') {
        if (in_group || s->no_groups) return -1; /* groups do not nest */
        s->i = j + 1;
        return parse_group(s);
    }
    return parse_spec(s, j);
}

void hdr_addresses_free(char **v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Both lists; mailboxes_only: RFC 5322 3.6.2 mailbox-list (no group, one mailbox
 * at least). */
static int parse_list(const char *value, size_t len, int mailboxes_only, char ***out, size_t *n)
{
    struct ps s = {.p = value, .no_groups = mailboxes_only};
    *out = NULL;
    *n = 0;
    if (lex(&s, len) < 0) goto bad;
    /* obs-addr-list, obs-mbox-list: empty elements between commas are allowed. */
    for (;;) {
        while (peek(&s) == ',')
            s.i++;
        if (peek(&s) == 0) break;
        if (parse_address(&s, 0) < 0) goto bad;
        int ty = peek(&s);
        if (ty != ',' && ty != 0) goto bad;
    }
    if (s.nout == 0 && (s.groups == 0 || mailboxes_only)) goto bad; /* nothing parseable */
    free(s.t);
    *out = s.out;
    *n = s.nout;
    return 0;
bad:
    free(s.t);
    hdr_addresses_free(s.out, s.nout);
    return -1;
}

int hdr_parse_addresses(const char *value, size_t len, char ***out, size_t *n)
{
    return parse_list(value, len, 0, out, n);
}

int hdr_parse_mailboxes(const char *value, size_t len, char ***out, size_t *n)
{
    return parse_list(value, len, 1, out, n);
}

void header_complete(struct buf *out, const char *hdr, size_t hdr_len, const struct hdr_complete *c)
{
    int has_from = 0, has_date = 0, has_msgid = 0;
    struct hdr_field f;
    size_t off = 0;
    while (off < hdr_len) {
        int n = hdr_next(hdr + off, hdr_len - off, &f);
        if (n <= 0) break; /* as Postfix: a line that is not a field ends the headers */
        has_from |= hdr_name_is(&f, "From");
        has_date |= hdr_name_is(&f, "Date");
        has_msgid |= hdr_name_is(&f, "Message-ID");
        off += (size_t)n;
    }
    /* hdr may be inside out: nothing is appended before this line. */
    if (!has_from && c->from_addr) {
        if (c->from_name && *c->from_name) {
            buf_puts(out, "From: \"");
            for (const char *p = c->from_name; *p; p++) {
                if (*p == '"' || *p == '\\') buf_puts(out, "\\");
                if (*p != '\r' && *p != '\n') buf_append(out, p, 1);
            }
            buf_printf(out, "\" <%s>\r\n", c->from_addr);
        } else {
            buf_printf(out, "From: %s\r\n", c->from_addr);
        }
    }
    if (!has_date) buf_printf(out, "Date: %s\r\n", c->date);
    if (!has_msgid) buf_printf(out, "Message-ID: <%s@%s>\r\n", c->msgid_left, c->msgid_domain);
}
