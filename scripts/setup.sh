#!/usr/bin/env bash
# Installs what pstrain needs to build, test and run, from Debian's archive only.
# Idempotent: packages already installed are skipped, and apt-get is not called at all
# when nothing is missing. Needs root (or sudo) only when something must be installed.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake make pkg-config
  # libraries
  libeigen3-dev libzmq3-dev cppzmq-dev libprotobuf-dev protobuf-compiler
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev zlib1g-dev
  # Prometheus metrics (--metrics_port), the man page (help2man, at build time), and the HTTP
  # client the metrics test scrapes with
  prometheus-cpp-dev help2man curl
  # PNG input of `pstrain predict`
  libpng-dev
  # the job secret's key derivation (--secret_file, docs/security.md)
  libsodium-dev
  # libFuzzer targets (scripts/fuzz.sh, tests/fuzz): clang and its sanitizer/fuzzer runtimes
  clang libclang-rt-14-dev
  # oneDNN for the CPU convolution (optional at build time: PSTRAIN_ONEDNN); Debian's oneDNN
  # is built with an OpenCL GPU runtime, so its CMake config needs the OpenCL loader (only a
  # "Recommends" of libdnnl-dev, which --no-install-recommends leaves out)
  libdnnl-dev ocl-icd-opencl-dev
  # data: Fashion-MNIST as IDX files under /usr/share/datasets/fashion-mnist
  dataset-fashion-mnist
  # schedulers the integration tests launch with (mpirun; Slurm's daemons and srun/sbatch)
  openmpi-bin slurm-wlm munge
  # tests: a venv for the Python readers of our outputs (scripts/test-venv.sh: safetensors)
  python3-venv python3-pip
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
  else
    echo "setup: missing packages (${missing[*]}) and not root; run as root or install them" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
