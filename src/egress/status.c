/* status.c: "kurier egress status": every configured source address with its pools,
 * state, benches (reason per destination) and volume, as text or JSON. Reads
 * bench.c's state through bench.h only. Loop thread. */
#include "core/compat.h"

#include "core/core.h"
#include "egress/bench.h"

struct addr_row {
    char addr[64];
    char pools[256];
};

static void fmt_time(char *dst, size_t size, time_t t)
{
    struct tm tm;
    if (t == 0) {
        str_copy(dst, "lifted by hand", size);
        return;
    }
    gmtime_r(&t, &tm);
    strftime(dst, size, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* Text only: printable ASCII of a peer's words. */
static void put_clean(struct buf *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        buf_printf(out, "%c", *p >= 0x20 && *p < 0x7f ? *p : '?');
}

struct collect {
    struct addr_row *rows;
    size_t n;
};

static void add_row(struct collect *c, const char *addr, const char *pool)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->rows[i].addr, addr) == 0) {
            if (pool) {
                size_t l = strlen(c->rows[i].pools);
                snprintf(c->rows[i].pools + l, sizeof c->rows[i].pools - l, "%s%s", l ? "," : "",
                         pool);
            }
            return;
        }
    c->rows = xrealloc(c->rows, (c->n + 1) * sizeof *c->rows);
    struct addr_row *r = &c->rows[c->n++];
    str_copy(r->addr, addr, sizeof r->addr);
    str_copy(r->pools, pool ? pool : "", sizeof r->pools);
}

static void collect_bench(void *arg, const struct egress_bench_info *b)
{
    add_row(arg, b->addr, NULL);
}

struct per_addr {
    const char *addr;
    struct buf *out;
    int json, n;
};

static void put_bench(void *arg, const struct egress_bench_info *b)
{
    struct per_addr *pa = arg;
    if (strcmp(b->addr, pa->addr) != 0) return;
    if (pa->json) {
        buf_puts(pa->out, pa->n++ ? ", " : "");
        buf_puts(pa->out, "{\"destination\": ");
        buf_json_str(pa->out, b->destination);
        buf_puts(pa->out, ", \"reason\": ");
        buf_json_str(pa->out, b->reason);
        buf_printf(pa->out, ", \"since\": %lld, \"until\": %lld}", (long long)b->since,
                   (long long)b->until);
    } else {
        char until[64];
        fmt_time(until, sizeof until, b->until);
        buf_printf(pa->out, "    benched for %s until %s: ",
                   b->destination ? b->destination : "all destinations", until);
        put_clean(pa->out, b->reason);
        buf_puts(pa->out, "\n");
        pa->n++;
    }
}

static void count_bench(void *arg, const struct egress_bench_info *b)
{
    struct per_addr *pa = arg;
    if (strcmp(b->addr, pa->addr) != 0) return;
    pa->n += b->destination ? 1 : 1000;
}

static void put_dest(void *arg, const char *org, const struct egress_volume *v)
{
    struct per_addr *pa = arg;
    if (pa->json) {
        buf_puts(pa->out, pa->n++ ? ", " : "");
        buf_puts(pa->out, "{\"destination\": ");
        buf_json_str(pa->out, org);
        buf_printf(pa->out,
                   ", \"messages_hour\": %lu, \"recipients_hour\": %lu, \"messages_day\": %lu, "
                   "\"recipients_day\": %lu}",
                   v->msgs_hour, v->rcpts_hour, v->msgs_day, v->rcpts_day);
    } else {
        buf_printf(pa->out, "    to %s: %lu messages, %lu recipients this hour; %lu, %lu today\n",
                   org, v->msgs_hour, v->rcpts_hour, v->msgs_day, v->rcpts_day);
    }
}

static void put_slow(void *arg, const char *org, time_t until)
{
    struct per_addr *pa = arg;
    if (pa->json) {
        buf_puts(pa->out, pa->n++ ? ", " : "");
        buf_puts(pa->out, "{\"destination\": ");
        buf_json_str(pa->out, org);
        buf_printf(pa->out, ", \"until\": %lld}", (long long)until);
    } else {
        char t[64];
        fmt_time(t, sizeof t, until);
        buf_printf(pa->out, "    slowed down for %s until %s\n", org, t);
    }
}

void egress_status(struct buf *out, int json)
{
    struct collect c = {0};
    const struct kconf *conf = NULL;
    egress_status_conf(&conf);
    for (const struct conf_egress_pool *p = conf ? conf->pools : NULL; p; p = p->next)
        for (size_t i = 0; i < p->nsrc; i++)
            add_row(&c, p->src[i].addr, p->name);
    egress_bench_list(collect_bench, &c);
    if (json) buf_puts(out, "{\"addresses\": [");
    if (!json && c.n == 0) buf_puts(out, "no egress pools configured and nothing benched\n");
    for (size_t i = 0; i < c.n; i++) {
        struct addr_row *r = &c.rows[i];
        struct per_addr pa = {r->addr, out, json, 0};
        egress_bench_list(count_bench, &pa);
        int all = pa.n >= 1000, ndest = pa.n % 1000;
        char state[64];
        if (all)
            str_copy(state, "benched", sizeof state);
        else if (ndest)
            snprintf(state, sizeof state, "benched for %d destination%s", ndest,
                     ndest == 1 ? "" : "s");
        else
            str_copy(state, "active", sizeof state);
        struct egress_volume v;
        egress_volume_get(r->addr, &v);
        if (json) {
            buf_puts(out, i ? ", " : "");
            buf_puts(out, "{\"address\": ");
            buf_json_str(out, r->addr);
            buf_puts(out, ", \"pools\": [");
            for (const char *p = r->pools; *p;) {
                size_t l = strcspn(p, ",");
                char name[64];
                snprintf(name, sizeof name, "%.*s", (int)l, p);
                buf_puts(out, p == r->pools ? "" : ", ");
                buf_json_str(out, name);
                p += l + (p[l] == ',');
            }
            buf_puts(out, "]");
            buf_printf(out, ", \"state\": \"%s\"",
                       all     ? "benched"
                       : ndest ? "partly benched"
                               : "active");
            buf_printf(out,
                       ", \"messages_hour\": %lu, \"recipients_hour\": %lu, \"messages_day\": "
                       "%lu, \"recipients_day\": %lu, \"benches\": [",
                       v.msgs_hour, v.rcpts_hour, v.msgs_day, v.rcpts_day);
            pa.n = 0;
            egress_bench_list(put_bench, &pa);
            buf_puts(out, "], \"slowdowns\": [");
            pa.n = 0;
            egress_slow_list(r->addr, put_slow, &pa);
            buf_puts(out, "], \"destinations\": [");
            pa.n = 0;
            egress_volume_dests(r->addr, put_dest, &pa);
            buf_puts(out, "]}");
        } else {
            buf_printf(out, "%s pool=%s state=%s messages=%lu/h,%lu/d recipients=%lu/h,%lu/d\n",
                       r->addr, r->pools[0] ? r->pools : "-", state, v.msgs_hour, v.msgs_day,
                       v.rcpts_hour, v.rcpts_day);
            pa.n = 0;
            egress_bench_list(put_bench, &pa);
            egress_slow_list(r->addr, put_slow, &pa);
            egress_volume_dests(r->addr, put_dest, &pa);
        }
    }
    if (json) buf_puts(out, "]}\n");
    free(c.rows);
}
