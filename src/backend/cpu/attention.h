/* CPU attention of query tokens against one sequence's paged KV cache, for
 * one KV head: each query token brings `group` query heads (GQA) and sees
 * its own number of cache slots (causal masking inside a prefill tile).
 * Slots are processed in chunks of up to 16 consecutive slots of one block;
 * each chunk's keys and values are loaded and converted once for every query
 * of the tile, and an online softmax keeps a running max and sum per query. */
#ifndef GODWIT_CPU_ATTENTION_H
#define GODWIT_CPU_ATTENTION_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/kv_cache.h"

#define GW_ATTN_MAX_TILE 8  /* query tokens per call */

typedef struct {
    const gw_kv_pool *kv;
    const int32_t *blocks;   /* the sequence's block table */
    int layer, kv_head;
    int group;               /* query heads per token sharing this KV head */
    int n_tok;               /* query tokens, 1..GW_ATTN_MAX_TILE */
    const int32_t *n_slots;  /* [n_tok] token i attends to slots [0, n_slots[i]) */
    const float *q;          /* token i's heads: q + i*q_stride, [group][head_dim], rotated */
    size_t q_stride;
    float *out;              /* token i's output: out + i*out_stride, [group][head_dim] */
    size_t out_stride;
    float scale;             /* 1/sqrt(head_dim) */
    float *scratch;          /* gw_attention_scratch_floats() floats */
} gw_attention_args;

size_t gw_attention_scratch_floats(int group, int head_dim, int block_size);

/* Normalized attention output of every query into a->out. */
void gw_attention(const gw_attention_args *a);

/* For one query token (n_tok == 1), slots [s0, s1) only, unnormalized:
 * acc[g][:] = sum of exp(score - mx[g]) * v, sum[g] = sum of exp(score - mx[g]).
 * Splitting a long sequence into ranges lets several threads share one query
 * (flash-decoding); gw_attention_merge combines the pieces. a->out unused. */
void gw_attention_partial(const gw_attention_args *a, int32_t s0, int32_t s1, float *acc, float *mx,
                          float *sum);
/* out[g][:] from n_parts partial results laid out as
 * parts[i] = {acc[G][D], mx[G], sum[G]}, stride part_floats. */
void gw_attention_merge(int group, int head_dim, const float *parts, int n_parts, size_t part_floats,
                        float *out);

/* Attention probabilities of one query token (n_tok == 1) over slots
 * [0, n_slots[0]), summed over its `group` heads, added to score[slot]: the
 * statistic SnapKV and H2O rank cached tokens by. probs needs group *
 * n_slots[0] floats. a->out unused. */
void gw_attention_probs_add(const gw_attention_args *a, float *probs, float *score);

/* Tests: force the portable kernel (true) or the best one (false). */
void gw_attention_force_scalar(bool scalar);
#endif
