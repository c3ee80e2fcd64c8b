"""Plain torch-pruning recipe vs the toolkit's best pruning path, at equal MACs (issue #9).

plain: L2 magnitude, one uniform ratio for every layer (searched to hit the MAC target),
       then plain cross-entropy fine-tuning.
ours:  a better criterion (default lamp), global ranking, then KD fine-tuning from the dense
       parent (compress.distillation.distill, T=2, alpha=0.5). --steps N prunes in N increments with
       epochs/N of KD fine-tuning after each (iterative pruning); --from-sensitivity takes
       per-layer ratios from a `compress sensitivity` report (largest ratio within --max-drop).
Both get the same fine-tuning budget (--epochs) with the same optimizer settings.

Usage: OMP_NUM_THREADS=1 python benchmarks/prune_vs_plain.py /tmp/m1/01-train \
           --reduction 2x --path plain --epochs 5 --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import replace
from typing import Any

import torch

from compress.distillation.distill import DistillConfig, distill
from compress.pruning.config import PruneConfig, load_report, ratios_from_sensitivity
from compress.pruning.flops import count_ops
from compress.pruning.latency import LatencyConfig, measure_latency
from compress.pruning.prune import prune
from compress.training.evaluate import evaluate, torch_predictor
from compress.training.fit import SilentHooks, TrainConfig, fit
from models.artifact import load_model
from models.data import DataConfig, load_data
from models.registry import spec_of


def _accuracy(model: torch.nn.Module, data: Any, split: str) -> float:
    res = evaluate(torch_predictor(model), data.loader(split), spec_of(model).num_classes)
    return round(100 * res.top1, 2)


def _prune_config(args: argparse.Namespace) -> PruneConfig:
    if args.path == "plain":
        return PruneConfig(target_macs=args.reduction, criterion="l2", round_to=None)
    if args.from_sensitivity:
        report = load_report(args.from_sensitivity)
        ratios = ratios_from_sensitivity(report, args.max_drop / 100)
        return PruneConfig(
            layer_ratios=ratios, criterion=args.criterion, steps=args.steps, round_to=None
        )
    if args.layer_ratios:
        ratios = {k: float(v) for k, v in (kv.split("=") for kv in args.layer_ratios.split(","))}
        return PruneConfig(
            layer_ratios=ratios, criterion=args.criterion, steps=args.steps, round_to=None
        )
    return PruneConfig(
        steps=args.steps,
        target_macs=args.reduction,
        criterion=args.criterion,
        global_pruning=args.global_pruning,
        max_layer_ratio=args.max_layer_ratio,
        round_to=None,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    parent, _ = load_model(args.parent)
    data = load_data(DataConfig(seed=args.seed), spec_of(parent))
    dense = count_ops(parent)
    model = copy.deepcopy(parent)
    cfg = _prune_config(args)
    tcfg = TrainConfig(epochs=args.epochs, lr=args.lr, schedule="cosine", seed=args.seed)

    def kd(m: torch.nn.Module, epochs: int) -> None:
        dcfg = DistillConfig(epochs=epochs, temperature=2.0, alpha=0.5)
        distill(m, parent, data, dcfg, replace(tcfg, epochs=epochs), hooks=SilentHooks())

    if args.path == "ours" and args.steps > 1:
        if args.epochs % args.steps:
            raise SystemExit("--epochs must be a multiple of --steps")
        cfg = replace(cfg, finetune_epochs=args.epochs // args.steps)
    t0 = time.perf_counter()
    pres = prune(model, cfg, data=data, finetune=kd if cfg.finetune_epochs else None)
    prune_s = time.perf_counter() - t0 - pres.finetune_seconds
    after_prune = {"val": _accuracy(model, data, "val")}
    t0 = time.perf_counter()
    if args.path == "plain":
        fit(model, data, tcfg, hooks=SilentHooks())
    elif cfg.steps == 1:
        kd(model, args.epochs)
    ft_s = time.perf_counter() - t0 + pres.finetune_seconds
    ops = count_ops(model)
    lat = LatencyConfig(batch=1, threads=1, warmup=20, runs=200, budget_s=10.0)
    return {
        "path": args.path,
        "reduction": args.reduction,
        "prune_config": {
            "criterion": cfg.criterion,
            "global": cfg.global_pruning,
            "max_layer_ratio": cfg.max_layer_ratio,
            "round_to": cfg.round_to,
            "layer_ratios": cfg.layer_ratios,
            "steps": cfg.steps,
        },
        "finetune": "ce" if args.path == "plain" else "kd(T=2,alpha=0.5)",
        "epochs": args.epochs,
        "seed": args.seed,
        "dense": {
            "params": dense.params,
            "macs": dense.macs,
            "ort_ms": measure_latency(parent, lat, eager=False).ort_ms,
        },
        "params": ops.params,
        "macs": ops.macs,
        "mac_reduction": round(dense.macs / ops.macs, 3),
        "layers": pres.layers,
        "val_after_prune": after_prune["val"],
        "val": _accuracy(model, data, "val"),
        "test": _accuracy(model, data, "test"),
        "ort_ms_b1": measure_latency(model, lat, eager=False).ort_ms,
        "prune_s": round(prune_s, 1),
        "finetune_s": round(ft_s, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parent", help="trained dense artifact directory")
    ap.add_argument("--reduction", default="2x", choices=["2x", "4x"])
    ap.add_argument("--path", default="ours", choices=["plain", "ours"])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument(
        "--seed",
        type=int,
        default=0,
        help="data seed: batch order (and val split: val is only clean at 0)",
    )
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--criterion", default="lamp", help="ours only")
    ap.add_argument("--no-global", dest="global_pruning", action="store_false", help="ours only")
    ap.add_argument("--max-layer-ratio", type=float, default=0.9, help="ours only")
    ap.add_argument(
        "--layer-ratios",
        help="ours only: name=ratio,... instead of the MAC target (e.g. conv1=0.5,conv2=0.75)",
    )
    ap.add_argument("--steps", type=int, default=1, help="ours only: iterative pruning steps")
    ap.add_argument("--from-sensitivity", help="ours only: `compress sensitivity` report.json")
    ap.add_argument("--max-drop", type=float, default=1.0, help="points, for --from-sensitivity")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args()
    res = run(args)
    text = json.dumps(res, indent=2, default=str)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
