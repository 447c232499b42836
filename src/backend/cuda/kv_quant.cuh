/* Sealed (KIVI int8/int4) KV tiles on the GPU: the layout is in gw_cuda.h
 * (gw_cuda_kv). These helpers dequantize 8 consecutive dimensions of one slot
 * into 8 bf16 values (one 16-byte row chunk of an attention tile), the unit
 * both the attention loaders (attention.cu) and unsealing (kv_quant.cu) work
 * in, so that every reader of a sealed tile sees the same bits. Host code too:
 * the test computes its expected values with them. */
#ifndef GODWIT_CUDA_KV_QUANT_CUH
#define GODWIT_CUDA_KV_QUANT_CUH
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backend/cuda/common.cuh"

namespace gwkvq {

constexpr int G = 32; /* slots per key group, dimensions per value group */

/* Bytes of codes per (block, head) tile and parameter pairs per tile (keys and values alike). */
__host__ __device__ inline int64_t code_tile_bytes(int qt, int bs, int D) {
    return (int64_t)bs * D / (qt == GW_CUDA_KV_INT4 ? 2 : 1);
}
__host__ __device__ inline int64_t param_tile_pairs(int bs, int D) { return (int64_t)bs * D / G; }

__host__ __device__ inline float half_bits_f32(uint16_t h) {
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half(h));
#else
    return __half2float(*(const __half *)&h);
#endif
}

/* Aligned loads on the device (the compiler cannot see the alignment through
 * memcpy), memcpy on the host. */
template <class T> __host__ __device__ inline T load_as(const void *p) {
#ifdef __CUDA_ARCH__
    return *(const T *)p;
#else
    T v;
    memcpy(&v, p, sizeof v);
    return v;
#endif
}

/* A value is fmaf(code, scale, min) in f32, rounded to bf16 (nearest even).
 * On the device every step is a full-rate instruction: the code becomes a
 * float by the exponent trick (0x4B000000 | code is 2^23 + code, exact; minus
 * 2^23 gives (float)code exactly), and two values are rounded and packed by
 * one cvt.rn.bf16x2.f32, the bits gw_f32_bf16 gives on the host. */
__host__ __device__ inline uint32_t bf16x2(float lo, float hi) {
#ifdef __CUDA_ARCH__
    return gw_pack_bf16x2(lo, hi);
#else
    return (uint32_t)gw_f32_bf16(lo) | (uint32_t)gw_f32_bf16(hi) << 16;
#endif
}

/* The raw codes of dimensions [8c, 8c + 8) of one slot: 8 bytes (int8) or 4
 * (int4: dimension 2i in the low nibble of byte i). */
template <int QT> struct Codes8 {
    using type = uint32_t;
};
template <> struct Codes8<GW_CUDA_KV_INT8> {
    using type = uint2;
};
template <int QT>
__host__ __device__ inline typename Codes8<QT>::type load_codes8(const uint8_t *tile, int D, int slot, int c) {
    if constexpr (QT == GW_CUDA_KV_INT8) return load_as<uint2>(tile + (int64_t)slot * D + 8 * c);
    else return load_as<uint32_t>(tile + (int64_t)slot * (D / 2) + 4 * c);
}
/* Code i of the 8, as a float. */
template <int QT> __host__ __device__ inline float code_f(typename Codes8<QT>::type w, int i) {
#ifdef __CUDA_ARCH__
    uint32_t bits;
    if constexpr (QT == GW_CUDA_KV_INT8) bits = __byte_perm(i < 4 ? w.x : w.y, 0x4B000000u, 0x7440 | (i & 3));
    else bits = ((w >> (4 * i)) & 0xfu) | 0x4B000000u;
    return __uint_as_float(bits) - 8388608.0f;
#else
    if constexpr (QT == GW_CUDA_KV_INT8) return (float)(((i < 4 ? w.x : w.y) >> (8 * (i & 3))) & 0xff);
    else return (float)((w >> (4 * i)) & 0xf);
#endif
}

/* A (scale, min) pair as floats. */
struct Prm {
    float s, m;
};
__host__ __device__ inline Prm prm_f(uint32_t pr) {
    return {half_bits_f32((uint16_t)(pr & 0xffff)), half_bits_f32((uint16_t)(pr >> 16))};
}
/* The key parameters of dimensions [8c, 8c + 8) (kp: the group's row of D pairs). */
struct KPrm8 {
    Prm d[8];
};
__host__ __device__ inline KPrm8 load_kprm8(const uint32_t *kp, int c) {
    const uint4 a = load_as<uint4>(kp + 8 * c), b = load_as<uint4>(kp + 8 * c + 4);
    return {{prm_f(a.x), prm_f(a.y), prm_f(a.z), prm_f(a.w), prm_f(b.x), prm_f(b.y), prm_f(b.z), prm_f(b.w)}};
}

/* 8 dimensions of a key: one (scale, min) per dimension. */
template <int QT> __host__ __device__ inline uint4 deq_k8_raw(typename Codes8<QT>::type w, const KPrm8 &p) {
    float v[8];
    for (int i = 0; i < 8; i++) v[i] = fmaf(code_f<QT>(w, i), p.d[i].s, p.d[i].m);
    return make_uint4(bf16x2(v[0], v[1]), bf16x2(v[2], v[3]), bf16x2(v[4], v[5]), bf16x2(v[6], v[7]));
}
/* 8 dimensions of a value: one (scale, min) for the 8 (they lie in one group of 32). */
template <int QT> __host__ __device__ inline uint4 deq_v8_raw(typename Codes8<QT>::type w, Prm p) {
    float v[8];
    for (int i = 0; i < 8; i++) v[i] = fmaf(code_f<QT>(w, i), p.s, p.m);
    return make_uint4(bf16x2(v[0], v[1]), bf16x2(v[2], v[3]), bf16x2(v[4], v[5]), bf16x2(v[6], v[7]));
}

/* Where the parameters of (slot, chunk c) are in a tile's parameter arrays. */
__host__ __device__ inline int64_t k_param_at(int D, int slot, int c) { return (int64_t)(slot / G) * D + 8 * c; }
__host__ __device__ inline int64_t v_param_at(int D, int slot, int c) { return (int64_t)slot * (D / G) + (8 * c) / G; }

__host__ __device__ inline uint32_t pack2(uint16_t lo, uint16_t hi) { return (uint32_t)lo | (uint32_t)hi << 16; }

/* Dimensions [8c, 8c + 8) of `slot` of a sealed tile, dequantized. */
template <int QT>
__host__ __device__ inline uint4 deq_k8(const uint8_t *codes, const uint32_t *prm, int D, int slot, int c) {
    return deq_k8_raw<QT>(load_codes8<QT>(codes, D, slot, c), load_kprm8(prm + k_param_at(D, slot, 0), c));
}
template <int QT>
__host__ __device__ inline uint4 deq_v8(const uint8_t *codes, const uint32_t *prm, int D, int slot, int c) {
    return deq_v8_raw<QT>(load_codes8<QT>(codes, D, slot, c), prm_f(prm[v_param_at(D, slot, c)]));
}

} // namespace gwkvq
#endif
