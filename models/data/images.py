"""uint8 images to model input: the per-batch transforms and the image datasets applying them.

Images stay uint8 (in memory, or as lazy rows of a memory-mapped file) until a batch is fetched;
then they are scaled to [0, 1], matched to the model's channels and input size, optionally
augmented, and normalized with the spec's mean/std. Whole batches are fetched at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from compress.models.errors import InvalidInputError
from compress.models.zoo.spec import ModelSpec


class SizedDataset(Dataset):
    """A map-style dataset with a length (all of ours), its images shaped for `spec`."""

    spec: ModelSpec
    augment: bool = False

    def __len__(self) -> int:
        raise NotImplementedError

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> the model's input: resized, augmented if asked, normalized."""
        x = to_model_input(x, self.spec)
        x = random_flip_crop(x) if self.augment else x
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (self.spec.mean, self.spec.std))
        return (x - mean) / std


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
    """uint8 images (or a RowView), indexed by *lists* of indices to fetch whole batches."""

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

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(idx, dtype=torch.long)
        x = self.prepare(self.images[index].reshape(-1, *self.images.shape[1:]))
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
        x = _bilinear(x, (spec.input_size, spec.input_size))
    return x.contiguous()


def _bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def resize_center_crop(x: torch.Tensor, size: int, ratio: float) -> torch.Tensor:
    """torchvision's eval preset: shorter side to `round(size * ratio)` (256 for 224), then the
    central `size` x `size`; float values on the input's 0-255 scale."""
    h, w = x.shape[-2:]
    short = round(size * ratio)
    nh, nw = (short, max(short, round(w * short / h))) if h <= w else (round(h * short / w), short)
    x = _bilinear(x.float(), (nh, nw))
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[..., top : top + size, left : left + size]


def random_flip_crop(x: torch.Tensor, pad: int = 2) -> torch.Tensor:
    """Horizontal flip (p=0.5) and a random crop after `pad` zero padding, per batch."""
    n, _, h, w = x.shape
    flip = torch.rand(n) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,)))
    return padded[:, :, dy : dy + h, dx : dx + w]
