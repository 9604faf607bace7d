/* srs.h: the Sender Rewriting Scheme, in the format of libsrs2 (postsrsd, Exim's
 * SRS support), so an address one of them made reverses with the other:
 *   SRS0=HHHH=TT=orig-domain=orig-local@our-domain
 *   SRS1=HHHH=first-forwarder==HHHH=TT=orig-domain=orig-local@our-domain
 * HHHH: the first 4 base64 characters of HMAC-SHA1(secret, the lowercased fields
 * concatenated: TT, orig-domain, orig-local for SRS0; first-forwarder and the rest
 * after it for SRS1); TT: the day (days since 1970 UTC) modulo 1024 in two base32
 * characters (A-Z, 2-7). Pure: no I/O, no globals, the caller gives the day; who is
 * rewritten is deliver/'s business, reversing is route/'s. */
#ifndef KURIER_SRS_H
#define KURIER_SRS_H

#include <stddef.h>
#include <time.h>

#define SRS_SECRETS_MAX 16
#define SRS_SECRET_MIN 16  /* bytes; shorter secrets are refused */
#define SRS_SECRET_MAX 256 /* bytes */
#define SRS_HASH_LEN 4     /* base64 characters, as libsrs2's default */
#define SRS_DAYS 1024      /* the timestamp's period (two base32 characters) */

struct srs_secret {
    size_t len;
    unsigned char secret[SRS_SECRET_MAX];
};

/* Parse a secrets file (len bytes) as postsrsd reads one: one secret per line (spaces
 * around it trimmed), '#' comments and blank lines ignored. The first secret signs,
 * every secret verifies (rotation: add the new one on top). Fills s (room for
 * SRS_SECRETS_MAX) and *n. 0 done (at least one); -1 with *line (1-based, 0: the
 * whole file) and why filled. */
int srs_secrets_parse(const char *text, size_t len, struct srs_secret *s, size_t *n, int *line,
                      char *why, size_t whylen);

/* The rewritten form of sender ("local@domain") for the forwarding domain
 * srs_domain, signed with key on day today (days since the epoch): SRS0 for a plain
 * address, SRS1 for an address that is SRS0/SRS1 already (libsrs2's "guarded"
 * scheme). 0 done, -1 when sender has no '@' or an empty part, is a malformed SRS
 * address, or out (outsize bytes) is too small. */
int srs_forward(const struct srs_secret *key, const char *sender, const char *srs_domain,
                long today, char *out, size_t outsize);

enum srs_result {
    SRS_VALID = 0,
    SRS_NOT_SRS,   /* not an SRS0/SRS1 local part */
    SRS_MALFORMED, /* SRS tag, but fields missing or bad characters */
    SRS_BAD_HASH,  /* no secret makes this hash (compared ignoring case) */
    SRS_EXPIRED,   /* hash right, but older than max_days (or from the future) */
};

/* Reverse the local part local (len bytes; any content: remote data, fuzzed): check
 * the hash with each secret and, for SRS0, the timestamp (valid on its day and up to
 * max_days after, modulo SRS_DAYS); on SRS_VALID out holds where mail goes back to:
 * "orig-local@orig-domain" for SRS0, "SRS0...@first-forwarder" for SRS1. out is
 * written only on SRS_VALID (outsize too small: SRS_MALFORMED). */
enum srs_result srs_reverse(const char *local, size_t len, const struct srs_secret *keys,
                            size_t nkeys, long today, int max_days, char *out, size_t outsize);
/* "valid", "not SRS", "malformed", "bad hash", "expired" (static). */
const char *srs_result_name(enum srs_result r);
/* Is local (len bytes) an SRS0=/SRS1= local part (any case, separator = + or -)? */
int srs_is_srs(const char *local, size_t len);

/* Days since the epoch at time now. */
long srs_day(time_t now);

struct kconf;
/* SRS is on: c has srs { domain } and its secrets loaded. */
int srs_enabled(const struct kconf *c);
/* Validity of addresses in days: srs { max_age } rounded up to whole days. */
int srs_max_days(const struct kconf *c);
/* The rewritten sender for a forward at time now, as a new string; NULL when SRS is
 * off, sender is empty, has no '@', is in srs { domain } already, or is longer than
 * an address may be (RFC 5321 4.5.3.1: 256 bytes with the brackets). The caller has
 * decided that sender is not one of ours. */
char *srs_forward_new(const struct kconf *c, const char *sender, time_t now);

#endif
