/* Minimal test harness: each tests/test_*.c is one executable run by CTest.
 * CHECK records a failure and continues; the process exits non-zero if any
 * check failed. A test that needs the real model calls test_model_path() and
 * skips (exit 77, which CTest reports as skipped) only when GODWIT_SKIP_MODEL
 * is set; otherwise a missing model is a failure. */
#ifndef GODWIT_TEST_H
#define GODWIT_TEST_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static int test_failures = 0;
static int test_checks = 0;

#define CHECK(cond) do { test_checks++; if (!(cond)) { test_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_MSG(cond, ...) do { test_checks++; if (!(cond)) { test_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_NEAR(a, b, tol) do { double a_ = (a), b_ = (b); test_checks++; \
    if (!(fabs(a_ - b_) <= (tol))) { test_failures++; \
    fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s=%g %s=%g tol=%g\n", __FILE__, __LINE__, \
            #a, a_, #b, b_, (double)(tol)); } } while (0)

static inline int test_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, test_checks, test_failures);
    return test_failures ? 1 : 0;
}

/* Path of a file under the source root (tests run with cwd = source root). */
static inline const char *test_path(const char *rel) {
    static char buf[4096];
    const char *root = getenv("GODWIT_ROOT");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : ".", rel);
    return buf;
}

/* A model under models/, fetched by scripts/fetch_model.sh before the tests
 * run (make test does). */
static inline const char *test_model_file(const char *file) {
    static char buf[4096];
    const char *root = getenv("GODWIT_ROOT");
    snprintf(buf, sizeof buf, "%s/models/%s", root ? root : ".", file);
    FILE *f = fopen(buf, "rb");
    if (!f) {
        if (getenv("GODWIT_SKIP_MODEL")) { printf("model missing, skipped\n"); exit(77); }
        fprintf(stderr, "model %s missing: run scripts/fetch_model.sh\n", buf);
        exit(1);
    }
    fclose(f);
    return buf;
}

/* len bytes of ../shared/data/war_and_peace.txt from byte offset (malloc'd,
 * NUL-terminated; *got gets how many were read), or NULL if it is missing. */
static inline char *test_read_prose(long offset, size_t len, size_t *got) {
    FILE *fp = fopen(test_path("../shared/data/war_and_peace.txt"), "rb");
    if (!fp) return NULL;
    char *text = calloc(1, len + 1);
    fseek(fp, offset, SEEK_SET);
    *got = fread(text, 1, len, fp);
    fclose(fp);
    return text;
}

/* Indices of the k largest of x[0..n), largest first (ties: lower index). */
static inline void test_top_k(const float *x, int n, int *idx, int k) {
    for (int r = 0; r < k; r++) {
        int best = -1;
        for (int v = 0; v < n; v++) {
            int taken = 0;
            for (int q = 0; q < r; q++) taken |= idx[q] == v;
            if (!taken && (best < 0 || x[v] > x[best])) best = v;
        }
        idx[r] = best;
    }
}

/* Logits x[0..n) -> log-probabilities, in place (max-shifted, sums in double). */
static inline void test_log_softmax(float *x, int n) {
    double mx = -INFINITY, sum = 0;
    for (int v = 0; v < n; v++) mx = fmax(mx, x[v]);
    for (int v = 0; v < n; v++) sum += exp(x[v] - mx);
    for (int v = 0; v < n; v++) x[v] = (float)(x[v] - mx - log(sum));
}

/* Undoes the golden files' escapes (\\ \n \t \r \xHH). Returns malloc'd
 * bytes; *len (if not NULL) gets their count, which may include NUL bytes. */
static inline char *test_unescape(const char *s, size_t *len) {
    size_t n = strlen(s), o = 0;
    char *out = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n) {
            char c = s[i + 1];
            if (c == 'n') { out[o++] = '\n'; i++; continue; }
            if (c == 't') { out[o++] = '\t'; i++; continue; }
            if (c == 'r') { out[o++] = '\r'; i++; continue; }
            if (c == '\\') { out[o++] = '\\'; i++; continue; }
            if (c == 'x' && i + 3 < n) {
                char hex[3] = {s[i + 2], s[i + 3], 0};
                out[o++] = (char)strtol(hex, NULL, 16);
                i += 3;
                continue;
            }
        }
        out[o++] = s[i];
    }
    out[o] = 0;
    if (len) *len = o;
    return out;
}

/* The default model. */
static inline const char *test_model_path(void) { return test_model_file("SmolLM2-135M-Instruct.Q4_1.gguf"); }
#endif
