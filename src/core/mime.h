/* mime.h: writing MIME and RFC 5322 text (mime.c). Each function appends to b. */
#ifndef KURIER_MIME_H
#define KURIER_MIME_H

#include <stddef.h>

struct buf;

/* "Name: value" CRLF, folded at spaces so no line passes 78 columns where the words
 * allow (a longer word stays whole). value is a single line of text. */
void mime_put_field(struct buf *b, const char *name, const char *value);
/* RFC 2047 Q-encoded words ("=?UTF-8?Q?...?=") for the UTF-8 header text s, each word
 * at most 75 characters and never splitting a character; words are joined by CRLF
 * SP (folded). */
void mime_put_encoded_words(struct buf *b, const char *s);
/* Quoted-printable (RFC 2045 6.7) of the CRLF text p[0..n): lines at most 76
 * characters with soft breaks, line ends kept as CRLF. */
void mime_put_qp(struct buf *b, const char *p, size_t n);

#endif
