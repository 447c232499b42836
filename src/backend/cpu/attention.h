/* CPU attention of a few query heads (one GQA group, sharing one KV head)
 * against one sequence's paged KV cache, with an online softmax over KV
 * blocks: scores of a block are computed, the running maximum and sum are
 * updated once per block, and the value accumulator is rescaled then. */
#ifndef GODWIT_CPU_ATTENTION_H
#define GODWIT_CPU_ATTENTION_H
#include <stdint.h>

#include "kv/kv_cache.h"

typedef struct {
    const gw_kv_pool *kv;
    const int32_t *blocks;  /* the sequence's block table */
    int32_t n_slots;        /* attend to slots [0, n_slots) */
    int layer, kv_head;
    int group;              /* query heads sharing this KV head */
    const float *q;         /* [group][head_dim], already rotated */
    float *out;             /* [group][head_dim] */
    float scale;            /* 1/sqrt(head_dim) */
    float *scratch;         /* gw_attention_scratch_floats() floats */
} gw_attention_args;

size_t gw_attention_scratch_floats(int group, int head_dim, int block_size);
void gw_attention_decode(const gw_attention_args *a);
#endif
