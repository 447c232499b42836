/* godwit CUDA backend: the ops of the forward pass (src/forward.c) on an
 * NVIDIA GPU, behind a plain C ABI (callable from C, and from Python through
 * ctypes: every argument is a pointer, an integer or a float).
 *
 * Conventions
 * - Every pointer argument named as device memory is a device pointer; the
 *   small structs (gw_cuda_kv) are host structs passed by pointer and read
 *   when the function is called.
 * - `stream` is a cudaStream_t passed as void* (NULL: the legacy default
 *   stream), so that this header needs no CUDA header and C code can include it.
 * - Functions return GW_CUDA_OK (0) or a negative gw_cuda_status; the reason is
 *   then in gw_cuda_last_error() (per thread). Nothing here exits or prints.
 *   Launches are asynchronous: a fault inside a kernel shows up at the next
 *   synchronisation (gw_cuda_sync returns it with a message).
 * - Tensors are row-major. bf16 values are uint16_t (the top half of an IEEE
 *   float, round-to-nearest-even when converting, as gw_fp32_to_bf16).
 *
 * Precision choices (see docs/ARCHITECTURE.md when this is integrated)
 * - The residual stream is f32 ([tokens][n_embd]); rmsnorm writes bf16 (input of
 *   the cuBLASLt GEMMs) or f32. Matrix products accumulate in f32.
 * - The KV cache holds bf16 (the CPU cache holds fp16): the tensor-core
 *   attention kernels take bf16 operands for Q, K, V and P, like Hugging Face's
 *   bf16 inference, with f32 scores, softmax and accumulators.
 *
 * Weight formats: GGUF/ggml tensor type numbers (model/tensor_types.h), the
 * bytes exactly as in the GGUF file. Supported by gemv / dequantize / embed:
 * F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K (F32 too for
 * dequantize and embed). The weight base pointer must be 16-byte aligned
 * (cudaMalloc'd memory, or a GGUF data section uploaded whole: tensor offsets
 * are 32-aligned there). */
#ifndef GODWIT_GW_CUDA_H
#define GODWIT_GW_CUDA_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    GW_CUDA_OK = 0,
    GW_CUDA_ERR_NO_DEVICE = -1,   /* no GPU, or no usable driver */
    GW_CUDA_ERR_ARCH = -2,        /* compute capability not supported by this build */
    GW_CUDA_ERR_NO_MEMORY = -3,   /* not enough GPU memory */
    GW_CUDA_ERR_ARG = -4,         /* bad argument (shape, alignment, type) */
    GW_CUDA_ERR_UNSUPPORTED = -5, /* valid but not implemented (head_dim 96, Q2_K...) */
    GW_CUDA_ERR_CUDA = -6,        /* a CUDA runtime call or a kernel launch failed */
    GW_CUDA_ERR_BLAS = -7         /* cuBLASLt failed */
} gw_cuda_status;

typedef enum { GW_CUDA_F32 = 0, GW_CUDA_BF16 = 1 } gw_cuda_dtype;

/* The message of this thread's last failure ("" if none). */
const char *gw_cuda_last_error(void);

/* ---- device ---- */

/* Checks that GPU `device` exists, that this build has code for it (compute
 * capability >= 8.0 and one of the architectures compiled in), selects it
 * (cudaSetDevice), and that need_bytes of device memory are free. On failure
 * returns GW_CUDA_ERR_NO_DEVICE / _ARCH / _NO_MEMORY with a one-line message in
 * err (if not NULL) and in gw_cuda_last_error(). */
int gw_cuda_device_check(int device, size_t need_bytes, char *err, size_t errlen);
/* "NVIDIA H200, compute capability 9.0, 132 SMs, 139.8 GiB (137.2 free)" */
int gw_cuda_device_describe(int device, char *buf, size_t buflen);
/* Architectures compiled into this build, e.g. "90". */
const char *gw_cuda_build_archs(void);
/* cudaMalloc with a message naming the size and the free memory on failure. */
int gw_cuda_malloc(void **p, size_t bytes);
int gw_cuda_free(void *p);
/* Waits for the stream; reports asynchronous kernel faults. */
int gw_cuda_sync(void *stream);

/* Streams, copies and pinned host memory (thin wrappers that record a message
 * on failure). kind: GW_CUDA_H2D, GW_CUDA_D2H or GW_CUDA_D2D; copies are
 * asynchronous on `stream` (a pageable host buffer makes them synchronous). */
enum { GW_CUDA_H2D = 0, GW_CUDA_D2H = 1, GW_CUDA_D2D = 2 };
int gw_cuda_stream_new(void **stream);
void gw_cuda_stream_free(void *stream);
int gw_cuda_memcpy(void *dst, const void *src, size_t bytes, int kind, void *stream);
int gw_cuda_memset(void *dst, int value, size_t bytes, void *stream);
int gw_cuda_host_alloc(void **p, size_t bytes);
void gw_cuda_host_free(void *p);
int gw_cuda_mem_info(size_t *free_bytes, size_t *total_bytes);
/* CUDA graphs: everything launched on `stream` between begin and end is
 * recorded (not run) and instantiated into *graph_exec; launch replays it. */
int gw_cuda_graph_begin(void *stream);
int gw_cuda_graph_end(void *stream, void **graph_exec);
int gw_cuda_graph_launch(void *graph_exec, void *stream);
void gw_cuda_graph_free(void *graph_exec);

/* ---- element-wise ops (all f32 math) ---- */

/* out[r][i] = x[r][i] / sqrt(mean(x[r]^2) + eps) * w[i], rows of dim floats. */
int gw_cuda_rmsnorm(const float *x, const float *w, void *out, gw_cuda_dtype out_type, int n_rows, int dim,
                    float eps, void *stream);
/* x[r] += delta[r] (delta f32 or bf16), then out[r] = rmsnorm(x[r]) * w: the
 * residual add and the next layer's norm in one pass. */
int gw_cuda_add_rmsnorm(float *x, const void *delta, gw_cuda_dtype delta_type, const float *w, void *out,
                        gw_cuda_dtype out_type, int n_rows, int dim, float eps, void *stream);
/* x[i] += y[i] for n elements (the residual add). */
int gw_cuda_add(float *x, const void *y, gw_cuda_dtype y_type, int64_t n, void *stream);
/* y[r][i] += bias[i] for rows of dim elements, row stride `stride` elements
 * (qwen2's q/k/v biases). */
int gw_cuda_add_bias(void *y, gw_cuda_dtype type, int64_t stride, const float *bias, int n_rows, int dim,
                     void *stream);
/* out[r][i] = silu(gate[r][i]) * up[r][i]; strides in elements (gate and up may
 * be the two halves of one [rows][2*dim] GEMM output). */
int gw_cuda_swiglu(const void *gate, const void *up, gw_cuda_dtype in_type, int64_t in_stride, void *out,
                   gw_cuda_dtype out_type, int64_t out_stride, int n_rows, int dim, void *stream);

/* y[r][c] = bf16(x[r][c]) for rows x cols, row strides in elements. */
int gw_cuda_f32_to_bf16(const float *x, int64_t x_stride, uint16_t *y, int64_t y_stride, int rows, int cols,
                        void *stream);
/* out[i][:] = x[idx[i]][:] (dim floats per row; idx a device array of n rows). */
int gw_cuda_gather_rows(const float *x, const int32_t *idx, int n, int dim, float *out, void *stream);

/* RoPE in place on x[t][h][d] (t < n_tokens, h < n_heads, d < head_dim; token
 * stride `token_stride` elements, heads contiguous). Rotates the first rope_dim
 * dimensions of each head by angle pos[t] * inv_freq[i] (inv_freq: device array
 * of rope_dim/2 floats, from gw_cuda_rope_inv_freq). style 0 = NORM (pairs
 * (2i, 2i+1): llama GGUFs), 1 = NEOX (pairs (i, i + rope_dim/2): qwen2, HF). */
int gw_cuda_rope(void *x, gw_cuda_dtype type, int n_tokens, int n_heads, int head_dim, int64_t token_stride,
                 const int32_t *pos, const float *inv_freq, int rope_dim, int style, void *stream);
/* Host: inv_freq[i] = theta^(-2i/rope_dim) / factors[i] / scale, i < rope_dim/2,
 * computed in float exactly as forward.c does (factors may be NULL). */
void gw_cuda_rope_inv_freq(float theta, int rope_dim, float scale, const float *factors, float *inv_freq);

/* ---- weights ---- */

/* 1 if gw_cuda_gemv / gw_cuda_dequantize handle tensor type `type`. */
int gw_cuda_type_supported(uint32_t type);
/* Bytes of a row of n elements of `type` (0 if unsupported or n not a multiple
 * of the block size). */
size_t gw_cuda_row_bytes(uint32_t type, int64_t n);

/* y[j][r] = sum_k W[r][k] * x[j][k] (+ bias[r]) for r < rows, j < n tokens:
 * W rows of `cols` elements of `type`, row stride row_bytes; x f32 or bf16 with
 * row stride x_stride elements (16-byte aligned rows); y f32, row stride
 * y_stride. cols must be a multiple of the type's block size and of 16. One
 * pass over W serves up to 4 tokens (decode batches); larger n repeats it. */
int gw_cuda_gemv(uint32_t type, const void *W, size_t row_bytes, int64_t rows, int64_t cols, const void *x,
                 gw_cuda_dtype x_type, int64_t x_stride, int n, float *y, int64_t y_stride, const float *bias,
                 void *stream);
/* out[r][c] = bf16(dequantized W[r][c]), out row stride `cols`: the weights of
 * a prefill GEMM, a layer at a time. The values equal gw_dequantize_row's,
 * rounded to bf16. */
int gw_cuda_dequantize(uint32_t type, const void *W, size_t row_bytes, int64_t rows, int64_t cols, uint16_t *out,
                       void *stream);
/* out[t][:] = row tokens[t] of the embedding table (n_vocab rows of dim
 * elements of `type`), dequantized to f32. A token outside [0, n_vocab) gives
 * a row of zeros (callers validate tokens first, as gw_forward does). */
int gw_cuda_embed(uint32_t type, const void *table, size_t row_bytes, int64_t n_vocab, int dim,
                  const int32_t *tokens, int n_tokens, float *out, void *stream);

/* ---- GEMM (cuBLASLt, bf16 inputs, f32 accumulation) ---- */

typedef struct gw_cuda_blas gw_cuda_blas;
/* One per thread/stream user; workspace_bytes 0 picks 32 MiB. */
gw_cuda_blas *gw_cuda_blas_new(size_t workspace_bytes, char *err, size_t errlen);
void gw_cuda_blas_free(gw_cuda_blas *h);
/* Row-major Y[M][N] = alpha * X[M][K] . W[N][K]^T + beta * Y: X the
 * activations (M tokens), W a weight matrix as stored (N output features of K
 * inputs), both bf16 with row strides ldx, ldw (elements); Y f32 or bf16 with
 * row stride ldy. beta = 1 with an f32 Y adds the product to the residual
 * stream. (cuBLAS is column-major: this is the "TN" product
 * Y^T = W . X^T with W^T's storage read as transposed.) */
int gw_cuda_gemm(gw_cuda_blas *h, int M, int N, int K, const uint16_t *X, int64_t ldx, const uint16_t *W,
                 int64_t ldw, void *Y, gw_cuda_dtype y_type, int64_t ldy, float alpha, float beta, void *stream);

/* ---- paged KV cache ---- */

/* One layer's view of the paged cache. A block (page) holds block_size token
 * slots for every KV head: K and V are bf16 arrays where block b, KV head h,
 * slot s, dimension d is element  b*block_stride + (h*block_size + s)*head_dim + d
 * (a (block, head) tile is block_size rows of head_dim contiguous values, for K
 * and V alike). block_stride >= n_kv_heads*block_size*head_dim lets all layers
 * share one allocation ([block][layer][head][slot][d]: block_stride =
 * n_layer*n_kv_heads*block_size*head_dim, k = base + layer*n_kv_heads*block_size*head_dim).
 * Slot s of a sequence is in block block_table[s / block_size], at s % block_size. */
typedef struct {
    uint16_t *k, *v;
    int block_size, n_kv_heads, head_dim;
    int64_t block_stride;
    /* Quantized caches (KIVI, see below); type 0 (GW_CUDA_KV_BF16) ignores the rest. */
    int type;
    uint8_t *kq, *vq;       /* codes */
    uint32_t *kp, *vp;      /* (scale, min) as fp16 pairs: scale in the low half */
    int64_t q_block_stride; /* bytes of codes per block (>= n_kv_heads tiles) */
    int64_t p_block_stride; /* pairs of parameters per block */
} gw_cuda_kv;

/* Quantized caches (type GW_CUDA_KV_INT8 or GW_CUDA_KV_INT4: KIVI, as the CPU
 * pool of src/kv/kv_cache.h, block_size and head_dim multiples of 32). A block
 * table entry e >= 0 names a *sealed* block, whose (block e, head h) tile is
 *   keys    codes kq[e*q_block_stride + h*bs*D/c + slot*D/c + ...] ([slot][d]),
 *           params kp[e*p_block_stride + h*bs*D/32 + (slot/32)*D + d]: one
 *           (scale, min) per dimension per group of 32 slots
 *   values  codes vq[...] laid out as the keys' ([slot][d]), params
 *           vp[e*p_block_stride + h*bs*D/32 + slot*(D/32) + d/32]: one per
 *           group of 32 dimensions of a slot
 * (c = 1 for int8; 2 for int4: dimension 2i in the low nibble of a byte, 2i+1
 * in the high one). value = code * scale + min, in f32, then rounded to bf16.
 * An entry e < 0 names the *open* page -1 - e: bf16 in k/v exactly as a bf16
 * cache's block (new tokens are written there: slot mappings of appends name
 * open pages). Attention dequantizes sealed tiles while loading them into
 * shared memory; nothing is dequantized into memory first. */
enum { GW_CUDA_KV_BF16 = 0, GW_CUDA_KV_INT8 = 1, GW_CUDA_KV_INT4 = 2 };

/* Quantizes open pages into sealed blocks: for i < n, every layer and head of
 * open page pages[i] becomes block blocks[i] (device arrays). kv is layer 0's
 * view; layer l's tiles follow at l * n_kv_heads tiles (the engine's layout:
 * block strides cover n_layer layers). */
int gw_cuda_kv_seal(const gw_cuda_kv *kv, int n_layer, const int32_t *pages, const int32_t *blocks, int n,
                    void *stream);
/* The reverse: sealed block blocks[i] dequantized (as attention reads it) into
 * open page pages[i], to be written again (after a truncation into it). */
int gw_cuda_kv_unseal(const gw_cuda_kv *kv, int n_layer, const int32_t *blocks, const int32_t *pages, int n,
                      void *stream);

/* Stores the keys and values of n_tokens new tokens: k[t][h][d], v[t][h][d]
 * (f32 or bf16, token stride src_stride elements; keys already rotated) go to
 * global slot slot_mapping[t] = block * block_size + offset (negative: skip). */
int gw_cuda_kv_append(const gw_cuda_kv *kv, const void *k, const void *v, gw_cuda_dtype src_type,
                      int64_t src_stride, const int32_t *slot_mapping, int n_tokens, void *stream);

/* The step between the q|k|v projection and attention, in one kernel: qkv[t]
 * holds q (n_heads heads), k and v (kv->n_kv_heads heads each) of head_dim f32
 * values (token stride qkv_stride). Rotates q and k as gw_cuda_rope (rope_dim,
 * style), writes q as bf16 to q_out[t][h][d] (token stride q_stride) and
 * stores k and v as gw_cuda_kv_append does: the same bits as those three ops
 * and gw_cuda_f32_to_bf16, with one launch instead of four. */
int gw_cuda_rope_qkv(const gw_cuda_kv *kv, const float *qkv, int64_t qkv_stride, int n_tokens, int n_heads,
                     const int32_t *pos, const float *inv_freq, int rope_dim, int style, uint16_t *q_out,
                     int64_t q_stride, const int32_t *slot_mapping, void *stream);

/* Streaming (attention sinks + window): moves slots [src, src + n) of one
 * sequence (block table `table`, device) down to [dst, dst + n), dst < src, in
 * every layer and KV head of a bf16 cache. Values are copied; keys are rotated
 * back by e = src - dst positions: pair i (NORM: dims 2i, 2i+1; NEOX: i,
 * i + rope_dim/2, as gw_cuda_rope's style) times (cos, sin) = cs_sn[2i],
 * cs_sn[2i + 1] (device; the host computes cos/sin(-e * inv_freq[i]) in double,
 * as the CPU pool does), dimensions past rope_dim copied. kv: layer 0's view,
 * n_layer layers (gw_cuda_kv_seal's convention). Runs in passes of e slots, so
 * that no pass reads a slot another pass of it writes. */
int gw_cuda_kv_shift(const gw_cuda_kv *kv, int n_layer, const int32_t *table, int32_t src, int32_t dst, int32_t n,
                     const float *cs_sn, int rope_dim, int style, void *stream);

/* KV selection (SnapKV, H2O) on a bf16 cache. Scores: for each of n_rows
 * query rows (row rows[i] of q, bf16 [row][n_heads][head_dim], stride
 * q_stride) that see kv_lens[i] slots of the sequence whose block table is
 * block_tables + table_rows[i] * block_table_stride, adds softmax(q_h . k *
 * scale) over those slots, summed over the query heads h of each KV head's
 * group, to scores[i][score_off + kvh * score_stride + slot] (f32, atomically:
 * rows of one sequence add into the same scores). Device arrays: q, rows,
 * kv_lens, table_rows, block_tables, scores (n_rows device pointers) and
 * what they point to. Groups up to 16. */
int gw_cuda_attention_probs_add(const gw_cuda_kv *kv, const uint16_t *q, int64_t q_stride, int n_rows,
                                const int32_t *rows, const int32_t *kv_lens, const int32_t *table_rows,
                                const int32_t *block_tables, int block_table_stride, int n_heads, float scale,
                                float *const *scores, int64_t score_off, int64_t score_stride, void *stream);
/* Keeps chosen slots of one layer (kv: that layer's view): for every KV head
 * h, slot keep[h * budget + i] moves to slot i (i < budget) of the sequence
 * with block table `table` (device arrays), through `scratch` (device,
 * gw_cuda_kv_gather_scratch() bytes), so that any order of keep is safe. */
size_t gw_cuda_kv_gather_scratch(const gw_cuda_kv *kv, int budget);
int gw_cuda_kv_gather(const gw_cuda_kv *kv, const int32_t *table, const int32_t *keep, int budget, void *scratch,
                      size_t scratch_bytes, void *stream);

/* ---- attention over the paged cache (head_dim 64 or 128) ---- */

/* Prefill (FlashAttention-2 style, tensor cores): a var-len batch of n_seqs
 * sequences in one launch, no padding. Sequence i's new tokens are q rows
 * [cu_seqlens_q[i], cu_seqlens_q[i+1]) (q[t][h][d] bf16, token stride
 * q_stride); its keys are kv_lens[i] slots in the pages (the cached prefix
 * followed by the new tokens, already appended: kv_lens[i] >= its new tokens),
 * found through block_tables + i*block_table_stride. Causal: the j-th new token
 * sees slots [0, kv_lens[i] - n_new + j]. GQA: query head h reads KV head
 * h / (n_heads / n_kv_heads). out[t][h][d] bf16 (token stride o_stride).
 * max_q_len: the most new tokens of one sequence (sizes the grid).
 * Device arrays: q, out, cu_seqlens_q, kv_lens, block_tables. */
int gw_cuda_attention_prefill(const gw_cuda_kv *kv, const uint16_t *q, int64_t q_stride, uint16_t *out,
                              int64_t o_stride, int n_seqs, const int32_t *cu_seqlens_q, const int32_t *kv_lens,
                              const int32_t *block_tables, int block_table_stride, int max_q_len, int n_heads,
                              float scale, void *stream);

/* Decode (flash-decoding): one query token per sequence, q row i for sequence
 * i (it sees all kv_lens[i] slots: its own K/V already appended); the slots
 * are split into n_splits ranges (>= 1) processed in parallel, each CTA
 * serving up to 16 query heads of one KV head (the K/V tile is loaded once for
 * the group), then merged by log-sum-exp. gw_cuda_attention_decode_splits()
 * suggests n_splits for the batch (enough CTAs for the GPU, >= 128 slots per
 * split). workspace: device memory of gw_cuda_attention_decode_workspace()
 * bytes (NULL allowed when n_splits == 1). */
int gw_cuda_attention_decode_splits(int n_seqs, int n_heads, int n_kv_heads, int max_kv_len);
size_t gw_cuda_attention_decode_workspace(int n_seqs, int n_heads, int head_dim, int n_splits);
int gw_cuda_attention_decode(const gw_cuda_kv *kv, const uint16_t *q, int64_t q_stride, uint16_t *out,
                             int64_t o_stride, int n_seqs, const int32_t *kv_lens, const int32_t *block_tables,
                             int block_table_stride, int n_heads, float scale, int n_splits, void *workspace,
                             size_t workspace_bytes, void *stream);

/* Tuning knobs for tests and benchmarks: prefill CTA shape, 4 or 8 warps of
 * 16 query rows each, or 2: 4 warps of 2 x 16 rows with Q in shared memory;
 * 0 (the default): 2 when there are CTAs enough to fill the GPU four times,
 * else 4. */
void gw_cuda_attention_tune(int prefill_warps);

#ifdef __cplusplus
}
#endif
#endif
