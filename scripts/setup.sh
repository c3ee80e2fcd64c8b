#!/usr/bin/env bash
# Set up a fresh machine for compress: the Fashion-MNIST Debian package and a venv in .venv.
# Idempotent: re-running only reinstalls when pyproject.toml changed.
# TORCH_SPEC overrides the torch requirement (default: the 2.13.0 CPU build; on machines where
# PyPI's default torch is a CUDA build, set PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "setup: installing Debian package dataset-fashion-mnist"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || echo "setup: apt-get update failed; trying the install anyway"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist \
    || echo "setup: could not install dataset-fashion-mnist; pass --data-dir to commands"
fi

stamp=.venv/.compress-setup
want="$(sha256sum pyproject.toml | cut -c1-16) $TORCH_SPEC"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import compress" 2>/dev/null; then
  exit 0
fi
echo "setup: creating .venv (torch CPU build, onnxruntime, torch-pruning, ...)"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q --disable-pip-version-check "$TORCH_SPEC"
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
echo "$want" > "$stamp"
echo "setup: done (.venv/bin/compress --help)"
