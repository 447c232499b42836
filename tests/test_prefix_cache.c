/* The prefix cache (src/kv/prefix_cache.c) and its support in the KV pool,
 * on a tiny pool without a model: the longest cached prefix is found, only
 * full blocks the caller holds are cached, references are counted, idle
 * blocks are reclaimed least recently used first and leaves before their
 * parents, a block in use is never reclaimed, a reservation reclaims idle
 * blocks on demand, a write into a shared block copies it first, and
 * everything returns to the pool. Then a randomized run of opens, attaches,
 * "computes", truncations, inserts and closes checks after every operation
 * that the tree and the pool agree (gw_prefix_cache_check) and that every
 * block a sequence starts on holds exactly the KV of its own tokens. */
#include <stdbool.h>
#include <stdint.h>

#include "kv/kv_cache.h"
#include "kv/prefix_cache.h"
#include "test.h"

#define BS 4

static void check_cache(const gw_prefix_cache *pc, const char *where) {
    char msg[256];
    int rc = gw_prefix_cache_check(pc, msg, sizeof msg);
    CHECK_MSG(rc == 0, "%s: %s", where, msg);
}

/* A sequence that "computed" its first n tokens (no forward pass here: the
 * test only needs the bookkeeping). */
static void seq_fill(gw_kv_pool *p, gw_kv_seq *s, int n) {
    CHECK(gw_kv_seq_reserve(p, s, n) == 0);
    s->n_tokens = n;
}

static int idle_list(const gw_kv_pool *p, int32_t *out) {
    int n = 0;
    for (int32_t b = p->lru_head; b >= 0; b = p->lru_next[b]) out[n++] = b;
    return n;
}

static void test_basics(void) {
    gw_kv_pool p;
    CHECK(gw_kv_pool_init(&p, 1, 1, 4, BS, 16) == 0);
    gw_prefix_cache *pc = gw_prefix_cache_new(&p);
    CHECK(pc != NULL);
    int32_t T[40], U[40], out[16];
    for (int i = 0; i < 40; i++) T[i] = 100 + i, U[i] = 100 + i;
    U[9] = 7; /* U differs from T in block 2 */

    /* A computed 18 tokens of T: 4 full blocks and a partial one */
    gw_kv_seq a = {0};
    seq_fill(&p, &a, 18);
    CHECK(a.n_blocks == 5);
    CHECK(gw_prefix_cache_insert(pc, T, a.blocks, 18 / BS) == 4);
    CHECK(gw_prefix_cache_n_blocks(pc) == 4);
    for (int i = 0; i < 4; i++) CHECK(p.refcount[a.blocks[i]] == 2);
    CHECK(p.refcount[a.blocks[4]] == 1 && !p.cached[a.blocks[4]]);
    CHECK(gw_prefix_cache_insert(pc, T, a.blocks, 4) == 0); /* again: nothing new */
    check_cache(pc, "after insert");

    /* longest prefix, whole blocks, bounded by max_blocks */
    CHECK(gw_prefix_cache_match(pc, T, 8, out) == 4);
    CHECK(!memcmp(out, a.blocks, 4 * sizeof(int32_t)));
    CHECK(gw_prefix_cache_match(pc, T, 3, out) == 3);
    CHECK(gw_prefix_cache_match(pc, U, 8, out) == 2);
    int32_t V[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(gw_prefix_cache_match(pc, V, 2, out) == 0);
    /* the same tokens in a different position do not match (the key is the path) */
    CHECK(gw_prefix_cache_match(pc, T + 4, 4, out) == 0);

    /* A closes: its cached blocks become idle (deepest first in the idle
     * list), the partial block goes back to the pool */
    int32_t ab[5];
    memcpy(ab, a.blocks, sizeof ab);
    gw_kv_seq_release(&p, &a);
    CHECK(p.n_idle == 4 && p.n_free == 12 && gw_kv_pool_available(&p) == 16);
    int32_t lst[16];
    CHECK(idle_list(&p, lst) == 4 && lst[0] == ab[3] && lst[1] == ab[2] && lst[2] == ab[1] && lst[3] == ab[0]);
    check_cache(pc, "after release");

    /* B starts on the 2 blocks U shares with T, computes 2 blocks of its own */
    gw_kv_seq b = {0};
    CHECK(gw_prefix_cache_match(pc, U, 4, out) == 2);
    CHECK(gw_kv_seq_attach(&p, &b, out, 2) == 0 && b.n_tokens == 8 && b.n_blocks == 2);
    CHECK(p.refcount[ab[0]] == 2 && p.refcount[ab[1]] == 2 && p.n_idle == 2);
    seq_fill(&p, &b, 16);
    CHECK(gw_prefix_cache_insert(pc, U, b.blocks, 4) == 2);
    check_cache(pc, "after B");
    /* attaching to a sequence that ends in a partial block is refused */
    gw_kv_seq c = {0};
    seq_fill(&p, &c, 3);
    CHECK(gw_kv_seq_attach(&p, &c, out, 1) == -1 && c.n_tokens == 3 && c.n_blocks == 1);
    gw_kv_seq_release(&p, &c);

    /* eviction takes idle blocks only: T's blocks 3 then 2; never B's */
    uint64_t ev0 = p.n_evicted;
    CHECK(gw_kv_pool_evict(&p, 1) == 1 && p.refcount[ab[3]] == 0 && p.refcount[ab[2]] == 1);
    CHECK(gw_kv_pool_evict(&p, 100) == 1 && p.refcount[ab[2]] == 0);
    CHECK(p.n_evicted == ev0 + 2);
    for (int i = 0; i < 4; i++) CHECK(p.refcount[b.blocks[i]] == 2);
    CHECK(gw_prefix_cache_match(pc, T, 8, out) == 2); /* T's tail is gone */
    CHECK(gw_prefix_cache_match(pc, U, 8, out) == 4);
    check_cache(pc, "after evicting T's tail");

    /* B closes: the idle order is b3, b2, then the shared b1, b0 */
    int32_t bb[4];
    memcpy(bb, b.blocks, sizeof bb);
    gw_kv_seq_release(&p, &b);
    CHECK(idle_list(&p, lst) == 4 && lst[0] == bb[3] && lst[1] == bb[2] && lst[2] == bb[1] && lst[3] == bb[0]);
    for (int i = 0; i < 4; i++) {
        CHECK(gw_kv_pool_evict(&p, 1) == 1);
        CHECK_MSG(p.refcount[bb[3 - i]] == 0, "eviction %d took the wrong block", i);
        check_cache(pc, "evicting B");
    }
    CHECK(gw_prefix_cache_n_blocks(pc) == 0 && p.n_free == 16 && p.n_idle == 0);
    CHECK(gw_kv_pool_evict(&p, 1) == 0);

    /* LRU: X then Y go idle; X is used again (so more recent): Y goes first */
    int32_t X[8] = {1, 1, 1, 1, 2, 2, 2, 2}, Y[8] = {3, 3, 3, 3, 4, 4, 4, 4};
    gw_kv_seq sx = {0}, sy = {0};
    seq_fill(&p, &sx, 8);
    seq_fill(&p, &sy, 8);
    CHECK(gw_prefix_cache_insert(pc, X, sx.blocks, 2) == 2 && gw_prefix_cache_insert(pc, Y, sy.blocks, 2) == 2);
    int32_t xb[2] = {sx.blocks[0], sx.blocks[1]}, yb[2] = {sy.blocks[0], sy.blocks[1]};
    gw_kv_seq_release(&p, &sx);
    gw_kv_seq_release(&p, &sy);
    CHECK(gw_prefix_cache_match(pc, X, 2, out) == 2);
    CHECK(gw_kv_seq_attach(&p, &sx, out, 2) == 0);
    gw_kv_seq_release(&p, &sx);
    check_cache(pc, "LRU setup");
    CHECK(gw_kv_pool_evict(&p, 2) == 2);
    CHECK(p.refcount[yb[0]] == 0 && p.refcount[yb[1]] == 0 && p.refcount[xb[0]] == 1 && p.refcount[xb[1]] == 1);

    /* a reservation reclaims idle blocks when the free ones run out, and
     * fails without touching blocks in use */
    gw_kv_seq big = {0};
    seq_fill(&p, &big, 14 * BS); /* 14 free blocks: all of them */
    CHECK(p.n_free == 0 && p.n_idle == 2);
    gw_kv_seq one = {0};
    CHECK(gw_kv_seq_reserve(&p, &one, 1) == 0 && p.n_idle == 1); /* X's leaf went */
    CHECK(p.refcount[xb[1]] == 1 && !p.cached[xb[1]]);
    CHECK(gw_kv_seq_reserve(&p, &one, 3 * BS) == -1 && one.n_blocks == 1);
    check_cache(pc, "reserve with eviction");
    gw_kv_seq_release(&p, &one);
    gw_kv_seq_release(&p, &big);

    /* copy-on-write: a sequence cut back into a shared block and written
     * again gets a private copy; the cached block keeps its contents */
    gw_kv_seq w = {0};
    int32_t Z[8] = {9, 9, 9, 9, 8, 8, 8, 8};
    seq_fill(&p, &w, 8);
    float kv[4] = {1, 2, 3, 4};
    for (int s = 0; s < 8; s++) {
        kv[0] = (float)s;
        gw_kv_store(&p, w.blocks[s / BS], 0, 0, s % BS, kv, kv);
    }
    CHECK(gw_prefix_cache_insert(pc, Z, w.blocks, 2) == 2);
    int32_t shared = w.blocks[1];
    gw_kv_seq_truncate(&p, &w, 6);
    CHECK(w.n_blocks == 2 && w.blocks[1] == shared);
    CHECK(gw_kv_seq_reserve(&p, &w, 7) == 0);
    CHECK(w.blocks[1] != shared && p.refcount[shared] == 1 && p.refcount[w.blocks[1]] == 1);
    size_t tile_new = gw_kv_tile(&p, w.blocks[1], 0, 0), tile_old = gw_kv_tile(&p, shared, 0, 0);
    CHECK(!memcmp(p.k + tile_new, p.k + tile_old, BS * 4 * sizeof(uint16_t)));
    CHECK(!memcmp(p.v + tile_new, p.v + tile_old, BS * 4 * sizeof(uint16_t)));
    kv[0] = 99;
    gw_kv_store(&p, w.blocks[1], 0, 0, 2, kv, kv);
    CHECK(memcmp(p.k + tile_new, p.k + tile_old, BS * 4 * sizeof(uint16_t)) != 0);
    check_cache(pc, "copy-on-write");
    gw_kv_seq_release(&p, &w);

    /* freeing the cache returns every block */
    gw_prefix_cache_free(pc);
    CHECK(p.n_free == 16 && p.n_idle == 0 && p.evict == NULL);
    for (int i = 0; i < 16; i++) CHECK(p.refcount[i] == 0 && !p.cached[i]);
    gw_kv_pool_free(&p);
}

/* ------------------------------------------------------------ randomized */

#define R_BLOCKS 24
#define R_SEQS 6
#define R_MAXLEN 40

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* What a slot holds: the hash of the tokens up to and including it, so a
 * block's contents are right for a sequence iff they match its tokens. */
static uint64_t content[R_BLOCKS * BS];
static uint64_t fingerprint(const int32_t *tok, int j) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i <= j; i++) h = (h ^ (uint64_t)(uint32_t)tok[i]) * 1099511628211ull;
    return h;
}

typedef struct {
    bool open;
    gw_kv_seq kv;
    int32_t tok[R_MAXLEN];
    int n;
} rseq;

static void test_random(void) {
    gw_kv_pool p;
    CHECK(gw_kv_pool_init(&p, 1, 1, 4, BS, R_BLOCKS) == 0);
    gw_prefix_cache *pc = gw_prefix_cache_new(&p);
    rseq s[R_SEQS] = {0};
    /* prompts from a few stems so that prefixes are shared */
    int32_t stems[3][R_MAXLEN];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < R_MAXLEN; i++) stems[k][i] = i < 6 + 5 * k ? 50 + i : (int32_t)rnd(3);
    int hits = 0, evicted_before = 0, cows = 0, bad = 0;
    for (int it = 0; it < 20000 && !bad; it++) {
        rseq *q = &s[rnd(R_SEQS)];
        uint32_t op = rnd(10);
        if (!q->open) {
            /* open: tokens = a stem, perturbed after a random point */
            q->open = true;
            memset(&q->kv, 0, sizeof q->kv);
            q->n = 1 + (int)rnd(R_MAXLEN);
            const int32_t *st = stems[rnd(3)];
            int cut = (int)rnd(R_MAXLEN + 1);
            for (int i = 0; i < q->n; i++) q->tok[i] = i < cut ? st[i] : (int32_t)rnd(4);
            int32_t out[R_MAXLEN / BS];
            int32_t m = gw_prefix_cache_match(pc, q->tok, (q->n - 1) / BS, out);
            CHECK(gw_kv_seq_attach(&p, &q->kv, out, m) == 0);
            hits += m;
            /* every slot it starts on holds the KV of its own tokens */
            for (int j = 0; j < m * BS; j++)
                if (content[q->kv.blocks[j / BS] * BS + j % BS] != fingerprint(q->tok, j)) bad++;
        } else if (op < 5 && q->kv.n_tokens < q->n) {
            /* compute a chunk (the reservation may reclaim idle blocks or copy a shared one) */
            int upto = q->kv.n_tokens + 1 + (int)rnd((uint32_t)(q->n - q->kv.n_tokens));
            int32_t before = q->kv.n_tokens / BS < q->kv.n_blocks ? q->kv.blocks[q->kv.n_tokens / BS] : -1;
            if (gw_kv_seq_reserve(&p, &q->kv, upto) == 0) {
                int32_t wb = q->kv.n_tokens / BS;
                if (before >= 0 && q->kv.blocks[wb] != before) {
                    cows++; /* the pool copied the block: so does the shadow */
                    memcpy(&content[q->kv.blocks[wb] * BS], &content[before * BS], BS * sizeof(uint64_t));
                }
                for (int j = q->kv.n_tokens; j < upto; j++) {
                    int32_t b = q->kv.blocks[j / BS];
                    if (p.refcount[b] != 1) bad++; /* never write a shared block */
                    content[b * BS + j % BS] = fingerprint(q->tok, j);
                }
                q->kv.n_tokens = upto;
            }
        } else if (op < 7) {
            gw_prefix_cache_insert(pc, q->tok, q->kv.blocks, q->kv.n_tokens / BS);
        } else if (op < 8) {
            gw_kv_seq_truncate(&p, &q->kv, (int32_t)rnd((uint32_t)q->kv.n_tokens + 1));
        } else {
            if (rnd(2)) gw_prefix_cache_insert(pc, q->tok, q->kv.blocks, q->kv.n_tokens / BS);
            gw_kv_seq_release(&p, &q->kv);
            q->open = false;
        }
        char msg[256];
        if (gw_prefix_cache_check(pc, msg, sizeof msg) != 0) {
            CHECK_MSG(0, "iteration %d: %s", it, msg);
            bad++;
        }
        evicted_before = (int)p.n_evicted;
    }
    CHECK_MSG(bad == 0, "%d wrong blocks or writes into shared blocks", bad);
    printf("randomized: %d blocks reused, %d evicted, %d copied on write\n", hits, evicted_before, cows);
    CHECK(hits > 100 && evicted_before > 10 && cows > 0);
    for (int i = 0; i < R_SEQS; i++)
        if (s[i].open) gw_kv_seq_release(&p, &s[i].kv);
    CHECK(p.n_free + p.n_idle == R_BLOCKS);
    gw_prefix_cache_free(pc);
    CHECK(p.n_free == R_BLOCKS);
    gw_kv_pool_free(&p);
}

int main(void) {
    test_basics();
    test_random();
    return test_finish("test_prefix_cache");
}
