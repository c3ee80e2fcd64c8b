"""PyTorch -> ONNX: export, clean the graph, stamp metadata, save a checked file (parity: caller).
TorchScript exporter by default: ~2.5 s for ResNet-50 here, the torch.export-based one ~23 s."""

from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.export.onnx.file import (
    OPTIMIZE_LEVELS,
    check_and_save,
    external_data_path,
    onnx_size,
    opset_of,
    set_metadata,
)
from compress.models.errors import UnsupportedError, UsageError
from compress.models.jsontypes import JsonObject
from compress.models.options import check_options, option
from compress.models.zoo.registry import ModelSpec

log = logging.getLogger(__name__)

EXPORTERS = ("torchscript", "dynamo")
PRECISIONS = ("fp32", "fp16")
INPUT_NAME, OUTPUT_NAME = "input", "logits"


@dataclass
class ExportConfig:
    """How to export: opset, batch dimension, exporter, precision, offline optimization."""

    opset: int = option(17, "ONNX opset.")
    dynamic_batch: bool = option(
        True, "Dynamic or fixed (1) batch size.", flag="--dynamic-batch/--static"
    )
    exporter: str = option(
        "torchscript",
        "torchscript (fast, default) or dynamo (torch.export based).",
        choices=EXPORTERS,
    )
    precision: str = option("fp32", "fp32 or fp16 (fp16 weights, fp32 I/O).", choices=PRECISIONS)
    optimize: str = option(
        "none",
        "Offline onnxruntime graph optimization: none, basic, extended (ORT-only "
        "ops) or all (CPU-specific layouts). Parity is re-checked after it.",
        choices=OPTIMIZE_LEVELS,
    )
    parity_samples: int = option(
        64, "Inputs for the parity gate (validation images if trained).", min=1
    )
    static_batch: int = option(1, "The batch size of a static-batch export.", cli=False, min=1)
    # Height = width to export (and parity-check) at; None: the model's own size.
    input_size: int | None = option(
        None,
        "Input height=width to export at (the model options' --input-size).",
        cli=False,
        min=1,
    )
    external_data_threshold: int = option(
        1_800_000_000, "Weights above this many bytes go to external data.", cli=False
    )

    def __post_init__(self) -> None:
        import onnx

        top = onnx.defs.onnx_opset_version()
        if not 7 <= self.opset <= top:
            raise UsageError(f"--opset must be in 7..{top} (this onnx), got {self.opset}")
        check_options(self, flags=True)


@dataclass
class ExportResult:
    """What was written and how long it took."""

    path: str
    exporter: str
    opset: int
    precision: str
    dynamic_batch: bool
    seconds: float
    bytes: int
    external_data: bool
    optimized: str = "none"
    tracer_warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> JsonObject:
        return asdict(self)


class _CastWrapper(nn.Module):
    """fp16 weights inside, fp32 in and out: callers keep feeding float32 images."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()


def export_onnx(
    model: nn.Module,
    path: str | Path,
    cfg: ExportConfig | None = None,
    *,
    metadata: dict[str, str] | None = None,
) -> ExportResult:
    """Export `model` (which carries `.spec`) to a checked file at `path`, at its spec's input
    size (`cfg.input_size` must match: re-target first with `at_input_size`)."""
    import onnx

    cfg = cfg or ExportConfig()
    path = Path(path)
    spec: ModelSpec = model.spec  # type: ignore[assignment]
    if cfg.input_size is not None and cfg.input_size != spec.input_size:
        raise UsageError(
            f"export at {cfg.input_size}: the model's spec says {spec.input_size}",
            hint="re-target it first (compress.export.runtimes.input_size.at_input_size)",
        )
    batch = 2 if cfg.dynamic_batch else cfg.static_batch
    example = torch.zeros((batch, *spec.input_shape))
    model = model.eval()
    net = _CastWrapper(copy.deepcopy(model).half()).eval() if cfg.precision == "fp16" else model
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="compress-export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        tracer = _torch_export(net, example, raw, cfg)
        proto = onnx.load(str(raw), load_external_data=True)
    _inline_constant_identities(proto)
    set_metadata(proto, metadata or {})
    check_and_save(proto, path, cfg.external_data_threshold)
    seconds = time.perf_counter() - t0
    result = ExportResult(
        path=str(path),
        exporter=cfg.exporter,
        opset=opset_of(proto),
        precision=cfg.precision,
        dynamic_batch=cfg.dynamic_batch,
        seconds=round(seconds, 3),
        bytes=onnx_size(path),
        external_data=external_data_path(path).exists(),
        tracer_warnings=tracer,
    )
    if result.opset != cfg.opset:
        log.warning(
            "the %s exporter wrote opset %d (asked for %d): it could not convert the graph down",
            cfg.exporter,
            result.opset,
            cfg.opset,
        )
    log.debug("exported %s (%s, opset %d) in %.1f s", path, cfg.exporter, result.opset, seconds)
    return result


def _torch_export(net: nn.Module, example: torch.Tensor, raw: Path, cfg: ExportConfig) -> list[str]:
    """Run the chosen exporter into `raw`; returns tracer warnings (they flag wrong exports)."""
    names: dict[str, Any] = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME]}
    with _quiet_exporter() as caught:
        try:
            if cfg.exporter == "torchscript":
                axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
                torch.onnx.export(
                    net,
                    (example,),
                    str(raw),
                    dynamo=False,
                    opset_version=cfg.opset,
                    dynamic_axes=axes if cfg.dynamic_batch else None,
                    do_constant_folding=True,
                    **names,
                )
            else:
                shapes = ({0: torch.export.Dim("batch")},) if cfg.dynamic_batch else None
                program = torch.onnx.export(
                    net,
                    (example,),
                    None,
                    dynamo=True,
                    opset_version=cfg.opset,
                    dynamic_shapes=shapes,
                    verbose=False,
                    **names,
                )
                assert program is not None
                program.save(str(raw))
        except Exception as e:  # the exporters raise many types; name the failure, no traceback
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise UnsupportedError(
                f"ONNX export ({cfg.exporter}, opset {cfg.opset}) failed: "
                f"{type(e).__name__}: {first[:300]}",
                hint="try the other --exporter, another --opset, or check the model's custom ops",
            ) from e
    tracer = [
        str(w.message).splitlines()[0] for w in caught if "TracerWarning" in w.category.__name__
    ]
    for msg in tracer:
        log.warning("exporter: %s", msg)
    return tracer


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[list[warnings.WarningMessage]]:
    """Silence the exporters' deprecation chatter and log spam; keep warnings that matter."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "torch.export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield caught
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, FutureWarning)):
            log.debug("exporter: %s", w.message)


def _inline_constant_identities(proto: Any, max_bytes: int = 1 << 16) -> int:
    """Replace `Identity(initializer)` nodes by copies of small initializers: the TorchScript
    exporter shares equal constants that way, and a bias behind an Identity blocks onnxruntime's
    DQ->Conv->Q fusion after static quantization."""
    inits = {t.name: t for t in proto.graph.initializer}
    outputs = {o.name for o in proto.graph.output}
    keep, added = [], 0
    for node in proto.graph.node:
        src = inits.get(node.input[0]) if node.op_type == "Identity" and node.input else None
        if src is None or node.output[0] in outputs or len(src.raw_data) > max_bytes:
            keep.append(node)
            continue
        copy = proto.graph.initializer.add()
        copy.CopyFrom(src)
        copy.name = node.output[0]
        added += 1
    if added:
        del proto.graph.node[:]
        proto.graph.node.extend(keep)
    return added
