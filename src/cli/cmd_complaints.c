/* cmd_complaints.c: "kurier complaints list [--account A]": the abuse complaints that
 * came in (abuse/complaints.c), from the directory database. */
#include "core/compat.h"

#include <time.h>

#include "cli/cli.h"
#include "core/core.h"
#include "store/store.h"

static int usage(void)
{
    fprintf(stderr, "usage: kurier complaints list [--account ADDRESS] [--json]\n"
                    "  the complaints (ARF, SpamCop reports) that came in, oldest first:\n"
                    "  time, the account they were matched to (\"-\": none), the format,\n"
                    "  the feedback type, our queue ID and Message-ID of the reported\n"
                    "  message, the source IP, the reporter, and the report's own queue ID.\n");
    return 2;
}

static void show_json(const struct store_complaint *c)
{
    struct cli_json j;
    cli_json_begin(&j);
    cli_json_time(&j, "time", c->time);
    cli_json_str(&j, "account", *c->account ? c->account : NULL);
    cli_json_str(&j, "format", c->format);
    cli_json_str(&j, "feedback_type", *c->feedback_type ? c->feedback_type : NULL);
    cli_json_str(&j, "queue_id", *c->queue_id ? c->queue_id : NULL);
    cli_json_str(&j, "message_id", *c->message_id ? c->message_id : NULL);
    cli_json_str(&j, "source_ip", *c->source_ip ? c->source_ip : NULL);
    cli_json_str(&j, "reporter", *c->reporter ? c->reporter : NULL);
    cli_json_str(&j, "report", c->report_id);
    cli_json_end(&j);
}

static int json_out;

static void show(void *arg, const struct store_complaint *c)
{
    int *n = arg;
    if (json_out) {
        show_json(c);
        (*n)++;
        return;
    }
    char when[32];
    time_t t = (time_t)c->time;
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", gmtime_r(&t, &tm));
    printf("%s  %s  %s  type=%s  queue_id=%s  message_id=%s  source_ip=%s  reporter=%s  "
           "report=%s\n",
           when, *c->account ? c->account : "-", c->format,
           *c->feedback_type ? c->feedback_type : "-", *c->queue_id ? c->queue_id : "-",
           *c->message_id ? c->message_id : "-", *c->source_ip ? c->source_ip : "-",
           *c->reporter ? c->reporter : "-", c->report_id);
    (*n)++;
}

int cmd_complaints(int argc, char **argv)
{
    json_out = cli_json_flag(&argc, argv);
    if (argc < 2 || strcmp(argv[1], "list") != 0) return usage();
    const char *account = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--account") == 0 && i + 1 < argc && !account)
            account = argv[++i];
        else
            return usage();
    }
    struct cli_dir d;
    if (cli_dir_open(&d) != 0) return 1;
    int n = 0, rc = 0;
    if (store_complaint_list(d.st, account, show, &n) != 0)
        rc = cli_fail("cannot list complaints: database error");
    else if (n == 0 && !json_out)
        printf("no complaints%s%s\n", account ? " for " : "", account ? account : "");
    cli_dir_close(&d);
    return rc;
}
