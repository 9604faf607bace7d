/* test_sched.c: the scheduler on a temporary spool, SQLite directory and event loop:
 * local delivery, a deferred remote recipient, hold/release, delete, maildrop pickup
 * and the control socket. */
#include "core/compat.h"

#include <dirent.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/control.h"
#include "core/core.h"
#include "queue/queue.h"
#include "store/store.h"

static int passed, failed;
static struct event_base *base;
static struct spool *spool;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            passed++;                                                                              \
        } else {                                                                                   \
            failed++;                                                                              \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

static void on_tick(evutil_socket_t fd, short what, void *arg) {}

/* Run the loop until pred(arg) holds or secs passed. 1 when it held. */
static int wait_for(int (*pred)(void *), void *arg, double secs)
{
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 20000};
    event_add(tick, &tv);
    double end = time_mono() + secs;
    int ok;
    while (!(ok = pred(arg)) && time_mono() < end)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(tick);
    return ok;
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

struct count_arg {
    const char *dir;
    int want;
};
static int pred_files(void *arg)
{
    struct count_arg *c = arg;
    return count_files(c->dir) >= c->want;
}

static int pred_flag(void *arg)
{
    return *(int *)arg != 0;
}

static int pred_gone(void *arg)
{
    char err[256];
    struct spool_env *e = spool_load(spool, arg, err, sizeof err);
    spool_env_free(e);
    return e == NULL;
}

static int pred_attempts1(void *arg)
{
    char err[256];
    struct spool_env *e = spool_load(spool, arg, err, sizeof err);
    int ok = e && e->nrcpts == 1 && e->rcpts[0].attempts == 1;
    spool_env_free(e);
    return ok;
}

static int pred_attempts2(void *arg)
{
    char err[256];
    struct spool_env *e = spool_load(spool, arg, err, sizeof err);
    int ok = e && e->nrcpts == 1 && e->rcpts[0].attempts == 2;
    spool_env_free(e);
    return ok;
}

static int want_held;
static int pred_held(void *arg)
{
    char err[256];
    struct spool_env *e = spool_load(spool, arg, err, sizeof err);
    int ok = e && e->held == want_held;
    spool_env_free(e);
    return ok;
}

struct commit_arg {
    struct queue *q;
    char id[QUEUE_ID_LEN + 1];
    int done, ok;
};

static void commit_done(void *arg, int ok)
{
    struct commit_arg *c = arg;
    c->done = 1;
    c->ok = ok;
    if (ok) queue_add(c->q, c->id);
}

/* Queue a message from sender to rcpt; returns its ID in id (empty on failure). */
static void submit_at(struct queue *q, const char *sender, const char *rcpt, time_t arrival,
                      char *id)
{
    id[0] = '\0';
    struct spool_msg *m = spool_msg_new(spool);
    if (!m) return;
    const char *msg = "Subject: test\r\n\r\nhello\r\n";
    spool_msg_write(m, msg, strlen(msg));
    struct spool_env *env = xcalloc(1, sizeof *env);
    env->sender = xstrdup(sender);
    env->arrival = arrival;
    env->proto = xstrdup("ESMTP");
    env->client_name = xstrdup("client.example");
    env->client_addr = xstrdup("192.0.2.1");
    env->helo = xstrdup("client.example");
    env->rcpts = xcalloc(1, sizeof *env->rcpts);
    env->nrcpts = 1;
    env->rcpts[0].addr = xstrdup(rcpt);
    env->rcpts[0].orig = xstrdup(rcpt);
    struct commit_arg c = {.q = q};
    str_copy(c.id, spool_msg_id(m), sizeof c.id);
    spool_msg_commit(m, env, commit_done, &c);
    wait_for(pred_flag, &c.done, 10);
    if (c.ok) str_copy(id, c.id, QUEUE_ID_LEN + 1);
    spool_env_free(env);
}

static void submit(struct queue *q, const char *sender, const char *rcpt, char *id)
{
    submit_at(q, sender, rcpt, time(NULL), id);
}

/* --- control socket client on a thread (the loop runs meanwhile) ---------- */
struct ctl_req {
    const char *path, *req;
    char reply[256];
    int done;
};

static void *ctl_thread(void *arg)
{
    struct ctl_req *r = arg;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    str_copy(sun.sun_path, r->path, sizeof sun.sun_path);
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0) {
        char line[600];
        int n = snprintf(line, sizeof line, "%s\n", r->req);
        if (n > 0) write_all(fd, line, (size_t)n);
        size_t got = 0;
        ssize_t k;
        while (got + 1 < sizeof r->reply &&
               (k = read(fd, r->reply + got, sizeof r->reply - 1 - got)) > 0)
            got += (size_t)k;
        r->reply[got] = '\0';
        char *nl = strchr(r->reply, '\n');
        if (nl) *nl = '\0';
    } else {
        str_copy(r->reply, "connect failed", sizeof r->reply);
    }
    close(fd);
    __atomic_store_n(&r->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static int pred_ctl(void *arg)
{
    return __atomic_load_n(&((struct ctl_req *)arg)->done, __ATOMIC_SEQ_CST);
}

static void ctl(const char *path, const char *req, char *reply, size_t size)
{
    struct ctl_req r = {.path = path, .req = req};
    pthread_t t;
    pthread_create(&t, NULL, ctl_thread, &r);
    wait_for(pred_ctl, &r, 10);
    pthread_join(t, NULL);
    str_copy(reply, r.reply, size);
}

static int reloads;
static int reload_cb(void *arg)
{
    reloads++;
    return 0;
}

int main(void)
{
    char tmpl[] = "/tmp/kurier-sched-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) {
        printf("cannot create temp dir\n0 passed, 1 failed\n");
        return 1;
    }
    log_init("stderr", "kurier", getenv("TEST_VERBOSE") ? LOG_LV_INFO : LOG_LV_ERR);
    evthread_use_pthreads();
    base = event_base_new();
    work_init(base, 2);

    char err[256] = "";
    char *spool_path = xasprintf("%s/spool", dir);
    spool = spool_open(spool_path, err, sizeof err);
    CHECK(spool != NULL, "spool_open: %s", err);
    char *db = xasprintf("%s/kurier.db", dir);
    struct store *st = store_open(db, 1, NULL, err, sizeof err);
    CHECK(st != NULL, "store_open: %s", err);
    if (!spool || !st) goto out;
    CHECK(store_domain_add(st, "example.test", err, sizeof err) == 0, "domain: %s", err);
    CHECK(store_mailbox_add(st, "bob@example.test", "secret", 0, err, sizeof err) == 0,
          "mailbox: %s", err);

    struct kconf conf;
    memset(&conf, 0, sizeof conf);
    conf.hostname = "test.example";
    conf.maildir_root = xasprintf("%s/mail", dir);
    conf.workers = 2;
    conf.retry_first = 300;
    conf.retry_backoff = 2.0;
    conf.retry_max = 4 * 3600;
    conf.lifetime = 5 * 86400;
    conf.maildrop_scan = 1;
    conf.message_size = 1024 * 1024;

    struct queue *q = queue_new(base, &conf, spool, st);
    CHECK(q != NULL, "queue_new");

    /* 1. local delivery: the Maildir file appears and the message leaves the queue */
    char id[QUEUE_ID_LEN + 1];
    submit(q, "alice@remote.example", "bob@example.test", id);
    CHECK(id[0], "commit failed");
    char *newdir = xasprintf("%s/example.test/bob/Maildir/new", conf.maildir_root);
    struct count_arg ca = {newdir, 1};
    CHECK(wait_for(pred_files, &ca, 10), "no file in %s", newdir);
    CHECK(wait_for(pred_gone, id, 10), "%s still queued after delivery", id);

    /* 2. a remote recipient is deferred: stays queued with attempts=1 */
    char rid[QUEUE_ID_LEN + 1];
    submit(q, "bob@example.test", "someone@remote.example", rid);
    CHECK(rid[0], "commit failed");
    CHECK(wait_for(pred_attempts1, rid, 10), "%s not deferred once", rid);
    struct spool_env *e = spool_load(spool, rid, err, sizeof err);
    CHECK(e && e->rcpts[0].state == RCPT_ST_QUEUED && e->rcpts[0].next_try > time(NULL) &&
              strcmp(e->rcpts[0].dsn, "4.4.0") == 0,
          "deferred state wrong");
    spool_env_free(e);

    /* 3. a restart keeps the deferred message; flush retries it at once */
    queue_free(q);
    q = queue_new(base, &conf, spool, st);
    CHECK(q != NULL, "queue_new again");
    queue_flush(q);
    CHECK(wait_for(pred_attempts2, rid, 10), "%s not retried after restart and flush", rid);

    /* 4. hold and release */
    CHECK(queue_hold(q, rid) == 0, "hold");
    want_held = 1;
    CHECK(wait_for(pred_held, rid, 10), "not held");
    /* what the scheduler knows wins over a caller's (older) read of the envelope */
    CHECK(queue_release(q, rid, 0) == 0, "release");
    want_held = 0;
    CHECK(wait_for(pred_held, rid, 10), "not released");
    CHECK(queue_release(q, rid, 1) == 1, "release of a released message");
    CHECK(queue_hold(q, "NOSUCHID") == -1, "hold unknown");
    CHECK(queue_release(q, "NOSUCHID", 1) == -1, "release unknown");

    /* 5. flush while deleting: the delete waits for the delivery in flight */
    queue_flush(q);

    /* 5b. delete */
    CHECK(queue_delete(q, "NOSUCHID") == -1, "delete unknown");
    CHECK(queue_delete(q, rid) == 0, "delete");
    CHECK(wait_for(pred_gone, rid, 10), "%s still queued after delete", rid);
    CHECK(queue_delete(q, rid) == -1, "delete twice");

    /* 6. bounces: unknown mailbox at delivery time, and expiry of a deferred one */
    char bid[QUEUE_ID_LEN + 1];
    submit(q, "alice@remote.example", "nobody@example.test", bid);
    CHECK(bid[0] && wait_for(pred_gone, bid, 10), "unknown mailbox not bounced");
    submit_at(q, "alice@remote.example", "y@remote.example", time(NULL) - conf.lifetime - 10, bid);
    CHECK(bid[0] && wait_for(pred_gone, bid, 10), "expired message not bounced");

    /* 7. maildrop pickup */
    char *rcpts[] = {"bob@example.test"};
    const char *body = "Subject: from sendmail\r\n\r\nhi\r\n";
    CHECK(maildrop_write(spool_path, "carol@example.test", rcpts, 1, body, strlen(body), "carol",
                         err, sizeof err) == 0,
          "maildrop_write: %s", err);
    queue_pickup(q);
    ca.want = 2;
    CHECK(wait_for(pred_files, &ca, 10), "picked-up message not delivered");
    char *mdir = xasprintf("%s/maildrop", spool_path);
    CHECK(count_files(mdir) == 0, "maildrop file left behind");

    /* 8. control socket */
    char *sock = xasprintf("%s/control.sock", dir);
    struct control *c = control_new(base, sock, q, reload_cb, NULL);
    CHECK(c != NULL, "control_new");
    struct stat sst;
    /* anyone may connect; rights are per request (SO_PEERCRED) */
    CHECK(c && stat(sock, &sst) == 0 && (sst.st_mode & 0777) == 0666, "socket mode");
    char reply[256];
    if (c) {
        ctl(sock, "ping", reply, sizeof reply);
        CHECK(strcmp(reply, "ok pong") == 0, "ping: %s", reply);
        ctl(sock, "flush", reply, sizeof reply);
        CHECK(strcmp(reply, "ok flushed") == 0, "flush: %s", reply);
        ctl(sock, "reload", reply, sizeof reply);
        CHECK(strcmp(reply, "ok reloaded") == 0 && reloads == 1, "reload: %s", reply);
        ctl(sock, "delete 0000NOSUCH", reply, sizeof reply);
        CHECK(strcmp(reply, "error no such message 0000NOSUCH") == 0, "delete: %s", reply);
        ctl(sock, "frobnicate", reply, sizeof reply);
        CHECK(strcmp(reply, "error unknown request") == 0, "unknown: %s", reply);
        submit(q, "bob@example.test", "x@remote.example", rid);
        char req[64];
        snprintf(req, sizeof req, "hold %s", rid);
        ctl(sock, req, reply, sizeof reply);
        char want[64];
        snprintf(want, sizeof want, "ok held %s", rid);
        CHECK(strcmp(reply, want) == 0, "hold: %s", reply);
        ctl(sock, "delete ALL", reply, sizeof reply);
        CHECK(strncmp(reply, "ok deleted", 10) == 0, "delete ALL: %s", reply);
        CHECK(wait_for(pred_gone, rid, 10), "%s still queued after delete ALL", rid);
        ctl(sock, "pickup", reply, sizeof reply);
        CHECK(strcmp(reply, "ok") == 0, "pickup: %s", reply);
        control_free(c);
        CHECK(access(sock, F_OK) != 0, "socket not removed");
    }

    queue_free(q);
    free(newdir);
    free(mdir);
    free(sock);
    free(conf.maildir_root);
out:
    work_shutdown();
    store_free(st);
    spool_free(spool);
    event_base_free(base);
    char *cmd = xasprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("cannot remove %s\n", dir);
    free(cmd);
    free(spool_path);
    free(db);
    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0;
}
