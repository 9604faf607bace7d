/* fuzz_queue_stream.c: transfer_decode (the "kurier queue import" stream) on arbitrary
 * bytes, read in small uneven pieces. A stream that decodes is written again with the
 * encoder from what was read and must decode again to the same messages and content
 * (decode(encode(decode(x))) keeps them), and once more with every other message
 * skipped. */
#include "core/compat.h"

#include <stdint.h>

#include "core/core.h"
#include "queue/queue.h"
#include "queue/transfer.h"

struct src {
    const uint8_t *p;
    size_t len, pos, reads;
};

struct msg {
    struct spool_env *env;
    struct buf content;
};

struct sink {
    struct src in;
    struct msg *v;
    size_t n;
    int skip_odd;
};

static long rd(void *arg, void *p, size_t n)
{
    struct src *s = &((struct sink *)arg)->in;
    size_t k = 1 + (s->reads++ * 7) % 97; /* uneven pieces cross every boundary */
    if (k > n) k = n;
    if (k > s->len - s->pos) k = s->len - s->pos;
    memcpy(p, s->p + s->pos, k);
    s->pos += k;
    return (long)k;
}

static int begin(void *arg, const char *node, const struct spool_env *env, unsigned long long len,
                 char *err, size_t errsize)
{
    struct sink *k = arg;
    int skip = k->skip_odd && (k->n & 1);
    k->v = xrealloc(k->v, (k->n + 1) * sizeof *k->v);
    k->v[k->n].env = skip ? NULL : envelope_dup(env);
    buf_init(&k->v[k->n].content, 0);
    k->n++;
    return skip;
}

static int content(void *arg, const void *p, size_t n, char *err, size_t errsize)
{
    struct sink *k = arg;
    buf_append(&k->v[k->n - 1].content, p, n);
    return 0;
}

static int end(void *arg, char *err, size_t errsize)
{
    return 0;
}

static const struct transfer_dec_ops ops = {rd, begin, content, end};

static int to_buf(void *arg, const void *p, size_t n)
{
    buf_append(arg, p, n);
    return 0;
}

static void sink_free(struct sink *k)
{
    for (size_t i = 0; i < k->n; i++) {
        spool_env_free(k->v[i].env);
        buf_release(&k->v[i].content);
    }
    free(k->v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sink k = {.in = {data, size, 0, 0}};
    struct transfer_stats st;
    char err[1024];
    if (transfer_decode(&ops, &k, &st, err, sizeof err) != 0) {
        sink_free(&k);
        return 0;
    }
    struct buf out;
    buf_init(&out, 0);
    struct transfer_enc *e = transfer_enc_new(st.node, to_buf, &out);
    if (!e) abort();
    for (size_t i = 0; i < k.n; i++) {
        struct msg *m = &k.v[i];
        if (transfer_enc_message(e, m->env, m->content.len) != 0 ||
            transfer_enc_content(e, m->content.data ? m->content.data : "", m->content.len) != 0 ||
            transfer_enc_message_end(e) != 0)
            abort();
    }
    if (transfer_enc_finish(e) != 0) abort();
    transfer_enc_free(e);
    struct sink k2 = {.in = {(const uint8_t *)out.data, out.len, 0, 0}};
    if (transfer_decode(&ops, &k2, &st, err, sizeof err) != 0) {
        fprintf(stderr, "the stream written again does not decode: %s\n", err);
        abort();
    }
    if (k2.n != k.n) abort();
    for (size_t i = 0; i < k.n; i++)
        if (k2.v[i].content.len != k.v[i].content.len ||
            (k.v[i].content.len &&
             memcmp(k2.v[i].content.data, k.v[i].content.data, k.v[i].content.len) != 0) ||
            strcmp(k2.v[i].env->id, k.v[i].env->id) != 0)
            abort();
    sink_free(&k2);
    /* the same stream again, every other message skipped: still whole */
    struct sink k3 = {.in = {data, size, 0, 0}, .skip_odd = 1};
    if (transfer_decode(&ops, &k3, &st, err, sizeof err) != 0 || k3.n != k.n ||
        st.skipped != k.n / 2)
        abort();
    sink_free(&k3);
    sink_free(&k);
    buf_release(&out);
    return 0;
}
