"""ImageFolder data (`DIR/train/<class>/*.png|jpg`, `DIR/val/<class>/…`), loaded lazily per image.

Images of any size or mode are converted to the model's channels and resized to its input size,
so large folders never sit in memory whole. `val/` is the reported test split; the validation
split is carved from `train/` with the same seeded rule as the IDX data sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from compress.models.data.images import SizedDataset, resize_center_crop
from compress.models.data.splits import DataBundle, DataConfig, effective_val_size, split_indices
from compress.models.errors import DataNotFoundError, InvalidInputError
from compress.models.zoo.spec import ModelSpec

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def scan(root: Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """(path, class index) pairs under `root/<class>/`, classes sorted by name."""
    if not root.is_dir():
        raise DataNotFoundError(
            f"image folder {root} not found",
            hint="expected DIR/train/<class>/*.png and DIR/val/<class>/*.png",
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    items = [
        (f, i)
        for i, c in enumerate(classes)
        for f in sorted((root / c).rglob("*"))
        if f.suffix.lower() in EXTENSIONS
    ]
    if not items:
        raise DataNotFoundError(f"no images found under {root}/<class>/")
    return items, classes


class ImageFiles(SizedDataset):
    """Reads one image per item with Pillow; batches are collated by the DataLoader."""

    def __init__(self, items: list[tuple[Path, int]], spec: ModelSpec, augment: bool = False):
        self.items, self.spec, self.augment = items, spec, augment
        pre = spec.extra.get("preprocess") or {}  # e.g. ImageNet weights: resize 256, crop 224
        self._ratio = pre["resize"] / pre["crop"] if pre.get("resize") and pre.get("crop") else None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One image, or a stacked batch for a list of indices (as TensorImages allows)."""
        if not isinstance(i, int):
            pairs = [self._one(int(j)) for j in i]
            return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])
        return self._one(i)

    def _one(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image, UnidentifiedImageError

        path, label = self.items[i]
        try:
            with Image.open(path) as im:
                arr = np.asarray(
                    im.convert("L" if self.spec.in_channels == 1 else "RGB"), dtype=np.uint8
                )
        except (OSError, UnidentifiedImageError) as e:
            raise InvalidInputError(f"cannot read image {path}: {e}") from e
        x = torch.from_numpy(arr.copy())
        x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
        if self._ratio is not None:
            x = resize_center_crop(x.unsqueeze(0), self.spec.input_size, self._ratio)[0]
        return self.prepare(x.unsqueeze(0))[0], torch.tensor(label)


def _root(cfg: DataConfig) -> Path:
    if not cfg.data_dir:
        raise DataNotFoundError("--dataset imagefolder needs --data-dir DIR")
    return Path(cfg.data_dir)


def imagefolder_shape(cfg: DataConfig) -> tuple[int, int, int]:
    """(channels, size, classes) guessed from the first training image and the class folders."""
    from PIL import Image

    items, classes = scan(_root(cfg) / "train")
    with Image.open(items[0][0]) as im:
        channels = 1 if im.mode in ("L", "1", "I", "I;16") else 3
        size = min(im.size)
    return channels, size, len(classes)


def load_imagefolder(cfg: DataConfig, spec: ModelSpec) -> DataBundle:
    """Train/val/test splits from `DIR/train` and `DIR/val`."""
    root = _root(cfg)
    items, classes = scan(root / "train")
    test_items, test_classes = scan(root / "val")
    if test_classes != classes:
        raise InvalidInputError(f"class folders differ between {root}/train and {root}/val")
    tr, va = split_indices(len(items), effective_val_size(len(items), cfg.val_size), cfg.seed)
    if cfg.limit:
        tr = tr[: cfg.limit]
    return DataBundle(
        train=ImageFiles([items[i] for i in tr], spec, augment=cfg.augment),
        val=ImageFiles([items[i] for i in va], spec),
        test=ImageFiles(test_items, spec),
        class_names=classes,
        config=cfg,
        source=str(root),
    )
