"""Weights loading: safe formats, refusal of pickles, and one-line diagnoses of bad files."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from compress.models.errors import ArchitectureMismatchError, UnsafePickleError, WeightsError
from compress.models.weights.reading import load_into, read_state_dict
from compress.models.zoo.registry import create_model


class Evil:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Evil(str(marker))}, path)
    with pytest.raises(UnsafePickleError, match="--trust-pickle"):
        read_state_dict(path)
    assert not marker.exists()


def test_plain_state_dict_pt_loads_with_weights_only(tmp_path):
    m = create_model("lenet5")
    torch.save({"model": m.state_dict()}, tmp_path / "ok.pt")
    sd = read_state_dict(tmp_path / "ok.pt")
    load_into(create_model("lenet5"), sd, "ok.pt")


def test_ddp_module_prefix_is_stripped(tmp_path):
    m = create_model("lenet5")
    save_file({f"module.{k}": v for k, v in m.state_dict().items()}, tmp_path / "w.safetensors")
    assert "conv1.weight" in read_state_dict(tmp_path / "w.safetensors")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n", "git-lfs"),
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "HTML"),
        (b"", "empty"),
    ],
)
def test_not_weights_files_are_named(tmp_path, content, match):
    p = tmp_path / "model.safetensors"
    p.write_bytes(content)
    with pytest.raises(WeightsError, match=match):
        read_state_dict(p)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_truncated_files_are_corrupt_not_crashes(tmp_path, suffix):
    sd = create_model("lenet5").state_dict()
    full = tmp_path / f"full{suffix}"
    save_file(sd, full) if suffix == ".safetensors" else torch.save(sd, full)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        read_state_dict(cut)


def test_other_architecture_is_summarized():
    sd = create_model("resnet18").state_dict()
    with pytest.raises(ArchitectureMismatchError, match="missing") as e:
        load_into(create_model("lenet5"), sd, "resnet18.safetensors")
    assert "unexpected" in str(e.value)


def test_pruned_checkpoint_into_dense_model_is_recognized():
    import torch_pruning as tp

    m = create_model("lenet5")
    tp.pruner.MetaPruner(
        m,
        torch.randn(1, 1, 28, 28),
        tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=0.5,
        ignored_layers=[m.fc3],
    ).step()
    with pytest.raises(ArchitectureMismatchError, match="pruned checkpoint"):
        load_into(create_model("lenet5"), m.state_dict(), "pruned")


def test_nan_weights_are_refused():
    sd = create_model("lenet5").state_dict()
    sd["fc1.weight"][0, 0] = float("nan")
    with pytest.raises(WeightsError, match=r"NaN/Inf.*fc1\.weight"):
        load_into(create_model("lenet5"), sd, "nan.safetensors")
