/* fuzz_smtp_data.c: the DATA/BDAT scanner must give the same output, flags and
 * consumed count however the stream is split. The first byte picks mode and chunking. */
#include "core/compat.h"

#include <stdint.h>

#include "core/core.h"
#include "smtp/smtp.h"

struct res {
    struct buf out;
    size_t consumed;
    struct smtp_data d;
};

static void run(const char *p, size_t len, int bdat, size_t max_line, size_t step, size_t seed,
                struct res *r)
{
    size_t off = 0;
    memset(&r->d, 0, sizeof r->d);
    r->d.bdat = bdat;
    r->d.max_line = max_line;
    buf_init(&r->out, 0);
    r->consumed = 0;
    while (off < len) {
        size_t n = step ? step : len;
        if (seed) { /* varying chunk sizes */
            seed = seed * 1103515245u + 12345u;
            n = 1 + (seed >> 16) % 17;
        }
        if (n > len - off) n = len - off;
        size_t c = smtp_data_feed(&r->d, p + off, n, &r->out);
        if (c > n) abort();
        r->consumed += c;
        off += n;
        if (c < n) {
            if (!r->d.done) abort();
            break;
        }
        if (r->d.done) break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int bdat = data[0] & 1;
    size_t max_line = (data[0] >> 1) & 7 ? (size_t)((data[0] >> 1) & 7) * 4 : 998;
    const char *p = (const char *)data + 1;
    size_t len = size - 1;
    struct res a, b, c;
    run(p, len, bdat, max_line, 0, 0, &a);
    run(p, len, bdat, max_line, 1, 0, &b);
    run(p, len, bdat, max_line, 0, (size_t)data[0] + 1, &c);
    const struct res *o[2] = {&b, &c};
    for (int i = 0; i < 2; i++) {
        if (a.consumed != o[i]->consumed || a.out.len != o[i]->out.len ||
            (a.out.len && memcmp(a.out.data, o[i]->out.data, a.out.len) != 0) ||
            a.d.flags != o[i]->d.flags || a.d.done != o[i]->d.done ||
            a.d.received != o[i]->d.received || a.d.in_headers != o[i]->d.in_headers)
            abort();
    }
    /* Reference: DATA ends exactly after the first "<CRLF>.<CRLF>" of the raw stream
     * (or a ".<CRLF>" first line), nowhere else. */
    if (!bdat) {
        size_t want = 0;
        if (len >= 3 && memcmp(p, ".\r\n", 3) == 0) want = 3;
        for (size_t i = 0; !want && i + 5 <= len; i++)
            if (memcmp(p + i, "\r\n.\r\n", 5) == 0) want = i + 5;
        if (want ? (!a.d.done || a.consumed != want) : (a.d.done || a.consumed != len)) abort();
    }
    if (bdat && (a.d.done || a.consumed != len || a.out.len != len)) abort();
    if (a.out.len > a.consumed) abort();
    buf_release(&a.out);
    buf_release(&b.out);
    buf_release(&c.out);
    return 0;
}
