/* glue.h: the adapters between the inbound SMTP session and the modules that decide
 * and store (struct smtp_ops, smtp/smtp.h): verdicts from the policy pipeline, the
 * message into the spool and then the scheduler, logins through auth/, the client's
 * name through dns/. Only kurierd.c includes this; no module includes it, so each
 * module's includes stay one-way (docs/architecture.md). Loop thread only. */
#ifndef KURIER_GLUE_H
#define KURIER_GLUE_H

struct abuse;
struct auth;
struct dns;
struct event_base;
struct prober;
struct queue;
struct smtp_ops;
struct spool;
struct store;

/* What the adapters use, all borrowed. The daemon fills it as it starts its modules
 * and keeps it (and them) alive while sessions run. */
struct glue {
    struct event_base *base;
    struct spool *spool;
    struct store *store;
    struct queue *queue; /* committed messages go here; NULL (at shutdown): not queued
                            now, the next start finds them in the spool */
    struct auth *auth;
    struct dns *dns;       /* client names */
    struct prober *prober; /* recipient probes of relay domains (policy/relay_verify.c) */
    struct abuse *abuse;   /* per-account limits and signals of authenticated clients;
                              NULL: none */
};

/* Fill ops with the adapters, ops->ctx = g. */
void glue_smtp_ops(struct glue *g, struct smtp_ops *ops);

/* Test hook, for tests/integration/test_session_lifecycle.py only: the environment
 * variable KURIER_TEST_DELAY="judge=MS,commit=MS" holds every policy verdict, and
 * every commit's answer (the message is on disk already), for MS milliseconds, as a
 * slow check or a slow disk would, so that a test can hang up while a session waits
 * on them. Unset: no delay. Read once at start (logs a warning when set).
 * "intake=MS" is abuse/complaints.c's: it holds an accepted message before it is queued;
 * "control=MS" is control/control.c's: it holds a request's envelope read on a worker;
 * "reclaim=MS" is queue/spool.c's: it holds each deletion of a segment (with
 * KURIER_TEST_SEGMENT_SIZE=BYTES for small segments; test_spool_segments.py). */
void glue_test_delay_init(void);

#endif
