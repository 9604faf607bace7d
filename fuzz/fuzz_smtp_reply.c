/* fuzz_smtp_reply.c: the outbound client's reply reader (client_reply.c) on arbitrary
 * line streams, as the next hop's EHLO reply and as any other reply. Checks: the
 * result is -1, 0 or 1; a complete reply has a code of 200-599; the collected text
 * stays terminated and free of control characters. The first byte picks the state. */
#include "core/compat.h"

#include <stdint.h>

#include "core/core.h"
#include "smtp/client_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    struct smtp_client *c = xcalloc(1, sizeof *c);
    c->state = data[0] & 1 ? CL_EHLO : CL_TXN;
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);
        if (len && p[len - 1] == '\r') len--;
        int r = client_reply_line(c, p, len);
        if (r < -1 || r > 1) abort();
        if (memchr(c->cur.text, '\0', sizeof c->cur.text) == NULL) abort();
        for (const char *t = c->cur.text; *t; t++)
            if ((unsigned char)*t < 0x20 || *t == 0x7f) abort();
        if (memchr(c->cur.enh, '\0', sizeof c->cur.enh) == NULL) abort();
        if (r == 1 && (c->cur.code < 200 || c->cur.code > 599)) abort();
        if (r != 0) c->cur_lines = 0; /* the next reply starts */
        if (r == -1) break;
        p = nl ? nl + 1 : end;
    }
    free(c);
    return 0;
}
