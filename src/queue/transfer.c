/* transfer.c: the queue hand-over stream (format in transfer.h and docs/queue.md):
 * its encoder and its parser (fuzzed: fuzz/fuzz_queue_stream.c). Pure: bytes through
 * the caller's callbacks, SHA-256 from OpenSSL. */
#include "core/compat.h"

#include <openssl/evp.h>

#include "core/core.h"
#include "queue/queue.h"
#include "queue/transfer.h"

#define SHA_LEN 32

static void hex(char out[2 * SHA_LEN + 1], const unsigned char *md)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < SHA_LEN; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[2 * SHA_LEN] = '\0';
}

static EVP_MD_CTX *sha_new(void)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) abort(); /* out of memory */
    return c;
}

/* The digest so far as hex, and the context started again. */
static void sha_take(EVP_MD_CTX *c, char out[2 * SHA_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (EVP_DigestFinal_ex(c, md, &n) != 1 || n != SHA_LEN ||
        EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1)
        abort();
    hex(out, md);
}

int transfer_node_valid(const char *node)
{
    size_t n = strlen(node);
    if (n == 0 || n > TRANSFER_NODE_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = node[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == ':'))
            return 0;
    }
    return 1;
}

/* --- writing ----------------------------------------------------------------- */

struct transfer_enc {
    transfer_write_fn write;
    void *arg;
    EVP_MD_CTX *all, *msg;
    unsigned long long count, bytes;
    unsigned long long want, got; /* content bytes of the message being written */
    int in_msg, failed;
};

/* Out, into the stream checksum and (in a message) the message checksum. */
static int enc_put(struct transfer_enc *e, const void *p, size_t n, int in_msg)
{
    if (e->failed) return -1;
    if (n && e->write(e->arg, p, n) != 0) {
        e->failed = 1;
        return -1;
    }
    EVP_DigestUpdate(e->all, p, n);
    if (in_msg) EVP_DigestUpdate(e->msg, p, n);
    e->bytes += n;
    return 0;
}

struct transfer_enc *transfer_enc_new(const char *node, transfer_write_fn write, void *arg)
{
    if (!transfer_node_valid(node)) return NULL;
    struct transfer_enc *e = xcalloc(1, sizeof *e);
    e->write = write;
    e->arg = arg;
    e->all = sha_new();
    e->msg = sha_new();
    char line[TRANSFER_NODE_MAX + 64];
    int n = snprintf(line, sizeof line, "%s node=%s\n", TRANSFER_MAGIC, node);
    if (enc_put(e, line, (size_t)n, 0) != 0) {
        transfer_enc_free(e);
        return NULL;
    }
    return e;
}

int transfer_enc_message(struct transfer_enc *e, const struct spool_env *env,
                         unsigned long long content_len)
{
    if (e->failed || e->in_msg || !spool_id_valid(env->id) || content_len > TRANSFER_CONTENT_MAX)
        return -1;
    char *text = spool_env_format(env);
    size_t tl = strlen(text);
    if (tl > TRANSFER_ENV_MAX) {
        free(text);
        return -1;
    }
    char line[128];
    int n = snprintf(line, sizeof line, "message %s envelope=%zu content=%llu\n", env->id, tl,
                     content_len);
    int r = enc_put(e, line, (size_t)n, 1);
    if (r == 0) r = enc_put(e, text, tl, 1);
    free(text);
    if (r != 0) return -1;
    e->in_msg = 1;
    e->want = content_len;
    e->got = 0;
    return 0;
}

int transfer_enc_content(struct transfer_enc *e, const void *p, size_t n)
{
    if (!e->in_msg || n > e->want - e->got) {
        e->failed = 1;
        return -1;
    }
    e->got += n;
    return enc_put(e, p, n, 1);
}

int transfer_enc_message_end(struct transfer_enc *e)
{
    if (!e->in_msg || e->got != e->want) {
        e->failed = 1;
        return -1;
    }
    char sum[2 * SHA_LEN + 1], line[2 * SHA_LEN + 16];
    sha_take(e->msg, sum);
    int n = snprintf(line, sizeof line, "sha256 %s\n", sum);
    e->in_msg = 0;
    if (enc_put(e, line, (size_t)n, 0) != 0) return -1;
    e->count++;
    return 0;
}

int transfer_enc_finish(struct transfer_enc *e)
{
    if (e->failed || e->in_msg) return -1;
    char sum[2 * SHA_LEN + 1], line[2 * SHA_LEN + 64];
    sha_take(e->all, sum);
    int n = snprintf(line, sizeof line, "end count=%llu sha256=%s\n", e->count, sum);
    if (e->write(e->arg, line, (size_t)n) != 0) {
        e->failed = 1;
        return -1;
    }
    e->bytes += (unsigned long long)n;
    return 0;
}

unsigned long long transfer_enc_count(const struct transfer_enc *e)
{
    return e->count;
}

unsigned long long transfer_enc_bytes(const struct transfer_enc *e)
{
    return e->bytes;
}

void transfer_enc_free(struct transfer_enc *e)
{
    if (!e) return;
    EVP_MD_CTX_free(e->all);
    EVP_MD_CTX_free(e->msg);
    free(e);
}

/* --- reading ----------------------------------------------------------------- */

#define LINE_MAX_LEN (TRANSFER_NODE_MAX + 128) /* the longest line of the format */

struct dec {
    const struct transfer_dec_ops *ops;
    void *arg;
    unsigned char buf[65536];
    size_t pos, len;
    unsigned long long off; /* stream offset of buf[pos] */
    int eof, rerr;
    EVP_MD_CTX *all, *msg;
};

/* 1 when bytes are buffered, 0 at the end of the stream, -1 read error. */
static int dec_fill(struct dec *d)
{
    if (d->pos < d->len) return 1;
    if (d->eof) return 0;
    if (d->rerr) return -1;
    long n = d->ops->read(d->arg, d->buf, sizeof d->buf);
    if (n < 0) {
        d->rerr = 1;
        return -1;
    }
    if (n == 0 || (size_t)n > sizeof d->buf) {
        d->eof = 1;
        return 0;
    }
    d->pos = 0;
    d->len = (size_t)n;
    return 1;
}

/* Read a line into line (NUL-terminated, without its LF; NUL bytes refused): its
 * length, -1 the stream ended (before any byte: *empty = 1), -2 too long or a NUL,
 * -3 read error. The bytes are hashed by the caller (dec_hash) once it knows what the
 * line is. */
static int dec_line(struct dec *d, char *line, size_t max, int *empty)
{
    size_t n = 0;
    *empty = 0;
    for (;;) {
        int f = dec_fill(d);
        if (f < 0) return -3;
        if (f == 0) {
            *empty = n == 0;
            return -1;
        }
        unsigned char c = d->buf[d->pos++];
        d->off++;
        if (c == '\n') break;
        if (c == '\0' || n + 1 >= max) return -2;
        line[n++] = (char)c;
    }
    line[n] = '\0';
    return (int)n;
}

static void dec_hash(struct dec *d, const void *p, size_t n, int in_msg)
{
    EVP_DigestUpdate(d->all, p, n);
    if (in_msg) EVP_DigestUpdate(d->msg, p, n);
}

/* Exactly n bytes: into out (when not NULL), else to the content callback (when
 * deliver). 0 done, -1 the stream ended, -3 read error, -4 the callback stopped. */
static int dec_bytes(struct dec *d, unsigned long long n, char *out, int deliver, char *err,
                     size_t errsize)
{
    while (n) {
        int f = dec_fill(d);
        if (f <= 0) return f == 0 ? -1 : -3;
        size_t k = d->len - d->pos;
        if (k > n) k = (size_t)n;
        const unsigned char *p = d->buf + d->pos;
        dec_hash(d, p, k, 1);
        if (out) {
            memcpy(out, p, k);
            out += k;
        } else if (deliver && d->ops->content((void *)d->arg, p, k, err, errsize) != 0) {
            return -4;
        }
        d->pos += k;
        d->off += k;
        n -= k;
    }
    return 0;
}

static int parse_ull(const char *p, unsigned long long max, unsigned long long *out)
{
    if (!*p || strlen(p) > 19) return -1;
    unsigned long long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (unsigned)(*p - '0');
    }
    if (v > max) return -1;
    *out = v;
    return 0;
}

static int is_hex64(const char *p)
{
    size_t n = strspn(p, "0123456789abcdef");
    return n == 2 * SHA_LEN && !p[n];
}

/* "message ID envelope=N content=M" */
static int parse_message_line(char *line, char id[QUEUE_ID_LEN + 1], unsigned long long *envlen,
                              unsigned long long *len)
{
    if (strncmp(line, "message ", 8) != 0) return -1;
    char *p = line + 8, *sp = strchr(p, ' ');
    if (!sp || (size_t)(sp - p) != QUEUE_ID_LEN) return -1;
    memcpy(id, p, QUEUE_ID_LEN);
    id[QUEUE_ID_LEN] = '\0';
    if (!spool_id_valid(id)) return -1;
    p = sp + 1;
    if (strncmp(p, "envelope=", 9) != 0 || !(sp = strchr(p, ' '))) return -1;
    *sp = '\0';
    if (parse_ull(p + 9, TRANSFER_ENV_MAX, envlen) != 0 || *envlen == 0) return -1;
    p = sp + 1;
    if (strncmp(p, "content=", 8) != 0) return -1;
    return parse_ull(p + 8, TRANSFER_CONTENT_MAX, len);
}

static void env_clear(struct spool_env *e)
{
    struct spool_env *h = xmalloc(sizeof *h);
    *h = *e;
    spool_env_free(h);
    memset(e, 0, sizeof *e);
}

int transfer_decode(const struct transfer_dec_ops *ops, void *arg, struct transfer_stats *st,
                    char *err, size_t errsize)
{
    memset(st, 0, sizeof *st);
    struct dec *d = xcalloc(1, sizeof *d);
    d->ops = ops;
    d->arg = arg;
    d->all = sha_new();
    d->msg = sha_new();
    char line[LINE_MAX_LEN], cb_err[512] = "";
    char *envtext = NULL;
    struct spool_env env = {0};
    int have_env = 0, rc = -1, empty;
    unsigned long long at = 0; /* where the current record started */
    char id[QUEUE_ID_LEN + 1] = "";
    /* err: "offset N: message K (ID): what", or without a message before the first */
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        char what_[600];                                                                           \
        snprintf(what_, sizeof what_, __VA_ARGS__);                                                \
        if (id[0])                                                                                 \
            snprintf(err, errsize, "offset %llu: message %llu (%s) at offset %llu: %s", d->off,    \
                     st->count + 1, id, at, what_);                                                \
        else                                                                                       \
            snprintf(err, errsize, "offset %llu: %s", d->off, what_);                              \
        goto out;                                                                                  \
    } while (0)

    int n = dec_line(d, line, sizeof line, &empty);
    if (n == -1) FAIL(empty ? "empty stream (no \"%s\" line)" : "cut short", TRANSFER_MAGIC);
    if (n == -3) FAIL("read error");
    size_t ml = strlen(TRANSFER_MAGIC);
    if (n < 0 || strncmp(line, TRANSFER_MAGIC, ml) != 0 || strncmp(line + ml, " node=", 6) != 0 ||
        !transfer_node_valid(line + ml + 6))
        FAIL("not a kurier queue stream (the first line must be \"%s node=NAME\")", TRANSFER_MAGIC);
    str_copy(st->node, line + ml + 6, sizeof st->node);
    dec_hash(d, line, (size_t)n, 0);
    dec_hash(d, "\n", 1, 0);
    for (;;) {
        at = d->off;
        id[0] = '\0';
        n = dec_line(d, line, sizeof line, &empty);
        if (n == -1)
            FAIL("the stream is cut short after %llu message%s (%s)", st->count,
                 st->count == 1 ? "" : "s", empty ? "no end line" : "inside a line");
        if (n == -3) FAIL("read error");
        if (n == -2) FAIL("line too long or with a NUL byte");
        if (strncmp(line, "end ", 4) == 0) break;
        dec_hash(d, line, (size_t)n, 1); /* before parsing: it cuts the line up */
        dec_hash(d, "\n", 1, 1);
        unsigned long long envlen, len;
        if (parse_message_line(line, id, &envlen, &len) != 0) {
            id[0] = '\0';
            FAIL("message %llu at offset %llu: malformed line (expected \"message ID "
                 "envelope=N content=N\" or \"end ...\")",
                 st->count + 1, at);
        }
        envtext = xmalloc((size_t)envlen);
        int r = dec_bytes(d, envlen, envtext, 0, cb_err, sizeof cb_err);
        if (r == -1) FAIL("the stream is cut short inside the envelope");
        if (r != 0) FAIL("read error");
        int bad_line = 0;
        if (spool_env_parse(envtext, (size_t)envlen, &env, &bad_line) != 0)
            FAIL("malformed envelope (its line %d)", bad_line);
        have_env = 1;
        free(envtext);
        envtext = NULL;
        if (strcmp(env.id, id) != 0) FAIL("the envelope names another ID (%s)", env.id);
        if (env.nrcpts == 0) FAIL("the envelope has no recipients");
        int take = ops->begin(arg, st->node, &env, len, cb_err, sizeof cb_err);
        if (take < 0) FAIL("%s", cb_err);
        r = dec_bytes(d, len, NULL, take == 0, cb_err, sizeof cb_err);
        if (r == -1) FAIL("the stream is cut short inside the content");
        if (r == -3) FAIL("read error");
        if (r == -4) FAIL("%s", cb_err);
        n = dec_line(d, line, sizeof line, &empty);
        if (n == -1) FAIL("the stream is cut short before the message's checksum");
        if (n == -3) FAIL("read error");
        char sum[2 * SHA_LEN + 1];
        sha_take(d->msg, sum);
        if (n < 0 || strncmp(line, "sha256 ", 7) != 0 || !is_hex64(line + 7))
            FAIL("malformed checksum line (expected \"sha256 HEX\")");
        if (strcmp(line + 7, sum) != 0) FAIL("checksum mismatch: the message is damaged");
        dec_hash(d, line, (size_t)n, 0);
        dec_hash(d, "\n", 1, 0);
        if (take == 0 && ops->end(arg, cb_err, sizeof cb_err) != 0) FAIL("%s", cb_err);
        if (take == 1) st->skipped++;
        st->count++;
        env_clear(&env);
        have_env = 0;
    }
    /* "end count=N sha256=HEX" */
    char sum[2 * SHA_LEN + 1];
    sha_take(d->all, sum);
    char *sp = strchr(line + 4, ' ');
    unsigned long long count;
    if (strncmp(line + 4, "count=", 6) != 0 || !sp) FAIL("malformed end line");
    *sp = '\0';
    if (parse_ull(line + 10, ~0ull, &count) != 0 || strncmp(sp + 1, "sha256=", 7) != 0 ||
        !is_hex64(sp + 8))
        FAIL("malformed end line");
    if (count != st->count)
        FAIL("the end line counts %llu messages, the stream has %llu", count, st->count);
    if (strcmp(sp + 8, sum) != 0) FAIL("checksum mismatch of the whole stream");
    int f = dec_fill(d);
    if (f != 0) FAIL(f < 0 ? "read error after the end line" : "data after the end line");
    rc = 0;
#undef FAIL
out:
    st->bytes = d->off;
    free(envtext);
    if (have_env) env_clear(&env);
    EVP_MD_CTX_free(d->all);
    EVP_MD_CTX_free(d->msg);
    free(d);
    return rc;
}
