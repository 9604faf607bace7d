/* dkim_sign.h: DKIM signing at enqueue (RFC 6376, RFC 8463): the keys of dkim.key_dir
 * and the signer a spool message streams through (docs/dkim.md). The pure pieces
 * (canonicalization, tag lists) are core/dkim.h's. Loop thread only. */
#ifndef KURIER_DKIM_SIGN_H
#define KURIER_DKIM_SIGN_H

#include <stddef.h>
#include <sys/types.h>

#include "core/dkim.h"

struct kconf;
struct spool_msg;
struct dkim_sign;

/* Load the keys of c->dkim_key_dir (DIR/DOMAIN/SELECTOR.rsa.pem, .ed25519.pem) and
 * make them the ones new messages are signed with (the previous set goes; messages
 * being received keep the keys they chose). A missing folder is no keys. Returns the
 * number of keys, or -1 with err set when a key file cannot be read or is not a key
 * of its type (RSA keys under 1024 bits are refused, RFC 8301); then the keys loaded
 * before stay. */
int dkim_sign_load(const struct kconf *c, char *err, size_t errsize);
/* Forget the loaded keys (at exit). */
void dkim_sign_unload(void);

/* The file name of a key, "DIR/DOMAIN/SELECTOR.TYPE.pem" (new string). */
char *dkim_key_path(const char *dir, const char *domain, const char *selector,
                    enum dkim_key_type t);
/* "rsa" or "ed25519". */
const char *dkim_key_type_name(enum dkim_key_type t);
/* The public part as the p= of a key record (base64 of the SubjectPublicKeyInfo for
 * RSA, of the raw 32 bytes for Ed25519, RFC 8463 4.2), new string; NULL when the
 * file cannot be read (err set). *type receives the key's type. */
char *dkim_key_public(const char *path, enum dkim_key_type *type, char *err, size_t errsize);

/* Sign m (which must not have been written to yet) with the keys of its From:
 * domain, or of its parent domains, or of dkim.signing_domain; nothing happens when
 * there are none. spool_msg_write() then passes through the signer: the header
 * section is held (up to DKIM_SIGN_HDR_MAX bytes, beyond which the message is not
 * signed) until its end, when the domain is chosen, room for the DKIM-Signature:
 * fields is written at the start of the file and the body hash starts; the fields
 * are filled in by spool_msg_commit(). */
#define DKIM_SIGN_HDR_MAX (256 * 1024)
void spool_msg_sign(struct spool_msg *m);

/* Internal to queue/: spool.c's signer. It writes the message through out (the
 * spool's writes without the signer, for the message out->arg): put appends,
 * put_at writes over bytes already written, offset is how many were written; put
 * and put_at return 0 done, -1 failed. NULL when no keys are loaded. */
struct dkim_sign_out {
    int (*put)(void *arg, const void *p, size_t len);
    int (*put_at)(void *arg, off_t off, const void *p, size_t len);
    off_t (*offset)(const void *arg);
    void *arg;
};
struct dkim_sign *dkim_sign_new(const char *id, const struct dkim_sign_out *out);
/* Feed content; 0 done, -1 write failed. */
int dkim_sign_write(struct dkim_sign *d, const void *p, size_t len);
/* Finish: write what is held, fill the signatures in. 0 done, -1 failed. */
int dkim_sign_finish(struct dkim_sign *d);
void dkim_sign_free(struct dkim_sign *d);

#endif
