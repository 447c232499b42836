/* The hardened safetensors reader on hand-built files: a valid file parses
 * with the right names, shapes, dtypes, data and metadata; every kind of
 * malformed file (truncated, header length beyond the file, bad JSON, offsets
 * out of bounds or inconsistent with shape x dtype, unknown and unsupported
 * dtypes, duplicate names...) gives a clean error naming the problem; sharded
 * checkpoints through an index, and broken indexes. Built files are opened
 * both from memory (exact-size heap copies, so ASan sees any over-read) and
 * from disk (mmap). */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/safetensors.h"
#include "model/tensor_types.h"
#include "test.h"

static char tmpdir[256];

/* Builds "u64 len | header | data" in a malloc'd buffer of exactly *size bytes. */
static uint8_t *build(const char *header, const void *data, size_t data_len, size_t *size) {
    size_t h = strlen(header);
    *size = 8 + h + data_len;
    uint8_t *b = malloc(*size ? *size : 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    if (data_len) memcpy(b + 8 + h, data, data_len);
    return b;
}

static void write_file(const char *name, const void *buf, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    if (n) fwrite(buf, 1, n, f);
    fclose(f);
}

static void write_text(const char *name, const char *text) { write_file(name, text, strlen(text)); }

/* The buffer behind the last successful expect(), freed by release(). */
static uint8_t *last_buf;
static void release(st_file *f) {
    st_close(f);
    free(last_buf);
    last_buf = NULL;
}

/* Opens a header + data both from memory and from a file; expects failure with
 * `want` in the message (NULL: expects success, returns the memory open, to be
 * given back with release()). */
static st_file *expect(const char *what, const char *header, const void *data, size_t data_len, const char *want) {
    size_t size;
    uint8_t *buf = build(header, data, data_len, &size);
    char err[512] = "";
    st_file *f = st_open_memory(buf, size, err, sizeof err);
    if (want) {
        CHECK_MSG(f == NULL, "%s: opened but should fail", what);
        CHECK_MSG(strstr(err, want) != NULL, "%s: error '%s' lacks '%s'", what, err, want);
        st_close(f);
        write_file("case.safetensors", buf, size);
        char p[512], err2[512] = "";
        snprintf(p, sizeof p, "%s/case.safetensors", tmpdir);
        st_file *g = st_open(p, err2, sizeof err2);
        CHECK_MSG(g == NULL && strstr(err2, want) && strstr(err2, "case.safetensors"),
                  "%s (file): error '%s' should name the file and '%s'", what, err2, want);
        st_close(g);
        free(buf);
        return NULL;
    }
    CHECK_MSG(f != NULL, "%s: %s", what, err);
    if (f) last_buf = buf;
    else free(buf);
    return f;
}

static void test_valid(void) {
    /* a: F32 [2, 3]; b: BF16 [4]; c: F16 [] (scalar); e: F32 [0, 5] empty */
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[4] = {0x3F80, 0x4000, 0xC040, 0x0000}; /* 1, 2, -3, 0 */
    uint16_t c = 0x3C00;                            /* 1.0 */
    uint8_t data[24 + 8 + 2];
    memcpy(data, a, 24);
    memcpy(data + 24, b, 8);
    memcpy(data + 32, &c, 2);
    const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"hi\"},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"c\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[32,34]},"
        "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[34,34]}}   ";
    size_t size;
    uint8_t *buf = build(hdr, data, sizeof data, &size);
    char err[512] = "";
    st_file *f = st_open_memory(buf, size, err, sizeof err);
    CHECK_MSG(f != NULL, "valid file: %s", err);
    if (f) {
        CHECK(st_n_tensors(f) == 4);
        const st_tensor *ta = st_find(f, "a"), *tb = st_find(f, "b"), *tc = st_find(f, "c"), *te = st_find(f, "e");
        CHECK(ta && tb && tc && te && !st_find(f, "d") && !st_find(f, "__metadata__"));
        if (ta) {
            CHECK(ta->type == GW_TYPE_F32 && ta->n_dims == 2 && ta->shape[0] == 2 && ta->shape[1] == 3);
            CHECK(ta->n_elements == 6 && ta->nbytes == 24 && ta->data == buf + size - sizeof data);
            float x[6];
            memcpy(x, ta->data, 24);
            CHECK(x[0] == 1 && x[5] == 6);
        }
        if (tb) {
            CHECK(tb->type == GW_TYPE_BF16 && tb->n_dims == 1 && tb->shape[0] == 4 && tb->nbytes == 8);
            uint16_t y;
            memcpy(&y, (const uint8_t *)tb->data + 4, 2);
            CHECK(y == 0xC040);
        }
        if (tc) CHECK(tc->type == GW_TYPE_F16 && tc->n_dims == 0 && tc->n_elements == 1 && tc->nbytes == 2);
        if (te) CHECK(te->n_elements == 0 && te->nbytes == 0);
        CHECK(strcmp(st_tensor_at(f, 0)->name, "a") == 0 && st_tensor_at(f, 4) == NULL);
        CHECK(st_metadata(f, "format") && strcmp(st_metadata(f, "format"), "pt") == 0);
        CHECK(st_metadata(f, "note") && strcmp(st_metadata(f, "note"), "hi") == 0);
        CHECK(st_metadata(f, "absent") == NULL);
        CHECK(strcmp(st_dtype_name(GW_TYPE_BF16), "BF16") == 0);
    }
    st_close(f);
    /* the same from disk, through the checkpoint API */
    write_file("model.safetensors", buf, size);
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", tmpdir);
    st_checkpoint *ck = st_checkpoint_open(p, err, sizeof err);
    CHECK_MSG(ck != NULL, "checkpoint of one file: %s", err);
    if (ck) {
        CHECK(st_checkpoint_n_files(ck) == 1 && st_checkpoint_n_tensors(ck) == 4);
        const st_tensor *t = st_checkpoint_find(ck, "a");
        CHECK(t && t->type == GW_TYPE_F32 && memcmp(t->data, a, 24) == 0);
    }
    st_checkpoint_close(ck);
    /* a directory with model.safetensors */
    ck = st_checkpoint_open(tmpdir, err, sizeof err);
    CHECK_MSG(ck != NULL && st_checkpoint_find(ck, "b"), "directory checkpoint: %s", err);
    st_checkpoint_close(ck);
    remove(p);
    free(buf);
}

static void test_bad(void) {
    uint8_t data[64] = {0};
    char err[512];
    /* shorter than the length field */
    uint8_t tiny[5] = {1, 0, 0, 0, 0};
    CHECK(st_open_memory(tiny, 5, err, sizeof err) == NULL && strstr(err, "truncated"));
    CHECK(st_open_memory(tiny, 0, err, sizeof err) == NULL && strstr(err, "truncated"));
    /* header length beyond the file */
    uint8_t lenonly[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK(st_open_memory(lenonly, 16, err, sizeof err) == NULL && strstr(err, "exceeds the file"));
    uint8_t huge[16] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, '{', '}'};
    CHECK(st_open_memory(huge, 16, err, sizeof err) == NULL && strstr(err, "exceeds the file"));
    /* truncated data: an entry needs more than the file has */
    const char *ok1 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    expect("truncated data", ok1, data, 8, "outside the data section");
    st_file *f = expect("exact data", ok1, data, 16, NULL);
    if (f) CHECK(st_find(f, "a") && st_find(f, "a")->nbytes == 16);
    release(f);
    /* bad JSON */
    expect("bad JSON", "{\"a\":{\"dtype\":\"F32\",", data, 0, "not valid JSON");
    expect("not JSON", "hello world!", data, 0, "not valid JSON");
    expect("trailing data", "{} x", data, 0, "trailing data");
    expect("not an object", "[1,2,3]", data, 0, "not a JSON object");
    expect("entry not an object", "{\"a\":5}", data, 0, "'a' is not an object");
    expect("no dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", data, 4, "no dtype");
    expect("no shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", data, 4, "no shape");
    expect("no offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", data, 4, "no data_offsets");
    expect("three offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", data, 8,
           "no data_offsets");
    /* offsets out of bounds / reversed / not integers */
    expect("end beyond data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[60,68]}}", data, 64,
           "outside the data section");
    expect("begin > end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", data, 64,
           "outside the data section");
    expect("huge offsets",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551612,18446744073709551616]}}",
           data, 64, "not non-negative integers");
    expect("negative offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", data, 64,
           "not non-negative integers");
    expect("fractional offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.5,4.5]}}", data, 64,
           "not non-negative integers");
    expect("string offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]}}", data, 64,
           "not non-negative integers");
    /* size mismatch with shape x dtype */
    expect("too few bytes", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", data, 64,
           "needs 24");
    expect("too many bytes", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,8]}}", data, 64,
           "needs 6");
    expect("overflowing shape",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", data, 64,
           "larger than the data section");
    expect("zero dim beside huge", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,9007199254740992],\"data_offsets\":[0,4]}}",
           data, 64, "needs 0");
    expect("negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", data, 64,
           "not a non-negative integer");
    expect("too many dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", data,
           64, "9 dimensions");
    /* dtypes */
    expect("unknown dtype", "{\"a\":{\"dtype\":\"Q4_K\",\"shape\":[1],\"data_offsets\":[0,4]}}", data, 64,
           "unknown dtype 'Q4_K'");
    expect("unsupported dtype", "{\"w\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", data, 64,
           "tensor 'w' has unsupported dtype 'I64'");
    expect("F8 dtype", "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", data, 64,
           "unsupported dtype 'F8_E4M3'");
    expect("dtype not a string", "{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", data, 64, "no dtype");
    /* names and metadata */
    expect("duplicate",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
           data, 64, "appears twice");
    expect("metadata not strings", "{\"__metadata__\":{\"n\":5}}", data, 0, "not a string");
    expect("metadata not an object", "{\"__metadata__\":[]}", data, 0, "not an object");
    /* an empty header object is a valid, empty file */
    f = expect("empty", "{}", data, 0, NULL);
    if (f) CHECK(st_n_tensors(f) == 0);
    release(f);
    /* missing file */
    CHECK(st_open("/nonexistent/x.safetensors", err, sizeof err) == NULL && strstr(err, "cannot open"));
}

/* Every prefix of a valid file must fail cleanly (or succeed only at full
 * length), and every single-byte corruption of its header must not crash. */
static void test_truncations(void) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    const char *hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                      "\"__metadata__\":{\"format\":\"pt\"}}";
    size_t size;
    uint8_t *buf = build(hdr, a, sizeof a, &size);
    char err[512];
    for (size_t n = 0; n < size; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, buf, n);
        st_file *f = st_open_memory(cut, n, err, sizeof err);
        CHECK_MSG(f == NULL, "prefix of %zu bytes opened", n);
        st_close(f);
        free(cut);
    }
    int opened = 0;
    for (size_t i = 8; i < 8 + strlen(hdr); i++) {
        for (int v = 0; v < 256; v += 37) {
            uint8_t *c = malloc(size);
            memcpy(c, buf, size);
            c[i] = (uint8_t)v;
            st_file *f = st_open_memory(c, size, err, sizeof err);
            if (f) {
                opened++;
                for (int64_t k = 0; k < st_n_tensors(f); k++) {
                    const st_tensor *t = st_tensor_at(f, k);
                    CHECK((const uint8_t *)t->data >= c && (const uint8_t *)t->data + t->nbytes <= c + size);
                }
            }
            st_close(f);
            free(c);
        }
    }
    CHECK(opened > 0); /* some corruptions (inside strings) are harmless */
    free(buf);
}

static void test_index(void) {
    char err[512], p[512];
    float x[4] = {1, 2, 3, 4};
    size_t n1, n2;
    uint8_t *s1 = build("{\"w1\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"extra\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                        x, 12, &n1);
    uint8_t *s2 = build("{\"w2\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", x, 16, &n2);
    write_file("model-00001-of-00002.safetensors", s1, n1);
    write_file("model-00002-of-00002.safetensors", s2, n2);
    write_text("model.safetensors.index.json",
               "{\"metadata\":{\"total_size\":28},\"weight_map\":{\"w1\":\"model-00001-of-00002.safetensors\","
               "\"w2\":\"model-00002-of-00002.safetensors\"}}");
    st_checkpoint *ck = st_checkpoint_open(tmpdir, err, sizeof err);
    CHECK_MSG(ck != NULL, "sharded: %s", err);
    if (ck) {
        CHECK(st_checkpoint_n_files(ck) == 2 && st_checkpoint_n_tensors(ck) == 3);
        const st_tensor *t = st_checkpoint_find(ck, "w2");
        CHECK(t && t->n_dims == 2 && memcmp(t->data, x, 16) == 0);
        CHECK(st_checkpoint_find(ck, "w1") && st_checkpoint_find(ck, "extra") && !st_checkpoint_find(ck, "w3"));
    }
    st_checkpoint_close(ck);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", tmpdir);
    ck = st_checkpoint_open(p, err, sizeof err);
    CHECK_MSG(ck != NULL && st_checkpoint_n_files(ck) == 2, "index path: %s", err);
    st_checkpoint_close(ck);

    struct { const char *what, *json, *want; } bad[] = {
        {"missing shard", "{\"weight_map\":{\"w1\":\"model-00009.safetensors\"}}", "cannot open"},
        {"tensor not in shard", "{\"weight_map\":{\"w2\":\"model-00001-of-00002.safetensors\"}}",
         "'w2' is not in shard"},
        {"path in shard name", "{\"weight_map\":{\"w1\":\"../model-00001-of-00002.safetensors\"}}",
         "not a plain file name"},
        {"no weight_map", "{\"metadata\":{}}", "no weight_map"},
        {"shard not a string", "{\"weight_map\":{\"w1\":7}}", "not a file name"},
        {"bad JSON", "{\"weight_map\":", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text("model.safetensors.index.json", bad[i].json);
        err[0] = 0;
        ck = st_checkpoint_open(tmpdir, err, sizeof err);
        CHECK_MSG(ck == NULL && strstr(err, bad[i].want), "%s: '%s' lacks '%s'", bad[i].what, err, bad[i].want);
        st_checkpoint_close(ck);
    }
    /* the same tensor in two shards */
    write_file("model-00002-of-00002.safetensors", s1, n1);
    write_text("model.safetensors.index.json",
               "{\"weight_map\":{\"w1\":\"model-00001-of-00002.safetensors\","
               "\"extra\":\"model-00002-of-00002.safetensors\"}}");
    ck = st_checkpoint_open(tmpdir, err, sizeof err);
    CHECK_MSG(ck == NULL && strstr(err, "is in both"), "duplicate across shards: %s", err);
    st_checkpoint_close(ck);
    /* a broken shard is named */
    uint8_t junk[12] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    write_file("model-00002-of-00002.safetensors", junk, sizeof junk);
    write_text("model.safetensors.index.json",
               "{\"weight_map\":{\"w2\":\"model-00002-of-00002.safetensors\"}}");
    ck = st_checkpoint_open(tmpdir, err, sizeof err);
    CHECK_MSG(ck == NULL && strstr(err, "model-00002-of-00002.safetensors") && strstr(err, "exceeds the file"),
              "broken shard: %s", err);
    st_checkpoint_close(ck);
    /* a directory with nothing */
    const char *files[] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                           "model.safetensors.index.json", "case.safetensors"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, files[i]);
        remove(p);
    }
    ck = st_checkpoint_open(tmpdir, err, sizeof err);
    CHECK_MSG(ck == NULL && strstr(err, "neither model.safetensors"), "empty dir: %s", err);
    st_checkpoint_close(ck);
    free(s1);
    free(s2);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/godwit_st_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_valid();
    test_bad();
    test_truncations();
    test_index();
    rmdir(tmpdir);
    return test_finish("test_safetensors");
}
