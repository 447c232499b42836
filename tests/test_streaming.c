/* Streaming (StreamingLLM: attention sinks + a sliding window).
 *
 * KV level: gw_kv_seq_shift_down moves a window of slots down and re-rotates
 * its keys: a key cached at position p and moved down by e reads as the key
 * cached at p - e directly (NORM and NEOX, partial rotary dimensions), to
 * within fp16 rounding; values move bit for bit; slots below the window (the
 * sinks) are untouched; truncating afterwards gives the blocks back to the
 * pool; shared blocks and bad ranges are refused. The drift of keys moved
 * many times (a token living through a whole window) is measured.
 *
 * Engine level, on SmolLM2: the slot count follows the policy (sinks kept,
 * oldest evicted a block at a time, never more than S + W slots) and the
 * pool's blocks stay bounded in a long greedy generation; a window that
 * holds everything gives exactly the dense logits; positions must be
 * gw_seq_len based; chunks larger than the window and prefix-cache blocks
 * are refused; and the streaming perplexity of a text with sinks is finite,
 * close to the dense one, and below the window-only (S = 0) one. */
#include <stdint.h>

#include "backend/cpu/quant.h"
#include "eval/ppl.h"
#include "godwit.h"
#include "kv/kv_cache.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

/* ------------------------------------------------------------- KV level */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* The forward pass's RoPE (forward.c rope_apply with a float angle). */
static void rope_at(float *v, int pos, const gw_kv_rope *r) {
    const int half = r->dim / 2;
    for (int i = 0; i < half; i++) {
        float ang = (float)pos * r->inv_freq[i], cs = cosf(ang), sn = sinf(ang);
        int d1 = r->neox ? i : 2 * i, d2 = r->neox ? i + half : 2 * i + 1;
        float a = v[d1], b = v[d2];
        v[d1] = a * cs - b * sn;
        v[d2] = a * sn + b * cs;
    }
}

static float key_at(const gw_kv_pool *p, const gw_kv_seq *s, int layer, int head, int slot, int d) {
    size_t t = gw_kv_tile(p, s->blocks[slot / p->block_size], layer, head);
    return gw_fp16_to_fp32(p->k[t + gw_kv_k_index(p, slot % p->block_size, d)]);
}
static uint16_t value_bits(const gw_kv_pool *p, const gw_kv_seq *s, int layer, int head, int slot, int d) {
    size_t t = gw_kv_tile(p, s->blocks[slot / p->block_size], layer, head);
    return p->v[t + gw_kv_v_index(p, slot % p->block_size, d)];
}

/* Fills slots [0, n) of every layer and head: key = raw key of its token
 * (keys[token][layer][head][d]) rotated at its position = slot; value =
 * a random vector (kept in vals for comparison). */
typedef struct {
    int L, H, D, n;
    float *keys, *vals; /* [n][L][H][D] */
} kv_data;

static float *kv_elem(float *base, const kv_data *k, int tok, int l, int h) {
    return base + (((size_t)tok * k->L + l) * k->H + h) * k->D;
}

static void kv_fill(gw_kv_pool *p, gw_kv_seq *s, kv_data *k, const gw_kv_rope *r) {
    float kv[1024];
    for (int j = 0; j < k->n; j++)
        for (int l = 0; l < k->L; l++)
            for (int h = 0; h < k->H; h++) {
                float *raw = kv_elem(k->keys, k, j, l, h), *val = kv_elem(k->vals, k, j, l, h);
                for (int d = 0; d < k->D; d++) raw[d] = 4.0f * frand(), val[d] = frand();
                memcpy(kv, raw, sizeof(float) * k->D);
                rope_at(kv, j, r);
                gw_kv_store(p, s->blocks[j / p->block_size], l, h, j % p->block_size, kv, val);
            }
    s->n_tokens = k->n;
}

/* Largest error of a moved key against the key cached directly at its new
 * position, over the slots [from, to) which hold tokens [from + shift, to +
 * shift): per rotated pair, max |difference| / |pair|, in units of fp16's
 * unit roundoff 2^-11 (one rounding of the pair costs up to ~1). */
static double key_error(const gw_kv_pool *p, const gw_kv_seq *s, const kv_data *k, const gw_kv_rope *r, int from,
                        int to, int shift) {
    double worst = 0;
    float want[1024];
    const int half = r->dim / 2;
    for (int j = from; j < to; j++)
        for (int l = 0; l < k->L; l++)
            for (int h = 0; h < k->H; h++) {
                memcpy(want, kv_elem(k->keys, k, j + shift, l, h), sizeof(float) * k->D);
                rope_at(want, j, r);
                for (int i = 0; i < half; i++) {
                    int d1 = r->neox ? i : 2 * i, d2 = r->neox ? i + half : 2 * i + 1;
                    double norm = hypot(want[d1], want[d2]);
                    double e1 = fabs(key_at(p, s, l, h, j, d1) - want[d1]), e2 = fabs(key_at(p, s, l, h, j, d2) - want[d2]);
                    double e = (e1 > e2 ? e1 : e2) / norm * 2048.0;
                    if (norm > 0.01 && e > worst) worst = e;
                }
            }
    return worst;
}

static void test_shift_one(int neox, int rope_dim, int shift) {
    const int L = 2, H = 2, D = 16, BS = 16, N = 150, S = 4;
    float inv_freq[8];
    for (int i = 0; i < rope_dim / 2; i++) inv_freq[i] = 1.0f / powf(10000.0f, (float)(2 * i) / (float)rope_dim);
    gw_kv_rope r = {rope_dim, neox, inv_freq};
    gw_kv_pool p;
    CHECK(gw_kv_pool_init(&p, L, H, D, BS, 16) == 0);
    gw_kv_seq s = {0};
    CHECK(gw_kv_seq_reserve(&p, &s, N) == 0);
    kv_data k = {L, H, D, N, malloc(sizeof(float) * N * L * H * D), malloc(sizeof(float) * N * L * H * D)};
    kv_fill(&p, &s, &k, &r);
    uint16_t sink_k[S * 16], sink_v[S * 16];
    for (int j = 0; j < S; j++)
        for (int d = 0; d < D; d++) {
            size_t t = gw_kv_tile(&p, s.blocks[0], L - 1, H - 1);
            sink_k[j * D + d] = p.k[t + gw_kv_k_index(&p, j, d)];
            sink_v[j * D + d] = p.v[t + gw_kv_v_index(&p, j, d)];
        }
    int32_t avail = gw_kv_pool_available(&p);
    /* evict slots [S, S + shift): the window [S + shift, N) moves to S */
    CHECK(gw_kv_seq_shift_down(&p, &s, S + shift, S, N - S - shift, &r) == 0);
    double err = key_error(&p, &s, &k, &r, S, N - shift, shift);
    /* the stored key's rounding, rotated, plus the result's: about 2 units */
    CHECK_MSG(err <= 3, "neox %d rope_dim %d shift %d: key error %g units of 2^-11", neox, rope_dim, shift, err);
    printf("  shift by %3d (%s, rope_dim %2d): max key error %.2f x 2^-11 of the pair's norm\n", shift,
           neox ? "NEOX" : "NORM", rope_dim, err);
    int bad_v = 0, bad_unrotated = 0, bad_sink = 0;
    for (int j = S; j < N - shift; j++)
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) {
                const float *val = kv_elem(k.vals, &k, j + shift, l, h), *raw = kv_elem(k.keys, &k, j + shift, l, h);
                for (int d = 0; d < D; d++) {
                    bad_v += value_bits(&p, &s, l, h, j, d) != gw_fp32_to_fp16(val[d]);
                    /* dimensions past rope_dim are copied, not rotated */
                    if (d >= rope_dim) bad_unrotated += key_at(&p, &s, l, h, j, d) != gw_fp16_to_fp32(gw_fp32_to_fp16(raw[d]));
                }
            }
    for (int j = 0; j < S; j++)
        for (int d = 0; d < D; d++) {
            size_t t = gw_kv_tile(&p, s.blocks[0], L - 1, H - 1);
            bad_sink += sink_k[j * D + d] != p.k[t + gw_kv_k_index(&p, j, d)];
            bad_sink += sink_v[j * D + d] != p.v[t + gw_kv_v_index(&p, j, d)];
        }
    CHECK_MSG(bad_v == 0, "%d values not moved exactly", bad_v);
    CHECK_MSG(bad_unrotated == 0, "%d unrotated key elements changed", bad_unrotated);
    CHECK_MSG(bad_sink == 0, "%d sink elements changed", bad_sink);
    /* truncating to the new length gives the blocks past it back */
    gw_kv_seq_truncate(&p, &s, N - shift);
    int32_t freed = (N + BS - 1) / BS - (N - shift + BS - 1) / BS;
    CHECK_MSG(gw_kv_pool_available(&p) == avail + freed, "available %d, expected %d", gw_kv_pool_available(&p),
              avail + freed);
    CHECK(s.n_tokens == N - shift && s.n_blocks == (N - shift + BS - 1) / BS);
    gw_kv_seq_release(&p, &s);
    CHECK(gw_kv_pool_available(&p) == 16);
    free(k.keys);
    free(k.vals);
    gw_kv_pool_free(&p);
}

static void test_shift_refusals(void) {
    float inv_freq[8] = {1, 0.5f, 0.25f, 0.125f, 0.0625f, 0.03f, 0.01f, 0.001f};
    gw_kv_rope r = {16, 0, inv_freq};
    gw_kv_pool p;
    CHECK(gw_kv_pool_init(&p, 1, 1, 16, 16, 8) == 0);
    gw_kv_seq s = {0};
    CHECK(gw_kv_seq_reserve(&p, &s, 64) == 0);
    s.n_tokens = 64;
    CHECK(gw_kv_seq_shift_down(&p, &s, 4, 4, 10, &r) == -1);   /* dst == src */
    CHECK(gw_kv_seq_shift_down(&p, &s, 20, 4, 50, &r) == -1);  /* past the blocks */
    gw_kv_rope odd = {15, 0, inv_freq};
    CHECK(gw_kv_seq_shift_down(&p, &s, 20, 4, 10, &odd) == -1);
    CHECK(gw_kv_seq_shift_down(&p, &s, 20, 4, 0, &r) == 0);     /* nothing to move */
    /* a shared block is never written */
    uint16_t before = p.k[gw_kv_tile(&p, s.blocks[0], 0, 0) + 5];
    gw_kv_block_ref(&p, s.blocks[0]);
    CHECK(gw_kv_seq_shift_down(&p, &s, 20, 4, 10, &r) == -1);
    CHECK(p.k[gw_kv_tile(&p, s.blocks[0], 0, 0) + 5] == before);
    gw_kv_block_unref(&p, s.blocks[0]);
    /* reading from a shared block is fine: only the destination must be own */
    gw_kv_block_ref(&p, s.blocks[3]);
    CHECK(gw_kv_seq_shift_down(&p, &s, 50, 20, 10, &r) == 0);
    gw_kv_block_unref(&p, s.blocks[3]);
    gw_kv_seq_release(&p, &s);
    gw_kv_pool_free(&p);
}

/* A token that lives through a whole window is moved W / block_size times,
 * each time rounded to fp16 again: measure how far its key drifts from the
 * key cached directly at its final position. */
static void test_shift_drift(void) {
    const int D = 64, BS = 16, S = 4, W = 1024, N = S + W, MOVES = W / BS - 1;
    float inv_freq[32];
    for (int i = 0; i < D / 2; i++) inv_freq[i] = 1.0f / powf(10000.0f, (float)(2 * i) / (float)D);
    gw_kv_rope r = {D, 0, inv_freq};
    gw_kv_pool p;
    CHECK(gw_kv_pool_init(&p, 1, 1, D, BS, (N + BS - 1) / BS) == 0);
    gw_kv_seq s = {0};
    CHECK(gw_kv_seq_reserve(&p, &s, N) == 0);
    kv_data k = {1, 1, D, N, malloc(sizeof(float) * N * D), malloc(sizeof(float) * N * D)};
    kv_fill(&p, &s, &k, &r);
    int n = N;
    for (int m = 0; m < MOVES; m++) {
        CHECK(gw_kv_seq_shift_down(&p, &s, S + BS, S, n - S - BS, &r) == 0);
        n -= BS;
    }
    /* slots [S, n) hold tokens [S + MOVES*BS, N), each moved MOVES times */
    double err = key_error(&p, &s, &k, &r, S, n, MOVES * BS);
    printf("  key drift after %d moves by %d: max %.2f x 2^-11 of the pair's norm\n", MOVES, BS, err);
    /* each move adds at most about one rounding; random, so the sum grows
     * like sqrt(moves), far below the worst case */
    CHECK_MSG(err <= MOVES, "drift %g", err);
    free(k.keys);
    free(k.vals);
    gw_kv_seq_release(&p, &s);
    gw_kv_pool_free(&p);
}

/* ---------------------------------------------------------- engine level */

static gw_model *model;
static int V;

static gw_context *new_ctx(int n_ctx, int n_batch) {
    char err[256];
    gw_context_params cp = gw_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_threads = 2;
    gw_context *c = gw_context_new(model, &cp, err, sizeof err);
    CHECK_MSG(c != NULL, "%s", err);
    return c;
}

/* Feeds toks[0..n) to seq in chunks of `chunk`, positions from gw_seq_len;
 * the last token's logits into out (if not NULL). Returns gw_forward's rc. */
static int feed(gw_context *c, int seq, const int32_t *toks, int n, int chunk, float *out, char *err, size_t errlen) {
    int32_t seqv[512], pos[512];
    int8_t want[512];
    float *tmp = out ? NULL : malloc(sizeof(float) * V);
    for (int done = 0; done < n;) {
        int m = n - done < chunk ? n - done : chunk;
        int base = gw_seq_len(c, seq);
        for (int i = 0; i < m; i++) seqv[i] = seq, pos[i] = base + i, want[i] = done + i == n - 1;
        gw_batch b = {m, toks + done, seqv, pos, want};
        if (gw_forward(c, &b, out ? out : tmp, err, errlen) != 0) {
            free(tmp);
            return -1;
        }
        done += m;
    }
    free(tmp);
    return 0;
}

static int32_t *book_tokens(int max, int *n) {
    const char *root = getenv("GODWIT_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/../shared/data/war_and_peace.txt", root ? root : ".");
    FILE *f = fopen(path, "rb");
    *n = 0;
    if (!f) return NULL;
    /* about 4 bytes per token: 8 per token is enough text for max tokens */
    size_t cap = (size_t)max * 8;
    char *text = malloc(cap + 1);
    size_t len = fread(text, 1, cap, f);
    fclose(f);
    text[len] = 0;
    int32_t *ids = NULL;
    int64_t k = gw_tokenize(gw_model_tokenizer(model), text, len, false, false, &ids);
    free(text);
    *n = k < max ? (int)k : max;
    return ids;
}

static void test_api(void) {
    gw_context *c = new_ctx(512, 64);
    if (!c) return;
    int s = gw_seq_open(c);
    CHECK(gw_seq_set_streaming(c, s, -1, 10) == -1);
    CHECK(gw_seq_set_streaming(c, s, 4, 0) == -1);
    CHECK(gw_seq_set_streaming(c, s, 0, -3) == -1);
    CHECK(gw_seq_set_streaming(c, s + 1, 4, 16) == -1); /* not open */
    CHECK(gw_seq_set_streaming(c, s, 4, 60) == 0);
    gw_streaming_stats st;
    gw_seq_streaming_stats(c, s, &st);
    CHECK(st.n_sink == 4 && st.n_window == 60 && st.evicted_tokens == 0);
    char err[256];
    /* positions must be gw_seq_len based */
    int32_t tok[3] = {504, 2753, 29}, seqv[3] = {s, s, s}, pos[3] = {5, 6, 7};
    int8_t want[3] = {0, 0, 1};
    float *out = malloc(sizeof(float) * V);
    gw_batch b = {3, tok, seqv, pos, want};
    CHECK(gw_forward(c, &b, out, err, sizeof err) == -1 && strstr(err, "expected 0"));
    CHECK(gw_seq_len(c, s) == 0);
    /* a chunk larger than the window is refused and changes nothing */
    int32_t big[64];
    for (int i = 0; i < 64; i++) big[i] = 100 + i;
    CHECK(feed(c, s, big, 10, 10, out, err, sizeof err) == 0);
    CHECK(feed(c, s, big, 64, 64, out, err, sizeof err) == -1 && strstr(err, "does not fit in its window"));
    CHECK(gw_seq_len(c, s) == 10);
    /* off again: no eviction */
    CHECK(gw_seq_set_streaming(c, s, 0, 0) == 0);
    CHECK(feed(c, s, big, 64, 64, out, err, sizeof err) == 0 && gw_seq_len(c, s) == 74);
    gw_seq_close(c, s);
    /* prefix cache: a sequence on shared blocks cannot stream, and a streaming
     * sequence offers nothing to the cache */
    CHECK(gw_context_set_prefix_cache(c, true) == 0);
    int a = gw_seq_open(c);
    CHECK(feed(c, a, big, 40, 40, out, err, sizeof err) == 0);
    CHECK(gw_seq_cache_prefix(c, a, big, 40) == 2);
    int a2 = gw_seq_open_prefix(c, big, 40);
    CHECK(gw_seq_len(c, a2) == 32);
    CHECK(gw_seq_set_streaming(c, a2, 4, 60) == -1);
    int z = gw_seq_open(c);
    CHECK(gw_seq_set_streaming(c, z, 4, 60) == 0);
    CHECK(feed(c, z, big + 1, 40, 40, out, err, sizeof err) == 0);
    CHECK(gw_seq_cache_prefix(c, z, big + 1, 40) == 0);
    free(out);
    gw_context_free(c);
}

/* Streaming with a window that holds everything: the same logits as dense,
 * bit for bit, for prefill chunks and decode steps. */
static void test_off_switch_exact(const int32_t *toks) {
    char err[256];
    gw_context *c = new_ctx(256, 32);
    if (!c) return;
    float *dense = malloc(sizeof(float) * V * 8), *stream = malloc(sizeof(float) * V * 8);
    int d = gw_seq_open(c), s = gw_seq_open(c);
    CHECK(gw_seq_set_streaming(c, s, 4, 1000) == 0);
    int ok = 1;
    for (int round = 0; round < 8; round++) {
        /* 3 chunks of prefill, then single tokens */
        int from = round < 3 ? round * 30 : 90 + (round - 3), m = round < 3 ? 30 : 1;
        ok &= feed(c, d, toks + from, m, 32, dense + (size_t)round * V, err, sizeof err) == 0;
        ok &= feed(c, s, toks + from, m, 32, stream + (size_t)round * V, err, sizeof err) == 0;
    }
    CHECK_MSG(ok, "%s", err);
    CHECK(memcmp(dense, stream, sizeof(float) * V * 8) == 0);
    CHECK(gw_seq_len(c, s) == 95);
    gw_streaming_stats st;
    gw_seq_streaming_stats(c, s, &st);
    CHECK(st.evicted_tokens == 0 && st.evictions == 0);
    free(dense);
    free(stream);
    gw_context_free(c);
}

/* The slot count follows the policy token by token (sinks kept, the oldest
 * of the window evicted a block at a time, at most S + W slots), and a long
 * greedy generation runs in a constant number of pool blocks. */
static void test_policy_and_generation(const int32_t *prompt, int n_prompt, int n_gen) {
    const int S = 4, W = 60, BS = 16, CAP = S + W;
    char err[256];
    gw_context *c = new_ctx(256, 32); /* room for more than S + W: eviction must give blocks back */
    if (!c) return;
    int s = gw_seq_open(c);
    CHECK(gw_seq_set_streaming(c, s, S, W) == 0);
    float *logits = malloc(sizeof(float) * V);
    int ok = feed(c, s, prompt, n_prompt, 32, logits, err, sizeof err) == 0;
    CHECK_MSG(ok, "%s", err);
    /* expected length after the prompt: simulate the policy chunk by chunk */
    int expect = 0;
    int64_t evicted = 0;
    for (int done = 0; done < n_prompt; done += 32) {
        int t = n_prompt - done < 32 ? n_prompt - done : 32;
        if (expect + t > CAP) {
            int e = (expect + t - CAP + BS - 1) / BS * BS;
            if (e > expect - S) e = expect - S;
            expect -= e;
            evicted += e;
        }
        expect += t;
    }
    CHECK_MSG(gw_seq_len(c, s) == expect, "after the prompt: %d slots, expected %d", gw_seq_len(c, s), expect);
    int free_min = 1 << 30, free_max = -1, bad_len = 0;
    int32_t tok;
    int32_t hist[4096];
    int n_hist = 0;
    gw_sampler_params sp = gw_sampler_default_params();
    sp.temperature = 0;
    gw_sampler *smp = gw_sampler_new(&sp, V);
    for (int i = 0; ok && i < n_gen; i++) {
        tok = gw_sample(smp, logits, hist, n_hist);
        if (n_hist < 4096) hist[n_hist++] = tok;
        if (expect + 1 > CAP) {
            int e = (expect + 1 - CAP + BS - 1) / BS * BS;
            if (e > expect - S) e = expect - S;
            expect -= e;
            evicted += e;
        }
        expect++;
        ok = feed(c, s, &tok, 1, 1, logits, err, sizeof err) == 0;
        bad_len += gw_seq_len(c, s) != expect || gw_seq_len(c, s) > CAP;
        int f = gw_context_kv_free_tokens(c);
        if (f < free_min) free_min = f;
        if (f > free_max) free_max = f;
    }
    CHECK_MSG(ok, "generation: %s", err);
    CHECK_MSG(bad_len == 0, "%d steps with an unexpected slot count", bad_len);
    gw_streaming_stats st;
    gw_seq_streaming_stats(c, s, &st);
    CHECK(st.evicted_tokens == evicted && gw_seq_len(c, s) + evicted == n_prompt + n_gen);
    /* never more than the blocks S + W needs */
    const int cap_blocks = (CAP + BS - 1) / BS;
    CHECK_MSG(free_min >= 256 - cap_blocks * BS, "the pool had only %d tokens free", free_min);
    printf("  %d prompt + %d generated tokens with S=%d W=%d: %lld evicted in %lld moves, cache %d slots, "
           "blocks in use %d..%d (S + W needs %d)\n",
           n_prompt, n_gen, S, W, (long long)st.evicted_tokens, (long long)st.evictions, gw_seq_len(c, s),
           (256 - free_max) / BS, (256 - free_min) / BS, cap_blocks);
    gw_sampler_free(smp);
    free(logits);
    gw_context_free(c);
}

/* Streaming perplexity (ppl.c's protocol) on the start of War and Peace:
 * dense, sinks + window, and window only. */
static void test_ppl(const int32_t *toks, int n) {
    const int W = 60, B = 16;
    char err[256];
    double ppl[3] = {0};
    const int sinks[3] = {0, 4, 0}, windows[3] = {0, W, W + 4};
    for (int k = 0; k < 3; k++) {
        gw_context *c = new_ctx(k == 0 ? n : W + 4, B);
        if (!c) return;
        gw_ppl_params pp = {.stream = 1, .n_sink = sinks[k], .n_window = windows[k], .bos = -1};
        gw_ppl_result r;
        int rc = gw_perplexity(c, V, toks, n, &pp, NULL, NULL, &r, err, sizeof err);
        CHECK_MSG(rc == 0, "%s", err);
        CHECK(r.n_scored == n - 1 && r.n_evaluated == n);
        CHECK(r.kv_tokens_max <= (k == 0 ? n : W + 4));
        ppl[k] = r.ppl;
        gw_context_free(c);
    }
    printf("  ppl over %d tokens (chunks of %d): dense %.3f, sinks 4 + window %d %.3f, window %d only %.3f\n", n, B,
           ppl[0], W, ppl[1], W + 4, ppl[2]);
    CHECK(isfinite(ppl[1]) && ppl[1] > 1);
    /* measured on 256-300 tokens at several places in the book: streaming
     * 1.1-1.35x dense, window only 2.5-4.8x streaming */
    CHECK_MSG(ppl[1] < 1.6 * ppl[0], "streaming ppl %g against dense %g", ppl[1], ppl[0]);
    CHECK_MSG(ppl[2] > 1.5 * ppl[1], "sinks %g should clearly beat window only %g", ppl[1], ppl[2]);
    /* the dense stream stops cleanly when its cache is full */
    gw_context *c = new_ctx(128, B);
    gw_ppl_params pp = {.stream = 1, .bos = -1};
    gw_ppl_result r;
    CHECK(gw_perplexity(c, V, toks, n, &pp, NULL, NULL, &r, err, sizeof err) == -1 && strstr(err, "KV cache full"));
    CHECK(r.n_evaluated == 128 && r.n_scored == 128 && r.ppl > 1);
    gw_context_free(c);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("KV level:\n");
    for (int neox = 0; neox < 2; neox++) {
        test_shift_one(neox, 16, 32);  /* whole blocks */
        test_shift_one(neox, 16, 5);   /* runs split across blocks */
        test_shift_one(neox, 12, 20);  /* partial rotary dimensions */
    }
    test_shift_refusals();
    test_shift_drift();

    char err[256];
    model = gw_model_load(test_model_path(), err, sizeof err);
    CHECK_MSG(model != NULL, "%s", err);
    if (!model) return test_finish("test_streaming");
    V = gw_model_n_vocab(model);
    int n_book;
    int32_t *book = book_tokens(400, &n_book);
    CHECK_MSG(n_book >= 400, "war_and_peace.txt: %d tokens", n_book);
    if (n_book >= 400) {
        printf("SmolLM2:\n");
        test_api();
        test_off_switch_exact(book);
        test_policy_and_generation(book, 100, 100);
        test_ppl(book + 100, 256);
    }
    free(book);
    gw_model_free(model);
    return test_finish("test_streaming");
}
