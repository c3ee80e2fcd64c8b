"""recipes/resnet50-imagenet.yaml: validated as shipped, and run end to end on CPU over a tiny
generated ImageFolder at 224x224 with a generated checkpoint served over loopback (no internet),
one step per stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.loopback import Route, checkpoint_bytes, publish, serve

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "resnet50-imagenet.yaml"


def test_recipe_plans_as_shipped():
    from compress.pipeline.recipe import load_recipe
    from compress.pipeline.runner import plan

    recipe = load_recipe(RECIPE)
    assert (recipe.model, recipe.weights, recipe.shape["input_size"]) == (
        "resnet50",
        "imagenet",
        224,
    )
    kinds = [s.spec.kind for s in plan(recipe)]
    assert kinds == ["train", "prune", "distill", "quantize", "bench"]
    prune = recipe.stage("prune").options
    assert prune["target_macs"] == "2x" and prune["kd"] is True


def make_imagefolder(root: Path, classes: int = 2, train: int = 80, val: int = 2) -> Path:
    """Non-square RGB PNGs (so the resize-256/crop-224 path runs), a brightness per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            d = root / split / f"n0000000{c}"
            d.mkdir(parents=True)
            for i in range(n):
                img = (60 * c + rng.integers(0, 60, (232, 260, 3))).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")
    return root


@pytest.mark.slow
def test_recipe_smoke_on_cpu(tmp_path, monkeypatch):
    from compress.models.zoo.registry import create_model
    from compress.pipeline.recipe import load_recipe
    from compress.pipeline.runner import run_pipeline

    torch.manual_seed(0)
    parent = create_model("resnet50", num_classes=1000, in_channels=3, input_size=224)
    body = checkpoint_bytes(parent, tmp_path / "r50.pth")
    del parent
    entry = publish(monkeypatch, "resnet50", body)
    monkeypatch.setenv("COMPRESS_CACHE", str(tmp_path / "cache"))
    data = make_imagefolder(tmp_path / "imagenet")
    overrides = [
        f"data.data_dir={data}",
        "data.batch_size=4",
        "data.eval_batch_size=8",
        "data.limit=4",  # one step per epoch
        "data.workers=0",
        "max_drop=100",  # random weights on random images: the gates measure nothing here
        "prune.finetune_epochs=1",
        "prune.latency=false",
        "prune.max_drop=100",
        "prune.channels_last=false",
        "distill.epochs=1",
        "distill.max_drop=100",
        "distill.channels_last=false",
        "quantize.samples=16",  # the least calibration accepts; 160 images hold 16 out for val
        "quantize.max_drop=null",
        "bench.batch_sizes=[1]",
        "bench.runtimes=[ort-cpu]",
        "bench.seconds=0.05",
        "bench.rounds=1",
    ]
    recipe = load_recipe(RECIPE, overrides)
    recipe.shape["num_classes"] = 2  # the tiny folder has 2 classes: the 1000-way head is replaced
    with serve({f"/models/{entry.filename}": Route(body)}) as server:
        monkeypatch.setenv("COMPRESS_WEIGHTS_URL", server.base + "/models")
        result = run_pipeline(recipe, tmp_path / "run")
    assert len(server.hits) == 1
    kinds = [s["kind"] for s in result.stages]
    assert kinds == ["train", "prune", "distill", "quantize", "bench"]
    parent_card = json.loads((tmp_path / "run" / "01-parent" / "card.json").read_text())
    assert parent_card["history"][0]["pretrained"]["url"].endswith(entry.filename)
    assert parent_card["spec"]["extra"]["preprocess"] == {"resize": 256, "crop": 224}
    pruned = result.stages[1]["summary"]
    assert pruned["after"]["macs"] <= pruned["before"]["macs"] / 2 * 1.05
    assert result.stages[3]["precision"] == "int8"
