"""Describing and rebuilding layer shapes, so pruned models load without pickling.

`capture_structure(model)` records, per shape-bearing module, the attributes that define its
parameter shapes. `apply_structure(model, desc)` resizes a freshly built model's modules to
those shapes (values are then filled by a strict `load_state_dict`). This is all a structurally
pruned model needs: torch-pruning changes channel counts, never the graph. A factorized Linear
(compress.models.zoo.lowrank.LowRankLinear, recorded with its rank) replaces the fresh nn.Linear first.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from compress.models.errors import ArtifactError
from compress.models.jsontypes import JsonObject
from compress.models.zoo.lowrank import LowRankLinear

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm2d)


def _describe(m: nn.Module) -> dict[str, Any] | None:
    if isinstance(m, LowRankLinear):
        return {
            "type": "LowRankLinear",
            "in_features": m.in_features,
            "out_features": m.out_features,
            "rank": m.rank,
            "bias": m.second.bias is not None,
        }
    if isinstance(m, _CONV):
        return {
            "type": type(m).__name__,
            "in_channels": m.in_channels,
            "out_channels": m.out_channels,
            "groups": m.groups,
        }
    if isinstance(m, nn.Linear):
        return {"type": "Linear", "in_features": m.in_features, "out_features": m.out_features}
    if isinstance(m, _NORM):
        return {"type": type(m).__name__, "num_features": m.num_features}
    if isinstance(m, nn.GroupNorm):
        return {"type": "GroupNorm", "num_channels": m.num_channels, "num_groups": m.num_groups}
    if isinstance(m, nn.LayerNorm):
        return {"type": "LayerNorm", "normalized_shape": list(m.normalized_shape)}
    if isinstance(m, nn.PReLU):
        return {"type": "PReLU", "num_parameters": m.num_parameters}
    return None


def capture_structure(model: nn.Module) -> dict[str, JsonObject]:
    """Shape-defining attributes of every conv/linear/norm module, by qualified name: the
    card's `structure`, as written to and read back from card.json."""
    out = {}
    for name, m in model.named_modules():
        d = _describe(m)
        if d is not None:
            out[name] = d
    return out


def _resize(m: nn.Module, d: dict[str, Any]) -> None:
    """Set the attributes and give every parameter/buffer the implied shape (values: zeros)."""
    for k, v in d.items():
        if k != "type":
            setattr(m, k, tuple(v) if k == "normalized_shape" else v)
    if isinstance(m, _CONV):
        transposed = isinstance(m, nn.ConvTranspose2d)
        w_shape = (
            (m.in_channels, m.out_channels // m.groups)
            if transposed
            else (m.out_channels, m.in_channels // m.groups)
        ) + tuple(m.kernel_size)
        _set_param(m, "weight", w_shape)
        _set_param(m, "bias", (m.out_channels,))
    elif isinstance(m, nn.Linear):
        _set_param(m, "weight", (m.out_features, m.in_features))
        _set_param(m, "bias", (m.out_features,))
    elif isinstance(m, (*_NORM, nn.GroupNorm)):
        n = m.num_channels if isinstance(m, nn.GroupNorm) else m.num_features
        for name in ("weight", "bias", "running_mean", "running_var"):
            _set_param(m, name, (n,))
    elif isinstance(m, nn.LayerNorm):
        _set_param(m, "weight", tuple(m.normalized_shape))
        _set_param(m, "bias", tuple(m.normalized_shape))
    elif isinstance(m, nn.PReLU):
        _set_param(m, "weight", (m.num_parameters,))


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
