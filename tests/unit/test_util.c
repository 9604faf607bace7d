/* test_util.c: err_set(), the formatter behind every (err, errsize) pair. */
#include "core/compat.h"

#include <string.h>

#include "check.h"
#include "core/core.h"

int main(void)
{
    static const struct {
        size_t size; /* buffer bytes offered */
        const char *want;
    } cases[] = {
        {64, "no such domain example.org"},
        {27, "no such domain example.org"},
        {10, "no such d"}, /* cut, still terminated */
        {1, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[65]; /* one spare byte to see an overrun */
        memset(buf, 'x', sizeof buf);
        err_set(buf, cases[i].size, "no such %s %s", "domain", "example.org");
        CHECK(strcmp(buf, cases[i].want) == 0, "size %zu: got \"%s\", want \"%s\"", cases[i].size,
              buf, cases[i].want);
        CHECK(buf[cases[i].size] == 'x', "size %zu: wrote past the buffer", cases[i].size);
    }

    /* NULL buffer or size 0: nothing written, nothing crashes. */
    err_set(NULL, 64, "ignored %d", 1);
    char untouched[4] = "abc";
    err_set(untouched, 0, "ignored %d", 2);
    CHECK(strcmp(untouched, "abc") == 0, "size 0 wrote \"%s\"", untouched);
    return check_summary();
}
