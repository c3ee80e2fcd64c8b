"""The pipeline report (`report.json`, `.md`, self-contained `.html`, each opening with the
headline): one row per stage with what it bought and cost, from this run's records (accuracy
from the cards, latency from the bench stage); speed-ups vs `compress.export.bench.baseline`'s."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.export.bench.baseline import (
    Baseline,
    baseline_lines,
    dense_labels,
    find_baselines,
    ran_precision,
    speedups,
    times,
)
from compress.export.bench.report import markdown_table
from compress.models.artifacts.artifact import now, software_versions
from compress.models.jsontypes import JsonObject
from compress.pipeline.headline import NOISE, Headline, headline, headline_markdown
from compress.pipeline.report_html import to_html
from compress.pipeline.report_plots import plots
from compress.pipeline.report_table import sections


def bench_cases(records: list[JsonObject]) -> tuple[list[JsonObject], set[str]]:
    """The last bench stage's cases (runtime, precision and effective precision each) and the
    labels of its dense models, as its record holds them; a record with latencies only gives
    cases at the artifacts' precisions, the first model taken as dense."""
    bench = next((r for r in reversed(records) if r["kind"] == "bench"), None)
    if bench is None:
        return [], set()
    summary = bench.get("summary", {})
    if "cases" in summary:
        return list(summary["cases"]), dense_labels(summary.get("models", []))
    models = [r for r in records if r.get("artifact")]
    prec = {Path(r["artifact"]).name: r.get("precision") or "fp32" for r in models}
    cases = [
        {"model": m, "runtime": rt, "precision": prec.get(m, "fp32"), "batch_size": int(bs), **v}
        for m, by_rt in summary.get("latency", {}).items()
        for rt, by_bs in by_rt.items()
        for bs, v in by_bs.items()
    ]
    return cases, ({Path(models[0]["artifact"]).name} if models else set())


def case_name(case: dict[str, Any]) -> str:
    """`ort-cpu fp32`, `openvino bf16`: the runtime and the precision the case computed in."""
    return f"{case['runtime']} {ran_precision(case)}"


def stage_rows(records: list[JsonObject]) -> list[JsonObject]:
    """One row per model-producing stage, with latency and speed-ups from the last bench stage."""
    models = [r for r in records if r.get("artifact")]
    if not models:
        return []
    cases, dense = bench_cases(records)
    base_cases = find_baselines(cases, dense)
    rows: list[dict[str, Any]] = []
    for r in models:
        mine = [c for c in cases if c["model"] == Path(r["artifact"]).name]
        row = {
            "stage": r["stage"],
            "kind": r["kind"],
            "artifact": r["artifact"],
            "format": r.get("model_kind"),
            "precision": r.get("precision"),
            "params": r.get("summary", {}).get("params"),
            "macs": _macs(r),
            "bytes": r.get("bytes"),
            "val_top1": r.get("val_top1"),
            "test_top1": r.get("test_top1"),
            "seconds": r.get("seconds"),
            "latency": _latency(mine, r.get("precision") or "fp32"),
            "speedups": _speedups(mine, base_cases),
        }
        _inherit(row, rows, r)
        row["size_ratio"] = _ratio(models[0].get("bytes"), r.get("bytes"))
        rows.append(row)
    base_latency = rows[0]["latency"]
    for row in rows:  # same runtime, same batch, vs the baseline stage (kept for the JSON)
        row["speedup"] = {
            rt: {
                bs: _ratio(base_latency.get(rt, {}).get(bs, {}).get("p50_ms"), v.get("p50_ms"))
                for bs, v in by_bs.items()
            }
            for rt, by_bs in row["latency"].items()
        }
    return rows


def _latency(cases: list[dict[str, Any]], precision: str) -> dict[str, dict[str, Any]]:
    """{column: {batch: {p50_ms, p90_ms, throughput}}}; the column is the runtime when the case
    ran at the artifact's own precision, else `runtime precision`."""
    out: dict[str, dict[str, Any]] = {}
    for c in cases:
        own = c.get("precision", precision) == precision
        col = c["runtime"] if own else case_name(c)
        keep = {k: c[k] for k in ("p50_ms", "p90_ms", "throughput") if k in c}
        out.setdefault(col, {})[str(c["batch_size"])] = keep
    return out


def _speedups(
    cases: list[dict[str, Any]], base: dict[int, dict[str, Baseline]]
) -> dict[str, dict[str, Any]]:
    """{`runtime precision`: {batch: {p50_ms, FASTEST_DENSE: x, ORT_FP32: y}}}."""
    out: dict[str, dict[str, Any]] = {}
    for c in cases:
        out.setdefault(case_name(c), {})[str(c["batch_size"])] = {
            "p50_ms": c["p50_ms"],
            **speedups(c, base),
        }
    return out


def _inherit(row: dict[str, Any], rows: list[dict[str, Any]], rec: dict[str, Any]) -> None:
    """Params/MACs: from this stage's summary, else the stage before (export and quantize keep
    the architecture); a prune stage's `before` counts fill in the baseline rows."""
    after = rec.get("summary", {}).get("after")
    if isinstance(after, dict):
        row["params"] = row["params"] or after.get("params")
        before = rec["summary"].get("before") or {}
        for prev in rows:
            prev["params"] = prev["params"] or before.get("params")
            prev["macs"] = prev["macs"] or before.get("macs")
    if rows:
        row["params"] = row["params"] or rows[-1]["params"]
        row["macs"] = row["macs"] or rows[-1]["macs"]


def _macs(r: dict[str, Any]) -> int | None:
    s = r.get("summary", {})
    after = s["after"] if isinstance(s.get("after"), dict) else {}
    for v in (s.get("macs"), s.get("macs_after"), after.get("macs")):
        if isinstance(v, (int, float)):
            return int(v)
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


@dataclass
class RunReport:
    """A written report: its files, and the rows and headline they were written from (what
    the terminal summary shows, without reading the files back)."""

    rows: list[dict[str, Any]]
    headline: Headline
    baseline_lines: list[str]
    paths: dict[str, Path] = field(default_factory=dict)  # json, md, html


def write_report(result: Any, recipe_name: str, folder: Path) -> RunReport:
    """report.json, report.md, report.html and the plots, into `folder`."""
    rows = stage_rows(result.stages)
    cases, dense = bench_cases(result.stages)
    base = find_baselines(cases, dense)
    bench_env = (r["summary"].get("environment") for r in result.stages if r["kind"] == "bench")
    env = next(bench_env, None) or {"software": software_versions()}
    doc = {
        "recipe": recipe_name,
        "created": now(),
        "seconds": result.seconds,
        "rows": rows,
        "gates": result.gates,
        "baselines": {str(bs): {k: b.to_dict() for k, b in f.items()} for bs, f in base.items()},
        "baseline_lines": baseline_lines(base),
        "stages": result.stages,
        "environment": env,
        "notes": honesty_notes(rows, env),
    }
    head = headline(rows, result.gates, env, result.stages)
    doc["headline"] = head.to_dict()
    (folder / "report.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    images = plots(rows, folder) if rows else []
    (folder / "report.md").write_text(to_markdown(doc, head))
    (folder / "report.html").write_text(to_html(doc, images, head))
    paths = {name: folder / f"report.{name}" for name in ("json", "md", "html")}
    return RunReport(rows, head, doc["baseline_lines"], paths)


def honesty_notes(rows: list[dict[str, Any]], env: dict[str, Any] | None = None) -> list[str]:
    """Plain statements where compression did not buy speed, or the CPU was busy."""
    from compress.export.environment import busy_note

    notes = ["Latency uses synthetic inputs (speed only); accuracy uses the real test split."]
    if busy := busy_note(env or {}):
        notes.append(busy)
    for r in rows[1:]:
        for rt, by_bs in r["speedup"].items():
            for bs, s in by_bs.items():
                if s is None or s >= 1 + NOISE:
                    continue
                verdict = "is SLOWER than" if s < 1 - NOISE else "is no faster than"
                notes.append(
                    f"{r['stage']} {verdict} the baseline on {rt} at batch {bs} ({times(s)}"
                    + (")." if s < 1 - NOISE else f"; within the {NOISE:.0%} noise band).")
                )
    return notes


def to_markdown(doc: dict[str, Any], head: Headline) -> str:
    """report.md: the headline, then the sections report.html shows too."""
    parts = [f"# compress report: {doc['recipe']}", headline_markdown(head)]
    for _, title, body, notes in sections(doc):
        lines = (
            markdown_table(*body) if isinstance(body, tuple) else "\n".join(f"- {n}" for n in body)
        )
        parts += [f"## {title}", lines, *notes]
    return "\n\n".join(parts) + "\n"
