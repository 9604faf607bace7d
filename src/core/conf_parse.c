/* conf_parse.c: the pure tokenizer and parser of kurier.conf (nginx-like syntax) and
 * the error list. No I/O: includes and key meanings are conf.c's business. */
#include "core/compat.h"

#include <stdarg.h>

#include "core/buf.h"
#include "core/conf.h"

#define CONF_MAX_DEPTH 16 /* nested blocks */
#define CONF_MAX_ARGS 64  /* arguments of one directive */
#define CONF_MAX_ERRORS 200

void conf_errors_add(struct conf_errors *e, const char *file, int line, int col, const char *fmt,
                     ...)
{
    if (!e) return;
    if (e->n == CONF_MAX_ERRORS) {
        /* One last note, then silence: a binary file must not print megabytes. */
        e->msgs = xrealloc(e->msgs, (e->n + 1) * sizeof *e->msgs);
        e->msgs[e->n++] = xasprintf("%s: too many errors, giving up", file ? file : "-");
        return;
    }
    if (e->n > CONF_MAX_ERRORS) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r < 0) str_copy(msg, "(error message could not be formatted)", sizeof msg);
    e->msgs = xrealloc(e->msgs, (e->n + 1) * sizeof *e->msgs);
    if (line > 0)
        e->msgs[e->n++] = xasprintf("%s:%d:%d: %s", file ? file : "-", line, col, msg);
    else
        e->msgs[e->n++] = xasprintf("%s: %s", file ? file : "-", msg);
}

void conf_errors_print(const struct conf_errors *e, FILE *out)
{
    for (size_t i = 0; e && i < e->n; i++)
        fprintf(out, "%s\n", e->msgs[i]);
}

void conf_errors_free(struct conf_errors *e)
{
    if (!e) return;
    for (size_t i = 0; i < e->n; i++)
        free(e->msgs[i]);
    free(e->msgs);
    e->msgs = NULL;
    e->n = 0;
}

void conf_tree_free(struct conf_node *n)
{
    while (n) {
        struct conf_node *next = n->next;
        free(n->name);
        for (size_t i = 0; i < n->nargs; i++)
            free(n->args[i]);
        free(n->args);
        conf_tree_free(n->children);
        free(n);
        n = next;
    }
}

/* --- tokenizer ----------------------------------------------------------- */

enum tok_kind { TK_EOF = 0, TK_WORD, TK_SEMI, TK_OPEN, TK_CLOSE };

struct token {
    enum tok_kind kind;
    char *text; /* TK_WORD only, owned by the token until taken */
    int line, col;
};

struct lexer {
    const char *p, *end;
    const char *file;
    int line, col;
    struct conf_errors *errs;
    struct token peeked;
    int has_peek;
    int eof_reported; /* an unterminated string already explained the end of input */
};

static int lx_getc(struct lexer *lx)
{
    if (lx->p >= lx->end) return -1;
    int c = (unsigned char)*lx->p++;
    if (c == '\n') {
        lx->line++;
        lx->col = 1;
    } else {
        lx->col++;
    }
    return c;
}

static int lx_peekc(const struct lexer *lx)
{
    return lx->p < lx->end ? (unsigned char)*lx->p : -1;
}

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int is_special(int c)
{
    return c == ';' || c == '{' || c == '}';
}

/* Read a quoted string after its opening quote q. Returns the text, or NULL when
 * unterminated (error reported at the opening quote). */
static char *lx_quoted(struct lexer *lx, int q, int line, int col)
{
    struct buf b;
    buf_init(&b, 0);
    for (;;) {
        int c = lx_getc(lx);
        if (c < 0) {
            conf_errors_add(lx->errs, lx->file, line, col, "unterminated %s-quoted string",
                            q == '"' ? "double" : "single");
            lx->eof_reported = 1;
            return buf_take(&b); /* keep what was read: no follow-up errors */
        }
        if (c == q) break;
        if (c == '\\') {
            int e = lx_getc(lx);
            if (e < 0) continue; /* reported as unterminated on the next round */
            switch (e) {
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            default:
                c = e;
                break;
            }
        }
        if (c == 0) {
            conf_errors_add(lx->errs, lx->file, lx->line, lx->col - 1, "NUL byte in quoted string");
            continue;
        }
        char ch = (char)c;
        buf_append(&b, &ch, 1);
    }
    return buf_take(&b);
}

static struct token lx_next(struct lexer *lx)
{
    if (lx->has_peek) {
        lx->has_peek = 0;
        return lx->peeked;
    }
    struct token t = {0};
    for (;;) {
        int c = lx_peekc(lx);
        if (c < 0) {
            t.kind = TK_EOF;
            t.line = lx->line;
            t.col = lx->col;
            return t;
        }
        if (is_space(c)) {
            lx_getc(lx);
            continue;
        }
        if (c == '#') {
            while ((c = lx_peekc(lx)) >= 0 && c != '\n')
                lx_getc(lx);
            continue;
        }
        t.line = lx->line;
        t.col = lx->col;
        if (c == 0) {
            lx_getc(lx);
            conf_errors_add(lx->errs, lx->file, t.line, t.col, "unexpected NUL byte");
            continue;
        }
        if (is_special(c)) {
            lx_getc(lx);
            t.kind = c == ';' ? TK_SEMI : c == '{' ? TK_OPEN : TK_CLOSE;
            return t;
        }
        if (c == '"' || c == '\'') {
            lx_getc(lx);
            t.kind = TK_WORD;
            t.text = lx_quoted(lx, c, t.line, t.col);
            return t;
        }
        const char *start = lx->p;
        while ((c = lx_peekc(lx)) > 0 && !is_space(c) && !is_special(c))
            lx_getc(lx);
        t.kind = TK_WORD;
        t.text = xstrndup(start, (size_t)(lx->p - start));
        return t;
    }
}

static void lx_unget(struct lexer *lx, struct token t)
{
    lx->peeked = t;
    lx->has_peek = 1;
}

static const char *tok_desc(const struct token *t)
{
    switch (t->kind) {
    case TK_SEMI:
        return "\";\"";
    case TK_OPEN:
        return "\"{\"";
    case TK_CLOSE:
        return "\"}\"";
    case TK_EOF:
        return "end of file";
    default:
        return "word";
    }
}

/* --- parser -------------------------------------------------------------- */

/* Skip a block whose "{" was just read, with its nested blocks. */
static void skip_block(struct lexer *lx)
{
    int depth = 1;
    while (depth > 0) {
        struct token t = lx_next(lx);
        if (t.kind == TK_EOF) return;
        if (t.kind == TK_OPEN) depth++;
        if (t.kind == TK_CLOSE) depth--;
        free(t.text);
    }
}

static struct conf_node *parse_list(struct lexer *lx, int depth, const struct token *open);

/* Parse one directive whose name token is t (taken). Returns the node or NULL. */
static struct conf_node *parse_directive(struct lexer *lx, struct token t, int depth)
{
    struct conf_node *n = xcalloc(1, sizeof *n);
    n->name = t.text;
    n->file = lx->file;
    n->line = t.line;
    n->col = t.col;
    int too_many = 0;
    for (;;) {
        struct token a = lx_next(lx);
        if (a.kind == TK_WORD) {
            if (n->nargs >= CONF_MAX_ARGS) {
                if (!too_many)
                    conf_errors_add(lx->errs, lx->file, a.line, a.col,
                                    "too many arguments for \"%s\" (at most %d)", n->name,
                                    CONF_MAX_ARGS);
                too_many = 1;
                free(a.text);
                continue;
            }
            n->args = xrealloc(n->args, (n->nargs + 1) * sizeof *n->args);
            n->args[n->nargs++] = a.text;
            continue;
        }
        if (a.kind == TK_SEMI) return n;
        if (a.kind == TK_OPEN) {
            if (depth + 1 >= CONF_MAX_DEPTH) {
                conf_errors_add(lx->errs, lx->file, a.line, a.col,
                                "blocks nested too deeply (at most %d levels)", CONF_MAX_DEPTH);
                skip_block(lx);
                return n;
            }
            /* An empty block "name { }" reads like "name;" (no children). */
            n->children = parse_list(lx, depth + 1, &a);
            return n;
        }
        /* "}" or end of file: the ";" is missing. After an unterminated string the
         * directive is dropped: its last value is no value, and one error is enough. */
        if (a.kind == TK_EOF && lx->eof_reported) {
            conf_tree_free(n);
            return NULL;
        }
        conf_errors_add(lx->errs, lx->file, n->line, n->col,
                        "missing \";\" after \"%s\" (found %s)", n->name, tok_desc(&a));
        if (a.kind == TK_CLOSE) lx_unget(lx, a);
        return n;
    }
}

/* Parse directives until end of file (open == NULL) or the "}" closing open. */
static struct conf_node *parse_list(struct lexer *lx, int depth, const struct token *open)
{
    struct conf_node *head = NULL, **tail = &head;
    for (;;) {
        struct token t = lx_next(lx);
        switch (t.kind) {
        case TK_EOF:
            if (open && !lx->eof_reported)
                conf_errors_add(lx->errs, lx->file, open->line, open->col,
                                "unbalanced \"{\": block is not closed before end of file");
            return head;
        case TK_CLOSE:
            if (open) return head;
            conf_errors_add(lx->errs, lx->file, t.line, t.col, "unexpected \"}\"");
            break;
        case TK_SEMI:
            conf_errors_add(lx->errs, lx->file, t.line, t.col, "unexpected \";\"");
            break;
        case TK_OPEN:
            conf_errors_add(lx->errs, lx->file, t.line, t.col,
                            "unexpected \"{\" (a block needs a name)");
            skip_block(lx);
            break;
        case TK_WORD: {
            struct conf_node *n = parse_directive(lx, t, depth);
            if (n) {
                *tail = n;
                tail = &n->next;
            }
            break;
        }
        }
    }
}

struct conf_node *conf_parse(const char *text, size_t len, const char *file,
                             struct conf_errors *errs)
{
    struct lexer lx = {
        .p = text ? text : "",
        .end = text ? text + len : "",
        .file = file ? file : "-",
        .line = 1,
        .col = 1,
        .errs = errs,
    };
    return parse_list(&lx, 0, NULL);
}
