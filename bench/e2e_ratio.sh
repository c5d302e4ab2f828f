#!/usr/bin/env bash
# Issue "Speed of the distributed path", goal 3: the main job (1 PS + 2 workers, MLP) against
# `pstrain train` with the same global batch on the same cores, measured in one run. For each
# mode (sync: 2 gradients of --batch_size per global step, so `train` uses twice the batch;
# async: each worker's step is its own batch, so `train` uses --batch_size) the two are run
# interleaved ROUNDS times; the medians of examples/s and their ratio are printed, and the
# whole result is written as JSON.
#   bash bench/e2e_ratio.sh [rounds (3)] [steps (2000)] [pstrain binary (build/cli/pstrain)]
#        [extra launch flags, e.g. --secret_file=none or --compress=bf16 ...]
# Output: a table on stdout and bench/results/e2e_cpu.json (PSTRAIN_E2E_JSON overrides).
# Every run is bounded (timeout 600 s).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
steps=${2:-2000}
bin=${3:-$root/build/cli/pstrain}
shift $(($# < 3 ? $# : 3))
extra=("$@")
batch=100
out_json=${PSTRAIN_E2E_JSON:-$root/bench/results/e2e_cpu.json}
[ -x "$bin" ] || { echo "e2e_ratio: $bin is not built (scripts/build.sh)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/pstrain_e2e.XXXXXX")
trap 'rm -rf "$work"' EXIT
cores=$(nproc)

eps() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["examples_per_second"])' "$1"; }

results=()
for mode in sync async; do
  sync_flag=()
  train_batch=$batch
  if [ "$mode" = sync ]; then sync_flag=(--sync_replicas); train_batch=$((2 * batch)); fi
  job_eps=()
  train_eps=()
  for r in $(seq 1 "$rounds"); do
    d="$work/$mode-$r"
    mkdir -p "$d"
    timeout 600 "$bin" launch --ps 1 --workers 2 "${sync_flag[@]}" --model mlp \
      --train_steps "$steps" --batch_size "$batch" --num_gpus 0 --job_dir "$d/job" \
      "${extra[@]}" >"$d/launch.out" 2>&1 ||
      { echo "e2e_ratio: the job failed, see its output:" >&2; tail -20 "$d/launch.out" >&2; exit 1; }
    job_eps+=("$(eps "$d/job/summary.json")")
    # The same number of examples: sync's global steps are 2 batches each; async's global
    # steps count each worker's pushes.
    timeout 600 "$bin" train --model mlp --train_steps "$steps" --batch_size "$train_batch" \
      --num_gpus 0 --cpu_threads "$cores" --summary_json "$d/train.json" \
      >"$d/train.out" 2>&1 ||
      { echo "e2e_ratio: pstrain train failed:" >&2; tail -20 "$d/train.out" >&2; exit 1; }
    train_eps+=("$(eps "$d/train.json")")
    echo "$mode round $r: job ${job_eps[-1]} examples/s, train ${train_eps[-1]} examples/s" >&2
  done
  results+=("$mode:${job_eps[*]}:${train_eps[*]}:$train_batch")
done

python3 - "$out_json" "$steps" "$batch" "$cores" "${extra[*]:-}" "${results[@]}" <<'PY'
import json, statistics, sys, datetime
out, steps, batch, cores, extra = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
res = {"benchmark": "e2e_ratio", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
       "cores": cores, "train_steps": steps, "batch_size": batch, "extra_launch_flags": extra,
       "modes": {}}
print(f"{'mode':6} {'job ex/s':>10} {'train ex/s':>11} {'ratio':>6}  (medians; runs interleaved)")
for item in sys.argv[6:]:
    mode, job, train, train_batch = item.split(":")
    job = [float(x) for x in job.split()]
    train = [float(x) for x in train.split()]
    jm, tm = statistics.median(job), statistics.median(train)
    res["modes"][mode] = {"job_examples_per_second": job, "train_examples_per_second": train,
                          "train_batch_size": int(train_batch),
                          "job_median": jm, "train_median": tm, "ratio": jm / tm}
    print(f"{mode:6} {jm:10.0f} {tm:11.0f} {jm / tm:6.2f}")
tmp = out + ".tmp"
with open(tmp, "w") as f:
    json.dump(res, f, indent=2)
    f.write("\n")
import os
os.replace(tmp, out)
print("results:", out)
PY
