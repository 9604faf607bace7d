/* conf.c: the key table of kurier.conf and everything it drives: conf_load() (with
 * include), conf_dump(), conf_doc_markdown(), plus network lists (conf_net_*).
 * Tokenizing and parsing are in conf_parse.c. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <math.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/util.h"

#define INCLUDE_MAX_DEPTH 8

/* --- the key table --------------------------------------------------------- */

enum ktype {
    KT_STR,
    KT_HOST,
    KT_PATH,
    KT_INT,
    KT_SIZE,
    KT_DUR,
    KT_DOUBLE,
    KT_BOOL,
    KT_ENUM,
    KT_CHOICE,
    KT_NETS,
    KT_HOSTLIST /* one or more HOST[:PORT] arguments, stored space-separated */
};

enum kblock {
    KB_MAIN = 0,
    KB_LOG,
    KB_LIMITS,
    KB_QUEUE,
    KB_RELAY,
    KB_AUTH,
    KB_OUTBOUND,
    KB_LISTEN, /* from here on: blocks with an argument, in any number */
    KB_TRANSPORT,
    KB_COUNT
};

static const char *const block_names[KB_COUNT] = {"",     "log",      "limits", "queue",    "relay",
                                                  "auth", "outbound", "listen", "transport"};

struct conf_key {
    enum kblock block;
    const char *name;
    enum ktype type;
    const char *def;     /* default as written in a file; NULL: none or computed */
    const char *defdoc;  /* default as shown in docs, when it differs from def */
    double min, max;     /* KT_INT, KT_SIZE, KT_DUR, KT_DOUBLE */
    const char *choices; /* KT_ENUM (stored as int index), KT_CHOICE (stored as string) */
    size_t off;          /* into struct kconf, or struct conf_listen for KB_LISTEN */
    const char *help;
};

#define KC(f) offsetof(struct kconf, f)
#define KL(f) offsetof(struct conf_listen, f)
#define KT(f) offsetof(struct conf_transport, f)
#define MIN_ 60.0
#define HOUR_ 3600.0
#define DAY_ 86400.0

static const struct conf_key keys[] = {
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
     "SQLite file holding domains, mailboxes, aliases and credentials."},
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

    {KB_LOG, "target", KT_CHOICE, "stderr", NULL, 0, 0, "stderr|syslog", KC(log_target),
     "Where log lines go."},
    {KB_LOG, "name", KT_STR, "kurier", NULL, 0, 0, NULL, KC(log_name),
     "Program name in syslog lines (NAME/smtpd[pid])."},
    {KB_LOG, "level", KT_ENUM, "info", NULL, 0, 0, "err|warn|info|debug", KC(log_level),
     "Lowest level that is logged."},
    {KB_LOG, "debug", KT_STR, "", NULL, 0, 0, NULL, KC(log_debug),
     "Subsystems with debug traces, e.g. \"smtp,queue\" or \"all\"; \"\" for none."},

    {KB_LIMITS, "line_length", KT_SIZE, "512", NULL, 512, 1048576, NULL, KC(line_length),
     "Longest command line including CRLF (RFC 5321 4.5.3.1.4: at least 512)."},
    {KB_LIMITS, "message_size", KT_SIZE, "50M", NULL, 1024, 4294967296.0, NULL, KC(message_size),
     "Largest message accepted, in bytes (announced with EHLO SIZE)."},
    {KB_LIMITS, "recipients", KT_INT, "1000", NULL, 1, 100000, NULL, KC(recipients),
     "Recipients per message; more get 452 (RFC 5321 4.5.3.1.8: at least 100)."},
    {KB_LIMITS, "errors", KT_INT, "20", NULL, 1, 1000, NULL, KC(errors),
     "Bad commands per session before the server says 421 and closes."},
    {KB_LIMITS, "command_timeout", KT_DUR, "5m", NULL, 1, HOUR_, NULL, KC(command_timeout),
     "Idle time allowed while waiting for a command (RFC 5321 4.5.3.2.7: 5m)."},
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
    {KB_QUEUE, "lifetime", KT_DUR, "5d", NULL, MIN_, 30 * DAY_, NULL, KC(lifetime),
     "Time after which an undeliverable message is bounced."},
    {KB_QUEUE, "delay_warning", KT_DUR, "4h", NULL, 0, 30 * DAY_, NULL, KC(delay_warning),
     "Time after which the sender gets a delay notice; 0 turns it off."},
    {KB_QUEUE, "maildrop_scan", KT_DUR, "5s", NULL, 1, HOUR_, NULL, KC(maildrop_scan),
     "Interval between scans of the maildrop folder for locally submitted mail."},

    {KB_RELAY, "trusted_networks", KT_NETS, NULL, "none", 0, 0, NULL, KC(trusted),
     "Client networks that may relay without AUTH (CIDR, IPv4 or IPv6; repeated lines "
     "add up); keep it short."},

    {KB_AUTH, "max_failures", KT_INT, "10", NULL, 1, 100000, NULL, KC(auth_max_failures),
     "Failed logins from one client address, or for one account, within auth window "
     "before further attempts are refused for block_time (454 4.7.0)."},
    {KB_AUTH, "window", KT_DUR, "15m", NULL, 1, DAY_, NULL, KC(auth_window),
     "Time over which failed logins are counted."},
    {KB_AUTH, "block_time", KT_DUR, "1h", NULL, 1, 7 * DAY_, NULL, KC(auth_block_time),
     "How long a client address or account stays refused after too many failures."},
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

    {KB_TRANSPORT, "relay", KT_HOSTLIST, NULL, "none (the domain's MX hosts)", 0, 0, NULL,
     KT(relay),
     "Relay hosts for this recipient domain as HOST[:PORT], in order; the next is tried when "
     "one is unreachable."},
    {KB_TRANSPORT, "tls", KT_ENUM, "default", NULL, 0, 0, "default|none|may|encrypt|verify",
     KT(tls), "STARTTLS policy for this domain; default takes outbound's tls."},
};

#define NKEYS (sizeof keys / sizeof keys[0])

/* --- values ---------------------------------------------------------------- */

static void fmt_dur(char *dst, size_t size, long long v)
{
    static const struct {
        long long secs;
        char unit;
    } units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}};
    for (size_t i = 0; i < 3; i++)
        if (v != 0 && v % units[i].secs == 0) {
            snprintf(dst, size, "%lld%c", v / units[i].secs, units[i].unit);
            return;
        }
    snprintf(dst, size, "%llds", v);
    if (v == 0) snprintf(dst, size, "0");
}

static void fmt_size(char *dst, size_t size, unsigned long long v)
{
    static const struct {
        unsigned long long n;
        char unit;
    } units[] = {{1ULL << 30, 'G'}, {1ULL << 20, 'M'}, {1ULL << 10, 'K'}};
    for (size_t i = 0; i < 3; i++)
        if (v != 0 && v % units[i].n == 0) {
            snprintf(dst, size, "%llu%c", v / units[i].n, units[i].unit);
            return;
        }
    snprintf(dst, size, "%llu", v);
}

static void fmt_double(char *dst, size_t size, double v)
{
    snprintf(dst, size, "%.15g", v);
    if (strtod(dst, NULL) != v) snprintf(dst, size, "%.17g", v);
}

/* A number of the key's kind, for limits in messages and docs. */
static void fmt_limit(char *dst, size_t size, const struct conf_key *k, double v)
{
    if (k->type == KT_DUR)
        fmt_dur(dst, size, (long long)v);
    else if (k->type == KT_SIZE)
        fmt_size(dst, size, (unsigned long long)v);
    else
        fmt_double(dst, size, v);
}

/* Index of s in "a|b|c", or -1. */
static int choice_index(const char *choices, const char *s)
{
    int i = 0;
    size_t n = strlen(s);
    for (const char *p = choices; *p; i++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, s, n) == 0) return i;
        if (!bar) break;
        p = bar + 1;
    }
    return -1;
}

/* The i-th choice into dst. */
static void choice_name(char *dst, size_t size, const char *choices, int idx)
{
    const char *p = choices;
    for (int i = 0; i < idx && p; i++) {
        p = strchr(p, '|');
        if (p) p++;
    }
    if (!p) {
        str_copy(dst, "?", size);
        return;
    }
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len >= size) len = size - 1;
    memcpy(dst, p, len);
    dst[len] = '\0';
}

static int parse_dur(const char *s, long long *out)
{
    long long total = 0;
    const char *p = s;
    if (!*p) return -1;
    while (*p) {
        if (*p < '0' || *p > '9') return -1;
        long long n = 0;
        while (*p >= '0' && *p <= '9') {
            n = n * 10 + (*p - '0');
            if (n > 1000000000LL) return -2;
            p++;
        }
        long long mult;
        switch (*p) {
        case 's':
            mult = 1;
            break;
        case 'm':
            mult = 60;
            break;
        case 'h':
            mult = 3600;
            break;
        case 'd':
            mult = 86400;
            break;
        case 'w':
            mult = 7 * 86400;
            break;
        case '\0':
            if (p == s + strspn(s, "0123456789")) {
                mult = 1; /* a bare number of seconds, only alone */
                break;
            }
            return -1;
        default:
            return -1;
        }
        if (*p) p++;
        total += n * mult;
        if (total > 100000000000LL) return -2;
    }
    *out = total;
    return 0;
}

static int parse_size(const char *s, unsigned long long *out)
{
    const char *p = s;
    if (*p < '0' || *p > '9') return -1;
    unsigned long long n = 0;
    while (*p >= '0' && *p <= '9') {
        n = n * 10 + (unsigned)(*p - '0');
        if (n > (1ULL << 50)) return -2;
        p++;
    }
    unsigned long long mult = 1;
    if (*p == 'k' || *p == 'K')
        mult = 1ULL << 10;
    else if (*p == 'm' || *p == 'M')
        mult = 1ULL << 20;
    else if (*p == 'g' || *p == 'G')
        mult = 1ULL << 30;
    else if (*p)
        return -1;
    if (*p && p[1]) return -1;
    if (mult > 1 && n > (1ULL << 40)) return -2;
    *out = n * mult;
    return 0;
}

/* Lexically clean an absolute path: drop "." and empty parts, resolve "..". */
static char *path_clean(const char *abs)
{
    char *out = xmalloc(strlen(abs) + 2);
    size_t o = 0;
    const char *p = abs;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p) break;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 1 && p[0] == '.') {
            /* skip */
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0) o--;
        } else {
            out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
    }
    if (o == 0) out[o++] = '/';
    out[o] = '\0';
    return out;
}

static char *path_resolve(const char *s)
{
    if (s[0] == '/') return path_clean(s);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return NULL;
    char *joined = xasprintf("%s/%s", cwd, s);
    char *r = path_clean(joined);
    free(joined);
    return r;
}

/* "host", "host:port", "192.0.2.1:587", "[2001:db8::1]:25". 0 ok, -1 with why. */
static int hostport_check(const char *s, char *why, size_t whylen)
{
    const char *port = NULL;
    size_t hlen;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        char a[64];
        struct in6_addr a6;
        if (!rb || (size_t)(rb - s - 1) >= sizeof a || (rb[1] && rb[1] != ':')) goto bad;
        memcpy(a, s + 1, (size_t)(rb - s - 1));
        a[rb - s - 1] = '\0';
        if (inet_pton(AF_INET6, a, &a6) != 1) goto bad;
        if (rb[1] == ':') port = rb + 2;
    } else {
        const char *colon = strchr(s, ':');
        hlen = colon ? (size_t)(colon - s) : strlen(s);
        if (!hlen || hlen > 253 ||
            strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != hlen)
            goto bad;
        if (colon) port = colon + 1;
    }
    if (port && (!*port || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port) ||
                 atoi(port) < 1 || atoi(port) > 65535))
        goto bad;
    return 0;
bad:
    snprintf(why, whylen,
             "invalid relay host \"%s\": expected HOST, HOST:PORT or [IPV6]:PORT, e.g. "
             "smtp.example.net:587",
             s);
    return -1;
}

static void *field(void *base, const struct conf_key *k)
{
    return (char *)base + k->off;
}

/* why = "invalid value "S" for "KEY": expected EXPECTED" (NULL: "one of" the key's
 * choices); returns -1. */
static int bad_value(char *why, size_t whylen, const char *s, const struct conf_key *k,
                     const char *expected)
{
    snprintf(why, whylen, "invalid value \"%s\" for \"%s\": expected %s%s", s, k->name,
             expected ? expected : "one of ", expected ? "" : k->choices);
    return -1;
}

/* Parse one value s of key k into base. 0 done; -1 with why set. */
static int value_set(const struct conf_key *k, void *base, const char *s, char *why, size_t whylen)
{
    char lo[32], hi[32];
    fmt_limit(lo, sizeof lo, k, k->min);
    fmt_limit(hi, sizeof hi, k, k->max);
    double v = 0;
    int r;
    switch (k->type) {
    case KT_STR:
    case KT_HOST:
    case KT_PATH:
    case KT_CHOICE: {
        char **dst = field(base, k);
        char *nv;
        if (k->type == KT_HOST &&
            (!*s || strlen(s) > 253 ||
             strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
                 strlen(s)))
            return bad_value(why, whylen, s, k, "a host name like mx.example.org");
        if (k->type == KT_CHOICE && choice_index(k->choices, s) < 0)
            return bad_value(why, whylen, s, k, NULL);
        if (k->type == KT_PATH) {
            if (!*s) {
                snprintf(why, whylen, "empty path for \"%s\"", k->name);
                return -1;
            }
            nv = path_resolve(s);
            if (!nv) {
                snprintf(why, whylen, "cannot resolve path \"%s\": %s", s, strerror(errno));
                return -1;
            }
        } else {
            nv = xstrdup(s);
        }
        free(*dst);
        *dst = nv;
        return 0;
    }
    case KT_ENUM: {
        int i = choice_index(k->choices, s);
        if (i < 0) return bad_value(why, whylen, s, k, NULL);
        *(int *)field(base, k) = i;
        return 0;
    }
    case KT_BOOL: {
        int b;
        if (!strcmp(s, "on") || !strcmp(s, "yes") || !strcmp(s, "true"))
            b = 1;
        else if (!strcmp(s, "off") || !strcmp(s, "no") || !strcmp(s, "false"))
            b = 0;
        else
            return bad_value(why, whylen, s, k, "on or off");
        *(int *)field(base, k) = b;
        return 0;
    }
    case KT_INT: {
        char *end;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (!*s || *end || (s[0] != '-' && (s[0] < '0' || s[0] > '9')))
            return bad_value(why, whylen, s, k, "an integer");
        v = errno == ERANGE ? (n < 0 ? -1e300 : 1e300) : (double)n;
        break;
    }
    case KT_DUR: {
        long long n;
        r = parse_dur(s, &n);
        if (r == -1) return bad_value(why, whylen, s, k, "a duration like 30s, 5m, 4h or 5d");
        v = r == -2 ? 1e300 : (double)n;
        break;
    }
    case KT_SIZE: {
        unsigned long long n;
        r = parse_size(s, &n);
        if (r == -1) return bad_value(why, whylen, s, k, "a size like 512, 64K, 50M or 1G");
        v = r == -2 ? 1e300 : (double)n;
        break;
    }
    case KT_DOUBLE: {
        char *end;
        v = strtod(s, &end);
        if (!*s || *end || !isfinite(v) ||
            (s[0] != '-' && s[0] != '.' && (s[0] < '0' || s[0] > '9')))
            return bad_value(why, whylen, s, k, "a number");
        break;
    }
    case KT_HOSTLIST: {
        char **dst = field(base, k);
        if (hostport_check(s, why, whylen) != 0) return -1;
        char *nv = *dst ? xasprintf("%s %s", *dst, s) : xstrdup(s);
        free(*dst);
        *dst = nv;
        return 0;
    }
    case KT_NETS: {
        struct kconf *c = base;
        struct conf_net net;
        if (conf_net_parse(s, &net) != 0) {
            snprintf(why, whylen,
                     "invalid network \"%s\" for \"%s\": expected an address or CIDR like "
                     "192.0.2.0/24 or 2001:db8::/32",
                     s, k->name);
            return -1;
        }
        if (c->ntrusted >= 1024) {
            snprintf(why, whylen, "too many networks for \"%s\" (at most 1024)", k->name);
            return -1;
        }
        c->trusted = xrealloc(c->trusted, (c->ntrusted + 1) * sizeof *c->trusted);
        c->trusted[c->ntrusted++] = net;
        return 0;
    }
    }
    if (v < k->min || v > k->max) {
        snprintf(why, whylen, "value \"%s\" for \"%s\" is out of range (%s to %s)", s, k->name, lo,
                 hi);
        return -1;
    }
    if (k->type == KT_SIZE)
        *(size_t *)field(base, k) = (size_t)v;
    else if (k->type == KT_DOUBLE)
        *(double *)field(base, k) = v;
    else
        *(int *)field(base, k) = (int)v;
    return 0;
}

/* Write the value of k in base as it would appear in a file; 0, or -1 when unset. */
static int value_text(const struct conf_key *k, const void *base, struct buf *out)
{
    const void *f = (const char *)base + k->off;
    char tmp[64];
    switch (k->type) {
    case KT_STR:
    case KT_HOST:
    case KT_PATH:
    case KT_CHOICE:
    case KT_HOSTLIST: {
        const char *s = *(char *const *)f;
        if (!s) return -1;
        if (k->type == KT_CHOICE || k->type == KT_HOSTLIST) return buf_puts(out, s), 0;
        buf_puts(out, "\"");
        for (const char *p = s; *p; p++) {
            if (*p == '"' || *p == '\\')
                buf_printf(out, "\\%c", *p);
            else if (*p == '\n')
                buf_puts(out, "\\n");
            else if (*p == '\t')
                buf_puts(out, "\\t");
            else if (*p == '\r')
                buf_puts(out, "\\r");
            else
                buf_append(out, p, 1);
        }
        buf_puts(out, "\"");
        return 0;
    }
    case KT_ENUM:
        choice_name(tmp, sizeof tmp, k->choices, *(const int *)f);
        break;
    case KT_BOOL:
        str_copy(tmp, *(const int *)f ? "on" : "off", sizeof tmp);
        break;
    case KT_INT:
        snprintf(tmp, sizeof tmp, "%d", *(const int *)f);
        break;
    case KT_DUR:
        fmt_dur(tmp, sizeof tmp, *(const int *)f);
        break;
    case KT_SIZE:
        fmt_size(tmp, sizeof tmp, *(const size_t *)f);
        break;
    case KT_DOUBLE:
        fmt_double(tmp, sizeof tmp, *(const double *)f);
        break;
    case KT_NETS: {
        const struct kconf *c = base;
        if (c->ntrusted == 0) return -1;
        for (size_t i = 0; i < c->ntrusted; i++) {
            char a[INET6_ADDRSTRLEN];
            inet_ntop(c->trusted[i].family, c->trusted[i].addr, a, sizeof a);
            buf_printf(out, "%s%s/%d", i ? " " : "", a, c->trusted[i].prefix);
        }
        return 0;
    }
    }
    buf_puts(out, tmp);
    return 0;
}

/* --- suggestions ------------------------------------------------------------ */

static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int c = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < c) c = prev[j] + 1;
            if (cur[j - 1] + 1 < c) c = cur[j - 1] + 1;
            cur[j] = c;
        }
        memcpy(prev, cur, (lb + 1) * sizeof *prev);
    }
    return prev[lb];
}

static void consider(const char *cand, const char *name, const char **best, int *bestd)
{
    int d = edit_distance(name, cand);
    int limit = strlen(name) <= 4 ? 1 : 2;
    if (d <= limit && d < *bestd) {
        *bestd = d;
        *best = cand;
    }
}

/* " (did you mean "x"?)" into dst, or "" when nothing is close. */
static void suggest(char *dst, size_t size, enum kblock blk, const char *name)
{
    const char *best = NULL;
    int bestd = 99;
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].block == blk) consider(keys[i].name, name, &best, &bestd);
    if (blk == KB_MAIN) {
        for (int b = 1; b < KB_COUNT; b++)
            consider(block_names[b], name, &best, &bestd);
        consider("include", name, &best, &bestd);
    }
    if (best) {
        snprintf(dst, size, " (did you mean \"%s\"?)", best);
        return;
    }
    enum kblock where = KB_MAIN;
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].block != blk) {
            const char *old = best;
            consider(keys[i].name, name, &best, &bestd);
            if (best != old) where = keys[i].block;
        }
    if (best && where == KB_MAIN)
        snprintf(dst, size, " (did you mean \"%s\" at top level?)", best);
    else if (best)
        snprintf(dst, size, " (did you mean \"%s\" in block \"%s\"?)", best, block_names[where]);
    else
        dst[0] = '\0';
}

/* --- applying the tree -------------------------------------------------------- */

struct loader {
    struct conf_errors *errs;
    char **files; /* names the nodes borrow; freed when loading ends */
    size_t nfiles;
    char **stack; /* real paths of the files being read, for loop detection */
    size_t nstack;
};

static const char *where_name(enum kblock b, char *dst, size_t size)
{
    if (b == KB_MAIN)
        str_copy(dst, "at top level", size);
    else
        snprintf(dst, size, "in block \"%s\"", block_names[b]);
    return dst;
}

static const struct conf_key *key_find(enum kblock blk, const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].block == blk && strcmp(keys[i].name, name) == 0) return &keys[i];
    return NULL;
}

static int block_find(const char *name)
{
    for (int b = 1; b < KB_COUNT; b++)
        if (strcmp(block_names[b], name) == 0) return b;
    return -1;
}

static void apply_defaults(enum kblock blk, void *base)
{
    char why[256];
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].block == blk && keys[i].def)
            value_set(&keys[i], base, keys[i].def, why, sizeof why);
}

/* Apply one key node; seen[] holds the node that first set each key. */
static void apply_key(struct loader *L, const struct conf_key *k, const struct conf_node *n,
                      void *base, const struct conf_node **seen)
{
    size_t idx = (size_t)(k - keys);
    if (n->children)
        conf_errors_add(L->errs, n->file, n->line, n->col, "key \"%s\" takes no block", n->name);
    if (seen[idx] && k->type != KT_NETS) {
        conf_errors_add(L->errs, n->file, n->line, n->col,
                        "duplicate key \"%s\" (first set at %s:%d:%d)", n->name, seen[idx]->file,
                        seen[idx]->line, seen[idx]->col);
        return;
    }
    seen[idx] = n;
    if (n->nargs == 0) {
        conf_errors_add(L->errs, n->file, n->line, n->col, "missing argument for \"%s\"", n->name);
        return;
    }
    if (n->nargs > 1 && k->type != KT_NETS && k->type != KT_HOSTLIST) {
        /* "hostname x\nuser y;" reads as three arguments: name the likely cause. */
        const char *next_key = NULL;
        for (size_t i = 1; i < n->nargs && !next_key; i++)
            for (size_t j = 0; j < NKEYS && !next_key; j++)
                if (strcmp(n->args[i], keys[j].name) == 0 || block_find(n->args[i]) > 0)
                    next_key = n->args[i];
        if (next_key)
            conf_errors_add(L->errs, n->file, n->line, n->col,
                            "too many arguments for \"%s\" (expected 1, got %zu; is a \";\" "
                            "missing before \"%s\"?)",
                            n->name, n->nargs, next_key);
        else
            conf_errors_add(L->errs, n->file, n->line, n->col,
                            "too many arguments for \"%s\" (expected 1, got %zu)", n->name,
                            n->nargs);
        return;
    }
    for (size_t i = 0; i < n->nargs; i++) {
        char why[512];
        if (value_set(k, base, n->args[i], why, sizeof why) != 0)
            conf_errors_add(L->errs, n->file, n->line, n->col, "%s", why);
    }
}

/* A name that is no key of blk: say where it belongs, or what was meant. */
static void unknown_key(struct loader *L, enum kblock blk, const struct conf_node *n)
{
    char here[64], there[64];
    int b = block_find(n->name);
    if (b > 0) {
        conf_errors_add(L->errs, n->file, n->line, n->col, "block \"%s\" is not allowed %s",
                        n->name, where_name(blk, here, sizeof here));
        return;
    }
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, n->name) == 0) {
            conf_errors_add(L->errs, n->file, n->line, n->col, "key \"%s\" belongs %s, not %s",
                            n->name, where_name(keys[i].block, there, sizeof there),
                            where_name(blk, here, sizeof here));
            return;
        }
    char hint[128];
    suggest(hint, sizeof hint, blk, n->name);
    if (blk == KB_MAIN)
        conf_errors_add(L->errs, n->file, n->line, n->col, "unknown key \"%s\"%s", n->name, hint);
    else
        conf_errors_add(L->errs, n->file, n->line, n->col, "unknown key \"%s\" in block \"%s\"%s",
                        n->name, block_names[blk], hint);
}

/* Apply the keys of list to base. 1 when that added no error, 0 otherwise. */
static int apply_block(struct loader *L, enum kblock blk, const struct conf_node *list, void *base,
                       const struct conf_node **seen)
{
    size_t nerr = L->errs->n;
    for (const struct conf_node *n = list; n; n = n->next) {
        const struct conf_key *k = key_find(blk, n->name);
        if (k)
            apply_key(L, k, n, base, seen);
        else
            unknown_key(L, blk, n);
    }
    return L->errs->n == nerr;
}

/* A block that takes exactly one argument ("listen ADDRESS { ... }"): 1 when it
 * has one, else 0 with the error added. */
static int one_arg(struct loader *L, const struct conf_node *n, const char *expected)
{
    if (n->nargs == 1) return 1;
    conf_errors_add(L->errs, n->file, n->line, n->col, "%s for \"%s\" (expected %s)",
                    n->nargs ? "too many arguments" : "missing argument", n->name, expected);
    return 0;
}

/* "127.0.0.1:2525", "[::1]:25", "*:25", "25" into host and port. 0, or -1 with why. */
static int listen_addr_parse(const char *s, struct conf_listen *l, char *why, size_t whylen)
{
    char host[128] = "";
    const char *port;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof host) {
            snprintf(why, whylen, "expected [IPV6]:PORT");
            return -1;
        }
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = '\0';
        port = rb + 2;
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1) {
            snprintf(why, whylen, "\"%s\" is not an IPv6 address", host);
            return -1;
        }
        inet_ntop(AF_INET6, &a6, host, sizeof host);
    } else if (strchr(s, ':')) {
        const char *colon = strchr(s, ':');
        if (strchr(colon + 1, ':')) {
            snprintf(why, whylen, "IPv6 addresses need brackets, as in [::1]:25");
            return -1;
        }
        if ((size_t)(colon - s) >= sizeof host) {
            snprintf(why, whylen, "address too long");
            return -1;
        }
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
        if (strcmp(host, "*") == 0 || host[0] == '\0') {
            host[0] = '\0';
        } else {
            struct in_addr a4;
            if (inet_pton(AF_INET, host, &a4) != 1) {
                snprintf(why, whylen,
                         "\"%s\" is not an IP address (use 192.0.2.1:25, [::1]:25 or *:25)", host);
                return -1;
            }
            inet_ntop(AF_INET, &a4, host, sizeof host);
        }
    } else {
        port = s;
    }
    if (!*port || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5 ||
        atoi(port) < 1 || atoi(port) > 65535) {
        snprintf(why, whylen, "port must be a number from 1 to 65535");
        return -1;
    }
    str_copy(l->host, host, sizeof l->host);
    l->port = atoi(port);
    return 0;
}

static void listen_free(struct conf_listen *l)
{
    if (!l) return;
    free(l->address);
    free(l->tls_cert);
    free(l->tls_key);
    free(l->sni_certs);
    free(l);
}

static void apply_listen(struct loader *L, struct kconf *c, const struct conf_node *n)
{
    const struct conf_node *seen[NKEYS] = {0};
    struct conf_listen *l = xcalloc(1, sizeof *l);
    apply_defaults(KB_LISTEN, l);
    int ok = one_arg(L, n, "ADDRESS");
    if (ok) {
        char why[256];
        l->address = xstrdup(n->args[0]);
        if (listen_addr_parse(n->args[0], l, why, sizeof why) != 0) {
            conf_errors_add(L->errs, n->file, n->line, n->col, "invalid listen address \"%s\": %s",
                            n->args[0], why);
            ok = 0;
        }
    }
    if (!apply_block(L, KB_LISTEN, n->children, l, seen)) ok = 0;
    if (l->role == LISTEN_SUBMISSION) {
        if (!seen[key_find(KB_LISTEN, "auth") - keys]) l->auth = 1;
        if (!seen[key_find(KB_LISTEN, "require_auth") - keys]) l->require_auth = 1;
    }
    if (ok && l->tls != LISTEN_TLS_NONE && (!l->tls_cert || !l->tls_key)) {
        conf_errors_add(L->errs, n->file, n->line, n->col,
                        "listen \"%s\": tls %s needs both \"cert\" and \"key\"", l->address,
                        l->tls == LISTEN_TLS_STARTTLS ? "starttls" : "implicit");
        ok = 0;
    }
    if (ok && l->require_auth && !l->auth) {
        conf_errors_add(L->errs, n->file, n->line, n->col,
                        "listen \"%s\": \"require_auth on\" needs \"auth on\"", l->address);
        ok = 0;
    }
    struct conf_listen **tail = &c->listeners;
    for (; *tail; tail = &(*tail)->next)
        if (ok && (*tail)->port == l->port && strcmp((*tail)->host, l->host) == 0) {
            conf_errors_add(L->errs, n->file, n->line, n->col,
                            "duplicate listen address \"%s\" (same as \"%s\")", l->address,
                            (*tail)->address);
            ok = 0;
        }
    if (ok)
        *tail = l;
    else
        listen_free(l);
}

static void transport_free(struct conf_transport *t)
{
    if (!t) return;
    free(t->domain);
    free(t->relay);
    free(t);
}

static void apply_transport(struct loader *L, struct kconf *c, const struct conf_node *n)
{
    const struct conf_node *seen[NKEYS] = {0};
    struct conf_transport *t = xcalloc(1, sizeof *t);
    apply_defaults(KB_TRANSPORT, t);
    const char *d = n->nargs == 1 ? n->args[0] : "";
    const char *name = d[0] == '.' ? d + 1 : d;
    int ok = one_arg(L, n, "DOMAIN");
    if (ok && (!*name || strlen(name) > 253 ||
               strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") !=
                   strlen(name))) {
        conf_errors_add(L->errs, n->file, n->line, n->col,
                        "invalid transport domain \"%s\": expected example.org, or .example.org "
                        "for its subdomains",
                        d);
        ok = 0;
    } else if (ok) {
        t->domain = xstrdup(d);
        str_lower(t->domain);
    }
    if (!apply_block(L, KB_TRANSPORT, n->children, t, seen)) ok = 0;
    struct conf_transport **tail = &c->transports;
    for (; *tail; tail = &(*tail)->next)
        if (ok && strcmp((*tail)->domain, t->domain) == 0) {
            conf_errors_add(L->errs, n->file, n->line, n->col, "duplicate transport \"%s\"",
                            t->domain);
            ok = 0;
        }
    if (ok)
        *tail = t;
    else
        transport_free(t);
}

static void apply_tree(struct loader *L, struct kconf *c, const struct conf_node *tree)
{
    const struct conf_node *seen[NKEYS] = {0};
    for (const struct conf_node *n = tree; n; n = n->next) {
        int b = block_find(n->name);
        if (strcmp(n->name, "include") == 0) {
            /* conf_load() expands includes first; conf_apply() does no I/O. */
            conf_errors_add(L->errs, n->file, n->line, n->col,
                            "\"include\" is not followed here (no file access)");
        } else if (b == KB_LISTEN) {
            apply_listen(L, c, n);
        } else if (b == KB_TRANSPORT) {
            apply_transport(L, c, n);
        } else if (b > 0) {
            if (n->nargs)
                conf_errors_add(L->errs, n->file, n->line, n->col,
                                "block \"%s\" takes no arguments (write %s { ... })", n->name,
                                n->name);
            apply_block(L, (enum kblock)b, n->children, c, seen);
        } else {
            const struct conf_key *k = key_find(KB_MAIN, n->name);
            if (k)
                apply_key(L, k, n, c, seen);
            else
                unknown_key(L, KB_MAIN, n);
        }
    }
}

/* --- reading files and includes ------------------------------------------------ */

static struct conf_node *load_file(struct loader *L, const char *path, const struct conf_node *from,
                                   int depth);

static int has_glob_chars(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

/* Replace include nodes in list (read from a file in dir) by the files they name. */
static struct conf_node *expand(struct loader *L, struct conf_node *list, const char *dir,
                                int depth)
{
    struct conf_node *head = NULL, **tail = &head;
    while (list) {
        struct conf_node *n = list;
        list = n->next;
        n->next = NULL;
        if (strcmp(n->name, "include") != 0) {
            if (n->children) n->children = expand(L, n->children, dir, depth);
            *tail = n;
            tail = &n->next;
            continue;
        }
        if (n->nargs != 1 || n->children) {
            conf_errors_add(L->errs, n->file, n->line, n->col,
                            "\"include\" takes one file name or pattern and no block");
        } else if (depth + 1 >= INCLUDE_MAX_DEPTH) {
            conf_errors_add(L->errs, n->file, n->line, n->col,
                            "includes nested too deeply (at most %d levels)", INCLUDE_MAX_DEPTH);
        } else {
            const char *arg = n->args[0];
            char *pattern = arg[0] == '/' || strcmp(dir, ".") == 0 ? xstrdup(arg)
                                                                   : xasprintf("%s/%s", dir, arg);
            glob_t g;
            int r = glob(pattern, 0, NULL, &g);
            if (r == GLOB_NOMATCH && !has_glob_chars(arg)) {
                conf_errors_add(L->errs, n->file, n->line, n->col,
                                "cannot read included file \"%s\": %s", pattern, strerror(ENOENT));
            } else if (r != 0 && r != GLOB_NOMATCH) {
                conf_errors_add(L->errs, n->file, n->line, n->col,
                                "cannot expand include pattern \"%s\"", pattern);
            } else if (r == 0) {
                for (size_t i = 0; i < g.gl_pathc; i++) {
                    struct conf_node *sub = load_file(L, g.gl_pathv[i], n, depth + 1);
                    *tail = sub;
                    while (*tail)
                        tail = &(*tail)->next;
                }
            }
            if (r == 0 || r == GLOB_NOMATCH) globfree(&g);
            free(pattern);
        }
        conf_tree_free(n);
    }
    return head;
}

static struct conf_node *load_file(struct loader *L, const char *path, const struct conf_node *from,
                                   int depth)
{
    char *name = xstrdup(path);
    L->files = xrealloc(L->files, (L->nfiles + 1) * sizeof *L->files);
    L->files[L->nfiles++] = name;

    char *real = realpath(path, NULL);
    if (real) {
        for (size_t i = 0; i < L->nstack; i++)
            if (strcmp(L->stack[i], real) == 0) {
                conf_errors_add(L->errs, from ? from->file : name, from ? from->line : 0,
                                from ? from->col : 0, "include loop: \"%s\" includes itself", name);
                free(real);
                return NULL;
            }
    }
    size_t len = 0;
    char *text = real ? file_read(path, &len) : NULL;
    if (!text) {
        const char *err = strerror(errno);
        if (from)
            conf_errors_add(L->errs, from->file, from->line, from->col,
                            "cannot read included file \"%s\": %s", name, err);
        else
            conf_errors_add(L->errs, name, 0, 0, "cannot read: %s", err);
        free(real);
        return NULL;
    }
    struct conf_node *tree = conf_parse(text, len, name, L->errs);
    free(text);

    L->stack = xrealloc(L->stack, (L->nstack + 1) * sizeof *L->stack);
    L->stack[L->nstack++] = real;
    char *slash = strrchr(name, '/');
    char *dir = slash ? xstrndup(name, slash == name ? 1 : (size_t)(slash - name)) : xstrdup(".");
    tree = expand(L, tree, dir, depth);
    free(dir);
    free(L->stack[--L->nstack]);
    return tree;
}

/* --- public API ------------------------------------------------------------------ */

static void derive(char **dst, const char *state_dir, const char *leaf)
{
    if (!*dst) *dst = xasprintf("%s/%s", state_dir, leaf);
}

static struct kconf *kconf_new(const char *file)
{
    struct kconf *c = xcalloc(1, sizeof *c);
    c->file = xstrdup(file ? file : "-");
    apply_defaults(KB_MAIN, c);
    apply_defaults(KB_LOG, c);
    apply_defaults(KB_LIMITS, c);
    apply_defaults(KB_QUEUE, c);
    apply_defaults(KB_RELAY, c);
    apply_defaults(KB_AUTH, c);
    apply_defaults(KB_OUTBOUND, c);
    return c;
}

/* Fill computed defaults; return c, or free it and return NULL when errors came. */
static struct kconf *kconf_finish(struct kconf *c, const struct conf_errors *errs, size_t nerr)
{
    if (!c->hostname) {
        char h[256];
        if (gethostname(h, sizeof h) != 0) str_copy(h, "localhost", sizeof h);
        h[sizeof h - 1] = '\0';
        c->hostname = xstrdup(h);
    }
    derive(&c->spool_dir, c->state_dir, "spool");
    derive(&c->directory, c->state_dir, "kurier.db");
    derive(&c->control_socket, c->state_dir, "control.sock");
    if (errs->n != nerr) {
        conf_free(c);
        return NULL;
    }
    return c;
}

struct kconf *conf_apply(const struct conf_node *tree, const char *file, struct conf_errors *errs)
{
    struct conf_errors local = {0};
    if (!errs) errs = &local;
    size_t nerr = errs->n;
    struct loader L = {.errs = errs};
    struct kconf *c = kconf_new(file);
    apply_tree(&L, c, tree);
    c = kconf_finish(c, errs, nerr);
    conf_errors_free(&local);
    return c;
}

struct kconf *conf_load(const char *file, struct conf_errors *errs)
{
    struct conf_errors local = {0};
    if (!errs) errs = &local;
    size_t nerr = errs->n;
    struct loader L = {.errs = errs};
    struct kconf *c = kconf_new(file);

    struct conf_node *tree = load_file(&L, file, NULL, 0);
    apply_tree(&L, c, tree);
    conf_tree_free(tree);
    for (size_t i = 0; i < L.nfiles; i++)
        free(L.files[i]);
    free(L.files);
    free(L.stack);

    c = kconf_finish(c, errs, nerr);
    conf_errors_free(&local);
    return c;
}

void conf_free(struct kconf *c)
{
    if (!c) return;
    char **strs[] = {&c->file,        &c->hostname,           &c->user,
                     &c->state_dir,   &c->spool_dir,          &c->maildir_root,
                     &c->directory,   &c->control_socket,     &c->locale,
                     &c->log_target,  &c->log_name,           &c->log_debug,
                     &c->resolver,    &c->relay_host,         &c->out_helo,
                     &c->out_ca_file, &c->auth_dovecot_socket};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        free(*strs[i]);
    free(c->trusted);
    while (c->listeners) {
        struct conf_listen *next = c->listeners->next;
        listen_free(c->listeners);
        c->listeners = next;
    }
    while (c->transports) {
        struct conf_transport *next = c->transports->next;
        transport_free(c->transports);
        c->transports = next;
    }
    free(c);
}

static void dump_block(FILE *out, enum kblock blk, const void *base, const char *indent)
{
    struct buf b;
    buf_init(&b, 0);
    for (size_t i = 0; i < NKEYS; i++) {
        const struct conf_key *k = &keys[i];
        if (k->block != blk) continue;
        buf_reset(&b);
        fprintf(out, "%s# %s\n", indent, k->help);
        if (value_text(k, base, &b) == 0)
            fprintf(out, "%s%s %s;\n", indent, k->name, b.data);
        else
            fprintf(out, "%s# %s (not set)\n", indent, k->name);
    }
    buf_release(&b);
}

void conf_dump(const struct kconf *c, FILE *out)
{
    fprintf(out, "# Effective configuration of %s (kurier config dump).\n\n", c->file);
    dump_block(out, KB_MAIN, c, "");
    for (int b = KB_LOG; b < KB_LISTEN; b++) {
        fprintf(out, "\n%s {\n", block_names[b]);
        dump_block(out, (enum kblock)b, c, "    ");
        fprintf(out, "}\n");
    }
    for (const struct conf_listen *l = c->listeners; l; l = l->next) {
        struct buf b;
        buf_init(&b, 0);
        const struct conf_key addr = {.type = KT_STR, .off = offsetof(struct conf_listen, address)};
        value_text(&addr, l, &b);
        fprintf(out, "\nlisten %s {\n", b.data);
        buf_release(&b);
        dump_block(out, KB_LISTEN, l, "    ");
        fprintf(out, "}\n");
    }
    for (const struct conf_transport *t = c->transports; t; t = t->next) {
        fprintf(out, "\ntransport %s {\n", t->domain);
        dump_block(out, KB_TRANSPORT, t, "    ");
        fprintf(out, "}\n");
    }
}

static void md_cell(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|') fputc('\\', out);
        fputc(*s, out);
    }
}

static void doc_type(FILE *out, const struct conf_key *k)
{
    static const char *const names[] = {
        [KT_STR] = "string",    [KT_HOST] = "host name", [KT_PATH] = "path",
        [KT_INT] = "integer",   [KT_SIZE] = "size",      [KT_DUR] = "duration",
        [KT_DOUBLE] = "number", [KT_BOOL] = "on/off",    [KT_ENUM] = "",
        [KT_CHOICE] = "",       [KT_NETS] = "networks",  [KT_HOSTLIST] = "hosts",
    };
    if (k->choices) {
        fputs("one of ", out);
        md_cell(out, k->choices);
    } else {
        fputs(names[k->type], out);
    }
}

static void doc_table(FILE *out, enum kblock blk)
{
    fprintf(out, "| key | type | default | limits | description |\n");
    fprintf(out, "|---|---|---|---|---|\n");
    for (size_t i = 0; i < NKEYS; i++) {
        const struct conf_key *k = &keys[i];
        if (k->block != blk) continue;
        fprintf(out, "| `%s` | ", k->name);
        doc_type(out, k);
        fputs(" | ", out);
        if (k->defdoc)
            md_cell(out, k->defdoc);
        else if (k->def && !*k->def)
            fputs("`\"\"`", out);
        else if (k->def) {
            fputc('`', out);
            md_cell(out, k->def);
            fputc('`', out);
        }
        fputs(" | ", out);
        if (k->type == KT_INT || k->type == KT_SIZE || k->type == KT_DUR || k->type == KT_DOUBLE) {
            char lo[32], hi[32];
            fmt_limit(lo, sizeof lo, k, k->min);
            fmt_limit(hi, sizeof hi, k, k->max);
            fprintf(out, "%s to %s", lo, hi);
        }
        fputs(" | ", out);
        md_cell(out, k->help);
        fputs(" |\n", out);
    }
    if (blk == KB_MAIN)
        fprintf(out, "| `include` | pattern | | | Read more files here; relative to the "
                     "including file's folder, glob patterns allowed. |\n");
}

void conf_doc_markdown(FILE *out)
{
    fprintf(out, "# kurier.conf reference\n\n"
                 "<!-- Generated by `kurier config doc` from the key table in src/core/conf.c; "
                 "do not edit. -->\n\n"
                 "One file, `kurier.conf`, in nginx-like syntax: `key value;` lines and "
                 "`name { ... }` blocks. `#` starts a comment to the end of the line. Values "
                 "may be quoted with `\"` or `'`; inside quotes a backslash escapes the next "
                 "character (`\\n`, `\\t` as usual). Every key is optional and its default is "
                 "safe on the internet. `kurier config check FILE` names the line and column of "
                 "every error; `kurier config dump` prints the effective configuration.\n\n"
                 "`include PATTERN;` reads other files at that point (relative to the including "
                 "file's folder; glob patterns such as `conf.d/*.conf` are read in sorted order "
                 "and may match nothing).\n\n"
                 "Units: a *size* is bytes with an optional `K`, `M` or `G` suffix (1024-based), "
                 "e.g. `50M`. A *duration* is seconds, or a number with `s`, `m`, `h`, `d` or "
                 "`w`, also combined (`1h30m`). *on/off* also accepts `yes`/`no`. A relative "
                 "*path* is resolved against the current folder when the file is read. "
                 "*networks* are IPv4 or IPv6 addresses or CIDR prefixes (`192.0.2.0/24`, "
                 "`2001:db8::/32`); IPv4-mapped IPv6 clients match IPv4 networks.\n\n"
                 "## Top level\n\n");
    doc_table(out, KB_MAIN);
    for (int b = KB_LOG; b < KB_LISTEN; b++) {
        fprintf(out, "\n## %s { }\n\n", block_names[b]);
        doc_table(out, (enum kblock)b);
    }
    fprintf(out, "\n## listen ADDRESS { }\n\n"
                 "One block per listening socket, in any number. ADDRESS is `IPV4:PORT`, "
                 "`[IPV6]:PORT`, `*:PORT` or just `PORT` (all addresses). The same address may "
                 "not appear twice. `role submission` turns on `auth` and `require_auth` unless "
                 "they are set; `tls starttls` and `tls implicit` need `cert` and `key`; "
                 "`require_auth on` needs `auth on`.\n\n");
    doc_table(out, KB_LISTEN);
    fprintf(out, "\n## transport DOMAIN { }\n\n"
                 "Where mail for a recipient domain goes, in any number. DOMAIN is `example.org`, "
                 "or `.example.org` for every subdomain too; the longest match wins. Without "
                 "`relay` the domain's MX hosts are used with this block's `tls`. Routes per "
                 "sender (with a login) are in the directory: `kurier relay add`. Order: sender "
                 "route, transport, `relay_host`, MX (see docs/outbound.md).\n\n");
    doc_table(out, KB_TRANSPORT);
}

/* --- networks ------------------------------------------------------------------------ */

int conf_net_parse(const char *s, struct conf_net *out)
{
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof addr) return -1;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    struct conf_net n = {0};
    int max;
    if (inet_pton(AF_INET, addr, n.addr) == 1) {
        n.family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, n.addr) == 1) {
        n.family = AF_INET6;
        max = 128;
    } else {
        return -1;
    }
    n.prefix = max;
    if (slash) {
        const char *p = slash + 1;
        size_t plen = strlen(p);
        if (plen == 0 || plen > 3 || strspn(p, "0123456789") != plen) return -1;
        n.prefix = atoi(p);
        if (n.prefix > max) return -1;
    }
    /* Clear host bits so that 10.1.2.3/8 prints and compares as 10.0.0.0/8. */
    for (int bit = n.prefix; bit < max; bit++)
        n.addr[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
    *out = n;
    return 0;
}

static int prefix_eq(const unsigned char *a, const unsigned char *b, int prefix)
{
    int full = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, (size_t)full) != 0) return 0;
    if (rest == 0) return 1;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

int conf_net_match(const struct conf_net *net, const struct sockaddr *sa)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (!net || !sa) return 0;
    unsigned char v4[4], v6[16];
    int has4 = 0, has6 = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(v4, &in->sin_addr, 4);
        memcpy(v6, mapped, 12);
        memcpy(v6 + 12, v4, 4);
        has4 = 1;
        /* Only nets inside ::ffff:0:0/96 name IPv4 clients; ::/0 does not. */
        has6 = net->family == AF_INET6 && net->prefix >= 96 && memcmp(net->addr, mapped, 12) == 0;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(v6, &in6->sin6_addr, 16);
        has6 = 1;
        if (memcmp(v6, mapped, 12) == 0) {
            memcpy(v4, v6 + 12, 4);
            has4 = 1;
        }
    } else {
        return 0;
    }
    if (net->family == AF_INET) return has4 && prefix_eq(v4, net->addr, net->prefix);
    if (net->family == AF_INET6) return has6 && prefix_eq(v6, net->addr, net->prefix);
    return 0;
}
