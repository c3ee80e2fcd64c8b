"""Training step time on this machine: fp32 vs bf16 autocast, with and without channels-last.

Mirrors the fit loop's step (autocast forward, fp32 loss, backward, optimizer step) on
synthetic batches; rounds are interleaved so load from other processes hits every variant
alike. Usage: python benchmarks/amp_step_time.py --models lenet5 resnet50 --batch 64
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from compress.models.zoo.registry import create_model, spec_of

VARIANTS = {
    "fp32": (None, False),
    "bf16": (torch.bfloat16, False),
    "fp32+cl": (None, True),
    "bf16+cl": (torch.bfloat16, True),
}


def step_fn(
    model: torch.nn.Module, dtype: torch.dtype | None, cl: bool, batch: int
) -> Callable[[], None]:
    spec = spec_of(model)
    x = torch.randn(batch, *spec.input_shape)
    y = torch.randint(0, spec.num_classes, (batch,))
    if cl:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        ctx = torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with ctx:
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["lenet5", "resnet50"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = {}
    for name in args.models:
        steps = {}
        for v in args.variants:
            model = create_model(name, input_size=28).train()  # Fashion-MNIST size
            steps[v] = step_fn(model, *VARIANTS[v], args.batch)
            for _ in range(2):
                steps[v]()  # warm-up: oneDNN picks kernels on first calls
        times: dict[str, list[float]] = {v: [] for v in args.variants}
        for _ in range(args.rounds):
            for v in args.variants:
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    steps[v]()
                times[v].append((time.perf_counter() - t0) / args.steps * 1000)
        med = {v: statistics.median(t) for v, t in times.items()}
        out[name] = (
            {
                v: {"median_ms": round(m, 2), "vs_fp32": round(med["fp32"] / m, 2)}
                for v, m in med.items()
            }
            if "fp32" in med
            else med
        )
        print(name, json.dumps(out[name]), flush=True)
    print(json.dumps({"batch": args.batch, "threads": torch.get_num_threads(), **out}))


if __name__ == "__main__":
    main()
