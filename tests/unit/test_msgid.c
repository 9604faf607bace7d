/* test_msgid.c: the Message-ID scanner (queue/msgid.h) on whole headers and on every
 * split of them: the first field only, folded values, any case, none in the body,
 * CRLF and LF, control bytes escaped, long values cut. */
#include "core/compat.h"

#include "check.h"
#include "core/core.h"
#include "queue/msgid.h"

static const struct {
    const char *msg, *want;
} cases[] = {
    {"Message-ID: <a@example.org>\r\n\r\nbody\r\n", "<a@example.org>"},
    {"From: x\r\nmessage-id:   <b@x>  \r\nSubject: s\r\n\r\n", "<b@x>"},
    {"MESSAGE-ID:\r\n <folded@x>\r\n\r\n", "<folded@x>"},
    {"Message-ID: <one@x>\nMessage-ID: <two@x>\n\n", "<one@x>"},
    {"Subject: no id\r\n\r\nMessage-ID: <in-body@x>\r\n", ""},
    {"X-Message-ID: <not@x>\r\nMessage-IDs: <no@x>\r\n\r\n", ""},
    {"Subject: a\r\n Message-ID: <folded-into-subject@x>\r\n\r\n", ""},
    {"Message-ID: <c\001d@x>\r\n\r\n", "<c\\x01d@x>"},
    {"Message-ID: <last@x>", "<last@x>"},
    {"", ""},
};

static char *scan_split(const char *msg, size_t cut)
{
    struct msgid_scan s = {0};
    size_t n = strlen(msg);
    if (cut > n) cut = n;
    msgid_scan(&s, msg, cut);
    msgid_scan(&s, msg + cut, n - cut);
    return msgid_scan_take(&s);
}

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].msg);
        for (size_t cut = 0; cut <= n; cut++) {
            char *got = scan_split(cases[i].msg, cut);
            CHECK(strcmp(got, cases[i].want) == 0, "case %zu cut %zu: [%s] want [%s]", i, cut, got,
                  cases[i].want);
            free(got);
        }
    }
    /* a value longer than MSGID_MAX is cut, and the line says so */
    struct buf b;
    buf_init(&b, 0);
    buf_puts(&b, "Message-ID: <");
    for (int i = 0; i < 400; i++)
        buf_puts(&b, "x");
    buf_puts(&b, "@x>\r\n\r\n");
    struct msgid_scan s = {0};
    msgid_scan(&s, b.data, b.len);
    char *got = msgid_scan_take(&s);
    CHECK(strncmp(got, "<xxx", 4) == 0 && strlen(got) < 300 &&
              strcmp(got + strlen(got) - 3, "...") == 0,
          "long value cut: %s", got);
    free(got);
    buf_release(&b);
    return check_summary();
}
