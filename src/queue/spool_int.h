/* spool_int.h: private to the spool (spool.c, spool_index.c, spool_legacy.c): the
 * segments, the in-memory index of queued messages and what each file lends the
 * others. Not for other modules: their contract is queue.h. Locking as noted at each
 * function: s->mu guards the index, the segment list and appends. */
#ifndef KURIER_SPOOL_INT_H
#define KURIER_SPOOL_INT_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

#include "queue/queue.h"
#include "queue/segment.h"

struct commit;
struct batch;

/* One segment file, queue/NNNNNNNNNN.seg. */
struct seg {
    unsigned long no;
    int fd;
    off_t end;         /* where the next record goes; for a found segment where reading stopped */
    off_t cap;         /* bytes allocated (0: grows, the CLI's segments) */
    size_t live;       /* references from the index: contents and latest envelopes */
    size_t live_bytes; /* their payload bytes */
    int pins;          /* records written and not yet in the index (a batch, an update) */
    int closed;        /* takes no more records (full, failed, or found at the start) */
    int failed;        /* a write or flush failed: nothing unconfirmed in it is durable */
    struct seg *next;
};

/* The index: one entry per queued message. */
struct ent {
    char id[QUEUE_ID_LEN + 1];
    struct seg *cseg, *eseg; /* its content, its latest envelope */
    off_t coff, eoff;        /* where their payloads start */
    size_t clen, elen;
    struct ent *next; /* hash chain */
};

struct spool {
    char *dir;
    char *queue, *maildrop;
    int writer;        /* appends records: spool_open(), or spool_lock() for the CLI */
    int prealloc;      /* new segments are preallocated (the daemon) */
    int indexed;       /* the segments were read */
    off_t seg_size;    /* SEG_SIZE, or KURIER_TEST_SEGMENT_SIZE */
    int reclaim_delay; /* KURIER_TEST_DELAY "reclaim=MS" (tests only) */
    int lockfd;
    pthread_mutex_t mu;         /* the index, the segment list, appends */
    pthread_mutex_t sync_mu;    /* one flush at a time (see seg_sync) */
    pthread_mutex_t reclaim_mu; /* one reclamation at a time, oldest segment first */
    struct seg *segs, *cur;     /* ascending; cur takes the appends (NULL: make one) */
    unsigned long last_no;
    /* the next segment, made ahead by a worker (spool.c "made ahead"): not in segs
     * until cur is full; its number is after every segment's */
    struct seg *spare;
    int spare_making;          /* a worker is making it now (appends needing it wait) */
    int spare_failed;          /* it could not be made: not again before cur is full */
    pthread_cond_t spare_cv;   /* spare_making ended */
    struct work_job *tend_job; /* reclaim and make ahead (spool.c); loop thread only */
    struct ent **tab;
    size_t tabsize, nent;
    /* group commit, touched on the loop thread only */
    struct commit *pending, **pending_tail;
    struct batch *inflight;
};

/* spool_index.c, the ground floor: the index and the recovery scan (s->mu held
 * unless noted), the segment files' names and reads */
struct ent *ent_find(struct spool *s, const char *id); /* NULL: not queued */
struct ent *ent_add(struct spool *s, const char *id);
void ent_set_content(struct ent *e, struct seg *g, off_t off, size_t len);
void ent_set_env(struct ent *e, struct seg *g, off_t off, size_t len);
void ent_drop(struct spool *s, struct ent *e);           /* frees e */
void index_clear(struct spool *s);                       /* the index and every segment */
int index_load(struct spool *s);                         /* read queue/'s segments: 0, -1 (errno) */
int need_index(struct spool *s);                         /* index_load once (takes s->mu): 0, -1 */
char *seg_path(const struct spool *s, unsigned long no); /* a new string */
int pread_all(int fd, void *p, size_t len, off_t off);   /* 0, -1 (errno; EIO: short) */

/* spool.c, above it: appending and flushing records; for spool_legacy.c on top */
/* Append one record (s->mu held); see spool.c. 0, -1 (logged, errno set). */
int seg_append(struct spool *s, enum seg_type t, const char *id, const void *p, size_t len,
               int srcfd, off_t srcoff, struct seg **gp, off_t *offp);
/* fdatasync g (no lock held). 0, -1 (logged, errno set). */
int seg_sync(struct spool *s, struct seg *g);
/* The latest envelope text of id (s->mu held): a new string, NULL (errno). */
char *env_text(struct spool *s, const char *id, size_t *len);
/* Parse id's envelope text: a new envelope, NULL with err set (errno EBADMSG). */
struct spool_env *env_parse(const char *text, size_t len, const char *id, const char *where,
                            char *err, size_t errsize);
/* cb for each of ids[0..n) sorted, freeing them and ids. */
void call_sorted(char **ids, size_t n, void (*cb)(void *arg, const char *id), void *arg);

/* spool_legacy.c, on top: spool_import_legacy(), corrupt/ (queue.h) */

#endif
