"""Summarize the distillation benchmark's --json outputs as a markdown table (mean ± std).

Usage: python benchmarks/kd_table.py 'LABEL=runs/glob-s*.json' ...
"""

from __future__ import annotations

import glob
import json
import statistics
import sys
from pathlib import Path


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def main(specs: list[str]) -> None:
    print("| run | seeds | val top-1 % | test top-1 % | per-seed test % | train s |")
    print("|---|---|---|---|---|---|")
    for spec in specs:
        label, pattern = spec.split("=", 1)
        runs = [json.loads(Path(p).read_text()) for p in sorted(glob.glob(pattern))]
        if not runs:
            continue
        val = [r["metrics"]["val"]["top1"] for r in runs]
        test = [r["metrics"]["test"]["top1"] for r in runs]
        secs = statistics.mean(r["seconds"] for r in runs)
        each = " / ".join(f"{100 * t:.2f}" for t in test)
        print(f"| {label} | {len(runs)} | {fmt(val)} | {fmt(test)} | {each} | {secs:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
