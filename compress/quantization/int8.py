"""int8 with onnxruntime.quantization: settings for this CPU, tuning, accuracy-aware fallback.

Static quantization calibrates once (onnxruntime's calibration cache) and re-uses the ranges for
every candidate, sensitivity probe and fallback attempt; dynamic touches only MatMul/Gemm.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from compress.models.errors import ResourceError
from compress.quantization import graph as qgraph
from compress.quantization import ortrun
from compress.quantization.calibration import make_reader
from compress.quantization.context import QuantContext, QuantizeConfig, QuantizeResult, drop_pts
from compress.quantization.fallback import fallback_search, rank_nodes
from compress.quantization.isa import Int8Settings, detect_isa, int8_candidates, int8_defaults

log = logging.getLogger(__name__)


def _settings_for(cfg: QuantizeConfig) -> tuple[list[Int8Settings], str]:
    """Candidate int8 settings (first = default) honoring explicit user choices."""
    isa = detect_isa()
    names = ("activation_type", "weight_type", "reduce_range")
    explicit = {k: v for k in names if (v := getattr(cfg, k)) != "auto"}
    default = int8_defaults(isa)
    if not explicit:
        return (int8_candidates(isa) if cfg.tune else [default]), default.reason
    chosen = replace(default, **explicit, reason="set by the user")  # type: ignore[arg-type]
    if not cfg.tune:
        return [chosen], f"set by the user (the {isa.name} default would be {default.label})"
    fits = [c for c in int8_candidates(isa) if all(getattr(c, k) == v for k, v in explicit.items())]
    return (fits or [chosen]), "tuned among the candidates matching the user's settings"


def _build(
    ctx: QuantContext, s: Int8Settings, exclude: list[str], only: list[str] | None = None
) -> Path:
    """One onnxruntime quantization run with settings `s`; returns the new model's path."""
    from onnxruntime import quantization as ortq

    qtype = {"uint8": ortq.QuantType.QUInt8, "int8": ortq.QuantType.QInt8}
    out, cfg = ctx.fresh("q"), ctx.cfg
    common: dict[str, Any] = {
        "per_channel": cfg.per_channel,
        "reduce_range": s.reduce_range,
        "weight_type": qtype[s.weight_type],
        "nodes_to_exclude": [*cfg.keep_float, *exclude] or None,
        "nodes_to_quantize": only,
    }
    with ortrun.quiet_ort():
        if cfg.method == "ptq-dynamic":
            ortq.quantize_dynamic(
                str(ctx.pre), str(out), op_types_to_quantize=list(qgraph.DYNAMIC_OPS), **common
            )
        else:
            assert ctx.calib is not None
            fixed = bool(ctx.info.fixed_batch)
            fmt = ortq.QuantFormat.QDQ if cfg.format == "qdq" else ortq.QuantFormat.QOperator
            ortq.quantize_static(
                str(ctx.pre),
                str(out),
                make_reader(ctx.info.input_name, ctx.calib, _calib_batch(ctx), fixed=fixed),
                quant_format=fmt,
                activation_type=qtype[s.activation_type],
                calibrate_method={m.name.lower(): m for m in ortq.CalibrationMethod}[
                    cfg.calibration
                ],
                calibration_cache_path=str(ctx.work / f"calib-{cfg.calibration}.json"),
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
                **common,
            )
    qgraph.check_quantized(out)
    return out


def _calib_batch(ctx: QuantContext) -> int:
    """Calibration batch: the model's fixed batch, else what keeps activations under ~1 GB."""
    if ctx.info.fixed_batch:
        return ctx.info.fixed_batch
    per = max(qgraph.activation_bytes_per_sample(ctx.pre), 1)
    return int(max(1, min(32, (1 << 30) // per)))


def _check_memory(ctx: QuantContext) -> None:
    """Histogram calibration holds every activation of every sample (minmax: one batch's):
    refuse what can't fit."""
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


def quantize_int8(ctx: QuantContext) -> QuantizeResult:
    """Quantize, choose settings (tune), check the budget, fall back; returns the result."""
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
    static = cfg.method == "ptq-static"
    result = ctx.result(
        path,
        "int8",
        fp32_top1,
        top1,
        settings={
            "per_channel": cfg.per_channel,
            "format": cfg.format if static else "qoperator",
            "calibration": cfg.calibration if static else None,
            "samples": len(ctx.calib) if static and ctx.calib is not None else 0,
            **s.to_dict(),
        },
        reason=reason,
        fallback_nodes=list(cfg.keep_float),
        candidates=[{k: v for k, v in t.items() if k not in ("settings", "path")} for t in tried],
    )
    if not result.budget_met and cfg.max_fallback > 0:
        _fallback(ctx, s, result, fp32_top1)  # type: ignore[arg-type]
    return result


def _try(ctx: QuantContext, s: Int8Settings, fp32_top1: float | None) -> dict[str, Any]:
    """Quantize with `s`, measure validation top-1 (and latency when tuning)."""
    path = _build(ctx, s, [])
    top1 = ctx.top1(path)
    entry: dict[str, Any] = {"settings": s, "path": path, "label": s.label, "top1": top1}
    entry["drop_pts"] = drop_pts(fp32_top1, top1)
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


def _fallback(ctx: QuantContext, s: Int8Settings, result: QuantizeResult, fp32_top1: float) -> None:
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
    msg = "accuracy drop %.2f pt > %.2f: ranking %d nodes by sensitivity"
    log.info(msg, result.drop_pts or 0.0, cfg.max_drop, len(nodes))
    ranked = rank_nodes(lambda only: _build(ctx, s, [], only), nodes, ctx.probe, ref)
    fb = fallback_search(
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


def build_int8_nodes(ctx: QuantContext, only: list[str]) -> Path:
    """quantize_static on just the nodes `only` with this CPU's default int8 settings (mixed bits)."""
    candidates, _ = _settings_for(replace(ctx.cfg, tune=False))
    return _build(ctx, candidates[0], [], only)
