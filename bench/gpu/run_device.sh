#!/usr/bin/env bash
# Everything the CUDA backend needs checked on a GPU, in one command (for a
# machine reached by a tool that runs one command of at most 10 minutes):
#
#   bash bench/gpu/run_device.sh
#
# Steps, each under `timeout` and reported whatever the others do:
#   info       nvidia-smi, nvcc, torch
#   build      cmake -DGODWIT_CUDA=ON (Release, sm_90) in build-cuda; if the main
#              project cannot configure there (PCRE2/cJSON/libmicrohttpd missing),
#              the standalone CUDA project src/backend/cuda instead
#   test       build-cuda/test_cuda_kernels (every kernel vs a CPU reference)
#   bench      build-cuda/bench_cuda_kernels (ceilings: copy bandwidth and bf16
#              GEMM; GEMV per format, decode and prefill attention)
#   sdpa       bench/gpu/attn_vs_sdpa.py (ours vs PyTorch SDPA flash at 8k/32k/128k)
#   sanitizer  compute-sanitizer memcheck on test_cuda_kernels --small (if present)
# Logs go to $OUT (or bench/out/gpu), one file per step plus summary.txt; the
# summary table is printed last. Needs no network. BUDGET (seconds, default
# 540) caps the whole run; each step gets at most what is left.
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
OUT=${OUT:-$ROOT/bench/out/gpu}
mkdir -p "$OUT"
BUDGET=${BUDGET:-540}
START=$(date +%s)
JOBS=$(nproc 2>/dev/null || echo 8)
export PYTHONUNBUFFERED=1
STATUS=()

left() { echo $((BUDGET - ($(date +%s) - START))); }

# run_step NAME LIMIT CMD...: runs CMD with stdout+stderr to $OUT/NAME.log
run_step() {
    local name=$1 limit=$2
    shift 2
    local rem
    rem=$(($(left) - 5))
    if ((rem < 15)); then
        STATUS+=("$name|skipped: time budget spent|0")
        echo "== $name: skipped (time budget spent)"
        return 99
    fi
    ((limit > rem)) && limit=$rem
    echo "== $name (limit ${limit}s): $*"
    local t0 rc dt st
    t0=$(date +%s)
    timeout -k 5 "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    dt=$(($(date +%s) - t0))
    case $rc in
    0) st="ok" ;;
    77) st="skipped (77)" ;;
    124 | 137) st="TIMEOUT after ${limit}s" ;;
    *) st="FAILED (exit $rc)" ;;
    esac
    STATUS+=("$name|$st|$dt")
    tail -n "${TAIL:-30}" "$OUT/$name.log"
    echo "== $name: $st in ${dt}s"
    return $rc
}

info() {
    nvidia-smi || true
    nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.mem,power.draw --format=csv || true
    command -v nvcc && nvcc --version | tail -2
    cmake --version | head -1
    python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))' || true
    command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || echo "no compute-sanitizer"
}

build() {
    local nvcc
    nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
    if [ -z "$nvcc" ]; then
        echo "nvcc not found"
        return 1
    fi
    local args=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_COMPILER="$nvcc")
    rm -rf build-cuda
    if cmake -S . -B build-cuda -DGODWIT_CUDA=ON "${args[@]}"; then
        echo "configured: main project with -DGODWIT_CUDA=ON"
    else
        echo "main project did not configure here; using the standalone CUDA project (src/backend/cuda)"
        rm -rf build-cuda
        cmake -S src/backend/cuda -B build-cuda "${args[@]}" || return 1
    fi
    cmake --build build-cuda -j "$JOBS" --target godwit_cuda godwit_cuda_kernels test_cuda_kernels bench_cuda_kernels
}

sanitize() {
    local cs
    cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null ||
        ls /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)
    if [ -z "$cs" ]; then
        echo "compute-sanitizer not found"
        return 77
    fi
    "$cs" --tool memcheck --error-exitcode 3 --print-limit 20 build-cuda/test_cuda_kernels --small
}

# After a failed full test run: each group of checks in its own process, so
# that a kernel fault (which leaves the CUDA context unusable) hides nothing else.
test_groups() {
    local g
    for g in host device gemv dequantize embed gemm rmsnorm add swiglu f32_to_bf16 gather_rows rope kv_append "attention prefill" \
        "attention decode"; do
        echo "---- test_cuda_kernels --only '$g'"
        timeout -k 5 60 build-cuda/test_cuda_kernels --only "$g" | grep -E "^(PASS|FAIL)|passed, " ||
            echo "(exit ${PIPESTATUS[0]})"
    done
}

bench_sections() {
    local rc=0
    build-cuda/bench_cuda_kernels --only gemv || rc=$?
    build-cuda/bench_cuda_kernels --only attn || rc=$?
    return $rc
}

export -f info build sanitize test_groups bench_sections

run_step info 30 bash -c info
if run_step build 300 bash -c build; then
    run_step test 150 build-cuda/test_cuda_kernels
    rc=$?
    if ((rc != 0 && rc != 77 && rc != 99)); then
        TAIL=0 run_step test_groups 150 bash -c test_groups
        cat "$OUT/test_groups.log" >>"$OUT/test.log" && rm -f "$OUT/test_groups.log"
    fi
    run_step bench 200 bash -c bench_sections
    run_step sdpa 200 python3 bench/gpu/attn_vs_sdpa.py --lib build-cuda/libgodwit_cuda_kernels.so
    run_step sanitizer 240 bash -c sanitize
fi

# The summary, most important last (a caller may see only the end of the output).
{
    echo
    echo "==================== summary ($(($(date +%s) - START)) s) ===================="
    if [ -f "$OUT/bench.log" ]; then
        echo "-- bench_cuda_kernels (ceilings measured in each of the two sections):"
        grep -E "^\|" "$OUT/bench.log" | cut -c1-120
        grep -E "^[a-z_/.]+:[0-9]+: " "$OUT/bench.log" | head -3 | cut -c1-200
    fi
    if [ -f "$OUT/sdpa.log" ]; then
        echo
        echo "-- attention vs PyTorch SDPA (flash):"
        grep -E "^\||refused|n=[0-9]+: [A-Za-z]*Error|Traceback" "$OUT/sdpa.log" | head -16 | cut -c1-170
    fi
    if [ -f "$OUT/sanitizer.log" ]; then
        echo
        echo "-- compute-sanitizer memcheck (test --small):"
        grep -E "ERROR SUMMARY|Invalid|^FAIL|passed, .* failed|not found|not supported" "$OUT/sanitizer.log" |
            head -8 | cut -c1-170
    fi
    if [ -f "$OUT/build.log" ]; then
        echo
        grep -m1 -E "configured: main|standalone CUDA project" "$OUT/build.log"
        grep -E "error|warning" "$OUT/build.log" | grep -v -- "-Wno" | head -5 | cut -c1-170
    fi
    if [ -f "$OUT/test.log" ]; then
        echo
        echo "-- test_cuda_kernels:"
        grep -E "^device:|^FAIL|passed, .* failed|^---- " "$OUT/test.log" | head -40 | cut -c1-170
    fi
    echo
    printf '| %-11s | %-32s | %6s |\n' step status seconds
    for s in "${STATUS[@]}"; do
        IFS='|' read -r n st dt <<<"$s"
        printf '| %-11s | %-32s | %6s |\n' "$n" "$st" "$dt"
    done
} | tee "$OUT/summary.txt"
