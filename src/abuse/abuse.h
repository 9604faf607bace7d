/* abuse.h: containment of compromised sending accounts (docs/abuse.md). Per account
 * (the AUTH login, lower case): counters in sliding windows with soft limits (451)
 * and hard limits (lock), compromise signals scored with their evidence, and the lock:
 * AUTH refused (auth_lock_set()), the account's queued mail held, the postmaster told.
 * Locks, evidence and counters live in the directory (store.h "abuse"), written on a
 * worker in order and read back at start. Loop thread only. */
#ifndef KURIER_ABUSE_H
#define KURIER_ABUSE_H

#include <stddef.h>

struct auth;
struct event_base;
struct kconf;
struct queue;
struct spool;
struct store;
struct abuse;

/* Start with conf's abuse { } block (a reference is taken); the locks in st are read
 * and handed to auth (auth_lock_set). st, auth and spool are borrowed and must
 * outlive it. Never NULL. */
struct abuse *abuse_new(struct event_base *base, const struct kconf *conf, struct store *st,
                        struct auth *auth, struct spool *spool);
/* The scheduler whose entries a lock holds (borrowed; NULL at shutdown). */
void abuse_set_queue(struct abuse *ab, struct queue *q);
/* A new configuration (after a reload): takes a reference, drops the old one; the
 * limits file is read again. */
void abuse_set_conf(struct abuse *ab, const struct kconf *conf);
/* NULL does nothing. */
void abuse_free(struct abuse *ab);

/* --- signals (for every module) ---------------------------------------------------
 * Count a compromise signal against account: signal is a short name ("spamtrap",
 * "complaint", "user_unknown", "blocklisted", ...), score its weight (abuse.lock_score
 * locks; scores older than abuse.score_window no longer add up), evidence a one-line
 * text kept with it (copied; may be NULL). Logs one line, stores the evidence, and
 * locks the account when its score reaches the threshold. account NULL or "" does
 * nothing. */
void abuse_signal(struct abuse *ab, const char *account, const char *signal, int score,
                  const char *evidence);
/* 1 when account is locked now, else 0. */
int abuse_locked(struct abuse *ab, const char *account);

/* --- submission (glue/smtp_ops.c) ------------------------------------------------
 * The checks of an authenticated client's MAIL and RCPT: each counts the attempt in
 * the account's windows. 0 go on; 1 over a soft limit or locked: reply is the SMTP
 * reply to give ("451 4.7.1 ..."): code in *code, enhanced code in enh (8 bytes), text
 * in text. An attempt past a hard limit locks the account. */
/* shared: with a shared state (store_shared()), the attempt's count across the nodes
 * (abuse_shared_count(), asked on a worker), which the limit is judged on; -1 none: this
 * node's count (when the state is shared, Redis was unreachable: state.rate_fail
 * says what happens). */
int abuse_check_mail(struct abuse *ab, const char *account, int shared, int *code, char *enh,
                     char *text, size_t textsize);
/* The counts across the nodes of one RCPT (abuse_shared_count()); each -1 when not
 * known (no shared state, Redis unreachable): then this node's own. */
struct abuse_shared {
    int count;    /* recipients_per_hour, this one included */
    int distinct; /* distinct_recipients_per_day, this one included */
    int failed;   /* failed_recipients_per_hour so far */
};
/* rcpt: the recipient (local@domain); nrcpts: recipients already accepted in this
 * message; shared: the counts across the nodes (NULL: none, as count -1 in
 * abuse_check_mail). */
int abuse_check_rcpt(struct abuse *ab, const char *account, const char *rcpt, size_t nrcpts,
                     const struct abuse_shared *shared, int *code, char *enh, char *text,
                     size_t textsize);
/* 1 when the counters are shared by the nodes (state { backend redis; }), else 0. */
int abuse_shared(const struct abuse *ab);
/* 1 when abuse_check_mail (rcpt 0) or abuse_check_rcpt (rcpt 1, nrcpts as there) will
 * refuse before counting: the account is locked, or the message has its
 * recipients_per_message. Then nothing is counted across the nodes either. */
int abuse_refused_uncounted(struct abuse *ab, const char *account, int rcpt, size_t nrcpts);
/* Worker thread (reads nothing of ab that changes): count one attempt of account in
 * the shared windows: MAIL (rcpt NULL): messages_per_hour, out->count; RCPT:
 * recipients_per_hour (out->count), rcpt among the day's distinct recipients
 * (out->distinct), and the failed recipients of the hour read (out->failed). Each -1
 * when not known (no shared state, Redis unreachable). conf: the abuse { } windows
 * (the session's configuration). */
void abuse_shared_count(struct abuse *ab, const struct kconf *conf, const char *account,
                        const char *rcpt, struct abuse_shared *out);
/* A recipient of account was refused (5xx at RCPT; later: user-unknown replies). With
 * a shared state it counts across the nodes (on a worker; the hard limit is judged on
 * that count when it is back). */
void abuse_rcpt_failed(struct abuse *ab, const char *account, const char *rcpt);
/* A message of account from the envelope sender sender ("" for <>) is about to be
 * committed as id, to rcpts[0..n): spamtraps are looked for, its volume is compared
 * with the account's baseline, its recipients' domains with those it wrote to before
 * and its sender with those it used. Returns 1 when the message must be queued on
 * hold (the account is, or just became, locked), else 0. */
int abuse_message(struct abuse *ab, const char *account, const char *sender, const char *id,
                  const char *const *rcpts, size_t n);
/* Remote delivery of a message of account (id) got replies answers for its
 * recipients, unknown of them user-unknown and blocked of them saying our address is
 * blocklisted (the egress reply classifier): a high share within the hour is a
 * signal. account NULL or "" does nothing. */
void abuse_delivery(struct abuse *ab, const char *account, const char *id, size_t replies,
                    size_t unknown, size_t blocked);
/* A login outcome (auth/, after the backend answered): counts failures per account,
 * and on success looks at failures before it and at the client networks used. */
void abuse_login(struct abuse *ab, const char *account, const char *ip, int ok);

/* --- the control socket (kurier account ...) --------------------------------------
 * The state of account (NULL: every account known or locked) as text lines, or JSON
 * (one object). The counters are taken now; the evidence is read from the directory
 * on a worker; then done(arg, text, len) runs on the loop (text borrowed until it
 * returns). The handle is valid until done runs; abuse_status_cancel (NULL-safe):
 * done never runs. Call it before abuse_free. Test hook: KURIER_TEST_DELAY "abuse=MS"
 * holds the read too. */
struct abuse_status;
struct abuse_status *abuse_status_start(struct abuse *ab, const char *account, int json,
                                        void (*done)(void *arg, const char *text, size_t len),
                                        void *arg);
void abuse_status_cancel(struct abuse_status *st);
enum abuse_held { ABUSE_KEEP = 0, ABUSE_RELEASE, ABUSE_DELETE };
/* Unlock account (AUTH works again at once, its score is reset) and do what to its
 * held mail (the spool is scanned on a worker; the count is logged). 0 done, -1 not
 * locked (msg says so). msg gets a one-line answer. */
int abuse_unlock(struct abuse *ab, const char *account, enum abuse_held what, char *msg,
                 size_t msgsize);

#endif
