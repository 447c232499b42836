/* The godwit command-line program: one file per group of commands
 * (main.c: run, chat, ppl, bench, info; eval.c: eval ...) and the helpers
 * they share (common.c). The CLI uses only the public API (godwit.h), the
 * tokenizer and the evaluation modules. */
#ifndef GODWIT_CLI_H
#define GODWIT_CLI_H
#include <stdbool.h>
#include <stddef.h>

#include "godwit.h"

#define DEFAULT_MODEL_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"

double now_s(void);
/* Prints "godwit: " + fmt (with one %s for arg) and exits with status 1. */
void die(const char *fmt, const char *arg);
int parse_int(const char *s, const char *name);
float parse_float(const char *s, const char *name);
/* An integer with an optional k suffix (x1024): "4k" -> 4096. */
int parse_size(const char *s, const char *name);
/* The model path: the one given, else $GODWIT_MODEL, else the default model
 * in models/ (from the working directory or next to the executable). Exits
 * with a message saying how to fetch it when there is none. */
const char *resolve_model(const char *given);
/* A file of ../shared/data (the project's test and evaluation data): from
 * $GODWIT_DATA, ../shared/data, shared/data, or relative to the executable.
 * NULL if not found. */
const char *resolve_data_file(const char *name);
/* Whole file (or stdin for "-"), NUL-terminated; exits on error. */
char *read_file(const char *path, size_t *len);
/* --device: "cpu" -> GW_DEVICE_CPU, "cuda" (or "gpu") -> GW_DEVICE_CUDA; exits on
 * anything else, and for cuda when this build has no CUDA backend. */
int parse_device(const char *s);
/* --streaming S,W: S attention sinks and a window of W tokens (S >= 0, W >=
 * 1), or 0,0 for off; exits on anything else. */
void parse_streaming(const char *s, int *n_sink, int *n_window);
/* The KV policy a run uses, as results record it: "snapkv:4x", "h2o:1024",
 * "streaming:4,1020" (window > 0) or "none". */
void describe_kv_policy(const gw_kv_select *sel, int stream_sink, int stream_window, char *buf, size_t buflen);
/* --kv-type f16|int8|int4 -> GW_KV_*. */
int parse_kv_type(const char *s);
/* --kv-select POLICY:BUDGET -> gw_kv_select (dies on a malformed one). */
void parse_kv_select(const char *s, gw_kv_select *out);
#define KV_SELECT_HELP \
    "      --kv-select P:B     compress the prompt's KV after prefill: snapkv or h2o, keeping B\n" \
    "                          tokens (e.g. snapkv:1024) or 1/Nth of the prompt (e.g. h2o:4x);\n" \
    "                          snapkv:4x,pool=15 widens SnapKV's score pooling (default 7);\n" \
    "                          (int8/int4 pages: on the CPU only) (default: none)\n"
#define KV_HELP \
    "      --kv-block N        tokens per KV cache block (default: 16; 32 with --kv-type int8/int4)\n" \
    "      --kv-type T         KV cache pages: f16, int8 or int4 (KIVI: keys per channel, values\n" \
    "                          per token, groups of 32; a block stays f16 until full) (default: f16)\n"

#define DEVICE_HELP "      --device D          cpu or cuda (default: cpu; cuda needs a -DGODWIT_CUDA=ON build)\n"

int cmd_eval(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_serve(int argc, char **argv);
#endif
