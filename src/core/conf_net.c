/* conf_net.c: network lists of kurier.conf (trusted_networks): CIDR parsing and
 * matching client addresses, IPv4-mapped IPv6 included; DNS list sites and policy
 * service addresses. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "core/buf.h"
#include "core/conf.h"

int conf_net_parse(const char *s, struct conf_net *out)
{
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof addr) return -1;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    struct conf_net n = {0};
    int max;
    if (inet_pton(AF_INET, addr, n.addr) == 1) {
        n.family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, n.addr) == 1) {
        n.family = AF_INET6;
        max = 128;
    } else {
        return -1;
    }
    n.prefix = max;
    if (slash) {
        const char *p = slash + 1;
        size_t plen = strlen(p);
        if (plen == 0 || plen > 3 || strspn(p, "0123456789") != plen) return -1;
        n.prefix = atoi(p);
        if (n.prefix > max) return -1;
    }
    /* Clear host bits so that 10.1.2.3/8 prints and compares as 10.0.0.0/8. */
    for (int bit = n.prefix; bit < max; bit++)
        n.addr[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
    *out = n;
    return 0;
}

static int prefix_eq(const unsigned char *a, const unsigned char *b, int prefix)
{
    int full = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, (size_t)full) != 0) return 0;
    if (rest == 0) return 1;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

int conf_net_match(const struct conf_net *net, const struct sockaddr *sa)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (!net || !sa) return 0;
    unsigned char v4[4], v6[16];
    int has4 = 0, has6 = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(v4, &in->sin_addr, 4);
        memcpy(v6, mapped, 12);
        memcpy(v6 + 12, v4, 4);
        has4 = 1;
        /* Only nets inside ::ffff:0:0/96 name IPv4 clients; ::/0 does not. */
        has6 = net->family == AF_INET6 && net->prefix >= 96 && memcmp(net->addr, mapped, 12) == 0;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(v6, &in6->sin6_addr, 16);
        has6 = 1;
        if (memcmp(v6, mapped, 12) == 0) {
            memcpy(v4, v6 + 12, 4);
            has4 = 1;
        }
    } else {
        return 0;
    }
    if (net->family == AF_INET) return has4 && prefix_eq(v4, net->addr, net->prefix);
    if (net->family == AF_INET6) return has6 && prefix_eq(v6, net->addr, net->prefix);
    return 0;
}

/* --- DNS list sites (dnsbl_sites, rhsbl_sites) ------------------------------------ */

/* One octet of a filter at *pp: "N" or "[N;N..M;...]" into mask. 0 done, -1 bad. */
static int octet_parse(const char **pp, unsigned char mask[32])
{
    const char *p = *pp;
    int bracket = *p == '[';
    if (bracket) p++;
    for (;;) {
        char *end;
        if (*p < '0' || *p > '9') return -1;
        long lo = strtol(p, &end, 10), hi = lo;
        p = end;
        if (bracket && p[0] == '.' && p[1] == '.') {
            p += 2;
            if (*p < '0' || *p > '9') return -1;
            hi = strtol(p, &end, 10);
            p = end;
        }
        if (lo > 255 || hi > 255 || lo > hi) return -1;
        for (long v = lo; v <= hi; v++)
            mask[v / 8] |= (unsigned char)(1u << (v % 8));
        if (!bracket) break;
        if (*p == ';') {
            p++;
            continue;
        }
        if (*p != ']') return -1;
        p++;
        break;
    }
    *pp = p;
    return 0;
}

int conf_dnsbl_site_parse(const char *s, struct conf_dnsbl_site *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    out->weight = 1;
    size_t zlen = strcspn(s, "=*");
    if (zlen > 0 && s[zlen - 1] == '.') zlen--; /* "zen.spamhaus.org." */
    if (zlen == 0 || zlen >= sizeof out->zone ||
        strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") < zlen ||
        s[0] == '.' || memmem(s, zlen, "..", 2) != NULL) {
        snprintf(why, whylen,
                 "invalid DNS list \"%s\": expected ZONE[=FILTER][*WEIGHT] like "
                 "zen.spamhaus.org=127.0.0.[2..11]*3",
                 s);
        return -1;
    }
    for (size_t i = 0; i < zlen; i++)
        out->zone[i] = (char)tolower((unsigned char)s[i]);
    const char *p = s + strcspn(s, "=*");
    if (*p == '=') {
        p++;
        for (int i = 0; i < 4; i++) {
            if (octet_parse(&p, out->mask[i]) != 0 || (i < 3 && *p++ != '.')) {
                snprintf(why, whylen,
                         "invalid filter in DNS list \"%s\": expected four octets, "
                         "each N or [N;N..M], like 127.0.0.[2..11]",
                         s);
                return -1;
            }
        }
    } else {
        /* any answer in 127.0.0.0/8 */
        memset(out->mask, 0xff, sizeof out->mask);
        memset(out->mask[0], 0, sizeof out->mask[0]);
        out->mask[0][127 / 8] = (unsigned char)(1u << (127 % 8));
    }
    if (*p == '*') {
        p++;
        char *end;
        errno = 0;
        long w = strtol(p, &end, 10);
        if (end == p || *end || errno || w < -1000 || w > 1000) {
            snprintf(why, whylen,
                     "invalid weight in DNS list \"%s\": expected an integer "
                     "from -1000 to 1000 after \"*\"",
                     s);
            return -1;
        }
        out->weight = (int)w;
        p = end;
    }
    if (*p) {
        snprintf(why, whylen, "invalid DNS list \"%s\": unexpected \"%s\"", s, p);
        return -1;
    }
    return 0;
}

int conf_dnsbl_site_match(const struct conf_dnsbl_site *site, const unsigned char a[4])
{
    for (int i = 0; i < 4; i++)
        if (!(site->mask[i][a[i] / 8] & (1u << (a[i] % 8)))) return 0;
    return 1;
}

/* --- policy service addresses (listen policy_service) ------------------------------ */

int conf_policy_service_parse(const char *s, struct sockaddr_storage *sa, socklen_t *salen,
                              char *why, size_t whylen)
{
    memset(sa, 0, sizeof *sa);
    if (strncmp(s, "unix:", 5) == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)sa;
        const char *path = s + 5;
        if (path[0] != '/' || strlen(path) >= sizeof sun->sun_path) {
            snprintf(why, whylen, "unix: needs an absolute socket path of at most %zu bytes",
                     sizeof sun->sun_path - 1);
            return -1;
        }
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, path, strlen(path) + 1);
        *salen = (socklen_t)sizeof *sun;
        return 0;
    }
    if (strncmp(s, "inet:", 5) == 0) s += 5;
    char host[64];
    const char *port;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof host) goto bad;
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = '\0';
        port = rb + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host || memchr(s, ':', (size_t)(colon - s)))
            goto bad;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
    }
    if (!*port || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5 ||
        atoi(port) < 1 || atoi(port) > 65535)
        goto bad;
    if (strcmp(host, "localhost") == 0) str_copy(host, "127.0.0.1", sizeof host);
    struct sockaddr_in *sin = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short)atoi(port));
        *salen = (socklen_t)sizeof *sin;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1 && s[0] == '[') {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((unsigned short)atoi(port));
        *salen = (socklen_t)sizeof *sin6;
        return 0;
    }
bad:
    memset(sa, 0, sizeof *sa);
    snprintf(why, whylen,
             "expected unix:/PATH, inet:IP:PORT or IP:PORT (IPv4, [IPv6] or localhost; port "
             "1-65535)");
    return -1;
}
