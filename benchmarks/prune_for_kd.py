"""Prune a trained artifact's channels with torch-pruning (L2 magnitude, uniform, head kept)
and save the pruned artifact, for the distillation-vs-fine-tuning benchmark.

Usage: python benchmarks/prune_for_kd.py DENSE_ARTIFACT RATIO OUT
(The toolkit's own `compress prune` is the user-facing way; this keeps the benchmark
independent of it.)
"""

from __future__ import annotations

import sys

import torch

from compress.models.artifacts.artifact import load_model, save_model
from compress.models.zoo.registry import spec_of


def main(src: str, ratio: float, out: str) -> None:
    import torch_pruning as tp

    model, card = load_model(src)
    spec = spec_of(model)
    head = dict(model.named_modules())[spec.classifier]
    before = sum(p.numel() for p in model.parameters())
    tp.pruner.MetaPruner(
        model,
        torch.randn(1, *spec.input_shape),
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ratio,
        ignored_layers=[head],
    ).step()
    after = sum(p.numel() for p in model.parameters())
    card.add_history("prune", ratio=ratio, importance="l2-magnitude", tool="torch-pruning")
    card.metrics = {}
    save_model(model, out, card, overwrite=True)
    print(f"{src} -> {out}: {before:,} -> {after:,} params ({ratio:.0%} channels)")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3])
