#!/usr/bin/env python3
"""KV page formats on trained weights, across backends: runs `godwit logits` on a
prompt (token ids of tests/data/logits/<file>, "prompt long" by default) for each
KV type, fed in chunks of 256 so later positions attend to sealed blocks, and
keeps each position's top-10 (ids and log-probabilities) in OUT/<device>_<type>.npz
(small enough to bring back from the GPU machine). With --compare it prints, for
every pair against a reference run, top-1 agreement and max / mean |delta logprob|
over the reference's top 10.

  python3 bench/gpu/kv_quant_trained.py run --godwit build/godwit --model M --device cpu --types f16,int8,int4 --out D
  python3 bench/gpu/kv_quant_trained.py compare --ref D/cpu_f16.npz D/*.npz
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def prompt_ids(path, name):
    lines = open(path).read().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("prompt " + name + " "):
            return lines[i + 1].split()[1:]
    sys.exit(f"no prompt {name} in {path}")


def run(a):
    ids = prompt_ids(a.ids_from, a.prompt)
    os.makedirs(a.out, exist_ok=True)
    ids_path = os.path.join(a.out, "ids.txt")
    open(ids_path, "w").write(" ".join(ids))
    for t in a.types.split(","):
        f32 = os.path.join(a.out, f"logits_{a.device}_{t}.f32")
        cmd = [a.godwit, "logits", "-m", a.model, "--device", a.device, "--kv-type", t, "--ids-file", ids_path,
               "-b", "256", "--generate", "32", "--out", f32]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode:
            sys.exit(f"{' '.join(cmd)} failed: {p.stderr[-500:]}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        x = np.fromfile(f32, dtype=np.float32).reshape(r["n_prompt"], r["n_vocab"])
        os.remove(f32)
        x = x - x.max(1, keepdims=True)
        lp = x - np.log(np.exp(x).sum(1, keepdims=True))
        top = np.argsort(-lp, 1)[:, :10]
        np.savez(os.path.join(a.out, f"{a.device}_{t}.npz"), top=top, lp=np.take_along_axis(lp, top, 1),
                 generated=np.array(r["generated"]))
        print(f"{a.device} {t}: {r['n_prompt']} positions, prefill {r['prefill_s']:.2f} s")


def compare(a):
    ref = np.load(a.ref)
    print(f"reference {os.path.basename(a.ref)}")
    for f in a.runs:
        z = np.load(f)
        # log-probabilities of the reference's top 10 in the other run: only known where the
        # other run has them in its own top 10, so compare where both top-10 sets agree on an id
        top1 = (z["top"][:, 0] == ref["top"][:, 0]).mean()
        d = []
        for i in range(len(ref["top"])):
            m = {int(k): v for k, v in zip(z["top"][i], z["lp"][i])}
            d += [abs(m[int(k)] - v) for k, v in zip(ref["top"][i], ref["lp"][i]) if int(k) in m]
        d = np.array(d)
        g = sum(x == y for x, y in zip(z["generated"], ref["generated"]))
        print(f"  {os.path.basename(f):16s} top-1 {100 * top1:5.1f} %  |dlogprob| over shared top-10 ids "
              f"max {d.max():.3f} mean {d.mean():.4f}  greedy {g}/{len(ref['generated'])} same")


ap = argparse.ArgumentParser()
sub = ap.add_subparsers(dest="cmd", required=True)
r = sub.add_parser("run")
r.add_argument("--godwit", default=os.path.join(ROOT, "build", "godwit"))
r.add_argument("--model", required=True)
r.add_argument("--device", default="cpu")
r.add_argument("--types", default="f16,int8,int4")
r.add_argument("--ids-from", default=os.path.join(ROOT, "tests", "data", "logits", "smollm2-135m-q4_1.txt"))
r.add_argument("--prompt", default="long")
r.add_argument("--out", required=True)
c = sub.add_parser("compare")
c.add_argument("--ref", required=True)
c.add_argument("runs", nargs="+")
a = ap.parse_args()
run(a) if a.cmd == "run" else compare(a)
