/* json.c: the one JSON writer of the kurier command's --json outputs: an object (or
 * one per line for lists) built in a buffer and printed whole. Field names are the
 * stable interface documented in docs/json.md; the values come from each command. */
#include "core/compat.h"

#include <time.h>

#include "cli/cli.h"
#include "core/core.h"

static void sep(struct cli_json *j, const char *key)
{
    if (j->depth > 0 && j->n[j->depth - 1]++ > 0) buf_puts(&j->b, ",");
    if (key) {
        buf_json_str(&j->b, key);
        buf_puts(&j->b, ":");
    }
}

static void json_open(struct cli_json *j, const char *key, const char *bracket)
{
    sep(j, key);
    buf_puts(&j->b, bracket);
    if (j->depth >= CLI_JSON_DEPTH) abort(); /* a programming error */
    j->close[j->depth] = bracket[0] == '{' ? '}' : ']';
    j->n[j->depth++] = 0;
}

void cli_json_begin(struct cli_json *j)
{
    buf_init(&j->b, 0);
    j->depth = 0;
    json_open(j, NULL, "{");
}

void cli_json_object(struct cli_json *j, const char *key)
{
    json_open(j, key, "{");
}

void cli_json_array(struct cli_json *j, const char *key)
{
    json_open(j, key, "[");
}

void cli_json_close(struct cli_json *j)
{
    if (j->depth == 0) abort();
    j->depth--;
    buf_append(&j->b, &j->close[j->depth], 1);
}

void cli_json_str(struct cli_json *j, const char *key, const char *val)
{
    sep(j, key);
    buf_json_str(&j->b, val);
}

void cli_json_int(struct cli_json *j, const char *key, long long val)
{
    sep(j, key);
    buf_printf(&j->b, "%lld", val);
}

void cli_json_bool(struct cli_json *j, const char *key, int val)
{
    sep(j, key);
    buf_puts(&j->b, val ? "true" : "false");
}

void cli_json_time(struct cli_json *j, const char *key, long long t)
{
    if (t <= 0) {
        cli_json_str(j, key, NULL);
        return;
    }
    char s[32];
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    if (strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) s[0] = '\0';
    cli_json_str(j, key, s);
}

void cli_json_end(struct cli_json *j)
{
    while (j->depth > 0)
        cli_json_close(j);
    buf_puts(&j->b, "\n");
    fwrite(j->b.data, 1, j->b.len, stdout);
    buf_release(&j->b);
}

int cli_json_flag(int *argc, char **argv)
{
    int found = 0, k = 0;
    for (int i = 0; i < *argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            found = 1;
        else
            argv[k++] = argv[i];
    }
    *argc = k;
    argv[k] = NULL;
    return found;
}
