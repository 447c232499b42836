/* safetensors reader (Hugging Face's checkpoint format), single files and
 * sharded checkpoints (model.safetensors.index.json).
 *
 * Layout of a .safetensors file:
 *
 *   u64 N (little-endian) | N bytes of JSON header | data section
 *
 * The header is a JSON object mapping each tensor name to
 *   {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [begin, end]}
 * (offsets relative to the start of the data section, end exclusive), plus an
 * optional "__metadata__" object of string values.
 *
 * The file is memory-mapped read-only and validated entirely at open: header
 * length within the file (and at most 100 MB, as the reference
 * implementation), valid JSON, each entry an object with a known dtype, a
 * shape of non-negative integers, offsets of non-negative integers with
 * begin <= end <= data section size and end - begin == elements x dtype size
 * (computed without overflow), no duplicate names. Overlapping tensors are
 * not refused (they cannot cause an out-of-bounds read). Only the dtypes
 * godwit computes with are accepted: BF16, F16 and F32; any other dtype
 * (I64, F64, F8_E4M3, ...) makes open fail with a message naming the tensor
 * and the dtype. Tensor data stays in the mapping. */
#ifndef GODWIT_SAFETENSORS_H
#define GODWIT_SAFETENSORS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u * 1000u * 1000u)

typedef struct {
    const char *name;           /* NUL-terminated, owned by the st_file */
    uint32_t type;              /* GW_TYPE_F32 / GW_TYPE_F16 / GW_TYPE_BF16 */
    int n_dims;                 /* 0..ST_MAX_DIMS (0: a scalar) */
    int64_t shape[ST_MAX_DIMS]; /* row-major: shape[n_dims-1] is contiguous */
    int64_t n_elements;
    size_t nbytes;              /* == n_elements x element size, inside the file */
    const void *data;           /* pointer into the mapping (possibly unaligned) */
} st_tensor;

typedef struct st_file st_file;

/* Open and validate a file; NULL with a message in err (may be NULL). */
st_file *st_open(const char *path, char *err, size_t errlen);
/* Same over a caller-owned buffer that must outlive the st_file. */
st_file *st_open_memory(const void *data, size_t size, char *err, size_t errlen);
void st_close(st_file *f);

int64_t st_n_tensors(const st_file *f);
const st_tensor *st_tensor_at(const st_file *f, int64_t i); /* sorted by name; NULL if out of range */
const st_tensor *st_find(const st_file *f, const char *name); /* NULL if absent */
/* A string value of "__metadata__", NULL if absent. */
const char *st_metadata(const st_file *f, const char *key);
/* "F32", "F16", "BF16" for the gw types above, "?" otherwise. */
const char *st_dtype_name(uint32_t type);

/* ---- checkpoints: one file, or shards listed by an index ----
 * path may be a .safetensors file, a *.safetensors.index.json file, or a
 * directory holding model.safetensors.index.json or model.safetensors (the
 * index wins when both exist). An index is {"weight_map": {tensor: shard}}
 * (other keys ignored); shard names must be plain file names in the index's
 * directory. Every shard is opened and validated, and every tensor the
 * weight map names must be in the shard it names. */
typedef struct st_checkpoint st_checkpoint;
st_checkpoint *st_checkpoint_open(const char *path, char *err, size_t errlen);
void st_checkpoint_close(st_checkpoint *c);
int st_checkpoint_n_files(const st_checkpoint *c);
const st_file *st_checkpoint_file(const st_checkpoint *c, int i);
/* Looks the tensor up (through the weight map when there is an index). */
const st_tensor *st_checkpoint_find(const st_checkpoint *c, const char *name);
/* Tensors over all shards (those of the weight map when there is an index). */
int64_t st_checkpoint_n_tensors(const st_checkpoint *c);
#endif
