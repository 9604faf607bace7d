/* arf.c: parse abuse reports (pure, fuzzed: fuzz/fuzz_arf.c): ARF (RFC 5965) and
 * SpamCop's text reports, down to our queue ID and the Message-ID of the reported
 * message. Matching them to accounts is complaints.c's. */
#include "core/compat.h"

#include <ctype.h>
#include <strings.h>

#include "abuse/complaints.h"
#include "core/core.h"

#define MAX_DEPTH 3  /* nested multiparts */
#define MAX_PARTS 32 /* parts looked at per multipart */

const char *complaint_format_name(enum complaint_format f)
{
    return f == COMPLAINT_ARF ? "arf" : f == COMPLAINT_SPAMCOP ? "spamcop" : "none";
}

/* Case-insensitive search of needle in p[0..len). */
static const char *ci_find(const char *p, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; n && i + n <= len; i++)
        if (strncasecmp(p + i, needle, n) == 0) return p + i;
    return NULL;
}

/* The start of the line after the one at p (or end). */
static const char *next_line(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? nl + 1 : end;
}

/* Length of the line at p without its CR LF. */
static size_t line_len(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = (size_t)((nl ? nl : end) - p);
    if (n && p[n - 1] == '\r') n--;
    return n;
}

/* The body of the message or part at p: after the empty line that ends its header
 * section (hdr_next's end); end when there is none. */
static const char *body_of(const char *p, const char *end)
{
    struct hdr_field f;
    int r;
    while (p < end && (r = hdr_next(p, (size_t)(end - p), &f)) != 0) {
        if (r < 0 && f.line_len == 0) break;
        p += r > 0 ? (size_t)r : f.line_len;
    }
    /* at the empty line (or a body line when there was none) */
    if (p < end && (*p == '\r' || *p == '\n')) p = next_line(p, end);
    return p;
}

/* The value of header field name in the section at p, unfolded into dst; 1 found. */
static int field_get(const char *p, const char *end, const char *name, char *dst, size_t size)
{
    struct hdr_field f;
    int r;
    dst[0] = '\0';
    while (p < end && (r = hdr_next(p, (size_t)(end - p), &f)) != 0) {
        if (r < 0) {
            if (f.line_len == 0) break;
            p += f.line_len;
            continue;
        }
        if (hdr_name_is(&f, name)) {
            hdr_unfold(f.value, f.value_len, dst, size);
            return 1;
        }
        p += r;
    }
    return 0;
}

/* Parameter name of a Content-Type value ("multipart/report; boundary="x""), quotes
 * removed, into dst; 1 found. */
static int ct_param(const char *ct, const char *name, char *dst, size_t size)
{
    size_t n = strlen(name);
    dst[0] = '\0';
    for (const char *p = strchr(ct, ';'); p; p = strchr(p, ';')) {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, name, n) != 0) continue;
        const char *v = p + n;
        while (*v == ' ' || *v == '\t')
            v++;
        if (*v != '=') continue;
        v++;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t k = 0;
        if (*v == '"') {
            for (v++; *v && *v != '"' && k + 1 < size; v++) {
                if (*v == '\\' && v[1]) v++;
                dst[k++] = *v;
            }
        } else {
            for (; *v && *v != ';' && *v != ' ' && *v != '\t' && k + 1 < size; v++)
                dst[k++] = *v;
        }
        dst[k] = '\0';
        return k > 0;
    }
    return 0;
}

/* 1 when the Content-Type value ct has the media type type ("message/rfc822"). */
static int ct_is(const char *ct, const char *type)
{
    size_t n = strlen(type);
    return strncasecmp(ct, type, n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t');
}

/* Our queue ID in an unfolded Received: value: "by HOST (kurier...) ... id ID". */
static int received_ours(const char *v, const char *hostname, char *queue_id, char *userid,
                         size_t userid_size)
{
    size_t len = strlen(v);
    const char *k = ci_find(v, len, "(kurier");
    if (!k) return 0;
    if (hostname && *hostname) {
        char by[300];
        snprintf(by, sizeof by, "by %s ", hostname);
        const char *b = ci_find(v, len, by);
        if (!b || b > k) return 0;
    }
    /* " id " after the comment: the ID is QUEUE_ID_LEN (14) letters of the spool's
     * alphabet (digits and capitals) */
    for (const char *p = k; (p = ci_find(p, len - (size_t)(p - v), " id ")) != NULL; p += 4) {
        const char *id = p + 4;
        size_t n = 0;
        while (n < 31 && ((id[n] >= '0' && id[n] <= '9') || (id[n] >= 'A' && id[n] <= 'Z')))
            n++;
        if (n != 14 || (id[n] && id[n] != ';' && id[n] != ' ' && id[n] != '\t')) continue;
        memcpy(queue_id, id, n);
        queue_id[n] = '\0';
        if (userid) {
            const char *u = ci_find(k, len - (size_t)(k - v), "from userid ");
            userid[0] = '\0';
            if (u && u < p) {
                u += 12;
                size_t m = strcspn(u, ") \t;");
                if (m >= userid_size) m = userid_size - 1;
                memcpy(userid, u, m);
                userid[m] = '\0';
            }
        }
        return 1;
    }
    return 0;
}

int complaint_scan_headers(const char *hdr, size_t len, const char *hostname, char *queue_id,
                           char *message_id, char *userid, size_t userid_size)
{
    queue_id[0] = message_id[0] = '\0';
    if (userid && userid_size) userid[0] = '\0';
    const char *p = hdr, *end = hdr + len;
    struct hdr_field f;
    int r, found = 0;
    char v[1024];
    while (p < end && (r = hdr_next(p, (size_t)(end - p), &f)) != 0) {
        if (r < 0) {
            if (f.line_len == 0) break;
            p += f.line_len;
            continue;
        }
        p += r;
        if (hdr_name_is(&f, "Received")) {
            hdr_unfold(f.value, f.value_len, v, sizeof v);
            char id[32], user[128];
            /* the lowest of ours: the submission, not a later hop through us */
            if (received_ours(v, hostname, id, user, sizeof user)) {
                str_copy(queue_id, id, 32);
                if (userid && userid_size) str_copy(userid, user, userid_size);
                found = 1;
            }
        } else if (!message_id[0] && hdr_name_is(&f, "Message-ID")) {
            hdr_unfold(f.value, f.value_len, v, sizeof v);
            const char *lt = strchr(v, '<'), *gt = lt ? strchr(lt, '>') : NULL;
            if (lt && gt && gt - lt > 2 && (size_t)(gt - lt) < 255 &&
                !memchr(lt, ' ', (size_t)(gt - lt))) {
                memcpy(message_id, lt, (size_t)(gt - lt) + 1);
                message_id[gt - lt + 1] = '\0';
                found = 1;
            }
        }
    }
    return found;
}

/* The machine-readable part (RFC 5965 3.1): header-like fields. */
static void feedback_fields(const char *p, const char *end, struct complaint *c)
{
    struct {
        const char *name;
        char *dst;
        size_t size;
    } map[] = {
        {"Feedback-Type", c->feedback_type, sizeof c->feedback_type},
        {"User-Agent", c->user_agent, sizeof c->user_agent},
        {"Version", c->version, sizeof c->version},
        {"Original-Mail-From", c->original_mail_from, sizeof c->original_mail_from},
        {"Original-Rcpt-To", c->original_rcpt_to, sizeof c->original_rcpt_to},
        {"Arrival-Date", c->arrival_date, sizeof c->arrival_date},
        {"Received-Date", c->arrival_date, sizeof c->arrival_date}, /* older reports */
        {"Source-IP", c->source_ip, sizeof c->source_ip},
        {"Reported-Domain", c->reported_domain, sizeof c->reported_domain},
    };
    struct hdr_field f;
    int r;
    while (p < end && (r = hdr_next(p, (size_t)(end - p), &f)) != 0) {
        if (r < 0) {
            if (f.line_len == 0) break;
            p += f.line_len;
            continue;
        }
        p += r;
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (!map[i].dst[0] && hdr_name_is(&f, map[i].name))
                hdr_unfold(f.value, f.value_len, map[i].dst, map[i].size);
    }
}

/* The reported message (or its header) in a part: our queue ID and its Message-ID. */
static void original_headers(const char *p, const char *end, const char *hostname,
                             struct complaint *c)
{
    char id[32], mid[256];
    complaint_scan_headers(p, (size_t)(end - p), hostname, id, mid, NULL, 0);
    if (!c->queue_id[0]) str_copy(c->queue_id, id, sizeof c->queue_id);
    if (!c->message_id[0]) str_copy(c->message_id, mid, sizeof c->message_id);
}

/* The same, base64-encoded (some feedback loops encode the original, RFC 2045 6.8):
 * whitespace dropped, then decoded as one block. */
static void original_base64(const char *p, const char *end, const char *hostname,
                            struct complaint *c)
{
    size_t n = (size_t)(end - p), k = 0;
    char *b64 = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        if (p[i] != '\r' && p[i] != '\n' && p[i] != ' ' && p[i] != '\t') b64[k++] = p[i];
    k -= k % 4; /* a cut-short tail is ignored */
    unsigned char *raw = xmalloc(k / 4 * 3 + 1);
    size_t len = 0;
    if (base64_decode(b64, k, raw, k / 4 * 3 + 1, &len) == 0)
        original_headers((const char *)raw, (const char *)raw + len, hostname, c);
    free(raw);
    free(b64);
}

/* Walk the parts of a multipart whose body is p..end; *feedback set when a
 * message/feedback-report part was seen. */
static void multipart(const char *p, const char *end, const char *boundary, const char *hostname,
                      int depth, struct complaint *c, int *feedback)
{
    size_t blen = strlen(boundary);
    const char *part = NULL;
    int nparts = 0;
    for (const char *l = p; l < end; l = next_line(l, end)) {
        size_t n = line_len(l, end);
        if (n < blen + 2 || l[0] != '-' || l[1] != '-' || memcmp(l + 2, boundary, blen) != 0)
            continue;
        int close = n >= blen + 4 && l[blen + 2] == '-' && l[blen + 3] == '-';
        if (part && nparts++ < MAX_PARTS) {
            /* the line end before the delimiter belongs to it (RFC 2046 5.1.1) */
            const char *pend = l;
            if (pend > part && pend[-1] == '\n') pend--;
            if (pend > part && pend[-1] == '\r') pend--;
            const char *body = body_of(part, pend);
            char ct[512];
            if (!field_get(part, body, "Content-Type", ct, sizeof ct))
                str_copy(ct, "text/plain", sizeof ct);
            char sub[256];
            if (ct_is(ct, "message/feedback-report")) {
                *feedback = 1;
                feedback_fields(body, pend, c);
            } else if (ct_is(ct, "message/rfc822") || ct_is(ct, "text/rfc822-headers") ||
                       ct_is(ct, "message/rfc822-headers") || ct_is(ct, "message/global") ||
                       ct_is(ct, "message/global-headers")) {
                char cte[64];
                if (field_get(part, body, "Content-Transfer-Encoding", cte, sizeof cte) &&
                    strcasecmp(cte, "base64") == 0)
                    original_base64(body, pend, hostname, c);
                else
                    original_headers(body, pend, hostname, c);
            } else if (strncasecmp(ct, "multipart/", 10) == 0 && depth < MAX_DEPTH &&
                       ct_param(ct, "boundary", sub, sizeof sub)) {
                multipart(body, pend, sub, hostname, depth + 1, c, feedback);
            }
        }
        if (close) break;
        part = next_line(l, end);
    }
}

/* SpamCop: "- SpamCop V1.3.3 -", "Email from IP / DATE", then after "Offending
 * message:" the spam as received, header first (perhaps after a quoted "From "
 * line). */
static int spamcop(const char *subject, const char *p, const char *end, const char *hostname,
                   struct complaint *c)
{
    if (!ci_find(p, (size_t)(end - p), "SpamCop") && !ci_find(subject, strlen(subject), "SpamCop"))
        return 0;
    const char *off = NULL;
    for (const char *l = p; l < end; l = next_line(l, end)) {
        size_t n = line_len(l, end);
        if (!c->source_ip[0] && n > 11 && strncasecmp(l, "Email from ", 11) == 0) {
            size_t k = 0;
            while (11 + k < n && l[11 + k] != ' ' && l[11 + k] != '/')
                k++;
            if (k < sizeof c->source_ip) {
                memcpy(c->source_ip, l + 11, k);
                c->source_ip[k] = '\0';
            }
        }
        if (n >= 17 && strncasecmp(l, "Offending message", 17) == 0) {
            off = next_line(l, end);
            break;
        }
    }
    if (!off) return 0;
    /* skip blank lines and the quoted "From " line before the header */
    while (off < end && (line_len(off, end) == 0 || *off == '"' || *off == '>'))
        off = next_line(off, end);
    original_headers(off, end, hostname, c);
    return 1;
}

enum complaint_format complaint_parse(const char *msg, size_t len, const char *hostname,
                                      struct complaint *out)
{
    memset(out, 0, sizeof *out);
    if (len > COMPLAINT_MAX_INPUT) len = COMPLAINT_MAX_INPUT;
    const char *end = msg + len;
    const char *body = body_of(msg, end);
    char ct[512], subject[256];
    if (!field_get(msg, body, "Content-Type", ct, sizeof ct)) ct[0] = '\0';
    field_get(msg, body, "Subject", subject, sizeof subject);
    char from[512];
    if (field_get(msg, body, "From", from, sizeof from)) {
        char **v = NULL;
        size_t n = 0;
        if (hdr_parse_mailboxes(from, strlen(from), &v, &n) == 0) {
            str_copy(out->reporter, v[0], sizeof out->reporter);
            hdr_addresses_free(v, n);
        }
    }
    char boundary[256];
    if (strncasecmp(ct, "multipart/", 10) == 0 &&
        ct_param(ct, "boundary", boundary, sizeof boundary)) {
        int feedback = 0;
        char rt[64];
        multipart(body, end, boundary, hostname, 1, out, &feedback);
        if (feedback ||
            (ct_is(ct, "multipart/report") && ct_param(ct, "report-type", rt, sizeof rt) &&
             strcasecmp(rt, "feedback-report") == 0))
            return out->format = COMPLAINT_ARF;
    } else if (!ct[0] || ct_is(ct, "text/plain")) {
        if (spamcop(subject, body, end, hostname, out)) return out->format = COMPLAINT_SPAMCOP;
    }
    struct complaint none;
    memset(&none, 0, sizeof none);
    str_copy(none.reporter, out->reporter, sizeof none.reporter);
    *out = none;
    return COMPLAINT_NONE;
}
