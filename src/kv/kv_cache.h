/* Paged KV cache. A pool of fixed-size blocks, each holding `block_size`
 * token slots of keys and values for every layer and KV head, stored as fp16.
 * A sequence owns an ordered list of blocks (its block table); slot s of a
 * sequence lives in block table[s / block_size] at offset s % block_size.
 * Keys are stored after RoPE. Blocks are reference-counted so that a later
 * prefix cache can share them between sequences. */
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

/* Address of the key/value vector of one slot (head_dim fp16 values). */
static inline size_t gw_kv_offset(const gw_kv_pool *p, int32_t block, int layer, int head, int slot) {
    return ((((size_t)block * p->n_layer + layer) * p->n_head_kv + head) * p->block_size + slot) *
           p->head_dim;
}
#endif
