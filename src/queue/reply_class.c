/* reply_class.c: sorts the result of a delivery attempt (enhanced status code and
 * the remote server's words) into the class of problem a notice explains (dsn.h).
 * Pure. It only picks a notice's wording; whether a reply is about our sending address
 * (blocklisted, rate-limited, ...) is the egress classifier's (egress/replies.h). */
#include "core/compat.h"

#include "core/core.h"
#include "queue/dsn.h"

static int has_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0) return 1;
    return 0;
}

static int any_ci(const char *text, const char *const *words)
{
    for (; *words; words++)
        if (has_ci(text, *words)) return 1;
    return 0;
}

/* "5.1.10" -> subject 1, detail 10; 0 when not an enhanced code. */
int reply_parse_enh(const char *s, int *cls, int *subj, int *det)
{
    if (!s || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return 0;
    char *end;
    long a = strtol(s + 2, &end, 10);
    if (end == s + 2 || *end != '.') return 0;
    const char *d = end + 1;
    long b = strtol(d, &end, 10);
    if (end == d) return 0;
    *cls = s[0] - '0';
    *subj = (int)a;
    *det = (int)b;
    return 1;
}

enum dsn_class reply_classify(const char *dsn, const char *diag)
{
    static const char *const blocked_words[] = {
        "spamhaus",   "spamcop",     "barracuda", "blocked",    "blacklist",
        "blocklist",  "block list",  "listed",    "dnsbl",      "rbl",
        "reputation", "client host", "your ip",   "ip address", NULL};
    static const char *const auth_words[] = {"spf", "dkim", "dmarc", "sender policy", NULL};
    const char *t = diag ? diag : "";
    int c = 0, s = 0, d = 0;
    int ok = reply_parse_enh(dsn, &c, &s, &d);
    if (has_ci(t, "all our sending addresses are blocked")) return CL_POOL_BLOCKED;
    if (ok && s == 4 && d == 7) return CL_EXPIRED;
    if (ok && s == 4 && d == 6) return CL_LOOP;
    if (ok && s == 6 && d == 7) return CL_UTF8;
    if (any_ci(t, auth_words) && (!ok || s == 7)) return CL_AUTH;
    static const char *const grey_words[] = {"greylist", "graylist", "grey-list", NULL};
    if (any_ci(t, blocked_words) && !any_ci(t, grey_words) &&
        (!ok || s == 7 || s == 0 || (s == 3 && d == 2)))
        return CL_BLOCKED;
    if (ok && s == 1 && d == 1) return CL_USER;
    if (ok && s == 2 && d == 2) return CL_FULL;
    if (ok && ((s == 3 && d == 4) || (s == 2 && d == 3))) return CL_SIZE;
    if (ok && ((s == 1 && (d == 2 || d == 10)) || (s == 4 && d == 4))) return CL_DOMAIN;
    if (ok && s == 7) return CL_POLICY;
    /* a generic code (5.0.0, or none): fall back on the words */
    static const char *const user_words[] = {"user unknown",
                                             "unknown user",
                                             "no such user",
                                             "no such mailbox",
                                             "mailbox unavailable",
                                             "does not exist",
                                             NULL};
    static const char *const full_words[] = {"mailbox full", "over quota", "quota exceeded",
                                             "mailbox is full", NULL};
    if (any_ci(t, user_words)) return CL_USER;
    if (any_ci(t, full_words)) return CL_FULL;
    if ((ok && c == 5) || (!ok && diag)) return CL_PERM_OTHER;
    return CL_NONE;
}
