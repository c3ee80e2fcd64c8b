"""Knowledge distillation: the loss, the frozen teacher, caching, feature adapters, the stage
(lineage in the card) and the CLI, including a pruned student distilled from its dense parent."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from compress.cli.app import app
from compress.distillation.distill import DistillConfig, check_compatible, distill, kd_loss
from compress.distillation.features import parse_pairs
from compress.models.artifacts.artifact import load_model, read_card, save_model
from compress.models.data.datasets import load_data
from compress.models.errors import InvalidInputError, UnsupportedError, UsageError, WeightsError
from compress.models.zoo.registry import attach_spec, create_model, spec_of
from compress.stages.common import ModelRef
from compress.stages.distill import run_distill
from compress.training.evaluate import evaluate, torch_predictor
from compress.training.fit import TrainConfig
from tests.conftest import MINI

runner = CliRunner()


def prune_lenet(model: nn.Module, ratio: float) -> nn.Module:
    """Physically remove `ratio` of LeNet-5's channels (L2 magnitude), head kept."""
    import torch_pruning as tp

    pruner = tp.pruner.MetaPruner(
        model,
        torch.randn(1, 1, 28, 28),
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ratio,
        ignored_layers=[model.fc3],
    )
    pruner.step()
    return model


@pytest.fixture(scope="module")
def pruned_lenet(trained_lenet, tmp_path_factory) -> Path:
    """A 50 %-channel-pruned copy of the trained LeNet-5 artifact (its lineage kept)."""
    model, card = load_model(trained_lenet)
    prune_lenet(model, 0.5)
    card.add_history("prune", ratio=0.5, importance="l2-magnitude")
    out = tmp_path_factory.mktemp("pruned") / "lenet5-p50"
    save_model(model, out, card)
    return out


# ---------------------------------------------------------------------------- the loss


def test_kd_loss_blends_soft_and_hard_terms():
    torch.manual_seed(0)
    s, t, y = torch.randn(16, 10), torch.randn(16, 10), torch.randint(0, 10, (16,))
    assert torch.allclose(kd_loss(s, t, y, 4.0, 0.0), F.cross_entropy(s, y))
    assert float(kd_loss(t, t, y, 4.0, 1.0)) == pytest.approx(0.0, abs=1e-6)
    soft = float(kd_loss(s, t, y, 2.0, 1.0))
    kl = F.kl_div(F.log_softmax(s / 2, 1), F.softmax(t / 2, 1), reduction="batchmean")
    assert soft == pytest.approx(4.0 * float(kl), rel=1e-5)  # T^2 scaling
    mixed = float(kd_loss(s, t, y, 2.0, 0.3))
    assert mixed == pytest.approx(0.3 * soft + 0.7 * float(F.cross_entropy(s, y)), rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0.0}, "--temperature must be > 0"),
        ({"temperature": -1.0}, "--temperature must be > 0"),
        ({"temperature": math.nan}, "--temperature must be > 0"),
        ({"alpha": -0.1}, "--alpha must be in \\[0, 1\\]"),
        ({"alpha": 1.5}, "--alpha must be in \\[0, 1\\]"),
        ({"epochs": -1}, "--epochs must be >= 0"),
        ({"lr": 0.0}, "--lr must be > 0"),
        ({"feature_weight": -1.0}, "--feature-weight must be >= 0"),
        ({"features": "layer3:"}, "bad pair 'layer3:'"),
        ({"features": [("layer3",)]}, "feature pair must be"),
    ],
)
def test_invalid_distill_config_is_a_usage_error(kwargs, match):
    with pytest.raises(UsageError, match=match):
        DistillConfig(**kwargs)


def test_feature_pairs_parse():
    assert parse_pairs("auto") == "auto"
    assert parse_pairs(None) is None and parse_pairs("off") is None
    assert parse_pairs("layer3:layer3, layer4") == [("layer3", "layer3"), ("layer4", "layer4")]
    assert DistillConfig(features="conv2:conv1").features == [("conv2", "conv1")]


def test_teacher_and_student_must_agree_on_classes_and_shape():
    t = spec_of(create_model("lenet5"))
    with pytest.raises(InvalidInputError, match="10 classes but student"):
        check_compatible(t, spec_of(create_model("lenet5", num_classes=5)))
    with pytest.raises(InvalidInputError, match=r"1x28x28 but student .* 1x32x32"):
        check_compatible(t, spec_of(create_model("lenet5", input_size=32)))


# ---------------------------------------------------------------------------- distill()


def test_distill_trains_the_student_and_leaves_the_teacher_untouched(trained_lenet, mini_data):
    teacher, _ = load_model(trained_lenet)
    before_t = {k: v.clone() for k, v in teacher.state_dict().items()}
    torch.manual_seed(0)
    student = create_model("lenet5")
    data = load_data(mini_data, spec_of(student))
    acc0 = evaluate(torch_predictor(student), data.loader("test"), 10).top1
    r = distill(student, teacher, data, DistillConfig(epochs=4, lr=5e-3), TrainConfig(amp="off"))
    acc1 = evaluate(torch_predictor(student), data.loader("test"), 10).top1
    assert acc1 > acc0 + 0.2, (acc0, acc1)
    assert r.teacher_cached and r.fit.precision == "fp32" and len(r.fit.epochs) == 4
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before_t[k]), k
    assert all(p.requires_grad for p in teacher.parameters())  # restored after freezing


def test_cached_teacher_logits_train_like_the_live_teacher(trained_lenet, mini_data):
    teacher, _ = load_model(trained_lenet)
    weights = []
    for cache in (True, False):
        torch.manual_seed(0)
        student = create_model("lenet5")
        data = load_data(mini_data, spec_of(student))
        cfg = DistillConfig(epochs=2, lr=5e-3, cache_teacher=cache)
        r = distill(student, teacher, data, cfg, TrainConfig(amp="off"))
        assert r.teacher_cached is cache
        weights.append(torch.cat([p.detach().flatten() for p in student.parameters()]))
    assert (weights[0] - weights[1]).abs().max() < 1e-3


def test_cache_is_refused_with_augmentation(trained_lenet, mini_data):
    from dataclasses import replace

    teacher, _ = load_model(trained_lenet)
    student = create_model("lenet5")
    data = load_data(replace(mini_data, augment=True), spec_of(student))
    with pytest.raises(UsageError, match="without augmentation"):
        distill(student, teacher, data, DistillConfig(epochs=1, cache_teacher=True))


def test_output_shape_mismatch_is_caught_on_a_probe_batch(trained_lenet, mini_data):
    class Liar(nn.Module):  # claims 10 classes, returns 3
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(28 * 28, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1))

    teacher, _ = load_model(trained_lenet)
    student = Liar()
    attach_spec(student, spec_of(teacher))
    data = load_data(mini_data, spec_of(teacher))
    with pytest.raises(InvalidInputError, match=r"teacher \(8, 10\), student \(8, 3\)"):
        distill(student, teacher, data, DistillConfig(epochs=1), TrainConfig(amp="off"))


def test_feature_distillation_trains_adapters_for_a_pruned_student(
    pruned_lenet, trained_lenet, mini_data
):
    teacher, _ = load_model(trained_lenet)
    student, _ = load_model(pruned_lenet)
    data = load_data(mini_data, spec_of(student))
    cfg = DistillConfig(epochs=1, lr=3e-3, features="auto")
    r = distill(student, teacher, data, cfg, TrainConfig(amp="off"))
    pairs = {(p["teacher"], p["student"]): p for p in r.feature_pairs}
    assert ("pool2", "pool2") in pairs and ("relu1", "relu1") in pairs
    assert pairs[("pool2", "pool2")]["adapter"] == "Conv2d"  # 8 -> 16 channels
    assert pairs[("pool2", "pool2")]["student_shape"] == [8, 5, 5]
    assert not r.teacher_cached  # hooks need the live teacher
    assert math.isfinite(r.fit.epochs[-1]["train_loss"])
    # hooks are removed afterwards: a forward no longer touches them
    assert not any(m._forward_hooks for m in student.modules())
    assert not any(m._forward_hooks for m in teacher.modules())


class TinyNet(nn.Module):
    """A different architecture: 4-channel 3x3 conv, global pool, linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def test_feature_distillation_across_architectures(trained_lenet, mini_data):
    teacher, _ = load_model(trained_lenet)
    student = TinyNet()
    attach_spec(student, spec_of(teacher))
    data = load_data(mini_data, spec_of(teacher))
    conv_before = student.conv.weight.detach().clone()
    r = distill(student, teacher, data, DistillConfig(epochs=1, features="auto"))
    assert [(p["teacher"], p["student"]) for p in r.feature_pairs] == [("pool2", "pool")]
    assert r.feature_pairs[0]["teacher_shape"] == [16, 5, 5]  # pooled to 4x4 for the loss
    assert r.feature_pairs[0]["student_shape"] == [4, 4, 4]
    assert not torch.equal(conv_before, student.conv.weight)
    cfg = DistillConfig(epochs=1, features="conv2:conv")
    r = distill(student, teacher, data, cfg, TrainConfig(amp="off"))
    assert r.feature_pairs[0]["adapter"] == "Conv2d"
    with pytest.raises(UsageError, match="the student has no layer 'nope'"):
        distill(student, teacher, data, DistillConfig(epochs=1, features="conv2:nope"))


# ---------------------------------------------------------------------------- the stage


def test_alpha_zero_reproduces_plain_training_exactly(trained_lenet, mini_data, tmp_path):
    """Same seed, same init, same batches: with alpha=0 only the loss could differ, and it
    is plain cross-entropy, so the comparison KD vs alone isolates the teacher's effect."""
    from compress.stages.train import run_train

    cfg = TrainConfig(epochs=2, lr=5e-3, amp="off", seed=3)
    run_train(ModelRef("lenet5"), tmp_path / "alone", cfg, mini_data)
    kd = DistillConfig(alpha=0.0)
    run_distill(
        ModelRef(str(trained_lenet)), ModelRef("lenet5"), tmp_path / "kd", kd, mini_data,
        train=TrainConfig(epochs=2, lr=5e-3, amp="off", seed=3),
    )  # fmt: skip
    a, _ = load_model(tmp_path / "alone")
    b, _ = load_model(tmp_path / "kd")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.allclose(va, vb, atol=1e-6), k


def test_untrained_teacher_is_refused(mini_data, tmp_path):
    with pytest.raises(WeightsError, match="teacher lenet5 has no weights"):
        run_distill(
            ModelRef("lenet5"),
            ModelRef("lenet5"),
            tmp_path / "o",
            DistillConfig(epochs=1),
            mini_data,
        )
    assert not (tmp_path / "o").exists()


def test_impossible_amp_fails_before_any_work(trained_lenet, mini_data, tmp_path):
    with pytest.raises(UnsupportedError, match="fp16 needs a CUDA GPU"):
        run_distill(
            ModelRef(str(trained_lenet)), ModelRef("lenet5"), tmp_path / "o",
            DistillConfig(epochs=1), mini_data, train=TrainConfig(amp="fp16", device="cpu"),
        )  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_stage_card_records_teacher_lineage_and_precision(
    pruned_lenet, trained_lenet, mini_data, tmp_path
):
    out = tmp_path / "kd"
    r = run_distill(
        ModelRef(str(trained_lenet)),
        ModelRef(str(pruned_lenet)),
        out,
        DistillConfig(epochs=2, lr=2e-3, temperature=3.0, alpha=0.8),
        mini_data,
        train=TrainConfig(amp="auto"),
    )
    card = read_card(out)
    entry = card.history[-1]
    assert [h["stage"] for h in card.history][-2:] == ["prune", "distill"]
    assert entry["teacher"]["content_hash"] == read_card(trained_lenet).content_hash
    assert entry["teacher"]["history"][-1]["stage"] == "train"
    assert entry["kd"]["temperature"] == 3.0 and entry["kd"]["alpha"] == 0.8
    assert entry["metrics_before"]["test"]["top1"] == r.before["test"]["top1"]
    assert card.training_precision == r.precision
    assert card.precision == "fp32"
    model, _ = load_model(out)  # pruned shapes survive; weights stored as fp32
    assert dict(model.named_modules())["conv2"].out_channels == 8  # type: ignore[union-attr]
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())


# ---------------------------------------------------------------------------- the CLI


def test_cli_distills_a_pruned_model_from_its_dense_parent(pruned_lenet, trained_lenet, tmp_path):
    out, js = tmp_path / "kd", tmp_path / "kd.json"
    args = ["distill", "-t", str(trained_lenet), "-s", str(pruned_lenet), "--out", str(out)]
    res = runner.invoke(
        app, [*args, "--data-dir", MINI, "--epochs", "2", "--amp", "off", "--json", str(js)]
    )
    assert res.exit_code == 0, res.output
    assert "distilled" in res.output and "student test top-1" in res.output
    summary = json.loads(js.read_text())
    assert summary["precision"] == "fp32" and summary["overflow_steps"] == 0
    assert summary["metrics"]["val"]["top1"] >= summary["before"]["val"]["top1"] - 0.05
    res = runner.invoke(app, [*args, "--data-dir", MINI, "--epochs", "1"])
    assert res.exit_code == 2 and "exists" in res.output  # no --overwrite


def test_cli_different_architecture_teacher_from_weights_file(tmp_path):
    """A ResNet-18 teacher given as zoo name + weights file, a LeNet-5 student."""
    from safetensors.torch import save_file

    teacher = create_model("resnet18")
    save_file(teacher.state_dict(), str(tmp_path / "r18.safetensors"))
    out = tmp_path / "kd"
    res = runner.invoke(
        app,
        [
            "distill", "-t", "resnet18", "--teacher-weights", str(tmp_path / "r18.safetensors"),
            "-s", "lenet5", "--out", str(out), "--data-dir", MINI, "--epochs", "1",
            "--limit", "256", "--amp", "off",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    entry = read_card(out).history[-1]
    assert entry["teacher"]["architecture"] == "resnet18"
    assert entry["teacher"]["metrics"]["source"] == "measured"
    assert read_card(out).architecture.name == "lenet5"


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--temperature", "0"], 2, "--temperature must be > 0"),
        (["--alpha", "1.5"], 2, "--alpha must be in [0, 1]"),
        (["--amp", "fp16", "--device", "cpu"], 4, "fp16 needs a CUDA GPU"),
        (["--amp", "fp8"], 2, "--amp must be one of"),
        (["--num-classes", "5"], 3, "10 classes but student lenet5 has 5"),
        (["--input-size", "32"], 3, "takes input 1x28x28"),
        (["--feature-distill", "conv2:nope"], 2, "the student has no layer 'nope'"),
    ],
)
def test_cli_bad_input_gives_one_clear_line(trained_lenet, tmp_path, extra, code, message):
    out = tmp_path / "o"
    res = runner.invoke(
        app,
        [
            "distill", "-t", str(trained_lenet), "-s", "lenet5", "--out", str(out),
            "--data-dir", MINI, "--epochs", "1", *extra,
        ],
    )  # fmt: skip
    assert res.exit_code == code, res.output
    assert message in " ".join(res.output.split())
    assert "Traceback" not in res.output
    assert not out.exists()


def test_cli_untrained_teacher_is_invalid_input(tmp_path):
    res = runner.invoke(
        app,
        ["distill", "-t", "lenet5", "-s", "lenet5", "--out", str(tmp_path / "o"),
         "--data-dir", MINI],
    )  # fmt: skip
    assert res.exit_code == 3, res.output
    assert "teacher lenet5 has no weights" in res.output
