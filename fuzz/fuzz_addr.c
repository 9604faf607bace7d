/* fuzz_addr.c: addr_parse under several option sets; every accepted address must
 * format and parse again to the same local part and domain. */
#include "core/compat.h"

#include <stdint.h>

#include "core/core.h"

static const unsigned opt_sets[] = {
    0,
    ADDR_O_ALLOW_NULL | ADDR_O_UTF8,
    ADDR_O_NO_BRACKETS,
    ADDR_O_NO_BRACKETS | ADDR_O_LOCAL_ONLY | ADDR_O_UTF8,
};

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t k = 0; k < sizeof opt_sets / sizeof opt_sets[0]; k++) {
        unsigned opts = opt_sets[k];
        struct addr a, b;
        const char *err = NULL;
        int n = addr_parse((const char *)data, size, opts, &a, &err);
        if (n < 0) {
            if (!err || a.local || a.domain) abort();
            continue;
        }
        if ((size_t)n > size) abort();
        char *f = addr_format(&a);
        char *again = (opts & ADDR_O_NO_BRACKETS) ? xstrdup(f) : xasprintf("<%s>", f);
        int m = addr_parse(again, strlen(again), opts, &b, &err);
        if (a.flags & ADDR_F_NULL) {
            if (m != 2 || !(b.flags & ADDR_F_NULL)) abort();
        } else if (m != (int)strlen(again) || !same(a.local, b.local) ||
                   !same(a.domain, b.domain)) {
            fprintf(stderr, "round trip failed: [%s] -> %d %s\n", again, m, m < 0 ? err : "");
            abort();
        }
        (void)addr_has_routing_chars(&a);
        if (a.domain && !(a.flags & ADDR_F_IPLIT) &&
            !addr_domain_valid(a.domain, strlen(a.domain), opts))
            abort();
        addr_clear(&b);
        free(again);
        free(f);
        addr_clear(&a);
    }
    return 0;
}
