#!/usr/bin/env bash
# Build llama.cpp's CPU tools (llama-bench, llama-perplexity, llama-quantize,
# llama-tokenize, llama-completion) for the side-by-side benchmark.
#
# The only registries reachable here are PyPI and Debian, so llama.cpp's source
# is taken from the llama-cpp-python sdist, which vendors it under
# vendor/llama.cpp. The sdist is pinned by version and sha256.
#
# Output: third_party_build/llama.cpp-build/bin/llama-*  (git-ignored)
# Idempotent: does nothing if every tool is already built.
#
# Env: JOBS (default 2), NICE (default 10), LLAMA_BUILD_FORCE=1 to rebuild.
set -euo pipefail
cd "$(dirname "$0")/.."

PYVER=0.3.36
# llama-cpp-python 0.3.36 vendors ggml-org/llama.cpp@0c1e57098 (its CHANGELOG)
LLAMA_COMMIT=0c1e57098
SDIST_SHA=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
JOBS=${JOBS:-2}
NICE=${NICE:-10}

top=third_party_build
dl=$top/dl
src=$top/llama_cpp_python-$PYVER/vendor/llama.cpp
bld=$top/llama.cpp-build
tools=(llama-bench llama-perplexity llama-quantize llama-tokenize llama-completion)

all_built() {
  local t
  for t in "${tools[@]}"; do [ -x "$bld/bin/$t" ] || return 1; done
  [ -f "$bld/.stamp-$PYVER" ]
}

if [ "${LLAMA_BUILD_FORCE:-0}" != 1 ] && all_built; then
  echo "llama.cpp tools already built in $bld/bin (llama-cpp-python $PYVER, llama.cpp $LLAMA_COMMIT)" >&2
  exit 0
fi

mkdir -p "$dl"
tgz=$dl/llama_cpp_python-$PYVER.tar.gz
if ! { [ -f "$tgz" ] && echo "$SDIST_SHA  $tgz" | sha256sum -c --status; }; then
  echo "downloading llama-cpp-python $PYVER sdist from PyPI ..." >&2
  rm -f "$tgz"
  python3 -m pip download --quiet --no-deps --no-binary=:all: \
    "llama-cpp-python==$PYVER" -d "$dl"
  echo "$SDIST_SHA  $tgz" | sha256sum -c --status \
    || { echo "sha256 mismatch for $tgz" >&2; exit 1; }
fi

if [ ! -f "$src/CMakeLists.txt" ]; then
  echo "unpacking $tgz ..." >&2
  tar -xzf "$tgz" -C "$top"
fi

# No network at build or run time: no OpenSSL/HTTPS, no prebuilt web UI, no
# server; curl support is gone from this llama.cpp (LLAMA_CURL is deprecated
# and ignored) but is passed OFF anyway.
cmake -S "$src" -B "$bld" \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=ON \
  -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_OPENCL=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_BUILD_COMMIT="$LLAMA_COMMIT" \
  >"$top/llama.cpp-cmake.log" 2>&1 \
  || { tail -40 "$top/llama.cpp-cmake.log" >&2; exit 1; }

echo "building ${tools[*]} (nice $NICE, -j$JOBS); this takes a while ..." >&2
nice -n "$NICE" cmake --build "$bld" --config Release -j "$JOBS" --target "${tools[@]}"
touch "$bld/.stamp-$PYVER"
echo "llama.cpp tools ready in $bld/bin" >&2
