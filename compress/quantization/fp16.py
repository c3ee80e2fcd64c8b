"""fp16 ONNX for GPU execution providers, with fp32 inputs/outputs and an optional mixed mode.

The logits must pass the parity gate of mature exporters (max abs <= 1e-2, cosine >= 0.999); with
`mixed`, the nodes whose fp16 version hurts the logits most stay fp32 until it holds. On CPU,
onnxruntime runs most fp16 ops through casts: fp16 is for size and GPUs, not CPU speed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from compress.export.onnx.parity import ParityReport, compare, tolerance_for
from compress.models.errors import UnsupportedError
from compress.quantization import graph as qgraph
from compress.quantization import ortrun
from compress.quantization.context import QuantContext, QuantizeResult
from compress.quantization.fallback import fallback_search, rank_nodes

log = logging.getLogger(__name__)


def to_fp16(src: Path, dst: Path, block: list[str]) -> Path:
    """Convert `src` to fp16 except the nodes in `block`; inputs and outputs stay fp32."""
    try:
        from onnxconverter_common import float16
    except ImportError as e:
        raise UnsupportedError(
            "fp16 conversion needs onnxconverter-common", hint="pip install onnxconverter-common"
        ) from e
    import onnx

    model = qgraph.load(src)
    # keep_io_types=True fails when a blocked node feeds a graph output, so the fp32 boundary
    # is added here instead.
    converted = float16.convert_float_to_float16(
        model, keep_io_types=False, node_block_list=block or None
    )
    _fp32_boundary(converted)
    onnx.save(converted, str(dst))
    return dst


def _fp32_boundary(model: Any) -> None:
    """Make fp16 graph inputs/outputs fp32 again with a Cast next to each."""
    from onnx import TensorProto, helper

    g = model.graph
    casts: dict[bool, list[Any]] = {False: [], True: []}  # is_output -> Casts
    for is_out, values in ((False, g.input), (True, g.output)):
        for value in values:
            t = value.type.tensor_type
            if t.elem_type != TensorProto.FLOAT16:
                continue
            t.elem_type, name, half = TensorProto.FLOAT, value.name, value.name + "_fp16"
            for node in g.node:  # the uses (and for an output, the producer) now read `half`
                for names in (node.input, node.output) if is_out else (node.input,):
                    names[:] = [half if x == name else x for x in names]
            src, dst = (half, name) if is_out else (name, half)
            to = TensorProto.FLOAT if is_out else TensorProto.FLOAT16
            casts[is_out].append(helper.make_node("Cast", [src], [dst], to=to))
    nodes = [*casts[False], *g.node, *casts[True]]
    del g.node[:]
    g.node.extend(_drop_round_trips(nodes, {o.name for o in g.output}))


def _drop_round_trips(nodes: list[Any], outputs: set[str]) -> list[Any]:
    """fp32 -> fp16 -> fp32 Cast pairs lose precision for nothing: read the fp32 value instead
    (so fp32-kept nodes next to the boundary see exact inputs), then drop unused casts."""
    from onnx import TensorProto

    def to(n: Any) -> int:
        return int(qgraph.attr(n, "to", -1))

    producer = {o: n for n in nodes for o in n.output}
    for n in nodes:
        if n.op_type == "Cast" and to(n) == TensorProto.FLOAT:
            src = producer.get(n.input[0])
            if src is not None and src.op_type == "Cast" and to(src) == TensorProto.FLOAT16:
                n.input[0] = src.input[0]  # a float -> float Cast: an identity
    while True:
        used = {i for n in nodes for i in n.input} | outputs
        dead = [n for n in nodes if n.op_type == "Cast" and not any(o in used for o in n.output)]
        if not dead:
            return nodes
        nodes = [n for n in nodes if n not in dead]


def convert_fp16(ctx: QuantContext) -> QuantizeResult:
    """fp16 model (mixed when asked and needed), its parity and validation accuracy."""
    ref = ortrun.run(ortrun.session(ctx.pre), ctx.probe)
    nodes = qgraph.inspect(ctx.pre).nodes
    reports: dict[Path, ParityReport] = {}

    def build(block: list[str]) -> Path:
        return to_fp16(ctx.pre, ctx.fresh("fp16"), block)

    def check(path: Path) -> float:
        got = ortrun.run(ortrun.session(path), ctx.probe)
        reports[path] = compare(ref, got, "fp16", inputs="calibration")
        log.info("%s", reports[path].summary())
        return float(reports[path].passed)

    path, block, ranked = build([]), [], []
    if not check(path) and ctx.cfg.mixed:
        ranked = rank_nodes(
            lambda only: build([n for n in nodes if n not in only]), nodes, ctx.probe, ref
        )
        if ranked and ctx.cfg.max_fallback:
            names, limit = [r.node for r in ranked], ctx.cfg.max_fallback
            fb = fallback_search(build, names, check, 1.0, 0.0, limit, gate=True)
            path, block = fb.path, fb.excluded
    par, tol = reports[path], tolerance_for("fp16")
    result = ctx.result(
        path,
        "fp16",
        ctx.top1(ctx.source),
        ctx.top1(path),
        settings={"format": "fp16", "keep_io_types": True, "mixed": ctx.cfg.mixed},
        reason=(
            "fp16 halves the weights and targets GPU execution providers; inputs and outputs "
            f"stay fp32 (parity gate: max abs <= {tol.atol}, cosine >= {tol.min_cosine})"
        ),
        fallback_nodes=block,
        sensitivity=[r.__dict__ for r in ranked],
    )
    result.quantized["parity"] = {
        "max_abs": round(par.max_abs_diff, 6),
        "cosine": round(par.min_cosine, 6),
        "passed": par.passed,
    }
    result.budget_met = par.passed and result.budget_met
    return result
