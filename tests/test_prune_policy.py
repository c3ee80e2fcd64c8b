"""What `compress prune` used to decide itself lives in the library: the fine-tuning policy
(one owner for the CLI, recipes and the API), `from_sensitivity` (a PruneConfig field, so
recipes have it too) and the default target."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest

import compress.api
from compress.models.errors import InvalidInputError, UsageError
from compress.pruning.config import FINETUNE_LR, PruneConfig
from compress.pruning.policy import (
    DEFAULT_FINETUNE_EPOCHS,
    FinetunePlan,
    SourceFacts,
    plan_finetune,
)
from compress.training.config import TrainConfig


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
    from compress.pipeline.runner import plan

    rep = _report(tmp_path / "sens", {"conv2": [0.0, 0.004, 0.5]})
    recipe = parse_recipe(
        "name: r\nmodel: lenet5\nstages:\n  - train: {epochs: 1}\n"
        f"  - prune: {{from_sensitivity: {rep}, sensitivity_max_drop: 0.5, finetune_epochs: 1}}\n"
    )
    prune_step = plan(recipe)[1]
    assert prune_step.spec.kind == "prune"
    assert prune_step.config["prune"].layer_ratios == {"conv2": 0.5}


def test_default_policy_fine_tunes_where_the_data_is_known():
    """5 epochs of KD fine-tuning after the last step where the data is known; none for
    untrained weights or unknown data, said in one line with the flag that changes it."""
    plan = plan_finetune(PruneConfig(ratio=0.5), None, SourceFacts(augmented=True))
    assert plan.train is not None and plan.epochs == DEFAULT_FINETUNE_EPOCHS
    assert (plan.config.final_finetune_epochs, plan.config.finetune_epochs) == (5, 0)
    assert plan.config.kd is True and plan.config.augment is True  # as the parent trained
    assert (plan.train.lr, plan.train.schedule, plan.train.epochs) == (FINETUNE_LR, "cosine", 5)
    assert "--finetune-epochs" in plan.said
    for facts, why in (
        (SourceFacts(trained=False), "untrained"),
        (SourceFacts(data_known=False), "training data of this model is unknown"),
    ):
        plan = plan_finetune(PruneConfig(ratio=0.5), None, facts)
        assert plan.train is None and plan.epochs == 0 and plan.config.kd is False
        assert why in plan.said
    asked = plan_finetune(PruneConfig(ratio=0.5, finetune_epochs=0), None, SourceFacts())
    assert asked.train is None and asked.said.startswith("no fine-tuning, as asked")
    assert asked.config.criterion == "taylor"  # trained weights, known data
    blind = plan_finetune(PruneConfig(ratio=0.5), None, SourceFacts(data_known=False))
    assert blind.config.criterion == "l2"  # no data for gradients: magnitude


def test_default_rewinds_the_parents_recipe_where_the_card_records_it():
    """LR rewinding: the parent's optimizer, peak LR and label smoothing on a fresh one-cycle;
    a key given explicitly (--lr) still wins."""
    recipe = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "label_smoothing": 0.1,
              "channels_last": True, "checkpoint_dir": "x", "epochs": 10}  # fmt: skip
    plan = plan_finetune(PruneConfig(ratio=0.5), None, SourceFacts(recipe=recipe))
    t = plan.train
    assert (t.optimizer, t.lr, t.schedule, t.label_smoothing, t.channels_last) == (
        "sgd", 0.1, "onecycle", 0.1, True)  # fmt: skip
    assert (t.epochs, t.checkpoint_dir) == (DEFAULT_FINETUNE_EPOCHS, None)
    assert plan.config.label_smoothing == 0.1 and "rewound" in plan.said
    mine = plan_finetune(PruneConfig(ratio=0.5), {"lr": 0.01}, SourceFacts(recipe=recipe))
    assert mine.train.lr == 0.01 and mine.train.optimizer == "sgd"


def test_a_whole_trainconfig_is_honoured_or_refused():
    tc = TrainConfig(epochs=3, lr=2e-3, schedule="onecycle", amp="off")
    plan = plan_finetune(PruneConfig(ratio=0.5), tc, SourceFacts())
    assert plan.train == tc and plan.epochs == 3 and plan.config.finetune_schedule == "onecycle"
    for cfg, says in (
        (PruneConfig(ratio=0.5, final_finetune_epochs=5), "epochs=3 but the PruneConfig"),
        (PruneConfig(ratio=0.5, finetune_schedule="cosine"), "finetune_schedule='cosine'"),
    ):
        with pytest.raises(UsageError, match=says):
            plan_finetune(cfg, tc, SourceFacts())
    with pytest.raises(UsageError, match="needs the data set"):
        plan_finetune(PruneConfig(ratio=0.5), tc, SourceFacts(data_known=False))


class _Stop(Exception):
    pass


def _stage_request(monkeypatch, tmp_path, call):
    """The PruneConfig and fine-tuning request that `call` makes the prune stage hand
    `plan_finetune`, stopped there (before any work)."""
    import compress.stages.prune as stage

    seen = {}

    def plan(cfg, finetune, facts):
        seen.update(prune=cfg, finetune=finetune)
        raise _Stop("stopped at plan_finetune")

    monkeypatch.setattr(stage, "plan_finetune", plan)
    monkeypatch.setattr(stage, "require_trained", lambda src: None)
    monkeypatch.chdir(tmp_path)
    output = call()
    assert "prune" in seen, output
    return seen["prune"], seen["finetune"]


def _cli_request(monkeypatch, tmp_path, args: list[str]):
    """The request `compress prune ARGS` hands the stage (the CLI calls compress.prune)."""
    from typer.testing import CliRunner

    from compress.cli.app import app

    def call():
        return CliRunner().invoke(app, ["prune", "-m", "lenet5", "-o", "unused", *args]).output

    return _stage_request(monkeypatch, tmp_path, call)


def _recipe_request(options: dict):
    from compress.pipeline.table import STAGES

    built = STAGES["prune"].validate(options, "recipe.yaml:3")
    return built["prune"], built["finetune"]


def _api_request(monkeypatch, tmp_path, prune_cfg: PruneConfig, keys: dict):
    def call():
        with pytest.raises(_Stop, match="stopped at plan_finetune"):
            compress.api.prune("lenet5", "unused", prune_cfg, finetune=keys or None)

    return _stage_request(monkeypatch, tmp_path, call)


def _flags(options: dict) -> list[str]:
    """The `compress prune` flags for recipe keys: {"kd": True, "lr": 0.002} -> --kd --lr 0.002."""
    out: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        out += [flag] if value is True else [flag, str(value)]
    return out


TRAINING_KEYS = ("lr", "amp", "device")


@pytest.mark.parametrize(
    "settings",
    [
        {"ratio": 0.5},
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
        {"ratio": 0.5, "finetune_epochs": 0},
    ],
    ids=["defaults", "every-tuning-key", "no-tuning"],
)
@pytest.mark.parametrize(
    "facts", [SourceFacts(), SourceFacts(augmented=True), SourceFacts(data_known=False)]
)
def test_cli_recipe_and_api_get_one_policy(monkeypatch, tmp_path, settings, facts):
    """One owner: the CLI, a recipe stage and `compress.prune` hand the same request to
    `plan_finetune` (the stage function calls it), so the same inputs run the same way."""
    keys = {k: v for k, v in settings.items() if k in TRAINING_KEYS}
    fields = {k: v for k, v in settings.items() if k not in TRAINING_KEYS}
    requests = {
        "cli": _cli_request(monkeypatch, tmp_path, _flags(settings)),
        "recipe": _recipe_request(settings),
        "api": _api_request(monkeypatch, tmp_path, PruneConfig(**fields), keys),
    }
    plans = {}
    for who, (cfg, request) in requests.items():
        try:
            plans[who] = plan_finetune(cfg, request, facts)
        except UsageError as e:
            plans[who] = str(e)
    assert plans["cli"] == plans["recipe"] == plans["api"], plans
    plan = plans["cli"]
    if isinstance(plan, FinetunePlan) and "lr" in settings:
        assert (plan.train.lr, plan.train.amp, plan.train.epochs) == (0.002, "off", 3)
        assert (plan.train.schedule, plan.train.label_smoothing, plan.train.seed) == (
            "onecycle", 0.1, 4)  # fmt: skip


def test_recipe_prune_stage_keeps_its_other_training_keys():
    cfg, keys = _recipe_request(
        {"ratio": 0.5, "finetune_epochs": 2, "optimizer": "sgd", "channels_last": True}
    )
    tune = plan_finetune(cfg, keys, SourceFacts()).train
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
        _recipe_request({"ratio": 0.5, "finetune_epochs": 1, key: value})


def test_api_fine_tunes_with_the_trainconfig_it_is_given(trained_lenet, mini_data, tmp_path):
    """`compress.prune(..., finetune=TrainConfig(epochs=1))` used to fine-tune zero epochs:
    the card now records one epoch, and the accuracy moved because of it."""
    import compress
    from compress.models.artifacts.artifact import read_card

    cut = PruneConfig(ratio=0.5, round_to=None)
    untuned = compress.prune(
        trained_lenet, tmp_path / "a", replace(cut, finetune_epochs=0), mini_data, latency=False
    )
    tuned = compress.prune(
        trained_lenet, tmp_path / "b", cut, mini_data, latency=False,
        finetune=TrainConfig(epochs=1, lr=2e-3, amp="off"),
    )  # fmt: skip
    entry = read_card(tmp_path / "b").history[-1]
    assert entry["finetune"]["epochs"] == 1 and entry["config"]["final_finetune_epochs"] == 1
    assert len(entry["result"]["steps"][-1]["final_finetuned"]) > 0
    assert read_card(tmp_path / "a").history[-1]["finetune"] is None
    assert tuned.after.metrics != untuned.after.metrics
    assert (
        tuned.result.finetune["epochs"] == 1
        and "as the given TrainConfig says" in tuned.result.finetune["said"]
    )


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


def test_rewinding_reads_the_last_training_that_ran_epochs():
    """A recipe's `train: {epochs: 0}` (it only evaluates the parent) must not replace the
    parent's recipe: the facts come from the last train entry with epochs."""
    from types import SimpleNamespace

    from compress.stages.prune import source_facts

    history = [
        {"stage": "train", "config": {"epochs": 10, "optimizer": "sgd", "lr": 0.1},
         "data": {"augment": True}},
        {"stage": "train", "config": {"epochs": 0, "optimizer": "adamw", "lr": 4e-3},
         "data": {"augment": False}},
    ]  # fmt: skip
    card = SimpleNamespace(history=history, dataset={"dataset": "fashion-mnist"})
    facts = source_facts(SimpleNamespace(card=card, trained=True), None)
    assert facts.recipe["optimizer"] == "sgd" and facts.augmented is True and facts.data_known


def test_finetune_lr_is_the_default_recipes_lr_and_refused_where_it_cannot_apply():
    """`--lr` (PruneConfig.finetune_lr) is a training key like a recipe's `lr`; beside a whole
    TrainConfig or callable, or a different `lr` key, it is refused, never silently dropped."""
    plan = plan_finetune(PruneConfig(ratio=0.5, finetune_lr=3e-3), None, SourceFacts())
    assert plan.train is not None and plan.train.lr == 3e-3
    assert plan.config.finetune_lr is None  # the request carries it; the card records the lr run
    same = plan_finetune(PruneConfig(ratio=0.5, finetune_lr=3e-3), {"lr": 3e-3}, SourceFacts())
    assert same.train is not None and same.train.lr == 3e-3
    with pytest.raises(UsageError, match="a TrainConfig or callable given as `finetune`"):
        plan_finetune(
            PruneConfig(ratio=0.5, finetune_lr=3e-3), TrainConfig(epochs=1), SourceFacts()
        )
    with pytest.raises(UsageError, match=r"--lr 0\.003 and the fine-tuning key lr 0\.01 disagree"):
        plan_finetune(PruneConfig(ratio=0.5, finetune_lr=3e-3), {"lr": 1e-2}, SourceFacts())
