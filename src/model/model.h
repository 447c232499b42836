/* A loaded model: hyper-parameters and weight views for one architecture
 * family (decoder-only transformers with RMSNorm, RoPE, GQA attention and a
 * SwiGLU MLP: llama, qwen2). Weights stay in the GGUF mapping in their stored
 * (possibly quantized) format; small vectors (norms, biases) are converted to
 * float at load. */
#ifndef GODWIT_MODEL_H
#define GODWIT_MODEL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/gguf.h"

typedef enum { GW_ARCH_LLAMA, GW_ARCH_QWEN2 } gw_arch;

/* How RoPE pairs dimensions: NORM rotates (x[2i], x[2i+1]) (llama GGUFs,
 * whose Q/K weights the converter permuted), NEOX rotates (x[i], x[i+d/2])
 * (qwen2, and Hugging Face's own layout). */
typedef enum { GW_ROPE_NORM, GW_ROPE_NEOX } gw_rope_style;

/* A matrix of `rows` output features by `cols` input features, rows stored
 * contiguously (row stride row_bytes) in format `type`. */
typedef struct {
    uint32_t type;
    const void *data;
    int64_t rows, cols;
    size_t row_bytes;
} gw_matrix;

typedef struct {
    float *attn_norm;             /* [n_embd] */
    gw_matrix wq, wk, wv, wo;
    float *bq, *bk, *bv;          /* qwen2 biases, NULL for llama */
    float *ffn_norm;              /* [n_embd] */
    gw_matrix w_gate, w_up, w_down;
} gw_layer;

typedef struct gw_model {
    gw_arch arch;
    char arch_name[32];
    char name[128];
    int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx_train;
    float norm_eps;
    /* RoPE */
    gw_rope_style rope_style;
    int rope_dim;                 /* dimensions rotated (== head_dim usually) */
    float rope_theta;
    float rope_scale;             /* linear position scaling: pos / rope_scale */
    float *rope_freq_factors;     /* [rope_dim/2] Llama 3.1 style, or NULL */
    /* weights */
    gw_matrix tok_embd;           /* rows = vocab */
    float *output_norm;
    gw_matrix output;             /* == tok_embd when tied */
    gw_layer *layers;
    gguf_file *file;              /* the GGUF; for a Hugging Face directory, its tokenizer.gguf */
    struct st_checkpoint *st;     /* Hugging Face safetensors weights, or NULL (hf_model.h) */
    struct gw_tokenizer *tokenizer;
    char *chat_template;          /* NULL if the file has none */
} gw_model;

/* Loads a GGUF model, or a Hugging Face model directory (config.json +
 * safetensors, see hf_model.h) when path is a directory or a .safetensors /
 * .safetensors.index.json file; NULL with a message in err on failure (unsupported
 * architecture, missing or misshapen tensor, unsupported tensor type...). */
gw_model *gw_model_load(const char *path, char *err, size_t errlen);
void gw_model_free(gw_model *m);
/* Bytes of all weights (for bandwidth figures). */
size_t gw_model_weight_bytes(const gw_model *m);
#endif
