"""Latency benchmark: every (model, runtime, batch size) timed the same way on synthetic inputs
(speed only). With `rounds` > 1 each case's budget is split into slices and the cases take turns,
so outside load hits every model alike and the speed-ups stay steady."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from compress.export.bench.baseline import baseline_lines, dense_labels, find_baselines, is_dense
from compress.export.bench.cases import (
    CASE_ERRORS,
    BenchModel,
    Case,
    batch_fn,
    check_names,
    first_line,
    open_runner,
    plan_cases,
)
from compress.export.bench.memory import CaseMemory
from compress.export.bench.results import BenchReport, Measured, add_speedups, case_result, rnd
from compress.export.bench.timing import Timings, time_calls, torch_threads
from compress.export.environment import busy_note, capture_environment, physical_cores
from compress.export.runtimes.precision import QUANTIZED
from compress.export.runtimes.runner import ONNX_RUNTIMES, Runner, check_runtime
from compress.models.data.datasets import synthetic_batch
from compress.models.errors import UsageError
from compress.models.notes import Note
from compress.models.options import check_options, option

__all__ = ["BenchConfig", "BenchModel", "BenchReport", "benchmark", "plan_cases", "run_rounds"]

log = logging.getLogger(__name__)

DEFAULT_SECONDS = 3.0
Progress = Callable[[int, int, str], None]  # (cases done, cases total, what runs now)


@dataclass
class BenchConfig:
    """What to run and how long to measure each case."""

    runtimes: tuple[str, ...] = option(
        ("torch", "ort-cpu"),
        "torch, torch-cuda, torch-compile, ort-cpu, ort-cuda, ort-trt, openvino, "
        "openvino-gpu or openvino-npu; repeat for several (default: torch and "
        "ort-cpu).",
        flag=("--runtime", "-r"),
        cli="repeat",
        show_default=False,
    )
    batch_sizes: tuple[int, ...] = option((1, 8, 32), "Comma-separated batch sizes.", cli="csv-int")
    threads: int | None = option(
        None, "Intra-op threads for every runtime (default: physical cores).", min=1
    )  # same for every runtime
    warmup: int = option(2, "Untimed runs before each case.", min=0)
    iters: int | None = option(None, "Timed runs per case.", min=1)
    seconds: float | None = option(None, "Time per case (default 3 s, at least 5 runs).", above=0)
    min_iters: int = option(5, "Fewest timed runs per case.", cli=False)
    opset: int = option(17, "Opset for exporting PyTorch models.")
    rounds: int = option(
        1,
        "Split each case's time into N slices taken in turns with the other "
        "cases, so load from other processes hits every model alike (steadier "
        "speed-ups).",
        min=1,
    )
    precisions: tuple[str, ...] | None = option(
        None,
        "Comma-separated precisions to run each model at: fp32, bf16 (CPUs with "
        "native bf16, GPUs), fp16 (GPU), int8 (int8 artifacts). Pairs this "
        "machine can't run are skipped with the reason. Quantized artifacts "
        "(int8, int4, mixed) always run at their own. Default: each model at its "
        "own precision.",
        flag="--precision",
        cli="csv",
    )
    # Height = width of the synthetic inputs; None: each model's own.
    input_size: int | None = option(
        None,
        "Input height=width of every model (the model options' --input-size).",
        cli=False,
        min=1,
    )

    def __post_init__(self) -> None:
        self.runtimes = tuple(dict.fromkeys(self.runtimes))
        if self.precisions is not None:
            self.precisions = tuple(dict.fromkeys(self.precisions))
        self.batch_sizes = tuple(dict.fromkeys(self.batch_sizes))
        check_names(self.runtimes, self.precisions or ())
        if not self.runtimes or not self.batch_sizes:
            raise UsageError("give at least one --runtime and one batch size")
        if any(b < 1 for b in self.batch_sizes):
            raise UsageError(f"--batch-sizes must be >= 1, got {list(self.batch_sizes)}")
        check_options(self, flags=True)
        if self.iters is not None and self.seconds is not None:
            raise UsageError("give --iters or --seconds, not both")
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


def benchmark(
    models: list[BenchModel], cfg: BenchConfig | None = None, progress: Progress | None = None
) -> BenchReport:
    """Run every case; a case that fails is reported in `notes` and the run goes on."""
    cfg = cfg or BenchConfig()
    if not models:
        raise UsageError("nothing to benchmark: give at least one --model")
    for r in cfg.runtimes:
        check_runtime(r)
    threads = cfg.threads or physical_cores()
    plan = plan_cases(models, cfg.runtimes, lambda m: precisions_of(m, cfg.precisions), (threads,))
    notes = [
        Note(f"{s.model}: {s.runtime} skipped ({s.precision}: {s.reason})") for s in plan.skipped
    ]
    timed = run_rounds(plan.cases, cfg, notes, progress)
    results = [case_result(plan.cases[i], bs, m) for (i, bs), m in timed.measured.items()]
    add_speedups(results, [m.label for m in models])
    env = capture_environment(threads)
    if busy := busy_note(env):
        notes.append(Note(busy))
    described = [_describe(m) for m in models]
    baselines = find_baselines(results, dense_labels(described))  # what each speed-up is against
    notes += [Note(line) for line in baseline_lines(baselines)]
    return BenchReport(
        environment=env,
        config={**asdict(cfg), "threads": threads},
        models=described,
        results=results,
        notes=notes,
        skipped=[asdict(s) for s in plan.skipped],
    )


def precisions_of(m: BenchModel, asked: tuple[str, ...] | None) -> tuple[str, ...]:
    """The precisions to run `m` at: a quantized artifact always at its own (it can't run at a
    float one), so `--precision fp32,bf16` still times it beside them."""
    if asked is None or m.precision in QUANTIZED:
        return (m.precision,)
    return asked


@dataclass
class Timed:
    """Pooled timings per (case index, batch size), and why each failed case first failed."""

    measured: dict[tuple[int, int], Measured] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    dropped: set[tuple[int, int]] = field(default_factory=set)

    def fail(self, i: int, bs: int | None, reason: str, sizes: tuple[int, ...]) -> None:
        self.failed.setdefault(i, reason)
        for b in sizes if bs is None else (bs,):
            self.dropped.add((i, b))
            self.measured.pop((i, b), None)


def run_rounds(
    cases: list[Case],
    cfg: BenchConfig,
    notes: list[Note],
    progress: Progress | None = None,
    *,
    runners: dict[int, Runner] | None = None,
    settle_s: float = 0.0,
) -> Timed:
    """The timing loop of `compress bench` and `compress deploy`: every (case, batch size),
    `cfg.rounds` times in turn. `runners` (by case index) are the caller's, run at any batch
    size; the others open here. `settle_s`: untimed runs first, up to that long per case."""
    step, owned = cfg.slice(), runners is not None
    total, done = len(cases) * len(cfg.batch_sizes) * cfg.rounds, 0
    with tempfile.TemporaryDirectory(prefix="compress-bench-") as tmp:
        loop = _Loop(cases, cfg, notes, {} if runners is None else runners, owned, Path(tmp))
        if settle_s:
            loop.settle(min(settle_s, step.seconds or settle_s))
        for rnd_ in range(1, cfg.rounds + 1):
            tag = f" · round {rnd_}/{cfg.rounds}" if cfg.rounds > 1 else ""
            for i, case in enumerate(cases):
                if progress:
                    progress(done, total, f"{case.what}{tag}")
                if i not in loop.runners and (i in loop.timed.failed or not loop.open(i)):
                    done += len(cfg.batch_sizes)
                    continue
                for bs in cfg.batch_sizes:
                    if progress:
                        progress(done, total, f"{case.what} · batch {bs}{tag}")
                    done += 1
                    if (i, bs) not in loop.timed.dropped:
                        loop.time_case(i, bs, step)
                if cfg.rounds == 1 and not owned:
                    loop.runners.pop(i, None)
    if progress:
        progress(total, total, "done")
    return loop.timed


@dataclass
class _Loop:
    """One `run_rounds`: the cases, their open runners, the notes and what was timed so far."""

    cases: list[Case]
    cfg: BenchConfig
    notes: list[Note]
    runners: dict[int, Runner]
    any_batch: bool  # the caller's runners: run at any batch size, never a static-batch skip
    tmp: Path
    timed: Timed = field(default_factory=Timed)

    def open(self, i: int) -> bool:
        """Open case `i`'s runner; False (with a note) when the runtime can't read or compile it."""
        case = self.cases[i]
        try:
            with torch_threads(case.threads):
                self.runners[i] = open_runner(case, self.notes, self.tmp, self.cfg.opset)
            return True
        except CASE_ERRORS as e:
            if isinstance(e, UsageError):
                raise
            self.fail(i, None, f"{case.runtime} {case.precision}", e)
            return False

    def fail(self, i: int, bs: int | None, where: str, e: BaseException) -> None:
        """Case `i` (at batch `bs`; None: at all) failed: logged, noted as an error, dropped."""
        err = first_line(e)
        msg = f"{self.cases[i].model.label}: FAILED on {where}: {err}"
        log.warning("%s", msg)
        self.notes.append(Note(msg, "error"))
        self.timed.fail(i, bs, err if bs is None else f"batch {bs}: {err}", self.cfg.batch_sizes)

    def settle(self, seconds: float) -> None:
        """Untimed runs of every case with a runner, at every batch size, up to `seconds` each."""
        for i, case in enumerate(self.cases):
            for bs in self.cfg.batch_sizes:
                if i not in self.runners or (i, bs) in self.timed.dropped:
                    continue
                run, x = batch_fn(self.runners[i]), synthetic_batch(case.model.spec, bs).numpy()
                try:
                    with torch_threads(case.threads):
                        time_calls(partial(run, x), warmup=0, min_runs=1, budget_s=seconds)
                except CASE_ERRORS as e:
                    self.timed.fail(i, None, f"warm-up: {first_line(e)}", self.cfg.batch_sizes)

    def time_case(self, i: int, bs: int, step: BenchConfig) -> None:
        """Time one (case, batch) slice of `step`'s budget; a failure (or a static batch) drops it."""
        case, runner = self.cases[i], self.runners[i]
        declared = getattr(runner, "input_shape", None)
        fixed = declared[0] if declared else None
        if not self.any_batch and isinstance(fixed, int) and fixed > 0 and fixed != bs:
            skip = (
                f"{case.model.label}: batch {bs} skipped on {runner.runtime} (static batch {fixed})"
            )
            self.notes.append(Note(skip))
            self.timed.dropped.add((i, bs))
            return
        run = batch_fn(runner) if self.any_batch else runner.run
        x = synthetic_batch(case.model.spec, bs).numpy()
        mem = CaseMemory(runner.runtime)
        try:
            with mem, torch_threads(case.threads):
                t = _measure(lambda: run(x), step)
        except CASE_ERRORS as e:
            self.fail(i, bs, f"{runner.runtime} at batch {bs}", e)
            return
        got = Measured(
            runtime=runner.runtime,
            providers=list(runner.providers),
            fallback=bool(getattr(runner, "fallback", False)),
            effective_precision=getattr(runner, "effective_precision", None),
            session_seconds=rnd(runner.create_seconds, 4),
            size_bytes=_size(case.model, runner),
            ms=list(t.ms),
            peak_mb=mem.peak_mb,
            delta_mb=mem.delta_mb,
            cuda_mb=mem.cuda_mb,
        )
        prev = self.timed.measured.get((i, bs))
        self.timed.measured[i, bs] = prev.add(got) if prev else got


def _measure(fn: Callable[[], object], cfg: BenchConfig) -> Timings:
    """`iters` timed runs, else runs for `seconds` (3 s by default, at least `min_iters`)."""
    if cfg.iters is not None:
        return time_calls(fn, warmup=cfg.warmup, max_runs=cfg.iters)
    budget = cfg.seconds if cfg.seconds is not None else DEFAULT_SECONDS
    return time_calls(fn, warmup=cfg.warmup, min_runs=cfg.min_iters, budget_s=budget)


def _size(model: BenchModel, runner: Runner) -> int | None:
    if runner.runtime in ONNX_RUNTIMES and model.onnx_path:
        from compress.export.onnx.file import onnx_size

        return onnx_size(model.onnx_path)
    return model.torch_bytes


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
        "dense": is_dense(m.card),
    }
