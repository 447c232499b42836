#!/usr/bin/env python3
"""Make tests/data/quant/*.bin: reference (de)quantization results from gguf-py.

gguf-py's numpy quantizers are bit-exact with ggml's quantize_row_*_ref, and its
dequantizers with ggml's dequantize_row_*. tests/test_quant.c checks godwit
against these files.

File format (little-endian):
  u32 type (ggml numbering), u32 n (elements), u32 nbytes,
  f32 x[n]      input of the quantizer (all zero for types gguf-py cannot quantize)
  u8  q[nbytes] quantized data (for K-quants: random but valid blocks)
  f32 y[n]      gguf-py dequantization of q
Run from the repository root:  python3 scripts/make_quant_golden.py
"""
import os
import struct

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "quant")


def test_input(n, rng):
    """Gaussian blocks of varied scale plus edge cases: an all-zero block, a
    constant block, one with a single outlier and a mixed-sign tie of maxima."""
    x = np.empty(n, dtype=np.float32)
    for b in range(0, n, 32):
        x[b:b + 32] = rng.standard_normal(32).astype(np.float32) * np.float32(10.0 ** rng.uniform(-3, 1))
    x[0:32] = 0.0
    x[32:64] = 0.75
    x[64:96] = rng.standard_normal(32).astype(np.float32) * 0.01
    x[64 + 5] = 3.0
    x[96 + 3] = -2.5
    x[96 + 9] = 2.5
    return x


def random_kquant_blocks(qtype, nblocks, rng):
    """Random K-quant super-blocks with finite, moderate fp16 scales."""
    block_size, type_size = quants.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(nblocks, type_size), dtype=np.uint8)

    def f16(lo, hi, count):
        return rng.uniform(lo, hi, size=count).astype(np.float16).view(np.uint8).reshape(count, 2)

    if qtype in (T.Q4_K, T.Q5_K):
        raw[:, 0:2] = f16(1e-4, 2e-2, nblocks)   # d
        raw[:, 2:4] = f16(1e-4, 2e-2, nblocks)   # dmin
    elif qtype == T.Q6_K:
        raw[:, 208:210] = f16(-2e-2, 2e-2, nblocks)
    return raw.reshape(-1)


def write(name, qtype, x, q, y):
    os.makedirs(OUT, exist_ok=True)
    q = np.ascontiguousarray(q, dtype=np.uint8).reshape(-1)
    with open(os.path.join(OUT, name + ".bin"), "wb") as f:
        f.write(struct.pack("<III", int(qtype), x.size, q.size))
        f.write(x.astype("<f4").tobytes())
        f.write(q.tobytes())
        f.write(np.asarray(y, dtype="<f4").reshape(-1).tobytes())


def main():
    rng = np.random.default_rng(20240607)
    n = 256
    for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.BF16):
        x = test_input(n, rng)
        q = quants.quantize(x.reshape(1, n), qtype)
        y = quants.dequantize(q, qtype)
        write(qtype.name.lower(), qtype, x, q, y)

    # F16: numpy's float32 -> float16 is round-to-nearest-even like ggml.
    x = test_input(n, rng)
    specials = [np.inf, -np.inf, np.nan, 65504.0, 65519.99, 65520.0, 1e-8, -3e-8, 6.1e-5, 5.96e-8,
                2.98e-8, 2.99e-8, -0.0, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 1e30]
    x[128:128 + len(specials)] = np.array(specials, dtype=np.float32)
    with np.errstate(over="ignore"):  # 65520 and 1e30 overflow to inf on purpose
        q = x.astype(np.float16)
    write("f16", T.F16, x, q.view(np.uint8), q.astype(np.float32))

    for qtype in (T.Q4_K, T.Q5_K, T.Q6_K):
        q = random_kquant_blocks(qtype, 2, rng)
        y = quants.dequantize(q.reshape(1, -1), qtype)
        write(qtype.name.lower(), qtype, np.zeros(y.size, dtype=np.float32), q, y)


if __name__ == "__main__":
    main()
