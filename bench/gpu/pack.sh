#!/usr/bin/env bash
# Builds the CUDA-enabled godwit on this machine (nvcc compiles for sm_90
# without a GPU) and packs what a GPU machine without PCRE2/cJSON/libmicrohttpd
# needs into .devbuild/ (ignored): the godwit CLI, the kernel test and
# benchmark, the kernels' shared library (for bench/gpu/attn_vs_sdpa.py) and,
# in .devbuild/lib, the shared libraries godwit links that are neither the C
# runtime nor CUDA's. A device command then runs them with
#   export LD_LIBRARY_PATH=$PWD/.devbuild/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
# (bench/gpu/run_model_check.sh does that). Usage: bash bench/gpu/pack.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
NVCC=${NVCC:-$(command -v nvcc || ls /usr/local/cuda/bin/nvcc)}
cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DGODWIT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_CUDA_COMPILER="$NVCC" >/dev/null
cmake --build build-cuda -j "$(nproc)" --target godwit test_cuda_kernels bench_cuda_kernels godwit_cuda_kernels
rm -rf .devbuild
mkdir -p .devbuild/lib
cp build-cuda/godwit build-cuda/test_cuda_kernels build-cuda/bench_cuda_kernels \
    build-cuda/libgodwit_cuda_kernels.so .devbuild/
ldd build-cuda/godwit | awk '$3 ~ /^\// {print $3}' |
    grep -v -E '/(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt)\.so' |
    while read -r lib; do cp -L "$lib" .devbuild/lib/; done
du -sh .devbuild
ls .devbuild .devbuild/lib
