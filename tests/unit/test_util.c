/* test_util.c: ip_parse() for IP literals, and err_set(), the formatter behind every
 * (err, errsize) pair, and path_relative(). */
#include "core/compat.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "check.h"
#include "core/core.h"

static void test_ip_parse(void)
{
    static const struct {
        const char *in;
        int family; /* 0: not an IP literal */
    } cases[] = {
        {"192.0.2.1", AF_INET},
        {"127.0.0.5", AF_INET},
        {"2001:db8::1", AF_INET6},
        {"::1", AF_INET6},
        {"::ffff:192.0.2.1", AF_INET6},
        {"", 0},
        {"192.0.2", 0},
        {"192.0.2.256", 0},
        {"[2001:db8::1]", 0},
        {"mx.example.org", 0},
        {"192.0.2.1:25", 0},
        {" 192.0.2.1", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0xAA, sizeof ss);
        socklen_t len = 7;
        int r = ip_parse(cases[i].in, &ss, &len);
        if (!cases[i].family) {
            CHECK(r == -1, "\"%s\": got %d, want -1", cases[i].in, r);
            CHECK(len == 7, "\"%s\": len changed to %u", cases[i].in, (unsigned)len);
            continue;
        }
        CHECK(r == 0, "\"%s\": got %d, want 0", cases[i].in, r);
        CHECK(ss.ss_family == cases[i].family, "\"%s\": family %d", cases[i].in, ss.ss_family);
        char back[INET6_ADDRSTRLEN] = "";
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *v4 = (const struct sockaddr_in *)&ss;
            CHECK(len == sizeof *v4 && v4->sin_port == 0, "\"%s\": len %u port %u", cases[i].in,
                  (unsigned)len, v4->sin_port);
            inet_ntop(AF_INET, &v4->sin_addr, back, sizeof back);
        } else {
            const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&ss;
            CHECK(len == sizeof *v6 && v6->sin6_port == 0 && v6->sin6_flowinfo == 0 &&
                      v6->sin6_scope_id == 0,
                  "\"%s\": len %u, not zeroed", cases[i].in, (unsigned)len);
            inet_ntop(AF_INET6, &v6->sin6_addr, back, sizeof back);
        }
        CHECK(strcmp(back, cases[i].in) == 0, "\"%s\": reads back as \"%s\"", cases[i].in, back);
    }
    /* len is optional */
    struct sockaddr_storage ss;
    CHECK(ip_parse("192.0.2.1", &ss, NULL) == 0, "NULL len refused");
}

/* The way from kurierd's working folder (its state_dir) to every configured path. */
static void test_path_relative(void)
{
    static const struct {
        const char *base, *path, *want;
    } cases[] = {
        {"/a/b/var", "/a/b/var/spool", "spool"},
        {"/a/b/var", "/a/b/var", "."},
        {"/a/b/var", "/a/b/etc/k.conf", "../etc/k.conf"},
        {"/a/b/var", "/a/b", ".."},
        {"/a/b/var", "/a", "../.."},
        {"/a/b/var", "/a/bc/x", "../../bc/x"},
        {"/a/b/var", "/a/b/variant/x", "../variant/x"},
        {"/a/b/var", "/etc/k.conf", "/etc/k.conf"}, /* only "/" in common */
        {"/", "/x", "/x"},
        {"/a/b", "/a/b/c/d", "c/d"},
        {"/root/kurier/var", "/root/kurier/var/tls/*.pem", "tls/*.pem"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *r = path_relative(cases[i].base, cases[i].path);
        CHECK(strcmp(r, cases[i].want) == 0, "(%s, %s): got \"%s\", want \"%s\"", cases[i].base,
              cases[i].path, r, cases[i].want);
        free(r);
    }
}

int main(void)
{
    test_ip_parse();
    test_path_relative();
    static const struct {
        size_t size; /* buffer bytes offered */
        const char *want;
    } cases[] = {
        {64, "no such domain example.org"},
        {27, "no such domain example.org"},
        {10, "no such d"}, /* cut, still terminated */
        {1, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[65]; /* one spare byte to see an overrun */
        memset(buf, 'x', sizeof buf);
        err_set(buf, cases[i].size, "no such %s %s", "domain", "example.org");
        CHECK(strcmp(buf, cases[i].want) == 0, "size %zu: got \"%s\", want \"%s\"", cases[i].size,
              buf, cases[i].want);
        CHECK(buf[cases[i].size] == 'x', "size %zu: wrote past the buffer", cases[i].size);
    }

    /* NULL buffer or size 0: nothing written, nothing crashes. */
    err_set(NULL, 64, "ignored %d", 1);
    char untouched[4] = "abc";
    err_set(untouched, 0, "ignored %d", 2);
    CHECK(strcmp(untouched, "abc") == 0, "size 0 wrote \"%s\"", untouched);
    return check_summary();
}
