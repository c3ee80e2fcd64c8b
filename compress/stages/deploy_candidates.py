"""What `compress deploy` may choose from: every runtime x precision x thread count, opened.

A candidate is one (runtime, precision, threads) triple. Runtimes come from
`compress.export.runtimes.runner.RUNTIMES` and are checked with `check_runtime`, so runtimes added there are
tried automatically; one this machine can't run, or a precision a runtime, the artifact or the
CPU rules out, is *skipped with the reason*, never silently dropped. `open_runner` is also what
`compress predict` uses to run a deployed model exactly as it was measured.

Precision follows `compress.export.runtimes.precision`'s rules: `fp32` everywhere; `bf16` where the runtime can
lower to it and the CPU has native bf16 (or on a GPU); `fp16` on GPUs; an int8 or fp16 artifact
runs only as itself (`int8`/`fp16`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from compress.export.bench.timing import torch_threads
from compress.export.environment import physical_cores
from compress.export.runtimes.precision import PRECISIONS, unavailable
from compress.export.runtimes.runner import (
    RUNTIMES,
    TORCH_RUNTIMES,
    Runner,
    check_runtime,
    onnx_runner,
    torch_runner,
)
from compress.models.errors import UnsupportedError, UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One way to run the model: a runtime, a compute precision and a thread count."""

    runtime: str
    precision: str
    threads: int

    @property
    def label(self) -> str:
        return f"{self.runtime}/{self.precision}/{self.threads}t"


@dataclass
class ModelFiles:
    """The forms of one model a runtime may read: its PyTorch module and/or ONNX file."""

    torch_model: Any = None
    onnx_path: str | None = None
    onnx_error: str | None = None  # why there is no ONNX form (its export failed)


def thread_counts(threads: tuple[int, ...] | None) -> tuple[int, ...]:
    """The thread counts to try: as given, else 1 and all physical cores (deduplicated)."""
    counts = threads or (1, physical_cores())
    if any(t < 1 for t in counts):
        raise UsageError(f"--threads must be >= 1, got {list(counts)}")
    return tuple(dict.fromkeys(counts))


def plan_candidates(
    runtimes: tuple[str, ...] | None,
    precisions: tuple[str, ...],
    threads: tuple[int, ...] | None,
    files: ModelFiles,
    artifact: str = "fp32",
) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """(candidates to try, skipped cases with their reason) for the model's available forms."""
    names = RUNTIMES if runtimes is None else runtimes
    for r in names:
        if r not in RUNTIMES:
            raise UsageError(f"unknown runtime {r!r}; choose from {', '.join(RUNTIMES)}")
    for p in precisions:
        if p not in PRECISIONS:
            raise UsageError(f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}")
    counts = thread_counts(threads)
    out: list[Candidate] = []
    skipped: list[dict[str, Any]] = []
    for runtime in dict.fromkeys(names):
        reason = _runtime_refusal(runtime, files)
        if reason:
            skipped.append(
                {"runtime": runtime, "precision": "*", "status": "skipped", "reason": reason}
            )
            continue
        for precision in dict.fromkeys(precisions):
            why = precision_refusal(runtime, precision, artifact)
            if why:
                skipped.append(
                    {"runtime": runtime, "precision": precision, "status": "skipped", "reason": why}
                )
                continue
            out.extend(Candidate(runtime, precision, t) for t in counts)
    return out, skipped


def _runtime_refusal(runtime: str, files: ModelFiles) -> str | None:
    """Why `runtime` can't run this model here, or None."""
    try:
        check_runtime(runtime)
    except (UnsupportedError, UsageError) as e:
        return e.args[0]
    if needs_torch(runtime) and files.torch_model is None:
        return "an ONNX artifact has no PyTorch module"
    if not needs_torch(runtime) and files.onnx_path is None:
        return f"no ONNX form of this model ({files.onnx_error or 'not exported'})"
    return None


def needs_torch(runtime: str) -> bool:
    """Whether `runtime` runs the PyTorch module (torch, torch-cuda, torch-compile)."""
    return runtime in TORCH_RUNTIMES


def precision_refusal(runtime: str, precision: str, artifact: str = "fp32") -> str | None:
    """Why `runtime` can't run an `artifact`-precision model at `precision` here, or None
    (`compress.export.runtimes.precision`'s rules, shared with `compress bench` and `compress eval`)."""
    return unavailable(runtime, precision, artifact)


def open_runner(cand: Candidate, files: ModelFiles, artifact: str = "fp32") -> Runner:
    """A runner for `cand`: the PyTorch module (torch runtimes) or the ONNX file, at the
    candidate's precision; a pair this machine can't run raises UnsupportedError."""
    if needs_torch(cand.runtime):
        if files.torch_model is None:
            raise UnsupportedError(f"{cand.runtime}: an ONNX artifact has no PyTorch module")
        return torch_runner(files.torch_model, cand.runtime, cand.precision)
    if files.onnx_path is None:
        raise UnsupportedError(f"{cand.runtime}: no ONNX file for this model")
    return onnx_runner(files.onnx_path, cand.runtime, cand.threads, cand.precision, artifact)


@contextlib.contextmanager
def scope(cand: Candidate) -> Iterator[None]:
    """Run inside the candidate's thread count (torch's pool; sessions carry their own)."""
    with torch_threads(cand.threads):
        yield


def batch_fn(runner: Runner) -> Callable[[np.ndarray], np.ndarray]:
    """Run any batch size, also on a model exported with a static batch."""
    from compress.export.runtimes.runner import OrtRunner, run_batched

    if isinstance(runner, OrtRunner):
        return lambda x: run_batched(runner, x)
    return runner.run


def effective_precision(runner: Runner, cand: Candidate) -> str:
    """What the runtime reports it computes in (OpenVINO may pick bf16 itself), else asked."""
    return str(getattr(runner, "effective_precision", None) or cand.precision)
