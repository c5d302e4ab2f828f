#!/usr/bin/env bash
# The CPU reference figures: `pstrain train` of the MLP (mnist_replica's hyper-parameters,
# 3000 steps) and of the CNN (Adam lr 0.001, 2000 steps) on this machine's CPU, written to
# bench/results/cpu_reference.json (scripts/gpu-carry.sh carries it so the GPU check can print
# the two side by side). Takes several minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pstrain=${PSTRAIN_BUILD_DIR:-$root/build}/cli/pstrain
out=$root/bench/results
mkdir -p "$out"
tmp=$(mktemp -d)
"$pstrain" train --num_gpus 0 --model mlp --train_steps 3000 --summary_json "$tmp/mlp.json"
"$pstrain" train --num_gpus 0 --model cnn --train_steps 2000 --learning_rate 0.001 \
  --summary_json "$tmp/cnn.json"
python3 - "$tmp" "$out/cpu_reference.json" <<'PY'
import json, sys, os
d, dest = sys.argv[1], sys.argv[2]
ref = {name: json.load(open(os.path.join(d, name + ".json"))) for name in ("mlp", "cnn")}
tmp = dest + ".tmp"
with open(tmp, "w") as f:
    json.dump(ref, f, indent=2)
os.replace(tmp, dest)
print("wrote", dest)
PY
rm -rf "$tmp"
