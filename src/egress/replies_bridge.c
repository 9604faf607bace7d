/* replies_bridge.c: the one question remote delivery asks about a reply (bench.h
 * egress_reply_kind()): does it say our sending address is blocklisted, or that we
 * send too much or with too little reputation? Until egress/replies.c's
 * egress_reply_classify() is here, queue/'s DSN classifier answers the first. */
#include "core/compat.h"

#include "core/core.h"
#include "egress/bench.h"
#include "queue/dsn.h" /* reply_classify(): replaced by egress_reply_classify() */

static int has_ci(const char *hay, const char *needle)
{
    return strcasestr(hay, needle) != NULL;
}

enum egress_reply egress_reply_kind(int code, const char *enh, const char *text)
{
    const char *t = text ? text : "";
    if (code < 400 || code >= 600) return EGRESS_REPLY_OTHER;
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
