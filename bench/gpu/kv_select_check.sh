#!/usr/bin/env bash
# SnapKV / H2O on the GPU, in one device call:
#   1. the kernels' tests (test_cuda_kernels --only probs_add / kv_gather)
#   2. compute-sanitizer memcheck over `godwit run --kv-select` (snapkv and h2o)
#      on SmolLM2 cut to 4 blocks (.devdata/smollm2-L4.gguf, bench/gpu/truncate_gguf.py), a ~700-token prompt
#   3. greedy continuations of that prompt, CPU-made references in the notes:
#      dense and snapkv:4x on the GPU (text printed for comparison)
#   4. decode tokens/s at depth DEPTH (default 8192) on a random-weight SHAPE
#      (default llama3-8b): dense and snapkv:4x
# usage: bash bench/gpu/kv_select_check.sh [SHAPE] [DEPTH]
set -u
source "$(dirname "$0")/env.sh"
SHAPE=${1:-llama3-8b}
DEPTH=${2:-8192}
W=/tmp/gw_select
mkdir -p "$W"
rc=0
echo "== 1. kernels"
for k in probs_add kv_gather; do .devbuild/test_cuda_kernels --only $k | grep -E "PASS|FAIL" || rc=1; done
M6=${SMALL_MODEL:-.devdata/smollm2-L4.gguf}
PROMPT=$(head -c 3000 .devdata/wp.txt)
echo "== 2. memcheck"
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
for p in snapkv:4x h2o:4x; do
    "$CS" --tool memcheck --error-exitcode 3 "$GODWIT" run -m "$M6" --device cuda -p "$PROMPT" --kv-select $p \
        -n 8 --temp 0 -b 128 >"$W/san_$p.out" 2>&1 || rc=$?
    echo "$p: $(grep -E "ERROR SUMMARY" "$W/san_$p.out" | head -1) $(grep -E "kv-select" "$W/san_$p.out" | head -1)"
done
echo "== 3. greedy continuations (GPU)"
for p in none snapkv:4x h2o:4x; do
    out=$("$GODWIT" run -m "$M6" --device cuda -p "$PROMPT" --kv-select $p -n 24 --temp 0 2>/dev/null | tail -c 160)
    echo "$p: ${out//$'\n'/ }"
done
echo "== 4. decode at depth $DEPTH, $SHAPE"
M=/tmp/gw_models/$SHAPE
[ -f "$M/config.json" ] || python3 bench/mkmodel.py --shape "$SHAPE" --out "$M" --dtype bf16 --torch-device cuda \
    --vocab-size real --tokenizer-from .devdata/tokenizer.gguf >/dev/null || exit 1
for p in none snapkv:4x snapkv:8x; do
    "$GODWIT" bench -m "$M" --device cuda --pp 0 --tg 128 --depth "1024,$DEPTH" --reps 1 -b 8192 --json \
        --kv-select $p >"$W/b_$p.json" 2>"$W/b_$p.err" || { rc=1; tail -2 "$W/b_$p.err"; }
    grep "\"depth\":$DEPTH," "$W/b_$p.json" | python3 -c "
import json, sys
for l in sys.stdin:
    r = json.loads(l); print(f\"$p: {r['tokens_per_s']:.1f} tok/s, KV slots kept {r['depth_kept']}\")"
done
exit $rc
