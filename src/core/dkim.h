/* dkim.h: the pure pieces of DKIM (RFC 6376) that signing and verifying share: the
 * tag-list parser (3.2), header and body canonicalization (3.4), header selection
 * (5.4.2) and the hashing of the header fields and of the signature field itself
 * (3.7). No keys, no DNS, no I/O: signing is queue/dkim_sign.c's, the record parsers
 * and the signature check of verifying core/dkim_verify.c's. */
#ifndef KURIER_DKIM_H
#define KURIER_DKIM_H

#include <stddef.h>
#include <stdint.h>

struct buf;
typedef struct evp_md_ctx_st EVP_MD_CTX;

/* The key types of signing (queue/dkim_sign.c) and verifying (core/dkim_verify.c):
 * k=rsa and k=ed25519 (RFC 8463). */
enum dkim_key_type { DKIM_KEY_RSA = 0, DKIM_KEY_ED25519 = 1 };

/* ---- tag lists (RFC 6376 3.2): "v=1; a=rsa-sha256; ..." ---- */

#define DKIM_TAGS_MAX 32

struct dkim_tag {
    const char *name; /* points into the input */
    size_t name_len;
    const char *value; /* trimmed of surrounding FWS; inner FWS kept */
    size_t value_len;
};

/* Parse a tag-list of len bytes into tags (at most max). Returns the number of tags,
 * or -1 when malformed (a tag without "=", a bad tag name, a character outside VALCHAR
 * in a value, a duplicate tag name (3.2: "MUST be treated as invalid"), more than
 * max tags); then *errpos (when not NULL) is the offset of the offending byte. An
 * empty list or one ending in ";" is fine. Never reads past len. */
int dkim_tags_parse(const char *s, size_t len, struct dkim_tag *tags, size_t max, size_t *errpos);
/* The tag named name (case-sensitive, as 3.2 says), or NULL. Borrowed from tags. */
const struct dkim_tag *dkim_tag_find(const struct dkim_tag *tags, size_t n, const char *name);
/* Copy a tag value without any whitespace (base64 values: b=, bh=, p=) into dst,
 * NUL-terminated. Returns its length, or -1 when it does not fit in dstsize. */
long dkim_value_compact(const char *v, size_t len, char *dst, size_t dstsize);

/* ---- canonicalization (RFC 6376 3.4) ---- */

enum dkim_canon { DKIM_CANON_SIMPLE = 0, DKIM_CANON_RELAXED = 1 };

/* Parse "c=" ("relaxed/simple", "relaxed", ...; 3.5: a missing body part is simple).
 * 0 done, -1 unknown algorithm. */
int dkim_canon_parse(const char *v, size_t len, enum dkim_canon *hdr, enum dkim_canon *body);

/* Append one header field canonicalized to out: name and value as hdr_next() returns
 * them (value: after the colon, folding kept, without the final line end). Simple
 * (3.4.1): "name:value\r\n" as received (the name as given, which hdr_next() already
 * stripped of WSP before the colon). Relaxed (3.4.2): lowercase name, unfolded value
 * with WSP runs as one SP and trimmed, "name:value\r\n". crlf=0 leaves the final
 * CRLF off (the signature field itself, 3.7). */
void dkim_canon_header(struct buf *out, enum dkim_canon c, const char *name, size_t name_len,
                       const char *value, size_t value_len, int crlf);

/* The streaming body canonicalizer and hash (3.4.3, 3.4.4, 3.7). Feed the body in
 * pieces of any size (lines end in CRLF; a bare LF is taken as a line end); lines
 * need not be aligned with pieces. */
struct dkim_body {
    enum dkim_canon canon;
    EVP_MD_CTX *md;
    uint64_t limit;  /* l=: hash at most this many canonical bytes; UINT64_MAX: all */
    uint64_t length; /* canonical bytes so far (all of them, also past limit) */
    uint64_t empty;  /* empty lines held back (trailing ones are dropped) */
    int wsp;         /* relaxed: a WSP run held back */
    int cr;          /* the previous byte was CR */
    int in_line;     /* the current line has content */
    unsigned char out[4096];
    size_t out_len;
};

/* Start a body hash with sha256. limit: l= value, or UINT64_MAX. */
void dkim_body_init(struct dkim_body *b, enum dkim_canon c, uint64_t limit);
void dkim_body_feed(struct dkim_body *b, const void *p, size_t len);
/* Finish: the 32-byte SHA-256 digest into md; frees the hash state. */
void dkim_body_final(struct dkim_body *b, unsigned char md[32]);
/* Drop the state without a result (NULL-safe on a zeroed struct). */
void dkim_body_free(struct dkim_body *b);

/* ---- header selection and hashing (5.4.2, 3.7) ---- */

/* Feed the header fields named by the colon-separated list h (as in h=, whitespace
 * allowed) of the header section hdr (hdr_len bytes, as hdr_next() reads it) into
 * out canonicalized: for each name in order the last instance not yet taken,
 * counting from the bottom; a name with no instance left adds nothing (5.4.2's
 * "null string", what over-signing relies on). Returns the number of fields added. */
int dkim_select_headers(struct buf *out, enum dkim_canon c, const char *hdr, size_t hdr_len,
                        const char *h, size_t h_len);
/* Append the DKIM-Signature field itself canonicalized with the value of b= removed
 * (3.7 and 3.5 "b=": everything else as it appears, the final CRLF left off). value:
 * as hdr_next() returns it. */
void dkim_sig_field_canon(struct buf *out, enum dkim_canon c, const char *name, size_t name_len,
                          const char *value, size_t value_len);

#endif
