/* test_conf.c: kurier.conf parser and loader: values and units, defaults, listeners,
 * networks, includes, exact error messages, dump re-parsing, conf_net_match, path
 * settings (conf_map_paths, conf_set_start_dir), reference counts (conf_ref,
 * conf_unref). */
#include "core/compat.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

#include "check.h"

static char cwd[4096];

static void write_file(const char *path, const char *text)
{
    char *slash = strrchr(path, '/');
    if (slash) {
        char *dir = xstrndup(path, (size_t)(slash - path));
        mkdir_p(dir, 0755);
        free(dir);
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static char *dump_str(const struct kconf *c)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    conf_dump(c, f);
    fclose(f);
    /* drop the first line: it names the file */
    char *nl = strchr(s, '\n');
    char *r = xstrdup(nl ? nl + 1 : s);
    free(s);
    return r;
}

static char *errs_str(const struct conf_errors *e)
{
    struct buf b;
    buf_init(&b, 0);
    for (size_t i = 0; i < e->n; i++)
        buf_printf(&b, "%s%s", i ? "\n" : "", e->msgs[i]);
    return buf_take(&b);
}

static struct kconf *load_text(const char *text, struct conf_errors *errs)
{
    write_file("t.conf", text);
    return conf_load("t.conf", errs);
}

/* --- good configs: each expected line must appear in the dump ---------------- */

static const struct {
    const char *text;
    const char *lines; /* "\n"-separated lines expected in conf_dump output */
} good[] = {
    {"", "user \"kurier\";\nstate_dir \"/var/lib/kurier\";\nspool_dir \"/var/lib/kurier/spool\";\n"
         "directory \"/var/lib/kurier/kurier.db\";\n"
         "control_socket \"/var/lib/kurier/control.sock\";\nmaildir_root \"/var/mail/vhosts\";\n"
         "locale en;\nworkers 4;\n    target stderr;\n    name \"kurier\";\n    level info;\n"
         "    debug \"\";\n    line_length 512;\n    message_size 50M;\n    recipients 1000;\n"
         "    errors 20;\n    command_timeout 5m;\n    data_timeout 10m;\n"
         "    connections 1000;\n    connections_per_ip 20;\n    hop_count 50;\n"
         "    shutdown_grace 30s;\n    retry_first 5m;\n    retry_backoff 2;\n"
         "    retry_max 4h;\n    lifetime 5d;\n    delay_warning 4h;\n    maildrop_scan 5s;\n"
         "    # trusted_networks (not set)"},
    {"hostname mx.example.test; state_dir /srv/k; spool_dir /q;",
     "hostname \"mx.example.test\";\nspool_dir \"/q\";\ndirectory \"/srv/k/kurier.db\";"},
    {"limits { message_size 10M; line_length 1k; command_timeout 90; data_timeout 1h30m; }",
     "    message_size 10M;\n    line_length 1K;\n    command_timeout 90s;\n"
     "    data_timeout 90m;"},
    {"limits { message_size 1500000; }\nqueue { lifetime 2d; retry_max 1w; delay_warning 0; "
     "retry_backoff 1.5; }",
     "    message_size 1500000;\n    lifetime 2d;\n    retry_max 7d;\n    delay_warning 0;\n"
     "    retry_backoff 1.5;"},
    {"log { target syslog; level debug; debug 'smtp,queue'; name \"k u\"; }",
     "    target syslog;\n    level debug;\n    debug \"smtp,queue\";\n    name \"k u\";"},
    {"log { name \"a\\\"b\\\\c\"; }", "    name \"a\\\"b\\\\c\";"},
    {"# comment only\nlocale de; # trailing\nworkers 16;", "locale de;\nworkers 16;"},
    {"relay { trusted_networks 127.0.0.0/8 ::1; trusted_networks 10.1.2.3/8 2001:db8::/32; }",
     "    trusted_networks 127.0.0.0/8 ::1/128 10.0.0.0/8 2001:db8::/32;"},
    {"listen 127.0.0.1:2525 { role mx; }",
     "listen \"127.0.0.1:2525\" {\n    role mx;\n    tls none;\n    # cert (not set)\n"
     "    auth off;\n    auth_plaintext off;\n    require_auth off;"},
    {"listen 587 { role submission; tls starttls; cert /c.pem; key /k.pem; }",
     "listen \"587\" {\n    role submission;\n    tls starttls;\n    cert \"/c.pem\";\n"
     "    key \"/k.pem\";\n    auth on;\n    auth_plaintext off;\n    require_auth on;"},
    {"listen [::1]:2465 { role submission; tls implicit; cert /c; key /k; require_auth off; "
     "auth_plaintext yes; }",
     "    tls implicit;\n    auth on;\n    auth_plaintext on;\n    require_auth off;"},
    {"listen *:25 { auth on; }", "listen \"*:25\" {\n    role mx;\n    tls none;"},
    {"limits{recipients 100;}queue{retry_first 1s;}", "    recipients 100;\n    retry_first 1s;"},
};

static void test_good(void)
{
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct conf_errors errs = {0};
        struct kconf *c = load_text(good[i].text, &errs);
        if (!c) {
            char *e = errs_str(&errs);
            CHECK(0, "good[%zu] failed to load: %s", i, e);
            free(e);
            conf_errors_free(&errs);
            continue;
        }
        char *d = dump_str(c);
        char *want = xstrdup(good[i].lines);
        for (char *line = want, *next; line; line = next) {
            next = strchr(line, '\n');
            if (next) *next++ = '\0';
            char *pat = xasprintf("\n%s\n", line);
            char *hay = xasprintf("\n%s", d);
            CHECK(strstr(hay, pat) != NULL, "good[%zu]: line \"%s\" not in dump", i, line);
            free(pat);
            free(hay);
        }
        free(want);

        /* dump re-parses to the same configuration */
        write_file("dump.conf", d);
        struct kconf *c2 = conf_load("dump.conf", &errs);
        if (!c2) {
            char *e = errs_str(&errs);
            CHECK(0, "good[%zu]: dump does not re-parse: %s", i, e);
            free(e);
        } else {
            char *d2 = dump_str(c2);
            CHECK(strcmp(d, d2) == 0, "good[%zu]: dump differs after re-parse", i);
            CHECK(c2->message_size == c->message_size && c2->lifetime == c->lifetime &&
                      c2->ntrusted == c->ntrusted && c2->retry_backoff == c->retry_backoff,
                  "good[%zu]: values differ after re-parse", i);
            free(d2);
            conf_free(c2);
        }
        free(d);
        conf_free(c);
        conf_errors_free(&errs);
    }
}

/* --- values in the struct -------------------------------------------------- */

static void test_values(void)
{
    struct conf_errors errs = {0};
    struct kconf *c = load_text("state_dir ./var; maildir_root var/../mail/;\n"
                                "limits { message_size 2G; line_length 64K; }\n"
                                "queue { retry_first 5m; retry_max 4h; lifetime 5d; }\n"
                                "log { level warn; }\n"
                                "listen 127.0.0.1:2525 { role mx; }\n"
                                "listen [::1]:2587 { role submission; tls starttls; cert c; "
                                "key k; }\n"
                                "listen 25;\n",
                                &errs);
    CHECK(c != NULL, "values: load failed");
    if (!c) {
        conf_errors_free(&errs);
        return;
    }
    char *want = xasprintf("%s/var", cwd);
    CHECK(strcmp(c->state_dir, want) == 0, "state_dir %s", c->state_dir);
    free(want);
    want = xasprintf("%s/var/spool", cwd);
    CHECK(strcmp(c->spool_dir, want) == 0, "spool_dir %s", c->spool_dir);
    free(want);
    want = xasprintf("%s/mail", cwd);
    CHECK(strcmp(c->maildir_root, want) == 0, "maildir_root %s", c->maildir_root);
    free(want);
    CHECK(c->message_size == (size_t)2 << 30, "message_size %zu", c->message_size);
    CHECK(c->line_length == 65536, "line_length %zu", c->line_length);
    CHECK(c->retry_first == 300 && c->retry_max == 14400 && c->lifetime == 432000,
          "queue durations %d %d %d", c->retry_first, c->retry_max, c->lifetime);
    CHECK(c->retry_backoff == 2.0, "retry_backoff %g", c->retry_backoff);
    CHECK(c->log_level == LOG_LV_WARN, "log_level %d", c->log_level);
    CHECK(c->hostname && *c->hostname, "hostname defaults to gethostname()");
    const struct conf_listen *l = c->listeners;
    CHECK(l && strcmp(l->host, "127.0.0.1") == 0 && l->port == 2525 && l->role == LISTEN_MX &&
              !l->auth && !l->require_auth,
          "listener 1");
    l = l ? l->next : NULL;
    CHECK(l && strcmp(l->host, "::1") == 0 && l->port == 2587 && l->role == LISTEN_SUBMISSION &&
              l->tls == LISTEN_TLS_STARTTLS && l->auth && l->require_auth && l->tls_cert &&
              l->tls_cert[0] == '/',
          "listener 2");
    l = l ? l->next : NULL;
    CHECK(l && l->host[0] == '\0' && l->port == 25 && !l->next, "listener 3");
    conf_free(c);
    conf_errors_free(&errs);
}

/* --- errors: the exact messages -------------------------------------------------- */

static const struct {
    const char *text;
    const char *msgs; /* every error, "\n"-separated */
} bad[] = {
    {"hostnme x;", "t.conf:1:1: unknown key \"hostnme\" (did you mean \"hostname\"?)"},
    {"relay {\n  trusted_netwrks 10.0.0.0/8;\n}",
     "t.conf:2:3: unknown key \"trusted_netwrks\" in block \"relay\" (did you mean "
     "\"trusted_networks\"?)"},
    {"limits { retry_frist 5m; }",
     "t.conf:1:10: unknown key \"retry_frist\" in block \"limits\" (did you mean "
     "\"retry_first\" in block \"queue\"?)"},
    {"limits { retry_first 5m; }",
     "t.conf:1:10: key \"retry_first\" belongs in block \"queue\", not in block \"limits\""},
    {"level debug;", "t.conf:1:1: key \"level\" belongs in block \"log\", not at top level"},
    {"log { workers 3; }",
     "t.conf:1:7: key \"workers\" belongs at top level, not in block \"log\""},
    {"workers 0;\nworkers x;",
     "t.conf:1:1: value \"0\" for \"workers\" is out of range (1 to 256)\n"
     "t.conf:2:1: duplicate key \"workers\" (first set at t.conf:1:1)"},
    {"hostname \"mx example\";",
     "t.conf:1:1: invalid value \"mx example\" for \"hostname\": expected a host name like "
     "mx.example.org"},
    {"workers abc;", "t.conf:1:1: invalid value \"abc\" for \"workers\": expected an integer"},
    {"workers 99999999999999999999;",
     "t.conf:1:1: value \"99999999999999999999\" for \"workers\" is out of range (1 to 256)"},
    {"hostname mx.example\nuser kurier;",
     "t.conf:1:1: too many arguments for \"hostname\" (expected 1, got 3; is a \";\" missing "
     "before \"user\"?)"},
    {"workers;", "t.conf:1:1: missing argument for \"workers\""},
    {"workers 1 2;", "t.conf:1:1: too many arguments for \"workers\" (expected 1, got 2)"},
    {"limits { message_size 10X; }",
     "t.conf:1:10: invalid value \"10X\" for \"message_size\": expected a size like 512, 64K, "
     "50M or 1G"},
    {"limits { message_size 8G; }",
     "t.conf:1:10: value \"8G\" for \"message_size\" is out of range (1K to 4G)"},
    {"queue { lifetime 5x; }",
     "t.conf:1:9: invalid value \"5x\" for \"lifetime\": expected a duration like 30s, 5m, 4h "
     "or 5d"},
    {"queue { lifetime 1h30; }",
     "t.conf:1:9: invalid value \"1h30\" for \"lifetime\": expected a duration like 30s, 5m, 4h "
     "or 5d"},
    {"queue { lifetime 31d; }",
     "t.conf:1:9: value \"31d\" for \"lifetime\" is out of range (5s to 30d)"},
    {"queue { lifetime 4s; }",
     "t.conf:1:9: value \"4s\" for \"lifetime\" is out of range (5s to 30d)"},
    {"queue { lifetime 0; }",
     "t.conf:1:9: value \"0\" for \"lifetime\" is out of range (5s to 30d)"},
    {"queue { retry_backoff nan; }",
     "t.conf:1:9: invalid value \"nan\" for \"retry_backoff\": expected a number"},
    {"log { level loud; }",
     "t.conf:1:7: invalid value \"loud\" for \"level\": expected one of err|warn|info|debug"},
    {"locale fr;", "t.conf:1:1: invalid value \"fr\" for \"locale\": expected one of en|de"},
    {"listen 25 { auth maybe; }",
     "t.conf:1:13: invalid value \"maybe\" for \"auth\": expected on or off"},
    {"relay { trusted_networks 10.0.0.0/33; }",
     "t.conf:1:9: invalid network \"10.0.0.0/33\" for \"trusted_networks\": expected an "
     "address or CIDR like 192.0.2.0/24 or 2001:db8::/32"},
    {"relay { trusted_networks; }", "t.conf:1:9: missing argument for \"trusted_networks\""},
    {"hostname x", "t.conf:1:1: missing \";\" after \"hostname\" (found end of file)"},
    {"log {\n level info\n}", "t.conf:2:2: missing \";\" after \"level\" (found \"}\")"},
    {"log {\n level info;\n",
     "t.conf:1:5: unbalanced \"{\": block is not closed before end of file"},
    {"workers 2;\n}\n", "t.conf:2:1: unexpected \"}\""},
    {"hostname \"abc;\n", "t.conf:1:10: unterminated double-quoted string"},
    {"hostname 'abc\\';", "t.conf:1:10: unterminated single-quoted string"},
    {";", "t.conf:1:1: unexpected \";\""},
    {"{ workers 3; }", "t.conf:1:1: unexpected \"{\" (a block needs a name)"},
    {"a{b{c{d{e{f{g{h{i{j{k{l{m{n{o{p{q{r{}}}}}}}}}}}}}}}}}}",
     "t.conf:1:32: blocks nested too deeply (at most 16 levels)\n"
     "t.conf:1:1: unknown key \"a\""},
    {"log 1 { }", "t.conf:1:1: block \"log\" takes no arguments (write log { ... })"},
    {"log { queue { } }", "t.conf:1:7: block \"queue\" is not allowed in block \"log\""},
    {"workers 3 { x; }", "t.conf:1:1: key \"workers\" takes no block"},
    {"listen 127.0.0.1:2587 { tls starttls; }",
     "t.conf:1:1: listen \"127.0.0.1:2587\": tls starttls needs both \"cert\" and \"key\""},
    {"listen 465 { tls implicit; cert /c; }",
     "t.conf:1:1: listen \"465\": tls implicit needs both \"cert\" and \"key\""},
    {"listen 127.0.0.1:25;\nlisten 127.0.0.1:25 { role mx; }",
     "t.conf:2:1: duplicate listen address \"127.0.0.1:25\" (same as \"127.0.0.1:25\")"},
    {"listen ::1:25;",
     "t.conf:1:1: invalid listen address \"::1:25\": IPv6 addresses need brackets, as in "
     "[::1]:25"},
    {"listen host.example:25;",
     "t.conf:1:1: invalid listen address \"host.example:25\": \"host.example\" is not an IP "
     "address (use 192.0.2.1:25, [::1]:25 or *:25)"},
    {"listen 127.0.0.1:70000;",
     "t.conf:1:1: invalid listen address \"127.0.0.1:70000\": port must be a number from 1 to "
     "65535"},
    {"listen;", "t.conf:1:1: missing argument for \"listen\" (expected ADDRESS)"},
    {"listen 25 { require_auth on; }",
     "t.conf:1:1: listen \"25\": \"require_auth on\" needs \"auth on\""},
    {"listen 25 { rol mx; }",
     "t.conf:1:13: unknown key \"rol\" in block \"listen\" (did you mean \"role\"?)"},
    {"state_dir \"\";", "t.conf:1:1: empty path for \"state_dir\""},
    {"include missing.conf;",
     "t.conf:1:1: cannot read included file \"missing.conf\": No such file or directory"},
    {"include;", "t.conf:1:1: \"include\" takes one file name or pattern and no block"},
    {"workers 3;\nbogus 1;\nlocale xx;\nlimits { errors 0; }",
     "t.conf:2:1: unknown key \"bogus\"\n"
     "t.conf:3:1: invalid value \"xx\" for \"locale\": expected one of en|de\n"
     "t.conf:4:10: value \"0\" for \"errors\" is out of range (1 to 1000)"},
};

static void test_bad(void)
{
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct conf_errors errs = {0};
        struct kconf *c = load_text(bad[i].text, &errs);
        CHECK(c == NULL, "bad[%zu]: loaded although wrong", i);
        conf_free(c);
        char *got = errs_str(&errs);
        CHECK(strcmp(got, bad[i].msgs) == 0, "bad[%zu]:\n  want: %s\n  got:  %s", i, bad[i].msgs,
              got);
        free(got);
        conf_errors_free(&errs);
    }
    struct conf_errors errs = {0};
    CHECK(conf_load("does-not-exist.conf", &errs) == NULL && errs.n == 1 &&
              strcmp(errs.msgs[0], "does-not-exist.conf: cannot read: No such file or directory") ==
                  0,
          "missing main file: %s", errs.n ? errs.msgs[0] : "(none)");
    conf_errors_free(&errs);
}

/* --- the pure parser ------------------------------------------------------- */

static void test_parse(void)
{
    struct conf_errors errs = {0};
    const char *text = "a 1 \"two words\" 'x\\'y' \"tab\\there\";\n"
                       "  b {\n    c;\n    d \"\" e { f g; }\n  }\n";
    struct conf_node *t = conf_parse(text, strlen(text), "p.conf", &errs);
    CHECK(errs.n == 0, "parse: %zu errors", errs.n);
    CHECK(t && strcmp(t->name, "a") == 0 && t->nargs == 4 && strcmp(t->args[1], "two words") == 0 &&
              strcmp(t->args[2], "x'y") == 0 && strcmp(t->args[3], "tab\there") == 0 &&
              t->line == 1 && t->col == 1 && strcmp(t->file, "p.conf") == 0,
          "parse: node a");
    const struct conf_node *b = t ? t->next : NULL;
    CHECK(b && strcmp(b->name, "b") == 0 && b->line == 2 && b->col == 3 && b->nargs == 0 &&
              b->children,
          "parse: node b");
    const struct conf_node *c = b ? b->children : NULL;
    const struct conf_node *d = c ? c->next : NULL;
    CHECK(c && strcmp(c->name, "c") == 0 && c->line == 3 && c->col == 5, "parse: node c");
    CHECK(d && d->nargs == 2 && d->args[0][0] == '\0' && strcmp(d->args[1], "e") == 0 &&
              d->children && strcmp(d->children->name, "f") == 0 && !d->next,
          "parse: node d");
    conf_tree_free(t);

    /* embedded NUL and not NUL-terminated input */
    const char nul[] = {'a', ' ', 'b', '\0', 'c', ';', 'x'};
    t = conf_parse(nul, 6, "n.conf", &errs);
    CHECK(errs.n == 1 && strcmp(errs.msgs[0], "n.conf:1:4: unexpected NUL byte") == 0,
          "parse: NUL byte");
    conf_tree_free(t);
    conf_errors_free(&errs);

    t = conf_parse(NULL, 0, "e.conf", &errs);
    CHECK(t == NULL && errs.n == 0, "parse: empty input");

    /* too many arguments */
    struct buf big;
    buf_init(&big, 0);
    buf_puts(&big, "k");
    for (int i = 0; i < 70; i++)
        buf_puts(&big, " x");
    buf_puts(&big, ";");
    t = conf_parse(big.data, big.len, "m.conf", &errs);
    CHECK(errs.n == 1 && strcmp(errs.msgs[0], "m.conf:1:131: too many arguments for \"k\" (at "
                                              "most 64)") == 0,
          "parse: too many args: %s", errs.n ? errs.msgs[0] : "(none)");
    CHECK(t && t->nargs == 64, "parse: args kept");
    conf_tree_free(t);
    buf_release(&big);
    conf_errors_free(&errs);
}

/* --- includes ---------------------------------------------------------------- */

static void test_include(void)
{
    struct conf_errors errs = {0};
    write_file("inc/main.conf", "hostname a.example;\ninclude conf.d/*.conf;\n"
                                "limits { include limits.inc; }\ninclude none/*.conf;\n");
    write_file("inc/conf.d/10-log.conf", "log { level debug; }\n");
    write_file("inc/conf.d/20-listen.conf", "listen 2525;\nlisten 2526;\n");
    write_file("inc/limits.inc", "recipients 77;\n");
    struct kconf *c = conf_load("inc/main.conf", &errs);
    CHECK(c && c->log_level == LOG_LV_DEBUG && c->recipients == 77 && c->listeners &&
              c->listeners->port == 2525 && c->listeners->next && c->listeners->next->port == 2526,
          "include: values");
    conf_free(c);
    char *e = errs_str(&errs);
    CHECK(errs.n == 0, "include: errors: %s", e);
    free(e);
    conf_errors_free(&errs);

    /* an error inside an included file names that file */
    write_file("inc2/main.conf", "include sub.conf;\n");
    write_file("inc2/sub.conf", "\n  workers many;\n");
    c = conf_load("inc2/main.conf", &errs);
    e = errs_str(&errs);
    CHECK(!c && strcmp(e, "inc2/sub.conf:2:3: invalid value \"many\" for \"workers\": expected an "
                          "integer") == 0,
          "include: error position: %s", e);
    free(e);
    conf_errors_free(&errs);

    /* loops are reported, not followed forever */
    write_file("loop/a.conf", "include b.conf;\n");
    write_file("loop/b.conf", "workers 2;\ninclude a.conf;\n");
    c = conf_load("loop/a.conf", &errs);
    e = errs_str(&errs);
    CHECK(!c && strcmp(e, "loop/b.conf:2:1: include loop: \"loop/a.conf\" includes itself") == 0,
          "include: loop: %s", e);
    free(e);
    conf_errors_free(&errs);

    /* absolute include */
    char *abs = xasprintf("include \"%s/inc/limits.inc\";", cwd);
    c = load_text(abs, &errs);
    CHECK(c == NULL && errs.n == 1, "include: absolute path outside a block is an error");
    conf_free(c);
    conf_errors_free(&errs);
    free(abs);
    abs = xasprintf("limits { include \"%s/inc/limits.inc\"; }", cwd);
    c = load_text(abs, &errs);
    CHECK(c && c->recipients == 77, "include: absolute path");
    conf_free(c);
    conf_errors_free(&errs);
    free(abs);
}

/* --- networks ------------------------------------------------------------------- */

static const struct {
    const char *net, *addr;
    int want;
} nets[] = {
    {"127.0.0.0/8", "127.0.0.1", 1},
    {"127.0.0.0/8", "128.0.0.1", 0},
    {"127.0.0.0/8", "::ffff:127.1.2.3", 1},
    {"127.0.0.0/8", "::1", 0},
    {"192.0.2.7", "192.0.2.7", 1},
    {"192.0.2.7", "192.0.2.8", 0},
    {"192.0.2.0/25", "192.0.2.127", 1},
    {"192.0.2.0/25", "192.0.2.128", 0},
    {"0.0.0.0/0", "203.0.113.9", 1},
    {"0.0.0.0/0", "2001:db8::1", 0},
    {"::1", "::1", 1},
    {"::1", "::2", 0},
    {"::1", "127.0.0.1", 0},
    {"2001:db8::/32", "2001:db8:ffff::1", 1},
    {"2001:db8::/32", "2001:db9::1", 0},
    {"2001:db8::/33", "2001:db8:8000::1", 0},
    {"::/0", "10.0.0.1", 0},
    {"::ffff:10.0.0.0/104", "10.9.9.9", 1},
    {"10.1.2.3/8", "10.200.0.1", 1},
};

static const char *bad_nets[] = {"",  "/8",          "10.0.0.0/",   "10.0.0.0/33", "::/129",
                                 "x", "10.0.0.0/-1", "10.0.0.0/8x", "10.0.0",      "1.2.3.4/ 8"};

static void test_nets(void)
{
    for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++) {
        struct conf_net n;
        CHECK(conf_net_parse(nets[i].net, &n) == 0, "net parse %s", nets[i].net);
        struct sockaddr_storage ss = {0};
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, nets[i].addr, &s4->sin_addr) == 1)
            s4->sin_family = AF_INET;
        else if (inet_pton(AF_INET6, nets[i].addr, &s6->sin6_addr) == 1)
            s6->sin6_family = AF_INET6;
        int got = conf_net_match(&n, (struct sockaddr *)&ss);
        CHECK(got == nets[i].want, "net %s match %s: got %d", nets[i].net, nets[i].addr, got);
    }
    for (size_t i = 0; i < sizeof bad_nets / sizeof bad_nets[0]; i++) {
        struct conf_net n;
        CHECK(conf_net_parse(bad_nets[i], &n) == -1, "net \"%s\" should be refused", bad_nets[i]);
    }
}

static char *prefix_work(const char *path, void *arg)
{
    return strcmp(path, "/elsewhere") == 0 ? NULL : xasprintf("%s%s", (const char *)arg, path);
}

/* kurierd after it moved into its state folder: a reload resolves relative paths
 * against the folder it started in, and every path setting can be renamed. */
static void test_paths(void)
{
    struct conf_errors errs = {0};
    write_file("paths/k.conf", "state_dir ./var;\nmaildir_root /elsewhere;\n"
                               "outbound { ca_file ca.pem; }\n"
                               "listen 2587 { tls starttls; cert c.pem; key k.pem; }\n");
    conf_set_start_dir("/started/here");
    struct kconf *c = conf_load("paths/k.conf", &errs);
    conf_set_start_dir(NULL);
    CHECK(c && strcmp(c->state_dir, "/started/here/var") == 0 &&
              strcmp(c->listeners->tls_cert, "/started/here/c.pem") == 0,
          "start dir: %s", c ? c->state_dir : "(failed)");
    if (!c) return;
    conf_map_paths(c, prefix_work, "W:");
    CHECK(strcmp(c->state_dir, "W:/started/here/var") == 0 &&
              strcmp(c->spool_dir, "W:/started/here/var/spool") == 0 &&
              strcmp(c->directory, "W:/started/here/var/kurier.db") == 0 &&
              strcmp(c->control_socket, "W:/started/here/var/control.sock") == 0 &&
              strcmp(c->maildir_root, "/elsewhere") == 0 &&
              strcmp(c->out_ca_file, "W:/started/here/ca.pem") == 0 &&
              strcmp(c->listeners->tls_cert, "W:/started/here/c.pem") == 0 &&
              strcmp(c->listeners->tls_key, "W:/started/here/k.pem") == 0 &&
              c->listeners->sni_certs == NULL,
          "map paths: %s %s %s", c->state_dir, c->maildir_root, c->listeners->tls_key);
    conf_free(c);
    /* without a start dir: the current folder again */
    c = conf_load("paths/k.conf", &errs);
    char *want = xasprintf("%s/var", cwd);
    CHECK(c && strcmp(c->state_dir, want) == 0, "current folder: %s", c ? c->state_dir : "-");
    free(want);
    conf_free(c);
    conf_errors_free(&errs);
}

/* A loaded config lives until its last reference goes (ASan reports a leak or a use
 * after free otherwise); one filled by hand is not counted. */
static void test_refs(void)
{
    write_file("refs.conf", "hostname refs.example;\n");
    struct kconf *c = conf_load("refs.conf", NULL);
    CHECK(c != NULL, "load");
    if (!c) return;
    const struct kconf *session = conf_ref(c);
    CHECK(session == c, "conf_ref returns its argument");
    const struct kconf *job = conf_ref(c);
    conf_free(c); /* the loader's reference: the holders keep it */
    CHECK(strcmp(session->hostname, "refs.example") == 0, "alive after conf_free");
    conf_unref(session);
    CHECK(strcmp(job->hostname, "refs.example") == 0, "alive with one reference");
    conf_unref(job); /* the last one: freed */
    conf_unref(NULL);
    CHECK(conf_ref(NULL) == NULL, "conf_ref(NULL)");

    struct kconf hand;
    memset(&hand, 0, sizeof hand);
    hand.hostname = "hand.example";
    CHECK(conf_ref(&hand) == &hand, "hand-filled: conf_ref");
    conf_unref(&hand); /* not counted: never freed */
    conf_unref(&hand);
    CHECK(strcmp(hand.hostname, "hand.example") == 0, "hand-filled stays");
}

int main(void)
{
    char tmpl[] = "/tmp/test_conf.XXXXXX";
    if (!mkdtemp(tmpl) || chdir(tmpl) != 0 || !getcwd(cwd, sizeof cwd)) {
        perror("mkdtemp");
        return 2;
    }
    test_parse();
    test_good();
    test_values();
    test_bad();
    test_include();
    test_nets();
    test_paths();
    test_refs();
    char *cmd = xasprintf("rm -rf '%s'", tmpl);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", tmpl);
    free(cmd);
    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0;
}
