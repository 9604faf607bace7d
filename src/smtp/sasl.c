/* sasl.c: pure helpers for SMTP AUTH (RFC 4954): the PLAIN message (RFC 4616).
 * No I/O; base64 is core's (util.c), the dialogue and the credential check live
 * elsewhere. */
#include "core/compat.h"

#include "smtp/smtp.h"

/* Copy n bytes of a field as a NUL-terminated string; -1 when it does not fit. */
static int copy_field(char *dst, size_t size, const unsigned char *p, size_t n)
{
    if (size == 0 || n >= size) return -1;
    memcpy(dst, p, n);
    dst[n] = '\0';
    return 0;
}

int smtp_sasl_plain_parse(const unsigned char *msg, size_t len, char *authzid, size_t azsize,
                          char *authcid, size_t acsize, char *passwd, size_t pwsize)
{
    if (azsize) authzid[0] = '\0';
    if (acsize) authcid[0] = '\0';
    if (pwsize) passwd[0] = '\0';
    const unsigned char *nul1 = memchr(msg, '\0', len);
    if (!nul1) return -1;
    size_t rest = len - (size_t)(nul1 - msg) - 1;
    const unsigned char *nul2 = memchr(nul1 + 1, '\0', rest);
    if (!nul2) return -1;
    size_t az_len = (size_t)(nul1 - msg);
    size_t ac_len = (size_t)(nul2 - nul1 - 1);
    size_t pw_len = len - (size_t)(nul2 - msg) - 1;
    /* RFC 4616 2: authcid and passwd are 1*SAFE, and SAFE excludes NUL. */
    if (ac_len == 0 || pw_len == 0) return -1;
    if (memchr(nul2 + 1, '\0', pw_len)) return -1;
    if (copy_field(authzid, azsize, msg, az_len) < 0 ||
        copy_field(authcid, acsize, nul1 + 1, ac_len) < 0 ||
        copy_field(passwd, pwsize, nul2 + 1, pw_len) < 0) {
        if (azsize) authzid[0] = '\0';
        if (acsize) authcid[0] = '\0';
        if (pwsize) passwd[0] = '\0';
        return -1;
    }
    return 0;
}
