/* dns.h: the only place that talks DNS. An async resolver on libunbound inside the
 * libevent loop (ub_fd watched by an event): A, AAAA, MX, TXT, PTR, TLSA, with the
 * DNSSEC "secure" flag. Answers are cached by libunbound per TTL. The rdata parsers
 * are pure functions (fuzzed). */
#ifndef KURIER_DNS_H
#define KURIER_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/rdns.h"

struct event_base;
struct dns;
struct dns_query;

enum dns_status {
    DNS_OK = 0,   /* records in the result */
    DNS_NXDOMAIN, /* the name does not exist: permanent */
    DNS_NODATA,   /* the name exists, no record of that type: permanent */
    DNS_TEMPFAIL, /* SERVFAIL, timeout, network: try again later */
    DNS_BOGUS,    /* DNSSEC validation failed: treat as temporary */
};

struct dns_mx {
    uint16_t pref;
    char host[256]; /* lowercased, no trailing dot; "" for a null MX (RFC 7505) */
};

struct dns_tlsa {
    uint8_t usage, selector, mtype;
    unsigned char *data;
    size_t len;
};

struct dns_result {
    enum dns_status status;
    int secure;      /* answer validated by DNSSEC */
    int ttl;         /* seconds (minimum of the records) */
    const char *why; /* for TEMPFAIL/BOGUS: a short English reason, static */
    /* MX: sorted by preference, equal preferences shuffled. null_mx set when the
     * only record is "0 ." */
    struct dns_mx *mx;
    size_t nmx;
    int null_mx;
    /* A / AAAA: port 0 */
    struct sockaddr_storage *addrs;
    size_t naddrs;
    /* TXT: each record's strings joined; PTR: names without trailing dot */
    char **strs;
    size_t nstrs;
    /* TXT only: every record's strings joined, byte-exact (txt_len[i] bytes, may
     * hold NULs, NUL-terminated after them); strs leaves out records with a NUL.
     * SPF needs them: a "v=spf1" record with a NUL is a permerror, not "none". */
    char **txt;
    size_t *txt_len;
    size_t ntxt;
    struct dns_tlsa *tlsa;
    size_t ntlsa;
};

/* Create a resolver on base. resolver: NULL or "" = the system's /etc/resolv.conf;
 * else "IP" or "IP@PORT" of a forwarder (tests use "127.0.0.1@5353"). trust_anchor:
 * a root key file for DNSSEC validation, or NULL for none. insecure_domains: NULL or
 * a NULL-terminated list of domains below which answers are not validated and
 * built-in empty zones are lifted ("test." for the test zones). When forwarding
 * (a resolver given, or one from resolv.conf), every name but localhost goes to the
 * forwarder, also the special-use names (test., home.arpa., onion., invalid.,
 * private and loopback reverse zones) that libunbound would answer itself. NULL
 * on error with err filled. */
struct dns *dns_new(struct event_base *base, const char *resolver, const char *trust_anchor,
                    const char *const *insecure_domains, char *err, size_t errsize);
/* Cancel every query (no callback runs) and free. NULL-safe. */
void dns_free(struct dns *d);

/* Callback: runs on the loop thread, never before the query function returned.
 * r is valid only during the call. */
typedef void (*dns_cb)(void *arg, const struct dns_result *r);

/* Start queries. Return a handle valid until the callback ran or dns_cancel(). */
struct dns_query *dns_query_mx(struct dns *d, const char *domain, dns_cb cb, void *arg);
struct dns_query *dns_query_a(struct dns *d, const char *host, dns_cb cb, void *arg);
struct dns_query *dns_query_aaaa(struct dns *d, const char *host, dns_cb cb, void *arg);
struct dns_query *dns_query_txt(struct dns *d, const char *name, dns_cb cb, void *arg);
/* PTR of an address (builds the in-addr.arpa / ip6.arpa name). */
struct dns_query *dns_query_ptr(struct dns *d, const struct sockaddr *sa, dns_cb cb, void *arg);
/* TLSA of _PORT._tcp.HOST */
struct dns_query *dns_query_tlsa(struct dns *d, const char *host, int port, dns_cb cb, void *arg);
void dns_cancel(struct dns_query *q);

/* Pure rdata parsers (wire format as libunbound returns it). 0 done, -1 malformed. */
int dns_parse_mx(const unsigned char *rdata, size_t len, struct dns_mx *out);
/* TXT rdata: character-strings joined into out (NUL-terminated, at most outsize-1
 * bytes; longer text is -1). */
int dns_parse_txt(const unsigned char *rdata, size_t len, char *out, size_t outsize);
/* The same, byte-exact: NULs allowed, *outlen set (out NUL-terminated after them). */
int dns_parse_txt_bytes(const unsigned char *rdata, size_t len, char *out, size_t outsize,
                        size_t *outlen);
/* A domain name in uncompressed wire format into dotted text, lowercased, no
 * trailing dot ("" for the root). Returns bytes of rdata used, -1 malformed. */
int dns_parse_name(const unsigned char *rdata, size_t len, char *out, size_t outsize);
/* TLSA rdata (RFC 6698 2.1): out->data points into rdata (borrowed, not copied).
 * -1 when shorter than 4 bytes or a SHA-256/512 digest has the wrong length. */
int dns_parse_tlsa(const unsigned char *rdata, size_t len, struct dns_tlsa *out);

/* The reverse name of an address: "20.0.0.127.in-addr.arpa", nibbles under
 * "ip6.arpa" (a v4-mapped IPv6 address as IPv4). 0 done, -1 unknown family or out
 * too small (73 bytes always suffice). */
int dns_ptr_name(const struct sockaddr *sa, char *out, size_t outsize);
/* Order MX records in place: null-MX entries (host "") dropped when real
 * hosts exist, the rest sorted by preference, equal preferences shuffled with
 * rnd(rnd_arg) (NULL rnd: not shuffled, order among equals unspecified). Returns
 * the new count; when every record names the root, *null_mx = 1 and one "0 ."
 * record is left (RFC 7505). */
size_t dns_mx_sort(struct dns_mx *mx, size_t n, uint32_t (*rnd)(void *), void *rnd_arg,
                   int *null_mx);
/* Give up on a query after seconds (default 30): the callback gets
 * DNS_TEMPFAIL with why "timeout". libunbound's own retries may end sooner with
 * SERVFAIL. */
void dns_set_timeout(struct dns *d, int seconds);
/* "ok", "nxdomain", "nodata", "tempfail", "bogus". */
const char *dns_status_name(enum dns_status s);

struct dns_client_name;
/* The verified name of a client at sa (forward-confirmed reverse DNS): its PTR name,
 * when that name's A (IPv4) or AAAA (IPv6) records include the address. done(arg,
 * name, st, ptr) runs once on the loop, never inside this call: name is the host
 * name, or "unknown" (no PTR, not confirmed, a DNS failure, or no answer within 10
 * seconds); st says which (RDNS_OK, RDNS_NO_PTR, RDNS_MISMATCH, RDNS_TEMPFAIL); ptr
 * is the PTR name found, confirmed or not ("" when none). Both strings are borrowed
 * for the call. Returns a handle for dns_client_name_cancel(). */
struct dns_client_name *dns_client_name(struct dns *d, const struct sockaddr *sa,
                                        void (*done)(void *arg, const char *name,
                                                     enum rdns_status st, const char *ptr),
                                        void *arg);
/* done will not run. */
void dns_client_name_cancel(struct dns_client_name *n);

#endif
