/* GGUF reader (versions 2 and 3). The file is memory-mapped read-only; every
 * size and offset read from it is checked against the file's length before it
 * is used, so a truncated, corrupt or hostile file yields an error message that
 * names the problem, never a crash or an out-of-bounds read.
 *
 * Metadata keys and string values are copied out into NUL-terminated strings
 * owned by the gguf_file; tensor data stays in the mapping. */
#ifndef GODWIT_GGUF_H
#define GODWIT_GGUF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    GGUF_VT_UINT8 = 0, GGUF_VT_INT8 = 1, GGUF_VT_UINT16 = 2, GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4, GGUF_VT_INT32 = 5, GGUF_VT_FLOAT32 = 6, GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8, GGUF_VT_ARRAY = 9, GGUF_VT_UINT64 = 10, GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12
} gguf_vtype;

#define GGUF_MAX_DIMS 4

typedef struct {
    const char *name;        /* NUL-terminated, owned by the gguf_file */
    uint32_t type;           /* gw_type number (see tensor_types.h) */
    int n_dims;              /* 1..GGUF_MAX_DIMS */
    int64_t ne[GGUF_MAX_DIMS]; /* elements per dim, ne[0] is the contiguous one; unused dims are 1 */
    uint64_t offset;         /* from the start of the data section */
    size_t nbytes;           /* checked to lie inside the file */
    const void *data;        /* pointer into the mapping */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Open and validate a file. Returns NULL and writes a message to err on
 * failure (err may be NULL). */
gguf_file *gguf_open(const char *path, char *err, size_t errlen);
/* Same over a caller-owned buffer that must outlive the gguf_file (fuzzing,
 * tests). */
gguf_file *gguf_open_memory(const void *data, size_t size, char *err, size_t errlen);
void gguf_close(gguf_file *f);

uint32_t gguf_version(const gguf_file *f);
size_t gguf_alignment(const gguf_file *f);

/* Metadata. Lookups by key return false/NULL/0 when the key is absent or of
 * an incompatible type. Integer getters accept any integer value type whose
 * value fits; float getters accept FLOAT32/FLOAT64 (and integers). */
int64_t gguf_n_kv(const gguf_file *f);
const char *gguf_kv_key(const gguf_file *f, int64_t i);
gguf_vtype gguf_kv_type(const gguf_file *f, int64_t i);
int64_t gguf_find_key(const gguf_file *f, const char *key); /* -1 if absent */
bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
bool gguf_get_f32(const gguf_file *f, const char *key, float *out);
bool gguf_get_bool(const gguf_file *f, const char *key, bool *out);
const char *gguf_get_str(const gguf_file *f, const char *key); /* NUL-terminated */

/* Arrays: element count and type (0 / false if the key is not an array). */
bool gguf_get_arr_info(const gguf_file *f, const char *key, gguf_vtype *elem_type, uint64_t *n);
/* String element i of a string array (NUL-terminated; *len gets its length,
 * which may be less than strlen if it contains NUL bytes... it never does for
 * valid vocabularies, but len is exact). NULL if out of range. */
const char *gguf_get_arr_str(const gguf_file *f, const char *key, uint64_t i, size_t *len);
/* Numeric array elements converted to the requested C type; false if the
 * array's element type is not numeric or not convertible without loss. */
bool gguf_get_arr_i32(const gguf_file *f, const char *key, uint64_t i, int32_t *out);
bool gguf_get_arr_f32(const gguf_file *f, const char *key, uint64_t i, float *out);

/* Human-readable rendering of a value (for `godwit info`); arrays are shown
 * as their type and length plus the first few elements. */
void gguf_kv_to_string(const gguf_file *f, int64_t i, char *buf, size_t buflen);

/* Notes on the above, as implemented in gguf.c: keys and tensor names never
 * contain NUL bytes (such files are refused), so lookups by C string are
 * exact. gguf_get_arr_f32 rounds float64 elements to the nearest float (as
 * gguf_get_f32 does) but takes integer elements only when exact.
 * gguf_kv_type of an out-of-range index returns GGUF_VT_UINT8. */

/* File offset where the data section starts, and the file size. */
size_t gguf_data_offset(const gguf_file *f);
size_t gguf_file_size(const gguf_file *f);
/* "uint32", "string", ...; "unknown" for other numbers. */
const char *gguf_vtype_name(gguf_vtype t);
/* Raw elements of an array of a fixed-size type (numbers or bool), for bulk
 * reads: a pointer into the file, little-endian and possibly unaligned (read
 * with memcpy). NULL for string arrays, arrays of arrays and non-arrays. */
const void *gguf_get_arr_data(const gguf_file *f, const char *key, gguf_vtype *elem_type,
                              uint64_t *n);

/* Tensors. */
int64_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name); /* NULL if absent */
#endif
