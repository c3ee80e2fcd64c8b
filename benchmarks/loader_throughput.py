"""Input-pipeline throughput: images/s the training loader delivers (no model), in memory vs
memory-mapped IDX, with 0 or N DataLoader workers, at a model's input size.

    python benchmarks/loader_throughput.py --data-dir DIR [--model lenet5] [--batches 100]

DIR must hold uncompressed IDX files (gunzip -k the Fashion-MNIST .gz files) so the mmap rows
can be measured; the in-memory rows read the same files whole.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

from compress.models.data.datasets import DataConfig, load_data
from compress.models.zoo.registry import create_model, spec_of


def rate(data_dir: str, model: str, mmap: bool, workers: int, batches: int) -> tuple[float, int]:
    """(images/s over `batches` training batches, peak RSS MiB of this process so far)."""
    spec = spec_of(create_model(model, input_size=28))  # Fashion-MNIST size
    cfg = DataConfig(dataset="fashion-mnist", data_dir=data_dir, mmap=mmap, workers=workers)
    bundle = load_data(cfg, spec)
    n, t0 = 0, time.perf_counter()
    for i, (_, y) in enumerate(bundle.loader("train", epoch=1)):
        if i == batches:
            break
        n += len(y)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return n / (time.perf_counter() - t0), rss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--one", nargs=2, metavar=("MMAP", "WORKERS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:  # one configuration per process, so peak memory is its own
        r, rss = rate(a.data_dir, a.model, a.one[0] == "1", int(a.one[1]), a.batches)
        kind = "mmap" if a.one[0] == "1" else "in memory"
        print(f"| {a.model} | {kind} | {a.one[1]} | {r:,.0f} | {rss} |", flush=True)
        return
    print("| model | IDX images | workers | images/s | peak RSS MiB |")
    print("|---|---|---|---:|---:|", flush=True)
    for mmap in ("0", "1"):
        for w in ("0", str(a.workers)):
            base = [sys.executable, __file__, "--data-dir", a.data_dir, "--model", a.model]
            subprocess.run([*base, "--batches", str(a.batches), "--one", mmap, w], check=True)


if __name__ == "__main__":
    main()
