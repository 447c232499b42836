/* GGUF block formats read in place, for the GEMV, the dequantize kernel and
 * the embedding gather. The byte layouts are ggml's (see
 * src/backend/cpu/quant.c, gw_dequantize_row, which these functions match
 * value for value).
 *
 * Every format is cut into "items" of 16 elements of a row, the unit of work
 * of one thread: item `it` is two runs of 8 consecutive elements starting at
 * element offsets e0 and e1 of the row, with
 *     w[j]     = sA * q[j]     + mA     (j < 8,  element e0 + j)
 *     w[8 + j] = sB * q[8 + j] + mB     (j < 8,  element e1 + j)
 * where q are small integers (or the values themselves for F32/F16/BF16,
 * with s = 1, m = 0). Items are chosen so that a thread reads whole bytes once:
 *   Q8_0  block b = it/2, half h: bytes 2+16h..; runs 32b+16h, +8
 *   Q4_0/Q4_1/Q5_0/Q5_1: 8 quant bytes 8h..8h+7 hold elements 8h+j (low
 *         nibbles) and 16+8h+j (high nibbles): runs 32b+8h and 32b+16+8h
 *   Q4_K/Q5_K: super-block sb = it/16, k = it%16, pair g = k/4, i = k%4: 8 bytes
 *         of the 32 that hold sub-blocks 2g (low nibbles) and 2g+1 (high):
 *         runs 256sb+64g+8i and that +32
 *   Q6_K: half h = k/8, l0 = 8*(k%4), p = (k%8)/4: ql bytes l0+32p.. give
 *         quarters qq = p (low nibbles) and p+2 (high), qh bytes l0.. their top
 *         two bits: runs 256sb+128h+32p+l0 and +64
 * The float products are written with explicit rounding (no FMA contraction)
 * in the order gw_dequantize_row uses, so dequantized values are identical to
 * the CPU's (tests/cuda checks this on the host, where these functions also
 * compile).
 *
 * Alignment: the row base must be 16-byte aligned; the loads below then use the
 * widest access each field's offset allows (2 bytes for Q4_0/Q5_0/Q8_0/Q6_K,
 * whose block sizes are 18/22/34/210 bytes). */
#ifndef GODWIT_CUDA_QUANT_DECODE_CUH
#define GODWIT_CUDA_QUANT_DECODE_CUH
#include <stdint.h>
#include <string.h>
#include <cuda_runtime.h>
#include <cuda_fp16.h>

/* #pragma unroll for code that the host compiler also sees */
#ifdef __CUDA_ARCH__
#define GWQ_UNROLL _Pragma("unroll")
#else
#define GWQ_UNROLL
#endif

namespace gwq {

/* ggml type numbers (model/tensor_types.h) */
enum : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30
};

struct Item {
    float q[16];
    float sA, mA, sB, mB;
};

/* ---- loads: aligned device loads; memcpy on the host ---- */
__host__ __device__ static inline uint32_t ld16(const uint8_t *p) {
#ifdef __CUDA_ARCH__
    return *(const uint16_t *)p;
#else
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
#endif
}
__host__ __device__ static inline uint32_t ld32(const uint8_t *p) {
#ifdef __CUDA_ARCH__
    return *(const uint32_t *)p;
#else
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
#endif
}
__host__ __device__ static inline uint2 ld64(const uint8_t *p) {
#ifdef __CUDA_ARCH__
    return *(const uint2 *)p;
#else
    uint2 v;
    memcpy(&v, p, 8);
    return v;
#endif
}
__host__ __device__ static inline uint4 ld128(const uint8_t *p) {
#ifdef __CUDA_ARCH__
    return *(const uint4 *)p;
#else
    uint4 v;
    memcpy(&v, p, 16);
    return v;
#endif
}
/* 8 bytes at a 2-aligned address, as two little-endian words. */
__host__ __device__ static inline uint2 ld64_a2(const uint8_t *p) {
    uint2 r;
    r.x = ld16(p) | ld16(p + 2) << 16;
    r.y = ld16(p + 4) | ld16(p + 6) << 16;
    return r;
}
/* Byte j (0..7, a constant after unrolling) of 8 bytes. */
__host__ __device__ static inline uint32_t byte8(uint2 b, int j) { return ((j < 4 ? b.x : b.y) >> (8 * (j & 3))) & 0xFFu; }

/* ---- exact conversions ---- */
__host__ __device__ static inline float h2f(uint32_t h) {
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half((unsigned short)h));
#else
    uint32_t sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
    if (e == 0x1f) u = sign | 0x7f800000u | (m << 13);
    else if (e == 0) {
        float v = (float)m * 5.9604644775390625e-8f; /* m * 2^-24, exact */
        return sign ? -v : v;
    } else u = sign | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}
__host__ __device__ static inline float bf2f(uint32_t h) {
    uint32_t u = h << 16;
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}
/* Small integer (|v| < 2^22) to float: on the device an integer add and a float
 * subtract (1.5 * 2^23 + v is exact in float), full-rate, unlike I2F. */
__host__ __device__ static inline float i2f(int v) {
#ifdef __CUDA_ARCH__
    return __int_as_float(0x4B400000 + v) - 12582912.0f;
#else
    return (float)v;
#endif
}
__host__ __device__ static inline float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
__host__ __device__ static inline float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

/* K-quant 6-bit scale and min j (0..7) from the 12 scale bytes, given as three
 * little-endian words s0 (bytes 0-3), s1 (4-7), s2 (8-11): the same as ggml's
 * get_scale_min_k4 without a byte array (j is a run-time value here, and an
 * indexed local array would live in local memory). */
__host__ __device__ static inline void scale_min_k4(int j, uint32_t s0, uint32_t s1, uint32_t s2, int *d, int *m) {
    if (j < 4) {
        *d = (int)(s0 >> (8 * j)) & 63;
        *m = (int)(s1 >> (8 * j)) & 63;
    } else {
        const int k = 8 * (j - 4);
        const uint32_t hi = (s2 >> k) & 0xFF;
        *d = (int)((hi & 0xF) | (((s0 >> k) & 0xFF) >> 6) << 4);
        *m = (int)((hi >> 4) | (((s1 >> k) & 0xFF) >> 6) << 4);
    }
}

/* ---- geometry ---- */
__host__ __device__ static inline int block_elems(uint32_t t) {
    return (t == Q4_K || t == Q5_K || t == Q6_K) ? 256 : (t == F32 || t == F16 || t == BF16) ? 1 : 32;
}
__host__ __device__ static inline int block_bytes(uint32_t t) {
    switch (t) {
    case F32: return 4;
    case F16: case BF16: return 2;
    case Q4_0: return 18;
    case Q4_1: return 20;
    case Q5_0: return 22;
    case Q5_1: return 24;
    case Q8_0: return 34;
    case Q4_K: return 144;
    case Q5_K: return 176;
    case Q6_K: return 210;
    default: return 0;
    }
}
__host__ __device__ static inline bool supported(uint32_t t) { return block_bytes(t) != 0; }

/* Element offsets (in the row) of item it's two runs. */
template <uint32_t T> __host__ __device__ static inline void runs(int64_t it, int64_t *e0, int64_t *e1) {
    if constexpr (T == F32 || T == F16 || T == BF16) {
        *e0 = 16 * it;
        *e1 = *e0 + 8;
    } else if constexpr (T == Q8_0) {
        *e0 = 16 * it; /* 32 * (it/2) + 16 * (it%2) */
        *e1 = *e0 + 8;
    } else if constexpr (T == Q4_0 || T == Q4_1 || T == Q5_0 || T == Q5_1) {
        const int64_t b = it >> 1, h = it & 1;
        *e0 = 32 * b + 8 * h;
        *e1 = *e0 + 16;
    } else if constexpr (T == Q4_K || T == Q5_K) {
        const int64_t sb = it >> 4;
        const int k = (int)(it & 15), g = k >> 2, i = k & 3;
        *e0 = 256 * sb + 64 * g + 8 * i;
        *e1 = *e0 + 32;
    } else { /* Q6_K */
        const int64_t sb = it >> 4;
        const int k = (int)(it & 15), h = k >> 3, p = (k & 7) >> 2, l0 = 8 * (k & 3);
        *e0 = 256 * sb + 128 * h + 32 * p + l0;
        *e1 = *e0 + 64;
    }
}

/* Reads item it of a row. */
template <uint32_t T> __host__ __device__ static inline void item(const uint8_t *row, int64_t it, Item *o) {
    if constexpr (T == F32) {
        const uint8_t *p = row + 64 * it;
GWQ_UNROLL
        for (int c = 0; c < 4; c++) {
            uint4 v = ld128(p + 16 * c);
            uint32_t w[4] = {v.x, v.y, v.z, v.w};
GWQ_UNROLL
            for (int j = 0; j < 4; j++) {
#ifdef __CUDA_ARCH__
                o->q[4 * c + j] = __uint_as_float(w[j]);
#else
                memcpy(&o->q[4 * c + j], &w[j], 4);
#endif
            }
        }
        o->sA = o->sB = 1.0f;
        o->mA = o->mB = 0.0f;
    } else if constexpr (T == F16 || T == BF16) {
        const uint8_t *p = row + 32 * it;
GWQ_UNROLL
        for (int c = 0; c < 2; c++) {
            uint4 v = ld128(p + 16 * c);
            uint32_t w[4] = {v.x, v.y, v.z, v.w};
GWQ_UNROLL
            for (int j = 0; j < 4; j++) {
                o->q[8 * c + 2 * j] = T == F16 ? h2f(w[j] & 0xFFFFu) : bf2f(w[j] & 0xFFFFu);
                o->q[8 * c + 2 * j + 1] = T == F16 ? h2f(w[j] >> 16) : bf2f(w[j] >> 16);
            }
        }
        o->sA = o->sB = 1.0f;
        o->mA = o->mB = 0.0f;
    } else if constexpr (T == Q8_0) {
        const uint8_t *p = row + 34 * (it >> 1);
        const float d = h2f(ld16(p));
        const uint2 a = ld64_a2(p + 2 + 16 * (it & 1)), b = ld64_a2(p + 10 + 16 * (it & 1));
GWQ_UNROLL
        for (int j = 0; j < 8; j++) {
            o->q[j] = i2f((int)(int8_t)byte8(a, j));
            o->q[8 + j] = i2f((int)(int8_t)byte8(b, j));
        }
        o->sA = o->sB = d;
        o->mA = o->mB = 0.0f;
    } else if constexpr (T == Q4_0 || T == Q5_0) {
        const int h = (int)(it & 1);
        const int bb = T == Q4_0 ? 18 : 22;
        const uint8_t *p = row + bb * (it >> 1);
        const float d = h2f(ld16(p));
        uint32_t qh = 0;
        if constexpr (T == Q5_0) qh = ld16(p + 2) | ld16(p + 4) << 16;
        const uint2 qs = ld64_a2(p + (T == Q4_0 ? 2 : 6) + 8 * h);
GWQ_UNROLL
        for (int j = 0; j < 8; j++) {
            const int jj = 8 * h + j; /* index of the byte among the block's 16 */
            int x0 = (int)(byte8(qs, j) & 0xF), x1 = (int)(byte8(qs, j) >> 4);
            if constexpr (T == Q5_0) {
                x0 |= (int)(((qh >> jj) << 4) & 0x10);
                x1 |= (int)((qh >> (jj + 12)) & 0x10);
            }
            const int off = T == Q4_0 ? 8 : 16;
            o->q[j] = i2f(x0 - off);
            o->q[8 + j] = i2f(x1 - off);
        }
        o->sA = o->sB = d;
        o->mA = o->mB = 0.0f;
    } else if constexpr (T == Q4_1 || T == Q5_1) {
        const int h = (int)(it & 1);
        const uint8_t *p = row + (T == Q4_1 ? 20 : 24) * (it >> 1);
        const uint32_t dm = ld32(p);
        uint32_t qh = 0;
        uint2 qs;
        if constexpr (T == Q4_1) {
            qs.x = ld32(p + 4 + 8 * h);
            qs.y = ld32(p + 8 + 8 * h);
        } else {
            qh = ld32(p + 4);
            qs = ld64(p + 8 + 8 * h);
        }
GWQ_UNROLL
        for (int j = 0; j < 8; j++) {
            const int jj = 8 * h + j;
            int x0 = (int)(byte8(qs, j) & 0xF), x1 = (int)(byte8(qs, j) >> 4);
            if constexpr (T == Q5_1) {
                x0 |= (int)(((qh >> jj) << 4) & 0x10);
                x1 |= (int)((qh >> (jj + 12)) & 0x10);
            }
            o->q[j] = i2f(x0);
            o->q[8 + j] = i2f(x1);
        }
        o->sA = o->sB = h2f(dm & 0xFFFFu);
        o->mA = o->mB = h2f(dm >> 16);
    } else if constexpr (T == Q4_K || T == Q5_K) {
        const int k = (int)(it & 15), g = k >> 2, i = k & 3;
        const uint8_t *p = row + (T == Q4_K ? 144 : 176) * (it >> 4);
        const uint32_t dd = ld32(p);
        const float d = h2f(dd & 0xFFFFu), dmin = h2f(dd >> 16);
        const uint32_t s0 = ld32(p + 4), s1 = ld32(p + 8), s2 = ld32(p + 12);
        int s, m;
        scale_min_k4(2 * g, s0, s1, s2, &s, &m);
        o->sA = mul_rn(d, (float)s);
        o->mA = -mul_rn(dmin, (float)m);
        scale_min_k4(2 * g + 1, s0, s1, s2, &s, &m);
        o->sB = mul_rn(d, (float)s);
        o->mB = -mul_rn(dmin, (float)m);
        const uint2 qs = ld64(p + (T == Q4_K ? 16 : 48) + 32 * g + 8 * i);
        uint2 qh = make_uint2(0, 0);
        if constexpr (T == Q5_K) qh = ld64(p + 16 + 8 * i);
GWQ_UNROLL
        for (int j = 0; j < 8; j++) {
            int x0 = (int)(byte8(qs, j) & 0xF), x1 = (int)(byte8(qs, j) >> 4);
            if constexpr (T == Q5_K) {
                x0 += (byte8(qh, j) >> (2 * g)) & 1 ? 16 : 0;
                x1 += (byte8(qh, j) >> (2 * g + 1)) & 1 ? 16 : 0;
            }
            o->q[j] = i2f(x0);
            o->q[8 + j] = i2f(x1);
        }
    } else { /* Q6_K */
        const int k = (int)(it & 15), h = k >> 3, p2 = (k & 7) >> 2, l0 = 8 * (k & 3);
        const uint8_t *p = row + 210 * (it >> 4);
        const float d = h2f(ld16(p + 208));
        const uint2 ql = ld64_a2(p + 64 * h + 32 * p2 + l0);
        const uint2 qh = ld64_a2(p + 128 + 32 * h + l0);
        /* scales of quarters p2 and p2 + 2 for l in [l0, l0+8): sc[is + 2*qq] */
        const int is = l0 / 16;
        const uint8_t *sc = p + 192 + 8 * h + is;
        const int scA = (int)(int8_t)sc[2 * p2], scB = (int)(int8_t)sc[2 * p2 + 4];
        const int shA = 2 * p2, shB = 2 * p2 + 4; /* qh bits of quarters p2, p2 + 2 */
GWQ_UNROLL
        for (int j = 0; j < 8; j++) {
            const uint32_t l = byte8(ql, j), hb = byte8(qh, j);
            o->q[j] = i2f((int)((l & 0xF) | ((hb >> shA) & 3) << 4) - 32);
            o->q[8 + j] = i2f((int)((l >> 4) | ((hb >> shB) & 3) << 4) - 32);
        }
        o->sA = mul_rn(d, (float)scA);
        o->sB = mul_rn(d, (float)scB);
        o->mA = o->mB = 0.0f;
    }
}

/* The 16 dequantized values of item it: w[0..8) for run e0, w[8..16) for e1. */
template <uint32_t T> __host__ __device__ static inline void item_values(const uint8_t *row, int64_t it, float w[16]) {
    Item o;
    item<T>(row, it, &o);
GWQ_UNROLL
    for (int j = 0; j < 8; j++) {
        w[j] = add_rn(mul_rn(o.sA, o.q[j]), o.mA);
        w[8 + j] = add_rn(mul_rn(o.sB, o.q[8 + j]), o.mB);
    }
}

} // namespace gwq

/* Expands X(T) for the runtime type t inside a switch; unsupported types fall
 * to `default`. Used by every launcher that picks a kernel per format. */
#define GWQ_SWITCH(t, X, DEFAULT)                                                                             \
    switch (t) {                                                                                              \
    case gwq::F32: X(gwq::F32); break;                                                                        \
    case gwq::F16: X(gwq::F16); break;                                                                        \
    case gwq::BF16: X(gwq::BF16); break;                                                                      \
    case gwq::Q4_0: X(gwq::Q4_0); break;                                                                      \
    case gwq::Q4_1: X(gwq::Q4_1); break;                                                                      \
    case gwq::Q5_0: X(gwq::Q5_0); break;                                                                      \
    case gwq::Q5_1: X(gwq::Q5_1); break;                                                                      \
    case gwq::Q8_0: X(gwq::Q8_0); break;                                                                      \
    case gwq::Q4_K: X(gwq::Q4_K); break;                                                                      \
    case gwq::Q5_K: X(gwq::Q5_K); break;                                                                      \
    case gwq::Q6_K: X(gwq::Q6_K); break;                                                                      \
    default: DEFAULT;                                                                                         \
    }

#endif
