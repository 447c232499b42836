/* Matrix-vector products for decode: y = W x with W in its GGUF block format,
 * read in place, and up to 4 tokens per pass over W.
 *
 * Design (memory-bound: the goal is W's bytes at DRAM bandwidth)
 * - A CTA of 256 threads owns R = 4 consecutive rows; its threads walk the
 *   rows' 16-element items (quant_decode.cuh) together: thread i takes items
 *   i, i + 256, ...; neighbouring threads read neighbouring bytes of a row, so
 *   a warp's loads cover a few contiguous cache lines. Each thread loads the x
 *   values of its item once (f32: 4 x 16 B, bf16: 2 x 16 B) and uses them for
 *   the R rows and up to NT tokens, converting each weight to float once for
 *   all tokens.
 * - Accumulation in f32: per item  sA * (q . xA) + mA * sum(xA) + (same for B),
 *   the block scales factored out of the 8-element dot products.
 * - Partial sums are reduced across the warp with shuffles and across the 8
 *   warps through shared memory; thread (r, t) writes y[t][row0 + r].
 * - Grid: ceil(rows / R) CTAs (1024 for a 4096-row matrix: every SM holds
 *   several, which keeps enough loads in flight).
 * Known limits (to measure on the device): weight bytes come in 2-byte loads
 * for the 2-byte-aligned formats (Q4_0, Q5_0, Q8_0, Q6_K), 4 or 8 bytes for the
 * others; the integer-to-float conversion costs ~2 instructions per weight.
 * If the 4-bit formats come out instruction-bound, the next step is integer
 * dot products (dp4a) on activations quantized to 16 bits in two int8 planes,
 * as the CPU backend does (GW_TYPE_Q16). */
#include "backend/cuda/common.cuh"
#include "backend/cuda/quant_decode.cuh"

namespace {

constexpr int GEMV_THREADS = 256;
constexpr int GEMV_ROWS = 4;

/* Formats whose items carry a non-zero min term (w = s*q + m). */
template <uint32_t T>
constexpr bool kHasMin = T == gwq::Q4_1 || T == gwq::Q5_1 || T == gwq::Q4_K || T == gwq::Q5_K;

/* 8 consecutive x values at element e of row xr. */
__device__ inline void load_x8(const float *xr, int64_t e, float *v) {
    const float4 a = *(const float4 *)(xr + e), b = *(const float4 *)(xr + e + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ inline void load_x8(const uint16_t *xr, int64_t e, float *v) {
    const uint4 a = *(const uint4 *)(xr + e);
    const uint32_t w[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        v[2 * j] = __uint_as_float(w[j] << 16);
        v[2 * j + 1] = __uint_as_float(w[j] & 0xFFFF0000u);
    }
}

template <uint32_t T, typename XT, int NT>
__global__ void __launch_bounds__(GEMV_THREADS, NT == 1 ? 2 : 1)
    gemv_kernel(const uint8_t *__restrict__ W, size_t row_bytes, int64_t rows, int64_t items,
                const XT *__restrict__ x, int64_t x_stride, int n, float *__restrict__ y, int64_t y_stride,
                const float *__restrict__ bias) {
    constexpr int R = GEMV_ROWS;
    const int64_t row0 = (int64_t)blockIdx.x * R;
    const int nr = rows - row0 < R ? (int)(rows - row0) : R;
    float acc[R][NT];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;

    for (int64_t it = threadIdx.x; it < items; it += GEMV_THREADS) {
        int64_t e0, e1;
        gwq::runs<T>(it, &e0, &e1);
        float xv[NT][16], xsA[NT], xsB[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (t < n) {
                load_x8(x + t * x_stride, e0, xv[t]);
                load_x8(x + t * x_stride, e1, xv[t] + 8);
            } else {
#pragma unroll
                for (int j = 0; j < 16; j++) xv[t][j] = 0.0f;
            }
            xsA[t] = xsB[t] = 0.0f;
            if constexpr (kHasMin<T>) {
#pragma unroll
                for (int j = 0; j < 8; j++) xsA[t] += xv[t][j], xsB[t] += xv[t][8 + j];
            }
        }
#pragma unroll
        for (int r = 0; r < R; r++) {
            if (r >= nr) break;
            gwq::Item q;
            gwq::item<T>(W + (row0 + r) * row_bytes, it, &q);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                float dA = 0.0f, dB = 0.0f;
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    dA = fmaf(q.q[j], xv[t][j], dA);
                    dB = fmaf(q.q[8 + j], xv[t][8 + j], dB);
                }
                float s = q.sA * dA + q.sB * dB;
                if constexpr (kHasMin<T>) s += q.mA * xsA[t] + q.mB * xsB[t];
                acc[r][t] += s;
            }
        }
    }

    __shared__ float red[GEMV_THREADS / 32][R * NT];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const float v = gw_warp_sum(acc[r][t]);
            if (lane == 0) red[warp][r * NT + t] = v;
        }
    __syncthreads();
    if (threadIdx.x < R * NT) {
        const int r = threadIdx.x / NT, t = threadIdx.x % NT;
        float s = 0.0f;
#pragma unroll
        for (int w = 0; w < GEMV_THREADS / 32; w++) s += red[w][threadIdx.x];
        if (r < nr && t < n) y[t * y_stride + row0 + r] = s + (bias ? bias[row0 + r] : 0.0f);
    }
}

template <uint32_t T, typename XT>
void launch_gemv(const uint8_t *W, size_t row_bytes, int64_t rows, int64_t items, const XT *x, int64_t x_stride,
                 int n, float *y, int64_t y_stride, const float *bias, cudaStream_t s) {
    const unsigned grid = (unsigned)((rows + GEMV_ROWS - 1) / GEMV_ROWS);
    if (n == 1) {
        gemv_kernel<T, XT, 1><<<grid, GEMV_THREADS, 0, s>>>(W, row_bytes, rows, items, x, x_stride, 1, y, y_stride,
                                                           bias);
        return;
    }
    for (int j0 = 0; j0 < n; j0 += 4) {
        const int nt = n - j0 < 4 ? n - j0 : 4;
        gemv_kernel<T, XT, 4><<<grid, GEMV_THREADS, 0, s>>>(W, row_bytes, rows, items, x + j0 * x_stride, x_stride,
                                                           nt, y + j0 * y_stride, y_stride, bias);
    }
}

} // namespace

extern "C" int gw_cuda_gemv(uint32_t type, const void *W, size_t row_bytes, int64_t rows, int64_t cols,
                            const void *x, gw_cuda_dtype x_type, int64_t x_stride, int n, float *y, int64_t y_stride,
                            const float *bias, void *stream) {
    int rc = gw_cuda_check_matrix("gemv", type, W, row_bytes, cols);
    if (rc) return rc;
    if (rows <= 0 || n <= 0) return GW_CUDA_OK;
    if (rows > (int64_t)GEMV_ROWS * 0x7fffffff) return gw_cuda_fail(GW_CUDA_ERR_ARG, "gemv: too many rows");
    const int xsz = x_type == GW_CUDA_F32 ? 4 : 2;
    if (((uintptr_t)x & 15) || (n > 1 && (x_stride * xsz) % 16))
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "gemv: x rows must be 16-byte aligned");
    if (n > 1 && (x_stride < cols || y_stride < rows))
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "gemv: strides smaller than the rows");
    const int64_t items = cols / 16;
    const uint8_t *Wb = (const uint8_t *)W;
    cudaStream_t s = GW_STREAM(stream);
#define GEMV_CASE(T)                                                                                          \
    if (x_type == GW_CUDA_F32)                                                                                \
        launch_gemv<T, float>(Wb, row_bytes, rows, items, (const float *)x, x_stride, n, y, y_stride, bias, s); \
    else                                                                                                      \
        launch_gemv<T, uint16_t>(Wb, row_bytes, rows, items, (const uint16_t *)x, x_stride, n, y, y_stride, bias, s)
    GWQ_SWITCH(type, GEMV_CASE, return gw_cuda_fail(GW_CUDA_ERR_UNSUPPORTED, "gemv: type %u", type))
#undef GEMV_CASE
    return gw_cuda_check_launch("gemv");
}
