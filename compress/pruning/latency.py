"""Measured inference latency of a PyTorch model: onnxruntime CPU and torch eager.

Pruning needs one number quickly and often: an in-memory ONNX graph (the TorchScript exporter,
~10x faster than dynamo) timed in onnxruntime by `compress bench`'s loop (`time_calls`), median
kept. Latency is noisy on a shared machine: compare numbers from one run.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from compress.export.bench.timing import time_calls, torch_threads
from compress.export.runtimes.session import open_session
from compress.models.data.datasets import synthetic_batch
from compress.models.errors import UnsupportedError
from compress.models.jsontypes import JsonObject
from compress.models.zoo.spec import eval_mode, spec_of

log = logging.getLogger(__name__)
OPSET = 17


@dataclass
class LatencyConfig:
    """How to measure: batch, threads, warm-up and timed runs (stopping early after `budget_s`);
    checked by `time_calls` and by the configs that set batch and threads."""

    batch: int = 1
    threads: int = 2
    warmup: int = 3
    runs: int = 20
    budget_s: float = 10.0


@dataclass
class Latency:
    """Median milliseconds per batch in onnxruntime and torch eager."""

    ort_ms: float
    torch_ms: float
    batch: int
    threads: int
    runs: int

    def to_dict(self) -> JsonObject:
        d = asdict(self)
        d["runtime"] = "onnxruntime CPUExecutionProvider (fp32) and torch eager, median"
        return d


def _median_ms(fn: Callable[[], object], cfg: LatencyConfig) -> tuple[float, int]:
    t = time_calls(fn, warmup=cfg.warmup, max_runs=cfg.runs, budget_s=cfg.budget_s)
    return t.median_ms, t.runs


def onnx_bytes(model: nn.Module, x: torch.Tensor) -> bytes:
    """The model as an in-memory ONNX graph (legacy TorchScript exporter, fixed batch)."""
    buf = io.BytesIO()
    try:
        with eval_mode(model):
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
    return buf.getvalue()


def ort_latency_ms(model: nn.Module, cfg: LatencyConfig) -> tuple[float, int]:
    """Median onnxruntime CPU latency (ms per batch) and the number of timed runs."""
    x = synthetic_batch(spec_of(model), cfg.batch)
    sess = open_session(onnx_bytes(model, x), cfg.threads)
    feed = {"input": x.numpy()}
    return _median_ms(lambda: sess.run(None, feed), cfg)


def measure_latency(model: nn.Module, cfg: LatencyConfig | None = None) -> Latency:
    """Median latency of `model` at `cfg.batch` on onnxruntime CPU and torch eager."""
    cfg = cfg or LatencyConfig()
    ort_ms, runs = ort_latency_ms(model, cfg)
    x = synthetic_batch(spec_of(model), cfg.batch)
    with eval_mode(model), torch_threads(cfg.threads), torch.inference_mode():  # eager, no grad
        torch_ms, n = _median_ms(lambda: model(x), cfg)
    log.debug("latency ort=%s torch=%s ms (batch %d)", ort_ms, torch_ms, cfg.batch)
    return Latency(ort_ms, torch_ms, cfg.batch, cfg.threads, max(runs, n))
