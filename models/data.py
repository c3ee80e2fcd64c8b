"""Real data for training, calibration and evaluation: IDX (Fashion-MNIST, MNIST) and ImageFolder.

Splits are fixed and seeded: the training file is split into `train` and `val` (validation and
calibration draw from `val`); `test` is only ever used for reporting. Normalization and resizing
come from the model's :class:`~models.registry.ModelSpec`.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from models.errors import DataNotFoundError, InvalidInputError, UsageError
from models.registry import ModelSpec

log = logging.getLogger(__name__)

DATA_ENV = "COMPRESS_DATA_DIR"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
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
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
INSTALL_HINT = (
    "install it with `sudo apt-get install -y dataset-fashion-mnist`, or pass "
    f"--data-dir DIR (or set {DATA_ENV}) pointing at the four IDX files"
)


@dataclass
class DataConfig:
    """Which data set, where, and how to split and batch it."""

    dataset: str | None = None  # None: the input artifact's data set, else fashion-mnist
    data_dir: str | None = None
    val_size: int = 5000
    seed: int = 0
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


# ----------------------------------------------------------------------------- IDX


def _open_maybe_gz(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise InvalidInputError(f"cannot read {path}: {e}") from e


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a numpy array; validates the header."""
    data = _open_maybe_gz(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise InvalidInputError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise InvalidInputError(f"{path} is truncated: header says {dims}, found {body.size} bytes")
    return body.reshape(dims).copy()  # writable, detached from the decompressed buffer


def _is_gzip(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError as e:
        raise InvalidInputError(f"cannot read {path}: {e}") from e


def map_idx(path: Path) -> np.memmap:
    """Memory-map an uncompressed IDX file: rows are read from disk when used, never the whole
    file, and the page cache is shared by every process reading it (torchrun ranks)."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[:3] != b"\x00\x00\x08":
                raise InvalidInputError(f"{path} is not an unsigned-byte IDX file")
            dims = struct.unpack(f">{head[3]}I", f.read(4 * head[3]))
        offset, size = 4 + 4 * len(dims), path.stat().st_size
    except (OSError, struct.error) as e:
        raise InvalidInputError(f"cannot read {path}: {e}") from e
    if size - offset != int(np.prod(dims)):
        raise InvalidInputError(
            f"{path} is truncated: header says {dims}, found {size - offset} bytes"
        )
    return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=dims)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def idx_dir_candidates(dataset: str, data_dir: str | None) -> list[Path]:
    """Where we look, in order: --data-dir, $COMPRESS_DATA_DIR, the Debian package (Fashion)."""
    out = [Path(p) for p in (data_dir, os.environ.get(DATA_ENV)) if p]
    out += [p / dataset for p in list(out)]
    if dataset == "fashion-mnist":
        out.append(DEBIAN_FASHION)
    return out


def load_idx_split(
    dataset: str, data_dir: str | None, split: str, mmap: bool | None = False
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N,) int64 of an IDX split ('train' or 'test').

    mmap: None memory-maps the images when the file is uncompressed (gzip cannot be mapped,
    so it is read whole), True insists on it, False reads everything into memory."""
    img_stem, lbl_stem = IDX_FILES[split]
    tried = idx_dir_candidates(dataset, data_dir)
    for d in tried:
        img, lbl = _find_idx(d, img_stem), _find_idx(d, lbl_stem)
        if img and lbl:
            mapped = mmap is not False and not _is_gzip(img)
            if mmap and not mapped:
                raise UsageError(
                    f"cannot memory-map {img}: it is gzip-compressed",
                    hint=f"decompress it once (`gunzip -k {img}`) or drop the mmap option",
                )
            x = map_idx(img) if mapped else read_idx(img)
            y = read_idx(lbl).astype(np.int64)
            if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
                raise InvalidInputError(f"{d}: images {x.shape} and labels {y.shape} don't match")
            log.debug("loaded %s/%s from %s: %s", dataset, split, d, x.shape)
            return x, y
    where = ", ".join(str(p) for p in tried) or "(nowhere: no --data-dir given)"
    hint = (
        INSTALL_HINT
        if dataset == "fashion-mnist"
        else ("pass --data-dir DIR holding train-images-idx3-ubyte.gz etc.")
    )
    raise DataNotFoundError(f"{dataset} {split} split not found; looked in: {where}", hint=hint)


# ----------------------------------------------------------------------------- datasets


class SizedDataset(Dataset):
    """A map-style dataset with a length (all of ours)."""

    def __len__(self) -> int:
        raise NotImplementedError


class RowView:
    """Rows `index` of a (memory-mapped) uint8 image array, fetched only when indexed: a split
    of a large IDX file that never sits in memory whole. Indexes like an (N, C, H, W) tensor."""

    def __init__(self, array: np.ndarray, index: np.ndarray | None = None) -> None:
        self.array = array
        self.index = np.arange(len(array)) if index is None else np.asarray(index)
        rest = array.shape[1:]
        self.shape = (len(self.index), *((1, *rest) if len(rest) == 2 else rest))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        rows = self.index[np.asarray(idx)]
        return torch.from_numpy(np.array(self.array[rows]))  # a writable copy of the rows


class TensorImages(SizedDataset):
    """uint8 images in memory (or a memory-mapped RowView), indexed by *lists* of indices to
    fetch whole batches at once."""

    def __init__(
        self,
        images: np.ndarray | torch.Tensor | RowView,
        labels: np.ndarray | torch.Tensor,
        spec: ModelSpec,
        augment: bool = False,
    ) -> None:
        self.images: torch.Tensor | RowView
        if isinstance(images, RowView):
            self.images = images
        else:
            x = torch.as_tensor(images)
            self.images = x.unsqueeze(1) if x.ndim == 3 else x  # (N, C, H, W) uint8
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.spec, self.augment = spec, augment
        self._mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
        self._std = torch.tensor(spec.std).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(idx, dtype=torch.long)
        x = to_model_input(self.images[index].reshape(-1, *self.images.shape[1:]), self.spec)
        if self.augment:
            x = random_flip_crop(x)
        x = (x - self._mean) / self._std
        y = self.labels[index]
        return (x[0], y) if index.ndim == 0 else (x, y)


def to_model_input(x: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float in [0,1] with the spec's channels and size (unnormalized)."""
    x = x.float().div_(255.0)
    c = x.shape[1]
    if c != spec.in_channels:
        if c == 1:
            x = x.expand(-1, spec.in_channels, -1, -1)
        elif spec.in_channels == 1:
            x = x[:, :3].mean(1, keepdim=True)
        else:
            raise InvalidInputError(f"images have {c} channels, model wants {spec.in_channels}")
    if x.shape[-1] != spec.input_size or x.shape[-2] != spec.input_size:
        x = F.interpolate(
            x,
            size=(spec.input_size, spec.input_size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
    return x.contiguous()


def random_flip_crop(x: torch.Tensor, pad: int = 2) -> torch.Tensor:
    """Horizontal flip (p=0.5) and a random crop after `pad` zero padding, per batch."""
    n, _, h, w = x.shape
    flip = torch.rand(n) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,)))
    return padded[:, :, dy : dy + h, dx : dx + w]


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
            g = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
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
    src = next(
        (
            str(d)
            for d in idx_dir_candidates(cfg.dataset, cfg.data_dir)
            if _find_idx(d, IDX_FILES["train"][0])
        ),
        "?",
    )
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
