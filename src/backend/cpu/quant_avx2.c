/* AVX2 + FMA + F16C kernels (no VNNI: Haswell/Zen 2-3 class CPUs). Compiled
 * for that target via the pragma below and only reached after quant.c's
 * cpuid check.
 *
 * The integer dot products use PMADDUBSW (u8 x s8 -> pairwise s16 sums, which
 * saturate) and PMADDWD with ones to widen. Unsigned weights u <= 15 allow
 * eight PMADDUBSW results to be summed in 16 bits (8*2*15*127 < 32767); u <= 31
 * four, u <= 63 two. Q8_0 uses the sign trick |w| * sign(x, w) instead, because
 * q+128 times x would overflow 16 bits. The bounds hold for the two planes of
 * Q16 activations too (|h|, |l| <= 127; never -128, which the sign trick
 * could not negate); each plane gets its own dot, combined in 32 bits as
 * 255*dot(h) + dot(l). */
#if defined(__x86_64__) && defined(__GNUC__)
#include "backend/cpu/quant_impl.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

/* Everything below is compiled for the target (gcc: pragma; clang, which
 * ignores that pragma: an attribute pushed onto every function). */
#ifdef __clang__
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,bmi,bmi2"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c,bmi,bmi2")
#endif

#define INLINE static inline __attribute__((always_inline))

INLINE __m128i ld128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }
/* 16 bytes from each of 2 rows: [ra | rb]. */
INLINE __m256i load2x16(const uint8_t *a, const uint8_t *b) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(ld128(a)), ld128(b), 1);
}
INLINE __m256i bcast128(const void *p) { return _mm256_broadcastsi128_si256(ld128(p)); }

INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
INLINE int hsum256i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* Same transpose-reduction as the AVX-512 file: v_i holds 4 partials of row
 * (2i + L) in lane L; the result has row (2i + L) at position 4L + i. */
INLINE __m256i reduce4(__m256i v0, __m256i v1, __m256i v2, __m256i v3) {
    __m256i t0 = _mm256_add_epi32(_mm256_unpacklo_epi32(v0, v1), _mm256_unpackhi_epi32(v0, v1));
    __m256i t1 = _mm256_add_epi32(_mm256_unpacklo_epi32(v2, v3), _mm256_unpackhi_epi32(v2, v3));
    return _mm256_add_epi32(_mm256_unpacklo_epi64(t0, t1), _mm256_unpackhi_epi64(t0, t1));
}
static const int32_t k_perm8[8] = {0, 2, 4, 6, 1, 3, 5, 7};    /* position -> row */
static const int32_t k_unperm8[8] = {0, 4, 1, 5, 2, 6, 3, 7};  /* row -> position */

INLINE __m256 h2f_lo(__m256i v) {
    /* low 16 bits of each 32-bit lane -> 8 halves -> floats */
    const __m256i sh = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                        0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i p = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, sh), 0x08);
    return _mm256_cvtph_ps(_mm256_castsi256_si128(p));
}
INLINE __m256 h2f_hi(__m256i v) { return h2f_lo(_mm256_srli_epi32(v, 16)); }

/* ------------------------------------------------------------ GEMM kernel */

#define J2 4

/* mode: 0 u<=15 (8 PMADDUBSW per 16-bit chunk), 1 u<=31 (4), 2 u<=63 (2),
 * 3 Q8_0 signed (panel holds q+128; sign trick, no min term). Processes the
 * two 8-row halves of the panel one after the other so that one half's
 * weights stay in registers across the J2 tokens. */
/* Store the first n (0..8) floats of v. */
INLINE void store_n(float *y, __m256 v, int n) {
    if (n >= 8) {
        _mm256_storeu_ps(y, v);
    } else if (n > 0) {
        const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_maskstore_ps(y, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx), v);
    }
}

INLINE __m256i mul255(__m256i d) { return _mm256_sub_epi32(_mm256_slli_epi32(d, 8), d); }

/* P = 2 (Q16 activations): the dot of the h plane, times 255, plus the dot of
 * the l plane (|h|, |l| <= 127, so the 16-bit bounds above still hold). */
INLINE void gemm2_body(const int mode, const int S, const int P, const uint8_t *panel, int64_t nsb,
                       const int8_t *xq, const float *xd, const float *xs, float *Y, int64_t ldy, int nr, int jn) {
    const size_t sbb = gw_panel_sb_bytes(S);
    const int G = S / 4;
    const int chunk = mode == 0 ? 8 : mode == 1 ? 4 : mode == 2 ? 2 : 1;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int h = 0; h < 2; h++) {
        /* full unrolling keeps acc[] and w[] in registers */
        __m256 acc[J2];
#pragma GCC unroll 8
        for (int j = 0; j < J2; j++) acc[j] = _mm256_setzero_ps();
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *q = panel + sb * sbb;
            __m256i w[8];
#pragma GCC unroll 8
            for (int g = 0; g < G; g++) {
                w[g] = _mm256_load_si256((const __m256i *)(q + 64 * g + 32 * h));
                if (mode == 3) w[g] = _mm256_xor_si256(w[g], _mm256_set1_epi8((char)0x80));
            }
            const __m256 sc = _mm256_load_ps((const float *)(q + S * 16) + 8 * h);
            const __m256 mn = _mm256_load_ps((const float *)(q + S * 16 + 64) + 8 * h);
            const int8_t *x = xq + sb * J2 * S * P;
#pragma GCC unroll 8
            for (int j = 0; j < J2; j++) {
                __m256i i32 = _mm256_setzero_si256();
#pragma GCC unroll 2
                for (int p = 0; p < P; p++) {
                    const int8_t *xp = x + (j * P + p) * S;
                    if (p) i32 = mul255(i32);
#pragma GCC unroll 8
                    for (int c = 0; c < G; c += chunk) {
                        __m256i s16 = _mm256_setzero_si256();
#pragma GCC unroll 8
                        for (int g = c; g < c + chunk; g++) {
                            const __m256i xb = _mm256_set1_epi32((int32_t)gw_ld32(xp + 4 * g));
                            if (mode == 3)
                                s16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w[g], w[g]), _mm256_sign_epi8(xb, w[g]));
                            else
                                s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(w[g], xb));
                        }
                        i32 = _mm256_add_epi32(i32, _mm256_madd_epi16(s16, ones));
                    }
                }
                const __m256 f = _mm256_cvtepi32_ps(i32);
                acc[j] = _mm256_fmadd_ps(f, _mm256_mul_ps(sc, _mm256_set1_ps(xd[sb * J2 + j])), acc[j]);
                if (mode != 3) acc[j] = _mm256_fmadd_ps(mn, _mm256_set1_ps(xs[sb * J2 + j]), acc[j]);
            }
        }
        for (int j = 0; j < J2; j++)
            if (j < jn) store_n(Y + j * ldy + 8 * h, acc[j], nr - 8 * h);
    }
}

#define GEMM2_P(MODE, S)                                                                      \
    do {                                                                                      \
        if (P == 2) gemm2_body(MODE, S, 2, panel, nsb, xq, xd, xs, Y, ldy, nr, jn);           \
        else gemm2_body(MODE, S, 1, panel, nsb, xq, xd, xs, Y, ldy, nr, jn);                  \
    } while (0)

static void gemm2(uint32_t wt, const uint8_t *panel, int64_t nsb, int S, int P, const int8_t *xq, const float *xd,
                  const float *xs, float *Y, int64_t ldy, int nr, int jn) {
    (void)S;
    switch (wt) {
    case GW_TYPE_Q4_0: case GW_TYPE_Q4_1: case GW_TYPE_Q4_K: GEMM2_P(0, 32); return;
    case GW_TYPE_Q5_0: case GW_TYPE_Q5_1: case GW_TYPE_Q5_K: GEMM2_P(1, 32); return;
    case GW_TYPE_Q6_K: GEMM2_P(2, 16); return;
    default: GEMM2_P(3, 32); return;
    }
}

/* ------------------------------------------------------------ decode kernels */

typedef struct { int bs, qs, qh, off; } blk32;
INLINE blk32 blk32_of(uint32_t wt) {
    switch (wt) {
    case GW_TYPE_Q4_0: return (blk32){18, 2, -1, 8};
    case GW_TYPE_Q4_1: return (blk32){20, 4, -1, 0};
    case GW_TYPE_Q5_0: return (blk32){22, 6, 2, 16};
    case GW_TYPE_Q5_1: return (blk32){24, 8, 4, 0};
    default: return (blk32){34, 2, -1, 128}; /* Q8_0 */
    }
}

/* 0x10 in byte e of lane L where bit (16*hi + e) of qh_L is set. */
INLINE __m256i qh_bits(uint32_t qa, uint32_t qb, int hi) {
    const __m256i v = _mm256_setr_epi32((int)qa, (int)qa, (int)qa, (int)qa, (int)qb, (int)qb, (int)qb, (int)qb);
    const __m256i sh = hi ? _mm256_setr_epi8(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
                                             2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)
                          : _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                             0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m256i bm = _mm256_set1_epi64x(0x8040201008040201LL);
    const __m256i r = _mm256_and_si256(_mm256_shuffle_epi8(v, sh), bm);
    return _mm256_and_si256(_mm256_cmpeq_epi8(r, bm), _mm256_set1_epi8(0x10));
}

/* Weights of one sub-block for rows a, b (lanes 0, 1): elements 0..15 in lo,
 * 16..31 in hi; unsigned u, except Q8_0: the signed q (see dot2). */
INLINE void unpack2_32(const uint32_t wt, const blk32 B, const uint8_t *ra, const uint8_t *rb, int64_t o,
                       __m256i *lo, __m256i *hi) {
    if (wt == GW_TYPE_Q8_0) {
        *lo = load2x16(ra + o + 2, rb + o + 2);
        *hi = load2x16(ra + o + 18, rb + o + 18);
        return;
    }
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i v = load2x16(ra + o + B.qs, rb + o + B.qs);
    *lo = _mm256_and_si256(v, m4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    if (B.qh >= 0) {
        const uint32_t qa = gw_ld32(ra + o + B.qh), qb = gw_ld32(rb + o + B.qh);
        *lo = _mm256_or_si256(*lo, qh_bits(qa, qb, 0));
        *hi = _mm256_or_si256(*hi, qh_bits(qa, qb, 1));
    }
}

/* Integer dot of one sub-block (weights from unpack2_32 / unpack2_k) with the
 * activations xl (0..15), xh (16..31): 4 partials per row. sgn: signed q
 * weights (Q8_0: |q| * sign(x, q)); otherwise u <= 31 so the two PMADDUBSW
 * results add in 16 bits. */
INLINE __m256i dot2(const int sgn, __m256i lo, __m256i hi, __m256i xl, __m256i xh) {
    const __m256i ones = _mm256_set1_epi16(1);
    if (sgn) {
        const __m256i pl = _mm256_maddubs_epi16(_mm256_sign_epi8(lo, lo), _mm256_sign_epi8(xl, lo));
        const __m256i ph = _mm256_maddubs_epi16(_mm256_sign_epi8(hi, hi), _mm256_sign_epi8(xh, hi));
        return _mm256_add_epi32(_mm256_madd_epi16(pl, ones), _mm256_madd_epi16(ph, ones));
    }
    const __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl), _mm256_maddubs_epi16(hi, xh));
    return _mm256_madd_epi16(s, ones);
}

/* Q4_K/Q5_K sub-block s of the super-block at offset o, rows a, b. */
INLINE void unpack2_k(const int five, const uint8_t *ra, const uint8_t *rb, int64_t o, int s, __m256i *lo,
                      __m256i *hi) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const int64_t qo = o + (five ? 48 : 16) + 32 * (s / 2);
    __m256i a = load2x16(ra + qo, rb + qo), b = load2x16(ra + qo + 16, rb + qo + 16);
    if (s & 1) {
        a = _mm256_srli_epi16(a, 4);
        b = _mm256_srli_epi16(b, 4);
    }
    a = _mm256_and_si256(a, m4);
    b = _mm256_and_si256(b, m4);
    if (five) {
        const __m256i b4 = _mm256_set1_epi8(0x10);
        __m256i ha = load2x16(ra + o + 16, rb + o + 16), hb = load2x16(ra + o + 32, rb + o + 32);
        const __m128i c = _mm_cvtsi32_si128(s <= 4 ? 4 - s : s - 4);
        ha = s <= 4 ? _mm256_sll_epi16(ha, c) : _mm256_srl_epi16(ha, c);
        hb = s <= 4 ? _mm256_sll_epi16(hb, c) : _mm256_srl_epi16(hb, c);
        a = _mm256_or_si256(a, _mm256_and_si256(ha, b4));
        b = _mm256_or_si256(b, _mm256_and_si256(hb, b4));
    }
    *lo = a;
    *hi = b;
}

INLINE void scales_k(const uint8_t *base, __m256i idx, __m256 *sc, __m256 *mn) {
    const int *b = (const int *)base;
    const __m256i h = _mm256_i32gather_epi32(b, idx, 1);
    const __m256i g0 = _mm256_i32gather_epi32((const int *)(base + 4), idx, 1);
    const __m256i g1 = _mm256_i32gather_epi32((const int *)(base + 8), idx, 1);
    const __m256i g2 = _mm256_i32gather_epi32((const int *)(base + 12), idx, 1);
    const __m256 d = h2f_lo(h), dmin = _mm256_sub_ps(_mm256_setzero_ps(), h2f_hi(h));
    const __m256i m6 = _mm256_set1_epi32(63), m4 = _mm256_set1_epi32(15), m3 = _mm256_set1_epi32(3);
    for (int s = 0; s < 4; s++) {
        const __m128i c = _mm_cvtsi32_si128(8 * s);
        const __m256i a0 = _mm256_srl_epi32(g0, c), a1 = _mm256_srl_epi32(g1, c), a2 = _mm256_srl_epi32(g2, c);
        const __m256i s_lo = _mm256_and_si256(a0, m6), m_lo = _mm256_and_si256(a1, m6);
        const __m256i s_hi = _mm256_or_si256(_mm256_and_si256(a2, m4),
                                             _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(a0, 6), m3), 4));
        const __m256i m_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(a2, 4), m4),
                                             _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(a1, 6), m3), 4));
        sc[s] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(s_lo));
        mn[s] = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(m_lo));
        sc[s + 4] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(s_hi));
        mn[s + 4] = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(m_hi));
    }
}

/* 8 rows (one half of the 16) x J tokens; rows[i] for i in 0..7. */
INLINE void prefetch_lines(const uint8_t *pf, int64_t first, int cnt) {
    for (int l = 0; l < cnt; l++) _mm_prefetch((const char *)((uintptr_t)pf + (uintptr_t)(first + l) * 64), _MM_HINT_T0);
}

INLINE void decode2_half(const uint32_t wt, const int J, const int P, const uint8_t *const *rows, int64_t nsb,
                         const int8_t *xq, const float *xd, const float *xs, float *Y, int64_t ldy, int nr,
                         const uint8_t *pf, int pfl) {
    int32_t offs[8];
    for (int p = 0; p < 8; p++) offs[p] = (int32_t)(rows[k_perm8[p]] - rows[0]);
    const __m256i idx = _mm256_loadu_si256((const __m256i *)offs);
    const int kq = wt == GW_TYPE_Q4_K || wt == GW_TYPE_Q5_K;
    const int five = wt == GW_TYPE_Q5_K;
    const blk32 B = blk32_of(wt);
    __m256 acc[4];
    for (int j = 0; j < J; j++) acc[j] = _mm256_setzero_ps();
    __m256 ksc[8], kmn[8];
    for (int64_t sb = 0; sb < nsb; sb++) {
        __m256 sc, mn;
        int64_t o;
        if (pf) prefetch_lines(pf, sb * pfl, pfl);
        int s = 0;
        if (kq) {
            o = (sb / 8) * (five ? 176 : 144);
            s = (int)(sb % 8);
            if (s == 0) scales_k(rows[0] + o, idx, ksc, kmn);
            sc = ksc[s];
            mn = kmn[s];
        } else {
            o = sb * B.bs;
            /* headers without a gather: dword 0 of each row's 16-byte load,
             * brought into k_perm8 order by two unpacks */
            __m256i hv[4];
            for (int i = 0; i < 4; i++) hv[i] = load2x16(rows[2 * i] + o, rows[2 * i + 1] + o);
            const __m256i h = _mm256_unpacklo_epi64(_mm256_unpacklo_epi32(hv[0], hv[1]),
                                                    _mm256_unpacklo_epi32(hv[2], hv[3]));
            sc = h2f_lo(h);
            mn = B.off ? _mm256_mul_ps(sc, _mm256_set1_ps(-(float)B.off)) : h2f_hi(h);
        }
        for (int j = 0; j < J; j++) {
            const int8_t *x = xq + (sb * J + j) * 32 * P;
            const __m256i xl = bcast128(x), xh = bcast128(x + 16);
            __m256i d[4];
            for (int i = 0; i < 4; i++) {
                __m256i lo, hi;
                if (kq) unpack2_k(five, rows[2 * i], rows[2 * i + 1], o, s, &lo, &hi);
                else unpack2_32(wt, B, rows[2 * i], rows[2 * i + 1], o, &lo, &hi);
                const int sgn = wt == GW_TYPE_Q8_0;
                d[i] = dot2(sgn, lo, hi, xl, xh);
                if (P == 2) d[i] = _mm256_add_epi32(mul255(d[i]), dot2(sgn, lo, hi, bcast128(x + 32), bcast128(x + 48)));
            }
            const __m256 f = _mm256_cvtepi32_ps(reduce4(d[0], d[1], d[2], d[3]));
            acc[j] = _mm256_fmadd_ps(f, _mm256_mul_ps(sc, _mm256_set1_ps(xd[sb * J + j])), acc[j]);
            if (!(wt == GW_TYPE_Q8_0)) acc[j] = _mm256_fmadd_ps(mn, _mm256_set1_ps(xs[sb * J + j]), acc[j]);
        }
    }
    const __m256i un = _mm256_loadu_si256((const __m256i *)k_unperm8);
    for (int j = 0; j < J; j++) store_n(Y + j * ldy, _mm256_permutevar8x32_ps(acc[j], un), nr);
}

INLINE void decode2_q6k_half(const int J, const int P, const uint8_t *const *rows, int64_t nsb, const int8_t *xq,
                             const float *xd, const float *xs, float *Y, int64_t ldy, int nr, const uint8_t *pf,
                             int pfl) {
    int32_t offs[8];
    for (int p = 0; p < 8; p++) offs[p] = (int32_t)(rows[k_perm8[p]] - rows[0]);
    const __m256i idx = _mm256_loadu_si256((const __m256i *)offs);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x03), ones = _mm256_set1_epi16(1);
    __m256 acc[4];
    for (int j = 0; j < J; j++) acc[j] = _mm256_setzero_ps();
    __m256 d6 = _mm256_setzero_ps();
    __m256i scw = _mm256_setzero_si256();
    for (int64_t sb = 0; sb < nsb; sb++) {
        if (pf) prefetch_lines(pf, sb * pfl, pfl);
        const int64_t o = (sb / 16) * 210;
        const int u = (int)(sb % 16);
        if (u == 0) d6 = h2f_hi(_mm256_i32gather_epi32((const int *)(rows[0] + o + 206), idx, 1));
        if ((u & 3) == 0) scw = _mm256_i32gather_epi32((const int *)(rows[0] + o + 192 + u), idx, 1);
        const __m256i s8 = _mm256_srai_epi32(_mm256_sll_epi32(scw, _mm_cvtsi32_si128(24 - 8 * (u & 3))), 24);
        const __m256 sc = _mm256_mul_ps(d6, _mm256_cvtepi32_ps(s8));
        const __m256 mn = _mm256_mul_ps(sc, _mm256_set1_ps(-32.0f));
        const int e0 = u * 16, h = e0 / 128, qq = (e0 % 128) / 32, l0 = e0 % 32;
        const int64_t qlo = o + 64 * h + (qq & 1) * 32 + l0, qho = o + 128 + 32 * h + l0;
        __m256i v[4];
        for (int i = 0; i < 4; i++) {
            __m256i ql = load2x16(rows[2 * i] + qlo, rows[2 * i + 1] + qlo);
            __m256i qh = load2x16(rows[2 * i] + qho, rows[2 * i + 1] + qho);
            ql = _mm256_srl_epi16(ql, _mm_cvtsi32_si128(4 * (qq >> 1)));
            qh = _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * qq));
            v[i] = _mm256_or_si256(_mm256_and_si256(ql, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
        }
        for (int j = 0; j < J; j++) {
            const int8_t *x = xq + (sb * J + j) * 16 * P;
            const __m256i xv = bcast128(x);
            __m256i d[4];
            for (int i = 0; i < 4; i++) d[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(v[i], xv), ones);
            if (P == 2) {
                const __m256i yv = bcast128(x + 16);
                for (int i = 0; i < 4; i++)
                    d[i] = _mm256_add_epi32(mul255(d[i]), _mm256_madd_epi16(_mm256_maddubs_epi16(v[i], yv), ones));
            }
            const __m256 f = _mm256_cvtepi32_ps(reduce4(d[0], d[1], d[2], d[3]));
            acc[j] = _mm256_fmadd_ps(f, _mm256_mul_ps(sc, _mm256_set1_ps(xd[sb * J + j])), acc[j]);
            acc[j] = _mm256_fmadd_ps(mn, _mm256_set1_ps(xs[sb * J + j]), acc[j]);
        }
    }
    const __m256i un = _mm256_loadu_si256((const __m256i *)k_unperm8);
    for (int j = 0; j < J; j++) store_n(Y + j * ldy, _mm256_permutevar8x32_ps(acc[j], un), nr);
}

INLINE void decode2_t(const uint32_t wt, const int J, const int P, const uint8_t *const *rows, int64_t nsb,
                      const int8_t *xq,
                      const float *xd, const float *xs, float *Y, int64_t ldy, int nr, const uint8_t *pf,
                      int pfl) {
    /* each half prefetches half of the next panel */
    const int hl = (pfl + 1) / 2;
    for (int h = 0; h < 2; h++) {
        const uint8_t *p = pf ? (const uint8_t *)((uintptr_t)pf + (uintptr_t)(h * nsb * hl * 64)) : NULL;
        const int nh = nr - 8 * h; /* valid rows in this half */
        if (nh <= 0) break;
        if (wt == GW_TYPE_Q6_K) decode2_q6k_half(J, P, rows + 8 * h, nsb, xq, xd, xs, Y + 8 * h, ldy, nh, p, hl);
        else decode2_half(wt, J, P, rows + 8 * h, nsb, xq, xd, xs, Y + 8 * h, ldy, nh, p, hl);
    }
}

/* decode2_t instantiated for J = 1..4 and P = 1, 2. */
#define DEC_J(WT, P)                                                                          \
    switch (J) {                                                                              \
    case 1: decode2_t(WT, 1, P, rows, nsb, xq, xd, xs, Y, ldy, nr, pf, pfl); return 1;        \
    case 2: decode2_t(WT, 2, P, rows, nsb, xq, xd, xs, Y, ldy, nr, pf, pfl); return 1;        \
    case 3: decode2_t(WT, 3, P, rows, nsb, xq, xd, xs, Y, ldy, nr, pf, pfl); return 1;        \
    default: decode2_t(WT, 4, P, rows, nsb, xq, xd, xs, Y, ldy, nr, pf, pfl); return 1;       \
    }
#define DEC_CASES(WT)                                                                         \
    case WT:                                                                                  \
        if (P == 2) DEC_J(WT, 2)                                                              \
        else DEC_J(WT, 1)

static int decode2(uint32_t wt, const uint8_t *const *rows, int64_t nsb, int J, int P, const int8_t *xq,
                     const float *xd, const float *xs, float *Y, int64_t ldy, int nr, const uint8_t *pf,
                     size_t pf_bytes) {
    const int pfl = pf ? (int)((pf_bytes + 63) / 64 + nsb - 1) / (int)nsb : 0; /* lines per sub-block */
    switch (wt) {
    DEC_CASES(GW_TYPE_Q4_0)
    DEC_CASES(GW_TYPE_Q4_1)
    DEC_CASES(GW_TYPE_Q5_0)
    DEC_CASES(GW_TYPE_Q5_1)
    DEC_CASES(GW_TYPE_Q8_0)
    DEC_CASES(GW_TYPE_Q4_K)
    DEC_CASES(GW_TYPE_Q5_K)
    DEC_CASES(GW_TYPE_Q6_K)
    default: return 0;
    }
}

/* ------------------------------------------------------------ repacking */

/* 16 rows of the 32-element types into a panel: unpack each row's block to 32
 * bytes with SIMD, then scatter its eight 4-byte groups into the panel. */
static void repack2(uint32_t wt, const uint8_t *W, size_t w_stride, int nrows, int64_t nsb, uint8_t *panel) {
    if (!(wt == GW_TYPE_Q4_0 || wt == GW_TYPE_Q4_1 || wt == GW_TYPE_Q8_0)) {
        gw_repack_panel_generic(wt, W, w_stride, nrows, nsb, panel);
        return;
    }
    const blk32 B = blk32_of(wt);
    const size_t sbb = gw_panel_sb_bytes(32);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int64_t sb = 0; sb < nsb; sb++) {
        uint8_t *q = panel + sb * sbb;
        float *sc = (float *)(q + 512), *mn = sc + 16;
        for (int r = 0; r < 16; r++) {
            uint32_t u[8];
            if (r < nrows) {
                const uint8_t *p = W + r * w_stride + sb * B.bs;
                __m128i lo, hi;
                if (wt == GW_TYPE_Q8_0) {
                    lo = _mm_xor_si128(ld128(p + 2), _mm_set1_epi8((char)0x80));
                    hi = _mm_xor_si128(ld128(p + 18), _mm_set1_epi8((char)0x80));
                } else {
                    const __m128i v = ld128(p + B.qs);
                    lo = _mm_and_si128(v, m4);
                    hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
                }
                _mm_storeu_si128((__m128i *)u, lo);
                _mm_storeu_si128((__m128i *)(u + 4), hi);
                const float d = _cvtsh_ss(gw_ld16(p));
                sc[r] = d;
                mn[r] = B.off ? -(float)B.off * d : _cvtsh_ss(gw_ld16(p + 2));
            } else {
                memset(u, 0, sizeof u);
                sc[r] = 0;
                mn[r] = 0;
            }
            for (int g = 0; g < 8; g++) memcpy(q + 64 * g + 4 * r, &u[g], 4);
        }
    }
}

/* ------------------------------------------------------------ activation packing */

/* Sum of 16 int8 values: PSADBW on the bytes biased by 128
 * (sum(x) = sad(x ^ 0x80, 0) - 128*16). */
INLINE int sum16_i8(__m128i v) {
    const __m128i sad = _mm_sad_epu8(_mm_xor_si128(v, _mm_set1_epi8((char)0x80)), _mm_setzero_si128());
    return (int)(_mm_cvtsi128_si64(sad) + _mm_extract_epi64(sad, 1)) - 128 * 16;
}

/* Same result as quant.c's scalar pack_x; the block sums use PSADBW on the
 * bytes biased by 128 (sum(x) = sad(x ^ 0x80, 0) - 128*S). */
INLINE void pack_x_avx2_s(uint32_t at, const uint8_t *X, size_t x_stride, int64_t j0, int64_t nt, int J,
                          const int S, int64_t nsb, int8_t *xq, float *xd, float *xs) {
    const int64_t ntile = (nt + J - 1) / J;
    const __m256i bias = _mm256_set1_epi8((char)0x80);
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
                if (P == 2) { /* Q16: planes h, l */
                    const int64_t e = sb * S;
                    const uint8_t *blk = row + (e / 32) * GW_Q16_BYTES;
                    d = gw_ldf(blk);
                    int32_t sum;
                    if (S == 32) {
                        _mm256_storeu_si256((__m256i *)q, _mm256_loadu_si256((const __m256i *)(blk + 8)));
                        _mm256_storeu_si256((__m256i *)(q + 32), _mm256_loadu_si256((const __m256i *)(blk + 40)));
                        memcpy(&sum, blk + 4, 4);
                    } else {
                        const int off = (int)(e % 32);
                        const __m128i h = ld128(blk + 8 + off), l = ld128(blk + 40 + off);
                        _mm_storeu_si128((__m128i *)q, h);
                        _mm_storeu_si128((__m128i *)(q + 16), l);
                        sum = GW_Q16_BASE * sum16_i8(h) + sum16_i8(l);
                    }
                    xd[o] = d;
                    xs[o] = d * (float)sum;
                    continue;
                }
                if (at == GW_TYPE_Q8_0) { src = row + sb * 34 + 2; d = _cvtsh_ss(gw_ld16(row + sb * 34)); }
                else if (at == GW_TYPE_Q8_1) { src = row + sb * 36 + 4; d = _cvtsh_ss(gw_ld16(row + sb * 36)); }
                else {
                    const int64_t e = sb * S;
                    const uint8_t *blk = row + (e / 256) * 292;
                    src = blk + 4 + e % 256;
                    d = gw_ldf(blk);
                }
                int sum;
                if (S == 32) {
                    const __m256i v = _mm256_loadu_si256((const __m256i *)src);
                    _mm256_storeu_si256((__m256i *)q, v);
                    const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(v, bias), _mm256_setzero_si256());
                    const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
                    sum = (int)(_mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1)) - 128 * 32;
                } else {
                    const __m128i v = ld128(src);
                    _mm_storeu_si128((__m128i *)q, v);
                    sum = sum16_i8(v);
                }
                xd[o] = d;
                xs[o] = d * (float)sum;
            }
        }
    }
}

void gw_pack_x_avx2(uint32_t at, const uint8_t *X, size_t x_stride, int64_t j0, int64_t nt, int J, int S,
                    int64_t nsb, int8_t *xq, float *xd, float *xs) {
    if (S == 32) pack_x_avx2_s(at, X, x_stride, j0, nt, J, 32, nsb, xq, xd, xs);
    else pack_x_avx2_s(at, X, x_stride, j0, nt, J, 16, nsb, xq, xd, xs);
}

/* ------------------------------------------------------------ float weights */

INLINE __m256 load_wf(const uint32_t wt, const uint8_t *row, int64_t i) {
    if (wt == GW_TYPE_F32) return _mm256_loadu_ps((const float *)(row + 4 * i));
    const __m128i h = ld128(row + 2 * i);
    if (wt == GW_TYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
INLINE float load_w1(const uint32_t wt, const uint8_t *row, int64_t i) {
    if (wt == GW_TYPE_F32) return gw_ldf(row + 4 * i);
    if (wt == GW_TYPE_F16) return _cvtsh_ss(gw_ld16(row + 2 * i));
    return gw_bits_f32((uint32_t)gw_ld16(row + 2 * i) << 16);
}

/* Decode: R rows (row pointers) x JN tokens read in place, one accumulator
 * per (row, token), 64 bytes of every row per step, prefetching [pf, pf +
 * pf_bytes) (the next tile) into L2 as in quant_avx512.c. Y[j*ldy + r], r < nr. */
INLINE void fdec2(const uint32_t wt, const int R, const int JN, const uint8_t *const *rows, const uint8_t *pf,
                  size_t pf_bytes, const uint8_t *X, size_t x_stride, int64_t k, float *Y, int64_t ldy, int nr) {
    const int esz = wt == GW_TYPE_F32 ? 4 : 2;
    const int step = 64 / esz;
    __m256 acc[8][3];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < JN; j++) acc[r][j] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + step <= k; i += step) {
        for (int r = 0; r < R; r++) {
            const size_t off = ((size_t)i * esz / 64 * R + r) * 64;
            if (off < pf_bytes) _mm_prefetch((const char *)(pf + off), _MM_HINT_T1);
        }
        for (int h = 0; h < step; h += 8) {
            __m256 x[3];
            for (int j = 0; j < JN; j++) x[j] = _mm256_loadu_ps((const float *)(X + j * x_stride + 4 * (i + h)));
            for (int r = 0; r < R; r++) {
                const __m256 w = load_wf(wt, rows[r], i + h);
                for (int j = 0; j < JN; j++) acc[r][j] = _mm256_fmadd_ps(w, x[j], acc[r][j]);
            }
        }
    }
    for (; i + 8 <= k; i += 8) {
        __m256 x[3];
        for (int j = 0; j < JN; j++) x[j] = _mm256_loadu_ps((const float *)(X + j * x_stride + 4 * i));
        for (int r = 0; r < R; r++) {
            const __m256 w = load_wf(wt, rows[r], i);
            for (int j = 0; j < JN; j++) acc[r][j] = _mm256_fmadd_ps(w, x[j], acc[r][j]);
        }
    }
    for (int j = 0; j < JN; j++)
        for (int r = 0; r < R; r++)
            if (r < nr) {
                float s = hsum256(acc[r][j]);
                for (int64_t t = i; t < k; t++) s += load_w1(wt, rows[r], t) * gw_ldf(X + j * x_stride + 4 * t);
                Y[j * ldy + r] = s;
            }
}

#define FDEC(WT, R, JN) fdec2(WT, R, JN, rows, pf, pf_bytes, Xj, x_stride, k, Yj, ldy, nr)
#define FDEC_WT(R, JN)                                                                                                \
    do {                                                                                                          \
        if (wt == GW_TYPE_F16) FDEC(GW_TYPE_F16, R, JN);                                                          \
        else if (wt == GW_TYPE_BF16) FDEC(GW_TYPE_BF16, R, JN);                                                   \
        else FDEC(GW_TYPE_F32, R, JN);                                                                            \
    } while (0)

static void fdecode2(uint32_t wt, const uint8_t *W, size_t w_stride, const uint8_t *X, size_t x_stride, int64_t k,
                     int64_t r0, int64_t r1, int64_t n, float *Y, int64_t ldy) {
    for (int64_t j0 = 0; j0 < n; j0 += 3) {
        const int JN = (int)(n - j0 < 3 ? n - j0 : 3);
        const int R = JN == 1 ? 8 : 4;
        const uint8_t *Xj = X + j0 * x_stride;
        for (int64_t r = r0; r < r1; r += R) {
            const int nr = (int)(r1 - r < R ? r1 - r : R);
            const uint8_t *rows[8]; /* missing rows repeat the last one (not stored) */
            for (int i = 0; i < R; i++) rows[i] = W + (size_t)(r + (i < nr ? i : nr - 1)) * w_stride;
            const int64_t rn = r + R < r1 ? r + R : r1;
            const int64_t rn1 = rn + R < r1 ? rn + R : r1;
            const uint8_t *pf = W + (size_t)rn * w_stride;
            const size_t pf_bytes = (size_t)(rn1 - rn) * w_stride;
            float *Yj = Y + j0 * ldy + r;
            switch (JN) {
            case 1: FDEC_WT(8, 1); break;
            case 2: FDEC_WT(4, 2); break;
            default: FDEC_WT(4, 3); break;
            }
        }
    }
}

/* Prefill: panels of FPR2 rows converted to float, k-major (P[i*FPR2 + r]),
 * and an FPR2-row x FJ2-token broadcast micro-kernel (12 accumulators). */
#define FPR2 16
#define FJ2 6

INLINE void transpose8(__m256 v[8]) {
    __m256 t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
    }
    /* t[2p] = rows 2p,2p+1 of columns (0,1 | 4,5); t[2p+1]: columns (2,3 | 6,7) */
    __m256 u[8];
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);     /* column 0 | 4 of rows i..i+3 */
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE); /* 1 | 5 */
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44); /* 2 | 6 */
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE); /* 3 | 7 */
    }
    for (int c = 0; c < 4; c++) {
        v[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        v[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

static void frepack2(const uint32_t wt, const uint8_t *W, size_t w_stride, int nr, int64_t k, float *P) {
    for (int r0 = 0; r0 < FPR2; r0 += 8) {
        for (int64_t i = 0; i < k; i += 8) {
            __m256 v[8];
            for (int r = 0; r < 8; r++) {
                if (r0 + r >= nr) { v[r] = _mm256_setzero_ps(); continue; }
                const uint8_t *row = W + (size_t)(r0 + r) * w_stride;
                if (i + 8 <= k) {
                    if (wt == GW_TYPE_F16) v[r] = load_wf(GW_TYPE_F16, row, i);
                    else if (wt == GW_TYPE_BF16) v[r] = load_wf(GW_TYPE_BF16, row, i);
                    else v[r] = load_wf(GW_TYPE_F32, row, i);
                } else {
                    float t[8] = {0};
                    for (int64_t e = i; e < k; e++) t[e - i] = load_w1(wt, row, e);
                    v[r] = _mm256_loadu_ps(t);
                }
            }
            transpose8(v);
            for (int e = 0; e < 8; e++) _mm256_store_ps(P + (i + e) * FPR2 + r0, v[e]);
        }
    }
}

/* FPR2 (RW = 2) or 8 (RW = 1) panel rows x JN tokens; Y[j*ldy + r], r < nr. */
INLINE void fgemm2(const int RW, const int JN, const float *P, int64_t k, const uint8_t *X, size_t x_stride,
                   float *Y, int64_t ldy, int nr) {
    __m256 a0[FJ2], a1[FJ2];
    for (int j = 0; j < JN; j++) a0[j] = a1[j] = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int64_t i = 0; i < k; i++) {
        const __m256 w0 = _mm256_load_ps(P + i * FPR2);
        const __m256 w1 = RW == 2 ? _mm256_load_ps(P + i * FPR2 + 8) : w0;
        for (int j = 0; j < JN; j++) {
            const __m256 b = _mm256_set1_ps(gw_ldf(X + j * x_stride + 4 * i));
            a0[j] = _mm256_fmadd_ps(w0, b, a0[j]);
            if (RW == 2) a1[j] = _mm256_fmadd_ps(w1, b, a1[j]);
        }
    }
    for (int j = 0; j < JN; j++) {
        float *y = Y + j * ldy;
        if (nr >= 8 * RW) {
            _mm256_storeu_ps(y, a0[j]);
            if (RW == 2) _mm256_storeu_ps(y + 8, a1[j]);
        } else {
            float t[16];
            _mm256_storeu_ps(t, a0[j]);
            if (RW == 2) _mm256_storeu_ps(t + 8, a1[j]);
            for (int r = 0; r < nr; r++) y[r] = t[r];
        }
    }
}

#define FG(RW, JN) fgemm2(RW, JN, P, k, Xt, x_stride, Yt, ldy, nr)
#define FG_J(RW)                                                                                                      \
    switch (jn) {                                                                                                 \
    case 6: FG(RW, 6); break;                                                                                     \
    case 5: FG(RW, 5); break;                                                                                     \
    case 4: FG(RW, 4); break;                                                                                     \
    case 3: FG(RW, 3); break;                                                                                     \
    case 2: FG(RW, 2); break;                                                                                     \
    default: FG(RW, 1); break;                                                                                    \
    }

static void matmul_float2(uint32_t wt, const void *W, size_t w_stride, const float *X, size_t x_stride,
                          int64_t k, int64_t r0, int64_t r1, int64_t n, float *Y, int64_t ldy) {
    const uint8_t *Wb = (const uint8_t *)W, *Xb = (const uint8_t *)X;
    if (n < GW_FLOAT_GEMM_MIN_N) {
        fdecode2(wt, Wb, w_stride, Xb, x_stride, k, r0, r1, n, Y, ldy);
        return;
    }
    const int64_t kp = (k + 7) & ~(int64_t)7;
    float *P = (float *)gw_scratch_get(sizeof(float) * (size_t)(FPR2 * kp));
    const int64_t NC = gw_float_chunk(k, FJ2);
    for (int64_t c0 = 0; c0 < n; c0 += NC) {
        const int64_t nc = n - c0 < NC ? n - c0 : NC;
        for (int64_t r = r0; r < r1; r += FPR2) {
            const int nr = (int)(r1 - r < FPR2 ? r1 - r : FPR2);
            frepack2(wt, Wb + (size_t)r * w_stride, w_stride, nr, k, P);
            for (int64_t t = 0; t < nc; t += FJ2) {
                const int jn = (int)(nc - t < FJ2 ? nc - t : FJ2);
                const uint8_t *Xt = Xb + (size_t)(c0 + t) * x_stride;
                float *Yt = Y + (c0 + t) * ldy + r;
                if (nr > 8) { FG_J(2) }
                else { FG_J(1) }
            }
        }
    }
}

/* ------------------------------------------------------------ quantization */

INLINE __m256 roundf256(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 sign = _mm256_castsi256_ps(_mm256_set1_epi32((int32_t)0x80000000u));
    const __m256 f = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    const __m256 up = _mm256_cmp_ps(f, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, sign));
    return _mm256_add_ps(t, _mm256_and_ps(up, one));
}

INLINE float hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 int32 -> 8 int8 stored at dst (values already within int8 range). */
INLINE void store8_i8(void *dst, __m256i q) {
    const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    const __m128i p8 = _mm_packs_epi16(p16, p16);
    _mm_storel_epi64((__m128i *)dst, p8);
}

/* Q16 (see quantize_q16_ref in quant.c): same float operations, so the same
 * bits. CVTPS2DQ rounds half to even like nearest_int. */
static void quantize_q16_2(const float *x, uint8_t *y, int64_t n) {
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i qmax = _mm256_set1_epi32(GW_Q16_QMAX), qmin = _mm256_set1_epi32(-GW_Q16_QMAX);
    const __m256 inv = _mm256_set1_ps(1.0f / GW_Q16_BASE);
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += GW_Q16_BYTES) {
        __m256 v[4];
        __m256 am = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + 8 * i);
            am = _mm256_max_ps(am, _mm256_and_ps(v[i], absm));
        }
        const float amax = hmax256(am);
        const float d = amax >= 0x1p-100f ? amax / (float)GW_Q16_QMAX : 0.0f;
        const float id = d ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i sum = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], vid));
            q = _mm256_max_epi32(_mm256_min_epi32(q, qmax), qmin);
            const __m256i h = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_cvtepi32_ps(q), inv));
            const __m256i l = _mm256_sub_epi32(q, mul255(h));
            store8_i8(y + 8 + 8 * i, h);
            store8_i8(y + 40 + 8 * i, l);
            sum = _mm256_add_epi32(sum, q);
        }
        const int32_t s = hsum256i(sum);
        memcpy(y, &d, 4);
        memcpy(y + 4, &s, 4);
    }
}

static void quantize_act2(uint32_t t, const float *x, void *dst, int64_t n) {
    uint8_t *y = (uint8_t *)dst;
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    if (t == GW_TYPE_Q16) {
        quantize_q16_2(x, y, n);
        return;
    }
    if (t == GW_TYPE_Q8_K) {
        for (int64_t b = 0; b < n / 256; b++, x += 256, y += 292) {
            __m256 am = _mm256_setzero_ps();
            for (int i = 0; i < 32; i++) am = _mm256_max_ps(am, _mm256_and_ps(_mm256_loadu_ps(x + 8 * i), absm));
            const float amax = hmax256(am);
            if (!amax) {
                memset(y, 0, 292);
                continue;
            }
            float max = 0;
            for (int j = 0; j < 256; j++)
                if (fabsf(x[j]) == amax) { max = x[j]; break; }
            const float iscale = -127.f / max;
            const __m256 is = _mm256_set1_ps(iscale);
            int16_t bs[16];
            for (int i = 0; i < 16; i++) {
                __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16 * i), is));
                __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16 * i + 8), is));
                q0 = _mm256_min_epi32(q0, _mm256_set1_epi32(127));
                q1 = _mm256_min_epi32(q1, _mm256_set1_epi32(127));
                store8_i8(y + 4 + 16 * i, q0);
                store8_i8(y + 12 + 16 * i, q1);
                bs[i] = (int16_t)hsum256i(_mm256_add_epi32(q0, q1));
            }
            memcpy(y + 260, bs, sizeof bs);
            const float d = 1 / iscale;
            memcpy(y, &d, 4);
        }
        return;
    }
    const int with_sum = t == GW_TYPE_Q8_1;
    const size_t bsz = with_sum ? 36 : 34;
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += bsz) {
        __m256 v[4];
        __m256 am = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + 8 * i);
            am = _mm256_max_ps(am, _mm256_and_ps(v[i], absm));
        }
        const float amax = hmax256(am);
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        uint8_t *qs = y + (with_sum ? 4 : 2);
        __m256i sum = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            const __m256i q = _mm256_cvttps_epi32(roundf256(_mm256_mul_ps(v[i], vid)));
            store8_i8(qs + 8 * i, q);
            sum = _mm256_add_epi32(sum, q);
        }
        const uint16_t dh = gw_fp32_to_fp16(d);
        memcpy(y, &dh, 2);
        if (with_sum) {
            const uint16_t sh = gw_fp32_to_fp16(hsum256i(sum) * d);
            memcpy(y + 2, &sh, 2);
        }
    }
}

const gw_quant_kernels gw_kernels_avx2 = {
    .J = J2,
    .gemm_min_n = 8,
    .dec_max_j = 4,
    .gemm = gemm2,
    .repack = repack2,
    .decode = decode2,
    .matmul_float = matmul_float2,
    .pack_x = gw_pack_x_avx2,
    .quantize_act = quantize_act2,
};
#ifdef __clang__
#pragma clang attribute pop
#endif
#else
#include "backend/cpu/quant_impl.h"
const gw_quant_kernels gw_kernels_avx2 = {0};
#endif
