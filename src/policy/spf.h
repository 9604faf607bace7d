/* spf.h: SPF (RFC 7208). spf_record.c parses a record and expands macros (pure,
 * fuzzed); spf.c evaluates check_host() on the async resolver (dns.h). Kept apart
 * from policy.h so the pipeline's contract stays short; the pipeline check that
 * uses it is declared there. */
#ifndef KURIER_POLICY_SPF_H
#define KURIER_POLICY_SPF_H

#include <stddef.h>
#include <sys/socket.h>

struct dns;
struct event_base;

enum spf_result {
    SPF_NONE = 0,
    SPF_NEUTRAL,
    SPF_PASS,
    SPF_FAIL,
    SPF_SOFTFAIL,
    SPF_TEMPERROR,
    SPF_PERMERROR,
};

/* "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror". */
const char *spf_result_name(enum spf_result r);

/* --- the record (spf_record.c, pure) ------------------------------------------ */

enum spf_mech {
    SPF_M_ALL,
    SPF_M_INCLUDE,
    SPF_M_A,
    SPF_M_MX,
    SPF_M_PTR,
    SPF_M_IP4,
    SPF_M_IP6,
    SPF_M_EXISTS
};

struct spf_term {
    enum spf_mech mech;
    char qual;            /* '+', '-', '~', '?' */
    char *spec;           /* domain-spec as written (macros unexpanded), NULL when absent */
    int cidr4;            /* a, mx, ip4: prefix length (32 when not given) */
    int cidr6;            /* a, mx, ip6: prefix length (128 when not given) */
    unsigned char ip[16]; /* ip4 (first 4 bytes), ip6 */
};

struct spf_record {
    struct spf_term *terms;
    size_t nterms;
    char *redirect; /* domain-spec of redirect=, NULL when absent */
    char *exp;      /* domain-spec of exp=, NULL when absent */
};

/* 1 when txt (len bytes, may hold NULs) is an SPF version 1 record: "v=spf1"
 * (case-insensitive) alone or followed by a space (RFC 7208 4.5). */
int spf_record_is_v1(const char *txt, size_t len);
/* Parse a whole record (RFC 7208 4.6, 5, 6, 7.1): every term is checked before
 * any is evaluated. 0 done, rec filled (free with spf_record_free()); -1 syntax
 * error (a permerror), err holds why and rec is empty. */
int spf_record_parse(const char *txt, size_t len, struct spf_record *rec, char *err,
                     size_t errsize);
/* Free rec's contents; the struct itself stays. An empty rec is fine. */
void spf_record_free(struct spf_record *rec);

/* What macros expand to (RFC 7208 7.2). All strings borrowed. */
struct spf_macro_env {
    const char *sender;         /* s: local-part@domain */
    const char *local;          /* l */
    const char *sender_domain;  /* o */
    const char *domain;         /* d: the current domain */
    const char *helo;           /* h */
    const char *ptr;            /* p: validated client name, or NULL for "unknown" */
    const char *receiver;       /* r (exp only): our host name */
    struct sockaddr_storage ip; /* i, c, v: IPv4 or IPv6 (v4-mapped already unmapped) */
    long long now;              /* t (exp only) */
};

/* Expand the macro-string spec (len bytes). is_exp: an explanation string, where
 * c, r and t are allowed. is_domain: the result is a domain name, shortened to at
 * most 253 bytes by dropping left labels (7.3). 0 done with out NUL-terminated; -1
 * syntax error or out too small (at least 512 bytes suffice for a domain). */
int spf_macro_expand(const char *spec, size_t len, const struct spf_macro_env *env, int is_exp,
                     int is_domain, char *out, size_t outsize);
/* 1 when name is a usable domain for a DNS query: 1..63 byte labels, no empty label
 * (one trailing dot allowed), at most 253 bytes, at least two labels, not a
 * domain literal, a top label not all digits. */
int spf_domain_ok(const char *name);

/* --- evaluation (spf.c) ------------------------------------------------------- */

struct spf_check;
/* result, and a sentence: the exp= explanation when from_exp (fail only, RFC
 * 7208 6.2; peer text, escape before logging), else kurier's own reason. Both
 * borrowed for the call. */
typedef void (*spf_cb)(void *arg, enum spf_result r, const char *text, int from_exp);

/* check_host() for client ip and the MAIL FROM address sender (local@domain; "" or
 * NULL for the null sender: then postmaster@helo is checked, RFC 7208 2.4).
 * receiver: our host name for %{r} (NULL: "unknown"). cb runs once on base's loop,
 * never inside this call, unless spf_check_cancel() came first. Strings are
 * copied. Returns the handle. */
struct spf_check *spf_check_start(struct event_base *base, struct dns *dns,
                                  const struct sockaddr *ip, const char *sender, const char *helo,
                                  const char *receiver, spf_cb cb, void *arg);
/* Cancel: its DNS queries are cancelled and cb will not run. NULL-safe. Not from
 * inside cb (the check is already gone then). */
void spf_check_cancel(struct spf_check *c);

/* The Received-SPF: header field (RFC 7208 9.1) for a result, without the trailing
 * CRLF, folded before the key-value list: "Received-SPF: fail (mx.example.net:
 * TEXT) receiver=...; client-ip=...; envelope-from=\"...\"; helo=...;
 * identity=mailfrom|helo". text (the explanation or reason) becomes the comment,
 * with control characters dropped and parentheses and backslashes quoted; the
 * envelope-from and helo values are quoted-strings. sender "" means the null
 * sender (identity=helo). 0 done, -1 out too small (1 KiB always suffices for
 * names within RFC 5321 limits). */
int spf_received_header(char *out, size_t outsize, enum spf_result r, const char *text,
                        const char *receiver, const char *client_ip, const char *sender,
                        const char *helo);

#endif
