/* The forward pass on an NVIDIA GPU: a model's weights, its paged KV cache and
 * the activations in device memory, run with the kernels of gw_cuda.h.
 *
 * gw_forward (src/forward.c) keeps doing the host-side bookkeeping for both
 * backends (validation, block reservation in the KV pool, the prefix cache);
 * with a CUDA context it hands the batch to gw_cuda_engine_forward as *runs*:
 * maximal groups of consecutive tokens of one sequence at consecutive cache
 * slots. A run of one token is a decode step (flash-decoding kernel), a longer
 * run is a prefill chunk (FlashAttention-2 kernel); one forward mixes both.
 *
 * Compiled only with -DGODWIT_CUDA=ON (the main build needs no CUDA). */
#ifndef GODWIT_CUDA_ENGINE_H
#define GODWIT_CUDA_ENGINE_H
#include <stddef.h>
#include <stdint.h>

struct gw_model;
typedef struct gw_cuda_engine gw_cuda_engine;

typedef struct {
    int32_t first, n;      /* tokens [first, first + n) of the batch */
    int32_t kv_len;        /* slots the run's last token sees (its slot + 1) */
    const int32_t *blocks; /* the sequence's block table */
    int32_t n_blocks;      /* entries of blocks[] needed: ceil(kv_len / block_size) */
} gw_cuda_run;

typedef struct {
    int n_tokens;
    const int32_t *token, *pos;
    const int32_t *slot;   /* global cache slot: block * block_size + offset */
    int n_runs;
    const gw_cuda_run *runs; /* cover the tokens in order */
    int n_out;
    const int32_t *out_rows; /* tokens whose logits are wanted, in output order */
    /* KV selection: tokens whose attention probabilities add to a score array
     * (SnapKV, H2O): score_tok[i]'s go to score_ptr[i] (device memory,
     * [layer][kv head][score_cap] floats), for the slots it sees */
    int n_score;
    const int32_t *score_tok;
    float *const *score_ptr;
    int64_t score_cap;
} gw_cuda_batch;

/* Uploads the model (F32 matrices become BF16; every other type stays as
 * stored) and allocates the KV pages for n_blocks blocks of block_size slots
 * and activations for n_batch tokens, after checking the GPU and that all of
 * it fits (the message says how much is needed and free). inv_freq: the RoPE
 * frequencies forward.c computed (rope_dim / 2 floats). kv_type: GW_KV_F16
 * (pages of bf16 on the GPU), GW_KV_INT8 or GW_KV_INT4 (KIVI pages as on the
 * CPU: sealed blocks of codes, and max_open bf16 open pages; block tables
 * then name open pages as -1 - page and slots of new tokens are open-page
 * slots, see gw_cuda.h). */
gw_cuda_engine *gw_cuda_engine_new(const struct gw_model *m, const float *inv_freq, int32_t n_blocks,
                                   int block_size, int n_batch, int kv_type, int32_t max_open, char *err,
                                   size_t errlen);
void gw_cuda_engine_free(gw_cuda_engine *e);
/* Runs the batch through the model; writes n_out rows of n_vocab logits to
 * out (host memory). 0, or -1 with a message. */
int gw_cuda_engine_forward(gw_cuda_engine *e, const gw_cuda_batch *b, float *out, char *err, size_t errlen);
/* Copies the KV contents of block src into block dst (copy-on-write; a
 * quantized cache: the sealed codes and parameters). */
int gw_cuda_engine_copy_block(void *engine, int32_t dst, int32_t src);
/* Quantized caches (the gw_kv_device hooks of kv/kv_cache.h): open page src
 * into open page dst; open pages[i] quantized into blocks[i]; sealed block
 * dequantized into an open page. */
int gw_cuda_engine_copy_page(void *engine, int32_t dst, int32_t src);
/* KV selection: for each layer l and KV head h, slot keep[(l * n_kv_heads + h)
 * * budget + i] of the sequence with this block table moves to slot i. */
int gw_cuda_engine_gather(gw_cuda_engine *e, const int32_t *blocks, int32_t n_blocks, const int32_t *keep,
                          int32_t budget);
int gw_cuda_engine_seal(void *engine, const int32_t *pages, const int32_t *blocks, int32_t n);
int gw_cuda_engine_unseal(void *engine, int32_t block, int32_t page);
/* Streaming: slots [src, src + n) of the sequence with this block table move
 * down to [dst, dst + n), keys re-rotated (gw_cuda_kv_shift). 0 or -1. */
int gw_cuda_engine_shift(gw_cuda_engine *e, const int32_t *blocks, int32_t n_blocks, int32_t src, int32_t dst,
                         int32_t n);
/* "NVIDIA H200, compute capability 9.0, ...; weights 15.0 GiB, KV 16.0 GiB" */
void gw_cuda_engine_describe(const gw_cuda_engine *e, char *buf, size_t buflen);
#endif
