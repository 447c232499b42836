/* The forward pass on an NVIDIA GPU (see engine.h). Per layer, for T tokens:
 *
 *   xn = rmsnorm(x) (bf16)          q|k|v = xn . Wq|Wk|Wv (f32, one buffer)
 *   (+ biases) -> RoPE on q, k; q to bf16, k, v into the pages (one kernel)
 *   attention: decode rows (runs of 1 token, flash-decoding)
 *                           then prefill rows (longer runs, FlashAttention-2)
 *   delta = att . Wo   ->  x += delta, xn = rmsnorm(x) (one fused kernel)
 *   gate|up = xn . Wgate|Wup -> act = silu(gate) * up (bf16)
 *   delta = act . Wdown -> x += delta (fused with the next layer's norm)
 *
 * The residual stream x and every matrix product's output are f32; the
 * inputs of matrix products and the KV pages are bf16 (tensor cores). Matrix
 * products of up to a few tokens read the weights in their stored format
 * (gw_cuda_gemv: decode is bound by reading them); longer ones go through
 * cuBLASLt, BF16 weights directly and other formats dequantized to bf16 a
 * slice at a time into a scratch buffer.
 *
 * Tokens are reordered on the way in so that decode tokens come first (the
 * decode kernel takes query row i for run i) and each prefill run's tokens are
 * contiguous; logits rows come back in the caller's order.
 *
 * Pure decode batches are captured as CUDA graphs (one per batch size, block
 * table width and split count) and replayed: a step is then one graph launch
 * instead of ~12 kernel launches per layer. GODWIT_CUDA_GRAPHS=0 turns this off. */
#ifdef GODWIT_CUDA
#include "backend/cuda/engine.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/quant.h"
#include "backend/cuda/gw_cuda.h"
#include "model/model.h"
#include "model/tensor_types.h"
#include "util/error.h"

/* Products of at most this many tokens read the weights in place (GEMV);
 * quantized weights stay in place longer, as dequantizing costs a write and a
 * read of bf16 per weight. */
#define GEMV_MAX_BF16 4
#define GEMV_MAX_QUANT 16
#define MAX_GRAPHS 8

typedef struct {
    uint32_t type;
    void *d;
    int64_t rows, cols;
    size_t row_bytes;
} dmat;

/* q|k|v and gate|up are stacked into one matrix each when their types match
 * (always for BF16 checkpoints; GGUF Q4_K_M files mix Q4_K and Q6_K): one
 * product writes the qkv and gate|up buffers in the layout they are read in. */
typedef struct {
    float *attn_norm, *ffn_norm;
    float *bqkv;                 /* q|k|v biases (qwen2) or NULL */
    dmat wqkv, wgu;              /* stacked, or d == NULL */
    dmat wq, wk, wv, w_gate, w_up; /* when not stacked */
    dmat wo, w_down;
} dlayer;

/* Where each part of one forward's host data lies in the staging buffer (and
 * in its device mirror), in int32 elements. */
typedef struct {
    int T, nd, np, n_out;
    int sd, sp;          /* block table row strides: decode runs, prefill runs */
    int max_q_len, max_kv_d, n_splits;
    int n_score;         /* rows that add to KV selection scores */
    int64_t score_cap;
    size_t tok, pos, slot, out, kvl_d, bt_d, cu_p, kvl_p, bt_p, sc_row, sc_len, sc_tab, sc_ptr, n_ints;
} plan;

typedef struct {
    bool used;
    int T, n_out, sd, n_splits;
    void *exec;
    uint64_t last_use;
} graph_entry;

struct gw_cuda_engine {
    const gw_model *m;
    void *stream;
    gw_cuda_blas *blas;
    int n_batch, block_size;
    int32_t n_blocks;
    /* weights */
    dmat tok_embd, output;
    float *output_norm, *inv_freq;
    dlayer *layers;
    size_t weight_bytes;
    /* KV pages: [block][layer][kv head][slot][d], bf16; for a quantized cache
     * (kv_type GW_CUDA_KV_INT8/INT4) these are the max_open open pages, and
     * sealed blocks are codes and parameters (gw_cuda.h's layout, all layers
     * of a block together) */
    uint16_t *k, *v;
    int64_t block_stride;
    int kv_type;
    int32_t max_open;
    uint8_t *kq, *vq;
    uint32_t *kp, *vp;
    int64_t q_block_stride, p_block_stride;
    int32_t *seal_d;     /* device lists of pages and blocks to seal or unseal */
    int32_t *shift_d;    /* streaming: a block table and (cos, sin) pairs */
    float *inv_freq_h;   /* host copy of the RoPE frequencies (streaming's rotations) */
    size_t kv_bytes;
    /* activations, for n_batch tokens */
    float *x, *delta, *qkv, *gu;
    uint16_t *xn, *qb, *att, *act;
    uint16_t *wdq;       /* bf16 scratch for dequantized weights (NULL if all BF16) */
    size_t wdq_elems;
    float *logits;       /* [logits_rows][n_vocab] */
    int logits_rows;
    void *ws;            /* decode split workspace */
    size_t ws_bytes;
    int32_t *stage_h, *stage_d; /* per-forward host data: pinned staging and its device copy */
    size_t stage_ints;
    int32_t *perm, *inv;  /* host: [n_batch] batch order -> engine order and back */
    int32_t *tok_len, *tok_tab; /* host: [n_batch] slots a token sees, its table's offset in staging */
    /* graphs */
    bool use_graphs;
    double split_scale;  /* decode splits x this (GODWIT_DECODE_SPLITS_X; 1 by default) */
    graph_entry graphs[MAX_GRAPHS];
    uint64_t use_clock;
    char graph_note[256]; /* why graphs were turned off at run time, if they were */
    char device_desc[256];
};

/* ------------------------------------------------------------------ setup */

#define CK(call)                                                                 \
    do {                                                                         \
        if ((call) != 0) {                                                       \
            gw_set_err(err, errlen, "CUDA: %s", gw_cuda_last_error());           \
            goto fail;                                                           \
        }                                                                        \
    } while (0)

static size_t dmat_bytes(const gw_matrix *w) {
    return w->type == GW_TYPE_F32 ? (size_t)w->rows * w->cols * 2 : (size_t)w->rows * w->row_bytes;
}

/* The type a matrix has on the GPU: as stored, or BF16 when stored as F32
 * (the GEMV and cuBLASLt paths have no F32 weights). */
static uint32_t device_type(const gw_matrix *w) { return w->type == GW_TYPE_F32 ? GW_TYPE_BF16 : w->type; }

/* Copies matrix w's rows to dst (device), converting F32 to BF16 on the host
 * a slice of rows at a time. */
static int upload_rows(char *dst, const gw_matrix *w, const char *name, char *err, size_t errlen) {
    if (w->type != GW_TYPE_F32) {
        if (gw_cuda_memcpy(dst, w->data, (size_t)w->rows * w->row_bytes, GW_CUDA_H2D, NULL) != 0) {
            gw_set_err(err, errlen, "CUDA: %s", gw_cuda_last_error());
            return -1;
        }
        return 0;
    }
    int64_t chunk = (16 << 20) / (w->cols * 2) + 1;
    uint16_t *tmp = malloc((size_t)chunk * w->cols * 2);
    if (!tmp) {
        gw_set_err(err, errlen, "CUDA backend: out of host memory converting %s", name);
        return -1;
    }
    for (int64_t r0 = 0; r0 < w->rows; r0 += chunk) {
        int64_t nr = w->rows - r0 < chunk ? w->rows - r0 : chunk;
        for (int64_t r = 0; r < nr; r++) {
            const float *src = (const float *)((const char *)w->data + (size_t)(r0 + r) * w->row_bytes);
            for (int64_t c = 0; c < w->cols; c++) tmp[r * w->cols + c] = gw_fp32_to_bf16(src[c]);
        }
        if (gw_cuda_memcpy(dst + (size_t)r0 * w->cols * 2, tmp, (size_t)nr * w->cols * 2, GW_CUDA_H2D, NULL) != 0) {
            free(tmp);
            gw_set_err(err, errlen, "CUDA: %s", gw_cuda_last_error());
            return -1;
        }
    }
    free(tmp);
    return 0;
}

/* Uploads n matrices of one device type and width as one matrix, their rows
 * stacked in order. */
static int upload_stack(dmat *d, const gw_matrix *const *ws, int n, const char *name, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    d->type = device_type(ws[0]);
    d->cols = ws[0]->cols;
    d->row_bytes = gw_cuda_row_bytes(d->type, d->cols);
    for (int i = 0; i < n; i++) d->rows += ws[i]->rows;
    if (!gw_cuda_type_supported(d->type) || d->row_bytes == 0 ||
        (ws[0]->type != GW_TYPE_F32 && ws[0]->row_bytes != d->row_bytes)) {
        gw_set_err(err, errlen, "CUDA backend: tensor %s has type %s, which the GPU kernels do not handle "
                                "(supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)",
                   name, gw_type_name(ws[0]->type));
        return -1;
    }
    if (gw_cuda_malloc(&d->d, (size_t)d->rows * d->row_bytes) != 0) {
        gw_set_err(err, errlen, "CUDA: %s", gw_cuda_last_error());
        return -1;
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (upload_rows((char *)d->d + off, ws[i], name, err, errlen) != 0) return -1;
        off += (size_t)ws[i]->rows * d->row_bytes;
    }
    return 0;
}

static int upload_matrix(dmat *d, const gw_matrix *w, const char *name, char *err, size_t errlen) {
    return upload_stack(d, &w, 1, name, err, errlen);
}

/* Stacks the matrices when they share a device type and width; else each
 * alone into outs[i]. */
static int upload_maybe_stacked(dmat *stack, dmat *const *outs, const gw_matrix *const *ws, int n, const char *name,
                                char *err, size_t errlen) {
    bool same = true;
    for (int i = 1; i < n; i++)
        same = same && device_type(ws[i]) == device_type(ws[0]) && ws[i]->cols == ws[0]->cols;
    if (same) return upload_stack(stack, ws, n, name, err, errlen);
    for (int i = 0; i < n; i++)
        if (upload_matrix(outs[i], ws[i], name, err, errlen) != 0) return -1;
    return 0;
}

static int upload_floats(float **d, const float *h, size_t n, char *err, size_t errlen) {
    *d = NULL;
    if (!h) return 0;
    if (gw_cuda_malloc((void **)d, n * sizeof(float)) != 0 ||
        gw_cuda_memcpy(*d, h, n * sizeof(float), GW_CUDA_H2D, NULL) != 0) {
        gw_set_err(err, errlen, "CUDA: %s", gw_cuda_last_error());
        return -1;
    }
    return 0;
}

static bool needs_dequant(uint32_t type) { return type != GW_TYPE_BF16; }

static void graphs_drop(gw_cuda_engine *e) {
    for (int i = 0; i < MAX_GRAPHS; i++) {
        if (e->graphs[i].used) gw_cuda_graph_free(e->graphs[i].exec);
        e->graphs[i].used = false;
    }
}

void gw_cuda_engine_free(gw_cuda_engine *e) {
    if (!e) return;
    gw_cuda_sync(e->stream);
    graphs_drop(e);
    const gw_model *m = e->m;
    if (e->layers) {
        for (int l = 0; l < m->n_layer; l++) {
            dlayer *L = &e->layers[l];
            void *ps[] = {L->attn_norm, L->ffn_norm, L->bqkv,   L->wqkv.d, L->wgu.d,  L->wq.d,
                          L->wk.d,        L->wv.d,       L->wo.d,  L->w_gate.d, L->w_up.d, L->w_down.d};
            for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
                if (ps[i]) gw_cuda_free(ps[i]);
        }
        free(e->layers);
    }
    if (e->output.d && e->output.d != e->tok_embd.d) gw_cuda_free(e->output.d);
    void *ps[] = {e->tok_embd.d, e->output_norm, e->inv_freq, e->k, e->v, e->x, e->delta, e->qkv, e->gu,
                  e->xn, e->qb, e->att, e->act, e->wdq, e->logits, e->ws, e->stage_d,
                  e->kq, e->vq, e->kp, e->vp, e->seal_d, e->shift_d};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
        if (ps[i]) gw_cuda_free(ps[i]);
    gw_cuda_host_free(e->stage_h);
    gw_cuda_blas_free(e->blas);
    gw_cuda_stream_free(e->stream);
    free(e->perm);
    free(e->inv);
    free(e->tok_len);
    free(e->tok_tab);
    free(e->inv_freq_h);
    free(e);
}

gw_cuda_engine *gw_cuda_engine_new(const gw_model *m, const float *inv_freq, int32_t n_blocks, int block_size,
                                   int n_batch, int kv_type, int32_t max_open, char *err, size_t errlen) {
    const int E = m->n_embd, H = m->n_head, KV = m->n_head_kv, D = m->head_dim, F = m->n_ff;
    const size_t qd = (size_t)H * D, kvd = (size_t)KV * D, B = (size_t)n_batch;
    if (D != 64 && D != 128) {
        gw_set_err(err, errlen, "CUDA backend: head_dim %d is not supported (the attention kernels take 64 or 128)",
                   D);
        return NULL;
    }
    if (E % 16 || F % 16 || qd % 16) {
        gw_set_err(err, errlen, "CUDA backend: n_embd %d, n_ff %d and n_head*head_dim %zu must be multiples of 16",
                   E, F, qd);
        return NULL;
    }
    /* What it all needs, checked against the GPU's free memory up front. */
    size_t weights = dmat_bytes(&m->tok_embd) + (m->output.data != m->tok_embd.data ? dmat_bytes(&m->output) : 0);
    size_t max_mat = 0, out_mat = (size_t)m->output.rows * m->output.cols;
    bool any_dequant = needs_dequant(m->output.type == GW_TYPE_F32 ? GW_TYPE_BF16 : m->output.type);
    for (int l = 0; l < m->n_layer; l++) {
        const gw_layer *L = &m->layers[l];
        const gw_matrix *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof *ws; i++) {
            weights += dmat_bytes(ws[i]);
            size_t n = (size_t)ws[i]->rows * ws[i]->cols;
            if (n > max_mat) max_mat = n;
            if (needs_dequant(ws[i]->type == GW_TYPE_F32 ? GW_TYPE_BF16 : ws[i]->type)) any_dequant = true;
        }
    }
    size_t wdq_elems = 0;
    if (any_dequant) wdq_elems = max_mat > out_mat ? out_mat : max_mat;
    if (wdq_elems < (size_t)64 * m->output.cols) wdq_elems = (size_t)64 * m->output.cols;
    const int64_t block_stride = (int64_t)m->n_layer * KV * block_size * D;
    const bool quant = kv_type != GW_CUDA_KV_BF16;
    if (quant && (block_size % 32 || D % 32 || max_open < 1)) {
        gw_set_err(err, errlen, "CUDA backend: a quantized KV cache needs a block size multiple of 32 (got %d)",
                   block_size);
        return NULL;
    }
    if (!quant) max_open = 0;
    if (max_open > n_blocks) max_open = n_blocks;
    /* per block, all layers: codes (K and V) and (scale, min) pairs (K and V) */
    const int64_t tiles = (int64_t)m->n_layer * KV;
    const int64_t q_block_stride = quant ? tiles * block_size * D / (kv_type == GW_CUDA_KV_INT4 ? 2 : 1) : 0;
    const int64_t p_block_stride = quant ? tiles * block_size * D / 32 : 0;
    const size_t page_bytes = 2 * (size_t)block_stride * sizeof(uint16_t);
    const size_t kv_bytes = quant ? (size_t)n_blocks * 2 * (q_block_stride + 4 * p_block_stride) + (size_t)max_open * page_bytes
                                  : (size_t)n_blocks * page_bytes;
    const size_t act = B * E * (4 + 4 + 2) + B * (qd + 2 * kvd) * 4 + B * qd * 2 * 2 + B * F * (8 + 2);
    const size_t need = weights + kv_bytes + act + wdq_elems * 2 + (64u << 20) /* cuBLASLt, logits, misc */;
    char cerr[512];
    if (gw_cuda_device_check(0, need, cerr, sizeof cerr) != 0) {
        gw_set_err(err, errlen,
                   "CUDA backend: %s (weights %.2f GiB + KV cache %.2f GiB for %lld tokens + activations %.2f GiB "
                   "for batches of %d tokens)",
                   cerr, weights / 1073741824.0, kv_bytes / 1073741824.0, (long long)n_blocks * block_size,
                   (act + wdq_elems * 2) / 1073741824.0, n_batch);
        return NULL;
    }

    gw_cuda_engine *e = calloc(1, sizeof *e);
    if (!e) {
        gw_set_err(err, errlen, "CUDA backend: out of memory");
        return NULL;
    }
    e->m = m;
    e->n_batch = n_batch;
    e->block_size = block_size;
    e->n_blocks = n_blocks;
    e->block_stride = block_stride;
    e->kv_type = kv_type;
    e->max_open = max_open;
    e->q_block_stride = q_block_stride;
    e->p_block_stride = p_block_stride;
    e->kv_bytes = kv_bytes;
    e->weight_bytes = weights;
    const char *g = getenv("GODWIT_CUDA_GRAPHS");
    e->use_graphs = !(g && !strcmp(g, "0"));
    /* GODWIT_DECODE_SPLITS_X: scales the decode kernel's split count (a tuning knob for benchmarks) */
    const char *sx = getenv("GODWIT_DECODE_SPLITS_X");
    e->split_scale = sx && atof(sx) > 0 ? atof(sx) : 1.0;
    gw_cuda_device_describe(0, e->device_desc, sizeof e->device_desc);
    CK(gw_cuda_stream_new(&e->stream));
    e->blas = gw_cuda_blas_new(0, cerr, sizeof cerr);
    if (!e->blas) {
        gw_set_err(err, errlen, "CUDA backend: %s", cerr);
        goto fail;
    }
    e->perm = malloc(B * sizeof(int32_t));
    e->inv = malloc(B * sizeof(int32_t));
    e->tok_len = malloc(B * sizeof(int32_t));
    e->tok_tab = malloc(B * sizeof(int32_t));
    e->inv_freq_h = malloc((size_t)(m->rope_dim / 2 + 1) * sizeof(float));
    if (e->inv_freq_h) memcpy(e->inv_freq_h, inv_freq, (size_t)(m->rope_dim / 2) * sizeof(float));
    e->layers = calloc((size_t)m->n_layer, sizeof *e->layers);
    if (!e->perm || !e->inv || !e->tok_len || !e->tok_tab || !e->layers || !e->inv_freq_h) {
        gw_set_err(err, errlen, "CUDA backend: out of memory");
        goto fail;
    }

    /* weights */
    if (upload_matrix(&e->tok_embd, &m->tok_embd, "token_embd", err, errlen) != 0) goto fail;
    if (m->output.data == m->tok_embd.data) e->output = e->tok_embd;
    else if (upload_matrix(&e->output, &m->output, "output", err, errlen) != 0) goto fail;
    if (upload_floats(&e->output_norm, m->output_norm, E, err, errlen) != 0) goto fail;
    if (upload_floats(&e->inv_freq, inv_freq, m->rope_dim / 2, err, errlen) != 0) goto fail;
    for (int l = 0; l < m->n_layer; l++) {
        const gw_layer *L = &m->layers[l];
        dlayer *d = &e->layers[l];
        char name[64];
        snprintf(name, sizeof name, "blk.%d", l);
        const gw_matrix *qkv[3] = {&L->wq, &L->wk, &L->wv}, *gu[2] = {&L->w_gate, &L->w_up};
        dmat *qkv_out[3] = {&d->wq, &d->wk, &d->wv}, *gu_out[2] = {&d->w_gate, &d->w_up};
        if (upload_floats(&d->attn_norm, L->attn_norm, E, err, errlen) != 0 ||
            upload_floats(&d->ffn_norm, L->ffn_norm, E, err, errlen) != 0 ||
            upload_maybe_stacked(&d->wqkv, qkv_out, qkv, 3, name, err, errlen) != 0 ||
            upload_maybe_stacked(&d->wgu, gu_out, gu, 2, name, err, errlen) != 0 ||
            upload_matrix(&d->wo, &L->wo, name, err, errlen) != 0 ||
            upload_matrix(&d->w_down, &L->w_down, name, err, errlen) != 0)
            goto fail;
        if (L->bq) {
            float *b = malloc((qd + 2 * kvd) * sizeof(float));
            if (!b) {
                gw_set_err(err, errlen, "CUDA backend: out of memory");
                goto fail;
            }
            memcpy(b, L->bq, qd * sizeof(float));
            memcpy(b + qd, L->bk, kvd * sizeof(float));
            memcpy(b + qd + kvd, L->bv, kvd * sizeof(float));
            int rc = upload_floats(&d->bqkv, b, qd + 2 * kvd, err, errlen);
            free(b);
            if (rc) goto fail;
        }
    }

    /* KV pages (zeroed: a page is only read where it was written, but garbage
     * NaNs would survive a masked-out multiply by zero) and activations */
    {
        const size_t pages = (size_t)(quant ? max_open : n_blocks) * page_bytes / 2;
        CK(gw_cuda_malloc((void **)&e->k, pages));
        CK(gw_cuda_malloc((void **)&e->v, pages));
        CK(gw_cuda_memset(e->k, 0, pages, NULL));
        CK(gw_cuda_memset(e->v, 0, pages, NULL));
    }
    if (quant) {
        const size_t codes = (size_t)n_blocks * q_block_stride, prms = (size_t)n_blocks * p_block_stride * 4;
        CK(gw_cuda_malloc((void **)&e->kq, codes));
        CK(gw_cuda_malloc((void **)&e->vq, codes));
        CK(gw_cuda_malloc((void **)&e->kp, prms));
        CK(gw_cuda_malloc((void **)&e->vp, prms));
        CK(gw_cuda_memset(e->kq, 0, codes, NULL));
        CK(gw_cuda_memset(e->vq, 0, codes, NULL));
        CK(gw_cuda_memset(e->kp, 0, prms, NULL));
        CK(gw_cuda_memset(e->vp, 0, prms, NULL));
        CK(gw_cuda_malloc((void **)&e->seal_d, 2 * (size_t)n_blocks * sizeof(int32_t)));
    }
    CK(gw_cuda_malloc((void **)&e->shift_d, ((size_t)n_blocks + (size_t)m->rope_dim) * sizeof(int32_t)));
    CK(gw_cuda_malloc((void **)&e->x, B * E * 4));
    CK(gw_cuda_malloc((void **)&e->delta, B * E * 4));
    CK(gw_cuda_malloc((void **)&e->xn, B * E * 2));
    CK(gw_cuda_malloc((void **)&e->qkv, B * (qd + 2 * kvd) * 4));
    CK(gw_cuda_malloc((void **)&e->qb, B * qd * 2));
    CK(gw_cuda_malloc((void **)&e->att, B * qd * 2));
    CK(gw_cuda_malloc((void **)&e->gu, B * F * 8));
    CK(gw_cuda_malloc((void **)&e->act, B * F * 2));
    if (any_dequant) {
        e->wdq_elems = wdq_elems;
        CK(gw_cuda_malloc((void **)&e->wdq, wdq_elems * 2));
    }
    CK(gw_cuda_sync(NULL));
    return e;
fail:
    gw_cuda_engine_free(e);
    return NULL;
}

void gw_cuda_engine_describe(const gw_cuda_engine *e, char *buf, size_t buflen) {
    snprintf(buf, buflen, "%s; weights %.2f GiB, KV cache %.2f GiB (%lld tokens, %s), CUDA graphs %s%s",
             e->device_desc, e->weight_bytes / 1073741824.0, e->kv_bytes / 1073741824.0,
             (long long)e->n_blocks * e->block_size,
             e->kv_type == GW_CUDA_KV_INT8 ? "int8" : e->kv_type == GW_CUDA_KV_INT4 ? "int4" : "bf16",
             e->use_graphs ? "on" : "off", e->graph_note);
}

/* Layer l's view of the cache (layer 0's for sealing, which covers all layers). */
static gw_cuda_kv layer_kv(const gw_cuda_engine *e, int l) {
    const int KV = e->m->n_head_kv, D = e->m->head_dim, bs = e->block_size;
    gw_cuda_kv kv = {0};
    kv.k = e->k + (size_t)l * KV * bs * D, kv.v = e->v + (size_t)l * KV * bs * D;
    kv.block_size = bs, kv.n_kv_heads = KV, kv.head_dim = D, kv.block_stride = e->block_stride;
    if (e->kv_type != GW_CUDA_KV_BF16) {
        const int64_t qt = e->q_block_stride / e->m->n_layer, pt = e->p_block_stride / e->m->n_layer;
        kv.type = e->kv_type;
        kv.kq = e->kq + l * qt, kv.vq = e->vq + l * qt;
        kv.kp = e->kp + l * pt, kv.vp = e->vp + l * pt;
        kv.q_block_stride = e->q_block_stride, kv.p_block_stride = e->p_block_stride;
    }
    return kv;
}

int gw_cuda_engine_seal(void *engine, const int32_t *pages, const int32_t *blocks, int32_t n) {
    gw_cuda_engine *e = engine;
    if (n <= 0) return 0;
    if (n > e->n_blocks) return -1;
    /* pageable host memory: the copies are done when gw_cuda_memcpy returns */
    if (gw_cuda_memcpy(e->seal_d, pages, (size_t)n * 4, GW_CUDA_H2D, e->stream) != 0 ||
        gw_cuda_memcpy(e->seal_d + n, blocks, (size_t)n * 4, GW_CUDA_H2D, e->stream) != 0)
        return -1;
    gw_cuda_kv kv = layer_kv(e, 0);
    return gw_cuda_kv_seal(&kv, e->m->n_layer, e->seal_d, e->seal_d + n, n, e->stream) != 0 ? -1 : 0;
}

int gw_cuda_engine_unseal(void *engine, int32_t block, int32_t page) {
    gw_cuda_engine *e = engine;
    const int32_t ids[2] = {block, page};
    if (gw_cuda_memcpy(e->seal_d, ids, sizeof ids, GW_CUDA_H2D, e->stream) != 0) return -1;
    gw_cuda_kv kv = layer_kv(e, 0);
    return gw_cuda_kv_unseal(&kv, e->m->n_layer, e->seal_d, e->seal_d + 1, 1, e->stream) != 0 ? -1 : 0;
}

int gw_cuda_engine_shift(gw_cuda_engine *e, const int32_t *blocks, int32_t n_blocks, int32_t src, int32_t dst,
                         int32_t n) {
    const gw_model *m = e->m;
    const int half = m->rope_dim / 2;
    if (n_blocks <= 0 || n_blocks > e->n_blocks || dst >= src || n < 0) return -1;
    if (n == 0) return 0;
    /* rotation by -(src - dst) positions, in double as the CPU pool computes it */
    float *cs = malloc((size_t)(2 * half + 1) * sizeof(float));
    if (!cs) return -1;
    for (int i = 0; i < half; i++) {
        const double ang = -(double)(src - dst) * e->inv_freq_h[i];
        cs[2 * i] = (float)cos(ang);
        cs[2 * i + 1] = (float)sin(ang);
    }
    float *cs_d = (float *)(e->shift_d + e->n_blocks);
    int rc = gw_cuda_memcpy(e->shift_d, blocks, (size_t)n_blocks * 4, GW_CUDA_H2D, e->stream) != 0 ||
             (half && gw_cuda_memcpy(cs_d, cs, (size_t)2 * half * 4, GW_CUDA_H2D, e->stream) != 0);
    free(cs);
    if (rc) return -1;
    gw_cuda_kv kv = layer_kv(e, 0);
    return gw_cuda_kv_shift(&kv, m->n_layer, e->shift_d, src, dst, n, cs_d, m->rope_dim, m->rope_style, e->stream) != 0
               ? -1
               : 0;
}

int gw_cuda_engine_gather(gw_cuda_engine *e, const int32_t *blocks, int32_t n_blocks, const int32_t *keep,
                          int32_t budget) {
    const gw_model *m = e->m;
    const int KV = m->n_head_kv;
    if (n_blocks <= 0 || n_blocks > e->n_blocks || budget <= 0 || e->kv_type != GW_CUDA_KV_BF16) return -1;
    gw_cuda_kv kv0 = layer_kv(e, 0);
    const size_t scratch_bytes = gw_cuda_kv_gather_scratch(&kv0, budget);
    const size_t keep_bytes = (size_t)m->n_layer * KV * budget * sizeof(int32_t);
    void *scratch = NULL;
    int32_t *keep_d = NULL;
    int rc = gw_cuda_malloc(&scratch, scratch_bytes) != 0 || gw_cuda_malloc((void **)&keep_d, keep_bytes) != 0 ||
             gw_cuda_memcpy(e->shift_d, blocks, (size_t)n_blocks * 4, GW_CUDA_H2D, e->stream) != 0 ||
             gw_cuda_memcpy(keep_d, keep, keep_bytes, GW_CUDA_H2D, e->stream) != 0;
    for (int l = 0; !rc && l < m->n_layer; l++) {
        gw_cuda_kv kv = layer_kv(e, l);
        rc = gw_cuda_kv_gather(&kv, e->shift_d, keep_d + (size_t)l * KV * budget, budget, scratch, scratch_bytes,
                               e->stream) != 0;
    }
    if (gw_cuda_sync(e->stream) != 0) rc = 1; /* before the scratch goes */
    if (scratch) gw_cuda_free(scratch);
    if (keep_d) gw_cuda_free(keep_d);
    return rc ? -1 : 0;
}

int gw_cuda_engine_copy_page(void *engine, int32_t dst, int32_t src) {
    gw_cuda_engine *e = engine;
    size_t n = (size_t)e->block_stride * sizeof(uint16_t);
    if (gw_cuda_memcpy(e->k + (size_t)dst * e->block_stride, e->k + (size_t)src * e->block_stride, n, GW_CUDA_D2D,
                       e->stream) != 0 ||
        gw_cuda_memcpy(e->v + (size_t)dst * e->block_stride, e->v + (size_t)src * e->block_stride, n, GW_CUDA_D2D,
                       e->stream) != 0)
        return -1;
    return 0;
}

int gw_cuda_engine_copy_block(void *engine, int32_t dst, int32_t src) {
    gw_cuda_engine *e = engine;
    if (e->kv_type != GW_CUDA_KV_BF16) {
        const size_t q = (size_t)e->q_block_stride, pr = (size_t)e->p_block_stride;
        if (gw_cuda_memcpy(e->kq + dst * q, e->kq + src * q, q, GW_CUDA_D2D, e->stream) != 0 ||
            gw_cuda_memcpy(e->vq + dst * q, e->vq + src * q, q, GW_CUDA_D2D, e->stream) != 0 ||
            gw_cuda_memcpy(e->kp + dst * pr, e->kp + src * pr, pr * 4, GW_CUDA_D2D, e->stream) != 0 ||
            gw_cuda_memcpy(e->vp + dst * pr, e->vp + src * pr, pr * 4, GW_CUDA_D2D, e->stream) != 0)
            return -1;
        return 0;
    }
    return gw_cuda_engine_copy_page(engine, dst, src); /* a bf16 cache's blocks are its pages */
}

/* ------------------------------------------------------------ the forward */

/* Y[n][ldy] (f32, columns [0, W.rows)) = X[n][W.cols] (bf16) . W^T */
static int matmul(gw_cuda_engine *e, const dmat *W, const uint16_t *X, int n, float *Y, int64_t ldy) {
    const int limit = needs_dequant(W->type) ? GEMV_MAX_QUANT : GEMV_MAX_BF16;
    if (n <= limit)
        return gw_cuda_gemv(W->type, W->d, W->row_bytes, W->rows, W->cols, X, GW_CUDA_BF16, W->cols, n, Y, ldy, NULL,
                            e->stream);
    if (!needs_dequant(W->type))
        return gw_cuda_gemm(e->blas, n, (int)W->rows, (int)W->cols, X, W->cols, W->d, W->cols, Y, GW_CUDA_F32, ldy,
                            1.0f, 0.0f, e->stream);
    /* dequantize a slice of rows (a multiple of 64) at a time, then GEMM it */
    int64_t chunk = (int64_t)(e->wdq_elems / (size_t)W->cols) / 64 * 64;
    if (chunk <= 0) return gw_cuda_gemv(W->type, W->d, W->row_bytes, W->rows, W->cols, X, GW_CUDA_BF16, W->cols, n,
                                        Y, ldy, NULL, e->stream);
    for (int64_t r0 = 0; r0 < W->rows; r0 += chunk) {
        int64_t nr = W->rows - r0 < chunk ? W->rows - r0 : chunk;
        int rc = gw_cuda_dequantize(W->type, (const char *)W->d + (size_t)r0 * W->row_bytes, W->row_bytes, nr,
                                    W->cols, e->wdq, e->stream);
        if (!rc)
            rc = gw_cuda_gemm(e->blas, n, (int)nr, (int)W->cols, X, W->cols, e->wdq, W->cols, Y + r0, GW_CUDA_F32,
                              ldy, 1.0f, 0.0f, e->stream);
        if (rc) return rc;
    }
    return 0;
}

static int next_pow2(int n) {
    int p = 1;
    while (p < n) p *= 2;
    return p;
}

/* Orders the tokens (decode runs first), sizes the arrays and fills the
 * pinned staging buffer. May reallocate staging (dropping graphs). */
static int make_plan(gw_cuda_engine *e, const gw_cuda_batch *b, plan *p, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    p->T = b->n_tokens;
    p->n_out = b->n_out;
    int max_bd = 0, max_bp = 0;
    for (int r = 0; r < b->n_runs; r++) {
        const gw_cuda_run *u = &b->runs[r];
        if (u->n == 1) {
            p->nd++;
            if (u->n_blocks > max_bd) max_bd = u->n_blocks;
            if (u->kv_len > p->max_kv_d) p->max_kv_d = u->kv_len;
        } else {
            p->np++;
            if (u->n_blocks > max_bp) max_bp = u->n_blocks;
            if (u->n > p->max_q_len) p->max_q_len = u->n;
        }
    }
    /* Decode table widths are rounded up to a power of two so that a captured
     * graph serves many steps as the context grows. */
    p->sd = p->nd ? next_pow2(max_bd) : 0;
    p->sp = max_bp;
    p->n_splits = p->nd ? gw_cuda_attention_decode_splits(p->nd, e->m->n_head, e->m->n_head_kv, p->max_kv_d) : 0;
    if (p->n_splits && e->split_scale != 1.0) {
        /* more (or fewer) splits than the heuristic's, at least one 64-key tile each, at most 128 */
        int n = (int)(p->n_splits * e->split_scale + 0.5), by_len = (p->max_kv_d + 63) / 64;
        if (n > by_len) n = by_len;
        if (n > 128) n = 128;
        p->n_splits = n < 1 ? 1 : n;
    }
    size_t o = 0;
    p->tok = o, o += p->T;
    p->pos = o, o += p->T;
    p->slot = o, o += p->T;
    p->out = o, o += p->n_out;
    p->kvl_d = o, o += p->nd;
    p->bt_d = o, o += (size_t)p->nd * p->sd;
    p->cu_p = o, o += p->np + 1;
    p->kvl_p = o, o += p->np;
    p->bt_p = o, o += (size_t)p->np * p->sp;
    p->n_score = b->n_score;
    p->score_cap = b->score_cap;
    p->sc_row = o, o += p->n_score;
    p->sc_len = o, o += p->n_score;
    p->sc_tab = o, o += p->n_score;
    o = (o + 1) & ~(size_t)1; /* pointers: 8-byte aligned */
    p->sc_ptr = o, o += 2 * (size_t)p->n_score;
    o = (o + 3) & ~(size_t)3; /* keep the next user's 16-byte alignment */
    p->n_ints = o;
    if (o > e->stage_ints) {
        graphs_drop(e); /* they read the old buffers */
        gw_cuda_sync(e->stream);
        gw_cuda_host_free(e->stage_h);
        if (e->stage_d) gw_cuda_free(e->stage_d);
        e->stage_h = NULL;
        e->stage_d = NULL;
        e->stage_ints = 0;
        size_t want = o + o / 2 + 1024;
        if (gw_cuda_host_alloc((void **)&e->stage_h, want * 4) != 0 ||
            gw_cuda_malloc((void **)&e->stage_d, want * 4) != 0) {
            gw_set_err(err, errlen, "CUDA: %s", gw_cuda_last_error());
            return -1;
        }
        e->stage_ints = want;
    }
    /* (every forward ends with a sync: the last copy out of staging is done) */
    int32_t *s = e->stage_h;
    /* engine order: decode runs, then prefill runs, each in batch order */
    int k = 0, id = 0, ip = 0;
    s[p->cu_p] = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int r = 0; r < b->n_runs; r++) {
            const gw_cuda_run *u = &b->runs[r];
            if ((u->n == 1) != (pass == 0)) continue;
            const int32_t tab = (int32_t)(pass == 0 ? p->bt_d + (size_t)id * p->sd : p->bt_p + (size_t)ip * p->sp);
            for (int i = 0; i < u->n; i++) {
                int t = u->first + i;
                e->perm[k] = t;
                e->inv[t] = k;
                e->tok_len[t] = u->kv_len - (u->n - 1 - i); /* causal: the slots up to its own */
                e->tok_tab[t] = tab;
                k++;
            }
            int32_t *row;
            if (pass == 0) {
                s[p->kvl_d + id] = u->kv_len;
                row = s + p->bt_d + (size_t)id * p->sd;
                memcpy(row, u->blocks, (size_t)u->n_blocks * 4);
                for (int j = u->n_blocks; j < p->sd; j++) row[j] = 0;
                id++;
            } else {
                s[p->kvl_p + ip] = u->kv_len;
                s[p->cu_p + ip + 1] = s[p->cu_p + ip] + u->n;
                row = s + p->bt_p + (size_t)ip * p->sp;
                memcpy(row, u->blocks, (size_t)u->n_blocks * 4);
                for (int j = u->n_blocks; j < p->sp; j++) row[j] = 0;
                ip++;
            }
        }
    }
    if (k != p->T) {
        gw_set_err(err, errlen, "CUDA backend: runs cover %d of %d tokens", k, p->T);
        return -1;
    }
    for (int i = 0; i < p->T; i++) {
        s[p->tok + i] = b->token[e->perm[i]];
        s[p->pos + i] = b->pos[e->perm[i]];
        s[p->slot + i] = b->slot[e->perm[i]];
    }
    for (int i = 0; i < p->n_out; i++) s[p->out + i] = e->inv[b->out_rows[i]];
    for (int i = 0; i < p->n_score; i++) {
        const int32_t t = b->score_tok[i];
        s[p->sc_row + i] = e->inv[t];
        s[p->sc_len + i] = e->tok_len[t];
        s[p->sc_tab + i] = e->tok_tab[t];
        memcpy(s + p->sc_ptr + 2 * (size_t)i, &b->score_ptr[i], sizeof(float *));
    }
    return 0;
}

static int ensure_buffers(gw_cuda_engine *e, const plan *p, char *err, size_t errlen) {
    const gw_model *m = e->m;
    if (p->n_out > e->logits_rows) {
        graphs_drop(e);
        gw_cuda_sync(e->stream);
        if (e->logits) gw_cuda_free(e->logits);
        e->logits = NULL;
        e->logits_rows = 0;
        int rows = p->n_out < 8 ? 8 : p->n_out;
        if (gw_cuda_malloc((void **)&e->logits, (size_t)rows * m->n_vocab * 4) != 0) {
            gw_set_err(err, errlen, "CUDA: %s", gw_cuda_last_error());
            return -1;
        }
        e->logits_rows = rows;
    }
    size_t ws = p->nd && p->n_splits > 1
                    ? gw_cuda_attention_decode_workspace(p->nd, m->n_head, m->head_dim, p->n_splits)
                    : 0;
    if (ws > e->ws_bytes) {
        graphs_drop(e);
        gw_cuda_sync(e->stream);
        if (e->ws) gw_cuda_free(e->ws);
        e->ws = NULL;
        e->ws_bytes = 0;
        if (gw_cuda_malloc(&e->ws, ws * 2) != 0) {
            gw_set_err(err, errlen, "CUDA: %s", gw_cuda_last_error());
            return -1;
        }
        e->ws_bytes = ws * 2;
    }
    return 0;
}

/* Everything one forward launches, from the staging copy to the logits (the
 * body of a captured graph too). Returns a gw_cuda status. */
static int launch_forward(gw_cuda_engine *e, const plan *p) {
    const gw_model *m = e->m;
    const int T = p->T, E = m->n_embd, H = m->n_head, KV = m->n_head_kv, D = m->head_dim, F = m->n_ff;
    const int64_t qd = (int64_t)H * D, kvd = (int64_t)KV * D, qkvd = qd + 2 * kvd;
    const float scale = 1.0f / sqrtf((float)D);
    const int32_t *sd = e->stage_d;
    void *st = e->stream;
    int rc;
#define RUN(call)                  \
    do {                           \
        if ((rc = (call)) != 0) return rc; \
    } while (0)
    RUN(gw_cuda_memcpy(e->stage_d, e->stage_h, p->n_ints * 4, GW_CUDA_H2D, st));
    RUN(gw_cuda_embed(e->tok_embd.type, e->tok_embd.d, e->tok_embd.row_bytes, m->n_vocab, E, sd + p->tok, T, e->x,
                      st));
    RUN(gw_cuda_rmsnorm(e->x, e->layers[0].attn_norm, e->xn, GW_CUDA_BF16, T, E, m->norm_eps, st));
    for (int l = 0; l < m->n_layer; l++) {
        const dlayer *L = &e->layers[l];
        if (L->wqkv.d) {
            RUN(matmul(e, &L->wqkv, e->xn, T, e->qkv, qkvd));
        } else {
            RUN(matmul(e, &L->wq, e->xn, T, e->qkv, qkvd));
            RUN(matmul(e, &L->wk, e->xn, T, e->qkv + qd, qkvd));
            RUN(matmul(e, &L->wv, e->xn, T, e->qkv + qd + kvd, qkvd));
        }
        if (L->bqkv) RUN(gw_cuda_add_bias(e->qkv, GW_CUDA_F32, qkvd, L->bqkv, T, (int)qkvd, st));
        /* RoPE, q to bf16 and k, v into the pages: one kernel */
        const gw_cuda_kv kv = layer_kv(e, l);
        RUN(gw_cuda_rope_qkv(&kv, e->qkv, qkvd, T, H, sd + p->pos, e->inv_freq, m->rope_dim, m->rope_style, e->qb,
                             qd, sd + p->slot, st));
        if (p->nd)
            RUN(gw_cuda_attention_decode(&kv, e->qb, qd, e->att, qd, p->nd, sd + p->kvl_d, sd + p->bt_d, p->sd, H,
                                         scale, p->n_splits, e->ws, e->ws_bytes, st));
        if (p->np)
            RUN(gw_cuda_attention_prefill(&kv, e->qb + (size_t)p->nd * qd, qd, e->att + (size_t)p->nd * qd, qd,
                                          p->np, sd + p->cu_p, sd + p->kvl_p, sd + p->bt_p, p->sp, p->max_q_len, H,
                                          scale, st));
        if (p->n_score) /* tables: element offsets into the staging copy */
            RUN(gw_cuda_attention_probs_add(&kv, e->qb, qd, p->n_score, sd + p->sc_row, sd + p->sc_len,
                                            sd + p->sc_tab, sd, 1, H, scale, (float *const *)(sd + p->sc_ptr),
                                            (int64_t)l * KV * p->score_cap, p->score_cap, st));
        RUN(matmul(e, &L->wo, e->att, T, e->delta, E));
        RUN(gw_cuda_add_rmsnorm(e->x, e->delta, GW_CUDA_F32, L->ffn_norm, e->xn, GW_CUDA_BF16, T, E, m->norm_eps,
                                st));
        if (L->wgu.d) {
            RUN(matmul(e, &L->wgu, e->xn, T, e->gu, 2 * (int64_t)F));
        } else {
            RUN(matmul(e, &L->w_gate, e->xn, T, e->gu, 2 * (int64_t)F));
            RUN(matmul(e, &L->w_up, e->xn, T, e->gu + F, 2 * (int64_t)F));
        }
        RUN(gw_cuda_swiglu(e->gu, e->gu + F, GW_CUDA_F32, 2 * (int64_t)F, e->act, GW_CUDA_BF16, F, T, F, st));
        RUN(matmul(e, &L->w_down, e->act, T, e->delta, E));
        if (l + 1 < m->n_layer)
            RUN(gw_cuda_add_rmsnorm(e->x, e->delta, GW_CUDA_F32, e->layers[l + 1].attn_norm, e->xn, GW_CUDA_BF16, T,
                                    E, m->norm_eps, st));
        else
            RUN(gw_cuda_add(e->x, e->delta, GW_CUDA_F32, (int64_t)T * E, st));
    }
    if (p->n_out > 0) {
        RUN(gw_cuda_gather_rows(e->x, sd + p->out, p->n_out, E, e->delta, st));
        RUN(gw_cuda_rmsnorm(e->delta, e->output_norm, e->xn, GW_CUDA_BF16, p->n_out, E, m->norm_eps, st));
        RUN(matmul(e, &e->output, e->xn, p->n_out, e->logits, m->n_vocab));
    }
#undef RUN
    return 0;
}

/* A pure decode batch replays a captured graph of launch_forward; other
 * batches (their shapes vary with every chunk) launch directly. */
static int run_graph(gw_cuda_engine *e, const plan *p) {
    graph_entry *g = NULL, *victim = &e->graphs[0];
    for (int i = 0; i < MAX_GRAPHS; i++) {
        graph_entry *c = &e->graphs[i];
        if (c->used && c->T == p->T && c->n_out == p->n_out && c->sd == p->sd && c->n_splits == p->n_splits) {
            g = c;
            break;
        }
        if (!c->used || (victim->used && c->last_use < victim->last_use)) victim = c;
    }
    if (!g) {
        if (victim->used) gw_cuda_graph_free(victim->exec);
        victim->used = false;
        int rc = gw_cuda_graph_begin(e->stream);
        if (rc) return rc;
        rc = launch_forward(e, p);
        void *exec = NULL;
        int rc2 = gw_cuda_graph_end(e->stream, &exec);
        if (rc) {
            gw_cuda_graph_free(exec);
            return rc;
        }
        if (rc2) return rc2;
        *victim = (graph_entry){true, p->T, p->n_out, p->sd, p->n_splits, exec, 0};
        g = victim;
    }
    g->last_use = ++e->use_clock;
    return gw_cuda_graph_launch(g->exec, e->stream);
}

int gw_cuda_engine_forward(gw_cuda_engine *e, const gw_cuda_batch *b, float *out, char *err, size_t errlen) {
    if (b->n_tokens <= 0) return 0;
    if (b->n_tokens > e->n_batch) {
        gw_set_err(err, errlen, "CUDA backend: batch of %d tokens exceeds n_batch %d", b->n_tokens, e->n_batch);
        return -1;
    }
    plan p;
    if (make_plan(e, b, &p, err, errlen) != 0 || ensure_buffers(e, &p, err, errlen) != 0) return -1;
    int rc;
    if (e->use_graphs && p.np == 0 && p.n_score == 0) {
        rc = run_graph(e, &p);
        if (rc) {
            /* A capture the runtime refuses should cost speed, not the
             * request: note why and go on without graphs. (A kernel fault
             * fails the direct launch below as well and is reported.) */
            snprintf(e->graph_note, sizeof e->graph_note, " (turned off: %s)", gw_cuda_last_error());
            e->use_graphs = false;
            graphs_drop(e);
            rc = gw_cuda_sync(e->stream);
            if (!rc) rc = launch_forward(e, &p);
        }
    } else {
        rc = launch_forward(e, &p);
    }
    if (!rc && p.n_out > 0)
        rc = gw_cuda_memcpy(out, e->logits, (size_t)p.n_out * e->m->n_vocab * 4, GW_CUDA_D2H, e->stream);
    if (!rc) rc = gw_cuda_sync(e->stream);
    if (rc) {
        gw_set_err(err, errlen, "CUDA backend: %s", gw_cuda_last_error());
        return -1;
    }
    return 0;
}
#else
/* Built without -DGODWIT_CUDA=ON: nothing here (forward.c reports that the
 * CUDA backend is not compiled in). */
typedef int gw_cuda_engine_not_built;
#endif
