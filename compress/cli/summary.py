"""What `compress run` prints at the end: a compact table that reads at 80 columns, the verdict.

The full table (every runtime, batch and latency) lives in report.md/report.html; the terminal
gets one short row per stage (stage, params, size ×, test top-1, Δ pt vs the baseline, best
speed-up vs the fastest dense case measured here) and the sentences that say against what.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compress.cli.output import console, table

if TYPE_CHECKING:
    from compress.pipeline.report import RunReport

COLUMNS = ("stage", "params", "size ×", "test %", "Δ pt", "best speed-up")


def compact_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One short row of text per stage, in COLUMNS order."""
    from compress.export.bench.baseline import times
    from compress.pipeline.headline import best_speedup

    base = rows[0]["test_top1"] if rows else None
    out = []
    for r in rows:
        test = r["test_top1"]
        best = max(
            ((bs, *best_speedup(r, bs)) for bs in _batches(r)), key=lambda b: b[2], default=None
        )
        out.append(
            [
                r["stage"],
                "-" if r["params"] is None else _short(r["params"]),
                "-" if r["size_ratio"] is None else f"{r['size_ratio']:.1f}×",
                "-" if test is None else f"{100 * test:.2f}",
                "-" if test is None or base is None else f"{100 * (test - base):+.2f}",
                f"{times(best[2])} {best[1]} b{best[0]}" if best and best[1] else "-",
            ]
        )
    return out


def _batches(row: dict[str, Any]) -> list[str]:
    return sorted({bs for by in row.get("speedups", {}).values() for bs in by}, key=int)


def _short(n: int) -> str:
    """61706 -> 61.7k, 25557032 -> 25.6M: params in five characters."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def compact_table(rows: list[dict[str, Any]]) -> Any:
    """A rich Table of `compact_rows`; cells fold instead of ending in an ellipsis."""
    from rich import box

    caption = "Δ pt: test top-1 vs the baseline; speed-up: p50 vs fastest dense case"
    title, cells = "what each stage bought and cost", compact_rows(rows)
    return table(title, COLUMNS, cells, COLUMNS[1:-1], "fold", box=box.SIMPLE_HEAD, caption=caption)


def print_summary(report: RunReport) -> None:
    """The compact table, the verdict sentence and the baselines of the report just written."""
    console.print(compact_table(report.rows))
    console.print(f"[bold]verdict:[/] {report.headline.verdict}", highlight=False)
    for line in report.baseline_lines:
        console.print(f"baseline {line}", highlight=False)
