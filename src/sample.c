/* Token sampling: repetition penalty, then greedy, or top-k -> top-p ->
 * min-p -> temperature -> a draw from the remaining distribution with a
 * seeded generator (the same order of filters as llama.cpp's default chain). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "godwit.h"

struct gw_sampler {
    gw_sampler_params p;
    int n_vocab;
    uint64_t rng;
    struct cand { int32_t id; float logit; } *cands;
};

gw_sampler_params gw_sampler_default_params(void) {
    gw_sampler_params p = {
        .temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
        .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0x9e3779b97f4a7c15ull,
    };
    return p;
}

gw_sampler *gw_sampler_new(const gw_sampler_params *p, int n_vocab) {
    gw_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->rng = p->seed ? p->seed : 1;
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    if (!s->cands) {
        free(s);
        return NULL;
    }
    return s;
}

void gw_sampler_free(gw_sampler *s) {
    if (!s) return;
    free(s->cands);
    free(s);
}

/* xorshift64* */
static double next_uniform(gw_sampler *s) {
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    uint64_t r = s->rng * 0x2545F4914F6CDD1Dull;
    return (double)(r >> 11) * (1.0 / 9007199254740992.0);
}

static int cmp_cand_desc(const void *a, const void *b) {
    float x = ((const struct cand *)a)->logit, y = ((const struct cand *)b)->logit;
    if (x > y) return -1;
    if (x < y) return 1;
    return ((const struct cand *)a)->id - ((const struct cand *)b)->id;
}

int32_t gw_sample(gw_sampler *s, float *logits, const int32_t *history, int n_history) {
    const gw_sampler_params *p = &s->p;
    const int V = s->n_vocab;
    if (p->repeat_penalty != 1.0f && history && n_history > 0) {
        int from = n_history > p->repeat_last_n ? n_history - p->repeat_last_n : 0;
        /* each distinct token is penalized once */
        for (int i = from; i < n_history; i++) {
            int32_t t = history[i];
            if (t < 0 || t >= V) continue;
            bool seen = false;
            for (int j = from; j < i; j++)
                if (history[j] == t) { seen = true; break; }
            if (seen) continue;
            logits[t] = logits[t] > 0 ? logits[t] / p->repeat_penalty : logits[t] * p->repeat_penalty;
        }
    }
    if (p->temperature <= 0.0f) {
        int32_t best = 0;
        for (int i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    /* Candidates: with top-k, a partial selection keeps the sort small. */
    int n = 0;
    for (int i = 0; i < V; i++) s->cands[n++] = (struct cand){i, logits[i]};
    int k = (p->top_k > 0 && p->top_k < n) ? p->top_k : n;
    if (k < n) {
        /* quickselect the k largest to the front, then sort them */
        int lo = 0, hi = n - 1;
        while (lo < hi) {
            float pivot = s->cands[(lo + hi) / 2].logit;
            int i = lo, j = hi;
            while (i <= j) {
                while (s->cands[i].logit > pivot) i++;
                while (s->cands[j].logit < pivot) j--;
                if (i <= j) {
                    struct cand tmp = s->cands[i];
                    s->cands[i++] = s->cands[j];
                    s->cands[j--] = tmp;
                }
            }
            if (k - 1 <= j) hi = j;
            else if (k - 1 >= i) lo = i;
            else break;
        }
        n = k;
    }
    qsort(s->cands, (size_t)n, sizeof *s->cands, cmp_cand_desc);
    /* softmax at temperature 1 for top-p / min-p (as llama.cpp does before
     * its temperature step) */
    double maxl = s->cands[0].logit, sum = 0;
    double *pr = malloc((size_t)n * sizeof(double));
    if (!pr) return s->cands[0].id;
    for (int i = 0; i < n; i++) sum += (pr[i] = exp(s->cands[i].logit - maxl));
    if (p->top_p < 1.0f) {
        double cum = 0;
        for (int i = 0; i < n; i++) {
            cum += pr[i] / sum;
            if (cum >= p->top_p) { n = i + 1; break; }
        }
    }
    if (p->min_p > 0.0f) {
        int keep = 1;
        while (keep < n && pr[keep] >= p->min_p * pr[0]) keep++;
        n = keep;
    }
    /* temperature and draw */
    sum = 0;
    for (int i = 0; i < n; i++) sum += (pr[i] = exp((s->cands[i].logit - maxl) / p->temperature));
    double r = next_uniform(s) * sum, acc = 0;
    int32_t pick = s->cands[n - 1].id;
    for (int i = 0; i < n; i++) {
        acc += pr[i];
        if (r < acc) { pick = s->cands[i].id; break; }
    }
    free(pr);
    return pick;
}
