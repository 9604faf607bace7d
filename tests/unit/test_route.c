/* test_route.c: route_resolve() over a temp SQLite directory: mailboxes, remote
 * domains, alias expansion (recursive, dedup, loops, depth), catch-all, postmaster.
 * route_next() and route_mx() as tables: sender relays, transports, smarthosts with
 * fallbacks, MX, implicit MX, null MX and loops; route_relay_lookup() on the store. */
#include "core/compat.h"

#include <sqlite3.h>
#include <unistd.h>

#include "core/core.h"
#include "dns/dns.h"
#include "route/route.h"
#include "store/store.h"

static int passed, failed;

struct setup {
    char kind; /* d domain, m mailbox, a alias, c catch-all */
    const char *a, *b;
    long long q;
};

static const struct setup setup[] = {
    {'d', "example.test", NULL, 0},
    {'d', "catch.test", NULL, 0},
    {'d', "far.test", NULL, 0},
    {'m', "demo@example.test", "pw", 1024},
    {'m', "bob@example.test", "pw", 0},
    {'m', "both@example.test", "pw", 0},
    {'m', "all@catch.test", "pw", 7},
    {'m', "self@example.test", "pw", 0},
    /* plain alias, list with remote member, nested, dedup */
    {'a', "info@example.test", "demo@example.test", 0},
    {'a', "team@example.test", "demo@example.test", 0},
    {'a', "team@example.test", "bob@example.test", 0},
    {'a', "team@example.test", "friend@remote.example", 0},
    {'a', "team@example.test", "info@example.test", 0},
    /* alias wins over mailbox */
    {'a', "both@example.test", "bob@example.test", 0},
    /* loops */
    {'a', "loop1@example.test", "loop2@example.test", 0},
    {'a', "loop2@example.test", "loop1@example.test", 0},
    {'a', "selfloop@example.test", "selfloop@example.test", 0},
    /* keep a copy: alias listing itself */
    {'a', "self@example.test", "self@example.test", 0},
    {'a', "self@example.test", "copy@remote.example", 0},
    /* stale target skipped; all-stale is NOUSER */
    {'a', "stale@example.test", "gone@example.test", 0},
    {'a', "stale@example.test", "bob@example.test", 0},
    {'a', "dead@example.test", "gone@example.test", 0},
    /* forward only to remote */
    {'a', "fwd@example.test", "someone@remote.example", 0},
    /* c0 -> ... -> c10 -> bob: 11 alias levels, too deep; from c1 it is 10 */
    {'a', "c0@example.test", "c1@example.test", 0},
    {'a', "c1@example.test", "c2@example.test", 0},
    {'a', "c2@example.test", "c3@example.test", 0},
    {'a', "c3@example.test", "c4@example.test", 0},
    {'a', "c4@example.test", "c5@example.test", 0},
    {'a', "c5@example.test", "c6@example.test", 0},
    {'a', "c6@example.test", "c7@example.test", 0},
    {'a', "c7@example.test", "c8@example.test", 0},
    {'a', "c8@example.test", "c9@example.test", 0},
    {'a', "c9@example.test", "c10@example.test", 0},
    {'a', "c10@example.test", "bob@example.test", 0},
    /* catch-all: local part; far.test's catch-all is a remote address */
    {'c', "catch.test", "all", 0},
    {'c', "far.test", "elsewhere@remote.example", 0},
    {'a', "alias@catch.test", "bob@example.test", 0},
};

struct want {
    const char *addr;
    enum route_kind kind;
    const char *targets; /* "L:addr R:addr ..." in order, NULL = no targets */
    int pm;              /* index into pms: the configured postmaster, 0 = none */
};

/* RFC 5321 4.5.1: where postmaster@ goes without an alias, mailbox or catch-all */
static const struct route_postmaster pms[] = {
    {.hostname = NULL},
    {.hostname = "mx.example.test", .address = "Bob@example.test"},
    /* hostname not hosted: would loop */
    {.hostname = "mx.example.test", .address = "root@mx.example.test"},
    {.hostname = "mx.example.test", .address = "postmaster@example.test"}, /* itself */
    {.hostname = "mx.example.test", .address = "admin@remote.example"},
};

static const struct want wants[] = {
    {"demo@example.test", ROUTE_LOCAL, "L:demo@example.test", 0},
    {"DEMO@Example.TEST", ROUTE_LOCAL, "L:demo@example.test", 0},
    {"ghost@example.test", ROUTE_NOUSER, NULL, 0},
    {"someone@remote.example", ROUTE_REMOTE, "R:someone@remote.example", 0},
    {"Someone@Remote.Example", ROUTE_REMOTE, "R:someone@remote.example", 0},
    {"info@example.test", ROUTE_LOCAL, "L:demo@example.test", 0},
    {"team@example.test", ROUTE_LOCAL,
     "L:bob@example.test L:demo@example.test R:friend@remote.example", 0},
    {"both@example.test", ROUTE_LOCAL, "L:bob@example.test", 0},
    {"loop1@example.test", ROUTE_LOOP, NULL, 0},
    {"selfloop@example.test", ROUTE_NOUSER, NULL, 0},
    {"self@example.test", ROUTE_LOCAL, "R:copy@remote.example L:self@example.test", 0},
    {"stale@example.test", ROUTE_LOCAL, "L:bob@example.test", 0},
    {"dead@example.test", ROUTE_NOUSER, NULL, 0},
    {"fwd@example.test", ROUTE_LOCAL, "R:someone@remote.example", 0},
    {"c1@example.test", ROUTE_LOCAL, "L:bob@example.test", 0},
    {"c0@example.test", ROUTE_LOOP, NULL, 0},
    {"anything@catch.test", ROUTE_LOCAL, "L:all@catch.test", 0},
    {"all@catch.test", ROUTE_LOCAL, "L:all@catch.test", 0},
    {"alias@catch.test", ROUTE_LOCAL, "L:bob@example.test", 0},
    {"postmaster@catch.test", ROUTE_LOCAL, "L:all@catch.test", 0},
    {"postmaster@example.test", ROUTE_NOUSER, NULL, 0},
    {"postmaster@example.test", ROUTE_LOCAL, "L:bob@example.test", 1},
    {"PostMaster@Example.Test", ROUTE_LOCAL, "L:bob@example.test", 1},
    {"postmaster@mx.example.test", ROUTE_LOCAL, "L:bob@example.test", 1},
    {"postmaster@far.test", ROUTE_LOCAL, "R:elsewhere@remote.example", 1},
    {"postmaster@catch.test", ROUTE_LOCAL, "L:all@catch.test", 1},
    {"postmaster@remote.example", ROUTE_REMOTE, "R:postmaster@remote.example", 1},
    {"root@mx.example.test", ROUTE_REMOTE, "R:root@mx.example.test", 1},
    {"ghost@example.test", ROUTE_NOUSER, NULL, 1},
    {"postmaster@example.test", ROUTE_NOUSER, NULL, 2},
    {"postmaster@mx.example.test", ROUTE_NOUSER, NULL, 2},
    {"postmaster@example.test", ROUTE_LOOP, NULL, 3},
    {"postmaster@example.test", ROUTE_LOCAL, "R:admin@remote.example", 4},
    {"whoever@far.test", ROUTE_LOCAL, "R:elsewhere@remote.example", 0},
    {"nodomain", ROUTE_NOUSER, NULL, 0},
    {"", ROUTE_NOUSER, NULL, 0},
};

static void check(struct store *st, size_t i, const struct want *w)
{
    struct route_result r;
    enum route_kind k = route_resolve(st, w->pm ? &pms[w->pm] : NULL, w->addr, &r);
    char got[1024] = "";
    size_t off = 0;
    for (size_t j = 0; j < r.ntargets && off < sizeof got; j++) {
        int n = snprintf(got + off, sizeof got - off, "%s%c:%s", j ? " " : "",
                         r.targets[j].kind == ROUTE_LOCAL ? 'L' : 'R', r.targets[j].addr);
        if (n < 0) break;
        off += (size_t)n;
    }
    int ok = k == w->kind && r.kind == w->kind && strcmp(got, w->targets ? w->targets : "") == 0;
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL %zu %s: kind %d (result %d) want %d; targets \"%s\" want \"%s\"\n", i, w->addr,
               k, r.kind, w->kind, got, w->targets ? w->targets : "");
    }
    route_result_clear(&r);
}

/* Local names through an aliases file (conf aliases, local_admin). */
static void test_local_names(struct store *st)
{
    static const char text[] = "root: bob@example.test, ops\n"
                               "ops: demo@example.test\n"
                               "abuse: abuse, root\n"
                               "a: b\n"
                               "b: a\n";
    struct conf_errors errs = {0};
    struct aliases *al = aliases_parse("aliases", text, strlen(text), &errs);
    if (!al) {
        failed++;
        printf("FAIL aliases parse\n");
        conf_errors_free(&errs);
        return;
    }
    struct route_postmaster pm = {.hostname = "mx.example.test",
                                  .address = "root@mx.example.test",
                                  .aliases = al,
                                  .local_admin = "admin@remote.example"};
    static const struct {
        const char *addr;
        enum route_kind kind;
        const char *targets;
        int admin;
    } w[] = {
        {"root@mx.example.test", ROUTE_LOCAL, "L:bob@example.test L:demo@example.test", 1},
        {"ROOT@localhost", ROUTE_LOCAL, "L:bob@example.test L:demo@example.test", 1},
        {"abuse@mx.example.test", ROUTE_LOCAL,
         "R:admin@remote.example L:bob@example.test L:demo@example.test", 1},
        {"www-data@mx.example.test", ROUTE_LOCAL, "R:admin@remote.example", 1},
        {"www-data@mx.example.test", ROUTE_NOUSER, "", 0},
        {"postmaster@mx.example.test", ROUTE_LOCAL, "L:bob@example.test L:demo@example.test", 0},
        {"a@mx.example.test", ROUTE_LOOP, "", 1},
        {"root@remote.example", ROUTE_REMOTE, "R:root@remote.example", 1},
        {"demo@example.test", ROUTE_LOCAL, "L:demo@example.test", 1},
    };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        pm.local_admin = w[i].admin ? "admin@remote.example" : NULL;
        struct route_result r;
        enum route_kind k = route_resolve(st, &pm, w[i].addr, &r);
        char got[512] = "";
        size_t off = 0;
        for (size_t j = 0; j < r.ntargets && off < sizeof got; j++) {
            int n = snprintf(got + off, sizeof got - off, "%s%c:%s", j ? " " : "",
                             r.targets[j].kind == ROUTE_LOCAL ? 'L' : 'R', r.targets[j].addr);
            if (n < 0) break;
            off += (size_t)n;
        }
        if (k == w[i].kind && strcmp(got, w[i].targets) == 0) {
            passed++;
        } else {
            failed++;
            printf("FAIL local %zu %s: kind %d want %d; \"%s\" want \"%s\"\n", i, w[i].addr, k,
                   w[i].kind, got, w[i].targets);
        }
        route_result_clear(&r);
    }
    aliases_free(al);
    conf_errors_free(&errs);
}

/* --- next hops -------------------------------------------------------------------- */

/* Two configs: S with smarthosts and transports, M without relay_host (MX). */
static const char conf_s[] = "hostname mx.self.test;\n"
                             "relay_host smtp.provider.example:587 Backup.Provider.Example:587;\n"
                             "transport partner.example { relay 10.0.0.5:25; tls encrypt; }\n"
                             "transport .internal.example { tls verify; }\n"
                             "transport deep.internal.example { relay [2001:db8::1]:2525; }\n"
                             "transport .b.internal.example { relay gw.b.example; tls none; }\n";
static const char conf_m[] = "hostname mx.self.test;\n"
                             "outbound { helo out.self.test; tls encrypt; port 2525; }\n"
                             "transport plain.example { tls none; }\n";

static struct kconf *conf_from(const char *text)
{
    struct conf_errors errs = {0};
    struct conf_node *t = conf_parse(text, strlen(text), "t.conf", &errs);
    struct kconf *c = t ? conf_apply(t, "t.conf", &errs) : NULL;
    if (errs.n) conf_errors_print(&errs, stdout);
    conf_errors_free(&errs);
    conf_tree_free(t);
    return c;
}

/* tls implicit (port 465): on a transport, on relay_host, on a sender route; the
 * certificate checked as outbound's tls says. */
static void test_implicit_tls(void)
{
    static const struct {
        const char *conf, *domain, *relay_tls;
        enum conf_out_tls tls;
        int implicit;
    } w[] = {
        {"transport p.example { relay smtp.p.example:465; tls implicit; }", "p.example", NULL,
         CONF_TLS_ENCRYPT, 1},
        {"outbound { tls verify; }\ntransport p.example { relay s.p.example:465; tls implicit; }",
         "p.example", NULL, CONF_TLS_VERIFY, 1},
        {"relay_host s.example:465;\nrelay_host_tls implicit;", "x.example", NULL, CONF_TLS_ENCRYPT,
         1},
        {"relay_host s.example:587;", "x.example", NULL, CONF_TLS_MAY, 0},
        {"relay_host_tls implicit;", "x.example", NULL, CONF_TLS_MAY, 0}, /* MX: not for it */
        {"outbound { tls verify; }", "x.example", "implicit", CONF_TLS_VERIFY, 1},
        {"hostname mx.self.test;", "x.example", "implicit", CONF_TLS_ENCRYPT, 1},
    };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        struct kconf *c = conf_from(w[i].conf);
        struct store_relay rel = {0};
        if (w[i].relay_tls) {
            str_copy(rel.hosts, "r.example:465", sizeof rel.hosts);
            str_copy(rel.username, "u", sizeof rel.username);
            str_copy(rel.password, "p", sizeof rel.password);
            str_copy(rel.tls, w[i].relay_tls, sizeof rel.tls);
        }
        struct route_next n;
        int ok = c &&
                 route_next(c, w[i].domain, w[i].relay_tls ? &rel : NULL, w[i].relay_tls ? 1 : 0,
                            &n) == ROUTE_NEXT_OK &&
                 n.nhops >= 1 && n.hops[0].tls == w[i].tls &&
                 n.hops[0].implicit_tls == w[i].implicit;
        if (ok) {
            passed++;
        } else {
            failed++;
            printf("FAIL implicit %zu: tls %d implicit %d\n", i, c ? (int)n.hops[0].tls : -1,
                   c ? n.hops[0].implicit_tls : -1);
        }
        conf_free(c);
    }
}

static const char *tls_name(enum conf_out_tls t)
{
    static const char *names[] = {"none", "may", "encrypt", "verify"};
    return (unsigned)t < 4 ? names[t] : "?";
}

/* "MX example.org:25/may" or "host:port/tls[+user]", joined by ", " */
static void hops_fmt(const struct route_next *r, char *out, size_t size)
{
    size_t off = 0;
    out[0] = '\0';
    for (size_t i = 0; i < r->nhops && off < size; i++) {
        const struct route_hop *h = &r->hops[i];
        int n = snprintf(out + off, size - off, "%s%s%s:%d/%s%s%s%s", i ? ", " : "",
                         h->kind == ROUTE_HOP_MX ? "MX " : "", h->name, h->port, tls_name(h->tls),
                         h->auth_user ? "+" : "", h->auth_user ? h->auth_user : "",
                         h->implicit_mx ? " implicit" : "");
        if (n < 0) break;
        off += (size_t)n;
    }
}

struct next_case {
    char conf;          /* 'S' or 'M' */
    const char *domain; /* recipient domain */
    /* the sender's relay route: rc 1 with hosts/user/tls, 0 none, -1 directory error */
    int relay_rc;
    const char *relay_hosts, *relay_user, *relay_tls;
    enum route_next_status status;
    const char *dsn; /* when not OK */
    const char *via;
    const char *hops;
};

static const struct next_case next_cases[] = {
    /* smarthost with its fallback, in order, names lowercased, default tls */
    {'S', "remote.example", 0, NULL, NULL, NULL, ROUTE_NEXT_OK, NULL, "relay_host",
     "smtp.provider.example:587/may, backup.provider.example:587/may"},
    /* transport blocks beat relay_host: relay with its own tls */
    {'S', "partner.example", 0, NULL, NULL, NULL, ROUTE_NEXT_OK, NULL, "transport",
     "10.0.0.5:25/encrypt"},
    {'S', "PARTNER.Example", 0, NULL, NULL, NULL, ROUTE_NEXT_OK, NULL, "transport",
     "10.0.0.5:25/encrypt"},
    /* ".name" matches the name and its subdomains; no relay: MX with the block's tls */
    {'S', "internal.example", 0, NULL, NULL, NULL, ROUTE_NEXT_OK, NULL, "MX",
     "MX internal.example:25/verify"},
    {'S', "a.internal.example", 0, NULL, NULL, NULL, ROUTE_NEXT_OK, NULL, "MX",
     "MX a.internal.example:25/verify"},
    /* the exact name beats ".name"; an IPv6 literal with a port; tls "default" */
    {'S', "deep.internal.example", 0, NULL, NULL, NULL, ROUTE_NEXT_OK, NULL, "transport",
     "2001:db8::1:2525/may"},
    /* the longest ".name" wins */
    {'S', "x.b.internal.example", 0, NULL, NULL, NULL, ROUTE_NEXT_OK, NULL, "transport",
     "gw.b.example:25/none"},
    /* not a suffix on a label boundary: relay_host */
    {'S', "xinternal.example", 0, NULL, NULL, NULL, ROUTE_NEXT_OK, NULL, "relay_host",
     "smtp.provider.example:587/may, backup.provider.example:587/may"},
    /* per-sender relay beats transport and relay_host; a login needs TLS: encrypt
     * unless the route or outbound says verify */
    {'S', "partner.example", 1, "relay.cust.example:2587,Fallback.Cust.Example", "cust", "",
     ROUTE_NEXT_OK, NULL, "sender route",
     "relay.cust.example:2587/encrypt+cust, fallback.cust.example:25/encrypt+cust"},
    {'S', "remote.example", 1, "[192.0.2.7]:465", "cust", "verify", ROUTE_NEXT_OK, NULL,
     "sender route", "192.0.2.7:465/verify+cust"},
    {'M', "remote.example", 1, "relay.cust.example", "", "", ROUTE_NEXT_OK, NULL, "sender route",
     "relay.cust.example:2525/encrypt"},
    {'S', "remote.example", 1, "relay.cust.example", "", "none", ROUTE_NEXT_OK, NULL,
     "sender route", "relay.cust.example:25/none"},
    /* a login with tls none/may is never used: deferred */
    {'S', "remote.example", 1, "relay.cust.example", "cust", "may", ROUTE_NEXT_TEMP, "4.7.0",
     "sender route", ""},
    {'S', "remote.example", 1, "relay.cust.example", "cust", "none", ROUTE_NEXT_TEMP, "4.7.0",
     "sender route", ""},
    /* the directory failed: deferred, not routed elsewhere */
    {'S', "remote.example", -1, NULL, NULL, NULL, ROUTE_NEXT_TEMP, "4.3.0", NULL, ""},
    /* host lists: separators, bad ports ignored, unclosed bracket and empty list */
    {'S', "remote.example", 1, " a.example:0 ,\tb.example:99999,[c.example:26 d.example:x", "",
     "may", ROUTE_NEXT_OK, NULL, "sender route",
     "a.example:25/may, b.example:25/may, d.example:25/may"},
    {'S', "remote.example", 1, " , ", "", "may", ROUTE_NEXT_OK, NULL, "sender route", ""},
    /* no relay_host: the recipient domain's MX with outbound's tls and port */
    {'M', "Remote.Example", 0, NULL, NULL, NULL, ROUTE_NEXT_OK, NULL, "MX",
     "MX Remote.Example:2525/encrypt"},
    {'M', "plain.example", 0, NULL, NULL, NULL, ROUTE_NEXT_OK, NULL, "MX",
     "MX plain.example:2525/none"},
};

static void test_next(struct kconf *cs, struct kconf *cm)
{
    for (size_t i = 0; i < sizeof next_cases / sizeof next_cases[0]; i++) {
        const struct next_case *t = &next_cases[i];
        struct store_relay rel = {0};
        str_copy(rel.match, "@sender.example", sizeof rel.match);
        str_copy(rel.hosts, t->relay_hosts ? t->relay_hosts : "", sizeof rel.hosts);
        str_copy(rel.username, t->relay_user ? t->relay_user : "", sizeof rel.username);
        str_copy(rel.password, t->relay_user && *t->relay_user ? "secret" : "",
                 sizeof rel.password);
        str_copy(rel.tls, t->relay_tls ? t->relay_tls : "", sizeof rel.tls);
        struct route_next r;
        enum route_next_status st = route_next(t->conf == 'S' ? cs : cm, t->domain,
                                               t->relay_rc > 0 ? &rel : NULL, t->relay_rc, &r);
        char got[2048];
        hops_fmt(&r, got, sizeof got);
        int ok = st == t->status && r.status == t->status && strcmp(got, t->hops) == 0 &&
                 (t->via ? r.via && strcmp(r.via, t->via) == 0 : r.via == NULL) &&
                 (t->status == ROUTE_NEXT_OK ? r.text[0] == '\0'
                                             : strcmp(r.dsn, t->dsn) == 0 && r.text[0] != '\0');
        /* the login is borrowed from the relay route, never copied */
        for (size_t j = 0; j < r.nhops; j++)
            if (r.hops[j].auth_user &&
                (r.hops[j].auth_user != rel.username || r.hops[j].auth_pass != rel.password))
                ok = 0;
        if (ok) {
            passed++;
        } else {
            failed++;
            printf("FAIL next %zu %s: status %d want %d, dsn %s, via %s, text \"%s\"\n"
                   "     hops \"%s\"\n     want \"%s\"\n",
                   i, t->domain, st, t->status, r.dsn, r.via ? r.via : "(null)", r.text, got,
                   t->hops);
        }
    }
    /* The 4.7.0 text names the route and says why; a long list stops at the limit. */
    struct store_relay rel = {.match = "@sender.example",
                              .hosts = "h.example",
                              .username = "u",
                              .password = "p",
                              .tls = "may"};
    struct route_next r;
    route_next(cs, "remote.example", &rel, 1, &r);
    if (strstr(r.text, "@sender.example") && strstr(r.text, "never sent without TLS"))
        passed++;
    else {
        failed++;
        printf("FAIL 4.7.0 text: %s\n", r.text);
    }
    struct buf many;
    buf_init(&many, 0);
    for (int i = 0; i < ROUTE_MAX_HOPS + 5; i++)
        buf_printf(&many, "h%d.example ", i);
    struct store_relay big = {.match = "@sender.example", .tls = "none"};
    str_copy(big.hosts, many.data, sizeof big.hosts);
    buf_release(&many);
    route_next(cs, "remote.example", &big, 1, &r);
    if (r.status == ROUTE_NEXT_OK && r.nhops == ROUTE_MAX_HOPS &&
        strcmp(r.hops[ROUTE_MAX_HOPS - 1].name, "h15.example") == 0)
        passed++;
    else {
        failed++;
        printf("FAIL hop limit: %zu hops\n", r.nhops);
    }
}

struct mx_case {
    char conf;
    const char *domain;
    enum dns_status dns;
    const char *mx; /* "pref host ..." as dns/ ordered it; "0 ." a null MX */
    enum route_next_status status;
    const char *dsn;
    const char *hops;
};

static const struct mx_case mx_cases[] = {
    /* MX hosts in the order given, with the MX hop's port and tls */
    {'M', "remote.example", DNS_OK, "10 mx1.remote.example 20 mx2.remote.example", ROUTE_NEXT_OK,
     NULL, "mx1.remote.example:2525/encrypt, mx2.remote.example:2525/encrypt"},
    /* implicit MX: no MX record, the domain itself (lowercased) */
    {'M', "Remote.Example", DNS_NODATA, "", ROUTE_NEXT_OK, NULL,
     "remote.example:2525/encrypt implicit"},
    /* null MX (RFC 7505), or an answer without hosts */
    {'M', "nomail.example", DNS_OK, "0 .", ROUTE_NEXT_PERM, "5.1.10", ""},
    {'M', "nomail.example", DNS_OK, "", ROUTE_NEXT_PERM, "5.1.10", ""},
    /* no such domain; DNS trouble is temporary */
    {'M', "gone.example", DNS_NXDOMAIN, "", ROUTE_NEXT_PERM, "5.1.2", ""},
    {'M', "slow.example", DNS_TEMPFAIL, "", ROUTE_NEXT_TEMP, "4.4.3", ""},
    {'M', "bogus.example", DNS_BOGUS, "", ROUTE_NEXT_TEMP, "4.4.3", ""},
    /* we are an MX (hostname or helo): only better preferences; none left is a loop */
    {'M', "backup.example", DNS_OK, "10 primary.example 20 MX.SELF.TEST 30 worse.example",
     ROUTE_NEXT_OK, NULL, "primary.example:2525/encrypt"},
    {'M', "backup.example", DNS_OK, "10 primary.example 20 out.self.test", ROUTE_NEXT_OK, NULL,
     "primary.example:2525/encrypt"},
    {'M', "ours.example", DNS_OK, "10 mx.self.test 20 other.example", ROUTE_NEXT_PERM, "5.4.6", ""},
    /* the implicit MX is ourselves: a loop */
    {'M', "mx.self.test", DNS_NODATA, "", ROUTE_NEXT_PERM, "5.4.6", ""},
};

static void test_mx(struct kconf *cs, struct kconf *cm)
{
    for (size_t i = 0; i < sizeof mx_cases / sizeof mx_cases[0]; i++) {
        const struct mx_case *t = &mx_cases[i];
        struct kconf *c = t->conf == 'S' ? cs : cm;
        struct dns_mx mx[8];
        size_t n = 0;
        int null_mx = 0;
        const char *p = t->mx;
        int pref, used;
        char host[256];
        while (n < 8 && sscanf(p, "%d %255s%n", &pref, host, &used) == 2) {
            mx[n].pref = (uint16_t)pref;
            str_copy(mx[n].host, strcmp(host, ".") == 0 ? "" : host, sizeof mx[n].host);
            str_lower(mx[n].host);
            if (!mx[n].host[0]) null_mx = 1;
            n++;
            p += used;
        }
        struct dns_result res = {.status = t->dns, .mx = mx, .nmx = n, .null_mx = null_mx};
        if (t->dns == DNS_TEMPFAIL) res.why = "timeout";
        /* as remote.c does: route_next's lone MX hop, then route_mx in place */
        struct route_next r;
        route_next(c, t->domain, NULL, 0, &r);
        enum route_next_status st = r.nhops == 1 && r.hops[0].kind == ROUTE_HOP_MX
                                        ? route_mx(c, &r.hops[0], &res, &r)
                                        : (enum route_next_status) - 1;
        char got[2048];
        hops_fmt(&r, got, sizeof got);
        int ok = st == t->status && r.status == t->status && strcmp(got, t->hops) == 0 &&
                 strcmp(r.via, "MX") == 0 &&
                 (t->status == ROUTE_NEXT_OK
                      ? 1
                      : strcmp(r.dsn, t->dsn) == 0 && strstr(r.text, t->domain) != NULL);
        if (ok) {
            passed++;
        } else {
            failed++;
            printf("FAIL mx %zu %s: status %d want %d, dsn %s, text \"%s\"\n"
                   "     hops \"%s\"\n     want \"%s\"\n",
                   i, t->domain, st, t->status, r.dsn, r.text, got, t->hops);
        }
    }
}

/* route_relay_lookup over the store: exact sender first, then @domain, none for <>. */
static void test_relay_lookup(struct store *st)
{
    char err[256];
    if (store_relay_add(st, "@cust.example", "relay.cust.example:587", "u", "pw", "", err,
                        sizeof err) != 0 ||
        store_relay_add(st, "vip@cust.example", "vip.cust.example", "", "", "none", err,
                        sizeof err) != 0) {
        failed++;
        printf("FAIL relay add: %s\n", err);
        return;
    }
    static const struct {
        const char *sender;
        int rc;
        const char *match;
    } cases[] = {
        {"someone@cust.example", 1, "@cust.example"},
        {"VIP@cust.example", 1, "vip@cust.example"},
        {"x@other.example", 0, NULL},
        {"", 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct store_relay *rel = (struct store_relay *)1;
        int rc = route_relay_lookup(st, cases[i].sender, &rel);
        int ok = rc == cases[i].rc &&
                 (cases[i].match ? rel && strcmp(rel->match, cases[i].match) == 0 : rel == NULL);
        if (ok)
            passed++;
        else {
            failed++;
            printf("FAIL relay lookup %s: rc %d\n", cases[i].sender, rc);
        }
        route_relay_free(rel);
    }
}

int main(void)
{
    log_init("stderr", "test_route", LOG_LV_ERR);
    char tmpl[] = "/tmp/kurier-test-route-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) {
        perror("mkdtemp");
        return 1;
    }
    char *path = xasprintf("%s/kurier.db", dir);
    char err[256];
    struct store *st = store_open(path, 1, NULL, err, sizeof err);
    if (!st) {
        printf("FAIL open: %s\n0 passed, 1 failed\n", err);
        return 1;
    }
    for (size_t i = 0; i < sizeof setup / sizeof setup[0]; i++) {
        const struct setup *s = &setup[i];
        int r = -1;
        if (s->kind == 'd') r = store_domain_add(st, s->a, err, sizeof err);
        if (s->kind == 'm') r = store_mailbox_add(st, s->a, s->b, s->q, err, sizeof err);
        if (s->kind == 'a') r = store_alias_add(st, s->a, s->b, err, sizeof err);
        if (s->kind == 'c') r = store_domain_set_catchall(st, s->a, s->b, err, sizeof err);
        if (r != 0) {
            failed++;
            printf("FAIL setup %zu %s: %s\n", i, s->a, err);
        }
    }
    for (size_t i = 0; i < sizeof wants / sizeof wants[0]; i++)
        check(st, i, &wants[i]);
    test_local_names(st);
    test_relay_lookup(st);

    test_implicit_tls();
    struct kconf *cs = conf_from(conf_s), *cm = conf_from(conf_m);
    if (cs && cm) {
        test_next(cs, cm);
        test_mx(cs, cm);
    } else {
        failed++;
        printf("FAIL test configs\n");
    }
    conf_free(cs);
    conf_free(cm);

    /* Quota is carried to the target. */
    struct route_result r;
    if (route_resolve(st, NULL, "info@example.test", &r) == ROUTE_LOCAL && r.ntargets == 1 &&
        r.targets[0].quota == 1024)
        passed++;
    else {
        failed++;
        printf("FAIL quota through alias\n");
    }
    route_result_clear(&r);
    route_result_clear(&r); /* twice is harmless */

    /* A closed/broken database gives ROUTE_ERROR: drop the tables under it. */
    sqlite3 *db;
    if (sqlite3_open(path, &db) == SQLITE_OK &&
        sqlite3_exec(db, "DROP TABLE aliases", NULL, NULL, NULL) == SQLITE_OK) {
        enum route_kind k = route_resolve(st, NULL, "demo@example.test", &r);
        if (k == ROUTE_ERROR && r.ntargets == 0)
            passed++;
        else {
            failed++;
            printf("FAIL db error gave %d\n", k);
        }
        route_result_clear(&r);
    } else {
        failed++;
        printf("FAIL cannot drop table\n");
    }
    sqlite3_close(db);

    store_free(st);
    char *cmd = xasprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", dir);
    free(cmd);
    free(path);
    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0;
}
