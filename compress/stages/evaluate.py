"""`compress eval`: metrics of a PyTorch or ONNX artifact on a split of real data.

Accuracy is measured where the model runs (`--runtime openvino --precision bf16` evaluates that
build, never a number assumed from PyTorch); a PyTorch model asked to run on an ONNX runtime is
exported to a temporary ONNX file first.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from compress.models.artifacts.resolve import onnx_input
from compress.models.data.datasets import DataConfig, load_data
from compress.models.errors import UsageError
from compress.models.jsontypes import JsonObject
from compress.models.options import option
from compress.models.zoo.registry import ModelSpec
from compress.stages.common import Model, ModelRef, data_config_for, load_source, model_ref
from compress.training.evaluate import EvalResult, Predictor, evaluate, torch_predictor

SPLITS = ("test", "val", "train")


@dataclass(frozen=True)
class EvalConfig:
    """Which split, how many samples, where to run and at what precision."""

    split: str = option("test", "test (default), val or train.")
    limit: int | None = option(None, "Evaluate at most N samples.")
    runtime: str | None = option(
        None,
        "Where to run it: torch, torch-cuda, torch-compile, ort-cpu, ort-cuda, ort-trt, openvino, "
        "openvino-gpu or openvino-npu (default: onnxruntime for ONNX artifacts, PyTorch "
        "otherwise). Accuracy is measured there.",
        flag=("--runtime", "-r"),
    )
    precision: str | None = option(
        None, "fp32, bf16 (native-bf16 CPUs, GPUs), fp16 (GPU) or int8 (int8 artifacts)."
    )
    threads: int | None = option(None, "Runtime threads (default: all).")

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise UsageError("--limit must be >= 1")
        if self.split not in SPLITS:
            raise UsageError(f"--split must be one of {', '.join(SPLITS)}")


@dataclass
class Where:
    """The runtime, the precision asked for and the one computed in, the ONNX providers."""

    runtime: str
    precision: str
    effective_precision: str
    providers: list[str] | None = None


@dataclass
class EvalReport:
    """`compress eval`'s result: which model, split and data, where it ran, its metrics."""

    model: str
    split: str
    dataset: dict[str, Any]  # the data set's description (compress.models.data)
    class_names: list[str]
    where: Where
    result: EvalResult

    def to_dict(self) -> JsonObject:
        """The `--json` form: flat, as written before."""
        where = {k: v for k, v in asdict(self.where).items() if v is not None}
        head = {k: getattr(self, k) for k in ("model", "split", "dataset", "class_names")}
        return head | where | self.result.to_dict()


def run_eval(
    model: Model, data: DataConfig | None = None, config: EvalConfig | None = None, **options: Any
) -> EvalReport:
    """Top-1, top-5, loss, per-class accuracy of `model` on a split, measured on a runtime at a
    precision (`compress.evaluate`, `compress eval`; `options` override `config`'s fields,
    e.g. `split="val", limit=64`)."""
    cfg = replace(config or EvalConfig(), **options)
    ref = model_ref(model)
    with contextlib.ExitStack() as stack:
        predict, spec, card, where = _predictor(ref, data, cfg, stack)
        bundle = load_data(data_config_for(data, card), spec)
        result = evaluate(predict, bundle.loader(cfg.split), spec.num_classes, limit=cfg.limit)
    return EvalReport(ref.model, cfg.split, bundle.describe(), bundle.class_names, where, result)


def _predictor(
    ref: ModelRef, data: DataConfig | None, cfg: EvalConfig, stack: contextlib.ExitStack
) -> tuple[Predictor, ModelSpec, Any, Where]:
    """(predict, spec, card, where it ran) for `ref` on `cfg.runtime` at `cfg.precision`."""
    from compress.export.runtimes.runner import (
        ONNX_RUNTIMES,
        RUNTIMES,
        TORCH_RUNTIMES,
        onnx_artifact_runner,
    )

    runtime, precision, threads = cfg.runtime, cfg.precision, cfg.threads
    if runtime is not None and runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if onnx_input(ref.model) is not None:
        runtime = runtime or "ort-cpu"
        if runtime in TORCH_RUNTIMES:
            raise UsageError(
                f"{ref.model} is an ONNX model: evaluate it on {', '.join(ONNX_RUNTIMES)}"
            )
        runner, card = onnx_artifact_runner(ref.model, runtime, precision, threads)
        return runner.predict, card.model_spec, card, _where(runner, precision or card.precision)
    src = load_source(ref, data)
    spec: ModelSpec = src.model.spec  # type: ignore[assignment]
    if runtime is None and precision is None:  # the plain PyTorch path, as before
        where = Where("torch", "fp32", "fp32")
        return torch_predictor(src.model), spec, src.card, where  # type: ignore[return-value]
    runtime = runtime or "torch"
    runner = _runner_for_torch(src.model, runtime, precision or "fp32", threads, stack)
    return runner.predict, spec, src.card, _where(runner, precision or "fp32")


def _runner_for_torch(
    model: Any, runtime: str, precision: str, threads: int | None, stack: contextlib.ExitStack
) -> Any:
    """A PyTorch model on `runtime`: directly, or through a temporary ONNX export."""
    from compress.export.runtimes.runner import TORCH_RUNTIMES, onnx_runner, torch_runner

    if runtime in TORCH_RUNTIMES:
        return torch_runner(model, runtime, precision)
    from compress.export.onnx.convert import ExportConfig, export_onnx

    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="compress-eval-")))
    export_onnx(model.eval(), tmp / "model.onnx", ExportConfig())
    return onnx_runner(tmp / "model.onnx", runtime, threads, precision)


def _where(runner: Any, precision: str) -> Where:
    effective = getattr(runner, "effective_precision", precision)
    return Where(runner.runtime, precision, effective, list(runner.providers))
