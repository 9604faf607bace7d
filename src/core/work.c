/* work.c: worker threads for blocking work; completions are handed back to the
 * event loop through one libevent event made active from the worker. */
#include "core/compat.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/work.h"

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_CANCELLED, JOB_CANCEL_FINISHED };

struct work_job {
    void (*run)(void *);
    void (*done)(void *);
    void *arg;
    enum job_state state;
    struct work_job *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond_job = PTHREAD_COND_INITIALIZER;
static pthread_cond_t cond_ran = PTHREAD_COND_INITIALIZER;
static struct work_job *queue_head, *queue_tail; /* waiting to run */
static struct work_job *done_head, *done_tail;   /* ran, done() pending */
static pthread_t *threads;
static int nthreads;
static int stopping;
static int nidle; /* workers waiting for a job */
static struct event *ev_done;

static void *worker_main(void *unused)
{
    pthread_mutex_lock(&lock);
    for (;;) {
        while (!queue_head && !stopping) {
            nidle++;
            pthread_cond_wait(&cond_job, &lock);
            nidle--;
        }
        if (!queue_head) break;
        struct work_job *j = queue_head;
        queue_head = j->next;
        if (!queue_head) queue_tail = NULL;
        j->next = NULL;
        j->state = JOB_RUNNING;
        pthread_mutex_unlock(&lock);
        j->run(j->arg);
        pthread_mutex_lock(&lock);
        int wake = 0;
        if (j->state == JOB_CANCELLED) {
            j->state = JOB_CANCEL_FINISHED; /* the canceller frees it */
        } else {
            j->state = JOB_DONE;
            /* a list that was not empty has its wake-up coming: on_done runs until the
             * list is empty, under the lock */
            wake = !done_head;
            if (done_tail)
                done_tail->next = j;
            else
                done_head = j;
            done_tail = j;
        }
        pthread_cond_broadcast(&cond_ran);
        if (wake) { /* outside the lock: the loop thread wakes to take it */
            pthread_mutex_unlock(&lock);
            event_active(ev_done, EV_READ, 0);
            pthread_mutex_lock(&lock);
        }
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void on_done(evutil_socket_t fd, short what, void *unused)
{
    for (;;) {
        pthread_mutex_lock(&lock);
        struct work_job *j = done_head;
        if (j) {
            done_head = j->next;
            if (!done_head) done_tail = NULL;
        }
        pthread_mutex_unlock(&lock);
        if (!j) break;
        if (j->done) j->done(j->arg);
        free(j);
    }
}

int work_init(struct event_base *base, int n)
{
    ev_done = event_new(base, -1, 0, on_done, NULL);
    if (!ev_done) return -1;
    threads = xcalloc((size_t)n, sizeof *threads);
    stopping = 0;
    for (int i = 0; i < n; i++) {
        if (pthread_create(&threads[i], NULL, worker_main, NULL) != 0) {
            log_err("kurier", "cannot start worker thread %d", i);
            return -1;
        }
        nthreads++;
    }
    return 0;
}

void work_shutdown(void)
{
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_broadcast(&cond_job);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    threads = NULL;
    nthreads = 0;
    on_done(-1, 0, NULL);
    if (ev_done) event_free(ev_done);
    ev_done = NULL;
}

struct work_job *work_submit(void (*run)(void *), void (*done)(void *), void *arg)
{
    struct work_job *j = xcalloc(1, sizeof *j);
    j->run = run;
    j->done = done;
    j->arg = arg;
    j->state = JOB_QUEUED;
    pthread_mutex_lock(&lock);
    if (queue_tail)
        queue_tail->next = j;
    else
        queue_head = j;
    queue_tail = j;
    int idle = nidle;
    pthread_mutex_unlock(&lock);
    /* after the unlock, so the woken worker does not wait for it; none idle: a busy
     * one takes the job when it is done with its own */
    if (idle) pthread_cond_signal(&cond_job);
    return j;
}

static int unlink_job(struct work_job **head, struct work_job **tail, struct work_job *j)
{
    struct work_job *prev = NULL;
    for (struct work_job *p = *head; p; prev = p, p = p->next) {
        if (p != j) continue;
        if (prev)
            prev->next = p->next;
        else
            *head = p->next;
        if (*tail == p) *tail = prev;
        return 1;
    }
    return 0;
}

void work_cancel(struct work_job *j)
{
    if (!j) return;
    pthread_mutex_lock(&lock);
    if (j->state == JOB_QUEUED && unlink_job(&queue_head, &queue_tail, j)) {
        free(j);
    } else if (j->state == JOB_RUNNING) {
        /* run() is on a worker now: wait until it returned, then free the job */
        j->state = JOB_CANCELLED;
        while (j->state == JOB_CANCELLED)
            pthread_cond_wait(&cond_ran, &lock);
        free(j);
    } else if (j->state == JOB_DONE && unlink_job(&done_head, &done_tail, j)) {
        free(j);
    }
    pthread_mutex_unlock(&lock);
}
