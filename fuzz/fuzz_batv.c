/* fuzz_batv.c: batv_parse on any local part a client may send (RCPT TO), then
 * batv_verify with two keys; a parsed tag's plain part lies inside the input, and a
 * tag signed anew for it parses back to the same fields and verifies. */
#include "core/compat.h"

#include <stdint.h>

#include "core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct batv_key keys[2] = {
        {.num = 1, .len = 16, .secret = "fuzz-secret-0001"},
        {.num = 0, .len = 16, .secret = "fuzz-secret-0000"},
    };
    const char *p = (const char *)data;
    struct batv_tag t;
    if (!batv_parse(p, size, &t)) return 0;
    if (t.local < p || t.local + t.local_len != p + size || t.local_len == 0 || t.keynum < 0 ||
        t.keynum > 9 || t.day < 0 || t.day > 999)
        abort();
    enum batv_result r = batv_verify(&t, "Example.ORG", keys, 2, 20000, 7);
    if (!batv_result_name(r)[0]) abort();
    /* sign the plain part again: it must parse back and verify */
    char *addr = xmalloc(t.local_len + 13);
    memcpy(addr, t.local, t.local_len);
    memcpy(addr + t.local_len, "@example.org", 13);
    char out[512];
    if (strlen(addr) == t.local_len + 12 &&
        batv_sign(&keys[0], addr, 20003, out, sizeof out) == 0) {
        struct batv_tag u;
        const char *at = strrchr(out, '@');
        if (!batv_parse(out, (size_t)(at - out), &u) || u.keynum != 1 || u.day != 3 ||
            batv_verify(&u, "example.org", keys, 2, 20000, 7) != BATV_VALID)
            abort();
    }
    free(addr);
    return 0;
}
