/* test_work.c: the worker pool (core/work.h): every job's run and done run exactly
 * once, done on the loop thread, however the jobs pile up (more jobs than workers,
 * jobs submitted from done callbacks); a cancelled job's done never runs, whether it
 * was queued, running or already done. Sized by count; no timing is asserted (the
 * 30 s timer is a safety net against a hang). */
#include "core/compat.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/core.h"
#include "core/work.h"

#define NJOBS 2000

static pthread_t loop_thread;
static int runs[NJOBS], dones[NJOBS], wrong_thread;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int ndone, nresubmit;
static struct event_base *base;

static void job_run(void *arg)
{
    int i = (int)(intptr_t)arg;
    pthread_mutex_lock(&mu);
    runs[i]++;
    pthread_mutex_unlock(&mu);
    if (i % 97 == 0) usleep(200); /* a slow one now and then: the others overtake it */
}

static void job_done(void *arg);

static void job_done(void *arg)
{
    int i = (int)(intptr_t)arg;
    if (!pthread_equal(pthread_self(), loop_thread)) wrong_thread++;
    dones[i]++;
    ndone++;
    /* half of the jobs come from done callbacks (the scheduler's phases do that) */
    if (i < NJOBS / 2) {
        int k = i + NJOBS / 2;
        nresubmit++;
        work_submit(job_run, job_done, (void *)(intptr_t)k);
    }
    if (ndone == NJOBS) event_base_loopbreak(base);
}

static void safety_cb(evutil_socket_t fd, short what, void *arg);

/* The loop runs until a callback breaks it, or the safety timer (a loop with no
 * event added would return at once: activations alone do not keep it). */
static void run_loop(void)
{
    struct event *safety = evtimer_new(base, safety_cb, NULL);
    evtimer_add(safety, &(struct timeval){.tv_sec = 30});
    event_base_dispatch(base);
    event_free(safety);
}

static void test_every_job_once(void)
{
    for (int i = 0; i < NJOBS / 2; i++)
        work_submit(job_run, job_done, (void *)(intptr_t)i);
    run_loop();
    int bad_runs = 0, bad_dones = 0;
    for (int i = 0; i < NJOBS; i++) {
        bad_runs += runs[i] != 1;
        bad_dones += dones[i] != 1;
    }
    CHECK(ndone == NJOBS, "%d of %d done callbacks ran", ndone, NJOBS);
    CHECK(bad_runs == 0, "%d jobs did not run exactly once", bad_runs);
    CHECK(bad_dones == 0, "%d jobs did not call done exactly once", bad_dones);
    CHECK(wrong_thread == 0, "%d done callbacks off the loop thread", wrong_thread);
    CHECK(nresubmit == NJOBS / 2, "%d jobs submitted from done callbacks", nresubmit);
}

static int cancelled_done;
static volatile int blocker_started, blocker_go;

static void cancel_done(void *arg)
{
    cancelled_done++;
}

static void blocker_run(void *arg)
{
    blocker_started = 1;
    while (!blocker_go)
        usleep(1000);
}

static void quick_run(void *arg) {}

static int marker_done;

static void marker_cb(void *arg)
{
    marker_done = 1;
    event_base_loopbreak(base);
}

static void safety_cb(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(base); /* a done that never comes fails the checks below */
}

static volatile int slow_started;

static void slow_run(void *arg)
{
    slow_started = 1;
    usleep(50000);
}

static void test_cancel(void)
{
    /* queued: every worker blocked, the job waits, then is cancelled */
    struct work_job *block[4];
    for (int i = 0; i < 4; i++)
        block[i] = work_submit(blocker_run, NULL, NULL);
    while (!blocker_started)
        usleep(1000);
    struct work_job *queued = work_submit(quick_run, cancel_done, NULL);
    work_cancel(queued);
    /* done but not yet reported: it ran, its done is pending on the loop */
    blocker_go = 1;
    struct work_job *ran = work_submit(quick_run, cancel_done, NULL);
    for (int i = 0; i < 200; i++)
        usleep(1000); /* it runs meanwhile (the loop is not dispatching) */
    work_cancel(ran);
    (void)block;
    /* running: the cancel waits for run to return; done never runs */
    struct work_job *running = work_submit(slow_run, cancel_done, NULL);
    while (!slow_started)
        usleep(1000);
    work_cancel(running);
    /* a marker job after them: once its done ran, any done of the cancelled would
     * have run too */
    work_submit(quick_run, marker_cb, NULL);
    run_loop();
    CHECK(marker_done, "the marker job's done ran");
    CHECK(cancelled_done == 0, "%d cancelled done callbacks ran", cancelled_done);
}

int main(void)
{
    evthread_use_pthreads(); /* the workers wake the loop from their threads */
    base = event_base_new();
    loop_thread = pthread_self();
    if (!base || work_init(base, 4) != 0) {
        printf("cannot start the pool\n");
        return 1;
    }
    test_every_job_once();
    test_cancel();
    work_shutdown();
    event_base_free(base);
    return check_summary();
}
