#include "kv/kv_cache.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/quant.h"

static int pool_init(gw_kv_pool *p, int n_layer, int n_head_kv, int head_dim, int block_size, int32_t n_blocks,
                     bool host_pages) {
    memset(p, 0, sizeof *p);
    p->n_layer = n_layer;
    p->n_head_kv = n_head_kv;
    p->head_dim = head_dim;
    p->block_size = block_size;
    p->n_blocks = n_blocks;
    if (host_pages) {
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
    return pool_init(p, n_layer, n_head_kv, head_dim, block_size, n_blocks, true);
}

int gw_kv_pool_init_external(gw_kv_pool *p, int n_layer, int n_head_kv, int head_dim, int block_size,
                             int32_t n_blocks, int (*copy_block)(void *arg, int32_t dst, int32_t src),
                             void *copy_arg) {
    if (pool_init(p, n_layer, n_head_kv, head_dim, block_size, n_blocks, false) != 0) return -1;
    p->copy_block = copy_block;
    p->copy_arg = copy_arg;
    return 0;
}

void gw_kv_pool_free(gw_kv_pool *p) {
    free(p->k);
    free(p->v);
    free(p->refcount);
    free(p->free_list);
    free(p->cached);
    free(p->lru_prev);
    free(p->lru_next);
    memset(p, 0, sizeof *p);
}

size_t gw_kv_bytes_per_token(const gw_kv_pool *p) {
    return 2 * (size_t)p->n_layer * p->n_head_kv * p->head_dim * sizeof(uint16_t);
}

/* ---------------------------------------------------- references, idle list */

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
    if (r == 0) p->free_list[p->n_free++] = b;
    else if (r == 1 && p->cached[b]) lru_append(p, b); /* only the cache holds it now: idle */
}

void gw_kv_block_cache(gw_kv_pool *p, int32_t b) {
    p->cached[b] = 1;
    p->refcount[b]++;
}

void gw_kv_block_uncache(gw_kv_pool *p, int32_t b) {
    if (p->refcount[b] == 1) lru_remove(p, b);
    p->cached[b] = 0;
    if (--p->refcount[b] == 0) p->free_list[p->n_free++] = b;
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
            p->free_list[p->n_free++] = b;
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

int gw_kv_seq_reserve(gw_kv_pool *p, gw_kv_seq *s, int32_t n_tokens) {
    int32_t need = (n_tokens + p->block_size - 1) / p->block_size;
    /* The block the next slot is written to must be the sequence's own. */
    int32_t wb = s->n_tokens / p->block_size;
    bool cow = n_tokens > s->n_tokens && wb < s->n_blocks && p->refcount[s->blocks[wb]] > 1;
    int32_t extra = (need > s->n_blocks ? need - s->n_blocks : 0) + (cow ? 1 : 0);
    if (extra == 0) return 0;
    if (extra > p->n_free) gw_kv_pool_evict(p, extra - p->n_free);
    if (extra > p->n_free) return -1;
    if (seq_grow(s, need) != 0) return -1;
    if (cow) {
        int32_t old = s->blocks[wb], b = block_alloc(p);
        if (p->k) {
            size_t elems = (size_t)p->n_layer * p->n_head_kv * p->block_size * p->head_dim;
            memcpy(p->k + (size_t)b * elems, p->k + (size_t)old * elems, elems * sizeof(uint16_t));
            memcpy(p->v + (size_t)b * elems, p->v + (size_t)old * elems, elems * sizeof(uint16_t));
        } else if (p->copy_block && p->copy_block(p->copy_arg, b, old) != 0) {
            gw_kv_block_unref(p, b);
            return -1;
        }
        s->blocks[wb] = b;
        gw_kv_block_unref(p, old);
    }
    while (s->n_blocks < need) s->blocks[s->n_blocks++] = block_alloc(p);
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
    size_t tile = gw_kv_tile(p, block, layer, head);
    uint16_t *kt = p->k + tile, *vt = p->v + tile;
    for (int d = 0; d < p->head_dim; d++) kt[gw_kv_k_index(p, slot, d)] = gw_fp32_to_fp16(k[d]);
    gw_quantize_row(GW_TYPE_F16, v, vt + gw_kv_v_index(p, slot, 0), p->head_dim);
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
