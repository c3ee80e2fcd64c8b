"""Measured inference latency of a PyTorch model: onnxruntime CPU and torch eager.

Self-contained on purpose (export/bench.py is the toolkit's full benchmark); pruning needs
one number quickly and often: the model is exported to an in-memory ONNX graph
(``torch.onnx.export(dynamo=False)``, ~10x faster to export than dynamo), run in an
onnxruntime CPU session with a fixed thread count after a warm-up, and the median of
repeated runs is kept. Latency is noisy on a shared machine: compare numbers from one run.
"""

from __future__ import annotations

import io
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from models.errors import UnsupportedError, UsageError
from models.registry import spec_of

log = logging.getLogger(__name__)
OPSET = 17


@dataclass
class LatencyConfig:
    """How to measure: batch, threads, warm-up and timed runs (stopping early after `budget_s`)."""

    batch: int = 1
    threads: int = 2
    warmup: int = 3
    runs: int = 20
    budget_s: float = 10.0

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise UsageError(f"latency batch must be >= 1, got {self.batch}")
        if self.threads < 1:
            raise UsageError(f"latency threads must be >= 1, got {self.threads}")
        if self.runs < 1 or self.warmup < 0:
            raise UsageError("latency runs must be >= 1 and warm-up >= 0")


@dataclass
class Latency:
    """Median milliseconds per batch; `ort_ms` is None when onnxruntime was not measured."""

    ort_ms: float | None
    torch_ms: float | None
    batch: int
    threads: int
    runs: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["runtime"] = "onnxruntime CPUExecutionProvider (fp32) and torch eager, median"
        return d


def _input(model: nn.Module, batch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn((batch, *spec_of(model).input_shape), generator=g)


def _median_ms(fn: Callable[[], object], cfg: LatencyConfig) -> tuple[float, int]:
    for _ in range(cfg.warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < cfg.runs:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= 5 and time.perf_counter() - start > cfg.budget_s:
            break
    return statistics.median(times), len(times)


def onnx_bytes(model: nn.Module, x: torch.Tensor) -> bytes:
    """The model as an in-memory ONNX graph (legacy TorchScript exporter, fixed batch)."""
    buf = io.BytesIO()
    was_training = model.training
    model.eval()
    try:
        torch.onnx.export(
            model,
            (x,),
            buf,  # type: ignore[arg-type]  # file-like objects are accepted
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["logits"],
        )
    except Exception as e:  # the exporter raises many types; report one line
        raise UnsupportedError(
            f"ONNX export for the latency measurement failed: {type(e).__name__}: {e}",
            hint="measure with onnxruntime disabled (torch eager only)",
        ) from e
    finally:
        model.train(was_training)
    return buf.getvalue()


def ort_latency_ms(model: nn.Module, cfg: LatencyConfig) -> tuple[float, int]:
    """Median onnxruntime CPU latency (ms per batch) and the number of timed runs."""
    import onnxruntime as ort

    x = _input(model, cfg.batch)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cfg.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(
        onnx_bytes(model, x), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    feed = {"input": x.numpy()}
    return _median_ms(lambda: sess.run(None, feed), cfg)


def torch_latency_ms(model: nn.Module, cfg: LatencyConfig) -> tuple[float, int]:
    """Median torch eager latency (ms per batch, no grad, eval mode) with `threads` threads."""
    x = _input(model, cfg.batch)
    before = torch.get_num_threads()
    was_training = model.training
    torch.set_num_threads(cfg.threads)
    model.eval()
    try:
        with torch.inference_mode():
            return _median_ms(lambda: model(x), cfg)
    finally:
        torch.set_num_threads(before)
        model.train(was_training)


def measure_latency(
    model: nn.Module, cfg: LatencyConfig | None = None, *, ort: bool = True, eager: bool = True
) -> Latency:
    """Median latency of `model` at `cfg.batch` on onnxruntime CPU and/or torch eager."""
    cfg = cfg or LatencyConfig()
    ort_ms = torch_ms = None
    runs = 0
    if ort:
        ort_ms, runs = ort_latency_ms(model, cfg)
    if eager:
        torch_ms, n = torch_latency_ms(model, cfg)
        runs = max(runs, n)
    log.debug("latency ort=%s torch=%s ms (batch %d)", ort_ms, torch_ms, cfg.batch)
    return Latency(ort_ms, torch_ms, cfg.batch, cfg.threads, runs)
