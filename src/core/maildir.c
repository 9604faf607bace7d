/* maildir.c: the Maildir layout <root>/<domain>/<local>/Maildir and its usage.
 * Writing messages is deliver/maildir.c's; quota decisions are the callers'. */
#include "core/compat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "core/buf.h"
#include "core/maildir.h"

/* A path component taken from an address: not empty, no '/', not hidden (which
 * covers "." and ".."). */
static int component_ok(const char *s, size_t len)
{
    return len > 0 && s[0] != '.' && !memchr(s, '/', len) && !memchr(s, '\0', len);
}

char *maildir_path_new(const char *root, const char *address)
{
    const char *at = strrchr(address, '@');
    if (!at) return NULL;
    size_t ll = (size_t)(at - address);
    const char *dom = at + 1;
    if (!component_ok(address, ll) || !component_ok(dom, strlen(dom))) return NULL;
    char *d = xstrdup(dom);
    str_lower(d);
    char *p = xasprintf("%s/%s/%.*s/Maildir", root, d, (int)ll, address);
    free(d);
    return p;
}

/* ",S=1234" in a Maildir file name, -1 when absent */
static long long size_from_name(const char *n)
{
    const char *s = strstr(n, ",S=");
    if (!s) return -1;
    s += 3;
    long long v = 0;
    if (*s < '0' || *s > '9') return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (1LL << 50)) return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

long long maildir_usage(const char *root, const char *address)
{
    char *md = maildir_path_new(root, address);
    if (!md) return -1;
    long long total = 0;
    static const char *subs[] = {"new", "cur"};
    for (size_t i = 0; i < 2; i++) {
        char *dir = xasprintf("%s/%s", md, subs[i]);
        DIR *d = opendir(dir);
        free(dir);
        if (!d) {
            if (errno == ENOENT) continue; /* no Maildir yet: nothing used */
            free(md);
            return -1;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            long long sz = size_from_name(de->d_name);
            if (sz < 0) {
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
                sz = (long long)st.st_size;
            }
            total += sz;
        }
        closedir(d);
    }
    free(md);
    return total;
}
