"""Describing and rebuilding layer shapes, so pruned models load without pickling.

`capture_structure` records each shape-bearing module's shape attributes; `apply_structure`
resizes a fresh model's modules to them (values then come from a strict `load_state_dict`).
torch-pruning changes channel counts, never the graph; a LowRankLinear replaces its nn.Linear.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from compress.models.errors import ArtifactError
from compress.models.jsontypes import JsonObject
from compress.models.zoo.lowrank import LowRankLinear

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm2d)
# Per module type: the attributes that define its parameter shapes.
_ATTRS: tuple[tuple[tuple[type[nn.Module], ...], tuple[str, ...]], ...] = (
    ((LowRankLinear,), ("in_features", "out_features", "rank")),
    (_CONV, ("in_channels", "out_channels", "groups")),
    ((nn.Linear,), ("in_features", "out_features")),
    (_NORM, ("num_features",)),
    ((nn.GroupNorm,), ("num_channels", "num_groups")),
    ((nn.LayerNorm,), ("normalized_shape",)),
    ((nn.PReLU,), ("num_parameters",)),
)


def _describe(m: nn.Module) -> dict[str, Any] | None:
    for types, attrs in _ATTRS:
        if isinstance(m, types):
            d = {a: list(v) if isinstance(v := getattr(m, a), tuple) else v for a in attrs}
            if isinstance(m, LowRankLinear):
                d["bias"] = m.second.bias is not None
            return {"type": type(m).__name__, **d}
    return None


def capture_structure(model: nn.Module) -> dict[str, JsonObject]:
    """The card's `structure`: shape-defining attributes of each conv/linear/norm, by name."""
    described = {name: _describe(m) for name, m in model.named_modules()}
    return {name: d for name, d in described.items() if d is not None}


def _shapes(m: nn.Module) -> dict[str, tuple[int, ...]]:
    """The parameter/buffer shapes a described module's attributes imply."""
    if isinstance(m, _CONV):
        transposed = isinstance(m, nn.ConvTranspose2d)
        io = (m.in_channels, m.out_channels // m.groups)
        weight = io if transposed else (m.out_channels, m.in_channels // m.groups)
        return {"weight": weight + tuple(m.kernel_size), "bias": (m.out_channels,)}
    if isinstance(m, nn.Linear):
        return {"weight": (m.out_features, m.in_features), "bias": (m.out_features,)}
    if isinstance(m, nn.LayerNorm):
        return dict.fromkeys(("weight", "bias"), tuple(m.normalized_shape))
    if isinstance(m, nn.PReLU):
        return {"weight": (m.num_parameters,)}
    n = m.num_channels if isinstance(m, nn.GroupNorm) else cast(int, m.num_features)  # a _NORM
    return dict.fromkeys(("weight", "bias", "running_mean", "running_var"), (n,))


def _resize(m: nn.Module, d: dict[str, Any]) -> None:
    """Set the attributes and give every parameter/buffer the implied shape (values: zeros)."""
    for k, v in d.items():
        if k != "type":
            setattr(m, k, tuple(v) if k == "normalized_shape" else v)
    for name, shape in _shapes(m).items():
        _set_param(m, name, shape)


def _set_param(m: nn.Module, name: str, shape: tuple[int, ...]) -> None:
    cur = getattr(m, name, None)
    if cur is None:
        return
    new = torch.zeros(shape, dtype=cur.dtype, device=cur.device)
    if isinstance(cur, nn.Parameter):
        setattr(m, name, nn.Parameter(new, requires_grad=cur.requires_grad))
    else:
        m.register_buffer(name, new)


def apply_structure(model: nn.Module, desc: dict[str, dict[str, Any]]) -> nn.Module:
    """Resize `model`'s modules in place to the recorded shapes; returns `model`."""
    modules = dict(model.named_modules())
    for name, d in desc.items():
        m = modules.get(name)
        if d.get("type") == "LowRankLinear" and isinstance(m, nn.Linear):
            low = LowRankLinear(d["in_features"], d["out_features"], d["rank"], d["bias"])
            model.set_submodule(name, low)
            modules = dict(model.named_modules())  # its two halves are described next
            continue
        if m is None or type(m).__name__ != d.get("type"):
            found = type(m).__name__ if m is not None else "nothing"
            raise ArtifactError(
                f"card describes {name!r} as {d.get('type')} but the rebuilt "
                f"architecture has {found} there"
            )
        if _describe(m) != d:
            _resize(m, d)
    return model
