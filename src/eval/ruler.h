/* RULER-style synthetic long-context tasks (Hsieh et al., 2024), re-implemented
 * from the paper's description, plus LM-Infinite's passkey retrieval.
 *
 * A generator turns (task, target length, seed, sample index) into one
 * sample: the task text that goes into the user turn of the chat template,
 * an answer prefix that is appended after the rendered template (outside
 * it, as RULER does), the reference strings, and the answer budget.
 *
 * The generators know nothing about models: the caller passes a token
 * counter that measures a candidate (input, answer prefix) exactly as the
 * model will see it (template applied, BOS, prefix appended). The haystack
 * size is then fitted by binary search so that
 *     count(input, answer_prefix) + max_new_tokens <= length
 * with the largest haystack that fits.
 *
 * Determinism: a sample depends only on (task, length, seed, index, depth,
 * corpus) and the counter's answers. Each sample seeds its own generator
 * from a hash of (seed, task name, length, index), so samples can be made in
 * any order and a resumed run regenerates exactly the same prompts.
 *
 * (Names: the sample type is gw_eval_sample, since gw_sample is the
 * sampler of godwit.h.)
 *
 * Scoring (RULER's string_match_all): the fraction of reference strings that
 * occur in the prediction, case-insensitively, times 100. */
#ifndef GODWIT_RULER_H
#define GODWIT_RULER_H
#include <stddef.h>
#include <stdint.h>

/* Tasks, with RULER's names where RULER has them:
 *  niah_single_1      noise haystack ("The grass is green. ..."), word key, 7-digit number
 *  niah_single_2      essay haystack (war and peace sentences), word key, 7-digit number
 *  niah_single_3      essay haystack, word key, UUID value
 *  niah_single_words  essay haystack, word key, word value (not one of RULER's 13)
 *  niah_multikey_1    essay haystack, 1 needle + 3 distractor needles with other keys
 *  niah_multikey_2    needle haystack: every line is a distractor needle (word keys, numbers)
 *  niah_multikey_3    needle haystack with UUID keys and UUID values
 *  niah_multivalue    essay haystack, 4 values under the same key; all 4 must be given
 *  niah_multiquery    essay haystack, 4 needles with different keys; all 4 are asked
 *  vt                 variable tracking: 1 chain of 4 hops in noise, with a one-shot example
 *  cwe                common words extraction: numbered word list, 10 words x30, others x3
 *  fwe                frequent words extraction: Zipf(alpha=2) coded words, top 3 asked
 *  passkey            LM-Infinite passkey: a 5-digit key in repeated filler text */
typedef enum {
    GW_TASK_NIAH_SINGLE_1,
    GW_TASK_NIAH_SINGLE_2,
    GW_TASK_NIAH_SINGLE_3,
    GW_TASK_NIAH_SINGLE_WORDS,
    GW_TASK_NIAH_MULTIKEY_1,
    GW_TASK_NIAH_MULTIKEY_2,
    GW_TASK_NIAH_MULTIKEY_3,
    GW_TASK_NIAH_MULTIVALUE,
    GW_TASK_NIAH_MULTIQUERY,
    GW_TASK_VT,
    GW_TASK_CWE,
    GW_TASK_FWE,
    GW_TASK_PASSKEY,
    GW_TASK_COUNT
} gw_task;

const char *gw_task_name(gw_task t);
/* Task by name; -1 if unknown. Also accepts "all" -> GW_TASK_COUNT. */
int gw_task_lookup(const char *name);

/* The essay haystack: prose split into sentences once, shared by every
 * sample. Sentences are whitespace-normalised (runs of spaces/newlines -> one
 * space) and split after '.', '!' or '?' (optionally followed by closing
 * quotes) when whitespace follows. */
typedef struct gw_corpus gw_corpus;
gw_corpus *gw_corpus_new(const char *text, size_t len);
void gw_corpus_free(gw_corpus *c);
size_t gw_corpus_n_sentences(const gw_corpus *c);
const char *gw_corpus_sentence(const gw_corpus *c, size_t i); /* NUL-terminated */

/* Counts the tokens of the prompt the model would see for this input and
 * answer prefix; returns -1 on failure. */
typedef int (*gw_token_counter)(const char *input, const char *answer_prefix, void *user);

typedef struct {
    gw_task task;
    int length;             /* target prompt + answer budget, in tokens */
    uint64_t seed;
    int index;              /* sample number within (task, length) */
    double depth;           /* single-needle tasks and passkey: where the needle
                               goes, 0 (start) .. 1 (end) of the haystack;
                               < 0: chosen from the sample's own generator */
    const gw_corpus *corpus;/* essay haystack; required by essay tasks */
    gw_token_counter count;
    void *count_user;
} gw_eval_sample_params;

typedef struct {
    char *input;            /* user-turn text */
    char *answer_prefix;    /* appended after the template, e.g. " The special magic number for x is" */
    char **refs;            /* n_refs reference strings */
    int n_refs;
    int max_new_tokens;     /* answer budget (RULER's per-task tokens_to_generate) */
    int n_prompt_tokens;    /* count(input, answer_prefix) at the fitted size */
    double depth;           /* first needle's depth in 0..1; -1 for tasks without needles */
} gw_eval_sample;

/* Makes one sample. Returns 0, or -1 with a message in err (unknown task,
 * essay task without a corpus, length too small for even the empty
 * haystack, counter failure, corpus too short for the length). */
int gw_eval_sample_make(const gw_eval_sample_params *p, gw_eval_sample *out, char *err, size_t errlen);
void gw_eval_sample_free(gw_eval_sample *s);

/* RULER's string_match_all: 100 x (references found in prediction,
 * case-insensitive substring) / n_refs. */
double gw_eval_sample_score(const gw_eval_sample *s, const char *prediction);
#endif
