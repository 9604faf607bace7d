/* authlimit.c: brute-force protection for AUTH. Failed logins are counted per client
 * address and per account; answers to failures slow down, and past the limit the
 * address or account is refused for a while. In memory, loop thread only. */
#include "core/compat.h"

#include <math.h>

#include "policy/policy.h"

struct al_entry {
    char *key;           /* "ip:192.0.2.7" or "user:a@b" */
    int failures;        /* within the current window */
    double window_start; /* time of the first counted failure */
    double blocked_until;
    struct al_entry *next;
};

#define AL_BUCKETS 1024

struct auth_limits {
    struct al_entry *b[AL_BUCKETS];
    size_t n;
};

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % AL_BUCKETS;
}

struct auth_limits *auth_limits_new(void)
{
    return xcalloc(1, sizeof(struct auth_limits));
}

void auth_limits_free(struct auth_limits *al)
{
    if (!al) return;
    for (size_t i = 0; i < AL_BUCKETS; i++)
        for (struct al_entry *e = al->b[i], *next; e; e = next) {
            next = e->next;
            free(e->key);
            free(e);
        }
    free(al);
}

/* Drop entries that say nothing any more (bounded memory under a spray of
 * addresses). */
static void expire(struct auth_limits *al, const struct kconf *c, double now)
{
    for (size_t i = 0; i < AL_BUCKETS; i++) {
        struct al_entry **pp = &al->b[i];
        while (*pp) {
            struct al_entry *e = *pp;
            if (e->blocked_until <= now && now - e->window_start > c->auth_window) {
                *pp = e->next;
                free(e->key);
                free(e);
                al->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

static struct al_entry *find(struct auth_limits *al, const char *kind, const char *v, int create)
{
    char key[600];
    snprintf(key, sizeof key, "%s:%s", kind, v);
    str_lower(key);
    unsigned h = hash(key);
    for (struct al_entry *e = al->b[h]; e; e = e->next)
        if (strcmp(e->key, key) == 0) return e;
    if (!create) return NULL;
    struct al_entry *e = xcalloc(1, sizeof *e);
    e->key = xstrdup(key);
    e->next = al->b[h];
    al->b[h] = e;
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
    if (al->n > 100000) expire(al, c, now);
    return is_blocked(find(al, "ip", ip, 0), now) || is_blocked(find(al, "user", user, 0), now);
}

static int count_failure(struct al_entry *e, const struct kconf *c, double now)
{
    if (e->failures == 0 || now - e->window_start > c->auth_window) {
        e->failures = 0;
        e->window_start = now;
    }
    e->failures++;
    if (e->failures >= c->auth_max_failures) e->blocked_until = now + c->auth_block_time;
    return e->failures;
}

double auth_limits_record(struct auth_limits *al, const struct kconf *c, const char *ip,
                          const char *user, int ok, double now)
{
    if (ok) {
        /* a good login clears the account's count, not the address's: one valid
         * account must not launder guesses against others from the same address */
        struct al_entry *e = find(al, "user", user, 0);
        if (e && !is_blocked(e, now)) e->failures = 0;
        return 0;
    }
    int a = count_failure(find(al, "ip", ip, 1), c, now);
    int b = count_failure(find(al, "user", user, 1), c, now);
    int n = a > b ? a : b;
    double delay = ldexp(1.0, n - 1); /* 1, 2, 4, ... seconds */
    return delay < c->auth_delay_max ? delay : c->auth_delay_max;
}
