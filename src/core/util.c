/* util.c: time, file and directory helpers, base64 (on OpenSSL's EVP block coder),
 * IP literals, and the error-buffer formatter. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/buf.h"
#include "core/util.h"

double time_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double time_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void time_rfc5322(char *dst, size_t size, time_t t)
{
    struct tm tm;
    localtime_r(&t, &tm);
    if (strftime(dst, size, "%a, %d %b %Y %H:%M:%S %z", &tm) == 0 && size) dst[0] = '\0';
}

void time_iso8601(char *dst, size_t size, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    if (strftime(dst, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0 && size) dst[0] = '\0';
}

int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

int mkdir_p(const char *path, mode_t mode)
{
    char tmp[4096];
    if (str_copy(tmp, path, sizeof tmp) >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, mode) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST) return -1;
    return 0;
}

char *path_relative(const char *base, const char *path)
{
    /* the longest common prefix that ends at a folder boundary in both */
    size_t common = 0;
    for (size_t i = 0;; i++) {
        int bend = base[i] == '\0' || base[i] == '/', pend = path[i] == '\0' || path[i] == '/';
        if (bend && pend) {
            common = i;
            if (!base[i] || !path[i]) break;
        } else if (base[i] != path[i]) {
            break;
        }
    }
    if (common == 0) return xstrdup(path);
    size_t ups = 0;
    for (const char *b = base + common; *b; b++)
        ups += *b == '/';
    const char *rest = path[common] ? path + common + 1 : "";
    char *out = xmalloc(ups * 3 + strlen(rest) + 2);
    size_t o = 0;
    for (size_t i = 0; i < ups; i++) {
        memcpy(out + o, "../", 3);
        o += 3;
    }
    if (*rest) {
        memcpy(out + o, rest, strlen(rest));
        o += strlen(rest);
    } else if (o > 0) {
        o--; /* "../.." */
    } else {
        out[o++] = '.';
    }
    out[o] = '\0';
    return out;
}

void strs_add(struct strs *l, char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = s;
}

void strs_free(struct strs *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    *l = (struct strs){0};
}

int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

int text_next_line(const char **p, const char *end, const char **a, const char **b, int *line)
{
    while (*p < end) {
        const char *eol = memchr(*p, '\n', (size_t)(end - *p));
        if (!eol) eol = end;
        ++*line;
        const char *x = *p, *y = eol;
        *p = eol < end ? eol + 1 : end;
        while (x < y && is_blank(*x))
            x++;
        while (y > x && is_blank(y[-1]))
            y--;
        if (x == y || *x == '#') continue;
        *a = x;
        *b = y;
        return 1;
    }
    return 0;
}

void roff_puts(FILE *out, const char *s)
{
    if (*s == '.' || *s == '\'') fputs("\\&", out);
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\e", out);
        else if (*s == '-')
            fputs("\\-", out);
        else
            fputc(*s, out);
    }
}

char *file_read(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct buf b;
    buf_init(&b, 0);
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            buf_release(&b);
            errno = e;
            return NULL;
        }
        if (n == 0) break;
        buf_append(&b, chunk, (size_t)n);
    }
    close(fd);
    if (len) *len = b.len;
    return buf_take(&b);
}

/* RFC 4648 4: the standard alphabet, without '='. */
static int b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

int base64_decode(const char *in, size_t len, unsigned char *out, size_t outsize, size_t *outlen)
{
    *outlen = 0;
    /* RFC 4954 4: a lone "=" is an empty initial response. */
    if (len == 0 || (len == 1 && in[0] == '=')) {
        if (outsize > 0) out[0] = '\0';
        return 0;
    }
    if (len % 4 != 0 || len > INT_MAX) return -1;
    size_t pad = 0;
    if (in[len - 1] == '=') pad = in[len - 2] == '=' ? 2 : 1;
    size_t need = len / 4 * 3 - pad;
    if (need > outsize) return -1;
    /* EVP_DecodeBlock is lenient: it skips leading white space and trailing white
     * space, line ends and '-', and reads '=' anywhere as zero bits. Only the strict
     * form may reach it. */
    for (size_t i = 0; i < len - pad; i++)
        if (!b64_char((unsigned char)in[i])) return -1;
    /* All groups but the last decode straight into out; the last one (up to three
     * bytes, padding read as zero bits) goes through a small buffer, as out may have
     * room only for its real bytes. */
    size_t head = len - 4;
    if (head && EVP_DecodeBlock(out, (const unsigned char *)in, (int)head) != (int)(head / 4 * 3))
        return -1;
    unsigned char last[3];
    if (EVP_DecodeBlock(last, (const unsigned char *)in + head, 4) != 3) return -1;
    /* RFC 4648 3.5: the bits under the padding must be zero. */
    for (size_t k = 3 - pad; k < 3; k++)
        if (last[k] != 0) return -1;
    memcpy(out + head / 4 * 3, last, 3 - pad);
    if (need < outsize) out[need] = '\0';
    *outlen = need;
    return 0;
}

int base64_encode(const unsigned char *in, size_t len, char *out, size_t outsize, size_t *outlen)
{
    if (outlen) *outlen = 0;
    if (len > (size_t)INT_MAX / 4 * 3 - 3) return -1; /* EVP counts in int */
    size_t need = (len + 2) / 3 * 4;
    if (outsize < need + 1) return -1;
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len); /* NUL-terminates */
    if (outlen) *outlen = (size_t)n;
    return 0;
}

int ip_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_storage out = {0};
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out;
    socklen_t n;
    if (inet_pton(AF_INET, s, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        n = sizeof *v4;
    } else if (inet_pton(AF_INET6, s, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        n = sizeof *v6;
    } else {
        return -1;
    }
    *ss = out;
    if (len) *len = n;
    return 0;
}

void err_vset(char *err, size_t errsize, const char *fmt, va_list ap)
{
    if (!err || !errsize) return;
    if (vsnprintf(err, errsize, fmt, ap) < 0) err[0] = '\0';
}

void err_set(char *err, size_t errsize, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, errsize, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ CRC-32C */

static uint32_t crc32c_table[256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1; /* reflected Castagnoli */
        crc32c_table[i] = c;
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t c, const unsigned char *b,
                                                            size_t n)
{
    uint64_t c64 = c;
    for (; n >= 8; n -= 8, b += 8) {
        uint64_t v;
        memcpy(&v, b, 8);
        c64 = __builtin_ia32_crc32di(c64, v);
    }
    c = (uint32_t)c64;
    for (; n; n--)
        c = __builtin_ia32_crc32qi(c, *b++);
    return c;
}
#endif

uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
    const unsigned char *b = p;
    uint32_t c = ~crc;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("sse4.2")) return ~crc32c_hw(c, b, n);
#endif
    pthread_once(&crc32c_once, crc32c_init);
    for (; n; n--)
        c = crc32c_table[(c ^ *b++) & 0xff] ^ (c >> 8);
    return ~c;
}
