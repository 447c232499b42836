/* Engine pieces below the model: thread pool, paged KV cache bookkeeping,
 * sampler; and, on the real model, that a flat batch mixing two sequences
 * gives the same logits as running each sequence alone, and that a forward
 * pass that cannot get KV blocks fails cleanly and changes nothing. */
#include <stdatomic.h>

#include "backend/cpu/threadpool.h"
#include "godwit.h"
#include "kv/kv_cache.h"
#include "test.h"

/* ---- thread pool ---- */

typedef struct {
    atomic_int *counts;
    atomic_int calls;
} pool_arg;

static void count_task(void *arg, int64_t task, int thread) {
    pool_arg *a = arg;
    (void)thread;
    atomic_fetch_add(&a->counts[task], 1);
    atomic_fetch_add(&a->calls, 1);
}

static void test_threadpool(void) {
    /* more threads than cores on purpose: jobs must still finish promptly */
    for (int threads = 1; threads <= 5; threads += 2) {
        gw_threadpool *p = gw_threadpool_new(threads);
        CHECK(p != NULL);
        CHECK(gw_threadpool_size(p) == threads);
        atomic_int counts[257];
        for (int job = 0; job < 2000; job++) {
            int n = job % 257 + 1;
            pool_arg a = {.counts = counts};
            for (int i = 0; i < n; i++) atomic_store(&counts[i], 0);
            atomic_store(&a.calls, 0);
            gw_threadpool_run(p, count_task, &a, n);
            int bad = 0;
            for (int i = 0; i < n; i++) bad += atomic_load(&counts[i]) != 1;
            CHECK_MSG(bad == 0 && atomic_load(&a.calls) == n, "job %d: %d tasks not run exactly once", job, bad);
            if (bad) break;
        }
        gw_threadpool_free(p);
    }
    CHECK(gw_cpu_count() >= 1);
}

/* ---- KV cache bookkeeping ---- */

static void test_kv_cache(void) {
    gw_kv_pool p;
    CHECK(gw_kv_pool_init(&p, 2, 3, 8, 16, 10) == 0);
    CHECK(p.n_free == 10);
    CHECK(gw_kv_bytes_per_token(&p) == 2u * 2 * 3 * 8 * 2);
    gw_kv_seq a = {0}, b = {0};
    CHECK(gw_kv_seq_reserve(&p, &a, 1) == 0 && a.n_blocks == 1);
    CHECK(gw_kv_seq_reserve(&p, &a, 16) == 0 && a.n_blocks == 1);
    CHECK(gw_kv_seq_reserve(&p, &a, 17) == 0 && a.n_blocks == 2);
    CHECK(gw_kv_seq_reserve(&p, &b, 16 * 8) == 0 && b.n_blocks == 8);
    CHECK(p.n_free == 0);
    /* exhausted: nothing allocated, -1 */
    CHECK(gw_kv_seq_reserve(&p, &a, 33) == -1 && a.n_blocks == 2);
    /* blocks are distinct */
    int seen[10] = {0};
    for (int i = 0; i < a.n_blocks; i++) seen[a.blocks[i]]++;
    for (int i = 0; i < b.n_blocks; i++) seen[b.blocks[i]]++;
    int dup = 0;
    for (int i = 0; i < 10; i++) dup += seen[i] != 1;
    CHECK(dup == 0);
    a.n_tokens = 17;
    gw_kv_seq_truncate(&p, &a, 16);
    CHECK(a.n_blocks == 1 && a.n_tokens == 16 && p.n_free == 1);
    gw_kv_seq_truncate(&p, &a, 0);
    CHECK(a.n_blocks == 0 && p.n_free == 2);
    gw_kv_seq_release(&p, &b);
    CHECK(p.n_free == 10 && b.blocks == NULL);
    gw_kv_seq_release(&p, &a);
    /* shared block: freed only when the last reference goes */
    CHECK(gw_kv_seq_reserve(&p, &a, 5) == 0);
    p.refcount[a.blocks[0]]++;
    gw_kv_seq_release(&p, &a);
    CHECK(p.n_free == 9);
    gw_kv_pool_free(&p);
}

/* ---- sampler ---- */

static void test_sampler(void) {
    const int V = 1000;
    float *logits = malloc(sizeof(float) * V), *copy = malloc(sizeof(float) * V);
    for (int i = 0; i < V; i++) logits[i] = sinf((float)i * 0.37f) * 3.0f;
    logits[421] = 9.0f;
    logits[77] = 8.5f;
    gw_sampler_params sp = gw_sampler_default_params();
    sp.temperature = 0;
    gw_sampler *s = gw_sampler_new(&sp, V);
    memcpy(copy, logits, sizeof(float) * V);
    CHECK(gw_sample(s, copy, NULL, 0) == 421);
    /* repetition penalty can move the argmax */
    sp.repeat_penalty = 2.0f;
    gw_sampler_free(s);
    s = gw_sampler_new(&sp, V);
    int32_t hist[] = {421, 421};
    memcpy(copy, logits, sizeof(float) * V);
    CHECK(gw_sample(s, copy, hist, 2) == 77);
    CHECK_NEAR(copy[421], 4.5, 1e-6); /* penalized once, not twice */
    gw_sampler_free(s);
    /* top-k 1 == greedy whatever the temperature */
    sp = gw_sampler_default_params();
    sp.top_k = 1;
    sp.temperature = 5.0f;
    s = gw_sampler_new(&sp, V);
    for (int i = 0; i < 20; i++) {
        memcpy(copy, logits, sizeof(float) * V);
        CHECK(gw_sample(s, copy, NULL, 0) == 421);
    }
    gw_sampler_free(s);
    /* same seed, same draws; only tokens that survive min-p are drawn */
    sp = gw_sampler_default_params();
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.5f; /* 77 survives (e^-0.5 = 0.61 of the top), the rest do not */
    sp.temperature = 1.0f;
    sp.seed = 42;
    gw_sampler *s1 = gw_sampler_new(&sp, V), *s2 = gw_sampler_new(&sp, V);
    int n421 = 0, other = 0;
    for (int i = 0; i < 400; i++) {
        memcpy(copy, logits, sizeof(float) * V);
        int32_t t1 = gw_sample(s1, copy, NULL, 0);
        memcpy(copy, logits, sizeof(float) * V);
        int32_t t2 = gw_sample(s2, copy, NULL, 0);
        CHECK(t1 == t2);
        if (t1 == 421) n421++;
        else if (t1 != 77) other++;
    }
    CHECK(other == 0);
    /* p(421) = 1 / (1 + e^-0.5) = 0.62 */
    CHECK_MSG(n421 > 200 && n421 < 300, "421 drawn %d/400 times", n421);
    gw_sampler_free(s1);
    gw_sampler_free(s2);
    /* top-p: the top token holds ~45% of the mass, so p = 0.3 keeps it alone */
    sp.min_p = 0;
    sp.top_p = 0.3f;
    s = gw_sampler_new(&sp, V);
    for (int i = 0; i < 50; i++) {
        memcpy(copy, logits, sizeof(float) * V);
        CHECK(gw_sample(s, copy, NULL, 0) == 421);
    }
    gw_sampler_free(s);
    free(logits);
    free(copy);
}

/* ---- batching on the real model ---- */

static void forward_seq(gw_context *c, int seq, const int32_t *toks, int n, float *logits) {
    int32_t seqv[64], pos[64];
    int8_t want[64];
    for (int i = 0; i < n; i++) {
        seqv[i] = seq;
        pos[i] = gw_seq_len(c, seq) + i;
        want[i] = i == n - 1;
    }
    char err[256];
    gw_batch b = {n, toks, seqv, pos, want};
    CHECK_MSG(gw_forward(c, &b, logits, err, sizeof err) == 0, "%s", err);
}

static void test_batching(void) {
    char err[256];
    gw_model *m = gw_model_load(test_model_path(), err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    if (!m) return;
    const int V = gw_model_n_vocab(m);
    gw_context_params cp = gw_context_default_params();
    cp.n_ctx = 256;
    cp.n_batch = 64;
    gw_context *c = gw_context_new(m, &cp, err, sizeof err);
    CHECK_MSG(c != NULL, "%s", err);
    const int32_t pa[] = {504, 2753, 29, 22404, 5168, 103, 269, 314}, pb[] = {1, 4093, 198, 11, 339, 2709};
    float *ref_a = malloc(sizeof(float) * V), *ref_b = malloc(sizeof(float) * V);
    float *out = malloc(sizeof(float) * V * 2);
    /* alone */
    int sa = gw_seq_open(c);
    forward_seq(c, sa, pa, 8, ref_a);
    gw_seq_close(c, sa);
    int sb = gw_seq_open(c);
    forward_seq(c, sb, pb, 6, ref_b);
    gw_seq_close(c, sb);
    /* interleaved in one batch: a's first 5 tokens, then a batch mixing a's
     * last 3 with all of b's */
    sa = gw_seq_open(c);
    sb = gw_seq_open(c);
    CHECK(sa != sb);
    float *tmp = malloc(sizeof(float) * V);
    forward_seq(c, sa, pa, 5, tmp);
    int32_t tok[9], seqv[9], pos[9];
    int8_t want[9] = {0};
    int k = 0;
    for (int i = 0; i < 6; i++) {
        tok[k] = pb[i]; seqv[k] = sb; pos[k] = i; want[k] = i == 5; k++;
        if (i < 3) { tok[k] = pa[5 + i]; seqv[k] = sa; pos[k] = 5 + i; want[k] = i == 2; k++; }
    }
    gw_batch b = {k, tok, seqv, pos, want};
    CHECK_MSG(gw_forward(c, &b, out, err, sizeof err) == 0, "%s", err);
    /* outputs come in batch order: a's last token (index 5) before b's (8) */
    double da = 0, db = 0;
    for (int i = 0; i < V; i++) {
        da = fmax(da, fabs(out[i] - ref_a[i]));
        db = fmax(db, fabs(out[V + i] - ref_b[i]));
    }
    CHECK_MSG(da < 1e-4 && db < 1e-4, "batched vs alone: max |dlogit| %g, %g", da, db);
    CHECK(gw_seq_len(c, sa) == 8 && gw_seq_len(c, sb) == 6);
    /* a batch that cannot get KV blocks fails and changes nothing */
    int32_t big[64], bseq[64], bpos[64];
    int8_t bwant[64] = {0};
    int sc = gw_seq_open(c);
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < 64; i++) {
            big[i] = 100 + i;
            bseq[i] = sc;
            bpos[i] = gw_seq_len(c, sc) + i;
        }
        gw_batch bb = {64, big, bseq, bpos, bwant};
        if (gw_forward(c, &bb, out, err, sizeof err) != 0) break;
    }
    CHECK_MSG(strstr(err, "KV cache full") != NULL, "expected a KV-full error, got '%s'", err);
    int len_c = gw_seq_len(c, sc);
    CHECK(len_c % 64 == 0 && len_c < 256);
    /* sequence a still continues exactly as before */
    int32_t next = 4093;
    forward_seq(c, sa, &next, 1, tmp);
    gw_seq_close(c, sa);
    gw_seq_close(c, sb);
    gw_seq_close(c, sc);
    sa = gw_seq_open(c);
    float *tmp2 = malloc(sizeof(float) * V);
    forward_seq(c, sa, pa, 8, tmp2);
    forward_seq(c, sa, &next, 1, tmp2);
    double d = 0;
    for (int i = 0; i < V; i++) d = fmax(d, fabs(tmp[i] - tmp2[i]));
    CHECK_MSG(d < 1e-4, "after a failed batch: max |dlogit| %g", d);
    /* bad input */
    int32_t badtok = V, s0 = sa, p0 = 9;
    int8_t w0 = 1;
    gw_batch bad = {1, &badtok, &s0, &p0, &w0};
    CHECK(gw_forward(c, &bad, out, err, sizeof err) == -1 && strstr(err, "out of range"));
    int32_t okt = 5, badseq = 200;
    gw_batch bad2 = {1, &okt, &badseq, &p0, &w0};
    CHECK(gw_forward(c, &bad2, out, err, sizeof err) == -1 && strstr(err, "not open"));
    free(tmp);
    free(tmp2);
    free(ref_a);
    free(ref_b);
    free(out);
    gw_context_free(c);
    gw_model_free(m);
}

int main(void) {
    test_threadpool();
    test_kv_cache();
    test_sampler();
    test_batching();
    return test_finish("test_engine");
}
