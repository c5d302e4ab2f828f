#!/usr/bin/env bash
# --overlap against --nooverlap (issue "Speed of the distributed path": overlap of
# communication and compute). The same job, 1 PS + 1 worker over loopback TCP with one compute
# thread, once with the worker sending each layer's gradients as soon as backward has produced
# them and once with the whole gradient sent after backward; the two are run interleaved ROUNDS
# times, and the medians of the worker's examples/s and their ratio are printed and written as
# JSON. The CNN is the model where it can pay: backward produces its large dense layer (12.8 MB
# of its 13.1 MB) first and then spends most of its time in the convolutions; the MLP's large
# layer is its first, produced last.
#   bash bench/overlap.sh [rounds (3)] [steps (200)] [pstrain binary (build/cli/pstrain)]
#        [model (cnn)] [extra launch flags ...]
# Output: a table on stdout and bench/results/overlap_<model>_cpu.json (PSTRAIN_OVERLAP_JSON
# overrides). Every run is bounded (timeout 900 s).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
steps=${2:-200}
bin=${3:-$root/build/cli/pstrain}
model=${4:-cnn}
shift $(($# < 4 ? $# : 4))
extra=("$@")
batch=100
out_json=${PSTRAIN_OVERLAP_JSON:-$root/bench/results/overlap_${model}_cpu.json}
[ -x "$bin" ] || { echo "overlap: $bin is not built (scripts/build.sh)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/pstrain_overlap.XXXXXX")
trap 'rm -rf "$work"' EXIT

eps() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["examples_per_second"])' "$1"; }

on=()
off=()
for r in $(seq 1 "$rounds"); do
  for mode in overlap nooverlap; do
    d="$work/$mode-$r"
    mkdir -p "$d"
    echo "overlap: round $r/$rounds, --$mode ($steps steps of the $model) ..." >&2
    timeout 900 "$bin" launch --ps 1 --workers 1 --model "$model" --train_steps "$steps" \
      --batch_size "$batch" --num_gpus 0 --cpu_threads 1 --transport=tcp --"$mode" \
      --job_dir "$d/job" "${extra[@]}" >"$d/launch.out" 2>&1 ||
      { echo "overlap: the job failed, see its output:" >&2; tail -20 "$d/launch.out" >&2; exit 1; }
    if [ "$mode" = overlap ]; then
      grep -q -- "(--overlap)" "$d"/job/stderr-wk-0.txt ||
        { echo "overlap: the worker did not overlap (see $d/job/stderr-wk-0.txt)" >&2; exit 1; }
      on+=("$(eps "$d/job/summary.json")")
    else
      off+=("$(eps "$d/job/summary.json")")
    fi
  done
  echo "overlap: round $r: --overlap ${on[-1]} examples/s, --nooverlap ${off[-1]} examples/s" >&2
done

python3 "$root/bench/overlap_summary.py" "$out_json" overlap "$model, loopback" "${on[*]}" "${off[*]}" \
  model="$model" train_steps="$steps" batch_size="$batch" transport=tcp \
  extra_launch_flags="${extra[*]:-}"
