"""The pipeline report's plots: accuracy vs latency, size per stage, latency per runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.export.bench.report import pyplot, save_figure


def runtimes(rows: list[dict[str, Any]]) -> list[str]:
    """Every latency column (runtime, or `runtime precision`) any stage was measured on."""
    return sorted({rt for r in rows for rt in r["latency"]})


def plots(rows: list[dict[str, Any]], folder: Path) -> list[Path]:
    """accuracy-vs-latency (Pareto), size per stage, latency per runtime."""
    plt = pyplot()
    out = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for rt in runtimes(rows):
        pts = [
            (r["latency"][rt]["1"]["p50_ms"], 100 * r["test_top1"], r["stage"])
            for r in rows
            if "1" in r["latency"].get(rt, {}) and r["test_top1"] is not None
        ]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=rt)
            for x, y, s in pts:
                ax.annotate(s, (x, y), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("latency p50, batch 1 (ms, log scale, synthetic input)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("accuracy vs latency")
    _legend(ax)
    out.append(save_figure(fig, folder / "accuracy_latency.png"))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([r["stage"] for r in rows], [(r["bytes"] or 0) / 1024 for r in rows])
    ax.set_ylabel("artifact size (KB)")
    ax.set_title("size per stage")
    out.append(save_figure(fig, folder / "size.png"))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    rts = runtimes(rows)
    width = 0.8 / max(1, len(rts))
    for i, rt in enumerate(rts):
        ys = [r["latency"].get(rt, {}).get("1", {}).get("p50_ms", 0) for r in rows]
        ax.bar([j + i * width for j in range(len(rows))], ys, width, label=rt)
    ax.set_xticks(
        [j + width * (len(rts) - 1) / 2 for j in range(len(rows))], [r["stage"] for r in rows]
    )
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency, batch 1 (ms, log)")
    ax.set_title("latency per runtime")
    _legend(ax)
    out.append(save_figure(fig, folder / "latency_runtime.png"))
    return out


def _legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
