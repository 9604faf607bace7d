/* dmarc.h: DMARC's pure parts (RFC 7489): the policy record parser, the public suffix
 * list and organisational domains, identifier alignment. Lookups and actions belong
 * to policy/dmarc.c. */
#ifndef KURIER_DMARC_H
#define KURIER_DMARC_H

#include <stddef.h>

enum dmarc_policy { DMARC_P_NONE = 0, DMARC_P_QUARANTINE, DMARC_P_REJECT };

struct dmarc_record {
    enum dmarc_policy p;
    enum dmarc_policy sp; /* = p when no sp= */
    int pct;              /* 0..100, default 100 */
    int adkim_strict, aspf_strict;
    int has_rua;
};

/* Parse a TXT record (remote data). 1: a DMARC record (starts with v=DMARC1) parsed
 * into r; 0: not a DMARC record (other TXT records at the name are ignored); -1: a
 * DMARC record that is broken (bad p=, pct= out of range, bad tag list) with a reason
 * in err. RFC 7489 6.6.3: a missing or bad p= with a valid rua= is taken as p=none. */
int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *r, char *err,
                       size_t errsize);

const char *dmarc_policy_name(enum dmarc_policy p);

/* The public suffix list (publicsuffix.org format, as Debian's publicsuffix package
 * ships it). */
struct psl;
/* Parse the list's text (len bytes): rules, "*." wildcards, "!" exceptions, comments.
 * Never fails (an empty list leaves only the default rule "*"). Free with psl_free. */
struct psl *psl_parse(const char *text, size_t len);
void psl_free(struct psl *l); /* NULL-safe */
/* The organisational domain of domain (lowercase, without final dot): the public
 * suffix plus one label (RFC 7489 3.2), written to out. l NULL: the default rule
 * only (the last two labels). 0 done; -1 domain is itself a public suffix or too long
 * (out gets domain). */
int psl_org_domain(const struct psl *l, const char *domain, char *out, size_t outsize);

/* Identifier alignment (RFC 7489 3.1): 1 when a and b (lowercase domains) are equal,
 * or, relaxed (strict 0), have the same organisational domain. */
int dmarc_aligned(const struct psl *l, const char *a, const char *b, int strict);

/* The domain of the one address in a From: field value (remote data): 0 with the
 * lowercase domain in out; -1 none, several addresses, or malformed. */
int dmarc_from_domain(const char *value, size_t len, char *out, size_t outsize);

#endif
