"""Prune a trained LeNet-5 artifact layer-wise, recover with KD, print params and accuracy.

    OMP_NUM_THREADS=1 python benchmarks/lenet5_prune_tradeoff.py PARENT_ARTIFACT CONFIG [KD_EPOCHS]

CONFIG is one of the names below. Used for the main recipe's choice (BENCHMARKS.md).
"""

from __future__ import annotations

import copy
import sys
import time

import torch

from compress.distillation.distill import DistillConfig, distill
from compress.models.artifacts.artifact import load_model
from compress.models.data.datasets import DataConfig, load_data
from compress.pruning.prune import PruneConfig, prune
from compress.training.evaluate import evaluate, torch_predictor
from compress.training.fit import TrainConfig

CONFIGS = {
    "uniform50": PruneConfig(ratio=0.5),
    "layers-a": PruneConfig(layer_ratios={"conv2": 0.5, "fc1": 0.6, "fc2": 0.5}, round_to=None),
    "layers-b": PruneConfig(layer_ratios={"conv2": 0.375, "fc1": 0.65, "fc2": 0.5}, round_to=None),
    "layers-c": PruneConfig(layer_ratios={"conv2": 0.25, "fc1": 0.6, "fc2": 0.5}, round_to=None),
}


def main(parent: str, name: str, epochs: int = 10) -> None:
    torch.set_num_threads(1)
    teacher, _ = load_model(parent)
    data = load_data(DataConfig(), teacher.spec)  # type: ignore[arg-type]

    def acc(m: torch.nn.Module, split: str) -> float:
        return evaluate(torch_predictor(m), data.loader(split), 10).top1

    student = copy.deepcopy(teacher)
    t = time.time()
    prune(student, CONFIGS[name])
    params = sum(p.numel() for p in student.parameters())
    pruned = acc(student, "val")
    kd = DistillConfig(epochs=epochs, temperature=4.0, alpha=0.7)
    distill(student, teacher, data, kd, TrainConfig(epochs=epochs))
    print(
        f"{name}: {params} params; val after prune {pruned:.4f}; after KD{epochs} "
        f"val {acc(student, 'val'):.4f} test {acc(student, 'test'):.4f} "
        f"(parent test {acc(teacher, 'test'):.4f}); {time.time() - t:.0f} s"
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 10)
