/* header.h: RFC 5322 header section parsing (pure, fuzzed): iterate header fields
 * and extract the addresses of address fields (From:, Sender:, To:, Cc:, Bcc:). */
#ifndef KURIER_HEADER_H
#define KURIER_HEADER_H

#include <stddef.h>

struct hdr_field {
    const char *name; /* points into the input */
    size_t name_len;
    const char *value; /* raw value after the colon, folding kept, without the final line end */
    size_t value_len;
    size_t line_len; /* bytes of the whole field including its line ends */
};

/* Read the next header field at the start of p (len bytes; lines end in CRLF or LF).
 * Returns >0 bytes consumed (the whole field with its continuation lines), 0 at the
 * end of the header section (an empty line, the end of input, or a line that is not
 * a header field, e.g. a body line when there was no empty line), -1 when p starts
 * with a malformed field (no colon, bad name characters); the caller may skip that
 * line: then f->line_len is its length with any continuation lines, the rest of *f is
 * zero. Never reads past len. */
int hdr_next(const char *p, size_t len, struct hdr_field *f);
/* 1 when the field's name equals name (ASCII case-insensitive). */
int hdr_name_is(const struct hdr_field *f, const char *name);
/* Unfold and trim a value into dst (NUL-terminated, cut at dstsize-1). Returns dst. */
char *hdr_unfold(const char *value, size_t len, char *dst, size_t dstsize);
/* Parse an RFC 5322 address-list (also mailbox-list): display names, quoted strings,
 * comments, groups ("undisclosed-recipients:;"), angle addresses, obsolete routes.
 * *out receives a new array of new strings "local@domain" (domain lowercased, local
 * part as written without quotes), *n their count. Returns 0, or -1 when the value
 * is malformed (nothing returned). Free with hdr_addresses_free(). */
int hdr_parse_addresses(const char *value, size_t len, char ***out, size_t *n);
/* The same for an RFC 5322 3.6.2 mailbox-list (From:, Sender:, Resent-From:,
 * Resent-Sender:): -1 also for a group ("x:;", "team: a@b;") and for a list
 * without any mailbox, so *n is at least 1 on success. */
int hdr_parse_mailboxes(const char *value, size_t len, char ***out, size_t *n);
void hdr_addresses_free(char **v, size_t n);

#endif
