/* CPU attention over the paged KV cache. Slots are processed in chunks of
 * up to 16 consecutive slots of one block: the chunk's scores for a query
 * head are one 16-lane vector (keys are stored dimension-major, see
 * kv_cache.h), then an online-softmax update, then a weighted sum of the
 * chunk's value rows. The chunk's values are converted from fp16 once and
 * reused by every query head of the GQA group. */
#include "backend/cpu/attention.h"

#include <math.h>
#include <string.h>

#include "backend/cpu/quant.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define CHUNK 16

size_t gw_attention_scratch_floats(int group, int head_dim, int block_size) {
    (void)block_size;
    /* scores [group][CHUNK], values [CHUNK][head_dim], max/sum for decode
     * [2][group], padding */
    return (size_t)group * CHUNK + (size_t)CHUNK * head_dim + 2 * (size_t)group + 64;
}

/* One chunk: update (acc, run_max, run_sum) of every head of the group with
 * slots [off, off + n) of one block tile. */
typedef void (*chunk_fn)(const gw_attention_args *a, const uint16_t *kt, const uint16_t *vt, int off, int n,
                         float *acc, float *run_max, float *run_sum);

static void chunk_scalar(const gw_attention_args *a, const uint16_t *kt, const uint16_t *vt, int off, int n,
                         float *acc, float *run_max, float *run_sum) {
    const gw_kv_pool *kv = a->kv;
    const int D = kv->head_dim, G = a->group;
    float *sc = a->scratch, *vf = a->scratch + (size_t)G * CHUNK;
    for (int j = 0; j < n; j++)
        for (int d = 0; d < D; d++) vf[j * D + d] = gw_fp16_to_fp32(vt[gw_kv_v_index(kv, off + j, d)]);
    for (int g = 0; g < G; g++) {
        const float *q = a->q + (size_t)g * D;
        float *s = sc + g * CHUNK, bmax = -INFINITY;
        for (int j = 0; j < n; j++) {
            float dot = 0.0f;
            for (int d = 0; d < D; d++) dot += q[d] * gw_fp16_to_fp32(kt[gw_kv_k_index(kv, off + j, d)]);
            s[j] = dot * a->scale;
            if (s[j] > bmax) bmax = s[j];
        }
        float *ag = acc + (size_t)g * D;
        float new_max = bmax > run_max[g] ? bmax : run_max[g];
        if (new_max > run_max[g] && run_sum[g] > 0.0f) {
            float r = expf(run_max[g] - new_max);
            run_sum[g] *= r;
            for (int d = 0; d < D; d++) ag[d] *= r;
        }
        run_max[g] = new_max;
        for (int j = 0; j < n; j++) {
            float w = expf(s[j] - new_max);
            run_sum[g] += w;
            for (int d = 0; d < D; d++) ag[d] += w * vf[j * D + d];
        }
    }
}

#if defined(__x86_64__)
/* exp(x) for 16 lanes: 2^(x log2 e) split into 2^n * 2^f, f in [-0.5, 0.5],
 * with a degree-6 polynomial for 2^f (relative error ~2e-7, like expf). */
__attribute__((target("avx512f"))) static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
    __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, n);
    /* 2^f = e^(f ln2) */
    __m512 y = _mm512_mul_ps(f, _mm512_set1_ps(0.693147180559945f));
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

__attribute__((target("avx512f,avx512bw"))) static void chunk_avx512(const gw_attention_args *a,
                                                                     const uint16_t *kt, const uint16_t *vt,
                                                                     int off, int n, float *acc,
                                                                     float *run_max, float *run_sum) {
    const gw_kv_pool *kv = a->kv;
    const int D = kv->head_dim, G = a->group, BS = kv->block_size;
    const __mmask16 mask = (__mmask16)((1u << n) - 1);
    float *vf = a->scratch + (size_t)G * CHUNK;
    /* values of the chunk, converted once for all heads */
    for (int j = 0; j < n; j++) {
        const uint16_t *row = vt + gw_kv_v_index(kv, off + j, 0);
        int d = 0;
        for (; d + 16 <= D; d += 16)
            _mm512_storeu_ps(vf + j * D + d, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + d))));
        for (; d < D; d++) vf[j * D + d] = gw_fp16_to_fp32(row[d]);
    }
    const __m512 scale = _mm512_set1_ps(a->scale);
    for (int g0 = 0; g0 < G; g0 += 4) {
        const int gn = G - g0 < 4 ? G - g0 : 4;
        const float *q0 = a->q + (size_t)g0 * D;
        __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int d = 0; d < D; d++) {
            __m512 k = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, kt + (size_t)d * BS + off));
            for (int i = 0; i < gn; i++) s[i] = _mm512_fmadd_ps(_mm512_set1_ps(q0[(size_t)i * D + d]), k, s[i]);
        }
        for (int i = 0; i < gn; i++) {
            const int g = g0 + i;
            __m512 sc = _mm512_mul_ps(s[i], scale);
            float bmax = _mm512_mask_reduce_max_ps(mask, sc);
            float *ag = acc + (size_t)g * D;
            float new_max = bmax > run_max[g] ? bmax : run_max[g];
            if (new_max > run_max[g] && run_sum[g] > 0.0f) {
                float r = expf(run_max[g] - new_max);
                run_sum[g] *= r;
                __m512 rv = _mm512_set1_ps(r);
                for (int d = 0; d + 16 <= D; d += 16)
                    _mm512_storeu_ps(ag + d, _mm512_mul_ps(_mm512_loadu_ps(ag + d), rv));
                for (int d = D / 16 * 16; d < D; d++) ag[d] *= r;
            }
            run_max[g] = new_max;
            __m512 p = _mm512_maskz_mov_ps(mask, exp512(_mm512_sub_ps(sc, _mm512_set1_ps(new_max))));
            run_sum[g] += _mm512_reduce_add_ps(p);
            float w[CHUNK];
            _mm512_storeu_ps(w, p);
            int d = 0;
            for (; d + 16 <= D; d += 16) {
                __m512 o = _mm512_loadu_ps(ag + d);
                for (int j = 0; j < n; j++)
                    o = _mm512_fmadd_ps(_mm512_set1_ps(w[j]), _mm512_loadu_ps(vf + j * D + d), o);
                _mm512_storeu_ps(ag + d, o);
            }
            for (; d < D; d++)
                for (int j = 0; j < n; j++) ag[d] += w[j] * vf[j * D + d];
        }
    }
}
#endif

static chunk_fn pick_chunk(void) {
#if defined(__x86_64__)
    if (gw_quant_best_isa() >= GW_ISA_AVX512 && strcmp(gw_quant_isa_name(), "avx512") == 0) return chunk_avx512;
#endif
    return chunk_scalar;
}

static chunk_fn chunk_kernel;

void gw_attention_force_scalar(bool scalar) { chunk_kernel = scalar ? chunk_scalar : pick_chunk(); }

void gw_attention_partial(const gw_attention_args *a, int32_t s0, int32_t s1, float *acc, float *run_max,
                          float *run_sum) {
    const gw_kv_pool *kv = a->kv;
    const int D = kv->head_dim, BS = kv->block_size, G = a->group;
    chunk_fn chunk = chunk_kernel;
    if (!chunk) chunk = chunk_kernel = pick_chunk(); /* benign race: all threads store the same pointer */
    for (int g = 0; g < G; g++) {
        run_max[g] = -INFINITY;
        run_sum[g] = 0.0f;
    }
    memset(acc, 0, (size_t)G * D * sizeof(float));
    for (int32_t s = s0; s < s1;) {
        const int32_t bi = s / BS, off = s % BS;
        int n = BS - off;
        if (n > s1 - s) n = s1 - s;
        if (n > CHUNK) n = CHUNK;
        const size_t tile = gw_kv_tile(kv, a->blocks[bi], a->layer, a->kv_head);
        chunk(a, kv->k + tile, kv->v + tile, off, n, acc, run_max, run_sum);
        s += n;
    }
}

void gw_attention_merge(int G, int D, const float *parts, int n_parts, size_t part_floats, float *out) {
    for (int g = 0; g < G; g++) {
        float m = -INFINITY;
        for (int p = 0; p < n_parts; p++) {
            float pm = parts[p * part_floats + (size_t)G * D + g];
            if (pm > m) m = pm;
        }
        float *o = out + (size_t)g * D;
        memset(o, 0, (size_t)D * sizeof(float));
        double total = 0;
        for (int p = 0; p < n_parts; p++) {
            const float *part = parts + p * part_floats;
            float psum = part[(size_t)G * D + G + g];
            if (psum == 0.0f) continue;
            float w = expf(part[(size_t)G * D + g] - m);
            total += (double)w * psum;
            for (int i = 0; i < D; i++) o[i] += w * part[(size_t)g * D + i];
        }
        float inv = total > 0 ? (float)(1.0 / total) : 0.0f;
        for (int i = 0; i < D; i++) o[i] *= inv;
    }
}

void gw_attention_decode(const gw_attention_args *a) {
    const int G = a->group, D = a->kv->head_dim;
    float *mx = a->scratch + (size_t)G * CHUNK + (size_t)CHUNK * D;
    float *sum = mx + G;
    gw_attention_partial(a, 0, a->n_slots, a->out, mx, sum);
    for (int g = 0; g < G; g++) {
        float inv = sum[g] > 0.0f ? 1.0f / sum[g] : 0.0f;
        float *acc = a->out + (size_t)g * D;
        for (int i = 0; i < D; i++) acc[i] *= inv;
    }
}
