"""The pipeline report: one row per stage with what it bought and cost, gates, environment, plots.

Written as `report.json`, `report.md` and a self-contained `report.html` (plots embedded as
PNG). Every number comes from this run's stage records: accuracy from each artifact's card
(measured when the stage ran) and latency from the run's bench stage (synthetic inputs).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from models.artifact import now, software_versions

LAT_BATCHES = ("1", "32")


def stage_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model-producing stage, with latency from the last bench stage."""
    bench = next((r for r in reversed(records) if r["kind"] == "bench"), None)
    latency = (bench or {}).get("summary", {}).get("latency", {})
    models = [r for r in records if r.get("artifact")]
    if not models:
        return []
    base = models[0]
    rows: list[dict[str, Any]] = []
    for r in models:
        lat = latency.get(Path(r["artifact"]).name, {})
        row = {
            "stage": r["stage"],
            "kind": r["kind"],
            "format": r.get("model_kind"),
            "precision": r.get("precision"),
            "params": r.get("summary", {}).get("params"),
            "macs": _macs(r),
            "bytes": r.get("bytes"),
            "val_top1": r.get("val_top1"),
            "test_top1": r.get("test_top1"),
            "seconds": r.get("seconds"),
            "latency": lat,
        }
        _inherit(row, rows, r)
        row["size_ratio"] = _ratio(base.get("bytes"), r.get("bytes"))
        row["speedup"] = {
            rt: {
                bs: _ratio(_p50(latency, base, rt, bs), v.get("p50_ms")) for bs, v in by_bs.items()
            }
            for rt, by_bs in lat.items()
        }
        rows.append(row)
    return rows


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
    for key in ("macs", "macs_after"):
        if isinstance(s.get(key), (int, float)):
            return int(s[key])
    after = s.get("after")
    if isinstance(after, dict) and isinstance(after.get("macs"), (int, float)):
        return int(after["macs"])
    return None


def _p50(latency: dict[str, Any], rec: dict[str, Any], rt: str, bs: str) -> float | None:
    v = latency.get(Path(rec["artifact"]).name, {}).get(rt, {}).get(bs)
    return None if v is None else v.get("p50_ms")


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _num(x: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def _runtimes(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({rt for r in rows for rt in r["latency"]})


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The summary table (also printed by the CLI)."""
    rts = _runtimes(rows)
    head = ["stage", "format", "params", "MACs", "size KB", "size x", "val top-1 %", "test top-1 %"]
    for rt in rts:
        head += [f"{rt} p50/p90 ms bs{bs}" for bs in LAT_BATCHES] + [f"{rt} speed-up bs1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["stage"],
            f"{r['format']} {r['precision']}",
            _num(r["params"], "{:,}"),
            _num(r["macs"], "{:,}"),
            _num(None if r["bytes"] is None else r["bytes"] / 1024, "{:.1f}"),
            _num(r["size_ratio"], "{:.2f}x"),
            _pct(r["val_top1"]),
            _pct(r["test_top1"]),
        ]
        for rt in rts:
            for bs in LAT_BATCHES:
                v = r["latency"].get(rt, {}).get(bs)
                cells.append("-" if v is None else f"{v['p50_ms']:.3f}/{v['p90_ms']:.3f}")
            cells.append(_num(r["speedup"].get(rt, {}).get("1"), "{:.2f}x"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plots(rows: list[dict[str, Any]], folder: Path) -> list[Path]:
    """accuracy-vs-latency (Pareto), size per stage, latency per runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for rt in _runtimes(rows):
        pts = [
            (r["latency"][rt]["1"]["p50_ms"], 100 * r["test_top1"], r["stage"])
            for r in rows
            if "1" in r["latency"].get(rt, {}) and r["test_top1"] is not None
        ]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=rt)
            for x, y, s in pts:
                ax.annotate(s, (x, y), fontsize=7)
    ax.set_xlabel("latency p50, batch 1 (ms, synthetic input)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("accuracy vs latency")
    ax.legend()
    out.append(_save(fig, folder / "accuracy_latency.png"))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([r["stage"] for r in rows], [(r["bytes"] or 0) / 1024 for r in rows])
    ax.set_ylabel("artifact size (KB)")
    ax.set_title("size per stage")
    out.append(_save(fig, folder / "size.png"))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    rts = _runtimes(rows)
    width = 0.8 / max(1, len(rts))
    for i, rt in enumerate(rts):
        ys = [r["latency"].get(rt, {}).get("1", {}).get("p50_ms", 0) for r in rows]
        ax.bar([j + i * width for j in range(len(rows))], ys, width, label=rt)
    ax.set_xticks(
        [j + width * (len(rts) - 1) / 2 for j in range(len(rows))], [r["stage"] for r in rows]
    )
    ax.set_ylabel("p50 latency, batch 1 (ms)")
    ax.set_title("latency per runtime")
    ax.legend()
    out.append(_save(fig, folder / "latency_runtime.png"))
    return out


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    result: Any, recipe_name: str, folder: Path, environment: dict[str, Any] | None = None
) -> dict[str, Path]:
    """report.json, report.md, report.html and the plots, into `folder`."""
    rows = stage_rows(result.stages)
    env = (
        environment
        or next(
            (r["summary"].get("environment") for r in result.stages if r["kind"] == "bench"), None
        )
        or {"software": software_versions()}
    )
    doc = {
        "recipe": recipe_name,
        "created": now(),
        "seconds": result.seconds,
        "rows": rows,
        "gates": result.gates,
        "stages": result.stages,
        "environment": env,
        "notes": honesty_notes(rows, env),
    }
    (folder / "report.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    images = plots(rows, folder) if rows else []
    md = to_markdown(doc)
    (folder / "report.md").write_text(md)
    (folder / "report.html").write_text(to_html(doc, images))
    return {
        "json": folder / "report.json",
        "md": folder / "report.md",
        "html": folder / "report.html",
    }


NOISE = 0.05  # speed-ups within 5 % of 1x are reported as "no faster", not as a loss or gain


def honesty_notes(rows: list[dict[str, Any]], env: dict[str, Any] | None = None) -> list[str]:
    """Plain statements where compression did not buy speed, or the CPU was busy."""
    from export.environment import busy_note

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
                    f"{r['stage']} {verdict} the baseline on {rt} at batch {bs} ({s:.2f}x"
                    + (")." if s < 1 - NOISE else f"; within the {NOISE:.0%} noise band).")
                )
    return notes


def to_markdown(doc: dict[str, Any]) -> str:
    gates = (
        "\n".join(
            f"- {g['gate']}: max_drop {g['max_drop']} pt, drop "
            f"{_num(g['drop'])} pt — {'passed' if g['passed'] else 'FAILED'}"
            for g in doc["gates"]
        )
        or "- none configured"
    )
    notes = "\n".join(f"- {n}" for n in doc["notes"])
    env = doc["environment"]
    return (
        f"# compress report: {doc['recipe']}\n\n{markdown_table(doc['rows'])}\n\n"
        f"Size x = baseline size / this size; speed-up = baseline p50 / this p50.\n\n"
        f"## Gates\n{gates}\n\n## Notes\n{notes}\n\n## Environment\n"
        f"```json\n{json.dumps(env, indent=1, default=str)[:3000]}\n```\n\n"
        f"Total time: {doc['seconds']:.1f} s\n"
    )


def to_html(doc: dict[str, Any], images: list[Path]) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(to_markdown(doc))
    imgs = "".join(
        f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"/></figure>'
        for p in images
    )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:3px 6px}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>compress report "
        f"{html.escape(doc['recipe'])}</title><style>{style}</style></head><body>{body}"
        f"{imgs}</body></html>\n"
    )
