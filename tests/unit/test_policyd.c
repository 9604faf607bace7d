/* test_policyd.c: the pure parts of policy delegation (src/policy/policyd.c): a policy
 * server's reply (attribute lines closed by an empty line), its action as a verdict
 * (Postfix's access(5) actions), and policy_service addresses (conf_net.c). */
#include "core/compat.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "check.h"
#include "core/conf.h"
#include "policy/policy.h"

static void test_reply(void)
{
    static const struct {
        const char *in;
        long want; /* -2: strlen(in) */
        const char *action;
    } cases[] = {
        {"action=DUNNO\n\n", -2, "DUNNO"},
        {"action=DUNNO\r\n\r\n", -2, "DUNNO"},
        {"foo=bar\naction=REJECT no way\nbaz=\n\n", -2, "REJECT no way"},
        {"action=OK\naction=REJECT\n\n", -2, "OK"},   /* the first one counts */
        {"action=OK\n\naction=REJECT\n\n", 11, "OK"}, /* one reply at a time */
        {"action=\n\n", -2, ""},
        {"action=DUNNO\n", 0, NULL},
        {"action=DUN", 0, NULL},
        {"", 0, NULL},
        {"\n", -1, NULL},            /* no action */
        {"foo=bar\n\n", -1, NULL},   /* no action */
        {"garbage\n\n", -1, NULL},   /* a line without '=' */
        {"=DUNNO\n\n", -1, NULL},    /* no name */
        {"ACTION=OK\n\n", -1, NULL}, /* names are case-sensitive */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char action[64] = "x";
        long want = cases[i].want == -2 ? (long)strlen(cases[i].in) : cases[i].want;
        long got = policy_policyd_reply(cases[i].in, strlen(cases[i].in), action, sizeof action);
        CHECK(got == want, "reply %zu: %ld, want %ld", i, got, want);
        if (got > 0 && cases[i].action)
            CHECK(strcmp(action, cases[i].action) == 0, "reply %zu: action \"%s\"", i, action);
    }
    /* a NUL byte is refused; a long action is cut */
    CHECK(policy_policyd_reply("action=O\0K\n\n", 12, (char[8]){0}, 8) == -1, "NUL");
    char small[5];
    CHECK(policy_policyd_reply("action=REJECT\n\n", 15, small, sizeof small) == 15 &&
              strcmp(small, "REJE") == 0,
          "cut: %s", small);
}

static void test_action(void)
{
    static const struct {
        const char *in;
        int rc;
        enum policy_kind kind;
        int code;
        const char *enh, *text;
    } cases[] = {
        {"OK", 0, POLICY_ACCEPT, 0, "", ""},
        {"ok", 0, POLICY_ACCEPT, 0, "", ""},
        {"250", 0, POLICY_ACCEPT, 0, "", ""}, /* access(5): all-numerical is OK */
        {"DUNNO", 0, POLICY_PASS, 0, "", ""},
        {"WARN odd", 0, POLICY_PASS, 0, "", ""},
        {"PREPEND X-Greylist: delayed", 0, POLICY_PASS, 0, "", ""},
        {"DEFER_IF_REJECT x", 0, POLICY_PASS, 0, "", ""},
        {"REJECT", 0, POLICY_REJECT, 554, "5.7.1", "Access denied"},
        {"REJECT go away", 0, POLICY_REJECT, 554, "5.7.1", "go away"},
        {"reject\t 5.7.0  go\x01\x02 away ", 0, POLICY_REJECT, 554, "5.7.0", "go away"},
        {"REJECT 4.7.0 wrong class", 0, POLICY_REJECT, 554, "5.7.0", "wrong class"},
        {"DEFER", 0, POLICY_TEMPFAIL, 450, "4.7.1", "Try again later"},
        {"DEFER_IF_PERMIT 4.2.0 Greylisted, see x", 0, POLICY_GREYLIST, 450, "4.2.0",
         "Greylisted, see x"},
        {"550 5.1.1 no such user", 0, POLICY_REJECT, 550, "5.1.1", "no such user"},
        {"554 Rejected", 0, POLICY_REJECT, 554, "5.7.1", "Rejected"},
        {"451 4.3.0 later", 0, POLICY_TEMPFAIL, 451, "4.3.0", "later"},
        {"451 4.1234.5 later", 0, POLICY_TEMPFAIL, 451, "4.7.1", "4.1234.5 later"},
        {"HOLD look", 1, POLICY_PASS, 0, "", ""},
        {"DISCARD", 1, POLICY_PASS, 0, "", ""},
        {"REDIRECT a@b.example", 1, POLICY_PASS, 0, "", ""},
        {"FROBNICATE", -1, POLICY_PASS, 0, "", ""},
        {"250 ok then", -1, POLICY_PASS, 0, "", ""},
        {"600 x", -1, POLICY_PASS, 0, "", ""},
        {"", -1, POLICY_PASS, 0, "", ""},
        {"   ", -1, POLICY_PASS, 0, "", ""},
        {"OKAY", -1, POLICY_PASS, 0, "", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct policy_verdict v;
        int rc = policy_policyd_action(cases[i].in, &v);
        CHECK(rc == cases[i].rc, "action \"%s\": rc %d", cases[i].in, rc);
        if (rc != 0) continue;
        CHECK(v.kind == cases[i].kind && v.code == cases[i].code &&
                  strcmp(v.enh, cases[i].enh) == 0 && strcmp(v.text, cases[i].text) == 0,
              "action \"%s\": kind %d code %d enh \"%s\" text \"%s\"", cases[i].in, v.kind, v.code,
              v.enh, v.text);
        CHECK(strncmp(v.detail, "action=", 7) == 0, "detail \"%s\"", v.detail);
    }
}

static void test_service(void)
{
    static const struct {
        const char *in;
        int family; /* 0: refused */
        int port;
    } cases[] = {
        {"unix:/run/postgrey.sock", AF_UNIX, 0},
        {"inet:127.0.0.1:10023", AF_INET, 10023},
        {"127.0.0.1:10023", AF_INET, 10023},
        {"localhost:10023", AF_INET, 10023},
        {"[::1]:10023", AF_INET6, 10023},
        {"inet:[::1]:1", AF_INET6, 1},
        {"unix:relative.sock", 0, 0},
        {"unix:", 0, 0},
        {"127.0.0.1", 0, 0},
        {"127.0.0.1:0", 0, 0},
        {"127.0.0.1:65536", 0, 0},
        {"::1:10023", 0, 0},
        {"example.org:10023", 0, 0},
        {"", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sockaddr_storage sa;
        socklen_t salen = 0;
        char why[256] = "";
        int rc = conf_policy_service_parse(cases[i].in, &sa, &salen, why, sizeof why);
        if (!cases[i].family) {
            CHECK(rc == -1 && why[0], "service \"%s\" refused", cases[i].in);
            continue;
        }
        CHECK(rc == 0 && sa.ss_family == cases[i].family, "service \"%s\": %s", cases[i].in, why);
        if (rc == 0 && cases[i].port)
            CHECK(ntohs(((struct sockaddr_in *)&sa)->sin_port) == cases[i].port,
                  "service \"%s\" port", cases[i].in);
    }
}

int main(void)
{
    test_reply();
    test_action();
    test_service();
    return check_summary();
}
