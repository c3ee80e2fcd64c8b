#!/usr/bin/env bash
# The benchmarks of BENCHMARKS.md in one command (issue #9). Results (JSON, Markdown, reports)
# land in $OUT (runs/bench). Run it on an idle machine: latency figures are ratios measured
# interleaved, but a busy CPU still slows every stage.
#
#   bash scripts/bench.sh          # quick set: ~25 min on 2 idle cores
#   bash scripts/bench.sh full     # + AlexNet/VGG-16 training, the ResNet-50 recipe: ~1 h more
#                                  # on 2 idle cores (one core under load: ~1 h 40 min)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SET=${1:-quick}
case "$SET" in quick | full) ;; *) echo "usage: bash scripts/bench.sh [quick|full]" >&2; exit 2 ;; esac
OUT=${OUT:-runs/bench}
PY=.venv/bin/python
CLI=.venv/bin/compress
mkdir -p "$OUT"
step() { printf '\n=== %s (%s) ===\n' "$1" "$(date -u +%H:%M:%S)"; }

step "5. machine limit: peak GEMM vs ResNet-50 at batch 32"
$PY benchmarks/gemm_peak.py --json "$OUT/gemm.json"

step "4+6. LeNet-5 main recipe: final artifact vs baseline, stage wall times"
$CLI run recipes/lenet5-fashion.yaml --out "$OUT/lenet5" --overwrite
PARENT="$OUT/lenet5/01-train"

step "1. LeNet-5 reference accuracy (recipe train stage)"
$PY benchmarks/reference_accuracy.py --out "$OUT/ref" --models lenet5

step "3. quantization: ours vs onnxruntime quantize_static defaults"
$CLI export --model "$PARENT" --out "$OUT/lenet5-fp32" --overwrite
OMP_NUM_THREADS=1 $PY benchmarks/quantize_compare.py "$OUT/lenet5-fp32" --samples 300 \
    --json "$OUT/quantize-compare.json"

step "2. pruning: torch-pruning's plain recipe vs ours at 2x and 4x MACs"
# ours = the best measured path per target: one cut + KD at 2x, 5 steps with KD at 4x
for red in 2x 4x; do
    steps=1; [ $red = 4x ] && steps=5
    OMP_NUM_THREADS=1 $PY benchmarks/prune_vs_plain.py "$PARENT" --reduction $red --path plain \
        --json "$OUT/pvp-$red-plain.json" >/dev/null
    OMP_NUM_THREADS=1 $PY benchmarks/prune_vs_plain.py "$PARENT" --reduction $red --path ours \
        --criterion l2 --no-global --steps $steps --json "$OUT/pvp-$red-ours.json" >/dev/null
done
$PY - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
print("| reduction | path | MAC red. | val | test |\n|---|---|---:|---:|---:|")
for f in sorted(Path(sys.argv[1]).glob("pvp-*.json")):
    r = json.loads(f.read_text())
    print(f"| {r['reduction']} | {r['path']} | {r['mac_reduction']}x | {r['val']} | {r['test']} |")
EOF

step "4. ResNet-50 224x224 (random weights, speed and size only): prune 0.5 + int8"
R50="--weights random --in-channels 3 --input-size 224 --num-classes 10"
$CLI export --model resnet50 $R50 --out "$OUT/r50-fp32" --overwrite
$CLI prune --model resnet50 $R50 --ratio 0.5 --out "$OUT/r50-p50" --overwrite
$CLI export --model "$OUT/r50-p50" --out "$OUT/r50-p50-fp32" --overwrite
for m in r50-fp32 r50-p50-fp32; do
    $CLI quantize --model "$OUT/$m" --out "$OUT/${m%-fp32}-int8" --samples 100 --overwrite
done
$PY benchmarks/speedup.py fp32="$OUT/r50-fp32" int8="$OUT/r50-int8" \
    pruned="$OUT/r50-p50-fp32" pruned+int8="$OUT/r50-p50-int8" \
    --eager resnet50 $R50 --batch-sizes 1 32 --threads 2 --rounds 7 --runs 10 \
    --json "$OUT/r50-speedup.json"

if [ "$SET" = full ]; then
    step "1. reference accuracy: AlexNet, VGG-16-BN (train stage), ResNet-50 (whole recipe)"
    $PY benchmarks/reference_accuracy.py --out "$OUT/ref" --models resnet50 --full
    $PY benchmarks/reference_accuracy.py --out "$OUT/ref" --models alexnet vgg16
fi
step "done: results in $OUT"
