/* complaints.h: abuse complaints about mail our accounts sent (docs/abuse.md,
 * "Complaints"). arf.c parses reports (pure, fuzzed): ARF feedback-loop reports
 * (RFC 5965) and SpamCop's plain-text reports, down to our queue ID and the
 * reported message's Message-ID. complaints.c keeps the record of what each account
 * sent (store_sent_*) and takes in the reports sent to complaints { addresses }: each
 * is matched to an account and handed to a callback; the report is always delivered. */
#ifndef KURIER_COMPLAINTS_H
#define KURIER_COMPLAINTS_H

#include <stddef.h>

/* The parser reads at most this many bytes of a report (the rest is ignored). */
#define COMPLAINT_MAX_INPUT (4u << 20)

enum complaint_format {
    COMPLAINT_NONE = 0, /* not a report we understand */
    COMPLAINT_ARF,      /* multipart/report; report-type=feedback-report */
    COMPLAINT_SPAMCOP,  /* SpamCop's text report with the spam's headers quoted */
};

/* What a report says; every string NUL-terminated, "" when the report lacks it. */
struct complaint {
    enum complaint_format format;
    char feedback_type[32];       /* ARF Feedback-Type: "abuse", "fraud", ... */
    char user_agent[128];         /* ARF User-Agent */
    char version[16];             /* ARF Version */
    char original_mail_from[320]; /* ARF Original-Mail-From */
    char original_rcpt_to[320];   /* ARF Original-Rcpt-To (the first) */
    char arrival_date[80];        /* ARF Arrival-Date */
    char source_ip[64];           /* ARF Source-IP; SpamCop "Email from IP / date" */
    char reported_domain[256];    /* ARF Reported-Domain (the first) */
    char reporter[320];           /* From: of the report */
    char queue_id[32];            /* our queue ID, from our Received: in the original */
    char message_id[256];         /* the original's Message-ID: "<x@y>" */
};

/* Parse the report msg[0..len) (a whole message, header and body; at most
 * COMPLAINT_MAX_INPUT bytes are read). hostname: ours, as in our Received: headers
 * ("by HOSTNAME (kurier...) ... id QUEUEID"), or NULL to take any kurier's. Fills
 * out (zeroed first) and returns out->format; COMPLAINT_NONE when msg is not a
 * report. A report may come without queue ID and Message-ID (both ""). */
enum complaint_format complaint_parse(const char *msg, size_t len, const char *hostname,
                                      struct complaint *out);
/* Look through a header section hdr[0..len) (read as hdr_next() does; lines that are
 * not fields are skipped, it ends at an empty line) for our Received: field (the
 * lowest one, hostname as for complaint_parse) and the Message-ID. queue_id (32
 * bytes), message_id (256 bytes) and userid (the "from userid NAME" of a local
 * submission; may be NULL) get "" when not found. Returns 1 when anything was found. */
int complaint_scan_headers(const char *hdr, size_t len, const char *hostname, char *queue_id,
                           char *message_id, char *userid, size_t userid_size);
/* "arf", "spamcop", "none". */
const char *complaint_format_name(enum complaint_format f);

/* --- intake (complaints.c, daemon only, loop thread) ------------------------- */

/* Called for every complaint matched to an account (the abuse module counts it;
 * until then the daemon logs it). account and c are borrowed for the call. */
typedef void (*complaint_cb)(void *arg, const char *account, const struct complaint *c);

struct event_base;
struct kconf;
struct queue;
struct spool;
struct store;
struct complaints;
/* Start the intake: every message the queue accepts (queue_set_intake) is read on a
 * worker before it is scheduled: a message from an authenticated user (spool_env
 * auth_user) or a local sender is recorded (store_sent_add); one to an address of
 * complaints { addresses } is parsed (complaint_parse), matched by queue ID, else by
 * Message-ID, recorded (store_complaint_add), logged, and a match handed to cb on the
 * loop thread. Then the message is queued as usual (queue_add): nothing is dropped.
 * Also purges the record past complaints { retention } hourly. *conf is read at each
 * message (reloads). All borrowed; NULL when a timer cannot be made.
 * Test hook: KURIER_TEST_DELAY="intake=MS" (see glue.h) holds each message MS
 * milliseconds after the worker part, before it is queued. */
struct complaints *complaints_new(struct event_base *base, const struct kconf *const *conf,
                                  struct spool *sp, struct store *st, struct queue *q,
                                  complaint_cb cb, void *arg);
/* The hook for queue_set_intake(): take the accepted message id (arg: the struct
 * complaints). */
void complaints_accepted(void *arg, const char *id);
/* Stop: jobs still running are cancelled (their messages are queued at the next
 * start, from the spool). Call before queue_free. NULL-safe. */
void complaints_free(struct complaints *cx);

#endif
