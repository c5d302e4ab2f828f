#!/usr/bin/env bash
# Creates the Python virtual environment the tests use to read pstrain's outputs with the tools
# their users read them with (safetensors, TensorBoard, onnxruntime). Idempotent: an existing venv that
# already has every package is left alone, and pip is not called. One venv serves every build
# folder (the CUDA build and the sanitizer builds alike):
#   venv: ${PSTRAIN_VENV:-<repo>/build-venv}
# Needs python3-venv and python3-pip (scripts/setup.sh) and, the first time, PyPI.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${PSTRAIN_VENV:-$root/build-venv}

# One line per package: the pip name, then the module to import to check it is there.
python_packages=(
  "safetensors safetensors"
  "numpy numpy"
  "tensorboard tensorboard"
  "onnxruntime onnxruntime"
  "pillow PIL"
)

if [ ! -x "$venv/bin/python" ]; then
  echo "test-venv: creating $venv"
  python3 -m venv "$venv"
fi
missing=()
for entry in "${python_packages[@]}"; do
  read -r pkg module <<<"$entry"
  if ! "$venv/bin/python" -c "import $module" >/dev/null 2>&1; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "test-venv: $venv has every package (${#python_packages[@]})"
  exit 0
fi
echo "test-venv: installing ${missing[*]} into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
echo "test-venv: done"
