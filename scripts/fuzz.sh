#!/usr/bin/env bash
# Build and run the libFuzzer targets.
#
#   scripts/fuzz.sh [SECONDS] [NAME...]
#
# Every fuzz/fuzz_NAME.c (or only the NAMEs given, e.g. "gguf") is built with
# clang -fsanitize=fuzzer,address,undefined against all of src/**/*.c except
# the CLI's src/cli/, then run for SECONDS (default 30) on its corpus. Exits non-zero
# if any target crashed; the crashing input is left in
# build-fuzz/artifacts/NAME/ (rerun it: build-fuzz/fuzz_NAME FILE).
#
# The corpus build-fuzz/corpus/NAME/ (kept between runs, grown by the fuzzer)
# is seeded from:
#   - fuzz/seeds/NAME/*, if that directory exists;
#   - tests/test_NAME.c, if it mentions GODWIT_SEED_DIR: it is built and run
#     with GODWIT_SEED_DIR=<corpus dir> and is expected to write its fixtures
#     there and exit (tests/test_gguf.c does: valid v2/v3 files and the first
#     64 KiB of the real model).
#
# Environment: FUZZ_BUILD (build directory, default build-fuzz), JOBS
# (parallel compiles, default 2), CC (default clang), FUZZ_ARGS (extra
# libFuzzer flags, e.g. "-max_len=4096").
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-30}
[ $# -gt 0 ] && shift
out=${FUZZ_BUILD:-build-fuzz}
jobs=${JOBS:-2}
cc=${CC:-clang}

if [ $# -gt 0 ]; then
  names=("$@")
else
  names=()
  for f in fuzz/fuzz_*.c; do
    [ -e "$f" ] || continue
    n=${f#fuzz/fuzz_}
    names+=("${n%.c}")
  done
fi
if [ ${#names[@]} -eq 0 ]; then
  echo "fuzz.sh: no fuzz/fuzz_*.c targets" >&2
  exit 1
fi

cflags=(-std=c17 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Wno-unused-parameter -Isrc -Iinclude)
# shellcheck disable=SC2054 # the commas belong to the flags
san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
libs=(-lm -lpthread)
for pc in libpcre2-8 libcjson; do
  if pkg-config --exists "$pc" 2>/dev/null; then
    read -r -a pc_cflags <<< "$(pkg-config --cflags "$pc")"
    read -r -a pc_libs <<< "$(pkg-config --libs "$pc")"
    cflags+=("${pc_cflags[@]}")
    libs+=("${pc_libs[@]}")
  fi
done

# The library, compiled once with fuzzer coverage (fuzzer-no-link: the
# libFuzzer main comes in only when a target is linked) and archived, so a
# target pulls in only the objects it needs. A file that fails to compile
# (someone's work in progress, a gcc-only builtin) is left out with a
# warning; the link then fails only if a target needs it.
mapfile -t srcs < <(find src -name '*.c' ! -path 'src/cli/*' | sort)
echo "fuzz.sh: compiling ${#srcs[@]} library files" >&2
rm -rf "$out/obj" "$out/libgodwit_fuzz.a"
for s in "${srcs[@]}"; do mkdir -p "$out/obj/$(dirname "$s")"; done
printf '%s\n' "${srcs[@]}" | xargs -P "$jobs" -I{} \
  "$cc" "${cflags[@]}" "${san[@]}" -fsanitize=fuzzer-no-link -c {} -o "$out/obj/{}.o" || true
objs=()
for s in "${srcs[@]}"; do
  if [ -f "$out/obj/$s.o" ]; then
    objs+=("$out/obj/$s.o")
  else
    echo "fuzz.sh: warning: $s did not compile, left out of the library" >&2
  fi
done
lib=$out/libgodwit_fuzz.a
ar rcs "$lib" "${objs[@]}"

status=0
for name in "${names[@]}"; do
  src=fuzz/fuzz_$name.c
  bin=$out/fuzz_$name
  corpus=$out/corpus/$name
  art=$out/artifacts/$name
  [ -f "$src" ] || { echo "fuzz.sh: no $src" >&2; status=1; continue; }
  mkdir -p "$corpus" "$art"

  echo "fuzz.sh: building $bin" >&2
  "$cc" "${cflags[@]}" "${san[@]}" -fsanitize=fuzzer "$src" "$lib" "${libs[@]}" -o "$bin"

  if [ -d "fuzz/seeds/$name" ]; then
    cp -n "fuzz/seeds/$name"/* "$corpus"/ 2>/dev/null || true
  fi
  test_src=tests/test_$name.c
  if [ -f "$test_src" ] && grep -q GODWIT_SEED_DIR "$test_src"; then
    echo "fuzz.sh: writing seeds with $test_src" >&2
    # An ordinary main over the same objects (the sanitizer runtime supplies
    # no-op coverage hooks); only its seed-writing path runs.
    "$cc" "${cflags[@]}" "${san[@]}" -Itests "$test_src" "$lib" "${libs[@]}" \
      -o "$out/seedgen_$name"
    GODWIT_ROOT=$PWD GODWIT_SEED_DIR=$corpus "$out/seedgen_$name" >&2
  fi

  echo "fuzz.sh: running fuzz_$name for ${secs}s on $corpus" >&2
  # shellcheck disable=SC2086
  if ! "$bin" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
       -artifact_prefix="$art/" ${FUZZ_ARGS:-} "$corpus"; then
    echo "fuzz.sh: fuzz_$name FAILED; inputs in $art/" >&2
    status=1
  fi
done
exit $status
