/* cmd_dkim.c: "kurier dkim keygen|rotate|retire|list|check": the signing keys in
 * dkim.key_dir (DIR/DOMAIN/SELECTOR.TYPE.pem, read by queue/dkim_sign.c) and their
 * DNS records (docs/dkim.md); and cli_dns_ask(), one blocking DNS question. */
#include "core/compat.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "core/dkim.h"
#include "dns/dns.h"
#include "queue/dkim_sign.h"

static int usage(void)
{
    fprintf(stderr,
            "usage: kurier dkim keygen DOMAIN [--selector S] [--type rsa|ed25519] [--bits N]\n"
            "       kurier dkim rotate DOMAIN [--type rsa|ed25519]\n"
            "       kurier dkim retire DOMAIN SELECTOR\n"
            "       kurier dkim list [DOMAIN]\n"
            "       kurier dkim check DOMAIN [--resolver IP[@PORT]]\n"
            "  Keys live in dkim.key_dir as DOMAIN/SELECTOR.rsa.pem and .ed25519.pem; the\n"
            "  newest key of each type signs (after a reload, SIGHUP). keygen and rotate print\n"
            "  the TXT record to publish; check compares DNS with the keys.\n");
    return 2;
}

/* ------------------------------------------------------------- DNS, blocking */

struct ask {
    struct cli_dns_answer *a;
    int done;
};

static void ask_done(void *arg, const struct dns_result *r)
{
    struct ask *k = arg;
    struct cli_dns_answer *a = k->a;
    a->status = r->status;
    a->why = r->why;
    a->nstrs = 0;
    for (size_t i = 0; i < r->nstrs && a->nstrs < CLI_DNS_MAX; i++)
        a->strs[a->nstrs++] = xstrdup(r->strs[i]);
    for (size_t i = 0; i < r->nmx && !r->null_mx && a->nstrs < CLI_DNS_MAX; i++)
        a->strs[a->nstrs++] = xasprintf("%u %s", r->mx[i].pref, r->mx[i].host);
    k->done = 1;
}

int cli_dns_ask(const char *resolver, const char *type, const char *name, struct cli_dns_answer *a)
{
    memset(a, 0, sizeof *a);
    a->status = DNS_TEMPFAIL;
    a->why = "no answer";
    char *conf_res = resolver ? NULL : cli_conf_resolver();
    struct event_base *base = event_base_new();
    char err[256];
    struct dns *d =
        base ? dns_new(base, resolver ? resolver : conf_res, NULL, NULL, err, sizeof err) : NULL;
    free(conf_res);
    if (!d) {
        if (base) event_base_free(base);
        return cli_fail("%s", base ? err : "cannot create the event loop");
    }
    dns_set_timeout(d, 10);
    struct ask k = {.a = a};
    if (strcmp(type, "txt") == 0) {
        dns_query_txt(d, name, ask_done, &k);
    } else if (strcmp(type, "mx") == 0) {
        dns_query_mx(d, name, ask_done, &k);
    } else {
        struct sockaddr_storage ss;
        if (ip_parse(name, &ss, NULL) != 0) abort();
        dns_query_ptr(d, (struct sockaddr *)&ss, ask_done, &k);
    }
    while (!k.done)
        if (event_base_loop(base, EVLOOP_ONCE) < 0) break;
    dns_free(d);
    event_base_free(base);
    return 0;
}

void cli_dns_answer_free(struct cli_dns_answer *a)
{
    for (size_t i = 0; i < a->nstrs; i++)
        free(a->strs[i]);
    a->nstrs = 0;
}

/* --------------------------------------------------------------- the keys */

struct key {
    char selector[128];
    enum dkim_key_type type;
    long long mtime; /* nanoseconds, as dkim_sign.c compares them */
};

/* The keys of domain, newest first. */
static size_t keys_of(const char *dir, const char *domain, struct key *out, size_t max)
{
    char *ddir = xasprintf("%s/%s", dir, domain);
    DIR *d = opendir(ddir);
    size_t n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) && n < max) {
        const char *nm = de->d_name;
        size_t l = strlen(nm), sl;
        enum dkim_key_type t;
        if (l > 8 && strcmp(nm + l - 8, ".rsa.pem") == 0)
            t = DKIM_KEY_RSA, sl = l - 8;
        else if (l > 12 && strcmp(nm + l - 12, ".ed25519.pem") == 0)
            t = DKIM_KEY_ED25519, sl = l - 12;
        else
            continue;
        if (sl >= sizeof out[n].selector) continue;
        char *p = xasprintf("%s/%s", ddir, nm);
        struct stat st;
        if (stat(p, &st) == 0) {
            memcpy(out[n].selector, nm, sl);
            out[n].selector[sl] = '\0';
            out[n].type = t;
            out[n].mtime = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
            n++;
        }
        free(p);
    }
    if (d) closedir(d);
    free(ddir);
    /* newest first, then the greatest selector: the order dkim_sign.c picks in */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0; j--) {
            struct key *a = &out[j - 1], *b = &out[j];
            if (a->mtime > b->mtime ||
                (a->mtime == b->mtime && strcmp(a->selector, b->selector) >= 0))
                break;
            struct key t = *a;
            *a = *b;
            *b = t;
        }
    return n;
}

/* 1 when k is the key that signs for its type (the first of its type in the list). */
static int key_active(const struct key *keys, size_t n, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (keys[j].type == keys[i].type) return 0;
    return 1;
}

static int domain_ok(const char *d)
{
    if (!*d || *d == '.' || *d == '-' || strlen(d) > 253) return 0;
    for (const char *p = d; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '.')) return 0;
    return 1;
}

static int selector_ok(const char *s)
{
    if (!*s || *s == '.' || strlen(s) > 63) return 0;
    for (const char *p = s; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.')) return 0;
    return 1;
}

/* Owner of new files and folders: the daemon's user when we run as root. */
static void give(const struct kconf *c, const char *path, int fd)
{
    if (geteuid() != 0 || !c->user) return;
    struct passwd *pw = getpwnam(c->user);
    if (!pw) return;
    int r = fd >= 0 ? fchown(fd, pw->pw_uid, pw->pw_gid) : chown(path, pw->pw_uid, pw->pw_gid);
    if (r != 0) fprintf(stderr, "kurier: cannot chown %s: %s\n", path, strerror(errno));
}

/* The TXT record of the key at path, printed as a zone file line. 0, or 1 failed. */
static int print_record(const char *domain, const char *selector, const char *path)
{
    char err[512];
    enum dkim_key_type t;
    char *p = dkim_key_public(path, &t, err, sizeof err);
    if (!p) return cli_fail("%s", err);
    char *rec = xasprintf("v=DKIM1; k=%s; p=%s", dkim_key_type_name(t), p);
    printf("%s._domainkey.%s. IN TXT (", selector, domain);
    size_t l = strlen(rec);
    /* a TXT string holds 255 bytes at most: longer records are several strings */
    for (size_t i = 0; i < l; i += 250)
        printf("%s\"%.*s\"", i ? "\n\t" : " ", (int)(l - i < 250 ? l - i : 250), rec + i);
    printf(" )\n");
    free(rec);
    free(p);
    return 0;
}

static int keygen(const struct kconf *c, const char *domain, const char *selector,
                  enum dkim_key_type t, int bits)
{
    char *ddir = xasprintf("%s/%s", c->dkim_key_dir, domain);
    if (mkdir_p(ddir, 0750) != 0) {
        int e = errno;
        free(ddir);
        return cli_fail("cannot create %s/%s: %s", c->dkim_key_dir, domain, strerror(e));
    }
    give(c, c->dkim_key_dir, -1);
    give(c, ddir, -1);
    free(ddir);
    char *path = dkim_key_path(c->dkim_key_dir, domain, selector, t);
    EVP_PKEY *k = t == DKIM_KEY_ED25519 ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")
                                        : EVP_RSA_gen((unsigned)bits);
    if (!k) {
        free(path);
        return cli_fail("cannot generate the key");
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        EVP_PKEY_free(k);
        int r = e == EEXIST ? cli_fail("%s exists already: choose another --selector", path)
                            : cli_fail("cannot create %s: %s", path, strerror(e));
        free(path);
        return r;
    }
    give(c, path, fd);
    FILE *f = fdopen(fd, "w");
    int ok = f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1;
    if (f) ok = (fclose(f) == 0) && ok;
    EVP_PKEY_free(k);
    if (!ok) {
        unlink(path);
        free(path);
        return cli_fail("cannot write the key");
    }
    fprintf(stderr, "kurier: wrote %s\n", path);
    int r = print_record(domain, selector, path);
    free(path);
    return r;
}

/* A new selector: "kYYYYMMDD", then "kYYYYMMDDb", ... when taken. */
static void new_selector(const struct kconf *c, const char *domain, char *out, size_t size)
{
    char day[16];
    time_t now = time(NULL);
    strftime(day, sizeof day, "%Y%m%d", gmtime(&now));
    for (char suffix = 'a'; suffix <= 'z'; suffix++) {
        if (suffix == 'a')
            snprintf(out, size, "k%s", day);
        else
            snprintf(out, size, "k%s%c", day, suffix);
        struct key keys[64];
        size_t n = keys_of(c->dkim_key_dir, domain, keys, 64), i;
        for (i = 0; i < n; i++)
            if (strcmp(keys[i].selector, out) == 0) break;
        if (i == n) return;
    }
}

static int parse_type(const char *s, enum dkim_key_type *t)
{
    if (strcmp(s, "rsa") == 0)
        *t = DKIM_KEY_RSA;
    else if (strcmp(s, "ed25519") == 0)
        *t = DKIM_KEY_ED25519;
    else
        return -1;
    return 0;
}

int cli_dkim_check(const struct kconf *c, const char *domain, const char *resolver)
{
    struct key keys[64];
    size_t n = keys_of(c->dkim_key_dir, domain, keys, 64);
    if (n == 0) return cli_fail("no DKIM keys for %s in %s", domain, c->dkim_key_dir);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        char *path = dkim_key_path(c->dkim_key_dir, domain, keys[i].selector, keys[i].type);
        char err[512];
        enum dkim_key_type t;
        char *pub = dkim_key_public(path, &t, err, sizeof err);
        free(path);
        if (!pub) {
            bad = 1;
            fprintf(stderr, "kurier: %s\n", err);
            continue;
        }
        char *name = xasprintf("%s._domainkey.%s", keys[i].selector, domain);
        struct cli_dns_answer a;
        if (cli_dns_ask(resolver, "txt", name, &a) != 0) {
            free(name);
            free(pub);
            return 1;
        }
        const char *verdict = NULL;
        char why[300] = "";
        if (a.status == DNS_TEMPFAIL || a.status == DNS_BOGUS) {
            verdict = "unknown";
            snprintf(why, sizeof why, "DNS lookup failed: %s", a.why ? a.why : "");
        } else if (a.nstrs == 0) {
            verdict = "missing";
            snprintf(why, sizeof why, "no TXT record at %s", name);
        } else {
            verdict = "mismatch";
            snprintf(why, sizeof why, "the record's p= is not this key's public key");
            for (size_t k = 0; k < a.nstrs; k++) {
                struct dkim_tag tags[DKIM_TAGS_MAX];
                int nt = dkim_tags_parse(a.strs[k], strlen(a.strs[k]), tags, DKIM_TAGS_MAX, NULL);
                if (nt < 0) {
                    snprintf(why, sizeof why, "the record is not a valid tag list");
                    continue;
                }
                const struct dkim_tag *p = dkim_tag_find(tags, (size_t)nt, "p");
                const struct dkim_tag *kt = dkim_tag_find(tags, (size_t)nt, "k");
                char val[2048];
                if (!p || dkim_value_compact(p->value, p->value_len, val, sizeof val) < 0) continue;
                int type_ok = kt ? (kt->value_len == strlen(dkim_key_type_name(t)) &&
                                    memcmp(kt->value, dkim_key_type_name(t), kt->value_len) == 0)
                                 : t == DKIM_KEY_RSA;
                if (strcmp(val, pub) == 0 && type_ok) {
                    verdict = "ok";
                    break;
                }
                if (strcmp(val, pub) == 0)
                    snprintf(why, sizeof why, "the record's k= is not %s", dkim_key_type_name(t));
                else if (val[0] == '\0')
                    snprintf(why, sizeof why, "the record is revoked (empty p=)");
            }
        }
        printf("%s%s %s %s: %s%s%s\n", strcmp(verdict, "ok") == 0 ? "" : "DIFF ", name,
               dkim_key_type_name(keys[i].type), verdict,
               key_active(keys, n, i) ? "signing" : "not signing",
               strcmp(verdict, "ok") != 0 ? "; " : "", strcmp(verdict, "ok") != 0 ? why : "");
        if (strcmp(verdict, "ok") != 0) bad = 1;
        cli_dns_answer_free(&a);
        free(name);
        free(pub);
    }
    return bad;
}

int cli_dkim_records_count(const struct kconf *c, const char *domain)
{
    struct key keys[64];
    return (int)keys_of(c->dkim_key_dir, domain, keys, 64);
}

/* The records of the keys of domain, as keygen prints them. */
int cli_dkim_records(const struct kconf *c, const char *domain)
{
    struct key keys[64];
    size_t n = keys_of(c->dkim_key_dir, domain, keys, 64);
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        char *path = dkim_key_path(c->dkim_key_dir, domain, keys[i].selector, keys[i].type);
        r |= print_record(domain, keys[i].selector, path);
        free(path);
    }
    return (int)n;
}

int cmd_dkim(int argc, char **argv)
{
    const char *selector = NULL, *type = NULL, *resolver = NULL;
    int bits = 2048;
    const char *pos[3];
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (strcmp(a, "--selector") == 0 && has_val) {
            selector = argv[++i];
        } else if (strcmp(a, "--type") == 0 && has_val) {
            type = argv[++i];
        } else if (strcmp(a, "--bits") == 0 && has_val) {
            bits = atoi(argv[++i]);
            if (bits < 1024 || bits > 8192) {
                fprintf(stderr, "kurier: --bits takes 1024 to 8192 (2048 recommended)\n");
                return 2;
            }
        } else if (strcmp(a, "--resolver") == 0 && has_val) {
            resolver = argv[++i];
        } else if (a[0] == '-' || npos == 3) {
            return usage();
        } else {
            pos[npos++] = a;
        }
    }
    if (npos < 1) return usage();
    const char *verb = pos[0];
    enum dkim_key_type t = DKIM_KEY_RSA;
    if (type && parse_type(type, &t) != 0) {
        fprintf(stderr, "kurier: --type takes rsa or ed25519\n");
        return 2;
    }
    char domain[256] = "";
    if (npos >= 2) {
        snprintf(domain, sizeof domain, "%s", pos[1]);
        for (char *p = domain; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        size_t l = strlen(domain);
        if (l && domain[l - 1] == '.') domain[l - 1] = '\0';
        if (!domain_ok(domain)) {
            fprintf(stderr, "kurier: \"%s\" is not a domain name\n", pos[1]);
            return 2;
        }
    }
    if (selector && !selector_ok(selector)) {
        fprintf(stderr, "kurier: \"%s\" is not a selector (letters, digits, -, _, .)\n", selector);
        return 2;
    }
    struct kconf *c = cli_load_conf();
    int r;
    if (strcmp(verb, "keygen") == 0 && npos == 2) {
        struct key keys[64];
        size_t n = keys_of(c->dkim_key_dir, domain, keys, 64), i;
        for (i = 0; i < n && keys[i].type != t; i++)
            ;
        char sel[128];
        if (i < n && !selector) {
            r = cli_fail("%s has a %s key already (selector %s): use kurier dkim rotate", domain,
                         dkim_key_type_name(t), keys[i].selector);
        } else {
            if (!selector) new_selector(c, domain, sel, sizeof sel);
            r = keygen(c, domain, selector ? selector : sel, t, bits);
            if (r == 0)
                fprintf(stderr,
                        "kurier: publish the record above, check it with kurier dkim check "
                        "%s, then reload kurierd (SIGHUP)\n",
                        domain);
        }
    } else if (strcmp(verb, "rotate") == 0 && npos == 2) {
        struct key keys[64];
        size_t n = keys_of(c->dkim_key_dir, domain, keys, 64);
        r = n ? 0 : cli_fail("no DKIM keys for %s: use kurier dkim keygen", domain);
        for (int ty = DKIM_KEY_RSA; r == 0 && ty <= DKIM_KEY_ED25519; ty++) {
            size_t i;
            for (i = 0; i < n && (int)keys[i].type != ty; i++)
                ;
            if (i == n || (type && (enum dkim_key_type)ty != t)) continue;
            char sel[128];
            if (selector)
                snprintf(sel, sizeof sel, "%s", selector);
            else
                new_selector(c, domain, sel, sizeof sel);
            int rsa_bits = bits;
            r = keygen(c, domain, sel, (enum dkim_key_type)ty, rsa_bits);
            if (r == 0)
                fprintf(stderr,
                        "kurier: %s signs after a reload of kurierd (SIGHUP); publish its record "
                        "first. The "
                        "old key %s stays (published, no longer signing) until kurier dkim "
                        "retire %s %s\n",
                        sel, keys[i].selector, domain, keys[i].selector);
        }
    } else if (strcmp(verb, "retire") == 0 && npos == 3) {
        struct key keys[64];
        size_t n = keys_of(c->dkim_key_dir, domain, keys, 64), hit = 0;
        r = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(keys[i].selector, pos[2]) != 0) continue;
            if (key_active(keys, n, i)) {
                r = cli_fail("%s is the %s key that signs for %s: rotate first", pos[2],
                             dkim_key_type_name(keys[i].type), domain);
                hit = 1;
                break;
            }
            char *p = dkim_key_path(c->dkim_key_dir, domain, pos[2], keys[i].type);
            if (unlink(p) != 0)
                r = cli_fail("cannot remove %s: %s", p, strerror(errno));
            else
                printf("removed %s; its record %s._domainkey.%s can go from DNS\n", p, pos[2],
                       domain);
            free(p);
            hit = 1;
        }
        if (!hit) r = cli_fail("%s has no key with selector %s", domain, pos[2]);
    } else if (strcmp(verb, "list") == 0 && npos <= 2) {
        DIR *d = opendir(c->dkim_key_dir);
        struct dirent *de;
        r = 0;
        while (d && (de = readdir(d))) {
            if (de->d_name[0] == '.' || (domain[0] && strcmp(de->d_name, domain) != 0)) continue;
            struct key keys[64];
            size_t n = keys_of(c->dkim_key_dir, de->d_name, keys, 64);
            for (size_t i = 0; i < n; i++)
                printf("%s %s %s %s\n", de->d_name, keys[i].selector,
                       dkim_key_type_name(keys[i].type),
                       key_active(keys, n, i) ? "signing" : "old");
        }
        if (d) closedir(d);
    } else if (strcmp(verb, "check") == 0 && npos == 2) {
        r = cli_dkim_check(c, domain, resolver);
    } else {
        r = usage();
    }
    conf_free(c);
    if (fflush(stdout) != 0) r = 1;
    return r;
}
