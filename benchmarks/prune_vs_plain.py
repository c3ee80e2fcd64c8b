"""Plain torch-pruning recipe vs the toolkit's pruning methods, equal MACs and epochs (issue #15).

plain: written from torch-pruning's documented usage, not through compress.pruning: L2
       `MagnitudeImportance`, `MagnitudePruner` with one uniform ratio (bisected until the MACs of
       `tp.utils.count_ops_and_params` meet the target), classifier ignored, then a plain loop:
       cross-entropy, AdamW, one-cycle, `--epochs` epochs (`--plain-augment`: random flips and
       crops, as the issue's recipe; on a parent trained without them they cost ~3 pt at 4x).
cli:   **the CLI's own default path**: `compress prune --model PARENT --target-macs Nx
       --finetune-epochs E --seed S` in a subprocess, plus any `--cli-arg` given (e.g.
       `--cli-arg=--no-kd`); accuracy read from its `--json` summary. This is what a user gets.
ours:  `compress.pruning.prune` with the method flags below (sparse learning, KD from the
       parent, own schedule, label smoothing, augmentation, global/isomorphic ranking, steps),
       `--epochs` in all (sparse-learning epochs included).

Each run writes one JSON; `summarize DIR...` prints mean +/- std and the per-seed table.

Usage: OMP_NUM_THREADS=1 python benchmarks/prune_vs_plain.py run PARENT --reduction 4x \
           --path cli --seed 1 --json out.json
       OMP_NUM_THREADS=1 python benchmarks/prune_vs_plain.py run PARENT --reduction 4x \
           --path ours --sparse-epochs 1 --kd --seed 1 --json out.json
       python benchmarks/prune_vs_plain.py summarize out/*.json
"""

from __future__ import annotations

import argparse
import copy
import glob
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from compress.models.artifacts.artifact import load_model
from compress.models.data.datasets import DataConfig, load_data
from compress.models.zoo.registry import spec_of
from compress.pruning.config import PruneConfig
from compress.pruning.flops import count_ops
from compress.pruning.prune import prune
from compress.training.evaluate import evaluate, torch_predictor
from compress.training.fit import SilentHooks, TrainConfig


def _accuracy(model: torch.nn.Module, data: Any, split: str) -> float:
    res = evaluate(torch_predictor(model), data.loader(split), spec_of(model).num_classes)
    return round(100 * res.top1, 2)


def plain_prune(model: torch.nn.Module, factor: float) -> tuple[torch.nn.Module, float]:
    """torch-pruning's README recipe, uniform ratio bisected to `factor`x fewer MACs."""
    import torch_pruning as tp

    x = torch.randn(1, *spec_of(model).input_shape)
    base, _ = tp.utils.count_ops_and_params(model, x)

    def pruned(r: float) -> torch.nn.Module:
        m = copy.deepcopy(model)
        pruner = tp.pruner.MagnitudePruner(
            m,
            x,
            importance=tp.importance.MagnitudeImportance(p=2),
            pruning_ratio=r,
            ignored_layers=[getattr(m, spec_of(model).classifier)],
        )
        pruner.step()
        return m

    lo, hi = 0.0, 0.95
    for _ in range(20):
        mid = (lo + hi) / 2
        macs, _ = tp.utils.count_ops_and_params(pruned(mid), x)
        lo, hi = (lo, mid) if base / macs >= factor else (mid, hi)
    return pruned(hi), hi


def plain_finetune(
    model: torch.nn.Module, data: Any, epochs: int, lr: float, seed: int, augment: bool
) -> None:
    """A plain loop: cross-entropy, AdamW, one-cycle (random flips and crops if `augment`)."""
    torch.manual_seed(seed)
    data.train.augment = augment
    steps = len(data.loader("train", epoch=0))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    for epoch in range(epochs):
        model.train()
        for x, y in data.loader("train", epoch=epoch):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    data.train.augment = False
    model.eval()


def ours_config(args: argparse.Namespace) -> PruneConfig:
    per_step = args.epochs // args.steps if args.steps > 1 else 0
    return PruneConfig(
        target_macs=args.reduction,
        criterion=args.criterion,
        global_pruning=args.global_pruning,
        isomorphic=args.isomorphic,
        max_layer_ratio=args.max_layer_ratio,
        steps=args.steps,
        finetune_epochs=per_step,
        final_finetune_epochs=args.epochs - per_step * args.steps,
        kd=args.kd,
        round_to=None,
        finetune_schedule=args.schedule,
        label_smoothing=args.label_smoothing,
        augment=args.augment,
        sparse_epochs=args.sparse_epochs,
        sparse_method=args.sparse_method,
        sparse_reg=args.sparse_reg,
    )


def cli_prune(args: argparse.Namespace) -> tuple[torch.nn.Module, dict[str, Any]]:
    """`compress prune` exactly as a user types it (plus --cli-arg), in a subprocess."""
    tmp = Path(tempfile.mkdtemp(prefix="pvp-"))
    try:
        cmd = [
            sys.executable, "-m", "compress", "prune", "--model", args.parent,
            "--target-macs", args.reduction, "--finetune-epochs", str(args.epochs),
            "--seed", str(args.seed), "--out", str(tmp / "out"), "--json", str(tmp / "s.json"),
            "--no-latency", *args.cli_arg,
        ]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        summary = json.loads((tmp / "s.json").read_text())
        model, _ = load_model(str(tmp / "out"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    method = {"cli": " ".join(cmd[3:]), "finetune": summary.get("finetune")}
    return model, method


def run(args: argparse.Namespace) -> dict[str, Any]:
    parent, _ = load_model(args.parent)
    data = load_data(DataConfig(seed=args.split_seed, order_seed=args.seed), spec_of(parent))
    dense = count_ops(parent)
    model = copy.deepcopy(parent)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    if args.path == "plain":
        model, ratio = plain_prune(model, float(args.reduction.rstrip("x")))
        plain_finetune(model, data, args.epochs, args.lr, args.seed, args.plain_augment)
        method: dict[str, Any] = {"uniform_ratio": round(ratio, 4)}
    elif args.path == "cli":
        model, method = cli_prune(args)
    else:
        cfg = ours_config(args)
        tc = TrainConfig(epochs=args.epochs, lr=args.lr, schedule="cosine", seed=args.seed)
        res = prune(model, cfg, data=data, finetune=tc, hooks=SilentHooks())
        method = {k: v for k, v in vars(args).items() if k not in ("parent", "json", "cmd")}
        method["sparse"] = res.sparse
    ops = count_ops(model)
    return {
        "path": args.path,
        "label": args.label or args.path,
        "parent": args.parent,
        "reduction": args.reduction,
        "epochs": args.epochs,
        "seed": args.seed,
        "method": method,
        "dense": {
            "params": dense.params,
            "macs": dense.macs,
            "test": _accuracy(parent, data, "test"),
        },
        "params": ops.params,
        "macs": ops.macs,
        "mac_reduction": round(dense.macs / ops.macs, 3),
        "test": _accuracy(model, data, "test"),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def summarize(paths: list[str], baseline: str = "plain") -> str:
    """Markdown: per (reduction, epochs, label) mean +/- std of test top-1, the mean difference to
    the `baseline` label over the same (parent, seed) pairs, and per-run values."""
    rows: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for p in sorted(f for pat in paths for f in glob.glob(pat)):
        with open(p) as f:
            r = json.load(f)
        rows[(r["reduction"], r["epochs"], r["label"])].append(r)
    out = [
        "| reduction | epochs | method | n | MAC red. | test mean +/- std | vs plain (pairs) | per run "
        "(parent/seed: test) |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for (red, ep, label), rs in sorted(rows.items()):
        tests = [r["test"] for r in rs]
        plain = {(r["parent"], r["seed"]): r["test"] for r in rows.get((red, ep, baseline), [])}
        pairs = [
            r["test"] - plain[r["parent"], r["seed"]]
            for r in rs
            if (r["parent"], r["seed"]) in plain
        ]
        delta = (
            f"{statistics.mean(pairs):+.2f} ({len(pairs)})" if pairs and label != baseline else "-"
        )
        std = statistics.stdev(tests) if len(tests) > 1 else 0.0
        per = ", ".join(
            f"{r['parent'].rstrip('/').split('/')[-1]}/{r['seed']}: {r['test']}" for r in rs
        )
        red_x = statistics.mean(r["mac_reduction"] for r in rs)
        out.append(
            f"| {red} | {ep} | {label} | {len(rs)} | {red_x:.2f}x | "
            f"{statistics.mean(tests):.2f} +/- {std:.2f} | {delta} | {per} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summarize")
    s.add_argument("paths", nargs="+")
    s.add_argument("--baseline", default="plain", help="label the 'vs plain' column compares to")
    r = sub.add_parser("run")
    r.add_argument("parent", help="trained dense artifact directory")
    r.add_argument("--reduction", default="4x", choices=["2x", "4x", "8x"])
    r.add_argument("--path", default="cli", choices=["plain", "cli", "ours"])
    r.add_argument(
        "--cli-arg", action="append", default=[], help="cli path: one more compress prune flag"
    )
    r.add_argument("--label", help="name of this method in the summary")
    r.add_argument("--epochs", type=int, default=5, help="total budget, sparse epochs included")
    r.add_argument("--seed", type=int, default=0, help="batch order / init of the fine-tuning")
    r.add_argument("--split-seed", type=int, default=0, help="the parent's train/val split")
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--criterion", default="l2")
    r.add_argument("--global", dest="global_pruning", action="store_true")
    r.add_argument("--isomorphic", action="store_true")
    r.add_argument("--max-layer-ratio", type=float, default=1.0)
    r.add_argument("--steps", type=int, default=1)
    r.add_argument("--kd", action="store_true")
    r.add_argument("--schedule", default=None, help="onecycle, cosine (default) or constant")
    r.add_argument("--label-smoothing", type=float, default=0.0)
    r.add_argument("--augment", action="store_true")
    r.add_argument("--sparse-epochs", type=int, default=0)
    r.add_argument("--sparse-method", default="group-norm")
    r.add_argument("--sparse-reg", type=float, default=5e-4)
    r.add_argument("--plain-augment", action="store_true", help="plain only: flips and crops")
    r.add_argument("--json", help="write the result here")
    args = ap.parse_args()
    if args.cmd == "summarize":
        print(summarize(args.paths, args.baseline))
        return
    res = run(args)
    text = json.dumps(res, indent=2, default=str)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
