/* conf.h: kurier.conf, nginx-like blocks of "key value;" lines with include.
 * conf_parse() is the pure tokenizer/parser (fuzzed); conf_load() applies the key
 * table (one row per key: name, type, default, limits, help) to a struct kconf.
 * The same table drives "kurier config dump" and docs/config.md. */
#ifndef KURIER_CONF_H
#define KURIER_CONF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <netinet/in.h>

struct batv_key;
struct srs_secret;
struct aliases;

/* --- the parse tree ------------------------------------------------------- */

struct conf_node {
    char *name;  /* directive name */
    char **args; /* arguments (quotes removed, escapes resolved) */
    size_t nargs;
    const char *file;           /* borrowed from the tree's file list */
    int line, col;              /* of the directive name, 1-based */
    struct conf_node *children; /* block contents or NULL */
    struct conf_node *next;
};

/* Error list: every error found, printed as "FILE:LINE:COL: message". */
struct conf_errors {
    char **msgs;
    size_t n;
};
void conf_errors_add(struct conf_errors *e, const char *file, int line, int col, const char *fmt,
                     ...) __attribute__((format(printf, 5, 6)));
void conf_errors_print(const struct conf_errors *e, FILE *out);
void conf_errors_free(struct conf_errors *e);

/* Parse text (len bytes, need not be NUL-terminated) named file. Pure: no I/O,
 * "include" is left as an ordinary node. Returns the node list (NULL for an empty
 * file); on syntax errors adds them to errs and returns what parsed. Caller frees
 * with conf_tree_free(). */
struct conf_node *conf_parse(const char *text, size_t len, const char *file,
                             struct conf_errors *errs);
void conf_tree_free(struct conf_node *n);

/* --- the effective configuration ----------------------------------------- */

enum listen_role { LISTEN_MX = 0, LISTEN_SUBMISSION };
enum listen_tls { LISTEN_TLS_NONE = 0, LISTEN_TLS_STARTTLS, LISTEN_TLS_IMPLICIT };

struct conf_net {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int prefix;
};

struct conf_listen {
    char *address; /* as written: "127.0.0.1:2525", "[::1]:25", "*:25" */
    char host[64]; /* "127.0.0.1", "::1", "" for any */
    int port;
    enum listen_role role;    /* role mx|submission (default mx) */
    enum listen_tls tls;      /* tls none|starttls|implicit (default none) */
    char *tls_cert, *tls_key; /* PEM paths; NULL = none */
    int auth;                 /* offer AUTH: default on for submission, off for mx */
    int auth_plaintext;       /* allow AUTH without TLS (default off) */
    int require_auth;         /* default on for submission */
    char *sni_certs;          /* glob of PEM files (chain + key) picked by SNI; NULL none */
    int hide_client;          /* leave the client out of our Received: header */
    int greylist;             /* enum conf_greylist (default suspicious) */
    int sender_verify;        /* enum conf_sender_verify (default off) */
    int sender_callout;       /* sender_verify also probes the sender at its MX (off) */
    /* inbound checks (docs/inbound.md), never for authenticated clients */
    char *checks;       /* optional policy checks in order, space-separated ("dnsbl rhsbl") */
    char *dnsbl_sites;  /* client IP lists: "ZONE[=FILTER][*WEIGHT] ...", NULL none */
    char *rhsbl_sites;  /* sender/HELO domain lists, same syntax, NULL none */
    int reject_score;   /* score at which a client is refused (554 5.7.1), 0 = never */
    int greylist_score; /* score at which a client is greylisted (451 4.7.1), 0 = never */
    /* pre-greeting tests (policy/pregreet.c, docs/inbound.md), role mx only */
    int pregreet_wait;       /* seconds the greeting waits; 0 = no pause, no early-talker test */
    int pregreet_action;     /* enum conf_pregreet_action (default score) */
    int early_talker_score;  /* check pregreet: the client talked before the greeting */
    int pipelining_score;    /* check pregreet: commands pipelined before EHLO offered it */
    int rdns_missing_score;  /* check rdns: no PTR record */
    int rdns_mismatch_score; /* check rdns: the PTR name does not resolve back */
    /* the spf check's action per result: a score, or CONF_ACTION_REJECT/_TEMPFAIL */
    int spf_fail, spf_softfail, spf_temperror, spf_permerror;
    /* the dmarc check's action for failing mail under p=reject / p=quarantine: a score
     * (0: only record), or CONF_ACTION_REJECT/_TEMPFAIL */
    int dmarc_reject, dmarc_quarantine;
    /* policy delegation (check "policy", src/policy/policyd.c) */
    char *policy_service;      /* "unix:/PATH" or "[inet:]HOST:PORT", NULL none */
    int policy_stage;          /* enum conf_policy_stage (default rcpt) */
    int policy_timeout;        /* seconds for one request (default 10) */
    int policy_default_action; /* enum conf_policy_default (default defer) */
    struct conf_listen *next;
};

/* What a check's result does (listen { spf_fail } ...): these, or a score. */
#define CONF_ACTION_REJECT 100001
#define CONF_ACTION_TEMPFAIL 100002

/* listen { greylist } and { sender_verify }, in the order of their choices. */
enum conf_greylist { CONF_GREY_OFF = 0, CONF_GREY_SUSPICIOUS, CONF_GREY_ALWAYS };
enum conf_state_backend { CONF_STATE_SQLITE = 0, CONF_STATE_REDIS };
/* What a check does while the shared state is unreachable (docs/cluster.md). */
enum conf_state_fail { CONF_FAIL_OPEN = 0, CONF_FAIL_CLOSED };
enum conf_sender_verify { CONF_SV_OFF = 0, CONF_SV_GREYLIST, CONF_SV_REJECT };
/* listen { pregreet_action }: what an early talker gets. */
enum conf_pregreet_action { CONF_PREGREET_SCORE = 0, CONF_PREGREET_REJECT, CONF_PREGREET_DROP };

/* listen { policy_stage } and { policy_default_action }, in the order of their choices. */
enum conf_policy_stage { CONF_PSTAGE_MAIL = 0, CONF_PSTAGE_RCPT, CONF_PSTAGE_EOM };
enum conf_policy_default { CONF_PDEF_DEFER = 0, CONF_PDEF_DUNNO };

/* directory_backend: where the directory lives (docs/postgres.md). */
enum conf_directory_backend { CONF_DIR_SQLITE = 0, CONF_DIR_POSTGRES };

/* auth { backend }: where AUTH passwords are checked. */
enum conf_auth_backend { CONF_AUTH_DIRECTORY = 0, CONF_AUTH_DOVECOT };

/* TLS towards a remote host (outbound { tls }, in the order of its choices in
 * conf_keys.c). deliver/remote.c pins it to enum smtp_client_tls. */
enum conf_out_tls { CONF_TLS_NONE = 0, CONF_TLS_MAY, CONF_TLS_ENCRYPT, CONF_TLS_VERIFY };

/* transport { tls }: "default" (outbound's tls) or a level of its own, in the order
 * of its choices in conf_keys.c. route.c maps it to enum conf_out_tls. */
enum conf_transport_tls {
    CONF_TTLS_DEFAULT = 0,
    CONF_TTLS_NONE,
    CONF_TTLS_MAY,
    CONF_TTLS_ENCRYPT,
    CONF_TTLS_VERIFY,
    CONF_TTLS_IMPLICIT /* TLS from the first byte (port 465), verified as outbound's tls */
};

/* transport DOMAIN { }: where mail for a recipient domain goes. */
struct conf_transport {
    char *domain;          /* "example.org", or ".example.org" for its subdomains too */
    char *relay;           /* relay: "HOST[:PORT] ..." in order, NULL = the domain's MX */
    int tls;               /* enum conf_transport_tls */
    int relay_domain;      /* we are MX for it: accept its mail from anyone, hand it to relay */
    int verify_recipients; /* relay_domain: probe each recipient at relay (verify { }) */
    struct conf_transport *next;
};

/* egress pool NAME { }: source addresses for remote delivery (docs/egress.md). */
struct conf_egress_source {
    char addr[64];              /* canonical text ("127.0.0.2", "2001:db8::10") */
    struct sockaddr_storage sa; /* port 0, for bind() */
    int salen;
    int weight; /* 1..1000, default 1 */
    char *ehlo; /* EHLO name from this address (should match its PTR), NULL = outbound helo */
};
enum conf_egress_fallback { CONF_EGRESS_FB_HOLD = 0, CONF_EGRESS_FB_POOL, CONF_EGRESS_FB_RELAY };
struct conf_egress_pool {
    char *name;
    struct conf_egress_source *src;
    size_t nsrc;
    /* which mail uses it (route_pool()): account beats sender domain beats listener
     * beats default; each a space-separated list or NULL */
    char *accounts;       /* authenticated logins ("bob@example.test") */
    char *sender_domains; /* envelope sender domains */
    char *listeners;      /* listen addresses as written in listen ("127.0.0.1:2587") */
    int is_default;       /* default on: mail no rule picks */
    /* when every address is benched for a destination */
    enum conf_egress_fallback fallback;
    char *fallback_arg; /* FB_POOL: the pool's name; FB_RELAY: "HOST[:PORT] ..." */
    char *file;         /* where the block is, for errors found after the whole file */
    int line, col;
    struct conf_egress_pool *next;
};

/* abuse { }: the per-account limits, in this order (abuse_soft[], abuse_hard[]). */
enum conf_abuse_limit {
    CONF_ABUSE_MESSAGES_HOUR = 0,
    CONF_ABUSE_RCPTS_HOUR,
    CONF_ABUSE_DISTINCT_DAY,
    CONF_ABUSE_RCPTS_MESSAGE,
    CONF_ABUSE_FAILED_HOUR,
    CONF_ABUSE_NLIMITS
};

struct kconf {
    atomic_int refs; /* conf_ref()/conf_unref(); 0: filled by hand, not counted */
    char *file;      /* the main file as given */

    /* top level */
    char *hostname;          /* default: gethostname() */
    char *user;              /* drop to this user when started as root (default "kurier") */
    char *state_dir;         /* default "/var/lib/kurier"; spool, db and socket live here */
    char *spool_dir;         /* default STATE/spool */
    char *maildir_root;      /* default "/var/mail/vhosts"; <root>/<domain>/<local>/Maildir */
    char *directory;         /* SQLite file, default STATE/kurier.db */
    int dir_backend;         /* enum conf_directory_backend (default sqlite) */
    char *dir_conninfo;      /* libpq connection string for backend postgres */
    char *control_socket;    /* default STATE/control.sock */
    char *locale;            /* "en" or "de" for DSN texts (default "en") */
    int workers;             /* worker threads for disk I/O (default 4) */
    char *resolver;          /* DNS forwarder "IP[@PORT]", "" = system resolv.conf */
    int reverse_dns;         /* look up client names before the greeting (default on) */
    char *relay_host;        /* smarthosts "HOST[:PORT] ..." in order, NULL = none */
    int relay_host_tls;      /* enum conf_transport_tls for the smarthosts */
    char *aliases_file;      /* local aliases in /etc/aliases format, NULL = none */
    char *local_admin;       /* where local names no alias sends elsewhere go, NULL = none */
    struct aliases *aliases; /* read from aliases_file by conf_load() for the daemon
                                (conf_read_secrets(1)); NULL otherwise */
    char *postmaster;        /* where postmaster@ goes without an alias or mailbox
                                (RFC 5321 4.5.1); default "root@HOSTNAME" */

    /* egress: the reply classifier's rules (NULL: the shipped file) and the DNS lists
     * "kurier rbl check" asks ("ZONE[=FILTER] ...", NULL: the built-in ones) */
    char *reply_rules;
    char *rbl_lists;
    char *rbl_domain_lists;

    /* outbound { }: remote delivery (deliver/remote.c) */
    char *out_helo;          /* EHLO name, NULL = hostname */
    int out_tls;             /* enum conf_out_tls (default may) */
    char *out_ca_file;       /* CA bundle for tls verify, NULL = system store */
    int out_port;            /* SMTP port of MX hosts (default 25; for tests) */
    int out_connect_timeout; /* seconds (30s) */
    int out_command_timeout; /* seconds (5m) */
    int out_data_timeout;    /* seconds (10m) */
    int out_concurrency;     /* connections per destination (20) */
    int out_idle;            /* seconds an idle connection is kept for reuse (5s) */
    int out_bench_time;      /* seconds a source address is benched after a blocklist
                                reply (4h) */
    int out_slow_time;       /* seconds a source address is slowed down after a rate-limit
                                or reputation reply (30m) */

    /* log { } */
    char *log_target; /* "stderr" or "syslog" (default "stderr") */
    char *log_name;   /* syslog program name (default "kurier") */
    int log_level;    /* enum log_level (default info) */
    char *log_debug;  /* subsystems with debug traces, "" none */
    /* what "kurier log trace" reads; NULL: the journal, else /var/log/mail.log */
    char *log_file;
    /* the metrics HTTP listener (metrics.h): "PORT", "IP:PORT"; "" none */
    char *metrics_listen;

    /* limits { } */
    size_t line_length;     /* command line incl. CRLF (default 512, RFC 5321 4.5.3.1.4) */
    size_t message_size;    /* bytes (default 50 MiB) */
    int recipients;         /* per message (default 1000) */
    int errors;             /* per session before 421 (default 20) */
    int command_timeout;    /* seconds (default 300) */
    int data_timeout;       /* seconds per data block (default 600, RFC 5321 4.5.3.2.6) */
    int connections;        /* total (default 1000) */
    int connections_per_ip; /* (default 20) */
    int hop_count;          /* Received headers before 554 5.4.6 (default 50) */
    int shutdown_grace;     /* seconds to finish sessions on SIGTERM (default 30) */

    /* queue { } */
    int retry_first;      /* seconds (default 300) */
    double retry_backoff; /* factor (default 2.0) */
    int retry_max;        /* seconds (default 4h) */
    int lifetime;         /* seconds (default 5d) */
    int delay_warning;    /* seconds (default 4h), 0 = off */
    int maildrop_scan;    /* seconds between maildrop scans (default 5) */

    /* auth { }: brute-force protection */
    int auth_max_failures;         /* failures per (address, account) in the window (10) */
    int auth_max_failures_address; /* failures per client address in the window (30) */
    int auth_window;               /* seconds (15m) */
    int auth_block_time;           /* seconds (1h) */
    int auth_delay_max;            /* seconds, longest answer delay after failures (8s) */
    int auth_backend;              /* enum conf_auth_backend (default directory) */
    char *auth_dovecot_socket;     /* Dovecot's auth-client socket (/run/dovecot/auth-client) */

    /* greylist { } (policy/greylist.c) */
    int grey_delay;                   /* seconds (5m) */
    int grey_retry_window;            /* seconds (2d) */
    int grey_lifetime;                /* seconds (36d) */
    int grey_auto_allowlist;          /* passed triplets per network, 0 off (5) */
    struct conf_net *grey_allow_nets; /* allow_networks (KT_NETS: count follows) */
    size_t ngrey_allow_nets;
    char *grey_allow_domains; /* "DOMAIN ..." or NULL */
    int grey_purge_interval;  /* seconds (1h) */

    /* batv { } (core/batv.h, policy/batv.c, deliver/remote.c) */
    char *batv_domains;         /* domains: "all" or "DOMAIN ...", NULL = BATV off */
    char *batv_key_file;        /* key_file, NULL = none */
    int batv_max_age;           /* seconds a tag is valid (7d) */
    struct batv_key *batv_keys; /* read from key_file by conf_load() (conf_apply(): none) */
    size_t nbatv_keys;

    /* srs { } (core/srs.h, deliver/remote.c, route/route.c, docs/forwarding.md) */
    char *srs_domain;               /* domain: forwarded senders are rewritten into it;
                                       NULL = SRS off */
    char *srs_secret_file;          /* secret_file, NULL = none */
    int srs_max_age;                /* seconds an address stays valid (21d) */
    struct srs_secret *srs_secrets; /* read from secret_file by conf_load() */
    size_t nsrs_secrets;
    int srs_verify_forward; /* verify_forward: probe the forward target at RCPT */

    /* state { } (store/state_redis.c, docs/cluster.md): where the policy state several
     * nodes share lives */
    int state_backend;       /* enum conf_state_backend (sqlite) */
    char *state_servers;     /* "HOST[:PORT] ..." Redis servers (or Sentinels); NULL: local */
    char *state_sentinel;    /* sentinel_master: the servers are Sentinels; NULL: Redis */
    char *state_prefix;      /* key prefix ("kurier:") */
    int state_timeout_ms;    /* connect and command timeout (500) */
    int state_refresh;       /* seconds between reads of shared locks and benches (1) */
    int state_greylist_fail; /* enum conf_state_fail (open) */
    int state_rate_fail;     /* enum conf_state_fail (open) */
    int state_auth_fail;     /* enum conf_state_fail (open) */

    /* Redis AUTH (password_file, sentinel_password_file: NULL = none) and the passwords
     * conf_load() read from them (secrets on; else NULL: store_attach_redis() reads) */
    char *state_password_file;
    char *state_sentinel_password_file;
    char *state_password;
    char *state_sentinel_password;

    /* monitor { } (egress/monitor.c, docs/egress.md): our sending addresses against DNS
     * lists, on a timer */
    struct conf_net *mon_addresses; /* addresses (KT_NETS: count follows); none = off */
    size_t nmon_addresses;
    char *mon_lists;         /* "ZONE[=FILTER] ..." or NULL: the built-in set */
    char *mon_delist;        /* "ZONE URL ..." (KT_PAIRS) or NULL */
    int mon_interval;        /* seconds between rounds (15m) */
    int mon_hold;            /* seconds an address must stay unlisted before it is clear (1h) */
    int mon_concurrency;     /* DNS queries in flight (16) */
    int mon_mail;            /* mail each change to mon_mail_to (on) */
    char *mon_mail_to;       /* NULL: postmaster */
    char *mon_webhook;       /* "http://HOST[:PORT]/PATH" or NULL */
    int mon_webhook_timeout; /* seconds (10s) */

    /* verify { }: SMTP probes of relay-domain recipients (policy/relay_verify.c) */
    int verify_timeout;        /* seconds a probe may take, waiting included (30s) */
    int verify_concurrency;    /* probes at once per downstream host (4) */
    int verify_positive_ttl;   /* seconds an existing recipient is remembered (1d) */
    int verify_negative_ttl;   /* seconds a refused recipient is remembered (1h) */
    int verify_purge_interval; /* seconds between purges of expired answers (1h) */

    /* dkim { }: signing keys (queue/dkim_sign.c, docs/dkim.md) */
    char *dkim_key_dir;        /* DIR/DOMAIN/SELECTOR.{rsa,ed25519}.pem; default STATE/dkim */
    char *dkim_signing_domain; /* keys for From: domains without their own; NULL: none */

    /* abuse { }: containment of compromised sending accounts (abuse/abuse.c) */
    int abuse_soft[CONF_ABUSE_NLIMITS]; /* by enum conf_abuse_limit; 0 = no limit */
    int abuse_hard[CONF_ABUSE_NLIMITS];
    int abuse_hour;               /* seconds of an "hour" window (1h; shorter in tests) */
    int abuse_day;                /* seconds of a "day" window (1d) */
    char *abuse_limits_file;      /* per-account and per-domain limits, or NULL */
    char *abuse_spamtraps;        /* "trap@example.org example.net ..." or NULL */
    int abuse_lock_score;         /* a score that reaches it locks (100) */
    int abuse_score_window;       /* seconds a signal's score counts (1d) */
    int abuse_spamtrap_score;     /* (100) */
    int abuse_complaint_score;    /* a complaint matched to the account (50) */
    double abuse_baseline_factor; /* volume above factor x baseline is a signal (10) */
    int abuse_baseline_min;       /* ... and above this many messages an hour (50) */
    int abuse_baseline_hours;     /* hours of history the baseline looks at (672) */
    int abuse_baseline_score;     /* (50) */
    int abuse_auth_failures;      /* failures before a success that make a signal (10) */
    int abuse_auth_score;         /* (30) */
    int abuse_networks;           /* client networks of one account in networks_window (5) */
    int abuse_networks_window;    /* seconds (1h) */
    int abuse_networks_score;     /* (30) */
    char *abuse_mail_to;          /* lock notices; NULL: postmaster */
    int abuse_learn_messages;     /* messages that only teach domains and senders (20) */
    int abuse_new_domains;        /* never-written domains in an hour: a signal (20; 0 off) */
    int abuse_new_domains_score;  /* (30) */
    int abuse_new_senders;        /* unusual envelope senders in an hour (3; 0 off) */
    int abuse_new_senders_score;  /* (30) */
    int abuse_replies_min;        /* remote replies in an hour before shares count (20) */
    int abuse_unknown_share;      /* percent of user-unknown replies: a signal (50) */
    int abuse_unknown_score;      /* (50) */
    int abuse_blocklist_share;    /* percent of blocklist replies: a signal (20) */
    int abuse_blocklist_score;    /* (50) */
    char *abuse_owners_file;      /* "NAME ADDRESS" lines: the owner's notice, or NULL */

    /* complaints { } (abuse/complaints.c, docs/abuse.md) */
    char *complaint_addresses; /* "a@b c@d" (KT_ADDRS) or NULL: no intake */
    int complaint_retention;   /* seconds the sent-mail record is kept (30d) */

    /* relay { } */
    struct conf_net *trusted; /* trusted_networks: may relay without AUTH (default none) */
    size_t ntrusted;

    struct conf_listen *listeners;
    struct conf_transport *transports; /* in file order; the longest match wins */
    struct conf_egress_pool *pools;    /* egress pool NAME { }, in file order */
};

/* The pool called name, or NULL. */
const struct conf_egress_pool *conf_egress_pool_find(const struct kconf *c, const char *name);

/* Read FILE (following includes, relative to the including file's folder; glob
 * patterns allowed), apply defaults and limits, resolve relative paths against the
 * current directory. Returns a new kconf holding one reference (the caller's), or
 * NULL with every error in errs. */
struct kconf *conf_load(const char *file, struct conf_errors *errs);
/* Lifetime: whoever keeps a configuration beyond the call that handed it over (a
 * session, a job, a module's current configuration) holds a reference of its own.
 * conf_ref() adds one and returns c; conf_unref() drops one and frees c with the
 * last. Both are atomic (any thread may drop a reference), and NULL does nothing.
 * A kconf filled by hand (refs 0, in tests) is not counted: both leave it alone and
 * its owner keeps it alive for as long as anyone uses it. Change a configuration
 * (conf_map_paths()) only while the caller's reference is the only one. */
const struct kconf *conf_ref(const struct kconf *c);
void conf_unref(const struct kconf *c);
/* Drop the reference conf_load()/conf_apply() gave: conf_unref(). */
void conf_free(struct kconf *c);
/* From now on conf_load() resolves relative paths in files against dir, not the
 * current folder (kurierd: the folder it was started in, once it works inside its
 * state folder); NULL: the current folder again. dir is copied. */
void conf_set_start_dir(const char *dir);
/* From now on conf_load() also reads the files with secrets the configuration
 * names (batv { key_file }), and the aliases file (aliases), and fails when it
 * cannot or they are bad (on 1; 0: not, the default).
 * Only the daemon (and commands that act like it, check-client and config check)
 * turn it on: sendmail, mailq and the directory commands run as users who must not
 * read the secrets. */
void conf_read_secrets(int on);
/* Every path setting of c, in every block (each key of type path in the key table):
 * replaced by fn(path, arg) when that returns a new string (c takes it), kept when
 * it returns NULL. */
void conf_map_paths(struct kconf *c, char *(*fn)(const char *path, void *arg), void *arg);
/* Added: apply an already parsed tree (from conf_parse(); nodes' file names are used
 * in messages) as conf_load() does, without reading files: an "include" node is an
 * error. Returns a new kconf (c->file = file), or NULL with every error in errs.
 * The tree stays the caller's. For tests and the fuzzer. */
struct kconf *conf_apply(const struct conf_node *tree, const char *file, struct conf_errors *errs);
/* Print the effective configuration in kurier.conf syntax, every key with its value
 * (defaults included), each with a "# help" comment. */
void conf_dump(const struct kconf *c, FILE *out);
/* Print docs/config.md (generated from the key table). */
void conf_doc_markdown(FILE *out);
/* The same reference as the manual page kurier.conf(5), in roff (man macros). */
void conf_doc_man(FILE *out, const char *version, const char *date);

/* One relay host as the config file takes it: "host", "host:port", "192.0.2.1:587",
 * "[2001:db8::1]:25" (port 1-65535). 0 ok, -1 with why naming the problem. */
int conf_host_check(const char *s, char *why, size_t whylen);
/* An http:// or https:// URL (monitor { webhook }): "http[s]://HOST[:PORT][/PATH]",
 * HOST a name, an IPv4 address or [IPv6] (brackets removed in host). *tls 1 for
 * https; *port 80 (443 for https) when none; path "/" when none, else the path with
 * its query. 0 ok, -1 with why. */
int conf_url_parse(const char *url, int *tls, char *host, size_t hostsize, int *port, char *path,
                   size_t pathsize, char *why, size_t whylen);
/* A comma-separated list of such hosts ("a.example:587, b.example"), as "kurier relay
 * add" takes it; spaces only around the commas. 0 ok, -1 with why. */
int conf_hostlist_check(const char *list, char *why, size_t whylen);

/* One DNS list site of dnsbl_sites/rhsbl_sites, in Postfix's postscreen_dnsbl_sites
 * syntax: ZONE[=FILTER][*WEIGHT]. FILTER is an IPv4 pattern whose octets are a number
 * or a bracketed list of numbers and ranges ("127.0.0.[2..11]", "127.0.[0..255].[1;3]");
 * without one, any answer in 127.0.0.0/8 matches. WEIGHT is an integer, negative for
 * allowlists (default 1). */
struct conf_dnsbl_site {
    char zone[254];            /* lowercased, no trailing dot */
    unsigned char mask[4][32]; /* bit v of mask[i]: octet i may be v */
    int weight;
};
/* Parse one site (s up to the end of the string). 0 done; -1 with why filled. */
int conf_dnsbl_site_parse(const char *s, struct conf_dnsbl_site *out, char *why, size_t whylen);
/* 1 when the answer address a (4 bytes, network order) passes the site's filter. */
int conf_dnsbl_site_match(const struct conf_dnsbl_site *site, const unsigned char a[4]);

/* A policy service address (listen policy_service), as Postfix's check_policy_service
 * takes it: "unix:/PATH", "inet:HOST:PORT" or "HOST:PORT", HOST an IPv4 address,
 * [IPv6] or localhost. Fills *sa and *salen. 0 done; -1 with why filled. */
int conf_policy_service_parse(const char *s, struct sockaddr_storage *sa, socklen_t *salen,
                              char *why, size_t whylen);

/* Parse "1.2.3.0/24", "::1", "2001:db8::/32". 0 done, -1 bad. */
int conf_net_parse(const char *s, struct conf_net *out);
/* 1 when the sockaddr is inside net, else 0. */
int conf_net_match(const struct conf_net *net, const struct sockaddr *sa);

#endif
