/* dkim_stream.h: private to src/policy/dkim_*.c (not part of policy.h): what
 * dkim_stream.c keeps of a message while it streams, for dkim_check.c to judge at
 * its end: the header section and each DKIM-Signature with its body hash. */
#ifndef KURIER_POLICY_DKIM_STREAM_H
#define KURIER_POLICY_DKIM_STREAM_H

#include "core/buf.h"
#include "core/dkim_verify.h"
#include "policy/policy.h"

struct stream_sig {
    struct dkim_sig sig;
    int bad; /* the field does not parse: permerror, err says why */
    char err[160];
    size_t off, len; /* the raw field in hdr, without its final CRLF */
    int hashing;     /* body is running (not for rsa-sha1, which is refused anyway) */
    struct dkim_body body;
};

struct policy_dkim_stream {
    struct buf hdr;
    size_t hdr_end; /* the header section's length once found */
    int in_body, cut;
    struct stream_sig sigs[POLICY_DKIM_MAX];
    size_t nsig;
};

/* The message ended: without a body its whole content is the header section (its
 * signatures are found now). Nothing once the body came or the header was cut. */
void policy_dkim_stream_end(struct policy_dkim_stream *d);

#endif
