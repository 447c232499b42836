#!/usr/bin/env bash
# Load test of `godwit serve` on loopback, bounded in time: CLIENTS concurrent
# streaming clients (bench/bench_serve.py) with varied prompt lengths on a KV
# pool small enough to force preemptions, plus clients that hang up
# mid-stream and clients that send bad requests, for DURATION seconds. Then
# checks that every request got a complete answer or a proper error, that the
# server went back to idle (no running or waiting requests, no KV held by
# requests, prefix-cache blocks all idle) and exits cleanly on SIGTERM (under
# ASan, LeakSanitizer runs at that exit and fails it on a leak).
#
#   bash bench/load_test.sh PATH/TO/godwit [DURATION_S=180] [CLIENTS=64]
#
# Run it once on a sanitizer build (build-test/godwit after `make test`).
set -u
bin=${1:?usage: load_test.sh PATH/TO/godwit [DURATION_S] [CLIENTS]}
duration=${2:-180}
clients=${3:-64}
root=$(cd "$(dirname "$0")/.." && pwd)
model=$root/models/SmolLM2-135M-Instruct.Q4_1.gguf
tmp=$(mktemp -d)
trap 'kill $srv 2>/dev/null; rm -rf "$tmp"' EXIT
pass=0
fail=0
check() { local name=$1; shift; if "$@"; then pass=$((pass + 1)); echo "ok: $name"; else fail=$((fail + 1)); echo "FAIL: $name"; fi; }

"$bin" serve -m "$model" --host 127.0.0.1 --port 0 -c 4096 --max-running 32 --max-waiting 1024 \
  >"$tmp/server.out" 2>"$tmp/server.err" &
srv=$!
port=
for _ in $(seq 1 600); do
  port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/server.err" | head -n1)
  [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.2
done
[ -n "$port" ] || { echo "server did not start"; cat "$tmp/server.err"; exit 1; }
url=http://127.0.0.1:$port
metric() { curl -s "$url/metrics" | sed -n "s/^vllm:$1{[^}]*} \\([0-9.e+-]*\\)$/\\1/p" | head -n1; }
rss_kb() { awk '/VmRSS/ { print $2 }' "/proc/$srv/status"; }
echo "server on $url, $clients clients for ${duration}s"

# Warm-up: one wave that fills the KV pool (its pages are first touched then)
# and starts every kind of thread and allocation. Its RSS is the reference
# for the end: a leak grows with the waves that follow; first touches do not.
python3 "$root/bench/bench_serve.py" --url "$url" --num-prompts "$clients" --max-concurrency "$clients" \
  --input-len 256 --range-ratio 0.9 --output-len 32 --seed 0 >"$tmp/warmup.txt" 2>&1
sleep 1
idle_rss=$(rss_kb)
echo "warm-up: $(grep -E 'Successful requests|Benchmark duration' "$tmp/warmup.txt" | tr -s ' ' | tr '\n' ' ')"
end=$(($(date +%s) + duration))

# hang-ups: streams cut after 1-3 s; bad requests: malformed JSON, too long
(
  while [ "$(date +%s)" -lt $end ]; do
    curl -s -N --max-time $((RANDOM % 3 + 1)) "$url/v1/chat/completions" \
      -d '{"messages":[{"role":"user","content":"Tell me a long story about a bird."}],"stream":true,"max_tokens":400}' >/dev/null
    curl -s -o /dev/null -w '%{http_code}\n' "$url/v1/completions" -d '{"prompt": "x", "max_tokens": ' >>"$tmp/bad_codes"
    sleep 0.5
  done
) &
noise=$!

# the main load: waves of CLIENTS concurrent streaming requests (each wave
# starts all of them at once) until the time is up
wave=0
while [ "$(date +%s)" -lt $end ]; do
  wave=$((wave + 1))
  python3 "$root/bench/bench_serve.py" --url "$url" --num-prompts "$clients" --max-concurrency "$clients" \
    --input-len 256 --range-ratio 0.9 --output-len 32 --shared-prefix-ratio 0.3 --seed $wave \
    --timeout 300 >"$tmp/wave$wave.txt" 2>&1
  echo "wave $wave: $(grep -E 'Successful requests|Failed requests' "$tmp/wave$wave.txt" | tr -s ' ' | tr '\n' ' ')"
done
wait $noise

ok=$(cat "$tmp"/wave*.txt | awk -F: '/Successful requests/ { s += $2 } END { print s + 0 }')
bad=$(cat "$tmp"/wave*.txt | awk -F: '/Failed requests/ { s += $2 } END { print s + 0 }')
check "every load request completed ($ok ok, $bad failed)" [ "$bad" -eq 0 -a "$ok" -gt 0 ]
check "malformed requests all got 400" [ -z "$(grep -v '^400$' "$tmp/bad_codes")" ]

sleep 3 # hung-up streams are reaped at the next step
check "no running requests" [ "$(metric num_requests_running)" = 0 ]
check "no waiting requests" [ "$(metric num_requests_waiting)" = 0 ]
usage=$(metric kv_cache_usage_perc)
check "no KV held by requests (usage $usage)" awk -v u="$usage" 'BEGIN { exit !(u == 0) }'
rss=$(rss_kb)
echo "RSS: ${idle_rss} kB after the warm-up wave, ${rss} kB after the load"
# Under ASan freed memory sits in its quarantine (256 MB by default), so RSS
# says nothing there; LeakSanitizer at exit is the leak check instead.
if ldd "$bin" 2>/dev/null | grep -q libasan; then
  echo "ASan build: RSS not checked (quarantine); LeakSanitizer checks at exit"
else
  check "RSS flat after warm-up (< +32 MB)" [ "$rss" -lt $((idle_rss + 32768)) ]
fi
echo "preemptions: $(metric num_preemptions_total), prefix-cache hits (tokens): $(metric prefix_cache_hits_total)"

kill -TERM $srv
wait $srv
rc=$?
check "server exits 0 on SIGTERM (LeakSanitizer clean under ASan)" [ $rc -eq 0 ]
[ $rc -eq 0 ] || tail -n 40 "$tmp/server.err"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
