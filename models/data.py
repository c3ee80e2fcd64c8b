"""Real data for training, calibration and evaluation: IDX (Fashion-MNIST, MNIST) and ImageFolder.

Splits are fixed and seeded: the training file is split into `train` and `val` (validation and
calibration draw from `val`); `test` is only ever used for reporting. Normalization and resizing
come from the model's :class:`~models.registry.ModelSpec`. This module holds the configuration,
the split bundle and its loaders; file formats are in `models.idx` and `models.imagefolder`,
the image datasets and transforms in `models.images`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from models.errors import InvalidInputError, UsageError
from models.idx import idx_source, load_idx_split
from models.images import RowView, SizedDataset, TensorImages
from models.registry import ModelSpec

DATASETS = ("fashion-mnist", "mnist", "imagefolder")
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


@dataclass
class DataConfig:
    """Which data set, where, and how to split and batch it."""

    dataset: str | None = None  # None: the input artifact's data set, else fashion-mnist
    data_dir: str | None = None
    val_size: int = 5000
    seed: int = 0  # the train/val split, and the batch order unless `order_seed` is set
    order_seed: int | None = None  # batch order only (an artifact keeps its split, see stages)
    batch_size: int = 128
    eval_batch_size: int = 512
    augment: bool = False
    limit: int | None = None  # cap on training samples (quick runs, search budgets)
    workers: int = 0  # DataLoader worker processes (decoding/resizing off the training loop)
    mmap: bool | None = None  # IDX images: None memory-maps uncompressed files, True requires it
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.dataset is not None and self.dataset not in DATASETS:
            raise UsageError(f"unknown dataset {self.dataset!r}; choose from {', '.join(DATASETS)}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise UsageError("batch sizes must be >= 1")
        if self.val_size < 0:
            raise UsageError("val_size must be >= 0")
        if self.workers < 0:
            raise UsageError(f"workers must be >= 0, got {self.workers}")

    @property
    def shuffle_seed(self) -> int:
        """What orders the training batches (per epoch, so resumed runs see the same order)."""
        return (self.seed if self.order_seed is None else self.order_seed) * 100_003


@dataclass
class DataBundle:
    """The three splits plus what describes them."""

    train: SizedDataset
    val: SizedDataset
    test: SizedDataset
    class_names: list[str]
    config: DataConfig
    source: str

    def loader(
        self,
        split: str,
        *,
        epoch: int = 0,
        shuffle: bool | None = None,
        batch_size: int | None = None,
        sampler: torch.utils.data.Sampler | None = None,
    ) -> DataLoader:
        """A DataLoader yielding whole (x, y) batches; `sampler` overrides (e.g. distributed)."""
        ds = getattr(self, split)
        bs = batch_size or (
            self.config.batch_size if split == "train" else self.config.eval_batch_size
        )
        shuffle = (split == "train") if shuffle is None else shuffle
        if sampler is None:
            # Seeded per epoch, so a resumed run sees the same order as an uninterrupted one.
            g = torch.Generator().manual_seed(self.config.shuffle_seed + epoch)
            sampler = RandomSampler(ds, generator=g) if shuffle else SequentialSampler(ds)
        batches = BatchSampler(sampler, bs, drop_last=False)
        pin = torch.cuda.is_available()  # page-locked batches copy to the GPU asynchronously
        if isinstance(ds, TensorImages):  # whole batches per fetch (one worker = one batch)
            return DataLoader(
                ds,
                batch_size=None,
                sampler=batches,
                num_workers=self.config.workers,
                pin_memory=pin,
            )
        return DataLoader(
            ds, batch_sampler=batches, num_workers=self.config.workers, pin_memory=pin
        )

    def describe(self) -> dict[str, object]:
        return {
            "dataset": self.config.dataset,
            "source": self.source,
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),  # type: ignore[arg-type]
            "val_seed": self.config.seed,
            "classes": len(self.class_names),
        }


def split_indices(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed seeded permutation: the last `val_size` indices form the validation split."""
    if val_size >= n:
        raise InvalidInputError(f"validation split of {val_size} needs more than {n} samples")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n - val_size]), np.sort(perm[n - val_size :])


def effective_val_size(n: int, val_size: int) -> int:
    """`val_size`, capped at a tenth of the training file so small data sets still train."""
    return min(val_size, n // 10)


def load_data(cfg: DataConfig, spec: ModelSpec) -> DataBundle:
    """Load a data set into train/val/test splits shaped for `spec`."""
    if cfg.dataset is None:
        cfg = replace(cfg, dataset="fashion-mnist")
    assert cfg.dataset is not None
    if cfg.dataset == "imagefolder":
        from models.imagefolder import load_imagefolder

        return load_imagefolder(cfg, spec)
    x, y = load_idx_split(cfg.dataset, cfg.data_dir, "train", cfg.mmap)
    xt, yt = load_idx_split(cfg.dataset, cfg.data_dir, "test", cfg.mmap)
    tr, va = split_indices(len(y), effective_val_size(len(y), cfg.val_size), cfg.seed)
    if cfg.limit:
        tr = tr[: cfg.limit]
    names = cfg.class_names or (
        list(FASHION_CLASSES)
        if cfg.dataset == "fashion-mnist"
        else [str(i) for i in range(int(y.max()) + 1)]
    )
    src = idx_source(cfg.dataset, cfg.data_dir)
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
        from models.imagefolder import imagefolder_shape

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
