"""The data configuration, the train/val/test bundle it loads into, and the seeded splits.

Shared by every data format (`compress.models.data.datasets` for IDX, `compress.models.data.imagefolder`), so it sits below them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from compress.models.data.images import SizedDataset, TensorImages
from compress.models.errors import InvalidInputError, UsageError

DATASETS = ("fashion-mnist", "mnist", "imagefolder")


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
