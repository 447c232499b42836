/* Continuous-batching scheduler: one engine thread owns a gw_context and
 * runs steps; any thread submits generation requests and reads their output
 * from a channel.
 *
 * A step (iteration-level scheduling, as in Orca / vLLM):
 *   1. cancelled requests are dropped and their KV freed;
 *   2. every running sequence with one pending token (a decode) gets it in
 *      the batch, oldest first;
 *   3. the rest of the token budget goes to prompt chunks: running requests
 *      whose prompt is partly computed first, then waiting requests in
 *      arrival order (FCFS), admitted while fewer than max_running run
 *      ("stall-free" chunked prefill: a long prompt never holds decodes up
 *      for more than one budget's worth of work);
 *   4. one gw_forward over the mixed flat batch;
 *   5. a token is sampled for every sequence whose last pending token was in
 *      the batch; text goes through the request's stop-string filter and out
 *      to its channel.
 * KV room is checked while the batch is planned. A running sequence that
 * needs a block when none is free makes the newest running sequence be
 * preempted: its KV is freed and it goes back to the front of the waiting
 * queue with prompt + generated tokens, to be recomputed (text already sent
 * is not sent again). A waiting request is admitted only when its whole
 * remaining prompt fits in the free blocks, so admissions do not cause
 * preemptions by themselves.
 *
 * Prefix cache (on by default, gw_sched_params.prefix_cache): a request's KV
 * state is only (seq, n_computed). At admission the sequence opens on the
 * longest cached prefix of its tokens (whole KV blocks, never the last
 * token) and n_computed starts past it; the room check counts the blocks it
 * still needs plus the idle cached blocks it takes out of the free count.
 * A running request offers its blocks to the cache as they fill (so that a
 * request admitted while it runs can already use them), and when it
 * finishes or is preempted (so that its recompute starts on them while they
 * last). Blocks only the cache holds count as free and are reclaimed, least
 * recently used first, by the forward pass that needs them.
 * Prefix-aware admission (after BatchLLM's grouping of requests that share
 * a prefix): a waiting request whose prompt shares full blocks, not cached
 * yet, with a running request that is still computing them waits for them
 * instead of computing them a second time in parallel; requests behind it
 * in the queue may go first meanwhile. The wait ends when that running
 * request has computed the shared blocks (it has the step's budget before
 * any admission), finishes or is preempted, so it is bounded by one prefill.
 *
 * Threads: the engine thread is the only one that touches the context and
 * the requests' engine state; the waiting/incoming lists and the stats are
 * behind one mutex; each channel has its own mutex and condition variable. */
#ifndef GODWIT_SERVER_SCHEDULER_H
#define GODWIT_SERVER_SCHEDULER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "godwit.h"
#include "server/metrics.h"

#define GW_MAX_TOP_LOGPROBS 20
#define GW_MAX_STOPS 16

typedef struct gw_sched gw_sched;
typedef struct gw_channel gw_channel;

typedef struct {
    int n_ctx;          /* KV tokens in the pool, shared by all sequences */
    int batch_tokens;   /* token budget of one step (the context's n_batch) */
    int max_running;    /* most sequences with KV at once (<= 256) */
    int max_waiting;    /* submissions beyond this many waiting are refused; 0: no limit */
    int n_threads;      /* 0: all cores */
    int kv_block_size;  /* tokens per KV block; 0: the library's default (16, 32 quantized) */
    int kv_type;        /* GW_KV_F16, GW_KV_INT8 or GW_KV_INT4 (godwit.h) */
    int device;         /* GW_DEVICE_CPU or GW_DEVICE_CUDA (godwit.h) */
    bool prefix_cache;  /* reuse the KV of common prefixes (default on) */
    gw_metrics *metrics; /* may be NULL; not owned */
} gw_sched_params;

gw_sched_params gw_sched_default_params(void);

/* Creates the context and starts the engine thread. The model must outlive
 * the scheduler. NULL with a message in err on failure. */
gw_sched *gw_sched_new(gw_model *m, const gw_sched_params *p, char *err, size_t errlen);
/* Aborts whatever is still queued or running (finish reason ABORT), stops
 * the engine thread and frees everything but the channels still held. */
void gw_sched_free(gw_sched *s);
/* Longest sequence (prompt + generated) one request may have: the KV pool
 * size or the model's trained context, whichever is smaller. */
int gw_sched_max_len(const gw_sched *s);
gw_model *gw_sched_model(const gw_sched *s);

/* What one request (one choice of an API call) generates. */
typedef struct {
    const int32_t *prompt;
    int n_prompt;              /* 1 .. max_len - 1 */
    gw_sampler_params sp;
    int max_tokens;            /* >= 1; also capped by max_len */
    const char *const *stops;  /* up to GW_MAX_STOPS */
    int n_stops;
    int logprobs;              /* -1: none; else the sampled token's logprob plus this many top ones */
    bool ignore_eos;           /* keep going past end-of-generation tokens */
    int index;                 /* choice index reported in the events */
    gw_kv_select kv_select;    /* compress the prompt's KV after prefill (SnapKV, H2O); zero: none */
} gw_gen_params;

typedef enum {
    GW_SUBMIT_OK = 0,
    GW_SUBMIT_INVALID,     /* bad parameters (empty or too long prompt, ...) */
    GW_SUBMIT_OVERLOADED,  /* max_waiting reached */
    GW_SUBMIT_SHUTDOWN,    /* draining or stopped */
    GW_SUBMIT_NOMEM
} gw_submit_status;

/* Queues count requests that report to ch (all or none). */
gw_submit_status gw_sched_submit(gw_sched *s, gw_channel *ch, const gw_gen_params *p, int count, char *err,
                                 size_t errlen);

/* Stops taking submissions (they get GW_SUBMIT_SHUTDOWN); requests already
 * queued run on. */
void gw_sched_close(gw_sched *s);
/* Ends every queued and running request now (finish reason ABORT). */
void gw_sched_abort_all(gw_sched *s);

typedef struct {
    int running, waiting;
    int kv_total_tokens, kv_free_tokens; /* free includes kv_idle_tokens */
    int kv_cached_tokens, kv_idle_tokens; /* in prefix-cache blocks; idle: used by no request */
    uint64_t steps, preemptions;
    uint64_t batch_tokens_total;          /* tokens computed (prompt chunks + decodes) */
    uint64_t prefix_queries, prefix_hits; /* tokens of admitted requests; of those, from the cache */
    uint64_t prefix_evicted_blocks;
} gw_sched_stats;
/* A snapshot, updated by the engine thread after every step. */
void gw_sched_get_stats(gw_sched *s, gw_sched_stats *st);

/* ---- output channel ---- */

typedef enum { GW_EV_TEXT, GW_EV_FINISH } gw_event_type;
typedef enum {
    GW_FINISH_STOP,      /* end-of-generation token or stop string */
    GW_FINISH_LENGTH,    /* max_tokens or the context limit */
    GW_FINISH_ABORT,     /* cancelled, or the server shut down */
    GW_FINISH_ERROR      /* the engine failed (message in error) */
} gw_finish_reason;

typedef struct {
    int32_t id;
    float logprob;
    int n_top;
    int32_t top_id[GW_MAX_TOP_LOGPROBS];
    float top_logprob[GW_MAX_TOP_LOGPROBS];
} gw_token_logprob;

typedef struct gw_event {
    gw_event_type type;
    int index;                  /* the request's gw_gen_params.index */
    /* TEXT: newly released text (may be empty when only logprobs come) and
     * the tokens generated since the previous event, with their logprobs
     * when asked for (n_lp == 0 otherwise). */
    char *text;
    size_t len;
    gw_token_logprob *lp;
    int n_lp;
    /* FINISH */
    gw_finish_reason finish;
    int prompt_tokens, completion_tokens;
    char error[160];
    struct gw_event *next;
} gw_event;

gw_channel *gw_channel_new(void);
/* Drops the caller's reference (the engine holds one per unfinished request). */
void gw_channel_release(gw_channel *ch);
/* Asks the engine to drop every request of this channel (client gone). */
void gw_channel_cancel(gw_channel *ch);
bool gw_channel_cancelled(const gw_channel *ch);
/* Next event, waiting at most timeout_s seconds (NULL on timeout). */
gw_event *gw_channel_next(gw_channel *ch, double timeout_s);
void gw_event_free(gw_event *e);
#endif
