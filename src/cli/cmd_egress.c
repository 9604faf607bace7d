/* cmd_egress.c: "kurier egress status [--json]" and "kurier egress bench|unbench
 * ADDRESS [--destination D] [--for DURATION] [--reason TEXT]": the egress addresses
 * and their benches, through the running daemon's control socket (its changes take
 * effect at once; benches are persisted by the daemon). docs/egress.md. */
#include "core/compat.h"

#include <arpa/inet.h>

#include "cli/cli.h"
#include "control/control.h"
#include "core/core.h"

static int usage(void)
{
    fprintf(stderr, "usage: kurier egress status [--json]\n"
                    "       kurier egress bench ADDRESS [--destination D] [--for DURATION] "
                    "[--reason TEXT]\n"
                    "       kurier egress unbench ADDRESS [--destination D]\n"
                    "D: an MX host or organisation (example.org), or * for every "
                    "destination; DURATION: 30m, 4h, 2d (default: until unbenched)\n");
    return 2;
}

/* "90", "30m", "4h", "2d", "1w", combined ("1h30m"); -1 when bad. */
static long long parse_duration(const char *s)
{
    long long total = 0;
    if (!*s) return -1;
    while (*s) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 0 || v > 10LL * 365 * 86400) return -1;
        long long mult = 1;
        switch (*end) {
        case 's':
            mult = 1;
            end++;
            break;
        case 'm':
            mult = 60;
            end++;
            break;
        case 'h':
            mult = 3600;
            end++;
            break;
        case 'd':
            mult = 86400;
            end++;
            break;
        case 'w':
            mult = 7 * 86400;
            end++;
            break;
        case '\0':
            break;
        default:
            return -1;
        }
        total += v * mult;
        s = end;
    }
    return total;
}

static int is_ip(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

static int daemon_fail(int r, const char *reply)
{
    return cli_fail("%s%s", reply, r < 0 ? " (benches are changed through the daemon)" : "");
}

int cmd_egress(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage();
        return 0;
    }
    if (argc < 2) return usage();
    char reply[1024];
    if (strcmp(argv[1], "status") == 0) {
        int json = argc == 3 && strcmp(argv[2], "--json") == 0;
        if (argc > 3 || (argc == 3 && !json)) return usage();
        struct kconf *conf = cli_load_conf();
        char *text;
        size_t len;
        int r = control_request_text(conf->control_socket,
                                     json ? "egress-status json" : "egress-status", &text, &len,
                                     reply, sizeof reply);
        conf_free(conf);
        if (r != 0) return daemon_fail(r, reply);
        fwrite(text, 1, len, stdout);
        free(text);
        return 0;
    }
    int bench = strcmp(argv[1], "bench") == 0;
    if (!bench && strcmp(argv[1], "unbench") != 0) return usage();
    if (argc < 3) return usage();
    const char *addr = argv[2], *dest = NULL, *reason = "benched by the admin";
    long long secs = 0;
    for (int i = 3; i < argc; i += 2) {
        if (i + 1 >= argc) return usage();
        if (strcmp(argv[i], "--destination") == 0) {
            dest = argv[i + 1];
        } else if (bench && strcmp(argv[i], "--for") == 0) {
            secs = parse_duration(argv[i + 1]);
            if (secs < 0)
                return cli_fail("invalid duration \"%s\" (e.g. 30m, 4h, 2d)", argv[i + 1]);
        } else if (bench && strcmp(argv[i], "--reason") == 0) {
            reason = argv[i + 1];
        } else {
            return usage();
        }
    }
    if (!is_ip(addr)) return cli_fail("not an IP address: %s", addr);
    if (dest &&
        (!*dest || strlen(dest) > 253 ||
         strspn(dest, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:*") !=
             strlen(dest)))
        return cli_fail("invalid destination \"%s\" (a host name, a domain or *)", dest);
    if (strpbrk(reason, "\r\n") || !*reason) return cli_fail("the reason must be one line of text");
    char req[1024];
    int n = bench ? snprintf(req, sizeof req, "egress-bench %s %s %lld %s", addr, dest ? dest : "*",
                             secs, reason)
                  : snprintf(req, sizeof req, "egress-unbench %s%s%s", addr, dest ? " " : "",
                             dest ? dest : "");
    if (n < 0 || n >= (int)sizeof req) return cli_fail("the reason is too long");
    struct kconf *conf = cli_load_conf();
    int r = control_request(conf->control_socket, req, reply, sizeof reply);
    conf_free(conf);
    if (r != 0) return daemon_fail(r, reply);
    printf("%s\n", reply + (strncmp(reply, "ok ", 3) == 0 ? 3 : 0));
    return 0;
}
