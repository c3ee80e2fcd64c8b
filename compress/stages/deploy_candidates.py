"""What `compress deploy` may choose from: every runtime x precision x thread count, opened.

A candidate is one (runtime, precision, threads) triple. Runtimes come from
`export.runtime.RUNTIMES` and are checked with `check_runtime`, so runtimes added there are
tried automatically; one this machine can't run, or a precision a runtime, the artifact or the
CPU rules out, is *skipped with the reason*, never silently dropped. `open_runner` is also what
`compress predict` uses to run a deployed model exactly as it was measured.

Precision follows `export.precision`'s rules: `fp32` everywhere; `bf16` where the runtime can
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

from export.environment import physical_cores
from export.runtime import ORT_PROVIDERS, RUNTIMES, TORCH_RUNTIMES, Runner, check_runtime
from export.timing import torch_threads
from models.errors import UnsupportedError, UsageError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "int8")


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
    """Whether `runtime` runs the PyTorch module (torch, torch-cuda, torch-compile, ...)."""
    return runtime in TORCH_RUNTIMES or runtime.startswith("torch")


def precision_refusal(runtime: str, precision: str, artifact: str = "fp32") -> str | None:
    """Why `runtime` can't run an `artifact`-precision model at `precision` here, or None.

    `export.precision.unavailable` decides where that module exists (the runtime registry's
    own rules); `_unavailable` applies the same rules to the runtimes known before it.
    """
    rule: Callable[[str, str, str], str | None] = _unavailable
    with contextlib.suppress(ImportError):
        from export.precision import unavailable  # type: ignore[import-not-found,unused-ignore]

        rule = unavailable
    return rule(runtime, precision, artifact)


def _unavailable(runtime: str, precision: str, artifact: str = "fp32") -> str | None:
    if artifact in ("int8", "fp16"):
        if precision != artifact:
            return f"an {artifact} artifact runs as {artifact}, not {precision}"
        if needs_torch(runtime):
            return f"{artifact} artifacts are ONNX: PyTorch runtimes do not read them"
        return None
    if precision == "fp32":
        return None
    if precision == "int8":
        return "int8 is the precision of int8 artifacts (`compress quantize`), not a run-time cast"
    cuda = runtime == "torch-cuda"
    if runtime not in TORCH_RUNTIMES:
        return f"{runtime} has no {precision} execution (it runs the graph's own precision)"
    if precision == "fp16":
        return None if cuda else f"fp16 on {runtime}: a GPU precision"
    from compress.training.precision import cpu_has_native_bf16

    if cuda or cpu_has_native_bf16():
        return None
    return "this CPU has no native bf16 (AVX-512 BF16 / AMX): emulated bf16 is slower than fp32"


def open_runner(cand: Candidate, files: ModelFiles, artifact: str = "fp32") -> Runner:
    """A runner for `cand`: the PyTorch module (torch runtimes) or the ONNX file, at the
    candidate's precision, through export.runtime's precision-aware openers where present."""
    import inspect

    import export.runtime as rt

    if needs_torch(cand.runtime):
        if files.torch_model is None:
            raise UnsupportedError(f"{cand.runtime}: an ONNX artifact has no PyTorch module")
        torch_runner: Any = rt.torch_runner
        if "precision" in inspect.signature(torch_runner).parameters:
            runner: Runner = torch_runner(files.torch_model, cand.runtime, cand.precision)
            return runner
        return _torch(cand, files)
    if files.onnx_path is None:
        raise UnsupportedError(f"{cand.runtime}: no ONNX file for this model")
    onnx_runner = getattr(rt, "onnx_runner", None)
    if onnx_runner is not None:
        runner = onnx_runner(files.onnx_path, cand.runtime, cand.threads, cand.precision, artifact)
        return runner
    if cand.runtime in ORT_PROVIDERS:
        return rt.create_session(files.onnx_path, cand.runtime, cand.threads)
    raise UnsupportedError(f"{cand.runtime}: this build has no way to open it for deploy")


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


def effective_precision(runner: Runner, cand: Candidate) -> str:
    """What the runtime reports it computes in (OpenVINO may pick bf16 itself), else asked."""
    return str(getattr(runner, "effective_precision", None) or cand.precision)
