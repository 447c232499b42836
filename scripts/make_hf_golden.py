#!/usr/bin/env python3
"""Make tests/data/hf_tiny_golden.json: Hugging Face transformers' next-token
log-probabilities (top 10 at every position) for random-weight tiny models
written by bench/mkmodel.py (f32 safetensors), on fixed token-id prompts.

Two sets are recorded: "top_logprobs", transformers as is (float32), and
"top_logprobs_kv16", the same model with keys (after RoPE) and values rounded
to float16, as godwit's KV cache stores them. Against the first godwit differs
by the KV cache's rounding alone (~0.01 on these models); against the second it
agrees to float32 noise (the test checks the 90th percentile over positions:
at the odd position a float32-level difference moves a key or value across an
fp16 rounding boundary, and transformers in float32 vs float64 differ as much).

tests/test_hf_model.c regenerates the same models (same presets, seed and
tokenizer), checks the weights' checksum recorded here, and compares godwit's
log-probabilities with these.

Needs: pip install torch transformers numpy (safetensors comes with
transformers). Run from the repository root:
    python3 scripts/make_hf_golden.py [--out tests/data/hf_tiny_golden.json]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = ["tiny", "tiny-qwen2"]
SEED = 0
TOKENIZER = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT_LENS = [1, 9, 40, 200]
TOP = 10


def checksum(d):
    """Sum of |x| over every tensor of the model, in float64 (as the C test computes it)."""
    from safetensors.numpy import load_file
    total = 0.0
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".safetensors"):
            for name, t in load_file(os.path.join(d, fn)).items():
                total += float(np.abs(t.astype(np.float64)).sum())
    return total


class Fp16KV:
    """Rounds keys after RoPE and values to float16 inside transformers' attention."""

    def __init__(self, model):
        import importlib
        self.model = model
        self.mods = [importlib.import_module(f"transformers.models.{n}.modeling_{n}") for n in ("llama", "qwen2")]

    def __enter__(self):
        self.saved = [m.apply_rotary_pos_emb for m in self.mods]
        for m, orig in zip(self.mods, self.saved):
            def rope(q, k, *a, _orig=orig, **kw):
                q2, k2 = _orig(q, k, *a, **kw)
                return q2, k2.half().to(k2.dtype)
            m.apply_rotary_pos_emb = rope
        self.hooks = [layer.self_attn.v_proj.register_forward_hook(lambda mod, inp, out: out.half().to(out.dtype))
                      for layer in self.model.model.layers]
        return self

    def __exit__(self, *exc):
        for m, orig in zip(self.mods, self.saved):
            m.apply_rotary_pos_emb = orig
        for h in self.hooks:
            h.remove()


def top_logprobs(model, ids):
    import torch
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].to(torch.float64)
    return torch.log_softmax(logits, dim=-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "hf_tiny_golden.json"))
    a = ap.parse_args()
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    out = {"generator": f"scripts/make_hf_golden.py, transformers {transformers.__version__}, torch "
                        f"{torch.__version__}, numpy {np.__version__}",
           "tokenizer_from": TOKENIZER, "seed": SEED, "top": TOP, "models": []}
    rng = np.random.default_rng(20240601)
    with tempfile.TemporaryDirectory() as tmp:
        for shape in SHAPES:
            d = os.path.join(tmp, shape)
            subprocess.run([sys.executable, os.path.join(ROOT, "bench", "mkmodel.py"), "--shape", shape, "--out", d,
                            "--dtype", "f32", "--seed", str(SEED), "--tokenizer-from",
                            os.path.join(ROOT, TOKENIZER)], check=True)
            model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
            model.eval()
            n_vocab = model.config.vocab_size
            entry = {"shape": shape, "checksum": checksum(d), "prompts": []}
            for n in PROMPT_LENS:
                ids = [int(x) for x in rng.integers(0, n_vocab, size=n)]
                lp = top_logprobs(model, ids)
                with Fp16KV(model):
                    lp16 = top_logprobs(model, ids)
                top = torch.topk(lp, TOP, dim=-1)
                entry["prompts"].append({
                    "ids": ids,
                    "top_ids": top.indices.tolist(),
                    "top_logprobs": [[round(float(v), 7) for v in row] for row in top.values],
                    "top_logprobs_kv16": [[round(float(lp16[i, j]), 7) for j in row]
                                          for i, row in enumerate(top.indices.tolist())],
                })
                dmax = float((lp16.gather(1, top.indices) - top.values).abs().max())
                print(f"{shape}: {n} tokens: fp16 KV moves the top-10 logprobs by up to {dmax:.4f}",
                      file=sys.stderr)
            out["models"].append(entry)
            print(f"{shape}: checksum {entry['checksum']:.9e}, top-1 logprob at the last position "
                  f"{entry['prompts'][-1]['top_logprobs'][-1][0]:.4f}", file=sys.stderr)
    with open(a.out, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
