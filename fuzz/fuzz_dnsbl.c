/* fuzz_dnsbl.c: what a DNS list answers (remote data) as src/policy/dnsbl.c takes it:
 * the TXT record made safe for an SMTP reply, answer addresses classified as listing
 * codes and matched against a site filter (the input's first line, config syntax). */
#include "core/compat.h"

#include <stdint.h>
#include <sys/socket.h>

#include "core/conf.h"
#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    const char *nl = memchr(p, '\n', size);
    size_t head = nl ? (size_t)(nl - p) : size;

    /* the TXT text: whatever the list says, the reply stays one printable line */
    char out[256];
    size_t n = policy_dnsbl_text(p, size, out, sizeof out);
    if (n >= sizeof out || strlen(out) != n) abort();
    for (size_t i = 0; i < n; i++)
        if (out[i] < 0x20 || out[i] > 0x7e || (out[i] == ' ' && (i == 0 || out[i - 1] == ' ')))
            abort();
    if (n > 0 && out[n - 1] == ' ') abort();

    /* a site from the first line; the rest as 4-byte answer addresses */
    char spec[600], why[300];
    struct conf_dnsbl_site site;
    if (head < sizeof spec) {
        memcpy(spec, p, head);
        spec[head] = '\0';
        if (conf_dnsbl_site_parse(spec, &site, why, sizeof why) == 0) {
            if (!site.zone[0] || site.weight < -1000 || site.weight > 1000) abort();
            char qn[300];
            const unsigned char *a = nl ? (const unsigned char *)nl + 1 : NULL;
            size_t left = nl ? size - head - 1 : 0;
            for (; left >= 4; a += 4, left -= 4) {
                int code = policy_dnsbl_is_code(a);
                if (code && a[0] != 127) abort();
                (void)conf_dnsbl_site_match(&site, a);
                if (policy_dnsbl_qname(AF_INET, a, site.zone, qn, sizeof qn) != 0) abort();
            }
            if (left == 0 && a && (size_t)(a - (const unsigned char *)data) >= 16) {
                if (policy_dnsbl_qname(AF_INET6, a - 16, site.zone, qn, sizeof qn) != 0) abort();
            }
        } else if (!why[0]) {
            abort();
        }
    }
    return 0;
}
