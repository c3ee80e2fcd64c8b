"""int4 weights for onnxruntime, layer by layer, and an honest account of what each computes in.

onnxruntime 1.32 (measured): standard int4 `DequantizeLinear` (opset >= 21) is dequantized at run
time (smaller file, float compute); `MatMulNBits` computes in int4 but only from a MatMul, so Gemm
layers are rewritten to MatMul + Add first; int8 layers go to `quantize_static` (QDQ). `classify`
reads the runtime's optimized graph to say what each layer really computes in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress.export.doctor.diagnosis import INT_COMPUTE
from compress.export.runtimes.session import open_session
from compress.models.errors import UnsupportedError, UsageError
from compress.quantization import graph as qgraph
from compress.quantization import ortrun
from compress.quantization.context import QuantContext
from compress.quantization.int8 import build_int8_nodes

log = logging.getLogger(__name__)

LAYER_OPS = ("Conv", "Gemm", "MatMul")  # the ops that carry weights
INT4_OPSET = 21  # first opset with the INT4 tensor type in DequantizeLinear
BITS = (4, 8, 32)
# QOperator nodes (`--format qoperator`) hold their int8 weight directly: its input index.
QOPERATOR_WEIGHT = {"QLinearConv": 3, "QLinearMatMul": 3, "QGemm": 3, "ConvInteger": 1}


def weighted_layers(model: Any) -> dict[str, str]:
    """Conv/Gemm/MatMul nodes whose weight (input 1) is a constant initializer: name -> op."""
    inits = {i.name for i in model.graph.initializer}
    return {
        n.name: n.op_type
        for n in model.graph.node
        if n.op_type in LAYER_OPS and len(n.input) > 1 and n.input[1] in inits
    }


def check_layer_bits(model: Any, layer_bits: dict[str, int]) -> None:
    """Each named node exists, takes a constant weight, and gets 4, 8 or 32 bits: else one line."""
    ops = {n.name: n.op_type for n in model.graph.node}
    ok = weighted_layers(model)
    for name, b in layer_bits.items():
        if b not in BITS:
            raise UsageError(f"--layer-bits {name}={b}: bit widths are 4, 8 or 32 (fp32), got {b}")
        if name not in ops:
            raise UsageError(
                f"--layer-bits: no node named {name!r}",
                hint=f"layers that take int4/int8: {', '.join(ok) or 'none'}",
            )
        if name not in ok:
            why = (
                f"a {ops[name]} node has no weights"
                if ops[name] not in LAYER_OPS
                else f"its {ops[name]} weight is not a constant (two activations)"
            )
            raise UnsupportedError(
                f"{name} can't take {b}-bit weights: {why}; int4/int8 apply to Conv, Gemm and "
                "MatMul layers with constant weights",
                hint=f"layers that can: {', '.join(ok) or 'none'}",
            )


def check_opset(opset: int) -> None:
    """Refuse an opset below 21 (no int4 type) or one the installed onnxruntime can't run int4 in."""
    import onnxruntime
    from onnx import TensorProto, helper

    if opset < INT4_OPSET:
        raise UnsupportedError(
            f"--int4-opset {opset}: standard int4 weights need opset >= {INT4_OPSET}",
            hint="below 21 onnxruntime writes com.microsoft Q/DQ that other runtimes can't read",
        )
    w = helper.make_tensor("w", TensorProto.INT4, [2, 2], [1, -2, 3, -4])
    s = helper.make_tensor("s", TensorProto.FLOAT, [], [0.5])
    node = helper.make_node("DequantizeLinear", ["w", "s"], ["y"])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])
    g = helper.make_graph([node], "int4probe", [], [out], initializer=[w, s])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    try:
        open_session(model.SerializeToString()).run(None, {})
    except Exception as e:
        raise UnsupportedError(
            f"--int4-opset {opset}: onnxruntime {onnxruntime.__version__} can't run int4 "
            f"weights at this opset ({str(e).splitlines()[0][:120]})",
            hint=f"use --int4-opset {INT4_OPSET}",
        ) from e


def to_opset(src: Path, dst: Path, opset: int) -> Path:
    """The model converted to `opset` (int4 needs 21); unchanged when it already is."""
    import onnx
    from onnx import version_converter

    model = qgraph.load(src)
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if current == opset:
        return src
    try:
        converted = version_converter.convert_version(model, opset)
    except Exception as e:
        raise UnsupportedError(
            f"{src}: could not convert the model from opset {current} to {opset}: {e}",
            hint="re-export it with `compress export --opset 21`",
        ) from e
    onnx.save(converted, str(dst))
    return dst


def build(ctx: QuantContext, bits: dict[str, int]) -> Path:
    """`ctx.pre` with each layer at its bit width (missing layers: fp32): int8 layers by
    quantize_static, int4 Linear layers as MatMulNBits, other int4 layers weight-only int4."""
    import onnx

    int8 = [n for n, b in bits.items() if b == 8]
    path = build_int8_nodes(ctx, int8) if int8 else ctx.pre
    four = [n for n, b in bits.items() if b == 4]
    if not four:
        return path
    model = qgraph.load(path)
    nbits = [n for n in four if _gemm_to_matmul(model, n)]
    for name in four:
        if name not in nbits:
            _weight_only_int4(model, name)
    if nbits:
        model = _matmul_nbits(model, nbits, ctx.cfg.block_size)
    out = ctx.fresh("int4")
    onnx.save(model, str(out))
    return out


def _gemm_to_matmul(model: Any, name: str) -> bool:
    """Rewrite Gemm `name` (or keep MatMul `name`) as MatMul [+ Add] for MatMulNBits; False when
    it can't be (transA, a 1-D weight, alpha/beta != 1): it then takes weight-only int4."""
    from onnx import helper, numpy_helper

    g = model.graph
    idx, node = next((i, n) for i, n in enumerate(g.node) if n.name == name)
    w = qgraph.initializer(g, node.input[1])
    if w.ndim != 2 or node.op_type == "MatMul":
        return w.ndim == 2
    attrs = {k: qgraph.attr(node, k, d) for k, d in (("transA", 0), ("alpha", 1.0), ("beta", 1.0))}
    if attrs["transA"] or attrs["alpha"] != 1.0 or attrs["beta"] != 1.0:
        return False
    wname = f"{node.input[1]}_KxN"
    g.initializer.append(
        numpy_helper.from_array(
            np.ascontiguousarray(w.T) if qgraph.attr(node, "transB", 0) else w, wname
        )
    )
    mm_out = f"{name}_MatMul_out" if len(node.input) > 2 and node.input[2] else node.output[0]
    new = [helper.make_node("MatMul", [node.input[0], wname], [mm_out], name=name)]
    if mm_out != node.output[0]:
        new.append(
            helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]], name=f"{name}_Add")
        )
    del g.node[idx]
    for k, n in enumerate(new):
        g.node.insert(idx + k, n)
    return True


def _weight_only_int4(model: Any, name: str) -> None:
    """Replace the layer's float weight by int4 (symmetric, per output channel) + DequantizeLinear.
    compress.training.int4_grid trains on this grid (tests/test_int4_grid.py checks it)."""
    import ml_dtypes
    from onnx import helper, numpy_helper

    g = model.graph
    node = next(n for n in g.node if n.name == name)
    w = qgraph.initializer(g, node.input[1]).astype(np.float32)
    axis = out_axis(node)
    amax = np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis), keepdims=True)
    scale = np.where(amax > 0, amax / 7.0, 1.0).astype(np.float32)
    q = np.clip(np.round(w / scale), -8, 7).astype(np.int8)
    base = f"{node.input[1]}_int4"
    # ml_dtypes' int4 makes onnx pack two values per byte in raw_data; `make_tensor` with a
    # list would store one int32 varint per byte pair (~1.5x the file).
    g.initializer.append(numpy_helper.from_array(q.astype(ml_dtypes.int4), base))
    g.initializer.append(numpy_helper.from_array(scale.reshape(-1), f"{base}_scale"))
    dq = helper.make_node(
        "DequantizeLinear", [base, f"{base}_scale"], [f"{base}_dq"], name=f"{name}_w_dq", axis=axis
    )
    node.input[1] = f"{base}_dq"
    g.node.insert(list(g.node).index(node), dq)
    qgraph.drop_unused(g)


def out_axis(node: Any) -> int:
    """The output-channel axis of the weight: 0 for Conv and Gemm(transB), 1 for MatMul/Gemm."""
    transposed = node.op_type == "Gemm" and qgraph.attr(node, "transB", 0)
    return 0 if node.op_type == "Conv" or transposed else 1


def _matmul_nbits(model: Any, names: list[str], block_size: int) -> Any:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    q = MatMulNBitsQuantizer(
        model, bits=4, block_size=block_size, is_symmetric=True, nodes_to_include=names
    )
    with ortrun.quiet_ort():
        q.process()
    done = {n.name for n in q.model.model.graph.node if n.op_type == "MatMulNBits"}
    missed = [n for n in names if f"{n}_Q4" not in done]
    if missed:  # never silent: these stay float MatMul
        log.warning("MatMulNBits left %s in float", ", ".join(missed))
    return q.model.model


@dataclass(frozen=True)
class LayerCompute:
    """One layer of a quantized graph: its op, stored weight bits, what onnxruntime computes in."""

    layer: str
    op: str
    weight_bits: int
    compute: str


def classify(path: Path, layers: dict[str, str], work: Path) -> list[LayerCompute]:
    """Per layer: stored weight bits and what onnxruntime's optimized graph computes it in."""
    dst = work / f"{path.stem}.opt.onnx"
    open_session(path, optimization="extended", optimized_model_path=dst)
    opt = qgraph.load(dst)
    stored = _stored_bits(qgraph.load(path))
    rows: list[LayerCompute] = []
    for name, op in layers.items():
        kinds = {
            n.op_type for n in opt.graph.node if n.name == name or n.name.startswith(f"{name}_")
        }
        bits = stored.get(name, 32)
        compute = "dequantized at run time" if bits < 32 else "fp32"
        if kinds & INT_COMPUTE:  # the doctor's int8 compute ops
            compute = "int8"
        if "MatMulNBits" in kinds:
            compute = "int4"
        rows.append(LayerCompute(name, op, bits, compute))
    return rows


def _stored_bits(model: Any) -> dict[str, int]:
    """Weight bits as stored: int4/int8 DQ weights, MatMulNBits, QOperator int8 weights, else 32."""
    from onnx import TensorProto

    inits = {i.name: i.data_type for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    width = {TensorProto.INT4: 4, TensorProto.UINT4: 4, TensorProto.INT8: 8, TensorProto.UINT8: 8}
    out: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type == "MatMulNBits":
            out[n.name.removesuffix("_Q4")] = 4
        elif n.op_type in QOPERATOR_WEIGHT and len(n.input) > QOPERATOR_WEIGHT[n.op_type]:
            w = inits.get(n.input[QOPERATOR_WEIGHT[n.op_type]], 0)
            out[n.name.removesuffix("_quant")] = width.get(w, 32)
        elif n.op_type in LAYER_OPS and len(n.input) > 1:
            p = producers.get(n.input[1])
            if p is not None and p.op_type == "DequantizeLinear":
                out[n.name] = width.get(inits.get(p.input[0], 0), 32)
    return out


def short_names(path: str | Path) -> int:
    """Rename internal tensors to t0, t1, ... and drop Q/DQ node names; returns bytes saved.

    At 4 bits the graph outweighs the weights (mixed LeNet-5: names were 5.6 of 15.8 KB). Graph
    inputs/outputs and the layers' node names (what reports and --keep-float use) are kept.
    """
    import onnx

    before = Path(path).stat().st_size
    model = qgraph.load(path)
    g = model.graph
    keep = {i.name for i in g.input} | {o.name for o in g.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for init in g.initializer:
        init.name = short(init.name)
    for node in g.node:
        node.input[:] = [short(x) for x in node.input]
        node.output[:] = [short(x) for x in node.output]
        if node.op_type in qgraph.SCALE_OPS:
            node.name = ""
        node.doc_string = ""
    del g.value_info[:]
    onnx.save(model, str(path))
    return before - Path(path).stat().st_size
