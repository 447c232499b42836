#!/usr/bin/env python3
"""godwit's CUDA backend end to end against Hugging Face transformers, on
random-weight models of real shapes, and its speed. One call, one time budget.

For each shape (--shapes, default llama3.2-1b then llama3-8b), in this order:
  model    bench/mkmodel.py writes a bf16 Hugging Face directory (weights drawn by
           torch on the GPU; the real vocabulary size, 128256) under --work; a
           complete one from an earlier call is reused
  godwit   `godwit logits --device cuda` on fixed random prompts (--prompts,
           default 16 and 2048 tokens): logits at every position, then --gen
           greedy tokens
  hf       transformers (sdpa) on the same prompts, in bf16 and in fp32 (the same
           weights upcast): log-probs at every position and the greedy
           continuation (a loop over the KV cache, argmax like godwit's); for
           timed shapes then the time to first token of one prefill in bf16
  timings  (--timings, default llama3-8b) the device's ceilings (read and copy
           bandwidth, bf16 GEMM), `godwit bench` prefill TTFT and decode tok/s at
           depth
Accuracy is max |dlogprob| over the reference's top-10 tokens (max and 99th
percentile over the prompt's positions) and top-1 agreement, for godwit vs fp32,
HF bf16 vs fp32 (what bf16 itself costs) and godwit vs HF bf16. For greedy
decoding: the first index where two continuations differ, with the reference's
top-1 - top-2 logit gap at that step (a near tie explains a divergence) and how
far below its top-1 it puts the other's token.

Every step is guarded (a failure is reported and the rest goes on), checked
against the budget (--budget seconds; a step that no longer fits is skipped with
a message) and recorded in --out (JSON, rewritten after every step). The summary
tables are printed last. Needs torch, transformers, safetensors, numpy; no
network. Usually run through bench/gpu/run_model_check.sh.

  python3 bench/gpu/model_check.py [--shapes llama3-8b] [--budget 520] [--out FILE]
  python3 bench/gpu/model_check.py --dry-run            # the commands only
  python3 bench/gpu/model_check.py --device cpu --godwit-device cpu --godwit build/godwit --shapes tiny \\
      --prompts 8,64 --gen 8 --timings tiny --ttft-lens 64,256 --decode-depths 32,128   # a CPU rehearsal
"""
import argparse
import gc
import json
import math
import os
import shlex
import subprocess
import sys
import time
import traceback
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import mkmodel  # noqa: E402  (the presets, and the tokenizer's size for the prompt ids)

# Set before torch initializes CUDA: fewer fragmentation OOMs at 128k tokens, and no hub look-ups.
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# transformers 5.2x renames the cache argument; the old name still works (and the cache length is checked)
warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated")

START = time.monotonic()
A = None  # the parsed arguments
RESULTS = {"steps": [], "models": {}}
torch = None  # imported on first use, so that --dry-run needs numpy only
TOPK = 10
# What the godwit timings need at least once the HF timings are done (their prefill at 128k alone
# takes ~30 s plus the model loads); the HF prefill at the longest length is skipped rather than
# leave less.
GODWIT_TIMINGS_RESERVE_S = 150


class Skip(Exception):
    """A step that cannot run (no time left for it, out of GPU memory): reported, not a failure."""


def left():
    return A.budget - (time.monotonic() - START)


def log(msg):
    print(f"[{time.monotonic() - START:6.1f}s] {msg}", flush=True)


def save():
    if A.out and not A.dry_run:
        tmp = A.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(RESULTS, f, indent=1)
        os.replace(tmp, A.out)


def step(shape, name, need_s, fn, *args):
    """Runs fn(*args) if at least need_s seconds of the budget are left. Returns its value, or None
    if it was skipped or failed (the status goes into RESULTS["steps"] either way)."""
    rec = {"shape": shape, "step": name, "status": "ok", "seconds": 0.0, "message": ""}
    RESULTS["steps"].append(rec)
    if left() < need_s:
        rec["status"] = "skipped"
        rec["message"] = f"time budget: {left():.0f} s left, needs {need_s:.0f} s"
        log(f"== {shape} {name}: SKIPPED ({rec['message']})")
        save()
        return None
    log(f"== {shape} {name}")
    t0 = time.monotonic()
    value = None
    try:
        value = fn(*args)
    except Skip as e:
        rec["status"], rec["message"] = "skipped", str(e)
    except Exception as e:  # noqa: BLE001  (any failure is reported and the run goes on)
        rec["status"] = "FAILED"
        rec["message"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
        traceback.print_exc(limit=4)
        sys.stderr.flush()
    rec["seconds"] = round(time.monotonic() - t0, 1)
    log(f"== {shape} {name}: {rec['status']} in {rec['seconds']} s" + (f" ({rec['message']})" if rec["message"] else ""))
    free_gpu()
    save()
    return value


def free_gpu():
    """Hands the memory of dropped tensors back to the device: godwit runs in its own process on the same GPU."""
    if torch is not None and torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def run_cmd(cmd, limit_s, what):
    """Runs cmd with a timeout within the budget; returns stdout. On a timeout or a non-zero exit raises
    with stderr's last line; the stdout so far is in the exception's .stdout (for partial JSON lines)."""
    log("$ " + shlex.join(cmd))
    if A.dry_run:
        return None
    limit = min(limit_s, left() - 5)
    if limit < 5:
        raise Skip("no time left for " + what)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as e:
        err = RuntimeError(f"{what}: timed out after {limit:.0f} s")
        err.stdout = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        tail = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        print("\n".join(tail.strip().splitlines()[-5:]), file=sys.stderr, flush=True)
        raise err from None
    lines = p.stderr.strip().splitlines()
    if lines:  # godwit's and mkmodel's progress lines say what ran where
        print("\n".join("  | " + s for s in lines[-6:]), flush=True)
    if p.returncode != 0:
        err = RuntimeError(f"{what}: exit {p.returncode}: {lines[-1] if lines else '(no message)'}")
        err.stdout = p.stdout
        raise err
    return p.stdout


def json_lines(text):
    return [json.loads(s) for s in (text or "").splitlines() if s.startswith("{")]


def import_torch():
    global torch
    if torch is None:
        import torch as t
        torch = t
        torch.set_float32_matmul_precision("highest")  # the fp32 reference in true fp32, never TF32
    return torch


def sync():
    if A.device.startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------- model and prompts

def model_dir(shape):
    return os.path.join(A.work, shape + (f"-L{A.layers}" if A.layers else ""))


def make_model(shape):
    """Writes the model unless a complete one made by the same command is there (the marker file is
    written last, so an interrupted write is never reused)."""
    d = model_dir(shape)
    cmd = [sys.executable, os.path.join(ROOT, "bench", "mkmodel.py"), "--shape", shape, "--out", d, "--dtype", "bf16",
           "--torch-device", A.device, "--vocab-size", "real", "--tokenizer-from", A.tokenizer, "--seed", str(A.seed)]
    if A.layers:
        cmd += ["--layers", str(A.layers)]
    marker = os.path.join(d, ".model_check_complete")
    key = shlex.join(cmd[1:])
    if not A.fresh and not A.dry_run and os.path.exists(marker) and open(marker).read() == key:
        log(f"reusing {d} (made by the same command; --fresh rewrites it)")
        return d
    if os.path.exists(marker):
        os.remove(marker)
    gb = preset_weight_gb(shape)
    run_cmd(cmd, 60 + 15 * gb, "mkmodel")
    if not A.dry_run:
        with open(marker, "w") as f:
            f.write(key)
    return d


def preset_weight_gb(shape):
    """bf16 weight size of a preset at the real vocabulary size (for time limits before config.json exists)."""
    p = dict(mkmodel.PRESETS[shape])
    p.setdefault("head_dim", p["hidden"] // p["heads"])
    if A.layers:
        p["layers"] = A.layers
    n_vocab = p["real_vocab"] or 49152
    return sum(math.prod(s) for _, s, _, _ in mkmodel.tensor_list(p, n_vocab)) * 2 / 1e9


def prompt_ids(n_tok):
    """Fixed random prompts, one per length, ids among the tokenizer's real (not padding) tokens."""
    return {n: np.random.default_rng([A.seed, n]).integers(0, n_tok, n).tolist() for n in A.prompts}


def config_numbers(d):
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    h, ff, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    H, KV = c["num_attention_heads"], c["num_key_value_heads"]
    hd = c.get("head_dim") or h // H
    # matmul weights a prefill token passes through (the output head runs for the last token only)
    layer_params = L * (h * H * hd * 2 + h * KV * hd * 2 + 3 * h * ff)
    return dict(layers=L, heads=H, head_dim=hd, layer_params=layer_params, n_vocab=c["vocab_size"])


def prefill_flops(cfg, n):
    return 2.0 * cfg["layer_params"] * n + 4.0 * cfg["layers"] * cfg["heads"] * cfg["head_dim"] * n * n / 2


# ---------------------------------------------------------------- godwit

def godwit_logits(shape, d, n, ids):
    work = os.path.join(A.work, "runs", shape)
    os.makedirs(work, exist_ok=True)
    ids_path, out_path = os.path.join(work, f"ids_{n}.txt"), os.path.join(work, f"logits_{n}.f32")
    with open(ids_path, "w") as f:
        f.write(" ".join(map(str, ids)))
    if os.path.exists(out_path):
        os.remove(out_path)
    cmd = [A.godwit, "logits", "-m", d, "--ids-file", ids_path, "--device", A.godwit_device, "--out", out_path,
           "--generate", str(A.gen), "-c", str(n + A.gen + 16), "-b", "2048"]
    out = run_cmd(cmd, 45 + 4 * preset_weight_gb(shape), "godwit logits")
    if out is None:
        return None
    js = json_lines(out)
    if not js:
        raise RuntimeError("godwit logits printed no JSON object")
    r = js[-1]
    want = n * r["n_vocab"] * 4
    if r["n_prompt"] != n or os.path.getsize(out_path) != want:
        raise RuntimeError(f"logits file {out_path}: {os.path.getsize(out_path)} bytes, expected {want} "
                           f"(n_prompt {r['n_prompt']}, n_vocab {r['n_vocab']})")
    r["logits_path"] = out_path
    log(f"godwit: prefill {n} tokens {r['prefill_s']:.3f} s, decode {r['decode_tokens_per_s']:.1f} tok/s")
    return r


def godwit_bench(d, extra, limit_s, what):
    """`godwit bench --json`: (its JSON lines, None), or after a failure (the lines printed before it,
    the error) so that the depths or runs that finished are kept."""
    cmd = [A.godwit, "bench", "-m", d, "--device", A.godwit_device, "--json", "--reps", "1"] + extra
    try:
        return json_lines(run_cmd(cmd, limit_s, what)), None
    except RuntimeError as e:
        return json_lines(getattr(e, "stdout", "")), e


# ---------------------------------------------------------------- reference (transformers)

def load_hf(d):
    import transformers
    from transformers import AutoModelForCausalLM
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    kw = dict(attn_implementation="sdpa")
    try:
        kw_dtype = dict(dtype=torch.bfloat16)
        try:  # straight onto the GPU (needs accelerate in some versions)
            m = AutoModelForCausalLM.from_pretrained(d, device_map=A.device, **kw_dtype, **kw)
        except (ValueError, ImportError) as e:
            log(f"(device_map refused: {str(e).splitlines()[0][:100]}; loading on the CPU, then moving)")
            m = AutoModelForCausalLM.from_pretrained(d, **kw_dtype, **kw).to(A.device)
    except TypeError:  # transformers before `dtype=`
        m = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.bfloat16, **kw).to(A.device)
    m.eval()
    log(f"transformers {transformers.__version__}: {type(m).__name__}, {m.config._attn_implementation}, "
        f"{next(m.parameters()).dtype} on {next(m.parameters()).device}")
    return m


KEEP_ARG = [True]  # whether this transformers takes logits_to_keep (tried once)


def forward_last(model, x, cache=None):
    """Forward of x (1, n) with use_cache, logits of the last position only when the model allows it.
    Returns (logits of the last position as float32 (V,), the cache)."""
    if KEEP_ARG[0]:
        try:
            out = model(input_ids=x, past_key_values=cache, use_cache=True, logits_to_keep=1)
        except TypeError:
            KEEP_ARG[0] = False
            log("(this transformers has no logits_to_keep: full logits)")
    if not KEEP_ARG[0]:
        out = model(input_ids=x, past_key_values=cache, use_cache=True)
    return out.logits[0, -1].float(), out.past_key_values


def hf_logprobs(model, ids):
    x = torch.tensor([ids], device=A.device)
    logits = model(input_ids=x, use_cache=False).logits[0]
    return torch.log_softmax(logits.float(), dim=-1)


def hf_greedy(model, ids, n):
    """Greedy continuation over the KV cache; returns (tokens, the logits of every step (n, V) float32)."""
    logits, cache = forward_last(model, torch.tensor([ids], device=A.device))
    toks, rows = [], []
    for i in range(n):
        rows.append(logits)
        toks.append(int(torch.argmax(logits)))  # the first maximum: ties to the lowest id, as godwit
        if i + 1 == n:
            break
        logits, cache = forward_last(model, torch.tensor([[toks[-1]]], device=A.device), cache)
        # guards against a silently ignored cache argument (a renamed keyword would give a fresh sequence)
        if cache.get_seq_length() != len(ids) + i + 1:
            raise RuntimeError(f"KV cache holds {cache.get_seq_length()} tokens, expected {len(ids) + i + 1}")
    return toks, torch.stack(rows)


def godwit_logprobs(r, n):
    a = np.fromfile(r["logits_path"], dtype="<f4").reshape(n, r["n_vocab"])
    return torch.log_softmax(torch.from_numpy(a).to(A.device), dim=-1)


def compare(lp, lp_ref):
    """Per position: max |dlogprob| over the reference's top-10 tokens; then max, p99 and mean over the
    positions whose log-probs are all finite (the others are counted)."""
    if lp.shape != lp_ref.shape:
        raise RuntimeError(f"log-probs of shape {tuple(lp.shape)} against the reference's {tuple(lp_ref.shape)}")
    top = lp_ref.topk(TOPK, dim=-1).indices
    d = (lp.gather(-1, top) - lp_ref.gather(-1, top)).abs().amax(dim=-1)
    finite = torch.isfinite(lp).all(dim=-1)
    df = d[finite] if finite.any() else torch.full((1,), float("nan"), device=d.device)
    return {"max": df.max().item(), "p99": torch.quantile(df, 0.99).item(), "mean": df.mean().item(),
            "worst_pos": int(torch.where(finite, d, -1).argmax()),
            "top1": (lp.argmax(-1) == lp_ref.argmax(-1)).float().mean().item(),
            "nonfinite_rows": int((~finite).sum())}


def diverge(ref_rows, ref_toks, other):
    """First index where `other` leaves the reference's greedy path; the reference's top-1 - top-2 gap
    there and how far below its top-1 it puts the other's token (both in logits, given the common prefix)."""
    m = min(len(ref_toks), len(other))
    k = next((i for i in range(m) if ref_toks[i] != other[i]), None)
    r = {"first_diff": k, "compared": m}
    if k is not None:
        row = ref_rows[k]
        top2 = row.topk(2).values
        r.update(ref_gap=(top2[0] - top2[1]).item(), deficit=(top2[0] - row[other[k]]).item(),
                 ref_token=ref_toks[k], other_token=other[k])
    return r


def hf_phase(shape, d, prompts, gw, res, timed):
    """Everything the reference needs, with one load: bf16 checks, fp32 checks, then (the bf16
    weights again) the TTFT timings. Each part is its own step."""
    import_torch()
    model = step(shape, "hf load bf16", 30, load_hf, d)
    if model is None:
        return
    acc, greedy = res["accuracy"], res["greedy"]
    lp_bf16 = {}  # bf16 log-probs per prompt, until the fp32 ones are there

    def checks(kind, n, ids):
        a, gr = acc[str(n)], greedy[str(n)]
        with torch.inference_mode():
            lp = hf_logprobs(model, ids)
            if kind == "hf-bf16":
                lp_bf16[n] = lp
            elif n in lp_bf16:
                a["hf-bf16 vs hf-fp32"] = compare(lp_bf16.pop(n), lp)
            t, rows = hf_greedy(model, ids, A.gen)
            gr["tokens"][kind] = t
            if kind == "hf-fp32" and "hf-bf16" in gr["tokens"]:
                gr["hf-bf16 vs hf-fp32"] = diverge(rows, t, gr["tokens"]["hf-bf16"])
            g = gw.get(n)
            if g is not None:  # last: a malformed godwit output then loses only these
                gr[f"godwit vs {kind}"] = diverge(rows, t, g["generated"])
                a[f"godwit vs {kind}"] = compare(godwit_logprobs(g, n), lp)
        for pair, v in a.items():
            if kind in pair:
                log(f"{n:6d} {pair:20s} {fmt_acc(v)}")
        for pair, v in gr.items():
            if kind in pair:
                log(f"{n:6d} {pair:20s} greedy: {fmt_div(v)}")

    for n, ids in prompts.items():
        acc.setdefault(str(n), {})
        greedy.setdefault(str(n), {"tokens": {}})
        step(shape, f"hf bf16 prompt {n}", 10, checks, "hf-bf16", n, ids)
    if step(shape, "hf to fp32", 10, model.float) is not None:
        for n, ids in prompts.items():
            step(shape, f"hf fp32 prompt {n}", 10, checks, "hf-fp32", n, ids)
    lp_bf16.clear()
    if timed and step(shape, "hf back to bf16", 10, params_to_bf16, model) is not None:
        hf_ttft(shape, model, res)


def params_to_bf16(model):
    """The fp32 model back to the loaded bf16 weights (exact). Parameters only: model.to() would also
    round the fp32 RoPE frequency buffer that the loaded model has."""
    for p in model.parameters():
        p.data = p.data.to(torch.bfloat16)
    return model


def hf_ttft(shape, model, res):
    """One prefill of N random tokens with the cache filled (as a server does), logits of the last
    position; after one warm-up at the first length. A length whose time, extrapolated quadratically
    from the last one, would not fit the budget is skipped; an OOM is reported as such."""
    n_tok = res["n_tok"]
    gen = torch.Generator(device="cpu").manual_seed(A.seed)
    last = None

    def once(n):
        x = torch.randint(0, n_tok, (1, n), generator=gen).to(A.device)
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            _, cache = forward_last(model, x)
        sync()
        dt = time.perf_counter() - t0
        del cache
        return dt

    def timed(n, warm):
        try:
            if warm:
                once(n)
            dt = once(n)
        except torch.cuda.OutOfMemoryError as e:
            res["hf_ttft"][str(n)] = "OOM"
            raise Skip(f"out of GPU memory: {str(e).splitlines()[0][:120]}") from None
        res["hf_ttft"][str(n)] = dt
        log(f"HF sdpa bf16 TTFT {n}: {dt:.3f} s")
        return dt

    for i, n in enumerate(A.ttft_lens):
        guess = last[1] * (n / last[0]) ** 2 if last else 10.0
        dt = step(shape, f"hf ttft {n}", guess * (2 if i == 0 else 1) + 10 + GODWIT_TIMINGS_RESERVE_S,
                  timed, n, i == 0)
        if dt is None:
            res["hf_ttft"].setdefault(str(n), "skipped")
        else:
            last = (n, dt)


# ---------------------------------------------------------------- timings

def ceilings():
    """Best of several: a read-bound reduction (bytes read), a copy (read + write), a bf16 GEMM 8192^3."""
    import_torch()
    big = A.device.startswith("cuda")
    # 4 GiB of bf16 on the GPU (a little under 2^31 elements: 32-bit indexing in the kernels)
    n = (1 << 31) - (1 << 16) if big else (256 << 20) // 2
    g = 8192 if big else 1024
    x = torch.ones(n, dtype=torch.bfloat16, device=A.device)
    y = torch.empty_like(x)
    a = torch.randn(g, g, dtype=torch.bfloat16, device=A.device)
    b = torch.randn(g, g, dtype=torch.bfloat16, device=A.device)

    def best(fn, reps):
        fn()
        ts = []
        for _ in range(reps):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    r = {"read_gbs": 2 * n / best(lambda: x.sum(), 8) / 1e9,
         "copy_gbs": 4 * n / best(lambda: y.copy_(x), 8) / 1e9,
         "gemm_tflops": 2 * g ** 3 / best(lambda: torch.matmul(a, b), 10) / 1e12,
         "gemm_n": g, "bytes": 2 * n}
    RESULTS["ceilings"] = r
    log(f"ceilings: read {r['read_gbs']:.0f} GB/s, copy {r['copy_gbs']:.0f} GB/s (read+write), "
        f"bf16 GEMM {g}^3 {r['gemm_tflops']:.0f} TFLOP/s")
    return r


def godwit_timings(shape, d, res):
    gb = preset_weight_gb(shape)
    if "ceilings" not in RESULTS and not A.dry_run:
        step("-", "ceilings", 20, ceilings)
    pf, dec = res["godwit_prefill"], res["godwit_decode"]

    def prefill(n):
        # lengths up to 32k run twice (--depth 0,0): the second, warm, run is the one reported
        extra = ["--pp", str(n), "--tg", "0", "-b", str(min(n, 16384))] + (["--depth", "0,0"] if n <= 32768 else [])
        rows, err = godwit_bench(d, extra, 60 + 4 * gb + n / 1000, f"godwit bench pp{n}")
        if rows:
            pf[str(n)] = {"runs_tokens_per_s": [r["tokens_per_s"] for r in rows], "ttft_s": n / rows[-1]["tokens_per_s"]}
            log(f"godwit TTFT {n}: {pf[str(n)]['ttft_s']:.3f} s")
        if err:
            raise err

    def decode():
        # the first depth twice: its first run warms the decode path up (later lines of a depth win)
        depths = [A.decode_depths[0]] + A.decode_depths
        extra = ["--pp", "0", "--tg", str(A.tg), "--depth", ",".join(map(str, depths)), "-b", "16384"]
        rows, err = godwit_bench(d, extra, 60 + 4 * gb + sum(depths) / 1000 + 0.05 * A.tg * len(depths),
                                 "godwit bench tg")
        for r in rows:
            dec[str(r["depth"])] = {k: r[k] for k in ("tokens_per_s", "bytes_per_token", "gb_per_s")}
            log(f"godwit decode at depth {r['depth']}: {r['tokens_per_s']:.1f} tok/s, {r['gb_per_s']:.0f} GB/s")
        if err:
            raise err

    short = [n for n in A.ttft_lens if n <= 32768]
    for n in short:
        step(shape, f"godwit pp{n}", 20, prefill, n)
    step(shape, "godwit decode", 40, decode)
    for n in A.ttft_lens:
        if n not in short:
            step(shape, f"godwit pp{n}", 40, prefill, n)


# ---------------------------------------------------------------- per shape

def check_shape(shape):
    res = RESULTS["models"].setdefault(shape, {"accuracy": {}, "greedy": {}, "hf_ttft": {}, "godwit_logits": {},
                                               "godwit_prefill": {}, "godwit_decode": {}})
    timed = A.timings == "all" or shape in A.timings.split(",")
    d = step(shape, "make model", 20, make_model, shape)
    if d is None:
        return
    res["dir"] = d
    n_tok, _ = mkmodel.tokenizer_info(mkmodel.read_tokenizer(A.tokenizer))
    res["n_tok"] = n_tok
    prompts = prompt_ids(n_tok)
    gw = {}
    for n, ids in prompts.items():
        r = step(shape, f"godwit logits prompt {n}", 15, godwit_logits, shape, d, n, ids)
        if r is not None:
            gw[n] = r
            res["godwit_logits"][str(n)] = {k: v for k, v in r.items() if k != "logits_path"}
    if A.dry_run:
        log(f"(dry run: transformers would load {d} here, bf16 then fp32)")
    else:
        hf_phase(shape, d, prompts, gw, res, timed)
        free_gpu()  # the reference model is gone with hf_phase's frame
    if timed:
        if not A.dry_run:
            res["config"] = config_numbers(d)
        godwit_timings(shape, d, res)


# ---------------------------------------------------------------- summary

def fmt_div(v):
    if v is None:
        return "-"
    if v["first_diff"] is None:
        return f"same ({v['compared']})"
    return f"@{v['first_diff']} gap {v['ref_gap']:.3f} def {v['deficit']:.3f}"


def fmt_acc(v):
    if v is None:
        return "-"
    s = f"{v['max']:.4f}/{v['p99']:.4f} {100 * v['top1']:5.1f}%"
    return s + (f" NONFINITE {v['nonfinite_rows']} rows" if v["nonfinite_rows"] else "")


def summary():
    out = []
    pairs = ["godwit vs hf-fp32", "hf-bf16 vs hf-fp32", "godwit vs hf-bf16"]
    out.append(f"\naccuracy: max/p99 over positions of max |dlogprob| over the reference's top-{TOPK} "
               "(reference = the right-hand side), top-1 agreement")
    out.append(f"| {'model':12s} | {'prompt':6s} | " + " | ".join(f"{p:26s}" for p in pairs) + " |")
    for shape, r in RESULTS["models"].items():
        for n, a in r["accuracy"].items():
            out.append(f"| {shape:12s} | {n:>6s} | " + " | ".join(f"{fmt_acc(a.get(p)):26s}" for p in pairs) + " |")
    out.append(f"\ngreedy {A.gen} tokens: first differing index (@k), the reference's top1-top2 logit gap there, "
               "and its deficit (top-1 minus the other's token)")
    out.append(f"| {'model':12s} | {'prompt':6s} | " + " | ".join(f"{p:28s}" for p in pairs) + " |")
    for shape, r in RESULTS["models"].items():
        for n, g in r["greedy"].items():
            out.append(f"| {shape:12s} | {n:>6s} | " + " | ".join(f"{fmt_div(g.get(p)):28s}" for p in pairs) + " |")
    c = RESULTS.get("ceilings")
    if c:
        out.append(f"\nceilings: read {c['read_gbs']:.0f} GB/s (a sum over {c['bytes'] / 2**30:.1f} GiB), "
                   f"copy {c['copy_gbs']:.0f} GB/s (read+write), bf16 GEMM {c['gemm_n']}^3 {c['gemm_tflops']:.1f} TFLOP/s")
    for shape, r in RESULTS["models"].items():
        if r["godwit_decode"]:
            out.append(f"\ndecode ({shape}, tg{A.tg}): bytes/token = weights + KV at the mean depth of the run")
            out.append("| depth  | tok/s   | bytes/token | GB/s   | % read ceiling |")
            for dpt, v in sorted(r["godwit_decode"].items(), key=lambda kv: int(kv[0])):
                frac = f"{100 * v['gb_per_s'] / c['read_gbs']:13.1f}%" if c else "             -"
                out.append(f"| {dpt:>6s} | {v['tokens_per_s']:7.1f} | {v['bytes_per_token'] / 1e9:8.3f} GB | "
                           f"{v['gb_per_s']:6.0f} | {frac} |")
        if r["godwit_prefill"] or r["hf_ttft"]:
            cfg = r.get("config")
            out.append(f"\nprefill ({shape}): TTFT of one prompt; ratio > 1 = godwit faster; TFLOP/s counts "
                       "2*params*N + causal attention")
            out.append("| N      | godwit s | HF sdpa s | HF/godwit | godwit TFLOP/s | % GEMM ceiling |")
            for n in A.ttft_lens:
                ours = r["godwit_prefill"].get(str(n), {}).get("ttft_s")
                hf = r["hf_ttft"].get(str(n))
                hf_s = f"{hf:9.3f}" if isinstance(hf, float) else f"{hf or '-':>9s}"
                ratio = f"{hf / ours:9.2f}" if isinstance(hf, float) and ours else f"{'-':>9s}"
                tf = prefill_flops(cfg, n) / ours / 1e12 if ours and cfg else None
                out.append(f"| {n:6d} | " + (f"{ours:8.3f}" if ours else f"{'-':>8s}") + f" | {hf_s} | {ratio} | "
                           + (f"{tf:14.1f}" if tf else f"{'-':>14s}") + " | "
                           + (f"{100 * tf / c['gemm_tflops']:13.1f}%" if tf and c else f"{'-':>14s}") + " |")
    out.append("\nsteps not ok:")
    bad = [s for s in RESULTS["steps"] if s["status"] != "ok"]
    for s in bad:
        out.append(f"  {s['shape']:12s} {s['step']:26s} {s['status']:8s} {s['message'][:150]}")
    if not bad:
        out.append("  (none)")
    out.append(f"total {time.monotonic() - START:.0f} s of a {A.budget:.0f} s budget"
               + (f"; results in {A.out}" if A.out and not A.dry_run else ""))
    return "\n".join(out)


def int_list(s):
    return [int(x) for x in s.split(",") if x]


def main():
    global A
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="llama3.2-1b,llama3-8b", help="mkmodel presets, in order")
    ap.add_argument("--godwit", default=os.environ.get("GODWIT", os.path.join(ROOT, "build-cuda", "godwit")),
                    help="the godwit binary (default: $GODWIT, else build-cuda/godwit)")
    ap.add_argument("--godwit-device", default="cuda", help="godwit's --device (default cuda)")
    ap.add_argument("--device", default="cuda", help="torch device of the reference and of mkmodel (default cuda)")
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, ".devdata", "tokenizer.gguf"),
                    help="tokenizer.gguf (or any GGUF) mkmodel copies (default .devdata/tokenizer.gguf)")
    ap.add_argument("--work", default="/tmp/gw_models", help="models and godwit's outputs (default /tmp/gw_models)")
    ap.add_argument("--prompts", type=int_list, default=[16, 2048], help="prompt lengths (default 16,2048)")
    ap.add_argument("--gen", type=int, default=64, help="greedy tokens after each prompt (default 64)")
    ap.add_argument("--timings", default="llama3-8b", help="shapes to time: a list, 'all' or 'none' (default llama3-8b)")
    ap.add_argument("--ttft-lens", type=int_list, default=[4096, 32768, 131072], help="prefill lengths timed")
    ap.add_argument("--decode-depths", type=int_list, default=[1024, 32768, 131072], help="decode depths timed")
    ap.add_argument("--tg", type=int, default=64, help="decode tokens timed at each depth (default 64)")
    ap.add_argument("--budget", type=float, default=520, help="seconds for the whole run (default 520)")
    ap.add_argument("--out", default=os.path.join(os.environ["OUT"], "model_check.json") if os.environ.get("OUT") else None,
                    help="JSON results (default $OUT/model_check.json when OUT is set)")
    ap.add_argument("--seed", type=int, default=0, help="weights (mkmodel) and prompts")
    ap.add_argument("--layers", type=int, help="override the layer count (quick rehearsals)")
    ap.add_argument("--fresh", action="store_true", help="rewrite the models even if complete ones are there")
    ap.add_argument("--dry-run", action="store_true", help="print the commands; run nothing")
    A = ap.parse_args()
    A.prompts = sorted(set(A.prompts))
    unknown = [s for s in A.shapes.split(",") if s not in mkmodel.PRESETS]
    if unknown:
        ap.error(f"unknown shape(s) {unknown}; known: {sorted(mkmodel.PRESETS)}")
    if not os.path.exists(A.tokenizer):
        ap.error(f"tokenizer not found: {A.tokenizer} (make it with bench/mkmodel.py --tokenizer-into .devdata)")
    if not os.path.exists(A.godwit) and not A.dry_run:
        ap.error(f"godwit binary not found: {A.godwit} (--godwit or $GODWIT)")
    os.makedirs(A.work, exist_ok=True)
    RESULTS["meta"] = {"args": vars(A), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if not A.dry_run:
        try:
            import_torch()
            import transformers
        except ImportError as e:
            sys.exit(f"model_check: {e} (torch and transformers are needed; --dry-run runs without)")
        dev = torch.cuda.get_device_name(0) if A.device.startswith("cuda") else "cpu"
        RESULTS["meta"].update(torch=torch.__version__, transformers=transformers.__version__, device=dev)
        log(f"torch {torch.__version__}, transformers {transformers.__version__}, {dev}; godwit {A.godwit}")
    for shape in A.shapes.split(","):
        check_shape(shape)
    save()
    print(summary(), flush=True)
    return 0 if all(s["status"] != "FAILED" for s in RESULTS["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
