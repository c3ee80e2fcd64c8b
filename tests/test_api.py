"""The public Python API: `import compress` is cheap, the verbs load lazily, and the README's
Python example runs (on the committed data subset, with its epoch counts cut to 1)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import compress
from tests.conftest import MINI

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API") :]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_every_public_name_is_lazy_and_resolves() -> None:
    assert set(compress.__all__) == {"__version__", *compress._LAZY}
    for name in compress._LAZY:
        assert getattr(compress, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = compress.nope  # type: ignore[attr-defined]


def test_the_lazy_verbs_are_the_apis() -> None:
    """compress._VERBS (kept literal so `import compress` stays torch-free) names exactly what
    compress.api exports, less its helper names."""
    import compress.api

    assert set(compress._VERBS) == set(compress.api.__all__) - {"Model", "model_ref"}


def test_import_compress_loads_no_torch() -> None:
    code = "import sys, compress\nprint('torch' in sys.modules, compress.__version__)"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.stdout.split() == ["False", compress.__version__]


def test_readme_example_uses_the_api() -> None:
    code = readme_example()
    for name in ("train", "prune", "distill", "quantize", "export_onnx", "bench", "run_recipe"):
        assert f"compress.{name}(" in code


FAST = [  # (pattern, replacement): the only changes made to the README's code
    (r"epochs=\d+", "epochs=1"),
    (r"seconds=1\.0", "seconds=0.05"),
    (
        r'run_recipe\("recipes/lenet5-fashion.yaml", "runs/pipeline"\)',
        'run_recipe(ROOT / "recipes/lenet5-fashion.yaml", "runs/pipeline", overrides=OVERRIDES)',
    ),
]
OVERRIDES = [
    "train.epochs=1",
    "distill.epochs=1",
    "max_drop=null",
    "quantize.max_drop=null",
    "quantize.samples=40",
    "bench.seconds=0.05",
    "bench.rounds=1",
    "bench.runtimes=[ort-cpu]",
]


def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    code = readme_example()
    for pattern, repl in FAST:
        code, n = re.subn(pattern, repl, code)
        assert n, f"README example no longer contains {pattern!r}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPRESS_DATA_DIR", MINI)
    exec(compile(code, "README.md", "exec"), {"ROOT": ROOT, "OVERRIDES": OVERRIDES})
    for art in ("lenet5", "lenet5-p50", "lenet5-kd", "lenet5-int8", "lenet5-onnx"):
        assert (tmp_path / "runs" / art / "card.json").is_file()
    assert (tmp_path / "runs" / "pipeline" / "report.md").is_file()
    assert re.search(r"lenet5-int8 ort-cpu 32 [\d.]+ ms", capsys.readouterr().out)
    assert os.environ["COMPRESS_DATA_DIR"].endswith("fashion-mini")


def test_evaluate_is_what_the_cli_eval_writes(trained_lenet: Path, tmp_path: Path) -> None:
    """`compress.evaluate` returns a typed report; its JSON form is exactly `compress eval
    --json`'s, so the API and the CLI give one answer."""
    import json

    from typer.testing import CliRunner

    from compress.cli.app import app
    from compress.models.data.datasets import DataConfig

    data = DataConfig(dataset="fashion-mnist", data_dir=MINI)
    report = compress.evaluate(trained_lenet, data, split="val", limit=64)
    assert report.result.samples == 64 and report.where.runtime == "torch"
    args = ["eval", "-m", str(trained_lenet), "--dataset", "fashion-mnist", "--data-dir", MINI]
    out = tmp_path / "eval.json"
    r = CliRunner().invoke(app, [*args, "--split", "val", "--limit", "64", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text()) == json.loads(json.dumps(report.to_dict()))
