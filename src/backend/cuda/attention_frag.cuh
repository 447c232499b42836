/* Fragment bookkeeping of the tensor-core attention kernels (attention.cu):
 * which tile row and 16-byte chunk each lane hands to ldmatrix, which Q
 * elements each lane holds, and the shared-memory swizzle. Host and device
 * code, so that tests/cuda can run these formulas on the CPU through an
 * emulation of ldmatrix and mma.m16n8k16 (as the PTX ISA defines them) and
 * compare the products with plain matrix products.
 *
 * mma.m16n8k16 .bf16 fragments (g = lane / 4, t = lane % 4):
 *   A (16x16):  reg r holds rows g + 8*(r & 1), cols 16*kk + 8*(r >> 1) + 2t, +1
 *   B (16x8):   reg 0 holds k 2t, 2t+1 of col g;  reg 1 holds k 2t+8, 2t+9 of col g
 *   C (16x8):   c0, c1 = row g, cols 2t, 2t+1;  c2, c3 = row g+8, same cols
 * ldmatrix .x4: lanes 8m..8m+7 give the 8 row addresses of matrix m; register m
 *   of lane L gets row L/4, cols 2(L%4), +1 of matrix m (.trans: rows 2(L%4),
 *   +1 of column L/4). */
#ifndef GODWIT_CUDA_ATTENTION_FRAG_CUH
#define GODWIT_CUDA_ATTENTION_FRAG_CUH
#include <cuda_runtime.h>

namespace gwattn {

constexpr int BN = 64; /* keys per tile */

/* Element offset of (row r, 16-byte chunk c) in a [rows][D] bf16 tile whose
 * chunks are XOR-swizzled by r % 8: the 8 rows of one ldmatrix matrix then
 * fall in 8 different bank groups. */
template <int D> __host__ __device__ inline int swz(int r, int c) { return r * D + ((c ^ (r & 7)) << 3); }

/* Q as the A operand at k-step kk: register r of `lane` holds Q[a_row][a_col], +1. */
__host__ __device__ inline int a_row(int lane, int r) { return (lane >> 2) + 8 * (r & 1); }
__host__ __device__ inline int a_col(int lane, int r, int kk) { return 16 * kk + 8 * (r >> 1) + 2 * (lane & 3); }

/* K tile [key][dim], ldmatrix.x4 without .trans: the row (key) and chunk (8
 * dims) `lane` addresses for the B fragments of key n-tiles 2jn and 2jn+1
 * (registers 0,1 and 2,3) at k-step kk (dims 16kk..16kk+15). */
__host__ __device__ inline int k_ldsm_row(int lane, int jn) { return 16 * jn + 8 * (lane >> 4) + (lane & 7); }
__host__ __device__ inline int k_ldsm_chunk(int lane, int kk) { return 2 * kk + ((lane >> 3) & 1); }

/* V tile [key][dim], ldmatrix.x4.trans: the row (key) and chunk `lane`
 * addresses for the B fragments of dim n-tiles 2jd and 2jd+1 (registers 0,1
 * and 2,3) at key step ks (keys 16ks..16ks+15). */
__host__ __device__ inline int v_ldsm_row(int lane, int ks) { return 16 * ks + 8 * ((lane >> 3) & 1) + (lane & 7); }
__host__ __device__ inline int v_ldsm_chunk(int lane, int jd) { return 2 * jd + (lane >> 4); }

} // namespace gwattn
#endif
