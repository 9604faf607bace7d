/* limits.c: brute-force protection for AUTH. Failed logins are counted per client
 * address and per (address, account) pair, never per account alone (anyone could lock
 * a user out); answers to failures slow down, and past the limits the pair or the
 * address is refused for a while. In memory, loop thread only. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdint.h>

#include "auth/auth.h"

/* One address ("192.0.2.7", IPv6 as its /64) or one (address, account) pair. */
struct al_entry {
    uint64_t hash;
    char *addr;
    char *account;       /* NULL: the address itself */
    int failures;        /* within the current window */
    double window_start; /* time of the first counted failure */
    double blocked_until;
    struct al_entry *next;                /* in its bucket */
    struct al_entry *lru_prev, *lru_next; /* least recently used first */
};

#define AL_MAX_ENTRIES 100000 /* ~15 MB at most; past it the least recently used goes */
#define AL_MIN_BUCKETS 256

struct auth_limits {
    struct al_entry **b;
    size_t nbuckets; /* a power of two */
    size_t n;
    struct al_entry *lru_head, *lru_tail;
    /* The keys include names the client chose: a keyed hash (SipHash-2-4, random key
     * per start), so nobody can aim many names at one bucket. */
    EVP_MAC_CTX *mac;
    unsigned char key[16];
    double warned; /* last "table full" warning */
};

static uint64_t hash_of(struct auth_limits *al, const char *addr, const char *account)
{
    if (!EVP_MAC_init(al->mac, al->key, sizeof al->key, NULL)) abort();
    /* the NUL after addr separates it from the account; the kind byte last */
    EVP_MAC_update(al->mac, (const unsigned char *)addr, strlen(addr) + 1);
    if (account) EVP_MAC_update(al->mac, (const unsigned char *)account, strlen(account));
    EVP_MAC_update(al->mac, (const unsigned char *)(account ? "p" : "a"), 1);
    unsigned char out[8];
    size_t len = 0;
    if (!EVP_MAC_final(al->mac, out, &len, sizeof out) || len != sizeof out) abort();
    uint64_t h;
    memcpy(&h, out, sizeof h);
    return h;
}

struct auth_limits *auth_limits_new(void)
{
    struct auth_limits *al = xcalloc(1, sizeof *al);
    EVP_MAC *m = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    if (!m) abort();
    al->mac = EVP_MAC_CTX_new(m);
    EVP_MAC_free(m); /* the context holds its own reference */
    if (!al->mac || RAND_bytes(al->key, sizeof al->key) != 1) abort();
    size_t size = 8; /* 64-bit output */
    OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t("size", &size), OSSL_PARAM_END};
    if (!EVP_MAC_init(al->mac, al->key, sizeof al->key, params)) abort();
    al->nbuckets = AL_MIN_BUCKETS;
    al->b = xcalloc(al->nbuckets, sizeof *al->b);
    return al;
}

static void entry_free(struct al_entry *e)
{
    free(e->addr);
    free(e->account);
    free(e);
}

void auth_limits_free(struct auth_limits *al)
{
    if (!al) return;
    for (struct al_entry *e = al->lru_head, *next; e; e = next) {
        next = e->lru_next;
        entry_free(e);
    }
    free(al->b);
    EVP_MAC_CTX_free(al->mac);
    explicit_bzero(al->key, sizeof al->key);
    free(al);
}

static void lru_unlink(struct auth_limits *al, struct al_entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        al->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        al->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_append(struct auth_limits *al, struct al_entry *e)
{
    e->lru_prev = al->lru_tail;
    e->lru_next = NULL;
    if (al->lru_tail)
        al->lru_tail->lru_next = e;
    else
        al->lru_head = e;
    al->lru_tail = e;
}

static void remove_entry(struct auth_limits *al, struct al_entry *e)
{
    struct al_entry **pp = &al->b[e->hash & (al->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    lru_unlink(al, e);
    entry_free(e);
    al->n--;
}

static void grow(struct auth_limits *al)
{
    size_t nb = al->nbuckets * 2;
    struct al_entry **b = xcalloc(nb, sizeof *b);
    for (size_t i = 0; i < al->nbuckets; i++)
        for (struct al_entry *e = al->b[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    free(al->b);
    al->b = b;
    al->nbuckets = nb;
}

static int stale(const struct al_entry *e, const struct kconf *c, double now)
{
    return e->blocked_until <= now && now - e->window_start > c->auth_window;
}

/* The key for a client address: the address itself, an IPv6 address as its /64 (one
 * site, however many addresses it uses), an IPv4-mapped IPv6 address as IPv4.
 * Returns 1 when ip is an address (or such a prefix), else 0 (key = ip as given). */
int auth_limits_addr_key(const char *ip, char *key, size_t size)
{
    unsigned char a[16];
    char tmp[INET6_ADDRSTRLEN + 4];
    str_copy(tmp, ip, sizeof tmp);
    char *slash = strchr(tmp, '/'); /* "2001:db8::/64", as auth_limits_each_block shows */
    if (slash) {
        if (strcmp(slash, "/64") != 0) {
            str_copy(key, ip, size);
            return 0;
        }
        *slash = '\0';
    }
    if (!slash && inet_pton(AF_INET, tmp, a) == 1) {
        inet_ntop(AF_INET, a, key, (socklen_t)size);
        return 1;
    }
    if (inet_pton(AF_INET6, tmp, a) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (!slash && memcmp(a, mapped, 12) == 0) {
            inet_ntop(AF_INET, a + 12, key, (socklen_t)size);
            return 1;
        }
        memset(a + 8, 0, 8);
        char s[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, a, s, sizeof s);
        snprintf(key, size, "%s/64", s);
        return 1;
    }
    str_copy(key, ip, size);
    return 0;
}

/* account NULL: the address's entry. Creating may evict the least recently used
 * entry when the table is full. */
static struct al_entry *find(struct auth_limits *al, const struct kconf *c, const char *ip,
                             const char *user, int create, double now)
{
    char addr[INET6_ADDRSTRLEN + 4];
    auth_limits_addr_key(ip, addr, sizeof addr);
    char *account = NULL;
    if (user) {
        account = xstrdup(user);
        str_lower(account);
    }
    uint64_t h = hash_of(al, addr, account);
    struct al_entry *e;
    for (e = al->b[h & (al->nbuckets - 1)]; e; e = e->next)
        if (e->hash == h && strcmp(e->addr, addr) == 0 &&
            (account ? e->account && strcmp(e->account, account) == 0 : !e->account))
            break;
    if (e || !create) {
        free(account);
        if (e) { /* recently used: last to go */
            lru_unlink(al, e);
            lru_append(al, e);
        }
        return e;
    }
    /* make room: first what says nothing any more, then the least recently used */
    for (int i = 0; i < 4 && al->lru_head && stale(al->lru_head, c, now); i++)
        remove_entry(al, al->lru_head);
    if (al->n >= AL_MAX_ENTRIES) {
        if (now - al->warned >= 60 || al->warned == 0) {
            al->warned = now;
            log_warn("auth",
                     "brute-force table full (%d entries): forgetting the least "
                     "recently used",
                     AL_MAX_ENTRIES);
        }
        remove_entry(al, al->lru_head);
    }
    if (al->n >= al->nbuckets * 2) grow(al);
    e = xcalloc(1, sizeof *e);
    e->hash = h;
    e->addr = xstrdup(addr);
    e->account = account;
    size_t i = h & (al->nbuckets - 1);
    e->next = al->b[i];
    al->b[i] = e;
    lru_append(al, e);
    al->n++;
    return e;
}

static int is_blocked(const struct al_entry *e, double now)
{
    return e && e->blocked_until > now;
}

int auth_limits_blocked(struct auth_limits *al, const struct kconf *c, const char *ip,
                        const char *user, double now)
{
    return is_blocked(find(al, c, ip, NULL, 0, now), now) ||
           is_blocked(find(al, c, ip, user, 0, now), now);
}

static int count_failure(struct al_entry *e, const struct kconf *c, int max, double now)
{
    if (e->failures == 0 || now - e->window_start > c->auth_window) {
        e->failures = 0;
        e->window_start = now;
    }
    e->failures++;
    if (e->failures >= max) e->blocked_until = now + c->auth_block_time;
    return e->failures;
}

double auth_limits_record(struct auth_limits *al, const struct kconf *c, const char *ip,
                          const char *user, int ok, double now)
{
    if (ok) {
        /* a good login clears the pair's count, not the address's: one valid account
         * must not launder guesses against others from the same address */
        struct al_entry *e = find(al, c, ip, user, 0, now);
        if (e && !is_blocked(e, now)) e->failures = 0;
        return 0;
    }
    int a = count_failure(find(al, c, ip, NULL, 1, now), c, c->auth_max_failures_address, now);
    int b = count_failure(find(al, c, ip, user, 1, now), c, c->auth_max_failures, now);
    int n = a > b ? a : b;
    double delay = ldexp(1.0, n - 1); /* 1, 2, 4, ... seconds */
    return delay < c->auth_delay_max ? delay : c->auth_delay_max;
}

void auth_limits_each_block(struct auth_limits *al, double now,
                            void (*cb)(void *arg, const char *addr, const char *account,
                                       int failures, double seconds_left),
                            void *arg)
{
    for (const struct al_entry *e = al->lru_head; e; e = e->lru_next)
        if (is_blocked(e, now)) cb(arg, e->addr, e->account, e->failures, e->blocked_until - now);
}

int auth_limits_clear(struct auth_limits *al, const char *what, double now)
{
    char addr[INET6_ADDRSTRLEN + 4];
    int is_addr = auth_limits_addr_key(what, addr, sizeof addr);
    char *account = xstrdup(what);
    str_lower(account);
    int lifted = 0;
    for (struct al_entry *e = al->lru_head, *next; e; e = next) {
        next = e->lru_next;
        if (is_addr ? strcmp(e->addr, addr) == 0 : e->account && strcmp(e->account, account) == 0) {
            lifted += is_blocked(e, now);
            remove_entry(al, e);
        }
    }
    free(account);
    return lifted;
}

size_t auth_limits_size(const struct auth_limits *al)
{
    return al->n;
}
