"""ONNX files into onnxruntime sessions, the one place that sets session options: `inspect_onnx`
reads what a file declares (bad or too-new files fail in one line); `open_session` opens every
session (runners, latency target, quantizer, `optimize_offline`) the same way."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.models.errors import CompressError, InvalidInputError, UnsupportedError, UsageError

log = logging.getLogger(__name__)
CPU = ("CPUExecutionProvider",)


@dataclass
class OnnxInfo:
    """What a file declares, read without loading its weights."""

    path: str
    input_shape: list[int | str]
    input_dtype: str
    output_shape: list[int | str]
    metadata: dict[str, str]


def inspect_onnx(path: str | Path) -> OnnxInfo:
    """Parse an ONNX file's header: graph IO, opset, metadata. Raises on bad or too-new files."""
    import onnx

    from compress.export.onnx.file import opset_of

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"ONNX file not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise InvalidInputError(
            f"{path} is not a valid ONNX file (truncated or another format): "
            f"{str(e).splitlines()[0][:200]}"
        ) from e
    if not proto.graph.input or not proto.graph.output:
        raise InvalidInputError(f"{path} has no graph inputs/outputs (not an ONNX model?)")
    opset = opset_of(proto)
    top = onnx.defs.onnx_opset_version()
    if opset > top:
        raise UnsupportedError(
            f"{path} uses opset {opset}, newer than this onnx ({top}) and onnxruntime can run",
            hint="re-export with a lower --opset (17 is widely supported)",
        )
    init = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in init]
    if len(inputs) != 1:
        raise UnsupportedError(
            f"{path} has {len(inputs)} inputs; only single-input models run here"
        )
    inp, out = inputs[0], proto.graph.output[0]
    return OnnxInfo(
        path=str(path),
        input_shape=_dims(inp),
        input_dtype=onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type).name,
        output_shape=_dims(out),
        metadata={p.key: p.value for p in proto.metadata_props},
    )


def _dims(value_info: Any) -> list[int | str]:
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
        for d in value_info.type.tensor_type.shape.dim
    ]


def ort_error(path: str | Path, e: Exception) -> Exception:
    """Translate an onnxruntime load error into our typed errors."""
    msg = str(e)
    kind = type(e).__name__
    if "INVALID_PROTOBUF" in msg or kind == "InvalidProtobuf":
        return InvalidInputError(f"{path} is not a valid ONNX file (truncated or another format)")
    m = re.search(r"[Oo]pset (\d+)", msg)
    if m and ("guarantees" in msg or "not supported" in msg or "under development" in msg):
        return UnsupportedError(
            f"{path}: opset {m.group(1)} is not supported by the installed onnxruntime",
            hint="re-export with a lower --opset (17 is widely supported)",
        )
    if "NOT_IMPLEMENTED" in msg or "Could not find an implementation" in msg:
        op = re.search(r"implementation for (\w+)\((\d+)\)", msg)
        what = f"{op.group(1)} (opset {op.group(2)})" if op else "an operator"
        return UnsupportedError(
            f"{path}: onnxruntime has no kernel for {what} on this execution provider",
            hint="run `compress doctor` on it; ConvInteger (dynamic conv quantization) has no "
            "CPU kernel: use static QDQ quantization for convolutions",
        )
    first = msg.strip().splitlines()[0] if msg.strip() else kind
    return InvalidInputError(f"onnxruntime could not load {path}: {first[:300]}")


def open_session(
    model: str | Path | bytes,
    threads: int | None = None,
    providers: Sequence[str] = CPU,
    *,
    optimization: str = "all",
    profile: bool = False,
    optimized_model_path: str | Path | None = None,
) -> Any:
    """An onnxruntime `InferenceSession` on `providers` (CPU by default) for a file or bytes:
    `threads` intra-op threads (one inter-op), errors-only logging."""
    import onnxruntime as ort

    from compress.export.onnx.file import OPTIMIZE_LEVELS

    if optimization not in OPTIMIZE_LEVELS:
        raise UsageError(
            f"unknown optimization {optimization!r}; choose from {tuple(OPTIMIZE_LEVELS)}"
        )
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZE_LEVELS[optimization])
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_profiling = profile
    if optimized_model_path:
        so.optimized_model_filepath = str(optimized_model_path)
    where = "the in-memory ONNX graph" if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(
            model if isinstance(model, bytes) else str(model), so, providers=list(providers)
        )
    except Exception as e:  # onnxruntime raises its own exception types
        raise ort_error(where, e) from e


def optimize_offline(src: str | Path, dst: str | Path, level: str) -> Path:
    """Save onnxruntime's optimized graph (`basic`, `extended`: ORT-only fused ops, `all`: also
    this CPU's memory layouts) of `src` (no external data) to `dst`, metadata kept."""
    import onnx

    from compress.export.onnx.file import read_metadata, set_metadata

    if level not in ("basic", "extended", "all"):
        raise UsageError(f"optimization level must be basic, extended or all, got {level!r}")
    if level == "all":
        log.warning("--optimize all writes CPU-specific layouts: the file may not run elsewhere")
    meta = read_metadata(src)
    try:
        open_session(src, optimization=level, optimized_model_path=dst)
    except CompressError as e:
        raise UnsupportedError(f"onnxruntime could not optimize {src}: {e}") from e
    proto = onnx.load(str(dst), load_external_data=False)
    set_metadata(proto, meta)
    onnx.save_model(proto, str(dst))
    return Path(dst)
