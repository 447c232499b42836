/* AVX-512 (F/BW/VL/DQ + VNNI) kernels. Everything in this file is compiled for
 * that target via the pragma below and is only reached after quant.c's cpuid
 * check, so the default (no -march) build stays runnable everywhere.
 *
 * Zen 4 executes 512-bit ops as two 256-bit halves, so what matters is the
 * number of element-ops; VPDPBUSD (u8 x s8 -> s32, 64 MACs) is the workhorse. */
#if defined(__x86_64__) && defined(__GNUC__)
#include "backend/cpu/quant_impl.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

/* Everything below is compiled for the target (gcc: pragma; clang, which
 * ignores that pragma: an attribute pushed onto every function). */
#ifdef __clang__
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c,bmi,bmi2"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c,bmi,bmi2")
#endif

#define INLINE static inline __attribute__((always_inline))

/* ------------------------------------------------------------ helpers */

INLINE __m128i ld128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }

/* 16 bytes from each of 4 rows at byte offset off: [r0 | r1 | r2 | r3]. */
INLINE __m512i load4x16(const uint8_t *const *rows, int64_t off) {
    __m512i v = _mm512_castsi128_si512(ld128(rows[0] + off));
    v = _mm512_inserti32x4(v, ld128(rows[1] + off), 1);
    v = _mm512_inserti32x4(v, ld128(rows[2] + off), 2);
    v = _mm512_inserti32x4(v, ld128(rows[3] + off), 3);
    return v;
}

/* v_i holds 4 partial sums of row (4i + L) in 128-bit lane L. Returns the full
 * sums with row (4i + L) at position 4L + i (a 4x4 transpose of the row index;
 * the permutation is its own inverse). */
INLINE __m512i reduce4(__m512i v0, __m512i v1, __m512i v2, __m512i v3) {
    __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(v0, v1), _mm512_unpackhi_epi32(v0, v1));
    __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(v2, v3), _mm512_unpackhi_epi32(v2, v3));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
}

static const int32_t k_perm16[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};

/* 16 fp16 values at the low half of each 32-bit lane -> floats. */
INLINE __m512 h2f_lo(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
INLINE __m512 h2f_hi(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16))); }

INLINE float hsum512(__m512 v) { return _mm512_reduce_add_ps(v); }

/* ------------------------------------------------------------ GEMM kernel */

#define J512 8

/* Panel (16 rows) x tile of J512 tokens; see quant_impl.h for the layouts.
 * Per sub-block and token: S/4 VPDPBUSD against 4-byte broadcasts of the
 * activations give the 16 row dot products directly (P = 2, Q16: as many
 * again for the l plane, combined as 255*dot(h) + dot(l)); then one convert
 * and two FMAs apply scale*dx and min*sum(x). */
INLINE __m512i mul255(__m512i d) { return _mm512_sub_epi32(_mm512_slli_epi32(d, 8), d); }

INLINE void gemm512_body(const int P, const uint8_t *panel, int64_t nsb, const int S, const int8_t *xq,
                         const float *xd, const float *xs, float *Y, int64_t ldy, int nr, int jn) {
    /* the loops over j and g must be fully unrolled so that acc[] and w[]
     * stay in registers (GCC keeps them in memory otherwise) */
    __m512 acc[J512];
#pragma GCC unroll 8
    for (int j = 0; j < J512; j++) acc[j] = _mm512_setzero_ps();
    const size_t sbb = gw_panel_sb_bytes(S);
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *q = panel + sb * sbb;
        __m512i w[8];
#pragma GCC unroll 8
        for (int g = 0; g < S / 4; g++) w[g] = _mm512_load_si512((const void *)(q + 64 * g));
        const __m512 sc = _mm512_load_ps((const float *)(q + S * 16));
        const __m512 mn = _mm512_load_ps((const float *)(q + S * 16 + 64));
        const int8_t *x = xq + sb * J512 * S * P;
        const float *dx = xd + sb * J512, *sx = xs + sb * J512;
#pragma GCC unroll 8
        for (int j = 0; j < J512; j++) {
            const int8_t *xj = x + j * S * P;
            /* independent chains (halves of the sub-block, and planes): the
             * kernel is bound by VPDPBUSD latency with one chain per token */
            __m512i d0 = _mm512_setzero_si512(), d1 = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int g = 0; g < S / 4; g += 2) {
                d0 = _mm512_dpbusd_epi32(d0, w[g], _mm512_set1_epi32((int32_t)gw_ld32(xj + 4 * g)));
                d1 = _mm512_dpbusd_epi32(d1, w[g + 1], _mm512_set1_epi32((int32_t)gw_ld32(xj + 4 * g + 4)));
            }
            __m512i d = _mm512_add_epi32(d0, d1);
            if (P == 2) {
                __m512i e0 = _mm512_setzero_si512(), e1 = _mm512_setzero_si512();
#pragma GCC unroll 8
                for (int g = 0; g < S / 4; g += 2) {
                    e0 = _mm512_dpbusd_epi32(e0, w[g], _mm512_set1_epi32((int32_t)gw_ld32(xj + S + 4 * g)));
                    e1 = _mm512_dpbusd_epi32(e1, w[g + 1], _mm512_set1_epi32((int32_t)gw_ld32(xj + S + 4 * g + 4)));
                }
                d = _mm512_add_epi32(mul255(d), _mm512_add_epi32(e0, e1));
            }
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(sc, _mm512_set1_ps(dx[j])), acc[j]);
            acc[j] = _mm512_fmadd_ps(mn, _mm512_set1_ps(sx[j]), acc[j]);
        }
    }
    const __mmask16 km = (__mmask16)((1u << nr) - 1);
#pragma GCC unroll 8
    for (int j = 0; j < J512; j++)
        if (j < jn) _mm512_mask_storeu_ps(Y + j * ldy, km, acc[j]);
}

static void gemm512(uint32_t wt, const uint8_t *panel, int64_t nsb, int S, int P, const int8_t *xq,
                    const float *xd, const float *xs, float *Y, int64_t ldy, int nr, int jn) {
    (void)wt;
    if (P == 2) {
        if (S == 32) gemm512_body(2, panel, nsb, 32, xq, xd, xs, Y, ldy, nr, jn);
        else gemm512_body(2, panel, nsb, 16, xq, xd, xs, Y, ldy, nr, jn);
    } else {
        if (S == 32) gemm512_body(1, panel, nsb, 32, xq, xd, xs, Y, ldy, nr, jn);
        else gemm512_body(1, panel, nsb, 16, xq, xd, xs, Y, ldy, nr, jn);
    }
}

/* ------------------------------------------------------------ repacking */

/* Block geometry of the 32-element types: bytes per block, offset of qs, of qh
 * (5-bit types) and the min: 0 = stored fp16 m after d, else -off*d. */
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

/* Row scales of one 32-element block for 16 rows: gathers the 4 header bytes
 * (d, and m for the _1 types) of each row. idx holds the rows' byte offsets. */
INLINE void scales32(const blk32 B, const uint8_t *base, __m512i idx, __mmask16 km, __m512 *sc, __m512 *mn) {
    const __m512i h = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), km, idx, base, 1);
    *sc = h2f_lo(h);
    *mn = B.off ? _mm512_mul_ps(*sc, _mm512_set1_ps(-(float)B.off)) : h2f_hi(h);
}

/* 5th bits for group g (elements 4g..4g+3) of 16 rows' qh words: byte e of each
 * lane gets 0x10 where bit 4g+e of that row's qh is set. */
INLINE __m512i qh_group(__m512i qh, int g) {
    const int sh = (g & 1) * 4;
    /* byte g/2 of each 32-bit lane, copied to all 4 bytes of that lane */
    const __m512i sel = _mm512_add_epi8(_mm512_set1_epi8((char)(g >> 1)),
                                        _mm512_set4_epi32(0x0c0c0c0c, 0x08080808, 0x04040404, 0));
    const __m512i rep = _mm512_shuffle_epi8(qh, sel);
    const __m512i bits = _mm512_set1_epi32((int32_t)(0x08040201u << sh));
    return _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(rep, bits), _mm512_set1_epi8(0x10));
}

static void repack512(uint32_t wt, const uint8_t *W, size_t w_stride, int nrows, int64_t nsb, uint8_t *panel) {
    if (!(wt == GW_TYPE_Q4_0 || wt == GW_TYPE_Q4_1 || wt == GW_TYPE_Q5_0 || wt == GW_TYPE_Q5_1 ||
          wt == GW_TYPE_Q8_0)) {
        gw_repack_panel_generic(wt, W, w_stride, nrows, nsb, panel);
        return;
    }
    const blk32 B = blk32_of(wt);
    const __mmask16 km = (__mmask16)((1u << nrows) - 1);
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int32_t)w_stride));
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const size_t sbb = gw_panel_sb_bytes(32);
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *blk = W + sb * B.bs;
        uint8_t *q = panel + sb * sbb;
        __m512 sc, mn;
        scales32(B, blk, idx, km, &sc, &mn);
        _mm512_store_ps((float *)(q + 512), sc);
        _mm512_store_ps((float *)(q + 576), mn);
        if (wt == GW_TYPE_Q8_0) {
            for (int g = 0; g < 8; g++) {
                __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), km, idx, blk + 2 + 4 * g, 1);
                _mm512_store_si512((void *)(q + 64 * g), _mm512_maskz_xor_epi32(km, v, _mm512_set1_epi8((char)0x80)));
            }
            continue;
        }
        __m512i qh = _mm512_setzero_si512();
        if (B.qh >= 0) qh = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), km, idx, blk + B.qh, 1);
        for (int g = 0; g < 4; g++) {
            const __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), km, idx, blk + B.qs + 4 * g, 1);
            __m512i lo = _mm512_and_si512(v, m4);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            if (B.qh >= 0) {
                lo = _mm512_or_si512(lo, qh_group(qh, g));
                hi = _mm512_or_si512(hi, qh_group(qh, g + 4));
            }
            _mm512_store_si512((void *)(q + 64 * g), lo);
            _mm512_store_si512((void *)(q + 64 * (g + 4)), hi);
        }
    }
}

/* ------------------------------------------------------------ decode kernels */

/* Decode: 16 rows x J tokens straight from the GGUF blocks. For each group of
 * 4 rows, the two 16-element halves of a sub-block are loaded as
 * [r0|r1|r2|r3] (one row per 128-bit lane), VPDPBUSD against the activation
 * half broadcast to every lane (Q16: the h plane, times 255, then the l plane
 * into the same accumulator), and reduce4 turns the 4 vectors into one vector
 * of 16 row sums (in the k_perm16 order, which the scale gathers use too). */

/* Unsigned values of one sub-block for 4 rows: lo = elements 0..15 of each
 * row, hi = 16..31. */
INLINE void load_u32types(const uint32_t wt, const blk32 B, const uint8_t *const *rows, int64_t sb,
                          __m512i hv, __m512i *lo, __m512i *hi) {
    const int64_t o = sb * B.bs;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    if (wt == GW_TYPE_Q8_0) {
        const __m512i x80 = _mm512_set1_epi8((char)0x80);
        *lo = _mm512_xor_si512(load4x16(rows, o + 2), x80);
        *hi = _mm512_xor_si512(load4x16(rows, o + 18), x80);
        return;
    }
    const __m512i v = load4x16(rows, o + B.qs);
    *lo = _mm512_and_si512(v, m4);
    *hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    if (B.qh >= 0) {
        /* hv holds each row's block start, so qh is at bytes B.qh..B.qh+3 of
         * every lane. Bit e of qh is the 5th bit of element e: copy qh byte
         * e/8 to byte e, test bit e%8, and turn the mask into 0x10s. */
        const __m512i bits = _mm512_set1_epi64(0x8040201008040201LL);
        const __m512i sl = _mm512_set4_epi32(0x01010101 * (B.qh + 1), 0x01010101 * (B.qh + 1),
                                             0x01010101 * B.qh, 0x01010101 * B.qh);
        const __m512i sh = _mm512_add_epi8(sl, _mm512_set1_epi8(2));
        const __m512i b4 = _mm512_set1_epi8(0x10);
        *lo = _mm512_or_si512(*lo, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(_mm512_shuffle_epi8(hv, sl), bits), b4));
        *hi = _mm512_or_si512(*hi, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(_mm512_shuffle_epi8(hv, sh), bits), b4));
    }
}

/* K-quant (Q4_K/Q5_K) scales and mins of the 8 sub-blocks of super-block i for
 * 16 rows (in idx order): sc[s] = d*scale_s, mn[s] = -dmin*min_s. */
INLINE void scales_k(const uint8_t *base, __m512i idx, __m512 *sc, __m512 *mn) {
    const __m512i h = _mm512_i32gather_epi32(idx, base, 1);
    const __m512i g0 = _mm512_i32gather_epi32(idx, base + 4, 1);
    const __m512i g1 = _mm512_i32gather_epi32(idx, base + 8, 1);
    const __m512i g2 = _mm512_i32gather_epi32(idx, base + 12, 1);
    const __m512 d = h2f_lo(h), dmin = _mm512_sub_ps(_mm512_setzero_ps(), h2f_hi(h));
    const __m512i m6 = _mm512_set1_epi32(63), m4 = _mm512_set1_epi32(15), m3 = _mm512_set1_epi32(3);
    for (int s = 0; s < 4; s++) {
        const __m512i a0 = _mm512_srli_epi32(g0, 8 * s), a1 = _mm512_srli_epi32(g1, 8 * s);
        const __m512i a2 = _mm512_srli_epi32(g2, 8 * s);
        const __m512i s_lo = _mm512_and_si512(a0, m6), m_lo = _mm512_and_si512(a1, m6);
        const __m512i s_hi = _mm512_or_si512(_mm512_and_si512(a2, m4),
                                             _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(a0, 6), m3), 4));
        const __m512i m_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(a2, 4), m4),
                                             _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(a1, 6), m3), 4));
        sc[s] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(s_lo));
        mn[s] = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(m_lo));
        sc[s + 4] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(s_hi));
        mn[s + 4] = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(m_hi));
    }
}

/* Sub-block s (0..7) of super-block at byte offset o for 4 rows, Q4_K/Q5_K. */
INLINE void load_uk(const int five, const uint8_t *const *rows, int64_t o, int s, __m512i *lo, __m512i *hi) {
    const int64_t qo = o + (five ? 48 : 16) + 32 * (s / 2);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i a = load4x16(rows, qo), b = load4x16(rows, qo + 16);
    if (s & 1) {
        a = _mm512_srli_epi16(a, 4);
        b = _mm512_srli_epi16(b, 4);
    }
    *lo = _mm512_and_si512(a, m4);
    *hi = _mm512_and_si512(b, m4);
    if (five) {
        /* bit s of qh[l] is the 5th bit of element l: move it to bit 4 */
        const __m512i b4 = _mm512_set1_epi8(0x10);
        __m512i ha = load4x16(rows, o + 16), hb = load4x16(rows, o + 32);
        if (s <= 4) {
            ha = _mm512_slli_epi16(ha, 4 - s);
            hb = _mm512_slli_epi16(hb, 4 - s);
        } else {
            ha = _mm512_srli_epi16(ha, s - 4);
            hb = _mm512_srli_epi16(hb, s - 4);
        }
        *lo = _mm512_or_si512(*lo, _mm512_and_si512(ha, b4));
        *hi = _mm512_or_si512(*hi, _mm512_and_si512(hb, b4));
    }
}

INLINE void prefetch_lines(const uint8_t *pf, int64_t first, int cnt) {
    for (int l = 0; l < cnt; l++) _mm_prefetch((const char *)((uintptr_t)pf + (uintptr_t)(first + l) * 64), _MM_HINT_T0);
}

INLINE void decode512_body(const uint32_t wt, const int J, const int P, const uint8_t *const *rows, int64_t nsb,
                           const int8_t *xq, const float *xd, const float *xs, float *Y, int64_t ldy, int nr,
                           const uint8_t *pf, int pfl) {
    const __m512i perm = _mm512_loadu_si512((const void *)k_perm16);
    /* byte offsets of the rows in k_perm16 order, for the scale gathers */
    int32_t offs[16];
    for (int p = 0; p < 16; p++) offs[p] = (int32_t)(rows[k_perm16[p]] - rows[0]);
    const __m512i idx = _mm512_loadu_si512((const void *)offs);
    const uint8_t *const *rg[4] = {rows, rows + 4, rows + 8, rows + 12};
    const int kq = wt == GW_TYPE_Q4_K || wt == GW_TYPE_Q5_K;
    const int five = wt == GW_TYPE_Q5_K;
    const blk32 B = blk32_of(wt);
    __m512 acc[4];
    for (int j = 0; j < J; j++) acc[j] = _mm512_setzero_ps();
    __m512 ksc[8], kmn[8];
    for (int64_t sb = 0; sb < nsb; sb++) {
        __m512 sc, mn;
        __m512i lo[4], hi[4];
        if (pf) prefetch_lines(pf, sb * pfl, pfl);
        if (kq) {
            const int64_t o = (sb / 8) * (five ? 176 : 144);
            const int s = (int)(sb % 8);
            if (s == 0) scales_k(rows[0] + o, idx, ksc, kmn);
            sc = ksc[s];
            mn = kmn[s];
            for (int i = 0; i < 4; i++) load_uk(five, rg[i], o, s, &lo[i], &hi[i]);
        } else {
            /* The 4 header bytes of each row's block, without a gather (slow on
             * Zen 4): one 16-byte load per row lands each header in dword 0 of a
             * 128-bit lane, and two unpacks put them in k_perm16 order. */
            __m512i hv[4];
            for (int i = 0; i < 4; i++) hv[i] = load4x16(rg[i], sb * B.bs);
            const __m512i h = _mm512_unpacklo_epi64(_mm512_unpacklo_epi32(hv[0], hv[1]),
                                                    _mm512_unpacklo_epi32(hv[2], hv[3]));
            sc = h2f_lo(h);
            mn = B.off ? _mm512_mul_ps(sc, _mm512_set1_ps(-(float)B.off)) : h2f_hi(h);
            for (int i = 0; i < 4; i++) load_u32types(wt, B, rg[i], sb, hv[i], &lo[i], &hi[i]);
        }
        for (int j = 0; j < J; j++) {
            const int8_t *x = xq + (sb * J + j) * 32 * P;
            const __m512i xl = _mm512_broadcast_i32x4(ld128(x)), xh = _mm512_broadcast_i32x4(ld128(x + 16));
            __m512i d[4];
            for (int i = 0; i < 4; i++)
                d[i] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[i], xl), hi[i], xh);
            if (P == 2) {
                const __m512i yl = _mm512_broadcast_i32x4(ld128(x + 32)), yh = _mm512_broadcast_i32x4(ld128(x + 48));
                for (int i = 0; i < 4; i++)
                    d[i] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(mul255(d[i]), lo[i], yl), hi[i], yh);
            }
            const __m512 f = _mm512_cvtepi32_ps(reduce4(d[0], d[1], d[2], d[3]));
            acc[j] = _mm512_fmadd_ps(f, _mm512_mul_ps(sc, _mm512_set1_ps(xd[sb * J + j])), acc[j]);
            acc[j] = _mm512_fmadd_ps(mn, _mm512_set1_ps(xs[sb * J + j]), acc[j]);
        }
    }
    const __mmask16 km = (__mmask16)((1u << nr) - 1);
    for (int j = 0; j < J; j++) _mm512_mask_storeu_ps(Y + j * ldy, km, _mm512_permutexvar_ps(perm, acc[j]));
}

/* Q6_K: sub-blocks of 16 elements, each its own int8 scale. One 128-bit lane
 * per row holds a whole sub-block. */
INLINE void decode512_q6k(const int J, const int P, const uint8_t *const *rows, int64_t nsb, const int8_t *xq,
                          const float *xd, const float *xs, float *Y, int64_t ldy, int nr, const uint8_t *pf,
                          int pfl) {
    const __m512i perm = _mm512_loadu_si512((const void *)k_perm16);
    int32_t offs[16];
    for (int p = 0; p < 16; p++) offs[p] = (int32_t)(rows[k_perm16[p]] - rows[0]);
    const __m512i idx = _mm512_loadu_si512((const void *)offs);
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(0x03);
    __m512 acc[4];
    for (int j = 0; j < J; j++) acc[j] = _mm512_setzero_ps();
    __m512 d6 = _mm512_setzero_ps();
    __m512i scw = _mm512_setzero_si512();
    for (int64_t sb = 0; sb < nsb; sb++) {
        if (pf) prefetch_lines(pf, sb * pfl, pfl);
        const int64_t o = (sb / 16) * 210;
        const int u = (int)(sb % 16);
        /* d sits in the last 2 bytes of the block: gather bytes 206..209 so as
         * not to read past the end of the tensor */
        if (u == 0) d6 = h2f_hi(_mm512_i32gather_epi32(idx, rows[0] + o + 206, 1));
        if ((u & 3) == 0) scw = _mm512_i32gather_epi32(idx, rows[0] + o + 192 + u, 1);
        /* int8 scale u of each row: byte (u & 3) of the gathered word */
        const __m512i s8 = _mm512_srai_epi32(_mm512_slli_epi32(scw, 24 - 8 * (u & 3)), 24);
        const __m512 sc = _mm512_mul_ps(d6, _mm512_cvtepi32_ps(s8));
        const __m512 mn = _mm512_mul_ps(sc, _mm512_set1_ps(-32.0f));
        const int e0 = u * 16, h = e0 / 128, qq = (e0 % 128) / 32, l0 = e0 % 32;
        const int64_t qlo = o + 64 * h + (qq & 1) * 32 + l0, qho = o + 128 + 32 * h + l0;
        __m512i v[4];
        for (int i = 0; i < 4; i++) {
            __m512i ql = load4x16(rows + 4 * i, qlo), qh = load4x16(rows + 4 * i, qho);
            if (qq >> 1) ql = _mm512_srli_epi16(ql, 4);
            if (qq) qh = _mm512_srli_epi16(qh, 2 * qq);
            v[i] = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_slli_epi16(_mm512_and_si512(qh, m3), 4));
        }
        for (int j = 0; j < J; j++) {
            const int8_t *x = xq + (sb * J + j) * 16 * P;
            const __m512i xv = _mm512_broadcast_i32x4(ld128(x));
            __m512i d[4];
            for (int i = 0; i < 4; i++) d[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[i], xv);
            if (P == 2) {
                const __m512i yv = _mm512_broadcast_i32x4(ld128(x + 16));
                for (int i = 0; i < 4; i++) d[i] = _mm512_dpbusd_epi32(mul255(d[i]), v[i], yv);
            }
            const __m512 f = _mm512_cvtepi32_ps(reduce4(d[0], d[1], d[2], d[3]));
            acc[j] = _mm512_fmadd_ps(f, _mm512_mul_ps(sc, _mm512_set1_ps(xd[sb * J + j])), acc[j]);
            acc[j] = _mm512_fmadd_ps(mn, _mm512_set1_ps(xs[sb * J + j]), acc[j]);
        }
    }
    const __mmask16 km = (__mmask16)((1u << nr) - 1);
    for (int j = 0; j < J; j++) _mm512_mask_storeu_ps(Y + j * ldy, km, _mm512_permutexvar_ps(perm, acc[j]));
}

/* decode512_body / decode512_q6k instantiated for J = 1..4 and P = 1, 2. */
#define DEC_J(CALL, P)                                    \
    switch (J) {                                          \
    case 1: CALL(1, P); return 1;                         \
    case 2: CALL(2, P); return 1;                         \
    case 3: CALL(3, P); return 1;                         \
    default: CALL(4, P); return 1;                        \
    }
#define DEC_BODY(JJ, PP) decode512_body(wt_, JJ, PP, rows, nsb, xq, xd, xs, Y, ldy, nr, pf, pfl)
#define DEC_Q6K(JJ, PP) decode512_q6k(JJ, PP, rows, nsb, xq, xd, xs, Y, ldy, nr, pf, pfl)
#define DEC_CASES(WT)                                     \
    case WT: {                                            \
        const uint32_t wt_ = WT;                          \
        if (P == 2) DEC_J(DEC_BODY, 2)                    \
        else DEC_J(DEC_BODY, 1)                           \
    }

static int decode512(uint32_t wt, const uint8_t *const *rows, int64_t nsb, int J, int P, const int8_t *xq,
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
    case GW_TYPE_Q6_K:
        if (P == 2) DEC_J(DEC_Q6K, 2)
        else DEC_J(DEC_Q6K, 1)
    default: return 0;
    }
}

/* ------------------------------------------------------------ float weights */

/* 16 weights of a row from element i as floats (masked: the k tail). */
INLINE __m512 load_wf(const uint32_t wt, const uint8_t *row, int64_t i, __mmask16 m) {
    if (wt == GW_TYPE_F32) return _mm512_maskz_loadu_ps(m, row + 4 * i);
    const __m256i h = _mm256_maskz_loadu_epi16(m, row + 2 * i);
    if (wt == GW_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
INLINE __m512 load_wf16(const uint32_t wt, const uint8_t *row, int64_t i) {
    if (wt == GW_TYPE_F32) return _mm512_loadu_ps(row + 4 * i);
    const __m256i h = _mm256_loadu_si256((const __m256i *)(row + 2 * i));
    if (wt == GW_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Tuned on Zen 4 (49152x576 F16, 1 thread): prefetch the next tile (not
 * further) into L2 (hint T1: 21 GB/s against 18 with T0), 8 rows per tile for
 * one token (16 was slower). */
#define PFD 1
#define PFH 2
#define DR1 8

/* Decode: R rows (row pointers) x JN tokens, read in place, one accumulator
 * per (row, token); 64 bytes of every row per step, prefetching
 * [pf, pf + pf_bytes) (the next tile: rows are too short for the hardware
 * prefetcher, and decode is bound by DRAM). Y[j*ldy + r] for r < nr. */
INLINE void fdec512(const uint32_t wt, const int R, const int JN, const uint8_t *const *rows,
                    const uint8_t *pf, size_t pf_bytes, const uint8_t *X, size_t x_stride, int64_t k, float *Y,
                    int64_t ldy, int nr) {
    const int esz = wt == GW_TYPE_F32 ? 4 : 2;
    const int step = 64 / esz;
    __m512 acc[16][4];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < JN; j++) acc[r][j] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + step <= k; i += step) {
        /* R lines of the next tile's bytes per step: a linear sweep that
         * ends with this tile */
        for (int r = 0; r < R; r++) {
            const size_t off = ((size_t)i * esz / 64 * R + r) * 64;
            if (off < pf_bytes) __builtin_prefetch(pf + off, 0, PFH);
        }
        for (int h = 0; h < step; h += 16) {
            __m512 x[4];
            for (int j = 0; j < JN; j++) x[j] = _mm512_loadu_ps(X + j * x_stride + 4 * (i + h));
            for (int r = 0; r < R; r++) {
                const __m512 w = load_wf16(wt, rows[r], i + h);
                for (int j = 0; j < JN; j++) acc[r][j] = _mm512_fmadd_ps(w, x[j], acc[r][j]);
            }
        }
    }
    for (; i < k; i += 16) {
        const __mmask16 m = k - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - i)) - 1);
        __m512 x[4];
        for (int j = 0; j < JN; j++) x[j] = _mm512_maskz_loadu_ps(m, X + j * x_stride + 4 * i);
        for (int r = 0; r < R; r++) {
            const __m512 w = load_wf(wt, rows[r], i, m);
            for (int j = 0; j < JN; j++) acc[r][j] = _mm512_fmadd_ps(w, x[j], acc[r][j]);
        }
    }
    for (int j = 0; j < JN; j++)
        for (int r = 0; r < R; r++)
            if (r < nr) Y[j * ldy + r] = hsum512(acc[r][j]);
}

#define FDEC(WT, R, JN) fdec512(WT, R, JN, rows, pf, pf_bytes, Xj, x_stride, k, Yj, ldy, nr)
#define FDEC_WT(R, JN)                                                                                                \
    do {                                                                                                          \
        if (wt == GW_TYPE_F16) FDEC(GW_TYPE_F16, R, JN);                                                          \
        else if (wt == GW_TYPE_BF16) FDEC(GW_TYPE_BF16, R, JN);                                                   \
        else FDEC(GW_TYPE_F32, R, JN);                                                                            \
    } while (0)

static void fdecode512(uint32_t wt, const uint8_t *W, size_t w_stride, const uint8_t *X, size_t x_stride,
                       int64_t k, int64_t r0, int64_t r1, int64_t n, float *Y, int64_t ldy) {
    for (int64_t j0 = 0; j0 < n; j0 += 4) {
        const int JN = (int)(n - j0 < 4 ? n - j0 : 4);
        const int R = JN == 1 ? DR1 : JN == 2 ? 8 : 4;
        const uint8_t *Xj = X + j0 * x_stride;
        for (int64_t r = r0; r < r1; r += R) {
            const int nr = (int)(r1 - r < R ? r1 - r : R);
            /* missing rows repeat the last one (not stored) */
            const uint8_t *rows[16];
            for (int i = 0; i < R; i++) rows[i] = W + (size_t)(r + (i < nr ? i : nr - 1)) * w_stride;
            const int64_t rn = r + PFD * R < r1 ? r + PFD * R : r1;
            const int64_t rn1 = rn + R < r1 ? rn + R : r1;
            const uint8_t *pf = W + (size_t)rn * w_stride;
            const size_t pf_bytes = (size_t)(rn1 - rn) * w_stride;
            float *Yj = Y + j0 * ldy + r;
            switch (JN) {
            case 1: FDEC_WT(DR1, 1); break;
            case 2: FDEC_WT(8, 2); break;
            case 3: FDEC_WT(4, 3); break;
            default: FDEC_WT(4, 4); break;
            }
        }
    }
}

/* Prefill: panels of FPR rows converted to float, k-major. */
#define FPR 32
#define FJ 8

/* In-register transpose of a 16x16 float block: v[r] lane e -> v[e] lane r. */
INLINE void transpose16(__m512 v[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(v[i], v[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        v[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        v[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        v[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        v[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    /* now v[4b + c] holds, in 128-bit lane L, rows 4b..4b+3 of column 4L + c;
     * gather lane L of the 4 groups into column 4L + c */
    for (int c = 0; c < 4; c++) {
        const __m512 a0 = _mm512_shuffle_f32x4(v[c], v[4 + c], 0x88);      /* lanes 0,2 | 0,2 */
        const __m512 a1 = _mm512_shuffle_f32x4(v[c], v[4 + c], 0xDD);      /* lanes 1,3 | 1,3 */
        const __m512 b0 = _mm512_shuffle_f32x4(v[8 + c], v[12 + c], 0x88);
        const __m512 b1 = _mm512_shuffle_f32x4(v[8 + c], v[12 + c], 0xDD);
        t[c] = _mm512_shuffle_f32x4(a0, b0, 0x88);      /* lane 0 of each group */
        t[4 + c] = _mm512_shuffle_f32x4(a1, b1, 0x88);  /* lane 1 */
        t[8 + c] = _mm512_shuffle_f32x4(a0, b0, 0xDD);  /* lane 2 */
        t[12 + c] = _mm512_shuffle_f32x4(a1, b1, 0xDD); /* lane 3 */
    }
    for (int i = 0; i < 16; i++) v[i] = t[i];
}

/* Rows [0, nr) of W (nr <= FPR; the rest zero) as floats, k-major:
 * P[i*FPR + r], k padded to a multiple of 16 with zeros. */
static void frepack512(const uint32_t wt, const uint8_t *W, size_t w_stride, int nr, int64_t k, float *P) {
    for (int r0 = 0; r0 < FPR; r0 += 16) {
        const uint8_t *rows[16];
        for (int r = 0; r < 16; r++) rows[r] = W + (size_t)(r0 + r < nr ? r0 + r : 0) * w_stride;
        const __mmask16 live = r0 >= nr ? 0 : nr - r0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (nr - r0)) - 1);
        for (int64_t i = 0; i < k; i += 16) {
            const __mmask16 m = k - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - i)) - 1);
            __m512 v[16];
            for (int r = 0; r < 16; r++) {
                const __mmask16 mr = (live >> r) & 1 ? m : 0;
                if (wt == GW_TYPE_F16) v[r] = load_wf(GW_TYPE_F16, rows[r], i, mr);
                else if (wt == GW_TYPE_BF16) v[r] = load_wf(GW_TYPE_BF16, rows[r], i, mr);
                else v[r] = load_wf(GW_TYPE_F32, rows[r], i, mr);
            }
            transpose16(v);
            for (int e = 0; e < 16; e++) _mm512_store_ps(P + (i + e) * FPR + r0, v[e]);
        }
    }
}

/* FPR (RW = 2) or 16 (RW = 1) panel rows x JN tokens; Y[j*ldy + r], r < nr. */
INLINE void fgemm512(const int RW, const int JN, const float *P, int64_t k, const uint8_t *X, size_t x_stride,
                     float *Y, int64_t ldy, int nr) {
    __m512 a0[FJ], a1[FJ];
    for (int j = 0; j < JN; j++) a0[j] = a1[j] = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int64_t i = 0; i < k; i++) {
        const __m512 w0 = _mm512_load_ps(P + i * FPR);
        const __m512 w1 = RW == 2 ? _mm512_load_ps(P + i * FPR + 16) : w0;
        for (int j = 0; j < JN; j++) {
            const __m512 b = _mm512_set1_ps(gw_ldf(X + j * x_stride + 4 * i));
            a0[j] = _mm512_fmadd_ps(w0, b, a0[j]);
            if (RW == 2) a1[j] = _mm512_fmadd_ps(w1, b, a1[j]);
        }
    }
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
    for (int j = 0; j < JN; j++) {
        _mm512_mask_storeu_ps(Y + j * ldy, m0, a0[j]);
        if (RW == 2) _mm512_mask_storeu_ps(Y + j * ldy + 16, m1, a1[j]);
    }
}

#define FG(RW, JN) fgemm512(RW, JN, P, k, Xt, x_stride, Yt, ldy, nr)
#define FG_J(RW)                                                                                                      \
    switch (jn) {                                                                                                 \
    case 8: FG(RW, 8); break;                                                                                     \
    case 7: FG(RW, 7); break;                                                                                     \
    case 6: FG(RW, 6); break;                                                                                     \
    case 5: FG(RW, 5); break;                                                                                     \
    case 4: FG(RW, 4); break;                                                                                     \
    case 3: FG(RW, 3); break;                                                                                     \
    case 2: FG(RW, 2); break;                                                                                     \
    default: FG(RW, 1); break;                                                                                    \
    }

static void matmul_float512(uint32_t wt, const void *W, size_t w_stride, const float *X, size_t x_stride,
                            int64_t k, int64_t r0, int64_t r1, int64_t n, float *Y, int64_t ldy) {
    const uint8_t *Wb = (const uint8_t *)W, *Xb = (const uint8_t *)X;
    if (n < GW_FLOAT_GEMM_MIN_N) {
        fdecode512(wt, Wb, w_stride, Xb, x_stride, k, r0, r1, n, Y, ldy);
        return;
    }
    const int64_t kp = (k + 15) & ~(int64_t)15;
    float *P = (float *)gw_scratch_get(sizeof(float) * (size_t)(FPR * kp));
    const int64_t NC = gw_float_chunk(k, FJ);
    for (int64_t c0 = 0; c0 < n; c0 += NC) {
        const int64_t nc = n - c0 < NC ? n - c0 : NC;
        for (int64_t r = r0; r < r1; r += FPR) {
            const int nr = (int)(r1 - r < FPR ? r1 - r : FPR);
            frepack512(wt, Wb + (size_t)r * w_stride, w_stride, nr, k, P);
            for (int64_t t = 0; t < nc; t += FJ) {
                const int jn = (int)(nc - t < FJ ? nc - t : FJ);
                const uint8_t *Xt = Xb + (size_t)(c0 + t) * x_stride;
                float *Yt = Y + (c0 + t) * ldy + r;
                if (nr > 16) { FG_J(2) }
                else { FG_J(1) }
            }
        }
    }
}

/* ------------------------------------------------------------ quantization */

/* roundf (half away from zero) exactly: trunc, then step away from zero when
 * the dropped fraction is >= 0.5 (x - trunc(x) is exact). */
INLINE __m512 roundf512(__m512 v) {
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_abs_ps(_mm512_sub_ps(v, t));
    const __mmask16 up = _mm512_cmp_ps_mask(f, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f),
                                    _mm512_and_ps(v, _mm512_castsi512_ps(_mm512_set1_epi32((int32_t)0x80000000u))));
    return _mm512_mask_add_ps(t, up, t, one);
}

/* Q16 (see quantize_q16_ref in quant.c): same float operations, so the same
 * bits. CVTPS2DQ rounds half to even like nearest_int. */
static void quantize_q16_512(const float *x, uint8_t *y, int64_t n) {
    const __m512i qmax = _mm512_set1_epi32(GW_Q16_QMAX), qmin = _mm512_set1_epi32(-GW_Q16_QMAX);
    const __m512 inv = _mm512_set1_ps(1.0f / GW_Q16_BASE);
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += GW_Q16_BYTES) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float d = amax >= 0x1p-100f ? amax / (float)GW_Q16_QMAX : 0.0f;
        const float id = d ? 1.0f / d : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        __m512i q[2];
        q[0] = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
        q[1] = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
        for (int i = 0; i < 2; i++) {
            q[i] = _mm512_max_epi32(_mm512_min_epi32(q[i], qmax), qmin);
            const __m512i h = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_cvtepi32_ps(q[i]), inv));
            const __m512i l = _mm512_sub_epi32(q[i], _mm512_sub_epi32(_mm512_slli_epi32(h, 8), h));
            _mm_storeu_si128((__m128i *)(y + 8 + 16 * i), _mm512_cvtepi32_epi8(h));
            _mm_storeu_si128((__m128i *)(y + 40 + 16 * i), _mm512_cvtepi32_epi8(l));
        }
        const int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1]));
        memcpy(y, &d, 4);
        memcpy(y + 4, &sum, 4);
    }
}

static void quantize_act512(uint32_t t, const float *x, void *dst, int64_t n) {
    uint8_t *y = (uint8_t *)dst;
    if (t == GW_TYPE_Q16) {
        quantize_q16_512(x, y, n);
        return;
    }
    if (t == GW_TYPE_Q8_K) {
        for (int64_t b = 0; b < n / 256; b++, x += 256, y += 292) {
            __m512 v[16];
            __m512 am = _mm512_setzero_ps();
            for (int i = 0; i < 16; i++) {
                v[i] = _mm512_loadu_ps(x + 16 * i);
                am = _mm512_max_ps(am, _mm512_abs_ps(v[i]));
            }
            const float amax = _mm512_reduce_max_ps(am);
            if (!amax) {
                memset(y, 0, 292);
                continue;
            }
            /* ggml keeps the first element with the largest magnitude (its sign matters) */
            float max = 0;
            for (int i = 0; i < 16; i++) {
                const __mmask16 k = _mm512_cmp_ps_mask(_mm512_abs_ps(v[i]), _mm512_set1_ps(amax), _CMP_EQ_OQ);
                if (k) { max = x[16 * i + __builtin_ctz(k)]; break; }
            }
            const float iscale = -127.f / max;
            const __m512 is = _mm512_set1_ps(iscale);
            int16_t bs[16];
            for (int i = 0; i < 16; i++) {
                __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(v[i], is)); /* round half even = nearest_int */
                q = _mm512_min_epi32(q, _mm512_set1_epi32(127));
                _mm_storeu_si128((__m128i *)(y + 4 + 16 * i), _mm512_cvtepi32_epi8(q));
                bs[i] = (int16_t)_mm512_reduce_add_epi32(q);
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
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        const __m512i q0 = _mm512_cvttps_epi32(roundf512(_mm512_mul_ps(v0, vid)));
        const __m512i q1 = _mm512_cvttps_epi32(roundf512(_mm512_mul_ps(v1, vid)));
        const uint16_t dh = gw_fp32_to_fp16(d);
        memcpy(y, &dh, 2);
        uint8_t *qs = y + (with_sum ? 4 : 2);
        _mm_storeu_si128((__m128i *)qs, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtepi32_epi8(q1));
        if (with_sum) {
            const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
            const uint16_t sh = gw_fp32_to_fp16(sum * d);
            memcpy(y + 2, &sh, 2);
        }
    }
}

const gw_quant_kernels gw_kernels_avx512 = {
    .J = J512,
    .gemm_min_n = 8,
    .dec_max_j = 4,
    .gemm = gemm512,
    .repack = repack512,
    .decode = decode512,
    .matmul_float = matmul_float512,
    .pack_x = gw_pack_x_avx2,
    .quantize_act = quantize_act512,
};
#ifdef __clang__
#pragma clang attribute pop
#endif
#else
#include "backend/cpu/quant_impl.h"
/* Not x86: the dispatcher never selects this table. */
const gw_quant_kernels gw_kernels_avx512 = {0};
#endif
