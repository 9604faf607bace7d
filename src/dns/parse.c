/* parse.c: pure DNS helpers: rdata parsers for the wire format libunbound hands back
 * (MX, TXT, names, TLSA), reverse names for PTR, MX ordering. No I/O, no globals;
 * table-tested in tests/unit/test_dns_parse.c and fuzzed in fuzz/fuzz_dns.c. */
#include "core/compat.h"

#include <netinet/in.h>
#include <stdlib.h>

#include "dns/dns.h"

/* A byte we accept inside a label of a host name we hand on: printable ASCII except
 * the dot (it would change the name's structure once joined) and the backslash. */
static int label_byte_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '.' && c != '\\';
}

int dns_parse_name(const unsigned char *rdata, size_t len, char *out, size_t outsize)
{
    size_t pos = 0, o = 0, wire = 0;
    if (!rdata || !out || outsize == 0) return -1;
    out[0] = '\0';
    for (;;) {
        if (pos >= len) return -1;
        unsigned lab = rdata[pos++];
        wire++;
        if (lab == 0) break;
        /* RFC 1035 4.1.4: 0xC0 starts a compression pointer; 0x40/0x80 are unused
         * label types. libunbound returns names uncompressed. */
        if (lab > 63) return -1;
        if (pos + lab > len) return -1;
        wire += lab;
        if (wire + 1 > 255) return -1; /* RFC 1035 2.3.4, the root byte included */
        if (o > 0) {
            if (o + 1 >= outsize) return -1;
            out[o++] = '.';
        }
        if (o + lab >= outsize) return -1;
        for (unsigned i = 0; i < lab; i++) {
            unsigned char c = rdata[pos + i];
            if (!label_byte_ok(c)) return -1;
            if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
            out[o++] = (char)c;
        }
        pos += lab;
    }
    out[o] = '\0';
    return (int)pos;
}

int dns_parse_mx(const unsigned char *rdata, size_t len, struct dns_mx *out)
{
    if (!rdata || !out || len < 3) return -1;
    out->pref = (uint16_t)(rdata[0] << 8 | rdata[1]);
    int n = dns_parse_name(rdata + 2, len - 2, out->host, sizeof out->host);
    if (n < 0 || (size_t)n != len - 2) {
        out->host[0] = '\0';
        return -1;
    }
    return 0;
}

int dns_parse_txt(const unsigned char *rdata, size_t len, char *out, size_t outsize)
{
    size_t pos = 0, o = 0;
    if (!rdata || !out || outsize == 0) return -1;
    out[0] = '\0';
    if (len == 0) return -1; /* RFC 1035 3.3.14: one or more character-strings */
    while (pos < len) {
        size_t n = rdata[pos++];
        if (pos + n > len) return -1;
        if (o + n >= outsize) return -1;
        /* A NUL would silently cut the text for every C consumer (SPF, DNSBL text). */
        if (memchr(rdata + pos, '\0', n)) return -1;
        memcpy(out + o, rdata + pos, n);
        o += n;
        pos += n;
    }
    out[o] = '\0';
    return 0;
}

int dns_parse_txt_bytes(const unsigned char *rdata, size_t len, char *out, size_t outsize,
                        size_t *outlen)
{
    size_t pos = 0, o = 0;
    if (!rdata || !out || outsize == 0 || !outlen) return -1;
    out[0] = '\0';
    *outlen = 0;
    if (len == 0) return -1;
    while (pos < len) {
        size_t n = rdata[pos++];
        if (pos + n > len || o + n >= outsize) return -1;
        memcpy(out + o, rdata + pos, n);
        o += n;
        pos += n;
    }
    out[o] = '\0';
    *outlen = o;
    return 0;
}

int dns_parse_tlsa(const unsigned char *rdata, size_t len, struct dns_tlsa *out)
{
    if (!rdata || !out || len < 4) return -1;
    out->usage = rdata[0];
    out->selector = rdata[1];
    out->mtype = rdata[2];
    out->data = (unsigned char *)(rdata + 3);
    out->len = len - 3;
    /* RFC 6698 2.1.3: SHA-256 and SHA-512 digests have fixed lengths; a record
     * that disagrees cannot match anything. */
    if ((out->mtype == 1 && out->len != 32) || (out->mtype == 2 && out->len != 64)) {
        out->data = NULL;
        out->len = 0;
        return -1;
    }
    return 0;
}

int dns_ptr_name(const struct sockaddr *sa, char *out, size_t outsize)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *b;
    if (!sa || !out) return -1;
    if (sa->sa_family == AF_INET) {
        b = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        b = a6->s6_addr;
        if (!IN6_IS_ADDR_V4MAPPED(a6)) {
            if (outsize < 64 + sizeof "ip6.arpa") return -1;
            size_t o = 0;
            for (int i = 15; i >= 0; i--) {
                out[o++] = hex[b[i] & 0xf];
                out[o++] = '.';
                out[o++] = hex[b[i] >> 4];
                out[o++] = '.';
            }
            memcpy(out + o, "ip6.arpa", sizeof "ip6.arpa");
            return 0;
        }
        b += 12; /* ::ffff:a.b.c.d is asked as a.b.c.d */
    } else {
        return -1;
    }
    int n = snprintf(out, outsize, "%u.%u.%u.%u.in-addr.arpa", b[3], b[2], b[1], b[0]);
    return n > 0 && (size_t)n < outsize ? 0 : -1;
}

static int mx_cmp(const void *a, const void *b)
{
    const struct dns_mx *x = a, *y = b;
    return (int)x->pref - (int)y->pref;
}

size_t dns_mx_sort(struct dns_mx *mx, size_t n, uint32_t (*rnd)(void *), void *rnd_arg,
                   int *null_mx)
{
    if (null_mx) *null_mx = 0;
    if (!mx || n == 0) return 0;
    /* RFC 7505 3: a null MX ("0 .") stands alone. Mixed with real hosts it is
     * ignored; when every record names the root the domain takes no mail. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (mx[i].host[0]) mx[k++] = mx[i];
    if (k == 0) {
        if (null_mx) *null_mx = 1;
        mx[0].pref = 0;
        mx[0].host[0] = '\0';
        return 1;
    }
    n = k;
    qsort(mx, n, sizeof *mx, mx_cmp);
    /* RFC 5321 5.1: hosts of equal preference are tried in random order. */
    for (size_t s = 0; s < n;) {
        size_t e = s + 1;
        while (e < n && mx[e].pref == mx[s].pref)
            e++;
        if (rnd) {
            for (size_t i = e - 1; i > s; i--) {
                size_t j = s + rnd(rnd_arg) % (uint32_t)(i - s + 1);
                struct dns_mx t = mx[i];
                mx[i] = mx[j];
                mx[j] = t;
            }
        }
        s = e;
    }
    return n;
}
