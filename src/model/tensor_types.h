/* Tensor element types, numbered as in GGUF/ggml so that a GGUF tensor's type
 * field can be used directly. Quantized types store blocks of `block_size`
 * elements in `block_bytes` bytes; a row of n elements (n a multiple of the
 * block size) takes n / block_size * block_bytes bytes. */
#ifndef GODWIT_TENSOR_TYPES_H
#define GODWIT_TENSOR_TYPES_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    GW_TYPE_F32 = 0,
    GW_TYPE_F16 = 1,
    GW_TYPE_Q4_0 = 2,
    GW_TYPE_Q4_1 = 3,
    GW_TYPE_Q5_0 = 6,
    GW_TYPE_Q5_1 = 7,
    GW_TYPE_Q8_0 = 8,
    GW_TYPE_Q8_1 = 9,
    GW_TYPE_Q2_K = 10,
    GW_TYPE_Q3_K = 11,
    GW_TYPE_Q4_K = 12,
    GW_TYPE_Q5_K = 13,
    GW_TYPE_Q6_K = 14,
    GW_TYPE_Q8_K = 15,
    GW_TYPE_BF16 = 30,
    GW_TYPE_COUNT = 31,
    /* godwit-internal activation format (never a GGUF weight type, outside
     * ggml's numbering): blocks of 32 values x = d * (255*h + l), with float d,
     * int32 sum of the 32 integers 255*h + l, then int8 h[32], int8 l[32]
     * (|h|, |l| <= 127): a 16-bit quantization (|255*h + l| <= 32512) stored
     * as two int8 planes for the u8 x s8 dot-product kernels. See
     * backend/cpu/quant.h. gw_row_bytes works for it; `supported` is false. */
    GW_TYPE_Q16 = 100
} gw_type;

typedef struct {
    const char *name;   /* "Q4_1"; NULL for numbers godwit does not know */
    int block_size;     /* elements per block (1 for F32/F16/BF16) */
    int block_bytes;    /* bytes per block */
    bool supported;     /* godwit can dequantize and compute with it */
} gw_type_traits;

/* Traits of type t, or NULL when t is not a type godwit knows. */
const gw_type_traits *gw_type_info(uint32_t t);
const char *gw_type_name(uint32_t t); /* "unknown" for unknown numbers */
/* Bytes of a row of n elements; 0 if t is unknown or n is not a multiple of
 * the block size. */
size_t gw_row_bytes(uint32_t t, int64_t n);
#endif
