#!/usr/bin/env bash
# End-to-end checks of the godwit command line on the default model: help,
# argument errors, bad model files, greedy generation, stop strings, chat,
# ppl, bench and info. usage: test_cli.sh PATH/TO/godwit
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

out=$("$bin" --help 2>&1); rc=$?
check "main help" [ $rc -eq 0 ]
check "main help lists run" contains "$out" "run "
for cmd in run chat ppl bench info eval logits; do
  out=$("$bin" $cmd --help 2>&1); rc=$?
  check "$cmd --help exits 0" [ $rc -eq 0 ]
  check "$cmd --help shows usage" contains "$out" "usage: godwit $cmd"
done
out=$("$bin" run --bogus 2>&1); rc=$?
check "unknown option exits 2" [ $rc -eq 2 ]
check "unknown option named" contains "$out" "unknown option '--bogus'"
out=$("$bin" frobnicate 2>&1); rc=$?
check "unknown command exits 2" [ $rc -eq 2 ]
out=$("$bin" run -m "$model" 2>&1); rc=$?
check "missing prompt exits 2" [ $rc -eq 2 ]
out=$("$bin" run -m "$model" -p hi -n notanumber 2>&1); rc=$?
check "bad integer exits 1" [ $rc -eq 1 ]
check "bad integer named" contains "$out" "invalid integer for -n"
out=$("$bin" run -m "$tmp/nope.gguf" -p hi 2>&1); rc=$?
check "missing model exits 1" [ $rc -eq 1 ]
check "missing model message" contains "$out" "nope.gguf"
head -c 100000 "$model" >"$tmp/trunc.gguf"
out=$("$bin" run -m "$tmp/trunc.gguf" -p hi 2>&1); rc=$?
check "truncated model exits 1" [ $rc -eq 1 ]
check "truncated model message" contains "$out" "truncated"
printf 'not a gguf file at all' >"$tmp/bad.gguf"
out=$("$bin" info -m "$tmp/bad.gguf" 2>&1); rc=$?
check "bad magic exits 1" [ $rc -eq 1 ]

out=$("$bin" run -m "$model" -p "The capital of France is" -n 8 --temp 0 -t 2 2>"$tmp/err"); rc=$?
check "greedy run exits 0" [ $rc -eq 0 ]
check "greedy run says Paris" contains "$out" "The capital of France is Paris"
check "speed report" grep -q "decode:" "$tmp/err"
out=$("$bin" run -m "$model" -p "The capital of France is" -n 8 --temp 0 --stop "." 2>/dev/null)
check "stop string cuts output" [ "$out" = "The capital of France is Paris" ]
out1=$("$bin" run -m "$model" -p "Once upon a time" -n 16 --seed 7 2>/dev/null)
out2=$("$bin" run -m "$model" -p "Once upon a time" -n 16 --seed 7 2>/dev/null)
check "same seed, same text" [ "$out1" = "$out2" ]
out=$("$bin" run -m "$model" --chat -p "What is the capital of France?" -n 24 --temp 0 2>/dev/null)
check "chat-template run mentions Paris" contains "$out" "Paris"
out=$("$bin" run -m "$model" -p "one two three four five six seven" -c 4 2>&1); rc=$?
check "prompt longer than context refused" [ $rc -eq 1 ]
check "context limit named" contains "$out" "longer than the context"

out=$(printf 'What is the capital of France?\nAnd of Italy?\n' | "$bin" chat -m "$model" -n 24 --temp 0 2>/dev/null); rc=$?
check "chat exits 0" [ $rc -eq 0 ]
check "chat answers first turn" contains "$out" "Paris"
check "chat answers second turn" contains "$out" "Rome"
# chat with prompt compression: each turn's prompt compresses the whole
# conversation's KV to a quarter (turn 2 re-uses the compressed cache)
msg=$(head -c 1500 "$root/../shared/data/war_and_peace.txt" | tr '\n' ' ')
out=$(printf '%s\nWho is speaking?\n' "$msg" | "$bin" chat -m "$model" --kv-select snapkv:4x -v -n 24 --temp 0 2>&1); rc=$?
check "chat --kv-select exits 0" [ $rc -eq 0 ]
check "chat --kv-select compresses turn 1" contains "$out" "kv-select: the KV of 103 of the conversation's 410 tokens kept"
check "chat --kv-select compresses turn 2 on top" grep -Eq "kv-select: the KV of 1[0-9][0-9] of the conversation's 4[2-9][0-9] tokens kept" <<<"$out"

head -c 20000 "$root/../shared/data/war_and_peace.txt" >"$tmp/wp.txt"
out=$("$bin" ppl -m "$model" -f "$tmp/wp.txt" --ctx 256 --chunks 3 2>/dev/null); rc=$?
check "ppl exits 0" [ $rc -eq 0 ]
check "ppl prints a figure" contains "$out" "^ppl [0-9.]* +/- [0-9.]* over 381 tokens (3 chunks of 256"
# strided: 13 windows of 256 every 64 tokens cover tokens 0..1023 and score
# each once (1023 predictions); stride = ctx scores 255 per window
out64=$("$bin" ppl -m "$model" -f "$tmp/wp.txt" --ctx 256 --stride 64 --chunks 13 2>/dev/null); rc=$?
check "strided ppl exits 0" [ $rc -eq 0 ]
check "strided ppl scores every token once" contains "$out64" "over 1023 tokens (13 windows of 256, stride 64)"
out256=$("$bin" ppl -m "$model" -f "$tmp/wp.txt" --ctx 256 --stride 256 --chunks 4 2>/dev/null)
check "stride = ctx scores all but each window's first token" contains "$out256" "over 1020 tokens (4 windows"
# more context per scored token must give a clearly lower perplexity
p64=$(sed -n 's/^ppl \([0-9.]*\) .*/\1/p' <<<"$out64"); p256=$(sed -n 's/^ppl \([0-9.]*\) .*/\1/p' <<<"$out256")
check "stride 64 beats stride 256 ($p64 < $p256)" awk -v a="$p64" -v b="$p256" 'BEGIN { exit !(a > 0 && a < 0.95 * b) }'
out=$("$bin" ppl -m "$model" -f "$tmp/wp.txt" --ctx 256 --stride 512 2>&1); rc=$?
check "stride > ctx refused" [ $rc -eq 1 ]
check "stride error named" contains "$out" "stride must not exceed"

# streaming (attention sinks + sliding window)
for cmd in run chat ppl; do
  out=$("$bin" $cmd --help 2>&1)
  check "$cmd --help documents --streaming" contains "$out" "--streaming S,W"
done
for bad in 4 4,0 -1,10 4,x 4,10,2; do
  out=$("$bin" run -m "$model" -p hi --streaming "$bad" 2>&1); rc=$?
  check "--streaming $bad refused" [ $rc -eq 1 ]
  check "--streaming $bad error named" contains "$out" "--streaming takes S,W"
done
out=$("$bin" run -m "$model" -p hi --streaming 8000,1000 2>&1); rc=$?
check "--streaming past the trained context refused" [ $rc -eq 1 ]
check "--streaming trained context named" contains "$out" "exceeds the model's trained context 8192"
out=$("$bin" ppl -m "$model" -f "$tmp/wp.txt" --streaming 4,60 --stride 8 2>&1); rc=$?
check "ppl --streaming with --stride refused" [ $rc -eq 1 ]
out=$("$bin" ppl -m "$model" -f "$tmp/wp.txt" --streaming 4,60 --ctx 128 2>&1); rc=$?
check "ppl --streaming S,W with --ctx refused" [ $rc -eq 1 ]
out=$("$bin" run -m "$model" -p "The capital of France is" -n 8 --temp 0 -t 2 --streaming 4,1020 2>/dev/null)
check "streaming with a window holding everything: same text" contains "$out" "The capital of France is Paris"
out=$("$bin" run -m "$model" -p "The capital of France is" -n 48 --temp 0 -t 2 --streaming 4,28 --kv-block 8 2>"$tmp/err"); rc=$?
check "streaming run past its window exits 0" [ $rc -eq 0 ]
check "streaming run reports evictions" grep -q -E "streaming: [0-9]+ tokens in the KV cache, [1-9][0-9]* evicted" "$tmp/err"
out=$("$bin" ppl -m "$model" -f "$tmp/wp.txt" --streaming 4,60 -b 32 --chunks 8 -t 2 2>/dev/null); rc=$?
check "streaming ppl exits 0" [ $rc -eq 0 ]
check "streaming ppl: every token scored, cache bounded" contains "$out" \
  "over 256 tokens (streaming 4 sinks + window 60, chunks of 32; KV cache at most 64 tokens = 4 blocks"
out=$("$bin" ppl -m "$model" -f "$tmp/wp.txt" --streaming 0,0 --ctx 128 -b 32 --chunks 8 -t 2 2>&1); rc=$?
check "dense stream past its cache exits 1" [ $rc -eq 1 ]
check "dense stream prints the figure so far" contains "$out" "over 128 tokens (dense stream"
check "dense stream failure explained" contains "$out" "the dense model stops here"

# quantized KV pages (--kv-type)
for cmd in run chat ppl bench logits serve "eval ruler"; do
  out=$("$bin" $cmd --help 2>&1)
  check "$cmd --help documents --kv-type" contains "$out" "--kv-type T"
done
out=$("$bin" run -m "$model" -p hi --kv-type int3 2>&1); rc=$?
check "--kv-type int3 refused" [ $rc -eq 1 ]
check "--kv-type error named" contains "$out" "--kv-type must be f16, int8 or int4"
out=$("$bin" run -m "$model" -p hi --kv-type int8 --kv-block 16 2>&1); rc=$?
check "--kv-type int8 with 16-token blocks refused" [ $rc -eq 1 ]
check "--kv-type block size error named" contains "$out" "multiples of 32"
out=$("$bin" run -m "$model" -p hi --kv-type int4 --streaming 4,60 2>&1); rc=$?
check "--kv-type int4 with --streaming refused" [ $rc -eq 1 ]
out=$("$bin" ppl -m "$model" -f "$tmp/wp.txt" --ctx 128 -b 32 --chunks 2 -t 2 --kv-type int8 2>/dev/null); rc=$?
check "ppl --kv-type int8 exits 0" [ $rc -eq 0 ]
check "ppl reports the KV format and its bytes per token" contains "$out" "KV int8, 12960 bytes/token"
out=$("$bin" bench -m "$model" --pp 16 --tg 4 --reps 1 --json --kv-type int4 2>/dev/null); rc=$?
check "bench --kv-type int4 json" contains "$out" '"kv_type":"int4","kv_bytes_per_token":7200'

# prompt compression (--kv-select)
head -c 3000 "$tmp/wp.txt" >"$tmp/wp3k.txt"
out=$("$bin" run -m "$model" -f "$tmp/wp3k.txt" -n 4 --temp 0 -t 2 --kv-select snapkv:2x 2>&1); rc=$?
check "run --kv-select snapkv:2x exits 0" [ $rc -eq 0 ]
check "run --kv-select reports what it kept" grep -q -E "kv-select snapkv:2x: kept the KV of [0-9]+ of [0-9]+ prompt tokens" <<<"$out"
out=$("$bin" run -m "$model" -p hi --kv-select snapkv 2>&1); rc=$?
check "--kv-select without a budget refused" [ $rc -eq 1 ]
check "--kv-select error named" contains "$out" "--kv-select takes none, snapkv:B or h2o:B"
out=$("$bin" run -m "$model" -p hi --kv-select h2o:4x --streaming 4,60 2>&1); rc=$?
check "--kv-select with --streaming refused" [ $rc -eq 1 ]
out=$("$bin" run -m "$model" -p "$(head -c 1500 "$root/../shared/data/war_and_peace.txt")" --kv-select snapkv:4x \
  --kv-type int8 -n 4 --temp 0 2>&1); rc=$?
check "--kv-select on int8 pages runs" [ $rc -eq 0 ]
check "--kv-select on int8 pages keeps a quarter" contains "$out" "kv-select snapkv:4x: kept the KV of 10[0-9] of 4[0-9][0-9] prompt tokens"

out=$("$bin" bench -m "$model" --pp 16 --tg 4 --reps 1 --json 2>/dev/null); rc=$?
check "bench exits 0" [ $rc -eq 0 ]
check "bench pp json" contains "$out" '"test":"pp16","depth":0'
check "bench tg json" contains "$out" '"test":"tg4","depth":0'
out=$("$bin" bench -m "$model" --pp 0 --tg 4 --depth 300 --streaming 4,124 -b 64 --reps 1 --json 2>/dev/null); rc=$?
check "bench --streaming exits 0" [ $rc -eq 0 ]
# (the window moves a block of 16 at a time: 112..128 slots stay)
check "bench --streaming keeps sinks + window" grep -Eq '"kv_select":"streaming:4,124","depth_kept":1(1[2-9]|2[0-8]),' <<<"$out"

# logits: the prompt's logits file, and a greedy continuation that does not
# depend on how much of it was prompt (prefill path) or generated (decode path)
out=$("$bin" logits -m "$model" --ids 1,2,3 --out "$tmp/l.bin" --generate 3 2>/dev/null); rc=$?
check "logits exits 0" [ $rc -eq 0 ]
check "logits json" contains "$out" '"n_prompt":3,"n_vocab":49152,"generated":\['
check "logits file is [3][49152] float32" [ "$(stat -c %s "$tmp/l.bin" 2>/dev/null)" = $((3 * 49152 * 4)) ]
gen=$(sed -n 's/.*"generated":\[\([0-9,]*\)\].*/\1/p' <<<"$out")
first=${gen%%,*}
out2=$(printf '1 2\n3,%s' "$first" >"$tmp/ids.txt"; "$bin" logits -m "$model" --ids-file "$tmp/ids.txt" --generate 2 2>/dev/null)
check "logits: prompt+1 continues as decode did ($gen)" contains "$out2" "\"generated\":\[${gen#*,}\]"
out=$("$bin" logits -m "$model" --ids 1,x 2>&1); rc=$?
check "logits bad id exits 1" [ $rc -eq 1 ]
check "logits bad id named" contains "$out" "bad token id near 'x'"
out=$("$bin" logits -m "$model" --ids 1 --ids-file "$tmp/ids.txt" 2>&1); rc=$?
check "logits --ids and --ids-file exits 2" [ $rc -eq 2 ]
out=$("$bin" logits -m "$model" --ids 99999999 2>&1); rc=$?
check "logits id outside vocabulary refused" contains "$out" "outside the model's vocabulary"
out=$("$bin" run -m "$model" -p hi --device tpu 2>&1); rc=$?
check "unknown device exits 1" [ $rc -eq 1 ]
check "unknown device named" contains "$out" "--device must be cpu or cuda, not 'tpu'"
out=$("$bin" run -m "$model" -p hi -n 4 --device cpu 2>&1); rc=$?
check "--device cpu runs" [ $rc -eq 0 ]
out=$("$bin" bench -m "$model" --pp 4 --tg 0 --reps 1 --device cuda 2>&1); rc=$?
check "--device cuda fails cleanly without a GPU ($rc)" [ $rc -eq 1 ]
check "--device cuda message" grep -q -E "without the CUDA backend|no CUDA device|CUDA backend" <<<"$out"

# bench/mkmodel.py's quantized GGUFs (used for the GPU checks) load and run
if python3 -c "import numpy" 2>/dev/null; then
  for q in q8_0 q4_1; do
    python3 "$root/bench/mkmodel.py" --shape tiny --gguf "$tmp/tiny-$q.gguf" --gguf-dtype $q \
      --tokenizer-from "$model" 2>/dev/null
    out=$("$bin" info -m "$tmp/tiny-$q.gguf" --tensors 2>&1)
    want=$([ $q = q8_0 ] && echo "Q8_0" || echo "Q4_1")
    check "mkmodel $q: attn_q is $want" grep -q -E "blk.0.attn_q.weight +$want" <<<"$out"
    [ $q = q4_1 ] && check "mkmodel q4_1: attn_v is Q8_0" grep -q -E "blk.0.attn_v.weight +Q8_0" <<<"$out"
    out=$("$bin" logits -m "$tmp/tiny-$q.gguf" --ids 5,6,7 --generate 4 2>&1); rc=$?
    check "mkmodel $q model runs" [ $rc -eq 0 ]
  done
fi

out=$("$bin" info -m "$model" 2>&1); rc=$?
check "info exits 0" [ $rc -eq 0 ]
check "info shows architecture" contains "$out" "general.architecture"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
