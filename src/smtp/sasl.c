/* sasl.c: pure helpers for SMTP AUTH (RFC 4954): strict base64 and the PLAIN
 * message (RFC 4616). No I/O; the dialogue and the credential check live elsewhere. */
#include "core/compat.h"

#include "smtp/smtp.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Value of one base64 character, -1 for anything else (including '='). */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int smtp_b64_decode(const char *in, size_t len, unsigned char *out, size_t outsize, size_t *outlen)
{
    *outlen = 0;
    /* RFC 4954 4: a lone "=" is an empty initial response. */
    if (len == 0 || (len == 1 && in[0] == '=')) {
        if (outsize > 0) out[0] = '\0';
        return 0;
    }
    if (len % 4 != 0) return -1;
    size_t pad = 0;
    if (in[len - 1] == '=') pad = in[len - 2] == '=' ? 2 : 1;
    size_t need = len / 4 * 3 - pad;
    if (need > outsize) return -1;

    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int last = i + 4 == len;
        int v[4];
        for (int k = 0; k < 4; k++) {
            if (last && k >= 4 - (int)pad) {
                v[k] = 0; /* padding: checked below */
                continue;
            }
            v[k] = b64_value((unsigned char)in[i + k]);
            if (v[k] < 0) return -1; /* bad character, or '=' before the end */
        }
        unsigned long n = (unsigned long)v[0] << 18 | (unsigned long)v[1] << 12 |
                          (unsigned long)v[2] << 6 | (unsigned long)v[3];
        out[o++] = (unsigned char)(n >> 16);
        if (last && pad == 2) {
            if (n & 0xffff) return -1; /* RFC 4648 3.5: unused bits must be zero */
            break;
        }
        out[o++] = (unsigned char)(n >> 8);
        if (last && pad == 1) {
            if (n & 0xff) return -1;
            break;
        }
        out[o++] = (unsigned char)n;
    }
    if (o < outsize) out[o] = '\0';
    *outlen = o;
    return 0;
}

int smtp_b64_encode(const unsigned char *in, size_t len, char *out, size_t outsize, size_t *outlen)
{
    if (outlen) *outlen = 0;
    if (len > (((size_t)-1) - 1) / 4 * 3 - 3) return -1;
    size_t need = (len + 2) / 3 * 4;
    if (outsize < need + 1) return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        size_t rest = len - i;
        unsigned long n = (unsigned long)in[i] << 16;
        if (rest > 1) n |= (unsigned long)in[i + 1] << 8;
        if (rest > 2) n |= in[i + 2];
        out[o++] = b64_alphabet[(n >> 18) & 63];
        out[o++] = b64_alphabet[(n >> 12) & 63];
        out[o++] = rest > 1 ? b64_alphabet[(n >> 6) & 63] : '=';
        out[o++] = rest > 2 ? b64_alphabet[n & 63] : '=';
    }
    out[o] = '\0';
    if (outlen) *outlen = o;
    return 0;
}

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
