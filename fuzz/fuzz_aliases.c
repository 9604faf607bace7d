/* fuzz_aliases.c: aliases_parse() on any bytes: a table or errors, never both, and
 * every name of a table found again by aliases_find(). */
#include "core/compat.h"

#include <stdint.h>

#include "core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = xmalloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    struct conf_errors errs = {0};
    struct aliases *a = aliases_parse("fuzz", text, size, &errs);
    if (a && errs.n) abort();
    if (!a && !errs.n) abort();
    for (size_t i = 0; a && i < a->n; i++) {
        if (aliases_find(a, a->v[i].name) != &a->v[i]) abort();
        if (a->v[i].ntargets == 0) abort();
    }
    aliases_free(a);
    conf_errors_free(&errs);
    free(text);
    return 0;
}
