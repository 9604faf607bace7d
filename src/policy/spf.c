/* spf.c: check_host() of RFC 7208 on the async resolver: one DNS query in flight
 * at a time, includes and redirects as a stack of frames, the 10-lookup and
 * 2-void-lookup limits (4.6.4), the exp= explanation (6.2). Record syntax and
 * macros are spf_record.c's. */
#include "core/compat.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <time.h>

#include "core/buf.h"
#include "core/log.h"
#include "dns/dns.h"
#include "policy/spf.h"

enum { MAX_LOOKUPS = 10, MAX_VOID = 2, MAX_NAMES = 10, MAX_DEPTH = MAX_LOOKUPS + 2 };

enum spf_wait {
    W_NONE = 0,
    W_TXT,      /* the SPF record of the top frame */
    W_A,        /* a, exists: addresses of target */
    W_MX,       /* mx: the MX names of target */
    W_MX_ADDR,  /* mx: addresses of names[iname] */
    W_PTR,      /* ptr: names of the client */
    W_PTR_ADDR, /* ptr: addresses of names[iname] */
    W_EXP,      /* the exp= TXT record */
    W_P_PTR,    /* %{p}: names of the client */
    W_P_ADDR,   /* %{p}: addresses of names[iname] */
};

/* What to go on with once %{p} is known. */
enum spf_p_resume { P_STEP, P_EXP_DOMAIN, P_EXP_TEXT };

struct frame {
    char domain[256];
    struct spf_record rec;
    size_t next;    /* next term to evaluate */
    int include;    /* evaluated for an include: of the frame below */
    int redirected; /* reached through redirect= */
};

struct spf_check {
    struct event_base *base;
    struct dns *dns;
    struct event *ev; /* delivers the result from the loop */
    struct dns_query *q;
    spf_cb cb;
    void *arg;
    char *sender, *local, *sender_domain, *helo, *receiver;
    struct sockaddr_storage ip; /* v4-mapped IPv6 unmapped */
    struct frame frames[MAX_DEPTH];
    int depth; /* frames in use */
    int lookups, voids;
    enum spf_wait wait;
    char target[256];
    char **names;
    size_t nnames, iname;
    int done;
    int p_done; /* %{p} looked up: ptr_name or "unknown" */
    char ptr_name[256];
    enum spf_p_resume p_resume;
    char *exp_txt; /* the exp= text waiting for %{p} */
    enum spf_result result;
    char text[512];
    int from_exp;
};

static void step(struct spf_check *c);
static void on_dns(void *arg, const struct dns_result *r);
static void query_addr(struct spf_check *c, const char *name, int force_a);

/* 1 when a macro-string uses %{p} */
static int has_p(const char *spec)
{
    return spec && (strstr(spec, "%{p") || strstr(spec, "%{P"));
}

/* RFC 7208 7.3 %{p}: PTR names of the client whose addresses include it; one equal
 * to or below the current domain is preferred. Then resume where we were. */
static void p_start(struct spf_check *c, enum spf_p_resume resume)
{
    c->p_resume = resume;
    c->wait = W_P_PTR;
    c->q = dns_query_ptr(c->dns, (const struct sockaddr *)&c->ip, on_dns, c);
}

static void names_free(struct spf_check *c)
{
    for (size_t i = 0; i < c->nnames; i++)
        free(c->names[i]);
    free(c->names);
    c->names = NULL;
    c->nnames = c->iname = 0;
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
    struct spf_check *c = arg;
    spf_cb cb = c->cb;
    void *cbarg = c->arg;
    enum spf_result r = c->result;
    char text[512];
    int from_exp = c->from_exp;
    memcpy(text, c->text, sizeof text);
    c->cb = NULL;
    spf_check_cancel(c);
    cb(cbarg, r, text, from_exp);
}

/* The end: deliver from the loop. */
static void finish(struct spf_check *c, enum spf_result r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void finish(struct spf_check *c, enum spf_result r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->text, sizeof c->text, fmt, ap);
    va_end(ap);
    c->result = r;
    c->done = 1;
    c->wait = W_NONE;
    struct timeval now = {0, 0};
    evtimer_add(c->ev, &now);
}

static struct frame *top(struct spf_check *c)
{
    return &c->frames[c->depth - 1];
}

static void env_fill(struct spf_check *c, struct spf_macro_env *e, const char *domain)
{
    memset(e, 0, sizeof *e);
    e->sender = c->sender;
    e->local = c->local;
    e->sender_domain = c->sender_domain;
    e->domain = domain;
    e->helo = c->helo;
    e->ptr = c->p_done && c->ptr_name[0] ? c->ptr_name : NULL;
    e->receiver = c->receiver;
    e->ip = c->ip;
    e->now = (long long)time(NULL);
}

static int is_v6(const struct spf_check *c)
{
    return c->ip.ss_family == AF_INET6;
}

/* 1 when addr is inside the client's network of prefix bits. */
static int addr_match(const struct spf_check *c, const struct sockaddr_storage *ss, int bits4,
                      int bits6)
{
    const unsigned char *a, *b;
    int bits;
    if (ss->ss_family != c->ip.ss_family) return 0;
    if (is_v6(c)) {
        a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
        b = ((const struct sockaddr_in6 *)&c->ip)->sin6_addr.s6_addr;
        bits = bits6;
    } else {
        a = (const unsigned char *)&((const struct sockaddr_in *)ss)->sin_addr;
        b = (const unsigned char *)&((const struct sockaddr_in *)&c->ip)->sin_addr;
        bits = bits4;
    }
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)full) != 0) return 0;
    if (rest) {
        unsigned char mask = (unsigned char)(0xff << (8 - rest));
        if ((a[full] & mask) != (b[full] & mask)) return 0;
    }
    return 1;
}

static void on_dns(void *arg, const struct dns_result *r);

static void query_addr(struct spf_check *c, const char *name, int force_a)
{
    if (!force_a && is_v6(c))
        c->q = dns_query_aaaa(c->dns, name, on_dns, c);
    else
        c->q = dns_query_a(c->dns, name, on_dns, c);
}

static void start_txt(struct spf_check *c)
{
    c->wait = W_TXT;
    c->q = dns_query_txt(c->dns, top(c)->domain, on_dns, c);
}

/* Open a frame for domain (include or the top). */
static void push(struct spf_check *c, const char *domain, int include)
{
    if (c->depth >= MAX_DEPTH) {
        finish(c, SPF_PERMERROR, "includes nested too deeply");
        return;
    }
    struct frame *f = &c->frames[c->depth++];
    memset(f, 0, sizeof *f);
    snprintf(f->domain, sizeof f->domain, "%s", domain);
    f->include = include;
    start_txt(c);
}

/* The current frame ended with result r (matched mechanism or default). */
static void frame_done(struct spf_check *c, enum spf_result r, const char *why);

static void apply_qual(struct spf_check *c, char qual, const char *why)
{
    enum spf_result r = qual == '-'   ? SPF_FAIL
                        : qual == '~' ? SPF_SOFTFAIL
                        : qual == '?' ? SPF_NEUTRAL
                                      : SPF_PASS;
    frame_done(c, r, why);
}

static const char *mech_name(enum spf_mech m)
{
    static const char *const n[] = {"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"};
    return n[m];
}

/* The current term matched. */
static void matched(struct spf_check *c)
{
    struct frame *f = top(c);
    const struct spf_term *t = &f->rec.terms[f->next - 1];
    char why[400];
    snprintf(why, sizeof why, "mechanism %c%s%s%s matched in the record of %s", t->qual,
             mech_name(t->mech), t->spec ? ":" : "", t->spec ? t->spec : "", f->domain);
    apply_qual(c, t->qual, why);
}

/* The target of a term: its expanded domain-spec, or the current domain. 0 done,
 * -1 finished with permerror. */
static int target_of(struct spf_check *c, const char *spec)
{
    struct frame *f = top(c);
    if (!spec) {
        snprintf(c->target, sizeof c->target, "%s", f->domain);
        return 0;
    }
    struct spf_macro_env e;
    char out[1024];
    env_fill(c, &e, f->domain);
    if (spf_macro_expand(spec, strlen(spec), &e, 0, 1, out, sizeof out) != 0) {
        finish(c, SPF_PERMERROR, "cannot expand \"%s\" in the record of %s", spec, f->domain);
        return -1;
    }
    size_t n = strlen(out);
    if (n >= sizeof c->target) n = sizeof c->target - 1; /* cannot happen: 253 at most */
    memcpy(c->target, out, n);
    c->target[n] = '\0';
    return 0;
}

static int count_lookup(struct spf_check *c)
{
    if (++c->lookups > MAX_LOOKUPS) {
        finish(c, SPF_PERMERROR, "more than %d DNS lookups (RFC 7208 4.6.4)", MAX_LOOKUPS);
        return -1;
    }
    return 0;
}

static int count_void(struct spf_check *c)
{
    if (++c->voids > MAX_VOID) {
        finish(c, SPF_PERMERROR, "more than %d void DNS lookups (RFC 7208 4.6.4)", MAX_VOID);
        return -1;
    }
    return 0;
}

/* Evaluate terms of the top frame until one needs DNS or the frame ends. */
static void step(struct spf_check *c)
{
    while (!c->done && c->wait == W_NONE) {
        struct frame *f = top(c);
        const char *spec = f->next < f->rec.nterms ? f->rec.terms[f->next].spec : f->rec.redirect;
        if (has_p(spec) && !c->p_done) {
            p_start(c, P_STEP);
            return;
        }
        if (f->next >= f->rec.nterms) {
            if (f->rec.redirect) {
                /* 6.1: redirect= only when no mechanism matched */
                if (count_lookup(c) != 0 || target_of(c, f->rec.redirect) != 0) return;
                spf_record_free(&f->rec);
                snprintf(f->domain, sizeof f->domain, "%s", c->target);
                f->next = 0;
                f->redirected = 1;
                if (!spf_domain_ok(f->domain)) {
                    finish(c, SPF_PERMERROR, "redirect to an invalid domain \"%s\"", f->domain);
                    return;
                }
                start_txt(c);
                return;
            }
            char why[400];
            snprintf(why, sizeof why, "no mechanism matched in the record of %s", f->domain);
            frame_done(c, SPF_NEUTRAL, why);
            continue;
        }
        const struct spf_term *t = &f->rec.terms[f->next++];
        switch (t->mech) {
        case SPF_M_ALL:
            matched(c);
            continue;
        case SPF_M_IP4:
        case SPF_M_IP6: {
            struct sockaddr_storage ss;
            memset(&ss, 0, sizeof ss);
            if (t->mech == SPF_M_IP4) {
                ss.ss_family = AF_INET;
                memcpy(&((struct sockaddr_in *)&ss)->sin_addr, t->ip, 4);
            } else {
                ss.ss_family = AF_INET6;
                memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, t->ip, 16);
            }
            if (addr_match(c, &ss, t->cidr4, t->cidr6)) matched(c);
            continue;
        }
        case SPF_M_INCLUDE:
            if (count_lookup(c) != 0 || target_of(c, t->spec) != 0) return;
            if (!spf_domain_ok(c->target)) {
                finish(c, SPF_PERMERROR, "include of an invalid domain \"%s\"", c->target);
                return;
            }
            push(c, c->target, 1);
            return;
        case SPF_M_A:
        case SPF_M_EXISTS:
            if (count_lookup(c) != 0 || target_of(c, t->spec) != 0) return;
            if (!spf_domain_ok(c->target)) {
                if (count_void(c) != 0) return;
                continue; /* a name that cannot exist matches nothing */
            }
            c->wait = W_A;
            query_addr(c, c->target, t->mech == SPF_M_EXISTS);
            return;
        case SPF_M_MX:
            if (count_lookup(c) != 0 || target_of(c, t->spec) != 0) return;
            if (!spf_domain_ok(c->target)) {
                if (count_void(c) != 0) return;
                continue;
            }
            c->wait = W_MX;
            c->q = dns_query_mx(c->dns, c->target, on_dns, c);
            return;
        case SPF_M_PTR:
            if (count_lookup(c) != 0 || target_of(c, t->spec) != 0) return;
            c->wait = W_PTR;
            c->q = dns_query_ptr(c->dns, (const struct sockaddr *)&c->ip, on_dns, c);
            return;
        }
    }
}

static void exp_text(struct spf_check *c)
{
    const char *rec = c->exp_txt;
    if (rec) {
        struct spf_macro_env e;
        char out[512];
        env_fill(c, &e, top(c)->domain);
        if (spf_macro_expand(rec, strlen(rec), &e, 1, 0, out, sizeof out) == 0) {
            int ok = 1;
            for (const char *p = out; *p; p++)
                ok &= (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f;
            if (ok) {
                free(c->exp_txt);
                c->exp_txt = NULL;
                c->from_exp = 1;
                finish(c, SPF_FAIL, "%s", out);
                return;
            }
        }
    }
    /* 6.2: any problem with the explanation: the default one */
    free(c->exp_txt);
    c->exp_txt = NULL;
    c->result = SPF_FAIL;
    c->done = 1;
    c->wait = W_NONE;
    struct timeval now = {0, 0};
    evtimer_add(c->ev, &now);
}

static void on_exp(struct spf_check *c, const struct dns_result *r)
{
    /* 6.2: exactly one TXT record, US-ASCII (a NUL makes it unusable) */
    if (r->status == DNS_OK && r->ntxt == 1 && strlen(r->txt[0]) == r->txt_len[0])
        c->exp_txt = xstrdup(r->txt[0]);
    if (c->exp_txt && has_p(c->exp_txt) && !c->p_done) {
        p_start(c, P_EXP_TEXT);
        return;
    }
    exp_text(c);
}

static void exp_query(struct spf_check *c)
{
    struct frame *f = top(c);
    struct spf_macro_env e;
    char out[1024];
    env_fill(c, &e, f->domain);
    if (spf_macro_expand(f->rec.exp, strlen(f->rec.exp), &e, 0, 1, out, sizeof out) == 0 &&
        spf_domain_ok(out)) {
        c->wait = W_EXP;
        c->q = dns_query_txt(c->dns, out, on_dns, c);
        return;
    }
    finish(c, SPF_FAIL, "%s", c->text);
}

static void frame_done(struct spf_check *c, enum spf_result r, const char *why)
{
    struct frame *f = top(c);
    if (f->include) {
        /* 5.2: an include matches on pass, not on fail, softfail or neutral */
        spf_record_free(&f->rec);
        c->depth--;
        if (r == SPF_PASS) matched(c);
        return; /* else step() goes on with the next term */
    }
    if (r != SPF_FAIL) {
        finish(c, r, "%s", why);
        return;
    }
    snprintf(c->text, sizeof c->text, "%s", why);
    if (f->rec.exp) {
        if (has_p(f->rec.exp) && !c->p_done)
            p_start(c, P_EXP_DOMAIN);
        else
            exp_query(c);
        return;
    }
    finish(c, SPF_FAIL, "%s", why);
}

/* 4.5: pick the one "v=spf1" record of the top frame. */
static void on_txt(struct spf_check *c, const struct dns_result *r)
{
    struct frame *f = top(c);
    const char *what = f->include ? "included" : f->redirected ? "redirect target" : "";
    if (r->status == DNS_TEMPFAIL || r->status == DNS_BOGUS) {
        finish(c, SPF_TEMPERROR, "DNS error looking up the SPF record of %s%s%s: %s", what,
               *what ? " " : "", f->domain, r->why ? r->why : "temporary failure");
        return;
    }
    const char *rec = NULL;
    size_t rlen = 0;
    int n = 0;
    for (size_t i = 0; r->status == DNS_OK && i < r->ntxt; i++)
        if (spf_record_is_v1(r->txt[i], r->txt_len[i])) {
            rec = r->txt[i];
            rlen = r->txt_len[i];
            n++;
        }
    if (n > 1) {
        finish(c, SPF_PERMERROR, "%s has more than one SPF record", f->domain);
        return;
    }
    if (n == 0) {
        if (f->include || f->redirected)
            finish(c, SPF_PERMERROR, "%s domain %s has no SPF record", what, f->domain);
        else
            finish(c, SPF_NONE, "%s has no SPF record", f->domain);
        return;
    }
    char err[200];
    if (spf_record_parse(rec, rlen, &f->rec, err, sizeof err) != 0) {
        finish(c, SPF_PERMERROR, "SPF record of %s: %s", f->domain, err);
        return;
    }
    f->next = 0;
    step(c);
}

/* 1 when name equals domain or is below it */
static int name_below(const char *name, const char *domain)
{
    size_t nl = strlen(name), tl = strlen(domain);
    if (tl && domain[tl - 1] == '.') tl--;
    return nl >= tl && strncasecmp(name + nl - tl, domain, tl) == 0 &&
           (nl == tl || name[nl - tl - 1] == '.');
}

static void p_resume(struct spf_check *c)
{
    names_free(c);
    c->p_done = 1;
    c->wait = W_NONE;
    switch (c->p_resume) {
    case P_STEP:
        step(c);
        return;
    case P_EXP_DOMAIN:
        exp_query(c);
        return;
    case P_EXP_TEXT:
        exp_text(c);
        return;
    }
}

static void on_dns(void *arg, const struct dns_result *r)
{
    struct spf_check *c = arg;
    struct frame *f = top(c);
    enum spf_wait w = c->wait;
    c->q = NULL;
    c->wait = W_NONE;
    int temp = r->status == DNS_TEMPFAIL || r->status == DNS_BOGUS;
    int none = r->status == DNS_NXDOMAIN || r->status == DNS_NODATA;
    switch (w) {
    case W_NONE:
        return;
    case W_TXT:
        on_txt(c, r);
        return;
    case W_EXP:
        on_exp(c, r);
        return;
    case W_A:
        if (temp) {
            finish(c, SPF_TEMPERROR, "DNS error looking up %s: %s", c->target,
                   r->why ? r->why : "temporary failure");
            return;
        }
        if (none) {
            if (count_void(c) != 0) return;
        } else {
            const struct spf_term *t = &f->rec.terms[f->next - 1];
            int hit = t->mech == SPF_M_EXISTS && r->naddrs > 0;
            for (size_t i = 0; !hit && i < r->naddrs; i++)
                hit = addr_match(c, &r->addrs[i], t->cidr4, t->cidr6);
            if (hit) {
                matched(c);
                step(c);
                return;
            }
        }
        step(c);
        return;
    case W_MX:
        if (temp) {
            finish(c, SPF_TEMPERROR, "DNS error looking up MX of %s: %s", c->target,
                   r->why ? r->why : "temporary failure");
            return;
        }
        if (none || r->null_mx) {
            if (none && count_void(c) != 0) return;
            step(c);
            return;
        }
        if (r->nmx > MAX_NAMES) {
            finish(c, SPF_PERMERROR, "%s has more than %d MX records (RFC 7208 4.6.4)", c->target,
                   MAX_NAMES);
            return;
        }
        names_free(c);
        c->names = xcalloc(r->nmx, sizeof *c->names);
        for (size_t i = 0; i < r->nmx; i++)
            c->names[c->nnames++] = xstrdup(r->mx[i].host);
        c->wait = W_MX_ADDR;
        query_addr(c, c->names[0], 0);
        return;
    case W_PTR:
        if (temp || none) {
            step(c); /* 5.5: a DNS error on PTR: no match */
            return;
        }
        names_free(c);
        c->names = xcalloc(r->nstrs, sizeof *c->names);
        for (size_t i = 0; i < r->nstrs && c->nnames < MAX_NAMES; i++)
            c->names[c->nnames++] = xstrdup(r->strs[i]);
        c->wait = W_PTR_ADDR;
        query_addr(c, c->names[0], 0);
        return;
    case W_P_PTR:
        names_free(c);
        if (r->status == DNS_OK && r->nstrs) {
            c->names = xcalloc(r->nstrs, sizeof *c->names);
            for (size_t i = 0; i < r->nstrs && c->nnames < MAX_NAMES; i++)
                c->names[c->nnames++] = xstrdup(r->strs[i]);
            c->wait = W_P_ADDR;
            query_addr(c, c->names[0], 0);
            return;
        }
        p_resume(c);
        return;
    case W_P_ADDR: {
        int hit = 0;
        for (size_t i = 0; !hit && r->status == DNS_OK && i < r->naddrs; i++)
            hit = addr_match(c, &r->addrs[i], 32, 128);
        const char *name = c->names[c->iname];
        if (hit) {
            int below = name_below(name, f->domain);
            if (!c->ptr_name[0] || below) snprintf(c->ptr_name, sizeof c->ptr_name, "%s", name);
            if (below) {
                p_resume(c);
                return;
            }
        }
        if (++c->iname < c->nnames) {
            c->wait = W_P_ADDR;
            query_addr(c, c->names[c->iname], 0);
            return;
        }
        p_resume(c);
        return;
    }
    case W_MX_ADDR:
    case W_PTR_ADDR: {
        const struct spf_term *t = &f->rec.terms[f->next - 1];
        int hit = 0;
        if (w == W_MX_ADDR && temp) {
            finish(c, SPF_TEMPERROR, "DNS error looking up %s: %s", c->names[c->iname],
                   r->why ? r->why : "temporary failure");
            return;
        }
        for (size_t i = 0; !hit && r->status == DNS_OK && i < r->naddrs; i++)
            hit = w == W_MX_ADDR ? addr_match(c, &r->addrs[i], t->cidr4, t->cidr6)
                                 : addr_match(c, &r->addrs[i], 32, 128);
        if (hit && w == W_PTR_ADDR) {
            /* a validated name: is it the target or below it? */
            hit = name_below(c->names[c->iname], c->target);
        }
        if (hit) {
            names_free(c);
            matched(c);
            step(c);
            return;
        }
        if (++c->iname < c->nnames) {
            c->wait = w;
            query_addr(c, c->names[c->iname], 0);
            return;
        }
        names_free(c);
        step(c);
        return;
    }
    }
}

struct spf_check *spf_check_start(struct event_base *base, struct dns *dns,
                                  const struct sockaddr *ip, const char *sender, const char *helo,
                                  const char *receiver, spf_cb cb, void *arg)
{
    struct spf_check *c = xcalloc(1, sizeof *c);
    c->base = base;
    c->dns = dns;
    c->cb = cb;
    c->arg = arg;
    c->ev = evtimer_new(base, on_deliver, c);
    if (!c->ev) abort();
    c->helo = xstrdup(helo ? helo : "");
    c->receiver = xstrdup(receiver ? receiver : "unknown");
    if (ip->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ip;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&c->ip;
            s4->sin_family = AF_INET;
            memcpy(&s4->sin_addr, s6->sin6_addr.s6_addr + 12, 4);
        } else {
            memcpy(&c->ip, s6, sizeof *s6);
        }
    } else {
        memcpy(&c->ip, ip, sizeof(struct sockaddr_in));
    }
    /* 4.3: the null sender is postmaster@HELO; a sender without a local-part gets
     * "postmaster" */
    const char *s = sender && *sender ? sender : NULL;
    const char *at = s ? strrchr(s, '@') : NULL;
    if (!s) {
        c->local = xstrdup("postmaster");
        c->sender_domain = xstrdup(c->helo);
    } else if (!at) {
        c->local = xstrdup("postmaster");
        c->sender_domain = xstrdup(s);
    } else {
        c->local = at == s ? xstrdup("postmaster") : xasprintf("%.*s", (int)(at - s), s);
        c->sender_domain = xstrdup(at + 1);
    }
    c->sender = xasprintf("%s@%s", c->local, c->sender_domain);
    if (!spf_domain_ok(c->sender_domain)) {
        finish(c, SPF_NONE, "\"%s\" is not a domain that can have an SPF record", c->sender_domain);
        return c;
    }
    push(c, c->sender_domain, 0);
    return c;
}

void spf_check_cancel(struct spf_check *c)
{
    if (!c) return;
    if (c->q) dns_cancel(c->q);
    names_free(c);
    for (int i = 0; i < c->depth; i++)
        spf_record_free(&c->frames[i].rec);
    event_free(c->ev);
    free(c->sender);
    free(c->local);
    free(c->sender_domain);
    free(c->helo);
    free(c->receiver);
    free(c->exp_txt);
    free(c);
}
