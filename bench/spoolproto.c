/* spoolproto.c: issue 16's design comparison for the spool commit, standalone (built by
 * "make bench" only, never linked into kurier). On one file system it commits N
 * messages (content + envelope) in batches of B with three schemes and prints a
 * Markdown table: messages/s, flush calls per message, disk flushes per message
 * (/proc/diskstats), p50/p99 batch latency.
 *
 *   spoolproto [-d DIR] [-n N] [-s SIZES] [-b BATCHES] [-r REPEATS]
 *       DIR       where the files go (default /var/tmp); a fresh subfolder is made and removed
 *       N         messages per run (default 2000); SIZES default 1024,102400;
 *       BATCHES   default 1,10,50; REPEATS runs per cell, the median is printed (default 1)
 *
 * Schemes:
 *   segment  content and envelope appended as one checksummed record to a segment file
 *            preallocated (written with zeros and fsync'd before the clock starts), one
 *            fdatasync per batch: one flush, no file created per message.
 *   lmdb     LMDB with MDB_NOSYNC | MDB_NOMETASYNC, one write transaction per batch
 *            (content and envelope as two keys), then mdb_env_sync(env, 1).
 *   files    kurier's spool before issue 16: per message two files written in
 *            incoming/, one syncfs() per batch, both renamed into queue/, one fsync of
 *            queue/ per batch.
 * Messages are removed after each run (files unlinked, keys deleted, segment dropped),
 * outside the clock, so the next run sees the churn a real queue leaves. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define ENV_SIZE 300 /* an envelope record: sender, one recipient, state */
#define SEG_SIZE (64ull << 20)

static unsigned long flush_calls;

static void die(const char *what)
{
    fprintf(stderr, "spoolproto: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) die("write");
        c += w;
        n -= (size_t)w;
    }
}

static void pwrite_all(int fd, const void *p, size_t n, off_t off)
{
    const char *c = p;
    while (n) {
        ssize_t w = pwrite(fd, c, n, off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) die("pwrite");
        c += w;
        off += w;
        n -= (size_t)w;
    }
}

/* Completed flush requests of the disk holding path (field 19 of /proc/diskstats). */
static long long disk_flushes(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    FILE *f = fopen("/proc/diskstats", "r");
    if (!f) return -1;
    char line[512];
    long long r = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned ma, mi;
        char name[64];
        long long v[17];
        int k =
            sscanf(line,
                   "%u %u %63s %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld "
                   "%lld %lld %lld",
                   &ma, &mi, name, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8],
                   &v[9], &v[10], &v[11], &v[12], &v[13], &v[14], &v[15]);
        if (k >= 19 && ma == major(st.st_dev) && mi == minor(st.st_dev)) {
            r = v[15];
            break;
        }
    }
    fclose(f);
    return r;
}

static uint32_t crc32c_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
        crc32c_table[i] = c;
    }
}

#if defined(__x86_64__)
/* SSE 4.2's crc32 instruction: 8 bytes a step (a real spool would do the same) */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t c = ~crc;
    for (; n >= 8; n -= 8, b += 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        c = __builtin_ia32_crc32di(c, w);
    }
    uint32_t c32 = (uint32_t)c;
    while (n--)
        c32 = __builtin_ia32_crc32qi(c32, *b++);
    return ~c32;
}
#endif

static uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return crc32c_hw(crc, p, n);
#endif
    const unsigned char *b = p;
    crc = ~crc;
    while (n--)
        crc = crc32c_table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

struct run {
    const char *dir;
    size_t n, size, batch;
    char *content;
    char envelope[ENV_SIZE];
    double *lat; /* per batch, seconds */
    size_t nlat;
    double t0, t1;    /* the commits: first batch started, last one flushed */
    long long d0, d1; /* disk flushes then */
};

/* Setup (preallocation, opening) and cleanup (removal) stay outside the figures. */
static void mark_start(struct run *r)
{
    r->d0 = disk_flushes(r->dir);
    r->t0 = now();
}

static void mark_end(struct run *r)
{
    r->t1 = now();
    r->d1 = disk_flushes(r->dir);
}

/* --- segment: append records, one fdatasync per batch ------------------------------- */

struct rec_head {
    uint32_t magic, crc, len, kind;
    uint64_t id;
};

static void run_segment(struct run *r)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/segment.0", r->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) die("open segment");
    /* preallocate for real (zeros written and flushed), so that a batch's fdatasync
     * writes data only, no block allocation or file size change */
    static char zero[1 << 20];
    unsigned long long need = (unsigned long long)r->n * (r->size + ENV_SIZE + 64) + (1 << 20);
    unsigned long long segsize = need > SEG_SIZE ? need : SEG_SIZE;
    for (unsigned long long o = 0; o < segsize; o += sizeof zero)
        pwrite_all(fd, zero, sizeof zero, (off_t)o);
    if (fsync(fd) != 0) die("fsync segment");
    off_t off = 0;
    size_t reclen = sizeof(struct rec_head) + ENV_SIZE + r->size;
    char *rec = malloc(reclen);
    if (!rec) die("malloc");
    mark_start(r);
    for (size_t i = 0; i < r->n; i += r->batch) {
        double t0 = now();
        size_t end = i + r->batch < r->n ? i + r->batch : r->n;
        for (size_t m = i; m < end; m++) {
            struct rec_head h = {0x4b525331u, 0, (uint32_t)(ENV_SIZE + r->size), 1, m};
            memcpy(rec + sizeof h, r->envelope, ENV_SIZE);
            memcpy(rec + sizeof h + ENV_SIZE, r->content, r->size);
            h.crc = crc32c(0, rec + sizeof h, h.len);
            memcpy(rec, &h, sizeof h);
            pwrite_all(fd, rec, reclen, off);
            off += (off_t)reclen;
        }
        if (fdatasync(fd) != 0) die("fdatasync");
        flush_calls++;
        r->lat[r->nlat++] = now() - t0;
    }
    mark_end(r);
    free(rec);
    close(fd);
    unlink(path);
}

/* --- lmdb: one transaction per batch, MDB_NOSYNC, mdb_env_sync per batch ------------- */

static void lmdb_check(int rc, const char *what)
{
    if (rc) {
        fprintf(stderr, "spoolproto: %s: %s\n", what, mdb_strerror(rc));
        exit(1);
    }
}

static void run_lmdb(struct run *r)
{
    MDB_env *env;
    lmdb_check(mdb_env_create(&env), "mdb_env_create");
    size_t map = (size_t)r->n * (r->size + ENV_SIZE + 512) * 2 + (64u << 20);
    lmdb_check(mdb_env_set_mapsize(env, map), "mdb_env_set_mapsize");
    lmdb_check(mdb_env_open(env, r->dir, MDB_NOSYNC | MDB_NOMETASYNC, 0600), "mdb_env_open");
    MDB_dbi dbi;
    MDB_txn *txn;
    lmdb_check(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin");
    lmdb_check(mdb_dbi_open(txn, NULL, 0, &dbi), "mdb_dbi_open");
    lmdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
    lmdb_check(mdb_env_sync(env, 1), "mdb_env_sync");
    mark_start(r);
    for (size_t i = 0; i < r->n; i += r->batch) {
        double t0 = now();
        size_t end = i + r->batch < r->n ? i + r->batch : r->n;
        lmdb_check(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin");
        for (size_t m = i; m < end; m++) {
            char kb[32];
            int kl = snprintf(kb, sizeof kb, "%016zx.c", m);
            MDB_val k = {(size_t)kl, kb}, v = {r->size, r->content};
            lmdb_check(mdb_put(txn, dbi, &k, &v, 0), "mdb_put");
            kb[kl - 1] = 'e';
            MDB_val ve = {ENV_SIZE, r->envelope};
            lmdb_check(mdb_put(txn, dbi, &k, &ve, 0), "mdb_put");
        }
        lmdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
        lmdb_check(mdb_env_sync(env, 1), "mdb_env_sync");
        flush_calls++;
        r->lat[r->nlat++] = now() - t0;
    }
    mark_end(r);
    mdb_env_close(env);
    char p[4096];
    snprintf(p, sizeof p, "%s/data.mdb", r->dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/lock.mdb", r->dir);
    unlink(p);
}

/* --- files: kurier's spool before issue 16 ----------------------------------------- */

static void run_files(struct run *r)
{
    char inc[4096], q[4096], a[4200], b[4200];
    snprintf(inc, sizeof inc, "%s/incoming", r->dir);
    snprintf(q, sizeof q, "%s/queue", r->dir);
    if (mkdir(inc, 0700) != 0 && errno != EEXIST) die("mkdir incoming");
    if (mkdir(q, 0700) != 0 && errno != EEXIST) die("mkdir queue");
    int qfd = open(q, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int ifd = open(inc, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (qfd < 0 || ifd < 0) die("open dirs");
    mark_start(r);
    for (size_t i = 0; i < r->n; i += r->batch) {
        double t0 = now();
        size_t end = i + r->batch < r->n ? i + r->batch : r->n;
        for (size_t m = i; m < end; m++) {
            static const char *kind[] = {"c", "e"};
            for (int k = 0; k < 2; k++) {
                snprintf(a, sizeof a, "%s/%016zx.%s", inc, m, kind[k]);
                int fd = open(a, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                if (fd < 0) die("open message file");
                if (k == 0)
                    write_all(fd, r->content, r->size);
                else
                    write_all(fd, r->envelope, ENV_SIZE);
                close(fd);
            }
        }
        if (syncfs(ifd) != 0) die("syncfs");
        flush_calls++;
        for (size_t m = i; m < end; m++)
            for (int k = 0; k < 2; k++) {
                snprintf(a, sizeof a, "%s/%016zx.%s", inc, m, k ? "e" : "c");
                snprintf(b, sizeof b, "%s/%016zx.%s", q, m, k ? "e" : "c");
                if (rename(a, b) != 0) die("rename");
            }
        if (fsync(qfd) != 0) die("fsync queue/");
        flush_calls++;
        r->lat[r->nlat++] = now() - t0;
    }
    mark_end(r);
    for (size_t m = 0; m < r->n; m++)
        for (int k = 0; k < 2; k++) {
            snprintf(b, sizeof b, "%s/%016zx.%s", q, m, k ? "e" : "c");
            unlink(b);
        }
    close(qfd);
    close(ifd);
    rmdir(inc);
    rmdir(q);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static double pct(double *v, size_t n, double p)
{
    if (!n) return 0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t k = (size_t)(p * (double)(n - 1) + 0.5);
    return v[k];
}

struct cell {
    double rate, calls, disk, p50, p99;
};

static int cmp_cell(const void *x, const void *y)
{
    return cmp_double(&((const struct cell *)x)->rate, &((const struct cell *)y)->rate);
}

static void parse_list(const char *s, size_t *v, size_t *n, size_t max)
{
    *n = 0;
    while (*s && *n < max) {
        char *e;
        unsigned long x = strtoul(s, &e, 10);
        if (e == s || x == 0) {
            fprintf(stderr, "spoolproto: bad list: %s\n", s);
            exit(2);
        }
        v[(*n)++] = x;
        s = *e == ',' ? e + 1 : e;
        if (*e && *e != ',') {
            fprintf(stderr, "spoolproto: bad list\n");
            exit(2);
        }
    }
}

int main(int argc, char **argv)
{
    const char *base = "/var/tmp";
    size_t n = 2000, reps = 1, sizes[8], batches[8], nsizes, nbatches;
    parse_list("1024,102400", sizes, &nsizes, 8);
    parse_list("1,10,50", batches, &nbatches, 8);
    int o;
    while ((o = getopt(argc, argv, "d:n:s:b:r:")) != -1) {
        switch (o) {
        case 'd':
            base = optarg;
            break;
        case 'n':
            n = strtoul(optarg, NULL, 10);
            break;
        case 's':
            parse_list(optarg, sizes, &nsizes, 8);
            break;
        case 'b':
            parse_list(optarg, batches, &nbatches, 8);
            break;
        case 'r':
            reps = strtoul(optarg, NULL, 10);
            break;
        default:
            fprintf(stderr,
                    "usage: spoolproto [-d DIR] [-n N] [-s SIZES] [-b BATCHES] [-r REPEATS]\n");
            return 2;
        }
    }
    if (n == 0 || reps == 0 || reps > 16) {
        fprintf(stderr, "spoolproto: -n and -r (1..16) must be positive\n");
        return 2;
    }
    crc_init();
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/kurier-spoolproto-XXXXXX", base);
    if (!mkdtemp(dir)) die("mkdtemp");
    static const char *names[] = {"segment", "lmdb", "files"};
    void (*fns[])(struct run *) = {run_segment, run_lmdb, run_files};
    printf("| scheme | size | batch | messages/s | flush calls per message | disk flushes per "
           "message | batch p50 ms | batch p99 ms |\n|---|---|---|---|---|---|---|---|\n");
    for (size_t si = 0; si < nsizes; si++)
        for (size_t bi = 0; bi < nbatches; bi++)
            for (int s = 0; s < 3; s++) {
                struct cell cells[16];
                for (size_t rep = 0; rep < reps; rep++) {
                    struct run r = {.dir = dir, .n = n, .size = sizes[si], .batch = batches[bi]};
                    r.content = malloc(r.size);
                    r.lat = calloc(n / r.batch + 2, sizeof *r.lat);
                    if (!r.content || !r.lat) die("malloc");
                    for (size_t k = 0; k < r.size; k++)
                        r.content[k] = (k % 78 == 77) ? '\n' : (char)('a' + k % 26);
                    memset(r.envelope, 'e', sizeof r.envelope);
                    unsigned long c0 = flush_calls;
                    fns[s](&r);
                    cells[rep].rate = (double)n / (r.t1 - r.t0);
                    cells[rep].calls = (double)(flush_calls - c0) / (double)n;
                    cells[rep].disk =
                        r.d0 >= 0 && r.d1 >= 0 ? (double)(r.d1 - r.d0) / (double)n : -1;
                    cells[rep].p50 = 1000 * pct(r.lat, r.nlat, 0.50);
                    cells[rep].p99 = 1000 * pct(r.lat, r.nlat, 0.99);
                    free(r.content);
                    free(r.lat);
                }
                qsort(cells, reps, sizeof *cells, cmp_cell);
                struct cell *c = &cells[reps / 2];
                char disk[32] = "n/a";
                if (c->disk >= 0) snprintf(disk, sizeof disk, "%.2f", c->disk);
                printf("| %s | %zu B | %zu | %.0f | %.2f | %s | %.2f | %.2f |\n", names[s],
                       sizes[si], batches[bi], c->rate, c->calls, disk, c->p50, c->p99);
                fflush(stdout);
            }
    rmdir(dir);
    return 0;
}
