/* Internal helpers of the CUDA backend: error reporting, bf16/f32 conversion
 * and small device utilities. Not a public header. */
#ifndef GODWIT_CUDA_COMMON_CUH
#define GODWIT_CUDA_COMMON_CUH
#include <cuda_runtime.h>
#include <stdint.h>

#include "backend/cuda/gw_cuda.h"

/* Records a failure message for gw_cuda_last_error() and returns `status`. */
int gw_cuda_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* After a launch: a configuration error (too many threads, too much shared
 * memory, no kernel image for this GPU) is reported here; faults inside the
 * kernel appear at the next synchronisation. */
static inline int gw_cuda_check_launch(const char *what) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return gw_cuda_fail(GW_CUDA_ERR_CUDA, "%s: launch failed: %s (%s)", what, cudaGetErrorString(e),
                            cudaGetErrorName(e));
    return GW_CUDA_OK;
}

#define GW_STREAM(s) ((cudaStream_t)(s))

/* Argument checks shared by several launchers (ops.cu). */
int gw_cuda_kv_validate(const gw_cuda_kv *kv, const char *what);
int gw_cuda_check_matrix(const char *what, uint32_t type, const void *W, size_t row_bytes, int64_t cols);

/* ---- bf16 <-> f32 on raw uint16_t (no cuda_bf16.h types in interfaces) ---- */

__host__ __device__ static inline float gw_bf16_f32(uint16_t h) {
#ifdef __CUDA_ARCH__
    return __uint_as_float((uint32_t)h << 16);
#else
    uint32_t u = (uint32_t)h << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
#endif
}

/* Round to nearest even; NaN stays a quiet NaN (as gw_fp32_to_bf16). */
__host__ __device__ static inline uint16_t gw_f32_bf16(float f) {
#ifdef __CUDA_ARCH__
    uint32_t u = __float_as_uint(f);
#else
    uint32_t u;
    __builtin_memcpy(&u, &f, 4);
#endif
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Two floats -> two bf16 in one 32-bit word (lo in the low half). */
__device__ static inline uint32_t gw_pack_bf16x2(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

/* Load a value of type T (f32 or bf16 stored as uint16_t) as float. */
template <typename T> __device__ static inline float gw_load_f(const T *p, int64_t i);
template <> __device__ inline float gw_load_f<float>(const float *p, int64_t i) { return p[i]; }
template <> __device__ inline float gw_load_f<uint16_t>(const uint16_t *p, int64_t i) { return gw_bf16_f32(p[i]); }

template <typename T> __device__ static inline void gw_store_f(T *p, int64_t i, float v);
template <> __device__ inline void gw_store_f<float>(float *p, int64_t i, float v) { p[i] = v; }
template <> __device__ inline void gw_store_f<uint16_t>(uint16_t *p, int64_t i, float v) { p[i] = gw_f32_bf16(v); }

/* Sum over a warp (every lane gets the total). */
__device__ static inline float gw_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static inline unsigned gw_blocks(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

#endif
