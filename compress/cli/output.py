"""The only place that prints: results to stdout, diagnostics to stderr."""

from __future__ import annotations

import json
import os
from collections.abc import Container, Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from compress.models.disk.durable import write_text

# Under torchrun only rank 0 prints results and writes --json; every rank still shows errors.
MAIN_RANK = os.environ.get("RANK", "0") in ("", "0")
console = Console(quiet=not MAIN_RANK)
err_console = Console(stderr=True)


def write_json(path: str | None, payload: dict[str, Any] | list[Any]) -> None:
    """`--json FILE` (or `-` for stdout)."""
    if not path or not MAIN_RANK:
        return
    text = json.dumps(payload, indent=2, default=str)
    if path == "-":
        print(text)
    else:
        write_text(path, text + "\n")  # atomic: a full disk keeps the previous file


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def table(
    title: str,
    columns: Iterable[str],
    rows: Iterable[Iterable[str]],
    right: Container[str] = (),
    overflow: Any = "ellipsis",
    **kw: Any,
) -> Table:
    """A rich Table of text rows; the columns named in `right` are right-justified."""
    out = Table(title=title, **kw)
    for c in columns:
        out.add_column(c, justify="right" if c in right else "left", overflow=overflow)
    for cells in rows:
        out.add_row(*cells)
    return out


def fresh_out_dir(model: str, suffix: str, root: str = "runs") -> Path:
    """`runs/<model name>-<suffix>`, or `-2`, `-3`, ... after it: a folder that does not exist
    yet, so a default output never replaces anything. The name is the zoo name, the artifact
    folder's name, or the factory of `file.py:factory`."""
    name = model.rstrip("/\\").split(":")[-1] if ".py:" in model else Path(model).name
    base = Path(root) / f"{name or 'model'}-{suffix}"
    out, n = base, 1
    while out.exists() or out.with_name(out.name + ".lock").exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out
