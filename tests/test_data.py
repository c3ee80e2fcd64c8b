"""Data loaders on the committed subset: shapes, splits, normalization, errors, and memory-mapped
uncompressed IDX files for large data sets."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from compress.models.artifacts.artifact import read_card
from compress.models.data.datasets import DataConfig, load_data, split_indices
from compress.models.data.idx import read_idx
from compress.models.data.images import RowView
from compress.models.errors import DataNotFoundError, InvalidInputError, UsageError
from compress.models.zoo.registry import create_model, spec_of
from tests.conftest import FASHION_MINI


def test_idx_subset_loads_with_expected_shapes(mini_data):
    spec = create_model("lenet5").spec
    b = load_data(mini_data, spec)
    assert len(b.train) + len(b.val) == 800 and len(b.val) == 80
    assert len(b.test) == 300
    x, y = next(iter(b.loader("train")))
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32
    assert y.min() >= 0 and y.max() <= 9
    assert b.class_names[0] == "T-shirt/top"


def test_normalization_uses_spec_statistics(mini_data):
    spec = create_model("lenet5").spec
    x, _ = next(iter(load_data(mini_data, spec).loader("test", batch_size=300)))
    # Normalized with the Fashion-MNIST mean/std: roughly zero mean and unit std.
    assert abs(float(x.mean())) < 0.15 and 0.8 < float(x.std()) < 1.2


def test_resize_and_channels_follow_the_spec(mini_data):
    spec = create_model("resnet18", in_channels=3, input_size=32).spec
    x, _ = next(iter(load_data(mini_data, spec).loader("val")))
    assert x.shape[1:] == (3, 32, 32)


def test_split_is_deterministic_and_disjoint():
    a_tr, a_va = split_indices(1000, 100, seed=3)
    b_tr, b_va = split_indices(1000, 100, seed=3)
    assert np.array_equal(a_va, b_va) and np.array_equal(a_tr, b_tr)
    assert not set(a_tr) & set(a_va) and len(a_tr) + len(a_va) == 1000
    assert not np.array_equal(split_indices(1000, 100, seed=4)[1], a_va)


def test_missing_data_names_places_and_install_hint(tmp_path, monkeypatch):
    monkeypatch.setattr("compress.models.data.idx.DEBIAN_FASHION", tmp_path / "nope")
    monkeypatch.delenv("COMPRESS_DATA_DIR", raising=False)
    with pytest.raises(DataNotFoundError, match="train split not found; looked in") as e:
        load_data(DataConfig(data_dir=str(tmp_path)), create_model("lenet5").spec)
    assert "apt-get install -y dataset-fashion-mnist" in str(e.value)


def test_truncated_idx_is_rejected(tmp_path):
    raw = gzip.decompress((FASHION_MINI / "t10k-images-idx3-ubyte.gz").read_bytes())
    bad = tmp_path / "t10k-images-idx3-ubyte"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InvalidInputError, match="truncated"):
        read_idx(bad)


def test_unknown_dataset_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown dataset"):
        DataConfig(dataset="cifar")


def test_imagefolder_any_size_and_mode(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(12 if split == "train" else 3):
                arr = rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)
                mode_img = Image.fromarray(arr).convert("RGB" if i % 2 else "L")
                mode_img.save(d / f"{i}.png")
    cfg = DataConfig(dataset="imagefolder", data_dir=str(tmp_path), batch_size=4)
    spec = create_model("lenet5", num_classes=2, in_channels=3, input_size=32).spec
    b = load_data(cfg, spec)
    assert b.class_names == ["cat", "dog"] and len(b.test) == 6
    x, y = next(iter(b.loader("train")))
    assert x.shape == (4, 3, 32, 32) and set(y.tolist()) <= {0, 1}


def test_imagefolder_smaller_than_the_model_accepts_is_resized(tmp_path, caplog):
    """8x8 images train LeNet-5 (which needs >= 12 px) at its native 28 px, said in one line
    (rough edge 5); sizes the model accepts are kept."""
    import logging

    from PIL import Image

    from compress.stages.common import ModelRef
    from compress.stages.train import run_train
    from compress.training.fit import TrainConfig

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            d = tmp_path / "img" / split / cls
            d.mkdir(parents=True)
            for i in range(10 if split == "train" else 3):
                Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(d / f"{i}.png")
    cfg = DataConfig(dataset="imagefolder", data_dir=str(tmp_path / "img"), batch_size=4)
    with caplog.at_level(logging.INFO, logger="compress.models.zoo.registry"):
        run_train(ModelRef("lenet5"), tmp_path / "out", TrainConfig(epochs=1, amp="off"), cfg)
    card = read_card(tmp_path / "out")
    assert card.model_spec.input_size == 28 and card.model_spec.num_classes == 2
    lines = [r.getMessage() for r in caplog.records if "resizing" in r.getMessage()]
    assert lines == [
        "lenet5 needs inputs of at least 12 px and the images are 8 px: resizing them to 28 px"
    ]
    from compress.models.zoo.registry import input_size_for_data

    assert input_size_for_data("lenet5", 16) == 16 and input_size_for_data("alexnet", 8) == 8


def test_seed_orders_batches_but_an_artifact_keeps_its_split(mini_data):
    """`--seed` on a stage that starts from an artifact changes the batch order only: the
    split stays the artifact's, so its validation images are still unseen."""
    from compress.models.artifacts.artifact import new_card
    from compress.stages.common import data_config_for

    model = create_model("lenet5")
    card = new_card(model)
    card.dataset = {"dataset": "fashion-mnist", "val_seed": 0}
    spec = spec_of(model)
    loaded = {}
    for seed in (0, 7):
        cfg = data_config_for(replace(mini_data, dataset=None, seed=seed), card)
        assert cfg.seed == 0 and cfg.order_seed == seed
        bundle = load_data(cfg, spec)
        first = next(iter(bundle.loader("train")))[1]
        val_labels = torch.cat([y for _, y in bundle.loader("val")])
        loaded[seed] = (first, val_labels)
    assert not torch.equal(loaded[0][0], loaded[7][0])  # another batch order
    assert torch.equal(loaded[0][1], loaded[7][1])  # the same validation split
    assert data_config_for(replace(mini_data, seed=7), card).order_seed is None  # named data set


# ----------------------------------------------------------------------------- large data (mmap)


@pytest.fixture
def raw_idx(tmp_path) -> Path:
    """The committed subset, gunzipped: uncompressed IDX files can be memory-mapped."""
    import gzip

    for f in FASHION_MINI.glob("*.gz"):
        (tmp_path / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
    return tmp_path


def test_uncompressed_idx_is_memory_mapped_and_gives_the_same_batches(raw_idx):
    spec = spec_of(create_model("lenet5"))
    mapped = load_data(DataConfig(dataset="fashion-mnist", data_dir=str(raw_idx)), spec)
    loaded = load_data(DataConfig(dataset="fashion-mnist", data_dir=str(raw_idx), mmap=False), spec)
    assert isinstance(mapped.train.images, RowView)  # type: ignore[attr-defined]
    assert isinstance(mapped.train.images.array, np.memmap)  # type: ignore[attr-defined]
    for split in ("train", "val", "test"):
        (xa, ya), (xb, yb) = next(iter(mapped.loader(split))), next(iter(loaded.loader(split)))
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    two_workers = replace(mapped, config=replace(mapped.config, workers=2))
    assert sum(len(y) for _, y in two_workers.loader("train")) == len(mapped.train)


def test_mmap_bad_inputs(raw_idx):
    spec = spec_of(create_model("lenet5"))
    with pytest.raises(UsageError, match="gzip-compressed"):
        load_data(DataConfig(dataset="fashion-mnist", data_dir=str(FASHION_MINI), mmap=True), spec)
    img = raw_idx / "train-images-idx3-ubyte"
    img.write_bytes(img.read_bytes()[:-100])
    with pytest.raises(InvalidInputError, match="truncated"):
        load_data(DataConfig(dataset="fashion-mnist", data_dir=str(raw_idx)), spec)
    with pytest.raises(UsageError, match="workers"):
        DataConfig(workers=-1)
