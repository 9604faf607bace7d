/* store.h: the directory (domains, mailboxes, aliases, credentials) and policy
 * state. Backend today: SQLite, embedded (store/sqlite.c). All calls block briefly:
 * the daemon calls them from worker threads (core/work.h), the CLI directly. One
 * struct store may be used from several threads (SQLite serialized mode). */
#ifndef KURIER_STORE_H
#define KURIER_STORE_H

#include <stddef.h>

struct store;

/* Open the directory database at path; create the file and schema when create is
 * set. owner: when non-NULL and running as root, chown the database files to that
 * user so the daemon can use them after dropping privileges.
 * NULL on error with err filled. */
struct store *store_open(const char *path, int create, const char *owner, char *err,
                         size_t errsize);
void store_free(struct store *st);

/* Every function below returns 0 done, -1 failed with err filled ("no such domain
 * example.org", "mailbox demo@example.test exists", database errors), unless it says
 * otherwise. Domains and local parts are compared case-insensitively, as every
 * mailbox provider does (stored lowercased). */

struct store_domain {
    char name[256];
    char catchall[320]; /* "" = none: mail to unknown users is refused at RCPT */
};
int store_domain_add(struct store *st, const char *name, char *err, size_t errsize);
int store_domain_del(struct store *st, const char *name, char *err, size_t errsize);
/* catchall: local part or full address that receives mail for unknown users; ""
 * or NULL turns it off. */
int store_domain_set_catchall(struct store *st, const char *name, const char *catchall, char *err,
                              size_t errsize);
/* 1 found (out filled when non-NULL), 0 not found, -1 error. */
int store_domain_get(struct store *st, const char *name, struct store_domain *out);
int store_domain_list(struct store *st, void (*cb)(void *arg, const struct store_domain *d),
                      void *arg);

struct store_mailbox {
    char address[320]; /* local@domain, lowercased */
    long long quota;   /* bytes, 0 = unlimited */
};
/* password is hashed with crypt(3) (yescrypt "$y$", the Debian 12 default; Dovecot
 * reads it as {CRYPT}). The domain must exist. */
int store_mailbox_add(struct store *st, const char *address, const char *password, long long quota,
                      char *err, size_t errsize);
int store_mailbox_del(struct store *st, const char *address, char *err, size_t errsize);
int store_mailbox_passwd(struct store *st, const char *address, const char *password, char *err,
                         size_t errsize);
int store_mailbox_set_quota(struct store *st, const char *address, long long quota, char *err,
                            size_t errsize);
/* 1 found, 0 not found, -1 error. */
int store_mailbox_get(struct store *st, const char *address, struct store_mailbox *out);
/* As store_mailbox_get, but only an active mailbox counts (route.c uses it):
 * 1 found and active, 0 not found or disabled, -1 error. */
int store_mailbox_lookup(struct store *st, const char *address, struct store_mailbox *out);
int store_mailbox_list(struct store *st, const char *domain /* NULL = all */,
                       void (*cb)(void *arg, const struct store_mailbox *m), void *arg);
/* 1 password matches, 0 does not (or no such mailbox), -1 error. Constant effort
 * whether or not the mailbox exists (a dummy hash is checked). */
int store_mailbox_auth(struct store *st, const char *address, const char *password);

/* Aliases: source address -> target address (local mailbox, another alias, or an
 * external address once outbound delivery exists). Several rows per source. */
int store_alias_add(struct store *st, const char *source, const char *target, char *err,
                    size_t errsize);
/* target NULL: delete every target of source. */
int store_alias_del(struct store *st, const char *source, const char *target, char *err,
                    size_t errsize);
/* Targets of source into a new array of new strings (*n set). 1 found, 0 none, -1
 * error. Free with store_strv_free(). */
int store_alias_get(struct store *st, const char *source, char ***targets, size_t *n);
int store_alias_list(struct store *st,
                     void (*cb)(void *arg, const char *source, const char *target), void *arg);
void store_strv_free(char **v, size_t n);

#endif
