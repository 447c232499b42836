#include "backend/cpu/attention.h"

#include <math.h>
#include <string.h>

#include "backend/cpu/quant.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

size_t gw_attention_scratch_floats(int group, int head_dim, int block_size) {
    /* scores [group][block_size], running max/sum [group], one converted
     * key or value row [head_dim], padding */
    return (size_t)group * block_size + 2 * (size_t)group + (size_t)head_dim + 64;
}

/* ---- dot(q, fp16 k) and acc += w * fp16 v, per ISA ---- */

static float dot_f16_scalar(const float *q, const uint16_t *k, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += q[i] * gw_fp16_to_fp32(k[i]);
    return s;
}

static void axpy_f16_scalar(float *acc, float w, const uint16_t *v, int n) {
    for (int i = 0; i < n; i++) acc[i] += w * gw_fp16_to_fp32(v[i]);
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static float dot_f16_avx512(const float *q, const uint16_t *k, int n) {
    __m512 s = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 kv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(k + i)));
        s = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), kv, s);
    }
    float r = _mm512_reduce_add_ps(s);
    for (; i < n; i++) r += q[i] * gw_fp16_to_fp32(k[i]);
    return r;
}

__attribute__((target("avx512f"))) static void axpy_f16_avx512(float *acc, float w, const uint16_t *v, int n) {
    __m512 wv = _mm512_set1_ps(w);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(v + i)));
        _mm512_storeu_ps(acc + i, _mm512_fmadd_ps(wv, x, _mm512_loadu_ps(acc + i)));
    }
    for (; i < n; i++) acc[i] += w * gw_fp16_to_fp32(v[i]);
}

__attribute__((target("avx2,fma,f16c"))) static float dot_f16_avx2(const float *q, const uint16_t *k, int n) {
    __m256 s = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 kv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i)));
        s = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), kv, s);
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float r = _mm_cvtss_f32(h);
    for (; i < n; i++) r += q[i] * gw_fp16_to_fp32(k[i]);
    return r;
}

__attribute__((target("avx2,fma,f16c"))) static void axpy_f16_avx2(float *acc, float w, const uint16_t *v, int n) {
    __m256 wv = _mm256_set1_ps(w);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i)));
        _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(wv, x, _mm256_loadu_ps(acc + i)));
    }
    for (; i < n; i++) acc[i] += w * gw_fp16_to_fp32(v[i]);
}
#endif

typedef float (*dot_fn)(const float *, const uint16_t *, int);
typedef void (*axpy_fn)(float *, float, const uint16_t *, int);

static dot_fn pick_dot(void) {
#if defined(__x86_64__)
    const char *isa = gw_quant_isa_name();
    if (strcmp(isa, "avx512") == 0) return dot_f16_avx512;
    if (strcmp(isa, "avx2") == 0) return dot_f16_avx2;
#endif
    return dot_f16_scalar;
}

static axpy_fn pick_axpy(void) {
#if defined(__x86_64__)
    const char *isa = gw_quant_isa_name();
    if (strcmp(isa, "avx512") == 0) return axpy_f16_avx512;
    if (strcmp(isa, "avx2") == 0) return axpy_f16_avx2;
#endif
    return axpy_f16_scalar;
}

void gw_attention_decode(const gw_attention_args *a) {
    const gw_kv_pool *kv = a->kv;
    const int D = kv->head_dim, BS = kv->block_size, G = a->group;
    dot_fn dot = pick_dot();
    axpy_fn axpy = pick_axpy();
    float *scores = a->scratch;              /* [G][BS] */
    float *run_max = scores + (size_t)G * BS; /* [G] */
    float *run_sum = run_max + G;            /* [G] */
    for (int g = 0; g < G; g++) {
        run_max[g] = -INFINITY;
        run_sum[g] = 0.0f;
        memset(a->out + (size_t)g * D, 0, (size_t)D * sizeof(float));
    }
    const int32_t n_blocks = (a->n_slots + BS - 1) / BS;
    for (int32_t bi = 0; bi < n_blocks; bi++) {
        const int32_t blk = a->blocks[bi];
        const int n = (bi == n_blocks - 1) ? a->n_slots - bi * BS : BS;
        const uint16_t *kb = kv->k + gw_kv_offset(kv, blk, a->layer, a->kv_head, 0);
        const uint16_t *vb = kv->v + gw_kv_offset(kv, blk, a->layer, a->kv_head, 0);
        for (int g = 0; g < G; g++) {
            const float *q = a->q + (size_t)g * D;
            float *sc = scores + (size_t)g * BS;
            float bmax = -INFINITY;
            for (int j = 0; j < n; j++) {
                sc[j] = dot(q, kb + (size_t)j * D, D) * a->scale;
                if (sc[j] > bmax) bmax = sc[j];
            }
            float *acc = a->out + (size_t)g * D;
            float new_max = bmax > run_max[g] ? bmax : run_max[g];
            if (new_max > run_max[g] && run_sum[g] > 0.0f) {
                float r = expf(run_max[g] - new_max);
                run_sum[g] *= r;
                for (int i = 0; i < D; i++) acc[i] *= r;
            }
            run_max[g] = new_max;
            for (int j = 0; j < n; j++) {
                float w = expf(sc[j] - new_max);
                run_sum[g] += w;
                axpy(acc, w, vb + (size_t)j * D, D);
            }
        }
    }
    for (int g = 0; g < G; g++) {
        float inv = run_sum[g] > 0.0f ? 1.0f / run_sum[g] : 0.0f;
        float *acc = a->out + (size_t)g * D;
        for (int i = 0; i < D; i++) acc[i] *= inv;
    }
}
