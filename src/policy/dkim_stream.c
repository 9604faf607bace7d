/* dkim_stream.c: DKIM while the message streams (policy_dkim_stream, policy.h): the
 * header section is kept and each signature's body hash computed as the bytes go
 * by. Judging the signatures at the end of the message is dkim_check.c's. */
#include "core/compat.h"

#include "core/buf.h"
#include "core/dkim_verify.h"
#include "core/header.h"
#include "policy/dkim_stream.h"

enum { HDR_MAX = 256 * 1024 }; /* header bytes kept; a longer section is not verified */

struct policy_dkim_stream *policy_dkim_stream_new(void)
{
    struct policy_dkim_stream *d = xcalloc(1, sizeof *d);
    buf_init(&d->hdr, HDR_MAX);
    return d;
}

void policy_dkim_stream_free(struct policy_dkim_stream *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->nsig; i++)
        dkim_body_free(&d->sigs[i].body);
    buf_release(&d->hdr);
    free(d);
}

static void feed_body(struct policy_dkim_stream *d, const void *p, size_t len)
{
    for (size_t i = 0; i < d->nsig; i++)
        if (d->sigs[i].hashing) dkim_body_feed(&d->sigs[i].body, p, len);
}

/* The header section is complete (hdr_end bytes): find the signatures, start their
 * body hashes. */
static void header_done(struct policy_dkim_stream *d)
{
    d->in_body = 1;
    const char *h = d->hdr.data ? d->hdr.data : "";
    for (size_t i = 0; i < d->hdr_end && d->nsig < POLICY_DKIM_MAX;) {
        struct hdr_field f;
        int r = hdr_next(h + i, d->hdr_end - i, &f);
        if (r == 0) break;
        if (r < 0) {
            if (!f.line_len) break;
            i += f.line_len;
            continue;
        }
        if (hdr_name_is(&f, "DKIM-Signature")) {
            struct stream_sig *s = &d->sigs[d->nsig++];
            s->off = i;
            s->len = (size_t)r;
            while (s->len && (h[i + s->len - 1] == '\n' || h[i + s->len - 1] == '\r'))
                s->len--;
            if (dkim_sig_parse(f.value, f.value_len, &s->sig, s->err, sizeof s->err) != 0)
                s->bad = 1;
            else if (s->sig.alg != DKIM_RSA_SHA1) {
                dkim_body_init(&s->body, s->sig.brelaxed ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE,
                               s->sig.l >= 0 ? (uint64_t)s->sig.l : UINT64_MAX);
                s->hashing = 1;
            }
        }
        i += (size_t)r;
    }
}

/* The end of the header section in b from offset from: the index after its empty
 * line's CRLF (body start) with *hend the header section's length, or 0. */
static size_t find_end(const char *b, size_t len, size_t from, size_t *hend)
{
    if (len >= 2 && b[0] == '\r' && b[1] == '\n') {
        *hend = 0;
        return 2;
    }
    for (size_t i = from; i + 4 <= len; i++)
        if (b[i] == '\r' && b[i + 1] == '\n' && b[i + 2] == '\r' && b[i + 3] == '\n') {
            *hend = i + 2;
            return i + 4;
        }
    return 0;
}

void policy_dkim_stream_feed(struct policy_dkim_stream *d, const void *p, size_t len)
{
    if (d->cut) return;
    if (d->in_body) {
        feed_body(d, p, len);
        return;
    }
    size_t old = d->hdr.len;
    if (buf_append(&d->hdr, p, len) != 0) {
        d->cut = 1; /* too long to verify */
        return;
    }
    size_t hend = 0;
    size_t bstart = find_end(d->hdr.data, d->hdr.len, old >= 3 ? old - 3 : 0, &hend);
    if (!bstart) return;
    d->hdr_end = hend;
    header_done(d);
    feed_body(d, d->hdr.data + bstart, d->hdr.len - bstart);
    d->hdr.len = hend; /* keep only the header section */
}

void policy_dkim_stream_end(struct policy_dkim_stream *d)
{
    if (!d->in_body && !d->cut) { /* no body: the whole content is the header */
        d->hdr_end = d->hdr.len;
        header_done(d);
    }
}
