/* fuzz_srs.c: srs_reverse on any local part a client may send (RCPT TO) with two
 * secrets; a valid one gives a non-empty address; and any input taken as a sender
 * local part and rewritten reverses to that sender again (SRS0) or parses (SRS1). */
#include "core/compat.h"

#include <stdint.h>

#include "core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct srs_secret keys[2] = {
        {.len = 16, .secret = "fuzz-secret-0001"},
        {.len = 16, .secret = "fuzz-secret-0000"},
    };
    const char *p = (const char *)data;
    char out[320];
    enum srs_result r = srs_reverse(p, size, keys, 2, 20000, 21, out, sizeof out);
    if (!srs_result_name(r)[0]) abort();
    if (r == SRS_VALID && (!out[0] || !strchr(out, '@'))) abort();
    if (srs_is_srs(p, size) != (r != SRS_NOT_SRS)) abort();
    /* as a sender: rewrite, then reverse */
    if (size == 0 || size > 200 || memchr(p, '\0', size) || memchr(p, '@', size)) return 0;
    char *sender = xasprintf("%.*s@orig.example", (int)size, p);
    char srs[400], back[400];
    if (srs_forward(&keys[0], sender, "srs.example", 20000, srs, sizeof srs) == 0) {
        const char *at = strrchr(srs, '@');
        enum srs_result b =
            srs_reverse(srs, (size_t)(at - srs), keys, 2, 20005, 21, back, sizeof back);
        if (!srs_is_srs(p, size) && (b != SRS_VALID || strcmp(back, sender) != 0)) abort();
    } else if (!srs_is_srs(p, size)) {
        abort(); /* a plain sender always rewrites */
    }
    free(sender);
    return 0;
}
