/* fuzz_replies.c: remote replies as the egress classifier takes them (src/egress/
 * replies.c): split into code, enhanced code and text, classified against the shipped
 * rules (data/replies.rules when run from the source folder, else a few built-in
 * rules); an input starting "#rules\n" is read as a rules file instead. The first line
 * is also a subject for a DNS list query name (src/egress/lists.c). */
#include "core/compat.h"

#include <stdint.h>

#include "egress/lists.h"
#include "egress/replies.h"

static const char fallback[] = "greylist code=4xx /gr[ae]y-?list/\n"
                               "ip-blocklist /spamhaus|spamcop|blocked using/\n"
                               "ip-blocklist enh=5.7.606,5.7.x !\"dmarc\" code=5xx,55x\n"
                               "user-unknown /user unknown|no such (user|mailbox)/\n"
                               "policy /^IP=[^ ]+ - .*\\((BL|RL)\\)/\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct reply_rules *rules;
    char err[600];
    if (!rules) {
        rules = egress_reply_rules_load("data/replies.rules", err, sizeof err);
        if (!rules)
            rules = egress_reply_rules_parse(fallback, strlen(fallback), "f", err, sizeof err);
        if (!rules) abort();
    }
    if (size > 65536) return 0; /* the SMTP client caps a reply long before */
    char *text = malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = '\0';

    if (size >= 7 && memcmp(text, "#rules\n", 7) == 0) {
        err[0] = '\0';
        struct reply_rules *r = egress_reply_rules_parse(text + 7, size - 7, "in", err, sizeof err);
        if (!r && strncmp(err, "in:", 3) != 0) abort(); /* every error names the line */
        if (r) (void)egress_reply_classify(r, 550, "5.7.1", "blocked using x", NULL);
        egress_reply_rules_free(r);
        free(text);
        return 0;
    }

    int code;
    char enh[16];
    const char *rest = egress_reply_split(text, &code, enh, sizeof enh);
    if (rest < text || rest > text + strlen(text)) abort();
    if (code != 0 && (code < 0 || code > 999)) abort();
    if (strlen(enh) >= sizeof enh) abort();
    const struct reply_rule *m = NULL;
    enum reply_kind k = egress_reply_classify(rules, 0, NULL, text, &m);
    if ((unsigned)k >= REPLY_KIND_COUNT) abort();
    if (m && (m->kind != k || m->line <= 0 || !m->text)) abort();
    (void)egress_reply_classify(rules, code, enh, rest, NULL);

    char *nl = strchr(text, '\n');
    if (nl) *nl = '\0';
    char qn[320];
    enum egress_list_kind kind;
    if (egress_list_qname(text, "zen.spamhaus.org", &kind, qn, sizeof qn) == 0 &&
        strlen(qn) >= sizeof qn)
        abort();
    if (size >= 4) (void)egress_list_is_refusal(egress_list_find("multi.uribl.com"), data);
    free(text);
    return 0;
}
