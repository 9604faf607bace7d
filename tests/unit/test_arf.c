/* test_arf.c: the abuse report parser (abuse/arf.c) on the seed reports of
 * fuzz/corpus/arf/: ARF with the whole message, ARF with headers lacking our
 * Received:, SpamCop, nested multiparts, a mail that is no report. */
#include "core/compat.h"

#include "abuse/complaints.h"
#include "core/core.h"

#include "check.h"

static char *slurp(const char *name, size_t *n)
{
    char path[256];
    snprintf(path, sizeof path, "fuzz/corpus/arf/%s", name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("cannot open %s (run from the repository's top)\n", path);
        exit(1);
    }
    char *b = xmalloc(1 << 16);
    *n = fread(b, 1, (1 << 16) - 1, f);
    b[*n] = '\0';
    fclose(f);
    return b;
}

int main(void)
{
    struct complaint c;
    size_t n;
    char *m = slurp("arf_full", &n);
    CHECK(complaint_parse(m, n, "mx.example.test", &c) == COMPLAINT_ARF, "arf");
    CHECK(strcmp(c.queue_id, "0M3ZK7Q2P5R8T1") == 0, "queue id %s", c.queue_id);
    CHECK(strcmp(c.message_id, "<abc123@mx.example.test>") == 0, "msgid %s", c.message_id);
    CHECK(strcmp(c.feedback_type, "abuse") == 0, "type %s", c.feedback_type);
    CHECK(strcmp(c.user_agent, "BigMailFBL/1.0") == 0, "ua %s", c.user_agent);
    CHECK(strcmp(c.version, "1") == 0, "version %s", c.version);
    CHECK(strcmp(c.source_ip, "192.0.2.25") == 0, "ip %s", c.source_ip);
    CHECK(strcmp(c.original_mail_from, "<alice@example.test>") == 0, "omf %s",
          c.original_mail_from);
    CHECK(strcmp(c.original_rcpt_to, "<victim@bigmail.example>") == 0, "ort %s",
          c.original_rcpt_to);
    CHECK(strcmp(c.reported_domain, "example.test") == 0, "rd %s", c.reported_domain);
    CHECK(strncmp(c.arrival_date, "Sun, 06 Dec 2026", 16) == 0, "date %s", c.arrival_date);
    CHECK(strcmp(c.reporter, "fbl@bigmail.example") == 0, "reporter %s", c.reporter);
    /* another host's kurier: not our queue ID */
    CHECK(complaint_parse(m, n, "mx.other.test", &c) == COMPLAINT_ARF && !c.queue_id[0] &&
              c.message_id[0],
          "other host: %s", c.queue_id);
    /* cut short anywhere: never reads past the end */
    for (size_t k = 0; k < n; k += 7)
        complaint_parse(m, k, NULL, &c);
    free(m);

    m = slurp("arf_headers_msgid_only", &n);
    CHECK(complaint_parse(m, n, "mx.example.test", &c) == COMPLAINT_ARF, "arf headers");
    CHECK(!c.queue_id[0], "no queue id: %s", c.queue_id);
    CHECK(strcmp(c.message_id, "<abc123@mx.example.test>") == 0, "msgid %s", c.message_id);
    free(m);

    m = slurp("arf_base64", &n); /* the original base64-encoded */
    CHECK(complaint_parse(m, n, "mx.example.test", &c) == COMPLAINT_ARF, "arf base64");
    CHECK(strcmp(c.queue_id, "0M3ZK7Q2P5R8T1") == 0, "queue id %s", c.queue_id);
    CHECK(strcmp(c.message_id, "<abc123@mx.example.test>") == 0, "msgid %s", c.message_id);
    free(m);

    m = slurp("spamcop", &n);
    CHECK(complaint_parse(m, n, "mx.example.test", &c) == COMPLAINT_SPAMCOP, "spamcop");
    CHECK(strcmp(c.queue_id, "0M3ZK7Q2P5R8T2") == 0, "queue id %s", c.queue_id);
    CHECK(strcmp(c.message_id, "<def456@mx.example.test>") == 0, "msgid %s", c.message_id);
    CHECK(strcmp(c.source_ip, "192.0.2.25") == 0, "ip %s", c.source_ip);
    CHECK(strcmp(c.reporter, "1234567@reports.spamcop.net") == 0, "reporter %s", c.reporter);
    free(m);

    m = slurp("nested", &n);
    CHECK(complaint_parse(m, n, NULL, &c) == COMPLAINT_ARF, "nested");
    CHECK(strcmp(c.feedback_type, "fraud") == 0 && strcmp(c.message_id, "<n@x>") == 0,
          "nested: %s %s", c.feedback_type, c.message_id);
    free(m);

    m = slurp("not_a_report", &n);
    CHECK(complaint_parse(m, n, NULL, &c) == COMPLAINT_NONE, "not a report");
    CHECK(!c.queue_id[0] && !c.message_id[0] && strcmp(c.reporter, "someone@else.example") == 0,
          "none: reporter kept %s", c.reporter);
    free(m);

    /* our Received: of a local submission names the user */
    char qid[32], mid[256], user[64];
    m = slurp("local_received", &n);
    CHECK(complaint_scan_headers(m, n, "mx.example.test", qid, mid, user, sizeof user) == 1,
          "scan");
    CHECK(strcmp(qid, "0M3ZK7Q2P5R8T3") == 0 && strcmp(user, "bob") == 0 &&
              strcmp(mid, "<l@x>") == 0,
          "local: %s %s %s", qid, user, mid);
    free(m);
    /* an id of the wrong shape is no queue ID */
    const char *bad =
        "Received: by mx.example.test (kurier) with ESMTP id 0M3ZK7Q2P5R8T; x\r\n\r\n";
    complaint_scan_headers(bad, strlen(bad), "mx.example.test", qid, mid, NULL, 0);
    CHECK(!qid[0], "short id %s", qid);
    return check_summary();
}
