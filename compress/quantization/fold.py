"""Turn an exported fake-quant graph into a deployable QDQ model: int8 weights, int32 biases.

`torch.onnx.export` writes QuantizeLinear(float W) -> DequantizeLinear: right, but the file keeps
float weights. Each QuantizeLinear of a constant becomes its int8 initializer, and each float bias
of a Conv/Gemm with dequantized input and weight becomes int32 on the grid `input_scale *
weight_scale` (where the QAT model already put it) with its own DequantizeLinear, the pattern
onnxruntime fuses into QLinearConv / QGemm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compress.quantization import graph as qgraph


def _quantize(w: np.ndarray, scale: np.ndarray, zp: np.ndarray, axis: int) -> np.ndarray:
    shape = [-1 if i == axis else 1 for i in range(w.ndim)]  # per-axis scales and zero points
    s, z = (
        v if v.ndim == 0 else v.reshape(shape)
        for v in (scale.astype(np.float32), zp.astype(np.int32))
    )
    info = np.iinfo(zp.dtype)
    q = np.clip(np.rint(w / s) + z, info.min, info.max)  # rint: round half to even, like ONNX
    return q.astype(zp.dtype)


def fold_weights(src: str | Path, dst: str | Path) -> dict[str, int]:
    """Fold constant QuantizeLinear nodes and quantize biases; returns what was changed."""
    import onnx
    from onnx import numpy_helper

    model = qgraph.load(src)
    g = model.graph
    value = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    _constant_values(g, value)
    nodes, folded = [], 0
    for node in g.node:
        if node.op_type == "QuantizeLinear" and all(i in value for i in node.input[:3]):
            w, s, z = (value[i] for i in node.input[:3])
            q = _quantize(w, s, z, qgraph.attr(node, "axis", 1))
            g.initializer.append(numpy_helper.from_array(q, node.output[0]))
            folded += 1
        else:
            nodes.append(node)
    producer = {o: n for n in nodes for o in n.output}
    del g.node[:]
    biases = 0
    for node in nodes:
        dq = _bias_dq(g, node, producer, value)
        g.node.extend([node] if dq is None else [dq, node])
        biases += dq is not None
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


def _bias_dq(g: Any, node: Any, producer: dict[str, Any], value: dict[str, np.ndarray]) -> Any:
    """For a Conv/Gemm whose input and weight are dequantized: put its bias on the int32 grid
    (initializers in `g`, zero point the default 0) and return the DequantizeLinear reading it."""
    from onnx import helper, numpy_helper

    if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or node.input[2] not in value:
        return None
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
    name = f"{node.name or node.output[0]}_bias".lstrip("/").replace("/", "_")
    g.initializer.append(
        numpy_helper.from_array(np.rint(b / scale).astype(np.int32), name + "_int32")
    )
    g.initializer.append(numpy_helper.from_array(scale, name + "_scale"))
    node.input[2] = name + "_dq"
    return helper.make_node(
        "DequantizeLinear",
        [name + "_int32", name + "_scale"],
        [name + "_dq"],
        name=name + "_DequantizeLinear",
        axis=0,
    )
