#!/usr/bin/env bash
# Whether transparent huge pages for the heap pay: glibc backs what malloc maps with 2 MB pages
# when GLIBC_TUNABLES holds glibc.malloc.hugetlb=1 (glibc >= 2.35, the kernel's THP mode
# "madvise"). pstrain does not set it (no gain beyond the noise was measured:
# docs/benchmarks.md); a user may, for any pstrain process. Interleaved rounds, each setting in
# turn:
#   - push + pull through a PS in its own process (bench/ps_bench's BM_PushPullMerged: TCP,
#     shared memory, the worker's buffers in the segment) at 318 KB, 4 and 40 MB, and memcpy;
#   - the main job (1 PS + 2 workers, sync, MLP) and `pstrain train` with its global batch.
# Prints the medians and their ratio; writes them as JSON (bench/results/huge_pages_cpu.json).
#
#   bash bench/huge_pages.sh [rounds] [job steps] [build dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-5}
steps=${2:-2000}
build=${3:-$root/build}
bench="$build/bench/pstrain_bench_ps"
bin="$build/cli/pstrain"
out_json=${PSTRAIN_HUGE_PAGES_JSON:-$root/bench/results/huge_pages_cpu.json}
for b in "$bench" "$bin"; do
  [ -x "$b" ] || { echo "huge_pages: $b is not built (scripts/build.sh)" >&2; exit 2; }
done
mode=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo "no THP")
case "$mode" in *"[madvise]"*) ;; *)
  echo "huge_pages: the kernel's THP mode is '$mode', not madvise: the tunable changes nothing" >&2
  exit 2 ;;
esac
work=$(mktemp -d "${TMPDIR:-/tmp}/pstrain_huge.XXXXXX")
trap 'rm -rf "$work"' EXIT
filter='BM_PushPullMerged/KB:(318|4000|40000)/chunks:0/curve:0/process:1/via:(0|2|3)/|BM_Memcpy/MB:40'

for r in $(seq 1 "$rounds"); do
  for hp in 1 0; do
    if [ "$hp" = 1 ]; then export GLIBC_TUNABLES=glibc.malloc.hugetlb=1; else unset GLIBC_TUNABLES; fi
    d="$work/r$r-hp$hp"
    mkdir -p "$d"
    timeout 900 "$bench" --benchmark_min_time=0.3 --benchmark_filter="$filter" \
      --benchmark_out="$d/ps.json" --benchmark_out_format=json >"$d/ps.out" 2>&1 ||
      { echo "huge_pages: the benchmark failed:" >&2; tail -20 "$d/ps.out" >&2; exit 1; }
    timeout 600 "$bin" launch --ps 1 --workers 2 --sync_replicas --model mlp \
      --train_steps "$steps" --batch_size 100 --num_gpus 0 --job_dir "$d/job" \
      >"$d/launch.out" 2>&1 ||
      { echo "huge_pages: the job failed:" >&2; tail -20 "$d/launch.out" >&2; exit 1; }
    timeout 600 "$bin" train --model mlp --train_steps "$steps" --batch_size 200 --num_gpus 0 \
      --cpu_threads "$(nproc)" --summary_json "$d/train.json" >"$d/train.out" 2>&1 ||
      { echo "huge_pages: pstrain train failed:" >&2; tail -20 "$d/train.out" >&2; exit 1; }
    echo "round $r, huge pages $hp: done" >&2
  done
done
unset GLIBC_TUNABLES

python3 - "$work" "$rounds" "$steps" "$out_json" <<'PY'
import datetime, json, os, statistics, sys
work, rounds, steps, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
series = {}  # name -> {hp: [values]}
def add(name, hp, v):
    series.setdefault(name, {0: [], 1: []})[hp].append(v)
for r in range(1, rounds + 1):
    for hp in (0, 1):
        d = os.path.join(work, f"r{r}-hp{hp}")
        for b in json.load(open(os.path.join(d, "ps.json")))["benchmarks"]:
            add(b["name"].replace("/real_time", "") + " (GB/s)", hp, b["bytes_per_second"] / 1e9)
        add("main job, sync (examples/s)", hp,
            json.load(open(os.path.join(d, "job", "summary.json")))["examples_per_second"])
        add("pstrain train, batch 200 (examples/s)", hp,
            json.load(open(os.path.join(d, "train.json")))["examples_per_second"])
res = {"benchmark": "huge_pages", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
       "rounds": rounds, "job_steps": steps, "cores": os.cpu_count(), "series": {}}
print(f"{'series':78} {'4 KB pages':>11} {'huge pages':>11} {'ratio':>6}  (medians)")
for name, v in series.items():
    m0, m1 = statistics.median(v[0]), statistics.median(v[1])
    res["series"][name] = {"without": v[0], "with": v[1], "median_without": m0,
                           "median_with": m1, "ratio": m1 / m0}
    print(f"{name:78} {m0:11.2f} {m1:11.2f} {m1 / m0:6.2f}")
tmp = out + ".tmp"
with open(tmp, "w") as f:
    json.dump(res, f, indent=2)
os.replace(tmp, out)
print(f"wrote {out}")
PY
