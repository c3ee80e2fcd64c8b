"""Pruning targets and limits: config validation, amounts, op counts, ratio/MACs/params/latency
targets met closely (or refused with the model restored), layer caps, steps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compress.models.errors import UsageError
from compress.models.zoo.registry import create_model
from compress.pruning.flops import Geometry, count_ops
from compress.pruning.graph import plan
from compress.pruning.prune import PruneConfig, TargetUnreachableError, parse_amount, prune
from compress.pruning.session import PruneSession
from tests.conftest import USER_MODEL, params

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
        ({"ratio": 0.5, "kd": True, "finetune_epochs": 0}, "no fine-tuning epochs"),
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


# ----------------------------------------------------------------------------- targets


def test_ratio_prunes_every_layer_but_the_head():
    m = create_model("lenet5")
    res = prune(m, PruneConfig(ratio=0.5))
    assert m.conv1.out_channels == 3 and m.conv2.out_channels == 8
    assert m.fc1.out_features == 64  # 60 rounded *up* to a multiple of 8: never fewer
    assert m.fc3.out_features == 10  # the classifier keeps its classes
    assert res.after.params == params(m) < 0.3 * res.before.params
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert res.layers["conv1"] == {"out_channels": [6, 3]}


def test_round_to_keeps_multiples_and_narrow_layers():
    m = create_model("resnet18", input_size=28)
    before = [mod.out_channels for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    prune(m, PruneConfig(ratio=0.3))
    widths = [mod.out_channels for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    for c, w in zip(before, widths, strict=True):
        if w == c:
            continue  # a layer of the residual sum kept whole, or the stem
        assert w >= int(c * 0.7)  # never fewer than asked
        assert w - c * 0.7 <= 0.05 * c + 1  # within the tolerance
        if c >= 160:  # 8 channels fit in 5 % of it: aligned
            assert w % 8 == 0, (c, w)
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
    assert res.after.of(key) <= goal
    assert res.after.of(key) >= 0.8 * goal  # the smallest ratio that meets it, not any ratio
    assert count_ops(m).macs == res.after.macs


def test_absolute_macs_target():
    m = create_model("lenet5")
    res = prune(m, PruneConfig(target_macs=200_000))
    assert res.after.macs <= 200_000 < res.before.macs


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
