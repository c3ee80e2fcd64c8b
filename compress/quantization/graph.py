"""Reading and checking ONNX graphs around quantization: inputs, quantizable nodes, scales.

These checks turn the runtime's late, cryptic failures into early, typed errors (nothing to
quantize, NaN weights, zero or NaN scales, ConvInteger, which has no onnxruntime CPU kernel).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress.models.errors import InvalidInputError, UnsupportedError

STATIC_OPS = ("Conv", "Gemm", "MatMul")  # what carries the weights and the time in a CNN
DYNAMIC_OPS = ("MatMul", "Gemm")  # never Conv: ConvInteger has no CPU kernel
SCALE_OPS = ("QuantizeLinear", "DequantizeLinear")
QLINEAR_SCALE_INPUTS = {  # QOperator nodes: which inputs are scales
    "QLinearConv": (1, 4, 6),
    "QLinearMatMul": (1, 4, 6),
    "QGemm": (1, 4, 7),
    "QLinearAdd": (1, 4, 6),
}


@dataclass(frozen=True)
class GraphInfo:
    """What the quantizer needs to know about a model."""

    input_name: str
    input_shape: tuple[int | str | None, ...]
    op_counts: dict[str, int]
    nodes: dict[str, str]  # node name -> op type, in graph order

    def nodes_of(self, ops: tuple[str, ...]) -> list[str]:
        return [n for n, op in self.nodes.items() if op in ops]

    @property
    def fixed_batch(self) -> int | None:
        b = self.input_shape[0] if self.input_shape else None
        return b if isinstance(b, int) and b > 0 else None


def load(path: str | Path) -> Any:
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf decode errors have no common base class
        raise InvalidInputError(f"{path} is not a readable ONNX model: {e}") from e


def attr(node: Any, name: str, default: Any) -> Any:
    """The Python value of a node's attribute `name` (`default` when absent)."""
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def initializer(g: Any, name: str) -> np.ndarray:
    """The value of initializer `name` of graph `g`."""
    from onnx import numpy_helper

    return numpy_helper.to_array(next(i for i in g.initializer if i.name == name))


def inspect(path: str | Path) -> GraphInfo:
    """Input name/shape, op histogram and named nodes of an ONNX file (unnamed nodes get names)."""
    model = load(path)
    inputs_init = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inputs_init]
    if len(inputs) != 1:
        raise UnsupportedError(
            f"{path}: quantization supports models with one input, this one has {len(inputs)}"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)
    nodes = {(n.name or f"{n.op_type}_{i}"): n.op_type for i, n in enumerate(model.graph.node)}
    return GraphInfo(
        input_name=inputs[0].name,
        input_shape=shape,
        op_counts=dict(Counter(n.op_type for n in model.graph.node)),
        nodes=nodes,
    )


def require_quantizable(info: GraphInfo, ops: tuple[str, ...], method: str) -> None:
    """A model with none of `ops` can't be quantized by `method`: say which ops it has."""
    if info.nodes_of(ops):
        return
    have = ", ".join(f"{k} x{v}" for k, v in sorted(info.op_counts.items())) or "none"
    hint = (
        "ptq-dynamic only quantizes MatMul/Gemm (Linear layers); use ptq-static for convolutions"
        if method == "ptq-dynamic"
        else "nothing to gain from int8 here; try fp16 or pruning"
    )
    raise UnsupportedError(
        f"{method}: the model has no {'/'.join(ops)} nodes to quantize (its ops: {have})", hint=hint
    )


def check_finite_weights(path: str | Path) -> None:
    """NaN/Inf weights would produce NaN scales: refuse them before calibrating."""
    from onnx import numpy_helper

    bad = []
    for init in load(path).graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad.append(init.name)
    if bad:
        raise InvalidInputError(
            f"{path}: weights contain NaN/Inf ({', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''})",
            hint="the model diverged or the file is corrupt; retrain or re-export it",
        )


def check_quantized(path: str | Path) -> None:
    """Every scale finite and > 0, no ConvInteger."""
    from onnx import numpy_helper

    model = load(path)
    inits = {i.name: i for i in model.graph.initializer}
    if any(n.op_type == "ConvInteger" for n in model.graph.node):
        raise UnsupportedError(
            f"{path}: the quantized model contains ConvInteger, which onnxruntime's CPU provider "
            "can't run",
            hint="quantize convolutions statically (ptq-static), not dynamically",
        )
    bad = []
    for node in model.graph.node:
        idx = (1,) if node.op_type in SCALE_OPS else QLINEAR_SCALE_INPUTS.get(node.op_type, ())
        for i in idx:
            if i < len(node.input) and node.input[i] in inits:
                s = numpy_helper.to_array(inits[node.input[i]]).astype(np.float64)
                if not (np.isfinite(s).all() and (s > 0).all()):
                    bad.append(node.input[i])
    if bad:
        raise InvalidInputError(
            f"quantization produced {len(bad)} zero or non-finite scales "
            f"({', '.join(sorted(set(bad))[:5])})",
            hint="check the calibration data and the weights (constant or NaN activations)",
        )


def activation_bytes_per_sample(path: str | Path) -> int:
    """Float bytes of all intermediate tensors for one input (inferred shapes; unknown dims: 1).
    onnxruntime's calibrators keep every intermediate tensor of the batches they hold."""
    total = 0
    for vi in load(path).graph.value_info:
        t = vi.type.tensor_type
        if t.elem_type == 1:  # FLOAT
            total += 4 * math.prod(d.dim_value for d in t.shape.dim[1:] if d.HasField("dim_value"))
    return total


def compact(path: str | Path) -> None:
    """Drop what a quantized file needn't carry: inferred shapes (value_info) and all-zero int32
    zero-points of bias DequantizeLinear nodes (0 is the default)."""
    import onnx
    from onnx import numpy_helper

    model = load(path)
    g = model.graph
    del g.value_info[:]
    zero = {
        i.name
        for i in g.initializer
        if i.data_type == onnx.TensorProto.INT32 and not numpy_helper.to_array(i).any()
    }
    for node in g.node:
        if node.op_type == "DequantizeLinear" and len(node.input) == 3 and node.input[2] in zero:
            del node.input[2]
    drop_unused(g)
    onnx.save(model, str(path))


def drop_unused(g: Any) -> None:
    """Remove initializers no node or output reads (and graph inputs that declared them)."""
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    dropped = {i.name for i in g.initializer if i.name not in used}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    inputs = [i for i in g.input if i.name not in dropped]
    del g.input[:]
    g.input.extend(inputs)
