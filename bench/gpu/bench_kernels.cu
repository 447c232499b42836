/* bench_cuda_kernels: timings of the CUDA kernels against the two ceilings of
 * the card, measured in the same run:
 *   - device-to-device copy bandwidth (bytes read + bytes written), the ceiling
 *     of the memory-bound kernels (GEMV, decode attention);
 *   - cuBLASLt bf16 GEMM rate, the ceiling of prefill attention.
 * Then: GEMV per weight format at Llama-3-8B shapes (GB/s of weights, % of the
 * copy bandwidth), dequantization to bf16, decode attention at 1k..128k
 * (GB/s of K/V read), prefill attention at 4k..32k (TFLOP/s, causal FLOPs
 * 4*n^2*d*heads/2, % of the GEMM rate). Not a test: random inputs, no checks
 * (tests/cuda does those).
 *
 * Method: each measurement is a CUDA graph of several back-to-back launches
 * (so launch gaps stay out of µs-scale kernels), replayed after a warm-up; the
 * median replay over the launches in it. Weights rotate over enough copies to
 * exceed the L2 cache several times, so GEMV figures are DRAM figures.
 *
 *   bench_cuda_kernels [--quick] [--only gemv|attn]
 * The ceilings are measured in every run (they take well under a second);
 * --only runs one section after them (a fault in one section's kernel leaves
 * the CUDA context unusable, so run_device.sh runs the sections as separate
 * processes). Output: a table, one "|"-separated line per measurement. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "backend/cuda/gw_cuda.h"
#include "backend/cuda/quant_decode.cuh"

static cudaStream_t g_s;
static bool g_quick;
static const char *g_only; /* NULL: every section */

#define CK(call)                                                                                               \
    do {                                                                                                       \
        cudaError_t e_ = (call);                                                                               \
        if (e_ != cudaSuccess) {                                                                               \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));              \
            exit(1);                                                                                           \
        }                                                                                                      \
    } while (0)
#define GW(call)                                                                                               \
    do {                                                                                                       \
        if ((call) != 0) {                                                                                     \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, gw_cuda_last_error());                 \
            exit(1);                                                                                           \
        }                                                                                                      \
    } while (0)

static void *dalloc(size_t bytes) {
    void *p = NULL;
    GW(gw_cuda_malloc(&p, bytes));
    return p;
}

/* Random bytes (never zeros: they can run faster than real data). */
__global__ void fill_random(uint32_t *p, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 0x9E3779B1u ^ seed;
        x ^= x >> 15, x *= 0x2C1B3C6Du, x ^= x >> 12, x *= 0x297A2D39u, x ^= x >> 15;
        p[i] = x;
    }
}
/* Random bf16 in [-1, 1) (finite: attention and GEMM inputs). */
__global__ void fill_bf16(uint16_t *p, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 0x9E3779B1u ^ seed;
        x ^= x >> 15, x *= 0x2C1B3C6Du, x ^= x >> 12, x *= 0x297A2D39u, x ^= x >> 15;
        const float f = (float)(x >> 8) * (2.0f / 16777216.0f) - 1.0f;
        p[i] = (uint16_t)(__float_as_uint(f) >> 16);
    }
}
static void rnd_bytes(void *p, size_t bytes, uint32_t seed) {
    fill_random<<<1024, 256, 0, g_s>>>((uint32_t *)p, bytes / 4, seed);
    CK(cudaGetLastError());
}
static void rnd_bf16(void *p, size_t n, uint32_t seed) {
    fill_bf16<<<1024, 256, 0, g_s>>>((uint16_t *)p, n, seed);
    CK(cudaGetLastError());
}

/* Milliseconds per launch: launch(i) for i < n captured in a graph, replays
 * timed with events, median. n is picked so that a replay takes a few ms. */
static double time_ms(const std::function<void(int)> &launch, int replays = 7) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    launch(0); /* warm-up, and a first estimate */
    CK(cudaStreamSynchronize(g_s));
    CK(cudaEventRecord(a, g_s));
    launch(1);
    CK(cudaEventRecord(b, g_s));
    CK(cudaEventSynchronize(b));
    float est = 0;
    CK(cudaEventElapsedTime(&est, a, b));
    int n = est > 0 ? (int)(3.0 / est) : 100;
    n = std::max(1, std::min(n, 200));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CK(cudaStreamBeginCapture(g_s, cudaStreamCaptureModeRelaxed));
    for (int i = 0; i < n; i++) launch(i);
    CK(cudaStreamEndCapture(g_s, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    CK(cudaGraphLaunch(exec, g_s));
    std::vector<float> t;
    for (int r = 0; r < replays; r++) {
        CK(cudaEventRecord(a, g_s));
        CK(cudaGraphLaunch(exec, g_s));
        CK(cudaEventRecord(b, g_s));
        CK(cudaEventSynchronize(b));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms / n);
    }
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

static void row(const char *op, const char *shape, double ms, const char *metric, double value, double pct) {
    if (pct >= 0)
        printf("| %-16s | %-34s | %10.1f us | %9.1f %-7s | %5.1f%% |\n", op, shape, ms * 1e3, value, metric, pct);
    else
        printf("| %-16s | %-34s | %10.1f us | %9.1f %-7s |        |\n", op, shape, ms * 1e3, value, metric);
    fflush(stdout);
}

/* ------------------------------------------------------------- ceilings */

static double bench_copy(void) {
    const size_t bytes = (size_t)1 << 30;
    void *a = dalloc(bytes), *b = dalloc(bytes);
    rnd_bytes(a, bytes, 1);
    const double ms = time_ms([&](int) { CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, g_s)); });
    const double gbs = 2.0 * bytes / (ms * 1e-3) / 1e9;
    row("copy d2d", "1 GiB (read + write)", ms, "GB/s", gbs, -1);
    cudaFree(a), cudaFree(b);
    return gbs;
}

static double bench_gemm(int n) {
    gw_cuda_blas *h = gw_cuda_blas_new(0, NULL, 0);
    if (!h) {
        fprintf(stderr, "cuBLASLt: %s\n", gw_cuda_last_error());
        exit(1);
    }
    uint16_t *x = (uint16_t *)dalloc((size_t)n * n * 2), *w = (uint16_t *)dalloc((size_t)n * n * 2);
    uint16_t *y = (uint16_t *)dalloc((size_t)n * n * 2);
    rnd_bf16(x, (size_t)n * n, 2);
    rnd_bf16(w, (size_t)n * n, 3);
    const double ms =
        time_ms([&](int) { GW(gw_cuda_gemm(h, n, n, n, x, n, w, n, y, GW_CUDA_BF16, n, 1.0f, 0.0f, g_s)); });
    const double tf = 2.0 * n * n * (double)n / (ms * 1e-3) / 1e12;
    char shape[64];
    snprintf(shape, sizeof shape, "%dx%dx%d bf16 -> bf16", n, n, n);
    row("gemm cuBLASLt", shape, ms, "TFLOP/s", tf, -1);
    cudaFree(x), cudaFree(y), cudaFree(w);
    gw_cuda_blas_free(h);
    return tf;
}

/* ----------------------------------------------------------------- GEMV */

static const char *type_name(uint32_t t) {
    switch (t) {
    case gwq::F32: return "F32";
    case gwq::F16: return "F16";
    case gwq::BF16: return "BF16";
    case gwq::Q4_0: return "Q4_0";
    case gwq::Q4_1: return "Q4_1";
    case gwq::Q5_0: return "Q5_0";
    case gwq::Q5_1: return "Q5_1";
    case gwq::Q8_0: return "Q8_0";
    case gwq::Q4_K: return "Q4_K";
    case gwq::Q5_K: return "Q5_K";
    case gwq::Q6_K: return "Q6_K";
    default: return "?";
    }
}

static void bench_gemv(uint32_t type, int64_t rows, int64_t cols, int n, gw_cuda_dtype xt, double copy_gbs) {
    const size_t rb = gw_cuda_row_bytes(type, cols), bytes = rb * rows;
    const size_t stride = (bytes + 255) / 256 * 256;
    const int copies = (int)std::max<size_t>(1, std::min<size_t>(64, ((size_t)768 << 20) / bytes + 1));
    uint8_t *W = (uint8_t *)dalloc(stride * copies);
    rnd_bytes(W, stride * copies, 4);
    void *x = dalloc((size_t)n * cols * 4);
    rnd_bf16(x, (size_t)n * cols * 2, 5); /* finite values for either x type */
    float *y = (float *)dalloc((size_t)n * rows * 4);
    const double ms = time_ms([&](int i) {
        GW(gw_cuda_gemv(type, W + (size_t)(i % copies) * stride, rb, rows, cols, x, xt, cols, n, y, rows, NULL, g_s));
    });
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    char shape[96];
    snprintf(shape, sizeof shape, "%lldx%lld n=%d x=%s (%.0f MB)", (long long)rows, (long long)cols, n,
             xt == GW_CUDA_F32 ? "f32" : "bf16", bytes / 1e6);
    char op[32];
    snprintf(op, sizeof op, "gemv %s", type_name(type));
    row(op, shape, ms, "GB/s", gbs, 100.0 * gbs / copy_gbs);
    cudaFree(W), cudaFree(x), cudaFree(y);
}

static void bench_dequant(uint32_t type, int64_t rows, int64_t cols, double copy_gbs) {
    const size_t rb = gw_cuda_row_bytes(type, cols), bytes = rb * rows;
    uint8_t *W = (uint8_t *)dalloc(bytes);
    rnd_bytes(W, bytes, 6);
    uint16_t *out = (uint16_t *)dalloc((size_t)rows * cols * 2);
    const double ms = time_ms([&](int) { GW(gw_cuda_dequantize(type, W, rb, rows, cols, out, g_s)); });
    const double moved = bytes + (double)rows * cols * 2;
    const double gbs = moved / (ms * 1e-3) / 1e9;
    char shape[96];
    snprintf(shape, sizeof shape, "Q4_K %lldx%lld -> bf16 (rd+wr)", (long long)rows, (long long)cols);
    row("dequantize", shape, ms, "GB/s", gbs, 100.0 * gbs / copy_gbs);
    cudaFree(W), cudaFree(out);
}

/* ------------------------------------------------------------ attention */

struct PagedKV {
    gw_cuda_kv kv;
    int32_t *tables = nullptr, *lens = nullptr;
    int max_blocks = 0;
};

/* n_seqs sequences of len tokens each, blocks shuffled. */
static PagedKV make_kv(int n_seqs, int len, int KV, int D, int BS) {
    PagedKV p;
    p.max_blocks = (len + BS - 1) / BS;
    const int nb = n_seqs * p.max_blocks;
    const size_t elems = (size_t)nb * KV * BS * D;
    p.kv.k = (uint16_t *)dalloc(elems * 2);
    p.kv.v = (uint16_t *)dalloc(elems * 2);
    rnd_bf16(p.kv.k, elems, 7);
    rnd_bf16(p.kv.v, elems, 8);
    p.kv.block_size = BS, p.kv.n_kv_heads = KV, p.kv.head_dim = D, p.kv.block_stride = (int64_t)KV * BS * D;
    std::vector<int32_t> ids(nb), lens(n_seqs, len);
    for (int i = 0; i < nb; i++) ids[i] = i;
    uint64_t r = 12345;
    for (int i = nb - 1; i > 0; i--) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        std::swap(ids[i], ids[(int)((r >> 33) % (uint64_t)(i + 1))]);
    }
    p.tables = (int32_t *)dalloc(ids.size() * 4);
    p.lens = (int32_t *)dalloc(lens.size() * 4);
    CK(cudaMemcpy(p.tables, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(p.lens, lens.data(), lens.size() * 4, cudaMemcpyHostToDevice));
    return p;
}
static void free_kv(PagedKV &p) { cudaFree(p.kv.k), cudaFree(p.kv.v), cudaFree(p.tables), cudaFree(p.lens); }

static void bench_decode(int n_seqs, int len, double copy_gbs) {
    const int H = 32, KV = 8, D = 128, BS = 16;
    PagedKV p = make_kv(n_seqs, len, KV, D, BS);
    uint16_t *q = (uint16_t *)dalloc((size_t)n_seqs * H * D * 2), *o = (uint16_t *)dalloc((size_t)n_seqs * H * D * 2);
    rnd_bf16(q, (size_t)n_seqs * H * D, 9);
    const int splits = gw_cuda_attention_decode_splits(n_seqs, H, KV, len);
    const size_t ws_bytes = gw_cuda_attention_decode_workspace(n_seqs, H, D, splits);
    void *ws = ws_bytes ? dalloc(ws_bytes) : NULL;
    const double ms = time_ms([&](int) {
        GW(gw_cuda_attention_decode(&p.kv, q, (int64_t)H * D, o, (int64_t)H * D, n_seqs, p.lens, p.tables,
                                    p.max_blocks, H, 1.0f / sqrtf((float)D), splits, ws, ws_bytes, g_s));
    });
    const double bytes = (double)n_seqs * len * KV * D * 2 * 2;
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    char shape[96];
    snprintf(shape, sizeof shape, "%dx ctx %dk, 32/8 heads d128, %d splits", n_seqs, len / 1024, splits);
    row("attn decode", shape, ms, "GB/s", gbs, 100.0 * gbs / copy_gbs);
    free_kv(p);
    cudaFree(q), cudaFree(o), cudaFree(ws);
}

/* One sequence: n_new new tokens after ctx cached ones. */
static void bench_prefill(int ctx, int n_new, int warps, double gemm_tflops) {
    const int H = 32, KV = 8, D = 128, BS = 16, len = ctx + n_new;
    PagedKV p = make_kv(1, len, KV, D, BS);
    uint16_t *q = (uint16_t *)dalloc((size_t)n_new * H * D * 2), *o = (uint16_t *)dalloc((size_t)n_new * H * D * 2);
    rnd_bf16(q, (size_t)n_new * H * D, 10);
    const int32_t cu_h[2] = {0, n_new};
    int32_t *cu = (int32_t *)dalloc(8);
    CK(cudaMemcpy(cu, cu_h, 8, cudaMemcpyHostToDevice));
    gw_cuda_attention_tune(warps);
    const double ms = time_ms(
        [&](int) {
            GW(gw_cuda_attention_prefill(&p.kv, q, (int64_t)H * D, o, (int64_t)H * D, 1, cu, p.lens, p.tables,
                                         p.max_blocks, n_new, H, 1.0f / sqrtf((float)D), g_s));
        },
        5);
    gw_cuda_attention_tune(0);
    /* causal: each new token i sees ctx + i + 1 keys; 4*d FLOPs per (query, key, head) */
    const double pairs = (double)n_new * ctx + (double)n_new * (n_new + 1) / 2;
    const double tf = 4.0 * pairs * D * H / (ms * 1e-3) / 1e12;
    char shape[96];
    char cta[16]; /* tune code 2: 4 warps of 2 x 16 rows */
    snprintf(cta, sizeof cta, warps == 0 ? "auto" : warps == 2 ? "4w x2" : "%dw", warps);
    if (ctx) snprintf(shape, sizeof shape, "%d new after %dk, 32/8 d128, %s", n_new, ctx / 1024, cta);
    else snprintf(shape, sizeof shape, "%dk causal, 32/8 heads d128, %s", n_new / 1024, cta);
    row("attn prefill", shape, ms, "TFLOP/s", tf, 100.0 * tf / gemm_tflops);
    free_kv(p);
    cudaFree(q), cudaFree(o), cudaFree(cu);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) g_quick = true;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) g_only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--only gemv|attn]\n", argv[0]);
            return 2;
        }
    }
    char err[256];
    if (gw_cuda_device_check(0, (size_t)6 << 30, err, sizeof err) != 0) {
        printf("bench_cuda_kernels: %s\n", err);
        return 77;
    }
    char info[256];
    gw_cuda_device_describe(0, info, sizeof info);
    printf("device: %s\n", info);
    CK(cudaStreamCreateWithFlags(&g_s, cudaStreamNonBlocking));
    printf("| %-16s | %-34s | %13s | %17s | %6s |\n", "op", "shape", "time", "rate", "% ceil");
    printf("|------------------|------------------------------------|---------------|-------------------|--------|\n");

    const double copy_gbs = bench_copy();
    double gemm_tf = bench_gemm(4096);
    gemm_tf = std::max(gemm_tf, bench_gemm(8192));

    if (!g_only || !strcmp(g_only, "gemv")) {
        /* Llama-3-8B: q/o 4096x4096, gate/up 14336x4096, down 4096x14336, head 128256x4096 */
        const int64_t shapes[4][2] = {{4096, 4096}, {14336, 4096}, {4096, 14336}, {128256, 4096}};
        const uint32_t types[] = {gwq::BF16, gwq::Q8_0, gwq::Q6_K, gwq::Q5_K, gwq::Q4_K, gwq::Q4_1, gwq::Q4_0};
        for (uint32_t t : types)
            for (int s = 0; s < 4; s++) {
                if (g_quick && s != 1) continue;
                bench_gemv(t, shapes[s][0], shapes[s][1], 1, GW_CUDA_BF16, copy_gbs);
            }
        bench_gemv(gwq::Q4_K, 14336, 4096, 1, GW_CUDA_F32, copy_gbs);
        bench_gemv(gwq::Q4_K, 14336, 4096, 4, GW_CUDA_BF16, copy_gbs);
        bench_gemv(gwq::Q8_0, 14336, 4096, 4, GW_CUDA_BF16, copy_gbs);
        bench_dequant(gwq::Q4_K, 14336, 4096, copy_gbs);
    }
    if (!g_only || !strcmp(g_only, "attn")) {
        for (int len : {1024, 8192, 32768, 131072}) bench_decode(1, len, copy_gbs);
        if (!g_quick) bench_decode(16, 8192, copy_gbs);
        for (int n : {4096, 8192, 32768}) {
            if (g_quick && n == 32768) continue;
            bench_prefill(0, n, 4, gemm_tf);
            bench_prefill(0, n, 8, gemm_tf);
            bench_prefill(0, n, 2, gemm_tf); /* 4 warps x 2 row tiles */
            bench_prefill(0, n, 0, gemm_tf); /* what the engine picks */
        }
        bench_prefill(32768, 512, 4, gemm_tf);
        bench_prefill(32768, 512, 2, gemm_tf);
        bench_prefill(32768, 512, 0, gemm_tf);
    }
    CK(cudaStreamDestroy(g_s));
    return 0;
}
