/* idn.h: international domain names (RFC 5890, IDNA2008 with UTS #46 mapping) on
 * libidn2: a UTF-8 domain (U-labels, as SMTPUTF8 mail carries it, RFC 6531) into the
 * A-label form ("xn--...") that DNS and the next hop's certificate know. */
#ifndef KURIER_IDN_H
#define KURIER_IDN_H

#include <stddef.h>

/* 1 when s (NUL-terminated) has a byte outside ASCII, else 0. */
int idn_is_utf8(const char *s);

/* domain (NUL-terminated, UTF-8 or ASCII) in A-label form into out (outsize bytes),
 * lowercased; an ASCII domain is copied as it is (lowercased). Pure and thread-safe.
 * Returns 0, or -1 with *why set (static English text, e.g. "invalid international
 * domain name: string contains a disallowed character") and out "". */
int idn_to_alabel(const char *domain, char *out, size_t outsize, const char **why);

#endif
