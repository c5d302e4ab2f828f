#!/usr/bin/env bash
# Checks that the module graph points one way (docs/architecture.md) and that a library-only
# build needs neither GoogleTest nor Google Benchmark:
#   1. #include rules between folders (each folder may include only the folders below it);
#   2. configures with -DPSTRAIN_BUILD_TESTS=OFF -DPSTRAIN_BUILD_BENCH=OFF while CMake is told
#      that GTest and benchmark do not exist, builds every library and the binary, and reads
#      CMake's dependency graph: pstrain_kernels links neither ZeroMQ nor Protobuf.
# Build folder: build-layering/ (or $PSTRAIN_LAYERING_BUILD_DIR). Exit 1 naming each breach.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
fail=0

# allowed <folder> <regex of include prefixes it may use besides itself and system headers>
check_includes() {
  local folder=$1 allowed=$2 exclude=${3:-}
  local hits
  hits=$(grep -rn --include='*.h' --include='*.cc' --include='*.cu' --include='*.cuh' \
           '^#include "' "$folder" | { [ -n "$exclude" ] && grep -v "^$exclude" || cat; } |
         grep -vE "#include \"($folder/|$allowed)" || true)
  if [ -n "$hits" ]; then
    echo "layering: $folder/ includes what it must not (allowed besides itself: $allowed):"
    echo "$hits" | sed 's/^/  /'
    fail=1
  fi
}
check_includes runtime/base '^$'
check_includes runtime/wire 'runtime/base/'
check_includes runtime/job 'runtime/base/|runtime/wire/'
check_includes runtime/metrics 'runtime/base/'
check_includes runtime/events 'runtime/base/'
check_includes kernels 'runtime/base/' kernels/cuda
check_includes kernels/cuda 'kernels/|runtime/base/'
check_includes checkpoint 'runtime/base/'
check_includes ps 'kernels/(variable|optim|tensor|optim_math|hd)\.h|checkpoint/|runtime/'
check_includes worker 'kernels/|ps/|checkpoint/|runtime/'
check_includes export 'kernels/|checkpoint/|runtime/base/'
check_includes cli 'worker/|ps/|kernels/|checkpoint/|export/|runtime/'
# runtime/job reaches runtime/wire only for sockets: the launcher's free ports and the
# rendezvous (its socket and its one message); no job header exposes a wire type.
hits=$(grep -rn --include='*.h' --include='*.cc' '^#include "runtime/wire/' runtime/job |
       grep -vE '^runtime/job/(launcher|rendezvous)\.cc:' || true)
if [ -n "$hits" ]; then
  echo "layering: runtime/job includes runtime/wire outside launcher.cc and rendezvous.cc:"
  echo "$hits" | sed 's/^/  /'
  fail=1
fi
# libsodium (the job secret's key derivation) stays inside runtime/wire/security.cc.
hits=$(grep -rn --include='*.h' --include='*.cc' '^#include <sodium' . |
       grep -vE '^\./(runtime/wire/security\.cc|tests/|build[^/]*/)' || true)
if [ -n "$hits" ]; then
  echo "layering: <sodium.h> included outside runtime/wire/security.cc:"
  echo "$hits" | sed 's/^/  /'
  fail=1
fi

build=${PSTRAIN_LAYERING_BUILD_DIR:-$root/build-layering}
rm -rf "$build/graph"
mkdir -p "$build/graph"
# Build type None: no optimisation flags (this stage checks what links, not how fast it runs).
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=None -DPSTRAIN_CUDA=OFF \
  -DPSTRAIN_BUILD_TESTS=OFF -DPSTRAIN_BUILD_BENCH=OFF \
  -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON \
  --no-warn-unused-cli --graphviz="$build/graph/deps.dot" >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
kernels_deps="$build/graph/deps.dot.pstrain_kernels"
if [ ! -f "$kernels_deps" ]; then
  echo "layering: CMake wrote no dependency graph for pstrain_kernels ($kernels_deps)"
  fail=1
elif grep -qiE 'zmq|protobuf|prometheus|pstrain_(wire|job|proto|metrics|events)' "$kernels_deps"; then
  echo "layering: pstrain_kernels links ZeroMQ, Protobuf, prometheus-cpp or the wire/job/metrics libraries:"
  grep -iE 'zmq|protobuf|prometheus|pstrain_(wire|job|proto|metrics|events)' "$kernels_deps" | sed 's/^/  /'
  fail=1
fi
ckpt_deps="$build/graph/deps.dot.pstrain_checkpoint"
if [ ! -f "$ckpt_deps" ]; then
  echo "layering: CMake wrote no dependency graph for pstrain_checkpoint ($ckpt_deps)"
  fail=1
elif grep -qiE 'zmq|protobuf|pstrain_(wire|job|proto|kernels|ps)' "$ckpt_deps"; then
  echo "layering: pstrain_checkpoint links ZeroMQ, Protobuf, the wire, job, kernels or ps:"
  grep -iE 'zmq|protobuf|pstrain_(wire|job|proto|kernels|ps)' "$ckpt_deps" | sed 's/^/  /'
  fail=1
fi
export_deps="$build/graph/deps.dot.pstrain_export"
if [ ! -f "$export_deps" ]; then
  echo "layering: CMake wrote no dependency graph for pstrain_export ($export_deps)"
  fail=1
elif grep -qiE 'zmq|prometheus|pstrain_(wire|job|proto|ps|worker|metrics|events)\b' "$export_deps"; then
  echo "layering: pstrain_export links ZeroMQ, prometheus-cpp or the wire/job/ps/worker libraries:"
  grep -iE 'zmq|prometheus|pstrain_(wire|job|proto|ps|worker|metrics|events)\b' "$export_deps" |
    sed 's/^/  /'
  fail=1
fi
if [ "$fail" -ne 0 ]; then
  echo "layering: FAILED"
  exit 1
fi
echo "layering: ok (includes point one way; library-only build without GoogleTest and Google" \
  "Benchmark; pstrain_kernels and pstrain_checkpoint link neither ZeroMQ nor Protobuf;" \
  "pstrain_export links no ZeroMQ, wire, PS or worker library)"
