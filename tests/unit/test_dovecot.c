/* test_dovecot.c: Dovecot auth-client protocol (auth/dovecot.c): table tests of the
 * handshake and reply parsers and the request line, then dovecot_auth_check against
 * a scripted fake server on a unix socket (reconnects, temporary failures). */
#include "core/compat.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/core.h"
#include "auth/auth.h"

#include "check.h"

/* --- handshake ----------------------------------------------------------------- */

struct hs_case {
    const char *lines[8]; /* fed in order until one returns non-zero */
    int ret;              /* of the last line fed */
    const char *err;      /* substring of err when ret is -1 */
};

static const struct hs_case hs_cases[] = {
    {{"VERSION\t1\t2", "MECH\tPLAIN\tplaintext", "MECH\tLOGIN\tplaintext", "SPID\t9157", "CUID\t1",
      "COOKIE\t5c7742a10f81074391de2bb530232253", "DONE"},
     1,
     NULL},
    {{"VERSION\t1\t3\r", "MECH\tplain", "DONE\r"}, 1, NULL}, /* CR tolerated, mech any case */
    {{"VERSION\t1\t2", "MECH\tPLAIN", "FUTURE\tthing", "DONE"}, 1, NULL},
    {{"VERSION\t2\t0"}, -1, "unsupported protocol version"},
    {{"VERSION\tx\t0"}, -1, "unsupported protocol version"},
    {{"VERSION"}, -1, "unsupported protocol version"},
    {{"VERSION\t1\t2", "MECH\tLOGIN\tplaintext", "DONE"}, -1, "PLAIN is not offered"},
    {{"VERSION\t1\t2", "MECH\tPLAINX", "DONE"}, -1, "PLAIN is not offered"},
    {{"MECH\tPLAIN", "DONE"}, -1, "without a VERSION"},
    {{"", "VERSION\t1\t2", "MECH\tPLAIN", "", "DONE"}, 1, NULL},
    {{"VERSION\t1\t2", "MECH\tPLAIN", "DONEX"}, 0, NULL},
};

static void test_handshake(void)
{
    for (size_t i = 0; i < sizeof hs_cases / sizeof hs_cases[0]; i++) {
        const struct hs_case *c = &hs_cases[i];
        struct dovecot_handshake h = {0};
        char err[200] = "";
        int r = 0;
        for (size_t j = 0; j < 8 && c->lines[j] && r == 0; j++)
            r = dovecot_handshake_line(&h, c->lines[j], strlen(c->lines[j]), err, sizeof err);
        CHECK(r == c->ret, "handshake case %zu: got %d want %d (%s)", i, r, c->ret, err);
        if (c->err) CHECK(strstr(err, c->err) != NULL, "handshake case %zu: err \"%s\"", i, err);
    }
}

/* --- replies ------------------------------------------------------------------- */

struct reply_case {
    const char *line;
    unsigned id;
    enum dovecot_reply ret;
    const char *reason;
};

static const struct reply_case reply_cases[] = {
    {"OK\t1\tuser=user@example.test", 1, DOVECOT_R_OK, ""},
    {"OK\t7", 7, DOVECOT_R_OK, ""},
    {"OK\t1\r", 1, DOVECOT_R_OK, ""},
    {"FAIL\t1\tuser=user@example.test", 1, DOVECOT_R_FAIL, ""},
    {"FAIL\t2\tcode=invalid_base64\treason=Invalid base64 data in initial response", 2,
     DOVECOT_R_FAIL, "Invalid base64 data in initial response"},
    {"FAIL\t3\ttemp", 3, DOVECOT_R_TEMPFAIL, ""},
    {"FAIL\t3\tcode=temp_fail\treason=passdb down", 3, DOVECOT_R_TEMPFAIL, "passdb down"},
    {"FAIL\t3\tuser=x\treason=a\001tb\001nc\0011d", 3, DOVECOT_R_FAIL, "a\tb\nc\001d"},
    {"FAIL\t3\ttemporary", 3, DOVECOT_R_FAIL, ""}, /* only the exact flag counts */
    {"OK\t3\ttemp", 3, DOVECOT_R_OK, ""},          /* temp means nothing on OK */
    {"CONT\t4\t", 4, DOVECOT_R_CONT, ""},
    {"CONT\t4\tcmVzcG9uc2U=", 4, DOVECOT_R_CONT, ""},
    {"OK\t2", 1, DOVECOT_R_OTHER, ""}, /* another request */
    {"FAIL\t12", 1, DOVECOT_R_OTHER, ""},
    {"SPID\t12", 1, DOVECOT_R_OTHER, ""},
    {"", 1, DOVECOT_R_OTHER, ""},
    {"ok\t1", 1, DOVECOT_R_OTHER, ""}, /* commands are case-sensitive */
    {"OK", 1, DOVECOT_R_BAD, ""},
    {"OK\t", 1, DOVECOT_R_BAD, ""},
    {"OK\tx", 1, DOVECOT_R_BAD, ""},
    {"OK\t-1", 1, DOVECOT_R_BAD, ""},
    {"FAIL\t99999999999", 1, DOVECOT_R_BAD, ""},
};

static void test_replies(void)
{
    for (size_t i = 0; i < sizeof reply_cases / sizeof reply_cases[0]; i++) {
        const struct reply_case *c = &reply_cases[i];
        char reason[64] = "junk";
        enum dovecot_reply r =
            dovecot_reply_parse(c->line, strlen(c->line), c->id, reason, sizeof reason);
        CHECK(r == c->ret, "reply case %zu \"%s\": got %d want %d", i, c->line, r, c->ret);
        CHECK(strcmp(reason, c->reason) == 0, "reply case %zu: reason \"%s\"", i, reason);
    }
    /* Only len bytes count: a reply cut short before its id is bad. */
    CHECK(dovecot_reply_parse("OK\t1", 2, 1, NULL, 0) == DOVECOT_R_BAD, "len respected");
    char small[4];
    CHECK(dovecot_reply_parse("FAIL\t1\treason=long reason", 25, 1, small, sizeof small) ==
                  DOVECOT_R_FAIL &&
              strcmp(small, "lon") == 0,
          "reason truncated: \"%s\"", small);
}

/* --- requests ------------------------------------------------------------------ */

static void test_requests(void)
{
    struct {
        unsigned id;
        const char *user, *pass, *ip, *want;
    } cases[] = {
        {1, "user@example.test", "secret", "127.0.0.1",
         "AUTH\t1\tPLAIN\tservice=smtp\tnologin\trip=127.0.0.1\tsecured\tno-penalty\t"
         "resp=AHVzZXJAZXhhbXBsZS50ZXN0AHNlY3JldA==\n"},
        {42, "a", "b", "2001:db8::1",
         "AUTH\t42\tPLAIN\tservice=smtp\tnologin\trip=2001:db8::1\tsecured\tno-penalty\tresp="
         "AGEAYg==\n"},
        {3, "ab", "c", NULL,
         "AUTH\t3\tPLAIN\tservice=smtp\tnologin\tsecured\tno-penalty\tresp=AGFiAGM=\n"},
        {3, "ab", "c", "",
         "AUTH\t3\tPLAIN\tservice=smtp\tnologin\tsecured\tno-penalty\tresp=AGFiAGM=\n"},
        /* anything but an address stays out of the TAB-separated line */
        {3, "ab", "c", "1.2.3.4\tuser=x",
         "AUTH\t3\tPLAIN\tservice=smtp\tnologin\tsecured\tno-penalty\tresp=AGFiAGM=\n"},
        {3, "ab", "c", "unix",
         "AUTH\t3\tPLAIN\tservice=smtp\tnologin\tsecured\tno-penalty\tresp=AGFiAGM=\n"},
        {0, "", "", NULL,
         "AUTH\t0\tPLAIN\tservice=smtp\tnologin\tsecured\tno-penalty\tresp=AAA=\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *req = dovecot_request_new(cases[i].id, cases[i].user, cases[i].pass, cases[i].ip);
        CHECK(strcmp(req, cases[i].want) == 0, "request case %zu: %s", i, req);
        free(req);
    }
    /* Tabs and newlines in user or password only ever appear base64-encoded. */
    char *req = dovecot_request_new(9, "us\ter\n", "pa\tss\n", "::1");
    size_t tabs = 0, nls = 0;
    for (const char *p = req; *p; p++) {
        tabs += *p == '\t';
        nls += *p == '\n';
    }
    CHECK(tabs == 8 && nls == 1, "request with TAB/LF in credentials: %zu tabs %zu LFs", tabs, nls);
    free(req);
}

/* --- against a scripted server -------------------------------------------------- */

enum fake_mode {
    FAKE_GOOD,       /* handshake, then OK for "secret", FAIL otherwise */
    FAKE_TEMP,       /* handshake, then FAIL temp */
    FAKE_HANGUP,     /* handshake, then close after reading the request */
    FAKE_NO_PLAIN,   /* handshake without PLAIN */
    FAKE_SPLIT_NOISE /* handshake byte by byte, unrelated lines before the answer */
};

#define FAKE_CONNS 16

struct fake;
struct fake_conn {
    struct fake *f;
    int fd;
    pthread_t th;
};

struct fake {
    char path[108];
    int lfd;
    enum fake_mode mode;
    int conns; /* connections accepted, each served by its own thread */
    struct fake_conn c[FAKE_CONNS];
    pthread_t th;
};

static void fake_send(int fd, const char *s, int bytewise)
{
    size_t len = strlen(s);
    if (!bytewise) {
        (void)!write(fd, s, len);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        (void)!write(fd, s + i, 1);
        usleep(200);
    }
}

/* Serve one connection; returns when the client closes it. */
static void fake_serve(struct fake *f, int fd)
{
    static const char hello[] = "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n"
                                "SPID\t1\nCUID\t1\nCOOKIE\t00\nDONE\n";
    if (f->mode == FAKE_NO_PLAIN)
        fake_send(fd, "VERSION\t1\t2\nMECH\tLOGIN\tplaintext\nDONE\n", 0);
    else
        fake_send(fd, hello, f->mode == FAKE_SPLIT_NOISE);
    char buf[4096];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0) return;
        len += (size_t)n;
        buf[len] = '\0';
        char *nl;
        while ((nl = strchr(buf, '\n'))) {
            *nl = '\0';
            unsigned id;
            if (sscanf(buf, "AUTH\t%u\t", &id) == 1) {
                char out[256];
                const char *good = "resp=AHVzZXJAZXhhbXBsZS50ZXN0AHNlY3JldA==";
                if (f->mode == FAKE_HANGUP) return;
                if (f->mode == FAKE_TEMP)
                    snprintf(out, sizeof out, "FAIL\t%u\tcode=temp_fail\treason=ldap down\n", id);
                else if (strstr(buf, good))
                    snprintf(out, sizeof out, "%sOK\t%u\tuser=user@example.test\n",
                             f->mode == FAKE_SPLIT_NOISE ? "OK\t999\nNOTICE\tx\n" : "", id);
                else
                    snprintf(out, sizeof out, "FAIL\t%u\tuser=user@example.test\n", id);
                fake_send(fd, out, f->mode == FAKE_SPLIT_NOISE);
            }
            size_t used = (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, len - used + 1);
            len -= used;
        }
    }
}

static void *fake_conn_main(void *arg)
{
    struct fake_conn *c = arg;
    fake_serve(c->f, c->fd);
    shutdown(c->fd, SHUT_RDWR);
    return NULL;
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    for (;;) {
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0) return NULL; /* listener shut down */
        if (f->conns == FAKE_CONNS) {
            close(fd);
            continue;
        }
        struct fake_conn *c = &f->c[f->conns++];
        c->f = f;
        c->fd = fd;
        pthread_create(&c->th, NULL, fake_conn_main, c);
    }
}

static void fake_start(struct fake *f, const char *path, enum fake_mode mode)
{
    memset(f, 0, sizeof *f);
    str_copy(f->path, path, sizeof f->path);
    f->mode = mode;
    unlink(path);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    str_copy(sa.sun_path, path, sizeof sa.sun_path);
    f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(f->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(f->lfd, 8) != 0) {
        printf("fake server: %s\n", strerror(errno));
        exit(1);
    }
    pthread_create(&f->th, NULL, fake_main, f);
}

static void fake_stop(struct fake *f)
{
    shutdown(f->lfd, SHUT_RDWR);
    pthread_join(f->th, NULL);
    close(f->lfd);
    for (int i = 0; i < f->conns; i++) { /* as a server that exits: every peer sees EOF */
        shutdown(f->c[i].fd, SHUT_RDWR);
        pthread_join(f->c[i].th, NULL);
        close(f->c[i].fd);
    }
    unlink(f->path);
}

static void test_live(void)
{
    char dir[] = "/tmp/kurier-dovecot-XXXXXX";
    if (!mkdtemp(dir)) {
        printf("mkdtemp: %s\n", strerror(errno));
        exit(1);
    }
    char path[100];
    snprintf(path, sizeof path, "%s/auth-client", dir);
    char err[512];
    struct fake f;

    struct dovecot_auth *d = dovecot_auth_new(path);
    err[0] = '\0';
    CHECK(dovecot_auth_check(d, "user@example.test", "secret", "127.0.0.1", err, sizeof err) ==
                  -1 &&
              strstr(err, path) && strstr(err, "connect"),
          "no server: -1 with the reason: \"%s\"", err);

    fake_start(&f, path, FAKE_GOOD);
    CHECK(dovecot_auth_check(d, "user@example.test", "secret", "127.0.0.1", err, sizeof err) == 1,
          "good password: %s", err);
    CHECK(dovecot_auth_check(d, "user@example.test", "wrong", "127.0.0.1", err, sizeof err) == 0,
          "bad password");
    CHECK(dovecot_auth_check(d, "user@example.test", "secret", NULL, err, sizeof err) == 1,
          "good again, no client address");
    CHECK(f.conns == 1, "one connection reused for three checks: %d", f.conns);
    fake_stop(&f);

    /* The pooled connection died with the server; a new server answers the retry. */
    fake_start(&f, path, FAKE_GOOD);
    CHECK(dovecot_auth_check(d, "user@example.test", "secret", "::1", err, sizeof err) == 1,
          "reconnect after server restart: %s", err);
    fake_stop(&f);

    fake_start(&f, path, FAKE_TEMP);
    CHECK(dovecot_auth_check(d, "user@example.test", "secret", "::1", err, sizeof err) == -1 &&
              strstr(err, "temporary failure: ldap down"),
          "FAIL temp: \"%s\"", err);
    fake_stop(&f);

    fake_start(&f, path, FAKE_HANGUP);
    CHECK(dovecot_auth_check(d, "user@example.test", "secret", "::1", err, sizeof err) == -1 &&
              strstr(err, "closed"),
          "hang-up: \"%s\"", err);
    fake_stop(&f);

    fake_start(&f, path, FAKE_NO_PLAIN);
    CHECK(dovecot_auth_check(d, "user@example.test", "secret", "::1", err, sizeof err) == -1 &&
              strstr(err, "PLAIN is not offered"),
          "no PLAIN: \"%s\"", err);
    fake_stop(&f);

    fake_start(&f, path, FAKE_SPLIT_NOISE);
    CHECK(dovecot_auth_check(d, "user@example.test", "secret", "::1", err, sizeof err) == 1,
          "split reads and other replies skipped: %s", err);
    fake_stop(&f);
    dovecot_auth_free(d);
    dovecot_auth_free(NULL);
    rmdir(dir);
}

/* Several threads at once share one handle. */
struct thread_arg {
    struct dovecot_auth *d;
    int ok;
};

static void *checker(void *arg)
{
    struct thread_arg *t = arg;
    char err[256];
    for (int i = 0; i < 50; i++) {
        int good = i % 3 != 0;
        int r = dovecot_auth_check(t->d, "user@example.test", good ? "secret" : "nope", "192.0.2.1",
                                   err, sizeof err);
        if (r == (good ? 1 : 0)) t->ok++;
    }
    return NULL;
}

static void test_threads(void)
{
    char dir[] = "/tmp/kurier-dovecot-XXXXXX";
    if (!mkdtemp(dir)) exit(1);
    char path[100];
    snprintf(path, sizeof path, "%s/auth-client", dir);
    struct fake f;
    fake_start(&f, path, FAKE_GOOD);
    struct dovecot_auth *d = dovecot_auth_new(path);
    pthread_t th[4];
    struct thread_arg ta[4];
    for (int i = 0; i < 4; i++) {
        ta[i] = (struct thread_arg){d, 0};
        pthread_create(&th[i], NULL, checker, &ta[i]);
    }
    int ok = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok += ta[i].ok;
    }
    CHECK(ok == 200, "4 threads x 50 checks: %d right", ok);
    CHECK(f.conns >= 1 && f.conns <= 4, "at most one connection per thread: %d", f.conns);
    dovecot_auth_free(d);
    fake_stop(&f);
    rmdir(dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    test_handshake();
    test_replies();
    test_requests();
    test_live();
    test_threads();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
