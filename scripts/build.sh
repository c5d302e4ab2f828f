#!/usr/bin/env bash
# Configures and builds pstrain (Release) into build/ (or $PSTRAIN_BUILD_DIR).
# The CUDA backend is built where nvcc is found (PATH or /usr/local/cuda/bin); extra CMake
# arguments are passed through, e.g. scripts/build.sh -DPSTRAIN_CUDA=OFF.
# CMake's default CPU target is portable (the compiler's default); this script, which builds for
# the machine it runs on, passes -DPSTRAIN_CPU_ARCH=x86-64-v3 (AVX2+FMA: ~2.4x faster GEMM) where
# /proc/cpuinfo has avx2, fma and bmi2, unless the caller passed -DPSTRAIN_CPU_ARCH=... itself.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${PSTRAIN_BUILD_DIR:-$root/build}
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
arch=()
caller_set_arch=0
for a in "$@"; do
  case $a in -DPSTRAIN_CPU_ARCH=* | -DPSTRAIN_CPU_ARCH:*) caller_set_arch=1 ;; esac
done
if [ "$caller_set_arch" -eq 0 ] && [ -r /proc/cpuinfo ]; then
  flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
  if [[ " $flags " == *" avx2 "* && " $flags " == *" fma "* && " $flags " == *" bmi2 "* ]]; then
    arch=(-DPSTRAIN_CPU_ARCH=x86-64-v3)
  fi
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE="${PSTRAIN_BUILD_TYPE:-Release}" \
  ${arch[@]+"${arch[@]}"} "$@"
cmake --build "$build" -j "$(nproc)"
