#!/usr/bin/env bash
# Everything the CUDA backend is checked and timed with, in one device call
# (at most 10 minutes): prepare on the CPU machine with
#   bash bench/gpu/pack.sh                     (builds the CUDA godwit, packs .devbuild/)
# then run on the GPU machine, carrying .devbuild and .devdata/tokenizer.gguf:
#   bash bench/gpu/run_all.sh [BUDGET_SECONDS, default 560]
# Steps, each with its share of the budget and reported whatever the others do:
#   kernels    test_cuda_kernels (every kernel against a CPU reference)
#   sanitizer  compute-sanitizer memcheck: the kernels' test (--small) and the
#              whole forward pass (bench/gpu/sanitize_engine.sh)
#   engine     bench/gpu/run_model_check.sh: Llama-3.2-1B and Llama-3-8B shapes vs
#              transformers (fp32 and bf16), greedy, then the 8B's decode and
#              prefill timings against the ceilings and HF sdpa
#   serving    bench/gpu/serve_device.sh: chunked prefill and prefix cache on/off
# Logs under $OUT (or bench/out/all); the last lines are a summary table.
set -u
cd "$(dirname "$0")/../.." || exit 1
BUDGET=${1:-560}
OUT=${OUT:-bench/out/all}
mkdir -p "$OUT"
if [ ! -x .devbuild/godwit ]; then
    echo "run_all: no .devbuild/godwit: run bash bench/gpu/pack.sh on the build machine and carry .devbuild" >&2
    exit 1
fi
export LD_LIBRARY_PATH="$PWD/.devbuild/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export GODWIT=$PWD/.devbuild/godwit PYTHONUNBUFFERED=1
START=$(date +%s)
ROWS=()
left() { echo $((BUDGET - ($(date +%s) - START))); }

# step NAME SECONDS CMD...: runs CMD under timeout (at most what is left), log in $OUT/NAME.log
step() {
    local name=$1 want=$2
    shift 2
    local rem=$(($(left) - 5))
    ((want > rem)) && want=$rem
    if ((want < 20)); then
        ROWS+=("$name|skipped: time budget spent|0")
        return
    fi
    local t0=$(date +%s) rc
    timeout -k 5 "$want" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    local st=ok
    ((rc == 124 || rc == 137)) && st="TIMEOUT after ${want}s"
    ((rc != 0 && rc != 124 && rc != 137)) && st="FAILED (exit $rc)"
    ROWS+=("$name|$st|$(($(date +%s) - t0))")
}

CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
step kernels 60 .devbuild/test_cuda_kernels
step sanitize_kernels 90 "$CS" --tool memcheck --error-exitcode 3 .devbuild/test_cuda_kernels --small
step sanitize_engine 100 bash bench/gpu/sanitize_engine.sh
step engine 280 bash bench/gpu/run_model_check.sh --budget $(($(left) > 300 ? 270 : $(left) - 30))
step serving 170 env OUT="$OUT/serve" bash bench/gpu/serve_device.sh /tmp/gw_models/llama3-8b 160

{
    echo
    echo "==================== run_all summary ($(($(date +%s) - START)) s) ===================="
    grep -hE "^device:|passed, .* failed" "$OUT/kernels.log" | head -3
    grep -hE "ERROR SUMMARY" "$OUT/sanitize_kernels.log" "$OUT/sanitize_engine.log" 2>/dev/null
    sed -n '/^accuracy:/,$p' "$OUT/engine.log" 2>/dev/null | head -40
    sed -n '/^serving on/,$p' "$OUT/serving.log" 2>/dev/null
    echo
    printf '| %-16s | %-28s | %7s |\n' step status seconds
    for r in "${ROWS[@]}"; do
        IFS='|' read -r n st dt <<<"$r"
        printf '| %-16s | %-28s | %7s |\n' "$n" "$st" "$dt"
    done
} | tee "$OUT/summary.txt"
