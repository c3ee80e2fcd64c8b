"""Wall time of `compress --help` and `compress VERB --help`, each in a fresh interpreter.

    python benchmarks/cli_help_time.py [--runs 7] [--verbs prune,train,quantize,run]

Prints the median (and min/max) wall time of N runs per command, and the median CPU time
(user + sys of the child: steadier than wall time when other jobs load the machine); the goal is
<= 0.5 s (issue #13). The help path imports typer and rich only, never torch, onnx or onnxruntime.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def times(args: list[str], runs: int) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds) per `python -m compress ARGS` run (output discarded)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    wall, cpu = [], []
    for _ in range(runs):
        r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "compress", *args],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
        )
        wall.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--verbs", default="prune,train,quantize,run")
    a = ap.parse_args()
    cases = [["--help"]] + [[v, "--help"] for v in a.verbs.split(",") if v]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, {a.runs} runs each")
    print("| command | median wall s | min | max | median CPU s |\n|---|---|---|---|---|")
    for args in cases:
        t, c = times(args, a.runs)
        print(
            f"| compress {' '.join(args)} | {statistics.median(t):.3f} | {min(t):.3f} "
            f"| {max(t):.3f} | {statistics.median(c):.3f} |"
        )


if __name__ == "__main__":
    main()
