"""int8, int4 and fp16 quantization of ONNX models for onnxruntime, measured rather than assumed.

`quantize` checks the model and calibration data before anything long, pre-processes, picks int8
settings for this CPU (or tunes them), quantizes, checks the scales, and keeps the most sensitive
nodes in float while validation top-1 drops more than `max_drop`. Both models are measured by the
same code; a quantized model that is not faster than the float one is reported as such.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from compress.models.errors import UsageError
from compress.models.notes import Note
from compress.quantization import graph as qgraph
from compress.quantization import ortrun
from compress.quantization.calibration import MIN_SAMPLES, check_calibration
from compress.quantization.context import (
    PROBE,
    Batches,
    QuantContext,
    QuantizeConfig,
    QuantizeResult,
)
from compress.quantization.fp16 import convert_fp16
from compress.quantization.int4 import short_names
from compress.quantization.int8 import quantize_int8
from compress.quantization.isa import detect_isa
from compress.quantization.mixed import quantize_bits

log = logging.getLogger(__name__)
__all__ = ["QuantizeConfig", "QuantizeResult", "measure_pair", "quantize"]


def quantize(
    onnx_path: str | Path,
    cfg: QuantizeConfig,
    calib: np.ndarray | None,
    out_path: str | Path,
    *,
    val: Batches | None = None,
    num_classes: int | None = None,
) -> QuantizeResult:
    """Quantize `onnx_path` into `out_path` (ptq-static, ptq-dynamic or fp16).

    `calib`: normalized float32 inputs (N, C, H, W) for calibration, sensitivity and latency;
    `val`: labelled batches for the accuracy budget (None: no accuracy gate).
    """
    if cfg.method == "qat":
        raise UsageError(
            "qat fine-tunes a PyTorch model; call compress.quantization.qat.qat_finetune, or run "
            "`compress quantize --method qat` on a PyTorch artifact"
        )
    src = Path(onnx_path)
    info = _check_model(src, cfg)
    check_calibration(calib, info.input_shape, MIN_SAMPLES if cfg.method == "ptq-static" else 1)
    assert calib is not None
    if val is not None and not num_classes:
        raise UsageError("quantize(val=...) needs num_classes")
    with tempfile.TemporaryDirectory(prefix="compress-quant-") as tmp:
        work = Path(tmp)
        ctx = QuantContext(
            cfg=cfg,
            source=src,
            pre=_preprocess(src, work / "pre.onnx"),
            work=work,
            info=info,
            calib=calib,
            val=None if val is None else list(val),
            num_classes=num_classes or 0,
            probe=calib[: (info.fixed_batch or PROBE)],
        )
        result = _dispatch(ctx)
        _write(result, Path(out_path))
        result.path = str(out_path)
        batches = (info.fixed_batch,) if info.fixed_batch else (1, 32)
        measure_pair(src, result, ctx.probe, batches if cfg.latency else ())
    return result


def _dispatch(ctx: QuantContext) -> QuantizeResult:
    """Run the back end the config asks for: fp16, int4/mixed bits, or int8."""
    if ctx.cfg.method == "fp16":
        return convert_fp16(ctx)
    return quantize_bits(ctx) if ctx.cfg.lowers_bits else quantize_int8(ctx)


def _write(result: QuantizeResult, out_path: Path) -> None:
    """Copy the chosen file to `out_path`, compacted (and int4 names shortened)."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.path, out_path)
    if result.precision in ("int8", "int4", "mixed"):
        qgraph.compact(out_path)
    if result.precision in ("int4", "mixed"):
        short_names(out_path)


def _check_model(src: Path, cfg: QuantizeConfig) -> qgraph.GraphInfo:
    """The model's graph, once it is known to be finite and quantizable as `cfg` asks."""
    info = qgraph.inspect(src)
    qgraph.check_finite_weights(src)
    if cfg.method != "fp16":
        ops = qgraph.DYNAMIC_OPS if cfg.method == "ptq-dynamic" else qgraph.STATIC_OPS
        qgraph.require_quantizable(info, ops, cfg.method)
    unknown = [n for n in cfg.keep_float if n not in info.nodes]
    if unknown:
        raise UsageError(
            f"--keep-float: no node named {', '.join(unknown)} in {src}",
            hint=f"node names look like {', '.join(list(info.nodes)[:3])}",
        )
    return info


def _preprocess(src: Path, dst: Path) -> Path:
    """onnxruntime's recommended pre-processing (shape inference, graph optimization)."""
    from onnxruntime.quantization import quant_pre_process

    try:
        with ortrun.quiet_ort():
            quant_pre_process(str(src), str(dst))
        return dst
    except Exception as e:  # pre-processing is an optimization; quantize the original instead
        log.warning("quant_pre_process failed (%s); quantizing the model as exported", e)
        return src


def measure_pair(
    fp32_path: str | Path,
    result: QuantizeResult,
    probe: np.ndarray,
    batches: tuple[int, ...] = (1, 32),
) -> None:
    """Fill `result` with sizes, logit agreement and latency of float vs lowered model (same
    session setup, same inputs); a lowered model not faster at some batch gets a note saying so."""
    q = Path(result.path)
    result.fp32["bytes"] = Path(fp32_path).stat().st_size
    result.quantized["bytes"] = q.stat().st_size
    ref = ortrun.run(ortrun.session(fp32_path), probe)
    out = ortrun.run(ortrun.session(q), probe)
    result.quantized["logit_sqnr_db"] = round(ortrun.sqnr_db(ref, out), 2)
    result.quantized["top1_agreement"] = float(np.mean(ref.argmax(1) == out.argmax(1)))
    if not batches:
        return
    result.fp32["latency_ms"], result.quantized["latency_ms"] = ortrun.latencies(
        [fp32_path, q], probe, batches
    )
    isa = detect_isa().name
    for b in batches:
        f, qq = result.fp32["latency_ms"][b], result.quantized["latency_ms"][b]
        speed = "NOT faster than" if qq >= f else f"{f / qq:.2f}x faster than"
        note = Note(
            f"{result.precision} is {speed} fp32 at batch {b} on this CPU ({isa}): "
            f"{qq:.3f} ms vs {f:.3f} ms",
            "warning" if qq >= f else "info",
        )
        if qq >= f:
            log.warning(note.text)
        result.notes.append(note)
