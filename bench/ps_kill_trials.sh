#!/usr/bin/env bash
# Issue "Checkpoints and recovery", acceptance: N trials of 1 PS + 2 workers (sync, MLP, 3000
# steps, a checkpoint every 200 steps) in which the PS is killed with SIGKILL at a random
# moment and started again 2 s later with the same command line. Each trial records whether
# the job finished, the chief's test accuracy, the global step at the kill, the step the
# restarted PS resumed from, and the steps redone; one undisturbed run gives the reference
# accuracy. Prints one JSON object per trial and a summary object (JSON lines) on stdout.
#   bash bench/ps_kill_trials.sh [trials (10)] [pstrain binary (build/cli/pstrain)]
# Every wait is bounded (a trial that does not finish in 300 s counts as failed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
trials=${1:-10}
bin=${2:-$root/build/cli/pstrain}
steps=3000
interval=200
[ -x "$bin" ] || { echo "ps_kill_trials: $bin is not built (scripts/build.sh)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/pstrain_ps_kill.XXXXXX")
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run_trial NAME KILL(0/1): prints "finished accuracy kill_step resumed_step"
run_trial() {
  local name=$1 kill=$2 d="$work/$1"
  mkdir -p "$d/ckpt"
  local p0 p1 p2
  p0=$(free_port); p1=$(free_port); p2=$(free_port)
  local flags=(--ps_hosts=127.0.0.1:$p0 --worker_hosts=127.0.0.1:$p1,127.0.0.1:$p2
               --sync_replicas --train_steps=$steps --num_gpus=0 --cpu_threads=1
               --checkpoint_dir="$d/ckpt" --save_checkpoint_steps=$interval
               --heartbeat_timeout_s=10 --log_every=10)
  "$bin" --job_name=ps --task_index=0 "${flags[@]}" >"$d/ps.out" 2>"$d/ps.err" &
  local ps=$!
  "$bin" --job_name=worker --task_index=0 "${flags[@]}" >"$d/wk0.out" 2>"$d/wk0.err" &
  local w0=$!
  "$bin" --job_name=worker --task_index=1 "${flags[@]}" >"$d/wk1.out" 2>"$d/wk1.err" &
  local w1=$!
  local kill_step=-1 resumed=-1
  if [ "$kill" = 1 ]; then
    # A random global step between 300 and 2700, seen in the chief's lines.
    local target=$((300 + RANDOM % 2400)) t=0 g=0
    while [ $t -lt 3000 ]; do
      g=$(grep -o 'global step: [0-9]*' "$d/wk0.out" 2>/dev/null | tail -1 | grep -o '[0-9]*$' || echo 0)
      [ "${g:-0}" -ge $target ] && break
      sleep 0.05; t=$((t + 1))
    done
    kill -9 $ps; wait $ps 2>/dev/null || true
    kill_step=$(grep -o 'global step: [0-9]*' "$d/wk0.out" | tail -1 | grep -o '[0-9]*$')
    sleep 2
    "$bin" --job_name=ps --task_index=0 "${flags[@]}" >"$d/ps2.out" 2>"$d/ps2.err" &
    ps=$!
  fi
  local finished=1
  for pid in $w0 $w1 $ps; do
    local t=0
    while kill -0 $pid 2>/dev/null && [ $t -lt 3000 ]; do sleep 0.1; t=$((t + 1)); done
    if kill -0 $pid 2>/dev/null; then kill -9 $pid; finished=0; fi
    wait $pid 2>/dev/null || finished=0
  done
  if [ "$kill" = 1 ]; then
    resumed=$(grep -o 'resumed from .* at global step [0-9]*' "$d/ps2.err" | grep -o '[0-9]*$' || echo -1)
  fi
  local acc
  acc=$(grep -o 'test accuracy = [0-9.]*' "$d/wk0.out" | tail -1 | grep -o '[0-9.]*$' || echo null)
  echo "$finished ${acc:-null} $kill_step ${resumed:--1}"
}

read -r ref_ok ref_acc _ _ < <(run_trial reference 0)
echo "{\"trial\": \"reference\", \"finished\": $ref_ok, \"test_accuracy\": $ref_acc}"
ok=0 worst_gap=0 worst_redo=0
for i in $(seq 1 "$trials"); do
  read -r fin acc ks rs < <(run_trial "trial-$i" 1)
  redo=$((ks - rs))
  gap=$(python3 -c "print(round(abs($ref_acc - ${acc/null/0}) * 100, 2))")
  echo "{\"trial\": $i, \"finished\": $fin, \"test_accuracy\": $acc, \"killed_at_step\": $ks, \"resumed_from_step\": $rs, \"steps_redone\": $redo, \"accuracy_gap_points\": $gap}"
  [ "$fin" = 1 ] && [ "$rs" -ge 0 ] && ok=$((ok + 1))
  worst_redo=$(( redo > worst_redo ? redo : worst_redo ))
  worst_gap=$(python3 -c "print(max($worst_gap, $gap))")
done
echo "{\"summary\": true, \"trials\": $trials, \"finished\": $ok, \"reference_accuracy\": $ref_acc, \"worst_accuracy_gap_points\": $worst_gap, \"most_steps_redone\": $worst_redo, \"checkpoint_interval\": $interval}"
