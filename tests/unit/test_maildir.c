/* test_maildir.c: Maildir delivery into a temporary root: file names and content,
 * CRLF -> LF, quota refusal, bad local parts, usage. */
#include "core/compat.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "deliver/deliver.h"

#include "check.h"

static char root[] = "/tmp/test_maildir.XXXXXX";

static int content_fd(const char *text, size_t len)
{
    char path[] = "/tmp/test_maildir_msg.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    unlink(path);
    if (write_all(fd, text, len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The one file in dir (new name into out), or -1 when not exactly one. */
static int only_file(const char *dir, char *out, size_t outsize)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        n++;
        str_copy(out, de->d_name, outsize);
    }
    closedir(d);
    return n == 1 ? 0 : -1;
}

static enum deliver_status deliver(const char *addr, const char *text, long long quota,
                                   struct deliver_result *res)
{
    int fd = content_fd(text, strlen(text));
    struct deliver_maildir_req req = {
        .root = root,
        .address = addr,
        .quota = quota,
        .return_path = "alice@example.com",
        .orig_rcpt = addr,
        .content_fd = fd,
        .content_len = (long long)strlen(text),
        .hostname = "mx1.example/x:y",
    };
    enum deliver_status st = deliver_maildir(&req, res);
    close(fd);
    return st;
}

static void test_deliver(void)
{
    struct deliver_result res;
    const char *msg = "Subject: test\r\nFrom: a@b\r\n\r\nline 1\r\nbare\rcr\r\n.dot\r\n";
    CHECK(deliver("bob@Example.ORG", msg, 0, &res) == DELIVER_OK, "deliver: %s %s", res.dsn,
          res.text);
    CHECK(strcmp(res.dsn, "2.0.0") == 0 && strcmp(res.relay, "local") == 0 &&
              strcmp(res.text, "delivered to maildir") == 0,
          "result %s %s %s", res.dsn, res.relay, res.text);
    char dir[600], name[512];
    snprintf(dir, sizeof dir, "%s/example.org/bob/Maildir/new", root);
    CHECK(only_file(dir, name, sizeof name) == 0, "one file in %s", dir);
    const char *want = "Return-Path: <alice@example.com>\n"
                       "Delivered-To: bob@Example.ORG\n"
                       "Subject: test\nFrom: a@b\n\nline 1\nbare\rcr\n.dot\n";
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len = 0;
    char *got = file_read(path, &len);
    CHECK(got && strcmp(got, want) == 0, "content:\n%s", got ? got : "(none)");
    char sz[64];
    snprintf(sz, sizeof sz, ",S=%zu", strlen(want));
    CHECK(strstr(name, sz) != NULL, "name %s lacks %s", name, sz);
    CHECK(strstr(name, "mx1.example\\057x\\072y") != NULL, "host not encoded in %s", name);
    CHECK(strstr(name, ".M") && strstr(name, "P") && strstr(name, "Q"), "name shape %s", name);
    free(got);
    for (const char *sub = "cur"; sub; sub = strcmp(sub, "cur") == 0 ? "tmp" : NULL) {
        char d[600];
        snprintf(d, sizeof d, "%s/example.org/bob/Maildir/%s", root, sub);
        struct stat st;
        CHECK(stat(d, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700,
              "%s missing or mode %o", d, (unsigned)(st.st_mode & 0777));
        CHECK(only_file(d, name, sizeof name) == -1, "%s not empty", d);
    }
    long long used = maildir_usage(root, "bob@example.org");
    CHECK(used == (long long)strlen(want), "usage %lld", used);
    CHECK(maildir_usage(root, "nobody@example.org") == 0, "usage of missing maildir");
    /* a second delivery gets another name */
    CHECK(deliver("bob@example.org", "x\r\n", 0, &res) == DELIVER_OK, "second: %s", res.text);
    used = maildir_usage(root, "bob@example.org");
    CHECK(used == (long long)strlen(want) + (long long)strlen("Return-Path: <alice@example.com>\n"
                                                              "Delivered-To: bob@example.org\nx\n"),
          "usage after two %lld", used);
    /* a message without a final CRLF and a null sender */
    int fd = content_fd("no newline", 10);
    struct deliver_maildir_req req = {.root = root,
                                      .address = "carol@example.org",
                                      .return_path = "",
                                      .content_fd = fd,
                                      .content_len = 10,
                                      .hostname = "h"};
    CHECK(deliver_maildir(&req, &res) == DELIVER_OK, "carol: %s", res.text);
    close(fd);
    snprintf(dir, sizeof dir, "%s/example.org/carol/Maildir/new", root);
    CHECK(only_file(dir, name, sizeof name) == 0, "carol file");
    snprintf(path, sizeof path, "%s/%s", dir, name);
    got = file_read(path, NULL);
    CHECK(got && strcmp(got, "Return-Path: <>\nDelivered-To: carol@example.org\nno newline") == 0,
          "carol content %s", got ? got : "(none)");
    free(got);

    /* the queued message is a stretch of a spool segment: only it is delivered */
    const char *seg = "HEADER-BEFORE"
                      "Subject: in a segment\r\n\r\nhi\r\n"
                      "NEXT-RECORD";
    fd = content_fd(seg, strlen(seg));
    struct deliver_maildir_req wreq = {.root = root,
                                       .address = "dave@example.org",
                                       .return_path = "",
                                       .content_fd = fd,
                                       .content_off = 13,
                                       .content_len = 29,
                                       .hostname = "h"};
    CHECK(deliver_maildir(&wreq, &res) == DELIVER_OK, "dave: %s", res.text);
    close(fd);
    snprintf(dir, sizeof dir, "%s/example.org/dave/Maildir/new", root);
    CHECK(only_file(dir, name, sizeof name) == 0, "dave file");
    snprintf(path, sizeof path, "%s/%s", dir, name);
    got = file_read(path, NULL);
    CHECK(got && strcmp(got, "Return-Path: <>\nDelivered-To: dave@example.org\n"
                             "Subject: in a segment\n\nhi\n") == 0,
          "dave content %s", got ? got : "(none)");
    free(got);
}

static void test_quota(void)
{
    struct deliver_result res;
    char big[2048];
    memset(big, 'a', sizeof big);
    big[sizeof big - 1] = '\0';
    CHECK(deliver("q@example.org", big, 100000, &res) == DELIVER_OK, "first fits: %s", res.text);
    CHECK(deliver("q@example.org", big, 3000, &res) == DELIVER_TEMP &&
              strcmp(res.dsn, "4.2.2") == 0 && strstr(res.text, "mailbox full"),
          "quota: %d %s %s", res.status, res.dsn, res.text);
    CHECK(deliver("q@example.org", "small\r\n", 3000, &res) == DELIVER_OK, "small fits: %s",
          res.text);
}

static void test_bad_local(void)
{
    static const char *bad[] = {
        "../x@example.org",
        "a/b@example.org",
        ".@example.org",
        "..@example.org",
        ".hidden@example.org",
        "@example.org",
        "x@../etc",
        "x@",
        "noat",
        "x@a/b",
        "x@.",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct deliver_result res;
        CHECK(deliver(bad[i], "x\r\n", 0, &res) == DELIVER_PERM && strcmp(res.dsn, "5.1.3") == 0,
              "%s: %d %s", bad[i], res.status, res.dsn);
        CHECK(maildir_usage(root, bad[i]) == -1, "usage of %s", bad[i]);
    }
    /* disk errors are temporary */
    char file[600];
    snprintf(file, sizeof file, "%s/blocked.example", root);
    FILE *f = fopen(file, "w");
    if (f) fclose(f);
    struct deliver_result res;
    CHECK(deliver("x@blocked.example", "x\r\n", 0, &res) == DELIVER_TEMP &&
              strcmp(res.dsn, "4.3.0") == 0,
          "not a dir: %d %s %s", res.status, res.dsn, res.text);
}

int main(void)
{
    log_init("stderr", "test", LOG_LV_WARN);
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_deliver();
    test_quota();
    test_bad_local();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) printf("cannot remove %s\n", root);
    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0;
}
