"""What `compress deploy` may choose from: every runtime x precision x thread count, opened.

A candidate is one (runtime, precision, threads) triple. Runtimes come from
`export.runtime.RUNTIMES` and are checked with `check_runtime`, so runtimes added there are
tried automatically; one this machine can't run, or a precision a runtime or the CPU lacks, is
*skipped with the reason*, never silently dropped. `open_runner` is also what `compress predict`
uses to run a deployed model exactly as it was measured.

Precision is the compute precision asked of the runtime (`fp32` = as the graph is; an int8 or
fp16 artifact stays int8/fp16): `bf16` via autocast in torch (CPU only with native bf16, as
training decides), `fp16` only on CUDA; onnxruntime runs a graph in the precision it was
exported in. A runtime without an adapter here refuses every precision but fp32 and is opened
through `export.runtime.open_runner(...)` when that exists.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.environment import physical_cores
from export.runtime import ORT_PROVIDERS, RUNTIMES, TORCH_RUNTIMES, Runner, check_runtime
from export.timing import torch_threads
from models.errors import UnsupportedError, UsageError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")


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
) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """(candidates to try, skipped cases with their reason) for the model's available forms."""
    names = runtimes or RUNTIMES
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
            why = precision_refusal(runtime, precision)
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
        return "no ONNX form of this model (its export failed; see the log)"
    return None


def needs_torch(runtime: str) -> bool:
    """Whether `runtime` runs the PyTorch module (torch, torch-cuda, torch-compile, ...)."""
    return runtime in TORCH_RUNTIMES or runtime.startswith("torch")


def precision_refusal(runtime: str, precision: str) -> str | None:
    """Why `runtime` can't compute in `precision` on this machine, or None."""
    if precision == "fp32":
        return None
    if runtime in TORCH_RUNTIMES:
        cuda = runtime == "torch-cuda"
        if precision == "fp16" and not cuda:
            return "fp16 autocast is for CUDA GPUs; on CPU it is emulated"
        if precision == "bf16" and not cuda:
            from compress.training.precision import cpu_has_native_bf16

            if not cpu_has_native_bf16():
                return "this CPU has no native bf16 (AVX-512 BF16 / AMX): emulated bf16 is slower"
        return None
    if runtime in ORT_PROVIDERS:
        return (
            f"onnxruntime computes in the graph's own precision, not {precision} "
            "(fp16/int8 graphs come from `compress quantize`)"
        )
    return _generic_precision_refusal(runtime, precision)


def _generic_precision_refusal(runtime: str, precision: str) -> str | None:
    """Runtimes added in export.runtime after this module: ask them, else refuse."""
    import export.runtime as rt

    check = getattr(rt, "check_precision", None)
    if check is None:
        return f"{runtime}: no precision axis in this build (fp32 only)"
    try:
        check(runtime, precision)
    except (UnsupportedError, UsageError) as e:
        return str(e.args[0])
    return None


def open_runner(cand: Candidate, files: ModelFiles) -> Runner:
    """A runner for `cand`: torch eager (with autocast), an onnxruntime session, or a runtime
    registered later in `export.runtime` (through its `open_runner`)."""
    if cand.runtime in TORCH_RUNTIMES:
        return _torch(cand, files)
    if cand.runtime in ORT_PROVIDERS:
        from export.runtime import create_session

        if files.onnx_path is None:
            raise UnsupportedError(f"{cand.runtime}: no ONNX file for this model")
        return create_session(files.onnx_path, cand.runtime, cand.threads)
    import export.runtime as rt

    factory = getattr(rt, "open_runner", None)
    if factory is None:
        raise UnsupportedError(f"{cand.runtime}: this build has no way to open it for deploy")
    source = files.onnx_path if files.torch_model is None else files.torch_model
    runner: Runner = factory(source, cand.runtime, threads=cand.threads, precision=cand.precision)
    return runner


@dataclass
class AutocastRunner:
    """A torch runner whose forward runs under bf16/fp16 autocast; logits come back fp32."""

    inner: Any
    dtype: Any
    runtime: str
    providers: list[str]
    create_seconds: float

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.autocast(self.inner.device, dtype=self.dtype):
            out: np.ndarray = self.inner.run(x)
        return out


def _torch(cand: Candidate, files: ModelFiles) -> Runner:
    import torch

    from export.runtime import torch_runner

    if files.torch_model is None:
        raise UnsupportedError(f"{cand.runtime}: an ONNX artifact has no PyTorch module")
    base = torch_runner(files.torch_model, cand.runtime)
    if cand.precision == "fp32":
        return base
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[cand.precision]
    return AutocastRunner(base, dtype, base.runtime, base.providers, base.create_seconds)


@contextlib.contextmanager
def scope(cand: Candidate) -> Iterator[None]:
    """Run inside the candidate's thread count (torch's pool; sessions carry their own)."""
    with torch_threads(cand.threads):
        yield


def batch_fn(runner: Runner) -> Callable[[np.ndarray], np.ndarray]:
    """Run any batch size, also on a model exported with a static batch."""
    from export.runtime import OrtRunner, run_batched

    if isinstance(runner, OrtRunner):
        return lambda x: run_batched(runner, x)
    return runner.run


def effective_precision(runner: Runner, cand: Candidate, model_precision: str = "fp32") -> str:
    """What the runtime reports it computes in (OpenVINO may pick bf16 itself); else the
    precision asked for, where `fp32` means the graph's own (an int8 graph computes in int8)."""
    reported = getattr(runner, "effective_precision", None)
    if reported:
        return str(reported)
    return model_precision if cand.precision == "fp32" else cand.precision


def model_files_of(path: str | Path) -> list[str]:
    return sorted(p.name for p in Path(path).iterdir() if p.is_file())
