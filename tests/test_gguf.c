/* Tests for the GGUF reader (src/model/gguf.c).
 *
 * Fixtures are built in memory by a small GGUF writer below, so the test
 * needs no Python: a "rich" file with every value type, nested arrays and a
 * few tensors, then variants with one thing broken at a time. Robustness is
 * checked by opening every prefix of the rich file, flipping bytes all over
 * its header and metadata, and random mutations; whenever a corrupted file
 * still opens, everything in it is read back (under ASan this proves no read
 * goes outside the buffer). The real model is checked against values read
 * with the Python gguf package once and written down here.
 *
 * With GODWIT_SEED_DIR set, the test instead writes its fixtures there as a
 * seed corpus for fuzz/fuzz_gguf.c (see scripts/fuzz.sh) and exits. */
#include "model/gguf.h"
#include "model/tensor_types.h"
#include "test.h"

#include <stdint.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- writer */

typedef struct {
    unsigned char *p;
    size_t len, cap;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (n) memcpy(b->p + b->len, d, n);
    b->len += n;
}
static void put_u8(buf *b, uint8_t v) { put(b, &v, 1); }
static void put_u16(buf *b, uint16_t v) { put_u8(b, v & 0xff); put_u8(b, v >> 8); }
static void put_u32(buf *b, uint32_t v) { put_u16(b, v & 0xffff); put_u16(b, v >> 16); }
static void put_u64(buf *b, uint64_t v) { put_u32(b, (uint32_t)v); put_u32(b, (uint32_t)(v >> 32)); }
static void put_f32(buf *b, float f) { uint32_t u; memcpy(&u, &f, 4); put_u32(b, u); }
static void put_f64(buf *b, double f) { uint64_t u; memcpy(&u, &f, 8); put_u64(b, u); }
static void put_strn(buf *b, const char *s, size_t n) { put_u64(b, n); put(b, s, n); }
static void put_str(buf *b, const char *s) { put_strn(b, s, strlen(s)); }
static void pad_to(buf *b, size_t base, size_t align) {
    while ((base + b->len) % align) put_u8(b, 0);
}

/* A GGUF file under construction: metadata and tensor infos are encoded as
 * they are added; gb_finish lays out header, metadata, infos, padding, data. */
typedef struct {
    uint32_t version;
    size_t alignment; /* for laying out data; general.alignment is a separate kv */
    uint64_t n_kv, n_tensors;
    buf kv, ti, data;
} gb;

static void gb_init(gb *g) {
    memset(g, 0, sizeof *g);
    g->version = 3;
    g->alignment = 32;
}
static void gb_free(gb *g) { free(g->kv.p); free(g->ti.p); free(g->data.p); }

/* Key and type; the caller then encodes the value into g->kv. */
static buf *gb_key(gb *g, const char *key, gguf_vtype t) {
    put_str(&g->kv, key);
    put_u32(&g->kv, t);
    g->n_kv++;
    return &g->kv;
}
static void gb_u32(gb *g, const char *k, uint32_t v) { put_u32(gb_key(g, k, GGUF_VT_UINT32), v); }
static void gb_str(gb *g, const char *k, const char *v) { put_str(gb_key(g, k, GGUF_VT_STRING), v); }
/* Array header; the caller then encodes n elements. */
static buf *gb_arr(gb *g, const char *k, gguf_vtype et, uint64_t n) {
    buf *b = gb_key(g, k, GGUF_VT_ARRAY);
    put_u32(b, et);
    put_u64(b, n);
    return b;
}

/* Tensor info with an explicit offset (data added separately, if at all). */
static void gb_tensor_info(gb *g, const char *name, int n_dims, const int64_t *ne, uint32_t type,
                           uint64_t offset) {
    put_str(&g->ti, name);
    put_u32(&g->ti, (uint32_t)n_dims);
    for (int d = 0; d < n_dims; d++) put_u64(&g->ti, (uint64_t)ne[d]);
    put_u32(&g->ti, type);
    put_u64(&g->ti, offset);
    g->n_tensors++;
}

/* Tensor info plus its data, placed at the next aligned offset and filled
 * with a pattern derived from `seed`. */
static void gb_tensor(gb *g, const char *name, int n_dims, const int64_t *ne, uint32_t type,
                      unsigned seed) {
    size_t nbytes = gw_row_bytes(type, ne[0]);
    for (int d = 1; d < n_dims; d++) nbytes *= (size_t)ne[d];
    pad_to(&g->data, 0, g->alignment);
    gb_tensor_info(g, name, n_dims, ne, type, g->data.len);
    for (size_t i = 0; i < nbytes; i++) put_u8(&g->data, (uint8_t)(seed + i * 7));
}

/* The whole file. The data ends with the last tensor (no padding after it),
 * so that cutting even one byte off the end makes the file invalid. */
static buf gb_finish(const gb *g) {
    buf f = {0};
    put(&f, "GGUF", 4);
    put_u32(&f, g->version);
    put_u64(&f, g->n_tensors);
    put_u64(&f, g->n_kv);
    put(&f, g->kv.p, g->kv.len);
    put(&f, g->ti.p, g->ti.len);
    if (g->n_tensors) pad_to(&f, 0, g->alignment);
    put(&f, g->data.p, g->data.len);
    return f;
}

/* ---------------------------------------------------------------- fixtures */

static const int64_t NE_EMBD[2] = {64, 3};     /* Q8_0: 2 blocks x 34 bytes x 3 rows = 204 */
static const int64_t NE_NORM[1] = {5};         /* F32: 20 bytes */
static const int64_t NE_Q41[4] = {32, 2, 1, 1}; /* Q4_1: 20 bytes x 2 = 40 */
static const int64_t NE_F16[2] = {8, 2};       /* F16: 32 bytes, a multiple of 32 */

/* Metadata with every value type, the awkward strings and nested arrays. */
static void add_rich_kvs(gb *g) {
    buf *b;
    gb_str(g, "general.architecture", "llama");
    put_u8(gb_key(g, "t.u8", GGUF_VT_UINT8), 200);
    put_u8(gb_key(g, "t.i8", GGUF_VT_INT8), (uint8_t)-100);
    put_u16(gb_key(g, "t.u16", GGUF_VT_UINT16), 60000);
    put_u16(gb_key(g, "t.i16", GGUF_VT_INT16), (uint16_t)-30000);
    gb_u32(g, "t.u32", 4000000000u);
    put_u32(gb_key(g, "t.i32", GGUF_VT_INT32), (uint32_t)-2000000000);
    put_f32(gb_key(g, "t.f32", GGUF_VT_FLOAT32), 0.5f);
    put_u8(gb_key(g, "t.bool", GGUF_VT_BOOL), 1);
    put_u8(gb_key(g, "t.false", GGUF_VT_BOOL), 0);
    put_u64(gb_key(g, "t.u64", GGUF_VT_UINT64), (uint64_t)1 << 40);
    put_u64(gb_key(g, "t.u64big", GGUF_VT_UINT64), ((uint64_t)1 << 63) + 5);
    put_u64(gb_key(g, "t.i64", GGUF_VT_INT64), (uint64_t)-((int64_t)1 << 40));
    put_f64(gb_key(g, "t.f64", GGUF_VT_FLOAT64), 0.1);
    put_f64(gb_key(g, "t.f64huge", GGUF_VT_FLOAT64), 1e300);
    put_strn(gb_key(g, "t.nul", GGUF_VT_STRING), "a\0b", 3);
    gb_str(g, "t.empty", "");
    gb_str(g, "t.esc", "q\"\\\n\t\x01");
    gb_u32(g, "llama.block_count", 2);

    b = gb_arr(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, 4);
    put_str(b, "<unk>");
    put_str(b, "hello");
    put_strn(b, "wo\0rld", 6);
    put_str(b, "");
    b = gb_arr(g, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, 4);
    put_f32(b, 0.0f); put_f32(b, -1.5f); put_f32(b, 2.25f); put_f32(b, 3.0f);
    b = gb_arr(g, "tokenizer.ggml.token_type", GGUF_VT_INT32, 4);
    put_u32(b, 1); put_u32(b, 2); put_u32(b, 3); put_u32(b, (uint32_t)-4);
    b = gb_arr(g, "a.u8", GGUF_VT_UINT8, 3);
    put_u8(b, 1); put_u8(b, 2); put_u8(b, 255);
    b = gb_arr(g, "a.i64", GGUF_VT_INT64, 3);
    put_u64(b, 1); put_u64(b, (uint64_t)1 << 40); put_u64(b, (uint64_t)-3);
    b = gb_arr(g, "a.u64", GGUF_VT_UINT64, 2);
    put_u64(b, 5); put_u64(b, (uint64_t)1 << 63);
    b = gb_arr(g, "a.f64", GGUF_VT_FLOAT64, 2);
    put_f64(b, 0.1); put_f64(b, 1e300);
    b = gb_arr(g, "a.bool", GGUF_VT_BOOL, 2);
    put_u8(b, 1); put_u8(b, 0);
    b = gb_arr(g, "a.u32", GGUF_VT_UINT32, 2);
    put_u32(b, 7); put_u32(b, 4000000001u);
    b = gb_arr(g, "a.i16", GGUF_VT_INT16, 1);
    put_u16(b, (uint16_t)-5);
    b = gb_arr(g, "a.i8", GGUF_VT_INT8, 1);
    put_u8(b, (uint8_t)-7);
    b = gb_arr(g, "a.u16", GGUF_VT_UINT16, 1);
    put_u16(b, 65535);
    gb_arr(g, "a.empty", GGUF_VT_INT32, 0);
    /* [[1, 2], [3]] */
    b = gb_arr(g, "a.nested", GGUF_VT_ARRAY, 2);
    put_u32(b, GGUF_VT_UINT32); put_u64(b, 2); put_u32(b, 1); put_u32(b, 2);
    put_u32(b, GGUF_VT_UINT32); put_u64(b, 1); put_u32(b, 3);
    /* [["x", "y"], [], [[true]]] */
    b = gb_arr(g, "a.nested2", GGUF_VT_ARRAY, 3);
    put_u32(b, GGUF_VT_STRING); put_u64(b, 2); put_str(b, "x"); put_str(b, "y");
    put_u32(b, GGUF_VT_STRING); put_u64(b, 0);
    put_u32(b, GGUF_VT_ARRAY); put_u64(b, 1); put_u32(b, GGUF_VT_BOOL); put_u64(b, 1); put_u8(b, 1);
}

static void add_rich_tensors(gb *g) {
    gb_tensor(g, "token_embd.weight", 2, NE_EMBD, GW_TYPE_Q8_0, 1);
    gb_tensor(g, "output_norm.weight", 1, NE_NORM, GW_TYPE_F32, 2);
    gb_tensor(g, "blk.0.w", 4, NE_Q41, GW_TYPE_Q4_1, 3);
    gb_tensor(g, "f16.t", 2, NE_F16, GW_TYPE_F16, 4);
}

static buf rich_file(uint32_t version) {
    gb g;
    gb_init(&g);
    g.version = version;
    add_rich_kvs(&g);
    add_rich_tensors(&g);
    buf f = gb_finish(&g);
    gb_free(&g);
    return f;
}

/* ---------------------------------------------------------------- helpers */

static char err[1024];

static gguf_file *open_buf(const buf *b) { return gguf_open_memory(b->p, b->len, err, sizeof err); }

/* Opening must fail with a message that starts with "gguf: " and contains
 * `want`. Reports the caller's line. */
#define EXPECT_FAIL(bufp, want) expect_fail(bufp, want, __LINE__)
static void expect_fail(const buf *b, const char *want, int line) {
    gguf_file *f = open_buf(b);
    test_checks++;
    if (f) {
        test_failures++;
        fprintf(stderr, "%s:%d: opened, expected failure with '%s'\n", __FILE__, line, want);
        gguf_close(f);
    } else if (strncmp(err, "gguf: ", 6) != 0 || !strstr(err, want)) {
        test_failures++;
        fprintf(stderr, "%s:%d: message '%s' lacks '%s'\n", __FILE__, line, err, want);
    }
}

/* Reads every value and every tensor byte through the public interface.
 * Returns a checksum so the compiler cannot drop the reads. Used on whatever
 * a corrupted file opens as: under ASan any out-of-bounds read aborts. */
static unsigned walk(const gguf_file *f) {
    unsigned sum = gguf_version(f) + (unsigned)gguf_alignment(f);
    char s[200], tiny[4];
    CHECK(gguf_data_offset(f) <= gguf_file_size(f));
    for (int64_t i = 0; i < gguf_n_kv(f); i++) {
        const char *key = gguf_kv_key(f, i);
        gguf_vtype t = gguf_kv_type(f, i), et;
        uint64_t n;
        uint32_t u32; int64_t i64; float f32; bool bl; int32_t i32;
        gguf_kv_to_string(f, i, s, sizeof s);
        gguf_kv_to_string(f, i, tiny, sizeof tiny);
        CHECK(strlen(s) < sizeof s && strlen(tiny) < sizeof tiny);
        sum += (unsigned)strlen(s) + (unsigned)t;
        /* a key with an embedded NUL cannot be looked up by C string */
        int64_t found = gguf_find_key(f, key);
        if (found >= 0 && found != i) CHECK_MSG(strcmp(gguf_kv_key(f, found), key) == 0, "key %s", key);
        sum += gguf_get_u32(f, key, &u32) ? u32 : 1;
        sum += gguf_get_i64(f, key, &i64) ? (unsigned)i64 : 2;
        sum += gguf_get_f32(f, key, &f32) ? (unsigned)(f32 == f32) : 3;
        sum += gguf_get_bool(f, key, &bl) ? bl : 4;
        const char *str = gguf_get_str(f, key);
        if (str) sum += (unsigned)strlen(str);
        if (gguf_get_arr_info(f, key, &et, &n)) {
            const unsigned char *raw = gguf_get_arr_data(f, key, &et, &n);
            if (raw) {
                size_t es = et == GGUF_VT_UINT8 || et == GGUF_VT_INT8 || et == GGUF_VT_BOOL ? 1
                          : et == GGUF_VT_UINT16 || et == GGUF_VT_INT16 ? 2
                          : et == GGUF_VT_UINT64 || et == GGUF_VT_INT64 || et == GGUF_VT_FLOAT64 ? 8 : 4;
                for (uint64_t k = 0; k < n * es; k++) sum += raw[k];
            }
            for (uint64_t k = 0; k <= n; k++) { /* one past the end must be refused */
                size_t len = 0;
                const char *e = gguf_get_arr_str(f, key, k, &len);
                if (e) { CHECK(k < n); sum += (unsigned)len + (unsigned char)e[len]; CHECK(e[len] == 0); }
                if (gguf_get_arr_i32(f, key, k, &i32)) { CHECK(k < n); sum += (unsigned)i32; }
                if (gguf_get_arr_f32(f, key, k, &f32)) { CHECK(k < n); sum += (f32 == f32); }
            }
        }
    }
    CHECK(gguf_kv_key(f, gguf_n_kv(f)) == NULL && gguf_kv_key(f, -1) == NULL);
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        CHECK(gguf_find_tensor(f, t->name) != NULL);
        CHECK(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS && gw_type_info(t->type));
        CHECK(t->offset % gguf_alignment(f) == 0);
        const unsigned char *d = t->data;
        for (size_t k = 0; k < t->nbytes; k++) sum += d[k];
    }
    CHECK(gguf_tensor_at(f, gguf_n_tensors(f)) == NULL && gguf_tensor_at(f, -1) == NULL);
    return sum;
}

/* ---------------------------------------------------------------- tests */

static void test_rich(uint32_t version) {
    buf b = rich_file(version);
    gguf_file *f = open_buf(&b);
    CHECK_MSG(f != NULL, "rich v%u: %s", version, err);
    if (!f) { free(b.p); return; }
    CHECK(gguf_version(f) == version);
    CHECK(gguf_alignment(f) == 32);
    CHECK(gguf_data_offset(f) % 32 == 0);
    CHECK(gguf_n_kv(f) == 34);
    CHECK(strcmp(gguf_kv_key(f, 0), "general.architecture") == 0);
    CHECK(gguf_kv_type(f, 0) == GGUF_VT_STRING);
    CHECK(gguf_find_key(f, "t.u8") == 1);
    CHECK(gguf_find_key(f, "nope") == -1);
    CHECK(strcmp(gguf_get_str(f, "general.architecture"), "llama") == 0);
    CHECK(gguf_get_str(f, "t.u32") == NULL);
    CHECK(gguf_get_str(f, "nope") == NULL);

    uint32_t u32 = 0; int64_t i64 = 0; float f32 = 0; bool bl = false;
    CHECK(gguf_get_u32(f, "t.u8", &u32) && u32 == 200);
    CHECK(gguf_get_u32(f, "t.u16", &u32) && u32 == 60000);
    CHECK(gguf_get_u32(f, "t.u32", &u32) && u32 == 4000000000u);
    CHECK(gguf_get_u32(f, "t.u64", &u32) == false);       /* 2^40 does not fit */
    CHECK(gguf_get_u32(f, "t.i8", &u32) == false);        /* negative */
    CHECK(gguf_get_u32(f, "t.f32", &u32) == false);       /* float is not an integer */
    CHECK(gguf_get_u32(f, "t.bool", &u32) == false);
    CHECK(gguf_get_u32(f, "general.architecture", &u32) == false);
    CHECK(gguf_get_u32(f, "nope", &u32) == false);
    CHECK(gguf_get_u32(f, "llama.block_count", &u32) && u32 == 2);
    CHECK(gguf_get_i64(f, "t.i8", &i64) && i64 == -100);
    CHECK(gguf_get_i64(f, "t.i16", &i64) && i64 == -30000);
    CHECK(gguf_get_i64(f, "t.i32", &i64) && i64 == -2000000000);
    CHECK(gguf_get_i64(f, "t.i64", &i64) && i64 == -((int64_t)1 << 40));
    CHECK(gguf_get_i64(f, "t.u64", &i64) && i64 == (int64_t)1 << 40);
    CHECK(gguf_get_i64(f, "t.u64big", &i64) == false);    /* > INT64_MAX */
    CHECK(gguf_get_i64(f, "a.u8", &i64) == false);        /* array */
    CHECK(gguf_get_f32(f, "t.f32", &f32) && f32 == 0.5f);
    CHECK(gguf_get_f32(f, "t.f64", &f32) && f32 == 0.1f);
    CHECK(gguf_get_f32(f, "t.f64huge", &f32) == false);   /* beyond float range */
    CHECK(gguf_get_f32(f, "t.i16", &f32) && f32 == -30000.0f);
    CHECK(gguf_get_f32(f, "t.bool", &f32) == false);
    CHECK(gguf_get_bool(f, "t.bool", &bl) && bl == true);
    CHECK(gguf_get_bool(f, "t.false", &bl) && bl == false);
    CHECK(gguf_get_bool(f, "t.u8", &bl) == false);

    /* strings with NUL bytes keep their exact length */
    const char *s = gguf_get_str(f, "t.nul");
    CHECK(s && memcmp(s, "a\0b", 4) == 0);
    CHECK(gguf_get_str(f, "t.empty") && gguf_get_str(f, "t.empty")[0] == '\0');

    gguf_vtype et; uint64_t n; size_t len; int32_t i32;
    CHECK(gguf_get_arr_info(f, "tokenizer.ggml.tokens", &et, &n) && et == GGUF_VT_STRING && n == 4);
    CHECK(gguf_get_arr_info(f, "t.u8", &et, &n) == false && n == 0);
    s = gguf_get_arr_str(f, "tokenizer.ggml.tokens", 1, &len);
    CHECK(s && len == 5 && strcmp(s, "hello") == 0);
    s = gguf_get_arr_str(f, "tokenizer.ggml.tokens", 2, &len);
    CHECK(s && len == 6 && memcmp(s, "wo\0rld", 7) == 0);
    s = gguf_get_arr_str(f, "tokenizer.ggml.tokens", 3, &len);
    CHECK(s && len == 0 && s[0] == '\0');
    CHECK(gguf_get_arr_str(f, "tokenizer.ggml.tokens", 4, &len) == NULL);
    CHECK(gguf_get_arr_str(f, "tokenizer.ggml.scores", 0, &len) == NULL);
    CHECK(gguf_get_arr_f32(f, "tokenizer.ggml.scores", 1, &f32) && f32 == -1.5f);
    CHECK(gguf_get_arr_f32(f, "tokenizer.ggml.scores", 4, &f32) == false);
    CHECK(gguf_get_arr_i32(f, "tokenizer.ggml.scores", 1, &i32) == false);
    CHECK(gguf_get_arr_i32(f, "tokenizer.ggml.token_type", 3, &i32) && i32 == -4);
    CHECK(gguf_get_arr_f32(f, "tokenizer.ggml.token_type", 3, &f32) && f32 == -4.0f);
    CHECK(gguf_get_arr_i32(f, "a.u8", 2, &i32) && i32 == 255);
    CHECK(gguf_get_arr_i32(f, "a.i8", 0, &i32) && i32 == -7);
    CHECK(gguf_get_arr_i32(f, "a.u16", 0, &i32) && i32 == 65535);
    CHECK(gguf_get_arr_i32(f, "a.i16", 0, &i32) && i32 == -5);
    CHECK(gguf_get_arr_i32(f, "a.i64", 2, &i32) && i32 == -3);
    CHECK(gguf_get_arr_i32(f, "a.i64", 1, &i32) == false);  /* 2^40 does not fit */
    CHECK(gguf_get_arr_f32(f, "a.i64", 1, &f32) && f32 == 1099511627776.0f); /* exact */
    CHECK(gguf_get_arr_i32(f, "a.u32", 0, &i32) && i32 == 7);
    CHECK(gguf_get_arr_i32(f, "a.u32", 1, &i32) == false);
    CHECK(gguf_get_arr_f32(f, "a.u32", 1, &f32) == false);  /* 4000000001 is not a float */
    CHECK(gguf_get_arr_f32(f, "a.u64", 1, &f32) && f32 == 0x1p63f);
    CHECK(gguf_get_arr_f32(f, "a.f64", 0, &f32) && f32 == 0.1f);
    CHECK(gguf_get_arr_f32(f, "a.f64", 1, &f32) == false);
    CHECK(gguf_get_arr_i32(f, "a.bool", 0, &i32) == false);
    CHECK(gguf_get_arr_info(f, "a.empty", &et, &n) && et == GGUF_VT_INT32 && n == 0);
    CHECK(gguf_get_arr_i32(f, "a.empty", 0, &i32) == false);
    const unsigned char *raw = gguf_get_arr_data(f, "a.u32", &et, &n);
    CHECK(raw && et == GGUF_VT_UINT32 && n == 2 && raw[0] == 7 && raw[4] == 0x01 && raw[7] == 0xee);
    CHECK(gguf_get_arr_data(f, "tokenizer.ggml.tokens", &et, &n) == NULL);
    /* nested arrays: described, elements not exposed */
    CHECK(gguf_get_arr_info(f, "a.nested", &et, &n) && et == GGUF_VT_ARRAY && n == 2);
    CHECK(gguf_get_arr_i32(f, "a.nested", 0, &i32) == false);
    CHECK(gguf_get_arr_str(f, "a.nested2", 0, &len) == NULL);
    CHECK(gguf_get_arr_data(f, "a.nested", &et, &n) == NULL);

    /* rendering */
    char out[256];
    struct { const char *key, *want; } render[] = {
        {"general.architecture", "\"llama\""},
        {"t.i8", "-100"}, {"t.u32", "4000000000"}, {"t.f32", "0.5"}, {"t.bool", "true"},
        {"t.nul", "\"a\\x00b\""}, {"t.esc", "\"q\\\"\\\\\\n\\t\\x01\""},
        {"tokenizer.ggml.tokens", "[string x 4] \"<unk>\", \"hello\", \"wo\\x00rld\", \"\""},
        {"tokenizer.ggml.scores", "[float32 x 4] 0, -1.5, 2.25, 3"},
        {"a.bool", "[bool x 2] true, false"},
        {"a.empty", "[int32 x 0]"},
        {"a.nested", "[array x 2]"},
    };
    for (size_t k = 0; k < sizeof render / sizeof render[0]; k++) {
        gguf_kv_to_string(f, gguf_find_key(f, render[k].key), out, sizeof out);
        CHECK_MSG(strcmp(out, render[k].want) == 0, "%s renders as '%s', want '%s'", render[k].key, out,
                  render[k].want);
    }
    gguf_kv_to_string(f, gguf_find_key(f, "tokenizer.ggml.tokens"), out, 12);
    CHECK_MSG(strcmp(out, "[string ...") == 0, "cut rendering: '%s'", out);

    /* tensors */
    CHECK(gguf_n_tensors(f) == 4);
    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    CHECK(t && t == gguf_tensor_at(f, 0));
    if (t) {
        CHECK(t->type == GW_TYPE_Q8_0 && t->n_dims == 2 && t->ne[0] == 64 && t->ne[1] == 3);
        CHECK(t->ne[2] == 1 && t->ne[3] == 1);
        CHECK(t->offset == 0 && t->nbytes == 204);
        CHECK((const unsigned char *)t->data == b.p + gguf_data_offset(f));
        CHECK(((const unsigned char *)t->data)[10] == (uint8_t)(1 + 10 * 7));
    }
    t = gguf_find_tensor(f, "blk.0.w");
    CHECK(t && t->n_dims == 4 && t->type == GW_TYPE_Q4_1 && t->nbytes == 40 && t->offset == 256);
    t = gguf_find_tensor(f, "f16.t");
    CHECK(t && t->nbytes == 32 && (const unsigned char *)t->data + 32 == b.p + b.len);
    CHECK(gguf_find_tensor(f, "nope") == NULL);
    walk(f);
    gguf_close(f);
    free(b.p);
}

/* Every proper prefix of a valid file must be refused cleanly. */
static void test_truncation(void) {
    buf b = rich_file(3);
    int failures = 0;
    for (size_t len = 0; len < b.len; len++) {
        /* copy so that ASan sees the exact end of the buffer */
        unsigned char *p = malloc(len ? len : 1);
        memcpy(p, b.p, len);
        gguf_file *f = gguf_open_memory(p, len, err, sizeof err);
        if (f || strncmp(err, "gguf: ", 6) != 0) {
            if (failures++ < 5) CHECK_MSG(0, "prefix of %zu/%zu bytes: %s", len, b.len, f ? "opened" : err);
            gguf_close(f);
        }
        free(p);
    }
    CHECK_MSG(failures == 0, "%d prefixes misbehaved", failures);
    /* the message says what was cut where */
    buf cut = {b.p, 100, 0};
    EXPECT_FAIL(&cut, "header claims 34 key-value pairs but only 76 bytes follow the header at offset 24");
    cut.len = 600;
    EXPECT_FAIL(&cut, "truncated file: key-value pair");
    gguf_file *f = gguf_open_memory(b.p, b.len, err, sizeof err);
    CHECK(f != NULL);
    size_t data_off = f ? gguf_data_offset(f) : 0;
    gguf_close(f);
    cut.len = data_off - 1;
    EXPECT_FAIL(&cut, "data section starts at offset");
    cut.len = b.len - 1;
    EXPECT_FAIL(&cut, "tensor info 3 ('f16.t'): 32 bytes of F16 data at data offset 320");
    EXPECT_FAIL(&cut, "extend past the end of the file");
    free(b.p);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static int try_open(const unsigned char *p, size_t len) {
    unsigned char *copy = malloc(len);
    memcpy(copy, p, len);
    gguf_file *f = gguf_open_memory(copy, len, err, sizeof err);
    int ok = f != NULL;
    if (f) walk(f);
    else CHECK_MSG(strncmp(err, "gguf: ", 6) == 0 && strlen(err) > 10, "bad message '%s'", err);
    gguf_close(f);
    free(copy);
    return ok;
}

/* Corrupt bytes before the data section one at a time with several values,
 * then random multi-byte mutations anywhere. Either outcome is fine; a crash
 * or a sanitizer report is not. */
static void test_corruption(void) {
    buf b = rich_file(3);
    gguf_file *f = open_buf(&b);
    size_t header_end = f ? gguf_data_offset(f) : b.len;
    gguf_close(f);
    unsigned char *p = malloc(b.len);
    int opened = 0, tries = 0;
    for (size_t i = 0; i < header_end; i++) {
        const unsigned char vals[] = {0x00, 0xff, 0x01, 0x80, 0x7f, 0x20, (unsigned char)(b.p[i] ^ 1),
                                      (unsigned char)(b.p[i] ^ 0x80), (unsigned char)rng()};
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(p, b.p, b.len);
            p[i] = vals[v];
            opened += try_open(p, b.len);
            tries++;
        }
    }
    for (int k = 0; k < 20000; k++) {
        memcpy(p, b.p, b.len);
        int nflip = 1 + (int)(rng() % 8);
        for (int j = 0; j < nflip; j++) {
            size_t at = (size_t)(rng() % (k % 2 ? header_end : b.len));
            p[at] = (k % 3) ? (unsigned char)rng() : (unsigned char)(p[at] ^ (1u << (rng() % 8)));
        }
        size_t len = (k % 5 == 0) ? (size_t)(rng() % b.len) + 1 : b.len;
        opened += try_open(p, len);
        tries++;
    }
    printf("corruption: %d of %d corrupted files opened\n", opened, tries);
    CHECK(opened > 0 && opened < tries); /* both outcomes are exercised */
    free(p);
    free(b.p);
}

/* A header followed by `extra` bytes; counts as given. */
static buf raw_header(uint32_t version, uint64_t n_tensors, uint64_t n_kv, const buf *extra) {
    buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, version);
    put_u64(&b, n_tensors);
    put_u64(&b, n_kv);
    if (extra) put(&b, extra->p, extra->len);
    return b;
}

static void test_header(void) {
    buf tail = {0};
    for (int i = 0; i < 64; i++) put_u8(&tail, 0);
    buf b;

    b = raw_header(1, 0, 0, &tail);
    EXPECT_FAIL(&b, "GGUF version 1 is not supported");
    free(b.p);
    b = raw_header(4, 0, 0, &tail);
    EXPECT_FAIL(&b, "unsupported GGUF version 4");
    free(b.p);
    b = raw_header(0x03000000, 0, 0, &tail); /* bytes 00 00 00 03 */
    EXPECT_FAIL(&b, "big-endian");
    free(b.p);
    b = raw_header(3, 0, 0, &tail);
    memcpy(b.p, "GGML", 4);
    EXPECT_FAIL(&b, "not a GGUF file: magic is 'GGML'");
    free(b.p);
    buf short3 = {(unsigned char *)"GGU", 3, 0};
    EXPECT_FAIL(&short3, "truncated file: header magic needs 4 bytes at offset 0, file has 3");
    gguf_file *f = gguf_open_memory(NULL, 0, err, sizeof err);
    CHECK(f == NULL && strstr(err, "truncated"));

    /* empty but valid: no metadata, no tensors */
    b = raw_header(3, 0, 0, NULL);
    f = open_buf(&b);
    CHECK_MSG(f && gguf_n_kv(f) == 0 && gguf_n_tensors(f) == 0, "%s", err);
    if (f) {
        CHECK(gguf_find_key(f, "x") == -1 && gguf_find_tensor(f, "x") == NULL);
        CHECK(gguf_data_offset(f) == b.len);
    }
    gguf_close(f);
    free(b.p);

    /* hostile counts: refused at once, before allocating */
    clock_t t0 = clock();
    b = raw_header(3, 0, (uint64_t)1 << 60, &tail);
    EXPECT_FAIL(&b, "header claims 1152921504606846976 key-value pairs");
    free(b.p);
    b = raw_header(3, (uint64_t)1 << 60, 0, &tail);
    EXPECT_FAIL(&b, "header claims 1152921504606846976 tensors");
    free(b.p);
    b = raw_header(3, UINT64_MAX, UINT64_MAX, &tail);
    EXPECT_FAIL(&b, "header claims");
    free(b.p);
    /* kv count plausible for the bytes, but the tensor count is not once the
     * metadata has been read */
    gb g;
    gb_init(&g);
    gb_str(&g, "k", "a fairly long string value taking up many bytes in the file");
    g.n_tensors = 2;
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "header claims 2 tensors but only 24 bytes follow the metadata at offset 104");
    free(b.p);
    gb_free(&g);

    struct { uint32_t et; const char *want; } arrs[] = {
        {GGUF_VT_UINT8, "array of 1152921504606846976 uint8 elements"},
        {GGUF_VT_UINT64, "array of 1152921504606846976 uint64"},
        {GGUF_VT_STRING, "array of 1152921504606846976 string"},
        {GGUF_VT_ARRAY, "array of 1152921504606846976 array"},
    };
    for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++) {
        gb_init(&g);
        buf *a = gb_arr(&g, "big", arrs[i].et, (uint64_t)1 << 60);
        for (int k = 0; k < 64; k++) put_u8(a, 1);
        b = gb_finish(&g);
        EXPECT_FAIL(&b, arrs[i].want);
        EXPECT_FAIL(&b, "key-value pair 0 ('big')");
        free(b.p);
        gb_free(&g);
    }
    /* a string claiming 2^62 bytes, as a value, a key, an array element */
    gb_init(&g);
    put_u64(gb_key(&g, "s", GGUF_VT_STRING), (uint64_t)1 << 62);
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "truncated file: key-value pair 0 ('s') value needs 4611686018427387904 bytes at offset 45, file has 45");
    free(b.p);
    gb_free(&g);
    gb_init(&g);
    put_u64(&g.kv, (uint64_t)1 << 62);
    put(&g.kv, "abcdefghijklmnop", 16);
    g.n_kv = 1;
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "key-value pair 0 key needs 4611686018427387904 bytes");
    free(b.p);
    gb_free(&g);
    gb_init(&g);
    buf *a = gb_arr(&g, "tokenizer.ggml.tokens", GGUF_VT_STRING, 3);
    put_str(a, "ok");
    put_u64(a, (uint64_t)1 << 62);
    put(a, "abcdefghijklmnop", 16);
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "key-value pair 0 ('tokenizer.ggml.tokens') element 1 needs 4611686018427387904 bytes");
    free(b.p);
    gb_free(&g);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK_MSG(secs < 1.0, "hostile counts took %.2f s", secs);
    free(tail.p);
}

static void test_values(void) {
    gb g;
    buf b, *a;
    /* unknown value types */
    gb_init(&g);
    put_u32(gb_key(&g, "k", 13), 0);
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "key-value pair 0 ('k'): unknown value type 13 at offset 33");
    free(b.p); gb_free(&g);
    gb_init(&g);
    gb_arr(&g, "k", 99, 0);
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "unknown array element type 99");
    free(b.p); gb_free(&g);
    /* bools other than 0/1 */
    gb_init(&g);
    put_u8(gb_key(&g, "b", GGUF_VT_BOOL), 2);
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "key-value pair 0 ('b'): bool value 2 at offset 37 is not 0 or 1");
    free(b.p); gb_free(&g);
    gb_init(&g);
    a = gb_arr(&g, "b", GGUF_VT_BOOL, 3);
    put_u8(a, 0); put_u8(a, 1); put_u8(a, 7);
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "bool value 7");
    free(b.p); gb_free(&g);
    /* duplicate keys */
    gb_init(&g);
    gb_u32(&g, "a", 1);
    gb_u32(&g, "dup.key", 1);
    gb_str(&g, "dup.key", "x");
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "key-value pair 2 ('dup.key'): duplicate key (also key-value pair 1)");
    free(b.p); gb_free(&g);
    /* NUL bytes in keys and tensor names would make lookups ambiguous */
    gb_init(&g);
    put_strn(&g.kv, "k\0a", 3); put_u32(&g.kv, GGUF_VT_UINT8); put_u8(&g.kv, 1);
    g.n_kv = 1;
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "key-value pair 0 ('k?a'): key contains a NUL byte at offset 33");
    free(b.p); gb_free(&g);
    gb_init(&g);
    put_strn(&g.ti, "w\0x", 3);
    put_u32(&g.ti, 1); put_u64(&g.ti, 8); put_u32(&g.ti, GW_TYPE_F32); put_u64(&g.ti, 0);
    g.n_tensors = 1;
    for (int k = 0; k < 32; k++) put_u8(&g.data, 0);
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "tensor info 0 ('w?x'): tensor name contains a NUL byte at offset 33");
    free(b.p); gb_free(&g);
    gguf_file *f;
    /* nesting: 16 levels are fine, 17 are refused */
    const int depths[] = {2, 16, 17, 100};
    for (int di = 0; di < 4; di++) {
        int depth = depths[di];
        gb_init(&g);
        a = gb_arr(&g, "deep", GGUF_VT_ARRAY, 1);
        for (int d = 2; d < depth; d++) { put_u32(a, GGUF_VT_ARRAY); put_u64(a, 1); }
        put_u32(a, GGUF_VT_UINT8); put_u64(a, 1); put_u8(a, 9);
        b = gb_finish(&g);
        if (depth <= 16) {
            f = open_buf(&b);
            CHECK_MSG(f != NULL, "%s", err);
            gguf_close(f);
        } else {
            EXPECT_FAIL(&b, "arrays nested more than 16 deep");
        }
        free(b.p); gb_free(&g);
    }
}

static void test_alignment(void) {
    gb g;
    buf b;
    /* custom alignment: data section and tensors on 64-byte boundaries */
    gb_init(&g);
    g.alignment = 64;
    gb_u32(&g, "general.alignment", 64);
    add_rich_tensors(&g);
    b = gb_finish(&g);
    gguf_file *f = open_buf(&b);
    CHECK_MSG(f != NULL, "%s", err);
    if (f) {
        CHECK(gguf_alignment(f) == 64 && gguf_data_offset(f) % 64 == 0);
        const gguf_tensor *t = gguf_find_tensor(f, "blk.0.w");
        CHECK(t && t->offset == 320 && ((const unsigned char *)t->data - b.p) % 64 == 0);
        walk(f);
    }
    gguf_close(f);
    free(b.p); gb_free(&g);

    /* any unsigned integer type will do */
    gb_init(&g);
    put_u64(gb_key(&g, "general.alignment", GGUF_VT_UINT64), 16);
    b = gb_finish(&g);
    f = open_buf(&b);
    CHECK_MSG(f && gguf_alignment(f) == 16, "%s", err);
    gguf_close(f);
    free(b.p); gb_free(&g);

    uint32_t bad[] = {0, 3, 48, 0x80000001u};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gb_init(&g);
        gb_u32(&g, "general.alignment", bad[i]);
        b = gb_finish(&g);
        char want[100];
        snprintf(want, sizeof want, "general.alignment is %u, must be a nonzero power of two", bad[i]);
        EXPECT_FAIL(&b, want);
        free(b.p); gb_free(&g);
    }
    gb_init(&g);
    gb_str(&g, "general.alignment", "32");
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "general.alignment has type string");
    free(b.p); gb_free(&g);
    gb_init(&g);
    put_u32(gb_key(&g, "general.alignment", GGUF_VT_INT32), (uint32_t)-32);
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "general.alignment has type int32");
    free(b.p); gb_free(&g);
}

/* Files with one tensor info broken; `want` must appear in the message. */
static void test_tensors(void) {
    gb g;
    buf b;
    int64_t ne[4] = {32, 2, 1, 1};

    /* offsets: unaligned, overlapping, past the end */
    gb_init(&g);
    gb_tensor(&g, "a", 1, NE_F16, GW_TYPE_F16, 0); /* 16 bytes at 0 */
    gb_tensor_info(&g, "b", 1, NE_F16, GW_TYPE_F16, 16);
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "tensor info 1 ('b'): data offset 16 is not a multiple of the alignment 32");
    free(b.p); gb_free(&g);

    gb_init(&g);
    gb_tensor(&g, "first", 1, ne, GW_TYPE_F32, 0);   /* 128 bytes at 0 */
    gb_tensor(&g, "second", 1, ne, GW_TYPE_F32, 0);  /* 128 bytes at 128 */
    gb_tensor_info(&g, "third", 1, ne, GW_TYPE_F32, 64); /* 128 bytes at 64 */
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "tensors 0 ('first', data bytes 0..128) and 2 ('third', data bytes 64..192) overlap");
    free(b.p); gb_free(&g);

    gb_init(&g);
    gb_tensor(&g, "x", 1, ne, GW_TYPE_F32, 0);
    gb_tensor_info(&g, "same", 1, ne, GW_TYPE_F32, 0);
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "tensors 0 ('x', data bytes 0..128) and 1 ('same', data bytes 0..128) overlap");
    free(b.p); gb_free(&g);

    /* empty tensors take no room, so sharing an offset is fine */
    gb_init(&g);
    int64_t zero[2] = {0, 4};
    gb_tensor(&g, "x", 1, ne, GW_TYPE_F32, 0);
    gb_tensor_info(&g, "empty", 2, zero, GW_TYPE_F32, 0);
    b = gb_finish(&g);
    gguf_file *f = open_buf(&b);
    CHECK_MSG(f && gguf_find_tensor(f, "empty")->nbytes == 0, "%s", err);
    gguf_close(f);
    free(b.p); gb_free(&g);

    gb_init(&g);
    gb_tensor(&g, "x", 1, ne, GW_TYPE_F32, 0);
    gb_tensor_info(&g, "far", 1, ne, GW_TYPE_F32, (uint64_t)1 << 62);
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "tensor info 1 ('far'): 128 bytes of F32 data at data offset 4611686018427387904");
    free(b.p); gb_free(&g);

    gb_init(&g);
    gb_tensor(&g, "x", 1, ne, GW_TYPE_F32, 0);
    gb_tensor_info(&g, "tail", 1, ne, GW_TYPE_F32, 96);
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "tensor info 1 ('tail'): 128 bytes of F32 data at data offset 96");
    free(b.p); gb_free(&g);

    /* shapes */
    struct { int n_dims; int64_t ne[4]; uint32_t type; const char *want; } bad[] = {
        {0, {1}, GW_TYPE_F32, "tensor info 0 ('t'): 0 dimensions at offset"},
        {5, {1, 1, 1, 1}, GW_TYPE_F32, "tensor info 0 ('t'): 5 dimensions at offset"},
        {2, {33, 1}, GW_TYPE_Q8_0, "tensor info 0 ('t'): ne[0] = 33 is not a multiple of the Q8_0 block size 32"},
        {2, {4, INT64_MIN}, GW_TYPE_F32, "tensor info 0 ('t'): ne[1] = 9223372036854775808 is too large"},
        {2, {(int64_t)1 << 62, (int64_t)1 << 62}, GW_TYPE_F32, "element count overflows"},
        {4, {(int64_t)1 << 20, (int64_t)1 << 20, (int64_t)1 << 20, 1}, GW_TYPE_F32, "extend past the end"},
        {1, {INT64_MAX - 31}, GW_TYPE_Q8_0, "extend past the end"},
        {1, {INT64_MAX}, GW_TYPE_F32, "extend past the end"},
        {1, {32}, 4, "tensor info 0 ('t'): unknown tensor type 4 at offset"},
        {1, {32}, 99, "tensor info 0 ('t'): unknown tensor type 99"},
        {1, {32}, GW_TYPE_COUNT, "unknown tensor type 31"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gb_init(&g);
        if (bad[i].n_dims > 4) { /* gb_tensor_info writes n_dims entries */
            put_str(&g.ti, "t"); put_u32(&g.ti, 5);
            for (int d = 0; d < 5; d++) put_u64(&g.ti, 1);
            put_u32(&g.ti, 0); put_u64(&g.ti, 0);
            g.n_tensors = 1;
        } else {
            gb_tensor_info(&g, "t", bad[i].n_dims, bad[i].ne, bad[i].type, 0);
        }
        for (int k = 0; k < 256; k++) put_u8(&g.data, 0);
        b = gb_finish(&g);
        EXPECT_FAIL(&b, bad[i].want);
        free(b.p); gb_free(&g);
    }

    /* duplicate names */
    gb_init(&g);
    gb_tensor(&g, "blk.0.attn_q.weight", 1, ne, GW_TYPE_F32, 0);
    gb_tensor(&g, "blk.0.attn_k.weight", 1, ne, GW_TYPE_F32, 0);
    gb_tensor(&g, "blk.0.attn_q.weight", 1, ne, GW_TYPE_F32, 0);
    b = gb_finish(&g);
    EXPECT_FAIL(&b, "tensor info 2 ('blk.0.attn_q.weight'): duplicate tensor name (also tensor info 0)");
    free(b.p); gb_free(&g);

    /* a truncated tensor info names the tensor */
    gb_init(&g);
    gb_tensor(&g, "blk.0.attn_q.weight", 2, ne, GW_TYPE_F32, 0);
    b = gb_finish(&g);
    size_t info_at = 24 + 8 + strlen("blk.0.attn_q.weight");
    b.len = info_at + 10;
    char want[200];
    snprintf(want, sizeof want, "truncated file: tensor info 0 ('blk.0.attn_q.weight') needs 28 bytes at "
             "offset %zu, file has %zu", info_at + 4, b.len);
    EXPECT_FAIL(&b, want);
    free(b.p); gb_free(&g);
}

/* gguf_open on files: the mmap path and the file errors. */
static void test_files(void) {
    char path[] = "/tmp/godwit_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    buf b = rich_file(3);
    CHECK(write(fd, b.p, b.len) == (ssize_t)b.len);
    gguf_file *f = gguf_open(path, err, sizeof err);
    CHECK_MSG(f != NULL, "%s", err);
    if (f) {
        CHECK(gguf_n_tensors(f) == 4 && gguf_get_str(f, "general.architecture"));
        walk(f);
    }
    gguf_close(f);
    CHECK(ftruncate(fd, (off_t)b.len - 1) == 0);
    f = gguf_open(path, err, sizeof err);
    CHECK_MSG(f == NULL && strstr(err, path) && strstr(err, "extend past the end"), "%s", err);
    CHECK(ftruncate(fd, 0) == 0);
    f = gguf_open(path, err, sizeof err);
    CHECK(f == NULL && strstr(err, "empty file"));
    close(fd);
    unlink(path);
    f = gguf_open("/nonexistent/x.gguf", err, sizeof err);
    CHECK(f == NULL && strstr(err, "cannot open /nonexistent/x.gguf"));
    f = gguf_open("/tmp", err, sizeof err);
    CHECK(f == NULL && strstr(err, "not a regular file"));
    free(b.p);
}

/* The real model; expected values were read with the Python gguf package. */
static void test_model(void) {
    const char *path = test_model_path();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    gguf_file *f = gguf_open(path, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK_MSG(f != NULL, "%s", err);
    if (!f) return;
    printf("model: opened in %.1f ms\n", (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    CHECK(gguf_version(f) == 3);
    CHECK(gguf_n_kv(f) == 33);
    CHECK(gguf_n_tensors(f) == 272);
    CHECK(gguf_alignment(f) == 32);
    CHECK(gguf_data_offset(f) == 1785664);
    const char *arch = gguf_get_str(f, "general.architecture");
    CHECK(arch && strcmp(arch, "llama") == 0);
    uint32_t u = 0;
    CHECK(gguf_get_u32(f, "llama.block_count", &u) && u == 30);
    CHECK(gguf_get_u32(f, "llama.embedding_length", &u) && u == 576);
    CHECK(gguf_get_u32(f, "llama.attention.head_count_kv", &u) && u == 3);
    CHECK(gguf_get_u32(f, "tokenizer.ggml.eos_token_id", &u) && u == 2);
    float x = 0;
    CHECK(gguf_get_f32(f, "llama.rope.freq_base", &x) && x == 100000.0f);
    CHECK(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &x) && x == 1e-5f);
    bool bl = true;
    CHECK(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &bl) && bl == false);
    const char *tmpl = gguf_get_str(f, "tokenizer.chat_template");
    CHECK(tmpl && strlen(tmpl) == 368);

    gguf_vtype et;
    uint64_t n = 0;
    size_t len = 0;
    CHECK(gguf_get_arr_info(f, "tokenizer.ggml.tokens", &et, &n) && et == GGUF_VT_STRING && n == 49152);
    const char *s = gguf_get_arr_str(f, "tokenizer.ggml.tokens", 0, &len);
    CHECK(s && len == 13 && strcmp(s, "<|endoftext|>") == 0);
    s = gguf_get_arr_str(f, "tokenizer.ggml.tokens", 1, &len);
    CHECK(s && strcmp(s, "<|im_start|>") == 0);
    s = gguf_get_arr_str(f, "tokenizer.ggml.tokens", 17, &len);
    CHECK(s && strcmp(s, "!") == 0);
    s = gguf_get_arr_str(f, "tokenizer.ggml.tokens", 49151, &len);
    CHECK(s && strcmp(s, "ectable") == 0);
    CHECK(gguf_get_arr_str(f, "tokenizer.ggml.tokens", 49152, &len) == NULL);
    CHECK(gguf_get_arr_info(f, "tokenizer.ggml.merges", &et, &n) && et == GGUF_VT_STRING && n == 48900);
    s = gguf_get_arr_str(f, "tokenizer.ggml.merges", 0, &len);
    CHECK(s && strcmp(s, "\xc4\xa0 t") == 0);
    s = gguf_get_arr_str(f, "tokenizer.ggml.merges", 48899, &len);
    CHECK(s && strcmp(s, "ect able") == 0);
    int32_t tt = 0;
    CHECK(gguf_get_arr_i32(f, "tokenizer.ggml.token_type", 0, &tt) && tt == 3);
    CHECK(gguf_get_arr_i32(f, "tokenizer.ggml.token_type", 17, &tt) && tt == 1);
    const void *raw = gguf_get_arr_data(f, "tokenizer.ggml.token_type", &et, &n);
    CHECK(raw && et == GGUF_VT_INT32 && n == 49152);

    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    CHECK(t != NULL);
    if (t) {
        CHECK(t->type == GW_TYPE_Q8_0 && t->n_dims == 2);
        CHECK(t->ne[0] == 576 && t->ne[1] == 49152 && t->ne[2] == 1 && t->ne[3] == 1);
        CHECK(t->offset == 0 && t->nbytes == 30081024);
        CHECK(memcmp(t->data, "\x32\x19\xd6\x0d\x13\xf7\xe5\xee", 8) == 0);
    }
    t = gguf_find_tensor(f, "output_norm.weight");
    CHECK(t && t->type == GW_TYPE_F32 && t->n_dims == 1 && t->ne[0] == 576 && t->nbytes == 2304);
    CHECK(t && t->offset == 98360128 - 1785664);
    CHECK(t && memcmp(t->data, "\x00\x00\xe1\x3f\x00\x00\xe9\x3f", 8) == 0);
    t = gguf_find_tensor(f, "blk.0.attn_norm.weight");
    float w = 0;
    if (t) memcpy(&w, t->data, 4);
    CHECK_NEAR(w, 0.01397705, 1e-7);
    t = gguf_find_tensor(f, "blk.0.ffn_down.weight");
    CHECK(t && t->type == GW_TYPE_Q4_1 && t->ne[0] == 1536 && t->ne[1] == 576);
    int q41 = 0, f32 = 0, q80 = 0;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        uint32_t ty = gguf_tensor_at(f, i)->type;
        q41 += ty == GW_TYPE_Q4_1;
        f32 += ty == GW_TYPE_F32;
        q80 += ty == GW_TYPE_Q8_0;
    }
    CHECK(q41 == 210 && f32 == 61 && q80 == 1);
    char out[200];
    gguf_kv_to_string(f, gguf_find_key(f, "tokenizer.ggml.tokens"), out, sizeof out);
    CHECK_MSG(strncmp(out, "[string x 49152] \"<|endoftext|>\", \"<|im_start|>\"", 48) == 0, "%s", out);
    gguf_close(f);
}

/* Seed corpus for fuzz/fuzz_gguf.c: the fixtures plus the start of the real
 * model (its header and first metadata). */
static int write_seeds(const char *dir) {
    struct { const char *name; buf b; } seeds[8];
    int n = 0;
    gb g;
    seeds[n].name = "rich_v3.gguf"; seeds[n++].b = rich_file(3);
    seeds[n].name = "rich_v2.gguf"; seeds[n++].b = rich_file(2);
    gb_init(&g);
    g.alignment = 64;
    gb_u32(&g, "general.alignment", 64);
    add_rich_tensors(&g);
    seeds[n].name = "align64.gguf"; seeds[n++].b = gb_finish(&g);
    gb_free(&g);
    gb_init(&g);
    add_rich_kvs(&g);
    seeds[n].name = "metadata_only.gguf"; seeds[n++].b = gb_finish(&g);
    gb_free(&g);
    const char *model = test_path("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    FILE *mf = fopen(model, "rb");
    if (mf) {
        buf b = {0};
        unsigned char chunk[4096];
        for (int k = 0; k < 16; k++) put(&b, chunk, fread(chunk, 1, sizeof chunk, mf));
        fclose(mf);
        seeds[n].name = "model_prefix.gguf"; seeds[n++].b = b;
    }
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, seeds[i].name);
        FILE *fp = fopen(path, "wb");
        if (!fp || fwrite(seeds[i].b.p, 1, seeds[i].b.len, fp) != seeds[i].b.len) {
            fprintf(stderr, "cannot write %s\n", path);
            return 1;
        }
        fclose(fp);
        free(seeds[i].b.p);
    }
    printf("wrote %d seeds to %s\n", n, dir);
    return 0;
}

int main(void) {
    const char *seed_dir = getenv("GODWIT_SEED_DIR");
    if (seed_dir) return write_seeds(seed_dir);
    test_rich(3);
    test_rich(2);
    test_truncation();
    test_corruption();
    test_header();
    test_values();
    test_alignment();
    test_tensors();
    test_files();
    test_model();
    return test_finish("test_gguf");
}
