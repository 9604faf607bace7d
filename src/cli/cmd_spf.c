/* cmd_spf.c: "kurier spf check IP SENDER [--helo H]": one SPF evaluation (RFC 7208)
 * through kurier's own evaluator and resolver, as the daemon would run it. */
#include "core/compat.h"

#include <event2/event.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "dns/dns.h"
#include "policy/spf.h"

struct run {
    int done;
    struct event_base *base;
    int header; /* --header: print the Received-SPF: field too */
    const char *ip, *sender, *helo, *receiver;
};

static int usage(void)
{
    fprintf(stderr, "usage: kurier spf check IP SENDER [--helo NAME] [--receiver NAME]\n"
                    "           [--resolver IP[@PORT]] [--insecure DOMAIN]... [--timeout SEC]\n"
                    "  SENDER is the MAIL FROM address (\"\" for the null sender: then\n"
                    "  postmaster@HELO is checked). Prints the result (none, neutral, pass, fail,\n"
                    "  softfail, temperror, permerror), then \"explanation: TEXT\" (the domain's\n"
                    "  exp= text, for fail) or \"reason: TEXT\" (kurier's). Exit 0 when a result\n"
                    "  was found, 1 on errors.\n");
    return 2;
}

static void on_result(void *arg, enum spf_result r, const char *text, int from_exp)
{
    struct run *run = arg;
    size_t n = strlen(text);
    char *esc = xmalloc(4 * n + 1);
    log_escape(esc, 4 * n + 1, text, n);
    printf("%s\n%s: %s\n", spf_result_name(r), from_exp ? "explanation" : "reason", esc);
    free(esc);
    char hdr[2048];
    if (run->header && spf_received_header(hdr, sizeof hdr, r, text, run->receiver, run->ip,
                                           run->sender, run->helo) == 0)
        printf("%s\n", hdr);
    run->done = 1;
    event_base_loopbreak(run->base);
}

int cmd_spf(int argc, char **argv)
{
    const char *resolver = NULL, *helo = NULL, *receiver = NULL;
    const char *insecure[17] = {NULL};
    size_t ninsecure = 0;
    int timeout = 0, header = 0;
    const char *pos[3];
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (strcmp(a, "--resolver") == 0 && has_val) {
            resolver = argv[++i];
        } else if (strcmp(a, "--helo") == 0 && has_val) {
            helo = argv[++i];
        } else if (strcmp(a, "--receiver") == 0 && has_val) {
            receiver = argv[++i];
        } else if (strcmp(a, "--header") == 0) {
            header = 1;
        } else if (strcmp(a, "--insecure") == 0 && has_val) {
            if (ninsecure >= 16) return usage();
            insecure[ninsecure++] = argv[++i];
        } else if (strcmp(a, "--timeout") == 0 && has_val) {
            timeout = atoi(argv[++i]);
            if (timeout <= 0) return usage();
        } else if (a[0] == '-' && a[1]) {
            return usage();
        } else if (npos < 3) {
            pos[npos++] = a;
        } else {
            return usage();
        }
    }
    if (npos != 3 || strcmp(pos[0], "check") != 0) return usage();
    struct sockaddr_storage ss;
    if (ip_parse(pos[1], &ss, NULL) != 0) {
        fprintf(stderr, "kurier: \"%s\" is not an IP address\n", pos[1]);
        return 2;
    }
    const char *sender = pos[2];
    if ((!*sender || strcmp(sender, "<>") == 0) && (!helo || !*helo)) {
        fprintf(stderr, "kurier: the null sender needs --helo NAME\n");
        return 2;
    }
    if (strcmp(sender, "<>") == 0) sender = "";

    char *conf_res = resolver ? NULL : cli_conf_resolver();
    struct event_base *base = event_base_new();
    if (!base) {
        free(conf_res);
        return cli_fail("cannot create the event loop");
    }
    char err[256];
    struct dns *d = dns_new(base, resolver ? resolver : conf_res, NULL, ninsecure ? insecure : NULL,
                            err, sizeof err);
    free(conf_res);
    if (!d) {
        event_base_free(base);
        return cli_fail("%s", err);
    }
    if (timeout) dns_set_timeout(d, timeout);
    struct run run = {.done = 0,
                      .base = base,
                      .header = header,
                      .ip = pos[1],
                      .sender = sender,
                      .helo = helo ? helo : "",
                      .receiver = receiver ? receiver : "unknown"};
    struct spf_check *c =
        spf_check_start(base, d, (struct sockaddr *)&ss, sender, helo, receiver, on_result, &run);
    while (!run.done)
        if (event_base_loop(base, EVLOOP_ONCE) < 0) break;
    if (!run.done) spf_check_cancel(c);
    dns_free(d);
    event_base_free(base);
    if (fflush(stdout) != 0) return 1;
    return run.done ? 0 : 1;
}
