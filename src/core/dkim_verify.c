/* dkim_verify.c: DKIM verification's pure parts (dkim_verify.h): the DKIM-Signature
 * and key records, the OpenSSL signature check. Tag lists, canonicalization and header
 * selection are core/dkim.c's, shared with the signer. Lookups, streaming state and
 * results belong to policy/dkim_check.c. */
#include "core/compat.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "core/buf.h"
#include "core/dkim.h"
#include "core/dkim_verify.h"
#include "core/header.h"
#include "core/util.h"

/* ====================================================================== tag values */

static int is_wsp(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static const struct dkim_tag *tag_get(const struct dkim_tag *t, int n, const char *name)
{
    return n > 0 ? dkim_tag_find(t, (size_t)n, name) : NULL;
}

static int tag_is(const struct dkim_tag *t, const char *word)
{
    return t && t->value_len == strlen(word) && strncasecmp(t->value, word, t->value_len) == 0;
}

/* core/dkim.c's tag-list parser with a reason: the number of tags, or -1. */
static int tags_parse(const char *p, size_t len, struct dkim_tag *tags, char *err, size_t errsize)
{
    size_t pos = 0;
    int n = dkim_tags_parse(p, len, tags, DKIM_TAGS_MAX, &pos);
    if (n < 0) err_set(err, errsize, "malformed tag list at byte %zu", pos);
    return n;
}

/* A value copied without white space (b=, bh=, p= may be folded). 0, -1 too long. */
static int tag_nows(const struct dkim_tag *t, char *out, size_t outsize, size_t *outlen)
{
    long n = dkim_value_compact(t->value, t->value_len, out, outsize);
    if (n < 0) return -1;
    *outlen = (size_t)n;
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
    if (!t->value_len || t->value_len > 12) return -1;
    long long v = 0;
    for (size_t i = 0; i < t->value_len; i++) {
        if (!isdigit((unsigned char)t->value[i])) return -1;
        v = v * 10 + (t->value[i] - '0');
    }
    return v;
}

static int tag_str(const struct dkim_tag *t, char *out, size_t outsize)
{
    if (t->value_len + 1 > outsize) return -1;
    memcpy(out, t->value, t->value_len);
    out[t->value_len] = '\0';
    return 0;
}

/* ================================================================ DKIM-Signature */

int dkim_sig_parse(const char *value, size_t len, struct dkim_sig *sig, char *err, size_t errsize)
{
    struct dkim_tag tags[DKIM_TAGS_MAX];
    memset(sig, 0, sizeof *sig);
    sig->l = sig->t = sig->x = -1;
    int n = tags_parse(value, len, tags, err, errsize);
    if (n < 0) return -1;
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
        enum dkim_canon hc, bc;
        if (dkim_canon_parse(t->value, t->value_len, &hc, &bc) != 0) {
            err_set(err, errsize, "unknown canonicalization c=");
            return -1;
        }
        sig->hrelaxed = hc == DKIM_CANON_RELAXED;
        sig->brelaxed = bc == DKIM_CANON_RELAXED;
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
    for (size_t i = 0; i < t->value_len;) {
        while (i < t->value_len && (is_wsp(t->value[i]) || t->value[i] == ':'))
            i++;
        size_t s0 = i;
        while (i < t->value_len && t->value[i] != ':' && !is_wsp(t->value[i]))
            i++;
        if (i == s0) break;
        if (sig->nh >= DKIM_HNAMES_MAX || i - s0 >= sizeof sig->hnames[0]) {
            err_set(err, errsize, "h= too long");
            return -1;
        }
        memcpy(sig->hnames[sig->nh], t->value + s0, i - s0);
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
    memset(k, 0, sizeof *k);
    int n = tags_parse(txt, len, tags, err, errsize);
    if (n < 0) return -1;
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
        for (size_t i = 0; i < t->value_len;) {
            while (i < t->value_len && (is_wsp(t->value[i]) || t->value[i] == ':'))
                i++;
            size_t s0 = i;
            while (i < t->value_len && t->value[i] != ':' && !is_wsp(t->value[i]))
                i++;
            struct dkim_tag w = {.value = t->value + s0, .value_len = i - s0};
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
        for (size_t i = 0; i < t->value_len;) {
            while (i < t->value_len && (is_wsp(t->value[i]) || t->value[i] == ':'))
                i++;
            size_t s0 = i;
            while (i < t->value_len && t->value[i] != ':' && !is_wsp(t->value[i]))
                i++;
            struct dkim_tag w = {.value = t->value + s0, .value_len = i - s0};
            if (tag_is(&w, "email") || tag_is(&w, "*")) ok = 1;
        }
        if (!ok) {
            err_set(err, errsize, "key not for email (s=)");
            return -1;
        }
    }
    if ((t = tag_get(tags, n, "t"))) {
        for (size_t i = 0; i < t->value_len;) {
            while (i < t->value_len && (is_wsp(t->value[i]) || t->value[i] == ':'))
                i++;
            size_t s0 = i;
            while (i < t->value_len && t->value[i] != ':' && !is_wsp(t->value[i]))
                i++;
            struct dkim_tag w = {.value = t->value + s0, .value_len = i - s0};
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

/* ============================================================== signature check */

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
    /* the selected fields (RFC 6376 5.4.2), then the signature field without b= */
    enum dkim_canon hc = sig->hrelaxed ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
    struct buf names, data;
    buf_init(&names, 0);
    buf_init(&data, 0);
    for (size_t k = 0; k < sig->nh; k++) {
        if (k) buf_append(&names, ":", 1);
        buf_append(&names, sig->hnames[k], strlen(sig->hnames[k]));
    }
    dkim_select_headers(&data, hc, hdrs, hdrlen, names.data ? names.data : "", names.len);
    buf_release(&names);
    struct hdr_field sf;
    if (hdr_next(sigfield, sigfieldlen, &sf) > 0)
        dkim_sig_field_canon(&data, hc, sf.name, sf.name_len, sf.value, sf.value_len);

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
