#include "model/model.h"
#include "util/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/quant.h"
#include "model/hf_model.h"
#include "model/safetensors.h"
#include "model/tensor_types.h"
#include "tokenizer/tokenizer.h"


/* Reads "<arch>.<suffix>" as an unsigned integer. */
static bool arch_u32(const gguf_file *f, const char *arch, const char *suffix, uint32_t *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return gguf_get_u32(f, key, out);
}

static bool arch_f32(const gguf_file *f, const char *arch, const char *suffix, float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return gguf_get_f32(f, key, out);
}

/* Finds a 2-D weight of shape [cols (contiguous), rows] and checks it. */
static bool load_matrix(const gguf_file *f, const char *name, int64_t rows, int64_t cols,
                        gw_matrix *out, bool optional, char *err, size_t errlen) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) {
        if (!optional) gw_set_err(err, errlen, "model: missing tensor '%s'", name);
        return false;
    }
    const gw_type_traits *tt = gw_type_info(t->type);
    if (!tt || !tt->supported) {
        gw_set_err(err, errlen, "model: tensor '%s' has type %s, which godwit cannot compute with",
                name, gw_type_name(t->type));
        return false;
    }
    if (t->n_dims > 2 || t->ne[0] != cols || t->ne[1] != rows) {
        gw_set_err(err, errlen, "model: tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]", name,
                (long long)t->ne[0], (long long)t->ne[1], (long long)cols, (long long)rows);
        return false;
    }
    out->type = t->type;
    out->data = t->data;
    out->rows = rows;
    out->cols = cols;
    out->row_bytes = gw_row_bytes(t->type, cols);
    return true;
}

/* Loads a 1-D tensor of n elements as a malloc'd float array. */
static float *load_vector(const gguf_file *f, const char *name, int64_t n, bool optional,
                          char *err, size_t errlen) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) {
        if (!optional) gw_set_err(err, errlen, "model: missing tensor '%s'", name);
        return NULL;
    }
    if (t->n_dims != 1 || t->ne[0] != n) {
        gw_set_err(err, errlen, "model: tensor '%s' has %lld elements, expected %lld", name,
                (long long)t->ne[0], (long long)n);
        return NULL;
    }
    const gw_type_traits *tt = gw_type_info(t->type);
    if (!tt || !tt->supported || n % tt->block_size != 0) {
        gw_set_err(err, errlen, "model: tensor '%s' has unsupported type %s", name, gw_type_name(t->type));
        return NULL;
    }
    float *v = malloc((size_t)n * sizeof(float));
    if (!v) {
        gw_set_err(err, errlen, "model: out of memory");
        return NULL;
    }
    gw_dequantize_row(t->type, t->data, v, n);
    return v;
}

gw_model *gw_model_load(const char *path, char *err, size_t errlen) {
    if (gw_hf_is_model_path(path)) return gw_hf_model_load(path, err, errlen);
    gguf_file *f = gguf_open(path, err, errlen);
    if (!f) return NULL;
    gw_model *m = calloc(1, sizeof *m);
    if (!m) {
        gguf_close(f);
        gw_set_err(err, errlen, "model: out of memory");
        return NULL;
    }
    m->file = f;
    const char *arch = gguf_get_str(f, "general.architecture");
    if (!arch) {
        gw_set_err(err, errlen, "model: %s has no general.architecture key", path);
        goto fail;
    }
    snprintf(m->arch_name, sizeof m->arch_name, "%s", arch);
    if (strcmp(arch, "llama") == 0) {
        m->arch = GW_ARCH_LLAMA;
        m->rope_style = GW_ROPE_NORM;
    } else if (strcmp(arch, "qwen2") == 0) {
        m->arch = GW_ARCH_QWEN2;
        m->rope_style = GW_ROPE_NEOX;
    } else {
        gw_set_err(err, errlen, "model: architecture '%s' is not supported (supported: llama, qwen2)", arch);
        goto fail;
    }
    const char *name = gguf_get_str(f, "general.name");
    snprintf(m->name, sizeof m->name, "%s", name ? name : "unnamed");

    uint32_t v;
#define REQUIRE_U32(field, suffix)                                                        \
    if (!arch_u32(f, arch, suffix, &v) || v == 0 || v > (1u << 24)) {                     \
        gw_set_err(err, errlen, "model: missing or invalid key %s.%s", arch, suffix);        \
        goto fail;                                                                        \
    }                                                                                     \
    m->field = (int)v;
    REQUIRE_U32(n_layer, "block_count");
    REQUIRE_U32(n_embd, "embedding_length");
    REQUIRE_U32(n_ff, "feed_forward_length");
    REQUIRE_U32(n_head, "attention.head_count");
#undef REQUIRE_U32
    m->n_head_kv = m->n_head;
    if (arch_u32(f, arch, "attention.head_count_kv", &v)) m->n_head_kv = (int)v;
    if (m->n_head_kv <= 0 || m->n_head % m->n_head_kv != 0) {
        gw_set_err(err, errlen, "model: head_count %d is not a multiple of head_count_kv %d", m->n_head,
                m->n_head_kv);
        goto fail;
    }
    m->head_dim = m->n_embd / m->n_head;
    if (arch_u32(f, arch, "attention.key_length", &v)) m->head_dim = (int)v;
    if (m->head_dim <= 0 || m->head_dim % 2 != 0 || m->head_dim > 1024) {
        gw_set_err(err, errlen, "model: invalid head dimension %d", m->head_dim);
        goto fail;
    }
    m->n_ctx_train = 4096;
    if (arch_u32(f, arch, "context_length", &v)) m->n_ctx_train = (int)v;
    m->norm_eps = 1e-5f;
    arch_f32(f, arch, "attention.layer_norm_rms_epsilon", &m->norm_eps);
    m->rope_theta = 10000.0f;
    arch_f32(f, arch, "rope.freq_base", &m->rope_theta);
    m->rope_dim = m->head_dim;
    if (arch_u32(f, arch, "rope.dimension_count", &v)) m->rope_dim = (int)v;
    if (m->rope_dim <= 0 || m->rope_dim > m->head_dim || m->rope_dim % 2) {
        gw_set_err(err, errlen, "model: invalid rope dimension count %d", m->rope_dim);
        goto fail;
    }
    m->rope_scale = 1.0f;
    {
        char key[128];
        snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
        const char *stype = gguf_get_str(f, key);
        float factor = 1.0f;
        arch_f32(f, arch, "rope.scaling.factor", &factor);
        if (stype && strcmp(stype, "linear") == 0 && factor > 0) {
            m->rope_scale = factor;
        } else if (stype && strcmp(stype, "none") != 0 && strcmp(stype, "linear") != 0) {
            gw_set_err(err, errlen, "model: rope scaling type '%s' is not supported", stype);
            goto fail;
        }
    }

    /* Token embedding: its row count is the vocabulary size. */
    const gguf_tensor *te = gguf_find_tensor(f, "token_embd.weight");
    if (!te) {
        gw_set_err(err, errlen, "model: missing tensor 'token_embd.weight'");
        goto fail;
    }
    m->n_vocab = (int)te->ne[1];
    if (!load_matrix(f, "token_embd.weight", m->n_vocab, m->n_embd, &m->tok_embd, false, err, errlen))
        goto fail;
    if (!(m->output_norm = load_vector(f, "output_norm.weight", m->n_embd, false, err, errlen))) goto fail;
    if (!load_matrix(f, "output.weight", m->n_vocab, m->n_embd, &m->output, true, err, errlen)) {
        if (gguf_find_tensor(f, "output.weight")) goto fail; /* present but wrong */
        m->output = m->tok_embd;                            /* tied embeddings */
    }
    if (gguf_find_tensor(f, "rope_freqs.weight")) {
        if (!(m->rope_freq_factors = load_vector(f, "rope_freqs.weight", m->rope_dim / 2, false, err, errlen)))
            goto fail;
    }

    m->layers = calloc((size_t)m->n_layer, sizeof(gw_layer));
    if (!m->layers) {
        gw_set_err(err, errlen, "model: out of memory");
        goto fail;
    }
    const int64_t q_dim = (int64_t)m->n_head * m->head_dim;
    const int64_t kv_dim = (int64_t)m->n_head_kv * m->head_dim;
    for (int i = 0; i < m->n_layer; i++) {
        gw_layer *L = &m->layers[i];
        char nm[96];
#define MAT(field, suffix, rows, cols)                                                  \
    snprintf(nm, sizeof nm, "blk.%d.%s.weight", i, suffix);                             \
    if (!load_matrix(f, nm, rows, cols, &L->field, false, err, errlen)) goto fail;
#define VEC(field, suffix, kind, n, optional)                                           \
    snprintf(nm, sizeof nm, "blk.%d.%s.%s", i, suffix, kind);                           \
    L->field = load_vector(f, nm, n, optional, err, errlen);                            \
    if (!L->field && (!(optional) || gguf_find_tensor(f, nm))) goto fail;
        VEC(attn_norm, "attn_norm", "weight", m->n_embd, false);
        MAT(wq, "attn_q", q_dim, m->n_embd);
        MAT(wk, "attn_k", kv_dim, m->n_embd);
        MAT(wv, "attn_v", kv_dim, m->n_embd);
        MAT(wo, "attn_output", m->n_embd, q_dim);
        VEC(bq, "attn_q", "bias", q_dim, true);
        VEC(bk, "attn_k", "bias", kv_dim, true);
        VEC(bv, "attn_v", "bias", kv_dim, true);
        VEC(ffn_norm, "ffn_norm", "weight", m->n_embd, false);
        MAT(w_gate, "ffn_gate", m->n_ff, m->n_embd);
        MAT(w_up, "ffn_up", m->n_ff, m->n_embd);
        MAT(w_down, "ffn_down", m->n_embd, m->n_ff);
#undef MAT
#undef VEC
    }

    m->tokenizer = gw_tokenizer_from_gguf(f, err, errlen);
    if (!m->tokenizer) goto fail;
    if (gw_tokenizer_n_vocab(m->tokenizer) != m->n_vocab) {
        gw_set_err(err, errlen, "model: tokenizer has %d tokens but the embedding has %d rows",
                gw_tokenizer_n_vocab(m->tokenizer), m->n_vocab);
        goto fail;
    }
    const char *tmpl = gguf_get_str(f, "tokenizer.chat_template");
    if (tmpl) m->chat_template = strdup(tmpl);
    return m;

fail:
    gw_model_free(m);
    return NULL;
}

void gw_model_free(gw_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int i = 0; i < m->n_layer; i++) {
            gw_layer *L = &m->layers[i];
            free(L->attn_norm);
            free(L->ffn_norm);
            free(L->bq);
            free(L->bk);
            free(L->bv);
        }
        free(m->layers);
    }
    free(m->output_norm);
    free(m->rope_freq_factors);
    free(m->chat_template);
    if (m->tokenizer) gw_tokenizer_free(m->tokenizer);
    gguf_close(m->file);
    st_checkpoint_close(m->st);
    free(m);
}

static size_t matrix_bytes(const gw_matrix *w) { return (size_t)w->rows * w->row_bytes; }

size_t gw_model_weight_bytes(const gw_model *m) {
    size_t total = matrix_bytes(&m->tok_embd);
    if (m->output.data != m->tok_embd.data) total += matrix_bytes(&m->output);
    for (int i = 0; i < m->n_layer; i++) {
        const gw_layer *L = &m->layers[i];
        total += matrix_bytes(&L->wq) + matrix_bytes(&L->wk) + matrix_bytes(&L->wv) +
                 matrix_bytes(&L->wo) + matrix_bytes(&L->w_gate) + matrix_bytes(&L->w_up) +
                 matrix_bytes(&L->w_down);
    }
    return total;
}
