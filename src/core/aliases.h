/* aliases.h: the local aliases file in /etc/aliases format (aliases(5), as sendmail
 * and Postfix read it): "name: target, target", "#" comments, a line starting with
 * white space continues the one before. Targets are addresses or local names
 * (route/ qualifies those with hostname); files, commands and :include: are refused
 * with the reason. Read by conf_load() for the daemon and by newaliases. */
#ifndef KURIER_ALIASES_H
#define KURIER_ALIASES_H

#include <stddef.h>

struct conf_errors;

#define ALIASES_FILE_MAX (4 * 1024 * 1024) /* bytes; a bigger file is refused */

struct alias_entry {
    char *name;     /* lowercased local name ("root", "mailer-daemon") */
    char **targets; /* lowercased: "name" or "local@domain" */
    size_t ntargets;
    int line; /* where it was written, for messages */
};

struct aliases {
    struct alias_entry *v;
    size_t n;
};

/* Parse text (len bytes, NUL-terminated) of file (for messages only). Every error
 * goes to errs as "file:line: reason" (the bad name or target named). Returns a new
 * table, or NULL when there was any error. Pure. */
struct aliases *aliases_parse(const char *file, const char *text, size_t len,
                              struct conf_errors *errs);
/* Read and parse file: aliases_parse() of its content; a file that cannot be read
 * or is larger than ALIASES_FILE_MAX is one error. */
struct aliases *aliases_load(const char *file, struct conf_errors *errs);
/* The entry of name (case-insensitive), or NULL. Borrowed from a. */
const struct alias_entry *aliases_find(const struct aliases *a, const char *name);
/* NULL does nothing. */
void aliases_free(struct aliases *a);

#endif
