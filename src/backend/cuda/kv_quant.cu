/* Sealing and unsealing KIVI int8/int4 KV blocks on the GPU (gw_cuda.h):
 * the quantization the CPU pool does in gw_kv_seal (src/kv/kv_cache.c), on
 * the bf16 open pages. Keys per channel (one scale and minimum per dimension
 * over each group of 32 slots), values per token (one per group of 32
 * dimensions of a slot), asymmetric, parameters rounded to fp16 before the
 * codes are computed, so that code * scale + min uses what is stored. */
#include "backend/cuda/kv_quant.cuh"

namespace {

using gwkvq::G;

struct TilePtrs {
    const uint16_t *k, *v; /* bf16 page tile [slot][d] */
    uint8_t *kq, *vq;
    uint32_t *kp, *vp;
};

/* The (page, block, tile) triple of CTA (blockIdx.x, blockIdx.y = layer * KV + head). */
__device__ inline TilePtrs tile_ptrs(const gw_cuda_kv &kv, int32_t page, int32_t block) {
    const int64_t t = blockIdx.y, bs = kv.block_size, D = kv.head_dim;
    const int64_t pg = (int64_t)page * kv.block_stride + t * bs * D;
    const int64_t cq = (int64_t)block * kv.q_block_stride + t * gwkvq::code_tile_bytes(kv.type, kv.block_size, kv.head_dim);
    const int64_t cp = (int64_t)block * kv.p_block_stride + t * gwkvq::param_tile_pairs(kv.block_size, kv.head_dim);
    return {kv.k + pg, kv.v + pg, kv.kq + cq, kv.vq + cq, kv.kp + cp, kv.vp + cp};
}

/* fp16 (scale, min) of a group with minimum mn and maximum mx, and the
 * reciprocal of the rounded scale (0 for a constant group). */
__device__ inline uint32_t group_params(float mn, float mx, int qmax, float &m, float &inv) {
    const __half hs = __float2half_rn(__fdiv_rn(__fsub_rn(mx, mn), (float)qmax)), hm = __float2half_rn(mn);
    const float sc = __half2float(hs);
    m = __half2float(hm);
    inv = sc > 0.0f ? __fdiv_rn(1.0f, sc) : 0.0f;
    return gwkvq::pack2(__half_as_ushort(hs), __half_as_ushort(hm));
}

__device__ inline int quant_code(float x, float m, float inv, int qmax) {
    const float c = __fadd_rn(__fmul_rn(__fsub_rn(x, m), inv), 0.5f);
    const int ci = c > 0.0f ? (int)c : 0;
    return ci > qmax ? qmax : ci;
}

template <int QT>
__global__ void kv_seal_kernel(const gw_cuda_kv kv, const int32_t *pages, const int32_t *blocks) {
    constexpr int qmax = QT == GW_CUDA_KV_INT4 ? 15 : 255;
    const int bs = kv.block_size, D = kv.head_dim;
    const TilePtrs t = tile_ptrs(kv, pages[blockIdx.x], blocks[blockIdx.x]);
    /* keys: a thread per pair of dimensions (2j, 2j + 1), per group of G slots */
    for (int j = threadIdx.x; j < D / 2; j += blockDim.x) {
        for (int g = 0; g < bs / G; g++) {
            const uint16_t *col = t.k + (int64_t)g * G * D + 2 * j;
            float mn[2] = {INFINITY, INFINITY}, mx[2] = {-INFINITY, -INFINITY};
            for (int s = 0; s < G; s++) {
                const uint32_t w = *(const uint32_t *)(col + (int64_t)s * D);
                const float a = gw_bf16_f32((uint16_t)(w & 0xffff)), b = gw_bf16_f32((uint16_t)(w >> 16));
                mn[0] = fminf(mn[0], a), mx[0] = fmaxf(mx[0], a);
                mn[1] = fminf(mn[1], b), mx[1] = fmaxf(mx[1], b);
            }
            float m[2], inv[2];
            t.kp[(int64_t)g * D + 2 * j] = group_params(mn[0], mx[0], qmax, m[0], inv[0]);
            t.kp[(int64_t)g * D + 2 * j + 1] = group_params(mn[1], mx[1], qmax, m[1], inv[1]);
            for (int s = 0; s < G; s++) {
                const int slot = g * G + s;
                const uint32_t w = *(const uint32_t *)(col + (int64_t)s * D);
                const int c0 = quant_code(gw_bf16_f32((uint16_t)(w & 0xffff)), m[0], inv[0], qmax);
                const int c1 = quant_code(gw_bf16_f32((uint16_t)(w >> 16)), m[1], inv[1], qmax);
                if (QT == GW_CUDA_KV_INT8) *(uint16_t *)(t.kq + (int64_t)slot * D + 2 * j) = (uint16_t)(c0 | c1 << 8);
                else t.kq[(int64_t)slot * (D / 2) + j] = (uint8_t)(c0 | c1 << 4);
            }
        }
    }
    /* values: a warp per (slot, group of G dimensions), a lane per dimension */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    for (int task = warp; task < bs * (D / G); task += n_warps) {
        const int slot = task / (D / G), grp = task % (D / G), d = grp * G + lane;
        const float x = gw_bf16_f32(t.v[(int64_t)slot * D + d]);
        float mn = x, mx = x;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            mn = fminf(mn, __shfl_xor_sync(0xffffffffu, mn, o));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        }
        float m, inv;
        const uint32_t prm = group_params(mn, mx, qmax, m, inv);
        if (lane == 0) t.vp[(int64_t)slot * (D / G) + grp] = prm;
        const int c = quant_code(x, m, inv, qmax);
        if (QT == GW_CUDA_KV_INT8) {
            t.vq[(int64_t)slot * D + d] = (uint8_t)c;
        } else {
            const int hi = __shfl_down_sync(0xffffffffu, c, 1);
            if (!(lane & 1)) t.vq[(int64_t)slot * (D / 2) + d / 2] = (uint8_t)(c | hi << 4);
        }
    }
}

template <int QT> __global__ void kv_unseal_kernel(const gw_cuda_kv kv, const int32_t *blocks, const int32_t *pages) {
    const int bs = kv.block_size, D = kv.head_dim, CH = D / 8;
    const TilePtrs t = tile_ptrs(kv, pages[blockIdx.x], blocks[blockIdx.x]);
    for (int i = threadIdx.x; i < bs * CH; i += blockDim.x) {
        const int slot = i / CH, c = i % CH;
        *(uint4 *)(t.k + (int64_t)slot * D + 8 * c) = gwkvq::deq_k8<QT>(t.kq, t.kp, D, slot, c);
        *(uint4 *)(t.v + (int64_t)slot * D + 8 * c) = gwkvq::deq_v8<QT>(t.vq, t.vp, D, slot, c);
    }
}

int check(const gw_cuda_kv *kv, int n_layer, int n, const char *what) {
    int rc = gw_cuda_kv_validate(kv, what);
    if (rc) return rc;
    if (kv->type != GW_CUDA_KV_INT8 && kv->type != GW_CUDA_KV_INT4)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: the KV cache is not quantized (type %d)", what, kv->type);
    if (n_layer <= 0 || (int64_t)n_layer * kv->n_kv_heads > 65535 || n < 0 || n > 0x7fffffff)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: %d layers, %d blocks", what, n_layer, n);
    const int64_t tiles = (int64_t)n_layer * kv->n_kv_heads;
    if (kv->block_stride < tiles * kv->block_size * kv->head_dim ||
        kv->q_block_stride < tiles * gwkvq::code_tile_bytes(kv->type, kv->block_size, kv->head_dim) ||
        kv->p_block_stride < tiles * gwkvq::param_tile_pairs(kv->block_size, kv->head_dim))
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: block strides do not hold %d layers", what, n_layer);
    return GW_CUDA_OK;
}

} // namespace

extern "C" int gw_cuda_kv_seal(const gw_cuda_kv *kv, int n_layer, const int32_t *pages, const int32_t *blocks, int n,
                               void *stream) {
    int rc = check(kv, n_layer, n, "kv_seal");
    if (rc || n == 0) return rc;
    const dim3 grid(n, n_layer * kv->n_kv_heads);
    if (kv->type == GW_CUDA_KV_INT8) kv_seal_kernel<GW_CUDA_KV_INT8><<<grid, 128, 0, GW_STREAM(stream)>>>(*kv, pages, blocks);
    else kv_seal_kernel<GW_CUDA_KV_INT4><<<grid, 128, 0, GW_STREAM(stream)>>>(*kv, pages, blocks);
    return gw_cuda_check_launch("kv_seal");
}

extern "C" int gw_cuda_kv_unseal(const gw_cuda_kv *kv, int n_layer, const int32_t *blocks, const int32_t *pages, int n,
                                 void *stream) {
    int rc = check(kv, n_layer, n, "kv_unseal");
    if (rc || n == 0) return rc;
    const dim3 grid(n, n_layer * kv->n_kv_heads);
    if (kv->type == GW_CUDA_KV_INT8)
        kv_unseal_kernel<GW_CUDA_KV_INT8><<<grid, 128, 0, GW_STREAM(stream)>>>(*kv, blocks, pages);
    else kv_unseal_kernel<GW_CUDA_KV_INT4><<<grid, 128, 0, GW_STREAM(stream)>>>(*kv, blocks, pages);
    return gw_cuda_check_launch("kv_unseal");
}
