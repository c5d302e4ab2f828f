#!/usr/bin/env bash
# The CPU train step of pstrain (bench/step_bench.cc, BM_Step .../gpu:0) and of TensorFlow
# (bench/tf_step.py, tf.function with oneDNN) on the same models, batches and thread count,
# interleaved round by round on this machine; prints each round and writes the medians as JSON.
#
#   bash bench/cpu_step_vs_tf.sh TF_PYTHON [ROUNDS] [BUILD_DIR]
#
# TF_PYTHON: a Python with TensorFlow (python3 -m venv /tmp/tfvenv &&
# /tmp/tfvenv/bin/pip install tensorflow-cpu); ROUNDS: 3; BUILD_DIR: build. Both sides use
# every core (pstrain's CPU backend does by default; TensorFlow gets --threads $(nproc)).
# Output: bench/results/cpu_step_vs_tf.json.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tf_python=${1:?usage: bash bench/cpu_step_vs_tf.sh TF_PYTHON [ROUNDS] [BUILD_DIR]}
rounds=${2:-3}
build=${3:-$root/build}
bench="$build/bench/pstrain_bench_step"
[ -x "$bench" ] || { echo "cpu_step_vs_tf: $bench is missing: build the project first" >&2; exit 2; }
"$tf_python" -c 'import tensorflow' 2>/dev/null ||
  { echo "cpu_step_vs_tf: $tf_python cannot import tensorflow (see the header)" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq 1 "$rounds"); do
  echo "round $r of $rounds: pstrain" >&2
  "$bench" --benchmark_filter='BM_Step/(mlp|cnn)/batch:(100|512)/gpu:0' \
    --benchmark_min_time=0.3 --benchmark_format=json > "$out/pstrain-$r.json"
  echo "round $r of $rounds: tensorflow" >&2
  "$tf_python" "$root/bench/tf_step.py" --threads "$(nproc)" > "$out/tf-$r.jsonl" 2> "$out/tf-$r.err" ||
    { cat "$out/tf-$r.err" >&2; exit 1; }
done
mkdir -p "$root/bench/results"
python3 - "$out" "$rounds" "$root/bench/results/cpu_step_vs_tf.json" "$(nproc)" <<'EOF'
import json, re, statistics, sys
out, rounds, dest, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
runs = {}
for r in range(1, rounds + 1):
    for b in json.load(open(f"{out}/pstrain-{r}.json"))["benchmarks"]:
        m = re.match(r"BM_Step/(\w+)/batch:(\d+)/gpu:0", b["name"])
        if not m or b.get("run_type", "iteration") != "iteration":
            continue
        ms = b["step_ms"]  # one iteration is 10 steps; this counter is the time of one
        runs.setdefault((m[1], int(m[2])), {}).setdefault("pstrain", []).append(ms)
    for line in open(f"{out}/tf-{r}.jsonl"):
        t = json.loads(line)
        runs.setdefault((t["model"], t["batch"]), {}).setdefault("tensorflow", []).append(t["step_ms"])
rows = []
for (model, batch), v in sorted(runs.items()):
    p, t = statistics.median(v.get("pstrain", [0])), statistics.median(v.get("tensorflow", [0]))
    rows.append({"model": model, "batch": batch, "threads": threads, "pstrain_ms": round(p, 3),
                 "tensorflow_ms": round(t, 3), "pstrain_speedup": round(t / p, 3) if p else None,
                 "pstrain_runs_ms": [round(x, 3) for x in v.get("pstrain", [])],
                 "tensorflow_runs_ms": [round(x, 3) for x in v.get("tensorflow", [])]})
    print(f"{model} batch {batch}: pstrain {p:.2f} ms, tensorflow {t:.2f} ms "
          f"(pstrain {t / p:.2f}x)" if p else f"{model} batch {batch}: no pstrain figure")
json.dump({"rounds": rounds, "rows": rows}, open(dest, "w"), indent=1)
print(f"wrote {dest}")
EOF
