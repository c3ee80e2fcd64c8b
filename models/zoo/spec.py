"""What a model is, however built: :class:`ModelSpec` (input size, channels, normalization, classes,
classifier) and its attach/read helpers; below the families and the registry, which both use it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from compress.models.errors import InvalidInputError
from compress.models.jsontypes import JsonObject

FASHION_MEAN = (0.2860,)
FASHION_STD = (0.3530,)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """What a model expects and where its head is; stored in every artifact card."""

    name: str
    input_size: int = 28
    in_channels: int = 1
    num_classes: int = 10
    mean: tuple[float, ...] = FASHION_MEAN
    std: tuple[float, ...] = FASHION_STD
    classifier: str = "fc"
    variant: str = "default"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.input_size, self.input_size)

    def to_dict(self) -> JsonObject:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        d = dict(d)
        d["mean"], d["std"] = tuple(d.get("mean", FASHION_MEAN)), tuple(d.get("std", FASHION_STD))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def default_mean_std(in_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Fashion-MNIST statistics for 1 channel, ImageNet's for 3, neutral otherwise."""
    if in_channels == 1:
        return FASHION_MEAN, FASHION_STD
    if in_channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.5,) * in_channels, (0.5,) * in_channels


def make_spec(
    name: str,
    num_classes: int,
    in_channels: int,
    input_size: int,
    classifier: str,
    variant: str = "default",
) -> ModelSpec:
    """Spec with the default normalization for the channel count."""
    mean, std = default_mean_std(in_channels)
    return ModelSpec(name, input_size, in_channels, num_classes, mean, std, classifier, variant)


def spec_of(model: nn.Module) -> ModelSpec:
    """The model's spec, typed (attribute access on nn.Module is typed as Tensor | Module)."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise InvalidInputError(f"{type(model).__name__} carries no ModelSpec (.spec)")
    return spec


def attach_spec(model: nn.Module, spec: ModelSpec) -> None:
    """Give a module its spec (setattr: nn.Module's typed __setattr__ only admits tensors)."""
    setattr(model, "spec", spec)  # noqa: B010


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode for the body, then back in the mode it was in (errors included)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
