/* godwit public C API: load a model, open a context (KV cache + threads),
 * manage sequences, run forward passes over flat batches of tokens, sample.
 * The CLI (src/cli/) uses only this header plus the tokenizer's. */
#ifndef GODWIT_H
#define GODWIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gw_model gw_model;
typedef struct gw_context gw_context;
struct gw_tokenizer;

/* ---- model ---- */
gw_model *gw_model_load(const char *path, char *err, size_t errlen);
void gw_model_free(gw_model *m);
const struct gw_tokenizer *gw_model_tokenizer(const gw_model *m);
int gw_model_n_vocab(const gw_model *m);
int gw_model_n_ctx_train(const gw_model *m);
const char *gw_model_chat_template(const gw_model *m); /* NULL if none */
/* Bytes of the weight matrices a decode step reads (the embedding counted
 * once, as the output head when tied). */
size_t gw_model_weight_bytes(const gw_model *m);
/* One-line description: architecture, size, quantization. */
void gw_model_describe(const gw_model *m, char *buf, size_t buflen);

/* ---- context ---- */
typedef struct {
    int n_ctx;          /* KV slots available in total (all sequences) */
    int n_batch;        /* most tokens in one forward pass */
    int n_threads;      /* 0: all cores */
    int kv_block_size;  /* tokens per KV block; 0: 16, or 32 for a quantized KV cache */
    int device;         /* GW_DEVICE_CPU (default) or GW_DEVICE_CUDA (GPU 0; CUDA_VISIBLE_DEVICES picks) */
    int kv_type;        /* GW_KV_F16 (default), GW_KV_INT8 or GW_KV_INT4: see below */
} gw_context_params;

/* KV cache page formats. INT8 and INT4 are KIVI's: keys quantized per
 * channel and values per token, in groups of 32 with an fp16 scale and
 * minimum each; a block's tokens stay in fp16 until the block is full, so
 * the tokens of the current block (and of the batch being computed) are
 * always exact. They need a kv_block_size that is a multiple of 32 and a
 * head size that is one too, on the CPU (the CUDA path is not done yet), and
 * no streaming (its keys are re-rotated in place). */
enum { GW_KV_F16 = 0, GW_KV_INT8 = 1, GW_KV_INT4 = 2 };
const char *gw_kv_type_name(int kv_type); /* "f16", "int8", "int4" */

enum { GW_DEVICE_CPU = 0, GW_DEVICE_CUDA = 1 };
/* 1 if this build has the CUDA backend (-DGODWIT_CUDA=ON). */
int gw_cuda_available(void);

gw_context_params gw_context_default_params(void);
gw_context *gw_context_new(gw_model *m, const gw_context_params *p, char *err, size_t errlen);
void gw_context_free(gw_context *c);
int gw_context_n_ctx(const gw_context *c);
int gw_context_n_batch(const gw_context *c);
int gw_context_n_threads(const gw_context *c);
size_t gw_context_kv_bytes_per_token(const gw_context *c);
/* KV pool occupancy, for schedulers: tokens the free blocks can hold (a
 * sequence also fills the unused tail of its last block first), and the
 * tokens per block. Blocks held only by the prefix cache count as free: they
 * are reclaimed when a sequence needs them. */
int gw_context_kv_free_tokens(const gw_context *c);
int gw_context_kv_block_size(const gw_context *c);
/* "cpu, 8 threads" or the GPU, its memory use and options. */
void gw_context_describe_device(const gw_context *c, char *buf, size_t buflen);

/* ---- sequences: each owns a block table in the paged KV cache ---- */
int gw_seq_open(gw_context *c);                 /* new sequence id, or -1 */
void gw_seq_close(gw_context *c, int seq);      /* frees its KV blocks */
int gw_seq_len(const gw_context *c, int seq);   /* tokens in its KV cache */
void gw_seq_truncate(gw_context *c, int seq, int n); /* keep the first n */

/* ---- prefix cache: sequences start on KV blocks already computed ----
 * Off by default. When on, full KV blocks offered with gw_seq_cache_prefix
 * stay in a tree keyed by their tokens after their sequence closes, and a
 * sequence opened with gw_seq_open_prefix starts on the longest cached
 * prefix of its tokens (whole blocks), sharing those blocks read-only. Blocks
 * only the cache holds are reclaimed, least recently used first, when the
 * pool runs short, so the cache never makes a forward pass fail. Outputs do
 * not change: a block's keys and values depend only on the tokens before
 * and in it, as long as the forward pass computes a token the same way
 * however the batch around it is cut (the CPU backend does; the scheduler
 * test checks cached against cold outputs token for token). */
/* Turns the cache on or off (off drops it). 0, or -1 out of memory. */
int gw_context_set_prefix_cache(gw_context *c, bool on);
/* Tokens of tokens[0..n) the cache would give a new sequence (a multiple of
 * the block size, at most n - 1: the last token is always computed, as its
 * logits are needed); *n_idle (may be NULL) gets how many of them are in
 * blocks no sequence uses, which gw_context_kv_free_tokens counts as free
 * until a sequence takes them. 0 when the cache is off. Changes nothing. */
int gw_prefix_lookup(const gw_context *c, const int32_t *tokens, int n, int *n_idle);
/* gw_seq_open, then the sequence starts on the cached prefix of
 * tokens[0..n) that gw_prefix_lookup reports: gw_seq_len gives its length,
 * and the next token to compute is tokens[gw_seq_len]. -1 if no sequence
 * slot is free. */
int gw_seq_open_prefix(gw_context *c, const int32_t *tokens, int n);
/* Offers the full blocks among the first n tokens of the sequence's KV to
 * the cache; tokens[0..n) are the tokens whose KV the sequence holds (n is
 * capped at gw_seq_len). Call it as blocks fill and before closing. Returns
 * the number of blocks newly cached (0 when the cache is off). */
int gw_seq_cache_prefix(gw_context *c, int seq, const int32_t *tokens, int n);
typedef struct {
    int cached_tokens;        /* tokens in blocks the cache holds */
    int idle_tokens;          /* of those, in blocks no sequence uses */
    uint64_t evicted_blocks;  /* blocks reclaimed from the cache so far */
} gw_prefix_cache_stats;
void gw_context_prefix_cache_stats(const gw_context *c, gw_prefix_cache_stats *st);

/* ---- streaming: attention sinks + a sliding window (StreamingLLM) ----
 * A streaming sequence keeps the KV of its first n_sink tokens (the sinks)
 * and of at most its last n_window tokens, in n_sink + n_window slots; the
 * tokens between are evicted, so it can run indefinitely in bounded memory.
 * gw_forward evicts before a batch that would not fit: the oldest non-sink
 * tokens, at least as many as the batch needs, rounded up to whole KV blocks
 * (so the window is rewritten once per block, not once per token; the
 * window then holds between n_window - block_size + 1 and n_window tokens).
 * The kept window moves down to follow the sinks and its keys are re-rotated
 * so that positions are places in the cache, as in the paper: positions stay
 * below n_sink + n_window whatever the length of the stream. Each move
 * rounds the keys to fp16 again (at most n_window / block_size times per
 * token).
 * Positions: a caller gives a streaming sequence's tokens the positions
 * gw_seq_len, gw_seq_len + 1, ... (gw_seq_len read before the call, as for
 * any sequence); gw_forward refuses other positions, and applies the
 * eviction's shift itself. The tokens of one sequence in one batch must fit
 * in its window (n_window; more if fewer than n_sink tokens are cached).
 * Turning streaming on changes nothing until a batch would not fit: with a
 * window that holds everything, logits are exactly the dense ones.
 * Returns 0; -1 for bad arguments (n_sink < 0, n_window < 1 unless both are
 * 0, which turns streaming off), a sequence holding prefix-cache blocks
 * (they are shared and must not be rewritten), or a quantized KV cache (keys
 * are re-rotated in place). On the GPU the window moves with
 * gw_cuda_kv_shift. A streaming sequence
 * offers nothing to the prefix cache (gw_seq_cache_prefix returns 0). */
int gw_seq_set_streaming(gw_context *c, int seq, int n_sink, int n_window);
typedef struct {
    int n_sink, n_window;     /* 0, 0: streaming off */
    int64_t evicted_tokens;   /* tokens evicted so far */
    int64_t evictions;        /* times the window moved */
} gw_streaming_stats;
/* The sequence's streaming settings and what it evicted (zeros if seq is not open). */
void gw_seq_streaming_stats(const gw_context *c, int seq, gw_streaming_stats *st);

/* ---- KV selection: prompt compression by eviction (SnapKV, H2O) ----
 * gw_seq_kv_score starts collecting, for each of the sequence's tokens
 * computed from now on at a position >= from_pos, its attention
 * probabilities per (layer, KV head, cached slot), summed over the query
 * heads that share the KV head (from_pos < 0 stops and drops them).
 * gw_seq_kv_compress then keeps `budget` slots per (layer, KV head): the
 * n_recent newest, and the budget - n_recent older ones with the highest
 * score after an average pooling `pool` slots wide; every KV head keeps its
 * own choice (GQA-aware: one choice per KV head, not per query head). Kept
 * slots move down in order, the blocks past the budget go back to the pool,
 * and collecting stops. Nothing happens if the sequence holds <= budget.
 *   SnapKV: score from the last 32 prompt tokens (the observation window),
 *           n_recent 32, pool 7.
 *   H2O:    score from every prompt token (accumulated attention: the heavy
 *           hitters), n_recent budget / 2, pool 1.
 * Keys keep the rotation of their original positions, so the tokens that
 * follow take positions gw_seq_len + gw_seq_kv_compressed (the prompt's
 * length and on), not gw_seq_len. Scoring costs one extra pass over the
 * keys per scoring token (cheap for SnapKV's window, a second attention for
 * H2O). Both return 0, or -1: bad arguments, a CUDA context, a quantized KV
 * cache or a streaming sequence (not supported together yet), prefix-cache
 * blocks (shared: cannot be rewritten), out of memory. */
int gw_seq_kv_score(gw_context *c, int seq, int from_pos);
int gw_seq_kv_compress(gw_context *c, int seq, int budget, int n_recent, int pool);
/* Tokens gw_seq_kv_compress dropped from the sequence so far. */
int gw_seq_kv_compressed(const gw_context *c, int seq);

/* A compression policy with its budget, as the CLI, the server and the
 * evaluation harness take it: keep `budget` tokens, or (budget 0) the
 * prompt's length / ratio, rounded up; never less than the policy's recent
 * window. */
enum { GW_SELECT_NONE = 0, GW_SELECT_SNAPKV = 1, GW_SELECT_H2O = 2 };
typedef struct {
    int policy;     /* GW_SELECT_* */
    int budget;     /* tokens kept; 0: use ratio */
    double ratio;   /* KV reduction factor (e.g. 4) when budget is 0 */
    int pool;       /* SnapKV's pooling width (odd); 0: GW_SNAPKV_POOL */
} gw_kv_select;
#define GW_SNAPKV_WINDOW 32 /* observation window and recent tokens kept */
#define GW_SNAPKV_POOL 7    /* the paper's kernel */
/* Parses "snapkv:1024", "h2o:4x", "snapkv:4x,pool=15" (SnapKV only: an odd
 * pooling width 1..255), "none"; 0, or -1 if malformed. */
int gw_kv_select_parse(const char *s, gw_kv_select *out);
/* "snapkv:4x", "h2o:1024", "snapkv:4x,pool=15" or "none". */
void gw_kv_select_describe(const gw_kv_select *k, char *buf, size_t buflen);
/* Before a prompt of n tokens is fed to a fresh sequence: starts the
 * policy's scoring (nothing for GW_SELECT_NONE). After it: compresses.
 * 0, or -1 as gw_seq_kv_score / gw_seq_kv_compress. */
int gw_kv_select_begin(gw_context *c, int seq, const gw_kv_select *k, int n_prompt);
int gw_kv_select_end(gw_context *c, int seq, const gw_kv_select *k, int n_prompt);

/* ---- forward ---- */
/* A flat batch: token i belongs to sequence seq[i] at position pos[i].
 * Within one sequence tokens must be consecutive and follow on from what its
 * KV cache holds (pos == gw_seq_len at the time). logits[i] != 0 asks for that
 * token's next-token logits. */
typedef struct {
    int n_tokens;
    const int32_t *token;
    const int32_t *seq;
    const int32_t *pos;
    const int8_t *logits;
} gw_batch;

/* Runs the batch (n_tokens <= n_batch). Writes n_vocab floats per requested
 * token, in batch order, to out. Returns 0, or -1 with a message in err (bad
 * token id, positions out of order, KV cache full, a streaming sequence's
 * chunk larger than its window). On error no sequence has changed. */
int gw_forward(gw_context *c, const gw_batch *b, float *out, char *err, size_t errlen);

/* ---- sampling ---- */
typedef struct {
    float temperature;      /* 0: greedy */
    int top_k;              /* 0: off */
    float top_p;            /* 1: off */
    float min_p;            /* 0: off */
    float repeat_penalty;   /* 1: off */
    int repeat_last_n;      /* tokens of history the penalty looks at */
    uint64_t seed;
} gw_sampler_params;

typedef struct gw_sampler gw_sampler;
gw_sampler_params gw_sampler_default_params(void);
gw_sampler *gw_sampler_new(const gw_sampler_params *p, int n_vocab);
void gw_sampler_free(gw_sampler *s);
/* Picks a token from logits (modified in place) given the recent history. */
int32_t gw_sample(gw_sampler *s, float *logits, const int32_t *history, int n_history);

#ifdef __cplusplus
}
#endif
#endif
