/* monitor.h: blocklist monitoring of our egress (sending) addresses (docs/egress.md).
 * monitor.c looks every address up on every configured DNS list on a timer, keeps
 * the state of each (address, list) and its history in the directory, and hands
 * every change to a callback; notify.c tells people about a change: a mail to the
 * postmaster and a JSON POST to a webhook. Taking a listed address out of service
 * is the callback's business (the egress pools). */
#ifndef KURIER_EGRESS_MONITOR_H
#define KURIER_EGRESS_MONITOR_H

#include <stddef.h>
#include <time.h>

struct event_base;
struct dns;
struct kconf;
struct store;
struct spool;
struct queue;

enum monitor_state {
    MONITOR_NONE = 0, /* not looked up yet */
    MONITOR_CLEAR,    /* not listed */
    MONITOR_LISTED,   /* listed: take it out of service */
    MONITOR_UNKNOWN,  /* the list refused to answer (a refusal code): neither */
};

/* One change of an (address, list), for the callback. Every pointer is borrowed for
 * the call. */
struct monitor_event {
    const char *address; /* "192.0.2.10", "2001:db8::10" */
    const char *zone;    /* the list: "bl.spamcop.net" */
    enum monitor_state state, previous;
    const char *code;       /* listed: the answers ("127.0.0.2", comma-separated when
                               several); unknown: the refusal code; else "" */
    const char *txt;        /* listed: the list's TXT record (printable ASCII), else "" */
    const char *delist_url; /* the list's delisting page for the address, "" if unknown */
    time_t since;           /* when the new state began (a clear address: when it was
                               first seen unlisted again) */
    time_t time;            /* when the change was seen */
    int restored;           /* 1: a listing read back from the directory at start-up,
                               not a new change (re-apply it, do not report it) */
};

struct monitor;
typedef void (*monitor_cb)(void *arg, const struct monitor_event *ev);

/* Start monitoring with conf's monitor { } block (a reference is taken): the states
 * of the last run are read from st on a worker, then a round of lookups starts, and
 * another every conf->mon_interval. Queries go through dns (borrowed; NULL: none are
 * made), at most conf->mon_concurrency at once. on_change(arg, ev) runs on the loop
 * thread for each change, after it was logged (one line) and handed to the store.
 * Nothing is done while there are no addresses. Needs work_init(). */
struct monitor *monitor_new(struct event_base *base, struct dns *dns, const struct kconf *conf,
                            struct store *st, monitor_cb on_change, void *arg);
/* Use a new configuration (after a reload) from the next round on, which starts at
 * once when no round runs. Takes a reference to conf and drops the old one. */
void monitor_set_conf(struct monitor *m, const struct kconf *conf);
/* Watch these addresses too (IPv4 or IPv6 text; copied), besides the configured ones,
 * replacing any given before: the egress pools' source addresses. Invalid ones are
 * logged and skipped. Applied like monitor_set_conf(). */
void monitor_set_addresses(struct monitor *m, const char *const *addrs, size_t n);
/* Stop: cancels queries in flight (no callback runs any more), writes the changes not
 * yet stored (blocking), frees. NULL-safe. */
void monitor_free(struct monitor *m);

/* --- pure helpers (tests/unit/test_monitor.c) --------------------------------- */

/* The state of one (address, list) and what one lookup found. */
struct monitor_track {
    enum monitor_state state;
    time_t since;       /* when state began */
    time_t clear_since; /* listed: since when lookups find it unlisted, 0 = listed */
};
enum monitor_result {
    MONITOR_R_LISTED,  /* an answer the list's filter passes */
    MONITOR_R_CLEAR,   /* no such name, or only answers the filter does not pass */
    MONITOR_R_REFUSED, /* a refusal code: 127.255.255.252-255 or outside 127.0.0.0/8 */
    MONITOR_R_ERROR,   /* no answer (timeout, SERVFAIL): nothing learnt */
};
/* Apply result r seen at now to t, with hold seconds before a listed address counts
 * as clear. Returns 1 when the state changed in a way to report (t->state is the new
 * one), 2 when a first lookup found it clear (record it quietly), 0 otherwise.
 * A listing counts at once; a listed address becomes clear once lookups found it
 * unlisted for hold seconds (a new listing in between starts that over); a refusal
 * makes a clear address unknown but never ends a listing; errors change nothing. */
int monitor_step(struct monitor_track *t, enum monitor_result r, time_t now, int hold);
/* "none", "clear", "listed", "unknown". */
const char *monitor_state_name(enum monitor_state s);
/* The state called name, or -1. */
int monitor_state_parse(const char *name);
/* The delisting page of zone for address ip: tmpl (a configured URL, "$ip" replaced by
 * ip) or, when tmpl is NULL, the built-in page of a common list. "" when none is
 * known. 0 done, -1 out too small (the URL is cut). */
int monitor_delist_url(const char *tmpl, const char *zone, const char *ip, char *out,
                       size_t outsize);
/* The lists looked up when monitor { lists } is not set, space-separated. */
extern const char monitor_default_lists[];

/* --- reports (notify.c) -------------------------------------------------------- */
struct monitor_notify;
/* Report changes: a mail to conf->mon_mail_to (postmaster when unset) committed into
 * the spool and handed to queue_add(), when conf->mon_mail; a JSON POST to
 * conf->mon_webhook when set (conf->mon_webhook_timeout; failures logged, never
 * retried). All borrowed; conf is read at each report (monitor_notify_set_conf). */
struct monitor_notify *monitor_notify_new(struct event_base *base, struct dns *dns,
                                          const struct kconf *conf, struct spool *s,
                                          struct queue *q);
void monitor_notify_set_conf(struct monitor_notify *n, const struct kconf *conf);
/* Report ev (restored events are not reported). Never blocks. */
void monitor_notify(struct monitor_notify *n, const struct monitor_event *ev);
/* Cancel webhook requests in flight; a mail already handed to the spool is still
 * committed (and found in the queue at the next start). NULL-safe. */
void monitor_notify_free(struct monitor_notify *n);
/* The webhook's JSON for ev: a new string (caller frees). host: our hostname. */
char *monitor_event_json(const struct monitor_event *ev, const char *host);
/* The report mail for ev (headers and body, CRLF line ends, text/plain UTF-8 in
 * conf->locale), from MAILER-DAEMON@hostname to to. A new string, *len its length. */
char *monitor_report_mail(const struct kconf *conf, const struct monitor_event *ev, const char *to,
                          size_t *len);

#endif
