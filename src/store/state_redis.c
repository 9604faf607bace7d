/* state_redis.c: the policy state several nodes share, in Redis (docs/cluster.md):
 * greylisting triplets and networks, sliding-window rate counters, AUTH failure
 * counters, account locks and evidence, egress benches, blocklist listings, probe
 * answers. Blocking hiredis contexts, one at a time per calling worker thread, from a
 * small pool; a down Redis fails every call at once until the backoff has passed.
 * What is per node stays in sqlite_state.c, which calls this file when attached. */
#include "core/compat.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>

#include "core/conf.h"
#include "core/core.h"
#include "store/sqlite_int.h"
#include "store/state_redis.h"
#include "store/store.h"

#define POOL_MAX 64          /* contexts open at most (a worker uses one at a time) */
#define BACKOFF_MIN_MS 100   /* first wait after a failure; doubles ... */
#define BACKOFF_MAX_MS 5000  /* ... up to this */
#define HISTORY_MAX 10000    /* blocklist history rows kept */
#define EVIDENCE_MAX 1000    /* evidence rows kept per account */
#define EVIDENCE_TTL 7776000 /* 90 days after the last piece of evidence of an account */
#define US "\x1f"            /* separates the parts of keys and values */
#define RATE_SLOTS 12        /* as abuse's windows: twelfths */

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

/* One context taken from the pool for the length of one store call. */
struct rconn {
    struct redis_state *rs;
    redisContext *c;
    int bad; /* I/O error or failover: freed, not given back */
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
static int rget(struct redis_state *rs, struct rconn *rc)
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

static void rput(struct rconn *rc)
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

static redisReply *rcmd(struct rconn *rc, const char *fmt, ...)
{
    if (!rc->c || rc->bad) return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc->c, fmt, ap);
    va_end(ap);
    return rcheck(rc, r);
}

static redisReply *rcmdv(struct rconn *rc, int argc, const char **argv)
{
    if (!rc->c || rc->bad) return NULL;
    return rcheck(rc, redisCommandArgv(rc->c, argc, argv, NULL));
}

/* One command whose reply only says done: 0 done, -1 failed. */
static int rexec(struct redis_state *rs, const char *fmt, ...)
{
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = rcheck(&rc, redisvCommand(rc.c, fmt, ap));
    va_end(ap);
    if (r) freeReplyObject(r);
    rput(&rc);
    return r ? 0 : -1;
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

/* --- values: fields joined by US -------------------------------------------------- */

/* The n fields of f (a US inside one becomes a space) into a new string. */
static char *enc(int n, const char *const *f)
{
    struct buf b;
    buf_init(&b, 0);
    for (int i = 0; i < n; i++) {
        if (i) buf_puts(&b, US);
        for (const char *p = f[i] ? f[i] : ""; *p; p++)
            buf_append(&b, *p == US[0] ? " " : p, 1);
    }
    return buf_take(&b);
}

/* Split s in place into at most n fields; the number found. */
static int dec(char *s, char **f, int n)
{
    int i = 0;
    while (i < n) {
        f[i++] = s;
        char *u = strchr(s, US[0]);
        if (!u) break;
        *u = '\0';
        s = u + 1;
    }
    return i;
}

/* s with the glob characters of SCAN MATCH escaped, in a new string. */
static char *glob_escape(const char *s)
{
    struct buf b;
    buf_init(&b, 0);
    for (; *s; s++) {
        if (strchr("*?[]\\", *s)) buf_append(&b, "\\", 1);
        buf_append(&b, s, 1);
    }
    return buf_take(&b);
}

/* Every key matching pattern (SCAN), into a new array of new strings. 0/-1. */
static int scan_keys(struct rconn *rc, const char *pattern, char ***keys, size_t *n)
{
    char cursor[32] = "0";
    *keys = NULL;
    *n = 0;
    do {
        redisReply *r = rcmd(rc, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        if (!r) return -1;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return -1;
        }
        str_copy(cursor, r->element[0]->str ? r->element[0]->str : "0", sizeof cursor);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            *keys = xrealloc(*keys, (*n + 1) * sizeof **keys);
            (*keys)[(*n)++] =
                xstrndup(r->element[1]->element[i]->str, r->element[1]->element[i]->len);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static long long num(const redisReply *r)
{
    if (!r) return 0;
    if (r->type == REDIS_REPLY_INTEGER) return r->integer;
    if (r->type == REDIS_REPLY_STRING) return atoll(r->str);
    return 0;
}

/* --- greylisting -------------------------------------------------------------------- */

/* The triplet (KEYS[1]) and its network (KEYS[2]) judged as sqlite_state.c does, in
 * one script so two nodes never both count a first pass. ARGV: now, delay,
 * retry_window, lifetime, auto_allowlist. Returns {greylisted, wait, net_allowlisted,
 * first_pass}. */
static const char grey_script[] =
    "local now, delay, rw, life, aa = tonumber(ARGV[1]), tonumber(ARGV[2]), "
    "tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "if aa > 0 then\n"
    "  local n = redis.call('HMGET', KEYS[2], 'passes', 'last')\n"
    "  if n[1] and tonumber(n[1]) >= aa and now - tonumber(n[2]) <= life then\n"
    "    redis.call('HSET', KEYS[2], 'last', now)\n"
    "    redis.call('EXPIRE', KEYS[2], life)\n"
    "    return {0, 0, 1, 0}\n"
    "  end\n"
    "end\n"
    "local t = redis.call('HMGET', KEYS[1], 'first', 'last', 'passed')\n"
    "local first, last, passed = tonumber(t[1]), tonumber(t[2]), tonumber(t[3]) or 0\n"
    "if not first or (passed == 1 and now - last > life) or "
    "(passed == 0 and now - first > delay + rw) then\n"
    "  redis.call('HSET', KEYS[1], 'first', now, 'last', now, 'passed', 0)\n"
    "  redis.call('EXPIRE', KEYS[1], delay + rw + 60)\n"
    "  return {1, delay, 0, 0}\n"
    "end\n"
    "if passed == 0 and now - first < delay then\n"
    "  redis.call('HSET', KEYS[1], 'last', now)\n"
    "  return {1, delay - (now - first), 0, 0}\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'last', now, 'passed', 1)\n"
    "redis.call('EXPIRE', KEYS[1], life)\n"
    "if passed == 1 then return {0, 0, 0, 0} end\n"
    "local n = redis.call('HMGET', KEYS[2], 'passes', 'last')\n"
    "local p = 1\n"
    "if n[1] and now - tonumber(n[2]) <= life then p = tonumber(n[1]) + 1 end\n"
    "redis.call('HSET', KEYS[2], 'passes', p, 'last', now)\n"
    "redis.call('EXPIRE', KEYS[2], life)\n"
    "return {0, 0, 0, 1}\n";

int redis_grey_check(struct redis_state *rs, const char *net, const char *sender, const char *rcpt,
                     const struct store_grey_params *p, long long now,
                     struct store_grey_result *out)
{
    memset(out, 0, sizeof *out);
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    char *kt = xasprintf("%sgrey:t:%s" US "%s" US "%s", rs->prefix, net, sender, rcpt);
    char *kn = xasprintf("%sgrey:n:%s", rs->prefix, net);
    int life = p->lifetime > 0 ? p->lifetime : 1;
    redisReply *r = rcmd(&rc, "EVAL %s 2 %s %s %lld %d %d %d %d", grey_script, kt, kn, now,
                         p->delay, p->retry_window, life, p->auto_allowlist);
    int rv = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 4) {
        out->greylisted = (int)num(r->element[0]);
        out->wait = (int)num(r->element[1]);
        out->net_allowlisted = (int)num(r->element[2]);
        out->first_pass = (int)num(r->element[3]);
        rv = 0;
    }
    if (r) freeReplyObject(r);
    rput(&rc);
    free(kt);
    free(kn);
    return rv;
}

int redis_grey_list(struct redis_state *rs,
                    void (*triplet)(void *arg, const struct store_grey_triplet *t),
                    void (*net)(void *arg, const struct store_grey_net *n), void *arg)
{
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    char *pre = glob_escape(rs->prefix);
    char *pat = xasprintf("%sgrey:t:*", pre);
    char **keys;
    size_t n;
    int rv = scan_keys(&rc, pat, &keys, &n);
    size_t skip = strlen(rs->prefix) + strlen("grey:t:");
    if (rv == 0 && n) qsort(keys, n, sizeof *keys, cmp_str);
    for (size_t i = 0; rv == 0 && i < n; i++) {
        redisReply *r = rcmd(&rc, "HMGET %s first last passed", keys[i]);
        if (!r) {
            rv = -1;
            break;
        }
        char *f[3];
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            r->element[0]->type == REDIS_REPLY_STRING && dec(keys[i] + skip, f, 3) == 3) {
            struct store_grey_triplet t = {.net = f[0],
                                           .sender = f[1],
                                           .rcpt = f[2],
                                           .first_seen = num(r->element[0]),
                                           .last_seen = num(r->element[1]),
                                           .passed = (int)num(r->element[2])};
            triplet(arg, &t);
        }
        freeReplyObject(r);
    }
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
    free(pat);
    pat = xasprintf("%sgrey:n:*", pre);
    skip = strlen(rs->prefix) + strlen("grey:n:");
    if (rv == 0) rv = scan_keys(&rc, pat, &keys, &n);
    if (rv == 0) {
        if (n) qsort(keys, n, sizeof *keys, cmp_str);
        for (size_t i = 0; i < n; i++) {
            redisReply *r = rv == 0 ? rcmd(&rc, "HMGET %s passes last", keys[i]) : NULL;
            if (!r) rv = -1;
            if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                r->element[0]->type == REDIS_REPLY_STRING) {
                struct store_grey_net nt = {.net = keys[i] + skip,
                                            .passes = num(r->element[0]),
                                            .last_seen = num(r->element[1])};
                net(arg, &nt);
            }
            if (r) freeReplyObject(r);
            free(keys[i]);
        }
        free(keys);
    }
    free(pat);
    free(pre);
    rput(&rc);
    return rv;
}

/* Delete every key matching pattern; *n the number deleted. 0/-1. */
static int del_matching(struct rconn *rc, const char *pattern, long *n)
{
    char **keys;
    size_t nk;
    if (scan_keys(rc, pattern, &keys, &nk) != 0) return -1;
    int rv = 0;
    for (size_t i = 0; i < nk; i++) {
        redisReply *r = rv == 0 ? rcmd(rc, "DEL %s", keys[i]) : NULL;
        if (!r) rv = -1;
        if (r) {
            *n += (long)num(r);
            freeReplyObject(r);
        }
        free(keys[i]);
    }
    free(keys);
    return rv;
}

int redis_grey_clear(struct redis_state *rs, const char *net, const char *sender, long *ntriplets,
                     long *nnets)
{
    *ntriplets = *nnets = 0;
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    char *pre = glob_escape(rs->prefix);
    char *en = net ? glob_escape(net) : NULL;
    char *es = sender ? glob_escape(sender) : NULL;
    char *pat =
        xasprintf("%sgrey:t:%s" US "%s%s*", pre, en ? en : "*", es ? es : "*", es ? US : "");
    int rv = del_matching(&rc, pat, ntriplets);
    free(pat);
    if (rv == 0 && !sender) {
        pat = xasprintf("%sgrey:n:%s", pre, en ? en : "*");
        rv = del_matching(&rc, pat, nnets);
        free(pat);
    }
    free(en);
    free(es);
    free(pre);
    rput(&rc);
    return rv;
}

int redis_grey_allow(struct redis_state *rs, const char *net, long long passes, long long now)
{
    char *k = xasprintf("%sgrey:n:%s", rs->prefix, net);
    /* kept for 30 days unless mail comes (each pass sets the lifetime again) */
    int rv = rexec(rs, "EVAL %s 1 %s %lld %lld",
                   "local p = tonumber(redis.call('HGET', KEYS[1], 'passes') or 0)\n"
                   "if p < tonumber(ARGV[1]) then p = tonumber(ARGV[1]) end\n"
                   "redis.call('HSET', KEYS[1], 'passes', p, 'last', ARGV[2])\n"
                   "redis.call('EXPIRE', KEYS[1], 2592000)\n"
                   "return 1",
                   k, passes, now);
    free(k);
    return rv;
}

/* --- counters --------------------------------------------------------------------- */

/* KEYS: the current slot's counter, then the older slots'. ARGV: n, seconds to keep. */
static const char rate_script[] = "redis.call('INCRBY', KEYS[1], ARGV[1])\n"
                                  "redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
                                  "local total = 0\n"
                                  "for i = 1, #KEYS do\n"
                                  "  local v = redis.call('GET', KEYS[i])\n"
                                  "  if v then total = total + tonumber(v) end\n"
                                  "end\n"
                                  "return total\n";

int store_rate_add(struct store *st, const char *name, int window, long long now, int n, int *count)
{
    struct redis_state *rs = st ? st->redis : NULL;
    if (!rs) return -1;
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    int len = window / RATE_SLOTS > 0 ? window / RATE_SLOTS : 1;
    long long cur = now / len;
    char *keys[RATE_SLOTS];
    const char *argv[5 + RATE_SLOTS];
    char nkeys[16], nv[32], keep[32];
    snprintf(nkeys, sizeof nkeys, "%d", RATE_SLOTS);
    snprintf(nv, sizeof nv, "%d", n);
    snprintf(keep, sizeof keep, "%d", len * (RATE_SLOTS + 1));
    argv[0] = "EVAL";
    argv[1] = rate_script;
    argv[2] = nkeys;
    for (int i = 0; i < RATE_SLOTS; i++) {
        keys[i] = xasprintf("%srate:%s:%lld", rs->prefix, name, cur - i);
        argv[3 + i] = keys[i];
    }
    argv[3 + RATE_SLOTS] = nv;
    argv[4 + RATE_SLOTS] = keep;
    redisReply *r = rcmdv(&rc, 5 + RATE_SLOTS, argv);
    int rv = r && r->type == REDIS_REPLY_INTEGER ? 0 : -1;
    if (rv == 0) *count = (int)r->integer;
    if (r) freeReplyObject(r);
    for (int i = 0; i < RATE_SLOTS; i++)
        free(keys[i]);
    rput(&rc);
    return rv;
}

/* KEYS: the set (member -> last seen). ARGV: now, window, max, member. */
static const char distinct_script[] =
    "local now, win, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win)\n"
    "local n = redis.call('ZCARD', KEYS[1])\n"
    "if n < max or redis.call('ZSCORE', KEYS[1], ARGV[4]) then\n"
    "  redis.call('ZADD', KEYS[1], now, ARGV[4])\n"
    "  redis.call('EXPIRE', KEYS[1], win)\n"
    "  return redis.call('ZCARD', KEYS[1])\n"
    "end\n"
    "return n + 1\n";

int store_distinct_add(struct store *st, const char *name, int window, long long now,
                       const char *member, int max, int *count)
{
    struct redis_state *rs = st ? st->redis : NULL;
    if (!rs) return -1;
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    char *key = xasprintf("%sdist:%s", rs->prefix, name);
    redisReply *r = rcmd(&rc, "EVAL %s 1 %s %lld %d %d %s", distinct_script, key, now,
                         window > 0 ? window : 1, max, member);
    int rv = r && r->type == REDIS_REPLY_INTEGER ? 0 : -1;
    if (rv == 0) *count = (int)r->integer;
    if (r) freeReplyObject(r);
    free(key);
    rput(&rc);
    return rv;
}

int store_authfail_blocked(struct store *st, const char *addr, const char *account)
{
    struct redis_state *rs = st ? st->redis : NULL;
    if (!rs) return -1;
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    char *ka = xasprintf("%sauthb:a:%s", rs->prefix, addr);
    char *kp = xasprintf("%sauthb:p:%s" US "%s", rs->prefix, addr, account ? account : "");
    redisReply *r = rcmd(&rc, "EXISTS %s %s", ka, kp);
    int rv = r && r->type == REDIS_REPLY_INTEGER ? r->integer > 0 : -1;
    if (r) freeReplyObject(r);
    free(ka);
    free(kp);
    rput(&rc);
    return rv;
}

/* KEYS: address count, pair count, address block, pair block. ARGV: window, block,
 * max_addr, max_pair. As auth/limits.c: the window starts at the first failure. */
static const char authfail_script[] = "local a = redis.call('INCR', KEYS[1])\n"
                                      "if a == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n"
                                      "local p = redis.call('INCR', KEYS[2])\n"
                                      "if p == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end\n"
                                      "if tonumber(ARGV[3]) > 0 and a >= tonumber(ARGV[3]) then "
                                      "redis.call('SET', KEYS[3], a, 'EX', ARGV[2]) end\n"
                                      "if tonumber(ARGV[4]) > 0 and p >= tonumber(ARGV[4]) then "
                                      "redis.call('SET', KEYS[4], p, 'EX', ARGV[2]) end\n"
                                      "if a > p then return a end\n"
                                      "return p\n";

int store_authfail_record(struct store *st, const char *addr, const char *account, int ok,
                          int window, int block, int max_addr, int max_pair)
{
    struct redis_state *rs = st ? st->redis : NULL;
    if (!rs) return -1;
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    const char *acc = account ? account : "";
    char *k[4] = {xasprintf("%sauthf:a:%s", rs->prefix, addr),
                  xasprintf("%sauthf:p:%s" US "%s", rs->prefix, addr, acc),
                  xasprintf("%sauthb:a:%s", rs->prefix, addr),
                  xasprintf("%sauthb:p:%s" US "%s", rs->prefix, addr, acc)};
    redisReply *r =
        ok ? rcmd(&rc, "DEL %s", k[1])
           : rcmd(&rc, "EVAL %s 4 %s %s %s %s %d %d %d %d", authfail_script, k[0], k[1], k[2], k[3],
                  window > 0 ? window : 1, block > 0 ? block : 1, max_addr, max_pair);
    int rv = r && r->type == REDIS_REPLY_INTEGER ? (ok ? 0 : (int)r->integer) : -1;
    if (r) freeReplyObject(r);
    for (int i = 0; i < 4; i++)
        free(k[i]);
    rput(&rc);
    return rv;
}

/* --- egress benches: a key each (expiring at until), and the set that names them ---- */

int redis_bench_put(struct redis_state *rs, const char *addr, const char *dest, const char *reason,
                    long long since, long long until)
{
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    char *member = xasprintf("%s" US "%s", addr, dest ? dest : "");
    char *k = xasprintf("%sbench:%s", rs->prefix, member);
    char *ks = xasprintf("%sbenches", rs->prefix);
    char s1[32], s2[32];
    snprintf(s1, sizeof s1, "%lld", since);
    snprintf(s2, sizeof s2, "%lld", until);
    char *v = enc(3, (const char *const[]){reason ? reason : "", s1, s2});
    redisReply *r =
        until > 0 ? rcmd(&rc, "SET %s %s EXAT %lld", k, v, until) : rcmd(&rc, "SET %s %s", k, v);
    int rv = r ? 0 : -1;
    if (r) freeReplyObject(r);
    r = rv == 0 ? rcmd(&rc, "SADD %s %s", ks, member) : NULL;
    if (!r) rv = -1;
    if (r) freeReplyObject(r);
    free(v);
    free(k);
    free(ks);
    free(member);
    rput(&rc);
    return rv;
}

/* The set's members (new strings, sorted). 0/-1. */
static int bench_members(struct rconn *rc, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    char *ks = xasprintf("%sbenches", rc->rs->prefix);
    redisReply *r = rcmd(rc, "SMEMBERS %s", ks);
    free(ks);
    if (!r) return -1;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        *out = xrealloc(*out, (*n + 1) * sizeof **out);
        (*out)[(*n)++] = xstrndup(r->element[i]->str, r->element[i]->len);
    }
    freeReplyObject(r);
    if (*n) qsort(*out, *n, sizeof **out, cmp_str);
    return 0;
}

static void bench_forget(struct rconn *rc, const char *member)
{
    char *k = xasprintf("%sbench:%s", rc->rs->prefix, member);
    char *ks = xasprintf("%sbenches", rc->rs->prefix);
    redisReply *r = rcmd(rc, "DEL %s", k);
    if (r) freeReplyObject(r);
    r = rcmd(rc, "SREM %s %s", ks, member);
    if (r) freeReplyObject(r);
    free(k);
    free(ks);
}

int redis_bench_del(struct redis_state *rs, const char *addr, const char *dest)
{
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    char **m;
    size_t n;
    int rv = -1;
    if (dest) {
        char *member = xasprintf("%s" US "%s", addr, dest);
        bench_forget(&rc, member);
        free(member);
        rv = rc.bad ? -1 : 0;
    } else if (bench_members(&rc, &m, &n) == 0) {
        size_t len = strlen(addr);
        for (size_t i = 0; i < n; i++) {
            if (strncmp(m[i], addr, len) == 0 && m[i][len] == US[0]) bench_forget(&rc, m[i]);
            free(m[i]);
        }
        free(m);
        rv = rc.bad ? -1 : 0;
    }
    rput(&rc);
    return rv;
}

int redis_bench_list(struct redis_state *rs,
                     void (*cb)(void *arg, const char *addr, const char *dest, const char *reason,
                                long long since, long long until),
                     void *arg)
{
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    char **m;
    size_t n;
    int rv = bench_members(&rc, &m, &n);
    for (size_t i = 0; rv == 0 && i < n; i++) {
        char *k = xasprintf("%sbench:%s", rs->prefix, m[i]);
        redisReply *r = rcmd(&rc, "GET %s", k);
        free(k);
        if (!r) {
            rv = -1;
            break;
        }
        char *f[3], *a[2];
        if (r->type == REDIS_REPLY_STRING) {
            if (dec(r->str, f, 3) == 3 && dec(m[i], a, 2) == 2)
                cb(arg, a[0], a[1], f[0], atoll(f[1]), atoll(f[2]));
        } else { /* expired */
            char *member = xasprintf("%s", m[i]);
            bench_forget(&rc, member);
            free(member);
        }
        freeReplyObject(r);
    }
    for (size_t i = 0; i < n; i++)
        free(m[i]);
    free(m);
    rput(&rc);
    return rv;
}

/* --- blocklist listings: one hash of current states, one capped list of changes ----- */

int redis_listing_put(struct redis_state *rs, const struct store_listing *l, int history)
{
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    char since[32], time_s[32];
    snprintf(since, sizeof since, "%lld", l->since);
    snprintf(time_s, sizeof time_s, "%lld", l->time);
    char *field = xasprintf("%s" US "%s", l->address, l->zone);
    char *cur = enc(5, (const char *const[]){l->state, l->code, l->txt, l->delist_url, since});
    char *kh = xasprintf("%slistings", rs->prefix);
    char *kl = xasprintf("%slistings:history", rs->prefix);
    redisReply *r = rcmd(&rc, "HSET %s %s %s", kh, field, cur);
    int rv = r ? 0 : -1;
    if (r) freeReplyObject(r);
    if (rv == 0 && history) {
        char *h = enc(8, (const char *const[]){l->address, l->zone, l->state, l->code, l->txt,
                                               l->delist_url, l->previous, time_s});
        r = rcmd(&rc, "RPUSH %s %s", kl, h);
        if (!r) rv = -1;
        if (r) freeReplyObject(r);
        r = rv == 0 ? rcmd(&rc, "LTRIM %s %d -1", kl, -HISTORY_MAX) : NULL;
        if (r) freeReplyObject(r);
        free(h);
    }
    free(field);
    free(cur);
    free(kh);
    free(kl);
    rput(&rc);
    return rv;
}

struct listing_row {
    char *key;
    struct store_listing l;
};

static int cmp_listing(const void *a, const void *b)
{
    return strcmp(((const struct listing_row *)a)->key, ((const struct listing_row *)b)->key);
}

int redis_listing_list(struct redis_state *rs, const char *address,
                       void (*cb)(void *arg, const struct store_listing *l), void *arg)
{
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    char *kh = xasprintf("%slistings", rs->prefix);
    redisReply *r = rcmd(&rc, "HGETALL %s", kh);
    free(kh);
    rput(&rc);
    if (!r) return -1;
    struct listing_row *rows = NULL;
    size_t n = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        char *key = xstrndup(r->element[i]->str, r->element[i]->len);
        char *val = xstrndup(r->element[i + 1]->str, r->element[i + 1]->len);
        char *a[2], *f[5];
        char *k2 = xstrdup(key);
        if (dec(k2, a, 2) == 2 && dec(val, f, 5) == 5 && (!address || strcmp(a[0], address) == 0)) {
            rows = xrealloc(rows, (n + 1) * sizeof *rows);
            struct store_listing *l = &rows[n].l;
            memset(l, 0, sizeof *l);
            rows[n++].key = key;
            key = NULL;
            str_copy(l->address, a[0], sizeof l->address);
            str_copy(l->zone, a[1], sizeof l->zone);
            str_copy(l->state, f[0], sizeof l->state);
            str_copy(l->code, f[1], sizeof l->code);
            str_copy(l->txt, f[2], sizeof l->txt);
            str_copy(l->delist_url, f[3], sizeof l->delist_url);
            l->since = l->time = atoll(f[4]);
        }
        free(k2);
        free(key);
        free(val);
    }
    freeReplyObject(r);
    if (n) qsort(rows, n, sizeof *rows, cmp_listing);
    for (size_t i = 0; i < n; i++) {
        cb(arg, &rows[i].l);
        free(rows[i].key);
    }
    free(rows);
    return 0;
}

int redis_listing_history(struct redis_state *rs, const char *address, int limit,
                          void (*cb)(void *arg, const struct store_listing *l), void *arg)
{
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    char *kl = xasprintf("%slistings:history", rs->prefix);
    redisReply *r = rcmd(&rc, "LRANGE %s 0 -1", kl);
    free(kl);
    rput(&rc);
    if (!r) return -1;
    struct store_listing *rows = NULL;
    size_t n = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        char *val = xstrndup(r->element[i]->str, r->element[i]->len);
        char *f[8];
        if (dec(val, f, 8) == 8 && (!address || strcmp(f[0], address) == 0)) {
            rows = xrealloc(rows, (n + 1) * sizeof *rows);
            struct store_listing *l = &rows[n++];
            memset(l, 0, sizeof *l);
            str_copy(l->address, f[0], sizeof l->address);
            str_copy(l->zone, f[1], sizeof l->zone);
            str_copy(l->state, f[2], sizeof l->state);
            str_copy(l->code, f[3], sizeof l->code);
            str_copy(l->txt, f[4], sizeof l->txt);
            str_copy(l->delist_url, f[5], sizeof l->delist_url);
            str_copy(l->previous, f[6], sizeof l->previous);
            l->time = l->since = atoll(f[7]);
        }
        free(val);
    }
    freeReplyObject(r);
    size_t from = limit > 0 && n > (size_t)limit ? n - (size_t)limit : 0; /* the newest */
    for (size_t i = from; i < n; i++)
        cb(arg, &rows[i]);
    free(rows);
    return 0;
}

/* --- probe answers: a key each, expiring with the answer ----------------------------- */

int redis_verify_get(struct redis_state *rs, const char *kind, const char *address, long long now,
                     struct store_verify *out)
{
    memset(out, 0, sizeof *out);
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    char *k = xasprintf("%sverify:%s" US "%s", rs->prefix, kind, address);
    redisReply *r = rcmd(&rc, "GET %s", k);
    free(k);
    rput(&rc);
    if (!r) return -1;
    int rv = 0;
    char *f[4];
    if (r->type == REDIS_REPLY_STRING && dec(r->str, f, 4) == 4 && atoll(f[2]) > now) {
        out->ok = atoi(f[0]);
        out->code = atoi(f[1]);
        out->expires = atoll(f[2]);
        str_copy(out->text, f[3], sizeof out->text);
        rv = 1;
    }
    freeReplyObject(r);
    return rv;
}

int redis_verify_put(struct redis_state *rs, const char *kind, const char *address,
                     const struct store_verify *v)
{
    char s0[16], s1[16], s2[32];
    snprintf(s0, sizeof s0, "%d", v->ok);
    snprintf(s1, sizeof s1, "%d", v->code);
    snprintf(s2, sizeof s2, "%lld", v->expires);
    char *val = enc(4, (const char *const[]){s0, s1, s2, v->text});
    char *k = xasprintf("%sverify:%s" US "%s", rs->prefix, kind, address);
    int rv = v->expires > 0 ? rexec(rs, "SET %s %s EXAT %lld", k, val, v->expires)
                            : rexec(rs, "SET %s %s EX 86400", k, val);
    free(k);
    free(val);
    return rv;
}

/* --- account locks (a hash: they last until unlocked) and evidence (a list each) --- */

int redis_lock_put(struct redis_state *rs, const struct store_abuse_lock *l)
{
    char acc[320], s1[32], s2[16];
    str_copy(acc, l->account, sizeof acc);
    str_lower(acc);
    snprintf(s1, sizeof s1, "%lld", l->since);
    snprintf(s2, sizeof s2, "%d", l->score);
    char *v = enc(3, (const char *const[]){s1, s2, l->reason});
    char *k = xasprintf("%slocks", rs->prefix);
    int rv = rexec(rs, "HSET %s %s %s", k, acc, v);
    free(k);
    free(v);
    return rv;
}

int redis_lock_del(struct redis_state *rs, const char *account)
{
    char acc[320];
    str_copy(acc, account, sizeof acc);
    str_lower(acc);
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    char *k = xasprintf("%slocks", rs->prefix);
    redisReply *r = rcmd(&rc, "HDEL %s %s", k, acc);
    free(k);
    int rv = r ? num(r) > 0 : -1;
    if (r) freeReplyObject(r);
    rput(&rc);
    return rv;
}

int redis_mark(struct redis_state *rs)
{
    char *k = xasprintf("%sepoch", rs->prefix);
    int rv = rexec(rs, "SET %s %lld NX", k, (long long)time(NULL));
    free(k);
    return rv;
}

static int cmp_lock(const void *a, const void *b)
{
    return strcmp(((const struct store_abuse_lock *)a)->account,
                  ((const struct store_abuse_lock *)b)->account);
}

int redis_lock_all(struct redis_state *rs, struct store_abuse_lock **out, size_t *n, int *fresh)
{
    *out = NULL;
    *n = 0;
    *fresh = 0;
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    /* a marker key without TTL: gone when Redis lost its data */
    char *km = xasprintf("%sepoch", rs->prefix);
    redisReply *r = rcmd(&rc, "EXISTS %s", km);
    free(km);
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        *fresh = 1;
        freeReplyObject(r);
        rput(&rc);
        return 0;
    }
    if (r) freeReplyObject(r);
    char *k = xasprintf("%slocks", rs->prefix);
    r = rc.bad ? NULL : rcmd(&rc, "HGETALL %s", k);
    free(k);
    rput(&rc);
    if (!r) return -1;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        char *val = xstrndup(r->element[i + 1]->str, r->element[i + 1]->len);
        char *f[3];
        if (dec(val, f, 3) == 3) {
            *out = xrealloc(*out, (*n + 1) * sizeof **out);
            struct store_abuse_lock *l = &(*out)[(*n)++];
            memset(l, 0, sizeof *l);
            str_copy(l->account, r->element[i]->str, sizeof l->account);
            l->since = atoll(f[0]);
            l->score = atoi(f[1]);
            str_copy(l->reason, f[2], sizeof l->reason);
        }
        free(val);
    }
    freeReplyObject(r);
    if (*n) qsort(*out, *n, sizeof **out, cmp_lock);
    return 0;
}

int redis_evidence_add(struct redis_state *rs, const struct store_abuse_evidence *e)
{
    char acc[320], s1[32], s2[16];
    str_copy(acc, e->account, sizeof acc);
    str_lower(acc);
    snprintf(s1, sizeof s1, "%lld", e->time);
    snprintf(s2, sizeof s2, "%d", e->score);
    char *v = enc(4, (const char *const[]){s1, s2, e->signal, e->evidence});
    char *k = xasprintf("%sevidence:%s", rs->prefix, acc);
    int rv = rexec(rs, "EVAL %s 1 %s %s %d %d",
                   "redis.call('RPUSH', KEYS[1], ARGV[1])\n"
                   "redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)\n"
                   "redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
                   "return 1",
                   k, v, EVIDENCE_MAX, EVIDENCE_TTL);
    free(k);
    free(v);
    return rv;
}

struct ev_row {
    struct store_abuse_evidence e;
    size_t seq; /* order within the account's list: ties of time keep it */
};

static int cmp_ev(const void *a, const void *b)
{
    const struct ev_row *x = a, *y = b;
    if (x->e.time != y->e.time) return x->e.time < y->e.time ? -1 : 1;
    int c = strcmp(x->e.account, y->e.account);
    if (c) return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int redis_evidence_list(struct redis_state *rs, const char *account, long long since, int limit,
                        void (*cb)(void *arg, const struct store_abuse_evidence *e), void *arg)
{
    struct rconn rc;
    if (rget(rs, &rc) != 0) return -1;
    char **keys = NULL;
    size_t nk = 0;
    int rv = 0;
    size_t skip = strlen(rs->prefix) + strlen("evidence:");
    if (account && *account) {
        char acc[320];
        str_copy(acc, account, sizeof acc);
        str_lower(acc);
        keys = xcalloc(1, sizeof *keys);
        keys[nk++] = xasprintf("%sevidence:%s", rs->prefix, acc);
    } else {
        char *pre = glob_escape(rs->prefix);
        char *pat = xasprintf("%sevidence:*", pre);
        rv = scan_keys(&rc, pat, &keys, &nk);
        free(pat);
        free(pre);
    }
    struct ev_row *rows = NULL;
    size_t n = 0;
    for (size_t i = 0; i < nk; i++) {
        redisReply *r = rv == 0 ? rcmd(&rc, "LRANGE %s 0 -1", keys[i]) : NULL;
        if (!r) rv = -1;
        for (size_t j = 0; r && r->type == REDIS_REPLY_ARRAY && j < r->elements; j++) {
            char *val = xstrndup(r->element[j]->str, r->element[j]->len);
            char *f[4];
            if (dec(val, f, 4) == 4 && atoll(f[0]) >= since) {
                rows = xrealloc(rows, (n + 1) * sizeof *rows);
                struct ev_row *w = &rows[n++];
                memset(w, 0, sizeof *w);
                w->seq = j;
                str_copy(w->e.account, keys[i] + skip, sizeof w->e.account);
                w->e.time = atoll(f[0]);
                w->e.score = atoi(f[1]);
                str_copy(w->e.signal, f[2], sizeof w->e.signal);
                str_copy(w->e.evidence, f[3], sizeof w->e.evidence);
            }
            free(val);
        }
        if (r) freeReplyObject(r);
        free(keys[i]);
    }
    free(keys);
    rput(&rc);
    if (rv == 0) {
        if (n) qsort(rows, n, sizeof *rows, cmp_ev);
        size_t from = limit > 0 && n > (size_t)limit ? n - (size_t)limit : 0;
        for (size_t i = from; i < n; i++)
            cb(arg, &rows[i].e);
    }
    free(rows);
    return rv;
}

int redis_evidence_clear(struct redis_state *rs, const char *account, long long before)
{
    (void)before; /* older evidence of other accounts goes with its key's TTL */
    if (!account || !*account) return 0;
    char acc[320];
    str_copy(acc, account, sizeof acc);
    str_lower(acc);
    char *k = xasprintf("%sevidence:%s", rs->prefix, acc);
    int rv = rexec(rs, "DEL %s", k);
    free(k);
    return rv;
}
