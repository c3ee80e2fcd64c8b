"""`compress run`'s terminal summary reads at 80 columns: no cell cut to an ellipsis."""

from __future__ import annotations

import io

from rich.console import Console

from compress.cli.run_cmd import COLUMNS, compact_rows, compact_table
from compress.pipeline.report import stage_rows
from tests.test_report import CASES, make_records


def _render(rows: list[dict], width: int = 80) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(compact_table(rows))
    return out.getvalue()


def test_compact_summary_fits_80_columns_without_ellipsis(tmp_path):
    rows = stage_rows(make_records(tmp_path, CASES))
    rows[0]["params"] = 25_557_032  # ResNet-50-sized numbers: the widest cells we print
    text = _render(rows)
    assert "…" not in text and "..." not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for cells in compact_rows(rows):  # every cell whole, on one line
        assert all(c in text for c in cells), cells
    assert all(c in text for c in COLUMNS)
    assert "4.30x openvino int8 b1" in text and "25.6M" in text and "-0.60" in text


def test_old_wide_table_would_have_been_cut(tmp_path):
    """The check can fail: squeezed to 40 columns, rich folds cells (never an ellipsis)."""
    rows = stage_rows(make_records(tmp_path, CASES))
    text = _render(rows, width=40)
    assert "…" not in text
    assert "4.30x openvino int8 b1" not in text  # folded over two lines at this width
