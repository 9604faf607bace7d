/* batv.h: BATV "prvs" tags of envelope senders (draft-levine-smtp-batv-01), the
 * way Exim's ${prvs} and ${prvscheck} make them, so a tag either one made checks
 * with the other: prvs=KDDDSSSSSS=local@domain, K the key number (0-9), DDD the day
 * the tag expires (days since 1970-01-01 UTC, modulo 1000), SSSSSS the first three
 * bytes of HMAC-SHA1(secret, "K" "DDD" "local@domain") in hex. Pure: no I/O, no
 * globals, the caller gives the day. Who signs and who is checked is deliver/'s and
 * policy/batv.c's; kconf's batv { } settings are read by the last three functions. */
#ifndef KURIER_BATV_H
#define KURIER_BATV_H

#include <stddef.h>
#include <time.h>

#define BATV_KEYS_MAX 10    /* key numbers 0-9 */
#define BATV_SECRET_MIN 16  /* bytes; shorter secrets are refused */
#define BATV_SECRET_MAX 256 /* bytes */

struct batv_key {
    int num; /* 0-9 */
    size_t len;
    unsigned char secret[BATV_SECRET_MAX];
};

/* Parse a key file (len bytes): one key per line, "K SECRET" (K a digit, SECRET the
 * rest of the line, spaces around it trimmed), '#' comments and blank lines ignored.
 * The first key signs, every key verifies. Fills keys (room for BATV_KEYS_MAX) and
 * *nkeys. 0 done (at least one key); -1 with *line (1-based, 0: the whole file) and
 * why filled. */
int batv_keys_parse(const char *text, size_t len, struct batv_key *keys, size_t *nkeys, int *line,
                    char *why, size_t whylen);

/* The tagged address for addr ("local@domain", the domain lowercased as kurier keeps
 * it), made with key, expiring at the end of day expiry_day (days since the epoch):
 * "prvs=KDDDSSSSSS=local@domain" (hex in lower case, as Exim writes it). 0 done, -1
 * when addr has no '@' or out (outsize bytes) is too small. */
int batv_sign(const struct batv_key *key, const char *addr, long expiry_day, char *out,
              size_t outsize);

/* A tag found in a local part. */
struct batv_tag {
    int keynum;        /* K */
    int day;           /* DDD, 0-999 */
    char hash[6];      /* SSSSSS, lower case */
    const char *local; /* the untagged local part: points into the parsed text */
    size_t local_len;  /* > 0 */
};

/* Parse a local part (len bytes, any content: remote data; fuzzed) as
 * "prvs=KDDDSSSSSS=LOCAL" ("prvs" and the hex digits in any case, LOCAL not empty).
 * 1 a tag (out filled), 0 not one (out untouched). */
int batv_parse(const char *local, size_t len, struct batv_tag *out);

enum batv_result {
    BATV_VALID = 0,
    BATV_NOKEY,   /* no key with the tag's number */
    BATV_BAD,     /* the signature does not match */
    BATV_EXPIRED, /* signature right, but the day has passed */
};

/* Check tag t for the address LOCAL@domain (domain compared in lower case) on day
 * today (days since the epoch): signature (the key with t's number, compared in
 * constant time), then the day: valid when today is DDD or up to max_days before
 * it, modulo 1000. */
enum batv_result batv_verify(const struct batv_tag *t, const char *domain,
                             const struct batv_key *keys, size_t nkeys, long today, int max_days);
/* "valid", "unknown key", "bad signature", "expired" (static). */
const char *batv_result_name(enum batv_result r);

/* Days since the epoch at time now. */
long batv_day(time_t now);

struct kconf;
/* Is BATV on for domain by c's batv { domains }? 1 listed, 0 not (or no keys
 * loaded), 2 "all": on when the domain is one we host, which the caller asks its
 * directory. */
int batv_domain_on(const struct kconf *c, const char *domain);
/* Validity of tags in days: batv { max_age } rounded up to whole days. */
int batv_max_days(const struct kconf *c);
/* The signed form of sender (local@domain) made with c's first key at time now, as
 * a new string; NULL when c has no keys, sender has no '@' or is tagged already. The
 * caller has decided that sender's domain is on (batv_domain_on()). */
char *batv_sign_new(const struct kconf *c, const char *sender, time_t now);

#endif
