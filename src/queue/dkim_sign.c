/* dkim_sign.c: DKIM signing at enqueue (dkim_sign.h): the keys of dkim.key_dir, and
 * the signer a spool message streams through. The header section is held until its
 * end (bounded), then room for the signature fields is written at the start of the
 * file and the body is hashed as it goes to disk; at commit the fields are computed
 * and written into that room, so the file is never read again nor copied, and every
 * delivery attempt sends the same bytes. */
#include "core/compat.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include "core/core.h"
#include "core/dkim.h"
#include "queue/dkim_sign.h"
#include "queue/queue.h"

/* ------------------------------------------------------------------- keys */

struct dkim_key {
    char *domain, *selector;
    enum dkim_key_type type;
    EVP_PKEY *pkey;
    long long mtime; /* nanoseconds: keys made within a second keep their order */
};

struct keyset {
    struct dkim_key *keys;
    size_t n;
    char *signing_domain;
};

static struct keyset *current;

static void keyset_free(struct keyset *k)
{
    if (!k) return;
    for (size_t i = 0; i < k->n; i++) {
        free(k->keys[i].domain);
        free(k->keys[i].selector);
        EVP_PKEY_free(k->keys[i].pkey);
    }
    free(k->keys);
    free(k->signing_domain);
    free(k);
}

const char *dkim_key_type_name(enum dkim_key_type t)
{
    return t == DKIM_KEY_ED25519 ? "ed25519" : "rsa";
}

char *dkim_key_path(const char *dir, const char *domain, const char *selector, enum dkim_key_type t)
{
    return xasprintf("%s/%s/%s.%s.pem", dir, domain, selector, dkim_key_type_name(t));
}

static void ssl_err(char *err, size_t errsize, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e) ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    err_set(err, errsize, "%s: %s%s%s", path, what, buf[0] ? ": " : "", buf);
}

/* Read a private key and check it is of type t. NULL with err set. */
static EVP_PKEY *key_read(const char *path, enum dkim_key_type *t, int check_type, char *err,
                          size_t errsize)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        err_set(err, errsize, "%s: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!k) {
        ssl_err(err, errsize, "not a PEM private key", path);
        return NULL;
    }
    int id = EVP_PKEY_get_base_id(k);
    enum dkim_key_type is = id == EVP_PKEY_ED25519 ? DKIM_KEY_ED25519 : DKIM_KEY_RSA;
    if ((id != EVP_PKEY_RSA && id != EVP_PKEY_ED25519) || (check_type && is != *t)) {
        err_set(err, errsize, "%s: not an %s key", path,
                check_type ? dkim_key_type_name(*t) : "RSA or Ed25519");
        EVP_PKEY_free(k);
        return NULL;
    }
    if (id == EVP_PKEY_RSA && EVP_PKEY_get_bits(k) < 1024) { /* RFC 8301 3.2 */
        err_set(err, errsize, "%s: RSA key of %d bits, at least 1024 are needed", path,
                EVP_PKEY_get_bits(k));
        EVP_PKEY_free(k);
        return NULL;
    }
    *t = is;
    return k;
}

char *dkim_key_public(const char *path, enum dkim_key_type *type, char *err, size_t errsize)
{
    EVP_PKEY *k = key_read(path, type, 0, err, errsize);
    if (!k) return NULL;
    unsigned char raw[4096], *der = NULL;
    size_t len = 0;
    int ok;
    if (*type == DKIM_KEY_ED25519) {
        len = sizeof raw;
        ok = EVP_PKEY_get_raw_public_key(k, raw, &len) == 1;
    } else {
        int n = i2d_PUBKEY(k, &der);
        ok = n > 0 && (size_t)n <= sizeof raw;
        if (ok) memcpy(raw, der, (size_t)n), len = (size_t)n;
        OPENSSL_free(der);
    }
    EVP_PKEY_free(k);
    if (!ok) {
        ssl_err(err, errsize, "cannot export the public key", path);
        return NULL;
    }
    size_t outsize = len * 4 / 3 + 8, outlen = 0;
    char *out = xmalloc(outsize);
    base64_encode(raw, len, out, outsize, &outlen);
    return out;
}

static int name_ok(const char *s)
{
    if (!*s || *s == '.') return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '-' || *s == '.' || *s == '_')) return 0;
    return 1;
}

/* Add the keys of DIR/DOMAIN. 0 done, -1 err set. */
static int load_domain(struct keyset *ks, const char *dir, const char *domain, char *err,
                       size_t errsize)
{
    char *ddir = xasprintf("%s/%s", dir, domain);
    DIR *d = opendir(ddir);
    if (!d) {
        free(ddir);
        return 0; /* not a folder */
    }
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        size_t l = strlen(n);
        enum dkim_key_type t;
        size_t sl;
        if (l > 8 && strcmp(n + l - 8, ".rsa.pem") == 0) {
            t = DKIM_KEY_RSA, sl = l - 8;
        } else if (l > 12 && strcmp(n + l - 12, ".ed25519.pem") == 0) {
            t = DKIM_KEY_ED25519, sl = l - 12;
        } else {
            continue;
        }
        char *sel = xstrndup(n, sl);
        char *path = xasprintf("%s/%s", ddir, n);
        struct stat st;
        EVP_PKEY *k = NULL;
        if (!name_ok(sel)) {
            err_set(err, errsize, "%s: \"%s\" is not a selector (letters, digits, -, _, .)", path,
                    sel);
        } else if (stat(path, &st) == 0) {
            k = key_read(path, &t, 1, err, errsize);
        } else {
            err_set(err, errsize, "%s: %s", path, strerror(errno));
        }
        free(path);
        if (!k) {
            free(sel);
            r = -1;
            break;
        }
        ks->keys = xrealloc(ks->keys, (ks->n + 1) * sizeof *ks->keys);
        struct dkim_key *dk = &ks->keys[ks->n++];
        dk->domain = xstrdup(domain);
        for (char *p = dk->domain; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        dk->selector = sel;
        dk->type = t;
        dk->pkey = k;
        dk->mtime = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    }
    closedir(d);
    free(ddir);
    return r;
}

int dkim_sign_load(const struct kconf *c, char *err, size_t errsize)
{
    struct keyset *ks = xcalloc(1, sizeof *ks);
    if (c->dkim_signing_domain) ks->signing_domain = xstrdup(c->dkim_signing_domain);
    DIR *d = c->dkim_key_dir ? opendir(c->dkim_key_dir) : NULL;
    if (!d && c->dkim_key_dir && errno != ENOENT) {
        err_set(err, errsize, "%s: %s", c->dkim_key_dir, strerror(errno));
        keyset_free(ks);
        return -1;
    }
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.' || !name_ok(de->d_name)) continue;
            if (load_domain(ks, c->dkim_key_dir, de->d_name, err, errsize) != 0) {
                closedir(d);
                keyset_free(ks);
                return -1;
            }
        }
        closedir(d);
    }
    keyset_free(current);
    current = ks;
    return (int)ks->n;
}

void dkim_sign_unload(void)
{
    keyset_free(current);
    current = NULL;
}

/* The key of type t that signs for domain: the newest file (then the greatest
 * selector, so that the choice does not depend on the folder's order). */
static const struct dkim_key *key_pick(const char *domain, enum dkim_key_type t)
{
    const struct dkim_key *best = NULL;
    for (size_t i = 0; current && i < current->n; i++) {
        const struct dkim_key *k = &current->keys[i];
        if (k->type != t || strcmp(k->domain, domain) != 0) continue;
        if (!best || k->mtime > best->mtime ||
            (k->mtime == best->mtime && strcmp(k->selector, best->selector) > 0))
            best = k;
    }
    return best;
}

/* ------------------------------------------------------------------ signer */

/* RFC 6376 5.4.1's recommended fields and RFC 8058's, in this order. */
static const char *const sign_fields[] = {"from",
                                          "to",
                                          "cc",
                                          "subject",
                                          "date",
                                          "message-id",
                                          "reply-to",
                                          "in-reply-to",
                                          "references",
                                          "mime-version",
                                          "content-type",
                                          "content-transfer-encoding",
                                          "list-unsubscribe",
                                          "list-unsubscribe-post"};

struct sig {
    EVP_PKEY *pkey;
    enum dkim_key_type type;
    char *selector;
    off_t off;   /* where its room starts in the file */
    size_t len;  /* and its length */
    size_t blen; /* base64 length of b= */
};

struct dkim_sign {
    char id[QUEUE_ID_LEN + 1];
    struct dkim_sign_out out; /* where the message goes */
    enum { SIGN_HEADER, SIGN_BODY, SIGN_PASS } state;
    struct buf held; /* the header section (and what came after it in the same write) */
    size_t scan;     /* held: where the search for its end goes on */
    int line_start;
    size_t hdr_len; /* the header section without the empty line */
    struct dkim_body body;
    char *domain, *hlist;
    long long t;
    struct sig sigs[2];
    int nsigs;
};

struct dkim_sign *dkim_sign_new(const char *id, const struct dkim_sign_out *out)
{
    if (!current || current->n == 0) return NULL;
    struct dkim_sign *d = xcalloc(1, sizeof *d);
    str_copy(d->id, id, sizeof d->id);
    d->out = *out;
    buf_init(&d->held, 0);
    d->line_start = 1;
    return d;
}

void dkim_sign_free(struct dkim_sign *d)
{
    if (!d) return;
    buf_release(&d->held);
    dkim_body_free(&d->body);
    for (int i = 0; i < d->nsigs; i++) {
        EVP_PKEY_free(d->sigs[i].pkey);
        free(d->sigs[i].selector);
    }
    free(d->domain);
    free(d->hlist);
    free(d);
}

/* The DKIM-Signature: field with b= as given (a placeholder of the right length, or
 * the signature): its length depends only on the lengths of its parts. */
static void sig_field(struct buf *out, const struct dkim_sign *d, const struct sig *s,
                      const char *bh, const char *b)
{
    buf_printf(out,
               "DKIM-Signature: v=1; a=%s-sha256; c=relaxed/relaxed; d=%s;\r\n"
               "\ts=%s; t=%lld;\r\n\th=",
               dkim_key_type_name(s->type), d->domain, s->selector, d->t);
    size_t col = 3;
    for (const char *p = d->hlist; *p;) {
        const char *e = strchr(p, ':');
        size_t l = e ? (size_t)(e - p) + 1 : strlen(p);
        if (col + l > 76) {
            buf_puts(out, "\r\n\t");
            col = 1;
        }
        buf_append(out, p, l);
        col += l;
        p += l;
    }
    buf_printf(out, ";\r\n\tbh=%s;\r\n\tb=", bh);
    size_t bl = strlen(b);
    for (size_t i = 0; i < bl; i += 72) {
        if (i) buf_puts(out, "\r\n\t");
        buf_append(out, b + i, bl - i < 72 ? bl - i : 72);
    }
    buf_puts(out, "\r\n");
}

/* The domain whose keys sign: From:'s or a parent's with keys, else signing_domain. */
static char *pick_domain(const char *hdr, size_t len)
{
    char *from = NULL;
    size_t off = 0;
    while (off < len) {
        struct hdr_field f;
        int r = hdr_next(hdr + off, len - off, &f);
        if (r == 0) break;
        if (r < 0) {
            if (!f.line_len) break;
            off += f.line_len;
            continue;
        }
        off += (size_t)r;
        if (!hdr_name_is(&f, "From")) continue;
        char **v = NULL;
        size_t n = 0;
        if (hdr_parse_mailboxes(f.value, f.value_len, &v, &n) == 0) {
            const char *at = strrchr(v[0], '@');
            if (at) from = xstrdup(at + 1);
            hdr_addresses_free(v, n);
        }
        break; /* the first From: only */
    }
    for (const char *dom = from; dom && *dom;) {
        if (key_pick(dom, DKIM_KEY_RSA) || key_pick(dom, DKIM_KEY_ED25519)) {
            char *r = xstrdup(dom);
            free(from);
            return r;
        }
        dom = strchr(dom, '.');
        if (dom) dom++;
        if (dom && !strchr(dom, '.')) break; /* not up to the top-level domain */
    }
    free(from);
    if (current && current->signing_domain &&
        (key_pick(current->signing_domain, DKIM_KEY_RSA) ||
         key_pick(current->signing_domain, DKIM_KEY_ED25519)))
        return xstrdup(current->signing_domain);
    return NULL;
}

/* h=: each field of sign_fields as often as it occurs, then From: once more, so that
 * a From: added on the way breaks the signature (over-signing, RFC 6376 8.15). */
static char *pick_fields(const char *hdr, size_t len)
{
    size_t count[sizeof sign_fields / sizeof sign_fields[0]] = {0};
    size_t off = 0;
    while (off < len) {
        struct hdr_field f;
        int r = hdr_next(hdr + off, len - off, &f);
        if (r == 0) break;
        if (r < 0) {
            if (!f.line_len) break;
            off += f.line_len;
            continue;
        }
        off += (size_t)r;
        for (size_t i = 0; i < sizeof sign_fields / sizeof sign_fields[0]; i++)
            if (hdr_name_is(&f, sign_fields[i])) count[i]++;
    }
    struct buf b;
    buf_init(&b, 0);
    for (size_t i = 0; i < sizeof sign_fields / sizeof sign_fields[0]; i++)
        for (size_t k = 0; k < count[i] && k < 50; k++)
            buf_printf(&b, "%s%s", b.len ? ":" : "", sign_fields[i]);
    buf_printf(&b, "%sfrom", b.len ? ":" : "");
    return buf_take(&b);
}

static size_t b64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

static int put(struct dkim_sign *d, const void *p, size_t len)
{
    return d->out.put(d->out.arg, p, len);
}

/* The header section is complete (hdr_len bytes of held; body bytes follow it at
 * body_off): choose the keys, write their room, the held bytes, start the body. */
static int sign_start(struct dkim_sign *d, size_t body_off)
{
    d->domain = pick_domain(d->held.data ? d->held.data : "", d->hdr_len);
    if (d->domain) {
        for (int t = DKIM_KEY_RSA; t <= DKIM_KEY_ED25519; t++) {
            const struct dkim_key *k = key_pick(d->domain, (enum dkim_key_type)t);
            if (!k) continue;
            struct sig *s = &d->sigs[d->nsigs++];
            EVP_PKEY_up_ref(k->pkey);
            s->pkey = k->pkey;
            s->type = k->type;
            s->selector = xstrdup(k->selector);
            s->blen = b64_len((size_t)EVP_PKEY_get_size(k->pkey));
        }
    }
    if (!d->nsigs) {
        d->state = SIGN_PASS;
        log_debug("queue", "%s: no DKIM key for the From: domain", d->id);
        return put(d, d->held.data ? d->held.data : "", d->held.len);
    }
    d->hlist = pick_fields(d->held.data, d->hdr_len);
    d->t = (long long)time(NULL);
    char bh[45];
    memset(bh, 'A', 44);
    bh[44] = '\0';
    for (int i = 0; i < d->nsigs; i++) {
        struct sig *s = &d->sigs[i];
        char *b = xmalloc(s->blen + 1);
        memset(b, 'A', s->blen);
        b[s->blen] = '\0';
        struct buf f;
        buf_init(&f, 0);
        sig_field(&f, d, s, bh, b);
        free(b);
        s->off = d->out.offset(d->out.arg);
        s->len = f.len;
        int r = put(d, f.data, f.len);
        buf_release(&f);
        if (r != 0) return -1;
    }
    d->state = SIGN_BODY;
    dkim_body_init(&d->body, DKIM_CANON_RELAXED, UINT64_MAX);
    if (d->held.len > body_off)
        dkim_body_feed(&d->body, d->held.data + body_off, d->held.len - body_off);
    if (put(d, d->held.data, d->held.len) != 0) return -1;
    /* keep the header section only: the field hash needs it at the end */
    d->held.len = d->hdr_len;
    return 0;
}

/* Look for the empty line that ends the header section in held from d->scan on.
 * Returns the offset just after it, or 0 when not there yet. */
static size_t find_end(struct dkim_sign *d)
{
    const char *p = d->held.data;
    size_t len = d->held.len;
    for (; d->scan < len; d->scan++) {
        char c = p[d->scan];
        if (d->line_start) {
            if (c == '\n') {
                d->hdr_len = d->scan;
                return d->scan + 1;
            }
            if (c == '\r') {
                if (d->scan + 1 >= len) return 0; /* its LF comes with the next piece */
                if (p[d->scan + 1] == '\n') {
                    d->hdr_len = d->scan;
                    return d->scan + 2;
                }
            }
        }
        d->line_start = c == '\n';
    }
    return 0;
}

int dkim_sign_write(struct dkim_sign *d, const void *p, size_t len)
{
    switch (d->state) {
    case SIGN_PASS:
        return put(d, p, len);
    case SIGN_BODY:
        dkim_body_feed(&d->body, p, len);
        return put(d, p, len);
    case SIGN_HEADER:
        break;
    }
    buf_append(&d->held, p, len);
    size_t body = find_end(d);
    if (body) return sign_start(d, body);
    if (d->held.len > DKIM_SIGN_HDR_MAX) {
        log_warn("queue", "%s: not DKIM signed: header section longer than %d bytes", d->id,
                 DKIM_SIGN_HDR_MAX);
        d->state = SIGN_PASS;
        return put(d, d->held.data, d->held.len);
    }
    return 0;
}

/* Sign data (the canonical header fields) with s: the base64 signature, new. */
static char *sign_data(const struct sig *s, const struct buf *data)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char digest[32], sigbuf[1024];
    size_t siglen = sizeof sigbuf;
    int ok;
    if (s->type == DKIM_KEY_ED25519) {
        /* RFC 8463 3: Ed25519 over the SHA-256 hash of the data */
        unsigned int dl = 0;
        EVP_Digest(data->data, data->len, digest, &dl, EVP_sha256(), NULL);
        ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, s->pkey) == 1 &&
             EVP_DigestSign(ctx, sigbuf, &siglen, digest, dl) == 1;
    } else {
        ok =
            EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, s->pkey) == 1 &&
            EVP_DigestSign(ctx, sigbuf, &siglen, (const unsigned char *)data->data, data->len) == 1;
    }
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        ERR_clear_error();
        return NULL;
    }
    char *b = xmalloc(b64_len(siglen) + 1);
    size_t bl = 0;
    base64_encode(sigbuf, siglen, b, b64_len(siglen) + 1, &bl);
    return b;
}

int dkim_sign_finish(struct dkim_sign *d)
{
    if (d->state == SIGN_HEADER) { /* no empty line: all of it is the header section */
        d->hdr_len = d->held.len;
        if (sign_start(d, d->held.len) != 0) return -1;
    }
    if (d->state == SIGN_PASS) return 0;
    unsigned char md[32];
    dkim_body_final(&d->body, md);
    char bh[45];
    size_t bl = 0;
    base64_encode(md, 32, bh, sizeof bh, &bl);
    for (int i = 0; i < d->nsigs; i++) {
        struct sig *s = &d->sigs[i];
        struct buf f, data;
        buf_init(&f, 0);
        buf_init(&data, 0);
        sig_field(&f, d, s, bh, "");
        dkim_select_headers(&data, DKIM_CANON_RELAXED, d->held.data ? d->held.data : "", d->hdr_len,
                            d->hlist, strlen(d->hlist));
        struct hdr_field hf;
        if (hdr_next(f.data, f.len, &hf) <= 0) abort(); /* we wrote it */
        dkim_sig_field_canon(&data, DKIM_CANON_RELAXED, hf.name, hf.name_len, hf.value,
                             hf.value_len);
        char *b = sign_data(s, &data);
        buf_release(&data);
        buf_reset(&f);
        int r = -1;
        if (b) {
            sig_field(&f, d, s, bh, b);
            if (f.len == s->len) r = d->out.put_at(d->out.arg, s->off, f.data, f.len);
        }
        if (r != 0)
            log_err("queue", "%s: DKIM signing with %s/%s (%s) failed", d->id, d->domain,
                    s->selector, dkim_key_type_name(s->type));
        free(b);
        buf_release(&f);
        if (r != 0) return -1;
    }
    log_info("queue", "%s: DKIM signed d=%s s=%s%s%s", d->id, d->domain, d->sigs[0].selector,
             d->nsigs > 1 ? "," : "", d->nsigs > 1 ? d->sigs[1].selector : "");
    return 0;
}
