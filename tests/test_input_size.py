"""`--input-size` on export, bench and deploy: a network trained at one size run at another.

The shape probe (compress.export.runtimes.input_size) accepts resolution-independent models (adaptive pooling
before the head) and refuses, naming the layer, a fixed-size Linear after flatten or a size
too small for a stride; exports record the size they were made at, bench and deploy pick it up,
and the input artifact's folder is never written to.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from compress.cli.app import app
from compress.export.runtimes.input_size import at_input_size, check_input_size, trained_input_size
from compress.export.runtimes.runner import inspect_onnx
from compress.models.artifacts.artifact import ONNX, new_card, read_card, save_model
from compress.models.errors import UsageError
from compress.models.zoo.registry import create_model
from compress.models.zoo.spec import attach_spec, make_spec
from tests.conftest import MINI

runner = CliRunner()


class _ConvHead(nn.Module):
    """No Linear, no adaptive pooling: its output width follows the input size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 10, 3, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.conv(x), 1)


def _conv_head() -> nn.Module:
    m = _ConvHead()
    attach_spec(m, make_spec("convhead", 10, 1, 3, classifier="conv"))
    return m


@pytest.mark.parametrize(
    ("build", "size", "refusal"),
    [
        (lambda: create_model("resnet18", input_size=28), 64, None),
        (lambda: create_model("alexnet", input_size=28), 96, None),  # small variant: adaptive
        (lambda: create_model("lenet5"), 224, "fc1 (Linear, 400 inputs) would get 46656"),
        (lambda: create_model("vgg16", input_size=28), 4, "features.16 (MaxPool2d) gets a 1x1"),
    ],
)
def test_the_probe_accepts_resolution_independent_models_and_names_the_layer_otherwise(
    build, size, refusal
) -> None:
    model = build().train()
    if refusal is None:
        check_input_size(model, size)
    else:
        with pytest.raises(UsageError, match=re.escape(refusal)):
            check_input_size(model, size)
    assert model.training  # the probe restores the mode it found


def test_a_conv_head_that_changes_its_width_is_refused() -> None:
    with pytest.raises(UsageError, match=r"gives output \(1, 40\) at 8x8 input, not \(1, 10\)"):
        check_input_size(_conv_head(), 8)


def test_retargeting_keeps_the_trained_size() -> None:
    model = create_model("resnet18", input_size=28)
    assert at_input_size(model, 64).input_size == 64
    spec = at_input_size(model, 224)
    assert (spec.input_size, trained_input_size(spec)) == (224, 28)
    assert model.spec is spec


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """A resnet18 'trained' at 28x28 on the subset (random weights marked trained, so parity
    and the deploy gate use real validation images), in a read-only folder."""
    root = tmp_path_factory.mktemp("ro")
    model = create_model("resnet18", input_size=28)
    card = new_card(model, trained=True, metrics={"val": {"top1": 0.1}})
    card.dataset = {"dataset": "fashion-mnist", "data_dir": MINI, "val_size": 100, "val_seed": 0}
    save_model(model, root / "r18", card)
    for p in (root / "r18", root):
        p.chmod(stat.S_IRUSR | stat.S_IXUSR)
    yield root / "r18"
    for p in (root, root / "r18"):
        p.chmod(stat.S_IRWXU)


@pytest.fixture(scope="module")
def exported(parent: Path, tmp_path_factory) -> dict[int, Path]:
    """The parent exported at 64 and at 32 by the CLI, its folder snapshot checked after."""
    before = {p: _snapshot(p) for p in (parent, parent.parent)}
    out = tmp_path_factory.mktemp("onnx")
    made = {}
    for size in (64, 32):
        r = runner.invoke(
            app,
            ["export", "-m", str(parent), "--input-size", str(size), "-o", str(out / f"r{size}")],
        )
        assert r.exit_code == 0, r.output
        made[size] = out / f"r{size}"
    assert {p: _snapshot(p) for p in (parent, parent.parent)} == before  # never written to
    return made


@pytest.mark.parametrize("size", [64, 32])
def test_export_runs_and_gates_at_the_size_and_records_it(exported, size) -> None:
    card = read_card(exported[size])
    assert inspect_onnx(exported[size] / ONNX).input_shape[1:] == [1, size, size]
    assert card.model_spec.input_size == size and trained_input_size(card.model_spec) == 28
    assert card.architecture.input_size == 28  # rebuilt as trained; run at `size`
    assert card.gates["parity"]["passed"] and card.gates["parity"]["inputs"] == "val"
    assert card.history[-1]["config"]["input_size"] == size
    meta = inspect_onnx(exported[size] / ONNX).metadata
    assert json.loads(meta["compress.input_size"]) == size


def _bench(tmp: Path, *args: str) -> tuple[int, str, dict]:
    report = tmp / "bench.json"
    r = runner.invoke(
        app,
        ["bench", *args, "-r", "ort-cpu", "--batch-sizes", "1,2", "--iters", "2", "--json",
         str(report)],
    )  # fmt: skip
    return r.exit_code, r.output, json.loads(report.read_text()) if not r.exit_code else {}


def test_bench_runs_an_export_at_its_size_and_a_pytorch_artifact_at_the_option(
    exported, parent, tmp_path
) -> None:
    args = ("-m", str(exported[64]), "-m", str(parent), "--input-size", "64")
    code, out, rep = _bench(tmp_path, *args)
    assert code == 0, out
    shapes = {m["label"]: m["input_shape"] for m in rep["models"]}
    assert shapes == {"r64": [1, 64, 64], "r18": [1, 64, 64]}
    assert {c["batch_size"] for c in rep["results"]} == {1, 2}
    code, out, rep = _bench(tmp_path, "-m", str(exported[32]))  # no option: the size in the card
    assert code == 0 and rep["models"][0]["input_shape"] == [1, 32, 32]


def test_an_onnx_artifact_is_refused_at_another_size(exported, tmp_path) -> None:
    code, out, _ = _bench(tmp_path, "-m", str(exported[64]), "--input-size", "32")
    assert code == 2 and "exported at a fixed 64x64" in out and "Traceback" not in out


@pytest.mark.parametrize(
    ("verb", "model", "size", "layer"),
    [("export", "lenet5", 224, "fc1 (Linear"), ("bench", "vgg16", 4, "features.16 (MaxPool2d)")],
)
def test_the_cli_refuses_a_size_the_model_cant_take_in_one_line(
    tmp_path, verb, model, size, layer
) -> None:
    built = create_model(model, input_size=28)
    save_model(built, tmp_path / model, new_card(built))
    args = ["-m", str(tmp_path / model), "--input-size", str(size)]
    args += ["-o", str(tmp_path / "out")] if verb == "export" else ["-r", "torch"]
    r = runner.invoke(app, [verb, *args])
    assert r.exit_code == 2, r.output
    assert layer in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


def test_deploy_at_another_size_gates_against_fp32_at_that_size(parent, tmp_path) -> None:
    before = _snapshot(parent)
    out = tmp_path / "dep"
    r = runner.invoke(
        app,
        ["deploy", "-m", str(parent), "-o", str(out), "--input-size", "32", "-r", "torch",
         "-r", "ort-cpu", "--precision", "fp32", "--threads", "1", "--seconds", "0.2",
         "--rounds", "1", "--eval-samples", "32"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "deploy.json").read_text())
    assert manifest["spec"]["input_size"] == 32
    assert "fp32 at 32x32, images resized from 28x28" in manifest["gate"]["reference"]
    assert read_card(out).model_spec.input_size == 32
    assert _snapshot(parent) == before
    assert not os.access(parent, os.W_OK) or os.geteuid() == 0
