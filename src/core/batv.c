/* batv.c: BATV "prvs" tags (batv.h): making, parsing and checking them, and reading
 * the batv { } settings. Pure apart from HMAC-SHA1 (OpenSSL). */
#include "core/compat.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/batv.h"
#include "core/buf.h"
#include "core/conf.h"
#include "core/util.h"

#define PRVS "prvs="
#define PRVS_LEN 5
#define TAG_LEN 10 /* KDDDSSSSSS */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

int batv_keys_parse(const char *text, size_t len, struct batv_key *keys, size_t *nkeys, int *line,
                    char *why, size_t whylen)
{
    size_t n = 0;
    int ln = 0;
    const char *p = text, *end = text + len, *a, *b;
    while (text_next_line(&p, end, &a, &b, &ln)) {
        *line = ln;
        if (*a < '0' || *a > '9' || b - a < 2 || !is_space(a[1])) {
            snprintf(why, whylen, "expected \"K SECRET\" with K a key number from 0 to 9");
            return -1;
        }
        int num = *a - '0';
        for (size_t i = 0; i < n; i++)
            if (keys[i].num == num) {
                snprintf(why, whylen, "key number %d given twice", num);
                return -1;
            }
        a++;
        while (a < b && is_space(*a))
            a++;
        size_t slen = (size_t)(b - a);
        if (slen < BATV_SECRET_MIN || slen > BATV_SECRET_MAX) {
            snprintf(why, whylen, "secret of key %d has %zu bytes; give %d to %d", num, slen,
                     BATV_SECRET_MIN, BATV_SECRET_MAX);
            return -1;
        }
        if (n == BATV_KEYS_MAX) { /* cannot happen: numbers are distinct digits */
            snprintf(why, whylen, "more than %d keys", BATV_KEYS_MAX);
            return -1;
        }
        keys[n].num = num;
        keys[n].len = slen;
        memcpy(keys[n].secret, a, slen);
        n++;
    }
    if (n == 0) {
        *line = 0;
        snprintf(why, whylen, "no key in the file (one \"K SECRET\" line per key)");
        return -1;
    }
    *nkeys = n;
    return 0;
}

/* The first 3 bytes of HMAC-SHA1(key, K DDD local@domain) as 6 lower-case hex
 * digits; the domain is taken in lower case. */
static void tag_hash(const struct batv_key *key, int day, const char *local, size_t local_len,
                     const char *domain, char out[6])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    size_t dlen = strlen(domain);
    char *msg = xmalloc(4 + local_len + 1 + dlen + 1);
    msg[0] = (char)('0' + key->num % 10);
    msg[1] = (char)('0' + day % 1000 / 100);
    msg[2] = (char)('0' + day % 100 / 10);
    msg[3] = (char)('0' + day % 10);
    memcpy(msg + 4, local, local_len);
    msg[4 + local_len] = '@';
    for (size_t i = 0; i < dlen; i++) {
        char c = domain[i];
        msg[4 + local_len + 1 + i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    if (!HMAC(EVP_sha1(), key->secret, (int)key->len, (const unsigned char *)msg,
              4 + local_len + 1 + dlen, md, &mdlen) ||
        mdlen < 3)
        abort(); /* OpenSSL without SHA-1: cannot happen with the libraries we build on */
    free(msg);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 3; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
}

int batv_sign(const struct batv_key *key, const char *addr, long expiry_day, char *out,
              size_t outsize)
{
    const char *at = strrchr(addr, '@');
    if (!at || at == addr) return -1;
    int day = (int)(expiry_day % 1000);
    char h[6];
    tag_hash(key, day, addr, (size_t)(at - addr), at + 1, h);
    int n = snprintf(out, outsize, PRVS "%d%03d%.6s=%s", key->num, day, h, addr);
    return n < 0 || (size_t)n >= outsize ? -1 : 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int batv_parse(const char *local, size_t len, struct batv_tag *out)
{
    if (len < PRVS_LEN + TAG_LEN + 2 || strncasecmp(local, PRVS, PRVS_LEN) != 0) return 0;
    const char *t = local + PRVS_LEN;
    if (t[TAG_LEN] != '=') return 0;
    for (int i = 0; i < 4; i++)
        if (t[i] < '0' || t[i] > '9') return 0;
    struct batv_tag tag;
    tag.keynum = t[0] - '0';
    tag.day = (t[1] - '0') * 100 + (t[2] - '0') * 10 + (t[3] - '0');
    for (int i = 0; i < 6; i++) {
        int v = hexval(t[4 + i]);
        if (v < 0) return 0;
        tag.hash[i] = "0123456789abcdef"[v];
    }
    tag.local = t + TAG_LEN + 1;
    tag.local_len = len - (PRVS_LEN + TAG_LEN + 1);
    *out = tag;
    return 1;
}

enum batv_result batv_verify(const struct batv_tag *t, const char *domain,
                             const struct batv_key *keys, size_t nkeys, long today, int max_days)
{
    const struct batv_key *k = NULL;
    for (size_t i = 0; i < nkeys && !k; i++)
        if (keys[i].num == t->keynum) k = &keys[i];
    if (!k) return BATV_NOKEY;
    char h[6];
    tag_hash(k, t->day, t->local, t->local_len, domain, h);
    if (CRYPTO_memcmp(h, t->hash, sizeof h) != 0) return BATV_BAD;
    /* days from today to the expiry day, both modulo 1000: a tag of the last
     * max_days days is 0..max_days ahead; an older one wraps to 999 and below */
    long ahead = ((long)t->day - today % 1000 + 1000) % 1000;
    return ahead <= max_days ? BATV_VALID : BATV_EXPIRED;
}

const char *batv_result_name(enum batv_result r)
{
    switch (r) {
    case BATV_VALID:
        return "valid";
    case BATV_NOKEY:
        return "unknown key";
    case BATV_BAD:
        return "bad signature";
    case BATV_EXPIRED:
        return "expired";
    }
    return "?";
}

long batv_day(time_t now)
{
    return (long)(now / 86400);
}

int batv_domain_on(const struct kconf *c, const char *domain)
{
    if (!c->batv_domains || !c->nbatv_keys || !domain) return 0;
    size_t dlen = strlen(domain);
    for (const char *p = c->batv_domains; *p;) {
        size_t n = strcspn(p, " ");
        if (n == 3 && strncmp(p, "all", 3) == 0) return 2;
        if (n == dlen && strncasecmp(p, domain, n) == 0) return 1;
        p += n;
        while (*p == ' ')
            p++;
    }
    return 0;
}

int batv_max_days(const struct kconf *c)
{
    return (c->batv_max_age + 86399) / 86400;
}

char *batv_sign_new(const struct kconf *c, const char *sender, time_t now)
{
    const char *at = strrchr(sender, '@');
    struct batv_tag t;
    /* a quoted local part would need its quotes around the whole tagged part; and a
     * tagged local part must stay within RFC 5321's 64 bytes */
    if (!c->nbatv_keys || !at || sender[0] == '"' ||
        (size_t)(at - sender) + PRVS_LEN + TAG_LEN + 1 > 64 ||
        batv_parse(sender, (size_t)(at - sender), &t))
        return NULL;
    size_t size = strlen(sender) + PRVS_LEN + TAG_LEN + 2;
    char *out = xmalloc(size);
    if (batv_sign(&c->batv_keys[0], sender, batv_day(now) + batv_max_days(c), out, size) != 0) {
        free(out);
        return NULL;
    }
    return out;
}
