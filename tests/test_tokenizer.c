/* Tokenizer tests: token ids equal Hugging Face's (goldens made by
 * scripts/make_tokenizer_golden.py) for
 *   - SmolLM2 (byte-level BPE, "smollm" pre-tokenizer; reference: the
 *     `tokenizers` library on the GGUF's vocabulary) over the corpus in
 *     tests/data/tokenizer/corpus.txt, with and without special-token parsing,
 *     and the whole of War and Peace (count + checksum; also timed);
 *   - a small SentencePiece BPE model (reference: the `sentencepiece` package),
 *     tests/data/tokenizer/spm.gguf;
 *   - Qwen2 ("qwen2" pre-tokenizer) when models/qwen2-vocab.gguf is present
 *     (scripts/fetch_qwen2_vocab.py), skipped with a message otherwise;
 * plus decode round trips, invalid UTF-8, edge cases and concurrent use. */
#include "test.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "model/gguf.h"
#include "tokenizer/tokenizer.h"

/* ---- golden file helpers ---- */

typedef struct { char **v; size_t n; } lines;

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); s = NULL; }
    fclose(f);
    if (s) { s[n] = 0; if (len) *len = (size_t)n; }
    return s;
}

/* Splits a file into lines (the buffer is kept in v[0]'s allocation). */
static lines read_lines(const char *rel) {
    lines L = {0};
    char *s = read_file(test_path(rel), NULL);
    if (!s) return L;
    size_t cap = 1024;
    L.v = malloc(cap * sizeof(char *));
    for (char *p = s; *p;) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        if (L.n == cap) { cap *= 2; L.v = realloc(L.v, cap * sizeof(char *)); }
        L.v[L.n++] = p;
        if (!e) break;
        p = e + 1;
    }
    if (L.n == 0) free(s);
    return L;
}

static void free_lines(lines *L) {
    if (L->n) free(L->v[0]);
    free(L->v);
}

/* Parses space-separated ids; returns the count (ids malloc'd). */
static size_t parse_ids(const char *s, size_t slen, int32_t **ids) {
    size_t cap = 16, n = 0;
    *ids = malloc(cap * sizeof(int32_t));
    const char *p = s, *end = s + slen;
    while (p < end) {
        while (p < end && *p == ' ') p++;
        if (p >= end) break;
        char *q;
        long v = strtol(p, &q, 10);
        if (q == p) break;
        if (n == cap) { cap *= 2; *ids = realloc(*ids, cap * sizeof(int32_t)); }
        (*ids)[n++] = (int32_t)v;
        p = q;
    }
    return n;
}

static bool ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof(int32_t)) == 0);
}

static void print_ids(const char *what, const int32_t *v, size_t n) {
    fprintf(stderr, "    %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", v[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t ids_hash(const int32_t *ids, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint32_t)ids[i]) * 1099511628211ull;
    return h;
}

/* ---- golden comparison ---- */

/* Compares every corpus line with <name>_ids.txt. spm_mode: the reference
 * (sentencepiece) has no special-token parsing, so only plain-text ids are
 * compared, plus the BOS-prefixed variant. */
static void compare_golden(const gw_tokenizer *t, const char *name, bool spm_mode) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/data/tokenizer/%s_ids.txt", name);
    lines C = read_lines("tests/data/tokenizer/corpus.txt");
    lines G = read_lines(rel);
    CHECK_MSG(C.n >= 2000, "corpus has %zu lines", C.n);
    CHECK_MSG(G.n == C.n, "%s: %zu golden lines for %zu corpus lines", rel, G.n, C.n);
    size_t bad_ids = 0, bad_dec = 0, n_special_differs = 0, n_lossy = 0;
    for (size_t i = 0; i < C.n && i < G.n; i++) {
        size_t tlen;
        char *text = test_unescape(C.v[i], &tlen);
        char *f0 = G.v[i], *f1 = strchr(f0, '\t'), *f2 = f1 ? strchr(f1 + 1, '\t') : NULL;
        if (!f1 || !f2) { CHECK_MSG(0, "%s line %zu malformed", rel, i + 1); free(text); continue; }
        int32_t *want_sp, *want_plain;
        size_t n_sp = parse_ids(f0, (size_t)(f1 - f0), &want_sp);
        size_t n_plain;
        if (f1[1] == '=' && f1 + 2 == f2) n_plain = parse_ids(f0, (size_t)(f1 - f0), &want_plain);
        else { n_plain = parse_ids(f1 + 1, (size_t)(f2 - f1 - 1), &want_plain); n_special_differs++; }
        size_t elen;
        char *expect = strcmp(f2 + 1, "=") == 0 ? NULL : test_unescape(f2 + 1, &elen);
        if (expect) n_lossy++;
        else { expect = malloc(tlen + 1); memcpy(expect, text, tlen + 1); elen = tlen; }

        int32_t *got;
        int64_t ng = gw_tokenize(t, text, tlen, false, false, &got);
        bool ok = ng >= 0 && ids_equal(got, (size_t)ng, want_plain, n_plain);
        if (!ok && bad_ids++ < 8) {
            fprintf(stderr, "%s line %zu (plain text) differs: %.120s\n", name, i + 1, C.v[i]);
            print_ids("want", want_plain, n_plain);
            print_ids("got ", got, ng < 0 ? 0 : (size_t)ng);
        }
        size_t dlen;
        char *dec = gw_detokenize(t, got, ng < 0 ? 0 : (size_t)ng, false, &dlen);
        if (!(dlen == elen && memcmp(dec, expect, elen) == 0) && bad_dec++ < 8)
            fprintf(stderr, "%s line %zu: decode differs: got '%.80s' want '%.80s'\n", name, i + 1, dec, expect);
        free(dec);
        if (spm_mode) {
            /* with BOS: same ids after it, and decoding still drops the dummy prefix space */
            int32_t *gb;
            int64_t nb = gw_tokenize(t, text, tlen, true, false, &gb);
            bool okb = nb == ng + 1 && gb[0] == gw_tokenizer_bos(t) && ids_equal(gb + 1, (size_t)ng, got, (size_t)ng);
            if (!okb && bad_ids++ < 8) fprintf(stderr, "%s line %zu: BOS variant differs\n", name, i + 1);
            dec = gw_detokenize(t, gb, (size_t)nb, false, &dlen);
            if (!(dlen == elen && memcmp(dec, expect, elen) == 0) && bad_dec++ < 8)
                fprintf(stderr, "%s line %zu: decode after BOS differs: got '%.80s'\n", name, i + 1, dec);
            free(dec);
            free(gb);
        } else {
            int32_t *gs;
            int64_t ns = gw_tokenize(t, text, tlen, false, true, &gs);
            bool oks = ns >= 0 && ids_equal(gs, (size_t)ns, want_sp, n_sp);
            if (!oks && bad_ids++ < 8) {
                fprintf(stderr, "%s line %zu (parse_special) differs: %.120s\n", name, i + 1, C.v[i]);
                print_ids("want", want_sp, n_sp);
                print_ids("got ", gs, ns < 0 ? 0 : (size_t)ns);
            }
            /* rendering the special tokens gives the text back as well */
            dec = gw_detokenize(t, gs, ns < 0 ? 0 : (size_t)ns, true, &dlen);
            if (!(dlen == elen && memcmp(dec, expect, elen) == 0) && bad_dec++ < 8)
                fprintf(stderr, "%s line %zu: decode (specials rendered) differs: got '%.80s'\n", name, i + 1, dec);
            free(dec);
            free(gs);
        }
        free(got);
        free(want_sp);
        free(want_plain);
        free(expect);
        free(text);
    }
    CHECK_MSG(bad_ids == 0, "%s: %zu id mismatches", name, bad_ids);
    CHECK_MSG(bad_dec == 0, "%s: %zu decode mismatches", name, bad_dec);
    printf("%s: %zu corpus lines compared with the reference (%zu where parse_special changes the ids, "
           "%zu whose decode is not the input: invalid UTF-8 or bytes without a token), %zu id and %zu "
           "decode mismatches\n", name, C.n, n_special_differs, n_lossy, bad_ids, bad_dec);
    free_lines(&C);
    free_lines(&G);
}

/* Tokenizes War and Peace: compares count and checksum with the reference,
 * checks the decode round trip, and reports the speed. */
static void book(const gw_tokenizer *t, const char *name) {
    size_t len;
    char *text = read_file(test_path("../shared/data/war_and_peace.txt"), &len);
    if (!text) { printf("war_and_peace.txt not found, book test skipped\n"); return; }
    char rel[256];
    snprintf(rel, sizeof rel, "tests/data/tokenizer/%s_book.txt", name);
    char *g = read_file(test_path(rel), NULL);
    CHECK_MSG(g != NULL, "%s missing", rel);
    unsigned long long want_n = 0, want_h = 0;
    if (g) CHECK(sscanf(g, "%llu %llu", &want_n, &want_h) == 2);
    free(g);
    int32_t *ids;
    double t0 = now_s();
    int64_t n = gw_tokenize(t, text, len, false, false, &ids);
    double t1 = now_s();
    CHECK(n > 0);
    CHECK_MSG((unsigned long long)n == want_n, "%s: %lld tokens, reference %llu", name, (long long)n, want_n);
    CHECK_MSG(ids_hash(ids, (size_t)n) == want_h, "%s: ids checksum differs from the reference", name);
    size_t dlen;
    double t2 = now_s();
    char *dec = gw_detokenize(t, ids, (size_t)n, false, &dlen);
    double t3 = now_s();
    CHECK(dlen == len && memcmp(dec, text, len) == 0);
    printf("%s: War and Peace (%zu bytes) -> %lld tokens in %.3f s (%.0f tokens/s, %.1f MB/s); decode %.3f s\n", name,
           len, (long long)n, t1 - t0, (double)n / (t1 - t0), (double)len / (t1 - t0) / 1e6, t3 - t2);
    free(dec);
    free(ids);
    free(text);
}

/* ---- concurrency ---- */

typedef struct {
    const gw_tokenizer *t;
    lines *corpus;
    size_t start, step;
    int32_t **ids;
    int64_t *n;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    for (int rep = 0; rep < 2; rep++)
        for (size_t i = j->start; i < j->corpus->n; i += j->step) {
            size_t len;
            char *text = test_unescape(j->corpus->v[i], &len);
            int32_t *ids;
            int64_t n = gw_tokenize(j->t, text, len, false, true, &ids);
            if (rep == 0) { j->ids[i] = ids; j->n[i] = n; }
            else {
                if (n != j->n[i] || !ids_equal(ids, (size_t)n, j->ids[i], (size_t)j->n[i])) j->n[i] = -2;
                free(ids);
            }
            free(text);
        }
    return NULL;
}

static void concurrency(const gw_tokenizer *t) {
    lines C = read_lines("tests/data/tokenizer/corpus.txt");
    int32_t **ids = calloc(C.n, sizeof(int32_t *));
    int64_t *n = calloc(C.n, sizeof(int64_t));
    enum { NT = 4 };
    pthread_t th[NT];
    job jobs[NT];
    /* interleaved so that threads work on the same tokenizer at the same time */
    for (int k = 0; k < NT; k++) {
        job j = {t, &C, (size_t)k, NT, ids, n};
        jobs[k] = j;
        pthread_create(&th[k], NULL, run_job, &jobs[k]);
    }
    for (int k = 0; k < NT; k++) pthread_join(th[k], NULL);
    size_t bad = 0;
    for (size_t i = 0; i < C.n; i++) {
        size_t len;
        char *text = test_unescape(C.v[i], &len);
        int32_t *ref;
        int64_t nr = gw_tokenize(t, text, len, false, true, &ref);
        if (n[i] != nr || !ids_equal(ids[i], (size_t)n[i], ref, (size_t)nr)) bad++;
        free(ref);
        free(text);
        free(ids[i]);
    }
    CHECK_MSG(bad == 0, "%zu lines tokenized differently by %d concurrent threads", bad, (int)NT);
    free(ids);
    free(n);
    free_lines(&C);
}

/* ---- unit checks on SmolLM2 ---- */

static int64_t tok(const gw_tokenizer *t, const char *s, bool special, int32_t **ids) {
    return gw_tokenize(t, s, strlen(s), false, special, ids);
}

static void smollm2_units(const gw_tokenizer *t) {
    CHECK(gw_tokenizer_n_vocab(t) == 49152);
    CHECK(gw_tokenizer_bos(t) == 1);
    CHECK(gw_tokenizer_eos(t) == 2);
    CHECK(!gw_tokenizer_add_bos(t));
    CHECK(gw_token_lookup(t, "<|im_start|>") == 1);
    CHECK(gw_token_lookup(t, "<|im_end|>") == 2);
    CHECK(gw_token_lookup(t, "no such token at all") == -1);
    CHECK(gw_token_lookup(t, "") == -1);
    CHECK(strcmp(gw_token_text(t, 0), "<|endoftext|>") == 0);
    CHECK(gw_token_text(t, -1) == NULL && gw_token_text(t, 49152) == NULL);
    CHECK(gw_token_type(t, 1) == GW_TOKEN_CONTROL && gw_token_type(t, 100) == GW_TOKEN_NORMAL);
    /* end of generation: <|endoftext|> and <|im_end|> (eos), not <|im_start|> */
    CHECK(gw_token_is_eog(t, 0) && gw_token_is_eog(t, 2));
    CHECK(!gw_token_is_eog(t, 1) && !gw_token_is_eog(t, 100) && !gw_token_is_eog(t, -5) && !gw_token_is_eog(t, 1 << 20));

    int32_t *ids;
    int64_t n = tok(t, "", true, &ids);
    CHECK(n == 0 && ids != NULL);
    free(ids);
    n = gw_tokenize(t, "", 0, true, true, &ids);
    CHECK(n == 1 && ids[0] == 1);
    free(ids);
    n = gw_tokenize(t, "Hi", 2, true, false, &ids);
    CHECK(n >= 2 && ids[0] == 1);
    free(ids);
    n = tok(t, "<|im_start|>user", true, &ids);
    CHECK(n == 2 && ids[0] == 1);
    free(ids);
    n = tok(t, "<|im_start|>user", false, &ids);
    CHECK(n > 2 && ids[0] != 1);
    free(ids);

    /* pieces */
    char buf[64];
    int32_t sp = gw_token_lookup(t, "\xC4\xA0"); /* "Ġ" is the space byte */
    CHECK(sp >= 0);
    CHECK(gw_token_to_piece(t, sp, false, buf, sizeof buf) == 1 && buf[0] == ' ');
    CHECK(gw_token_to_piece(t, 1, false, buf, sizeof buf) == 0);
    CHECK(gw_token_to_piece(t, 1, true, buf, sizeof buf) == 12 && memcmp(buf, "<|im_start|>", 12) == 0);
    memset(buf, 'z', sizeof buf);
    CHECK(gw_token_to_piece(t, 1, true, buf, 3) == 12 && memcmp(buf, "<|iz", 4) == 0);
    CHECK(gw_token_to_piece(t, -1, true, buf, sizeof buf) == 0);
    CHECK(gw_token_to_piece(t, 49152, true, buf, sizeof buf) == 0);
    /* a multi-byte character split over byte tokens comes back whole when
     * the pieces are concatenated */
    n = tok(t, "\xF0\x9F\xA4\xA3", false, &ids);
    CHECK(n >= 1);
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) total += gw_token_to_piece(t, ids[i], false, buf + total, sizeof buf - total);
    CHECK(total == 4 && memcmp(buf, "\xF0\x9F\xA4\xA3", 4) == 0);
    free(ids);

    /* invalid UTF-8 is tokenized as its U+FFFD replacement */
    int32_t *a, *b;
    int64_t na = gw_tokenize(t, "x\xff\xc3(y\xe2\x82", 7, false, false, &a);
    int64_t nb = tok(t, "x\xEF\xBF\xBD\xEF\xBF\xBD(y\xEF\xBF\xBD", false, &b);
    CHECK(na == nb && ids_equal(a, (size_t)na, b, (size_t)nb));
    free(a);
    free(b);
    /* embedded NUL is an ordinary byte */
    n = gw_tokenize(t, "a\0b", 3, false, false, &ids);
    size_t dlen;
    char *dec = gw_detokenize(t, ids, (size_t)n, false, &dlen);
    CHECK(dlen == 3 && memcmp(dec, "a\0b", 3) == 0);
    free(dec);
    free(ids);
    /* detokenize skips ids out of range */
    int32_t odd[] = {-1, 1, 49152, sp, 2};
    dec = gw_detokenize(t, odd, 5, false, &dlen);
    CHECK(dlen == 1 && strcmp(dec, " ") == 0);
    free(dec);
    dec = gw_detokenize(t, odd, 5, true, &dlen);
    CHECK(strcmp(dec, "<|im_start|> <|im_end|>") == 0);
    free(dec);

    /* a huge whitespace run and a huge word: no stack exhaustion, exact round trip */
    size_t big = 1 << 20;
    char *s = malloc(big + 2);
    memset(s, ' ', big);
    s[big] = 'a';
    n = gw_tokenize(t, s, big + 1, false, false, &ids);
    CHECK(n > 0);
    dec = gw_detokenize(t, ids, (size_t)n, false, &dlen);
    CHECK(dlen == big + 1 && memcmp(dec, s, big + 1) == 0);
    free(dec);
    free(ids);
    memset(s, 'q', big);
    n = gw_tokenize(t, s, big, false, false, &ids);
    dec = gw_detokenize(t, ids, (size_t)n, false, &dlen);
    CHECK(n > 0 && dlen == big && memcmp(dec, s, big) == 0);
    free(dec);
    free(ids);
    free(s);

    /* random bytes: no crash, and decode(encode(.)) becomes the identity
     * after a round or two: the first replaces invalid UTF-8 and drops the
     * bytes SmolLM2 has no token for (as HF does), and dropping such a byte
     * (0xF1, 0xF2 lead bytes) can orphan continuation bytes that the second
     * round replaces */
    uint64_t rng = 12345;
    for (int it = 0; it < 300; it++) {
        char r[200];
        size_t rl = (size_t)(it % 200);
        for (size_t i = 0; i < rl; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            r[i] = (char)(rng >> 56);
        }
        n = gw_tokenize(t, r, rl, false, it & 1, &ids);
        CHECK(n >= 0);
        dec = gw_detokenize(t, ids, (size_t)n, true, &dlen);
        for (int round = 0; round < 2; round++) {
            int32_t *ids2;
            int64_t n2 = gw_tokenize(t, dec, dlen, false, it & 1, &ids2);
            size_t dlen2;
            char *dec2 = gw_detokenize(t, ids2, n2 < 0 ? 0 : (size_t)n2, true, &dlen2);
            if (round == 1) CHECK(n2 >= 0 && dlen2 == dlen && memcmp(dec, dec2, dlen) == 0);
            free(ids2);
            free(dec);
            dec = dec2;
            dlen = dlen2;
        }
        free(dec);
        free(ids);
    }
}

/* The other pre-tokenizers, built on SmolLM2's vocabulary through
 * gw_tokenizer_from_params: they compile, tokenize and round-trip. */
static void other_pre_types(const gguf_file *f) {
    uint64_t n = 0, m = 0;
    gguf_vtype et;
    gguf_get_arr_info(f, "tokenizer.ggml.tokens", &et, &n);
    gguf_get_arr_info(f, "tokenizer.ggml.merges", &et, &m);
    const char **tokens = malloc(n * sizeof(char *));
    const char **merges = malloc(m * sizeof(char *));
    int32_t *types = malloc(n * sizeof(int32_t));
    for (uint64_t i = 0; i < n; i++) {
        tokens[i] = gguf_get_arr_str(f, "tokenizer.ggml.tokens", i, NULL);
        gguf_get_arr_i32(f, "tokenizer.ggml.token_type", i, &types[i]);
    }
    for (uint64_t i = 0; i < m; i++) merges[i] = gguf_get_arr_str(f, "tokenizer.ggml.merges", i, NULL);
    gw_tokenizer_params p = {.model = "gpt2", .pre = "smollm", .n_tokens = (int32_t)n, .tokens = tokens,
                             .types = types, .n_merges = (int32_t)m, .merges = merges, .bos = 1, .eos = 2,
                             .eot = -1, .eom = -1, .unk = -1, .pad = -1, .add_bos = -1, .add_eos = -1,
                             .add_space_prefix = -1};
    char err[256];
    const char *text = "Hello world, it's 2024! \xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 12345  \n\n\tok'LL";
    gw_tokenizer *ref = gw_tokenizer_from_params(&p, err, sizeof err);
    CHECK(ref != NULL);
    const char *pres[] = {"gpt2", "gpt-2", "default", "qwen2", "llama-bpe", "llama3", "starcoder", NULL};
    for (int k = 0; pres[k]; k++) {
        p.pre = pres[k];
        gw_tokenizer *t = gw_tokenizer_from_params(&p, err, sizeof err);
        CHECK_MSG(t != NULL, "pre %s: %s", pres[k], err);
        if (!t) continue;
        int32_t *ids;
        int64_t cnt = gw_tokenize(t, text, strlen(text), false, true, &ids);
        size_t dlen;
        char *dec = gw_detokenize(t, ids, (size_t)cnt, false, &dlen);
        CHECK_MSG(dlen == strlen(text) && memcmp(dec, text, dlen) == 0, "pre %s round trip", pres[k]);
        /* llama-bpe defaults to adding BOS, as in llama.cpp */
        CHECK(gw_tokenizer_add_bos(t) == (strcmp(pres[k], "llama-bpe") == 0 || strcmp(pres[k], "llama3") == 0));
        free(dec);
        free(ids);
        gw_tokenizer_free(t);
    }
    /* digits: smollm splits them one by one (its vocabulary has no
     * multi-digit tokens, so only the count is checked) */
    int32_t *a;
    int64_t na = gw_tokenize(ref, "12345678", 8, false, false, &a);
    CHECK(na == 8);
    free(a);
    gw_tokenizer_free(ref);

    p.pre = "no-such-pre";
    CHECK(gw_tokenizer_from_params(&p, err, sizeof err) == NULL && strstr(err, "no-such-pre"));
    p.pre = "smollm";
    p.model = "bert";
    CHECK(gw_tokenizer_from_params(&p, err, sizeof err) == NULL && strstr(err, "bert"));
    free(tokens);
    free(merges);
    free(types);
}

static void test_smollm2(void) {
    char err[256];
    gguf_file *f = gguf_open(test_model_path(), err, sizeof err);
    CHECK_MSG(f != NULL, "%s", err);
    if (!f) return;
    gw_tokenizer *t = gw_tokenizer_from_gguf(f, err, sizeof err);
    CHECK_MSG(t != NULL, "%s", err);
    other_pre_types(f);
    /* the tokenizer copies what it needs: it outlives the file */
    gguf_close(f);
    if (!t) return;
    smollm2_units(t);
    compare_golden(t, "smollm2", false);
    book(t, "smollm2");
    concurrency(t);
    gw_tokenizer_free(t);
}

static void test_spm(void) {
    char err[256];
    gguf_file *f = gguf_open(test_path("tests/data/tokenizer/spm.gguf"), err, sizeof err);
    CHECK_MSG(f != NULL, "%s", err);
    if (!f) return;
    gw_tokenizer *t = gw_tokenizer_from_gguf(f, err, sizeof err);
    gguf_close(f);
    CHECK_MSG(t != NULL, "%s", err);
    if (!t) return;
    CHECK(gw_tokenizer_bos(t) == 1 && gw_tokenizer_eos(t) == 2 && gw_tokenizer_add_bos(t));
    CHECK(gw_token_is_eog(t, 2) && !gw_token_is_eog(t, 1));
    char buf[16];
    int32_t b41 = gw_token_lookup(t, "<0x41>");
    CHECK(b41 >= 0 && gw_token_to_piece(t, b41, false, buf, sizeof buf) == 1 && buf[0] == 'A');
    int32_t sp = gw_token_lookup(t, "\xE2\x96\x81the");
    CHECK(sp >= 0 && gw_token_to_piece(t, sp, false, buf, sizeof buf) == 4 && memcmp(buf, " the", 4) == 0);
    /* text spelling a control or byte token is plain text (sentencepiece) */
    int32_t *ids;
    int64_t n = gw_tokenize(t, "<s><0x41>", 9, false, false, &ids);
    for (int64_t i = 0; i < n; i++) CHECK(ids[i] != 1 && ids[i] != b41);
    free(ids);
    /* with parse_special, "<s>" is BOS and the text after it gets the prefix space */
    n = gw_tokenize(t, "<s>the", 6, false, true, &ids);
    CHECK(n == 2 && ids[0] == 1 && ids[1] == sp);
    free(ids);
    compare_golden(t, "spm", true);
    book(t, "spm");
    gw_tokenizer_free(t);
}

static void test_qwen2(void) {
    const char *path = test_path("models/qwen2-vocab.gguf");
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        printf("qwen2: models/qwen2-vocab.gguf absent (run scripts/fetch_qwen2_vocab.py), Qwen2 golden skipped\n");
        return;
    }
    fclose(fp);
    char err[256];
    gguf_file *f = gguf_open(path, err, sizeof err);
    CHECK_MSG(f != NULL, "%s", err);
    if (!f) return;
    gw_tokenizer *t = gw_tokenizer_from_gguf(f, err, sizeof err);
    gguf_close(f);
    CHECK_MSG(t != NULL, "%s", err);
    if (!t) return;
    compare_golden(t, "qwen2", false);
    book(t, "qwen2");
    gw_tokenizer_free(t);
}

/* scripts/fuzz.sh seeds fuzz_tokenizer's corpus with this: every corpus
 * line as one file in $GODWIT_SEED_DIR. */
static int write_seeds(const char *dir) {
    lines C = read_lines("tests/data/tokenizer/corpus.txt");
    for (size_t i = 0; i < C.n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/corpus_%04zu", dir, i);
        size_t len;
        char *text = test_unescape(C.v[i], &len);
        FILE *f = fopen(path, "wb");
        if (f) { fwrite(text, 1, len, f); fclose(f); }
        free(text);
    }
    printf("wrote %zu seeds to %s\n", C.n, dir);
    free_lines(&C);
    return 0;
}

int main(void) {
    const char *seed_dir = getenv("GODWIT_SEED_DIR");
    if (seed_dir) return write_seeds(seed_dir);
    test_smollm2();
    test_spm();
    test_qwen2();
    return test_finish("test_tokenizer");
}
