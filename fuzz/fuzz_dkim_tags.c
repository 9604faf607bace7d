/* fuzz_dkim_tags.c: a DKIM-Signature or key record value (remote data) through the
 * tag-list parser; every tag must lie inside the input, and the signature field
 * through header selection and the b= removal. */
#include "core/compat.h"

#include <stdint.h>

#include "core/core.h"
#include "core/dkim.h"

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
        if (dkim_tag_find(tags, (size_t)n, "v") && !dkim_tag_find(tags, (size_t)n, "v")->name)
            abort();
    }
    /* the same bytes as a header section and as the h= list */
    struct buf out;
    buf_init(&out, 0);
    for (int c = 0; c < 2; c++) {
        dkim_select_headers(&out, (enum dkim_canon)c, p, size, p, size);
        struct hdr_field f;
        if (hdr_next(p, size, &f) > 0)
            dkim_sig_field_canon(&out, (enum dkim_canon)c, f.name, f.name_len, f.value,
                                 f.value_len);
        struct dkim_body b;
        dkim_body_init(&b, (enum dkim_canon)c, size / 2);
        dkim_body_feed(&b, p, size);
        unsigned char md[32];
        dkim_body_final(&b, md);
    }
    buf_release(&out);
    return 0;
}
