/* Evaluation harness: runs generated samples (src/eval/ruler.h) through the
 * engine with greedy decoding, scores them, and keeps the results as JSON
 * lines so that a run can be resumed and two runs compared.
 *
 * The prompt a sample becomes: the model's chat template around the task
 * text as one user turn, with the generation prompt, then the answer prefix
 * appended outside the template (RULER's convention). Models without a
 * template get the task text followed by the answer prefix, with BOS when
 * the model adds one. */
#ifndef GODWIT_HARNESS_H
#define GODWIT_HARNESS_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "eval/ruler.h"
#include "godwit.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    gw_model *model;
    gw_context *ctx;
    const gw_tokenizer *tok;
    gw_chat_format fmt;     /* GW_CHAT_UNKNOWN: no template */
    const char *tmpl;
    bool add_bos;
    gw_kv_select select;    /* prompt compression (SnapKV, H2O); zero: none */
    int stream_sink, stream_window; /* attention sinks + sliding window; window 0: off */
} gw_eval_engine;

void gw_eval_engine_init(gw_eval_engine *e, gw_model *m, gw_context *c, bool use_template);

/* The prompt's token ids (malloc'd into *ids); returns the count or -1. */
int gw_eval_prompt_tokens(const gw_eval_engine *e, const char *input, const char *answer_prefix,
                          int32_t **ids);
/* gw_token_counter for gw_eval_sample_params (user = const gw_eval_engine *). */
int gw_eval_count_tokens(const char *input, const char *answer_prefix, void *user);

typedef struct {
    char *prediction;       /* generated text, malloc'd */
    int n_prompt;
    int n_generated;
    int n_kv_kept;          /* prompt tokens whose KV was kept (n_prompt without compression) */
    double prefill_s, decode_s;
} gw_eval_output;

/* Greedy decoding of up to s->max_new_tokens after the sample's prompt, in a
 * fresh sequence that is closed afterwards. Stops at end-of-generation.
 * Returns 0, or -1 with a message in err. */
int gw_eval_generate(gw_eval_engine *e, const gw_eval_sample *s, gw_eval_output *out, char *err, size_t errlen);
void gw_eval_output_free(gw_eval_output *o);

/* ---- results as JSON lines ----
 * One object per sample:
 *   {"model":..., "config":..., "task":..., "length":L, "index":i, "seed":S,
 *    "depth":d, "score":x, "n_prompt_tokens":n, "n_generated":g,
 *    "prefill_tok_s":p, "decode_tok_s":q, "kv_type":..., "kv_bytes_per_token":b,
 *    "kv_select":..., "n_kv_kept":k,   (kv_select: "none", "snapkv:4x", "streaming:4,1020", ...)
 *    "prediction":..., "refs":[...]}
 * A run appends one line per finished sample and flushes it, so a stopped
 * run loses at most the sample in progress. */
typedef struct {
    char *model, *config, *task;
    int length, index;
    uint64_t seed;
    double depth, score;
    int n_prompt_tokens, n_generated;
    double prefill_tok_s, decode_tok_s;
    const char *kv_type;       /* KV page format, written when set ("f16", "int8", "int4") */
    int kv_bytes_per_token;    /* written when kv_type is set */
    const char *kv_select;     /* compression policy, written when set ("snapkv:4x", "none") */
    int n_kv_kept;             /* written with kv_select: prompt tokens whose KV was kept */
} gw_eval_record;

/* Writes one record line (with prediction and refs) and flushes. */
int gw_eval_record_write(FILE *f, const gw_eval_record *r, const char *prediction, const gw_eval_sample *s);

typedef struct {
    gw_eval_record *v;
    int n, cap;
} gw_eval_records;

/* Reads every well-formed record line of a file. A last line cut short by
 * a stop (no newline, or not valid JSON) is ignored; with repair = true it
 * is also truncated away so that appending can continue cleanly. A missing
 * file is an empty set. Returns 0, or -1 with a message in err. */
int gw_eval_records_load(const char *path, bool repair, gw_eval_records *out, char *err, size_t errlen);
void gw_eval_records_free(gw_eval_records *r);
/* The record of (model, config, task, length, index, seed, depth) if present. */
const gw_eval_record *gw_eval_records_find(const gw_eval_records *r, const char *model, const char *config,
                                           const char *task, int length, int index, uint64_t seed,
                                           double depth);

/* ---- summaries ---- */
typedef struct {
    char *model, *config, *task;
    int length;
    double depth;           /* -1 unless grouped by depth */
    int n;
    double score_sum, score_sq;
    double prefill_tok_s_sum, decode_tok_s_sum;
} gw_eval_group;

typedef struct {
    gw_eval_group *v;
    int n, cap;
} gw_eval_groups;

/* Groups records by (model, config, task, length) and, if by_depth, depth;
 * groups keep the order in which they first appear. */
void gw_eval_group_records(const gw_eval_records *r, bool by_depth, gw_eval_groups *out);
void gw_eval_groups_free(gw_eval_groups *g);

/* Prints a table: task x length, mean score (and its standard error when
 * n > 1), samples, tokens/s; then the mean over tasks per length. */
void gw_eval_print_summary(FILE *f, const gw_eval_groups *g);
/* Prints two result sets side by side: (task, length) rows with score A,
 * score B and B - A; rows present in only one set are shown with '-'. */
void gw_eval_print_compare(FILE *f, const gw_eval_groups *a, const char *name_a, const gw_eval_groups *b,
                           const char *name_b);

/* ---- needle-in-a-haystack grid ----
 * Writes scores[li * n_depths + di] (mean score at lengths[li], depths[di],
 * NAN where no sample) as JSON and as an SVG heatmap (rows: depth, columns:
 * length, red 0 .. green 100, the score written in each cell). */
int gw_eval_write_grid_json(const char *path, const char *model, const char *config, const int *lengths,
                            int n_lengths, const double *depths, int n_depths, const double *scores);
int gw_eval_write_grid_svg(const char *path, const char *title, const int *lengths, int n_lengths,
                           const double *depths, int n_depths, const double *scores);
#endif
