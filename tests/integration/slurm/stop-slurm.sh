#!/usr/bin/env bash
# Stops what start-slurm.sh DIR started (slurmd, slurmctld, munged), each by the pid in its pid
# file: SIGTERM to all, then SIGKILL to any still running after 10 s. Never fails.
dir=${1:?usage: stop-slurm.sh DIR}
pids=()
for pidfile in "$dir"/slurmd.pid "$dir"/slurmctld.pid "$dir"/munge/munged.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile" 2>/dev/null) || continue
  [[ "$pid" =~ ^[0-9]+$ ]] || continue
  kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
done
for _ in $(seq 1 100); do
  alive=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ "$alive" -eq 0 ] && exit 0
  sleep 0.1
done
for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
exit 0
