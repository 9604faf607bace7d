/* replies_bridge.c: the one question remote delivery asks about a reply (bench.h
 * egress_reply_kind()): does it say our sending address is blocklisted, or that we
 * send too much or with too little reputation? The reply classifier (replies.c, the
 * rules file) answers; only when no rules file is loaded (reply_rules not installed)
 * do a few key words and queue/'s DSN classifier stand in for it. */
#include "core/compat.h"

#include "core/core.h"
#include "egress/bench.h"
#include "egress/replies.h"
#include "queue/dsn.h" /* reply_classify(): the stand-in without rules */

static int has_ci(const char *hay, const char *needle)
{
    return strcasestr(hay, needle) != NULL;
}

enum egress_reply egress_reply_kind(int code, const char *enh, const char *text)
{
    const char *t = text ? text : "";
    if (code < 400 || code >= 600) return EGRESS_REPLY_OTHER;
    const struct reply_rules *rules = egress_replies_current();
    if (rules) {
        switch (egress_reply_classify(rules, code, enh, t, NULL)) {
        case REPLY_IP_BLOCKLIST:
            return EGRESS_REPLY_BLOCKLIST;
        case REPLY_IP_REPUTATION_TEMPORARY:
        case REPLY_RATE_LIMIT:
            return EGRESS_REPLY_SLOW;
        default:
            return EGRESS_REPLY_OTHER;
        }
    }
    static const char *const grey[] = {"greylist", "graylist", "grey-list", NULL};
    for (int i = 0; grey[i]; i++)
        if (has_ci(t, grey[i])) return EGRESS_REPLY_OTHER;
    static const char *const slow[] = {
        "rate limit",           "ratelimit",       "rate-limit", "too many",          "throttl",
        "temporarily deferred", "try again later", "reputation", "unexpected volume", NULL};
    static const char *const lists[] = {"spamhaus",  "spamcop",    "barracuda", "blocklist",
                                        "blacklist", "block list", "dnsbl",     "rbl",
                                        "listed",    "blocked",    NULL};
    int cl = reply_classify(enh && *enh ? enh : NULL, t);
    int named = 0;
    for (int i = 0; lists[i]; i++)
        if (has_ci(t, lists[i])) named = 1;
    if (code >= 500 && cl == CL_BLOCKED && !has_ci(t, "reputation")) return EGRESS_REPLY_BLOCKLIST;
    if (code < 500 && named && !has_ci(t, "reputation") && cl == CL_BLOCKED)
        return EGRESS_REPLY_BLOCKLIST;
    for (int i = 0; slow[i]; i++)
        if (has_ci(t, slow[i])) return EGRESS_REPLY_SLOW;
    if (cl == CL_BLOCKED) return code >= 500 ? EGRESS_REPLY_BLOCKLIST : EGRESS_REPLY_SLOW;
    return EGRESS_REPLY_OTHER;
}
