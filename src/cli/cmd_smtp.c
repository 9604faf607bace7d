/* cmd_smtp.c: "kurier smtp send": one message through kurier's own SMTP client
 * (src/smtp/client.c) to a chosen host, so admins can test a route and see each
 * recipient's answer and the TLS state exactly as the daemon would get them. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "smtp/smtp.h"

struct send_job {
    struct event_base *base;
    struct smtp_client *c;
    struct smtp_client_msg msg;
    int count, sent; /* messages to send over the one connection, and sent so far */
    int status;      /* exit status */
    int connected;
};

static int usage(void)
{
    fprintf(stderr,
            "usage: kurier smtp send --to HOST:PORT --from ADDR --rcpt ADDR [--rcpt ADDR]...\n"
            "           [--source IP] [--tls none|may|encrypt|verify|implicit|implicit-verify]\n"
            "           [--ca-file FILE]\n"
            "           [--peer-name NAME] [--auth USER:PASS] [--helo NAME] [--timeout SEC]\n"
            "           [--notify never|success,failure,delay] [--orcpt] [--ret full|hdrs]\n"
            "           [--envid ID] [--8bitmime] [--smtputf8] [--count N] FILE\n"
            "  Sends FILE (LF line ends are sent as CRLF) and prints one line per recipient\n"
            "  with the server's answer, and the TLS state. HOST may be [IPv6]:PORT.\n"
            "  --tls may (default) uses STARTTLS when offered; encrypt requires it; verify\n"
            "  also checks the certificate for --peer-name (default HOST). implicit speaks\n"
            "  TLS from the first byte (port 465, RFC 8314); implicit-verify also checks\n"
            "  the certificate. --count N sends\n"
            "  the message N times over one connection. Exit 0 when every recipient was\n"
            "  accepted, 1 otherwise.\n");
    return 2;
}

/* "host:port" or "[v6]:port" into a socket address (blocking lookup: this is a CLI). */
static int parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len, char *host,
                          size_t hostsize)
{
    const char *port;
    if (s[0] == '[') {
        const char *e = strchr(s, ']');
        if (!e || e[1] != ':') return -1;
        if ((size_t)(e - s - 1) >= hostsize) return -1;
        memcpy(host, s + 1, (size_t)(e - s - 1));
        host[e - s - 1] = 0;
        port = e + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= hostsize) return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
        port = colon + 1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int e = getaddrinfo(host, port, &hints, &res);
    if (e != 0) {
        fprintf(stderr, "kurier smtp: %s: %s\n", s, gai_strerror(e));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* FILE with every bare LF turned into CRLF, as an unlinked temporary file. Returns
 * the descriptor (size in *size) or -1. */
static int content_file(const char *path, unsigned long long *size)
{
    FILE *in = fopen(path, "rb");
    if (!in) {
        fprintf(stderr, "kurier smtp: %s: %s\n", path, strerror(errno));
        return -1;
    }
    const char *dir = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/kurier-smtp-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(tmpl);
    if (fd < 0) {
        fprintf(stderr, "kurier smtp: %s: %s\n", tmpl, strerror(errno));
        fclose(in);
        return -1;
    }
    unlink(tmpl);
    struct buf out;
    buf_init(&out, 0);
    int ch, prev = 0;
    *size = 0;
    while ((ch = getc(in)) != EOF) {
        if (ch == '\n' && prev != '\r') buf_append(&out, "\r", 1);
        char b = (char)ch;
        buf_append(&out, &b, 1);
        prev = ch;
        if (out.len >= 65536) {
            if (write_all(fd, out.data, out.len) < 0) goto fail;
            *size += out.len;
            buf_reset(&out);
        }
    }
    if (ferror(in) || write_all(fd, out.data, out.len) < 0) goto fail;
    *size += out.len;
    buf_release(&out);
    fclose(in);
    return fd;
fail:
    fprintf(stderr, "kurier smtp: %s: %s\n", path, strerror(errno));
    buf_release(&out);
    fclose(in);
    close(fd);
    return -1;
}

static void print_reply(const char *who, const struct smtp_client_reply *r)
{
    char esc[700];
    log_escape(esc, sizeof esc, r->text, strlen(r->text));
    if (r->code)
        printf("%s: %d %s %s (in reply to %s)\n", who, r->code, r->enh, esc,
               r->stage ? r->stage : "?");
    else
        printf("%s: %s %s (during %s)\n", who, r->enh, esc, r->stage ? r->stage : "?");
}

static void print_tls(struct smtp_client *c)
{
    const char *info = smtp_client_tls_info(c);
    if (*info)
        printf("TLS: %s, certificate %s\n", info,
               smtp_client_tls_verified(c) ? "verified" : "not verified");
    else
        printf("TLS: none\n");
}

static void send_next(struct send_job *j);

static void on_done(void *arg, struct smtp_client *c, int ok)
{
    struct send_job *j = arg;
    struct smtp_client_msg *m = &j->msg;
    j->sent++;
    if (j->count > 1) printf("message %d:\n", j->sent);
    for (size_t i = 0; i < m->nrcpts; i++) {
        const struct smtp_client_reply *r = &m->rcpt_reply[i];
        if (r->code >= 200 && r->code < 300) r = &m->reply;
        if (!(r->code >= 200 && r->code < 300)) j->status = 1;
        char who[1100];
        snprintf(who, sizeof who, "<%s>", m->rcpts[i]);
        print_reply(who, r);
    }
    fflush(stdout);
    if (ok && j->sent < j->count) {
        send_next(j);
        return;
    }
    if (!ok) {
        j->status = 1;
        print_reply("connection", smtp_client_last(c));
    }
    smtp_client_free(c); /* QUIT when idle; the loop ends once it has left */
    j->c = NULL;
}

static void send_next(struct send_job *j)
{
    smtp_client_send(j->c, &j->msg, on_done, j);
}

static void on_ready(void *arg, struct smtp_client *c, int ok)
{
    struct send_job *j = arg;
    if (!ok) {
        const struct smtp_client_reply *r = smtp_client_last(c);
        printf("connect to %s failed\n", smtp_client_peer(c));
        print_reply("error", r);
        for (size_t i = 0; i < j->msg.nrcpts; i++) {
            char who[1100];
            snprintf(who, sizeof who, "<%s>", j->msg.rcpts[i]);
            print_reply(who, r);
        }
        j->status = 1;
        smtp_client_free(c);
        j->c = NULL;
        return;
    }
    j->connected = 1;
    const struct smtp_client_caps *k = smtp_client_caps(c);
    printf("connected to %s (%s%s%s%s%s%s)\n", smtp_client_peer(c), k->esmtp ? "ESMTP" : "SMTP",
           k->pipelining ? " PIPELINING" : "", k->starttls ? " STARTTLS" : "", k->dsn ? " DSN" : "",
           k->smtputf8 ? " SMTPUTF8" : "", k->eightbit ? " 8BITMIME" : "");
    print_tls(c);
    fflush(stdout);
    send_next(j);
}

static int parse_notify(const char *s, unsigned *out)
{
    *out = 0;
    char *dup = xstrdup(s), *save = NULL;
    for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (str_ieq(t, "never"))
            *out |= SMTP_NOTIFY_NEVER;
        else if (str_ieq(t, "success"))
            *out |= SMTP_NOTIFY_SUCCESS;
        else if (str_ieq(t, "failure"))
            *out |= SMTP_NOTIFY_FAILURE;
        else if (str_ieq(t, "delay"))
            *out |= SMTP_NOTIFY_DELAY;
        else {
            free(dup);
            return -1;
        }
    }
    free(dup);
    return (*out & SMTP_NOTIFY_NEVER) && *out != SMTP_NOTIFY_NEVER ? -1 : 0;
}

static int cmd_send(int argc, char **argv)
{
    const char *to = NULL, *source = NULL, *auth = NULL, *helo = NULL, *from = NULL;
    const char *file = NULL, *peer_name = NULL, *ca_file = NULL, *envid = NULL;
    const char **rcpts = xcalloc((size_t)argc + 1, sizeof *rcpts);
    size_t nrcpts = 0;
    enum smtp_client_tls tls = SMTP_CTLS_MAY;
    int implicit = 0;
    int timeout = 0, orcpt = 0, count = 1;
    unsigned notify = 0;
    struct smtp_client_msg msg = {0};
    int rc = 2;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (strcmp(a, "--to") == 0 && v)
            to = v;
        else if (strcmp(a, "--source") == 0 && v)
            source = v;
        else if (strcmp(a, "--auth") == 0 && v)
            auth = v;
        else if (strcmp(a, "--helo") == 0 && v)
            helo = v;
        else if (strcmp(a, "--from") == 0 && v)
            from = v;
        else if (strcmp(a, "--rcpt") == 0 && v)
            rcpts[nrcpts++] = v;
        else if (strcmp(a, "--peer-name") == 0 && v)
            peer_name = v;
        else if (strcmp(a, "--ca-file") == 0 && v)
            ca_file = v;
        else if (strcmp(a, "--envid") == 0 && v)
            envid = v;
        else if (strcmp(a, "--timeout") == 0 && v)
            timeout = atoi(v);
        else if (strcmp(a, "--count") == 0 && v)
            count = atoi(v);
        else if (strcmp(a, "--notify") == 0 && v) {
            if (parse_notify(v, &notify) < 0) goto out;
        } else if (strcmp(a, "--ret") == 0 && v) {
            if (str_ieq(v, "full"))
                msg.ret = SMTP_RET_FULL;
            else if (str_ieq(v, "hdrs"))
                msg.ret = SMTP_RET_HDRS;
            else
                goto out;
        } else if (strcmp(a, "--tls") == 0 && v) {
            if (strcmp(v, "none") == 0)
                tls = SMTP_CTLS_NONE;
            else if (strcmp(v, "may") == 0)
                tls = SMTP_CTLS_MAY;
            else if (strcmp(v, "encrypt") == 0)
                tls = SMTP_CTLS_ENCRYPT;
            else if (strcmp(v, "verify") == 0)
                tls = SMTP_CTLS_VERIFY;
            else if (strcmp(v, "implicit") == 0)
                tls = SMTP_CTLS_ENCRYPT, implicit = 1;
            else if (strcmp(v, "implicit-verify") == 0)
                tls = SMTP_CTLS_VERIFY, implicit = 1;
            else
                goto out;
        } else {
            takes = 0;
            if (strcmp(a, "--orcpt") == 0)
                orcpt = 1;
            else if (strcmp(a, "--8bitmime") == 0)
                msg.body = SMTP_BODY_8BITMIME;
            else if (strcmp(a, "--smtputf8") == 0)
                msg.smtputf8 = 1;
            else if (a[0] == '-' && a[1]) {
                fprintf(stderr, "kurier smtp: unknown option %s\n", a);
                goto out;
            } else if (!file)
                file = a;
            else
                goto out;
        }
        i += takes;
    }
    if (!to || !from || !nrcpts || !file || count < 1) goto out;

    rc = 1;
    struct sockaddr_storage dst, src;
    socklen_t dstlen = 0, srclen = 0;
    char host[256];
    if (parse_hostport(to, &dst, &dstlen, host, sizeof host) < 0) {
        fprintf(stderr, "kurier smtp: bad --to %s (want HOST:PORT)\n", to);
        goto out;
    }
    if (source && ip_parse(source, &src, &srclen) < 0) {
        fprintf(stderr, "kurier smtp: bad --source %s (want an IP address)\n", source);
        goto out;
    }
    char *user = NULL, *pass = NULL;
    if (auth) {
        const char *colon = strchr(auth, ':');
        if (!colon) {
            fprintf(stderr, "kurier smtp: --auth wants USER:PASS\n");
            goto out;
        }
        user = xstrndup(auth, (size_t)(colon - auth));
        pass = xstrdup(colon + 1);
    }
    char myname[256] = "localhost";
    if (!helo && gethostname(myname, sizeof myname) == 0) myname[sizeof myname - 1] = 0;
    if (!peer_name) {
        unsigned char tmp[sizeof(struct in6_addr)];
        if (inet_pton(AF_INET, host, tmp) != 1 && inet_pton(AF_INET6, host, tmp) != 1)
            peer_name = host;
    }

    unsigned long long size = 0;
    int fd = content_file(file, &size);
    if (fd < 0) {
        free(user);
        free(pass);
        goto out;
    }
    unsigned *notifies = xcalloc(nrcpts, sizeof *notifies);
    char **orcpts = xcalloc(nrcpts, sizeof *orcpts);
    for (size_t i = 0; i < nrcpts; i++) {
        notifies[i] = notify;
        if (orcpt) orcpts[i] = xasprintf("rfc822;%s", rcpts[i]);
    }
    msg.sender = from;
    msg.rcpts = rcpts;
    msg.nrcpts = nrcpts;
    msg.notify = notifies;
    msg.orcpt = (const char *const *)orcpts;
    msg.envid = envid;
    msg.size = size;
    msg.content_fd = fd;
    msg.rcpt_reply = xcalloc(nrcpts, sizeof *msg.rcpt_reply);

    struct send_job j = {.msg = msg, .count = count, .status = 0};
    j.base = event_base_new();
    char err[256] = "";
    struct smtp_client_tls_ctx *tctx = smtp_client_tls_new(err, sizeof err);
    if (!tctx && tls != SMTP_CTLS_NONE) fprintf(stderr, "kurier smtp: TLS: %s\n", err);
    struct smtp_client_opts o = {
        .helo = helo ? helo : myname,
        .dst = (struct sockaddr *)&dst,
        .dstlen = dstlen,
        .src = source ? (struct sockaddr *)&src : NULL,
        .srclen = srclen,
        .peer_name = peer_name,
        .tls = tls,
        .implicit_tls = implicit,
        .ca_file = ca_file,
        .auth_user = user,
        .auth_pass = pass,
        .connect_timeout = timeout,
        .command_timeout = timeout,
        .data_timeout = timeout,
    };
    j.c = smtp_client_new(j.base, tctx, &o, on_ready, &j);
    event_base_dispatch(j.base);
    smtp_client_free(j.c);
    smtp_client_tls_free(tctx);
    event_base_free(j.base);
    rc = j.status;
    close(fd);
    for (size_t i = 0; i < nrcpts; i++)
        free(orcpts[i]);
    free(orcpts);
    free(notifies);
    free(j.msg.rcpt_reply);
    free(user);
    if (pass) explicit_bzero(pass, strlen(pass));
    free(pass);
out:
    free(rcpts);
    return rc == 2 ? usage() : rc;
}

int cmd_smtp(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "send") == 0) return cmd_send(argc, argv);
    return usage();
}
