/* replies.c: the reply classifier (replies.h): reads a rules file into conditions,
 * matches a reply against them in file order. Holds the daemon's current rules; the
 * decisions taken on a class are delivery's. */
#include "core/compat.h"

#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "egress/replies.h"

#ifndef KURIER_DATADIR
#define KURIER_DATADIR "/usr/local/share/kurier"
#endif

#define RULES_FILE_MAX (4u << 20) /* bytes of a rules file */
#define RULES_MAX 20000           /* rules in a file */
#define LINE_MAX_ 4096            /* bytes of one rule line */
#define CONDS_MAX 16              /* conditions of one rule */

static const char *const kind_names[REPLY_KIND_COUNT] = {
    "other",        "ip-blocklist", "ip-reputation-temporary",
    "rate-limit",   "greylist",     "user-unknown",
    "mailbox-full", "policy",       "size"};

const char *egress_reply_kind_name(enum reply_kind k)
{
    return (unsigned)k < REPLY_KIND_COUNT ? kind_names[k] : "other";
}

int egress_reply_kind_parse(const char *name, enum reply_kind *out)
{
    for (int k = 0; k < REPLY_KIND_COUNT; k++)
        if (strcmp(name, kind_names[k]) == 0) {
            *out = (enum reply_kind)k;
            return 0;
        }
    return -1;
}

/* --- rules ------------------------------------------------------------------------ */

enum cond_type { C_CODE, C_ENH, C_WORDS, C_REGEX };

struct cond {
    enum cond_type type;
    int neg;    /* "!": must not match */
    char *s;    /* C_CODE/C_ENH: the patterns, comma-separated; C_WORDS: the words */
    regex_t re; /* C_REGEX */
};

struct rule {
    struct reply_rule pub;
    struct cond conds[CONDS_MAX];
    int nconds;
};

struct reply_rules {
    char *file;
    struct rule *rules;
    size_t n, cap;
};

static void rule_clear(struct rule *r)
{
    for (int i = 0; i < r->nconds; i++) {
        if (r->conds[i].type == C_REGEX) regfree(&r->conds[i].re);
        free(r->conds[i].s);
    }
    free((char *)r->pub.text);
}

void egress_reply_rules_free(struct reply_rules *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++)
        rule_clear(&r->rules[i]);
    free(r->rules);
    free(r->file);
    free(r);
}

size_t egress_reply_rules_count(const struct reply_rules *r)
{
    return r ? r->n : 0;
}

/* "550", "5xx", "55x" (x or * for any digit), comma-separated. */
static int code_pattern_ok(const char *p)
{
    for (;;) {
        size_t n = strcspn(p, ",");
        if (n != 3) return 0;
        for (size_t i = 0; i < 3; i++)
            if (!isdigit((unsigned char)p[i]) && p[i] != 'x' && p[i] != 'X' && p[i] != '*')
                return 0;
        if (p[3] == '\0') return 1;
        p += 4;
    }
}

/* "5.7.1", "5.7.x", "x.1.1", "5.7.*" comma-separated; numbers up to 3 digits. */
static int enh_pattern_ok(const char *p)
{
    for (;;) {
        for (int part = 0; part < 3; part++) {
            if (*p == 'x' || *p == 'X' || *p == '*') {
                p++;
            } else {
                size_t d = strspn(p, "0123456789");
                if (d == 0 || d > 3) return 0;
                p += d;
            }
            if (part < 2 && *p++ != '.') return 0;
        }
        if (*p == '\0') return 1;
        if (*p++ != ',') return 0;
    }
}

/* glibc's regcomp builds a node per repetition: stacked quantifiers ("a++++") and big
 * bounds ("a{1000}{1000}") take it gigabytes. Refused before they reach it; NULL when
 * fine, else what is wrong. */
static const char *regex_unsafe(const char *re)
{
    if (strlen(re) > 1000) return "longer than 1000 characters";
    int prev_quant = 0, bounds = 0;
    for (const char *p = re; *p; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            prev_quant = 0;
        } else if (*p == '[') { /* a bracket expression: "]" first is literal */
            p++;
            if (*p == '^') p++;
            if (*p == ']') p++;
            while (*p && *p != ']')
                p++;
            if (!*p) return NULL; /* regcomp reports it */
            prev_quant = 0;
        } else if (*p == '*' || *p == '+' || *p == '?' || *p == '{') {
            if (prev_quant) return "a repetition of a repetition (\"a++\", \"a{2}*\")";
            if (*p == '{') {
                char *end;
                long lo = strtol(p + 1, &end, 10), hi = lo;
                if (*end == ',')
                    hi = isdigit((unsigned char)end[1]) ? strtol(end + 1, &end, 10) : 0;
                if (lo > 100 || hi > 100) return "a repetition count above 100";
                if (++bounds > 4) return "more than 4 repetition counts";
                p = strchr(p, '}');
                if (!p) return NULL;
            }
            prev_quant = 1;
        } else {
            prev_quant = 0;
        }
    }
    return NULL;
}

static int fail(char *err, size_t errsize, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(char *err, size_t errsize, const char *file, int line, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, errsize, "%s:%d: %s", file, line, msg);
    return -1;
}

/* One quoted or slashed token starting at *pp (on the opening quote/slash) into out;
 * \" (\/) and \\ are unescaped in words, in a regex only \/ is. 0 done, -1 not
 * closed. */
static int take_delimited(const char **pp, char close, int regex, char *out, size_t outsize)
{
    const char *p = *pp + 1;
    size_t n = 0;
    for (; *p && *p != close; p++) {
        if (*p == '\\' && (p[1] == close || (!regex && p[1] == '\\'))) p++;
        if (n + 1 < outsize) out[n++] = *p;
    }
    out[n] = '\0';
    if (*p != close) return -1;
    *pp = p + 1;
    return 0;
}

/* Parse one line (NUL-terminated, no newline) into r. 1 a rule, 0 blank/comment,
 * -1 bad with err. */
static int parse_line(char *line, const char *file, int lineno, struct rule *r, char *err,
                      size_t errsize)
{
    const char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0' || *p == '#') return 0;
    memset(r, 0, sizeof *r);
    size_t kl = strcspn(p, " \t");
    char kind[32];
    if (kl >= sizeof kind) kl = sizeof kind - 1;
    memcpy(kind, p, kl);
    kind[kl] = '\0';
    if (egress_reply_kind_parse(kind, &r->pub.kind) != 0)
        return fail(err, errsize, file, lineno,
                    "unknown class \"%s\" (expected ip-blocklist, ip-reputation-temporary, "
                    "rate-limit, greylist, user-unknown, mailbox-full, policy, size or other)",
                    kind);
    p += strcspn(p, " \t");
    char tok[LINE_MAX_];
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#') break;
        if (r->nconds >= CONDS_MAX) {
            rule_clear(r);
            return fail(err, errsize, file, lineno, "more than %d conditions", CONDS_MAX);
        }
        struct cond *c = &r->conds[r->nconds];
        memset(c, 0, sizeof *c);
        const char *start = p;
        if (*p == '!') {
            c->neg = 1;
            p++;
        }
        if (*p == '"' || *p == '/') {
            int regex = *p == '/';
            if (take_delimited(&p, *p, regex, tok, sizeof tok) != 0) {
                rule_clear(r);
                return fail(err, errsize, file, lineno, "%s not closed: %.40s",
                            regex ? "/regex/" : "\"words\"", start);
            }
            if (!tok[0]) {
                rule_clear(r);
                return fail(err, errsize, file, lineno, "empty %s", regex ? "regex" : "words");
            }
            const char *unsafe = regex ? regex_unsafe(tok) : NULL;
            if (unsafe) {
                rule_clear(r);
                return fail(err, errsize, file, lineno, "regex /%.60s/ refused: %s", tok, unsafe);
            }
            if (regex) {
                int rc = regcomp(&c->re, tok, REG_EXTENDED | REG_ICASE | REG_NOSUB);
                if (rc != 0) {
                    char why[200];
                    regerror(rc, &c->re, why, sizeof why);
                    rule_clear(r);
                    return fail(err, errsize, file, lineno, "bad regex /%.60s/: %s", tok, why);
                }
                c->type = C_REGEX;
            } else {
                c->type = C_WORDS;
                c->s = xstrdup(tok);
            }
        } else if (strncmp(p, "code=", 5) == 0 || strncmp(p, "enh=", 4) == 0) {
            int is_code = p[0] == 'c';
            p += is_code ? 5 : 4;
            size_t n = strcspn(p, " \t#");
            if (n >= sizeof tok) n = sizeof tok - 1;
            memcpy(tok, p, n);
            tok[n] = '\0';
            p += strcspn(p, " \t#");
            if (is_code ? !code_pattern_ok(tok) : !enh_pattern_ok(tok)) {
                rule_clear(r);
                return fail(err, errsize, file, lineno,
                            is_code ? "bad code=\"%s\" (expected e.g. 550, 5xx or 421,450)"
                                    : "bad enh=\"%s\" (expected e.g. 5.7.1, 5.7.x or x.1.1)",
                            tok);
            }
            c->type = is_code ? C_CODE : C_ENH;
            c->s = xstrdup(tok);
        } else {
            rule_clear(r);
            return fail(err, errsize, file, lineno,
                        "unknown condition \"%.40s\" (expected code=, enh=, \"words\" or "
                        "/regex/, each optionally after !)",
                        start);
        }
        r->nconds++;
        if (*p && *p != ' ' && *p != '\t' && *p != '#') {
            rule_clear(r);
            return fail(err, errsize, file, lineno,
                        "expected a space after a condition at \"%.20s\"", p);
        }
    }
    if (r->nconds == 0)
        return fail(err, errsize, file, lineno, "class \"%s\" without any condition", kind);
    /* the rule as written, comment and trailing blanks cut */
    const char *t = line;
    while (*t == ' ' || *t == '\t')
        t++;
    size_t tl = (size_t)(p - t);
    while (tl > 0 && (t[tl - 1] == ' ' || t[tl - 1] == '\t'))
        tl--;
    char *text = xmalloc(tl + 1);
    memcpy(text, t, tl);
    text[tl] = '\0';
    r->pub.text = text;
    r->pub.line = lineno;
    return 1;
}

struct reply_rules *egress_reply_rules_parse(const char *text, size_t len, const char *name,
                                             char *err, size_t errsize)
{
    struct reply_rules *rs = xcalloc(1, sizeof *rs);
    rs->file = xstrdup(name);
    char *line = xmalloc(LINE_MAX_ + 1);
    int lineno = 0;
    size_t off = 0;
    while (off < len) {
        lineno++;
        const char *nl = memchr(text + off, '\n', len - off);
        size_t n = nl ? (size_t)(nl - (text + off)) : len - off;
        if (n > 0 && text[off + n - 1] == '\r') n--;
        if (n > LINE_MAX_) {
            fail(err, errsize, name, lineno, "line longer than %d bytes", LINE_MAX_);
            goto bad;
        }
        if (memchr(text + off, '\0', n)) {
            fail(err, errsize, name, lineno, "NUL byte in line");
            goto bad;
        }
        memcpy(line, text + off, n);
        line[n] = '\0';
        off += nl ? (size_t)(nl - (text + off)) + 1 : len - off;
        struct rule r;
        int rc = parse_line(line, name, lineno, &r, err, errsize);
        if (rc < 0) goto bad;
        if (rc == 0) continue;
        if (rs->n >= RULES_MAX) {
            rule_clear(&r);
            fail(err, errsize, name, lineno, "more than %d rules", RULES_MAX);
            goto bad;
        }
        if (rs->n == rs->cap) {
            rs->cap = rs->cap ? 2 * rs->cap : 64;
            rs->rules = xrealloc(rs->rules, rs->cap * sizeof *rs->rules);
        }
        rs->rules[rs->n++] = r;
    }
    free(line);
    for (size_t i = 0; i < rs->n; i++)
        rs->rules[i].pub.file = rs->file; /* stable now that the array is final */
    return rs;
bad:
    free(line);
    egress_reply_rules_free(rs);
    return NULL;
}

struct reply_rules *egress_reply_rules_load(const char *path, char *err, size_t errsize)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errsize, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = xmalloc(RULES_FILE_MAX + 1);
    size_t len = fread(text, 1, RULES_FILE_MAX + 1, f);
    int rerr = ferror(f);
    fclose(f);
    struct reply_rules *rs = NULL;
    if (rerr)
        snprintf(err, errsize, "%s: read error", path);
    else if (len > RULES_FILE_MAX)
        snprintf(err, errsize, "%s: larger than %u bytes", path, RULES_FILE_MAX);
    else
        rs = egress_reply_rules_parse(text, len, path, err, errsize);
    free(text);
    return rs;
}

/* --- matching ---------------------------------------------------------------------- */

struct enh {
    int ok, cls, subj, det;
};

/* An enhanced code at the start of s ("5.7.1", up to 3 digits per part after the
 * class), followed by the end, a space or a punctuation mark. Returns its length, 0
 * when none. */
static size_t enh_at(const char *s, struct enh *e)
{
    if ((s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return 0;
    const char *p = s + 2;
    size_t a = strspn(p, "0123456789");
    if (a == 0 || a > 3 || p[a] != '.') return 0;
    const char *q = p + a + 1;
    size_t b = strspn(q, "0123456789");
    if (b == 0 || b > 3) return 0;
    if (q[b] && !isspace((unsigned char)q[b]) && !strchr(",;:)]", q[b])) return 0;
    if (e) {
        e->ok = 1;
        e->cls = s[0] - '0';
        e->subj = atoi(p);
        e->det = atoi(q);
    }
    return (size_t)(q + b - s);
}

const char *egress_reply_split(const char *s, int *code, char *enh, size_t enhsize)
{
    *code = 0;
    if (enhsize) enh[0] = '\0';
    if (!s) return "";
    while (*s == ' ' || *s == '\t')
        s++;
    if (isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) &&
        isdigit((unsigned char)s[2]) && (s[3] == ' ' || s[3] == '-' || s[3] == '\0')) {
        *code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
        s += s[3] ? 4 : 3;
        while (*s == ' ')
            s++;
    }
    size_t n = enh_at(s, NULL);
    if (n > 0) {
        if (n < enhsize) {
            memcpy(enh, s, n);
            enh[n] = '\0';
        }
        s += n;
        while (*s == ' ')
            s++;
    }
    return s;
}

static int code_match(const char *pats, int code)
{
    if (code < 100 || code > 999) return 0;
    char c[4];
    snprintf(c, sizeof c, "%03d", code);
    for (const char *p = pats;; p += 4) {
        int ok = 1;
        for (int i = 0; i < 3; i++)
            if (isdigit((unsigned char)p[i]) && p[i] != c[i]) ok = 0;
        if (ok) return 1;
        if (p[3] != ',') return 0;
    }
}

static int enh_match(const char *pats, const struct enh *e)
{
    if (!e->ok) return 0;
    const int want[3] = {e->cls, e->subj, e->det};
    const char *p = pats;
    for (;;) {
        int ok = 1;
        for (int part = 0; part < 3; part++) {
            if (*p == 'x' || *p == 'X' || *p == '*') {
                p++;
            } else {
                char *end;
                long v = strtol(p, &end, 10);
                if (v != want[part]) ok = 0;
                p = end;
            }
            if (part < 2) p++; /* the dot */
        }
        if (ok) return 1;
        if (*p != ',') return 0;
        p++;
    }
}

static int cond_holds(const struct cond *c, int code, const struct enh *e, const char *text)
{
    int m = 0;
    switch (c->type) {
    case C_CODE:
        m = code_match(c->s, code);
        break;
    case C_ENH:
        m = enh_match(c->s, e);
        break;
    case C_WORDS:
        m = strcasestr(text, c->s) != NULL;
        break;
    case C_REGEX:
        m = regexec(&c->re, text, 0, NULL, 0) == 0;
        break;
    }
    return c->neg ? !m : m;
}

enum reply_kind egress_reply_classify(const struct reply_rules *r, int code, const char *enh,
                                      const char *text, const struct reply_rule **matched)
{
    struct enh e = {0};
    if (!text) text = "";
    if (code == 0 && (!enh || !*enh)) {
        char eb[16];
        text = egress_reply_split(text, &code, eb, sizeof eb);
        if (eb[0]) enh_at(eb, &e);
    } else if (enh && *enh) {
        enh_at(enh, &e);
    } else {
        /* "550" given, the text may start with the enhanced code */
        while (*text == ' ')
            text++;
        if (enh_at(text, &e)) text += enh_at(text, NULL);
        while (*text == ' ')
            text++;
    }
    if (matched) *matched = NULL;
    for (size_t i = 0; r && i < r->n; i++) {
        const struct rule *ru = &r->rules[i];
        int all = 1;
        for (int k = 0; k < ru->nconds && all; k++)
            all = cond_holds(&ru->conds[k], code, &e, text);
        if (all) {
            if (matched) *matched = &ru->pub;
            return ru->pub.kind;
        }
    }
    /* RFC 3463: the subjects that say it all */
    if (e.ok && e.subj == 1 && (e.det == 1 || e.det == 10)) return REPLY_USER_UNKNOWN;
    if (e.ok && e.subj == 2 && e.det == 2) return REPLY_MAILBOX_FULL;
    if (e.ok && e.subj == 3 && e.det == 4) return REPLY_SIZE;
    return REPLY_OTHER;
}

/* --- the daemon's rules ---------------------------------------------------------- */

static struct reply_rules *current;

const char *egress_replies_default_path(void)
{
    return KURIER_DATADIR "/replies.rules";
}

int egress_replies_load(const char *path, char *err, size_t errsize)
{
    int is_default = !path || !*path;
    if (is_default) path = egress_replies_default_path();
    static int warned; /* once, not on every reload */
    if (is_default && !current && access(path, F_OK) != 0) {
        if (!warned++)
            log_warn("egress",
                     "reply rules: %s is missing (set reply_rules in the config); remote replies "
                     "are classified by their enhanced status codes only",
                     path);
        return 0;
    }
    struct reply_rules *r = egress_reply_rules_load(path, err, errsize);
    if (!r) return -1;
    egress_reply_rules_free(current);
    current = r;
    log_info("egress", "reply rules: %zu rules loaded from %s", r->n, path);
    return 0;
}

const struct reply_rules *egress_replies_current(void)
{
    return current;
}

void egress_replies_free(void)
{
    egress_reply_rules_free(current);
    current = NULL;
}
