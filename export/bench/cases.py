"""Benchmark cases: which (model, runtime, precision, threads) run here, and their runners. bench,
deploy and predict plan with `plan_cases` and open with `open_runner`: same refusals and opening."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress.export.runtimes.precision import check_precision, unavailable
from compress.export.runtimes.runner import (
    RUNTIMES,
    TORCH_RUNTIMES,
    Runner,
    check_runtime,
    onnx_runner,
    torch_runner,
)
from compress.models.errors import CompressError, UnsupportedError, UsageError
from compress.models.notes import Note
from compress.models.zoo.registry import ModelSpec

# What a runtime may raise for one case (a graph it can't compile, out of memory): the case is
# reported failed with the first line, and the others go on.
CASE_ERRORS = (CompressError, RuntimeError, MemoryError, ValueError)


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
    onnx_error: str | None = None  # why there is no ONNX form (its export failed)

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


@dataclass(frozen=True, eq=False)
class Case:
    """One way to run one model: a runtime, a compute precision and a thread count."""

    model: BenchModel
    runtime: str
    precision: str
    threads: int

    @property
    def label(self) -> str:
        return f"{self.runtime}/{self.precision}/{self.threads}t"

    @property
    def what(self) -> str:
        return f"{self.model.label} · {self.runtime} {self.precision}"


@dataclass(frozen=True)
class Skipped:
    """A (model, runtime, precision) this machine can't run, and why (precision `*`: any)."""

    model: str
    runtime: str
    precision: str
    reason: str


@dataclass
class Plan:
    """The cases to run, and the ones refused with their reason."""

    cases: list[Case]
    skipped: list[Skipped]


def check_names(runtimes: tuple[str, ...], precisions: tuple[str, ...]) -> None:
    """UsageError for a runtime or precision name compress does not know."""
    for r in runtimes:
        if r not in RUNTIMES:
            raise UsageError(f"unknown runtime {r!r}; choose from {', '.join(RUNTIMES)}")
    for p in precisions:
        check_precision(p)


def plan_cases(
    models: list[BenchModel],
    runtimes: tuple[str, ...],
    precisions_of: Callable[[BenchModel], tuple[str, ...]],
    threads: tuple[int, ...],
) -> Plan:
    """Every (model, runtime, precision, threads) this machine can run, and the refused ones:
    a runtime refused as a whole is one entry (precision `*` when several were asked)."""
    plan = Plan([], [])
    for m in models:
        precs = tuple(dict.fromkeys(precisions_of(m)))
        for r in dict.fromkeys(runtimes):
            why = runtime_refusal(r, m)
            if why:
                plan.skipped.append(Skipped(m.label, r, precs[0] if len(precs) == 1 else "*", why))
                continue
            for p in precs:
                why = unavailable(r, p, m.precision)
                if why:
                    plan.skipped.append(Skipped(m.label, r, p, why))
                else:
                    plan.cases.extend(Case(m, r, p, t) for t in dict.fromkeys(threads))
    return plan


def runtime_refusal(runtime: str, model: BenchModel) -> str | None:
    """Why `runtime` can't run `model` here (not installed, no such form of it), or None."""
    try:
        check_runtime(runtime)
    except (UnsupportedError, UsageError) as e:
        return str(e.args[0])
    if runtime in TORCH_RUNTIMES:
        return None if model.torch_model is not None else "an ONNX model has no PyTorch module"
    if model.onnx_path is None and (model.torch_model is None or model.onnx_error):
        return f"no ONNX form of this model ({model.onnx_error or 'not exported'})"
    return None


def open_runner(
    case: Case, notes: list[Note] | None = None, tmp: Path | None = None, opset: int = 17
) -> Runner:
    """The runner of `case`: its PyTorch module, or its ONNX file (exported into `tmp` first
    when the model has none); what is worth knowing about it goes to `notes`."""
    model, runtime, precision = case.model, case.runtime, case.precision
    notes = [] if notes is None else notes
    if runtime in TORCH_RUNTIMES:
        if model.torch_model is None:
            raise UnsupportedError(f"{runtime}: an ONNX model has no PyTorch module")
        shape = (1, *model.spec.input_shape)
        runner = torch_runner(model.torch_model, runtime, precision, example_shape=shape)
        if runtime == "torch-compile":
            notes.append(
                Note(
                    f"{model.label}: torch-compile {precision} compiled in "
                    f"{runner.create_seconds:.1f} s (batch 1; other batch sizes compile during "
                    "warm-up, in the session column)"
                )
            )
        return runner
    if model.onnx_path is None:
        if tmp is None or model.torch_model is None:
            raise UnsupportedError(f"{runtime}: no ONNX file for this model")
        from compress.export.onnx.convert import ExportConfig, export_onnx

        path = tmp / f"{len(list(tmp.iterdir()))}.onnx"
        res = export_onnx(model.torch_model, path, ExportConfig(opset=opset))
        model.onnx_path = str(path)
        notes.append(
            Note(f"{model.label}: exported to ONNX for onnxruntime in {res.seconds:.1f} s")
        )
    artifact = model.precision if model.torch_model is None else "fp32"
    runner = onnx_runner(model.onnx_path, runtime, case.threads, precision, artifact)
    notes.extend(Note(f"{model.label}: {n}", "warning") for n in runner.notes)  # asked != got
    return runner


def batch_fn(runner: Runner) -> Callable[[np.ndarray], np.ndarray]:
    """Run any batch size, also on a model exported with a static batch."""
    from compress.export.runtimes.runner import OrtRunner, run_batched

    if isinstance(runner, OrtRunner):
        return lambda x: run_batched(runner, x)
    return runner.run


def first_line(e: BaseException) -> str:
    """The first line of an error's message (at most 300 characters), for tables and notes."""
    text = str(e.args[0] if e.args else e).strip()
    return (text.splitlines() or [type(e).__name__])[0][:300]
