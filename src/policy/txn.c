/* txn.c: one transaction's policy record (policy.h): each check's verdict for the
 * message's log line, the score carried from MAIL to RCPT, the checks' header fields
 * and Authentication-Results. The pipeline and the checks fill it; the session's glue
 * asks for the headers and the log line. */
#include "core/compat.h"

#include "core/authres.h"
#include "core/buf.h"
#include "core/conf.h"
#include "core/header.h"
#include "core/log.h"
#include "core/util.h"
#include "policy/policy.h"

enum { NOTES_MAX = 16 }; /* more than the checks there are */

struct note {
    const char *name; /* the check's (static) */
    enum policy_kind kind;
    int score;
    const char *result; /* static or NULL */
};

struct policy_txn {
    int carry; /* the MAIL stage's sum, where each RCPT stage starts */
    int score; /* the highest sum of a stage */
    struct note notes[NOTES_MAX];
    size_t nnotes;
    struct buf fields; /* the checks' header fields, CRLF-ended */
    struct authres ar;
    struct policy_auth auth;
    struct policy_dkim_stream *dkim;
    size_t ar_at;       /* where Authentication-Results is: after the fields of headers() */
    size_t ar_room;     /* its room, filled in at the commit (end-of-data checks) */
    int ar_written;     /* headers() wrote it (no end-of-data checks) */
    size_t rcpt_passed; /* recipients the recipient check passed at RCPT */
    int rcpt_quota;     /* one of them has a local mailbox with a quota */
};

struct policy_txn *policy_txn_new(const char *authserv_id)
{
    struct policy_txn *t = xcalloc(1, sizeof *t);
    buf_init(&t->fields, 64 * 1024);
    authres_init(&t->ar, authserv_id);
    return t;
}

void policy_txn_free(struct policy_txn *t)
{
    if (!t) return;
    buf_release(&t->fields);
    authres_release(&t->ar);
    policy_dkim_stream_free(t->dkim);
    free(t);
}

struct authres *policy_txn_authres(struct policy_txn *t)
{
    return &t->ar;
}

struct policy_auth *policy_txn_auth(struct policy_txn *t)
{
    return &t->auth;
}

struct policy_dkim_stream *policy_txn_dkim(struct policy_txn *t)
{
    return t->dkim;
}

/* 1 when the listener's checks name word */
static int checks_name(const struct conf_listen *l, const char *word)
{
    if (!l || !l->checks) return 0;
    size_t wl = strlen(word);
    for (const char *p = l->checks; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, " ,");
        if (n == wl && strncmp(p, word, n) == 0) return 1;
        p += n;
    }
    return 0;
}

void policy_txn_content(struct policy_txn *t, const struct conf_listen *l, const char *auth_user,
                        const void *p, size_t len)
{
    if (auth_user || !len) return;
    if (!t->dkim) {
        if (!checks_name(l, "dkim") && !checks_name(l, "dmarc")) return;
        t->dkim = policy_dkim_stream_new();
    }
    policy_dkim_stream_feed(t->dkim, p, len);
}

void policy_txn_add_field(struct policy_txn *t, const char *field)
{
    /* bounded: a field that does not fit is left out (checks add one each) */
    size_t n = strlen(field);
    if (t->fields.len + n + 2 <= t->fields.max) {
        buf_append(&t->fields, field, n);
        buf_append(&t->fields, "\r\n", 2);
    }
}

void policy_txn_note(struct policy_txn *t, const struct policy_check *c,
                     const struct policy_verdict *v)
{
    struct note *n = NULL;
    for (size_t i = 0; i < t->nnotes; i++)
        if (t->notes[i].name == c->name) n = &t->notes[i];
    if (!n) {
        if (t->nnotes >= NOTES_MAX) return;
        n = &t->notes[t->nnotes++];
        *n =
            (struct note){.name = c->name, .kind = v->kind, .score = v->score, .result = v->result};
        return;
    }
    /* the worst verdict wins (the kinds are in rising order), the higher score of two */
    if (v->kind > n->kind || (v->kind == n->kind && v->score > n->score))
        *n =
            (struct note){.name = c->name, .kind = v->kind, .score = v->score, .result = v->result};
}

void policy_txn_stage_done(struct policy_txn *t, enum policy_stage stage, int score)
{
    if (stage == POLICY_MAIL) t->carry = score;
    if (score > t->score) t->score = score;
}

int policy_txn_carry(const struct policy_txn *t)
{
    return t->carry;
}

/* Room for each result the end-of-data checks add: one folded line "dkim=permerror
 * (why) header.d=... header.s=... header.b=..." or "dmarc=... header.from=...". A
 * longer field loses its comments (authres_header_room()). */
enum { AR_RESULT_ROOM = 300 };

/* The DKIM-Signature fields of the header section hdr (at most POLICY_DKIM_MAX, the
 * signatures policy/dkim_check.c judges), at least 1 (dkim=none). */
static size_t dkim_fields(const char *hdr, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; hdr && i < len && n < POLICY_DKIM_MAX;) {
        struct hdr_field f;
        int r = hdr_next(hdr + i, len - i, &f);
        if (r == 0 || (r < 0 && !f.line_len)) break;
        if (r > 0 && hdr_name_is(&f, "DKIM-Signature")) n++;
        i += r > 0 ? (size_t)r : f.line_len;
    }
    return n ? n : 1;
}

void policy_txn_rcpt_passed(struct policy_txn *t, int quota)
{
    t->rcpt_passed++;
    t->rcpt_quota |= quota;
}

int policy_txn_rcpt_quota(const struct policy_txn *t, size_t nrcpts)
{
    return t->rcpt_quota || t->rcpt_passed < nrcpts;
}

int policy_txn_no_forward(const struct policy_txn *t, const struct conf_listen *l)
{
    if (!t || !l) return 0;
    for (size_t i = 0; i < t->nnotes; i++)
        if (strcmp(t->notes[i].name, "spf") == 0 && t->notes[i].result &&
            strcmp(t->notes[i].result, "fail") == 0)
            return 1;
    int score = t->score > t->carry ? t->score : t->carry;
    return (l->greylist_score > 0 && score >= l->greylist_score) ||
           (l->reject_score > 0 && score >= l->reject_score);
}

void policy_txn_headers(struct policy_txn *t, const struct kconf *conf, const struct conf_listen *l,
                        const char *auth_user, const char *client_addr, const char *client_name,
                        const char *hdr, size_t hdr_len, struct buf *out)
{
    buf_append(out, t->fields.data ? t->fields.data : "", t->fields.len);
    if (auth_user) return;
    /* once per message: the builder keeps what was added */
    /* RFC 8601 2.7.3: iprev, the client's reverse name confirmed by a forward lookup
     * (dns_client_name); "unknown" also stands for a failed lookup */
    if (conf->reverse_dns) {
        int known = strcmp(client_name, "unknown") != 0;
        authres_add(&t->ar, "iprev", known ? "pass" : "fail", known ? client_name : NULL);
        authres_prop(&t->ar, "policy", "iprev", client_addr);
    }
    t->ar_at = out->len;
    int dkim = checks_name(l, "dkim"), dmarc = checks_name(l, "dmarc");
    if (!dkim && !dmarc) { /* everything is known now */
        authres_header(&t->ar, out);
        t->ar_written = 1;
        return;
    }
    /* the results known so far in room for those of the end-of-data checks, which
     * the commit writes over it: the file is not copied for them */
    struct buf now;
    buf_init(&now, 0);
    authres_header(&t->ar, &now);
    t->ar_room = now.len + AR_RESULT_ROOM * ((dkim ? dkim_fields(hdr, hdr_len) : 0) + !!dmarc);
    buf_release(&now);
    if (authres_header_room(&t->ar, t->ar_room, out) != 0) { /* lines already full */
        authres_header(&t->ar, out);
        t->ar_written = 1;
        log_warn("policy", "no room for the end-of-data results in Authentication-Results");
    }
}

size_t policy_txn_authres_field(struct policy_txn *t, const char *auth_user, struct buf *out)
{
    if (auth_user || t->ar_written || !t->ar_room) return t->ar_at;
    if (authres_header_room(&t->ar, t->ar_room, out) != 0)
        log_warn("policy",
                 "Authentication-Results longer than its room (%zu bytes): kept "
                 "without the end-of-data results",
                 t->ar_room);
    return t->ar_at;
}

void policy_txn_log(const struct policy_txn *t, const char *id, const char *client_name,
                    const char *client_addr, const char *sender, const char *action)
{
    static const char *kinds[] = {"pass", "accept", "score", "greylist", "tempfail", "reject"};
    struct buf b;
    buf_init(&b, 4096);
    for (size_t i = 0; i < t->nnotes; i++) {
        const struct note *n = &t->notes[i];
        buf_printf(&b, "%s%s:%s", i ? "," : "", n->name, n->result ? n->result : kinds[n->kind]);
        if (n->kind == POLICY_SCORE || (n->result && n->score))
            buf_printf(&b, "%sscore%d", n->result ? "/" : "", n->score);
    }
    char esc[600];
    log_info("policy", "%s: peer=%s[%s] from=<%s> checks=%s score=%d action=%s",
             id && *id ? id : "NOQUEUE", client_name, client_addr,
             log_escape(esc, sizeof esc, sender, strlen(sender)), b.len ? b.data : "none", t->score,
             action);
    buf_release(&b);
}
