# Thin wrapper over CMake so that the README's two commands are short.
#   make run   - install deps, build (Release), fetch the default model, run it
#   make test  - install deps, build with ASan+UBSan, fetch the model, run each
#                libFuzzer target briefly (FUZZ_SECONDS each), then CTest
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 20
PROMPT ?= The bar-tailed godwit is a bird that
.PHONY: all deps build run test test-build clean model fuzz

all: build

deps:
	bash scripts/install_deps.sh

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DGODWIT_NATIVE=ON >/dev/null
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

# The fuzzers run first so that CTest's summary is the last line printed.
test: test-build model
	bash scripts/fuzz.sh $(FUZZ_SECONDS)
	cd build-test && ctest --output-on-failure -j $(JOBS)

fuzz:
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

clean:
	rm -rf build build-test build-fuzz
