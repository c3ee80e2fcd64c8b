"""fp16 ONNX for GPU execution providers, with fp32 inputs/outputs and an optional mixed mode.

The whole graph is converted (onnxconverter-common) with Cast nodes at the inputs and outputs,
so callers keep feeding fp32. The fp16 parity gate of mature exporters applies to the logits
(max abs <= 1e-2, cosine >= 0.999); with `mixed`, the nodes whose fp16 version hurts the logits
most stay fp32 until the gate holds. On CPU, onnxruntime runs most fp16 ops through inserted
casts, so fp16 is for size and GPUs, not for CPU speed; the measured latency says so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from compress.models.errors import UnsupportedError
from compress.quantization import graph as qgraph
from compress.quantization import ortrun
from compress.quantization.context import QuantContext, QuantizeResult, drop_pts, within_budget
from compress.quantization.fallback import NodeScore, rank_nodes, steps

log = logging.getLogger(__name__)
MAX_ABS = 1e-2
MIN_COSINE = 0.999


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
    casts_in, casts_out = [], []
    for inp in g.input:
        if _fp16_to_fp32(inp):
            half = _rename(g.node, inp.name, inp.name + "_fp16", outputs=False)
            casts_in.append(helper.make_node("Cast", [inp.name], [half], to=TensorProto.FLOAT16))
    for out in g.output:
        if _fp16_to_fp32(out):
            half = _rename(g.node, out.name, out.name + "_fp16", outputs=True)
            casts_out.append(helper.make_node("Cast", [half], [out.name], to=TensorProto.FLOAT))
    nodes = [*casts_in, *g.node, *casts_out]
    del g.node[:]
    g.node.extend(_drop_round_trips(nodes, {o.name for o in g.output}))


def _fp16_to_fp32(value: Any) -> bool:
    """Retype an fp16 graph input/output as fp32; False (unchanged) for any other type."""
    from onnx import TensorProto

    t = value.type.tensor_type
    if t.elem_type != TensorProto.FLOAT16:
        return False
    t.elem_type = TensorProto.FLOAT
    return True


def _rename(nodes: Any, old: str, new: str, *, outputs: bool) -> str:
    """Point every node input (and, with `outputs`, node output) named `old` at `new`."""
    for node in nodes:
        for names in (node.input, node.output) if outputs else (node.input,):
            for i, name in enumerate(names):
                if name == old:
                    names[i] = new
    return new


def _drop_round_trips(nodes: list[Any], outputs: set[str]) -> list[Any]:
    """fp32 -> fp16 -> fp32 Cast pairs lose precision for nothing: read the fp32 value instead
    (so fp32-kept nodes next to the boundary see exact inputs), then drop unused casts."""
    from onnx import TensorProto

    def to(n: Any) -> int:
        return next((a.i for a in n.attribute if a.name == "to"), -1)

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


def gate(p: dict[str, float]) -> bool:
    return p["max_abs"] <= MAX_ABS and p["cosine"] >= MIN_COSINE


def convert_fp16(ctx: QuantContext) -> QuantizeResult:
    """fp16 model (mixed when asked and needed), its parity and validation accuracy."""
    from compress.quantization.isa import detect_isa

    ref = ortrun.run(ortrun.session(ctx.pre), ctx.probe)
    names = list(qgraph.inspect(ctx.pre).nodes)

    def build(block: list[str]) -> Path:
        return to_fp16(ctx.pre, ctx.fresh("fp16"), block)

    def check(path: Path) -> dict[str, float]:
        return ortrun.parity(ref, ortrun.run(ortrun.session(path), ctx.probe))

    path, block = build([]), []
    par = check(path)
    ranked: list[NodeScore] = []
    if not gate(par) and ctx.cfg.mixed:
        nodes = dict(qgraph.inspect(ctx.pre).nodes.items())
        ranked = rank_nodes(
            lambda only: build([n for n in names if n not in only]), nodes, ctx.probe, ref
        )
        for k in steps(min(ctx.cfg.max_fallback, len(ranked))):
            block = [r.node for r in ranked[:k]]
            path = build(block)
            par = check(path)
            log.info(
                "mixed fp16: %d node(s) in fp32 -> max abs %.2e, cosine %.5f",
                k,
                par["max_abs"],
                par["cosine"],
            )
            if gate(par):
                break
    fp32_top1, top1 = ctx.top1(ctx.source), ctx.top1(path)
    parity = {**{k: round(v, 6) for k, v in par.items()}, "passed": gate(par)}
    settings: dict[str, Any] = {"format": "fp16", "keep_io_types": True, "mixed": ctx.cfg.mixed}
    return QuantizeResult(
        path=str(path),
        method="fp16",
        precision="fp16",
        settings=settings,
        reason=(
            "fp16 halves the weights and targets GPU execution providers; inputs and outputs "
            f"stay fp32 (parity gate: max abs <= {MAX_ABS}, cosine >= {MIN_COSINE})"
        ),
        isa=detect_isa().to_dict(),
        fp32={"val_top1": fp32_top1},
        quantized={"val_top1": top1, "parity": parity},
        drop_pts=drop_pts(fp32_top1, top1),
        budget_met=gate(par) and within_budget(fp32_top1, top1, ctx.cfg.max_drop),
        fallback_nodes=block,
        sensitivity=[r.__dict__ for r in ranked],
    )
