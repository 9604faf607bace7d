/* fuzz_spool_env.c: spool_env_parse on arbitrary bytes; whatever parses must format
 * and parse again to the same text (format(parse(x)) is a fixed point). The value
 * decoder also gets the whole input, in a buffer of exactly its size (the replay
 * reads files with a NUL after them, which would hide a read past the end). */
#include "core/compat.h"

#include <stdint.h>

#include "core/core.h"
#include "queue/queue.h"

static void env_clear(struct spool_env *e)
{
    struct spool_env *h = xmalloc(sizeof *h);
    *h = *e;
    spool_env_free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct spool_env e1, e2;
    int line;
    char *copy = xmalloc(size ? size : 1);
    memcpy(copy, data, size);
    free(spool_unescape(copy, size));
    free(copy);
    if (spool_env_parse((const char *)data, size, &e1, &line) != 0) return 0;
    char *t1 = spool_env_format(&e1);
    if (spool_env_parse(t1, strlen(t1), &e2, &line) != 0) {
        fprintf(stderr, "formatted envelope does not parse (line %d):\n%s", line, t1);
        abort();
    }
    char *t2 = spool_env_format(&e2);
    if (strcmp(t1, t2) != 0 || e1.nrcpts != e2.nrcpts || e1.held != e2.held ||
        e1.arrival != e2.arrival || strcmp(e1.sender, e2.sender) != 0) {
        fprintf(stderr, "round trip differs:\n%s---\n%s", t1, t2);
        abort();
    }
    free(t1);
    free(t2);
    env_clear(&e1);
    env_clear(&e2);
    return 0;
}
