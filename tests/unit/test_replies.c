/* test_replies.c: the egress reply classifier with the shipped rules file against
 * real-world replies (tests/data/replies.txt), the rules parser's errors, and the
 * pure helpers of the DNS list table (egress/lists.h). */
#include "core/compat.h"

#include <sys/socket.h>

#include "check.h"
#include "core/core.h"
#include "egress/lists.h"
#include "egress/replies.h"

static struct reply_rules *parse(const char *text, char *err, size_t errsize)
{
    return egress_reply_rules_parse(text, strlen(text), "t.rules", err, errsize);
}

static void test_corpus(void)
{
    char err[512] = "";
    struct reply_rules *r = egress_reply_rules_load("data/replies.rules", err, sizeof err);
    CHECK(r != NULL, "shipped rules: %s", err);
    if (!r) return;
    CHECK(egress_reply_rules_count(r) >= 50, "%zu rules", egress_reply_rules_count(r));
    FILE *f = fopen("tests/data/replies.txt", "r");
    CHECK(f != NULL, "tests/data/replies.txt");
    if (!f) {
        egress_reply_rules_free(r);
        return;
    }
    char line[4096];
    int cases = 0, lineno = 0;
    int per_kind[REPLY_KIND_COUNT] = {0};
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || line[0] == '#') continue;
        char *tab = strchr(line, '\t');
        CHECK(tab != NULL, "replies.txt:%d: no tab", lineno);
        if (!tab) continue;
        *tab = '\0';
        enum reply_kind want;
        CHECK(egress_reply_kind_parse(line, &want) == 0, "replies.txt:%d: class %s", lineno, line);
        const struct reply_rule *m = NULL;
        enum reply_kind got = egress_reply_classify(r, 0, NULL, tab + 1, &m);
        CHECK(got == want, "replies.txt:%d: %s expected, got %s by %s:%d (%s): %s", lineno,
              egress_reply_kind_name(want), egress_reply_kind_name(got), m ? m->file : "-",
              m ? m->line : 0, m ? m->text : "no rule", tab + 1);
        cases++;
        per_kind[want]++;
    }
    fclose(f);
    CHECK(cases >= 60, "only %d real-world replies", cases);
    for (int k = 0; k < REPLY_KIND_COUNT; k++)
        CHECK(per_kind[k] > 0, "no case of %s", egress_reply_kind_name((enum reply_kind)k));
    /* the same reply given as code, enhanced code and text apart */
    const struct reply_rule *m = NULL;
    CHECK(egress_reply_classify(r, 550, "5.7.606", "Access denied, banned sending IP [192.0.2.1].",
                                &m) == REPLY_IP_BLOCKLIST,
          "code and enh apart");
    CHECK(m && m->line > 0 && strcmp(m->file, "data/replies.rules") == 0, "matched rule");
    CHECK(egress_reply_classify(r, 550, NULL, "5.1.1 <bob@example.org>: Recipient address rejected",
                                NULL) == REPLY_USER_UNKNOWN,
          "enh at the start of the text");
    egress_reply_rules_free(r);
}

static void test_rules_syntax(void)
{
    char err[512];
    struct reply_rules *r =
        parse("# comment\n\n"
              "greylist code=4xx /gr[ae]ylist/  # trailing comment\n"
              "ip-blocklist code=550,554 enh=5.7.x \"blocked\" !\"not blocked\"\n"
              "policy \"say \\\"no\\\"\" /a\\/b/\n"
              "size enh=x.3.4\n",
              err, sizeof err);
    CHECK(r != NULL, "%s", r ? "" : err);
    CHECK(egress_reply_rules_count(r) == 4, "count");
    const struct reply_rule *m = NULL;
    CHECK(egress_reply_classify(r, 450, "4.2.0", "Greylisted, try later", &m) == REPLY_GREYLIST,
          "greylist");
    CHECK(m && m->line == 3 && strcmp(m->text, "greylist code=4xx /gr[ae]ylist/") == 0,
          "rule text \"%s\"", m ? m->text : "");
    CHECK(egress_reply_classify(r, 550, "5.7.1", "client BLOCKED", &m) == REPLY_IP_BLOCKLIST &&
              m->line == 4,
          "code list, enh wildcard, words");
    CHECK(egress_reply_classify(r, 550, "5.7.1", "we have not blocked you", NULL) == REPLY_OTHER,
          "negated words");
    CHECK(egress_reply_classify(r, 551, "5.7.1", "blocked", NULL) == REPLY_OTHER, "code");
    CHECK(egress_reply_classify(r, 550, "5.1.1", "blocked", NULL) == REPLY_USER_UNKNOWN,
          "no rule: x.1.1 by code");
    CHECK(egress_reply_classify(r, 0, NULL, "554 5.3.4 too big", &m) == REPLY_SIZE && m->line == 6,
          "split from the text");
    CHECK(egress_reply_classify(r, 0, NULL, "554 they say \"no\" to a/b", NULL) == REPLY_POLICY,
          "escapes");
    egress_reply_rules_free(r);

    static const struct {
        const char *text, *err;
    } bad[] = {
        {"greylist /x/\nblocked \"x\"\n", "t.rules:2: unknown class \"blocked\""},
        {"policy /a(/\n", "t.rules:1: bad regex /a(/"},
        {"\n\npolicy \"unclosed\n", "t.rules:3: \"words\" not closed"},
        {"policy code=5x\n", "t.rules:1: bad code=\"5x\""},
        {"policy enh=5.7\n", "t.rules:1: bad enh=\"5.7\""},
        {"policy\n", "t.rules:1: class \"policy\" without any condition"},
        {"policy text=spam\n", "t.rules:1: unknown condition \"text=spam\""},
        {"policy \"a\"\"b\"\n", "t.rules:1: expected a space"},
        /* glibc's regcomp would take gigabytes for these (found by fuzz_replies) */
        {"policy /gr[ae]+++++y/\n", "t.rules:1: regex /gr[ae]+++++y/ refused: a repetition of"},
        {"policy /a{2}*/\n", "t.rules:1: regex /a{2}*/ refused: a repetition of"},
        {"policy /(a{1000})/\n", "t.rules:1: regex /(a{1000})/ refused: a repetition count"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        r = parse(bad[i].text, err, sizeof err);
        CHECK(r == NULL && strncmp(err, bad[i].err, strlen(bad[i].err)) == 0,
              "bad rules %zu: \"%s\"", i, err);
        egress_reply_rules_free(r);
    }
    /* quantifiers inside brackets or escaped are characters, not repetitions */
    r = parse("policy /a[+*]+\\+?b{2,3}/\n", err, sizeof err);
    CHECK(r != NULL && egress_reply_classify(r, 550, NULL, "a*+bb", NULL) == REPLY_POLICY,
          "brackets and escapes: %s", r ? "" : err);
    egress_reply_rules_free(r);
    CHECK(egress_reply_rules_load("/nonexistent/x.rules", err, sizeof err) == NULL &&
              strstr(err, "/nonexistent/x.rules: ") == err,
          "missing file: %s", err);
}

static void test_helpers(void)
{
    int code;
    char enh[16];
    const char *t = egress_reply_split("550-5.7.1 [192.0.2.1] text", &code, enh, sizeof enh);
    CHECK(code == 550 && strcmp(enh, "5.7.1") == 0 && strcmp(t, "[192.0.2.1] text") == 0,
          "split %d %s %s", code, enh, t);
    t = egress_reply_split("Blocked - see x", &code, enh, sizeof enh);
    CHECK(code == 0 && enh[0] == '\0' && strcmp(t, "Blocked - see x") == 0, "no code");
    t = egress_reply_split("421", &code, enh, sizeof enh);
    CHECK(code == 421 && *t == '\0', "bare code");
    for (int k = 0; k < REPLY_KIND_COUNT; k++) {
        enum reply_kind back;
        CHECK(egress_reply_kind_parse(egress_reply_kind_name((enum reply_kind)k), &back) == 0 &&
                  back == (enum reply_kind)k,
              "name %d", k);
    }
    CHECK(egress_reply_classify(NULL, 552, "5.2.2", "whatever", NULL) == REPLY_MAILBOX_FULL,
          "no rules");
    CHECK(egress_reply_classify(NULL, 0, NULL, NULL, NULL) == REPLY_OTHER, "nothing");
}

static void test_lists(void)
{
    char q[320];
    enum egress_list_kind kind;
    CHECK(egress_list_qname("192.0.2.25", "zen.spamhaus.org.", &kind, q, sizeof q) == 0 &&
              strcmp(q, "25.2.0.192.zen.spamhaus.org") == 0 && kind == EGRESS_LIST_IP,
          "v4 %s", q);
    CHECK(
        egress_list_qname("2001:db8::1", "bl6.test", &kind, q, sizeof q) == 0 &&
            strcmp(q, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl6.test") ==
                0 &&
            kind == EGRESS_LIST_IP,
        "v6 %s", q);
    CHECK(egress_list_qname("::ffff:192.0.2.25", "bl.test", NULL, q, sizeof q) == 0 &&
              strcmp(q, "25.2.0.192.bl.test") == 0,
          "mapped %s", q);
    CHECK(egress_list_qname("Spam.Example", "dbl.test", &kind, q, sizeof q) == 0 &&
              strcmp(q, "spam.example.dbl.test") == 0 && kind == EGRESS_LIST_DOMAIN,
          "domain %s", q);
    CHECK(egress_list_qname("not an ip", "bl.test", NULL, q, sizeof q) == -1, "bad subject");
    CHECK(egress_list_qname("localhost", "bl.test", NULL, q, sizeof q) == -1, "no dot");
    CHECK(egress_list_qname("192.0.2.1", "bl.test", NULL, q, 10) == -1, "small out");

    const struct egress_list *zen = egress_list_find("ZEN.spamhaus.org.");
    CHECK(zen && zen->kind == EGRESS_LIST_IP, "find zen");
    CHECK(egress_list_find("bl.test") == NULL, "unknown zone");
    static const unsigned char listed[4] = {127, 0, 0, 2},
                               spamhaus_refused[4] = {127, 255, 255, 254},
                               outside[4] = {192, 0, 2, 1}, one[4] = {127, 0, 0, 1};
    CHECK(!egress_list_is_refusal(zen, listed), "127.0.0.2 lists");
    CHECK(egress_list_is_refusal(zen, spamhaus_refused), "127.255.255.254 refuses");
    CHECK(egress_list_is_refusal(NULL, spamhaus_refused), "for unknown lists too");
    CHECK(egress_list_is_refusal(NULL, outside), "outside 127/8");
    CHECK(egress_list_is_refusal(egress_list_find("multi.uribl.com"), one), "uribl 127.0.0.1");
    CHECK(!egress_list_is_refusal(NULL, one), "127.0.0.1 for an unknown list");
    char url[256];
    CHECK(strcmp(egress_list_delist_url(zen, "192.0.2.25", url, sizeof url),
                 "https://check.spamhaus.org/results/?query=192.0.2.25") == 0,
          "delist %s", url);
    CHECK(strcmp(egress_list_delist_url(NULL, "x", url, sizeof url), "") == 0, "no url");
    size_t ndomain = 0;
    for (size_t i = 0; i < egress_nlists; i++) {
        CHECK(egress_lists[i].delist != NULL, "%s has a delisting page", egress_lists[i].zone);
        ndomain += egress_lists[i].kind == EGRESS_LIST_DOMAIN;
    }
    CHECK(egress_nlists >= 8 && ndomain >= 1, "table");
    CHECK(strcmp(egress_rbl_status_name(EGRESS_RBL_NOT_LISTED), "not listed") == 0, "names");
}

int main(void)
{
    test_corpus();
    test_rules_syntax();
    test_helpers();
    test_lists();
    return check_summary();
}
