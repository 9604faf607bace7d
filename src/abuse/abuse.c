/* abuse.c: per-account sending state (counters in sliding windows, limits, signals
 * and their scores) and when it locks: the accounts themselves (the table, their
 * counters kept across restarts) are abuse_acct.c's; what a lock does (auth/, the held
 * mail, the notices) is abuse_lock.c's. Locks, evidence, hourly volumes and each
 * account's counters go to the directory (store.h) on a worker, one write at a time in
 * order (abuse_store.c); they are read back at start. Loop thread only. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <stdatomic.h>
#include <stdint.h>
#include <strings.h>
#include <unistd.h>

#include "abuse/abuse.h"
#include "abuse/abuse_int.h"
#include "auth/auth.h"
#include "core/metrics.h"
#include "store/store.h"

const char *const limit_names[CONF_ABUSE_NLIMITS] = {
    "messages_per_hour", "recipients_per_hour", "distinct_recipients_per_day",
    "recipients_per_message", "failed_recipients_per_hour"};

struct override {
    char *name; /* "user@example.org" or "@example.org", lower case */
    int limit, soft, hard;
};

/* --- windows ------------------------------------------------------------------- */

static long long slot_of(int window, time_t now)
{
    int len = window / SLOTS > 0 ? window / SLOTS : 1;
    return (long long)now / len;
}

int win_count(const struct window *w, int window, time_t now)
{
    long long cur = slot_of(window, now);
    int n = 0;
    for (int i = 0; i < SLOTS; i++)
        if (w->slot[i] > cur - SLOTS && w->slot[i] <= cur) n += w->n[i];
    return n;
}

static int win_add_n(struct window *w, int window, time_t now, int n)
{
    long long cur = slot_of(window, now);
    int i = (int)(cur % SLOTS);
    if (w->slot[i] != cur) {
        w->slot[i] = cur;
        w->n[i] = 0;
    }
    w->n[i] += n;
    return win_count(w, window, now);
}

static int win_add(struct window *w, int window, time_t now)
{
    return win_add_n(w, window, now, 1);
}

int window_of(const struct kconf *c, int limit)
{
    return limit == CONF_ABUSE_DISTINCT_DAY ? c->abuse_day : c->abuse_hour;
}

/* --- limits (defaults, limits_file) ------------------------------------------------ */

static void overrides_free(struct abuse *ab)
{
    for (size_t i = 0; i < ab->nov; i++)
        free(ab->ov[i].name);
    free(ab->ov);
    ab->ov = NULL;
    ab->nov = 0;
}

static void overrides_load(struct abuse *ab)
{
    overrides_free(ab);
    const char *path = ab->conf->abuse_limits_file;
    if (!path) return;
    FILE *f = fopen(path, "r");
    if (!f) {
        log_err("abuse", "limits_file %s: %s (the defaults apply)", path, strerror(errno));
        return;
    }
    char line[1024];
    int lineno = 0;
    while (fgets(line, sizeof line, f) && ab->nov < OVERRIDES_MAX) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char name[320], lim[64];
        int soft, hard, end = 0;
        if (sscanf(line, " %*s%n", &end) == EOF || end == 0) continue; /* empty */
        if (sscanf(line, " %319s %63s %d %d %n", name, lim, &soft, &hard, &end) != 4 ||
            line[end] != '\0' || soft < 0 || hard < 0) {
            log_err("abuse", "%s:%d: expected \"NAME LIMIT SOFT HARD\" (line ignored)", path,
                    lineno);
            continue;
        }
        int k = -1;
        for (int i = 0; i < CONF_ABUSE_NLIMITS; i++)
            if (strcmp(lim, limit_names[i]) == 0) k = i;
        if (k < 0) {
            log_err("abuse", "%s:%d: unknown limit \"%s\" (line ignored)", path, lineno, lim);
            continue;
        }
        ab->ov = xrealloc(ab->ov, (ab->nov + 1) * sizeof *ab->ov);
        ab->ov[ab->nov++] = (struct override){
            .name = str_lower(xstrdup(name)), .limit = k, .soft = soft, .hard = hard};
    }
    fclose(f);
    log_info("abuse", "limits_file %s: %zu limits", path, ab->nov);
}

/* The account's soft and hard value of limit: its own line, its domain's, or the
 * default. */
void limit_of(const struct abuse *ab, const char *account, int limit, int *soft, int *hard)
{
    *soft = ab->conf->abuse_soft[limit];
    *hard = ab->conf->abuse_hard[limit];
    const char *at = strchr(account, '@');
    int found = 0; /* 2 the account's, 1 its domain's */
    for (size_t i = 0; i < ab->nov; i++) {
        const struct override *o = &ab->ov[i];
        if (o->limit != limit) continue;
        int m = strcmp(o->name, account) == 0 ? 2 : at && strcmp(o->name, at) == 0 ? 1 : 0;
        if (m > found) {
            found = m;
            *soft = o->soft;
            *hard = o->hard;
        }
    }
}

/* --- signals, lock ---------------------------------------------------------------- */

static int shared_down(struct abuse *ab, const char *account, int *code, char *enh, char *text,
                       size_t textsize);
static void shared_name(char *out, size_t size, int limit, const char *account);

static void signal_acct(struct abuse *ab, struct acct *a, const char *signal, int score,
                        const char *evidence)
{
    time_t now = time(NULL);
    if (a->nsig == SIGNALS_MAX) { /* the oldest goes */
        memmove(a->sig, a->sig + 1, (SIGNALS_MAX - 1) * sizeof *a->sig);
        a->nsig--;
    }
    a->sig[a->nsig++] = (struct signal_rec){.t = now, .score = score};
    int total = score_of(ab, a, now);
    char esc[1024];
    log_escape(esc, sizeof esc, evidence ? evidence : "", evidence ? strlen(evidence) : 0);
    /* logged once stored, so that what the log says is in the directory */
    struct wjob *w = wjob_new(ab, WK_EVIDENCE, a->name);
    w->ev = (struct store_abuse_evidence){.time = now, .score = score};
    str_copy(w->ev.account, a->name, sizeof w->ev.account);
    str_copy(w->ev.signal, signal, sizeof w->ev.signal);
    str_copy(w->ev.evidence, esc, sizeof w->ev.evidence);
    struct buf b;
    buf_init(&b, 0);
    buf_printf(&b, "account=%s signal=%s score=%d total=%d lock_score=%d evidence=\"%s\"", a->name,
               signal, score, total, ab->conf->abuse_lock_score, esc);
    w->logline = buf_take(&b);
    wjob_push(ab, w);
    if (!a->locked && total >= ab->conf->abuse_lock_score) {
        char why[512];
        int n = snprintf(why, sizeof why, "%s (score %d of %d): ", signal, total,
                         ab->conf->abuse_lock_score);
        if (n > 0 && (size_t)n < sizeof why) str_copy(why + n, esc, sizeof why - (size_t)n);
        acct_lock(ab, a, why);
    }
}

void abuse_signal(struct abuse *ab, const char *account, const char *signal, int score,
                  const char *evidence)
{
    if (!ab || !account || !*account) return;
    struct acct *a = acct_get(ab, account, 1);
    if (a) signal_acct(ab, a, signal, score, evidence);
}

/* A count past its hard limit: lock with the numbers as evidence. */
static void over_hard(struct abuse *ab, struct acct *a, int limit, int count, int hard)
{
    char ev[256];
    snprintf(ev, sizeof ev, "%s=%d hard=%d", limit_names[limit], count, hard);
    log_warn("abuse", "account=%s limit=%s count=%d hard=%d decision=lock", a->name,
             limit_names[limit], count, hard);
    signal_acct(ab, a, "hard_limit", ab->conf->abuse_lock_score, ev);
    if (!a->locked) acct_lock(ab, a, ev); /* lock_score is at least 1: cannot happen */
}

/* --- submission ------------------------------------------------------------------- */

static int reply_locked(const struct acct *a, int *code, char *enh, char *text, size_t textsize)
{
    *code = 451;
    str_copy(enh, "4.7.1", 8);
    snprintf(text, textsize,
             "Account %s locked for sending after suspected compromise; contact your provider",
             a->name);
    return 1;
}

/* Count one attempt against limit; 1 with the reply filled when over soft (or hard:
 * then the account is locked). */
static int check_limit(struct abuse *ab, struct acct *a, int limit, int count, int *code, char *enh,
                       char *text, size_t textsize)
{
    int soft, hard;
    limit_of(ab, a->name, limit, &soft, &hard);
    if (hard > 0 && count > hard) {
        over_hard(ab, a, limit, count, hard);
        return reply_locked(a, code, enh, text, textsize);
    }
    if (soft > 0 && count > soft) {
        log_info("abuse", "account=%s limit=%s count=%d soft=%d decision=tempfail", a->name,
                 limit_names[limit], count, soft);
        if (limit == CONF_ABUSE_RCPTS_MESSAGE) { /* RFC 5321 4.5.3.1.10 */
            *code = 452;
            str_copy(enh, "4.5.3", 8);
            snprintf(text, textsize, "Too many recipients in one message for user %s", a->name);
        } else {
            *code = 451;
            str_copy(enh, "4.7.1", 8);
            snprintf(text, textsize, "Sending rate limit reached for user %s, try again later",
                     a->name);
        }
        return 1;
    }
    return 0;
}

/* The baseline read with an hour: the account's, unless it asked for a newer one since.
 * The account may be gone. */
static void hour_done(struct abuse *ab, struct wjob *w, int notify)
{
    struct acct *a = acct_get(ab, w->account, 0);
    if (a && a->baseline_asked == w->cur) a->baseline = w->mean;
}

/* Roll the account's hour: store the finished one and read the baseline again, on a
 * worker (until it is back, the baseline counts as 0, as for a new account). */
static void hour_roll(struct abuse *ab, struct acct *a, time_t now)
{
    long long cur = (long long)now / ab->conf->abuse_hour;
    if (a->hour_no == cur && a->baseline_asked == cur) return;
    struct wjob *w = wjob_new(ab, WK_HOUR, a->name);
    w->done = hour_done;
    w->hour = a->hour_no != cur ? a->hour_no : -1;
    w->messages = a->hour_msgs;
    w->oldest = cur - ab->conf->abuse_baseline_hours;
    w->cur = cur;
    wjob_push(ab, w);
    a->baseline_asked = cur;
    if (a->hour_no != cur) a->hour_msgs = 0;
    a->hour_no = cur;
}

int abuse_check_mail(struct abuse *ab, const char *account, int shared, int *code, char *enh,
                     char *text, size_t textsize)
{
    struct acct *a = acct_get(ab, account, 1);
    if (!a) return 0;
    if (a->locked) return reply_locked(a, code, enh, text, textsize);
    time_t now = time(NULL);
    a->dirty = 1;
    int n = win_add(&a->w[CONF_ABUSE_MESSAGES_HOUR], ab->conf->abuse_hour, now);
    if (shared >= 0)
        n = shared;
    else if (store_shared(ab->store) && shared_down(ab, a->name, code, enh, text, textsize))
        return 1;
    return check_limit(ab, a, CONF_ABUSE_MESSAGES_HOUR, n, code, enh, text, textsize);
}

static uint64_t addr_hash(const char *rcpt)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = rcpt; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch >= 'A' && ch <= 'Z') ch = (unsigned char)(ch - 'A' + 'a');
        h = (h ^ ch) * 1099511628211ULL;
    }
    return h;
}

/* Remember rcpt among the day's recipients; returns how many distinct ones. */
static int distinct_add(struct abuse *ab, struct acct *a, const char *rcpt, time_t now)
{
    uint64_t h = addr_hash(rcpt);
    size_t live = 0;
    int found = 0;
    for (size_t i = 0; i < a->ndist; i++) { /* compact while counting */
        if (now - a->dist[i].t >= ab->conf->abuse_day) continue;
        if (a->dist[i].h == h) {
            a->dist[i].t = now;
            found = 1;
        }
        a->dist[live++] = a->dist[i];
    }
    a->ndist = live;
    if (!found && a->ndist < DISTINCT_MAX) {
        if (a->ndist == a->capdist) {
            a->capdist = a->capdist ? a->capdist * 2 : 16;
            a->dist = xrealloc(a->dist, a->capdist * sizeof *a->dist);
        }
        a->dist[a->ndist].h = h;
        a->dist[a->ndist++].t = now;
    }
    return (int)a->ndist + (found || a->ndist < DISTINCT_MAX ? 0 : 1);
}

int abuse_check_rcpt(struct abuse *ab, const char *account, const char *rcpt, size_t nrcpts,
                     const struct abuse_shared *shared, int *code, char *enh, char *text,
                     size_t textsize)
{
    struct acct *a = acct_get(ab, account, 1);
    if (!a) return 0;
    if (a->locked) return reply_locked(a, code, enh, text, textsize);
    time_t now = time(NULL);
    const struct kconf *c = ab->conf;
    a->dirty = 1;
    if (check_limit(ab, a, CONF_ABUSE_RCPTS_MESSAGE, (int)nrcpts + 1, code, enh, text, textsize))
        return 1;
    int n = win_add(&a->w[CONF_ABUSE_RCPTS_HOUR], c->abuse_hour, now);
    if (shared && shared->count >= 0)
        n = shared->count;
    else if (store_shared(ab->store) && shared_down(ab, a->name, code, enh, text, textsize))
        return 1;
    if (check_limit(ab, a, CONF_ABUSE_RCPTS_HOUR, n, code, enh, text, textsize)) return 1;
    n = distinct_add(ab, a, rcpt, now);
    if (shared && shared->distinct >= 0) n = shared->distinct;
    if (check_limit(ab, a, CONF_ABUSE_DISTINCT_DAY, n, code, enh, text, textsize)) return 1;
    /* refused recipients so far: at the soft limit, no more recipients this hour (the
     * hard limit locks in abuse_rcpt_failed) */
    n = shared && shared->failed >= 0
            ? shared->failed
            : win_count(&a->w[CONF_ABUSE_FAILED_HOUR], c->abuse_hour, now);
    int soft, hard;
    limit_of(ab, a->name, CONF_ABUSE_FAILED_HOUR, &soft, &hard);
    if (soft > 0 && n >= soft) {
        log_info("abuse", "account=%s limit=%s count=%d soft=%d decision=tempfail", a->name,
                 limit_names[CONF_ABUSE_FAILED_HOUR], n, soft);
        *code = 451;
        str_copy(enh, "4.7.1", 8);
        snprintf(text, textsize, "Sending rate limit reached for user %s, try again later",
                 a->name);
        return 1;
    }
    return 0;
}

/* A failed recipient of account counted: n of them in the hour; over the hard limit,
 * the account is locked. */
static void abuse_failed_counted(struct abuse *ab, const char *account, int n)
{
    struct acct *a = acct_get(ab, account, 0);
    if (!a || a->locked) return;
    int soft, hard;
    limit_of(ab, a->name, CONF_ABUSE_FAILED_HOUR, &soft, &hard);
    if (hard > 0 && n > hard) over_hard(ab, a, CONF_ABUSE_FAILED_HOUR, n, hard);
}

/* The failed recipients of the hour across the nodes (Redis unreachable: this node's,
 * set at queueing). */
static void failed_done(struct abuse *ab, struct wjob *w, int notify)
{
    if (notify) abuse_failed_counted(ab, w->account, w->messages);
}

void abuse_rcpt_failed(struct abuse *ab, const char *account, const char *rcpt)
{
    struct acct *a = acct_get(ab, account, 1);
    if (!a || a->locked) return;
    a->dirty = 1;
    int n = win_add(&a->w[CONF_ABUSE_FAILED_HOUR], ab->conf->abuse_hour, time(NULL));
    if (store_shared(ab->store)) { /* judged on the count across the nodes, when back */
        struct wjob *w = wjob_new(ab, WK_FAILED, a->name);
        char name[400];
        shared_name(name, sizeof name, CONF_ABUSE_FAILED_HOUR, a->name);
        w->text = xstrdup(name);
        w->hour = ab->conf->abuse_hour;
        w->messages = n; /* kept if Redis is unreachable */
        w->done = failed_done;
        wjob_push(ab, w);
        return;
    }
    abuse_failed_counted(ab, a->name, n);
}

/* 1 when rcpt is a spamtrap address or in a trap domain. */
static int is_trap(const char *traps, const char *rcpt)
{
    const char *at = strrchr(rcpt, '@');
    for (const char *p = traps; p && *p;) {
        size_t len = strcspn(p, " ");
        if ((len == strlen(rcpt) && strncasecmp(p, rcpt, len) == 0) ||
            (at && !memchr(p, '@', len) && len == strlen(at + 1) &&
             strncasecmp(p, at + 1, len) == 0))
            return 1;
        p += len;
        while (*p == ' ')
            p++;
    }
    return 0;
}

/* Signal 1: recipients in domains the account never wrote to, a burst within the hour.
 * Signal 2: envelope senders it did not use before. Both only after learn_messages. */
static void watch_habits(struct abuse *ab, struct acct *a, const char *sender, const char *id,
                         const char *const *rcpts, size_t n, time_t now)
{
    const struct kconf *c = ab->conf;
    int learned = a->msgs_seen >= c->abuse_learn_messages;
    long long hour = (long long)now / c->abuse_hour;
    const char *fresh = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *at = strrchr(rcpts[i], '@');
        if (!at || !at[1]) continue;
        uint64_t h = addr_hash(at + 1);
        if (!seen_has(a->doms, a->ndoms, h)) {
            fresh = at + 1;
            if (learned) win_add(&a->w[W_NEWDOM], c->abuse_hour, now);
        }
        seen_put(&a->doms, &a->ndoms, &a->capdoms, DOMAINS_MAX, h, now);
    }
    int nd = win_count(&a->w[W_NEWDOM], c->abuse_hour, now);
    if (fresh && learned && c->abuse_new_domains > 0 && nd >= c->abuse_new_domains &&
        a->newdom_signalled != hour) {
        a->newdom_signalled = hour;
        char ev[600];
        snprintf(ev, sizeof ev,
                 "recipients in %d domains never written to within %ds, the last %s in message "
                 "%s (it knows %zu domains)",
                 nd, c->abuse_hour, fresh, id, a->ndoms);
        signal_acct(ab, a, "new_domains", c->abuse_new_domains_score, ev);
    }
    if (sender && *sender && strcasecmp(sender, a->name) != 0) {
        uint64_t h = addr_hash(sender);
        size_t ns = SENDERS_MAX, cap = SENDERS_MAX;
        struct seen *v = a->senders;
        if (!seen_has(v, ns, h)) {
            if (learned) {
                int k = win_add(&a->w[W_NEWSND], c->abuse_hour, now);
                if (c->abuse_new_senders > 0 && k >= c->abuse_new_senders &&
                    a->newsnd_signalled != hour) {
                    a->newsnd_signalled = hour;
                    char ev[600];
                    snprintf(ev, sizeof ev,
                             "%d envelope senders not used before within %ds, the last <%s> in "
                             "message %s",
                             k, c->abuse_hour, sender, id);
                    signal_acct(ab, a, "unusual_sender", c->abuse_new_senders_score, ev);
                }
            }
            /* a free slot has h == 0: seen_put replaces the oldest (t == 0 first) */
        }
        seen_put(&v, &ns, &cap, SENDERS_MAX, h, now);
    }
    a->msgs_seen++;
}

int abuse_message(struct abuse *ab, const char *account, const char *sender, const char *id,
                  const char *const *rcpts, size_t n)
{
    struct acct *a = acct_get(ab, account, 1);
    if (!a) return 0;
    const struct kconf *c = ab->conf;
    time_t now = time(NULL);
    a->dirty = 1;
    if (!a->locked) watch_habits(ab, a, sender, id, rcpts, n, now);
    for (size_t i = 0; i < n && c->abuse_spamtraps; i++)
        if (is_trap(c->abuse_spamtraps, rcpts[i])) {
            char ev[600];
            snprintf(ev, sizeof ev, "message %s to spamtrap <%s>", id, rcpts[i]);
            signal_acct(ab, a, "spamtrap", c->abuse_spamtrap_score, ev);
            break; /* one signal per message */
        }
    hour_roll(ab, a, now);
    a->hour_msgs++;
    double limit = c->abuse_baseline_factor * (a->baseline < 0 ? 0 : a->baseline);
    if (a->hour_msgs > c->abuse_baseline_min && a->hour_msgs > limit &&
        a->baseline_signalled != a->hour_no) {
        a->baseline_signalled = a->hour_no;
        char ev[300];
        snprintf(ev, sizeof ev, "messages this hour=%d baseline=%.1f factor=%g min=%d",
                 a->hour_msgs, a->baseline, c->abuse_baseline_factor, c->abuse_baseline_min);
        signal_acct(ab, a, "volume_above_baseline", c->abuse_baseline_score, ev);
    }
    if (a->locked) log_info("abuse", "account=%s decision=hold id=%s", a->name, id);
    return a->locked;
}

/* n of the tot remote answers this hour said what (signal at share percent): the
 * signal, once in the hour (*signalled: the hour it was last given in). */
static void share_signal(struct abuse *ab, struct acct *a, const char *signal, const char *what,
                         int n, int tot, int share, int score, long long *signalled, long long hour,
                         const char *id)
{
    if ((long long)n * 100 < (long long)share * tot || *signalled == hour) return;
    *signalled = hour;
    char ev[400];
    snprintf(ev, sizeof ev,
             "%d of %d remote answers within %ds said %s (%d%%, signal at %d%%), the last for "
             "message %s",
             n, tot, ab->conf->abuse_hour, what, n * 100 / tot, share, id);
    signal_acct(ab, a, signal, score, ev);
}

void abuse_delivery(struct abuse *ab, const char *account, const char *id, size_t replies,
                    size_t unknown, size_t blocked)
{
    if (!ab || !account || !*account || !replies) return;
    struct acct *a = acct_get(ab, account, 1);
    if (!a || a->locked) return;
    const struct kconf *c = ab->conf;
    time_t now = time(NULL);
    long long hour = (long long)now / c->abuse_hour;
    a->dirty = 1;
    int tot = win_add_n(&a->w[W_REPLIES], c->abuse_hour, now, (int)replies);
    int unk = win_add_n(&a->w[W_UNKNOWN], c->abuse_hour, now, (int)unknown);
    int blk = win_add_n(&a->w[W_BLOCKED], c->abuse_hour, now, (int)blocked);
    if (tot < c->abuse_replies_min) return;
    if (unknown)
        share_signal(ab, a, "user_unknown", "user-unknown", unk, tot, c->abuse_unknown_share,
                     c->abuse_unknown_score, &a->unknown_signalled, hour, id);
    if (blocked && !a->locked)
        share_signal(ab, a, "blocklisted", "our address is blocklisted", blk, tot,
                     c->abuse_blocklist_share, c->abuse_blocklist_score, &a->blocked_signalled,
                     hour, id);
}

/* The client network of ip: an IPv4 /24 or an IPv6 /48. */
static void net_of(const char *ip, char *net, size_t size)
{
    unsigned char b[16];
    if (inet_pton(AF_INET, ip, b) == 1) {
        snprintf(net, size, "%u.%u.%u.0/24", b[0], b[1], b[2]);
    } else if (inet_pton(AF_INET6, ip, b) == 1) {
        memset(b + 6, 0, 10);
        char s[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, b, s, sizeof s);
        snprintf(net, size, "%s/48", s);
    } else {
        str_copy(net, ip, size);
    }
}

void abuse_login(struct abuse *ab, const char *account, const char *ip, int ok)
{
    const struct kconf *c = ab->conf;
    time_t now = time(NULL);
    char name[320];
    str_copy(name, account, sizeof name);
    str_lower(name);
    uint64_t h = name_hash(ab, name);
    __typeof__(ab->fails[0]) *f = &ab->fails[h % FAILS_SLOTS];
    if (f->h != h || now - f->start > c->auth_window) {
        f->h = h;
        f->fails = 0;
        f->start = now;
    }
    if (!ok) {
        f->fails++;
        return;
    }
    int fails = f->fails;
    f->fails = 0;
    struct acct *a = acct_get(ab, name, 1);
    if (!a) return;
    if (fails >= c->abuse_auth_failures) {
        char ev[200];
        snprintf(ev, sizeof ev, "login from %s after %d failures in %lds", ip, fails,
                 (long)(now - f->start));
        signal_acct(ab, a, "auth_after_failures", c->abuse_auth_score, ev);
    }
    char net[64];
    net_of(ip, net, sizeof net);
    int slot = -1, oldest = 0, distinct = 0;
    for (int i = 0; i < NETS_MAX; i++) {
        if (a->nets[i].net[0] && strcmp(a->nets[i].net, net) == 0) slot = i;
        if (a->nets[i].t < a->nets[oldest].t) oldest = i;
    }
    if (slot < 0) slot = oldest;
    str_copy(a->nets[slot].net, net, sizeof a->nets[slot].net);
    a->nets[slot].t = now;
    for (int i = 0; i < NETS_MAX; i++)
        if (a->nets[i].net[0] && now - a->nets[i].t <= c->abuse_networks_window) distinct++;
    long long win = (long long)now / c->abuse_networks_window;
    if (distinct >= c->abuse_networks && a->nets_signalled != win) {
        a->nets_signalled = win;
        char ev[200];
        snprintf(ev, sizeof ev, "logins from %d networks within %ds, the last %s", distinct,
                 c->abuse_networks_window, ip);
        signal_acct(ab, a, "many_networks", c->abuse_networks_score, ev);
    }
}

/* --- life -------------------------------------------------------------------------- */

static void observe_login(void *arg, const char *user, const char *ip, int ok)
{
    abuse_login(arg, user, ip, ok);
}

struct abuse *abuse_new(struct event_base *base, const struct kconf *conf, struct store *st,
                        struct auth *auth, struct spool *spool)
{
    struct abuse *ab = xcalloc(1, sizeof *ab);
    ab->base = base;
    ab->conf = conf_ref(conf);
    ab->store = st;
    ab->auth = auth;
    ab->spool = spool;
    ab->nbuckets = 4096;
    ab->b = xcalloc(ab->nbuckets, sizeof *ab->b);
    ab->seed = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)ab;
    overrides_load(ab);
    owners_load(ab);
    acct_load(ab, time(NULL)); /* at start, before any mail */
    auth_set_observer(auth, observe_login, ab);
    ab->ev_flush = event_new(base, -1, EV_PERSIST, flush_fire, ab);
    if (ab->ev_flush) event_add(ab->ev_flush, &(struct timeval){.tv_sec = STATE_FLUSH});
    if (store_shared(st)) { /* locks decided on other nodes */
        ab->ev_sync = event_new(base, -1, EV_PERSIST, sync_fire, ab);
        if (ab->ev_sync) event_add(ab->ev_sync, &(struct timeval){.tv_sec = conf->state_refresh});
    }
    /* the test hook of glue.h's KURIER_TEST_DELAY, for these writes: "abuse=MS" */
    const char *d = getenv("KURIER_TEST_DELAY");
    const char *in = d ? strstr(d, "abuse=") : NULL;
    if (in) {
        ab->test_delay = atoi(in + 6);
        log_warn("kurierd", "KURIER_TEST_DELAY: abuse writes wait %d ms (tests only)",
                 ab->test_delay);
    }
    return ab;
}

void abuse_set_queue(struct abuse *ab, struct queue *q)
{
    ab->queue = q;
}

void abuse_set_conf(struct abuse *ab, const struct kconf *conf)
{
    conf_ref(conf);
    conf_unref(ab->conf);
    ab->conf = conf;
    overrides_load(ab);
    owners_load(ab);
}

void abuse_free(struct abuse *ab)
{
    if (!ab) return;
    auth_set_observer(ab->auth, NULL, NULL);
    if (ab->ev_flush) event_free(ab->ev_flush);
    if (ab->ev_sync) event_free(ab->ev_sync);
    flush_dirty(ab);
    atomic_store(&ab->freeing, 1);
    abuse_store_drain(ab);
    abuse_lock_free(ab);
    for (size_t i = 0; i < ab->nbuckets; i++)
        for (struct acct *a = ab->b[i], *next; a; a = next) {
            next = a->next;
            acct_free(a);
        }
    free(ab->b);
    overrides_free(ab);
    conf_unref(ab->conf);
    free(ab);
}

/* --- the control socket (the status: abuse_status.c) --------------------------- */

/* --- shared state (docs/cluster.md) ----------------------------------------------- */

int abuse_shared(const struct abuse *ab)
{
    return ab && store_shared(ab->store);
}

/* The name of account's shared counter of limit ("failed_recipients_per_hour:ACCOUNT",
 * lower case) into out. */
static void shared_name(char *out, size_t size, int limit, const char *account)
{
    char acc[320];
    str_copy(acc, account, sizeof acc);
    str_lower(acc);
    snprintf(out, size, "%s:%s", limit_names[limit], acc);
}

int abuse_refused_uncounted(struct abuse *ab, const char *account, int rcpt, size_t nrcpts)
{
    struct acct *a = acct_get(ab, account, 0);
    if (a && a->locked) return 1;
    if (!rcpt) return 0;
    int soft, hard;
    char acc[320];
    str_copy(acc, account, sizeof acc);
    str_lower(acc);
    limit_of(ab, acc, CONF_ABUSE_RCPTS_MESSAGE, &soft, &hard);
    int n = (int)nrcpts + 1; /* as abuse_check_rcpt judges it */
    return (hard > 0 && n > hard) || (soft > 0 && n > soft);
}

void abuse_shared_count(struct abuse *ab, const struct kconf *conf, const char *account,
                        const char *rcpt, struct abuse_shared *out)
{
    struct store *st = ab->store; /* set once: read from a worker */
    *out = (struct abuse_shared){.count = -1, .distinct = -1, .failed = -1};
    if (!store_shared(st)) return;
    char name[400];
    long long now = (long long)time(NULL);
    shared_name(name, sizeof name, rcpt ? CONF_ABUSE_RCPTS_HOUR : CONF_ABUSE_MESSAGES_HOUR,
                account);
    int n;
    if (store_rate_add(st, name, conf->abuse_hour, now, 1, &n) != 0) return;
    out->count = n;
    if (!rcpt) return;
    /* the same hash as distinct_add: the addresses themselves are not stored */
    char member[24];
    snprintf(member, sizeof member, "%016llx", (unsigned long long)addr_hash(rcpt));
    shared_name(name, sizeof name, CONF_ABUSE_DISTINCT_DAY, account);
    if (store_distinct_add(st, name, conf->abuse_day, now, member, DISTINCT_MAX, &n) == 0)
        out->distinct = n;
    shared_name(name, sizeof name, CONF_ABUSE_FAILED_HOUR, account);
    if (store_rate_add(st, name, conf->abuse_hour, now, 0, &n) == 0) out->failed = n;
}

/* Redis unreachable for a shared counter (state.rate_fail): 1 with the reply filled
 * (closed), 0 go on with this node's count (open). Logged and counted either way. */
static int shared_down(struct abuse *ab, const char *account, int *code, char *enh, char *text,
                       size_t textsize)
{
    metrics_add(MET_STATE_DOWN, 1, "rate");
    int closed = ab->conf->state_rate_fail == CONF_FAIL_CLOSED;
    log_warn("abuse", "account=%s: shared counters unreachable: %s (rate_fail %s)", account,
             closed ? "refused for now" : "counted on this node only", closed ? "closed" : "open");
    if (!closed) return 0;
    *code = 451;
    str_copy(enh, "4.3.0", 8);
    snprintf(text, textsize, "Sending limits temporarily unavailable for user %s, try again later",
             account);
    return 1;
}
