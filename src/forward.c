/* The forward pass: one call runs a flat batch of tokens, any mix of prompt
 * chunks and decode steps from different sequences, through every layer of
 * the model, reading and appending to each sequence's pages in the KV cache.
 *
 * Data flow per layer (T = tokens in the batch):
 *   x[T][E] -> rmsnorm -> q,k,v projections -> RoPE -> append k,v to cache
 *   -> attention over each token's sequence (causal) -> output projection
 *   -> residual -> rmsnorm -> gate/up -> SiLU(gate)*up -> down -> residual
 * Matrix products go through gw_matmul (quantized kernels); the work of each
 * op is split into tasks run by the context's thread pool. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdbool.h>

#include "backend/cpu/attention.h"
#include "backend/cpu/quant.h"
#include "backend/cpu/threadpool.h"
#include "backend/cuda/engine.h"
#ifdef GODWIT_CUDA
#include "backend/cuda/gw_cuda.h" /* device memory for KV selection scores */
#endif
#include "godwit.h"
#include "kv/kv_cache.h"
#include "kv/prefix_cache.h"
#include "model/model.h"
#include "util/error.h"
#include "tokenizer/tokenizer.h"

#define MAX_SEQS 256
#define MAX_SHARED 3 /* matrices multiplied with one input in one job (q, k, v) */

/* A sequence's streaming policy (gw_seq_set_streaming); n_window == 0: off. */
typedef struct {
    int n_sink, n_window;
    int64_t evicted_tokens, evictions;
} seq_streaming;

/* A sequence's KV selection state (gw_seq_kv_score / gw_seq_kv_compress). */
typedef struct {
    int32_t from_pos;    /* tokens at or past this position add their attention; -1: off */
    float *score;        /* [n_layer][n_head_kv][slot_cap] summed probabilities */
    float *score_d;      /* the same in GPU memory, where a CUDA forward adds to it (NULL on the CPU) */
    int64_t compressed;  /* tokens dropped so far: next position = slots + compressed */
} seq_select;

/* Drops a sequence's selection scores (host and device). */
static void select_free(seq_select *z) {
    free(z->score);
    z->score = NULL;
#ifdef GODWIT_CUDA
    if (z->score_d) gw_cuda_free(z->score_d);
#endif
    z->score_d = NULL;
    z->from_pos = -1;
}

struct gw_context {
    gw_model *model;
    gw_threadpool *pool;
    int n_ctx, n_batch;
    gw_kv_pool kv;
    gw_prefix_cache *prefix;    /* NULL: prefix cache off */
    gw_kv_seq seqs[MAX_SEQS];
    bool seq_used[MAX_SEQS];
    seq_streaming stream[MAX_SEQS];
    seq_select select[MAX_SEQS];
    int32_t slot_cap;           /* slots the pool holds: n_blocks * block_size */
    float *probs;               /* per-thread scoring scratch, [threads][group * slot_cap], lazily */
    float *inv_freq;     /* [rope_dim/2] */
    /* scratch, sized for n_batch tokens */
    float *x, *xn, *q, *k, *v, *att, *gate, *up;
    float *rope_cos, *rope_sin; /* [n_batch][rope_dim/2] */
    void *xq;                   /* quantized activations */
    size_t xq_bytes;
    float *attn_scratch;        /* per-thread attention scratch */
    size_t attn_scratch_floats;
    int32_t *tok_slot;          /* [n_batch] cache slot of each token */
    int32_t *tok_visible;       /* [n_batch] slots each token attends to (tok_slot + 1) */
    int32_t *filled_blocks;     /* [n_batch] blocks a batch filled (quantized KV: sealed after it) */
    int32_t *tile_start;        /* [n_batch] attention tiles: runs of consecutive */
    int32_t n_tiles;            /*   tokens of one sequence, at most GW_ATTN_MAX_TILE */
    float *attn_parts;          /* split-KV partial results, n_batch * n_head_kv parts */
    size_t attn_part_floats;
    gw_cuda_engine *cuda;       /* non-NULL: the forward runs on the GPU (pages live there) */
    gw_cuda_run *runs;          /* [n_batch] the batch as runs, for the GPU */
    int32_t *out_rows;          /* [n_batch] */
    int32_t *gpu_pos;           /* [n_batch] positions handed to the GPU (streaming: shifted) */
    int32_t *score_tok;         /* [n_batch] tokens adding to KV selection scores on the GPU */
    float **score_ptr;          /* [n_batch] their sequences' device score arrays */
    int32_t *gpu_tables;        /* quantized KV on the GPU: the runs' block tables as the */
    size_t gpu_tables_cap;      /* kernels read them (open pages as -1 - page) */
};


/* ---------------------------------------------------------------- model API */

const struct gw_tokenizer *gw_model_tokenizer(const gw_model *m) { return m->tokenizer; }
int gw_model_n_vocab(const gw_model *m) { return m->n_vocab; }
int gw_model_n_ctx_train(const gw_model *m) { return m->n_ctx_train; }
const char *gw_model_chat_template(const gw_model *m) { return m->chat_template; }

/* Parameters counted from the model's own matrices and vectors, so GGUF and
 * Hugging Face models (whose file holds only the tokenizer) read the same. */
static double model_params(const gw_model *m) {
    double p = (double)m->tok_embd.rows * m->tok_embd.cols + m->n_embd; /* + output norm */
    if (m->output.data != m->tok_embd.data) p += (double)m->output.rows * m->output.cols;
    for (int l = 0; l < m->n_layer; l++) {
        const gw_layer *L = &m->layers[l];
        const gw_matrix *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof w / sizeof *w; i++) p += (double)w[i]->rows * w[i]->cols;
        p += 2.0 * m->n_embd; /* the two norms */
        if (L->bq) p += L->wq.rows + L->wk.rows + L->wv.rows;
    }
    return p;
}

void gw_model_describe(const gw_model *m, char *buf, size_t buflen) {
    double params = model_params(m);
    snprintf(buf, buflen,
             "%s (%s): %.0fM params, %d layers, %d heads (%d KV), dim %d, ff %d, vocab %d, "
             "weights %s %.1f MiB, trained ctx %d",
             m->name, m->arch_name, params / 1e6, m->n_layer, m->n_head, m->n_head_kv, m->n_embd,
             m->n_ff, m->n_vocab, gw_type_name(m->layers[0].wq.type),
             gw_model_weight_bytes(m) / 1048576.0, m->n_ctx_train);
}

/* -------------------------------------------------------------- context API */

gw_context_params gw_context_default_params(void) {
    gw_context_params p = {.n_ctx = 4096, .n_batch = 512, .n_threads = 0, .kv_block_size = 16};
    return p;
}

int gw_cuda_available(void) {
#ifdef GODWIT_CUDA
    return 1;
#else
    return 0;
#endif
}

void gw_context_free(gw_context *c) {
    if (!c) return;
    for (int i = 0; i < MAX_SEQS; i++)
        if (c->seq_used[i]) gw_kv_seq_release(&c->kv, &c->seqs[i]);
#ifdef GODWIT_CUDA
    gw_cuda_engine_free(c->cuda);
#endif
    free(c->runs);
    free(c->out_rows);
    free(c->gpu_tables);
    free(c->gpu_pos);
    gw_prefix_cache_free(c->prefix);
    gw_kv_pool_free(&c->kv);
    gw_threadpool_free(c->pool);
    free(c->inv_freq);
    free(c->x);
    free(c->xn);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att);
    free(c->gate);
    free(c->up);
    free(c->rope_cos);
    free(c->rope_sin);
    free(c->xq);
    free(c->attn_scratch);
    free(c->tok_slot);
    free(c->tok_visible);
    free(c->filled_blocks);
    free(c->tile_start);
    free(c->attn_parts);
    for (int i = 0; i < MAX_SEQS; i++) select_free(&c->select[i]);
    free(c->probs);
    free(c->score_tok);
    free(c->score_ptr);
    free(c);
}

gw_context *gw_context_new(gw_model *m, const gw_context_params *params, char *err, size_t errlen) {
    gw_context_params pp = params ? *params : gw_context_default_params();
    if (pp.kv_block_size == 0) pp.kv_block_size = pp.kv_type != GW_KV_F16 ? 32 : 16;
    const gw_context_params *p = &pp;
    if (p->n_ctx <= 0 || p->n_batch <= 0 || p->kv_block_size <= 0 || p->kv_block_size > 4096) {
        gw_set_err(err, errlen, "context: n_ctx and n_batch must be positive, kv_block_size in 0..4096");
        return NULL;
    }
    if (p->device != GW_DEVICE_CPU && p->device != GW_DEVICE_CUDA) {
        gw_set_err(err, errlen, "context: unknown device %d", p->device);
        return NULL;
    }
#ifndef GODWIT_CUDA
    if (p->device == GW_DEVICE_CUDA) {
        gw_set_err(err, errlen, "this godwit was built without the CUDA backend (build with "
                                "cmake -DGODWIT_CUDA=ON, or make CUDA=1)");
        return NULL;
    }
#endif
    if (p->kv_type != GW_KV_F16) {
        if (p->kv_type != GW_KV_INT8 && p->kv_type != GW_KV_INT4) {
            gw_set_err(err, errlen, "context: unknown KV type %d", p->kv_type);
            return NULL;
        }
        if (p->kv_block_size % GW_KV_QGROUP || m->head_dim % GW_KV_QGROUP) {
            gw_set_err(err, errlen,
                       "context: a quantized KV cache (%s) needs a KV block size and a head size that are "
                       "multiples of %d (block size %d, head size %d)",
                       gw_kv_type_name(p->kv_type), GW_KV_QGROUP, p->kv_block_size, m->head_dim);
            return NULL;
        }
    }
    gw_context *c = calloc(1, sizeof *c);
    if (!c) goto oom;
    c->model = m;
    c->n_ctx = p->n_ctx;
    c->n_batch = p->n_batch;
    int threads = p->n_threads > 0 ? p->n_threads : gw_cpu_count();
    c->pool = gw_threadpool_new(threads);
    if (!c->pool) goto oom;
    int32_t n_blocks = (p->n_ctx + p->kv_block_size - 1) / p->kv_block_size;
    /* Open fp16 pages of a quantized pool: one per sequence between passes
     * (its partial last block), plus what one batch fills: a block per
     * block_size tokens and one more per sequence it touches. */
    int32_t max_open = 2 * MAX_SEQS + (p->n_batch + p->kv_block_size - 1) / p->kv_block_size;
    int kv_rc = p->device == GW_DEVICE_CUDA
                    ? gw_kv_pool_init_external(&c->kv, m->n_layer, m->n_head_kv, m->head_dim, p->kv_block_size,
                                               n_blocks, p->kv_type, max_open)
                    : gw_kv_pool_init_typed(&c->kv, m->n_layer, m->n_head_kv, m->head_dim, p->kv_block_size,
                                            n_blocks, p->kv_type, max_open);
    if (kv_rc != 0) {
        gw_set_err(err, errlen, "context: cannot allocate the KV cache (%d tokens, %.1f MiB)", p->n_ctx,
                (double)n_blocks * p->kv_block_size * 2.0 * m->n_layer * m->n_head_kv * m->head_dim * 2 /
                    1048576.0);
        gw_context_free(c);
        return NULL;
    }
    c->slot_cap = n_blocks * p->kv_block_size;
    const int half = m->rope_dim / 2;
    c->inv_freq = malloc((size_t)half * sizeof(float));
    if (!c->inv_freq) goto oom;
    for (int i = 0; i < half; i++) {
        /* As Hugging Face computes it: base^(-2i/d) in float. */
        float f = 1.0f / powf(m->rope_theta, (float)(2 * i) / (float)m->rope_dim);
        if (m->rope_freq_factors) f /= m->rope_freq_factors[i];
        c->inv_freq[i] = f / m->rope_scale;
    }
    /* Bh: tokens the CPU's activation buffers hold (none are used when the
     * forward runs on the GPU); B: tokens of the per-token bookkeeping. */
    size_t B = (size_t)p->n_batch, Bh = p->device == GW_DEVICE_CUDA ? 1 : B;
    size_t qd = (size_t)m->n_head * m->head_dim, kvd = (size_t)m->n_head_kv * m->head_dim;
    size_t maxk = (size_t)m->n_embd;
    if ((size_t)m->n_ff > maxk) maxk = (size_t)m->n_ff;
    if (qd > maxk) maxk = qd;
    c->x = malloc(Bh * m->n_embd * sizeof(float));
    c->xn = malloc(Bh * m->n_embd * sizeof(float));
    c->q = malloc(Bh * qd * sizeof(float));
    c->k = malloc(Bh * kvd * sizeof(float));
    c->v = malloc(Bh * kvd * sizeof(float));
    c->att = malloc(Bh * qd * sizeof(float));
    c->gate = malloc(Bh * m->n_ff * sizeof(float));
    c->up = malloc(Bh * m->n_ff * sizeof(float));
    c->rope_cos = malloc(Bh * half * sizeof(float));
    c->rope_sin = malloc(Bh * half * sizeof(float));
    /* Activations in their largest format (F32 for float weights) plus the
     * bytes of one block of rounding, for up to MAX_SHARED formats at once. */
    c->xq_bytes = Bh * (maxk * sizeof(float) + 512);
    c->xq = malloc(MAX_SHARED * c->xq_bytes);
    c->attn_scratch_floats = gw_attention_scratch_floats(m->n_head / m->n_head_kv, m->head_dim, p->kv_block_size);
    c->attn_scratch = malloc((size_t)threads * c->attn_scratch_floats * sizeof(float));
    c->tok_slot = malloc(B * sizeof(int32_t));
    c->tok_visible = malloc(B * sizeof(int32_t));
    c->filled_blocks = malloc(B * sizeof(int32_t));
    c->tile_start = malloc((B + 1) * sizeof(int32_t));
    {
        size_t G = (size_t)(m->n_head / m->n_head_kv);
        c->attn_part_floats = G * m->head_dim + 2 * G;
        c->attn_parts = malloc(Bh * m->n_head_kv * c->attn_part_floats * sizeof(float));
    }
    if (!c->attn_parts || !c->tok_visible || !c->filled_blocks || !c->tile_start || !c->x || !c->xn || !c->q || !c->k || !c->v || !c->att || !c->gate || !c->up ||
        !c->rope_cos || !c->rope_sin || !c->xq || !c->attn_scratch || !c->tok_slot)
        goto oom;
#ifdef GODWIT_CUDA
    if (p->device == GW_DEVICE_CUDA) {
        c->runs = malloc(B * sizeof *c->runs);
        c->out_rows = malloc(B * sizeof *c->out_rows);
        c->gpu_pos = malloc(B * sizeof *c->gpu_pos);
        c->score_tok = malloc(B * sizeof *c->score_tok);
        c->score_ptr = malloc(B * sizeof *c->score_ptr);
        if (!c->runs || !c->out_rows || !c->gpu_pos || !c->score_tok || !c->score_ptr) goto oom;
        c->cuda = gw_cuda_engine_new(m, c->inv_freq, n_blocks, p->kv_block_size, p->n_batch, p->kv_type,
                                     c->kv.max_open, err, errlen);
        if (!c->cuda) {
            gw_context_free(c);
            return NULL;
        }
        c->kv.dev = (gw_kv_device){c->cuda, gw_cuda_engine_copy_block, gw_cuda_engine_copy_page, gw_cuda_engine_seal,
                                   gw_cuda_engine_unseal};
    }
#endif
    return c;
oom:
    gw_set_err(err, errlen, "context: out of memory");
    gw_context_free(c);
    return NULL;
}

int gw_context_n_ctx(const gw_context *c) { return c->n_ctx; }
int gw_context_n_batch(const gw_context *c) { return c->n_batch; }
int gw_context_n_threads(const gw_context *c) { return gw_threadpool_size(c->pool); }
size_t gw_context_kv_bytes_per_token(const gw_context *c) { return gw_kv_bytes_per_token(&c->kv); }
int gw_context_kv_free_tokens(const gw_context *c) { return gw_kv_pool_available(&c->kv) * c->kv.block_size; }
int gw_context_kv_block_size(const gw_context *c) { return c->kv.block_size; }

void gw_context_describe_device(const gw_context *c, char *buf, size_t buflen) {
#ifdef GODWIT_CUDA
    if (c->cuda) {
        gw_cuda_engine_describe(c->cuda, buf, buflen);
        return;
    }
#endif
    snprintf(buf, buflen, "cpu, %d threads", gw_threadpool_size(c->pool));
}

int gw_seq_open(gw_context *c) {
    for (int i = 0; i < MAX_SEQS; i++) {
        if (!c->seq_used[i]) {
            c->seq_used[i] = true;
            memset(&c->seqs[i], 0, sizeof c->seqs[i]);
            memset(&c->stream[i], 0, sizeof c->stream[i]);
            c->select[i].from_pos = -1;
            c->select[i].compressed = 0;
            return i;
        }
    }
    return -1;
}

static bool seq_valid(const gw_context *c, int seq) { return seq >= 0 && seq < MAX_SEQS && c->seq_used[seq]; }

void gw_seq_close(gw_context *c, int seq) {
    if (!seq_valid(c, seq)) return;
    gw_kv_seq_release(&c->kv, &c->seqs[seq]);
    select_free(&c->select[seq]);
    c->seq_used[seq] = false;
}

int gw_seq_len(const gw_context *c, int seq) { return seq_valid(c, seq) ? c->seqs[seq].n_tokens : -1; }

void gw_seq_truncate(gw_context *c, int seq, int n) {
    if (!seq_valid(c, seq)) return;
    gw_kv_seq_truncate(&c->kv, &c->seqs[seq], n);
    seq_select *z = &c->select[seq];
    if (c->seqs[seq].n_tokens == 0) z->compressed = 0; /* nothing left of what was compressed */
    if (z->score) { /* the dropped slots' statistics go with them */
        int32_t from = c->seqs[seq].n_tokens;
        for (size_t t = 0; t < (size_t)c->model->n_layer * c->model->n_head_kv; t++) {
            memset(z->score + t * c->slot_cap + from, 0, (size_t)(c->slot_cap - from) * sizeof(float));
#ifdef GODWIT_CUDA
            if (z->score_d)
                gw_cuda_memset(z->score_d + t * c->slot_cap + from, 0, (size_t)(c->slot_cap - from) * sizeof(float),
                               NULL);
#endif
        }
#ifdef GODWIT_CUDA
        if (z->score_d) gw_cuda_sync(NULL);
#endif
    }
}

/* ------------------------------------------------- KV selection (SnapKV, H2O) */

int gw_kv_select_parse(const char *s, gw_kv_select *out) {
    memset(out, 0, sizeof *out);
    if (!strcmp(s, "none")) return 0;
    const char *colon = strchr(s, ':');
    if (!colon) return -1;
    size_t n = (size_t)(colon - s);
    if (n == 6 && !strncmp(s, "snapkv", 6)) out->policy = GW_SELECT_SNAPKV;
    else if (n == 3 && !strncmp(s, "h2o", 3)) out->policy = GW_SELECT_H2O;
    else return -1;
    char *end;
    errno = 0;
    double v = strtod(colon + 1, &end);
    if (errno || end == colon + 1 || !(v > 0) || v > 1e9) return -1;
    if (*end == 'x') {
        if (v < 1) return -1;
        out->ratio = v;
        end++;
    } else if (v == (int)v) {
        out->budget = (int)v;
    } else {
        return -1;
    }
    if (!strncmp(end, ",pool=", 6) && out->policy == GW_SELECT_SNAPKV) {
        const char *w = end + 6;
        long pool = strtol(w, &end, 10);
        if (end == w || pool < 1 || pool > 255 || pool % 2 == 0) return -1;
        out->pool = (int)pool;
    }
    return *end == 0 ? 0 : -1;
}

void gw_kv_select_describe(const gw_kv_select *k, char *buf, size_t buflen) {
    const char *name = k->policy == GW_SELECT_SNAPKV ? "snapkv" : k->policy == GW_SELECT_H2O ? "h2o" : NULL;
    if (!name) snprintf(buf, buflen, "none");
    else {
        int n = k->budget > 0 ? snprintf(buf, buflen, "%s:%d", name, k->budget)
                              : snprintf(buf, buflen, "%s:%gx", name, k->ratio);
        if (k->pool > 0 && k->pool != GW_SNAPKV_POOL && n > 0 && (size_t)n < buflen)
            snprintf(buf + n, buflen - (size_t)n, ",pool=%d", k->pool);
    }
}

/* The policy's budget, recent window and pooling for a prompt of n tokens. */
static void select_plan(const gw_kv_select *k, int n, int *budget, int *recent, int *pool) {
    int b = k->budget > 0 ? k->budget : (int)ceil(n / (k->ratio > 1 ? k->ratio : 1));
    if (k->policy == GW_SELECT_SNAPKV) {
        *recent = GW_SNAPKV_WINDOW;
        *pool = k->pool > 0 ? k->pool : GW_SNAPKV_POOL;
    } else {
        *recent = b / 2;
        *pool = 1;
    }
    if (b < *recent) b = *recent;
    *budget = b;
}

int gw_kv_select_begin(gw_context *c, int seq, const gw_kv_select *k, int n_prompt) {
    if (k->policy == GW_SELECT_NONE) return 0;
    int budget, recent, pool;
    select_plan(k, n_prompt, &budget, &recent, &pool);
    if (n_prompt <= budget) return 0; /* nothing to drop */
    int from = k->policy == GW_SELECT_SNAPKV ? n_prompt - GW_SNAPKV_WINDOW : 0;
    return gw_seq_kv_score(c, seq, from < 0 ? 0 : from);
}

int gw_kv_select_end(gw_context *c, int seq, const gw_kv_select *k, int n_prompt) {
    if (k->policy == GW_SELECT_NONE || !seq_valid(c, seq) || !c->select[seq].score) return 0;
    int budget, recent, pool;
    select_plan(k, n_prompt, &budget, &recent, &pool);
    return gw_seq_kv_compress(c, seq, budget, recent, pool);
}

int gw_seq_kv_score(gw_context *c, int seq, int from_pos) {
    /* quantized pages: on the CPU (their gather requantizes there), not on the GPU yet */
    if (!seq_valid(c, seq) || (c->cuda && c->kv.type != GW_KV_F16) || c->stream[seq].n_window > 0) return -1;
    const gw_model *m = c->model;
    seq_select *z = &c->select[seq];
    if (from_pos < 0) {
        select_free(z);
        return 0;
    }
    const size_t n_scores = (size_t)m->n_layer * m->n_head_kv * c->slot_cap;
#ifdef GODWIT_CUDA
    if (c->cuda) { /* the forward adds to device scores; compression reads them back */
        if (!z->score_d) {
            if (gw_cuda_malloc((void **)&z->score_d, n_scores * sizeof(float)) != 0) return -1;
            /* (the legacy stream: synchronized here, as the engine's stream does not wait for it) */
            if (gw_cuda_memset(z->score_d, 0, n_scores * sizeof(float), NULL) != 0 || gw_cuda_sync(NULL) != 0) {
                select_free(z);
                return -1;
            }
        }
        if (!z->score && !(z->score = malloc(n_scores * sizeof(float)))) {
            select_free(z);
            return -1;
        }
        z->from_pos = from_pos;
        return 0;
    }
#endif
    if (!c->probs) {
        size_t per = (size_t)(m->n_head / m->n_head_kv) * c->slot_cap;
        c->probs = malloc((size_t)gw_threadpool_size(c->pool) * per * sizeof(float));
        if (!c->probs) return -1;
    }
    if (!z->score) {
        z->score = calloc(n_scores, sizeof(float));
        if (!z->score) return -1;
    }
    z->from_pos = from_pos;
    return 0;
}

int gw_seq_kv_compressed(const gw_context *c, int seq) {
    return seq_valid(c, seq) ? (int)c->select[seq].compressed : -1;
}

typedef struct {
    gw_context *c;
    int seq;
    int32_t budget, n_recent;
    int pool;
    int failed;
    int32_t *keep;       /* GPU pages: [n_layer * n_head_kv][budget] chosen slots, gathered after */
} compress_job;

typedef struct {
    float v;
    int32_t i;
} ranked;

static int by_score_desc(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int by_index(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* One (layer, KV head): rank the older slots by their pooled score, keep the
 * best budget - n_recent of them and the n_recent newest, in order. */
static void compress_task(void *arg, int64_t task, int thread) {
    (void)thread;
    compress_job *j = arg;
    gw_context *c = j->c;
    const int KV = c->model->n_head_kv, layer = (int)(task / KV), head = (int)(task % KV);
    const gw_kv_seq *s = &c->seqs[j->seq];
    const int32_t n = s->n_tokens, old = n - j->n_recent, top = j->budget - j->n_recent;
    const float *score = c->select[j->seq].score + (size_t)task * c->slot_cap;
    ranked *r = malloc(sizeof(ranked) * (old > 0 ? old : 1));
    int32_t *keep = malloc(sizeof(int32_t) * j->budget);
    if (!r || !keep) {
        j->failed = 1;
        free(r);
        free(keep);
        return;
    }
    /* average pooling along the slots (SnapKV clusters around the hits) */
    const int half = j->pool / 2;
    double run = 0;
    for (int32_t i = 0; i < old && i < half; i++) run += score[i];
    for (int32_t i = 0; i < old; i++) {
        if (i + half < old) run += score[i + half];
        if (i - half - 1 >= 0) run -= score[i - half - 1];
        r[i].v = (float)(run / j->pool);
        r[i].i = i;
    }
    qsort(r, (size_t)old, sizeof *r, by_score_desc);
    for (int32_t i = 0; i < top; i++) keep[i] = r[i].i;
    qsort(keep, (size_t)top, sizeof *keep, by_index);
    for (int32_t i = 0; i < j->n_recent; i++) keep[top + i] = old + i;
    if (j->keep) memcpy(j->keep + (size_t)task * j->budget, keep, sizeof(int32_t) * j->budget);
    else if (gw_kv_seq_gather(&c->kv, s, layer, head, keep, j->budget) != 0) j->failed = 1;
    free(r);
    free(keep);
}

int gw_seq_kv_compress(gw_context *c, int seq, int budget, int n_recent, int pool) {
    if (!seq_valid(c, seq) || !c->select[seq].score || budget < 1 || n_recent < 0 || n_recent > budget ||
        pool < 1)
        return -1;
    gw_kv_seq *s = &c->seqs[seq];
    const int32_t n = s->n_tokens;
    if (n > budget) {
        for (int32_t i = 0; i < s->n_blocks; i++)
            if (c->kv.refcount[s->blocks[i]] > 1) return -1; /* shared with the prefix cache */
        const int64_t tiles = (int64_t)c->model->n_layer * c->model->n_head_kv;
        compress_job j = {c, seq, budget, n_recent, pool, 0, NULL};
#ifdef GODWIT_CUDA
        if (c->cuda) { /* scores come back from the GPU; the choice is made here, the gather there */
            seq_select *z = &c->select[seq];
            j.keep = malloc((size_t)tiles * budget * sizeof(int32_t));
            if (!j.keep || gw_cuda_memcpy(z->score, z->score_d, (size_t)tiles * c->slot_cap * sizeof(float),
                                          GW_CUDA_D2H, NULL) != 0) {
                free(j.keep);
                return -1;
            }
        }
#endif
        gw_threadpool_run(c->pool, compress_task, &j, tiles);
#ifdef GODWIT_CUDA
        if (c->cuda && !j.failed && gw_cuda_engine_gather(c->cuda, s->blocks, s->n_blocks, j.keep, budget) != 0)
            j.failed = 1;
#endif
        free(j.keep);
        if (j.failed) return -1; /* out of memory: some tiles may have moved, the sequence is unusable */
        s->n_tokens = budget;
        gw_kv_seq_truncate(&c->kv, s, budget);
        c->select[seq].compressed += n - budget;
    }
    gw_seq_kv_score(c, seq, -1);
    return 0;
}

/* ------------------------------------------------------------ prefix cache */

int gw_context_set_prefix_cache(gw_context *c, bool on) {
    if (on && !c->prefix) {
        c->prefix = gw_prefix_cache_new(&c->kv);
        return c->prefix ? 0 : -1;
    }
    if (!on && c->prefix) {
        gw_prefix_cache_free(c->prefix);
        c->prefix = NULL;
    }
    return 0;
}

/* Blocks of tokens[0..n) the cache may give: whole blocks, leaving at least
 * the last token to compute. */
static int32_t prefix_max_blocks(const gw_context *c, int n) { return n > 1 ? (n - 1) / c->kv.block_size : 0; }

int gw_prefix_lookup(const gw_context *c, const int32_t *tokens, int n, int *n_idle) {
    if (n_idle) *n_idle = 0;
    int32_t max = prefix_max_blocks(c, n);
    if (!c->prefix || max == 0) return 0;
    int32_t *blocks = malloc((size_t)max * sizeof(int32_t));
    if (!blocks) return 0;
    int32_t m = gw_prefix_cache_match(c->prefix, tokens, max, blocks);
    int idle = 0;
    for (int32_t i = 0; i < m; i++) idle += c->kv.refcount[blocks[i]] == 1;
    free(blocks);
    if (n_idle) *n_idle = idle * c->kv.block_size;
    return m * c->kv.block_size;
}

int gw_seq_open_prefix(gw_context *c, const int32_t *tokens, int n) {
    int seq = gw_seq_open(c);
    int32_t max = prefix_max_blocks(c, n);
    if (seq < 0 || !c->prefix || max == 0) return seq;
    int32_t *blocks = malloc((size_t)max * sizeof(int32_t));
    if (!blocks) return seq; /* a cold start is still correct */
    int32_t m = gw_prefix_cache_match(c->prefix, tokens, max, blocks);
    gw_kv_seq_attach(&c->kv, &c->seqs[seq], blocks, m); /* on failure: cold start */
    free(blocks);
    return seq;
}

int gw_seq_cache_prefix(gw_context *c, int seq, const int32_t *tokens, int n) {
    /* a streaming sequence rewrites its blocks when it evicts */
    if (!c->prefix || !seq_valid(c, seq) || c->stream[seq].n_window > 0) return 0;
    const gw_kv_seq *s = &c->seqs[seq];
    if (n > s->n_tokens) n = s->n_tokens;
    return gw_prefix_cache_insert(c->prefix, tokens, s->blocks, n / c->kv.block_size);
}

void gw_context_prefix_cache_stats(const gw_context *c, gw_prefix_cache_stats *st) {
    memset(st, 0, sizeof *st);
    if (!c->prefix) return;
    st->cached_tokens = gw_prefix_cache_n_blocks(c->prefix) * c->kv.block_size;
    st->idle_tokens = c->kv.n_idle * c->kv.block_size;
    st->evicted_blocks = c->kv.n_evicted;
}

/* --------------------------------------------------------------- streaming */

int gw_seq_set_streaming(gw_context *c, int seq, int n_sink, int n_window) {
    if (!seq_valid(c, seq) || n_sink < 0 || n_window < 0 || (n_window == 0 && n_sink != 0) ||
        n_sink > INT32_MAX - n_window)
        return -1;
    if (c->kv.type != GW_KV_F16 && n_window > 0) return -1; /* quantized keys cannot be re-rotated in place */
    const gw_kv_seq *s = &c->seqs[seq];
    for (int32_t i = 0; i < s->n_blocks; i++)
        if (c->kv.refcount[s->blocks[i]] > 1) return -1; /* shared with the prefix cache */
    c->stream[seq].n_sink = n_sink;
    c->stream[seq].n_window = n_window;
    return 0;
}

void gw_seq_streaming_stats(const gw_context *c, int seq, gw_streaming_stats *st) {
    memset(st, 0, sizeof *st);
    if (!seq_valid(c, seq)) return;
    const seq_streaming *z = &c->stream[seq];
    st->n_sink = z->n_sink;
    st->n_window = z->n_window;
    st->evicted_tokens = z->evicted_tokens;
    st->evictions = z->evictions;
}

/* Tokens a streaming sequence holding n and about to get t more must evict
 * first (0 if they fit), or -1 if the t tokens cannot fit in its window even
 * with everything but the sinks evicted. At least the overflow, rounded up
 * to whole blocks so that the window moves once per block of tokens. */
static int32_t streaming_evict_count(const gw_context *c, int seq, int32_t t) {
    const seq_streaming *z = &c->stream[seq];
    const int32_t n = c->seqs[seq].n_tokens, cap = z->n_sink + z->n_window, bs = c->kv.block_size;
    if (z->n_window == 0 || (int64_t)n + t <= cap) return 0;
    int32_t kept = n < z->n_sink ? n : z->n_sink;
    if ((int64_t)kept + t > cap) return -1;
    int64_t e = ((int64_t)n + t - cap + bs - 1) / bs * bs;
    return e < n - z->n_sink ? (int32_t)e : n - z->n_sink;
}

typedef struct {
    gw_context *c;
    int seq;
    int32_t n_evict;
    gw_kv_rope rope;
} evict_job;

static void evict_task(void *arg, int64_t layer, int thread) {
    (void)thread;
    const evict_job *j = arg;
    gw_context *c = j->c;
    const gw_kv_seq *s = &c->seqs[j->seq];
    const int32_t from = c->stream[j->seq].n_sink + j->n_evict;
    /* checked by the caller: the sequence owns its blocks and the range is in them */
    gw_kv_seq_shift_layers(&c->kv, s, from, c->stream[j->seq].n_sink, s->n_tokens - from, &j->rope, (int)layer,
                           (int)layer + 1);
}

/* Evicts slots [n_sink, n_sink + n_evict) of a streaming sequence: the rest
 * of the window moves down after the sinks, its keys re-rotated by -n_evict
 * positions; blocks past the slots the sequence will use (keep_slots, its
 * batch included) go back to the pool. One layer per thread-pool task. */
static int streaming_evict(gw_context *c, int seq, int32_t n_evict, int32_t keep_slots) {
    const gw_model *m = c->model;
    gw_kv_seq *s = &c->seqs[seq];
#ifdef GODWIT_CUDA
    if (c->cuda) { /* the pages are on the GPU: one kernel pass per n_evict slots */
        const int32_t from = c->stream[seq].n_sink + n_evict;
        if (gw_cuda_engine_shift(c->cuda, s->blocks, s->n_blocks, from, c->stream[seq].n_sink, s->n_tokens - from) != 0)
            return -1;
    } else
#endif
    {
        evict_job j = {c, seq, n_evict, {m->rope_dim, m->rope_style == GW_ROPE_NEOX, c->inv_freq}};
        gw_threadpool_run(c->pool, evict_task, &j, m->n_layer);
    }
    s->n_tokens -= n_evict;
    gw_kv_seq_truncate(&c->kv, s, keep_slots);
    c->stream[seq].evicted_tokens += n_evict;
    c->stream[seq].evictions++;
    return 0;
}

/* ------------------------------------------------------------------ matmul */

/* Several matrices multiplied with the same input in one thread-pool job:
 * task i is a band of rows of one matrix against every token (the kernel
 * tiles the tokens itself and repacks each weight band once for all of
 * them). One job instead of one per matrix halves the synchronisations of a
 * decode step, where each job is only a few microseconds of work. */
typedef struct {
    int count;
    const gw_matrix *w[MAX_SHARED];
    const void *xq[MAX_SHARED];
    size_t x_stride[MAX_SHARED];
    float *y[MAX_SHARED];
    int64_t rows_per_task[MAX_SHARED];
    int64_t first_task[MAX_SHARED + 1];
    int64_t n;
} matmul_job;

static void matmul_task(void *arg, int64_t task, int thread) {
    (void)thread;
    const matmul_job *j = arg;
    int i = 0;
    while (task >= j->first_task[i + 1]) i++;
    const gw_matrix *w = j->w[i];
    int64_t r0 = (task - j->first_task[i]) * j->rows_per_task[i], r1 = r0 + j->rows_per_task[i];
    if (r1 > w->rows) r1 = w->rows;
    gw_matmul(w->type, w->data, w->row_bytes, j->xq[i], j->x_stride[i], w->cols, r0, r1, j->n, j->y[i], w->rows);
}

typedef struct {
    uint32_t type;
    const float *x;
    int64_t k;
    void *dst;
    size_t stride;
} quantize_job;

static void quantize_task(void *arg, int64_t row, int thread) {
    (void)thread;
    const quantize_job *j = arg;
    gw_quantize_row(j->type, j->x + row * j->k, (char *)j->dst + row * j->stride, j->k);
}

/* Converts n rows of X (k floats each) into the activation format `type`
 * at dst; returns the row stride. */
static size_t quantize_rows(gw_context *c, uint32_t type, const float *X, int64_t n, int64_t k, void *dst) {
    size_t stride = gw_row_bytes(type, k);
    quantize_job qj = {type, X, k, dst, stride};
    if (n >= 4)
        gw_threadpool_run(c->pool, quantize_task, &qj, n);
    else
        for (int64_t r = 0; r < n; r++) quantize_task(&qj, r, 0);
    return stride;
}

/* Y[i][n][W[i].rows] = X[n][W[i].cols] * W[i]^T for up to MAX_SHARED
 * matrices sharing one input: the input is converted once per distinct
 * activation format, then one job runs every matrix's row bands. */
static void matmul_shared_input(gw_context *c, const float *X, int64_t n, const gw_matrix *const *W,
                                float *const *Y, int count) {
    const int threads = gw_threadpool_size(c->pool);
    uint32_t types[MAX_SHARED];
    int n_types = 0;
    matmul_job j = {.count = count, .n = n};
    for (int i = 0; i < count; i++) {
        uint32_t vt = gw_vec_dot_type(W[i]->type);
        int slot = -1;
        for (int t = 0; t < n_types; t++)
            if (types[t] == vt) slot = t;
        void *buf;
        if (slot < 0) {
            slot = n_types++;
            types[slot] = vt;
            buf = (char *)c->xq + slot * c->xq_bytes;
            j.x_stride[i] = quantize_rows(c, vt, X, n, W[i]->cols, buf);
        } else {
            buf = (char *)c->xq + slot * c->xq_bytes;
            j.x_stride[i] = gw_row_bytes(vt, W[i]->cols);
        }
        j.w[i] = W[i];
        j.xq[i] = buf;
        j.y[i] = Y[i];
        /* Enough bands for load balance (4 per thread), in multiples of the
         * kernels' 16-row tiles. */
        int64_t rpt = (W[i]->rows + threads * 4 - 1) / (threads * 4);
        rpt = (rpt + 15) / 16 * 16;
        if (rpt < 16) rpt = 16;
        j.rows_per_task[i] = rpt;
        j.first_task[i + 1] = j.first_task[i] + (W[i]->rows + rpt - 1) / rpt;
    }
    gw_threadpool_run(c->pool, matmul_task, &j, j.first_task[count]);
}

static void matmul(gw_context *c, const gw_matrix *W, const float *X, int64_t n, float *Y) {
    const gw_matrix *ws[1] = {W};
    float *ys[1] = {Y};
    matmul_shared_input(c, X, n, ws, ys, 1);
}

/* ------------------------------------------------------------ element ops */

static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* Rotates one head vector in place with the token's cos/sin table. */
static void rope_apply(float *v, const float *cs, const float *sn, int rope_dim, gw_rope_style style) {
    const int half = rope_dim / 2;
    if (style == GW_ROPE_NORM) {
        for (int i = 0; i < half; i++) {
            float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * cs[i] - b * sn[i];
            v[2 * i + 1] = a * sn[i] + b * cs[i];
        }
    } else {
        for (int i = 0; i < half; i++) {
            float a = v[i], b = v[i + half];
            v[i] = a * cs[i] - b * sn[i];
            v[i + half] = a * sn[i] + b * cs[i];
        }
    }
}

static float silu(float x) { return x / (1.0f + expf(-x)); }

/* --------------------------------------------------------------- attention */

/* Prefill: one task per (tile, KV head), a tile being up to
 * GW_ATTN_MAX_TILE consecutive tokens of one sequence, so that each chunk of
 * keys and values is loaded once for all of them. Decode of a few long
 * sequences: one task per (token, KV head, split), a split being a range of
 * the token's cache slots, so that every thread works on one query
 * (flash-decoding); the partial results are merged afterwards. */
typedef struct {
    gw_context *c;
    const gw_batch *b;
    int layer;
    int n_split;
} attention_job;

static gw_attention_args attention_args(gw_context *c, const gw_batch *b, int layer, int t, int n_tok, int kvh,
                                        int thread) {
    const gw_model *m = c->model;
    const int group = m->n_head / m->n_head_kv;
    const size_t qd = (size_t)m->n_head * m->head_dim;
    gw_attention_args a = {
        .kv = &c->kv,
        .blocks = c->seqs[b->seq[t]].blocks,
        .layer = layer,
        .kv_head = kvh,
        .group = group,
        .n_tok = n_tok,
        .n_slots = c->tok_visible + t,
        .q = c->q + t * qd + (size_t)kvh * group * m->head_dim,
        .q_stride = qd,
        .out = c->att + t * qd + (size_t)kvh * group * m->head_dim,
        .out_stride = qd,
        .scale = 1.0f / sqrtf((float)m->head_dim),
        .scratch = c->attn_scratch + (size_t)thread * c->attn_scratch_floats,
    };
    return a;
}

static void attention_tile_task(void *arg, int64_t task, int thread) {
    const attention_job *j = arg;
    gw_context *c = j->c;
    const int KV = c->model->n_head_kv;
    int tile = (int)(task / KV), kvh = (int)(task % KV);
    int t0 = c->tile_start[tile], n = c->tile_start[tile + 1] - t0;
    gw_attention_args a = attention_args(c, j->b, j->layer, t0, n, kvh, thread);
    gw_attention(&a);
}

static void attention_split_task(void *arg, int64_t task, int thread) {
    const attention_job *j = arg;
    gw_context *c = j->c;
    const gw_model *m = c->model;
    int split = (int)(task % j->n_split);
    int kvh = (int)(task / j->n_split % m->n_head_kv);
    int t = (int)(task / j->n_split / m->n_head_kv);
    int group = m->n_head / m->n_head_kv;
    gw_attention_args a = attention_args(c, j->b, j->layer, t, 1, kvh, thread);
    int32_t visible = c->tok_visible[t];
    int32_t per = (visible + j->n_split - 1) / j->n_split;
    int32_t s0 = split * per, s1 = s0 + per < visible ? s0 + per : visible;
    float *part = c->attn_parts + (size_t)task * c->attn_part_floats;
    size_t GD = (size_t)group * m->head_dim;
    if (s0 >= s1) { /* empty range: contributes nothing */
        for (int g = 0; g < group; g++) part[GD + group + g] = 0.0f, part[GD + g] = -INFINITY;
        return;
    }
    gw_attention_partial(&a, s0, s1, part, part + GD, part + GD + group);
}

static void attention_merge_task(void *arg, int64_t task, int thread) {
    (void)thread;
    const attention_job *j = arg;
    gw_context *c = j->c;
    const gw_model *m = c->model;
    int group = m->n_head / m->n_head_kv;
    int kvh = (int)(task % m->n_head_kv);
    int64_t t = task / m->n_head_kv;
    size_t qd = (size_t)m->n_head * m->head_dim;
    gw_attention_merge(group, m->head_dim, c->attn_parts + (size_t)task * j->n_split * c->attn_part_floats,
                       j->n_split, c->attn_part_floats, c->att + t * qd + (size_t)kvh * group * m->head_dim);
}

/* Cuts the batch into attention tiles. */
static void make_tiles(gw_context *c, const gw_batch *b) {
    int n = 0;
    for (int t = 0; t < b->n_tokens; t++) {
        bool join = n > 0 && t - c->tile_start[n - 1] < GW_ATTN_MAX_TILE && b->seq[t] == b->seq[t - 1] &&
                    c->tok_slot[t] == c->tok_slot[t - 1] + 1;
        if (!join) c->tile_start[n++] = t;
    }
    c->tile_start[n] = b->n_tokens;
    c->n_tiles = n;
}

/* Splits per (token, KV head): enough tasks to keep every thread busy, each
 * covering at least 256 slots, within the partial-results buffer. */
static int attention_splits(const gw_context *c, const gw_batch *b) {
    const int KV = c->model->n_head_kv, T = b->n_tokens;
    const int threads = gw_threadpool_size(c->pool);
    if (T * KV >= 4 * threads) return 1;
    int32_t longest = 0;
    for (int t = 0; t < T; t++)
        if (c->tok_slot[t] + 1 > longest) longest = c->tok_slot[t] + 1;
    int n = (4 * threads + T * KV - 1) / (T * KV);
    while ((T * KV * n) % threads) n++; /* equal shares for every thread */
    if (n > longest / 256) n = longest / 256;
    if (n > c->n_batch / T) n = c->n_batch / T;
    return n < 1 ? 1 : n;
}

/* ----------------------------------------------------------------- forward */

typedef struct {
    gw_context *c;
    const gw_batch *b;
} batch_job;

static void embed_task(void *arg, int64_t t, int thread) {
    (void)thread;
    const batch_job *j = arg;
    const gw_model *m = j->c->model;
    const gw_matrix *E = &m->tok_embd;
    gw_dequantize_row(E->type, (const char *)E->data + (size_t)j->b->token[t] * E->row_bytes,
                      j->c->x + t * m->n_embd, m->n_embd);
}

/* Quantized KV: the blocks this batch filled are quantized now (the batch
 * itself attended to them in fp16). One block per thread-pool task. */
typedef struct {
    gw_context *c;
    int32_t *blocks;
} seal_job;

static void seal_task(void *arg, int64_t i, int thread) {
    (void)thread;
    seal_job *j = arg;
    gw_kv_seal(&j->c->kv, j->blocks[i]);
}

static int seal_full_blocks(gw_context *c, const gw_batch *b) {
    if (c->kv.type == GW_KV_F16) return 0;
    const int bs = c->kv.block_size;
    int32_t *full = c->filled_blocks;
    int64_t n = 0;
    for (int t = 0; t < b->n_tokens; t++)
        if (c->tok_slot[t] % bs == bs - 1) full[n++] = c->seqs[b->seq[t]].blocks[c->tok_slot[t] / bs];
    if (c->kv.external) return gw_kv_seal_blocks(&c->kv, full, (int32_t)n); /* one request to the device */
    seal_job j = {c, full};
    gw_threadpool_run(c->pool, seal_task, &j, n);
    return 0;
}

/* One KV head: every scoring token of the batch adds its attention
 * probabilities (summed over the head's query group) to its sequence's
 * score of this layer and head. */
static void score_task(void *arg, int64_t kvh, int thread) {
    const attention_job *j = arg;
    gw_context *c = j->c;
    const gw_model *m = c->model;
    const int group = m->n_head / m->n_head_kv;
    float *probs = c->probs + (size_t)thread * group * c->slot_cap;
    for (int t = 0; t < j->b->n_tokens; t++) {
        const seq_select *z = &c->select[j->b->seq[t]];
        if (!z->score || j->b->pos[t] < z->from_pos) continue;
        gw_attention_args a = attention_args(c, j->b, j->layer, t, 1, (int)kvh, thread);
        gw_attention_probs_add(&a, probs, z->score + ((size_t)j->layer * m->n_head_kv + kvh) * c->slot_cap);
    }
}

#ifdef GODWIT_CUDA
/* The GPU path: the batch as runs of consecutive slots of one sequence (the
 * cache blocks are already reserved), handed to the CUDA engine. */
static int forward_cuda(gw_context *c, const gw_batch *b, const int32_t *pos_shift, float *out, char *err,
                        size_t errlen) {
    const int T = b->n_tokens, bs = c->kv.block_size;
    int n_runs = 0, n_out = 0;
    for (int t = 0; t < T; t++) {
        const gw_kv_seq *s = &c->seqs[b->seq[t]];
        gw_cuda_run *r = n_runs ? &c->runs[n_runs - 1] : NULL;
        if (r && b->seq[t - 1] == b->seq[t] && c->tok_slot[t] == c->tok_slot[t - 1] + 1) {
            r->n++;
        } else {
            r = &c->runs[n_runs++];
            r->first = t;
            r->n = 1;
            r->blocks = s->blocks;
        }
        r->kv_len = c->tok_slot[t] + 1;
        r->n_blocks = (r->kv_len + bs - 1) / bs;
        if (b->logits && b->logits[t]) c->out_rows[n_out++] = t;
    }
    /* global slot = block * block_size + offset (tok_visible as scratch); a
     * quantized cache writes into the block's open page instead */
    const int32_t *open = c->kv.type != GW_KV_F16 ? c->kv.open : NULL;
    for (int t = 0; t < T; t++) {
        int32_t slot = c->tok_slot[t], blk = c->seqs[b->seq[t]].blocks[slot / bs];
        c->tok_visible[t] = (open ? open[blk] : blk) * bs + slot % bs;
    }
    if (open) {
        /* block tables as the kernels read them: open blocks as -1 - page */
        size_t need = 0;
        for (int i = 0; i < n_runs; i++) need += (size_t)c->runs[i].n_blocks;
        if (need > c->gpu_tables_cap) {
            int32_t *t = realloc(c->gpu_tables, need * sizeof *t);
            if (!t) {
                gw_set_err(err, errlen, "forward: out of memory");
                return -1;
            }
            c->gpu_tables = t;
            c->gpu_tables_cap = need;
        }
        int32_t *row = c->gpu_tables;
        for (int i = 0; i < n_runs; i++) {
            for (int j = 0; j < c->runs[i].n_blocks; j++) {
                const int32_t blk = c->runs[i].blocks[j];
                row[j] = open[blk] >= 0 ? -1 - open[blk] : blk;
            }
            c->runs[i].blocks = row;
            row += c->runs[i].n_blocks;
        }
    }
    /* positions as RoPE sees them: a streaming sequence's moved down by what it just evicted */
    for (int t = 0; t < T; t++) c->gpu_pos[t] = b->pos[t] - pos_shift[b->seq[t]];
    /* KV selection: the tokens whose attention scores their sequence's slots */
    int n_score = 0;
    for (int t = 0; t < T; t++) {
        const seq_select *z = &c->select[b->seq[t]];
        if (z->score_d && b->pos[t] >= z->from_pos) {
            c->score_tok[n_score] = t;
            c->score_ptr[n_score++] = z->score_d;
        }
    }
    gw_cuda_batch cb = {T, b->token, c->gpu_pos, c->tok_visible, n_runs, c->runs, n_out, c->out_rows,
                        n_score, c->score_tok, c->score_ptr, c->slot_cap};
    if (gw_cuda_engine_forward(c->cuda, &cb, out, err, errlen) != 0) {
        /* the pages of this batch may be half written: forget its tokens */
        for (int t = 0; t < T; t++) {
            gw_kv_seq *q = &c->seqs[b->seq[t]];
            gw_kv_seq_truncate(&c->kv, q, q->n_tokens);
        }
        return -1;
    }
    for (int t = 0; t < T; t++) c->seqs[b->seq[t]].n_tokens = c->tok_slot[t] + 1;
    if (seal_full_blocks(c, b) != 0) {
        gw_set_err(err, errlen, "forward: sealing the filled KV blocks on the GPU failed");
        return -1;
    }
    return 0;
}
#endif

int gw_forward(gw_context *c, const gw_batch *b, float *out, char *err, size_t errlen) {
    const gw_model *m = c->model;
    const int T = b->n_tokens;
    if (T <= 0) return 0;
    if (T > c->n_batch) {
        gw_set_err(err, errlen, "forward: batch of %d tokens exceeds n_batch %d", T, c->n_batch);
        return -1;
    }
    /* Validate and assign cache slots: each sequence's tokens follow on from
     * its cache (after a streaming sequence's eviction, which is planned here
     * and done once the blocks are reserved, so that a failure changes
     * nothing). */
    int32_t next_slot[MAX_SEQS], n_in_batch[MAX_SEQS], n_evict[MAX_SEQS], pos_shift[MAX_SEQS];
    for (int t = 0; t < T; t++) {
        int s = b->seq[t];
        if (!seq_valid(c, s)) {
            gw_set_err(err, errlen, "forward: token %d names sequence %d, which is not open", t, s);
            return -1;
        }
        if (b->token[t] < 0 || b->token[t] >= m->n_vocab) {
            gw_set_err(err, errlen, "forward: token id %d out of range [0, %d)", b->token[t], m->n_vocab);
            return -1;
        }
        next_slot[s] = c->seqs[s].n_tokens;
        n_in_batch[s] = 0;
        n_evict[s] = pos_shift[s] = 0;
    }
    for (int t = 0; t < T; t++) {
        int s = b->seq[t];
        if (c->stream[s].n_window > 0 && b->pos[t] != c->seqs[s].n_tokens + n_in_batch[s]) {
            gw_set_err(err, errlen,
                       "forward: streaming sequence %d: token %d has position %d, expected %d "
                       "(gw_seq_len + its place in the batch)",
                       s, t, b->pos[t], c->seqs[s].n_tokens + n_in_batch[s]);
            return -1;
        }
        n_in_batch[s]++;
    }
    for (int t = 0; t < T; t++) {
        int s = b->seq[t];
        if (c->stream[s].n_window == 0 || n_in_batch[s] == 0) continue;
        int32_t e = streaming_evict_count(c, s, n_in_batch[s]);
        if (e < 0) {
            gw_set_err(err, errlen,
                       "forward: streaming sequence %d: a chunk of %d tokens does not fit in its window of %d "
                       "(+ %d sinks); feed it in smaller chunks",
                       s, n_in_batch[s], c->stream[s].n_window, c->stream[s].n_sink);
            return -1;
        }
        const gw_kv_seq *q = &c->seqs[s];
        for (int32_t i = 0; e > 0 && i < q->n_blocks; i++) {
            if (c->kv.refcount[q->blocks[i]] > 1) {
                gw_set_err(err, errlen, "forward: streaming sequence %d shares KV blocks and cannot evict", s);
                return -1;
            }
        }
        n_evict[s] = pos_shift[s] = e;
        next_slot[s] -= e;
        n_in_batch[s] = 0; /* planned: skip the sequence's other tokens */
    }
    for (int t = 0; t < T; t++) {
        int s = b->seq[t];
        c->tok_slot[t] = next_slot[s]++;
        c->tok_visible[t] = c->tok_slot[t] + 1;
    }
    /* Reserve KV blocks; on failure give back the blocks beyond what each
     * sequence held (its n_tokens is only updated at the end), so that no
     * sequence changes. */
    for (int t = 0; t < T; t++) {
        int s = b->seq[t];
        if (gw_kv_seq_reserve(&c->kv, &c->seqs[s], next_slot[s]) != 0) {
            for (int u = 0; u < T; u++) {
                gw_kv_seq *q = &c->seqs[b->seq[u]];
                gw_kv_seq_truncate(&c->kv, q, q->n_tokens);
            }
            gw_set_err(err, errlen, "forward: KV cache full (%d tokens of context in use, n_ctx %d)",
                    (c->kv.n_blocks - gw_kv_pool_available(&c->kv)) * c->kv.block_size, c->n_ctx);
            return -1;
        }
    }
    /* The blocks are there: evict (next_slot is now where each sequence ends). */
    for (int t = 0; t < T; t++) {
        int s = b->seq[t];
        if (n_evict[s] > 0) {
            if (streaming_evict(c, s, n_evict[s], next_slot[s]) != 0) {
                gw_set_err(err, errlen, "forward: streaming sequence %d: moving its window on the GPU failed", s);
                return -1;
            }
            n_evict[s] = 0;
        }
    }

#ifdef GODWIT_CUDA
    if (c->cuda) return forward_cuda(c, b, pos_shift, out, err, errlen);
#endif

    const int E = m->n_embd, H = m->n_head, KV = m->n_head_kv, D = m->head_dim, F = m->n_ff;
    const int half = m->rope_dim / 2;
    const size_t qd = (size_t)H * D, kvd = (size_t)KV * D;

    /* RoPE tables for each token's position (a streaming sequence's moved
     * down by what it just evicted: its place in the cache). */
    for (int t = 0; t < T; t++) {
        const int32_t pos = b->pos[t] - pos_shift[b->seq[t]];
        for (int i = 0; i < half; i++) {
            float ang = (float)pos * c->inv_freq[i];
            c->rope_cos[(size_t)t * half + i] = cosf(ang);
            c->rope_sin[(size_t)t * half + i] = sinf(ang);
        }
    }

    int n_scoring = 0; /* tokens that add their attention to a selection score */
    for (int t = 0; t < T; t++) {
        const seq_select *z = &c->select[b->seq[t]];
        n_scoring += z->score && b->pos[t] >= z->from_pos;
    }

    batch_job bj = {c, b};
    gw_threadpool_run(c->pool, embed_task, &bj, T);
    const int n_split = attention_splits(c, b);
    make_tiles(c, b);

    for (int l = 0; l < m->n_layer; l++) {
        const gw_layer *L = &m->layers[l];
        for (int t = 0; t < T; t++) rmsnorm(c->xn + (size_t)t * E, c->x + (size_t)t * E, L->attn_norm, E, m->norm_eps);
        {
            const gw_matrix *ws[3] = {&L->wq, &L->wk, &L->wv};
            float *ys[3] = {c->q, c->k, c->v};
            matmul_shared_input(c, c->xn, T, ws, ys, 3);
        }
        for (int t = 0; t < T; t++) {
            float *qt = c->q + t * qd, *kt = c->k + t * kvd, *vt = c->v + t * kvd;
            if (L->bq)
                for (size_t i = 0; i < qd; i++) qt[i] += L->bq[i];
            if (L->bk)
                for (size_t i = 0; i < kvd; i++) kt[i] += L->bk[i];
            if (L->bv)
                for (size_t i = 0; i < kvd; i++) vt[i] += L->bv[i];
            const float *cs = c->rope_cos + (size_t)t * half, *sn = c->rope_sin + (size_t)t * half;
            for (int h = 0; h < H; h++) rope_apply(qt + h * D, cs, sn, m->rope_dim, m->rope_style);
            for (int h = 0; h < KV; h++) rope_apply(kt + h * D, cs, sn, m->rope_dim, m->rope_style);
            /* append to the cache */
            const gw_kv_seq *s = &c->seqs[b->seq[t]];
            int32_t slot = c->tok_slot[t];
            int32_t blk = s->blocks[slot / c->kv.block_size];
            for (int h = 0; h < KV; h++)
                gw_kv_store(&c->kv, blk, l, h, slot % c->kv.block_size, kt + h * D, vt + h * D);
        }
        attention_job aj = {c, b, l, n_split};
        if (n_split == 1) {
            gw_threadpool_run(c->pool, attention_tile_task, &aj, (int64_t)c->n_tiles * KV);
        } else {
            gw_threadpool_run(c->pool, attention_split_task, &aj, (int64_t)T * KV * n_split);
            gw_threadpool_run(c->pool, attention_merge_task, &aj, (int64_t)T * KV);
        }
        if (n_scoring > 0) gw_threadpool_run(c->pool, score_task, &aj, KV);
        /* x += Wo * att (Wo output into xn as scratch) */
        matmul(c, &L->wo, c->att, T, c->xn);
        for (size_t i = 0; i < (size_t)T * E; i++) c->x[i] += c->xn[i];

        for (int t = 0; t < T; t++) rmsnorm(c->xn + (size_t)t * E, c->x + (size_t)t * E, L->ffn_norm, E, m->norm_eps);
        {
            const gw_matrix *ws[2] = {&L->w_gate, &L->w_up};
            float *ys[2] = {c->gate, c->up};
            matmul_shared_input(c, c->xn, T, ws, ys, 2);
        }
        for (size_t i = 0; i < (size_t)T * F; i++) c->gate[i] = silu(c->gate[i]) * c->up[i];
        matmul(c, &L->w_down, c->gate, T, c->xn);
        for (size_t i = 0; i < (size_t)T * E; i++) c->x[i] += c->xn[i];
    }

    for (int t = 0; t < T; t++) c->seqs[b->seq[t]].n_tokens = c->tok_slot[t] + 1;
    seal_full_blocks(c, b);

    /* Final norm and output head, only for the tokens that asked. */
    int n_out = 0;
    for (int t = 0; t < T; t++) {
        if (b->logits && b->logits[t]) {
            rmsnorm(c->xn + (size_t)n_out * E, c->x + (size_t)t * E, m->output_norm, E, m->norm_eps);
            n_out++;
        }
    }
    if (n_out > 0) matmul(c, &m->output, c->xn, n_out, out);
    return 0;
}
