"""Latency ratios of several ONNX models (and a torch eager baseline), measured interleaved.

Issue #9, item 4: the final artifact of a pipeline against the fp32 ONNX baseline and against
torch eager. On a shared CPU, timing one model after the other mixes load changes into the
ratio; here the models take turns round by round (each round: `--runs` consecutive calls
per model, timed by compress.export.bench.timing like `compress bench --rounds`), each round keeps every
model's median, and the ratio reported is the median of per-round ratios. Inputs are synthetic (speed only).

Usage:
  OMP_NUM_THREADS=1 python benchmarks/speedup.py \
      fp32=runs/r50-fp32 pruned=runs/r50-p50-fp32 final=runs/r50-p50-int8 \
      --eager resnet50 --weights random --in-channels 3 --input-size 224 \
      --batch-sizes 1 32 --threads 2 --rounds 7 --runs 10 --json runs/r50-speedup.json

Each positional is LABEL=PATH (a .onnx file or an ONNX artifact directory); the first is the
baseline. `--eager REF` adds a PyTorch model (zoo name or artifact) run by torch eager.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from compress.export.bench.timing import time_calls
from compress.export.onnx.file import onnx_size
from compress.export.runtimes.session import open_session
from compress.models.artifacts.resolve import ShapeArgs, resolve_model


def onnx_file(path: str) -> Path:
    p = Path(path)
    return p / "model.onnx" if p.is_dir() else p


def runners(a: argparse.Namespace, batch: int) -> dict[str, Callable[[], object]]:
    """One zero-argument call per model, each on the same synthetic batch."""
    fns: dict[str, Callable[[], object]] = {}
    shape: tuple[int, ...] | None = None
    for item in a.models:
        label, _, path = item.partition("=")
        sess = open_session(onnx_file(path), a.threads)
        inp = sess.get_inputs()[0]
        dims = tuple(d if isinstance(d, int) else batch for d in inp.shape)
        shape = shape or dims
        x = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
        fns[label] = lambda s=sess, n=inp.name, x=x: s.run(None, {n: x})
    if a.eager and shape is not None:
        sa = ShapeArgs(
            num_classes=a.num_classes, in_channels=a.in_channels, input_size=a.input_size
        )
        model = resolve_model(a.eager, weights=a.weights, shape=sa).model.eval()
        xt = torch.randn(*shape)
        fns["torch eager"] = lambda m=model, x=xt: m(x)
    return fns


def measure(a: argparse.Namespace, batch: int) -> dict[str, object]:
    """`rounds` rounds; in each, every model runs `runs` calls in a row (after one untimed
    call), the models taking turns round by round.

    Consecutive calls per model, not call-by-call alternation: switching sessions on every
    call leaves the previous session's spinning onnxruntime threads and a cold cache to the
    next model, which penalizes small models far beyond what serving one model sees."""
    fns = runners(a, batch)
    rounds: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for r in range(a.rounds):
            for k, fn in fns.items():
                t = time_calls(fn, warmup=3 if r == 0 else 1, max_runs=a.runs)
                rounds[k].append(t.median_ms)
    base = next(iter(fns))
    return {
        "batch": batch,
        "median_ms": {k: round(statistics.median(v), 3) for k, v in rounds.items()},
        "speedup_vs_first": {
            k: round(statistics.median(b / t for b, t in zip(rounds[base], v, strict=True)), 2)
            for k, v in rounds.items()
        },
    }


def table(sizes: dict[str, int], results: list[dict]) -> str:
    base = next(iter(sizes))
    head = "| model | size KiB | size ratio | " + " | ".join(
        f"b{r['batch']} ms | b{r['batch']} speed-up" for r in results
    )
    lines = [head + " |", "|---" * (3 + 2 * len(results)) + "|"]
    labels = list(results[0]["median_ms"])
    for k in labels:
        size = f"{sizes[k] / 1024:.1f} | {sizes[k] / sizes[base]:.3f}x" if k in sizes else "- | -"
        cells = " | ".join(f"{r['median_ms'][k]} | {r['speedup_vs_first'][k]}x" for r in results)
        lines.append(f"| {k} | {size} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("models", nargs="+", help="LABEL=PATH, the first is the baseline")
    ap.add_argument("--eager", help="PyTorch model (zoo name or artifact) for torch eager")
    ap.add_argument("--weights", default=None, help="weights for --eager (`random` for speed only)")
    ap.add_argument("--num-classes", type=int, default=None)
    ap.add_argument("--in-channels", type=int, default=None)
    ap.add_argument("--input-size", type=int, default=None)
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sizes = {
        label: onnx_size(onnx_file(path)) for label, _, path in (m.partition("=") for m in a.models)
    }
    results = [measure(a, b) for b in a.batch_sizes]
    out = {
        "models": a.models,
        "eager": a.eager,
        "threads": a.threads,
        "rounds": a.rounds,
        "runs": a.runs,
        "sizes": sizes,
        "results": results,
        "loadavg_1min": os.getloadavg()[0],
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "input": "synthetic (random normal)",
    }
    print(table(sizes, results))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    else:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
