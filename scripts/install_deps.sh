#!/usr/bin/env bash
# Install the build dependencies from Debian's archive (idempotent; quiet when
# everything is already there).
set -euo pipefail
need=()
for p in cmake gcc make pkg-config libpcre2-dev libcjson-dev libmicrohttpd-dev curl clang libclang-rt-14-dev python3 python3-pip; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
# python3/pip may come from elsewhere (pyenv): accept any working python3 -m pip.
if python3 -m pip --version >/dev/null 2>&1; then
  need=("${need[@]/python3-pip}"); need=("${need[@]/python3}")
fi
clean=(); for p in "${need[@]}"; do [ -n "$p" ] && clean+=("$p"); done
if [ ${#clean[@]} -gt 0 ]; then
  echo "installing: ${clean[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${clean[@]}" >/dev/null
fi
# Python packages of the tests (scripts/requirements-test.txt): numpy for the
# random-weight models of tests/test_hf_model (bench/mkmodel.py), the openai
# client for tests/test_server.sh; without them those parts print "skipped".
if ! python3 -c 'import numpy, openai' >/dev/null 2>&1; then
  req="$(dirname "$0")/requirements-test.txt"
  python3 -m pip install --quiet -r "$req" 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages -r "$req" ||
    echo "install_deps: could not install the test packages; parts of tests will be skipped" >&2
fi
