/* abuse_status.c: abuse/'s answer to "kurier account status": each account's counters
 * taken on the loop, its evidence read from the directory (store.h) on a worker. The
 * account state is abuse.c's (abuse_int.h). */
#include "core/compat.h"

#include <unistd.h>

#include "abuse/abuse_int.h"

/* --- the control socket ------------------------------------------------------------ */

struct status_ctx {
    struct buf *b;
    int json, first;
};

/* An account-status being made: the loop writes the text with a mark where each
 * account's evidence goes; a worker reads the evidence from the directory into them. */
struct abuse_status {
    struct store *store;
    int json;
    int test_delay;
    struct buf text; /* the loop's part */
    struct status_mark {
        size_t at; /* in text */
        char *account;
        long long since;
    } * marks;
    size_t nmarks;
    struct buf out; /* the whole, made on the worker */
    struct work_job *work;
    void (*done)(void *arg, const char *text, size_t len);
    void *arg;
};

static void evidence_out(void *arg, const struct store_abuse_evidence *e)
{
    struct status_ctx *s = arg;
    char t[32];
    time_iso8601(t, sizeof t, (time_t)e->time);
    if (!s->json) {
        buf_printf(s->b, "    %s %s +%d %s\n", t, e->signal, e->score, e->evidence);
        return;
    }
    buf_puts(s->b, s->first ? "" : ", ");
    s->first = 0;
    buf_puts(s->b, "{\"time\": ");
    buf_json_str(s->b, t);
    buf_puts(s->b, ", \"signal\": ");
    buf_json_str(s->b, e->signal);
    buf_printf(s->b, ", \"score\": %d, \"evidence\": ", e->score);
    buf_json_str(s->b, e->evidence);
    buf_puts(s->b, "}");
}

/* The evidence of account since then goes here (read on the worker). */
static void status_mark(struct abuse_status *st, const char *account, time_t since)
{
    st->marks = xrealloc(st->marks, (st->nmarks + 1) * sizeof *st->marks);
    st->marks[st->nmarks++] =
        (struct status_mark){.at = st->text.len, .account = xstrdup(account), .since = since};
}

/* One account's status, taken once on the loop and said by a formatter. */
struct status_vals {
    const struct acct *a;
    const char *since; /* locked since (UTC), or "" */
    int score, lock_score;
    int hour_msgs;
    double baseline;
    int replies, unknown, blocked; /* remote answers this hour */
};

/* The two ways to say it, "kurier account status" and its --json: the head, one line
 * per limit (first: the first of them), and what closes the account after its
 * evidence. The tail before the evidence is one buf_printf() with both formats. */
struct status_fmt {
    void (*head)(struct buf *b, const struct status_vals *v, int first);
    void (*limit)(struct buf *b, const char *name, int count, int soft, int hard, int first);
    const char *end;
};

static void text_head(struct buf *b, const struct status_vals *v, int first)
{
    const struct acct *a = v->a;
    buf_printf(b, "account %s\n  locked: %s%s%s%s%s\n  score: %d (locks at %d)\n", a->name,
               a->locked ? "yes, since " : "no", v->since, a->locked ? " (" : "",
               a->locked ? a->reason : "", a->locked ? ")" : "", v->score, v->lock_score);
}

static void text_limit(struct buf *b, const char *name, int count, int soft, int hard, int first)
{
    buf_printf(b, "  %s: %d (soft %d, hard %d)\n", name, count, soft, hard);
}

static void json_head(struct buf *b, const struct status_vals *v, int first)
{
    const struct acct *a = v->a;
    buf_puts(b, first ? "" : ", ");
    buf_puts(b, "{\"account\": ");
    buf_json_str(b, a->name);
    buf_printf(b, ", \"locked\": %s, \"locked_since\": ", a->locked ? "true" : "false");
    buf_json_str(b, v->since);
    buf_puts(b, ", \"reason\": ");
    buf_json_str(b, a->locked ? a->reason : "");
    buf_printf(b, ", \"score\": %d, \"lock_score\": %d, \"counters\": {", v->score, v->lock_score);
}

static void json_limit(struct buf *b, const char *name, int count, int soft, int hard, int first)
{
    buf_printf(b, "%s\"%s\": {\"count\": %d, \"soft\": %d, \"hard\": %d}", first ? "" : ", ", name,
               count, soft, hard);
}

static const struct status_fmt fmt_text = {text_head, text_limit, ""};
static const struct status_fmt fmt_json = {json_head, json_limit, "]}"};

static void status_one(struct abuse *ab, const struct acct *a, struct abuse_status *st, int first)
{
    struct buf *b = &st->text;
    const struct status_fmt *fmt = st->json ? &fmt_json : &fmt_text;
    time_t now = time(NULL);
    const struct kconf *c = ab->conf;
    int counts[CONF_ABUSE_NLIMITS];
    for (int i = 0; i < CONF_ABUSE_NLIMITS; i++)
        counts[i] = i == CONF_ABUSE_DISTINCT_DAY    ? 0
                    : i == CONF_ABUSE_RCPTS_MESSAGE ? -1
                                                    : win_count(&a->w[i], window_of(c, i), now);
    for (size_t i = 0; i < a->ndist; i++)
        counts[CONF_ABUSE_DISTINCT_DAY] += now - a->dist[i].t < c->abuse_day;
    char since[32] = "";
    if (a->locked) time_iso8601(since, sizeof since, a->locked_since);
    struct status_vals v = {
        .a = a,
        .since = since,
        .score = score_of(ab, a, now),
        .lock_score = c->abuse_lock_score,
        .hour_msgs = a->hour_no == (long long)now / c->abuse_hour ? a->hour_msgs : 0,
        .baseline = a->baseline < 0 ? 0 : a->baseline,
        .replies = win_count(&a->w[W_REPLIES], c->abuse_hour, now),
        .unknown = win_count(&a->w[W_UNKNOWN], c->abuse_hour, now),
        .blocked = win_count(&a->w[W_BLOCKED], c->abuse_hour, now),
    };
    fmt->head(b, &v, first);
    int f = 1;
    for (int i = 0; i < CONF_ABUSE_NLIMITS; i++) {
        if (counts[i] < 0) continue;
        int soft, hard;
        limit_of(ab, a->name, i, &soft, &hard);
        fmt->limit(b, limit_names[i], counts[i], soft, hard, f);
        f = 0;
    }
    buf_printf(b,
               st->json ? "}, \"messages_this_hour\": %d, \"baseline\": %.1f, "
                          "\"messages_seen\": %lld, \"known_domains\": %zu, \"replies\": %d, "
                          "\"user_unknown\": %d, \"blocklisted\": %d, \"evidence\": ["
                        : "  messages this hour: %d (baseline %.1f)\n  messages seen: %lld, "
                          "known recipient domains: %zu\n  remote answers this hour: %d "
                          "(user-unknown %d, blocklisted %d)\n  evidence:\n",
               v.hour_msgs, v.baseline, a->msgs_seen, a->ndoms, v.replies, v.unknown, v.blocked);
    status_mark(st, a->name, a->locked ? 0 : now - c->abuse_score_window);
    buf_puts(b, fmt->end);
}

static void status_free(struct abuse_status *st)
{
    for (size_t i = 0; i < st->nmarks; i++)
        free(st->marks[i].account);
    free(st->marks);
    buf_release(&st->text);
    buf_release(&st->out);
    free(st);
}

static void status_run(void *arg)
{
    struct abuse_status *st = arg;
    if (st->test_delay > 0) usleep((useconds_t)st->test_delay * 1000);
    const char *t = st->text.data ? st->text.data : "";
    size_t at = 0;
    for (size_t i = 0; i < st->nmarks; i++) {
        buf_append(&st->out, t + at, st->marks[i].at - at);
        at = st->marks[i].at;
        struct status_ctx sc = {.b = &st->out, .json = st->json, .first = 1};
        store_abuse_evidence_list(st->store, st->marks[i].account, st->marks[i].since, 100,
                                  evidence_out, &sc);
    }
    buf_append(&st->out, t + at, st->text.len - at);
}

static void status_done(void *arg)
{
    struct abuse_status *st = arg;
    st->work = NULL;
    st->done(st->arg, st->out.data ? st->out.data : "", st->out.len);
    status_free(st);
}

struct abuse_status *abuse_status_start(struct abuse *ab, const char *account, int json,
                                        void (*done)(void *arg, const char *text, size_t len),
                                        void *arg)
{
    struct abuse_status *st = xcalloc(1, sizeof *st);
    st->store = ab->store;
    st->json = json;
    st->test_delay = ab->test_delay;
    st->done = done;
    st->arg = arg;
    buf_init(&st->text, 0);
    buf_init(&st->out, 0);
    struct buf *b = &st->text;
    if (json) buf_puts(b, "{\"accounts\": [");
    int first = 1;
    if (account) {
        struct acct *a = acct_get(ab, account, 0);
        if (a) {
            status_one(ab, a, st, first);
        } else { /* nothing in memory (no mail since the start): zeros, stored evidence */
            struct acct *z = xcalloc(1, sizeof *z);
            z->name = str_lower(xstrdup(account));
            z->baseline = -1;
            z->hour_no = -1;
            status_one(ab, z, st, first);
            acct_free(z);
        }
    } else {
        for (size_t i = 0; i < ab->nbuckets; i++)
            for (struct acct *a = ab->b[i]; a; a = a->next) {
                if (!a->locked && !a->nsig && !a->hour_msgs) continue;
                status_one(ab, a, st, first);
                first = 0;
            }
    }
    if (json) buf_puts(b, "]}\n");
    st->work = work_submit(status_run, status_done, st);
    return st;
}

void abuse_status_cancel(struct abuse_status *st)
{
    if (!st) return;
    if (st->work) work_cancel(st->work);
    status_free(st);
}
