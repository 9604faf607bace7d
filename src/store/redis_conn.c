/* redis_conn.c: the connections to the shared state's Redis (docs/cluster.md): the
 * servers, passwords and timeout read from state { }, the master found directly or
 * through Sentinel, a small pool of blocking hiredis contexts and the backoff while
 * Redis is down. What is stored there, and how, is state_redis.c's. */
#include "core/compat.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>

#include "core/conf.h"
#include "core/core.h"
#include "store/redis_conn.h"
#include "store/sqlite_int.h"
#include "store/state_redis.h"
#include "store/store.h"

#define POOL_MAX 64         /* contexts open at most (a worker uses one at a time) */
#define BACKOFF_MIN_MS 100  /* first wait after a failure; doubles ... */
#define BACKOFF_MAX_MS 5000 /* ... up to this */

struct redis_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char **hosts;
    int *ports;
    size_t nhosts;
    char *master;                       /* sentinel_master, or NULL */
    char *password, *sentinel_password; /* AUTH, or NULL */
    char *prefix;
    int timeout_ms;
    redisContext *idle[POOL_MAX];
    size_t nidle, nopen;
    double down_until; /* time_mono(): no attempt before */
    int backoff_ms;
    int down; /* logged as down */
};

/* --- connections ----------------------------------------------------------------- */

static void rdown(struct redis_state *rs, const char *why)
{
    pthread_mutex_lock(&rs->mu);
    rs->down_until = time_mono() + rs->backoff_ms / 1000.0;
    if (!rs->down)
        log_warn("state", "Redis unreachable (%s): the fail modes of state { } apply; retrying",
                 why);
    rs->down = 1;
    rs->backoff_ms = rs->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : rs->backoff_ms * 2;
    pthread_mutex_unlock(&rs->mu);
}

/* A connection to host:port, authenticated with password (NULL: none). NULL with why
 * filled. */
static redisContext *connect_one(struct redis_state *rs, const char *host, int port,
                                 const char *password, char *why, size_t wsize)
{
    struct timeval tv = {.tv_sec = rs->timeout_ms / 1000,
                         .tv_usec = (suseconds_t)(rs->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        snprintf(why, wsize, "%s:%d: %s", host, port, c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(why, wsize, "%s:%d: cannot set the timeout", host, port);
        redisFree(c);
        return NULL;
    }
    if (password) {
        redisReply *r = redisCommand(c, "AUTH %s", password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            /* the password itself is never logged */
            snprintf(why, wsize, "%s:%d: AUTH refused (state %spassword_file): %s", host, port,
                     password == rs->sentinel_password ? "sentinel_" : "",
                     r              ? r->str
                     : c->errstr[0] ? c->errstr
                                    : "connection lost");
            if (r) freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    return c;
}

/* 1 when c is a master (a replica refuses writes); 0 with why filled. */
static int is_master(redisContext *c, char *why, size_t wsize)
{
    redisReply *r = redisCommand(c, "ROLE");
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
             r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "master") == 0;
    const char *host = c->tcp.host ? c->tcp.host : "?";
    if (ok)
        ;
    else if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOAUTH", 6) == 0)
        snprintf(why, wsize, "%s:%d wants a password (state password_file): %s", host, c->tcp.port,
                 r->str);
    else if (r && r->type == REDIS_REPLY_ERROR)
        snprintf(why, wsize, "%s:%d: %s", host, c->tcp.port, r->str);
    else
        snprintf(why, wsize, "%s:%d is not a master", host, c->tcp.port);
    if (r) freeReplyObject(r);
    return ok;
}

/* The master: the first server that is one, or the one the first Sentinel that
 * knows it names. NULL with why filled. */
static redisContext *rconnect(struct redis_state *rs, char *why, size_t wsize)
{
    for (size_t i = 0; i < rs->nhosts; i++) {
        redisContext *c =
            connect_one(rs, rs->hosts[i], rs->ports[i],
                        rs->master ? rs->sentinel_password : rs->password, why, wsize);
        if (!c) continue;
        if (rs->master) {
            redisReply *r = redisCommand(c, "SENTINEL get-master-addr-by-name %s", rs->master);
            char host[256] = "";
            int port = 0;
            if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                r->element[0]->type == REDIS_REPLY_STRING &&
                r->element[1]->type == REDIS_REPLY_STRING) {
                str_copy(host, r->element[0]->str, sizeof host);
                port = atoi(r->element[1]->str);
            }
            if (r && r->type == REDIS_REPLY_ERROR && port <= 0) {
                snprintf(why, wsize, "sentinel %s:%d%s: %s", rs->hosts[i], rs->ports[i],
                         strncmp(r->str, "NOAUTH", 6) == 0
                             ? " wants a password (state sentinel_password_file)"
                             : "",
                         r->str);
                freeReplyObject(r);
                redisFree(c);
                continue;
            }
            if (r) freeReplyObject(r);
            redisFree(c);
            if (port <= 0) {
                snprintf(why, wsize, "sentinel %s:%d does not name master %s", rs->hosts[i],
                         rs->ports[i], rs->master);
                continue;
            }
            c = connect_one(rs, host, port, rs->password, why, wsize);
            if (!c) continue;
        }
        if (is_master(c, why, wsize)) return c;
        redisFree(c);
    }
    return NULL;
}

/* A context for one call: 0 done, -1 Redis is down (at once while backing off). */
int rconn_get(struct redis_state *rs, struct rconn *rc)
{
    *rc = (struct rconn){.rs = rs};
    pthread_mutex_lock(&rs->mu);
    for (;;) {
        if (time_mono() < rs->down_until) {
            pthread_mutex_unlock(&rs->mu);
            return -1;
        }
        if (rs->nidle) {
            rc->c = rs->idle[--rs->nidle];
            pthread_mutex_unlock(&rs->mu);
            return 0;
        }
        if (rs->nopen < POOL_MAX) break;
        pthread_cond_wait(&rs->cv, &rs->mu);
    }
    rs->nopen++;
    pthread_mutex_unlock(&rs->mu);
    char why[512] = "no server";
    rc->c = rconnect(rs, why, sizeof why);
    if (rc->c) return 0;
    rdown(rs, why);
    pthread_mutex_lock(&rs->mu);
    rs->nopen--;
    pthread_cond_signal(&rs->cv);
    pthread_mutex_unlock(&rs->mu);
    return -1;
}

void rconn_put(struct rconn *rc)
{
    struct redis_state *rs = rc->rs;
    if (!rc->c) return;
    pthread_mutex_lock(&rs->mu);
    if (rc->bad) {
        redisFree(rc->c);
        rs->nopen--;
    } else {
        rs->idle[rs->nidle++] = rc->c;
        if (rs->down) {
            rs->down = 0;
            rs->backoff_ms = BACKOFF_MIN_MS;
            log_info("state", "Redis reachable again");
        }
    }
    rc->c = NULL;
    pthread_cond_signal(&rs->cv);
    pthread_mutex_unlock(&rs->mu);
}

/* The reply, or NULL (logged; a lost connection or a failover marks rc bad). */
static redisReply *rcheck(struct rconn *rc, redisReply *r)
{
    if (!r) {
        rc->bad = 1;
        rdown(rc->rs, rc->c->errstr[0] ? rc->c->errstr : "connection lost");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        /* a replica after a failover, a server still loading: find the master again */
        if (strncmp(r->str, "READONLY", 8) == 0 || strncmp(r->str, "LOADING", 7) == 0 ||
            strncmp(r->str, "MASTERDOWN", 10) == 0) {
            rc->bad = 1;
            rdown(rc->rs, r->str);
        } else {
            log_err("state", "Redis: %s", r->str);
        }
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

redisReply *rconn_cmd(struct rconn *rc, const char *fmt, ...)
{
    if (!rc->c || rc->bad) return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc->c, fmt, ap);
    va_end(ap);
    return rcheck(rc, r);
}

redisReply *rconn_cmdv(struct rconn *rc, int argc, const char **argv)
{
    if (!rc->c || rc->bad) return NULL;
    return rcheck(rc, redisCommandArgv(rc->c, argc, argv, NULL));
}

/* One command whose reply only says done: 0 done, -1 failed. */
int rconn_exec(struct redis_state *rs, const char *fmt, ...)
{
    struct rconn rc;
    if (rconn_get(rs, &rc) != 0) return -1;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = rcheck(&rc, redisvCommand(rc.c, fmt, ap));
    va_end(ap);
    if (r) freeReplyObject(r);
    rconn_put(&rc);
    return r ? 0 : -1;
}

const char *rconn_prefix(const struct redis_state *rs)
{
    return rs->prefix;
}

/* --- setup ---------------------------------------------------------------------------- */

void redis_state_free(struct redis_state *rs)
{
    if (!rs) return;
    for (size_t i = 0; i < rs->nidle; i++)
        redisFree(rs->idle[i]);
    for (size_t i = 0; i < rs->nhosts; i++)
        free(rs->hosts[i]);
    free(rs->hosts);
    free(rs->ports);
    free(rs->master);
    if (rs->password) explicit_bzero(rs->password, strlen(rs->password));
    if (rs->sentinel_password) explicit_bzero(rs->sentinel_password, strlen(rs->sentinel_password));
    free(rs->password);
    free(rs->sentinel_password);
    free(rs->prefix);
    pthread_mutex_destroy(&rs->mu);
    pthread_cond_destroy(&rs->cv);
    free(rs);
}

/* A password for AUTH into *out (a new string; NULL: none): the one conf_load() read
 * (the daemon, at start as root), else the file's first line (the kurier commands). 0
 * done, -1 with err filled. */
static int state_password(const char *loaded, const char *path, char **out, char *err,
                          size_t errsize)
{
    *out = NULL;
    if (loaded) {
        *out = xstrdup(loaded);
        return 0;
    }
    if (!path) return 0;
    size_t len = 0;
    char *text = file_read(path, &len);
    if (!text) {
        snprintf(err, errsize, "state password file %s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    size_t n = strcspn(text, "\r\n");
    if (n) *out = xstrndup(text, n);
    explicit_bzero(text, len);
    free(text);
    if (!*out) snprintf(err, errsize, "state password file %s is empty", path);
    return *out ? 0 : -1;
}

int store_attach_redis(struct store *st, const struct kconf *conf, char *err, size_t errsize)
{
    struct redis_state *rs = xcalloc(1, sizeof *rs);
    pthread_mutex_init(&rs->mu, NULL);
    pthread_cond_init(&rs->cv, NULL);
    rs->master =
        conf->state_sentinel && *conf->state_sentinel ? xstrdup(conf->state_sentinel) : NULL;
    rs->prefix = xstrdup(conf->state_prefix ? conf->state_prefix : "kurier:");
    if (state_password(conf->state_password, conf->state_password_file, &rs->password, err,
                       errsize) != 0 ||
        state_password(conf->state_sentinel_password, conf->state_sentinel_password_file,
                       &rs->sentinel_password, err, errsize) != 0) {
        redis_state_free(rs);
        return -1;
    }
    rs->timeout_ms = conf->state_timeout_ms > 0 ? conf->state_timeout_ms : 500;
    rs->backoff_ms = BACKOFF_MIN_MS;
    int defport = rs->master ? 26379 : 6379;
    const char *list = conf->state_servers ? conf->state_servers : "127.0.0.1";
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, " ");
        if (n) {
            char h[300];
            if (n >= sizeof h) n = sizeof h - 1;
            memcpy(h, p, n);
            h[n] = '\0';
            int port = defport;
            char *host = h, *colon = strrchr(h, ':');
            if (h[0] == '[') { /* [IPv6]:PORT */
                char *close = strchr(h, ']');
                if (!close) goto bad;
                *close = '\0';
                host = h + 1;
                colon = close[1] == ':' ? close + 1 : NULL;
            } else if (colon && strchr(h, ':') != colon) {
                colon = NULL; /* a bare IPv6 address */
            }
            if (colon) {
                *colon = '\0';
                char *end;
                long v = strtol(colon + 1, &end, 10);
                if (*end || v <= 0 || v > 65535) goto bad;
                port = (int)v;
            }
            rs->hosts = xrealloc(rs->hosts, (rs->nhosts + 1) * sizeof *rs->hosts);
            rs->ports = xrealloc(rs->ports, (rs->nhosts + 1) * sizeof *rs->ports);
            rs->hosts[rs->nhosts] = xstrdup(host);
            rs->ports[rs->nhosts++] = port;
            p += n;
            continue;
        bad:
            snprintf(err, errsize, "state servers: \"%s\" is not HOST[:PORT]", h);
            redis_state_free(rs);
            return -1;
        }
        p++;
    }
    if (!rs->nhosts) {
        snprintf(err, errsize, "state servers: none given");
        redis_state_free(rs);
        return -1;
    }
    redis_state_free(st->redis);
    st->redis = rs;
    return 0;
}

static int str_differs(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") != 0;
}

int store_state_conf_differs(const struct kconf *a, const struct kconf *b)
{
    return a->state_backend != b->state_backend ||
           str_differs(a->state_servers, b->state_servers) ||
           str_differs(a->state_sentinel, b->state_sentinel) ||
           str_differs(a->state_prefix, b->state_prefix) ||
           str_differs(a->state_password_file, b->state_password_file) ||
           str_differs(a->state_sentinel_password_file, b->state_sentinel_password_file) ||
           str_differs(a->state_password, b->state_password) ||
           str_differs(a->state_sentinel_password, b->state_sentinel_password) ||
           a->state_timeout_ms != b->state_timeout_ms || a->state_refresh != b->state_refresh;
}

int store_shared(const struct store *st)
{
    return st && st->redis != NULL;
}
