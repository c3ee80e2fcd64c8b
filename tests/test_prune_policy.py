"""What `compress prune` used to decide itself now lives in the library: the fine-tune recipe,
`from_sensitivity` (a PruneConfig field, so recipes have it too) and the default target."""

from __future__ import annotations

import json
import logging

import pytest

from compress.pruning.config import FINETUNE_LR, PruneConfig
from models.errors import InvalidInputError, UsageError


def _report(path, drops: dict[str, list[float]]):
    layers = [
        {
            "name": n,
            "trials": [{"ratio": r, "drop": d} for r, d in zip((0.25, 0.5, 0.75), ds, strict=True)],
        }
        for n, ds in drops.items()
    ]
    path.mkdir(parents=True, exist_ok=True)
    (path / "sensitivity.json").write_text(json.dumps({"base_top1": 0.9, "layers": layers}))
    return path


def test_from_sensitivity_fills_layer_ratios(tmp_path):
    rep = _report(tmp_path / "sens", {"conv1": [0.001, 0.02, 0.3], "fc1": [0.0, 0.005, 0.009]})
    cfg = PruneConfig(from_sensitivity=str(rep), sensitivity_max_drop=1.0)
    assert cfg.layer_ratios == {"conv1": 0.25, "fc1": 0.75}
    assert cfg.target_kind == "layers"
    looser = PruneConfig(from_sensitivity=str(rep / "sensitivity.json"), sensitivity_max_drop=5)
    assert looser.layer_ratios == {"conv1": 0.5, "fc1": 0.75}


def test_from_sensitivity_is_one_target_among_the_others(tmp_path):
    rep = _report(tmp_path / "sens", {"conv1": [0.0, 0.0, 0.0]})
    with pytest.raises(UsageError, match="--ratio and --from-sensitivity"):
        PruneConfig(ratio=0.5, from_sensitivity=str(rep))
    with pytest.raises(UsageError, match="not both"):
        PruneConfig(from_sensitivity=str(rep), layer_ratios={"fc1": 0.5})
    with pytest.raises(InvalidInputError, match="cannot read sensitivity report"):
        PruneConfig(from_sensitivity=str(tmp_path / "missing"))


def test_recipe_prune_stage_takes_from_sensitivity(tmp_path):
    from compress.pipeline.table import STAGES

    rep = _report(tmp_path / "sens", {"conv2": [0.0, 0.004, 0.5]})
    built = STAGES.get("prune").validate(
        {"from_sensitivity": str(rep), "sensitivity_max_drop": 0.5, "finetune_epochs": 1}, "r:3"
    )
    assert built["PruneConfig"].layer_ratios == {"conv2": 0.5}


def test_finetune_recipe_lives_in_the_library():
    from compress.pruning.prune import finetune_recipe

    assert finetune_recipe(PruneConfig(ratio=0.5)) is None
    tc = finetune_recipe(
        PruneConfig(ratio=0.5, finetune_epochs=1, final_finetune_epochs=3, seed=7), amp="off"
    )
    assert tc is not None
    assert (tc.epochs, tc.lr, tc.schedule, tc.seed, tc.amp) == (3, FINETUNE_LR, "cosine", 7, "off")


def test_no_target_means_half_the_macs_said_in_one_line(caplog):
    with caplog.at_level(logging.INFO, logger="compress.pruning.config"):
        cfg = PruneConfig()
    assert (cfg.target_macs, cfg.target_kind) == ("2x", "macs")
    lines = [r.getMessage() for r in caplog.records if "no pruning target" in r.getMessage()]
    assert len(lines) == 1 and "--target-macs 2x" in lines[0]
