"""Recipe validation: every mistake is caught before training, naming the key and its line."""

from __future__ import annotations

import pytest

from compress.models.errors import UsageError
from compress.pipeline.recipe import RecipeError, apply_override, parse_recipe, recipe_to_dict
from compress.pipeline.runner import plan as make_plan

GOOD = """\
name: t
model: lenet5
data: {dataset: fashion-mnist, data_dir: tests/data/fashion-mini}
max_drop: 5
stages:
  - train: {epochs: 1}
  - export: {}
  - bench: {batch_sizes: [1], seconds: 0.1}
"""


def test_good_recipe_plans_each_stage():
    plan = make_plan(parse_recipe(GOOD))
    assert [p.folder for p in plan] == ["01-train", "02-export", "03-bench"]
    assert [p.produces for p in plan] == ["pytorch", "onnx", "report"]
    assert plan[0].config["train"].epochs == 1
    assert plan[0].to_dict()["options"]["train"]["epochs"] == 1  # the --dry-run JSON


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("model: lenet5\nstages: [train: {epochs: 1}\n", "invalid YAML"),
        ("model: lenet5\nstagez: []\n", "2: unknown key 'stagez'"),
        ("model: lenet5\nstages:\n  - train: {epochz: 1}\n", "3: unknown option 'epochz'"),
        ("model: lenet5\nstages:\n  - train: {epochs: many}\n", "epochs"),
        ("model: lenet5\nstages:\n  - sharpen: {}\n", "unknown stage 'sharpen'"),
        ("model: lenet5\nstages: []\n", "empty"),
        ("stages:\n  - train: {}\n", "missing required key 'model'"),
        ("model: lenet5\ndata: {datadir: x}\nstages:\n  - train: {}\n", "unknown data key"),
        ("model: lenet5\nmax_drop: lots\nstages:\n  - train: {}\n", "max_drop"),
        ("model: lenet5\nstages:\n  - train: {}\n  - train: {}\n", "two stages are named"),
    ],
)
def test_invalid_recipes_name_the_problem(text, match):
    with pytest.raises(RecipeError, match=match):
        make_plan(parse_recipe(text, source="r.yaml"))


def test_impossible_order_is_caught_before_training():
    text = "model: lenet5\nstages:\n  - export: {}\n  - train: {epochs: 1}\n"
    with pytest.raises(RecipeError, match=r"3: stage 'export' .*needs a trained model"):
        make_plan(parse_recipe(text, source="r.yaml"))
    text = "model: lenet5\nstages:\n  - train: {}\n  - export: {}\n  - train: {name: again}\n"
    with pytest.raises(RecipeError, match=r"5: stage 'again' .*needs a .*pytorch.* model"):
        make_plan(parse_recipe(text, source="r.yaml"))
    with_weights = "model: lenet5\nweights: w.safetensors\nstages:\n  - export: {}\n"
    assert make_plan(parse_recipe(with_weights))[0].consumes == "source"


def test_invalid_option_value_is_a_usage_error():
    with pytest.raises(UsageError, match="lr"):
        make_plan(parse_recipe("model: lenet5\nstages:\n  - train: {lr: -1}\n"))


def test_overrides_and_round_trip():
    r = parse_recipe(GOOD, overrides=["train.epochs=3", "data.limit=100", "max_drop=0.5"])
    assert r.stage("train").options["epochs"] == 3 and r.data["limit"] == 100
    assert r.max_drop == 0.5
    again = parse_recipe(__import__("yaml").safe_dump(recipe_to_dict(r)))
    assert again.stage("train").options == {"epochs": 3} and again.max_drop == 0.5
    with pytest.raises(UsageError, match="no stage 'prune'"):
        apply_override(r, "prune.ratio=0.5")
    with pytest.raises(UsageError, match=r"stage\.key=value"):
        apply_override(r, "nonsense")


@pytest.mark.parametrize("path", sorted(__import__("pathlib").Path("recipes").glob("*.yaml")))
def test_shipped_recipes_are_valid(path):
    from compress.pipeline.recipe import load_recipe

    recipe = load_recipe(path)
    assert make_plan(recipe)[0].spec.kind == "train"
    if recipe.search:
        from compress.pipeline.tune import parse_space

        assert parse_space(recipe)


def test_set_max_drop_null_removes_the_gate_and_a_word_is_refused():
    from compress.models.errors import UsageError

    assert parse_recipe(GOOD, overrides=["max_drop=null"]).max_drop is None
    with pytest.raises(UsageError, match="max_drop must be a number"):
        parse_recipe(GOOD, overrides=["max_drop=lots"])


@pytest.mark.parametrize(
    "first_read",
    [
        lambda t: t["prune"],
        lambda t: t.get("prune"),
        lambda t: "prune" in t and t["prune"],
        lambda t: dict(t.items())["prune"],
    ],
    ids=["getitem", "get", "in", "items"],
)
def test_stage_table_answers_the_same_whatever_is_read_first(first_read):
    """The table of stage kinds fills on first use, whichever way it is first read (a test that
    indexed it before anything had called `.get` used to see it empty)."""
    from compress.pipeline.table import STAGES

    fresh = type(STAGES)()  # unfilled, as at import
    assert first_read(fresh).name == "prune"
    assert sorted(fresh) == sorted(STAGES) and "bench" in fresh and len(fresh) > 5
