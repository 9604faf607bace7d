/* workdir.c: the daemon's working folder (state_dir) and the way each configured
 * path is reached from it, so that the kurier user still reaches its files after the
 * privilege drop (as Postfix's daemons work inside the queue directory after chdir). */
#include "core/compat.h"

#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

char *path_physical(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = !slash          ? xstrdup(".")
                : slash == path ? xstrdup("/")
                                : xstrndup(path, (size_t)(slash - path));
    char *rdir = realpath(dir, NULL);
    free(dir);
    if (!rdir) return NULL;
    const char *leaf = slash ? slash + 1 : path;
    char *r = !*leaf ? xstrdup(rdir) : xasprintf("%s%s%s", rdir, rdir[1] ? "/" : "", leaf);
    free(rdir);
    return r;
}

/* 1 when everyone may pass through "/" and every folder below it down to the parent
 * of folder (absolute, clean), so that a lookup from "/" reaches folder as well as
 * one from the working folder. */
static int open_above(const char *folder)
{
    char *p = xstrdup(folder);
    int open = 1;
    for (char *slash = p;; slash = strchr(slash + 1, '/')) {
        if (!slash) break;
        char c = slash[slash == p];
        slash[slash == p] = '\0'; /* "/", then "/a", "/a/b", ... below folder */
        struct stat st;
        open = stat(p, &st) == 0 && (st.st_mode & S_IXOTH);
        slash[slash == p] = c;
        if (!open) break;
    }
    free(p);
    return open;
}

int workdir_enter(struct workdir *w, const char *dir)
{
    w->lexical = xstrdup(dir);
    w->physical = realpath(dir, NULL);
    return w->physical && chdir(w->physical) == 0 ? 0 : -1;
}

void workdir_clear(struct workdir *w)
{
    free(w->lexical);
    free(w->physical);
    w->lexical = w->physical = NULL;
}

char *workdir_path(const char *path, void *arg)
{
    const struct workdir *w = arg;
    size_t n = strlen(w->lexical);
    if (n > 1 && strncmp(path, w->lexical, n) == 0 && (path[n] == '/' || !path[n]))
        return xstrdup(path[n] ? path + n + 1 : ".");
    char *phys = path_physical(path); /* fails for unreachable folders after the drop */
    char *r = path_relative(w->physical, phys ? phys : path);
    free(phys);
    if (r[0] == '/') return r;
    /* the shared folder: the working folder less one part per ".." */
    char *shared = xstrdup(w->physical);
    for (const char *u = r; strncmp(u, "..", 2) == 0 && (u[2] == '/' || !u[2]); u += 3) {
        *strrchr(shared, '/') = '\0';
        if (!u[2]) break;
    }
    int open = shared[0] && open_above(shared);
    free(shared);
    if (!open) return r;
    free(r);
    return xstrdup(path);
}
