/* Attention over the paged KV cache on tensor cores (mma.sync m16n8k16, bf16
 * operands, f32 accumulators), for head_dim 64 and 128.
 *
 * Fragments (PTX ISA, mma.m16n8k16 .bf16; g = lane / 4, t = lane % 4):
 *   A (16 x 16, row-major): reg0 = (row g,   cols 2t, 2t+1)   reg1 = (row g+8, cols 2t..)
 *                           reg2 = (row g,   cols 2t+8, +9)   reg3 = (row g+8, cols 2t+8..)
 *   B (16 x 8, "col"):      reg0 = (k 2t, 2t+1; col g)        reg1 = (k 2t+8, 2t+9; col g)
 *   C (16 x 8, f32):        c0, c1 = (row g, cols 2t, 2t+1)    c2, c3 = (row g+8, same cols)
 * S = Q K^T takes A = Q (query rows x dims) and B[k][n] = K[key n][dim k], i.e.
 * K stored key-major [key][dim] is what ldmatrix (no .trans) hands out. O = P V
 * takes A = P straight from the S accumulators (C of keys 16k..16k+15 is, packed
 * to bf16, exactly the A fragment: the FlashAttention-2 register trick) and
 * B[k][n] = V[key k][dim n], loaded with ldmatrix.trans from the same
 * [key][dim] layout.
 *
 * Shared memory: tiles of BN = 64 keys x head_dim bf16 for K and V, two stages
 * (cp.async of tile j+1 overlaps the math on tile j). Rows are 16-byte chunks
 * XOR-swizzled by (row % 8), so the 8 row addresses of an ldmatrix hit 8
 * different bank groups. Pages: key slot s of a sequence lives in block
 * table[s / block_size] (gw_cuda.h), each key's head_dim values contiguous, so
 * a tile row is one 16-byte-aligned run of 128 or 256 bytes.
 *
 * Prefill (FlashAttention-2 style): one CTA per (query head, tile of 16*WARPS
 * new tokens, sequence); each warp owns 16 query rows (in registers as A
 * fragments) and its own online softmax (running max m and sum l in the log2
 * domain, the accumulator O rescaled by exp2(m_old - m_new)). Causal masking
 * only in tiles that cross a row's last visible key. Var-len: the grid covers
 * the longest sequence; CTAs past a sequence's end exit at once. Query tiles
 * are scheduled last-first (the longest rows first). GQA: query head h reads
 * KV head h / group; the heads of a group run in neighbouring CTAs, so their
 * K/V tiles are read from L2. Not yet done (next steps once measured): 32 rows
 * per warp (halves the shared-memory traffic per FLOP), wgmma (sm_90a).
 *
 * Decode (flash-decoding): one CTA per (KV head, chunk of up to 16 query heads
 * of its group, split of the key range, sequence). The group's query heads are
 * the 16 rows of the A fragment (rows past the group are zero), so each K/V
 * tile is loaded once for all of them. The 4 warps take 16 keys each of every
 * 64-key tile, keep separate softmax states, and are merged through shared
 * memory at the end; each split writes (O / l, log2-sum-exp) and a second
 * kernel merges the splits (or, with one split, the CTA writes the output). */
#include <math.h>

#include <algorithm>
#include <atomic>

#include "backend/cuda/attention_frag.cuh"
#include "backend/cuda/common.cuh"
#include "backend/cuda/kv_quant.cuh"

namespace {

using gwattn::BN;
using gwattn::swz;

constexpr float kLog2e = 1.4426950408889634f;

struct AttnParams {
    const uint16_t *q;
    int64_t q_stride;
    uint16_t *out;
    int64_t o_stride;
    const uint16_t *kc, *vc;
    int64_t block_stride;
    int block_size;
    int bs_shift; /* log2(block_size) when it is a power of two (the usual case), else -1 */
    const int32_t *cu_q, *kv_lens, *tables;
    int bt_stride;
    int n_heads, group;
    float scale_log2; /* softmax scale * log2(e): scores in the log2 domain */
    int n_splits, n_chunks;
    float *part_o, *part_lse;
    /* quantized caches (gw_cuda.h): sealed tiles, dequantized by load_tile */
    const uint8_t *kq, *vq;
    const uint32_t *kp, *vp;
    int64_t q_block_stride, p_block_stride;
};

/* ---- PTX wrappers ---- */

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16 bytes global -> shared, asynchronous; src_bytes = 0 writes zeros (the
 * source is not read). */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

/* c += a . b for one m16n8k16 tile. */
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* ---- tiles ---- */

/* The two pipeline stages: K and V tiles of stage j % 2 (pointer arithmetic
 * rather than an array of pointers, which a run-time index would put in local
 * memory). */
template <int D> __device__ __forceinline__ uint16_t *stage_k(uint16_t *smem, int j) { return smem + (j & 1) * 2 * BN * D; }
template <int D> __device__ __forceinline__ uint16_t *stage_v(uint16_t *smem, int j) {
    return smem + (j & 1) * 2 * BN * D + BN * D;
}

/* Block and slot of a key. */
__device__ __forceinline__ void key_block(const AttnParams &p, int key, int &bi, int &slot) {
    if (p.bs_shift >= 0) {
        bi = key >> p.bs_shift;
        slot = key & (p.block_size - 1);
    } else {
        bi = key / p.block_size;
        slot = key - bi * p.block_size;
    }
}

/* Keys [kv0, kv0 + BN) of KV head kvh into sK / sV; keys >= kv_end (past the
 * range, or past the sequence) become zero rows, and their page is not read.
 * Each thread always copies the same 16-byte chunk column c of rows r0,
 * r0 + RPP, ...: RPP is a multiple of 8, so the swizzle of every such row is
 * r0's and its shared address is r0's plus a constant (the address arithmetic
 * is most of this kernel family's integer work). */
template <int D, int NTHREADS>
__device__ __forceinline__ void load_tile_bf16(const AttnParams &p, const int32_t *table, int kvh, int kv0, int kv_end,
                                               uint16_t *sK, uint16_t *sV) {
    constexpr int CH = D / 8, RPP = NTHREADS / CH, PASSES = BN / RPP;
    static_assert(NTHREADS % CH == 0 && RPP % 8 == 0 && BN % RPP == 0, "tile rows per pass");
    const int c = threadIdx.x % CH, r0 = threadIdx.x / CH;
    const uint32_t dk0 = smem_addr(sK + swz<D>(r0, c)), dv0 = smem_addr(sV + swz<D>(r0, c));
    const int64_t head_off = (int64_t)kvh * p.block_size * D + c * 8;
#pragma unroll
    for (int k = 0; k < PASSES; k++) {
        const int key = kv0 + r0 + k * RPP;
        const uint32_t step = (uint32_t)(k * RPP * D * (int)sizeof(uint16_t));
        if (key < kv_end) {
            int bi, slot;
            key_block(p, key, bi, slot);
            const int64_t off = (int64_t)table[bi] * p.block_stride + head_off + (int64_t)slot * D;
            cp_async16(dk0 + step, p.kc + off, 16);
            cp_async16(dv0 + step, p.vc + off, 16);
        } else {
            cp_async16(dk0 + step, p.kc, 0);
            cp_async16(dv0 + step, p.vc, 0);
        }
    }
}

/* ---- tiles of a quantized cache ----
 *
 * Sealed tiles are read in two steps, so that their loads stay asynchronous
 * like the bf16 tiles' cp.async: tile j + 1's raw bytes (codes and
 * parameters) are copied into a raw stage while tile j is computed on, and
 * once they have arrived the whole CTA dequantizes them into the one bf16
 * stage the math reads. kv0 is a multiple of 32 (tiles start at multiples of
 * BN; decode splits too), so a tile is two key groups of 32 slots, each in one
 * block; a sealed group's four pieces are contiguous in the block's tile (codes
 * of slots [s, s + 32) are 32 rows of CB bytes, key parameters one row of D
 * pairs, value parameters 32 rows of D/32 pairs), and land in the raw stage in
 * that order. Rows of open pages (the last block of a sequence, the new
 * tokens) are copied synchronously during the dequantization pass. */
template <int D, int QT> struct RawTile {
    static constexpr int CB = QT == GW_CUDA_KV_INT4 ? D / 2 : D; /* code bytes per row */
    static constexpr int KC = 0, VC = 32 * CB, KP = 64 * CB, VP = 64 * CB + 4 * D; /* offsets in a group */
    static constexpr int GROUP = 64 * CB + 8 * D;                                /* bytes per group */
    static constexpr int BYTES = 2 * GROUP;                                      /* per stage (BN = 64) */
    static_assert(BN == 64 && GROUP % 128 == 0, "raw stage layout");
};

/* Shared memory of a kernel's K/V stages, in bf16 elements: two bf16 stages;
 * quantized caches one bf16 stage and two raw stages. */
template <int D, int QT> __host__ __device__ constexpr int kv_smem_elems() {
    if constexpr (QT == GW_CUDA_KV_BF16) return 4 * BN * D;
    else return 2 * BN * D + RawTile<D, QT>::BYTES;
}
template <int D, int QT> __device__ __forceinline__ uint8_t *raw_stage(uint16_t *smem, int j) {
    return (uint8_t *)(smem + 2 * BN * D) + (j & 1) * RawTile<D, QT>::BYTES;
}

/* The raw bytes of the sealed groups of keys [kv0, kv0 + BN) into raw stage `raw`. */
template <int D, int NTHREADS, int QT>
__device__ __forceinline__ void issue_raw(const AttnParams &p, const int32_t *table, int kvh, int kv0, int kv_end,
                                          uint8_t *raw) {
    using R = RawTile<D, QT>;
    constexpr int CHUNKS = R::GROUP / 16, KCH = 2 * R::CB, PCH = D / 4; /* 16-byte chunks: per group, per code block, per param block */
    const int64_t ctile = kvh * gwkvq::code_tile_bytes(QT, p.block_size, D);
    const int64_t ptile = kvh * gwkvq::param_tile_pairs(p.block_size, D);
#pragma unroll
    for (int g = 0; g < 2; g++) {
        const int gkey = kv0 + 32 * g;
        if (gkey >= kv_end) continue; /* CTA-uniform */
        int bi, slot0;
        key_block(p, gkey, bi, slot0);
        const int32_t e = table[bi];
        if (e < 0) continue; /* open page: read in dequant_tile */
        const uint8_t *kq = p.kq + (int64_t)e * p.q_block_stride + ctile + (int64_t)slot0 * R::CB;
        const uint8_t *vq = p.vq + (int64_t)e * p.q_block_stride + ctile + (int64_t)slot0 * R::CB;
        const uint32_t *kp = p.kp + (int64_t)e * p.p_block_stride + ptile + gwkvq::k_param_at(D, slot0, 0);
        const uint32_t *vp = p.vp + (int64_t)e * p.p_block_stride + ptile + gwkvq::v_param_at(D, slot0, 0);
        const uint32_t dst = smem_addr(raw + g * R::GROUP);
        for (int w = threadIdx.x; w < CHUNKS; w += NTHREADS) {
            const void *src = w < KCH           ? (const void *)(kq + 16 * w)
                              : w < 2 * KCH       ? (const void *)(vq + 16 * (w - KCH))
                              : w < 2 * KCH + PCH ? (const void *)(kp + 4 * (w - 2 * KCH))
                                                  : (const void *)(vp + 4 * (w - 2 * KCH - PCH));
            cp_async16(dst + 16 * w, src, 16);
        }
    }
}

/* Tile [kv0, kv0 + BN) into the bf16 stage sK / sV, from the raw stage (sealed
 * groups) or the open pages; rows >= kv_end are zeros. The same (row, chunk)
 * assignment and swizzle as load_tile_bf16. */
template <int D, int NTHREADS, int QT>
__device__ __forceinline__ void dequant_tile(const AttnParams &p, const int32_t *table, int kvh, int kv0, int kv_end,
                                             const uint8_t *raw, uint16_t *sK, uint16_t *sV) {
    using R = RawTile<D, QT>;
    constexpr int CH = D / 8, RPP = NTHREADS / CH;
    static_assert(NTHREADS % CH == 0 && RPP % 8 == 0 && BN % RPP == 0, "tile rows per pass");
    constexpr int PG = 32 / RPP; /* passes per key group: this thread's rows r0 + k * RPP */
    static_assert(32 % RPP == 0, "a pass stays in one key group");
    const int c = threadIdx.x % CH, r0 = threadIdx.x / CH;
#pragma unroll
    for (int g = 0; g < 2; g++) {
        const int gkey = kv0 + 32 * g;
        int bi, slot0;
        key_block(p, gkey, bi, slot0);
        const int32_t e = gkey < kv_end ? table[bi] : 0;
        const uint8_t *base = raw + g * R::GROUP;
        gwkvq::KPrm8 kp;
        if (gkey < kv_end && e >= 0) kp = gwkvq::load_kprm8((const uint32_t *)(base + R::KP), c); /* once per group */
#pragma unroll
        for (int k = g * PG; k < (g + 1) * PG; k++) {
            const int row = r0 + k * RPP, rr = row & 31, key = kv0 + row;
            uint4 kk = make_uint4(0, 0, 0, 0), vv = kk;
            if (key < kv_end) {
                if (e >= 0) {
                    kk = gwkvq::deq_k8_raw<QT>(gwkvq::load_codes8<QT>(base + R::KC, D, rr, c), kp);
                    vv = gwkvq::deq_v8_raw<QT>(gwkvq::load_codes8<QT>(base + R::VC, D, rr, c),
                                               gwkvq::prm_f(((const uint32_t *)(base + R::VP))[gwkvq::v_param_at(D, rr, c)]));
                } else {
                    const int64_t off = (-1 - (int64_t)e) * p.block_stride +
                                        ((int64_t)kvh * p.block_size + slot0 + rr) * D + c * 8;
                    kk = *(const uint4 *)(p.kc + off);
                    vv = *(const uint4 *)(p.vc + off);
                }
            }
            *(uint4 *)(sK + swz<D>(row, c)) = kk;
            *(uint4 *)(sV + swz<D>(row, c)) = vv;
        }
    }
}

/* The kernels' view of the stages. fetch_tile issues tile j's copies (stage
 * j % 2); after they have arrived and a barrier, finish_tile (all threads)
 * makes its bf16 tile, at tile_k / tile_v. */
template <int D, int NTHREADS, int QT>
__device__ __forceinline__ void fetch_tile(const AttnParams &p, const int32_t *table, int kvh, int kv0, int kv_end,
                                           uint16_t *smem, int j) {
    if constexpr (QT == GW_CUDA_KV_BF16)
        load_tile_bf16<D, NTHREADS>(p, table, kvh, kv0, kv_end, stage_k<D>(smem, j), stage_v<D>(smem, j));
    else issue_raw<D, NTHREADS, QT>(p, table, kvh, kv0, kv_end, raw_stage<D, QT>(smem, j));
}
template <int D, int NTHREADS, int QT>
__device__ __forceinline__ void finish_tile(const AttnParams &p, const int32_t *table, int kvh, int kv0, int kv_end,
                                            uint16_t *smem, int j) {
    if constexpr (QT != GW_CUDA_KV_BF16) {
        dequant_tile<D, NTHREADS, QT>(p, table, kvh, kv0, kv_end, raw_stage<D, QT>(smem, j), stage_k<D>(smem, 0),
                                      stage_v<D>(smem, 0));
        __syncthreads();
    }
}
template <int D, int QT> __device__ __forceinline__ uint16_t *tile_k(uint16_t *smem, int j) {
    return stage_k<D>(smem, QT == GW_CUDA_KV_BF16 ? j : 0);
}
template <int D, int QT> __device__ __forceinline__ uint16_t *tile_v(uint16_t *smem, int j) {
    return stage_v<D>(smem, QT == GW_CUDA_KV_BF16 ? j : 0);
}

/* A fragments of 16 query rows x D: rows g (q0) and g + 8 (q1); NULL rows are zero. */
template <int D>
__device__ __forceinline__ void load_q(uint32_t (&qf)[D / 16][4], const uint16_t *q0, const uint16_t *q1) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
        for (int r = 0; r < 4; r++) { /* rows g (q0) and g + 8 (q1): gwattn::a_row */
            const uint16_t *row = r & 1 ? q1 : q0;
            qf[kk][r] = row ? *(const uint32_t *)(row + gwattn::a_col(lane, r, kk)) : 0u;
        }
}

/* s[j] (keys key_row0 + 8j .. + 7 of the tile) = Q . K^T for NJ n-tiles. */
template <int D, int NJ>
__device__ __forceinline__ void qk(const uint32_t (&qf)[D / 16][4], const uint16_t *sK, int key_row0,
                                   float (&s)[NJ][4]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int j = 0; j < NJ; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
        for (int jn = 0; jn < NJ / 2; jn++) {
            /* matrices: (keys +0..7, dims lo), (keys +0..7, dims hi), (keys +8..15, lo), (+8..15, hi) */
            const int row = key_row0 + gwattn::k_ldsm_row(lane, jn);
            const int chunk = gwattn::k_ldsm_chunk(lane, kk);
            uint32_t b0, b1, b2, b3;
            ldsm_x4(smem_addr(sK + swz<D>(row, chunk)), b0, b1, b2, b3);
            mma16816(s[2 * jn], qf[kk], b0, b1);
            mma16816(s[2 * jn + 1], qf[kk], b2, b3);
        }
    }
}

/* o += P . V for the keys key_row0 .. key_row0 + 8*NJ - 1 of the tile, P the
 * (already exponentiated) scores s. */
template <int D, int NJ>
__device__ __forceinline__ void pv(const float (&s)[NJ][4], const uint16_t *sV, int key_row0, float (&o)[D / 8][4]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int ks = 0; ks < NJ / 2; ks++) {
        const uint32_t a[4] = {gw_pack_bf16x2(s[2 * ks][0], s[2 * ks][1]), gw_pack_bf16x2(s[2 * ks][2], s[2 * ks][3]),
                               gw_pack_bf16x2(s[2 * ks + 1][0], s[2 * ks + 1][1]),
                               gw_pack_bf16x2(s[2 * ks + 1][2], s[2 * ks + 1][3])};
#pragma unroll
        for (int jd = 0; jd < D / 16; jd++) {
            /* matrices: (keys +0..7, dims 16jd..), (keys +8..15, 16jd..), (+0..7, 16jd+8..), (+8..15, 16jd+8..) */
            const int row = key_row0 + gwattn::v_ldsm_row(lane, ks);
            const int chunk = gwattn::v_ldsm_chunk(lane, jd);
            uint32_t b0, b1, b2, b3;
            ldsm_x4_t(smem_addr(sV + swz<D>(row, chunk)), b0, b1, b2, b3);
            mma16816(o[2 * jd], a, b0, b1);
            mma16816(o[2 * jd + 1], a, b2, b3);
        }
    }
}

/* Online softmax over one tile for the lane's two rows (g: index 0, g+8: 1).
 * s holds scaled, masked scores (log2 domain) and becomes exp2(s - m). The
 * running sum l is kept per lane (a partial over the lane's columns) and summed
 * over the 4 lanes of a row at the end. */
template <int NJ, int NO>
__device__ __forceinline__ void softmax_update(float (&s)[NJ][4], float (&m)[2], float (&l)[2], float (&o)[NO][4]) {
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < NJ; j++) {
        mx[0] = fmaxf(mx[0], fmaxf(s[j][0], s[j][1]));
        mx[1] = fmaxf(mx[1], fmaxf(s[j][2], s[j][3]));
    }
    float alpha[2], base[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        const float mn = fmaxf(m[r], mx[r]);
        base[r] = mn == -INFINITY ? 0.0f : mn; /* a row with nothing visible yet: no NaN */
        alpha[r] = exp2f(m[r] - base[r]);
        m[r] = mn;
    }
    float ls[2] = {0.0f, 0.0f};
#pragma unroll
    for (int j = 0; j < NJ; j++) {
        s[j][0] = exp2f(s[j][0] - base[0]);
        s[j][1] = exp2f(s[j][1] - base[0]);
        s[j][2] = exp2f(s[j][2] - base[1]);
        s[j][3] = exp2f(s[j][3] - base[1]);
        ls[0] += s[j][0] + s[j][1];
        ls[1] += s[j][2] + s[j][3];
    }
    l[0] = l[0] * alpha[0] + ls[0];
    l[1] = l[1] * alpha[1] + ls[1];
#pragma unroll
    for (int j = 0; j < NO; j++) {
        o[j][0] *= alpha[0];
        o[j][1] *= alpha[0];
        o[j][2] *= alpha[1];
        o[j][3] *= alpha[1];
    }
}

__device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    v += __shfl_xor_sync(0xffffffffu, v, 2);
    return v;
}

/* ------------------------------------------------------------------ prefill */

/* With 4 warps, 3 CTAs per SM (12 warps): the register budget is then 168 per
 * thread (171 unbounded, which allowed only 2 CTAs and left the SM waiting on
 * latencies: ncu, 2026-12-02). */
template <int D, int WARPS, int QT>
__global__ void __launch_bounds__(WARPS * 32, WARPS == 4 ? 3 : 1) attn_prefill_kernel(const AttnParams p) {
    constexpr int BM = 16 * WARPS, NT = 32 * WARPS, NJ = BN / 8;
    extern __shared__ __align__(128) uint16_t smem[];

    const int h = blockIdx.x, seq = blockIdx.z;
    const int qt = gridDim.y - 1 - blockIdx.y; /* the longest query tiles first */
    const int q_begin = p.cu_q[seq], n_new = p.cu_q[seq + 1] - q_begin;
    if (qt * BM >= n_new) return;
    const int kv_len = p.kv_lens[seq], ctx = kv_len - n_new; /* cached prefix */
    if (ctx < 0) return;                                        /* kv_lens must count the new tokens */
    const int kvh = h / p.group;
    const int32_t *table = p.tables + (int64_t)seq * p.bt_stride;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;

    /* keys [0, kv_hi) cover every valid row of the tile; row i sees keys <= ctx + i */
    const int last_row = min(n_new, (qt + 1) * BM) - 1;
    const int kv_hi = ctx + last_row + 1;
    const int n_tiles = (kv_hi + BN - 1) / BN;
    fetch_tile<D, NT, QT>(p, table, kvh, 0, kv_hi, smem, 0);
    cp_async_commit();

    const int wrow = qt * BM + 16 * warp; /* the warp's first row */
    const bool warp_active = wrow < n_new;
    const int warp_last_key = min(ctx + wrow + 15, kv_hi - 1);
    const int i0 = wrow + g, i1 = i0 + 8;
    const int lim0 = min(ctx + i0, kv_hi - 1), lim1 = min(ctx + i1, kv_hi - 1);
    const int64_t hd = (int64_t)h * D;
    uint32_t qf[D / 16][4];
    load_q<D>(qf, i0 < n_new ? p.q + (int64_t)(q_begin + i0) * p.q_stride + hd : nullptr,
              i1 < n_new ? p.q + (int64_t)(q_begin + i1) * p.q_stride + hd : nullptr);

    float o[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

    for (int j = 0; j < n_tiles; j++) {
        if (j + 1 < n_tiles) {
            fetch_tile<D, NT, QT>(p, table, kvh, (j + 1) * BN, kv_hi, smem, j + 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const int kv0 = j * BN;
        finish_tile<D, NT, QT>(p, table, kvh, kv0, kv_hi, smem, j);
        if (warp_active && kv0 <= warp_last_key) { /* warp-uniform */
            float s[NJ][4];
            qk<D, NJ>(qf, tile_k<D, QT>(smem, j), 0, s);
            const bool need_mask = kv0 + BN - 1 > ctx + wrow; /* crosses some row's last key */
#pragma unroll
            for (int jn = 0; jn < NJ; jn++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float v = s[jn][e] * p.scale_log2;
                    if (need_mask && kv0 + 8 * jn + 2 * t + (e & 1) > (e < 2 ? lim0 : lim1)) v = -INFINITY;
                    s[jn][e] = v;
                }
            softmax_update<NJ, D / 8>(s, m, l, o);
            pv<D, NJ>(s, tile_v<D, QT>(smem, j), 0, o);
        }
        __syncthreads(); /* the stage is overwritten by the next iteration's load */
    }

    const float l0 = quad_sum(l[0]), l1 = quad_sum(l[1]);
    const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
    uint16_t *out0 = i0 < n_new ? p.out + (int64_t)(q_begin + i0) * p.o_stride + hd : nullptr;
    uint16_t *out1 = i1 < n_new ? p.out + (int64_t)(q_begin + i1) * p.o_stride + hd : nullptr;
#pragma unroll
    for (int jd = 0; jd < D / 8; jd++) {
        if (out0) *(uint32_t *)(out0 + 8 * jd + 2 * t) = gw_pack_bf16x2(o[jd][0] * inv0, o[jd][1] * inv0);
        if (out1) *(uint32_t *)(out1 + 8 * jd + 2 * t) = gw_pack_bf16x2(o[jd][2] * inv1, o[jd][3] * inv1);
    }
}

/* Prefill with two 16-row tiles per warp (BM = 128 rows for 4 warps), Q in
 * shared memory: each K and V fragment a warp loads from shared memory feeds
 * two MMAs instead of one, halving the shared-memory traffic per FLOP (the
 * tile shape FlashAttention-2 uses for head_dim 128). Registers: O 2 x D/2,
 * S 2 x 32 floats; Q is read back from shared memory (ldmatrix) at each k-step
 * rather than held (it would not fit beside them). Selected with
 * gw_cuda_attention_tune(2); otherwise the same contract as attn_prefill_kernel. */
template <int D, int QT>
__global__ void __launch_bounds__(128, 2) attn_prefill_mt2_kernel(const AttnParams p) {
    constexpr int WARPS = 4, MT = 2, BM = 16 * MT * WARPS, NT = 32 * WARPS, NJ = BN / 8, CH = D / 8;
    extern __shared__ __align__(128) uint16_t smem[];
    uint16_t *sQ = smem + kv_smem_elems<D, QT>(); /* after the K/V stages */

    const int h = blockIdx.x, seq = blockIdx.z;
    const int qt = gridDim.y - 1 - blockIdx.y;
    const int q_begin = p.cu_q[seq], n_new = p.cu_q[seq + 1] - q_begin;
    if (qt * BM >= n_new) return;
    const int kv_len = p.kv_lens[seq], ctx = kv_len - n_new;
    if (ctx < 0) return;
    const int kvh = h / p.group;
    const int32_t *table = p.tables + (int64_t)seq * p.bt_stride;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;

    const int last_row = min(n_new, (qt + 1) * BM) - 1;
    const int kv_hi = ctx + last_row + 1;
    const int n_tiles = (kv_hi + BN - 1) / BN;
    /* Q tile rows qt*BM .. +BM (rows past the sequence are zeros), same swizzle as K */
    for (int idx = threadIdx.x; idx < BM * CH; idx += NT) {
        const int r = idx / CH, c = idx % CH, row = qt * BM + r;
        const uint32_t dst = smem_addr(sQ + swz<D>(r, c));
        if (row < n_new) cp_async16(dst, p.q + (int64_t)(q_begin + row) * p.q_stride + (int64_t)h * D + c * 8, 16);
        else cp_async16(dst, p.q, 0);
    }
    fetch_tile<D, NT, QT>(p, table, kvh, 0, kv_hi, smem, 0);
    cp_async_commit();

    const int wrow = qt * BM + 16 * MT * warp; /* the warp's first row */
    const bool warp_active = wrow < n_new;
    const int warp_last_key = min(ctx + wrow + 16 * MT - 1, kv_hi - 1);
    int lim[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        lim[mt][0] = min(ctx + wrow + 16 * mt + g, kv_hi - 1);
        lim[mt][1] = min(ctx + wrow + 16 * mt + g + 8, kv_hi - 1);
    }
    /* this lane's ldmatrix row and chunk offset for the A fragments (Q rows of m-tile mt) */
    const int a_r = (lane & 7) + 8 * ((lane >> 3) & 1), a_c = lane >> 4;

    float o[MT][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < D / 8; j++) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.0f;
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;

    for (int j = 0; j < n_tiles; j++) {
        if (j + 1 < n_tiles) {
            fetch_tile<D, NT, QT>(p, table, kvh, (j + 1) * BN, kv_hi, smem, j + 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const int kv0 = j * BN;
        finish_tile<D, NT, QT>(p, table, kvh, kv0, kv_hi, smem, j);
        if (warp_active && kv0 <= warp_last_key) { /* warp-uniform */
            const uint16_t *sK = tile_k<D, QT>(smem, j), *sV = tile_v<D, QT>(smem, j);
            float sc[MT][NJ][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int jn = 0; jn < NJ; jn++) sc[mt][jn][0] = sc[mt][jn][1] = sc[mt][jn][2] = sc[mt][jn][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                uint32_t a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
                    ldsm_x4(smem_addr(sQ + swz<D>(16 * (MT * warp + mt) + a_r, 2 * kk + a_c)), a[mt][0], a[mt][1],
                            a[mt][2], a[mt][3]);
#pragma unroll
                for (int jn = 0; jn < NJ / 2; jn++) {
                    const int row = gwattn::k_ldsm_row(lane, jn), chunk = gwattn::k_ldsm_chunk(lane, kk);
                    uint32_t b0, b1, b2, b3;
                    ldsm_x4(smem_addr(sK + swz<D>(row, chunk)), b0, b1, b2, b3);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        mma16816(sc[mt][2 * jn], a[mt], b0, b1);
                        mma16816(sc[mt][2 * jn + 1], a[mt], b2, b3);
                    }
                }
            }
            const bool need_mask = kv0 + BN - 1 > ctx + wrow;
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
#pragma unroll
                for (int jn = 0; jn < NJ; jn++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        float v = sc[mt][jn][e] * p.scale_log2;
                        if (need_mask && kv0 + 8 * jn + 2 * t + (e & 1) > lim[mt][e >> 1]) v = -INFINITY;
                        sc[mt][jn][e] = v;
                    }
                softmax_update<NJ, D / 8>(sc[mt], m[mt], l[mt], o[mt]);
            }
#pragma unroll
            for (int ks = 0; ks < NJ / 2; ks++) {
                uint32_t pa[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    pa[mt][0] = gw_pack_bf16x2(sc[mt][2 * ks][0], sc[mt][2 * ks][1]);
                    pa[mt][1] = gw_pack_bf16x2(sc[mt][2 * ks][2], sc[mt][2 * ks][3]);
                    pa[mt][2] = gw_pack_bf16x2(sc[mt][2 * ks + 1][0], sc[mt][2 * ks + 1][1]);
                    pa[mt][3] = gw_pack_bf16x2(sc[mt][2 * ks + 1][2], sc[mt][2 * ks + 1][3]);
                }
#pragma unroll
                for (int jd = 0; jd < D / 16; jd++) {
                    const int row = gwattn::v_ldsm_row(lane, ks), chunk = gwattn::v_ldsm_chunk(lane, jd);
                    uint32_t b0, b1, b2, b3;
                    ldsm_x4_t(smem_addr(sV + swz<D>(row, chunk)), b0, b1, b2, b3);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        mma16816(o[mt][2 * jd], pa[mt], b0, b1);
                        mma16816(o[mt][2 * jd + 1], pa[mt], b2, b3);
                    }
                }
            }
        }
        __syncthreads();
    }

    const int64_t hd = (int64_t)h * D;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        const int i0 = wrow + 16 * mt + g, i1 = i0 + 8;
        const float l0 = quad_sum(l[mt][0]), l1 = quad_sum(l[mt][1]);
        const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
        uint16_t *out0 = i0 < n_new ? p.out + (int64_t)(q_begin + i0) * p.o_stride + hd : nullptr;
        uint16_t *out1 = i1 < n_new ? p.out + (int64_t)(q_begin + i1) * p.o_stride + hd : nullptr;
#pragma unroll
        for (int jd = 0; jd < D / 8; jd++) {
            if (out0) *(uint32_t *)(out0 + 8 * jd + 2 * t) = gw_pack_bf16x2(o[mt][jd][0] * inv0, o[mt][jd][1] * inv0);
            if (out1) *(uint32_t *)(out1 + 8 * jd + 2 * t) = gw_pack_bf16x2(o[mt][jd][2] * inv1, o[mt][jd][3] * inv1);
        }
    }
}

/* ------------------------------------------------------------------- decode */

constexpr int DEC_WARPS = 4; /* x 16 keys = BN */

template <int D, int QT>
__global__ void __launch_bounds__(DEC_WARPS * 32) attn_decode_kernel(const AttnParams p) {
    constexpr int NT = 32 * DEC_WARPS, NJ = 2; /* each warp: 16 keys of the tile */
    extern __shared__ __align__(128) uint16_t smem[];
    __shared__ float sm_m[DEC_WARPS][16], sm_l[DEC_WARPS][16];

    const int kvh = blockIdx.x / p.n_chunks, chunk = blockIdx.x % p.n_chunks;
    const int split = blockIdx.y, seq = blockIdx.z;
    const int kv_len = p.kv_lens[seq];
    /* split ranges: whole tiles, the same for every split of the sequence */
    const int per = (kv_len + p.n_splits - 1) / p.n_splits;
    const int split_len = (per + BN - 1) / BN * BN;
    const int s0 = split * split_len, s1 = min(kv_len, s0 + split_len);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int32_t *table = p.tables + (int64_t)seq * p.bt_stride;
    const int r0 = 16 * chunk + g, r1 = r0 + 8; /* rows: query heads of the group */

    float o[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

    if (s0 < s1) { /* CTA-uniform */
        const int n_tiles = (s1 - s0 + BN - 1) / BN;
        fetch_tile<D, NT, QT>(p, table, kvh, s0, s1, smem, 0);
        cp_async_commit();
        const uint16_t *qs = p.q + (int64_t)seq * p.q_stride + (int64_t)kvh * p.group * D;
        uint32_t qf[D / 16][4];
        load_q<D>(qf, r0 < p.group ? qs + (int64_t)r0 * D : nullptr, r1 < p.group ? qs + (int64_t)r1 * D : nullptr);
        for (int j = 0; j < n_tiles; j++) {
            if (j + 1 < n_tiles) {
                fetch_tile<D, NT, QT>(p, table, kvh, s0 + (j + 1) * BN, s1, smem, j + 1);
                cp_async_commit();
                cp_async_wait<1>();
            } else {
                cp_async_wait<0>();
            }
            __syncthreads();
            finish_tile<D, NT, QT>(p, table, kvh, s0 + j * BN, s1, smem, j);
            const int kv0 = s0 + j * BN + 16 * warp; /* this warp's first key */
            if (kv0 < s1) {
                float s[NJ][4];
                qk<D, NJ>(qf, tile_k<D, QT>(smem, j), 16 * warp, s);
#pragma unroll
                for (int jn = 0; jn < NJ; jn++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        float v = s[jn][e] * p.scale_log2;
                        if (kv0 + 8 * jn + 2 * t + (e & 1) >= s1) v = -INFINITY;
                        s[jn][e] = v;
                    }
                softmax_update<NJ, D / 8>(s, m, l, o);
                pv<D, NJ>(s, tile_v<D, QT>(smem, j), 16 * warp, o);
            }
            __syncthreads();
        }
    }

    /* merge the warps' states; the tiles' shared memory is free now */
    float *sm_o = (float *)smem; /* [DEC_WARPS][16][D] */
    const float lw0 = quad_sum(l[0]), lw1 = quad_sum(l[1]);
    if (t == 0) {
        sm_m[warp][g] = m[0], sm_m[warp][g + 8] = m[1];
        sm_l[warp][g] = lw0, sm_l[warp][g + 8] = lw1;
    }
#pragma unroll
    for (int jd = 0; jd < D / 8; jd++) {
        float *row0 = sm_o + (warp * 16 + g) * D + 8 * jd + 2 * t, *row1 = row0 + 8 * D;
        row0[0] = o[jd][0], row0[1] = o[jd][1];
        row1[0] = o[jd][2], row1[1] = o[jd][3];
    }
    __syncthreads();
    const int rows = min(16, p.group - 16 * chunk);
    for (int idx = threadIdx.x; idx < rows * D; idx += NT) {
        const int r = idx / D, d = idx % D;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, sm_m[w][r]);
        float L = 0.0f, O = 0.0f;
        if (M != -INFINITY) {
#pragma unroll
            for (int w = 0; w < DEC_WARPS; w++) {
                const float f = exp2f(sm_m[w][r] - M); /* 0 for a warp that saw nothing */
                L += f * sm_l[w][r];
                O += f * sm_o[(w * 16 + r) * D + d];
            }
        }
        const int head = kvh * p.group + 16 * chunk + r;
        const float val = L > 0.0f ? O / L : 0.0f;
        if (p.n_splits == 1) {
            p.out[(int64_t)seq * p.o_stride + (int64_t)head * D + d] = gw_f32_bf16(val);
        } else {
            const int64_t pi = ((int64_t)seq * p.n_heads + head) * p.n_splits + split;
            p.part_o[pi * D + d] = val;
            if (d == 0) p.part_lse[pi] = L > 0.0f ? M + log2f(L) : -INFINITY;
        }
    }
}

/* One CTA per (head, sequence), one thread per dimension. */
template <int D>
__global__ void attn_merge_kernel(const float *part_o, const float *part_lse, uint16_t *out, int64_t o_stride,
                                  int n_heads, int n_splits) {
    const int head = blockIdx.x, seq = blockIdx.y, d = threadIdx.x;
    const int64_t base = ((int64_t)seq * n_heads + head) * n_splits;
    float M = -INFINITY;
    for (int s = 0; s < n_splits; s++) M = fmaxf(M, part_lse[base + s]);
    float W = 0.0f, O = 0.0f;
    if (M != -INFINITY)
        for (int s = 0; s < n_splits; s++) {
            const float lse = part_lse[base + s];
            if (lse == -INFINITY) continue; /* an empty split */
            const float w = exp2f(lse - M);
            W += w;
            O += w * part_o[(base + s) * D + d];
        }
    out[(int64_t)seq * o_stride + (int64_t)head * D + d] = gw_f32_bf16(W > 0.0f ? O / W : 0.0f);
}

int g_prefill_warps = 0;

/* Allows `bytes` of dynamic shared memory (over the default 48 KiB) for a
 * kernel, once per device and kernel (the attribute is per device; setting it
 * on every launch would also put a runtime call inside captured graphs). */
template <auto kernel> int set_smem(size_t bytes, const char *what) {
    static std::atomic<uint64_t> done_devices{0}; /* one per kernel (the template argument) */
    if (bytes <= 48 * 1024) return GW_CUDA_OK;
    int dev = 0;
    cudaGetDevice(&dev);
    const uint64_t bit = 1ull << (dev & 63);
    if (done_devices.load(std::memory_order_relaxed) & bit) return GW_CUDA_OK;
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    /* as much shared memory as the SM has, so that the register budget decides how many CTAs run */
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
    if (e != cudaSuccess)
        return gw_cuda_fail(GW_CUDA_ERR_CUDA, "%s: cannot get %zu bytes of shared memory: %s", what, bytes,
                            cudaGetErrorString(e));
    done_devices.fetch_or(bit, std::memory_order_relaxed);
    return GW_CUDA_OK;
}

template <int D, int WARPS, int QT> int launch_prefill(const AttnParams &p, int n_seqs, int max_q_len, cudaStream_t s) {
    const size_t smem = kv_smem_elems<D, QT>() * sizeof(uint16_t);
    int rc = set_smem<attn_prefill_kernel<D, WARPS, QT>>(smem, "attention_prefill");
    if (rc) return rc;
    const int tiles = (max_q_len + 16 * WARPS - 1) / (16 * WARPS);
    if (tiles > 65535 || n_seqs > 65535)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "attention_prefill: %d query tiles x %d sequences is too many", tiles,
                            n_seqs);
    attn_prefill_kernel<D, WARPS, QT><<<dim3(p.n_heads, tiles, n_seqs), 32 * WARPS, smem, s>>>(p);
    return gw_cuda_check_launch("attention_prefill");
}

template <int D, int QT> int launch_prefill_mt2(const AttnParams &p, int n_seqs, int max_q_len, cudaStream_t s) {
    const size_t smem = (kv_smem_elems<D, QT>() + 128 * D) * sizeof(uint16_t); /* K/V stages + the Q tile */
    int rc = set_smem<attn_prefill_mt2_kernel<D, QT>>(smem, "attention_prefill");
    if (rc) return rc;
    const int tiles = (max_q_len + 127) / 128;
    if (tiles > 65535 || n_seqs > 65535)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "attention_prefill: %d query tiles x %d sequences is too many", tiles,
                            n_seqs);
    attn_prefill_mt2_kernel<D, QT><<<dim3(p.n_heads, tiles, n_seqs), 128, smem, s>>>(p);
    return gw_cuda_check_launch("attention_prefill");
}

template <int D, int QT> int launch_decode(const AttnParams &p, int n_kv_heads, int n_seqs, cudaStream_t s) {
    /* the stages, and at the end the warps' partial outputs (DEC_WARPS x 16 x D floats) */
    const size_t smem = std::max<size_t>(kv_smem_elems<D, QT>() * sizeof(uint16_t), DEC_WARPS * 16 * D * sizeof(float));
    int rc = set_smem<attn_decode_kernel<D, QT>>(smem, "attention_decode");
    if (rc) return rc;
    attn_decode_kernel<D, QT><<<dim3(n_kv_heads * p.n_chunks, p.n_splits, n_seqs), 32 * DEC_WARPS, smem, s>>>(p);
    if ((rc = gw_cuda_check_launch("attention_decode"))) return rc;
    if (p.n_splits > 1) {
        attn_merge_kernel<D><<<dim3(p.n_heads, n_seqs), D, 0, s>>>(p.part_o, p.part_lse, p.out, p.o_stride,
                                                                   p.n_heads, p.n_splits);
        return gw_cuda_check_launch("attention_merge");
    }
    return GW_CUDA_OK;
}

template <int QT> int dispatch_prefill(const AttnParams &p, int D, int warps, int n_seqs, int max_q_len, cudaStream_t s) {
    if (warps == 2)
        return D == 64 ? launch_prefill_mt2<64, QT>(p, n_seqs, max_q_len, s) : launch_prefill_mt2<128, QT>(p, n_seqs, max_q_len, s);
    if (D == 64)
        return warps == 8 ? launch_prefill<64, 8, QT>(p, n_seqs, max_q_len, s) : launch_prefill<64, 4, QT>(p, n_seqs, max_q_len, s);
    return warps == 8 ? launch_prefill<128, 8, QT>(p, n_seqs, max_q_len, s) : launch_prefill<128, 4, QT>(p, n_seqs, max_q_len, s);
}

/* The quantized cache's arrays into the kernel parameters. */
void set_quant(AttnParams &p, const gw_cuda_kv *kv) {
    if (kv->type == GW_CUDA_KV_BF16) return;
    p.kq = kv->kq, p.vq = kv->vq, p.kp = kv->kp, p.vp = kv->vp;
    p.q_block_stride = kv->q_block_stride, p.p_block_stride = kv->p_block_stride;
}

int block_shift(int block_size) {
    for (int sh = 0; sh < 31; sh++)
        if (block_size == 1 << sh) return sh;
    return -1;
}

int check_common(const gw_cuda_kv *kv, const uint16_t *q, int64_t q_stride, const uint16_t *out, int64_t o_stride,
                 int n_heads, const char *what) {
    int rc = gw_cuda_kv_validate(kv, what);
    if (rc) return rc;
    if (kv->head_dim != 64 && kv->head_dim != 128)
        return gw_cuda_fail(GW_CUDA_ERR_UNSUPPORTED, "%s: head_dim %d (64 and 128 are implemented)", what,
                            kv->head_dim);
    if (n_heads <= 0 || n_heads % kv->n_kv_heads)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: %d query heads is not a multiple of %d KV heads", what, n_heads,
                            kv->n_kv_heads);
    if (q_stride < (int64_t)n_heads * kv->head_dim || o_stride < (int64_t)n_heads * kv->head_dim || (q_stride | o_stride) & 1 ||
        ((uintptr_t)q | (uintptr_t)out) & 3)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "%s: q/out strides must be even, >= n_heads*head_dim, 4-byte aligned",
                            what);
    return GW_CUDA_OK;
}

} // namespace

/* 0: choose per launch (see gw_cuda_attention_prefill); 2 (two row tiles per
 * warp), 4 or 8 warps: always that kernel (tests, benchmarks). */
extern "C" void gw_cuda_attention_tune(int prefill_warps) {
    g_prefill_warps = prefill_warps == 2 || prefill_warps == 4 || prefill_warps == 8 ? prefill_warps : 0;
}

extern "C" int gw_cuda_attention_prefill(const gw_cuda_kv *kv, const uint16_t *q, int64_t q_stride, uint16_t *out,
                                         int64_t o_stride, int n_seqs, const int32_t *cu_seqlens_q,
                                         const int32_t *kv_lens, const int32_t *block_tables, int block_table_stride,
                                         int max_q_len, int n_heads, float scale, void *stream) {
    int rc = check_common(kv, q, q_stride, out, o_stride, n_heads, "attention_prefill");
    if (rc) return rc;
    if (n_seqs <= 0 || max_q_len <= 0) return GW_CUDA_OK;
    AttnParams p = {};
    p.q = q, p.q_stride = q_stride, p.out = out, p.o_stride = o_stride;
    p.kc = kv->k, p.vc = kv->v, p.block_stride = kv->block_stride, p.block_size = kv->block_size;
    p.bs_shift = block_shift(kv->block_size);
    set_quant(p, kv);
    p.cu_q = cu_seqlens_q, p.kv_lens = kv_lens, p.tables = block_tables, p.bt_stride = block_table_stride;
    p.n_heads = n_heads, p.group = n_heads / kv->n_kv_heads, p.scale_log2 = scale * kLog2e;
    int warps = g_prefill_warps;
    if (!warps) {
        /* Two 16-row tiles per warp (mt2) are 8-11 % faster on long prompts
         * (H200, bench/gpu/NOTES.md) but halve the CTAs: take them only when
         * there are enough to fill the SMs four times over (a 512-token chunk
         * after a long prefix has not: 4 warps of one tile each there). */
        static int sms = 0;
        if (!sms) {
            int dev = 0;
            if (cudaGetDevice(&dev) != cudaSuccess ||
                cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms <= 0) {
                cudaGetLastError();
                sms = 132;
            }
        }
        const int64_t mt2_ctas = (int64_t)n_heads * ((max_q_len + 127) / 128) * n_seqs;
        warps = mt2_ctas >= 4 * (int64_t)sms ? 2 : 4;
    }
    cudaStream_t s = GW_STREAM(stream);
    if (kv->type == GW_CUDA_KV_INT8) return dispatch_prefill<GW_CUDA_KV_INT8>(p, kv->head_dim, warps, n_seqs, max_q_len, s);
    if (kv->type == GW_CUDA_KV_INT4) return dispatch_prefill<GW_CUDA_KV_INT4>(p, kv->head_dim, warps, n_seqs, max_q_len, s);
    return dispatch_prefill<GW_CUDA_KV_BF16>(p, kv->head_dim, warps, n_seqs, max_q_len, s);
}

extern "C" int gw_cuda_attention_decode_splits(int n_seqs, int n_heads, int n_kv_heads, int max_kv_len) {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        sms <= 0) {
        cudaGetLastError();
        sms = 100;
    }
    if (n_seqs <= 0 || n_kv_heads <= 0 || n_heads < n_kv_heads) return 1;
    const int chunks = (n_heads / n_kv_heads + 15) / 16;
    const int64_t ctas = (int64_t)n_seqs * n_kv_heads * chunks;
    int64_t splits = (2 * sms + ctas - 1) / ctas;     /* two CTAs per SM */
    const int64_t by_len = max_kv_len / (2 * BN);     /* at least two tiles per split */
    if (splits > by_len) splits = by_len;
    if (splits > 128) splits = 128;
    return splits < 1 ? 1 : (int)splits;
}

extern "C" size_t gw_cuda_attention_decode_workspace(int n_seqs, int n_heads, int head_dim, int n_splits) {
    if (n_splits <= 1) return 0;
    return (size_t)n_seqs * n_heads * n_splits * (head_dim + 1) * sizeof(float);
}

extern "C" int gw_cuda_attention_decode(const gw_cuda_kv *kv, const uint16_t *q, int64_t q_stride, uint16_t *out,
                                        int64_t o_stride, int n_seqs, const int32_t *kv_lens,
                                        const int32_t *block_tables, int block_table_stride, int n_heads, float scale,
                                        int n_splits, void *workspace, size_t workspace_bytes, void *stream) {
    int rc = check_common(kv, q, q_stride, out, o_stride, n_heads, "attention_decode");
    if (rc) return rc;
    if (n_seqs <= 0) return GW_CUDA_OK;
    if (n_splits < 1 || n_splits > 65535)
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "attention_decode: n_splits %d (use gw_cuda_attention_decode_splits)",
                            n_splits);
    const size_t need = gw_cuda_attention_decode_workspace(n_seqs, n_heads, kv->head_dim, n_splits);
    if (need > workspace_bytes || (need && !workspace))
        return gw_cuda_fail(GW_CUDA_ERR_ARG, "attention_decode: workspace of %zu bytes needed, %zu given", need,
                            workspace_bytes);
    AttnParams p = {};
    p.q = q, p.q_stride = q_stride, p.out = out, p.o_stride = o_stride;
    p.kc = kv->k, p.vc = kv->v, p.block_stride = kv->block_stride, p.block_size = kv->block_size;
    p.bs_shift = block_shift(kv->block_size);
    set_quant(p, kv);
    p.kv_lens = kv_lens, p.tables = block_tables, p.bt_stride = block_table_stride;
    p.n_heads = n_heads, p.group = n_heads / kv->n_kv_heads, p.scale_log2 = scale * kLog2e;
    p.n_splits = n_splits, p.n_chunks = (p.group + 15) / 16;
    p.part_o = (float *)workspace;
    p.part_lse = p.part_o ? p.part_o + (size_t)n_seqs * n_heads * n_splits * kv->head_dim : nullptr;
    cudaStream_t s = GW_STREAM(stream);
    if (kv->type == GW_CUDA_KV_INT8)
        return kv->head_dim == 64 ? launch_decode<64, GW_CUDA_KV_INT8>(p, kv->n_kv_heads, n_seqs, s)
                                  : launch_decode<128, GW_CUDA_KV_INT8>(p, kv->n_kv_heads, n_seqs, s);
    if (kv->type == GW_CUDA_KV_INT4)
        return kv->head_dim == 64 ? launch_decode<64, GW_CUDA_KV_INT4>(p, kv->n_kv_heads, n_seqs, s)
                                  : launch_decode<128, GW_CUDA_KV_INT4>(p, kv->n_kv_heads, n_seqs, s);
    return kv->head_dim == 64 ? launch_decode<64, GW_CUDA_KV_BF16>(p, kv->n_kv_heads, n_seqs, s)
                              : launch_decode<128, GW_CUDA_KV_BF16>(p, kv->n_kv_heads, n_seqs, s);
}
