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


@pytest.mark.parametrize(
    ("args", "kd"),
    [
        (["--final-finetune-epochs", "1"], True),
        (["--final-finetune-epochs", "1", "--kd"], True),
        (["--final-finetune-epochs", "1", "--no-kd"], False),
        ([], False),  # nothing to fine-tune, nothing to distill
    ],
)
def test_cli_kd_defaults_to_on_when_fine_tuning(monkeypatch, args, kd):
    """`compress prune` distills from the unpruned model whenever it fine-tunes, unless told."""
    cfg, _ = _cli_prune_configs(monkeypatch, ["--ratio", "0.5", *args])
    assert cfg.kd is kd


def _cli_prune_configs(monkeypatch, args: list[str]):
    """The PruneConfig and fine-tuning TrainConfig `compress prune ARGS` hands the stage."""
    import sys
    import types

    from typer.testing import CliRunner

    from compress.cli.app import app

    seen = {}

    class Stop(Exception):
        pass

    def run_prune(ref, cfg, data, out, *, finetune, **kw):
        seen.update(prune=cfg, finetune=finetune)
        raise Stop  # before any work

    stage = types.SimpleNamespace(run_prune=run_prune)
    monkeypatch.setitem(sys.modules, "compress.stages.prune", stage)
    r = CliRunner().invoke(app, ["prune", "-m", "lenet5", "-o", "unused", *args])
    assert "prune" in seen, r.output
    return seen["prune"], seen["finetune"]


def _recipe_prune_configs(options: dict):
    from compress.pipeline.kinds import STAGES

    built = STAGES["prune"].validate(options, "recipe.yaml:3")
    return built["PruneConfig"], built["TrainConfig"]


def _flags(options: dict) -> list[str]:
    """The `compress prune` flags for recipe keys: {"kd": True, "lr": 0.002} -> --kd --lr 0.002."""
    out: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        out += [flag] if value is True else [flag, str(value)]
    return out


@pytest.mark.parametrize(
    "settings",
    [
        {"ratio": 0.5, "final_finetune_epochs": 2},
        {
            "target_macs": "2x",
            "finetune_epochs": 1,
            "final_finetune_epochs": 3,
            "finetune_schedule": "onecycle",
            "label_smoothing": 0.1,
            "augment": True,
            "kd": True,
            "lr": 0.002,
            "seed": 4,
            "amp": "off",
            "device": "cpu",
        },
        {"ratio": 0.5},
    ],
    ids=["defaults", "every-tuning-key", "no-tuning"],
)
def test_recipe_prune_stage_fine_tunes_like_the_cli(monkeypatch, settings):
    """Same settings, same configs: the recipe stage no longer fine-tunes with TrainConfig's
    defaults (lr 4e-3, one-cycle) where `compress prune` uses its own schedule."""
    cli_prune, cli_tune = _cli_prune_configs(monkeypatch, _flags(settings))
    recipe_prune, recipe_tune = _recipe_prune_configs(settings)
    assert recipe_prune == cli_prune
    assert recipe_tune == cli_tune
    if "lr" not in settings and cli_tune is not None:
        assert (cli_tune.lr, cli_tune.schedule, cli_tune.epochs) == (FINETUNE_LR, "cosine", 2)
    if "seed" in settings:
        assert (cli_tune.schedule, cli_tune.label_smoothing, cli_tune.seed) == ("onecycle", 0.1, 4)
        assert (cli_tune.lr, cli_tune.amp, cli_tune.epochs) == (0.002, "off", 3)


def test_recipe_prune_stage_keeps_its_other_training_keys():
    _, tune = _recipe_prune_configs(
        {"ratio": 0.5, "finetune_epochs": 2, "optimizer": "sgd", "channels_last": True}
    )
    assert (tune.optimizer, tune.channels_last, tune.lr, tune.epochs) == ("sgd", True, 1e-3, 2)


@pytest.mark.parametrize(
    "key, value, instead",
    [("epochs", 3, "finetune_epochs"), ("schedule", "onecycle", "finetune_schedule")],
)
def test_recipe_prune_stage_refuses_training_keys_pruning_owns(key, value, instead):
    """`epochs` or `schedule` in a prune stage were silently overridden; now they are refused
    with the key to use."""
    from compress.pipeline.recipe import RecipeError

    with pytest.raises(
        RecipeError, match=rf"(?s)recipe.yaml:3: '{key}' of the fine-tuning.*{instead}"
    ):
        _recipe_prune_configs({"ratio": 0.5, "finetune_epochs": 1, key: value})


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
