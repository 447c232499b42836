/* Paged KV cache. A pool of fixed-size blocks, each holding `block_size`
 * token slots of keys and values for every layer and KV head, stored as fp16.
 * A sequence owns an ordered list of blocks (its block table); slot s of a
 * sequence lives in block table[s / block_size] at offset s % block_size.
 * Keys are stored after RoPE. Blocks are reference-counted so that a later
 * prefix cache can share them between sequences.
 *
 * Within a block, one (layer, KV head) tile holds block_size * head_dim
 * values. Values are slot-major (V[slot][d]: a weighted sum of value rows is
 * a vector operation over d). Keys are dimension-major (K[d][slot]): the
 * scores of 16 consecutive slots are then 16 lanes of one vector, summed over
 * d with no horizontal reductions. */
#ifndef GODWIT_KV_CACHE_H
#define GODWIT_KV_CACHE_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int n_layer, n_head_kv, head_dim, block_size;
    int32_t n_blocks;
    uint16_t *k, *v;        /* fp16, [n_blocks][n_layer][n_head_kv][block_size][head_dim] */
    int32_t *refcount;      /* [n_blocks] */
    int32_t *free_list;     /* stack of free block ids */
    int32_t n_free;
} gw_kv_pool;

typedef struct {
    int32_t *blocks;        /* block table */
    int32_t n_blocks, cap;
    int32_t n_tokens;       /* slots filled */
} gw_kv_seq;

/* Returns 0 or -1 (out of memory). */
int gw_kv_pool_init(gw_kv_pool *p, int n_layer, int n_head_kv, int head_dim, int block_size,
                    int32_t n_blocks);
void gw_kv_pool_free(gw_kv_pool *p);
size_t gw_kv_bytes_per_token(const gw_kv_pool *p);

/* Makes room for n_tokens slots in total; -1 if the pool has too few free
 * blocks (nothing is allocated then). */
int gw_kv_seq_reserve(gw_kv_pool *p, gw_kv_seq *s, int32_t n_tokens);
/* Keeps the first n slots and returns blocks no longer needed to the pool. */
void gw_kv_seq_truncate(gw_kv_pool *p, gw_kv_seq *s, int32_t n);
void gw_kv_seq_release(gw_kv_pool *p, gw_kv_seq *s);

/* Start of the (layer, head) tile of a block, in elements of k or v. */
static inline size_t gw_kv_tile(const gw_kv_pool *p, int32_t block, int layer, int head) {
    return (((size_t)block * p->n_layer + layer) * p->n_head_kv + head) * p->block_size * p->head_dim;
}
/* Element (slot, d) of a tile: keys dimension-major, values slot-major. */
static inline size_t gw_kv_k_index(const gw_kv_pool *p, int slot, int d) { return (size_t)d * p->block_size + slot; }
static inline size_t gw_kv_v_index(const gw_kv_pool *p, int slot, int d) { return (size_t)slot * p->head_dim + d; }

/* Stores one token's key and value vectors (head_dim floats each) into a slot. */
void gw_kv_store(gw_kv_pool *p, int32_t block, int layer, int head, int slot, const float *k, const float *v);
#endif
