#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, clang, ASan + UBSan) and runs each a bounded number
# of executions on a copy of its seed corpus (tests/fuzz/corpus/<target>/):
#   bash scripts/fuzz.sh
# Build folder: build-fuzz/ (PSTRAIN_FUZZ_BUILD overrides it). Executions: FUZZ_DECODE_RUNS
# (default 1,000,000) for fuzz_decode, FUZZ_HANDLER_RUNS (default 200,000, about 2 minutes on
# a 2-core machine) for fuzz_ps_handler; FUZZ_MAX_TIME (seconds per target, default 240) is a safety
# bound. Prints each target's executions, exec/s and libFuzzer's coverage (cov: edges, ft:
# features); exits non-zero on a crash, a leak, a timeout or a sanitizer report (the reproducer
# is under <build>/fuzz-artifacts/; replay it with `<build>/tests/fuzz/<target> <file>`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${PSTRAIN_FUZZ_BUILD:-$root/build-fuzz}
decode_runs=${FUZZ_DECODE_RUNS:-1000000}
handler_runs=${FUZZ_HANDLER_RUNS:-200000}
max_time=${FUZZ_MAX_TIME:-240}

if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz: clang++ not found; install clang and libclang-rt-14-dev (scripts/setup.sh)" >&2
  exit 1
fi
# -O1 (libFuzzer's usual level, and a quicker build of the Eigen kernels than -O3) with
# line tables for the reports (PSTRAIN_FUZZ adds them); only the fuzz targets and what they link.
cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" -DPSTRAIN_FUZZ=ON -DPSTRAIN_CUDA=OFF \
  -DPSTRAIN_BUILD_TESTS=OFF -DPSTRAIN_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target fuzz_decode fuzz_ps_handler

artifacts="$build/fuzz-artifacts"
mkdir -p "$artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0

# run_target <target> <runs> [libFuzzer flags...]
run_target() {
  local target=$1 runs=$2
  shift 2
  local work log rc
  work=$(mktemp -d)
  cp "$root/tests/fuzz/corpus/$target/"* "$work/"
  log="$build/fuzz-$target.log"
  echo "fuzz: $target: $runs executions (at most ${max_time} s) on a copy of" \
    "tests/fuzz/corpus/$target/ ($(ls "$work" | wc -l) seeds); log: $log"
  set +e
  "$build/tests/fuzz/$target" -runs="$runs" -max_total_time="$max_time" -timeout=60 \
    -rss_limit_mb=4096 -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$target-" "$@" "$work" >"$log" 2>&1
  rc=$?
  set -e
  rm -rf "$work"
  # The last status line ("#1000000 DONE cov: 512 ft: 1803 corp: ... exec/s: 9000 ...") and
  # the final stats.
  grep -E '^#[0-9]+' "$log" | tail -n 1 || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
  if [ "$rc" -ne 0 ]; then
    echo "fuzz: $target FAILED (exit $rc); the end of its log:" >&2
    tail -n 60 "$log" >&2
    ls -l "$artifacts" >&2
    failed=1
    return
  fi
  local executed
  executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if [ -n "$executed" ] && [ "$executed" -lt "$runs" ]; then
    echo "fuzz: $target: note: the ${max_time} s bound stopped it after $executed of $runs" \
      "executions (a slow or loaded machine)"
  fi
}

run_target fuzz_decode "$decode_runs"
# The server's thread allocates while an input runs, so libFuzzer's per-input leak check (which
# runs LeakSanitizer whenever an input's mallocs and frees differ) would fire on nearly every
# input and slow the target ten-fold; leaks are still checked once, when the process exits.
run_target fuzz_ps_handler "$handler_runs" -detect_leaks=0
if [ "$failed" -ne 0 ]; then
  echo "fuzz: FAILED (a finding: see above)" >&2
  exit 1
fi
echo "fuzz: passed"
