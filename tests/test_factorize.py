"""Truncated-SVD factorization of Linear layers: rank checks (break-even, layer size), the exact
reconstruction at full rank, the artifact round trip without pickle, ONNX export, and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from compress.factorization.svd import FactorizeConfig, factorize, low_rank, rank_for
from compress.models.errors import UnsupportedError, UsageError
from compress.models.zoo.lowrank import LowRankLinear, break_even
from compress.models.zoo.registry import create_model
from tests.conftest import MINI, cli


def test_config_needs_exactly_one_rank_source() -> None:
    with pytest.raises(UsageError, match="exactly one"):
        FactorizeConfig()
    with pytest.raises(UsageError, match="exactly one"):
        FactorizeConfig(rank=4, param_target=0.5)
    with pytest.raises(UsageError, match=r"\(0, 1\)"):
        FactorizeConfig(param_target=1.5)


def test_rank_above_break_even_or_the_layer_is_refused() -> None:
    fc = nn.Linear(400, 120)  # break-even 400*120/520 = 92.3
    assert break_even(120, 400) == pytest.approx(92.31, abs=0.01)
    assert rank_for("fc1", fc, FactorizeConfig(rank=92)) == 92
    with pytest.raises(
        UsageError, match=r"saves nothing: the break-even rank is mn/\(m\+n\) = 92\.3"
    ):
        rank_for("fc1", fc, FactorizeConfig(rank=93))
    with pytest.raises(UsageError, match=r"larger than the layer: at most min\(m, n\) = 120"):
        rank_for("fc1", fc, FactorizeConfig(rank=121))
    assert rank_for("fc1", fc, FactorizeConfig(param_target=0.25)) == 23


def test_refusal_leaves_the_model_untouched() -> None:
    model = create_model("lenet5")
    with pytest.raises(UsageError, match="fc2"):  # fc1 would accept 60, fc2 (120->84) can't
        factorize(model, FactorizeConfig(rank=60))
    assert isinstance(model.fc1, nn.Linear)
    with pytest.raises(UnsupportedError, match="conv1 is a Conv2d"):
        factorize(model, FactorizeConfig(ranks={"conv1": 2}))


def test_svd_is_exact_at_full_rank_and_close_when_truncated() -> None:
    torch.manual_seed(0)
    fc = nn.Linear(8, 6)
    model = nn.Sequential(fc)
    model.spec = create_model("lenet5").spec  # type: ignore[assignment]
    x = torch.randn(5, 8)
    ref = fc(x)
    low, energy = low_rank(fc, 6)  # full rank (factorize itself refuses it: saves nothing)
    assert energy == pytest.approx(1.0) and torch.allclose(low(x), ref, atol=1e-5)
    recs = factorize(model, FactorizeConfig(ranks={"0": 3}))
    assert isinstance(model[0], LowRankLinear) and recs[0].params_after == 3 * (8 + 6)
    assert 0 < recs[0].energy_kept < 1


def test_factorized_artifact_reloads_without_pickle_and_exports(trained_lenet, tmp_path) -> None:
    from compress.models.artifacts.artifact import load_model
    from compress.models.data.datasets import DataConfig
    from compress.stages.common import ModelRef
    from compress.stages.factorize import run_factorize

    out = tmp_path / "fact"
    data = DataConfig(dataset="fashion-mnist", data_dir=MINI, batch_size=64)
    cfg = FactorizeConfig(ranks={"fc1": 16, "fc2": 12}, epochs=1)
    s = run_factorize(ModelRef(str(trained_lenet)), out, cfg, data)
    assert s.ranks == {"fc1": 16, "fc2": 12} and s.params < s.params_before
    card = json.loads((out / "card.json").read_text())
    assert card["factorization"]["ranks"] == {"fc1": 16, "fc2": 12}
    assert card["structure"]["fc1"] == {
        "type": "LowRankLinear", "in_features": 400, "out_features": 120, "rank": 16, "bias": True
    }  # fmt: skip
    model, _ = load_model(out)
    assert isinstance(model.fc1, LowRankLinear) and model.fc1.first.weight.shape == (16, 400)
    assert s.metrics["val"]["top1"] > 0.3
    from compress.export.onnx.convert import ExportConfig
    from compress.stages.export import run_export

    run_export(ModelRef(str(out)), tmp_path / "onnx", ExportConfig(), data)  # parity-gated
    assert (tmp_path / "onnx" / "model.onnx").stat().st_size < 0.6 * 248_000


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("--rank", "100"), 2, "saves nothing"),
        (("--layer-rank", "fc3=11"), 2, "larger than the layer"),
        (("--layer-rank", "conv1=2"), 4, "conv1 is a Conv2d"),
        (("--layer-rank", "fc1"), 2, "NAME=RANK"),
    ],
)
def test_cli_bad_rank_is_one_line(trained_lenet, tmp_path, args, code, text) -> None:
    out = tmp_path / "o"
    res = cli(
        "factorize", "--model", str(trained_lenet), "--out", str(out), "--data-dir", MINI, *args
    )
    assert res.exit_code == code, res.output
    assert text in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_cli_factorizes(trained_lenet, tmp_path) -> None:
    out = tmp_path / "f"
    res = cli(
        "factorize", "--model", str(trained_lenet), "--out", str(out), "--data-dir", MINI,
        "--param-target", "0.25", "--epochs", "0",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "fc1: 400 -> 120 at rank 23" in res.output
    assert json.loads((out / "card.json").read_text())["history"][-1]["stage"] == "factorize"


def test_recipe_stage_factorize_validates_its_options() -> None:
    from compress.pipeline.recipe import RecipeError
    from compress.pipeline.table import STAGES

    kind = STAGES.get("factorize")
    assert kind.produces == "pytorch" and kind.needs_trained
    cfg = kind.validate({"param_target": 0.5, "epochs": 1}, "stage 3")["factorize"]
    assert cfg.param_target == 0.5 and cfg.epochs == 1
    with pytest.raises(UsageError, match="--rank must be >= 1"):
        kind.validate({"rank": 0}, "stage 3")
    with pytest.raises(RecipeError, match="unknown option 'ratio'"):
        kind.validate({"ratio": 0.5}, "stage 3")
