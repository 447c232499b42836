/* The prefix cache's radix tree (see prefix_cache.h).
 *
 * Invariant that makes eviction simple: a sequence that holds a cached
 * block holds every block on the path from the root to it. Sequences get
 * cached blocks only as whole root paths (gw_kv_seq_attach of a match), and
 * insert only chains that start at the root and run through blocks they hold
 * (the walk stops at a node with a different block). Hence a block that no
 * sequence holds (idle) has only idle blocks below it, and because a
 * sequence releases its blocks last first, and the pool appends blocks to
 * its idle list as they become idle, every idle node comes after all of its
 * children in that list: the least recently idle block is always a leaf,
 * and evicting from the head never strands a child. (The evict hook still
 * refuses a node with children, so a broken invariant costs a scan, never a
 * corrupt tree; gw_prefix_cache_check verifies it all in the tests.) */
#include "kv/prefix_cache.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gw_prefix_cache {
    gw_kv_pool *pool;
    int32_t bs, n_blocks;
    /* per block id (= node id) */
    uint8_t *in_tree;
    int32_t *parent;     /* parent block, -1: a child of the root */
    int32_t *n_children;
    uint64_t *hash;      /* of (parent, tokens) */
    int32_t *chain;      /* next node in the same hash bucket */
    int32_t *tokens;     /* [n_blocks][bs] the edge's token ids */
    /* hash table: bucket heads, -1 empty */
    int32_t *bucket;
    uint64_t mask;
    int32_t n_cached;
};

static uint64_t key_hash(int32_t parent, const int32_t *tok, int32_t n) {
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)(uint32_t)(parent + 1);
    for (int32_t i = 0; i < n; i++) {
        h ^= (uint32_t)tok[i];
        h *= 0x100000001b3ull;
    }
    /* finalizer (splitmix64) so that the low bits used for the bucket mix well */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

static int32_t find_child(const gw_prefix_cache *pc, int32_t parent, const int32_t *tok, uint64_t h) {
    for (int32_t b = pc->bucket[h & pc->mask]; b >= 0; b = pc->chain[b])
        if (pc->hash[b] == h && pc->parent[b] == parent &&
            !memcmp(pc->tokens + (size_t)b * pc->bs, tok, (size_t)pc->bs * sizeof(int32_t)))
            return b;
    return -1;
}

static void unlink_node(gw_prefix_cache *pc, int32_t b) {
    int32_t *link = &pc->bucket[pc->hash[b] & pc->mask];
    while (*link != b) link = &pc->chain[*link];
    *link = pc->chain[b];
    if (pc->parent[b] >= 0) pc->n_children[pc->parent[b]]--;
    pc->in_tree[b] = 0;
    pc->n_cached--;
}

/* The pool's evict hook: an idle block is about to be reclaimed. */
static int on_evict(void *arg, int32_t b) {
    gw_prefix_cache *pc = arg;
    if (!pc->in_tree[b] || pc->n_children[b] > 0) return -1;
    unlink_node(pc, b);
    return 0;
}

gw_prefix_cache *gw_prefix_cache_new(gw_kv_pool *p) {
    gw_prefix_cache *pc = calloc(1, sizeof *pc);
    if (!pc) return NULL;
    pc->pool = p;
    pc->bs = p->block_size;
    pc->n_blocks = p->n_blocks;
    size_t n = (size_t)p->n_blocks;
    uint64_t nb = 16;
    while (nb < 2 * n) nb *= 2; /* load factor <= 1/2 */
    pc->mask = nb - 1;
    pc->in_tree = calloc(n, 1);
    pc->parent = malloc(n * sizeof(int32_t));
    pc->n_children = calloc(n, sizeof(int32_t));
    pc->hash = malloc(n * sizeof(uint64_t));
    pc->chain = malloc(n * sizeof(int32_t));
    pc->tokens = malloc(n * pc->bs * sizeof(int32_t));
    pc->bucket = malloc(nb * sizeof(int32_t));
    if (!pc->in_tree || !pc->parent || !pc->n_children || !pc->hash || !pc->chain || !pc->tokens || !pc->bucket) {
        gw_prefix_cache_free(pc);
        return NULL;
    }
    for (uint64_t i = 0; i < nb; i++) pc->bucket[i] = -1;
    p->evict = on_evict;
    p->evict_arg = pc;
    return pc;
}

void gw_prefix_cache_free(gw_prefix_cache *pc) {
    if (!pc) return;
    if (pc->in_tree)
        for (int32_t b = 0; b < pc->n_blocks; b++)
            if (pc->in_tree[b]) gw_kv_block_uncache(pc->pool, b);
    if (pc->pool->evict_arg == pc) {
        pc->pool->evict = NULL;
        pc->pool->evict_arg = NULL;
    }
    free(pc->in_tree);
    free(pc->parent);
    free(pc->n_children);
    free(pc->hash);
    free(pc->chain);
    free(pc->tokens);
    free(pc->bucket);
    free(pc);
}

int32_t gw_prefix_cache_match(const gw_prefix_cache *pc, const int32_t *tokens, int32_t max_blocks, int32_t *out) {
    int32_t parent = -1, i = 0;
    for (; i < max_blocks; i++) {
        const int32_t *t = tokens + (size_t)i * pc->bs;
        int32_t b = find_child(pc, parent, t, key_hash(parent, t, pc->bs));
        if (b < 0) break;
        if (out) out[i] = b;
        parent = b;
    }
    return i;
}

int32_t gw_prefix_cache_insert(gw_prefix_cache *pc, const int32_t *tokens, const int32_t *blocks, int32_t n_blocks) {
    int32_t parent = -1, added = 0;
    for (int32_t i = 0; i < n_blocks; i++) {
        const int32_t *t = tokens + (size_t)i * pc->bs;
        uint64_t h = key_hash(parent, t, pc->bs);
        int32_t b = find_child(pc, parent, t, h);
        if (b >= 0) {
            if (b != blocks[i]) break; /* computed twice: keep the first copy */
            parent = b;
            continue;
        }
        b = blocks[i];
        if (b < 0 || b >= pc->n_blocks || pc->in_tree[b] || pc->pool->refcount[b] < 1) break; /* misuse */
        pc->in_tree[b] = 1;
        pc->parent[b] = parent;
        pc->n_children[b] = 0;
        pc->hash[b] = h;
        memcpy(pc->tokens + (size_t)b * pc->bs, t, (size_t)pc->bs * sizeof(int32_t));
        pc->chain[b] = pc->bucket[h & pc->mask];
        pc->bucket[h & pc->mask] = b;
        if (parent >= 0) pc->n_children[parent]++;
        pc->n_cached++;
        gw_kv_block_cache(pc->pool, b);
        added++;
        parent = b;
    }
    return added;
}

int32_t gw_prefix_cache_n_blocks(const gw_prefix_cache *pc) { return pc->n_cached; }

#define FAIL(...) do { snprintf(msg, (size_t)msglen, __VA_ARGS__); free(pos); return -1; } while (0)

int gw_prefix_cache_check(const gw_prefix_cache *pc, char *msg, int msglen) {
    const gw_kv_pool *p = pc->pool;
    int32_t *pos = malloc((size_t)pc->n_blocks * sizeof(int32_t)); /* place in the idle list, -1: not there */
    if (!pos) {
        snprintf(msg, (size_t)msglen, "out of memory");
        return -1;
    }
    for (int32_t b = 0; b < pc->n_blocks; b++) pos[b] = -1;
    int32_t n_list = 0, prev = -1;
    for (int32_t b = p->lru_head; b >= 0; prev = b, b = p->lru_next[b]) {
        if (n_list > pc->n_blocks || pos[b] >= 0) FAIL("idle list has a cycle at block %d", b);
        if (p->lru_prev[b] != prev) FAIL("idle list: block %d has a wrong back link", b);
        pos[b] = n_list++;
    }
    if (p->lru_tail != prev) FAIL("idle list: wrong tail");
    if (n_list != p->n_idle) FAIL("idle list holds %d blocks, n_idle says %d", n_list, p->n_idle);
    int32_t n_zero = 0, n_tree = 0;
    for (int32_t b = 0; b < pc->n_blocks; b++) {
        n_zero += p->refcount[b] == 0;
        if (p->cached[b] != pc->in_tree[b]) FAIL("block %d: cached flag %d but in tree %d", b, p->cached[b], pc->in_tree[b]);
        if (!pc->in_tree[b]) {
            if (pos[b] >= 0) FAIL("block %d is in the idle list but not cached", b);
            continue;
        }
        n_tree++;
        bool idle = p->refcount[b] == 1;
        if (p->refcount[b] < 1) FAIL("cached block %d has refcount %d", b, p->refcount[b]);
        if (idle != (pos[b] >= 0)) FAIL("block %d: refcount %d but %sin the idle list", b, p->refcount[b], idle ? "not " : "");
        int32_t par = pc->parent[b];
        if (par >= 0 && !pc->in_tree[par]) FAIL("block %d: parent %d not in the tree", b, par);
        if (find_child(pc, par, pc->tokens + (size_t)b * pc->bs, pc->hash[b]) != b) FAIL("block %d not found by its key", b);
        if (par >= 0 && idle) {
            /* an idle block's parent is idle later in the list, or in use */
            if (p->refcount[par] == 1 && pos[par] < pos[b]) FAIL("idle block %d comes after its parent %d", b, par);
        }
        if (par >= 0 && !idle && p->refcount[par] == 1) FAIL("block %d in use below idle parent %d", b, par);
        int32_t kids = 0;
        for (int32_t c = 0; c < pc->n_blocks; c++) kids += pc->in_tree[c] && pc->parent[c] == b;
        if (kids != pc->n_children[b]) FAIL("block %d: %d children, count says %d", b, kids, pc->n_children[b]);
    }
    if (n_tree != pc->n_cached) FAIL("%d blocks in the tree, count says %d", n_tree, pc->n_cached);
    if (n_zero != p->n_free) FAIL("%d blocks with refcount 0, %d free", n_zero, p->n_free);
    free(pos);
    return 0;
}
