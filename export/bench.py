"""Latency benchmark: every (model, runtime, batch size), measured the same way.

Per case: warm-up, then timed runs until `iters` runs or `seconds` have passed (at least
`min_iters`) by `export.timing`, the loop pruning and quantization time with too, giving
p50/p90/p99/mean/std/min/max latency, throughput, peak RSS (CUDA memory on GPU), size on disk
and session creation time. Inputs are synthetic (random, the model's input shape): they measure
speed only, never accuracy, and every report says so. PyTorch models also run on onnxruntime
after an export into a temporary directory.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export.environment import capture_environment, physical_cores
from export.runtime import (
    ORT_PROVIDERS,
    RUNTIMES,
    TORCH_RUNTIMES,
    OrtRunner,
    Runner,
    check_runtime,
    create_session,
    torch_runner,
)
from export.timing import Timings, time_calls, torch_threads
from models.data import synthetic_batch
from models.errors import CompressError, UsageError
from models.registry import ModelSpec

log = logging.getLogger(__name__)

SCHEMA = "compress-bench/1"
INPUT_NOTE = "synthetic: random normal inputs of the model's shape (latency only, not accuracy)"
Progress = Callable[[int, int, str], None]  # (cases done, cases total, what runs now)


@dataclass
class BenchConfig:
    """What to run and how long to measure each case."""

    runtimes: tuple[str, ...] = ("torch", "ort-cpu")
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    threads: int | None = None  # None: physical cores, same for every runtime
    warmup: int = 2
    iters: int | None = None
    seconds: float | None = None  # per case; default 3 s when neither iters nor seconds
    min_iters: int = 5
    opset: int = 17

    def __post_init__(self) -> None:
        self.runtimes = tuple(dict.fromkeys(self.runtimes))
        self.batch_sizes = tuple(dict.fromkeys(self.batch_sizes))
        for r in self.runtimes:
            if r not in RUNTIMES:
                raise UsageError(f"unknown runtime {r!r}; choose from {', '.join(RUNTIMES)}")
        if not self.runtimes or not self.batch_sizes:
            raise UsageError("give at least one --runtime and one batch size")
        if any(b < 1 for b in self.batch_sizes):
            raise UsageError(f"--batch-sizes must be >= 1, got {list(self.batch_sizes)}")
        if self.threads is not None and self.threads < 1:
            raise UsageError("--threads must be >= 1")
        if self.warmup < 0:
            raise UsageError("--warmup must be >= 0")
        if self.iters is not None and self.seconds is not None:
            raise UsageError("give --iters or --seconds, not both")
        if self.iters is not None and self.iters < 1:
            raise UsageError("--iters must be >= 1")
        if self.seconds is not None and self.seconds <= 0:
            raise UsageError("--seconds must be > 0")

    @property
    def effective_threads(self) -> int:
        return self.threads or physical_cores()


@dataclass
class BenchModel:
    """One model to benchmark: a PyTorch module, an ONNX file, or both."""

    label: str
    spec: ModelSpec
    torch_model: Any = None
    onnx_path: str | None = None
    card: Any = None
    source: str = ""
    torch_bytes: int | None = None

    @property
    def accuracy(self) -> float | None:
        """Test (else val) top-1 from the card, when it knows one."""
        metrics = getattr(self.card, "metrics", None) or {}
        for split in ("test", "val"):
            if isinstance(metrics.get(split), dict) and "top1" in metrics[split]:
                return float(metrics[split]["top1"])
        return None

    @property
    def precision(self) -> str:
        return str(getattr(self.card, "precision", "fp32"))


@dataclass
class CaseResult:
    """One (model, runtime, batch size) measurement. Latencies in milliseconds."""

    model: str
    runtime: str
    batch_size: int
    providers: list[str]
    fallback: bool
    threads: int
    iters: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput: float  # items per second at p50
    peak_rss_mb: float | None
    run_rss_mb: float | None
    cuda_mem_mb: float | None
    size_bytes: int | None
    session_seconds: float
    precision: str
    accuracy: float | None
    input: str = "synthetic"
    speedup_vs_first: float | None = None
    speedup_vs_torch: float | None = None


@dataclass
class BenchReport:
    """Everything a benchmark produced; `to_dict()` is the JSON schema `compress-bench/1`."""

    environment: dict[str, Any]
    config: dict[str, Any]
    models: list[dict[str, Any]]
    results: list[CaseResult]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "input": INPUT_NOTE,
            "environment": self.environment,
            "config": self.config,
            "models": self.models,
            "results": [asdict(r) for r in self.results],
            "notes": self.notes,
        }


def benchmark(
    models: list[BenchModel], cfg: BenchConfig | None = None, progress: Progress | None = None
) -> BenchReport:
    """Run every case; a case that fails is reported in `notes` and the run goes on."""
    cfg = cfg or BenchConfig()
    if not models:
        raise UsageError("nothing to benchmark: give at least one --model")
    for r in cfg.runtimes:
        check_runtime(r)
    threads = cfg.effective_threads
    plan = [(m, r) for m in models for r in cfg.runtimes if _applicable(m, r)]
    notes = [
        f"{m.label}: {r} skipped (an ONNX model has no PyTorch module)"
        for m in models
        for r in cfg.runtimes
        if not _applicable(m, r)
    ]
    total, done = len(plan) * len(cfg.batch_sizes), 0
    results: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="compress-bench-") as tmp, torch_threads(threads):
        for model, runtime in plan:
            if progress:
                progress(done, total, f"{model.label} · {runtime} · starting")
            runner = _make_runner(model, runtime, threads, cfg, Path(tmp), notes)
            for bs in cfg.batch_sizes:
                if progress:
                    progress(done, total, f"{model.label} · {runtime} · batch {bs}")
                case = _run_case(model, runner, bs, threads, cfg, notes)
                if case is not None:
                    results.append(case)
                done += 1
            del runner
    if progress:
        progress(total, total, "done")
    _add_speedups(results, [m.label for m in models])
    return BenchReport(
        environment=capture_environment(threads),
        config={**asdict(cfg), "threads": threads},
        models=[_describe(m) for m in models],
        results=results,
        notes=notes,
    )


def _applicable(model: BenchModel, runtime: str) -> bool:
    return runtime not in TORCH_RUNTIMES or model.torch_model is not None


def _make_runner(
    model: BenchModel, runtime: str, threads: int, cfg: BenchConfig, tmp: Path, notes: list[str]
) -> Runner:
    if runtime in TORCH_RUNTIMES:
        return torch_runner(model.torch_model, runtime)
    if model.onnx_path is None:
        from export.onnx_export import ExportConfig, export_onnx

        path = tmp / f"{len(list(tmp.iterdir()))}.onnx"
        res = export_onnx(model.torch_model, path, ExportConfig(opset=cfg.opset))
        model.onnx_path = str(path)
        notes.append(f"{model.label}: exported to ONNX for onnxruntime in {res.seconds:.1f} s")
    runner = create_session(model.onnx_path, runtime, threads)
    notes.extend(f"{model.label}: {n}" for n in runner.notes)
    return runner


def _run_case(
    model: BenchModel, runner: Runner, bs: int, threads: int, cfg: BenchConfig, notes: list[str]
) -> CaseResult | None:
    fixed = runner.input_shape[0] if isinstance(runner, OrtRunner) else None
    if isinstance(fixed, int) and fixed > 0 and fixed != bs:
        notes.append(
            f"{model.label}: batch {bs} skipped on {runner.runtime} (static batch {fixed})"
        )
        return None
    x = synthetic_batch(model.spec, bs).numpy()
    mem = _Memory(runner.runtime)
    try:
        with mem:
            t = _measure(runner, x, cfg)
    except (CompressError, MemoryError, RuntimeError) as e:
        msg = f"{model.label}: FAILED on {runner.runtime} at batch {bs}: {str(e).splitlines()[0]}"
        log.warning("%s", msg)
        notes.append(msg)
        return None
    p50 = t.median_ms
    return CaseResult(
        model=model.label,
        runtime=runner.runtime,
        batch_size=bs,
        providers=list(runner.providers),
        fallback=bool(getattr(runner, "fallback", False)),
        threads=threads,
        iters=t.runs,
        p50_ms=_r(p50),
        p90_ms=_r(t.percentile(90)),
        p99_ms=_r(t.percentile(99)),
        mean_ms=_r(t.mean_ms),
        std_ms=_r(t.std_ms),
        min_ms=_r(t.min_ms),
        max_ms=_r(t.max_ms),
        throughput=_r(bs / p50 * 1e3 if p50 > 0 else 0.0),
        peak_rss_mb=mem.peak_mb,
        run_rss_mb=mem.delta_mb,
        cuda_mem_mb=mem.cuda_mb,
        size_bytes=_size(model, runner),
        session_seconds=_r(runner.create_seconds, 4),
        precision=model.precision,
        accuracy=model.accuracy,
    )


def _measure(runner: Runner, x: np.ndarray, cfg: BenchConfig) -> Timings:
    """`iters` timed runs, else runs for `seconds` (3 s by default, at least `min_iters`)."""
    if cfg.iters is not None:
        return time_calls(lambda: runner.run(x), warmup=cfg.warmup, max_runs=cfg.iters)
    budget = cfg.seconds if cfg.seconds is not None else 3.0
    return time_calls(
        lambda: runner.run(x), warmup=cfg.warmup, min_runs=cfg.min_iters, budget_s=budget
    )


def _size(model: BenchModel, runner: Runner) -> int | None:
    if runner.runtime in ORT_PROVIDERS and model.onnx_path:
        from export.onnx_file import onnx_size

        return onnx_size(model.onnx_path)
    return model.torch_bytes


def _add_speedups(results: list[CaseResult], order: list[str]) -> None:
    """p50 ratios: vs the first model (same runtime and batch) and vs torch (same model)."""
    p50 = {(r.model, r.runtime, r.batch_size): r.p50_ms for r in results}
    first = order[0]
    for r in results:
        if not r.p50_ms > 0:
            continue
        base = p50.get((first, r.runtime, r.batch_size))
        r.speedup_vs_first = _r(base / r.p50_ms, 3) if base else None
        torch_p50 = p50.get((r.model, "torch", r.batch_size))
        r.speedup_vs_torch = _r(torch_p50 / r.p50_ms, 3) if torch_p50 else None


def _describe(m: BenchModel) -> dict[str, Any]:
    return {
        "label": m.label,
        "source": m.source,
        "architecture": m.spec.name,
        "input_shape": list(m.spec.input_shape),
        "num_classes": m.spec.num_classes,
        "precision": m.precision,
        "accuracy": m.accuracy,
        "trained": bool(getattr(m.card, "trained", False)),
    }


class _Memory:
    """Peak RSS of this process during a case (Linux: VmHWM reset via clear_refs), CUDA peak."""

    def __init__(self, runtime: str) -> None:
        self.cuda = "cuda" in runtime or "trt" in runtime
        self.peak_mb: float | None = None
        self.delta_mb: float | None = None
        self.cuda_mb: float | None = None
        self._before = 0.0

    def __enter__(self) -> _Memory:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
        self._before = _rss_mb()
        if self.cuda:
            import torch

            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak_mb = _r(_peak_rss_mb(), 1)
        self.delta_mb = _r(max(0.0, self.peak_mb - self._before), 1)
        if self.cuda:
            import torch

            if torch.cuda.is_available():
                free, total = torch.cuda.mem_get_info()
                alloc = torch.cuda.max_memory_allocated() / 2**20
                self.cuda_mb = _r(max(alloc, (total - free) / 2**20), 1)


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _peak_rss_mb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    return _rss_mb()


def _r(x: Any, nd: int = 3) -> float:
    return round(float(x), nd)
