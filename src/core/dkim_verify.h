/* dkim_verify.h: the pure parts of DKIM verification (RFC 6376, RFC 8463, RFC 8301):
 * the tag-list parser, the DKIM-Signature and key record parsers, canonicalization
 * (header and streaming body, relaxed and simple) and the signature check with
 * OpenSSL. No I/O, no DNS: policy/dkim_check.c looks keys up and keeps the state. */
#ifndef KURIER_DKIM_VERIFY_H
#define KURIER_DKIM_VERIFY_H

#include <stddef.h>

/* --- tag lists (RFC 6376 3.2) -------------------------------------------------------- */

enum { DKIM_TAGS_MAX = 32 };

struct dkim_tag {
    char name[16];   /* the tag name (ALPHA *(ALNUM / "_")), case as written */
    const char *val; /* its value (points into the input), white space around removed */
    size_t len;
};

/* Parse a tag-list (remote data, len bytes, folding white space allowed). 0 with
 * tags[0..*n) filled; -1 for a malformed list (a tag without "=", a bad name or value
 * character, a name used twice, more than max tags) with a reason in err. */
int dkim_tags_parse(const char *p, size_t len, struct dkim_tag *tags, size_t max, size_t *n,
                    char *err, size_t errsize);

/* --- DKIM-Signature ------------------------------------------------------------------- */

enum dkim_alg { DKIM_RSA_SHA256 = 0, DKIM_RSA_SHA1, DKIM_ED25519_SHA256 };

enum { DKIM_HNAMES_MAX = 64 };

struct dkim_sig {
    enum dkim_alg alg;
    int hrelaxed, brelaxed; /* c=: relaxed header / body canonicalization */
    unsigned char b[1024];  /* the signature (up to 8192-bit RSA) */
    size_t blen;
    char b_head[16];      /* the first 8 characters of b= (RFC 6008 header.b) */
    unsigned char bh[64]; /* the body hash */
    size_t bhlen;
    char d[256], s[64], i[320];
    char hnames[DKIM_HNAMES_MAX][80]; /* h=, lowercased */
    size_t nh;
    long long l; /* body length or -1 */
    long long t; /* signing time or -1 */
    long long x; /* expiry or -1 */
};

/* Parse a DKIM-Signature value (remote data, the field's value after the colon).
 * 0 done; -1 a permanent error with a reason in err (missing or bad required tag,
 * v= not 1, unknown algorithm or canonicalization, h= without from, i= outside d=,
 * x= before t=). d= and s= are filled as far as they were read, for the result line.
 * rsa-sha1 parses (alg DKIM_RSA_SHA1): RFC 8301 forbids accepting it; the caller
 * says so. */
int dkim_sig_parse(const char *value, size_t len, struct dkim_sig *sig, char *err, size_t errsize);

/* --- key records (RFC 6376 3.6.1, RFC 8463) ------------------------------------------ */

enum dkim_ktype { DKIM_KEY_RSA = 0, DKIM_KEY_ED25519 };

struct dkim_key {
    enum dkim_ktype type;
    unsigned char p[1100]; /* the public key: DER for RSA, 32 raw bytes for Ed25519 */
    size_t plen;           /* 0: revoked (empty p=) */
    int sha1_only;         /* h= lists sha1 but not sha256 */
    int testing;           /* t=y */
    int strict;            /* t=s: i= must be d= itself */
};

/* Parse a key record (remote TXT data). 0 done; -1 bad record with a reason in err
 * (v= not DKIM1, unknown k=, bad base64, a service type s= without email). */
int dkim_key_parse(const char *txt, size_t len, struct dkim_key *k, char *err, size_t errsize);

/* --- canonicalization (RFC 6376 3.4) -------------------------------------------------
 * Kept together here so that signing can share it. */

/* Append the canonical form of one header field (raw: name, colon, value with folding,
 * without the final CRLF) to out, with a final CRLF unless crlf is 0. */
struct buf;
void dkim_canon_header(const char *raw, size_t len, int relaxed, int crlf, struct buf *out);

/* The body, as it streams: canonicalized (relaxed or simple), cut at limit bytes
 * (-1 none) and hashed (SHA-256 or SHA-1). */
struct dkim_body;
struct dkim_body *dkim_body_new(int relaxed, enum dkim_alg alg, long long limit);
void dkim_body_free(struct dkim_body *b); /* NULL-safe */
/* Feed body bytes as received (CRLF lines, dot-unstuffed). */
void dkim_body_update(struct dkim_body *b, const void *p, size_t len);
/* Finish: the hash in out (at least 64 bytes), its length returned; *total gets the
 * canonical body's whole length (to compare with l=). Once. */
size_t dkim_body_final(struct dkim_body *b, unsigned char *out, unsigned long long *total);
/* 1 when b hashes what sig asks (same canonicalization, algorithm and limit). */
int dkim_body_matches(const struct dkim_body *b, const struct dkim_sig *sig);

/* --- the signature check -------------------------------------------------------------- */

/* Check sig over the header section hdrs (hdrlen bytes, the client's header fields)
 * with key; sigfield is the DKIM-Signature field itself (raw, without final CRLF).
 * 1 valid; 0 invalid with a reason in err (key type mismatch, key too small, bad
 * signature); -1 the key cannot be used (a broken key) with a reason in err.
 * *bits gets the key size. */
int dkim_sig_check(const struct dkim_sig *sig, const struct dkim_key *key, const char *hdrs,
                   size_t hdrlen, const char *sigfield, size_t sigfieldlen, int *bits, char *err,
                   size_t errsize);

#endif
