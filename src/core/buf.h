/* buf.h: one owning, growable byte buffer with a hard maximum, for all wire data.
 * Callers keep a struct buf (or a pointer to one) and use offsets, never cached
 * data pointers across appends: data may move when the buffer grows. */
#ifndef KURIER_BUF_H
#define KURIER_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data; /* always NUL-terminated after len (one spare byte) */
    size_t len;
    size_t cap;
    size_t max; /* hard maximum of len; 0 = unlimited */
};

/* Initialise an empty buffer that may hold up to max bytes (0: no limit). */
void buf_init(struct buf *b, size_t max);
/* Free the storage; b may be reused after buf_init(). NULL-safe. */
void buf_release(struct buf *b);
/* Append n bytes. 0 done, -1 when max would be passed (nothing appended). */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
/* Append formatted text. 0 done, -1 when max would be passed. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s as a JSON string (quoted; ", \ and control characters escaped); NULL
 * appends null. */
void buf_json_str(struct buf *b, const char *s);
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Drop the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
/* Empty the buffer, keep its storage. */
void buf_reset(struct buf *b);
/* Hand the storage to the caller (NUL-terminated, caller frees); b becomes empty. */
char *buf_take(struct buf *b);

/* Out-of-memory aborts (STYLE.md): these never return NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a new string; caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Copy at most size-1 bytes of src to dst, always NUL-terminated. Returns strlen(src)
 * (as strlcpy). */
size_t str_copy(char *dst, const char *src, size_t size);
/* ASCII case-insensitive compare of the whole string / a suffix. */
int str_ieq(const char *a, const char *b);
int str_iendswith(const char *s, const char *suffix);
/* Lowercase ASCII in place; returns s. */
char *str_lower(char *s);

#endif
