/* test_transfer.c: the queue hand-over stream (queue/transfer.h): an envelope and its
 * content come back as they went in; every kind of damage is refused with the offset
 * and the message named; a skipped message is still checked. */
#include "core/compat.h"

#include "check.h"
#include "core/core.h"
#include "queue/queue.h"
#include "queue/transfer.h"
#include "smtp/smtp.h"

static int put(void *arg, const void *p, size_t n)
{
    return buf_append(arg, p, n);
}

static struct spool_env *sample(const char *id, int held)
{
    struct spool_env *e = xcalloc(1, sizeof *e);
    str_copy(e->id, id, sizeof e->id);
    e->sender = xstrdup("bob@example.test");
    e->arrival = 1764077473;
    e->envid = xstrdup("env 1");
    e->ret = SMTP_RET_HDRS;
    e->held = held;
    e->dsn_trusted = 1;
    e->nrcpts = 2;
    e->rcpts = xcalloc(2, sizeof *e->rcpts);
    e->rcpts[0].addr = xstrdup("a@remote.test");
    e->rcpts[0].orcpt = xstrdup("rfc822;orig-a@remote.test");
    e->rcpts[0].notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE;
    e->rcpts[0].attempts = 3;
    e->rcpts[0].next_try = 1764080000;
    e->rcpts[1].addr = xstrdup("b@remote.test");
    e->rcpts[1].state = RCPT_ST_SENT;
    return e;
}

static const char *const ids[] = {"CR8STWVVGH804F", "CR8STWVXQ2004F"};
static const char *const contents[] = {"Subject: one\r\n\r\nhello\r\n", ""};

static void make_stream(struct buf *b)
{
    buf_init(b, 0);
    struct transfer_enc *e = transfer_enc_new("mx1.example.org", put, b);
    for (int i = 0; i < 2; i++) {
        struct spool_env *env = sample(ids[i], i);
        size_t n = strlen(contents[i]);
        CHECK(transfer_enc_message(e, env, n) == 0, "message %d", i);
        CHECK(transfer_enc_content(e, contents[i], n) == 0, "content %d", i);
        CHECK(transfer_enc_message_end(e) == 0, "end %d", i);
        spool_env_free(env);
    }
    CHECK(transfer_enc_finish(e) == 0, "finish");
    CHECK(transfer_enc_count(e) == 2 && transfer_enc_bytes(e) == b->len, "counts");
    transfer_enc_free(e);
}

struct got {
    const char *p;
    size_t len, pos;
    int n, skip;
    struct spool_env *env[4];
    struct buf content[4];
};

static long rd(void *arg, void *p, size_t n)
{
    struct got *g = arg;
    size_t k = g->len - g->pos < 5 ? g->len - g->pos : 5; /* 5 bytes at a time */
    if (k > n) k = n;
    memcpy(p, g->p + g->pos, k);
    g->pos += k;
    return (long)k;
}

static int begin(void *arg, const char *node, const struct spool_env *env, unsigned long long len,
                 char *err, size_t errsize)
{
    struct got *g = arg;
    if (g->n >= 4) return -1;
    int skip = g->skip && g->n == 0;
    g->env[g->n] = envelope_dup(env);
    buf_init(&g->content[g->n], 0);
    g->n++;
    return skip;
}

static int content(void *arg, const void *p, size_t n, char *err, size_t errsize)
{
    struct got *g = arg;
    return buf_append(&g->content[g->n - 1], p, n);
}

static int end(void *arg, char *err, size_t errsize)
{
    return 0;
}

static const struct transfer_dec_ops ops = {rd, begin, content, end};

static int decode(const char *p, size_t len, int skip, struct got *g, struct transfer_stats *st,
                  char *err, size_t errsize)
{
    memset(g, 0, sizeof *g);
    g->p = p;
    g->len = len;
    g->skip = skip;
    return transfer_decode(&ops, g, st, err, errsize);
}

static void got_free(struct got *g)
{
    for (int i = 0; i < g->n; i++) {
        spool_env_free(g->env[i]);
        buf_release(&g->content[i]);
    }
}

static void test_round_trip(void)
{
    struct buf b;
    make_stream(&b);
    CHECK(strncmp(b.data,
                  "kurier-queue-stream 1 node=mx1.example.org\nmessage CR8STWVVGH804F "
                  "envelope=",
                  70) == 0,
          "%.80s", b.data);
    struct got g;
    struct transfer_stats st;
    char err[1024] = "";
    CHECK(decode(b.data, b.len, 0, &g, &st, err, sizeof err) == 0, "%s", err);
    CHECK(st.count == 2 && st.skipped == 0 && st.bytes == b.len, "%llu", st.count);
    CHECK(strcmp(st.node, "mx1.example.org") == 0, "%s", st.node);
    CHECK(g.n == 2, "%d", g.n);
    for (int i = 0; i < g.n && i < 2; i++) {
        struct spool_env *e = g.env[i], *want = sample(ids[i], i);
        char *t1 = spool_env_format(e), *t2 = spool_env_format(want);
        CHECK(strcmp(t1, t2) == 0, "envelope %d:\n%s---\n%s", i, t1, t2);
        CHECK(g.content[i].len == strlen(contents[i]) &&
                  (!g.content[i].len ||
                   memcmp(g.content[i].data, contents[i], g.content[i].len) == 0),
              "content %d", i);
        free(t1);
        free(t2);
        spool_env_free(want);
    }
    got_free(&g);
    /* skipping the first: its content is not handed out, the stream still whole */
    CHECK(decode(b.data, b.len, 1, &g, &st, err, sizeof err) == 0, "%s", err);
    CHECK(st.skipped == 1 && g.content[0].len == 0 && g.content[1].len == 0, "skip");
    got_free(&g);
    buf_release(&b);
}

/* Each damage: the decode fails and err says what and where. */
static void test_damage(void)
{
    struct buf b;
    make_stream(&b);
    const char *second = strstr(b.data, "message CR8STWVXQ2004F");
    size_t at2 = (size_t)(second - b.data);
    size_t hello = (size_t)(strstr(b.data, "hello") - b.data);
    size_t endl = (size_t)(strstr(b.data, "end count=") - b.data);
    char at2s[64];
    snprintf(at2s, sizeof at2s, "message 2 (CR8STWVXQ2004F) at offset %zu: ", at2);
    struct {
        size_t cut;      /* keep this many bytes (0: all) */
        size_t flip;     /* xor a bit at this offset (0: none) */
        const char *add; /* appended */
        const char *want;
    } t[] = {
        {hello + 2, 0, NULL,
         "message 1 (CR8STWVVGH804F) at offset 43: the stream is cut short "
         "inside the content"},
        {at2, 0, NULL, "cut short after 1 message (no end line)"},
        {at2 + 10, 0, NULL, "cut short after 1 message (inside a line)"},
        {at2 + 40, 0, NULL, "cut short after 1 message (inside a line)"},
        {at2 + 70, 0, NULL, "cut short inside the envelope"},
        {endl, 0, NULL, "cut short after 2 messages (no end line)"},
        {b.len - 1, 0, NULL, "cut short after 2 messages (inside a line)"},
        {0, hello, NULL, "message 1 (CR8STWVVGH804F) at offset 43: checksum mismatch"},
        {0, at2 + 80, NULL, at2s},
        {0, at2 + 30, NULL, "message 2 at offset"},
        {0, at2 + 9, NULL, "the envelope names another ID (CR8STWVXQ2004F)"},
        {0, endl + 10, NULL, "the end line counts"},
        {0, 0, "more", "data after the end line"},
        {1, 0, NULL, "cut short"},
        {0, 3, NULL, "not a kurier queue stream"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct buf d;
        buf_init(&d, 0);
        buf_append(&d, b.data, t[i].cut ? t[i].cut : b.len);
        if (t[i].flip) d.data[t[i].flip] ^= 1;
        if (t[i].add) buf_puts(&d, t[i].add);
        struct got g;
        struct transfer_stats st;
        char err[1024] = "";
        int r = decode(d.data, d.len, 0, &g, &st, err, sizeof err);
        CHECK(r == -1 && strstr(err, t[i].want), "case %zu: %d %s", i, r, err);
        CHECK(strncmp(err, "offset ", 7) == 0, "case %zu: %s", i, err);
        got_free(&g);
        buf_release(&d);
    }
    struct got g;
    struct transfer_stats st;
    char err[1024] = "";
    CHECK(decode("", 0, 0, &g, &st, err, sizeof err) == -1 && strstr(err, "empty stream"), "%s",
          err);
    buf_release(&b);
}

static void test_bad_input_to_the_encoder(void)
{
    struct buf b;
    buf_init(&b, 0);
    CHECK(transfer_enc_new("a node", put, &b) == NULL, "space in the node name");
    CHECK(transfer_enc_new("", put, &b) == NULL, "empty node name");
    struct transfer_enc *e = transfer_enc_new("n1", put, &b);
    struct spool_env *env = sample(ids[0], 0);
    CHECK(transfer_enc_message(e, env, 3) == 0, "message");
    CHECK(transfer_enc_content(e, "abcd", 4) == -1, "more content than announced");
    CHECK(transfer_enc_finish(e) == -1, "after a failure");
    transfer_enc_free(e);
    spool_env_free(env);
    buf_release(&b);
}

int main(void)
{
    test_round_trip();
    test_damage();
    test_bad_input_to_the_encoder();
    return check_summary();
}
