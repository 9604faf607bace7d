/* test_authlimit.c: the AUTH brute-force limiter (auth/limits.c): blocks per
 * (address, account) and per address, never per account alone; IPv6 per /64; the
 * table's bound; listing and clearing blocks. No network. */
#include "core/compat.h"

#include "core/core.h"
#include "auth/auth.h"

#include "check.h"

static struct kconf conf;

struct seen {
    int n;
    char last[256];
};

static void each(void *arg, const char *addr, const char *account, int failures, double left)
{
    struct seen *s = arg;
    s->n++;
    snprintf(s->last, sizeof s->last, "%s %s %d %.0f", addr, account ? account : "-", failures,
             left);
}

static void fail_n(struct auth_limits *al, const char *ip, const char *user, int n, double now)
{
    for (int i = 0; i < n; i++)
        auth_limits_record(al, &conf, ip, user, 0, now);
}

int main(void)
{
    conf.auth_max_failures = 3;
    conf.auth_max_failures_address = 6;
    conf.auth_window = 900;
    conf.auth_block_time = 3600;
    conf.auth_delay_max = 8;
    double t = 1000;

    /* the pair is blocked; the account from elsewhere, and others from there, are not */
    struct auth_limits *al = auth_limits_new();
    CHECK(auth_limits_record(al, &conf, "192.0.2.1", "x@example.test", 0, t) == 1, "1s");
    CHECK(auth_limits_record(al, &conf, "192.0.2.1", "x@example.test", 0, t) == 2, "2s");
    CHECK(!auth_limits_blocked(al, &conf, "192.0.2.1", "x@example.test", t), "not yet");
    auth_limits_record(al, &conf, "192.0.2.1", "X@Example.TEST", 0, t);
    CHECK(auth_limits_blocked(al, &conf, "192.0.2.1", "x@example.test", t), "pair blocked");
    CHECK(!auth_limits_blocked(al, &conf, "192.0.2.2", "x@example.test", t),
          "the account from another address is not blocked");
    CHECK(!auth_limits_blocked(al, &conf, "192.0.2.1", "y@example.test", t),
          "another account from the address is not blocked");
    CHECK(auth_limits_blocked(al, &conf, "192.0.2.1", "x@example.test", t + 3599), "lasts");
    CHECK(!auth_limits_blocked(al, &conf, "192.0.2.1", "x@example.test", t + 3601), "ends");
    struct seen s = {0};
    auth_limits_each_block(al, t + 10, each, &s);
    CHECK(s.n == 1 && strcmp(s.last, "192.0.2.1 x@example.test 3 3590") == 0, "%d %s", s.n, s.last);

    /* the address is blocked after max_failures_address over any accounts */
    for (int i = 0; i < 6; i++) {
        char u[32];
        snprintf(u, sizeof u, "guess%d@example.test", i);
        auth_limits_record(al, &conf, "198.51.100.7", u, 0, t);
    }
    CHECK(auth_limits_blocked(al, &conf, "198.51.100.7", "x@example.test", t), "address");
    CHECK(!auth_limits_blocked(al, &conf, "198.51.100.8", "x@example.test", t), "neighbour");
    s = (struct seen){0};
    auth_limits_each_block(al, t, each, &s);
    CHECK(s.n == 2, "%d blocks", s.n);

    /* clear by address (with its pairs) and by account (in any case) */
    CHECK(auth_limits_clear(al, "198.51.100.7", t) == 1, "one block lifted");
    CHECK(!auth_limits_blocked(al, &conf, "198.51.100.7", "x@example.test", t), "cleared");
    fail_n(al, "192.0.2.9", "x@example.test", 3, t);
    CHECK(auth_limits_clear(al, "X@EXAMPLE.TEST", t) == 2, "both pairs of x lifted");
    CHECK(!auth_limits_blocked(al, &conf, "192.0.2.1", "x@example.test", t), "cleared");
    CHECK(!auth_limits_blocked(al, &conf, "192.0.2.9", "x@example.test", t), "cleared");
    CHECK(auth_limits_clear(al, "nobody@example.test", t) == 0, "nothing to lift");

    /* a good login forgets the pair's failures, not the address's */
    fail_n(al, "203.0.113.1", "z@example.test", 2, t);
    auth_limits_record(al, &conf, "203.0.113.1", "z@example.test", 1, t);
    fail_n(al, "203.0.113.1", "z@example.test", 2, t);
    CHECK(!auth_limits_blocked(al, &conf, "203.0.113.1", "z@example.test", t), "reset");
    fail_n(al, "203.0.113.1", "w@example.test", 2, t);
    CHECK(auth_limits_blocked(al, &conf, "203.0.113.1", "v@example.test", t),
          "6 failures from the address in all");

    /* the window: old failures no longer count */
    fail_n(al, "203.0.113.2", "z@example.test", 2, t);
    fail_n(al, "203.0.113.2", "z@example.test", 2, t + 901);
    CHECK(!auth_limits_blocked(al, &conf, "203.0.113.2", "z@example.test", t + 901), "window");

    /* IPv6: one /64 is one client; IPv4-mapped is IPv4 */
    auth_limits_record(al, &conf, "2001:db8:1:2::1", "x@example.test", 0, t);
    auth_limits_record(al, &conf, "2001:db8:1:2:ffff::2", "x@example.test", 0, t);
    auth_limits_record(al, &conf, "2001:db8:1:2::3", "x@example.test", 0, t);
    CHECK(auth_limits_blocked(al, &conf, "2001:db8:1:2::99", "x@example.test", t), "/64");
    CHECK(!auth_limits_blocked(al, &conf, "2001:db8:1:3::1", "x@example.test", t), "next /64");
    s = (struct seen){0};
    auth_limits_clear(al, "203.0.113.1", t);
    auth_limits_each_block(al, t, each, &s);
    CHECK(s.n == 1 && strcmp(s.last, "2001:db8:1:2::/64 x@example.test 3 3600") == 0, "%d %s", s.n,
          s.last);
    CHECK(auth_limits_clear(al, "2001:db8:1:2::/64", t) == 1, "clear by prefix");
    fail_n(al, "::ffff:192.0.2.77", "x@example.test", 3, t);
    CHECK(auth_limits_blocked(al, &conf, "192.0.2.77", "x@example.test", t), "mapped");
    CHECK(auth_limits_clear(al, "2001:db8:1:2::1", t) == 0, "gone already");
    auth_limits_free(al);

    /* the table is bounded; a client that keeps trying stays blocked (least recently
     * used go first) */
    al = auth_limits_new();
    fail_n(al, "192.0.2.200", "x@example.test", 3, t);
    for (int i = 0; i < 120000; i++) {
        char ip[64], u[32];
        snprintf(ip, sizeof ip, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        snprintf(u, sizeof u, "u%d", i);
        auth_limits_record(al, &conf, ip, u, 0, t);
        if (i % 1000 == 0) auth_limits_blocked(al, &conf, "192.0.2.200", "x@example.test", t);
    }
    CHECK(auth_limits_size(al) <= 100000, "%zu entries", auth_limits_size(al));
    CHECK(auth_limits_blocked(al, &conf, "192.0.2.200", "x@example.test", t), "still blocked");
    auth_limits_free(al);
    auth_limits_free(NULL);
    return check_summary();
}
