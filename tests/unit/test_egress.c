/* test_egress.c: egress pools without a network: the pool block's parser and its
 * errors, route_pool()'s rules, the weighted pick (spread, skipping benched and
 * slowed addresses), benches per destination and organisation, egress_org(), the
 * reply question (egress_reply_kind()) on real blocklist and rate-limit replies,
 * and a bench's round trip through the directory database. */
#include "core/compat.h"

#include "core/core.h"
#include "egress/bench.h"
#include "route/route.h"
#include "store/store.h"
#include "check.h"

static struct kconf *conf_of(const char *text, struct conf_errors *errs)
{
    struct conf_node *t = conf_parse(text, strlen(text), "t.conf", errs);
    struct kconf *c = conf_apply(t, "t.conf", errs);
    conf_tree_free(t);
    return c;
}

static const char POOLS[] = "egress pool main {\n"
                            "    source 127.0.0.2 weight 2 ehlo Out2.Example.Test;\n"
                            "    source 127.0.0.3;\n"
                            "    default on;\n"
                            "    fallback pool spare;\n"
                            "}\n"
                            "egress pool spare { source 2001:db8:0::10; fallback relay "
                            "smart.example:587; }\n"
                            "egress pool cust { source 127.0.0.5; sender_domains Customer.Example; "
                            "accounts bob@example.test; }\n"
                            "egress pool sub { source 127.0.0.6; listeners 127.0.0.1:2587; }\n";

static void test_parse(void)
{
    struct conf_errors errs = {0};
    struct kconf *c = conf_of(POOLS, &errs);
    CHECK(c && errs.n == 0, "pools parse (%zu errors)", errs.n);
    conf_errors_free(&errs);
    if (!c) return;
    const struct conf_egress_pool *m = conf_egress_pool_find(c, "main");
    CHECK(m && m->nsrc == 2 && m->src[0].weight == 2 && m->src[1].weight == 1, "main sources");
    CHECK(m && strcmp(m->src[0].ehlo, "out2.example.test") == 0 && !m->src[1].ehlo, "ehlo");
    CHECK(m && m->is_default && m->fallback == CONF_EGRESS_FB_POOL, "default, fallback pool");
    const struct conf_egress_pool *s = conf_egress_pool_find(c, "spare");
    CHECK(s && strcmp(s->src[0].addr, "2001:db8::10") == 0, "canonical IPv6 %s",
          s ? s->src[0].addr : "-");
    CHECK(s && s->fallback == CONF_EGRESS_FB_RELAY &&
              strcmp(s->fallback_arg, "smart.example:587") == 0,
          "fallback relay");
    /* the rules, in their order */
    CHECK(strcmp(route_pool(c, "x@customer.example", "bob@example.test", NULL)->name, "cust") == 0,
          "account");
    CHECK(strcmp(route_pool(c, "x@CUSTOMER.example", NULL, "127.0.0.1:2587")->name, "cust") == 0,
          "sender domain beats listener");
    CHECK(strcmp(route_pool(c, "x@other.example", NULL, "127.0.0.1:2587")->name, "sub") == 0,
          "listener");
    CHECK(strcmp(route_pool(c, "", NULL, NULL)->name, "main") == 0, "default");
    conf_free(c);

    static const struct {
        const char *text, *error;
    } bad[] = {
        {"egress pool p { source 300.1.1.1; }", "invalid source address \"300.1.1.1\""},
        {"egress pool p { source 127.0.0.2 weight 0; }", "invalid weight \"0\""},
        {"egress pool p { source 127.0.0.2 color red; }", "unknown option \"color\""},
        {"egress pool p { source 127.0.0.2; source 127.0.0.2; }", "duplicate source 127.0.0.2"},
        {"egress pool p { default on; }", "has no source address"},
        {"egress pool p { source 127.0.0.2; fallback pool q; }", "fallback pool \"q\" is not"},
        {"egress pool p { source 127.0.0.2; fallback pool p; }", "is the pool itself"},
        {"egress pool p { source 127.0.0.2; fallback maybe; }", "invalid fallback"},
        {"egress pool p { source 127.0.0.2; colour x; }", "unknown key \"colour\""},
        {"egress pool p { source 127.0.0.2; default on; }\n"
         "egress pool q { source 127.0.0.3; default on; }",
         "is already the default"},
        {"egress pool { source 127.0.0.2; }", "expected \"egress pool NAME"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct conf_errors e = {0};
        struct kconf *b = conf_of(bad[i].text, &e);
        int found = 0;
        for (size_t k = 0; k < e.n; k++)
            if (strstr(e.msgs[k], bad[i].error)) found = 1;
        CHECK(!b && found, "bad config %zu: want \"%s\", got %s", i, bad[i].error,
              e.n ? e.msgs[0] : "no error");
        conf_free(b);
        conf_errors_free(&e);
    }
}

static void test_org(void)
{
    static const struct {
        const char *host, *org;
    } t[] = {
        {"mx1.eur.protection.outlook.com", "outlook.com"},
        {"outlook-com.olc.protection.outlook.com.", "outlook.com"},
        {"MX.Example.CO.UK", "example.co.uk"},
        {"mx00.t-online.de", "t-online.de"},
        {"127.0.1.1", "127.0.1.1"},
        {"2001:db8::1", "2001:db8::1"},
        {"localhost", "localhost"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char out[256];
        egress_org(t[i].host, out, sizeof out);
        CHECK(strcmp(out, t[i].org) == 0, "org of %s: %s, want %s", t[i].host, out, t[i].org);
    }
}

static void test_pick_and_bench(void)
{
    struct conf_errors errs = {0};
    struct kconf *c = conf_of(POOLS, &errs);
    conf_errors_free(&errs);
    const struct conf_egress_pool *m = conf_egress_pool_find(c, "main");
    /* weight 2:1 -> smooth: .2 .3 .2, again */
    const char *want[] = {"127.0.0.2", "127.0.0.3", "127.0.0.2",
                          "127.0.0.2", "127.0.0.3", "127.0.0.2"};
    for (int i = 0; i < 6; i++) {
        const struct conf_egress_source *s = egress_pick(m, "mx.one.test", NULL, 0);
        CHECK(s && strcmp(s->addr, want[i]) == 0, "pick %d: %s, want %s", i, s ? s->addr : "-",
              want[i]);
    }
    /* benched for one organisation: every MX of it, no other */
    CHECK(egress_bench("127.0.0.2", "one.test", "554 Blocked", time(NULL) + 3600) == 0, "bench");
    CHECK(egress_is_benched("127.0.0.2", "mx2.ONE.test", NULL, 0), "org bench covers its hosts");
    CHECK(!egress_is_benched("127.0.0.2", "mx.two.test", NULL, 0), "not other destinations");
    for (int i = 0; i < 3; i++) {
        const struct conf_egress_source *s = egress_pick(m, "mx.one.test", NULL, 0);
        CHECK(s && strcmp(s->addr, "127.0.0.3") == 0, "benched skipped");
    }
    char why[128] = "";
    CHECK(egress_bench("::ffff:127.0.0.3", NULL, "listed on x", 0) == 0, "mapped spelling");
    CHECK(egress_bench("127.0.0.3", NULL, "listed on zen.example: TXT", 0) == 0, "all");
    CHECK(!egress_pick(m, "mx.one.test", why, sizeof why), "everything benched");
    CHECK(egress_unbench("127.0.0.3", NULL) == 1, "lift the every-destination bench");
    CHECK(egress_unbench("127.0.0.3", NULL) == 0, "lifted once");
    CHECK(egress_unbench_all("::ffff:127.0.0.3") == 1, "the mapped one");
    CHECK(egress_bench("not an ip", NULL, "x", 0) == -1, "bad address");
    /* expired benches do not count */
    CHECK(egress_bench("127.0.0.3", "two.test", "old", time(NULL) - 1) == 0, "expired bench");
    CHECK(!egress_is_benched("127.0.0.3", "mx.two.test", NULL, 0), "expired is no bench");
    /* slowed: taken only when nothing else is left */
    egress_slow("127.0.0.3", "mx.three.test", "421 rate limited", time(NULL) + 60);
    for (int i = 0; i < 3; i++) {
        const struct conf_egress_source *s = egress_pick(m, "mx.three.test", NULL, 0);
        CHECK(s && strcmp(s->addr, "127.0.0.2") == 0, "slowed address avoided");
    }
    const struct conf_egress_source *s = egress_pick(m, "mx.one.test", NULL, 0);
    CHECK(s && strcmp(s->addr, "127.0.0.3") == 0, "slowed address when nothing else: %s",
          s ? s->addr : "-");
    egress_unbench_all("127.0.0.2");
    egress_unbench_all("127.0.0.3");
    /* volume */
    egress_count("127.0.0.2", "mx.one.test", 3);
    egress_count("127.0.0.2", "mx2.one.test", 1);
    struct egress_volume v;
    egress_volume_get("127.0.0.2", &v);
    CHECK(v.msgs_hour == 2 && v.rcpts_day == 4, "volume %lu %lu", v.msgs_hour, v.rcpts_day);
    conf_free(c);
}

static void test_replies(void)
{
    static const struct {
        int code;
        const char *enh, *text;
        enum egress_reply want;
    } t[] = {
        {554, "", "Blocked - see https://ipcheck.proofpoint.com/?ip=81.28.224.28",
         EGRESS_REPLY_BLOCKLIST},
        {550, "", "Your server IP address is listed in the SpamCop database",
         EGRESS_REPLY_BLOCKLIST},
        {550, "5.7.0", "Your server IP address is in the SpamHaus SBL-XBL database, bye",
         EGRESS_REPLY_BLOCKLIST},
        {554, "5.7.1",
         "Service unavailable; Client host [192.0.2.1] blocked using b.barracudacentral.org",
         EGRESS_REPLY_BLOCKLIST},
        {550, "5.7.1",
         "Service unavailable, Client host [192.0.2.1] blocked using Spamhaus. To request "
         "removal from this list see https://www.spamhaus.org/query/ip/192.0.2.1",
         EGRESS_REPLY_BLOCKLIST},
        {421, "4.7.0",
         "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user "
         "complaints",
         EGRESS_REPLY_SLOW},
        {450, "4.7.1", "Too many messages, rate limit exceeded, try again later",
         EGRESS_REPLY_SLOW},
        {451, "4.7.1", "Greylisted, try again in 300 seconds", EGRESS_REPLY_OTHER},
        {550, "5.1.1", "User unknown", EGRESS_REPLY_OTHER},
        {552, "5.2.2", "Mailbox full", EGRESS_REPLY_OTHER},
        {250, "2.0.0", "Ok", EGRESS_REPLY_OTHER},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        enum egress_reply k = egress_reply_kind(t[i].code, t[i].enh, t[i].text);
        CHECK(k == t[i].want, "reply %zu (%d %s): %d, want %d", i, t[i].code, t[i].text, (int)k,
              (int)t[i].want);
    }
}

static void test_persisted(void)
{
    char tmpl[] = "/tmp/kurier-test-egress-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) return;
    char *path = xasprintf("%s/kurier.db", dir);
    char err[256];
    struct store *st = store_open(path, 1, NULL, err, sizeof err);
    CHECK(st != NULL, "store: %s", err);
    if (!st) return;
    egress_bench_shutdown();
    egress_bench_init(st); /* no workers here: written at once */
    egress_bench("127.0.0.7", "Outlook.com", "554 5.7.1 blocked", time(NULL) + 600);
    egress_bench("127.0.0.8", NULL, "listed", 0);
    egress_bench("127.0.0.9", "example.org", "briefly", 0); /* written in order: put, del */
    egress_unbench("127.0.0.9", "example.org");
    egress_bench_shutdown();
    CHECK(!egress_is_benched("127.0.0.7", "mx.outlook.com", NULL, 0), "forgotten");
    egress_bench_init(st);
    char why[64] = "";
    CHECK(egress_is_benched("127.0.0.7", "x.protection.outlook.com", why, sizeof why) &&
              strcmp(why, "554 5.7.1 blocked") == 0,
          "back after a restart: %s", why);
    CHECK(egress_is_benched("127.0.0.8", "anything.example", NULL, 0), "every destination");
    CHECK(!egress_is_benched("127.0.0.9", "mx.example.org", NULL, 0), "lifted before written");
    CHECK(egress_unbench_all("127.0.0.7") == 1, "lifted");
    egress_bench_shutdown();
    egress_bench_init(st);
    CHECK(!egress_is_benched("127.0.0.7", "mx.outlook.com", NULL, 0), "lift persisted");
    egress_bench_shutdown();
    store_free(st);
    char *cmd = xasprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", dir);
    free(cmd);
    free(path);
}

int main(void)
{
    log_init("stderr", "test_egress", LOG_LV_ERR);
    test_parse();
    test_org();
    test_pick_and_bench();
    test_replies();
    test_persisted();
    egress_bench_shutdown();
    return check_summary();
}
