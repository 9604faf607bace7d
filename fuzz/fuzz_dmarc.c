/* fuzz_dmarc.c: remote DMARC data through core/dmarc.c: the input as a policy record,
 * as a From: value, and as a domain for the organisational-domain lookup (with a
 * small public suffix list made from the input too). Checks the record's ranges and
 * that an organisational domain is a suffix of its domain. */
#include "core/compat.h"

#include <stdint.h>

#include "core/buf.h"
#include "core/dmarc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    char err[160];
    struct dmarc_record r;
    int rc = dmarc_record_parse(p, size, &r, err, sizeof err);
    if (rc == 1 && (r.pct < 0 || r.pct > 100 || r.p > DMARC_P_REJECT || r.sp > DMARC_P_REJECT))
        abort();
    char dom[256];
    (void)dmarc_from_domain(p, size, dom, sizeof dom);

    struct psl *l = psl_parse(p, size);
    char *d = xstrndup(p, size > 300 ? 300 : size);
    d[strcspn(d, "\r\n")] = '\0';
    char org[256];
    if (psl_org_domain(l, d, org, sizeof org) == 0) {
        size_t dl = strlen(d), ol = strlen(org);
        if (ol > dl || strcmp(d + dl - ol, org) != 0) abort();
    }
    (void)dmarc_aligned(l, d, "example.com", 0);
    free(d);
    psl_free(l);
    return 0;
}
