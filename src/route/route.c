/* route.c: where a recipient goes: remote domain, local mailbox, alias expansion
 * (recursive, loop-checked, deduplicated) and catch-all; for remote mail the next
 * hops (sender relay, transport, relay_host, MX). Pure decisions over the directory
 * in store/ and a given MX answer; delivery, DNS and SRS are left to others. */
#include "core/compat.h"

#include "core/core.h"
#include "dns/dns.h"
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

void route_postmaster_init(struct route_postmaster *pm, const struct kconf *c)
{
    *pm = (struct route_postmaster){.hostname = c->hostname,
                                    .address = c->postmaster,
                                    .srs = c,
                                    .srs_today = srs_day(time(NULL)),
                                    .aliases = c->aliases,
                                    .local_admin = c->local_admin};
}

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

/* Local system mail is on (aliases or local_admin set) and domain is this host's. */
static int local_domain(const struct expand *x, const char *domain)
{
    const struct route_postmaster *pm = x->pm;
    if (!pm || (!pm->aliases && !pm->local_admin)) return 0;
    return (pm->hostname && str_ieq(domain, pm->hostname)) || str_ieq(domain, "localhost") ||
           str_ieq(domain, "localhost.localdomain");
}

/* A local name NAME@(hostname|localhost) (addr lowercased): its entry in the aliases
 * file (a bare name in it is NAME@hostname; the name itself is local_admin), else
 * postmaster's fallback, else local_admin, else NOUSER. Like a directory alias, a target that does
 * not exist is skipped with a warning. */
static enum route_kind to_admin(struct expand *x, int depth)
{
    const struct route_postmaster *pm = x->pm;
    if (!pm->local_admin || !*pm->local_admin) return ROUTE_NOUSER;
    char *t = xstrdup(pm->local_admin);
    str_lower(t);
    enum route_kind k = expand(x, t, depth + 1, 1);
    free(t);
    return k == ROUTE_REMOTE ? ROUTE_LOCAL : k;
}

static enum route_kind local_name(struct expand *x, const char *addr, int depth)
{
    const struct route_postmaster *pm = x->pm;
    const char *at = strrchr(addr, '@');
    char *name = xstrndup(addr, (size_t)(at - addr));
    const struct alias_entry *e = aliases_find(pm->aliases, name);
    free(name);
    x->stack[depth] = addr;
    if (e) {
        size_t good = 0;
        for (size_t i = 0; i < e->ntargets; i++) {
            const char *t = e->targets[i];
            char *full = strchr(t, '@') ? xstrdup(t) : xasprintf("%s@%s", t, pm->hostname);
            /* "root: root, ...": the name itself, i.e. the local mailbox an MTA with
             * /var/mail would use; ours is local_admin */
            enum route_kind k =
                strcmp(full, addr) == 0 ? to_admin(x, depth) : expand(x, full, depth + 1, 1);
            if (k == ROUTE_ERROR || k == ROUTE_LOOP) {
                free(full);
                return k;
            }
            if (k == ROUTE_NOUSER)
                log_warn("route",
                         "alias %s (aliases file line %d): target %s does not exist, "
                         "skipped",
                         addr, e->line, full);
            else
                good++;
            free(full);
        }
        return good ? ROUTE_LOCAL : ROUTE_NOUSER;
    }
    if (is_postmaster(addr) && pm->address && *pm->address) {
        char *t = xstrdup(pm->address);
        str_lower(t);
        enum route_kind k = strcmp(t, addr) == 0 ? ROUTE_NOUSER : expand(x, t, depth + 1, 1);
        free(t);
        if (k != ROUTE_NOUSER) return k == ROUTE_REMOTE ? ROUTE_LOCAL : k;
    }
    return to_admin(x, depth);
}

/* Expand addr (lowercased) at depth into x->res. Returns ROUTE_REMOTE when addr is not
 * in a local domain, ROUTE_LOCAL when addr is local and yielded at least one target
 * (which may itself be remote), else NOUSER, ERROR or LOOP. */
/* An SRS0=/SRS1= address at the SRS domain or (r > 0) a hosted one: back to the
 * address it stands for when it checks out (remote, or ours again), else no such user
 * (never relay for a forged or expired one). 0 when addr is not SRS here. */
static enum route_kind reverse_srs(struct expand *x, const char *addr, const char *at, int r,
                                   int depth, int *handled)
{
    const struct kconf *c = x->pm ? x->pm->srs : NULL;
    *handled = 0;
    if (!c || !srs_enabled(c) || !srs_is_srs(addr, (size_t)(at - addr))) return ROUTE_NOUSER;
    if (r == 0 && !str_ieq(at + 1, c->srs_domain)) return ROUTE_NOUSER;
    *handled = 1;
    char back[320];
    enum srs_result sr = srs_reverse(addr, (size_t)(at - addr), c->srs_secrets, c->nsrs_secrets,
                                     x->pm->srs_today, srs_max_days(c), back, sizeof back);
    if (sr != SRS_VALID) {
        log_info("route", "%s: SRS address refused: %s", addr, srs_result_name(sr));
        return ROUTE_NOUSER;
    }
    str_lower(back);
    x->stack[depth] = addr;
    enum route_kind k = expand(x, back, depth + 1, 1);
    return k == ROUTE_REMOTE ? ROUTE_LOCAL : k;
}

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
    int handled = 0;
    enum route_kind sk = reverse_srs(x, addr, at, r, depth, &handled);
    if (handled) return sk;
    if (r == 0 && local_domain(x, at + 1)) return local_name(x, addr, depth);
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
    if (local_domain(x, at + 1)) return local_name(x, addr, depth); /* hostname is hosted */
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

/* --- next hops ------------------------------------------------------------------ */

/* snprintf into a fixed result field; a long text is cut. */
static void text_set(struct route_next *out, enum route_next_status st, const char *dsn,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void text_set(struct route_next *out, enum route_next_status st, const char *dsn,
                     const char *fmt, ...)
{
    out->status = st;
    str_copy(out->dsn, dsn, sizeof out->dsn);
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(out->text, sizeof out->text, fmt, ap) < 0) out->text[0] = '\0';
    va_end(ap);
}

/* "a.example:587, [2001:db8::1]:25 b.example" into out->hops, each with tls and the
 * login. Tokens too long, or an unclosed "[", are skipped. */
static void hosts_parse(const struct kconf *c, const char *list, enum conf_out_tls tls,
                        int implicit, const char *user, const char *pass, struct route_next *out)
{
    const char *p = list;
    out->nhops = 0;
    while (*p && out->nhops < ROUTE_MAX_HOPS) {
        p += strspn(p, " ,\t");
        size_t n = strcspn(p, " ,\t");
        if (!n) break;
        char tok[300];
        if (n >= sizeof tok) {
            p += n;
            continue;
        }
        memcpy(tok, p, n);
        tok[n] = '\0';
        p += n;
        struct route_hop *h = &out->hops[out->nhops];
        *h = (struct route_hop){.kind = ROUTE_HOP_HOST,
                                .port = c->out_port,
                                .pref = -1,
                                .tls = tls,
                                .implicit_tls = implicit,
                                .auth_user = user,
                                .auth_pass = pass};
        char *port = NULL;
        if (tok[0] == '[') {
            char *rb = strchr(tok, ']');
            if (!rb) continue;
            *rb = '\0';
            if (rb[1] == ':') port = rb + 2;
            str_copy(h->name, tok + 1, sizeof h->name);
        } else {
            char *colon = strchr(tok, ':');
            if (colon) {
                *colon = '\0';
                port = colon + 1;
            }
            str_copy(h->name, tok, sizeof h->name);
        }
        if (port && atoi(port) > 0 && atoi(port) < 65536) h->port = atoi(port);
        str_lower(h->name);
        if (h->name[0]) out->nhops++;
    }
}

/* The transport block for domain: an exact name scores above ".name", a longer
 * ".name" above a shorter one; NULL when none matches. */
static const struct conf_transport *transport_match(const struct kconf *c, const char *domain)
{
    const struct conf_transport *best = NULL;
    size_t best_score = 0, dl = strlen(domain);
    for (const struct conf_transport *t = c->transports; t; t = t->next) {
        const char *td = t->domain;
        size_t score = 0;
        if (td[0] == '.') {
            size_t tl = strlen(td);
            if (str_ieq(td + 1, domain))
                score = 2 * (tl - 1);
            else if (dl > tl && str_ieq(domain + dl - tl, td))
                score = 2 * (tl - 1);
        } else if (str_ieq(td, domain)) {
            score = 2 * strlen(td) + 1; /* the exact name beats ".name" */
        }
        if (score > best_score) {
            best = t;
            best_score = score;
        }
    }
    return best;
}

const struct conf_transport *route_transport(const struct kconf *c, const char *domain)
{
    return domain ? transport_match(c, domain) : NULL;
}

/* "tls implicit" (RFC 8314 3.3, port 465): encrypted from the first byte; the
 * certificate is checked as outbound { tls } says (verify), else only logged. */
static enum conf_out_tls implicit_level(enum conf_out_tls def)
{
    return def == CONF_TLS_VERIFY ? CONF_TLS_VERIFY : CONF_TLS_ENCRYPT;
}

static enum conf_out_tls tls_parse(const char *s, enum conf_out_tls def, int *implicit)
{
    *implicit = 0;
    if (!s || !*s) return def;
    if (strcmp(s, "implicit") == 0) {
        *implicit = 1;
        return implicit_level(def);
    }
    if (strcmp(s, "none") == 0) return CONF_TLS_NONE;
    if (strcmp(s, "may") == 0) return CONF_TLS_MAY;
    if (strcmp(s, "encrypt") == 0) return CONF_TLS_ENCRYPT;
    if (strcmp(s, "verify") == 0) return CONF_TLS_VERIFY;
    return def;
}

/* A transport's tls (enum conf_transport_tls): its own level, or def for "default";
 * *implicit set for "implicit". */
static enum conf_out_tls transport_tls(int tls, enum conf_out_tls def, int *implicit)
{
    *implicit = 0;
    switch ((enum conf_transport_tls)tls) {
    case CONF_TTLS_IMPLICIT:
        *implicit = 1;
        return implicit_level(def);
    case CONF_TTLS_NONE:
        return CONF_TLS_NONE;
    case CONF_TTLS_MAY:
        return CONF_TLS_MAY;
    case CONF_TTLS_ENCRYPT:
        return CONF_TLS_ENCRYPT;
    case CONF_TTLS_VERIFY:
        return CONF_TLS_VERIFY;
    case CONF_TTLS_DEFAULT:
        break;
    }
    return def;
}

int route_relay_lookup(struct store *st, const char *sender, struct store_relay **out)
{
    struct store_relay *r = xcalloc(1, sizeof *r);
    int rc = store_relay_get(st, sender, r);
    if (rc <= 0) {
        route_relay_free(r);
        r = NULL;
    }
    *out = r;
    return rc;
}

void route_relay_free(struct store_relay *r)
{
    if (!r) return;
    explicit_bzero(r->password, sizeof r->password);
    free(r);
}

enum route_next_status route_next(const struct kconf *c, const char *domain,
                                  const struct store_relay *relay, int relay_rc,
                                  struct route_next *out)
{
    *out = (struct route_next){.status = ROUTE_NEXT_OK};
    enum conf_out_tls deftls = (enum conf_out_tls)c->out_tls;
    if (relay_rc < 0) {
        text_set(out, ROUTE_NEXT_TEMP, "4.3.0",
                 "directory lookup failed (relay routes); will retry");
        return out->status;
    }
    if (relay_rc > 0 && relay) {
        out->via = "sender route";
        int creds = relay->username[0] != 0, implicit;
        enum conf_out_tls tls = tls_parse(
            relay->tls, creds && deftls < CONF_TLS_ENCRYPT ? CONF_TLS_ENCRYPT : deftls, &implicit);
        if (creds && tls < CONF_TLS_ENCRYPT) {
            /* never send a password in clear (issue 4 item 7) */
            text_set(out, ROUTE_NEXT_TEMP, "4.7.0",
                     "relay route %s has a login but tls %s: the password is never sent "
                     "without TLS; set --tls encrypt or verify",
                     relay->match, relay->tls);
            return out->status;
        }
        hosts_parse(c, relay->hosts, tls, implicit, creds ? relay->username : NULL,
                    creds ? relay->password : NULL, out);
        return out->status;
    }
    const struct conf_transport *t = transport_match(c, domain);
    const char *relays;
    enum conf_out_tls tls;
    int implicit;
    if (t) {
        out->via = "transport";
        tls = transport_tls(t->tls, deftls, &implicit);
        relays = t->relay; /* NULL: this domain's MX with the transport's tls */
    } else {
        out->via = "relay_host";
        tls = transport_tls(c->relay_host_tls, deftls, &implicit);
        relays = c->relay_host;
        if (!relays) tls = deftls, implicit = 0; /* relay_host_tls is for smarthosts */
    }
    if (relays) {
        hosts_parse(c, relays, tls, implicit, NULL, NULL, out);
        return out->status;
    }
    out->via = "MX";
    struct route_hop *h = &out->hops[0];
    *h = (struct route_hop){.kind = ROUTE_HOP_MX,
                            .port = c->out_port,
                            .pref = -1,
                            .tls = tls,
                            .implicit_tls = implicit};
    str_copy(h->name, domain, sizeof h->name);
    out->nhops = 1;
    return out->status;
}

static int is_self(const struct kconf *c, const char *host)
{
    return (c->hostname && str_ieq(host, c->hostname)) ||
           (c->out_helo && str_ieq(host, c->out_helo));
}

enum route_next_status route_mx(const struct kconf *c, const struct route_hop *mx,
                                const struct dns_result *res, struct route_next *out)
{
    const struct route_hop m = *mx; /* mx may be out->hops[0] */
    const char *domain = m.name;
    out->status = ROUTE_NEXT_OK;
    out->nhops = 0;
    switch (res->status) {
    case DNS_OK:
        break;
    case DNS_NXDOMAIN:
        text_set(out, ROUTE_NEXT_PERM, "5.1.2",
                 "Host or domain name not found. Name service error for name=%s type=MX: Host "
                 "not found",
                 domain);
        return out->status;
    case DNS_NODATA: { /* RFC 5321 5.1: the domain itself is the implicit MX */
        struct route_hop *h = &out->hops[0];
        *h = m;
        h->kind = ROUTE_HOP_HOST;
        h->pref = 0;
        h->implicit_mx = 1;
        str_lower(h->name);
        if (is_self(c, h->name)) {
            text_set(out, ROUTE_NEXT_PERM, "5.4.6",
                     "mail loop: MX points back to us (mail for %s loops back to myself)", m.name);
            return out->status;
        }
        out->nhops = 1;
        return out->status;
    }
    default:
        text_set(out, ROUTE_NEXT_TEMP, "4.4.3",
                 "Host or domain name not found. Name service error for name=%s type=MX: Host "
                 "not found, try again (%s)",
                 domain, res->why ? res->why : dns_status_name(res->status));
        return out->status;
    }
    if (res->null_mx || res->nmx == 0) {
        text_set(out, ROUTE_NEXT_PERM, "5.1.10", "the domain %s accepts no mail (null MX)", domain);
        return out->status;
    }
    /* RFC 5321 5.1: when we are among the MX hosts, only better ones may be used */
    int self_pref = -1;
    for (size_t i = 0; i < res->nmx; i++)
        if (is_self(c, res->mx[i].host) && (self_pref < 0 || res->mx[i].pref < self_pref))
            self_pref = res->mx[i].pref;
    for (size_t i = 0; i < res->nmx && out->nhops < ROUTE_MAX_HOPS; i++) {
        if (!res->mx[i].host[0]) continue;
        if (self_pref >= 0 && res->mx[i].pref >= self_pref) continue;
        struct route_hop *h = &out->hops[out->nhops++];
        *h = m;
        h->kind = ROUTE_HOP_HOST;
        str_copy(h->name, res->mx[i].host, sizeof h->name);
        h->pref = res->mx[i].pref;
    }
    if (out->nhops == 0) {
        if (self_pref >= 0)
            text_set(out, ROUTE_NEXT_PERM, "5.4.6",
                     "mail loop: MX points back to us (mail for %s loops back to myself)", domain);
        else
            text_set(out, ROUTE_NEXT_PERM, "5.1.10", "the domain %s accepts no mail (null MX)",
                     domain);
    }
    return out->status;
}

/* --- egress pools ------------------------------------------------------------------ */

/* 1 when word is one of the space-separated words of list (case-insensitive). */
static int in_list(const char *list, const char *word)
{
    if (!list || !word || !*word) return 0;
    size_t n = strlen(word);
    for (const char *p = list; *p;) {
        p += strspn(p, " ");
        size_t m = strcspn(p, " ");
        if (m == n && strncasecmp(p, word, n) == 0) return 1;
        p += m;
    }
    return 0;
}

const struct conf_egress_pool *route_pool(const struct kconf *c, const char *sender,
                                          const char *auth_user, const char *listener)
{
    const struct conf_egress_pool *p;
    for (p = c->pools; p; p = p->next)
        if (in_list(p->accounts, auth_user)) return p;
    const char *at = sender ? strrchr(sender, '@') : NULL;
    for (p = c->pools; at && p; p = p->next)
        if (in_list(p->sender_domains, at + 1)) return p;
    for (p = c->pools; p; p = p->next)
        if (in_list(p->listeners, listener)) return p;
    for (p = c->pools; p; p = p->next)
        if (p->is_default) return p;
    return NULL;
}

enum route_next_status route_hosts(const struct kconf *c, const char *hosts, struct route_next *out)
{
    *out = (struct route_next){.status = ROUTE_NEXT_OK, .via = "egress fallback relay"};
    hosts_parse(c, hosts ? hosts : "", (enum conf_out_tls)c->out_tls, 0, NULL, NULL, out);
    return out->status;
}
