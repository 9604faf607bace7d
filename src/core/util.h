/* util.h: time, files, base64 and small system helpers shared by every module. */
#ifndef KURIER_UTIL_H
#define KURIER_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

/* Monotonic seconds (for delays and timeouts) and wall-clock seconds as double. */
double time_mono(void);
double time_wall(void);
/* RFC 5322 date "Wed, 25 Nov 2026 13:20:00 +0000" into dst (>= 40 bytes). */
void time_rfc5322(char *dst, size_t size, time_t t);
/* ISO 8601 UTC "2026-11-25T13:20:00Z" into dst (>= 21 bytes). */
void time_iso8601(char *dst, size_t size, time_t t);

/* fsync a directory by path. 0 done, -1 failed (errno set). */
int fsync_dir(const char *path);
/* mkdir -p with mode; 0 done or existed, -1 failed (errno set). */
int mkdir_p(const char *path, mode_t mode);
/* The way from folder base to path, both absolute and clean: ("/a/b/var",
 * "/a/b/var/spool") -> "spool", ("/a/b/var", "/a/b/etc/k.conf") -> "../etc/k.conf",
 * ("/a/b", "/a/b") -> ".". When they share no folder but "/", a copy of path: a
 * way up to "/" gains nothing. Purely lexical. Returns a new string. */
char *path_relative(const char *base, const char *path);
/* A growing list of strings it owns: {0} is empty; strs_add takes s (a new string),
 * strs_free frees them all and the list's array. */
struct strs {
    char **v;
    size_t n, cap;
};
void strs_add(struct strs *l, char *s);
void strs_free(struct strs *l);
/* Write all of buf to fd, retrying on EINTR/short writes. 0 done, -1 failed. */
int write_all(int fd, const void *buf, size_t len);
/* Read a whole file into a new NUL-terminated string; *len set when non-NULL.
 * NULL on error (errno set). Caller frees. */
char *file_read(const char *path, size_t *len);
/* s as roff text (man pages): a leading dot or quote would be a request, a backslash
 * an escape, a hyphen a minus sign. */
void roff_puts(FILE *out, const char *s);
/* The next line of a key or secret file that is neither blank nor a '#' comment:
 * [*a, *b), without leading and trailing spaces, tabs and CRs. *p walks the text up to
 * end (start it at the text); *line counts its lines (start it at 0). 1 when a line
 * was found, 0 at the end. */
int text_next_line(const char **p, const char *end, const char **a, const char **b, int *line);
/* CRC-32C (Castagnoli, as iSCSI and ext4) of p[0..n), continuing from crc (start with
 * 0): crc32c(0, "123456789", 9) == 0xE3069283. SSE 4.2 when the CPU has it. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

/* An IPv4 or IPv6 literal ("192.0.2.1", "2001:db8::1", no brackets) into a socket
 * address with port 0; *len (when non-NULL) gets its size. 0 done, -1 not an IP
 * literal (ss and *len untouched). */
int ip_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Strict base64 (RFC 4648 4) of len bytes: the standard alphabet, length a multiple
 * of 4, "=" only as the final one or two padding characters, unused bits zero; no
 * whitespace. The empty string (and AUTH's lone "=", RFC 4954 4) decode to 0 bytes.
 * 0 with *outlen set (out is NUL-terminated when there is room, outsize must be at
 * least the decoded length), -1 on bad base64 or when out is too small. */
int base64_decode(const char *in, size_t len, unsigned char *out, size_t outsize, size_t *outlen);
/* Encode len bytes into out as a NUL-terminated string (no line breaks). 0 done
 * (*outlen = characters written, without the NUL; outlen may be NULL), -1 when out
 * is smaller than 4 * ceil(len / 3) + 1. Zero bytes encode as "" (callers sending an
 * empty challenge send "334 " themselves). */
int base64_encode(const unsigned char *in, size_t len, char *out, size_t outsize, size_t *outlen);

/* Format a message into the caller's error buffer err (errsize bytes), the
 * (char *err, size_t errsize) pair that functions returning -1 fill. Does nothing
 * when err is NULL or errsize 0; a message that does not fit is cut. */
void err_set(char *err, size_t errsize, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void err_vset(char *err, size_t errsize, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* --- the daemon's working folder (workdir.c) --------------------------------------- */

/* Where path is: its folder with symbolic links resolved (as ".." from the working
 * folder walks the real tree), its last part as written (a link there is followed
 * when the file is opened, e.g. a renewed certificate). A new string, or NULL when
 * the folder cannot be resolved (not there, or not reachable by us). */
char *path_physical(const char *path);

/* The working folder: state_dir as configured, and where it really is. */
struct workdir {
    char *lexical;
    char *physical; /* symbolic links resolved */
};
/* Move into dir (kurierd: state_dir, as root, before the privilege drop), filling w.
 * 0 done, -1 failed (errno set); workdir_clear() w either way. */
int workdir_enter(struct workdir *w, const char *dir);
void workdir_clear(struct workdir *w);
/* conf_map_paths() callback, arg a struct workdir *: an absolute configured path as
 * reached from the working folder. Below it: the rest of it ("spool",
 * "tls/key.pem"). Elsewhere the path as written when everyone may pass through the
 * folders above the nearest folder it shares with the working folder (the usual
 * /var/mail, /etc/kurier), else the way up to that folder and down
 * (path_relative()): "../examples/kurier.conf" for a clone in /root. So after the
 * drop the kurier user still reaches the spool, the directory database, the
 * Maildirs, the certificates (SIGHUP) and the configuration of a clone in /root
 * (mode 0700). A new string. */
char *workdir_path(const char *path, void *arg);

#endif
