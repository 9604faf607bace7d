/* test_monitor.c: the pure parts of the blocklist monitor (egress/monitor.c,
 * egress/notify.c): the state machine of one (address, list) with its hold time,
 * delisting pages, the webhook's JSON and the report mail; and the webhook URL parser
 * (core/conf.c). */
#include "core/compat.h"

#include "core/core.h"
#include "egress/monitor.h"

#include "check.h"

enum { L = MONITOR_R_LISTED, C = MONITOR_R_CLEAR, R = MONITOR_R_REFUSED, E = MONITOR_R_ERROR };

/* A sequence of lookups (result at a time) and what each step returns and leaves. */
static const struct {
    const char *name;
    int hold;
    struct {
        int r;
        time_t now;
        int ret;
        enum monitor_state state;
    } steps[8];
} cases[] = {
    {"listed at once, clear only after hold",
     10,
     {{C, 100, 2, MONITOR_CLEAR},
      {L, 200, 1, MONITOR_LISTED},
      {L, 300, 0, MONITOR_LISTED},
      {C, 400, 0, MONITOR_LISTED},
      {C, 405, 0, MONITOR_LISTED},
      {C, 410, 1, MONITOR_CLEAR},
      {C, 500, 0, MONITOR_CLEAR}}},
    {"a listing in the hold time starts it over",
     10,
     {{L, 100, 1, MONITOR_LISTED},
      {C, 200, 0, MONITOR_LISTED},
      {L, 205, 0, MONITOR_LISTED},
      {C, 211, 0, MONITOR_LISTED},
      {C, 220, 0, MONITOR_LISTED},
      {C, 221, 1, MONITOR_CLEAR}}},
    {"hold 0: clear at the first unlisted lookup",
     0,
     {{L, 100, 1, MONITOR_LISTED}, {C, 101, 1, MONITOR_CLEAR}}},
    {"a refusal is unknown, never listed, and ends when the list answers",
     10,
     {{R, 100, 1, MONITOR_UNKNOWN},
      {R, 200, 0, MONITOR_UNKNOWN},
      {C, 300, 1, MONITOR_CLEAR},
      {R, 400, 1, MONITOR_UNKNOWN},
      {L, 500, 1, MONITOR_LISTED}}},
    {"a refusal never ends a listing, nor does an error",
     0,
     {{L, 100, 1, MONITOR_LISTED},
      {R, 200, 0, MONITOR_LISTED},
      {E, 300, 0, MONITOR_LISTED},
      {C, 400, 1, MONITOR_CLEAR}}},
    {"errors teach nothing",
     10,
     {{E, 100, 0, MONITOR_NONE}, {E, 200, 0, MONITOR_NONE}, {C, 300, 2, MONITOR_CLEAR}}},
};

static void test_step(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct monitor_track t = {0};
        for (size_t s = 0; s < 8 && cases[i].steps[s].now; s++) {
            int ret = monitor_step(&t, (enum monitor_result)cases[i].steps[s].r,
                                   cases[i].steps[s].now, cases[i].hold);
            CHECK(ret == cases[i].steps[s].ret && t.state == cases[i].steps[s].state,
                  "%s, step %zu: returned %d state %s", cases[i].name, s, ret,
                  monitor_state_name(t.state));
        }
    }
    /* a clear address counts from when it was first seen unlisted */
    struct monitor_track t = {0};
    monitor_step(&t, MONITOR_R_LISTED, 100, 30);
    monitor_step(&t, MONITOR_R_CLEAR, 150, 30);
    monitor_step(&t, MONITOR_R_CLEAR, 190, 30);
    CHECK(t.state == MONITOR_CLEAR && t.since == 150, "since %lld", (long long)t.since);
    for (int s = MONITOR_NONE; s <= MONITOR_UNKNOWN; s++)
        CHECK(monitor_state_parse(monitor_state_name((enum monitor_state)s)) == s, "state %d", s);
    CHECK(monitor_state_parse("gelistet") == -1, "unknown name");
}

static void test_delist(void)
{
    char out[200];
    CHECK(monitor_delist_url("https://x.test/q?ip=$ip&again=$ip", "x.test", "192.0.2.1", out,
                             sizeof out) == 0 &&
              strcmp(out, "https://x.test/q?ip=192.0.2.1&again=192.0.2.1") == 0,
          "%s", out);
    CHECK(monitor_delist_url(NULL, "bl.spamcop.net", "192.0.2.1", out, sizeof out) == 0 &&
              strcmp(out, "https://www.spamcop.net/bl.shtml?192.0.2.1") == 0,
          "%s", out);
    CHECK(monitor_delist_url(NULL, "zen.spamhaus.org", "2001:db8::1", out, sizeof out) == 0 &&
              strstr(out, "spamhaus.org") && strstr(out, "2001:db8::1"),
          "%s", out);
    CHECK(monitor_delist_url(NULL, "unheard-of.test", "192.0.2.1", out, sizeof out) == 0 &&
              out[0] == '\0',
          "%s", out);
    CHECK(monitor_delist_url("https://x.test/$ip", "x.test", "192.0.2.1", out, 12) == -1 &&
              strlen(out) < 12,
          "cut: %s", out);
    /* every list looked up by default has a page */
    char zones[512];
    str_copy(zones, monitor_default_lists, sizeof zones);
    for (char *z = zones, *sp; z && *z; z = sp ? sp + 1 : NULL) {
        sp = strchr(z, ' ');
        if (sp) *sp = '\0';
        CHECK(monitor_delist_url(NULL, z, "192.0.2.1", out, sizeof out) == 0 &&
                  strncmp(out, "https://", 8) == 0,
              "%s: %s", z, out);
    }
}

static const struct monitor_event ev = {
    .address = "192.0.2.10",
    .zone = "bl.example",
    .state = MONITOR_LISTED,
    .previous = MONITOR_CLEAR,
    .code = "127.0.0.2",
    .txt = "Listed \"for\" spam\\abuse",
    .delist_url = "https://bl.example/?ip=192.0.2.10",
    .since = 86400,
    .time = 86461,
};

static void test_json(void)
{
    char *j = monitor_event_json(&ev, "mx.example");
    CHECK(strcmp(j, "{\"event\": \"listed\", \"address\": \"192.0.2.10\", \"list\": "
                    "\"bl.example\", \"state\": \"listed\", \"previous\": \"clear\", "
                    "\"code\": \"127.0.0.2\", \"txt\": \"Listed \\\"for\\\" spam\\\\abuse\", "
                    "\"delist_url\": \"https://bl.example/?ip=192.0.2.10\", \"since\": "
                    "\"1970-01-02T00:00:00Z\", \"time\": \"1970-01-02T00:01:01Z\", \"host\": "
                    "\"mx.example\"}\n") == 0,
          "%s", j);
    free(j);
    struct monitor_event ctl = ev;
    ctl.txt = "a\001b\n";
    j = monitor_event_json(&ctl, "mx.example");
    CHECK(strstr(j, "\"a\\u0001b\\u000a\"") != NULL, "%s", j);
    free(j);
}

static void test_mail(void)
{
    struct kconf c = {.hostname = "mx.example", .locale = "en"};
    size_t len;
    char *m = monitor_report_mail(&c, &ev, "postmaster@example.org", &len);
    CHECK(len == strlen(m), "length");
    CHECK(strstr(m, "Subject: [kurier] 192.0.2.10 is listed on bl.example\r\n") != NULL, "%s", m);
    CHECK(strstr(m, "To: <postmaster@example.org>\r\n") != NULL, "%s", m);
    CHECK(strstr(m, "X-Kurier-Monitor: listed 192.0.2.10 bl.example\r\n") != NULL, "%s", m);
    CHECK(strstr(m, "https://bl.example/?ip=3D192.0.2.10") != NULL, "quoted-printable: %s", m);
    for (const char *p = m; *p; p++)
        CHECK((unsigned char)*p < 0x80, "8-bit byte in %s", m);
    free(m);
    c.locale = "de";
    m = monitor_report_mail(&c, &ev, "postmaster@example.org", &len);
    CHECK(strstr(m, "Subject: [kurier] 192.0.2.10 steht auf der Sperrliste bl.example\r\n") != NULL,
          "%s", m);
    CHECK(strstr(m, "Content-Language: de") != NULL && strstr(m, "Empf=C3=A4nger") != NULL, "%s",
          m);
    free(m);
}

static void test_url(void)
{
    static const struct {
        const char *url;
        int ok, tls;
        const char *host;
        int port;
        const char *path;
    } urls[] = {
        {"http://127.0.0.1:8080/hook/x?a=b", 1, 0, "127.0.0.1", 8080, "/hook/x?a=b"},
        {"http://hooks.example", 1, 0, "hooks.example", 80, "/"},
        {"http://[::1]:81/p", 1, 0, "::1", 81, "/p"},
        {"http://[::1]/p", 1, 0, "::1", 80, "/p"},
        {"https://hooks.example/T0k/en", 1, 1, "hooks.example", 443, "/T0k/en"},
        {"https://hooks.example:8443", 1, 1, "hooks.example", 8443, "/"},
        {"ftp://hooks.example/", 0, 0, "", 0, ""},
        {"http://", 0, 0, "", 0, ""},
        {"http://h.example:99999/", 0, 0, "", 0, ""},
        {"http://h.example/a b", 0, 0, "", 0, ""},
        {"http://h ex/", 0, 0, "", 0, ""},
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        char host[256] = "", path[256] = "", why[300] = "";
        int port = 0, tls = -1;
        int r = conf_url_parse(urls[i].url, &tls, host, sizeof host, &port, path, sizeof path, why,
                               sizeof why);
        if (urls[i].ok)
            CHECK(r == 0 && tls == urls[i].tls && strcmp(host, urls[i].host) == 0 &&
                      port == urls[i].port && strcmp(path, urls[i].path) == 0,
                  "%s: %d %s %d %s (%s)", urls[i].url, r, host, port, path, why);
        else
            CHECK(r == -1 && why[0], "%s: accepted", urls[i].url);
    }
}

int main(void)
{
    test_step();
    test_delist();
    test_json();
    test_mail();
    test_url();
    return check_summary();
}
