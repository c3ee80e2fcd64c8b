"""Wall time of `compress --help` and `compress VERB --help`, each in a fresh interpreter.

    python benchmarks/cli_help_time.py [--runs 7] [--verbs prune,train,quantize,run]

Prints the median (and min/max) of N runs per command; the goal is <= 0.5 s (issue #13): the
help path imports typer and rich only, never torch, onnx or onnxruntime.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wall_times(args: list[str], runs: int) -> list[float]:
    """Seconds per `python -m compress ARGS` run (output discarded)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "compress", *args],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
        )
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--verbs", default="prune,train,quantize,run")
    a = ap.parse_args()
    cases = [["--help"]] + [[v, "--help"] for v in a.verbs.split(",") if v]
    print("| command | median s | min s | max s |\n|---|---|---|---|")
    for args in cases:
        t = wall_times(args, a.runs)
        print(
            f"| compress {' '.join(args)} | {statistics.median(t):.3f} | {min(t):.3f} "
            f"| {max(t):.3f} |"
        )


if __name__ == "__main__":
    main()
