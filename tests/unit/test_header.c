/* test_header.c: table tests for the RFC 5322 header field iterator, unfolding,
 * address-list parser and header completion (core/header.c). */
#include "core/compat.h"

#include "core/core.h"

#include "check.h"

#define ALL (-2) /* the whole input is consumed */
#define NA NULL  /* not checked */

/* ---- hdr_next ---- */

struct next_case {
    const char *in;
    size_t len; /* 0: strlen(in) */
    int ret;
    const char *name, *value; /* expected on ret > 0 */
    size_t line_len;          /* expected on ret < 0 (0: not checked) */
};

static const struct next_case next_cases[] = {
    {"Subject: hello\r\n", 0, ALL, "Subject", " hello", 0},
    {"Subject: hello\n", 0, ALL, "Subject", " hello", 0},
    {"Subject: hello", 0, ALL, "Subject", " hello", 0},
    {"Subject: hello\r", 0, ALL, "Subject", " hello", 0},
    {"Subject:hello\r\nTo: x\r\n", 0, 15, "Subject", "hello", 0},
    {"Subject:\r\n", 0, ALL, "Subject", "", 0},
    {"Subject:", 0, ALL, "Subject", "", 0},
    {"Subject: a\r\n b\r\n\tc\r\nTo: x\r\n", 0, 20, "Subject", " a\r\n b\r\n\tc", 0},
    {"Subject: a\n b\n\tc\nTo: x\n", 0, 17, "Subject", " a\n b\n\tc", 0},
    {"Subject: a\r\n b\r\n\r\nbody\r\n", 0, 16, "Subject", " a\r\n b", 0},
    {"Subject: a\n   \n b\n\nbody", 0, 18, "Subject", " a\n   \n b", 0},
    {"Subject: a\r\n b", 0, ALL, "Subject", " a\r\n b", 0},
    {"Subject: a\r\n ", 0, ALL, "Subject", " a\r\n ", 0},
    {"X-A.B_c-1!#: v\n", 0, ALL, "X-A.B_c-1!#", " v", 0},
    {"Subject : old\r\n", 0, ALL, "Subject", " old", 0},
    {"Subject\t: old\n", 0, ALL, "Subject", " old", 0},
    {"A:b\n", 0, ALL, "A", "b", 0},
    {"To: a:b:c\n", 0, ALL, "To", " a:b:c", 0},
    {"Subject: caf\xc3\xa9\n", 0, ALL, "Subject", " caf\xc3\xa9", 0},
    {"Subject: a\0b\n", 13, ALL, "Subject", NA, 0},
    /* the end of the header section */
    {"", 0, 0, NA, NA, 0},
    {"\r\n", 0, 0, NA, NA, 0},
    {"\n", 0, 0, NA, NA, 0},
    {"\r", 0, 0, NA, NA, 0},
    {"\r\nTo: x\r\n", 0, 0, NA, NA, 0},
    {"\nTo: x\n", 0, 0, NA, NA, 0},
    /* malformed: the caller may skip f.line_len bytes */
    {"no colon here\r\n", 0, -1, NA, NA, 15},
    {"nocolon\nTo: x\n", 0, -1, NA, NA, 8},
    {": empty name\n", 0, -1, NA, NA, 13},
    {"Bad Name: x\n", 0, -1, NA, NA, 12},
    {"B\xc3\xa4"
     "d: x\n",
     0, -1, NA, NA, 8},
    {"Bad\x01: x\n", 0, -1, NA, NA, 8},
    {" continued\n more\nTo: x\n", 0, -1, NA, NA, 17},
    {"\tcontinued\n", 0, -1, NA, NA, 11},
    {"\rSubject: x\n", 0, -1, NA, NA, 12},
    {"Subject\n : x\n", 0, -1, NA, NA, 13},
    {"Sub\0ject: x\n", 12, -1, NA, NA, 12},
};

static void test_next(void)
{
    for (size_t k = 0; k < sizeof next_cases / sizeof next_cases[0]; k++) {
        const struct next_case *c = &next_cases[k];
        size_t len = c->len ? c->len : strlen(c->in);
        int want = c->ret == ALL ? (int)len : c->ret;
        struct hdr_field f;
        int r = hdr_next(c->in, len, &f);
        CHECK(r == want, "hdr_next case %zu: ret %d, want %d", k, r, want);
        if (r != want) continue;
        if (r > 0) {
            CHECK(f.line_len == (size_t)r, "case %zu: line_len %zu", k, f.line_len);
            CHECK(f.name == c->in && f.name_len == strlen(c->name) &&
                      memcmp(f.name, c->name, f.name_len) == 0,
                  "case %zu: name [%.*s]", k, (int)f.name_len, f.name ? f.name : "");
            if (c->value)
                CHECK(f.value_len == strlen(c->value) &&
                          memcmp(f.value, c->value, f.value_len) == 0,
                      "case %zu: value [%.*s] want [%s]", k, (int)f.value_len, f.value, c->value);
            CHECK(f.value >= c->in && f.value + f.value_len <= c->in + len, "case %zu: bounds", k);
        } else if (r < 0) {
            CHECK(!f.name && f.line_len > 0, "case %zu: cleared", k);
            if (c->line_len)
                CHECK(f.line_len == c->line_len, "case %zu: line_len %zu want %zu", k, f.line_len,
                      c->line_len);
        }
    }
}

/* A whole header section, iterated as callers do (skipping malformed lines). */
static void test_iterate(void)
{
    static const char msg[] = "Received: from a\r\n\tby b; Mon, 1 Jan 2024\r\n"
                              "From: Alice <alice@Example.ORG>\r\n"
                              "junk line\r\n"
                              "To: bob@example.net,\r\n  carol@example.net\r\n"
                              "Subject: hi\r\n"
                              "\r\n"
                              "Body: not a header\r\n";
    const char *names[] = {"Received", "From", "To", "Subject"};
    size_t off = 0, nf = 0, bad = 0, len = sizeof msg - 1;
    struct hdr_field f;
    for (;;) {
        int r = hdr_next(msg + off, len - off, &f);
        if (r == 0) break;
        if (r < 0) {
            bad++;
            off += f.line_len;
            continue;
        }
        if (nf < 4) CHECK(hdr_name_is(&f, names[nf]), "iterate: field %zu", nf);
        nf++;
        off += (size_t)r;
    }
    CHECK(nf == 4 && bad == 1, "iterate: %zu fields, %zu bad", nf, bad);
    CHECK(strncmp(msg + off, "\r\nBody:", 7) == 0, "iterate: stopped at [%.8s]", msg + off);
}

/* ---- hdr_name_is ---- */

struct name_case {
    const char *field, *name;
    int want;
};

static const struct name_case name_cases[] = {
    {"From: x\n", "From", 1},        {"FROM: x\n", "from", 1},
    {"from: x\n", "From", 1},        {"Message-ID: x\n", "message-id", 1},
    {"From: x\n", "Fro", 0},         {"From: x\n", "From:", 0},
    {"From: x\n", "Fromm", 0},       {"Resent-From: x\n", "From", 0},
    {"Subject : x\n", "Subject", 1}, {"X: y\n", "", 0},
};

static void test_name_is(void)
{
    for (size_t k = 0; k < sizeof name_cases / sizeof name_cases[0]; k++) {
        const struct name_case *c = &name_cases[k];
        struct hdr_field f;
        int r = hdr_next(c->field, strlen(c->field), &f);
        CHECK(r > 0 && hdr_name_is(&f, c->name) == c->want, "hdr_name_is case %zu (%s)", k,
              c->name);
    }
    struct hdr_field none;
    memset(&none, 0, sizeof none);
    CHECK(hdr_name_is(&none, "") == 0, "hdr_name_is on an empty field");
}

/* ---- hdr_unfold ---- */

struct unfold_case {
    const char *in;
    size_t dstsize;
    const char *want;
};

static const struct unfold_case unfold_cases[] = {
    {" hello", 64, "hello"},
    {"hello", 64, "hello"},
    {"  hello  \t", 64, "hello"},
    {" a\r\n b", 64, "a b"},
    {" a\r\n\tb", 64, "a\tb"},
    {" a\n b\n  c", 64, "a b  c"},
    {" a\r\n   \r\n b", 64, "a    b"},
    {"\r\n a", 64, "a"},
    {" a\r\n ", 64, "a"},
    {"", 64, ""},
    {"   ", 64, ""},
    {"\r\n \r\n\t", 64, ""},
    {" hello world", 6, "hello"},
    {" hello", 1, ""},
    {" a\r\n b", 3, "a "},
    {" =?utf-8?q?caf=C3=A9?=", 64, "=?utf-8?q?caf=C3=A9?="},
    {" caf\xc3\xa9", 64, "caf\xc3\xa9"},
};

static void test_unfold(void)
{
    for (size_t k = 0; k < sizeof unfold_cases / sizeof unfold_cases[0]; k++) {
        const struct unfold_case *c = &unfold_cases[k];
        char dst[64];
        memset(dst, 'X', sizeof dst);
        char *r = hdr_unfold(c->in, strlen(c->in), dst, c->dstsize);
        CHECK(r == dst && strcmp(dst, c->want) == 0, "hdr_unfold case %zu: [%s] want [%s]", k, dst,
              c->want);
        if (c->dstsize < sizeof dst)
            CHECK(dst[c->dstsize] == 'X', "hdr_unfold case %zu: wrote past dstsize", k);
    }
    char one = 'X';
    CHECK(hdr_unfold(" a", 2, &one, 0) == &one && one == 'X', "hdr_unfold with dstsize 0");
}

/* ---- hdr_parse_addresses ---- */

struct addr_case {
    const char *in;
    int ret;
    const char *want; /* addresses joined with '|'; "" for none */
};

#define BAD (-1), NULL

static const struct addr_case addr_cases[] = {
    /* addr-spec */
    {"a@b", 0, "a@b"},
    {" user@example.org ", 0, "user@example.org"},
    {"User.Name+tag@Example.ORG", 0, "User.Name+tag@example.org"},
    {"a@b, c@d", 0, "a@b|c@d"},
    {"a@b,c@d,e@f", 0, "a@b|c@d|e@f"},
    {"a@b (comment)", 0, "a@b"},
    {"a@b (comment (nested (deeper)))", 0, "a@b"},
    {"(lead) a@b", 0, "a@b"},
    {"a(x)@(y)b(z)", 0, "a@b"},
    {"a@b (with \\) escaped paren)", 0, "a@b"},
    {"a . b @ c . d", 0, "a.b@c.d"},
    {"a@[192.0.2.1]", 0, "a@[192.0.2.1]"},
    {"a@[IPv6:2001:DB8::1]", 0, "a@[ipv6:2001:db8::1]"},
    {"a@[ 192.0.2.1 ]", 0, "a@[192.0.2.1]"},
    {"!#$%&'*+-/=?^_`{|}~@x", 0, "!#$%&'*+-/=?^_`{|}~@x"},
    {"john..doe@example.jp", 0, "john..doe@example.jp"},
    {"john.@example.jp", 0, "john.@example.jp"},
    /* quoted local parts, returned unquoted */
    {"\"quoted local\"@b", 0, "quoted local@b"},
    {"\"a\\\"b\\\\c\"@x", 0, "a\"b\\c@x"},
    {"\"user@other\"@Local", 0, "user@other@local"},
    {"\"a\".\"b\"@c", 0, "a.b@c"},
    {"\"a\".b@c", 0, "a.b@c"},
    {"\"fold\r\n ed\"@c", 0, "fold ed@c"},
    {"\"\"@x", 0, "@x"},
    /* name-addr */
    {"Name <a@b>", 0, "a@b"},
    {"John Q. Public <JQP@Example.COM>", 0, "JQP@example.com"},
    {"\"Quoted, Name\" <a@b>", 0, "a@b"},
    {"\"Doe, John\" <j@x>, \"Roe, Jane\" <r@y>", 0, "j@x|r@y"},
    {"<a@b>", 0, "a@b"},
    {" < a@b > ", 0, "a@b"},
    {"Name<a@b>", 0, "a@b"},
    {"Name <a@b> (comment)", 0, "a@b"},
    {"Name (c) <a@b>, other@c", 0, "a@b|other@c"},
    {"=?utf-8?q?J=C3=B6rg?= <j@x>", 0, "j@x"},
    {"=?ISO-8859-1?B?SvZyZw==?= <j@x>", 0, "j@x"},
    {"\"=?utf-8?q?a,b?=\" <j@x>", 0, "j@x"},
    {"alice@example.org <alice@example.org>", 0, "alice@example.org"},
    {"Dr. Who <who@tardis>", 0, "who@tardis"},
    {"[External] Bob <bob@x>", 0, "bob@x"},
    /* UTF-8 (RFC 6532) */
    {"J\xc3\xb6rg <j\xc3\xb6rg@B\xc3\xbc"
     "cher.example>",
     0,
     "j\xc3\xb6rg@b\xc3\xbc"
     "cher.example"},
    {"\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a", 0,
     "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a"},
    {"\"J\xc3\xb6rg M\xc3\xbcller\" <jm@x>", 0, "jm@x"},
    /* obsolete routes (dropped) */
    {"<@route,@r2:a@b>", 0, "a@b"},
    {"<@route:a@b>", 0, "a@b"},
    {"Name <@a.example, @b.example:user@C.example>", 0, "user@c.example"},
    {"<,@a,,@b:x@y>", 0, "x@y"},
    /* groups */
    {"Group: a@b, c@d;", 0, "a@b|c@d"},
    {"undisclosed-recipients:;", 0, ""},
    {"undisclosed-recipients: ;", 0, ""},
    {"undisclosed-recipients:", 0, ""},
    {"Undisclosed recipients:;", 0, ""},
    {"\"My Group\": Name <a@b>, \"q\"@c;", 0, "a@b|q@c"},
    {"G: a@b;, x@y", 0, "a@b|x@y"},
    {"x@y, G: a@b; (c)", 0, "x@y|a@b"},
    {"G: a@b", 0, "a@b"},
    {"G: a@b,,c@d,;", 0, "a@b|c@d"},
    {"A:;, B: b@b;", 0, "b@b"},
    /* obs-addr-list: empty elements */
    {"a@b,,c@d", 0, "a@b|c@d"},
    {", a@b", 0, "a@b"},
    {"a@b,", 0, "a@b"},
    {"a@b, (comment), c@d", 0, "a@b|c@d"},
    /* bare local parts: the caller decides */
    {"root", 0, "root"},
    {"root (Cron Daemon)", 0, "root"},
    {"<root>", 0, "root"},
    {"Cron <root>", 0, "root"},
    {"first.last", 0, "first.last"},
    {"\"quoted\"", 0, "quoted"},
    {"root, a@b", 0, "root|a@b"},
    /* folded values as hdr_next returns them */
    {" Alice <alice@x>,\r\n Bob\r\n <bob@y>", 0, "alice@x|bob@y"},
    {"\r\n\ta@b\r\n", 0, "a@b"},
    /* malformed */
    {"", BAD},
    {"   ", BAD},
    {"(only a comment)", BAD},
    {",,,", BAD},
    {"<>", BAD},
    {"Name <>", BAD},
    {"Name <a@b", BAD},
    {"Name a@b>", BAD},
    {"a@b>", BAD},
    {"<a@b", BAD},
    {"<<a@b>>", BAD},
    {"<a@b> <c@d>", BAD},
    {"<a@b> junk", BAD},
    {"\"unterminated@b", BAD},
    {"\"Name <a@b>", BAD},
    {"a@b (unterminated", BAD},
    {"a@b (a (b)", BAD},
    {"a@b )", BAD},
    {"a@[1.2.3.4", BAD},
    {"a@[1.2[3]]", BAD},
    {"a@b]", BAD},
    {"a@b c@d", BAD},
    {"a@b;", BAD},
    {"a@b; c@d", BAD},
    {"John Smith", BAD},
    {"a b@c", BAD},
    {"@b", BAD},
    {"a@", BAD},
    {"a@b.", BAD},
    {"a@.b", BAD},
    {"a@b..c", BAD},
    {"a@b@c", BAD},
    {"a@b\\c", BAD},
    {"a\x01@b", BAD},
    {"\"\"", BAD},
    {"G: H: a@b;;", BAD},
    {"G: a@b; c@d", BAD},
    {"<@a.example a@b>", BAD},
    {"<@:a@b>", BAD},
    {"<@a,a@b>", BAD},
    {"<a@b, c@d>", BAD},
    {"<\"a\\", BAD},
};

static char *join(char **v, size_t n)
{
    struct buf b;
    buf_init(&b, 0);
    for (size_t i = 0; i < n; i++) {
        if (i) buf_append(&b, "|", 1);
        buf_puts(&b, v[i]);
    }
    return buf_take(&b);
}

static void test_addresses(void)
{
    for (size_t k = 0; k < sizeof addr_cases / sizeof addr_cases[0]; k++) {
        const struct addr_case *c = &addr_cases[k];
        char **v = (char **)1;
        size_t n = 99;
        int r = hdr_parse_addresses(c->in, strlen(c->in), &v, &n);
        CHECK(r == c->ret, "hdr_parse_addresses case %zu [%s]: ret %d want %d", k, c->in, r,
              c->ret);
        if (r < 0) {
            CHECK(!v && n == 0, "case %zu: output left on failure", k);
            continue;
        }
        char *got = join(v, n);
        if (c->want)
            CHECK(strcmp(got, c->want) == 0, "case %zu [%s]: [%s] want [%s]", k, c->in, got,
                  c->want);
        free(got);
        hdr_addresses_free(v, n);
    }
    hdr_addresses_free(NULL, 0);
}

/* RFC 5322 3.6.2: From:, Sender: and their Resent- forms hold mailboxes only. A
 * group or an empty list would leave nothing to check (issue 9 item 3). */
static void test_mailboxes(void)
{
    static const struct addr_case cases[] = {
        {"a@b", 0, "a@b"},
        {"Name <a@b>, c@d", 0, "a@b|c@d"},
        {", a@b,,", 0, "a@b"},
        {"\"ceo@victim.example\" :;", BAD},
        {"\"ceo@victim.example\":;", BAD},
        {"undisclosed-recipients:;", BAD},
        {"team: a@b, c@d;", BAD},
        {"a@b, team: c@d;", BAD},
        {"", BAD},
        {" , ,", BAD},
        {"(only a comment)", BAD},
        {"<<<", BAD},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const struct addr_case *c = &cases[k];
        char **v = (char **)1;
        size_t n = 99;
        int r = hdr_parse_mailboxes(c->in, strlen(c->in), &v, &n);
        CHECK(r == c->ret, "hdr_parse_mailboxes case %zu [%s]: ret %d want %d", k, c->in, r,
              c->ret);
        if (r < 0) {
            CHECK(!v && n == 0, "mailboxes case %zu: output left on failure", k);
            continue;
        }
        char *got = join(v, n);
        CHECK(n >= 1 && strcmp(got, c->want) == 0, "mailboxes case %zu [%s]: [%s] want [%s]", k,
              c->in, got, c->want);
        free(got);
        hdr_addresses_free(v, n);
    }
}

/* Bounded comment nesting (64) and values with embedded NUL bytes. */
static void test_addresses_limits(void)
{
    char deep[400], *p = deep;
    int depth;
    for (int pass = 0; pass < 2; pass++) {
        depth = pass ? 65 : 64;
        p = deep;
        p += snprintf(p, 8, "a@b ");
        for (int i = 0; i < depth; i++)
            *p++ = '(';
        for (int i = 0; i < depth; i++)
            *p++ = ')';
        *p = '\0';
        char **v;
        size_t n;
        int r = hdr_parse_addresses(deep, strlen(deep), &v, &n);
        CHECK(r == (pass ? -1 : 0), "comment depth %d: ret %d", depth, r);
        if (r == 0) hdr_addresses_free(v, n);
    }
    static const char nul1[] = "a\0b@c";
    static const char nul2[] = "\"a\0b\"@c";
    static const char nul3[] = "a@b (x\0y)";
    char **v;
    size_t n;
    CHECK(hdr_parse_addresses(nul1, sizeof nul1 - 1, &v, &n) == -1, "NUL in an atom");
    CHECK(hdr_parse_addresses(nul2, sizeof nul2 - 1, &v, &n) == -1, "NUL in a quoted string");
    int r = hdr_parse_addresses(nul3, sizeof nul3 - 1, &v, &n);
    CHECK(r == 0 && n == 1 && strcmp(v[0], "a@b") == 0, "NUL in a comment is ignored");
    if (r == 0) hdr_addresses_free(v, n);
    /* The length is honoured: the value is not NUL-terminated at len. */
    r = hdr_parse_addresses("a@b, c@d", 3, &v, &n);
    CHECK(r == 0 && n == 1 && strcmp(v[0], "a@b") == 0, "len honoured");
    if (r == 0) hdr_addresses_free(v, n);
    /* Many addresses. */
    struct buf b;
    buf_init(&b, 0);
    for (int i = 0; i < 1000; i++)
        buf_printf(&b, "%su%d@Example.org", i ? ", " : "", i);
    r = hdr_parse_addresses(b.data, b.len, &v, &n);
    CHECK(r == 0 && n == 1000 && strcmp(v[999], "u999@example.org") == 0, "1000 addresses");
    if (r == 0) hdr_addresses_free(v, n);
    buf_release(&b);
}

/* header_complete(): which fields get added, in which order, how a display name is
 * quoted; the header may live in the buffer being appended to (sendmail). */
static void test_complete(void)
{
    static const struct {
        const char *hdr;
        int with_from; /* sendmail: From: may be added */
        const char *name;
        const char *want;
    } cases[] = {
        {"", 1, NULL, "From: a@h.example\r\nDate: DATE\r\nMessage-ID: <ID@h.example>\r\n"},
        {"", 0, NULL, "Date: DATE\r\nMessage-ID: <ID@h.example>\r\n"},
        {"Subject: x\r\n", 1, "Ann \"Q\" B\\",
         "From: \"Ann \\\"Q\\\" B\\\\\" <a@h.example>\r\nDate: DATE\r\n"
         "Message-ID: <ID@h.example>\r\n"},
        {"Subject: x\r\n", 1, "",
         "From: a@h.example\r\nDate: DATE\r\nMessage-ID: <ID@h.example>\r\n"},
        {"from: me\r\nDATE: now\r\nmessage-id: <x@y>\r\n", 1, "N", ""},
        {"Message-Id: <x@y>\r\n", 0, NULL, "Date: DATE\r\n"},
        {"Date : obs\r\n", 0, NULL, "Message-ID: <ID@h.example>\r\n"},
        {"Subject: x\r\n folded\r\nDate: now\r\n", 0, NULL, "Message-ID: <ID@h.example>\r\n"},
        /* the header ends at the empty line: a Date: in the body does not count */
        {"Subject: x\r\n\r\nDate: now\r\n", 0, NULL,
         "Date: DATE\r\nMessage-ID: <ID@h.example>\r\n"},
        /* and at a line that is not a field */
        {"Subject: x\r\nno field\r\nDate: now\r\n", 0, NULL,
         "Date: DATE\r\nMessage-ID: <ID@h.example>\r\n"},
        {"Subject: x\nDate: now\n", 0, NULL, "Message-ID: <ID@h.example>\r\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct hdr_complete c = {.from_addr = cases[i].with_from ? "a@h.example" : NULL,
                                 .from_name = cases[i].name,
                                 .date = "DATE",
                                 .msgid_left = "ID",
                                 .msgid_domain = "h.example"};
        struct buf b;
        buf_init(&b, 0);
        header_complete(&b, cases[i].hdr, strlen(cases[i].hdr), &c);
        CHECK(strcmp(b.data ? b.data : "", cases[i].want) == 0, "case %zu: got \"%s\"", i,
              b.data ? b.data : "");
        buf_release(&b);
    }
    /* The header already in out (sendmail builds it there): the fields go after it,
     * even when out has to grow. */
    struct buf b;
    buf_init(&b, 0);
    buf_puts(&b, "Subject: x\r\n");
    header_complete(&b, b.data, b.len,
                    &(struct hdr_complete){.from_addr = "a@h.example",
                                           .from_name = "A",
                                           .date = "DATE",
                                           .msgid_left = "ID",
                                           .msgid_domain = "h.example"});
    CHECK(strcmp(b.data, "Subject: x\r\nFrom: \"A\" <a@h.example>\r\nDate: DATE\r\n"
                         "Message-ID: <ID@h.example>\r\n") == 0,
          "appended after the header in the same buffer: \"%s\"", b.data);
    buf_release(&b);
}

int main(void)
{
    test_next();
    test_iterate();
    test_name_is();
    test_mailboxes();
    test_unfold();
    test_addresses();
    test_addresses_limits();
    test_complete();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
