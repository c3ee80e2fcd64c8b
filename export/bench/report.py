"""Benchmark reports: table rows (drawn by the CLI with rich), JSON, CSV, Markdown, PNG plots; each
says the inputs were synthetic and names the machine. Speed-ups: p50 ratios at the same batch size
against `compress.export.bench.baseline`'s two."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from compress.export.bench.baseline import (
    ROLE_HELP,
    ROLES,
    Baseline,
    dense_labels,
    find_baselines,
    speedups,
    times,
)
from compress.export.bench.results import INPUT_NOTE, BenchReport, CaseResult
from compress.models.disk.durable import atomic_file, write_text
from compress.models.jsontypes import JsonObject

TABLE_COLUMNS = (
    *("model", "runtime", "batch", "p50 ms", "p90 ms", "p99 ms", "items/s", "peak RSS MB"),
    *("size MB", "vs fastest dense", "vs ort fp32"),
)


def bench_baselines(report: BenchReport) -> dict[int, dict[str, Baseline]]:
    """The fastest dense and onnxruntime fp32 cases of this benchmark, per batch size."""
    return find_baselines(report.results, dense_labels(report.models))


def table_rows(report: BenchReport) -> list[list[str]]:
    """One row of strings per case, in TABLE_COLUMNS order."""
    base = bench_baselines(report)
    ups = [speedups(r, base) for r in report.results]
    mixed = len({r.precision for r in report.results}) > 1  # then fp32 is named too
    return [
        [
            r.model,
            runtime_cell(r, always=mixed),
            str(r.batch_size),
            f"{r.p50_ms:.2f}",
            f"{r.p90_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.throughput:,.1f}",
            fmt_num(r.peak_rss_mb, "{:.0f}"),
            fmt_num(None if r.size_bytes is None else r.size_bytes / 1e6, "{:.2f}"),
            *(times(up[role]) for role in ROLES),
        ]
        for r, up in zip(report.results, ups, strict=True)
    ]


def runtime_cell(r: CaseResult, always: bool = False) -> str:
    """`openvino` (fp32; `openvino fp32` when `always`), `openvino bf16`, `openvino (ran bf16)`,
    `ort-cuda (fell back)`."""
    eff = r.effective_precision
    asked = f" {r.precision}" if always or r.precision != "fp32" else ""
    floats = r.precision in ("fp32", "bf16")  # int8/fp16 files: eff is their float remainder
    ran = f" (ran {eff})" if floats and eff and eff not in (r.precision, "unknown") else ""
    return f"{r.runtime}{asked}{ran}" + (" (fell back)" if r.fallback else "")


def environment_line(report: BenchReport) -> str:
    env = report.environment
    isa = ", ".join(k for k, v in (env.get("isa") or {}).items() if v) or "none detected"
    libs = env.get("libraries", {})
    load = env.get("load_average")
    return (
        f"{env.get('cpu')} ({env.get('logical_cores')} logical cores; ISA: {isa}), "
        f"{env.get('threads')} threads, torch {libs.get('torch', '-')}, onnxruntime "
        f"{libs.get('onnxruntime', libs.get('onnxruntime-gpu', '-'))}"
        + (f", openvino {libs['openvino']}" if libs.get("openvino") else "")
        + (f", load average {load[0]:.2f}" if load else "")
        + (f", GPU {env['gpu']['name']}" if env.get("gpu") else "")
    )


def report_dict(report: BenchReport) -> JsonObject:
    """The JSON document: `compress-bench/1` plus the baselines and each case's speed-ups."""
    base = bench_baselines(report)
    doc = report.to_dict()
    doc["baselines"] = {
        str(bs): {role: b.to_dict() for role, b in found.items()} for bs, found in base.items()
    }
    doc["baseline_roles"] = dict(ROLE_HELP)
    for row, r in zip(doc["results"], report.results, strict=True):
        row["speedup"] = speedups(r, base)
    return doc


def write_csv(report: BenchReport, path: str | Path) -> Path:
    """One row per case, every CaseResult field (providers joined with '+')."""
    path = Path(path)
    names = [f.name for f in fields(CaseResult)]
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=names)
        w.writeheader()
        for r in report.results:
            row = asdict(r)
            row["providers"] = "+".join(r.providers)
            w.writerow(row)
    return path


def to_markdown(report: BenchReport) -> str:
    """A Markdown table plus the environment and input notes."""
    lines = [markdown_table(TABLE_COLUMNS, table_rows(report), right_from=2)]
    lines += ["", "Speed-ups (p50 ratios, same batch size):"]
    lines += [f"- vs {role}: against {ROLE_HELP[role]}." for role in ROLES]
    lines += ["", f"Inputs: {INPUT_NOTE}.", f"Machine: {environment_line(report)}."]
    c = report.config
    how = f"{c['iters']} iterations" if c.get("iters") else f"{c.get('seconds') or 3.0:g} s"
    lines.append(f"Measurement: {c.get('warmup')} warm-up runs, then {how} per case.")
    lines += [f"- {n.text}" for n in report.notes]
    return "\n".join(lines) + "\n"


def plot_latency(report: BenchReport, path: str | Path) -> Path:
    """p50 latency and throughput vs batch size, one line per (model, runtime)."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for (model, runtime), rows in _series(report).items():
        bs = [r.batch_size for r in rows]
        ax1.plot(bs, [r.p50_ms for r in rows], marker="o", label=f"{model} · {runtime}")
        ax2.plot(bs, [r.throughput for r in rows], marker="o", label=f"{model} · {runtime}")
    sizes = sorted({r.batch_size for r in report.results})
    for ax, ylabel in ((ax1, "p50 latency (ms)"), (ax2, "throughput (items/s)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
    fig.suptitle(f"latency vs batch size ({report.environment.get('cpu')}, synthetic inputs)")
    return save_figure(fig, path)


def plot_accuracy_latency(report: BenchReport, path: str | Path) -> Path | None:
    """Accuracy (from the cards) vs p50 latency at the smallest batch size; None if unknown."""
    known = [r for r in report.results if r.accuracy is not None]
    if not known:
        return None
    bs = min(r.batch_size for r in known)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for runtime in dict.fromkeys(r.runtime for r in known):
        rows = [r for r in known if r.runtime == runtime and r.batch_size == bs]
        ax.scatter([r.p50_ms for r in rows], [100 * (r.accuracy or 0) for r in rows], label=runtime)
        for r in rows:
            ax.annotate(r.model, (r.p50_ms, 100 * (r.accuracy or 0)), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency at batch {bs} (ms, log scale)")
    ax.set_ylabel("top-1 accuracy (%, from the cards)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_reports(
    report: BenchReport,
    *,
    json_path: str | Path | None = None,
    csv_path: str | Path | None = None,
    md_path: str | Path | None = None,
    plot_path: str | Path | None = None,
) -> list[Path]:
    """Write whichever outputs were asked for; the plot also gets `<stem>-accuracy.png`."""
    writers: list[tuple[str | Path | None, Callable[[Path], Path]]] = [
        (json_path, lambda p: write_text(p, json.dumps(report_dict(report), indent=2) + "\n")),
        (csv_path, lambda p: write_csv(report, p)),
        (md_path, lambda p: write_text(p, to_markdown(report))),
        (plot_path, lambda p: plot_latency(report, p)),
    ]
    written = [write(Path(path)) for path, write in writers if path]
    if plot_path:
        plot_path = Path(plot_path)
        acc = plot_accuracy_latency(
            report, plot_path.with_name(plot_path.stem + "-accuracy" + plot_path.suffix)
        )
        if acc:
            written.append(acc)
    return written


def _series(report: BenchReport) -> dict[tuple[str, str], list[CaseResult]]:
    out: dict[tuple[str, str], list[CaseResult]] = {}
    for r in report.results:
        out.setdefault((r.model, r.runtime), []).append(r)
    return {k: sorted(v, key=lambda r: r.batch_size) for k, v in out.items()}


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out, write as PNG and close (every report plot is saved the same way)."""
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def markdown_table(head: Sequence[str], body: Iterable[Sequence[str]], right_from: int = 0) -> str:
    """A Markdown table; columns from `right_from` on right-aligned (0: none)."""
    align = ["---:" if right_from and i >= right_from else "---" for i in range(len(head))]
    rows = ["| " + " | ".join(cells) + " |" for cells in (head, *body)]
    return "\n".join([rows[0], "|" + "|".join(align) + "|", *rows[1:]])


def fmt_num(x: float | None, fmt: str = "{:.2f}") -> str:
    """`x` formatted, or `-` when unknown."""
    return "-" if x is None else fmt.format(x)


def environment_rows(env: dict[str, Any]) -> list[tuple[str, str]]:
    """The environment as a few (what, value) rows, for tables instead of a JSON dump."""
    isa = ", ".join(k for k, v in (env.get("isa") or {}).items() if v) or "none detected"
    libs = env.get("libraries") or env.get("software") or {}
    load = env.get("load_average")
    gpu, dot = env.get("gpu"), env.get("int8_dot_product")
    rows = [
        ("CPU", f"{env.get('cpu', '-')} ({env.get('arch', '-')})"),
        (
            "cores",
            f"{env.get('logical_cores', '-')} logical, {env.get('physical_cores', '-')} "
            f"physical; {env.get('threads', '-')} benchmark threads",
        ),
        ("ISA", isa),
        ("int8 dot product", "-" if dot is None else "yes" if dot else "no"),
        ("load average", " / ".join(f"{x:.2f}" for x in load) if load else "-"),
        ("GPU", gpu.get("name", str(gpu)) if isinstance(gpu, dict) else str(gpu or "none")),
        ("OS", str(env.get("os", "-"))),
        ("software", ", ".join(f"{k} {v}" for k, v in libs.items()) or "-"),
    ]
    if env.get("ort_providers"):
        rows.append(("onnxruntime providers", ", ".join(env["ort_providers"])))
    return rows


NARROW_DROP = ("p90 ms", "p99 ms", "peak RSS MB", "size MB")  # what an 80-column terminal skips


def terminal_table(report: BenchReport, width: int) -> Any:
    """The bench table for a terminal `width` columns wide: below 120 columns only the columns
    that matter most (the files keep them all); cells fold instead of being cut."""
    from rich.box import SIMPLE_HEAD
    from rich.table import Table

    keep = [i for i, c in enumerate(TABLE_COLUMNS) if width >= 120 or c not in NARROW_DROP]
    rows = table_rows(report)
    name = min(24, max((len(r[0]) for r in rows), default=5))  # model names stay whole
    runtime = min(14, max((len(r[1]) for r in rows), default=7))  # `openvino bf16` on one line
    table = Table(title="latency (ms), throughput (items/s), synthetic inputs", box=SIMPLE_HEAD)
    for i in keep:
        table.add_column(
            TABLE_COLUMNS[i],
            justify="left" if i < 2 else "right",
            overflow="fold",
            min_width=name if i == 0 else runtime if i == 1 else None,
        )
    for row in rows:
        table.add_row(*[row[i] for i in keep])
    return table
