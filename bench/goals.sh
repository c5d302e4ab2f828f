#!/usr/bin/env bash
# Where the goals of the issue "Speed of the distributed path" stand on this machine, measured
# in one run (docs/benchmarks.md, "The speed goals in one run"):
#   1. push + pull through a PS in its own process over loopback TCP, as a worker's round trip
#      goes by default (BM_PushPullReplyParts/parts:1: striped push, reply in parts): at least
#      1.5 GB/s at 318 KB and 2.5 GB/s at 4 and 40 MB; raw ZeroMQ's echo over one connection is
#      measured in the same rounds as the yardstick;
#   2. the same through shared memory with the worker's buffers in the segment, as a CPU
#      worker of a one-PS job on the PS's machine runs (BM_PushPullMerged/.../via:3): at least
#      0.6x memcpy of 40 MB, measured in the same rounds;
#   3. the main job (1 PS + 2 workers, MLP, launch's defaults: job secret, --transport=auto)
#      against `pstrain train` with the same global batch (bench/e2e_ratio.sh), sync and
#      async: at least 0.8x;
#   4. the main job's test accuracy with --compress=bf16 and --compress=fp16 against float32,
#      mean over seeds: within 0.5 point. (The halving of the pushed bytes is asserted by
#      tests/integration/compress_test.cc from the workers' byte counters.)
# Goal 5 is these benchmarks themselves.
#   bash bench/goals.sh [rounds (3)] [build dir (build)] [seeds (5)] [steps of goal 4 (3000)]
# Output: each round's figures as they come (stderr), a table of target, median and verdict
# (stdout), and bench/results/goals_cpu.json (PSTRAIN_GOALS_JSON overrides). Every run is
# bounded (timeout 600 s). Keep the machine otherwise quiet: the figures are medians of
# rounds, and on 2 cores anything else running moves them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
build=${2:-$root/build}
seeds=${3:-5}
steps=${4:-3000}
out_json=${PSTRAIN_GOALS_JSON:-$root/bench/results/goals_cpu.json}
bench_ps=$build/bench/pstrain_bench_ps
bin=$build/cli/pstrain
for f in "$bench_ps" "$bin"; do
  [ -x "$f" ] || { echo "goals: $f is not built (bash scripts/build.sh)" >&2; exit 2; }
done
for n in "$rounds" "$seeds" "$steps"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "goals: '$n' is not a positive count" >&2; exit 2; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/pstrain_goals.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Goals 1 and 2: the push + pull series, one process per round (the rounds interleave the
# series; within a round each runs for at least 0.3 s).
filter='BM_PushPullReplyParts/KB:(318|4000|40000)/parts:1/'
filter+='|BM_PushPullMerged/KB:40000/chunks:0/curve:0/process:1/via:3/'
filter+='|BM_RawZmq/KB:(318|4000|40000)/curve:0/ipc:0/conns:1/'
filter+='|BM_Memcpy/MB:40$'
for r in $(seq 1 "$rounds"); do
  echo "goals: push + pull, round $r of $rounds" >&2
  timeout 600 "$bench_ps" --benchmark_min_time=0.3 --benchmark_filter="$filter" \
    --benchmark_format=json >"$work/ps-$r.json" 2>"$work/ps-$r.err" ||
    { echo "goals: pstrain_bench_ps failed:" >&2; tail -20 "$work/ps-$r.err" >&2; exit 1; }
done

# Goal 3: bench/e2e_ratio.sh, which interleaves the job and `pstrain train` itself.
echo "goals: the main job against pstrain train, $rounds rounds" >&2
PSTRAIN_E2E_JSON=$work/e2e.json bash "$root/bench/e2e_ratio.sh" "$rounds" 2000 "$bin" \
  >"$work/e2e.out"

# Goal 4: the main job with each --compress, seed by seed (runs with the same flags give the
# same accuracy, so one run per seed and format).
acc=()
for seed in $(seq 1 "$seeds"); do
  for c in none bf16 fp16; do
    d=$work/compress-$c-$seed
    timeout 600 "$bin" launch --ps 1 --workers 2 --sync_replicas --model mlp \
      --train_steps "$steps" --num_gpus 0 --seed "$seed" --compress "$c" --job_dir "$d" \
      >"$d.out" 2>&1 ||
      { echo "goals: the job with --compress=$c failed:" >&2; tail -20 "$d.out" >&2; exit 1; }
    a=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["test_accuracy"])' \
      "$d/summary.json")
    echo "goals: --compress=$c --seed $seed: test accuracy $a" >&2
    acc+=("$c:$seed:$a")
  done
done

python3 "$root/bench/goals_summary.py" "$out_json" "$work" "$rounds" "$steps" "${acc[@]}"
