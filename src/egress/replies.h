/* replies.h: the egress reply classifier. Sorts a remote SMTP reply (code, enhanced
 * code, text) into the kind of problem it reports, by rules read from a data file
 * (data/replies.rules, installed as PREFIX/share/kurier/replies.rules; reply_rules in
 * kurier.conf). Delivery asks it whether a refusal is about our sending address
 * (blocklisted: resend through another one) or about the message or recipient.
 * Pure apart from reading the file; no globals but the daemon's current rules. */
#ifndef KURIER_EGRESS_REPLIES_H
#define KURIER_EGRESS_REPLIES_H

#include <stddef.h>

/* What a reply says. The names (egress_reply_kind_name()) are those of the rules file
 * and of "kurier replies classify". */
enum reply_kind {
    REPLY_OTHER = 0,               /* "other": nothing known (also for no rules) */
    REPLY_IP_BLOCKLIST,            /* "ip-blocklist": our sending address is listed or
                                      banned there; another address may get through */
    REPLY_IP_REPUTATION_TEMPORARY, /* "ip-reputation-temporary": deferred for the
                                      address's reputation or volume; slow down */
    REPLY_RATE_LIMIT,              /* "rate-limit": too many connections/messages */
    REPLY_GREYLIST,                /* "greylist": try again later, as always */
    REPLY_USER_UNKNOWN,            /* "user-unknown": no such recipient */
    REPLY_MAILBOX_FULL,            /* "mailbox-full": over quota */
    REPLY_POLICY,                  /* "policy": content, SPF/DKIM/DMARC, local rules */
    REPLY_SIZE,                    /* "size": message too large */
    REPLY_KIND_COUNT
};

/* One rule of a rules file. Borrowed from its struct reply_rules, valid as long as
 * those rules are (see egress_replies_current() for the daemon's). */
struct reply_rule {
    enum reply_kind kind;
    const char *file; /* the file it was read from, as given to the loader */
    int line;         /* 1-based line in that file */
    const char *text; /* the rule as written, without the comment (for messages) */
};

struct reply_rules; /* a loaded rules file: opaque, immutable once loaded */

/* "ip-blocklist", ... ; "other" for values out of range. Static string. */
const char *egress_reply_kind_name(enum reply_kind k);
/* The kind of a name as above. 0 done, -1 unknown name. */
int egress_reply_kind_parse(const char *name, enum reply_kind *out);

/* Read a rules file. Returns the rules (caller frees with egress_reply_rules_free()),
 * or NULL with err set to "FILE:LINE: what is wrong" (or "FILE: strerror") for the
 * first bad line. The format is described at the top of data/replies.rules and in
 * docs/egress.md. */
struct reply_rules *egress_reply_rules_load(const char *path, char *err, size_t errsize);
/* The same from text in memory (len bytes, NULs not allowed); name is used as FILE
 * in messages and rules. For tests and the fuzzer. */
struct reply_rules *egress_reply_rules_parse(const char *text, size_t len, const char *name,
                                             char *err, size_t errsize);
/* NULL does nothing. */
void egress_reply_rules_free(struct reply_rules *r);
/* How many rules were loaded. 0 for NULL. */
size_t egress_reply_rules_count(const struct reply_rules *r);

/* Classify a reply. code: the SMTP reply code (e.g. 550; 0 when unknown). enh: the
 * enhanced status code ("5.7.1") or NULL/"" when none was given; then a code at the
 * start of text (after the reply code, as in "5.7.1 Service unavailable") is used.
 * text: the reply's text, lines of a multi-line reply joined (NULL is ""); a leading
 * "550 " or "550-" and the enhanced code are taken from it when code is 0 and enh is
 * empty. The first rule, in file order, whose conditions all hold decides; without
 * one (or with r NULL) the enhanced code alone decides the obvious cases (X.1.1
 * user-unknown, X.2.2 mailbox-full, X.3.4 size), else REPLY_OTHER. *matched (when
 * matched is not NULL) is set to the rule, or NULL when none matched. Thread-safe:
 * the rules are only read. */
enum reply_kind egress_reply_classify(const struct reply_rules *r, int code, const char *enh,
                                      const char *text, const struct reply_rule **matched);

/* Split "550 5.7.1 text" / "550-5.7.1 text": *code (0 when missing), enh (NUL-
 * terminated, "" when missing; enhsize >= 16) and the rest of the text (returned,
 * points into s). */
const char *egress_reply_split(const char *s, int *code, char *enh, size_t enhsize);

/* --- the daemon's rules (loop thread only) ----------------------------------------
 * The default path when reply_rules is not set in kurier.conf. */
const char *egress_replies_default_path(void);
/* Load path (NULL: the default path) as the current rules. At start (no rules yet) a
 * missing default file is not an error: a warning is logged and classification falls
 * back on enhanced codes; a missing configured file or a bad file is -1 with err
 * "FILE:LINE: ...". On reload a failure keeps the rules loaded before (-1, err set;
 * the caller logs it). 0 done, with an info line logged. */
int egress_replies_load(const char *path, char *err, size_t errsize);
/* The current rules, NULL before egress_replies_load() succeeded or without a file.
 * Borrowed until the next egress_replies_load() or egress_replies_free(): take it
 * per classification, do not keep it. */
const struct reply_rules *egress_replies_current(void);
/* Free the current rules (at exit). */
void egress_replies_free(void);

#endif
