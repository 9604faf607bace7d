/* conf.c: what the key table (conf_keys.c) drives: conf_load() (with include),
 * blocks, defaults, suggestions. The values of each key type are in conf_value.c,
 * printing the config (conf_dump(), the reference in Markdown and roff) in
 * conf_doc.c, network lists in conf_net.c, tokenizing and parsing in conf_parse.c. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <glob.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/addr.h"
#include "core/aliases.h"
#include "core/batv.h"
#include "core/srs.h"
#include "core/buf.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/util.h"

#define INCLUDE_MAX_DEPTH 8

/* --- the key table --------------------------------------------------------- */

#include "core/conf_keys.h"

/* --- suggestions ------------------------------------------------------------ */

static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int c = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < c) c = prev[j] + 1;
            if (cur[j - 1] + 1 < c) c = cur[j - 1] + 1;
            cur[j] = c;
        }
        memcpy(prev, cur, (lb + 1) * sizeof *prev);
    }
    return prev[lb];
}

static void consider(const char *cand, const char *name, const char **best, int *bestd)
{
    int d = edit_distance(name, cand);
    int limit = strlen(name) <= 4 ? 1 : 2;
    if (d <= limit && d < *bestd) {
        *bestd = d;
        *best = cand;
    }
}

/* " (did you mean "x"?)" into dst, or "" when nothing is close. */
static void suggest(char *dst, size_t size, enum kblock blk, const char *name)
{
    const char *best = NULL;
    int bestd = 99;
    for (size_t i = 0; i < conf_nkeys; i++)
        if (conf_keys[i].block == blk) consider(conf_keys[i].name, name, &best, &bestd);
    if (blk == KB_MAIN) {
        for (int b = 1; b < KB_COUNT; b++)
            consider(conf_block_names[b], name, &best, &bestd);
        consider("include", name, &best, &bestd);
    }
    if (best) {
        snprintf(dst, size, " (did you mean \"%s\"?)", best);
        return;
    }
    enum kblock where = KB_MAIN;
    for (size_t i = 0; i < conf_nkeys; i++)
        if (conf_keys[i].block != blk) {
            const char *old = best;
            consider(conf_keys[i].name, name, &best, &bestd);
            if (best != old) where = conf_keys[i].block;
        }
    if (best && where == KB_MAIN)
        snprintf(dst, size, " (did you mean \"%s\" at top level?)", best);
    else if (best)
        snprintf(dst, size, " (did you mean \"%s\" in block \"%s\"?)", best,
                 conf_block_names[where]);
    else
        dst[0] = '\0';
}

/* --- applying the tree -------------------------------------------------------- */

struct loader {
    struct conf_errors *errs;
    char **files; /* names the nodes borrow; freed when loading ends */
    size_t nfiles;
    char **stack; /* real paths of the files being read, for loop detection */
    size_t nstack;
};

static const char *where_name(enum kblock b, char *dst, size_t size)
{
    if (b == KB_MAIN)
        str_copy(dst, "at top level", size);
    else
        snprintf(dst, size, "in block \"%s\"", conf_block_names[b]);
    return dst;
}

static const struct conf_key *key_find(enum kblock blk, const char *name)
{
    for (size_t i = 0; i < conf_nkeys; i++)
        if (conf_keys[i].block == blk && strcmp(conf_keys[i].name, name) == 0) return &conf_keys[i];
    return NULL;
}

static int block_find(const char *name)
{
    for (int b = 1; b < KB_COUNT; b++)
        if (strcmp(conf_block_names[b], name) == 0) return b;
    return -1;
}

static void apply_defaults(enum kblock blk, void *base)
{
    char why[256];
    for (size_t i = 0; i < conf_nkeys; i++)
        if (conf_keys[i].block == blk && conf_keys[i].def)
            conf_value_set(&conf_keys[i], base, conf_keys[i].def, why, sizeof why);
}

/* Apply one key node; seen[] holds the node that first set each key. */
static void apply_key(struct loader *L, const struct conf_key *k, const struct conf_node *n,
                      void *base, const struct conf_node **seen)
{
    size_t idx = (size_t)(k - conf_keys);
    if (n->children)
        conf_errors_add(L->errs, n->file, n->line, n->col, "key \"%s\" takes no block", n->name);
    if (seen[idx] && k->type != KT_NETS && k->type != KT_DNSBL && k->type != KT_PAIRS &&
        k->type != KT_TRAPS && k->type != KT_ADDRS) {
        conf_errors_add(L->errs, n->file, n->line, n->col,
                        "duplicate key \"%s\" (first set at %s:%d:%d)", n->name, seen[idx]->file,
                        seen[idx]->line, seen[idx]->col);
        return;
    }
    seen[idx] = n;
    if (n->nargs == 0) {
        conf_errors_add(L->errs, n->file, n->line, n->col, "missing argument for \"%s\"", n->name);
        return;
    }
    if (n->nargs > 1 && k->type != KT_NETS && k->type != KT_HOSTLIST && k->type != KT_TRAPS &&
        k->type != KT_ADDRS && k->type != KT_WORDS && k->type != KT_DNSBL && k->type != KT_PAIRS) {
        /* "hostname x\nuser y;" reads as three arguments: name the likely cause. */
        const char *next_key = NULL;
        for (size_t i = 1; i < n->nargs && !next_key; i++)
            for (size_t j = 0; j < conf_nkeys && !next_key; j++)
                if (strcmp(n->args[i], conf_keys[j].name) == 0 || block_find(n->args[i]) > 0)
                    next_key = n->args[i];
        if (next_key)
            conf_errors_add(L->errs, n->file, n->line, n->col,
                            "too many arguments for \"%s\" (expected 1, got %zu; is a \";\" "
                            "missing before \"%s\"?)",
                            n->name, n->nargs, next_key);
        else
            conf_errors_add(L->errs, n->file, n->line, n->col,
                            "too many arguments for \"%s\" (expected 1, got %zu)", n->name,
                            n->nargs);
        return;
    }
    if (k->type == KT_WORDS) { /* the line replaces the default */
        char **dst = conf_field(base, k);
        free(*dst);
        *dst = NULL;
    }
    if (k->type == KT_PAIRS) {
        if (n->nargs % 2) {
            conf_errors_add(L->errs, n->file, n->line, n->col,
                            "\"%s\" takes pairs of arguments: ZONE URL", n->name);
            return;
        }
        for (size_t i = 0; i + 1 < n->nargs; i += 2) {
            char why[512];
            char *pair = xasprintf("%s %s", n->args[i], n->args[i + 1]);
            if (strchr(n->args[i], ' ') || conf_value_set(k, base, pair, why, sizeof why) != 0)
                conf_errors_add(L->errs, n->file, n->line, n->col, "%s",
                                strchr(n->args[i], ' ') ? "a zone has no spaces" : why);
            free(pair);
        }
        return;
    }
    for (size_t i = 0; i < n->nargs; i++) {
        char why[512];
        if (k->type == KT_WORDS && strchr(n->args[i], ' ')) {
            conf_errors_add(L->errs, n->file, n->line, n->col,
                            "invalid value \"%s\" for \"%s\": give each name as an argument",
                            n->args[i], k->name);
            continue;
        }
        if (conf_value_set(k, base, n->args[i], why, sizeof why) != 0)
            conf_errors_add(L->errs, n->file, n->line, n->col, "%s", why);
    }
}

/* A name that is no key of blk: say where it belongs, or what was meant. */
static void unknown_key(struct loader *L, enum kblock blk, const struct conf_node *n)
{
    char here[64], there[64];
    int b = block_find(n->name);
    if (b > 0) {
        conf_errors_add(L->errs, n->file, n->line, n->col, "block \"%s\" is not allowed %s",
                        n->name, where_name(blk, here, sizeof here));
        return;
    }
    for (size_t i = 0; i < conf_nkeys; i++)
        if (strcmp(conf_keys[i].name, n->name) == 0) {
            conf_errors_add(L->errs, n->file, n->line, n->col, "key \"%s\" belongs %s, not %s",
                            n->name, where_name(conf_keys[i].block, there, sizeof there),
                            where_name(blk, here, sizeof here));
            return;
        }
    char hint[128];
    suggest(hint, sizeof hint, blk, n->name);
    if (blk == KB_MAIN)
        conf_errors_add(L->errs, n->file, n->line, n->col, "unknown key \"%s\"%s", n->name, hint);
    else
        conf_errors_add(L->errs, n->file, n->line, n->col, "unknown key \"%s\" in block \"%s\"%s",
                        n->name, conf_block_names[blk], hint);
}

/* Apply the conf_keys of list to base. 1 when that added no error, 0 otherwise. */
static int apply_block(struct loader *L, enum kblock blk, const struct conf_node *list, void *base,
                       const struct conf_node **seen)
{
    size_t nerr = L->errs->n;
    for (const struct conf_node *n = list; n; n = n->next) {
        const struct conf_key *k = key_find(blk, n->name);
        if (k)
            apply_key(L, k, n, base, seen);
        else
            unknown_key(L, blk, n);
    }
    return L->errs->n == nerr;
}

/* A block that takes exactly one argument ("listen ADDRESS { ... }"): 1 when it
 * has one, else 0 with the error added. */
static int one_arg(struct loader *L, const struct conf_node *n, const char *expected)
{
    if (n->nargs == 1) return 1;
    conf_errors_add(L->errs, n->file, n->line, n->col, "%s for \"%s\" (expected %s)",
                    n->nargs ? "too many arguments" : "missing argument", n->name, expected);
    return 0;
}

/* "127.0.0.1:2525", "[::1]:25", "*:25", "25" into host and port. 0, or -1 with why. */
static int listen_addr_parse(const char *s, struct conf_listen *l, char *why, size_t whylen)
{
    char host[128] = "";
    const char *port;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof host) {
            snprintf(why, whylen, "expected [IPV6]:PORT");
            return -1;
        }
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = '\0';
        port = rb + 2;
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1) {
            snprintf(why, whylen, "\"%s\" is not an IPv6 address", host);
            return -1;
        }
        inet_ntop(AF_INET6, &a6, host, sizeof host);
    } else if (strchr(s, ':')) {
        const char *colon = strchr(s, ':');
        if (strchr(colon + 1, ':')) {
            snprintf(why, whylen, "IPv6 addresses need brackets, as in [::1]:25");
            return -1;
        }
        if ((size_t)(colon - s) >= sizeof host) {
            snprintf(why, whylen, "address too long");
            return -1;
        }
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
        if (strcmp(host, "*") == 0 || host[0] == '\0') {
            host[0] = '\0';
        } else {
            struct in_addr a4;
            if (inet_pton(AF_INET, host, &a4) != 1) {
                snprintf(why, whylen,
                         "\"%s\" is not an IP address (use 192.0.2.1:25, [::1]:25 or *:25)", host);
                return -1;
            }
            inet_ntop(AF_INET, &a4, host, sizeof host);
        }
    } else {
        port = s;
    }
    if (!*port || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5 ||
        atoi(port) < 1 || atoi(port) > 65535) {
        snprintf(why, whylen, "port must be a number from 1 to 65535");
        return -1;
    }
    str_copy(l->host, host, sizeof l->host);
    l->port = atoi(port);
    return 0;
}

static void listen_free(struct conf_listen *l)
{
    if (!l) return;
    free(l->address);
    free(l->tls_cert);
    free(l->tls_key);
    free(l->sni_certs);
    free(l->checks);
    free(l->dnsbl_sites);
    free(l->rhsbl_sites);
    free(l->policy_service);
    free(l);
}

/* policy_service: a valid address, and the check "policy" that uses it is on. */
static int listen_policy_ok(struct loader *L, const struct conf_listen *l,
                            const struct conf_node *const *seen)
{
    const struct conf_node *n = seen[key_find(KB_LISTEN, "policy_service") - conf_keys];
    struct sockaddr_storage sa;
    socklen_t salen;
    char why[256];
    if (conf_policy_service_parse(l->policy_service, &sa, &salen, why, sizeof why) != 0) {
        conf_errors_add(L->errs, n->file, n->line, n->col, "invalid policy_service \"%s\": %s",
                        l->policy_service, why);
        return 0;
    }
    const char *w = l->checks ? strstr(l->checks, "policy") : NULL;
    if (!w || (w != l->checks && w[-1] != ' ') || (w[6] && w[6] != ' ')) {
        conf_errors_add(L->errs, n->file, n->line, n->col,
                        "listen \"%s\": policy_service needs \"policy\" in checks (e.g. "
                        "\"checks dnsbl rhsbl policy;\")",
                        l->address);
        return 0;
    }
    return 1;
}

static void apply_listen(struct loader *L, struct kconf *c, const struct conf_node *n)
{
    const struct conf_node *seen[CONF_KEYS_MAX] = {0};
    struct conf_listen *l = xcalloc(1, sizeof *l);
    apply_defaults(KB_LISTEN, l);
    int ok = one_arg(L, n, "ADDRESS");
    if (ok) {
        char why[256];
        l->address = xstrdup(n->args[0]);
        if (listen_addr_parse(n->args[0], l, why, sizeof why) != 0) {
            conf_errors_add(L->errs, n->file, n->line, n->col, "invalid listen address \"%s\": %s",
                            n->args[0], why);
            ok = 0;
        }
    }
    if (!apply_block(L, KB_LISTEN, n->children, l, seen)) ok = 0;
    if (l->role == LISTEN_SUBMISSION) {
        if (!seen[key_find(KB_LISTEN, "auth") - conf_keys]) l->auth = 1;
        if (!seen[key_find(KB_LISTEN, "require_auth") - conf_keys]) l->require_auth = 1;
    }
    if (ok && l->tls != LISTEN_TLS_NONE && (!l->tls_cert || !l->tls_key)) {
        conf_errors_add(L->errs, n->file, n->line, n->col,
                        "listen \"%s\": tls %s needs both \"cert\" and \"key\"", l->address,
                        l->tls == LISTEN_TLS_STARTTLS ? "starttls" : "implicit");
        ok = 0;
    }
    if (ok && l->role == LISTEN_SUBMISSION && l->pregreet_wait > 0) {
        conf_errors_add(L->errs, n->file, n->line, n->col,
                        "listen \"%s\": pregreet_wait is for role mx listeners (submission "
                        "clients are never paused)",
                        l->address);
        ok = 0;
    }
    if (ok && l->require_auth && !l->auth) {
        conf_errors_add(L->errs, n->file, n->line, n->col,
                        "listen \"%s\": \"require_auth on\" needs \"auth on\"", l->address);
        ok = 0;
    }
    if (ok && l->policy_service && !listen_policy_ok(L, l, seen)) ok = 0;
    struct conf_listen **tail = &c->listeners;
    for (; *tail; tail = &(*tail)->next)
        if (ok && (*tail)->port == l->port && strcmp((*tail)->host, l->host) == 0) {
            conf_errors_add(L->errs, n->file, n->line, n->col,
                            "duplicate listen address \"%s\" (same as \"%s\")", l->address,
                            (*tail)->address);
            ok = 0;
        }
    if (ok)
        *tail = l;
    else
        listen_free(l);
}

static void transport_free(struct conf_transport *t)
{
    if (!t) return;
    free(t->domain);
    free(t->relay);
    free(t);
}

static void apply_transport(struct loader *L, struct kconf *c, const struct conf_node *n)
{
    const struct conf_node *seen[CONF_KEYS_MAX] = {0};
    struct conf_transport *t = xcalloc(1, sizeof *t);
    apply_defaults(KB_TRANSPORT, t);
    const char *d = n->nargs == 1 ? n->args[0] : "";
    const char *name = d[0] == '.' ? d + 1 : d;
    int ok = one_arg(L, n, "DOMAIN");
    if (ok && (!*name || strlen(name) > 253 ||
               strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") !=
                   strlen(name))) {
        conf_errors_add(L->errs, n->file, n->line, n->col,
                        "invalid transport domain \"%s\": expected example.org, or .example.org "
                        "for its subdomains",
                        d);
        ok = 0;
    } else if (ok) {
        t->domain = xstrdup(d);
        str_lower(t->domain);
    }
    if (!apply_block(L, KB_TRANSPORT, n->children, t, seen)) ok = 0;
    if (ok && t->relay_domain && !t->relay) {
        conf_errors_add(L->errs, n->file, n->line, n->col,
                        "transport \"%s\": relay_domain needs relay (the domain's own server; "
                        "its MX is us)",
                        t->domain);
        ok = 0;
    }
    struct conf_transport **tail = &c->transports;
    for (; *tail; tail = &(*tail)->next)
        if (ok && strcmp((*tail)->domain, t->domain) == 0) {
            conf_errors_add(L->errs, n->file, n->line, n->col, "duplicate transport \"%s\"",
                            t->domain);
            ok = 0;
        }
    if (ok)
        *tail = t;
    else
        transport_free(t);
}

/* monitor { }: at most MONITOR_MAX_ADDRESSES addresses in all, a webhook URL we can
 * reach. */
#define MONITOR_MAX_ADDRESSES 256
static void check_monitor(struct loader *L, const struct kconf *c, const struct conf_node *n)
{
    unsigned long long hosts = 0;
    for (size_t i = 0; i < c->nmon_addresses; i++) {
        const struct conf_net *net = &c->mon_addresses[i];
        int bits = (net->family == AF_INET ? 32 : 128) - net->prefix;
        hosts += bits > 16 ? 1ULL << 17 : 1ULL << bits;
    }
    if (hosts > MONITOR_MAX_ADDRESSES)
        conf_errors_add(L->errs, n->file, n->line, n->col,
                        "monitor: \"addresses\" covers more than %d addresses",
                        MONITOR_MAX_ADDRESSES);
    if (c->mon_webhook) {
        char host[256], path[1100], why[300];
        int port, tls;
        if (conf_url_parse(c->mon_webhook, &tls, host, sizeof host, &port, path, sizeof path, why,
                           sizeof why) != 0)
            conf_errors_add(L->errs, n->file, n->line, n->col, "monitor: invalid webhook: %s", why);
    }
}

static void apply_tree(struct loader *L, struct kconf *c, const struct conf_node *tree)
{
    const struct conf_node *seen[CONF_KEYS_MAX] = {0};
    for (const struct conf_node *n = tree; n; n = n->next) {
        int b = block_find(n->name);
        if (strcmp(n->name, "include") == 0) {
            /* conf_load() expands includes first; conf_apply() does no I/O. */
            conf_errors_add(L->errs, n->file, n->line, n->col,
                            "\"include\" is not followed here (no file access)");
        } else if (b == KB_LISTEN) {
            apply_listen(L, c, n);
        } else if (b == KB_TRANSPORT) {
            apply_transport(L, c, n);
        } else if (strcmp(n->name, "egress") == 0 && n->nargs >= 1 &&
                   strcmp(n->args[0], "pool") == 0) {
            conf_egress_apply(c, n, L->errs);
        } else if (b > 0) {
            if (n->nargs)
                conf_errors_add(L->errs, n->file, n->line, n->col,
                                "block \"%s\" takes no arguments (write %s { ... })", n->name,
                                n->name);
            apply_block(L, (enum kblock)b, n->children, c, seen);
            if (b == KB_MONITOR) check_monitor(L, c, n);
        } else {
            const struct conf_key *k = key_find(KB_MAIN, n->name);
            if (k)
                apply_key(L, k, n, c, seen);
            else
                unknown_key(L, KB_MAIN, n);
        }
    }
}

/* --- reading files and includes ------------------------------------------------ */

static struct conf_node *load_file(struct loader *L, const char *path, const struct conf_node *from,
                                   int depth);

static int has_glob_chars(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

/* Replace include nodes in list (read from a file in dir) by the files they name. */
static struct conf_node *expand(struct loader *L, struct conf_node *list, const char *dir,
                                int depth)
{
    struct conf_node *head = NULL, **tail = &head;
    while (list) {
        struct conf_node *n = list;
        list = n->next;
        n->next = NULL;
        if (strcmp(n->name, "include") != 0) {
            if (n->children) n->children = expand(L, n->children, dir, depth);
            *tail = n;
            tail = &n->next;
            continue;
        }
        if (n->nargs != 1 || n->children) {
            conf_errors_add(L->errs, n->file, n->line, n->col,
                            "\"include\" takes one file name or pattern and no block");
        } else if (depth + 1 >= INCLUDE_MAX_DEPTH) {
            conf_errors_add(L->errs, n->file, n->line, n->col,
                            "includes nested too deeply (at most %d levels)", INCLUDE_MAX_DEPTH);
        } else {
            const char *arg = n->args[0];
            char *pattern = arg[0] == '/' || strcmp(dir, ".") == 0 ? xstrdup(arg)
                                                                   : xasprintf("%s/%s", dir, arg);
            glob_t g;
            int r = glob(pattern, 0, NULL, &g);
            if (r == GLOB_NOMATCH && !has_glob_chars(arg)) {
                conf_errors_add(L->errs, n->file, n->line, n->col,
                                "cannot read included file \"%s\": %s", pattern, strerror(ENOENT));
            } else if (r != 0 && r != GLOB_NOMATCH) {
                conf_errors_add(L->errs, n->file, n->line, n->col,
                                "cannot expand include pattern \"%s\"", pattern);
            } else if (r == 0) {
                for (size_t i = 0; i < g.gl_pathc; i++) {
                    struct conf_node *sub = load_file(L, g.gl_pathv[i], n, depth + 1);
                    *tail = sub;
                    while (*tail)
                        tail = &(*tail)->next;
                }
            }
            if (r == 0 || r == GLOB_NOMATCH) globfree(&g);
            free(pattern);
        }
        conf_tree_free(n);
    }
    return head;
}

static struct conf_node *load_file(struct loader *L, const char *path, const struct conf_node *from,
                                   int depth)
{
    char *name = xstrdup(path);
    L->files = xrealloc(L->files, (L->nfiles + 1) * sizeof *L->files);
    L->files[L->nfiles++] = name;

    char *real = realpath(path, NULL);
    /* After kurierd's privilege drop a folder above may be closed (/root, mode 0700)
     * while the file is reachable from the working folder: compare names then. */
    if (!real && errno == EACCES) real = xstrdup(path);
    if (real) {
        for (size_t i = 0; i < L->nstack; i++)
            if (strcmp(L->stack[i], real) == 0) {
                conf_errors_add(L->errs, from ? from->file : name, from ? from->line : 0,
                                from ? from->col : 0, "include loop: \"%s\" includes itself", name);
                free(real);
                return NULL;
            }
    }
    size_t len = 0;
    char *text = real ? file_read(path, &len) : NULL;
    if (!text) {
        const char *err = strerror(errno);
        if (from)
            conf_errors_add(L->errs, from->file, from->line, from->col,
                            "cannot read included file \"%s\": %s", name, err);
        else
            conf_errors_add(L->errs, name, 0, 0, "cannot read: %s", err);
        free(real);
        return NULL;
    }
    struct conf_node *tree = conf_parse(text, len, name, L->errs);
    free(text);

    L->stack = xrealloc(L->stack, (L->nstack + 1) * sizeof *L->stack);
    L->stack[L->nstack++] = real;
    char *slash = strrchr(name, '/');
    char *dir = slash ? xstrndup(name, slash == name ? 1 : (size_t)(slash - name)) : xstrdup(".");
    tree = expand(L, tree, dir, depth);
    free(dir);
    free(L->stack[--L->nstack]);
    return tree;
}

/* --- public API ------------------------------------------------------------------ */

static void derive(char **dst, const char *state_dir, const char *leaf)
{
    if (!*dst) *dst = xasprintf("%s/%s", state_dir, leaf);
}

static struct kconf *kconf_new(const char *file)
{
    struct kconf *c = xcalloc(1, sizeof *c);
    atomic_init(&c->refs, 1);
    c->file = xstrdup(file ? file : "-");
    apply_defaults(KB_MAIN, c);
    apply_defaults(KB_LOG, c);
    apply_defaults(KB_LIMITS, c);
    apply_defaults(KB_QUEUE, c);
    apply_defaults(KB_RELAY, c);
    apply_defaults(KB_AUTH, c);
    apply_defaults(KB_OUTBOUND, c);
    apply_defaults(KB_GREYLIST, c);
    apply_defaults(KB_BATV, c);
    apply_defaults(KB_MONITOR, c);
    apply_defaults(KB_VERIFY, c);
    apply_defaults(KB_DKIM, c);
    apply_defaults(KB_ABUSE, c);
    apply_defaults(KB_COMPLAINTS, c);
    apply_defaults(KB_SRS, c);
    apply_defaults(KB_STATE, c);
    return c;
}

/* Fill computed defaults; return c, or free it and return NULL when errors came. */
static struct kconf *kconf_finish(struct kconf *c, struct conf_errors *errs, size_t nerr)
{
    if (!c->hostname) {
        char h[256];
        if (gethostname(h, sizeof h) != 0) str_copy(h, "localhost", sizeof h);
        h[sizeof h - 1] = '\0';
        c->hostname = xstrdup(h);
    }
    if (!c->postmaster) c->postmaster = xasprintf("root@%s", c->hostname);
    derive(&c->spool_dir, c->state_dir, "spool");
    derive(&c->directory, c->state_dir, "kurier.db");
    derive(&c->control_socket, c->state_dir, "control.sock");
    derive(&c->dkim_key_dir, c->state_dir, "dkim");
    if (c->dir_backend == CONF_DIR_POSTGRES && (!c->dir_conninfo || !*c->dir_conninfo))
        conf_errors_add(errs, c->file, 0, 0,
                        "\"directory_backend postgres\" needs \"directory_conninfo\" (the "
                        "libpq connection string, docs/postgres.md)");
    if (c->batv_domains && strchr(c->batv_domains, ':'))
        conf_errors_add(errs, c->file, 0, 0,
                        "batv: \"domains\" takes domain names, without a port");
    if (c->batv_domains && !c->batv_key_file)
        conf_errors_add(errs, c->file, 0, 0,
                        "batv: \"domains\" needs \"key_file\" (the secrets tags are signed with)");
    if (c->srs_domain && !c->srs_secret_file)
        conf_errors_add(errs, c->file, 0, 0,
                        "srs: \"domain\" needs \"secret_file\" (the secrets addresses are signed "
                        "with)");
    if (errs->n != nerr) {
        conf_free(c);
        return NULL;
    }
    return c;
}

struct kconf *conf_apply(const struct conf_node *tree, const char *file, struct conf_errors *errs)
{
    struct conf_errors local = {0};
    if (!errs) errs = &local;
    size_t nerr = errs->n;
    struct loader L = {.errs = errs};
    struct kconf *c = kconf_new(file);
    apply_tree(&L, c, tree);
    conf_egress_check(c, errs);
    c = kconf_finish(c, errs, nerr);
    conf_errors_free(&local);
    return c;
}

static int read_secrets; /* conf_read_secrets() */

/* A file of secrets (what: "BATV key file", "SRS secret file"): only the daemon's user
 * (and its group) may read it. Its text (len bytes; explicit_bzero() and free() it),
 * or NULL with the error added. */
static char *read_secret_file(const char *path, const char *what, size_t *len,
                              struct conf_errors *errs)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        conf_errors_add(errs, path, 0, 0, "cannot read %s: %s", what, strerror(errno));
        return NULL;
    }
    if (st.st_mode & 0027) {
        conf_errors_add(errs, path, 0, 0, "%s is %s (mode %04o): chmod 600 (or 640) it", what,
                        st.st_mode & 0007 ? "readable or writable by others" : "group-writable",
                        (unsigned)(st.st_mode & 07777));
        return NULL;
    }
    char *text = file_read(path, len);
    if (!text) conf_errors_add(errs, path, 0, 0, "cannot read %s: %s", what, strerror(errno));
    return text;
}

/* batv { key_file } */
static void load_batv_keys(struct kconf *c, struct conf_errors *errs)
{
    const char *path = c->batv_key_file;
    size_t len = 0;
    char *text = read_secret_file(path, "BATV key file", &len, errs);
    if (!text) return;
    struct batv_key *keys = xcalloc(BATV_KEYS_MAX, sizeof *keys);
    size_t n = 0;
    int line = 0;
    char why[256];
    if (batv_keys_parse(text, len, keys, &n, &line, why, sizeof why) != 0) {
        conf_errors_add(errs, path, line, 0, "%s", why);
        explicit_bzero(keys, BATV_KEYS_MAX * sizeof *keys);
        free(keys);
    } else {
        c->batv_keys = keys;
        c->nbatv_keys = n;
    }
    explicit_bzero(text, len);
    free(text);
}

/* srs { secret_file } */
static void load_srs_secrets(struct kconf *c, struct conf_errors *errs)
{
    const char *path = c->srs_secret_file;
    size_t len = 0;
    char *text = read_secret_file(path, "SRS secret file", &len, errs);
    if (!text) return;
    struct srs_secret *s = xcalloc(SRS_SECRETS_MAX, sizeof *s);
    size_t n = 0;
    int line = 0;
    char why[256];
    if (srs_secrets_parse(text, len, s, &n, &line, why, sizeof why) != 0) {
        conf_errors_add(errs, path, line, 0, "%s", why);
        explicit_bzero(s, SRS_SECRETS_MAX * sizeof *s);
        free(s);
    } else {
        c->srs_secrets = s;
        c->nsrs_secrets = n;
    }
    explicit_bzero(text, len);
    free(text);
}

/* state { password_file, sentinel_password_file }: the first line of the file, into a
 * new string (NULL with the error added). */
static char *load_state_password(const char *path, const char *what, struct conf_errors *errs)
{
    size_t len = 0;
    char *text = read_secret_file(path, what, &len, errs);
    if (!text) return NULL;
    size_t n = strcspn(text, "\r\n");
    char *pw = n ? xstrndup(text, n) : NULL;
    if (!pw) conf_errors_add(errs, path, 1, 0, "%s is empty", what);
    explicit_bzero(text, len);
    free(text);
    return pw;
}

struct kconf *conf_load(const char *file, struct conf_errors *errs)
{
    struct conf_errors local = {0};
    if (!errs) errs = &local;
    size_t nerr = errs->n;
    struct loader L = {.errs = errs};
    struct kconf *c = kconf_new(file);

    struct conf_node *tree = load_file(&L, file, NULL, 0);
    apply_tree(&L, c, tree);
    conf_tree_free(tree);
    for (size_t i = 0; i < L.nfiles; i++)
        free(L.files[i]);
    free(L.files);
    free(L.stack);
    if (read_secrets && c->batv_key_file && errs->n == nerr) load_batv_keys(c, errs);
    if (read_secrets && c->srs_secret_file && errs->n == nerr) load_srs_secrets(c, errs);
    if (read_secrets && c->state_password_file && errs->n == nerr)
        c->state_password =
            load_state_password(c->state_password_file, "Redis password file", errs);
    if (read_secrets && c->state_sentinel_password_file && errs->n == nerr)
        c->state_sentinel_password =
            load_state_password(c->state_sentinel_password_file, "Sentinel password file", errs);
    if (read_secrets && c->aliases_file && errs->n == nerr)
        c->aliases = aliases_load(c->aliases_file, errs);

    conf_egress_check(c, errs);
    c = kconf_finish(c, errs, nerr);
    conf_errors_free(&local);
    return c;
}

void conf_read_secrets(int on)
{
    read_secrets = on;
}

static void map_paths(enum kblock blk, void *base, char *(*fn)(const char *, void *), void *arg)
{
    for (size_t i = 0; i < conf_nkeys; i++) {
        const struct conf_key *k = &conf_keys[i];
        if (k->block != blk || k->type != KT_PATH) continue;
        char **p = conf_field(base, k);
        char *nv = *p ? fn(*p, arg) : NULL;
        if (!nv) continue;
        free(*p);
        *p = nv;
    }
}

void conf_map_paths(struct kconf *c, char *(*fn)(const char *path, void *arg), void *arg)
{
    for (enum kblock b = KB_MAIN; b < KB_LISTEN; b++)
        map_paths(b, c, fn, arg);
    for (struct conf_listen *l = c->listeners; l; l = l->next)
        map_paths(KB_LISTEN, l, fn, arg);
    for (struct conf_transport *t = c->transports; t; t = t->next)
        map_paths(KB_TRANSPORT, t, fn, arg);
}

static void kconf_destroy(struct kconf *c)
{
    char **strs[] = {&c->file,        &c->hostname,           &c->user,      &c->state_dir,
                     &c->spool_dir,   &c->maildir_root,       &c->directory, &c->control_socket,
                     &c->locale,      &c->log_target,         &c->log_name,  &c->log_debug,
                     &c->resolver,    &c->relay_host,         &c->out_helo,  &c->postmaster,
                     &c->out_ca_file, &c->auth_dovecot_socket};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        free(*strs[i]);
    free(c->log_file);
    free(c->dir_conninfo);
    free(c->metrics_listen);
    free(c->reply_rules);
    free(c->dkim_key_dir);
    free(c->dkim_signing_domain);
    free(c->rbl_lists);
    free(c->rbl_domain_lists);
    free(c->trusted);
    free(c->grey_allow_nets);
    free(c->grey_allow_domains);
    free(c->batv_domains);
    free(c->batv_key_file);
    free(c->aliases_file);
    free(c->local_admin);
    aliases_free(c->aliases);
    if (c->batv_keys) explicit_bzero(c->batv_keys, c->nbatv_keys * sizeof *c->batv_keys);
    free(c->batv_keys);
    free(c->srs_domain);
    free(c->srs_secret_file);
    if (c->srs_secrets) explicit_bzero(c->srs_secrets, c->nsrs_secrets * sizeof *c->srs_secrets);
    free(c->srs_secrets);
    free(c->state_servers);
    free(c->state_sentinel);
    free(c->state_prefix);
    free(c->state_password_file);
    free(c->state_sentinel_password_file);
    if (c->state_password) explicit_bzero(c->state_password, strlen(c->state_password));
    free(c->state_password);
    if (c->state_sentinel_password)
        explicit_bzero(c->state_sentinel_password, strlen(c->state_sentinel_password));
    free(c->state_sentinel_password);
    free(c->mon_addresses);
    free(c->mon_lists);
    free(c->mon_delist);
    free(c->mon_mail_to);
    free(c->mon_webhook);
    free(c->abuse_limits_file);
    free(c->abuse_owners_file);
    free(c->abuse_spamtraps);
    free(c->abuse_mail_to);
    free(c->complaint_addresses);
    while (c->listeners) {
        struct conf_listen *next = c->listeners->next;
        listen_free(c->listeners);
        c->listeners = next;
    }
    while (c->transports) {
        struct conf_transport *next = c->transports->next;
        transport_free(c->transports);
        c->transports = next;
    }
    conf_egress_free(c);
    free(c);
}

/* The count is not part of the settings: holders keep const pointers, and every
 * kconf with a count was allocated (writable) by kconf_new(). */
const struct kconf *conf_ref(const struct kconf *c)
{
    struct kconf *m = (struct kconf *)c;
    if (m && atomic_load(&m->refs) > 0) atomic_fetch_add(&m->refs, 1);
    return c;
}

void conf_unref(const struct kconf *c)
{
    struct kconf *m = (struct kconf *)c;
    if (!m || atomic_load(&m->refs) == 0) return; /* not counted */
    if (atomic_fetch_sub(&m->refs, 1) == 1) kconf_destroy(m);
}

void conf_free(struct kconf *c)
{
    conf_unref(c);
}
