/* redis_conn.h: private to store/ (redis_conn.c, state_redis.c): the connections to
 * the shared state's Redis that redis_conn.c lends state_redis.c. A pool of blocking
 * hiredis contexts, the master found directly or through Sentinel; a down Redis fails
 * every call at once until the backoff has passed. Not for other modules: their
 * contract is store.h. Any thread (the workers). */
#ifndef KURIER_STORE_REDIS_CONN_H
#define KURIER_STORE_REDIS_CONN_H

#include <hiredis/hiredis.h>

struct redis_state;

/* One context taken from the pool for the length of one store call. */
struct rconn {
    struct redis_state *rs;
    redisContext *c;
    int bad; /* I/O error or failover: freed, not given back */
};

/* The prefix of every key (state prefix, "kurier:" by default); borrowed from rs. */
const char *rconn_prefix(const struct redis_state *rs);

/* A context for one call into *rc: 0 done, -1 Redis is down (at once while backing
 * off). Every rconn_get() that returned 0 is followed by one rconn_put(). */
int rconn_get(struct redis_state *rs, struct rconn *rc);
/* Give rc's context back to the pool, or free it when rc is bad. */
void rconn_put(struct rconn *rc);
/* A command on rc (printf-like, as redisCommand): the reply (freeReplyObject() it), or
 * NULL when rc is already bad, the connection is lost or Redis answers an error (logged;
 * a lost connection or a failover marks rc bad). */
redisReply *rconn_cmd(struct rconn *rc, const char *fmt, ...);
/* The same with argc arguments in argv (as redisCommandArgv). */
redisReply *rconn_cmdv(struct rconn *rc, int argc, const char **argv);
/* One command whose reply only says done, on a context of its own: 0 done, -1 failed. */
int rconn_exec(struct redis_state *rs, const char *fmt, ...);

#endif
