#!/usr/bin/env bash
# The GPU check, for a GPU machine with no package access (the `device` machine):
#   1. the `gpu` tests: CUDA against the CPU reference for every op, and a few training steps
#      of both models whose losses must match the CPU's;
#   2. `pstrain train` of the MLP (3000 steps) and the CNN (2000 steps) on the GPU, with test
#      accuracy;
#   3. `pstrain launch` with 1 PS + 2 workers (sync) on the GPU;
#   4. the train step (MLP and CNN, batch 100 and 512) against PyTorch eager on the same GPU;
# then prints one table (scripts/gpu_check_report.py). Needs the folder that
# scripts/gpu-carry.sh made (default .carry/). Results go to $OUT (or ./gpu-check-out):
# report.json and gpu-check.tar.gz with every log.
# Exit: 0 all passed, 1 a stage failed, 3 this machine cannot run the check (no GPU, no carry).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
carry=${PSTRAIN_CARRY:-$root/.carry}
dest=${OUT:-$root/gpu-check-out}
work=$(mktemp -d)
mkdir -p "$dest"

cannot() {
  echo "gpu-check: cannot run here: $*" >&2
  exit 3
}
[ -x "$carry/bin/pstrain" ] ||
  cannot "no carried build at $carry (run scripts/gpu-carry.sh on the build machine first)"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  cannot "no NVIDIA GPU is visible (nvidia-smi is missing or failed); run this on a GPU machine"
fi
system_ld_path=${LD_LIBRARY_PATH:-}
export LD_LIBRARY_PATH="$carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ! ldconfig -p 2>/dev/null | grep -q 'libcublas.so.13'; then
  pycublas=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2>/dev/null || true)
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib $pycublas; do
    if [ -e "$d/libcublas.so.13" ]; then
      export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
      break
    fi
  done
fi
if ldd "$carry/bin/pstrain" | grep -q "not found"; then
  ldd "$carry/bin/pstrain" | grep "not found" >&2
  cannot "shared libraries are missing (see above)"
fi

failed=()
run() {  # run NAME TIMEOUT_S CMD... ; output to $work/NAME.log
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$work/$name.log" 2>&1
  local rc=$?
  printf 'gpu-check: %-14s rc=%-3d %4ds\n' "$name" "$rc" $((SECONDS - t0))
  [ "$rc" -eq 0 ] || failed+=("$name")
  return 0
}

nvidia-smi -L | tee "$work/gpu.txt"
"$carry/bin/pstrain" --version | tee "$work/version.txt"
data=(--data_dir "$carry/data")
run parity 240 "$carry/bin/cuda_parity_test"
run train_parity 120 "$carry/bin/cuda_train_parity_test"
run train_mlp 180 "$carry/bin/pstrain" train --model mlp --num_gpus 1 --train_steps 3000 \
  "${data[@]}" --summary_json "$work/train_mlp.json"
run train_cnn 240 "$carry/bin/pstrain" train --model cnn --num_gpus 1 --train_steps 2000 --learning_rate 0.001 \
  "${data[@]}" --summary_json "$work/train_cnn.json"
run launch 240 "$carry/bin/pstrain" launch --ps 1 --workers 2 --sync_replicas --num_gpus 1 \
  --train_steps 1000 "${data[@]}" --job_dir "$work/job"
run step_bench 240 "$carry/bin/pstrain_bench_step" --benchmark_filter='gpu:1' \
  --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
  --benchmark_out="$work/step.json" --benchmark_out_format=json
run torch_step 300 env LD_LIBRARY_PATH="$system_ld_path" python3 "$root/bench/torch_step.py"

cp "$work/parity.log" "$work/parity.txt"
cp "$work/train_parity.log" "$work/train_parity.txt"
grep '^{' "$work/torch_step.log" >"$work/torch.jsonl" || true
[ -f "$carry/cpu_reference.json" ] && cp "$carry/cpu_reference.json" "$work/"
python3 "$root/scripts/gpu_check_report.py" "$work"
cp "$work/report.json" "$dest/" 2>/dev/null
tar czf "$dest/gpu-check.tar.gz" -C "$work" .
if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu-check: FAILED stages: ${failed[*]} (logs in $dest/gpu-check.tar.gz)"
  for f in "${failed[@]}"; do
    echo "--- last lines of $f.log"
    tail -n 15 "$work/$f.log"
  done
  exit 1
fi
echo "gpu-check: all stages passed"
