/* Continuous batching: see scheduler.h for the step and the preemption
 * rule. Everything below the "engine" heading runs on the engine thread
 * only. */
#include "server/scheduler.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/text_stream.h"
#include "tokenizer/tokenizer.h"

#define MAX_RUNNING_LIMIT 256 /* the context's sequence slots */

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ----------------------------------------------------------------- channel */

struct gw_channel {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gw_event *head, *tail;
    atomic_int refs;
    atomic_bool cancelled;
};

gw_channel *gw_channel_new(void) {
    gw_channel *ch = calloc(1, sizeof *ch);
    if (!ch) return NULL;
    pthread_mutex_init(&ch->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ch->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&ch->refs, 1);
    atomic_init(&ch->cancelled, false);
    return ch;
}

void gw_event_free(gw_event *e) {
    if (!e) return;
    free(e->text);
    free(e->lp);
    free(e);
}

void gw_channel_release(gw_channel *ch) {
    if (!ch || atomic_fetch_sub(&ch->refs, 1) != 1) return;
    for (gw_event *e = ch->head, *n; e; e = n) {
        n = e->next;
        gw_event_free(e);
    }
    pthread_mutex_destroy(&ch->mu);
    pthread_cond_destroy(&ch->cv);
    free(ch);
}

void gw_channel_cancel(gw_channel *ch) { atomic_store(&ch->cancelled, true); }
bool gw_channel_cancelled(const gw_channel *ch) { return atomic_load(&ch->cancelled); }

static void channel_post(gw_channel *ch, gw_event *e) {
    e->next = NULL;
    pthread_mutex_lock(&ch->mu);
    if (ch->tail) ch->tail->next = e;
    else ch->head = e;
    ch->tail = e;
    pthread_cond_signal(&ch->cv);
    pthread_mutex_unlock(&ch->mu);
}

gw_event *gw_channel_next(gw_channel *ch, double timeout_s) {
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    double whole = floor(timeout_s);
    dl.tv_sec += (time_t)whole;
    dl.tv_nsec += (long)((timeout_s - whole) * 1e9);
    if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&ch->mu);
    while (!ch->head) {
        if (pthread_cond_timedwait(&ch->cv, &ch->mu, &dl) == ETIMEDOUT && !ch->head) {
            pthread_mutex_unlock(&ch->mu);
            return NULL;
        }
    }
    gw_event *e = ch->head;
    ch->head = e->next;
    if (!ch->head) ch->tail = NULL;
    pthread_mutex_unlock(&ch->mu);
    e->next = NULL;
    return e;
}

/* ----------------------------------------------------------------- request */

typedef struct request {
    struct request *prev, *next; /* in incoming, waiting or running */
    gw_channel *ch;
    int index;
    int32_t *tokens;   /* prompt, then generated tokens */
    int n_tokens, cap_tokens;
    int n_prompt, n_generated, max_tokens, logprobs;
    bool ignore_eos;
    gw_sampler *smp;
    gw_text_stream ts;
    int seq;           /* -1: no KV (waiting) */
    int n_computed;    /* tokens computed: the next one's position */
    int n_dropped;     /* of those, dropped by KV compression: gw_seq_len = n_computed - n_dropped */
    gw_kv_select select; /* prompt compression policy (none by default) */
    bool compressed;   /* the policy ran on this sequence */
    int n_offered;     /* full blocks offered to the prefix cache so far */
    gw_token_logprob *lp; /* logprobs of tokens not yet sent */
    int n_lp, cap_lp;
    double t_arrival, t_scheduled, t_first_token, t_last_token; /* < 0: not yet */
    uint64_t preempted_in_step; /* step number + 1 of its last preemption, 0: never */
} request;

typedef struct {
    request *head, *tail;
    int n;
} rlist;

static void list_push_back(rlist *l, request *r) {
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail) l->tail->next = r;
    else l->head = r;
    l->tail = r;
    l->n++;
}

static void list_push_front(rlist *l, request *r) {
    r->prev = NULL;
    r->next = l->head;
    if (l->head) l->head->prev = r;
    else l->tail = r;
    l->head = r;
    l->n++;
}

static void list_remove(rlist *l, request *r) {
    if (r->prev) r->prev->next = r->next;
    else l->head = r->next;
    if (r->next) r->next->prev = r->prev;
    else l->tail = r->prev;
    r->prev = r->next = NULL;
    l->n--;
}

/* Appends the list b to a and empties b. */
static void list_splice(rlist *a, rlist *b) {
    if (!b->head) return;
    if (a->tail) {
        a->tail->next = b->head;
        b->head->prev = a->tail;
    } else
        a->head = b->head;
    a->tail = b->tail;
    a->n += b->n;
    b->head = b->tail = NULL;
    b->n = 0;
}

static void request_free(request *r) {
    if (!r) return;
    free(r->tokens);
    gw_sampler_free(r->smp);
    gw_text_stream_free(&r->ts);
    free(r->lp);
    free(r);
}

/* ----------------------------------------------------------------- sched */

struct gw_sched {
    gw_model *model;
    const gw_tokenizer *tok;
    gw_context *ctx;
    gw_metrics *metrics;
    int n_vocab, max_len, batch_tokens, max_running, max_waiting, block_size, kv_total, kv_type, device;
    bool prefix_cache;
    pthread_t thread;
    bool thread_started;

    /* shared with other threads, under mu */
    pthread_mutex_t mu;
    pthread_cond_t work_cv;  /* engine: something to do */
    pthread_cond_t done_cv;  /* callers of abort_all: it was done */
    rlist incoming;
    bool closed, stop;
    uint64_t abort_requested, abort_done;
    gw_sched_stats stats;

    /* engine thread only */
    rlist waiting, running;
    int32_t *b_tok, *b_seq, *b_pos;
    int8_t *b_want;
    float *logits;     /* max_running x n_vocab */
    float *lp_scratch; /* n_vocab */
    struct plan { request *r; int n; } *plan; /* 2 x max_running: see plan_step */
    int n_plan;
    uint64_t step_no;
    uint64_t prefix_queries, prefix_hits; /* tokens; copied into stats */
};

gw_sched_params gw_sched_default_params(void) {
    gw_sched_params p = {.n_ctx = 8192, .batch_tokens = 512, .max_running = 32, .max_waiting = 0,
                         .n_threads = 0, .kv_block_size = 0, .prefix_cache = true, .metrics = NULL};
    return p;
}

int gw_sched_max_len(const gw_sched *s) { return s->max_len; }
gw_model *gw_sched_model(const gw_sched *s) { return s->model; }

static void *engine_main(void *arg);

gw_sched *gw_sched_new(gw_model *m, const gw_sched_params *p, char *err, size_t errlen) {
    gw_sched_params dp = gw_sched_default_params();
    if (!p) p = &dp;
    if (p->n_ctx <= 0 || p->batch_tokens <= 0 || p->max_running <= 0 || p->max_running > MAX_RUNNING_LIMIT ||
        p->max_waiting < 0) {
        snprintf(err, errlen, "scheduler: n_ctx and batch_tokens must be positive, max_running in 1..%d",
                 MAX_RUNNING_LIMIT);
        return NULL;
    }
    gw_sched *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->model = m;
    s->tok = gw_model_tokenizer(m);
    s->metrics = p->metrics;
    s->n_vocab = gw_model_n_vocab(m);
    s->batch_tokens = p->batch_tokens;
    s->max_running = p->max_running;
    s->max_waiting = p->max_waiting;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    pthread_cond_init(&s->done_cv, NULL);
    gw_context_params cp = {.n_ctx = p->n_ctx, .n_batch = p->batch_tokens, .n_threads = p->n_threads,
                            .kv_block_size = p->kv_block_size, .device = p->device,
                            .kv_type = p->kv_type};
    s->ctx = gw_context_new(m, &cp, err, errlen);
    if (!s->ctx) {
        gw_sched_free(s);
        return NULL;
    }
    s->prefix_cache = p->prefix_cache;
    if (s->prefix_cache && gw_context_set_prefix_cache(s->ctx, true) != 0) goto oom;
    s->block_size = gw_context_kv_block_size(s->ctx);
    s->kv_type = p->kv_type;
    s->device = p->device;
    s->kv_total = gw_context_kv_free_tokens(s->ctx);
    s->max_len = p->n_ctx;
    int train = gw_model_n_ctx_train(m);
    if (train > 0 && train < s->max_len) s->max_len = train;
    size_t B = (size_t)p->batch_tokens;
    s->b_tok = malloc(B * sizeof(int32_t));
    s->b_seq = malloc(B * sizeof(int32_t));
    s->b_pos = malloc(B * sizeof(int32_t));
    s->b_want = malloc(B);
    s->logits = malloc((size_t)p->max_running * s->n_vocab * sizeof(float));
    s->lp_scratch = malloc((size_t)s->n_vocab * sizeof(float));
    s->plan = malloc(2 * (size_t)p->max_running * sizeof *s->plan);
    if (!s->b_tok || !s->b_seq || !s->b_pos || !s->b_want || !s->logits || !s->lp_scratch || !s->plan) goto oom;
    s->stats.kv_total_tokens = s->stats.kv_free_tokens = s->kv_total;
    if (pthread_create(&s->thread, NULL, engine_main, s) != 0) {
        snprintf(err, errlen, "scheduler: cannot start the engine thread");
        gw_sched_free(s);
        return NULL;
    }
    s->thread_started = true;
    return s;
oom:
    snprintf(err, errlen, "scheduler: out of memory");
    gw_sched_free(s);
    return NULL;
}

void gw_sched_free(gw_sched *s) {
    if (!s) return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        s->closed = true;
        pthread_cond_signal(&s->work_cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL); /* the engine aborts what is left */
    }
    gw_context_free(s->ctx);
    free(s->b_tok);
    free(s->b_seq);
    free(s->b_pos);
    free(s->b_want);
    free(s->logits);
    free(s->lp_scratch);
    free(s->plan);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->done_cv);
    free(s);
}

void gw_sched_close(gw_sched *s) {
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    pthread_mutex_unlock(&s->mu);
}

void gw_sched_abort_all(gw_sched *s) {
    pthread_mutex_lock(&s->mu);
    uint64_t ticket = ++s->abort_requested;
    pthread_cond_signal(&s->work_cv);
    while (s->abort_done < ticket && !s->stop) pthread_cond_wait(&s->done_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

void gw_sched_get_stats(gw_sched *s, gw_sched_stats *st) {
    pthread_mutex_lock(&s->mu);
    *st = s->stats;
    st->waiting += s->incoming.n;
    pthread_mutex_unlock(&s->mu);
}

gw_submit_status gw_sched_submit(gw_sched *s, gw_channel *ch, const gw_gen_params *p, int count, char *err,
                                 size_t errlen) {
    if (count <= 0) {
        snprintf(err, errlen, "no requests");
        return GW_SUBMIT_INVALID;
    }
    for (int i = 0; i < count; i++) {
        if (p[i].n_prompt <= 0) {
            snprintf(err, errlen, "the prompt is empty");
            return GW_SUBMIT_INVALID;
        }
        if (p[i].n_prompt >= s->max_len) {
            snprintf(err, errlen,
                     "This model's maximum context length is %d tokens, and the prompt has %d tokens "
                     "(at least one token must be left for the completion).",
                     s->max_len, p[i].n_prompt);
            return GW_SUBMIT_INVALID;
        }
        for (int j = 0; j < p[i].n_prompt; j++)
            if (p[i].prompt[j] < 0 || p[i].prompt[j] >= s->n_vocab) {
                snprintf(err, errlen, "token id %d is out of range [0, %d)", p[i].prompt[j], s->n_vocab);
                return GW_SUBMIT_INVALID;
            }
        if (p[i].kv_select.policy != GW_SELECT_NONE && s->kv_type != GW_KV_F16 && s->device == GW_DEVICE_CUDA) {
            snprintf(err, errlen, "kv_select with a quantized KV cache is not available on the GPU yet (this server "
                                  "runs with --kv-type %s)",
                     gw_kv_type_name(s->kv_type));
            return GW_SUBMIT_INVALID;
        }
        if (p[i].max_tokens <= 0 || p[i].logprobs > GW_MAX_TOP_LOGPROBS || p[i].n_stops > GW_MAX_STOPS ||
            p[i].n_stops < 0) {
            snprintf(err, errlen, "max_tokens must be >= 1, logprobs <= %d, at most %d stop strings",
                     GW_MAX_TOP_LOGPROBS, GW_MAX_STOPS);
            return GW_SUBMIT_INVALID;
        }
    }
    rlist batch = {0};
    double now = mono_now();
    for (int i = 0; i < count; i++) {
        request *r = calloc(1, sizeof *r);
        if (!r) goto oom;
        list_push_back(&batch, r);
        r->cap_tokens = p[i].n_prompt + 16;
        r->tokens = malloc((size_t)r->cap_tokens * sizeof(int32_t));
        r->smp = gw_sampler_new(&p[i].sp, s->n_vocab);
        if (!r->tokens || !r->smp || gw_text_stream_init(&r->ts, p[i].stops, p[i].n_stops) != 0) goto oom;
        memcpy(r->tokens, p[i].prompt, (size_t)p[i].n_prompt * sizeof(int32_t));
        r->n_tokens = r->n_prompt = p[i].n_prompt;
        r->max_tokens = p[i].max_tokens;
        if (r->max_tokens > s->max_len - r->n_prompt) r->max_tokens = s->max_len - r->n_prompt;
        r->logprobs = p[i].logprobs;
        r->ignore_eos = p[i].ignore_eos;
        r->select = p[i].kv_select;
        r->index = p[i].index;
        r->seq = -1;
        r->t_arrival = now;
        r->t_scheduled = r->t_first_token = r->t_last_token = -1;
        r->ch = ch;
    }
    pthread_mutex_lock(&s->mu);
    gw_submit_status st = GW_SUBMIT_OK;
    if (s->closed) {
        st = GW_SUBMIT_SHUTDOWN;
        snprintf(err, errlen, "the server is shutting down");
    } else if (s->max_waiting > 0 && s->stats.waiting + s->incoming.n + count > s->max_waiting) {
        st = GW_SUBMIT_OVERLOADED;
        snprintf(err, errlen, "the server is overloaded: %d requests are waiting (limit %d); retry later",
                 s->stats.waiting + s->incoming.n, s->max_waiting);
    } else {
        atomic_fetch_add(&ch->refs, count);
        list_splice(&s->incoming, &batch);
        pthread_cond_signal(&s->work_cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (st == GW_SUBMIT_OK) return st;
    while (batch.head) {
        request *r = batch.head;
        list_remove(&batch, r);
        request_free(r);
    }
    return st;
oom:
    while (batch.head) {
        request *r = batch.head;
        list_remove(&batch, r);
        request_free(r);
    }
    snprintf(err, errlen, "out of memory");
    return GW_SUBMIT_NOMEM;
}

/* ================================================================= engine */

static int blocks_for(const gw_sched *s, int tokens) { return (tokens + s->block_size - 1) / s->block_size; }

/* Offers r's newly filled KV blocks to the prefix cache. */
static void offer_blocks(gw_sched *s, request *r) {
    /* a compressed sequence's blocks no longer hold its tokens in order */
    if (r->select.policy != GW_SELECT_NONE) return;
    if (!s->prefix_cache || r->seq < 0 || r->n_computed / s->block_size <= r->n_offered) return;
    gw_seq_cache_prefix(s->ctx, r->seq, r->tokens, r->n_computed);
    r->n_offered = r->n_computed / s->block_size;
}

static void update_stats(gw_sched *s, int batch_tokens);

/* Sends the text released so far and the logprobs gathered since the last
 * event. Empty events are not sent unless logprobs are due. */
static void emit_text(request *r, const char *text, size_t len) {
    if (len == 0 && r->n_lp == 0) return;
    gw_event *e = calloc(1, sizeof *e);
    char *t = malloc(len + 1);
    if (!e || !t) {
        free(e);
        free(t);
        return;
    }
    memcpy(t, text, len);
    t[len] = 0;
    e->type = GW_EV_TEXT;
    e->index = r->index;
    e->text = t;
    e->len = len;
    e->lp = r->lp;
    e->n_lp = r->n_lp;
    r->lp = NULL;
    r->n_lp = r->cap_lp = 0;
    channel_post(r->ch, e);
}

/* Ends a request: flushes held-back text (unless a stop string ended it or
 * it is aborted), posts FINISH, frees its KV and itself. The caller has
 * taken it out of its list. */
static void finish(gw_sched *s, request *r, gw_finish_reason why, const char *error) {
    double now = mono_now();
    if (why != GW_FINISH_ABORT && why != GW_FINISH_ERROR) {
        const char *out;
        size_t len;
        if (!r->ts.stopped) gw_text_stream_add(&r->ts, "", 0, true, &out, &len);
        else len = 0, out = "";
        emit_text(r, out, len);
    }
    offer_blocks(s, r); /* its KV is valid whatever the reason (a failed pass changes none) */
    if (r->seq >= 0) gw_seq_close(s->ctx, r->seq);
    r->seq = -1;
    /* before FINISH goes out: whoever reads it then sees the KV freed */
    update_stats(s, 0);
    gw_event *e = calloc(1, sizeof *e);
    if (e) {
        e->type = GW_EV_FINISH;
        e->index = r->index;
        e->finish = why;
        e->prompt_tokens = r->n_prompt;
        e->completion_tokens = r->n_generated;
        if (error) snprintf(e->error, sizeof e->error, "%s", error);
        channel_post(r->ch, e);
    }
    gw_metrics *m = s->metrics;
    gw_metrics_add(m, why == GW_FINISH_STOP     ? GW_CTR_FINISHED_STOP
                      : why == GW_FINISH_LENGTH ? GW_CTR_FINISHED_LENGTH
                                                : GW_CTR_FINISHED_ABORT,
                   1);
    if (why == GW_FINISH_STOP || why == GW_FINISH_LENGTH) {
        gw_metrics_observe(m, GW_HIST_E2E, now - r->t_arrival);
        gw_metrics_observe(m, GW_HIST_PROMPT_TOKENS, r->n_prompt);
        gw_metrics_observe(m, GW_HIST_GEN_TOKENS, r->n_generated);
    }
    gw_channel_release(r->ch);
    request_free(r);
}

static void finish_all(gw_sched *s, rlist *l, gw_finish_reason why, const char *error) {
    while (l->head) {
        request *r = l->head;
        list_remove(l, r);
        finish(s, r, why, error);
    }
}

/* Preemption by recompute: the sequence's KV is dropped and the request
 * waits at the front of the queue with every token it has (prompt +
 * generated) as its new prompt. Its sampler and text stream carry on, so
 * the continuation and the text sent are as if nothing happened. */
static void preempt(gw_sched *s, request *r) {
    offer_blocks(s, r); /* the recompute may start on them if they are not reclaimed first */
    gw_seq_close(s->ctx, r->seq);
    r->seq = -1;
    r->n_computed = r->n_dropped = 0;
    r->n_offered = 0;
    r->compressed = false;
    list_remove(&s->running, r);
    list_push_front(&s->waiting, r);
    r->preempted_in_step = s->step_no + 1;
    gw_metrics_add(s->metrics, GW_CTR_PREEMPTIONS, 1);
    pthread_mutex_lock(&s->mu);
    s->stats.preemptions++;
    pthread_mutex_unlock(&s->mu);
    /* its planned tokens, if any, leave the batch */
    for (int i = 0; i < s->n_plan; i++)
        if (s->plan[i].r == r) s->plan[i].r = NULL;
}

/* KV slots a request holds. */
static int slots(const request *r) { return r->n_computed - r->n_dropped; }

/* Free blocks not yet promised to the batch being planned. */
static int avail_blocks(const gw_sched *s) {
    int n = gw_context_kv_free_tokens(s->ctx) / s->block_size;
    for (int i = 0; i < s->n_plan; i++) {
        const struct plan *p = &s->plan[i];
        if (p->r) n -= blocks_for(s, slots(p->r) + p->n) - blocks_for(s, slots(p->r));
    }
    return n;
}

/* Tokens r can take now without new blocks beyond the available ones. */
static int room_tokens(const gw_sched *s, const request *r) {
    int tail = blocks_for(s, slots(r)) * s->block_size - slots(r);
    return tail + avail_blocks(s) * s->block_size;
}

static int planned_tokens(const gw_sched *s) {
    int n = 0;
    for (int i = 0; i < s->n_plan; i++)
        if (s->plan[i].r) n += s->plan[i].n;
    return n;
}

/* Makes room for `want` (>= 1) more tokens of running request r by
 * preempting the newest running requests; returns how many tokens r gets
 * (<= want), or 0 if r itself had to be preempted. */
static int make_room(gw_sched *s, request *r, int want) {
    for (;;) {
        int room = room_tokens(s, r);
        if (room >= want) return want;
        if (room > 0 && r->n_tokens - r->n_computed > 1) return room; /* a shorter prompt chunk */
        request *victim = s->running.tail;
        preempt(s, victim);
        if (victim == r) return 0;
    }
}

/* Full blocks at the start of a and b holding the same tokens, of the first
 * max_blocks. */
static int common_blocks(const int32_t *a, const int32_t *b, int max_blocks, int bs) {
    int i = 0;
    while (i < max_blocks && !memcmp(a + (size_t)i * bs, b + (size_t)i * bs, (size_t)bs * sizeof(int32_t))) i++;
    return i;
}

/* Prefix-aware admission: true when a running request is still computing
 * full blocks of r's tokens beyond the hit_tokens the cache already has, so
 * that r, admitted after it has, starts on them instead of computing them
 * a second time. Bounded: the running request computes at least one of
 * them every step it is not preempted (prompt chunks are planned before
 * admissions), and the condition ends once it is past them. */
static bool wait_for_prefix(const gw_sched *s, const request *r, int hit_tokens) {
    const int bs = s->block_size;
    int want = (r->n_tokens - 1) / bs; /* the most r can take from the cache */
    int have = hit_tokens / bs;
    if (want <= have) return false;
    for (const request *l = s->running.head; l; l = l->next) {
        int max = l->n_tokens / bs < want ? l->n_tokens / bs : want;
        if (l->n_computed >= max * bs) continue; /* nothing left of r's blocks to compute */
        int common = common_blocks(r->tokens, l->tokens, max, bs);
        if (common > have && l->n_computed < common * bs) return true;
    }
    return false;
}

/* Plans one step into s->plan. Every entry names a request that was running
 * when it was added; entries of requests preempted later in the planning are
 * blanked (r = NULL), so there are at most running + admitted entries, fewer
 * than 2 x max_running. */
static void plan_step(gw_sched *s) {
    s->n_plan = 0;
    /* 1. decodes, oldest first */
    for (request *r = s->running.head; r; r = r->next) {
        if (r->n_tokens - r->n_computed != 1) continue;
        if (planned_tokens(s) >= s->batch_tokens) break;
        if (make_room(s, r, 1) == 0) break; /* r was the newest: nothing after it */
        s->plan[s->n_plan++] = (struct plan){r, 1};
    }
    /* 2. prompt chunks of running requests (admitted, prompt not done) */
    for (request *r = s->running.head; r; r = r->next) {
        int pending = r->n_tokens - r->n_computed;
        if (pending <= 1) continue;
        int budget = s->batch_tokens - planned_tokens(s);
        if (budget <= 0) break;
        int n = make_room(s, r, pending < budget ? pending : budget);
        if (n == 0) break;
        s->plan[s->n_plan++] = (struct plan){r, n};
    }
    /* 3. admit waiting requests in order while the whole prompt fits,
     * starting each on its cached prefix; one waiting for a running
     * request's blocks (see wait_for_prefix) lets those behind it go */
    for (request *r = s->waiting.head, *next; r && s->running.n < s->max_running; r = next) {
        next = r->next;
        int budget = s->batch_tokens - planned_tokens(s);
        if (budget <= 0) break;
        if (r->preempted_in_step == s->step_no + 1) break; /* no churn within a step */
        /* a request that compresses its KV starts cold (it rewrites its blocks) */
        const bool share = s->prefix_cache && r->select.policy == GW_SELECT_NONE;
        int idle = 0, hit = share ? gw_prefix_lookup(s->ctx, r->tokens, r->n_tokens, &idle) : 0;
        if (share && wait_for_prefix(s, r, hit)) continue;
        /* new blocks, plus the idle cached ones it takes out of the free count */
        int need = blocks_for(s, r->n_tokens) - hit / s->block_size + idle / s->block_size;
        if (need > avail_blocks(s)) break; /* FCFS: no overtaking for room */
        int seq = share ? gw_seq_open_prefix(s->ctx, r->tokens, r->n_tokens) : gw_seq_open(s->ctx);
        if (seq < 0) break;
        if (gw_kv_select_begin(s->ctx, seq, &r->select, r->n_tokens) != 0) {
            gw_seq_close(s->ctx, seq);
            list_remove(&s->waiting, r);
            finish(s, r, GW_FINISH_ERROR, "kv_select: cannot start the KV selection policy (out of memory)");
            continue;
        }
        r->seq = seq;
        r->n_computed = gw_seq_len(s->ctx, seq);
        r->n_offered = r->n_computed / s->block_size;
        list_remove(&s->waiting, r);
        list_push_back(&s->running, r);
        if (r->t_scheduled < 0) {
            r->t_scheduled = mono_now();
            gw_metrics_observe(s->metrics, GW_HIST_QUEUE, r->t_scheduled - r->t_arrival);
        }
        if (s->prefix_cache) {
            gw_metrics_add(s->metrics, GW_CTR_PREFIX_QUERIES, (uint64_t)r->n_tokens);
            gw_metrics_add(s->metrics, GW_CTR_PREFIX_HITS, (uint64_t)r->n_computed);
            s->prefix_queries += (uint64_t)r->n_tokens;
            s->prefix_hits += (uint64_t)r->n_computed;
        }
        int left = r->n_tokens - r->n_computed;
        s->plan[s->n_plan++] = (struct plan){r, left < budget ? left : budget};
    }
}

static int push_token(request *r, int32_t t) {
    if (r->n_tokens == r->cap_tokens) {
        int cap = r->cap_tokens * 2;
        int32_t *nt = realloc(r->tokens, (size_t)cap * sizeof(int32_t));
        if (!nt) return -1;
        r->tokens = nt;
        r->cap_tokens = cap;
    }
    r->tokens[r->n_tokens++] = t;
    return 0;
}

/* The sampled token's log-probability and the n_top most likely tokens',
 * from the model's raw logits (before penalties and temperature, as the
 * OpenAI API and vLLM report them). */
static void logprobs_of(const float *lg, int V, int32_t chosen, int n_top, gw_token_logprob *out) {
    float mx = lg[0];
    for (int i = 1; i < V; i++)
        if (lg[i] > mx) mx = lg[i];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)lg[i] - mx);
    double lse = mx + log(sum);
    out->id = chosen;
    out->logprob = (float)(lg[chosen] - lse);
    out->n_top = 0;
    for (int i = 0; i < V; i++) {
        /* insertion into the short sorted list (n_top <= 20) */
        int k = out->n_top;
        if (k == n_top && (n_top == 0 || lg[i] <= lg[out->top_id[k - 1]])) continue;
        if (k < n_top) out->n_top++;
        else k--;
        while (k > 0 && lg[out->top_id[k - 1]] < lg[i]) {
            out->top_id[k] = out->top_id[k - 1];
            k--;
        }
        out->top_id[k] = i;
    }
    for (int k = 0; k < out->n_top; k++) out->top_logprob[k] = (float)(lg[out->top_id[k]] - lse);
}

/* A token was sampled for r: record it, stream its text, finish r if done.
 * Returns true if r finished (and was freed). */
static bool on_token(gw_sched *s, request *r, int32_t t, const gw_token_logprob *lp) {
    double now = mono_now();
    gw_metrics *m = s->metrics;
    if (r->t_first_token < 0) {
        r->t_first_token = now;
        gw_metrics_observe(m, GW_HIST_TTFT, now - r->t_arrival);
        gw_metrics_add(m, GW_CTR_PROMPT_TOKENS, (uint64_t)r->n_prompt);
    } else {
        gw_metrics_observe(m, GW_HIST_ITL, now - r->t_last_token);
    }
    r->t_last_token = now;
    gw_metrics_add(m, GW_CTR_GEN_TOKENS, 1);
    r->n_generated++;
    if (push_token(r, t) != 0) {
        list_remove(&s->running, r);
        finish(s, r, GW_FINISH_ERROR, "out of memory");
        return true;
    }
    if (!r->ignore_eos && gw_token_is_eog(s->tok, t)) {
        list_remove(&s->running, r);
        finish(s, r, GW_FINISH_STOP, NULL);
        return true;
    }
    if (lp) {
        if (r->n_lp == r->cap_lp) {
            int cap = r->cap_lp ? 2 * r->cap_lp : 4;
            gw_token_logprob *nl = realloc(r->lp, (size_t)cap * sizeof *nl);
            if (nl) r->lp = nl, r->cap_lp = cap;
        }
        if (r->n_lp < r->cap_lp) r->lp[r->n_lp++] = *lp;
    }
    char small[256], *piece = small;
    size_t pl = gw_token_to_piece(s->tok, t, false, small, sizeof small);
    if (pl > sizeof small) {
        piece = malloc(pl);
        if (piece) gw_token_to_piece(s->tok, t, false, piece, pl);
        else pl = 0, piece = small;
    }
    const char *out;
    size_t len;
    bool stopped = gw_text_stream_add(&r->ts, piece, pl, false, &out, &len);
    if (piece != small) free(piece);
    emit_text(r, out, len);
    if (stopped) {
        list_remove(&s->running, r);
        finish(s, r, GW_FINISH_STOP, NULL);
        return true;
    }
    if (r->n_generated >= r->max_tokens || r->n_tokens >= s->max_len) {
        list_remove(&s->running, r);
        finish(s, r, GW_FINISH_LENGTH, NULL);
        return true;
    }
    return false;
}

static void update_stats(gw_sched *s, int batch_tokens) {
    pthread_mutex_lock(&s->mu);
    s->stats.running = s->running.n;
    s->stats.waiting = s->waiting.n;
    s->stats.kv_free_tokens = gw_context_kv_free_tokens(s->ctx);
    gw_prefix_cache_stats pcs;
    gw_context_prefix_cache_stats(s->ctx, &pcs);
    s->stats.kv_cached_tokens = pcs.cached_tokens;
    s->stats.kv_idle_tokens = pcs.idle_tokens;
    s->stats.prefix_evicted_blocks = pcs.evicted_blocks;
    s->stats.prefix_queries = s->prefix_queries;
    s->stats.prefix_hits = s->prefix_hits;
    if (batch_tokens > 0) {
        s->stats.steps++;
        s->stats.batch_tokens_total += (uint64_t)batch_tokens;
    }
    pthread_mutex_unlock(&s->mu);
}

static void drop_cancelled(gw_sched *s, rlist *l) {
    for (request *r = l->head, *next; r; r = next) {
        next = r->next;
        if (gw_channel_cancelled(r->ch)) {
            list_remove(l, r);
            finish(s, r, GW_FINISH_ABORT, NULL);
        }
    }
}

/* One iteration: plan, one forward pass, sample. */
static void step(gw_sched *s) {
    drop_cancelled(s, &s->running);
    drop_cancelled(s, &s->waiting);
    if (!s->running.head && !s->waiting.head) return;
    plan_step(s);
    /* the flat batch, in plan order */
    int T = 0;
    for (int i = 0; i < s->n_plan; i++) {
        request *r = s->plan[i].r;
        if (!r) continue;
        int n = s->plan[i].n;
        bool last = r->n_computed + n == r->n_tokens;
        for (int j = 0; j < n; j++) {
            s->b_tok[T] = r->tokens[r->n_computed + j];
            s->b_seq[T] = r->seq;
            s->b_pos[T] = r->n_computed + j;
            s->b_want[T] = last && j == n - 1;
            T++;
        }
    }
    if (T == 0) {
        /* Not expected: with nothing running every request fits. Do not spin. */
        s->step_no++;
        update_stats(s, 0);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
        return;
    }
    char err[256];
    gw_batch b = {T, s->b_tok, s->b_seq, s->b_pos, s->b_want};
    if (gw_forward(s->ctx, &b, s->logits, err, sizeof err) != 0) {
        /* Not expected (KV room was checked): fail the requests involved. */
        fprintf(stderr, "godwit: engine: %s\n", err);
        for (int i = 0; i < s->n_plan; i++) {
            request *r = s->plan[i].r;
            if (!r) continue;
            list_remove(&s->running, r);
            finish(s, r, GW_FINISH_ERROR, err);
        }
        s->n_plan = 0;
        s->step_no++;
        update_stats(s, 0);
        return;
    }
    /* counted before any request finishes below: whoever sees a FINISH sees
     * the tokens of the step that produced it */
    update_stats(s, T);
    int k = 0;
    for (int i = 0; i < s->n_plan; i++) {
        request *r = s->plan[i].r;
        if (!r) continue;
        r->n_computed += s->plan[i].n;
        if (r->n_computed == r->n_tokens && r->select.policy != GW_SELECT_NONE && !r->compressed) {
            /* the prompt is in: compress it (its last logits are already out) */
            r->compressed = true;
            if (gw_kv_select_end(s->ctx, r->seq, &r->select, r->n_tokens) == 0)
                r->n_dropped = gw_seq_kv_compressed(s->ctx, r->seq);
            else
                fprintf(stderr, "godwit: engine: kv_select: compression failed; the request goes on uncompressed\n");
        }
        offer_blocks(s, r);
        if (r->n_computed != r->n_tokens) continue;
        float *lg = s->logits + (size_t)k++ * s->n_vocab;
        gw_token_logprob lp, *lpp = NULL;
        if (r->logprobs >= 0) memcpy(s->lp_scratch, lg, (size_t)s->n_vocab * sizeof(float));
        int32_t t = gw_sample(r->smp, lg, r->tokens, r->n_tokens);
        if (r->logprobs >= 0) {
            logprobs_of(s->lp_scratch, s->n_vocab, t, r->logprobs, &lp);
            lpp = &lp;
        }
        on_token(s, r, t, lpp);
    }
    s->n_plan = 0;
    s->step_no++;
    update_stats(s, 0);
}

static void *engine_main(void *arg) {
    gw_sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stop && !s->incoming.head && !s->running.head && !s->waiting.head &&
               s->abort_done == s->abort_requested)
            pthread_cond_wait(&s->work_cv, &s->mu);
        list_splice(&s->waiting, &s->incoming);
        uint64_t abort_to = s->abort_requested;
        bool stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop || abort_to != s->abort_done) {
            finish_all(s, &s->running, GW_FINISH_ABORT, "aborted");
            finish_all(s, &s->waiting, GW_FINISH_ABORT, "aborted");
            update_stats(s, 0);
            pthread_mutex_lock(&s->mu);
            s->abort_done = abort_to;
            pthread_cond_broadcast(&s->done_cv);
            pthread_mutex_unlock(&s->mu);
            if (stop) break;
            continue;
        }
        step(s);
    }
    /* requests submitted after the last look */
    pthread_mutex_lock(&s->mu);
    list_splice(&s->waiting, &s->incoming);
    pthread_mutex_unlock(&s->mu);
    finish_all(s, &s->waiting, GW_FINISH_ABORT, "aborted");
    return NULL;
}
