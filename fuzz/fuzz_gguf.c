/* libFuzzer target for the GGUF reader: opens the input with
 * gguf_open_memory and, when it opens, reads back every value and every
 * tensor byte through the public interface, so the sanitizers see any read
 * that strays outside the input. Built and run by scripts/fuzz.sh. */
#include "model/gguf.h"
#include "model/tensor_types.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Checks a property that must hold for any file that opened. */
#define ASSERT(c) do { if (!(c)) abort(); } while (0)

static volatile unsigned sink; /* keeps the reads from being optimized away */

static size_t vtype_bytes(gguf_vtype t) {
    switch (t) {
    case GGUF_VT_UINT8: case GGUF_VT_INT8: case GGUF_VT_BOOL: return 1;
    case GGUF_VT_UINT16: case GGUF_VT_INT16: return 2;
    case GGUF_VT_UINT32: case GGUF_VT_INT32: case GGUF_VT_FLOAT32: return 4;
    case GGUF_VT_UINT64: case GGUF_VT_INT64: case GGUF_VT_FLOAT64: return 8;
    default: return 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A private copy ending exactly at `size`, so ASan flags a read one past it. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    char err[512];
    gguf_file *f = gguf_open_memory(copy, size, err, sizeof err);
    if (!f) {
        ASSERT(strncmp(err, "gguf: ", 6) == 0);
        free(copy);
        return 0;
    }
    unsigned sum = gguf_version(f) + (unsigned)gguf_alignment(f);
    ASSERT(gguf_data_offset(f) <= gguf_file_size(f));
    char buf[160], tiny[5];
    for (int64_t i = 0; i < gguf_n_kv(f); i++) {
        const char *key = gguf_kv_key(f, i);
        ASSERT(key && gguf_find_key(f, key) == i);
        gguf_kv_to_string(f, i, buf, sizeof buf);
        gguf_kv_to_string(f, i, tiny, sizeof tiny);
        ASSERT(strlen(buf) < sizeof buf && strlen(tiny) < sizeof tiny);
        sum += (unsigned)strlen(buf) + (unsigned)gguf_kv_type(f, i);
        uint32_t u32; int64_t i64; float f32; bool b; int32_t i32;
        if (gguf_get_u32(f, key, &u32)) sum += u32;
        if (gguf_get_i64(f, key, &i64)) sum += (unsigned)i64;
        if (gguf_get_f32(f, key, &f32)) sum += (unsigned)(f32 == f32);
        if (gguf_get_bool(f, key, &b)) sum += b;
        const char *s = gguf_get_str(f, key);
        if (s) sum += (unsigned)strlen(s);
        gguf_vtype et;
        uint64_t n;
        if (!gguf_get_arr_info(f, key, &et, &n)) continue;
        const uint8_t *raw = gguf_get_arr_data(f, key, &et, &n);
        for (uint64_t k = 0; raw && k < n * vtype_bytes(et); k++) sum += raw[k];
        for (uint64_t k = 0; k <= n; k++) {
            size_t len;
            const char *e = gguf_get_arr_str(f, key, k, &len);
            if (e) { ASSERT(k < n && e[len] == '\0'); sum += (unsigned)len + (uint8_t)e[0]; }
            if (gguf_get_arr_i32(f, key, k, &i32)) { ASSERT(k < n); sum += (unsigned)i32; }
            if (gguf_get_arr_f32(f, key, k, &f32)) { ASSERT(k < n); sum += (unsigned)(f32 == f32); }
        }
    }
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        ASSERT(t && gguf_find_tensor(f, t->name) == t);
        ASSERT(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS && gw_type_info(t->type));
        ASSERT(t->offset % gguf_alignment(f) == 0);
        const uint8_t *d = t->data;
        ASSERT(d >= copy && t->nbytes <= size && d - copy <= (ptrdiff_t)(size - t->nbytes));
        for (size_t k = 0; k < t->nbytes; k++) sum += d[k];
    }
    sink = sum;
    gguf_close(f);
    free(copy);
    return 0;
}
