/* Streaming on the GPU (gw_cuda.h, gw_cuda_kv_shift): the window of a
 * sequence's slots moves down after its attention sinks, keys re-rotated to
 * their new positions, as gw_kv_seq_shift_layers does on the CPU pool. */
#include "backend/cuda/common.cuh"

namespace {

/* One CTA per (moved slot, layer * KV + head): the slot's key pairs rotated,
 * the rest of the key and the value copied. */
__global__ void kv_shift_kernel(const gw_cuda_kv kv, const int32_t *table, int32_t src, int32_t dst,
                                const float *cs_sn, int rope_dim, int style) {
    const int bs = kv.block_size, D = kv.head_dim, half = rope_dim / 2;
    const int64_t t = blockIdx.y;
    const int32_t s = src + (int32_t)blockIdx.x, d = dst + (int32_t)blockIdx.x;
    const int64_t so = (int64_t)table[s / bs] * kv.block_stride + (t * bs + s % bs) * D;
    const int64_t dof = (int64_t)table[d / bs] * kv.block_stride + (t * bs + d % bs) * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        kv.v[dof + i] = kv.v[so + i];
        if (i < half) {
            const int d1 = style ? i : 2 * i, d2 = style ? i + half : 2 * i + 1;
            const float a = gw_bf16_f32(kv.k[so + d1]), b = gw_bf16_f32(kv.k[so + d2]);
            const float c = cs_sn[2 * i], sn = cs_sn[2 * i + 1];
            kv.k[dof + d1] = gw_f32_bf16(a * c - b * sn);
            kv.k[dof + d2] = gw_f32_bf16(a * sn + b * c);
        } else if (i >= rope_dim) {
            kv.k[dof + i] = kv.k[so + i];
        }
    }
}

} // namespace

extern "C" int gw_cuda_kv_shift(const gw_cuda_kv *kv, int n_layer, const int32_t *table, int32_t src, int32_t dst,
                                int32_t n, const float *cs_sn, int rope_dim, int style, void *stream) {
    int rc = gw_cuda_kv_validate(kv, "kv_shift");
    if (rc) return rc;
    if (kv->type != GW_CUDA_KV_BF16)
        return gw_cuda_fail(GW_CUDA_ERR_UNSUPPORTED, "kv_shift: quantized keys cannot be re-rotated in place");
    if (n_layer <= 0 || (int64_t)n_layer * kv->n_kv_heads > 65535 || n < 0 || dst < 0 || dst >= src ||
        rope_dim < 0 || rope_dim % 2 || rope_dim > kv->head_dim ||
        kv->block_stride < (int64_t)n_layer * kv->n_kv_heads * kv->block_size * kv->head_dim)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "kv_shift: bad arguments (src %d, dst %d, n %d, rope_dim %d, %d layers)",
                            src, dst, n, rope_dim, n_layer);
    const int32_t e = src - dst;
    for (int32_t off = 0; off < n; off += e) { /* each pass writes only slots the earlier passes have read */
        const int32_t cnt = n - off < e ? n - off : e;
        kv_shift_kernel<<<dim3(cnt, n_layer * kv->n_kv_heads), 64, 0, GW_STREAM(stream)>>>(
            *kv, table, src + off, dst + off, cs_sn, rope_dim, style);
        if ((rc = gw_cuda_check_launch("kv_shift"))) return rc;
    }
    return GW_CUDA_OK;
}
