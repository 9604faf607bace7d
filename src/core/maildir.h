/* maildir.h: where a mailbox lives on disk and how much it holds. deliver/ writes
 * into it; policy/ measures it for the RCPT-time quota check. */
#ifndef KURIER_MAILDIR_H
#define KURIER_MAILDIR_H

/* <root>/<domain>/<local>/Maildir for a mailbox address (domain lowercased) as a new
 * string, or NULL when the address cannot name a directory (no '@', an empty, hidden
 * or '/'-containing part). */
char *maildir_path_new(const char *root, const char *address);
/* Bytes used by a mailbox's Maildir (new + cur: the ",S=" size in a file name, else
 * the file's size); 0 when the Maildir does not exist yet, -1 when the address names
 * no directory or a folder cannot be read. Blocks: call from a worker thread. */
long long maildir_usage(const char *root, const char *address);

#endif
