#!/usr/bin/env bash
# The main job: set up (if needed), then train and evaluate LeNet-5 on Fashion-MNIST.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${OUT:-runs/lenet5}
.venv/bin/compress train --model lenet5 --out "$OUT" --overwrite
.venv/bin/compress eval --model "$OUT"
