"""report.html: one self-contained page, top-down: the headline, the plots, every stage in
full, the notes, and the environment as a compact table (never a raw JSON dump)."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from compress.export.bench.baseline import ROLE_HELP, ROLES
from compress.export.bench.report import environment_rows
from compress.pipeline.headline import Headline, facts, speedup_table
from compress.pipeline.report_table import full_table

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1150px;margin:1.5em auto;padding:0 1em;"
    "color:#222}h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em}"
    "table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ccc;"
    "padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}"
    "table.facts td,table.environment td{text-align:left}th{background:#f3f3f3}"
    ".verdict{font-size:1.2em;background:#eef5ff;border-left:4px solid #3b7ddd;"
    "padding:.6em .9em;margin:.6em 0}.fail{color:#b00020;font-weight:bold}"
    ".pass{color:#1b7f2a}figure{display:inline-block;width:49%;margin:0}img{max-width:100%}"
    ".wide{overflow-x:auto}.small{font-size:12px;color:#555}"
)


def _esc(x: Any) -> str:
    return html.escape(str(x))


def table(head: Sequence[str] | None, body: Iterable[Sequence[str]], cls: str) -> str:
    """A plain HTML table; every cell escaped."""
    rows = [("th", head)] if head else []
    rows += [("td", cells) for cells in body]
    html_rows = (
        "<tr>" + "".join(f"<{t}>{_esc(c)}</{t}>" for c in cells) + "</tr>" for t, cells in rows
    )
    return f'<table class="{cls}">{"".join(html_rows)}</table>'


def headline_html(doc: dict[str, Any], h: Headline) -> str:
    """The opening section: title, verdict sentence, facts, speed-ups, baselines."""
    parts = [
        '<section id="headline">',
        f"<h1>{_esc(doc['recipe'])}: what compression bought</h1>",
        f'<p class="verdict">{_esc(h.verdict)}</p>',
    ]
    if h.final_stage is not None:
        parts.append(table(None, facts(h), "facts"))
        gates = "".join(
            f'<li class="{"pass" if "passed" in g else "fail"}">{_esc(g)}</li>' for g in h.gates
        )
        parts.append(f'<h2>Gate verdicts</h2><ul class="gates">{gates}</ul>')
        head, body = speedup_table(h)
        parts.append("<h2>Speed-up of the final artifact, per runtime and batch</h2>")
        parts.append(table(head, body, "speedups"))
        parts.append(
            '<p class="small">'
            + "<br>".join(_esc(f"vs {r}: {ROLE_HELP[r]}.") for r in ROLES)
            + "<br>"
            + "<br>".join(_esc(line) for line in doc.get("baseline_lines", []))
            + "<br>p50 latency on synthetic input; accuracy on the real splits.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def to_html(doc: dict[str, Any], images: list[Path], h: Headline) -> str:
    """The whole page: headline, plots, every stage, notes, environment."""
    imgs = "".join(
        f'<figure><img alt="{_esc(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"/></figure>'
        for p in images
    )
    head, body = full_table(doc["rows"])
    notes = "".join(f"<li>{_esc(n)}</li>" for n in doc["notes"])
    sections = [
        headline_html(doc, h),
        f'<section id="plots"><h2>Plots</h2>{imgs}</section>' if imgs else "",
        '<section id="stages"><h2>Every stage</h2><div class="wide">'
        f"{table(head, body, 'stages')}</div>"
        '<p class="small">size x = baseline size / this size; best = the stage\'s fastest '
        "runtime and precision at that batch size.</p></section>",
        f'<section id="notes"><h2>Notes</h2><ul>{notes}</ul></section>',
        '<section id="environment"><h2>Environment</h2>'
        f"{table(['what', 'value'], environment_rows(doc['environment']), 'environment')}"
        f'<p class="small">Total time: {doc["seconds"]:.1f} s; created {_esc(doc["created"])}'
        ". Full records: report.json.</p></section>",
    ]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>compress report "
        f"{_esc(doc['recipe'])}</title><style>{STYLE}</style></head><body>"
        + "".join(sections)
        + "</body></html>\n"
    )
