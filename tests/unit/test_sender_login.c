/* test_sender_login.c: the sender binding check (policy_check_sender_login, called
 * as the pipeline calls it) with a real store, worker pool and event loop: MAIL and end-of-message
 * stages, modes enforce/log/off, From:/Sender: parsing, unauthenticated sessions. No network. */
#include "core/compat.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <unistd.h>

#include "core/core.h"
#include "policy/policy.h"
#include "store/store.h"

#include "check.h"

struct tcase {
    enum policy_stage stage;
    const char *user;    /* NULL: not authenticated */
    const char *sender;  /* MAIL: "<...>" as on the wire */
    const char *headers; /* EOM */
    enum policy_kind want;
    int code;
    const char *text; /* exact verdict text when refused */
    const char *log;  /* expected part of the log, or NULL for no warning */
};

#define U "u@example.test"
#define REJ(x, u) "Sender address <" x "> not owned by user " u
#define MAL(f, u)                                                                                  \
    "Malformed " f ": header (a list of mailboxes is required, no group): cannot check the "       \
    "sender against user " u

static const struct tcase cases[] = {
    /* MAIL: the envelope sender. */
    {POLICY_MAIL, U, "<u@example.test>", NULL, POLICY_PASS, 0, NULL, NULL},
    {POLICY_MAIL, U, "<U@Example.TEST>", NULL, POLICY_PASS, 0, NULL, NULL},
    {POLICY_MAIL, "U@EXAMPLE.test", "<u@example.test>", NULL, POLICY_PASS, 0, NULL, NULL},
    {POLICY_MAIL, U, "<>", NULL, POLICY_PASS, 0, NULL, NULL},
    {POLICY_MAIL, U, "<v@example.test>", NULL, POLICY_REJECT, 553, REJ("v@example.test", U), NULL},
    {POLICY_MAIL, U, "<info@example.test>", NULL, POLICY_PASS, 0, NULL, NULL},
    {POLICY_MAIL, U, "<boss@other.example>", NULL, POLICY_PASS, 0, NULL, NULL},
    {POLICY_MAIL, U, "<anyone@granted.example>", NULL, POLICY_PASS, 0, NULL, NULL},
    {POLICY_MAIL, U, "<x@sub.granted.example>", NULL, POLICY_REJECT, 553,
     REJ("x@sub.granted.example", U), NULL},
    {POLICY_MAIL, NULL, "<v@example.test>", NULL, POLICY_PASS, 0, NULL, NULL},
    /* Mode of the user's own domain. */
    {POLICY_MAIL, "l@logdom.test", "<v@example.test>", NULL, POLICY_PASS, 0, NULL,
     "sender <v@example.test> not owned by user l@logdom.test (binding mode log)"},
    {POLICY_MAIL, "o@offdom.test", "<v@example.test>", NULL, POLICY_PASS, 0, NULL, NULL},
    /* An address in a "log" domain does not soften the user's "enforce". */
    {POLICY_MAIL, U, "<l@logdom.test>", NULL, POLICY_REJECT, 553, REJ("l@logdom.test", U), NULL},
    /* EOM: From: and Sender:. */
    {POLICY_EOM, U, NULL, "From: U <u@example.test>\r\nSubject: hi\r\n\r\n", POLICY_PASS, 0, NULL,
     NULL},
    {POLICY_EOM, U, NULL, "Subject: hi\r\nFrom: Boss <boss@other.example>\r\n\r\nbody\r\n",
     POLICY_PASS, 0, NULL, NULL},
    {POLICY_EOM, U, NULL, "Subject: hi\r\nFROM: \"V\" <v@example.test>\r\n\r\n", POLICY_REJECT, 553,
     REJ("v@example.test", U), NULL},
    {POLICY_EOM, U, NULL, "From: u@example.test,\r\n v@example.test\r\n\r\n", POLICY_REJECT, 553,
     REJ("v@example.test", U), NULL},
    {POLICY_EOM, U, NULL, "From: u@example.test\r\nSender: v@example.test\r\n\r\n", POLICY_REJECT,
     553, REJ("v@example.test", U), NULL},
    {POLICY_EOM, U, NULL, "From: info@example.test\r\nSender: u@example.test\r\n\r\n", POLICY_PASS,
     0, NULL, NULL},
    {POLICY_EOM, U, NULL, "From: u@example.test\nFrom: v@example.test\n\n", POLICY_REJECT, 553,
     REJ("v@example.test", U), NULL},
    /* Only the header section counts; a malformed line is skipped. */
    {POLICY_EOM, U, NULL, "From: u@example.test\r\n\r\nFrom: v@example.test\r\n", POLICY_PASS, 0,
     NULL, NULL},
    {POLICY_EOM, U, NULL, "bad line\r\nFrom: v@example.test\r\n\r\n", POLICY_REJECT, 553,
     REJ("v@example.test", U), NULL},
    {POLICY_EOM, U, NULL, "Subject: no from\r\n\r\n", POLICY_PASS, 0, NULL, NULL},
    {POLICY_EOM, U, NULL, "", POLICY_PASS, 0, NULL, NULL},
    {POLICY_EOM, U, NULL, "From: <<<\r\n\r\n", POLICY_REJECT, 553, MAL("From", U), NULL},
    /* RFC 5322 3.6.2: mailboxes only; a group or an empty list names nobody to check. */
    {POLICY_EOM, U, NULL, "From: \"ceo@victim.example\" :;\r\n\r\n", POLICY_REJECT, 553,
     MAL("From", U), NULL},
    {POLICY_EOM, U, NULL, "From: team: u@example.test;\r\n\r\n", POLICY_REJECT, 553, MAL("From", U),
     NULL},
    {POLICY_EOM, U, NULL, "From: u@example.test\r\nSender: x:;\r\n\r\n", POLICY_REJECT, 553,
     MAL("Sender", U), NULL},
    {POLICY_EOM, U, NULL, "From:\r\n\r\n", POLICY_REJECT, 553, MAL("From", U), NULL},
    {POLICY_EOM, "l@logdom.test", NULL, "From: \"v@example.test\" :;\r\n\r\n", POLICY_PASS, 0, NULL,
     "malformed From: header from user l@logdom.test (binding mode log)"},
    /* The Resent- fields name a sender too (RFC 5322 3.6.6). */
    {POLICY_EOM, U, NULL, "From: u@example.test\r\nResent-From: v@example.test\r\n\r\n",
     POLICY_REJECT, 553, REJ("v@example.test", U), NULL},
    {POLICY_EOM, U, NULL, "Resent-Sender: V <v@example.test>\r\nFrom: u@example.test\r\n\r\n",
     POLICY_REJECT, 553, REJ("v@example.test", U), NULL},
    {POLICY_EOM, U, NULL, "Resent-From: info@example.test\r\nFrom: u@example.test\r\n\r\n",
     POLICY_PASS, 0, NULL, NULL},
    {POLICY_EOM, NULL, NULL, "From: v@example.test\r\n\r\n", POLICY_PASS, 0, NULL, NULL},
    {POLICY_EOM, "l@logdom.test", NULL, "From: v@example.test\r\n\r\n", POLICY_PASS, 0, NULL,
     "sender <v@example.test> not owned by user l@logdom.test (binding mode log)"},
    {POLICY_EOM, "o@offdom.test", NULL, "From: v@example.test\r\n\r\n", POLICY_PASS, 0, NULL, NULL},
};

struct result {
    int called;
    int start_returned; /* set after start returned */
    int early;          /* done ran before start returned */
    struct policy_verdict v;
};

static void run_done(void *arg, const struct policy_verdict *v)
{
    struct result *r = arg;
    r->called++;
    if (!r->start_returned) r->early = 1;
    r->v = *v;
}

static char logpath[256];

static size_t log_size(void)
{
    fflush(stderr);
    size_t n = 0;
    char *s = file_read(logpath, &n);
    free(s);
    return s ? n : 0;
}

/* The log written since offset, as a new string. */
static char *log_since(size_t off)
{
    fflush(stderr);
    size_t n = 0;
    char *s = file_read(logpath, &n);
    if (!s) return xstrdup("");
    char *out = xstrdup(off <= n ? s + off : "");
    free(s);
    return out;
}

static void run_case(struct event_base *base, struct store *st, size_t i, const struct tcase *c)
{
    struct policy_ctx ctx = {0};
    struct addr sender = {0};
    ctx.store = st;
    ctx.auth_user = c->user;
    str_copy(ctx.client_addr, "192.0.2.7", sizeof ctx.client_addr);
    if (c->sender) {
        const char *why = NULL;
        int r = addr_parse(c->sender, strlen(c->sender), ADDR_O_ALLOW_NULL, &sender, &why);
        CHECK(r > 0, "case %zu: bad test sender %s: %s", i, c->sender, why ? why : "");
        ctx.sender = &sender;
    }
    if (c->headers) {
        ctx.headers = c->headers;
        ctx.headers_len = strlen(c->headers);
    }
    size_t off = log_size();
    struct result res = {0};
    const struct policy_check *chk = &policy_check_sender_login;
    CHECK(chk->stages & (1u << c->stage), "case %zu: stage not run", i);
    CHECK(!chk->judges_client_ip, "judges the client IP");
    void *h = chk->start(&ctx, c->stage, run_done, &res);
    res.start_returned = 1;
    CHECK(h != NULL, "case %zu: no handle", i);
    /* The worker pool's completion event is only active while a job is done: poll. */
    for (int t = 0; !res.called && t < 5000; t++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (!res.called) usleep(1000);
    }
    CHECK(res.called == 1 && !res.early, "case %zu: done called %d times, early %d", i, res.called,
          res.early);
    CHECK(res.v.kind == c->want, "case %zu: kind %d want %d (%d %s %s)", i, res.v.kind, c->want,
          res.v.code, res.v.enh, res.v.text);
    if (c->want == POLICY_REJECT) {
        CHECK(res.v.code == c->code && strcmp(res.v.enh, "5.7.1") == 0, "case %zu: %d %s", i,
              res.v.code, res.v.enh);
        CHECK(strcmp(res.v.text, c->text) == 0, "case %zu: text \"%s\" want \"%s\"", i, res.v.text,
              c->text);
    }
    char *log = log_since(off);
    if (c->log)
        CHECK(strstr(log, c->log) != NULL, "case %zu: log lacks \"%s\": %s", i, c->log, log);
    else
        CHECK(strstr(log, "not owned") == NULL, "case %zu: unexpected log: %s", i, log);
    free(log);
    addr_clear(&sender);
}

/* Cancel right after start: done never runs, nothing leaks (ASan). */
static void test_cancel(struct event_base *base, struct store *st)
{
    struct addr sender = {0};
    const char *why;
    addr_parse("<v@example.test>", 16, 0, &sender, &why);
    struct policy_ctx ctx = {.store = st, .auth_user = U, .sender = &sender};
    for (int i = 0; i < 20; i++) {
        struct result res = {0};
        void *h = policy_check_sender_login.start(&ctx, POLICY_MAIL, run_done, &res);
        if (i % 2) usleep(2000); /* let the worker run it, or even finish */
        policy_check_sender_login.cancel(h);
        event_base_loop(base, EVLOOP_NONBLOCK);
        CHECK(res.called == 0, "cancel %d: done ran", i);
    }
    addr_clear(&sender);
}

static void setup(struct store *st)
{
    char err[256];
    static const char *const steps[][3] = {
        {"domain", "example.test", NULL},    {"domain", "logdom.test", NULL},
        {"domain", "offdom.test", NULL},     {"mailbox", U, NULL},
        {"mailbox", "v@example.test", NULL}, {"mailbox", "l@logdom.test", NULL},
        {"mailbox", "o@offdom.test", NULL},  {"alias", "info@example.test", U},
        {"grant", U, "boss@other.example"},  {"grant", U, "@granted.example"},
        {"binding", "logdom.test", "log"},   {"binding", "offdom.test", "off"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        const char *k = steps[i][0], *a = steps[i][1], *b = steps[i][2];
        int r = strcmp(k, "domain") == 0    ? store_domain_add(st, a, err, sizeof err)
                : strcmp(k, "mailbox") == 0 ? store_mailbox_add(st, a, "pw", 0, err, sizeof err)
                : strcmp(k, "alias") == 0   ? store_alias_add(st, a, b, err, sizeof err)
                : strcmp(k, "grant") == 0   ? store_grant_add(st, a, b, err, sizeof err)
                                            : store_domain_set_binding(st, a, b, err, sizeof err);
        CHECK(r == 0, "setup %zu (%s %s): %s", i, k, a, err);
    }
}

int main(void)
{
    char tmpl[] = "/tmp/kurier-test-sender-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) {
        perror("mkdtemp");
        return 1;
    }
    /* Log lines go to stderr: keep them in a file to look for the "log" mode warning. */
    int n = snprintf(logpath, sizeof logpath, "%s/log", dir);
    int saved = dup(STDERR_FILENO);
    if (n < 0 || (size_t)n >= sizeof logpath || !freopen(logpath, "w", stderr)) {
        perror("log file");
        return 1;
    }
    log_init("stderr", "kurier", LOG_LV_INFO);

    char *path = xasprintf("%s/kurier.db", dir);
    char err[256];
    struct store *st = store_open(path, 1, NULL, err, sizeof err);
    CHECK(st != NULL, "open: %s", err);
    evthread_use_pthreads(); /* the workers wake the loop from their threads */
    struct event_base *base = event_base_new();
    CHECK(base && work_init(base, 2) == 0, "work_init");
    if (st && base) {
        setup(st);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            run_case(base, st, i, &cases[i]);
        test_cancel(base, st);
    }
    work_shutdown();
    if (base) event_base_free(base);
    store_free(st);
    free(path);

    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char *cmd = xasprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", dir);
    free(cmd);
    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0;
}
