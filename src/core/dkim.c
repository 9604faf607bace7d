/* dkim.c: tag lists, canonicalization, header selection of RFC 6376 (dkim.h). Pure:
 * what to sign with and what a result means is the signer's and the verifier's. */
#include "core/compat.h"

#include <openssl/evp.h>

#include "core/buf.h"
#include "core/dkim.h"
#include "core/header.h"
#include "core/util.h"

/* ---------------------------------------------------------------- tag lists */

static int is_wsp(int c)
{
    return c == ' ' || c == '\t';
}

/* Skip FWS (WSP and line breaks followed by WSP; a bare CRLF/LF is taken too, as the
 * value has already been cut out of a header field). */
static size_t skip_fws(const char *s, size_t i, size_t len)
{
    while (i < len && (is_wsp((unsigned char)s[i]) || s[i] == '\r' || s[i] == '\n'))
        i++;
    return i;
}

static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

int dkim_tags_parse(const char *s, size_t len, struct dkim_tag *tags, size_t max, size_t *errpos)
{
    size_t n = 0, i = 0, bad = 0;
    for (;;) {
        i = skip_fws(s, i, len);
        if (i >= len) break; /* empty list, or one ending in ";" */
        size_t ns = i;
        if (!is_alpha((unsigned char)s[i])) {
            bad = i;
            goto fail;
        }
        while (i < len &&
               (is_alpha((unsigned char)s[i]) || is_digit((unsigned char)s[i]) || s[i] == '_'))
            i++;
        size_t ne = i;
        i = skip_fws(s, i, len);
        if (i >= len || s[i] != '=') {
            bad = i;
            goto fail;
        }
        i = skip_fws(s, i + 1, len);
        size_t vs = i, ve = i;
        while (i < len && s[i] != ';') {
            unsigned char c = (unsigned char)s[i];
            if (is_wsp(c) || c == '\r' || c == '\n') {
                i++;
                continue;
            }
            if (c < 0x21 || c > 0x7e) { /* VALCHAR: %x21-3A / %x3C-7E */
                bad = i;
                goto fail;
            }
            ve = ++i;
        }
        if (n >= max) {
            bad = ns;
            goto fail;
        }
        for (size_t k = 0; k < n; k++)
            if (tags[k].name_len == ne - ns && memcmp(tags[k].name, s + ns, ne - ns) == 0) {
                bad = ns;
                goto fail;
            }
        tags[n].name = s + ns;
        tags[n].name_len = ne - ns;
        tags[n].value = s + vs;
        tags[n].value_len = ve - vs;
        n++;
        if (i >= len) break;
        i++; /* ";" */
    }
    return (int)n;
fail:
    if (errpos) *errpos = bad;
    return -1;
}

const struct dkim_tag *dkim_tag_find(const struct dkim_tag *tags, size_t n, const char *name)
{
    size_t l = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (tags[i].name_len == l && memcmp(tags[i].name, name, l) == 0) return &tags[i];
    return NULL;
}

long dkim_value_compact(const char *v, size_t len, char *dst, size_t dstsize)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (is_wsp((unsigned char)v[i]) || v[i] == '\r' || v[i] == '\n') continue;
        if (o + 1 >= dstsize) return -1;
        dst[o++] = v[i];
    }
    if (dstsize == 0) return -1;
    dst[o] = '\0';
    return (long)o;
}

/* ---------------------------------------------------------- canonicalization */

static int canon_word(const char *v, size_t len, enum dkim_canon *c)
{
    if (len == 6 && memcmp(v, "simple", 6) == 0) {
        *c = DKIM_CANON_SIMPLE;
        return 0;
    }
    if (len == 7 && memcmp(v, "relaxed", 7) == 0) {
        *c = DKIM_CANON_RELAXED;
        return 0;
    }
    return -1;
}

int dkim_canon_parse(const char *v, size_t len, enum dkim_canon *hdr, enum dkim_canon *body)
{
    const char *slash = memchr(v, '/', len);
    size_t hl = slash ? (size_t)(slash - v) : len;
    if (canon_word(v, hl, hdr) != 0) return -1;
    if (!slash) {
        *body = DKIM_CANON_SIMPLE;
        return 0;
    }
    return canon_word(slash + 1, len - hl - 1, body);
}

/* Append p with every bare LF made CRLF (simple keeps the bytes, but the wire form
 * of a line end is CRLF). */
static void append_crlf(struct buf *out, const char *p, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++)
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) {
            buf_append(out, p + start, i - start);
            buf_append(out, "\r\n", 2);
            start = i + 1;
        }
    buf_append(out, p + start, len - start);
}

/* Relaxed (3.4.2) value: unfold, WSP runs as one SP, trimmed at both ends. */
static void append_relaxed_value(struct buf *out, const char *v, size_t len)
{
    int wsp = 0, any = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '\r' || c == '\n') continue; /* unfold */
        if (is_wsp(c)) {
            wsp = 1;
            continue;
        }
        if (wsp && any) buf_append(out, " ", 1);
        wsp = 0;
        any = 1;
        buf_append(out, (const char *)&v[i], 1);
    }
}

void dkim_canon_header(struct buf *out, enum dkim_canon c, const char *name, size_t name_len,
                       const char *value, size_t value_len, int crlf)
{
    if (c == DKIM_CANON_SIMPLE) {
        /* the field as it is: from the name up to the end of the value (both point
         * into the same header section) */
        append_crlf(out, name, (size_t)(value + value_len - name));
    } else {
        for (size_t i = 0; i < name_len; i++) {
            char ch = name[i];
            if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
            buf_append(out, &ch, 1);
        }
        buf_append(out, ":", 1);
        append_relaxed_value(out, value, value_len);
    }
    if (crlf) buf_append(out, "\r\n", 2);
}

/* ------------------------------------------------------------------- bodies */

void dkim_body_init(struct dkim_body *b, enum dkim_canon c, uint64_t limit)
{
    memset(b, 0, sizeof *b);
    b->canon = c;
    b->limit = limit;
    b->md = EVP_MD_CTX_new();
    if (!b->md || EVP_DigestInit_ex(b->md, EVP_sha256(), NULL) != 1) abort();
}

static void body_flush(struct dkim_body *b)
{
    if (b->out_len) EVP_DigestUpdate(b->md, b->out, b->out_len);
    b->out_len = 0;
}

static void body_emit(struct dkim_body *b, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (b->length++ >= b->limit) continue; /* l=: counted, not hashed */
        if (b->out_len == sizeof b->out) body_flush(b);
        b->out[b->out_len++] = (unsigned char)p[i];
    }
}

/* A byte of line content: first the empty lines held back, then a held WSP run. */
static void body_content(struct dkim_body *b, char c)
{
    if (!b->in_line) {
        for (; b->empty > 0; b->empty--)
            body_emit(b, "\r\n", 2);
    }
    if (b->wsp) body_emit(b, " ", 1);
    b->wsp = 0;
    b->in_line = 1;
    body_emit(b, &c, 1);
}

static void body_line_end(struct dkim_body *b)
{
    b->wsp = 0; /* relaxed: WSP at the end of a line goes */
    if (b->in_line)
        body_emit(b, "\r\n", 2);
    else
        b->empty++; /* 3.4.3, 3.4.4: empty lines at the end go */
    b->in_line = 0;
}

void dkim_body_feed(struct dkim_body *b, const void *p, size_t len)
{
    const char *s = p;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (b->cr) {
            b->cr = 0;
            if (c == '\n') {
                body_line_end(b);
                continue;
            }
            body_content(b, '\r'); /* a bare CR is content */
        }
        if (c == '\r') {
            b->cr = 1;
        } else if (c == '\n') {
            body_line_end(b);
        } else if (b->canon == DKIM_CANON_RELAXED && is_wsp((unsigned char)c)) {
            b->wsp = 1;
        } else {
            body_content(b, c);
        }
    }
}

void dkim_body_final(struct dkim_body *b, unsigned char md[32])
{
    if (b->cr) {
        b->cr = 0;
        body_content(b, '\r');
    }
    if (b->in_line) body_line_end(b); /* a last line without CRLF gets one */
    /* 3.4.3: simple makes an empty body one CRLF; 3.4.4: relaxed leaves it empty */
    if (b->canon == DKIM_CANON_SIMPLE && b->length == 0) body_emit(b, "\r\n", 2);
    body_flush(b);
    unsigned int n = 0;
    EVP_DigestFinal_ex(b->md, md, &n);
    EVP_MD_CTX_free(b->md);
    b->md = NULL;
}

void dkim_body_free(struct dkim_body *b)
{
    if (!b) return;
    EVP_MD_CTX_free(b->md);
    b->md = NULL;
}

/* ----------------------------------------------------------- header fields */

#define DKIM_FIELDS_MAX 1000 /* fields looked at; a header section is at most 64 KiB */

struct field {
    const char *name, *value;
    size_t name_len, value_len;
    int used;
};

int dkim_select_headers(struct buf *out, enum dkim_canon c, const char *hdr, size_t hdr_len,
                        const char *h, size_t h_len)
{
    struct field *fs = xcalloc(DKIM_FIELDS_MAX, sizeof *fs);
    size_t nf = 0, off = 0;
    while (off < hdr_len && nf < DKIM_FIELDS_MAX) {
        struct hdr_field f;
        int r = hdr_next(hdr + off, hdr_len - off, &f);
        if (r == 0) break;
        if (r < 0) {
            if (f.line_len == 0) break;
            off += f.line_len;
            continue;
        }
        fs[nf].name = f.name;
        fs[nf].name_len = f.name_len;
        fs[nf].value = f.value;
        fs[nf].value_len = f.value_len;
        nf++;
        off += (size_t)r;
    }
    int added = 0;
    size_t i = 0;
    while (i < h_len) {
        while (i < h_len &&
               (h[i] == ':' || is_wsp((unsigned char)h[i]) || h[i] == '\r' || h[i] == '\n'))
            i++;
        size_t s = i;
        while (i < h_len && h[i] != ':' && !is_wsp((unsigned char)h[i]) && h[i] != '\r' &&
               h[i] != '\n')
            i++;
        size_t l = i - s;
        if (l == 0) continue;
        for (size_t k = nf; k-- > 0;) {
            if (fs[k].used || fs[k].name_len != l || strncasecmp(fs[k].name, h + s, l) != 0)
                continue;
            fs[k].used = 1;
            dkim_canon_header(out, c, fs[k].name, fs[k].name_len, fs[k].value, fs[k].value_len, 1);
            added++;
            break;
        }
    }
    free(fs);
    return added;
}

void dkim_sig_field_canon(struct buf *out, enum dkim_canon c, const char *name, size_t name_len,
                          const char *value, size_t value_len)
{
    /* find the b= tag: a "b" at the start of a tag, then FWS and "=" */
    size_t cut_s = value_len, cut_e = value_len;
    size_t i = 0;
    while (i < value_len) {
        size_t t = skip_fws(value, i, value_len);
        if (t < value_len && value[t] == 'b') {
            size_t e = skip_fws(value, t + 1, value_len);
            if (e < value_len && value[e] == '=') {
                cut_s = e + 1;
                const char *semi = memchr(value + cut_s, ';', value_len - cut_s);
                cut_e = semi ? (size_t)(semi - value) : value_len;
                break;
            }
        }
        const char *semi = memchr(value + i, ';', value_len - i);
        if (!semi) break;
        i = (size_t)(semi - value) + 1;
    }
    /* the field with the b= value cut out, in one piece so that simple sees it as is */
    struct buf tmp;
    buf_init(&tmp, 0);
    size_t pre = (size_t)(value - name);
    buf_append(&tmp, name, pre + cut_s);
    buf_append(&tmp, value + cut_e, value_len - cut_e);
    const char *nn = tmp.data ? tmp.data : "";
    dkim_canon_header(out, c, nn, name_len, nn + pre, tmp.len - pre, 0);
    buf_release(&tmp);
}
