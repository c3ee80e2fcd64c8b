"""Latency benchmark: every (model, runtime, batch size), measured the same way.

Per case: warm-up, then timed runs until `iters` runs or `seconds` have passed (at least
`min_iters`) by `compress.export.bench.timing` (the loop pruning and quantization time with too), giving
p50/p90/p99/mean/std/min/max latency, throughput, peak RSS (CUDA memory on GPU), size on disk
and session creation time. Inputs are synthetic (random, the model's input shape): they measure
speed only, never accuracy, and every report says so. PyTorch models also run on onnxruntime
after an export into a temporary directory.

With `rounds` > 1 each case's budget is split into that many slices and the cases take turns,
slice by slice, so load from other processes on a shared machine hits every model alike and
the speed-ups between them stay steady.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from compress.export.bench.memory import CaseMemory
from compress.export.bench.results import (
    BenchReport,
    Measured,
    add_speedups,
    case_result,
    rnd,
)
from compress.export.bench.timing import Timings, time_calls, torch_threads
from compress.export.environment import busy_note, capture_environment, physical_cores
from compress.export.runtimes.precision import PRECISIONS, QUANTIZED, unavailable
from compress.export.runtimes.runner import (
    ONNX_RUNTIMES,
    RUNTIMES,
    TORCH_RUNTIMES,
    Runner,
    check_runtime,
    onnx_runner,
    torch_runner,
)
from compress.models.data.datasets import synthetic_batch
from compress.models.errors import CompressError, UsageError
from compress.models.zoo.registry import ModelSpec

log = logging.getLogger(__name__)

DEFAULT_SECONDS = 3.0
Progress = Callable[[int, int, str], None]  # (cases done, cases total, what runs now)


@dataclass
class BenchConfig:
    """What to run and how long to measure each case."""

    runtimes: tuple[str, ...] = field(
        default=("torch", "ort-cpu"),
        metadata={
            "help": (
                "torch, torch-cuda, torch-compile, ort-cpu, ort-cuda, ort-trt, openvino, "
                "openvino-gpu or openvino-npu; repeat for several (default: torch and "
                "ort-cpu)."
            ),
            "flag": ("--runtime", "-r"),
            "cli": "repeat",
            "show_default": False,
        },
    )
    batch_sizes: tuple[int, ...] = field(
        default=(1, 8, 32), metadata={"help": "Comma-separated batch sizes.", "cli": "csv-int"}
    )
    threads: int | None = field(
        default=None,
        metadata={"help": "Intra-op threads for every runtime (default: physical cores)."},
    )  # same for every runtime
    warmup: int = field(default=2, metadata={"help": "Untimed runs before each case."})
    iters: int | None = field(default=None, metadata={"help": "Timed runs per case."})
    seconds: float | None = field(
        default=None, metadata={"help": "Time per case (default 3 s, at least 5 runs)."}
    )
    min_iters: int = field(
        default=5, metadata={"help": "Fewest timed runs per case.", "cli": False}
    )
    opset: int = field(default=17, metadata={"help": "Opset for exporting PyTorch models."})
    rounds: int = field(
        default=1,
        metadata={
            "help": (
                "Split each case's time into N slices taken in turns with the other "
                "cases, so load from other processes hits every model alike (steadier "
                "speed-ups)."
            )
        },
    )
    precisions: tuple[str, ...] | None = field(
        default=None,
        metadata={
            "help": (
                "Comma-separated precisions to run each model at: fp32, bf16 (CPUs with "
                "native bf16, GPUs), fp16 (GPU), int8 (int8 artifacts). Pairs this "
                "machine can't run are skipped with the reason. Quantized artifacts "
                "(int8, int4, mixed) always run at their own. Default: each model at its "
                "own precision."
            ),
            "flag": "--precision",
            "cli": "csv",
        },
    )
    # Height = width of the synthetic inputs; None: each model's own (an ONNX artifact's is the
    # size it was exported at). Models are re-targeted before timing (compress.export.runtimes.input_size).
    input_size: int | None = field(
        default=None,
        metadata={
            "help": "Input height=width of every model (the model options' --input-size).",
            "cli": False,
        },
    )

    def __post_init__(self) -> None:
        self.runtimes = tuple(dict.fromkeys(self.runtimes))
        if self.precisions is not None:
            self.precisions = tuple(dict.fromkeys(self.precisions))
            for p in self.precisions:
                if p not in PRECISIONS:
                    raise UsageError(
                        f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}"
                    )
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
        if self.rounds < 1:
            raise UsageError(f"--rounds must be >= 1, got {self.rounds}")
        if self.input_size is not None and self.input_size < 1:
            raise UsageError(f"--input-size must be >= 1, got {self.input_size}")
        if self.iters is not None and self.iters < self.rounds:
            raise UsageError(f"--iters ({self.iters}) must be >= --rounds ({self.rounds})")

    def slice(self) -> BenchConfig:
        """The budget of one round: iters/rounds runs or seconds/rounds seconds."""
        if self.rounds == 1:
            return self
        if self.iters is not None:
            return replace(self, iters=-(-self.iters // self.rounds), rounds=1)
        seconds = self.seconds if self.seconds is not None else DEFAULT_SECONDS
        min_iters = max(1, -(-self.min_iters // self.rounds))
        return replace(self, seconds=seconds / self.rounds, min_iters=min_iters, rounds=1)

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
            top1 = metrics[split].get("top1") if isinstance(metrics.get(split), dict) else None
            if top1 is not None:
                return float(top1)
        return None

    @property
    def precision(self) -> str:
        return str(getattr(self.card, "precision", "fp32"))


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
    plan, skipped = plan_cases(models, cfg)
    notes = [
        f"{s['model']}: {s['runtime']} skipped ({s['precision']}: {s['reason']})" for s in skipped
    ]
    measured = _run_rounds(plan, cfg, threads, notes, progress)
    results = [
        case_result(plan[i][0].label, plan[i][2], plan[i][0].accuracy, bs, threads, m)
        for (i, bs), m in measured.items()
    ]
    add_speedups(results, [m.label for m in models])
    env = capture_environment(threads)
    if busy := busy_note(env):
        notes.append(busy)
    notes += _baseline_notes(models, results)
    return BenchReport(
        environment=env,
        config={**asdict(cfg), "threads": threads},
        models=[_describe(m) for m in models],
        results=results,
        notes=notes,
        skipped=skipped,
    )


Case = tuple[BenchModel, str, str]  # (model, runtime, precision)


def _precisions_of(m: BenchModel, asked: tuple[str, ...] | None) -> tuple[str, ...]:
    """The precisions to run `m` at: a quantized artifact runs at its own whatever the list
    says (it can't run at a float one), so `--precision fp32,bf16` still times it beside them."""
    if asked is None or m.precision in QUANTIZED:
        return (m.precision,)
    return asked


def plan_cases(
    models: list[BenchModel], cfg: BenchConfig
) -> tuple[list[Case], list[dict[str, str]]]:
    """Every (model, runtime, precision) this machine can run, and the others with the reason."""
    plan: list[Case] = []
    skipped: list[dict[str, str]] = []
    for m in models:
        for r in cfg.runtimes:
            for p in _precisions_of(m, cfg.precisions):
                why = (
                    "an ONNX model has no PyTorch module"
                    if r in TORCH_RUNTIMES and m.torch_model is None
                    else unavailable(r, p, m.precision)
                )
                if why:
                    skipped.append({"model": m.label, "runtime": r, "precision": p, "reason": why})
                else:
                    plan.append((m, r, p))
    return plan, skipped


def _run_rounds(
    plan: list[Case],
    cfg: BenchConfig,
    threads: int,
    notes: list[str],
    progress: Progress | None,
) -> dict[tuple[int, int], Measured]:
    """Every (plan entry, batch) case, `cfg.rounds` times in turn; runners live across rounds
    only when there are several, so one round holds a single model in memory at a time."""
    total, done = len(plan) * len(cfg.batch_sizes) * cfg.rounds, 0
    step = cfg.slice()
    measured: dict[tuple[int, int], Measured] = {}
    dropped: set[tuple[int, int]] = set()  # skipped or failed: not retried in later rounds
    with tempfile.TemporaryDirectory(prefix="compress-bench-") as tmp, torch_threads(threads):
        runners: dict[int, Runner] = {}  # kept across rounds only when there are several
        for rnd in range(1, cfg.rounds + 1):
            tag = f" · round {rnd}/{cfg.rounds}" if cfg.rounds > 1 else ""
            for i, (model, runtime, precision) in enumerate(plan):
                what = f"{model.label} · {runtime} {precision}"
                if progress:
                    progress(done, total, f"{what}{tag}")
                if i not in runners:
                    made = _make_runner(model, runtime, precision, threads, cfg, Path(tmp), notes)
                    if made is None:
                        dropped.update((i, bs) for bs in cfg.batch_sizes)
                        done += len(cfg.batch_sizes)
                        continue
                    runners[i] = made
                for bs in cfg.batch_sizes:
                    if progress:
                        progress(done, total, f"{what} · batch {bs}{tag}")
                    done += 1
                    if (i, bs) in dropped:
                        continue
                    got = _time_case(model, runners[i], bs, step, notes)
                    if got is None:
                        dropped.add((i, bs))
                        measured.pop((i, bs), None)
                    else:
                        prev = measured.get((i, bs))
                        measured[i, bs] = prev.add(got) if prev else got
                if cfg.rounds == 1:
                    runners.pop(i, None)
        runners.clear()
    if progress:
        progress(total, total, "done")
    return measured


def _make_runner(
    model: BenchModel,
    runtime: str,
    precision: str,
    threads: int,
    cfg: BenchConfig,
    tmp: Path,
    notes: list[str],
) -> Runner | None:
    """The runner of one case; None (with a note) when the runtime can't read or compile it."""
    try:
        return _open_runner(model, runtime, precision, threads, cfg, tmp, notes)
    except CompressError as e:
        if isinstance(e, UsageError):
            raise
        msg = f"{model.label}: FAILED on {runtime} {precision}: {str(e).splitlines()[0]}"
        log.warning("%s", msg)
        notes.append(msg)
        return None


def _open_runner(
    model: BenchModel,
    runtime: str,
    precision: str,
    threads: int,
    cfg: BenchConfig,
    tmp: Path,
    notes: list[str],
) -> Runner:
    if runtime in TORCH_RUNTIMES:
        shape = (1, *model.spec.input_shape)
        runner = torch_runner(model.torch_model, runtime, precision, example_shape=shape)
        if runtime == "torch-compile":
            notes.append(
                f"{model.label}: torch-compile {precision} compiled in {runner.create_seconds:.1f} s "
                "(batch 1; other batch sizes compile during warm-up, in the session column)"
            )
        return runner
    if model.onnx_path is None:
        from compress.export.onnx.convert import ExportConfig, export_onnx

        path = tmp / f"{len(list(tmp.iterdir()))}.onnx"
        res = export_onnx(model.torch_model, path, ExportConfig(opset=cfg.opset))
        model.onnx_path = str(path)
        notes.append(f"{model.label}: exported to ONNX for onnxruntime in {res.seconds:.1f} s")
    artifact = model.precision if model.torch_model is None else "fp32"
    runner = onnx_runner(model.onnx_path, runtime, threads, precision, artifact)
    notes.extend(f"{model.label}: {n}" for n in runner.notes)
    return runner


def _time_case(
    model: BenchModel, runner: Runner, bs: int, cfg: BenchConfig, notes: list[str]
) -> Measured | None:
    """Time one (model, runtime, batch) slice; None (with a note) when it can't run."""
    declared = getattr(runner, "input_shape", None)
    fixed = declared[0] if declared else None
    if isinstance(fixed, int) and fixed > 0 and fixed != bs:
        notes.append(
            f"{model.label}: batch {bs} skipped on {runner.runtime} (static batch {fixed})"
        )
        return None
    x = synthetic_batch(model.spec, bs).numpy()
    mem = CaseMemory(runner.runtime)
    try:
        with mem:
            t = _measure(runner, x, cfg)
    except (CompressError, MemoryError, RuntimeError) as e:
        msg = f"{model.label}: FAILED on {runner.runtime} at batch {bs}: {str(e).splitlines()[0]}"
        log.warning("%s", msg)
        notes.append(msg)
        return None
    return Measured(
        runtime=runner.runtime,
        providers=list(runner.providers),
        fallback=bool(getattr(runner, "fallback", False)),
        effective_precision=getattr(runner, "effective_precision", None),
        session_seconds=rnd(runner.create_seconds, 4),
        size_bytes=_size(model, runner),
        ms=list(t.ms),
        peak_mb=mem.peak_mb,
        delta_mb=mem.delta_mb,
        cuda_mb=mem.cuda_mb,
    )


def _measure(runner: Runner, x: np.ndarray, cfg: BenchConfig) -> Timings:
    """`iters` timed runs, else runs for `seconds` (3 s by default, at least `min_iters`)."""
    if cfg.iters is not None:
        return time_calls(lambda: runner.run(x), warmup=cfg.warmup, max_runs=cfg.iters)
    budget = cfg.seconds if cfg.seconds is not None else DEFAULT_SECONDS
    return time_calls(
        lambda: runner.run(x), warmup=cfg.warmup, min_runs=cfg.min_iters, budget_s=budget
    )


def _size(model: BenchModel, runner: Runner) -> int | None:
    if runner.runtime in ONNX_RUNTIMES and model.onnx_path:
        from compress.export.onnx.file import onnx_size

        return onnx_size(model.onnx_path)
    return model.torch_bytes


def _baseline_notes(models: list[BenchModel], results: list[Any]) -> list[str]:
    """Which case each labelled speed-up is measured against, per batch size."""
    from compress.export.bench.baseline import baseline_lines, dense_labels, find_baselines

    dense = dense_labels([_describe(m) for m in models])
    return baseline_lines(find_baselines(results, dense))


def _describe(m: BenchModel) -> dict[str, Any]:
    from compress.export.bench.baseline import is_dense

    return {
        "label": m.label,
        "source": m.source,
        "architecture": m.spec.name,
        "input_shape": list(m.spec.input_shape),
        "num_classes": m.spec.num_classes,
        "precision": m.precision,
        "accuracy": m.accuracy,
        "trained": bool(getattr(m.card, "trained", False)),
        "dense": is_dense(m.card),
    }
