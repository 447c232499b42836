#!/usr/bin/env python3
"""godwit's CUDA attention vs PyTorch SDPA (flash backend), on the GPU.

Loads build-cuda/libgodwit_cuda_kernels.so with ctypes, builds bf16 q/k/v with
torch, copies k/v into godwit's paged layout (blocks in shuffled order, so the
block table is exercised), and for each context length runs:
  prefill: one sequence of n tokens, causal, 32 query heads / 8 KV heads, d 128
           (Llama-3-8B), ours vs F.scaled_dot_product_attention(is_causal=True);
  decode:  one query token over n cached tokens, ours (flash-decoding, split
           heuristic) vs SDPA (is_causal=False: the one query sees every key).
Prints max |ours - sdpa| (both bf16 outputs; a bf16 tolerance) and the time
ratio ours / sdpa (median of timed repeats with CUDA events, after warm-up).
SDPA runs under sdpa_kernel(SDPBackend.FLASH_ATTENTION); GQA through
enable_gqa=True, or repeat_interleave of k/v when this torch's flash path
refuses it (the line says which).

  python3 bench/gpu/attn_vs_sdpa.py [--lib PATH] [--lens 8192,32768,131072] [--reps N]
"""
import argparse
import ctypes
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

H, KV, D, BS = 32, 8, 128, 16


class GwKv(ctypes.Structure):
    # gw_cuda_kv in src/backend/cuda/gw_cuda.h
    _fields_ = [("k", ctypes.c_void_p), ("v", ctypes.c_void_p), ("block_size", ctypes.c_int),
                ("n_kv_heads", ctypes.c_int), ("head_dim", ctypes.c_int), ("block_stride", ctypes.c_int64)]


def load_lib(path):
    lib = ctypes.CDLL(path)
    P, I, I64, Fl = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
    lib.gw_cuda_last_error.restype = ctypes.c_char_p
    lib.gw_cuda_attention_prefill.argtypes = [ctypes.POINTER(GwKv), P, I64, P, I64, I, P, P, P, I, I, I, Fl, P]
    lib.gw_cuda_attention_prefill.restype = I
    lib.gw_cuda_attention_decode.argtypes = [ctypes.POINTER(GwKv), P, I64, P, I64, I, P, P, I, I, Fl, I, P,
                                             ctypes.c_size_t, P]
    lib.gw_cuda_attention_decode.restype = I
    lib.gw_cuda_attention_decode_splits.argtypes = [I, I, I, I]
    lib.gw_cuda_attention_decode_splits.restype = I
    lib.gw_cuda_attention_decode_workspace.argtypes = [I, I, I, I]
    lib.gw_cuda_attention_decode_workspace.restype = ctypes.c_size_t
    return lib


def check(lib, rc, what):
    if rc != 0:
        raise RuntimeError(f"{what}: {rc} {lib.gw_cuda_last_error().decode()}")


def paged(k, v, gen):
    """k, v: (n, KV, D) -> pages (n_blocks, KV, BS, D) in shuffled block order,
    and the block table (int32, one row)."""
    n = k.shape[0]
    nb = (n + BS - 1) // BS
    perm = torch.randperm(nb, generator=gen, device="cpu").to(k.device)
    pages = []
    for x in (k, v):
        xp = torch.zeros(nb * BS, KV, D, dtype=x.dtype, device=x.device)
        xp[:n] = x
        xp = xp.view(nb, BS, KV, D).permute(0, 2, 1, 3).contiguous()
        out = torch.empty_like(xp)
        out[perm] = xp  # logical block b lives at physical block perm[b]
        pages.append(out)
    table = perm.to(torch.int32).view(1, nb).contiguous()
    return pages[0], pages[1], table


def timed(fn, reps, warmup=1):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def sdpa_flash(q, k, v, causal):
    """q (1, H, Lq, D), k/v (1, KV, Lk, D). Returns (fn, how)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def gqa():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)

    try:
        gqa()
        return gqa, "flash, enable_gqa"
    except (RuntimeError, TypeError) as e:
        print(f"  (flash SDPA with enable_gqa refused: {str(e).splitlines()[0][:100]}; using repeat_interleave)")
    kr = k.repeat_interleave(H // KV, dim=1)
    vr = v.repeat_interleave(H // KV, dim=1)

    def rep():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, kr, vr, is_causal=causal)

    rep()
    return rep, "flash, repeat_interleave"


def run(lib, n, reps, do_prefill, rows):
    dev = torch.device("cuda")
    gen = torch.Generator().manual_seed(n)
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    scale = 1.0 / math.sqrt(D)
    q = torch.randn(n, H, D, device=dev, dtype=torch.bfloat16)
    k = torch.randn(n, KV, D, device=dev, dtype=torch.bfloat16)
    v = torch.randn(n, KV, D, device=dev, dtype=torch.bfloat16)
    kp, vp, table = paged(k, v, gen)
    kv = GwKv(kp.data_ptr(), vp.data_ptr(), BS, KV, D, KV * BS * D)
    lens = torch.tensor([n], dtype=torch.int32, device=dev)
    kt, vt = k.permute(1, 0, 2).unsqueeze(0), v.permute(1, 0, 2).unsqueeze(0)  # (1, KV, n, D)

    if do_prefill:
        out = torch.empty_like(q)
        cu = torch.tensor([0, n], dtype=torch.int32, device=dev)

        def ours():
            check(lib, lib.gw_cuda_attention_prefill(ctypes.byref(kv), q.data_ptr(), H * D, out.data_ptr(), H * D, 1,
                                                     cu.data_ptr(), lens.data_ptr(), table.data_ptr(),
                                                     table.shape[1], n, H, scale, stream), "prefill")

        qt = q.permute(1, 0, 2).unsqueeze(0)  # (1, H, n, D)
        ref_fn, how = sdpa_flash(qt, kt, vt, True)
        t_ours = timed(ours, reps)
        t_ref = timed(ref_fn, reps)
        ref = ref_fn()[0].permute(1, 0, 2)  # (n, H, D)
        ours()
        torch.cuda.synchronize()
        diff = (out.float() - ref.float()).abs().max().item()
        flops = 4.0 * n * n * D * H / 2
        rows.append(("prefill", n, t_ours, t_ref, diff, flops / (t_ours * 1e-3) / 1e12,
                     flops / (t_ref * 1e-3) / 1e12, how))
        del out, ref, qt

    # decode: the last token's query against all n keys
    qd = q[n - 1:n].contiguous()  # (1, H, D)
    outd = torch.empty_like(qd)
    splits = lib.gw_cuda_attention_decode_splits(1, H, KV, n)
    ws_bytes = lib.gw_cuda_attention_decode_workspace(1, H, D, splits)
    ws = torch.empty(max(ws_bytes, 16), dtype=torch.uint8, device=dev)

    def ours_d():
        check(lib, lib.gw_cuda_attention_decode(ctypes.byref(kv), qd.data_ptr(), H * D, outd.data_ptr(), H * D, 1,
                                                lens.data_ptr(), table.data_ptr(), table.shape[1], H, scale, splits,
                                                ws.data_ptr(), ws_bytes, stream), "decode")

    qdt = qd.unsqueeze(2)  # (1, H, 1, D)
    ref_fn, how = sdpa_flash(qdt, kt, vt, False)
    t_ours = timed(ours_d, max(reps, 20), warmup=3)
    t_ref = timed(ref_fn, max(reps, 20), warmup=3)
    ref = ref_fn()[0, :, 0, :]  # (H, D)
    ours_d()
    torch.cuda.synchronize()
    diff = (outd[0].float() - ref.float()).abs().max().item()
    kv_bytes = 2.0 * n * KV * D * 2
    rows.append(("decode", n, t_ours, t_ref, diff, kv_bytes / (t_ours * 1e-3) / 1e9, kv_bytes / (t_ref * 1e-3) / 1e9,
                 f"{how}, {splits} splits"))


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--lib", default=os.path.join(here, "..", "..", "build-cuda", "libgodwit_cuda_kernels.so"))
    ap.add_argument("--lens", default="8192,32768,131072")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-prefill-above", type=int, default=1 << 30,
                    help="skip prefill (keep decode) for lengths above this")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device, skipped")
        return 77
    lib = load_lib(os.path.abspath(args.lib))
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}; {args.lib}")
    print("| op      |    len | ours ms  | sdpa ms  | ours/sdpa | ours rate       | sdpa rate       | max|diff| | check | sdpa path")
    print("|---------|--------|----------|----------|-----------|-----------------|-----------------|----------|-------|----------")
    bad = 0
    for n in [int(x) for x in args.lens.split(",") if x]:
        t0 = time.time()
        rows = []
        try:
            run(lib, n, args.reps, n <= args.no_prefill_above, rows)
        except (torch.cuda.OutOfMemoryError, RuntimeError) as e:  # OOM, or a failed call of ours
            print(f"  n={n}: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
            bad += 1
        torch.cuda.empty_cache()
        for op, m, to, tr, diff, ro, rr, how in rows:  # printed as soon as measured
            unit = "TFLOP/s" if op == "prefill" else "GB/s"
            ok = diff <= 2e-2  # both bf16, different summation orders: ~1e-3 expected
            bad += not ok
            print(f"| {op:7s} | {m:6d} | {to:8.3f} | {tr:8.3f} | {to / tr:9.2f} | {ro:7.1f} {unit:7s} | "
                  f"{rr:7.1f} {unit:7s} | {diff:8.4f} | {'ok' if ok else 'FAIL'}  | {how}", flush=True)
        print(f"  (n={n}: {time.time() - t0:.1f} s)", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
