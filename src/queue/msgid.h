/* msgid.h: the Message-ID field of a message as it streams into the spool, for the
 * "ID: message-id=<...>" log line (as Postfix's cleanup logs it). */
#ifndef KURIER_MSGID_H
#define KURIER_MSGID_H

#include <stddef.h>

#define MSGID_MAX 256 /* longer values are cut (the log line says so with "...") */

/* Zeroed is the start state. Scans the header only; the body costs nothing. */
struct msgid_scan {
    int state;  /* MSGID_* in msgid.c */
    int name;   /* bytes of "message-id:" matched in the current field name, -1 none */
    int found;  /* the first Message-ID field was seen */
    size_t len; /* bytes in val */
    char val[MSGID_MAX];
};

/* Feed the next len bytes of the message (any split, CRLF or LF line ends). */
void msgid_scan(struct msgid_scan *s, const void *p, size_t len);
/* The field's value, unfolded, trimmed and escaped for a log line (log_escape()): a
 * new string, "" when the header had no Message-ID field. The caller frees it. */
char *msgid_scan_take(const struct msgid_scan *s);

#endif
