/* dmarc.c: DMARC's pure parts (dmarc.h): the record parser, the public suffix list
 * and organisational domains, alignment, the From: domain. No I/O. */
#include "core/compat.h"

#include <ctype.h>

#include "core/buf.h"
#include "core/dkim.h"
#include "core/dmarc.h"
#include "core/header.h"
#include "core/util.h"

/* ========================================================================= records */

static int word_is(const char *p, size_t len, const char *w)
{
    return len == strlen(w) && strncasecmp(p, w, len) == 0;
}

static int tag_named(const struct dkim_tag *t, const char *name)
{
    return t->name_len == strlen(name) && memcmp(t->name, name, t->name_len) == 0;
}

static int parse_policy(const struct dkim_tag *t, enum dmarc_policy *p)
{
    if (word_is(t->value, t->value_len, "none"))
        *p = DMARC_P_NONE;
    else if (word_is(t->value, t->value_len, "quarantine"))
        *p = DMARC_P_QUARANTINE;
    else if (word_is(t->value, t->value_len, "reject"))
        *p = DMARC_P_REJECT;
    else
        return -1;
    return 0;
}

int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *r, char *err,
                       size_t errsize)
{
    memset(r, 0, sizeof *r);
    r->pct = 100;
    /* RFC 7489 6.6.3: records that do not start with "v=DMARC1" are discarded */
    size_t i = 0;
    while (i < len && (txt[i] == ' ' || txt[i] == '\t'))
        i++;
    if (len - i < 2 || txt[i] != 'v') return 0;
    struct dkim_tag tags[DKIM_TAGS_MAX];
    int nt = dkim_tags_parse(txt, len, tags, DKIM_TAGS_MAX, NULL);
    if (nt < 0) {
        /* not even a tag list: if it does not say v=DMARC1, it is another record */
        const char *semi = memchr(txt + i, ';', len - i);
        size_t vl = semi ? (size_t)(semi - txt - i) : len - i;
        while (vl && (txt[i + vl - 1] == ' ' || txt[i + vl - 1] == '\t'))
            vl--;
        if (!word_is(txt + i, vl, "v=DMARC1")) return 0;
        err_set(err, errsize, "malformed tag list");
        return -1;
    }
    size_t n = (size_t)nt;
    if (n == 0 || !tag_named(&tags[0], "v") || !word_is(tags[0].value, tags[0].value_len, "DMARC1"))
        return 0;
    int p_ok = 0, sp_set = 0;
    for (size_t k = 1; k < n; k++) {
        const struct dkim_tag *t = &tags[k];
        if (tag_named(t, "p")) {
            p_ok = parse_policy(t, &r->p) == 0;
        } else if (tag_named(t, "sp")) {
            if (parse_policy(t, &r->sp) == 0) sp_set = 1;
        } else if (tag_named(t, "pct")) {
            int v = 0;
            if (!t->value_len || t->value_len > 3) goto bad_pct;
            for (size_t j = 0; j < t->value_len; j++) {
                if (!isdigit((unsigned char)t->value[j])) goto bad_pct;
                v = v * 10 + (t->value[j] - '0');
            }
            if (v > 100) goto bad_pct;
            r->pct = v;
        } else if (tag_named(t, "adkim")) {
            r->adkim_strict = word_is(t->value, t->value_len, "s");
        } else if (tag_named(t, "aspf")) {
            r->aspf_strict = word_is(t->value, t->value_len, "s");
        } else if (tag_named(t, "rua")) {
            r->has_rua = t->value_len > 0;
        }
        /* ruf, fo, rf, ri and unknown tags: ignored (RFC 7489 6.3) */
    }
    if (!p_ok) {
        if (!r->has_rua) {
            err_set(err, errsize, "no valid p=");
            return -1;
        }
        r->p = DMARC_P_NONE;
    }
    if (!sp_set) r->sp = r->p;
    return 1;
bad_pct:
    err_set(err, errsize, "bad pct=");
    return -1;
}

const char *dmarc_policy_name(enum dmarc_policy p)
{
    return p == DMARC_P_REJECT ? "reject" : p == DMARC_P_QUARANTINE ? "quarantine" : "none";
}

/* ============================================================ public suffix list */

struct psl {
    char **rules; /* lowercase, sorted: "com", "*.ck", "!www.ck" */
    size_t n;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct psl *psl_parse(const char *text, size_t len)
{
    struct psl *l = xcalloc(1, sizeof *l);
    size_t cap = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - text) : len;
        /* a rule is the line's first word; comments start with "//" */
        size_t s = i;
        while (s < e && (text[s] == ' ' || text[s] == '\t'))
            s++;
        size_t w = s;
        while (w < e && !isspace((unsigned char)text[w]))
            w++;
        if (w > s && !(w - s >= 2 && text[s] == '/' && text[s + 1] == '/') && w - s < 256) {
            if (l->n == cap) {
                cap = cap ? cap * 2 : 1024;
                l->rules = xrealloc(l->rules, cap * sizeof *l->rules);
            }
            l->rules[l->n] = xstrndup(text + s, w - s);
            str_lower(l->rules[l->n]);
            l->n++;
        }
        i = e + 1;
    }
    if (l->n) qsort(l->rules, l->n, sizeof *l->rules, cmp_str);
    return l;
}

void psl_free(struct psl *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++)
        free(l->rules[i]);
    free(l->rules);
    free(l);
}

static int psl_has(const struct psl *l, const char *prefix, const char *name)
{
    if (!l || !l->n) return 0;
    char key[300];
    if (snprintf(key, sizeof key, "%s%s", prefix, name) >= (int)sizeof key) return 0;
    const char *k = key;
    return bsearch(&k, l->rules, l->n, sizeof *l->rules, cmp_str) != NULL;
}

int psl_org_domain(const struct psl *l, const char *domain, char *out, size_t outsize)
{
    size_t dl = strlen(domain);
    if (dl == 0 || dl >= 254 || dl + 1 > outsize) {
        str_copy(out, domain, outsize);
        return -1;
    }
    /* label starts, left to right */
    size_t starts[128], ns = 0;
    starts[ns++] = 0;
    for (size_t i = 0; i < dl && ns < 128; i++)
        if (domain[i] == '.') starts[ns++] = i + 1;
    /* the public suffix is labels ps..ns-1; default rule "*": the last label */
    size_t ps = ns - 1;
    int found = 0;
    for (size_t i = 0; i < ns && !found; i++) /* exceptions win */
        if (psl_has(l, "!", domain + starts[i])) {
            ps = i + 1 < ns ? i + 1 : ns - 1;
            found = 1;
        }
    for (size_t i = 0; i < ns && !found; i++) { /* the longest rule */
        if (psl_has(l, "", domain + starts[i]) ||
            (i + 1 < ns && psl_has(l, "*.", domain + starts[i + 1]))) {
            ps = i;
            found = 1;
        }
    }
    if (ps == 0) {
        str_copy(out, domain, outsize);
        return -1;
    }
    str_copy(out, domain + starts[ps - 1], outsize);
    return 0;
}

int dmarc_aligned(const struct psl *l, const char *a, const char *b, int strict)
{
    if (!a || !b || !*a || !*b) return 0;
    if (strcasecmp(a, b) == 0) return 1;
    if (strict) return 0;
    char oa[256], ob[256];
    psl_org_domain(l, a, oa, sizeof oa);
    psl_org_domain(l, b, ob, sizeof ob);
    return strcasecmp(oa, ob) == 0;
}

int dmarc_from_domain(const char *value, size_t len, char *out, size_t outsize)
{
    char **v = NULL;
    size_t n = 0;
    if (hdr_parse_mailboxes(value, len, &v, &n) != 0) return -1;
    int rc = -1;
    if (n == 1) {
        const char *at = strrchr(v[0], '@');
        if (at && at[1] && strlen(at + 1) < outsize) {
            str_copy(out, at + 1, outsize);
            str_lower(out);
            size_t ol = strlen(out);
            if (ol && out[ol - 1] == '.') out[ol - 1] = '\0';
            rc = 0;
        }
    }
    hdr_addresses_free(v, n);
    return rc;
}
