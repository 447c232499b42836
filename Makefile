# Thin wrapper over CMake so that the README's two commands are short.
#   make run   - install deps, build (Release), fetch the default model, run it
#                (CUDA=1: with the CUDA backend, -DGODWIT_CUDA=ON; --device cuda)
#   make test  - install deps, build with ASan+UBSan, fetch the models, compile
#                the CUDA code (if nvcc exists), run each libFuzzer target
#                briefly (FUZZ_SECONDS each), then CTest
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 20
PROMPT ?= The bar-tailed godwit is a bird that
CUDA ?= 0
CMAKE_CUDA_FLAG = $(if $(filter 1,$(CUDA)),-DGODWIT_CUDA=ON,-DGODWIT_CUDA=OFF)
.PHONY: all deps build run test test-build clean model fuzz

all: build

deps:
	bash scripts/install_deps.sh

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DGODWIT_NATIVE=ON $(CMAKE_CUDA_FLAG) >/dev/null
	cmake --build build -j $(JOBS)

model:
	bash scripts/fetch_model.sh smollm2 >/dev/null
	bash scripts/fetch_model.sh qwen2 >/dev/null

run: build
	bash scripts/fetch_model.sh smollm2 >/dev/null
	./build/godwit run -p "$(PROMPT)" -n 64

test-build: deps
	cmake -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGODWIT_SANITIZE=ON >/dev/null
	cmake --build build-test -j $(JOBS)

# The CUDA code is compiled (nvcc, no GPU needed) and the fuzzers run first so
# that CTest's summary is the last line printed.
test: test-build model cuda-check
	bash scripts/fuzz.sh $(FUZZ_SECONDS)
	cd build-test && ctest --output-on-failure -j $(JOBS)

fuzz:
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

clean:
	rm -rf build build-test build-fuzz build-cuda

# CUDA backend: configure build-cuda with -DGODWIT_CUDA=ON, build the kernels,
# their test and benchmark and the CUDA-enabled godwit, run the kernel test (it
# runs its CPU-side checks and exits 77, reported as skipped, when there is no
# GPU) and the CLI test against that godwit (--device cuda must fail cleanly). Needs nvcc and cuBLAS
# besides the main build's dependencies; prints "nvcc not found, skipped" without it.
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
.PHONY: cuda-check
cuda-check:
	@if [ -z "$(NVCC)" ]; then echo "nvcc not found, skipped"; else \
	  cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DGODWIT_CUDA=ON -DCMAKE_CUDA_COMPILER=$(NVCC) >/dev/null && \
	  cmake --build build-cuda -j $(JOBS) --target godwit godwit_cuda godwit_cuda_kernels test_cuda_kernels bench_cuda_kernels && \
	  (cd build-cuda && ctest -R test_cuda_kernels --output-on-failure) && \
	  bash tests/test_cli.sh build-cuda/godwit; fi
