/* libFuzzer target for the tokenizer (built and run by scripts/fuzz.sh).
 *
 * The input bytes are tokenized with the SmolLM2 vocabulary (the GGUF named
 * by $GODWIT_MODEL, default models/SmolLM2-135M-Instruct.Q4_1.gguf) with and
 * without special-token parsing, and detokenized; the same with the small
 * SentencePiece test vocabulary (tests/data/tokenizer/spm.gguf) when present.
 * Properties checked beyond "no sanitizer report":
 *   - every id is in the vocabulary;
 *   - pieces concatenate to the whole-sequence decode (byte-level BPE);
 *   - decode(encode(.)) is the identity from the second round on (the first
 *     replaces invalid UTF-8 and drops bytes the vocabulary has no token
 *     for; see tests/test_tokenizer.c). */
#include "model/gguf.h"
#include "tokenizer/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT(c) do { if (!(c)) { fprintf(stderr, "assertion failed: %s\n", #c); abort(); } } while (0)

static gw_tokenizer *bpe, *spm;

static gw_tokenizer *load(const char *path, bool required) {
    char err[256];
    gguf_file *f = gguf_open(path, err, sizeof err);
    if (!f) {
        if (required) { fprintf(stderr, "fuzz_tokenizer: %s\n", err); exit(1); }
        return NULL;
    }
    gw_tokenizer *t = gw_tokenizer_from_gguf(f, err, sizeof err);
    gguf_close(f);
    if (!t && required) { fprintf(stderr, "fuzz_tokenizer: %s\n", err); exit(1); }
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *model = getenv("GODWIT_MODEL");
    bpe = load(model && model[0] ? model : "models/SmolLM2-135M-Instruct.Q4_1.gguf", true);
    spm = load("tests/data/tokenizer/spm.gguf", false);
    return 0;
}

/* encode -> decode; returns the decode (malloc'd). */
static char *round_trip(const gw_tokenizer *t, const char *s, size_t n, bool special, size_t *out_len) {
    int32_t *ids;
    int64_t k = gw_tokenize(t, s, n, false, special, &ids);
    ASSERT(k >= 0);
    int32_t nv = gw_tokenizer_n_vocab(t);
    for (int64_t i = 0; i < k; i++) ASSERT(ids[i] >= 0 && ids[i] < nv);
    char *dec = gw_detokenize(t, ids, (size_t)k, special, out_len);
    ASSERT(dec != NULL);
    free(ids);
    return dec;
}

static void check(const gw_tokenizer *t, const uint8_t *data, size_t size, bool special, bool identity) {
    size_t l1, l2, l3;
    char *d1 = round_trip(t, (const char *)data, size, special, &l1);
    char *d2 = round_trip(t, d1, l1, special, &l2);
    char *d3 = round_trip(t, d2, l2, special, &l3);
    if (identity) ASSERT(l3 == l2 && memcmp(d2, d3, l2) == 0);
    free(d1);
    free(d2);
    free(d3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    check(bpe, data, size, false, true);
    check(bpe, data, size, true, true);

    /* pieces, one by one, give the same bytes as the whole decode */
    int32_t *ids;
    int64_t k = gw_tokenize(bpe, (const char *)data, size, true, true, &ids);
    ASSERT(k >= 0);
    size_t len;
    char *dec = gw_detokenize(bpe, ids, (size_t)k, true, &len);
    size_t off = 0;
    char piece[256];
    for (int64_t i = 0; i < k; i++) {
        size_t n = gw_token_to_piece(bpe, ids[i], true, piece, sizeof piece);
        ASSERT(n <= sizeof piece && off + n <= len && memcmp(dec + off, piece, n) == 0);
        off += n;
    }
    ASSERT(off == len);
    free(dec);
    free(ids);

    if (spm) {
        /* with special tokens parsed, each text fragment after one gets its
         * own dummy prefix, which decoding does not undo: identity only for
         * plain text */
        check(spm, data, size, false, true);
        check(spm, data, size, true, false);
    }
    return 0;
}
