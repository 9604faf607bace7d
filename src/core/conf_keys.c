/* conf_keys.c: the settings of kurier.conf, one row each: block, name, type,
 * default, limits, help. conf.c turns this table into the parser, config dump and
 * docs/config.md. */
#include "core/compat.h"

#include "core/conf.h"
#include "core/conf_keys.h"

const char *const conf_block_names[KB_COUNT] = {
    "",         "log",        "limits", "queue",   "relay",  "auth",
    "outbound", "greylist",   "batv",   "monitor", "verify", "dkim",
    "abuse",    "complaints", "srs",    "state",   "listen", "transport"};

#define KC(f) offsetof(struct kconf, f)
#define KL(f) offsetof(struct conf_listen, f)
#define KT(f) offsetof(struct conf_transport, f)
#define MIN_ 60.0
#define HOUR_ 3600.0
#define DAY_ 86400.0

const struct conf_key conf_keys[] = {
    {KB_MAIN, "hostname", KT_HOST, NULL, "the system host name", 0, 0, NULL, KC(hostname),
     "Name of this host in the greeting, EHLO and Received headers; should match the PTR "
     "record of the sending address."},
    {KB_MAIN, "user", KT_STR, "kurier", NULL, 0, 0, NULL, KC(user),
     "Unprivileged user to switch to after binding ports, when started as root."},
    {KB_MAIN, "state_dir", KT_PATH, "/var/lib/kurier", NULL, 0, 0, NULL, KC(state_dir),
     "Folder for state; spool, directory database and control socket live here by default."},
    {KB_MAIN, "spool_dir", KT_PATH, NULL, "state_dir/spool", 0, 0, NULL, KC(spool_dir),
     "Folder of the mail queue (messages and their envelopes)."},
    {KB_MAIN, "maildir_root", KT_PATH, "/var/mail/vhosts", NULL, 0, 0, NULL, KC(maildir_root),
     "Local mailboxes are delivered to ROOT/DOMAIN/LOCALPART/Maildir."},
    {KB_MAIN, "directory", KT_PATH, NULL, "state_dir/kurier.db", 0, 0, NULL, KC(directory),
     "SQLite file holding domains, mailboxes, aliases and credentials (and, always, this "
     "node's policy state)."},
    {KB_MAIN, "directory_backend", KT_ENUM, "sqlite", NULL, 0, 0, "sqlite|postgres",
     KC(dir_backend),
     "Where domains, mailboxes, aliases, sender grants and relay routes live: sqlite (the "
     "directory file) or postgres (directory_conninfo; shared by every node, docs/postgres.md). "
     "Read at start-up."},
    {KB_MAIN, "directory_conninfo", KT_STR, "", NULL, 0, 0, NULL, KC(dir_conninfo),
     "libpq connection string of the PostgreSQL directory, e.g. \"host=db.example dbname=kurier "
     "user=kurier\" (keep a password in a file named with passfile=, not here). Read at start-up."},
    {KB_MAIN, "control_socket", KT_PATH, NULL, "state_dir/control.sock", 0, 0, NULL,
     KC(control_socket), "Unix socket the kurier command talks to the daemon through."},
    {KB_MAIN, "locale", KT_CHOICE, "en", NULL, 0, 0, "en|de", KC(locale),
     "Language of delivery status notifications (bounces and delay warnings)."},
    {KB_MAIN, "workers", KT_INT, "4", NULL, 1, 256, NULL, KC(workers),
     "Threads for disk writes and fsync."},
    {KB_MAIN, "reverse_dns", KT_BOOL, "on", NULL, 0, 0, NULL, KC(reverse_dns),
     "Look up each SMTP client's name (PTR, confirmed by its A/AAAA record) before the "
     "greeting; off logs every client as unknown[IP]."},
    {KB_MAIN, "resolver", KT_STR, "", "the system resolver (/etc/resolv.conf)", 0, 0, NULL,
     KC(resolver), "DNS forwarder as IP or IP@PORT (e.g. 127.0.0.1@5353); \"\" uses the system's."},
    {KB_MAIN, "relay_host", KT_HOSTLIST, NULL, "none (deliver to the MX hosts)", 0, 0, NULL,
     KC(relay_host),
     "Smarthost for all remote mail as HOST[:PORT] (port 25 by default); further hosts are "
     "fallbacks tried in order when the first is unreachable."},
    {KB_MAIN, "relay_host_tls", KT_ENUM, "default", NULL, 0, 0,
     "default|none|may|encrypt|verify|implicit", KC(relay_host_tls),
     "TLS towards the relay_host smarthosts; default takes outbound's tls. implicit speaks TLS "
     "from the first byte (submissions port 465, RFC 8314), the certificate checked when "
     "outbound's tls is verify."},
    {KB_MAIN, "postmaster", KT_ADDR, NULL, "root@hostname", 0, 0, NULL, KC(postmaster),
     "Where mail for postmaster goes when its domain has no alias, mailbox or catch-all "
     "for it (RFC 5321 4.5.1: postmaster of every hosted domain, and a bare RCPT TO "
     "Postmaster taken as postmaster@hostname, are always accepted): a mailbox, an alias "
     "or a remote address. An address in hostname is refused when hostname is not a "
     "hosted domain (mail to it would come back here), unless aliases or local_admin is "
     "set: then it is a local name, resolved through them."},
    {KB_MAIN, "aliases", KT_PATH, NULL, "none", 0, 0, NULL, KC(aliases_file),
     "Local aliases in /etc/aliases format (root: admin@example.org): mail to a local name "
     "(an address at hostname or localhost that is not a hosted domain, or an unqualified one "
     "from sendmail) goes where its alias says, else to local_admin, and never to relay_host. "
     "Read at start and on SIGHUP (newaliases checks it and makes the daemon reload); a bad "
     "file stops the start, and on reload keeps the aliases read before. Command, file and "
     ":include: targets are refused."},
    {KB_MAIN, "local_admin", KT_ADDR, NULL, "none", 0, 0, NULL, KC(local_admin),
     "Where mail for a local name goes when the aliases file has no entry for it (cron mail "
     "for www-data, root without an alias): a mailbox, a directory alias or a remote address. "
     "Without it such mail is refused as an unknown user (5.1.1). Setting it or aliases turns "
     "on local-name handling."},

    {KB_MAIN, "reply_rules", KT_PATH, NULL, "PREFIX/share/kurier/replies.rules (shipped)", 0, 0,
     NULL, KC(reply_rules),
     "Rules file of the egress reply classifier, which sorts remote replies into "
     "ip-blocklist, rate-limit, user-unknown, ... (docs/egress.md). Read at start and on "
     "SIGHUP; a bad file stops the start, and on reload keeps the rules loaded before."},
    {KB_MAIN, "rbl_lists", KT_DNSBL, NULL, "the built-in lists (kurier rbl lists)", 0, 0, NULL,
     KC(rbl_lists),
     "DNS lists of IPv4/IPv6 addresses that \"kurier rbl check\" queries, as ZONE[=FILTER] "
     "(the dnsbl_sites syntax; a FILTER limits which answers count as listed, a *WEIGHT is "
     "ignored); repeated lines add up."},
    {KB_MAIN, "rbl_domain_lists", KT_DNSBL, NULL, "the built-in domain lists", 0, 0, NULL,
     KC(rbl_domain_lists),
     "DNS lists of domains that \"kurier rbl check DOMAIN\" queries, same syntax as "
     "rbl_lists."},
    {KB_MAIN, "metrics_listen", KT_STR, "", NULL, 0, 0, NULL, KC(metrics_listen),
     "Address of the HTTP listener serving Prometheus metrics at /metrics and a health check "
     "at /healthz: \"PORT\" (on 127.0.0.1), \"IP:PORT\" or \"[IPv6]:PORT\"; \"\" (the "
     "default) for none. It has no authentication: keep it on loopback or a private network."},

    {KB_LOG, "target", KT_CHOICE, "stderr", NULL, 0, 0, "stderr|syslog", KC(log_target),
     "Where log lines go."},
    {KB_LOG, "name", KT_STR, "kurier", NULL, 0, 0, NULL, KC(log_name),
     "Program name in syslog lines (NAME/smtpd[pid])."},
    {KB_LOG, "level", KT_ENUM, "info", NULL, 0, 0, "err|warn|info|debug", KC(log_level),
     "Lowest level that is logged."},
    {KB_LOG, "debug", KT_STR, "", NULL, 0, 0, NULL, KC(log_debug),
     "Subsystems with debug traces, e.g. \"smtp,queue\" or \"all\"; \"\" for none."},
    {KB_LOG, "file", KT_PATH, NULL, "the journal, else /var/log/mail.log", 0, 0, NULL, KC(log_file),
     "The file kurier's lines end up in (where syslog writes mail lines, or where stderr is "
     "sent), which \"kurier log trace\" reads; kurierd itself does not write it."},

    {KB_LIMITS, "line_length", KT_SIZE, "512", NULL, 512, 1048576, NULL, KC(line_length),
     "Longest command line including CRLF (RFC 5321 4.5.3.1.4: at least 512)."},
    {KB_LIMITS, "message_size", KT_SIZE, "50M", NULL, 1024, 4294967296.0, NULL, KC(message_size),
     "Largest message accepted, in bytes (announced with EHLO SIZE)."},
    {KB_LIMITS, "recipients", KT_INT, "1000", NULL, 1, 100000, NULL, KC(recipients),
     "Recipients per message; more get 452 (RFC 5321 4.5.3.1.8: at least 100)."},
    {KB_LIMITS, "errors", KT_INT, "20", NULL, 1, 1000, NULL, KC(errors),
     "Bad commands per session before the server says 421 and closes."},
    {KB_LIMITS, "command_timeout", KT_DUR, "5m", NULL, 1, HOUR_, NULL, KC(command_timeout),
     "Idle time allowed while waiting for a command, and for a client to read its replies "
     "(RFC 5321 4.5.3.2.7: 5m)."},
    {KB_LIMITS, "data_timeout", KT_DUR, "10m", NULL, 1, 2 * HOUR_, NULL, KC(data_timeout),
     "Idle time allowed while receiving message data (RFC 5321 4.5.3.2.6)."},
    {KB_LIMITS, "connections", KT_INT, "1000", NULL, 1, 1000000, NULL, KC(connections),
     "Concurrent inbound connections in total."},
    {KB_LIMITS, "connections_per_ip", KT_INT, "20", NULL, 1, 1000000, NULL, KC(connections_per_ip),
     "Concurrent inbound connections from one client address."},
    {KB_LIMITS, "hop_count", KT_INT, "50", NULL, 1, 1000, NULL, KC(hop_count),
     "Received headers a message may carry before it is refused as a loop (554 5.4.6)."},
    {KB_LIMITS, "shutdown_grace", KT_DUR, "30s", NULL, 0, HOUR_, NULL, KC(shutdown_grace),
     "Time sessions get to finish after SIGTERM."},

    {KB_QUEUE, "retry_first", KT_DUR, "5m", NULL, 1, DAY_, NULL, KC(retry_first),
     "Wait before the first retry of a deferred recipient."},
    {KB_QUEUE, "retry_backoff", KT_DOUBLE, "2", NULL, 1, 10, NULL, KC(retry_backoff),
     "Each further wait is the previous one times this factor."},
    {KB_QUEUE, "retry_max", KT_DUR, "4h", NULL, 1, 7 * DAY_, NULL, KC(retry_max),
     "Longest wait between two retries."},
    {KB_QUEUE, "lifetime", KT_DUR, "5d", NULL, 5, 30 * DAY_, NULL, KC(lifetime),
     "Time after which an undeliverable message is bounced; a retry that would come later "
     "is made when it ends."},
    {KB_QUEUE, "delay_warning", KT_DUR, "4h", NULL, 0, 30 * DAY_, NULL, KC(delay_warning),
     "Time after which the sender gets a delay notice; 0 turns it off."},
    {KB_QUEUE, "maildrop_scan", KT_DUR, "5s", NULL, 1, HOUR_, NULL, KC(maildrop_scan),
     "Interval between scans of the maildrop folder for locally submitted mail."},

    {KB_RELAY, "trusted_networks", KT_NETS, NULL, "none", 0, 0, NULL, KC(trusted),
     "Client networks that may relay without AUTH (CIDR, IPv4 or IPv6; repeated lines "
     "add up); keep it short."},

    {KB_AUTH, "max_failures", KT_INT, "10", NULL, 1, 100000, NULL, KC(auth_max_failures),
     "Failed logins for one account from one client address within auth window before "
     "that account is refused to that address for block_time (454 4.7.0). Never per "
     "account alone: nobody can lock a user out from elsewhere."},
    {KB_AUTH, "max_failures_address", KT_INT, "30", NULL, 1, 100000, NULL,
     KC(auth_max_failures_address),
     "Failed logins from one client address (IPv6: one /64), whatever the accounts, "
     "within auth window before the address is refused for block_time (454 4.7.0)."},
    {KB_AUTH, "window", KT_DUR, "15m", NULL, 1, DAY_, NULL, KC(auth_window),
     "Time over which failed logins are counted."},
    {KB_AUTH, "block_time", KT_DUR, "1h", NULL, 1, 7 * DAY_, NULL, KC(auth_block_time),
     "How long a client address, or an account from it, stays refused after too many "
     "failures (list and lift blocks with kurier auth blocks)."},
    {KB_AUTH, "delay_max", KT_DUR, "8s", NULL, 0, MIN_, NULL, KC(auth_delay_max),
     "Longest answer delay after failed logins (grows 1s, 2s, 4s, ... per failure)."},
    {KB_AUTH, "backend", KT_ENUM, "directory", NULL, 0, 0, "directory|dovecot", KC(auth_backend),
     "Where AUTH passwords are checked: directory (kurier's mailboxes) or dovecot (Dovecot's "
     "authentication socket, as Postfix's smtpd_sasl_type = dovecot; docs/submission.md). "
     "Read at start-up."},
    {KB_AUTH, "dovecot_socket", KT_PATH, "/run/dovecot/auth-client", NULL, 0, 0, NULL,
     KC(auth_dovecot_socket),
     "Dovecot's auth-client socket (service auth { unix_listener auth-client { } }) for "
     "backend dovecot; the daemon's user must be allowed to connect."},

    {KB_OUTBOUND, "helo", KT_HOST, NULL, "hostname", 0, 0, NULL, KC(out_helo),
     "Name we give in EHLO/HELO to remote servers."},
    {KB_OUTBOUND, "tls", KT_ENUM, "may", NULL, 0, 0, "none|may|encrypt|verify", KC(out_tls),
     "STARTTLS towards remote servers: may uses it when offered, encrypt requires it, verify "
     "also requires a valid certificate for the host name; relays given a login always get "
     "at least encrypt."},
    {KB_OUTBOUND, "ca_file", KT_PATH, NULL, "the system store", 0, 0, NULL, KC(out_ca_file),
     "CA certificates (PEM) for tls verify."},
    {KB_OUTBOUND, "port", KT_INT, "25", NULL, 1, 65535, NULL, KC(out_port),
     "TCP port of MX hosts and of relays given without a port. Only tests change it."},
    {KB_OUTBOUND, "connect_timeout", KT_DUR, "30s", NULL, 1, 10 * MIN_, NULL,
     KC(out_connect_timeout), "Time to set up a connection and get the greeting."},
    {KB_OUTBOUND, "command_timeout", KT_DUR, "5m", NULL, 1, HOUR_, NULL, KC(out_command_timeout),
     "Time to wait for the reply to a command (RFC 5321 4.5.3.2: 5m)."},
    {KB_OUTBOUND, "data_timeout", KT_DUR, "10m", NULL, 1, 2 * HOUR_, NULL, KC(out_data_timeout),
     "Time to send the message and get the final reply (RFC 5321 4.5.3.2.6: 10m)."},
    {KB_OUTBOUND, "concurrency", KT_INT, "20", NULL, 1, 10000, NULL, KC(out_concurrency),
     "Connections at once to one destination (host, port, TLS and login); more jobs wait."},
    {KB_OUTBOUND, "idle_time", KT_DUR, "5s", NULL, 0, 10 * MIN_, NULL, KC(out_idle),
     "How long an idle connection is kept for the next message to the same destination."},
    {KB_OUTBOUND, "bench_time", KT_DUR, "4h", NULL, 60, 30 * DAY_, NULL, KC(out_bench_time),
     "How long a source address of an egress pool is benched for a receiver (its MX "
     "host's organisation) after that receiver refused it as blocklisted (docs/egress.md)."},
    {KB_OUTBOUND, "slow_time", KT_DUR, "30m", NULL, 1, 7 * DAY_, NULL, KC(out_slow_time),
     "How long a source address sends to a receiver with one connection at a time, and "
     "only when no other address of its pool may, after a rate-limit or reputation reply."},

    {KB_GREYLIST, "delay", KT_DUR, "5m", NULL, 1, DAY_, NULL, KC(grey_delay),
     "How long a new (client network, sender, recipient) triplet is refused with 451 4.7.1 "
     "before a retry is accepted."},
    {KB_GREYLIST, "retry_window", KT_DUR, "2d", NULL, 1, 30 * DAY_, NULL, KC(grey_retry_window),
     "Time after the delay within which the retry must come; a later retry starts over."},
    {KB_GREYLIST, "lifetime", KT_DUR, "36d", NULL, 1, 365 * DAY_, NULL, KC(grey_lifetime),
     "How long a passed triplet, and an auto-allowlisted network, are remembered after they "
     "were last seen."},
    {KB_GREYLIST, "auto_allowlist", KT_INT, "5", NULL, 0, 100000, NULL, KC(grey_auto_allowlist),
     "Passed retries (triplets) after which mail from a client network (/24, /64) is no "
     "longer greylisted; 0 turns it off."},
    {KB_GREYLIST, "allow_networks", KT_NETS, NULL, "none", 0, 0, NULL, KC(grey_allow_nets),
     "Client networks never greylisted (CIDR; repeated lines add up), e.g. big providers "
     "that retry from other addresses."},
    {KB_GREYLIST, "allow_domains", KT_HOSTLIST, NULL, "none", 0, 0, NULL, KC(grey_allow_domains),
     "Envelope sender domains never greylisted (subdomains included)."},
    {KB_GREYLIST, "purge_interval", KT_DUR, "1h", NULL, 1, DAY_, NULL, KC(grey_purge_interval),
     "How often expired greylisting entries are deleted from the directory database."},

    {KB_BATV, "domains", KT_HOSTLIST, NULL, "none (BATV off)", 0, 0, NULL, KC(batv_domains),
     "Domains with BATV (docs/inbound.md): mail our users send from them to remote hosts "
     "gets a signed envelope sender prvs=KDDDSSSSSS=user@domain, and bounces (null sender) "
     "to their users are accepted only at such a signed address; all for every domain we "
     "host. Needs key_file."},
    {KB_BATV, "key_file", KT_PATH, NULL, "none", 0, 0, NULL, KC(batv_key_file),
     "File of BATV secrets, one \"K SECRET\" line per key (K a key number 0-9, SECRET 16 to "
     "256 bytes), newest first: the first signs, all verify (key rotation). Must not be "
     "readable by others (chmod 600 or 640); read by the daemon at start and on reload, and by "
     "config check and check-client."},
    {KB_BATV, "max_age", KT_DUR, "7d", NULL, DAY_, 30 * DAY_, NULL, KC(batv_max_age),
     "How long a signed sender stays valid for bounces, in whole days (rounded up)."},

    {KB_SRS, "domain", KT_HOST, NULL, "none (SRS off)", 0, 0, NULL, KC(srs_domain),
     "Domain forwarded senders are rewritten into (docs/forwarding.md): mail from another "
     "domain that an alias or mailbox forward sends to a remote address leaves with the "
     "envelope sender SRS0=HHHH=TT=domain=local@DOMAIN, and bounces to such addresses are "
     "checked and sent back to the original sender. Usually one of our hosted domains; its MX "
     "must point here. Needs secret_file."},
    {KB_SRS, "secret_file", KT_PATH, NULL, "none", 0, 0, NULL, KC(srs_secret_file),
     "File of SRS secrets, one per line (16 to 256 bytes, as postsrsd's secrets file), newest "
     "first: the first signs, all verify (rotation). Must not be readable by others (chmod 600 "
     "or 640); read at start and on reload."},
    {KB_SRS, "max_age", KT_DUR, "21d", NULL, DAY_, 1000 * DAY_, NULL, KC(srs_max_age),
     "How long a rewritten sender stays valid for bounces, in whole days (rounded up; "
     "postsrsd's default is 21 days)."},
    {KB_SRS, "verify_forward", KT_BOOL, "on", NULL, 0, 0, NULL, KC(srs_verify_forward),
     "Ask the forward target's server at RCPT time whether it takes the address (with the "
     "relay verify prober), so its refusal becomes our 5xx instead of a bounce later."},

    {KB_STATE, "backend", KT_ENUM, "sqlite", NULL, 0, 0, "sqlite|redis", KC(state_backend),
     "Where policy state lives: sqlite, the directory's file (one node); redis, shared by "
     "every node of a cluster (greylisting, rate and AUTH failure counters, account locks "
     "and their evidence, egress benches, blocklist listings, probe answers; "
     "docs/cluster.md)."},
    {KB_STATE, "servers", KT_HOSTLIST, NULL, "127.0.0.1:6379", 0, 0, NULL, KC(state_servers),
     "Redis servers as HOST[:PORT] (port 6379; 26379 with sentinel_master): the first that "
     "answers as a master is used; with sentinel_master, the Sentinels to ask for it."},
    {KB_STATE, "sentinel_master", KT_STR, NULL, "none (servers are Redis servers)", 0, 0, NULL,
     KC(state_sentinel),
     "Name of the master the Sentinels in servers watch (SENTINEL get-master-addr-by-name); "
     "asked again at each reconnection, so a failover is followed."},
    {KB_STATE, "password_file", KT_PATH, NULL, "none (no AUTH)", 0, 0, NULL,
     KC(state_password_file),
     "File holding the Redis password (requirepass; its first line), sent with AUTH on every "
     "connection to a Redis server. Must not be readable by others (chmod 600 or 640); read by "
     "the daemon at start, as root (a change needs a restart), and by the kurier commands that "
     "read the shared state. hiredis in Debian 12 has no TLS: keep Redis on a private network "
     "or behind stunnel or spiped (docs/cluster.md)."},
    {KB_STATE, "sentinel_password_file", KT_PATH, NULL, "none (no AUTH)", 0, 0, NULL,
     KC(state_sentinel_password_file),
     "As password_file, for the Sentinels in servers (their requirepass) when sentinel_master "
     "is set."},
    {KB_STATE, "prefix", KT_STR, "kurier:", NULL, 0, 0, NULL, KC(state_prefix),
     "Prefix of every Redis key, so several clusters can share one Redis."},
    {KB_STATE, "timeout_ms", KT_INT, "500", NULL, 10, 60000, NULL, KC(state_timeout_ms),
     "Milliseconds a connection or one command to Redis may take; then Redis counts as down "
     "and is tried again after a backoff (100 ms doubling to 5 s)."},
    {KB_STATE, "refresh", KT_DUR, "1s", NULL, 1, 3600, NULL, KC(state_refresh),
     "How often each node reads the shared account locks and egress benches."},
    {KB_STATE, "greylist_fail", KT_ENUM, "open", NULL, 0, 0, "open|closed", KC(state_greylist_fail),
     "Greylisting while Redis is unreachable: open passes the mail (logged, counted in "
     "kurier_state_unavailable_total); closed answers 451."},
    {KB_STATE, "rate_fail", KT_ENUM, "open", NULL, 0, 0, "open|closed", KC(state_rate_fail),
     "Per-account rate limits while Redis is unreachable: open counts on this node only "
     "(logged, counted); closed answers 451 to authenticated MAIL and RCPT."},
    {KB_STATE, "auth_fail", KT_ENUM, "open", NULL, 0, 0, "open|closed", KC(state_auth_fail),
     "AUTH failure counters while Redis is unreachable: open counts on this node only; "
     "closed answers AUTH with 454 (temporary failure). Locked accounts stay refused either "
     "way (each node keeps the locks it knows)."},

    {KB_MONITOR, "addresses", KT_NETS, NULL, "none (monitoring off)", 0, 0, NULL, KC(mon_addresses),
     "Our sending (egress) addresses to look up on the DNS lists, IPv4 or IPv6; a network "
     "stands for each of its addresses (at most 256 in all); repeated lines add up."},
    {KB_MONITOR, "lists", KT_DNSBL, NULL,
     "zen.spamhaus.org bl.spamcop.net b.barracudacentral.org psbl.surriel.com "
     "bl.mailspike.net dnsbl-1.uceprotect.net",
     0, 0, NULL, KC(mon_lists),
     "DNS lists to watch as ZONE[=FILTER] (dnsbl_sites syntax; weights are ignored): an "
     "answer the filter passes is a listing. Answers outside 127.0.0.0/8 or in "
     "127.255.255.252-255 are never listings: the state is unknown and a warning is "
     "logged. Repeated lines add up."},
    {KB_MONITOR, "delist", KT_PAIRS, NULL, "built in for the common lists", 0, 0, NULL,
     KC(mon_delist),
     "A list's delisting page as ZONE URL ($ip in the URL becomes the address), given in "
     "reports; repeated lines add up and replace the built-in page of that list."},
    {KB_MONITOR, "interval", KT_DUR, "15m", NULL, 1, DAY_, NULL, KC(mon_interval),
     "Time from the start of one round of lookups to the next."},
    {KB_MONITOR, "hold", KT_DUR, "1h", NULL, 0, 30 * DAY_, NULL, KC(mon_hold),
     "How long a listed address must be seen unlisted before it counts as clear again."},
    {KB_MONITOR, "concurrency", KT_INT, "16", NULL, 1, 256, NULL, KC(mon_concurrency),
     "DNS queries in flight at once."},
    {KB_MONITOR, "mail", KT_BOOL, "on", NULL, 0, 0, NULL, KC(mon_mail),
     "Mail a report of each change (in the language of locale) to mail_to."},
    {KB_MONITOR, "mail_to", KT_ADDR, NULL, "postmaster", 0, 0, NULL, KC(mon_mail_to),
     "Who gets the reports."},
    {KB_MONITOR, "webhook", KT_STR, NULL, "none", 0, 0, NULL, KC(mon_webhook),
     "http://HOST[:PORT]/PATH or https://... that gets each change as a JSON POST (https: "
     "the certificate is verified against outbound's ca_file or the system store); "
     "failures are logged, never retried."},
    {KB_MONITOR, "webhook_timeout", KT_DUR, "10s", NULL, 1, 5 * MIN_, NULL, KC(mon_webhook_timeout),
     "Time a webhook POST may take."},

    {KB_ABUSE, "soft_messages_per_hour", KT_INT, "200", NULL, 0, 10000000, NULL,
     KC(abuse_soft[CONF_ABUSE_MESSAGES_HOUR]),
     "Messages an account may submit in an hour (attempts count: MAIL commands) before the next "
     "one gets 451 4.7.1 (try again later); 0: no limit. Per account "
     "and per domain in limits_file."},
    {KB_ABUSE, "hard_messages_per_hour", KT_INT, "1000", NULL, 0, 10000000, NULL,
     KC(abuse_hard[CONF_ABUSE_MESSAGES_HOUR]),
     "The same count at which the account is locked (docs/abuse.md); 0: never."},
    {KB_ABUSE, "soft_recipients_per_hour", KT_INT, "500", NULL, 0, 10000000, NULL,
     KC(abuse_soft[CONF_ABUSE_RCPTS_HOUR]),
     "Recipients an account may give in an hour (attempts count: RCPT commands) before the next "
     "one gets 451 4.7.1 (try again later); 0: no limit. Per account "
     "and per domain in limits_file."},
    {KB_ABUSE, "hard_recipients_per_hour", KT_INT, "2500", NULL, 0, 10000000, NULL,
     KC(abuse_hard[CONF_ABUSE_RCPTS_HOUR]),
     "The same count at which the account is locked (docs/abuse.md); 0: never."},
    {KB_ABUSE, "soft_distinct_recipients_per_day", KT_INT, "1000", NULL, 0, 10000000, NULL,
     KC(abuse_soft[CONF_ABUSE_DISTINCT_DAY]),
     "Different recipient addresses an account may write to in a day before the next one gets 451 "
     "4.7.1 (try again later); 0: no limit. Per account "
     "and per domain in limits_file."},
    {KB_ABUSE, "hard_distinct_recipients_per_day", KT_INT, "5000", NULL, 0, 10000000, NULL,
     KC(abuse_hard[CONF_ABUSE_DISTINCT_DAY]),
     "The same count at which the account is locked (docs/abuse.md); 0: never."},
    {KB_ABUSE, "soft_recipients_per_message", KT_INT, "100", NULL, 0, 10000000, NULL,
     KC(abuse_soft[CONF_ABUSE_RCPTS_MESSAGE]),
     "Recipients of one message before the next one gets 451 4.7.1 (try again later); 0: no limit. "
     "Per account "
     "and per domain in limits_file."},
    {KB_ABUSE, "hard_recipients_per_message", KT_INT, "500", NULL, 0, 10000000, NULL,
     KC(abuse_hard[CONF_ABUSE_RCPTS_MESSAGE]),
     "The same count at which the account is locked (docs/abuse.md); 0: never."},
    {KB_ABUSE, "soft_failed_recipients_per_hour", KT_INT, "50", NULL, 0, 10000000, NULL,
     KC(abuse_soft[CONF_ABUSE_FAILED_HOUR]),
     "Recipients refused (5xx at RCPT) to an account in an hour before the next one gets 451 4.7.1 "
     "(try again later); 0: no limit. Per account "
     "and per domain in limits_file."},
    {KB_ABUSE, "hard_failed_recipients_per_hour", KT_INT, "250", NULL, 0, 10000000, NULL,
     KC(abuse_hard[CONF_ABUSE_FAILED_HOUR]),
     "The same count at which the account is locked (docs/abuse.md); 0: never."},
    {KB_ABUSE, "hour", KT_DUR, "1h", NULL, 1, DAY_, NULL, KC(abuse_hour),
     "Length of the \"hour\" of the hourly limits and of the volume history (tests shorten it)."},
    {KB_ABUSE, "day", KT_DUR, "1d", NULL, 1, 30 * DAY_, NULL, KC(abuse_day),
     "Length of the \"day\" of distinct_recipients_per_day."},
    {KB_ABUSE, "limits_file", KT_PATH, NULL, "none", 0, 0, NULL, KC(abuse_limits_file),
     "File of per-account and per-domain limits, one \"NAME LIMIT SOFT HARD\" line each (NAME "
     "an account or @domain, LIMIT one of the limit names above without soft_/hard_; # "
     "comments); the account's line wins over its domain's, both over the defaults. Read at "
     "start and on reload."},
    {KB_ABUSE, "spamtraps", KT_TRAPS, NULL, "none", 0, 0, NULL, KC(abuse_spamtraps),
     "Spamtrap addresses and trap domains: mail from an account to one of them scores "
     "spamtrap_score (one hit locks by default). Repeated lines add up."},
    {KB_ABUSE, "lock_score", KT_INT, "100", NULL, 1, 1000000, NULL, KC(abuse_lock_score),
     "An account whose signals add up to this score within score_window is locked."},
    {KB_ABUSE, "score_window", KT_DUR, "1d", NULL, 60, 365 * DAY_, NULL, KC(abuse_score_window),
     "How long a signal's score counts."},
    {KB_ABUSE, "spamtrap_score", KT_INT, "100", NULL, 0, 1000000, NULL, KC(abuse_spamtrap_score),
     "Score of one message to a spamtrap."},
    {KB_ABUSE, "complaint_score", KT_INT, "50", NULL, 0, 1000000, NULL, KC(abuse_complaint_score),
     "Score of one complaint (an ARF or SpamCop report, complaints { }) matched to a message "
     "the account sent; anyone can send a report, so one alone should not lock."},
    {KB_ABUSE, "baseline_factor", KT_DOUBLE, "10", NULL, 1, 1000, NULL, KC(abuse_baseline_factor),
     "Messages in the current hour above this many times the account's usual hourly volume "
     "(its busy hours of the last baseline_hours) are a signal ..."},
    {KB_ABUSE, "baseline_min", KT_INT, "50", NULL, 1, 10000000, NULL, KC(abuse_baseline_min),
     "... when they are also more than this many."},
    {KB_ABUSE, "baseline_hours", KT_INT, "672", NULL, 1, 24 * 366, NULL, KC(abuse_baseline_hours),
     "Hours of volume history kept per account for the baseline (672: four weeks)."},
    {KB_ABUSE, "baseline_score", KT_INT, "50", NULL, 0, 1000000, NULL, KC(abuse_baseline_score),
     "Score of a volume far above the baseline (once an hour)."},
    {KB_ABUSE, "auth_failures", KT_INT, "10", NULL, 1, 1000000, NULL, KC(abuse_auth_failures),
     "A successful login after this many failed ones for the account (from anywhere, within "
     "auth's window) is a signal."},
    {KB_ABUSE, "auth_failures_score", KT_INT, "30", NULL, 0, 1000000, NULL, KC(abuse_auth_score),
     "Score of a login after many failures."},
    {KB_ABUSE, "networks", KT_INT, "5", NULL, 2, 1000000, NULL, KC(abuse_networks),
     "Logins of one account from this many client networks (IPv4 /24, IPv6 /48) within "
     "networks_window are a signal."},
    {KB_ABUSE, "networks_window", KT_DUR, "1h", NULL, 1, 30 * DAY_, NULL, KC(abuse_networks_window),
     "Time span of networks."},
    {KB_ABUSE, "networks_score", KT_INT, "30", NULL, 0, 1000000, NULL, KC(abuse_networks_score),
     "Score of logins from many networks (once per window)."},
    {KB_ABUSE, "mail_to", KT_ADDR, NULL, "postmaster", 0, 0, NULL, KC(abuse_mail_to),
     "Who gets the notice of a lock, with the evidence."},
    {KB_ABUSE, "owners_file", KT_PATH, NULL, "none", 0, 0, NULL, KC(abuse_owners_file),
     "File of \"NAME ADDRESS\" lines (NAME an account or @domain; # comments): when the "
     "account is locked, its owner is told at ADDRESS too (an address outside the account). "
     "The account's line wins over its domain's. Read at start and on reload."},
    {KB_ABUSE, "learn_messages", KT_INT, "20", NULL, 0, 1000000, NULL, KC(abuse_learn_messages),
     "An account's first this many messages only teach its recipient domains and envelope "
     "senders; new_domains and new_senders count after them."},
    {KB_ABUSE, "new_domains", KT_INT, "20", NULL, 0, 1000000, NULL, KC(abuse_new_domains),
     "Recipients in this many domains the account never wrote to (it remembers its last 256) "
     "within an hour are a signal; 0: never."},
    {KB_ABUSE, "new_domains_score", KT_INT, "30", NULL, 0, 1000000, NULL,
     KC(abuse_new_domains_score), "Score of a burst of new recipient domains (once an hour)."},
    {KB_ABUSE, "new_senders", KT_INT, "3", NULL, 0, 1000000, NULL, KC(abuse_new_senders),
     "Messages with this many envelope senders (MAIL FROM) the account did not use before (it "
     "remembers its last 16; its own login counts as used) within an hour are a signal; 0: "
     "never."},
    {KB_ABUSE, "new_senders_score", KT_INT, "30", NULL, 0, 1000000, NULL,
     KC(abuse_new_senders_score), "Score of unusual envelope senders (once an hour)."},
    {KB_ABUSE, "replies_min", KT_INT, "20", NULL, 1, 1000000, NULL, KC(abuse_replies_min),
     "Remote servers' answers to the account's recipients within an hour before the shares "
     "below count."},
    {KB_ABUSE, "user_unknown_share", KT_INT, "50", NULL, 1, 100, NULL, KC(abuse_unknown_share),
     "Percent of those answers that say user-unknown (the egress reply classifier) that is a "
     "signal."},
    {KB_ABUSE, "user_unknown_score", KT_INT, "50", NULL, 0, 1000000, NULL, KC(abuse_unknown_score),
     "Score of a high share of user-unknown answers (once an hour)."},
    {KB_ABUSE, "blocklist_share", KT_INT, "20", NULL, 1, 100, NULL, KC(abuse_blocklist_share),
     "Percent of those answers that say our address is blocklisted that is a signal."},
    {KB_ABUSE, "blocklist_score", KT_INT, "50", NULL, 0, 1000000, NULL, KC(abuse_blocklist_score),
     "Score of a high share of blocklist answers (once an hour)."},

    {KB_VERIFY, "timeout", KT_DUR, "30s", NULL, 1, 10 * MIN_, NULL, KC(verify_timeout),
     "Longest time a recipient probe at a relay domain's server may take, waiting for a "
     "free slot included; after it the recipient gets 450 4.4.1 (try again later)."},
    {KB_VERIFY, "concurrency", KT_INT, "4", NULL, 1, 1000, NULL, KC(verify_concurrency),
     "Probes at once to one downstream host; further probes wait for a free slot."},
    {KB_VERIFY, "positive_ttl", KT_DUR, "1d", NULL, 1, 90 * DAY_, NULL, KC(verify_positive_ttl),
     "How long a recipient the downstream server accepted is remembered (no new probe)."},
    {KB_VERIFY, "negative_ttl", KT_DUR, "1h", NULL, 1, 90 * DAY_, NULL, KC(verify_negative_ttl),
     "How long a recipient the downstream server refused (5xx) is remembered; temporary "
     "answers (4xx, no connection) are never remembered."},
    {KB_VERIFY, "purge_interval", KT_DUR, "1h", NULL, 1, DAY_, NULL, KC(verify_purge_interval),
     "How often expired probe answers are deleted from the directory database."},

    {KB_DKIM, "key_dir", KT_PATH, NULL, "state_dir/dkim", 0, 0, NULL, KC(dkim_key_dir),
     "Folder of the DKIM signing keys: DIR/DOMAIN/SELECTOR.rsa.pem and "
     "DIR/DOMAIN/SELECTOR.ed25519.pem (written by kurier dkim keygen; docs/dkim.md). Mail "
     "of authenticated users and local senders is signed with the keys of its From: "
     "domain, the newest key of each type; a domain without keys is not signed. Read at "
     "start and on reload."},
    {KB_DKIM, "signing_domain", KT_HOST, NULL, "none", 0, 0, NULL, KC(dkim_signing_domain),
     "Domain whose keys sign mail whose From: domain has no keys of its own (customers "
     "without their own keys); none: such mail goes out unsigned."},
    {KB_COMPLAINTS, "addresses", KT_ADDRS, NULL, "none (no intake)", 0, 0, NULL,
     KC(complaint_addresses),
     "Addresses whose mail is read as abuse complaints (ARF feedback-loop reports, SpamCop "
     "reports), e.g. abuse@ and fbl@ of our domains: each report is matched to the account "
     "that sent the reported message and logged; it is still delivered to the mailbox "
     "(docs/abuse.md). Repeated lines add up."},
    {KB_COMPLAINTS, "retention", KT_DUR, "30d", NULL, 1, 3650 * DAY_, NULL, KC(complaint_retention),
     "How long the record of what each account sent (queue ID, Message-ID, sender) is kept "
     "in the directory database for matching complaints."},

    {KB_LISTEN, "role", KT_ENUM, "mx", NULL, 0, 0, "mx|submission", KL(role),
     "mx receives mail for our domains; submission takes mail from our users (AUTH)."},
    {KB_LISTEN, "tls", KT_ENUM, "none", NULL, 0, 0, "none|starttls|implicit", KL(tls),
     "starttls offers STARTTLS (ports 25, 587); implicit speaks TLS at once (port 465)."},
    {KB_LISTEN, "cert", KT_PATH, NULL, "none", 0, 0, NULL, KL(tls_cert),
     "PEM certificate chain; needed for tls starttls and implicit."},
    {KB_LISTEN, "key", KT_PATH, NULL, "none", 0, 0, NULL, KL(tls_key),
     "PEM private key, read before privileges are dropped."},
    {KB_LISTEN, "auth", KT_BOOL, "off", "on for submission, else off", 0, 0, NULL, KL(auth),
     "Offer SMTP AUTH."},
    {KB_LISTEN, "auth_plaintext", KT_BOOL, "off", NULL, 0, 0, NULL, KL(auth_plaintext),
     "Allow AUTH on a connection without TLS (only for tests on loopback)."},
    {KB_LISTEN, "require_auth", KT_BOOL, "off", "on for submission, else off", 0, 0, NULL,
     KL(require_auth), "Refuse MAIL FROM before a successful AUTH."},
    {KB_LISTEN, "sni_certs", KT_PATH, NULL, "none", 0, 0, NULL, KL(sni_certs),
     "Glob of PEM files, each with a certificate chain and its key; TLS clients asking for "
     "one of their names (SNI) get that certificate instead of cert."},
    {KB_LISTEN, "hide_client", KT_BOOL, "off", NULL, 0, 0, NULL, KL(hide_client),
     "Leave the client's name and address out of our Received: header (submission)."},
    {KB_LISTEN, "greylist", KT_ENUM, "suspicious", NULL, 0, 0, "off|suspicious|always",
     KL(greylist),
     "Greylisting of unauthenticated clients (docs/inbound.md): always every triplet; "
     "suspicious only mail whose sender verification failed (sender_verify greylist); off "
     "never, not even then (such mail is accepted and logged)."},
    {KB_LISTEN, "sender_verify", KT_ENUM, "off", NULL, 0, 0, "off|greylist|reject",
     KL(sender_verify),
     "Check the envelope sender of unauthenticated clients at RCPT: its domain needs an MX or "
     "A/AAAA record (a null MX is refused, 550 5.1.8), and a sender in one of our domains "
     "must be a mailbox, alias or catch-all. A failure is greylisted, or refused with reject."},
    {KB_LISTEN, "sender_callout", KT_BOOL, "off", NULL, 0, 0, NULL, KL(sender_callout),
     "With sender_verify: also ask the sender domain's MX whether it takes the sender (an "
     "SMTP probe with MAIL FROM:<>, cached as verify { } says); a 5xx there is a failed "
     "verification, no answer is none. Some servers take it for abuse: use with care."},
    {KB_LISTEN, "checks", KT_WORDS, "dnsbl rhsbl", NULL, 0, 0,
     "dnsbl|rhsbl|pregreet|rdns|spf|policy|dkim|dmarc|none", KL(checks),
     "Inbound checks for clients that did not log in, in the order they run (after the "
     "recipient check); none for no check. A check without its lists does nothing; spf "
     "checks the MAIL FROM identity (HELO for the null sender) at MAIL and adds "
     "Received-SPF: and its result to Authentication-Results: (docs/inbound.md); dkim "
     "verifies every DKIM-Signature at the end of the message, dmarc then applies the From: "
     "domain's DMARC policy with the spf and dkim results (list them before it)."},
    {KB_LISTEN, "spf_fail", KT_ACTION, "8", NULL, -1000, 1000, NULL, KL(spf_fail),
     "What an SPF fail does (checks spf): a score added to the client's, or reject (550 "
     "5.7.23 with the domain's explanation) or tempfail (451 4.7.23)."},
    {KB_LISTEN, "spf_softfail", KT_ACTION, "2", NULL, -1000, 1000, NULL, KL(spf_softfail),
     "What an SPF softfail does: a score, reject (550 5.7.23) or tempfail (451 4.7.23)."},
    {KB_LISTEN, "spf_temperror", KT_ACTION, "1", NULL, -1000, 1000, NULL, KL(spf_temperror),
     "What an SPF temperror (a DNS failure) does: a score, tempfail (451 4.4.3) or reject "
     "(550 5.7.24)."},
    {KB_LISTEN, "spf_permerror", KT_ACTION, "2", NULL, -1000, 1000, NULL, KL(spf_permerror),
     "What an SPF permerror (a broken record) does: a score, reject (550 5.7.24) or tempfail "
     "(451 4.7.24)."},
    {KB_LISTEN, "dmarc_reject", KT_ACTION, "reject", NULL, -1000, 1000, NULL, KL(dmarc_reject),
     "What mail failing DMARC under the From: domain's p=reject does (checks dmarc): reject "
     "(550 5.7.1), tempfail (451 4.7.1), a score added to the client's, or none (or 0): "
     "only record it in Authentication-Results:."},
    {KB_LISTEN, "dmarc_quarantine", KT_ACTION, "5", NULL, -1000, 1000, NULL, KL(dmarc_quarantine),
     "What mail failing DMARC under p=quarantine does: a score, none (only record), reject "
     "(550 5.7.1) or tempfail (451 4.7.1)."},
    {KB_LISTEN, "dnsbl_sites", KT_DNSBL, NULL, "none", 0, 0, NULL, KL(dnsbl_sites),
     "DNS lists of client IPv4/IPv6 addresses (RFC 5782) as ZONE[=FILTER][*WEIGHT], e.g. "
     "zen.spamhaus.org=127.0.0.[2..11]*10 list.dnswl.org=127.0.[0..255].[1..3]*-5; a "
     "listing adds WEIGHT (default 1) to the client's score; repeated lines add up. "
     "Answers outside 127.0.0.0/8 or in 127.255.255.252-255 are never listings (a warning "
     "is logged)."},
    {KB_LISTEN, "rhsbl_sites", KT_DNSBL, NULL, "none", 0, 0, NULL, KL(rhsbl_sites),
     "DNS lists of domains (RHSBL), same syntax as dnsbl_sites: the MAIL FROM domain and "
     "the HELO name are looked up."},
    {KB_LISTEN, "reject_score", KT_INT, "10", NULL, 0, 100000, NULL, KL(reject_score),
     "A client whose checks add up to this score is refused (554 5.7.1, naming the list "
     "that weighed most); 0 never refuses by score."},
    {KB_LISTEN, "greylist_score", KT_INT, "0", NULL, 0, 100000, NULL, KL(greylist_score),
     "A client whose checks add up to this score (but less than reject_score) is told to "
     "try again later (451 4.7.1); 0 turns this off."},
    {KB_LISTEN, "pregreet_wait", KT_DUR, "0", NULL, 0, MIN_, NULL, KL(pregreet_wait),
     "Pause before the 220 greeting (role mx only; postscreen's greet wait): a client that "
     "sends anything before the greeting is an early talker (logged; check pregreet scores "
     "it, pregreet_action may refuse it). 0 sends the greeting at once and tests nothing. "
     "Clients in relay trusted_networks are not paused."},
    {KB_LISTEN, "pregreet_action", KT_ENUM, "score", NULL, 0, 0, "score|reject|drop",
     KL(pregreet_action),
     "What an early talker gets: score goes on (check pregreet adds early_talker_score at "
     "RCPT); reject greets with 554 5.5.0 and answers every command but QUIT with 503; drop "
     "says 554 5.5.0 and hangs up."},
    {KB_LISTEN, "early_talker_score", KT_INT, "5", NULL, -100000, 100000, NULL,
     KL(early_talker_score),
     "Check pregreet: score for a client that talked before the greeting (pregreet_wait)."},
    {KB_LISTEN, "pipelining_score", KT_INT, "5", NULL, -100000, 100000, NULL, KL(pipelining_score),
     "Check pregreet: score for a client that sent a command before the reply to the previous "
     "one while PIPELINING was not offered to it (no EHLO reply yet, or HELO)."},
    {KB_LISTEN, "rdns_missing_score", KT_INT, "3", NULL, -100000, 100000, NULL,
     KL(rdns_missing_score),
     "Check rdns: score for a client address without a PTR record (needs reverse_dns on)."},
    {KB_LISTEN, "rdns_mismatch_score", KT_INT, "2", NULL, -100000, 100000, NULL,
     KL(rdns_mismatch_score),
     "Check rdns: score for a client whose PTR name does not resolve back to its address "
     "(not forward-confirmed)."},
    {KB_LISTEN, "policy_service", KT_STR, NULL, "none", 0, 0, NULL, KL(policy_service),
     "Policy server for the check policy, spoken to in Postfix's policy delegation "
     "protocol (check_policy_service): unix:/PATH, inet:IP:PORT or IP:PORT, e.g. postgrey "
     "on inet:127.0.0.1:10023 (docs/inbound.md); needs policy in checks."},
    {KB_LISTEN, "policy_stage", KT_ENUM, "rcpt", NULL, 0, 0, "mail|rcpt|eom", KL(policy_stage),
     "When the policy server is asked: at MAIL FROM, at each RCPT TO, or at the end of the "
     "message (protocol_state END-OF-MESSAGE)."},
    {KB_LISTEN, "policy_timeout", KT_DUR, "10s", NULL, 1, 10 * MIN_, NULL, KL(policy_timeout),
     "Time for the policy server to answer one request, connecting included."},
    {KB_LISTEN, "policy_default_action", KT_ENUM, "defer", NULL, 0, 0, "defer|dunno",
     KL(policy_default_action),
     "What happens when the policy server is down, too slow, or answers something we cannot "
     "use: defer says 451 4.3.5 (as Postfix), dunno goes on as if it had not been asked."},

    {KB_TRANSPORT, "relay", KT_HOSTLIST, NULL, "none (the domain's MX hosts)", 0, 0, NULL,
     KT(relay),
     "Relay hosts for this recipient domain as HOST[:PORT], in order; the next is tried when "
     "one is unreachable."},
    {KB_TRANSPORT, "tls", KT_ENUM, "default", NULL, 0, 0,
     "default|none|may|encrypt|verify|implicit", KT(tls),
     "STARTTLS policy for this domain; default takes outbound's tls. implicit speaks TLS from "
     "the first byte (port 465, RFC 8314), the certificate checked when outbound's tls is "
     "verify."},
    {KB_TRANSPORT, "relay_domain", KT_BOOL, "off", NULL, 0, 0, NULL, KT(relay_domain),
     "We are the MX in front of this domain's own server: accept its mail from any client, as "
     "for a hosted domain, and deliver it to relay (needed)."},
    {KB_TRANSPORT, "verify_recipients", KT_BOOL, "on", NULL, 0, 0, NULL, KT(verify_recipients),
     "For a relay_domain: check each recipient at RCPT with an SMTP probe at the relay host "
     "(cached, see verify { }); unknown there gives 550 5.1.1, no answer 450 4.4.1."},
};

const size_t conf_nkeys = sizeof conf_keys / sizeof conf_keys[0];
_Static_assert(sizeof conf_keys / sizeof conf_keys[0] <= CONF_KEYS_MAX,
               "raise CONF_KEYS_MAX in conf_keys.h");
_Static_assert(offsetof(struct kconf, ntrusted) ==
                       offsetof(struct kconf, trusted) + sizeof(struct conf_net *) &&
                   offsetof(struct kconf, ngrey_allow_nets) ==
                       offsetof(struct kconf, grey_allow_nets) + sizeof(struct conf_net *) &&
                   offsetof(struct kconf, nmon_addresses) ==
                       offsetof(struct kconf, mon_addresses) + sizeof(struct conf_net *),
               "KT_NETS: the count must follow the list");
