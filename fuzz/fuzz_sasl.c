/* fuzz_sasl.c: base64_decode on arbitrary text (checked against a round trip
 * through base64_encode), then smtp_sasl_plain_parse on raw and decoded bytes. */
#include "core/compat.h"

#include <stdint.h>

#include "core/core.h"
#include "smtp/smtp.h"

static void check_plain(const unsigned char *p, size_t len)
{
    char az[64], ac[64], pw[64];
    if (smtp_sasl_plain_parse(p, len, az, sizeof az, ac, sizeof ac, pw, sizeof pw) != 0) {
        if (ac[0] || pw[0]) abort();
        return;
    }
    /* an accepted message is exactly authzid NUL authcid NUL passwd */
    size_t a = strlen(az), c = strlen(ac), w = strlen(pw);
    if (c == 0 || w == 0 || a + c + w + 2 != len) abort();
    if (memcmp(p, az, a) != 0 || p[a] != 0 || memcmp(p + a + 1, ac, c) != 0 || p[a + 1 + c] != 0 ||
        memcmp(p + a + c + 2, pw, w) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    size_t cap = size / 4 * 3 + 1;
    unsigned char *dec = xmalloc(cap);
    size_t n = 0;
    if (base64_decode(in, size, dec, cap, &n) == 0) {
        if (n > size / 4 * 3) abort();
        /* strict base64 is canonical: encoding gives the input back */
        char *enc = xmalloc(size + 5);
        size_t m = 0;
        if (base64_encode(dec, n, enc, size + 5, &m) != 0) abort();
        int lone_eq = size == 1 && in[0] == '=';
        if (!lone_eq && (m != size || memcmp(enc, in, size) != 0)) abort();
        free(enc);
        /* a buffer one byte short must be refused */
        if (n > 0) {
            size_t n2;
            if (base64_decode(in, size, dec, n - 1, &n2) != -1) abort();
        }
        check_plain(dec, n);
    }
    free(dec);
    check_plain(data, size);
    return 0;
}
