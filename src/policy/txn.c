/* txn.c: one transaction's policy record (policy.h): each check's verdict for the
 * message's log line, the score carried from MAIL to RCPT, the checks' header fields
 * and Authentication-Results. The pipeline and the checks fill it; the session's glue
 * asks for the headers and the log line. */
#include "core/compat.h"

#include "core/authres.h"
#include "core/buf.h"
#include "core/conf.h"
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
    free(t);
}

struct authres *policy_txn_authres(struct policy_txn *t)
{
    return &t->ar;
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

void policy_txn_headers(struct policy_txn *t, const struct kconf *conf, const char *auth_user,
                        const char *client_addr, const char *client_name, struct buf *out)
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
    authres_header(&t->ar, out);
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
