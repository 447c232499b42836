/* Paged KV cache. A pool of fixed-size blocks, each holding `block_size`
 * token slots of keys and values for every layer and KV head, stored as fp16.
 * A sequence owns an ordered list of blocks (its block table); slot s of a
 * sequence lives in block table[s / block_size] at offset s % block_size.
 * Keys are stored after RoPE. Blocks are reference-counted so that the prefix
 * cache (kv/prefix_cache.h) can share full blocks between sequences.
 *
 * Prefix-cache support: a block the prefix cache holds is marked `cached`
 * and carries one reference for the cache. A cached block with no other
 * reference is *idle*: no sequence uses it, and the pool may reclaim it when
 * it runs short (least recently idle first; the cache's `evict` hook unlinks
 * it from the cache, or refuses while it still has cached children). Idle
 * blocks count as available. A sequence never writes into a block it shares
 * (refcount > 1): gw_kv_seq_reserve copies such a block first
 * (copy-on-write), which only happens after a truncation into one.
 *
 * Within a block, one (layer, KV head) tile holds block_size * head_dim
 * values. Values are slot-major (V[slot][d]: a weighted sum of value rows is
 * a vector operation over d). Keys are dimension-major (K[d][slot]): the
 * scores of 16 consecutive slots are then 16 lanes of one vector, summed over
 * d with no horizontal reductions.
 *
 * Quantized pools (KIVI: int8 or int4 pages, GW_KV_INT8 / GW_KV_INT4). A
 * block is *open* while its sequence writes into it: its keys and values sit
 * in an fp16 page exactly as above (the most recent tokens stay in full
 * precision). Once every slot is written, gw_kv_seal quantizes it and gives
 * the fp16 page back; the block is then *sealed*. Keys are quantized per
 * channel (one scale and minimum per dimension d over each group of
 * GW_KV_QGROUP slots: key outliers live in fixed channels), values per token
 * (one scale and minimum per group of GW_KV_QGROUP dimensions of one slot),
 * asymmetric, codes rounded to nearest, scales and minimums in fp16. So the
 * block size is a multiple of GW_KV_QGROUP and so is head_dim. Open pages
 * are allocated when first needed and kept for reuse: at most one per
 * sequence between forward passes, plus the blocks one batch fills. Writing
 * into a sealed block again (after a truncation into it) reopens it: its
 * slots are dequantized into a fresh fp16 page. Sealed tiles:
 *   keys   codes K[d][slot] (int4: two slots per byte, the even one in the
 *          low nibble), params [group][d] (scale, min)
 *   values codes V[slot][d] (int4: two dimensions per byte), params
 *          [slot][d / GW_KV_QGROUP] (scale, min) */
#ifndef GODWIT_KV_CACHE_H
#define GODWIT_KV_CACHE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "godwit.h" /* GW_KV_F16, GW_KV_INT8, GW_KV_INT4 */

#define GW_KV_QGROUP 32 /* slots per key group, dimensions per value group */

/* Pages held elsewhere (a GPU): the pool keeps the bookkeeping (block
 * tables, references, which blocks are open in which page) and asks the
 * device to move contents. Each returns 0 or -1. */
typedef struct {
    void *arg;
    /* fp16/bf16 pools: block src's pages into block dst's; quantized pools:
     * a sealed block's codes and parameters */
    int (*copy_block)(void *arg, int32_t dst, int32_t src);
    /* quantized pools: open page src into open page dst */
    int (*copy_page)(void *arg, int32_t dst, int32_t src);
    /* quantized pools: open page pages[i] quantized into block blocks[i] */
    int (*seal)(void *arg, const int32_t *pages, const int32_t *blocks, int32_t n);
    /* quantized pools: sealed block `block` dequantized into open page `page` */
    int (*unseal)(void *arg, int32_t block, int32_t page);
} gw_kv_device;

typedef struct {
    int n_layer, n_head_kv, head_dim, block_size;
    int32_t n_blocks;
    int type;               /* GW_KV_F16, GW_KV_INT8 or GW_KV_INT4 */
    uint16_t *k, *v;        /* fp16, [n_blocks][n_layer][n_head_kv][block_size][head_dim];
                             * NULL for quantized pools (open pages below) */
    /* quantized pools (see the top of this file) */
    uint8_t *kq, *vq;       /* codes, [n_blocks][n_layer][n_head_kv] tiles of q_tile_bytes */
    uint16_t *kprm, *vprm;  /* fp16 (scale, min) pairs, tiles of kprm_tile / vprm_tile elements */
    size_t q_tile_bytes, kprm_tile, vprm_tile;
    int32_t *open;          /* [n_blocks] open page of the block, -1: sealed */
    uint16_t **open_k, **open_v; /* [max_open] fp16 pages, NULL until first used */
    int32_t *open_free;     /* stack of unused page numbers */
    int32_t max_open, n_open_free, n_open_alloc;
    int32_t *refcount;      /* [n_blocks] */
    int32_t *free_list;     /* stack of free block ids */
    int32_t n_free;
    /* prefix cache: see the top of this file */
    uint8_t *cached;        /* [n_blocks] 1: the prefix cache holds one reference */
    int32_t *lru_prev, *lru_next; /* [n_blocks] idle list, least recently idle first */
    int32_t lru_head, lru_tail;   /* -1: empty */
    int32_t n_idle;         /* cached blocks with refcount 1 */
    uint64_t n_evicted;     /* idle blocks reclaimed so far */
    /* Asked before an idle block is reclaimed: 0 after unlinking it from the
     * cache, -1 to keep it (it still has cached children). NULL: never reclaim. */
    int (*evict)(void *arg, int32_t block);
    void *evict_arg;
    /* Pages held elsewhere (a GPU): k, v, kq, vq, kprm, vprm and the open
     * pages are not allocated here; the device moves contents. */
    bool external;
    gw_kv_device dev;
} gw_kv_pool;

typedef struct {
    int32_t *blocks;        /* block table */
    int32_t n_blocks, cap;
    int32_t n_tokens;       /* slots filled */
} gw_kv_seq;

/* Returns 0 or -1 (out of memory). */
int gw_kv_pool_init(gw_kv_pool *p, int n_layer, int n_head_kv, int head_dim, int block_size,
                    int32_t n_blocks);
/* A pool of the given page type; max_open bounds the open fp16 pages (see
 * the top of this file; ignored for GW_KV_F16). -1: out of memory, or a
 * quantized type with block_size or head_dim not a multiple of GW_KV_QGROUP. */
int gw_kv_pool_init_typed(gw_kv_pool *p, int n_layer, int n_head_kv, int head_dim, int block_size,
                          int32_t n_blocks, int type, int32_t max_open);
/* Bookkeeping only (block tables, references, prefix-cache state, open
 * pages of quantized pools: max_open of them, numbered 0..max_open-1 as the
 * device numbers its own): the pages live on a device that owns them, and
 * p->dev (set by the caller, before the first reservation) moves contents there. */
int gw_kv_pool_init_external(gw_kv_pool *p, int n_layer, int n_head_kv, int head_dim, int block_size,
                             int32_t n_blocks, int type, int32_t max_open);
void gw_kv_pool_free(gw_kv_pool *p);
/* Bytes of KV one cached token takes (sealed, for quantized pools: codes
 * plus its share of the scales and minimums). */
size_t gw_kv_bytes_per_token(const gw_kv_pool *p);
/* Bytes the pool holds in memory now (pages, open pages allocated so far). */
size_t gw_kv_pool_bytes(const gw_kv_pool *p);

/* Makes room for n_tokens slots in total, reclaiming idle cached blocks if
 * the free ones do not suffice; if the block the next slot (s->n_tokens)
 * falls in is shared, it is replaced by a private copy first. -1 if the pool
 * has too few free and idle blocks (nothing is allocated then; idle blocks
 * may have been reclaimed). */
int gw_kv_seq_reserve(gw_kv_pool *p, gw_kv_seq *s, int32_t n_tokens);
/* Keeps the first n slots and returns blocks no longer needed to the pool. */
void gw_kv_seq_truncate(gw_kv_pool *p, gw_kv_seq *s, int32_t n);
void gw_kv_seq_release(gw_kv_pool *p, gw_kv_seq *s);
/* Appends n full blocks (each referenced once more) to a sequence whose
 * slots fill whole blocks (s->n_tokens == s->n_blocks * block_size); its
 * length grows by n * block_size. Returns 0, or -1 (out of memory or the
 * sequence ends in a partial block; nothing changed). */
int gw_kv_seq_attach(gw_kv_pool *p, gw_kv_seq *s, const int32_t *blocks, int32_t n);

/* ---- block references and the prefix cache's hold on blocks ---- */
void gw_kv_block_ref(gw_kv_pool *p, int32_t b);
void gw_kv_block_unref(gw_kv_pool *p, int32_t b);
/* The cache takes a reference on a block in use (refcount >= 1, not cached). */
void gw_kv_block_cache(gw_kv_pool *p, int32_t b);
/* The cache drops its reference (no evict hook call); the block is freed if
 * nothing else holds it. */
void gw_kv_block_uncache(gw_kv_pool *p, int32_t b);
/* Reclaims up to n idle blocks, least recently idle first, asking the evict
 * hook for each; returns how many were freed. */
int32_t gw_kv_pool_evict(gw_kv_pool *p, int32_t n);
/* Blocks a reservation can get: free plus idle. */
static inline int32_t gw_kv_pool_available(const gw_kv_pool *p) { return p->n_free + p->n_idle; }

/* Start of the (layer, head) tile of a block, in elements of k or v. */
static inline size_t gw_kv_tile(const gw_kv_pool *p, int32_t block, int layer, int head) {
    return (((size_t)block * p->n_layer + layer) * p->n_head_kv + head) * p->block_size * p->head_dim;
}
/* Number of the (layer, head) tile of a block among all tiles: quantized
 * pools keep codes and parameters in tiles of this order. */
static inline size_t gw_kv_tile_index(const gw_kv_pool *p, int32_t block, int layer, int head) {
    return ((size_t)block * p->n_layer + layer) * p->n_head_kv + head;
}
/* Element (slot, d) of a tile: keys dimension-major, values slot-major. */
static inline size_t gw_kv_k_index(const gw_kv_pool *p, int slot, int d) { return (size_t)d * p->block_size + slot; }
static inline size_t gw_kv_v_index(const gw_kv_pool *p, int slot, int d) { return (size_t)slot * p->head_dim + d; }

/* Stores one token's key and value vectors (head_dim floats each) into a
 * slot. The block must be open (always true of fp16 pools; a reservation
 * opens the block a sequence writes into). */
void gw_kv_store(gw_kv_pool *p, int32_t block, int layer, int head, int slot, const float *k, const float *v);

/* ---- quantized pages ---- */

/* The fp16 (layer, head) tile of a block, or NULL if the block is sealed. */
static inline uint16_t *gw_kv_k_page(const gw_kv_pool *p, int32_t block, int layer, int head) {
    if (p->k) return p->k + gw_kv_tile(p, block, layer, head);
    int32_t o = p->open[block];
    return o < 0 ? NULL : p->open_k[o] + gw_kv_tile(p, 0, layer, head);
}
static inline uint16_t *gw_kv_v_page(const gw_kv_pool *p, int32_t block, int layer, int head) {
    if (p->v) return p->v + gw_kv_tile(p, block, layer, head);
    int32_t o = p->open[block];
    return o < 0 ? NULL : p->open_v[o] + gw_kv_tile(p, 0, layer, head);
}
static inline bool gw_kv_block_sealed(const gw_kv_pool *p, int32_t block) {
    return p->open && p->open[block] < 0;
}
/* Quantizes an open block of a quantized pool and gives its fp16 page back;
 * nothing for fp16 pools and sealed blocks. */
void gw_kv_seal(gw_kv_pool *p, int32_t block);
/* The same for n blocks at once (one request to a device; on the host, as
 * many gw_kv_seal calls). -1 if the device failed (the blocks stay open). */
int gw_kv_seal_blocks(gw_kv_pool *p, const int32_t *blocks, int32_t n);
/* Dequantizes slots [off, off + n) of a sealed (layer, head) tile to fp16,
 * into k and v laid out as a tile (keys dimension-major with block_size
 * slots per dimension, values slot-major): what attention reads. */
void gw_kv_dequant_slots(const gw_kv_pool *p, int32_t block, int layer, int head, int off, int n, uint16_t *k,
                         uint16_t *v);

/* ---- moving a window of slots (streaming: attention sinks + sliding window) ---- */

/* How the cached keys were rotated: the first `dim` dimensions of a head in
 * pairs, (2i, 2i+1) for NORM or (i, i + dim/2) for NEOX, pair i by the angle
 * position * inv_freq[i] (the forward pass's RoPE, scaling included). */
typedef struct {
    int dim;                /* rope_dim, even, <= head_dim */
    int neox;               /* 0: NORM pairs, 1: NEOX pairs */
    const float *inv_freq;  /* [dim/2] */
} gw_kv_rope;

/* Moves slots [src, src + n) of a sequence down to [dst, dst + n), dst <
 * src, in every layer and KV head. Values are copied as they are; keys are
 * rotated by -(src - dst) positions, so that a key cached at position p
 * afterwards equals (up to one more fp16 rounding) the key cached at
 * position p - (src - dst): RoPE rotations compose, R(p - e) = R(-e) R(p).
 * Slots below dst are untouched, and so are the sequence's length and
 * blocks (the caller truncates, which frees the blocks past the new end).
 * Every block written must be the sequence's own (refcount 1). Returns 0,
 * or -1 (range outside the sequence's blocks, dst >= src, a shared block,
 * pages that live on a device, rope->dim odd or over head_dim); nothing is
 * moved then. Allocates nothing. */
int gw_kv_seq_shift_down(gw_kv_pool *p, const gw_kv_seq *s, int32_t src, int32_t dst, int32_t n,
                         const gw_kv_rope *rope);
/* The same move for layers [layer0, layer1) only, so that threads can share
 * the work; gw_kv_seq_shift_down is this over every layer. Same checks and
 * results. */
int gw_kv_seq_shift_layers(gw_kv_pool *p, const gw_kv_seq *s, int32_t src, int32_t dst, int32_t n,
                           const gw_kv_rope *rope, int layer0, int layer1);

/* ---- keeping chosen slots (SnapKV, H2O) ---- */

/* Moves slots keep[0..n) (strictly increasing) of one (layer, head) of a
 * sequence to slots [0, n), in order, keys and values bit for bit (keys keep
 * the rotation of their original position). Other layers and heads, the
 * sequence's length and its blocks are untouched (the caller truncates once
 * every tile has moved). Every block written must be the sequence's own.
 * On a quantized pool the kept slots of each destination block are put
 * together in fp16 (dequantized where they were sealed) and the block's
 * tile written back: into its open page, or quantized again (so a kept
 * sealed slot is quantized twice). Returns 0, or -1 (not increasing, outside
 * the sequence's blocks, a shared block, a device pool, out of memory);
 * nothing is moved then. */
int gw_kv_seq_gather(gw_kv_pool *p, const gw_kv_seq *s, int layer, int head, const int32_t *keep, int32_t n);
#endif
