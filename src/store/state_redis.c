/* state_redis.c: the policy state several nodes share, in Redis (docs/cluster.md):
 * greylisting triplets and networks, sliding-window rate counters, AUTH failure
 * counters, account locks and evidence, egress benches, blocklist listings, probe
 * answers: their keys, values and scripts. The connections (pool, Sentinel, backoff)
 * are redis_conn.c's. What is per node stays in sqlite_state.c, which calls this file
 * when attached. */
#include "core/compat.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>

#include "core/core.h"
#include "store/redis_conn.h"
#include "store/sqlite_int.h"
#include "store/state_redis.h"
#include "store/store.h"

#define HISTORY_MAX 10000    /* blocklist history rows kept */
#define EVIDENCE_MAX 1000    /* evidence rows kept per account */
#define EVIDENCE_TTL 7776000 /* 90 days after the last piece of evidence of an account */
#define US "\x1f"            /* separates the parts of keys and values */
#define RATE_SLOTS 12        /* as abuse's windows: twelfths */

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
        redisReply *r = rconn_cmd(rc, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
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
    if (rconn_get(rs, &rc) != 0) return -1;
    char *kt = xasprintf("%sgrey:t:%s" US "%s" US "%s", rconn_prefix(rs), net, sender, rcpt);
    char *kn = xasprintf("%sgrey:n:%s", rconn_prefix(rs), net);
    int life = p->lifetime > 0 ? p->lifetime : 1;
    redisReply *r = rconn_cmd(&rc, "EVAL %s 2 %s %s %lld %d %d %d %d", grey_script, kt, kn, now,
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
    rconn_put(&rc);
    free(kt);
    free(kn);
    return rv;
}

int redis_grey_list(struct redis_state *rs,
                    void (*triplet)(void *arg, const struct store_grey_triplet *t),
                    void (*net)(void *arg, const struct store_grey_net *n), void *arg)
{
    struct rconn rc;
    if (rconn_get(rs, &rc) != 0) return -1;
    char *pre = glob_escape(rconn_prefix(rs));
    char *pat = xasprintf("%sgrey:t:*", pre);
    char **keys;
    size_t n;
    int rv = scan_keys(&rc, pat, &keys, &n);
    size_t skip = strlen(rconn_prefix(rs)) + strlen("grey:t:");
    if (rv == 0 && n) qsort(keys, n, sizeof *keys, cmp_str);
    for (size_t i = 0; rv == 0 && i < n; i++) {
        redisReply *r = rconn_cmd(&rc, "HMGET %s first last passed", keys[i]);
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
    skip = strlen(rconn_prefix(rs)) + strlen("grey:n:");
    if (rv == 0) rv = scan_keys(&rc, pat, &keys, &n);
    if (rv == 0) {
        if (n) qsort(keys, n, sizeof *keys, cmp_str);
        for (size_t i = 0; i < n; i++) {
            redisReply *r = rv == 0 ? rconn_cmd(&rc, "HMGET %s passes last", keys[i]) : NULL;
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
    rconn_put(&rc);
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
        redisReply *r = rv == 0 ? rconn_cmd(rc, "DEL %s", keys[i]) : NULL;
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
    if (rconn_get(rs, &rc) != 0) return -1;
    char *pre = glob_escape(rconn_prefix(rs));
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
    rconn_put(&rc);
    return rv;
}

int redis_grey_allow(struct redis_state *rs, const char *net, long long passes, long long now)
{
    char *k = xasprintf("%sgrey:n:%s", rconn_prefix(rs), net);
    /* kept for 30 days unless mail comes (each pass sets the lifetime again) */
    int rv = rconn_exec(rs, "EVAL %s 1 %s %lld %lld",
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
    if (rconn_get(rs, &rc) != 0) return -1;
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
        keys[i] = xasprintf("%srate:%s:%lld", rconn_prefix(rs), name, cur - i);
        argv[3 + i] = keys[i];
    }
    argv[3 + RATE_SLOTS] = nv;
    argv[4 + RATE_SLOTS] = keep;
    redisReply *r = rconn_cmdv(&rc, 5 + RATE_SLOTS, argv);
    int rv = r && r->type == REDIS_REPLY_INTEGER ? 0 : -1;
    if (rv == 0) *count = (int)r->integer;
    if (r) freeReplyObject(r);
    for (int i = 0; i < RATE_SLOTS; i++)
        free(keys[i]);
    rconn_put(&rc);
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
    if (rconn_get(rs, &rc) != 0) return -1;
    char *key = xasprintf("%sdist:%s", rconn_prefix(rs), name);
    redisReply *r = rconn_cmd(&rc, "EVAL %s 1 %s %lld %d %d %s", distinct_script, key, now,
                              window > 0 ? window : 1, max, member);
    int rv = r && r->type == REDIS_REPLY_INTEGER ? 0 : -1;
    if (rv == 0) *count = (int)r->integer;
    if (r) freeReplyObject(r);
    free(key);
    rconn_put(&rc);
    return rv;
}

int store_authfail_blocked(struct store *st, const char *addr, const char *account)
{
    struct redis_state *rs = st ? st->redis : NULL;
    if (!rs) return -1;
    struct rconn rc;
    if (rconn_get(rs, &rc) != 0) return -1;
    char *ka = xasprintf("%sauthb:a:%s", rconn_prefix(rs), addr);
    char *kp = xasprintf("%sauthb:p:%s" US "%s", rconn_prefix(rs), addr, account ? account : "");
    redisReply *r = rconn_cmd(&rc, "EXISTS %s %s", ka, kp);
    int rv = r && r->type == REDIS_REPLY_INTEGER ? r->integer > 0 : -1;
    if (r) freeReplyObject(r);
    free(ka);
    free(kp);
    rconn_put(&rc);
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
    if (rconn_get(rs, &rc) != 0) return -1;
    const char *acc = account ? account : "";
    char *k[4] = {xasprintf("%sauthf:a:%s", rconn_prefix(rs), addr),
                  xasprintf("%sauthf:p:%s" US "%s", rconn_prefix(rs), addr, acc),
                  xasprintf("%sauthb:a:%s", rconn_prefix(rs), addr),
                  xasprintf("%sauthb:p:%s" US "%s", rconn_prefix(rs), addr, acc)};
    redisReply *r =
        ok ? rconn_cmd(&rc, "DEL %s", k[1])
           : rconn_cmd(&rc, "EVAL %s 4 %s %s %s %s %d %d %d %d", authfail_script, k[0], k[1], k[2],
                       k[3], window > 0 ? window : 1, block > 0 ? block : 1, max_addr, max_pair);
    int rv = r && r->type == REDIS_REPLY_INTEGER ? (ok ? 0 : (int)r->integer) : -1;
    if (r) freeReplyObject(r);
    for (int i = 0; i < 4; i++)
        free(k[i]);
    rconn_put(&rc);
    return rv;
}

/* --- egress benches: a key each (expiring at until), and the set that names them ---- */

int redis_bench_put(struct redis_state *rs, const char *addr, const char *dest, const char *reason,
                    long long since, long long until)
{
    struct rconn rc;
    if (rconn_get(rs, &rc) != 0) return -1;
    char *member = xasprintf("%s" US "%s", addr, dest ? dest : "");
    char *k = xasprintf("%sbench:%s", rconn_prefix(rs), member);
    char *ks = xasprintf("%sbenches", rconn_prefix(rs));
    char s1[32], s2[32];
    snprintf(s1, sizeof s1, "%lld", since);
    snprintf(s2, sizeof s2, "%lld", until);
    char *v = enc(3, (const char *const[]){reason ? reason : "", s1, s2});
    redisReply *r = until > 0 ? rconn_cmd(&rc, "SET %s %s EXAT %lld", k, v, until)
                              : rconn_cmd(&rc, "SET %s %s", k, v);
    int rv = r ? 0 : -1;
    if (r) freeReplyObject(r);
    r = rv == 0 ? rconn_cmd(&rc, "SADD %s %s", ks, member) : NULL;
    if (!r) rv = -1;
    if (r) freeReplyObject(r);
    free(v);
    free(k);
    free(ks);
    free(member);
    rconn_put(&rc);
    return rv;
}

/* The set's members (new strings, sorted). 0/-1. */
static int bench_members(struct rconn *rc, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    char *ks = xasprintf("%sbenches", rconn_prefix(rc->rs));
    redisReply *r = rconn_cmd(rc, "SMEMBERS %s", ks);
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
    char *k = xasprintf("%sbench:%s", rconn_prefix(rc->rs), member);
    char *ks = xasprintf("%sbenches", rconn_prefix(rc->rs));
    redisReply *r = rconn_cmd(rc, "DEL %s", k);
    if (r) freeReplyObject(r);
    r = rconn_cmd(rc, "SREM %s %s", ks, member);
    if (r) freeReplyObject(r);
    free(k);
    free(ks);
}

int redis_bench_del(struct redis_state *rs, const char *addr, const char *dest)
{
    struct rconn rc;
    if (rconn_get(rs, &rc) != 0) return -1;
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
    rconn_put(&rc);
    return rv;
}

int redis_bench_list(struct redis_state *rs,
                     void (*cb)(void *arg, const char *addr, const char *dest, const char *reason,
                                long long since, long long until),
                     void *arg)
{
    struct rconn rc;
    if (rconn_get(rs, &rc) != 0) return -1;
    char **m;
    size_t n;
    int rv = bench_members(&rc, &m, &n);
    for (size_t i = 0; rv == 0 && i < n; i++) {
        char *k = xasprintf("%sbench:%s", rconn_prefix(rs), m[i]);
        redisReply *r = rconn_cmd(&rc, "GET %s", k);
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
    rconn_put(&rc);
    return rv;
}

/* --- blocklist listings: one hash of current states, one capped list of changes ----- */

int redis_listing_put(struct redis_state *rs, const struct store_listing *l, int history)
{
    struct rconn rc;
    if (rconn_get(rs, &rc) != 0) return -1;
    char since[32], time_s[32];
    snprintf(since, sizeof since, "%lld", l->since);
    snprintf(time_s, sizeof time_s, "%lld", l->time);
    char *field = xasprintf("%s" US "%s", l->address, l->zone);
    char *cur = enc(5, (const char *const[]){l->state, l->code, l->txt, l->delist_url, since});
    char *kh = xasprintf("%slistings", rconn_prefix(rs));
    char *kl = xasprintf("%slistings:history", rconn_prefix(rs));
    redisReply *r = rconn_cmd(&rc, "HSET %s %s %s", kh, field, cur);
    int rv = r ? 0 : -1;
    if (r) freeReplyObject(r);
    if (rv == 0 && history) {
        char *h = enc(8, (const char *const[]){l->address, l->zone, l->state, l->code, l->txt,
                                               l->delist_url, l->previous, time_s});
        r = rconn_cmd(&rc, "RPUSH %s %s", kl, h);
        if (!r) rv = -1;
        if (r) freeReplyObject(r);
        r = rv == 0 ? rconn_cmd(&rc, "LTRIM %s %d -1", kl, -HISTORY_MAX) : NULL;
        if (r) freeReplyObject(r);
        free(h);
    }
    free(field);
    free(cur);
    free(kh);
    free(kl);
    rconn_put(&rc);
    return rv;
}

/* The current states (HGETALL of the hash) or the changes (LRANGE of the list), or
 * NULL. */
static redisReply *listing_read(struct redis_state *rs, int history)
{
    struct rconn rc;
    if (rconn_get(rs, &rc) != 0) return NULL;
    char *k = xasprintf("%slistings%s", rconn_prefix(rs), history ? ":history" : "");
    redisReply *r = history ? rconn_cmd(&rc, "LRANGE %s 0 -1", k) : rconn_cmd(&rc, "HGETALL %s", k);
    free(k);
    rconn_put(&rc);
    return r;
}

/* l from its fields: f[0..3] state, code, txt and delist_url (their order in both
 * layouts); previous (NULL: a current state has none) and time (also the since) apart,
 * as the history keeps previous before the time. */
static void listing_fill(struct store_listing *l, const char *address, const char *zone,
                         char *const *f, const char *previous, const char *time)
{
    memset(l, 0, sizeof *l);
    str_copy(l->address, address, sizeof l->address);
    str_copy(l->zone, zone, sizeof l->zone);
    str_copy(l->state, f[0], sizeof l->state);
    str_copy(l->code, f[1], sizeof l->code);
    str_copy(l->txt, f[2], sizeof l->txt);
    str_copy(l->delist_url, f[3], sizeof l->delist_url);
    if (previous) str_copy(l->previous, previous, sizeof l->previous);
    l->since = l->time = atoll(time);
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
    redisReply *r = listing_read(rs, 0);
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
            listing_fill(&rows[n].l, a[0], a[1], f, NULL, f[4]);
            rows[n++].key = key;
            key = NULL;
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
    redisReply *r = listing_read(rs, 1);
    if (!r) return -1;
    struct store_listing *rows = NULL;
    size_t n = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        char *val = xstrndup(r->element[i]->str, r->element[i]->len);
        char *f[8];
        if (dec(val, f, 8) == 8 && (!address || strcmp(f[0], address) == 0)) {
            rows = xrealloc(rows, (n + 1) * sizeof *rows);
            listing_fill(&rows[n++], f[0], f[1], f + 2, f[6], f[7]);
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
    if (rconn_get(rs, &rc) != 0) return -1;
    char *k = xasprintf("%sverify:%s" US "%s", rconn_prefix(rs), kind, address);
    redisReply *r = rconn_cmd(&rc, "GET %s", k);
    free(k);
    rconn_put(&rc);
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
    char *k = xasprintf("%sverify:%s" US "%s", rconn_prefix(rs), kind, address);
    int rv = v->expires > 0 ? rconn_exec(rs, "SET %s %s EXAT %lld", k, val, v->expires)
                            : rconn_exec(rs, "SET %s %s EX 86400", k, val);
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
    char *k = xasprintf("%slocks", rconn_prefix(rs));
    int rv = rconn_exec(rs, "HSET %s %s %s", k, acc, v);
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
    if (rconn_get(rs, &rc) != 0) return -1;
    char *k = xasprintf("%slocks", rconn_prefix(rs));
    redisReply *r = rconn_cmd(&rc, "HDEL %s %s", k, acc);
    free(k);
    int rv = r ? num(r) > 0 : -1;
    if (r) freeReplyObject(r);
    rconn_put(&rc);
    return rv;
}

int redis_mark(struct redis_state *rs)
{
    char *k = xasprintf("%sepoch", rconn_prefix(rs));
    int rv = rconn_exec(rs, "SET %s %lld NX", k, (long long)time(NULL));
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
    if (rconn_get(rs, &rc) != 0) return -1;
    /* a marker key without TTL: gone when Redis lost its data */
    char *km = xasprintf("%sepoch", rconn_prefix(rs));
    redisReply *r = rconn_cmd(&rc, "EXISTS %s", km);
    free(km);
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        *fresh = 1;
        freeReplyObject(r);
        rconn_put(&rc);
        return 0;
    }
    if (r) freeReplyObject(r);
    char *k = xasprintf("%slocks", rconn_prefix(rs));
    r = rc.bad ? NULL : rconn_cmd(&rc, "HGETALL %s", k);
    free(k);
    rconn_put(&rc);
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
    char *k = xasprintf("%sevidence:%s", rconn_prefix(rs), acc);
    int rv = rconn_exec(rs, "EVAL %s 1 %s %s %d %d",
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
    if (rconn_get(rs, &rc) != 0) return -1;
    char **keys = NULL;
    size_t nk = 0;
    int rv = 0;
    size_t skip = strlen(rconn_prefix(rs)) + strlen("evidence:");
    if (account && *account) {
        char acc[320];
        str_copy(acc, account, sizeof acc);
        str_lower(acc);
        keys = xcalloc(1, sizeof *keys);
        keys[nk++] = xasprintf("%sevidence:%s", rconn_prefix(rs), acc);
    } else {
        char *pre = glob_escape(rconn_prefix(rs));
        char *pat = xasprintf("%sevidence:*", pre);
        rv = scan_keys(&rc, pat, &keys, &nk);
        free(pat);
        free(pre);
    }
    struct ev_row *rows = NULL;
    size_t n = 0;
    for (size_t i = 0; i < nk; i++) {
        redisReply *r = rv == 0 ? rconn_cmd(&rc, "LRANGE %s 0 -1", keys[i]) : NULL;
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
    rconn_put(&rc);
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
    char *k = xasprintf("%sevidence:%s", rconn_prefix(rs), acc);
    int rv = rconn_exec(rs, "DEL %s", k);
    free(k);
    return rv;
}
