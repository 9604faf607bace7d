/* dkim_verify.h: the pure parts of DKIM verification (RFC 6376, RFC 8463, RFC 8301):
 * the DKIM-Signature and key record parsers and the signature check with OpenSSL, on
 * core/dkim.h's tag lists, canonicalization and header selection (shared with the
 * signer). No I/O, no DNS: policy/dkim_check.c looks keys up and keeps the state. */
#ifndef KURIER_DKIM_VERIFY_H
#define KURIER_DKIM_VERIFY_H

#include <stddef.h>

#include "core/dkim.h"

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
 * says so (core/dkim.h's body hash is SHA-256 only). */
int dkim_sig_parse(const char *value, size_t len, struct dkim_sig *sig, char *err, size_t errsize);

/* --- key records (RFC 6376 3.6.1, RFC 8463) ------------------------------------------ */

struct dkim_key {
    enum dkim_key_type type;
    unsigned char p[1100]; /* the public key: DER for RSA, 32 raw bytes for Ed25519 */
    size_t plen;           /* 0: revoked (empty p=) */
    int sha1_only;         /* h= lists sha1 but not sha256 */
    int testing;           /* t=y */
    int strict;            /* t=s: i= must be d= itself */
};

/* Parse a key record (remote TXT data). 0 done; -1 bad record with a reason in err
 * (v= not DKIM1, unknown k=, bad base64, a service type s= without email). */
int dkim_key_parse(const char *txt, size_t len, struct dkim_key *k, char *err, size_t errsize);

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
