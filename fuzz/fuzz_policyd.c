/* fuzz_policyd.c: what a policy server answers (remote data) as src/policy/policyd.c
 * takes it: the reply's attribute lines, then its action as a verdict. Whatever the
 * server says, the reply text stays one printable line and codes stay in class. */
#include "core/compat.h"

#include <stdint.h>

#include "policy/policy.h"

static void check_text(const char *s)
{
    for (; *s; s++)
        if (*s < 0x20 || *s > 0x7e) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    char action[512];
    long n = policy_policyd_reply(p, size, action, sizeof action);
    if (n > (long)size || n < -1) abort();
    if (n <= 0) return 0;
    if (p[n - 1] != '\n' || strlen(action) >= sizeof action) abort();
    struct policy_verdict v;
    int rc = policy_policyd_action(action, &v);
    if (rc < -1 || rc > 1) abort();
    check_text(v.text);
    check_text(v.detail + 7);
    if (strncmp(v.detail, "action=", 7) != 0) abort();
    switch (v.kind) {
    case POLICY_REJECT:
        if (v.code < 500 || v.code > 599 || v.enh[0] != '5' || !v.text[0]) abort();
        break;
    case POLICY_TEMPFAIL:
    case POLICY_GREYLIST:
        if (v.code < 400 || v.code > 499 || v.enh[0] != '4' || !v.text[0]) abort();
        break;
    case POLICY_PASS:
    case POLICY_ACCEPT:
        if (v.code) abort();
        break;
    default:
        abort();
    }
    if (rc != 0 && v.kind != POLICY_PASS) abort();
    return 0;
}
