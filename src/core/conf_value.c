/* conf_value.c: the values of kurier.conf by key type (sizes, durations, enums,
 * paths, hosts, addresses, lists ...): one argument checked and stored into the
 * config. Reading files, blocks, includes and defaults is conf.c's business. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/addr.h"
#include "core/buf.h"
#include "core/conf.h"
#include "core/conf_keys.h"
#include "core/util.h"

/* Index of s in "a|b|c", or -1. */
static int choice_index(const char *choices, const char *s)
{
    int i = 0;
    size_t n = strlen(s);
    for (const char *p = choices; *p; i++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, s, n) == 0) return i;
        if (!bar) break;
        p = bar + 1;
    }
    return -1;
}

static int parse_dur(const char *s, long long *out)
{
    long long total = 0;
    const char *p = s;
    if (!*p) return -1;
    while (*p) {
        if (*p < '0' || *p > '9') return -1;
        long long n = 0;
        while (*p >= '0' && *p <= '9') {
            n = n * 10 + (*p - '0');
            if (n > 1000000000LL) return -2;
            p++;
        }
        long long mult;
        switch (*p) {
        case 's':
            mult = 1;
            break;
        case 'm':
            mult = 60;
            break;
        case 'h':
            mult = 3600;
            break;
        case 'd':
            mult = 86400;
            break;
        case 'w':
            mult = 7 * 86400;
            break;
        case '\0':
            if (p == s + strspn(s, "0123456789")) {
                mult = 1; /* a bare number of seconds, only alone */
                break;
            }
            return -1;
        default:
            return -1;
        }
        if (*p) p++;
        total += n * mult;
        if (total > 100000000000LL) return -2;
    }
    *out = total;
    return 0;
}

static int parse_size(const char *s, unsigned long long *out)
{
    const char *p = s;
    if (*p < '0' || *p > '9') return -1;
    unsigned long long n = 0;
    while (*p >= '0' && *p <= '9') {
        n = n * 10 + (unsigned)(*p - '0');
        if (n > (1ULL << 50)) return -2;
        p++;
    }
    unsigned long long mult = 1;
    if (*p == 'k' || *p == 'K')
        mult = 1ULL << 10;
    else if (*p == 'm' || *p == 'M')
        mult = 1ULL << 20;
    else if (*p == 'g' || *p == 'G')
        mult = 1ULL << 30;
    else if (*p)
        return -1;
    if (*p && p[1]) return -1;
    if (mult > 1 && n > (1ULL << 40)) return -2;
    *out = n * mult;
    return 0;
}

/* Lexically clean an absolute path: drop "." and empty parts, resolve "..". */
static char *path_clean(const char *abs)
{
    char *out = xmalloc(strlen(abs) + 2);
    size_t o = 0;
    const char *p = abs;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p) break;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 1 && p[0] == '.') {
            /* skip */
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0) o--;
        } else {
            out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
    }
    if (o == 0) out[o++] = '/';
    out[o] = '\0';
    return out;
}

/* set by conf_set_start_dir() (kurierd, once it works inside its state folder) */
static char *start_dir;

static char *path_resolve(const char *s)
{
    if (s[0] == '/') return path_clean(s);
    char cwd[PATH_MAX];
    if (start_dir)
        str_copy(cwd, start_dir, sizeof cwd);
    else if (!getcwd(cwd, sizeof cwd))
        return NULL;
    char *joined = xasprintf("%s/%s", cwd, s);
    char *r = path_clean(joined);
    free(joined);
    return r;
}

/* "host", "host:port", "192.0.2.1:587", "[2001:db8::1]:25". 0 ok, -1 with why
 * naming what is wrong. */
int conf_host_check(const char *s, char *why, size_t whylen)
{
    const char *port = NULL, *what = NULL;
    size_t hlen;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        char a[64];
        struct in6_addr a6;
        if (!rb || (rb[1] && rb[1] != ':')) {
            what = "an IPv6 address is written [ADDRESS] or [ADDRESS]:PORT";
            goto bad;
        }
        if ((size_t)(rb - s - 1) >= sizeof a) {
            what = "not an IPv6 address";
            goto bad;
        }
        memcpy(a, s + 1, (size_t)(rb - s - 1));
        a[rb - s - 1] = '\0';
        if (inet_pton(AF_INET6, a, &a6) != 1) {
            what = "not an IPv6 address";
            goto bad;
        }
        if (rb[1] == ':') port = rb + 2;
    } else {
        const char *colon = strchr(s, ':');
        hlen = colon ? (size_t)(colon - s) : strlen(s);
        if (!hlen) {
            what = "the host name is missing";
            goto bad;
        }
        if (hlen > 253) {
            what = "the host name is longer than 253 characters";
            goto bad;
        }
        size_t ok = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_");
        if (ok != hlen) {
            what = s[ok] == ' ' || s[ok] == '\t' ? "a host name has no spaces"
                                                 : "a host name has only letters, digits, "
                                                   "'.', '-' and '_'";
            goto bad;
        }
        if (colon) port = colon + 1;
    }
    if (port && (!*port || strspn(port, "0123456789") != strlen(port))) {
        what = "the port is not a number";
        goto bad;
    }
    if (port && (strlen(port) > 5 || atoi(port) < 1 || atoi(port) > 65535)) {
        what = "the port is out of range (1-65535)";
        goto bad;
    }
    return 0;
bad:
    snprintf(why, whylen,
             "invalid relay host \"%s\": %s; expected HOST, HOST:PORT or [IPV6]:PORT, e.g. "
             "smtp.example.net:587",
             s, what);
    return -1;
}

/* "http[s]://HOST[:PORT][/PATH]" (conf.h). */
int conf_url_parse(const char *url, int *tls, char *host, size_t hostsize, int *port, char *path,
                   size_t pathsize, char *why, size_t whylen)
{
    *tls = strncmp(url, "https://", 8) == 0;
    if (!*tls && strncmp(url, "http://", 7) != 0) {
        snprintf(why, whylen, "\"%.100s\" is not an http:// or https:// URL", url);
        return -1;
    }
    const char *a = url + (*tls ? 8 : 7);
    size_t alen = strcspn(a, "/?#");
    char auth[300];
    if (!alen || alen >= sizeof auth) {
        snprintf(why, whylen, "the URL \"%.100s\" names no host", url);
        return -1;
    }
    memcpy(auth, a, alen);
    auth[alen] = '\0';
    if (conf_host_check(auth, why, whylen) != 0) return -1;
    const char *rest = a + alen;
    for (const char *c = rest; *c; c++)
        if (*c <= 0x20 || *c >= 0x7f) {
            snprintf(why, whylen, "the URL \"%.100s\" has spaces or control characters", url);
            return -1;
        }
    char *colon = auth[0] == '[' ? strchr(auth, ']') : auth;
    colon = strchr(colon, ':');
    *port = colon ? atoi(colon + 1) : *tls ? 443 : 80;
    if (colon) *colon = '\0';
    const char *h = auth[0] == '[' ? auth + 1 : auth;
    size_t hlen = strlen(h) - (auth[0] == '[');
    if (hlen >= hostsize || strlen(rest) + 2 > pathsize || (*rest && *rest != '/')) {
        snprintf(why, whylen, "the URL \"%.100s\" is too long or has no path", url);
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(path, pathsize, "%s", *rest ? rest : "/");
    return 0;
}

int conf_hostlist_check(const char *list, char *why, size_t whylen)
{
    const char *p = list ? list : "";
    size_t n = 0;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t'))
            p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (!len) {
            snprintf(why, whylen, "invalid relay host list \"%s\": %s", list ? list : "",
                     n || e ? "empty entry between commas" : "no host given");
            return -1;
        }
        char *one = xstrndup(p, len);
        int r = conf_host_check(one, why, whylen);
        free(one);
        if (r != 0) return -1;
        n++;
        if (!e) return 0;
        p = e + 1;
    }
}

/* why = "invalid value "S" for "KEY": expected EXPECTED" (NULL: "one of" the key's
 * choices); returns -1. */
static int bad_value(char *why, size_t whylen, const char *s, const struct conf_key *k,
                     const char *expected)
{
    snprintf(why, whylen, "invalid value \"%s\" for \"%s\": expected %s%s", s, k->name,
             expected ? expected : "one of ", expected ? "" : k->choices);
    return -1;
}

int conf_value_set(const struct conf_key *k, void *base, const char *s, char *why, size_t whylen)
{
    char lo[32], hi[32];
    conf_fmt_limit(lo, sizeof lo, k, k->min);
    conf_fmt_limit(hi, sizeof hi, k, k->max);
    double v = 0;
    int r;
    switch (k->type) {
    case KT_STR:
    case KT_HOST:
    case KT_PATH:
    case KT_ADDR:
    case KT_CHOICE: {
        char **dst = conf_field(base, k);
        char *nv;
        if (k->type == KT_HOST &&
            (!*s || strlen(s) > 253 ||
             strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
                 strlen(s)))
            return bad_value(why, whylen, s, k, "a host name like mx.example.org");
        if (k->type == KT_CHOICE && choice_index(k->choices, s) < 0)
            return bad_value(why, whylen, s, k, NULL);
        if (k->type == KT_ADDR) {
            struct addr a = {0};
            const char *aerr = NULL;
            int n = *s ? addr_parse(s, strlen(s), ADDR_O_NO_BRACKETS | ADDR_O_UTF8, &a, &aerr) : -1;
            if (n < 0 || (size_t)n != strlen(s)) {
                addr_clear(&a);
                return bad_value(why, whylen, s, k, "an address like admin@example.org");
            }
            nv = addr_format(&a);
            addr_clear(&a);
            free(*dst);
            *dst = nv;
            return 0;
        }
        if (k->type == KT_PATH) {
            if (!*s) {
                snprintf(why, whylen, "empty path for \"%s\"", k->name);
                return -1;
            }
            nv = path_resolve(s);
            if (!nv) {
                snprintf(why, whylen, "cannot resolve path \"%s\": %s", s, strerror(errno));
                return -1;
            }
        } else {
            nv = xstrdup(s);
        }
        free(*dst);
        *dst = nv;
        return 0;
    }
    case KT_ENUM: {
        int i = choice_index(k->choices, s);
        if (i < 0) return bad_value(why, whylen, s, k, NULL);
        *(int *)conf_field(base, k) = i;
        return 0;
    }
    case KT_BOOL: {
        int b;
        if (!strcmp(s, "on") || !strcmp(s, "yes") || !strcmp(s, "true"))
            b = 1;
        else if (!strcmp(s, "off") || !strcmp(s, "no") || !strcmp(s, "false"))
            b = 0;
        else
            return bad_value(why, whylen, s, k, "on or off");
        *(int *)conf_field(base, k) = b;
        return 0;
    }
    case KT_INT: {
        char *end;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (!*s || *end || (s[0] != '-' && (s[0] < '0' || s[0] > '9')))
            return bad_value(why, whylen, s, k, "an integer");
        v = errno == ERANGE ? (n < 0 ? -1e300 : 1e300) : (double)n;
        break;
    }
    case KT_DUR: {
        long long n;
        r = parse_dur(s, &n);
        if (r == -1) return bad_value(why, whylen, s, k, "a duration like 30s, 5m, 4h or 5d");
        v = r == -2 ? 1e300 : (double)n;
        break;
    }
    case KT_SIZE: {
        unsigned long long n;
        r = parse_size(s, &n);
        if (r == -1) return bad_value(why, whylen, s, k, "a size like 512, 64K, 50M or 1G");
        v = r == -2 ? 1e300 : (double)n;
        break;
    }
    case KT_ACTION: {
        if (!strcmp(s, "reject") || !strcmp(s, "tempfail")) {
            *(int *)conf_field(base, k) = s[0] == 'r' ? CONF_ACTION_REJECT : CONF_ACTION_TEMPFAIL;
            return 0;
        }
        if (!strcmp(s, "none")) { /* only record: the same as a score of 0 */
            *(int *)conf_field(base, k) = 0;
            return 0;
        }
        char *end;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (!*s || *end || (s[0] != '-' && (s[0] < '0' || s[0] > '9')))
            return bad_value(why, whylen, s, k, "reject, tempfail or a score (an integer)");
        v = errno == ERANGE ? (n < 0 ? -1e300 : 1e300) : (double)n;
        break;
    }
    case KT_DOUBLE: {
        char *end;
        v = strtod(s, &end);
        if (!*s || *end || !isfinite(v) ||
            (s[0] != '-' && s[0] != '.' && (s[0] < '0' || s[0] > '9')))
            return bad_value(why, whylen, s, k, "a number");
        break;
    }
    case KT_TRAPS: {
        char **dst = conf_field(base, k);
        const char *at = strchr(s, '@');
        char *low = xstrdup(s);
        str_lower(low);
        if ((at ? (at == s || strchr(at + 1, '@') || conf_host_check(at + 1, why, whylen) != 0)
                : conf_host_check(s, why, whylen) != 0) ||
            strpbrk(s, " \t\"<>")) {
            free(low);
            return bad_value(why, whylen, s, k, "an address like trap@example.org or a domain");
        }
        char *nv = *dst ? xasprintf("%s %s", *dst, low) : xstrdup(low);
        free(low);
        free(*dst);
        *dst = nv;
        return 0;
    }
    case KT_ADDRS: {
        char **dst = conf_field(base, k);
        struct addr a = {0};
        const char *aerr = NULL;
        int n = *s ? addr_parse(s, strlen(s), ADDR_O_NO_BRACKETS | ADDR_O_UTF8, &a, &aerr) : -1;
        if (n < 0 || (size_t)n != strlen(s) || !a.domain || !*a.domain) {
            addr_clear(&a);
            return bad_value(why, whylen, s, k, "an address like abuse@example.org");
        }
        char *f = addr_format(&a);
        addr_clear(&a);
        char *nv = *dst ? xasprintf("%s %s", *dst, f) : xstrdup(f);
        free(f);
        free(*dst);
        *dst = nv;
        return 0;
    }
    case KT_HOSTLIST: {
        char **dst = conf_field(base, k);
        if (conf_host_check(s, why, whylen) != 0) return -1;
        char *nv = *dst ? xasprintf("%s %s", *dst, s) : xstrdup(s);
        free(*dst);
        *dst = nv;
        return 0;
    }
    case KT_WORDS: {
        /* s: one word, or the default's words separated by spaces */
        char **dst = conf_field(base, k);
        char word[64];
        for (const char *p = s; *p;) {
            size_t n = strcspn(p, " ");
            if (n == 0) {
                p++;
                continue;
            }
            if (n >= sizeof word) n = sizeof word - 1;
            memcpy(word, p, n);
            word[n] = '\0';
            p += strcspn(p, " ");
            if (choice_index(k->choices, word) < 0) return bad_value(why, whylen, word, k, NULL);
            if (strcmp(word, "none") == 0) continue; /* "checks none;": no optional check */
            char *nv = *dst && **dst ? xasprintf("%s %s", *dst, word) : xstrdup(word);
            free(*dst);
            *dst = nv;
        }
        if (!*dst) *dst = xstrdup("");
        return 0;
    }
    case KT_DNSBL: {
        char **dst = conf_field(base, k);
        struct conf_dnsbl_site site;
        if (conf_dnsbl_site_parse(s, &site, why, whylen) != 0) return -1;
        char *nv = *dst ? xasprintf("%s %s", *dst, s) : xstrdup(s);
        free(*dst);
        *dst = nv;
        return 0;
    }
    case KT_PAIRS: {
        /* s: "NAME URL" (apply_key joins each pair) */
        char **dst = conf_field(base, k);
        const char *sp = strchr(s, ' ');
        size_t nlen = sp ? (size_t)(sp - s) : 0;
        const char *url = sp ? sp + 1 : "";
        if (!nlen || nlen > 253 ||
            strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != nlen)
            return bad_value(why, whylen, s, k, "a DNS zone and a URL");
        int url_ok = (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) &&
                     strlen(url) <= 1000;
        for (const char *c = url; url_ok && *c; c++)
            url_ok = *c > 0x20 && *c < 0x7f && !strchr("\"<>\\", *c);
        if (!url_ok) return bad_value(why, whylen, url, k, "an http:// or https:// URL");
        size_t at = *dst ? strlen(*dst) + 1 : 0;
        char *nv = *dst ? xasprintf("%s %s", *dst, s) : xstrdup(s);
        for (size_t i = at; i < at + nlen; i++) /* the zone; the URL keeps its case */
            nv[i] = (char)tolower((unsigned char)nv[i]);
        free(*dst);
        *dst = nv;
        return 0;
    }
    case KT_NETS: {
        struct conf_net **list = conf_field(base, k);
        size_t *count = (size_t *)(list + 1);
        struct conf_net net;
        if (conf_net_parse(s, &net) != 0) {
            snprintf(why, whylen,
                     "invalid network \"%s\" for \"%s\": expected an address or CIDR like "
                     "192.0.2.0/24 or 2001:db8::/32",
                     s, k->name);
            return -1;
        }
        if (*count >= 1024) {
            snprintf(why, whylen, "too many networks for \"%s\" (at most 1024)", k->name);
            return -1;
        }
        *list = xrealloc(*list, (*count + 1) * sizeof **list);
        (*list)[(*count)++] = net;
        return 0;
    }
    }
    if (v < k->min || v > k->max) {
        snprintf(why, whylen, "value \"%s\" for \"%s\" is out of range (%s to %s)", s, k->name, lo,
                 hi);
        return -1;
    }
    if (k->type == KT_SIZE)
        *(size_t *)conf_field(base, k) = (size_t)v;
    else if (k->type == KT_DOUBLE)
        *(double *)conf_field(base, k) = v;
    else
        *(int *)conf_field(base, k) = (int)v;
    return 0;
}

void conf_set_start_dir(const char *dir)
{
    free(start_dir);
    start_dir = dir ? xstrdup(dir) : NULL;
}

/* --- numbers as a file writes them (for conf_doc.c and limits in messages) --- */

void conf_fmt_dur(char *dst, size_t size, long long v)
{
    static const struct {
        long long secs;
        char unit;
    } units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}};
    for (size_t i = 0; i < 3; i++)
        if (v != 0 && v % units[i].secs == 0) {
            snprintf(dst, size, "%lld%c", v / units[i].secs, units[i].unit);
            return;
        }
    snprintf(dst, size, "%llds", v);
    if (v == 0) snprintf(dst, size, "0");
}

void conf_fmt_size(char *dst, size_t size, unsigned long long v)
{
    static const struct {
        unsigned long long n;
        char unit;
    } units[] = {{1ULL << 30, 'G'}, {1ULL << 20, 'M'}, {1ULL << 10, 'K'}};
    for (size_t i = 0; i < 3; i++)
        if (v != 0 && v % units[i].n == 0) {
            snprintf(dst, size, "%llu%c", v / units[i].n, units[i].unit);
            return;
        }
    snprintf(dst, size, "%llu", v);
}

void conf_fmt_double(char *dst, size_t size, double v)
{
    snprintf(dst, size, "%.15g", v);
    if (strtod(dst, NULL) != v) snprintf(dst, size, "%.17g", v);
}

/* A number of the key's kind, for limits in messages and docs. */
void conf_fmt_limit(char *dst, size_t size, const struct conf_key *k, double v)
{
    if (k->type == KT_DUR)
        conf_fmt_dur(dst, size, (long long)v);
    else if (k->type == KT_SIZE)
        conf_fmt_size(dst, size, (unsigned long long)v);
    else
        conf_fmt_double(dst, size, v);
}
