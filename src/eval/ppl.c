#include "eval/ppl.h"

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

int gw_perplexity(gw_context *c, int n_vocab, const int32_t *tokens, int64_t n_tokens,
                  const gw_ppl_params *p, void (*progress)(int, int, double, void *), void *user,
                  gw_ppl_result *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    const int n_ctx = p->n_ctx;
    if (n_ctx < 4 || n_ctx > gw_context_n_ctx(c)) {
        snprintf(err, errlen, "ppl: chunk size %d must be in [4, %d] (the context size)", n_ctx,
                 gw_context_n_ctx(c));
        return -1;
    }
    int n_chunks = (int)(n_tokens / n_ctx);
    if (p->n_chunks > 0 && p->n_chunks < n_chunks) n_chunks = p->n_chunks;
    if (n_chunks == 0) {
        snprintf(err, errlen, "ppl: the text has %lld tokens, fewer than one chunk of %d",
                 (long long)n_tokens, n_ctx);
        return -1;
    }
    const int B = gw_context_n_batch(c);
    const int first = n_ctx / 2;
    int32_t *chunk = malloc(sizeof(int32_t) * n_ctx);
    int32_t *seqv = malloc(sizeof(int32_t) * B), *pos = malloc(sizeof(int32_t) * B);
    int8_t *want = malloc((size_t)B);
    float *logits = malloc(sizeof(float) * (size_t)n_vocab * B);
    if (!chunk || !seqv || !pos || !want || !logits) {
        snprintf(err, errlen, "ppl: out of memory");
        free(chunk); free(seqv); free(pos); free(want); free(logits);
        return -1;
    }
    double t0 = now_s(), sum = 0, sum_sq = 0;
    long n_scored = 0;
    int rc = 0;
    for (int ci = 0; ci < n_chunks && rc == 0; ci++) {
        memcpy(chunk, tokens + (int64_t)ci * n_ctx, sizeof(int32_t) * n_ctx);
        if (p->bos >= 0) chunk[0] = p->bos;
        int seq = gw_seq_open(c);
        if (seq < 0) {
            snprintf(err, errlen, "ppl: no free sequence");
            rc = -1;
            break;
        }
        for (int done = 0; done < n_ctx && rc == 0;) {
            int n = n_ctx - done < B ? n_ctx - done : B;
            for (int i = 0; i < n; i++) {
                seqv[i] = seq;
                pos[i] = done + i;
                /* position j predicts token j+1; score j in [first, n_ctx-1) */
                want[i] = (done + i >= first && done + i < n_ctx - 1);
            }
            gw_batch b = {n, chunk + done, seqv, pos, want};
            if (gw_forward(c, &b, logits, err, errlen) != 0) {
                rc = -1;
                break;
            }
            int k = 0;
            for (int i = 0; i < n; i++) {
                if (!want[i]) continue;
                double nll = token_nll(logits + (size_t)k * n_vocab, n_vocab, chunk[done + i + 1]);
                sum += nll;
                sum_sq += nll * nll;
                n_scored++;
                k++;
            }
            done += n;
        }
        gw_seq_close(c, seq);
        if (progress && rc == 0) progress(ci + 1, n_chunks, exp(sum / (double)n_scored), user);
    }
    if (rc == 0) {
        double mean = sum / (double)n_scored;
        double var = sum_sq / (double)n_scored - mean * mean;
        double se_mean = n_scored > 1 && var > 0 ? sqrt(var / (double)(n_scored - 1)) : 0;
        out->mean_nll = mean;
        out->ppl = exp(mean);
        out->ppl_err = out->ppl * se_mean; /* d exp(x) = exp(x) dx */
        out->n_scored = n_scored;
        out->n_chunks = n_chunks;
        out->seconds = now_s() - t0;
    }
    free(chunk); free(seqv); free(pos); free(want); free(logits);
    return rc;
}
