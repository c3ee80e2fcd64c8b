"""Turn an exported fake-quant graph into a deployable QDQ model: int8 weights, int32 biases.

`torch.onnx.export` writes a fake-quantized weight as QuantizeLinear(float W) ->
DequantizeLinear: correct, but the file still holds float weights. Here each QuantizeLinear of a
constant is evaluated once and replaced by its int8 initializer, and each float bias of a Conv or
Gemm whose input and weight are dequantized becomes int32 on the grid `input_scale *
weight_scale` with its own DequantizeLinear, which is the pattern onnxruntime fuses into
QLinearConv / QGemm. The biases were already on that grid in PyTorch (see compress.quantization.qat), so the
numbers do not change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compress.quantization import graph as qgraph


def _per_axis(v: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    if v.ndim == 0:
        return v
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


def _quantize(w: np.ndarray, scale: np.ndarray, zp: np.ndarray, axis: int) -> np.ndarray:
    s = _per_axis(scale.astype(np.float32), w.ndim, axis)
    z = _per_axis(zp.astype(np.int32), w.ndim, axis)
    info = np.iinfo(zp.dtype)
    q = np.clip(np.rint(w / s) + z, info.min, info.max)  # rint: round half to even, like ONNX
    return q.astype(zp.dtype)


def fold_weights(src: str | Path, dst: str | Path) -> dict[str, int]:
    """Fold constant QuantizeLinear nodes and quantize biases; returns what was changed."""
    import onnx
    from onnx import helper, numpy_helper

    model = qgraph.load(src)
    g = model.graph
    inits: dict[str, Any] = {i.name: i for i in g.initializer}
    value = {k: numpy_helper.to_array(v) for k, v in inits.items()}
    _constant_values(g, value)
    folded, biases = 0, 0
    keep = []
    for node in g.node:
        if node.op_type == "QuantizeLinear" and all(i in value for i in node.input[:3]):
            w, s, z = (value[i] for i in node.input[:3])
            q = _quantize(w, s, z, next((a.i for a in node.attribute if a.name == "axis"), 1))
            g.initializer.append(numpy_helper.from_array(q, node.output[0]))
            folded += 1
            continue
        keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    producer = {o: n for n in g.node for o in n.output}
    new_nodes = []
    for node in g.node:
        if node.op_type in ("Conv", "Gemm") and len(node.input) > 2 and node.input[2] in value:
            dq = _bias_dq(node, producer, value)
            if dq is not None:
                q, scale, name = dq
                g.initializer.extend(
                    [
                        numpy_helper.from_array(q, name + "_int32"),
                        numpy_helper.from_array(scale, name + "_scale"),
                        numpy_helper.from_array(np.zeros_like(q), name + "_zero"),
                    ]
                )
                new_nodes.append(
                    helper.make_node(
                        "DequantizeLinear",
                        [name + "_int32", name + "_scale", name + "_zero"],
                        [name + "_dq"],
                        name=name + "_DequantizeLinear",
                        axis=0,
                    )
                )
                node.input[2] = name + "_dq"
                biases += 1
        new_nodes.append(node)
    del g.node[:]
    g.node.extend(new_nodes)
    qgraph.drop_unused(g)
    onnx.save(model, str(dst))
    return {"weights_folded": folded, "biases_quantized": biases}


def _constant_values(g: Any, value: dict[str, np.ndarray]) -> None:
    """Add the values of Constant nodes and of Cast/Identity of constants (zero points)."""
    from onnx import helper, numpy_helper

    for n in g.node:  # graph order is topological
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    value[n.output[0]] = numpy_helper.to_array(a.t)
        elif n.op_type == "Identity" and n.input[0] in value:
            value[n.output[0]] = value[n.input[0]]
        elif n.op_type == "Cast" and n.input[0] in value:
            to = next(a.i for a in n.attribute if a.name == "to")
            value[n.output[0]] = value[n.input[0]].astype(helper.tensor_dtype_to_np_dtype(to))


def _bias_dq(
    node: Any, producer: dict[str, Any], value: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, str] | None:
    """int32 bias and its scale for a Conv/Gemm whose input and weight are dequantized."""
    x_dq, w_dq = producer.get(node.input[0]), producer.get(node.input[1])
    if not (x_dq and w_dq and x_dq.op_type == w_dq.op_type == "DequantizeLinear"):
        return None
    try:
        sx, sw = value[x_dq.input[1]], value[w_dq.input[1]]
    except KeyError:
        return None
    b = value[node.input[2]].astype(np.float64)
    scale = (sx.astype(np.float64) * sw.astype(np.float64)).astype(np.float32)
    scale = np.broadcast_to(scale, b.shape).copy()
    q = np.rint(b / scale).astype(np.int32)
    return q, scale, f"{node.name or node.output[0]}_bias".lstrip("/").replace("/", "_")
