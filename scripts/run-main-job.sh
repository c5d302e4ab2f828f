#!/usr/bin/env bash
# The main job: sets up (installs missing Debian packages), builds, and runs a distributed
# training job on this machine: 1 parameter server + 2 workers, synchronous, the MLP on
# Fashion-MNIST (pstrain launch). Extra arguments go to `pstrain launch`, e.g.
#   bash scripts/run-main-job.sh --train_steps 5000 --model cnn
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
bash "$root/scripts/build.sh"
# Use the GPU where there is one (worker i takes GPU i % num_gpus); the CPU otherwise.
gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
cd "$root"
exec "${PSTRAIN_BUILD_DIR:-$root/build}/cli/pstrain" launch --ps 1 --workers 2 --sync_replicas \
  --model mlp --train_steps 3000 --num_gpus "$gpus" "$@"
