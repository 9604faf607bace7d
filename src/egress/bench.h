/* bench.h: which egress (source) address may send to which destination now. A
 * "bench" takes one sending address out of service, for one destination or for all,
 * until a time or until lifted. Kept in memory on the loop thread and persisted in
 * the directory database (table egress_bench), so benches survive a restart.
 * Who benches: deliver/remote.c on an "ip-blocklist" reply (for the MX host's
 * organisation), the DNSBL self-monitor (egress/monitor.c: for every destination),
 * and the admin (kurier egress bench|unbench, through the control socket).
 * Besides benches: "slow" marks (an "ip-reputation-temporary" or "rate-limit"
 * reply: fewer connections for that address and destination) and volume counters
 * per address (messages and recipients per hour, day and destination).
 * The configured addresses are the sources of the pools in the configuration
 * (struct kconf pools, core/conf.h: each pool's src[i].addr, canonical text).
 * Every function here runs on the loop thread only (no locking). */
#ifndef KURIER_EGRESS_BENCH_H
#define KURIER_EGRESS_BENCH_H

#include <stddef.h>
#include <time.h>

struct store;

#define EGRESS_REASON_MAX 500 /* longer reasons are cut */

/* Load the persisted benches from st (NULL: memory only, nothing persisted) and
 * keep st for writing changes (written on a worker, core/work.h). Call once at
 * start-up, before the loop runs; expired benches are dropped. 0 done, -1 the table
 * could not be read (logged; the module works from memory). */
int egress_bench_init(struct store *st);
/* Forget everything; pending writes are finished first. Safe without init. */
/* With a shared state (store_shared()): read the benches every seconds on a worker,
 * so a bench set or lifted on another node holds here too (docs/cluster.md). */
struct event_base;
void egress_bench_sync_start(struct event_base *base, int seconds);
void egress_bench_shutdown(void);

/* Bench addr (an IPv4 or IPv6 address as text, any spelling: stored in canonical
 * form) for destination until `until` (a time(NULL) value; 0 = until lifted by hand).
 * destination: an MX host name or an organisation ("outlook.com"; see egress_org()),
 * case-insensitive, or NULL for every destination. reason: free text for status and
 * logs, copied (cut at EGRESS_REASON_MAX bytes); e.g. the DNSBL monitor passes
 * "listed on zen.spamhaus.org: <TXT record>". A bench of the same (addr,
 * destination) is replaced (its "since" kept). Logged once ("egress: bench ...").
 * Returns 0, or -1 when addr is not an IP address. */
int egress_bench(const char *addr, const char *destination, const char *reason, time_t until);

/* Lift the bench of (addr, destination); destination NULL lifts only the
 * every-destination bench (the one egress_bench(addr, NULL, ...) set), leaving
 * per-destination benches alone. Returns how many were lifted (0 or 1), -1 when addr
 * is not an IP address. */
int egress_unbench(const char *addr, const char *destination);
/* Lift every bench of addr (every destination and the every-destination one). Returns
 * how many were lifted, -1 when addr is not an IP address. */
int egress_unbench_all(const char *addr);

/* 1 when addr may not send to host now: a live bench for every destination, for host
 * itself or for host's organisation; else 0. reason (may be NULL) gets that bench's
 * reason. host: an MX host name or IP literal. */
int egress_is_benched(const char *addr, const char *host, char *reason, size_t rsize);

/* The organisation of an MX host, lowercased into out: the last two labels
 * ("mx1.eur.protection.outlook.com" -> "outlook.com"), three when the second-level
 * label is a public suffix of two letters or "co"/"com"/"net"/"org"/"gov"/"ac"
 * ("mx.example.co.uk" -> "example.co.uk"); an IP literal stays as it is. */
void egress_org(const char *host, char *out, size_t size);

/* Every live bench, one call each (borrowed strings, valid during the call). */
struct egress_bench_info {
    const char *addr;        /* canonical */
    const char *destination; /* NULL: every destination */
    const char *reason;
    time_t since, until; /* until 0: until lifted */
};
void egress_bench_list(void (*cb)(void *arg, const struct egress_bench_info *b), void *arg);

/* --- DNS list listings (the monitor's findings) -----------------------------------
 * listed: addr was found on the DNS list zone (txt: its TXT record or NULL): bench it
 * for every destination until lifted. Not listed (clear again, or unknown after a
 * refusal: a refusal never ends a listing, the monitor does not report that): forget
 * zone's listing, and lift the every-destination bench when no list lists addr any
 * more. addr as the monitor gives it (canonical). */
void egress_listing(const char *addr, const char *zone, int listed, const char *txt);
/* Forget every listing (at exit; the benches themselves stay persisted). */
void egress_listing_free(void);

/* --- slow-down marks ------------------------------------------------------------- */
/* An "ip-reputation-temporary" or "rate-limit" reply from host: addr sends to host's
 * organisation with one connection at a time and only when no other address of its
 * pool may, until `until`. */
void egress_slow(const char *addr, const char *host, const char *reason, time_t until);
/* 1 when (addr, host's organisation) is slowed down now. */
int egress_is_slow(const char *addr, const char *host);
/* Every live slow-down mark of addr: cb(arg, organisation, until). */
void egress_slow_list(const char *addr, void (*cb)(void *arg, const char *org, time_t until),
                      void *arg);

/* --- volume counters ------------------------------------------------------------- */
/* One message with nrcpts recipients accepted by host, sent from addr. In memory. */
void egress_count(const char *addr, const char *host, size_t nrcpts);
struct egress_volume {
    unsigned long msgs_hour, rcpts_hour, msgs_day, rcpts_day;
};
/* The counters of addr (zero when unknown), for the current hour and day. */
void egress_volume_get(const char *addr, struct egress_volume *out);
/* Per destination organisation, this day: cb once per destination. */
void egress_volume_dests(const char *addr,
                         void (*cb)(void *arg, const char *org, const struct egress_volume *v),
                         void *arg);

/* --- the pools at delivery time ---------------------------------------------------
 * The running configuration (its pools, for egress_pick() state and status): the
 * daemon hands each loaded configuration over (takes a reference, drops the old). */
struct kconf;
struct conf_egress_pool;
struct conf_egress_source;
struct buf;
void egress_set_conf(const struct kconf *c);
/* The configuration egress_set_conf() gave last (borrowed; NULL before), into *out. */
void egress_status_conf(const struct kconf **out);

/* The source of pool p for the next connection to host: smooth weighted round-robin
 * (nginx's: deterministic, spread by weight) over the addresses that are neither
 * benched nor slowed for host; the slowed ones only when nothing else is left.
 * NULL when every address is benched for host (why, may be NULL, gets one bench's
 * reason). The result points into p. */
const struct conf_egress_source *egress_pick(const struct conf_egress_pool *p, const char *host,
                                             char *why, size_t whylen);

/* The status of every configured address (pool, state, benches with reasons per
 * destination, volume), appended to out: text for people, or one JSON object
 * {"addresses": [...], "benches": [...]} when json is set. */
void egress_status(struct buf *out, int json);

/* --- the reply classifier's one question ---------------------------------------- */
enum egress_reply {
    EGRESS_REPLY_OTHER = 0, /* nothing about our address */
    EGRESS_REPLY_BLOCKLIST, /* "ip-blocklist": bench the address for that receiver */
    EGRESS_REPLY_SLOW,      /* "ip-reputation-temporary" or "rate-limit": slow down */
};
/* What a remote reply (code, enhanced code or "", text) says about our sending
 * address. (egress/replies.c's egress_reply_classify() takes this over.) */
enum egress_reply egress_reply_kind(int code, const char *enh, const char *text);

#endif
