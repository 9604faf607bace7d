/* cmd_sendmail.c: sendmail(1) compatible submission: reads a message from stdin,
 * completes its header (From, Date, Message-ID) and drops it into the maildrop,
 * which works for any local user and while kurierd is down. */
#include "core/compat.h"

#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "control/control.h"
#include "core/core.h"
#include "queue/queue.h"

/* Validate a bare mailbox; a bare local part gets "@hostname". New string or NULL
 * with *why set. */
static char *normalize_addr(const char *in, const char *hostname, const char **why)
{
    size_t len = strlen(in);
    while (len && (in[len - 1] == ' ' || in[len - 1] == '\t'))
        len--;
    while (len && (*in == ' ' || *in == '\t'))
        in++, len--;
    struct addr a = {0};
    *why = "empty address";
    if (!len) return NULL;
    int n = addr_parse(in, len, ADDR_O_NO_BRACKETS | ADDR_O_LOCAL_ONLY | ADDR_O_UTF8, &a, why);
    if (n < 0) return NULL;
    if ((size_t)n != len) {
        *why = "trailing characters after the address";
        addr_clear(&a);
        return NULL;
    }
    char *s = addr_format(&a);
    if (!a.domain) {
        char *t = xasprintf("%s@%s", s, hostname);
        free(s);
        s = t;
    }
    addr_clear(&a);
    return s;
}

/* Split an RFC 5322 address-list header value into mailboxes: "Name <a@b>",
 * "a@b (comment)", groups "team: a@b, c@d;". */
static void header_addrs(const char *v, struct strs *out)
{
    struct buf cur, ang;
    buf_init(&cur, 0);
    buf_init(&ang, 0);
    int quote = 0, comment = 0, angle = 0, got_angle = 0;
    for (const char *p = v;; p++) {
        char c = *p;
        int end = c == '\0';
        if (!end && quote) {
            buf_append(angle ? &ang : &cur, p, 1);
            if (c == '\\' && p[1])
                buf_append(angle ? &ang : &cur, ++p, 1);
            else if (c == '"')
                quote = 0;
            continue;
        }
        if (!end && comment) {
            if (c == '\\' && p[1])
                p++;
            else if (c == '(')
                comment++;
            else if (c == ')')
                comment--;
            continue;
        }
        if (end || (!angle && (c == ',' || c == ';'))) {
            const char *a = got_angle ? ang.data : cur.data;
            if (a && *a) {
                size_t l = strlen(a);
                while (l && (a[l - 1] == ' ' || a[l - 1] == '\t'))
                    l--;
                while (l && (*a == ' ' || *a == '\t'))
                    a++, l--;
                if (l) strs_add(out, xstrndup(a, l));
            }
            buf_reset(&cur);
            buf_reset(&ang);
            got_angle = 0;
            if (end) break;
            continue;
        }
        if (c == '"') {
            quote = 1;
            buf_append(angle ? &ang : &cur, p, 1);
        } else if (c == '(') {
            comment = 1;
        } else if (c == '<' && !angle) {
            angle = 1;
            got_angle = 1;
            buf_reset(&ang);
        } else if (c == '>' && angle) {
            angle = 0;
        } else if (c == ':' && !angle) {
            buf_reset(&cur); /* a group name */
        } else {
            buf_append(angle ? &ang : &cur, p, 1);
        }
    }
    buf_release(&cur);
    buf_release(&ang);
}

/* "Name: " at the start of a header line: the length of the name, 0 when not a
 * header field (RFC 5322 2.2: printable ASCII except ':'). */
static size_t field_name_len(const char *line, size_t len)
{
    size_t i = 0;
    while (i < len && line[i] > 32 && line[i] < 127 && line[i] != ':')
        i++;
    return i > 0 && i < len && line[i] == ':' ? i : 0;
}

static int name_is(const char *line, size_t nl, const char *name)
{
    return strlen(name) == nl && strncasecmp(line, name, nl) == 0;
}

/* Add the header fields a message must have (RFC 5322 3.6) when missing, after the
 * header lines out holds so far. The From: is the envelope sender, or the user's own
 * address for a null sender. */
static void complete_header(struct buf *out, const char *sender, const char *login,
                            const char *full_name, const char *hostname)
{
    char *addr = *sender ? xstrdup(sender) : xasprintf("%s@%s", login, hostname);
    char date[64];
    time_rfc5322(date, sizeof date, time(NULL));
    char id[QUEUE_ID_LEN + 1];
    spool_new_id(id);
    char *left = xasprintf("%s.%s", id, login);
    header_complete(out, out->data ? out->data : "", out->len,
                    &(struct hdr_complete){.from_addr = addr,
                                           .from_name = full_name,
                                           .date = date,
                                           .msgid_left = left,
                                           .msgid_domain = hostname});
    free(left);
    free(addr);
}

static int refuse(const char *opt, const char *why)
{
    fprintf(stderr, "sendmail: %s is not supported: %s\n", opt, why);
    return EX_USAGE;
}

int cmd_sendmail(int argc, char **argv)
{
    int from_headers = 0, ignore_dots = 0, mailq = 0;
    const char *sender_opt = NULL, *full_name = NULL;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt(argc, argv, "A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:q::r:tvx")) != -1) {
        switch (c) {
        case 't':
            from_headers = 1;
            break;
        case 'i':
            ignore_dots = 1;
            break;
        case 'o':
            if (strcmp(optarg, "i") == 0) ignore_dots = 1;
            break; /* other -oX options are ignored, as Postfix does */
        case 'f':
        case 'r':
            sender_opt = optarg;
            break;
        case 'F':
            full_name = optarg;
            break;
        case 'b':
            if (strcmp(optarg, "m") == 0) break;
            if (strcmp(optarg, "p") == 0) {
                mailq = 1;
                break;
            }
            if (strcmp(optarg, "s") == 0)
                return refuse("-bs", "talk SMTP to kurierd's port 25 or 587 instead");
            if (strcmp(optarg, "d") == 0 || strcmp(optarg, "D") == 0)
                return refuse("-bd", "start the daemon with kurierd");
            if (strcmp(optarg, "i") == 0) /* initialise the alias database */
                return cmd_newaliases(1, (char *[]){"newaliases", NULL});
            fprintf(stderr, "sendmail: -b%s is not supported\n", optarg);
            return EX_USAGE;
        case 'I':
            return cmd_newaliases(1, (char *[]){"newaliases", NULL});
        case 'q':
            if (!optarg) { /* -q: flush the queue */
                struct kconf *conf = cli_load_conf();
                char reply[512];
                int r = control_request(conf->control_socket, "flush", reply, sizeof reply);
                conf_free(conf);
                if (r != 0) fprintf(stderr, "sendmail: %s\n", reply);
                return r == 0 ? EX_OK : EX_UNAVAILABLE;
            }
            break;
        case 'X':
            return refuse("-X", "no transaction log");
        case '?':
            fprintf(stderr, "sendmail: unknown option -%c\n", optopt ? optopt : '?');
            fprintf(stderr, "usage: sendmail [-t] [-i] [-f sender] [-F name] [recipient ...]\n");
            return EX_USAGE;
        default:
            break; /* -A -B -C -G -L -N -O -R -U -V -c -e -h -m -n -p -v -x: ignored */
        }
    }
    struct kconf *conf = cli_load_conf();
    if (mailq) {
        conf_free(conf);
        return cmd_mailq(1, (char *[]){"mailq", NULL});
    }
    int rc = EX_OK;
    struct strs rcpts = {0};
    struct buf in, out;
    buf_init(&in, conf->message_size ? conf->message_size + 1 : 0);
    buf_init(&out, 0);
    char *sender = NULL, *login = NULL, *gecos_name = NULL;
    const char *why;
    struct buf tovals; /* To/Cc/Bcc values for -t, one per line */
    buf_init(&tovals, 0);

    /* who we are */
    struct passwd *pw = getpwuid(getuid());
    login = pw ? xstrdup(pw->pw_name) : xasprintf("%u", (unsigned)getuid());
    if (!full_name && pw && pw->pw_gecos && *pw->pw_gecos) { /* "Full Name,room,..." */
        size_t l = strcspn(pw->pw_gecos, ",");
        if (l) full_name = gecos_name = xstrndup(pw->pw_gecos, l);
    }

    if (sender_opt && (!*sender_opt || strcmp(sender_opt, "<>") == 0)) {
        sender = xstrdup("");
    } else if (sender_opt) {
        const char *s = sender_opt;
        size_t l = strlen(s);
        char *bare = l >= 2 && s[0] == '<' && s[l - 1] == '>' ? xstrndup(s + 1, l - 2) : xstrdup(s);
        sender = normalize_addr(bare, conf->hostname, &why);
        free(bare);
        if (!sender) {
            fprintf(stderr, "sendmail: bad sender address %s: %s\n", sender_opt, why);
            rc = EX_DATAERR;
            goto out;
        }
    } else {
        sender = xasprintf("%s@%s", login, conf->hostname);
    }
    for (int i = optind; i < argc; i++) {
        char *a = normalize_addr(argv[i], conf->hostname, &why);
        if (!a) {
            fprintf(stderr, "sendmail: bad recipient address %s: %s\n", argv[i], why);
            rc = EX_DATAERR;
            goto out;
        }
        strs_add(&rcpts, a);
    }
    if (!from_headers && rcpts.n == 0) {
        fprintf(stderr, "sendmail: no recipients given (use -t to read them from the header)\n");
        rc = EX_USAGE;
        goto out;
    }

    /* read stdin; normalise line ends to CRLF (a bare LF or a bare CR ends a line, so
     * no bare CR reaches the next hop: "\r.\r\n" ends DATA for some servers); a lone
     * "." ends it unless -i */
    char chunk[65536];
    for (;;) {
        ssize_t n = read(0, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            fprintf(stderr, "sendmail: cannot read the message: %s\n", strerror(errno));
            rc = EX_IOERR;
            goto out;
        }
        if (n == 0) break;
        if (buf_append(&in, chunk, (size_t)n) != 0) {
            fprintf(stderr, "sendmail: message too big (limit %zu bytes)\n", conf->message_size);
            rc = EX_DATAERR;
            goto out;
        }
    }

    int in_header = 1, saw_field = 0, in_bcc = 0;
    int in_to = 0;
    size_t pos = 0;
    while (pos < in.len) {
        const char *line = in.data + pos;
        size_t rest = in.len - pos, len = 0;
        while (len < rest && line[len] != '\n' && line[len] != '\r')
            len++;
        pos += len;
        if (len < rest) /* CRLF, LF or CR */
            pos += line[len] == '\r' && len + 1 < rest && line[len + 1] == '\n' ? 2 : 1;
        if (!ignore_dots && len == 1 && line[0] == '.') break;
        if (in_header) {
            int cont = len && (line[0] == ' ' || line[0] == '\t');
            size_t fn = cont ? 0 : field_name_len(line, len);
            if (cont && saw_field) {
                if (in_to) {
                    buf_append(&tovals, line, len);
                }
                if (in_bcc) continue;
                buf_append(&out, line, len);
                buf_puts(&out, "\r\n");
                continue;
            }
            if (fn) {
                saw_field = 1;
                in_bcc = from_headers && name_is(line, fn, "Bcc");
                in_to = from_headers && (name_is(line, fn, "To") || name_is(line, fn, "Cc") ||
                                         name_is(line, fn, "Bcc"));
                if (in_to) {
                    buf_puts(&tovals, "\n");
                    buf_append(&tovals, line + fn + 1, len - fn - 1);
                }
                if (in_bcc) continue;
                buf_append(&out, line, len);
                buf_puts(&out, "\r\n");
                continue;
            }
            /* the header ends here: add what is missing, then the separator */
            in_header = 0;
            complete_header(&out, sender, login, full_name, conf->hostname);
            buf_puts(&out, "\r\n");
            if (len == 0) continue; /* that was the separator */
        }
        buf_append(&out, line, len);
        buf_puts(&out, "\r\n");
    }
    if (in_header) { /* header only, no body: still complete the header */
        complete_header(&out, sender, login, full_name, conf->hostname);
        buf_puts(&out, "\r\n");
    }
    if (from_headers && tovals.len) {
        struct strs found = {0};
        /* each field on its own line in tovals; folding already joined */
        char *vals = buf_take(&tovals);
        for (char *p = vals, *e; p && *p; p = e ? e + 1 : NULL) {
            e = strchr(p, '\n');
            if (e) *e = '\0';
            header_addrs(p, &found);
        }
        free(vals);
        for (size_t i = 0; i < found.n; i++) {
            char *a = normalize_addr(found.v[i], conf->hostname, &why);
            if (!a) {
                fprintf(stderr, "sendmail: bad recipient address %s in the header: %s\n",
                        found.v[i], why);
                rc = EX_DATAERR;
                break;
            }
            strs_add(&rcpts, a);
        }
        strs_free(&found);
        if (rc != EX_OK) goto out;
    }
    if (rcpts.n == 0) {
        fprintf(stderr, "sendmail: no recipient addresses found in the message header\n");
        rc = EX_USAGE;
        goto out;
    }
    if (conf->message_size && out.len > conf->message_size) {
        fprintf(stderr, "sendmail: message too big (limit %zu bytes)\n", conf->message_size);
        rc = EX_DATAERR;
        goto out;
    }
    char err[512];
    if (maildrop_write(conf->spool_dir, sender, rcpts.v, rcpts.n, out.data ? out.data : "", out.len,
                       login, err, sizeof err) != 0) {
        fprintf(stderr, "sendmail: cannot queue the message: %s\n", err);
        rc = EX_TEMPFAIL;
        goto out;
    }
    /* wake the daemon; when it is down the message waits in the maildrop */
    char reply[256];
    control_request(conf->control_socket, "pickup", reply, sizeof reply);
out:
    buf_release(&tovals);
    buf_release(&in);
    buf_release(&out);
    strs_free(&rcpts);
    free(sender);
    free(login);
    free(gecos_name);
    conf_free(conf);
    return rc;
}
