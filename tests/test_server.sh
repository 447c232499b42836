#!/usr/bin/env bash
# End-to-end checks of `godwit serve` on the default model: the real server on
# a free loopback port, driven over HTTP with curl (and the `openai` Python
# package when it is installed): completions equal to `godwit run --temp 0`,
# chat streaming as server-sent events, n, stop strings, logprobs, the error
# statuses (400, 401, 404, 413), /metrics, concurrent requests, a client that
# disconnects mid-stream (its KV is freed), the prefix cache (hits in /metrics,
# the same text with --no-prefix-cache), the load generator bench/bench_serve.py,
# and a clean exit on SIGTERM.
# usage: test_server.sh PATH/TO/godwit
set -u
bin=$1
root=${GODWIT_ROOT:-.}
model=$root/models/SmolLM2-135M-Instruct.Q4_1.gguf
tmp=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
pass=0
fail=0
check() { # check NAME CONDITION...
  local name=$1
  shift
  if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $name" >&2; fi
}
contains() { grep -q -- "$2" <<<"$1"; }
# jq-like field access with python: json FILE EXPR (d is the document)
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null; }

key=test-key-123
auth=(-H "Authorization: Bearer $key")

out=$("$bin" serve --help 2>&1); rc=$?
check "serve --help exits 0" [ $rc -eq 0 ]
check "serve --help shows usage" contains "$out" "usage: godwit serve"
out=$("$bin" serve --bogus 2>&1); rc=$?
check "serve: unknown option exits 2" [ $rc -eq 2 ]

# ---- start the server: any free port, printed on stderr
"$bin" serve -m "$model" --host 127.0.0.1 --port 0 -c 1024 --max-running 8 --batch-tokens 128 -t 2 \
  --api-key "$key" --max-body 1M -v 2>"$tmp/server.err" &
pid=$!
port=
for _ in $(seq 1 600); do
  port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/server.err")
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
check "server starts and prints its port" [ -n "$port" ]
if [ -z "$port" ]; then
  cat "$tmp/server.err" >&2
  echo "$pass passed, $fail failed"
  exit 1
fi
url=http://127.0.0.1:$port
# status BODY-FILE curl-args...: runs curl, writes the body to BODY-FILE, prints the status
status() { local body=$1; shift; curl -s -o "$body" -w '%{http_code}' "$@"; }

code=$(status "$tmp/h" "$url/health")
check "GET /health 200" [ "$code" = 200 ]
code=$(status "$tmp/m" "${auth[@]}" "$url/v1/models")
check "GET /v1/models 200" [ "$code" = 200 ]
check "/v1/models names the model" [ "$(json "$tmp/m" 'd["data"][0]["id"]')" = "SmolLM2-135M-Instruct.Q4_1" ]

# ---- completions, not streamed: the same text as `godwit run --temp 0`
prompt="The bar-tailed godwit is a bird that"
ref=$("$bin" run -m "$model" -p "$prompt" -n 16 --temp 0 -t 2 2>/dev/null)
ref=${ref#"$prompt"}
body='{"model":"x","prompt":"'"$prompt"'","max_tokens":16,"temperature":0}'
code=$(status "$tmp/c1" "${auth[@]}" -H 'Content-Type: application/json' -d "$body" "$url/v1/completions")
check "completions 200" [ "$code" = 200 ]
text=$(json "$tmp/c1" 'd["choices"][0]["text"]')
check "completion equals godwit run --temp 0 ('$text' vs '$ref')" [ "$text" = "$ref" ]
check "object text_completion" [ "$(json "$tmp/c1" 'd["object"]')" = text_completion ]
usage=$(json "$tmp/c1" '"%d %d %d" % (d["usage"]["prompt_tokens"], d["usage"]["completion_tokens"], d["usage"]["total_tokens"])')
read -r pt ct tt <<<"$usage"
check "usage counts (${usage:-none})" [ "${pt:-0}" -gt 0 -a "${ct:-0}" -ge 1 -a "${ct:-0}" -le 16 -a "${tt:-x}" = "$((${pt:-0} + ${ct:-0}))" ]
check "finish_reason" contains "$(json "$tmp/c1" 'd["choices"][0]["finish_reason"]')" '^\(length\|stop\)$'

# ---- stop string: cut before the first occurrence of a piece of the text
stop=${ref:6:5}
before=${ref%%"$stop"*}
body='{"prompt":"'"$prompt"'","max_tokens":16,"temperature":0,"stop":["'"$stop"'"]}'
code=$(status "$tmp/c2" "${auth[@]}" -d "$body" "$url/v1/completions")
check "stop: 200" [ "$code" = 200 ]
check "stop: text ends before the stop string" [ "$(json "$tmp/c2" 'd["choices"][0]["text"]')" = "$before" ]
check "stop: finish_reason stop" [ "$(json "$tmp/c2" 'd["choices"][0]["finish_reason"]')" = stop ]

# ---- n = 2 (greedy: both the same), and logprobs
body='{"prompt":"'"$prompt"'","max_tokens":8,"temperature":0,"n":2,"logprobs":2}'
code=$(status "$tmp/c3" "${auth[@]}" -d "$body" "$url/v1/completions")
check "n=2: 200" [ "$code" = 200 ]
check "n=2: two choices, indices 0 and 1" [ "$(json "$tmp/c3" '[c["index"] for c in d["choices"]]')" = "[0, 1]" ]
check "n=2: greedy choices agree" [ "$(json "$tmp/c3" 'd["choices"][0]["text"] == d["choices"][1]["text"]')" = True ]
check "logprobs: one per token, top 2" [ "$(json "$tmp/c3" '1 <= len(d["choices"][0]["logprobs"]["token_logprobs"]) <= d["usage"]["completion_tokens"] // 2 and all(len(t) == 2 for t in d["choices"][0]["logprobs"]["top_logprobs"]) and all(x <= 0 for x in d["choices"][0]["logprobs"]["token_logprobs"])')" = True ]

# ---- chat completions, streamed
body='{"messages":[{"role":"user","content":"What is the capital of France?"}],"max_tokens":24,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}'
code=$(status "$tmp/s1" "${auth[@]}" -N -d "$body" "$url/v1/chat/completions")
check "chat stream: 200" [ "$code" = 200 ]
python3 - "$tmp/s1" >"$tmp/s1.txt" 2>&1 <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1]).read().split("\n") if l.strip() and not l.startswith(":")]
assert all(l.startswith("data: ") for l in lines), "non-data line"
assert lines[-1] == "data: [DONE]", "does not end with [DONE]"
chunks = [json.loads(l[6:]) for l in lines[:-1]]
assert all(c["object"] == "chat.completion.chunk" for c in chunks)
assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
fins = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
assert fins in (["stop"], ["length"]), fins
assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0, "no usage chunk"
print("TEXT:" + text)
EOF
rc=$?
check "chat stream: well-formed SSE ending with [DONE] ($(tail -1 "$tmp/s1.txt"))" [ $rc -eq 0 ]
ref_chat=$("$bin" run -m "$model" --chat -p "What is the capital of France?" -n 24 --temp 0 -t 2 2>/dev/null)
check "chat stream: the text of godwit run --chat --temp 0 ('$ref_chat')" [ "$(grep '^TEXT:' "$tmp/s1.txt")" = "TEXT:$ref_chat" ]
check "chat stream: answers Paris" grep -q "Paris" "$tmp/s1.txt"
# the same chat not streamed gives the same text
body='{"messages":[{"role":"user","content":"What is the capital of France?"}],"max_tokens":24,"temperature":0}'
code=$(status "$tmp/c4" "${auth[@]}" -d "$body" "$url/v1/chat/completions")
check "chat: 200" [ "$code" = 200 ]
check "chat: streamed text = whole text" [ "TEXT:$(json "$tmp/c4" 'd["choices"][0]["message"]["content"]')" = "$(grep '^TEXT:' "$tmp/s1.txt")" ]

# ---- prompt compression (kv_select, a godwit extension)
python3 - "$tmp" "$root" <<'PY'
import json, sys
text = open(sys.argv[2] + "/../shared/data/war_and_peace.txt", encoding="utf-8").read()[300000:302500]
for name, sel in [("ks0", None), ("ks1", "none"), ("ks2", "snapkv:100000"), ("ks3", "snapkv:2x"), ("ks4", "h2o:128")]:
    body = {"prompt": text, "max_tokens": 12, "temperature": 0}
    if sel: body["kv_select"] = sel
    open(f"{sys.argv[1]}/{name}.json", "w").write(json.dumps(body))
PY
for k in 0 1 2 3 4; do
  code=$(status "$tmp/kr$k" "${auth[@]}" -d @"$tmp/ks$k.json" "$url/v1/completions")
  check "kv_select request $k: 200" [ "$code" = 200 ]
done
check "kv_select none: the plain text" [ "$(json "$tmp/kr1" 'd["choices"][0]["text"]')" = "$(json "$tmp/kr0" 'd["choices"][0]["text"]')" ]
check "kv_select with a budget over the prompt: the plain text" [ "$(json "$tmp/kr2" 'd["choices"][0]["text"]')" = "$(json "$tmp/kr0" 'd["choices"][0]["text"]')" ]
check "kv_select snapkv:2x: 12 tokens" [ "$(json "$tmp/kr3" 'd["usage"]["completion_tokens"]')" = 12 ]
check "kv_select h2o:128: 12 tokens" [ "$(json "$tmp/kr4" 'd["usage"]["completion_tokens"]')" = 12 ]
code=$(status "$tmp/kr5" "${auth[@]}" -d '{"prompt": "hi", "kv_select": "lru:4"}' "$url/v1/completions")
check "bad kv_select: 400" [ "$code" = 400 ]
check "bad kv_select: named" [ "$(json "$tmp/kr5" 'd["error"]["param"]')" = kv_select ]

# ---- errors
code=$(status "$tmp/e1" "${auth[@]}" -d '{"prompt": "hi", ' "$url/v1/completions")
check "bad JSON: 400" [ "$code" = 400 ]
check "bad JSON: OpenAI error object" [ "$(json "$tmp/e1" 'sorted(d["error"].keys())')" = "['code', 'message', 'param', 'type']" ]
code=$(status "$tmp/e2" "${auth[@]}" -d '{"prompt": "hi", "max_tokens": "many"}' "$url/v1/completions")
check "bad field: 400" [ "$code" = 400 ]
check "bad field: named" [ "$(json "$tmp/e2" 'd["error"]["param"]')" = max_tokens ]
code=$(status "$tmp/e3" "${auth[@]}" -d '{"messages": "hello"}' "$url/v1/chat/completions")
check "bad messages: 400" [ "$code" = 400 ]
python3 -c 'import json; print(json.dumps({"prompt": "godwit " * 1500, "max_tokens": 4}))' >"$tmp/long.json"
code=$(status "$tmp/e4" "${auth[@]}" -d @"$tmp/long.json" "$url/v1/completions")
check "prompt over the context: 400" [ "$code" = 400 ]
check "prompt over the context: limit named" contains "$(json "$tmp/e4" 'd["error"]["message"]')" "maximum context length is 1024 tokens"
check "prompt over the context: code" [ "$(json "$tmp/e4" 'd["error"]["code"]')" = context_length_exceeded ]
head -c 2000000 /dev/zero | tr '\0' 'a' >"$tmp/big.txt"
code=$(status "$tmp/e5" "${auth[@]}" --data-binary @"$tmp/big.txt" "$url/v1/completions")
check "body over --max-body: 413" [ "$code" = 413 ]
code=$(status "$tmp/e6" -H "Authorization: Bearer wrong" -d '{"prompt":"hi"}' "$url/v1/completions")
check "wrong API key: 401" [ "$code" = 401 ]
check "wrong API key: code" [ "$(json "$tmp/e6" 'd["error"]["code"]')" = invalid_api_key ]
code=$(status "$tmp/e7" -d '{"prompt":"hi"}' "$url/v1/completions")
check "no API key: 401" [ "$code" = 401 ]
code=$(status "$tmp/e8" "${auth[@]}" "$url/v1/nothing")
check "unknown path: 404" [ "$code" = 404 ]
code=$(status "$tmp/e9" "${auth[@]}" "$url/v1/completions")
check "GET on a POST endpoint: 405" [ "$code" = 405 ]

# ---- 8 concurrent requests, all complete; the repeated prompt matches run's text
pids=()
for i in $(seq 1 8); do
  if [ "$i" -le 2 ]; then p=$prompt; else p="Story number $i: once upon a time there was"; fi
  status "$tmp/p$i" "${auth[@]}" -d '{"prompt":"'"$p"'","max_tokens":16,"temperature":0}' "$url/v1/completions" >"$tmp/p$i.code" &
  pids+=($!)
done
wait "${pids[@]}"
wait_ok=0
for i in $(seq 1 8); do
  [ "$(cat "$tmp/p$i.code")" = 200 ] && [ "$(json "$tmp/p$i" 'd["usage"]["completion_tokens"] > 0')" = True ] && wait_ok=$((wait_ok + 1))
done
check "8 concurrent requests complete ($wait_ok/8)" [ $wait_ok -eq 8 ]
check "concurrent: same text as alone" [ "$(json "$tmp/p1" 'd["choices"][0]["text"]')" = "$ref" -a "$(json "$tmp/p2" 'd["choices"][0]["text"]')" = "$ref" ]

# ---- metrics
metrics=$(curl -s "$url/metrics")
for name in vllm:time_to_first_token_seconds_bucket vllm:inter_token_latency_seconds_bucket \
  vllm:e2e_request_latency_seconds_count vllm:num_requests_running vllm:num_requests_waiting \
  vllm:kv_cache_usage_perc vllm:prompt_tokens_total vllm:generation_tokens_total; do
  check "metrics: $name" contains "$metrics" "^$name{"
done
gen=$(sed -n 's/^vllm:generation_tokens_total{[^}]*} \([0-9]*\)$/\1/p' <<<"$metrics")
check "metrics: generation tokens counted (${gen:-none})" [ "${gen:-0}" -ge 100 ]

# ---- prefix cache: two prompts sharing a long passage; the second (and the
# first again) start on the cached blocks; outputs are compared with a server
# started with --no-prefix-cache further down
metric() { curl -s "$url/metrics" | sed -n "s/^$1{[^}]*} \\([0-9.e+-]*\\)\$/\\1/p"; }
python3 - "$tmp" <<'EOF2'
import json, sys
passage = ("The bar-tailed godwit breeds on the Arctic tundra of Scandinavia, Siberia and Alaska, and spends "
           "the northern winter on the coasts of Western Europe, Africa, Australia and New Zealand. ") * 6
for name, q in (("pa", "Where does it breed?"), ("pb", "Where does it spend the winter?")):
    body = {"prompt": "Read the passage and answer.\n" + passage + "\nQuestion: " + q + "\nAnswer:",
            "max_tokens": 12, "temperature": 0}
    json.dump(body, open(sys.argv[1] + "/" + name + ".json", "w"))
EOF2
hits0=$(metric vllm:prefix_cache_hits_total)
queries0=$(metric vllm:prefix_cache_queries_total)
# pa cold, pb on pa's passage, pa again on nearly all of its own prompt
for r in pa.cold pb.hit pa.hit; do
  code=$(status "$tmp/$r" "${auth[@]}" -d @"$tmp/${r%.*}.json" "$url/v1/completions")
  check "prefix cache: request $r 200" [ "$code" = 200 ]
done
hits1=$(metric vllm:prefix_cache_hits_total)
queries1=$(metric vllm:prefix_cache_queries_total)
ptok=$(json "$tmp/pa.cold" 'd["usage"]["prompt_tokens"]')
check "prefix cache: metrics count queries (${queries0:-none} -> ${queries1:-none})" [ "${queries1:-0}" -gt "${queries0:-0}" ]
check "prefix cache: hits > 0, the passage reused twice (${hits0:-none} -> ${hits1:-none}, prompt ${ptok:-?} tokens)" \
  [ $(( ${hits1:-0} - ${hits0:-0} )) -ge $(( ${ptok:-1000} + 200 )) ]
check "prefix cache: the same prompt gives the same text cold and cached" \
  [ "$(json "$tmp/pa.cold" 'd["choices"][0]["text"]')" = "$(json "$tmp/pa.hit" 'd["choices"][0]["text"]')" ]

# ---- the load generator (bench/bench_serve.py) against this server: a short run
python3 "$root/bench/bench_serve.py" --url "$url" --api-key "$key" --num-prompts 4 --input-len 48 --output-len 6 \
  --prefix-len 32 --rate inf --max-concurrency 4 --save-result "$tmp/bench.json" >"$tmp/bench.txt" 2>&1
rc=$?
check "bench_serve: exit 0 (rc $rc)" [ $rc -eq 0 ]
for line in "=* Serving Benchmark Result =*" "Successful requests: *4 *$" "Failed requests: *0 *$" \
  "Benchmark duration (s): *[0-9.]*" "Total input tokens: *192 *$" "Total generated tokens: *24 *$" \
  "Request throughput (req/s): *[0-9.]*" "Output token throughput (tok/s): *[0-9.]*" \
  "Total Token throughput (tok/s): *[0-9.]*" "Mean TTFT (ms): *[0-9.]*" "Median TTFT (ms):" "P99 TTFT (ms):" \
  "Mean TPOT (ms):" "Median TPOT (ms):" "P99 TPOT (ms):" "Mean ITL (ms):" "Median ITL (ms):" "P99 ITL (ms):" \
  "Mean E2EL (ms):" "Median E2EL (ms):" "P99 E2EL (ms):" "Server prefix cache: [1-9][0-9]* of 192 prompt tokens"; do
  check "bench_serve prints '$line'" grep -q "^$line" "$tmp/bench.txt"
done
check "bench_serve: --save-result JSON" [ "$(json "$tmp/bench.json" 'd["completed"] == 4 and len(d["ttfts"]) == 4')" = True ]
[ $fail -gt 0 ] && cat "$tmp/bench.txt" >&2

# ---- a client that disconnects mid-stream: the request is cancelled, KV freed
aborted0=$(curl -s "$url/metrics" | sed -n 's/^vllm:request_success_total{finished_reason="abort"[^}]*} \([0-9]*\)$/\1/p')
curl -s -N --max-time 3 "${auth[@]}" -d '{"prompt":"Once upon a time","max_tokens":900,"ignore_eos":true,"stream":true}' \
  "$url/v1/completions" >"$tmp/d1"
rc=$?
check "disconnect: curl timed out mid-stream (rc $rc)" [ $rc -eq 28 ]
check "disconnect: tokens were streamed" grep -q '"text"' "$tmp/d1"
freed=no
for _ in $(seq 1 100); do
  if [ "$(metric vllm:kv_cache_usage_perc)" = 0 ] && [ "$(metric vllm:num_requests_running)" = 0 ]; then freed=yes; break; fi
  sleep 0.2
done
check "disconnect: KV usage back to 0" [ $freed = yes ]
aborted1=$(curl -s "$url/metrics" | sed -n 's/^vllm:request_success_total{finished_reason="abort"[^}]*} \([0-9]*\)$/\1/p')
check "disconnect: counted as aborted ($aborted0 -> $aborted1)" [ "${aborted1:-0}" -gt "${aborted0:-0}" ]
# not streamed: the same
curl -s --max-time 3 "${auth[@]}" -d '{"prompt":"Once upon a time","max_tokens":900,"ignore_eos":true}' \
  "$url/v1/completions" >/dev/null
freed=no
for _ in $(seq 1 100); do
  if [ "$(metric vllm:kv_cache_usage_perc)" = 0 ] && [ "$(metric vllm:num_requests_running)" = 0 ]; then freed=yes; break; fi
  sleep 0.2
done
check "disconnect (not streamed): KV usage back to 0" [ $freed = yes ]

# ---- the official openai package, when installed
if python3 -c 'import openai' 2>/dev/null; then
  python3 - "$url" "$key" >"$tmp/oa.txt" 2>&1 <<'EOF'
import sys, openai
c = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key=sys.argv[2])
m = c.models.list().data[0].id
r = c.completions.create(model=m, prompt="The capital of France is", max_tokens=8, temperature=0)
assert r.usage.completion_tokens > 0 and r.choices[0].text, r
r = c.chat.completions.create(model=m, messages=[{"role": "user", "content": "Say hi"}], max_tokens=8, temperature=0)
assert r.choices[0].message.content, r
s = c.chat.completions.create(model=m, messages=[{"role": "user", "content": "Say hi"}], max_tokens=8,
                              temperature=0, stream=True)
text = "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices)
assert text == r.choices[0].message.content, (text, r.choices[0].message.content)
try:
    openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="wrong").models.list()
    raise SystemExit("no 401")
except openai.AuthenticationError:
    pass
print("openai ok")
EOF
  rc=$?
  check "openai package: completions, chat, streaming, 401 ($(tail -1 "$tmp/oa.txt"))" [ $rc -eq 0 ]
else
  echo "openai package not installed: its checks skipped"
fi

# ---- SIGTERM while a stream is in flight: it finishes, then a clean exit
curl -s -N "${auth[@]}" -d '{"prompt":"Once upon a time","max_tokens":24,"ignore_eos":true,"stream":true}' \
  "$url/v1/completions" >"$tmp/g1" &
cpid=$!
for _ in $(seq 1 300); do grep -q '"text"' "$tmp/g1" 2>/dev/null && break; sleep 0.1; done
kill -TERM "$pid"
wait "$cpid"
crc=$?
wait "$pid"
rc=$?
pid=
check "SIGTERM: the stream in flight completes (curl rc $crc)" [ $crc -eq 0 ]
check "SIGTERM: the stream ends with [DONE] after 24 tokens" [ "$(tail -n 2 "$tmp/g1" | head -n 1)" = "data: [DONE]" -a "$(grep -c '"text":"[^"]' "$tmp/g1")" -ge 20 ]
check "SIGTERM: exit code 0 (got $rc)" [ $rc -eq 0 ]
check "SIGTERM: says it stopped" grep -q "stopped after" "$tmp/server.err"

# ---- --no-prefix-cache: the same texts, nothing reused
"$bin" serve -m "$model" --host 127.0.0.1 --port 0 -c 1024 --max-running 8 --batch-tokens 128 -t 2 \
  --no-prefix-cache 2>"$tmp/server2.err" &
pid=$!
port=
for _ in $(seq 1 600); do
  port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/server2.err")
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
check "--no-prefix-cache: server starts" [ -n "$port" ]
check "--no-prefix-cache: says so" grep -q "prefix cache off" "$tmp/server2.err"
url=http://127.0.0.1:$port
for r in pa pb; do
  code=$(status "$tmp/$r.nc" -d @"$tmp/$r.json" "$url/v1/completions")
  check "--no-prefix-cache: request $r 200" [ "$code" = 200 ]
  check "--no-prefix-cache: request $r gives the text it gave with cache hits" \
    [ "$(json "$tmp/$r.nc" 'd["choices"][0]["text"]')" = "$(json "$tmp/$r.hit" 'd["choices"][0]["text"]')" ]
done
check "--no-prefix-cache: no hits, no queries" [ "$(metric vllm:prefix_cache_hits_total)" = 0 -a "$(metric vllm:prefix_cache_queries_total)" = 0 ]
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
check "--no-prefix-cache: exit code 0 (got $rc)" [ $rc -eq 0 ]
if [ $fail -gt 0 ]; then tail -20 "$tmp/server.err" >&2; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
