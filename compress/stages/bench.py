"""`compress bench` and `compress doctor`: resolve `--model` references, then measure or diagnose.

A reference is a zoo name, a PyTorch or ONNX artifact, or a bare `.onnx` file. ONNX inputs are
first run once in a child process, so a file that crashes onnxruntime is reported, not fatal.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from compress.export.bench.measure import BenchConfig, BenchModel, Progress, benchmark
from compress.export.bench.results import BenchReport
from compress.export.doctor.diagnose import DoctorConfig, diagnose
from compress.export.doctor.diagnosis import Diagnosis, Finding
from compress.export.onnx.convert import ExportConfig, export_onnx
from compress.export.onnx.file import META_PREFIX
from compress.export.runtimes.input_size import onnx_spec_at_size, spec_from_onnx
from compress.export.runtimes.probe import probe_in_subprocess
from compress.export.runtimes.runner import ORT_PROVIDERS, card_from_onnx, inspect_onnx
from compress.models.artifacts.artifact import ONNX, WEIGHTS, is_artifact
from compress.models.artifacts.resolve import onnx_input
from compress.models.data.datasets import DataConfig
from compress.models.errors import UsageError
from compress.models.zoo.registry import ModelSpec
from compress.stages.common import Model, ModelRef, load_source, load_source_at, model_ref


def run_bench(
    models: Sequence[Model],
    config: BenchConfig | None = None,
    data: DataConfig | None = None,
    *,
    progress: Progress | None = None,
) -> BenchReport:
    """Latency of every model on every runtime and batch size of `config` (`compress.bench`,
    `compress bench`; `progress` gets (done, total, what) as cases finish)."""
    cfg = config or BenchConfig()
    probe_runtime = next((r for r in cfg.runtimes if r in ORT_PROVIDERS), None)
    entries = [
        bench_model(model_ref(m), data, probe_runtime, cfg.threads, input_size=cfg.input_size)
        for m in models
    ]
    _unique_labels(entries)
    return benchmark(entries, cfg, progress)


def bench_model(
    ref: ModelRef,
    data: DataConfig | None = None,
    probe_runtime: str | None = "ort-cpu",
    threads: int | None = None,
    *,
    input_size: int | None = None,
) -> BenchModel:
    """Turn one `--model` reference into a BenchModel (ONNX files probed in a child process),
    at `input_size` when given (None: the model's own size)."""
    path = Path(ref.model)
    onnx = onnx_input(path)
    if onnx is not None:
        onnx_path = onnx.file
        card = onnx.card
        if card is None and META_PREFIX + "spec" in inspect_onnx(onnx_path).metadata:
            card = card_from_onnx(onnx_path)
        sized = replace(ref, input_size=input_size or ref.input_size)
        spec = card.model_spec if card else _spec_from_onnx(onnx_path, sized)
        if input_size is not None:
            spec = onnx_spec_at_size(onnx_path, spec, input_size)
        if probe_runtime:
            probe_in_subprocess(onnx_path, probe_runtime, threads)
        return BenchModel(
            label=path.name, spec=spec, onnx_path=str(onnx_path), card=card, source=str(path)
        )
    src = load_source_at(ref, data, input_size)
    if src.card is not None:
        size = src.card.files.get(WEIGHTS, {}).get("bytes")
    else:
        size = sum(t.numel() * t.element_size() for t in src.model.state_dict().values())
    return BenchModel(
        label=path.name if is_artifact(path) else ref.model,
        spec=src.model.spec,  # type: ignore[arg-type]
        torch_model=src.model.eval(),
        card=src.card,
        source=ref.model,
        torch_bytes=size,
    )


def run_doctor(
    model: Model, config: DoctorConfig | None = None, data: DataConfig | None = None, **options: Any
) -> Diagnosis:
    """Why `model` (an ONNX file/artifact, or the ONNX export of a PyTorch model) is or isn't
    fast here: findings, each with a suggestion (`compress.doctor`, `compress doctor`;
    `options` override `config`'s fields, e.g. `rank=True` to time every runtime x precision)."""
    cfg = replace(config or DoctorConfig(), **options)
    ref = model_ref(model)
    onnx = onnx_input(ref.model)
    if onnx is not None:
        return diagnose(onnx.file, cfg)
    src = load_source(ref, data)
    with tempfile.TemporaryDirectory(prefix="compress-doctor-") as tmp:
        onnx_path = Path(tmp) / ONNX
        export_onnx(src.model, onnx_path, ExportConfig())
        d = diagnose(onnx_path, cfg)
    d.model = ref.model
    what = f"{ref.model} is a PyTorch model: diagnosed its ONNX export (opset 17, dynamic batch)"
    hint = "export it with `compress export` to keep that file"
    d.findings.insert(0, Finding("source", "info", what, suggestion=hint))
    return d


def _spec_from_onnx(path: Path, ref: ModelRef) -> ModelSpec:
    """Input shape of a foreign .onnx file; symbolic sizes need --input-size/--in-channels."""
    info = inspect_onnx(path)
    spec = spec_from_onnx(info, ref.in_channels, ref.input_size, ref.num_classes)
    if spec is not None:
        return spec
    if len(info.input_shape) != 4:
        raise UsageError(f"{path}: input {info.input_shape} is not an image batch (N, C, H, W)")
    raise UsageError(
        f"{path}: cannot tell the input size from {info.input_shape}",
        hint="pass --input-size and --in-channels (square inputs only)",
    )


def _unique_labels(models: list[BenchModel]) -> None:
    seen: dict[str, int] = {}
    for m in models:
        n = seen.get(m.label, 0)
        seen[m.label] = n + 1
        if n:
            m.label = f"{m.label}#{n + 1}"
