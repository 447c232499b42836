/* CPU quantized math: fp16/bf16 conversion, dequantization, activation
 * quantization and quantized matrix products.
 *
 * Block layouts are byte-for-byte those of ggml (ggml-common.h), so GGUF tensor
 * data is used in place. gw_matmul picks a scalar, AVX2 or AVX-512 (VNNI)
 * implementation at run time from cpuid; GODWIT_ISA=scalar|avx2|avx512 in the
 * environment (read on first use) or gw_quant_force_isa() narrows the choice,
 * which is how the tests cover every path on one machine. */
#ifndef GODWIT_QUANT_H
#define GODWIT_QUANT_H
#include <stddef.h>
#include <stdint.h>
#include "model/tensor_types.h"

float gw_fp16_to_fp32(uint16_t h);
uint16_t gw_fp32_to_fp16(float f);   /* round to nearest even */
float gw_bf16_to_fp32(uint16_t h);
uint16_t gw_fp32_to_bf16(float f);   /* round to nearest even, NaN kept quiet */

/* Dequantize n elements (a multiple of the block size) of type t: F32, F16,
 * BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q4_K, Q5_K, Q6_K, Q8_K (results
 * bit-identical to ggml's dequantize_row_* and gguf-py), and godwit's Q16. */
void gw_dequantize_row(uint32_t t, const void *src, float *dst, int64_t n);

/* Reference quantizers, bit-identical to ggml's quantize_row_*_ref:
 * F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q8_K; and Q16 (below).
 * n is a multiple of the block size. Q8_0/Q8_1/Q8_K/Q16 use SIMD when
 * available (same bits as the scalar code). */
void gw_quantize_row(uint32_t t, const float *src, void *dst, int64_t n);

/* Activation precision of the quantized matmuls.
 *
 * GW_ACT_INT16 (the default): activations are GW_TYPE_Q16, 32-element blocks
 * quantized to 16-bit integers against the block's absolute maximum
 *   Q = round_half_even(x * 32512 / amax),  |Q| <= 32512,  x ~= d * Q,
 * d = amax / 32512 (float), stored as Q = 255*h + l with int8 planes h, l
 * (|h|, |l| <= 127, h = round(Q / 255)) plus the block's int32 sum of Q (for
 * the min terms of Q4_1/Q5_1/K-quants). The error of each value is at most
 * amax/65024 of its block, where int8 loses amax/254: int8 wipes out the small
 * values sharing a block with an outlier activation, which is what moved
 * SmolLM2-135M's log-probabilities by up to 0.6 from the float32 reference.
 * The kernels run the same u8 x s8 dot products (VPDPBUSD / PMADDUBSW) as for
 * int8, once per plane, combined as 255*dot(h) + dot(l) in int32 (exact): about
 * twice the arithmetic of int8, the same weight traffic.
 *
 * GW_ACT_INT8: ggml's activation types Q8_0 / Q8_1 / Q8_K (faster prefill,
 * less accurate).
 *
 * GODWIT_ACT=int8|int16 in the environment (read on first use) overrides the
 * default; gw_quant_set_activation_precision overrides both. Process-wide: do
 * not change it while other threads are between gw_vec_dot_type/gw_quantize_row
 * and gw_matmul (the matmul assumes the activation type of the current
 * setting). */
typedef enum { GW_ACT_INT8 = 0, GW_ACT_INT16 = 1 } gw_act_precision;
void gw_quant_set_activation_precision(gw_act_precision p);
gw_act_precision gw_quant_activation_precision(void);

/* The activation type gw_matmul expects for weights of type weight_type:
 * every quantized type -> Q16 under GW_ACT_INT16; under GW_ACT_INT8
 * Q4_0/Q5_0/Q8_0 -> Q8_0, Q4_1/Q5_1 -> Q8_1, Q4_K/Q5_K/Q6_K -> Q8_K;
 * F32/F16/BF16 -> F32 (always). Returns GW_TYPE_COUNT for unsupported weight
 * types. */
uint32_t gw_vec_dot_type(uint32_t weight_type);

/* Y[j*ldy + r] = dot(row r of W, row j of X) for r in [r0, r1), j in [0, n).
 * W: rows of k elements of type wt, row stride w_stride bytes. X: n rows made
 * by gw_quantize_row(gw_vec_dot_type(wt), ...), row stride x_stride bytes.
 * k must be a multiple of wt's block size (256 for K-quants). No alignment is
 * required of W, X or the strides.
 *
 * Thread-safe; callers split [r0, r1) among threads, best in multiples of 16
 * rows (the kernels work on 16-row panels; a ragged split costs a partial
 * panel per thread). Rows outside [r0, r1) of Y are not touched.
 * n < 8: the kernels read the GGUF blocks in place (decode, bound by memory
 * bandwidth; the next panel is software-prefetched). n >= 8: weights are
 * repacked 16 rows at a time into a per-thread scratch buffer (kept between
 * calls, freed at thread exit) and a register-blocked 16-row x 8-token
 * VPDPBUSD (AVX-512) or 16x4 PMADDUBSW (AVX2) micro-kernel runs over token
 * chunks of up to 512. Activation block sums are exact: recomputed from the
 * int8 values (Q8_1's fp16 s field is not used) or Q16's int32 sum. The activation type is
 * gw_vec_dot_type(wt) under the current activation precision.
 * F32/F16/BF16 weights (F32 activations, float accumulation): n < 8 reads the
 * rows in place, 8 (AVX-512) or 4 rows x up to 4 tokens with one accumulator
 * each, prefetching the next rows; n >= 8 converts 32 (AVX-512) or 16 (AVX2)
 * rows at a time to a k-major float panel in the per-thread scratch buffer and
 * runs a 32x8 (16x6) broadcast-FMA micro-kernel over token chunks sized to
 * keep their activations in L2. The scalar path is a plain loop. */
void gw_matmul(uint32_t wt, const void *W, size_t w_stride, const void *X, size_t x_stride,
               int64_t k, int64_t r0, int64_t r1, int64_t n, float *Y, int64_t ldy);

/* True if gw_matmul handles weight type wt. */
int gw_matmul_supported(uint32_t wt);

typedef enum { GW_ISA_SCALAR = 0, GW_ISA_AVX2 = 1, GW_ISA_AVX512 = 2 } gw_isa;

/* "avx512", "avx2" or "scalar": what gw_matmul uses now. */
const char *gw_quant_isa_name(void);
/* Best ISA this CPU (and build) supports. */
gw_isa gw_quant_best_isa(void);
/* Use isa (clamped to what the CPU supports) from now on, for all threads;
 * returns the ISA actually selected. Not meant to be called while other
 * threads are inside gw_matmul. */
gw_isa gw_quant_force_isa(gw_isa isa);
#endif
