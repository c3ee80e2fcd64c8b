#!/usr/bin/env bash
# The main job: set up (if needed), then run the LeNet-5 recipe on Fashion-MNIST
# (train → prune → distill → int8 quantize → bench → deploy). The report lands in $OUT (runs/lenet5-fashion).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${OUT:-runs/lenet5-fashion}
.venv/bin/compress run recipes/lenet5-fashion.yaml --out "$OUT" --overwrite "$@"
