"""Running a model at another input size than it was built or trained at: `check_input_size` proves
it by a shape probe (refusing, naming the layer, a size that collapses a map below 1x1 or changes
a fixed Linear's input); an ONNX file runs at its fixed H/W or, symbolic, at any."""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.models.errors import InvalidInputError, UsageError
from compress.models.zoo.spec import ModelSpec, attach_spec, eval_mode, make_spec, spec_of

log = logging.getLogger(__name__)

TRAINED_SIZE = "trained_input_size"  # key in ModelSpec.extra


def trained_input_size(spec: ModelSpec) -> int:
    """The input size the model's weights were trained at (and its card's metrics measured)."""
    return int(spec.extra.get(TRAINED_SIZE, spec.input_size))


def spec_at_size(spec: ModelSpec, size: int) -> ModelSpec:
    """`spec` re-targeted to size x size inputs; the trained size is kept (first one wins)."""
    if size == spec.input_size:
        return spec
    extra = {**spec.extra, TRAINED_SIZE: trained_input_size(spec)}
    return replace(spec, input_size=size, extra=extra)


def at_input_size(model: nn.Module, size: int) -> ModelSpec:
    """Check that `model` runs at size x size (:func:`check_input_size`), then attach and
    return its spec for that size. A no-op at the size it already has."""
    spec = spec_of(model)
    if size != spec.input_size:
        check_input_size(model, size)
        spec = spec_at_size(spec, size)
        attach_spec(model, spec)
        log.info(
            "%s runs at %dx%d (trained at %d)", spec.name, size, size, spec.extra[TRAINED_SIZE]
        )
    return spec


def check_input_size(model: nn.Module, size: int) -> None:
    """Run one zero image of size x size through `model` (eval mode, no grad) and raise
    UsageError naming the layer when it can't take that size, or when its output is no longer
    (1, num_classes)."""
    spec = spec_of(model)
    if size < 1:
        raise UsageError(f"--input-size must be >= 1, got {size}")
    p = next(model.parameters(), None)
    x = torch.zeros(
        (1, spec.in_channels, size, size),
        device=p.device if p is not None else "cpu",
        dtype=p.dtype if p is not None and p.is_floating_point() else torch.float32,
    )
    entered: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    leaves = [(n, m) for n, m in model.named_modules() if n and not any(m.children())]
    hooks = [m.register_forward_pre_hook(partial(_enter, entered, n)) for n, m in leaves]
    hooks += [m.register_forward_hook(partial(_leave, entered)) for _, m in leaves]
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(x)
    except (RuntimeError, ValueError, IndexError) as e:
        raise _refusal(spec, size, entered[-1] if entered else None, e) from None
    finally:
        for h in hooks:
            h.remove()
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, spec.num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UsageError(
            f"{spec.name} gives output {got} at {size}x{size} input, not (1, {spec.num_classes}): "
            "its head depends on the input size",
            hint=f"run it at the size it was built for ({spec.input_size})",
        )


def _enter(stack: list[tuple[str, nn.Module, tuple[int, ...]]], name: str, m: nn.Module, args: Any):
    shape = tuple(args[0].shape) if args and isinstance(args[0], torch.Tensor) else ()
    stack.append((name, m, shape))


def _leave(stack: list[Any], m: nn.Module, args: Any, out: Any) -> None:
    if stack and stack[-1][1] is m:
        stack.pop()


def _refusal(
    spec: ModelSpec, size: int, layer: tuple[str, nn.Module, tuple[int, ...]] | None, e: Exception
) -> UsageError:
    """One line naming the layer that can't take `size`, and why."""
    at = f"at {size}x{size} input"
    if layer is None:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return UsageError(f"{spec.name} can't run {at}: {first[:200]}")
    name, m, shape = layer
    kind = type(m).__name__
    if isinstance(m, nn.Linear):
        got = shape[-1] if shape else "?"
        return UsageError(
            f"{spec.name} is not resolution-independent: {name} (Linear, {m.in_features} inputs) "
            f"would get {got} features {at} (a fixed-size Linear after flatten)",
            hint=f"run it at {spec.input_size}, the size it was built for, or put adaptive "
            "pooling before its classifier",
        )
    hw = "x".join(str(s) for s in shape[2:]) or "?"
    return UsageError(
        f"--input-size {size} is too small for {spec.name}: {name} ({kind}) gets a {hw} map "
        f"{at}, too small for its kernel and stride",
        hint=f"use a larger --input-size (it was built for {spec.input_size})",
    )


def onnx_spec_at_size(path: str | Path, spec: ModelSpec, size: int) -> ModelSpec:
    """The spec an ONNX file runs with at size x size: its own when its H/W are fixed at that
    size; re-targeted when they are symbolic; refused (UsageError) when fixed at another."""
    from compress.export.runtimes.runner import inspect_onnx

    if size < 1:
        raise UsageError(f"--input-size must be >= 1, got {size}")
    shape = inspect_onnx(path).input_shape
    hw = [d for d in shape[2:4] if isinstance(d, int) and d > 0]
    if hw in ([], [size], [size, size]):  # symbolic, or fixed at this size
        return spec_at_size(spec, size)
    raise UsageError(
        f"{path} was exported at a fixed {'x'.join(map(str, hw))} input; it can't run at "
        f"{size}x{size}",
        hint=f"export its PyTorch artifact with `compress export --input-size {size}`, "
        "or drop --input-size",
    )


def spec_from_onnx(
    info: Any, in_channels: int | None = None, size: int | None = None, classes: int | None = None
) -> ModelSpec | None:
    """The spec of an ONNX file's declared (N, C, H, W) input (`inspect_onnx`), the sizes given
    filling symbolic ones; None when C/H stay unknown, H != W or it is no image batch.
    InvalidInputError when a given size contradicts a fixed one."""
    shape = info.input_shape
    if len(shape) != 4:
        return None
    c, h, w = (d if isinstance(d, int) and d > 0 else None for d in shape[1:])
    for name, given, declared in (("--in-channels", in_channels, c), ("--input-size", size, h)):
        if given and declared and given != declared:
            raise InvalidInputError(
                f"input shape mismatch: {name} {given}, but {info.path} expects input {shape}",
                hint=f"drop {name} or pass {declared}",
            )
    chans, size = c or in_channels, h or size
    if not chans or not size or (w and w != size):
        return None
    out = info.output_shape
    n = out[-1] if out and isinstance(out[-1], int) and out[-1] > 0 else classes or 10
    return make_spec(Path(info.path).stem, n, chans, size, "fc", variant="onnx")
