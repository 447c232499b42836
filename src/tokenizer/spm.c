/* SentencePiece BPE (Llama 2, Gemma, Mistral GGUFs: tokenizer.ggml.model =
 * "llama"): spaces become U+2581 ("▁"), a "▁" is prefixed to the text, then
 * adjacent symbols are merged, highest score of the merged piece first
 * (leftmost on ties), as sentencepiece's bpe_model.cc and llama.cpp's
 * llm_tokenizer_spm do. Characters left without a piece fall back to
 * <0xAB> byte tokens.
 *
 * Which pieces a merge may produce follows sentencepiece rather than
 * llama.cpp: only normal, user-defined and unused pieces (control pieces
 * such as "<s>" and byte pieces such as "<0x41>" cannot be spelled by
 * text), and a merge that lands on an unused piece is split back into its
 * parts.
 *
 * Speed: merging the whole text in one priority queue (what sentencepiece
 * and llama.cpp do) is slow for long inputs, the queue being as long as the
 * text. But a merge can only ever join two characters that stand next to
 * each other in some vocabulary piece; where two neighbouring characters
 * appear together in no piece, nothing will ever be merged across. Cutting
 * the text there (typically before every "▁") gives independent word-sized
 * runs, merged one after the other with a small queue, and the same result. */
#define GW_TOKENIZER_INTERNAL
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

typedef struct { float score; int32_t left, right; uint32_t size; } bigram;

typedef struct {
    uint32_t start, n;       /* bytes of the escaped text; n == 0: merged away */
    int32_t prev, next;
    int32_t node;            /* merge tree node, for splitting unused pieces */
} symbol;

typedef struct { uint32_t start, n; int32_t lchild, rchild; } node;

typedef struct {
    const gw_tokenizer *t;
    const char *s;
    symbol *sym;
    node *nodes;
    size_t nnodes, nodecap;
    bigram *heap;
    size_t nheap, heapcap;
    bool oom;
} spm_work;

static bool bigram_before(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(spm_work *w, bigram e) {
    if (w->nheap == w->heapcap) {
        size_t cap = w->heapcap ? w->heapcap * 2 : 64;
        bigram *h = realloc(w->heap, cap * sizeof *h);
        if (!h) { w->oom = true; return; }
        w->heap = h;
        w->heapcap = cap;
    }
    size_t i = w->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_before(&e, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = e;
}

static bigram heap_pop(spm_work *w) {
    bigram top = w->heap[0];
    bigram last = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bigram_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!bigram_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static bool mergeable(int32_t ty) {
    return ty == GW_TOKEN_NORMAL || ty == GW_TOKEN_USER_DEFINED || ty == GW_TOKEN_UNUSED;
}

static int32_t lookup(const gw_tokenizer *t, const char *s, size_t n) {
    int32_t id = gw_strmap_get(t, &t->vocab, s, n);
    return (id >= 0 && mergeable(t->type[id])) ? id : -1;
}

static void try_bigram(spm_work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    /* symbols are contiguous in the text, so the merged piece is a slice */
    uint32_t size = w->sym[l].n + w->sym[r].n;
    int32_t id = lookup(w->t, w->s + w->sym[l].start, size);
    if (id < 0) return;
    bigram b = {w->t->score[id], l, r, size};
    heap_push(w, b);
}

static int32_t new_node(spm_work *w, uint32_t start, uint32_t n, int32_t l, int32_t r) {
    if (w->nnodes == w->nodecap) {
        size_t cap = w->nodecap ? w->nodecap * 2 : 64;
        node *nn = realloc(w->nodes, cap * sizeof *nn);
        if (!nn) { w->oom = true; return -1; }
        w->nodes = nn;
        w->nodecap = cap;
    }
    node x = {start, n, l, r};
    w->nodes[w->nnodes] = x;
    return (int32_t)w->nnodes++;
}

static void emit(spm_work *w, int32_t ni, gw_idbuf *out) {
    const gw_tokenizer *t = w->t;
    node x = w->nodes[ni];
    int32_t id = lookup(t, w->s + x.start, x.n);
    if (id >= 0 && t->type[id] != GW_TOKEN_UNUSED) { gw_idbuf_push(out, id); return; }
    if (x.lchild >= 0) {
        emit(w, x.lchild, out);
        emit(w, x.rchild, out);
        return;
    }
    if (id >= 0) { gw_idbuf_push(out, id); return; }
    /* byte fallback: one <0xAB> per UTF-8 byte, else <unk> */
    for (uint32_t k = 0; k < x.n; k++) {
        int32_t b = t->byte_piece[(uint8_t)w->s[x.start + k]];
        if (b >= 0) gw_idbuf_push(out, b);
        else if (t->unk >= 0) {
            gw_idbuf_push(out, t->unk);
            break; /* one <unk> per character */
        }
    }
}

static uint32_t utf8_len(uint8_t c) {
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* Code point of the (valid, k-byte) UTF-8 sequence at s. */
static uint32_t utf8_cp(const char *p, uint32_t k) {
    const uint8_t *u = (const uint8_t *)p;
    switch (k) {
    case 1: return u[0];
    case 2: return ((u[0] & 0x1Fu) << 6) | (u[1] & 0x3Fu);
    case 3: return ((u[0] & 0x0Fu) << 12) | ((u[1] & 0x3Fu) << 6) | (u[2] & 0x3Fu);
    default: return ((u[0] & 0x07u) << 18) | ((u[1] & 0x3Fu) << 12) | ((u[2] & 0x3Fu) << 6) | (u[3] & 0x3Fu);
    }
}

static uint32_t pair_slot(uint64_t key, uint32_t mask) {
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

/* Adds key to the pair set, doubling the table at half load (sized by the
 * distinct pairs, which are far fewer than the characters of a large
 * vocabulary). */
static bool pair_add(gw_tokenizer *t, uint32_t *count, uint64_t key) {
    if ((*count + 1) * 2 > t->cp_pairs_mask + 1) {
        uint32_t cap = (t->cp_pairs_mask + 1) * 2;
        uint64_t *nt = calloc(cap, sizeof(uint64_t));
        if (!nt) return false;
        for (uint32_t i = 0; i <= t->cp_pairs_mask; i++) {
            uint64_t k = t->cp_pairs[i];
            if (!k) continue;
            uint32_t j = pair_slot(k, cap - 1);
            while (nt[j]) j = (j + 1) & (cap - 1);
            nt[j] = k;
        }
        free(t->cp_pairs);
        t->cp_pairs = nt;
        t->cp_pairs_mask = cap - 1;
    }
    uint32_t j = pair_slot(key, t->cp_pairs_mask);
    while (t->cp_pairs[j] && t->cp_pairs[j] != key) j = (j + 1) & t->cp_pairs_mask;
    if (!t->cp_pairs[j]) { t->cp_pairs[j] = key; (*count)++; }
    return true;
}

/* Collects every pair of adjacent code points inside a mergeable piece. */
bool gw_spm_setup(gw_tokenizer *t) {
    uint32_t count = 0;
    t->cp_pairs = calloc(1024, sizeof(uint64_t));
    if (!t->cp_pairs) return false;
    t->cp_pairs_mask = 1023;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!mergeable(t->type[id])) continue;
        const char *s = t->text_arena + t->text_off[id];
        uint32_t n = t->text_len[id], i = 0, prev = 0;
        bool have = false;
        while (i < n) {
            uint32_t k = utf8_len((uint8_t)s[i]);
            if (k > n - i) break;
            uint32_t cp = utf8_cp(s + i, k);
            if (have && !pair_add(t, &count, ((uint64_t)prev << 32 | cp) + 1)) return false;
            prev = cp;
            have = true;
            i += k;
        }
    }
    return true;
}

static bool pair_in_vocab(const gw_tokenizer *t, uint32_t a, uint32_t b) {
    uint64_t key = ((uint64_t)a << 32 | b) + 1;
    uint32_t j = pair_slot(key, t->cp_pairs_mask);
    while (t->cp_pairs[j]) {
        if (t->cp_pairs[j] == key) return true;
        j = (j + 1) & t->cp_pairs_mask;
    }
    return false;
}

static void merge_run(spm_work *w, int32_t first, int32_t end, gw_idbuf *out);

void gw_spm_encode(const gw_tokenizer *t, const char *text, size_t len, bool space_prefix, gw_idbuf *out) {
    if (len == 0) return;
    if (len > (UINT32_MAX - 3) / 3) { out->oom = true; return; }
    /* escape: optional "▁" prefix, every ' ' -> "▁" */
    char *s = malloc(len * 3 + 3);
    if (!s) { out->oom = true; return; }
    size_t n = 0;
    if (space_prefix) { memcpy(s, "\xE2\x96\x81", 3); n = 3; }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') { memcpy(s + n, "\xE2\x96\x81", 3); n += 3; }
        else s[n++] = text[i];
    }
    spm_work w;
    memset(&w, 0, sizeof w);
    w.t = t;
    w.s = s;
    w.sym = malloc(n * sizeof(symbol));
    if (!w.sym) { free(s); out->oom = true; return; }
    /* one symbol per character (the text is valid UTF-8); runs are cut
     * where the two characters never meet inside a piece */
    int32_t ns = 0;
    uint32_t prev_cp = 0;
    for (size_t i = 0; i < n;) {
        uint32_t k = utf8_len((uint8_t)s[i]);
        if (k > n - i) k = (uint32_t)(n - i);
        uint32_t cp = utf8_cp(s + i, k);
        bool joined = ns > 0 && pair_in_vocab(t, prev_cp, cp);
        symbol y = {(uint32_t)i, k, joined ? ns - 1 : -1, -1, (int32_t)i};
        w.sym[ns] = y;
        if (joined) w.sym[ns - 1].next = ns;
        ns++;
        i += k;
        prev_cp = cp;
    }
    for (int32_t run = 0; run < ns && !w.oom;) {
        int32_t end = run + 1;
        while (end < ns && w.sym[end].prev >= 0) end++;
        merge_run(&w, run, end, out);
        run = end;
    }
    if (w.oom) out->oom = true;
    free(w.sym);
    free(w.nodes);
    free(w.heap);
    free(s);
}

/* Merges symbols [first, end) (linked to each other only) and emits their ids. */
static void merge_run(spm_work *w, int32_t first, int32_t end, gw_idbuf *out) {
    w->nnodes = 0;
    w->nheap = 0;
    for (int32_t i = first; i < end; i++) w->sym[i].node = new_node(w, w->sym[i].start, w->sym[i].n, -1, -1);
    for (int32_t i = first + 1; i < end && !w->oom; i++) try_bigram(w, i - 1, i);
    while (w->nheap && !w->oom) {
        bigram b = heap_pop(w);
        symbol *l = &w->sym[b.left], *r = &w->sym[b.right];
        /* stale: one side already merged elsewhere */
        if (l->n == 0 || r->n == 0 || l->next != b.right || l->n + r->n != b.size) continue;
        l->node = new_node(w, l->start, b.size, l->node, r->node);
        l->n = b.size;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = b.left;
        try_bigram(w, l->prev, b.left);
        try_bigram(w, b.left, l->next);
    }
    if (!w->oom)
        for (int32_t i = first; i >= 0; i = w->sym[i].next) emit(w, w->sym[i].node, out);
}
