"""onnxruntime sessions as the quantizer needs them: predict, evaluate, time, compare logits.

Sessions and timings are `compress bench`'s (open_session, time_interleaved), so fp32 and int8
are measured by the same code on the same inputs.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.export.bench.timing import time_interleaved
from compress.export.runtimes.session import open_session
from compress.training.evaluate import Predictor, evaluate


@contextlib.contextmanager
def quiet_ort() -> Iterator[None]:
    """onnxruntime.quantization logs every step at INFO on the root logger and prints progress;
    keep that out of our output (our own log lines come before and after)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


session = open_session  # a CPU session; a model the runtime can't load is a typed input error


def run(sess: Any, x: np.ndarray) -> np.ndarray:
    name = sess.get_inputs()[0].name
    out: np.ndarray = sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]
    return out


def predictor(sess: Any) -> Predictor:
    """Adapt a session to compress.training.evaluate's predictor (torch in, torch logits out)."""

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(run(sess, x.numpy()).astype(np.float32))

    return predict


def top1(
    path: str | Path,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    limit: int | None = None,
) -> float:
    """Top-1 accuracy (fraction) of an ONNX file on labelled batches."""
    return evaluate(predictor(session(path)), batches, num_classes, limit=limit).top1  # type: ignore[arg-type]


def latencies(
    paths: list[str | Path],
    sample: np.ndarray,
    batches: tuple[int, ...] = (1, 32),
    *,
    warmup: int = 3,
    runs: int = 30,
    budget_s: float = 6.0,
    threads: int | None = None,
) -> list[dict[int, float]]:
    """Median latency (ms) of each model per batch size; the models take turns on the same input
    (`sample` rows repeated), so load from other processes hits them alike."""
    sessions = [session(p, threads) for p in paths]
    out: list[dict[int, float]] = [{} for _ in paths]
    for b in batches:
        x = np.concatenate([sample] * -(-b // len(sample)))[:b]
        fns = [partial(run, s, x) for s in sessions]
        timed = time_interleaved(fns, warmup=warmup, max_runs=runs, budget_s=budget_s)
        for i, t in enumerate(timed):
            out[i][b] = round(t.median_ms, 4)
    return out


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of `test` against `ref` in dB (higher is closer)."""
    noise = float(np.sum((ref.astype(np.float64) - test) ** 2))
    signal = float(np.sum(ref.astype(np.float64) ** 2))
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(max(signal, 1e-30) / noise))
