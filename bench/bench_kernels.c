/* bench_kernels: GFLOP/s of gw_matmul per ISA and activation precision (int8
 * = Q8_0/Q8_1/Q8_K, int16 = Q16) for the matrix shapes of SmolLM2-135M
 * (hidden 576, ffn 1536, kv 192, vocab 49152), decode (n=1) and prefill
 * (n=512), single thread and T threads; plus a whole-model decode sweep (30
 * layers of distinct weights + Q8_0 output head, as one token of generation
 * reads them) reporting tokens/s and the weight bytes/s it implies. Each
 * figure is the best of repeated runs over 0.4 s. Not a test.
 *
 *   gcc -std=c17 -O3 -march=native -D_GNU_SOURCE -Isrc bench/bench_kernels.c \
 *       src/model/tensor_types.c src/backend/cpu/quant*.c -lm -lpthread -o build/bench_kernels
 *   ./build/bench_kernels [threads=2] [weight type=Q4_1|Q4_0|Q5_0|Q5_1|Q8_0|Q4_K|Q5_K|Q6_K|F16|BF16|F32]
 *                         [isa=all|scalar|avx2|avx512] [act=both|int8|int16] [sweep=1|0]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/quant.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rs = 88172645463325252ull;
static float rndf(void) {
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return (float)((rs >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

typedef struct {
    uint32_t wt;
    const void *W;
    size_t ws;
    const void *X;
    size_t xs;
    int64_t k, m, n;
    float *Y;
} job;

/* Persistent spinning pool, like an inference engine's: workers wait on a
 * generation counter so a matmul costs no thread start-up. */
static int g_nt = 1;
static job g_job;
static _Atomic int g_gen, g_done, g_quit;
static pthread_t g_th[64];

static void do_part(int t, int nt) {
    const int64_t m = g_job.m;
    const int64_t per = ((m + nt - 1) / nt + 15) / 16 * 16;
    const int64_t r0 = t * per, r1 = r0 + per < m ? r0 + per : m;
    if (r0 < r1) gw_matmul(g_job.wt, g_job.W, g_job.ws, g_job.X, g_job.xs, g_job.k, r0, r1, g_job.n, g_job.Y, m);
}

static void *worker(void *arg) {
    const int t = (int)(intptr_t)arg;
    int seen = 0;
    for (;;) {
        int g;
        while ((g = g_gen) == seen && !g_quit) __builtin_ia32_pause();
        if (g_quit) return NULL;
        seen = g;
        do_part(t, g_nt);
        g_done++;
    }
}

static void pool_start(int nt) {
    g_nt = nt;
    for (int t = 1; t < nt; t++) pthread_create(&g_th[t], NULL, worker, (void *)(intptr_t)t);
}

static void pool_stop(void) {
    g_quit = 1;
    for (int t = 1; t < g_nt; t++) pthread_join(g_th[t], NULL);
}

/* One matmul over all m rows split across the pool's threads (rows rounded to 16). */
static void matmul_mt(int nt, uint32_t wt, const void *W, size_t ws, const void *X, size_t xs, int64_t k,
                      int64_t m, int64_t n, float *Y) {
    if (nt == 1) {
        gw_matmul(wt, W, ws, X, xs, k, 0, m, n, Y, m);
        return;
    }
    g_job = (job){wt, W, ws, X, xs, k, m, n, Y};
    g_done = 0;
    g_gen++;
    do_part(0, nt);
    while (g_done != nt - 1) __builtin_ia32_pause();
}

static void *make_w(uint32_t wt, int64_t m, int64_t k) {
    const size_t rb = gw_row_bytes(wt, k);
    uint8_t *W = malloc(rb * (size_t)m);
    float *row = malloc(sizeof(float) * (size_t)k);
    for (int64_t r = 0; r < m; r++) {
        for (int64_t i = 0; i < k; i++) row[i] = rndf();
        if (wt == GW_TYPE_Q4_K || wt == GW_TYPE_Q5_K || wt == GW_TYPE_Q6_K) {
            /* no K-quant quantizer: random bytes with sane fp16 scales */
            for (size_t i = 0; i < rb; i++) W[r * rb + i] = (uint8_t)(rndf() * 127 + 128);
            const size_t bs = wt == GW_TYPE_Q4_K ? 144 : wt == GW_TYPE_Q5_K ? 176 : 210;
            for (size_t b = 0; b < rb / bs; b++) {
                uint16_t d = gw_fp32_to_fp16(0.01f);
                memcpy(W + r * rb + b * bs + (wt == GW_TYPE_Q6_K ? 208 : 0), &d, 2);
            }
        } else {
            gw_quantize_row(wt, row, W + r * rb, k);
        }
    }
    free(row);
    return W;
}

static void *make_x(uint32_t wt, int64_t n, int64_t k, size_t *xs) {
    const uint32_t at = gw_vec_dot_type(wt);
    *xs = gw_row_bytes(at, k);
    uint8_t *X = malloc(*xs * (size_t)n);
    float *row = malloc(sizeof(float) * (size_t)k);
    for (int64_t j = 0; j < n; j++) {
        for (int64_t i = 0; i < k; i++) row[i] = rndf();
        gw_quantize_row(at, row, X + j * *xs, k);
    }
    free(row);
    return X;
}

static double bench_shape(int nt, uint32_t wt, int64_t m, int64_t k, int64_t n) {
    void *W = make_w(wt, m, k);
    size_t xs;
    void *X = make_x(wt, n, k, &xs);
    float *Y = malloc(sizeof(float) * (size_t)(m * n));
    matmul_mt(nt, wt, W, gw_row_bytes(wt, k), X, xs, k, m, n, Y); /* warm up */
    double best = 1e30;
    double t_end = now() + 0.4;
    int reps = 0;
    while (reps < 3 || now() < t_end) {
        double t0 = now();
        matmul_mt(nt, wt, W, gw_row_bytes(wt, k), X, xs, k, m, n, Y);
        double dt = now() - t0;
        if (dt < best) best = dt;
        reps++;
    }
    free(W); free(X); free(Y);
    return 2.0 * m * k * n / best * 1e-9;
}

/* One generated token of SmolLM2-135M: every layer's 7 matrices (distinct
 * buffers, so they stream from DRAM like the real model) plus the output head. */
static void bench_model_decode(int nt, uint32_t wt) {
    enum { L = 30 };
    static const int64_t shp[7][2] = {{576, 576}, {192, 576}, {192, 576}, {576, 576},
                                      {1536, 576}, {1536, 576}, {576, 1536}};
    void *W[L][7];
    size_t bytes = 0;
    for (int l = 0; l < L; l++)
        for (int i = 0; i < 7; i++) {
            W[l][i] = make_w(wt, shp[i][0], shp[i][1]);
            bytes += gw_row_bytes(wt, shp[i][1]) * shp[i][0];
        }
    void *Wout = make_w(GW_TYPE_Q8_0, 49152, 576);
    bytes += gw_row_bytes(GW_TYPE_Q8_0, 576) * 49152;
    size_t xs576, xs1536, xso;
    void *x576 = make_x(wt, 1, 576, &xs576), *x1536 = make_x(wt, 1, 1536, &xs1536);
    void *xo = make_x(GW_TYPE_Q8_0, 1, 576, &xso);
    float *Y = malloc(sizeof(float) * 49152);
    double best = 1e30;
    for (int rep = 0; rep < 8; rep++) {
        double t0 = now();
        for (int l = 0; l < L; l++)
            for (int i = 0; i < 7; i++)
                matmul_mt(nt, wt, W[l][i], gw_row_bytes(wt, shp[i][1]), shp[i][1] == 576 ? x576 : x1536,
                          shp[i][1] == 576 ? xs576 : xs1536, shp[i][1], shp[i][0], 1, Y);
        matmul_mt(nt, GW_TYPE_Q8_0, Wout, gw_row_bytes(GW_TYPE_Q8_0, 576), xo, xso, 576, 49152, 1, Y);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    printf("  model decode sweep (%s layers + Q8_0 head, %.1f MB): %.2f ms/token = %.1f tok/s, %.1f GB/s\n",
           gw_type_name(wt), bytes / 1e6, best * 1e3, 1 / best, bytes / best / 1e9);
    for (int l = 0; l < L; l++)
        for (int i = 0; i < 7; i++) free(W[l][i]);
    free(Wout); free(x576); free(x1536); free(xo); free(Y);
}

static uint32_t type_by_name(const char *s) {
    for (uint32_t t = 0; t < GW_TYPE_COUNT; t++)
        if (gw_type_info(t) && !strcmp(gw_type_name(t), s)) return t;
    fprintf(stderr, "unknown type %s\n", s);
    exit(2);
}

int main(int argc, char **argv) {
    const int nt = argc > 1 ? atoi(argv[1]) : 2;
    const uint32_t wt = argc > 2 ? type_by_name(argv[2]) : GW_TYPE_Q4_1;
    pool_start(nt);
    const int only = argc > 3 && strcmp(argv[3], "all")
                         ? (!strcmp(argv[3], "scalar") ? 0 : !strcmp(argv[3], "avx2") ? 1 : 2)
                         : -1;
    const char *act = argc > 4 ? argv[4] : "both";
    const int sweep = argc > 5 ? atoi(argv[5]) : 1;
    gw_act_precision precs[2];
    int nprec = 0;
    if (strcmp(act, "int16")) precs[nprec++] = GW_ACT_INT8;
    if (strcmp(act, "int8")) precs[nprec++] = GW_ACT_INT16;
    const int kq = wt == GW_TYPE_Q4_K || wt == GW_TYPE_Q5_K || wt == GW_TYPE_Q6_K;
    /* float weights take F32 activations whatever the precision setting: one
     * pass, and the output head in the same type at n=512 (tied embeddings) */
    const int fl = wt == GW_TYPE_F32 || wt == GW_TYPE_F16 || wt == GW_TYPE_BF16;
    if (fl) nprec = 1;
    const int64_t nbig = fl ? 512 : 64;
    /* K-quants need k % 256 == 0: use 768/2048 stand-ins for 576/1536 */
    const int64_t H = kq ? 768 : 576, F = kq ? 2048 : 1536;
    const struct { const char *name; uint32_t t; int64_t m, k; } shapes[] = {
        {"attn q/o  576x576 ", wt, H, H},
        {"attn k/v  192x576 ", wt, 192, H},
        {"ffn up   1536x576 ", wt, F, H},
        {"ffn down  576x1536", wt, H, F},
        {fl ? "output 49152x576" : "output 49152x576 Q8_0", fl ? wt : GW_TYPE_Q8_0, 49152, 576},
    };
    for (int isa = (int)gw_quant_best_isa(); isa >= 0; isa--) {
        if (only >= 0 && isa != only) continue;
        gw_quant_force_isa((gw_isa)isa);
        for (int pi = 0; pi < nprec; pi++) {
            gw_quant_set_activation_precision(precs[pi]);
            printf("ISA %s, weights %s, %s activations (%s)%s\n", gw_quant_isa_name(), gw_type_name(wt),
                   precs[pi] == GW_ACT_INT16 ? "int16" : "int8", gw_type_name(gw_vec_dot_type(wt)),
                   kq ? " (shapes 768/2048: K-quants need k % 256 == 0)" : "");
            printf("  %-22s %12s %12s %12s %12s\n", "shape", "n=1 1T", "n=1 ", "n=512 1T", "n=512 ");
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                double g[4];
                g[0] = bench_shape(1, shapes[s].t, shapes[s].m, shapes[s].k, 1);
                g[1] = nt > 1 ? bench_shape(nt, shapes[s].t, shapes[s].m, shapes[s].k, 1) : g[0];
                g[2] = bench_shape(1, shapes[s].t, shapes[s].m, shapes[s].k, shapes[s].m > 4096 ? nbig : 512);
                g[3] = nt > 1 ? bench_shape(nt, shapes[s].t, shapes[s].m, shapes[s].k, shapes[s].m > 4096 ? nbig : 512)
                              : g[2];
                printf("  %-22s %9.1f GF %9.1f GF %9.1f GF %9.1f GF%s\n", shapes[s].name, g[0], g[1], g[2], g[3],
                       shapes[s].m > 4096 && nbig != 512 ? "  (n=64)" : "");
            }
            printf("  (columns: 1 thread, then %d threads; GFLOP/s = 2*m*k*n/time)\n", nt);
            if (!kq && sweep) {
                bench_model_decode(1, wt);
                if (nt > 1) bench_model_decode(nt, wt);
            }
        }
    }
    pool_stop();
    return 0;
}
