/* header.h: RFC 5322 header section parsing (pure, fuzzed): iterate header fields
 * and extract the addresses of address fields (From:, Sender:, To:, Cc:, Bcc:); and
 * the completion of a submitted message's header (From:, Date:, Message-ID:). */
#ifndef KURIER_HEADER_H
#define KURIER_HEADER_H

#include <stddef.h>

struct buf;

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

/* What header_complete() writes for a field the header lacks (RFC 5322 3.6: a message
 * must have From: and Date:, should have Message-ID:; RFC 6409 8.1-8.3 lets a
 * submission server add them). All strings borrowed. */
struct hdr_complete {
    const char *from_addr;  /* From: <from_addr>; NULL: From: is never added */
    const char *from_name;  /* its display name, quoted; NULL or "" for none */
    const char *date;       /* Date: value, an RFC 5322 date (time_rfc5322) */
    const char *msgid_left; /* Message-ID: <msgid_left@msgid_domain> */
    const char *msgid_domain;
};
/* Complete a message's header, for sendmail(1) and submission alike: look through the
 * header section hdr (hdr_len bytes, read as hdr_next() does: up to its end or the
 * first line that is not a field) for From:, Date: and Message-ID:, then append to
 * out, in that order, each one that is missing as one CRLF-ended line. hdr may point
 * into out: it is read before anything is appended. */
void header_complete(struct buf *out, const char *hdr, size_t hdr_len,
                     const struct hdr_complete *c);

#endif
