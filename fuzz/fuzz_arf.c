/* fuzz_arf.c: parse the input as an abuse report (ARF, SpamCop) and as a header
 * section with our Received: field (abuse/arf.c). Checks bounds and output shape. */
#include "core/compat.h"

#include <stdint.h>

#include "abuse/complaints.h"

static void terminated(const char *s, size_t size)
{
    if (!memchr(s, '\0', size)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    for (int pass = 0; pass < 2; pass++) {
        struct complaint c;
        enum complaint_format f = complaint_parse(p, size, pass ? NULL : "mx.example.test", &c);
        if (f != c.format || (f != COMPLAINT_NONE && f != COMPLAINT_ARF && f != COMPLAINT_SPAMCOP))
            abort();
        terminated(c.feedback_type, sizeof c.feedback_type);
        terminated(c.user_agent, sizeof c.user_agent);
        terminated(c.source_ip, sizeof c.source_ip);
        terminated(c.reporter, sizeof c.reporter);
        terminated(c.queue_id, sizeof c.queue_id);
        terminated(c.message_id, sizeof c.message_id);
        if (c.queue_id[0] && strlen(c.queue_id) != 14) abort();
        if (c.message_id[0] && (c.message_id[0] != '<' || strpbrk(c.message_id, "\r\n "))) abort();
    }
    char qid[32], mid[256], user[64];
    complaint_scan_headers(p, size, "mx.example.test", qid, mid, user, sizeof user);
    terminated(qid, sizeof qid);
    terminated(mid, sizeof mid);
    terminated(user, sizeof user);
    return 0;
}
