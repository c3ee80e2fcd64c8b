"""Dense vs pruned latency, measured interleaved so shared-CPU noise hits both alike.

Usage:
  python benchmarks/prune_speedup.py --dense resnet50 --in-channels 3 --input-size 224 \
      --pruned runs/r50-random-p50 [--threads 2] [--rounds 7] [--runs 10] [--eager]

Both models are exported once to in-memory ONNX and loaded in onnxruntime CPU sessions with the
same thread count; each round times `--runs` runs of the dense then of the pruned model (after a
warm-up) and keeps each median. Prints per-round medians and the median of per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import numpy as np
import onnxruntime as ort
import torch

from compress.export.bench.timing import time_calls
from compress.export.runtimes.session import open_session
from compress.models.artifacts.resolve import ShapeArgs, resolve_model
from compress.models.zoo.registry import spec_of
from compress.pruning.latency import onnx_bytes


def session(model: torch.nn.Module, x: torch.Tensor, threads: int) -> ort.InferenceSession:
    return open_session(onnx_bytes(model, x), threads)


def median_ms(fn, runs: int) -> float:
    return time_calls(fn, warmup=0, max_runs=runs).median_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dense", required=True)
    ap.add_argument("--pruned", required=True)
    ap.add_argument("--in-channels", type=int, default=1)
    ap.add_argument("--input-size", type=int, default=28)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--eager", action="store_true", help="also time torch eager")
    ap.add_argument("--json")
    a = ap.parse_args()
    shape = ShapeArgs(num_classes=10, in_channels=a.in_channels, input_size=a.input_size)
    dense = resolve_model(a.dense, weights="random" if "/" not in a.dense else None, shape=shape)
    pruned = resolve_model(a.pruned, shape=shape)
    x = torch.randn(a.batch, *spec_of(pruned.model).input_shape)
    feed = {"input": x.numpy()}
    sessions = {
        "dense": session(dense.model, x, a.threads),
        "pruned": session(pruned.model, x, a.threads),
    }
    torch.set_num_threads(a.threads)
    fns = {k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()}
    if a.eager:
        for k, m in (("dense_eager", dense.model.eval()), ("pruned_eager", pruned.model.eval())):
            fns[k] = lambda m=m: m(x)
    for fn in fns.values():  # warm-up
        for _ in range(3):
            with torch.inference_mode():
                fn()
    rounds: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(a.rounds):
        with torch.inference_mode():
            for k, fn in fns.items():
                rounds[k].append(median_ms(fn, a.runs))
        print(f"round {r + 1}: " + "  ".join(f"{k} {v[-1]:.2f} ms" for k, v in rounds.items()))
    ratios = [d / p for d, p in zip(rounds["dense"], rounds["pruned"], strict=True)]
    out = {
        "dense": a.dense,
        "pruned": a.pruned,
        "batch": a.batch,
        "threads": a.threads,
        "median_ms": {k: statistics.median(v) for k, v in rounds.items()},
        "ort_speedup_median_of_rounds": statistics.median(ratios),
        "ort_speedup_range": [min(ratios), max(ratios)],
        "loadavg_1min": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "onnxruntime": ort.__version__,
    }
    if a.eager:
        er = np.array(rounds["dense_eager"]) / np.array(rounds["pruned_eager"])
        out["eager_speedup_median_of_rounds"] = float(np.median(er))
    print(json.dumps(out, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
