"""The zoo's table of model factories, filled by each family's `@register_model` decorator.

Separate from `models.registry` (which imports the families to fill it) so that a family module
imports this table, not the registry that imports it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

Factory = Callable[..., nn.Module]
_FACTORIES: dict[str, Factory] = {}
_NATIVE_SIZE: dict[str, int] = {}
_MIN_SIZE: dict[str, int] = {}
DEFAULT_INPUT_SIZE = 28  # user factories, and the size Fashion-MNIST/MNIST images have
MIN_INPUT_SIZE = 8  # below this no zoo model is defined


def register_model(
    name: str, input_size: int = DEFAULT_INPUT_SIZE, min_input_size: int = MIN_INPUT_SIZE
) -> Callable[[Factory], Factory]:
    """Decorator: add a factory `f(num_classes, in_channels, input_size, **kw) -> nn.Module`
    whose native input size (what `create_model` builds when none is given) is `input_size`
    and which accepts inputs down to `min_input_size` pixels."""

    def deco(fn: Factory) -> Factory:
        _FACTORIES[name] = fn
        _NATIVE_SIZE[name] = input_size
        _MIN_SIZE[name] = min_input_size
        return fn

    return deco


def min_input_size(name: str) -> int:
    """The smallest input size a registered model accepts."""
    return _MIN_SIZE.get(name, MIN_INPUT_SIZE)


def native_input_size(name: str) -> int:
    """The input size a registered model was designed for (224 for the ImageNet families)."""
    return _NATIVE_SIZE.get(name, DEFAULT_INPUT_SIZE)


def registered() -> dict[str, Factory]:
    """The registered factories by name (a copy)."""
    return dict(_FACTORIES)
