/* route.c: where a recipient goes: remote domain, local mailbox, alias expansion
 * (recursive, loop-checked, deduplicated) and catch-all. Pure decisions over the
 * directory in store/; delivery and SRS are left to others. */
#include "core/compat.h"

#include "core/core.h"
#include "route/route.h"
#include "store/store.h"

#define ROUTE_MAX_DEPTH 10

struct expand {
    struct store *st;
    const struct route_postmaster *pm; /* or NULL */
    struct route_result *res;
    size_t cap;
    const char *stack[ROUTE_MAX_DEPTH + 1]; /* addresses being expanded (cycle check) */
};

static void add_target(struct expand *x, enum route_kind kind, const char *addr, long long quota)
{
    struct route_result *r = x->res;
    for (size_t i = 0; i < r->ntargets; i++)
        if (strcmp(r->targets[i].addr, addr) == 0) return;
    if (r->ntargets == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 4;
        r->targets = xrealloc(r->targets, x->cap * sizeof *r->targets);
    }
    r->targets[r->ntargets++] =
        (struct route_target){.kind = kind, .addr = xstrdup(addr), .quota = quota};
}

/* A mailbox and nothing else: for an alias that lists its own source ("keep a
 * copy", as in Postfix's virtual_alias_maps). */
static enum route_kind mailbox_only(struct expand *x, const char *addr)
{
    struct store_mailbox m;
    int r = store_mailbox_lookup(x->st, addr, &m);
    if (r < 0) return ROUTE_ERROR;
    if (r == 0) return ROUTE_NOUSER;
    add_target(x, ROUTE_LOCAL, m.address, m.quota);
    return ROUTE_LOCAL;
}

static enum route_kind expand(struct expand *x, const char *addr, int depth, int catchall_ok);

static int is_postmaster(const char *addr)
{
    return strncmp(addr, "postmaster@", 11) == 0;
}

/* postmaster@ one of ours with no alias, mailbox or catch-all of its own: the
 * configured postmaster address (RFC 5321 4.5.1). */
static enum route_kind to_postmaster(struct expand *x, const char *addr, int depth)
{
    const struct route_postmaster *pm = x->pm;
    if (!pm || !pm->address || !*pm->address) return ROUTE_NOUSER;
    char *t = xstrdup(pm->address);
    str_lower(t);
    const char *at = strrchr(t, '@');
    if (at && pm->hostname && str_ieq(at + 1, pm->hostname)) {
        /* hostname is not a hosted domain: sending there would come back to us */
        struct store_domain dom;
        int r = store_domain_get(x->st, at + 1, &dom);
        if (r <= 0) {
            if (r == 0)
                log_warn("route",
                         "%s: postmaster address %s is not in a hosted domain; set "
                         "\"postmaster\" in kurier.conf or add the domain",
                         addr, t);
            free(t);
            return r < 0 ? ROUTE_ERROR : ROUTE_NOUSER;
        }
    }
    x->stack[depth] = addr;
    enum route_kind k = expand(x, t, depth + 1, 1);
    free(t);
    return k == ROUTE_REMOTE ? ROUTE_LOCAL : k;
}

/* Expand addr (lowercased) at depth into x->res. Returns ROUTE_REMOTE when addr is not
 * in a local domain, ROUTE_LOCAL when addr is local and yielded at least one target
 * (which may itself be remote), else NOUSER, ERROR or LOOP. */
static enum route_kind expand(struct expand *x, const char *addr, int depth, int catchall_ok)
{
    if (depth > ROUTE_MAX_DEPTH) return ROUTE_LOOP;
    for (int i = 0; i < depth; i++)
        if (strcmp(x->stack[i], addr) == 0) return ROUTE_LOOP;
    const char *at = strrchr(addr, '@');
    if (!at || !at[1]) return ROUTE_NOUSER;

    struct store_domain dom;
    int r = store_domain_get(x->st, at + 1, &dom);
    if (r < 0) return ROUTE_ERROR;
    if (r == 0 && is_postmaster(addr) && x->pm && x->pm->hostname &&
        str_ieq(at + 1, x->pm->hostname))
        return to_postmaster(x, addr, depth); /* "RCPT TO:<Postmaster>" */
    if (r == 0) {
        add_target(x, ROUTE_REMOTE, addr, 0);
        return ROUTE_REMOTE;
    }

    /* An alias wins over a mailbox of the same name (as virtual_alias_maps does). */
    char **targets = NULL;
    size_t n = 0;
    r = store_alias_get(x->st, addr, &targets, &n);
    if (r < 0) return ROUTE_ERROR;
    if (r > 0) {
        x->stack[depth] = addr;
        size_t good = 0;
        enum route_kind kind = ROUTE_LOCAL;
        for (size_t i = 0; i < n; i++) {
            enum route_kind k = strcmp(targets[i], addr) == 0 ? mailbox_only(x, addr)
                                                              : expand(x, targets[i], depth + 1, 1);
            if (k == ROUTE_ERROR || k == ROUTE_LOOP) {
                kind = k;
                break;
            }
            if (k == ROUTE_NOUSER) {
                /* A stale alias target must not make the other targets fail. */
                log_warn("route", "alias %s: target %s does not exist, skipped", addr, targets[i]);
                continue;
            }
            good++;
        }
        store_strv_free(targets, n);
        if (kind != ROUTE_LOCAL) return kind;
        return good ? ROUTE_LOCAL : ROUTE_NOUSER;
    }

    struct store_mailbox m;
    r = store_mailbox_lookup(x->st, addr, &m);
    if (r < 0) return ROUTE_ERROR;
    if (r > 0) {
        add_target(x, ROUTE_LOCAL, m.address, m.quota);
        return ROUTE_LOCAL;
    }

    /* Catch-all: only for a local part that is neither alias nor mailbox, and not
     * again for the catch-all's own target. postmaster@ takes this same path, then
     * goes to the configured postmaster (see docs/directory.md). */
    if (catchall_ok && dom.catchall[0]) {
        char *t = strchr(dom.catchall, '@') ? xstrdup(dom.catchall)
                                            : xasprintf("%s@%s", dom.catchall, at + 1);
        x->stack[depth] = addr;
        enum route_kind k = expand(x, t, depth + 1, 0);
        free(t);
        return k == ROUTE_REMOTE ? ROUTE_LOCAL : k;
    }
    if (is_postmaster(addr)) return to_postmaster(x, addr, depth);
    return ROUTE_NOUSER;
}

enum route_kind route_resolve(struct store *st, const struct route_postmaster *pm,
                              const char *address, struct route_result *result)
{
    *result = (struct route_result){0};
    struct expand x = {.st = st, .pm = pm, .res = result};
    char *a = xstrdup(address ? address : "");
    str_lower(a);
    enum route_kind k = expand(&x, a, 0, 1);
    free(a);
    if (k != ROUTE_LOCAL && k != ROUTE_REMOTE) {
        route_result_clear(result);
        result->kind = k;
        return k;
    }
    result->kind = k;
    return k;
}

void route_result_clear(struct route_result *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->ntargets; i++)
        free(r->targets[i].addr);
    free(r->targets);
    r->targets = NULL;
    r->ntargets = 0;
}
