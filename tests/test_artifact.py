"""Artifacts: round trip, atomic writes, overwrite protection, tamper detection, user models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from compress.models.artifacts.artifact import load_model, new_card, read_card, save_model
from compress.models.errors import ArtifactError, DiskFullError, OutputExistsError
from compress.models.zoo.registry import create_model

USER_MODEL = """
import torch.nn as nn

def build(num_classes=10, in_channels=1):
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
"""


def test_round_trip_gives_identical_outputs(tmp_path):
    m = create_model("lenet5").eval()
    x = torch.randn(3, 1, 28, 28)
    save_model(m, tmp_path / "a", new_card(m))
    loaded, card = load_model(tmp_path / "a")
    assert torch.equal(m(x), loaded(x))
    assert card.architecture.name == "lenet5" and card.files["model.safetensors"]["bytes"] > 0
    assert len(card.content_hash) == 64


def test_card_is_self_describing(tmp_path):
    m = create_model("resnet18", num_classes=7, in_channels=3, input_size=32)
    save_model(m, tmp_path / "r", new_card(m))
    card = json.loads((tmp_path / "r" / "card.json").read_text())
    assert card["architecture"]["num_classes"] == 7 and card["spec"]["classifier"] == "fc"
    assert "torch" in card["software"] and card["kind"] == "pytorch"


def test_existing_output_is_not_overwritten(tmp_path):
    m = create_model("lenet5")
    save_model(m, tmp_path / "a", new_card(m))
    before = (tmp_path / "a" / "card.json").read_text()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        save_model(m, tmp_path / "a", new_card(m))
    assert (tmp_path / "a" / "card.json").read_text() == before
    save_model(m, tmp_path / "a", new_card(m), overwrite=True)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    m = create_model("lenet5")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", boom)
    with pytest.raises(DiskFullError, match=r"disk full writing .*a \(needs 246,824 bytes"):
        save_model(m, tmp_path / "a", new_card(m))
    assert list(tmp_path.iterdir()) == []


def test_tampered_or_incomplete_artifact_is_detected(tmp_path):
    m = create_model("lenet5")
    save_model(m, tmp_path / "a", new_card(m))
    w = tmp_path / "a" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-10])
    with pytest.raises(ArtifactError, match="size differs"):
        read_card(tmp_path / "a")
    (tmp_path / "a" / "card.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not a valid card"):
        read_card(tmp_path / "a")


def test_user_factory_model_round_trip(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text(USER_MODEL)
    m = create_model(f"{f}:build", num_classes=4, in_channels=1).eval()
    assert m.spec.classifier == "4" and m.spec.num_classes == 4
    save_model(m, tmp_path / "u", new_card(m))
    loaded, card = load_model(tmp_path / "u", trust_code=True)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(m(x), loaded(x)) and card.architecture.name.endswith("mine.py:build")


def test_pruned_model_round_trip_without_pickle(tmp_path):
    import torch_pruning as tp

    m = create_model("resnet18", input_size=32).eval()
    tp.pruner.MetaPruner(
        m,
        torch.randn(1, 1, 32, 32),
        tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=0.4,
        ignored_layers=[m.fc],
        round_to=8,
    ).step()
    save_model(m, tmp_path / "p", new_card(m))
    loaded, card = load_model(tmp_path / "p")
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(m(x), loaded(x))
    assert card.structure is not None and card.structure["conv1"]["out_channels"] < 64
    assert not any(Path(tmp_path / "p").glob("*.pt"))


def test_card_declares_its_sections_and_refuses_undeclared_ones():
    """Stages write only declared sections; an old card's unknown keys are dropped on reading."""
    import pydantic

    from compress.models.artifacts.artifact import Card, new_card

    card = new_card(create_model("lenet5"))
    card.training_precision = "bf16"
    card.quantization = {"method": "ptq-static"}
    with pytest.raises(ValueError, match="no field"):
        card.made_up = 1  # type: ignore[attr-defined]
    again = Card.model_validate({**card.model_dump(), "legacy": 1})
    assert again.training_precision == "bf16" and "legacy" not in again.model_dump()
    assert isinstance(again, pydantic.BaseModel)
