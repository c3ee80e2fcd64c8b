"""The CLI as a user meets it: train/eval/info, and one clear line + exit code per mistake."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from compress.cli.app import app
from compress.models.zoo.registry import create_model
from tests.conftest import FASHION_MINI, cli, params

runner = CliRunner()
DATA = ["--data-dir", str(FASHION_MINI)]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_train_eval_info_end_to_end(tmp_path):
    out = tmp_path / "lenet"
    r = invoke(
        "train",
        "--model",
        "lenet5",
        "--epochs",
        "2",
        "--out",
        str(out),
        "--amp",
        "off",
        "--json",
        str(tmp_path / "t.json"),
        *DATA,
    )
    assert r.exit_code == 0, r.output
    assert (out / "model.safetensors").is_file() and (out / "card.json").is_file()
    assert not (tmp_path / "lenet.checkpoint").exists()
    summary = json.loads((tmp_path / "t.json").read_text())
    assert 0 < summary["metrics"]["test"]["top1"] <= 1
    r = invoke("eval", "--model", str(out), "--json", str(tmp_path / "e.json"))
    assert r.exit_code == 0, r.output
    ev = json.loads((tmp_path / "e.json").read_text())
    assert ev["samples"] == 300 and len(ev["confusion"]) == 10
    assert ev["top1"] == pytest.approx(summary["metrics"]["test"]["top1"])
    r = invoke("info", str(out))
    assert r.exit_code == 0 and "create -> train" in r.output


def _no_traceback(r) -> None:
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["eval", "--model", "resnet51"], 2, "available: alexnet"),
        (
            ["eval", "--model", "lenet5", "--dataset", "mnist", "--data-dir", "/nonexistent"],
            3,
            "not found",
        ),
        (["train", "--model", "lenet5", "--epochs", "0", "--lr", "-1", "--out", "X"], 2, "lr"),
        (["eval", "--model", "lenet5", "--device", "tpu"], 2, "No such option"),
    ],
)
def test_user_mistakes_get_one_line_and_an_exit_code(args, code, text):
    r = invoke(*args)
    assert r.exit_code == code, r.output
    assert text in r.output
    _no_traceback(r)


def test_existing_output_needs_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("precious")
    r = invoke("train", "--model", "lenet5", "--epochs", "1", "--out", str(tmp_path / "out"), *DATA)
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert (tmp_path / "out" / "keep.txt").read_text() == "precious"


def test_corrupt_and_foreign_weights_are_invalid_input(tmp_path):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    r = invoke("eval", "--model", "lenet5", "--weights", str(bad), *DATA)
    assert r.exit_code == 3 and "git-lfs" in r.output
    from safetensors.torch import save_file

    from compress.models.zoo.registry import create_model

    save_file(create_model("resnet18").state_dict(), tmp_path / "r.safetensors")
    r = invoke("eval", "--model", "lenet5", "--weights", str(tmp_path / "r.safetensors"), *DATA)
    assert r.exit_code == 3 and "missing" in r.output
    _no_traceback(r)


def test_pickle_needs_trust(tmp_path):
    from tests.test_weights import Evil

    p = tmp_path / "evil.pt"
    torch.save({"x": Evil(str(tmp_path / "pwned"))}, p)
    r = invoke("eval", "--model", "lenet5", "--weights", str(p), *DATA)
    assert r.exit_code == 3 and "--trust-pickle" in r.output
    assert not (tmp_path / "pwned").exists()


def test_python_m_compress_works():
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "compress", "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "train" in r.stdout


def test_import_compress_is_cheap():
    import subprocess
    import sys

    code = "import compress, sys; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False"


def test_models_json_lists_the_zoo_as_the_table_shows_it(tmp_path) -> None:
    out = tmp_path / "zoo.json"
    r = cli("models", "--json", str(out))
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    assert rows["lenet5"]["params"] == params(create_model("lenet5"))
    assert "imagenet" in rows["resnet50"]["weights"] and rows["lenet5"]["weights"] == []
    assert "61,706" in r.output  # the table still prints
    only = cli("models", "--json", "-")
    assert [row["name"] for row in json.loads(only.output)] == sorted(rows)
