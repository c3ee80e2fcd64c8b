"""int8 and fp16 quantization of ONNX models for onnxruntime, measured rather than assumed.

`quantize(onnx_path, QuantizeConfig(...), calib, out_path, val=...)` does, in order: check the
model and the calibration data (before anything long), pre-process (`quant_pre_process`),
pick int8 settings for this CPU (or try the candidates and keep the best within the accuracy
budget with `tune`), quantize (static QDQ by default; dynamic for MatMul/Gemm only), check the
scales, and if validation top-1 drops more than `max_drop` points, keep the most sensitive nodes
in float until it doesn't (up to `max_fallback` nodes). Sizes, validation accuracy and latency
of the float and the quantized model are measured by the same code, and a quantized model that is
not faster than the float one is reported as such.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.quantization import graph as qgraph
from compress.quantization import ortrun
from compress.quantization.calibration import MIN_SAMPLES, check_calibration
from compress.quantization.isa import detect_isa
from compress.training.precision import AMP_MODES
from models.errors import UsageError

log = logging.getLogger(__name__)

METHODS = ("ptq-static", "ptq-dynamic", "qat", "fp16")
CALIBRATIONS = ("minmax", "entropy", "percentile")
FORMATS = ("qdq", "qoperator")
TYPES = ("auto", "uint8", "int8")
PROBE = 64  # inputs used to rank node sensitivity and compare logits
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class QuantizeConfig:
    """How to quantize. `auto` fields follow the CPU's instruction set (see compress.quantization.isa)."""

    method: str = "ptq-static"
    samples: int = 300  # calibration images, a seeded subset of the validation split
    calibration: str = "minmax"
    per_channel: bool = True
    format: str = "qdq"
    activation_type: str = "auto"
    weight_type: str = "auto"
    reduce_range: str | bool = "auto"
    tune: bool = False
    max_drop: float | None = 1.0  # points of validation top-1; None: no accuracy gate
    max_fallback: int = 8  # most nodes kept in float by the accuracy-aware fallback
    keep_float: tuple[str, ...] = ()  # node names the user keeps in float from the start
    mixed: bool = False  # fp16: keep sensitive nodes in fp32 until the parity gate holds
    epochs: int = 2  # qat
    lr: float = 1e-4  # qat
    amp: str = "off"  # qat training precision (fake-quant ranges are sensitive to bf16)
    eval_samples: int | None = None  # cap on validation samples per accuracy check
    latency: bool = True
    seed: int = 0
    weight_bits: int | str = 8  # 8, 4 (int4 weights) or "auto" (fp32/int8/int4 per layer)
    layer_bits: dict[str, int] = field(default_factory=dict)  # node name -> 4, 8 or 32
    target_size_kb: float | None = None  # --bits auto: stop lowering once the file fits
    int4_opset: int = 21  # int4 models are converted to this opset (standard INT4 from 21)
    block_size: int = 32  # MatMulNBits block along K

    def __post_init__(self) -> None:
        self._check_bits()
        _one_of("method", self.method, METHODS)
        _one_of("calibration", self.calibration, CALIBRATIONS)
        _one_of("format", self.format, FORMATS)
        _one_of("activation-type", self.activation_type, TYPES)
        _one_of("weight-type", self.weight_type, TYPES)
        if isinstance(self.reduce_range, str):
            rr = self.reduce_range.lower()
            if rr not in ("auto", "true", "false", "on", "off"):
                raise UsageError(f"--reduce-range must be auto, on or off, got {rr!r}")
            self.reduce_range = "auto" if rr == "auto" else rr in ("true", "on")
        if self.samples < 1:
            raise UsageError(f"--samples must be >= 1, got {self.samples}")
        if self.max_drop is not None and self.max_drop < 0:
            raise UsageError(f"--max-drop must be >= 0 points, got {self.max_drop}")
        if self.max_fallback < 0:
            raise UsageError(f"--max-fallback must be >= 0, got {self.max_fallback}")
        if self.epochs < 0 or not self.lr > 0:
            raise UsageError("--epochs must be >= 0 and --lr > 0")
        if self.tune and self.method != "ptq-static":
            raise UsageError("--tune applies to ptq-static (it tries activation/weight settings)")
        _one_of("amp", self.amp, AMP_MODES)
        if self.eval_samples is not None and self.eval_samples < 1:
            raise UsageError("--eval-samples must be >= 1")

    def _check_bits(self) -> None:
        wb = str(self.weight_bits).strip().lower()
        if wb not in ("4", "8", "auto"):
            raise UsageError(
                f"--weight-bits must be 4, 8 or auto, got {self.weight_bits!r}",
                hint="onnxruntime runs 4-bit (int4, MatMulNBits) and 8-bit weights; fp32 is "
                "chosen per layer with --bits auto or --layer-bits NODE=32",
            )
        self.weight_bits = wb if wb == "auto" else int(wb)
        if self.lowers_bits and self.method != "ptq-static":
            raise UsageError(f"--weight-bits {wb} applies to ptq-static, not {self.method}")
        if self.target_size_kb is not None and (
            self.weight_bits != "auto" or not self.target_size_kb > 0
        ):
            raise UsageError("--target-size takes a size in KB > 0, with --bits auto")
        if self.block_size < 16 or self.block_size & (self.block_size - 1):
            raise UsageError(f"--block-size must be a power of 2 >= 16, got {self.block_size}")

    @property
    def lowers_bits(self) -> bool:
        """int4 or per-layer bit widths (compress.quantization.mixed), not plain int8."""
        return self.weight_bits != 8 or bool(self.layer_bits)


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")


@dataclass
class QuantizeResult:
    """What was done, why, and what it measured (fp32 vs quantized)."""

    path: str
    method: str
    precision: str
    settings: dict[str, Any]
    reason: str
    isa: dict[str, Any]
    fp32: dict[str, Any]
    quantized: dict[str, Any]
    drop_pts: float | None
    budget_met: bool
    fallback_nodes: list[str] = field(default_factory=list)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    fallback_attempts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)  # per layer: bits, compute

    @property
    def size_ratio(self) -> float:
        return self.quantized["bytes"] / max(self.fp32["bytes"], 1)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "size_ratio": round(self.size_ratio, 4)}


@dataclass
class _Ctx:
    """Everything one quantization run shares between its steps."""

    cfg: QuantizeConfig
    source: Path  # the float model as given
    pre: Path  # after quant_pre_process
    work: Path
    info: qgraph.GraphInfo
    calib: np.ndarray | None
    val: list[tuple[torch.Tensor, torch.Tensor]] | None
    num_classes: int
    probe: np.ndarray
    counter: itertools.count = field(default_factory=itertools.count)

    def fresh(self, stem: str) -> Path:
        return self.work / f"{stem}-{next(self.counter)}.onnx"

    def top1(self, path: Path) -> float | None:
        if self.val is None:
            return None
        return ortrun.top1(path, self.val, self.num_classes, self.cfg.eval_samples)


def quantize(
    onnx_path: str | Path,
    cfg: QuantizeConfig,
    calib: np.ndarray | None,
    out_path: str | Path,
    *,
    val: Batches | None = None,
    num_classes: int | None = None,
) -> QuantizeResult:
    """Quantize `onnx_path` into `out_path` (ptq-static, ptq-dynamic or fp16); see the module doc.

    `calib`: normalized inputs (N, C, H, W) float32 for calibration (static), sensitivity ranking
    and latency; `val`: labelled batches for the accuracy budget (None: no accuracy gate).
    """
    if cfg.method == "qat":
        raise UsageError(
            "qat fine-tunes a PyTorch model; call compress.quantization.qat.qat_finetune, or run "
            "`compress quantize --method qat` on a PyTorch artifact"
        )
    src = Path(onnx_path)
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
    check_calibration(calib, info.input_shape, MIN_SAMPLES if cfg.method == "ptq-static" else 1)
    assert calib is not None
    if val is not None and not num_classes:
        raise UsageError("quantize(val=...) needs num_classes")
    val_list = list(val) if val is not None else None
    with tempfile.TemporaryDirectory(prefix="compress-quant-") as tmp:
        work = Path(tmp)
        ctx = _Ctx(
            cfg=cfg,
            source=src,
            pre=_preprocess(src, work / "pre.onnx"),
            work=work,
            info=info,
            calib=calib,
            val=val_list,
            num_classes=num_classes or 0,
            probe=calib[: (info.fixed_batch or PROBE)],
        )
        if cfg.method == "fp16":
            from compress.quantization.fp16 import convert_fp16

            result = convert_fp16(ctx)
        elif cfg.lowers_bits:
            from compress.quantization.mixed import quantize_bits

            result = quantize_bits(ctx)
        else:
            from compress.quantization.int8 import quantize_int8

            result = quantize_int8(ctx)
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.path, out_path)
        if result.precision in ("int8", "int4", "mixed"):
            qgraph.compact(out_path)
        if result.precision in ("int4", "mixed"):
            from compress.quantization.int4 import short_names

            short_names(out_path)
        result.path = str(out_path)
        _measure(ctx, result)
    return result


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


def _drop(fp32: float | None, q: float | None) -> float | None:
    return None if fp32 is None or q is None else round((fp32 - q) * 100, 3)


def _within(fp32: float | None, q: float | None, max_drop: float | None) -> bool:
    d = _drop(fp32, q)
    return max_drop is None or d is None or d <= max_drop


# ----------------------------------------------------------------------------- measurement


def _measure(ctx: _Ctx, result: QuantizeResult) -> None:
    batches = (ctx.info.fixed_batch,) if ctx.info.fixed_batch else (1, 32)
    measure_pair(ctx.source, result, ctx.probe, batches if ctx.cfg.latency else ())


def measure_pair(
    fp32_path: str | Path,
    result: QuantizeResult,
    probe: np.ndarray,
    batches: tuple[int, ...] = (1, 32),
) -> None:
    """Fill `result` with sizes, logit agreement and latency of float vs lowered model.

    Both run in the same onnxruntime CPU session setup on the same inputs; a lowered model that
    is not faster at some batch size gets a plain note saying so.
    """
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
        if qq >= f:
            note = (
                f"{result.precision} is NOT faster than fp32 at batch {b} on this CPU "
                f"({isa}): {qq:.3f} ms vs {f:.3f} ms"
            )
            log.warning(note)
        else:
            note = (
                f"{result.precision} is {f / qq:.2f}x faster than fp32 at batch {b} on this "
                f"CPU ({isa}): {qq:.3f} ms vs {f:.3f} ms"
            )
        result.notes.append(note)
