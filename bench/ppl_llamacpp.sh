#!/usr/bin/env bash
# Reference perplexity from llama.cpp's llama-perplexity on the first 32,768
# tokens of War and Peace, for comparison with godwit's own perplexity.
#
# usage: bench/ppl_llamacpp.sh [-m MODEL] [-t THREADS] [CTX:CHUNKS ...]
#   default model: models/SmolLM2-135M-Instruct.Q4_1.gguf
#   default runs:  2048:16 8192:4  (each = 32768 tokens)
#
# What llama-perplexity computes (tools/perplexity/perplexity.cpp, perplexity()):
#   - the whole file is tokenized once, with BOS prepended iff the vocab's
#     add_bos flag is set;
#   - chunk i is tokens [i*CTX, (i+1)*CTX), evaluated from an empty KV cache;
#     if add_bos, the chunk's first token is replaced by BOS;
#   - only the second half is scored: the logits at positions CTX/2 .. CTX-2
#     predict tokens CTX/2+1 .. CTX-1, i.e. CTX/2-1 tokens per chunk;
#   - PPL = exp(mean NLL over all scored tokens); "+/-" is the std. error.
# Logs go to bench/out/ppl-*.log (git-ignored). Env NICE (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
threads=$(nproc)
runs=()
while [ $# -gt 0 ]; do
  case "$1" in
    -m) model=$2; shift 2 ;;
    -t) threads=$2; shift 2 ;;
    -h|--help) sed -n "2,/^set -euo/p" "$0" | grep "^#" | sed "s/^# \{0,1\}//"; exit 0 ;;
    *:*) runs+=("$1"); shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ ${#runs[@]} -gt 0 ] || runs=(2048:16 8192:4)
text=../shared/data/war_and_peace.txt
[ -f "$text" ] || { echo "missing $text" >&2; exit 1; }

bash bench/build_llamacpp.sh
[ -f "$model" ] || bash scripts/fetch_model.sh
PPL=third_party_build/llama.cpp-build/bin/llama-perplexity
mkdir -p bench/out

for r in "${runs[@]}"; do
  ctx=${r%%:*} chunks=${r##*:}
  log=bench/out/ppl-$(basename "$model" .gguf)-c$ctx-x$chunks.log
  cmd=("$PPL" -m "$model" -f "$text" -c "$ctx" --chunks "$chunks" -t "$threads")
  echo "== ${cmd[*]}" >&2
  t0=$(date +%s)
  # perplexity does not depend on timing: run it niced, out of others' way
  nice -n "${NICE:-10}" "${cmd[@]}" >"$log" 2>&1 || { tail -30 "$log" >&2; exit 1; }
  t1=$(date +%s)
  est=$(grep -o 'Final estimate: PPL = .*' "$log" || echo "no final estimate (see $log)")
  scored=$(( chunks * (ctx - ctx / 2 - 1) ))
  echo "c=$ctx chunks=$chunks ($((ctx * chunks)) tokens, $scored scored): $est  [$((t1 - t0)) s]"
done
