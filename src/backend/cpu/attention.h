/* CPU attention of a few query heads (one GQA group, sharing one KV head)
 * against one sequence's paged KV cache, with an online softmax over KV
 * blocks: scores of a block are computed, the running maximum and sum are
 * updated once per block, and the value accumulator is rescaled then. */
#ifndef GODWIT_CPU_ATTENTION_H
#define GODWIT_CPU_ATTENTION_H
#include <stdbool.h>
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

/* Attention over slots [s0, s1) only, unnormalized: acc[g][:] = sum of
 * exp(score - mx[g]) * v, sum[g] = sum of exp(score - mx[g]). Splitting a long
 * sequence into ranges lets several threads share one query (flash-decoding);
 * gw_attention_merge combines the pieces. a->out is not used. */
void gw_attention_partial(const gw_attention_args *a, int32_t s0, int32_t s1, float *acc, float *mx,
                          float *sum);
/* out[g][:] = softmax-weighted values from n_parts partial results laid out
 * as parts[i] = {acc[G][D], mx[G], sum[G]}, stride part_floats. */
void gw_attention_merge(int group, int head_dim, const float *parts, int n_parts, size_t part_floats,
                        float *out);
/* Tests: force the portable kernel (true) or the best one (false). */
void gw_attention_force_scalar(bool scalar);
/* Whole range [0, n_slots), normalized into a->out. */
void gw_attention_decode(const gw_attention_args *a);
#endif
