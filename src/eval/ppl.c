#include "eval/ppl.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* -log softmax(logits)[target], in double for a stable sum. */
static double token_nll(const float *logits, int n_vocab, int32_t target) {
    float mx = logits[0];
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - mx);
    return log(sum) + mx - logits[target];
}

/* Running sums over scored tokens. */
typedef struct {
    double sum, sum_sq;
    long n;
} nll_acc;

/* Evaluates win[0..n) from an empty cache in batches and adds the NLL of
 * every prediction made at window positions j in [score_from, n-1) (position
 * j predicts win[j+1]). Buffers are sized for the context's batch. */
static int eval_window(gw_context *c, int n_vocab, const int32_t *win, int n, int score_from,
                       int32_t *seqv, int32_t *pos, int8_t *want, float *logits, nll_acc *acc,
                       char *err, size_t errlen) {
    const int B = gw_context_n_batch(c);
    int seq = gw_seq_open(c);
    if (seq < 0) {
        snprintf(err, errlen, "ppl: no free sequence");
        return -1;
    }
    int rc = 0;
    for (int done = 0; done < n && rc == 0;) {
        int m = n - done < B ? n - done : B;
        for (int i = 0; i < m; i++) {
            seqv[i] = seq;
            pos[i] = done + i;
            want[i] = (done + i >= score_from && done + i < n - 1);
        }
        gw_batch b = {m, win + done, seqv, pos, want};
        if (gw_forward(c, &b, logits, err, errlen) != 0) {
            rc = -1;
            break;
        }
        int k = 0;
        for (int i = 0; i < m; i++) {
            if (!want[i]) continue;
            double nll = token_nll(logits + (size_t)k * n_vocab, n_vocab, win[done + i + 1]);
            acc->sum += nll;
            acc->sum_sq += nll * nll;
            acc->n++;
            k++;
        }
        done += m;
    }
    gw_seq_close(c, seq);
    return rc;
}

/* ppl and its standard error from the sums. */
static void acc_finish(const nll_acc *acc, gw_ppl_result *out) {
    double mean = acc->sum / (double)acc->n;
    double var = acc->sum_sq / (double)acc->n - mean * mean;
    double se_mean = acc->n > 1 && var > 0 ? sqrt(var / (double)(acc->n - 1)) : 0;
    out->mean_nll = mean;
    out->ppl = exp(mean);
    out->ppl_err = out->ppl * se_mean; /* d exp(x) = exp(x) dx */
    out->n_scored = acc->n;
}

/* The streaming protocol (see ppl.h): one sequence, chunks of n_batch. */
static int perplexity_stream(gw_context *c, int n_vocab, const int32_t *tokens, int64_t n_tokens,
                             const gw_ppl_params *p, void (*progress)(int, int, double, void *), void *user,
                             gw_ppl_result *out, char *err, size_t errlen) {
    const int B = gw_context_n_batch(c);
    int64_t n_chunks = (n_tokens + B - 1) / B;
    if (p->n_chunks > 0 && p->n_chunks < n_chunks) n_chunks = p->n_chunks;
    if (n_tokens < 2) {
        snprintf(err, errlen, "ppl: the text has %lld tokens; at least 2 are needed", (long long)n_tokens);
        return -1;
    }
    if (n_chunks > INT_MAX) n_chunks = INT_MAX;
    int seq = gw_seq_open(c);
    if (seq < 0) {
        snprintf(err, errlen, "ppl: no free sequence");
        return -1;
    }
    if (gw_seq_set_streaming(c, seq, p->n_sink, p->n_window) != 0) {
        snprintf(err, errlen, "ppl: streaming with %d sinks and a window of %d is not possible here "
                 "(bad sizes, or a GPU context)", p->n_sink, p->n_window);
        gw_seq_close(c, seq);
        return -1;
    }
    int32_t *seqv = malloc(sizeof(int32_t) * B), *pos = malloc(sizeof(int32_t) * B);
    int8_t *want = malloc((size_t)B);
    float *logits = malloc(sizeof(float) * (size_t)n_vocab * B);
    if (!seqv || !pos || !want || !logits) {
        snprintf(err, errlen, "ppl: out of memory");
        free(seqv); free(pos); free(want); free(logits);
        gw_seq_close(c, seq);
        return -1;
    }
    double t0 = now_s();
    nll_acc acc = {0};
    int rc = 0;
    for (int64_t ci = 0; ci < n_chunks; ci++) {
        int64_t begin = ci * B;
        int m = n_tokens - begin < B ? (int)(n_tokens - begin) : B;
        int base = gw_seq_len(c, seq);
        for (int i = 0; i < m; i++) {
            seqv[i] = seq;
            pos[i] = base + i;
            want[i] = begin + i + 1 < n_tokens; /* every token that has a next one */
        }
        gw_batch b = {m, tokens + begin, seqv, pos, want};
        if (gw_forward(c, &b, logits, err, errlen) != 0) {
            rc = -1;
            break;
        }
        int k = 0;
        for (int i = 0; i < m; i++) {
            if (!want[i]) continue;
            double nll = token_nll(logits + (size_t)k * n_vocab, n_vocab, tokens[begin + i + 1]);
            acc.sum += nll;
            acc.sum_sq += nll * nll;
            acc.n++;
            k++;
        }
        out->n_evaluated += m;
        out->n_chunks++;
        if (gw_seq_len(c, seq) > out->kv_tokens_max) out->kv_tokens_max = gw_seq_len(c, seq);
        if (progress) progress((int)ci + 1, (int)n_chunks, acc.n ? exp(acc.sum / (double)acc.n) : 0.0, user);
    }
    if (acc.n > 0) acc_finish(&acc, out);
    else if (rc == 0) {
        snprintf(err, errlen, "ppl: no token was scored");
        rc = -1;
    }
    gw_streaming_stats st;
    gw_seq_streaming_stats(c, seq, &st);
    out->evicted = st.evicted_tokens;
    out->seconds = now_s() - t0;
    free(seqv); free(pos); free(want); free(logits);
    gw_seq_close(c, seq);
    return rc;
}

int gw_perplexity(gw_context *c, int n_vocab, const int32_t *tokens, int64_t n_tokens,
                  const gw_ppl_params *p, void (*progress)(int, int, double, void *), void *user,
                  gw_ppl_result *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (p->stream) return perplexity_stream(c, n_vocab, tokens, n_tokens, p, progress, user, out, err, errlen);
    const int n_ctx = p->n_ctx;
    const int stride = p->stride;
    if (n_ctx < 4 || n_ctx > gw_context_n_ctx(c)) {
        snprintf(err, errlen, "ppl: window size %d must be in [4, %d] (the context size)", n_ctx,
                 gw_context_n_ctx(c));
        return -1;
    }
    if (stride < 0 || stride > n_ctx) {
        snprintf(err, errlen, "ppl: stride %d must be in [1, %d] (the window size), or 0 for chunks",
                 stride, n_ctx);
        return -1;
    }
    /* windows: chunked -> floor(n / n_ctx); strided -> starts 0, S, 2S, ...
     * until a window reaches the end of the stream */
    int64_t n_windows;
    if (stride == 0) {
        n_windows = n_tokens / n_ctx;
    } else {
        n_windows = n_tokens <= n_ctx ? 1 : 1 + (n_tokens - n_ctx + stride - 1) / stride;
    }
    if (p->n_chunks > 0 && p->n_chunks < n_windows) n_windows = p->n_chunks;
    if (n_windows == 0 || n_tokens < 2) {
        snprintf(err, errlen, "ppl: the text has %lld tokens, fewer than one chunk of %d",
                 (long long)n_tokens, n_ctx);
        return -1;
    }
    if (n_windows > INT_MAX) n_windows = INT_MAX;
    const int B = gw_context_n_batch(c);
    int32_t *chunk = malloc(sizeof(int32_t) * n_ctx);
    int32_t *seqv = malloc(sizeof(int32_t) * B), *pos = malloc(sizeof(int32_t) * B);
    int8_t *want = malloc((size_t)B);
    float *logits = malloc(sizeof(float) * (size_t)n_vocab * B);
    if (!chunk || !seqv || !pos || !want || !logits) {
        snprintf(err, errlen, "ppl: out of memory");
        free(chunk); free(seqv); free(pos); free(want); free(logits);
        return -1;
    }
    double t0 = now_s();
    nll_acc acc = {0};
    long n_evaluated = 0;
    int64_t prev_end = 0;
    int rc = 0;
    for (int wi = 0; wi < (int)n_windows && rc == 0; wi++) {
        int n, score_from;
        if (stride == 0) {
            memcpy(chunk, tokens + (int64_t)wi * n_ctx, sizeof(int32_t) * n_ctx);
            if (p->bos >= 0) chunk[0] = p->bos;
            n = n_ctx;
            score_from = n_ctx / 2;
        } else {
            int64_t begin = (int64_t)wi * stride;
            int64_t end = begin + n_ctx < n_tokens ? begin + n_ctx : n_tokens;
            n = (int)(end - begin);
            memcpy(chunk, tokens + begin, sizeof(int32_t) * n);
            /* targets are the stream tokens [prev_end, end); the first
             * stream token has no prediction */
            int64_t first_target = prev_end > 1 ? prev_end : 1;
            score_from = (int)(first_target - 1 - begin);
            prev_end = end;
        }
        rc = eval_window(c, n_vocab, chunk, n, score_from, seqv, pos, want, logits, &acc, err, errlen);
        n_evaluated += n;
        if (progress && rc == 0) progress(wi + 1, (int)n_windows, exp(acc.sum / (double)acc.n), user);
    }
    if (rc == 0 && acc.n == 0) {
        snprintf(err, errlen, "ppl: no token was scored");
        rc = -1;
    }
    if (rc == 0) {
        acc_finish(&acc, out);
        out->n_chunks = (int)n_windows;
        out->n_evaluated = n_evaluated;
        out->seconds = now_s() - t0;
    }
    free(chunk); free(seqv); free(pos); free(want); free(logits);
    return rc;
}
