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
    from compress.pipeline.recipe import parse_recipe
    from compress.pipeline.runner import describe_plan

    rep = _report(tmp_path / "sens", {"conv2": [0.0, 0.004, 0.5]})
    recipe = parse_recipe(
        "name: r\nmodel: lenet5\nstages:\n  - train: {epochs: 1}\n"
        f"  - prune: {{from_sensitivity: {rep}, sensitivity_max_drop: 0.5, finetune_epochs: 1}}\n"
    )
    prune_step = describe_plan(recipe)[1]
    assert prune_step["kind"] == "prune"
    assert prune_step["options"]["PruneConfig"]["layer_ratios"] == {"conv2": 0.5}


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


def test_cli_prune_without_target_uses_the_default_and_says_what_to_do(tmp_path):
    """`compress prune --model resnet50`: the default target is named, then the missing
    weights are explained without any hard-coded timing."""
    from typer.testing import CliRunner

    from compress.cli.app import app

    r = CliRunner().invoke(app, ["prune", "--model", "resnet50", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert "no pruning target given: using --target-macs 2x" in text
    assert "give exactly one" not in text
    assert "resnet50 has no trained weights" in text
    for todo in ("compress train --model resnet50", "--weights FILE", "--weights random"):
        assert todo in text
    for timing in ("minute", "hour", " min ", "per epoch", "seconds"):
        assert timing not in text
    assert not (tmp_path / "o").exists()


def test_prune_help_names_the_default_target():
    from typer.testing import CliRunner

    from compress.cli.app import app
    from compress.pruning.config import DEFAULT_TARGET

    r = CliRunner().invoke(app, ["prune", "--help"], env={"COLUMNS": "200"})
    option = DEFAULT_TARGET[0].replace("_", "-")
    assert f"--{option} {DEFAULT_TARGET[1]}" in " ".join(r.output.split())


def test_no_hint_in_the_code_quotes_a_timing():
    """Timings depend on the machine: hints and help texts must not carry one."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pattern = re.compile(
        r"\b(about|~) ?\d+(\.\d+)? ?(s|min|minutes|hours?)\b|per epoch on|minutes per"
    )
    hits = [
        f"{p.relative_to(root)}: {m.group(0)}"
        for folder in ("compress", "models", "export")
        for p in (root / folder).rglob("*.py")
        for m in [pattern.search(p.read_text())]
        if m
    ]
    assert not hits, hits
