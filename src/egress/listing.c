/* listing.c: what a DNS list listing of one of our addresses does to its benches
 * (bench.h egress_listing()). An address listed on several lists stays benched for
 * every destination until the last of them has let it go; the monitor (monitor.c)
 * reports each list on its own. Loop thread only, like bench.c. */
#include "core/compat.h"

#include "core/core.h"
#include "egress/bench.h"

struct listing {
    char *addr, *zone, *reason;
    struct listing *next;
};

static struct listing *listings;

static struct listing **find(const char *addr, const char *zone)
{
    struct listing **pp = &listings;
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->addr, addr) == 0 && strcasecmp((*pp)->zone, zone) == 0) break;
    return pp;
}

void egress_listing(const char *addr, const char *zone, int listed, const char *txt)
{
    struct listing **pp = find(addr, zone);
    if (listed) {
        char reason[EGRESS_REASON_MAX];
        snprintf(reason, sizeof reason, "listed on %s%s%s", zone, txt && *txt ? ": " : "",
                 txt ? txt : "");
        if (!*pp) {
            struct listing *l = xcalloc(1, sizeof *l);
            l->addr = xstrdup(addr);
            l->zone = xstrdup(zone);
            *pp = l;
        }
        free((*pp)->reason);
        (*pp)->reason = xstrdup(reason);
        egress_bench(addr, NULL, reason, 0);
        return;
    }
    if (!*pp) return; /* clear or unknown without a listing of ours: nothing to lift */
    struct listing *gone = *pp;
    *pp = gone->next;
    free(gone->addr);
    free(gone->zone);
    free(gone->reason);
    free(gone);
    for (struct listing *l = listings; l; l = l->next)
        if (strcmp(l->addr, addr) == 0) { /* still listed elsewhere: say where */
            egress_bench(addr, NULL, l->reason, 0);
            return;
        }
    egress_unbench(addr, NULL);
}

void egress_listing_free(void)
{
    while (listings) {
        struct listing *l = listings;
        listings = l->next;
        free(l->addr);
        free(l->zone);
        free(l->reason);
        free(l);
    }
}
