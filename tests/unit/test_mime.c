/* test_mime.c: table tests for the MIME writers (core/mime.c): folded header fields,
 * RFC 2047 encoded words, quoted-printable. */
#include "core/compat.h"

#include "core/core.h"

#include "check.h"

static const struct {
    const char *name, *value, *out;
} field_cases[] = {
    {"To", "<a@b>", "To: <a@b>\r\n"},
    {"X", "  two   spaces  ", "X: two spaces\r\n"},
    {"Diagnostic-Code",
     "smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in "
     "virtual mailbox table",
     "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.org>: Recipient address\r\n"
     " rejected: User unknown in virtual mailbox table\r\n"},
    /* a word longer than a line stays whole */
    {"A", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx y",
     "A: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n "
     "y\r\n"},
};

static const struct {
    const char *in, *out;
} word_cases[] = {
    {"Zustellbericht", "=?UTF-8?Q?Zustellbericht?="},
    {"a b=c?", "=?UTF-8?Q?a_b=3Dc=3F?="},
    {"Verzögerte Zustellung (wird weiter versucht)",
     "=?UTF-8?Q?Verz=C3=B6gerte_Zustellung_=28wird_weiter_versucht=29?="},
    /* each word at most 75 characters (10 "ö" fill 72); "ö" is never split over two words */
    {"ööööööööööööööööööööö",
     "=?UTF-8?Q?=C3=B6=C3=B6=C3=B6=C3=B6=C3=B6=C3=B6=C3=B6=C3=B6=C3=B6=C3=B6?=\r\n"
     " =?UTF-8?Q?=C3=B6=C3=B6=C3=B6=C3=B6=C3=B6=C3=B6=C3=B6=C3=B6=C3=B6=C3=B6?=\r\n"
     " =?UTF-8?Q?=C3=B6?="},
};

static const struct {
    const char *in, *out;
} qp_cases[] = {
    {"plain\r\n", "plain\r\n"},
    {"a=b\r\n", "a=3Db\r\n"},
    {"Grüße\r\n", "Gr=C3=BC=C3=9Fe\r\n"},
    {"trailing space \r\nend\t", "trailing space=20\r\nend=09"},
    /* soft line break ("=" CRLF) so no line passes 76 characters; QP works on bytes */
    {"ääääääääääääää",
     "=C3=A4=C3=A4=C3=A4=C3=A4=C3=A4=C3=A4=C3=A4=C3=A4=C3=A4=C3=A4=C3=A4=C3=A4=C3="
     "\r\n=A4=C3=A4"},
};

int main(void)
{
    for (size_t i = 0; i < sizeof field_cases / sizeof *field_cases; i++) {
        struct buf b;
        buf_init(&b, 0);
        mime_put_field(&b, field_cases[i].name, field_cases[i].value);
        buf_append(&b, "", 1);
        CHECK(strcmp(b.data, field_cases[i].out) == 0, "field %zu: [%s]", i, b.data);
        buf_release(&b);
    }
    for (size_t i = 0; i < sizeof word_cases / sizeof *word_cases; i++) {
        struct buf b;
        buf_init(&b, 0);
        mime_put_encoded_words(&b, word_cases[i].in);
        buf_append(&b, "", 1);
        CHECK(strcmp(b.data, word_cases[i].out) == 0, "words %zu: [%s]", i, b.data);
        buf_release(&b);
    }
    for (size_t i = 0; i < sizeof qp_cases / sizeof *qp_cases; i++) {
        struct buf b;
        buf_init(&b, 0);
        mime_put_qp(&b, qp_cases[i].in, strlen(qp_cases[i].in));
        buf_append(&b, "", 1);
        CHECK(strcmp(b.data, qp_cases[i].out) == 0, "qp %zu: [%s]", i, b.data);
        buf_release(&b);
    }
    return check_summary();
}
