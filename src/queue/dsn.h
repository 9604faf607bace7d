/* dsn.h: private to queue/: the pieces of the delivery status notices that dsn.c
 * puts together. reply_class.c sorts a remote reply into the class of problem a
 * notice explains; dsn_text.c holds what a notice says about each, in en and de. */
#ifndef KURIER_QUEUE_DSN_H
#define KURIER_QUEUE_DSN_H

/* The classes of problem we explain in plain words (by enhanced code and text). */
enum dsn_class {
    CL_NONE = 0,     /* nothing specific to say */
    CL_USER,         /* x.1.1 unknown user */
    CL_FULL,         /* x.2.2 mailbox full */
    CL_SIZE,         /* x.3.4 / x.2.3 message too big */
    CL_BLOCKED,      /* our sending address is on a blocklist */
    CL_AUTH,         /* SPF / DKIM / DMARC */
    CL_POLICY,       /* other x.7.x */
    CL_DOMAIN,       /* x.1.2, x.1.10 (null MX), x.4.4 */
    CL_LOOP,         /* x.4.6 */
    CL_EXPIRED,      /* x.4.7 */
    CL_UTF8,         /* x.6.7 */
    CL_POOL_BLOCKED, /* every sending address of our pool is blocked by the receiver
                        (deliver/remote.c: "all our sending addresses are blocked by") */
    CL_PERM_OTHER,   /* any other permanent failure */
};

/* The class of problem behind a result: its enhanced status code dsn ("5.1.1", or
 * NULL) and the remote reply or local reason diag (or NULL), by code first, then by
 * the reply's words (blocklists, SPF/DKIM/DMARC, unknown user, full mailbox).
 * CL_NONE when there is nothing specific to say. */
enum dsn_class reply_classify(const char *dsn, const char *diag);
/* "5.1.10" -> class 5, subject 1, detail 10. 1 done, 0 when s is not an enhanced
 * status code (RFC 3463) or NULL. */
int reply_parse_enh(const char *s, int *cls, int *subj, int *det);

/* The texts of one language. */
struct texts {
    const char *subject[3];
    const char *intro[3];                  /* "%s" = our hostname */
    const char *retry_until;               /* "%s" = date */
    const char *msg_line;                  /* "%s" date, "%s" queue ID */
    const char *we_said;                   /* local result: "%s" hostname */
    const char *delivered_local, *relayed; /* "%s" relay */
    const char *no_content, *headers_only;
    const char *cls[CL_PERM_OTHER + 1];
    const char *blocked_delay; /* a blocklist refusal while we still retry */
    const char *temp;          /* delays: "%s" = date */
    const char *url;           /* blocked and the reply has a web address */
};

extern const struct texts dsn_texts_en, dsn_texts_de;

#endif
