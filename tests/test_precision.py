"""Mixed precision: what `--amp` resolves to per device, loss-scaling overflow counting, and
that bf16 / channels-last training still trains and stores fp32 weights."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import compress.training.fit as train_mod
import compress.training.precision as precision
from compress.cli.app import app
from compress.models.data.datasets import load_data
from compress.models.errors import UnsupportedError, UsageError
from compress.models.zoo.registry import create_model, spec_of
from compress.training.fit import TrainConfig, fit
from compress.training.precision import AmpPolicy, resolve_amp
from tests.conftest import FASHION_MINI

CPU = torch.device("cpu")


@pytest.fixture
def native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))


@pytest.fixture
def no_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))


def test_off_is_fp32_and_unknown_modes_are_usage_errors():
    p = resolve_amp("off", CPU)
    assert p.dtype is None and p.precision == "fp32" and not p.scaler
    with pytest.raises(UsageError, match="--amp must be one of"):
        resolve_amp("fp8", CPU)


def test_fp16_needs_cuda():
    with pytest.raises(UnsupportedError, match="fp16 needs a CUDA GPU"):
        resolve_amp("fp16", CPU)


def test_auto_on_cpu_picks_bf16_only_with_native_instructions(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert resolve_amp("auto", CPU).precision == "bf16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert resolve_amp("auto", CPU).precision == "bf16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    p = resolve_amp("auto", CPU)
    assert p.precision == "fp32" and "no native bf16" in p.reason


def test_auto_keeps_tiny_models_in_fp32_on_a_bf16_cpu(native_bf16):
    tiny = resolve_amp("auto", CPU, create_model("lenet5"))
    assert tiny.precision == "fp32" and "too small (0.42 M MACs" in tiny.reason
    assert resolve_amp("auto", CPU, create_model("resnet18")).precision == "bf16"
    assert resolve_amp("bf16", CPU, create_model("lenet5")).precision == "bf16"  # asked for


def test_auto_avoids_bf16_with_passive_openmp_threads(native_bf16, monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    p = resolve_amp("auto", CPU, create_model("resnet18"))
    assert p.precision == "fp32" and "PASSIVE" in p.reason
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert resolve_amp("auto", CPU, create_model("resnet18")).precision == "bf16"


def test_forward_macs_counts_conv_and_linear_layers():
    assert precision.forward_macs(create_model("lenet5")) == 416_520
    assert precision.forward_macs(torch.nn.Linear(3, 4)) is None  # no spec: no probe


def test_explicit_bf16_without_native_support_warns_loudly(no_native_bf16, caplog):
    with caplog.at_level(logging.WARNING, logger="compress.training.precision"):
        p = resolve_amp("bf16", CPU)
    assert p.precision == "bf16" and "emulated" in p.reason
    assert any("SLOWER" in r.getMessage() for r in caplog.records)


def test_explicit_bf16_with_native_support_is_quiet(native_bf16, caplog):
    with caplog.at_level(logging.WARNING, logger="compress.training.precision"):
        assert resolve_amp("bf16", CPU).precision == "bf16"
    assert not caplog.records


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="Linux only")
def test_cpu_flags_reads_this_machine():
    flags = precision.cpu_flags.__wrapped__()  # uncached
    assert flags and precision.cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_train_card_records_training_precision(tmp_path, mini_data):
    from compress.models.artifacts.artifact import read_card
    from compress.stages.common import ModelRef
    from compress.stages.train import run_train

    out = tmp_path / "t"
    run_train(ModelRef("lenet5"), out, TrainConfig(epochs=1, amp="bf16"), mini_data)
    card = read_card(out)
    assert card.training_precision == "bf16" and card.precision == "fp32"  # type: ignore[attr-defined]
    assert card.history[-1]["fit"]["precision"] == "bf16"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_auto_is_fp16_with_a_scaler():
    p = resolve_amp("auto", torch.device("cuda"))
    assert p.precision == "fp16" and p.scaler


def test_overflow_steps_are_counted_and_skipped(monkeypatch, mini_data):
    """A scaled loss that overflows once: the scaler skips that step and fit counts it."""
    policy = AmpPolicy("fp16", torch.bfloat16, True, "test: scaler on CPU")
    monkeypatch.setattr(train_mod, "resolve_amp", lambda mode, device, model=None: policy)
    calls = {"n": 0}

    def loss_fn(logits, y, x):
        calls["n"] += 1
        loss = torch.nn.functional.cross_entropy(logits, y)
        return loss * math.inf if calls["n"] == 1 else loss

    model = create_model("lenet5")
    data = load_data(mini_data, spec_of(model))
    r = fit(model, data, TrainConfig(epochs=1, amp="auto"), loss_fn=loss_fn)
    assert r.overflow_steps == 1 and r.steps == len(data.loader("train"))
    assert math.isfinite(r.epochs[-1]["train_loss"])  # the skipped step's inf is not averaged
    assert r.precision == "bf16" and math.isfinite(r.epochs[-1]["val_loss"])
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize(("amp", "channels_last"), [("bf16", False), ("off", True)])
def test_bf16_and_channels_last_training_learn_and_keep_fp32_weights(mini_data, amp, channels_last):
    torch.manual_seed(0)
    model = create_model("lenet5")
    data = load_data(mini_data, spec_of(model))
    r = fit(model, data, TrainConfig(epochs=3, lr=5e-3, amp=amp, channels_last=channels_last))
    assert r.precision == ("bf16" if amp == "bf16" else "fp32")
    assert r.val_top1 is not None and r.val_top1 > 0.4
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_train_cli_rejects_an_amp_mode_the_device_cannot_do(tmp_path):
    res = CliRunner().invoke(
        app,
        ["train", "-m", "lenet5", "--out", str(tmp_path / "o"), "--amp", "fp16",
         "--device", "cpu", "--data-dir", str(FASHION_MINI), "--epochs", "1"],
    )  # fmt: skip
    assert res.exit_code == 4, res.output
    assert "fp16 needs a CUDA GPU" in res.output and "Traceback" not in res.output
