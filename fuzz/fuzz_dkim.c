/* fuzz_dkim.c: remote DKIM data through the parsers of core/dkim_verify.c: the input
 * as a DKIM-Signature value, as a key record, as a tag list, as a header field to
 * canonicalize and as a body to canonicalize in two pieces. Checks that a parsed
 * signature keeps its invariants and that streaming gives the same hash as one call. */
#include "core/compat.h"

#include <stdint.h>

#include "core/buf.h"
#include "core/dkim_verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    char err[160];
    struct dkim_tag tags[DKIM_TAGS_MAX];
    size_t n = 0;
    if (dkim_tags_parse(p, size, tags, DKIM_TAGS_MAX, &n, err, sizeof err) == 0) {
        for (size_t i = 0; i < n; i++)
            if (tags[i].val < p || tags[i].val + tags[i].len > p + size) abort();
    }
    struct dkim_sig *sig = xmalloc(sizeof *sig);
    if (dkim_sig_parse(p, size, sig, err, sizeof err) == 0) {
        if (!sig->blen || !sig->bhlen || !sig->nh || sig->nh > DKIM_HNAMES_MAX) abort();
        if (sig->t >= 0 && sig->x >= 0 && sig->x < sig->t) abort();
    }
    free(sig);
    struct dkim_key *key = xmalloc(sizeof *key);
    if (dkim_key_parse(p, size, key, err, sizeof err) == 0 && key->plen > sizeof key->p) abort();
    free(key);

    struct buf out;
    buf_init(&out, 0);
    dkim_canon_header(p, size, 1, 1, &out);
    dkim_canon_header(p, size, 0, 0, &out);
    buf_release(&out);

    for (int relaxed = 0; relaxed < 2; relaxed++) {
        unsigned char h1[64], h2[64];
        unsigned long long t1 = 0, t2 = 0;
        struct dkim_body *a = dkim_body_new(relaxed, DKIM_RSA_SHA256, -1);
        dkim_body_update(a, p, size);
        size_t l1 = dkim_body_final(a, h1, &t1);
        dkim_body_free(a);
        struct dkim_body *b = dkim_body_new(relaxed, DKIM_RSA_SHA256, -1);
        dkim_body_update(b, p, size / 2);
        dkim_body_update(b, p + size / 2, size - size / 2);
        size_t l2 = dkim_body_final(b, h2, &t2);
        dkim_body_free(b);
        if (l1 != l2 || t1 != t2 || memcmp(h1, h2, l1) != 0) abort();
    }
    return 0;
}
