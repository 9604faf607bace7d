/* addr.h: RFC 5321 mailbox and path parser (pure, fuzzed). Domains are lowercased;
 * local parts are kept as written (quotes removed, quoted-pairs resolved). */
#ifndef KURIER_ADDR_H
#define KURIER_ADDR_H

#include <stddef.h>

enum addr_flag {
    ADDR_F_QUOTED = 1, /* local part was a quoted string */
    ADDR_F_UTF8 = 2,   /* contains non-ASCII (needs SMTPUTF8) */
    ADDR_F_IPLIT = 4,  /* domain is an address literal "[1.2.3.4]" / "[IPv6:...]" */
    ADDR_F_ROUTE = 8,  /* a source route "@a,@b:" preceded it and was dropped (RFC 5321 4.1.2) */
    ADDR_F_NULL = 16,  /* the null path "<>" */
};

enum addr_opt {
    ADDR_O_ALLOW_NULL = 1,  /* accept "<>" (reverse-path) */
    ADDR_O_UTF8 = 2,        /* accept UTF-8 (SMTPUTF8 given) */
    ADDR_O_NO_BRACKETS = 4, /* input is a bare mailbox "a@b" (CLI, sendmail) */
    ADDR_O_LOCAL_ONLY = 8,  /* with NO_BRACKETS: a bare local part without "@" is allowed */
};

#define ADDR_LOCAL_MAX 64   /* RFC 5321 4.5.3.1.1 */
#define ADDR_DOMAIN_MAX 255 /* RFC 5321 4.5.3.1.2 */
#define ADDR_PATH_MAX 256   /* RFC 5321 4.5.3.1.3, including the brackets */

struct addr {
    char *local;  /* NULL for the null path; unquoted */
    char *domain; /* lowercased, NULL for the null path or a bare local part */
    unsigned flags;
};

/* Parse a path at the start of p ("<...>", or a bare mailbox with ADDR_O_NO_BRACKETS).
 * Returns bytes consumed (>0) with out filled (caller frees with addr_clear()), or
 * -1 with *err set to a static English sentence ("domain missing", ...) and out
 * left empty. */
int addr_parse(const char *p, size_t len, unsigned opts, struct addr *out, const char **err);
void addr_clear(struct addr *a);
/* Deep copy into out. */
void addr_copy(struct addr *out, const struct addr *in);
/* "local@domain", quoting the local part when RFC 5321 needs it; "" for the null
 * path. New string, caller frees. */
char *addr_format(const struct addr *a);
/* 1 if the local part holds characters that old MTAs route on ('%', '!', '@' in a
 * quoted part); kurier never routes on them, this is for logging and tests. */
int addr_has_routing_chars(const struct addr *a);
/* Validate a domain name (LDH labels or U-labels with ADDR_O_UTF8), 1 ok, 0 not. */
int addr_domain_valid(const char *d, size_t len, unsigned opts);

#endif
