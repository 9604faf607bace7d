/* test_spool.c: the spool: envelope text round trips, group commit through a real
 * event loop and worker pool, update/remove/scan, queue IDs, maildrop files. */
#include "core/compat.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "queue/queue.h"
#include "queue/segment.h"
#include "smtp/smtp.h"

#include "check.h"

static int streq_null(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

static int env_equal(const struct spool_env *a, const struct spool_env *b)
{
    if (strcmp(a->id, b->id) || !streq_null(a->sender, b->sender) || a->arrival != b->arrival ||
        a->size != b->size || !streq_null(a->client_name, b->client_name) ||
        !streq_null(a->client_addr, b->client_addr) || !streq_null(a->helo, b->helo) ||
        !streq_null(a->proto, b->proto) || !streq_null(a->auth_user, b->auth_user) ||
        !streq_null(a->envid, b->envid) || a->ret != b->ret || a->body != b->body ||
        a->smtputf8 != b->smtputf8 || a->held != b->held || a->delay_warned != b->delay_warned ||
        a->nrcpts != b->nrcpts)
        return 0;
    for (size_t i = 0; i < a->nrcpts; i++) {
        const struct spool_rcpt *x = &a->rcpts[i], *y = &b->rcpts[i];
        if (!streq_null(x->addr, y->addr) || !streq_null(x->orig, y->orig) ||
            !streq_null(x->orcpt, y->orcpt) || x->notify != y->notify || x->state != y->state ||
            x->attempts != y->attempts || x->next_try != y->next_try || strcmp(x->dsn, y->dsn) ||
            !streq_null(x->diag, y->diag))
            return 0;
    }
    return 1;
}

static struct spool_env *make_env(const char *sender, size_t nrcpts)
{
    struct spool_env *e = xcalloc(1, sizeof *e);
    spool_new_id(e->id);
    e->sender = xstrdup(sender);
    e->arrival = 1764076800;
    e->rcpts = xcalloc(nrcpts, sizeof *e->rcpts);
    e->nrcpts = nrcpts;
    for (size_t i = 0; i < nrcpts; i++) {
        e->rcpts[i].addr = xasprintf("user%zu@example.org", i);
        e->rcpts[i].orig = xstrdup(e->rcpts[i].addr);
    }
    return e;
}

static void test_env_roundtrip(void)
{
    static const char *nasty[] = {
        "",
        "plain",
        "with space",
        " leading and trailing ",
        "\"quoted local\"@example.org",
        "tab\there\r\nnewline",
        "back\\slash \\x41 not an escape",
        "<angle> [brackets] = equals, commas",
        "utf8 m\xc3\xbc"
        "ller@b\xc3\xbc"
        "cher.example",
        "\x01\x02\x7f\xff",
        "550 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen; "
        "https://www.spamhaus.org/query/ip/192.0.2.1",
    };
    size_t n = sizeof nasty / sizeof nasty[0];
    for (size_t i = 0; i < n; i++) {
        struct spool_env *e = make_env(nasty[i], 2);
        e->size = 12345 + i;
        e->client_name = xstrdup(nasty[(i + 1) % n][0] ? nasty[(i + 1) % n] : "x");
        e->client_addr = xstrdup("2001:db8::1");
        e->helo = xstrdup(nasty[i]);
        e->proto = xstrdup("ESMTPSA");
        e->auth_user = xstrdup(nasty[(i + 2) % n]);
        e->envid = xstrdup(nasty[(i + 3) % n]);
        e->ret = (int)(i % 3);
        e->body = (int)(i % 4);
        e->smtputf8 = (int)(i & 1);
        e->held = (int)((i >> 1) & 1);
        e->delay_warned = (int)((i >> 2) & 1);
        struct spool_rcpt *r = &e->rcpts[1];
        free(r->addr);
        r->addr = xstrdup(nasty[i][0] ? nasty[i] : "a@b");
        free(r->orig);
        r->orig = i % 2 ? NULL : xstrdup(nasty[(i + 4) % n]);
        r->orcpt = xasprintf("rfc822;%s", nasty[(i + 5) % n]);
        r->notify = (unsigned)(i % 16);
        r->state = (enum rcpt_state)(i % 3);
        r->attempts = (int)i * 7;
        r->next_try = 1764080000 + (time_t)i;
        str_copy(r->dsn, i % 2 ? "4.7.1" : "", sizeof r->dsn);
        r->diag = xstrdup(nasty[(i + 6) % n]);

        char *text = spool_env_format(e);
        struct spool_env out;
        int line = -1;
        int rc = spool_env_parse(text, strlen(text), &out, &line);
        CHECK(rc == 0, "case %zu: parse failed at line %d:\n%s", i, line, text);
        if (rc == 0) {
            CHECK(env_equal(e, &out), "case %zu: differs after round trip:\n%s", i, text);
            struct spool_env *o = xmalloc(sizeof *o);
            *o = out;
            spool_env_free(o);
        }
        free(text);
        spool_env_free(e);
    }
}

static void test_env_bad(void)
{
    static const struct {
        const char *text;
        int line;
    } cases[] = {
        {"id: 0123456789ABCD\nsender: <a@b>\n", 0},
        {"id: 0123456789ABCD\nsender: <a@b>\nbogus: 1\n", 3},
        {"id: 0123456789ABCD\nsender: a@b\n", 2},
        {"id: 0123456789ABCd\nsender: <a@b>\n", 1},
        {"id: ../../etc/pass\nsender: <a@b>\n", 1},
        {"id: 0123456789ABCD\nsender: <a@b>", 2},
        {"id: 0123456789ABCD\n\nsender: <a@b>\n", 2},
        {"id: 0123456789ABCD\nsender: <a@b>\nsender: <c@d>\n", 3},
        {"id: 0123456789ABCD\n", 2},
        {"sender: <a@b>\n", 2},
        {"id: 0123456789ABCD\nsender: <a@b>\nrcpt: <x@y> state=lost\n", 3},
        {"id: 0123456789ABCD\nsender: <a@b>\nrcpt: <x@y> attempts=-1\n", 3},
        {"id: 0123456789ABCD\nsender: <a@b>\nrcpt: <x@y>  state=sent\n", 3},
        {"id: 0123456789ABCD\nsender: <a@b>\nrcpt: <x@y> state=sent \n", 3},
        {"id: 0123456789ABCD\nsender: <a@b>\nrcpt: <x@y> dsn=4.2.0.12345\n", 3},
        {"id: 0123456789ABCD\nsender: <a@b>\nrcpt: <x@y> diag=a\\x00b\n", 3},
        {"id: 0123456789ABCD\nsender: <a@b>\nrcpt: <x@y> diag=a\\x4\n", 3},
        {"id: 0123456789ABCD\nsender: <a@b>\nrcpt: <x@y> notify=FAILURE,\n", 3},
        {"id: 0123456789ABCD\nsender: <a@b>\nrcpt: <x@y> notify=BOGUS\n", 3},
        {"id: 0123456789ABCD\nsender: <a@b>\nrcpt: x@y\n", 3},
        {"id: 0123456789ABCD\nsender: <a@b>\narrival: 99999999999999999999\n", 3},
        {"id: 0123456789ABCD\nsender: <a@b>\nheld: 2\n", 3},
        {"id: 0123456789ABCD\nsender: <a@b>\nbody: 9BIT\n", 3},
        {"id: 0123456789ABCD\nsender: <a@b>\nclient: [1.2.3.4]\n", 3},
        {"id:0123456789ABCD\nsender: <a@b>\n", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct spool_env out;
        int line = -1;
        int rc = spool_env_parse(cases[i].text, strlen(cases[i].text), &out, &line);
        if (cases[i].line == 0) {
            CHECK(rc == 0, "bad case %zu should parse (line %d)", i, line);
            if (rc == 0) {
                struct spool_env *o = xmalloc(sizeof *o);
                *o = out;
                spool_env_free(o);
            }
        } else {
            CHECK(rc == -1 && line == cases[i].line, "bad case %zu: rc %d line %d, want line %d", i,
                  rc, line, cases[i].line);
        }
    }
    /* a hand-written envelope as in queue.h */
    const char *text =
        "id: 0123456789ABCD\n"
        "sender: <a@b.example>\n"
        "arrival: 1764076800 (Tue, 25 Nov 2025 13:20:00 +0000)\n"
        "size: 42\n"
        "client: mx.example [192.0.2.7]\n"
        "proto: ESMTP\n"
        "ret: FULL\n"
        "body: 8BITMIME\n"
        "rcpt: <bob@example.org> orig=<Bob@example.org> orcpt=rfc822;bob@example.org "
        "notify=FAILURE,DELAY state=queued attempts=0 next=0 dsn=4.2.0 "
        "diag=451 greylisted state=sent x=y\n";
    struct spool_env out;
    int line = -1;
    CHECK(spool_env_parse(text, strlen(text), &out, &line) == 0, "example at line %d", line);
    CHECK(out.nrcpts == 1 && out.rcpts[0].notify == (SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY) &&
              strcmp(out.rcpts[0].diag, "451 greylisted state=sent x=y") == 0 &&
              strcmp(out.client_name, "mx.example") == 0 &&
              strcmp(out.client_addr, "192.0.2.7") == 0 && out.size == 42 &&
              out.body == SMTP_BODY_8BITMIME && out.ret == SMTP_RET_FULL,
          "example parsed wrong");
    struct spool_env *o = xmalloc(sizeof *o);
    *o = out;
    spool_env_free(o);
}

/* envelope_dup copies every field: the copy formats as the original does, owns its
 * strings (the original freed first, ASan sees any shared one), and a change to the
 * copy leaves the original alone. */
static void test_env_dup(void)
{
    const char *text =
        "id: 0123456789ABCD\n"
        "sender: <a@b.example>\n"
        "arrival: 1764076800\n"
        "size: 42\n"
        "client: mx.example [192.0.2.7]\n"
        "helo: mx.example\n"
        "proto: ESMTPSA\n"
        "auth: alice\n"
        "envid: QQ314159\n"
        "ret: HDRS\n"
        "body: 8BITMIME\n"
        "smtputf8: 1\n"
        "held: 1\n"
        "delay_warned: 1\n"
        "dsn_trusted: 1\n"
        "rcpt: <bob@example.org> orig=<Bob@example.org> orcpt=rfc822;bob@example.org "
        "notify=FAILURE,DELAY state=queued attempts=3 next=1764080000 "
        "last=1764079000 relay=mx.example.org[192.0.2.9]:25 notified=delayed "
        "dsn=4.2.0 diag=451 greylisted\n"
        "rcpt: <carol@example.org> state=bounced attempts=1 next=0 dsn=5.1.1 "
        "diag=550 no such user\n";
    struct spool_env *e = xcalloc(1, sizeof *e);
    int line = -1;
    CHECK(spool_env_parse(text, strlen(text), e, &line) == 0, "dup example at line %d", line);
    char *want = spool_env_format(e);
    struct spool_env *d = envelope_dup(e);
    spool_env_free(e);
    char *got = spool_env_format(d);
    CHECK(strcmp(want, got) == 0, "dup differs:\n%s\nwant:\n%s", got, want);
    CHECK(d->nrcpts == 2 && d->rcpts[0].notified && d->held && d->dsn_trusted, "dup fields");
    free(got);
    free(want);
    spool_env_free(d);
}

/* The value decoder reads p[0..len) only: each case is copied into a buffer of
 * exactly its length, so ASan reports a read of p[len]. The old test "i + 3 > len"
 * let an escape cut short at the end ("\\x4": p[3] is p[len]) read past it. */
static void test_unescape(void)
{
    static const struct {
        const char *in, *out; /* out NULL: refused */
    } cases[] = {
        {"", ""},
        {"plain", "plain"},
        {"a\\x41b", "aAb"},
        {"\\x5C\\x20", "\\ "},
        {"ab\\x41", "abA"},
        {"\\x4", NULL},
        {"ab\\x4", NULL},
        {"a\\x", NULL},
        {"a\\", NULL},
        {"\\x00", NULL},
        {"\\y41", NULL},
        {"\\xG1", NULL},
        {"\\x41\\x4", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].in);
        char *p = xmalloc(len ? len : 1);
        memcpy(p, cases[i].in, len);
        char *out = spool_unescape(p, len);
        if (cases[i].out)
            CHECK(out && strcmp(out, cases[i].out) == 0, "unescape case %zu: got %s", i,
                  out ? out : "(refused)");
        else
            CHECK(out == NULL, "unescape case %zu accepted: %s", i, out);
        free(out);
        free(p);
    }
}

static void test_ids(void)
{
    enum { N = 10000 };
    char(*ids)[QUEUE_ID_LEN + 1] = xmalloc(N * sizeof *ids);
    int bad_fmt = 0, bad_order = 0;
    for (int i = 0; i < N; i++) {
        spool_new_id(ids[i]);
        if (strlen(ids[i]) != QUEUE_ID_LEN ||
            strspn(ids[i], "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") != QUEUE_ID_LEN)
            bad_fmt++;
        if (i && strcmp(ids[i - 1], ids[i]) >= 0) bad_order++;
    }
    CHECK(bad_fmt == 0, "%d IDs not [0-9A-Z]{14}, e.g. %s", bad_fmt, ids[0]);
    CHECK(bad_order == 0, "%d IDs not strictly increasing (unique and sorted)", bad_order);
    /* later in time sorts later */
    char a[QUEUE_ID_LEN + 1], b[QUEUE_ID_LEN + 1];
    spool_new_id(a);
    usleep(2000);
    spool_new_id(b);
    CHECK(strcmp(a, b) < 0, "%s !< %s", a, b);
    free(ids);
}

/* Files in dir whose names end in suffix ("" for all). */
static int count_files_sfx(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    size_t sl = strlen(suffix);
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] != '.' && l >= sl && strcmp(de->d_name + l - sl, suffix) == 0) n++;
    }
    closedir(d);
    return n;
}

/* A message's content through spool_open_content, as a new string ("" when none). */
static char *read_content(struct spool *s, const char *id)
{
    struct spool_content c;
    if (spool_open_content(s, id, &c) != 0) return xstrdup("");
    char *t = xcalloc(1, (size_t)c.len + 1);
    if (pread(c.fd, t, (size_t)c.len, (off_t)c.off) != (ssize_t)c.len) t[0] = '\0';
    close(c.fd);
    return t;
}

struct commit_state {
    int ndone, nok;
    struct event_base *base;
    int expect;
};

static void on_committed(void *arg, int ok)
{
    struct commit_state *cs = arg;
    cs->ndone++;
    cs->nok += ok;
    if (cs->ndone == cs->expect) event_base_loopbreak(cs->base);
}

static void collect_id(void *arg, const char *id)
{
    struct buf *b = arg;
    buf_printf(b, "%s\n", id);
}

/* --- segments ----------------------------------------------------------------- */

static void test_records(void)
{
    CHECK(crc32c(0, "123456789", 9) == 0xE3069283u, "crc32c check value %08x",
          crc32c(0, "123456789", 9));
    CHECK(crc32c(crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u, "crc32c continued");
    struct seg_rec r = {.type = SEG_ENV, .len = 1234, .pcrc = 0xdeadbeef}, d;
    spool_new_id(r.id);
    unsigned char h[SEG_HDR];
    seg_rec_encode(&r, h);
    const char *why = NULL;
    CHECK(memcmp(h, "KQR1E", 5) == 0, "magic and type first");
    CHECK(seg_rec_decode(h, &d, &why) == 1 && d.type == SEG_ENV && d.len == 1234 &&
              d.pcrc == 0xdeadbeef && strcmp(d.id, r.id) == 0,
          "round trip: %s", why ? why : "");
    int bad = 0;
    for (int i = 0; i < SEG_HDR; i++) /* every flipped byte is noticed */
        for (int bit = 0; bit < 8; bit++) {
            unsigned char t[SEG_HDR];
            memcpy(t, h, sizeof t);
            t[i] ^= (unsigned char)(1 << bit);
            if (seg_rec_decode(t, &d, &why) != -1) bad++;
        }
    CHECK(bad == 0, "%d flipped bits read as a header", bad);
    unsigned char z[SEG_HDR] = {0};
    CHECK(seg_rec_decode(z, &d, &why) == 0, "zeros end the segment");
    r.type = SEG_REMOVE; /* a removal carries nothing */
    seg_rec_encode(&r, h);
    CHECK(seg_rec_decode(h, &d, &why) == -1 && strstr(why, "payload"), "removal with payload");
    r.len = 0;
    seg_rec_encode(&r, h);
    CHECK(seg_rec_decode(h, &d, &why) == 1 && d.type == SEG_REMOVE, "removal");
}

/* Append a record to the file f, as spool.c writes them. */
static void put_rec(FILE *f, enum seg_type t, const char *id, const char *payload)
{
    struct seg_rec r = {.type = t, .len = (uint32_t)strlen(payload)};
    r.pcrc = crc32c(0, payload, r.len);
    str_copy(r.id, id, sizeof r.id);
    unsigned char h[SEG_HDR];
    seg_rec_encode(&r, h);
    fwrite(h, 1, sizeof h, f);
    fwrite(payload, 1, r.len, f);
}

static char *env_text_of(const char *id, const char *sender)
{
    struct spool_env *e = make_env(sender, 1);
    str_copy(e->id, id, sizeof e->id);
    char *t = spool_env_format(e);
    spool_env_free(e);
    return t;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Reading segments back: envelopes replace earlier ones, removals remove, content
 * without its envelope is not a message, a torn record at the end (a crash in the
 * middle of a write) is skipped with everything after it, a garbled envelope that
 * still has its checksum reads as corrupt; the old layout is imported. */
static void test_recovery(const char *root)
{
    char dir[512], q[600], path[700], err[256];
    snprintf(dir, sizeof dir, "%s/spool-rec", root);
    snprintf(q, sizeof q, "%s/queue", dir);
    mkdir_p(q, 0700);
    char a[QUEUE_ID_LEN + 1], b[QUEUE_ID_LEN + 1], c[QUEUE_ID_LEN + 1], d[QUEUE_ID_LEN + 1],
        t[QUEUE_ID_LEN + 1], l[QUEUE_ID_LEN + 1], lbad[QUEUE_ID_LEN + 1];
    spool_new_id(a);
    spool_new_id(b);
    spool_new_id(c);
    spool_new_id(d);
    spool_new_id(t);
    spool_new_id(l);
    spool_new_id(lbad);
    snprintf(path, sizeof path, "%s/0000000007.seg", q);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "create segment");
    if (!f) return;
    char *ea = env_text_of(a, "first@example.org"), *ea2 = env_text_of(a, "second@example.org");
    char *ec = env_text_of(c, "c@example.org"), *ed = env_text_of(d, "d@example.org");
    put_rec(f, SEG_CONTENT, a, "Subject: a\r\n\r\na\r\n");
    put_rec(f, SEG_ENV, a, ea);
    put_rec(f, SEG_ENV, a, ea2); /* the later state wins */
    put_rec(f, SEG_CONTENT, b, "Subject: b\r\n\r\nb\r\n");
    put_rec(f, SEG_ENV, b, "id: garbled\nsender <x\n");    /* checksum good, text bad */
    put_rec(f, SEG_CONTENT, c, "Subject: c\r\n\r\nc\r\n"); /* never committed */
    put_rec(f, SEG_CONTENT, d, "Subject: d\r\n\r\nd\r\n");
    put_rec(f, SEG_ENV, d, ed);
    put_rec(f, SEG_REMOVE, d, ""); /* delivered */
    long torn_at = ftell(f);
    put_rec(f, SEG_CONTENT, t, "Subject: torn\r\n\r\nthis record is cut short\r\n");
    fclose(f);
    CHECK(truncate(path, torn_at + SEG_HDR + 10) == 0, "truncate");
    /* an envelope record of c after the torn one is never read */
    /* the old layout: one good message, one whose envelope does not parse */
    char *el = env_text_of(l, "legacy@example.org");
    snprintf(path, sizeof path, "%s/%s.env", q, l);
    write_file(path, el);
    snprintf(path, sizeof path, "%s/%s.msg", q, l);
    write_file(path, "Subject: legacy\r\n\r\nold\r\n");
    snprintf(path, sizeof path, "%s/%s.env", q, lbad);
    write_file(path, "garbage\n");
    snprintf(path, sizeof path, "%s/%s.msg", q, lbad);
    write_file(path, "Subject: x\r\n\r\n");

    struct spool *s = spool_open(dir, err, sizeof err);
    CHECK(s != NULL, "open: %s", err);
    if (!s) goto out;
    CHECK(spool_import_legacy(s, err, sizeof err) == 0, "import: %s", err);
    struct buf got, want;
    buf_init(&got, 0);
    buf_init(&want, 0);
    spool_scan(s, collect_id, &got);
    buf_printf(&want, "%s\n%s\n%s\n", a, b, l);
    CHECK(got.data && strcmp(got.data, want.data) == 0, "queue after recovery:\n%s\nwant:\n%s",
          got.data ? got.data : "", want.data);
    struct spool_env *e = spool_load(s, a, err, sizeof err);
    CHECK(e && strcmp(e->sender, "second@example.org") == 0, "latest envelope: %s",
          e ? e->sender : err);
    spool_env_free(e);
    char *ct = read_content(s, a);
    CHECK(strcmp(ct, "Subject: a\r\n\r\na\r\n") == 0, "content a: %s", ct);
    free(ct);
    errno = 0;
    CHECK(spool_load(s, b, err, sizeof err) == NULL && errno == EBADMSG && strstr(err, "malformed"),
          "garbled envelope: %d %s", errno, err);
    errno = 0;
    CHECK(spool_load(s, d, err, sizeof err) == NULL && errno == ENOENT, "removed comes back");
    CHECK(spool_load(s, t, err, sizeof err) == NULL, "torn record read");
    e = spool_load(s, l, err, sizeof err);
    CHECK(e && strcmp(e->sender, "legacy@example.org") == 0, "imported: %s", e ? e->sender : err);
    spool_env_free(e);
    ct = read_content(s, l);
    CHECK(strcmp(ct, "Subject: legacy\r\n\r\nold\r\n") == 0, "imported content: %s", ct);
    free(ct);
    snprintf(path, sizeof path, "%s/%s.env", q, l);
    CHECK(access(path, F_OK) != 0, "imported files left in queue/");
    snprintf(path, sizeof path, "%s/corrupt/%s.env", dir, lbad);
    CHECK(access(path, F_OK) == 0, "bad old envelope not moved to corrupt/");
    /* a new writer never appends behind a torn record: the next records go to a new
     * segment, and all of it reads back after a restart */
    e = spool_load(s, a, err, sizeof err);
    if (e) {
        e->held = 1;
        CHECK(spool_update(s, e) == 0, "update after recovery");
        spool_env_free(e);
    }
    snprintf(path, sizeof path, "%s/0000000008.seg", q);
    CHECK(access(path, F_OK) == 0, "no new segment after the torn one");
    spool_free(s);
    s = spool_open(dir, err, sizeof err);
    CHECK(s != NULL, "reopen: %s", err);
    e = s ? spool_load(s, a, err, sizeof err) : NULL;
    CHECK(e && e->held == 1, "update lost at restart: %s", e ? "" : err);
    spool_env_free(e);
    buf_reset(&got);
    if (s) spool_scan(s, collect_id, &got);
    CHECK(got.data && strcmp(got.data, want.data) == 0, "queue after restart:\n%s",
          got.data ? got.data : "");
    spool_free(s);
    buf_release(&got);
    buf_release(&want);
out:
    free(ea);
    free(ea2);
    free(ec);
    free(ed);
    free(el);
}

/* Segments nothing lives in any more are deleted, oldest first; one that still
 * holds a queued message stays. */
static void test_reclaim(const char *root, struct event_base *base)
{
    char dir[512], q[600], err[256];
    snprintf(dir, sizeof dir, "%s/spool-reclaim", root);
    snprintf(q, sizeof q, "%s/queue", dir);
    setenv("KURIER_TEST_SEGMENT_SIZE", "4096", 1);
    struct spool *s = spool_open(dir, err, sizeof err);
    unsetenv("KURIER_TEST_SEGMENT_SIZE");
    CHECK(s != NULL, "open: %s", err);
    if (!s) return;
    enum { N = 12 };
    char body[1500];
    memset(body, 'x', sizeof body);
    memcpy(body, "Subject: big\r\n\r\n", 16);
    body[sizeof body - 2] = '\r';
    body[sizeof body - 1] = '\n';
    struct commit_state cs = {.base = base, .expect = N};
    struct spool_env *envs[N];
    for (int i = 0; i < N; i++) {
        struct spool_msg *m = spool_msg_new(s);
        spool_msg_write(m, body, sizeof body);
        envs[i] = make_env("a@b", 1);
        spool_msg_commit(m, envs[i], on_committed, &cs);
    }
    event_base_dispatch(base);
    CHECK(cs.nok == N, "committed %d", cs.nok);
    int nseg = count_files_sfx(q, ".seg");
    CHECK(nseg >= 4, "%d segments of 4 KiB for %d messages of 1.5 KiB", nseg, N);
    /* the first message stays: its segment is not deleted but copied forward, so
     * the dead segments after it can go */
    for (int i = 1; i < N; i++)
        CHECK(spool_remove(s, envs[i]->id) == 0, "remove %d", i);
    CHECK(count_files_sfx(q, ".seg") <= 2, "%d segments left for one message",
          count_files_sfx(q, ".seg"));
    struct spool_env *e0 = spool_load(s, envs[0]->id, err, sizeof err);
    CHECK(e0 && env_equal(e0, envs[0]), "relocated envelope: %s", e0 ? "differs" : err);
    spool_env_free(e0);
    char *ct = read_content(s, envs[0]->id);
    CHECK(strlen(ct) == sizeof body && memcmp(ct, body, sizeof body) == 0, "relocated content");
    free(ct);
    spool_free(s);
    s = spool_open(dir, err, sizeof err); /* and it reads back */
    CHECK(s != NULL, "reopen: %s", err);
    if (!s) return;
    e0 = spool_load(s, envs[0]->id, err, sizeof err);
    CHECK(e0 && env_equal(e0, envs[0]), "relocated envelope after restart: %s",
          e0 ? "differs" : err);
    spool_env_free(e0);
    ct = read_content(s, envs[0]->id);
    CHECK(strlen(ct) == sizeof body && memcmp(ct, body, sizeof body) == 0,
          "relocated content after restart");
    free(ct);
    CHECK(spool_remove(s, envs[0]->id) == 0, "remove 0");
    CHECK(count_files_sfx(q, ".seg") <= 1, "%d segments left, want the current one at most",
          count_files_sfx(q, ".seg"));
    spool_free(s);
    s = spool_open(dir, err, sizeof err);
    struct buf got;
    buf_init(&got, 0);
    if (s) spool_scan(s, collect_id, &got);
    CHECK(s && got.len == 0, "queue after reclaim and restart: %s", got.data ? got.data : "");
    buf_release(&got);
    spool_free(s);
    for (int i = 0; i < N; i++)
        spool_env_free(envs[i]);
}

static void test_spool_ops(const char *root)
{
    char err[256], dir[512];
    snprintf(dir, sizeof dir, "%s/spool", root);
    /* a leftover in incoming/ is removed at open */
    char inc[600];
    snprintf(inc, sizeof inc, "%s/incoming", dir);
    mkdir_p(inc, 0700);
    char leftover[700];
    snprintf(leftover, sizeof leftover, "%s/ZZZ.msg", inc);
    FILE *f = fopen(leftover, "w");
    if (f) fclose(f);

    struct spool *s = spool_open(dir, err, sizeof err);
    CHECK(s != NULL, "spool_open: %s", err);
    if (!s) return;
    CHECK(access(leftover, F_OK) != 0, "leftover in incoming/ not removed");
    struct stat st;
    char md[600];
    snprintf(md, sizeof md, "%s/maildrop", dir);
    CHECK(stat(md, &st) == 0 && (st.st_mode & 07777) == 01733, "maildrop mode %o",
          (unsigned)(st.st_mode & 07777));

    struct event_base *base = event_base_new();
    CHECK(work_init(base, 3) == 0, "work_init");
    /* keep the loop alive between batches (the daemon has its listeners) */
    struct event *keep = event_new(base, -1, EV_PERSIST, NULL, NULL);
    struct timeval hour = {3600, 0};
    event_add(keep, &hour);
    enum { NMSG = 40 };
    struct commit_state cs = {.base = base, .expect = NMSG};
    char ids[NMSG][QUEUE_ID_LEN + 1];
    struct spool_env *envs[NMSG];
    for (int i = 0; i < NMSG; i++) {
        struct spool_msg *m = spool_msg_new(s);
        CHECK(m != NULL, "spool_msg_new %d", i);
        if (!m) return;
        str_copy(ids[i], spool_msg_id(m), sizeof ids[i]);
        char body[128];
        int n = snprintf(body, sizeof body, "Subject: %d\r\n\r\nbody %d\r\n", i, i);
        CHECK(spool_msg_write(m, body, (size_t)n) == 0, "write");
        envs[i] = make_env("s@example.org", 1 + i % 3);
        if (i == 5) { /* an aborted message leaves nothing */
            spool_msg_abort(m);
            cs.expect--;
            continue;
        }
        spool_msg_commit(m, envs[i], on_committed, &cs);
        CHECK(strcmp(envs[i]->id, ids[i]) == 0, "commit sets env id");
    }
    event_base_dispatch(base);
    CHECK(cs.ndone == NMSG - 1 && cs.nok == NMSG - 1, "done %d ok %d", cs.ndone, cs.nok);
    char q[600];
    snprintf(q, sizeof q, "%s/queue", dir);
    /* no file per message: one segment holds them all */
    CHECK(count_files_sfx(q, ".seg") == 1, "queue/ holds %d segments", count_files_sfx(q, ".seg"));
    CHECK(count_files_sfx(q, "") == 2, "queue/ holds %d files", count_files_sfx(q, ""));
    CHECK(access(inc, F_OK) != 0, "incoming/ still there");

    /* scan is sorted by ID and lists each once */
    struct buf b, want;
    buf_init(&b, 0);
    buf_init(&want, 0);
    for (int i = 0; i < NMSG; i++)
        if (i != 5) buf_printf(&want, "%s\n", ids[i]);
    CHECK(spool_scan(s, collect_id, &b) == 0, "scan");
    CHECK(strcmp(b.data, want.data) == 0, "scan order:\n%s\nwant:\n%s", b.data, want.data);

    /* load, update, reload */
    struct spool_env *e = spool_load(s, ids[3], err, sizeof err);
    CHECK(e != NULL, "load: %s", err);
    if (e) {
        CHECK(e->size == strlen("Subject: 3\r\n\r\nbody 3\r\n"), "size %zu", e->size);
        CHECK(env_equal(e, envs[3]), "loaded envelope differs");
        e->held = 1;
        e->rcpts[0].state = RCPT_ST_SENT;
        free(e->rcpts[0].diag);
        e->rcpts[0].diag = xstrdup("250 2.0.0 Ok: queued as X");
        CHECK(spool_update(s, e) == 0, "update");
        struct spool_env *e2 = spool_load(s, ids[3], err, sizeof err);
        CHECK(e2 && env_equal(e, e2), "reload after update differs");
        spool_env_free(e2);
        spool_env_free(e);
    }
    char *ct = read_content(s, ids[7]);
    CHECK(strcmp(ct, "Subject: 7\r\n\r\nbody 7\r\n") == 0, "content %s", ct);
    free(ct);
    CHECK(spool_load(s, ids[5], err, sizeof err) == NULL, "aborted message loads");
    CHECK(spool_load(s, "../../etc/pass", err, sizeof err) == NULL, "path in id");

    /* a corrupt envelope: written without its recipients (cut short) */
    char corr[600], cenv[700];
    snprintf(corr, sizeof corr, "%s/corrupt", dir);
    snprintf(cenv, sizeof cenv, "%s/%s.env", corr, ids[9]);
    errno = 0;
    CHECK(spool_load(s, "0000000000000A", err, sizeof err) == NULL && errno == ENOENT,
          "missing envelope: errno %d", errno);
    char why[600];
    size_t csize = 0;
    time_t cmtime = 0;
    struct stat st2;
    e = spool_load(s, ids[9], err, sizeof err);
    CHECK(e != NULL, "load 9: %s", err);
    if (e) { /* an envelope cut at a line end, before its recipients */
        for (size_t i = 0; i < e->nrcpts; i++) {
            free(e->rcpts[i].addr);
            free(e->rcpts[i].orig);
        }
        e->nrcpts = 0;
        CHECK(spool_update(s, e) == 0, "update 9");
        errno = 0;
        CHECK(spool_load(s, ids[9], err, sizeof err) == NULL && errno == EBADMSG &&
                  strstr(err, "no recipients"),
              "envelope without recipients: errno %d %s", errno, err);
        spool_env_free(e);
    }
    CHECK(spool_corrupt_info(s, ids[9], 0, why, sizeof why, &csize, &cmtime) == 0 &&
              strstr(why, "no recipients") && csize == strlen("Subject: 9\r\n\r\nbody 9\r\n") &&
              cmtime > 0,
          "info while queued: %s size %zu", why, csize);
    buf_reset(&b);
    CHECK(spool_scan_corrupt(s, collect_id, &b) == 0 && b.len == 0, "corrupt/ before: %s",
          b.data ? b.data : "");
    CHECK(spool_quarantine(s, ids[9]) == 0, "quarantine 9");
    CHECK(access(cenv, F_OK) == 0, "not written to corrupt/");
    CHECK(stat(corr, &st2) == 0 && (st2.st_mode & 0777) == 0700, "corrupt/ mode %o",
          (unsigned)(st2.st_mode & 0777));
    errno = 0;
    CHECK(spool_load(s, ids[9], err, sizeof err) == NULL && errno == ENOENT, "still queued");
    buf_reset(&b);
    CHECK(spool_scan_corrupt(s, collect_id, &b) == 0 && b.len == QUEUE_ID_LEN + 1 &&
              strncmp(b.data, ids[9], QUEUE_ID_LEN) == 0,
          "corrupt/ lists: %s", b.data ? b.data : "");
    CHECK(spool_corrupt_info(s, ids[9], 1, why, sizeof why, &csize, &cmtime) == 0 &&
              strstr(why, "corrupt/") && strstr(why, "no recipients"),
          "info in corrupt/: %s", why);
    CHECK(spool_corrupt_info(s, ids[9], 0, why, sizeof why, &csize, &cmtime) == -1,
          "info finds a moved message still queued");
    CHECK(spool_quarantine(s, ids[9]) == -1, "quarantine twice");

    /* remove */
    CHECK(spool_remove(s, ids[3]) == 0, "remove");
    CHECK(spool_remove(s, ids[3]) == -1, "remove twice");
    struct spool_content gc;
    CHECK(spool_open_content(s, ids[3], &gc) == -1 && gc.fd == -1, "content after remove");
    struct spool_env *gone = spool_load(s, ids[3], err, sizeof err);
    CHECK(gone == NULL, "load after remove");
    e = make_env("x@y", 1);
    str_copy(e->id, ids[3], sizeof e->id);
    CHECK(spool_update(s, e) == -1, "update resurrects a removed message");
    spool_env_free(e);

    /* a second round of commits after the first batch finished */
    cs.ndone = cs.nok = 0;
    cs.expect = 3;
    struct spool_env *more[3];
    for (int i = 0; i < 3; i++) {
        struct spool_msg *m = spool_msg_new(s);
        spool_msg_write(m, "x\r\n", 3);
        more[i] = make_env("", 1);
        spool_msg_commit(m, more[i], on_committed, &cs);
    }
    event_base_dispatch(base);
    CHECK(cs.nok == 3, "second round ok %d", cs.nok);
    struct spool_env *ld = spool_load(s, more[2]->id, err, sizeof err);
    CHECK(ld && strcmp(ld->sender, "") == 0, "null sender: %s", err);
    spool_env_free(ld);
    for (int i = 0; i < 3; i++)
        spool_env_free(more[i]);

    /* attach (CLI) sees the same queue and does not clean incoming/ */
    mkdir_p(inc, 0700);
    f = fopen(leftover, "w");
    if (f) fclose(f);
    struct spool *s2 = spool_attach(dir, err, sizeof err);
    CHECK(s2 != NULL, "attach: %s", err);
    CHECK(access(leftover, F_OK) == 0, "attach cleaned incoming/");
    unlink(leftover);
    buf_reset(&want);
    CHECK(spool_scan(s, collect_id, &want) == 0 && spool_scan(s2, collect_id, &b) == 0, "scans");
    buf_reset(&b);
    spool_scan(s2, collect_id, &b);
    CHECK(b.data && want.data && strcmp(b.data, want.data) == 0, "attach lists:\n%s\nwant:\n%s",
          b.data, want.data);
    errno = 0;
    CHECK(spool_remove(s2, ids[4]) == -1 && errno == EROFS, "attached spool writes: %d", errno);
    CHECK(spool_lock(s2, err, sizeof err) == -1 && strstr(err, "locked"),
          "lock while the daemon holds it: %s", err);
    ct = read_content(s2, ids[7]);
    CHECK(strcmp(ct, "Subject: 7\r\n\r\nbody 7\r\n") == 0, "attached content %s", ct);
    free(ct);
    spool_free(s2);
    char nodir[600];
    snprintf(nodir, sizeof nodir, "%s/nonexistent", root);
    CHECK(spool_attach(nodir, err, sizeof err) == NULL, "attach to missing spool");

    /* freeing a spool with commits in flight and waiting: no callback, no leak */
    char dir3[600];
    snprintf(dir3, sizeof dir3, "%s/spool3", root);
    struct spool *s3 = spool_open(dir3, err, sizeof err);
    CHECK(s3 != NULL, "open spool3: %s", err);
    struct commit_state cs3 = {.base = base, .expect = 100};
    struct spool_env *e3[2];
    for (int i = 0; s3 && i < 2; i++) {
        struct spool_msg *m = spool_msg_new(s3);
        spool_msg_write(m, "y\r\n", 3);
        e3[i] = make_env("a@b", 1);
        spool_msg_commit(m, e3[i], on_committed, &cs3);
    }
    spool_free(s3);
    CHECK(cs3.ndone == 0, "callbacks ran after spool_free");
    for (int i = 0; s3 && i < 2; i++)
        spool_env_free(e3[i]);

    test_reclaim(root, base);
    work_shutdown();
    event_free(keep);
    event_base_free(base);
    for (int i = 0; i < NMSG; i++)
        spool_env_free(envs[i]);
    buf_release(&b);
    buf_release(&want);
    spool_free(s);
}

static void test_maildrop(const char *root)
{
    char err[256], dir[512];
    snprintf(dir, sizeof dir, "%s/spool", root);
    char *rcpts[] = {"bob@example.org", "\"j doe\"@example.org"};
    const char *msg = "Subject: hi\r\n\r\nhello\r\n";
    CHECK(maildrop_write(dir, "alice@host.example", rcpts, 2, msg, strlen(msg), "alice", err,
                         sizeof err) == 0,
          "maildrop_write: %s", err);
    char *evil[] = {"bob@example.org\nrcpt: <x@y>"};
    CHECK(maildrop_write(dir, "a@b", evil, 1, msg, strlen(msg), "alice", err, sizeof err) == -1,
          "newline in rcpt accepted");
    char **names;
    size_t n;
    CHECK(maildrop_list(dir, &names, &n) == 0 && n == 1, "list: %zu", n);
    if (n != 1) return;
    struct maildrop_file mf;
    CHECK(maildrop_open(dir, names[0], &mf, err, sizeof err) == 0, "open: %s", err);
    if (mf.env) {
        CHECK(strcmp(mf.env->sender, "alice@host.example") == 0, "sender %s", mf.env->sender);
        CHECK(mf.env->nrcpts == 2 && strcmp(mf.env->rcpts[1].addr, "\"j doe\"@example.org") == 0,
              "rcpts");
        CHECK(mf.user && strcmp(mf.user, "alice") == 0, "user");
        CHECK(mf.uid == (unsigned)getuid(), "uid");
        CHECK(mf.env->size == strlen(msg), "size %zu", mf.env->size);
        char buf[128] = {0};
        ssize_t r = read(mf.fd, buf, sizeof buf - 1);
        CHECK(r == (ssize_t)strlen(msg) && strcmp(buf, msg) == 0, "content '%s'", buf);
    }
    maildrop_close(&mf);
    /* a symlink planted by a local user is refused */
    char link[700], target[700];
    snprintf(link, sizeof link, "%s/maildrop/0000000000000A.evil", dir);
    snprintf(target, sizeof target, "%s/maildrop/%s", dir, names[0]);
    CHECK(symlink(target, link) == 0, "symlink");
    CHECK(maildrop_open(dir, "0000000000000A.evil", &mf, err, sizeof err) == -1, "symlink read");
    unlink(link);
    CHECK(maildrop_open(dir, "../queue/x", &mf, err, sizeof err) == -1, "path in name");
    CHECK(maildrop_remove(dir, names[0]) == 0, "remove");
    maildrop_list_free(names, n);
    CHECK(maildrop_list(dir, &names, &n) == 0 && n == 0, "list after remove: %zu", n);
    maildrop_list_free(names, n);
}

int main(void)
{
    evthread_use_pthreads();
    log_init("stderr", "test", LOG_LV_WARN);
    char root[] = "/tmp/test_spool.XXXXXX";
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_env_roundtrip();
    test_env_bad();
    test_env_dup();
    test_unescape();
    test_ids();
    test_records();
    test_recovery(root);
    test_spool_ops(root);
    test_maildrop(root);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) printf("cannot remove %s\n", root);
    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0;
}
