/* sender_login.c: an authenticated user may use as envelope sender (MAIL) and in the
 * From:/Sender:/Resent-From:/Resent-Sender: headers (end of message) only the
 * addresses they own; what "own" means is the store's (store_sender_owned).
 * Unauthenticated sessions pass. */
#include "core/compat.h"

#include "core/core.h"
#include "policy/policy.h"
#include "store/store.h"

enum sl_mode { SL_ENFORCE = 0, SL_LOG = 1, SL_OFF = 2 };

struct sl_job {
    struct work_job *job;
    struct store *store;
    enum policy_stage stage;
    char *user;          /* NULL: not authenticated */
    char *sender;        /* MAIL stage: the reverse-path, "" for <> */
    const char *headers; /* EOM stage: borrowed from the session (valid while we run) */
    size_t headers_len;
    int headers_cut; /* the session kept only the first headers_len bytes of headers */
    struct policy_verdict v;
    void (*done)(void *, const struct policy_verdict *);
    void *arg;
};

/* Mode for the authenticated user: the binding of the user's own domain, whatever
 * the sender address's domain (a user must not escape "enforce" by naming an
 * address in a "log" domain). -1 store error. */
static int user_mode(struct sl_job *j)
{
    const char *at = strrchr(j->user, '@');
    return store_domain_binding(j->store, at ? at + 1 : "");
}

/* Judge one address. 0 go on, 1 verdict decided (refusal set in j->v). */
static int judge_addr(struct sl_job *j, int mode, const char *address)
{
    int owned = store_sender_owned(j->store, j->user, address);
    if (owned == 1) return 0;
    char a[200], u[200];
    log_escape(a, sizeof a, address, strlen(address));
    log_escape(u, sizeof u, j->user, strlen(j->user));
    if (owned < 0) {
        policy_verdict_set(&j->v, POLICY_TEMPFAIL, 451, "4.3.0",
                           "Sender address <%s> not checked: temporary directory failure, try "
                           "again later",
                           a);
        return 1;
    }
    if (mode == SL_LOG) {
        log_warn("smtpd", "sender <%s> not owned by user %s (binding mode log)", a, u);
        return 0;
    }
    policy_verdict_set(&j->v, POLICY_REJECT, 553, "5.7.1",
                       "Sender address <%s> not owned by user %s", a, u);
    return 1;
}

/* The fields that name the author or the sender: each is a mailbox-list
 * (RFC 5322 3.6.2, 3.6.6). */
static const char *sender_field(const struct hdr_field *f)
{
    static const char *const names[] = {"From", "Sender", "Resent-From", "Resent-Sender"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (hdr_name_is(f, names[i])) return names[i];
    return NULL;
}

/* Every address of every From:, Sender:, Resent-From: and Resent-Sender: field. A
 * field we cannot check is refused under enforce, else a crafted one would slip
 * through: unparseable, a group ("x@victim.example" :;) or no mailbox at all, and
 * a header section longer than the session kept (headers_cut). */
static void judge_headers(struct sl_job *j, int mode)
{
    if (j->headers_cut) {
        char u[200];
        log_escape(u, sizeof u, j->user, strlen(j->user));
        if (mode == SL_LOG) {
            log_warn("smtpd",
                     "header section from user %s too long to check the sender (binding mode log)",
                     u);
        } else {
            policy_verdict_set(&j->v, POLICY_REJECT, 552, "5.3.4",
                               "Message header section too long: the sender cannot be checked "
                               "against user %s beyond %zu bytes of headers",
                               u, j->headers_len);
            return;
        }
    }
    const char *p = j->headers;
    size_t len = j->headers_len;
    while (len > 0) {
        struct hdr_field f;
        int r = hdr_next(p, len, &f);
        if (r == 0) break;
        size_t used;
        if (r < 0) { /* a malformed line: skip it */
            const char *nl = memchr(p, '\n', len);
            used = nl ? (size_t)(nl - p) + 1 : len;
        } else {
            used = (size_t)r;
        }
        const char *name = r > 0 ? sender_field(&f) : NULL;
        if (name) {
            char **v = NULL;
            size_t n = 0;
            if (hdr_parse_mailboxes(f.value, f.value_len, &v, &n) != 0) {
                char u[200];
                log_escape(u, sizeof u, j->user, strlen(j->user));
                if (mode == SL_LOG) {
                    log_warn("smtpd", "malformed %s: header from user %s (binding mode log)", name,
                             u);
                } else {
                    policy_verdict_set(&j->v, POLICY_REJECT, 553, "5.7.1",
                                       "Malformed %s: header (a list of mailboxes is required, "
                                       "no group): cannot check the sender against user %s",
                                       name, u);
                    return;
                }
            }
            int decided = 0;
            for (size_t i = 0; i < n && !decided; i++)
                decided = judge_addr(j, mode, v[i]);
            hdr_addresses_free(v, n);
            if (decided) return;
        }
        p += used;
        len -= used;
    }
}

/* Worker thread: directory lookups. */
static void sl_run(void *arg)
{
    struct sl_job *j = arg;
    memset(&j->v, 0, sizeof j->v);
    j->v.kind = POLICY_PASS;
    if (!j->user) return;
    if (j->stage == POLICY_MAIL && (!j->sender || !*j->sender)) return; /* <> */
    if (j->stage == POLICY_EOM && (!j->headers || !j->headers_len) && !j->headers_cut) return;
    int mode = user_mode(j);
    if (mode < 0) {
        policy_verdict_set(&j->v, POLICY_TEMPFAIL, 451, "4.3.0",
                           "Sender address not checked: temporary directory failure, try again "
                           "later");
        return;
    }
    if (mode == SL_OFF) return;
    if (j->stage == POLICY_MAIL)
        judge_addr(j, mode, j->sender);
    else
        judge_headers(j, mode);
}

static void sl_job_free(struct sl_job *j)
{
    free(j->user);
    free(j->sender);
    free(j);
}

/* Loop thread. */
static void sl_done(void *arg)
{
    struct sl_job *j = arg;
    struct policy_verdict v = j->v;
    void (*done)(void *, const struct policy_verdict *) = j->done;
    void *darg = j->arg;
    sl_job_free(j);
    done(darg, &v);
}

/* Always through the worker pool, even when there is nothing to judge (done must
 * never run before start returned); sl_wanted keeps other clients away. */
static void *sl_start(const struct policy_ctx *ctx, enum policy_stage stage,
                      void (*done)(void *, const struct policy_verdict *), void *arg)
{
    struct sl_job *j = xcalloc(1, sizeof *j);
    j->store = ctx->store;
    j->stage = stage;
    j->user = ctx->auth_user ? xstrdup(ctx->auth_user) : NULL;
    if (stage == POLICY_MAIL && ctx->sender) j->sender = addr_format(ctx->sender);
    if (stage == POLICY_EOM) {
        j->headers = ctx->headers;
        j->headers_len = ctx->headers ? ctx->headers_len : 0;
        j->headers_cut = ctx->headers_cut;
    }
    j->done = done;
    j->arg = arg;
    j->job = work_submit(sl_run, sl_done, j);
    return j;
}

/* Only a logged-in client's sender (not <>) and headers are judged. */
static int sl_wanted(const struct policy_ctx *ctx, enum policy_stage stage)
{
    return ctx->auth_user && (stage != POLICY_MAIL || (ctx->sender && ctx->sender->local));
}

static void sl_cancel(void *handle)
{
    struct sl_job *j = handle;
    work_cancel(j->job); /* waits for a running sl_run */
    sl_job_free(j);
}

const struct policy_check policy_check_sender_login = {
    .name = "sender_login",
    .stages = 1u << POLICY_MAIL | 1u << POLICY_EOM,
    .judges_client_ip = 0,
    .start = sl_start,
    .cancel = sl_cancel,
    .wanted = sl_wanted,
};
