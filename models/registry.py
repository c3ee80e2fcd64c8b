"""The model zoo: a registry of factories, each model carrying its :class:`ModelSpec`.

`create_model("resnet50", num_classes=1000, in_channels=3, input_size=224)` builds a model whose
module names and parameter shapes are torchvision's; smaller input sizes select the family's
small-input variant (documented per family). User models come from `path/to/file.py:factory`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from models.errors import InvalidInputError, UnknownModelError, UsageError
from models.usercode import load_factory, read_source, sha256_bytes

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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        d = dict(d)
        d["mean"], d["std"] = tuple(d.get("mean", FASHION_MEAN)), tuple(d.get("std", FASHION_STD))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


Factory = Callable[..., nn.Module]
_REGISTRY: dict[str, Factory] = {}


def register_model(name: str) -> Callable[[Factory], Factory]:
    """Decorator: add a factory `f(num_classes, in_channels, input_size, **kw) -> nn.Module`."""

    def deco(fn: Factory) -> Factory:
        _REGISTRY[name] = fn
        return fn

    return deco


def _ensure_zoo_loaded() -> None:
    # Importing the family modules runs their @register_model decorators.
    from models import alexnet, lenet, resnet, vgg  # noqa: F401


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    _ensure_zoo_loaded()
    return sorted(_REGISTRY)


def default_mean_std(in_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Fashion-MNIST statistics for 1 channel, ImageNet's for 3, neutral otherwise."""
    if in_channels == 1:
        return FASHION_MEAN, FASHION_STD
    if in_channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.5,) * in_channels, (0.5,) * in_channels


def _check_shape_args(num_classes: int, in_channels: int, input_size: int) -> None:
    if num_classes < 1:
        raise UsageError(f"--num-classes must be >= 1, got {num_classes}")
    if in_channels < 1:
        raise UsageError(f"--in-channels must be >= 1, got {in_channels}")
    if input_size < 8:
        raise UsageError(f"--input-size must be >= 8, got {input_size}")


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a zoo model (or a `file.py:factory` user model) with its `.spec` attached.

    Shapes default to 10 classes, 1 channel, 28 pixels; with `weights` naming published weights
    (`"imagenet"`, see `models.pretrained`) to 1000 classes, 3 channels, 224 pixels, and the
    weights are downloaded (once) and loaded; other `num_classes` replace the classifier.
    (`weights` is read from `kwargs`, so callers passing `**shape` dicts stay well-typed.)"""
    weights: str | None = kwargs.pop("weights", None)
    entry = None
    if weights is not None:
        from models.pretrained import lookup

        entry = lookup(name, weights)
    num_classes = num_classes if num_classes is not None else (entry.num_classes if entry else 10)
    in_channels = in_channels if in_channels is not None else (entry.in_channels if entry else 1)
    input_size = input_size if input_size is not None else (entry.crop if entry else 28)
    _check_shape_args(num_classes, in_channels, input_size)
    if is_factory_ref(name):
        return create_user_model(
            name, num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kwargs
        )
    _ensure_zoo_loaded()
    if name not in _REGISTRY:
        raise UnknownModelError(
            f"unknown model {name!r}; available: {', '.join(list_models())}",
            hint="or pass an artifact directory, or path/to/file.py:factory",
        )
    model = _REGISTRY[name](
        num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kwargs
    )
    spec: ModelSpec = model.spec  # type: ignore[assignment]
    attach_spec(model, replace(spec, extra={**spec.extra, "kwargs": _jsonable(kwargs)}))
    if entry is not None:
        from models.pretrained import load_pretrained

        load_pretrained(model, entry)
    return model


def is_factory_ref(name: str) -> bool:
    """True for `path/to/file.py:factory` references."""
    path, sep, attr = name.rpartition(":")
    return bool(sep) and path.endswith(".py") and attr.isidentifier()


def create_user_model(
    ref: str,
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 28,
    source: bytes | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Run `file.py`'s `factory` (passing num_classes/in_channels when it takes them).

    `source`: the file's bytes, already read and checked by the caller (an artifact load), so
    what runs is exactly what was hashed. The spec records the factory and its SHA-256.
    """
    path_s, _, attr = ref.rpartition(":")
    path = Path(path_s)
    source = read_source(path) if source is None else source
    sha = sha256_bytes(source)
    factory = load_factory(source, path, attr)
    offered = {
        "num_classes": num_classes,
        "in_channels": in_channels,
        "input_size": input_size,
        **kwargs,
    }
    params = inspect.signature(factory).parameters
    takes_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    args = {k: v for k, v in offered.items() if takes_kw or k in params}
    model = factory(**args)
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"{ref} returned {type(model).__name__}, not a torch.nn.Module")
    origin = {"factory": ref, "factory_sha256": sha, "kwargs": _jsonable(kwargs)}
    spec = getattr(model, "spec", None)
    if isinstance(spec, ModelSpec):
        attach_spec(model, replace(spec, extra={**spec.extra, **origin}))
    else:
        mean, std = default_mean_std(in_channels)
        attach_spec(
            model,
            ModelSpec(
                name=ref,
                input_size=input_size,
                in_channels=in_channels,
                num_classes=num_classes,
                mean=mean,
                std=std,
                classifier=_last_linear_name(model),
                variant="user",
                extra=origin,
            ),
        )
    return model


def spec_of(model: nn.Module) -> ModelSpec:
    """The model's spec, typed (attribute access on nn.Module is typed as Tensor | Module)."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise InvalidInputError(f"{type(model).__name__} carries no ModelSpec (.spec)")
    return spec


def attach_spec(model: nn.Module, spec: ModelSpec) -> None:
    """Give a module its spec (setattr: nn.Module's typed __setattr__ only admits tensors)."""
    setattr(model, "spec", spec)  # noqa: B010


def _last_linear_name(model: nn.Module) -> str:
    last = ""
    for n, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            last = n
    return last


def _jsonable(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if isinstance(v, (str, int, float, bool, type(None)))}


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
    return ModelSpec(
        name=name,
        input_size=input_size,
        in_channels=in_channels,
        num_classes=num_classes,
        mean=mean,
        std=std,
        classifier=classifier,
        variant=variant,
    )
