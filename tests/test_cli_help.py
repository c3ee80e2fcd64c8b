"""`compress --help` and `compress VERB --help` stay fast: listing verbs and parsing options
import no torch, onnx or onnxruntime (checked with `-X importtime` in a fresh interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = {"torch", "onnx", "onnxruntime", "torch_pruning", "optuna", "matplotlib"}


def imported_modules(*args: str) -> tuple[set[str], str]:
    """Top-level packages a fresh `python -m compress ARGS` imports, and its stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "compress", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    names = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in r.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return names, r.stdout


def verbs() -> list[str]:
    from compress.cli.app import app

    return sorted(c.name for c in app.registered_commands if c.name)


def test_root_help_imports_nothing_heavy():
    names, out = imported_modules("--help")
    assert "typer" in names  # the parse really ran
    assert not names & HEAVY, sorted(names & HEAVY)
    for verb in ("train", "prune", "quantize", "run"):
        assert verb in out


@pytest.mark.parametrize("verb", verbs())
def test_verb_help_imports_nothing_heavy(verb):
    names, out = imported_modules(verb, "--help")
    assert "--help" in out
    assert not names & HEAVY, sorted(names & HEAVY)


def test_every_verb_is_registered():
    assert verbs() == sorted(
        [
            "train",
            "eval",
            "models",
            "info",
            "prune",
            "sensitivity",
            "export",
            "bench",
            "doctor",
            "quantize",
            "distill",
            "run",
            "tune",
        ]
    )


def test_a_verb_module_that_fails_to_import_is_an_error():
    """No verb silently disappears: the import error reaches the user."""
    code = (
        "import sys; sys.modules['compress.cli.tune_cmd'] = None\n"
        "try:\n    import compress.cli.app\nexcept ImportError as e:\n"
        "    print('raised', e.name)\nelse:\n    print('swallowed')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.stdout.strip() == "raised compress.cli.tune_cmd", r.stdout + r.stderr
