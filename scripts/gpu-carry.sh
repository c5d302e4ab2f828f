#!/usr/bin/env bash
# Prepares what scripts/gpu-check.sh needs on a GPU machine that cannot install packages:
# builds pstrain with the CUDA backend here and copies into .carry/ (or $1):
#   bin/   pstrain, the gpu test binaries, the train-step benchmark
#   lib/   the shared libraries they need beyond glibc and CUDA (libzmq, libprotobuf, ...)
#   lib/pstrain/pstrain-cuda.so  the CUDA backend's plugin, where bin/pstrain looks for it
#   data/  the Fashion-MNIST IDX files
#   cpu_reference.json, when scripts/cpu-reference.sh has written one (CPU figures to compare)
# Then, on the GPU machine: bash scripts/gpu-check.sh (see docs/gpu-check.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
carry=${1:-$root/.carry}
build=${PSTRAIN_BUILD_DIR:-$root/build}
data=${PSTRAIN_DATA_DIR:-/usr/share/datasets/fashion-mnist}

bash "$root/scripts/build.sh" -DPSTRAIN_CUDA=ON
bins=("$build/cli/pstrain" "$build/tests/cuda_parity_test" "$build/tests/cuda_train_parity_test"
      "$build/bench/pstrain_bench_step")
plugin="$build/lib/pstrain/pstrain-cuda.so"
for b in "${bins[@]}" "$plugin"; do
  [ -x "$b" ] || { echo "gpu-carry: $b was not built (is nvcc present?)" >&2; exit 1; }
done

rm -rf "$carry"
mkdir -p "$carry/bin" "$carry/lib/pstrain" "$carry/data"
cp "${bins[@]}" "$carry/bin/"
cp "$plugin" "$carry/lib/pstrain/"
# Shared libraries from this machine's packages; glibc's own libraries and CUDA's stay behind
# (the GPU machine has newer ones, and its CUDA toolkit provides cuBLAS).
ldd "${bins[@]}" "$plugin" | awk '/=> \// {print $3}' | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libresolv.so*|ld-linux*) continue ;;
    # The compiler runtime and zlib: any newer system has compatible (newer) ones, and an
    # older copy first on LD_LIBRARY_PATH would break programs built against the newer.
    libstdc++.so*|libgcc_s.so*|libz.so*) continue ;;
    libcublas*|libcudart*) continue ;;
  esac
  cp -L "$lib" "$carry/lib/"
done
cp "$data"/*-ubyte* "$carry/data/"
[ -f "$root/bench/results/cpu_reference.json" ] && cp "$root/bench/results/cpu_reference.json" "$carry/"
du -sh "$carry"
