/* test_dsn.c: delivery status notifications: every kind in English and German for an
 * envelope with mixed recipients, NOTIFY and trust rules, the new envelope fields,
 * and dsn_queue through a real spool, event loop and worker pool. With DSN_OUT=DIR the
 * built DSNs are also written there (tests/integration/test_dsn.py parses them). */
#include "core/compat.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "queue/queue.h"
#include "smtp/smtp.h"

#include "check.h"

static const char *original =
    "Received: from client.example (client.example [192.0.2.1])\r\n"
    "\tby mx.example.test (kurier) id X; Sat, 29 Nov 2025 10:00:00 +0000\r\n"
    "From: Alice <alice@example.test>\r\n"
    "To: x@example.org, y@example.net\r\n"
    "Subject: Angebot\r\n"
    "Message-ID: <m1@example.test>\r\n"
    "\r\n"
    "Hallo,\r\nhier das Angebot.\r\n";

/* One recipient of the test envelope: what happened to it. */
struct rspec {
    const char *addr;
    enum rcpt_state state;
    const char *dsn, *diag, *relay, *orcpt;
    unsigned notify;
};

static const struct rspec rspecs[] = {
    {"x@example.org", RCPT_ST_BOUNCED, "5.1.1",
     "host mx.example.org[192.0.2.7] said: 550 5.1.1 <x@example.org>: unknown user (in reply to "
     "RCPT TO command)",
     "mx.example.org[192.0.2.7]:25", "rfc822;X@Example.org", 0},
    {"y@example.net", RCPT_ST_BOUNCED, "5.7.1",
     "host mail.example.net[198.51.100.4] said: 554 5.7.1 Service unavailable; Client host "
     "[203.0.113.1] blocked using b.barracudacentral.org; "
     "http://www.barracudanetworks.com/reputation/?pr=1&ip=203.0.113.1 (in reply to RCPT TO "
     "command)",
     "mail.example.net[198.51.100.4]:25", NULL, 0},
    {"z@example.com", RCPT_ST_QUEUED, "4.2.2",
     "host mx.example.com[198.51.100.3] said: 452 4.2.2 <z@example.com>: mailbox full (in "
     "reply to RCPT TO command)",
     "mx.example.com[198.51.100.3]:25", NULL, 0},
    {"bob@example.test", RCPT_ST_SENT, "2.0.0", "delivered to maildir", "local", NULL,
     SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE},
    {"gone@example.test", RCPT_ST_BOUNCED, "5.1.1", "no such mailbox", "local", NULL, 0},
    {"w@example.info", RCPT_ST_BOUNCED, "5.4.7",
     "message expired after 5 days in the queue; last error: host mx.example.info[203.0.113.9] "
     "said: 451 4.7.1 Your server IP address is in the SpamHaus SBL-XBL database (in reply "
     "to RCPT TO command)",
     "mx.example.info[203.0.113.9]:25", NULL, 0},
    {"q@null.example", RCPT_ST_BOUNCED, "5.1.10", "domain null.example accepts no mail (null MX)",
     NULL, NULL, 0},
    {"big@example.org", RCPT_ST_BOUNCED, "5.3.4",
     "host mx.example.org[192.0.2.7] said: 552 5.3.4 Message size exceeds fixed limit (in reply "
     "to end of DATA command)",
     "mx.example.org[192.0.2.7]:25", NULL, 0},
    {"spf@example.org", RCPT_ST_BOUNCED, "5.7.23",
     "host mx.example.org[192.0.2.7] said: 550 5.7.23 SPF validation failed for example.test "
     "(in reply to end of DATA command)",
     "mx.example.org[192.0.2.7]:25", NULL, 0},
    {"loop@example.org", RCPT_ST_BOUNCED, "5.4.6", "mail for example.org loops back to myself",
     NULL, NULL, 0},
    {"later@example.com", RCPT_ST_QUEUED, "4.7.0",
     "host mx.example.com[198.51.100.3] said: 421 4.7.0 Try again later, closing connection "
     "(in reply to MAIL FROM command)",
     "mx.example.com[198.51.100.3]:25", NULL, 0},
};
#define NR (sizeof rspecs / sizeof rspecs[0])

static struct spool_env *make_env(void)
{
    struct spool_env *e = xcalloc(1, sizeof *e);
    spool_new_id(e->id);
    e->sender = xstrdup("alice@example.test");
    e->arrival = 1764410400; /* Sat, 29 Nov 2025 10:00:00 UTC */
    e->size = strlen(original);
    e->client_name = xstrdup("client.example");
    e->client_addr = xstrdup("192.0.2.1");
    e->helo = xstrdup("client.example");
    e->proto = xstrdup("ESMTPSA");
    e->auth_user = xstrdup("alice@example.test");
    e->envid = xstrdup("ENV-4711");
    e->dsn_trusted = 1;
    e->nrcpts = NR;
    e->rcpts = xcalloc(NR, sizeof *e->rcpts);
    for (size_t i = 0; i < NR; i++) {
        struct spool_rcpt *r = &e->rcpts[i];
        r->addr = xstrdup(rspecs[i].addr);
        r->orig = xstrdup(rspecs[i].addr);
        r->orcpt = rspecs[i].orcpt ? xstrdup(rspecs[i].orcpt) : NULL;
        r->notify = rspecs[i].notify;
        r->state = rspecs[i].state;
        r->attempts = 3;
        str_copy(r->dsn, rspecs[i].dsn, sizeof r->dsn);
        r->diag = xstrdup(rspecs[i].diag);
        r->relay = rspecs[i].relay ? xstrdup(rspecs[i].relay) : NULL;
        r->last_try = e->arrival + 600;
    }
    return e;
}

static struct kconf *make_conf(const char *locale)
{
    char text[256];
    snprintf(text, sizeof text,
             "hostname mx.example.test;\nlocale %s;\nqueue {\n    lifetime 5d;\n}\n", locale);
    struct conf_errors errs = {0};
    struct conf_node *t = conf_parse(text, strlen(text), "t.conf", &errs);
    struct kconf *c = conf_apply(t, "t.conf", &errs);
    if (errs.n) conf_errors_print(&errs, stdout);
    conf_errors_free(&errs);
    conf_tree_free(t);
    return c;
}

/* Decode quoted-printable (for checking German text); new string. */
static char *qp_decode(const char *p, size_t n)
{
    char *o = xmalloc(n + 1), *w = o;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '=' && i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n') {
            i += 2;
        } else if (p[i] == '=' && i + 2 < n) {
            char hex[3] = {p[i + 1], p[i + 2], 0};
            *w++ = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            *w++ = p[i];
        }
    }
    *w = '\0';
    return o;
}

/* Every line ends in CRLF and is at most 998 bytes (RFC 5322 2.1.1). */
static int lines_ok(const char *p, size_t n, char *why, size_t whysize)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n')) {
            snprintf(why, whysize, "bare CR at %zu", i);
            return 0;
        }
        if (p[i] == '\n') {
            if (i == 0 || p[i - 1] != '\r') {
                snprintf(why, whysize, "bare LF at %zu", i);
                return 0;
            }
            if (i - start - 1 > 998) {
                snprintf(why, whysize, "line of %zu bytes at %zu", i - start - 1, start);
                return 0;
            }
            start = i + 1;
        }
    }
    if (n < 2 || p[n - 1] != '\n') {
        snprintf(why, whysize, "no final CRLF");
        return 0;
    }
    return 1;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static const char *out_dir;

static void save(const char *name, const char *text, size_t len)
{
    if (!out_dir) return;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.eml", out_dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write_all(fd, text, len) != 0) printf("cannot write %s\n", path);
    if (fd >= 0) close(fd);
}

/* The human part, decoded when it is quoted-printable. */
static char *human_part(const char *msg)
{
    const char *p = strstr(msg, "Content-Description: Notification\r\n");
    if (!p) return xstrdup("");
    const char *body = strstr(p, "\r\n\r\n");
    const char *end = body ? strstr(body, "\r\n--") : NULL;
    if (!body || !end) return xstrdup("");
    body += 4;
    if (strstr(p, "quoted-printable") && strstr(p, "quoted-printable") < body)
        return qp_decode(body, (size_t)(end - body));
    return xstrndup(body, (size_t)(end - body));
}

/* The whole file fd as a content view (a spool's is a stretch of a segment). */
static struct spool_content view_of(int fd)
{
    struct stat st;
    struct spool_content c = {.fd = fd, .off = 0, .len = fstat(fd, &st) == 0 ? st.st_size : 0};
    return c;
}

static char *build(const struct kconf *c, const struct spool_env *e, int fd, enum dsn_kind kind,
                   const size_t *idx, size_t n, const char *name)
{
    size_t len = 0;
    struct spool_content v = view_of(fd);
    char *m = dsn_build(c, e, fd >= 0 ? &v : NULL, kind, idx, n, &len);
    CHECK(m != NULL, "%s: built", name);
    if (!m) return xstrdup("");
    char why[128] = "";
    CHECK(strlen(m) == len, "%s: length", name);
    CHECK(lines_ok(m, len, why, sizeof why), "%s: %s", name, why);
    save(name, m, len);
    /* the structure every kind shares */
    CHECK(strncmp(m, "From: Mail Delivery System <MAILER-DAEMON@mx.example.test>\r\n", 60) == 0,
          "%s: From first", name);
    CHECK(strstr(m, "\r\nTo: <alice@example.test>\r\n") != NULL, "%s: To", name);
    CHECK(strstr(m, "\r\nAuto-Submitted: auto-replied\r\n") != NULL, "%s: Auto-Submitted", name);
    CHECK(strstr(m, "\r\nMIME-Version: 1.0\r\n") != NULL, "%s: MIME-Version", name);
    CHECK(strstr(m, "Content-Type: multipart/report; report-type=delivery-status;") != NULL,
          "%s: multipart/report", name);
    CHECK(strstr(m, "Content-Type: message/delivery-status\r\n") != NULL, "%s: status part", name);
    CHECK(strstr(m, "\r\nReporting-MTA: dns; mx.example.test\r\n") != NULL, "%s: Reporting-MTA",
          name);
    CHECK(strstr(m, "\r\nOriginal-Envelope-Id: ENV-4711\r\n") != NULL, "%s: envid", name);
    CHECK(strstr(m, "\r\nArrival-Date: ") != NULL, "%s: Arrival-Date", name);
    CHECK(count_of(m, "\r\nFinal-Recipient: rfc822; ") == (int)n, "%s: %d Final-Recipient", name,
          count_of(m, "\r\nFinal-Recipient: rfc822; "));
    CHECK(count_of(m, "\r\nAction: ") == (int)n, "%s: Action per recipient", name);
    /* the boundary closes the report */
    const char *b = strstr(m, "boundary=\"");
    if (b) {
        b += 10;
        char closing[200];
        snprintf(closing, sizeof closing, "\r\n--%.*s--\r\n", (int)(strchr(b, '"') - b), b);
        size_t cl = strlen(closing);
        CHECK(len > cl && strcmp(m + len - cl, closing) == 0, "%s: closing boundary", name);
    }
    return m;
}

static void test_failed(const struct kconf *en, const struct kconf *de, struct spool_env *e, int fd)
{
    size_t idx[] = {0, 1, 4, 5, 6, 7, 8, 9};
    size_t n = sizeof idx / sizeof idx[0];
    char *m = build(en, e, fd, DSN_FAILED, idx, n, "en-failed");
    CHECK(strstr(m, "\r\nSubject: Undelivered Mail Returned to Sender\r\n") != NULL, "subject");
    CHECK(strstr(m, "\r\nOriginal-Recipient: rfc822; X@Example.org\r\nFinal-Recipient: rfc822; "
                    "x@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; "
                    "mx.example.org\r\nDiagnostic-Code: smtp; 550 5.1.1 <x@example.org>: unknown "
                    "user\r\n") != NULL,
          "x@example.org fields:\n%s", m);
    CHECK(strstr(m, "Final-Recipient: rfc822; gone@example.test\r\nAction: failed\r\nStatus: "
                    "5.1.1\r\nDiagnostic-Code: X-Kurier; no such mailbox\r\n") != NULL,
          "local failure fields");
    CHECK(strstr(m, "Status: 5.4.7\r\nRemote-MTA: dns; mx.example.info\r\nDiagnostic-Code: smtp; "
                    "451 4.7.1 Your server IP address") != NULL,
          "expiry quotes the last remote reply");
    CHECK(strstr(m, "Status: 5.1.10\r\n") != NULL, "null MX status");
    CHECK(strstr(m, "Will-Retry-Until") == NULL, "no Will-Retry-Until in a bounce");
    CHECK(strstr(m, "Last-Attempt-Date: ") != NULL, "Last-Attempt-Date");
    CHECK(strstr(m, "Content-Type: text/rfc822-headers\r\n") != NULL, "headers by default");
    CHECK(strstr(m, "Subject: Angebot\r\n") != NULL && strstr(m, "hier das Angebot") == NULL,
          "headers only, no body");
    char *h = human_part(m);
    CHECK(strstr(h,
                 "<x@example.org>:\r\n    host mx.example.org[192.0.2.7] said: 550 5.1.1 "
                 "<x@example.org>:\r\n    unknown user (in reply to RCPT TO command)\r\n") != NULL,
          "human quote:\n%s", h);
    CHECK(strstr(h, "does not\r\n    exist") || strstr(h, "does not exist"), "unknown user text");
    CHECK(strstr(h, "blocklist") != NULL, "blocked text");
    CHECK(strstr(h, "not your fault") != NULL, "not your fault");
    CHECK(strstr(h, "web address") != NULL, "blocklist URL hint");
    CHECK(strstr(h, "for 5 days") != NULL, "expiry names the lifetime");
    CHECK(count_of(h, "blocklist") >= 2, "expiry with a blocklisted last error explains both");
    CHECK(strstr(h, "accepts no mail at all") != NULL, "null MX text");
    CHECK(strstr(h, "larger than the receiving") != NULL, "size text");
    CHECK(strstr(h, "SPF, DKIM or DMARC") != NULL, "SPF text");
    CHECK(strstr(h, "loop") != NULL, "loop text");
    CHECK(strstr(h, "the mail system at mx.example.test said: 5.1.1 no such mailbox") != NULL,
          "local result quoted as ours:\n%s", h);
    CHECK(strstr(m, "quoted-printable") == NULL, "English text is 7bit");
    free(h);
    free(m);

    m = build(de, e, fd, DSN_FAILED, idx, n, "de-failed");
    CHECK(strstr(m, "\r\nSubject: Unzustellbare Nachricht\r\n") != NULL, "de subject");
    CHECK(strstr(m, "Content-Language: de\r\n") != NULL, "de language");
    CHECK(strstr(m, "Content-Transfer-Encoding: quoted-printable\r\n") != NULL, "de is QP");
    h = human_part(m);
    CHECK(strstr(h, "Dies ist das Mailsystem von mx.example.test.") != NULL, "de intro:\n%s", h);
    CHECK(strstr(h, "host mx.example.org[192.0.2.7] said: 550 5.1.1") != NULL,
          "de quotes the remote words as they were");
    CHECK(strstr(h, "kennt diese Adresse nicht") != NULL, "de unknown user");
    CHECK(strstr(h, "Sperrliste") != NULL && strstr(h, "nicht Ihr Fehler") != NULL, "de blocked");
    CHECK(strstr(h, "5 Tage lang") != NULL, "de lifetime");
    CHECK(strstr(h, "größer") != NULL, "de umlauts survive QP");
    free(h);
    /* the delivery-status part is the same language-free text */
    CHECK(strstr(m, "Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.example.org\r\n") !=
              NULL,
          "de status fields");
    free(m);

    /* RET=FULL returns the whole message */
    e->ret = SMTP_RET_FULL;
    size_t one[] = {0};
    m = build(en, e, fd, DSN_FAILED, one, 1, "en-failed-full");
    CHECK(strstr(m, "Content-Type: message/rfc822\r\n") != NULL, "RET=FULL part");
    CHECK(strstr(m, "hier das Angebot.\r\n") != NULL, "RET=FULL body");
    free(m);
    e->ret = SMTP_RET_NONE;

    /* unreadable content: still a complete report */
    m = build(en, e, -1, DSN_FAILED, one, 1, "en-failed-nocontent");
    CHECK(strstr(m, "could not be read") != NULL, "missing content said");
    free(m);
}

static void test_delayed(const struct kconf *en, const struct kconf *de, struct spool_env *e,
                         int fd)
{
    size_t idx[] = {2, 10};
    char *m = build(en, e, fd, DSN_DELAYED, idx, 2, "en-delayed");
    CHECK(strstr(m, "\r\nSubject: Delayed Mail (still being retried)\r\n") != NULL, "subject");
    CHECK(strstr(m, "Final-Recipient: rfc822; z@example.com\r\nAction: delayed\r\nStatus: "
                    "4.2.2\r\nRemote-MTA: dns; mx.example.com\r\nDiagnostic-Code: smtp; 452 "
                    "4.2.2 <z@example.com>: mailbox full\r\n") != NULL,
          "delayed fields:\n%s", m);
    CHECK(count_of(m, "\r\nWill-Retry-Until: ") == 2, "Will-Retry-Until per recipient");
    char *h = human_part(m);
    CHECK(strstr(h, "do not need to send the message") != NULL, "nothing to do");
    CHECK(strstr(h, "mailbox is full") != NULL, "full text");
    CHECK(strstr(h, "we keep trying until") != NULL, "retry until");
    CHECK(strstr(h, "refused the message") == NULL, "a delay never reads as a refusal");
    free(h);
    free(m);

    m = build(de, e, fd, DSN_DELAYED, idx, 2, "de-delayed");
    CHECK(
        strstr(
            m,
            "\r\nSubject: =?UTF-8?Q?Verz=C3=B6gerte_Zustellung_=28wird_weiter_versucht=29?=\r\n") !=
            NULL,
        "de subject encoded:\n%.400s", m);
    h = human_part(m);
    CHECK(strstr(h, "Wir versuchen es weiter bis") != NULL, "de retry until:\n%s", h);
    CHECK(strstr(h, "Postfach des Empfängers ist voll") != NULL, "de full");
    free(h);
    free(m);
}

static void test_delivered(const struct kconf *en, const struct kconf *de, struct spool_env *e,
                           int fd)
{
    size_t idx[] = {3};
    char *m = build(en, e, fd, DSN_DELIVERED, idx, 1, "en-delivered");
    CHECK(strstr(m, "\r\nSubject: Successful Mail Delivery Report\r\n") != NULL, "subject");
    CHECK(strstr(m, "Final-Recipient: rfc822; bob@example.test\r\nAction: delivered\r\nStatus: "
                    "2.0.0\r\n") != NULL,
          "delivered fields");
    CHECK(strstr(m, "Diagnostic-Code") == NULL, "no diagnostic for local success");
    char *h = human_part(m);
    CHECK(strstr(h, "delivered to the recipient's mailbox") != NULL, "delivered text");
    free(h);
    free(m);

    free(e->rcpts[3].relay);
    e->rcpts[3].relay = xstrdup("mx.example.org[192.0.2.7]:25");
    m = build(de, e, fd, DSN_DELIVERED, idx, 1, "de-relayed");
    CHECK(strstr(m, "\r\nSubject: Zustellbericht\r\n") != NULL, "de subject");
    CHECK(strstr(m, "Action: relayed\r\nStatus: 2.0.0\r\nRemote-MTA: dns; mx.example.org\r\n") !=
              NULL,
          "relayed fields");
    free(m);
    free(e->rcpts[3].relay);
    e->rcpts[3].relay = xstrdup("local");

    size_t bad[] = {NR};
    size_t len;
    struct spool_content v = view_of(fd);
    CHECK(dsn_build(en, e, &v, DSN_FAILED, bad, 1, &len) == NULL, "index out of range");
    CHECK(dsn_build(en, e, &v, DSN_FAILED, bad, 0, &len) == NULL, "no recipients");
}

static void test_policy(void)
{
    struct spool_rcpt r = {0};
    CHECK(dsn_wanted(&r, DSN_FAILED) && dsn_wanted(&r, DSN_DELAYED) &&
              !dsn_wanted(&r, DSN_DELIVERED),
          "default: failure and delay");
    r.notify = SMTP_NOTIFY_NEVER;
    CHECK(!dsn_wanted(&r, DSN_FAILED) && !dsn_wanted(&r, DSN_DELAYED) &&
              !dsn_wanted(&r, DSN_DELIVERED),
          "NEVER");
    r.notify = SMTP_NOTIFY_SUCCESS;
    CHECK(!dsn_wanted(&r, DSN_FAILED) && !dsn_wanted(&r, DSN_DELAYED) &&
              dsn_wanted(&r, DSN_DELIVERED),
          "SUCCESS only");
    r.notify = SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY;
    CHECK(dsn_wanted(&r, DSN_FAILED) && dsn_wanted(&r, DSN_DELAYED) &&
              !dsn_wanted(&r, DSN_DELIVERED),
          "FAILURE,DELAY");
    r.notified = DSN_BIT(DSN_DELAYED);
    CHECK(dsn_wanted(&r, DSN_FAILED) && !dsn_wanted(&r, DSN_DELAYED), "already notified");

    struct spool_env e = {0};
    const char *why = NULL;
    e.sender = "";
    e.dsn_trusted = 1;
    CHECK(!dsn_allowed(&e, &why) && why && strcmp(why, "null sender") == 0, "null sender");
    e.sender = "a@example.test";
    e.dsn_trusted = 0;
    CHECK(!dsn_allowed(&e, &why) && why && strcmp(why, "untrusted sender") == 0, "untrusted");
    e.dsn_trusted = 1;
    CHECK(dsn_allowed(&e, &why) && why == NULL, "trusted");
    CHECK(dsn_allowed(&e, NULL), "why may be NULL");
    CHECK(strcmp(dsn_kind_notice(DSN_FAILED), "non-delivery") == 0 &&
              strcmp(dsn_kind_notice(DSN_DELAYED), "delay") == 0 &&
              strcmp(dsn_kind_notice(DSN_DELIVERED), "delivery status") == 0,
          "notice names");
}

/* Every address of our egress pool blocked by the receiver (deliver/remote.c): the
 * bounce at the lifetime's end says so plainly, in en and de, and a delay notice
 * says we keep trying (docs/egress.md). */
static void test_pool_blocked(const struct kconf *en, const struct kconf *de, int fd)
{
    struct spool_env *e = make_env();
    struct spool_rcpt *r = &e->rcpts[0];
    free(r->diag);
    r->diag = xstrdup("message expired after 5 days in the queue; last error: all our sending "
                      "addresses are blocked by mx.example.org (example.org); last refusal: host "
                      "mx.example.org[192.0.2.7] said: 554 Blocked - see "
                      "https://ipcheck.proofpoint.com/?ip=192.0.2.10 (in reply to RCPT TO "
                      "command)");
    str_copy(r->dsn, "5.4.7", sizeof r->dsn);
    size_t one[] = {0};
    char *m = build(en, e, fd, DSN_FAILED, one, 1, "en-pool-blocked");
    char *h = human_part(m);
    char *flat = xstrdup(h);
    /* unwrap: the human part is folded at 4 spaces */
    char *w = flat;
    for (const char *p = h; *p; p++) {
        if (*p == '\r') continue;
        if (*p == '\n') {
            while (p[1] == ' ')
                p++;
            *w++ = ' ';
            continue;
        }
        *w++ = *p;
    }
    *w = '\0';
    CHECK(strstr(flat, "blocks the sending addresses of our mail system") != NULL,
          "pool blocked text:\n%s", h);
    CHECK(strstr(flat, "working on having the addresses removed") != NULL, "working on it");
    CHECK(strstr(flat, "Please check the address") == NULL, "not the generic expiry text");
    free(flat);
    free(h);
    free(m);
    m = build(de, e, fd, DSN_FAILED, one, 1, "de-pool-blocked");
    h = human_part(m);
    CHECK(strstr(h, "sperrt die Absendeadressen") != NULL && strstr(h, "arbeiten daran") != NULL,
          "de pool blocked:\n%s", h);
    free(h);
    free(m);
    /* while it waits: the delay notice says we keep trying */
    r->state = RCPT_ST_QUEUED;
    free(r->diag);
    r->diag = xstrdup("all our sending addresses are blocked by mx.example.org (example.org); "
                      "last refusal: host mx.example.org[192.0.2.7] said: 554 Blocked");
    str_copy(r->dsn, "4.7.1", sizeof r->dsn);
    m = build(en, e, fd, DSN_DELAYED, one, 1, "en-pool-blocked-delayed");
    h = human_part(m);
    CHECK(strstr(h, "meanwhile we try other ways") != NULL || strstr(h, "we try other") != NULL,
          "delay text:\n%s", h);
    free(h);
    free(m);
    spool_env_free(e);
}

static void test_pending(void)
{
    struct spool_env *e = make_env();
    size_t idx[NR];
    size_t n = dsn_pending(e, DSN_FAILED, idx);
    CHECK(n == 8 && idx[0] == 0 && idx[1] == 1 && idx[2] == 4, "bounced owe a bounce: %zu", n);
    e->rcpts[0].notified = DSN_BIT(DSN_FAILED);
    e->rcpts[1].notify = SMTP_NOTIFY_NEVER;
    n = dsn_pending(e, DSN_FAILED, idx);
    CHECK(n == 6 && idx[0] == 4, "notified and NEVER left out: %zu", n);
    n = dsn_pending(e, DSN_DELAYED, idx);
    CHECK(n == 2 && idx[0] == 2 && idx[1] == 10, "queued owe a delay notice: %zu", n);
    n = dsn_pending(e, DSN_DELIVERED, idx);
    CHECK(n == 1 && idx[0] == 3, "NOTIFY=SUCCESS owes a success report: %zu", n);
    spool_env_free(e);
}

static void test_envelope_fields(void)
{
    struct spool_env *e = make_env();
    e->rcpts[0].notified = DSN_BIT(DSN_DELAYED) | DSN_BIT(DSN_FAILED);
    char *text = spool_env_format(e);
    CHECK(strstr(text, "\ndsn_trusted: 1\n") != NULL, "dsn_trusted line:\n%s", text);
    CHECK(strstr(text, " relay=mx.example.org[192.0.2.7]:25 ") != NULL, "relay readable");
    CHECK(strstr(text, " notified=failed,delayed ") != NULL, "notified");
    struct spool_env back;
    int line = 0;
    CHECK(spool_env_parse(text, strlen(text), &back, &line) == 0, "parse back (line %d)", line);
    CHECK(back.dsn_trusted == 1, "dsn_trusted back");
    int same = back.nrcpts == e->nrcpts;
    for (size_t i = 0; same && i < e->nrcpts; i++) {
        const struct spool_rcpt *a = &e->rcpts[i], *b = &back.rcpts[i];
        same = a->last_try == b->last_try && a->notified == b->notified &&
               ((!a->relay && !b->relay) || (a->relay && b->relay && !strcmp(a->relay, b->relay)));
    }
    CHECK(same, "rcpt fields back");
    struct spool_env *tmp = xmalloc(sizeof *tmp);
    *tmp = back;
    spool_env_free(tmp);
    free(text);
    spool_env_free(e);

    /* an envelope written before the fields existed still parses, untrusted */
    const char *old = "id: 0123456789ABCD\nsender: <bob@example.test>\narrival: 1764077473 (x)\n"
                      "size: 24\nproto: ESMTP\nrcpt: <a@remote.example> orig=<a@remote.example> "
                      "state=queued attempts=1 next=1764077773 dsn=4.4.0 diag=remote delivery is "
                      "not available yet\n";
    CHECK(spool_env_parse(old, strlen(old), &back, &line) == 0, "old envelope (line %d)", line);
    CHECK(back.dsn_trusted == 0 && back.rcpts[0].relay == NULL && back.rcpts[0].last_try == 0 &&
              back.rcpts[0].notified == 0,
          "old envelope defaults");
    tmp = xmalloc(sizeof *tmp);
    *tmp = back;
    spool_env_free(tmp);

    const char *bad[] = {
        "id: 0123456789ABCD\nsender: <b@x>\nrcpt: <a@x> state=queued notified=bogus\n",
        "id: 0123456789ABCD\nsender: <b@x>\nrcpt: <a@x> state=queued notified=failed,failed\n",
        "id: 0123456789ABCD\nsender: <b@x>\nrcpt: <a@x> state=queued last=x\n",
        "id: 0123456789ABCD\nsender: <b@x>\nrcpt: <a@x> state=queued relay=a relay=b\n",
        "id: 0123456789ABCD\nsender: <b@x>\ndsn_trusted: 2\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(spool_env_parse(bad[i], strlen(bad[i]), &back, &line) != 0, "bad %zu parsed", i);
}

/* --- dsn_queue through a real spool -------------------------------------------- */

struct qstate {
    struct event_base *base;
    int done;
    char id[QUEUE_ID_LEN + 1];
};

static void on_queued(void *arg, const char *new_id)
{
    struct qstate *st = arg;
    st->done++;
    if (new_id) str_copy(st->id, new_id, sizeof st->id);
    event_base_loopbreak(st->base);
}

static void on_committed(void *arg, int ok)
{
    struct qstate *st = arg;
    st->done += ok;
    event_base_loopbreak(st->base);
}

static void test_queue(const struct kconf *en, const char *root)
{
    char dir[600], err[256];
    snprintf(dir, sizeof dir, "%s/spool", root);
    struct spool *s = spool_open(dir, err, sizeof err);
    CHECK(s != NULL, "spool_open: %s", err);
    if (!s) return;
    struct event_base *base = event_base_new();
    CHECK(work_init(base, 2) == 0, "work_init");
    struct event *keep = event_new(base, -1, EV_PERSIST, NULL, NULL);
    struct timeval hour = {3600, 0};
    event_add(keep, &hour);

    /* the original, committed as the daemon would */
    struct spool_env *e = make_env();
    struct spool_msg *m = spool_msg_new(s);
    CHECK(m && spool_msg_write(m, original, strlen(original)) == 0, "write original");
    struct qstate st = {.base = base};
    spool_msg_commit(m, e, on_committed, &st);
    event_base_dispatch(base);
    CHECK(st.done == 1, "original committed");

    size_t idx[] = {0, 3, 4}; /* 3 wants only SUCCESS and FAILURE: it is in */
    e->rcpts[4].notify = SMTP_NOTIFY_NEVER;
    memset(&st, 0, sizeof st);
    st.base = base;
    struct dsn_req *r = dsn_queue(s, en, e, DSN_FAILED, idx, 3, on_queued, &st);
    CHECK(r != NULL, "queued");
    event_base_dispatch(base);
    CHECK(st.done == 1 && st.id[0], "done with an ID");
    struct spool_env *d = spool_load(s, st.id, err, sizeof err);
    CHECK(d != NULL, "DSN in the queue: %s", err);
    if (d) {
        CHECK(d->sender && d->sender[0] == '\0', "from <>");
        CHECK(d->nrcpts == 1 && strcmp(d->rcpts[0].addr, "alice@example.test") == 0, "to sender");
        CHECK(d->rcpts[0].notify == SMTP_NOTIFY_NEVER, "NOTIFY=NEVER");
        CHECK(d->dsn_trusted == 0 && d->proto && strcmp(d->proto, "local") == 0,
              "local, untrusted");
        const char *why;
        CHECK(!dsn_allowed(d, &why), "a bounce never bounces");
        struct spool_content v;
        char *c = NULL;
        if (spool_open_content(s, st.id, &v) == 0) {
            c = xcalloc(1, (size_t)v.len + 1);
            if (pread(v.fd, c, (size_t)v.len, (off_t)v.off) != (ssize_t)v.len) c[0] = '\0';
        }
        CHECK(c &&
                  strncmp(c, "Received: by mx.example.test (kurier, delivery report for ", 58) == 0,
              "Received first");
        CHECK(c && count_of(c, "\r\nFinal-Recipient: ") == 2, "NOTIFY=NEVER recipient left out");
        CHECK(c && strstr(c, "Final-Recipient: rfc822; gone@example.test") == NULL, "NEVER out");
        CHECK(c && strstr(c, "Subject: Angebot") != NULL, "original headers from the spool");
        free(c);
        if (v.fd >= 0) close(v.fd);
        spool_env_free(d);
    }

    /* refused: untrusted sender, null sender, nothing wanted */
    e->dsn_trusted = 0;
    CHECK(dsn_queue(s, en, e, DSN_FAILED, idx, 3, on_queued, &st) == NULL, "untrusted: nothing");
    e->dsn_trusted = 1;
    size_t never[] = {4};
    CHECK(dsn_queue(s, en, e, DSN_FAILED, never, 1, on_queued, &st) == NULL, "NEVER: nothing");
    CHECK(dsn_queue(s, en, e, DSN_DELIVERED, idx, 1, on_queued, &st) == NULL,
          "no success by default");

    /* cancelled: done never runs (the commit may still land) */
    memset(&st, 0, sizeof st);
    st.base = base;
    r = dsn_queue(s, en, e, DSN_DELAYED, idx, 1, on_queued, &st);
    CHECK(r != NULL, "queued for cancel");
    dsn_cancel(r);
    struct timeval shortly = {0, 300000};
    event_base_loopexit(base, &shortly);
    event_base_dispatch(base);
    CHECK(st.done == 0, "cancelled done ran");
    dsn_cancel(NULL);

    spool_env_free(e);
    event_free(keep);
    work_shutdown();
    spool_free(s);
    event_base_free(base);
}

int main(void)
{
    evthread_use_pthreads();
    log_init("stderr", "test", LOG_LV_WARN);
    out_dir = getenv("DSN_OUT");
    if (out_dir && !*out_dir) out_dir = NULL;
    char root[] = "/tmp/test_dsn.XXXXXX";
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/original.msg", root);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && write_all(fd, original, strlen(original)) == 0, "write content");
    struct kconf *en = make_conf("en"), *de = make_conf("de");
    CHECK(en && de, "config");
    if (en && de) {
        struct spool_env *e = make_env();
        test_failed(en, de, e, fd);
        test_delayed(en, de, e, fd);
        test_delivered(en, de, e, fd);
        spool_env_free(e);
        test_pool_blocked(en, de, fd);
        test_policy();
        test_pending();
        test_envelope_fields();
        test_queue(en, root);
    }
    close(fd);
    conf_free(en);
    conf_free(de);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) printf("cannot remove %s\n", root);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
