/* esmtp.h: the ESMTP envelope parameters a message carries from the SMTP session
 * through the queue to the next hop (BODY RFC 6152, RET and NOTIFY RFC 3461).
 * smtp/ parses and sends them, queue/ stores them, deliver/ passes them on. */
#ifndef KURIER_ESMTP_H
#define KURIER_ESMTP_H

enum smtp_body { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };
enum smtp_ret { SMTP_RET_NONE = 0, SMTP_RET_FULL, SMTP_RET_HDRS };
enum smtp_notify { /* RFC 3461 4.1; 0 = not given */
                   SMTP_NOTIFY_NEVER = 1,
                   SMTP_NOTIFY_SUCCESS = 2,
                   SMTP_NOTIFY_FAILURE = 4,
                   SMTP_NOTIFY_DELAY = 8,
};

#endif
