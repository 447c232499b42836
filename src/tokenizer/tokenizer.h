/* Tokenizer: byte-level BPE (GPT-2 style, tokenizer.ggml.model = "gpt2") and
 * SentencePiece BPE (tokenizer.ggml.model = "llama"), special tokens,
 * detokenizer and chat templates.
 *
 * The token ids produced are meant to equal Hugging Face's for the same
 * vocabulary (tests/test_tokenizer.c checks this against goldens made by
 * scripts/make_tokenizer_golden.py with the `tokenizers` and `sentencepiece`
 * packages).
 *
 * Thread safety: a gw_tokenizer is immutable after construction; every
 * function below may be called concurrently on the same tokenizer. Nothing
 * is cached across calls.
 *
 * Invalid UTF-8 input: gw_tokenize first replaces each maximal ill-formed
 * subsequence by U+FFFD (the Unicode-recommended practice, which is also what
 * Python's bytes.decode("utf-8", "replace") does), then tokenizes that text.
 * So the ids equal Hugging Face's on the lossily decoded string, and
 * detokenizing gives that string back, not the original bytes. Embedded NUL
 * bytes are ordinary characters. A byte that the byte-level vocabulary has
 * no token for (SmolLM2 lacks a few control bytes such as 0x04 and 0x1D) is
 * dropped, as Hugging Face and llama.cpp do. */
#ifndef GODWIT_TOKENIZER_H
#define GODWIT_TOKENIZER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gguf_file;
typedef struct gw_tokenizer gw_tokenizer;

/* Token types, numbered as in GGUF's tokenizer.ggml.token_type. */
enum {
    GW_TOKEN_UNDEFINED = 0, GW_TOKEN_NORMAL = 1, GW_TOKEN_UNKNOWN = 2, GW_TOKEN_CONTROL = 3,
    GW_TOKEN_USER_DEFINED = 4, GW_TOKEN_UNUSED = 5, GW_TOKEN_BYTE = 6
};

/* Build from a GGUF file's metadata: tokenizer.ggml.model ("gpt2" = byte-level
 * BPE, "llama" = SentencePiece), tokenizer.ggml.pre (pre-tokenizer for gpt2:
 * "smollm", "qwen2", "llama-bpe", "gpt2"/"gpt-2", "default", and aliases),
 * tokens, token_type, merges, scores, bos/eos/eot/eom/unknown/padding ids,
 * add_bos_token, add_eos_token, add_space_prefix. Unknown model or pre type
 * -> NULL with a message naming it in err. */
gw_tokenizer *gw_tokenizer_from_gguf(const struct gguf_file *f, char *err, size_t errlen);

/* The same from plain arrays (what the GGUF adapter fills in; also usable for
 * other vocabulary sources and for tests). Ids are -1 when absent; the
 * tri-state flags are -1 for "model default" (as llama.cpp: SPM adds BOS and a
 * space prefix, BPE neither unless the pre-tokenizer says so). */
typedef struct {
    const char *model;              /* "gpt2" or "llama" */
    const char *pre;                /* NULL or "" -> "default" (gpt2 only) */
    int32_t n_tokens;
    const char *const *tokens;      /* n_tokens strings */
    const size_t *token_lens;       /* NULL: strlen of each */
    const int32_t *types;           /* NULL: all GW_TOKEN_NORMAL */
    const float *scores;            /* NULL: all 0 (needed for "llama") */
    int32_t n_merges;               /* gpt2: "left right" strings, by rank */
    const char *const *merges;
    int32_t bos, eos, eot, eom, unk, pad;
    int add_bos, add_eos, add_space_prefix;
} gw_tokenizer_params;
gw_tokenizer *gw_tokenizer_from_params(const gw_tokenizer_params *p, char *err, size_t errlen);

void gw_tokenizer_free(gw_tokenizer *t);
int32_t gw_tokenizer_n_vocab(const gw_tokenizer *t);
int32_t gw_tokenizer_bos(const gw_tokenizer *t);   /* -1 if none */
int32_t gw_tokenizer_eos(const gw_tokenizer *t);   /* -1 if none */
bool gw_tokenizer_add_bos(const gw_tokenizer *t);  /* tokenizer.ggml.add_bos_token (or model default) */
bool gw_tokenizer_add_eos(const gw_tokenizer *t);
int32_t gw_token_type(const gw_tokenizer *t, int32_t id); /* GW_TOKEN_*, -1 if out of range */

/* End-of-generation: eos, eot, eom, plus tokens named like <|im_end|>,
 * <|eot_id|>, <|endoftext|>, <end_of_turn>, </s>, <|end|> ... when present in
 * the vocabulary (llama.cpp's list, matched by name). */
bool gw_token_is_eog(const gw_tokenizer *t, int32_t id);

/* Tokenize len bytes (any bytes; invalid UTF-8 is handled as described at the
 * top). parse_special: text equal to a control or user-defined token, e.g.
 * "<|im_start|>", becomes that token; otherwise control tokens are tokenized
 * as plain text (user-defined tokens are always matched, as in Hugging Face
 * and llama.cpp). add_bos: prepend BOS if the model has one. Returns the
 * number of ids written to *ids (malloc'd, caller frees; non-NULL even when 0
 * ids) or -1 on error (out of memory). */
int64_t gw_tokenize(const gw_tokenizer *t, const char *text, size_t len, bool add_bos,
                    bool parse_special, int32_t **ids);

/* Bytes of one token as it appears in text (byte-level BPE: decoded through
 * the GPT-2 byte-to-unicode map; SPM: U+2581 -> ' ', <0xAB> byte tokens -> the
 * byte). Control and unknown tokens give "" unless render_special, then their
 * text. Writes min(cap, length) bytes (no NUL), returns the full length; 0 for
 * an id out of range. */
size_t gw_token_to_piece(const gw_tokenizer *t, int32_t id, bool render_special, char *buf, size_t cap);

/* Whole-sequence decode: the pieces concatenated; for SPM with a space prefix
 * the leading space of the first visible piece is removed (also after BOS), as
 * sentencepiece does. No clean-up of spaces before punctuation. Returns a
 * malloc'd NUL-terminated string, *len (may be NULL) set to its length; NULL
 * on out of memory. Ids out of range are skipped. */
char *gw_detokenize(const gw_tokenizer *t, const int32_t *ids, size_t n, bool render_special, size_t *len);

const char *gw_token_text(const gw_tokenizer *t, int32_t id); /* raw vocabulary string, NULL if out of range */
int32_t gw_token_lookup(const gw_tokenizer *t, const char *text); /* exact vocab entry or -1 */

/* ---- Chat templates ----
 * gw_chat_detect looks at the GGUF's tokenizer.chat_template string for the
 * markers of each format: ChatML (<|im_start|>, SmolLM2/Qwen2), Llama 3
 * (<|start_header_id|>), Llama 2 / Mistral ([INST]), Gemma (<start_of_turn>).
 *
 * gw_chat_render renders messages the way the known Jinja templates of that
 * format do, byte for byte (tests/test_chat_template.c compares with jinja2):
 *  - ChatML: "<|im_start|>role\ncontent<|im_end|>\n" per message. If the
 *    template contains a default system prompt (SmolLM2, Qwen2.5 put one in
 *    a "<|im_start|>system\n...<|im_end|>" literal) it is inserted when the
 *    first message is not a system one.
 *  - Llama 3: "<|begin_of_text|>" + per message
 *    "<|start_header_id|>role<|end_header_id|>\n\n" + trim(content) + "<|eot_id|>".
 *  - Llama 2: "<s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer </s>";
 *    Mistral-style templates (no <<SYS>> in them): "<s>[INST] user [/INST]answer</s>",
 *    a system message is prepended to the first user message with "\n\n".
 *  - Gemma: "<bos><start_of_turn>user\n...<end_of_turn>\n", assistant is
 *    "model", a system message is prepended to the first user turn with
 *    "\n\n" (as Gemma 3's template does).
 * The Llama 2/3 and Gemma renders start with the BOS text as their templates
 * do, so tokenize them with parse_special = true and add_bos = false.
 * template_str may be NULL (then no default system prompt). Returns a
 * malloc'd string, NULL for GW_CHAT_UNKNOWN or out of memory. */
typedef struct { const char *role; const char *content; } gw_chat_msg;
typedef enum { GW_CHAT_CHATML, GW_CHAT_LLAMA3, GW_CHAT_LLAMA2, GW_CHAT_GEMMA, GW_CHAT_UNKNOWN } gw_chat_format;
gw_chat_format gw_chat_detect(const char *template_str);
char *gw_chat_render(gw_chat_format fmt, const char *template_str, const gw_chat_msg *msgs, size_t n,
                     bool add_generation_prompt);

/* ---- Internal: shared by the .c files of src/tokenizer only ---- */
#ifdef GW_TOKENIZER_INTERNAL
#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

enum { GW_TOK_BPE, GW_TOK_SPM };
#define GW_MAX_REGEX 4

/* Open-addressing hash from byte strings to token ids. */
typedef struct {
    int32_t *slots;  /* token id or -1 */
    uint32_t mask;
} gw_strmap;

/* Open-addressing hash from a pair of token ids to (rank, merged id). */
typedef struct {
    uint64_t *keys;  /* (left << 32 | right) + 1, 0 = empty */
    int32_t *rank;
    int32_t *result;
    uint32_t mask;
} gw_mergemap;

struct gw_tokenizer {
    int kind;                    /* GW_TOK_BPE or GW_TOK_SPM */
    int32_t n_vocab;
    char *text_arena;            /* all raw token strings, NUL-separated */
    uint32_t *text_off, *text_len;
    int32_t *type;
    float *score;
    char *piece_arena;           /* decoded pieces (bytes as they appear in text) */
    uint32_t *piece_off, *piece_len;
    uint8_t *is_eog;
    gw_strmap vocab;             /* raw text -> id, all tokens */
    int32_t bos, eos, eot, eom, unk, pad;
    bool add_bos, add_eos, add_space_prefix;
    /* special-token matching: ids of control/unknown/user-defined tokens
     * bucketed by first byte, longest first within a bucket */
    int32_t *special_ids;
    uint32_t special_start[257];
    /* byte-level BPE */
    int32_t byte_token[256];     /* id of the single-byte token, -1 if absent */
    gw_mergemap merges;
    bool ignore_merges;          /* whole word in vocab -> one token (llama3) */
    int n_regex;
    pcre2_code *regex[GW_MAX_REGEX];
    char pre_name[32];
    /* SPM */
    int32_t byte_piece[256];     /* id of <0xXX>, -1 if absent */
    uint64_t *cp_pairs;          /* set of adjacent code point pairs in pieces */
    uint32_t cp_pairs_mask;
};

uint64_t gw_hash_bytes(const char *s, size_t n);
int32_t gw_strmap_get(const gw_tokenizer *t, const gw_strmap *m, const char *s, size_t n);

/* Growable id buffer used while tokenizing. */
typedef struct { int32_t *v; size_t n, cap; bool oom; } gw_idbuf;
void gw_idbuf_push(gw_idbuf *b, int32_t id);

/* bpe.c */
extern const char *const gw_bpe_pre_names[];
int gw_bpe_setup_pre(gw_tokenizer *t, const char *pre, char *err, size_t errlen);
/* GPT-2 byte<->unicode map: the code point standing for byte b, and the byte
 * a code point stands for (-1 if none). */
uint32_t gw_byte_to_cp(uint8_t b);
int gw_cp_to_byte(uint32_t cp);
/* Tokenize a fragment of valid UTF-8 with no special tokens in it. */
void gw_bpe_encode(const gw_tokenizer *t, const char *text, size_t len, gw_idbuf *out);

/* spm.c */
bool gw_spm_setup(gw_tokenizer *t);
void gw_spm_encode(const gw_tokenizer *t, const char *text, size_t len, bool space_prefix, gw_idbuf *out);
#endif
#endif
