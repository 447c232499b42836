/* Hugging Face model directories: see hf_model.h. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "model/hf_model.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/tensor_types.h"
#include "backend/cpu/quant.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HF_MAX_JSON (64u << 20)

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

bool gw_hf_is_model_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return false;
    if (S_ISDIR(st.st_mode)) return true;
    return S_ISREG(st.st_mode) && (ends_with(path, ".safetensors") || ends_with(path, ".safetensors.index.json") ||
                                   ends_with(path, "config.json"));
}

static cJSON *read_json(const char *path, char *err, size_t errlen) {
    size_t len;
    char *text = gw_read_small_file("model", path, HF_MAX_JSON, &len, err, errlen);
    if (!text) return NULL;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!j || !cJSON_IsObject(j)) {
        size_t at = j || !end || end < text || end > text + len ? 0 : (size_t)(end - text);
        gw_set_err(err, errlen, "model: %s is not a valid JSON object (error at byte %zu)", path, at);
        cJSON_Delete(j);
        j = NULL;
    }
    free(text);
    return j;
}

/* ---- config.json values ---- */

static const cJSON *cfg_item(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* An integer in [1, 2^24] (the bounds the GGUF path uses); *out unchanged
 * when absent and not required. */
static bool cfg_int(const cJSON *cfg, const char *key, bool required, int *out, char *err, size_t errlen) {
    const cJSON *v = cfg_item(cfg, key);
    if (!v) {
        if (required) gw_set_err(err, errlen, "model: config.json has no %s", key);
        return !required;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (!(d >= 1 && d <= (double)(1 << 24)) || floor(d) != d) {
        gw_set_err(err, errlen, "model: config.json: %s is not an integer in [1, 2^24]", key);
        return false;
    }
    *out = (int)d;
    return true;
}

static bool cfg_float(const cJSON *cfg, const char *key, bool positive, float *out, char *err, size_t errlen) {
    const cJSON *v = cfg_item(cfg, key);
    if (!v) return true;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || (positive && !(v->valuedouble > 0))) {
        gw_set_err(err, errlen, "model: config.json: %s is not a %snumber", key, positive ? "positive " : "");
        return false;
    }
    *out = (float)v->valuedouble;
    return true;
}

static bool cfg_bool(const cJSON *cfg, const char *key, bool def) {
    const cJSON *v = cfg_item(cfg, key);
    return v && cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static const char *cfg_str(const cJSON *cfg, const char *key) {
    const cJSON *v = cfg_item(cfg, key);
    return v && cJSON_IsString(v) ? v->valuestring : NULL;
}

/* RoPE scaling: rope_scaling (transformers 4) or rope_parameters
 * (transformers 5, which also carries rope_theta). */
static bool read_rope(gw_model *m, const cJSON *cfg, char *err, size_t errlen) {
    m->rope_theta = 10000.0f;
    m->rope_scale = 1.0f;
    if (!cfg_float(cfg, "rope_theta", true, &m->rope_theta, err, errlen)) return false;
    const cJSON *rs = cfg_item(cfg, "rope_scaling");
    const cJSON *rp = cfg_item(cfg, "rope_parameters");
    if (rp && cJSON_IsObject(rp)) {
        if (!cfg_float(rp, "rope_theta", true, &m->rope_theta, err, errlen)) return false;
        if (!rs) rs = rp;
    }
    if (!rs) return true;
    if (!cJSON_IsObject(rs)) {
        gw_set_err(err, errlen, "model: config.json: rope_scaling is not an object");
        return false;
    }
    const char *type = cfg_str(rs, "rope_type");
    if (!type) type = cfg_str(rs, "type");
    if (!type || strcmp(type, "default") == 0) return true;
    float factor = 0;
    if (!cfg_float(rs, "factor", true, &factor, err, errlen)) return false;
    if (!(factor > 0)) {
        gw_set_err(err, errlen, "model: config.json: rope_scaling of type %s has no factor", type);
        return false;
    }
    if (strcmp(type, "linear") == 0) {
        m->rope_scale = factor;
        return true;
    }
    if (strcmp(type, "llama3") == 0) {
        float lo = 1.0f, hi = 4.0f, old_ctx = 8192.0f;
        if (!cfg_float(rs, "low_freq_factor", true, &lo, err, errlen) ||
            !cfg_float(rs, "high_freq_factor", true, &hi, err, errlen) ||
            !cfg_float(rs, "original_max_position_embeddings", true, &old_ctx, err, errlen))
            return false;
        if (!(hi > lo)) {
            gw_set_err(err, errlen, "model: config.json: rope_scaling high_freq_factor must exceed low_freq_factor");
            return false;
        }
        /* transformers' _compute_llama3_parameters, as divisors of the
         * frequencies (what llama.cpp's converter stores in rope_freqs) */
        const int half = m->rope_dim / 2;
        m->rope_freq_factors = malloc((size_t)half * sizeof(float));
        if (!m->rope_freq_factors) {
            gw_set_err(err, errlen, "model: out of memory");
            return false;
        }
        const double lo_wavelen = old_ctx / lo, hi_wavelen = old_ctx / hi;
        for (int i = 0; i < half; i++) {
            double freq = 1.0 / pow(m->rope_theta, (double)(2 * i) / m->rope_dim);
            double wavelen = 2 * M_PI / freq;
            double f;
            if (wavelen < hi_wavelen) f = 1.0;
            else if (wavelen > lo_wavelen) f = factor;
            else {
                double smooth = (old_ctx / wavelen - lo) / (hi - lo);
                f = 1.0 / ((1 - smooth) / factor + smooth);
            }
            m->rope_freq_factors[i] = (float)f;
        }
        return true;
    }
    gw_set_err(err, errlen, "model: rope scaling type '%s' is not supported (supported: linear, llama3)", type);
    return false;
}

/* ---- tensors ---- */

static bool load_matrix(const st_checkpoint *ck, const char *name, int64_t rows, int64_t cols, gw_matrix *out,
                        char *err, size_t errlen) {
    const st_tensor *t = st_checkpoint_find(ck, name);
    if (!t) {
        gw_set_err(err, errlen, "model: missing tensor '%s'", name);
        return false;
    }
    if (t->n_dims != 2 || t->shape[0] != rows || t->shape[1] != cols) {
        gw_set_err(err, errlen, "model: tensor '%s' has %d dimensions [%lld, %lld], expected [%lld, %lld]", name,
                   t->n_dims, (long long)t->shape[0], (long long)(t->n_dims > 1 ? t->shape[1] : 0),
                   (long long)rows, (long long)cols);
        return false;
    }
    if (!gw_matmul_supported(t->type)) {
        gw_set_err(err, errlen, "model: tensor '%s' has dtype %s, which godwit cannot compute with", name,
                   st_dtype_name(t->type));
        return false;
    }
    out->type = t->type;
    out->data = t->data;
    out->rows = rows;
    out->cols = cols;
    out->row_bytes = gw_row_bytes(t->type, cols);
    return true;
}

/* A 1-D tensor of n elements as a malloc'd float array; NULL (err set) when
 * missing or misshapen. */
static float *load_vector(const st_checkpoint *ck, const char *name, int64_t n, char *err, size_t errlen) {
    const st_tensor *t = st_checkpoint_find(ck, name);
    if (!t) {
        gw_set_err(err, errlen, "model: missing tensor '%s'", name);
        return NULL;
    }
    if (t->n_dims != 1 || t->shape[0] != n) {
        gw_set_err(err, errlen, "model: tensor '%s' has %d dimensions [%lld...], expected [%lld]", name, t->n_dims,
                   (long long)(t->n_dims ? t->shape[0] : 1), (long long)n);
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

/* ---- the loader ---- */

static bool read_config(gw_model *m, const cJSON *cfg, bool *tied, bool *qkv_bias, char *err, size_t errlen) {
    const char *arch = NULL;
    const cJSON *archs = cfg_item(cfg, "architectures");
    if (archs && cJSON_IsArray(archs) && cJSON_IsString(archs->child)) arch = archs->child->valuestring;
    const char *mt = cfg_str(cfg, "model_type");
    if (!arch) arch = mt ? mt : "(none)";
    if (strcmp(arch, "LlamaForCausalLM") == 0 || strcmp(arch, "MistralForCausalLM") == 0 ||
        strcmp(arch, "llama") == 0 || strcmp(arch, "mistral") == 0) {
        m->arch = GW_ARCH_LLAMA;
        snprintf(m->arch_name, sizeof m->arch_name, "llama");
        /* transformers' LlamaAttention takes rotate_half RoPE on the
         * weights as stored */
        m->rope_style = GW_ROPE_NEOX;
    } else if (strcmp(arch, "Qwen2ForCausalLM") == 0 || strcmp(arch, "qwen2") == 0) {
        m->arch = GW_ARCH_QWEN2;
        snprintf(m->arch_name, sizeof m->arch_name, "qwen2");
        m->rope_style = GW_ROPE_NEOX;
    } else {
        gw_set_err(err, errlen,
                   "model: architecture '%.64s' is not supported (supported: LlamaForCausalLM, "
                   "MistralForCausalLM, Qwen2ForCausalLM)", arch);
        return false;
    }
    const char *act = cfg_str(cfg, "hidden_act");
    if (act && strcmp(act, "silu") != 0) {
        gw_set_err(err, errlen, "model: hidden_act '%.32s' is not supported (only silu)", act);
        return false;
    }
    if (!cfg_int(cfg, "num_hidden_layers", true, &m->n_layer, err, errlen) ||
        !cfg_int(cfg, "hidden_size", true, &m->n_embd, err, errlen) ||
        !cfg_int(cfg, "intermediate_size", true, &m->n_ff, err, errlen) ||
        !cfg_int(cfg, "num_attention_heads", true, &m->n_head, err, errlen))
        return false;
    m->n_head_kv = m->n_head;
    if (!cfg_int(cfg, "num_key_value_heads", false, &m->n_head_kv, err, errlen)) return false;
    if (m->n_head % m->n_head_kv != 0) {
        gw_set_err(err, errlen, "model: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                   m->n_head, m->n_head_kv);
        return false;
    }
    m->head_dim = m->n_embd / m->n_head;
    if (!cfg_int(cfg, "head_dim", false, &m->head_dim, err, errlen)) return false;
    if (m->head_dim <= 0 || m->head_dim % 2 != 0 || m->head_dim > 1024) {
        gw_set_err(err, errlen, "model: invalid head dimension %d", m->head_dim);
        return false;
    }
    m->rope_dim = m->head_dim;
    m->n_ctx_train = 2048;
    if (!cfg_int(cfg, "max_position_embeddings", false, &m->n_ctx_train, err, errlen)) return false;
    /* sliding-window attention is not implemented: within the window it is
     * plain causal attention, so cap the context there */
    int window = 0;
    bool swa = m->arch == GW_ARCH_LLAMA || cfg_bool(cfg, "use_sliding_window", false);
    if (swa && cfg_item(cfg, "sliding_window")) {
        if (!cfg_int(cfg, "sliding_window", false, &window, err, errlen)) return false;
        if (window < m->n_ctx_train) m->n_ctx_train = window;
    }
    m->norm_eps = 1e-6f;
    if (!cfg_float(cfg, "rms_norm_eps", true, &m->norm_eps, err, errlen)) return false;
    if (!read_rope(m, cfg, err, errlen)) return false;
    *tied = cfg_bool(cfg, "tie_word_embeddings", false);
    *qkv_bias = m->arch == GW_ARCH_QWEN2;
    if (m->arch == GW_ARCH_LLAMA) {
        if (cfg_bool(cfg, "attention_bias", false)) {
            gw_set_err(err, errlen, "model: attention_bias = true is not supported for llama (no o_proj bias)");
            return false;
        }
        if (cfg_bool(cfg, "mlp_bias", false)) {
            gw_set_err(err, errlen, "model: mlp_bias = true is not supported");
            return false;
        }
    }
    const char *name = cfg_str(cfg, "_name_or_path");
    if (name && *name) snprintf(m->name, sizeof m->name, "%.127s", name);
    return true;
}

/* Tensors the architecture does not have must not be silently ignored. */
static bool refuse_extra(const st_checkpoint *ck, int layer, char *err, size_t errlen) {
    static const char *const extra[] = {"self_attn.o_proj.bias", "mlp.gate_proj.bias", "mlp.up_proj.bias",
                                        "mlp.down_proj.bias", NULL};
    char nm[128];
    for (int k = 0; extra[k]; k++) {
        snprintf(nm, sizeof nm, "model.layers.%d.%s", layer, extra[k]);
        if (st_checkpoint_find(ck, nm)) {
            gw_set_err(err, errlen, "model: tensor '%s' is not supported (no such bias in godwit's model)", nm);
            return false;
        }
    }
    return true;
}

gw_model *gw_hf_model_load(const char *path, char *err, size_t errlen) {
    char dir[4096];
    struct stat st;
    if (stat(path, &st) != 0) {
        gw_set_err(err, errlen, "model: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(dir, sizeof dir, "%s", path);
    } else {
        const char *slash = strrchr(path, '/');
        if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path) + (slash == path), path);
        else snprintf(dir, sizeof dir, ".");
    }
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (access(p, F_OK) != 0) {
        gw_set_err(err, errlen, "model: %s has no config.json (a Hugging Face model needs one)", dir);
        return NULL;
    }
    cJSON *cfg = read_json(p, err, errlen);
    if (!cfg) return NULL;
    gw_model *m = calloc(1, sizeof *m);
    if (!m) {
        cJSON_Delete(cfg);
        gw_set_err(err, errlen, "model: out of memory");
        return NULL;
    }
    {
        const char *base = strrchr(dir, '/');
        snprintf(m->name, sizeof m->name, "%.127s", base && base[1] ? base + 1 : dir);
    }
    bool tied = false, qkv_bias = false;
    bool ok = read_config(m, cfg, &tied, &qkv_bias, err, errlen);
    int cfg_vocab = 0;
    if (ok) ok = cfg_int(cfg, "vocab_size", false, &cfg_vocab, err, errlen);
    cJSON_Delete(cfg);
    if (!ok) goto fail;

    /* the weights: a .safetensors or index file as given, except that one
     * shard of an indexed checkpoint stands for the whole; else the directory */
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    bool whole = S_ISDIR(st.st_mode) || ends_with(path, "config.json") ||
                 (ends_with(path, ".safetensors") && access(p, F_OK) == 0);
    m->st = st_checkpoint_open(whole ? dir : path, err, errlen);
    if (!m->st) goto fail;

    const st_tensor *te = st_checkpoint_find(m->st, "model.embed_tokens.weight");
    if (!te) {
        gw_set_err(err, errlen, "model: missing tensor 'model.embed_tokens.weight'");
        goto fail;
    }
    if (te->n_dims != 2 || te->shape[0] < 1 || te->shape[0] > (1 << 24)) {
        gw_set_err(err, errlen, "model: model.embed_tokens.weight is not a [vocab, hidden] matrix");
        goto fail;
    }
    m->n_vocab = (int)te->shape[0];
    if (cfg_vocab && cfg_vocab != m->n_vocab) {
        gw_set_err(err, errlen, "model: config.json says vocab_size %d but model.embed_tokens.weight has %d rows",
                   cfg_vocab, m->n_vocab);
        goto fail;
    }
    if (!load_matrix(m->st, "model.embed_tokens.weight", m->n_vocab, m->n_embd, &m->tok_embd, err, errlen))
        goto fail;
    if (!(m->output_norm = load_vector(m->st, "model.norm.weight", m->n_embd, err, errlen))) goto fail;
    if (tied) {
        m->output = m->tok_embd;
    } else if (!load_matrix(m->st, "lm_head.weight", m->n_vocab, m->n_embd, &m->output, err, errlen)) {
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
        char nm[128];
#define MAT(field, suffix, rows, cols)                                                   \
    snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", i, suffix);                     \
    if (!load_matrix(m->st, nm, rows, cols, &L->field, err, errlen)) goto fail;
#define VEC(field, suffix, kind, n)                                                      \
    snprintf(nm, sizeof nm, "model.layers.%d.%s.%s", i, suffix, kind);                   \
    if (!(L->field = load_vector(m->st, nm, n, err, errlen))) goto fail;
        VEC(attn_norm, "input_layernorm", "weight", m->n_embd);
        MAT(wq, "self_attn.q_proj", q_dim, m->n_embd);
        MAT(wk, "self_attn.k_proj", kv_dim, m->n_embd);
        MAT(wv, "self_attn.v_proj", kv_dim, m->n_embd);
        MAT(wo, "self_attn.o_proj", m->n_embd, q_dim);
        if (qkv_bias) {
            VEC(bq, "self_attn.q_proj", "bias", q_dim);
            VEC(bk, "self_attn.k_proj", "bias", kv_dim);
            VEC(bv, "self_attn.v_proj", "bias", kv_dim);
        } else {
            static const char *const b[] = {"self_attn.q_proj.bias", "self_attn.k_proj.bias",
                                            "self_attn.v_proj.bias"};
            for (int k = 0; k < 3; k++) {
                snprintf(nm, sizeof nm, "model.layers.%d.%s", i, b[k]);
                if (st_checkpoint_find(m->st, nm)) {
                    gw_set_err(err, errlen, "model: tensor '%s' is present but config.json does not enable "
                               "attention biases", nm);
                    goto fail;
                }
            }
        }
        VEC(ffn_norm, "post_attention_layernorm", "weight", m->n_embd);
        MAT(w_gate, "mlp.gate_proj", m->n_ff, m->n_embd);
        MAT(w_up, "mlp.up_proj", m->n_ff, m->n_embd);
        MAT(w_down, "mlp.down_proj", m->n_embd, m->n_ff);
        if (!refuse_extra(m->st, i, err, errlen)) goto fail;
#undef MAT
#undef VEC
    }

    /* tokenizer */
    snprintf(p, sizeof p, "%s/tokenizer.gguf", dir);
    if (access(p, F_OK) != 0) {
        gw_set_err(err, errlen, "model: %s has no tokenizer.gguf (bench/mkmodel.py --tokenizer-from writes one; "
                   "tokenizer.json is not supported yet)", dir);
        goto fail;
    }
    m->file = gguf_open(p, err, errlen);
    if (!m->file) goto fail;
    m->tokenizer = gw_tokenizer_from_gguf(m->file, err, errlen);
    if (!m->tokenizer) goto fail;
    if (gw_tokenizer_n_vocab(m->tokenizer) > m->n_vocab) {
        gw_set_err(err, errlen, "model: tokenizer has %d tokens but the embedding only %d rows",
                   gw_tokenizer_n_vocab(m->tokenizer), m->n_vocab);
        goto fail;
    }
    const char *tmpl = gguf_get_str(m->file, "tokenizer.chat_template");
    if (tmpl) {
        m->chat_template = strdup(tmpl);
    } else {
        snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
        if (access(p, F_OK) == 0) {
            cJSON *tc = read_json(p, err, errlen);
            if (!tc) goto fail;
            const char *s = cfg_str(tc, "chat_template");
            if (s) m->chat_template = strdup(s);
            cJSON_Delete(tc);
        }
    }
    return m;

fail:
    gw_model_free(m);
    return NULL;
}
