"""Parameters and MACs (one multiply-accumulate of a conv or matrix product; bias adds excluded).

:func:`count_ops` (what cards report) counts at aten level with ``FlopCounterMode`` and lists the
executed ops it did not count (relu, pooling, add...). :class:`Geometry` records each Conv/Linear
module's output positions once; pruning never changes them, so MACs and parameters of a pruned or
*planned* model follow from channel counts without a forward pass (the ratio search needs that).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from compress.models.jsontypes import JsonObject
from compress.models.zoo.spec import eval_mode, spec_of
from compress.training.batchnorm import BATCHNORMS

# Ops that only move or describe data: never reported as "not counted" (a table of names).
_DATA_MOVEMENT = frozenset(
    {
        "detach",
        "clone",
        "_to_copy",
        "copy_",
        "alias",
        "lift_fresh",
        "empty",
        "zeros",
        "ones",
        "contiguous",
        "_unsafe_view",
        "t",
        "view",
        "reshape",
        "flatten",
        "expand",
        "squeeze",
        "unsqueeze",
        "permute",
        "transpose",
        "slice",
        "select",
        "split",
        "split_with_sizes",
        "unbind",
        "as_strided",
        "new_empty",
        "new_zeros",
        "fill_",
        "zero_",
        "empty_like",
        "zeros_like",
    }
)


@dataclass
class OpCount:
    """MACs and parameters of one forward pass at batch 1 (per image)."""

    params: int
    macs: int
    uncounted_ops: list[str] = field(default_factory=list)

    def to_dict(self) -> JsonObject:
        return {
            "params": self.params,
            "macs": self.macs,
            "macs_counted": "convolutions and matrix products (bias adds excluded)",
            "uncounted_ops": self.uncounted_ops,
        }


class _OpRecorder(TorchDispatchMode):
    """Collects the names of the aten ops a forward pass executes."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _example(model: nn.Module, example_inputs: torch.Tensor | None) -> torch.Tensor:
    if example_inputs is not None:
        return example_inputs
    return torch.zeros((1, *spec_of(model).input_shape))


@torch.no_grad()
def count_ops(model: nn.Module, example_inputs: torch.Tensor | None = None) -> OpCount:
    """Exact MACs per image (aten-level) plus the executed ops whose cost is not counted."""
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    x = _example(model, example_inputs)
    recorder = _OpRecorder()
    with eval_mode(model), FlopCounterMode(display=False) as counter, recorder:
        model(x)
    counted = {op.__name__ for op in flop_registry if hasattr(op, "__name__")}
    return OpCount(
        params=count_params(model),
        macs=int(counter.get_total_flops()) // (2 * max(1, x.shape[0])),
        uncounted_ops=sorted(recorder.names - counted - _DATA_MOVEMENT),
    )


# torch's public layer classes (its `_ConvNd` base is private).
CONV_TYPES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
_NORM = (*BATCHNORMS, nn.GroupNorm, nn.InstanceNorm2d)
Plan: TypeAlias = Mapping[nn.Module, tuple[int, int]]  # (in, out) channels of planned modules


class Geometry:
    """Output positions per image of every Conv/Linear module, captured by one forward pass."""

    def __init__(self, model: nn.Module, example_inputs: torch.Tensor | None = None) -> None:
        x = _example(model, example_inputs)
        self.positions: dict[str, int] = {}
        handles = []
        for name, m in model.named_modules():
            if isinstance(m, (CONV_TYPES, nn.Linear)):
                handles.append(m.register_forward_hook(self._hook(name)))
        try:
            with eval_mode(model), torch.no_grad():
                model(x)
        finally:
            for h in handles:
                h.remove()

    def _hook(self, name: str) -> Any:
        def hook(m: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            channels = output.shape[1] if isinstance(m, CONV_TYPES) else output.shape[-1]
            pos = output.numel() // max(1, channels) // max(1, output.shape[0])
            self.positions[name] = self.positions.get(name, 0) + pos

        return hook

    def per_module(self, model: nn.Module, channels: Plan | None = None) -> dict[str, int]:
        """MACs per image of each Conv/Linear module; `channels` overrides (in, out) (a plan)."""
        channels = channels or {}
        out = {}
        for name, m in model.named_modules():
            if name in self.positions:
                cin, cout = channels.get(m, in_out(m))
                out[name] = self.positions[name] * _macs_per_position(m, cin, cout)
        return out

    def macs(self, model: nn.Module, channels: Plan | None = None) -> int:
        """Conv/Linear MACs per image; `channels` overrides (in, out) of some modules (a plan)."""
        return sum(self.per_module(model, channels).values())

    def params(self, model: nn.Module, channels: Plan | None = None) -> int:
        """Parameter count, with `channels` overriding (in, out) of some modules (a plan)."""
        total = count_params(model)
        for m, (cin, cout) in (channels or {}).items():
            total += _params_with(m, cin, cout) - sum(p.numel() for p in m.parameters(False))
        return total


def in_out(m: nn.Module) -> tuple[int, int]:
    """(input, output) channels of a conv/linear/norm module; (0, 0) for others."""
    if isinstance(m, CONV_TYPES):
        return m.in_channels, m.out_channels
    if isinstance(m, nn.Linear):
        return m.in_features, m.out_features
    if isinstance(m, BATCHNORMS):
        return m.num_features, m.num_features
    if isinstance(m, nn.GroupNorm):
        return m.num_channels, m.num_channels
    if isinstance(m, nn.PReLU):
        return m.num_parameters, m.num_parameters
    return 0, 0


def _macs_per_position(m: nn.Module, cin: int, cout: int) -> int:
    if not isinstance(m, CONV_TYPES):
        return cin * cout  # Linear
    depthwise = m.groups > 1 and m.groups == m.in_channels  # stays depthwise when pruned
    return math.prod(m.kernel_size) * (cin // max(1, cin if depthwise else m.groups)) * cout


def _params_with(m: nn.Module, cin: int, cout: int) -> int:
    bias = getattr(m, "bias", None) is not None
    if isinstance(m, (*CONV_TYPES, nn.Linear)):
        return _macs_per_position(m, cin, cout) + (cout if bias else 0)
    if isinstance(m, _NORM):
        return 2 * cout if getattr(m, "weight", None) is not None else 0
    if isinstance(m, nn.PReLU):
        return cout
    return sum(p.numel() for p in m.parameters(False))
