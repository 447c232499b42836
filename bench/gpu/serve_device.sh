#!/usr/bin/env bash
# Serving benchmarks on the GPU, one call: `godwit serve --device cuda` on a
# model directory, driven by bench/bench_serve.py (vllm bench serve's
# summary), for the two comparisons of the serving issue:
#   chunked prefill: --batch-tokens 16384 (a step takes whole prompts: off)
#                    vs 2048 and 512 (on), prefix cache off;
#   prefix cache:    every prompt = one shared 2,048-token prefix + 128 of
#                    its own, cache on vs --no-prefix-cache.
# usage: bash bench/gpu/serve_device.sh MODEL_DIR [BUDGET_SECONDS]
# Binary: $GODWIT, else .devbuild/godwit (bench/gpu/pack.sh) or build-cuda/godwit.
# DEVICE, CTX, CHUNK and PREFIX (the bench options) override the defaults (a
# CPU smoke run: DEVICE=cpu CTX=4096 CHUNK="--num-prompts 2 ..." ...).
# Logs and JSON results go to $OUT (or bench/out/serve); a table is printed last.
set -u
cd "$(dirname "$0")/../.." || exit 1
MODEL=${1:?usage: serve_device.sh MODEL_DIR [BUDGET_SECONDS]}
BUDGET=${2:-240}
OUT=${OUT:-bench/out/serve}
mkdir -p "$OUT"
if [ -d .devbuild/lib ]; then
    export LD_LIBRARY_PATH="$PWD/.devbuild/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    GODWIT=${GODWIT:-.devbuild/godwit}
fi
GODWIT=${GODWIT:-build-cuda/godwit}
START=$(date +%s)
PORT=18080
ROWS=()

# run NAME "SERVER OPTIONS" "BENCH OPTIONS"
run() {
    local name=$1 sopts=$2 bopts=$3
    if (($(date +%s) - START > BUDGET - 40)); then
        ROWS+=("$name|skipped: time budget spent")
        return
    fi
    # shellcheck disable=SC2086
    "$GODWIT" serve -m "$MODEL" --device "${DEVICE:-cuda}" --port $PORT -c "${CTX:-65536}" --max-running 32 $sopts \
        >"$OUT/server-$name.log" 2>&1 &
    local pid=$! up=0
    for _ in $(seq 1 240); do
        if curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then up=1; break; fi
        kill -0 $pid 2>/dev/null || break
        sleep 0.5
    done
    if ((up == 0)); then
        ROWS+=("$name|server did not start: $(tail -c 300 "$OUT/server-$name.log" | tr '\n' ' ')")
        kill $pid 2>/dev/null
        wait $pid 2>/dev/null
        return
    fi
    # shellcheck disable=SC2086
    timeout 150 python3 bench/bench_serve.py --url "http://127.0.0.1:$PORT" $bopts \
        --save-result "$OUT/bench-$name.json" >"$OUT/bench-$name.log" 2>&1
    local rc=$?
    kill -TERM $pid 2>/dev/null
    wait $pid 2>/dev/null
    if ((rc != 0)); then
        ROWS+=("$name|bench failed ($rc): $(tail -c 300 "$OUT/bench-$name.log" | tr '\n' ' ')")
        return
    fi
    ROWS+=("$name|$(python3 - "$OUT/bench-$name.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
def g(*keys):
    for k in keys:
        if k in r and r[k] is not None:
            return r[k]
    return float("nan")
print("%d/%d ok | %.1f s | %.2f req/s | %.0f tok/s | TTFT %.0f / %.0f ms | TPOT %.1f ms | ITL p99 %.1f ms max %.1f ms" % (
    g("completed"), g("num_prompts", "completed"), g("duration"), g("request_throughput"),
    g("total_token_throughput"), g("mean_ttft_ms"), g("p99_ttft_ms"), g("mean_tpot_ms"), g("p99_itl_ms"),
    1000 * max(x for s in r.get("itls", [[0]]) for x in (s or [0]))))
PY
)")
}

CHUNK=${CHUNK:-"--num-prompts 96 --input-len 2048 --output-len 128 --rate 8 --seed 1"}
run chunk-off "--batch-tokens 16384 --no-prefix-cache" "$CHUNK"
run chunk-2048 "--batch-tokens 2048 --no-prefix-cache" "$CHUNK"
run chunk-512 "--batch-tokens 512 --no-prefix-cache" "$CHUNK"
PREFIX=${PREFIX:-"--num-prompts 64 --input-len 2176 --prefix-len 2048 --output-len 64 --rate inf --max-concurrency 16 --seed 2"}
run prefix-on "--batch-tokens 2048" "$PREFIX"
run prefix-off "--batch-tokens 2048 --no-prefix-cache" "$PREFIX"

echo
echo "serving on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), model $MODEL ($(($(date +%s) - START)) s)"
for r in "${ROWS[@]}"; do echo "| ${r%%|*} | ${r#*|} |"; done
