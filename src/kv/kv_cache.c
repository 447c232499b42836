#include "kv/kv_cache.h"

#include <stdlib.h>
#include <string.h>

#include "backend/cpu/quant.h"

int gw_kv_pool_init(gw_kv_pool *p, int n_layer, int n_head_kv, int head_dim, int block_size,
                    int32_t n_blocks) {
    memset(p, 0, sizeof *p);
    p->n_layer = n_layer;
    p->n_head_kv = n_head_kv;
    p->head_dim = head_dim;
    p->block_size = block_size;
    p->n_blocks = n_blocks;
    size_t elems = (size_t)n_blocks * n_layer * n_head_kv * block_size * head_dim;
    p->k = malloc(elems * sizeof(uint16_t));
    p->v = malloc(elems * sizeof(uint16_t));
    p->refcount = calloc((size_t)n_blocks, sizeof(int32_t));
    p->free_list = malloc((size_t)n_blocks * sizeof(int32_t));
    if (!p->k || !p->v || !p->refcount || !p->free_list) {
        gw_kv_pool_free(p);
        return -1;
    }
    /* Hand out low block ids first (pop from the end). */
    for (int32_t i = 0; i < n_blocks; i++) p->free_list[i] = n_blocks - 1 - i;
    p->n_free = n_blocks;
    return 0;
}

void gw_kv_pool_free(gw_kv_pool *p) {
    free(p->k);
    free(p->v);
    free(p->refcount);
    free(p->free_list);
    memset(p, 0, sizeof *p);
}

size_t gw_kv_bytes_per_token(const gw_kv_pool *p) {
    return 2 * (size_t)p->n_layer * p->n_head_kv * p->head_dim * sizeof(uint16_t);
}

int gw_kv_seq_reserve(gw_kv_pool *p, gw_kv_seq *s, int32_t n_tokens) {
    int32_t need = (n_tokens + p->block_size - 1) / p->block_size;
    if (need <= s->n_blocks) return 0;
    if (need - s->n_blocks > p->n_free) return -1;
    if (need > s->cap) {
        int32_t cap = s->cap ? s->cap : 8;
        while (cap < need) cap *= 2;
        int32_t *nb = realloc(s->blocks, (size_t)cap * sizeof(int32_t));
        if (!nb) return -1;
        s->blocks = nb;
        s->cap = cap;
    }
    while (s->n_blocks < need) {
        int32_t b = p->free_list[--p->n_free];
        p->refcount[b] = 1;
        s->blocks[s->n_blocks++] = b;
    }
    return 0;
}

static void block_unref(gw_kv_pool *p, int32_t b) {
    if (--p->refcount[b] == 0) p->free_list[p->n_free++] = b;
}

void gw_kv_seq_truncate(gw_kv_pool *p, gw_kv_seq *s, int32_t n) {
    if (n < 0) n = 0;
    if (n < s->n_tokens) s->n_tokens = n;
    int32_t keep = (n + p->block_size - 1) / p->block_size;
    while (s->n_blocks > keep) block_unref(p, s->blocks[--s->n_blocks]);
}

void gw_kv_seq_release(gw_kv_pool *p, gw_kv_seq *s) {
    gw_kv_seq_truncate(p, s, 0);
    free(s->blocks);
    memset(s, 0, sizeof *s);
}

void gw_kv_store(gw_kv_pool *p, int32_t block, int layer, int head, int slot, const float *k, const float *v) {
    size_t tile = gw_kv_tile(p, block, layer, head);
    uint16_t *kt = p->k + tile, *vt = p->v + tile;
    for (int d = 0; d < p->head_dim; d++) kt[gw_kv_k_index(p, slot, d)] = gw_fp32_to_fp16(k[d]);
    gw_quantize_row(GW_TYPE_F16, v, vt + gw_kv_v_index(p, slot, 0), p->head_dim);
}
