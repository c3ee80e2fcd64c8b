"""Shape checks, batching and autocast shared by every runner. `run_batched` feeds a fixed-batch
model chunks of its batch (padding the tail); `Runner` is every runner's base (benchmark facts and
a torch-in, torch-out `predict` for `compress.training.evaluate`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compress.models.errors import InvalidInputError


def check_input_shape(shape: tuple[int, ...], declared: list[int | str], where: str) -> None:
    """InvalidInputError (one line) when `shape` does not fit the model's declared input."""
    if len(shape) != len(declared) or any(
        isinstance(d, int) and d > 0 and d != s for s, d in zip(shape, declared, strict=False)
    ):
        raise InvalidInputError(
            f"input shape {list(shape)} does not fit {where}, which expects {declared}",
            hint="check --input-size / --in-channels, or export with a dynamic batch",
        )


def run_batched(runner: Any, x: np.ndarray) -> np.ndarray:
    """Run a batch of any size on a runner whose declared `input_shape` may fix the batch
    (padding the tail)."""
    fixed = runner.input_shape[0] if runner.input_shape else None
    if not isinstance(fixed, int) or fixed <= 0 or len(x) == fixed:
        return runner.run(x)
    outs = []
    for i in range(0, len(x), fixed):
        chunk = x[i : i + fixed]
        n = len(chunk)
        if n < fixed:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - n, axis=0)])
        outs.append(runner.run(chunk)[:n])
    return np.concatenate(outs)


@dataclass
class Runner:
    """Maps an input batch to logits (`run`), with what it ran on, how long opening it took,
    and whether (and why) it fell back from what was asked."""

    runtime: str
    providers: list[str]
    create_seconds: float
    fallback: bool = field(default=False, kw_only=True)
    notes: list[str] = field(default_factory=list, kw_only=True)

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, x: Any) -> Any:
        """torch.Tensor -> torch.Tensor logits (fixed batches split and padded)."""
        import torch

        arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        out = run_batched(self, arr) if getattr(self, "input_shape", None) else self.run(arr)
        return torch.from_numpy(np.asarray(out, dtype=np.float32))


def autocast(device: str, precision: str) -> Any:
    """torch.autocast to bf16/fp16 on `device`; a no-op context at fp32."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device, dtype=dtype) if dtype else contextlib.nullcontext()
