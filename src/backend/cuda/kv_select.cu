/* KV selection (SnapKV, H2O) on the GPU (gw_cuda.h): the attention
 * probabilities that score the cached slots, and the gather that keeps the
 * chosen slots of each (layer, KV head). The CPU does the same in
 * gw_attention_probs_add (src/backend/cpu/attention.c) and gw_kv_seq_gather
 * (src/kv/kv_cache.c); the choice itself (pooling, top-k) stays on the host. */
#include <math.h>

#include "backend/cuda/common.cuh"

namespace {

constexpr int PROBS_THREADS = 128, MAX_GROUP = 16;

/* Two passes over the row's visible keys: the softmax's max and sum for each
 * query head of the group (online, per thread, then merged), then the
 * probabilities, summed over the group, added to the scores. */
template <int D>
__global__ void __launch_bounds__(PROBS_THREADS) probs_kernel(const gw_cuda_kv kv, const uint16_t *q, int64_t q_stride,
                                                              const int32_t *rows, const int32_t *kv_lens,
                                                              const int32_t *table_rows, const int32_t *tables,
                                                              int bt_stride, int group, float scale,
                                                              float *const *scores, int64_t score_off,
                                                              int64_t score_stride) {
    __shared__ float sq[MAX_GROUP][D];
    __shared__ float red_m[PROBS_THREADS / 32][MAX_GROUP], red_l[PROBS_THREADS / 32][MAX_GROUP];
    __shared__ float fin_m[MAX_GROUP], fin_l[MAX_GROUP];
    const int r = blockIdx.x, kvh = blockIdx.y, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int n = kv_lens[r];
    const int32_t *table = tables + (int64_t)table_rows[r] * bt_stride;
    const uint16_t *qr = q + (int64_t)rows[r] * q_stride + (int64_t)kvh * group * D;
    for (int i = tid; i < group * D; i += PROBS_THREADS) sq[i / D][i % D] = gw_bf16_f32(qr[i]) * scale;
    __syncthreads();
    float m[MAX_GROUP], l[MAX_GROUP];
    for (int g = 0; g < group; g++) m[g] = -INFINITY, l[g] = 0.0f;
    const int64_t head_off = (int64_t)kvh * kv.block_size * D;
    for (int j = tid; j < n; j += PROBS_THREADS) {
        const uint16_t *k = kv.k + (int64_t)table[j / kv.block_size] * kv.block_stride + head_off +
                            (int64_t)(j % kv.block_size) * D;
        for (int g = 0; g < group; g++) {
            float s = 0.0f;
            for (int d = 0; d < D; d += 2) {
                const uint32_t w = *(const uint32_t *)(k + d);
                s += sq[g][d] * gw_bf16_f32((uint16_t)(w & 0xffff)) + sq[g][d + 1] * gw_bf16_f32((uint16_t)(w >> 16));
            }
            const float mn = fmaxf(m[g], s);
            l[g] = l[g] * expf(m[g] - mn) + expf(s - mn);
            m[g] = mn;
        }
    }
    /* merge the threads' (m, l): warps, then the CTA */
    for (int g = 0; g < group; g++) {
        float mg = m[g], lg = l[g];
        for (int o = 16; o > 0; o >>= 1) {
            const float m2 = __shfl_xor_sync(0xffffffffu, mg, o), l2 = __shfl_xor_sync(0xffffffffu, lg, o);
            const float mn = fmaxf(mg, m2);
            lg = (mn == -INFINITY) ? 0.0f : lg * expf(mg - mn) + l2 * expf(m2 - mn);
            mg = mn;
        }
        if (lane == 0) red_m[warp][g] = mg, red_l[warp][g] = lg;
    }
    __syncthreads();
    if (tid < group) {
        float mg = -INFINITY, lg = 0.0f;
        for (int w = 0; w < PROBS_THREADS / 32; w++) {
            const float m2 = red_m[w][tid], l2 = red_l[w][tid], mn = fmaxf(mg, m2);
            lg = (mn == -INFINITY) ? 0.0f : lg * expf(mg - mn) + l2 * expf(m2 - mn);
            mg = mn;
        }
        fin_m[tid] = mg, fin_l[tid] = lg > 0.0f ? 1.0f / lg : 0.0f;
    }
    __syncthreads();
    float *sc = scores[r] + score_off + (int64_t)kvh * score_stride;
    for (int j = tid; j < n; j += PROBS_THREADS) {
        const uint16_t *k = kv.k + (int64_t)table[j / kv.block_size] * kv.block_stride + head_off +
                            (int64_t)(j % kv.block_size) * D;
        float p = 0.0f;
        for (int g = 0; g < group; g++) {
            float s = 0.0f;
            for (int d = 0; d < D; d += 2) {
                const uint32_t w = *(const uint32_t *)(k + d);
                s += sq[g][d] * gw_bf16_f32((uint16_t)(w & 0xffff)) + sq[g][d + 1] * gw_bf16_f32((uint16_t)(w >> 16));
            }
            p += expf(s - fin_m[g]) * fin_l[g];
        }
        atomicAdd(sc + j, p);
    }
}

/* Slot keep[h][i] of KV head h -> scratch row (h, i), then scratch -> slot i:
 * one CTA per (i, h), a thread per 8 dimensions. */
__global__ void gather_in(const gw_cuda_kv kv, const int32_t *table, const int32_t *keep, int budget, uint16_t *sk,
                          uint16_t *sv) {
    const int i = blockIdx.x, h = blockIdx.y, D = kv.head_dim, bs = kv.block_size;
    const int32_t s = keep[(int64_t)h * budget + i];
    const int64_t src = (int64_t)table[s / bs] * kv.block_stride + ((int64_t)h * bs + s % bs) * D;
    const int64_t dst = ((int64_t)h * budget + i) * D;
    for (int c = threadIdx.x; c < D / 8; c += blockDim.x) {
        *(uint4 *)(sk + dst + 8 * c) = *(const uint4 *)(kv.k + src + 8 * c);
        *(uint4 *)(sv + dst + 8 * c) = *(const uint4 *)(kv.v + src + 8 * c);
    }
}
__global__ void gather_out(const gw_cuda_kv kv, const int32_t *table, int budget, const uint16_t *sk,
                           const uint16_t *sv) {
    const int i = blockIdx.x, h = blockIdx.y, D = kv.head_dim, bs = kv.block_size;
    const int64_t dst = (int64_t)table[i / bs] * kv.block_stride + ((int64_t)h * bs + i % bs) * D;
    const int64_t src = ((int64_t)h * budget + i) * D;
    for (int c = threadIdx.x; c < D / 8; c += blockDim.x) {
        *(uint4 *)(kv.k + dst + 8 * c) = *(const uint4 *)(sk + src + 8 * c);
        *(uint4 *)(kv.v + dst + 8 * c) = *(const uint4 *)(sv + src + 8 * c);
    }
}

} // namespace

extern "C" int gw_cuda_attention_probs_add(const gw_cuda_kv *kv, const uint16_t *q, int64_t q_stride, int n_rows,
                                           const int32_t *rows, const int32_t *kv_lens, const int32_t *table_rows,
                                           const int32_t *block_tables, int block_table_stride, int n_heads,
                                           float scale, float *const *scores, int64_t score_off,
                                           int64_t score_stride, void *stream) {
    int rc = gw_cuda_kv_validate(kv, "attention_probs_add");
    if (rc) return rc;
    if (kv->type != GW_CUDA_KV_BF16)
        return gw_cuda_fail(GW_CUDA_ERR_UNSUPPORTED, "attention_probs_add: quantized KV pages are not supported");
    if (kv->head_dim != 64 && kv->head_dim != 128)
        return gw_cuda_fail(GW_CUDA_ERR_UNSUPPORTED, "attention_probs_add: head_dim %d", kv->head_dim);
    if (n_heads <= 0 || n_heads % kv->n_kv_heads || n_heads / kv->n_kv_heads > MAX_GROUP || n_rows < 0 ||
        n_rows > 0x7fffffff || kv->n_kv_heads > 65535)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "attention_probs_add: %d heads over %d KV heads (groups up to %d)",
                            n_heads, kv->n_kv_heads, MAX_GROUP);
    if (n_rows == 0) return GW_CUDA_OK;
    const dim3 grid(n_rows, kv->n_kv_heads);
    const int group = n_heads / kv->n_kv_heads;
    if (kv->head_dim == 64)
        probs_kernel<64><<<grid, PROBS_THREADS, 0, GW_STREAM(stream)>>>(*kv, q, q_stride, rows, kv_lens, table_rows,
                                                                       block_tables, block_table_stride, group, scale,
                                                                       scores, score_off, score_stride);
    else
        probs_kernel<128><<<grid, PROBS_THREADS, 0, GW_STREAM(stream)>>>(*kv, q, q_stride, rows, kv_lens, table_rows,
                                                                        block_tables, block_table_stride, group, scale,
                                                                        scores, score_off, score_stride);
    return gw_cuda_check_launch("attention_probs_add");
}

extern "C" size_t gw_cuda_kv_gather_scratch(const gw_cuda_kv *kv, int budget) {
    return 2 * (size_t)kv->n_kv_heads * (size_t)budget * (size_t)kv->head_dim * sizeof(uint16_t);
}

extern "C" int gw_cuda_kv_gather(const gw_cuda_kv *kv, const int32_t *table, const int32_t *keep, int budget,
                                 void *scratch, size_t scratch_bytes, void *stream) {
    int rc = gw_cuda_kv_validate(kv, "kv_gather");
    if (rc) return rc;
    if (kv->type != GW_CUDA_KV_BF16)
        return gw_cuda_fail(GW_CUDA_ERR_UNSUPPORTED, "kv_gather: quantized KV pages are not supported");
    if (budget < 0 || budget > 0x7fffffff || kv->n_kv_heads > 65535)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "kv_gather: budget %d", budget);
    if (budget == 0) return GW_CUDA_OK;
    if (!scratch || scratch_bytes < gw_cuda_kv_gather_scratch(kv, budget) || (uintptr_t)scratch & 15)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "kv_gather: scratch of %zu bytes needed",
                            gw_cuda_kv_gather_scratch(kv, budget));
    uint16_t *sk = (uint16_t *)scratch, *sv = sk + (size_t)kv->n_kv_heads * budget * kv->head_dim;
    const dim3 grid(budget, kv->n_kv_heads);
    gather_in<<<grid, 32, 0, GW_STREAM(stream)>>>(*kv, table, keep, budget, sk, sv);
    if ((rc = gw_cuda_check_launch("kv_gather"))) return rc;
    gather_out<<<grid, 32, 0, GW_STREAM(stream)>>>(*kv, table, budget, sk, sv);
    return gw_cuda_check_launch("kv_gather");
}
