/* Internals shared by quant.c, quant_avx2.c and quant_avx512.c. Not a public
 * header: only the quant*.c files include it.
 *
 * How gw_matmul is organised
 * --------------------------
 * Every quantized weight type is viewed as a sequence of "sub-blocks" of S
 * elements (S = 32, or 16 for Q6_K whose scales cover 16 elements) where each
 * weight is  w = scale * u + min  with u an unsigned 8-bit integer:
 *   Q4_0: u = nibble,        min = -8 d      Q4_1: u = nibble,  min = m
 *   Q5_0: u = 5-bit value,   min = -16 d     Q5_1: u = 5 bits,  min = m
 *   Q8_0: u = q + 128,       min = -128 d    Q4_K/Q5_K: scale = d*sc, min = -dmin*m
 *   Q6_K: u = 6-bit value,   scale = d*sc, min = -32 d*sc
 * Activations are integers x with a per-sub-block scale dx, so one sub-block
 * adds
 *   scale*dx * sum(u*x) + min * (dx*sum(x))
 * With int8 activations (Q8_0/Q8_1/Q8_K) the integer sum(u*x) is exactly what
 * VPDPBUSD (u8 x s8) and PMADDUBSW compute, so one pair of kernels serves all
 * types; the per-type work is only unpacking u and the scales. With Q16
 * activations x = 255*h + l (two int8 "planes", P = 2) and
 *   sum(u*x) = 255*sum(u*h) + sum(u*l)
 * in int32 (|sum| <= 32*255*32512 < 2^31), so the same kernels run each
 * sub-block's dot twice, once per plane, and combine them (255*a is a shift
 * and a subtract). The Q16 blocks are 32 elements, so they serve every weight
 * type (K-quant sub-blocks of 32 or 16 lie inside one; the 16-element sums
 * for Q6_K are recomputed from the planes).
 *
 * Activations are first packed ("xpack") into tiles of J tokens:
 *   xq[tile][sb][j][P][S] int8, xd[tile][sb][j] float, xs[tile][sb][j] = dx*sum(x)
 * For prefill (n large) weights are repacked 16 rows at a time into a "panel":
 *   per sub-block: u8 q[S/4][16 rows][4]  (4 consecutive k of one row per 32-bit
 *   lane, so a VPDPBUSD against a broadcast 4-byte activation group gives 16
 *   row sums at once, no horizontal reduction), then float scale[16], min[16].
 * Decode (small n) kernels read the GGUF blocks in place instead. */
#ifndef GODWIT_QUANT_IMPL_H
#define GODWIT_QUANT_IMPL_H
#include <stdint.h>
#include <string.h>
#include "backend/cpu/quant.h"

#define GW_QK 32        /* elements per block of the 32-element types */
#define GW_QK_K 256     /* elements per K-quant super-block */
#define GW_PANEL_ROWS 16

/* Unaligned little-endian loads: GGUF blocks have 2-byte alignment at best. */
static inline uint16_t gw_ld16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t gw_ld32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline float gw_ldf(const void *p) { float v; memcpy(&v, p, 4); return v; }

static inline float gw_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t gw_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* Exact IEEE half -> single (normals, subnormals, inf, NaN payload kept). */
static inline float gw_h2f(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return gw_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        /* subnormal (or zero): value = man * 2^-24, exact in float */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return gw_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* Q16 activations: x = d * (255*h + l), |h|, |l| <= 127. */
#define GW_Q16_BASE 255
#define GW_Q16_QMAX 32512 /* 127 * 256 = 127 * 255 + 127 */
#define GW_Q16_BYTES 72   /* float d, int32 sum, int8 h[32], int8 l[32] */

/* Activation planes of activation type at: 2 for Q16, else 1. */
static inline int gw_act_planes(uint32_t at) { return at == GW_TYPE_Q16 ? 2 : 1; }

/* Sub-block geometry of a quantized weight type (S, bytes per GGUF block,
 * elements per GGUF block). Returns 0 for non-quantized/unsupported types. */
static inline int gw_sub_size(uint32_t wt) { return wt == GW_TYPE_Q6_K ? 16 : 32; }

/* Bytes of one panel sub-block: S*16 quant bytes + 16 scales + 16 mins. */
static inline size_t gw_panel_sb_bytes(int S) { return (size_t)S * GW_PANEL_ROWS + 2 * GW_PANEL_ROWS * sizeof(float); }

/* Unpack sub-block sb of a weight row: u[0..S) and w = scale*u + min. */
void gw_unpack_sub(uint32_t wt, const uint8_t *row, int64_t sb, uint8_t *u, float *scale, float *min);
/* Scales and mins of sub-blocks [sb0, sb0+cnt) of up to 16 rows, written as
 * sc[i*16 + r], mn[i*16 + r]. rows[r] are row pointers (all 16 valid). */
void gw_row_scales(uint32_t wt, const uint8_t *const *rows, int64_t sb0, int cnt, float *sc, float *mn);

/* Scalar-generic panel repack of nrows (<= 16) rows starting at W; missing rows
 * are zero. */
void gw_repack_panel_generic(uint32_t wt, const uint8_t *W, size_t w_stride, int nrows, int64_t nsb,
                             uint8_t *panel);

/* Per-ISA kernel set. */
typedef struct {
    int J;          /* tokens per GEMM tile */
    int gemm_min_n; /* use the GEMM path when n >= this */
    int dec_max_j;  /* decode kernel handles up to this many tokens at once */
    /* Panel x token tile: Y[j*ldy + r] for r < nr (rows of the panel), j < jn.
     * P: activation planes (1 or 2). */
    void (*gemm)(uint32_t wt, const uint8_t *panel, int64_t nsb, int S, int P, const int8_t *xq, const float *xd,
                 const float *xs, float *Y, int64_t ldy, int nr, int jn);
    /* Repack up to 16 rows into a panel; NULL means use the generic one. */
    void (*repack)(uint32_t wt, const uint8_t *W, size_t w_stride, int nrows, int64_t nsb, uint8_t *panel);
    /* Decode: 16 rows (row pointers) x J (<= dec_max_j) tokens straight from GGUF
     * blocks; Y[j*ldy + r] for r < nr. While working it prefetches [pf, pf + pf_bytes)
     * (the next panel: rows are too short for the hardware prefetcher to
     * ramp up, and decode is bound by DRAM). Returns 0 if it does not handle wt. */
    int (*decode)(uint32_t wt, const uint8_t *const *rows, int64_t nsb, int J, int P, const int8_t *xq,
                  const float *xd, const float *xs, float *Y, int64_t ldy, int nr, const uint8_t *pf,
                  size_t pf_bytes);
    /* Float weights (F32/F16/BF16) x F32 activations, rows [r0, r1). */
    void (*matmul_float)(uint32_t wt, const void *W, size_t w_stride, const float *X, size_t x_stride,
                         int64_t k, int64_t r0, int64_t r1, int64_t n, float *Y, int64_t ldy);
    /* Activation packing (see the top of this file); NULL means scalar. */
    void (*pack_x)(uint32_t at, const uint8_t *X, size_t x_stride, int64_t j0, int64_t nt, int J, int S,
                   int64_t nsb, int8_t *xq, float *xd, float *xs);
    /* Q8_0 / Q8_1 / Q8_K / Q16 activation quantizers (bit-exact with the
     * scalar reference); NULL means scalar. */
    void (*quantize_act)(uint32_t t, const float *src, void *dst, int64_t n);
} gw_quant_kernels;

extern const gw_quant_kernels gw_kernels_scalar;
extern const gw_quant_kernels gw_kernels_avx2;
extern const gw_quant_kernels gw_kernels_avx512;

/* AVX2 activation packing, shared by the AVX2 and AVX-512 tables. */
void gw_pack_x_avx2(uint32_t at, const uint8_t *X, size_t x_stride, int64_t j0, int64_t nt, int J, int S,
                    int64_t nsb, int8_t *xq, float *xd, float *xs);

/* A 64-byte aligned per-thread buffer of at least `bytes`, reused by the
 * thread's later calls (freed at thread exit); one buffer per thread, so a
 * caller must not hold it across another gw_scratch_get. */
void *gw_scratch_get(size_t bytes);

/* Float weights (F32/F16/BF16), n >= GW_FLOAT_GEMM_MIN_N: weights are converted
 * to float panels of PR rows, stored k-major (panel[i*PR + r]), and a
 * PR-row x J-token micro-kernel broadcasts each activation against them. */
#define GW_FLOAT_GEMM_MIN_N 8
/* Tokens per chunk of the float GEMM (a multiple of J): the chunk's float
 * activations (chunk * k * 4 bytes) stay within ~384 KB of L2 while every
 * panel of the thread's rows runs over them. */
static inline int64_t gw_float_chunk(int64_t k, int J) {
    int64_t c = (384 * 1024 / 4) / (k > 0 ? k : 1) / J * J;
    if (c < 4 * J) c = 4 * J;
    return c > 512 ? 512 : c;
}

/* Scalar reference quantizers (used by SIMD files for tails). */
void gw_quantize_row_ref(uint32_t t, const float *src, void *dst, int64_t n);
#endif
