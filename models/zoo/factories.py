"""The zoo's table of model factories, filled by each family's `@register_model` decorator
(apart from the registry, which imports the families, so that they need not import it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from compress.models.errors import UsageError
from compress.models.zoo.spec import attach_spec, make_spec

Factory = Callable[..., nn.Module]
_FACTORIES: dict[str, Factory] = {}
_SIZES: dict[str, tuple[int, int]] = {}  # native, smallest
DEFAULT_INPUT_SIZE = 28  # user factories, and the size Fashion-MNIST/MNIST images have
MIN_INPUT_SIZE = 8  # below this no zoo model is defined
VARIANTS = ("auto", "imagenet", "small")  # of the families with an ImageNet and a small form
SMALL_BELOW = 64  # input sizes under this pick the small variant when variant="auto"


def register_model(
    name: str, input_size: int = DEFAULT_INPUT_SIZE, min_input_size: int = MIN_INPUT_SIZE
) -> Callable[[Factory], Factory]:
    """Decorator: add a factory `f(num_classes, in_channels, input_size, **kw) -> nn.Module`,
    built at `input_size` by default and accepting inputs down to `min_input_size` pixels."""

    def deco(fn: Factory) -> Factory:
        _FACTORIES[name] = fn
        _SIZES[name] = (input_size, min_input_size)
        return fn

    return deco


def min_input_size(name: str) -> int:
    """The smallest input size a registered model accepts."""
    return _SIZES.get(name, (0, MIN_INPUT_SIZE))[1]


def native_input_size(name: str) -> int:
    """The input size a registered model was designed for (224 for the ImageNet families)."""
    return _SIZES.get(name, (DEFAULT_INPUT_SIZE, 0))[0]


def registered() -> dict[str, Factory]:
    """The registered factories by name (a copy)."""
    return dict(_FACTORIES)


def check_options(name: str, kw: dict[str, Any], hidden: int | None = None) -> None:
    """Refuse options a zoo factory does not take, and a classifier width below 1."""
    if kw:
        raise UsageError(f"{name}: unknown option(s): {', '.join(sorted(kw))}")
    if hidden is not None and hidden < 1:
        raise UsageError(f"{name}: hidden must be >= 1, got {hidden}")


def pick_variant(name: str, variant: str, input_size: int, min_imagenet_size: int) -> str:
    """Resolve "auto" to "small" below 64 pixels, else "imagenet"; validate the others (the
    imagenet form needs inputs of at least `min_imagenet_size` pixels)."""
    if variant not in VARIANTS:
        raise UsageError(f"{name}: variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if variant == "auto":
        return "small" if input_size < SMALL_BELOW else "imagenet"
    if variant == "imagenet" and input_size < min_imagenet_size:
        raise UsageError(
            f"{name} variant 'imagenet' needs --input-size >= {min_imagenet_size}, "
            f"got {input_size}",
            hint="use variant='small' for small images",
        )
    return variant


def family(
    name: str, classifier: str, doc: str, build: Callable[..., tuple[nn.Module, str]]
) -> Factory:
    """Register the ImageNet-family factory `name`: `build(name, num_classes, in_channels,
    input_size, **options)` returns the model and its variant; the factory attaches the spec."""

    def factory(
        *, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, **kw: Any
    ) -> nn.Module:
        model, variant = build(name, num_classes, in_channels, input_size, **kw)
        spec = make_spec(name, num_classes, in_channels, input_size, classifier, variant)
        attach_spec(model, spec)
        return model

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    return register_model(name, input_size=224)(factory)
