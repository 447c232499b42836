/* Loading quantized KV codes (kv/kv_cache.h: int8 one per byte, int4 two per
 * byte with the even element in the low nibble) as AVX-512 vectors; shared
 * by the pool's dequantization and the attention kernel that reads codes
 * directly. x86-64 only; every function carries its own target attribute. */
#ifndef GODWIT_CPU_KV_CODES_H
#define GODWIT_CPU_KV_CODES_H
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>

/* 16 int4 codes (8 bytes) as 16 bytes, in element order. */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static inline __m128i gw_kv_unpack_int4(__m128i packed8) {
    __m128i w = _mm_cvtepu8_epi16(packed8);
    __m128i lo = _mm_and_si128(w, _mm_set1_epi16(0x000f));
    __m128i hi = _mm_slli_epi16(_mm_srli_epi16(w, 4), 8);
    return _mm_or_si128(lo, hi);
}

/* Codes of elements [i, i + n) (n <= 16; i even for int4) as floats; the
 * lanes past n are 0. */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static inline __m512 gw_kv_codes_ps(const uint8_t *codes,
                                                                                          int int4, size_t i, int n) {
    __m128i c;
    if (int4) c = gw_kv_unpack_int4(_mm_maskz_loadu_epi8((__mmask16)((1u << ((n + 1) / 2)) - 1), codes + i / 2));
    else c = _mm_maskz_loadu_epi8((__mmask16)((1u << n) - 1), codes + i);
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(c));
}

/* n fp16 values (scales and minimums) to float. */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static inline void gw_kv_fp16_to_ps(const uint16_t *src, float *dst,
                                                                                           int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)));
    }
}
#endif
#endif
