"""The data configuration, the train/val/test bundle it loads into, and the seeded splits
(shared by every data format, so it sits below them)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from compress.models.data.images import SizedDataset, TensorImages
from compress.models.errors import InvalidInputError, UsageError
from compress.models.options import check_options, option

DATASETS = ("fashion-mnist", "mnist", "imagefolder")


@dataclass
class DataConfig:
    """Which data set, where, and how to split and batch it."""

    # None: the input artifact's data set, else fashion-mnist
    dataset: str | None = option(None, "fashion-mnist (default), mnist, or imagefolder.")
    data_dir: str | None = option(
        None,
        "Data directory (IDX files, or imagefolder root with train/ and val/). "
        "Also $COMPRESS_DATA_DIR; Fashion-MNIST is found in "
        "/usr/share/datasets/fashion-mnist.",
    )
    val_size: int = option(5000, "Validation images split off the training file.", cli=False, min=0)
    seed: int = option(
        0,
        "Seed for shuffling and init, and for the train/val split of a zoo model "
        "(an artifact keeps the split it was trained on, so its validation images"
        " stay unseen).",
    )
    order_seed: int | None = option(None, "Seed of the batch order only.", cli=False)
    batch_size: int = option(128, "Training batch size.", min=1)
    eval_batch_size: int = option(512, "Evaluation batch size.", cli=False, min=1)
    augment: bool = option(
        False, "Random flips and crops (distill: turns off teacher-logit caching)."
    )
    limit: int | None = option(None, "Use at most this many training samples (quick runs).")
    workers: int = option(
        0,
        "DataLoader worker processes (decoding/resizing off the training loop).",
        cli=False,
        min=0,
    )
    mmap: bool | None = option(
        None, "IDX images: None memory-maps uncompressed files, True requires it.", cli=False
    )
    class_names: list[str] = option(
        help="Class names (from the data set).", factory=list, cli=False
    )

    def __post_init__(self) -> None:
        if self.dataset is not None and self.dataset not in DATASETS:
            raise UsageError(f"unknown dataset {self.dataset!r}; choose from {', '.join(DATASETS)}")
        check_options(self)

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
        # TensorImages fetches whole batches at once (one worker = one batch).
        whole = isinstance(ds, TensorImages)
        how = {"batch_size": None, "sampler": batches} if whole else {"batch_sampler": batches}
        # Page-locked batches copy to the GPU asynchronously.
        return DataLoader(
            ds, num_workers=self.config.workers, pin_memory=torch.cuda.is_available(), **how
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
