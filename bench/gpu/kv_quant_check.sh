#!/usr/bin/env bash
# Quantized KV pages (KIVI int8/int4) on the GPU, in one device call:
#   1. compute-sanitizer memcheck over the forward pass with --kv-type int8 and
#      int4 (2-layer Llama-3.2-1B shapes, a 100-token prompt in chunks of 16, so
#      that blocks are sealed between chunks, then 8 greedy steps, graphs on)
#   2. logits of a 2048-token prompt fed in chunks of 256 on a random-weight
#      model (SHAPE, default llama3-8b), int8 and int4 pages against bf16 pages:
#      top-1 agreement and max |delta logprob| over the top 10, greedy tokens
#   3. decode tokens/s at depths DEPTHS (default 1024,32768,131072) for bf16,
#      int8 and int4 pages, and the ratios to bf16
# usage: bash bench/gpu/kv_quant_check.sh [SHAPE] [DEPTHS]
# (on the GPU machine, carrying .devbuild and .devdata/tokenizer.gguf: see bench/gpu/pack.sh)
set -u
source "$(dirname "$0")/env.sh"
SHAPE=${1:-llama3-8b}
DEPTHS=${2:-1024,32768,131072}
W=/tmp/gw_kvq
mkdir -p "$W"
rc=0

echo "== 1. memcheck of the forward pass with quantized pages"
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
S=/tmp/gw_models/sanitize-1b-L2
[ -f "$S/config.json" ] || python3 bench/mkmodel.py --shape llama3.2-1b --layers 2 --out "$S" --dtype bf16 \
    --torch-device cuda --vocab-size real --tokenizer-from .devdata/tokenizer.gguf >/dev/null || exit 1
ids=$(seq 100 199 | paste -sd,)
for t in int8 int4; do
    "$CS" --tool memcheck --error-exitcode 3 --print-limit 20 "$GODWIT" logits -m "$S" --device cuda --kv-type "$t" \
        --ids "$ids" -b 16 --generate 8 >"$W/san_$t.out" 2>&1 || rc=$?
    echo "$t: $(grep -E "ERROR SUMMARY" "$W/san_$t.out" | head -1)"
    grep -E "Invalid|error" "$W/san_$t.out" | head -5 | cut -c1-200
done

echo "== 2. logits, $SHAPE, 2048-token prompt in chunks of 256"
M=/tmp/gw_models/$SHAPE
[ -f "$M/config.json" ] || python3 bench/mkmodel.py --shape "$SHAPE" --out "$M" --dtype bf16 --torch-device cuda \
    --vocab-size real --tokenizer-from .devdata/tokenizer.gguf >/dev/null || exit 1
python3 -c "import numpy as np; print(' '.join(map(str, np.random.default_rng(7).integers(0, 120000, 2048))))" >"$W/ids.txt"
for t in f16 int8 int4; do
    "$GODWIT" logits -m "$M" --device cuda --kv-type "$t" --ids-file "$W/ids.txt" -b 256 --generate 32 \
        --out "$W/logits_$t.f32" >"$W/logits_$t.json" 2>"$W/logits_$t.err" || { rc=1; tail -3 "$W/logits_$t.err"; }
done
python3 - "$W" <<'PY' || rc=1
import json, sys
import numpy as np
w = sys.argv[1]
def load(t):
    r = json.loads(open(f"{w}/logits_{t}.json").read().strip().splitlines()[-1])
    x = np.fromfile(f"{w}/logits_{t}.f32", dtype=np.float32).reshape(r["n_prompt"], r["n_vocab"])
    x = x - x.max(1, keepdims=True)
    return r, x - np.log(np.exp(x).sum(1, keepdims=True))
r0, ref = load("f16")
top10 = np.argsort(-ref, 1)[:, :10]
for t in ("int8", "int4"):
    r, lp = load(t)
    top1 = (lp.argmax(1) == ref.argmax(1)).mean()
    d = np.abs(np.take_along_axis(lp, top10, 1) - np.take_along_axis(ref, top10, 1))
    late = d[512:].max()  # positions that attend to sealed blocks of earlier chunks
    same = sum(a == b for a, b in zip(r["generated"], r0["generated"]))
    print(f"{t}: top-1 agreement with bf16 pages {top1:.4f}, max |dlogprob| top-10 {d.max():.4f} "
          f"(positions >= 512: {late:.4f}, mean {d.mean():.5f}), greedy {same}/{len(r0['generated'])} tokens equal")
PY

echo "== 3. decode tokens/s at depths $DEPTHS, $SHAPE"
for t in f16 int8 int4; do
    "$GODWIT" bench -m "$M" --device cuda --kv-type "$t" --pp 0 --tg 64 --depth "1024,$DEPTHS" --reps 1 -b 16384 \
        --json >"$W/bench_$t.json" 2>"$W/bench_$t.err" || { rc=1; tail -3 "$W/bench_$t.err"; }
done
python3 - "$W" <<'PY' || rc=1
import json, sys
w = sys.argv[1]
rows = {}
for t in ("f16", "int8", "int4"):
    for line in open(f"{w}/bench_{t}.json"):
        if line.startswith("{"):
            r = json.loads(line)
            rows[(t, r["depth"])] = r  # later lines of a depth win (the first 1024 run warms up)
depths = sorted({d for _, d in rows})
print(f"{'depth':>7} {'type':>5} {'tok/s':>8} {'x bf16':>7} {'MB/token':>9} {'GB/s':>6}")
for d in depths:
    for t in ("f16", "int8", "int4"):
        r = rows.get((t, d))
        if not r:
            print(f"{d:>7} {t:>5}  missing")
            continue
        base = rows.get(("f16", d))
        ratio = r["tokens_per_s"] / base["tokens_per_s"] if base else float("nan")
        print(f"{d:>7} {t:>5} {r['tokens_per_s']:8.1f} {ratio:7.2f} {r['bytes_per_token'] / 1e6:9.1f} {r['gb_per_s']:6.0f}")
PY
exit $rc
