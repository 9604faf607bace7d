/* authres.h: the Authentication-Results: header field (RFC 8601). A builder that
 * checks append their results to (spf and iprev today; DKIM and DMARC later), and
 * the pure parser that finds fields claiming our authserv-id in a client's header
 * section, so they can be removed (RFC 8601 5). Not the AUTH login result: that is
 * auth_result.h. */
#ifndef KURIER_AUTHRES_H
#define KURIER_AUTHRES_H

#include <stddef.h>

#include "core/buf.h"

/* One Authentication-Results field being built. Fill with authres_init(). */
struct authres {
    char *authserv_id;
    struct buf items; /* ";\r\n\tmethod=result (comment) ptype.prop=value" per result */
    size_t n;         /* results added */
};

/* Start a field for authserv_id (our host name; copied). */
void authres_init(struct authres *a, const char *authserv_id);
/* Free its storage; the struct may be initialised again. NULL-safe. */
void authres_release(struct authres *a);
/* Add a result "method=result" (RFC 8601 2.7: spf, iprev, dkim, dmarc, ...; both
 * words as the registry spells them, static or borrowed). comment: a sentence for
 * people (may be NULL; peer text is fine: control characters are dropped, non-ASCII
 * bytes become '?', parentheses and backslashes are quoted). */
void authres_add(struct authres *a, const char *method, const char *result, const char *comment);
/* Add a property "ptype.property=value" to the last result (smtp.mailfrom, smtp.helo,
 * policy.iprev, header.d, ...). value is written as is when it is an RFC 2045 token
 * or local-part@domain of such characters, else as a quoted-string (control
 * characters dropped, non-ASCII bytes as '?'). Nothing happens before a result. */
void authres_prop(struct authres *a, const char *ptype, const char *property, const char *value);
/* Append the whole field to out, CRLF-ended, one result per folded line:
 * "Authentication-Results: mx.example.net;\r\n\tspf=pass smtp.mailfrom=a@b\r\n";
 * with no result "Authentication-Results: mx.example.net; none\r\n". */
void authres_header(const struct authres *a, struct buf *out);
/* The same field made exactly room bytes long, for room written before the results
 * were all known and filled in later (docs/inbound.md): the difference is white space
 * at the ends of its lines (FWS, no line over 998 bytes), then, when the lines are
 * full, comments of white space on lines of their own. When the field is longer than
 * room it goes without its comments. 0 appended; -1 it does not fit (nothing
 * appended). */
int authres_header_room(const struct authres *a, size_t room, struct buf *out);

/* Pure, on remote data (fuzzed). 1 when the value of an Authentication-Results
 * field (len bytes after the colon, folding allowed) names authserv_id as its
 * authserv-id (ASCII case-insensitive; a token or a quoted-string after optional
 * comments and white space), else 0 (other ids, malformed values). */
int authres_claims(const char *value, size_t len, const char *authserv_id);
/* Remove from the header section hdr (len bytes, read as hdr_next() does; it is
 * edited in place) every Authentication-Results field that authres_claims() for
 * authserv_id. Returns the new length; *removed (when not NULL) gets the number of
 * fields removed. Bytes after the header section's end are kept as they are. */
size_t authres_strip(char *hdr, size_t len, const char *authserv_id, size_t *removed);

#endif
