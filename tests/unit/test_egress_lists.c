/* test_egress_lists.c: the async DNS list check (src/egress/lists.c) without any DNS
 * server: a loopback UDP socket of the test's own that never answers stands in for
 * the resolver. Checks: bad input starts nothing, no callback inside the start, a
 * cancelled check never calls back, timeouts become per-list errors, one callback. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <unistd.h>

#include "dns/dns.h"
#include "egress/lists.h"

#include "check.h"

struct seen {
    int calls;
    size_t n;
    enum egress_rbl_status status[4];
    char error[4][128];
    char zone[4][64];
};

static void on_done(void *arg, const struct egress_rbl_result *res, size_t n)
{
    struct seen *s = arg;
    s->calls++;
    s->n = n;
    for (size_t i = 0; i < n && i < 4; i++) {
        s->status[i] = res[i].status;
        snprintf(s->error[i], sizeof s->error[i], "%s", res[i].error);
        snprintf(s->zone[i], sizeof s->zone[i], "%s", res[i].zone);
    }
}

static void run_for(struct event_base *base, double seconds)
{
    struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (time_t)seconds) * 1e6)};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

int main(void)
{
    /* the silent resolver */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0, "bind");
    socklen_t sl = sizeof sin;
    getsockname(fd, (struct sockaddr *)&sin, &sl);
    char res[64], err[256];
    snprintf(res, sizeof res, "127.0.0.1@%u", ntohs(sin.sin_port));
    struct event_base *base = event_base_new();
    struct dns *d = dns_new(base, res, NULL, NULL, err, sizeof err);
    CHECK(d != NULL, "dns_new: %s", err);
    if (!d) return check_summary();

    const char *specs[] = {"bl.test", "Other.Test=127.0.0.[2..3]"};
    struct seen s = {0};
    CHECK(egress_rbl_check_start(d, "no such thing", specs, 2, on_done, &s, err, sizeof err) ==
                  NULL &&
              strstr(err, "not an IPv4 or IPv6 address"),
          "bad subject: %s", err);
    const char *bad[] = {"bl.test", "x.test=300.0.0.1"};
    CHECK(egress_rbl_check_start(d, "192.0.2.1", bad, 2, on_done, &s, err, sizeof err) == NULL &&
              strstr(err, "list \"x.test=300.0.0.1\""),
          "bad spec: %s", err);
    CHECK(egress_rbl_check_start(d, "192.0.2.1", specs, 0, on_done, &s, err, sizeof err) == NULL,
          "no lists");

    /* cancelled: never calls back, frees everything (ASan) */
    struct egress_rbl_check *c =
        egress_rbl_check_start(d, "192.0.2.1", specs, 2, on_done, &s, err, sizeof err);
    CHECK(c != NULL && s.calls == 0, "started, no callback inside the start");
    egress_rbl_check_cancel(c);
    egress_rbl_check_cancel(NULL);
    run_for(base, 0.3);
    CHECK(s.calls == 0, "cancelled check called back");

    /* no answer: every list an error, one callback with all of them in order */
    dns_set_timeout(d, 1);
    c = egress_rbl_check_start(d, "2001:db8::1", specs, 2, on_done, &s, err, sizeof err);
    CHECK(c != NULL, "start v6: %s", err);
    for (int i = 0; i < 100 && s.calls == 0; i++)
        run_for(base, 0.1);
    CHECK(s.calls == 1 && s.n == 2, "one callback (%d)", s.calls);
    CHECK(s.status[0] == EGRESS_RBL_ERROR && s.status[1] == EGRESS_RBL_ERROR, "errors");
    CHECK(strcmp(s.zone[0], "bl.test") == 0 && strcmp(s.zone[1], "other.test") == 0, "zones %s %s",
          s.zone[0], s.zone[1]);
    CHECK(strcmp(s.error[0], "timeout") == 0, "why: %s", s.error[0]);

    /* a check still running when the resolver goes: dns_free cancels its queries */
    struct seen s2 = {0};
    c = egress_rbl_check_start(d, "192.0.2.1", specs, 1, on_done, &s2, err, sizeof err);
    egress_rbl_check_cancel(c);
    dns_free(d);
    event_base_free(base);
    close(fd);
    CHECK(s2.calls == 0, "callback after cancel");
    return check_summary();
}
