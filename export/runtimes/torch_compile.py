"""`torch-compile`: PyTorch models through `torch.compile` (inductor, CPU) behind the Runner interface.
Each new input shape recompiles, so the first call per shape goes to `create_seconds`, not latency.
Channels-last is off by default: slower in every round on the shared 2-core EPYC (ResNet-18,
224², batch 1; benchmarks/compile_channels_last.py)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compress.export.runtimes.batching import Runner, autocast
from compress.models.errors import UnsupportedError, UsageError

log = logging.getLogger(__name__)
# Graphs dynamo may keep per code object before failing. With the batch dimension dynamic,
# LeNet-5 needs 2-3 per precision (batch 1, and conv's fake kernel splits batches at 16).
RECOMPILE_LIMIT = 64


@dataclass
class CompiledTorchRunner(Runner):
    """A `torch.compile`d module; `create_seconds` grows by each shape's compile time."""

    model: Any
    precision: str
    effective_precision: str
    channels_last: bool
    compile_seconds: dict[str, float] = field(default_factory=dict)  # "1x3x224x224" -> s

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if self.channels_last and t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        if t.dim() > 0 and t.shape[0] > 1:  # batch dynamic: a few graphs, not one per size
            torch._dynamo.mark_dynamic(t, 0)
        key = "x".join(str(d) for d in t.shape)
        first = key not in self.compile_seconds
        graphs = compiled_graphs()
        t0 = time.perf_counter()
        try:
            with torch.inference_mode(), autocast("cpu", self.precision), strict_dynamo():
                out = self.model(t)
        except Exception as e:  # inductor/dynamo raise many types; name the runtime and op
            raise compile_error(e) from e
        if first:
            seconds = time.perf_counter() - t0
            self.compile_seconds[key] = round(seconds, 3)
            self.create_seconds += seconds
            if new := compiled_graphs() - graphs:
                log.info(
                    "torch-compile: compiled %d graph(s) for input %s in %.1f s", new, key, seconds
                )
            else:
                log.debug("torch-compile: input %s reuses a compiled graph", key)
        return out.float().numpy()


def check_torch_compile() -> None:
    """UnsupportedError (exit 4) naming what to install when inductor can't build CPU kernels."""
    import shutil

    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise UnsupportedError(
            "--runtime torch-compile: inductor compiles C++ kernels, and no C++ compiler is on PATH",
            hint="install one (apt-get install g++), or use --runtime torch",
        )


def compiled_graphs() -> int:
    """Graphs dynamo has compiled in this process (its `unique_graphs` counter)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def strict_dynamo() -> Any:
    """Dynamo config under which hitting the recompile limit raises instead of silently running
    eager (a "torch-compile" figure would be an eager one). The limit counts graphs of every model
    sharing a `forward`, so it is raised to `RECOMPILE_LIMIT` (8 is too few for deploy)."""
    import torch._dynamo

    return torch._dynamo.config.patch(
        fail_on_recompile_limit_hit=True, suppress_errors=False, recompile_limit=RECOMPILE_LIMIT
    )


def compile_error(e: Exception) -> UnsupportedError:
    """One line naming the runtime and, when torch says so, the op it could not compile."""
    if "recompile_limit" in str(e) or type(e).__name__ == "FailOnRecompileLimitHit":
        import torch._dynamo

        limit = torch._dynamo.config.recompile_limit
        return UnsupportedError(
            f"torch-compile: dynamo hit its recompile limit ({limit} graphs for this model); "
            "it would have run eager, so the case is refused rather than mislabelled",
            hint="raise torch._dynamo.config.recompile_limit, or use fewer batch sizes",
        )
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    first = lines[0][:300] if lines else type(e).__name__
    return UnsupportedError(
        f"torch-compile (inductor) could not compile or run the model: {type(e).__name__}: {first}",
        hint="use --runtime torch (eager), or export to ONNX and use ort-cpu / openvino",
    )


def torch_compile_runner(
    model: Any,
    precision: str = "fp32",
    *,
    example_shape: tuple[int, ...] | None = None,
    channels_last: bool = False,
) -> CompiledTorchRunner:
    """Compile `model` with inductor for CPU; compile once now when `example_shape` is given."""
    import torch

    if precision not in ("fp32", "bf16"):
        raise UsageError(f"torch-compile runs fp32 or bf16, not {precision}")
    check_torch_compile()
    t0 = time.perf_counter()
    model = model.eval().to("cpu")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    compiled = torch.compile(model, backend="inductor", dynamic=False)  # batch: mark_dynamic
    runner = CompiledTorchRunner(
        model=compiled,
        runtime="torch-compile",
        providers=[f"inductor cpu ({precision}{', channels-last' if channels_last else ''})"],
        create_seconds=time.perf_counter() - t0,
        precision=precision,
        effective_precision=precision,
        channels_last=channels_last,
    )
    if example_shape is not None:
        runner.run(np.zeros(example_shape, dtype=np.float32))
    return runner
