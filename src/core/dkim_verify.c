/* dkim_verify.c: DKIM verification's pure parts (dkim_verify.h): tag lists, the
 * DKIM-Signature and key records, canonicalization, the OpenSSL signature check.
 * Lookups, streaming state and results belong to policy/dkim_check.c. */
#include "core/compat.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "core/buf.h"
#include "core/dkim_verify.h"
#include "core/header.h"
#include "core/util.h"

/* ====================================================================== tag lists */

static int is_wsp(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int dkim_tags_parse(const char *p, size_t len, struct dkim_tag *tags, size_t max, size_t *n,
                    char *err, size_t errsize)
{
    size_t i = 0, cnt = 0;
    *n = 0;
    while (i < len) {
        while (i < len && is_wsp(p[i]))
            i++;
        if (i >= len) break;
        if (p[i] == ';') { /* an empty spec (";;" or a final ";") */
            i++;
            continue;
        }
        size_t ns = i;
        if (!isalpha((unsigned char)p[i])) {
            err_set(err, errsize, "bad tag name");
            return -1;
        }
        while (i < len && (isalnum((unsigned char)p[i]) || p[i] == '_'))
            i++;
        size_t nlen = i - ns;
        while (i < len && is_wsp(p[i]))
            i++;
        if (i >= len || p[i] != '=') {
            err_set(err, errsize, "tag without \"=\"");
            return -1;
        }
        i++;
        while (i < len && is_wsp(p[i]))
            i++;
        size_t vs = i, ve = i;
        while (i < len && p[i] != ';') {
            unsigned char c = (unsigned char)p[i];
            if (!is_wsp((char)c)) {
                /* VALCHAR %x21-3A / %x3C-7E; UTF-8 is allowed in some values (RFC 6376
                 * errata): take bytes >= 0x80 too */
                if (c < 0x21 || c == 0x7f) {
                    err_set(err, errsize, "bad character in a tag value");
                    return -1;
                }
                ve = i + 1;
            }
            i++;
        }
        if (cnt >= max) {
            err_set(err, errsize, "too many tags");
            return -1;
        }
        if (nlen >= sizeof tags[0].name) {
            err_set(err, errsize, "tag name too long");
            return -1;
        }
        memcpy(tags[cnt].name, p + ns, nlen);
        tags[cnt].name[nlen] = '\0';
        for (size_t k = 0; k < cnt; k++)
            if (strcmp(tags[k].name, tags[cnt].name) == 0) {
                err_set(err, errsize, "tag %s= given twice", tags[cnt].name);
                return -1;
            }
        tags[cnt].val = p + vs;
        tags[cnt].len = ve - vs;
        cnt++;
        if (i < len) i++; /* the ';' */
    }
    *n = cnt;
    return 0;
}

static const struct dkim_tag *tag_get(const struct dkim_tag *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0) return &t[i];
    return NULL;
}

static int tag_is(const struct dkim_tag *t, const char *word)
{
    return t && t->len == strlen(word) && strncasecmp(t->val, word, t->len) == 0;
}

/* A value copied without white space (b=, bh=, p= may be folded). 0, -1 too long. */
static int tag_nows(const struct dkim_tag *t, char *out, size_t outsize, size_t *outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < t->len; i++) {
        if (is_wsp(t->val[i])) continue;
        if (o + 1 >= outsize) return -1;
        out[o++] = t->val[i];
    }
    out[o] = '\0';
    *outlen = o;
    return 0;
}

static int tag_b64(const struct dkim_tag *t, unsigned char *out, size_t outsize, size_t *outlen)
{
    char tmp[2048];
    size_t n;
    if (tag_nows(t, tmp, sizeof tmp, &n) != 0) return -1;
    return base64_decode(tmp, n, out, outsize, outlen);
}

/* A decimal number of at most 12 digits (RFC 6376 allows 76 for l=; larger than any
 * message). -1 when not a number. */
static long long tag_num(const struct dkim_tag *t)
{
    if (!t->len || t->len > 12) return -1;
    long long v = 0;
    for (size_t i = 0; i < t->len; i++) {
        if (!isdigit((unsigned char)t->val[i])) return -1;
        v = v * 10 + (t->val[i] - '0');
    }
    return v;
}

static int tag_str(const struct dkim_tag *t, char *out, size_t outsize)
{
    if (t->len + 1 > outsize) return -1;
    memcpy(out, t->val, t->len);
    out[t->len] = '\0';
    return 0;
}

/* ================================================================ DKIM-Signature */

int dkim_sig_parse(const char *value, size_t len, struct dkim_sig *sig, char *err, size_t errsize)
{
    struct dkim_tag tags[DKIM_TAGS_MAX];
    size_t n;
    memset(sig, 0, sizeof *sig);
    sig->l = sig->t = sig->x = -1;
    if (dkim_tags_parse(value, len, tags, DKIM_TAGS_MAX, &n, err, errsize) != 0) return -1;
    const struct dkim_tag *t;
    /* d= and s= first, so a broken signature can still be named */
    if ((t = tag_get(tags, n, "d")) && tag_str(t, sig->d, sizeof sig->d) == 0) str_lower(sig->d);
    if ((t = tag_get(tags, n, "s"))) tag_str(t, sig->s, sizeof sig->s);
    if ((t = tag_get(tags, n, "b"))) {
        size_t bl;
        char tmp[2048];
        if (tag_nows(t, tmp, sizeof tmp, &bl) == 0) {
            tmp[bl > 8 ? 8 : bl] = '\0';
            str_copy(sig->b_head, tmp, sizeof sig->b_head);
        }
    }
    static const char *const required[] = {"v", "a", "b", "bh", "d", "h", "s"};
    for (size_t k = 0; k < sizeof required / sizeof required[0]; k++)
        if (!tag_get(tags, n, required[k])) {
            err_set(err, errsize, "missing tag %s=", required[k]);
            return -1;
        }
    if (!tag_is(tag_get(tags, n, "v"), "1")) {
        err_set(err, errsize, "v= is not 1");
        return -1;
    }
    if (!sig->d[0] || !sig->s[0]) {
        err_set(err, errsize, "bad d= or s=");
        return -1;
    }
    t = tag_get(tags, n, "a");
    if (tag_is(t, "rsa-sha256"))
        sig->alg = DKIM_RSA_SHA256;
    else if (tag_is(t, "rsa-sha1"))
        sig->alg = DKIM_RSA_SHA1;
    else if (tag_is(t, "ed25519-sha256"))
        sig->alg = DKIM_ED25519_SHA256;
    else {
        err_set(err, errsize, "unknown algorithm a=");
        return -1;
    }
    if ((t = tag_get(tags, n, "c"))) {
        const char *slash = memchr(t->val, '/', t->len);
        size_t hl = slash ? (size_t)(slash - t->val) : t->len;
        struct dkim_tag hc = {.val = t->val, .len = hl};
        struct dkim_tag bc = {.val = slash ? slash + 1 : "simple",
                              .len = slash ? t->len - hl - 1 : 6};
        if (tag_is(&hc, "relaxed"))
            sig->hrelaxed = 1;
        else if (!tag_is(&hc, "simple")) {
            err_set(err, errsize, "unknown canonicalization c=");
            return -1;
        }
        if (tag_is(&bc, "relaxed"))
            sig->brelaxed = 1;
        else if (!tag_is(&bc, "simple")) {
            err_set(err, errsize, "unknown canonicalization c=");
            return -1;
        }
    }
    if ((t = tag_get(tags, n, "q")) && !tag_is(t, "dns/txt")) {
        err_set(err, errsize, "unknown query method q=");
        return -1;
    }
    if (tag_b64(tag_get(tags, n, "b"), sig->b, sizeof sig->b, &sig->blen) != 0 || !sig->blen) {
        err_set(err, errsize, "bad b=");
        return -1;
    }
    if (tag_b64(tag_get(tags, n, "bh"), sig->bh, sizeof sig->bh, &sig->bhlen) != 0 || !sig->bhlen) {
        err_set(err, errsize, "bad bh=");
        return -1;
    }
    /* h=: names separated by ':' with white space allowed around them */
    t = tag_get(tags, n, "h");
    int has_from = 0;
    for (size_t i = 0; i < t->len;) {
        while (i < t->len && (is_wsp(t->val[i]) || t->val[i] == ':'))
            i++;
        size_t s0 = i;
        while (i < t->len && t->val[i] != ':' && !is_wsp(t->val[i]))
            i++;
        if (i == s0) break;
        if (sig->nh >= DKIM_HNAMES_MAX || i - s0 >= sizeof sig->hnames[0]) {
            err_set(err, errsize, "h= too long");
            return -1;
        }
        memcpy(sig->hnames[sig->nh], t->val + s0, i - s0);
        sig->hnames[sig->nh][i - s0] = '\0';
        str_lower(sig->hnames[sig->nh]);
        if (strcmp(sig->hnames[sig->nh], "from") == 0) has_from = 1;
        sig->nh++;
    }
    if (!has_from) { /* RFC 6376 5.4 */
        err_set(err, errsize, "h= does not list From");
        return -1;
    }
    if ((t = tag_get(tags, n, "i"))) {
        if (tag_str(t, sig->i, sizeof sig->i) != 0) {
            err_set(err, errsize, "bad i=");
            return -1;
        }
        const char *at = strrchr(sig->i, '@');
        if (!at) {
            err_set(err, errsize, "bad i=");
            return -1;
        }
        char dom[256];
        str_copy(dom, at + 1, sizeof dom);
        str_lower(dom);
        size_t dl = strlen(dom), sl = strlen(sig->d);
        /* RFC 6376 3.5: i='s domain is d= or a subdomain of it */
        if (!(strcmp(dom, sig->d) == 0 ||
              (dl > sl && dom[dl - sl - 1] == '.' && strcmp(dom + dl - sl, sig->d) == 0))) {
            err_set(err, errsize, "i= is not in d=");
            return -1;
        }
    }
    if ((t = tag_get(tags, n, "l")) && (sig->l = tag_num(t)) < 0) {
        err_set(err, errsize, "bad l=");
        return -1;
    }
    if ((t = tag_get(tags, n, "t")) && (sig->t = tag_num(t)) < 0) {
        err_set(err, errsize, "bad t=");
        return -1;
    }
    if ((t = tag_get(tags, n, "x")) && (sig->x = tag_num(t)) < 0) {
        err_set(err, errsize, "bad x=");
        return -1;
    }
    if (sig->t >= 0 && sig->x >= 0 && sig->x < sig->t) { /* RFC 6376 3.5 x= */
        err_set(err, errsize, "x= is before t=");
        return -1;
    }
    return 0;
}

/* ===================================================================== key records */

int dkim_key_parse(const char *txt, size_t len, struct dkim_key *k, char *err, size_t errsize)
{
    struct dkim_tag tags[DKIM_TAGS_MAX];
    size_t n;
    memset(k, 0, sizeof *k);
    if (dkim_tags_parse(txt, len, tags, DKIM_TAGS_MAX, &n, err, errsize) != 0) return -1;
    const struct dkim_tag *t;
    if ((t = tag_get(tags, n, "v")) && (t != &tags[0] || !tag_is(t, "DKIM1"))) {
        err_set(err, errsize, "v= is not DKIM1");
        return -1;
    }
    t = tag_get(tags, n, "k");
    if (!t || tag_is(t, "rsa"))
        k->type = DKIM_KEY_RSA;
    else if (tag_is(t, "ed25519"))
        k->type = DKIM_KEY_ED25519;
    else {
        err_set(err, errsize, "unknown key type k=");
        return -1;
    }
    if ((t = tag_get(tags, n, "h"))) {
        int sha256 = 0, sha1 = 0;
        for (size_t i = 0; i < t->len;) {
            while (i < t->len && (is_wsp(t->val[i]) || t->val[i] == ':'))
                i++;
            size_t s0 = i;
            while (i < t->len && t->val[i] != ':' && !is_wsp(t->val[i]))
                i++;
            struct dkim_tag w = {.val = t->val + s0, .len = i - s0};
            if (tag_is(&w, "sha256")) sha256 = 1;
            if (tag_is(&w, "sha1")) sha1 = 1;
        }
        k->sha1_only = sha1 && !sha256;
        if (!sha256 && !sha1) {
            err_set(err, errsize, "no known hash in h=");
            return -1;
        }
    }
    if ((t = tag_get(tags, n, "s"))) {
        int ok = 0;
        for (size_t i = 0; i < t->len;) {
            while (i < t->len && (is_wsp(t->val[i]) || t->val[i] == ':'))
                i++;
            size_t s0 = i;
            while (i < t->len && t->val[i] != ':' && !is_wsp(t->val[i]))
                i++;
            struct dkim_tag w = {.val = t->val + s0, .len = i - s0};
            if (tag_is(&w, "email") || tag_is(&w, "*")) ok = 1;
        }
        if (!ok) {
            err_set(err, errsize, "key not for email (s=)");
            return -1;
        }
    }
    if ((t = tag_get(tags, n, "t"))) {
        for (size_t i = 0; i < t->len;) {
            while (i < t->len && (is_wsp(t->val[i]) || t->val[i] == ':'))
                i++;
            size_t s0 = i;
            while (i < t->len && t->val[i] != ':' && !is_wsp(t->val[i]))
                i++;
            struct dkim_tag w = {.val = t->val + s0, .len = i - s0};
            if (tag_is(&w, "y")) k->testing = 1;
            if (tag_is(&w, "s")) k->strict = 1;
        }
    }
    if (!(t = tag_get(tags, n, "p"))) {
        err_set(err, errsize, "no p= in the key record");
        return -1;
    }
    if (tag_b64(t, k->p, sizeof k->p, &k->plen) != 0) {
        err_set(err, errsize, "bad base64 in p=");
        return -1;
    }
    return 0;
}

/* ============================================================== canonicalization
 * RFC 6376 3.4. Header: simple keeps the field as is; relaxed lowercases the name,
 * unfolds, turns runs of WSP into one SP and removes WSP at the ends of the value and
 * before the colon. Body: simple removes empty lines at the end; relaxed also drops
 * WSP at line ends and turns runs of WSP into one SP. */

void dkim_canon_header(const char *raw, size_t len, int relaxed, int crlf, struct buf *out)
{
    if (!relaxed) {
        buf_append(out, raw, len);
        if (crlf) buf_append(out, "\r\n", 2);
        return;
    }
    const char *colon = memchr(raw, ':', len);
    size_t nend = colon ? (size_t)(colon - raw) : len;
    size_t ne = nend;
    while (ne > 0 && (raw[ne - 1] == ' ' || raw[ne - 1] == '\t'))
        ne--;
    for (size_t i = 0; i < ne; i++) {
        char c = (char)tolower((unsigned char)raw[i]);
        buf_append(out, &c, 1);
    }
    buf_append(out, ":", 1);
    if (colon) {
        int wsp = 0, any = 0;
        for (size_t i = nend + 1; i < len; i++) {
            char c = raw[i];
            if (c == '\r' || c == '\n') continue; /* unfold */
            if (c == ' ' || c == '\t') {
                wsp = 1;
                continue;
            }
            if (wsp && any) buf_append(out, " ", 1);
            wsp = 0;
            any = 1;
            buf_append(out, &c, 1);
        }
    }
    if (crlf) buf_append(out, "\r\n", 2);
}

struct dkim_body {
    int relaxed;
    enum dkim_alg alg;
    long long limit;
    EVP_MD_CTX *md;
    unsigned long long total; /* canonical bytes produced (not cut by limit) */
    unsigned long long crlf_pending;
    int wsp_pending, cr_pending, line_content;
    unsigned char stage[4096];
    size_t nstage;
};

struct dkim_body *dkim_body_new(int relaxed, enum dkim_alg alg, long long limit)
{
    struct dkim_body *b = xcalloc(1, sizeof *b);
    b->relaxed = relaxed;
    b->alg = alg;
    b->limit = limit;
    b->md = EVP_MD_CTX_new();
    if (!b->md) abort();
    if (EVP_DigestInit_ex(b->md, alg == DKIM_RSA_SHA1 ? EVP_sha1() : EVP_sha256(), NULL) != 1)
        abort();
    return b;
}

void dkim_body_free(struct dkim_body *b)
{
    if (!b) return;
    EVP_MD_CTX_free(b->md);
    free(b);
}

int dkim_body_matches(const struct dkim_body *b, const struct dkim_sig *sig)
{
    return b->relaxed == sig->brelaxed &&
           (b->alg == DKIM_RSA_SHA1) == (sig->alg == DKIM_RSA_SHA1) && b->limit == sig->l;
}

static void body_flush(struct dkim_body *b)
{
    if (b->nstage) EVP_DigestUpdate(b->md, b->stage, b->nstage);
    b->nstage = 0;
}

static void body_emit(struct dkim_body *b, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (b->limit < 0 || b->total < (unsigned long long)b->limit) {
            if (b->nstage == sizeof b->stage) body_flush(b);
            b->stage[b->nstage++] = (unsigned char)p[i];
        }
        b->total++;
    }
}

static void body_content(struct dkim_body *b, char c)
{
    if (b->relaxed && (c == ' ' || c == '\t')) {
        b->wsp_pending = 1;
        return;
    }
    for (; b->crlf_pending; b->crlf_pending--)
        body_emit(b, "\r\n", 2);
    if (b->wsp_pending) body_emit(b, " ", 1);
    b->wsp_pending = 0;
    body_emit(b, &c, 1);
    b->line_content = 1;
}

static void body_eol(struct dkim_body *b)
{
    if (b->line_content)
        body_emit(b, "\r\n", 2);
    else
        b->crlf_pending++;
    b->line_content = 0;
    b->wsp_pending = 0;
}

void dkim_body_update(struct dkim_body *b, const void *data, size_t len)
{
    const char *p = data;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (b->cr_pending) {
            b->cr_pending = 0;
            if (c == '\n') {
                body_eol(b);
                continue;
            }
            body_content(b, '\r');
        }
        if (c == '\r')
            b->cr_pending = 1;
        else if (c == '\n')
            body_eol(b);
        else
            body_content(b, c);
    }
}

size_t dkim_body_final(struct dkim_body *b, unsigned char *out, unsigned long long *total)
{
    if (b->cr_pending) body_content(b, '\r');
    b->cr_pending = 0;
    if (b->line_content) body_eol(b);
    /* simple: an empty body is one CRLF; relaxed: nothing (RFC 6376 3.4.4, errata) */
    if (b->total == 0 && !b->relaxed) body_emit(b, "\r\n", 2);
    body_flush(b);
    unsigned int n = 0;
    EVP_DigestFinal_ex(b->md, out, &n);
    if (total) *total = b->total;
    return n;
}

/* ============================================================== signature check */

/* The header field the n-th name of h= selects: RFC 6376 5.4.2, instances are taken
 * from the bottom up; a name listed more often than it occurs selects nothing. used[]
 * marks the fields taken. Returns the field's index or -1. */
static long pick_field(const struct hdr_field *f, size_t nf, const char *name, unsigned char *used)
{
    for (size_t k = nf; k-- > 0;) {
        if (used[k] || !f[k].name) continue;
        if (f[k].name_len == strlen(name) && strncasecmp(f[k].name, name, f[k].name_len) == 0) {
            used[k] = 1;
            return (long)k;
        }
    }
    return -1;
}

/* The raw field without its final line end. */
static size_t field_len(const struct hdr_field *f)
{
    size_t n = f->line_len;
    if (n && f->name[n - 1] == '\n') n--;
    if (n && f->name[n - 1] == '\r') n--;
    return n;
}

/* sigfield with the value of its b= tag emptied (RFC 6376 3.7). */
static void strip_b(const char *p, size_t len, struct buf *out)
{
    const char *colon = memchr(p, ':', len);
    size_t i = colon ? (size_t)(colon - p) + 1 : len;
    buf_append(out, p, i);
    while (i < len) {
        /* a tag spec: [FWS] name [FWS] = value ; */
        size_t s0 = i;
        while (i < len && is_wsp(p[i]))
            i++;
        size_t ns = i;
        while (i < len && (isalnum((unsigned char)p[i]) || p[i] == '_'))
            i++;
        int is_b = i - ns == 1 && p[ns] == 'b';
        while (i < len && is_wsp(p[i]))
            i++;
        if (is_b && i < len && p[i] == '=') {
            buf_append(out, p + s0, i + 1 - s0);
            i++;
            while (i < len && p[i] != ';')
                i++;
        } else {
            while (i < len && p[i] != ';')
                i++;
            buf_append(out, p + s0, i - s0);
        }
        if (i < len) {
            buf_append(out, ";", 1);
            i++;
        }
    }
}

int dkim_sig_check(const struct dkim_sig *sig, const struct dkim_key *key, const char *hdrs,
                   size_t hdrlen, const char *sigfield, size_t sigfieldlen, int *bits, char *err,
                   size_t errsize)
{
    *bits = 0;
    if ((sig->alg == DKIM_ED25519_SHA256) != (key->type == DKIM_KEY_ED25519)) {
        err_set(err, errsize, "the key's type does not match a=");
        return -1;
    }
    if (key->sha1_only && sig->alg != DKIM_RSA_SHA1) {
        err_set(err, errsize, "the key does not allow sha256 (h=)");
        return -1;
    }
    /* the fields, in order */
    enum { NF_MAX = 1024 };
    struct hdr_field *f = xcalloc(NF_MAX, sizeof *f);
    size_t nf = 0;
    for (size_t i = 0; i < hdrlen && nf < NF_MAX;) {
        struct hdr_field hf;
        int r = hdr_next(hdrs + i, hdrlen - i, &hf);
        if (r == 0) break;
        if (r > 0) {
            f[nf] = hf;
            f[nf].name = hdrs + i; /* the raw field starts at its name */
            nf++;
        }
        i += r > 0 ? (size_t)r : hf.line_len;
        if (r < 0 && !hf.line_len) break;
    }
    unsigned char *used = xcalloc(nf ? nf : 1, 1);
    struct buf data;
    buf_init(&data, 0);
    for (size_t k = 0; k < sig->nh; k++) {
        long idx = pick_field(f, nf, sig->hnames[k], used);
        if (idx >= 0) dkim_canon_header(f[idx].name, field_len(&f[idx]), sig->hrelaxed, 1, &data);
    }
    struct buf sf;
    buf_init(&sf, 0);
    strip_b(sigfield, sigfieldlen, &sf);
    dkim_canon_header(sf.data ? sf.data : "", sf.len, sig->hrelaxed, 0, &data);
    buf_release(&sf);
    free(used);
    free(f);

    int rc = -1;
    EVP_PKEY *pk = NULL;
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    if (!mc) abort();
    if (key->type == DKIM_KEY_ED25519) {
        if (key->plen != 32 ||
            !(pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key->p, key->plen))) {
            err_set(err, errsize, "bad Ed25519 key");
            goto out;
        }
        *bits = 256;
        /* RFC 8463 3: Ed25519 signs the SHA-256 hash of the header data */
        unsigned char h[32];
        unsigned int hl = 0;
        EVP_Digest(data.data ? data.data : "", data.len, h, &hl, EVP_sha256(), NULL);
        rc = EVP_DigestVerifyInit(mc, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestVerify(mc, sig->b, sig->blen, h, hl) == 1;
    } else {
        const unsigned char *q = key->p;
        pk = d2i_PUBKEY(NULL, &q, (long)key->plen);
        if (!pk) { /* some publish the bare RSAPublicKey */
            q = key->p;
            pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &q, (long)key->plen);
        }
        if (!pk || EVP_PKEY_base_id(pk) != EVP_PKEY_RSA) {
            err_set(err, errsize, "bad RSA key");
            goto out;
        }
        *bits = EVP_PKEY_get_bits(pk);
        if (*bits < 1024) { /* RFC 8301 3.2 */
            err_set(err, errsize, "%d-bit key is too small", *bits);
            rc = -1;
            goto out;
        }
        rc = EVP_DigestVerifyInit(mc, NULL, sig->alg == DKIM_RSA_SHA1 ? EVP_sha1() : EVP_sha256(),
                                  NULL, pk) == 1 &&
             EVP_DigestVerify(mc, sig->b, sig->blen,
                              (const unsigned char *)(data.data ? data.data : ""), data.len) == 1;
    }
    if (rc == 0) err_set(err, errsize, "signature did not verify");
out:
    EVP_MD_CTX_free(mc);
    EVP_PKEY_free(pk);
    buf_release(&data);
    return rc;
}
