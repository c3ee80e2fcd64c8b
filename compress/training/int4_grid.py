"""Training weights on the int4 grid `compress quantize` will store them on (weight-only QAT).

Post-training int4 costs small models accuracy (LeNet-5: 0.1-0.3 pt for its largest Linear,
benchmarks/results/lenet5-size.md); trained on the grid, the export is exact. Linear: onnxruntime's
MatMulNBits grid (checked against `quantize_matmul_4bits`, ort 1.32): blocks of `block_size` along
K of B = W^T, scale = the block's largest-magnitude weight / -8, q = clip(round(w / scale), -8, 7).
Convolutions: symmetric per output channel, scale = max |w| / 7. Gradients pass straight through.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from compress.models.errors import UsageError

Q_MIN, Q_MAX = -8, 7
LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def fake_quant_int4(w: torch.Tensor, block_size: int) -> torch.Tensor:
    """`w` (out x in, a Linear weight) rounded to MatMulNBits's int4 grid; STE gradient."""
    out_f, in_f = w.shape
    pad = (-in_f) % block_size
    blocks = nn.functional.pad(w, (0, pad)).reshape(out_f, -1, block_size)
    with torch.no_grad():
        idx = blocks.abs().argmax(dim=2, keepdim=True)
        scale = blocks.gather(2, idx) / Q_MIN
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = torch.clamp(torch.round(blocks / scale), Q_MIN, Q_MAX) * scale
    snapped = q.reshape(out_f, -1)[:, :in_f]
    return w + (snapped - w).detach()


def fake_quant_int4_channels(w: torch.Tensor) -> torch.Tensor:
    """`w` (a convolution weight) on the weight-only int4 grid, per output channel; STE."""
    with torch.no_grad():
        amax = w.abs().flatten(1).amax(dim=1).view(-1, *([1] * (w.dim() - 1)))
        scale = torch.where(amax > 0, amax / Q_MAX, torch.ones_like(amax))
    snapped = torch.clamp(torch.round(w / scale), Q_MIN, Q_MAX) * scale
    return w + (snapped - w).detach()


class Int4Grid(nn.Module):
    """A parametrization: the weight as its int4 grid value (Linear, 2-D: MatMulNBits blocks)."""

    def __init__(self, block_size: int) -> None:
        super().__init__()
        self.block_size = block_size

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quant_int4(w, self.block_size) if w.dim() == 2 else fake_quant_int4_channels(w)


def check_block_size(block_size: int) -> None:
    if block_size < 16 or block_size & (block_size - 1):  # what MatMulNBits accepts
        raise UsageError(
            f"int4 block size must be a power of 2 >= 16, got {block_size}",
            hint="use the quantize stage's --block-size (default 32)",
        )


def attach(model: nn.Module, layers: list[str], block_size: int) -> None:
    """Put the named Linear/convolution layers of `model` on the int4 grid while it trains
    (every name checked first: a bad one leaves `model` as it was)."""
    check_block_size(block_size)
    modules = dict(model.named_modules())
    for name in layers:
        layer = modules.get(name)
        if layer is None:
            ok = [n for n, m in modules.items() if isinstance(m, LAYERS)]
            raise UsageError(
                f"int4 layer {name!r} is not a module of {type(model).__name__}",
                hint=f"its Linear and convolution layers: {', '.join(ok) or 'none'}",
            )
        if not isinstance(layer, LAYERS):
            raise UsageError(
                f"int4 layer {name!r} is a {type(layer).__name__}, not a Linear or convolution layer",
                hint="int4 weights exist for Linear layers (MatMulNBits, int4 compute) and "
                "convolutions (weight-only, dequantized at run time)",
            )
    for name in layers:
        if not parametrize.is_parametrized(modules[name], "weight"):
            parametrize.register_parametrization(modules[name], "weight", Int4Grid(block_size))


def snap(model: nn.Module) -> list[str]:
    """Store each int4-grid weight as its grid value and drop the parametrization; the names."""
    done = []
    for name, m in model.named_modules():
        plist: Any = getattr(m, "parametrizations", None)
        if plist is not None and "weight" in plist and isinstance(plist["weight"][0], Int4Grid):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
            done.append(name)
    return done


def on_grid(weight: torch.Tensor, block_size: int) -> bool:
    """Whether a weight already lies on its int4 grid (quantizes to itself, to float rounding)."""
    with torch.no_grad():
        return bool(torch.allclose(Int4Grid(block_size)(weight), weight, rtol=1e-6, atol=0))
