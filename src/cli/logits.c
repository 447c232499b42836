/* godwit logits: the model's raw output for a prompt given as token ids, for
 * checking the engine against a reference (bench/gpu/model_check.py compares
 * the CUDA backend with Hugging Face transformers this way). Every prompt
 * position's logits go to a binary file; the greedy continuation and the
 * timings are printed as one JSON object. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "godwit.h"

static void usage_logits(FILE *f) {
    fprintf(f,
            "usage: godwit logits [-m MODEL] (--ids LIST | --ids-file FILE) [options]\n\n"
            "Runs a prompt given as token ids (no tokenizer, no BOS added) with logits at\n"
            "every position, then generates greedily (argmax, ties to the lowest id). Prints\n"
            "one JSON object: model, device, n_prompt, n_vocab, generated ids, prefill_s,\n"
            "decode_tokens_per_s.\n\n"
            "      --ids LIST          comma-separated token ids\n"
            "      --ids-file FILE     token ids separated by whitespace or commas\n"
            "      --out FILE          write the prompt's logits: float32, [n_prompt][n_vocab]\n"
            "      --generate N        greedy tokens after the prompt (default: 0)\n"
            "  -c, --ctx N             KV slots (default: prompt + N + 16)\n"
            "  -b, --batch N           tokens per forward pass (default: 512)\n"
            "  -t, --threads N         threads (default: all cores)\n"
            KV_HELP DEVICE_HELP);
}

/* Parses ids separated by commas or whitespace; exits on anything else. */
static int32_t *parse_ids(const char *text, int *n_out) {
    int cap = 256, n = 0;
    int32_t *ids = malloc(sizeof(int32_t) * cap);
    const char *p = text;
    for (;;) {
        while (*p == ',' || isspace((unsigned char)*p)) p++;
        if (!*p) break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 0x7fffffff) die("bad token id near '%.20s'", p);
        if (n == cap) ids = realloc(ids, sizeof(int32_t) * (cap *= 2));
        ids[n++] = (int32_t)v;
        p = end;
    }
    if (n == 0) die("%s", "no token ids given");
    *n_out = n;
    return ids;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

int cmd_logits(int argc, char **argv) {
    const char *model = NULL, *ids_arg = NULL, *ids_file = NULL, *out_path = NULL;
    int n_gen = 0, n_ctx = 0, batch = 512, threads = 0, kv_block = 0, device = GW_DEVICE_CPU;
    int kv_type = GW_KV_F16;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (die("option %s needs a value", a), ""))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_logits(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = NEXT();
        else if (!strcmp(a, "--ids")) ids_arg = NEXT();
        else if (!strcmp(a, "--ids-file")) ids_file = NEXT();
        else if (!strcmp(a, "--out")) out_path = NEXT();
        else if (!strcmp(a, "--generate")) n_gen = parse_int(NEXT(), a);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) n_ctx = parse_int(NEXT(), a);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) batch = parse_int(NEXT(), a);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) threads = parse_int(NEXT(), a);
        else if (!strcmp(a, "--kv-block")) kv_block = parse_int(NEXT(), a);
        else if (!strcmp(a, "--kv-type")) kv_type = parse_kv_type(NEXT());
        else if (!strcmp(a, "--device")) device = parse_device(NEXT());
        else {
            fprintf(stderr, "godwit logits: unknown option '%s'\n\n", a);
            usage_logits(stderr);
            return 2;
        }
#undef NEXT
    }
    if (!ids_arg == !ids_file) {
        fprintf(stderr, "godwit logits: give the prompt with exactly one of --ids or --ids-file\n\n");
        usage_logits(stderr);
        return 2;
    }
    if (n_gen < 0 || n_ctx < 0 || batch <= 0 || threads < 0 || kv_block < 0 || kv_block > 4096)
        die("%s", "invalid --generate, --ctx, --batch, --threads or --kv-block");
    size_t file_len = 0;
    char *file_text = ids_file ? read_file(ids_file, &file_len) : NULL;
    int n_prompt;
    int32_t *ids = parse_ids(ids_file ? file_text : ids_arg, &n_prompt);
    free(file_text);

    const char *path = resolve_model(model);
    char err[512];
    gw_model *m = gw_model_load(path, err, sizeof err);
    if (!m) die("%s", err);
    const int V = gw_model_n_vocab(m);
    for (int i = 0; i < n_prompt; i++)
        if (ids[i] >= V) {
            char msg[64];
            snprintf(msg, sizeof msg, "%d", ids[i]);
            die("token id %s is outside the model's vocabulary", msg);
        }
    if (n_ctx == 0) n_ctx = n_prompt + n_gen + 16;
    if (n_ctx < n_prompt + n_gen) die("%s", "--ctx is smaller than the prompt plus --generate");
    gw_context_params cp = {.n_ctx = n_ctx, .n_batch = batch, .n_threads = threads, .kv_block_size = kv_block,
                            .device = device, .kv_type = kv_type};
    gw_context *c = gw_context_new(m, &cp, err, sizeof err);
    if (!c) die("%s", err);
    char dev[512];
    gw_context_describe_device(c, dev, sizeof dev);
    fprintf(stderr, "godwit logits: %d prompt tokens on %s\n", n_prompt, dev);

    FILE *out = NULL;
    if (out_path && !(out = fopen(out_path, "wb"))) die("cannot write %s", out_path);
    const int B = batch;
    float *logits = malloc(sizeof(float) * (size_t)B * V);
    int32_t *seqv = malloc(sizeof(int32_t) * B), *pos = malloc(sizeof(int32_t) * B);
    int8_t *want = malloc((size_t)B);
    if (!logits || !seqv || !pos || !want) die("%s", "out of memory");
    int seq = gw_seq_open(c);
    double t0 = now_s();
    int next = 0;
    for (int done = 0; done < n_prompt;) {
        int n = n_prompt - done < B ? n_prompt - done : B;
        for (int i = 0; i < n; i++) {
            seqv[i] = seq;
            pos[i] = done + i;
            want[i] = 1;
        }
        gw_batch b = {n, ids + done, seqv, pos, want};
        if (gw_forward(c, &b, logits, err, sizeof err) != 0) die("%s", err);
        if (out && fwrite(logits, sizeof(float) * V, (size_t)n, out) != (size_t)n) die("cannot write %s", out_path);
        done += n;
        if (done == n_prompt) next = argmax(logits + (size_t)(n - 1) * V, V);
    }
    double prefill_s = now_s() - t0;
    if (out && fclose(out) != 0) die("cannot write %s", out_path);

    int32_t *gen = malloc(sizeof(int32_t) * (n_gen + 1));
    double t1 = now_s();
    for (int g = 0; g < n_gen; g++) {
        gen[g] = next;
        if (g + 1 == n_gen) break;
        int32_t p = n_prompt + g;
        int8_t w = 1;
        gw_batch b = {1, &gen[g], &seq, &p, &w};
        if (gw_forward(c, &b, logits, err, sizeof err) != 0) die("%s", err);
        next = argmax(logits, V);
    }
    double decode_s = now_s() - t1;
    printf("{\"model\":\"%s\",\"device\":\"%s\",\"n_prompt\":%d,\"n_vocab\":%d,\"generated\":[", path,
           device == GW_DEVICE_CUDA ? "cuda" : "cpu", n_prompt, V);
    for (int g = 0; g < n_gen; g++) printf("%s%d", g ? "," : "", gen[g]);
    printf("],\"prefill_s\":%.6f,\"decode_tokens_per_s\":%.3f}\n", prefill_s,
           n_gen > 1 ? (n_gen - 1) / decode_s : 0.0);
    free(gen);
    free(logits);
    free(seqv);
    free(pos);
    free(want);
    free(ids);
    gw_context_free(c);
    gw_model_free(m);
    return 0;
}
