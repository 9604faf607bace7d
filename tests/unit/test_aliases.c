/* test_aliases.c: the /etc/aliases parser (core/aliases.h): entries, continuation
 * lines, comments, quoting, case, and each refused form with its file:line. */
#include "core/compat.h"

#include "check.h"
#include "core/core.h"

static struct aliases *parse(const char *text, struct conf_errors *e)
{
    return aliases_parse("aliases", text, strlen(text), e);
}

/* errs holds one message containing want */
static int has_error(const struct conf_errors *e, const char *want)
{
    for (size_t i = 0; i < e->n; i++)
        if (strstr(e->msgs[i], want)) return 1;
    return 0;
}

static void test_good(void)
{
    struct conf_errors e = {0};
    struct aliases *a = parse("# comment\n"
                              "postmaster: root\n"
                              "\n"
                              "MAILER-DAEMON:postmaster\r\n"
                              "root: Admin@Example.ORG,\n"
                              "  ops , admin@example.org\n"
                              "\t# an indented comment\n"
                              "ops: \"ops team\"@example.org",
                              &e);
    CHECK(a && e.n == 0, "parsed (%zu errors: %s)", e.n, e.n ? e.msgs[0] : "");
    if (!a) return;
    CHECK(a->n == 4, "4 entries, got %zu", a->n);
    const struct alias_entry *r = aliases_find(a, "ROOT");
    CHECK(r && r->ntargets == 2 && strcmp(r->targets[0], "admin@example.org") == 0 &&
              strcmp(r->targets[1], "ops") == 0 && r->line == 5,
          "root: lowercased, continued, deduplicated");
    const struct alias_entry *m = aliases_find(a, "mailer-daemon");
    CHECK(m && m->ntargets == 1 && strcmp(m->targets[0], "postmaster") == 0, "MAILER-DAEMON");
    const struct alias_entry *o = aliases_find(a, "ops");
    CHECK(o && o->ntargets == 1 && strcmp(o->targets[0], "\"ops team\"@example.org") == 0,
          "quoted local part kept: %s", o ? o->targets[0] : "-");
    CHECK(aliases_find(a, "nobody") == NULL, "unknown name");
    aliases_free(a);
    conf_errors_free(&e);
}

static void test_bad(void)
{
    static const struct {
        const char *text, *error;
    } cases[] = {
        {"root admin@example.org\n", "aliases:1:1: expected \"name: address, ...\""},
        {"x: |/usr/bin/procmail\n", "aliases:1:1: alias \"x\": delivery to a command"},
        {"x: \"|cmd arg\"\n", "delivery to a command"},
        {"x: /var/log/mail\n", "alias \"x\": delivery to a file"},
        {"x: :include:/etc/list\n", "alias \"x\": :include:/etc/list is not supported"},
        {"x: a\n\nx: b\n", "aliases:3:1: alias \"x\" again (first on line 1)"},
        {"x:\n", "alias \"x\": empty target"},
        {"x: a,,b\n", "alias \"x\": empty target"},
        {"x: a@\n", "alias \"x\": bad target \"a@\""},
        {"x: a b\n", "bad target \"a b\""},
        {"x: \"a\n", "unclosed quote"},
        {"  a@b\nroot: a\n", "aliases:1:1: continuation line"},
        {": a\n", "expected \"name: address"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct conf_errors e = {0};
        struct aliases *a = parse(cases[i].text, &e);
        CHECK(!a && has_error(&e, cases[i].error), "case %zu: want \"%s\", got \"%s\"", i,
              cases[i].error, e.n ? e.msgs[0] : "(none)");
        aliases_free(a);
        conf_errors_free(&e);
    }
    /* every error of a file is reported, not only the first */
    struct conf_errors e = {0};
    struct aliases *a = parse("a b\nc: |x\nd: ok\ne:\n", &e);
    CHECK(!a && e.n == 3, "3 errors, got %zu", e.n);
    conf_errors_free(&e);
}

int main(void)
{
    test_good();
    test_bad();
    return check_summary();
}
