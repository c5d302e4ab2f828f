#!/usr/bin/env bash
# --overlap against --nooverlap over an emulated network link (issue "Speed of the distributed
# path": overlap of communication and compute, where it matters: between machines). The PS
# runs in a network namespace of its own, behind a veth pair whose two ends `tc` (a token
# bucket) limits to RATE; the worker (one, one compute thread) reaches it over TCP through that link. The two
# modes run interleaved ROUNDS times; medians of the worker's examples/s and their ratio are
# printed and written as JSON. Needs root (ip netns, tc); the namespace and the link are
# removed on exit. Nothing leaves the machine (10.213.0.0/24 lives on the veth pair alone).
#   bash bench/overlap_link.sh [rate (1gbit)] [rounds (3)] [steps (30)]
#        [pstrain binary (build/cli/pstrain)] [model (cnn)] [extra worker flags, e.g.
#        --compress=bf16 ...]
# Output: a table on stdout and bench/results/overlap_link_<rate>_<model>_cpu.json
# (PSTRAIN_OVERLAP_JSON overrides). Every run is bounded (timeout 900 s).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rate=${1:-1gbit}
rounds=${2:-3}
steps=${3:-30}
bin=${4:-$root/build/cli/pstrain}
model=${5:-cnn}
shift $(($# < 5 ? $# : 5))
extra=("$@")
out_json=${PSTRAIN_OVERLAP_JSON:-$root/bench/results/overlap_link_${rate}_${model}_cpu.json}
[ -x "$bin" ] || { echo "overlap_link: $bin is not built (scripts/build.sh)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "overlap_link: needs root (ip netns, tc)" >&2; exit 2; }
command -v ip >/dev/null && command -v tc >/dev/null ||
  { echo "overlap_link: needs ip and tc (apt-get install iproute2)" >&2; exit 2; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
work=$(mktemp -d "${TMPDIR:-/tmp}/pstrain_overlap_link.XXXXXX")
ns=pstrain_ovl_$$
host_if=pso$$a
ns_if=pso$$b
cleanup() {
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip link del "$host_if" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip link add "$host_if" type veth peer name "$ns_if"
ip link set "$ns_if" netns "$ns"
ip addr add 10.213.0.1/24 dev "$host_if"
ip link set "$host_if" up
ip netns exec "$ns" ip addr add 10.213.0.2/24 dev "$ns_if"
ip netns exec "$ns" ip link set "$ns_if" up
ip netns exec "$ns" ip link set lo up
# Both directions at RATE (a token bucket: bursts of 256 KB, the veth's 64 KB segments pass
# whole; up to 200 ms queued, beyond which TCP's window paces the sender).
tc qdisc add dev "$host_if" root tbf rate "$rate" burst 256kb latency 200ms
ip netns exec "$ns" tc qdisc add dev "$ns_if" root tbf rate "$rate" burst 256kb latency 200ms

ps_port=$((20000 + RANDOM % 20000))
wk_port=$((ps_port + 1))
common=(--ps_hosts="10.213.0.2:$ps_port" --worker_hosts="10.213.0.1:$wk_port"
        --secret_file=none --heartbeat_timeout_s=120)
on=()
off=()
for r in $(seq 1 "$rounds"); do
  for mode in overlap nooverlap; do
    d="$work/$mode-$r"
    mkdir -p "$d"
    echo "overlap_link: round $r/$rounds, --$mode ($steps steps of the $model over $rate) ..." >&2
    timeout 900 ip netns exec "$ns" "$bin" --job_name=ps --task_index=0 "${common[@]}" \
      >"$d/ps.out" 2>"$d/ps.err" &
    ps_pid=$!
    if ! timeout 900 "$bin" --job_name=worker --task_index=0 "${common[@]}" --model "$model" \
        --train_steps "$steps" --batch_size 100 --num_gpus 0 --cpu_threads 1 \
        --transport=tcp --"$mode" --summary_json "$d/summary.json" "${extra[@]}" \
        >"$d/wk.out" 2>"$d/wk.err"; then
      echo "overlap_link: the worker failed:" >&2; tail -20 "$d/wk.err" >&2
      kill "$ps_pid" 2>/dev/null || true
      exit 1
    fi
    wait "$ps_pid" || { echo "overlap_link: the PS failed:" >&2; tail -20 "$d/ps.err" >&2; exit 1; }
    eps=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["examples_per_second"])' \
      "$d/summary.json")
    if [ "$mode" = overlap ]; then on+=("$eps"); else off+=("$eps"); fi
  done
  echo "overlap_link: round $r: --overlap ${on[-1]} examples/s, --nooverlap ${off[-1]}" >&2
done

python3 "$root/bench/overlap_summary.py" "$out_json" overlap_link "$model, $rate" "${on[*]}" \
  "${off[*]}" model="$model" train_steps="$steps" batch_size=100 link_rate="$rate" transport=tcp \
  extra_worker_flags="${extra[*]:-}"
