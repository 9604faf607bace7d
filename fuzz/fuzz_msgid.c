/* fuzz_msgid.c: the Message-ID scanner fed the same bytes whole and cut at every
 * split point of a few; both must give the same value, printable for a log line. */
#include "core/compat.h"

#include <stdint.h>

#include "core/core.h"
#include "queue/msgid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct msgid_scan whole = {0};
    msgid_scan(&whole, data, size);
    char *a = msgid_scan_take(&whole);
    for (const char *p = a; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) abort();
    size_t step = size / 7 + 1;
    struct msgid_scan bytes = {0};
    for (size_t i = 0; i < size; i += step)
        msgid_scan(&bytes, data + i, i + step <= size ? step : size - i);
    char *b = msgid_scan_take(&bytes);
    if (strcmp(a, b) != 0) abort();
    free(a);
    free(b);
    return 0;
}
