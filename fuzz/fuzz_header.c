/* fuzz_header.c: iterate the header fields of the input with hdr_next (skipping
 * malformed lines), unfold each value and parse it as an address list and as a
 * mailbox list; so is the whole input. Checks bounds and output shape. */
#include "core/compat.h"

#include <stdint.h>

#include "core/core.h"

static void parse_one(const char *v, size_t len, int mailboxes)
{
    char **out = (char **)1;
    size_t n = 99;
    int r =
        mailboxes ? hdr_parse_mailboxes(v, len, &out, &n) : hdr_parse_addresses(v, len, &out, &n);
    if (r < 0) {
        if (r != -1 || out || n) abort();
        return;
    }
    if (r != 0 || (n && !out) || (mailboxes && n == 0)) abort();
    for (size_t i = 0; i < n; i++) {
        /* Every address is non-empty text with no line ends. */
        if (!out[i] || !out[i][0] || strpbrk(out[i], "\r\n")) abort();
    }
    hdr_addresses_free(out, n);
}

static void parse(const char *v, size_t len)
{
    parse_one(v, len, 0);
    parse_one(v, len, 1); /* From:, Sender: */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    size_t off = 0;
    char dst[256];
    while (off < size) {
        struct hdr_field f;
        int r = hdr_next(p + off, size - off, &f);
        if (r == 0) break;
        if (r < 0) {
            if (r != -1 || f.line_len == 0 || f.line_len > size - off || f.name) abort();
            off += f.line_len;
            continue;
        }
        if ((size_t)r > size - off || f.line_len != (size_t)r || f.name != p + off ||
            f.name_len == 0 || f.value < f.name + f.name_len ||
            f.value + f.value_len > p + off + (size_t)r || hdr_name_is(&f, "") != 0)
            abort();
        hdr_unfold(f.value, f.value_len, dst, sizeof dst);
        if (strlen(dst) >= sizeof dst || strpbrk(dst, "\r\n")) abort();
        (void)hdr_name_is(&f, "From");
        parse(f.value, f.value_len);
        off += (size_t)r;
    }
    parse(p, size);
    return 0;
}
