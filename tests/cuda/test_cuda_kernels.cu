/* test_cuda_kernels: every CUDA kernel of src/backend/cuda against a plain CPU
 * reference computed here (double precision; the repository's scalar
 * dequantization, gw_dequantize_row, for the block formats). One line per
 * check, then "N passed, N failed".
 *
 * First, host checks that need no GPU: the per-format item decoding of
 * quant_decode.cuh (the index math and bit tricks the GEMV, dequantize and
 * embed kernels run) compiled for the CPU and compared value for value with
 * gw_dequantize_row, and the GEMV's factored scale/min arithmetic. Then, if a
 * GPU is present, the kernels. Without a GPU: exit 77 ("no CUDA device,
 * skipped", CTest's skip code) unless a host check failed (exit 1).
 *
 * Inputs are random, drawn fresh each run (the seed is printed; --seed N
 * repeats a run); outputs are poisoned (NaN bytes) before every launch so an
 * element the kernel did not write fails. Tolerances are those of the
 * arithmetic: f32 accumulation for the GEMV/GEMM, bf16 operands (P and the
 * output rounded to bf16) for attention.
 *
 *   test_cuda_kernels [--small] [--seed N] [--only SUBSTRING]
 * --small: reduced sizes (for compute-sanitizer). */
#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <vector>

extern "C" {
#include "backend/cpu/quant.h"
#include "model/tensor_types.h"
}
#include "backend/cuda/attention_frag.cuh"
#include "backend/cuda/gw_cuda.h"
#include "backend/cuda/kv_quant.cuh"
#include "backend/cuda/quant_decode.cuh"

/* ------------------------------------------------------------------ harness */

static int g_pass, g_fail;
static bool g_small;
static const char *g_only;

static void result(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void result(bool ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "PASS" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    (ok ? g_pass : g_fail)++;
}

static bool selected(const char *name) { return !g_only || strstr(name, g_only); }

static void finish_and_exit(int code) {
    printf("%d passed, %d failed\n", g_pass, g_fail);
    exit(code);
}

#define CK(call)                                                                                               \
    do {                                                                                                       \
        cudaError_t e_ = (call);                                                                               \
        if (e_ != cudaSuccess) {                                                                               \
            result(false, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(e_));                  \
            finish_and_exit(1);                                                                                \
        }                                                                                                      \
    } while (0)

/* A failing gw_cuda_* call ends the check with its message. */
#define GW(call, name)                                                                                         \
    do {                                                                                                       \
        int rc_ = (call);                                                                                      \
        if (rc_ == 0) rc_ = gw_cuda_sync(NULL);                                                                \
        if (rc_ != 0) {                                                                                        \
            result(false, "%s: %s returned %d: %s", name, #call, rc_, gw_cuda_last_error());                     \
            return;                                                                                            \
        }                                                                                                      \
    } while (0)

/* splitmix64 */
static uint64_t g_rng;
static uint64_t rnd64(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rndu(void) { return (float)((rnd64() >> 40) * (1.0 / 8388608.0) - 1.0); } /* [-1, 1) */
static int rndi(int n) { return (int)(rnd64() % (uint64_t)n); }

static uint16_t f2bf(float f) { return gw_fp32_to_bf16(f); }
static float bf2f(uint16_t h) { return gw_bf16_to_fp32(h); }
static float round_bf(float f) { return bf2f(f2bf(f)); }

/* Device buffer. */
struct Dev {
    void *p = nullptr;
    size_t bytes = 0;
    explicit Dev(size_t b) : bytes(b) {
        if (gw_cuda_malloc(&p, b ? b : 16) != 0) {
            result(false, "allocation: %s", gw_cuda_last_error());
            finish_and_exit(1);
        }
    }
    ~Dev() { cudaFree(p); }
    Dev(Dev &&o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; }
    Dev(const Dev &) = delete;
    Dev &operator=(const Dev &) = delete;
    template <class T> T *as() const { return (T *)p; }
    void up(const void *h) { CK(cudaMemcpy(p, h, bytes, cudaMemcpyHostToDevice)); }
    void down(void *h) const { CK(cudaMemcpy(h, p, bytes, cudaMemcpyDeviceToHost)); }
    void poison() { CK(cudaMemset(p, 0xFF, bytes)); } /* NaN as f32 and as bf16 */
};
template <class T> static Dev upload(const std::vector<T> &v) {
    Dev d(v.size() * sizeof(T));
    d.up(v.data());
    return d;
}

/* Element-wise comparison: |got - ref| <= atol + rtol * |ref|. */
struct Cmp {
    double atol, rtol;
    double max_err = 0, max_ref = 0, sq_err = 0, sq_ref = 0;
    long long n = 0, bad = 0, first_bad = -1;
    double first_got = 0, first_ref = 0;
    Cmp(double a, double r) : atol(a), rtol(r) {}
    void add(double got, double ref, double tol_scale = -1) {
        const double err = fabs(got - ref);
        const double tol = tol_scale >= 0 ? tol_scale : atol + rtol * fabs(ref);
        if (!(err <= tol)) { /* NaN fails */
            if (bad == 0) first_bad = n, first_got = got, first_ref = ref;
            bad++;
        }
        if (err > max_err || err != err) max_err = err;
        if (fabs(ref) > max_ref) max_ref = fabs(ref);
        sq_err += err * err;
        sq_ref += ref * ref;
        n++;
    }
    void report(const char *what) {
        const double rel = sq_ref > 0 ? sqrt(sq_err / sq_ref) : sqrt(sq_err);
        if (bad)
            result(false, "%s: %lld of %lld out of tolerance (first #%lld: got %.6g want %.6g), max |err| %.3g, rel l2 %.3g",
                   what, bad, n, first_bad, first_got, first_ref, max_err, rel);
        else
            result(true, "%s: max |err| %.3g (max |ref| %.3g), rel l2 %.3g, %lld values", what, max_err, max_ref, rel,
                   n);
    }
};

/* --------------------------------------------------------------- weights */

static const uint32_t k_types[] = {GW_TYPE_F32,  GW_TYPE_F16,  GW_TYPE_BF16, GW_TYPE_Q4_0,
                                   GW_TYPE_Q4_1, GW_TYPE_Q5_0, GW_TYPE_Q5_1, GW_TYPE_Q8_0,
                                   GW_TYPE_Q4_K, GW_TYPE_Q5_K, GW_TYPE_Q6_K};

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static float rnd_scale(void) { return (0.002f + 0.02f * fabsf(rndu())) * (rndu() < 0 ? -1.0f : 1.0f); }

/* A random row of `cols` elements of type t: random quant bytes, valid
 * (finite) fp16 scale fields. */
static void fill_row(uint32_t t, uint8_t *row, int64_t cols) {
    const int be = gwq::block_elems(t), bb = gwq::block_bytes(t);
    const int64_t nb = cols / be;
    for (int64_t i = 0; i < nb * bb; i++) row[i] = (uint8_t)rnd64();
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *p = row + b * bb;
        switch (t) {
        case GW_TYPE_F32: { float f = rndu(); memcpy(p, &f, 4); break; }
        case GW_TYPE_F16: put16(p, gw_fp32_to_fp16(rndu())); break;
        case GW_TYPE_BF16: put16(p, gw_fp32_to_bf16(rndu())); break;
        case GW_TYPE_Q4_0: case GW_TYPE_Q5_0: case GW_TYPE_Q8_0: put16(p, gw_fp32_to_fp16(rnd_scale())); break;
        case GW_TYPE_Q4_1: case GW_TYPE_Q5_1:
            put16(p, gw_fp32_to_fp16(fabsf(rnd_scale())));
            put16(p + 2, gw_fp32_to_fp16(0.1f * rndu()));
            break;
        case GW_TYPE_Q4_K: case GW_TYPE_Q5_K:
            put16(p, gw_fp32_to_fp16(fabsf(rnd_scale()) * 0.1f));
            put16(p + 2, gw_fp32_to_fp16(fabsf(rnd_scale()) * 0.1f));
            break;
        case GW_TYPE_Q6_K: put16(p + 208, gw_fp32_to_fp16(rnd_scale() * 0.05f)); break;
        }
    }
}

/* ------------------------------------------------- host checks (no GPU) */

/* item_values over every item of a row must reproduce gw_dequantize_row
 * exactly and cover each element once; the GEMV's factored form
 * sA*(q.x) + mA*sum(x) must match sum(w*x). */
template <uint32_t T> static void host_items(int64_t cols) {
    char name[96];
    snprintf(name, sizeof name, "host item decode %s", gw_type_name(T));
    if (!selected(name)) return;
    const size_t rb = gw_cuda_row_bytes(T, cols);
    std::vector<uint8_t> row(rb + 16);
    fill_row(T, row.data(), cols);
    std::vector<float> ref(cols), got(cols, NAN), x(cols);
    std::vector<int> seen(cols, 0);
    gw_dequantize_row(T, row.data(), ref.data(), cols);
    for (auto &v : x) v = rndu();
    double dot_ref = 0, dot_got = 0, scale = 0;
    for (int64_t it = 0; it < cols / 16; it++) {
        int64_t e0, e1;
        gwq::runs<T>(it, &e0, &e1);
        float w[16];
        gwq::item_values<T>(row.data(), it, w);
        gwq::Item q;
        gwq::item<T>(row.data(), it, &q);
        double dA = 0, dB = 0, xa = 0, xb = 0;
        for (int j = 0; j < 8; j++) {
            if (e0 + j < cols) got[e0 + j] = w[j], seen[e0 + j]++;
            if (e1 + j < cols) got[e1 + j] = w[8 + j], seen[e1 + j]++;
            dA += (double)q.q[j] * x[e0 + j], xa += x[e0 + j];
            dB += (double)q.q[8 + j] * x[e1 + j], xb += x[e1 + j];
        }
        dot_got += q.sA * dA + q.mA * xa + q.sB * dB + q.mB * xb;
    }
    long long mism = 0, cover = 0;
    for (int64_t i = 0; i < cols; i++) {
        if (seen[i] != 1) cover++;
        else if (!(got[i] == ref[i])) mism++;
        dot_ref += (double)ref[i] * x[i];
        scale += fabs((double)ref[i] * x[i]);
    }
    result(mism == 0 && cover == 0, "%s, %lld columns: %lld values differ from gw_dequantize_row, %lld not covered once",
           name, (long long)cols, mism, cover);
    const double err = fabs(dot_got - dot_ref);
    result(err <= 1e-4 * scale + 1e-9, "host item dot %s: |err| %.3g (scale %.3g)", gw_type_name(T), err, scale);
}

/* The attention kernels' fragment formulas (attention_frag.cuh) on the host:
 * ldmatrix and mma.m16n8k16 emulated as the PTX ISA defines them, one warp,
 * one 64-key tile laid out in the swizzled shared-memory image the tile loader
 * writes. S = Q K^T and O = P V (P = S rounded to bf16, packed the way pv()
 * packs it) must equal the plain products. */
struct Regs { /* one 32-bit register across the warp's lanes */
    uint32_t v[32];
    uint32_t &operator[](int lane) { return v[lane]; }
    uint32_t operator[](int lane) const { return v[lane]; }
};

static uint32_t pack_bf(uint16_t lo, uint16_t hi) { return (uint32_t)lo | (uint32_t)hi << 16; }

/* ldmatrix.x4: lanes 8m..8m+7 address the rows of matrix m; out[m][lane]. */
static void emu_ldsm(const std::vector<uint16_t> &sm, const int addr[32], bool trans, Regs out[4]) {
    for (int m = 0; m < 4; m++)
        for (int L = 0; L < 32; L++) {
            const int *rows = addr + 8 * m;
            if (!trans) out[m][L] = pack_bf(sm[rows[L / 4] + 2 * (L % 4)], sm[rows[L / 4] + 2 * (L % 4) + 1]);
            else out[m][L] = pack_bf(sm[rows[2 * (L % 4)] + L / 4], sm[rows[2 * (L % 4) + 1] + L / 4]);
        }
}

/* c[lane][0..3] += A (4 regs) . B (2 regs), m16n8k16. */
static void emu_mma(float c[32][4], const Regs a[4], const Regs &b0, const Regs &b1) {
    double A[16][16], B[16][8];
    for (int L = 0; L < 32; L++) {
        const int g = L / 4, t = L % 4;
        for (int r = 0; r < 4; r++) {
            const int row = g + 8 * (r & 1), col = 8 * (r >> 1) + 2 * t;
            A[row][col] = bf2f((uint16_t)a[r][L]), A[row][col + 1] = bf2f((uint16_t)(a[r][L] >> 16));
        }
        B[2 * t][g] = bf2f((uint16_t)b0[L]), B[2 * t + 1][g] = bf2f((uint16_t)(b0[L] >> 16));
        B[2 * t + 8][g] = bf2f((uint16_t)b1[L]), B[2 * t + 9][g] = bf2f((uint16_t)(b1[L] >> 16));
    }
    for (int L = 0; L < 32; L++) {
        const int g = L / 4, t = L % 4;
        for (int e = 0; e < 4; e++) {
            const int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
            double acc = 0;
            for (int k = 0; k < 16; k++) acc += A[row][k] * B[k][col];
            c[L][e] += (float)acc;
        }
    }
}

template <int D> static void host_attention_fragments(void) {
    char name[64];
    snprintf(name, sizeof name, "host attention fragments dim %d", D);
    if (!selected(name)) return;
    using gwattn::BN;
    std::vector<uint16_t> Q(16 * D), K(BN * D), V(BN * D), sK(BN * D, 0xFFFF), sV(BN * D, 0xFFFF);
    for (auto &e : Q) e = f2bf(rndu());
    for (auto &e : K) e = f2bf(rndu());
    for (auto &e : V) e = f2bf(rndu());
    for (int r = 0; r < BN; r++) /* the tile loader: 16-byte chunk c of row r at swz(r, c) */
        for (int c = 0; c < D / 8; c++)
            for (int j = 0; j < 8; j++) {
                sK[gwattn::swz<D>(r, c) + j] = K[r * D + 8 * c + j];
                sV[gwattn::swz<D>(r, c) + j] = V[r * D + 8 * c + j];
            }
    /* Q fragments (load_q) */
    std::vector<Regs> qf(D / 16 * 4);
    for (int kk = 0; kk < D / 16; kk++)
        for (int r = 0; r < 4; r++)
            for (int L = 0; L < 32; L++) {
                const int row = gwattn::a_row(L, r), col = gwattn::a_col(L, r, kk);
                qf[kk * 4 + r][L] = pack_bf(Q[row * D + col], Q[row * D + col + 1]);
            }
    /* S = Q K^T (qk) */
    float S[32][BN / 8][4] = {};
    for (int kk = 0; kk < D / 16; kk++)
        for (int jn = 0; jn < BN / 16; jn++) {
            int addr[32];
            for (int L = 0; L < 32; L++) addr[L] = gwattn::swz<D>(gwattn::k_ldsm_row(L, jn), gwattn::k_ldsm_chunk(L, kk));
            Regs b[4];
            emu_ldsm(sK, addr, false, b);
            float c0[32][4], c1[32][4];
            for (int L = 0; L < 32; L++)
                for (int e = 0; e < 4; e++) c0[L][e] = S[L][2 * jn][e], c1[L][e] = S[L][2 * jn + 1][e];
            emu_mma(c0, &qf[kk * 4], b[0], b[1]);
            emu_mma(c1, &qf[kk * 4], b[2], b[3]);
            for (int L = 0; L < 32; L++)
                for (int e = 0; e < 4; e++) S[L][2 * jn][e] = c0[L][e], S[L][2 * jn + 1][e] = c1[L][e];
        }
    long long bad = 0;
    std::vector<double> P(16 * BN);
    for (int L = 0; L < 32; L++)
        for (int j = 0; j < BN / 8; j++)
            for (int e = 0; e < 4; e++) {
                const int row = L / 4 + 8 * (e >> 1), key = 8 * j + 2 * (L % 4) + (e & 1);
                double ref = 0;
                for (int d = 0; d < D; d++) ref += (double)bf2f(Q[row * D + d]) * bf2f(K[key * D + d]);
                bad += !(fabs(S[L][j][e] - ref) <= 1e-4 * (1 + fabs(ref)));
                P[row * BN + key] = round_bf(S[L][j][e]);
            }
    /* O = P V (pv): A from the S accumulators, packed as pv() packs them */
    float O[32][D / 8][4] = {};
    for (int ks = 0; ks < BN / 16; ks++) {
        Regs a[4];
        for (int L = 0; L < 32; L++) {
            a[0][L] = pack_bf(f2bf(S[L][2 * ks][0]), f2bf(S[L][2 * ks][1]));
            a[1][L] = pack_bf(f2bf(S[L][2 * ks][2]), f2bf(S[L][2 * ks][3]));
            a[2][L] = pack_bf(f2bf(S[L][2 * ks + 1][0]), f2bf(S[L][2 * ks + 1][1]));
            a[3][L] = pack_bf(f2bf(S[L][2 * ks + 1][2]), f2bf(S[L][2 * ks + 1][3]));
        }
        for (int jd = 0; jd < D / 16; jd++) {
            int addr[32];
            for (int L = 0; L < 32; L++) addr[L] = gwattn::swz<D>(gwattn::v_ldsm_row(L, ks), gwattn::v_ldsm_chunk(L, jd));
            Regs b[4];
            emu_ldsm(sV, addr, true, b);
            float c0[32][4], c1[32][4];
            for (int L = 0; L < 32; L++)
                for (int e = 0; e < 4; e++) c0[L][e] = O[L][2 * jd][e], c1[L][e] = O[L][2 * jd + 1][e];
            emu_mma(c0, a, b[0], b[1]);
            emu_mma(c1, a, b[2], b[3]);
            for (int L = 0; L < 32; L++)
                for (int e = 0; e < 4; e++) O[L][2 * jd][e] = c0[L][e], O[L][2 * jd + 1][e] = c1[L][e];
        }
    }
    long long bad_o = 0;
    for (int L = 0; L < 32; L++)
        for (int j = 0; j < D / 8; j++)
            for (int e = 0; e < 4; e++) {
                const int row = L / 4 + 8 * (e >> 1), dim = 8 * j + 2 * (L % 4) + (e & 1);
                double ref = 0, mag = 0;
                for (int k = 0; k < BN; k++) ref += P[row * BN + k] * bf2f(V[k * D + dim]), mag += fabs(P[row * BN + k]);
                bad_o += !(fabs(O[L][j][e] - ref) <= 1e-4 * (1 + mag));
            }
    result(bad == 0 && bad_o == 0, "%s: S = QK^T %lld of %d wrong, O = PV %lld of %d wrong (emulated ldmatrix/mma)",
           name, bad, 16 * BN, bad_o, 16 * D);
}

static void host_checks(void) {
    host_attention_fragments<64>();
    host_attention_fragments<128>();
    for (uint32_t t : k_types) {
        const int64_t cols = gwq::block_elems(t) == 256 ? 1024 : 160;
#define HOST_CASE(T) host_items<T>(cols)
        GWQ_SWITCH(t, HOST_CASE, result(false, "host: type %u not handled", t))
#undef HOST_CASE
    }
    /* rope inv_freq as forward.c */
    if (!selected("host rope")) return;
    float f[64], g[64], fac[64];
    for (int i = 0; i < 64; i++) fac[i] = 1.0f + 3.0f * fabsf(rndu());
    gw_cuda_rope_inv_freq(500000.0f, 128, 8.0f, fac, f);
    long long bad = 0;
    for (int i = 0; i < 64; i++) {
        g[i] = 1.0f / powf(500000.0f, (float)(2 * i) / 128.0f);
        g[i] /= fac[i];
        g[i] /= 8.0f;
        bad += f[i] != g[i];
    }
    result(bad == 0, "host rope inv_freq (theta 500000, factors, scale 8): %lld differ", bad);
}

/* ------------------------------------------------------------ device: misc */

static void test_device_errors(void) {
    if (!selected("device")) return;
    char err[256];
    int rc = gw_cuda_device_check(0, 0, err, sizeof err);
    result(rc == 0, "device check: %s", rc ? err : "GPU 0 usable");
    rc = gw_cuda_device_check(0, (size_t)1 << 60, err, sizeof err);
    result(rc == GW_CUDA_ERR_NO_MEMORY && strstr(err, "not enough GPU memory"), "device check, 2^60 bytes: %d \"%s\"",
           rc, err);
    rc = gw_cuda_device_check(999, 0, err, sizeof err);
    result(rc == GW_CUDA_ERR_NO_DEVICE && strstr(err, "does not exist"), "device check, GPU 999: %d \"%s\"", rc, err);
    gw_cuda_device_check(0, 0, NULL, 0); /* select GPU 0 again */
    /* (not under compute-sanitizer, --small, which reports the refused
     * cudaMalloc as an API error) */
    if (!g_small) {
        void *p = NULL;
        rc = gw_cuda_malloc(&p, (size_t)1 << 60);
        result(rc == GW_CUDA_ERR_NO_MEMORY && p == NULL, "cudaMalloc of 2^60 bytes: %d \"%s\"", rc,
               gw_cuda_last_error());
    }
    /* argument errors are reported, not crashes */
    rc = gw_cuda_gemv(GW_TYPE_Q2_K, (void *)16, 84, 1, 256, (void *)16, GW_CUDA_F32, 256, 1, (float *)16, 1, NULL, NULL);
    result(rc == GW_CUDA_ERR_UNSUPPORTED, "gemv Q2_K refused: %d \"%s\"", rc, gw_cuda_last_error());
}

/* ----------------------------------------------------------------- GEMV */

static void test_gemv(uint32_t t, int64_t rows, int64_t cols, int n, gw_cuda_dtype xt, bool bias) {
    char name[160];
    snprintf(name, sizeof name, "gemv %s %lldx%lld n=%d x=%s%s", gw_type_name(t), (long long)rows, (long long)cols, n,
             xt == GW_CUDA_F32 ? "f32" : "bf16", bias ? " +bias" : "");
    if (!selected(name)) return;
    const size_t rb = gw_cuda_row_bytes(t, cols);
    std::vector<uint8_t> W(rb * rows);
    for (int64_t r = 0; r < rows; r++) fill_row(t, W.data() + r * rb, cols);
    std::vector<float> x((size_t)n * cols), b(rows);
    std::vector<uint16_t> xb((size_t)n * cols);
    for (size_t i = 0; i < x.size(); i++) {
        x[i] = rndu();
        if (xt == GW_CUDA_BF16) xb[i] = f2bf(x[i]), x[i] = bf2f(xb[i]);
    }
    for (auto &v : b) v = rndu();
    Dev dW = upload(W), dx = xt == GW_CUDA_F32 ? upload(x) : upload(xb), db = upload(b);
    Dev dy((size_t)n * rows * sizeof(float));
    dy.poison();
    GW(gw_cuda_gemv(t, dW.p, rb, rows, cols, dx.p, xt, cols, n, dy.as<float>(), rows, bias ? db.as<float>() : NULL,
                    NULL),
       name);
    std::vector<float> y((size_t)n * rows), w(cols);
    dy.down(y.data());
    Cmp c(0, 0);
    for (int64_t r = 0; r < rows; r++) {
        gw_dequantize_row(t, W.data() + r * rb, w.data(), cols);
        double wmax = 0;
        for (int64_t k = 0; k < cols; k++) wmax = fmax(wmax, fabs(w[k]));
        for (int j = 0; j < n; j++) {
            const float *xr = x.data() + (size_t)j * cols;
            double s = 0, sabs = 0, xabs = 0;
            for (int64_t k = 0; k < cols; k++) s += (double)w[k] * xr[k], sabs += fabs((double)w[k] * xr[k]), xabs += fabs(xr[k]);
            if (bias) s += b[r];
            /* f32 accumulation; the min terms of Q4_1/K-quants are summed separately */
            c.add(y[(size_t)j * rows + r], s, 3e-5 * (sabs + wmax * xabs) + 1e-6);
        }
    }
    c.report(name);
}

/* -------------------------------------------------- dequantize and embed */

static void test_dequant(uint32_t t, int64_t rows, int64_t cols) {
    char name[128];
    snprintf(name, sizeof name, "dequantize %s %lldx%lld", gw_type_name(t), (long long)rows, (long long)cols);
    if (!selected(name)) return;
    const size_t rb = gw_cuda_row_bytes(t, cols);
    std::vector<uint8_t> W(rb * rows);
    for (int64_t r = 0; r < rows; r++) fill_row(t, W.data() + r * rb, cols);
    Dev dW = upload(W), dout(rows * cols * 2);
    dout.poison();
    GW(gw_cuda_dequantize(t, dW.p, rb, rows, cols, dout.as<uint16_t>(), NULL), name);
    std::vector<uint16_t> got(rows * cols);
    dout.down(got.data());
    std::vector<float> ref(cols);
    long long bad = 0, first = -1;
    for (int64_t r = 0; r < rows; r++) {
        gw_dequantize_row(t, W.data() + r * rb, ref.data(), cols);
        for (int64_t c = 0; c < cols; c++)
            if (!(bf2f(got[r * cols + c]) == round_bf(ref[c]))) {
                if (first < 0) first = r * cols + c;
                bad++;
            }
    }
    result(bad == 0, "%s: %lld of %lld differ from bf16(gw_dequantize_row) (first at %lld)", name, bad,
           (long long)(rows * cols), first);
}

static void test_embed(uint32_t t, int64_t dim) {
    char name[128];
    snprintf(name, sizeof name, "embed %s dim %lld", gw_type_name(t), (long long)dim);
    if (!selected(name)) return;
    const int64_t vocab = 57;
    const size_t rb = gw_cuda_row_bytes(t, dim);
    std::vector<uint8_t> E(rb * vocab);
    for (int64_t r = 0; r < vocab; r++) fill_row(t, E.data() + r * rb, dim);
    std::vector<int32_t> tok = {0, 56, 3, 3, 17, -1, 57, 42}; /* repeats, and two out of range */
    Dev dE = upload(E), dtok = upload(tok), dout(tok.size() * dim * 4);
    dout.poison();
    GW(gw_cuda_embed(t, dE.p, rb, vocab, (int)dim, dtok.as<int32_t>(), (int)tok.size(), dout.as<float>(), NULL), name);
    std::vector<float> got(tok.size() * dim), ref(dim);
    dout.down(got.data());
    long long bad = 0;
    for (size_t i = 0; i < tok.size(); i++) {
        if (tok[i] >= 0 && tok[i] < vocab) gw_dequantize_row(t, E.data() + tok[i] * rb, ref.data(), dim);
        else std::fill(ref.begin(), ref.end(), 0.0f);
        for (int64_t c = 0; c < dim; c++) bad += !(got[i * dim + c] == ref[c]);
    }
    result(bad == 0, "%s: %lld of %lld differ from gw_dequantize_row", name, bad, (long long)(tok.size() * dim));
}

/* ----------------------------------------------------------------- GEMM */

static void test_gemm(gw_cuda_blas *h, int M, int N, int K, gw_cuda_dtype yt, float beta) {
    char name[128];
    snprintf(name, sizeof name, "gemm cuBLASLt %dx%dx%d y=%s beta=%g", M, N, K, yt == GW_CUDA_F32 ? "f32" : "bf16", beta);
    if (!selected(name)) return;
    const int ldx = K + 8, ldw = K, ldy = N + 8; /* padded rows on X and Y */
    std::vector<uint16_t> X((size_t)M * ldx), W((size_t)N * ldw);
    for (auto &v : X) v = f2bf(rndu());
    for (auto &v : W) v = f2bf(rndu());
    std::vector<float> Y0((size_t)M * ldy);
    for (auto &v : Y0) v = rndu();
    Dev dX = upload(X), dW = upload(W), dY((size_t)M * ldy * (yt == GW_CUDA_F32 ? 4 : 2));
    if (yt == GW_CUDA_F32) dY.up(Y0.data());
    else dY.poison();
    GW(gw_cuda_gemm(h, M, N, K, dX.as<uint16_t>(), ldx, dW.as<uint16_t>(), ldw, dY.p, yt, ldy, 1.0f,
                    yt == GW_CUDA_F32 ? beta : 0.0f, NULL),
       name);
    std::vector<float> y((size_t)M * ldy);
    std::vector<uint16_t> yb((size_t)M * ldy);
    if (yt == GW_CUDA_F32) dY.down(y.data());
    else dY.down(yb.data());
    Cmp c(0, 0);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0, sabs = 0;
            for (int k = 0; k < K; k++) {
                const double p = (double)bf2f(X[(size_t)i * ldx + k]) * bf2f(W[(size_t)j * ldw + k]);
                s += p, sabs += fabs(p);
            }
            if (yt == GW_CUDA_F32) {
                s += beta * Y0[(size_t)i * ldy + j];
                c.add(y[(size_t)i * ldy + j], s, 1e-5 * sabs + 1e-6);
            } else {
                c.add(bf2f(yb[(size_t)i * ldy + j]), s, 1e-5 * sabs + 4e-3 * fabs(s) + 1e-6);
            }
        }
    c.report(name);
}

/* ------------------------------------------------------- element-wise ops */

static void test_rmsnorm(int T, int dim, bool add, gw_cuda_dtype dt, gw_cuda_dtype ot) {
    char name[128];
    snprintf(name, sizeof name, "%s %dx%d delta=%s out=%s", add ? "add_rmsnorm" : "rmsnorm", T, dim,
             dt == GW_CUDA_F32 ? "f32" : "bf16", ot == GW_CUDA_F32 ? "f32" : "bf16");
    if (!selected(name)) return;
    const float eps = 1e-5f;
    std::vector<float> x((size_t)T * dim), d((size_t)T * dim), w(dim);
    std::vector<uint16_t> db((size_t)T * dim);
    for (auto &v : x) v = 3.0f * rndu();
    for (size_t i = 0; i < d.size(); i++) {
        d[i] = rndu();
        db[i] = f2bf(d[i]);
        if (dt == GW_CUDA_BF16) d[i] = bf2f(db[i]);
    }
    for (auto &v : w) v = rndu();
    Dev dx = upload(x), dd = dt == GW_CUDA_F32 ? upload(d) : upload(db), dw = upload(w);
    Dev dout((size_t)T * dim * (ot == GW_CUDA_F32 ? 4 : 2));
    dout.poison();
    if (add)
        GW(gw_cuda_add_rmsnorm(dx.as<float>(), dd.p, dt, dw.as<float>(), dout.p, ot, T, dim, eps, NULL), name);
    else
        GW(gw_cuda_rmsnorm(dx.as<float>(), dw.as<float>(), dout.p, ot, T, dim, eps, NULL), name);
    std::vector<float> xo((size_t)T * dim), of((size_t)T * dim);
    std::vector<uint16_t> ob((size_t)T * dim);
    dx.down(xo.data());
    if (ot == GW_CUDA_F32) dout.down(of.data());
    else dout.down(ob.data());
    Cmp c(1e-6, ot == GW_CUDA_F32 ? 2e-6 : 8e-3);
    long long xbad = 0;
    for (int r = 0; r < T; r++) {
        double ss = 0;
        std::vector<float> xr(dim);
        for (int i = 0; i < dim; i++) {
            xr[i] = add ? x[(size_t)r * dim + i] + d[(size_t)r * dim + i] : x[(size_t)r * dim + i];
            xbad += !(xo[(size_t)r * dim + i] == xr[i]);
            ss += (double)xr[i] * xr[i];
        }
        const double scale = 1.0 / sqrt(ss / dim + eps);
        for (int i = 0; i < dim; i++) {
            const double ref = xr[i] * scale * w[i];
            c.add(ot == GW_CUDA_F32 ? of[(size_t)r * dim + i] : bf2f(ob[(size_t)r * dim + i]), ref);
        }
    }
    if (xbad) result(false, "%s: residual x wrong in %lld places", name, xbad);
    c.report(name);
}

static void test_add_swiglu(void) {
    if (selected("add f32")) {
        const int64_t n = 100003;
        std::vector<float> x(n), y(n);
        std::vector<uint16_t> yb(n);
        for (int64_t i = 0; i < n; i++) x[i] = rndu(), yb[i] = f2bf(rndu()), y[i] = bf2f(yb[i]);
        Dev dx = upload(x), dy = upload(yb);
        int rc = gw_cuda_add(dx.as<float>(), dy.p, GW_CUDA_BF16, n, NULL);
        if (!rc) rc = gw_cuda_sync(NULL);
        std::vector<float> got(n);
        dx.down(got.data());
        long long bad = 0;
        for (int64_t i = 0; i < n; i++) bad += !(got[i] == x[i] + y[i]);
        result(rc == 0 && bad == 0, "add f32 += bf16, %lld values: %lld differ %s", (long long)n, bad,
               rc ? gw_cuda_last_error() : "");
    }
    if (selected("add_bias")) {
        const int rows = 5, dim = 300, stride = 310;
        std::vector<float> y((size_t)rows * stride), b(dim);
        for (auto &v : y) v = rndu();
        for (auto &v : b) v = rndu();
        Dev dy = upload(y), db = upload(b);
        int rc = gw_cuda_add_bias(dy.p, GW_CUDA_F32, stride, db.as<float>(), rows, dim, NULL);
        if (!rc) rc = gw_cuda_sync(NULL);
        std::vector<float> got(y.size());
        dy.down(got.data());
        long long bad = 0;
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < stride; i++) {
                const float want = i < dim ? y[(size_t)r * stride + i] + b[i] : y[(size_t)r * stride + i];
                bad += !(got[(size_t)r * stride + i] == want);
            }
        result(rc == 0 && bad == 0, "add_bias f32 %dx%d stride %d: %lld differ", rows, dim, stride, bad);
    }
    if (selected("f32_to_bf16")) {
        const int rows = 6, cols = 300, xs = 320, ys = 304;
        std::vector<float> x((size_t)rows * xs);
        std::vector<uint16_t> y0((size_t)rows * ys, 0x1234);
        for (auto &v : x) v = rndu() * 100.0f;
        Dev dx = upload(x), dy = upload(y0);
        int rc = gw_cuda_f32_to_bf16(dx.as<float>(), xs, dy.as<uint16_t>(), ys, rows, cols, NULL);
        if (!rc) rc = gw_cuda_sync(NULL);
        std::vector<uint16_t> got(y0.size());
        dy.down(got.data());
        long long bad = 0;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < ys; c++) {
                const uint16_t want = c < cols ? f2bf(x[(size_t)r * xs + c]) : 0x1234; /* padding untouched */
                bad += got[(size_t)r * ys + c] != want;
            }
        result(rc == 0 && bad == 0, "f32_to_bf16 %dx%d strides %d/%d: %lld differ", rows, cols, xs, ys, bad);
    }
    if (selected("gather_rows")) {
        const int rows = 9, dim = 200, n = 5;
        std::vector<float> x((size_t)rows * dim), out0((size_t)n * dim, 0.0f);
        for (auto &v : x) v = rndu();
        const std::vector<int32_t> idx = {7, 0, 7, 3, 8};
        Dev dx = upload(x), di = upload(idx), dout = upload(out0);
        int rc = gw_cuda_gather_rows(dx.as<float>(), di.as<int32_t>(), n, dim, dout.as<float>(), NULL);
        if (!rc) rc = gw_cuda_sync(NULL);
        std::vector<float> got(out0.size());
        dout.down(got.data());
        long long bad = 0;
        for (int i = 0; i < n; i++)
            for (int c = 0; c < dim; c++) bad += got[(size_t)i * dim + c] != x[(size_t)idx[i] * dim + c];
        result(rc == 0 && bad == 0, "gather_rows %d of %d rows: %lld differ", n, rows, bad);
    }
    for (int variant = 0; variant < 4; variant++) {
        const gw_cuda_dtype it = variant & 1 ? GW_CUDA_BF16 : GW_CUDA_F32, ot = variant & 2 ? GW_CUDA_BF16 : GW_CUDA_F32;
        char name[96];
        snprintf(name, sizeof name, "swiglu 7x1000 in=%s out=%s", it == GW_CUDA_F32 ? "f32" : "bf16",
                 ot == GW_CUDA_F32 ? "f32" : "bf16");
        if (!selected(name)) continue;
        const int rows = 7, dim = 1000, in_stride = 2 * dim, out_stride = dim + 24;
        std::vector<float> gu((size_t)rows * in_stride);
        std::vector<uint16_t> gub(gu.size());
        for (size_t i = 0; i < gu.size(); i++) {
            gu[i] = 6.0f * rndu();
            gub[i] = f2bf(gu[i]);
            if (it == GW_CUDA_BF16) gu[i] = bf2f(gub[i]);
        }
        Dev din = it == GW_CUDA_F32 ? upload(gu) : upload(gub);
        Dev dout((size_t)rows * out_stride * (ot == GW_CUDA_F32 ? 4 : 2));
        dout.poison();
        const size_t esz = it == GW_CUDA_F32 ? 4 : 2;
        int rc = gw_cuda_swiglu(din.p, (char *)din.p + dim * esz, it, in_stride, dout.p, ot, out_stride, rows, dim, NULL);
        if (!rc) rc = gw_cuda_sync(NULL);
        if (rc) {
            result(false, "%s: %s", name, gw_cuda_last_error());
            continue;
        }
        std::vector<float> of((size_t)rows * out_stride);
        std::vector<uint16_t> ob((size_t)rows * out_stride);
        if (ot == GW_CUDA_F32) dout.down(of.data());
        else dout.down(ob.data());
        Cmp c(1e-6, ot == GW_CUDA_F32 ? 2e-6 : 8e-3);
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < dim; i++) {
                const double g = gu[(size_t)r * in_stride + i], u = gu[(size_t)r * in_stride + dim + i];
                const double ref = g / (1.0 + exp(-g)) * u;
                const size_t o = (size_t)r * out_stride + i;
                c.add(ot == GW_CUDA_F32 ? of[o] : bf2f(ob[o]), ref);
            }
        c.report(name);
    }
}

static void test_rope(int head_dim, int rope_dim, int style, gw_cuda_dtype dt, bool factors) {
    char name[128];
    snprintf(name, sizeof name, "rope %s head_dim %d rope_dim %d %s%s", style ? "neox" : "norm", head_dim, rope_dim,
             dt == GW_CUDA_F32 ? "f32" : "bf16", factors ? " +freq factors, scale 4" : "");
    if (!selected(name)) return;
    const int T = 9, H = 5;
    const int64_t stride = (int64_t)H * head_dim + 16; /* padded token rows */
    const float theta = factors ? 500000.0f : 10000.0f, scale = factors ? 4.0f : 1.0f;
    std::vector<float> fac(rope_dim / 2), inv(rope_dim / 2);
    for (auto &v : fac) v = 1.0f + 7.0f * fabsf(rndu());
    gw_cuda_rope_inv_freq(theta, rope_dim, scale, factors ? fac.data() : NULL, inv.data());
    std::vector<int32_t> pos(T);
    for (int t = 0; t < T; t++) pos[t] = t == 0 ? 0 : t == 1 ? 131071 : rndi(131072);
    std::vector<float> x((size_t)T * stride);
    std::vector<uint16_t> xb(x.size());
    for (size_t i = 0; i < x.size(); i++) {
        x[i] = rndu();
        xb[i] = f2bf(x[i]);
        if (dt == GW_CUDA_BF16) x[i] = bf2f(xb[i]);
    }
    Dev dx = dt == GW_CUDA_F32 ? upload(x) : upload(xb), dpos = upload(pos), dinv = upload(inv);
    GW(gw_cuda_rope(dx.p, dt, T, H, head_dim, stride, dpos.as<int32_t>(), dinv.as<float>(), rope_dim, style, NULL), name);
    std::vector<float> gf(x.size());
    std::vector<uint16_t> gb(x.size());
    if (dt == GW_CUDA_F32) dx.down(gf.data());
    else dx.down(gb.data());
    std::vector<double> ref(x.begin(), x.end());
    const int half = rope_dim / 2;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            double *v = ref.data() + (size_t)t * stride + (size_t)h * head_dim;
            for (int i = 0; i < half; i++) {
                const float ang = (float)pos[t] * inv[i]; /* the float angle, as forward.c */
                const int i0 = style ? i : 2 * i, i1 = style ? i + half : 2 * i + 1;
                const double a = v[i0], b = v[i1], c = cos((double)ang), s = sin((double)ang);
                v[i0] = a * c - b * s;
                v[i1] = a * s + b * c;
            }
        }
    Cmp c(dt == GW_CUDA_F32 ? 2e-6 : 1e-6, dt == GW_CUDA_F32 ? 1e-6 : 8e-3);
    for (size_t i = 0; i < x.size(); i++) c.add(dt == GW_CUDA_F32 ? gf[i] : bf2f(gb[i]), ref[i]);
    c.report(name);
}

/* ------------------------------------------------------------- KV cache */

struct Pages {
    int BS, KV, D, n_blocks;
    int64_t block_stride, layer_off; /* two "layers" per block, testing the stride */
    std::vector<uint16_t> k, v;
    Pages(int bs, int kvh, int d, int nb) : BS(bs), KV(kvh), D(d), n_blocks(nb) {
        layer_off = (int64_t)KV * BS * D;
        block_stride = 2 * layer_off;
        k.assign((size_t)n_blocks * block_stride, 0xFFFF); /* NaN everywhere nothing is stored */
        v = k;
    }
    size_t at(int blk, int h, int slot, int d) const {
        return (size_t)blk * block_stride + layer_off + ((size_t)h * BS + slot) * D + d;
    }
};

static gw_cuda_kv dev_kv(const Pages &pg, Dev &dk, Dev &dv) {
    gw_cuda_kv kv = {};
    kv.k = dk.as<uint16_t>() + pg.layer_off;
    kv.v = dv.as<uint16_t>() + pg.layer_off;
    kv.block_size = pg.BS, kv.n_kv_heads = pg.KV, kv.head_dim = pg.D, kv.block_stride = pg.block_stride;
    return kv;
}

/* gw_cuda_rope_qkv against the four ops it replaces (rope q, rope k,
 * f32_to_bf16 of q, kv_append): every bit of q and of the pages equal. */
static void test_rope_qkv(int D, int rope_dim, int H, int KV, int BS, int style) {
    char name[128];
    snprintf(name, sizeof name, "rope_qkv dim %d rope %d heads %d/%d block %d %s", D, rope_dim, H, KV, BS,
             style ? "neox" : "norm");
    if (!selected(name)) return;
    const int nb = 5, T = 29;
    const int64_t qd = (int64_t)H * D, kvd = (int64_t)KV * D, stride = qd + 2 * kvd + 8;
    Pages pg(BS, KV, D, nb);
    std::vector<int32_t> slots(nb * BS), pos(T);
    for (int i = 0; i < nb * BS; i++) slots[i] = i;
    for (int i = nb * BS - 1; i > 0; i--) std::swap(slots[i], slots[rndi(i + 1)]);
    slots.resize(T);
    slots[3] = -1;
    for (int t = 0; t < T; t++) pos[t] = rndi(100000);
    std::vector<float> qkv((size_t)T * stride), inv(rope_dim / 2);
    for (auto &x : qkv) x = 4.0f * rndu();
    gw_cuda_rope_inv_freq(500000.0f, rope_dim, 1.0f, NULL, inv.data());
    std::vector<uint16_t> q0((size_t)T * qd, 0x1234);
    Dev dk1 = upload(pg.k), dv1 = upload(pg.v), dk2 = upload(pg.k), dv2 = upload(pg.v);
    Dev dx1 = upload(qkv), dx2 = upload(qkv), dq1 = upload(q0), dq2 = upload(q0);
    Dev dslot = upload(slots), dpos = upload(pos), dinv = upload(inv);
    gw_cuda_kv kv1 = dev_kv(pg, dk1, dv1), kv2 = dev_kv(pg, dk2, dv2);
    float *x1 = dx1.as<float>();
    int rc = gw_cuda_rope(x1, GW_CUDA_F32, T, H, D, stride, dpos.as<int32_t>(), dinv.as<float>(), rope_dim, style, NULL);
    if (!rc) rc = gw_cuda_rope(x1 + qd, GW_CUDA_F32, T, KV, D, stride, dpos.as<int32_t>(), dinv.as<float>(), rope_dim,
                               style, NULL);
    if (!rc) rc = gw_cuda_f32_to_bf16(x1, stride, dq1.as<uint16_t>(), qd, T, (int)qd, NULL);
    if (!rc) rc = gw_cuda_kv_append(&kv1, x1 + qd, x1 + qd + kvd, GW_CUDA_F32, stride, dslot.as<int32_t>(), T, NULL);
    if (!rc) rc = gw_cuda_rope_qkv(&kv2, dx2.as<float>(), stride, T, H, dpos.as<int32_t>(), dinv.as<float>(),
                                   rope_dim, style, dq2.as<uint16_t>(), qd, dslot.as<int32_t>(), NULL);
    if (!rc) rc = gw_cuda_sync(NULL);
    std::vector<uint16_t> a((size_t)T * qd), b(a.size()), ka(pg.k.size()), kb(ka.size()), va(ka.size()), vb(ka.size());
    dq1.down(a.data()), dq2.down(b.data()), dk1.down(ka.data()), dk2.down(kb.data()), dv1.down(va.data()),
        dv2.down(vb.data());
    long long bad = 0;
    for (size_t i = 0; i < a.size(); i++) bad += a[i] != b[i];
    for (size_t i = 0; i < ka.size(); i++) bad += (ka[i] != kb[i]) + (va[i] != vb[i]);
    result(rc == 0 && bad == 0, "%s: %lld of q and page elements differ from rope+rope+f32_to_bf16+kv_append %s",
           name, bad, rc ? gw_cuda_last_error() : "");
}

static void test_kv_append(int BS, int KV, int D, gw_cuda_dtype st) {
    char name[128];
    snprintf(name, sizeof name, "kv_append block %d heads %d dim %d src=%s", BS, KV, D, st == GW_CUDA_F32 ? "f32" : "bf16");
    if (!selected(name)) return;
    const int nb = 6, T = 23;
    Pages pg(BS, KV, D, nb);
    for (auto &e : pg.k) e = f2bf(rndu());
    for (auto &e : pg.v) e = f2bf(rndu());
    std::vector<int32_t> slots(nb * BS);
    for (int i = 0; i < nb * BS; i++) slots[i] = i;
    for (int i = nb * BS - 1; i > 0; i--) std::swap(slots[i], slots[rndi(i + 1)]);
    slots.resize(T);
    slots[5] = -1; /* skipped */
    const int64_t stride = (int64_t)KV * D + 8;
    std::vector<float> k((size_t)T * stride), v(k.size());
    std::vector<uint16_t> kb(k.size()), vb(k.size());
    for (size_t i = 0; i < k.size(); i++) {
        kb[i] = f2bf(4.0f * rndu()), vb[i] = f2bf(rndu());
        k[i] = st == GW_CUDA_BF16 ? bf2f(kb[i]) : 4.0f * rndu();
        v[i] = st == GW_CUDA_BF16 ? bf2f(vb[i]) : rndu();
    }
    Dev dk = upload(pg.k), dv = upload(pg.v), dslot = upload(slots);
    Dev sk = st == GW_CUDA_F32 ? upload(k) : upload(kb), sv = st == GW_CUDA_F32 ? upload(v) : upload(vb);
    gw_cuda_kv kv = dev_kv(pg, dk, dv);
    GW(gw_cuda_kv_append(&kv, sk.p, sv.p, st, stride, dslot.as<int32_t>(), T, NULL), name);
    std::vector<uint16_t> gk(pg.k.size()), gv(pg.v.size());
    dk.down(gk.data());
    dv.down(gv.data());
    std::vector<uint16_t> wk = pg.k, wv = pg.v; /* expected pages */
    for (int t = 0; t < T; t++) {
        if (slots[t] < 0) continue;
        for (int h = 0; h < KV; h++)
            for (int d = 0; d < D; d++) {
                const size_t o = pg.at(slots[t] / BS, h, slots[t] % BS, d), s = (size_t)t * stride + h * D + d;
                wk[o] = f2bf(k[s]), wv[o] = f2bf(v[s]);
            }
    }
    long long bad = 0;
    for (size_t i = 0; i < wk.size(); i++) bad += gk[i] != wk[i] || gv[i] != wv[i];
    result(bad == 0, "%s: %lld page elements differ (stored values, and everything else untouched)", name, bad);
}

/* gw_cuda_kv_shift against the CPU pool's rule: slots [src, src + n) move to
 * [dst, dst + n) through the block table (both layers, every head), values
 * and non-rotary key dimensions bit for bit, key pairs rotated by the given
 * (cos, sin) (within one bf16 rounding of the host's f32 product), every
 * other slot untouched; overlapping ranges (n > src - dst) need the passes. */
static void test_kv_shift(int BS, int KV, int D, int rope_dim, int style, int src, int dst, int n) {
    char name[160];
    snprintf(name, sizeof name, "kv_shift block %d heads %d dim %d rope %d %s slots %d..%d -> %d", BS, KV, D, rope_dim,
             style ? "neox" : "norm", src, src + n, dst);
    if (!selected(name)) return;
    const int nb = (src + n + BS - 1) / BS + 2;
    Pages pg(BS, KV, D, nb);
    for (auto &x : pg.k) x = f2bf(4.0f * rndu());
    for (auto &x : pg.v) x = f2bf(rndu());
    std::vector<int32_t> table(nb);
    for (int i = 0; i < nb; i++) table[i] = i;
    for (int i = nb - 1; i > 0; i--) std::swap(table[i], table[rndi(i + 1)]);
    const int half = rope_dim / 2, e = src - dst;
    std::vector<float> cs(2 * half + 1);
    for (int i = 0; i < half; i++) {
        const double ang = -(double)e * pow(10000.0, -2.0 * i / rope_dim);
        cs[2 * i] = (float)cos(ang), cs[2 * i + 1] = (float)sin(ang);
    }
    /* expected: ascending slot order on the host (what the passes must equal) */
    Pages want = pg;
    for (int j = 0; j < n; j++) {
        const int s = src + j, d = dst + j;
        for (int l = 0; l < 2; l++)
            for (int h = 0; h < KV; h++) {
                const size_t so = (size_t)table[s / BS] * pg.block_stride + l * pg.layer_off + ((size_t)h * BS + s % BS) * D;
                const size_t dof = (size_t)table[d / BS] * pg.block_stride + l * pg.layer_off + ((size_t)h * BS + d % BS) * D;
                std::vector<uint16_t> k(want.k.begin() + so, want.k.begin() + so + D);
                for (int x = 0; x < D; x++) want.v[dof + x] = want.v[so + x];
                for (int x = rope_dim; x < D; x++) want.k[dof + x] = k[x];
                for (int i = 0; i < half; i++) {
                    const int d1 = style ? i : 2 * i, d2 = style ? i + half : 2 * i + 1;
                    const float a = bf2f(k[d1]), b = bf2f(k[d2]);
                    want.k[dof + d1] = f2bf(a * cs[2 * i] - b * cs[2 * i + 1]);
                    want.k[dof + d2] = f2bf(a * cs[2 * i + 1] + b * cs[2 * i]);
                }
            }
    }
    Dev dk = upload(pg.k), dv = upload(pg.v), dt = upload(table), dcs = upload(cs);
    gw_cuda_kv kv = dev_kv(pg, dk, dv);
    kv.k = dk.as<uint16_t>(), kv.v = dv.as<uint16_t>(); /* layer 0's view, two layers */
    GW(gw_cuda_kv_shift(&kv, 2, dt.as<int32_t>(), src, dst, n, dcs.as<float>(), rope_dim, style, NULL), name);
    std::vector<uint16_t> gk(pg.k.size()), gv(pg.v.size());
    dk.down(gk.data()), dv.down(gv.data());
    long long bad = 0;
    for (size_t i = 0; i < gk.size(); i++) {
        const float g = bf2f(gk[i]), w = bf2f(want.k[i]);
        bad += gv[i] != want.v[i] || !(gk[i] == want.k[i] || fabsf(g - w) <= fabsf(w) / 128 + 1e-30f);
    }
    result(bad == 0, "%s: %lld of %zu elements differ", name, bad, 2 * gk.size());
}

/* ------------------------------------------------------------- attention */

struct SeqSpec {
    int ctx, n_new; /* cached prefix, new tokens (decode: n_new = 1 and ctx + 1 = kv_len) */
};

/* Random pages for the sequences: block tables with shuffled block ids, K/V
 * random in [-1, 1) for every slot a sequence holds, NaN elsewhere. */
struct AttnSetup {
    Pages pg;
    int max_blocks;
    std::vector<int32_t> tables, kv_lens;
    AttnSetup(int BS, int KV, int D, const std::vector<SeqSpec> &seqs)
        : pg(BS, KV, D, [&] {
              int n = 3;
              for (auto &s : seqs) n += (s.ctx + s.n_new + BS - 1) / BS;
              return n;
          }()) {
        max_blocks = 1;
        for (auto &s : seqs) max_blocks = std::max(max_blocks, (s.ctx + s.n_new + BS - 1) / BS);
        std::vector<int32_t> ids(pg.n_blocks);
        for (int i = 0; i < pg.n_blocks; i++) ids[i] = i;
        for (int i = pg.n_blocks - 1; i > 0; i--) std::swap(ids[i], ids[rndi(i + 1)]);
        tables.assign(seqs.size() * max_blocks, -7); /* entries past a sequence's blocks are garbage */
        int next = 0;
        for (size_t s = 0; s < seqs.size(); s++) {
            const int len = seqs[s].ctx + seqs[s].n_new;
            kv_lens.push_back(len);
            for (int b = 0; b < (len + BS - 1) / BS; b++) tables[s * max_blocks + b] = ids[next++];
            for (int slot = 0; slot < len; slot++) {
                const int blk = tables[s * max_blocks + slot / BS];
                for (int h = 0; h < KV; h++)
                    for (int d = 0; d < D; d++) {
                        pg.k[pg.at(blk, h, slot % BS, d)] = f2bf(rndu());
                        pg.v[pg.at(blk, h, slot % BS, d)] = f2bf(rndu());
                    }
            }
        }
    }
    float K(int s, int slot, int h, int d) const {
        return bf2f(pg.k[pg.at(tables[s * max_blocks + slot / pg.BS], h, slot % pg.BS, d)]);
    }
    float V(int s, int slot, int h, int d) const {
        return bf2f(pg.v[pg.at(tables[s * max_blocks + slot / pg.BS], h, slot % pg.BS, d)]);
    }
};

/* out[D] = softmax(q . K[0..n_keys) * scale) V for sequence s, KV head kvh. */
static void ref_attention(const AttnSetup &a, int s, int kvh, const float *q, int n_keys, double scale,
                          std::vector<double> &out) {
    const int D = a.pg.D;
    std::vector<double> sc(n_keys);
    double mx = -INFINITY;
    for (int j = 0; j < n_keys; j++) {
        double dot = 0;
        for (int d = 0; d < D; d++) dot += (double)q[d] * a.K(s, j, kvh, d);
        sc[j] = dot * scale;
        mx = std::max(mx, sc[j]);
    }
    double sum = 0;
    for (int j = 0; j < n_keys; j++) sum += (sc[j] = exp(sc[j] - mx));
    out.assign(D, 0.0);
    for (int j = 0; j < n_keys; j++)
        for (int d = 0; d < D; d++) out[d] += sc[j] / sum * a.V(s, j, kvh, d);
}

/* Every new token's output (rows cu[s] + i of out) against ref_attention over
 * the slots it sees (its sequence's cached prefix and the new tokens up to it). */
static void check_outputs(const AttnSetup &a, const std::vector<SeqSpec> &seqs, const std::vector<int32_t> &cu,
                          const std::vector<uint16_t> &q, int64_t q_stride, const std::vector<uint16_t> &out,
                          int64_t o_stride, int H, double scale, const char *name) {
    const int D = a.pg.D, G = H / a.pg.KV;
    Cmp c(1e-2, 1e-2);
    std::vector<float> qf(D);
    std::vector<double> ref;
    for (size_t s = 0; s < seqs.size(); s++)
        for (int i = 0; i < seqs[s].n_new; i++)
            for (int h = 0; h < H; h++) {
                const size_t row = (size_t)(cu[s] + i);
                for (int d = 0; d < D; d++) qf[d] = bf2f(q[row * q_stride + (size_t)h * D + d]);
                ref_attention(a, (int)s, h / G, qf.data(), seqs[s].ctx + i + 1, scale, ref);
                for (int d = 0; d < D; d++) c.add(bf2f(out[row * o_stride + (size_t)h * D + d]), ref[d]);
            }
    c.report(name);
}

static void test_prefill(int D, int H, int KV, int BS, const std::vector<SeqSpec> &seqs, int warps) {
    char name[256];
    int n = snprintf(name, sizeof name, "attention prefill dim %d heads %d/%d block %d warps %d seqs", D, H, KV, BS,
                     warps);
    for (auto &s : seqs) n += snprintf(name + n, sizeof name - n, " %d+%d", s.ctx, s.n_new);
    if (!selected(name)) return;
    AttnSetup a(BS, KV, D, seqs);
    std::vector<int32_t> cu(1, 0);
    int max_q = 0;
    for (auto &s : seqs) cu.push_back(cu.back() + s.n_new), max_q = std::max(max_q, s.n_new);
    const int T = cu.back();
    const int64_t q_stride = (int64_t)H * D + 8, o_stride = (int64_t)H * D + 24;
    std::vector<uint16_t> q((size_t)T * q_stride);
    for (auto &e : q) e = f2bf(rndu());
    Dev dk = upload(a.pg.k), dv = upload(a.pg.v), dq = upload(q), dcu = upload(cu), dlen = upload(a.kv_lens),
        dtab = upload(a.tables), dout((size_t)T * o_stride * 2);
    dout.poison();
    gw_cuda_kv kv = dev_kv(a.pg, dk, dv);
    const float scale = 1.0f / sqrtf((float)D);
    gw_cuda_attention_tune(warps);
    GW(gw_cuda_attention_prefill(&kv, dq.as<uint16_t>(), q_stride, dout.as<uint16_t>(), o_stride, (int)seqs.size(),
                                 dcu.as<int32_t>(), dlen.as<int32_t>(), dtab.as<int32_t>(), a.max_blocks, max_q, H,
                                 scale, NULL),
       name);
    gw_cuda_attention_tune(0);
    std::vector<uint16_t> out((size_t)T * o_stride);
    dout.down(out.data());
    check_outputs(a, seqs, cu, q, q_stride, out, o_stride, H, scale, name);
}

static void test_decode(int D, int H, int KV, int BS, const std::vector<int> &lens, int splits) {
    char name[256];
    int n = snprintf(name, sizeof name, "attention decode dim %d heads %d/%d block %d splits %d lens", D, H, KV, BS,
                     splits);
    for (int l : lens) n += snprintf(name + n, sizeof name - n, " %d", l);
    if (!selected(name)) return;
    std::vector<SeqSpec> seqs;
    int max_len = 0;
    for (int l : lens) seqs.push_back({l - 1, 1}), max_len = std::max(max_len, l);
    AttnSetup a(BS, KV, D, seqs);
    const int S = (int)seqs.size();
    if (splits <= 0) splits = gw_cuda_attention_decode_splits(S, H, KV, max_len);
    const int64_t q_stride = (int64_t)H * D + 8, o_stride = (int64_t)H * D;
    std::vector<uint16_t> q((size_t)S * q_stride);
    for (auto &e : q) e = f2bf(rndu());
    const size_t ws = gw_cuda_attention_decode_workspace(S, H, D, splits);
    Dev dk = upload(a.pg.k), dv = upload(a.pg.v), dq = upload(q), dlen = upload(a.kv_lens), dtab = upload(a.tables),
        dout((size_t)S * o_stride * 2), dws(ws);
    dout.poison();
    dws.poison();
    gw_cuda_kv kv = dev_kv(a.pg, dk, dv);
    const float scale = 1.0f / sqrtf((float)D);
    GW(gw_cuda_attention_decode(&kv, dq.as<uint16_t>(), q_stride, dout.as<uint16_t>(), o_stride, S,
                                dlen.as<int32_t>(), dtab.as<int32_t>(), a.max_blocks, H, scale, splits,
                                ws ? dws.p : NULL, ws, NULL),
       name);
    std::vector<uint16_t> out((size_t)S * o_stride);
    dout.down(out.data());
    Cmp c(1e-2, 1e-2);
    std::vector<float> qf(D);
    std::vector<double> ref;
    const int G = H / KV;
    for (int s = 0; s < S; s++)
        for (int h = 0; h < H; h++) {
            for (int d = 0; d < D; d++) qf[d] = bf2f(q[(size_t)s * q_stride + (size_t)h * D + d]);
            ref_attention(a, s, h / G, qf.data(), lens[s], scale, ref);
            for (int d = 0; d < D; d++) c.add(bf2f(out[(size_t)s * o_stride + (size_t)h * D + d]), ref[d]);
        }
    char full[300];
    snprintf(full, sizeof full, "%s (splits used %d)", name, splits);
    c.report(full);
}

/* ------------------------------------------------- KV selection */

/* gw_cuda_attention_probs_add against softmax in double: several rows of two
 * sequences (the rows of one sequence add into the same scores), each seeing
 * its own number of slots, summed over the KV head's query group. */
static void test_probs_add(int D, int H, int KV, int BS) {
    char name[128];
    snprintf(name, sizeof name, "attention_probs_add dim %d heads %d/%d block %d", D, H, KV, BS);
    if (!selected(name)) return;
    AttnSetup a(BS, KV, D, {{300, 40}, {77, 5}});
    const int G = H / KV, cap = 400;
    /* rows: sequence 0 sees 301..340 slots (its last 40 tokens), sequence 1 78..82 */
    std::vector<int32_t> rows, lens, trows;
    std::vector<int64_t> off; /* element offsets of each row's scores */
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < (s ? 5 : 40); i++) {
            rows.push_back((int)rows.size());
            lens.push_back((s ? 78 : 301) + i);
            trows.push_back(s);
            off.push_back((int64_t)s * KV * cap);
        }
    const int R = (int)rows.size();
    const int64_t q_stride = (int64_t)H * D + 8;
    std::vector<uint16_t> q((size_t)R * q_stride);
    for (auto &e : q) e = f2bf(2.0f * rndu());
    std::vector<float> sc0((size_t)2 * KV * cap + 7, 0.5f); /* scores add to what is there */
    Dev dk = upload(a.pg.k), dv = upload(a.pg.v), dq = upload(q), dr = upload(rows), dl = upload(lens),
        dtr = upload(trows), dt = upload(a.tables), dsc = upload(sc0);
    std::vector<float *> ptrs;
    for (int64_t o : off) ptrs.push_back(dsc.as<float>() + o); /* and score_off 7 (a layer's offset) */
    Dev dptr = upload(ptrs);
    gw_cuda_kv kv = dev_kv(a.pg, dk, dv);
    const float scale = 1.0f / sqrtf((float)D);
    GW(gw_cuda_attention_probs_add(&kv, dq.as<uint16_t>(), q_stride, R, dr.as<int32_t>(), dl.as<int32_t>(),
                                   dtr.as<int32_t>(), dt.as<int32_t>(), a.max_blocks, H, scale,
                                   dptr.as<float *>(), 7, cap, NULL),
       name);
    std::vector<float> got(sc0.size());
    dsc.down(got.data());
    std::vector<double> want(sc0.begin(), sc0.end());
    for (int r = 0; r < R; r++)
        for (int h = 0; h < H; h++) {
            const int s = trows[r], n = lens[r], kvh = h / G;
            std::vector<double> e(n);
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < n; j++) {
                double dot = 0;
                for (int d = 0; d < D; d++)
                    dot += (double)bf2f(q[(size_t)r * q_stride + (size_t)h * D + d]) * a.K(s, j, kvh, d);
                e[j] = dot * scale;
                mx = std::max(mx, e[j]);
            }
            for (int j = 0; j < n; j++) sum += (e[j] = exp(e[j] - mx));
            for (int j = 0; j < n; j++) want[(size_t)off[r] + 7 + (size_t)kvh * cap + j] += e[j] / sum;
        }
    Cmp c(2e-5, 2e-4);
    for (size_t i = 0; i < got.size(); i++) c.add(got[i], want[i]);
    c.report(name);
}

/* gw_cuda_kv_gather: per KV head, slots keep[h][i] -> i (any order, repeats
 * allowed), the rest of the pages untouched. */
static void test_kv_gather(int D, int KV, int BS) {
    char name[128];
    snprintf(name, sizeof name, "kv_gather dim %d heads %d block %d", D, KV, BS);
    if (!selected(name)) return;
    AttnSetup a(BS, KV, D, {{500, 1}});
    const int n = 501, budget = 130;
    std::vector<int32_t> keep((size_t)KV * budget);
    for (int h = 0; h < KV; h++) {
        std::vector<int32_t> perm(n);
        for (int i = 0; i < n; i++) perm[i] = i;
        for (int i = n - 1; i > 0; i--) std::swap(perm[i], perm[rndi(i + 1)]);
        if (h == 0) std::sort(perm.begin(), perm.begin() + budget); /* head 0 ascending, the others shuffled */
        for (int i = 0; i < budget; i++) keep[(size_t)h * budget + i] = perm[i];
    }
    Dev dk = upload(a.pg.k), dv = upload(a.pg.v), dt = upload(a.tables), dkeep = upload(keep);
    gw_cuda_kv kv = dev_kv(a.pg, dk, dv);
    const size_t sb = gw_cuda_kv_gather_scratch(&kv, budget);
    Dev scratch(sb);
    GW(gw_cuda_kv_gather(&kv, dt.as<int32_t>(), dkeep.as<int32_t>(), budget, scratch.p, sb, NULL), name);
    std::vector<uint16_t> gk(a.pg.k.size()), gv(a.pg.v.size());
    dk.down(gk.data()), dv.down(gv.data());
    Pages want = a.pg;
    for (int h = 0; h < KV; h++)
        for (int i = 0; i < budget; i++)
            for (int d = 0; d < D; d++) {
                const int src = keep[(size_t)h * budget + i];
                want.k[want.at(a.tables[i / BS], h, i % BS, d)] = a.pg.k[a.pg.at(a.tables[src / BS], h, src % BS, d)];
                want.v[want.at(a.tables[i / BS], h, i % BS, d)] = a.pg.v[a.pg.at(a.tables[src / BS], h, src % BS, d)];
            }
    long long bad = 0;
    for (size_t i = 0; i < gk.size(); i++) bad += gk[i] != want.k[i] || gv[i] != want.v[i];
    result(bad == 0, "%s: %lld page elements differ", name, bad);
}

/* ------------------------------------------------- quantized KV (KIVI) */

/* The sealed side of a Pages (two layers per block, as Pages): codes and
 * parameters for every block, on the device. */
struct QuantPages {
    int qt;
    int64_t ctile, ptile, q_block_stride, p_block_stride;
    Dev kq, vq, kp, vp;
    QuantPages(const Pages &pg, int type)
        : qt(type), ctile(gwkvq::code_tile_bytes(type, pg.BS, pg.D)), ptile(gwkvq::param_tile_pairs(pg.BS, pg.D)),
          q_block_stride(2 * pg.KV * ctile), p_block_stride(2 * pg.KV * ptile),
          kq((size_t)pg.n_blocks * q_block_stride), vq(kq.bytes), kp((size_t)pg.n_blocks * p_block_stride * 4),
          vp(kp.bytes) {
        kq.poison(), vq.poison(), kp.poison(), vp.poison();
    }
    /* the view of layer `layer` (pages dk/dv: the open pages) */
    gw_cuda_kv view(const Pages &pg, Dev &dk, Dev &dv, int layer) {
        gw_cuda_kv kv = dev_kv(pg, dk, dv);
        kv.k = dk.as<uint16_t>() + layer * pg.layer_off, kv.v = dv.as<uint16_t>() + layer * pg.layer_off;
        kv.type = qt;
        kv.kq = kq.as<uint8_t>() + layer * pg.KV * ctile, kv.vq = vq.as<uint8_t>() + layer * pg.KV * ctile;
        kv.kp = kp.as<uint32_t>() + layer * pg.KV * ptile, kv.vp = vp.as<uint32_t>() + layer * pg.KV * ptile;
        kv.q_block_stride = q_block_stride, kv.p_block_stride = p_block_stride;
        return kv;
    }
    /* Host copy of the sealed tiles' dequantized values (what attention must
     * read), written into pg at block b for every layer and head. */
    void dequant_into(Pages &pg, const std::vector<int32_t> &blocks) {
        std::vector<uint8_t> hkq(kq.bytes), hvq(vq.bytes);
        std::vector<uint32_t> hkp(kp.bytes / 4), hvp(vp.bytes / 4);
        kq.down(hkq.data()), vq.down(hvq.data()), kp.down(hkp.data()), vp.down(hvp.data());
        for (int32_t b : blocks)
            for (int t = 0; t < 2 * pg.KV; t++) {
                const size_t cq = (size_t)b * q_block_stride + t * ctile, cp = (size_t)b * p_block_stride + t * ptile;
                for (int slot = 0; slot < pg.BS; slot++)
                    for (int c = 0; c < pg.D / 8; c++) {
                        uint4 k = qt == GW_CUDA_KV_INT8 ? gwkvq::deq_k8<GW_CUDA_KV_INT8>(&hkq[cq], &hkp[cp], pg.D, slot, c)
                                                        : gwkvq::deq_k8<GW_CUDA_KV_INT4>(&hkq[cq], &hkp[cp], pg.D, slot, c);
                        uint4 v = qt == GW_CUDA_KV_INT8 ? gwkvq::deq_v8<GW_CUDA_KV_INT8>(&hvq[cq], &hvp[cp], pg.D, slot, c)
                                                        : gwkvq::deq_v8<GW_CUDA_KV_INT4>(&hvq[cq], &hvp[cp], pg.D, slot, c);
                        const size_t at = (size_t)b * pg.block_stride + ((size_t)t * pg.BS + slot) * pg.D + 8 * c;
                        memcpy(&pg.k[at], &k, 16);
                        memcpy(&pg.v[at], &v, 16);
                    }
            }
    }
};

static uint16_t f32_to_half_bits(float f) {
    __half h = __float2half_rn(f);
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

/* gw_cuda_kv_seal against KIVI's definition: for every group, (scale, min)
 * equal to fp16((max - min) / qmax) and fp16(min) of its bf16 values, and every
 * dequantized value within half a step of what was stored (plus the rounding
 * of the parameters to fp16 and of the value to bf16); then gw_cuda_kv_unseal writes exactly those dequantized values
 * back into pages (and nothing else). */
static void test_kv_seal(int qt, int BS, int KV, int D) {
    char name[128];
    snprintf(name, sizeof name, "kv_seal/unseal %s block %d heads %d dim %d", qt == GW_CUDA_KV_INT8 ? "int8" : "int4",
             BS, KV, D);
    if (!selected(name)) return;
    const int nb = 4, n = 3, qmax = qt == GW_CUDA_KV_INT8 ? 255 : 15;
    Pages pg(BS, KV, D, nb);
    for (size_t i = 0; i < pg.k.size(); i++) {
        /* keys with a few outlier channels (what per-channel scales are for), values plain */
        const int d = (int)(i % D);
        pg.k[i] = f2bf(rndu() * (d % 17 == 3 ? 20.0f : 1.0f));
        pg.v[i] = f2bf(rndu());
    }
    for (int d = 0; d < D; d++) pg.k[pg.at(1, 0, 5, d) - pg.layer_off] = f2bf(0.25f); /* constant for slot 5 only */
    const std::vector<int32_t> pages = {2, 0, 3}, blocks = {1, 3, 0}; /* page i -> block i */
    Dev dk = upload(pg.k), dv = upload(pg.v), dpages = upload(pages), dblocks = upload(blocks);
    QuantPages qp(pg, qt);
    gw_cuda_kv kv0 = qp.view(pg, dk, dv, 0);
    int rc = gw_cuda_kv_seal(&kv0, 2, dpages.as<int32_t>(), dblocks.as<int32_t>(), n, NULL);
    if (!rc) rc = gw_cuda_sync(NULL);
    if (rc) {
        result(false, "%s: %s", name, gw_cuda_last_error());
        return;
    }
    std::vector<uint32_t> hkp(qp.kp.bytes / 4), hvp(qp.vp.bytes / 4);
    qp.kp.down(hkp.data()), qp.vp.down(hvp.data());
    Pages deq = pg; /* dequantized values of the sealed blocks, at the block's own index */
    qp.dequant_into(deq, blocks);
    long long bad_prm = 0, bad_val = 0, n_val = 0;
    double worst = 0;
    const int G = gwkvq::G;
    for (int i = 0; i < n; i++)
        for (int t = 0; t < 2 * KV; t++) {
            auto src_k = [&](int slot, int d) { return bf2f(pg.k[(size_t)pages[i] * pg.block_stride + ((size_t)t * BS + slot) * D + d]); };
            auto src_v = [&](int slot, int d) { return bf2f(pg.v[(size_t)pages[i] * pg.block_stride + ((size_t)t * BS + slot) * D + d]); };
            const size_t cp = (size_t)blocks[i] * qp.p_block_stride + t * qp.ptile;
            auto check = [&](float x, uint32_t prm, float mn, float mx, uint16_t got) {
                const uint16_t want_s = f32_to_half_bits((mx - mn) / qmax), want_m = f32_to_half_bits(mn);
                bad_prm += prm != ((uint32_t)want_s | (uint32_t)want_m << 16);
                const float sc = gwkvq::half_bits_f32(want_s);
                /* half a step, plus the fp16 rounding of scale and minimum (at most
                 * qmax/2 ulps of the scale: 1/8 step) and the bf16 rounding of the result */
                const double err = fabs((double)bf2f(got) - x), tol = 0.625 * sc + fabs(x) / 256 + 1e-6;
                bad_val += !(err <= tol);
                worst = std::max(worst, err / (sc > 0 ? sc : 1));
                n_val++;
            };
            for (int g = 0; g < BS / G; g++)
                for (int d = 0; d < D; d++) {
                    float mn = INFINITY, mx = -INFINITY;
                    for (int s2 = 0; s2 < G; s2++) mn = std::min(mn, src_k(g * G + s2, d)), mx = std::max(mx, src_k(g * G + s2, d));
                    for (int s2 = 0; s2 < G; s2++)
                        check(src_k(g * G + s2, d), hkp[cp + (size_t)g * D + d], mn, mx,
                              deq.k[(size_t)blocks[i] * pg.block_stride + ((size_t)t * BS + g * G + s2) * D + d]);
                }
            for (int slot = 0; slot < BS; slot++)
                for (int g = 0; g < D / G; g++) {
                    float mn = INFINITY, mx = -INFINITY;
                    for (int j = 0; j < G; j++) mn = std::min(mn, src_v(slot, g * G + j)), mx = std::max(mx, src_v(slot, g * G + j));
                    for (int j = 0; j < G; j++)
                        check(src_v(slot, g * G + j), hvp[cp + (size_t)slot * (D / G) + g], mn, mx,
                              deq.v[(size_t)blocks[i] * pg.block_stride + ((size_t)t * BS + slot) * D + g * G + j]);
                }
        }
    /* unseal blocks 1 and 0 into pages 2 and 1: the dequantized values, other pages untouched */
    const std::vector<int32_t> ub = {1, 0}, up = {2, 1};
    Dev dub = upload(ub), dup = upload(up);
    rc = gw_cuda_kv_unseal(&kv0, 2, dub.as<int32_t>(), dup.as<int32_t>(), 2, NULL);
    if (!rc) rc = gw_cuda_sync(NULL);
    std::vector<uint16_t> gk(pg.k.size()), gv(pg.v.size());
    dk.down(gk.data()), dv.down(gv.data());
    long long bad_un = 0;
    for (int p = 0; p < nb; p++)
        for (int64_t e = 0; e < pg.block_stride; e++) {
            const size_t at = (size_t)p * pg.block_stride + e;
            const int from = p == 2 ? 1 : p == 1 ? 0 : -1; /* block unsealed into page p */
            const size_t want_at = from < 0 ? at : (size_t)from * pg.block_stride + e;
            const uint16_t wk = from < 0 ? pg.k[at] : deq.k[want_at], wv = from < 0 ? pg.v[at] : deq.v[want_at];
            bad_un += gk[at] != wk || gv[at] != wv;
        }
    result(rc == 0 && bad_prm == 0 && bad_val == 0 && bad_un == 0,
           "%s: %lld of %lld params differ, %lld values off by more than half a step (worst %.3f steps), %lld page "
           "elements differ after unseal %s",
           name, bad_prm, n_val, bad_val, worst, bad_un, rc ? gw_cuda_last_error() : "");
}

/* Attention over a quantized cache: each sequence's blocks sealed except its
 * last (open: bf16, named -1 - page in the table), against the reference on
 * the values the sealed tiles dequantize to. */
static void test_attention_quant(int qt, bool prefill, int D, int H, int KV, const std::vector<SeqSpec> &seqs,
                                 int warps) {
    const int BS = 32;
    char name[256];
    int nm = snprintf(name, sizeof name, "attention %s %s dim %d heads %d/%d warps %d seqs", prefill ? "prefill" : "decode",
                      qt == GW_CUDA_KV_INT8 ? "int8" : "int4", D, H, KV, warps);
    for (auto &s : seqs) nm += snprintf(name + nm, sizeof name - nm, " %d+%d", s.ctx, s.n_new);
    if (!selected(name)) return;
    AttnSetup a(BS, KV, D, seqs);
    /* seal every block but each sequence's last: page b -> block b, same id */
    std::vector<int32_t> sealed, open_tables = a.tables;
    for (size_t s = 0; s < seqs.size(); s++) {
        const int nbk = (a.kv_lens[s] + BS - 1) / BS;
        for (int b = 0; b < nbk; b++) {
            int32_t &e = open_tables[s * a.max_blocks + b];
            if (b + 1 < nbk) sealed.push_back(e);
            else e = -1 - e;
        }
    }
    for (auto &x : a.pg.k) if (x == 0xFFFF) x = f2bf(0.0f); /* unwritten slots of sealed blocks: finite */
    for (auto &x : a.pg.v) if (x == 0xFFFF) x = f2bf(0.0f);
    Dev dk = upload(a.pg.k), dv = upload(a.pg.v);
    QuantPages qp(a.pg, qt);
    gw_cuda_kv kv0 = qp.view(a.pg, dk, dv, 0), kv = qp.view(a.pg, dk, dv, 1);
    if (!sealed.empty()) {
        Dev dsl = upload(sealed);
        GW(gw_cuda_kv_seal(&kv0, 2, dsl.as<int32_t>(), dsl.as<int32_t>(), (int)sealed.size(), NULL), name);
        GW(gw_cuda_sync(NULL), name);
    }
    /* poison the sealed blocks' bf16 pages: attention must not read them */
    for (int32_t b : sealed) CK(cudaMemset(dk.as<uint16_t>() + (size_t)b * a.pg.block_stride, 0xFF, a.pg.block_stride * 2));
    for (int32_t b : sealed) CK(cudaMemset(dv.as<uint16_t>() + (size_t)b * a.pg.block_stride, 0xFF, a.pg.block_stride * 2));
    qp.dequant_into(a.pg, sealed); /* the reference reads what the codes say */
    std::vector<int32_t> cu(1, 0);
    int max_q = 0;
    for (auto &s : seqs) cu.push_back(cu.back() + s.n_new), max_q = std::max(max_q, s.n_new);
    const int T = cu.back(), S = (int)seqs.size();
    const int64_t q_stride = (int64_t)H * D + 8, o_stride = (int64_t)H * D;
    std::vector<uint16_t> q((size_t)T * q_stride);
    for (auto &e : q) e = f2bf(rndu());
    Dev dq = upload(q), dcu = upload(cu), dlen = upload(a.kv_lens), dtab = upload(open_tables),
        dout((size_t)T * o_stride * 2);
    dout.poison();
    const float scale = 1.0f / sqrtf((float)D);
    int rc;
    if (prefill) {
        gw_cuda_attention_tune(warps);
        rc = gw_cuda_attention_prefill(&kv, dq.as<uint16_t>(), q_stride, dout.as<uint16_t>(), o_stride, S,
                                       dcu.as<int32_t>(), dlen.as<int32_t>(), dtab.as<int32_t>(), a.max_blocks, max_q,
                                       H, scale, NULL);
        gw_cuda_attention_tune(0);
    } else {
        int max_len = 0;
        for (int l : a.kv_lens) max_len = std::max(max_len, l);
        const int splits = gw_cuda_attention_decode_splits(S, H, KV, max_len);
        const size_t ws = gw_cuda_attention_decode_workspace(S, H, D, splits);
        Dev dws(ws);
        rc = gw_cuda_attention_decode(&kv, dq.as<uint16_t>(), q_stride, dout.as<uint16_t>(), o_stride, S,
                                      dlen.as<int32_t>(), dtab.as<int32_t>(), a.max_blocks, H, scale, splits,
                                      ws ? dws.p : NULL, ws, NULL);
        if (!rc) rc = gw_cuda_sync(NULL);
    }
    GW(rc, name);
    std::vector<uint16_t> out((size_t)T * o_stride);
    dout.down(out.data());
    check_outputs(a, seqs, cu, q, q_stride, out, o_stride, H, scale, name);
}

/* ------------------------------------------------------------------- main */

int main(int argc, char **argv) {
    g_rng = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--small")) g_small = true;
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) g_rng = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) g_only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--small] [--seed N] [--only SUBSTRING]\n", argv[0]);
            return 2;
        }
    }
    printf("test_cuda_kernels: seed %llu%s (built for sm_%s)\n", (unsigned long long)g_rng, g_small ? ", small" : "",
           gw_cuda_build_archs());

    host_checks();

    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) {
        printf("%d passed, %d failed (host checks only)\n", g_pass, g_fail);
        if (g_fail) return 1;
        printf("no CUDA device, skipped\n");
        return 77;
    }
    char info[256];
    gw_cuda_device_describe(0, info, sizeof info);
    printf("device: %s\n", info);
    char err[256];
    if (gw_cuda_device_check(0, 0, err, sizeof err) != 0) {
        result(false, "%s", err);
        finish_and_exit(1);
    }
    test_device_errors();

    /* GEMV: odd tails (few rows, short rows, several tokens, bias) for every
     * format and both x types; then Llama-3-8B shapes. */
    for (uint32_t t : k_types) {
        const int64_t odd = gwq::block_elems(t) == 256 ? 768 : gwq::block_elems(t) == 32 ? 96 : 48;
        for (int xt = 0; xt < 2; xt++) {
            test_gemv(t, 37, odd, 1, (gw_cuda_dtype)xt, false);
            test_gemv(t, 37, odd, 6, (gw_cuda_dtype)xt, true);
        }
        test_gemv(t, 3, 4096, 3, GW_CUDA_BF16, false);
        if (g_small) continue;
        test_gemv(t, 4096, 4096, 1, GW_CUDA_F32, false);
        test_gemv(t, 14336, 4096, 1, GW_CUDA_BF16, false);
        test_gemv(t, 4096, 14336, 2, GW_CUDA_BF16, true);
    }
    for (uint32_t t : k_types) {
        const int64_t odd = gwq::block_elems(t) == 256 ? 768 : gwq::block_elems(t) == 32 ? 96 : 48;
        test_dequant(t, 37, odd);
        test_dequant(t, g_small ? 16 : 300, 4096);
        test_embed(t, odd);
        test_embed(t, 4096);
    }

    gw_cuda_blas *blas = gw_cuda_blas_new(0, err, sizeof err);
    if (!blas) result(false, "cuBLASLt handle: %s", err);
    else {
        test_gemm(blas, 1, 96, 64, GW_CUDA_F32, 0.0f);
        test_gemm(blas, 37, 200, 256, GW_CUDA_F32, 1.0f);
        test_gemm(blas, 37, 200, 256, GW_CUDA_BF16, 0.0f);
        if (!g_small) test_gemm(blas, 256, 512, 1024, GW_CUDA_F32, 0.0f);
        gw_cuda_blas_free(blas);
    }

    for (int dim : {576, 4096})
        for (int add = 0; add < 2; add++) {
            test_rmsnorm(5, dim, add, GW_CUDA_F32, GW_CUDA_BF16);
            test_rmsnorm(5, dim, add, GW_CUDA_BF16, GW_CUDA_F32);
        }
    test_add_swiglu();
    for (int style = 0; style < 2; style++)
        for (int dt = 0; dt < 2; dt++) {
            test_rope(128, 128, style, (gw_cuda_dtype)dt, dt == 0);
            test_rope(64, 32, style, (gw_cuda_dtype)dt, false);
        }
    test_kv_append(16, 4, 128, GW_CUDA_F32);
    test_kv_append(64, 2, 64, GW_CUDA_BF16);
    for (int style = 0; style < 2; style++) {
        test_rope_qkv(128, 128, 8, 2, 16, style);
        test_rope_qkv(64, 32, 6, 3, 64, style);
    }

    /* prefill: cached prefixes, var-len batches, block sizes 16 and 64, head
     * dims 64/128, GQA 4:1 and 8:1, both CTA shapes */
    test_prefill(128, 8, 2, 16, {{0, 1}, {33, 17}, {250, 300}}, 4);
    test_prefill(64, 8, 2, 64, {{0, 1}, {64, 17}, {7, 300}}, 4);
    /* 2: the CTA of 4 warps x 2 row tiles, Q in shared memory */
    test_prefill(128, 8, 2, 16, {{0, 1}, {33, 17}, {250, 300}}, 2);
    test_prefill(64, 8, 2, 64, {{0, 1}, {64, 17}, {7, 300}}, 2);
    if (!g_small) {
        test_prefill(128, 16, 2, 64, {{5, 1}, {0, 17}, {100, 300}}, 4);
        test_prefill(64, 8, 1, 16, {{1, 1}, {16, 17}, {300, 300}}, 8);
        test_prefill(128, 8, 2, 16, {{33, 17}, {250, 300}, {0, 1}}, 8);
        test_prefill(128, 4, 1, 16, {{0, 1000}}, 4);
        test_prefill(128, 4, 1, 64, {{1500, 200}}, 8);
        test_prefill(128, 4, 1, 64, {{1500, 200}}, 2);
        test_prefill(128, 4, 1, 16, {{0, 1000}}, 2);
        test_prefill(64, 8, 1, 16, {{1, 1}, {16, 17}, {300, 300}}, 2);
    }
    /* decode: lengths 1 .. 5000, splits 1, 3, 16 and the heuristic's */
    for (int splits : {1, 3, 16, 0}) test_decode(128, 32, 8, 16, {1, 100, g_small ? 700 : 5000}, splits);
    test_decode(64, 16, 2, 64, {1, 700, 2049}, 5);
    test_decode(128, 40, 2, 16, {300, 64}, 4); /* group 20: two chunks of query heads */
    test_decode(64, 12, 2, 16, {129}, 1);      /* group 6 (Qwen2.5-1.5B) */

    /* streaming: the window moves down, keys re-rotated (overlapping and disjoint ranges) */
    test_kv_shift(16, 2, 128, 128, 0, 20, 4, 100);
    test_kv_shift(16, 3, 64, 32, 1, 68, 4, 40);
    test_kv_shift(32, 2, 128, 64, 1, 260, 4, 600);

    /* KV selection: scores and the gather of kept slots */
    test_probs_add(128, 32, 8, 16);
    test_probs_add(64, 9, 3, 64);
    test_kv_gather(128, 8, 16);
    test_kv_gather(64, 3, 32);

    /* quantized KV pages: sealing, and attention over sealed + open pages */
    for (int qt : {GW_CUDA_KV_INT8, GW_CUDA_KV_INT4}) {
        test_kv_seal(qt, 32, 2, 128);
        test_kv_seal(qt, 64, 3, 64);
        test_attention_quant(qt, true, 128, 8, 2, {{0, 1}, {33, 17}, {250, 300}}, 4);
        test_attention_quant(qt, true, 64, 8, 2, {{64, 17}, {7, 300}}, 2);
        test_attention_quant(qt, true, 128, 8, 2, {{100, 200}}, 8);
        test_attention_quant(qt, false, 128, 32, 8, {{0, 1}, {99, 1}, {g_small ? 700 : 5000, 1}}, 0);
        test_attention_quant(qt, false, 64, 12, 2, {{128, 1}, {2048, 1}}, 0);
    }

    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
