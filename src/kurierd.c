/* kurierd.c: the daemon. Loads the config, binds listeners as root, drops to the
 * kurier user for good, then wires the SMTP server to the policy pipeline and the
 * spool (struct smtp_ops), and runs the loop. Signals: TERM/INT stop, HUP reloads. */
#include "core/compat.h"

#include <errno.h>
#include <glob.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/control.h"
#include "core/core.h"
#include "deliver/deliver.h"
#include "dns/dns.h"
#include "policy/policy.h"
#include "queue/queue.h"
#include "smtp/smtp.h"
#include "store/store.h"

struct daemon {
    struct event_base *base;
    const char *conf_path;
    char *conf_file;     /* conf_path as reached from the working folder (reloads) */
    char *work_lexical;  /* state_dir as configured: the working folder ... */
    char *work_physical; /* ... and where it really is (symbolic links resolved) */
    struct kconf *conf;
    struct kconf **old_confs; /* kept until exit: running sessions point into them */
    size_t nold;
    struct spool *spool;
    struct store *store;
    struct queue *queue;
    struct dns *dns;       /* for remote delivery */
    struct remote *remote; /* deliver/remote.c, handed to the scheduler */
    struct control *control;
    struct smtp_server **servers;
    struct smtp_tls **tls; /* per server, NULL without TLS */
    struct auth_limits *auth_limits;
    struct dovecot_auth *dovecot; /* auth backend dovecot (chosen at start-up), else NULL */
    char **server_addrs;          /* the address each server was bound for */
    size_t nservers;
    struct smtp_ops ops;
    struct event *ev_term, *ev_int, *ev_hup, *ev_grace, *ev_drain, *ev_deadline;
    int stopping;
};

/* After the grace period sessions end within seconds, but for those storing a
 * message: they get this many seconds before the daemon exits without their answer
 * (their message is on disk or not; the client did not get 250 either way and
 * sends it again). */
#define SHUTDOWN_COMMIT_MAX 30

/* Test hook, for tests/integration/test_session_lifecycle.py only: the environment
 * variable KURIER_TEST_DELAY="judge=MS,commit=MS" holds every policy verdict, and
 * every commit's answer (the message is on disk already), for MS milliseconds, as a
 * slow check or a slow disk would, so that a test can hang up while a session waits
 * on them. Unset: no delay. */
static struct {
    int judge, commit;
} test_delay;

static void test_delay_init(void)
{
    const char *p = getenv("KURIER_TEST_DELAY");
    while (p && *p) {
        int *slot = strncmp(p, "judge=", 6) == 0    ? &test_delay.judge
                    : strncmp(p, "commit=", 7) == 0 ? &test_delay.commit
                                                    : NULL;
        const char *eq = strchr(p, '=');
        if (slot && eq) *slot = atoi(eq + 1);
        p = strchr(p, ',');
        if (p) p++;
    }
    if (test_delay.judge || test_delay.commit)
        log_warn("kurierd", "KURIER_TEST_DELAY: verdicts wait %d ms, commits %d ms (tests only)",
                 test_delay.judge, test_delay.commit);
}

static struct event *test_hold(struct event_base *base, int ms,
                               void (*cb)(evutil_socket_t, short, void *), void *arg)
{
    struct event *e = evtimer_new(base, cb, arg);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(e, &tv);
    return e;
}

/* --- smtp_ops: the session's view of policy and spool ----------------------- */

struct judge {
    struct daemon *d;
    struct policy_ctx ctx;
    const struct addr **rcpts; /* EOM: ctx.rcpts */
    struct policy_run *run;    /* NULL once the pipeline answered */
    struct event *hold;        /* test hook: the verdict waits */
    struct smtp_verdict v;
    void (*done)(void *, const struct smtp_verdict *);
    void *arg;
};

static void judge_answer(struct judge *j)
{
    void (*done)(void *, const struct smtp_verdict *) = j->done;
    void *darg = j->arg;
    struct smtp_verdict v = j->v;
    if (j->hold) event_free(j->hold);
    free(j->rcpts);
    free(j);
    done(darg, &v);
}

static void judge_held(evutil_socket_t fd, short what, void *arg)
{
    judge_answer(arg);
}

static void judge_done(void *arg, const struct policy_verdict *pv)
{
    struct judge *j = arg;
    j->run = NULL;
    if (pv->kind == POLICY_REJECT || pv->kind == POLICY_TEMPFAIL || pv->kind == POLICY_GREYLIST) {
        j->v.code = pv->code;
        str_copy(j->v.enh, pv->enh, sizeof j->v.enh);
        str_copy(j->v.text, pv->text, sizeof j->v.text);
        j->v.check = pv->check;
    }
    if (test_delay.judge > 0) {
        j->hold = test_hold(j->d->base, test_delay.judge, judge_held, j);
        return;
    }
    judge_answer(j);
}

static void *ops_judge(void *ctx, const struct smtp_peer *peer, const struct smtp_txn *txn,
                       enum smtp_stage stage, const struct addr *rcpt,
                       void (*done)(void *, const struct smtp_verdict *), void *arg)
{
    struct daemon *d = ctx;
    struct judge *j = xcalloc(1, sizeof *j);
    j->d = d;
    j->ctx.conf = peer->conf;
    j->ctx.listener = peer->listener;
    j->ctx.store = d->store;
    j->ctx.client_sa = peer->sa;
    str_copy(j->ctx.client_addr, peer->addr, sizeof j->ctx.client_addr);
    str_copy(j->ctx.client_name, peer->name, sizeof j->ctx.client_name);
    j->ctx.helo = peer->helo;
    j->ctx.auth_user = peer->auth_user;
    j->ctx.trusted = peer->trusted;
    j->ctx.sender = txn ? &txn->sender : NULL;
    j->ctx.rcpt = rcpt;
    j->ctx.nrcpts = txn ? txn->nrcpts : 0;
    j->ctx.size_declared = txn ? txn->size : -1;
    if (txn && stage == SMTP_STAGE_EOM) {
        j->rcpts = xcalloc(txn->nrcpts ? txn->nrcpts : 1, sizeof *j->rcpts);
        for (size_t i = 0; i < txn->nrcpts; i++)
            j->rcpts[i] = &txn->rcpts[i].addr;
        j->ctx.rcpts = j->rcpts;
        j->ctx.msg_size = (unsigned long long)txn->msg_size + txn->added_size;
    }
    j->ctx.headers = txn ? txn->headers : NULL;
    j->ctx.headers_len = txn ? txn->headers_len : 0;
    j->ctx.headers_cut = txn ? txn->headers_cut : 0;
    j->done = done;
    j->arg = arg;
    _Static_assert(
        (int)SMTP_STAGE_CONNECT == (int)POLICY_CONNECT &&
            (int)SMTP_STAGE_HELO == (int)POLICY_HELO && (int)SMTP_STAGE_MAIL == (int)POLICY_MAIL &&
            (int)SMTP_STAGE_RCPT == (int)POLICY_RCPT && (int)SMTP_STAGE_DATA == (int)POLICY_DATA &&
            (int)SMTP_STAGE_EOM == (int)POLICY_EOM,
        "enum smtp_stage and enum policy_stage differ");
    j->run = policy_run_start(&j->ctx, (enum policy_stage)stage, judge_done, j);
    return j;
}

static void ops_judge_cancel(void *handle)
{
    struct judge *j = handle;
    if (j->run) policy_run_cancel(j->run);
    if (j->hold) event_free(j->hold);
    free(j->rcpts);
    free(j);
}

static void *ops_msg_open(void *ctx, char *id, size_t idsize)
{
    struct daemon *d = ctx;
    struct spool_msg *m = spool_msg_new(d->spool);
    if (m) str_copy(id, spool_msg_id(m), idsize);
    return m;
}

static int ops_msg_write(void *msg, const void *p, size_t len)
{
    return spool_msg_write(msg, p, len);
}

static void ops_msg_abort(void *msg)
{
    spool_msg_abort(msg);
}

struct commit {
    struct daemon *d;
    struct spool_env *env;
    char id[QUEUE_ID_LEN + 1];
    int ok;
    struct event *hold; /* test hook: the answer waits */
    void (*done)(void *, int);
    void *arg;
};

static void commit_answer(struct commit *c)
{
    c->done(c->arg, c->ok);
    /* after an exit past SHUTDOWN_COMMIT_MAX the queue is gone: the next start finds
     * the message in the spool */
    if (c->ok && c->d->queue) queue_add(c->d->queue, c->id);
    if (c->hold) event_free(c->hold);
    free(c);
}

static void commit_held(evutil_socket_t fd, short what, void *arg)
{
    commit_answer(arg);
}

static void commit_done(void *arg, int ok)
{
    struct commit *c = arg;
    str_copy(c->id, c->env->id, sizeof c->id);
    spool_env_free(c->env);
    c->env = NULL;
    c->ok = ok;
    if (test_delay.commit > 0) {
        c->hold = test_hold(c->d->base, test_delay.commit, commit_held, c);
        return;
    }
    commit_answer(c);
}

static char *opt_dup(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void ops_msg_commit(void *ctx, void *msg, const struct smtp_peer *peer,
                           const struct smtp_txn *txn, void (*done)(void *, int), void *arg)
{
    struct daemon *d = ctx;
    struct spool_env *e = xcalloc(1, sizeof *e);
    e->sender = addr_format(&txn->sender);
    e->arrival = time(NULL);
    e->client_name = xstrdup(peer->name);
    e->client_addr = xstrdup(peer->addr);
    e->helo = opt_dup(peer->helo);
    e->proto = xstrdup(!peer->esmtp      ? "SMTP"
                       : peer->auth_user ? (peer->tls ? "ESMTPSA" : "ESMTPA")
                       : peer->tls       ? "ESMTPS"
                                         : "ESMTP");
    e->auth_user = opt_dup(peer->auth_user);
    e->envid = opt_dup(txn->envid);
    e->ret = txn->ret;
    e->body = txn->body;
    e->smtputf8 = txn->smtputf8;
    /* DESIGN.md "No backscatter": DSNs only to senders we know (SPF pass joins later) */
    e->dsn_trusted = peer->auth_user != NULL || peer->trusted;
    e->rcpts = xcalloc(txn->nrcpts, sizeof *e->rcpts);
    e->nrcpts = txn->nrcpts;
    for (size_t i = 0; i < txn->nrcpts; i++) {
        struct spool_rcpt *r = &e->rcpts[i];
        r->addr = addr_format(&txn->rcpts[i].addr);
        r->orig = xstrdup(r->addr);
        r->orcpt = opt_dup(txn->rcpts[i].orcpt);
        r->notify = txn->rcpts[i].notify;
        r->state = RCPT_ST_QUEUED;
    }
    struct commit *c = xcalloc(1, sizeof *c);
    c->d = d;
    c->env = e;
    c->done = done;
    c->arg = arg;
    spool_msg_commit(msg, e, commit_done, c);
}

/* --- AUTH: directory check on a worker, brute-force limits on the loop ---------- */

struct auth_req {
    struct daemon *d;
    struct work_job *job;
    struct event *timer; /* delays the answer after failures */
    char ip[64];
    char *user, *pass;
    int result;
    void (*done)(void *, int);
    void *arg;
};

static void auth_req_free(struct auth_req *a)
{
    if (a->timer) event_free(a->timer);
    if (a->pass) explicit_bzero(a->pass, strlen(a->pass));
    free(a->pass);
    free(a->user);
    free(a);
}

static void auth_answer(evutil_socket_t fd, short what, void *arg)
{
    struct auth_req *a = arg;
    void (*done)(void *, int) = a->done;
    void *darg = a->arg;
    int result = a->result;
    auth_req_free(a);
    done(darg, result);
}

static void auth_answer_in(struct auth_req *a, double seconds)
{
    a->timer = evtimer_new(a->d->base, auth_answer, a);
    struct timeval tv = {.tv_sec = (time_t)seconds,
                         .tv_usec = (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    evtimer_add(a->timer, &tv);
}

static void auth_run(void *arg)
{
    struct auth_req *a = arg;
    int r;
    if (a->d->dovecot) {
        char err[512];
        r = dovecot_auth_check(a->d->dovecot, a->user, a->pass, a->ip, err, sizeof err);
        if (r < 0) log_warn("kurierd", "AUTH from [%s]: %s", a->ip, err);
    } else {
        r = store_mailbox_auth(a->d->store, a->user, a->pass);
    }
    a->result = r == 1 ? 0 : r == 0 ? 1 : -1;
}

static void auth_ran(void *arg)
{
    struct auth_req *a = arg;
    a->job = NULL;
    double delay = 0;
    if (a->result >= 0)
        delay = auth_limits_record(a->d->auth_limits, a->d->conf, a->ip, a->user, a->result == 0,
                                   time_mono());
    auth_answer_in(a, delay);
}

static void *ops_auth(void *ctx, const struct smtp_peer *peer, const char *mech, const char *user,
                      const char *pass, void (*done)(void *, int), void *arg)
{
    struct daemon *d = ctx;
    struct auth_req *a = xcalloc(1, sizeof *a);
    a->d = d;
    str_copy(a->ip, peer->addr, sizeof a->ip);
    a->user = xstrdup(user);
    a->pass = xstrdup(pass);
    a->done = done;
    a->arg = arg;
    if (auth_limits_blocked(d->auth_limits, d->conf, a->ip, user, time_mono())) {
        a->result = 2;
        auth_answer_in(a, 0);
    } else {
        a->job = work_submit(auth_run, auth_ran, a);
    }
    return a;
}

static void ops_auth_cancel(void *handle)
{
    struct auth_req *a = handle;
    if (a->job) work_cancel(a->job);
    auth_req_free(a);
}

/* --- the client's name: PTR, confirmed by A/AAAA (forward-confirmed rDNS) --------- */

#define NAME_LOOKUP_MAX 10 /* seconds before the client is greeted as "unknown" */

struct name_lookup {
    struct daemon *d;
    struct sockaddr_storage sa;
    struct dns_query *q;
    struct event *timer;
    char name[256];
    void (*done)(void *, const char *);
    void *arg;
};

static void name_finish(struct name_lookup *n, const char *name)
{
    void (*done)(void *, const char *) = n->done;
    void *arg = n->arg;
    char copy[256]; /* name may point into n */
    str_copy(copy, name, sizeof copy);
    if (n->q) dns_cancel(n->q);
    event_free(n->timer);
    free(n);
    done(arg, copy);
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) return 0;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

static void name_forward(void *arg, const struct dns_result *r)
{
    struct name_lookup *n = arg;
    n->q = NULL;
    for (size_t i = 0; r->status == DNS_OK && i < r->naddrs; i++)
        if (same_addr(&r->addrs[i], &n->sa)) {
            name_finish(n, n->name);
            return;
        }
    name_finish(n, "unknown"); /* the name does not lead back: not trusted */
}

static void name_ptr(void *arg, const struct dns_result *r)
{
    struct name_lookup *n = arg;
    n->q = NULL;
    if (r->status != DNS_OK || r->nstrs == 0 || !r->strs[0][0]) {
        name_finish(n, "unknown");
        return;
    }
    str_copy(n->name, r->strs[0], sizeof n->name);
    n->q = n->sa.ss_family == AF_INET6 ? dns_query_aaaa(n->d->dns, n->name, name_forward, n)
                                       : dns_query_a(n->d->dns, n->name, name_forward, n);
    if (!n->q) name_finish(n, "unknown");
}

static void name_timeout(evutil_socket_t fd, short what, void *arg)
{
    name_finish(arg, "unknown");
}

static void *ops_lookup_name(void *ctx, const struct sockaddr *sa,
                             void (*done)(void *, const char *), void *arg)
{
    struct daemon *d = ctx;
    struct name_lookup *n = xcalloc(1, sizeof *n);
    n->d = d;
    memcpy(&n->sa, sa,
           sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    n->done = done;
    n->arg = arg;
    n->timer = evtimer_new(d->base, name_timeout, n);
    evtimer_add(n->timer, &(struct timeval){.tv_sec = NAME_LOOKUP_MAX});
    n->q = dns_query_ptr(d->dns, sa, name_ptr, n); /* never calls back before returning */
    if (!n->q) { /* cannot even ask: greet as unknown, on the next loop turn */
        evtimer_del(n->timer);
        evtimer_add(n->timer, &(struct timeval){0});
    }
    return n;
}

static void ops_lookup_cancel(void *handle)
{
    struct name_lookup *n = handle;
    if (n->q) dns_cancel(n->q);
    event_free(n->timer);
    free(n);
}

/* --- TLS -------------------------------------------------------------------------- */

/* The listener's TLS context: its certificate, plus one per file of sni_certs.
 * NULL with err filled (the file and why); the caller logs it. */
static struct smtp_tls *tls_for(const struct conf_listen *l, char *err, size_t errsize)
{
    if (l->tls == LISTEN_TLS_NONE) return NULL;
    struct smtp_tls *t = smtp_tls_new(l->tls_cert, l->tls_key, err, errsize);
    if (!t) return NULL;
    if (l->sni_certs) {
        glob_t g;
        if (glob(l->sni_certs, 0, NULL, &g) == 0) {
            for (size_t i = 0; i < g.gl_pathc; i++) {
                if (smtp_tls_add_sni(t, g.gl_pathv[i], g.gl_pathv[i], err, errsize) != 0) {
                    globfree(&g);
                    smtp_tls_free(t);
                    return NULL;
                }
            }
            globfree(&g);
        }
    }
    return t;
}

/* --- start-up ------------------------------------------------------------------- */

static int chown_path(const char *path, const struct passwd *pw)
{
    if (!pw) return 0;
    if (chown(path, pw->pw_uid, pw->pw_gid) != 0) {
        log_err("kurierd", "chown %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Create the state folders and hand them to the kurier user (as Postfix's
 * post-install does), so that nothing needs root after the drop. */
static int prepare_dirs(const struct kconf *c, const struct passwd *pw)
{
    const char *dirs[] = {c->state_dir, c->spool_dir, c->maildir_root};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (mkdir_p(dirs[i], 0750) != 0) {
            log_err("kurierd", "cannot create %s: %s", dirs[i], strerror(errno));
            return -1;
        }
        if (chown_path(dirs[i], pw) != 0) return -1;
        /* others may pass through (sendmail reaches spool/maildrop, mode 1733), but
         * not list */
        if (chmod(dirs[i], 0711) != 0) {
            log_err("kurierd", "chmod %s: %s", dirs[i], strerror(errno));
            return -1;
        }
    }
    if (pw) {
        const char *sub[] = {"incoming", "queue", "maildrop"};
        for (size_t i = 0; i < 3; i++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", c->spool_dir, sub[i]);
            struct stat st;
            if (stat(p, &st) == 0 && chown_path(p, pw) != 0) return -1;
        }
    }
    return 0;
}

/* Where path is: its folder with symbolic links resolved (as ".." from the working
 * folder walks the real tree), its last part as written (a link there is followed
 * when the file is opened, e.g. a renewed certificate). NULL when the folder cannot
 * be resolved (not there, or not reachable by us). */
static char *physical_path(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = !slash          ? xstrdup(".")
                : slash == path ? xstrdup("/")
                                : xstrndup(path, (size_t)(slash - path));
    char *rdir = realpath(dir, NULL);
    free(dir);
    if (!rdir) return NULL;
    const char *leaf = slash ? slash + 1 : path;
    char *r = !*leaf ? xstrdup(rdir) : xasprintf("%s%s%s", rdir, rdir[1] ? "/" : "", leaf);
    free(rdir);
    return r;
}

/* 1 when everyone may pass through "/" and every folder below it down to the parent
 * of folder (absolute, clean), so that a lookup from "/" reaches folder as well as
 * one from the working folder. */
static int open_above(const char *folder)
{
    char *p = xstrdup(folder);
    int open = 1;
    for (char *slash = p;; slash = strchr(slash + 1, '/')) {
        if (!slash) break;
        char c = slash[slash == p];
        slash[slash == p] = '\0'; /* "/", then "/a", "/a/b", ... below folder */
        struct stat st;
        open = stat(p, &st) == 0 && (st.st_mode & S_IXOTH);
        slash[slash == p] = c;
        if (!open) break;
    }
    free(p);
    return open;
}

/* conf_map_paths() callback: an absolute configured path as reached from the working
 * folder. Below state_dir: the rest of it ("spool", "tls/key.pem"). Elsewhere the
 * path as written when everyone may pass through the folders above the nearest
 * folder it shares with state_dir (the usual /var/mail, /etc/kurier), else the way
 * up to that folder and down (path_relative()): "../examples/kurier.conf" for a
 * clone in /root. */
static char *from_workdir(const char *path, void *arg)
{
    const struct daemon *d = arg;
    size_t n = strlen(d->work_lexical);
    if (n > 1 && strncmp(path, d->work_lexical, n) == 0 && (path[n] == '/' || !path[n]))
        return xstrdup(path[n] ? path + n + 1 : ".");
    char *phys = physical_path(path); /* fails for unreachable folders after the drop */
    char *r = path_relative(d->work_physical, phys ? phys : path);
    free(phys);
    if (r[0] == '/') return r;
    /* the shared folder: the working folder less one part per ".." */
    char *shared = xstrdup(d->work_physical);
    for (const char *u = r; strncmp(u, "..", 2) == 0 && (u[2] == '/' || !u[2]); u += 3) {
        *strrchr(shared, '/') = '\0';
        if (!u[2]) break;
    }
    int open = shared[0] && open_above(shared);
    free(shared);
    if (!open) return r;
    free(r);
    return xstrdup(path);
}

/* Move into state_dir, as root, and name every configured path relative to it, as
 * Postfix's daemons work inside the queue directory after chdir. Lookups from the
 * working folder never pass through the folders above the nearest common one, so
 * after the drop the kurier user still reaches the spool, the directory database, the
 * Maildirs, the certificates (SIGHUP) and the configuration of a clone in /root (mode
 * 0700). Relative paths in the configuration keep meaning the folder we started in. */
static int enter_workdir(struct daemon *d)
{
    char *start = getcwd(NULL, 0);
    char *conf = physical_path(d->conf_path); /* it was read: its folder is there */
    d->work_lexical = xstrdup(d->conf->state_dir);
    d->work_physical = realpath(d->conf->state_dir, NULL);
    if (!start || !conf || !d->work_physical || chdir(d->work_physical) != 0) {
        log_err("kurierd", "cannot work in %s: %s", d->conf->state_dir, strerror(errno));
        free(conf);
        free(start);
        return -1;
    }
    conf_set_start_dir(start);
    d->conf_file = from_workdir(conf, d);
    free(conf);
    free(start);
    conf_map_paths(d->conf, from_workdir, d);
    log_info("kurierd", "working in %s", d->work_physical);
    return 0;
}

static int drop_privileges(const struct passwd *pw)
{
    if (!pw) return 0;
    if (setgroups(0, NULL) != 0 || initgroups(pw->pw_name, pw->pw_gid) != 0 ||
        setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
        log_err("kurierd", "cannot drop privileges to %s: %s", pw->pw_name, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) { /* for good: must not be able to come back */
        log_err("kurierd", "privileges could be regained after the drop; refusing to run");
        return -1;
    }
    return 0;
}

static const struct conf_listen *find_listener(const struct kconf *c, const char *address)
{
    for (const struct conf_listen *l = c->listeners; l; l = l->next)
        if (strcmp(l->address, address) == 0) return l;
    return NULL;
}

/* --- signals ---------------------------------------------------------------------- */

static void apply_log(const struct kconf *c)
{
    log_init(c->log_target, c->log_name, (enum log_level)c->log_level);
    log_debug_enable(c->log_debug);
}

static void reload(void *arg)
{
    struct daemon *d = arg;
    struct conf_errors errs = {0};
    struct kconf *c = conf_load(d->conf_file, &errs);
    if (!c) {
        size_t n = strlen(d->conf_file);
        for (size_t i = 0; i < errs.n; i++) {
            const char *m = errs.msgs[i]; /* name the file as the admin did */
            int main_file = strncmp(m, d->conf_file, n) == 0 && m[n] == ':';
            log_err("kurierd", "reload refused, keeping the running configuration: %s%s",
                    main_file ? d->conf_path : "", main_file ? m + n : m);
        }
        conf_errors_free(&errs);
        return;
    }
    conf_errors_free(&errs);
    conf_map_paths(c, from_workdir, d);
    /* Listeners are bound once, as root; a reload keeps the sockets and applies the
     * new settings of listeners with the same address. */
    for (size_t i = 0; i < d->nservers; i++) {
        const struct conf_listen *nl = find_listener(c, d->server_addrs[i]);
        if (!nl) {
            log_warn("kurierd", "reload: listener %s was removed; a restart is needed to close it",
                     d->server_addrs[i]);
            continue; /* it keeps its old settings */
        }
        /* certificates are read again (renewed ones take effect); the keys must be
         * readable by the user we run as. On failure the old ones stay. */
        char err[512];
        struct smtp_tls *t = nl->tls != LISTEN_TLS_NONE ? tls_for(nl, err, sizeof err) : NULL;
        if (nl->tls != LISTEN_TLS_NONE && !t) {
            log_err("kurierd",
                    "reload: TLS certificate reload for %s failed, the running certificate "
                    "stays: %s",
                    nl->address, err);
        } else {
            if (t) log_info("kurierd", "reload: TLS certificates for %s reloaded", nl->address);
            smtp_server_set_tls(d->servers[i], t);
            smtp_tls_free(d->tls[i]); /* sessions using it keep it until they end */
            d->tls[i] = t;
        }
        smtp_server_set_conf(d->servers[i], c, nl);
    }
    for (const struct conf_listen *l = c->listeners; l; l = l->next)
        if (!find_listener(d->conf, l->address))
            log_warn("kurierd", "reload: new listener %s needs a restart", l->address);
    d->old_confs = xrealloc(d->old_confs, (d->nold + 1) * sizeof *d->old_confs);
    d->old_confs[d->nold++] = d->conf;
    d->conf = c;
    queue_set_conf(d->queue, c);
    remote_set_conf(d->remote, c);
    apply_log(c);
    log_info("kurierd", "reloaded configuration from %s", d->conf_path);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    reload(arg);
}

static void drain_check(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    if (smtp_sessions_count() == 0) event_base_loopexit(d->base, NULL);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    log_warn("kurierd", "stopping: %zu sessions still open %d s after the grace period; exiting",
             smtp_sessions_count(), SHUTDOWN_COMMIT_MAX);
    event_base_loopexit(d->base, NULL);
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    log_info("kurierd", "grace period over: closing %zu sessions", smtp_sessions_count());
    smtp_sessions_close_all();
    d->ev_deadline = evtimer_new(d->base, on_deadline, d);
    evtimer_add(d->ev_deadline, &(struct timeval){.tv_sec = SHUTDOWN_COMMIT_MAX});
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    if (d->stopping) return;
    d->stopping = 1;
    log_info("kurierd", "stopping: no new connections, %zu sessions to finish",
             smtp_sessions_count());
    for (size_t i = 0; i < d->nservers; i++)
        if (d->servers[i]) smtp_server_stop(d->servers[i]);
    d->ev_grace = evtimer_new(d->base, on_grace, d);
    evtimer_add(d->ev_grace, &(struct timeval){.tv_sec = d->conf->shutdown_grace});
    d->ev_drain = event_new(d->base, -1, EV_PERSIST, drain_check, d);
    event_add(d->ev_drain, &(struct timeval){.tv_usec = 100000});
}

/* --- main ------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: kurierd [-c FILE] [-t]\n"
                    "  -c FILE  configuration (default $KURIER_CONF or /etc/kurier/kurier.conf)\n"
                    "  -t       check the configuration and exit\n");
}

int main(int argc, char **argv)
{
    struct daemon d = {0};
    int test_only = 0, opt;
    d.conf_path = getenv("KURIER_CONF");
    if (!d.conf_path || !*d.conf_path) d.conf_path = "/etc/kurier/kurier.conf";
    while ((opt = getopt(argc, argv, "c:th")) != -1) {
        switch (opt) {
        case 'c':
            d.conf_path = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        default:
            usage();
            return opt == 'h' ? 0 : 2;
        }
    }
    log_init("stderr", "kurier", LOG_LV_INFO);
    struct conf_errors errs = {0};
    d.conf = conf_load(d.conf_path, &errs);
    if (!d.conf) {
        conf_errors_print(&errs, stderr);
        conf_errors_free(&errs);
        return 1;
    }
    conf_errors_free(&errs);
    if (test_only) {
        printf("%s: ok\n", d.conf_path);
        conf_free(d.conf);
        return 0;
    }
    apply_log(d.conf);
    test_delay_init();

    struct passwd *pw = NULL;
    if (geteuid() == 0) {
        pw = getpwnam(d.conf->user);
        if (!pw) {
            log_err("kurierd",
                    "user \"%s\" does not exist: create it (useradd --system %s) or set "
                    "\"user\" in %s",
                    d.conf->user, d.conf->user, d.conf_path);
            return 1;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    umask(027);
    evthread_use_pthreads();
    d.base = event_base_new();
    if (!d.base) {
        log_err("kurierd", "cannot create the event loop");
        return 1;
    }
    /* Signals are caught from here on (they are handled once the loop runs): a HUP
     * or TERM right after the ports open must not kill the daemon. */
    d.ev_term = evsignal_new(d.base, SIGTERM, on_term, &d);
    d.ev_int = evsignal_new(d.base, SIGINT, on_term, &d);
    d.ev_hup = evsignal_new(d.base, SIGHUP, on_hup, &d);
    event_add(d.ev_term, NULL);
    event_add(d.ev_int, NULL);
    event_add(d.ev_hup, NULL);
    if (prepare_dirs(d.conf, pw) != 0 || enter_workdir(&d) != 0) return 1;
    char err[512];
    d.spool = spool_open(d.conf->spool_dir, err, sizeof err);
    if (!d.spool) {
        log_err("kurierd", "spool %s: %s", d.conf->spool_dir, err);
        return 1;
    }
    if (prepare_dirs(d.conf, pw) != 0) return 1; /* spool_open made its subfolders */
    d.store = store_open(d.conf->directory, 1, pw ? pw->pw_name : NULL, err, sizeof err);
    if (!d.store) {
        log_err("kurierd", "directory %s: %s", d.conf->directory, err);
        return 1;
    }
    if (d.conf->auth_backend == CONF_AUTH_DOVECOT)
        d.dovecot = dovecot_auth_new(d.conf->auth_dovecot_socket);

    d.ops = (struct smtp_ops){
        .ctx = &d,
        .judge = ops_judge,
        .judge_cancel = ops_judge_cancel,
        .msg_open = ops_msg_open,
        .msg_write = ops_msg_write,
        .msg_commit = ops_msg_commit,
        .msg_abort = ops_msg_abort,
        .auth = ops_auth,
        .auth_cancel = ops_auth_cancel,
        .lookup_name = ops_lookup_name,
        .lookup_cancel = ops_lookup_cancel,
    };
    d.auth_limits = auth_limits_new();
    for (const struct conf_listen *l = d.conf->listeners; l; l = l->next)
        d.nservers++;
    d.servers = xcalloc(d.nservers ? d.nservers : 1, sizeof *d.servers);
    d.server_addrs = xcalloc(d.nservers ? d.nservers : 1, sizeof *d.server_addrs);
    d.tls = xcalloc(d.nservers ? d.nservers : 1, sizeof *d.tls);
    size_t i = 0;
    for (const struct conf_listen *l = d.conf->listeners; l; l = l->next, i++) {
        d.server_addrs[i] = xstrdup(l->address);
        d.servers[i] = smtp_server_new(d.base, l, d.conf, &d.ops);
        if (!d.servers[i]) return 1;
        if (l->tls != LISTEN_TLS_NONE) { /* keys are read now, before the drop */
            char terr[512];
            d.tls[i] = tls_for(l, terr, sizeof terr);
            if (!d.tls[i]) {
                log_err("kurierd", "listen %s: %s", l->address, terr);
                return 1;
            }
            smtp_server_set_tls(d.servers[i], d.tls[i]);
        }
    }
    if (drop_privileges(pw) != 0) return 1;

    if (work_init(d.base, d.conf->workers) != 0) return 1;
    policy_init(d.base);
    d.queue = queue_new(d.base, d.conf, d.spool, d.store);
    if (!d.queue) return 1;
    /* remote delivery: a forwarder (tests: unbound with test zones) lifts "test." */
    static const char *const test_zones[] = {"test.", NULL};
    const char *res = d.conf->resolver;
    d.dns = dns_new(d.base, res, NULL, res && *res ? test_zones : NULL, err, sizeof err);
    if (!d.dns) {
        log_err("kurierd", "resolver: %s", err);
        return 1;
    }
    d.remote = remote_new(d.base, d.conf, d.dns, d.store);
    if (!d.remote) return 1;
    queue_set_remote(d.queue, d.remote);
    d.control = control_new(d.base, d.conf->control_socket, d.queue, reload, &d);
    if (!d.control) return 1;
    control_set_state(d.control, d.spool, d.auth_limits);

    for (i = 0; i < d.nservers; i++)
        smtp_server_start(d.servers[i]);
    for (const struct conf_listen *l = d.conf->listeners; l; l = l->next)
        log_info("kurierd", "listening on %s (%s)", l->address,
                 l->role == LISTEN_SUBMISSION ? "submission" : "mx");
    log_info("kurierd", "daemon started: kurier, hostname %s, config %s", d.conf->hostname,
             d.conf_path);

    event_base_dispatch(d.base);

    log_info("kurierd", "stopped");
    control_free(d.control);
    queue_free(d.queue); /* cancels its remote deliveries first */
    d.queue = NULL;
    remote_free(d.remote);
    dns_free(d.dns);
    work_shutdown();
    for (i = 0; i < d.nservers; i++) {
        smtp_server_free(d.servers[i]);
        smtp_tls_free(d.tls[i]);
        free(d.server_addrs[i]);
    }
    free(d.servers);
    free(d.server_addrs);
    free(d.tls);
    auth_limits_free(d.auth_limits);
    dovecot_auth_free(d.dovecot);
    store_free(d.store);
    spool_free(d.spool);
    if (d.ev_grace) event_free(d.ev_grace);
    if (d.ev_drain) event_free(d.ev_drain);
    if (d.ev_deadline) event_free(d.ev_deadline);
    event_free(d.ev_term);
    event_free(d.ev_int);
    event_free(d.ev_hup);
    event_base_free(d.base);
    for (i = 0; i < d.nold; i++)
        conf_free(d.old_confs[i]);
    free(d.old_confs);
    conf_free(d.conf);
    conf_set_start_dir(NULL);
    free(d.conf_file);
    free(d.work_lexical);
    free(d.work_physical);
    return 0;
}
