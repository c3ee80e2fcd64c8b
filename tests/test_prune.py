"""Structured pruning end to end: layers the pruner can't cut are named, pruned artifacts
round-trip without pickle and export to ONNX, and the `compress prune` verb."""

from __future__ import annotations

import io
import json

import pytest
import torch
from typer.testing import CliRunner

from compress.cli.app import app
from compress.models.artifacts.artifact import load_model, new_card, read_card, save_model
from compress.models.errors import UnsupportedError, UsageError
from compress.models.zoo.registry import create_model
from compress.pruning.prune import PruneConfig, prune
from tests.conftest import USER_MODEL, params, shapes

runner = CliRunner()


# ----------------------------------------------------------------------------- refusals


def test_ratio_emptying_a_layer_is_refused_and_model_untouched():
    m = create_model("lenet5")
    before = shapes(m)
    with pytest.raises(UsageError, match=r"(?s)every channel of 'conv1'.*--ignore conv1"):
        prune(m, PruneConfig(ratio=0.9))
    assert shapes(m) == before
    res = prune(m, PruneConfig(ratio=0.9, ignore=["conv1"]))
    assert m.conv1.out_channels == 6 and res.after.params < res.before.params


def test_layer_the_pruner_breaks_is_named(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text(
        "import torch\nfrom torch import nn\n"
        "class Bad(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv1 = nn.Conv2d(1, 16, 3)\n"
        "        self.conv2 = nn.Conv2d(16, 16, 3)\n"
        "        self.fc = nn.Linear(16, 10)\n"
        "    def forward(self, x):\n"
        "        x = self.conv2(torch.relu(self.conv1(x)))\n"
        "        return self.fc(x.reshape(x.shape[0], 16, -1).mean(-1))\n"
        "def build():\n    return Bad()\n"
    )
    m = create_model(f"{f}:build")
    with pytest.raises(UnsupportedError, match=r"(?s)'conv2' breaks the model.*--ignore conv2"):
        prune(m, PruneConfig(ratio=0.5))
    assert params(m) == 16 * 9 + 16 + 16 * 16 * 9 + 16 + 170
    prune(m, PruneConfig(ratio=0.5, ignore=["conv2"]))
    assert m.conv1.out_channels == 8


# ----------------------------------------------------------------------------- round trips


ZOO = [
    ("lenet5", {}),
    ("alexnet", {"input_size": 28}),
    ("vgg16", {"input_size": 32}),
    ("vgg16_bn", {"input_size": 32}),
    ("resnet18", {"input_size": 28}),
    ("resnet50", {"input_size": 32}),
    (USER_MODEL, {}),
]


@pytest.mark.parametrize("name, kw", ZOO, ids=[z[0].rsplit("/", 1)[-1] for z in ZOO])
def test_pruned_artifact_round_trip_and_onnx(name, kw, tmp_path):
    torch.manual_seed(0)
    m = create_model(name, **kw)
    prune(m, PruneConfig(ratio=0.4))
    x = torch.randn(2, *m.spec.input_shape)
    y = m.eval()(x)
    save_model(m, tmp_path / "a", new_card(m))
    assert "model.safetensors" in read_card(tmp_path / "a").files
    loaded, card = load_model(tmp_path / "a", trust_code=True)  # USER_MODEL runs code
    assert card.structure and shapes(loaded) == shapes(m)
    assert torch.equal(loaded(x), y)
    buf = io.BytesIO()
    torch.onnx.export(loaded, (x,), buf, dynamo=False, input_names=["input"])
    import onnxruntime as ort

    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": x.numpy()})[0]
    assert abs(out - y.detach().numpy()).max() < 1e-4


# ----------------------------------------------------------------------------- CLI


def test_cli_refuses_untrained_zoo_model(tmp_path):
    r = runner.invoke(
        app, ["prune", "--model", "resnet50", "--ratio", "0.5", "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 2
    assert "compress train --model resnet50" in r.output and "--weights random" in r.output
    assert not (tmp_path / "o").exists()


def test_cli_ratio_help_explains_parameter_shrink():
    r = runner.invoke(app, ["prune", "--help"])
    assert r.exit_code == 0 and "1-(1-R)^2" in r.output


def test_cli_random_weights_latency_study(tmp_path):
    out, js = tmp_path / "o", tmp_path / "r.json"
    args = ["prune", "--model", "lenet5", "--weights", "random", "--ratio", "0.5"]
    r = runner.invoke(app, [*args, "--out", str(out), "--json", str(js)])
    assert r.exit_code == 0, r.output
    s = json.loads(js.read_text())
    assert s["untrained"] is True and "metrics" not in s["after"]
    assert s["after"]["latency"]["ort_ms"] > 0 and s["after"]["latency"]["torch_ms"] > 0
    assert s["after"]["file_bytes"] < s["before"]["file_bytes"]
    card = read_card(out)
    assert card.trained is False and card.history[-1]["stage"] == "prune"
    assert card.files["model.safetensors"]["bytes"] == s["after"]["file_bytes"]
    r = runner.invoke(app, [*args, "--out", str(out)])
    assert r.exit_code == 2 and "exists" in r.output  # no --overwrite


def test_cli_prune_trained_artifact_with_finetune(trained_lenet, tmp_path):
    out, js = tmp_path / "p", tmp_path / "r.json"
    r = runner.invoke(
        app,
        [
            "prune",
            "--model",
            str(trained_lenet),
            "--target-macs",
            "2x",
            "--final-finetune-epochs",
            "1",
            "--amp",
            "off",
            "--no-latency",
            "--out",
            str(out),
            "--json",
            str(js),
        ],
    )
    assert r.exit_code == 0, r.output
    s = json.loads(js.read_text())
    assert s["after"]["macs"] <= s["before"]["macs"] / 2
    assert 0 < s["after"]["metrics"]["test_top1"] <= 1 and "pruned" in s["steps"][0]
    assert "final_finetuned" in s["steps"][0]
    _, card = load_model(out)
    assert card.trained and card.metrics["test"]["top1"] == s["after"]["metrics"]["test_top1"]
    assert [h["stage"] for h in card.history][-2:] == ["train", "prune"]
