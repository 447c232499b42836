/* Perplexity over a token stream, with one of two protocols.
 *
 * Chunked (stride == 0), llama.cpp's llama-perplexity protocol, so that the
 * two engines' figures can be compared directly: the stream is cut into
 * non-overlapping chunks of n_ctx tokens; each chunk is evaluated from an
 * empty cache (its first token replaced by BOS when the model adds one);
 * only the second half of each chunk is scored, so every scored token has
 * at least n_ctx/2 tokens of context.
 *
 * Strided (stride > 0), the sliding-window protocol of Hugging Face's
 * perplexity guide: windows of n_ctx tokens start every `stride` tokens;
 * each window is evaluated from an empty cache and scores only the tokens
 * the previous window did not reach, so every token after the first is
 * scored exactly once, with at least n_ctx - stride tokens of context once
 * the first window is past. The stream is used as is (no BOS per window),
 * as in the guide. stride == n_ctx gives plain non-overlapping windows that
 * score every token.
 *
 * Streaming (stream != 0), StreamingLLM's long-text perplexity: the whole
 * stream goes through one sequence in chunks of the context's n_batch
 * tokens, every prediction scored (each token after the first). With
 * n_sink/n_window set the sequence streams (gw_seq_set_streaming), so the
 * cache stays within n_sink + n_window tokens however long the stream; with
 * both 0 it is the dense model, which stops with an error when the cache is
 * full (the result then holds what was scored before). n_chunks limits the
 * chunks; n_ctx and stride are not used. */
#ifndef GODWIT_PPL_H
#define GODWIT_PPL_H
#include <stdint.h>

#include "godwit.h"

typedef struct {
    int n_ctx;          /* tokens per chunk */
    int n_chunks;       /* 0: as many as the stream holds (windows when strided) */
    int stride;         /* 0: chunked protocol; else window step, 1..n_ctx */
    int32_t bos;        /* -1: keep each chunk's first token */
    int stream;         /* 1: the streaming protocol */
    int n_sink, n_window; /* with stream: the sequence's streaming policy (0, 0: dense) */
} gw_ppl_params;

typedef struct {
    double ppl;         /* exp(mean negative log-likelihood) */
    double ppl_err;     /* standard error of ppl (delta method over tokens) */
    double mean_nll;
    long n_scored;
    int n_chunks;       /* chunks or windows evaluated */
    long n_evaluated;   /* tokens run through the model */
    double seconds;
    int kv_tokens_max;  /* streaming: most tokens the sequence's cache held */
    int64_t evicted;    /* streaming: tokens evicted */
} gw_ppl_result;

/* progress(chunk_done, n_chunks, ppl_so_far, user) is called after each
 * chunk (may be NULL). Returns 0, or -1 with a message in err (out then holds
 * the tokens scored before the error, for the streaming protocol). */
int gw_perplexity(gw_context *c, int n_vocab, const int32_t *tokens, int64_t n_tokens,
                  const gw_ppl_params *p, void (*progress)(int, int, double, void *), void *user,
                  gw_ppl_result *out, char *err, size_t errlen);
#endif
