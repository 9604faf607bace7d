/* rdns.h: what the reverse DNS of a client said, one enum from the lookup
 * (dns_client_name()) through the session to the policy checks (policy/pregreet.c).
 * It lives in core because dns/, smtp/ and policy/ all need it. */
#ifndef KURIER_RDNS_H
#define KURIER_RDNS_H

enum rdns_status {
    RDNS_UNCHECKED = 0, /* not looked up (reverse_dns off) */
    RDNS_OK,            /* a PTR whose name's A/AAAA records include the address */
    RDNS_NO_PTR,        /* no PTR record (NXDOMAIN or no data): permanent */
    RDNS_MISMATCH,      /* a PTR whose name does not resolve back to the address */
    RDNS_TEMPFAIL,      /* a DNS failure or timeout: nothing is known */
};

#endif
