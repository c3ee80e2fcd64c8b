"""Structured pruning: config validation, targets, criteria, errors, pickle-free round trips, CLI."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from compress.cli.app import app
from compress.pruning.flops import Geometry, count_ops
from compress.pruning.graph import accumulate_gradients, make_importance, plan
from compress.pruning.prune import (
    CRITERIA,
    PruneConfig,
    TargetUnreachableError,
    parse_amount,
    prune,
)
from compress.pruning.session import PruneSession
from compress.training.fit import TrainConfig
from models.artifact import load_model, new_card, read_card, save_model
from models.data import load_data
from models.errors import UnsupportedError, UsageError
from models.registry import create_model

USER_MODEL = str(Path(__file__).parent / "data" / "user_model.py") + ":build"
runner = CliRunner()


def params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def shapes(m: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ratio": 0.5, "target_macs": "2x"}, "--ratio and --target-macs"),
        ({"ratio": 1.0}, "--ratio must be in [0, 1)"),
        ({"ratio": -0.1}, "--ratio must be in [0, 1)"),
        ({"target_macs": "0.5x"}, "factor must be > 1x"),
        ({"target_params": "lots"}, "cannot read"),
        ({"target_latency_ms": 0}, "must be > 0"),
        ({"ratio": 0.5, "criterion": "l3"}, "--criterion must be one of"),
        ({"ratio": 0.5, "steps": 0}, "--steps"),
        ({"ratio": 0.6, "max_layer_ratio": 0.5}, "exceeds --max-layer-ratio"),
        ({"layer_ratios": {"conv1": 1.0}}, "must be in [0, 1)"),
        ({"ratio": 0.5, "kd": True}, "no fine-tuning epochs"),
        ({"ratio": 0.5, "kd": True, "finetune_epochs": 1, "kd_alpha": 2}, "kd_alpha"),
        ({"ratio": 0.5, "kd": True, "finetune_epochs": 1, "kd_temperature": 0}, "kd_temperature"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace(")", r"\)")):
        PruneConfig(**kwargs)


def test_parse_amount():
    assert parse_amount("2x", "t") == ("factor", 2.0)
    assert parse_amount("150M", "t") == ("abs", 150e6)
    assert parse_amount(1.5e8, "t") == ("abs", 1.5e8)
    assert parse_amount("20k", "t") == ("abs", 20e3)


def test_count_ops_lenet_is_exact_and_lists_uncounted_ops():
    c = count_ops(create_model("lenet5"))
    # conv1 28*28*6*25 + conv2 10*10*16*150 + fc 400*120 + 120*84 + 84*10
    assert c.macs == 117_600 + 240_000 + 48_000 + 10_080 + 840
    assert c.params == 61_706
    assert "relu" in c.uncounted_ops and "max_pool2d_with_indices" in c.uncounted_ops


# ----------------------------------------------------------------------------- pruning


def test_ratio_prunes_every_layer_but_the_head():
    m = create_model("lenet5")
    res = prune(m, PruneConfig(ratio=0.5))
    assert m.conv1.out_channels == 3 and m.conv2.out_channels == 8
    assert m.fc1.out_features == 56  # 60 rounded down to a multiple of 8
    assert m.fc3.out_features == 10  # the classifier keeps its classes
    assert res.after["params"] == params(m) < 0.3 * res.before["params"]
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert res.layers["conv1"] == {"out_channels": [6, 3]}


def test_round_to_keeps_multiples_and_narrow_layers():
    m = create_model("resnet18", input_size=28)
    prune(m, PruneConfig(ratio=0.3))
    widths = [mod.out_channels for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    assert all(w % 8 == 0 for w in widths)
    m = create_model("lenet5")  # conv1 has 6 channels: < 8, keeps its exact count
    prune(m, PruneConfig(ratio=0.3))
    assert m.conv1.out_channels == 4


@pytest.mark.parametrize("kind, value", [("target_macs", "2x"), ("target_params", "3x")])
@pytest.mark.parametrize("glob", [False, True])
def test_counting_targets_are_met_closely(kind, value, glob):
    torch.manual_seed(0)  # global ranking depends on the weights: keep the test deterministic
    m = create_model(USER_MODEL)
    res = prune(m, PruneConfig(**{kind: value}, global_pruning=glob))
    key = kind.split("_")[1]
    goal = res.target["goal"]
    assert res.after[key] <= goal
    assert res.after[key] >= 0.8 * goal  # the smallest ratio that meets it, not any ratio
    assert count_ops(m).macs == res.after["macs"]


def test_absolute_macs_target():
    m = create_model("lenet5")
    res = prune(m, PruneConfig(target_macs=200_000))
    assert res.after["macs"] <= 200_000 < res.before["macs"]


def test_planned_counts_equal_real_ones_with_depthwise_concat_and_residuals():
    for glob in (False, True):
        m = create_model(USER_MODEL)
        x = torch.randn(1, 1, 28, 28)
        cfg = PruneConfig(target_macs="3x", global_pruning=glob)
        run = PruneSession(m, cfg, x, None, None, None, None)
        for f in (0.3, 0.6):
            run.prepare_importance()
            p = plan(run.pruner, run.progress, f)
            planned = run.geometry.macs(m, p), run.geometry.params(m, p)
            run.apply(f)
            assert planned == (Geometry(m, x).macs(m), params(m))


def test_global_pruning_respects_the_layer_limit():
    m = create_model(USER_MODEL)
    before = {n: mod.out_channels for n, mod in m.named_modules() if isinstance(mod, nn.Conv2d)}
    prune(m, PruneConfig(target_macs="4x", global_pruning=True, max_layer_ratio=0.6))
    for n, mod in m.named_modules():
        if isinstance(mod, nn.Conv2d):
            assert mod.out_channels >= int(0.4 * before[n]) - 7, n


def test_steps_and_finetune_callable_are_recorded():
    m = create_model("lenet5")
    calls = []
    res = prune(
        m,
        PruneConfig(ratio=0.5, steps=2, finetune_epochs=1, final_finetune_epochs=2),
        finetune=lambda model, epochs: calls.append(epochs),
        evaluator=lambda model: {"params": params(model)},
    )
    assert calls == [1, 1, 2]
    assert [s["step"] for s in res.steps] == [1, 2]
    assert res.steps[0]["params"] > res.steps[1]["params"] == params(m)
    assert res.steps[1]["final_finetuned"] == {"params": params(m)}


@pytest.mark.parametrize("criterion", CRITERIA)
def test_every_criterion_prunes_the_user_model(criterion, mini_data):
    m = create_model(USER_MODEL)
    data = load_data(mini_data, m.spec) if criterion in ("taylor", "hessian") else None
    cfg = PruneConfig(ratio=0.4, criterion=criterion, importance_batches=1)
    res = prune(m, cfg, data=data)
    assert res.after["params"] < 0.75 * res.before["params"]
    assert m(torch.randn(1, 1, 28, 28)).shape == (1, 10)


def test_hessian_accumulates_every_sample(mini_data):
    """`.grad` holds the mean squared per-sample gradient over 16 samples of each batch."""
    from compress.distributed import sharding

    m = create_model("lenet5")
    data = load_data(mini_data, m.spec)
    imp = make_importance("hessian")
    assert accumulate_gradients(m, imp, data, batches=2) == 32  # 16 samples from each of 2 batches
    assert all(p.grad is not None for p in m.parameters())
    got = m.fc3.bias.grad.clone()
    shard = sharding.train_sampler(len(data.train), data.config.shuffle_seed, 0)
    want = torch.zeros_like(m.fc3.bias)
    for i, (x, y) in enumerate(data.loader("train", sampler=shard)):
        if i == 2:
            break
        for xi, yi in zip(x[:16], y[:16], strict=True):
            m.zero_grad()
            nn.functional.cross_entropy(m(xi[None]), yi[None]).backward()
            want += m.fc3.bias.grad.pow(2)
    torch.testing.assert_close(got, want / 32, rtol=1e-4, atol=1e-7)


def test_hessian_importance_reads_the_accumulated_gradients(mini_data):
    """torch-pruning's Hessian importance scores channels from `.grad`: w² · g summed over
    conv1's output channels and conv2's matching input channels."""
    import torch_pruning as tp

    m = create_model("lenet5")
    imp = make_importance("hessian")
    accumulate_gradients(m, imp, load_data(mini_data, m.spec), batches=1)
    dg = tp.DependencyGraph().build_dependency(m, example_inputs=torch.randn(1, 1, 28, 28))
    group = dg.get_pruning_group(m.conv1, tp.prune_conv_out_channels, idxs=list(range(6)))
    scores = imp(group)
    w1, w2 = m.conv1.weight.detach(), m.conv2.weight.detach()
    own = (w1.pow(2) * m.conv1.weight.grad).sum((1, 2, 3))
    own += (w2.pow(2) * m.conv2.weight.grad).sum((0, 2, 3))
    assert scores.shape == (6,)
    assert torch.argsort(scores).tolist() == torch.argsort(own).tolist()


def test_kd_finetunes_each_step_from_the_unpruned_model(mini_data, monkeypatch):
    """kd=True: every fine-tuning round distills from the model as it was before pruning."""
    import compress.distillation.distill as distill_mod

    seen = []
    real = distill_mod.distill

    def spy(student, teacher, data, cfg, train_cfg=None, **kw):
        seen.append((params(teacher), params(student), cfg.epochs, cfg.temperature, cfg.alpha))
        return real(student, teacher, data, cfg, train_cfg, **kw)

    monkeypatch.setattr(distill_mod, "distill", spy)
    m = create_model("lenet5")
    dense = params(m)
    cfg = PruneConfig(ratio=0.5, steps=2, finetune_epochs=1, kd=True, kd_temperature=3.0)
    tune = TrainConfig(epochs=1, lr=1e-3, amp="off")
    prune(m, cfg, data=load_data(replace(mini_data, limit=128), m.spec), finetune=tune)
    assert [s[0] for s in seen] == [dense, dense]  # the same unpruned teacher both times
    assert seen[0][1] > seen[1][1] == params(m)  # the student shrinks step by step
    assert {s[2:] for s in seen} == {(1, 3.0, 0.5)}
    with pytest.raises(UsageError, match="callable owns its loss"):
        prune(create_model("lenet5"), cfg, finetune=lambda model, epochs: None)


def test_data_criteria_and_finetune_need_data():
    m = create_model("lenet5")
    with pytest.raises(UsageError, match="needs training data"):
        prune(m, PruneConfig(ratio=0.5, criterion="taylor"))
    with pytest.raises(UsageError, match="no fine-tuning recipe"):
        prune(m, PruneConfig(ratio=0.5, finetune_epochs=1))


def test_bn_scale_without_batchnorm_is_refused():
    with pytest.raises(UsageError, match="no BatchNorm"):
        prune(create_model("lenet5"), PruneConfig(ratio=0.5, criterion="bn-scale"))


def test_ratio_emptying_a_layer_is_refused_and_model_untouched():
    m = create_model("lenet5")
    before = shapes(m)
    with pytest.raises(UsageError, match=r"(?s)every channel of 'conv1'.*--ignore conv1"):
        prune(m, PruneConfig(ratio=0.9))
    assert shapes(m) == before
    res = prune(m, PruneConfig(ratio=0.9, ignore=["conv1"]))
    assert m.conv1.out_channels == 6 and res.after["params"] < res.before["params"]


def test_unreachable_target_restores_the_model():
    m = create_model("lenet5")
    w = m.conv2.weight.detach().clone()
    with pytest.raises(TargetUnreachableError, match="cannot be met"):
        prune(m, PruneConfig(target_macs="50x", max_layer_ratio=0.3))
    assert torch.equal(m.conv2.weight, w)


def test_unreachable_latency_target_is_reported():
    m = create_model("lenet5")
    with pytest.raises(TargetUnreachableError, match=r"latency target .* cannot be met"):
        prune(m, PruneConfig(target_latency_ms=1e-6, max_layer_ratio=0.2))
    assert params(m) == 61_706


def test_met_latency_target_prunes_nothing():
    m = create_model("lenet5")
    res = prune(m, PruneConfig(target_latency_ms=1e4))
    assert res.after == res.before and res.latency_trace[0]["ort_ms"] < 1e4


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
