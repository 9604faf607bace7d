/* conf_egress.c: the egress pool NAME { } blocks of kurier.conf (source addresses
 * with weight and EHLO name, the rules that pick the pool, its fallback). Its own
 * small parser beside the key table (repeated "source" lines with options); what a
 * pool means at delivery time is route/'s and egress/'s. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include "core/buf.h"
#include "core/conf.h"
#include "core/conf_keys.h"
#include "core/util.h"

#define POOL_SOURCES_MAX 64

static void pool_free(struct conf_egress_pool *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->nsrc; i++)
        free(p->src[i].ehlo);
    free(p->src);
    free(p->name);
    free(p->accounts);
    free(p->sender_domains);
    free(p->listeners);
    free(p->fallback_arg);
    free(p->file);
    free(p);
}

void conf_egress_free(struct kconf *c)
{
    while (c->pools) {
        struct conf_egress_pool *next = c->pools->next;
        pool_free(c->pools);
        c->pools = next;
    }
}

const struct conf_egress_pool *conf_egress_pool_find(const struct kconf *c, const char *name)
{
    for (const struct conf_egress_pool *p = c ? c->pools : NULL; p; p = p->next)
        if (strcmp(p->name, name) == 0) return p;
    return NULL;
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 64 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == n;
}

static int host_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 254 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") == n;
}

/* Args 1.. of n joined by spaces, lowercased: a new string. */
static char *join_args(const struct conf_node *n, size_t from)
{
    struct buf b;
    buf_init(&b, 0);
    for (size_t i = from; i < n->nargs; i++) {
        if (i > from) buf_puts(&b, " ");
        buf_puts(&b, n->args[i]);
    }
    char *s = xstrdup(b.data ? b.data : "");
    buf_release(&b);
    str_lower(s);
    return s;
}

/* "source ADDR [weight N] [ehlo NAME];" */
static int apply_source(struct conf_egress_pool *p, const struct conf_node *n,
                        struct conf_errors *errs)
{
    if (n->nargs < 1) {
        conf_errors_add(
            errs, n->file, n->line, n->col,
            "missing argument for \"source\" (expected ADDRESS [weight N] [ehlo NAME])");
        return 0;
    }
    if (p->nsrc >= POOL_SOURCES_MAX) {
        conf_errors_add(errs, n->file, n->line, n->col,
                        "too many sources in pool \"%s\" (at most %d)", p->name, POOL_SOURCES_MAX);
        return 0;
    }
    struct conf_egress_source s = {.weight = 1};
    struct in_addr a4;
    struct in6_addr a6;
    const char *a = n->args[0];
    if (inet_pton(AF_INET, a, &a4) == 1) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&s.sa;
        sin->sin_family = AF_INET;
        sin->sin_addr = a4;
        s.salen = sizeof *sin;
        inet_ntop(AF_INET, &a4, s.addr, sizeof s.addr);
    } else if (inet_pton(AF_INET6, a, &a6) == 1) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&s.sa;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = a6;
        s.salen = sizeof *sin6;
        inet_ntop(AF_INET6, &a6, s.addr, sizeof s.addr);
    } else {
        conf_errors_add(errs, n->file, n->line, n->col,
                        "invalid source address \"%s\": expected an IPv4 or IPv6 address", a);
        return 0;
    }
    for (size_t i = 0; i < p->nsrc; i++)
        if (strcmp(p->src[i].addr, s.addr) == 0) {
            conf_errors_add(errs, n->file, n->line, n->col, "duplicate source %s in pool \"%s\"",
                            s.addr, p->name);
            return 0;
        }
    for (size_t i = 1; i < n->nargs; i += 2) {
        const char *opt = n->args[i];
        const char *val = i + 1 < n->nargs ? n->args[i + 1] : NULL;
        if (!val) {
            conf_errors_add(errs, n->file, n->line, n->col, "source %s: \"%s\" needs a value",
                            s.addr, opt);
            free(s.ehlo);
            return 0;
        }
        if (strcmp(opt, "weight") == 0) {
            char *end;
            long w = strtol(val, &end, 10);
            if (*end || end == val || w < 1 || w > 1000) {
                conf_errors_add(errs, n->file, n->line, n->col,
                                "source %s: invalid weight \"%s\" (expected 1 to 1000)", s.addr,
                                val);
                free(s.ehlo);
                return 0;
            }
            s.weight = (int)w;
        } else if (strcmp(opt, "ehlo") == 0) {
            if (!host_ok(val)) {
                conf_errors_add(errs, n->file, n->line, n->col,
                                "source %s: invalid ehlo name \"%s\"", s.addr, val);
                free(s.ehlo);
                return 0;
            }
            free(s.ehlo);
            s.ehlo = xstrdup(val);
            str_lower(s.ehlo);
        } else {
            conf_errors_add(errs, n->file, n->line, n->col,
                            "source %s: unknown option \"%s\" (expected weight or ehlo)", s.addr,
                            opt);
            free(s.ehlo);
            return 0;
        }
    }
    p->src = xrealloc(p->src, (p->nsrc + 1) * sizeof *p->src);
    p->src[p->nsrc++] = s;
    return 1;
}

static int apply_fallback(struct conf_egress_pool *p, const struct conf_node *n,
                          struct conf_errors *errs)
{
    const char *kind = n->nargs ? n->args[0] : "";
    char why[256];
    if (strcmp(kind, "hold") == 0 && n->nargs == 1) {
        p->fallback = CONF_EGRESS_FB_HOLD;
    } else if (strcmp(kind, "pool") == 0 && n->nargs == 2 && name_ok(n->args[1])) {
        p->fallback = CONF_EGRESS_FB_POOL;
        p->fallback_arg = xstrdup(n->args[1]);
    } else if (strcmp(kind, "relay") == 0 && n->nargs >= 2) {
        char *list = join_args(n, 1);
        for (size_t i = 1; i < n->nargs; i++)
            if (conf_host_check(n->args[i], why, sizeof why) != 0) {
                conf_errors_add(errs, n->file, n->line, n->col,
                                "fallback relay: invalid host \"%s\": %s", n->args[i], why);
                free(list);
                return 0;
            }
        p->fallback = CONF_EGRESS_FB_RELAY;
        p->fallback_arg = list;
    } else {
        conf_errors_add(errs, n->file, n->line, n->col,
                        "invalid fallback (expected: fallback hold; fallback pool NAME; or "
                        "fallback relay HOST[:PORT] ...)");
        return 0;
    }
    return 1;
}

void conf_egress_apply(struct kconf *c, const struct conf_node *n, struct conf_errors *errs)
{
    if (n->nargs != 2 || !name_ok(n->args[1])) {
        conf_errors_add(errs, n->file, n->line, n->col,
                        "expected \"egress pool NAME { ... }\" (NAME: letters, digits, - _ .)");
        return;
    }
    if (!n->children) {
        conf_errors_add(errs, n->file, n->line, n->col, "egress pool %s needs a block { ... }",
                        n->args[1]);
        return;
    }
    struct conf_egress_pool *p = xcalloc(1, sizeof *p);
    p->name = xstrdup(n->args[1]);
    p->file = xstrdup(n->file ? n->file : "");
    p->line = n->line;
    p->col = n->col;
    int ok = 1, seen_fb = 0, seen_def = 0;
    for (const struct conf_node *k = n->children; k; k = k->next) {
        if (k->children) {
            conf_errors_add(errs, k->file, k->line, k->col, "key \"%s\" takes no block", k->name);
            ok = 0;
        } else if (strcmp(k->name, "source") == 0) {
            if (!apply_source(p, k, errs)) ok = 0;
        } else if (strcmp(k->name, "fallback") == 0) {
            if (seen_fb++) {
                conf_errors_add(errs, k->file, k->line, k->col, "duplicate key \"fallback\"");
                ok = 0;
            } else if (!apply_fallback(p, k, errs)) {
                ok = 0;
            }
        } else if (strcmp(k->name, "default") == 0) {
            if (seen_def++ || k->nargs != 1 ||
                (strcmp(k->args[0], "on") != 0 && strcmp(k->args[0], "off") != 0)) {
                conf_errors_add(errs, k->file, k->line, k->col,
                                "\"default\" takes on or off, once");
                ok = 0;
            } else {
                p->is_default = strcmp(k->args[0], "on") == 0;
            }
        } else if (strcmp(k->name, "accounts") == 0 || strcmp(k->name, "sender_domains") == 0 ||
                   strcmp(k->name, "listeners") == 0) {
            char **dst = k->name[0] == 'a'   ? &p->accounts
                         : k->name[0] == 's' ? &p->sender_domains
                                             : &p->listeners;
            if (k->nargs < 1) {
                conf_errors_add(errs, k->file, k->line, k->col, "\"%s\" needs at least one value",
                                k->name);
                ok = 0;
                continue;
            }
            char *more = join_args(k, 0);
            if (*dst) {
                char *both = xasprintf("%s %s", *dst, more);
                free(more);
                more = both;
            }
            free(*dst);
            *dst = more;
        } else {
            conf_errors_add(errs, k->file, k->line, k->col,
                            "unknown key \"%s\" in egress pool (expected source, accounts, "
                            "sender_domains, listeners, default or fallback)",
                            k->name);
            ok = 0;
        }
    }
    if (ok && p->nsrc == 0) {
        conf_errors_add(errs, n->file, n->line, n->col, "egress pool %s has no source address",
                        p->name);
        ok = 0;
    }
    struct conf_egress_pool **tail = &c->pools;
    for (; *tail; tail = &(*tail)->next) {
        if (ok && strcmp((*tail)->name, p->name) == 0) {
            conf_errors_add(errs, n->file, n->line, n->col, "duplicate egress pool \"%s\"",
                            p->name);
            ok = 0;
        }
        if (ok && p->is_default && (*tail)->is_default) {
            conf_errors_add(errs, n->file, n->line, n->col,
                            "egress pool %s: pool \"%s\" is already the default", p->name,
                            (*tail)->name);
            ok = 0;
        }
    }
    if (ok)
        *tail = p;
    else
        pool_free(p);
}

void conf_egress_check(struct kconf *c, struct conf_errors *errs)
{
    for (struct conf_egress_pool *p = c->pools; p; p = p->next) {
        if (p->fallback != CONF_EGRESS_FB_POOL) continue;
        if (strcmp(p->fallback_arg, p->name) == 0 || !conf_egress_pool_find(c, p->fallback_arg))
            conf_errors_add(errs, p->file, p->line, p->col,
                            "egress pool %s: fallback pool \"%s\" %s", p->name, p->fallback_arg,
                            strcmp(p->fallback_arg, p->name) == 0 ? "is the pool itself"
                                                                  : "is not defined");
    }
}

void conf_egress_dump(const struct kconf *c, FILE *out)
{
    for (const struct conf_egress_pool *p = c->pools; p; p = p->next) {
        fprintf(out, "\negress pool %s {\n", p->name);
        for (size_t i = 0; i < p->nsrc; i++) {
            fprintf(out, "    source %s weight %d", p->src[i].addr, p->src[i].weight);
            if (p->src[i].ehlo) fprintf(out, " ehlo %s", p->src[i].ehlo);
            fprintf(out, ";\n");
        }
        if (p->accounts) fprintf(out, "    accounts %s;\n", p->accounts);
        if (p->sender_domains) fprintf(out, "    sender_domains %s;\n", p->sender_domains);
        if (p->listeners) fprintf(out, "    listeners %s;\n", p->listeners);
        fprintf(out, "    default %s;\n", p->is_default ? "on" : "off");
        if (p->fallback == CONF_EGRESS_FB_HOLD)
            fprintf(out, "    fallback hold;\n");
        else
            fprintf(out, "    fallback %s %s;\n",
                    p->fallback == CONF_EGRESS_FB_POOL ? "pool" : "relay", p->fallback_arg);
        fprintf(out, "}\n");
    }
}

void conf_egress_doc(FILE *out)
{
    fprintf(out,
            "\n## egress pool NAME { }\n\n"
            "Source addresses for remote delivery, in any number of pools (docs/egress.md). "
            "Mail picks one pool: the first whose `accounts` has the sender's login, else "
            "whose `sender_domains` has the envelope sender's domain, else whose `listeners` "
            "has the listen address the mail came in on, else the pool with `default on`; "
            "mail no pool picks goes out from the system's default address. Within a pool "
            "the messages are spread over the addresses by weight (smooth weighted "
            "round-robin), each connection is bound to its address and greets with its "
            "`ehlo` name. An address a receiver refused as blocklisted is benched for that "
            "receiver (`outbound { bench_time }`) and the mail is retried at once from "
            "another address; when every address is benched, `fallback` decides.\n\n"
            "| key | value | description |\n|---|---|---|\n"
            "| `source` | ADDRESS [`weight` N] [`ehlo` NAME] | An IPv4 or IPv6 address of this "
            "host; weight 1 to 1000 (default 1); ehlo: the name to greet with from it (match "
            "its PTR), default `outbound { helo }`. Repeat for each address. |\n"
            "| `accounts` | logins | Authenticated senders (SMTP AUTH logins) whose mail uses "
            "this pool. |\n"
            "| `sender_domains` | domains | Envelope sender domains whose mail uses this pool. |\n"
            "| `listeners` | listen addresses | Mail received on these `listen` addresses (as "
            "written there, e.g. `127.0.0.1:2587`) uses this pool. |\n"
            "| `default` | on/off | This pool takes mail no other rule picks (one pool at "
            "most). |\n"
            "| `fallback` | `hold` \\| `pool` NAME \\| `relay` HOST[:PORT] ... | When every "
            "address is benched for a receiver: keep the mail queued (default; it bounces "
            "only at the end of its lifetime), use another pool's addresses, or hand the "
            "mail to a smarthost. |\n");
}
