/* KV selection: prompt compression by eviction (SnapKV, H2O).
 *
 * KV level: gw_kv_seq_gather moves the chosen slots of one (layer, head)
 * down in order, keys and values bit for bit, leaves other tiles alone, and
 * refuses unordered lists, slots outside the sequence and shared blocks.
 *
 * Engine level, on SmolLM2: scoring alone changes no logits; a budget that
 * holds the prompt changes nothing; compressing keeps exactly `budget`
 * slots, counts the dropped tokens, gives the blocks back to the pool and
 * the sequence goes on at the prompt's positions; dropping a few low-scored tokens
 * moves the next-token log-probabilities a little, dropping half moves them
 * more; on int8 pages the same compressions land near the fp16 ones;
 * streaming sequences and malformed arguments are refused; policies parse
 * and print. */
#include <stdint.h>

#include "backend/cpu/quant.h"
#include "godwit.h"
#include "kv/kv_cache.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

static void test_gather(void) {
    enum { L = 2, H = 2, D = 8, BS = 4 };
    gw_kv_pool p;
    CHECK(gw_kv_pool_init(&p, L, H, D, BS, 6) == 0);
    gw_kv_seq s = {0};
    CHECK(gw_kv_seq_reserve(&p, &s, 14) == 0);
    s.n_tokens = 14;
    float k[D], v[D];
    for (int sl = 0; sl < 14; sl++)
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) {
                for (int d = 0; d < D; d++) {
                    k[d] = (float)(1000 * l + 100 * h + sl) + d / 16.0f;
                    v[d] = -k[d];
                }
                gw_kv_store(&p, s.blocks[sl / BS], l, h, sl % BS, k, v);
            }
    const int32_t keep[6] = {0, 2, 5, 6, 11, 13};
    CHECK(gw_kv_seq_gather(&p, &s, 1, 0, keep, 6) == 0);
    for (int i = 0; i < 14; i++) {
        for (int h = 0; h < H; h++) {
            size_t t = gw_kv_tile(&p, s.blocks[i / BS], 1, h);
            int want = h == 0 && i < 6 ? keep[i] : i; /* only (1, 0) moved, only its first 6 slots */
            float kk = gw_fp16_to_fp32(p.k[t + gw_kv_k_index(&p, i % BS, 3)]);
            float vv = gw_fp16_to_fp32(p.v[t + gw_kv_v_index(&p, i % BS, 3)]);
            CHECK_MSG(kk == gw_fp16_to_fp32(gw_fp32_to_fp16(1000 + 100 * h + want + 3 / 16.0f)) && vv == -kk,
                      "slot %d head %d: key %g", i, h, kk);
        }
        size_t t0 = gw_kv_tile(&p, s.blocks[i / BS], 0, 0); /* layer 0 untouched */
        CHECK(gw_fp16_to_fp32(p.k[t0 + gw_kv_k_index(&p, i % BS, 0)]) == (float)i);
    }
    const int32_t unordered[3] = {0, 5, 5}, below[2] = {1, 0}, outside[2] = {0, 24};
    CHECK(gw_kv_seq_gather(&p, &s, 0, 0, unordered, 3) == -1);
    CHECK(gw_kv_seq_gather(&p, &s, 0, 0, below, 2) == -1);
    CHECK(gw_kv_seq_gather(&p, &s, 0, 0, outside, 2) == -1);
    CHECK(gw_kv_seq_gather(&p, &s, 2, 0, keep, 2) == -1);
    gw_kv_block_ref(&p, s.blocks[0]); /* shared */
    CHECK(gw_kv_seq_gather(&p, &s, 0, 0, keep, 2) == -1);
    gw_kv_block_unref(&p, s.blocks[0]);
    gw_kv_seq_release(&p, &s);
    gw_kv_pool_free(&p);
}

static void test_parse(void) {
    gw_kv_select k;
    char buf[64];
    CHECK(gw_kv_select_parse("snapkv:1024", &k) == 0 && k.policy == GW_SELECT_SNAPKV && k.budget == 1024);
    CHECK(gw_kv_select_parse("h2o:4x", &k) == 0 && k.policy == GW_SELECT_H2O && k.ratio == 4 && k.budget == 0);
    gw_kv_select_describe(&k, buf, sizeof buf);
    CHECK(!strcmp(buf, "h2o:4x"));
    CHECK(gw_kv_select_parse("snapkv:4x,pool=15", &k) == 0 && k.ratio == 4 && k.pool == 15);
    gw_kv_select_describe(&k, buf, sizeof buf);
    CHECK(!strcmp(buf, "snapkv:4x,pool=15"));
    CHECK(gw_kv_select_parse("snapkv:512,pool=7", &k) == 0 && k.budget == 512 && k.pool == 7);
    gw_kv_select_describe(&k, buf, sizeof buf);
    CHECK(!strcmp(buf, "snapkv:512")); /* the default width is not spelled out */
    CHECK(gw_kv_select_parse("none", &k) == 0 && k.policy == GW_SELECT_NONE);
    const char *bad[] = {"snapkv", "snapkv:", "snapkv:0", "snapkv:-3", "snapkv:1.5", "h2o:0.5x", "lru:8", "h2o:4xx",
                         "snapkv:4y", "snapkv:4x,pool=8", "snapkv:4x,pool=", "h2o:4x,pool=15", "snapkv:4x,pool=15z",
                         "snapkv:4x,"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) CHECK_MSG(gw_kv_select_parse(bad[i], &k) == -1, "%s", bad[i]);
}

/* ---------------------------------------------------------- engine level */

static int32_t *ids;
static int n_ids;

/* Feeds the prompt (chunks of 128) to a new sequence, with the policy's
 * begin/end around it, then `extra` greedy tokens; returns the sequence
 * and the last log-probabilities in lp. */
static int feed(gw_context *c, const gw_kv_select *k, int n, float *lp, int V, int extra) {
    int seq = gw_seq_open(c);
    int32_t sq[128], pos[128];
    int8_t want[128];
    char err[256];
    CHECK(gw_kv_select_begin(c, seq, k, n) == 0);
    for (int at = 0; at < n; at += 128) {
        int m = n - at < 128 ? n - at : 128;
        for (int i = 0; i < m; i++) sq[i] = seq, pos[i] = at + i, want[i] = at + i == n - 1;
        gw_batch b = {m, ids + at, sq, pos, want};
        CHECK(gw_forward(c, &b, lp, err, sizeof err) == 0);
    }
    CHECK(gw_kv_select_end(c, seq, k, n) == 0);
    for (int g = 0; g < extra; g++) {
        int32_t best = 0;
        for (int v = 1; v < V; v++) best = lp[v] > lp[best] ? v : best;
        /* the prompt's positions go on, whatever was dropped */
        int32_t p = gw_seq_len(c, seq) + gw_seq_kv_compressed(c, seq);
        CHECK(p == n + g);
        int8_t w = 1;
        gw_batch b = {1, &best, &seq, &p, &w};
        CHECK(gw_forward(c, &b, lp, err, sizeof err) == 0);
    }
    test_log_softmax(lp, V);
    return seq;
}

static double max_dev_top10(const float *ref, const float *lp, int V) {
    double dev = 0;
    int top[10];
    test_top_k(ref, V, top, 10);
    for (int r = 0; r < 10; r++) dev = fmax(dev, fabs(lp[top[r]] - ref[top[r]]));
    return dev;
}

static void test_engine(void) {
    char err[512];
    gw_model *m = gw_model_load(test_model_file("SmolLM2-135M-Instruct.Q4_1.gguf"), err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    if (!m) return;
    const int V = gw_model_n_vocab(m);
    size_t got = 0;
    char *text = test_read_prose(400000, 4000, &got);
    CHECK(text != NULL);
    if (!text) return;
    int64_t n = gw_tokenize(gw_model_tokenizer(m), text, got, true, false, &ids);
    CHECK(n > 600);
    n_ids = n > 600 ? 600 : (int)n;

    gw_context_params p = gw_context_default_params();
    p.n_ctx = 1024;
    p.n_batch = 128;
    p.n_threads = 2;
    gw_context *c = gw_context_new(m, &p, err, sizeof err);
    CHECK_MSG(c != NULL, "%s", err);
    float *ref = malloc(sizeof(float) * V), *lp = malloc(sizeof(float) * V);
    gw_kv_select none = {0};
    gw_seq_close(c, feed(c, &none, n_ids, ref, V, 4));

    /* a budget holding the whole prompt: nothing changes (H2O scores every
     * token, so this also shows scoring leaves the forward pass alone) */
    gw_kv_select all = {GW_SELECT_H2O, 4096, 0, 0};
    int s = feed(c, &all, n_ids, lp, V, 4);
    CHECK(memcmp(lp, ref, sizeof(float) * V) == 0);
    CHECK(gw_seq_len(c, s) == n_ids + 4 && gw_seq_kv_compressed(c, s) == 0);
    gw_seq_close(c, s);

    /* compression: budget slots kept, blocks back, positions go on */
    int free_before = gw_context_kv_free_tokens(c);
    double dev_small = 0, dev_half = 0;
    for (int pol = GW_SELECT_SNAPKV; pol <= GW_SELECT_H2O; pol++) {
        gw_kv_select few = {pol, n_ids - 24, 0, 0}, half = {pol, 0, 2, 0};
        s = feed(c, &few, n_ids, lp, V, 4);
        CHECK(gw_seq_len(c, s) == n_ids - 24 + 4 && gw_seq_kv_compressed(c, s) == 24);
        dev_small = fmax(dev_small, max_dev_top10(ref, lp, V));
        gw_seq_close(c, s);
        s = feed(c, &half, n_ids, lp, V, 4);
        CHECK(gw_seq_len(c, s) == n_ids / 2 + 4 && gw_seq_kv_compressed(c, s) == n_ids - n_ids / 2);
        int bs = gw_context_kv_block_size(c);
        int held = (n_ids / 2 + 4 + bs - 1) / bs * bs;
        CHECK_MSG(gw_context_kv_free_tokens(c) == free_before - held, "free %d, expected %d",
                  gw_context_kv_free_tokens(c), free_before - held);
        dev_half = fmax(dev_half, max_dev_top10(ref, lp, V));
        gw_seq_close(c, s);
    }
    printf("max |dlogprob| over the top 10 after 4 more tokens: %.4f dropping 24 of %d prompt tokens, "
           "%.4f dropping half\n", dev_small, n_ids, dev_half);
    CHECK(dev_small < 0.5);
    CHECK(dev_small < dev_half);
    CHECK(gw_context_kv_free_tokens(c) == free_before);

    /* refusals */
    s = gw_seq_open(c);
    CHECK(gw_seq_kv_compress(c, s, 10, 4, 1) == -1); /* not scoring */
    CHECK(gw_seq_kv_score(c, s, 0) == 0);
    CHECK(gw_seq_kv_compress(c, s, 10, 11, 1) == -1); /* recent > budget */
    CHECK(gw_seq_kv_compress(c, s, 0, 0, 1) == -1);
    CHECK(gw_seq_kv_compress(c, s, 10, 4, 0) == -1);
    CHECK(gw_seq_kv_compress(c, s, 10, 4, 1) == 0); /* empty: nothing to drop */
    CHECK(gw_seq_set_streaming(c, s, 4, 60) == 0);
    CHECK(gw_seq_kv_score(c, s, 0) == -1);
    gw_seq_close(c, s);
    gw_context_free(c);

    /* quantized pages: the same compressions on int8 pages (the kept slots of
     * sealed blocks requantized) land near the fp16 ones, for both policies */
    p.kv_type = GW_KV_INT8;
    p.kv_block_size = 0;
    c = gw_context_new(m, &p, err, sizeof err);
    CHECK_MSG(c != NULL, "%s", err);
    float *lpq = malloc(sizeof(float) * V);
    gw_context *cf = gw_context_new(m, &(gw_context_params){.n_ctx = 1024, .n_batch = 128, .n_threads = 2}, err,
                                    sizeof err);
    double dev_q = 0;
    const int free_q = gw_context_kv_free_tokens(c);
    for (int pol = GW_SELECT_SNAPKV; pol <= GW_SELECT_H2O; pol++) {
        gw_kv_select half = {pol, 0, 2, 0};
        int sf = feed(cf, &half, n_ids, lp, V, 4);
        s = feed(c, &half, n_ids, lpq, V, 4);
        CHECK(gw_seq_len(c, s) == n_ids / 2 + 4 && gw_seq_kv_compressed(c, s) == n_ids - n_ids / 2);
        dev_q = fmax(dev_q, max_dev_top10(lp, lpq, V));
        gw_seq_close(c, s);
        gw_seq_close(cf, sf);
    }
    printf("int8 pages: max |dlogprob| over the top 10 against fp16 pages, both compressed to half: %.4f\n", dev_q);
    CHECK(dev_q < 0.5 * dev_half + 0.05);
    CHECK(gw_context_kv_free_tokens(c) == free_q);
    free(lpq);
    gw_context_free(cf);
    gw_context_free(c);

    free(ref);
    free(lp);
    free(ids);
    free(text);
    gw_model_free(m);
}

int main(void) {
    test_gather();
    test_parse();
    test_engine();
    return test_finish("test_kvselect");
}
