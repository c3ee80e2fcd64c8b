#!/usr/bin/env bash
# Render a pipeline report in a real browser (headless Chromium) and save a screenshot to look at.
#
#   bash scripts/check_report_render.sh [REPORT.html] [OUT.png]
#
# REPORT.html defaults to a report built from the test suite's hand-made run records (no
# training: the same records tests/test_report.py checks). Needs Chromium (Debian:
# `apt-get install -y chromium`). What to look for in the PNG: the headline first (the verdict
# sentence, final artifact, size, val/test change, speed-ups per runtime and batch against the
# fastest dense case and against onnxruntime fp32, gate verdicts), then the plots, the stage
# table, notes, and the environment as a small table (no JSON).
# tests/test_report.py checks the same structure without a browser.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
HTML=${1:-}
PNG=${2:-report-screenshot.png}
BROWSER=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$BROWSER" ]; then
    echo "no Chromium found: install it (Debian: apt-get install -y chromium)" >&2
    exit 4
fi
if [ -z "$HTML" ]; then
    DIR=$(mktemp -d)
    PYTHONPATH=$PWD "$PY" - "$DIR" <<'PY'
import sys
from pathlib import Path
from types import SimpleNamespace

from compress.pipeline.report import write_report
from tests.test_report import CASES, make_records

out = Path(sys.argv[1])
gates = [{"gate": "whole run", "max_drop": 1.0, "drop": 0.7, "passed": True}]
result = SimpleNamespace(stages=make_records(out, CASES), gates=gates, seconds=12.0)
write_report(result, "example (hand-made records)", out)
PY
    HTML=$DIR/report.html
fi
[ -f "$HTML" ] || { echo "no such report: $HTML" >&2; exit 3; }
"$BROWSER" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --screenshot="$PNG" --window-size=1280,2000 "file://$(realpath "$HTML")" 2>/dev/null
[ -s "$PNG" ] || { echo "Chromium wrote no screenshot" >&2; exit 1; }
echo "rendered $HTML -> $PNG (1280x2000); open it and read the headline first"
