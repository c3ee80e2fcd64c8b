"""report.html: one self-contained page, top-down: the headline, the plots, every stage in
full, the notes, and the environment as a compact table (never a raw JSON dump)."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from compress.pipeline.headline import Headline, facts, speedup_table
from compress.pipeline.report_table import sections

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
    parts.append("</section>")
    return "".join(parts)


def to_html(doc: dict[str, Any], images: list[Path], h: Headline) -> str:
    """The whole page: headline, plots, then the sections report.md has."""
    imgs = "".join(
        f'<figure><img alt="{_esc(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"/></figure>'
        for p in images
    )
    parts = [headline_html(doc, h)]
    if imgs:
        parts.append(f'<section id="plots"><h2>Plots</h2>{imgs}</section>')
    for key, title, body, notes in sections(doc):
        if isinstance(body, tuple):
            content = f'<div class="wide">{table(*body, key)}</div>'
        else:
            content = "<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in body) + "</ul>"
        small = f'<p class="small">{"<br>".join(map(_esc, notes))}</p>' if notes else ""
        parts.append(f'<section id="{key}"><h2>{title}</h2>{content}{small}</section>')
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>compress report "
        f"{_esc(doc['recipe'])}</title><style>{STYLE}</style></head><body>"
        + "".join(parts)
        + "</body></html>\n"
    )
