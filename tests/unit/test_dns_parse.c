/* test_dns_parse.c: table tests for the pure DNS helpers of src/dns/parse.c: rdata
 * parsers (names, MX, TXT, TLSA), reverse names and MX ordering. No network. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "dns/dns.h"

#include "check.h"

/* Wire bytes as a string literal with its exact length (embedded NULs kept). */
#define W(s) (const unsigned char *)(s), sizeof(s) - 1

struct name_case {
    const unsigned char *in;
    size_t len;
    size_t outsize;
    int ret;
    const char *out;
};

static const struct name_case name_cases[] = {
    {W("\2mx\6remote\4test\0"), 256, 16, "mx.remote.test"},
    {W("\2MX\6Remote\4TEST\0"), 256, 16, "mx.remote.test"},
    {W("\0"), 256, 1, ""},
    {W("\4test\0trailing"), 256, 6, "test"}, /* returns bytes used */
    {W("\1a\0"), 2, 3, "a"},                 /* "a" + NUL fits exactly */
    {W("\2ab\0"), 2, -1, NULL},              /* does not fit */
    {W("\2mx\6remote\4test\0"), 14, -1, NULL},
    {W("\2mx\6remote\4test\0"), 15, 16, "mx.remote.test"},
    {W(""), 256, -1, NULL},             /* empty */
    {W("\2mx\6remote"), 256, -1, NULL}, /* no root label */
    {W("\5ab"), 256, -1, NULL},         /* label runs past the end */
    {W("\xc0\x0c"), 256, -1, NULL},     /* compression pointer */
    {W("\x40"), 256, -1, NULL},         /* extended label type */
    {W("\3a.b\0"), 256, -1, NULL},      /* dot inside a label */
    {W("\3a b\0"), 256, -1, NULL},      /* space */
    {W("\3a\\b\0"), 256, -1, NULL},     /* backslash */
    {W("\3a\x80z\0"), 256, -1, NULL},   /* non-ASCII */
    {W("\3a\0b\0"), 256, -1, NULL},     /* NUL inside a label */
    {W("\3_25\4_tcp\1x\0"), 256, 12, "_25._tcp.x"},
    {W("\1*\1x\0"), 256, 5, "*.x"},
};

static void test_names(void)
{
    for (size_t i = 0; i < sizeof name_cases / sizeof name_cases[0]; i++) {
        const struct name_case *c = &name_cases[i];
        char out[256];
        int r = dns_parse_name(c->in, c->len, out, c->outsize);
        CHECK(r == c->ret, "name case %zu: ret %d, want %d", i, r, c->ret);
        if (c->out && r >= 0) CHECK(strcmp(out, c->out) == 0, "name case %zu: [%s]", i, out);
    }
    /* 63-byte label ok, 64 not; the whole name at most 255 wire bytes. */
    unsigned char w[600];
    char out[1024];
    w[0] = 63;
    memset(w + 1, 'a', 63);
    w[64] = 0;
    CHECK(dns_parse_name(w, 65, out, sizeof out) == 65 && strlen(out) == 63, "63-byte label");
    w[0] = 64;
    memset(w + 1, 'a', 64);
    w[65] = 0;
    CHECK(dns_parse_name(w, 66, out, sizeof out) == -1, "64-byte label");
    size_t p = 0;
    for (int k = 0; k < 4; k++) { /* 4 * 64 = 256 wire bytes incl. root: too long */
        w[p++] = 63;
        memset(w + p, 'b', 63);
        p += 63;
    }
    w[p++] = 0;
    CHECK(dns_parse_name(w, p, out, sizeof out) == -1, "257-byte name");
    /* 3 * 64 + 62 + 1 = 255: the longest name */
    p = 0;
    for (int k = 0; k < 3; k++) {
        w[p++] = 63;
        memset(w + p, 'c', 63);
        p += 63;
    }
    w[p++] = 61;
    memset(w + p, 'd', 61);
    p += 61;
    w[p++] = 0;
    CHECK(p == 255 && dns_parse_name(w, p, out, sizeof out) == 255 && strlen(out) == 253,
          "255-byte name: %zu", strlen(out));
    CHECK(dns_parse_name(w, p, out, 253) == -1, "253 chars need 254 bytes");
    /* 256 wire bytes in short labels (found by the fuzzer: the root byte was not
     * counted). */
    p = 0;
    for (int k = 0; k < 85; k++) {
        w[p++] = 2;
        w[p++] = 'e';
        w[p++] = 'f';
    }
    w[p++] = 0;
    CHECK(p == 256 && dns_parse_name(w, p, out, sizeof out) == -1, "256-byte name");
    CHECK(dns_parse_name(w + 3, p - 3, out, sizeof out) == 253, "253-byte name");
    CHECK(dns_parse_name(NULL, 0, out, sizeof out) == -1, "NULL rdata");
}

struct mx_case {
    const unsigned char *in;
    size_t len;
    int ret;
    unsigned pref;
    const char *host;
};

static const struct mx_case mx_cases[] = {
    {W("\0\x0a\2mx\6remote\4test\0"), 0, 10, "mx.remote.test"},
    {W("\xff\xff\1a\0"), 0, 65535, "a"},
    {W("\0\0\0"), 0, 0, ""},          /* null MX "0 ." */
    {W("\0\x0a\1a\0x"), -1, 0, NULL}, /* trailing byte */
    {W("\0\x0a"), -1, 0, NULL},
    {W("\0"), -1, 0, NULL},
    {W(""), -1, 0, NULL},
    {W("\0\x0a\1a"), -1, 0, NULL},
    {W("\0\x0a\xc0\x0c"), -1, 0, NULL},
};

static void test_mx(void)
{
    for (size_t i = 0; i < sizeof mx_cases / sizeof mx_cases[0]; i++) {
        const struct mx_case *c = &mx_cases[i];
        struct dns_mx mx;
        int r = dns_parse_mx(c->in, c->len, &mx);
        CHECK(r == c->ret, "mx case %zu: ret %d", i, r);
        if (r == 0)
            CHECK(mx.pref == c->pref && strcmp(mx.host, c->host) == 0, "mx case %zu: %u %s", i,
                  mx.pref, mx.host);
    }
}

struct txt_case {
    const unsigned char *in;
    size_t len;
    size_t outsize;
    int ret;
    const char *out;
};

static const struct txt_case txt_cases[] = {
    {W("\x1cv=spf1 ip4:127.0.0.0/24 -all"), 64, 0, "v=spf1 ip4:127.0.0.0/24 -all"},
    {W("\x10v=DKIM1; k=rsa; \6p=MIIB\6IjANBg"), 64, 0, "v=DKIM1; k=rsa; p=MIIBIjANBg"},
    {W("\0"), 64, 0, ""},
    {W("\0\0\3abc\0"), 64, 0, "abc"},
    {W("\3abc"), 4, 0, "abc"},
    {W("\3abc"), 3, -1, NULL}, /* no room for the NUL */
    {W(""), 64, -1, NULL},
    {W("\4abc"), 64, -1, NULL},
    {W("\3abc\2d"), 64, -1, NULL},
    {W("\3a\0c"), 64, -1, NULL}, /* NUL inside the text */
    {W("\2\xc3\xa4"), 64, 0, "\xc3\xa4"},
};

static void test_txt(void)
{
    for (size_t i = 0; i < sizeof txt_cases / sizeof txt_cases[0]; i++) {
        const struct txt_case *c = &txt_cases[i];
        char out[64];
        int r = dns_parse_txt(c->in, c->len, out, c->outsize);
        CHECK(r == c->ret, "txt case %zu: ret %d", i, r);
        if (r == 0) CHECK(strcmp(out, c->out) == 0, "txt case %zu: [%s]", i, out);
    }
    /* A 255-byte string and a long record of several strings. */
    unsigned char w[1100];
    char out[1100];
    w[0] = 255;
    memset(w + 1, 'x', 255);
    CHECK(dns_parse_txt(w, 256, out, sizeof out) == 0 && strlen(out) == 255, "255-byte string");
    memcpy(w + 256, w, 256);
    memcpy(w + 512, w, 256);
    CHECK(dns_parse_txt(w, 768, out, sizeof out) == 0 && strlen(out) == 765, "three strings");
    CHECK(dns_parse_txt(w, 768, out, 765) == -1, "too long for out");
    /* byte-exact: a NUL inside a record is kept (SPF must see it to say permerror) */
    {
        static const unsigned char nul[] = "\x06v=spf1\x05 a\0-x";
        char raw[32];
        size_t rawlen = 0;
        CHECK(dns_parse_txt(nul, sizeof nul - 1, raw, sizeof raw) == -1, "NUL refused");
        CHECK(dns_parse_txt_bytes(nul, sizeof nul - 1, raw, sizeof raw, &rawlen) == 0 &&
                  rawlen == 11 && memcmp(raw, "v=spf1 a\0-x", 11) == 0 && raw[11] == '\0',
              "NUL kept: %zu", rawlen);
        CHECK(dns_parse_txt_bytes(nul, sizeof nul - 1, raw, 11, &rawlen) == -1, "out too small");
        CHECK(dns_parse_txt_bytes(nul, 0, raw, sizeof raw, &rawlen) == -1, "no strings");
    }
}

static void test_tlsa(void)
{
    unsigned char w[80];
    struct dns_tlsa t;
    w[0] = 3, w[1] = 1, w[2] = 1;
    for (int i = 0; i < 64; i++)
        w[3 + i] = (unsigned char)i;
    CHECK(dns_parse_tlsa(w, 35, &t) == 0 && t.usage == 3 && t.selector == 1 && t.mtype == 1 &&
              t.len == 32 && t.data == w + 3,
          "3 1 1 sha256");
    CHECK(dns_parse_tlsa(w, 34, &t) == -1, "sha256 too short");
    CHECK(dns_parse_tlsa(w, 36, &t) == -1, "sha256 too long");
    w[2] = 2;
    CHECK(dns_parse_tlsa(w, 67, &t) == 0 && t.len == 64, "sha512");
    CHECK(dns_parse_tlsa(w, 35, &t) == -1, "sha512 wrong length");
    w[2] = 0;
    CHECK(dns_parse_tlsa(w, 10, &t) == 0 && t.mtype == 0 && t.len == 7, "full data");
    CHECK(dns_parse_tlsa(w, 3, &t) == -1, "no data");
    CHECK(dns_parse_tlsa(w, 0, &t) == -1, "empty");
}

struct ptr_case {
    int family;
    const char *addr;
    const char *name;
};

static const struct ptr_case ptr_cases[] = {
    {AF_INET, "127.0.0.20", "20.0.0.127.in-addr.arpa"},
    {AF_INET, "192.0.2.255", "255.2.0.192.in-addr.arpa"},
    {AF_INET6, "::ffff:192.0.2.1", "1.2.0.192.in-addr.arpa"},
    {AF_INET6, "2001:db8::1",
     "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"},
    {AF_INET6, "::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa"},
};

static void test_ptr(void)
{
    for (size_t i = 0; i < sizeof ptr_cases / sizeof ptr_cases[0]; i++) {
        const struct ptr_case *c = &ptr_cases[i];
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        ss.ss_family = (sa_family_t)c->family;
        void *a = c->family == AF_INET ? (void *)&((struct sockaddr_in *)&ss)->sin_addr
                                       : (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
        inet_pton(c->family, c->addr, a);
        char out[80];
        int r = dns_ptr_name((struct sockaddr *)&ss, out, sizeof out);
        CHECK(r == 0 && strcmp(out, c->name) == 0, "ptr %s: %d %s", c->addr, r, out);
        size_t need = strlen(c->name) + 1;
        CHECK(dns_ptr_name((struct sockaddr *)&ss, out, need) == 0, "ptr %s exact size", c->addr);
        CHECK(dns_ptr_name((struct sockaddr *)&ss, out, need - 1) == -1, "ptr %s short", c->addr);
    }
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    char out[80];
    CHECK(dns_ptr_name((struct sockaddr *)&un, out, sizeof out) == -1, "AF_UNIX");
}

static uint32_t counter_rnd(void *arg)
{
    uint32_t *c = arg;
    return (*c)++ * 2654435761u;
}

static uint32_t sys_rnd(void *arg)
{
    (void)arg;
    return arc4random();
}

static void set_mx(struct dns_mx *mx, unsigned pref, const char *host)
{
    mx->pref = (uint16_t)pref;
    snprintf(mx->host, sizeof mx->host, "%s", host);
}

static void test_mx_sort(void)
{
    struct dns_mx mx[8];
    int null_mx = -1;

    set_mx(&mx[0], 20, "c");
    set_mx(&mx[1], 10, "a");
    set_mx(&mx[2], 30, "d");
    set_mx(&mx[3], 15, "b");
    size_t n = dns_mx_sort(mx, 4, NULL, NULL, &null_mx);
    CHECK(n == 4 && null_mx == 0, "sort count %zu null %d", n, null_mx);
    CHECK(strcmp(mx[0].host, "a") == 0 && strcmp(mx[1].host, "b") == 0 &&
              strcmp(mx[2].host, "c") == 0 && strcmp(mx[3].host, "d") == 0,
          "sorted by preference");

    set_mx(&mx[0], 0, "");
    n = dns_mx_sort(mx, 1, sys_rnd, NULL, &null_mx);
    CHECK(n == 1 && null_mx == 1 && mx[0].host[0] == 0 && mx[0].pref == 0, "null MX");

    set_mx(&mx[0], 10, "");
    set_mx(&mx[1], 0, "");
    n = dns_mx_sort(mx, 2, sys_rnd, NULL, &null_mx);
    CHECK(n == 1 && null_mx == 1 && mx[0].pref == 0, "only root hosts: null MX");

    set_mx(&mx[0], 0, "");
    set_mx(&mx[1], 10, "real");
    n = dns_mx_sort(mx, 2, sys_rnd, NULL, &null_mx);
    CHECK(n == 1 && null_mx == 0 && strcmp(mx[0].host, "real") == 0, "null MX mixed: ignored");

    CHECK(dns_mx_sort(mx, 0, NULL, NULL, &null_mx) == 0 && null_mx == 0, "empty");

    /* Equal preferences: grouped, each group shuffled, groups keep their order. */
    int seen_first[3] = {0, 0, 0};
    uint32_t ctr = 1;
    for (int run = 0; run < 300; run++) {
        set_mx(&mx[0], 20, "x");
        set_mx(&mx[1], 10, "b0");
        set_mx(&mx[2], 10, "b1");
        set_mx(&mx[3], 5, "first");
        set_mx(&mx[4], 10, "b2");
        n = dns_mx_sort(mx, 5, run % 2 ? sys_rnd : counter_rnd, &ctr, &null_mx);
        int ok = n == 5 && strcmp(mx[0].host, "first") == 0 && strcmp(mx[4].host, "x") == 0;
        for (int k = 1; k <= 3; k++)
            ok = ok && mx[k].pref == 10 && strncmp(mx[k].host, "b", 1) == 0;
        ok = ok && strcmp(mx[1].host, mx[2].host) && strcmp(mx[2].host, mx[3].host) &&
             strcmp(mx[1].host, mx[3].host);
        CHECK(ok, "shuffle run %d keeps groups", run);
        seen_first[mx[1].host[1] - '0']++;
    }
    CHECK(seen_first[0] > 30 && seen_first[1] > 30 && seen_first[2] > 30,
          "each equal host comes first sometimes: %d %d %d", seen_first[0], seen_first[1],
          seen_first[2]);
}

static void test_status_names(void)
{
    CHECK(strcmp(dns_status_name(DNS_OK), "ok") == 0, "ok");
    CHECK(strcmp(dns_status_name(DNS_NXDOMAIN), "nxdomain") == 0, "nxdomain");
    CHECK(strcmp(dns_status_name(DNS_NODATA), "nodata") == 0, "nodata");
    CHECK(strcmp(dns_status_name(DNS_TEMPFAIL), "tempfail") == 0, "tempfail");
    CHECK(strcmp(dns_status_name(DNS_BOGUS), "bogus") == 0, "bogus");
}

int main(void)
{
    test_names();
    test_mx();
    test_txt();
    test_tlsa();
    test_ptr();
    test_mx_sort();
    test_status_names();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
