/* Byte-level BPE (GPT-2 style): split the text with the model's
 * pre-tokenizer regexes (PCRE2, Unicode properties, JIT), then merge each
 * piece's bytes by merge rank.
 *
 * Vocabulary strings of byte-level BPE spell each byte as one code point
 * (GPT-2's bytes_to_unicode map, so that every token is printable). We work
 * on raw bytes instead: a piece starts as one symbol per byte, holding the
 * id of that byte's single-character token, and merges are looked up by the
 * pair of ids. That is the same merge sequence Hugging Face runs on the
 * mapped string, without building strings. */
#define GW_TOKENIZER_INTERNAL
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- GPT-2 byte <-> unicode ---- */

/* Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls,
 * space, DEL, NBSP, soft hyphen...) are given code points 256, 257, ... in
 * byte order. */
static bool byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t gw_byte_to_cp(uint8_t b) {
    if (byte_is_printable(b)) return b;
    if (b <= 0x20) return 256u + b;          /* 0x00..0x20 -> 256..288 */
    if (b >= 0x7F && b <= 0xA0) return b + 162u; /* 0x7F..0xA0 -> 289..322 */
    return 323;                              /* 0xAD (soft hyphen) */
}

int gw_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp <= 288) return (int)(cp - 256);
    if (cp <= 322) return (int)(cp - 162);
    if (cp == 323) return 0xAD;
    return -1;
}

/* ---- pre-tokenizers (llama.cpp's definitions, src/llama-vocab.cpp) ---- */

/* GPT-2's split, as in Hugging Face's ByteLevel pre-tokenizer. The trailing
 * \s+ only names what would be left over anyway: text no alternative matches
 * becomes a piece of its own. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
/* Qwen2 and Llama 3 use the "(?i:'s|...)" contractions of their tokenizer.json
 * directly (PCRE2 supports them), one digit (Qwen2) or up to three (Llama 3). */
#define RE_QWEN2 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_LLAMA3 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

typedef struct {
    const char *names;      /* '|'-separated tokenizer.ggml.pre values */
    int llama3;             /* ignore_merges and add_bos by default */
    const char *re[GW_MAX_REGEX];
} pre_def;

static const pre_def pre_defs[] = {
    {"default", 0, {"[\\p{P}\\$\\+<=>\\^~\\|]+",
                    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
                    "\\p{N}+", "[0-9][0-9][0-9]"}},
    /* digits one by one first, then GPT-2 (HF: Digits(individual_digits) + ByteLevel) */
    {"smollm|starcoder|refact|command-r|codeshell|exaone|minerva-7b", 0, {"\\p{N}", RE_GPT2}},
    {"gpt2|gpt-2|phi-2|jina-es|jina-de|jina-v2-es|jina-v2-de|mpt|olmo|jais|roberta-bpe", 0, {RE_GPT2}},
    {"qwen2|deepseek-r1-qwen|stablelm2|hunyuan|megrez", 0, {RE_QWEN2}},
    {"llama3|llama-v3|llama-bpe|falcon3|pixtral", 1, {RE_LLAMA3}},
    {"dbrx|smaug-bpe", 0, {RE_LLAMA3}},
    {NULL, 0, {NULL}},
};

static bool name_in_list(const char *name, const char *list) {
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, '|');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == n && memcmp(p, name, n) == 0) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

int gw_bpe_setup_pre(gw_tokenizer *t, const char *pre, char *err, size_t errlen) {
    const pre_def *d = NULL;
    for (int i = 0; pre_defs[i].names; i++)
        if (name_in_list(pre, pre_defs[i].names)) { d = &pre_defs[i]; break; }
    if (!d) {
        if (err && errlen) snprintf(err, errlen, "tokenizer: unknown pre-tokenizer type '%s'", pre);
        return -1;
    }
    snprintf(t->pre_name, sizeof t->pre_name, "%s", pre);
    t->ignore_merges = d->llama3;
    for (int i = 0; i < GW_MAX_REGEX && d->re[i]; i++) {
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)d->re[i], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
        if (!re) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(ec, msg, sizeof msg);
            if (err && errlen) snprintf(err, errlen, "tokenizer: regex for '%s': %s", pre, (const char *)msg);
            return -1;
        }
        /* JIT is an optimisation only: without it pcre2_match interprets */
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
        t->regex[t->n_regex++] = re;
    }
    return d->llama3;
}

/* ---- merging ---- */

typedef struct { int32_t rank, pos, right, lid, rid, res; } pair_entry;

typedef struct {
    int32_t *id, *prev, *next;
    size_t cap;
    pair_entry *heap;
    size_t nheap, heapcap;
    char *mapped;            /* ignore_merges: the piece in GPT-2 code points */
    size_t mappedcap;
    pcre2_match_data *md;
    bool oom;
} bpe_work;

static bool pair_less(const pair_entry *a, const pair_entry *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(bpe_work *w, pair_entry e) {
    if (w->nheap == w->heapcap) {
        size_t cap = w->heapcap ? w->heapcap * 2 : 64;
        pair_entry *h = realloc(w->heap, cap * sizeof *h);
        if (!h) { w->oom = true; return; }
        w->heap = h;
        w->heapcap = cap;
    }
    size_t i = w->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!pair_less(&e, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = e;
}

static pair_entry heap_pop(bpe_work *w) {
    pair_entry top = w->heap[0];
    pair_entry last = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_less(&w->heap[c + 1], &w->heap[c])) c++;
        if (!pair_less(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static void try_pair(const gw_tokenizer *t, bpe_work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    int32_t a = w->id[l], b = w->id[r];
    if (a < 0 || b < 0) return;
    const gw_mergemap *m = &t->merges;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t i = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & m->mask;
    while (m->keys[i]) {
        if (m->keys[i] == key) {
            pair_entry e = {m->rank[i], l, r, a, b, m->result[i]};
            heap_push(w, e);
            return;
        }
        i = (i + 1) & m->mask;
    }
}

static void bpe_word(const gw_tokenizer *t, bpe_work *w, const char *s, size_t n, gw_idbuf *out) {
    if (n == 0) return;
    const uint8_t *u = (const uint8_t *)s;
    if (t->ignore_merges) {
        /* Llama 3 (HF ignore_merges): a piece that is itself a token is
         * taken whole, whatever the merges would give */
        if (w->mappedcap < 2 * n) {
            char *m = realloc(w->mapped, 2 * n);
            if (!m) { w->oom = true; return; }
            w->mapped = m;
            w->mappedcap = 2 * n;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t cp = gw_byte_to_cp(u[i]);
            if (cp < 0x80) w->mapped[k++] = (char)cp;
            else { w->mapped[k++] = (char)(0xC0 | (cp >> 6)); w->mapped[k++] = (char)(0x80 | (cp & 0x3F)); }
        }
        int32_t id = gw_strmap_get(t, &t->vocab, w->mapped, k);
        if (id >= 0) { gw_idbuf_push(out, id); return; }
    }
    if (n == 1) {
        if (t->byte_token[u[0]] >= 0) gw_idbuf_push(out, t->byte_token[u[0]]);
        return;
    }
    if (n > INT32_MAX) { w->oom = true; return; }
    if (w->cap < n) {
        int32_t *a = realloc(w->id, n * sizeof(int32_t));
        if (a) w->id = a;
        int32_t *b = realloc(w->prev, n * sizeof(int32_t));
        if (b) w->prev = b;
        int32_t *c = realloc(w->next, n * sizeof(int32_t));
        if (c) w->next = c;
        if (!a || !b || !c) { w->oom = true; return; }
        w->cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        /* a byte with no token (never in a proper byte-level vocabulary) is
         * dropped at the end, as llama.cpp does */
        w->id[i] = t->byte_token[u[i]];
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    w->nheap = 0;
    for (size_t i = 0; i + 1 < n; i++) try_pair(t, w, (int32_t)i, (int32_t)i + 1);
    /* lowest rank first, leftmost among equal ranks (Hugging Face's order);
     * entries made stale by an earlier merge are recognised and skipped */
    while (w->nheap && !w->oom) {
        pair_entry e = heap_pop(w);
        int32_t l = e.pos, r = e.right;
        if (w->next[l] != r || w->id[l] != e.lid || w->id[r] != e.rid) continue;
        w->id[l] = e.res;
        w->id[r] = INT32_MIN; /* dead */
        w->next[l] = w->next[r];
        if (w->next[r] >= 0) w->prev[w->next[r]] = l;
        try_pair(t, w, w->prev[l], l);
        try_pair(t, w, l, w->next[l]);
    }
    for (int32_t i = 0; i >= 0; i = w->next[i])
        if (w->id[i] >= 0) gw_idbuf_push(out, w->id[i]);
}

/* Runs regex `level` over s[0, n): matched pieces and the text between them
 * both go on to the next level; after the last level each piece is merged. */
static void split(const gw_tokenizer *t, bpe_work *w, int level, const char *s, size_t n, gw_idbuf *out) {
    if (n == 0 || w->oom) return;
    if (level == t->n_regex) { bpe_word(t, w, s, n, out); return; }
    pcre2_code *re = t->regex[level];
    size_t pos = 0, start = 0;
    while (start < n && !w->oom) {
        /* input was made valid UTF-8 by gw_tokenize, so skip the check */
        int rc = pcre2_jit_match(re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, w->md, NULL);
        if (rc == PCRE2_ERROR_JIT_BADOPTION) /* JIT unavailable */
            rc = pcre2_match(re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, w->md, NULL);
        else if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* huge piece: the interpreter keeps its stack on the heap */
            rc = pcre2_match(re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, w->md, NULL);
        if (rc < 0) break; /* no more matches (or a limit hit): the rest is one piece */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) {
            /* empty match (none of our patterns has one): step one character */
            start = ms + 1;
            while (start < n && ((uint8_t)s[start] & 0xC0) == 0x80) start++;
            continue;
        }
        if (ms > pos) split(t, w, level + 1, s + pos, ms - pos, out);
        split(t, w, level + 1, s + ms, me - ms, out);
        pos = start = me;
    }
    if (pos < n) split(t, w, level + 1, s + pos, n - pos, out);
}

void gw_bpe_encode(const gw_tokenizer *t, const char *text, size_t len, gw_idbuf *out) {
    bpe_work w;
    memset(&w, 0, sizeof w);
    w.md = pcre2_match_data_create(1, NULL);
    if (!w.md) { out->oom = true; return; }
    split(t, &w, 0, text, len, out);
    if (w.oom) out->oom = true;
    pcre2_match_data_free(w.md);
    free(w.id); free(w.prev); free(w.next); free(w.heap); free(w.mapped);
}
