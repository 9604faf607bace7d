/* msgid.c: find the first Message-ID field in a streamed message header (RFC 5322
 * 3.6.4) for the log; pure, no I/O. What the value says is not checked: the log shows
 * what the message carries. */
#include "core/compat.h"

#include <ctype.h>

#include "core/core.h"
#include "queue/msgid.h"

enum { MSGID_BOL = 0, MSGID_FIELD, MSGID_CR_END, MSGID_BODY };

static const char pat[] = "message-id:";

void msgid_scan(struct msgid_scan *s, const void *p, size_t len)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < len && s->state != MSGID_BODY; i++) {
        unsigned char ch = c[i];
        switch (s->state) {
        case MSGID_BOL: /* first byte of a line in the header */
            if (ch == '\n') {
                s->state = MSGID_BODY; /* the empty line */
                break;
            }
            if (ch == '\r') {
                s->state = MSGID_CR_END;
                break;
            }
            s->state = MSGID_FIELD;
            if (ch == ' ' || ch == '\t') { /* folded: the field goes on */
                if (s->name == -2 && s->len < sizeof s->val) s->val[s->len++] = ' ';
                break;
            }
            if (s->name == -2) s->found = 1; /* the Message-ID field ended */
            /* the byte starts a field name */
            s->name = !s->found && (char)tolower(ch) == pat[0] ? 1 : -1;
            break;
        case MSGID_CR_END: /* "\r" at the start of a line: the end of the header */
            s->state = ch == '\n' ? MSGID_BODY : MSGID_FIELD;
            break;
        case MSGID_FIELD:
            if (ch == '\n') {
                s->state = MSGID_BOL;
            } else if (s->name == -2) { /* in the value */
                if (ch != '\r' && s->len < sizeof s->val) s->val[s->len++] = (char)ch;
            } else if (s->name >= 0) {
                if ((char)tolower(ch) != pat[s->name])
                    s->name = -1;
                else if (pat[++s->name] == '\0')
                    s->name = -2, s->len = 0;
            }
            break;
        }
    }
    if (s->state == MSGID_BODY && s->name == -2) s->found = 1;
}

char *msgid_scan_take(const struct msgid_scan *s)
{
    if (!s->found && s->name != -2) return xstrdup("");
    size_t a = 0, b = s->len;
    while (a < b && (s->val[a] == ' ' || s->val[a] == '\t'))
        a++;
    while (b > a && (s->val[b - 1] == ' ' || s->val[b - 1] == '\t'))
        b--;
    size_t size = 4 * (b - a) + 8;
    char *out = xmalloc(size);
    log_escape(out, size, s->val + a, b - a);
    if (s->len == sizeof s->val && size > 4) { /* cut: say so */
        size_t n = strlen(out);
        if (n + 4 <= size) memcpy(out + n, "...", 4);
    }
    return out;
}
