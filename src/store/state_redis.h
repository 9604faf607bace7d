/* state_redis.h: private to store/ (sqlite.c, sqlite_state.c, state_redis.c,
 * redis_conn.c): the policy state several nodes share, in Redis. sqlite_state.c's
 * functions call these when store_attach_redis() ran; each has the contract of its
 * store.h namesake. Not for other modules: their contract is store.h. */
#ifndef KURIER_STORE_STATE_REDIS_H
#define KURIER_STORE_STATE_REDIS_H

#include <stddef.h>

#include "store/store.h"

struct redis_state;

/* The connections and settings store_attach_redis() made (redis_conn.c); NULL: nothing. */
void redis_state_free(struct redis_state *rs);

/* sender and rcpt already lowercased. */
int redis_grey_check(struct redis_state *rs, const char *net, const char *sender, const char *rcpt,
                     const struct store_grey_params *p, long long now,
                     struct store_grey_result *out);
int redis_grey_list(struct redis_state *rs,
                    void (*triplet)(void *arg, const struct store_grey_triplet *t),
                    void (*net)(void *arg, const struct store_grey_net *n), void *arg);
int redis_grey_clear(struct redis_state *rs, const char *net, const char *sender, long *ntriplets,
                     long *nnets);
int redis_grey_allow(struct redis_state *rs, const char *net, long long passes, long long now);

int redis_bench_put(struct redis_state *rs, const char *addr, const char *dest, const char *reason,
                    long long since, long long until);
int redis_bench_del(struct redis_state *rs, const char *addr, const char *dest);
int redis_bench_list(struct redis_state *rs,
                     void (*cb)(void *arg, const char *addr, const char *dest, const char *reason,
                                long long since, long long until),
                     void *arg);

int redis_listing_put(struct redis_state *rs, const struct store_listing *l, int history);
int redis_listing_list(struct redis_state *rs, const char *address,
                       void (*cb)(void *arg, const struct store_listing *l), void *arg);
int redis_listing_history(struct redis_state *rs, const char *address, int limit,
                          void (*cb)(void *arg, const struct store_listing *l), void *arg);

/* address already lowercased. */
int redis_verify_get(struct redis_state *rs, const char *kind, const char *address, long long now,
                     struct store_verify *out);
int redis_verify_put(struct redis_state *rs, const char *kind, const char *address,
                     const struct store_verify *v);

int redis_lock_put(struct redis_state *rs, const struct store_abuse_lock *l);
int redis_lock_del(struct redis_state *rs, const char *account);
/* Every lock into a new array (*n set; free() it), by account. *fresh: 1 when this
 * Redis has no data of ours (first start, or a restart that lost its data): nothing
 * listed; the caller writes the locks it knows again, then redis_mark(). 0 done, -1
 * error. */
int redis_lock_all(struct redis_state *rs, struct store_abuse_lock **out, size_t *n, int *fresh);
/* Mark this Redis as holding our data (a key without TTL). 0 done, -1 error. */
int redis_mark(struct redis_state *rs);

int redis_evidence_add(struct redis_state *rs, const struct store_abuse_evidence *e);
int redis_evidence_list(struct redis_state *rs, const char *account, long long since, int limit,
                        void (*cb)(void *arg, const struct store_abuse_evidence *e), void *arg);
int redis_evidence_clear(struct redis_state *rs, const char *account, long long before);

#endif
