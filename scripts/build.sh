#!/usr/bin/env bash
# Configures and builds pstrain (Release) into build/ (or $PSTRAIN_BUILD_DIR).
# The CUDA backend is built where nvcc is found (PATH or /usr/local/cuda/bin); extra CMake
# arguments are passed through, e.g. scripts/build.sh -DPSTRAIN_CUDA=OFF.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${PSTRAIN_BUILD_DIR:-$root/build}
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE="${PSTRAIN_BUILD_TYPE:-Release}" "$@"
cmake --build "$build" -j "$(nproc)"
