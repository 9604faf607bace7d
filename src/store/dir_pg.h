/* dir_pg.h: private to store/ (sqlite.c and sqlite_dir.c call it): the directory in
 * PostgreSQL. sqlite_dir.c validates and lowercases every argument, hashes passwords and builds
 * error texts the same way for both backends, then calls these with clean values; they only run
 * SQL. Every call blocks (libpq, one connection per calling thread at a time from a
 * small pool) and is bounded by a timeout; any thread may call. Return conventions are
 * store.h's: 0 done, -1 failed with err filled ("database error: PostgreSQL: ..." when
 * the server is unreachable); lookups 1 found, 0 not, -1 error. */
#ifndef KURIER_STORE_DIR_PG_H
#define KURIER_STORE_DIR_PG_H

#include <stddef.h>

#include "store/store.h"

struct dir_pg;

/* A handle for the database named by conninfo (libpq's "key=value ..." or a
 * postgresql:// URI). Connects at once to create the schema; when the server cannot be
 * reached that is only logged, and the next call tries again (after a backoff of up to
 * 5 s between attempts). NULL with err filled when conninfo does not parse. */
struct dir_pg *dir_pg_new(const char *conninfo, char *err, size_t errsize);
void dir_pg_free(struct dir_pg *pg);

int dir_pg_domain_add(struct dir_pg *pg, const char *d, char *err, size_t errsize);
/* *nm, *na: the mailboxes and aliases that keep d from being deleted (the caller builds
 * the message); 0 deleted or refused (see the counts), -1 error (also "no such domain"). */
int dir_pg_domain_del(struct dir_pg *pg, const char *d, long long *nm, long long *na, char *err,
                      size_t errsize);
int dir_pg_domain_set(struct dir_pg *pg, const char *d, const char *column, const char *value,
                      char *err, size_t errsize); /* column "catchall" or "sender_binding" */
int dir_pg_domain_get(struct dir_pg *pg, const char *d, struct store_domain *out);
int dir_pg_domain_list(struct dir_pg *pg, void (*cb)(void *arg, const struct store_domain *d),
                       void *arg);
/* The sender binding mode's text into mode (>= 16 bytes): 1 found, 0 no such domain, -1. */
int dir_pg_domain_binding(struct dir_pg *pg, const char *d, char *mode, size_t modesize);

int dir_pg_mailbox_add(struct dir_pg *pg, const char *a, const char *local, const char *domain,
                       const char *hash, long long quota, char *err, size_t errsize);
/* Insert or replace a whole row (import). */
int dir_pg_mailbox_load(struct dir_pg *pg, const struct store_mailbox_row *m, const char *local,
                        const char *domain, char *err, size_t errsize);
int dir_pg_mailbox_del(struct dir_pg *pg, const char *a, char *err, size_t errsize);
int dir_pg_mailbox_passwd(struct dir_pg *pg, const char *a, const char *hash, char *err,
                          size_t errsize);
int dir_pg_mailbox_set_quota(struct dir_pg *pg, const char *a, long long quota, char *err,
                             size_t errsize);
int dir_pg_mailbox_get(struct dir_pg *pg, const char *a, int active_only,
                       struct store_mailbox *out);
int dir_pg_mailbox_list(struct dir_pg *pg, const char *domain /* NULL all */,
                        void (*cb)(void *arg, const struct store_mailbox *m), void *arg);
int dir_pg_mailbox_dump(struct dir_pg *pg, void (*cb)(void *arg, const struct store_mailbox_row *m),
                        void *arg);
/* The password hash of an active mailbox into a new string: 1 found, 0 not, -1 error. */
int dir_pg_mailbox_hash(struct dir_pg *pg, const char *a, char **hash);

int dir_pg_alias_add(struct dir_pg *pg, const char *s, const char *t, const char *sdomain,
                     char *err, size_t errsize);
int dir_pg_alias_del(struct dir_pg *pg, const char *s, const char *t /* NULL all */, char *err,
                     size_t errsize);
int dir_pg_alias_get(struct dir_pg *pg, const char *s, char ***targets, size_t *n);
int dir_pg_alias_list(struct dir_pg *pg, void (*cb)(void *arg, const char *s, const char *t),
                      void *arg);

int dir_pg_grant_add(struct dir_pg *pg, const char *u, const char *g, char *err, size_t errsize);
int dir_pg_grant_del(struct dir_pg *pg, const char *u, const char *g, char *err, size_t errsize);
int dir_pg_grant_list(struct dir_pg *pg, const char *u /* NULL all */,
                      void (*cb)(void *arg, const char *u, const char *g), void *arg);
/* store_sender_owned()'s alias walk and grants: 1, 0, -1. dgrant: "@domain" or "". */
int dir_pg_sender_owned(struct dir_pg *pg, const char *u, const char *a, const char *dgrant);

int dir_pg_relay_add(struct dir_pg *pg, const struct store_relay *r, char *err, size_t errsize);
int dir_pg_relay_del(struct dir_pg *pg, const char *m, char *err, size_t errsize);
/* a: the sender address, d: "@domain"; the exact address wins. */
int dir_pg_relay_get(struct dir_pg *pg, const char *a, const char *d, struct store_relay *out);
int dir_pg_relay_list(struct dir_pg *pg, void (*cb)(void *arg, const struct store_relay *r),
                      void *arg);

#endif
