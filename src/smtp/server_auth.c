/* server_auth.c: the AUTH exchange of an inbound session (RFC 4954, PLAIN and LOGIN):
 * decoding responses and asking the layer above (directory or Dovecot, brute-force
 * limits) through smtp_ops.auth. The dialogue around it is server.c's. */
#include "core/compat.h"

#include <strings.h>

#include "core/metrics.h"
#include "smtp/session.h"

/* --- AUTH (RFC 4954) ------------------------------------------------------------- */

static void auth_checked(void *arg, enum auth_result result);

/* RFC 4954 4: no AUTH over plaintext unless the listener explicitly allows it. */
int session_auth_offered(const struct smtp_session *s)
{
    return s->srv->listen->auth && !s->peer.auth_user &&
           (s->peer.tls || s->srv->listen->auth_plaintext);
}

/* Credentials complete: ask the layer above (directory, brute-force limits). */
static void auth_check(struct smtp_session *s, const char *user, const char *pass)
{
    session_set_state(s, SMTP_ST_READY);
    s->pending = PENDING_AUTH;
    free(s->auth_user_try);
    s->auth_user_try = xstrdup(user);
    s->pending_handle =
        s->srv->ops->auth(s->srv->ops->ctx, &s->peer, s->auth_mech, user, pass, auth_checked, s);
}

static void auth_checked(void *arg, enum auth_result result)
{
    struct smtp_session *s = arg;
    s->pending = PENDING_NONE;
    s->pending_handle = NULL;
    char user[400];
    log_escape(user, sizeof user, s->auth_user_try, strlen(s->auth_user_try));
    metrics_add(MET_AUTH, 1,
                result == AUTH_OK         ? "success"
                : result == AUTH_TEMPFAIL ? "tempfail"
                                          : "failure");
    switch (result) {
    case AUTH_OK:
        s->peer.auth_user = s->auth_user_try;
        s->auth_user_try = NULL;
        log_info(s->logname, "%s[%s]: sasl_method=%s, sasl_username=%s", s->peer.name, s->peer.addr,
                 s->auth_mech, user);
        session_reply(s, 235, "2.7.0", "Authentication successful");
        break;
    case AUTH_DENIED:
        /* fail2ban's postfix-sasl filter matches this line */
        log_warn(s->logname,
                 "%s[%s]: SASL %s authentication failed: authentication failure, "
                 "sasl_username=%s",
                 s->peer.name, s->peer.addr, s->auth_mech, user);
        session_fail(s, 535, "5.7.8", "Authentication credentials invalid");
        break;
    case AUTH_BLOCKED:
        log_warn(s->logname,
                 "%s[%s]: SASL %s authentication failed: too many failures, "
                 "sasl_username=%s",
                 s->peer.name, s->peer.addr, s->auth_mech, user);
        session_fail(s, 454, "4.7.0", "Too many failed logins from your address; try again later");
        break;
    case AUTH_LOCKED:
        log_warn(s->logname,
                 "%s[%s]: SASL %s authentication refused: account locked, sasl_username=%s",
                 s->peer.name, s->peer.addr, s->auth_mech, user);
        session_fail(
            s, 535, "5.7.8",
            "Account locked for sending after suspected compromise; contact your provider");
        break;
    case AUTH_TEMPFAIL:
    default:
        session_fail(s, 454, "4.7.0", "Temporary authentication failure, try again later");
        break;
    }
    free(s->auth_user_try);
    s->auth_user_try = NULL;
    session_auth_reset(s);
    session_process_input(s);
}

/* Handle one SASL response (the initial response or a line after 334). */
void session_auth_step(struct smtp_session *s, const char *line, size_t len)
{
    if (len == 1 && line[0] == '*') {
        session_auth_reset(s);
        session_set_state(s, SMTP_ST_READY);
        session_fail(s, 501, "5.0.0", "Authentication cancelled");
        return;
    }
    unsigned char dec[1024];
    size_t n = 0;
    if (!(len == 1 && line[0] == '=') && base64_decode(line, len, dec, sizeof dec - 1, &n) != 0) {
        session_auth_reset(s);
        session_set_state(s, SMTP_ST_READY);
        session_fail(s, 501, "5.5.2", "Invalid base64 data in the AUTH response");
        return;
    }
    dec[n] = '\0';
    if (strcmp(s->auth_mech, "PLAIN") == 0) {
        char authz[256], authc[256], pass[256];
        if (smtp_sasl_plain_parse(dec, n, authz, sizeof authz, authc, sizeof authc, pass,
                                  sizeof pass) != 0) {
            session_auth_reset(s);
            session_set_state(s, SMTP_ST_READY);
            session_fail(s, 501, "5.5.2", "Malformed PLAIN authentication data");
            return;
        }
        if (authz[0] && strcmp(authz, authc) != 0) { /* no proxy authorization */
            session_auth_reset(s);
            session_set_state(s, SMTP_ST_READY);
            session_fail(s, 535, "5.7.8", "Authentication credentials invalid");
            return;
        }
        auth_check(s, authc, pass);
        explicit_bzero(pass, sizeof pass);
    } else if (!s->auth_login_user) { /* LOGIN: user name, then the password */
        if (memchr(dec, '\0', n) || n == 0) {
            session_auth_reset(s);
            session_set_state(s, SMTP_ST_READY);
            session_fail(s, 501, "5.5.2", "Malformed LOGIN user name");
            return;
        }
        s->auth_login_user = xstrndup((const char *)dec, n);
        session_set_state(s, SMTP_ST_AUTH);
        session_reply(s, 334, NULL, "UGFzc3dvcmQ6"); /* "Password:" */
    } else {
        char *user = s->auth_login_user;
        s->auth_login_user = NULL;
        auth_check(s, user, (const char *)dec);
        free(user);
    }
    explicit_bzero(dec, sizeof dec);
}

void session_cmd_auth(struct smtp_session *s, struct smtp_cmd *c)
{
    s->n_auth++;
    if (s->peer.auth_user) {
        session_fail(s, 503, "5.5.1", "Already authenticated");
        return;
    }
    if (!s->srv->listen->auth) {
        session_fail(s, 503, "5.5.1", "AUTH is not offered here");
        return;
    }
    if (!session_auth_offered(s)) { /* RFC 4954 6 */
        session_fail(
            s, 538, "5.7.11",
            "Encryption required for requested authentication mechanism: use STARTTLS first");
        return;
    }
    if (!c->arg || !*c->arg) {
        session_fail(s, 501, "5.5.4", "AUTH needs a mechanism: PLAIN or LOGIN");
        return;
    }
    char mech[16];
    const char *sp = strchr(c->arg, ' ');
    size_t ml = sp ? (size_t)(sp - c->arg) : strlen(c->arg);
    if (ml >= sizeof mech) ml = sizeof mech - 1;
    memcpy(mech, c->arg, ml);
    mech[ml] = '\0';
    for (char *p = mech; *p; p++)
        if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
    const char *initial = sp ? sp + 1 : NULL;
    if (strcmp(mech, "PLAIN") != 0 && strcmp(mech, "LOGIN") != 0) {
        session_fail(s, 504, "5.5.4", "Unrecognized authentication mechanism; use PLAIN or LOGIN");
        return;
    }
    str_copy(s->auth_mech, mech, sizeof s->auth_mech);
    if (initial && *initial) {
        session_auth_step(s, initial, strlen(initial));
        return;
    }
    session_set_state(s, SMTP_ST_AUTH);
    if (strcmp(mech, "PLAIN") == 0)
        session_reply(s, 334, NULL, " "); /* empty challenge: "334 " */
    else
        session_reply(s, 334, NULL, "VXNlcm5hbWU6"); /* "Username:" */
}
