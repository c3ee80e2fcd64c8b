"""Calibration batches are equal in size, as onnxruntime's histogram calibrators require."""

from __future__ import annotations

import numpy as np

from compress.quantization.calibration import make_reader


def _sizes(reader) -> list[int]:
    out = []
    while (b := reader.get_next()) is not None:
        out.append(len(b["x"]))
    return out


def test_uneven_sample_count_gives_equal_batches():
    x = np.zeros((40, 1, 4, 4), np.float32)
    reader = make_reader("x", x, batch_size=32)
    assert _sizes(reader) == [20, 20]
    reader.rewind()
    assert sum(_sizes(reader)) == 40


def test_fixed_batch_models_keep_their_batch():
    x = np.zeros((64, 1, 4, 4), np.float32)
    assert _sizes(make_reader("x", x, batch_size=8, fixed=True)) == [8] * 8
