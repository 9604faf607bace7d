/* fuzz_spf.c: the SPF record parser and macro expander of src/policy/spf_record.c on
 * arbitrary TXT bytes. The first byte picks flags (exp / domain expansion, IPv6
 * client, output size); a parsed record must be sane (qualifiers, prefix lengths)
 * and its domain-specs expand to at most 253 bytes. */
#include "core/compat.h"

#include <netinet/in.h>
#include <stdint.h>

#include "policy/spf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned sel = data[0];
    const char *p = (const char *)data + 1;
    size_t len = size - 1;

    struct spf_macro_env env;
    memset(&env, 0, sizeof env);
    env.sender = "strong-bad@email.example.com";
    env.local = "strong-bad";
    env.sender_domain = "email.example.com";
    env.domain = "email.example.com";
    env.helo = "mx.example.org";
    env.ptr = (sel & 8) ? "mx.example.org" : NULL;
    env.receiver = "mx.example.net";
    env.now = 1700000000;
    if (sel & 4) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&env.ip;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr.s6_addr[0] = 0x20;
        s6->sin6_addr.s6_addr[1] = 0x01;
        s6->sin6_addr.s6_addr[15] = 0xcb;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&env.ip;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(0xc0000203);
    }

    char out[1024];
    size_t outsize = (sel & 16) ? 1 + (sel >> 5) * 37 : sizeof out;
    if (spf_macro_expand(p, len, &env, sel & 1, sel & 2, out, outsize) == 0) {
        size_t n = strlen(out);
        if (n >= outsize) abort();
        if ((sel & 2) && n > 253) abort();
    }

    struct spf_record rec;
    char err[200];
    if (spf_record_parse(p, len, &rec, err, sizeof err) == 0) {
        if (!spf_record_is_v1(p, len)) abort();
        for (size_t i = 0; i < rec.nterms; i++) {
            const struct spf_term *t = &rec.terms[i];
            if (!strchr("+-~?", t->qual) || t->cidr4 < 0 || t->cidr4 > 32 || t->cidr6 < 0 ||
                t->cidr6 > 128)
                abort();
            /* a valid spec may still not expand (too long, nothing left after
             * dropping labels): the evaluator says permerror then */
            if (t->spec &&
                spf_macro_expand(t->spec, strlen(t->spec), &env, 0, 1, out, sizeof out) == 0 &&
                strlen(out) > 253)
                abort();
        }
        spf_record_free(&rec);
    } else if (rec.nterms || rec.terms || rec.redirect || rec.exp) {
        abort();
    }
    return 0;
}
