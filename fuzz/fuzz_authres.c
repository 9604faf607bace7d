/* fuzz_authres.c: a client's header section (remote data) through authres_strip()
 * for our authserv-id, and each field value through authres_claims(); the input's
 * first line is the id. Checks that stripping only removes whole fields that claim
 * the id, and the builder with the input as comment and property value. */
#include "core/compat.h"

#include <stdint.h>

#include "core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    const char *nl = memchr(p, '\n', size);
    size_t head = nl ? (size_t)(nl - p) : size;
    char id[128];
    if (head >= sizeof id) head = sizeof id - 1;
    memcpy(id, p, head);
    id[head] = '\0';
    const char *hdr = nl ? nl + 1 : p + size;
    size_t len = size - (size_t)(hdr - p);

    char *copy = xmalloc(len + 1);
    memcpy(copy, hdr, len);
    size_t removed = 99;
    size_t n = authres_strip(copy, len, id, &removed);
    if (n > len || (n == len && removed) || (n < len && !removed)) abort();
    /* what is left has no field that claims the id */
    size_t again = 99;
    if (authres_strip(copy, n, id, &again) != n || again) abort();
    free(copy);

    (void)authres_claims(hdr, len, id);

    /* the builder: peer text as comment and value stays one CRLF-ended field */
    char *text = xstrndup(hdr, len);
    struct authres a;
    authres_init(&a, "mx.example.net");
    authres_add(&a, "spf", "pass", text);
    authres_prop(&a, "smtp", "mailfrom", text);
    struct buf out;
    buf_init(&out, 0);
    authres_header(&a, &out);
    size_t crlf = 0;
    for (size_t i = 0; i < out.len; i++) {
        unsigned char c = (unsigned char)out.data[i];
        if (c == 0 || c >= 0x80) abort();
        if (c == '\n' && (i == 0 || out.data[i - 1] != '\r')) abort();
        if (c == '\r') crlf++;
    }
    if (crlf != 2) abort(); /* one folded line, and the end */
    buf_release(&out);
    authres_release(&a);
    free(text);
    return 0;
}
