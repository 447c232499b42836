#!/usr/bin/env bash
# Streaming (attention sinks + window) on the GPU, in one device call:
#   1. the window-moving kernel's test (test_cuda_kernels --only kv_shift)
#   2. StreamingLLM's perplexity protocol on trained weights: SmolLM2 cut to 4
#      blocks (.devdata/smollm2-L4.gguf, bench/gpu/truncate_gguf.py), the first
#      120 kB of War and Peace (.devdata/wp.txt), --streaming 4,252 in chunks of
#      64, on the GPU; the CPU's figure for the same command is in the notes
#   3. compute-sanitizer memcheck over the same on a short text (many moves)
#   4. decode tokens/s at depth DEPTH (default 8192) on a random-weight SHAPE
#      (default llama3-8b): bf16, int8 and int4 pages, and streaming 4,1020
# usage: bash bench/gpu/streaming_check.sh [SHAPE] [DEPTH]
set -u
source "$(dirname "$0")/env.sh"
SHAPE=${1:-llama3-8b}
DEPTH=${2:-8192}
W=/tmp/gw_stream
mkdir -p "$W"
rc=0
echo "== 1. kernel"
[ -x .devbuild/test_cuda_kernels ] && { .devbuild/test_cuda_kernels --only kv_shift | grep -E "PASS|FAIL|passed" || rc=1; }
echo "== 2. ppl --streaming 4,252 on SmolLM2 (4 blocks), GPU"
"$GODWIT" ppl -m .devdata/smollm2-L4.gguf -f .devdata/wp.txt --streaming 4,252 -b 64 --device cuda 2>&1 |
    grep -E "^ppl|streaming|error" | tail -3
echo "== 3. memcheck, ppl --streaming 4,60 -b 16 on 6 kB"
head -c 6000 .devdata/wp.txt >"$W/short.txt"
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
"$CS" --tool memcheck --error-exitcode 3 "$GODWIT" ppl -m .devdata/smollm2-L4.gguf -f "$W/short.txt" \
    --streaming 4,60 -b 16 --device cuda >"$W/san.out" 2>&1 || rc=$?
grep -E "ERROR SUMMARY|^ppl" "$W/san.out" | head -3
echo "== 4. decode at depth $DEPTH, $SHAPE"
M=/tmp/gw_models/$SHAPE
[ -f "$M/config.json" ] || python3 bench/mkmodel.py --shape "$SHAPE" --out "$M" --dtype bf16 --torch-device cuda \
    --vocab-size real --tokenizer-from .devdata/tokenizer.gguf >/dev/null || exit 1
run() { # NAME ARGS...
    local name=$1
    shift
    "$GODWIT" bench -m "$M" --device cuda --pp 0 --tg 128 --depth "1024,$DEPTH" --reps 1 -b 8192 --json "$@" \
        >"$W/b_$name.json" 2>"$W/b_$name.err" || { rc=1; tail -2 "$W/b_$name.err"; }
}
run f16
run int8 --kv-type int8
run int4 --kv-type int4
run stream --streaming 4,1020 -b 1020
python3 - "$W" "$DEPTH" <<'PY'
import json, sys
w, depth = sys.argv[1], int(sys.argv[2])
rows = {}
for name in ("f16", "int8", "int4", "stream"):
    try:
        for line in open(f"{w}/b_{name}.json"):
            if line.startswith("{"):
                r = json.loads(line)
                if r["depth"] == depth:
                    rows[name] = r
    except OSError:
        pass
base = rows.get("f16")
print(f"{'policy':>8} {'tok/s':>8} {'x dense':>8} {'KV slots':>9} {'KV bytes/token':>15}")
for name, r in rows.items():
    ratio = r["tokens_per_s"] / base["tokens_per_s"] if base else float("nan")
    print(f"{name:>8} {r['tokens_per_s']:8.1f} {ratio:8.2f} {r['depth_kept']:9d} {r['kv_bytes_per_token']:15d}")
PY
exit $rc
