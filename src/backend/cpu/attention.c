/* CPU attention over the paged KV cache (see attention.h). Keys are stored
 * dimension-major per block (kv_cache.h), so a chunk's 16 scores for one
 * query are one vector accumulated over d with no horizontal sums. */
#include "backend/cpu/attention.h"

#include <math.h>
#include <string.h>

#include "backend/cpu/kv_codes.h"
#include "backend/cpu/quant.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define CHUNK 16
#define DIRECT_V_MAX 256 /* largest head size read straight from fp16 values */

/* Scratch floats before the fp16 tile a sealed chunk is dequantized into. */
static size_t tile_scratch_offset(int group, int head_dim) {
    /* values of a chunk [CHUNK][D], scores [queries][CHUNK], running max and
     * sum [2][queries] */
    size_t nq = (size_t)GW_ATTN_MAX_TILE * group;
    return (size_t)CHUNK * head_dim + nq * CHUNK + 2 * nq + 64;
}

size_t gw_attention_scratch_floats(int group, int head_dim, int block_size) {
    /* + keys and values of one block tile in fp16 (quantized pools) */
    return tile_scratch_offset(group, head_dim) + (size_t)block_size * head_dim;
}

/* Where query qi (token qi / G, head qi % G) reads and accumulates. */
typedef struct {
    const gw_attention_args *a;
    float *acc;          /* accumulator of query qi: acc + (qi/G)*acc_stride + (qi%G)*D */
    size_t acc_stride;
    float *run_max, *run_sum; /* [n_q] */
    int32_t lo;          /* first slot of the range (partial) */
    const int32_t *hi;   /* per token: one past the last slot it sees */
    int32_t hi_one;      /* when hi is NULL */
} attn_state;

static inline const float *query_vec(const attn_state *st, int qi) {
    const gw_attention_args *a = st->a;
    return a->q + (size_t)(qi / a->group) * a->q_stride + (size_t)(qi % a->group) * a->kv->head_dim;
}
static inline float *query_acc(const attn_state *st, int qi) {
    const gw_attention_args *a = st->a;
    return st->acc + (size_t)(qi / a->group) * st->acc_stride + (size_t)(qi % a->group) * a->kv->head_dim;
}
static inline int32_t query_hi(const attn_state *st, int qi) {
    return st->hi ? st->hi[qi / st->a->group] : st->hi_one;
}

/* One chunk: slots [s, s + n) stored at offset off of a block tile. */
typedef void (*chunk_fn)(const attn_state *st, const uint16_t *kt, const uint16_t *vt, int32_t s, int off,
                         int n);

static void softmax_update(float *acc, int D, float *run_max, float *run_sum, float bmax) {
    if (bmax > *run_max && *run_sum > 0.0f) {
        float r = expf(*run_max - bmax);
        *run_sum *= r;
        for (int d = 0; d < D; d++) acc[d] *= r;
    }
    if (bmax > *run_max) *run_max = bmax;
}

static void chunk_scalar(const attn_state *st, const uint16_t *kt, const uint16_t *vt, int32_t s, int off,
                         int n) {
    const gw_attention_args *a = st->a;
    const gw_kv_pool *kv = a->kv;
    const int D = kv->head_dim, nq = a->n_tok * a->group;
    float *vf = a->scratch;
    for (int j = 0; j < n; j++)
        for (int d = 0; d < D; d++) vf[j * D + d] = gw_fp16_to_fp32(vt[gw_kv_v_index(kv, off + j, d)]);
    for (int qi = 0; qi < nq; qi++) {
        int m = query_hi(st, qi) - s; /* slots of this chunk the query sees */
        if (m > n) m = n;
        if (m <= 0) continue;
        const float *q = query_vec(st, qi);
        float sc[CHUNK], bmax = -INFINITY;
        for (int j = 0; j < m; j++) {
            float dot = 0.0f;
            for (int d = 0; d < D; d++) dot += q[d] * gw_fp16_to_fp32(kt[gw_kv_k_index(kv, off + j, d)]);
            sc[j] = dot * a->scale;
            if (sc[j] > bmax) bmax = sc[j];
        }
        float *acc = query_acc(st, qi);
        softmax_update(acc, D, &st->run_max[qi], &st->run_sum[qi], bmax);
        for (int j = 0; j < m; j++) {
            float w = expf(sc[j] - st->run_max[qi]);
            st->run_sum[qi] += w;
            for (int d = 0; d < D; d++) acc[d] += w * vf[j * D + d];
        }
    }
}

#if defined(__x86_64__)
/* exp(x) for 16 lanes: 2^(x log2 e) split into 2^n * 2^f, f in [-0.5, 0.5],
 * with a degree-7 Taylor polynomial for e^(f ln 2) (relative error ~2e-7). */
__attribute__((target("avx512f"))) static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
    __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 y = _mm512_mul_ps(_mm512_sub_ps(t, n), _mm512_set1_ps(0.693147180559945f));
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* Softmax weights of a chunk's raw scores (scores[i][j] for queries q0 + i,
 * i < qn, unscaled), updating each query's running max, sum and
 * accumulator; w is 0 for slots a query does not see and for padding
 * queries. Returns the most slots any query sees (0: nothing to add). */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static inline int softmax_weights_avx512(
    const attn_state *st, int q0, int qn, int32_t s, int n, float scores[4][CHUNK], float w[4][CHUNK]) {
    const gw_attention_args *a = st->a;
    const __m512 scale = _mm512_set1_ps(a->scale);
    int m_max = 0;
    for (int i = 0; i < 4; i++) {
        const int qi = q0 + i;
        int m = i < qn ? query_hi(st, qi) - s : 0;
        if (m > n) m = n;
        if (m <= 0) {
            _mm512_storeu_ps(w[i], _mm512_setzero_ps());
            continue;
        }
        if (m > m_max) m_max = m;
        const __mmask16 mask = (__mmask16)((1u << m) - 1);
        __m512 sc = _mm512_mul_ps(_mm512_loadu_ps(scores[i]), scale);
        softmax_update(query_acc(st, qi), a->kv->head_dim, &st->run_max[qi], &st->run_sum[qi],
                       _mm512_mask_reduce_max_ps(mask, sc));
        __m512 p = _mm512_maskz_mov_ps(mask, exp512(_mm512_sub_ps(sc, _mm512_set1_ps(st->run_max[qi]))));
        st->run_sum[qi] += _mm512_reduce_add_ps(p);
        _mm512_storeu_ps(w[i], p);
    }
    return m_max;
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) static void chunk_avx512(const attn_state *st, const uint16_t *kt,
                                                                     const uint16_t *vt, int32_t s, int off,
                                                                     int n) {
    const gw_attention_args *a = st->a;
    const gw_kv_pool *kv = a->kv;
    const int D = kv->head_dim, BS = kv->block_size, nq = a->n_tok * a->group;
    const __mmask16 chunk_mask = (__mmask16)((1u << n) - 1);
    /* head sizes that are a multiple of 64 read values straight from fp16
     * below; others go through a converted copy */
    const bool direct_v = D % 64 == 0 && D <= DIRECT_V_MAX;
    float *vf = a->scratch;
    for (int j = 0; !direct_v && j < n; j++) {
        const uint16_t *row = vt + gw_kv_v_index(kv, off + j, 0);
        int d = 0;
        for (; d + 16 <= D; d += 16)
            _mm512_storeu_ps(vf + j * D + d, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + d))));
        for (; d < D; d++) vf[j * D + d] = gw_fp16_to_fp32(row[d]);
    }
    for (int q0 = 0; q0 < nq; q0 += 4) {
        const int qn = nq - q0 < 4 ? nq - q0 : 4;
        /* Always four queries (missing ones repeat the first and are
         * discarded): constant loop bounds let the compiler keep every
         * accumulator in a register. */
        const float *qv[4];
        for (int i = 0; i < 4; i++) qv[i] = query_vec(st, q0 + (i < qn ? i : 0));
        /* two accumulators per query (even and odd d): the FMA chains are
         * then not latency-bound */
        __m512 sa[4][2];
        for (int i = 0; i < 4; i++) sa[i][0] = sa[i][1] = _mm512_setzero_ps();
        int d = 0;
        for (; d + 2 <= D; d += 2) {
            __m512 k0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(chunk_mask, kt + (size_t)d * BS + off));
            __m512 k1 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(chunk_mask, kt + (size_t)(d + 1) * BS + off));
            for (int i = 0; i < 4; i++) {
                sa[i][0] = _mm512_fmadd_ps(_mm512_set1_ps(qv[i][d]), k0, sa[i][0]);
                sa[i][1] = _mm512_fmadd_ps(_mm512_set1_ps(qv[i][d + 1]), k1, sa[i][1]);
            }
        }
        for (; d < D; d++) {
            __m512 k = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(chunk_mask, kt + (size_t)d * BS + off));
            for (int i = 0; i < 4; i++) sa[i][0] = _mm512_fmadd_ps(_mm512_set1_ps(qv[i][d]), k, sa[i][0]);
        }
        /* leave the accumulators through memory once, so that no runtime
         * index below forces them onto the stack inside the loop above */
        float scores[4][CHUNK];
        for (int i = 0; i < 4; i++) _mm512_storeu_ps(scores[i], _mm512_add_ps(sa[i][0], sa[i][1]));
        float w[4][CHUNK];
        const int m_max = softmax_weights_avx512(st, q0, qn, s, n, scores, w);
        if (m_max == 0) continue;
        float dummy[DIRECT_V_MAX]; /* accumulator of padding queries */
        if (qn < 4) memset(dummy, 0, sizeof(float) * (D < DIRECT_V_MAX ? D : DIRECT_V_MAX));
        float *acc[4];
        for (int i = 0; i < 4; i++) acc[i] = i < qn ? query_acc(st, q0 + i) : dummy;
        if (direct_v) {
            /* 4 queries x 64 outputs in 16 registers; each value row is
             * loaded and converted once for all four */
            for (int dv = 0; dv < D; dv += 64) {
                __m512 o[4][4];
                for (int i = 0; i < 4; i++)
                    for (int b = 0; b < 4; b++) o[i][b] = _mm512_loadu_ps(acc[i] + dv + 16 * b);
                for (int j = 0; j < m_max; j++) {
                    const uint16_t *row = vt + gw_kv_v_index(kv, off + j, dv);
                    __m512 v[4];
                    for (int b = 0; b < 4; b++)
                        v[b] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 16 * b)));
                    for (int i = 0; i < 4; i++) {
                        __m512 wj = _mm512_set1_ps(w[i][j]);
                        for (int b = 0; b < 4; b++) o[i][b] = _mm512_fmadd_ps(wj, v[b], o[i][b]);
                    }
                }
                for (int i = 0; i < 4; i++)
                    for (int b = 0; b < 4; b++) _mm512_storeu_ps(acc[i] + dv + 16 * b, o[i][b]);
            }
        } else {
            for (int i = 0; i < qn; i++) {
                int dv = 0;
                for (; dv + 16 <= D; dv += 16) {
                    __m512 o = _mm512_loadu_ps(acc[i] + dv);
                    for (int j = 0; j < m_max; j++)
                        o = _mm512_fmadd_ps(_mm512_set1_ps(w[i][j]), _mm512_loadu_ps(vf + j * D + dv), o);
                    _mm512_storeu_ps(acc[i] + dv, o);
                }
                for (; dv < D; dv++)
                    for (int j = 0; j < m_max; j++) acc[i][dv] += w[i][j] * vf[j * D + dv];
            }
        }
    }
}

/* A sealed (int8 / int4) block's chunk, read straight from its codes: with
 * key k[d][j] = c[d][j] * ks[d] + km[d] (per channel) a score is
 * sum_d (q[d] ks[d]) c[d][j] + sum_d q[d] km[d], and with value
 * v[j][d] = c[j][d] * vs[j][g] + vm[j][g] (per token, g = d / 32) a weighted
 * sum is sum_j (w[j] vs[j][g]) c[j][d] + sum_j w[j] vm[j][g]: KIVI's
 * identities, so codes are converted to float and never to fp16. For chunks
 * inside one key group (off a multiple of 16) and head sizes of 64 / 128 /
 * ... up to DIRECT_V_MAX. */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void chunk_q_avx512(const attn_state *st, int32_t blk,
                                                                       int32_t s, int off, int n) {
    const gw_attention_args *a = st->a;
    const gw_kv_pool *kv = a->kv;
    const int D = kv->head_dim, BS = kv->block_size, nq = a->n_tok * a->group, NG = D / GW_KV_QGROUP;
    const int int4 = kv->type == GW_KV_INT4;
    const size_t ti = gw_kv_tile_index(kv, blk, a->layer, a->kv_head);
    const uint8_t *kc = kv->kq + ti * kv->q_tile_bytes, *vc = kv->vq + ti * kv->q_tile_bytes;
    const uint16_t *kp = kv->kprm + ti * kv->kprm_tile + (size_t)(off / GW_KV_QGROUP) * D * 2;
    const uint16_t *vp = kv->vprm + ti * kv->vprm_tile + (size_t)off * NG * 2;
    float kpar[DIRECT_V_MAX][2]; /* per dimension: scale, min */
    gw_kv_fp16_to_ps(kp, &kpar[0][0], 2 * D);
    float vpar[CHUNK][DIRECT_V_MAX / GW_KV_QGROUP][2]; /* per slot and value group: scale, min */
    for (int j = 0; j < n; j++) gw_kv_fp16_to_ps(vp + (size_t)j * NG * 2, &vpar[j][0][0], 2 * NG);
    for (int q0 = 0; q0 < nq; q0 += 4) {
        const int qn = nq - q0 < 4 ? nq - q0 : 4;
        const float *qv[4];
        for (int i = 0; i < 4; i++) qv[i] = query_vec(st, q0 + (i < qn ? i : 0));
        float bias[4] = {0, 0, 0, 0};
        for (int i = 0; i < 4; i++)
            for (int d = 0; d < D; d++) bias[i] += qv[i][d] * kpar[d][1];
        __m512 sa[4][2];
        for (int i = 0; i < 4; i++) sa[i][0] = sa[i][1] = _mm512_setzero_ps();
        for (int d = 0; d < D; d += 2) {
            __m512 k0 = gw_kv_codes_ps(kc, int4, (size_t)d * BS + off, n);
            __m512 k1 = gw_kv_codes_ps(kc, int4, (size_t)(d + 1) * BS + off, n);
            for (int i = 0; i < 4; i++) {
                sa[i][0] = _mm512_fmadd_ps(_mm512_set1_ps(qv[i][d] * kpar[d][0]), k0, sa[i][0]);
                sa[i][1] = _mm512_fmadd_ps(_mm512_set1_ps(qv[i][d + 1] * kpar[d + 1][0]), k1, sa[i][1]);
            }
        }
        float scores[4][CHUNK];
        for (int i = 0; i < 4; i++)
            _mm512_storeu_ps(scores[i], _mm512_add_ps(_mm512_add_ps(sa[i][0], sa[i][1]), _mm512_set1_ps(bias[i])));
        float w[4][CHUNK];
        const int m_max = softmax_weights_avx512(st, q0, qn, s, n, scores, w);
        if (m_max == 0) continue;
        float dummy[DIRECT_V_MAX];
        if (qn < 4) memset(dummy, 0, sizeof(float) * D);
        float *acc[4];
        for (int i = 0; i < 4; i++) acc[i] = i < qn ? query_acc(st, q0 + i) : dummy;
        for (int dv = 0; dv < D; dv += 64) {
            const int g0 = dv / GW_KV_QGROUP;
            __m512 o[4][4];
            float bsum[4][2] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}};
            for (int i = 0; i < 4; i++)
                for (int b = 0; b < 4; b++) o[i][b] = _mm512_loadu_ps(acc[i] + dv + 16 * b);
            for (int j = 0; j < m_max; j++) {
                const size_t at = (size_t)(off + j) * D + dv;
                __m512 v[4];
                for (int b = 0; b < 4; b++) v[b] = gw_kv_codes_ps(vc, int4, at + 16 * b, 16);
                for (int i = 0; i < 4; i++) {
                    const float wj = w[i][j];
                    __m512 ws0 = _mm512_set1_ps(wj * vpar[j][g0][0]), ws1 = _mm512_set1_ps(wj * vpar[j][g0 + 1][0]);
                    o[i][0] = _mm512_fmadd_ps(ws0, v[0], o[i][0]);
                    o[i][1] = _mm512_fmadd_ps(ws0, v[1], o[i][1]);
                    o[i][2] = _mm512_fmadd_ps(ws1, v[2], o[i][2]);
                    o[i][3] = _mm512_fmadd_ps(ws1, v[3], o[i][3]);
                    bsum[i][0] += wj * vpar[j][g0][1];
                    bsum[i][1] += wj * vpar[j][g0 + 1][1];
                }
            }
            for (int i = 0; i < 4; i++)
                for (int b = 0; b < 4; b++)
                    _mm512_storeu_ps(acc[i] + dv + 16 * b,
                                     _mm512_add_ps(o[i][b], _mm512_set1_ps(bsum[i][b / 2])));
        }
    }
}
#endif

static chunk_fn pick_chunk(void) {
#if defined(__x86_64__)
    if (strcmp(gw_quant_isa_name(), "avx512") == 0) return chunk_avx512;
#endif
    return chunk_scalar;
}

static chunk_fn chunk_kernel;

void gw_attention_force_scalar(bool scalar) { chunk_kernel = scalar ? chunk_scalar : pick_chunk(); }

/* Slots of the chunk that starts at slot s: to the end of its block, of the
 * range, or the next multiple of CHUNK in the block, whichever comes first. */
static inline int chunk_len(int BS, int32_t s, int32_t end) {
    int n = BS - s % BS;
    if (n > end - s) n = (int)(end - s);
    /* stop at a multiple of CHUNK within the block, so that a range starting
     * mid-chunk (a split of flash-decoding) is aligned from its second chunk
     * on: the quantized kernel reads whole key groups */
    int to_aligned = CHUNK - (s % BS) % CHUNK;
    return n > to_aligned ? to_aligned : n;
}

/* The fp16 key and value tiles a chunk of block blk reads: the pool's own,
 * or for a sealed (quantized) block the chunk's slots dequantized into a
 * tile-shaped scratch, read by the same kernels. */
static void chunk_tiles(const gw_attention_args *a, int32_t blk, int off, int n, const uint16_t **kt,
                        const uint16_t **vt) {
    const gw_kv_pool *kv = a->kv;
    *kt = gw_kv_k_page(kv, blk, a->layer, a->kv_head);
    *vt = gw_kv_v_page(kv, blk, a->layer, a->kv_head);
    if (*kt) return;
    uint16_t *tk = (uint16_t *)(a->scratch + tile_scratch_offset(a->group, kv->head_dim));
    uint16_t *tv = tk + (size_t)kv->block_size * kv->head_dim;
    gw_kv_dequant_slots(kv, blk, a->layer, a->kv_head, off, n, tk, tv);
    *kt = tk;
    *vt = tv;
}

/* Runs every chunk of slots [lo, max hi) through the kernel. */
static void attend(const attn_state *st) {
    const gw_attention_args *a = st->a;
    const gw_kv_pool *kv = a->kv;
    const int BS = kv->block_size, nq = a->n_tok * a->group;
    chunk_fn chunk = chunk_kernel;
    if (!chunk) chunk = chunk_kernel = pick_chunk(); /* benign race: all threads store the same pointer */
    int32_t end = 0;
    for (int qi = 0; qi < nq; qi++) {
        st->run_max[qi] = -INFINITY;
        st->run_sum[qi] = 0.0f;
        memset(query_acc(st, qi), 0, (size_t)kv->head_dim * sizeof(float));
        if (query_hi(st, qi) > end) end = query_hi(st, qi);
    }
    for (int32_t s = st->lo; s < end;) {
        const int off = s % BS, n = chunk_len(BS, s, end);
        const int32_t blk = a->blocks[s / BS];
#if defined(__x86_64__)
        if (gw_kv_block_sealed(kv, blk) && chunk == chunk_avx512 && off % CHUNK == 0 && kv->head_dim % 64 == 0 &&
            kv->head_dim <= DIRECT_V_MAX) {
            chunk_q_avx512(st, blk, s, off, n); /* codes read directly */
            s += n;
            continue;
        }
#endif
        const uint16_t *kt, *vt;
        chunk_tiles(a, blk, off, n, &kt, &vt);
        chunk(st, kt, vt, s, off, n);
        s += n;
    }
}

void gw_attention(const gw_attention_args *a) {
    const int D = a->kv->head_dim, nq = a->n_tok * a->group;
    float *run_max = a->scratch + (size_t)CHUNK * D + (size_t)nq * CHUNK;
    attn_state st = {.a = a, .acc = a->out, .acc_stride = a->out_stride, .run_max = run_max,
                     .run_sum = run_max + nq, .lo = 0, .hi = a->n_slots};
    attend(&st);
    for (int qi = 0; qi < nq; qi++) {
        float inv = st.run_sum[qi] > 0.0f ? 1.0f / st.run_sum[qi] : 0.0f;
        float *acc = query_acc(&st, qi);
        for (int d = 0; d < D; d++) acc[d] *= inv;
    }
}

void gw_attention_partial(const gw_attention_args *a, int32_t s0, int32_t s1, float *acc, float *mx,
                          float *sum) {
    attn_state st = {.a = a, .acc = acc, .acc_stride = 0, .run_max = mx, .run_sum = sum, .lo = s0,
                     .hi = NULL, .hi_one = s1};
    attend(&st);
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

/* ------------------------------------------------ probabilities (scoring) */

/* Raw scores of the group's queries against slots [s, s + n) of one tile,
 * into sc[g * stride + s + j]. */
static void probs_chunk_scalar(const gw_attention_args *a, const uint16_t *kt, int32_t s, int off, int n,
                               float *sc, size_t stride) {
    const gw_kv_pool *kv = a->kv;
    const int D = kv->head_dim;
    for (int g = 0; g < a->group; g++) {
        const float *q = a->q + (size_t)g * D;
        for (int j = 0; j < n; j++) {
            float dot = 0.0f;
            for (int d = 0; d < D; d++) dot += q[d] * gw_fp16_to_fp32(kt[gw_kv_k_index(kv, off + j, d)]);
            sc[(size_t)g * stride + s + j] = dot * a->scale;
        }
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void probs_chunk_avx512(
    const gw_attention_args *a, const uint16_t *kt, int32_t s, int off, int n, float *sc, size_t stride) {
    const gw_kv_pool *kv = a->kv;
    const int D = kv->head_dim, BS = kv->block_size;
    const __mmask16 mask = (__mmask16)((1u << n) - 1);
    for (int g = 0; g < a->group; g++) {
        const float *q = a->q + (size_t)g * D;
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        int d = 0;
        for (; d + 2 <= D; d += 2) {
            acc0 = _mm512_fmadd_ps(_mm512_set1_ps(q[d]),
                                   _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, kt + (size_t)d * BS + off)), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_set1_ps(q[d + 1]),
                                   _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, kt + (size_t)(d + 1) * BS + off)),
                                   acc1);
        }
        for (; d < D; d++)
            acc0 = _mm512_fmadd_ps(_mm512_set1_ps(q[d]),
                                   _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, kt + (size_t)d * BS + off)), acc0);
        __m512 r = _mm512_mul_ps(_mm512_add_ps(acc0, acc1), _mm512_set1_ps(a->scale));
        _mm512_mask_storeu_ps(sc + (size_t)g * stride + s, mask, r);
    }
}
#endif

void gw_attention_probs_add(const gw_attention_args *a, float *probs, float *score) {
    const gw_kv_pool *kv = a->kv;
    const int BS = kv->block_size, G = a->group;
    const int32_t end = a->n_slots[0];
    if (end <= 0) return;
    const size_t stride = (size_t)end;
    bool fast = false;
#if defined(__x86_64__)
    fast = chunk_kernel != chunk_scalar && strcmp(gw_quant_isa_name(), "avx512") == 0;
#endif
    for (int32_t s = 0; s < end;) {
        const int off = s % BS, n = chunk_len(BS, s, end);
        const uint16_t *kt, *vt;
        chunk_tiles(a, a->blocks[s / BS], off, n, &kt, &vt);
#if defined(__x86_64__)
        if (fast) probs_chunk_avx512(a, kt, s, off, n, probs, stride);
        else
#endif
            probs_chunk_scalar(a, kt, s, off, n, probs, stride);
        s += n;
    }
    for (int g = 0; g < G; g++) {
        float *row = probs + (size_t)g * stride;
        float mx = -INFINITY;
        for (int32_t j = 0; j < end; j++) mx = row[j] > mx ? row[j] : mx;
        double sum = 0;
        for (int32_t j = 0; j < end; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        const float inv = (float)(1.0 / sum);
        for (int32_t j = 0; j < end; j++) score[j] += row[j] * inv;
    }
}
