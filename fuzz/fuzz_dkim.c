/* fuzz_dkim.c: remote DKIM data through core/dkim.c (tag lists, canonicalization,
 * header selection, the b= removal; shared by signing and verifying) and
 * core/dkim_verify.c (DKIM-Signature values, key records): the input as a tag list,
 * a signature value, a key record, a header section (also as its own h= list) and a
 * body. Every tag must lie inside the input, a parsed signature keeps its invariants,
 * and streaming the body in two pieces gives the hash of one piece. */
#include "core/compat.h"

#include <stdint.h>

#include "core/core.h"
#include "core/dkim.h"
#include "core/dkim_verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct dkim_tag tags[DKIM_TAGS_MAX];
    size_t pos = 0;
    int n = dkim_tags_parse(p, size, tags, DKIM_TAGS_MAX, &pos);
    if (n < 0 && pos > size) abort();
    for (int i = 0; i < n; i++) {
        const struct dkim_tag *t = &tags[i];
        if (t->name < p || t->name + t->name_len > p + size) abort();
        if (t->value < p || t->value + t->value_len > p + size) abort();
        if (t->name_len == 0) abort();
        char dst[64];
        dkim_value_compact(t->value, t->value_len, dst, sizeof dst);
    }

    char err[160];
    struct dkim_sig *sig = xmalloc(sizeof *sig);
    if (dkim_sig_parse(p, size, sig, err, sizeof err) == 0) {
        if (!sig->blen || !sig->bhlen || !sig->nh || sig->nh > DKIM_HNAMES_MAX) abort();
        if (sig->t >= 0 && sig->x >= 0 && sig->x < sig->t) abort();
    }
    free(sig);
    struct dkim_key *key = xmalloc(sizeof *key);
    if (dkim_key_parse(p, size, key, err, sizeof err) == 0 && key->plen > sizeof key->p) abort();
    free(key);

    /* the same bytes as a header section and as the h= list */
    struct buf out;
    buf_init(&out, 0);
    for (int c = 0; c < 2; c++) {
        dkim_select_headers(&out, (enum dkim_canon)c, p, size, p, size);
        struct hdr_field f;
        if (hdr_next(p, size, &f) > 0) {
            dkim_canon_header(&out, (enum dkim_canon)c, f.name, f.name_len, f.value, f.value_len,
                              1);
            dkim_sig_field_canon(&out, (enum dkim_canon)c, f.name, f.name_len, f.value,
                                 f.value_len);
        }
        unsigned char h1[32], h2[32];
        struct dkim_body a, b;
        dkim_body_init(&a, (enum dkim_canon)c, size / 2);
        dkim_body_feed(&a, p, size);
        dkim_body_final(&a, h1);
        dkim_body_init(&b, (enum dkim_canon)c, size / 2);
        dkim_body_feed(&b, p, size / 3);
        dkim_body_feed(&b, p + size / 3, size - size / 3);
        dkim_body_final(&b, h2);
        if (a.length != b.length || memcmp(h1, h2, sizeof h1) != 0) abort();
    }
    buf_release(&out);
    return 0;
}
