/* The engine's next-token log-probabilities against Hugging Face transformers
 * (golden files made by scripts/make_logits_golden.py from the same GGUFs):
 * top-1 identical, max |delta logprob| over the reference top-10 within a
 * tolerance, and 64 greedy tokens identical, for SmolLM2-135M (llama, Q4_1)
 * and Qwen2.5-Coder-1.5B (qwen2, Q4_K_M). SmolLM2 also runs with a second KV
 * block size and prefill chunk size; the results must agree with the first. */
#include <stdint.h>

#include "godwit.h"
#include "test.h"

#define MAX_IDS 4096
#define MAX_CHECKS 16
#define TOL_LOGPROB 0.05

typedef struct {
    char name[32];
    int n_ids;
    int32_t ids[MAX_IDS];
    int n_checks;
    int check_pos[MAX_CHECKS];
    int32_t top_id[MAX_CHECKS][10];
    double top_lp[MAX_CHECKS][10];
    int n_greedy;
    int32_t greedy[128];
} golden_prompt;

static int load_golden(const char *path, golden_prompt *g, int max) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    int n = -1;
    char word[16];
    while (fscanf(f, "%15s", word) == 1) {
        if (!strcmp(word, "prompt")) {
            if (++n >= max) break;
            memset(&g[n], 0, sizeof g[n]);
            if (fscanf(f, "%31s %d", g[n].name, &g[n].n_ids) != 2 || g[n].n_ids > MAX_IDS) return -1;
        } else if (!strcmp(word, "ids")) {
            for (int i = 0; i < g[n].n_ids; i++)
                if (fscanf(f, "%d", &g[n].ids[i]) != 1) return -1;
        } else if (!strcmp(word, "check")) {
            int c = g[n].n_checks++;
            int top1;
            if (c >= MAX_CHECKS || fscanf(f, "%d %d", &g[n].check_pos[c], &top1) != 2) return -1;
            for (int k = 0; k < 10; k++)
                if (fscanf(f, " %d:%lf", &g[n].top_id[c][k], &g[n].top_lp[c][k]) != 2) return -1;
        } else if (!strcmp(word, "greedy")) {
            if (fscanf(f, "%d", &g[n].n_greedy) != 1 || g[n].n_greedy > 128) return -1;
            for (int i = 0; i < g[n].n_greedy; i++)
                if (fscanf(f, "%d", &g[n].greedy[i]) != 1) return -1;
        } else {
            fprintf(stderr, "bad golden record '%s'\n", word);
            return -1;
        }
    }
    fclose(f);
    return n + 1;
}

static void log_softmax(const float *logits, int n, double *out) {
    double mx = logits[0];
    for (int i = 1; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp(logits[i] - mx);
    double lse = mx + log(sum);
    for (int i = 0; i < n; i++) out[i] = logits[i] - lse;
}

/* Runs one prompt; stores the checked positions' logits in `out_logits`
 * ([n_checks][V]) and the greedy continuation in `out_greedy`. */
static void run_prompt(gw_model *m, int block_size, int chunk, const golden_prompt *g, float *out_logits,
                       int32_t *out_greedy) {
    const int V = gw_model_n_vocab(m);
    gw_context_params cp = gw_context_default_params();
    cp.n_ctx = 2304;
    cp.n_batch = chunk;
    cp.kv_block_size = block_size;
    char err[256];
    gw_context *c = gw_context_new(m, &cp, err, sizeof err);
    CHECK_MSG(c != NULL, "%s", err);
    if (!c) return;
    int seq = gw_seq_open(c);
    int32_t *seqv = malloc(sizeof(int32_t) * chunk), *pos = malloc(sizeof(int32_t) * chunk);
    int8_t *want = malloc((size_t)chunk);
    float *logits = malloc(sizeof(float) * V * (size_t)chunk);
    for (int done = 0; done < g->n_ids;) {
        int n = g->n_ids - done < chunk ? g->n_ids - done : chunk;
        int n_want = 0;
        for (int i = 0; i < n; i++) {
            seqv[i] = seq;
            pos[i] = done + i;
            want[i] = 0;
            for (int k = 0; k < g->n_checks; k++)
                if (g->check_pos[k] == done + i) want[i] = 1;
            if (done + i == g->n_ids - 1) want[i] = 1;
        }
        gw_batch b = {n, g->ids + done, seqv, pos, want};
        int rc = gw_forward(c, &b, logits, err, sizeof err);
        CHECK_MSG(rc == 0, "%s", err);
        for (int i = 0; i < n; i++) {
            if (!want[i]) continue;
            for (int k = 0; k < g->n_checks; k++)
                if (g->check_pos[k] == done + i)
                    memcpy(out_logits + (size_t)k * V, logits + (size_t)n_want * V, sizeof(float) * V);
            if (done + i == g->n_ids - 1) memcpy(logits, logits + (size_t)n_want * V, sizeof(float) * V);
            n_want++;
        }
        done += n;
    }
    /* greedy continuation, without stopping at end-of-generation tokens */
    for (int i = 0; i < g->n_greedy; i++) {
        int32_t best = 0;
        for (int v = 1; v < V; v++)
            if (logits[v] > logits[best]) best = v;
        out_greedy[i] = best;
        int32_t p = g->n_ids + i, s = seq;
        int8_t w = 1;
        gw_batch b = {1, &best, &s, &p, &w};
        CHECK(gw_forward(c, &b, logits, err, sizeof err) == 0);
    }
    free(seqv);
    free(pos);
    free(want);
    free(logits);
    gw_context_free(c);
}

typedef struct {
    const char *model_file, *golden_file;
    int n_configs;
} model_case;

/* Returns the worst max |dlogprob| over the model's prompts. */
static double check_model(const model_case *mc) {
    static golden_prompt g[8];
    char golden_path[512];
    snprintf(golden_path, sizeof golden_path, "tests/data/logits/%s", mc->golden_file);
    int n = load_golden(test_path(golden_path), g, 8);
    CHECK(n >= 4);
    if (n <= 0) return INFINITY;
    char err[256];
    gw_model *m = gw_model_load(test_model_file(mc->model_file), err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    if (!m) return INFINITY;
    const int V = gw_model_n_vocab(m);
    double *lp = malloc(sizeof(double) * V);
    const int configs[][2] = {{16, 512}, {256, 97}}; /* {kv block size, prefill chunk} */
    double worst = 0;
    for (int p = 0; p < n; p++) {
        float *ref_logits = NULL;
        int32_t ref_greedy[128];
        for (int cfg = 0; cfg < mc->n_configs; cfg++) {
            float *logits = malloc(sizeof(float) * V * (size_t)g[p].n_checks);
            int32_t greedy[128];
            run_prompt(m, configs[cfg][0], configs[cfg][1], &g[p], logits, greedy);
            double prompt_worst = 0;
            for (int k = 0; k < g[p].n_checks; k++) {
                log_softmax(logits + (size_t)k * V, V, lp);
                int32_t top1 = 0;
                for (int v = 1; v < V; v++)
                    if (lp[v] > lp[top1]) top1 = v;
                CHECK_MSG(top1 == g[p].top_id[k][0], "%s pos %d: top-1 %d, reference %d", g[p].name,
                          g[p].check_pos[k], top1, g[p].top_id[k][0]);
                for (int j = 0; j < 10; j++) {
                    double d = fabs(lp[g[p].top_id[k][j]] - g[p].top_lp[k][j]);
                    if (d > prompt_worst) prompt_worst = d;
                }
            }
            CHECK_MSG(prompt_worst <= TOL_LOGPROB, "%s: max |dlogprob| %.4f", g[p].name, prompt_worst);
            if (prompt_worst > worst) worst = prompt_worst;
            int same = 0;
            while (same < g[p].n_greedy && greedy[same] == g[p].greedy[same]) same++;
            CHECK_MSG(same == g[p].n_greedy, "%s: greedy diverges at token %d of %d", g[p].name, same,
                      g[p].n_greedy);
            printf("%s %-6s block %3d chunk %3d: %4d ids, max |dlogprob| top-10 %.4f, greedy %d/%d\n",
                   mc->model_file, g[p].name, configs[cfg][0], configs[cfg][1], g[p].n_ids, prompt_worst, same,
                   g[p].n_greedy);
            if (cfg == 0) {
                ref_logits = logits;
                memcpy(ref_greedy, greedy, sizeof greedy);
            } else {
                /* paged layout and chunking must not change the result */
                double dmax = 0;
                for (size_t i = 0; i < (size_t)V * g[p].n_checks; i++) {
                    double d = fabs((double)logits[i] - ref_logits[i]);
                    if (d > dmax) dmax = d;
                }
                CHECK_MSG(dmax < 1e-3, "%s: logits differ by %g between block sizes", g[p].name, dmax);
                CHECK(memcmp(greedy, ref_greedy, sizeof(int32_t) * g[p].n_greedy) == 0);
                free(logits);
            }
        }
        free(ref_logits);
    }
    free(lp);
    gw_model_free(m);
    return worst;
}

int main(void) {
    const model_case cases[] = {
        {"SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-q4_1.txt", 2},
        {"Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf", "qwen2.5-coder-1.5b-q4_k_m.txt", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double worst = check_model(&cases[i]);
        printf("%s: worst max |dlogprob| over all prompts %.4f (tolerance %.2f)\n", cases[i].model_file, worst,
               TOL_LOGPROB);
    }
    return test_finish("test_logits");
}
