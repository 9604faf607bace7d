/* conf_doc.c: the configuration printed back from the key table (conf_keys.c): a
 * key's value as it would appear in a file, conf_dump() (kurier config dump), and the
 * reference as Markdown (docs/config.md) and roff (kurier.conf(5)). */
#include "core/compat.h"

#include <arpa/inet.h>
#include <math.h>
#include <sys/socket.h>

#include "core/buf.h"
#include "core/conf.h"
#include "core/conf_keys.h"
#include "core/util.h"

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

/* Write the value of k in base as it would appear in a file; 0, or -1 when unset. */
int conf_value_text(const struct conf_key *k, const void *base, struct buf *out)
{
    const void *f = (const char *)base + k->off;
    char tmp[64];
    switch (k->type) {
    case KT_STR:
    case KT_HOST:
    case KT_PATH:
    case KT_ADDR:
    case KT_CHOICE:
    case KT_HOSTLIST:
    case KT_TRAPS:
    case KT_ADDRS:
    case KT_WORDS:
    case KT_DNSBL:
    case KT_PAIRS: {
        const char *s = *(char *const *)f;
        if (!s) return -1;
        if (k->type == KT_WORDS && !*s) return buf_puts(out, "none"), 0;
        if (k->type == KT_CHOICE || k->type == KT_HOSTLIST || k->type == KT_TRAPS ||
            k->type == KT_ADDRS || k->type == KT_WORDS || k->type == KT_DNSBL ||
            k->type == KT_PAIRS)
            return buf_puts(out, s), 0;
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
    case KT_ACTION: {
        int a = *(const int *)f;
        if (a == CONF_ACTION_REJECT || a == CONF_ACTION_TEMPFAIL)
            str_copy(tmp, a == CONF_ACTION_REJECT ? "reject" : "tempfail", sizeof tmp);
        else
            snprintf(tmp, sizeof tmp, "%d", a);
        break;
    }
    case KT_DUR:
        conf_fmt_dur(tmp, sizeof tmp, *(const int *)f);
        break;
    case KT_SIZE:
        conf_fmt_size(tmp, sizeof tmp, *(const size_t *)f);
        break;
    case KT_DOUBLE:
        conf_fmt_double(tmp, sizeof tmp, *(const double *)f);
        break;
    case KT_NETS: {
        const struct conf_net *const *list = f;
        size_t count = *(const size_t *)(list + 1);
        if (count == 0) return -1;
        for (size_t i = 0; i < count; i++) {
            char a[INET6_ADDRSTRLEN];
            inet_ntop((*list)[i].family, (*list)[i].addr, a, sizeof a);
            buf_printf(out, "%s%s/%d", i ? " " : "", a, (*list)[i].prefix);
        }
        return 0;
    }
    }
    buf_puts(out, tmp);
    return 0;
}

static void dump_block(FILE *out, enum kblock blk, const void *base, const char *indent)
{
    struct buf b;
    buf_init(&b, 0);
    for (size_t i = 0; i < conf_nkeys; i++) {
        const struct conf_key *k = &conf_keys[i];
        if (k->block != blk) continue;
        buf_reset(&b);
        fprintf(out, "%s# %s\n", indent, k->help);
        if (conf_value_text(k, base, &b) == 0)
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
        fprintf(out, "\n%s {\n", conf_block_names[b]);
        dump_block(out, (enum kblock)b, c, "    ");
        fprintf(out, "}\n");
    }
    for (const struct conf_listen *l = c->listeners; l; l = l->next) {
        struct buf b;
        buf_init(&b, 0);
        const struct conf_key addr = {.type = KT_STR, .off = offsetof(struct conf_listen, address)};
        conf_value_text(&addr, l, &b);
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
    conf_egress_dump(c, out);
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
    /* clang-format off */
    static const char *const names[] = {
        [KT_STR] = "string",      [KT_HOST] = "host name",
        [KT_PATH] = "path",       [KT_INT] = "integer",
        [KT_SIZE] = "size",       [KT_DUR] = "duration",
        [KT_DOUBLE] = "number",   [KT_BOOL] = "on/off",
        [KT_ENUM] = "",           [KT_CHOICE] = "",
        [KT_NETS] = "networks",   [KT_HOSTLIST] = "hosts",
        [KT_ADDR] = "address",    [KT_WORDS] = "",
        [KT_DNSBL] = "DNS lists", [KT_PAIRS] = "zone URL pairs",
        [KT_TRAPS] = "addresses or domains", [KT_ADDRS] = "addresses",
    };
    /* clang-format on */
    if (k->type == KT_ACTION) {
        fputs("reject, tempfail or a score", out);
        return;
    }
    if (k->type == KT_WORDS) {
        fputs("some of ", out);
        md_cell(out, k->choices);
    } else if (k->choices) {
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
    for (size_t i = 0; i < conf_nkeys; i++) {
        const struct conf_key *k = &conf_keys[i];
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
        if (k->type == KT_INT || k->type == KT_SIZE || k->type == KT_DUR || k->type == KT_DOUBLE ||
            k->type == KT_ACTION) {
            char lo[32], hi[32];
            conf_fmt_limit(lo, sizeof lo, k, k->min);
            conf_fmt_limit(hi, sizeof hi, k, k->max);
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

/* --- kurier.conf(5) ----------------------------------------------------------- */

static void man_keys(FILE *out, enum kblock blk)
{
    for (size_t i = 0; i < conf_nkeys; i++) {
        const struct conf_key *k = &conf_keys[i];
        if (k->block != blk) continue;
        fputs(".TP\n.B ", out);
        roff_puts(out, k->name);
        fputs("\n", out);
        roff_puts(out, k->help);
        fputs("\n.br\nType: ", out);
        char *type = NULL;
        size_t tlen = 0;
        FILE *tmp = open_memstream(&type, &tlen);
        if (!tmp) abort();
        doc_type(tmp, k);
        fclose(tmp);
        for (char *p = type; *p; p++) /* doc_type escapes | for markdown */
            if (p[0] == '\\' && p[1] == '|') memmove(p, p + 1, strlen(p));
        roff_puts(out, type);
        free(type);
        if (k->type == KT_INT || k->type == KT_SIZE || k->type == KT_DUR || k->type == KT_DOUBLE ||
            k->type == KT_ACTION) {
            char lo[32], hi[32];
            conf_fmt_limit(lo, sizeof lo, k, k->min);
            conf_fmt_limit(hi, sizeof hi, k, k->max);
            fputs(", ", out);
            roff_puts(out, lo);
            fputs(" to ", out);
            roff_puts(out, hi);
        }
        if (k->defdoc || k->def) {
            fputs("; default: ", out);
            roff_puts(out, k->defdoc ? k->defdoc : *k->def ? k->def : "\"\"");
        }
        fputs(".\n", out);
    }
}

void conf_doc_man(FILE *out, const char *version, const char *date)
{
    fprintf(out,
            ".\\\" kurier.conf(5): generated by \"kurier config man\" from the key table in "
            "src/core/conf_keys.c; do not edit.\n"
            ".TH KURIER.CONF 5 \"%s\" \"kurier %s\" \"kurier manual\"\n"
            ".SH NAME\nkurier.conf \\- configuration of the kurier mail transfer agent\n"
            ".SH SYNOPSIS\n.I /etc/kurier/kurier.conf\n"
            ".SH DESCRIPTION\n"
            "One file in nginx-like syntax:\n.IR \"key value\" ;\nlines and\n"
            ".I name { ... }\nblocks.\n.B #\nstarts a comment to the end of the line. "
            "Values may be quoted with double or single quotes; inside quotes a backslash "
            "escapes the next character. Every key is optional and its default is safe on "
            "the internet.\n.B kurier config check\nnames the line and column of every "
            "error;\n.B kurier config dump\nprints the effective configuration.\n"
            ".PP\n.BI include \" PATTERN\" ;\nreads other files at that point (relative to "
            "the including file's folder; glob patterns such as\n.I conf.d/*.conf\n"
            "are read in sorted order and may match nothing).\n"
            ".PP\nUnits: a\n.I size\nis bytes with an optional K, M or G suffix "
            "(1024-based). A\n.I duration\nis seconds, or a number with s, m, h, d or w, "
            "also combined (1h30m).\n.I on/off\nalso accepts yes/no. A relative\n.I path\n"
            "is resolved against the current folder when the file is read.\n"
            ".I networks\nare IPv4 or IPv6 addresses or CIDR prefixes.\n"
            ".PP\nThe daemon reads the file again on SIGHUP or\n.BR \"kurier reload\" ;\n"
            "a file with errors is refused and the running configuration stays.\n"
            ".SH TOP LEVEL\n",
            date, version);
    man_keys(out, KB_MAIN);
    fputs(".TP\n.B include\nRead more files here (a glob pattern).\n", out);
    for (int b = KB_LOG; b < KB_LISTEN; b++) {
        fprintf(out, ".SH %s { }\n", conf_block_names[b]);
        man_keys(out, (enum kblock)b);
    }
    fputs(".SH listen ADDRESS { }\n"
          "One block per listening socket, in any number. ADDRESS is IPV4:PORT, [IPV6]:PORT, "
          "*:PORT or just PORT (all addresses).\n.B role submission\nturns on\n.B auth\n"
          "and\n.B require_auth\nunless they are set;\n.B tls starttls\nand\n"
          ".B tls implicit\nneed\n.B cert\nand\n.BR key .\n",
          out);
    man_keys(out, KB_LISTEN);
    fputs(".SH transport DOMAIN { }\n"
          "Where mail for a recipient domain goes, in any number. DOMAIN is example.org, or "
          ".example.org for every subdomain too; the longest match wins. Without\n.B relay\n"
          "the domain's MX hosts are used with this block's\n.BR tls .\n",
          out);
    man_keys(out, KB_TRANSPORT);
    fputs(".SH egress pool NAME { }\n"
          "Source addresses for remote delivery, in any number of pools (docs/egress.md). "
          "Mail picks the first pool whose\n.B accounts\nhas the sender's login, else whose\n"
          ".B sender_domains\nhas the sender's domain, else whose\n.B listeners\n"
          "has the listen address it came in on, else the pool with\n.BR \"default on\" .\n"
          ".TP\n.B source\n.I ADDRESS\n.RB [ weight\n.IR N ]\n.RB [ ehlo\n.IR NAME ]\n"
          ".br\nAn IPv4 or IPv6 address of this host, weight 1 to 1000 (default 1), the name to "
          "greet with from it; repeat for each address.\n"
          ".TP\n.B accounts\nAuthenticated senders (logins) whose mail uses this pool.\n"
          ".TP\n.B sender_domains\nEnvelope sender domains whose mail uses this pool.\n"
          ".TP\n.B listeners\nMail received on these listen addresses uses this pool.\n"
          ".TP\n.B default\nThis pool takes mail no other rule picks (on/off).\n"
          ".TP\n.B fallback\n.B hold\n|\n.B pool\n.I NAME\n|\n.B relay\n.IR HOST [: PORT ]\n"
          ".br\nWhen every address is benched for a receiver: keep the mail queued (default), "
          "use another pool, or hand the mail to a smarthost.\n"
          ".SH EXAMPLE\n.nf\n"
          "hostname mx.example.org;\n"
          "listen *:25 { role mx; tls starttls; cert /etc/kurier/cert.pem; key "
          "/etc/kurier/key.pem; }\n"
          "listen *:587 { role submission; tls starttls; cert /etc/kurier/cert.pem; key "
          "/etc/kurier/key.pem; }\n"
          ".fi\n"
          ".SH FILES\n.TP\n.I /etc/kurier/kurier.conf\nThe default location (else\n"
          ".B $KURIER_CONF\nor\n.BR \"\\-c FILE\" ).\n"
          ".SH SEE ALSO\n.BR kurierd (8),\n.BR kurier (1)\n",
          out);
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
        fprintf(out, "\n## %s { }\n\n", conf_block_names[b]);
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
    conf_egress_doc(out);
}
