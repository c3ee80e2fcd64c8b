"""The model zoo: factories whose models carry a :class:`ModelSpec` and torchvision's module names
and shapes (`create_model("resnet50", num_classes=1000, in_channels=3, input_size=224)`); smaller
inputs select the family's small variant. User models come from `path/to/file.py:factory`."""

from __future__ import annotations

import inspect
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from compress.models.errors import InvalidInputError, UnknownModelError, UsageError
from compress.models.zoo import alexnet, lenet, resnet, vgg  # noqa: F401  (their @register_model decorators)
from compress.models.zoo.factories import (
    Factory,
    min_input_size,
    native_input_size,
    register_model,
    registered,
)
from compress.models.zoo.spec import (
    FASHION_MEAN,
    FASHION_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelSpec,
    attach_spec,
    default_mean_std,
    make_spec,
    spec_of,
)
from compress.models.zoo.usercode import load_factory, read_source, sha256_bytes

log = logging.getLogger(__name__)

__all__ = [
    "FASHION_MEAN",
    "FASHION_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Factory",
    "ModelSpec",
    "attach_spec",
    "create_model",
    "create_user_model",
    "default_mean_std",
    "input_size_for_data",
    "is_factory_ref",
    "list_models",
    "make_spec",
    "native_input_size",
    "register_model",
    "spec_of",
]


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(registered())


def _check_shape_args(num_classes: int, in_channels: int, input_size: int) -> None:
    for flag, value, low in (
        ("--num-classes", num_classes, 1),
        ("--in-channels", in_channels, 1),
        ("--input-size", input_size, 8),
    ):
        if value < low:
            raise UsageError(f"{flag} must be >= {low}, got {value}")


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a zoo model (or a `file.py:factory` user model) with its `.spec` attached. Shapes
    default to 10 classes, 1 channel and the native size (224 ImageNet families, 28 LeNet-5 and
    user factories); `weights="imagenet"`: 1000, 3, 224 and the published weights loaded."""
    weights: str | None = kwargs.pop("weights", None)
    entry = None
    if weights is not None:
        from compress.models.zoo.pretrained import lookup

        entry = lookup(name, weights)
    default = (entry.num_classes, entry.in_channels, entry.crop) if entry else (10, 1, None)
    num_classes = default[0] if num_classes is None else num_classes
    in_channels = default[1] if in_channels is None else in_channels
    input_size = (default[2] or native_input_size(name)) if input_size is None else input_size
    _check_shape_args(num_classes, in_channels, input_size)
    if is_factory_ref(name):
        return create_user_model(
            name, num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kwargs
        )
    factories = registered()
    if name not in factories:
        raise UnknownModelError(
            f"unknown model {name!r}; available: {', '.join(list_models())}",
            hint="or pass an artifact directory, or path/to/file.py:factory",
        )
    model = factories[name](
        num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kwargs
    )
    spec = spec_of(model)
    attach_spec(model, replace(spec, extra={**spec.extra, "kwargs": _jsonable(kwargs)}))
    if entry is not None:
        from compress.models.zoo.pretrained import load_pretrained

        load_pretrained(model, entry)
    return model


def input_size_for_data(name: str, data_size: int) -> int:
    """The input size to build `name` at for data of `data_size` pixels: the data's own, unless
    the model can't take images that small; then its native size (the loaders resize), logged."""
    if is_factory_ref(name) or name not in registered() or data_size >= min_input_size(name):
        return data_size
    size = native_input_size(name)
    log.info(
        "%s needs inputs of at least %d px and the images are %d px: resizing them to %d px",
        name,
        min_input_size(name),
        data_size,
        size,
    )
    return size


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
    what runs is exactly what was hashed. The spec records the factory and its SHA-256."""
    path_s, _, attr = ref.rpartition(":")
    path = Path(path_s)
    source = read_source(path) if source is None else source
    sha = sha256_bytes(source)
    factory = load_factory(source, path, attr)
    offered = dict(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    offered.update(kwargs)
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
        heads = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        head = heads[-1] if heads else ""
        spec = make_spec(ref, num_classes, in_channels, input_size, head, variant="user")
        attach_spec(model, replace(spec, extra=origin))
    return model


def _jsonable(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if isinstance(v, (str, int, float, bool, type(None)))}
