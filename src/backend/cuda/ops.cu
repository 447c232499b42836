/* Element-wise and gather ops of the forward pass on the GPU: RMSNorm (alone
 * or fused with the residual add), residual add, bias add, SwiGLU, RoPE,
 * appending K/V to the paged cache, the embedding gather and dequantization
 * of a weight matrix to bf16. All arithmetic in f32; these kernels are bound by
 * memory traffic and are written for clarity (one thread per element, pair or
 * 16-element item; coalesced accesses) rather than for the last few percent. */
#include <math.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/quant_decode.cuh"

/* ------------------------------------------------------------------ RMSNorm */

/* Block sum of v over blockDim.x threads (a multiple of 32, <= 1024). */
__device__ static float block_sum(float v) {
    __shared__ float part[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = gw_warp_sum(v);
    __syncthreads(); /* part[] may still be read by a previous call */
    if (lane == 0) part[warp] = v;
    __syncthreads();
    const int nw = blockDim.x >> 5;
    v = lane < nw ? part[lane] : 0.0f;
    return gw_warp_sum(v);
}

/* One block per row. ADD: x += delta first (written back), then normalise. */
template <bool ADD, typename DT, typename OT>
__global__ void rmsnorm_kernel(float *x, const DT *delta, const float *w, OT *out, int dim, float eps) {
    const int64_t row = blockIdx.x;
    float *xr = x + row * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = xr[i];
        if (ADD) {
            v += gw_load_f(delta, row * dim + i);
            xr[i] = v; /* read back below by the same thread */
        }
        ss += v * v;
    }
    ss = block_sum(ss);
    /* as forward.c: x * (1 / sqrt(mean + eps)) * w */
    const float scale = 1.0f / sqrtf(ss / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) gw_store_f(out, row * dim + i, xr[i] * scale * w[i]);
}

static int norm_threads(int dim) {
    int t = 32;
    while (t < 1024 && t * 4 < dim) t *= 2; /* ~4 elements per thread */
    return t;
}

template <bool ADD, typename DT>
static int launch_rmsnorm(float *x, const DT *delta, const float *w, void *out, gw_cuda_dtype out_type, int n_rows,
                          int dim, float eps, cudaStream_t s) {
    const int th = norm_threads(dim);
    if (out_type == GW_CUDA_F32)
        rmsnorm_kernel<ADD, DT, float><<<n_rows, th, 0, s>>>(x, delta, w, (float *)out, dim, eps);
    else
        rmsnorm_kernel<ADD, DT, uint16_t><<<n_rows, th, 0, s>>>(x, delta, w, (uint16_t *)out, dim, eps);
    return gw_cuda_check_launch("rmsnorm");
}

extern "C" int gw_cuda_rmsnorm(const float *x, const float *w, void *out, gw_cuda_dtype out_type, int n_rows,
                               int dim, float eps, void *stream) {
    if (n_rows < 0 || dim <= 0) return gw_cuda_fail(GW_CUDA_ERR_ARG, "rmsnorm: bad shape %d x %d", n_rows, dim);
    if (n_rows == 0) return GW_CUDA_OK;
    /* x is only read when ADD is false */
    return launch_rmsnorm<false, float>((float *)x, (const float *)NULL, w, out, out_type, n_rows, dim, eps,
                                        GW_STREAM(stream));
}

extern "C" int gw_cuda_add_rmsnorm(float *x, const void *delta, gw_cuda_dtype delta_type, const float *w, void *out,
                                   gw_cuda_dtype out_type, int n_rows, int dim, float eps, void *stream) {
    if (n_rows < 0 || dim <= 0) return gw_cuda_fail(GW_CUDA_ERR_ARG, "add_rmsnorm: bad shape %d x %d", n_rows, dim);
    if (n_rows == 0) return GW_CUDA_OK;
    if (delta_type == GW_CUDA_F32)
        return launch_rmsnorm<true, float>(x, (const float *)delta, w, out, out_type, n_rows, dim, eps,
                                           GW_STREAM(stream));
    return launch_rmsnorm<true, uint16_t>(x, (const uint16_t *)delta, w, out, out_type, n_rows, dim, eps,
                                          GW_STREAM(stream));
}

/* ------------------------------------------------------- adds and SwiGLU */

template <typename YT> __global__ void add_kernel(float *x, const YT *y, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] += gw_load_f(y, i);
}

static unsigned grid_for(int64_t n) {
    int64_t b = (n + 255) / 256;
    return (unsigned)(b < 65535 * 8 ? b : 65535 * 8);
}

extern "C" int gw_cuda_add(float *x, const void *y, gw_cuda_dtype y_type, int64_t n, void *stream) {
    if (n <= 0) return GW_CUDA_OK;
    if (y_type == GW_CUDA_F32) add_kernel<<<grid_for(n), 256, 0, GW_STREAM(stream)>>>(x, (const float *)y, n);
    else add_kernel<<<grid_for(n), 256, 0, GW_STREAM(stream)>>>(x, (const uint16_t *)y, n);
    return gw_cuda_check_launch("add");
}

template <typename T> __global__ void add_bias_kernel(T *y, int64_t stride, const float *bias, int n_rows, int dim) {
    const int64_t n = (int64_t)n_rows * dim;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / dim, c = i % dim;
        gw_store_f(y, r * stride + c, gw_load_f(y, r * stride + c) + bias[c]);
    }
}

extern "C" int gw_cuda_add_bias(void *y, gw_cuda_dtype type, int64_t stride, const float *bias, int n_rows, int dim,
                                void *stream) {
    if (n_rows <= 0 || dim <= 0) return GW_CUDA_OK;
    const int64_t n = (int64_t)n_rows * dim;
    if (type == GW_CUDA_F32)
        add_bias_kernel<<<grid_for(n), 256, 0, GW_STREAM(stream)>>>((float *)y, stride, bias, n_rows, dim);
    else
        add_bias_kernel<<<grid_for(n), 256, 0, GW_STREAM(stream)>>>((uint16_t *)y, stride, bias, n_rows, dim);
    return gw_cuda_check_launch("add_bias");
}

template <typename IT, typename OT>
__global__ void swiglu_kernel(const IT *gate, const IT *up, int64_t in_stride, OT *out, int64_t out_stride,
                              int n_rows, int dim) {
    const int64_t n = (int64_t)n_rows * dim;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / dim, c = i % dim;
        const float g = gw_load_f(gate, r * in_stride + c), u = gw_load_f(up, r * in_stride + c);
        gw_store_f(out, r * out_stride + c, g / (1.0f + expf(-g)) * u); /* silu(g) * u, as forward.c */
    }
}

extern "C" int gw_cuda_swiglu(const void *gate, const void *up, gw_cuda_dtype in_type, int64_t in_stride, void *out,
                              gw_cuda_dtype out_type, int64_t out_stride, int n_rows, int dim, void *stream) {
    if (n_rows <= 0 || dim <= 0) return GW_CUDA_OK;
    const int64_t n = (int64_t)n_rows * dim;
    cudaStream_t s = GW_STREAM(stream);
    if (in_type == GW_CUDA_F32 && out_type == GW_CUDA_F32)
        swiglu_kernel<<<grid_for(n), 256, 0, s>>>((const float *)gate, (const float *)up, in_stride, (float *)out,
                                                  out_stride, n_rows, dim);
    else if (in_type == GW_CUDA_F32)
        swiglu_kernel<<<grid_for(n), 256, 0, s>>>((const float *)gate, (const float *)up, in_stride,
                                                  (uint16_t *)out, out_stride, n_rows, dim);
    else if (out_type == GW_CUDA_F32)
        swiglu_kernel<<<grid_for(n), 256, 0, s>>>((const uint16_t *)gate, (const uint16_t *)up, in_stride,
                                                  (float *)out, out_stride, n_rows, dim);
    else
        swiglu_kernel<<<grid_for(n), 256, 0, s>>>((const uint16_t *)gate, (const uint16_t *)up, in_stride,
                                                  (uint16_t *)out, out_stride, n_rows, dim);
    return gw_cuda_check_launch("swiglu");
}

/* -------------------------------------------------------------------- RoPE */

/* One thread per (token, head, rotated pair). */
template <typename T>
__global__ void rope_kernel(T *x, int n_tokens, int n_heads, int head_dim, int64_t token_stride, const int32_t *pos,
                            const float *inv_freq, int half, int neox) {
    const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (idx >= (int64_t)n_tokens * n_heads * half) return;
    const int i = (int)(idx % half);
    const int h = (int)(idx / half % n_heads);
    const int64_t t = idx / half / n_heads;
    float sn, cs;
    sincosf((float)pos[t] * inv_freq[i], &sn, &cs); /* the same float angle as forward.c */
    T *v = x + t * token_stride + (int64_t)h * head_dim;
    const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
    const float a = gw_load_f(v, i0), b = gw_load_f(v, i1);
    /* explicit rounding: a*c - b*s without FMA contraction, like the CPU */
    gw_store_f(v, i0, __fsub_rn(__fmul_rn(a, cs), __fmul_rn(b, sn)));
    gw_store_f(v, i1, __fadd_rn(__fmul_rn(a, sn), __fmul_rn(b, cs)));
}

extern "C" int gw_cuda_rope(void *x, gw_cuda_dtype type, int n_tokens, int n_heads, int head_dim,
                            int64_t token_stride, const int32_t *pos, const float *inv_freq, int rope_dim, int style,
                            void *stream) {
    if (rope_dim <= 0 || rope_dim > head_dim || rope_dim % 2)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "rope: rope_dim %d must be even and <= head_dim %d", rope_dim, head_dim);
    if (n_tokens <= 0 || n_heads <= 0) return GW_CUDA_OK;
    const int half = rope_dim / 2;
    const int64_t n = (int64_t)n_tokens * n_heads * half;
    if (type == GW_CUDA_F32)
        rope_kernel<<<gw_blocks(n, 256), 256, 0, GW_STREAM(stream)>>>((float *)x, n_tokens, n_heads, head_dim,
                                                                     token_stride, pos, inv_freq, half, style != 0);
    else
        rope_kernel<<<gw_blocks(n, 256), 256, 0, GW_STREAM(stream)>>>((uint16_t *)x, n_tokens, n_heads, head_dim,
                                                                     token_stride, pos, inv_freq, half, style != 0);
    return gw_cuda_check_launch("rope");
}

/* ------------------------------------------------------------ KV append */

/* One thread per (token, KV head, 8 dimensions): 8 values converted to bf16
 * and stored with one 16-byte write into the token's page slot. */
template <typename T>
__global__ void kv_append_kernel(gw_cuda_kv kv, const T *k, const T *v, int64_t src_stride,
                                 const int32_t *slot_mapping, int n_tokens) {
    const int chunks = kv.head_dim / 8;
    const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (idx >= (int64_t)n_tokens * kv.n_kv_heads * chunks) return;
    const int c = (int)(idx % chunks);
    const int h = (int)(idx / chunks % kv.n_kv_heads);
    const int64_t t = idx / chunks / kv.n_kv_heads;
    const int32_t slot = slot_mapping[t];
    if (slot < 0) return;
    const int64_t blk = slot / kv.block_size, off = slot % kv.block_size;
    const int64_t dst = blk * kv.block_stride + ((int64_t)h * kv.block_size + off) * kv.head_dim + 8 * c;
    const int64_t src = t * src_stride + (int64_t)h * kv.head_dim + 8 * c;
    uint32_t kw[4], vw[4];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        kw[j] = (uint32_t)gw_f32_bf16(gw_load_f(k, src + 2 * j)) |
                (uint32_t)gw_f32_bf16(gw_load_f(k, src + 2 * j + 1)) << 16;
        vw[j] = (uint32_t)gw_f32_bf16(gw_load_f(v, src + 2 * j)) |
                (uint32_t)gw_f32_bf16(gw_load_f(v, src + 2 * j + 1)) << 16;
    }
    *(uint4 *)(kv.k + dst) = make_uint4(kw[0], kw[1], kw[2], kw[3]);
    *(uint4 *)(kv.v + dst) = make_uint4(vw[0], vw[1], vw[2], vw[3]);
}

/* Shared by the attention launchers: the page layout must allow 16-byte
 * accesses to every row of head_dim values. */
int gw_cuda_kv_validate(const gw_cuda_kv *kv, const char *what) {
    if (!kv || !kv->k || !kv->v) return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: no KV cache", what);
    if (kv->block_size <= 0 || kv->n_kv_heads <= 0 || kv->head_dim <= 0 || kv->head_dim % 8)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: bad KV geometry (block %d, heads %d, head_dim %d)", what,
                            kv->block_size, kv->n_kv_heads, kv->head_dim);
    if (kv->block_stride < (int64_t)kv->n_kv_heads * kv->block_size * kv->head_dim || kv->block_stride % 8)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: block_stride %lld must be a multiple of 8 and >= %lld", what,
                            (long long)kv->block_stride, (long long)kv->n_kv_heads * kv->block_size * kv->head_dim);
    if (((uintptr_t)kv->k | (uintptr_t)kv->v) & 15)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: K and V pages must be 16-byte aligned", what);
    if (kv->type == GW_CUDA_KV_BF16) return GW_CUDA_OK;
    if (kv->type != GW_CUDA_KV_INT8 && kv->type != GW_CUDA_KV_INT4)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: unknown KV type %d", what, kv->type);
    if (kv->block_size % 32 || kv->head_dim % 32)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: a quantized KV cache needs block_size and head_dim multiples of 32 "
                            "(block %d, head_dim %d)", what, kv->block_size, kv->head_dim);
    if (!kv->kq || !kv->vq || !kv->kp || !kv->vp ||
        ((uintptr_t)kv->kq | (uintptr_t)kv->vq | (uintptr_t)kv->kp | (uintptr_t)kv->vp) & 15)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: quantized KV arrays missing or not 16-byte aligned", what);
    const int64_t ct = (int64_t)kv->block_size * kv->head_dim / (kv->type == GW_CUDA_KV_INT4 ? 2 : 1);
    const int64_t pt = (int64_t)kv->block_size * kv->head_dim / 32;
    if (kv->q_block_stride < kv->n_kv_heads * ct || kv->q_block_stride % 16 || kv->p_block_stride < kv->n_kv_heads * pt ||
        kv->p_block_stride % 4)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: quantized block strides %lld / %lld too small or misaligned", what,
                            (long long)kv->q_block_stride, (long long)kv->p_block_stride);
    return GW_CUDA_OK;
}

extern "C" int gw_cuda_kv_append(const gw_cuda_kv *kv, const void *k, const void *v, gw_cuda_dtype src_type,
                                 int64_t src_stride, const int32_t *slot_mapping, int n_tokens, void *stream) {
    int rc = gw_cuda_kv_validate(kv, "kv_append");
    if (rc) return rc;
    if (n_tokens <= 0) return GW_CUDA_OK;
    const int64_t n = (int64_t)n_tokens * kv->n_kv_heads * (kv->head_dim / 8);
    if (src_type == GW_CUDA_F32)
        kv_append_kernel<<<gw_blocks(n, 256), 256, 0, GW_STREAM(stream)>>>(*kv, (const float *)k, (const float *)v,
                                                                          src_stride, slot_mapping, n_tokens);
    else
        kv_append_kernel<<<gw_blocks(n, 256), 256, 0, GW_STREAM(stream)>>>(
            *kv, (const uint16_t *)k, (const uint16_t *)v, src_stride, slot_mapping, n_tokens);
    return gw_cuda_check_launch("kv_append");
}

/* ------------------------------------------- embedding and dequantization */

/* One thread per 16-element item of an output row; row r of the output reads
 * row src_row(r) of W (the token id for the embedding, r for dequantize). */
template <uint32_t T, bool EMBED, typename OT>
__global__ void gather_kernel(const uint8_t *W, size_t row_bytes, int64_t n_src_rows, int64_t items,
                              const int32_t *tokens, int64_t n_rows, OT *out, int64_t out_stride) {
    const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (idx >= n_rows * items) return;
    const int64_t r = idx / items, it = idx % items;
    int64_t src = r;
    if (EMBED) src = tokens[r];
    int64_t e0, e1;
    gwq::runs<T>(it, &e0, &e1);
    OT *o = out + r * out_stride;
    float w[16];
    if (src >= 0 && src < n_src_rows) gwq::item_values<T>(W + src * row_bytes, it, w);
    else
        for (int j = 0; j < 16; j++) w[j] = 0.0f;
    if constexpr (sizeof(OT) == 4) {
        *(float4 *)(o + e0) = make_float4(w[0], w[1], w[2], w[3]);
        *(float4 *)(o + e0 + 4) = make_float4(w[4], w[5], w[6], w[7]);
        *(float4 *)(o + e1) = make_float4(w[8], w[9], w[10], w[11]);
        *(float4 *)(o + e1 + 4) = make_float4(w[12], w[13], w[14], w[15]);
    } else {
        uint32_t p[8];
#pragma unroll
        for (int j = 0; j < 8; j++) p[j] = (uint32_t)gw_f32_bf16(w[2 * j]) | (uint32_t)gw_f32_bf16(w[2 * j + 1]) << 16;
        *(uint4 *)(o + e0) = make_uint4(p[0], p[1], p[2], p[3]);
        *(uint4 *)(o + e1) = make_uint4(p[4], p[5], p[6], p[7]);
    }
}

static int check_matrix(const char *what, uint32_t type, const void *W, size_t row_bytes, int64_t cols) {
    if (!gwq::supported(type)) return gw_cuda_fail(GW_CUDA_ERR_UNSUPPORTED, "%s: tensor type %u not supported", what, type);
    if (cols <= 0 || cols % 16 || cols % gwq::block_elems(type))
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: %lld columns: must be a multiple of 16 and of the block size %d",
                            what, (long long)cols, gwq::block_elems(type));
    const size_t need = (size_t)(cols / gwq::block_elems(type)) * gwq::block_bytes(type);
    if (row_bytes < need) return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: row_bytes %zu < %zu", what, row_bytes, need);
    /* every field offset inside a row assumes a 16-aligned base (quant_decode.cuh) */
    if ((uintptr_t)W & 15) return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: weights must be 16-byte aligned", what);
    if (row_bytes % 16 && row_bytes != need)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: padded rows must keep 16-byte alignment", what);
    return GW_CUDA_OK;
}

int gw_cuda_check_matrix(const char *what, uint32_t type, const void *W, size_t row_bytes, int64_t cols) {
    return check_matrix(what, type, W, row_bytes, cols);
}

extern "C" int gw_cuda_embed(uint32_t type, const void *table, size_t row_bytes, int64_t n_vocab, int dim,
                             const int32_t *tokens, int n_tokens, float *out, void *stream) {
    int rc = check_matrix("embed", type, table, row_bytes, dim);
    if (rc) return rc;
    if (n_tokens <= 0) return GW_CUDA_OK;
    const int64_t items = dim / 16, n = (int64_t)n_tokens * items;
    cudaStream_t s = GW_STREAM(stream);
#define EMBED_CASE(T)                                                                                          \
    gather_kernel<T, true, float><<<gw_blocks(n, 256), 256, 0, s>>>((const uint8_t *)table, row_bytes, n_vocab, \
                                                                    items, tokens, n_tokens, out, dim)
    GWQ_SWITCH(type, EMBED_CASE, return gw_cuda_fail(GW_CUDA_ERR_UNSUPPORTED, "embed: type %u", type))
#undef EMBED_CASE
    return gw_cuda_check_launch("embed");
}

extern "C" int gw_cuda_dequantize(uint32_t type, const void *W, size_t row_bytes, int64_t rows, int64_t cols,
                                  uint16_t *out, void *stream) {
    int rc = check_matrix("dequantize", type, W, row_bytes, cols);
    if (rc) return rc;
    if (rows <= 0) return GW_CUDA_OK;
    const int64_t items = cols / 16, n = rows * items;
    cudaStream_t s = GW_STREAM(stream);
#define DEQ_CASE(T)                                                                                           \
    gather_kernel<T, false, uint16_t><<<gw_blocks(n, 256), 256, 0, s>>>((const uint8_t *)W, row_bytes, rows, \
                                                                        items, NULL, rows, out, cols)
    GWQ_SWITCH(type, DEQ_CASE, return gw_cuda_fail(GW_CUDA_ERR_UNSUPPORTED, "dequantize: type %u", type))
#undef DEQ_CASE
    return gw_cuda_check_launch("dequantize");
}

/* ------------------------------------------------------ conversion, gather */

__global__ void f32_to_bf16_kernel(const float *x, int64_t x_stride, uint16_t *y, int64_t y_stride, int rows,
                                   int cols) {
    const int64_t n = (int64_t)rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / cols, c = i % cols;
        y[r * y_stride + c] = gw_f32_bf16(x[r * x_stride + c]);
    }
}

extern "C" int gw_cuda_f32_to_bf16(const float *x, int64_t x_stride, uint16_t *y, int64_t y_stride, int rows,
                                   int cols, void *stream) {
    if (rows <= 0 || cols <= 0) return GW_CUDA_OK;
    f32_to_bf16_kernel<<<grid_for((int64_t)rows * cols), 256, 0, GW_STREAM(stream)>>>(x, x_stride, y, y_stride,
                                                                                      rows, cols);
    return gw_cuda_check_launch("f32_to_bf16");
}

__global__ void gather_rows_kernel(const float *x, const int32_t *idx, int n, int dim, float *out) {
    const int64_t total = (int64_t)n * dim;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / dim, c = i % dim;
        out[i] = x[(int64_t)idx[r] * dim + c];
    }
}

extern "C" int gw_cuda_gather_rows(const float *x, const int32_t *idx, int n, int dim, float *out, void *stream) {
    if (n <= 0 || dim <= 0) return GW_CUDA_OK;
    gather_rows_kernel<<<grid_for((int64_t)n * dim), 256, 0, GW_STREAM(stream)>>>(x, idx, n, dim, out);
    return gw_cuda_check_launch("gather_rows");
}

/* ------------------------------------- RoPE + q to bf16 + KV append, fused */

/* One thread per (token, head of q|k|v, pair of dimensions): the pair is
 * rotated (q and k, the first rope_dim dimensions) exactly as rope_kernel
 * does, rounded to bf16 as f32_to_bf16 and kv_append do, and stored: q rows to
 * q_out, k and v into the token's page slot. */
__global__ void rope_qkv_kernel(gw_cuda_kv kv, const float *qkv, int64_t qkv_stride, int n_tokens, int n_heads,
                                const int32_t *pos, const float *inv_freq, int half, int neox, uint16_t *q_out,
                                int64_t q_stride, const int32_t *slot_mapping) {
    const int D = kv.head_dim, pairs = D / 2, heads = n_heads + 2 * kv.n_kv_heads;
    const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (idx >= (int64_t)n_tokens * heads * pairs) return;
    const int j = (int)(idx % pairs);
    const int h = (int)(idx / pairs % heads);
    const int64_t t = idx / pairs / heads;
    const float *x = qkv + t * qkv_stride + (int64_t)h * D; /* q, k and v heads follow each other */
    int i0, i1;
    if (j < half) i0 = neox ? j : 2 * j, i1 = neox ? j + half : 2 * j + 1;
    else i0 = 2 * j, i1 = 2 * j + 1; /* past rope_dim: stored as is */
    float a = x[i0], b = x[i1];
    const bool is_v = h >= n_heads + kv.n_kv_heads;
    if (j < half && !is_v) {
        float sn, cs;
        sincosf((float)pos[t] * inv_freq[j], &sn, &cs);
        const float ra = __fsub_rn(__fmul_rn(a, cs), __fmul_rn(b, sn));
        const float rb = __fadd_rn(__fmul_rn(a, sn), __fmul_rn(b, cs));
        a = ra, b = rb;
    }
    if (h < n_heads) {
        uint16_t *o = q_out + t * q_stride + (int64_t)h * D;
        o[i0] = gw_f32_bf16(a);
        o[i1] = gw_f32_bf16(b);
        return;
    }
    const int32_t slot = slot_mapping[t];
    if (slot < 0) return;
    const int kvh = is_v ? h - n_heads - kv.n_kv_heads : h - n_heads;
    const int64_t blk = slot / kv.block_size, off = slot % kv.block_size;
    uint16_t *o = (is_v ? kv.v : kv.k) + blk * kv.block_stride + ((int64_t)kvh * kv.block_size + off) * D;
    o[i0] = gw_f32_bf16(a);
    o[i1] = gw_f32_bf16(b);
}

extern "C" int gw_cuda_rope_qkv(const gw_cuda_kv *kv, const float *qkv, int64_t qkv_stride, int n_tokens,
                                int n_heads, const int32_t *pos, const float *inv_freq, int rope_dim, int style,
                                uint16_t *q_out, int64_t q_stride, const int32_t *slot_mapping, void *stream) {
    int rc = gw_cuda_kv_validate(kv, "rope_qkv");
    if (rc) return rc;
    if (rope_dim <= 0 || rope_dim > kv->head_dim || rope_dim % 2)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "rope_qkv: rope_dim %d must be even and <= head_dim %d", rope_dim,
                            kv->head_dim);
    if (n_tokens <= 0) return GW_CUDA_OK;
    const int64_t n = (int64_t)n_tokens * (n_heads + 2 * kv->n_kv_heads) * (kv->head_dim / 2);
    rope_qkv_kernel<<<gw_blocks(n, 256), 256, 0, GW_STREAM(stream)>>>(*kv, qkv, qkv_stride, n_tokens, n_heads, pos,
                                                                     inv_freq, rope_dim / 2, style != 0, q_out,
                                                                     q_stride, slot_mapping);
    return gw_cuda_check_launch("rope_qkv");
}
