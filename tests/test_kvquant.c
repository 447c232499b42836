/* Quantized KV pages (KIVI int8 / int4).
 *
 * KV level: a block stays open (fp16, exact) until sealed; sealing quantizes
 * keys per channel and values per token in groups of 32 and gives the open
 * page back; the dequantized values are within half a quantization step (of
 * their own group's range) of the stored fp16 ones, for int8 and int4, on
 * the AVX-512 and the scalar paths, which agree bit for bit; a key channel
 * with an outlier only coarsens its own channel (the point of per-channel
 * keys); truncating into a sealed block and writing again reopens it with
 * its dequantized contents; copy-on-write of a shared sealed block leaves
 * the original intact; releasing sequences gives every block and open page
 * back; the bytes per token are what the format says; bad geometry is
 * refused. A pool whose pages live on a device asks the device to seal,
 * unseal and copy, so that contents follow their blocks. Attention over a sealed pool equals attention over an fp16 pool
 * holding the dequantized values (whole and split into partial ranges).
 *
 * Engine level, on SmolLM2: --kv-type f16 is the plain path bit for bit;
 * int8 and int4 logits stay close to fp16 ones after the prompt's blocks
 * are sealed (a long prompt fed in chunks), int8 closer than int4; greedy
 * generation with int8 matches fp16 for 32 tokens; the default block size
 * becomes 32; a quantized context refuses streaming and a block size that
 * is not a multiple of 32; the prefix cache shares sealed blocks exactly and
 * copies one on a truncation into it. */
#include <stdbool.h>
#include <stdint.h>

#include "backend/cpu/attention.h"
#include "backend/cpu/quant.h"
#include "godwit.h"
#include "kv/kv_cache.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static float h2f(uint16_t h) { return gw_fp16_to_fp32(h); }

enum { L = 2, H = 2, D = 64, BS = 64 };

/* Fills slots [0, n) of a sequence's blocks with random keys (channel 5 of
 * every key an outlier, x40) and values; the fp16-rounded copies go to K, V
 * [layer][head][slot][d]. */
static void fill(gw_kv_pool *p, const gw_kv_seq *s, int n, float *K, float *V) {
    float k[D], v[D];
    for (int sl = 0; sl < n; sl++)
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) {
                for (int d = 0; d < D; d++) {
                    k[d] = frand() * (d == 5 ? 40.0f : 2.0f) + (d == 9 ? 3.0f : 0.0f);
                    v[d] = frand();
                }
                gw_kv_store(p, s->blocks[sl / BS], l, h, sl % BS, k, v);
                size_t o = (((size_t)l * H + h) * n + sl) * D;
                for (int d = 0; d < D; d++) {
                    K[o + d] = h2f(gw_fp32_to_fp16(k[d]));
                    V[o + d] = h2f(gw_fp32_to_fp16(v[d]));
                }
            }
}

/* Dequantized (or open) key and value of a slot through the public reader. */
static void read_slot(const gw_kv_pool *p, const gw_kv_seq *s, int l, int h, int sl, float *k, float *v) {
    uint16_t tk[BS * D], tv[BS * D];
    int32_t b = s->blocks[sl / BS];
    const uint16_t *kp = gw_kv_k_page(p, b, l, h), *vp = gw_kv_v_page(p, b, l, h);
    if (!kp) {
        gw_kv_dequant_slots(p, b, l, h, sl % BS, 1, tk, tv);
        kp = tk;
        vp = tv;
    }
    for (int d = 0; d < D; d++) {
        k[d] = h2f(kp[gw_kv_k_index(p, sl % BS, d)]);
        v[d] = h2f(vp[gw_kv_v_index(p, sl % BS, d)]);
    }
}

/* Largest error of each key channel / value group over a sealed sequence,
 * relative to half a step of that group's own range. */
static double worst_step_ratio(const gw_kv_pool *p, const gw_kv_seq *s, int n, int n_filled, const float *K,
                               const float *V, int qmax, double *outlier_err, double *plain_err) {
    double worst = 0;
    *outlier_err = *plain_err = 0;
    float k[D], v[D];
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++) {
            const size_t base = ((size_t)l * H + h) * n_filled * D;
            for (int g = 0; g < n / 32; g++)
                for (int d = 0; d < D; d++) {
                    float mn = INFINITY, mx = -INFINITY;
                    for (int j = 0; j < 32; j++) {
                        float x = K[base + (size_t)(g * 32 + j) * D + d];
                        mn = fminf(mn, x);
                        mx = fmaxf(mx, x);
                    }
                    double half_step = (mx - mn) / qmax / 2 + 1e-3 * (fabs(mn) + fabs(mx)) + 1e-6;
                    for (int j = 0; j < 32; j++) {
                        read_slot(p, s, l, h, g * 32 + j, k, v);
                        double e = fabs(k[d] - K[base + (size_t)(g * 32 + j) * D + d]);
                        worst = fmax(worst, e / half_step);
                        if (d == 5) *outlier_err = fmax(*outlier_err, e);
                        else *plain_err = fmax(*plain_err, e);
                    }
                }
            for (int sl = 0; sl < n; sl++) {
                read_slot(p, s, l, h, sl, k, v);
                for (int g = 0; g < D / 32; g++) {
                    float mn = INFINITY, mx = -INFINITY;
                    for (int d = g * 32; d < g * 32 + 32; d++) {
                        mn = fminf(mn, V[base + (size_t)sl * D + d]);
                        mx = fmaxf(mx, V[base + (size_t)sl * D + d]);
                    }
                    double half_step = (mx - mn) / qmax / 2 + 1e-3 * (fabs(mn) + fabs(mx)) + 1e-6;
                    for (int d = g * 32; d < g * 32 + 32; d++)
                        worst = fmax(worst, fabs(v[d] - V[base + (size_t)sl * D + d]) / half_step);
                }
            }
        }
    return worst;
}

static void test_pool(int type) {
    const char *name = gw_kv_type_name(type);
    const int qmax = type == GW_KV_INT4 ? 15 : 255;
    gw_kv_pool p;
    CHECK(gw_kv_pool_init_typed(&p, L, H, D, BS, 8, type, 4) == 0);
    CHECK(p.k == NULL && p.open != NULL);
    /* bytes per token: codes plus fp16 (scale, min) pairs per 32 */
    size_t codes = type == GW_KV_INT4 ? D / 2 : D;
    CHECK(gw_kv_bytes_per_token(&p) == (size_t)L * H * 2 * (codes + 4 * D / 32));
    gw_kv_seq s = {0};
    const int n = 2 * BS + 10; /* two full blocks and a partial one */
    CHECK(gw_kv_seq_reserve(&p, &s, n) == 0);
    CHECK(s.n_blocks == 3 && p.n_open_free == 1);
    s.n_tokens = n;
    float *K = malloc(sizeof(float) * L * H * n * D), *V = malloc(sizeof(float) * L * H * n * D);
    fill(&p, &s, n, K, V);
    /* open blocks read back exactly */
    float k[D], v[D];
    read_slot(&p, &s, 1, 1, 70, k, v);
    CHECK(memcmp(k, K + ((size_t)(1 * H + 1) * n + 70) * D, sizeof k) == 0);
    gw_kv_seal(&p, s.blocks[0]);
    gw_kv_seal(&p, s.blocks[1]);
    CHECK(gw_kv_block_sealed(&p, s.blocks[0]) && gw_kv_block_sealed(&p, s.blocks[1]));
    CHECK(!gw_kv_block_sealed(&p, s.blocks[2]));
    CHECK(p.n_open_free == 3);
    CHECK(gw_kv_k_page(&p, s.blocks[0], 0, 0) == NULL);
    /* error bounds, on both dequantization paths, which agree exactly */
    double out_e, plain_e;
    double worst = worst_step_ratio(&p, &s, 2 * BS, n, K, V, qmax, &out_e, &plain_e);
    CHECK_MSG(worst <= 1.0, "%s: error %.3f half-steps", name, worst);
    CHECK_MSG(out_e > 4 * plain_e, "%s: outlier channel error %.4g vs others %.4g (per-channel keys)", name, out_e,
              plain_e);
    printf("%s: worst error %.3f half-steps; key error %.4f in the outlier channel, %.4f elsewhere\n", name, worst,
           out_e, plain_e);
    {
        uint16_t a[2][BS * D], b[2][BS * D];
        gw_isa was = gw_quant_force_isa(GW_ISA_AVX512);
        for (int off = 0; off + 16 <= BS; off += 16)
            gw_kv_dequant_slots(&p, s.blocks[1], 1, 0, off, 16, a[0], a[1]);
        gw_quant_force_isa(GW_ISA_SCALAR);
        for (int off = 0; off + 16 <= BS; off += 16)
            gw_kv_dequant_slots(&p, s.blocks[1], 1, 0, off, 16, b[0], b[1]);
        gw_quant_force_isa(was);
        CHECK(memcmp(a, b, sizeof a) == 0);
        /* odd starts and lengths (scalar path on every ISA) match too */
        uint16_t c[2][BS * D];
        memcpy(c, a, sizeof c);
        gw_kv_dequant_slots(&p, s.blocks[1], 1, 0, 7, 19, c[0], c[1]);
        CHECK(memcmp(a, c, sizeof a) == 0);
    }
    /* truncate into the first sealed block and write on: it reopens with
     * its dequantized contents */
    float before[D], vb[D];
    read_slot(&p, &s, 0, 1, 20, before, vb);
    gw_kv_seq_truncate(&p, &s, 40);
    CHECK(s.n_blocks == 1 && p.n_open_free == 4);
    CHECK(gw_kv_seq_reserve(&p, &s, 41) == 0);
    CHECK(!gw_kv_block_sealed(&p, s.blocks[0]) && p.n_open_free == 3);
    read_slot(&p, &s, 0, 1, 20, k, v);
    CHECK(memcmp(k, before, sizeof k) == 0 && memcmp(v, vb, sizeof v) == 0);
    gw_kv_seal(&p, s.blocks[0]);
    /* copy-on-write of a shared sealed block */
    gw_kv_seq t = {0};
    CHECK(gw_kv_seq_reserve(&p, &t, BS) == 0);
    t.n_tokens = BS;
    fill(&p, &t, BS, K, V);
    gw_kv_seal(&p, t.blocks[0]);
    gw_kv_seq u = {0};
    CHECK(gw_kv_seq_attach(&p, &u, t.blocks, 1) == 0);
    read_slot(&p, &t, 1, 0, 50, before, vb);
    gw_kv_seq_truncate(&p, &u, 30);
    CHECK(gw_kv_seq_reserve(&p, &u, 31) == 0);
    CHECK(u.blocks[0] != t.blocks[0] && !gw_kv_block_sealed(&p, u.blocks[0]) && gw_kv_block_sealed(&p, t.blocks[0]));
    read_slot(&p, &u, 1, 0, 29, k, v);
    float k2[D], v2[D];
    read_slot(&p, &t, 1, 0, 29, k2, v2);
    CHECK(memcmp(k, k2, sizeof k) == 0 && memcmp(v, v2, sizeof v) == 0);
    float z[D] = {0};
    gw_kv_store(&p, u.blocks[0], 1, 0, 30, z, z);
    read_slot(&p, &t, 1, 0, 50, k, v);
    CHECK(memcmp(k, before, sizeof k) == 0); /* the original is untouched */
    /* everything goes back */
    gw_kv_seq_release(&p, &s);
    gw_kv_seq_release(&p, &t);
    gw_kv_seq_release(&p, &u);
    CHECK(p.n_free == p.n_blocks && p.n_open_free == p.max_open);
    CHECK(gw_kv_pool_bytes(&p) == (size_t)8 * BS * gw_kv_bytes_per_token(&p) +
                                      (size_t)p.n_open_alloc * 2 * L * H * BS * D * sizeof(uint16_t));
    /* more open pages than the pool allows: refused, nothing allocated */
    gw_kv_seq w = {0};
    CHECK(gw_kv_seq_reserve(&p, &w, 5 * BS) == -1);
    CHECK(w.n_blocks == 0 && p.n_free == p.n_blocks);
    gw_kv_seq_release(&p, &w);
    free(K);
    free(V);
    gw_kv_pool_free(&p);
}

/* A pool whose pages live on a device (the CUDA engine's case), with a fake
 * device that tracks one tag per open page and per sealed block: the pool
 * must ask it to seal (in one request per batch of blocks), to unseal a
 * block it reopens, and to copy pages or codes for copy-on-write, so that
 * every block's contents follow it; and hand every open page back. */
typedef struct {
    int page[8], block[8];
    int seal_calls, fail;
} fake_dev;
static int fd_seal(void *a, const int32_t *pages, const int32_t *blocks, int32_t n) {
    fake_dev *d = a;
    if (d->fail) return -1;
    d->seal_calls++;
    for (int32_t i = 0; i < n; i++) d->block[blocks[i]] = d->page[pages[i]];
    return 0;
}
static int fd_unseal(void *a, int32_t block, int32_t page) {
    fake_dev *d = a;
    d->page[page] = d->block[block];
    return d->fail ? -1 : 0;
}
static int fd_copy_page(void *a, int32_t dst, int32_t src) {
    fake_dev *d = a;
    d->page[dst] = d->page[src];
    return 0;
}
static int fd_copy_block(void *a, int32_t dst, int32_t src) {
    fake_dev *d = a;
    d->block[dst] = d->block[src];
    return 0;
}

static void test_external_pool(void) {
    gw_kv_pool p, host;
    fake_dev d = {{0}, {0}, 0, 0};
    CHECK(gw_kv_pool_init_external(&p, L, H, D, BS, 8, GW_KV_INT4, 4) == 0);
    CHECK(gw_kv_pool_init_typed(&host, L, H, D, BS, 8, GW_KV_INT4, 4) == 0);
    p.dev = (gw_kv_device){&d, fd_copy_block, fd_copy_page, fd_seal, fd_unseal};
    CHECK(p.external && p.kq == NULL && p.k == NULL && gw_kv_pool_bytes(&p) == 0);
    CHECK(gw_kv_bytes_per_token(&p) == gw_kv_bytes_per_token(&host));
    gw_kv_pool_free(&host);
    gw_kv_seq s = {0};
    CHECK(gw_kv_seq_reserve(&p, &s, 2 * BS + 10) == 0);
    s.n_tokens = 2 * BS + 10;
    CHECK(s.n_blocks == 3 && p.n_open_free == 1);
    for (int i = 0; i < 3; i++) d.page[p.open[s.blocks[i]]] = 100 + i;
    /* a failing device: nothing changes */
    d.fail = 1;
    CHECK(gw_kv_seal_blocks(&p, s.blocks, 2) == -1);
    CHECK(!gw_kv_block_sealed(&p, s.blocks[0]) && p.n_open_free == 1);
    d.fail = 0;
    CHECK(gw_kv_seal_blocks(&p, s.blocks, 2) == 0);
    CHECK(d.seal_calls == 1 && p.n_open_free == 3);
    CHECK(gw_kv_block_sealed(&p, s.blocks[0]) && gw_kv_block_sealed(&p, s.blocks[1]));
    CHECK(d.block[s.blocks[0]] == 100 && d.block[s.blocks[1]] == 101);
    /* truncating into a sealed block and writing on unseals it */
    gw_kv_seq_truncate(&p, &s, BS + 8);
    CHECK(s.n_blocks == 2 && p.n_open_free == 4);
    CHECK(gw_kv_seq_reserve(&p, &s, BS + 9) == 0);
    CHECK(!gw_kv_block_sealed(&p, s.blocks[1]) && d.page[p.open[s.blocks[1]]] == 101);
    /* copy-on-write of a shared sealed block: codes copied, then unsealed */
    gw_kv_seq t = {0};
    CHECK(gw_kv_seq_attach(&p, &t, s.blocks, 1) == 0);
    gw_kv_seq_truncate(&p, &t, 30);
    CHECK(gw_kv_seq_reserve(&p, &t, 31) == 0);
    CHECK(t.blocks[0] != s.blocks[0] && gw_kv_block_sealed(&p, s.blocks[0]));
    CHECK(!gw_kv_block_sealed(&p, t.blocks[0]) && d.block[t.blocks[0]] == 100 && d.page[p.open[t.blocks[0]]] == 100);
    /* copy-on-write of a shared open block: the page is copied */
    s.n_tokens = BS + 9;
    gw_kv_block_ref(&p, s.blocks[1]);
    const int32_t shared = s.blocks[1];
    gw_kv_seq_truncate(&p, &s, BS + 5);
    CHECK(gw_kv_seq_reserve(&p, &s, BS + 6) == 0);
    CHECK(s.blocks[1] != shared && d.page[p.open[s.blocks[1]]] == 101 && p.open[s.blocks[1]] != p.open[shared]);
    gw_kv_block_unref(&p, shared);
    gw_kv_seq_release(&p, &s);
    gw_kv_seq_release(&p, &t);
    CHECK(p.n_free == p.n_blocks && p.n_open_free == p.max_open);
    gw_kv_pool_free(&p);
}

static void test_geometry(void) {
    gw_kv_pool p;
    CHECK(gw_kv_pool_init_typed(&p, 1, 1, 64, 16, 4, GW_KV_INT8, 2) == -1); /* block not a multiple of 32 */
    CHECK(gw_kv_pool_init_typed(&p, 1, 1, 48, 32, 4, GW_KV_INT8, 2) == -1); /* head not a multiple of 32 */
    CHECK(gw_kv_pool_init_typed(&p, 1, 1, 64, 32, 4, 7, 2) == -1);
    CHECK(gw_kv_pool_init_typed(&p, 1, 1, 64, 32, 4, GW_KV_INT4, 2) == 0);
    gw_kv_pool_free(&p);
}

/* Attention over sealed blocks equals attention over an fp16 pool that holds
 * the dequantized values. */
static void test_attention_matches(int type) {
    const int G = 3, n = 3 * BS + 17, layer = 1, head = 0;
    gw_kv_pool q, f;
    CHECK(gw_kv_pool_init_typed(&q, L, H, D, BS, 6, type, 6) == 0);
    CHECK(gw_kv_pool_init(&f, L, H, D, BS, 6) == 0);
    gw_kv_seq sq = {0}, sf = {0};
    CHECK(gw_kv_seq_reserve(&q, &sq, n) == 0 && gw_kv_seq_reserve(&f, &sf, n) == 0);
    sq.n_tokens = sf.n_tokens = n;
    float *K = malloc(sizeof(float) * L * H * n * D), *V = malloc(sizeof(float) * L * H * n * D);
    fill(&q, &sq, n, K, V);
    for (int b = 0; b < 3; b++) gw_kv_seal(&q, sq.blocks[b]);
    float k[D], v[D];
    for (int sl = 0; sl < n; sl++)
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) {
                read_slot(&q, &sq, l, h, sl, k, v);
                gw_kv_store(&f, sf.blocks[sl / BS], l, h, sl % BS, k, v);
            }
    const int n_tok = 4, NQ = n_tok * G;
    float qv[NQ * D], out_q[NQ * D], out_f[NQ * D];
    for (int i = 0; i < NQ * D; i++) qv[i] = frand();
    int32_t visible[n_tok];
    for (int i = 0; i < n_tok; i++) visible[i] = n - (n_tok - 1 - i) - 40 * i; /* ragged */
    float *scratch = malloc(sizeof(float) * gw_attention_scratch_floats(G, D, BS));
    gw_attention_args a = {.kv = &q, .blocks = sq.blocks, .layer = layer, .kv_head = head, .group = G,
                           .n_tok = n_tok, .n_slots = visible, .q = qv, .q_stride = (size_t)G * D, .out = out_q,
                           .out_stride = (size_t)G * D, .scale = 0.125f, .scratch = scratch};
    /* the portable kernel dequantizes to fp16 first: exactly the fp16 pool's
     * inputs; the AVX-512 one reads codes directly (no fp16 rounding of the
     * dequantized values, another summation order) */
    for (int scalar = 1; scalar >= 0; scalar--) {
        gw_attention_force_scalar(scalar);
        const double tol = scalar ? 1e-6 : 3e-3;
        a.kv = &q, a.blocks = sq.blocks, a.out = out_q, a.n_tok = n_tok;
        gw_attention(&a);
        a.kv = &f, a.blocks = sf.blocks, a.out = out_f;
        gw_attention(&a);
        double e = 0;
        for (int i = 0; i < NQ * D; i++) e = fmax(e, fabs(out_q[i] - out_f[i]));
        CHECK_MSG(e < tol, "%s attention (%s kernel): max |diff| %g", gw_kv_type_name(type),
                  scalar ? "portable" : "best", e);
        /* split ranges (flash-decoding), one query token; the range starts
         * inside a chunk, so both paths of the best kernel run */
        float part_q[G * D + 2 * G], part_f[G * D + 2 * G];
        a.n_tok = 1;
        gw_attention_partial(&a, 13, 150, part_f, part_f + G * D, part_f + G * D + G);
        a.kv = &q, a.blocks = sq.blocks;
        gw_attention_partial(&a, 13, 150, part_q, part_q + G * D, part_q + G * D + G);
        double big = 0;
        e = 0;
        for (int i = 0; i < G * D + 2 * G; i++) {
            e = fmax(e, fabs(part_q[i] - part_f[i]));
            big = fmax(big, fabs(part_f[i]));
        }
        CHECK_MSG(e <= tol * big, "%s partial attention (%s kernel): max |diff| %g of %g", gw_kv_type_name(type),
                  scalar ? "portable" : "best", e, big);
    }
    gw_attention_force_scalar(false);
    free(scratch);
    free(K);
    free(V);
    gw_kv_seq_release(&q, &sq);
    gw_kv_seq_release(&f, &sf);
    gw_kv_pool_free(&q);
    gw_kv_pool_free(&f);
}

/* ---------------------------------------------------------- engine level */

/* Feeds ids[0..n) in chunks of `chunk` and returns the last token's log-probs. */
/* Feeds ids[from..n) to an open sequence at positions from.. in chunks;
 * lp gets the last token's log-probabilities. */
static void feed_from(gw_context *c, int seq, const int32_t *ids, int from, int n, int chunk, float *lp, int V) {
    int32_t sq[512], pos[512];
    int8_t want[512];
    char err[256];
    for (int at = from; at < n; at += chunk) {
        int m = n - at < chunk ? n - at : chunk;
        for (int i = 0; i < m; i++) sq[i] = seq, pos[i] = at + i, want[i] = at + i == n - 1;
        gw_batch b = {m, ids + at, sq, pos, want};
        int rc = gw_forward(c, &b, lp, err, sizeof err);
        CHECK_MSG(rc == 0, "%s", err);
    }
    test_log_softmax(lp, V);
}

/* A fresh sequence's log-probabilities after the prompt, fed in chunks. */
static void prompt_logprobs(gw_context *c, const int32_t *ids, int n, int chunk, float *lp, int V) {
    int seq = gw_seq_open(c);
    feed_from(c, seq, ids, 0, n, chunk, lp, V);
    gw_seq_close(c, seq);
}

/* The prefix cache over int8 pages: a sequence that starts on cached
 * (sealed) blocks computes the rest exactly as the one that made them; one
 * that truncates into a shared sealed block gets a private copy (codes
 * copied, then reopened) and lands close by, and the cached blocks stay as
 * they were (a third sequence reproduces the first's logits exactly). */
static void test_prefix(gw_model *m, const int32_t *ids, int V) {
    char err[512];
    gw_context_params p = gw_context_default_params();
    p.n_ctx = 2048;
    p.n_batch = 64;
    p.n_threads = 2;
    p.kv_type = GW_KV_INT8;
    p.kv_block_size = 0; /* 32 */
    gw_context *c = gw_context_new(m, &p, err, sizeof err);
    CHECK_MSG(c != NULL, "%s", err);
    if (!c) return;
    CHECK(gw_context_set_prefix_cache(c, true) == 0);
    const int n = 400;
    float *ref = malloc(sizeof(float) * V), *lp = malloc(sizeof(float) * V);
    int a = gw_seq_open(c);
    feed_from(c, a, ids, 0, n, 64, ref, V);
    CHECK(gw_seq_cache_prefix(c, a, ids, n) == n / 32);
    gw_seq_close(c, a);
    int b = gw_seq_open_prefix(c, ids, n);
    CHECK(gw_seq_len(c, b) == n / 32 * 32);
    feed_from(c, b, ids, gw_seq_len(c, b), n, 64, lp, V);
    CHECK(memcmp(lp, ref, sizeof(float) * V) == 0);
    gw_seq_truncate(c, b, 100); /* into shared sealed block 3 */
    feed_from(c, b, ids, 100, n, 64, lp, V);
    /* the same chunks from a cold sequence: only slots 96..99 differ (dequantized
     * in the copy, still fp16 in the cold sequence's open block) */
    float *cold = malloc(sizeof(float) * V);
    int e = gw_seq_open(c);
    feed_from(c, e, ids, 0, 100, 64, cold, V);
    feed_from(c, e, ids, 100, n, 64, cold, V);
    gw_seq_close(c, e);
    int top[10];
    test_top_k(cold, V, top, 10);
    double dev = 0;
    for (int r = 0; r < 10; r++) dev = fmax(dev, fabs(lp[top[r]] - cold[top[r]]));
    CHECK_MSG(dev < 0.02, "max |dlogprob| %.4f after re-feeding into a copied sealed block", dev);
    free(cold);
    gw_seq_close(c, b);
    int d = gw_seq_open_prefix(c, ids, n);
    feed_from(c, d, ids, gw_seq_len(c, d), n, 64, lp, V);
    CHECK(memcmp(lp, ref, sizeof(float) * V) == 0);
    gw_seq_close(c, d);
    printf("int8 + prefix cache: cached prefix exact, copy-on-write of a sealed block %.4f\n", dev);
    free(ref);
    free(lp);
    gw_context_free(c);
}

/* Greedy tokens after a prompt. */
static void greedy(gw_context *c, const int32_t *ids, int n, int n_gen, int32_t *out, int V) {
    float *lg = malloc(sizeof(float) * V);
    int seq = gw_seq_open(c);
    char err[256];
    int32_t sq[256], pos[256];
    int8_t want[256];
    for (int i = 0; i < n; i++) sq[i] = seq, pos[i] = i, want[i] = i == n - 1;
    gw_batch b = {n, ids, sq, pos, want};
    CHECK(gw_forward(c, &b, lg, err, sizeof err) == 0);
    for (int g = 0; g < n_gen; g++) {
        int best = 0;
        for (int v = 1; v < V; v++) best = lg[v] > lg[best] ? v : best;
        out[g] = best;
        int32_t p = n + g;
        int8_t w = 1;
        gw_batch d = {1, &out[g], &sq[0], &p, &w};
        CHECK(gw_forward(c, &d, lg, err, sizeof err) == 0);
    }
    gw_seq_close(c, seq);
    free(lg);
}

static void test_engine(void) {
    char err[512];
    gw_model *m = gw_model_load(test_model_file("SmolLM2-135M-Instruct.Q4_1.gguf"), err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    if (!m) return;
    const int V = gw_model_n_vocab(m);
    /* a prose prompt of ~1,200 tokens from the shared text */
    size_t got = 0;
    char *text = test_read_prose(200000, 7000, &got);
    CHECK(text != NULL);
    if (!text) return;
    int32_t *ids = NULL;
    int64_t n = gw_tokenize(gw_model_tokenizer(m), text, got, true, false, &ids);
    CHECK(n > 1000);
    if (n > 1200) n = 1200;

    gw_context_params p = gw_context_default_params();
    p.n_ctx = 2048;
    p.n_batch = 256;
    p.n_threads = 2;
    float *ref = malloc(sizeof(float) * V), *lp = malloc(sizeof(float) * V);
    gw_context *c = gw_context_new(m, &p, err, sizeof err);
    CHECK_MSG(c != NULL, "%s", err);
    prompt_logprobs(c, ids, (int)n, 256, ref, V);
    int32_t gref[32], g8[32];
    greedy(c, ids + 800, 200, 32, gref, V);
    gw_context_free(c);

    /* explicit f16: the same path, bit for bit */
    p.kv_type = GW_KV_F16;
    c = gw_context_new(m, &p, err, sizeof err);
    prompt_logprobs(c, ids, (int)n, 256, lp, V);
    CHECK(memcmp(lp, ref, sizeof(float) * V) == 0);
    CHECK(gw_context_kv_block_size(c) == 16);
    gw_context_free(c);

    double dev[3] = {0};
    for (int type = GW_KV_INT8; type <= GW_KV_INT4; type++) {
        p.kv_type = type;
        p.kv_block_size = 0;
        c = gw_context_new(m, &p, err, sizeof err);
        CHECK_MSG(c != NULL, "%s", err);
        if (!c) continue;
        CHECK(gw_context_kv_block_size(c) == 32);
        CHECK(gw_context_kv_bytes_per_token(c) < (type == GW_KV_INT8 ? 23040u * 6 / 10 : 23040u * 4 / 10));
        /* streaming needs re-rotation in place: refused */
        int s = gw_seq_open(c);
        CHECK(gw_seq_set_streaming(c, s, 4, 252) == -1);
        gw_seq_close(c, s);
        prompt_logprobs(c, ids, (int)n, 256, lp, V);
        int top_ref[10], top[1];
        test_top_k(ref, V, top_ref, 10);
        test_top_k(lp, V, top, 1);
        for (int r = 0; r < 10; r++) dev[type] = fmax(dev[type], fabs(lp[top_ref[r]] - ref[top_ref[r]]));
        CHECK(top[0] == top_ref[0]);
        if (type == GW_KV_INT8) {
            greedy(c, ids + 800, 200, 32, g8, V);
            CHECK(memcmp(g8, gref, sizeof g8) == 0);
        }
        printf("%s: %zu bytes/token, max |dlogprob| over the top 10 after %d tokens: %.4f\n", gw_kv_type_name(type),
               gw_context_kv_bytes_per_token(c), (int)n, dev[type]);
        gw_context_free(c);
    }
    CHECK(dev[GW_KV_INT8] < 0.05);
    CHECK(dev[GW_KV_INT4] < 0.5);
    CHECK(dev[GW_KV_INT8] <= dev[GW_KV_INT4]);

    p.kv_type = GW_KV_INT8;
    p.kv_block_size = 16;
    c = gw_context_new(m, &p, err, sizeof err);
    CHECK(c == NULL && strstr(err, "multiples of 32"));
    test_prefix(m, ids, V);
    free(ref);
    free(lp);
    free(ids);
    free(text);
    gw_model_free(m);
}

int main(void) {
    test_geometry();
    test_pool(GW_KV_INT8);
    test_pool(GW_KV_INT4);
    test_external_pool();
    test_attention_matches(GW_KV_INT8);
    test_attention_matches(GW_KV_INT4);
    test_engine();
    return test_finish("test_kvquant");
}
