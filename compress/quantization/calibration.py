"""Calibration data for int8: a seeded subset of the validation split (never test), checked
early (empty, too few, wrong shape, NaN) before any long work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from compress.models.errors import InvalidInputError

log = logging.getLogger(__name__)
MIN_SAMPLES = 16  # below this, activation ranges are a guess


def calibration_inputs(dataset: Any, samples: int, seed: int = 0) -> np.ndarray:
    """`samples` normalized inputs (N, C, H, W) float32 drawn deterministically from `dataset`."""
    n = len(dataset)
    if n == 0:
        raise InvalidInputError(
            "the calibration (validation) split is empty",
            hint="use a data set with a validation split (--data-dir), or more training images",
        )
    if n < samples:
        log.warning("calibration: %d samples requested, the validation split has %d", samples, n)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(samples, n), replace=False))
    return torch.stack([torch.as_tensor(dataset[int(i)][0]) for i in idx]).float().numpy()


def check_calibration(
    x: np.ndarray | None, input_shape: Sequence[int | str | None], min_samples: int = MIN_SAMPLES
) -> None:
    """Refuse calibration data that is empty, too small, non-finite or of the wrong shape
    (`input_shape`: batch first; symbolic or unknown dimensions are not checked)."""
    if x is None or x.size == 0 or len(x) == 0:
        raise InvalidInputError(
            "calibration data is empty", hint="pass a data set with a validation split"
        )
    if x.ndim != len(input_shape):
        raise InvalidInputError(
            f"calibration data has shape {tuple(x.shape)}, the model input has rank "
            f"{len(input_shape)} ({_shape_str(input_shape)})",
            hint="the data set must match the model's input (channels, size)",
        )
    for axis, (got, want) in enumerate(zip(x.shape[1:], input_shape[1:], strict=True), start=1):
        if isinstance(want, int) and want > 0 and got != want:
            raise InvalidInputError(
                f"calibration data has shape {tuple(x.shape)}, the model wants "
                f"{_shape_str(input_shape)} (axis {axis}: {got} != {want})",
                hint="the data set must match the model's input (channels, size)",
            )
    if len(x) < min_samples:
        raise InvalidInputError(
            f"only {len(x)} calibration samples; at least {min_samples} are needed for "
            "meaningful activation ranges",
            hint="raise --samples or use a larger validation split",
        )
    if not np.isfinite(x).all():
        raise InvalidInputError("calibration data contains NaN or Inf values")
    if float(x.std()) == 0.0:
        raise InvalidInputError(
            "calibration data is constant (every value identical)",
            hint="check the data set: calibration needs real images",
        )


def _shape_str(shape: Sequence[int | str | None]) -> str:
    return "(" + ", ".join(str(d) if d not in (None, "", 0) else "?" for d in shape) + ")"


def make_reader(input_name: str, x: np.ndarray, batch_size: int = 32, fixed: bool = False) -> Any:
    """An onnxruntime CalibrationDataReader over `x`. Unless the batch is `fixed`, batches are
    equal (the largest divisor of len(x) up to `batch_size`): the histogram calibrators fail on
    a smaller last batch."""
    from onnxruntime.quantization import CalibrationDataReader

    if not fixed and len(x):
        batch_size = next(d for d in range(min(batch_size, len(x)), 0, -1) if len(x) % d == 0)

    class ArrayReader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

        def rewind(self) -> None:
            self._batches = iter(
                {input_name: x[i : i + batch_size]} for i in range(0, len(x), batch_size)
            )

    return ArrayReader()
