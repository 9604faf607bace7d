/* dsn_trust.c: who may receive delivery reports (DESIGN.md "No backscatter"). The
 * one place of the rule: the daemon marks a message at reception, the recipient
 * check and the queue (dsn_allowed) ask before counting on a bounce. */
#include "core/compat.h"

#include "policy/policy.h"

int policy_dsn_trusted(const char *auth_user, int trusted)
{
    return auth_user != NULL || trusted; /* SPF pass joins later */
}

int policy_dsn_allowed(int null_sender, int dsn_trusted, const char **why)
{
    const char *w = NULL;
    if (null_sender)
        w = "null sender";
    else if (!dsn_trusted)
        w = "untrusted sender";
    if (why) *why = w;
    return w == NULL;
}
