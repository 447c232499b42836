/* Prefix cache: a radix tree over full KV blocks, keyed by token content, so
 * that a sequence whose prompt starts with tokens another sequence has
 * already computed can start on that sequence's KV blocks instead of
 * recomputing them.
 *
 * Each node of the tree is one full block: block_size token ids (the edge
 * from its parent) and the physical block holding their keys and values.
 * The path from the root to a node spells the tokens of every slot of the
 * blocks along it, so a node's block is valid for any sequence whose first
 * (depth + 1) * block_size tokens are that path. Only full blocks are
 * cached; a sequence appends into its own last (partial) block and never
 * writes a cached one (the pool copies a shared block before a write, see
 * kv_cache.h), so no copy-on-write is needed in normal use.
 *
 * Nodes are indexed by their block id (a block is in at most one node), and
 * found through one hash table keyed by (parent block, tokens). The cache
 * holds one reference on each of its blocks (gw_kv_block_cache); a block
 * that only the cache holds is idle, counted as available by the pool and
 * reclaimed on demand, least recently idle first, leaves before their
 * parents (see gw_kv_pool_evict and the invariant in prefix_cache.c).
 *
 * Single-threaded, like the pool it works on. */
#ifndef GODWIT_KV_PREFIX_CACHE_H
#define GODWIT_KV_PREFIX_CACHE_H
#include <stdint.h>

#include "kv/kv_cache.h"

typedef struct gw_prefix_cache gw_prefix_cache;

/* A cache over the pool's blocks; installs itself as the pool's evict hook.
 * NULL on out of memory. */
gw_prefix_cache *gw_prefix_cache_new(gw_kv_pool *p);
/* Drops every cached block (blocks only the cache held return to the pool)
 * and removes the hook. */
void gw_prefix_cache_free(gw_prefix_cache *pc);

/* The longest cached prefix of tokens[0 .. max_blocks * block_size) in whole
 * blocks: writes their block ids to out (when not NULL) and returns their
 * number. Changes nothing. */
int32_t gw_prefix_cache_match(const gw_prefix_cache *pc, const int32_t *tokens, int32_t max_blocks, int32_t *out);

/* Offers a sequence's first n_blocks full blocks: blocks[i] holds the KV of
 * tokens[i * block_size .. (i + 1) * block_size). The caller holds a
 * reference on every one of them. Walking from the root, blocks already
 * cached as the same node are skipped, missing nodes are added (the cache
 * takes a reference), and the walk stops at a node cached with a different
 * block (the same tokens computed twice: the first copy is kept, and the
 * offered chain is not hung below a block its owner does not hold). Returns
 * the number of blocks added. */
int32_t gw_prefix_cache_insert(gw_prefix_cache *pc, const int32_t *tokens, const int32_t *blocks, int32_t n_blocks);

/* Blocks in the cache (idle or in use). */
int32_t gw_prefix_cache_n_blocks(const gw_prefix_cache *pc);
/* Checks the tree's structure and its references against the pool; returns
 * 0, or -1 with a description in msg. For tests. */
int gw_prefix_cache_check(const gw_prefix_cache *pc, char *msg, int msglen);
#endif
