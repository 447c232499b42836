/* Tokenizer core: the vocabulary, special tokens, the GGUF adapter, the
 * tokenize/detokenize entry points. The two model-specific merge loops live
 * in bpe.c (byte-level BPE with a PCRE2 pre-tokenizer) and spm.c
 * (SentencePiece BPE). */
#define GW_TOKENIZER_INTERNAL
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"

static void set_err(char *err, size_t errlen, const char *fmt, const char *arg) {
    if (err && errlen) snprintf(err, errlen, fmt, arg ? arg : "");
}

/* ---- hashing ---- */

uint64_t gw_hash_bytes(const char *s, size_t n) {
    /* FNV-1a: simple, and good enough for vocabulary strings. */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint32_t table_size_for(uint32_t n) {
    uint32_t cap = 16;
    while (cap < n * 2 + 16) cap <<= 1; /* load factor <= 1/2 */
    return cap;
}

static bool strmap_init(gw_strmap *m, uint32_t n) {
    uint32_t cap = table_size_for(n);
    m->slots = malloc(sizeof(int32_t) * cap);
    if (!m->slots) return false;
    memset(m->slots, 0xff, sizeof(int32_t) * cap);
    m->mask = cap - 1;
    return true;
}

static const char *tok_text(const gw_tokenizer *t, int32_t id) { return t->text_arena + t->text_off[id]; }

int32_t gw_strmap_get(const gw_tokenizer *t, const gw_strmap *m, const char *s, size_t n) {
    uint32_t i = (uint32_t)gw_hash_bytes(s, n) & m->mask;
    for (;;) {
        int32_t id = m->slots[i];
        if (id < 0) return -1;
        if (t->text_len[id] == n && memcmp(tok_text(t, id), s, n) == 0) return id;
        i = (i + 1) & m->mask;
    }
}

/* Inserts id unless an equal string is already there (then the lower id,
 * inserted first, wins: duplicates should not occur in a valid vocabulary). */
static void strmap_put(gw_tokenizer *t, gw_strmap *m, int32_t id) {
    const char *s = tok_text(t, id);
    size_t n = t->text_len[id];
    uint32_t i = (uint32_t)gw_hash_bytes(s, n) & m->mask;
    for (;;) {
        int32_t cur = m->slots[i];
        if (cur < 0) { m->slots[i] = id; return; }
        if (t->text_len[cur] == n && memcmp(tok_text(t, cur), s, n) == 0) return;
        i = (i + 1) & m->mask;
    }
}

void gw_idbuf_push(gw_idbuf *b, int32_t id) {
    if (b->oom) return;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        int32_t *v = realloc(b->v, cap * sizeof(int32_t));
        if (!v) { b->oom = true; return; }
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = id;
}

/* ---- UTF-8 ---- */

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 if the bytes
 * there are ill-formed; *sub gets the length of the maximal subpart to replace
 * by one U+FFFD (at least 1). Follows the Unicode standard's table of
 * well-formed byte sequences (no surrogates, no overlongs, <= U+10FFFF). */
static int utf8_seq(const uint8_t *s, size_t n, int *sub) {
    uint8_t c = s[0];
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    *sub = 1;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n) return 0;
        uint8_t b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
        *sub = k + 1;
    }
    return need + 1;
}

/* Returns text itself when it is valid UTF-8, else a malloc'd copy with the
 * ill-formed parts replaced (*owned set). NULL on out of memory. */
static const char *utf8_sanitize(const char *text, size_t len, size_t *out_len, char **owned) {
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    int sub;
    *owned = NULL;
    *out_len = len;
    while (i < len) {
        if (s[i] < 0x80) { i++; continue; }
        int k = utf8_seq(s + i, len - i, &sub);
        if (!k) break;
        i += (size_t)k;
    }
    if (i == len) return text;
    /* each replaced byte grows to at most 3 bytes */
    char *out = malloc(len * 3 + 1);
    if (!out) return NULL;
    memcpy(out, text, i);
    size_t o = i;
    while (i < len) {
        int k = utf8_seq(s + i, len - i, &sub);
        if (k) {
            memcpy(out + o, s + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += (size_t)sub;
        }
    }
    *owned = out;
    *out_len = o;
    return out;
}

/* ---- construction ---- */

/* Tokens that end generation, by name (llama.cpp's list). */
static const char *const eog_names[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>",
    "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
    NULL
};

static bool is_special_type(int32_t ty) {
    return ty == GW_TOKEN_CONTROL || ty == GW_TOKEN_USER_DEFINED || ty == GW_TOKEN_UNKNOWN;
}

/* Decoded piece of a token, written to out (cap >= 4 * text length); returns
 * its length. */
static size_t decode_piece(const gw_tokenizer *t, int32_t id, char *out) {
    const char *s = tok_text(t, id);
    size_t n = t->text_len[id];
    int32_t ty = t->type[id];
    if (ty == GW_TOKEN_BYTE && n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>') {
        /* <0xAB>: the byte itself (SPM byte fallback) */
        unsigned v = 0;
        for (int k = 3; k < 5; k++) {
            char c = s[k];
            v = v * 16 + (unsigned)(c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                    : c >= 'a' && c <= 'f' ? c - 'a' + 10 : 0);
        }
        out[0] = (char)v;
        return 1;
    }
    if (ty == GW_TOKEN_CONTROL || ty == GW_TOKEN_USER_DEFINED || ty == GW_TOKEN_UNKNOWN) {
        memcpy(out, s, n);
        return n;
    }
    size_t o = 0;
    if (t->kind == GW_TOK_SPM) {
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) { out[o++] = ' '; i += 3; }
            else out[o++] = s[i++];
        }
        return o;
    }
    /* byte-level BPE: every code point stands for one byte; a code point
     * outside the map (never in a proper vocabulary) is copied as is */
    for (size_t i = 0; i < n;) {
        const uint8_t *u = (const uint8_t *)s + i;
        int sub, k = utf8_seq(u, n - i, &sub);
        if (!k) { out[o++] = s[i++]; continue; }
        uint32_t cp = k == 1 ? u[0] : k == 2 ? ((u[0] & 0x1Fu) << 6) | (u[1] & 0x3Fu)
                    : k == 3 ? ((u[0] & 0x0Fu) << 12) | ((u[1] & 0x3Fu) << 6) | (u[2] & 0x3Fu)
                    : ((u[0] & 0x07u) << 18) | ((u[1] & 0x3Fu) << 12) | ((u[2] & 0x3Fu) << 6) | (u[3] & 0x3Fu);
        int b = gw_cp_to_byte(cp);
        if (b >= 0) out[o++] = (char)b;
        else { memcpy(out + o, u, (size_t)k); o += (size_t)k; }
        i += (size_t)k;
    }
    return o;
}

static bool build_merges(gw_tokenizer *t, int32_t n_merges, const char *const *merges) {
    uint32_t cap = table_size_for((uint32_t)(n_merges > 0 ? n_merges : 0));
    gw_mergemap *m = &t->merges;
    m->keys = calloc(cap, sizeof(uint64_t));
    m->rank = malloc(cap * sizeof(int32_t));
    m->result = malloc(cap * sizeof(int32_t));
    if (!m->keys || !m->rank || !m->result) return false;
    m->mask = cap - 1;
    size_t bufcap = 256;
    char *buf = malloc(bufcap);
    if (!buf) return false;
    for (int32_t r = 0; r < n_merges; r++) {
        const char *s = merges[r];
        if (!s) continue;
        size_t n = strlen(s);
        /* "left right": split at the first space after position 0 (a token
         * never contains a raw space in byte-level BPE, but as llama.cpp we
         * allow the left part to start with one) */
        const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
        if (!sp) continue;
        size_t nl = (size_t)(sp - s), nr = n - nl - 1;
        int32_t l = gw_strmap_get(t, &t->vocab, s, nl);
        int32_t rr = gw_strmap_get(t, &t->vocab, sp + 1, nr);
        if (nl + nr > bufcap) {
            bufcap = nl + nr;
            char *nb = realloc(buf, bufcap);
            if (!nb) { free(buf); return false; }
            buf = nb;
        }
        memcpy(buf, s, nl);
        memcpy(buf + nl, sp + 1, nr);
        int32_t res = gw_strmap_get(t, &t->vocab, buf, nl + nr);
        /* Hugging Face refuses merges whose parts or result are not in the
         * vocabulary; skipping them here gives the same tokens */
        if (l < 0 || rr < 0 || res < 0) continue;
        uint64_t key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)rr) + 1;
        uint32_t i = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & m->mask;
        while (m->keys[i] && m->keys[i] != key) i = (i + 1) & m->mask;
        if (m->keys[i]) continue; /* duplicate merge: the first (lowest rank) wins */
        m->keys[i] = key;
        m->rank[i] = r;
        m->result[i] = res;
    }
    free(buf);
    return true;
}

gw_tokenizer *gw_tokenizer_from_params(const gw_tokenizer_params *p, char *err, size_t errlen) {
    if (!p || !p->model) { set_err(err, errlen, "tokenizer: no model type%s", ""); return NULL; }
    int kind;
    if (strcmp(p->model, "gpt2") == 0) kind = GW_TOK_BPE;
    else if (strcmp(p->model, "llama") == 0) kind = GW_TOK_SPM;
    else { set_err(err, errlen, "tokenizer: unknown tokenizer model '%s'", p->model); return NULL; }
    if (p->n_tokens <= 0 || !p->tokens) { set_err(err, errlen, "tokenizer: empty vocabulary%s", ""); return NULL; }

    gw_tokenizer *t = calloc(1, sizeof *t);
    if (!t) { set_err(err, errlen, "tokenizer: out of memory%s", ""); return NULL; }
    t->kind = kind;
    int32_t n = p->n_tokens;
    t->n_vocab = n;
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t len = p->tokens[i] ? (p->token_lens ? p->token_lens[i] : strlen(p->tokens[i])) : 0;
        if (len > 0xFFFFFFu) { set_err(err, errlen, "tokenizer: token too long%s", ""); gw_tokenizer_free(t); return NULL; }
        total += len + 1;
    }
    if (total > 0xFFFFFFFFu / 4) { set_err(err, errlen, "tokenizer: vocabulary too large%s", ""); gw_tokenizer_free(t); return NULL; }
    t->text_arena = malloc(total);
    t->text_off = malloc(sizeof(uint32_t) * (size_t)n);
    t->text_len = malloc(sizeof(uint32_t) * (size_t)n);
    t->type = malloc(sizeof(int32_t) * (size_t)n);
    t->score = malloc(sizeof(float) * (size_t)n);
    t->is_eog = calloc((size_t)n, 1);
    t->piece_off = malloc(sizeof(uint32_t) * (size_t)n);
    t->piece_len = malloc(sizeof(uint32_t) * (size_t)n);
    t->piece_arena = malloc(total * 4 + 1);
    if (!t->text_arena || !t->text_off || !t->text_len || !t->type || !t->score ||
        !t->is_eog || !t->piece_off || !t->piece_len || !t->piece_arena || !strmap_init(&t->vocab, (uint32_t)n)) {
        set_err(err, errlen, "tokenizer: out of memory%s", "");
        gw_tokenizer_free(t);
        return NULL;
    }
    size_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t len = p->tokens[i] ? (p->token_lens ? p->token_lens[i] : strlen(p->tokens[i])) : 0;
        if (len) memcpy(t->text_arena + off, p->tokens[i], len);
        t->text_arena[off + len] = 0;
        t->text_off[i] = (uint32_t)off;
        t->text_len[i] = (uint32_t)len;
        off += len + 1;
        int32_t ty = p->types ? p->types[i] : GW_TOKEN_NORMAL;
        t->type[i] = (ty >= GW_TOKEN_UNDEFINED && ty <= GW_TOKEN_BYTE) ? ty : GW_TOKEN_UNDEFINED;
        t->score[i] = p->scores ? p->scores[i] : 0.0f;
        if (len) strmap_put(t, &t->vocab, i);
    }

    /* special ids: keep those in range */
    int32_t ids[6] = {p->bos, p->eos, p->eot, p->eom, p->unk, p->pad};
    for (int k = 0; k < 6; k++)
        if (ids[k] < 0 || ids[k] >= n) ids[k] = -1;
    t->bos = ids[0]; t->eos = ids[1]; t->eot = ids[2]; t->eom = ids[3]; t->unk = ids[4]; t->pad = ids[5];

    bool def_add_bos = kind == GW_TOK_SPM;
    if (kind == GW_TOK_BPE) {
        const char *pre = p->pre && p->pre[0] ? p->pre : "default";
        int r = gw_bpe_setup_pre(t, pre, err, errlen);
        if (r < 0) { gw_tokenizer_free(t); return NULL; }
        if (r == 1) def_add_bos = true; /* llama3 family: llama.cpp's default */
        for (int b = 0; b < 256; b++) {
            char u[4];
            uint32_t cp = gw_byte_to_cp((uint8_t)b);
            size_t k = cp < 0x80 ? (u[0] = (char)cp, 1) : (u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F)), 2);
            t->byte_token[b] = gw_strmap_get(t, &t->vocab, u, k);
        }
        if (!build_merges(t, p->merges ? p->n_merges : 0, p->merges)) {
            set_err(err, errlen, "tokenizer: out of memory%s", "");
            gw_tokenizer_free(t);
            return NULL;
        }
        t->add_space_prefix = false;
    } else {
        for (int b = 0; b < 256; b++) {
            char hex[8];
            snprintf(hex, sizeof hex, "<0x%02X>", b);
            int32_t id = gw_strmap_get(t, &t->vocab, hex, 6);
            t->byte_piece[b] = (id >= 0 && t->type[id] == GW_TOKEN_BYTE) ? id : -1;
        }
        t->add_space_prefix = p->add_space_prefix < 0 ? true : p->add_space_prefix != 0;
        snprintf(t->pre_name, sizeof t->pre_name, "spm");
        if (!gw_spm_setup(t)) {
            set_err(err, errlen, "tokenizer: out of memory%s", "");
            gw_tokenizer_free(t);
            return NULL;
        }
    }
    t->add_bos = p->add_bos < 0 ? def_add_bos : p->add_bos != 0;
    t->add_eos = p->add_eos < 0 ? false : p->add_eos != 0;
    if (t->add_bos && t->bos < 0) t->add_bos = false;
    if (t->add_eos && t->eos < 0) t->add_eos = false;

    /* decoded pieces */
    off = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t len = decode_piece(t, i, t->piece_arena + off);
        t->piece_off[i] = (uint32_t)off;
        t->piece_len[i] = (uint32_t)len;
        off += len;
    }

    /* special tokens, bucketed by first byte, longest first: at a given
     * position the first match in the bucket is the longest one, which gives
     * Hugging Face's leftmost-longest matching of added tokens */
    uint32_t count[256] = {0};
    uint32_t n_special = 0;
    for (int32_t i = 0; i < n; i++)
        if (is_special_type(t->type[i]) && t->text_len[i] > 0) { count[(uint8_t)tok_text(t, i)[0]]++; n_special++; }
    t->special_ids = malloc(sizeof(int32_t) * (n_special ? n_special : 1));
    if (!t->special_ids) { set_err(err, errlen, "tokenizer: out of memory%s", ""); gw_tokenizer_free(t); return NULL; }
    t->special_start[0] = 0;
    for (int c = 0; c < 256; c++) t->special_start[c + 1] = t->special_start[c] + count[c];
    uint32_t fill[256];
    memcpy(fill, t->special_start, sizeof fill);
    for (int32_t i = 0; i < n; i++)
        if (is_special_type(t->type[i]) && t->text_len[i] > 0) t->special_ids[fill[(uint8_t)tok_text(t, i)[0]]++] = i;
    for (int c = 0; c < 256; c++) {
        /* insertion sort by length, descending; stable so lower ids first */
        int32_t *v = t->special_ids + t->special_start[c];
        uint32_t m = t->special_start[c + 1] - t->special_start[c];
        for (uint32_t a = 1; a < m; a++) {
            int32_t x = v[a];
            uint32_t b = a;
            while (b > 0 && t->text_len[v[b - 1]] < t->text_len[x]) { v[b] = v[b - 1]; b--; }
            v[b] = x;
        }
    }

    /* end of generation */
    for (int k = 0; eog_names[k]; k++) {
        int32_t id = gw_strmap_get(t, &t->vocab, eog_names[k], strlen(eog_names[k]));
        if (id >= 0) t->is_eog[id] = 1;
    }
    if (t->eos >= 0) t->is_eog[t->eos] = 1;
    if (t->eot >= 0) t->is_eog[t->eot] = 1;
    if (t->eom >= 0) t->is_eog[t->eom] = 1;
    return t;
}

void gw_tokenizer_free(gw_tokenizer *t) {
    if (!t) return;
    free(t->text_arena); free(t->text_off); free(t->text_len); free(t->type); free(t->score);
    free(t->piece_arena); free(t->piece_off); free(t->piece_len); free(t->is_eog);
    free(t->vocab.slots);
    free(t->special_ids);
    free(t->merges.keys); free(t->merges.rank); free(t->merges.result);
    free(t->cp_pairs);
    for (int i = 0; i < t->n_regex; i++) pcre2_code_free(t->regex[i]);
    free(t);
}

/* ---- GGUF adapter ---- */

static int32_t gguf_id(const gguf_file *f, const char *key, int32_t def) {
    int64_t v;
    if (gguf_get_i64(f, key, &v) && v >= 0 && v <= INT32_MAX) return (int32_t)v;
    return def;
}

static int gguf_flag(const gguf_file *f, const char *key) {
    bool b;
    return gguf_get_bool(f, key, &b) ? (int)b : -1;
}

gw_tokenizer *gw_tokenizer_from_gguf(const struct gguf_file *f, char *err, size_t errlen) {
    const char *model = gguf_get_str(f, "tokenizer.ggml.model");
    if (!model) { set_err(err, errlen, "tokenizer: tokenizer.ggml.model missing%s", ""); return NULL; }
    if (strcmp(model, "gpt2") != 0 && strcmp(model, "llama") != 0) {
        set_err(err, errlen, "tokenizer: unknown tokenizer model '%s'", model);
        return NULL;
    }
    gguf_vtype et;
    uint64_t n = 0;
    if (!gguf_get_arr_info(f, "tokenizer.ggml.tokens", &et, &n) || et != GGUF_VT_STRING || n == 0 || n > INT32_MAX) {
        set_err(err, errlen, "tokenizer: tokenizer.ggml.tokens missing or not a string array%s", "");
        return NULL;
    }
    gw_tokenizer_params p;
    memset(&p, 0, sizeof p);
    p.model = model;
    p.pre = gguf_get_str(f, "tokenizer.ggml.pre");
    p.n_tokens = (int32_t)n;
    const char **tokens = calloc(n, sizeof(char *));
    size_t *lens = calloc(n, sizeof(size_t));
    int32_t *types = NULL;
    float *scores = NULL;
    const char **merges = NULL;
    gw_tokenizer *t = NULL;
    if (!tokens || !lens) { set_err(err, errlen, "tokenizer: out of memory%s", ""); goto done; }
    for (uint64_t i = 0; i < n; i++) {
        tokens[i] = gguf_get_arr_str(f, "tokenizer.ggml.tokens", i, &lens[i]);
        if (!tokens[i]) { set_err(err, errlen, "tokenizer: bad token string%s", ""); goto done; }
    }
    p.tokens = tokens;
    p.token_lens = lens;
    uint64_t m = 0;
    if (gguf_get_arr_info(f, "tokenizer.ggml.token_type", &et, &m)) {
        if (m < n) { set_err(err, errlen, "tokenizer: token_type shorter than tokens%s", ""); goto done; }
        types = malloc(sizeof(int32_t) * n);
        if (!types) { set_err(err, errlen, "tokenizer: out of memory%s", ""); goto done; }
        for (uint64_t i = 0; i < n; i++)
            if (!gguf_get_arr_i32(f, "tokenizer.ggml.token_type", i, &types[i])) types[i] = GW_TOKEN_UNDEFINED;
        p.types = types;
    }
    if (gguf_get_arr_info(f, "tokenizer.ggml.scores", &et, &m)) {
        if (m < n) { set_err(err, errlen, "tokenizer: scores shorter than tokens%s", ""); goto done; }
        scores = malloc(sizeof(float) * n);
        if (!scores) { set_err(err, errlen, "tokenizer: out of memory%s", ""); goto done; }
        for (uint64_t i = 0; i < n; i++)
            if (!gguf_get_arr_f32(f, "tokenizer.ggml.scores", i, &scores[i])) scores[i] = 0.0f;
        p.scores = scores;
    }
    if (strcmp(model, "gpt2") == 0) {
        if (!gguf_get_arr_info(f, "tokenizer.ggml.merges", &et, &m) || et != GGUF_VT_STRING || m > INT32_MAX) {
            set_err(err, errlen, "tokenizer: tokenizer.ggml.merges missing%s", "");
            goto done;
        }
        merges = calloc(m ? m : 1, sizeof(char *));
        if (!merges) { set_err(err, errlen, "tokenizer: out of memory%s", ""); goto done; }
        for (uint64_t i = 0; i < m; i++) {
            size_t len;
            merges[i] = gguf_get_arr_str(f, "tokenizer.ggml.merges", i, &len);
        }
        p.merges = merges;
        p.n_merges = (int32_t)m;
    }
    /* llama.cpp's defaults when the keys are absent: SPM has <unk>=0, <s>=1, </s>=2 */
    bool spm = strcmp(model, "llama") == 0;
    p.bos = gguf_id(f, "tokenizer.ggml.bos_token_id", spm ? 1 : -1);
    p.eos = gguf_id(f, "tokenizer.ggml.eos_token_id", spm ? 2 : -1);
    p.unk = gguf_id(f, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1);
    p.eot = gguf_id(f, "tokenizer.ggml.eot_token_id", -1);
    p.eom = gguf_id(f, "tokenizer.ggml.eom_token_id", -1);
    p.pad = gguf_id(f, "tokenizer.ggml.padding_token_id", -1);
    p.add_bos = gguf_flag(f, "tokenizer.ggml.add_bos_token");
    p.add_eos = gguf_flag(f, "tokenizer.ggml.add_eos_token");
    p.add_space_prefix = gguf_flag(f, "tokenizer.ggml.add_space_prefix");
    t = gw_tokenizer_from_params(&p, err, errlen);
done:
    free(tokens);
    free(lens);
    free(types);
    free(scores);
    free(merges);
    return t;
}

/* ---- queries ---- */

int32_t gw_tokenizer_n_vocab(const gw_tokenizer *t) { return t->n_vocab; }
int32_t gw_tokenizer_bos(const gw_tokenizer *t) { return t->bos; }
int32_t gw_tokenizer_eos(const gw_tokenizer *t) { return t->eos; }
bool gw_tokenizer_add_bos(const gw_tokenizer *t) { return t->add_bos; }
bool gw_tokenizer_add_eos(const gw_tokenizer *t) { return t->add_eos; }

int32_t gw_token_type(const gw_tokenizer *t, int32_t id) {
    return (id >= 0 && id < t->n_vocab) ? t->type[id] : -1;
}

bool gw_token_is_eog(const gw_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->is_eog[id];
}

const char *gw_token_text(const gw_tokenizer *t, int32_t id) {
    return (id >= 0 && id < t->n_vocab) ? tok_text(t, id) : NULL;
}

int32_t gw_token_lookup(const gw_tokenizer *t, const char *text) {
    if (!text || !text[0]) return -1;
    return gw_strmap_get(t, &t->vocab, text, strlen(text));
}

/* ---- tokenize ---- */

/* Finds the leftmost-longest special token in s[from, len); returns its
 * position (len if none) and the id in *id. */
static size_t find_special(const gw_tokenizer *t, const char *s, size_t from, size_t len, bool parse_special,
                           int32_t *id) {
    for (size_t i = from; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        uint32_t a = t->special_start[c], b = t->special_start[c + 1];
        for (uint32_t k = a; k < b; k++) {
            int32_t sid = t->special_ids[k];
            /* without parse_special only user-defined tokens are matched
             * (Hugging Face's non-special added tokens) */
            if (!parse_special && t->type[sid] != GW_TOKEN_USER_DEFINED) continue;
            size_t n = t->text_len[sid];
            if (n <= len - i && memcmp(s + i, tok_text(t, sid), n) == 0) {
                *id = sid;
                return i;
            }
        }
    }
    return len;
}

int64_t gw_tokenize(const gw_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                    int32_t **ids) {
    *ids = NULL;
    char *owned = NULL;
    size_t n = 0;
    const char *s = len ? utf8_sanitize(text, len, &n, &owned) : "";
    if (!s) return -1;
    gw_idbuf out = {0};
    if (add_bos && t->bos >= 0) gw_idbuf_push(&out, t->bos);
    bool prev_special = true; /* SPM: the first fragment gets the space prefix */
    size_t pos = 0;
    while (pos < n && !out.oom) {
        int32_t sid = -1;
        size_t at = find_special(t, s, pos, n, parse_special, &sid);
        if (at > pos) {
            if (t->kind == GW_TOK_BPE) gw_bpe_encode(t, s + pos, at - pos, &out);
            /* as llama.cpp: a space prefix for each fragment that follows
             * the start or a special token */
            else gw_spm_encode(t, s + pos, at - pos, t->add_space_prefix && prev_special, &out);
            prev_special = false;
        }
        if (at < n) {
            gw_idbuf_push(&out, sid);
            prev_special = true;
            pos = at + t->text_len[sid];
        } else {
            pos = n;
        }
    }
    free(owned);
    if (out.oom) { free(out.v); return -1; }
    if (!out.v) out.v = malloc(sizeof(int32_t));
    if (!out.v) return -1;
    *ids = out.v;
    return (int64_t)out.n;
}

/* ---- detokenize ---- */

size_t gw_token_to_piece(const gw_tokenizer *t, int32_t id, bool render_special, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return 0;
    int32_t ty = t->type[id];
    if (!render_special && (ty == GW_TOKEN_CONTROL || ty == GW_TOKEN_UNKNOWN)) return 0;
    size_t n = t->piece_len[id];
    if (buf && cap) memcpy(buf, t->piece_arena + t->piece_off[id], n < cap ? n : cap);
    return n;
}

char *gw_detokenize(const gw_tokenizer *t, const int32_t *ids, size_t n, bool render_special, size_t *len) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += gw_token_to_piece(t, ids[i], render_special, NULL, 0);
    char *out = malloc(total + 1);
    if (!out) return NULL;
    size_t o = 0;
    /* sentencepiece drops the dummy-prefix space of the first piece that
     * produces text; invisible control tokens (BOS) before it do not count */
    bool strip = t->kind == GW_TOK_SPM && t->add_space_prefix;
    for (size_t i = 0; i < n; i++) {
        size_t k = gw_token_to_piece(t, ids[i], render_special, out + o, total - o);
        if (k == 0) continue;
        if (strip && out[o] == ' ' && t->type[ids[i]] == GW_TOKEN_NORMAL) {
            memmove(out + o, out + o + 1, k - 1);
            k--;
        }
        strip = false;
        o += k;
    }
    out[o] = 0;
    if (len) *len = o;
    return out;
}
