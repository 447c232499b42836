#!/usr/bin/env bash
# Side-by-side CPU benchmark: godwit vs llama.cpp (llama-bench), same model
# file(s), same thread count, same tests:
#   pp512         prompt processing of 512 tokens, empty cache
#   tg128         generation of 128 tokens one at a time, empty cache
#   tg128@d4096   the same after 4096 tokens already in the KV cache
# plus this machine's memory read bandwidth (bench/membw.c), the ceiling for
# decode: for each tg row the achieved GB/s = bytes read per token x tok/s.
#
# usage: bench/bench_cpu.sh [-t THREADS] [-r REPS] [--depth D] [--quants q8_0,f16]
#                           [--no-llama] [--no-godwit] [GGUF ...]
#   default GGUF: models/SmolLM2-135M-Instruct.Q4_1.gguf (fetched if missing)
#   --quants      also bench copies of the first GGUF requantized by llama.cpp's
#                 llama-quantize (--allow-requantize: Q4_1 -> Q8_0/F16 keeps
#                 Q4_1's rounding, fine for speed, not for quality), written
#                 to bench/out/
# Each timed run waits (IDLE_WAIT s, default 900) for the shared machine to be
# under IDLE_PCT % busy (default 15); bench/out/results-*/load.log says how busy
# it was. Raw outputs go to bench/out/ (git-ignored). Env: JOBS (build jobs,
# default 2). The ratio column compares means.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=bench/out
mkdir -p "$out"

threads=$(nproc)
reps=5
depth=4096
quants=""
do_llama=1
do_godwit=1
models=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t|--threads) threads=$2; shift 2 ;;
    -r|--reps) reps=$2; shift 2 ;;
    --depth) depth=$2; shift 2 ;;
    --quants) quants=$2; shift 2 ;;
    --no-llama) do_llama=0; shift ;;
    --no-godwit) do_godwit=0; shift ;;
    -h|--help) sed -n "2,/^set -euo/p" "$0" | grep "^#" | sed "s/^# \{0,1\}//"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) models+=("$1"); shift ;;
  esac
done
JOBS=${JOBS:-2}
export JOBS

# ---- builds -----------------------------------------------------------------
godwit_ok=0
if [ $do_godwit = 1 ]; then
  echo "== building godwit (Release, native)" >&2
  if cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DGODWIT_NATIVE=ON >"$out/godwit-cmake.log" 2>&1 &&
     nice -n 10 cmake --build build -j "$JOBS" --target godwit >"$out/godwit-build.log" 2>&1; then
    godwit_ok=1
  else
    echo "godwit build failed (see $out/godwit-*.log); its rows will be empty" >&2
  fi
fi
LL=third_party_build/llama.cpp-build/bin
if [ $do_llama = 1 ] || [ -n "$quants" ]; then
  echo "== building llama.cpp" >&2
  bash bench/build_llamacpp.sh
fi
echo "== building membw" >&2
gcc -O3 -march=native -pthread bench/membw.c -o "$out/membw"

# ---- models -----------------------------------------------------------------
if [ ${#models[@]} -eq 0 ]; then
  bash scripts/fetch_model.sh
  models=(models/SmolLM2-135M-Instruct.Q4_1.gguf)
fi
if [ -n "$quants" ]; then
  base=${models[0]}
  stem=$(basename "$base" .gguf); stem=${stem%.*}
  for q in ${quants//,/ }; do
    Q=$(echo "$q" | tr a-z A-Z)
    dst=$out/$stem.$Q.gguf
    if [ ! -f "$dst" ]; then
      echo "== llama-quantize --allow-requantize $base -> $dst ($Q)" >&2
      "$LL/llama-quantize" --allow-requantize "$base" "$dst" "$Q" >"$out/quantize-$Q.log" 2>&1 \
        || { tail -20 "$out/quantize-$Q.log" >&2; exit 1; }
    fi
    models+=("$dst")
  done
fi

# ---- runs -------------------------------------------------------------------
# The 2 cores are shared: a concurrent compile or test run halves throughput
# and wrecks llama.cpp's spinning thread pool. Before each timed run, wait
# (up to IDLE_WAIT s, default 900) until the whole machine is < IDLE_PCT %
# busy (default 15) over 5 s; the busy figure is logged with the results.
cpu_busy() {  # percent of all CPU time that was not idle over the last 5 s
  local a b
  a=($(head -1 /proc/stat)); sleep 5; b=($(head -1 /proc/stat))
  local ta=0 tb=0 i
  for i in 1 2 3 4 5 6 7 8; do ta=$((ta + a[i])); tb=$((tb + b[i])); done
  local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) tot=$((tb - ta))
  echo $(( tot > 0 ? 100 * (tot - idle) / tot : 0 ))
}
wait_idle() {
  local waited=0 busy
  while :; do
    busy=$(cpu_busy)
    [ "$busy" -lt "${IDLE_PCT:-15}" ] && break
    if [ "$waited" -ge "${IDLE_WAIT:-900}" ]; then
      echo "warning: machine still ${busy}% busy after ${waited}s; running anyway" >&2; break
    fi
    echo "machine ${busy}% busy; waiting for it to go idle ..." >&2
    sleep 10; waited=$((waited + 15))
  done
  echo "$(date +%T) $1: machine ${busy}% busy before the run" >>"$results/load.log"
}

stamp=$(date +%Y%m%d-%H%M%S)
results=$out/results-$stamp
mkdir -p "$results"
# memory bandwidth is shared with whatever else runs on the host: best of 3
for k in 1 2 3; do
  wait_idle "membw $k"
  echo "== membw (1 GiB, 8 passes, 1..$threads threads) run $k/3" >&2
  "$out/membw" 1024 8 "$threads" | tee -a "$results/membw.txt" >&2
done

for m in "${models[@]}"; do
  tag=$(basename "$m" .gguf)
  if [ $do_llama = 1 ]; then
    # one llama-bench run per test, each after its own idle check, so that a
    # burst of someone else's work spoils one row, not all of them
    cmd1=("$LL/llama-bench" -m "$m" -t "$threads" -r "$reps" -p 512 -n 0 -o jsonl)
    cmd2=("$LL/llama-bench" -m "$m" -t "$threads" -r "$reps" -p 0 -n 128 -o jsonl)
    cmd3=("$LL/llama-bench" -m "$m" -t "$threads" -r "$reps" -p 512 -n 128 -d "$depth" -o jsonl)
    for c in cmd1 cmd2 cmd3; do
      declare -n cc=$c
      wait_idle "$tag llama-bench"
      echo "== ${cc[*]}" >&2
      echo "${cc[*]}" >>"$results/$tag.llama.cmd"
      "${cc[@]}" >>"$results/$tag.llama.jsonl" 2>>"$results/$tag.llama.err" \
        || echo "llama-bench failed (see $results/$tag.llama.err)" >&2
      unset -n cc
    done
  fi
  if [ $do_godwit = 1 ]; then
    gcmd=(./build/godwit bench -m "$m" -t "$threads" --reps "$reps" --pp 512 --tg 128 --depth "0,$depth" --json)
    echo "${gcmd[*]}" >"$results/$tag.godwit.cmd"
    if [ $godwit_ok = 1 ] && ./build/godwit bench --help >/dev/null 2>&1; then
      wait_idle "$tag godwit bench"
      echo "== ${gcmd[*]}" >&2
      "${gcmd[@]}" >"$results/$tag.godwit.jsonl" 2>"$results/$tag.godwit.err" \
        || echo "godwit bench failed (see $results/$tag.godwit.err)" >&2
    else
      echo "godwit bench not available" >&2
      : >"$results/$tag.godwit.jsonl"
    fi
  fi
done

# ---- table ------------------------------------------------------------------
python3 - "$results" "$results/membw.txt" "$depth" "$threads" "${models[@]}" <<'PY' | tee "$results/table.md"
import json, os, struct, sys

results, membw_file, depth, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
models = sys.argv[5:]

def gguf_info(path):
    """Minimal GGUF reader: metadata + total tensor data bytes (file size
    minus the aligned start of the tensor data section)."""
    with open(path, "rb") as f:
        def rd(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]
        def rstr():
            return f.read(rd("Q")).decode("utf-8", "replace")
        scal = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
        def rval(t):
            if t == 8: return rstr()
            if t == 9:
                et, n = rd("I"), rd("Q")
                if et in scal:  # arrays are not needed: skip them
                    f.seek(n * struct.calcsize("<" + scal[et]), 1)
                else:
                    for _ in range(n): rval(et)
                return None
            return rd(scal[t])
        assert f.read(4) == b"GGUF", path
        ver, n_t, n_kv = rd("I"), rd("Q"), rd("Q")
        kv = {}
        for _ in range(n_kv):
            k = rstr(); kv[k] = rval(rd("I"))
        for _ in range(n_t):
            rstr(); nd = rd("I"); f.seek(8 * nd + 4 + 8, 1)
        align = kv.get("general.alignment") or 32
        pos = f.tell(); start = (pos + align - 1) // align * align
        size = os.path.getsize(path)
    arch = kv.get("general.architecture", "llama")
    g = lambda k, d=None: kv.get(f"{arch}.{k}", d)
    n_layer, n_embd, n_head = g("block_count"), g("embedding_length"), g("attention.head_count")
    n_kv = g("attention.head_count_kv", n_head)
    hd_k = g("attention.key_length", n_embd // n_head)
    hd_v = g("attention.value_length", hd_k)
    # f16 K and V per token of context, all layers
    kv_per_tok = n_layer * n_kv * (hd_k + hd_v) * 2
    return dict(weights=size - start, kv_per_tok=kv_per_tok, n_layer=n_layer, n_kv=n_kv, hd=hd_k)

def jsonl(path):
    rows = []
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line.startswith("{"):
                try: rows.append(json.loads(line))
                except ValueError: pass
    return rows

bw = None
for line in open(membw_file):
    if line.startswith("best_GBps"):
        bw = max(bw or 0.0, float(line.split()[1]))

print(f"threads {threads}; membw best {bw:.2f} GB/s\n" if bw else f"threads {threads}\n")
for m in models:
    tag = os.path.basename(m)[:-5]
    info = gguf_info(m)
    ll = {}
    for r in jsonl(f"{results}/{tag}.llama.jsonl"):
        if r.get("n_gen", 0) == 0:
            key = ("pp%d" % r["n_prompt"], r.get("n_depth", 0))
        else:
            key = ("tg%d" % r["n_gen"], r.get("n_depth", 0))
        ll[key] = r
    gw = {(r["test"], r.get("depth", 0)): r for r in jsonl(f"{results}/{tag}.godwit.jsonl")}
    gw_avail = os.path.exists(f"{results}/{tag}.godwit.jsonl") and bool(gw)
    llbuild = next(iter(ll.values()), {}).get("build_commit", "?")
    fa = {-1: "auto", 0: "off", 1: "on"}.get(next(iter(ll.values()), {}).get("flash_attn"), "?")
    print(f"### {tag}  (weights {info['weights']/1e6:.1f} MB, KV f16 {info['kv_per_tok']} B/token; "
          f"llama.cpp {llbuild}, flash_attn {fa})\n")
    print("| test | godwit tok/s | llama.cpp tok/s (mean ± sd, best rep) | godwit/llama.cpp | godwit GB/s | llama.cpp GB/s | membw GB/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, d in (("pp512", 0), ("tg128", 0), ("tg128", depth), ("pp512", depth)):
        label = name if d == 0 else f"{name}@d{d}"
        g, l = gw.get((name, d)), ll.get((name, d))
        gt = g["tokens_per_s"] if g else None
        lt = l["avg_ts"] if l else None
        fmt = lambda v, s=None: "-" if v is None else (f"{v:.2f}" + (f" ± {s:.2f}" if s else ""))
        gcell = fmt(gt, g.get("tokens_per_s_sd") if g else None) if gw_avail else "godwit bench not available"
        lcell = fmt(lt, l.get("stddev_ts") if l else None)
        if l and l.get("samples_ts"):
            lcell += f" (best {max(l['samples_ts']):.2f})"
        ratio = f"{gt/lt:.2f}" if gt and lt else "-"
        ggb = lgb = bwc = ""
        if name.startswith("tg"):
            n = int(name[2:])
            # same accounting as godwit bench: all weights + KV at the run's mean depth
            lbytes = info["weights"] + info["kv_per_tok"] * (d + n / 2)
            lgb = f"{lbytes * lt / 1e9:.2f}" if lt else "-"
            if g:
                gb = g.get("bytes_per_token") or lbytes
                ggb = f"{gb * gt / 1e9:.2f}"
            else:
                ggb = "-"
            bwc = f"{bw:.2f}" if bw else "-"
        print(f"| {label} | {gcell} | {lcell} | {ratio} | {ggb} | {lgb} | {bwc} |")
    print()
PY
echo "raw results: $results" >&2
