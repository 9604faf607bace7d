/* auth_result.h: the answer to a login, one enum from the credential backends
 * (auth/) through the AUTH check to the SMTP reply (smtp/server_auth.c). It lives in
 * core because both sides need it and smtp/ includes nothing above core/. */
#ifndef KURIER_AUTH_RESULT_H
#define KURIER_AUTH_RESULT_H

enum auth_result {
    AUTH_TEMPFAIL = -1, /* the backend failed (database, Dovecot down): 454 4.7.0 */
    AUTH_DENIED = 0,    /* wrong credentials, unknown or disabled user: 535 5.7.8 */
    AUTH_OK = 1,        /* accepted: 235 2.7.0 */
    AUTH_BLOCKED = 2,   /* not checked: too many failures from this address or for this
                           account from it (auth/limits.c): 454 4.7.0 */
    AUTH_LOCKED = 3,    /* right credentials, but the account is locked for sending after
                           suspected compromise (abuse/): 535 5.7.8 */
};

#endif
