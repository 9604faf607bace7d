/* spf_record.c: SPF record syntax (RFC 7208 4.5, 4.6, 5, 6) and macro expansion
 * (7). Pure: no I/O, no globals; spf.c does the DNS. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>

#include "core/buf.h"
#include "policy/spf.h"

const char *spf_result_name(enum spf_result r)
{
    static const char *const names[] = {"none",     "neutral",   "pass",     "fail",
                                        "softfail", "temperror", "permerror"};
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "permerror";
}

int spf_record_is_v1(const char *txt, size_t len)
{
    return len >= 6 && strncasecmp(txt, "v=spf1", 6) == 0 && (len == 6 || txt[6] == ' ');
}

/* err = what, then the term quoted when given. Returns -1. */
static int err_set(char *err, size_t errsize, const char *what, const char *t, size_t n)
{
    if (err && errsize)
        snprintf(err, errsize, n ? "%s \"%.*s\"" : "%s", what, (int)(n > 80 ? 80 : n), t);
    return -1;
}

/* A macro-string (7.1). 0 valid, -1 not. *last_macro: the last token was a
 * macro-expand. is_exp: c, r, t allowed. */
static int macro_check(const char *s, size_t len, int is_exp, int *last_macro)
{
    *last_macro = 0;
    for (size_t i = 0; i < len;) {
        unsigned char ch = (unsigned char)s[i];
        if (ch != '%') {
            if (ch < 0x21 || ch > 0x7e) {
                if (!(is_exp && ch == ' ')) return -1;
            }
            *last_macro = 0;
            i++;
            continue;
        }
        if (i + 1 >= len) return -1;
        char n = s[i + 1];
        if (n == '%' || n == '_' || n == '-') {
            *last_macro = 1;
            i += 2;
            continue;
        }
        if (n != '{') return -1;
        size_t j = i + 2;
        if (j >= len) return -1;
        char L = (char)tolower((unsigned char)s[j]);
        if (!strchr("slodiphv", L) && !(is_exp && strchr("crt", L))) return -1;
        j++;
        size_t d0 = j;
        while (j < len && isdigit((unsigned char)s[j]))
            j++;
        if (j > d0) {
            long v = 0;
            for (size_t k = d0; k < j && v < 1000; k++)
                v = v * 10 + (s[k] - '0');
            if (v == 0) return -1; /* 7.3: the DIGIT transformer must be nonzero */
        }
        if (j < len && (s[j] == 'r' || s[j] == 'R')) j++;
        while (j < len && strchr(".-+,/_=", s[j]))
            j++;
        if (j >= len || s[j] != '}') return -1;
        *last_macro = 1;
        i = j + 1;
    }
    return 0;
}

/* RFC 7208 7.1 toplabel: alphanumerics with at least one letter, or with inner
 * hyphens. */
static int toplabel_ok(const char *s, size_t n)
{
    if (n == 0 || n > 63) return 0;
    int alpha = 0, hyphen = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalpha(c))
            alpha = 1;
        else if (c == '-')
            hyphen = 1;
        else if (!isdigit(c))
            return 0;
    }
    if (s[0] == '-' || s[n - 1] == '-') return 0;
    return alpha || hyphen;
}

static int domain_spec_ok(const char *s, size_t len)
{
    int last_macro;
    if (len == 0 || macro_check(s, len, 0, &last_macro) != 0) return 0;
    if (last_macro) return 1;
    if (s[len - 1] == '.') len--;
    size_t i = len;
    while (i > 0 && s[i - 1] != '.')
        i--;
    if (i == 0) return 0; /* domain-end needs "." toplabel */
    return toplabel_ok(s + i, len - i);
}

static int cidr_num(const char *s, size_t n, int max)
{
    if (n == 0 || n > 3 || (n > 1 && s[0] == '0')) return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= max ? v : -1;
}

/* "/N", "//M", "/N//M" (dual-cidr-length) or "" */
static int dual_cidr(const char *s, size_t n, int allow4, int allow6, int *c4, int *c6)
{
    *c4 = 32;
    *c6 = 128;
    if (n == 0) return 0;
    const char *dd = NULL;
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == '/' && s[i + 1] == '/') {
            dd = s + i;
            break;
        }
    size_t n4 = dd ? (size_t)(dd - s) : n;
    if (n4 > 0) {
        if (!allow4 || s[0] != '/' || (*c4 = cidr_num(s + 1, n4 - 1, 32)) < 0) return -1;
    }
    if (dd) {
        if (!allow6 || (*c6 = cidr_num(dd + 2, n - n4 - 2, 128)) < 0) return -1;
    }
    return 0;
}

static char *dupn(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static int parse_mech(const char *t, size_t n, struct spf_term *m, char *err, size_t errsize)
{
    size_t i = 0;
    m->qual = '+';
    if (n && strchr("+-~?", t[0])) m->qual = t[i++];
    size_t ns = i;
    while (i < n && isalnum((unsigned char)t[i]))
        i++;
    size_t nl = i - ns;
    const char *name = t + ns, *arg = t + i;
    size_t alen = n - i;
    static const struct {
        const char *name;
        enum spf_mech m;
    } mechs[] = {{"all", SPF_M_ALL}, {"include", SPF_M_INCLUDE}, {"a", SPF_M_A},
                 {"mx", SPF_M_MX},   {"ptr", SPF_M_PTR},         {"ip4", SPF_M_IP4},
                 {"ip6", SPF_M_IP6}, {"exists", SPF_M_EXISTS}};
    int found = -1;
    for (size_t k = 0; k < sizeof mechs / sizeof mechs[0]; k++)
        if (strlen(mechs[k].name) == nl && strncasecmp(name, mechs[k].name, nl) == 0)
            found = (int)k;
    if (found < 0) return err_set(err, errsize, "unknown mechanism", t, n);
    m->mech = mechs[found].m;
    m->cidr4 = 32;
    m->cidr6 = 128;
    if (alen && arg[0] != ':' && arg[0] != '/')
        return err_set(err, errsize, "unknown mechanism", t, n);
    switch (m->mech) {
    case SPF_M_ALL:
        if (alen) return err_set(err, errsize, "\"all\" takes no argument:", t, n);
        return 0;
    case SPF_M_INCLUDE:
    case SPF_M_EXISTS:
    case SPF_M_PTR:
        if (alen == 0 && m->mech == SPF_M_PTR) return 0;
        if (alen < 2 || arg[0] != ':' || !domain_spec_ok(arg + 1, alen - 1))
            return err_set(err, errsize, "bad domain in", t, n);
        m->spec = dupn(arg + 1, alen - 1);
        return 0;
    case SPF_M_A:
    case SPF_M_MX: {
        size_t dl = 0, cstart = 0;
        if (alen && arg[0] == ':') {
            /* the dual-cidr-length is at the end: a domain-spec may hold '/' */
            size_t e = alen;
            for (int part = 0; part < 2; part++) {
                size_t k = e;
                while (k > 1 && isdigit((unsigned char)arg[k - 1]))
                    k--;
                if (k == e || arg[k - 1] != '/') break;
                k--;
                if (k > 1 && arg[k - 1] == '/') k--;
                e = k;
            }
            dl = e - 1;
            if (!domain_spec_ok(arg + 1, dl)) return err_set(err, errsize, "bad domain in", t, n);
            m->spec = dupn(arg + 1, dl);
            cstart = dl + 1;
        }
        if (dual_cidr(arg + cstart, alen - cstart, 1, 1, &m->cidr4, &m->cidr6) != 0) {
            free(m->spec);
            m->spec = NULL;
            return err_set(err, errsize, "bad prefix length in", t, n);
        }
        return 0;
    }
    case SPF_M_IP4:
    case SPF_M_IP6: {
        if (alen < 2 || arg[0] != ':') return err_set(err, errsize, "missing address in", t, n);
        const char *a = arg + 1;
        size_t al = alen - 1;
        const char *slash = memchr(a, '/', al);
        size_t il = slash ? (size_t)(slash - a) : al;
        char ip[64];
        if (il == 0 || il >= sizeof ip) return err_set(err, errsize, "bad address in", t, n);
        memcpy(ip, a, il);
        ip[il] = '\0';
        int v6 = m->mech == SPF_M_IP6;
        if (inet_pton(v6 ? AF_INET6 : AF_INET, ip, m->ip) != 1)
            return err_set(err, errsize, "bad address in", t, n);
        if (slash) {
            int c = cidr_num(slash + 1, al - il - 1, v6 ? 128 : 32);
            if (c < 0) return err_set(err, errsize, "bad prefix length in", t, n);
            if (v6)
                m->cidr6 = c;
            else
                m->cidr4 = c;
        }
        return 0;
    }
    }
    return -1;
}

int spf_record_parse(const char *txt, size_t len, struct spf_record *rec, char *err, size_t errsize)
{
    memset(rec, 0, sizeof *rec);
    if (!spf_record_is_v1(txt, len)) return err_set(err, errsize, "not an SPF record", "", 0);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)txt[i];
        /* RFC 7208 3.1 and 4.6.1: US-ASCII terms separated by spaces */
        if (c > 0x7e || (c < 0x21 && c != ' '))
            return err_set(err, errsize, "character outside printable US-ASCII", "", 0);
    }
    size_t cap = 0;
    size_t i = 6;
    while (i < len) {
        while (i < len && txt[i] == ' ')
            i++;
        if (i >= len) break;
        size_t s = i;
        while (i < len && txt[i] != ' ')
            i++;
        const char *t = txt + s;
        size_t n = i - s;
        /* A modifier: name "=" macro-string, name = ALPHA *(ALPHA/DIGIT/-/_/.) */
        size_t k = 0;
        if (isalpha((unsigned char)t[0]))
            while (k < n && (isalnum((unsigned char)t[k]) || strchr("-_.", t[k])))
                k++;
        if (k > 0 && k < n && t[k] == '=') {
            const char *v = t + k + 1;
            size_t vl = n - k - 1;
            char **slot = NULL;
            if (k == 8 && strncasecmp(t, "redirect", 8) == 0)
                slot = &rec->redirect;
            else if (k == 3 && strncasecmp(t, "exp", 3) == 0)
                slot = &rec->exp;
            if (slot) {
                if (*slot) {
                    err_set(err, errsize, "modifier given twice", t, n);
                    goto fail;
                }
                if (!domain_spec_ok(v, vl)) {
                    err_set(err, errsize, "bad domain in", t, n);
                    goto fail;
                }
                *slot = dupn(v, vl);
            } else {
                int lm;
                if (macro_check(v, vl, 0, &lm) != 0) {
                    err_set(err, errsize, "bad macro in", t, n);
                    goto fail;
                }
            }
            continue;
        }
        if (rec->nterms == cap) {
            cap = cap ? 2 * cap : 8;
            struct spf_term *nt = xcalloc(cap, sizeof *nt);
            if (rec->nterms) memcpy(nt, rec->terms, rec->nterms * sizeof *nt);
            free(rec->terms);
            rec->terms = nt;
        }
        struct spf_term *m = &rec->terms[rec->nterms];
        memset(m, 0, sizeof *m);
        if (parse_mech(t, n, m, err, errsize) != 0) goto fail;
        rec->nterms++;
    }
    return 0;
fail:
    spf_record_free(rec);
    return -1;
}

void spf_record_free(struct spf_record *rec)
{
    if (!rec) return;
    for (size_t i = 0; i < rec->nterms; i++)
        free(rec->terms[i].spec);
    free(rec->terms);
    free(rec->redirect);
    free(rec->exp);
    memset(rec, 0, sizeof *rec);
}

int spf_domain_ok(const char *name)
{
    size_t len = strlen(name);
    if (len && name[len - 1] == '.') len--;
    if (len == 0 || len > 253 || name[0] == '[') return 0; /* not a domain literal */
    size_t lab = 0, labels = 1;
    for (size_t i = 0; i < len; i++) {
        if (name[i] == '.') {
            if (lab == 0) return 0;
            lab = 0;
            labels++;
        } else if (++lab > 63) {
            return 0;
        }
    }
    if (lab == 0 || labels < 2) return 0;
    /* the top label is never all digits (RFC 7208 7.1 toplabel): not an address */
    for (size_t i = len - lab; i < len; i++)
        if (!isdigit((unsigned char)name[i])) return 1;
    return 0;
}

/* Append n bytes; -1 when out is full. */
static int put(char *out, size_t outsize, size_t *o, const char *s, size_t n)
{
    if (*o + n >= outsize) return -1;
    memcpy(out + *o, s, n);
    *o += n;
    out[*o] = '\0';
    return 0;
}

/* The raw value of macro letter L into v. */
static int macro_value(char L, const struct spf_macro_env *e, char *v, size_t vsize)
{
    const struct sockaddr *sa = (const struct sockaddr *)&e->ip;
    const unsigned char *b6 = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    const unsigned char *b4 = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    int n = 0;
    switch (L) {
    case 's':
        n = snprintf(v, vsize, "%s", e->sender ? e->sender : "");
        break;
    case 'l':
        n = snprintf(v, vsize, "%s", e->local ? e->local : "");
        break;
    case 'o':
        n = snprintf(v, vsize, "%s", e->sender_domain ? e->sender_domain : "");
        break;
    case 'd':
        n = snprintf(v, vsize, "%s", e->domain ? e->domain : "");
        break;
    case 'h':
        n = snprintf(v, vsize, "%s", e->helo ? e->helo : "");
        break;
    case 'p':
        n = snprintf(v, vsize, "%s", e->ptr ? e->ptr : "unknown");
        break;
    case 'r':
        n = snprintf(v, vsize, "%s", e->receiver ? e->receiver : "unknown");
        break;
    case 't':
        n = snprintf(v, vsize, "%lld", e->now);
        break;
    case 'v':
        n = snprintf(v, vsize, "%s", sa->sa_family == AF_INET6 ? "ip6" : "in-addr");
        break;
    case 'i':
        if (sa->sa_family == AF_INET6) {
            /* upper-case nibbles, as the RFC 7208 test suite (v-macro-ip6) wants;
             * DNS does not care */
            static const char hex[] = "0123456789ABCDEF";
            if (vsize < 64) return -1;
            for (int k = 0; k < 16; k++) {
                v[4 * k] = hex[b6[k] >> 4];
                v[4 * k + 1] = '.';
                v[4 * k + 2] = hex[b6[k] & 15];
                v[4 * k + 3] = '.';
            }
            v[63] = '\0';
            n = 63;
        } else {
            n = snprintf(v, vsize, "%u.%u.%u.%u", b4[0], b4[1], b4[2], b4[3]);
        }
        break;
    case 'c':
        if (!inet_ntop(sa->sa_family,
                       sa->sa_family == AF_INET6 ? (const void *)b6 : (const void *)b4, v,
                       (socklen_t)vsize))
            return -1;
        n = (int)strlen(v);
        break;
    default:
        return -1;
    }
    return n >= 0 && (size_t)n < vsize ? 0 : -1;
}

int spf_macro_expand(const char *s, size_t len, const struct spf_macro_env *env, int is_exp,
                     int is_domain, char *out, size_t outsize)
{
    size_t o = 0;
    int lm;
    if (!out || outsize == 0) return -1;
    out[0] = '\0';
    if (macro_check(s, len, is_exp, &lm) != 0) return -1;
    for (size_t i = 0; i < len;) {
        if (s[i] != '%') {
            if (put(out, outsize, &o, s + i, 1) != 0) return -1;
            i++;
            continue;
        }
        char n = s[i + 1];
        if (n == '%' || n == '_' || n == '-') {
            const char *r = n == '%' ? "%" : n == '_' ? " " : "%20";
            if (put(out, outsize, &o, r, strlen(r)) != 0) return -1;
            i += 2;
            continue;
        }
        size_t j = i + 2;
        char L = s[j++];
        int upper = isupper((unsigned char)L);
        long digits = 0;
        while (isdigit((unsigned char)s[j])) {
            if (digits < 1000) digits = digits * 10 + (s[j] - '0');
            j++;
        }
        int rev = 0;
        if (s[j] == 'r' || s[j] == 'R') {
            rev = 1;
            j++;
        }
        char delims[8];
        size_t nd = 0;
        while (s[j] != '}') {
            if (nd < sizeof delims - 1) delims[nd++] = s[j];
            j++;
        }
        delims[nd] = '\0';
        if (nd == 0) {
            delims[0] = '.';
            delims[1] = '\0';
        }
        i = j + 1;
        char val[1024];
        if (macro_value((char)tolower((unsigned char)L), env, val, sizeof val) != 0) return -1;
        /* split on the delimiters, reverse, keep the right-most digits parts */
        const char *parts[256];
        size_t plen[256], np = 0;
        const char *p = val;
        for (;;) {
            const char *q = p;
            while (*q && !strchr(delims, *q))
                q++;
            if (np < 256) {
                parts[np] = p;
                plen[np++] = (size_t)(q - p);
            }
            if (!*q) break;
            p = q + 1;
        }
        if (rev)
            for (size_t a = 0, z = np - 1; a < z; a++, z--) {
                const char *tp = parts[a];
                parts[a] = parts[z];
                parts[z] = tp;
                size_t tl = plen[a];
                plen[a] = plen[z];
                plen[z] = tl;
            }
        size_t first = digits > 0 && (size_t)digits < np ? np - (size_t)digits : 0;
        char exp[1100];
        size_t eo = 0;
        for (size_t k = first; k < np; k++) {
            if (k > first) exp[eo++] = '.';
            memcpy(exp + eo, parts[k], plen[k]);
            eo += plen[k];
        }
        exp[eo] = '\0';
        if (upper) {
            /* 7.3: URL-escape all but the unreserved characters */
            for (size_t k = 0; k < eo; k++) {
                unsigned char c = (unsigned char)exp[k];
                char enc[4];
                if (isalnum(c) || strchr("-._~", c)) {
                    enc[0] = (char)c;
                    enc[1] = '\0';
                } else {
                    snprintf(enc, sizeof enc, "%%%02X", c);
                }
                if (put(out, outsize, &o, enc, strlen(enc)) != 0) return -1;
            }
        } else if (put(out, outsize, &o, exp, eo) != 0) {
            return -1;
        }
    }
    if (is_domain) {
        /* 7.3: longer than 253 bytes: drop left-hand labels until it fits */
        size_t l = strlen(out);
        if (l && out[l - 1] == '.') out[--l] = '\0';
        char *p = out;
        while (l > 253) {
            char *dot = strchr(p, '.');
            if (!dot) return -1;
            l -= (size_t)(dot + 1 - p);
            p = dot + 1;
        }
        if (p != out) memmove(out, p, l + 1);
    }
    return 0;
}

static int put_str(char *out, size_t outsize, size_t *o, const char *s)
{
    return put(out, outsize, o, s, strlen(s));
}

/* Append s as comment text (RFC 5322 ctext with quoted-pairs) or quoted-string
 * content: printable ASCII only, '\\' and the closing character quoted. */
static int put_quoted(char *out, size_t outsize, size_t *o, const char *s, const char *special)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c > 0x7e) continue;
        if (strchr(special, c) && put(out, outsize, o, "\\", 1) != 0) return -1;
        if (put(out, outsize, o, s, 1) != 0) return -1;
    }
    return 0;
}

int spf_received_header(char *out, size_t outsize, enum spf_result r, const char *text,
                        const char *receiver, const char *client_ip, const char *sender,
                        const char *helo)
{
    size_t o = 0;
    int null = !sender || !*sender;
    char head[128];
    if (!out || outsize == 0) return -1;
    out[0] = '\0';
    snprintf(head, sizeof head, "Received-SPF: %s (", spf_result_name(r));
    if (put_str(out, outsize, &o, head) != 0 ||
        put_quoted(out, outsize, &o, receiver, "()\\") != 0 ||
        put_str(out, outsize, &o, ": ") != 0 || put_quoted(out, outsize, &o, text, "()\\") != 0 ||
        put_str(out, outsize, &o, ")\r\n\treceiver=") != 0 ||
        put_quoted(out, outsize, &o, receiver, "\"\\;() ") != 0 ||
        put_str(out, outsize, &o, "; client-ip=") != 0 ||
        put_quoted(out, outsize, &o, client_ip, "\"\\;() ") != 0 ||
        put_str(out, outsize, &o, "; envelope-from=\"") != 0 ||
        put_quoted(out, outsize, &o, null ? "" : sender, "\"\\") != 0 ||
        put_str(out, outsize, &o, "\"; helo=\"") != 0 ||
        put_quoted(out, outsize, &o, helo, "\"\\") != 0)
        return -1;
    const char *tail = null ? "\"; identity=helo" : "\"; identity=mailfrom";
    return put_str(out, outsize, &o, tail);
}
