"""The verbs' --help names the runtimes and precisions that exist, so a new runtime added to
`compress.export.runtimes.runner.RUNTIMES` can't be missing from the help a user reads."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from compress.cli.app import app
from compress.export.runtimes.precision import PRECISIONS
from compress.export.runtimes.runner import ONNX_RUNTIMES, ORT_PROVIDERS, RUNTIMES


def help_text(verb: str) -> str:
    r = CliRunner().invoke(app, [verb, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", r.output))


@pytest.mark.parametrize("verb", ["deploy", "bench", "eval"])
def test_runtime_choices_are_all_listed(verb: str) -> None:
    text = help_text(verb)
    missing = [r for r in RUNTIMES if not re.search(rf"(?<![\w-]){re.escape(r)}(?![\w-])", text)]
    assert not missing, f"`compress {verb} --help` does not name {missing}"


@pytest.mark.parametrize("verb", ["deploy", "bench", "eval"])
def test_precision_choices_are_all_listed(verb: str) -> None:
    text = help_text(verb)
    assert all(p in text for p in PRECISIONS), text


def test_doctor_says_what_it_diagnoses_and_what_rank_times() -> None:
    text = help_text("doctor")
    assert all(r in text for r in ORT_PROVIDERS)
    assert all(r in text for r in ONNX_RUNTIMES if r.startswith("openvino"))


def test_predict_says_it_runs_as_deployed() -> None:
    assert "runtime, precision and threads deploy chose" in help_text("predict")
