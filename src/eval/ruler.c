/* RULER-style synthetic long-context tasks and LM-Infinite's passkey; see
 * ruler.h for the interface. The prompt texts (templates, needles, answer
 * prefixes, the noise sentence) are RULER's (scripts/data/synthetic/
 * constants.py, niah.py, variable_tracking.py, common_words_extraction.py,
 * freq_words_extraction.py), so that scores can be compared with published
 * ones. The generation code is our own.
 *
 * A sample is made in two steps:
 *  - plan: everything that does not depend on the haystack size (keys,
 *    values, needle order and depths, the answer prefix, the references) is
 *    drawn once from the sample's "plan" generator;
 *  - build(n): the text at haystack size n. Whatever randomness a build needs
 *    (distractor needles, word lists, shuffles) comes from a generator that
 *    is re-seeded at every build, so build(n) is a pure function of n.
 * fit() then searches for the largest n whose prompt fits the length.
 *
 * Where this differs from RULER's generator (on purpose or by necessity):
 *  - essay haystack: consecutive War and Peace sentences from a random start
 *    (RULER: Paul Graham essays from the start, nltk's sentence splitter);
 *  - multi-needle tasks put needles at depths 1/8, 3/8, 5/8, 7/8 in shuffled
 *    order (RULER: random points of a 40-point grid); single needles go at
 *    unit floor(depth * n);
 *  - keys and values are drawn from our own word lists (words.c: 2,346
 *    words; cwe therefore reaches about 52k tokens at most), all distinct,
 *    and distractors never reuse a real key;
 *  - cwe below 4096 tokens repeats words 6 and 1 times with a 20-word
 *    example, RULER's own rule for small lengths; 30 and 3 from 4096 on;
 *  - fwe's noise word is "...." as its prompt says (RULER's code writes
 *    "..."); at least 100 words so that ranks 2-4 have distinct counts;
 *  - vt's one-shot example is fitted to 500 tokens with the caller's counter
 *    (template overhead included) and depends on the seed only;
 *  - passkey keys are 10000-99999 and the filler comes in whole repetitions;
 *  - shuffles use the sample's generator; every task, fwe included, fits
 *    prompt + answer budget <= length. */
#include "eval/ruler.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/words.h"

/* ------------------------------------------------------------------ names */

static const char *const TASK_NAMES[GW_TASK_COUNT] = {
    [GW_TASK_NIAH_SINGLE_1] = "niah_single_1",
    [GW_TASK_NIAH_SINGLE_2] = "niah_single_2",
    [GW_TASK_NIAH_SINGLE_3] = "niah_single_3",
    [GW_TASK_NIAH_SINGLE_WORDS] = "niah_single_words",
    [GW_TASK_NIAH_MULTIKEY_1] = "niah_multikey_1",
    [GW_TASK_NIAH_MULTIKEY_2] = "niah_multikey_2",
    [GW_TASK_NIAH_MULTIKEY_3] = "niah_multikey_3",
    [GW_TASK_NIAH_MULTIVALUE] = "niah_multivalue",
    [GW_TASK_NIAH_MULTIQUERY] = "niah_multiquery",
    [GW_TASK_VT] = "vt",
    [GW_TASK_CWE] = "cwe",
    [GW_TASK_FWE] = "fwe",
    [GW_TASK_PASSKEY] = "passkey",
};

const char *gw_task_name(gw_task t) {
    if ((int)t < 0 || t >= GW_TASK_COUNT) return "unknown";
    return TASK_NAMES[t];
}

int gw_task_lookup(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "all")) return GW_TASK_COUNT;
    for (int i = 0; i < GW_TASK_COUNT; i++)
        if (!strcmp(name, TASK_NAMES[i])) return i;
    return -1;
}

/* ---------------------------------------------------------------- errors */

/* err may be NULL (then errlen should be 0, but we do not rely on it). */
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------- RNG */

/* splitmix64: tiny, fast, and every 64-bit state is a valid seed, which is
 * all a seed derived from a hash needs. */
typedef struct { uint64_t state; } rng;

static uint64_t rng_next(rng *r) {
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n), n > 0. Rejects the top partial block of 2^64 so that
 * no value is favoured (plain modulo would be, slightly). */
static uint64_t rng_below(rng *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = rng_next(r);
    while (x >= limit);
    return x % n;
}

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Hashes the value's bytes little-endian, so seeds agree across machines. */
static uint64_t fnv1a_u64(uint64_t h, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    return fnv1a(h, b, 8);
}

static uint64_t fnv1a_str(uint64_t h, const char *s) { return fnv1a(h, s, strlen(s) + 1); }

/* A named stream of the sample: the same (base, name) gives the same draws. */
static rng rng_stream(uint64_t base, const char *name) {
    rng r = {fnv1a_str(base, name)};
    return r;
}

/* Fisher-Yates. */
static void shuffle(rng *r, int *a, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rng_below(r, i);
        int t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* -------------------------------------------------------- string builder */

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;   /* sticky: set on the first failed allocation */
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *t = realloc(b->s, cap);
        if (!t) {
            b->oom = true;
            return;
        }
        b->s = t;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        sb_put(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_put(b, big, (size_t)n);
    free(big);
}

/* Empties the buffer but keeps its memory for the next build. */
static void sb_clear(sbuf *b) {
    b->n = 0;
    b->oom = false;
    if (b->s) b->s[0] = 0;
}

static void sb_free(sbuf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

/* Appends piece, preceded by sep unless it is the first piece of a list. */
static void sb_item(sbuf *b, const char *sep, bool *first, const char *piece) {
    if (!*first) sb_puts(b, sep);
    *first = false;
    sb_puts(b, piece);
}

/* ---------------------------------------------------------------- corpus */

struct gw_corpus {
    char *text;     /* normalised text, one NUL after each sentence */
    size_t *start;  /* offset of each sentence in text */
    size_t n;
};

/* NUL counts as whitespace so that a stray NUL byte cannot cut a sentence. */
static bool is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == 0;
}

/* Bytes of a closing quote at s: " or ' or UTF-8 right quotes (U+201D, U+2019). */
static size_t closing_quote(const char *s, const char *end) {
    if (s < end && (*s == '"' || *s == '\'')) return 1;
    if (end - s >= 3 && (unsigned char)s[0] == 0xE2 && (unsigned char)s[1] == 0x80 &&
        ((unsigned char)s[2] == 0x9D || (unsigned char)s[2] == 0x99))
        return 3;
    return 0;
}

gw_corpus *gw_corpus_new(const char *text, size_t len) {
    gw_corpus *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->text = malloc(len + 1);
    if (!c->text) {
        free(c);
        return NULL;
    }
    /* Whitespace runs -> one space; none at either end. */
    size_t o = 0;
    bool pending = false;
    for (size_t i = 0; i < len; i++) {
        if (is_space((unsigned char)text[i])) {
            pending = o > 0;
            continue;
        }
        if (pending) c->text[o++] = ' ';
        pending = false;
        c->text[o++] = text[i];
    }
    c->text[o] = 0;

    /* Split after . ! ? (and any closing quotes) where a space follows: the
     * space becomes the sentence's NUL. */
    char *t = c->text;
    size_t cap = 0, s0 = 0;
    for (size_t i = 0; i <= o; i++) {
        bool end_here = i == o;
        size_t cut = i;
        if (!end_here) {
            if (t[i] != '.' && t[i] != '!' && t[i] != '?') continue;
            size_t j = i + 1, q;
            while (j < o && (q = closing_quote(t + j, t + o)) > 0) j += q;
            if (j >= o || t[j] != ' ') continue;   /* the text's end is handled at i == o */
            cut = j;
        }
        if (cut > s0) {
            if (c->n == cap) {
                cap = cap ? cap * 2 : 1024;
                size_t *ns = realloc(c->start, cap * sizeof *ns);
                if (!ns) {
                    gw_corpus_free(c);
                    return NULL;
                }
                c->start = ns;
            }
            c->start[c->n++] = s0;
        }
        t[cut] = 0;
        s0 = cut + 1;
        i = cut;
    }
    return c;
}

void gw_corpus_free(gw_corpus *c) {
    if (!c) return;
    free(c->text);
    free(c->start);
    free(c);
}

size_t gw_corpus_n_sentences(const gw_corpus *c) { return c ? c->n : 0; }

const char *gw_corpus_sentence(const gw_corpus *c, size_t i) {
    if (!c || i >= c->n) return NULL;
    return c->text + c->start[i];
}

/* ------------------------------------------------------------ task setup */

/* RULER's haystacks: the noise sentence repeated, an essay, or lines of
 * distractor needles. */
typedef enum { HAY_REPEAT, HAY_ESSAY, HAY_NEEDLE } hay_kind;
/* RULER's needle key/value types. */
typedef enum { KIND_WORDS, KIND_NUMBERS, KIND_UUIDS } item_kind;

typedef struct {
    hay_kind hay;
    item_kind key, value;
    int n_keys, n_values, n_queries;
} niah_config;

/* RULER's synthetic.yaml, plus niah_single_words. */
static const niah_config NIAH_CONFIG[GW_TASK_NIAH_MULTIQUERY + 1] = {
    [GW_TASK_NIAH_SINGLE_1] = {HAY_REPEAT, KIND_WORDS, KIND_NUMBERS, 1, 1, 1},
    [GW_TASK_NIAH_SINGLE_2] = {HAY_ESSAY, KIND_WORDS, KIND_NUMBERS, 1, 1, 1},
    [GW_TASK_NIAH_SINGLE_3] = {HAY_ESSAY, KIND_WORDS, KIND_UUIDS, 1, 1, 1},
    [GW_TASK_NIAH_SINGLE_WORDS] = {HAY_ESSAY, KIND_WORDS, KIND_WORDS, 1, 1, 1},
    [GW_TASK_NIAH_MULTIKEY_1] = {HAY_ESSAY, KIND_WORDS, KIND_NUMBERS, 4, 1, 1},
    [GW_TASK_NIAH_MULTIKEY_2] = {HAY_NEEDLE, KIND_WORDS, KIND_NUMBERS, 1, 1, 1},
    [GW_TASK_NIAH_MULTIKEY_3] = {HAY_NEEDLE, KIND_UUIDS, KIND_UUIDS, 1, 1, 1},
    [GW_TASK_NIAH_MULTIVALUE] = {HAY_ESSAY, KIND_WORDS, KIND_NUMBERS, 1, 4, 1},
    [GW_TASK_NIAH_MULTIQUERY] = {HAY_ESSAY, KIND_WORDS, KIND_NUMBERS, 4, 1, 4},
};

/* The noise of niah_single_1, vt and passkey (RULER's "repeat" haystack,
 * which is also LM-Infinite's passkey filler). vt's noise ends in a newline. */
#define NOISE_TEXT "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
static const char NOISE[] = NOISE_TEXT;
static const char NOISE_LINE[] = NOISE_TEXT "\n";

/* RULER's answer budgets (tokens_to_generate). */
enum { TOKENS_NIAH = 128, TOKENS_VT = 30, TOKENS_CWE = 120, TOKENS_FWE = 50, TOKENS_PASSKEY = 16 };

enum { MAX_NEEDLES = 16, MAX_REFS = 16, ITEM_LEN = 64, NEEDLE_LEN = 192 };
enum { VT_HOPS = 4, VT_VARS = VT_HOPS + 1 };
enum { CWE_COMMON = 10, FWE_VOCAB = 2000, FWE_WORDLEN = 6 };

/* Tokens of the vt one-shot example, as RULER builds it (max_seq_length=500). */
enum { VT_ICL_LENGTH = 500 };

/* One variable chain of vt: VAR A = value, VAR B = VAR A, ... */
typedef struct {
    char names[VT_VARS][8];
    char lines[VT_VARS][32];
    int value;
    uint64_t base;        /* seeds the generator of its positions */
} vt_chain;

typedef struct gen gen;
typedef int (*build_fn)(gen *g, long n, sbuf *out);

/* Everything about one sample being made. */
struct gen {
    const gw_eval_sample_params *p;
    const char *name;
    uint64_t base;             /* hash of (seed, task name, length, index) */
    int max_new_tokens;
    sbuf prefix;               /* answer prefix */
    char refs[MAX_REFS][ITEM_LEN];
    int n_refs;
    double depth;              /* set by each build: first real needle's depth, or -1 */

    /* niah and passkey */
    const niah_config *cfg;
    sbuf head, question;       /* the template before and after the context */
    char needles[MAX_NEEDLES][NEEDLE_LEN];   /* in haystack order */
    double needle_depth[MAX_NEEDLES];        /* ascending */
    int n_needles;
    int ref_needle;            /* the needle that holds refs[0] */
    char keys[MAX_NEEDLES][ITEM_LEN];        /* real keys: distractors avoid them */
    int n_keys;
    size_t essay_start;

    /* vt */
    vt_chain chain, icl_chain;
    sbuf icl;                  /* the one-shot example, ready to prepend */

    /* cwe */
    int *pool;                 /* indices into the word pool, common words excluded */
    int n_pool;
    int common[CWE_COMMON];
    int freq_cw, freq_ucw;
    int *scratch;              /* n_pool ints for each build's draw */
    sbuf example;              /* cwe's one-shot example, ready to prepend */

    /* fwe */
    char (*vocab)[FWE_WORDLEN + 1];
};

/* ------------------------------------------------------------ word pools */

static int pool_size(void) { return gw_n_adjectives + gw_n_nouns + gw_n_verbs; }

/* Word i of adjectives ++ nouns ++ verbs (cwe's vocabulary, as RULER's
 * nouns + adjs + verbs). */
static const char *pool_word(int i) {
    if (i < gw_n_adjectives) return gw_adjectives[i];
    i -= gw_n_adjectives;
    if (i < gw_n_nouns) return gw_nouns[i];
    return gw_verbs[i - gw_n_nouns];
}

/* A random needle key or value of RULER's kinds: "adjective-noun", a
 * 7-digit number, or a version-4 UUID. */
static void random_item(rng *r, item_kind k, char *buf, size_t cap) {
    switch (k) {
    case KIND_WORDS:
        snprintf(buf, cap, "%s-%s", gw_adjectives[rng_below(r, (uint64_t)gw_n_adjectives)],
                 gw_nouns[rng_below(r, (uint64_t)gw_n_nouns)]);
        break;
    case KIND_NUMBERS:
        snprintf(buf, cap, "%d", (int)(1000000 + rng_below(r, 9000000)));
        break;
    case KIND_UUIDS: {
        unsigned char b[16];
        uint64_t hi = rng_next(r), lo = rng_next(r);
        for (int i = 0; i < 8; i++) {
            b[i] = (unsigned char)(hi >> (56 - 8 * i));
            b[8 + i] = (unsigned char)(lo >> (56 - 8 * i));
        }
        b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);   /* version 4, as uuid.UUID(version=4) */
        b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
        snprintf(buf, cap,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                 b[13], b[14], b[15]);
        break;
    }
    }
}

static const char *kind_plural(item_kind k) {
    return k == KIND_WORDS ? "words" : k == KIND_NUMBERS ? "numbers" : "uuids";
}

static const char *kind_singular(item_kind k) {
    return k == KIND_WORDS ? "word" : k == KIND_NUMBERS ? "number" : "uuid";
}

/* RULER's 40 depths: np.round(np.linspace(0, 100, 40)) percent. */
static double grid_depth(rng *r) {
    int i = (int)rng_below(r, 40);
    return floor(100.0 * i / 39.0 + 0.5) / 100.0;
}

/* The requested depth clamped to 0..1, or a grid depth if none is asked. */
static double single_depth(const gw_eval_sample_params *p, rng *r) {
    if (!(p->depth >= 0)) return grid_depth(r);   /* also catches NaN */
    return p->depth > 1 ? 1.0 : p->depth;
}

/* Position (0..n) before which a needle at depth d goes; RULER's
 * int(n * depth). */
static long depth_pos(double d, long n) {
    long pos = (long)(d * (double)n);
    return pos < 0 ? 0 : pos > n ? n : pos;
}

static bool in_list(char list[][ITEM_LEN], int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], s)) return true;
    return false;
}

/* ------------------------------------------------------------------ NIAH */

/* RULER's needle sentence; the type word stays plural, as in RULER. */
static void format_needle(char *buf, item_kind vkind, const char *key, const char *value) {
    snprintf(buf, NEEDLE_LEN, "One of the special magic %s for %s is: %s.", kind_plural(vkind),
             key, value);
}

/* Draws keys, values, needle order and depths, the queried keys and the
 * essay's first sentence, and writes the template around the context. */
static int plan_niah(gen *g) {
    const niah_config *cfg = g->cfg;
    rng r = rng_stream(g->base, "plan");
    char values[MAX_NEEDLES][ITEM_LEN];
    int needle_key[MAX_NEEDLES], needle_of_value[MAX_NEEDLES];
    int n_values = 0;

    /* Keys and values, all distinct so that each reference is unambiguous. */
    g->n_keys = cfg->n_keys;
    g->n_needles = 0;
    for (int k = 0; k < cfg->n_keys; k++) {
        do random_item(&r, cfg->key, g->keys[k], ITEM_LEN);
        while (in_list(g->keys, k, g->keys[k]));
        for (int v = 0; v < cfg->n_values; v++) {
            do random_item(&r, cfg->value, values[n_values], ITEM_LEN);
            while (in_list(values, n_values, values[n_values]));
            format_needle(g->needles[g->n_needles], cfg->value, g->keys[k], values[n_values]);
            needle_key[g->n_needles] = k;
            needle_of_value[n_values] = g->n_needles;
            n_values++;
            g->n_needles++;
        }
    }

    /* Needle order in the haystack: shuffled (RULER shuffles them too). */
    int order[MAX_NEEDLES];
    for (int i = 0; i < g->n_needles; i++) order[i] = i;
    shuffle(&r, order, (size_t)g->n_needles);
    char tmp[MAX_NEEDLES][NEEDLE_LEN];
    int where[MAX_NEEDLES];   /* original needle -> haystack slot */
    for (int i = 0; i < g->n_needles; i++) {
        memcpy(tmp[i], g->needles[order[i]], NEEDLE_LEN);
        where[order[i]] = i;
    }
    memcpy(g->needles, tmp, sizeof tmp[0] * (size_t)g->n_needles);

    /* Depths: one needle at the requested (or a grid) depth; several spread
     * evenly over the haystack, at the middles of n equal parts. */
    if (g->n_needles == 1)
        g->needle_depth[0] = single_depth(g->p, &r);
    else
        for (int i = 0; i < g->n_needles; i++)
            g->needle_depth[i] = (i + 0.5) / g->n_needles;

    /* The queried keys (RULER: random.sample of the keys). */
    int q[MAX_NEEDLES];
    for (int k = 0; k < cfg->n_keys; k++) q[k] = k;
    shuffle(&r, q, (size_t)cfg->n_keys);
    g->n_refs = 0;
    g->ref_needle = -1;
    for (int i = 0; i < cfg->n_queries; i++)
        for (int n = 0; n < n_values; n++) {
            int needle = needle_of_value[n];
            if (needle_key[needle] != q[i]) continue;
            if (g->ref_needle < 0) g->ref_needle = where[needle];
            memcpy(g->refs[g->n_refs++], values[n], ITEM_LEN);   /* both ITEM_LEN, NUL inside */
        }

    /* "a, b, c, and d" as RULER joins several queries. */
    sbuf query = {0};
    for (int i = 0; i < cfg->n_queries; i++) {
        if (i > 0) sb_puts(&query, i == cfg->n_queries - 1 ? ", and " : ", ");
        sb_puts(&query, g->keys[q[i]]);
    }
    if (cfg->hay == HAY_ESSAY)
        g->essay_start = (size_t)rng_below(&r, gw_corpus_n_sentences(g->p->corpus));

    /* RULER's niah template; with a single answer RULER rewrites it to the
     * singular (Some -> A, are all -> is, are -> is, numbers -> number). */
    const char *qs = query.oom ? "" : query.s;
    if (cfg->n_queries * cfg->n_values == 1) {
        const char *t = kind_singular(cfg->value);
        sb_printf(&g->head,
                  "A special magic %s is hidden within the following text. Make sure to "
                  "memorize it. I will quiz you about the %s afterwards.\n",
                  t, t);
        sb_printf(&g->question, "\nWhat is the special magic %s for %s mentioned in the provided text?",
                  t, qs);
        sb_printf(&g->prefix, " The special magic %s for %s mentioned in the provided text is", t, qs);
    } else {
        const char *t = kind_plural(cfg->value);
        sb_printf(&g->head,
                  "Some special magic %s are hidden within the following text. Make sure to "
                  "memorize it. I will quiz you about the %s afterwards.\n",
                  t, t);
        sb_printf(&g->question,
                  "\nWhat are all the special magic %s for %s mentioned in the provided text?", t, qs);
        sb_printf(&g->prefix, " The special magic %s for %s mentioned in the provided text are", t, qs);
    }
    bool oom = query.oom;
    sb_free(&query);
    return oom || g->head.oom || g->question.oom || g->prefix.oom ? -1 : 0;
}

static int build_niah(gen *g, long n, sbuf *out) {
    const niah_config *cfg = g->cfg;
    const gw_corpus *c = g->p->corpus;
    size_t n_sent = gw_corpus_n_sentences(c);
    long pos[MAX_NEEDLES];
    for (int i = 0; i < g->n_needles; i++) pos[i] = depth_pos(g->needle_depth[i], n);

    /* RULER joins essay sentences (and the needles between them) with spaces,
     * and the lines of the other haystacks with newlines. */
    const char *sep = cfg->hay == HAY_ESSAY ? " " : "\n";
    rng r = rng_stream(g->base, "haystack");
    char key[ITEM_LEN], value[ITEM_LEN], line[NEEDLE_LEN];
    bool first = true;
    int next = 0;
    sb_puts(out, g->head.s);
    for (long s = 0; s <= n; s++) {
        while (next < g->n_needles && pos[next] == s) sb_item(out, sep, &first, g->needles[next++]);
        if (s == n) break;
        switch (cfg->hay) {
        case HAY_REPEAT:
            sb_item(out, sep, &first, NOISE);
            break;
        case HAY_ESSAY:
            sb_item(out, sep, &first, gw_corpus_sentence(c, (g->essay_start + (size_t)s) % n_sent));
            break;
        case HAY_NEEDLE:
            /* A distractor never repeats a real key: the query must have one answer. */
            do random_item(&r, cfg->key, key, sizeof key);
            while (in_list(g->keys, g->n_keys, key));
            random_item(&r, cfg->value, value, sizeof value);
            format_needle(line, cfg->value, key, value);
            sb_item(out, sep, &first, line);
            break;
        }
    }
    sb_puts(out, g->question.s);
    g->depth = g->needle_depth[g->ref_needle];
    return out->oom ? -1 : 0;
}

/* --------------------------------------------------------------- passkey */

/* LM-Infinite's passkey retrieval: task description, filler, the key line at
 * the depth, filler, question, joined by newlines. */
static int plan_passkey(gen *g) {
    rng r = rng_stream(g->base, "plan");
    int key = 10000 + (int)rng_below(&r, 90000);
    snprintf(g->refs[0], ITEM_LEN, "%d", key);
    g->n_refs = 1;
    snprintf(g->needles[0], NEEDLE_LEN, "The pass key is %d. Remember it. %d is the pass key.", key, key);
    g->n_needles = 1;
    g->needle_depth[0] = single_depth(g->p, &r);
    sb_puts(&g->prefix, " The pass key is");
    return g->prefix.oom ? -1 : 0;
}

static int build_passkey(gen *g, long n, sbuf *out) {
    long before = depth_pos(g->needle_depth[0], n);
    sb_puts(out, "There is an important info hidden inside a lot of irrelevant text. Find it and "
                 "memorize it. I will quiz you about the important information there.\n");
    for (long i = 0; i < before; i++) {
        if (i > 0) sb_puts(out, " ");
        sb_puts(out, NOISE);
    }
    sb_puts(out, "\n");
    sb_puts(out, g->needles[0]);
    sb_puts(out, "\n");
    for (long i = before; i < n; i++) {
        if (i > before) sb_puts(out, " ");
        sb_puts(out, NOISE);
    }
    sb_puts(out, "\nWhat is the pass key?");
    g->depth = g->needle_depth[0];
    return out->oom ? -1 : 0;
}

/* -------------------------------------------------------------------- vt */

#define VT_PREFIX " Answer: According to the chain(s) of variable assignment in the text above, %d variables are assigned the value %d, they are: "

/* Distinct names of len uppercase letters, the value, and RULER's chain
 * lines (the trailing space of the hops is RULER's). */
static void plan_chain(rng *r, vt_chain *ch, int len) {
    for (int i = 0; i < VT_VARS; i++) {
        bool dup;
        do {
            for (int j = 0; j < len; j++) ch->names[i][j] = (char)('A' + rng_below(r, 26));
            ch->names[i][len] = 0;
            dup = false;
            for (int k = 0; k < i; k++) dup = dup || !strcmp(ch->names[k], ch->names[i]);
        } while (dup);
    }
    ch->value = 10000 + (int)rng_below(r, 89999);   /* np.random.randint(10000, 99999) */
    snprintf(ch->lines[0], sizeof ch->lines[0], "VAR %s = %d", ch->names[0], ch->value);
    for (int j = 0; j < VT_HOPS; j++)
        snprintf(ch->lines[j + 1], sizeof ch->lines[j + 1], "VAR %s = VAR %s ", ch->names[j + 1],
                 ch->names[j]);
}

/* n noise lines with the chain's lines inserted, in order, before randomly
 * chosen distinct noise lines; all joined with spaces as RULER does. */
static void vt_context(gen *g, const vt_chain *ch, long n, sbuf *out) {
    rng r = rng_stream(ch->base, "haystack");
    long pos[VT_VARS];
    for (int i = 0; i < VT_VARS; i++) {
        bool dup;
        do {
            pos[i] = (long)rng_below(&r, (uint64_t)n);
            dup = false;
            for (int k = 0; k < i; k++) dup = dup || pos[k] == pos[i];
        } while (dup);
    }
    for (int i = 1; i < VT_VARS; i++)   /* insertion sort: five elements */
        for (int k = i; k > 0 && pos[k - 1] > pos[k]; k--) {
            long t = pos[k];
            pos[k] = pos[k - 1];
            pos[k - 1] = t;
        }
    bool first = true;
    int next = 0;
    for (long s = 0; s < n; s++) {
        if (next < VT_VARS && pos[next] == s) sb_item(out, " ", &first, ch->lines[next++]);
        sb_item(out, " ", &first, NOISE_LINE);
    }
    g->depth = (double)pos[0] / (double)n;
}

/* RULER's one-shot example: the same task with 3-letter names, its template
 * flattened to single spaces (RULER strips the model template from it that
 * way), its answer prefix, and the answer. */
static int build_vt_icl(gen *g, long n, sbuf *out) {
    const vt_chain *ch = &g->icl_chain;
    sb_puts(out, "Memorize and track the chain(s) of variable assignment hidden in the following text. ");
    vt_context(g, ch, n, out);
    sb_printf(out, " Question: Find all variables that are assigned the value %d in the text above.",
              ch->value);
    sb_printf(out, VT_PREFIX, VT_VARS, ch->value);
    sb_puts(out, " ");
    for (int i = 0; i < VT_VARS; i++) {
        if (i > 0) sb_puts(out, " ");
        sb_puts(out, ch->names[i]);
    }
    return out->oom ? -1 : 0;
}

static int build_vt(gen *g, long n, sbuf *out) {
    const vt_chain *ch = &g->chain;
    sb_put(out, g->icl.s, g->icl.n);
    sb_puts(out, "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n");
    vt_context(g, ch, n, out);
    sb_printf(out, "\nQuestion: Find all variables that are assigned the value %d in the text above.",
              ch->value);
    return out->oom ? -1 : 0;
}

/* ------------------------------------------------------------------- cwe */

#define CWE_HEAD "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n"
#define CWE_QUESTION "\nQuestion: What are the 10 most common words in the above list?"
#define CWE_PREFIX " Answer: The top 10 words that appear most often in the list are:"

/* "1. word 2. word ..." of the common words repeated cw times and the others
 * ucw times, shuffled. */
static int cwe_list(rng *r, const int *common, const int *uncommon, long n_uncommon, int cw, int ucw,
                    sbuf *out) {
    size_t total = (size_t)CWE_COMMON * (size_t)cw + (size_t)n_uncommon * (size_t)ucw, k = 0;
    int *list = malloc((total ? total : 1) * sizeof *list);
    if (!list) return -1;
    for (int i = 0; i < CWE_COMMON; i++)
        for (int j = 0; j < cw; j++) list[k++] = common[i];
    for (long i = 0; i < n_uncommon; i++)
        for (int j = 0; j < ucw; j++) list[k++] = uncommon[i];
    shuffle(r, list, total);
    for (size_t i = 0; i < total; i++) sb_printf(out, "%s%zu. %s", i ? " " : "", i + 1, pool_word(list[i]));
    free(list);
    return out->oom ? -1 : 0;
}

/* Draws k distinct entries of idx[0..n) into idx[0..k) (partial Fisher-Yates). */
static void draw(rng *r, int *idx, int n, int k) {
    for (int i = 0; i < k && i < n; i++) {
        int j = i + (int)rng_below(r, (uint64_t)(n - i));
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

static int plan_cwe(gen *g) {
    rng r = rng_stream(g->base, "plan");
    int W = pool_size();
    g->pool = malloc((size_t)W * sizeof *g->pool);
    g->scratch = malloc((size_t)W * sizeof *g->scratch);
    if (!g->pool || !g->scratch) return -1;

    /* RULER: below 4096 tokens the words repeat 6 and 1 times (the example
     * 3 and 1, with 20 words); from 4096 on 30 and 3 (the example 10 and 3,
     * with 40 words). */
    bool small = g->p->length < 4096;
    g->freq_cw = small ? 6 : 30;
    g->freq_ucw = small ? 1 : 3;
    int ex_words = small ? 20 : 40, ex_cw = small ? 3 : 10, ex_ucw = small ? 1 : 3;

    /* The example, drawn from the whole vocabulary as RULER draws it. */
    for (int i = 0; i < W; i++) g->pool[i] = i;
    draw(&r, g->pool, W, ex_words);
    sb_puts(&g->example, CWE_HEAD);
    if (cwe_list(&r, g->pool, g->pool + CWE_COMMON, ex_words - CWE_COMMON, ex_cw, ex_ucw, &g->example))
        return -1;
    sb_puts(&g->example, CWE_QUESTION CWE_PREFIX);
    /* RULER appends the answer right after "are:", without a space. */
    for (int i = 0; i < CWE_COMMON; i++)
        sb_printf(&g->example, "%s%d. %s", i ? " " : "", i + 1, pool_word(g->pool[i]));
    sb_puts(&g->example, "\n");

    /* The real common words; the rest of the vocabulary is the pool the
     * uncommon words come from. */
    for (int i = 0; i < W; i++) g->pool[i] = i;
    draw(&r, g->pool, W, CWE_COMMON);
    for (int i = 0; i < CWE_COMMON; i++) {
        g->common[i] = g->pool[i];
        snprintf(g->refs[i], ITEM_LEN, "%s", pool_word(g->pool[i]));
    }
    g->n_refs = CWE_COMMON;
    g->n_pool = W - CWE_COMMON;
    memmove(g->pool, g->pool + CWE_COMMON, (size_t)g->n_pool * sizeof *g->pool);
    sb_puts(&g->prefix, CWE_PREFIX);
    return g->example.oom || g->prefix.oom ? -1 : 0;
}

static int build_cwe(gen *g, long n, sbuf *out) {
    rng r = rng_stream(g->base, "haystack");
    memcpy(g->scratch, g->pool, (size_t)g->n_pool * sizeof *g->scratch);
    draw(&r, g->scratch, g->n_pool, (int)n);
    sb_put(out, g->example.s, g->example.n);
    sb_puts(out, CWE_HEAD);
    if (cwe_list(&r, g->common, g->scratch, n, g->freq_cw, g->freq_ucw, out)) return -1;
    sb_puts(out, CWE_QUESTION);
    g->depth = -1;
    return out->oom ? -1 : 0;
}

/* ------------------------------------------------------------------- fwe */

/* zeta(2) = pi^2 / 6: the normaliser of RULER's Zipf counts with alpha = 2. */
#define ZETA2 1.6449340668482264

static int plan_fwe(gen *g) {
    rng r = rng_stream(g->base, "plan");
    g->vocab = malloc(FWE_VOCAB * sizeof *g->vocab);
    uint64_t *packed = malloc(FWE_VOCAB * sizeof *packed);
    if (!g->vocab || !packed) {
        free(packed);
        return -1;
    }
    /* Distinct random 6-letter coded words; a word packs into 64 bits, which
     * makes the duplicate check a compare of integers. */
    for (int i = 0; i < FWE_VOCAB; i++) {
        bool dup;
        do {
            packed[i] = 0;
            for (int j = 0; j < FWE_WORDLEN; j++) {
                char c = (char)('a' + rng_below(&r, 26));
                g->vocab[i][j] = c;
                packed[i] = packed[i] << 8 | (unsigned char)c;
            }
            g->vocab[i][FWE_WORDLEN] = 0;
            dup = false;
            for (int k = 0; k < i && !dup; k++) dup = packed[k] == packed[i];
        } while (dup);
    }
    free(packed);
    /* RULER treats the top-ranked word as noise and asks for ranks 2..4. */
    snprintf(g->vocab[0], sizeof g->vocab[0], "....");
    for (int i = 0; i < 3; i++) snprintf(g->refs[i], ITEM_LEN, "%s", g->vocab[i + 1]);
    g->n_refs = 3;
    sb_puts(&g->prefix, " Answer: According to the coded text above, the three most frequently appeared words are:");
    return g->prefix.oom ? -1 : 0;
}

/* n words in Zipf proportions: the word of rank k appears
 * int(n * k^-2 / zeta(2)) times; shuffled. */
static int build_fwe(gen *g, long n, sbuf *out) {
    rng r = rng_stream(g->base, "haystack");
    size_t total = 0;
    for (int k = 1; k <= FWE_VOCAB; k++) total += (size_t)((double)n / ((double)k * k) / ZETA2);
    int *list = malloc((total ? total : 1) * sizeof *list);
    if (!list) return -1;
    size_t m = 0;
    for (int k = 1; k <= FWE_VOCAB; k++) {
        size_t cnt = (size_t)((double)n / ((double)k * k) / ZETA2);
        for (size_t j = 0; j < cnt; j++) list[m++] = k - 1;
    }
    shuffle(&r, list, m);
    sb_puts(out, "Read the following coded text and track the frequency of each coded word. Find the "
                 "three most frequently appeared coded words. ");
    for (size_t i = 0; i < m; i++) {
        if (i > 0) sb_puts(out, " ");
        sb_puts(out, g->vocab[list[i]]);
    }
    free(list);
    sb_puts(out, "\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are "
                 "the three most frequently appeared words in the above coded text?");
    g->depth = -1;
    return out->oom ? -1 : 0;
}

/* ---------------------------------------------------------------- fitting */

/* The search for the largest haystack size whose prompt fits the budget:
 * lo fits (its text is kept in best), hi does not (-1: none seen yet). */
typedef struct {
    gen *g;
    build_fn build;
    const char *prefix;
    int budget;
    long lo, hi;
    int c_lo, c_hi;
    double best_depth;
    sbuf best, trial;
    char *err;
    size_t errlen;
} search;

/* Builds and counts size n: 1 if it fits (n becomes lo), 0 if not (n
 * becomes hi), -1 on error. */
static int probe(search *s, long n) {
    sb_clear(&s->trial);
    if (s->build(s->g, n, &s->trial) != 0 || s->trial.oom || !s->trial.s) {
        set_err(s->err, s->errlen, "%s: out of memory", s->g->name);
        return -1;
    }
    int c = s->g->p->count(s->trial.s, s->prefix, s->g->p->count_user);
    if (c < 0) {
        set_err(s->err, s->errlen, "%s: the token counter failed", s->g->name);
        return -1;
    }
    if (c <= s->budget) {
        sbuf t = s->best;
        s->best = s->trial;
        s->trial = t;
        s->lo = n;
        s->c_lo = c;
        s->best_depth = s->g->depth;
        return 1;
    }
    s->hi = n;
    s->c_hi = c;
    return 0;
}

/* Largest n in [min_n, max_n] that fits: 0, 1 if not even min_n fits, -1
 * on error. Every probe tokenizes a whole prompt, so the number of probes
 * matters. The prompt grows about linearly with n: grow along the average
 * rate seen so far, aiming a little past the budget, until a size does not
 * fit; then interpolate inside the bracket, galloping from the moving end
 * when interpolation keeps landing on one side (the rate is only roughly
 * constant: essay sentences differ in length). The result fits and n + 1 does not (or
 * n = max_n), which is what "largest" means when the count is not exactly
 * monotonic in n. */
static int fit(search *s, long min_n, long max_n) {
    s->lo = s->hi = -1;
    int f = probe(s, min_n);
    if (f <= 0) return f < 0 ? -1 : 1;
    const int c_min = s->c_lo;

    long next = min_n + 8;
    for (int guard = 0; s->hi < 0 && guard < 64; guard++) {
        if (s->lo >= max_n) return 0;   /* all the material fits */
        if (next > max_n) next = max_n;
        if (next <= s->lo) next = s->lo + 1;
        if (probe(s, next) < 0) return -1;
        if (s->hi >= 0) break;
        double rate = (double)(s->c_lo - c_min) / (double)(s->lo - min_n);
        long grow = s->lo - min_n + 8;   /* no growth seen: double */
        if (rate > 0) {
            double want = (double)(s->budget - s->c_lo) / rate * 1.1 + 2;
            grow = want < (double)max_n ? (long)want : max_n;
        }
        long cap = 16 * (s->lo - min_n) + 64;   /* a rate from a few units may be far off */
        next = s->lo + (grow < cap ? grow : cap);
    }

    int streak = 0, last = -1;   /* probes in a row that landed on the same side */
    while (s->hi >= 0 && s->hi - s->lo > 1) {
        long m;
        if (streak >= 2) {   /* gallop from the end that keeps moving */
            long d = 1L << (streak < 30 ? streak : 30);
            m = last == 1 ? s->lo + d : s->hi - d;
        } else {
            double t = (double)(s->budget - s->c_lo) / (double)(s->c_hi - s->c_lo);
            m = s->lo + (long)(t * (double)(s->hi - s->lo));
        }
        if (m <= s->lo) m = s->lo + 1;
        if (m >= s->hi) m = s->hi - 1;
        f = probe(s, m);
        if (f < 0) return -1;
        streak = f == last ? streak + 1 : 1;
        last = f;
    }
    return 0;
}

/* ------------------------------------------------------------------- vt plan */

static int plan_vt(gen *g, char *err, size_t errlen) {
    rng r = rng_stream(g->base, "plan");
    plan_chain(&r, &g->chain, 5);
    g->chain.base = g->base;
    for (int i = 0; i < VT_VARS; i++) snprintf(g->refs[i], ITEM_LEN, "%s", g->chain.names[i]);
    g->n_refs = VT_VARS;
    sb_printf(&g->prefix, VT_PREFIX, VT_VARS, g->chain.value);

    /* RULER makes one example per data set, at max_seq_length 500; ours
     * depends on the seed only, so it is the same for every sample and
     * length of a run. */
    uint64_t icl_base = fnv1a_str(fnv1a_u64(FNV_OFFSET, g->p->seed), "vt-icl");
    rng ri = rng_stream(icl_base, "plan");
    plan_chain(&ri, &g->icl_chain, 3);
    g->icl_chain.base = icl_base;
    search s = {.g = g, .build = build_vt_icl, .prefix = "", .budget = VT_ICL_LENGTH - TOKENS_VT,
                .err = err, .errlen = errlen};
    int rc = fit(&s, VT_VARS, VT_ICL_LENGTH);
    if (rc == 1)
        set_err(err, errlen, "vt: the one-shot example does not fit in %d tokens (%d needed)",
                VT_ICL_LENGTH, s.c_hi + TOKENS_VT);
    if (rc == 0) {
        sb_put(&g->icl, s.best.s, s.best.n);
        sb_puts(&g->icl, "\n\n\n\n");   /* RULER: example + "\n\n", then "\n\n" before the task */
        if (g->icl.oom || g->prefix.oom) {
            set_err(err, errlen, "vt: out of memory");
            rc = -1;
        }
    }
    sb_free(&s.best);
    sb_free(&s.trial);
    return rc == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- samples */

static void gen_free(gen *g) {
    sb_free(&g->prefix);
    sb_free(&g->head);
    sb_free(&g->question);
    sb_free(&g->icl);
    sb_free(&g->example);
    free(g->pool);
    free(g->scratch);
    free(g->vocab);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static bool is_essay_task(gw_task t) {
    return t <= GW_TASK_NIAH_MULTIQUERY && NIAH_CONFIG[t].hay == HAY_ESSAY;
}

int gw_eval_sample_make(const gw_eval_sample_params *p, gw_eval_sample *out, char *err, size_t errlen) {
    if (!out) {
        set_err(err, errlen, "ruler: no output sample");
        return -1;
    }
    memset(out, 0, sizeof *out);
    out->depth = -1;
    if (!p) {
        set_err(err, errlen, "ruler: no parameters");
        return -1;
    }
    if ((int)p->task < 0 || p->task >= GW_TASK_COUNT) {
        set_err(err, errlen, "ruler: unknown task %d", (int)p->task);
        return -1;
    }
    const char *name = TASK_NAMES[p->task];
    if (!p->count) {
        set_err(err, errlen, "%s: no token counter", name);
        return -1;
    }
    if (p->length <= 0) {
        set_err(err, errlen, "%s: length %d must be positive", name, p->length);
        return -1;
    }
    if (is_essay_task(p->task)) {
        if (!p->corpus) {
            set_err(err, errlen, "%s: needs an essay corpus (none given)", name);
            return -1;
        }
        if (gw_corpus_n_sentences(p->corpus) == 0) {
            set_err(err, errlen, "%s: the essay corpus has no sentences", name);
            return -1;
        }
    }

    gen g = {.p = p, .name = name, .depth = -1};
    uint64_t h = fnv1a_u64(FNV_OFFSET, p->seed);
    h = fnv1a_str(h, name);
    h = fnv1a_u64(h, (uint64_t)(int64_t)p->length);
    g.base = fnv1a_u64(h, (uint64_t)(int64_t)p->index);

    /* Per task: the plan, the builder, and the sizes the fit may try. For
     * the essay and cwe, max_n is all the material there is; elsewhere every
     * unit costs at least one token, so max_n is never reached. */
    build_fn build = NULL;
    long min_n = 1, max_n = (long)p->length + 1;
    const char *unit = "lines", *source = NULL;
    int rc = 0;
    switch (p->task) {
    case GW_TASK_VT:
        g.max_new_tokens = TOKENS_VT;
        build = build_vt;
        min_n = VT_VARS;
        unit = "noise lines";
        if (plan_vt(&g, err, errlen)) {
            gen_free(&g);
            return -1;
        }
        break;
    case GW_TASK_CWE:
        g.max_new_tokens = TOKENS_CWE;
        build = build_cwe;
        rc = plan_cwe(&g);
        max_n = g.n_pool;
        unit = "uncommon words";
        source = "word list";
        break;
    case GW_TASK_FWE:
        g.max_new_tokens = TOKENS_FWE;
        build = build_fwe;
        rc = plan_fwe(&g);
        min_n = 100;   /* enough words that ranks 2..4 have distinct counts */
        max_n = 2 * (long)p->length + 1000;
        unit = "words";
        break;
    case GW_TASK_PASSKEY:
        g.max_new_tokens = TOKENS_PASSKEY;
        build = build_passkey;
        rc = plan_passkey(&g);
        unit = "filler repetitions";
        break;
    default:
        g.cfg = &NIAH_CONFIG[p->task];
        g.max_new_tokens = TOKENS_NIAH;
        build = build_niah;
        rc = plan_niah(&g);
        if (g.cfg->hay == HAY_ESSAY) {
            max_n = (long)gw_corpus_n_sentences(p->corpus);
            unit = "sentences";
            source = "essay corpus";
        }
        break;
    }
    if (rc) {
        set_err(err, errlen, "%s: out of memory", name);
        gen_free(&g);
        return -1;
    }
    int budget = p->length - g.max_new_tokens;
    if (budget <= 0) {
        set_err(err, errlen, "%s: length %d is too small: the answer budget alone is %d tokens", name,
                p->length, g.max_new_tokens);
        gen_free(&g);
        return -1;
    }

    search s = {.g = &g, .build = build, .prefix = g.prefix.s, .budget = budget, .err = err,
                .errlen = errlen};
    rc = fit(&s, min_n, max_n);
    if (rc == 1)
        set_err(err, errlen,
                "%s: length %d is too small: the smallest haystack (%ld %s) already needs %d prompt "
                "tokens + %d to generate",
                name, p->length, min_n, unit, s.c_hi, g.max_new_tokens);
    if (rc == 0 && source && s.hi < 0 && s.lo == max_n) {
        set_err(err, errlen, "%s: the %s is too short for length %d: all of it (%ld %s) makes %d tokens",
                name, source, p->length, max_n, unit, s.c_lo + g.max_new_tokens);
        rc = -1;
    }
    if (rc == 0) {
        out->input = s.best.s;
        s.best.s = NULL;
        out->answer_prefix = dup_str(g.prefix.s);
        out->refs = calloc((size_t)g.n_refs, sizeof *out->refs);
        bool ok = out->input && out->answer_prefix && out->refs;
        for (int i = 0; ok && i < g.n_refs; i++) {
            out->refs[i] = dup_str(g.refs[i]);
            if (!out->refs[i]) ok = false;
            else out->n_refs = i + 1;
        }
        out->max_new_tokens = g.max_new_tokens;
        out->n_prompt_tokens = s.c_lo;
        out->depth = s.best_depth;
        if (!ok) {
            set_err(err, errlen, "%s: out of memory", name);
            gw_eval_sample_free(out);
            rc = -1;
        }
    }
    sb_free(&s.best);
    sb_free(&s.trial);
    gen_free(&g);
    return rc == 0 ? 0 : -1;
}

void gw_eval_sample_free(gw_eval_sample *s) {
    if (!s) return;
    free(s->input);
    free(s->answer_prefix);
    if (s->refs)
        for (int i = 0; i < s->n_refs; i++) free(s->refs[i]);
    free(s->refs);
    memset(s, 0, sizeof *s);
    s->depth = -1;
}

/* ---------------------------------------------------------------- scoring */

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

/* ASCII case-insensitive substring test (the references are ASCII; other
 * bytes must match exactly). */
static bool contains_nocase(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    if (n == 0) return true;
    for (const char *h = hay; *h; h++) {
        size_t i = 0;
        while (i < n && h[i] && lower((unsigned char)h[i]) == lower((unsigned char)needle[i])) i++;
        if (i == n) return true;
    }
    return false;
}

double gw_eval_sample_score(const gw_eval_sample *s, const char *prediction) {
    if (!s || !s->refs || s->n_refs <= 0 || !prediction) return 0.0;
    int found = 0;
    for (int i = 0; i < s->n_refs; i++)
        if (s->refs[i] && contains_nocase(prediction, s->refs[i])) found++;
    return 100.0 * found / s->n_refs;
}
