#!/usr/bin/env bash
# The evaluation harness end to end on the default model, kept tiny so that
# it cannot silently break: RULER tasks at a short length, resume, repair of
# an unfinished results file, report, compare, passkey, the needle grid, and
# streaming (sinks + window) as an engine configuration.
# usage: test_eval.sh PATH/TO/godwit
set -u
bin=$1
root=${GODWIT_ROOT:-.}
model=$root/models/SmolLM2-135M-Instruct.Q4_1.gguf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
check() { # check NAME CONDITION...
  local name=$1
  shift
  if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $name" >&2; fi
}
contains() { grep -q -- "$2" <<<"$1"; }
lines() { wc -l <"$1" | tr -d ' '; }

out=$("$bin" eval --help 2>&1); rc=$?
check "eval --help exits 0" [ $rc -eq 0 ]
check "eval --help lists the tasks" contains "$out" "niah_multikey_3"
out=$("$bin" eval ruler -m "$model" --tasks bogus --length 1k 2>&1); rc=$?
check "unknown task refused" [ $rc -eq 1 ]
check "unknown task named" contains "$out" "unknown task 'bogus'"
out=$("$bin" eval ruler -m "$model" --tasks vt 2>&1); rc=$?
check "missing --length refused" [ $rc -eq 1 ]
out=$("$bin" eval ruler -m "$model" --tasks vt --length 64k 2>&1); rc=$?
check "length beyond the model's context refused" [ $rc -eq 1 ]
check "context limit named" contains "$out" "exceeds the model's trained context of 8192"
out=$("$bin" eval frobnicate 2>&1); rc=$?
check "unknown subcommand exits 2" [ $rc -eq 2 ]

# Three tasks of different kinds at 1024 tokens (vt's one-shot example alone
# takes 500); every task's generator is checked by test_ruler.
out=$("$bin" eval ruler -m "$model" --tasks vt --length 512 2>&1); rc=$?
check "vt at 512 refused" [ $rc -eq 1 ]
check "vt says why" contains "$out" "length 512 is too small"
res=$tmp/r.jsonl
tasks=niah_single_1,vt,fwe
out=$("$bin" eval ruler -m "$model" --tasks $tasks --length 1k --samples 1 -o "$res" -q 2>"$tmp/err"); rc=$?
check "ruler exits 0" [ $rc -eq 0 ]
check "one record per task" [ "$(lines "$res")" -eq 3 ]
check "summary has the mean over tasks" contains "$out" "(mean of tasks)       1024"
check "records carry model, config, task, score, speed" \
  grep -q '"model":"SmolLM2-135M-Instruct.Q4_1.gguf","config":"dense","task":"niah_single_1","length":1024,"index":0,"seed":"42".*"score":[0-9.]*.*"prefill_tok_s":[0-9.]*' "$res"
check "prompts fit the length" awk -F'"n_prompt_tokens":' '{ split($2, a, ","); if (a[1] + 0 > 1024 || a[1] + 0 < 500) bad = 1 } END { exit bad }' "$res"
# the single needle with a noise haystack is easy at 1024 tokens even for 135M
check "niah_single_1 found" grep -q '"task":"niah_single_1".*"score":100' "$res"

# resume: nothing to do, nothing appended
cp "$res" "$tmp/before.jsonl"
out=$("$bin" eval ruler -m "$model" --tasks $tasks --length 1k --samples 1 -o "$res" -q 2>&1); rc=$?
check "resume exits 0" [ $rc -eq 0 ]
check "resume runs nothing" contains "$out" "3 samples already done, 0 to run"
check "resume appends nothing" cmp -s "$res" "$tmp/before.jsonl"

# a run stopped mid-line: the partial line is dropped, the sample rerun, and
# the same sample gives the same record (deterministic generation)
head -n 1 "$res" >"$tmp/one.jsonl"
sed -n 2p "$res" | head -c 50 >>"$tmp/one.jsonl"
out=$("$bin" eval ruler -m "$model" --tasks niah_single_1,vt --length 1024 --samples 1 -o "$tmp/one.jsonl" -q 2>&1); rc=$?
check "repaired run exits 0" [ $rc -eq 0 ]
check "repair reported" contains "$out" "dropped an unfinished last line"
check "repaired file has 2 complete records" [ "$(lines "$tmp/one.jsonl")" -eq 2 ]
strip() { sed 's/"prefill_tok_s":[0-9.e+-]*,"decode_tok_s":[0-9.e+-]*,//' "$1"; }
check "rerun sample identical" [ "$(strip "$tmp/one.jsonl" | sed -n 2p)" = "$(strip "$res" | sed -n 2p)" ]

# more samples: only the new ones run
out=$("$bin" eval ruler -m "$model" --tasks niah_single_1 --length 1024 --samples 2 -o "$tmp/one.jsonl" -q 2>&1)
check "extra sample appended" [ "$(lines "$tmp/one.jsonl")" -eq 3 ]

# report and compare
out=$("$bin" eval report "$res" 2>&1); rc=$?
check "report exits 0" [ $rc -eq 0 ]
check "report lists fwe" contains "$out" "fwe  *1024"
# B: the same niah sample under another config label (a dense run here, so
# the scores agree), plus a task A lacks
"$bin" eval ruler -m "$model" --tasks niah_single_1 --length 1024 --samples 1 -o "$tmp/b.jsonl" --config other -q >/dev/null 2>&1
"$bin" eval passkey -m "$model" --length 512 --samples 1 -o "$tmp/b.jsonl" --config other -q >/dev/null 2>&1
out=$("$bin" eval compare "$res" "$tmp/b.jsonl" 2>&1); rc=$?
check "compare exits 0" [ $rc -eq 0 ]
check "compare shows both sides" contains "$out" "niah_single_1  *1024 *[0-9.]* *[0-9.]* *+0.0"
check "compare marks rows missing in A" contains "$out" "passkey  *512 *- *[0-9.]"
check "compare marks rows missing in B" contains "$out" "vt  *1024 *[0-9.]* *- "
out=$("$bin" eval compare "$res" "$tmp/missing.jsonl" 2>&1); rc=$?
check "compare with a missing file fails" [ $rc -eq 1 ]

# passkey and the needle grid
out=$("$bin" eval passkey -m "$model" --length 512 --samples 1 -q 2>&1); rc=$?
check "passkey exits 0" [ $rc -eq 0 ]
check "passkey scored" contains "$out" "passkey  *512 *[0-9.]"
out=$("$bin" eval needle -m "$model" --length 256,512 --depths 0,1 --grid "$tmp/grid" -q 2>&1); rc=$?
check "needle exits 0" [ $rc -eq 0 ]
check "needle table printed" contains "$out" "100%"
check "grid json written" grep -q '"depths":' "$tmp/grid.json"
check "grid svg written" grep -q '</svg>' "$tmp/grid.svg"

# streaming (attention sinks + window): the cache keeps S + W of the prompt; a
# needle at the end of the prompt is still found, one early in it is evicted
out=$("$bin" eval ruler -m "$model" --tasks niah_single_1 --length 1k --samples 2 --streaming 4,252 \
  -o "$tmp/stream.jsonl" -q 2>&1); rc=$?
check "streaming eval exits 0" [ $rc -eq 0 ]
check "streaming config and policy recorded" grep -q '"config":"streaming:4,252".*"kv_select":"streaming:4,252","n_kv_kept":256,' "$tmp/stream.jsonl"
check "streaming: the end needle is found" grep -q '"depth":1,"score":100' "$tmp/stream.jsonl"
check "streaming: the early needle is evicted" grep -q '"depth":0.15,"score":0' "$tmp/stream.jsonl"
out=$("$bin" eval ruler -m "$model" --tasks niah_single_1 --length 1k --samples 1 --streaming 4,252 \
  --kv-type int8 2>&1); rc=$?
check "streaming with int8 pages refused" [ $rc -eq 1 ]
out=$("$bin" eval ruler -m "$model" --tasks niah_single_1 --length 1k --samples 1 --streaming 4,9000 2>&1); rc=$?
check "streaming beyond the trained context refused" contains "$out" "exceeds the model's trained context"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
