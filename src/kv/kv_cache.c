#include "kv/kv_cache.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/quant.h"

/* Elements of one block's fp16 keys (or values): all its tiles. */
static size_t block_elems(const gw_kv_pool *p) {
    return (size_t)p->n_layer * p->n_head_kv * p->block_size * p->head_dim;
}

/* Quantized pages: codes, parameters and the open-page table. */
static int quant_init(gw_kv_pool *p, int32_t max_open) {
    const size_t tiles = (size_t)p->n_blocks * p->n_layer * p->n_head_kv;
    const int bs = p->block_size, D = p->head_dim;
    p->q_tile_bytes = (size_t)bs * D / (p->type == GW_KV_INT4 ? 2 : 1);
    p->kprm_tile = (size_t)bs / GW_KV_QGROUP * D * 2;
    p->vprm_tile = (size_t)bs * (D / GW_KV_QGROUP) * 2;
    if (!p->external) {
        p->kq = malloc(tiles * p->q_tile_bytes);
        p->vq = malloc(tiles * p->q_tile_bytes);
        p->kprm = malloc(tiles * p->kprm_tile * sizeof(uint16_t));
        p->vprm = malloc(tiles * p->vprm_tile * sizeof(uint16_t));
        if (!p->kq || !p->vq || !p->kprm || !p->vprm) return -1;
    }
    p->open = malloc((size_t)p->n_blocks * sizeof(int32_t));
    if (max_open < 1) max_open = 1;
    if (max_open > p->n_blocks) max_open = p->n_blocks;
    p->max_open = max_open;
    p->open_k = calloc((size_t)max_open, sizeof(uint16_t *));
    p->open_v = calloc((size_t)max_open, sizeof(uint16_t *));
    p->open_free = malloc((size_t)max_open * sizeof(int32_t));
    if (!p->open || !p->open_k || !p->open_v || !p->open_free) return -1;
    for (int32_t b = 0; b < p->n_blocks; b++) p->open[b] = -1;
    for (int32_t i = 0; i < max_open; i++) p->open_free[i] = max_open - 1 - i;
    p->n_open_free = max_open;
    return 0;
}

static int pool_init(gw_kv_pool *p, int n_layer, int n_head_kv, int head_dim, int block_size, int32_t n_blocks,
                     bool host_pages, int type, int32_t max_open) {
    memset(p, 0, sizeof *p);
    p->n_layer = n_layer;
    p->n_head_kv = n_head_kv;
    p->head_dim = head_dim;
    p->block_size = block_size;
    p->n_blocks = n_blocks;
    p->type = type;
    p->external = !host_pages;
    if (type != GW_KV_F16) {
        if (type != GW_KV_INT8 && type != GW_KV_INT4) return -1;
        if (block_size % GW_KV_QGROUP || head_dim % GW_KV_QGROUP) return -1;
        if (quant_init(p, max_open) != 0) {
            gw_kv_pool_free(p);
            return -1;
        }
    } else if (host_pages) {
        size_t elems = (size_t)n_blocks * n_layer * n_head_kv * block_size * head_dim;
        p->k = malloc(elems * sizeof(uint16_t));
        p->v = malloc(elems * sizeof(uint16_t));
        if (!p->k || !p->v) {
            gw_kv_pool_free(p);
            return -1;
        }
    }
    p->refcount = calloc((size_t)n_blocks, sizeof(int32_t));
    p->free_list = malloc((size_t)n_blocks * sizeof(int32_t));
    p->cached = calloc((size_t)n_blocks, 1);
    p->lru_prev = malloc((size_t)n_blocks * sizeof(int32_t));
    p->lru_next = malloc((size_t)n_blocks * sizeof(int32_t));
    p->lru_head = p->lru_tail = -1;
    if (!p->refcount || !p->free_list || !p->cached || !p->lru_prev || !p->lru_next) {
        gw_kv_pool_free(p);
        return -1;
    }
    /* Hand out low block ids first (pop from the end). */
    for (int32_t i = 0; i < n_blocks; i++) p->free_list[i] = n_blocks - 1 - i;
    p->n_free = n_blocks;
    return 0;
}

int gw_kv_pool_init(gw_kv_pool *p, int n_layer, int n_head_kv, int head_dim, int block_size,
                    int32_t n_blocks) {
    return pool_init(p, n_layer, n_head_kv, head_dim, block_size, n_blocks, true, GW_KV_F16, 0);
}

int gw_kv_pool_init_typed(gw_kv_pool *p, int n_layer, int n_head_kv, int head_dim, int block_size,
                          int32_t n_blocks, int type, int32_t max_open) {
    return pool_init(p, n_layer, n_head_kv, head_dim, block_size, n_blocks, true, type, max_open);
}

int gw_kv_pool_init_external(gw_kv_pool *p, int n_layer, int n_head_kv, int head_dim, int block_size,
                             int32_t n_blocks, int type, int32_t max_open) {
    return pool_init(p, n_layer, n_head_kv, head_dim, block_size, n_blocks, false, type, max_open);
}

void gw_kv_pool_free(gw_kv_pool *p) {
    free(p->k);
    free(p->v);
    free(p->kq);
    free(p->vq);
    free(p->kprm);
    free(p->vprm);
    free(p->open);
    for (int32_t i = 0; p->open_k && i < p->max_open; i++) free(p->open_k[i]);
    for (int32_t i = 0; p->open_v && i < p->max_open; i++) free(p->open_v[i]);
    free(p->open_k);
    free(p->open_v);
    free(p->open_free);
    free(p->refcount);
    free(p->free_list);
    free(p->cached);
    free(p->lru_prev);
    free(p->lru_next);
    memset(p, 0, sizeof *p);
}

size_t gw_kv_bytes_per_token(const gw_kv_pool *p) {
    const size_t heads = (size_t)p->n_layer * p->n_head_kv;
    if (p->type == GW_KV_F16) return 2 * heads * p->head_dim * sizeof(uint16_t);
    size_t tile = 2 * p->q_tile_bytes + (p->kprm_tile + p->vprm_tile) * sizeof(uint16_t);
    return heads * tile / p->block_size;
}

size_t gw_kv_pool_bytes(const gw_kv_pool *p) {
    size_t fp16_block = 2 * block_elems(p) * sizeof(uint16_t);
    if (p->external) return 0;
    if (p->type == GW_KV_F16) return (size_t)p->n_blocks * fp16_block;
    return (size_t)p->n_blocks * p->block_size * gw_kv_bytes_per_token(p) + (size_t)p->n_open_alloc * fp16_block;
}

const char *gw_kv_type_name(int type) {
    return type == GW_KV_INT8 ? "int8" : type == GW_KV_INT4 ? "int4" : "f16";
}

/* ---------------------------------------------------- references, idle list */

/* The block's open page goes back (quantized pools), the block to the free list. */
static void block_free(gw_kv_pool *p, int32_t b) {
    if (p->open && p->open[b] >= 0) {
        p->open_free[p->n_open_free++] = p->open[b];
        p->open[b] = -1;
    }
    p->free_list[p->n_free++] = b;
}

static void lru_append(gw_kv_pool *p, int32_t b) {
    p->lru_prev[b] = p->lru_tail;
    p->lru_next[b] = -1;
    if (p->lru_tail >= 0) p->lru_next[p->lru_tail] = b;
    else p->lru_head = b;
    p->lru_tail = b;
    p->n_idle++;
}

static void lru_remove(gw_kv_pool *p, int32_t b) {
    int32_t pr = p->lru_prev[b], nx = p->lru_next[b];
    if (pr >= 0) p->lru_next[pr] = nx;
    else p->lru_head = nx;
    if (nx >= 0) p->lru_prev[nx] = pr;
    else p->lru_tail = pr;
    p->n_idle--;
}

void gw_kv_block_ref(gw_kv_pool *p, int32_t b) {
    if (p->cached[b] && p->refcount[b] == 1) lru_remove(p, b); /* idle -> in use */
    p->refcount[b]++;
}

void gw_kv_block_unref(gw_kv_pool *p, int32_t b) {
    int32_t r = --p->refcount[b];
    if (r == 0) block_free(p, b);
    else if (r == 1 && p->cached[b]) lru_append(p, b); /* only the cache holds it now: idle */
}

void gw_kv_block_cache(gw_kv_pool *p, int32_t b) {
    p->cached[b] = 1;
    p->refcount[b]++;
}

void gw_kv_block_uncache(gw_kv_pool *p, int32_t b) {
    if (p->refcount[b] == 1) lru_remove(p, b);
    p->cached[b] = 0;
    if (--p->refcount[b] == 0) block_free(p, b);
}

int32_t gw_kv_pool_evict(gw_kv_pool *p, int32_t n) {
    int32_t freed = 0;
    /* The prefix cache keeps children ahead of their parents in the idle
     * list, so the head can always go and one pass suffices; the outer loop
     * only matters if a hook refuses a block whose children come later. */
    for (bool progress = true; freed < n && progress;) {
        progress = false;
        for (int32_t b = p->lru_head, next; b >= 0 && freed < n; b = next) {
            next = p->lru_next[b];
            if (p->evict && p->evict(p->evict_arg, b) != 0) continue;
            lru_remove(p, b);
            p->cached[b] = 0;
            p->refcount[b] = 0;
            block_free(p, b);
            p->n_evicted++;
            freed++;
            progress = true;
        }
    }
    return freed;
}

/* ---------------------------------------------------------------- sequences */

static int seq_grow(gw_kv_seq *s, int32_t need) {
    if (need <= s->cap) return 0;
    int32_t cap = s->cap ? s->cap : 8;
    while (cap < need) cap *= 2;
    int32_t *nb = realloc(s->blocks, (size_t)cap * sizeof(int32_t));
    if (!nb) return -1;
    s->blocks = nb;
    s->cap = cap;
    return 0;
}

static int32_t block_alloc(gw_kv_pool *p) {
    int32_t b = p->free_list[--p->n_free];
    p->refcount[b] = 1;
    return b;
}

/* ------------------------------------------------------ open (fp16) pages */

/* Makes sure the next n pages of the open-page stack have memory, so that
 * taking them cannot fail. -1 if fewer are left or out of memory. */
static int open_pages_ready(gw_kv_pool *p, int32_t n) {
    if (n > p->n_open_free) return -1;
    if (p->external) return 0; /* the device's pages exist from the start */
    const size_t bytes = block_elems(p) * sizeof(uint16_t);
    for (int32_t i = 0; i < n; i++) {
        int32_t o = p->open_free[p->n_open_free - 1 - i];
        if (p->open_k[o]) continue;
        p->open_k[o] = malloc(bytes);
        p->open_v[o] = malloc(bytes);
        if (!p->open_k[o] || !p->open_v[o]) {
            free(p->open_k[o]);
            free(p->open_v[o]);
            p->open_k[o] = p->open_v[o] = NULL;
            return -1;
        }
        p->n_open_alloc++;
    }
    return 0;
}

/* Gives block b an open page (after open_pages_ready). */
static int32_t open_page_take(gw_kv_pool *p, int32_t b) {
    int32_t o = p->open_free[--p->n_open_free];
    p->open[b] = o;
    return o;
}

/* Reopens a sealed block: its slots dequantized into a fresh fp16 page. */
static int block_reopen(gw_kv_pool *p, int32_t b) {
    open_page_take(p, b);
    if (p->external) {
        if (p->dev.unseal && p->dev.unseal(p->dev.arg, b, p->open[b]) == 0) return 0;
        p->open_free[p->n_open_free++] = p->open[b]; /* still sealed */
        p->open[b] = -1;
        return -1;
    }
    /* gw_kv_dequant_slots reads the codes, which stay where they are */
    int32_t o = p->open[b];
    p->open[b] = -1;
    for (int l = 0; l < p->n_layer; l++)
        for (int h = 0; h < p->n_head_kv; h++)
            gw_kv_dequant_slots(p, b, l, h, 0, p->block_size, p->open_k[o] + gw_kv_tile(p, 0, l, h),
                                p->open_v[o] + gw_kv_tile(p, 0, l, h));
    p->open[b] = o;
    return 0;
}

/* Block dst (fresh) takes a copy of block src's contents, open or sealed;
 * on a quantized pool dst ends up open (it is about to be written). */
static int block_copy(gw_kv_pool *p, int32_t dst, int32_t src) {
    if (p->k) {
        size_t elems = block_elems(p);
        memcpy(p->k + (size_t)dst * elems, p->k + (size_t)src * elems, elems * sizeof(uint16_t));
        memcpy(p->v + (size_t)dst * elems, p->v + (size_t)src * elems, elems * sizeof(uint16_t));
        return 0;
    }
    if (!p->open) return p->dev.copy_block ? p->dev.copy_block(p->dev.arg, dst, src) : 0;
    if (p->external) {
        if (p->open[src] >= 0) {
            int32_t o = open_page_take(p, dst);
            if (p->dev.copy_page && p->dev.copy_page(p->dev.arg, o, p->open[src]) == 0) return 0;
            p->open_free[p->n_open_free++] = o;
            p->open[dst] = -1;
            return -1;
        }
        if (!p->dev.copy_block || p->dev.copy_block(p->dev.arg, dst, src) != 0) return -1;
        return block_reopen(p, dst);
    }
    if (p->open[src] >= 0) {
        int32_t o = open_page_take(p, dst), os = p->open[src];
        memcpy(p->open_k[o], p->open_k[os], block_elems(p) * sizeof(uint16_t));
        memcpy(p->open_v[o], p->open_v[os], block_elems(p) * sizeof(uint16_t));
        return 0;
    }
    const size_t tiles = (size_t)p->n_layer * p->n_head_kv;
    memcpy(p->kq + dst * tiles * p->q_tile_bytes, p->kq + src * tiles * p->q_tile_bytes, tiles * p->q_tile_bytes);
    memcpy(p->vq + dst * tiles * p->q_tile_bytes, p->vq + src * tiles * p->q_tile_bytes, tiles * p->q_tile_bytes);
    memcpy(p->kprm + dst * tiles * p->kprm_tile, p->kprm + src * tiles * p->kprm_tile,
           tiles * p->kprm_tile * sizeof(uint16_t));
    memcpy(p->vprm + dst * tiles * p->vprm_tile, p->vprm + src * tiles * p->vprm_tile,
           tiles * p->vprm_tile * sizeof(uint16_t));
    return block_reopen(p, dst);
}

int gw_kv_seq_reserve(gw_kv_pool *p, gw_kv_seq *s, int32_t n_tokens) {
    int32_t need = (n_tokens + p->block_size - 1) / p->block_size;
    /* The block the next slot is written to must be the sequence's own, and
     * open on a quantized pool. */
    int32_t wb = s->n_tokens / p->block_size;
    bool writes = n_tokens > s->n_tokens && wb < s->n_blocks;
    bool cow = writes && p->refcount[s->blocks[wb]] > 1;
    bool reopen = writes && !cow && gw_kv_block_sealed(p, s->blocks[wb]);
    int32_t fresh = need > s->n_blocks ? need - s->n_blocks : 0;
    int32_t extra = fresh + (cow ? 1 : 0);
    if (extra == 0 && !reopen) return 0;
    if (extra > p->n_free) gw_kv_pool_evict(p, extra - p->n_free);
    if (extra > p->n_free) return -1;
    if (seq_grow(s, need) != 0) return -1;
    if (p->open && open_pages_ready(p, extra + (reopen ? 1 : 0)) != 0) return -1;
    if (reopen && block_reopen(p, s->blocks[wb]) != 0) return -1;
    if (cow) {
        int32_t old = s->blocks[wb], b = block_alloc(p);
        if (block_copy(p, b, old) != 0) {
            gw_kv_block_unref(p, b);
            return -1;
        }
        s->blocks[wb] = b;
        gw_kv_block_unref(p, old);
    }
    while (s->n_blocks < need) {
        int32_t b = block_alloc(p);
        if (p->open) open_page_take(p, b);
        s->blocks[s->n_blocks++] = b;
    }
    return 0;
}

void gw_kv_seq_truncate(gw_kv_pool *p, gw_kv_seq *s, int32_t n) {
    if (n < 0) n = 0;
    if (n < s->n_tokens) s->n_tokens = n;
    int32_t keep = (n + p->block_size - 1) / p->block_size;
    while (s->n_blocks > keep) gw_kv_block_unref(p, s->blocks[--s->n_blocks]);
}

void gw_kv_seq_release(gw_kv_pool *p, gw_kv_seq *s) {
    gw_kv_seq_truncate(p, s, 0);
    free(s->blocks);
    memset(s, 0, sizeof *s);
}

int gw_kv_seq_attach(gw_kv_pool *p, gw_kv_seq *s, const int32_t *blocks, int32_t n) {
    if (n <= 0) return 0;
    if (s->n_tokens != s->n_blocks * p->block_size) return -1;
    if (seq_grow(s, s->n_blocks + n) != 0) return -1;
    for (int32_t i = 0; i < n; i++) {
        gw_kv_block_ref(p, blocks[i]);
        s->blocks[s->n_blocks++] = blocks[i];
    }
    s->n_tokens += n * p->block_size;
    return 0;
}

void gw_kv_store(gw_kv_pool *p, int32_t block, int layer, int head, int slot, const float *k, const float *v) {
    uint16_t *kt = gw_kv_k_page(p, block, layer, head), *vt = gw_kv_v_page(p, block, layer, head);
    if (!kt) return; /* sealed: cannot happen after gw_kv_seq_reserve */
    for (int d = 0; d < p->head_dim; d++) kt[gw_kv_k_index(p, slot, d)] = gw_fp32_to_fp16(k[d]);
    gw_quantize_row(GW_TYPE_F16, v, vt + gw_kv_v_index(p, slot, 0), p->head_dim);
}

/* ------------------------------------------------------- quantized pages */

/* One group of 32 values: fp16 scale and minimum into prm[0..1], codes
 * (0..qmax) into q[0..32). The codes are computed with the rounded
 * parameters, so dequantization is code * scale + min with what is stored. */
static void quant_group(const float *x, int qmax, uint16_t *prm, uint8_t *q) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < GW_KV_QGROUP; j++) {
        mn = x[j] < mn ? x[j] : mn;
        mx = x[j] > mx ? x[j] : mx;
    }
    prm[0] = gw_fp32_to_fp16((mx - mn) / qmax);
    prm[1] = gw_fp32_to_fp16(mn);
    float sc = gw_fp16_to_fp32(prm[0]), m = gw_fp16_to_fp32(prm[1]);
    float inv = sc > 0.0f ? 1.0f / sc : 0.0f;
    for (int j = 0; j < GW_KV_QGROUP; j++) {
        float c = (x[j] - m) * inv + 0.5f;
        int ci = c > 0.0f ? (int)c : 0;
        q[j] = (uint8_t)(ci > qmax ? qmax : ci);
    }
}

/* Codes of a tile: int8 one per byte; int4 two per byte, element i in the
 * low nibble of byte i / 2 when i is even. */
static inline void put_code(uint8_t *codes, int int4, size_t i, uint8_t c) {
    if (!int4) codes[i] = c;
    else if (i % 2 == 0) codes[i / 2] = (uint8_t)((codes[i / 2] & 0xf0) | c);
    else codes[i / 2] = (uint8_t)((codes[i / 2] & 0x0f) | (c << 4));
}
static inline int get_code(const uint8_t *codes, int int4, size_t i) {
    return !int4 ? codes[i] : (codes[i / 2] >> (4 * (i % 2))) & 0x0f;
}

int gw_kv_seal_blocks(gw_kv_pool *p, const int32_t *blocks, int32_t n) {
    if (!p->open || n <= 0) return 0;
    if (!p->external) {
        for (int32_t i = 0; i < n; i++) gw_kv_seal(p, blocks[i]);
        return 0;
    }
    int32_t *pages = malloc(2 * (size_t)n * sizeof(int32_t));
    if (!pages) return -1;
    int32_t *sealed = pages + n, m = 0;
    for (int32_t i = 0; i < n; i++)
        if (p->open[blocks[i]] >= 0) pages[m] = p->open[blocks[i]], sealed[m++] = blocks[i];
    int rc = m == 0 ? 0 : p->dev.seal ? p->dev.seal(p->dev.arg, pages, sealed, m) : -1;
    if (rc == 0)
        for (int32_t i = 0; i < m; i++) {
            p->open_free[p->n_open_free++] = pages[i];
            p->open[sealed[i]] = -1;
        }
    free(pages);
    return rc;
}

/* Quantizes one (layer, head) tile of a block, tile number ti, from fp16
 * tiles kt / vt laid out as an open page's (keys dimension-major, values
 * slot-major). */
static void quantize_tile(gw_kv_pool *p, size_t ti, const uint16_t *kt, const uint16_t *vt) {
    const int bs = p->block_size, D = p->head_dim, G = GW_KV_QGROUP, int4 = p->type == GW_KV_INT4;
    const int qmax = int4 ? 15 : 255;
    float x[GW_KV_QGROUP];
    uint8_t q[GW_KV_QGROUP];
    uint8_t *kc = p->kq + ti * p->q_tile_bytes, *vc = p->vq + ti * p->q_tile_bytes;
    uint16_t *kp = p->kprm + ti * p->kprm_tile, *vp = p->vprm + ti * p->vprm_tile;
    /* keys: per dimension, over each group of G slots */
    for (int g = 0; g < bs / G; g++) {
        for (int d = 0; d < D; d++) {
            size_t at = gw_kv_k_index(p, g * G, d);
            gw_dequantize_row(GW_TYPE_F16, kt + at, x, G);
            quant_group(x, qmax, kp + ((size_t)g * D + d) * 2, q);
            for (int j = 0; j < G; j++) put_code(kc, int4, at + j, q[j]);
        }
    }
    /* values: per slot, over each group of G dimensions */
    for (int sl = 0; sl < bs; sl++) {
        for (int g = 0; g < D / G; g++) {
            size_t at = gw_kv_v_index(p, sl, g * G);
            gw_dequantize_row(GW_TYPE_F16, vt + at, x, G);
            quant_group(x, qmax, vp + ((size_t)sl * (D / G) + g) * 2, q);
            for (int j = 0; j < G; j++) put_code(vc, int4, at + j, q[j]);
        }
    }
}

void gw_kv_seal(gw_kv_pool *p, int32_t block) {
    if (!p->open || p->open[block] < 0) return;
    if (p->external) {
        gw_kv_seal_blocks(p, &block, 1);
        return;
    }
    for (int l = 0; l < p->n_layer; l++)
        for (int h = 0; h < p->n_head_kv; h++)
            quantize_tile(p, gw_kv_tile_index(p, block, l, h), gw_kv_k_page(p, block, l, h),
                          gw_kv_v_page(p, block, l, h));
    p->open_free[p->n_open_free++] = p->open[block];
    p->open[block] = -1;
}

static void dequant_slots_scalar(const gw_kv_pool *p, int32_t block, int layer, int head, int off, int n,
                                 uint16_t *k, uint16_t *v) {
    enum { MAX_ROW = 1024 };
    const int D = p->head_dim, G = GW_KV_QGROUP, int4 = p->type == GW_KV_INT4;
    const size_t ti = gw_kv_tile_index(p, block, layer, head);
    const uint8_t *kc = p->kq + ti * p->q_tile_bytes, *vc = p->vq + ti * p->q_tile_bytes;
    const uint16_t *kp = p->kprm + ti * p->kprm_tile, *vp = p->vprm + ti * p->vprm_tile;
    float row[MAX_ROW];
    for (int d = 0; d < D; d++) {
        for (int j = 0; j < n; j++) {
            const int sl = off + j;
            const uint16_t *pr = kp + ((size_t)(sl / G) * D + d) * 2;
            row[j] = (float)get_code(kc, int4, gw_kv_k_index(p, sl, d)) * gw_fp16_to_fp32(pr[0]) +
                     gw_fp16_to_fp32(pr[1]);
        }
        gw_quantize_row(GW_TYPE_F16, row, k + gw_kv_k_index(p, off, d), n);
    }
    for (int j = 0; j < n; j++) {
        const int sl = off + j;
        for (int d = 0; d < D; d++) {
            const uint16_t *pr = vp + ((size_t)sl * (D / G) + d / G) * 2;
            row[d] = (float)get_code(vc, int4, gw_kv_v_index(p, sl, d)) * gw_fp16_to_fp32(pr[0]) +
                     gw_fp16_to_fp32(pr[1]);
        }
        gw_quantize_row(GW_TYPE_F16, row, v + gw_kv_v_index(p, sl, 0), D);
    }
}

#if defined(__x86_64__)
#include "backend/cpu/kv_codes.h"

/* codes (16 bytes) * scale + min, rounded to fp16 */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static inline __m256i dequant16(__m512 codes, float sc,
                                                                                       float mn) {
    __m512 x = _mm512_fmadd_ps(codes, _mm512_set1_ps(sc), _mm512_set1_ps(mn));
    return _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

/* The common case on AVX-512: at most 16 slots of one key group, starting
 * at an even slot (int4 codes of two slots share a byte). 0 if it is not
 * that case, and nothing was written. */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static int dequant_slots_avx512(
    const gw_kv_pool *p, int32_t block, int layer, int head, int off, int n, uint16_t *k, uint16_t *v) {
    const int D = p->head_dim, G = GW_KV_QGROUP, bs = p->block_size, int4 = p->type == GW_KV_INT4;
    if (n > 16 || off / G != (off + n - 1) / G || off % 2) return 0;
    const size_t ti = gw_kv_tile_index(p, block, layer, head);
    const uint8_t *kc = p->kq + ti * p->q_tile_bytes, *vc = p->vq + ti * p->q_tile_bytes;
    const uint16_t *kp = p->kprm + ti * p->kprm_tile + (size_t)(off / G) * D * 2;
    const uint16_t *vp = p->vprm + ti * p->vprm_tile;
    const __mmask16 m16 = (__mmask16)((1u << n) - 1);
    float kpar[2048][2]; /* head_dim <= 1024 (model.c) */
    gw_kv_fp16_to_ps(kp, &kpar[0][0], 2 * D);
    for (int d = 0; d < D; d++) {
        const size_t at = (size_t)d * bs + off;
        __m256i h = dequant16(gw_kv_codes_ps(kc, int4, at, n), kpar[d][0], kpar[d][1]);
        _mm256_mask_storeu_epi16(k + at, m16, h);
    }
    for (int j = 0; j < n; j++) {
        const int sl = off + j;
        float vpar[2048 / GW_KV_QGROUP][2];
        gw_kv_fp16_to_ps(vp + (size_t)sl * (D / G) * 2, &vpar[0][0], 2 * (D / G));
        for (int dv = 0; dv < D; dv += 16) {
            const size_t at = (size_t)sl * D + dv;
            __m256i h = dequant16(gw_kv_codes_ps(vc, int4, at, 16), vpar[dv / G][0], vpar[dv / G][1]);
            _mm256_storeu_si256((__m256i *)(v + at), h);
        }
    }
    return 1;
}
#endif

void gw_kv_dequant_slots(const gw_kv_pool *p, int32_t block, int layer, int head, int off, int n, uint16_t *k,
                         uint16_t *v) {
#if defined(__x86_64__)
    /* asked each time (a chunk's worth of work): gw_quant_force_isa may change it */
    if (strcmp(gw_quant_isa_name(), "avx512") == 0 && dequant_slots_avx512(p, block, layer, head, off, n, k, v)) return;
#endif
    dequant_slots_scalar(p, block, layer, head, off, n, k, v);
}

/* ------------------------------------------------- moving a window of slots */

int gw_kv_seq_shift_layers(gw_kv_pool *p, const gw_kv_seq *s, int32_t src, int32_t dst, int32_t n,
                           const gw_kv_rope *rope, int layer0, int layer1) {
    enum { MAX_HALF = 512, PIECE = 64 }; /* head_dim <= 1024 (model.c); slots converted at a time */
    const int bs = p->block_size, D = p->head_dim;
    if (!p->k || n < 0 || dst < 0 || dst >= src || (int64_t)src + n > (int64_t)s->n_blocks * bs) return -1;
    if (rope->dim < 0 || rope->dim % 2 || rope->dim > D || rope->dim / 2 > MAX_HALF || layer0 < 0 ||
        layer1 > p->n_layer)
        return -1;
    if (n == 0 || layer0 >= layer1) return 0;
    for (int32_t b = dst / bs; b <= (dst + n - 1) / bs; b++)
        if (p->refcount[s->blocks[b]] != 1) return -1;
    const int half = rope->dim / 2;
    const int32_t e = src - dst;
    float cs[MAX_HALF], sn[MAX_HALF]; /* rotation by -e positions, per pair */
    for (int i = 0; i < half; i++) {
        /* in double: e * inv_freq reaches thousands of radians */
        double ang = -(double)e * rope->inv_freq[i];
        cs[i] = (float)cos(ang);
        sn[i] = (float)sin(ang);
    }
    float ra[PIECE], rb[PIECE], wa[PIECE], wb[PIECE];
    /* Runs of slots contiguous in both the source and the destination block,
     * in increasing order: a run only overwrites slots that earlier runs have
     * already read (dst < src), and reads each piece before writing it. */
    for (int32_t j = src; j < src + n;) {
        int so = j % bs, dof = (j - e) % bs;
        int len = bs - so < bs - dof ? bs - so : bs - dof;
        if (len > src + n - j) len = src + n - j;
        if (len > PIECE) len = PIECE;
        int32_t sb = s->blocks[j / bs], db = s->blocks[(j - e) / bs];
        for (int l = layer0; l < layer1; l++) {
            for (int h = 0; h < p->n_head_kv; h++) {
                uint16_t *ks = p->k + gw_kv_tile(p, sb, l, h), *kd = p->k + gw_kv_tile(p, db, l, h);
                for (int i = 0; i < half; i++) {
                    int d1 = rope->neox ? i : 2 * i, d2 = rope->neox ? i + half : 2 * i + 1;
                    /* keys are dimension-major: a pair's rows are vectors over the run's slots */
                    gw_dequantize_row(GW_TYPE_F16, ks + gw_kv_k_index(p, so, d1), ra, len);
                    gw_dequantize_row(GW_TYPE_F16, ks + gw_kv_k_index(p, so, d2), rb, len);
                    for (int x = 0; x < len; x++) {
                        wa[x] = ra[x] * cs[i] - rb[x] * sn[i];
                        wb[x] = ra[x] * sn[i] + rb[x] * cs[i];
                    }
                    gw_quantize_row(GW_TYPE_F16, wa, kd + gw_kv_k_index(p, dof, d1), len);
                    gw_quantize_row(GW_TYPE_F16, wb, kd + gw_kv_k_index(p, dof, d2), len);
                }
                for (int d = rope->dim; d < D; d++) /* dimensions RoPE leaves alone */
                    memmove(kd + gw_kv_k_index(p, dof, d), ks + gw_kv_k_index(p, so, d), (size_t)len * sizeof(uint16_t));
                memmove(p->v + gw_kv_tile(p, db, l, h) + gw_kv_v_index(p, dof, 0),
                        p->v + gw_kv_tile(p, sb, l, h) + gw_kv_v_index(p, so, 0), (size_t)len * D * sizeof(uint16_t));
            }
        }
        j += len;
    }
    return 0;
}

int gw_kv_seq_shift_down(gw_kv_pool *p, const gw_kv_seq *s, int32_t src, int32_t dst, int32_t n,
                         const gw_kv_rope *rope) {
    return gw_kv_seq_shift_layers(p, s, src, dst, n, rope, 0, p->n_layer);
}

/* ------------------------------------------------------ keeping chosen slots */

/* A (layer, head) tile of a block as fp16 in the open-page layout: copied
 * from its open page, or dequantized. */
static void tile_read(const gw_kv_pool *p, int32_t block, int layer, int head, uint16_t *k, uint16_t *v) {
    const size_t n = (size_t)p->block_size * p->head_dim;
    const uint16_t *kt = gw_kv_k_page(p, block, layer, head);
    if (kt) {
        memcpy(k, kt, n * sizeof(uint16_t));
        memcpy(v, gw_kv_v_page(p, block, layer, head), n * sizeof(uint16_t));
    } else {
        gw_kv_dequant_slots(p, block, layer, head, 0, p->block_size, k, v);
    }
}

/* gw_kv_seq_gather on a quantized pool: each destination block's tile is
 * rebuilt in fp16 (its kept rows from their source tiles, the rest as it
 * was) and written back: into its open page, or quantized again. A source
 * slot is never in a block already written (keep[i] >= i). */
static int gather_quant(gw_kv_pool *p, const gw_kv_seq *s, int layer, int head, const int32_t *keep, int32_t n) {
    const int bs = p->block_size, D = p->head_dim;
    const size_t tile = (size_t)bs * D;
    uint16_t *buf = malloc(4 * tile * sizeof(uint16_t));
    if (!buf) return -1;
    uint16_t *sk = buf, *sv = buf + tile, *dk = buf + 2 * tile, *dv = buf + 3 * tile;
    int32_t cached = -1; /* the source block whose tile sk / sv hold */
    for (int32_t db = 0; (int64_t)db * bs < n; db++) {
        const int32_t blk = s->blocks[db];
        tile_read(p, blk, layer, head, dk, dv);
        for (int r = 0; r < bs && db * bs + r < n; r++) {
            const int32_t src = keep[db * bs + r], sb = s->blocks[src / bs], so = src % bs;
            if (src == db * bs + r) continue;
            if (sb != cached) {
                tile_read(p, sb, layer, head, sk, sv);
                cached = sb;
            }
            for (int d = 0; d < D; d++) dk[gw_kv_k_index(p, r, d)] = sk[gw_kv_k_index(p, so, d)];
            memcpy(dv + gw_kv_v_index(p, r, 0), sv + gw_kv_v_index(p, so, 0), (size_t)D * sizeof(uint16_t));
        }
        uint16_t *kt = gw_kv_k_page(p, blk, layer, head);
        if (kt) {
            memcpy(kt, dk, tile * sizeof(uint16_t));
            memcpy(gw_kv_v_page(p, blk, layer, head), dv, tile * sizeof(uint16_t));
        } else {
            quantize_tile(p, gw_kv_tile_index(p, blk, layer, head), dk, dv);
        }
        if (blk == cached) cached = -1; /* (cannot be read again, but keep the cache honest) */
    }
    free(buf);
    return 0;
}

int gw_kv_seq_gather(gw_kv_pool *p, const gw_kv_seq *s, int layer, int head, const int32_t *keep, int32_t n) {
    const int bs = p->block_size, D = p->head_dim;
    if ((!p->k && (!p->open || p->external)) || layer < 0 || layer >= p->n_layer || head < 0 ||
        head >= p->n_head_kv || n < 0)
        return -1;
    for (int32_t i = 0; i < n; i++)
        if (keep[i] < i || (i > 0 && keep[i] <= keep[i - 1]) || keep[i] >= s->n_blocks * bs) return -1;
    for (int32_t b = 0; n > 0 && b <= (n - 1) / bs; b++)
        if (p->refcount[s->blocks[b]] != 1) return -1;
    if (!p->k) return gather_quant(p, s, layer, head, keep, n);
    /* keep[i] >= i: slot i is written after every slot below keep[i] was read */
    for (int32_t i = 0; i < n; i++) {
        const int32_t src = keep[i];
        if (src == i) continue;
        uint16_t *ks = p->k + gw_kv_tile(p, s->blocks[src / bs], layer, head);
        uint16_t *vs = p->v + gw_kv_tile(p, s->blocks[src / bs], layer, head);
        uint16_t *kd = p->k + gw_kv_tile(p, s->blocks[i / bs], layer, head);
        uint16_t *vd = p->v + gw_kv_tile(p, s->blocks[i / bs], layer, head);
        for (int d = 0; d < D; d++) kd[gw_kv_k_index(p, i % bs, d)] = ks[gw_kv_k_index(p, src % bs, d)];
        memcpy(vd + gw_kv_v_index(p, i % bs, 0), vs + gw_kv_v_index(p, src % bs, 0), (size_t)D * sizeof(uint16_t));
    }
    return 0;
}
