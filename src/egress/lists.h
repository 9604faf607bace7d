/* lists.h: DNS block lists (RFC 5782) as the egress side sees them: the built-in
 * table of common lists (zone, kind, refusal codes, delisting page) and an async
 * check of one address or domain against many lists at once through dns/. Used by
 * "kurier rbl check" and the egress self-monitor. */
#ifndef KURIER_EGRESS_LISTS_H
#define KURIER_EGRESS_LISTS_H

#include <stddef.h>
#include <stdint.h>

struct dns;

enum egress_list_kind {
    EGRESS_LIST_IP = 0, /* lists addresses: reversed IPv4 octets / IPv6 nibbles */
    EGRESS_LIST_DOMAIN, /* lists domains (RHSBL, URI lists): DOMAIN.ZONE */
};

/* One known list. Answers outside 127.0.0.0/8, Spamhaus's 127.255.255.252-255 (for
 * every list) and the list's own refused[] ranges mean "query refused" (a public
 * resolver, no registration, too many queries), never "listed". */
struct egress_list {
    const char *name; /* "Spamhaus ZEN" */
    const char *zone; /* "zen.spamhaus.org" */
    enum egress_list_kind kind;
    struct {
        uint32_t lo, hi; /* answer addresses in host order, inclusive; 0-0 unused */
    } refused[2];
    const char *delist; /* lookup/delisting page; "{}" stands for the address or
                           domain checked; NULL: none known */
};

/* The built-in table, in the order "kurier rbl check" prints it. */
extern const struct egress_list egress_lists[];
extern const size_t egress_nlists;

/* The built-in entry of a zone (case-insensitive, trailing dot ignored), or NULL. */
const struct egress_list *egress_list_find(const char *zone);

/* 1 when the answer a (4 bytes, network order) to a query of list l (NULL: a list
 * not in the table) is a refusal rather than a listing, else 0. */
int egress_list_is_refusal(const struct egress_list *l, const unsigned char a[4]);

/* The query name of subject under zone: "4.3.2.1.zone" for IPv4 1.2.3.4, 32 nibbles
 * for IPv6 (a v4-mapped address as IPv4), "example.org.zone" for a domain. *kind
 * (may be NULL) tells which the subject is. 0 done; -1 when the subject is neither an
 * address nor a plausible domain, or out is too small (300 bytes suffice). */
int egress_list_qname(const char *subject, const char *zone, enum egress_list_kind *kind, char *out,
                      size_t outsize);

/* The delisting page of l for subject, "{}" replaced. Returns out; "" when l is NULL
 * or has no page. */
const char *egress_list_delist_url(const struct egress_list *l, const char *subject, char *out,
                                   size_t outsize);

/* --- checking a subject against lists ---------------------------------------------- */

enum egress_rbl_status {
    EGRESS_RBL_NOT_LISTED = 0, /* NXDOMAIN / no A record, or codes the filter ignores */
    EGRESS_RBL_LISTED,         /* a listing code */
    EGRESS_RBL_REFUSED,        /* only refusal codes: the list would not answer */
    EGRESS_RBL_ERROR,          /* DNS failure or timeout */
};

struct egress_rbl_result {
    char zone[254];                  /* as given (lowercased) */
    const struct egress_list *known; /* its built-in entry, or NULL */
    enum egress_rbl_status status;
    char codes[128];  /* the A answers, "127.0.0.2,127.0.0.4" ("" when none) */
    char txt[512];    /* LISTED: the TXT record (printable ASCII, spaces folded) */
    char delist[512]; /* LISTED: the delisting page, "" when none known */
    char error[128];  /* ERROR: the resolver's reason */
};

/* "not listed", "listed", "refused", "error". */
const char *egress_rbl_status_name(enum egress_rbl_status s);

struct egress_rbl_check;
/* Called once with every list's result, in the order of the specs; res is valid only
 * during the call. Runs on the loop thread, never inside egress_rbl_check_start(). */
typedef void (*egress_rbl_cb)(void *arg, const struct egress_rbl_result *res, size_t n);

/* Check subject (IPv4, IPv6 or domain) against the lists specs[0..nspecs-1]: each
 * "ZONE" or "ZONE=FILTER" (the dnsbl_sites syntax, conf.h; a FILTER limits which
 * codes count as listed; a "*WEIGHT" is ignored). All A queries go out at once; a
 * listed zone's TXT record is asked next. Returns a handle for
 * egress_rbl_check_cancel(), valid until cb ran; NULL with err filled when the
 * subject or a spec is bad (nothing is started then). */
struct egress_rbl_check *egress_rbl_check_start(struct dns *dns, const char *subject,
                                                const char *const *specs, size_t nspecs,
                                                egress_rbl_cb cb, void *arg, char *err,
                                                size_t errsize);
/* Cancel: no callback runs. NULL does nothing. */
void egress_rbl_check_cancel(struct egress_rbl_check *c);

#endif
