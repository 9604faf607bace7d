/* policy.h: the policy pipeline. Every check has the same small async interface: it
 * is started for a session and a stage, works asynchronously, and ends with exactly
 * one verdict. The pipeline runs a listener's checks in order and folds verdicts.
 * Adding a check never touches the session code (smtp/server.c). */
#ifndef KURIER_POLICY_H
#define KURIER_POLICY_H

#include <stddef.h>
#include <sys/socket.h>

#include "core/addr.h"
#include "core/core.h"

struct buf;
struct dns;
struct event_base;
struct prober;
struct store;

enum policy_stage {
    POLICY_CONNECT = 0,
    POLICY_HELO,
    POLICY_MAIL,
    POLICY_RCPT,
    POLICY_DATA,
    POLICY_EOM,
    POLICY_NSTAGES
};

enum policy_kind {
    POLICY_PASS = 0, /* go on with the next check */
    POLICY_ACCEPT,   /* skip the remaining checks of this stage */
    POLICY_SCORE,    /* add score (postscreen-style weights); thresholds decide */
    POLICY_GREYLIST, /* temporary refusal, retry later */
    POLICY_TEMPFAIL, /* 4xx */
    POLICY_REJECT,   /* 5xx */
};

struct policy_verdict {
    enum policy_kind kind;
    int score;          /* POLICY_SCORE: added to the stage's score (negative: allowlists).
                           With a text, that text (and code/enh) is the refusal when the
                           score reaches a threshold and this check weighed most. */
    int code;           /* reply code for GREYLIST/TEMPFAIL/REJECT */
    char enh[8];        /* enhanced status code "5.7.1" */
    char text[300];     /* a sentence a person understands (+ lookup URL where one exists) */
    const char *check;  /* name of the check that decided (static), NULL for pass */
    char detail[200];   /* what the check found, for the stage's log line; "" when it had
                           nothing to judge (a check without lists is not logged) */
    const char *result; /* a word for the message's log line in place of the kind ("fail"
                           for SPF); static, NULL: the kind */
    /* RCPT: the recipient's local part as it is taken ("" unchanged), e.g. with a BATV
     * tag stripped: the checks after this one see it, and the session keeps the
     * recipient so when the stage passes. */
    char rcpt_local[ADDR_LOCAL_MAX + 1];
};

struct policy_txn;

/* What a check may look at. Owned by the session; valid while the check runs. */
struct policy_ctx {
    const struct kconf *conf; /* the session's: it holds the reference, and cancels a
                                 run before it ends, so a check's jobs may borrow it */
    const struct conf_listen *listener;
    struct store *store;
    struct dns *dns;       /* the daemon's resolver (borrowed); NULL: checks that need DNS pass */
    struct prober *prober; /* SMTP probes (deliver/, borrowed); NULL: relay_verify passes */
    struct sockaddr_storage client_sa;
    char client_addr[64];  /* "192.0.2.7" */
    char client_name[256]; /* reverse name or "unknown" */
    const char *helo;      /* NULL before HELO/EHLO */
    int esmtp;             /* EHLO was used */
    const char *auth_user; /* NULL unless authenticated */
    int trusted;           /* client in relay.trusted_networks */
    /* what the session saw before and around the greeting (pregreet.c) */
    enum rdns_status rdns;     /* the reverse lookup's result (RDNS_UNCHECKED: none made) */
    char ptr_name[256];        /* the PTR name found, confirmed or not ("" none) */
    int early_talker;          /* talked before the greeting (listener's pregreet_wait) */
    int bad_pipelining;        /* pipelined commands while PIPELINING was not offered */
    const struct addr *sender; /* from MAIL on */
    const struct addr *rcpt;   /* the recipient being judged (RCPT stage) */
    size_t nrcpts;             /* recipients accepted so far */
    const char *headers;       /* EOM: the message's header section (at most 64 KiB) */
    size_t headers_len;

    int headers_cut;         /* EOM: the header section was longer; headers holds its start */
    long long size_declared; /* MAIL's SIZE=, -1 when not given */
    const struct addr *const *rcpts; /* EOM: the nrcpts recipients */
    /* EOM: bytes of the message as queued, with our Received: and fix-up headers */
    unsigned long long msg_size;
    /* Set by the pipeline for each check: the score the checks before it added up in
     * this stage (a greylisting check in "suspicious" mode compares it with
     * listener->greylist_score). */
    int score;
    /* The transaction's record (policy_txn_new()), from MAIL to its end; NULL outside a
     * transaction. The pipeline notes each check's verdict in it and carries the MAIL
     * stage's score into each RCPT stage; checks add header fields and results. */
    struct policy_txn *txn;
};

/* A check. judges_client_ip: the check judges the client's IP address (DNSBLs,
 * greylisting, reputation): it is never run for authenticated sessions, whatever
 * the port ("submission is not MX", DESIGN.md). */
struct policy_check {
    const char *name;
    unsigned stages; /* bit (1 << stage) for each stage it runs at */
    int judges_client_ip;
    /* The check acts on ctx->score itself (greylisting): once it ran and passed, the
     * pipeline does not greylist the stage by greylist_score. */
    int acts_on_score;
    /* Start the check. It must call done(arg, v) exactly once, never before start
     * returns (defer with the worker pool or an event). Returns a handle for cancel. */
    void *(*start)(const struct policy_ctx *ctx, enum policy_stage stage,
                   void (*done)(void *arg, const struct policy_verdict *v), void *arg);
    /* Cancel a started check: done will not be called. */
    void (*cancel)(void *handle);
    /* Optional: 0 when the check has nothing to do for ctx at stage (it is then not
     * started, as for a stage it does not run at). NULL: always wanted. */
    int (*wanted)(const struct policy_ctx *ctx, enum policy_stage stage);
};

/* Checks known today (one file each under src/policy/). */
/* recipient.c: relay and local users; mailbox quotas at RCPT (full, or SIZE= too big)
 * and at the end of the message (its real size against every local recipient). */
extern const struct policy_check policy_check_recipient;
/* batv.c: the backscatter filter: in a domain with BATV (batv { domains }) a tagged
 * recipient prvs=KDDDSSSSSS=user@domain is taken as user@domain (rcpt_local), and a
 * bounce (null sender) from a client that did not log in and is not trusted is
 * refused (550 5.7.1) unless the tag is valid. Runs first at RCPT. */
extern const struct policy_check policy_check_batv;
/* sender_login.c: authenticated users may use only addresses they own, in MAIL FROM
 * and in the From:/Sender:/Resent-From:/Resent-Sender: headers (per-domain mode
 * enforce|log|off). */
extern const struct policy_check policy_check_sender_login;
/* sender_verify.c: the envelope sender's domain has MX or A/AAAA (null MX: 550), a
 * sender in our domains exists; failures greylisted or refused (listen sender_verify). */
extern const struct policy_check policy_check_sender_verify;
/* relay_verify.c: a recipient in a relay domain (transport relay_domain) is probed at
 * the domain's own server behind us (cached): 550 5.1.1 when it refuses the address,
 * 450 4.4.1 when it cannot say. Not for authenticated or trusted clients. */
extern const struct policy_check policy_check_relay_verify;
/* Purge expired probe answers every verify { purge_interval }, as the greylisting
 * purge does (*conf read at each run). Stop before the store and the workers go. */
void policy_relay_verify_purge_start(struct event_base *base, struct store *st,
                                     const struct kconf *const *conf);
void policy_relay_verify_purge_stop(void);
/* greylist.c: greylisting at RCPT (listen greylist always|suspicious|off). */
extern const struct policy_check policy_check_greylist;
/* Purge expired greylisting entries every greylist { purge_interval } (*conf read at
 * each run: the daemon's current configuration), on a worker. Stop before the store
 * and the worker pool go. */
void policy_greylist_purge_start(struct event_base *base, struct store *st,
                                 const struct kconf *const *conf);
void policy_greylist_purge_stop(void);
/* The network greylisting keys a client by, as text: "192.0.2.0/24",
 * "2001:db8:1:2::/64" (an IPv4-mapped IPv6 address as IPv4): retries from the next
 * address of a pool count as one. 64 bytes always suffice. */
void policy_greylist_net(const struct sockaddr_storage *ss, char *out, size_t outsize);

/* dnsbl.c (docs/inbound.md): RFC 5782 DNS lists. dnsbl: the client's IPv4/IPv6 address
 * against the listener's dnsbl_sites; rhsbl: the MAIL FROM domain and the HELO name
 * against rhsbl_sites. Each answers POLICY_SCORE with the summed weights of the
 * matching sites; its text names the list that weighed most, with that list's TXT
 * record. Both run at RCPT and judge the client (never for authenticated sessions). */
extern const struct policy_check policy_check_dnsbl;
extern const struct policy_check policy_check_rhsbl;

/* pregreet.c (docs/inbound.md): postscreen-like tests of the client's behaviour, from
 * facts the session gathered (ctx->early_talker, bad_pipelining, rdns). pregreet:
 * early_talker_score for talking before the greeting, pipelining_score for commands
 * pipelined before PIPELINING was offered; rdns: rdns_missing_score for an address
 * without PTR, rdns_mismatch_score for a PTR name that does not resolve back (a DNS
 * failure scores nothing). Each answers POLICY_SCORE at RCPT with the sum of what it
 * found, or POLICY_PASS; both judge the client (never for authenticated sessions). */
extern const struct policy_check policy_check_pregreet;
extern const struct policy_check policy_check_rdns;

/* Pure helpers of dnsbl.c (tested, fuzzed). The query name for ip (4 or 16 bytes,
 * family AF_INET/AF_INET6) under zone: "9.2.0.192.zen.example" or 32 reversed
 * nibbles. 0 done, -1 out too small (300 bytes always suffice). */
int policy_dnsbl_qname(int family, const unsigned char *ip, const char *zone, char *out,
                       size_t outsize);
/* What an answer address a (4 bytes) from a DNS list means: 1 a listing code
 * (127.0.0.0/8 but not 127.255.255.252-255), 0 "query refused"/error codes and
 * anything outside 127.0.0.0/8 (never a listing). */
int policy_dnsbl_is_code(const unsigned char a[4]);
/* A list's TXT record (remote data, len bytes, any content) as text safe for an SMTP
 * reply and a log line: printable ASCII only, runs of other bytes and white space
 * become one space, trimmed, cut to outsize-1 bytes. Returns the length. */
size_t policy_dnsbl_text(const char *txt, size_t len, char *out, size_t outsize);

/* policyd.c (docs/inbound.md): policy delegation: the listener's policy_service is
 * asked in Postfix's policy delegation protocol (check_policy_service) at
 * policy_stage, over a connection kept per server and reused; its action becomes the
 * verdict (OK accept, DUNNO pass, REJECT/5NN reject, DEFER/4NN tempfail,
 * DEFER_IF_PERMIT greylist). A server that is down, slow or answers nonsense gets
 * policy_default_action. Judges the client (never run for authenticated sessions). */
extern const struct policy_check policy_check_policyd;
/* Close every policy server connection (at exit, before the loop goes). Pending
 * requests must have been cancelled (their sessions are gone). */
void policy_policyd_shutdown(void);

/* Pure helpers of policyd.c (tested, fuzzed). A policy server's reply (remote data,
 * len bytes): "name=value" lines ending in LF (CRLF taken too), closed by an empty
 * line. Returns the bytes of the whole reply (>0) with the value of its first
 * "action" attribute in action (NUL-terminated, cut to actsize-1 bytes); 0 when the
 * empty line has not come yet; -1 for a bad reply: a line without '=', a NUL byte,
 * or no action attribute. Other attributes are ignored. */
long policy_policyd_reply(const char *p, size_t len, char *action, size_t actsize);
/* What an action (as Postfix's access(5) says; case-insensitive word, then text)
 * means, in v (zeroed first; v->detail names the action for the log, v->text is safe
 * printable ASCII): OK and all-digit results POLICY_ACCEPT; DUNNO, WARN, INFO,
 * PREPEND and DEFER_IF_REJECT POLICY_PASS; REJECT [text] 554 5.7.1 and "5NN text"
 * POLICY_REJECT; DEFER [text] 450 4.7.1 and "4NN text" POLICY_TEMPFAIL;
 * DEFER_IF_PERMIT [text] 450 4.7.1 POLICY_GREYLIST. A text starting with an enhanced
 * status code ("5.7.0 no") gives its enh. Returns 0 for those; 1 for an action we
 * cannot carry out (HOLD, DISCARD, FILTER, REDIRECT, BCC); -1 for anything else. */
int policy_policyd_action(const char *action, struct policy_verdict *v);

/* --- who may receive delivery reports (dsn_trust.c) ---------------------------------
 * DESIGN.md "No backscatter": bounces, delay notices and success reports go only to
 * senders we know, never to the null sender. */
/* At reception: 1 when the sender of mail from this client is known (authenticated,
 * or a client in relay.trusted_networks), so it may get reports. Stored with the
 * message (spool_env.dsn_trusted); local submission is known too. */
int policy_dsn_trusted(const char *auth_user, int trusted);
/* 1 when a report may go to the sender: not the null sender (null_sender 0), and
 * dsn_trusted (as policy_dsn_trusted said at reception). 0 with *why (when why is
 * non-NULL) set to "null sender" or "untrusted sender", static; NULL for 1. */
int policy_dsn_allowed(int null_sender, int dsn_trusted, const char **why);

/* spf_check.c: SPF (RFC 7208, spf.h) for the MAIL FROM identity (HELO's for the null
 * sender) at MAIL; the action per result is the listener's spf_* (a score by
 * default); adds Received-SPF: and an spf result to the transaction. Judges the
 * client (never for authenticated sessions). */
extern const struct policy_check policy_check_spf;

/* dkim_check.c (docs/inbound.md): DKIM (RFC 6376, RFC 8463, RFC 8301) at the end of
 * the message: every DKIM-Signature (at most 8) is checked, its body hash computed
 * while the message streamed (policy_txn_content), its key looked up at
 * SELECTOR._domainkey.DOMAIN. The results go into Authentication-Results (dkim=) and
 * the record (for DMARC); the check itself always passes. Not for authenticated
 * sessions. */
extern const struct policy_check policy_check_dkim;
/* dmarc.c (docs/inbound.md): DMARC (RFC 7489) at the end of the message: the From:
 * domain's policy (_dmarc.DOMAIN, else its organisational domain's sp=) evaluated
 * with the aligned SPF and DKIM results of the checks before it; a failure under
 * p=reject or p=quarantine does what the listener's dmarc_reject or dmarc_quarantine
 * say (550 5.7.1, tempfail, a score, or 0: only record). Adds dmarc= to
 * Authentication-Results and counts results for aggregate reports (store). */
extern const struct policy_check policy_check_dmarc;

/* --- one transaction's record (txn.c) -----------------------------------------------
 * What the checks found from MAIL to the end of the message: each check's verdict for
 * the message's log line, the score carried from MAIL into each RCPT stage, the header
 * fields the checks want on the message, and the Authentication-Results (RFC 8601)
 * results; DKIM and DMARC checks append theirs the same way. Loop thread only. */
struct authres;
/* A new record; authserv_id (our host name) names the Authentication-Results field.
 * Free with policy_txn_free() (NULL-safe) once the transaction ended. */
struct policy_txn *policy_txn_new(const char *authserv_id);
void policy_txn_free(struct policy_txn *t);
/* For checks: the Authentication-Results builder (core/authres.h), borrowed. */
struct authres *policy_txn_authres(struct policy_txn *t);
/* For checks: a header field for the message ("Received-SPF: ...", folded with CRLF
 * TAB, no final CRLF; copied). Fields go on top of the message in the order added. */
void policy_txn_add_field(struct policy_txn *t, const char *field);
/* What SPF and DKIM found, for DMARC (filled by spf_check.c and dkim_check.c). */
enum { POLICY_DKIM_MAX = 8 };
struct policy_auth {
    char spf[16];         /* "pass", "fail", ... ("" not checked) */
    char spf_domain[256]; /* the domain SPF checked (MAIL FROM's, else HELO) */
    size_t ndkim;
    struct {
        char result[16]; /* "pass", "fail", "permerror", ... */
        char d[256];     /* the signing domain */
    } dkim[POLICY_DKIM_MAX];
};
/* The record's results (borrowed, writable by the checks). */
struct policy_auth *policy_txn_auth(struct policy_txn *t);
/* For the session's glue: the client's content as it is queued (header section, then
 * body), for the DKIM check's body hashes; ignored unless the listener's checks name
 * dkim or dmarc and the client did not log in (auth_user NULL). */
void policy_txn_content(struct policy_txn *t, const struct conf_listen *l, const char *auth_user,
                        const void *p, size_t len);
/* dkim_check.c's streaming state: the header section and body hashes (txn.c keeps it). */
struct policy_dkim_stream;
struct policy_dkim_stream *policy_dkim_stream_new(void);
void policy_dkim_stream_feed(struct policy_dkim_stream *d, const void *p, size_t len);
void policy_dkim_stream_free(struct policy_dkim_stream *d); /* NULL-safe */
/* The transaction's stream, or NULL when no content was fed. */
struct policy_dkim_stream *policy_txn_dkim(struct policy_txn *t);
/* For the pipeline: check c gave v (the worst verdict of a check is kept when it ran
 * several times, one per recipient). */
void policy_txn_note(struct policy_txn *t, const struct policy_check *c,
                     const struct policy_verdict *v);
/* For the pipeline: a stage ended with this sum (the MAIL stage's is carried). */
void policy_txn_stage_done(struct policy_txn *t, enum policy_stage stage, int score);
/* The MAIL stage's sum, where a RCPT stage starts. */
int policy_txn_carry(const struct policy_txn *t);
/* For the recipient check: one more recipient passed it at RCPT; quota: one of its
 * targets is a local mailbox with a quota. */
void policy_txn_rcpt_passed(struct policy_txn *t, int quota);
/* Has the end-of-data recipient check anything to measure for nrcpts recipients? 1
 * when a recipient with a quota passed at RCPT, or fewer than nrcpts passed there. */
int policy_txn_rcpt_quota(const struct policy_txn *t, size_t nrcpts);
/* Forwarding with care (docs/forwarding.md): is this transaction's mail kept from
 * forwards to other providers? 1 when SPF said fail, or its score reached the
 * listener l's greylist_score (when set) or reject_score; 0 otherwise (t or l NULL:
 * 0). A forward of such mail would make the forwarder look like its source. */
int policy_txn_no_forward(const struct policy_txn *t, const struct conf_listen *l);
/* The header fields of an accepted message known when its header section ended,
 * appended to out (CRLF-ended): the checks' fields; for a client that did not log in
 * (auth_user NULL), iprev (when reverse_dns looked up the client: pass for a verified
 * name, else fail) is added to the Authentication-Results results, and the field
 * itself is appended: complete, or, when the listener l has end-of-data checks that
 * add results (dkim, dmarc), with room for them (sized by the DKIM-Signature fields of
 * the client's header section hdr, hdr_len bytes) that policy_txn_authres_field()
 * fills in at the commit. Once per message. */
void policy_txn_headers(struct policy_txn *t, const struct kconf *conf, const struct conf_listen *l,
                        const char *auth_user, const char *client_addr, const char *client_name,
                        const char *hdr, size_t hdr_len, struct buf *out);
/* At the end of the message (after the EOM checks, the DKIM and DMARC results known):
 * for a client that did not log in, the one Authentication-Results field with every
 * check's result, exactly as long as the room policy_txn_headers() wrote, appended to
 * out; nothing for auth_user, when policy_txn_headers() wrote the whole field, or
 * when it does not fit (logged). Returns where in the queued message the room is:
 * out's length before the field in policy_txn_headers() (below our Received: and the
 * checks' fields, above the client's header), for spool_msg_rewrite(). */
size_t policy_txn_authres_field(struct policy_txn *t, const char *auth_user, struct buf *out);
/* The message's log line: "ID: peer=NAME[ADDR] from=<S> checks=C:V,... score=N
 * action=A" (id NULL: NOQUEUE). action: accept (queued), reject, tempfail, greylist,
 * or none (the client gave up). sender is the envelope sender ("" null sender). */
void policy_txn_log(const struct policy_txn *t, const char *id, const char *client_name,
                    const char *client_addr, const char *sender, const char *action);

/* Once at start: the loop the pipeline defers its callbacks on. */
void policy_init(struct event_base *base);
/* That loop, for checks that defer an answer. */
struct event_base *policy_loop(void);

struct policy_run;
/* Run the checks for stage in order: the built-in ones (recipient, sender_login,
 * sender_verify), then the listener's `checks` in its order, then relay_verify and
 * greylist. done(arg, v) gets the first verdict
 * that ends the stage (TEMPFAIL/REJECT/GREYLIST/ACCEPT), or PASS. Scores
 * (POLICY_SCORE) add up: once the sum reaches listener->reject_score the stage ends
 * at once with REJECT (the text of the check that added most, else a generic one);
 * at the end of the stage a sum at or above listener->greylist_score gives GREYLIST
 * (451 4.7.1), unless a check with acts_on_score ran. Thresholds of 0 are off; a
 * NULL listener has none. With ctx->txn, the MAIL stage's sum is where each RCPT stage
 * starts, and greylist_score waits for RCPT (greylisting needs the recipient); each
 * check's verdict is noted there. v->score is the sum. When a check that judges the client
 * ran, one log line says each check's result and the sum. done runs on the loop
 * thread, never before policy_run_start returns. Returns a handle that
 * policy_run_cancel() cancels (done will not run; running checks are cancelled). */
struct policy_run *policy_run_start(const struct policy_ctx *ctx, enum policy_stage stage,
                                    void (*done)(void *arg, const struct policy_verdict *v),
                                    void *arg);
void policy_run_cancel(struct policy_run *r);
/* Call fn(arg, check, verdict) with each check's own verdict as it comes in (kurier
 * check-client prints them). Set it right after policy_run_start*(), before the
 * loop runs. */
void policy_run_trace(struct policy_run *r,
                      void (*fn)(void *arg, const struct policy_check *c,
                                 const struct policy_verdict *v),
                      void *arg);
/* The same with an explicit list of checks (tests, and later per-listener lists). */
struct policy_run *policy_run_start_with(const struct policy_ctx *ctx, enum policy_stage stage,
                                         const struct policy_check *const *checks, size_t nchecks,
                                         void (*done)(void *arg, const struct policy_verdict *v),
                                         void *arg);
/* Every check the pipeline knows (*n set): the built-in ones, then the optional. */
const struct policy_check *const *policy_checks(size_t *n);
/* 1 when c is never run for ctx: a check that judges the client IP, for an
 * authenticated session ("submission is not MX"). The one place this rule lives. */
int policy_check_skipped(const struct policy_check *c, const struct policy_ctx *ctx);
/* The optional check called name (a word of the listener's `checks`), or NULL. */
const struct policy_check *policy_check_find(const char *name);
/* Stage name for logs ("RCPT"). */
const char *policy_stage_name(enum policy_stage s);
/* Fill v as a refusal. */
void policy_verdict_set(struct policy_verdict *v, enum policy_kind kind, int code, const char *enh,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
