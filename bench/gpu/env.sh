# Sourced by the device scripts of bench/gpu: the repository root as the
# working directory, and GODWIT (the CUDA godwit to run): .devbuild/godwit
# with its libraries when bench/gpu/pack.sh packed one, else build-cuda/godwit.
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
if [ -d .devbuild/lib ]; then
    export LD_LIBRARY_PATH="$PWD/.devbuild/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    GODWIT=${GODWIT:-.devbuild/godwit}
fi
GODWIT=${GODWIT:-build-cuda/godwit}
