/* A fixed pool of worker threads for data-parallel loops inside one forward
 * pass. A forward pass dispatches a few hundred short jobs per token, so the
 * workers spin (then yield) on an atomic generation counter rather than
 * sleeping on a condition variable, which would cost tens of microseconds per
 * wake-up. Workers go to sleep on a condvar after an idle period so an idle
 * engine does not burn CPU. */
#ifndef GODWIT_THREADPOOL_H
#define GODWIT_THREADPOOL_H
#include <stdint.h>

typedef struct gw_threadpool gw_threadpool;

/* fn(arg, task, thread) is called once for every task in [0, n_tasks); tasks
 * are handed out dynamically, `thread` is in [0, n_threads) (for per-thread
 * scratch). */
typedef void (*gw_task_fn)(void *arg, int64_t task, int thread);

gw_threadpool *gw_threadpool_new(int n_threads); /* n_threads includes the caller */
void gw_threadpool_free(gw_threadpool *p);
int gw_threadpool_size(const gw_threadpool *p);
/* Runs all tasks and returns when every one has finished. */
void gw_threadpool_run(gw_threadpool *p, gw_task_fn fn, void *arg, int64_t n_tasks);
/* Number of hardware threads usable by this process. */
int gw_cpu_count(void);
#endif
