/* Hugging Face model directories: config.json + safetensors weights (one
 * model.safetensors or shards listed by model.safetensors.index.json) +
 * a tokenizer, loaded into the same gw_model the GGUF path fills.
 *
 * Architectures: LlamaForCausalLM, MistralForCausalLM (arch "llama") and
 * Qwen2ForCausalLM ("qwen2"). config.json keys read: hidden_size,
 * intermediate_size, num_attention_heads, num_key_value_heads, head_dim,
 * num_hidden_layers, rms_norm_eps, rope_theta, rope_scaling (types "linear",
 * "llama3", "default"; transformers 5's rope_parameters too),
 * max_position_embeddings, vocab_size, tie_word_embeddings, hidden_act
 * (silu only), attention_bias / mlp_bias (llama: refused when true, as godwit
 * has no o_proj or MLP biases), sliding_window (Mistral, Qwen2 with
 * use_sliding_window: caps the trained context so attention stays exact).
 *
 * Weights stay mmapped in their stored dtype (BF16, F16 or F32, any mix);
 * norms and biases are converted to float at load. Hugging Face stores q_proj
 * and k_proj for rotate_half RoPE, so HF llama models use GW_ROPE_NEOX on the
 * weights as stored (llama GGUFs instead have Q/K rows permuted by the
 * converter and use GW_ROPE_NORM; both give the same logits).
 *
 * Tokenizer: DIR/tokenizer.gguf, a GGUF holding the tokenizer.* metadata of a
 * GGUF model (bench/mkmodel.py copies it from a real GGUF). Its
 * tokenizer.chat_template is used, else tokenizer_config.json's
 * "chat_template" string. The tokenizer may have fewer tokens than the
 * embedding has rows (HF pads vocab_size), never more. */
#ifndef GODWIT_HF_MODEL_H
#define GODWIT_HF_MODEL_H
#include <stdbool.h>
#include <stddef.h>

struct gw_model;

/* True when path names a Hugging Face model: a directory, or a file ending in
 * .safetensors, .safetensors.index.json or config.json; its directory must
 * hold config.json (gw_hf_model_load says so if not). A .safetensors file is
 * loaded alone unless the directory has model.safetensors.index.json (then it
 * is taken as one shard of that checkpoint). */
bool gw_hf_is_model_path(const char *path);
/* Loads it; NULL with a message in err. Freed by gw_model_free. */
struct gw_model *gw_hf_model_load(const char *path, char *err, size_t errlen);
#endif
