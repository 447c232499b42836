#!/usr/bin/env bash
# compute-sanitizer memcheck over the whole CUDA forward pass: a 2-layer
# random-weight model of Llama-3.2-1B's shapes (head_dim 64, GQA 4:1, 128k
# vocabulary), a 40-token prompt in chunks of 16 (prefill kernel with a cached
# prefix), then 8 greedy decode steps (decode kernel, CUDA graphs), and the
# same with graphs off. Prints the sanitizer's summary lines.
# usage: bash bench/gpu/sanitize_engine.sh   (on the GPU machine; needs torch)
set -u
source "$(dirname "$0")/env.sh"
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
[ -n "$CS" ] || { echo "compute-sanitizer not found"; exit 77; }
M=/tmp/gw_models/sanitize-1b-L2
python3 bench/mkmodel.py --shape llama3.2-1b --layers 2 --out "$M" --dtype bf16 --torch-device cuda \
    --vocab-size real --tokenizer-from .devdata/tokenizer.gguf >/dev/null || exit 1
ids=$(seq 100 139 | paste -sd,)
rc=0
for graphs in 1 0; do
    echo "-- memcheck, godwit logits --device cuda, GODWIT_CUDA_GRAPHS=$graphs"
    GODWIT_CUDA_GRAPHS=$graphs "$CS" --tool memcheck --error-exitcode 3 --print-limit 20 \
        "$GODWIT" logits -m "$M" --device cuda --ids "$ids" -b 16 --generate 8 >/tmp/san.out 2>&1 || rc=$?
    grep -E "ERROR SUMMARY|Invalid|generated" /tmp/san.out | head -8 | cut -c1-200
done
exit $rc
