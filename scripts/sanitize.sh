#!/usr/bin/env bash
# Builds the CPU code and its tests with sanitizers and runs the unit and integration tests:
#   bash scripts/sanitize.sh address,undefined     (or: thread)
# Build folder: build-san-<name>/. The CUDA backend is left out (nvcc does not take these
# sanitizers, and no GPU test runs on a CPU machine anyway). Debug information is line tables
# only (-g1): the sanitizers' reports name every frame's function, file and line, and the build
# takes about a quarter less time than with -g. The benchmarks are not built: no test runs them,
# and the README's build (scripts/run-tests.sh) compiles them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
san=${1:?usage: scripts/sanitize.sh address,undefined|thread}
build="$root/build-san-${san//,/-}"
# AddressSanitizer's build is optimised at -O1, the level its authors recommend: it compiles in
# half the time of -O2 (the command-line library's files took about 60 s each at -O2), and its
# tests ran no slower (286 s on the 2-core build machine; 336 s at -O2 in the run before, whose
# parity tests took 45 s more). ThreadSanitizer's stays at -O2: its tests are the slowest stage of CI.
opt=-O2
case "$san" in *address*) opt=-O1 ;; esac
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPSTRAIN_CUDA=OFF \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$opt -g1 -DNDEBUG" -DPSTRAIN_SANITIZE="$san" \
  -DPSTRAIN_BUILD_BENCH=OFF
cmake --build "$build" -j "$(nproc)"
bash "$root/scripts/test-venv.sh"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$root/tests/tsan.supp}
cd "$build"
ctest --output-on-failure --timeout 900 -j "$(nproc)" -L "unit|integration"
