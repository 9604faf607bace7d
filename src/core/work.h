/* work.h: a small pool of worker threads for blocking work (fsync, maildir
 * delivery, directory lookups) so the event loop never blocks (DESIGN.md).
 * Jobs run on a worker; their done callback runs on the event-loop thread. */
#ifndef KURIER_WORK_H
#define KURIER_WORK_H

struct event_base;
struct work_job;

/* Start nthreads workers whose completions are delivered on base. 0 done, -1 failed.
 * base must be made after evthread_use_pthreads(): a worker wakes the loop from its
 * own thread, which libevent only notices with threading on (without it a loop that
 * is already waiting may never see the completion). */
int work_init(struct event_base *base, int nthreads);
/* Stop the workers after the queued jobs ran; completions still pending are run. */
void work_shutdown(void);

/* Queue run(arg) on a worker; when it returned, done(arg) runs on the loop thread.
 * Returns a handle valid until done() runs or work_cancel() returned. */
struct work_job *work_submit(void (*run)(void *arg), void (*done)(void *arg), void *arg);
/* Cancel: done() will not run. If run() has not started it never will; if it is
 * running it finishes (arg must stay valid until then: work_cancel waits for it). */
void work_cancel(struct work_job *job);

#endif
