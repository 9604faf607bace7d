/* fuzz_dns.c: the pure DNS parsers of src/dns/parse.c on arbitrary rdata. The first
 * byte picks the parser and the output size; accepted names are re-encoded and must
 * parse to the same text, and MX sorting must keep preferences in order. */
#include "core/compat.h"

#include <stdint.h>

#include "dns/dns.h"

/* Dotted text back into wire format; -1 when it cannot be (never for parser output). */
static int encode_name(const char *s, unsigned char *w, size_t wsize)
{
    size_t o = 0;
    if (!*s) {
        if (wsize < 1) return -1;
        w[0] = 0;
        return 1;
    }
    while (*s) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        if (n == 0 || n > 63 || o + 1 + n + 1 > wsize) return -1;
        w[o++] = (unsigned char)n;
        memcpy(w + o, s, n);
        o += n;
        s += n;
        if (*s == '.') s++;
    }
    w[o++] = 0;
    return (int)o;
}

static uint32_t fixed_rnd(void *arg)
{
    uint32_t *x = arg;
    *x = *x * 1103515245u + 12345u;
    return *x >> 8;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned sel = data[0];
    const unsigned char *p = data + 1;
    size_t len = size - 1;
    size_t outsize = 1 + (sel >> 3) * 9; /* 1 .. 280: small buffers too */

    switch (sel & 7) {
    case 0:
    case 1: {
        char out[300], again[300];
        unsigned char w[300];
        int n = dns_parse_name(p, len, out, outsize);
        if (n < 0) break;
        if ((size_t)n > len || strlen(out) >= outsize || strlen(out) > 253) abort();
        for (const char *c = out; *c; c++)
            if (*c >= 'A' && *c <= 'Z') abort();
        int m = encode_name(out, w, sizeof w);
        if (m != n) abort();
        if (dns_parse_name(w, (size_t)m, again, sizeof again) != m || strcmp(out, again) != 0)
            abort();
        break;
    }
    case 2: {
        struct dns_mx mx;
        if (dns_parse_mx(p, len, &mx) == 0 && strlen(mx.host) > 253) abort();
        break;
    }
    case 3: {
        char out[300], raw[300];
        size_t rawlen = 0;
        int rr = dns_parse_txt_bytes(p, len, raw, outsize, &rawlen);
        if (rr == 0 && (rawlen >= outsize || rawlen >= len || raw[rawlen])) abort();
        if (dns_parse_txt(p, len, out, outsize) == 0) {
            size_t n = strlen(out);
            if (n >= outsize || n >= len) abort();
            /* without NULs both parsers agree */
            if (rr != 0 || rawlen != n || memcmp(raw, out, n) != 0) abort();
        }
        break;
    }
    case 4: {
        struct dns_tlsa t;
        if (dns_parse_tlsa(p, len, &t) == 0) {
            if (t.len + 3 != len || t.data != p + 3) abort();
            volatile unsigned char sink = 0;
            for (size_t i = 0; i < t.len; i++)
                sink ^= t.data[i];
            (void)sink;
        }
        break;
    }
    default: {
        /* A sequence of MX rdatas, each prefixed by a length byte, then sorted. */
        struct dns_mx mx[32];
        size_t n = 0, pos = 0;
        while (pos < len && n < 32) {
            size_t l = p[pos++];
            if (pos + l > len) break;
            if (dns_parse_mx(p + pos, l, &mx[n]) == 0) n++;
            pos += l;
        }
        uint32_t seed = sel;
        int null_mx = -1;
        size_t k = dns_mx_sort(mx, n, (sel & 1) ? fixed_rnd : NULL, &seed, &null_mx);
        if (n == 0 && (k != 0 || null_mx != 0)) abort();
        if (n > 0 && (k == 0 || k > n)) abort();
        if (null_mx && (k != 1 || mx[0].host[0] || mx[0].pref)) abort();
        for (size_t i = 0; i < k; i++) {
            if (!null_mx && !mx[i].host[0]) abort();
            if (i && mx[i].pref < mx[i - 1].pref) abort();
        }
        break;
    }
    }
    return 0;
}
