"""Bit widths per layer: int4 everywhere (`--weight-bits 4`), or fp32/int8/int4 chosen by measured
sensitivity (`--bits auto`) under an accuracy budget and an optional file-size target.

Sensitivity: the validation drop with only that layer lowered. Greedy: the most weight bytes per
point of drop go first, each to the lowest width that fits the remaining budget, until the size
target is met; while the combined model misses the budget, the worst layer goes back up a step.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, replace
from typing import Any

from compress.models.errors import UsageError
from compress.models.notes import Note
from compress.quantization import graph as qgraph
from compress.quantization import int4
from compress.quantization.context import QuantContext, QuantizeResult

log = logging.getLogger(__name__)
UP = {4: 8, 8: 32}  # one step back toward float
COMPUTE_NOTES = {  # int4.classify's compute kinds, as the notes word them
    "int4": "computes in int4",
    "int8": "computes in int8",
    "dequantized at run time": "stored low-bit, dequantized at run time (float compute)",
    "fp32": "kept in fp32",
}
AUTO_REASON = "per-layer bit widths chosen by measured validation drop (see sensitivity)"
INT4_REASON = (
    "int4 weights: Linear layers as MatMulNBits (int4 compute), other layers weight-only "
    "int4 DequantizeLinear (dequantized at run time: smaller, not faster)"
)


def quantize_bits(ctx: QuantContext) -> QuantizeResult:
    """Lower each layer to its bit width (fixed or chosen), measure, and report per layer."""
    cfg = ctx.cfg
    int4.check_opset(cfg.int4_opset)
    octx = replace(ctx, pre=int4.to_opset(ctx.pre, ctx.work / "opset.onnx", cfg.int4_opset))
    model = qgraph.load(octx.pre)
    int4.check_layer_bits(model, cfg.layer_bits)
    layers = int4.weighted_layers(model)
    fp32_top1 = ctx.top1(ctx.source)
    sensitivity: list[dict[str, Any]] = []
    if cfg.weight_bits == "auto":
        if fp32_top1 is None:
            raise UsageError(
                "--bits auto measures each layer's accuracy drop: it needs a trained model "
                "and validation data"
            )
        bits, sensitivity = _choose(octx, layers, fp32_top1)
    else:
        bits = {n: int(cfg.weight_bits) for n in layers}
        bits.update({n: 32 for n in cfg.keep_float if n in bits})
        bits.update(cfg.layer_bits)
    path = int4.build(octx, bits)
    top1 = ctx.top1(path)
    rows = int4.classify(path, layers, ctx.work)
    widths = set(bits.values())
    precision = {4: "int4", 8: "int8", 32: "fp32"}[widths.pop()] if len(widths) == 1 else "mixed"
    result = ctx.result(
        path,
        precision,
        fp32_top1,
        top1,
        settings={
            "weight_bits": cfg.weight_bits,
            "opset": cfg.int4_opset,
            "block_size": cfg.block_size,
            "per_channel": True,
            "format": f"{cfg.format} + MatMulNBits",
            "layer_bits": bits,
            "target_size_kb": cfg.target_size_kb,
        },
        reason=AUTO_REASON if cfg.weight_bits == "auto" else INT4_REASON,
        fallback_nodes=[n for n, b in bits.items() if b == 32],
        sensitivity=sensitivity,
        layers=[asdict(r) for r in rows],
    )
    for kind, label in COMPUTE_NOTES.items():  # nothing stays float or dequantized silently
        if names := [r.layer for r in rows if r.compute == kind]:
            result.notes.append(Note(f"{label}: {', '.join(names)}"))
    return result


def _choose(
    octx: QuantContext, layers: dict[str, str], fp32_top1: float
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Greedy per-layer widths under --max-drop and --target-size (see the module doc)."""
    cfg = octx.cfg
    budget = cfg.max_drop if cfg.max_drop is not None else float("inf")
    free = [n for n in layers if n not in cfg.keep_float and n not in cfg.layer_bits]
    drops: dict[str, dict[int, float]] = {}
    for name in free:
        top1 = {b: octx.top1(int4.build(octx, {name: b})) or 0.0 for b in (8, 4)}
        drops[name] = {b: max(0.0, (fp32_top1 - t) * 100) for b, t in top1.items()}
        log.info("sensitivity %s: int8 %.2f pt, int4 %.2f pt", name, drops[name][8], drops[name][4])
    graph = qgraph.load(octx.pre).graph
    dims = {i.name: i.dims for i in graph.initializer}
    count = {n.name: math.prod(dims[n.input[1]]) for n in graph.node if n.name in layers}
    bits = {**dict.fromkeys(layers, 32), **cfg.layer_bits}
    size = octx.pre.stat().st_size

    def est() -> float:
        return size - sum(count[n] * (32 - b) / 8 for n, b in bits.items())

    order = sorted(free, key=lambda n: count[n] / (drops[n][4] + 0.05), reverse=True)
    spent = 0.0
    for name in order:
        if cfg.target_size_kb is not None and est() <= cfg.target_size_kb * 1024:
            break
        for b in (4, 8):
            if spent + drops[name][b] <= budget:
                bits[name], spent = b, spent + drops[name][b]
                break
    _repair(octx, bits, drops, fp32_top1, budget)
    table = [
        {
            "layer": n,
            "weights": count[n],
            "int8_drop_pts": round(drops[n][8], 3),
            "int4_drop_pts": round(drops[n][4], 3),
            "chosen_bits": bits[n],
        }
        for n in free
    ]
    return bits, table


def _repair(
    octx: QuantContext,
    bits: dict[str, int],
    drops: dict[str, dict[int, float]],
    fp32: float,
    budget: float,
) -> None:
    """Measured drops don't add exactly: raise the worst lowered layer until the budget holds."""
    for _ in range(2 * len(drops)):
        top1 = octx.top1(int4.build(octx, bits)) or 0.0
        if (fp32 - top1) * 100 <= budget:
            return
        lowered = [n for n in drops if bits[n] < 32]
        if not lowered:
            return
        worst = max(lowered, key=lambda n: drops[n][bits[n]])
        msg = "combined drop %.2f pt > %.2f: %s back to %d bit"
        log.info(msg, (fp32 - top1) * 100, budget, worst, UP[bits[worst]])
        bits[worst] = UP[bits[worst]]
