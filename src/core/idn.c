/* idn.c: UTF-8 domains to A-labels with libidn2 (IDNA2008, UTS #46 non-transitional
 * mapping, as browsers and Postfix's smtputf8 support do). Only this file calls
 * libidn2; dns/ converts every name it looks up, addr.c checks U-labels. */
#include "core/compat.h"

#include <idn2.h>

#include "core/idn.h"
#include "core/buf.h"

int idn_is_utf8(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 1;
    return 0;
}

int idn_to_alabel(const char *domain, char *out, size_t outsize, const char **why)
{
    if (outsize) out[0] = '\0';
    if (!idn_is_utf8(domain)) {
        if (strlen(domain) >= outsize) {
            *why = "domain name too long";
            return -1;
        }
        str_copy(out, domain, outsize);
        str_lower(out);
        return 0;
    }
    char *a = NULL;
    int rc = idn2_to_ascii_8z(domain, &a, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
    if (rc != IDN2_OK) {
        /* the reasons of the common cases in words; the rest by libidn2's text */
        switch (rc) {
        case IDN2_DISALLOWED:
            *why = "invalid international domain name: a character IDNA2008 disallows";
            break;
        case IDN2_ENCODING_ERROR:
            *why = "invalid international domain name: not valid UTF-8";
            break;
        case IDN2_TOO_BIG_DOMAIN:
        case IDN2_TOO_BIG_LABEL:
            *why = "invalid international domain name: too long in A-label form";
            break;
        case IDN2_BIDI:
            *why = "invalid international domain name: breaks the bidi rule (RFC 5893)";
            break;
        case IDN2_LEADING_COMBINING:
            *why = "invalid international domain name: a label starts with a combining mark";
            break;
        default:
            *why = "invalid international domain name (IDNA2008)";
            break;
        }
        return -1;
    }
    if (strlen(a) >= outsize) {
        idn2_free(a);
        *why = "domain name too long";
        return -1;
    }
    str_copy(out, a, outsize);
    str_lower(out);
    idn2_free(a);
    return 0;
}
