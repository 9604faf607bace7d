/* test_spf.c: SPF record syntax and macros (src/policy/spf_record.c), table-driven
 * with the examples of RFC 7208 7.4; and the evaluator's cancel rule (spf.c): a
 * check cancelled while its DNS query is in flight never calls back (a loopback UDP
 * socket that never answers stands in for the resolver). */
#include "core/compat.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <unistd.h>

#include "dns/dns.h"
#include "policy/spf.h"

#include "check.h"

static const struct {
    const char *rec;
    int ok;
} records[] = {
    {"v=spf1", 1},
    {"v=spf1 -all", 1},
    {"V=SPF1 +A -MX ~all", 1},
    {"v=spf1 a/24//64 mx:example.com/30 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all", 1},
    {"v=spf1 a:foo:bar/baz.example.com", 1},
    {"v=spf1 include:_spf.example.com exists:%{ir}.%{l1r+-}._spf.%{d} ?all", 1},
    {"v=spf1 redirect=_spf.example.com exp=explain._spf.%{d} foo=%{i}bar", 1},
    {"v=spf1 ptr ptr:example.com", 1},
    {"v=spf10", 0},
    {"v=spf1 -all redirect=a.example.com redirect=b.example.com", 0},
    {"v=spf1 exp=a.example.com exp=b.example.com", 0},
    {"v=spf1 foo:bar", 0},
    {"v=spf1 all:example.com", 0},
    {"v=spf1 ip4:192.0.2.1/33", 0},
    {"v=spf1 ip4:192.0.2.01", 0},
    {"v=spf1 ip6:2001:db8::/129", 0},
    {"v=spf1 a/024", 0},
    {"v=spf1 a:example", 0},
    {"v=spf1 a:example.123", 0},
    {"v=spf1 include", 0},
    {"v=spf1 exists:%{x}.example.com", 0},
    {"v=spf1 exists:%{d0}.example.com", 0},
    {"v=spf1 a:%{c}.example.com", 0},
    {"v=spf1 -redirect=x.example.com", 0},
    {"v=spf1 foo=%", 0},
    {"v=spf1 a:ex\xc3\xa4mple.com", 0},
};

/* RFC 7208 7.4, sender strong-bad@email.example.com from 192.0.2.3 / 2001:db8::cb01 */
static const struct {
    const char *spec;
    int v6, is_exp;
    const char *want; /* NULL: syntax error */
} macros[] = {
    {"%{s}", 0, 0, "strong-bad@email.example.com"},
    {"%{o}", 0, 0, "email.example.com"},
    {"%{d}", 0, 0, "email.example.com"},
    {"%{d4}", 0, 0, "email.example.com"},
    {"%{d3}", 0, 0, "email.example.com"},
    {"%{d2}", 0, 0, "example.com"},
    {"%{d1}", 0, 0, "com"},
    {"%{dr}", 0, 0, "com.example.email"},
    {"%{d2r}", 0, 0, "example.email"},
    {"%{l}", 0, 0, "strong-bad"},
    {"%{l-}", 0, 0, "strong.bad"},
    {"%{lr}", 0, 0, "strong-bad"},
    {"%{lr-}", 0, 0, "bad.strong"},
    {"%{l1r-}", 0, 0, "strong"},
    {"%{ir}.%{v}._spf.%{d2}", 0, 0, "3.2.0.192.in-addr._spf.example.com"},
    {"%{lr-}.lp._spf.%{d2}", 0, 0, "bad.strong.lp._spf.example.com"},
    {"%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", 0, 0, "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"},
    {"%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", 0, 0, "3.2.0.192.in-addr.strong.lp._spf.example.com"},
    {"%{d2}.trusted-domains.example.net", 0, 0, "example.com.trusted-domains.example.net"},
    {"%{ir}.%{v}._spf.%{d2}", 1, 0,
     "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com"},
    {"%%%_%-", 0, 0, "% %20"},
    {"%{S}", 0, 0, "strong-bad%40email.example.com"},
    {"%{c} via %{r}", 0, 1, "192.0.2.3 via mx.example.net"},
    {"%{c}", 1, 1, "2001:db8::cb01"},
    {"%{c}", 0, 0, NULL},
    {"%{p}", 0, 0, "unknown"},
    {"%", 0, 0, NULL},
    {"%{d", 0, 0, NULL},
};

static int cb_calls;
static void on_result(void *arg, enum spf_result r, const char *text, int from_exp)
{
    (void)arg;
    (void)r;
    (void)text;
    (void)from_exp;
    cb_calls++;
}

static void run_for(struct event_base *base, double seconds)
{
    struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (time_t)seconds) * 1e6)};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

int main(void)
{
    for (size_t i = 0; i < sizeof records / sizeof records[0]; i++) {
        struct spf_record rec;
        char err[200] = "";
        int r = spf_record_parse(records[i].rec, strlen(records[i].rec), &rec, err, sizeof err);
        CHECK((r == 0) == records[i].ok, "\"%s\": %d %s", records[i].rec, r, err);
        CHECK(r == 0 || err[0], "\"%s\": no error text", records[i].rec);
        spf_record_free(&rec);
    }
    /* a NUL inside a record is not its end: the record is bad */
    struct spf_record rec;
    char err[200];
    CHECK(spf_record_parse("v=spf1 -all\0 +all", 17, &rec, err, sizeof err) == -1, "NUL");

    struct spf_macro_env env;
    memset(&env, 0, sizeof env);
    env.sender = "strong-bad@email.example.com";
    env.local = "strong-bad";
    env.sender_domain = env.domain = "email.example.com";
    env.helo = "mx.example.org";
    env.receiver = "mx.example.net";
    for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++) {
        memset(&env.ip, 0, sizeof env.ip);
        if (macros[i].v6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&env.ip;
            s6->sin6_family = AF_INET6;
            inet_pton(AF_INET6, "2001:db8::cb01", &s6->sin6_addr);
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&env.ip;
            s4->sin_family = AF_INET;
            inet_pton(AF_INET, "192.0.2.3", &s4->sin_addr);
        }
        char out[512];
        int r = spf_macro_expand(macros[i].spec, strlen(macros[i].spec), &env, macros[i].is_exp, 0,
                                 out, sizeof out);
        if (macros[i].want)
            CHECK(r == 0 && strcmp(out, macros[i].want) == 0, "%s: %d \"%s\"", macros[i].spec, r,
                  out);
        else
            CHECK(r == -1, "%s: expanded to \"%s\"", macros[i].spec, out);
    }
    /* 7.3: a domain longer than 253 bytes loses labels on the left */
    char longspec[600], out[1024];
    size_t o = 0;
    for (int k = 0; k < 40; k++)
        o += (size_t)snprintf(longspec + o, sizeof longspec - o, "label%02d.", k);
    snprintf(longspec + o, sizeof longspec - o, "example.com");
    CHECK(spf_macro_expand(longspec, strlen(longspec), &env, 0, 1, out, sizeof out) == 0 &&
              strlen(out) <= 253 && strstr(out, "example.com") && strncmp(out, "label", 5) == 0,
          "truncation: %s", out);

    CHECK(spf_domain_ok("example.com") && !spf_domain_ok("example") &&
              !spf_domain_ok("a..example.com") && !spf_domain_ok("[192.0.2.1]"),
          "domain_ok");

    /* RFC 7208 9.1 header: peer text cannot break out of the comment or the field */
    char hdr[1024];
    CHECK(spf_received_header(hdr, sizeof hdr, SPF_FAIL, "bad (really)\r\nX-Evil: 1",
                              "mx.example.net", "192.0.2.3", "a\"b@example.com",
                              "h.example.com") == 0 &&
              strcmp(hdr, "Received-SPF: fail (mx.example.net: bad \\(really\\)X-Evil: 1)\r\n"
                          "\treceiver=mx.example.net; client-ip=192.0.2.3; "
                          "envelope-from=\"a\\\"b@example.com\"; helo=\"h.example.com\"; "
                          "identity=mailfrom") == 0,
          "header: %s", hdr);
    CHECK(spf_received_header(hdr, sizeof hdr, SPF_PASS, "ok", "mx", "2001:db8::1", "", "h") == 0 &&
              strstr(hdr, "Received-SPF: pass (") == hdr && strstr(hdr, "identity=helo") &&
              strstr(hdr, "envelope-from=\"\""),
          "header null sender: %s", hdr);
    CHECK(spf_received_header(hdr, 40, SPF_PASS, "ok", "mx", "192.0.2.3", "", "h") == -1,
          "too small");

    /* Cancel while the TXT query is in flight: no callback, nothing leaks (ASan). */
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
    struct dns *d = dns_new(base, fwd, NULL, NULL, err, sizeof err);
    CHECK(d != NULL, "dns_new: %s", err);
    if (!d) return check_summary();
    struct sockaddr_in client = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.0.2.3", &client.sin_addr);
    struct spf_check *c = spf_check_start(base, d, (struct sockaddr *)&client, "user@example.com",
                                          "mx.example.com", NULL, on_result, NULL);
    CHECK(c != NULL && cb_calls == 0, "no callback inside spf_check_start");
    run_for(base, 0.2);
    CHECK(cb_calls == 0, "no answer yet");
    spf_check_cancel(c);
    run_for(base, 0.3);
    CHECK(cb_calls == 0, "cancelled check called back");

    /* A result known without DNS still comes from the loop, and cancel before it
     * stops it too. */
    c = spf_check_start(base, d, (struct sockaddr *)&client, "user@localhost", "h", NULL, on_result,
                        NULL);
    CHECK(cb_calls == 0, "no callback inside spf_check_start (none)");
    spf_check_cancel(c);
    run_for(base, 0.1);
    CHECK(cb_calls == 0, "cancelled before the loop ran");
    c = spf_check_start(base, d, (struct sockaddr *)&client, "user@localhost", "h", NULL, on_result,
                        NULL);
    run_for(base, 0.1);
    CHECK(cb_calls == 1, "none for a domain without a dot: %d", cb_calls);

    dns_free(d);
    event_base_free(base);
    close(fd);
    return check_summary();
}
