/* log.c: syslog-shaped log lines to stderr or syslog(3). One line per event. Needs
 * nothing else from core/ (buf.c's allocators log their fatal error through it). */
#include "core/compat.h"

#include <pthread.h>
#include <stdarg.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

static int use_syslog;
static enum log_level max_level = LOG_LV_INFO;
static char prog[64] = "kurier";
static char host[256];
static char debug_subsys[256];
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t log_pid; /* getpid() is a system call each time: kept, renewed in a child */

static void log_pid_renew(void)
{
    log_pid = getpid();
}

static void log_pid_init(void)
{
    log_pid_renew();
    pthread_atfork(NULL, NULL, log_pid_renew);
}

void log_init(const char *target, const char *name, enum log_level level)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, log_pid_init);
    pthread_mutex_lock(&log_lock);
    if (use_syslog) closelog();
    use_syslog = target && strcmp(target, "syslog") == 0;
    /* snprintf cuts over-long names, as wanted */
    if (name && *name) snprintf(prog, sizeof prog, "%s", name);
    max_level = level;
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    char *dot = strchr(host, '.');
    if (dot) *dot = '\0';
    if (use_syslog) openlog(prog, LOG_PID | LOG_NDELAY, LOG_MAIL);
    pthread_mutex_unlock(&log_lock);
}

int log_level_parse(const char *s)
{
    static const char *names[] = {"err", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

void log_debug_enable(const char *subsystems)
{
    snprintf(debug_subsys, sizeof debug_subsys, "%s", subsystems ? subsystems : "");
}

int log_debug_on(const char *subsys)
{
    if (max_level < LOG_LV_DEBUG && !debug_subsys[0]) return 0;
    if (!debug_subsys[0] || strcmp(debug_subsys, "all") == 0) return max_level >= LOG_LV_DEBUG;
    size_t n = strlen(subsys);
    for (const char *p = debug_subsys; (p = strstr(p, subsys)); p += n)
        if ((p == debug_subsys || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}

void log_msg(enum log_level lv, const char *component, const char *fmt, ...)
{
    if (lv > max_level && !(lv == LOG_LV_DEBUG && debug_subsys[0])) return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++) /* never a multi-line entry */
        if (*p == '\n' || *p == '\r') *p = ' ';
    static const char *tags[] = {"error: ", "warning: ", "", "debug: "};
    if (use_syslog) {
        static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
        pthread_mutex_lock(&log_lock);
        /* the program tag becomes kurier/smtpd, as Postfix's postfix/smtpd; glibc
         * keeps the ident pointer, so it must outlive the call */
        static char ident[128];
        snprintf(ident, sizeof ident, "%s/%s", prog, component);
        openlog(ident, (strchr(component, '[') ? 0 : LOG_PID) | LOG_NDELAY, LOG_MAIL);
        syslog(prio[lv], "%s%s", tags[lv], msg);
        pthread_mutex_unlock(&log_lock);
        return;
    }
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%b %e %H:%M:%S", &tm);
    pthread_mutex_lock(&log_lock);
    if (strchr(component, '[')) /* "smtpd[17]": a session number instead of the pid */
        fprintf(stderr, "%s %s %s/%s: %s%s\n", ts, host[0] ? host : "localhost", prog, component,
                tags[lv], msg);
    else
        fprintf(stderr, "%s %s %s/%s[%ld]: %s%s\n", ts, host[0] ? host : "localhost", prog,
                component, (long)(log_pid ? log_pid : getpid()), tags[lv], msg);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}

char *log_escape(char *dst, size_t dstsize, const char *src, size_t len)
{
    size_t o = 0;
    if (!dstsize) return dst;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        char tmp[5];
        size_t n;
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            tmp[0] = (char)c;
            n = 1;
        } else {
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
            n = 4;
        }
        if (o + n + 4 > dstsize) { /* room for "..." and NUL */
            if (o + 4 <= dstsize) {
                memcpy(dst + o, "...", 3);
                o += 3;
            }
            break;
        }
        memcpy(dst + o, tmp, n);
        o += n;
    }
    dst[o] = '\0';
    return dst;
}
