"""The zoo's table of model factories, filled by each family's `@register_model` decorator.

Separate from `models.registry` (which imports the families to fill it) so that a family module
imports this table, not the registry that imports it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

Factory = Callable[..., nn.Module]
_FACTORIES: dict[str, Factory] = {}


def register_model(name: str) -> Callable[[Factory], Factory]:
    """Decorator: add a factory `f(num_classes, in_channels, input_size, **kw) -> nn.Module`."""

    def deco(fn: Factory) -> Factory:
        _FACTORIES[name] = fn
        return fn

    return deco


def registered() -> dict[str, Factory]:
    """The registered factories by name (a copy)."""
    return dict(_FACTORIES)
