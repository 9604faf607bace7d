/* test_smtp_parse.c: table tests for smtp/parse.c: command lines and ESMTP parameters,
 * xtext, and the DATA/BDAT scanner (smuggling sequences, chunk-split equivalence). */
#include "core/compat.h"

#include <limits.h>

#include "core/core.h"
#include "smtp/smtp.h"

#include "check.h"

static int str_eq_null(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

#define SIZE0 LLONG_MIN /* expect SIZE=0; a 0 in the table means "not given" (-1) */

struct cmd_case {
    const char *line;
    int code; /* 0: accepted */
    const char *enh;
    enum smtp_verb verb;
    const char *arg, *local, *domain;
    long long size;
    enum smtp_body body;
    int smtputf8;
    enum smtp_ret ret;
    const char *envid, *auth;
    unsigned notify;
    const char *orcpt;
    unsigned long long chunk;
    int last;
    const char *text; /* substring of the error text */
};

#define OK(l, v, ...)                                                                              \
    {                                                                                              \
        .line = l, .verb = v, __VA_ARGS__                                                          \
    }
#define ERR(l, c, e, v, ...)                                                                       \
    {                                                                                              \
        .line = l, .code = c, .enh = e, .verb = v, __VA_ARGS__                                     \
    }

static const struct cmd_case cmd_cases[] = {
    OK("EHLO mail.example.org", SMTP_V_EHLO, .arg = "mail.example.org"),
    OK("ehlo   mail.example.org   ", SMTP_V_EHLO, .arg = "mail.example.org"),
    OK("HELO [192.0.2.1]", SMTP_V_HELO, .arg = "[192.0.2.1]"),
    ERR("EHLO", 501, "5.5.4", SMTP_V_EHLO, .text = "EHLO requires a domain or address literal"),
    ERR("EHLO   ", 501, "5.5.4", SMTP_V_EHLO),
    ERR("HELO", 501, "5.5.4", SMTP_V_HELO),
    ERR("EHLO h\xc3\xa9.example", 501, "5.5.4", SMTP_V_EHLO),
    ERR("EHLO a\rb", 501, "5.5.2", SMTP_V_EHLO),
    OK("MAIL FROM:<a@b.example>", SMTP_V_MAIL, .local = "a", .domain = "b.example"),
    OK("mail from:<a@B.Example>", SMTP_V_MAIL, .local = "a", .domain = "b.example"),
    OK("MAIL FROM: <a@b.example>", SMTP_V_MAIL, .local = "a", .domain = "b.example"),
    OK("MAIL FROM:<>", SMTP_V_MAIL),
    OK("MAIL FROM:<> ", SMTP_V_MAIL),
    OK("MAIL FROM:<a@b> SIZE=12345 BODY=8BITMIME", SMTP_V_MAIL, .local = "a", .domain = "b",
       .size = 12345, .body = SMTP_BODY_8BITMIME),
    OK("MAIL FROM:<a@b> size=0 body=7bit", SMTP_V_MAIL, .local = "a", .domain = "b", .size = SIZE0,
       .body = SMTP_BODY_7BIT),
    OK("MAIL FROM:<a@b> BODY=BINARYMIME", SMTP_V_MAIL, .local = "a", .domain = "b",
       .body = SMTP_BODY_BINARYMIME),
    OK("MAIL FROM:<a@b> SIZE=9223372036854775807", SMTP_V_MAIL, .local = "a", .domain = "b",
       .size = 9223372036854775807LL),
    ERR("MAIL FROM:<a@b> SIZE=9223372036854775808", 501, "5.5.4", SMTP_V_MAIL),
    ERR("MAIL FROM:<a@b> SIZE=99999999999999999999999", 501, "5.5.4", SMTP_V_MAIL),
    ERR("MAIL FROM:<a@b> SIZE=-1", 501, "5.5.4", SMTP_V_MAIL),
    ERR("MAIL FROM:<a@b> SIZE=", 501, "5.5.4", SMTP_V_MAIL),
    ERR("MAIL FROM:<a@b> SIZE", 501, "5.5.4", SMTP_V_MAIL),
    ERR("MAIL FROM:<a@b> SIZE=1 SIZE=2", 501, "5.5.4", SMTP_V_MAIL, .text = "Duplicate"),
    ERR("MAIL FROM:<a@b> BODY=9BIT", 501, "5.5.4", SMTP_V_MAIL),
    ERR("MAIL FROM:<a@b> FOO=bar", 555, "5.5.4", SMTP_V_MAIL, .text = "Unsupported parameter FOO"),
    ERR("MAIL FROM:<a@b> NOTIFY=NEVER", 555, "5.5.4", SMTP_V_MAIL),
    ERR("MAIL FROM:<a@b> =x", 501, "5.5.4", SMTP_V_MAIL),
    OK("MAIL FROM:<a@b> RET=HDRS ENVID=QQ314159+2Bx", SMTP_V_MAIL, .local = "a", .domain = "b",
       .ret = SMTP_RET_HDRS, .envid = "QQ314159+x"),
    ERR("MAIL FROM:<a@b> RET=SOME", 501, "5.5.4", SMTP_V_MAIL),
    ERR("MAIL FROM:<a@b> ENVID=a+zz", 501, "5.5.4", SMTP_V_MAIL),
    ERR("MAIL FROM:<a@b> "
        "ENVID=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        501, "5.5.4", SMTP_V_MAIL),
    OK("MAIL FROM:<a@b> AUTH=<>", SMTP_V_MAIL, .local = "a", .domain = "b", .auth = "<>"),
    OK("MAIL FROM:<a@b> AUTH=e+2Bf@x", SMTP_V_MAIL, .local = "a", .domain = "b", .auth = "e+f@x"),
    OK("MAIL FROM:<j\xc3\xb6rg@x> SMTPUTF8", SMTP_V_MAIL, .local = "j\xc3\xb6rg", .domain = "x",
       .smtputf8 = 1),
    OK("MAIL FROM:<a@b> SMTPUTF8", SMTP_V_MAIL, .local = "a", .domain = "b", .smtputf8 = 1),
    ERR("MAIL FROM:<j\xc3\xb6rg@x>", 553, "5.6.7", SMTP_V_MAIL, .text = "SMTPUTF8"),
    ERR("MAIL FROM:<a@b> SMTPUTF8=yes", 501, "5.5.4", SMTP_V_MAIL),
    ERR("MAIL FROM:<a@b> BODY=8BIT\xc3\xb6", 501, "5.5.4", SMTP_V_MAIL),
    ERR("MAIL FROM:<j\xff@x> SMTPUTF8", 501, "5.1.7", SMTP_V_MAIL, .text = "UTF-8"),
    ERR("MAIL FROM:a@b", 501, "5.1.7", SMTP_V_MAIL, .text = "enclosed"),
    ERR("MAIL FROM:", 501, "5.1.7", SMTP_V_MAIL),
    ERR("MAIL FROM:<a@b>x", 501, "5.5.4", SMTP_V_MAIL),
    ERR("MAIL FROM:<a@b", 501, "5.1.7", SMTP_V_MAIL, .text = "Bad sender address syntax"),
    ERR("MAIL FROM:<user>", 501, "5.1.7", SMTP_V_MAIL, .text = "missing domain"),
    ERR("MAIL TO:<a@b>", 501, "5.5.4", SMTP_V_MAIL, .text = "MAIL FROM:"),
    ERR("MAIL", 501, "5.5.4", SMTP_V_MAIL),
    ERR("MAIL FROM:<a@b>\tSIZE=1", 501, "5.5.2", SMTP_V_MAIL),
    OK("RCPT TO:<c@d.example>", SMTP_V_RCPT, .local = "c", .domain = "d.example"),
    OK("RCPT TO: <c@d.example>", SMTP_V_RCPT, .local = "c", .domain = "d.example"),
    OK("RCPT TO:<postmaster>", SMTP_V_RCPT, .local = "postmaster"),
    OK("rcpt to:<Postmaster>", SMTP_V_RCPT, .local = "postmaster"),
    OK("RCPT TO:<Postmaster@Example.ORG>", SMTP_V_RCPT, .local = "Postmaster",
       .domain = "example.org"),
    OK("RCPT TO:<@a.example:c@d.example>", SMTP_V_RCPT, .local = "c", .domain = "d.example"),
    OK("RCPT TO:<j\xc3\xb6rg@x>", SMTP_V_RCPT, .local = "j\xc3\xb6rg", .domain = "x"),
    ERR("RCPT TO:<>", 501, "5.1.3", SMTP_V_RCPT),
    ERR("RCPT TO:<user>", 501, "5.1.3", SMTP_V_RCPT, .text = "Bad recipient address syntax"),
    ERR("RCPT TO:<postmaster> x", 555, "5.5.4", SMTP_V_RCPT),
    ERR("RCPT FROM:<c@d>", 501, "5.5.4", SMTP_V_RCPT),
    OK("RCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE", SMTP_V_RCPT, .local = "c", .domain = "d",
       .notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE),
    OK("RCPT TO:<c@d> NOTIFY=delay", SMTP_V_RCPT, .local = "c", .domain = "d",
       .notify = SMTP_NOTIFY_DELAY),
    OK("RCPT TO:<c@d> NOTIFY=NEVER", SMTP_V_RCPT, .local = "c", .domain = "d",
       .notify = SMTP_NOTIFY_NEVER),
    ERR("RCPT TO:<c@d> NOTIFY=NEVER,SUCCESS", 501, "5.5.4", SMTP_V_RCPT),
    ERR("RCPT TO:<c@d> NOTIFY=SUCCESS,", 501, "5.5.4", SMTP_V_RCPT),
    ERR("RCPT TO:<c@d> NOTIFY=SOMETIMES", 501, "5.5.4", SMTP_V_RCPT),
    OK("RCPT TO:<c@d> ORCPT=rfc822;c+2Bx@d", SMTP_V_RCPT, .local = "c", .domain = "d",
       .orcpt = "rfc822;c+x@d"),
    OK("RCPT TO:<c@d> ORCPT=RFC822;c@d NOTIFY=NEVER", SMTP_V_RCPT, .local = "c", .domain = "d",
       .orcpt = "rfc822;c@d", .notify = SMTP_NOTIFY_NEVER),
    OK("RCPT TO:<c@d> ORCPT=utf-8;c@d", SMTP_V_RCPT, .local = "c", .domain = "d",
       .orcpt = "utf-8;c@d"),
    ERR("RCPT TO:<c@d> ORCPT=x400;c@d", 501, "5.5.4", SMTP_V_RCPT),
    ERR("RCPT TO:<c@d> ORCPT=c@d", 501, "5.5.4", SMTP_V_RCPT),
    ERR("RCPT TO:<c@d> ORCPT=rfc822;", 501, "5.5.4", SMTP_V_RCPT),
    ERR("RCPT TO:<c@d> ORCPT=rfc822;a+00b", 501, "5.5.4", SMTP_V_RCPT),
    ERR("RCPT TO:<c@d> ORCPT=rfc822;a ORCPT=rfc822;b", 501, "5.5.4", SMTP_V_RCPT),
    ERR("RCPT TO:<c@d> SIZE=1", 555, "5.5.4", SMTP_V_RCPT),
    OK("DATA", SMTP_V_DATA),
    OK("data", SMTP_V_DATA),
    ERR("DATA now", 501, "5.5.4", SMTP_V_DATA, .text = "DATA takes no arguments"),
    OK("RSET", SMTP_V_RSET),
    ERR("RSET x", 501, "5.5.4", SMTP_V_RSET),
    OK("QUIT", SMTP_V_QUIT),
    ERR("QUIT now", 501, "5.5.4", SMTP_V_QUIT),
    OK("STARTTLS", SMTP_V_STARTTLS),
    ERR("STARTTLS x", 501, "5.5.4", SMTP_V_STARTTLS),
    OK("NOOP", SMTP_V_NOOP),
    OK("NOOP hello there", SMTP_V_NOOP, .arg = "hello there"),
    OK("HELP", SMTP_V_HELP),
    OK("HELP MAIL", SMTP_V_HELP, .arg = "MAIL"),
    OK("VRFY bob", SMTP_V_VRFY, .arg = "bob"),
    OK("EXPN list", SMTP_V_EXPN, .arg = "list"),
    OK("AUTH PLAIN AGJvYgBzZWNyZXQ=", SMTP_V_AUTH, .arg = "PLAIN AGJvYgBzZWNyZXQ="),
    OK("AUTH LOGIN", SMTP_V_AUTH, .arg = "LOGIN"),
    OK("BDAT 1000", SMTP_V_BDAT, .chunk = 1000),
    OK("BDAT 0 LAST", SMTP_V_BDAT, .chunk = 0, .last = 1),
    OK("bdat 42 last", SMTP_V_BDAT, .chunk = 42, .last = 1),
    OK("BDAT 18446744073709551615", SMTP_V_BDAT, .chunk = 18446744073709551615ULL),
    ERR("BDAT 18446744073709551616", 501, "5.5.4", SMTP_V_BDAT),
    ERR("BDAT", 501, "5.5.4", SMTP_V_BDAT),
    ERR("BDAT -1", 501, "5.5.4", SMTP_V_BDAT),
    ERR("BDAT 10 FIRST", 501, "5.5.4", SMTP_V_BDAT),
    ERR("BDAT 10 LAST x", 501, "5.5.4", SMTP_V_BDAT),
    ERR("BDAT 1x", 501, "5.5.4", SMTP_V_BDAT),
    ERR("", 500, "5.5.2", SMTP_V_UNKNOWN),
    ERR("FOO", 500, "5.5.2", SMTP_V_UNKNOWN, .text = "Command not recognized"),
    ERR("MAILX FROM:<a@b>", 500, "5.5.2", SMTP_V_UNKNOWN),
    ERR("GET / HTTP/1.1", 500, "5.5.2", SMTP_V_UNKNOWN),
    ERR("\xc3\xa9HLO x", 500, "5.5.2", SMTP_V_UNKNOWN),
    ERR(" EHLO x", 500, "5.5.2", SMTP_V_UNKNOWN),
};

static void test_cmds(void)
{
    for (size_t i = 0; i < sizeof cmd_cases / sizeof cmd_cases[0]; i++) {
        const struct cmd_case *c = &cmd_cases[i];
        struct smtp_cmd cmd;
        struct smtp_err err;
        int r = smtp_parse_cmd(c->line, strlen(c->line), &cmd, &err);
        if (c->code == 0) {
            CHECK(r == 0, "[%s] refused: %d %s %s", c->line, err.code, err.enh, err.text);
        } else {
            CHECK(r == -1 && err.code == c->code && strcmp(err.enh, c->enh) == 0,
                  "[%s] got %d %d %s %s, want %d %s", c->line, r, err.code, err.enh, err.text,
                  c->code, c->enh);
            CHECK(r == 0 || (err.text[0] && (!c->text || strstr(err.text, c->text))),
                  "[%s] error text [%s] want [%s]", c->line, err.text, c->text ? c->text : "");
        }
        CHECK(cmd.verb == c->verb, "[%s] verb %s want %s", c->line, smtp_verb_name(cmd.verb),
              smtp_verb_name(c->verb));
        if (r == 0) {
            CHECK(str_eq_null(cmd.arg, c->arg), "[%s] arg [%s] want [%s]", c->line,
                  cmd.arg ? cmd.arg : "(null)", c->arg ? c->arg : "(null)");
            CHECK(str_eq_null(cmd.path.local, c->local) && str_eq_null(cmd.path.domain, c->domain),
                  "[%s] path [%s]@[%s]", c->line, cmd.path.local ? cmd.path.local : "(null)",
                  cmd.path.domain ? cmd.path.domain : "(null)");
            long long wsize = c->size == SIZE0 ? 0 : c->size ? c->size : -1;
            CHECK(cmd.size == wsize, "[%s] size %lld want %lld", c->line, cmd.size, wsize);
            CHECK(cmd.body == c->body && cmd.smtputf8 == c->smtputf8 && cmd.ret == c->ret,
                  "[%s] body/smtputf8/ret", c->line);
            CHECK(str_eq_null(cmd.envid, c->envid) && str_eq_null(cmd.auth, c->auth),
                  "[%s] envid [%s] auth [%s]", c->line, cmd.envid ? cmd.envid : "(null)",
                  cmd.auth ? cmd.auth : "(null)");
            CHECK(cmd.notify == c->notify && str_eq_null(cmd.orcpt, c->orcpt),
                  "[%s] notify %u orcpt [%s]", c->line, cmd.notify,
                  cmd.orcpt ? cmd.orcpt : "(null)");
            CHECK(cmd.chunk_size == c->chunk && cmd.last == c->last, "[%s] bdat %llu %d", c->line,
                  cmd.chunk_size, cmd.last);
        } else {
            CHECK(!cmd.arg && !cmd.path.local && !cmd.envid && !cmd.orcpt,
                  "[%s] cmd not cleared on error", c->line);
        }
        smtp_cmd_clear(&cmd);
    }
    /* A NUL byte inside the line. */
    struct smtp_cmd cmd;
    struct smtp_err err;
    CHECK(smtp_parse_cmd("NOOP a\0b", 8, &cmd, &err) == -1 && err.code == 500,
          "NUL in line accepted");
    smtp_cmd_clear(&cmd);
    CHECK(smtp_parse_cmd("MAIL FROM:<a\0@b>", 16, &cmd, &err) == -1 && err.code == 500,
          "NUL in address accepted");
    smtp_cmd_clear(&cmd);
    /* UTF-8 recipient is flagged so that the session can refuse it without SMTPUTF8. */
    CHECK(smtp_parse_cmd("RCPT TO:<\xc3\xa9@x>", 14, &cmd, &err) == 0 &&
              (cmd.path.flags & ADDR_F_UTF8),
          "UTF-8 recipient not flagged");
    smtp_cmd_clear(&cmd);
    CHECK(strcmp(smtp_verb_name(SMTP_V_STARTTLS), "STARTTLS") == 0 &&
              strcmp(smtp_verb_name(SMTP_V_COUNT), "UNKNOWN") == 0,
          "verb names");
}

static void test_xtext(void)
{
    struct {
        const char *in, *out;
    } t[] = {
        {"abc", "abc"},  {"a+2Bb", "a+b"}, {"+3D", "="},       {"+3d", "="},  {"", ""},
        {"a+", NULL},    {"a+2", NULL},    {"a+G0", NULL},     {"a=b", NULL}, {"a b", NULL},
        {"a\x7f", NULL}, {"+00", NULL},    {"\xc3\xa9", NULL},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char *o = smtp_xtext_decode(t[i].in, strlen(t[i].in));
        CHECK(str_eq_null(o, t[i].out), "xtext [%s] -> [%s] want [%s]", t[i].in, o ? o : "(null)",
              t[i].out ? t[i].out : "(null)");
        free(o);
    }
}

/* ---- data scanner ---- */

struct data_case {
    const char *in;
    size_t in_len; /* 0: strlen */
    int bdat;
    size_t consumed; /* (size_t)-1: all */
    int done;
    const char *out;
    size_t out_len; /* 0: strlen */
    unsigned flags;
    int in_headers, received;
};

#define ALL ((size_t)-1)
#define BLF SMTP_DATA_BARE_LF
#define BCR SMTP_DATA_BARE_CR

static const struct data_case data_cases[] = {
    /* plain messages */
    {"Subject: x\r\n\r\nbody\r\n.\r\n", 0, 0, ALL, 1, "Subject: x\r\n\r\nbody\r\n", 0, 0, 0, 0},
    {".\r\n", 0, 0, ALL, 1, "", 0, 0, 1, 0},
    {".\r\nMAIL FROM:<x@y>\r\n", 0, 0, 3, 1, "", 0, 0, 1, 0},
    {"a\r\n.\r\nRSET\r\n", 0, 0, 6, 1, "a\r\n", 0, 0, 1, 0},
    {"a\r\n.\r", 0, 0, ALL, 0, "a\r\n", 0, 0, 1, 0},
    /* dot-unstuffing (RFC 5321 4.5.2) */
    {"..\r\n.\r\n", 0, 0, ALL, 1, ".\r\n", 0, 0, 1, 0},
    {"a\r\n..b\r\n...\r\n.\r\n", 0, 0, ALL, 1, "a\r\n.b\r\n..\r\n", 0, 0, 1, 0},
    {".a\r\n.\r\n", 0, 0, ALL, 1, "a\r\n", 0, 0, 1, 0},
    {"a.\r\n.\r\n", 0, 0, ALL, 1, "a.\r\n", 0, 0, 1, 0},
    {"..\r\n", 0, 1, ALL, 0, "..\r\n", 0, 0, 1, 0},
    /* smuggling: none of these end the message */
    {"a\n.\nb\r\n.\r\n", 0, 0, ALL, 1, "a\n.\nb\r\n", 0, BLF, 1, 0},
    {"a\r.\rb\r\n.\r\n", 0, 0, ALL, 1, "a\r.\rb\r\n", 0, BCR, 1, 0},
    {"a\n.\r\nb\r\n.\r\n", 0, 0, ALL, 1, "a\n.\r\nb\r\n", 0, BLF, 1, 0},
    {"a\r\n.\nb\r\n.\r\n", 0, 0, ALL, 1, "a\r\n\nb\r\n", 0, BLF, 0, 0},
    {"a\r\n.\rb\r\n.\r\n", 0, 0, ALL, 1, "a\r\n\rb\r\n", 0, BCR, 1, 0},
    {"a\r\n.\r\rb\r\n.\r\n", 0, 0, ALL, 1, "a\r\n\r\rb\r\n", 0, BCR, 1, 0},
    {"a\r\r\n.\r\n", 0, 0, ALL, 1, "a\r\r\n", 0, BCR, 1, 0},
    {"a\r\n\n.\r\nb\r\n.\r\n", 0, 0, ALL, 1, "a\r\n\n.\r\nb\r\n", 0, BLF, 0, 0},
    {"a\n.\n", 0, 0, ALL, 0, "a\n.\n", 0, BLF, 1, 0},
    {"a\r.\r", 0, 0, ALL, 0, "a\r.\r", 0, BCR, 1, 0},
    {"a\r\n.\n", 0, 0, ALL, 0, "a\r\n\n", 0, BLF, 0, 0},
    {"\n.\r\n", 0, 0, ALL, 0, "\n.\r\n", 0, BLF, 0, 0},
    {"a\r\n.\r.\r\n", 0, 0, ALL, 0, "a\r\n\r.\r\n", 0, BCR, 1, 0},
    {"a\n.\r\n.\r\n", 0, 0, ALL, 1, "a\n.\r\n", 0, BLF, 1, 0},
    /* BDAT: no end marker, same flags */
    {"a\r\n.\r\nb", 0, 1, ALL, 0, "a\r\n.\r\nb", 0, 0, 1, 0},
    {"a\nb\rc", 0, 1, ALL, 0, "a\nb\rc", 0, BLF | BCR, 1, 0},
    /* NUL */
    {"a\0b\r\n.\r\n", 8, 0, ALL, 1, "a\0b\r\n", 5, SMTP_DATA_NUL, 1, 0},
    /* header counting */
    {"Received: a\r\nreceived : b\r\nRECEIVED:c\r\n\r\nReceived: d\r\n.\r\n", 0, 0, ALL, 1,
     "Received: a\r\nreceived : b\r\nRECEIVED:c\r\n\r\nReceived: d\r\n", 0, 0, 0, 3},
    {"X-Received: a\r\nReceivedX: b\r\n Received: c\r\nReceived-SPF: d\r\nReceive: e\r\n.\r\n", 0,
     0, ALL, 1,
     "X-Received: a\r\nReceivedX: b\r\n Received: c\r\nReceived-SPF: d\r\nReceive: e\r\n", 0, 0, 1,
     0},
    {"..Received: a\r\n.\r\n", 0, 0, ALL, 1, ".Received: a\r\n", 0, 0, 1, 0},
    {".Received: a\r\n.\r\n", 0, 0, ALL, 1, "Received: a\r\n", 0, 0, 1, 1},
    {"\r\nReceived: a\r\n.\r\n", 0, 0, ALL, 1, "\r\nReceived: a\r\n", 0, 0, 0, 0},
    {"Received: a\n\nReceived: b\n", 0, 1, ALL, 0, "Received: a\n\nReceived: b\n", 0, BLF, 0, 1},
    {"Received: a\r\nReceived: b\r\n", 0, 1, ALL, 0, "Received: a\r\nReceived: b\r\n", 0, 0, 1, 2},
    {"A: b\r\n\r\n", 0, 1, ALL, 0, "A: b\r\n\r\n", 0, 0, 0, 0},
};

struct result {
    struct buf out;
    size_t consumed;
    struct smtp_data d;
};

/* Feed in chunks of the given sizes (cycled; 0 = all at once). */
static void run(const char *in, size_t len, int bdat, size_t max_line, const size_t *chunks,
                size_t nchunks, struct result *r)
{
    size_t off = 0, k = 0;
    memset(&r->d, 0, sizeof r->d);
    r->d.bdat = bdat;
    r->d.max_line = max_line;
    buf_init(&r->out, 0);
    r->consumed = 0;
    do {
        size_t n = nchunks ? chunks[k++ % nchunks] : len;
        if (n > len - off) n = len - off;
        size_t c = smtp_data_feed(&r->d, in + off, n, &r->out);
        r->consumed += c;
        off += n;
        if (c < n || r->d.done) break;
    } while (off < len);
}

static int same(const struct result *a, const struct result *b)
{
    return a->consumed == b->consumed && a->out.len == b->out.len &&
           memcmp(a->out.data ? a->out.data : "", b->out.data ? b->out.data : "", a->out.len) ==
               0 &&
           a->d.flags == b->d.flags && a->d.done == b->d.done &&
           a->d.in_headers == b->d.in_headers && a->d.received == b->d.received;
}

static unsigned rnd_state = 12345;
static size_t rnd(size_t n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 16) % n;
}

static void test_data(void)
{
    for (size_t i = 0; i < sizeof data_cases / sizeof data_cases[0]; i++) {
        const struct data_case *c = &data_cases[i];
        size_t len = c->in_len ? c->in_len : strlen(c->in);
        size_t olen = c->out_len ? c->out_len : strlen(c->out);
        size_t want = c->consumed == ALL ? len : c->consumed;
        struct result r, b;
        run(c->in, len, c->bdat, 998, NULL, 0, &r);
        CHECK(r.consumed == want, "data %zu: consumed %zu want %zu", i, r.consumed, want);
        CHECK(r.d.done == c->done, "data %zu: done %d want %d", i, r.d.done, c->done);
        CHECK(r.out.len == olen && memcmp(r.out.data ? r.out.data : "", c->out, olen) == 0,
              "data %zu: output differs (%zu bytes, want %zu)", i, r.out.len, olen);
        CHECK(r.d.flags == c->flags, "data %zu: flags %u want %u", i, r.d.flags, c->flags);
        CHECK(r.d.in_headers == c->in_headers && r.d.received == c->received,
              "data %zu: in_headers %d received %d, want %d %d", i, r.d.in_headers, r.d.received,
              c->in_headers, c->received);
        /* byte by byte, and random chunkings, give the same result */
        size_t one = 1;
        run(c->in, len, c->bdat, 998, &one, 1, &b);
        CHECK(same(&r, &b), "data %zu: byte-by-byte differs", i);
        buf_release(&b.out);
        for (int t = 0; t < 20; t++) {
            size_t ch[4] = {1 + rnd(5), 1 + rnd(3), 1 + rnd(7), 1 + rnd(2)};
            run(c->in, len, c->bdat, 998, ch, 4, &b);
            CHECK(same(&r, &b), "data %zu: chunking %zu,%zu,%zu,%zu differs", i, ch[0], ch[1],
                  ch[2], ch[3]);
            buf_release(&b.out);
        }
        buf_release(&r.out);
    }
}

static void test_data_misc(void)
{
    struct result r;
    /* line length: exactly max is fine, max+1 is flagged; CRLF does not count. */
    run("abcd\r\n.\r\n", 9, 0, 4, NULL, 0, &r);
    CHECK(r.d.flags == 0 && r.d.done, "line of max_line flagged");
    buf_release(&r.out);
    run("abcde\r\n.\r\n", 10, 0, 4, NULL, 0, &r);
    CHECK(r.d.flags == SMTP_DATA_LONG_LINE && r.d.done, "long line not flagged");
    buf_release(&r.out);
    run("..bcd\r\n.\r\n", 10, 0, 4, NULL, 0, &r);
    CHECK(r.d.flags == 0, "stuffed dot counted in line length");
    buf_release(&r.out);
    run("ab\r\ncde\r\n", 9, 1, 3, NULL, 0, &r);
    CHECK(r.d.flags == 0, "BDAT short lines flagged");
    buf_release(&r.out);
    /* default max_line is 998 */
    char big[1200];
    memset(big, 'x', sizeof big);
    memcpy(big + 998, "\r\n", 2);
    run(big, 1000, 1, 0, NULL, 0, &r);
    CHECK(r.d.flags == 0, "998-byte line flagged");
    buf_release(&r.out);
    run(big, 1100, 1, 0, NULL, 0, &r);
    CHECK(r.d.flags == 0, "999-byte line after CRLF flagged too early");
    buf_release(&r.out);
    memset(big, 'x', sizeof big);
    run(big, 999, 1, 0, NULL, 0, &r);
    CHECK(r.d.flags == SMTP_DATA_LONG_LINE, "999-byte line not flagged");
    buf_release(&r.out);

    /* After the end, further feeds consume nothing; NULL out only scans. */
    struct smtp_data d;
    memset(&d, 0, sizeof d);
    d.max_line = 998;
    CHECK(smtp_data_feed(&d, "x\r\n.\r\nQUIT\r\n", 12, NULL) == 6 && d.done, "NULL out");
    CHECK(smtp_data_feed(&d, "QUIT\r\n", 6, NULL) == 0, "feed after done consumed bytes");
    /* A long message fed in random chunks equals the one-shot result. */
    struct buf m;
    buf_init(&m, 0);
    const char *pieces[] = {"\r\n",      ".", "..", "\n", "\r", "Received: x",
                            "\r\n.\r\n", "a", "\0", " ",  ":",  "\r\n\r\n"};
    for (int k = 0; k < 3000; k++) {
        size_t p = rnd(sizeof pieces / sizeof pieces[0]);
        buf_append(&m, pieces[p], pieces[p][0] ? strlen(pieces[p]) : 1);
    }
    for (int bdat = 0; bdat < 2; bdat++) {
        struct result a, b;
        size_t one = 1;
        run(m.data, m.len, bdat, 10, NULL, 0, &a);
        run(m.data, m.len, bdat, 10, &one, 1, &b);
        CHECK(same(&a, &b), "random message byte-by-byte differs (bdat %d)", bdat);
        buf_release(&b.out);
        for (int t = 0; t < 50; t++) {
            size_t ch[3] = {1 + rnd(40), 1 + rnd(3), 1 + rnd(200)};
            run(m.data, m.len, bdat, 10, ch, 3, &b);
            CHECK(same(&a, &b), "random message chunking differs (bdat %d)", bdat);
            buf_release(&b.out);
        }
        buf_release(&a.out);
    }
    buf_release(&m);
}

int main(void)
{
    test_cmds();
    test_xtext();
    test_data();
    test_data_misc();
    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0;
}
