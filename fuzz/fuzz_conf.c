/* fuzz_conf.c: kurier.conf through conf_parse() and conf_apply(); an accepted config
 * must dump to text that re-parses to the same dump (crash otherwise). */
#include "core/compat.h"

#include <stdint.h>

#include "core/core.h"

static char *dump_body(const struct kconf *c)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (!f) abort();
    conf_dump(c, f);
    fclose(f);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0;
    struct conf_errors errs = {0};
    struct conf_node *tree = conf_parse((const char *)data, size, "fuzz.conf", &errs);
    if (errs.n == 0) {
        struct kconf *c = conf_apply(tree, "fuzz.conf", &errs);
        if (c) {
            char *d1 = dump_body(c);
            struct conf_errors e2 = {0};
            struct conf_node *t2 = conf_parse(d1, strlen(d1), "dump.conf", &e2);
            struct kconf *c2 = conf_apply(t2, "fuzz.conf", &e2);
            if (!c2) {
                conf_errors_print(&e2, stderr);
                abort();
            }
            char *d2 = dump_body(c2);
            if (strcmp(d1, d2) != 0) abort();
            free(d2);
            conf_free(c2);
            conf_tree_free(t2);
            conf_errors_free(&e2);
            free(d1);
            conf_free(c);
        }
    }
    conf_tree_free(tree);
    conf_errors_free(&errs);
    return 0;
}
