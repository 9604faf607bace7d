/* srs.c: the Sender Rewriting Scheme (srs.h) as libsrs2 writes it: signing, parsing
 * and checking SRS0/SRS1 addresses, and reading the srs { } settings. Pure apart
 * from HMAC-SHA1 (OpenSSL). */
#include "core/compat.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/buf.h"
#include "core/conf.h"
#include "core/srs.h"
#include "core/util.h"

#define SRS_ADDR_MAX 254 /* RFC 5321 4.5.3.1.3: 256 with the angle brackets */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

int srs_secrets_parse(const char *text, size_t len, struct srs_secret *s, size_t *n, int *line,
                      char *why, size_t whylen)
{
    size_t k = 0;
    int ln = 0;
    const char *p = text, *end = text + len, *a, *b;
    while (text_next_line(&p, end, &a, &b, &ln)) {
        *line = ln;
        size_t slen = (size_t)(b - a);
        if (slen < SRS_SECRET_MIN || slen > SRS_SECRET_MAX) {
            snprintf(why, whylen, "secret has %zu bytes; give %d to %d", slen, SRS_SECRET_MIN,
                     SRS_SECRET_MAX);
            return -1;
        }
        if (memchr(a, '\0', slen)) {
            snprintf(why, whylen, "secret contains a NUL byte");
            return -1;
        }
        if (k == SRS_SECRETS_MAX) {
            snprintf(why, whylen, "more than %d secrets", SRS_SECRETS_MAX);
            return -1;
        }
        s[k].len = slen;
        memcpy(s[k].secret, a, slen);
        k++;
    }
    if (k == 0) {
        *line = 0;
        snprintf(why, whylen, "no secret in the file (one secret per line, the first signs)");
        return -1;
    }
    *n = k;
    return 0;
}

struct span {
    const char *p;
    size_t len;
};

/* HMAC-SHA1 over the lowercased spans, the first SRS_HASH_LEN base64 characters. */
static void hash(const struct srs_secret *key, const struct span *parts, size_t nparts,
                 char out[SRS_HASH_LEN])
{
    size_t total = 0;
    for (size_t i = 0; i < nparts; i++)
        total += parts[i].len;
    char *msg = xmalloc(total + 1), *m = msg;
    for (size_t i = 0; i < nparts; i++)
        for (size_t j = 0; j < parts[i].len; j++) {
            char c = parts[i].p[j];
            *m++ = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
        }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (!HMAC(EVP_sha1(), key->secret, (int)key->len, (const unsigned char *)msg, total, md,
              &mdlen) ||
        mdlen < 3)
        abort(); /* OpenSSL without SHA-1: cannot happen with the libraries we build on */
    free(msg);
    out[0] = b64[md[0] >> 2];
    out[1] = b64[(md[0] & 3) << 4 | md[1] >> 4];
    out[2] = b64[(md[1] & 15) << 2 | md[2] >> 6];
    out[3] = b64[md[2] & 63];
}

static int tag_is(const char *local, size_t len, char digit)
{
    return len >= 5 && strncasecmp(local, "SRS", 3) == 0 && local[3] == digit &&
           (local[4] == '=' || local[4] == '+' || local[4] == '-');
}

int srs_is_srs(const char *local, size_t len)
{
    return tag_is(local, len, '0') || tag_is(local, len, '1');
}

/* Split s (len bytes) at its first '=': the part before into *a, the rest into *b.
 * 0 done, -1 no '='. */
static int split(const char *s, size_t len, struct span *a, struct span *b)
{
    const char *eq = memchr(s, '=', len);
    if (!eq) return -1;
    *a = (struct span){s, (size_t)(eq - s)};
    *b = (struct span){eq + 1, len - (size_t)(eq - s) - 1};
    return 0;
}

static int put(char *out, size_t outsize, int n)
{
    return n < 0 || (size_t)n >= outsize ? -1 : 0;
}

int srs_forward(const struct srs_secret *key, const char *sender, const char *srs_domain,
                long today, char *out, size_t outsize)
{
    const char *at = strrchr(sender, '@');
    if (!at || at == sender || !at[1] || !srs_domain || !*srs_domain) return -1;
    size_t llen = (size_t)(at - sender);
    struct span host = {at + 1, strlen(at + 1)}, user;
    char h[SRS_HASH_LEN];
    if (tag_is(sender, llen, '1')) {
        /* SRS1=HHHH=first==rest: keep the first forwarder and the rest, sign anew */
        struct span oldhash, rest;
        if (split(sender + 5, llen - 5, &oldhash, &rest) != 0 ||
            split(rest.p, rest.len, &host, &user) != 0 || !host.len || !user.len)
            return -1;
        struct span parts[2] = {host, user};
        hash(key, parts, 2, h);
    } else if (tag_is(sender, llen, '0')) {
        /* SRS0 from another forwarder: SRS1=HHHH=that-forwarder==HHHH=TT=... */
        user = (struct span){sender + 4, llen - 4};
        struct span parts[2] = {host, user};
        hash(key, parts, 2, h);
    } else {
        long day = today % SRS_DAYS;
        char tt[2] = {b32[(day >> 5) & 31], b32[day & 31]};
        user = (struct span){sender, llen};
        struct span parts[3] = {{tt, 2}, host, user};
        hash(key, parts, 3, h);
        return put(out, outsize,
                   snprintf(out, outsize, "SRS0=%.4s=%.2s=%.*s=%.*s@%s", h, tt, (int)host.len,
                            host.p, (int)user.len, user.p, srs_domain));
    }
    return put(out, outsize,
               snprintf(out, outsize, "SRS1=%.4s=%.*s=%.*s@%s", h, (int)host.len, host.p,
                        (int)user.len, user.p, srs_domain));
}

/* Is h (SRS_HASH_LEN characters) the hash of parts with one of keys? Compared
 * ignoring case (some relays lowercase addresses), every key tried (no early exit on
 * a match would gain nothing: the hash is public once valid). */
static int hash_ok(const char *h, const struct span *parts, size_t nparts,
                   const struct srs_secret *keys, size_t nkeys)
{
    int ok = 0;
    for (size_t i = 0; i < nkeys; i++) {
        char want[SRS_HASH_LEN];
        hash(&keys[i], parts, nparts, want);
        if (strncasecmp(want, h, SRS_HASH_LEN) == 0) ok = 1;
    }
    return ok;
}

static int b32val(char c)
{
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    const char *p = c ? strchr(b32, c) : NULL;
    return p ? (int)(p - b32) : -1;
}

enum srs_result srs_reverse(const char *local, size_t len, const struct srs_secret *keys,
                            size_t nkeys, long today, int max_days, char *out, size_t outsize)
{
    struct span hh, rest, host, user;
    if (tag_is(local, len, '1')) {
        if (split(local + 5, len - 5, &hh, &rest) != 0 ||
            split(rest.p, rest.len, &host, &user) != 0 || hh.len != SRS_HASH_LEN || !host.len ||
            !user.len || memchr(host.p, '@', host.len) || memchr(user.p, '@', user.len))
            return SRS_MALFORMED;
        struct span parts[2] = {host, user};
        if (!hash_ok(hh.p, parts, 2, keys, nkeys)) return SRS_BAD_HASH;
        if (put(out, outsize,
                snprintf(out, outsize, "SRS0%.*s@%.*s", (int)user.len, user.p, (int)host.len,
                         host.p)) != 0)
            return SRS_MALFORMED;
        return SRS_VALID;
    }
    if (!tag_is(local, len, '0')) return SRS_NOT_SRS;
    struct span tt;
    if (split(local + 5, len - 5, &hh, &rest) != 0 || split(rest.p, rest.len, &tt, &rest) != 0 ||
        split(rest.p, rest.len, &host, &user) != 0 || hh.len != SRS_HASH_LEN || tt.len != 2 ||
        !host.len || !user.len || memchr(host.p, '@', host.len) || memchr(user.p, '@', user.len))
        return SRS_MALFORMED;
    int t0 = b32val(tt.p[0]), t1 = b32val(tt.p[1]);
    if (t0 < 0 || t1 < 0) return SRS_MALFORMED;
    struct span parts[3] = {tt, host, user};
    if (!hash_ok(hh.p, parts, 3, keys, nkeys)) return SRS_BAD_HASH;
    /* as libsrs2: days from the stamp to today, modulo 1024; a stamp from the future
     * counts as nearly 1024 days old */
    long then = t0 << 5 | t1;
    long age = (today % SRS_DAYS - then + SRS_DAYS) % SRS_DAYS;
    if (age > max_days) return SRS_EXPIRED;
    if (put(out, outsize,
            snprintf(out, outsize, "%.*s@%.*s", (int)user.len, user.p, (int)host.len, host.p)) != 0)
        return SRS_MALFORMED;
    return SRS_VALID;
}

const char *srs_result_name(enum srs_result r)
{
    switch (r) {
    case SRS_VALID:
        return "valid";
    case SRS_NOT_SRS:
        return "not SRS";
    case SRS_MALFORMED:
        return "malformed";
    case SRS_BAD_HASH:
        return "bad hash";
    case SRS_EXPIRED:
        return "expired";
    }
    return "?";
}

long srs_day(time_t now)
{
    return (long)(now / 86400);
}

int srs_enabled(const struct kconf *c)
{
    return c->srs_domain && c->nsrs_secrets > 0;
}

int srs_max_days(const struct kconf *c)
{
    return (c->srs_max_age + 86399) / 86400;
}

char *srs_forward_new(const struct kconf *c, const char *sender, time_t now)
{
    if (!srs_enabled(c) || !sender || !*sender) return NULL;
    const char *at = strrchr(sender, '@');
    if (!at || str_ieq(at + 1, c->srs_domain)) return NULL;
    char out[SRS_ADDR_MAX + 1];
    if (srs_forward(&c->srs_secrets[0], sender, c->srs_domain, srs_day(now), out, sizeof out) != 0)
        return NULL;
    return xstrdup(out);
}
