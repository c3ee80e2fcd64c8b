"""Real data for training, calibration and evaluation: IDX (Fashion-MNIST, MNIST) and ImageFolder.

Splits are fixed and seeded: the training file is split into `train` and `val` (validation and
calibration draw from `val`); `test` is only ever used for reporting. Normalization and resizing
come from the model's ModelSpec.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import DataLoader

from compress.models.data.idx import idx_source, load_idx_split
from compress.models.data.images import RowView, TensorImages
from compress.models.data.splits import (
    DATASETS,
    DataBundle,
    DataConfig,
    effective_val_size,
    split_indices,
)
from compress.models.zoo.spec import ModelSpec

__all__ = [
    "DATASETS",
    "DataBundle",
    "DataConfig",
    "dataset_shape",
    "effective_val_size",
    "iterate_inputs",
    "load_data",
    "split_indices",
    "synthetic_batch",
]

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def load_data(cfg: DataConfig, spec: ModelSpec) -> DataBundle:
    """Load a data set into train/val/test splits shaped for `spec`."""
    dataset = cfg.dataset or "fashion-mnist"
    cfg = replace(cfg, dataset=dataset)
    if dataset == "imagefolder":
        from compress.models.data.imagefolder import load_imagefolder

        return load_imagefolder(cfg, spec)
    x, y = load_idx_split(dataset, cfg.data_dir, "train", cfg.mmap)
    xt, yt = load_idx_split(dataset, cfg.data_dir, "test", cfg.mmap)
    tr, va = split_indices(len(y), effective_val_size(len(y), cfg.val_size), cfg.seed)
    if cfg.limit:
        tr = tr[: cfg.limit]
    names = cfg.class_names or (
        list(FASHION_CLASSES)
        if dataset == "fashion-mnist"
        else [str(i) for i in range(int(y.max()) + 1)]
    )
    src = idx_source(dataset, cfg.data_dir)
    return DataBundle(
        train=TensorImages(_rows(x, tr), y[tr], spec, augment=cfg.augment),
        val=TensorImages(_rows(x, va), y[va], spec),
        test=TensorImages(_rows(xt, None), yt, spec),
        class_names=names,
        config=cfg,
        source=src,
    )


def _rows(x: np.ndarray, index: np.ndarray | None) -> np.ndarray | RowView:
    """A split of the images: lazy over a memory map, else an in-memory copy."""
    if isinstance(x, np.memmap):
        return RowView(x, index)
    return x if index is None else x[index]


def dataset_shape(cfg: DataConfig) -> tuple[int, int, int]:
    """(in_channels, input_size, num_classes) the data set implies, for model defaults."""
    if cfg.dataset == "imagefolder" and cfg.data_dir:
        from compress.models.data.imagefolder import imagefolder_shape

        return imagefolder_shape(cfg)
    return 1, 28, 10


def synthetic_batch(spec: ModelSpec, batch: int, seed: int = 0) -> torch.Tensor:
    """Random normalized input of the spec's shape: for latency only, never for accuracy."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *spec.input_shape), generator=g)


def iterate_inputs(loader: DataLoader, limit: int | None = None) -> Iterator[torch.Tensor]:
    """Yield input batches only, stopping after `limit` samples."""
    seen = 0
    for x, _ in loader:
        if limit is not None and seen >= limit:
            return
        yield x if limit is None else x[: limit - seen]
        seen += len(x)
