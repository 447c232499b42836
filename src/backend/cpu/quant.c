/* Scalar reference code (conversions, dequantization, reference quantizers),
 * run-time ISA dispatch and the gw_matmul driver. See quant_impl.h for how the
 * kernels are organised. The SIMD kernels live in quant_avx2.c and
 * quant_avx512.c. */
#include "backend/cpu/quant_impl.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <float.h>

/* ---------------------------------------------------------------- fp16/bf16 */

float gw_fp16_to_fp32(uint16_t h) { return gw_h2f(h); }

uint16_t gw_fp32_to_fp16(float f) {
    uint32_t x = gw_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) { /* inf stays inf; NaN stays a quiet NaN */
        if (ax == 0x7f800000u) return (uint16_t)(sign | 0x7c00u);
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    }
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) {
        /* Result is a half subnormal: m * 2^-24. Scaling by 2^24 is exact; adding
         * 2^23 then rounds to an integer with the FPU's round-to-nearest-even. */
        float t = gw_bits_f32(ax) * 16777216.0f + 8388608.0f;
        return (uint16_t)(sign | (gw_f32_bits(t) - 0x4b000000u));
    }
    /* normal: rebias the exponent, round the 13 dropped mantissa bits to even */
    uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u) - (112u << 23);
    return (uint16_t)(sign | (r >> 13));
}

float gw_bf16_to_fp32(uint16_t h) { return gw_bits_f32((uint32_t)h << 16); }

uint16_t gw_fp32_to_bf16(float f) {
    uint32_t u = gw_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64); /* quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* ---------------------------------------------------------- dequantization */

/* K-quant 6-bit scale/min pairs, 8 per super-block packed into 12 bytes. */
static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

/* The expressions below mirror ggml's dequantize_row_* operation by operation
 * (same products and sums in float) so that results are bit-identical; this
 * relies on no FMA contraction, which is the default for ISO C mode. */
void gw_dequantize_row(uint32_t t, const void *src, float *y, int64_t n) {
    const uint8_t *p = (const uint8_t *)src;
    switch (t) {
    case GW_TYPE_F32:
        memcpy(y, src, (size_t)n * sizeof(float));
        return;
    case GW_TYPE_F16:
        for (int64_t i = 0; i < n; i++) y[i] = gw_h2f(gw_ld16(p + 2 * i));
        return;
    case GW_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) y[i] = gw_bf16_to_fp32(gw_ld16(p + 2 * i));
        return;
    case GW_TYPE_Q4_0:
        for (int64_t b = 0; b < n / 32; b++, p += 18, y += 32) {
            const float d = gw_h2f(gw_ld16(p));
            for (int j = 0; j < 16; j++) {
                y[j] = ((p[2 + j] & 0x0F) - 8) * d;
                y[j + 16] = ((p[2 + j] >> 4) - 8) * d;
            }
        }
        return;
    case GW_TYPE_Q4_1:
        for (int64_t b = 0; b < n / 32; b++, p += 20, y += 32) {
            const float d = gw_h2f(gw_ld16(p)), m = gw_h2f(gw_ld16(p + 2));
            for (int j = 0; j < 16; j++) {
                y[j] = (p[4 + j] & 0x0F) * d + m;
                y[j + 16] = (p[4 + j] >> 4) * d + m;
            }
        }
        return;
    case GW_TYPE_Q5_0:
        for (int64_t b = 0; b < n / 32; b++, p += 22, y += 32) {
            const float d = gw_h2f(gw_ld16(p));
            const uint32_t qh = gw_ld32(p + 2);
            for (int j = 0; j < 16; j++) {
                const int x0 = ((p[6 + j] & 0x0F) | (((qh >> j) << 4) & 0x10)) - 16;
                const int x1 = ((p[6 + j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16;
                y[j] = x0 * d;
                y[j + 16] = x1 * d;
            }
        }
        return;
    case GW_TYPE_Q5_1:
        for (int64_t b = 0; b < n / 32; b++, p += 24, y += 32) {
            const float d = gw_h2f(gw_ld16(p)), m = gw_h2f(gw_ld16(p + 2));
            const uint32_t qh = gw_ld32(p + 4);
            for (int j = 0; j < 16; j++) {
                const int x0 = (p[8 + j] & 0x0F) | (((qh >> j) << 4) & 0x10);
                const int x1 = (p[8 + j] >> 4) | ((qh >> (j + 12)) & 0x10);
                y[j] = x0 * d + m;
                y[j + 16] = x1 * d + m;
            }
        }
        return;
    case GW_TYPE_Q8_0:
        for (int64_t b = 0; b < n / 32; b++, p += 34, y += 32) {
            const float d = gw_h2f(gw_ld16(p));
            for (int j = 0; j < 32; j++) y[j] = (int8_t)p[2 + j] * d;
        }
        return;
    case GW_TYPE_Q8_1:
        for (int64_t b = 0; b < n / 32; b++, p += 36, y += 32) {
            const float d = gw_h2f(gw_ld16(p));
            for (int j = 0; j < 32; j++) y[j] = (int8_t)p[4 + j] * d;
        }
        return;
    case GW_TYPE_Q8_K:
        for (int64_t b = 0; b < n / 256; b++, p += 292, y += 256) {
            const float d = gw_ldf(p);
            for (int j = 0; j < 256; j++) y[j] = d * (int8_t)p[4 + j];
        }
        return;
    case GW_TYPE_Q16:
        for (int64_t b = 0; b < n / 32; b++, p += GW_Q16_BYTES, y += 32) {
            const float d = gw_ldf(p);
            for (int j = 0; j < 32; j++) y[j] = d * (float)(GW_Q16_BASE * (int8_t)p[8 + j] + (int8_t)p[40 + j]);
        }
        return;
    case GW_TYPE_Q4_K:
        for (int64_t b = 0; b < n / 256; b++, p += 144) {
            const float d = gw_h2f(gw_ld16(p)), dmin = gw_h2f(gw_ld16(p + 2));
            const uint8_t *sc = p + 4, *q = p + 16;
            for (int j = 0; j < 4; j++, q += 32) {
                uint8_t s, m;
                get_scale_min_k4(2 * j, sc, &s, &m);
                const float d1 = d * s, m1 = dmin * m;
                get_scale_min_k4(2 * j + 1, sc, &s, &m);
                const float d2 = d * s, m2 = dmin * m;
                for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
                for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
            }
        }
        return;
    case GW_TYPE_Q5_K:
        for (int64_t b = 0; b < n / 256; b++, p += 176) {
            const float d = gw_h2f(gw_ld16(p)), dmin = gw_h2f(gw_ld16(p + 2));
            const uint8_t *sc = p + 4, *qh = p + 16, *ql = p + 48;
            uint8_t u1 = 1, u2 = 2;
            for (int j = 0; j < 4; j++, ql += 32, u1 <<= 2, u2 <<= 2) {
                uint8_t s, m;
                get_scale_min_k4(2 * j, sc, &s, &m);
                const float d1 = d * s, m1 = dmin * m;
                get_scale_min_k4(2 * j + 1, sc, &s, &m);
                const float d2 = d * s, m2 = dmin * m;
                for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
                for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            }
        }
        return;
    case GW_TYPE_Q6_K:
        for (int64_t b = 0; b < n / 256; b++, p += 210) {
            const float d = gw_h2f(gw_ld16(p + 208));
            const uint8_t *ql = p, *qh = p + 128;
            const int8_t *sc = (const int8_t *)(p + 192);
            for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, y += 128) {
                for (int l = 0; l < 32; l++) {
                    const int is = l / 16;
                    const int q1 = (int8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    const int q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    const int q3 = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    const int q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    y[l + 0] = d * sc[is + 0] * q1;
                    y[l + 32] = d * sc[is + 2] * q2;
                    y[l + 64] = d * sc[is + 4] * q3;
                    y[l + 96] = d * sc[is + 6] * q4;
                }
            }
        }
        return;
    default:
        fprintf(stderr, "gw_dequantize_row: unsupported type %u\n", t);
        abort();
    }
}

/* ------------------------------------------------------------ quantization */

/* ggml's nearest_int: round half to even via the 1.5*2^23 trick. */
static inline int nearest_int(float fval) {
    float val = fval + 12582912.f;
    int i;
    memcpy(&i, &val, sizeof(int));
    return (i & 0x007fffff) - 0x00400000;
}

static void quantize_q8_0_ref(const float *x, uint8_t *y, int64_t n, int with_sum) {
    const size_t bs = with_sum ? 36 : 34;
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += bs) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        uint16_t dh = gw_fp32_to_fp16(d);
        memcpy(y, &dh, 2);
        int8_t *qs = (int8_t *)(y + (with_sum ? 4 : 2));
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            qs[j] = (int8_t)roundf(x[j] * id);
            sum += qs[j];
        }
        if (with_sum) {
            uint16_t sh = gw_fp32_to_fp16(sum * d);
            memcpy(y + 2, &sh, 2);
        }
    }
}

static void quantize_q4_0_ref(const float *x, uint8_t *y, int64_t n, int bits) {
    const int nlev = 1 << (bits - 1); /* 8 or 16 */
    const size_t bs = bits == 4 ? 18 : 22;
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += bs) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        }
        const float d = max / -nlev;
        const float id = d ? 1.0f / d : 0.0f;
        uint16_t dh = gw_fp32_to_fp16(d);
        memcpy(y, &dh, 2);
        uint8_t *qs = y + (bits == 4 ? 2 : 6);
        uint32_t qh = 0;
        const int qmax = 2 * nlev - 1;
        for (int j = 0; j < 16; j++) {
            int xi0 = (int8_t)(x[j] * id + (nlev + 0.5f));
            int xi1 = (int8_t)(x[j + 16] * id + (nlev + 0.5f));
            if (xi0 > qmax) xi0 = qmax;
            if (xi1 > qmax) xi1 = qmax;
            qs[j] = (uint8_t)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
            qh |= ((uint32_t)(xi0 & 0x10) >> 4) << j;
            qh |= ((uint32_t)(xi1 & 0x10) >> 4) << (j + 16);
        }
        if (bits == 5) memcpy(y + 2, &qh, 4);
    }
}

static void quantize_q4_1_ref(const float *x, uint8_t *y, int64_t n, int bits) {
    const int qmax = (1 << bits) - 1;
    const size_t bs = bits == 4 ? 20 : 24;
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += bs) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < 32; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / qmax;
        const float id = d ? 1.0f / d : 0.0f;
        uint16_t dh = gw_fp32_to_fp16(d), mh = gw_fp32_to_fp16(min);
        memcpy(y, &dh, 2);
        memcpy(y + 2, &mh, 2);
        uint8_t *qs = y + (bits == 4 ? 4 : 8);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            /* ggml clamps Q4_1 to 15 but not Q5_1 (its value cannot exceed 31) */
            int xi0 = (uint8_t)((x[j] - min) * id + 0.5f);
            int xi1 = (uint8_t)((x[j + 16] - min) * id + 0.5f);
            if (bits == 4) {
                xi0 = (int8_t)((x[j] - min) * id + 0.5f);
                xi1 = (int8_t)((x[j + 16] - min) * id + 0.5f);
                if (xi0 > 15) xi0 = 15;
                if (xi1 > 15) xi1 = 15;
            }
            qs[j] = (uint8_t)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
            qh |= ((uint32_t)(xi0 & 0x10) >> 4) << j;
            qh |= ((uint32_t)(xi1 & 0x10) >> 4) << (j + 16);
        }
        if (bits == 5) memcpy(y + 4, &qh, 4);
    }
}

static void quantize_q8_k_ref(const float *x, uint8_t *y, int64_t n) {
    for (int64_t b = 0; b < n / 256; b++, x += 256, y += 292) {
        float max = 0, amax = 0;
        for (int j = 0; j < 256; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        int8_t *qs = (int8_t *)(y + 4);
        if (!amax) {
            memset(y, 0, 292);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < 256; j++) {
            int v = nearest_int(iscale * x[j]);
            qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < 16; j++) {
            int sum = 0;
            for (int i = 0; i < 16; i++) sum += qs[j * 16 + i];
            int16_t s16 = (int16_t)sum;
            memcpy(y + 260 + 2 * j, &s16, 2);
        }
        const float d = 1 / iscale;
        memcpy(y, &d, 4);
    }
}

/* Q16: Q = round_half_even(x * id), id = 1/d, d = amax/32512, clamped to
 * +-32512 (x * id cannot exceed it by more than a rounding error), then
 * h = round(Q / 255) computed as a float product (Q / 255 is never within
 * 0.002 of a half-integer, far more than the product's error), l = Q - 255 h.
 * The SIMD quantizers do the same float operations, so the bits match. */
static void quantize_q16_ref(const float *x, uint8_t *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += GW_Q16_BYTES) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        /* blocks below 2^-100 are zero (keeps 1/d finite) */
        const float d = amax >= 0x1p-100f ? amax / (float)GW_Q16_QMAX : 0.0f;
        const float id = d ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) {
            int q = nearest_int(x[j] * id);
            q = q > GW_Q16_QMAX ? GW_Q16_QMAX : q < -GW_Q16_QMAX ? -GW_Q16_QMAX : q;
            const int h = nearest_int((float)q * (1.0f / GW_Q16_BASE));
            y[8 + j] = (uint8_t)(int8_t)h;
            y[40 + j] = (uint8_t)(int8_t)(q - GW_Q16_BASE * h);
            sum += q;
        }
        memcpy(y, &d, 4);
        memcpy(y + 4, &sum, 4);
    }
}

void gw_quantize_row_ref(uint32_t t, const float *src, void *dst, int64_t n) {
    uint8_t *y = (uint8_t *)dst;
    switch (t) {
    case GW_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return;
    case GW_TYPE_F16:
        for (int64_t i = 0; i < n; i++) { uint16_t h = gw_fp32_to_fp16(src[i]); memcpy(y + 2 * i, &h, 2); }
        return;
    case GW_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) { uint16_t h = gw_fp32_to_bf16(src[i]); memcpy(y + 2 * i, &h, 2); }
        return;
    case GW_TYPE_Q8_0: quantize_q8_0_ref(src, y, n, 0); return;
    case GW_TYPE_Q8_1: quantize_q8_0_ref(src, y, n, 1); return;
    case GW_TYPE_Q4_0: quantize_q4_0_ref(src, y, n, 4); return;
    case GW_TYPE_Q5_0: quantize_q4_0_ref(src, y, n, 5); return;
    case GW_TYPE_Q4_1: quantize_q4_1_ref(src, y, n, 4); return;
    case GW_TYPE_Q5_1: quantize_q4_1_ref(src, y, n, 5); return;
    case GW_TYPE_Q8_K: quantize_q8_k_ref(src, y, n); return;
    case GW_TYPE_Q16: quantize_q16_ref(src, y, n); return;
    default:
        fprintf(stderr, "gw_quantize_row: unsupported type %u\n", t);
        abort();
    }
}

/* ------------------------------------------------------------ ISA dispatch */

static _Atomic int g_isa = -1;

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
/* F16C by cpuid (leaf 1, ECX bit 29): clang's __builtin_cpu_supports does
 * not know the name. */
static bool cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
#endif

gw_isa gw_quant_best_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma") && cpu_has_f16c())
        return GW_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c())
        return GW_ISA_AVX2;
#endif
    return GW_ISA_SCALAR;
}

gw_isa gw_quant_force_isa(gw_isa isa) {
    gw_isa best = gw_quant_best_isa();
    if ((int)isa > (int)best) isa = best;
    if ((int)isa < 0) isa = GW_ISA_SCALAR;
    atomic_store(&g_isa, (int)isa);
    return isa;
}

static gw_isa current_isa(void) {
    int v = atomic_load_explicit(&g_isa, memory_order_relaxed);
    if (v >= 0) return (gw_isa)v;
    gw_isa isa = gw_quant_best_isa();
    const char *env = getenv("GODWIT_ISA");
    if (env) {
        if (!strcmp(env, "scalar")) isa = GW_ISA_SCALAR;
        else if (!strcmp(env, "avx2") && isa >= GW_ISA_AVX2) isa = GW_ISA_AVX2;
        else if (!strcmp(env, "avx512") && isa >= GW_ISA_AVX512) isa = GW_ISA_AVX512;
    }
    /* Racing first callers compute the same value, so a plain store is fine. */
    int expected = -1;
    atomic_compare_exchange_strong(&g_isa, &expected, (int)isa);
    return (gw_isa)atomic_load(&g_isa);
}

static const gw_quant_kernels *current_kernels(void) {
    switch (current_isa()) {
    case GW_ISA_AVX512: return &gw_kernels_avx512;
    case GW_ISA_AVX2: return &gw_kernels_avx2;
    default: return &gw_kernels_scalar;
    }
}

const char *gw_quant_isa_name(void) {
    switch (current_isa()) {
    case GW_ISA_AVX512: return "avx512";
    case GW_ISA_AVX2: return "avx2";
    default: return "scalar";
    }
}

void gw_quantize_row(uint32_t t, const float *src, void *dst, int64_t n) {
    const gw_quant_kernels *K = current_kernels();
    if (K->quantize_act && (t == GW_TYPE_Q8_0 || t == GW_TYPE_Q8_1 || t == GW_TYPE_Q8_K || t == GW_TYPE_Q16)) {
        K->quantize_act(t, src, dst, n);
        return;
    }
    gw_quantize_row_ref(t, src, dst, n);
}

/* ------------------------------------------------- activation precision */

static _Atomic int g_act = -1;

void gw_quant_set_activation_precision(gw_act_precision p) {
    atomic_store(&g_act, p == GW_ACT_INT8 ? (int)GW_ACT_INT8 : (int)GW_ACT_INT16);
}

gw_act_precision gw_quant_activation_precision(void) {
    int v = atomic_load_explicit(&g_act, memory_order_relaxed);
    if (v >= 0) return (gw_act_precision)v;
    int p = GW_ACT_INT16;
    const char *env = getenv("GODWIT_ACT");
    if (env) {
        if (!strcmp(env, "int8")) p = GW_ACT_INT8;
        else if (!strcmp(env, "int16")) p = GW_ACT_INT16;
        else fprintf(stderr, "godwit: GODWIT_ACT=%s not understood (int8|int16), using int16\n", env);
    }
    int expected = -1;
    atomic_compare_exchange_strong(&g_act, &expected, p);
    return (gw_act_precision)atomic_load(&g_act);
}

static uint32_t vec_dot_type_int8(uint32_t wt) {
    switch (wt) {
    case GW_TYPE_F32: case GW_TYPE_F16: case GW_TYPE_BF16: return GW_TYPE_F32;
    case GW_TYPE_Q4_0: case GW_TYPE_Q5_0: case GW_TYPE_Q8_0: return GW_TYPE_Q8_0;
    case GW_TYPE_Q4_1: case GW_TYPE_Q5_1: return GW_TYPE_Q8_1;
    case GW_TYPE_Q4_K: case GW_TYPE_Q5_K: case GW_TYPE_Q6_K: return GW_TYPE_Q8_K;
    default: return GW_TYPE_COUNT;
    }
}

uint32_t gw_vec_dot_type(uint32_t wt) {
    const uint32_t t = vec_dot_type_int8(wt);
    if (t == GW_TYPE_F32 || t == GW_TYPE_COUNT) return t;
    return gw_quant_activation_precision() == GW_ACT_INT16 ? GW_TYPE_Q16 : t;
}

int gw_matmul_supported(uint32_t wt) { return vec_dot_type_int8(wt) != GW_TYPE_COUNT; }

/* ------------------------------------------------- unpacking weight blocks */

void gw_unpack_sub(uint32_t wt, const uint8_t *row, int64_t sb, uint8_t *u, float *scale, float *min) {
    switch (wt) {
    case GW_TYPE_Q4_0: {
        const uint8_t *p = row + sb * 18;
        const float d = gw_h2f(gw_ld16(p));
        for (int j = 0; j < 16; j++) { u[j] = p[2 + j] & 15; u[j + 16] = p[2 + j] >> 4; }
        *scale = d; *min = -8.0f * d;
        return;
    }
    case GW_TYPE_Q4_1: {
        const uint8_t *p = row + sb * 20;
        for (int j = 0; j < 16; j++) { u[j] = p[4 + j] & 15; u[j + 16] = p[4 + j] >> 4; }
        *scale = gw_h2f(gw_ld16(p)); *min = gw_h2f(gw_ld16(p + 2));
        return;
    }
    case GW_TYPE_Q5_0:
    case GW_TYPE_Q5_1: {
        const int one = wt == GW_TYPE_Q5_1;
        const uint8_t *p = row + sb * (one ? 24 : 22);
        const uint32_t qh = gw_ld32(p + (one ? 4 : 2));
        const uint8_t *qs = p + (one ? 8 : 6);
        for (int j = 0; j < 16; j++) {
            u[j] = (uint8_t)((qs[j] & 15) | (((qh >> j) & 1) << 4));
            u[j + 16] = (uint8_t)((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
        }
        const float d = gw_h2f(gw_ld16(p));
        *scale = d;
        *min = one ? gw_h2f(gw_ld16(p + 2)) : -16.0f * d;
        return;
    }
    case GW_TYPE_Q8_0: {
        const uint8_t *p = row + sb * 34;
        for (int j = 0; j < 32; j++) u[j] = p[2 + j] ^ 0x80; /* q + 128 */
        const float d = gw_h2f(gw_ld16(p));
        *scale = d; *min = -128.0f * d;
        return;
    }
    case GW_TYPE_Q4_K:
    case GW_TYPE_Q5_K: {
        const int five = wt == GW_TYPE_Q5_K;
        const uint8_t *p = row + (sb / 8) * (five ? 176 : 144);
        const int s = (int)(sb % 8);
        const uint8_t *qs = p + (five ? 48 : 16) + 32 * (s / 2);
        const int shift = 4 * (s & 1);
        for (int l = 0; l < 32; l++) u[l] = (qs[l] >> shift) & 15;
        if (five) {
            const uint8_t *qh = p + 16;
            for (int l = 0; l < 32; l++) u[l] |= (uint8_t)(((qh[l] >> s) & 1) << 4);
        }
        uint8_t sc, m;
        get_scale_min_k4(s, p + 4, &sc, &m);
        *scale = gw_h2f(gw_ld16(p)) * sc;
        *min = -(gw_h2f(gw_ld16(p + 2)) * m);
        return;
    }
    case GW_TYPE_Q6_K: {
        const uint8_t *p = row + (sb / 16) * 210;
        const int e0 = (int)(sb % 16) * 16;     /* first element in the super-block */
        const int h = e0 / 128, qq = (e0 % 128) / 32, l0 = e0 % 32;
        const uint8_t *ql = p + 64 * h + (qq & 1) * 32 + l0;
        const uint8_t *qh = p + 128 + 32 * h + l0;
        for (int l = 0; l < 16; l++)
            u[l] = (uint8_t)(((ql[l] >> (4 * (qq >> 1))) & 15) | (((qh[l] >> (2 * qq)) & 3) << 4));
        const float ds = gw_h2f(gw_ld16(p + 208)) * (int8_t)p[192 + sb % 16];
        *scale = ds; *min = -32.0f * ds;
        return;
    }
    default:
        abort();
    }
}

void gw_row_scales(uint32_t wt, const uint8_t *const *rows, int64_t sb0, int cnt, float *sc, float *mn) {
    uint8_t u[32];
    for (int i = 0; i < cnt; i++)
        for (int r = 0; r < GW_PANEL_ROWS; r++)
            gw_unpack_sub(wt, rows[r], sb0 + i, u, &sc[i * 16 + r], &mn[i * 16 + r]);
}

void gw_repack_panel_generic(uint32_t wt, const uint8_t *W, size_t w_stride, int nrows, int64_t nsb,
                             uint8_t *panel) {
    const int S = gw_sub_size(wt);
    const size_t sbb = gw_panel_sb_bytes(S);
    for (int64_t sb = 0; sb < nsb; sb++) {
        uint8_t *q = panel + sb * sbb;
        float *sc = (float *)(q + S * 16), *mn = sc + 16;
        for (int r = 0; r < GW_PANEL_ROWS; r++) {
            uint8_t u[32];
            float s = 0, m = 0;
            if (r < nrows) gw_unpack_sub(wt, W + r * w_stride, sb, u, &s, &m);
            else memset(u, 0, sizeof u);
            for (int g = 0; g < S / 4; g++) memcpy(q + g * 64 + r * 4, u + 4 * g, 4);
            sc[r] = s;
            mn[r] = m;
        }
    }
}

/* ------------------------------------------------------- activation packing */

/* Pack tokens [j0, j0+nt) of X into tiles of J (padding with zero tokens):
 * xq[tile][sb][j][P][S], xd/xs[tile][sb][j]. at is the activation type (P = 2
 * planes for Q16, else 1). S is a compile-time constant in each instantiation
 * so the copies and sums inline. */
static inline __attribute__((always_inline)) void
pack_x_s(uint32_t at, const uint8_t *X, size_t x_stride, int64_t j0, int64_t nt, int J, const int S,
         int64_t nsb, int8_t *xq, float *xd, float *xs) {
    const int64_t ntile = (nt + J - 1) / J;
    const int P = gw_act_planes(at);
    for (int64_t t = 0; t < ntile; t++) {
        for (int j = 0; j < J; j++) {
            const int64_t tok = t * J + j;
            const uint8_t *row = X + (size_t)(j0 + tok) * x_stride;
            for (int64_t sb = 0; sb < nsb; sb++) {
                const size_t o = (size_t)(t * nsb + sb) * J + j;
                int8_t *q = xq + o * S * P;
                if (tok >= nt) {
                    memset(q, 0, (size_t)(S * P));
                    xd[o] = 0; xs[o] = 0;
                    continue;
                }
                float d;
                const uint8_t *src;
                if (at == GW_TYPE_Q16) {
                    const int64_t e = sb * S;
                    const uint8_t *blk = row + (e / 32) * GW_Q16_BYTES;
                    const int off = (int)(e % 32);
                    memcpy(q, blk + 8 + off, (size_t)S);
                    memcpy(q + S, blk + 40 + off, (size_t)S);
                    int32_t sum = 0;
                    if (S == 32) memcpy(&sum, blk + 4, 4);
                    else for (int i = 0; i < S; i++) sum += GW_Q16_BASE * q[i] + q[S + i];
                    d = gw_ldf(blk);
                    xd[o] = d;
                    xs[o] = d * (float)sum;
                    continue;
                }
                if (at == GW_TYPE_Q8_0) { src = row + sb * 34 + 2; d = gw_h2f(gw_ld16(row + sb * 34)); }
                else if (at == GW_TYPE_Q8_1) { src = row + sb * 36 + 4; d = gw_h2f(gw_ld16(row + sb * 36)); }
                else { /* Q8_K: sub-block of S inside a 256 super-block */
                    const int64_t e = sb * S;
                    const uint8_t *blk = row + (e / 256) * 292;
                    src = blk + 4 + e % 256;
                    d = gw_ldf(blk);
                }
                memcpy(q, src, (size_t)S);
                int sum = 0;
                for (int i = 0; i < S; i++) sum += q[i];
                xd[o] = d;
                xs[o] = d * (float)sum; /* exact int sum: no fp16 rounding of ggml's s */
            }
        }
    }
}

static void pack_x(uint32_t at, const uint8_t *X, size_t x_stride, int64_t j0, int64_t nt, int J, int S,
                   int64_t nsb, int8_t *xq, float *xd, float *xs) {
    if (S == 32) pack_x_s(at, X, x_stride, j0, nt, J, 32, nsb, xq, xd, xs);
    else pack_x_s(at, X, x_stride, j0, nt, J, 16, nsb, xq, xd, xs);
}

/* ----------------------------------------------------- per-thread scratch */

static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;
typedef struct { void *p; size_t cap; } scratch_buf;

static void scratch_free(void *v) {
    scratch_buf *s = (scratch_buf *)v;
    if (s) { free(s->p); free(s); }
}
static void scratch_init(void) { pthread_key_create(&g_scratch_key, scratch_free); }

/* A 64-byte aligned buffer of at least `bytes`, reused by this thread's later
 * calls (freed when the thread exits). */
void *gw_scratch_get(size_t bytes) {
    pthread_once(&g_scratch_once, scratch_init);
    scratch_buf *s = (scratch_buf *)pthread_getspecific(g_scratch_key);
    if (!s) {
        s = (scratch_buf *)calloc(1, sizeof *s);
        if (!s) abort();
        pthread_setspecific(g_scratch_key, s);
    }
    if (s->cap < bytes) {
        free(s->p);
        size_t cap = (bytes + 63) & ~(size_t)63;
        s->p = aligned_alloc(64, cap);
        if (!s->p) { fprintf(stderr, "gw_matmul: out of memory (%zu bytes)\n", cap); abort(); }
        s->cap = cap;
    }
    return s->p;
}

/* ------------------------------------------------------------ scalar kernels */

/* One token per tile: the scalar path gains nothing from register blocking,
 * and larger tiles would waste work on padding for decode. */
#define SCALAR_J 1

static void gemm_scalar(uint32_t wt, const uint8_t *panel, int64_t nsb, int S, int P, const int8_t *xq,
                        const float *xd, const float *xs, float *Y, int64_t ldy, int nr, int jn) {
    (void)wt; (void)jn;
    const size_t sbb = gw_panel_sb_bytes(S);
    float acc[16] = {0};
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *q = panel + sb * sbb;
        const float *sc = (const float *)(q + S * 16), *mn = sc + 16;
        const int8_t *x = xq + sb * S * P;
        /* dot[r] over the panel's [g][row][4] layout: contiguous inner loop;
         * Q16: 255 * (h plane) + (l plane) */
        int32_t dot[16] = {0};
        for (int p = 0; p < P; p++, x += S) {
            if (p) for (int r = 0; r < 16; r++) dot[r] *= GW_Q16_BASE;
            for (int g = 0; g < S / 4; g++)
                for (int r = 0; r < 16; r++)
                    for (int e = 0; e < 4; e++) dot[r] += q[g * 64 + r * 4 + e] * x[4 * g + e];
        }
        const float dx = xd[sb], sx = xs[sb];
        for (int r = 0; r < 16; r++) acc[r] += sc[r] * dx * (float)dot[r] + mn[r] * sx;
    }
    for (int r = 0; r < nr; r++) Y[r] = acc[r];
    (void)ldy;
}

static inline float load_w_float(uint32_t wt, const uint8_t *row, int64_t i) {
    if (wt == GW_TYPE_F32) return gw_ldf(row + 4 * i);
    if (wt == GW_TYPE_F16) return gw_h2f(gw_ld16(row + 2 * i));
    return gw_bf16_to_fp32(gw_ld16(row + 2 * i));
}

static void matmul_float_scalar(uint32_t wt, const void *W, size_t w_stride, const float *X, size_t x_stride,
                                int64_t k, int64_t r0, int64_t r1, int64_t n, float *Y, int64_t ldy) {
    enum { CH = 256 };
    float w[CH];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)W + r * w_stride;
        for (int64_t j = 0; j < n; j++) Y[j * ldy + r] = 0;
        for (int64_t k0 = 0; k0 < k; k0 += CH) {
            const int64_t kc = k - k0 < CH ? k - k0 : CH;
            for (int64_t i = 0; i < kc; i++) w[i] = load_w_float(wt, row, k0 + i);
            for (int64_t j = 0; j < n; j++) {
                /* rows need not be 4-byte aligned: read through memcpy */
                const uint8_t *x = (const uint8_t *)X + j * x_stride + 4 * k0;
                float s[4] = {0, 0, 0, 0};
                int64_t i = 0;
                for (; i + 4 <= kc; i += 4)
                    for (int e = 0; e < 4; e++) s[e] += w[i + e] * gw_ldf(x + 4 * (i + e));
                for (; i < kc; i++) s[0] += w[i] * gw_ldf(x + 4 * i);
                Y[j * ldy + r] += (s[0] + s[1]) + (s[2] + s[3]);
            }
        }
    }
}

const gw_quant_kernels gw_kernels_scalar = {
    .J = SCALAR_J,
    .gemm_min_n = 1,
    .dec_max_j = 0,
    .gemm = gemm_scalar,
    .repack = NULL,
    .decode = NULL,
    .matmul_float = matmul_float_scalar,
    .pack_x = NULL,
    .quantize_act = NULL,
};

/* ------------------------------------------------------------------ driver */

void gw_matmul(uint32_t wt, const void *W, size_t w_stride, const void *X, size_t x_stride,
               int64_t k, int64_t r0, int64_t r1, int64_t n, float *Y, int64_t ldy) {
    if (r1 <= r0 || n <= 0) return;
    const gw_quant_kernels *K = current_kernels();
    if (wt == GW_TYPE_F32 || wt == GW_TYPE_F16 || wt == GW_TYPE_BF16) {
        K->matmul_float(wt, W, w_stride, (const float *)X, x_stride, k, r0, r1, n, Y, ldy);
        return;
    }
    const uint32_t at = gw_vec_dot_type(wt);
    if (at == GW_TYPE_COUNT) {
        fprintf(stderr, "gw_matmul: unsupported weight type %u\n", wt);
        abort();
    }
    const int P = gw_act_planes(at);
    const int S = gw_sub_size(wt);
    const int64_t nsb = k / S;
    const uint8_t *Wb = (const uint8_t *)W;
    const uint8_t *Xb = (const uint8_t *)X;

    if (K->decode && n < K->gemm_min_n) {
        /* Small n: kernels read the GGUF blocks in place, no repacking. */
        const int DJ = K->dec_max_j;
        const size_t xbytes = (size_t)DJ * nsb * (S * P + 2 * sizeof(float)) + 64;
        uint8_t *buf = (uint8_t *)gw_scratch_get(xbytes);
        float *xd = (float *)buf, *xs = xd + DJ * nsb;
        int8_t *xq = (int8_t *)(xs + DJ * nsb);
        for (int64_t j0 = 0; j0 < n; j0 += DJ) {
            const int J = (int)(n - j0 < DJ ? n - j0 : DJ);
            (K->pack_x ? K->pack_x : pack_x)(at, Xb, x_stride, j0, J, J, S, nsb, xq, xd, xs);
            if (j0 == 0) {
                const int64_t re = r0 + 16 < r1 ? r0 + 16 : r1;
                const uint8_t *p0 = Wb + (size_t)r0 * w_stride, *pe = Wb + (size_t)re * w_stride;
                for (const uint8_t *p = p0; p < pe; p += 64) __builtin_prefetch(p, 0, 3);
            }
            for (int64_t r = r0; r < r1; r += 16) {
                const int nr = (int)(r1 - r < 16 ? r1 - r : 16);
                const uint8_t *rows[16];
                for (int i = 0; i < 16; i++) rows[i] = Wb + (size_t)(r + (i < nr ? i : nr - 1)) * w_stride;
                /* prefetch the next panel (contiguous rows) while computing this one */
                const int64_t rn = r + 16 < r1 ? r + 16 : r1;
                const int64_t rn1 = rn + 16 < r1 ? rn + 16 : r1;
                const uint8_t *pf = rn < r1 ? Wb + (size_t)rn * w_stride : NULL;
                const size_t pf_bytes = (size_t)(rn1 - rn) * w_stride;
                if (!K->decode(wt, rows, nsb, J, P, xq, xd, xs, Y + j0 * ldy + r, ldy, nr, pf, pf_bytes)) abort();
            }
        }
        return;
    }

    /* GEMM: tokens in chunks of NC, packed once per chunk; weights repacked 16
     * rows at a time and reused across every token tile of the chunk. */
    const int J = K->J;
    const int64_t NC = 512; /* one repack per panel for a 512-token prefill */
    const int64_t nc_max = n < NC ? n : NC;
    const int64_t ntile_max = (nc_max + J - 1) / J;
    const size_t panel_bytes = (size_t)nsb * gw_panel_sb_bytes(S);
    const size_t xelems = (size_t)ntile_max * J * nsb;
    const size_t bytes = panel_bytes + xelems * (2 * sizeof(float) + S * P) + 128;
    uint8_t *buf = (uint8_t *)gw_scratch_get(bytes);
    uint8_t *panel = buf;
    float *xd = (float *)(buf + ((panel_bytes + 63) & ~(size_t)63));
    float *xs = xd + xelems;
    int8_t *xq = (int8_t *)(xs + xelems);
    for (int64_t c0 = 0; c0 < n; c0 += NC) {
        const int64_t nc = n - c0 < NC ? n - c0 : NC;
        const int64_t ntile = (nc + J - 1) / J;
        (K->pack_x ? K->pack_x : pack_x)(at, Xb, x_stride, c0, nc, J, S, nsb, xq, xd, xs);
        for (int64_t r = r0; r < r1; r += 16) {
            const int nr = (int)(r1 - r < 16 ? r1 - r : 16);
            const uint8_t *Wr = Wb + (size_t)r * w_stride;
            if (K->repack) K->repack(wt, Wr, w_stride, nr, nsb, panel);
            else gw_repack_panel_generic(wt, Wr, w_stride, nr, nsb, panel);
            for (int64_t t = 0; t < ntile; t++) {
                const size_t o = (size_t)t * nsb * J;
                const int jn = (int)(nc - t * J < J ? nc - t * J : J);
                K->gemm(wt, panel, nsb, S, P, xq + o * S * P, xd + o, xs + o, Y + (c0 + t * J) * ldy + r, ldy, nr,
                        jn);
            }
        }
    }
}
