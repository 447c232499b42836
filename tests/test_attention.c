/* Attention over paged KV against a double-precision reference: several
 * head sizes, GQA group sizes, block sizes (including ones that are not a
 * multiple of the 16-slot chunk), sequence lengths, scattered block tables,
 * split ranges merged, prefill tiles of several causal tokens, and both the
 * portable and the SIMD kernels. */
#include "backend/cpu/attention.h"
#include "backend/cpu/quant.h"
#include "kv/kv_cache.h"
#include "test.h"

static uint64_t rng = 12345;
static float frand(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) / 16777216.0) * 2.0f - 1.0f;
}

/* n_tok > 1: a prefill tile of n_tok tokens, token i seeing the first
 * n_slots - (n_tok - 1 - i) slots (causal); only with n_split == 1. */
static double run_case(int D, int G, int BS, int n_slots, int n_split, int n_tok) {
    gw_kv_pool kv;
    const int layers = 2, heads = 2, layer = 1, head = 1;
    int32_t n_blocks = (n_slots + BS - 1) / BS + 3;
    CHECK(gw_kv_pool_init(&kv, layers, heads, D, BS, n_blocks) == 0);
    /* a scattered block table: reverse order */
    int32_t *table = malloc(sizeof(int32_t) * n_blocks);
    for (int i = 0; i < n_blocks; i++) table[i] = n_blocks - 1 - i;
    float *K = malloc(sizeof(float) * n_slots * D), *V = malloc(sizeof(float) * n_slots * D);
    for (int s = 0; s < n_slots; s++) {
        for (int d = 0; d < D; d++) {
            /* round through fp16 so the reference sees what the cache holds */
            K[s * D + d] = gw_fp16_to_fp32(gw_fp32_to_fp16(frand() * 3.0f));
            V[s * D + d] = gw_fp16_to_fp32(gw_fp32_to_fp16(frand()));
        }
        gw_kv_store(&kv, table[s / BS], layer, head, s % BS, K + s * D, V + s * D);
    }
    const int NQ = n_tok * G;
    float *q = malloc(sizeof(float) * NQ * D), *out = malloc(sizeof(float) * NQ * D);
    for (int i = 0; i < NQ * D; i++) q[i] = frand();
    float *scratch = malloc(sizeof(float) * gw_attention_scratch_floats(G, D, BS));
    int32_t visible[GW_ATTN_MAX_TILE];
    for (int i = 0; i < n_tok; i++) visible[i] = n_slots - (n_tok - 1 - i);
    gw_attention_args a = {.kv = &kv, .blocks = table, .layer = layer, .kv_head = head, .group = G,
                           .n_tok = n_tok, .n_slots = visible, .q = q, .q_stride = (size_t)G * D, .out = out,
                           .out_stride = (size_t)G * D,
                           .scale = 1.0f / sqrtf((float)D), .scratch = scratch};
    if (n_split == 1) {
        gw_attention(&a);
    } else {
        size_t pf = (size_t)G * D + 2 * G;
        float *parts = malloc(sizeof(float) * pf * n_split);
        int per = (n_slots + n_split - 1) / n_split;
        for (int p = 0; p < n_split; p++) {
            int s0 = p * per, s1 = s0 + per < n_slots ? s0 + per : n_slots;
            float *part = parts + p * pf;
            if (s0 >= s1) {
                for (int g = 0; g < G; g++) part[G * D + g] = -INFINITY, part[G * D + G + g] = 0;
                continue;
            }
            gw_attention_partial(&a, s0, s1, part, part + G * D, part + G * D + G);
        }
        gw_attention_merge(G, D, parts, n_split, pf, out);
        free(parts);
    }
    double worst = 0;
    double *w = malloc(sizeof(double) * n_slots);
    for (int g = 0; g < NQ; g++) {
        int vis = visible[g / G];
        double mx = -1e300, sum = 0;
        for (int s = 0; s < vis; s++) {
            double dot = 0;
            for (int d = 0; d < D; d++) dot += (double)q[g * D + d] * K[s * D + d];
            w[s] = dot / sqrt((double)D);
            if (w[s] > mx) mx = w[s];
        }
        for (int s = 0; s < vis; s++) sum += (w[s] = exp(w[s] - mx));
        for (int d = 0; d < D; d++) {
            double o = 0;
            for (int s = 0; s < vis; s++) o += w[s] * V[s * D + d];
            o /= sum;
            double e = fabs(o - out[g * D + d]);
            if (e > worst) worst = e;
        }
    }
    free(w);
    free(K);
    free(V);
    free(q);
    free(out);
    free(scratch);
    free(table);
    gw_kv_pool_free(&kv);
    return worst;
}

int main(void) {
    const int dims[] = {64, 128, 80};
    const int groups[] = {1, 3, 4, 7};
    const int blocks[] = {16, 5, 256, 32};
    const int lens[] = {1, 15, 16, 17, 100, 777};
    const int splits[] = {1, 3};
    const int tiles[] = {1, 2, 5, GW_ATTN_MAX_TILE};
    for (int scalar = 0; scalar <= 1; scalar++) {
        gw_attention_force_scalar(scalar);
        double worst = 0;
        int cases = 0;
        for (size_t di = 0; di < 3; di++)
            for (size_t gi = 0; gi < 4; gi++)
                for (size_t bi = 0; bi < 4; bi++)
                    for (size_t li = 0; li < 6; li++)
                        for (size_t si = 0; si < 2 + 4; si++) {
                            /* the first two: one token, 1 or 3 splits; then tiles of tokens */
                            int split = si < 2 ? splits[si] : 1, n_tok = si < 2 ? 1 : tiles[si - 2];
                            if (n_tok > lens[li]) continue;
                            double e = run_case(dims[di], groups[gi], blocks[bi], lens[li], split, n_tok);
                            CHECK_MSG(e < 2e-5, "D=%d G=%d BS=%d n=%d split=%d tile=%d: max err %g", dims[di],
                                      groups[gi], blocks[bi], lens[li], split, n_tok, e);
                            if (e > worst) worst = e;
                            cases++;
                        }
        printf("%s kernel: %d cases, max |error| %.3g\n", scalar ? "scalar" : "best", cases, worst);
    }
    return test_finish("test_attention");
}
