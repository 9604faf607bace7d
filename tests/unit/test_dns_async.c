/* test_dns_async.c: the resolver's callback rules (src/dns/dns.c) without any DNS
 * server: a loopback UDP socket of the test's own that never answers stands in for
 * the forwarder. Checks: no callback inside dns_query_*(), cancel and dns_free stop
 * callbacks, timeouts, freeing the resolver from a callback. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <unistd.h>

#include "dns/dns.h"

#include "check.h"

struct seen {
    int calls;
    enum dns_status status;
    char why[64];
    struct dns *free_me;          /* dns_free() this inside the callback */
    struct dns_query **cancel_me; /* dns_cancel() this inside the callback */
};

static int resolver_freed, late_calls; /* callbacks after a dns_free() in a callback */

static void on_answer(void *arg, const struct dns_result *r)
{
    struct seen *s = arg;
    s->calls++;
    late_calls += resolver_freed;
    s->status = r->status;
    snprintf(s->why, sizeof s->why, "%s", r->why ? r->why : "");
    if (s->cancel_me && *s->cancel_me) {
        dns_cancel(*s->cancel_me);
        *s->cancel_me = NULL;
    }
    if (s->free_me) {
        dns_free(s->free_me);
        resolver_freed = 1;
    }
}

static void run_for(struct event_base *base, double seconds)
{
    struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (time_t)seconds) * 1e6)};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* The answering forwarder: every query gets SERVFAIL back, from the test's loop. */
static int servfail_count;

static void on_servfail_sock(evutil_socket_t fd, short what, void *arg)
{
    unsigned char q[4096], a[4096];
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    (void)what;
    (void)arg;
    ssize_t n = recvfrom(fd, q, sizeof q, 0, (struct sockaddr *)&peer, &pl);
    if (n < 12) return;
    size_t end = 12;
    while (end < (size_t)n && q[end])
        end += 1u + q[end];
    end += 5; /* root byte, type, class */
    if (end > (size_t)n) return;
    memcpy(a, q, end);
    a[2] = (unsigned char)(0x80 | (q[2] & 0x79)); /* QR, opcode, RD */
    a[3] = 0x80 | 2;                              /* RA, SERVFAIL */
    memset(a + 4, 0, 8);
    a[5] = 1; /* one question, nothing else */
    servfail_count++;
    sendto(fd, a, end, 0, (struct sockaddr *)&peer, pl);
}

static struct dns *make(struct event_base *base, const char *fwd)
{
    char err[256];
    static const char *const insecure[] = {"test.", NULL};
    struct dns *d = dns_new(base, fwd, NULL, insecure, err, sizeof err);
    if (!d) printf("dns_new: %s\n", err);
    return d;
}

int main(void)
{
    /* The silent forwarder: bound, never read. */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sin;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &sl) != 0) {
        printf("cannot bind a loopback UDP socket\n");
        return 1;
    }
    char fwd[64];
    snprintf(fwd, sizeof fwd, "127.0.0.1@%u", ntohs(sin.sin_port));

    struct event_base *base = event_base_new();
    char err[256];
    CHECK(dns_new(base, "not an address", NULL, NULL, err, sizeof err) == NULL && err[0],
          "bad resolver refused");
    static const char *const bad_insecure[] = {"", NULL};
    CHECK(dns_new(base, fwd, NULL, bad_insecure, err, sizeof err) == NULL, "empty insecure");
    CHECK(dns_new(base, fwd, "/nonexistent/root.key", NULL, err, sizeof err) == NULL,
          "missing trust anchor refused");
    char ta[] = "/tmp/kurier-test-ta-XXXXXX";
    int tfd = mkstemp(ta);
    if (tfd >= 0) {
        write(tfd, "not a trust anchor\n", 19);
        close(tfd);
    }
    struct dns *bad = dns_new(base, fwd, ta, NULL, err, sizeof err);
    CHECK(tfd >= 0 && bad == NULL, "malformed trust anchor refused at dns_new");
    dns_free(bad);
    unlink(ta);

    struct dns *d = make(base, fwd);
    CHECK(d != NULL, "dns_new");
    if (!d) return 1;

    /* An invalid name fails, but only from the loop. */
    struct seen s1 = {0};
    struct dns_query *q = dns_query_mx(d, "a..b", on_answer, &s1);
    CHECK(q != NULL && s1.calls == 0, "no callback inside dns_query_mx");
    run_for(base, 0.05);
    CHECK(s1.calls == 1 && s1.status == DNS_NXDOMAIN, "invalid name: %d %d", s1.calls, s1.status);
    struct sockaddr sa_unix = {.sa_family = AF_UNIX};
    struct seen s1b = {0};
    dns_query_ptr(d, &sa_unix, on_answer, &s1b);
    CHECK(s1b.calls == 0, "PTR of AF_UNIX: not inside the call");
    run_for(base, 0.05);
    CHECK(s1b.calls == 1 && s1b.status == DNS_NXDOMAIN, "PTR of AF_UNIX");

    /* Cancelled queries never call back, whether libunbound has them or not. */
    struct seen s2 = {0}, s3 = {0};
    q = dns_query_a(d, "mx.remote.test", on_answer, &s2);
    dns_cancel(q);
    q = dns_query_txt(d, "x..y", on_answer, &s3);
    dns_cancel(q);
    dns_cancel(NULL);
    run_for(base, 0.3);
    CHECK(s2.calls == 0 && s3.calls == 0, "cancelled: %d %d", s2.calls, s3.calls);

    /* Timeout: TEMPFAIL "timeout"; a callback may cancel another pending query. */
    dns_set_timeout(d, 1);
    struct seen s4 = {0}, s5 = {0};
    struct dns_query *other = NULL;
    s4.cancel_me = &other;
    dns_query_mx(d, "remote.test", on_answer, &s4);
    other = dns_query_aaaa(d, "later.remote.test", on_answer, &s5);
    run_for(base, 2.5);
    CHECK(s4.calls == 1 && s4.status == DNS_TEMPFAIL && strcmp(s4.why, "timeout") == 0,
          "timeout: %d %d %s", s4.calls, s4.status, s4.why);
    CHECK(s5.calls == 0 && other == NULL, "cancelled from a callback: %d", s5.calls);

    /* dns_free with queries pending: no callback, nothing leaks (ASan). */
    struct seen s6 = {0};
    dns_query_tlsa(d, "mx.remote.test", 25, on_answer, &s6);
    dns_query_ptr(d, (struct sockaddr *)&sin, on_answer, &s6);
    dns_free(d);
    run_for(base, 0.2);
    CHECK(s6.calls == 0, "freed with pending queries: %d", s6.calls);
    dns_free(NULL);

    /* dns_free from inside a callback, another query still pending. */
    d = make(base, fwd);
    struct seen s7 = {0}, s8 = {0};
    s7.free_me = d;
    dns_query_mx(d, "bad..name", on_answer, &s7);
    dns_query_mx(d, "remote.test", on_answer, &s8);
    run_for(base, 0.2);
    CHECK(s7.calls == 1 && s8.calls == 0, "freed inside a callback: %d %d", s7.calls, s8.calls);

    /* Answers that come through ub_process(): many at once, and a callback that
     * frees the resolver while other answers are still being processed. */
    int fd2 = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin2 = {.sin_family = AF_INET};
    sin2.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sl = sizeof sin2;
    if (fd2 < 0 || bind(fd2, (struct sockaddr *)&sin2, sizeof sin2) != 0 ||
        getsockname(fd2, (struct sockaddr *)&sin2, &sl) != 0) {
        printf("cannot bind a loopback UDP socket\n");
        return 1;
    }
    struct event *sev = event_new(base, fd2, EV_READ | EV_PERSIST, on_servfail_sock, NULL);
    event_add(sev, NULL);
    snprintf(fwd, sizeof fwd, "127.0.0.1@%u", ntohs(sin2.sin_port));
    d = make(base, fwd);
    enum { N = 40 };
    struct seen many[N];
    memset(many, 0, sizeof many);
    char name[64];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "h%d.remote.test", i);
        dns_query_a(d, name, on_answer, &many[i]);
    }
    int calls = 0, ok = 1;
    for (int i = 0; i < N; i++)
        calls += many[i].calls;
    CHECK(calls == 0, "no callback inside dns_query_a");
    for (int t = 0; t < 100 && calls < N; t++) {
        run_for(base, 0.1);
        calls = 0;
        for (int i = 0; i < N; i++)
            calls += many[i].calls;
    }
    for (int i = 0; i < N; i++)
        ok = ok && many[i].calls == 1 && many[i].status == DNS_TEMPFAIL &&
             strcmp(many[i].why, "SERVFAIL") == 0;
    CHECK(ok && calls == N, "%d of %d answered with SERVFAIL (%d queries seen)", calls, N,
          servfail_count);

    resolver_freed = late_calls = 0;
    struct seen f1 = {0}, f2[N];
    memset(f2, 0, sizeof f2);
    f1.free_me = d;
    dns_query_mx(d, "first.remote.test", on_answer, &f1);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "g%d.remote.test", i);
        dns_query_mx(d, name, on_answer, &f2[i]);
    }
    for (int t = 0; t < 100 && f1.calls == 0; t++)
        run_for(base, 0.1);
    run_for(base, 0.3);
    calls = 0;
    for (int i = 0; i < N; i++)
        calls += f2[i].calls;
    /* The freeing callback ran; any answer processed after it must not call back. */
    CHECK(f1.calls == 1 && f1.status == DNS_TEMPFAIL, "freeing callback ran: %d", f1.calls);
    CHECK(late_calls == 0, "callbacks after dns_free: %d (%d before)", late_calls, calls);
    event_free(sev);
    close(fd2);

    event_base_free(base);
    close(fd);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
