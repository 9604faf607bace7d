/* route.h: where each recipient goes (route_resolve: local mailbox, alias, remote)
 * and, for remote mail, the next hops (route_next: sender relay, transport,
 * relay_host, MX). Pure decisions: no I/O of its own beyond store lookups (call those
 * from a worker thread). */
#ifndef KURIER_ROUTE_H
#define KURIER_ROUTE_H

#include <stddef.h>

#include "core/core.h"

struct store;
struct store_relay;
struct dns_result;

enum route_kind {
    ROUTE_LOCAL = 0, /* a local mailbox: deliver to maildir */
    ROUTE_REMOTE,    /* not one of our domains */
    ROUTE_NOUSER,    /* our domain, no such mailbox/alias and no catch-all */
    ROUTE_ERROR,     /* directory failure: temporary */
    ROUTE_LOOP,      /* alias expansion too deep or circular */
};

struct route_target {
    enum route_kind kind; /* ROUTE_LOCAL or ROUTE_REMOTE */
    char *addr;           /* final address: mailbox "local@domain" or remote address */
    long long quota;      /* ROUTE_LOCAL: mailbox quota in bytes, 0 = none */
};

struct route_result {
    enum route_kind kind;         /* overall: LOCAL when all targets are deliverable */
    struct route_target *targets; /* after alias expansion; 1 for a plain mailbox */
    size_t ntargets;
};

/* RFC 5321 4.5.1: postmaster@ each of our domains, and postmaster@hostname (what a
 * bare "RCPT TO:<Postmaster>" becomes), must be accepted and reach somebody. */
struct route_postmaster {
    const char *hostname; /* our host name: postmaster@it is ours even when it is not
                             a hosted domain */
    const char *address;  /* where postmaster goes when the domain has no alias,
                             mailbox or catch-all for it (conf "postmaster") */
    /* Reverse SRS (core/srs.h, docs/forwarding.md) with this config's srs { }: an
     * SRS0=/SRS1= local part in srs { domain } or a hosted domain goes back to the
     * address it stands for when its hash and age check out on day srs_today, else it
     * is no such user. NULL: no SRS. */
    const struct kconf *srs;
    long srs_today;
    /* Local system mail (conf "aliases", "local_admin"; either one turns it on): a
     * local name (NAME@hostname or NAME@localhost, hostname not hosted; or one the
     * directory does not know when it is) goes through aliases, else to local_admin,
     * else is NOUSER; never remote as it is. Borrowed. */
    const struct aliases *aliases; /* NULL = no aliases file */
    const char *local_admin;       /* NULL = none */
};

/* pm filled from c (hostname, postmaster, srs for today, aliases, local_admin), borrowing from c:
 * valid while the caller holds c. */
void route_postmaster_init(struct route_postmaster *pm, const struct kconf *c);

/* Resolve address (local@domain, domain lowercased). Aliases expand recursively
 * (depth 10); a catch-all applies only to a local part that is neither a mailbox nor
 * an alias. postmaster@ a hosted domain or pm->hostname with none of these goes to
 * pm->address (resolved the same way; pm NULL: no such fallback); that address in
 * pm->hostname when it is not a hosted domain gives ROUTE_NOUSER (it would come back
 * to us). result is filled in every case; free with route_result_clear(). Returns
 * result->kind. */
enum route_kind route_resolve(struct store *st, const struct route_postmaster *pm,
                              const char *address, struct route_result *result);
void route_result_clear(struct route_result *r);

/* --- the next hop of remote mail (deliver/remote.c asks) -------------------------
 * The order, first match wins (as Postfix's trivial-rewrite with sender_dependent_
 * relayhost_maps, transport_maps and relayhost):
 *   1. a relay route for the envelope sender (kurier relay add: "user@domain", then
 *      "@domain"), with the customer's login there;
 *   2. transport DOMAIN { } for the recipient domain (exact name beats ".name", the
 *      longest ".name" wins): its relay hosts, or the domain's MX with its tls;
 *   3. relay_host (smarthosts, in order);
 *   4. the recipient domain's MX (route_mx turns the answer into hosts).
 * Each host is tried in turn; remote.c owns connections, DNS and the SMTP dialogue. */

#define ROUTE_MAX_HOPS 16 /* hosts tried per job; later ones are ignored */

enum route_hop_kind {
    ROUTE_HOP_HOST = 0, /* connect to name:port (a relay, an MX host, an IP literal) */
    ROUTE_HOP_MX,       /* look up the MX of name first, then route_mx() */
};

struct route_hop {
    enum route_hop_kind kind;
    char name[256]; /* host name (lowercased) or IP literal without brackets; for
                       ROUTE_HOP_MX the recipient domain as given */
    int port;
    int pref;              /* MX preference; -1 for relays and ROUTE_HOP_MX */
    int implicit_mx;       /* the domain itself (no MX record): no A/AAAA is permanent */
    enum conf_out_tls tls; /* STARTTLS policy towards this hop */
    int implicit_tls;      /* TLS from the first byte (port 465; "tls implicit"); tls is
                              then ENCRYPT, or VERIFY when outbound { tls verify } */
    /* Credentials reference: borrowed from the relay route given to route_next()
     * (live as long as it); NULL = no AUTH. */
    const char *auth_user, *auth_pass;
};

enum route_next_status {
    ROUTE_NEXT_OK = 0, /* hops filled (nhops may be 0: nothing usable in a host list) */
    ROUTE_NEXT_TEMP,   /* try again later: dsn and text say why */
    ROUTE_NEXT_PERM,   /* never deliverable this way: dsn and text say why */
};

struct route_next {
    enum route_next_status status;
    char dsn[8];     /* when not OK: "4.3.0", "5.1.10", ... */
    char text[512];  /* when not OK: for the log line and the DSN */
    const char *via; /* static, for debug logs: "sender route", "transport",
                        "relay_host", "MX" */
    struct route_hop hops[ROUTE_MAX_HOPS];
    size_t nhops;
};

/* The relay route of an envelope sender (store_relay_get(): the exact address first,
 * then "@domain"; none for the null sender) as a new object in *out (NULL when none
 * or on error). Blocks on the directory: call from a worker thread. Returns 1 found,
 * 0 none, -1 directory error. Free with route_relay_free(). */
int route_relay_lookup(struct store *st, const char *sender, struct store_relay **out);
/* Wipe the password and free. NULL does nothing. */
void route_relay_free(struct store_relay *r);

/* The next hops for mail to domain (a recipient domain; one job, one domain).
 * relay/relay_rc: route_relay_lookup()'s answer for the envelope sender (relay NULL
 * and rc 0 when none was looked up, e.g. for the null sender); a directory error
 * (-1) is a temporary failure. A relay route with a login but tls none or may is a
 * temporary failure too: a password never goes out without TLS. The result borrows
 * relay's credentials. A ROUTE_HOP_MX hop is always the only hop. Pure: no I/O, no
 * globals. Returns out->status. */
enum route_next_status route_next(const struct kconf *c, const char *domain,
                                  const struct store_relay *relay, int relay_rc,
                                  struct route_next *out);

/* The transport DOMAIN { } block for a recipient domain (the exact name beats
 * ".name", the longest ".name" wins; as route_next picks it), or NULL. A block with
 * relay_domain makes the domain one we accept mail for (docs/inbound.md). Pure. */
const struct conf_transport *route_transport(const struct kconf *c, const char *domain);

/* Replace out's hops with the hosts behind the ROUTE_HOP_MX hop mx (copied first:
 * mx may point into out), given the MX answer res for its domain (RFC 5321 5.1):
 * the MX hosts by preference (as ordered by dns/); no MX record (NODATA): the domain
 * itself, an implicit MX; a null MX (RFC 7505) or no usable host: 5.1.10; no such
 * domain: 5.1.2; a DNS failure: temporary 4.4.3; when our hostname (or outbound
 * helo) is among the MX hosts, only better preferences are kept, and none left is a
 * loop (5.4.6). Hosts inherit mx's port, tls and credentials. Pure. Returns
 * out->status. */
enum route_next_status route_mx(const struct kconf *c, const struct route_hop *mx,
                                const struct dns_result *res, struct route_next *out);

/* --- egress pools (docs/egress.md) ------------------------------------------------
 * Which egress pool remote mail goes out from: the first pool whose accounts has
 * auth_user (the sender's login, NULL when none), else the first whose
 * sender_domains has the envelope sender's domain (case-insensitive; none for the
 * null sender), else the first whose listeners has listener (the listen address the
 * mail came in on as written in its listen block, NULL for local submission), else
 * the pool with default on; NULL when no pool applies (the system's default source
 * address). Pure. The result points into c. */
const struct conf_egress_pool *route_pool(const struct kconf *c, const char *sender,
                                          const char *auth_user, const char *listener);

/* The hops of a host list "HOST[:PORT] ..." (a pool's fallback relay), with outbound's
 * tls and no login, as relay_host's. Pure. Returns out->status (OK). */
enum route_next_status route_hosts(const struct kconf *c, const char *hosts,
                                   struct route_next *out);

#endif
