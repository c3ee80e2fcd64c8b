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

import contextlib
import io
import itertools
import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress import ortrun, qgraph
from compress.calibration import MIN_SAMPLES, check_calibration, make_reader
from compress.isa import Int8Settings, detect_isa, int8_candidates, int8_defaults
from compress.precision import AMP_MODES
from compress.quant_fallback import FallbackResult, fallback_search, rank_nodes
from models.errors import ResourceError, UsageError

log = logging.getLogger(__name__)

METHODS = ("ptq-static", "ptq-dynamic", "qat", "fp16")
CALIBRATIONS = ("minmax", "entropy", "percentile")
FORMATS = ("qdq", "qoperator")
TYPES = ("auto", "uint8", "int8")
PROBE = 64  # inputs used to rank node sensitivity and compare logits
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class QuantizeConfig:
    """How to quantize. `auto` fields follow the CPU's instruction set (see compress.isa)."""

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

    def __post_init__(self) -> None:
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
            "qat fine-tunes a PyTorch model; call compress.qat.qat_finetune, or run "
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
            from compress.fp16 import convert_fp16

            result = convert_fp16(ctx)
        else:
            result = _quantize_int8(ctx)
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.path, out_path)
        if result.precision == "int8":
            qgraph.compact(out_path)
        result.path = str(out_path)
        _measure(ctx, result)
    return result


def _preprocess(src: Path, dst: Path) -> Path:
    """onnxruntime's recommended pre-processing (shape inference, graph optimization)."""
    from onnxruntime.quantization import quant_pre_process

    try:
        with _quiet_ort():
            quant_pre_process(str(src), str(dst))
        return dst
    except Exception as e:  # pre-processing is an optimization; quantize the original instead
        log.warning("quant_pre_process failed (%s); quantizing the model as exported", e)
        return src


# ----------------------------------------------------------------------------- int8


def _settings_for(cfg: QuantizeConfig) -> tuple[list[Int8Settings], str]:
    """Candidate int8 settings (first = default) honoring explicit user choices."""
    isa = detect_isa()
    explicit = {
        k: v
        for k, v in (
            ("activation_type", cfg.activation_type),
            ("weight_type", cfg.weight_type),
            ("reduce_range", cfg.reduce_range),
        )
        if v != "auto"
    }
    default = int8_defaults(isa)
    if not explicit:
        return (int8_candidates(isa) if cfg.tune else [default]), default.reason
    chosen = replace(default, **explicit, reason="set by the user")  # type: ignore[arg-type]
    if not cfg.tune:
        return [chosen], f"set by the user (the {isa.name} default would be {default.label})"
    fits = [c for c in int8_candidates(isa) if all(getattr(c, k) == v for k, v in explicit.items())]
    return (fits or [chosen]), "tuned among the candidates matching the user's settings"


def _build(ctx: _Ctx, s: Int8Settings, exclude: list[str], only: list[str] | None = None) -> Path:
    """One onnxruntime quantization run with settings `s`; returns the new model's path."""
    from onnxruntime.quantization import QuantType

    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    out = ctx.fresh("q")
    cfg = ctx.cfg
    common: dict[str, Any] = {
        "per_channel": cfg.per_channel,
        "reduce_range": s.reduce_range,
        "weight_type": qtype[s.weight_type],
        "nodes_to_exclude": [*cfg.keep_float, *exclude] or None,
        "nodes_to_quantize": only,
    }
    with _quiet_ort():
        _run_ort(ctx, s, out, common)
    qgraph.check_quantized(out)
    return out


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    """onnxruntime.quantization logs every step at INFO on the root logger and prints progress;
    keep that out of our output (our own log lines come before and after)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _run_ort(ctx: _Ctx, s: Int8Settings, out: Path, common: dict[str, Any]) -> None:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    cfg = ctx.cfg
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    if cfg.method == "ptq-dynamic":
        quantize_dynamic(
            str(ctx.pre), str(out), op_types_to_quantize=list(qgraph.DYNAMIC_OPS), **common
        )
    else:
        assert ctx.calib is not None
        quantize_static(
            str(ctx.pre),
            str(out),
            make_reader(ctx.info.input_name, ctx.calib, _calib_batch(ctx)),
            quant_format=QuantFormat.QDQ if cfg.format == "qdq" else QuantFormat.QOperator,
            activation_type=qtype[s.activation_type],
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[cfg.calibration],
            calibration_cache_path=str(ctx.work / f"calib-{cfg.calibration}.json"),
            extra_options={
                "WeightSymmetric": True,
                "ActivationSymmetric": False,
            },
            **common,
        )


def _calib_batch(ctx: _Ctx) -> int:
    """Calibration batch: the model's fixed batch, else what keeps activations under ~1 GB."""
    if ctx.info.fixed_batch:
        return ctx.info.fixed_batch
    per = max(qgraph.activation_bytes_per_sample(ctx.pre), 1)
    return int(max(1, min(32, (1 << 30) // per)))


def _check_memory(ctx: _Ctx) -> None:
    """Histogram calibration holds every activation of every sample: refuse what can't fit.

    (minmax only keeps per-tensor minima and maxima, so it is bounded by one batch.)
    """
    import psutil

    if ctx.cfg.method != "ptq-static" or ctx.calib is None:
        return
    per = qgraph.activation_bytes_per_sample(ctx.pre)
    held = len(ctx.calib) if ctx.cfg.calibration != "minmax" else _calib_batch(ctx)
    need, avail = per * held, psutil.virtual_memory().available
    if need > 0.6 * avail:
        raise ResourceError(
            f"{ctx.cfg.calibration} calibration would hold ~{need / 2**30:.1f} GiB of "
            f"activations ({held} samples x {per / 2**20:.0f} MiB); {avail / 2**30:.1f} GiB free",
            hint="lower --samples, or use --calibration minmax (it merges ranges batch by batch)",
        )


def _quantize_int8(ctx: _Ctx) -> QuantizeResult:
    cfg = ctx.cfg
    _check_memory(ctx)
    candidates, reason = _settings_for(cfg)
    fp32_top1 = ctx.top1(ctx.source)
    tried = [_try(ctx, s, fp32_top1) for s in candidates]
    pick = _pick(tried, cfg.max_drop)
    s, path, top1 = pick["settings"], pick["path"], pick["top1"]
    if len(tried) > 1:
        reason = (
            f"tuned: {s.label} was the fastest candidate within the accuracy budget ({s.reason})"
        )
    result = QuantizeResult(
        path=str(path),
        method=cfg.method,
        precision="int8",
        settings={
            **_settings_record(cfg, 0 if ctx.calib is None else len(ctx.calib)),
            **s.to_dict(),
        },
        reason=reason,
        isa=detect_isa().to_dict(),
        fp32={"val_top1": fp32_top1},
        quantized={"val_top1": top1},
        drop_pts=_drop(fp32_top1, top1),
        budget_met=_within(fp32_top1, top1, cfg.max_drop),
        fallback_nodes=list(cfg.keep_float),
        candidates=[{k: v for k, v in t.items() if k not in ("settings", "path")} for t in tried],
    )
    if not result.budget_met and cfg.max_fallback > 0:
        _fallback(ctx, s, result, fp32_top1)  # type: ignore[arg-type]
    return result


def _settings_record(cfg: QuantizeConfig, samples: int) -> dict[str, Any]:
    return {
        "per_channel": cfg.per_channel,
        "format": cfg.format if cfg.method == "ptq-static" else "qoperator",
        "calibration": cfg.calibration if cfg.method == "ptq-static" else None,
        "samples": samples if cfg.method == "ptq-static" else 0,
    }


def _try(ctx: _Ctx, s: Int8Settings, fp32_top1: float | None) -> dict[str, Any]:
    """Quantize with `s`, measure validation top-1 (and latency when tuning)."""
    path = _build(ctx, s, [])
    top1 = ctx.top1(path)
    entry: dict[str, Any] = {
        "settings": s,
        "path": path,
        "label": s.label,
        "top1": top1,
        "drop_pts": _drop(fp32_top1, top1),
    }
    if ctx.cfg.tune:
        fp32, q = ortrun.latencies([ctx.source, path], ctx.probe, (1, 32), runs=15, budget_s=3.0)
        entry["latency_ms"], entry["fp32_latency_ms"] = q, fp32
    log.info("int8 %s: val top-1 %s", s.label, "-" if top1 is None else f"{100 * top1:.2f} %")
    return entry


def _pick(tried: list[dict[str, Any]], max_drop: float | None) -> dict[str, Any]:
    """Fastest candidate within budget (ties within 5 %: the more accurate); else most accurate."""
    if len(tried) == 1:
        return tried[0]
    ok = [
        t for t in tried if max_drop is None or t["drop_pts"] is None or t["drop_pts"] <= max_drop
    ]
    if not ok:
        return max(tried, key=lambda t: t["top1"] or 0.0)

    def cost(t: dict[str, Any]) -> float:  # relative to fp32 measured alongside: load-robust
        return sum(t["latency_ms"][b] / t["fp32_latency_ms"][b] for b in t["latency_ms"])

    best = min(cost(t) for t in ok)
    close = [t for t in ok if cost(t) <= 1.05 * best]
    return max(close, key=lambda t: (t["top1"] or 0.0, -cost(t)))


def _fallback(ctx: _Ctx, s: Int8Settings, result: QuantizeResult, fp32_top1: float) -> None:
    """Keep the most sensitive nodes in float until the drop is within budget (or the limit)."""
    cfg = ctx.cfg
    assert cfg.max_drop is not None
    ops = qgraph.DYNAMIC_OPS if cfg.method == "ptq-dynamic" else qgraph.STATIC_OPS
    nodes = {
        n: op
        for n, op in qgraph.inspect(ctx.pre).nodes.items()
        if op in ops and n not in cfg.keep_float
    }
    ref = ortrun.run(ortrun.session(ctx.pre), ctx.probe)
    log.info(
        "accuracy drop %.2f pt > %.2f: ranking %d nodes by sensitivity",
        result.drop_pts or 0.0,
        cfg.max_drop,
        len(nodes),
    )
    ranked = rank_nodes(lambda only: _build(ctx, s, [], only), nodes, ctx.probe, ref)
    fb: FallbackResult = fallback_search(
        lambda excl: _build(ctx, s, excl),
        [r.node for r in ranked],
        lambda p: ctx.top1(p) or 0.0,
        fp32_top1,
        cfg.max_drop,
        cfg.max_fallback,
    )
    result.sensitivity = [asdict(r) for r in ranked]
    result.fallback_attempts = [asdict(a) for a in fb.attempts]
    if fb.top1 >= (result.quantized["val_top1"] or 0.0):
        result.path, result.fallback_nodes = str(fb.path), [*cfg.keep_float, *fb.excluded]
        result.quantized["val_top1"], result.drop_pts = fb.top1, fb.drop_pts
    result.budget_met = fb.met


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
