/* metrics.h: the daemon's counters, gauges and histograms, and the HTTP listener that
 * serves them in Prometheus's text format at /metrics (and "ok" at /healthz). Each
 * instrumented place is one call: metrics_add(MET_X, 1, "label value", ...). The
 * families, their label names and buckets are the table in metrics.c (docs/metrics.md
 * lists them). Thread-safe; nothing is counted until metrics_http_start() ran. */
#ifndef KURIER_METRICS_H
#define KURIER_METRICS_H

#include <stddef.h>

struct event_base;

enum metric {
    MET_CONNECTIONS,    /* counter {listener} */
    MET_SESSIONS,       /* gauge {listener}: SMTP sessions open now */
    MET_ACCEPTED,       /* counter {listener}: messages queued (250 after DATA) */
    MET_REJECTED,       /* counter {listener, stage, reason} */
    MET_DELIVERIES,     /* counter {status, class}: each recipient's delivery result */
    MET_DELIVERY_DELAY, /* histogram: seconds from arrival to delivered */
    MET_DNS_LOOKUPS,    /* counter {type} */
    MET_DNS_FAILURES,   /* counter {type, status}: tempfail, bogus */
    MET_TLS_HANDSHAKES, /* counter {direction, version} */
    MET_AUTH,           /* counter {result}: success, failure */
    MET_SPOOL_BATCH,    /* histogram: messages per spool group commit */
    MET_SPOOL_FLUSH,    /* histogram: seconds a group commit took (write, fsync, rename) */
    MET_QUEUE_MESSAGES, /* gauge {state}: set by the collector at each scrape */
    MET_QUEUE_AGE,      /* gauge {age}: messages in the queue by age, at each scrape */
    MET_STATE_DOWN,     /* counter {check}: decisions taken without the shared state */
    MET_COUNT
};

/* Add v to the series of metric m with the family's label values (as many const char *
 * as it has labels, in order; NULL is ""). MET_SESSIONS takes -1 too. */
void metrics_add(enum metric m, double v, ...);
/* Set a gauge (the collector's queue gauges). */
void metrics_set(enum metric m, double v, ...);
/* Count one observation of a histogram. */
void metrics_observe(enum metric m, double v, ...);

/* The callback run (on the loop thread) before each /metrics answer, which sets the
 * gauges that are read rather than counted; the gauges of MET_QUEUE_* are zeroed
 * before it runs. One at a time; NULL removes it. */
void metrics_set_collector(void (*fn)(void *arg), void *arg);

/* The exposition text (what /metrics serves); a new string, the caller frees it. */
char *metrics_text(void);

/* Start the listener on listen ("PORT" on 127.0.0.1, "IP:PORT", "[IPv6]:PORT"); from
 * then on metrics are counted. NULL with err filled when listen is bad or cannot be
 * bound; NULL without an error for an empty listen (off). */
struct metrics_http;
struct metrics_http *metrics_http_start(struct event_base *base, const char *listen, char *err,
                                        size_t errsize);
void metrics_http_free(struct metrics_http *h); /* NULL-safe; counting stops */

#endif
