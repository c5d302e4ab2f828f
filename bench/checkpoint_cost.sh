#!/usr/bin/env bash
# Issue "Checkpoints and recovery", acceptance: the training slowdown of the CNN job (1 PS + 2
# workers, sync) with a checkpoint every 100 steps against none, measured side by side in
# ROUNDS interleaved runs; prints the medians of examples/s, the slowdown, and the size of one
# checkpoint (the shard with Adam's slots and the index). The write time of one shard alone is
# bench/checkpoint_bench.cc (pstrain_bench_checkpoint).
#   bash bench/checkpoint_cost.sh [rounds (3)] [steps (300)] [pstrain binary (build/cli/pstrain)]
# Output: a table on stdout and JSON in bench/results/checkpoint_cost_cpu.json
# (PSTRAIN_CKPT_JSON overrides). Every run is bounded (timeout 900 s).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
steps=${2:-300}
bin=${3:-$root/build/cli/pstrain}
out_json=${PSTRAIN_CKPT_JSON:-$root/bench/results/checkpoint_cost_cpu.json}
[ -x "$bin" ] || { echo "checkpoint_cost: $bin is not built (scripts/build.sh)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/pstrain_ckpt_cost.XXXXXX")
trap 'rm -rf "$work"' EXIT

eps() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["examples_per_second"])' "$1"; }

none=()
every100=()
ckpt_bytes=0
for r in $(seq 1 "$rounds"); do
  for mode in none every100; do
    d="$work/$mode-$r"
    mkdir -p "$d"
    flags=()
    if [ "$mode" = every100 ]; then
      flags=(--checkpoint_dir "$d/ckpt" --save_checkpoint_steps 100)
    fi
    timeout 900 "$bin" launch --ps 1 --workers 2 --sync_replicas --model cnn --learning_rate 0.001 \
      --train_steps "$steps" --num_gpus 0 --job_dir "$d/job" "${flags[@]}" >"$d/out" 2>&1 ||
      { echo "checkpoint_cost: the job failed:" >&2; tail -20 "$d/out" >&2; exit 1; }
    v=$(eps "$d/job/summary.json")
    if [ "$mode" = none ]; then none+=("$v"); else
      every100+=("$v")
      shard=$(ls "$d/ckpt"/model.ckpt-*.ps-0-of-1.safetensors | tail -1)
      index=${shard%.ps-0-of-1.safetensors}.index.json
      ckpt_bytes=$(( $(stat -c %s "$shard") + $(stat -c %s "$index") ))
    fi
    echo "round $r $mode: $v examples/s" >&2
  done
done

python3 - "$out_json" "$steps" "$ckpt_bytes" "${none[*]}" "${every100[*]}" <<'PY'
import datetime, json, os, statistics, sys
out, steps, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
none = [float(x) for x in sys.argv[4].split()]
every = [float(x) for x in sys.argv[5].split()]
n, e = statistics.median(none), statistics.median(every)
res = {"benchmark": "checkpoint_cost", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
       "job": "launch --ps 1 --workers 2 --sync_replicas --model cnn", "train_steps": steps,
       "examples_per_second_none": none, "examples_per_second_every_100": every,
       "median_none": n, "median_every_100": e, "slowdown": 1 - e / n, "checkpoint_bytes": size}
print(f"no checkpoints: {n:.0f} examples/s; a checkpoint every 100 steps: {e:.0f} "
      f"({100 * (1 - e / n):.1f}% slower); one checkpoint: {size / 1e6:.1f} MB (medians, interleaved)")
with open(out + ".tmp", "w") as f:
    json.dump(res, f, indent=2)
    f.write("\n")
os.replace(out + ".tmp", out)
print("results:", out)
PY
