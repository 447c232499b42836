/* Thread pool for the data-parallel loops of a forward pass.
 *
 * A job is published by writing its descriptor into a small ring and then a
 * 64-bit ticket: job generation in the high half, next task index in the low
 * half. Any thread claims task i of job g by a compare-and-swap of the ticket
 * from (g, i) to (g, i+1), so a worker that wakes late can never claim a task
 * of a job other than the one whose descriptor it read. The caller runs tasks
 * too and then waits only for tasks actually claimed by workers: if the
 * workers are descheduled (a busy machine, more threads than cores) the
 * caller simply does all the work itself instead of waiting for them. */
#include "backend/cpu/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define JOB_RING 4               /* job g lives in slot g % JOB_RING */
#define SPIN_BEFORE_SLEEP 100000 /* idle polls before a worker sleeps */

typedef struct {
    gw_task_fn fn;
    void *arg;
    int64_t n_tasks;
} job;

struct gw_threadpool {
    int n_threads;
    pthread_t *threads;
    job jobs[JOB_RING];
    atomic_uint_fast64_t ticket; /* (generation << 32) | next task index */
    atomic_int_fast64_t done;    /* tasks of the current job finished */
    uint32_t generation;         /* caller-side copy */
    atomic_bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int sleepers;
};

typedef struct { gw_threadpool *p; int index; } worker_arg;

/* Claims and runs tasks of job `gen` until none is left; returns how many
 * this thread ran. */
static int64_t run_tasks(gw_threadpool *p, uint32_t gen, int thread) {
    const job *j = &p->jobs[gen % JOB_RING];
    int64_t ran = 0;
    uint64_t t = atomic_load(&p->ticket);
    for (;;) {
        if ((uint32_t)(t >> 32) != gen) break;
        uint32_t i = (uint32_t)t;
        if ((int64_t)i >= j->n_tasks) break;
        if (!atomic_compare_exchange_weak(&p->ticket, &t, t + 1)) continue; /* t reloaded */
        j->fn(j->arg, i, thread);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        ran++;
        t = atomic_load(&p->ticket);
    }
    return ran;
}

static void *worker_main(void *v) {
    worker_arg *wa = v;
    gw_threadpool *p = wa->p;
    int index = wa->index;
    free(wa);
    uint32_t seen = 0; /* the pool starts at generation 0 with no job */
    while (!atomic_load(&p->stop)) {
        long spins = 0;
        uint32_t g;
        while ((g = (uint32_t)(atomic_load(&p->ticket) >> 32)) == seen && !atomic_load(&p->stop)) {
            if (++spins < SPIN_BEFORE_SLEEP) {
                if ((spins & 255) == 0) sched_yield();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while ((uint32_t)(atomic_load(&p->ticket) >> 32) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        seen = g;
        run_tasks(p, g, index);
    }
    return NULL;
}

gw_threadpool *gw_threadpool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    gw_threadpool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (!p->threads) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) {
            p->n_threads = i;
            break;
        }
        wa->p = p;
        wa->index = i;
        if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n_threads = i; /* run with the threads we got */
            break;
        }
    }
    return p;
}

void gw_threadpool_free(gw_threadpool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int gw_threadpool_size(const gw_threadpool *p) { return p->n_threads; }

void gw_threadpool_run(gw_threadpool *p, gw_task_fn fn, void *arg, int64_t n_tasks) {
    if (n_tasks <= 0) return;
    if (p->n_threads == 1 || n_tasks == 1) {
        for (int64_t t = 0; t < n_tasks; t++) fn(arg, t, 0);
        return;
    }
    uint32_t gen = ++p->generation;
    if (gen == 0) gen = ++p->generation; /* 0 means "no job yet" to workers */
    p->jobs[gen % JOB_RING] = (job){fn, arg, n_tasks};
    atomic_store(&p->done, 0);
    atomic_store(&p->ticket, (uint64_t)gen << 32); /* seq_cst: pairs with the sleepers check */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    run_tasks(p, gen, 0);
    /* Wait for tasks that workers claimed and are still running. */
    for (long spins = 0; atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks; spins++)
        if ((spins & 255) == 255) sched_yield();
}

int gw_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
