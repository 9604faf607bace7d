/* kurierd.c: the daemon, wiring only. Loads the config, binds listeners as root,
 * drops to the kurier user for good, starts the modules and hands the SMTP server
 * its smtp_ops (glue/), and runs the loop. Signals: TERM/INT stop, HUP reloads. */
#include "core/compat.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "abuse/abuse.h"
#include "auth/auth.h"
#include "control/control.h"
#include "core/core.h"
#include "core/metrics.h"
#include "deliver/deliver.h"
#include "dns/dns.h"
#include "egress/replies.h"
#include "egress/monitor.h"
#include "egress/bench.h"
#include "abuse/complaints.h"
#include "glue/glue.h"
#include "policy/policy.h"
#include "queue/dkim_sign.h"
#include "queue/queue.h"
#include "smtp/smtp.h"
#include "store/store.h"

struct daemon {
    struct event_base *base;
    const char *conf_path;
    char *conf_file;    /* conf_path as reached from the working folder (reloads) */
    struct workdir wd;  /* state_dir */
    struct kconf *conf; /* the current one: our reference (sessions, jobs hold theirs) */
    struct spool *spool;
    struct store *store;
    struct queue *queue;
    struct dns *dns;       /* remote delivery, client names */
    struct remote *remote; /* deliver/remote.c, handed to the scheduler */
    struct prober *prober; /* deliver/probe.c: recipient probes (policy/relay_verify.c) */
    struct control *control;
    struct monitor *monitor;       /* our addresses on the DNS lists */
    struct monitor_notify *notify; /* its reports: mail, webhook */
    struct smtp_server **servers;
    struct smtp_tls **tls; /* per server, NULL without TLS */
    struct auth *auth;
    struct abuse *abuse;
    char **server_addrs; /* the address each server was bound for */
    size_t nservers;
    struct glue glue;              /* smtp_ops: the sessions' way to policy, spool, auth, dns */
    struct complaints *complaints; /* abuse/: reads every accepted message first */
    struct smtp_ops ops;
    struct event *ev_term, *ev_int, *ev_hup, *ev_grace, *ev_drain, *ev_deadline;
    int stopping;
};

/* After the grace period sessions end within seconds, but for those storing a
 * message: they get this many seconds before the daemon exits without their answer
 * (their message is on disk or not; the client did not get 250 either way and
 * sends it again). */
#define SHUTDOWN_COMMIT_MAX 30

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

/* Move into state_dir, as root, and name every configured path relative to it, as
 * Postfix's daemons work inside the queue directory after chdir. Lookups from the
 * working folder never pass through the folders above the nearest common one, so
 * after the drop the kurier user still reaches the spool, the directory database, the
 * Maildirs, the certificates (SIGHUP) and the configuration of a clone in /root (mode
 * 0700). Relative paths in the configuration keep meaning the folder we started in. */
static int enter_workdir(struct daemon *d)
{
    char *start = getcwd(NULL, 0);
    char *conf = path_physical(d->conf_path); /* it was read: its folder is there */
    if (!start || !conf || workdir_enter(&d->wd, d->conf->state_dir) != 0) {
        log_err("kurierd", "cannot work in %s: %s", d->conf->state_dir, strerror(errno));
        free(conf);
        free(start);
        return -1;
    }
    conf_set_start_dir(start);
    d->conf_file = workdir_path(conf, &d->wd);
    free(conf);
    free(start);
    conf_map_paths(d->conf, workdir_path, &d->wd);
    log_info("kurierd", "working in %s", d->wd.physical);
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

static void monitor_pool_sources(struct monitor *m, const struct kconf *c);

/* 0 when the file's configuration is in force, -1 when it was refused (logged). */
static int reload(void *arg)
{
    struct daemon *d = arg;
    sd_notify(0, "RELOADING=1");
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
        sd_notify(0, "READY=1\nSTATUS=reload refused, the running configuration stays");
        return -1;
    }
    conf_errors_free(&errs);
    conf_map_paths(c, workdir_path, &d->wd);
    char rerr[600];
    if (egress_replies_load(c->reply_rules, rerr, sizeof rerr) != 0)
        log_err("kurierd", "reload: reply rules kept as loaded before: %s", rerr);
    if (dkim_sign_load(c, rerr, sizeof rerr) < 0)
        log_err("kurierd", "reload: DKIM keys kept as loaded before: %s", rerr);
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
        struct smtp_tls *t =
            nl->tls != LISTEN_TLS_NONE ? smtp_tls_for_listener(nl, err, sizeof err) : NULL;
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
    if (store_state_conf_differs(d->conf, c)) /* the connection is set up at start */
        log_warn("kurierd",
                 "reload: state { } backend, servers, sentinel_master, passwords, prefix, "
                 "timeout_ms and refresh need a restart; the fail modes apply now");
    queue_set_conf(d->queue, c);
    remote_set_conf(d->remote, c);
    monitor_set_conf(d->monitor, c);
    monitor_pool_sources(d->monitor, c);
    monitor_notify_set_conf(d->notify, c);
    egress_set_conf(c);
    abuse_set_conf(d->abuse, c);
    /* the old configuration goes when its last session or job ends: maybe now */
    conf_unref(d->conf);
    d->conf = c;
    apply_log(c);
    log_info("kurierd", "reloaded configuration from %s", d->conf_path);
    sd_notify(0, "READY=1\nSTATUS=running");
    return 0;
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)reload(arg);
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
    sd_notify(0, "STOPPING=1");
    log_info("kurierd", "stopping: no new connections, %zu sessions to finish",
             smtp_sessions_count());
    for (size_t i = 0; i < d->nservers; i++)
        if (d->servers[i]) smtp_server_stop(d->servers[i]);
    d->ev_grace = evtimer_new(d->base, on_grace, d);
    evtimer_add(d->ev_grace, &(struct timeval){.tv_sec = d->conf->shutdown_grace});
    d->ev_drain = event_new(d->base, -1, EV_PERSIST, drain_check, d);
    event_add(d->ev_drain, &(struct timeval){.tv_usec = 100000});
}

static void on_stop_request(void *arg) /* "kurier stop" */
{
    on_term(SIGTERM, 0, arg);
}

/* A blocklist change of one of our addresses (logged and stored by the monitor). */
static void on_monitor(void *arg, const struct monitor_event *ev)
{
    struct daemon *d = arg;
    if (ev->state == MONITOR_LISTED)
        egress_listing(ev->address, ev->zone, 1, ev->txt);
    else if (ev->previous == MONITOR_LISTED && ev->state == MONITOR_CLEAR)
        egress_listing(ev->address, ev->zone, 0, NULL);
    monitor_notify(d->notify, ev);
}

/* The monitor watches the pools' source addresses besides its own list. */
static void monitor_pool_sources(struct monitor *m, const struct kconf *c)
{
    size_t n = 0, k = 0;
    for (const struct conf_egress_pool *p = c->pools; p; p = p->next)
        n += p->nsrc;
    const char **addrs = xcalloc(n ? n : 1, sizeof *addrs);
    for (const struct conf_egress_pool *p = c->pools; p; p = p->next)
        for (size_t i = 0; i < p->nsrc; i++)
            addrs[k++] = p->src[i].addr;
    monitor_set_addresses(m, addrs, k);
    free(addrs);
}

/* A complaint matched to an account (abuse/complaints.c) is a signal against it. */
static void on_complaint(void *arg, const char *account, const struct complaint *c)
{
    struct daemon *d = arg;
    char evidence[1200];
    snprintf(evidence, sizeof evidence, "%s report (%s) from %s about queue ID %s, Message-ID %s",
             complaint_format_name(c->format), c->feedback_type[0] ? c->feedback_type : "-",
             c->reporter[0] ? c->reporter : "-", c->queue_id[0] ? c->queue_id : "-",
             c->message_id[0] ? c->message_id : "-");
    abuse_signal(d->abuse, account, "complaint", d->conf->abuse_complaint_score, evidence);
}

/* Remote answers to an account's mail (deliver/remote.c): user-unknown and blocklist
 * shares are signals against it. */
static void on_replies(void *arg, const char *account, const char *id, size_t replies,
                       size_t unknown, size_t blocked)
{
    struct daemon *d = arg;
    abuse_delivery(d->abuse, account, id, replies, unknown, blocked);
}

/* --- main ------------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out, "usage: kurierd [-c FILE] [-t] [-V]\n"
                 "  -c FILE  configuration (default $KURIER_CONF or /etc/kurier/kurier.conf)\n"
                 "  -t       check the configuration and exit\n"
                 "  -V       print the version and exit\n"
                 "Signals: HUP reloads the configuration, TERM and INT stop. See kurierd(8).\n");
}

int main(int argc, char **argv)
{
    struct daemon d = {0};
    int test_only = 0, opt;
    d.conf_path = getenv("KURIER_CONF");
    if (!d.conf_path || !*d.conf_path) d.conf_path = "/etc/kurier/kurier.conf";
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"test", no_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    while ((opt = getopt_long(argc, argv, "c:thV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            d.conf_path = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'V':
            printf("kurierd %s\n", KURIER_VERSION);
            return 0;
        default:
            usage(opt == 'h' ? stdout : stderr);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kurierd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    log_init("stderr", "kurier", LOG_LV_INFO);
    struct conf_errors errs = {0};
    conf_read_secrets(1); /* BATV keys, at start and on every reload */
    d.conf = conf_load(d.conf_path, &errs);
    if (!d.conf) {
        conf_errors_print(&errs, stderr);
        conf_errors_free(&errs);
        return 1;
    }
    conf_errors_free(&errs);
    char err[600];
    /* before the move to state_dir: a relative path means the folder we started in */
    if (egress_replies_load(d.conf->reply_rules, err, sizeof err) != 0) {
        log_err("kurierd", "reply_rules: %s", err);
        return 1;
    }
    if (dkim_sign_load(d.conf, err, sizeof err) < 0) {
        log_err("kurierd", "dkim: %s", err);
        return 1;
    }
    if (test_only) {
        egress_replies_free();
        dkim_sign_unload();
        printf("%s: ok\n", d.conf_path);
        conf_free(d.conf);
        return 0;
    }
    apply_log(d.conf);
    glue_test_delay_init();

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
    /* epoll changes are collected and made once before each wait: a write interest
     * added and dropped in one turn of the loop costs no epoll_ctl (PROFILE.md) */
    struct event_config *ecfg = event_config_new();
    if (ecfg) event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    d.base = ecfg ? event_base_new_with_config(ecfg) : event_base_new();
    if (ecfg) event_config_free(ecfg);
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
    d.spool = spool_open(d.conf->spool_dir, err, sizeof err);
    if (!d.spool || spool_import_legacy(d.spool, err, sizeof err) != 0) {
        log_err("kurierd", "spool %s: %s", d.conf->spool_dir, err);
        return 1;
    }
    if (prepare_dirs(d.conf, pw) != 0) return 1; /* spool_open made its subfolders */
    d.store = store_open(d.conf->directory, 1, pw ? pw->pw_name : NULL, err, sizeof err);
    if (!d.store) {
        log_err("kurierd", "directory %s: %s", d.conf->directory, err);
        return 1;
    }
    if (d.conf->dir_backend == CONF_DIR_POSTGRES &&
        store_attach_postgres(d.store, d.conf->dir_conninfo, err, sizeof err) != 0) {
        log_err("kurierd", "directory_conninfo: %s", err);
        return 1;
    }
    if (d.conf->state_backend == CONF_STATE_REDIS &&
        store_attach_redis(d.store, d.conf, err, sizeof err) != 0) {
        log_err("kurierd", "%s", err);
        return 1;
    }
    d.auth = auth_new(d.base, d.conf, d.store);
    d.abuse = abuse_new(d.base, d.conf, d.store, d.auth, d.spool);
    d.glue = (struct glue){
        .base = d.base, .spool = d.spool, .store = d.store, .auth = d.auth, .abuse = d.abuse};
    glue_smtp_ops(&d.glue, &d.ops);
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
            d.tls[i] = smtp_tls_for_listener(l, terr, sizeof terr);
            if (!d.tls[i]) {
                log_err("kurierd", "listen %s: %s", l->address, terr);
                return 1;
            }
            smtp_server_set_tls(d.servers[i], d.tls[i]);
        }
    }
    /* before the drop: the port may be below 1024 */
    struct metrics_http *metrics =
        metrics_http_start(d.base, d.conf->metrics_listen, err, sizeof err);
    if (!metrics && err[0]) return log_err("kurierd", "%s", err), 1;
    if (drop_privileges(pw) != 0) return 1;

    if (work_init(d.base, d.conf->workers) != 0) return 1;
    policy_init(d.base);
    d.queue = queue_new(d.base, d.conf, d.spool, d.store);
    if (!d.queue) return 1;
    d.glue.queue = d.queue;
    metrics_set_collector(queue_metrics, d.queue);
    abuse_set_queue(d.abuse, d.queue);
    /* remote delivery: a forwarder (tests: unbound with test zones) lifts "test." */
    static const char *const test_zones[] = {"test.", NULL};
    const char *res = d.conf->resolver;
    d.dns = dns_new(d.base, res, NULL, res && *res ? test_zones : NULL, err, sizeof err);
    if (!d.dns) {
        log_err("kurierd", "resolver: %s", err);
        return 1;
    }
    d.glue.dns = d.dns;
    d.remote = remote_new(d.base, d.conf, d.dns, d.store);
    if (!d.remote) return 1;
    remote_set_observer(d.remote, on_replies, &d);
    egress_bench_init(d.store); /* benches survive restarts (docs/egress.md) */
    egress_bench_sync_start(d.base, d.conf->state_refresh); /* docs/cluster.md */
    egress_set_conf(d.conf);
    queue_set_remote(d.queue, d.remote);
    d.glue.prober = d.prober = prober_new(d.base, d.dns);
    d.control = control_new(d.base, d.conf->control_socket, d.queue, reload, &d);
    if (!d.control) return 1;
    control_set_stop(d.control, on_stop_request);
    control_set_state(d.control, d.spool, auth_limits_of(d.auth));
    control_set_abuse(d.control, d.abuse);
    policy_greylist_purge_start(d.base, d.store, (const struct kconf *const *)&d.conf);
    d.notify = monitor_notify_new(d.base, d.dns, d.conf, d.spool, d.queue);
    d.monitor = monitor_new(d.base, d.dns, d.conf, d.store, on_monitor, &d);
    monitor_pool_sources(d.monitor, d.conf);
    policy_relay_verify_purge_start(d.base, d.store, (const struct kconf *const *)&d.conf);
    d.complaints = complaints_new(d.base, (const struct kconf *const *)&d.conf, d.spool, d.store,
                                  d.queue, on_complaint, &d);
    if (!d.complaints) return 1;
    queue_set_intake(d.queue, complaints_accepted, d.complaints);

    for (i = 0; i < d.nservers; i++)
        smtp_server_start(d.servers[i]);
    for (const struct conf_listen *l = d.conf->listeners; l; l = l->next)
        log_info("kurierd", "listening on %s (%s)", l->address,
                 l->role == LISTEN_SUBMISSION ? "submission" : "mx");
    log_info("kurierd", "daemon started: kurier %s, hostname %s, config %s", KURIER_VERSION,
             d.conf->hostname, d.conf_path);
    sd_notify(0, "READY=1\nSTATUS=running"); /* systemd Type=notify; nothing without it */

    event_base_dispatch(d.base);

    log_info("kurierd", "stopped");
    metrics_set_collector(NULL, NULL);
    metrics_http_free(metrics);
    control_free(d.control);
    complaints_free(d.complaints); /* before the queue its jobs hand messages to, and
                                      before abuse, which its reports are signals for */
    remote_set_observer(d.remote, NULL, NULL);
    abuse_free(d.abuse); /* before the workers stop: cancels its spool scans */
    d.glue.abuse = NULL;
    monitor_free(d.monitor); /* cancels its lookups, stores what is left */
    monitor_notify_free(d.notify);
    policy_greylist_purge_stop();
    policy_relay_verify_purge_stop();
    queue_free(d.queue); /* cancels its remote deliveries first */
    d.queue = d.glue.queue = NULL;
    remote_free(d.remote);
    prober_free(d.prober);
    d.glue.prober = NULL;
    dns_free(d.dns);
    work_shutdown();
    egress_bench_shutdown();
    egress_listing_free();
    for (i = 0; i < d.nservers; i++) {
        smtp_server_free(d.servers[i]);
        smtp_tls_free(d.tls[i]);
        free(d.server_addrs[i]);
    }
    free(d.servers);
    free(d.server_addrs);
    free(d.tls);
    policy_policyd_shutdown(); /* after the sessions: they cancelled their requests */
    auth_free(d.auth);
    store_free(d.store);
    spool_free(d.spool);
    if (d.ev_grace) event_free(d.ev_grace);
    if (d.ev_drain) event_free(d.ev_drain);
    if (d.ev_deadline) event_free(d.ev_deadline);
    event_free(d.ev_term);
    event_free(d.ev_int);
    event_free(d.ev_hup);
    event_base_free(d.base);
    dkim_sign_unload();
    conf_unref(d.conf); /* the modules dropped theirs */
    egress_replies_free();
    conf_set_start_dir(NULL);
    free(d.conf_file);
    workdir_clear(&d.wd);
    return 0;
}
