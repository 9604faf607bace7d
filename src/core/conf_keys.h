/* conf_keys.h: private to src/core/conf*.c (not part of core.h): the shape of the
 * key table of kurier.conf. conf_keys.c holds the table itself (what the settings
 * are), conf.c the machinery it drives (load, dump, doc), conf_value.c the values
 * of each key type. */
#ifndef KURIER_CONF_KEYS_H
#define KURIER_CONF_KEYS_H

#include <stddef.h>
#include <stdio.h>

enum ktype {
    KT_STR,
    KT_HOST,
    KT_PATH,
    KT_INT,
    KT_SIZE,
    KT_DUR,
    KT_DOUBLE,
    KT_BOOL,
    KT_ENUM,
    KT_CHOICE,
    KT_NETS,
    KT_HOSTLIST, /* one or more HOST[:PORT] arguments, stored space-separated */
    KT_ADDR,     /* a mailbox local@domain, stored as kurier writes addresses */
    KT_WORDS,    /* one or more of choices (one line), stored space-separated in order */
    KT_DNSBL,    /* DNS list sites ZONE[=FILTER][*WEIGHT] (conf_dnsbl_site_parse()); repeated
                    lines add up; stored space-separated */
    KT_ACTION,   /* what a check's result does: reject, tempfail or a score (an integer within
                    min..max); stored as an int (CONF_ACTION_* in conf.h, else the score) */
    KT_TRAPS,    /* one or more mailboxes local@domain or domains, lower case; repeated lines
                    add up; stored space-separated */
    KT_ADDRS,    /* one or more mailboxes local@domain a line, stored space-separated as kurier
                    writes addresses; repeated lines add up */
    KT_PAIRS     /* NAME URL pairs (a DNS zone and an http(s) URL), one or more a line;
                    repeated lines add up; stored "NAME URL NAME URL ..." */
};

enum kblock {
    KB_MAIN = 0,
    KB_LOG,
    KB_LIMITS,
    KB_QUEUE,
    KB_RELAY,
    KB_AUTH,
    KB_OUTBOUND,
    KB_GREYLIST,
    KB_BATV,
    KB_MONITOR,
    KB_VERIFY,
    KB_DKIM,
    KB_ABUSE,
    KB_COMPLAINTS,
    KB_SRS,
    KB_STATE,
    KB_LISTEN, /* from here on: blocks with an argument, in any number */
    KB_TRANSPORT,
    KB_COUNT
};

struct conf_key {
    enum kblock block;
    const char *name;
    enum ktype type;
    const char *def;     /* default as written in a file; NULL: none or computed */
    const char *defdoc;  /* default as shown in docs, when it differs from def */
    double min, max;     /* KT_INT, KT_SIZE, KT_DUR, KT_DOUBLE */
    const char *choices; /* KT_ENUM (stored as int index), KT_CHOICE (stored as string) */
    size_t off;          /* into struct kconf, or struct conf_listen for KB_LISTEN; KT_NETS:
                            a struct conf_net * directly followed by its size_t count */
    const char *help;
};

/* Room for per-key bookkeeping arrays ("seen" while loading); conf_keys.c checks at
 * compile time that the table fits. */
#define CONF_KEYS_MAX 200

extern const char *const conf_block_names[KB_COUNT];

/* egress pool NAME { } (conf_egress.c): not table-driven (repeated "source" lines
 * with options). apply: one node (name "egress", args "pool" NAME); check: after the
 * whole file (fallback names); free, dump and doc as conf.c's. */
struct kconf;
struct conf_node;
struct conf_errors;
void conf_egress_apply(struct kconf *c, const struct conf_node *n, struct conf_errors *errs);
void conf_egress_check(struct kconf *c, struct conf_errors *errs);
void conf_egress_free(struct kconf *c);
void conf_egress_dump(const struct kconf *c, FILE *out);
void conf_egress_doc(FILE *out);
/* conf_value.c: a number as it is written in a file: a duration with the largest
 * unit that divides it ("90m", "2d", "0"), a size likewise ("10M"), a double exactly. */
void conf_fmt_dur(char *dst, size_t size, long long v);
void conf_fmt_size(char *dst, size_t size, unsigned long long v);
void conf_fmt_double(char *dst, size_t size, double v);
/* conf_value.c: a limit of k as it is written in a file (durations, sizes); the value
 * of k in base as it would appear in a file: 0, or -1 when unset. */
void conf_fmt_limit(char *dst, size_t size, const struct conf_key *k, double v);
struct buf;
int conf_value_text(const struct conf_key *k, const void *base, struct buf *out);
/* conf_value.c: the field of k in base (the struct kconf, or the struct conf_listen
 * for KB_LISTEN keys), borrowed. */
static inline void *conf_field(void *base, const struct conf_key *k)
{
    return (char *)base + k->off;
}
/* conf_value.c: check one argument s of key k and store it into base (list types
 * add to what is there). 0 done; -1 with why set to the message for the user
 * ("invalid value ...", "value ... is out of range ..."), base unchanged. */
int conf_value_set(const struct conf_key *k, void *base, const char *s, char *why, size_t whylen);
extern const struct conf_key conf_keys[];
extern const size_t conf_nkeys;

#endif
