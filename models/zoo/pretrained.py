"""Published ImageNet weights by name (`--weights imagenet`) and transfer onto our zoo:
torchvision's `IMAGENET1K_V1` facts (resize 256, crop 224, ImageNet mean/std); a file name's
8 hex digits prefix its SHA-256, checked. Strict loads; another `num_classes` keeps a fresh head."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from compress.models.errors import ArchitectureMismatchError, CompressError, UsageError
from compress.models.jsontypes import JsonObject
from compress.models.weights.reading import mismatch_summary
from compress.models.zoo.factories import registered
from compress.models.zoo.spec import IMAGENET_MEAN, IMAGENET_STD, attach_spec, spec_of

REGISTRY_SOURCE = "torchvision weight registry (torchvision/models/*.py, IMAGENET1K_V1)"
BASE_URL = "https://download.pytorch.org/models"


@dataclass(frozen=True)
class Pretrained:
    """One published checkpoint: where it is, how to check it, what it scored, how to feed it."""

    model: str
    name: str  # our name (`imagenet`); `alias` is torchvision's enum member
    alias: str
    filename: str
    num_params: int
    acc1: float  # ImageNet-1K val top-1 %, as published
    acc5: float
    gflops: float
    file_mb: float
    min_size: int  # smallest input torchvision's layout accepts (its `min_size`)
    num_classes: int = 1000
    in_channels: int = 3
    resize: int = 256
    crop: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    dataset: str = "ImageNet-1K"

    @property
    def url(self) -> str:
        return f"{BASE_URL}/{self.filename}"

    @property
    def sha256_prefix(self) -> str:
        return self.filename.rsplit("-", 1)[-1].split(".")[0]

    def describe(self) -> JsonObject:
        """Provenance for the artifact card (its JSON)."""
        return {
            "name": self.name,
            "torchvision": self.alias,
            "url": self.url,
            "sha256_prefix": self.sha256_prefix,
            "source": REGISTRY_SOURCE,
            "published": {"dataset": self.dataset, "acc@1": self.acc1, "acc@5": self.acc5},
            "preprocessing": {
                "resize": self.resize,
                "crop": self.crop,
                "mean": list(self.mean),
                "std": list(self.std),
            },
        }


PRETRAINED: dict[tuple[str, str], Pretrained] = {
    (p.model, p.name): p
    for p in (
        Pretrained("alexnet", "imagenet", "IMAGENET1K_V1", "alexnet-owt-7be5be79.pth",
                   61_100_840, 56.522, 79.066, 0.714, 233.087, 63),
        Pretrained("vgg16", "imagenet", "IMAGENET1K_V1", "vgg16-397923af.pth",
                   138_357_544, 71.592, 90.382, 15.47, 527.796, 32),
        Pretrained("vgg16_bn", "imagenet", "IMAGENET1K_V1", "vgg16_bn-6c64b313.pth",
                   138_365_992, 73.360, 91.516, 15.47, 527.866, 32),
        Pretrained("resnet18", "imagenet", "IMAGENET1K_V1", "resnet18-f37072fd.pth",
                   11_689_512, 69.758, 89.078, 1.814, 44.661, 1),
        Pretrained("resnet50", "imagenet", "IMAGENET1K_V1", "resnet50-0676ba61.pth",
                   25_557_032, 76.130, 92.862, 4.089, 97.781, 1),
    )
}  # fmt: skip


def names_for(model: str) -> list[str]:
    """Weights names published for `model` (our name, then torchvision's)."""
    return [f"{p.name} ({p.alias})" for (m, _), p in PRETRAINED.items() if m == model]


def looks_like_name(weights: str | None) -> bool:
    """A `--weights` value that names published weights rather than a file or `random`:
    a plain word (no path separator, no extension) that is not an existing path."""
    if not weights or weights == "random" or Path(weights).exists():
        return False
    return "/" not in weights and "\\" not in weights and "." not in weights


def lookup(model: str, weights: str) -> Pretrained:
    """The entry `weights` names for `model` (our name or torchvision's, any case)."""
    key = weights.lower()
    for (m, _), p in PRETRAINED.items():
        if m == model and key in (p.name, p.alias.lower()):
            return p
    have = names_for(model)
    raise UsageError(
        f"unknown weights {weights!r} for {model}; "
        + (f"available: {', '.join(have)}" if have else "no published weights for this model"),
        hint="or pass a weights file (.safetensors, .pt/.pth state_dict) or an artifact directory",
    )


def for_file(model: str, path: str | Path) -> Pretrained | None:
    """The entry whose published file name `path` carries (a copy fetched by hand), if any."""
    name = Path(path).name
    return next((p for (m, _), p in PRETRAINED.items() if m == model and p.filename == name), None)


def load_pretrained(
    model: nn.Module, entry: Pretrained, path: str | Path | None = None
) -> JsonObject:
    """Load `entry` into `model` from `path` (a hand-fetched copy) or the cache (downloading it
    once), verified against the published hash first; returns the card's provenance."""
    from compress.models.weights.download import DownloadError, sha256_of
    from compress.models.weights.reading import check_finite, read_state_dict

    check_fits(model, entry)
    if path is None:
        path = fetch_once_per_node(entry)
    elif Path(path).is_file() and not sha256_of(Path(path)).startswith(entry.sha256_prefix):
        raise DownloadError(
            f"{path} is named like the published {entry.filename} but its sha256 does not start "
            f"with {entry.sha256_prefix}: not that file (truncated or altered?)",
            hint=f"fetch it again from {entry.url}",
        )
    sd = read_state_dict(path)  # weights_only=True: plain tensors
    check_finite(sd, str(path))
    return transfer(model, sd, entry, str(path))


def fetch_once_per_node(entry: Pretrained) -> Path:
    """The verified cached file; under torchrun each node's local rank 0 downloads it while
    the other ranks wait (an error reaches every rank)."""
    import torch.distributed as dist

    from compress.models.weights.download import cached_file

    if not (dist.is_available() and dist.is_initialized()):
        return cached_file(entry.url, entry.sha256_prefix)
    error: CompressError | None = None
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        try:
            cached_file(entry.url, entry.sha256_prefix)
        except CompressError as e:
            error = e
    dist.barrier()
    if error is not None:
        raise error
    return cached_file(entry.url, entry.sha256_prefix)


def transfer(model: nn.Module, sd: dict[str, torch.Tensor], entry: Pretrained, source: str) -> \
        JsonObject:  # fmt: skip
    """Load `sd` strictly (a classifier of another width keeps its init); the card's provenance."""
    spec = spec_of(model)
    sd, replaced = fitted(model, sd, entry)
    model.load_state_dict(sd, strict=True)
    preprocess = {"resize": entry.resize, "crop": entry.crop}  # image folders: see ImageFiles
    extra = {**spec.extra, "preprocess": preprocess}
    attach_spec(model, replace(spec, mean=entry.mean, std=entry.std, extra=extra))
    return {
        **entry.describe(),
        "file": source,
        "classifier": {
            "name": spec.classifier,
            "replaced": replaced,
            "classes": f"{entry.num_classes} -> {spec.num_classes}" if replaced else "kept",
        },
        "input": "3 channels; 1-channel images are repeated to 3 by the data loader",
        "normalization": "ImageNet mean/std",
    }


def fitted(model: nn.Module, sd: dict[str, torch.Tensor], entry: Pretrained) -> \
        tuple[dict[str, torch.Tensor], bool]:  # fmt: skip
    """`sd` ready for a strict load into `model` (another classifier width keeps the model's
    own head), and whether the head was replaced; raises naming the layer that does not fit."""
    spec = spec_of(model)
    own = model.state_dict()
    sd = _with_bn_counters(sd, own)
    replaced = spec.num_classes != entry.num_classes
    if replaced:
        head = [k for k in sd if k.startswith(spec.classifier + ".")]
        sd = {k: v for k, v in sd.items() if k not in head}
        sd.update({k: own[k] for k in head if k in own})
    problem = explain_mismatch(model, sd, entry)
    if problem:
        raise ArchitectureMismatchError(
            f"{entry.model} {entry.name} weights can't load into this model: {problem}",
            hint=_hint(model, entry),
        )
    return sd, replaced


def check_fits(model: nn.Module, entry: Pretrained) -> None:
    """Refuse a model the weights can't load into, before downloading (meta-device reference)."""
    from compress.models.zoo import alexnet, resnet, vgg  # noqa: F401  (register the published families)

    with torch.device("meta"):
        ref = registered()[entry.model](
            num_classes=entry.num_classes, in_channels=entry.in_channels, input_size=entry.crop
        )
    fitted(model, ref.state_dict(), entry)


def _with_bn_counters(sd: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> \
        dict[str, torch.Tensor]:  # fmt: skip
    """Checkpoints saved before PyTorch 0.4.1 lack BatchNorm's `num_batches_tracked`: add 0."""
    out = dict(sd)
    for k, v in own.items():
        if k.endswith(".num_batches_tracked") and k not in out:
            stem = k[: -len("num_batches_tracked")]
            if stem + "running_mean" in out:
                out[k] = torch.zeros_like(v)
    return out


def explain_mismatch(model: nn.Module, sd: dict[str, torch.Tensor], entry: Pretrained) -> \
        str | None:  # fmt: skip
    """None if `sd` fits; else which layer differs and why, in one line."""
    own = model.state_dict()
    shaped = [k for k in own if k in sd and own[k].shape != sd[k].shape]
    if not shaped:
        summary = mismatch_summary(model, sd)  # only missing/unexpected keys are left
        return f"{summary}; the model is not torchvision's layout" if summary else None
    k = shaped[0]
    why = _why(model, k, tuple(sd[k].shape), tuple(own[k].shape), entry)
    more = f" (and {len(shaped) - 1} more tensors)" if len(shaped) > 1 else ""
    return (
        f"layer {k.rsplit('.', 1)[0]}: {k} is {tuple(sd[k].shape)} in the checkpoint but "
        f"{tuple(own[k].shape)} here{more}; {why}"
    )


def _why(model: nn.Module, key: str, theirs: tuple[int, ...], ours: tuple[int, ...],
         entry: Pretrained) -> str:  # fmt: skip
    spec = spec_of(model)
    first = next(k for k, v in model.state_dict().items() if v.ndim == 4)
    if key == first and len(theirs) == 4 and theirs[1] != ours[1] and theirs[2:] == ours[2:]:
        return (
            f"the weights take {theirs[1]}-channel input, the model was built for "
            f"{spec.in_channels} channel(s)"
        )
    if spec.variant not in ("imagenet", "default"):
        return (
            f"the model is the {spec.variant!r} variant (input size {spec.input_size}), the "
            "weights are for torchvision's ImageNet layout"
        )
    return "the model's shape options differ from torchvision's"


def _hint(model: nn.Module, entry: Pretrained) -> str:
    spec = spec_of(model)
    if spec.in_channels != entry.in_channels:
        return (
            f"drop --in-channels (ImageNet weights build a {entry.in_channels}-channel model; "
            "1-channel data is repeated to 3 channels)"
        )
    return (
        "use --input-size 64 or more with the default variant/stem (torchvision's ImageNet "
        f"layout; the weights were trained at {entry.in_channels}x{entry.crop}x{entry.crop})"
    )
