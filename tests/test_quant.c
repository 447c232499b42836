/* Quantized math: conversions and dequantization bit-exact against gguf-py
 * golden files (scripts/make_quant_golden.py), reference quantizers, SIMD
 * quantizers bit-exact against scalar, and gw_matmul on every ISA this CPU has
 * against a double-precision dot of dequantized operands. */
#include "test.h"

#include <pthread.h>
#include <stdint.h>

#include "backend/cpu/quant.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}
static float rnd_unit(void) { return (float)(rnd_u32() & 0xFFFFFF) / 16777216.0f; }
static float rnd_normal(void) {
    float s = 0;
    for (int i = 0; i < 6; i++) s += rnd_unit();
    return (s - 3.0f) * 1.41f;
}

static int isa_list(gw_isa *out) {
    int n = 0;
    gw_isa best = gw_quant_best_isa();
    for (int i = 0; i <= (int)best; i++) out[n++] = (gw_isa)i;
    return n;
}
static const char *isa_str(gw_isa i) { return i == GW_ISA_AVX512 ? "avx512" : i == GW_ISA_AVX2 ? "avx2" : "scalar"; }

/* ------------------------------------------------------------ fp16 / bf16 */

static void test_fp16(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = gw_fp16_to_fp32((uint16_t)h);
        uint16_t back = gw_fp32_to_fp16(f);
        if (isnan(f)) { if ((back & 0x7c00) != 0x7c00 || !(back & 0x3ff)) bad++; }
        else if (back != h) bad++;
    }
    CHECK_MSG(bad == 0, "%d fp16 values do not round-trip", bad);
    CHECK(gw_fp32_to_fp16(1.0f) == 0x3c00);
    CHECK(gw_fp32_to_fp16(65504.0f) == 0x7bff);
    CHECK(gw_fp32_to_fp16(65520.0f) == 0x7c00);
    CHECK(gw_fp32_to_fp16(-2.0f) == 0xc000);
    CHECK(gw_fp32_to_fp16(5.9604645e-8f) == 0x0001);
    CHECK(gw_fp32_to_fp16(2.9802322e-8f) == 0x0000);  /* exactly half the smallest: ties to even */
    CHECK(gw_fp32_to_fp16(8.940697e-8f) == 0x0002);   /* 1.5 ulp: ties to even (2) */
    CHECK(gw_fp16_to_fp32(0x3555) == 0x1.554p-2f);
    /* bf16 */
    CHECK(gw_fp32_to_bf16(1.0f) == 0x3f80);
    CHECK(gw_bf16_to_fp32(0x3f80) == 1.0f);
    CHECK(gw_fp32_to_bf16(0x1.01p0f) == 0x3f80);      /* tie -> even */
    CHECK(gw_fp32_to_bf16(0x1.03p0f) == 0x3f82);      /* tie -> even (up) */
    CHECK((gw_fp32_to_bf16(NAN) & 0x7fc0) == 0x7fc0);
}

/* ------------------------------------------------------------ golden files */

static void test_golden(const char *name, int quantizable) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/data/quant/%s.bin", name);
    FILE *f = fopen(test_path(rel), "rb");
    CHECK_MSG(f != NULL, "cannot open %s", rel);
    if (!f) return;
    uint32_t hdr[3];
    CHECK(fread(hdr, 4, 3, f) == 3);
    const uint32_t t = hdr[0], n = hdr[1], nbytes = hdr[2];
    float *x = malloc(n * 4), *y = malloc(n * 4), *got = malloc(n * 4);
    uint8_t *q = malloc(nbytes), *mine = malloc(nbytes);
    CHECK(fread(x, 4, n, f) == n);
    CHECK(fread(q, 1, nbytes, f) == nbytes);
    CHECK(fread(y, 4, n, f) == n);
    fclose(f);
    CHECK_MSG(gw_row_bytes(t, n) == nbytes, "%s: row bytes %zu vs %u", name, gw_row_bytes(t, n), nbytes);

    gw_dequantize_row(t, q, got, n);
    int bad = 0;
    for (uint32_t i = 0; i < n; i++)
        if (memcmp(&got[i], &y[i], 4) != 0) {
            if (bad++ < 3) fprintf(stderr, "%s dequant[%u]: got %.9g want %.9g\n", name, i, got[i], y[i]);
        }
    CHECK_MSG(bad == 0, "%s: %d dequantized values differ from gguf-py", name, bad);

    if (quantizable) {
        gw_isa isas[3];
        int ni = isa_list(isas);
        for (int ii = 0; ii < ni; ii++) {
            gw_quant_force_isa(isas[ii]);
            memset(mine, 0xAB, nbytes);
            gw_quantize_row(t, x, mine, n);
            int diff = 0;
            for (uint32_t i = 0; i < nbytes; i++) diff += mine[i] != q[i];
            CHECK_MSG(diff == 0, "%s (%s): %d quantized bytes differ from gguf-py", name, isa_str(isas[ii]), diff);
        }
        gw_quant_force_isa(gw_quant_best_isa());
    }
    free(x); free(y); free(got); free(q); free(mine);
}

/* --------------------------------------------- activation quantizers */

static void test_q8_quantizers(void) {
    enum { N = 1024 };
    float x[N];
    for (int i = 0; i < N; i++) x[i] = rnd_normal() * (i < 512 ? 1.0f : 1e-3f);
    /* exact .5 ties after scaling: amax 127 gives d = 1, id = 1 */
    for (int i = 0; i < 32; i++) x[i] = (i == 0) ? 127.0f : (float)(i - 16) + 0.5f;
    for (int i = 32; i < 64; i++) x[i] = 0.0f;                 /* zero block */
    x[300] = -1000.0f;                                         /* negative max */
    x[520] = 5.0f; x[530] = -5.0f;                             /* tie of magnitudes, Q8_K */
    for (int i = 512; i < 768; i++) if (i != 520 && i != 530) x[i] = rnd_normal();

    static const uint32_t types[3] = {GW_TYPE_Q8_0, GW_TYPE_Q8_1, GW_TYPE_Q8_K};
    for (int ti = 0; ti < 3; ti++) {
        const uint32_t t = types[ti];
        const size_t nb = gw_row_bytes(t, N);
        uint8_t *ref = malloc(nb), *simd = malloc(nb);
        gw_quant_force_isa(GW_ISA_SCALAR);
        gw_quantize_row(t, x, ref, N);
        gw_isa isas[3];
        int ni = isa_list(isas);
        for (int ii = 1; ii < ni; ii++) {
            gw_quant_force_isa(isas[ii]);
            memset(simd, 0xCD, nb);
            gw_quantize_row(t, x, simd, N);
            CHECK_MSG(memcmp(ref, simd, nb) == 0, "type %u: %s quantizer differs from scalar", t, isa_str(isas[ii]));
        }
        /* each quant is within half a step of the input, measured with the
         * unrounded step amax/127 (d itself is stored as fp16, which may be a
         * subnormal for tiny blocks); Q8_K uses its stored float d. */
        const int bsz = t == GW_TYPE_Q8_K ? 256 : 32;
        const size_t bbytes = t == GW_TYPE_Q8_K ? 292 : t == GW_TYPE_Q8_1 ? 36 : 34;
        const size_t qoff = t == GW_TYPE_Q8_K ? 4 : t == GW_TYPE_Q8_1 ? 4 : 2;
        int bad = 0;
        for (int b = 0; b < N / bsz; b++) {
            float amax = 0;
            for (int i = 0; i < bsz; i++) amax = fmaxf(amax, fabsf(x[b * bsz + i]));
            double d = amax / 127.0;
            if (t == GW_TYPE_Q8_K) { float df; memcpy(&df, ref + b * bbytes, 4); d = df; }
            for (int i = 0; i < bsz; i++) {
                const int q = (int8_t)ref[b * bbytes + qoff + i];
                if (fabs(q * d - x[b * bsz + i]) > fabs(d) * 0.5001) bad++;
            }
        }
        if (t == GW_TYPE_Q8_0) {
            /* round half away from zero: x = k + 0.5 -> k + 1 (k >= 0), x = -k - 0.5 -> -k - 1 */
            const int8_t *qs = (const int8_t *)(ref + 2);
            CHECK(qs[1] == -15);  /* -14.5 */
            CHECK(qs[17] == 2);   /* 1.5 */
            CHECK(qs[16] == 1);   /* 0.5 */
            CHECK(qs[15] == -1);  /* -0.5 */
        }
        if (t == GW_TYPE_Q8_1) {
            /* same d and qs as Q8_0, s = fp16(d * sum(qs)) */
            uint8_t *q0 = malloc(gw_row_bytes(GW_TYPE_Q8_0, N));
            gw_quant_force_isa(GW_ISA_SCALAR);
            gw_quantize_row(GW_TYPE_Q8_0, x, q0, N);
            int badb = 0;
            for (int b = 0; b < N / 32; b++) {
                const uint8_t *a = q0 + 34 * b, *c = ref + 36 * b;
                if (memcmp(a, c, 2) || memcmp(a + 2, c + 4, 32)) badb++;
                int sum = 0;
                for (int i = 0; i < 32; i++) sum += (int8_t)c[4 + i];
                uint16_t d, s;
                memcpy(&d, c, 2);
                memcpy(&s, c + 2, 2);
                /* s was rounded from the unrounded d: allow fp16 error of both */
                const float want = sum * gw_fp16_to_fp32(d);
                if (fabsf(gw_fp16_to_fp32(s) - want) > 2e-3f * fabsf(want) + 1e-7f)
                    badb++;
            }
            CHECK_MSG(badb == 0, "Q8_1: %d blocks inconsistent with Q8_0", badb);
            free(q0);
        }
        if (t == GW_TYPE_Q8_K) {
            int badb = 0;
            for (int b = 0; b < N / 256; b++) {
                const uint8_t *blk = ref + 292 * b;
                for (int g = 0; g < 16; g++) {
                    int sum = 0;
                    for (int i = 0; i < 16; i++) sum += (int8_t)blk[4 + 16 * g + i];
                    int16_t bs;
                    memcpy(&bs, blk + 260 + 2 * g, 2);
                    if (bs != sum) badb++;
                }
            }
            CHECK_MSG(badb == 0, "Q8_K: %d wrong bsums", badb);
            /* block 2 has +5 before -5: ggml keeps the first, so d < 0 and x=5 -> -127 */
            float d;
            memcpy(&d, ref + 2 * 292, 4);
            CHECK(d < 0);
            CHECK((int8_t)ref[2 * 292 + 4 + 8] == -127);
        }
        free(ref); free(simd);
    }
    gw_quant_force_isa(gw_quant_best_isa());
}

/* ------------------------------------------------------------ matmul */

typedef struct {
    uint32_t wt;
    int64_t k, m;
    size_t w_stride;
    uint8_t *W;
    double *Wd; /* dequantized, m x k */
} weights;

static void make_weights(weights *w, uint32_t wt, int64_t k, int64_t m) {
    w->wt = wt; w->k = k; w->m = m;
    w->w_stride = gw_row_bytes(wt, k) + 6; /* padded: rows are not block-aligned */
    w->W = calloc((size_t)m, w->w_stride);
    w->Wd = malloc(sizeof(double) * (size_t)(m * k));
    float *row = malloc(sizeof(float) * (size_t)k);
    for (int64_t r = 0; r < m; r++) {
        uint8_t *dst = w->W + r * w->w_stride;
        if (wt == GW_TYPE_Q4_K || wt == GW_TYPE_Q5_K || wt == GW_TYPE_Q6_K) {
            /* random but valid super-blocks with sane fp16 scales */
            const size_t nb = gw_row_bytes(wt, k);
            for (size_t i = 0; i < nb; i++) dst[i] = (uint8_t)rnd_u32();
            const size_t bs = wt == GW_TYPE_Q4_K ? 144 : wt == GW_TYPE_Q5_K ? 176 : 210;
            for (size_t b = 0; b < nb / bs; b++) {
                uint16_t d = gw_fp32_to_fp16(0.001f + 0.01f * rnd_unit());
                uint16_t dm = gw_fp32_to_fp16(0.001f + 0.01f * rnd_unit());
                if (wt == GW_TYPE_Q6_K) memcpy(dst + b * bs + 208, &d, 2);
                else { memcpy(dst + b * bs, &d, 2); memcpy(dst + b * bs + 2, &dm, 2); }
            }
        } else {
            for (int64_t i = 0; i < k; i++) row[i] = rnd_normal() * (1.0f + (float)(i % 7));
            if (r == 2) for (int64_t i = 0; i < k; i++) row[i] = 0; /* an all-zero row */
            gw_quantize_row(wt, row, dst, k);
        }
        gw_dequantize_row(wt, dst, row, k);
        for (int64_t i = 0; i < k; i++) w->Wd[r * k + i] = row[i];
    }
    free(row);
}

static void free_weights(weights *w) { free(w->W); free(w->Wd); }

static int check_matmul(const weights *w, int64_t n, int64_t r0, int64_t r1, const char *isa) {
    const uint32_t at = gw_vec_dot_type(w->wt);
    const int64_t k = w->k, m = w->m;
    const size_t x_stride = gw_row_bytes(at, k) + 10;
    uint8_t *X = calloc((size_t)n, x_stride);
    double *Xd = malloc(sizeof(double) * (size_t)(n * k));
    float *xf = malloc(sizeof(float) * (size_t)k);
    for (int64_t j = 0; j < n; j++) {
        for (int64_t i = 0; i < k; i++) xf[i] = rnd_normal() * (j % 3 == 2 ? 0.01f : 1.0f);
        gw_quantize_row(at, xf, X + j * x_stride, k);
        gw_dequantize_row(at, X + j * x_stride, xf, k);
        for (int64_t i = 0; i < k; i++) Xd[j * k + i] = xf[i];
    }
    const int64_t ldy = m + 3;
    float *Y = malloc(sizeof(float) * (size_t)(n * ldy));
    for (int64_t i = 0; i < n * ldy; i++) Y[i] = -12345.0f;
    gw_matmul(w->wt, w->W, w->w_stride, X, x_stride, k, r0, r1, n, Y, ldy);
    int bad = 0;
    for (int64_t j = 0; j < n; j++)
        for (int64_t r = 0; r < ldy; r++) {
            const float got = Y[j * ldy + r];
            if (r < r0 || r >= r1) {
                if (got != -12345.0f) { if (bad++ < 3) fprintf(stderr, "  wrote outside range: r=%ld j=%ld\n", (long)r, (long)j); }
                continue;
            }
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < k; i++) {
                ref += w->Wd[r * k + i] * Xd[j * k + i];
                mag += fabs(w->Wd[r * k + i] * Xd[j * k + i]);
            }
            if (!(fabs(got - ref) <= 2e-5 * mag + 1e-30)) {
                if (bad++ < 3)
                    fprintf(stderr, "  %s type %s k=%ld n=%ld r=%ld j=%ld: got %.8g want %.8g (mag %.3g)\n", isa,
                            gw_type_name(w->wt), (long)k, (long)n, (long)r, (long)j, got, ref, mag);
            }
        }
    free(X); free(Xd); free(xf); free(Y);
    return bad;
}

static void test_matmul(void) {
    static const uint32_t types[] = {GW_TYPE_Q4_1, GW_TYPE_Q8_0, GW_TYPE_Q4_0, GW_TYPE_Q5_0, GW_TYPE_Q5_1,
                                     GW_TYPE_Q4_K, GW_TYPE_Q5_K, GW_TYPE_Q6_K, GW_TYPE_F32, GW_TYPE_F16,
                                     GW_TYPE_BF16};
    static const int64_t ns[] = {1, 2, 3, 4, 5, 7, 8, 16, 33};
    gw_isa isas[3];
    const int ni = isa_list(isas);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t wt = types[ti];
        const int kq = wt == GW_TYPE_Q4_K || wt == GW_TYPE_Q5_K || wt == GW_TYPE_Q6_K;
        const int fl = wt == GW_TYPE_F32 || wt == GW_TYPE_F16 || wt == GW_TYPE_BF16;
        const int64_t ks[2] = {kq ? 512 : 576, kq ? 256 : fl ? 83 : 96};
        for (int ki = 0; ki < 2; ki++) {
            weights w;
            gw_quant_force_isa(GW_ISA_SCALAR);
            make_weights(&w, wt, ks[ki], 37);
            for (int ii = 0; ii < ni; ii++) {
                gw_quant_force_isa(isas[ii]);
                CHECK(strcmp(gw_quant_isa_name(), isa_str(isas[ii])) == 0);
                for (size_t nj = 0; nj < sizeof ns / sizeof ns[0]; nj++) {
                    const int64_t n = ns[nj];
                    int bad = check_matmul(&w, n, 3, 34, isa_str(isas[ii]));
                    bad += check_matmul(&w, n, 0, 37, isa_str(isas[ii]));
                    bad += check_matmul(&w, n, 17, 18, isa_str(isas[ii]));
                    CHECK_MSG(bad == 0, "matmul %s %s k=%ld n=%ld: %d bad values", isa_str(isas[ii]),
                              gw_type_name(wt), (long)ks[ki], (long)n, bad);
                }
            }
            /* a prefill longer than the kernels' 512-token chunk */
            if (ki == 0 && (wt == GW_TYPE_Q4_1 || wt == GW_TYPE_Q6_K || wt == GW_TYPE_Q8_0)) {
                for (int ii = 0; ii < ni; ii++) {
                    gw_quant_force_isa(isas[ii]);
                    const int bad = check_matmul(&w, 520, 5, 37, isa_str(isas[ii]));
                    CHECK_MSG(bad == 0, "matmul %s %s n=520: %d bad values", isa_str(isas[ii]), gw_type_name(wt), bad);
                }
            }
            free_weights(&w);
        }
    }
    gw_quant_force_isa(gw_quant_best_isa());
}

/* Two threads share one weight matrix, each doing half the rows, while the
 * main thread checks against a single-threaded run. */
typedef struct {
    const weights *w;
    const uint8_t *X;
    size_t x_stride;
    int64_t n, r0, r1, ldy;
    float *Y;
} mm_job;

static void *mm_thread(void *arg) {
    mm_job *j = (mm_job *)arg;
    for (int rep = 0; rep < 3; rep++)
        gw_matmul(j->w->wt, j->w->W, j->w->w_stride, j->X, j->x_stride, j->w->k, j->r0, j->r1, j->n, j->Y, j->ldy);
    return NULL;
}

static void test_threads(void) {
    weights w;
    make_weights(&w, GW_TYPE_Q4_1, 576, 100);
    const int64_t n = 40, k = 576, ldy = 100;
    const size_t xs = gw_row_bytes(GW_TYPE_Q8_1, k);
    uint8_t *X = malloc((size_t)n * xs);
    float xf[576];
    for (int64_t j = 0; j < n; j++) {
        for (int i = 0; i < 576; i++) xf[i] = rnd_normal();
        gw_quantize_row(GW_TYPE_Q8_1, xf, X + j * xs, k);
    }
    float *Y1 = calloc((size_t)(n * ldy), 4), *Y2 = calloc((size_t)(n * ldy), 4);
    gw_matmul(GW_TYPE_Q4_1, w.W, w.w_stride, X, xs, k, 0, 100, n, Y1, ldy);
    pthread_t th[2];
    mm_job jobs[2] = {{&w, X, xs, n, 0, 48, ldy, Y2}, {&w, X, xs, n, 48, 100, ldy, Y2}};
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, mm_thread, &jobs[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    CHECK_MSG(memcmp(Y1, Y2, sizeof(float) * (size_t)(n * ldy)) == 0, "threaded matmul differs");
    free(X); free(Y1); free(Y2);
    free_weights(&w);
}

int main(void) {
    printf("quant ISA: %s (best %s)\n", gw_quant_isa_name(), isa_str(gw_quant_best_isa()));
    test_fp16();
    test_golden("f16", 1);
    test_golden("bf16", 1);
    test_golden("q4_0", 1);
    test_golden("q4_1", 1);
    test_golden("q5_0", 1);
    test_golden("q5_1", 1);
    test_golden("q8_0", 1);
    test_golden("q4_k", 0);
    test_golden("q5_k", 0);
    test_golden("q6_k", 0);
    CHECK(gw_vec_dot_type(GW_TYPE_Q4_1) == GW_TYPE_Q8_1);
    CHECK(gw_vec_dot_type(GW_TYPE_Q8_0) == GW_TYPE_Q8_0);
    CHECK(gw_vec_dot_type(GW_TYPE_Q6_K) == GW_TYPE_Q8_K);
    CHECK(gw_vec_dot_type(GW_TYPE_BF16) == GW_TYPE_F32);
    test_q8_quantizers();
    test_matmul();
    test_threads();
    return test_finish("test_quant");
}
