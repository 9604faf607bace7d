/* queue_id.c: queue IDs (queue.h): new ones, sortable by arrival, and the check of
 * their form. Calls nothing of the spool: the segment and envelope readers check IDs
 * with it. */
#include "core/compat.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/core.h"
#include "queue/queue.h"

/* Crockford's base32: digits and uppercase without I, L, O, U. Sorted by ASCII. */
static const char id_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t id_last_us;
static unsigned id_counter;

/* 70 bits: 52 bits of microseconds since the epoch (good until 2112), 10 bits of a
 * per-process counter, 8 bits of the pid so the daemon and sendmail never collide. */
void spool_new_id(char id[QUEUE_ID_LEN + 1])
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    pthread_mutex_lock(&id_lock);
    if (us <= id_last_us) {
        us = id_last_us;
        if (++id_counter >= 1024) { /* counter exhausted: borrow the next microsecond */
            us++;
            id_counter = 0;
        }
    } else {
        id_counter = 0;
    }
    id_last_us = us;
    unsigned ctr = id_counter;
    pthread_mutex_unlock(&id_lock);

    uint64_t hi = us & ((UINT64_C(1) << 52) - 1);                     /* top 52 bits */
    uint64_t lo = ((uint64_t)ctr << 8) | ((uint64_t)getpid() & 0xff); /* low 18 bits */
    /* 70 bits = hi(52) . lo(18); emit 14 groups of 5 bits, most significant first */
    for (int i = QUEUE_ID_LEN - 1; i >= 0; i--) {
        id[i] = id_alphabet[lo & 31];
        lo = (lo >> 5) | ((hi & 31) << 13);
        hi >>= 5;
    }
    id[QUEUE_ID_LEN] = '\0';
}

int spool_id_valid(const char *id)
{
    if (!id || strlen(id) != QUEUE_ID_LEN) return 0;
    for (int i = 0; i < QUEUE_ID_LEN; i++)
        if (!strchr(id_alphabet, id[i]) || id[i] == '\0') return 0;
    return 1;
}
