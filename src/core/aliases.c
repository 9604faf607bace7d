/* aliases.c: the parser of the /etc/aliases format and the lookup in what it read.
 * What a target means (a local name, one of our mailboxes, a remote address) is
 * route/'s decision. */
#include "core/compat.h"

#include <errno.h>
#include <sys/stat.h>

#include "core/addr.h"
#include "core/aliases.h"
#include "core/buf.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/util.h"

/* One logical entry: the text of a line and its continuation lines. */
struct entry_text {
    struct buf b;
    int line;
};

static int name_char(unsigned char c)
{
    return c > 0x20 && c != ':' && c != '@' && c != ',' && c != '"' && c != 0x7f;
}

static void add_target(struct alias_entry *e, const char *t)
{
    for (size_t i = 0; i < e->ntargets; i++)
        if (strcmp(e->targets[i], t) == 0) return; /* listed twice: once is enough */
    e->targets = xrealloc(e->targets, (e->ntargets + 1) * sizeof *e->targets);
    e->targets[e->ntargets++] = xstrdup(t);
}

/* One target as written (trimmed, not empty) into e. 0, or -1 with errs filled. */
static int parse_target(const char *file, int line, struct alias_entry *e, const char *t,
                        struct conf_errors *errs)
{
    if (t[0] == '|' || (t[0] == '"' && t[1] == '|')) {
        conf_errors_add(errs, file, line, 1,
                        "alias \"%s\": delivery to a command (%s) is not supported; give an "
                        "address",
                        e->name, t);
        return -1;
    }
    if (t[0] == '/' || (t[0] == '"' && t[1] == '/')) {
        conf_errors_add(errs, file, line, 1,
                        "alias \"%s\": delivery to a file (%s) is not supported; give an address",
                        e->name, t);
        return -1;
    }
    if (strncasecmp(t, ":include:", 9) == 0) {
        conf_errors_add(errs, file, line, 1,
                        "alias \"%s\": %s is not supported; list the addresses here", e->name, t);
        return -1;
    }
    struct addr a = {0};
    const char *why = "bad address";
    size_t len = strlen(t);
    int n = addr_parse(t, len, ADDR_O_NO_BRACKETS | ADDR_O_LOCAL_ONLY | ADDR_O_UTF8, &a, &why);
    if (n < 0 || (size_t)n != len) {
        if (n >= 0) why = "trailing characters after the address";
        conf_errors_add(errs, file, line, 1, "alias \"%s\": bad target \"%s\": %s", e->name, t,
                        why);
        addr_clear(&a);
        return -1;
    }
    char *s = addr_format(&a);
    addr_clear(&a);
    str_lower(s);
    add_target(e, s);
    free(s);
    return 0;
}

/* Split "a, b,c" (quotes keep commas) into targets. 0, or -1 with errs filled. */
static int parse_targets(const char *file, int line, struct alias_entry *e, const char *p,
                         struct conf_errors *errs)
{
    int rc = 0;
    struct buf t;
    buf_init(&t, 0);
    for (;;) {
        buf_reset(&t);
        int quote = 0;
        for (; *p && (quote || *p != ','); p++) {
            if (*p == '"') quote = !quote;
            buf_append(&t, p, 1);
        }
        char *s = t.data ? t.data : "";
        size_t l = t.len;
        while (l && (s[l - 1] == ' ' || s[l - 1] == '\t'))
            s[--l] = '\0';
        while (*s == ' ' || *s == '\t')
            s++;
        if (quote) {
            conf_errors_add(errs, file, line, 1, "alias \"%s\": unclosed quote", e->name);
            rc = -1;
        } else if (*s) {
            if (parse_target(file, line, e, s, errs) != 0) rc = -1;
        } else if (*p == ',' || e->ntargets == 0) {
            conf_errors_add(errs, file, line, 1, "alias \"%s\": empty target", e->name);
            rc = -1;
        }
        if (*p != ',') break;
        p++;
    }
    buf_release(&t);
    return rc;
}

/* One logical entry "name: targets". */
static int parse_entry(const char *file, struct entry_text *et, struct aliases *a,
                       struct conf_errors *errs)
{
    const char *s = et->b.data;
    size_t i = 0;
    while (name_char((unsigned char)s[i]))
        i++;
    size_t nl = i;
    while (s[i] == ' ' || s[i] == '\t')
        i++;
    if (nl == 0 || s[i] != ':') {
        char shown[80];
        conf_errors_add(errs, file, et->line, 1, "expected \"name: address, ...\", got \"%s\"",
                        log_escape(shown, sizeof shown, s, strlen(s)));
        return -1;
    }
    if (nl > ADDR_LOCAL_MAX) {
        conf_errors_add(errs, file, et->line, 1, "alias name longer than %d characters",
                        ADDR_LOCAL_MAX);
        return -1;
    }
    char *name = xstrndup(s, nl);
    str_lower(name);
    for (size_t k = 0; k < a->n; k++)
        if (strcmp(a->v[k].name, name) == 0) {
            conf_errors_add(errs, file, et->line, 1, "alias \"%s\" again (first on line %d)", name,
                            a->v[k].line);
            free(name);
            return -1;
        }
    struct alias_entry e = {.name = name, .line = et->line};
    if (parse_targets(file, et->line, &e, s + i + 1, errs) != 0) {
        for (size_t k = 0; k < e.ntargets; k++)
            free(e.targets[k]);
        free(e.targets);
        free(name);
        return -1;
    }
    a->v = xrealloc(a->v, (a->n + 1) * sizeof *a->v);
    a->v[a->n++] = e;
    return 0;
}

struct aliases *aliases_parse(const char *file, const char *text, size_t len,
                              struct conf_errors *errs)
{
    struct aliases *a = xcalloc(1, sizeof *a);
    struct entry_text et = {.line = 0};
    buf_init(&et.b, 0);
    int bad = 0, have = 0, lineno = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lineno++;
        if (l && p[l - 1] == '\r') l--;
        if (memchr(p, '\0', l)) {
            conf_errors_add(errs, file, lineno, 1, "NUL byte in the line");
            bad = 1;
        } else if (l && (p[0] == ' ' || p[0] == '\t')) {
            size_t k = strspn(p, " \t");
            if (k < l && p[k] != '#') { /* a continuation */
                if (!have) {
                    conf_errors_add(errs, file, lineno, 1,
                                    "continuation line (starts with white space) without an "
                                    "alias before it");
                    bad = 1;
                } else {
                    buf_append(&et.b, " ", 1);
                    buf_append(&et.b, p + k, l - k);
                }
            }
        } else if (l == 0 || p[0] == '#') {
            /* an empty line or a comment */
        } else {
            if (have && parse_entry(file, &et, a, errs) != 0) bad = 1;
            buf_reset(&et.b);
            buf_append(&et.b, p, l);
            et.line = lineno;
            have = 1;
        }
        p = nl ? nl + 1 : end;
    }
    if (have && parse_entry(file, &et, a, errs) != 0) bad = 1;
    buf_release(&et.b);
    if (bad) {
        aliases_free(a);
        return NULL;
    }
    return a;
}

struct aliases *aliases_load(const char *file, struct conf_errors *errs)
{
    struct stat st;
    if (stat(file, &st) != 0) {
        conf_errors_add(errs, file, 0, 0, "cannot read the aliases file: %s", strerror(errno));
        return NULL;
    }
    if (st.st_size > ALIASES_FILE_MAX) {
        conf_errors_add(errs, file, 0, 0, "aliases file larger than %d bytes", ALIASES_FILE_MAX);
        return NULL;
    }
    size_t len = 0;
    char *text = file_read(file, &len);
    if (!text) {
        conf_errors_add(errs, file, 0, 0, "cannot read the aliases file: %s", strerror(errno));
        return NULL;
    }
    struct aliases *a = aliases_parse(file, text, len, errs);
    free(text);
    return a;
}

const struct alias_entry *aliases_find(const struct aliases *a, const char *name)
{
    if (!a) return NULL;
    for (size_t i = 0; i < a->n; i++)
        if (str_ieq(a->v[i].name, name)) return &a->v[i];
    return NULL;
}

void aliases_free(struct aliases *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->n; i++) {
        for (size_t k = 0; k < a->v[i].ntargets; k++)
            free(a->v[i].targets[k]);
        free(a->v[i].targets);
        free(a->v[i].name);
    }
    free(a->v);
    free(a);
}
