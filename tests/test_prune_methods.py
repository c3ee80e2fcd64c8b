"""Pruning methods of issue #15: sparse learning in the budget, a fine-tuning schedule of its own,
isomorphic global ranking; and the bad inputs each of them refuses in one line."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from compress.cli.app import app
from compress.models.data.datasets import load_data
from compress.models.errors import UsageError
from compress.models.zoo.registry import create_model
from compress.pruning.config import PruneConfig, TargetUnreachableError
from compress.pruning.prune import prune
from compress.pruning.sparse import make_regularizer, sparse_learn
from compress.training.fit import TrainConfig

runner = CliRunner()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sparse_reg": 0.0}, "--sparse-reg must be a positive number"),
        ({"sparse_reg": -1e-4}, "--sparse-reg must be a positive number"),
        ({"sparse_reg": math.nan}, "--sparse-reg must be a positive number"),
        ({"sparse_epochs": 3, "final_finetune_epochs": 3}, "does not fit the budget"),
        ({"sparse_epochs": 2, "final_finetune_epochs": 1}, "does not fit the budget"),
        ({"sparse_method": "l0"}, "--sparse-method must be one of"),
        ({"finetune_schedule": "step"}, "--finetune-schedule must be one of"),
        ({"label_smoothing": 1.0}, "--label-smoothing"),
        ({"isomorphic": True}, "--isomorphic ranks channels globally"),
    ],
)
def test_bad_method_settings_are_refused(kwargs, message):
    with pytest.raises(UsageError, match=message.replace("-", r"\-")):
        PruneConfig(target_macs="2x", **kwargs)


def test_sparse_learning_separates_channel_groups(mini_data):
    torch.manual_seed(0)
    m = create_model("lenet5")
    data = load_data(mini_data, m.spec)
    cfg = PruneConfig(
        target_macs="2x", sparse_epochs=2, sparse_reg=5e-2, final_finetune_epochs=3, round_to=None
    )
    x = torch.randn(1, *m.spec.input_shape)
    before = make_regularizer(m, cfg, x)
    out = sparse_learn(m, cfg, data, TrainConfig(lr=5e-3, amp="off", weight_decay=0.5), x)
    assert out.epochs == 2 and math.isfinite(out.train_loss)
    assert before.reg == pytest.approx(5e-2)
    # a strong group penalty leaves some channel groups far weaker than the median
    assert out.group_norm_spread > 1.0


def test_prune_spends_sparse_epochs_inside_the_budget(mini_data, monkeypatch):
    import compress.pruning.session as session

    seen: list[int] = []
    real_fit = session.fit

    def spy(model, data, tc, **kw):
        seen.append(tc.epochs)
        assert tc.schedule == "onecycle" and tc.label_smoothing == pytest.approx(0.1)
        assert data.train.augment
        return real_fit(model, data, tc, **kw)

    monkeypatch.setattr(session, "fit", spy)
    m = create_model("lenet5")
    data = load_data(mini_data, m.spec)
    cfg = PruneConfig(
        target_macs="2x",
        round_to=None,
        sparse_epochs=1,
        final_finetune_epochs=3,
        finetune_schedule="onecycle",
        label_smoothing=0.1,
        augment=True,
        kd=False,  # plain fit, so the spy sees the fine-tuning run
    )
    res = prune(m, cfg, data=data, finetune={"amp": "off"})  # training keys over the default
    assert seen == [2]  # 3 in the budget, 1 spent on sparse learning
    assert res.sparse is not None and res.sparse.epochs == 1
    assert res.before.macs / res.after.macs >= 2
    assert not data.train.augment  # switched back after tuning


def test_isomorphic_global_pruning_keeps_the_layer_cap():
    m = create_model("lenet5")
    cfg = PruneConfig(
        target_macs="2x",
        global_pruning=True,
        isomorphic=True,
        max_layer_ratio=0.75,
        steps=2,
        round_to=None,
    )
    res = prune(m, cfg)
    assert res.before.macs / res.after.macs >= 2
    assert m.conv1.out_channels >= 2 and m.fc1.out_features >= 30


def test_target_out_of_reach_of_the_layer_cap_is_one_line():
    m = create_model("lenet5")
    with pytest.raises(TargetUnreachableError, match="cannot be met"):
        prune(m, PruneConfig(target_macs="50x", max_layer_ratio=0.3, round_to=None))


def test_cli_refuses_a_bad_coefficient_in_one_line(tmp_path):
    r = runner.invoke(
        app,
        [
            "prune",
            "--model",
            "lenet5",
            "--weights",
            "random",
            "--out",
            str(tmp_path / "o"),
            "--target-macs",
            "2x",
            "--sparse-reg",
            "nan",
            "--sparse-epochs",
            "1",
            "--final-finetune-epochs",
            "2",
        ],
    )
    assert r.exit_code == 2, r.output
    assert "--sparse-reg must be a positive number" in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_recipe_keys_reach_prune_config():
    from compress.pipeline.kinds import build_configs

    built = build_configs(
        {"prune": PruneConfig, "train": TrainConfig},
        {
            "target_macs": "4x",
            "sparse_epochs": 1,
            "final_finetune_epochs": 5,
            "finetune_schedule": "onecycle",
            "label_smoothing": 0.1,
            "augment": True,
            "lr": 2e-3,
        },
        "prune",
    )
    cfg = built["prune"]
    assert (cfg.sparse_epochs, cfg.finetune_schedule, cfg.augment) == (1, "onecycle", True)
    assert cfg.label_smoothing == pytest.approx(0.1) and built["train"].lr == 2e-3
