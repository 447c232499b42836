/* bf16 GEMM through cuBLASLt for prefill: Y[M][N] = alpha X[M][K] W[N][K]^T +
 * beta Y, row-major, f32 accumulation, Y in f32 or bf16.
 *
 * cuBLAS is column-major. A row-major [R][C] matrix with row stride ld is the
 * column-major C x R matrix with leading dimension ld, so the product is
 * computed as the column-major  Y^T (N x M) = W^T' (N x K) . X^T (K x M):
 *   A = W stored as column-major K x N (ld ldw), op(A) = transpose -> N x K
 *   B = X stored as column-major K x M (ld ldx), op(B) = none      -> K x M
 *   C = D = Y as column-major N x M (ld ldy)
 * i.e. the "TN" layout, the one cuBLASLt's bf16 kernels prefer.
 *
 * The descriptors and the heuristic's algorithm are cached per shape (a small
 * ring of recent shapes): a forward pass repeats the same few shapes. */
#include <cublasLt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/common.cuh"

#define GEMM_CACHE 16

typedef struct {
    int valid;
    int M, N, K, yt;
    int64_t ldx, ldw, ldy;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} gemm_plan;

struct gw_cuda_blas {
    cublasLtHandle_t lt;
    void *ws;
    size_t ws_bytes;
    gemm_plan plans[GEMM_CACHE];
    int next;
};

static int blas_fail(const char *what, cublasStatus_t st) {
    return gw_cuda_fail(GW_CUDA_ERR_BLAS, "cuBLASLt %s: %s (%d)", what, cublasLtGetStatusString(st), (int)st);
}

static void plan_release(gemm_plan *p) {
    if (!p->valid) return;
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    memset(p, 0, sizeof *p);
}

extern "C" gw_cuda_blas *gw_cuda_blas_new(size_t workspace_bytes, char *err, size_t errlen) {
    gw_cuda_blas *h = (gw_cuda_blas *)calloc(1, sizeof *h);
    if (!h) {
        gw_cuda_fail(GW_CUDA_ERR_NO_MEMORY, "cuBLASLt: out of host memory");
        if (err) snprintf(err, errlen, "%s", gw_cuda_last_error());
        return NULL;
    }
    cublasStatus_t st = cublasLtCreate(&h->lt);
    if (st != CUBLAS_STATUS_SUCCESS) {
        blas_fail("create", st);
        if (err) snprintf(err, errlen, "%s", gw_cuda_last_error());
        free(h);
        return NULL;
    }
    h->ws_bytes = workspace_bytes ? workspace_bytes : ((size_t)32 << 20);
    if (gw_cuda_malloc(&h->ws, h->ws_bytes) != GW_CUDA_OK) {
        if (err) snprintf(err, errlen, "cuBLASLt workspace: %s", gw_cuda_last_error());
        cublasLtDestroy(h->lt);
        free(h);
        return NULL;
    }
    return h;
}

extern "C" void gw_cuda_blas_free(gw_cuda_blas *h) {
    if (!h) return;
    for (int i = 0; i < GEMM_CACHE; i++) plan_release(&h->plans[i]);
    cudaFree(h->ws);
    cublasLtDestroy(h->lt);
    free(h);
}

static int plan_make(gw_cuda_blas *h, gemm_plan *p, int M, int N, int K, int64_t ldx, int64_t ldw, int64_t ldy,
                     gw_cuda_dtype yt) {
    memset(p, 0, sizeof *p);
    cublasStatus_t st;
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const cudaDataType_t ct = yt == GW_CUDA_F32 ? CUDA_R_32F : CUDA_R_16BF;
    if ((st = cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F)) != CUBLAS_STATUS_SUCCESS)
        return blas_fail("matmul descriptor", st);
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if ((st = cublasLtMatrixLayoutCreate(&p->la, CUDA_R_16BF, K, N, ldw)) != CUBLAS_STATUS_SUCCESS ||
        (st = cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_16BF, K, M, ldx)) != CUBLAS_STATUS_SUCCESS ||
        (st = cublasLtMatrixLayoutCreate(&p->lc, ct, N, M, ldy)) != CUBLAS_STATUS_SUCCESS) {
        p->valid = 1; /* release what was created */
        plan_release(p);
        return blas_fail("matrix layout", st);
    }
    p->valid = 1;
    cublasLtMatmulPreference_t pref;
    if ((st = cublasLtMatmulPreferenceCreate(&pref)) != CUBLAS_STATUS_SUCCESS) {
        plan_release(p);
        return blas_fail("preference", st);
    }
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &h->ws_bytes,
                                         sizeof h->ws_bytes);
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    st = cublasLtMatmulAlgoGetHeuristic(h->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, 1, &res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
        plan_release(p);
        if (st == CUBLAS_STATUS_SUCCESS)
            return gw_cuda_fail(GW_CUDA_ERR_BLAS, "cuBLASLt: no algorithm for %d x %d x %d (ld %lld %lld %lld)", M, N,
                                K, (long long)ldx, (long long)ldw, (long long)ldy);
        return blas_fail("heuristic", st);
    }
    p->algo = res.algo;
    p->M = M, p->N = N, p->K = K, p->yt = (int)yt, p->ldx = ldx, p->ldw = ldw, p->ldy = ldy;
    return GW_CUDA_OK;
}

extern "C" int gw_cuda_gemm(gw_cuda_blas *h, int M, int N, int K, const uint16_t *X, int64_t ldx, const uint16_t *W,
                            int64_t ldw, void *Y, gw_cuda_dtype y_type, int64_t ldy, float alpha, float beta,
                            void *stream) {
    if (!h) return gw_cuda_fail(GW_CUDA_ERR_ARG, "gemm: no cuBLASLt handle");
    if (M <= 0 || N <= 0 || K <= 0 || ldx < K || ldw < K || ldy < N)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "gemm: bad shape M %d N %d K %d (ld %lld %lld %lld)", M, N, K,
                            (long long)ldx, (long long)ldw, (long long)ldy);
    gemm_plan *p = NULL;
    for (int i = 0; i < GEMM_CACHE; i++) {
        gemm_plan *c = &h->plans[i];
        if (c->valid && c->M == M && c->N == N && c->K == K && c->yt == (int)y_type && c->ldx == ldx &&
            c->ldw == ldw && c->ldy == ldy) {
            p = c;
            break;
        }
    }
    if (!p) {
        p = &h->plans[h->next];
        h->next = (h->next + 1) % GEMM_CACHE;
        plan_release(p);
        int rc = plan_make(h, p, M, N, K, ldx, ldw, ldy, y_type);
        if (rc) return rc;
    }
    cublasStatus_t st = cublasLtMatmul(h->lt, p->op, &alpha, W, p->la, X, p->lb, &beta, Y, p->lc, Y, p->lc, &p->algo,
                                       h->ws, h->ws_bytes, GW_STREAM(stream));
    if (st != CUBLAS_STATUS_SUCCESS) return blas_fail("matmul", st);
    return GW_CUDA_OK;
}
