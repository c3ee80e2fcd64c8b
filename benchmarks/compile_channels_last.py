"""torch-compile (inductor, CPU): contiguous vs channels-last, interleaved rounds.

    python benchmarks/compile_channels_last.py [--model resnet18] [--size 224] [--rounds 5]

Random weights and inputs (latency only). Decides `compress.export.runtimes.torch_compile`'s channels-last default.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from compress.export.bench.timing import time_calls
from compress.export.runtimes.torch_compile import torch_compile_runner
from compress.models.zoo.registry import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    shape = (1, 3, a.size, a.size)
    x = np.random.randn(*shape).astype(np.float32)
    runners = {}
    for cl in (False, True):
        model = create_model(a.model, num_classes=1000, in_channels=3, input_size=a.size)
        runners[cl] = torch_compile_runner(model, example_shape=shape, channels_last=cl)
        print(f"channels_last={cl}: compiled in {runners[cl].create_seconds:.1f} s", flush=True)
    ms: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(a.rounds):
        for cl, r in runners.items():
            ms[cl].append(time_calls(lambda r=r: r.run(x), warmup=1, max_runs=10).median_ms)
    for cl, v in ms.items():
        print(f"channels_last={cl}: median {statistics.median(v):.1f} ms, rounds {v}")


if __name__ == "__main__":
    main()
