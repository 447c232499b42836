#!/usr/bin/env bash
# godwit's CUDA backend vs Hugging Face transformers on random-weight Llama
# models, and its speed, in one command on a GPU machine (no network needed):
#
#   bash bench/gpu/run_model_check.sh [model_check.py options, e.g. --shapes llama3-8b --budget 520]
#
# Needs a CUDA-enabled godwit: .devbuild/godwit with its libraries (bench/gpu/pack.sh,
# for a machine without godwit's build dependencies), else build-cuda/godwit
# ($GODWIT names another binary); .devdata/tokenizer.gguf (bench/mkmodel.py
# --tokenizer-into .devdata); python3 with torch, transformers, safetensors, numpy. The log goes to $OUT/model_check.log and
# the results to $OUT/model_check.json when OUT is set; the summary is printed
# last. See bench/gpu/model_check.py for what is checked and timed.
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
# bench/gpu/pack.sh puts a godwit built elsewhere and the libraries it needs in .devbuild/
if [ -d "$ROOT/.devbuild/lib" ]; then
    export LD_LIBRARY_PATH="$ROOT/.devbuild/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export GODWIT=${GODWIT:-$ROOT/.devbuild/godwit}
fi
export GODWIT=${GODWIT:-$ROOT/build-cuda/godwit}
export PYTHONUNBUFFERED=1
if [ ! -x "$GODWIT" ]; then
    echo "run_model_check: no godwit binary at $GODWIT (cmake --build build-cuda --target godwit, or set GODWIT)" >&2
    exit 1
fi
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader ||
    echo "run_model_check: nvidia-smi failed" >&2
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    python3 bench/gpu/model_check.py "$@" 2>&1 | tee "$OUT/model_check.log"
    exit "${PIPESTATUS[0]}"
fi
exec python3 bench/gpu/model_check.py "$@"
