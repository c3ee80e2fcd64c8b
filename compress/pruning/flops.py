"""Parameters and MACs of a model, and which executed ops were *not* counted.

Two counters with one definition of a MAC (one multiply-accumulate of a convolution or a
matrix product; bias additions are not MACs):

* :func:`count_ops` runs the model once under PyTorch's ``FlopCounterMode`` (aten level, so
  functional ``F.conv2d`` / ``torch.matmul`` in user models are seen too) and lists every other
  op that ran, e.g. ``relu``, ``max_pool2d``, ``add``, ``batch_norm``: those cost time but are
  not in the MAC figure. This is what cards report.
* :class:`Geometry` records, once, how many output positions each Conv/Linear module computes
  per image; channel pruning never changes those, so the MACs and parameters of a pruned model,
  or of a *planned* pruning (channel counts given per module), follow from module attributes
  without another forward pass. The pruning loop uses it to search for a ratio in milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from compress.models.jsontypes import JsonObject
from compress.models.zoo.spec import eval_mode, spec_of

# Ops that only move or describe data: never reported as "not counted".
_DATA_MOVEMENT = {
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


@dataclass
class OpCount:
    """MACs and parameters of one forward pass at batch 1 (per image)."""

    params: int
    macs: int
    uncounted_ops: list[str] = field(default_factory=list)
    per_module: dict[str, int] = field(default_factory=dict)

    def to_dict(self, *, per_module: bool = False) -> JsonObject:
        d: dict[str, Any] = {
            "params": self.params,
            "macs": self.macs,
            "macs_counted": "convolutions and matrix products (bias adds excluded)",
            "uncounted_ops": self.uncounted_ops,
        }
        if per_module:
            d["per_module"] = self.per_module
        return d


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
    batch = max(1, x.shape[0])
    counted = {op.__name__ for op in flop_registry if hasattr(op, "__name__")}
    uncounted = sorted(recorder.names - counted - _DATA_MOVEMENT)
    per_module = _per_module_macs(counter.get_flop_counts(), batch)
    return OpCount(
        params=count_params(model),
        macs=int(counter.get_total_flops()) // (2 * batch),
        uncounted_ops=uncounted,
        per_module=per_module,
    )


def _per_module_macs(flops: Mapping[str, Mapping[Any, int]], batch: int) -> dict[str, int]:
    """FlopCounterMode keys modules as 'RootClass.a.b'; keep the leaf-most names only."""
    out: dict[str, int] = {}
    for key, ops in flops.items():
        if key == "Global" or "." not in key:
            continue
        out[key.split(".", 1)[1]] = int(sum(ops.values())) // (2 * batch)
    leaves = {k: v for k, v in out.items() if not any(o.startswith(k + ".") for o in out)}
    return leaves


# ----------------------------------------------------------------------------- fast estimates

# torch's public layer classes (its `_ConvNd`/`_BatchNorm` bases are private).
CONV_TYPES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_CONV = CONV_TYPES
_NORM = (*BATCHNORM_TYPES, nn.GroupNorm, nn.InstanceNorm2d)


class Geometry:
    """Output positions per image of every Conv/Linear module, captured by one forward pass."""

    def __init__(self, model: nn.Module, example_inputs: torch.Tensor | None = None) -> None:
        x = _example(model, example_inputs)
        self.positions: dict[str, int] = {}
        handles = []
        for name, m in model.named_modules():
            if isinstance(m, (_CONV, nn.Linear)):
                handles.append(m.register_forward_hook(self._hook(name)))
        try:
            with eval_mode(model), torch.no_grad():
                model(x)
        finally:
            for h in handles:
                h.remove()
        self.batch = max(1, x.shape[0])

    def _hook(self, name: str) -> Any:
        def hook(m: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            channels = output.shape[1] if isinstance(m, _CONV) else output.shape[-1]
            pos = output.numel() // max(1, channels) // max(1, output.shape[0])
            self.positions[name] = self.positions.get(name, 0) + pos

        return hook

    def per_module(
        self, model: nn.Module, channels: Mapping[nn.Module, tuple[int, int]] | None = None
    ) -> dict[str, int]:
        """MACs per image of each Conv/Linear module; `channels` overrides (in, out) (a plan)."""
        channels = channels or {}
        out = {}
        for name, m in model.named_modules():
            if name in self.positions:
                cin, cout = channels.get(m, in_out(m))
                out[name] = self.positions[name] * _macs_per_position(m, cin, cout)
        return out

    def macs(
        self, model: nn.Module, channels: Mapping[nn.Module, tuple[int, int]] | None = None
    ) -> int:
        """Conv/Linear MACs per image; `channels` overrides (in, out) of some modules (a plan)."""
        return sum(self.per_module(model, channels).values())

    def params(
        self, model: nn.Module, channels: Mapping[nn.Module, tuple[int, int]] | None = None
    ) -> int:
        """Parameter count, with `channels` overriding (in, out) of some modules (a plan)."""
        total = count_params(model)
        for m, (cin, cout) in (channels or {}).items():
            total += _params_with(m, cin, cout) - sum(p.numel() for p in m.parameters(False))
        return total


def in_out(m: nn.Module) -> tuple[int, int]:
    """(input, output) channels of a conv/linear/norm module; (0, 0) for others."""
    if isinstance(m, _CONV):
        return m.in_channels, m.out_channels
    if isinstance(m, nn.Linear):
        return m.in_features, m.out_features
    if isinstance(m, BATCHNORM_TYPES):
        return m.num_features, m.num_features
    if isinstance(m, nn.GroupNorm):
        return m.num_channels, m.num_channels
    if isinstance(m, nn.PReLU):
        return m.num_parameters, m.num_parameters
    return 0, 0


def _conv_groups(m: nn.Module, cin: int) -> int:
    groups: int = m.groups  # type: ignore[assignment]
    if groups > 1 and groups == m.in_channels:  # depthwise: stays depthwise when pruned
        return cin
    return groups


def _macs_per_position(m: nn.Module, cin: int, cout: int) -> int:
    if isinstance(m, _CONV):
        k = 1
        for s in m.kernel_size:
            k *= s
        return k * (cin // max(1, _conv_groups(m, cin))) * cout
    return cin * cout  # Linear


def _params_with(m: nn.Module, cin: int, cout: int) -> int:
    bias = getattr(m, "bias", None) is not None
    if isinstance(m, _CONV):
        return _macs_per_position(m, cin, cout) + (cout if bias else 0)
    if isinstance(m, nn.Linear):
        return cin * cout + (cout if bias else 0)
    if isinstance(m, _NORM):
        return 2 * cout if getattr(m, "weight", None) is not None else 0
    if isinstance(m, nn.PReLU):
        return cout
    return sum(p.numel() for p in m.parameters(False))
