#!/usr/bin/env python3
"""godwit's CPU and CUDA backends on the same model and prompt: next-token
log-probabilities at every prompt position (max |delta| over the CPU's top 10,
and top-1 agreement) and the greedy continuation (first index where they
differ). The two differ by design in precision: the CPU keeps activations in
f32 (16-bit integer blocks into the matmuls) and the KV cache in fp16; the GPU
feeds bf16 into its matrix products and keeps the KV cache in bf16.

  python3 bench/gpu/cpu_vs_cuda.py --godwit .devbuild/godwit -m MODEL_DIR --ids-file IDS [--generate 64]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def run(godwit, model, ids_file, device, gen, out):
    cmd = [godwit, "logits", "-m", model, "--ids-file", ids_file, "--device", device, "--out", out,
           "--generate", str(gen), "-b", "2048"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        sys.exit(f"{device}: godwit failed ({p.returncode}): {p.stderr.strip()[-400:]}")
    return json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])


def logsoftmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--godwit", default=".devbuild/godwit")
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--ids-file", required=True)
    ap.add_argument("--generate", type=int, default=64)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res, lp = {}, {}
        for dev in ("cpu", "cuda"):
            out = os.path.join(tmp, dev + ".f32")
            res[dev] = run(a.godwit, a.model, a.ids_file, dev, a.generate, out)
            n, v = res[dev]["n_prompt"], res[dev]["n_vocab"]
            lp[dev] = logsoftmax(np.fromfile(out, dtype=np.float32).reshape(n, v))
    top = np.argsort(-lp["cpu"], axis=-1)[:, :10]
    d = np.abs(np.take_along_axis(lp["cpu"], top, -1) - np.take_along_axis(lp["cuda"], top, -1)).max(axis=-1)
    agree = (lp["cpu"].argmax(-1) == lp["cuda"].argmax(-1)).mean()
    g_cpu, g_gpu = res["cpu"]["generated"], res["cuda"]["generated"]
    first = next((i for i, (x, y) in enumerate(zip(g_cpu, g_gpu)) if x != y), None)
    print(f"| cpu vs cuda | {os.path.basename(a.model.rstrip('/'))} | prompt {n} | max |dlogprob| top-10 "
          f"{d.max():.4f} (p99 {np.percentile(d, 99):.4f}) | top-1 agree {agree:.3f} | greedy "
          f"{'identical' if first is None else f'first differs at {first}'} ({len(g_cpu)} tokens) |")


if __name__ == "__main__":
    main()
