"""The report's body after the headline as text cells: report.md and report.html render the same
sections (the full per-stage table, the notes, the environment)."""

from __future__ import annotations

from typing import Any

from compress.export.bench.baseline import ROLE_HELP, ROLES, times
from compress.export.bench.report import environment_rows, fmt_num
from compress.pipeline.headline import best_speedup
from compress.pipeline.report_plots import runtimes


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def full_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Every stage with every column: the header and the rows, as text (Markdown and HTML)."""
    rts = runtimes(rows)
    batches = sorted({bs for r in rows for by in r["latency"].values() for bs in by}, key=int)
    head = ["stage", "format", "params", "MACs", "size KB", "size x", "val top-1 %", "test top-1 %"]
    head += [f"{rt} p50/p90 ms bs{bs}" for rt in rts for bs in batches]
    head += [f"best bs{bs}: vs {role}" for bs in batches for role in ROLES]
    body = []
    for r in rows:
        cells = [
            r["stage"],
            f"{r['format']} {r['precision']}",
            fmt_num(r["params"], "{:,}"),
            fmt_num(r["macs"], "{:,}"),
            fmt_num(None if r["bytes"] is None else r["bytes"] / 1024, "{:.1f}"),
            fmt_num(r["size_ratio"], "{:.2f}x"),
            _pct(r["val_top1"]),
            _pct(r["test_top1"]),
        ]
        for rt in rts:
            for bs in batches:
                v = r["latency"].get(rt, {}).get(bs)
                cells.append("-" if v is None else f"{v['p50_ms']:.3f}/{v.get('p90_ms', 0):.3f}")
        for bs in batches:
            for role in ROLES:
                name, x = best_speedup(r, bs, role)
                cells.append(f"{times(x)} ({name})" if name else "-")
        body.append(cells)
    return head, body


Table = tuple[list[str], list[list[str]]]
STAGE_NOTE = (
    "Size x = baseline size / this size; speed-ups are p50 ratios at the same batch size "
    "(best = the stage's fastest runtime and precision)."
)


def sections(doc: dict[str, Any]) -> list[tuple[str, str, Table | list[str], list[str]]]:
    """(id, title, a table or bullet lines, footnotes) per section, from report.json's `doc`."""
    roles = [f"vs {role}: {ROLE_HELP[role]}." for role in ROLES]
    env = (["what", "value"], [list(r) for r in environment_rows(doc["environment"])])
    total = (
        f"Total time: {doc['seconds']:.1f} s; created {doc['created']}. Full records: report.json."
    )
    return [
        (
            "stages",
            "Every stage",
            full_table(doc["rows"]),
            [STAGE_NOTE, *roles, *doc["baseline_lines"]],
        ),
        ("notes", "Notes", doc["notes"], []),
        ("environment", "Environment", env, [total]),
    ]
