/* route.h: where each recipient goes. Pure decisions over the directory: no I/O of
 * its own beyond store lookups (call from a worker thread). */
#ifndef KURIER_ROUTE_H
#define KURIER_ROUTE_H

#include <stddef.h>

struct store;

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
};

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

#endif
