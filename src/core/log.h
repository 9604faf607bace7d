/* log.h: one line per event, syslog-shaped so pflogsumm and fail2ban read it:
 * "Nov 25 13:20:00 host kurier/smtpd[123]: 4Y...: from=<a@b>, size=1, nrcpt=1".
 * Peer bytes must go through log_escape() first. */
#ifndef KURIER_LOG_H
#define KURIER_LOG_H

#include <stddef.h>

enum log_level { LOG_LV_ERR = 0, LOG_LV_WARN, LOG_LV_INFO, LOG_LV_DEBUG };

/* target: "stderr" or "syslog"; name: syslog program name ("kurier").
 * May be called again (reload). */
void log_init(const char *target, const char *name, enum log_level level);
/* Parse "err|warn|info|debug"; -1 when unknown. */
int log_level_parse(const char *s);
/* Debug traces are enabled per subsystem: "smtp,queue" or "all". */
void log_debug_enable(const char *subsystems);
int log_debug_on(const char *subsys);

/* component names the Postfix-style program ("smtpd", "qmgr", "local", "cleanup",
 * "pickup", "smtp"); it becomes "kurier/smtpd[pid]" in the line. A component that
 * carries its own number ("smtpd[17]", one SMTP session) is printed as it is: all
 * lines of one session share that number, as all lines of one Postfix smtpd process
 * share its pid (pflogsumm pairs connect/disconnect by it). */
void log_msg(enum log_level lv, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define log_err(c, ...) log_msg(LOG_LV_ERR, c, __VA_ARGS__)
#define log_warn(c, ...) log_msg(LOG_LV_WARN, c, __VA_ARGS__)
#define log_info(c, ...) log_msg(LOG_LV_INFO, c, __VA_ARGS__)
#define log_debug(c, ...)                                                                          \
    do {                                                                                           \
        if (log_debug_on(c)) log_msg(LOG_LV_DEBUG, c, __VA_ARGS__);                                \
    } while (0)

/* Escape peer bytes for a log line: printable ASCII kept, others as \xNN, at most
 * dstsize-1 bytes written (cut with "..."). Returns dst. */
char *log_escape(char *dst, size_t dstsize, const char *src, size_t len);

#endif
