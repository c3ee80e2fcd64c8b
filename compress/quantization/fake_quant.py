"""Fake quantization in plain PyTorch (not the deprecated `torch.ao.quantization`): the modules,
their insertion into a torch.fx-traced model (BatchNorm folded), calibration and freezing.

Where onnxruntime's int8 kernels quantize: Conv/Linear weights int8 per output channel, symmetric
(7-bit where the CPU's U8S8 kernel can saturate, see `compress.quantization.isa`); activations
uint8 per tensor on each Conv/Linear/Add output (after its ReLU) and the model input, shared
through max-pool/flatten/reshape so both sides see the same scale; biases on the int32 grid
`input_scale * weight_scale`. Ranges start from calibration min/max, then follow an EMA.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from compress.models.errors import UnsupportedError
from compress.models.zoo.registry import attach_spec, spec_of
from compress.models.zoo.spec import eval_mode

W_MIN, W_MAX = -128, 127
W_MAX_REDUCED = 63  # reduce_range: scales put every weight in [-63, 63]
A_MIN, A_MAX = 0, 255
ADDS = (operator.add, operator.iadd, torch.add)
# (module types, functions, tensor methods) of a ReLU and of the value-preserving ops
RELU: Any = ((nn.ReLU,), (F.relu, torch.relu), ("relu",))
TRANSPARENT: Any = (
    (nn.MaxPool2d, nn.MaxPool1d, nn.Flatten, nn.Identity, nn.Dropout),
    (torch.flatten, F.max_pool2d, torch.reshape),
    ("view", "reshape", "flatten", "contiguous"),
)


class ActFakeQuant(nn.Module):
    """uint8 per-tensor fake quantization with observed (then EMA-tracked) ranges."""

    lo: torch.Tensor
    hi: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor

    def __init__(self, momentum: float = 0.01) -> None:
        super().__init__()
        self.momentum = momentum
        self.observing = False
        self.register_buffer("lo", torch.tensor(float("inf")))
        self.register_buffer("hi", torch.tensor(float("-inf")))
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0, dtype=torch.int32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            with torch.no_grad():
                self.lo.copy_(torch.minimum(self.lo, x.min().float()))
                self.hi.copy_(torch.maximum(self.hi, x.max().float()))
            return x
        if self.training:
            with torch.no_grad():
                m = self.momentum
                self.lo.mul_(1 - m).add_(m * x.min().float())
                self.hi.mul_(1 - m).add_(m * x.max().float())
                self.update_qparams()
        return torch.fake_quantize_per_tensor_affine(
            x.float(), self.scale, self.zero_point, A_MIN, A_MAX
        )

    @torch.no_grad()
    def update_qparams(self) -> None:
        """Scale/zero-point from the range, which always includes 0 (exact zero padding)."""
        lo, hi = torch.clamp(self.lo, max=0.0), torch.clamp(self.hi, min=0.0)
        if not (torch.isfinite(lo) and torch.isfinite(hi)):
            raise UnsupportedError("a quantizer saw no data during calibration (dead branch?)")
        scale = torch.clamp((hi - lo) / (A_MAX - A_MIN), min=1e-8)
        self.scale.copy_(scale)
        self.zero_point.copy_(torch.clamp(torch.round(-lo / scale), A_MIN, A_MAX).int())


class QuantWeight(nn.Module):
    """A Conv/Linear whose weights (int8 per channel) and bias (int32 grid) are fake-quantized."""

    w_scale: torch.Tensor
    w_zero: torch.Tensor

    def __init__(
        self, layer: nn.Conv2d | nn.Linear, act: ActFakeQuant, reduce_range: bool = False
    ) -> None:
        super().__init__()
        self.layer = layer
        # the fake-quant op keeps [-128, 127] (all the ONNX export accepts); a 7-bit scale keeps
        # the values inside [-63, 63]
        self.w_max = W_MAX_REDUCED if reduce_range else W_MAX
        self._act = [act]  # the input's quantizer: a reference, not a submodule
        self.frozen = False
        out = int(layer.weight.shape[0])
        self.register_buffer("w_scale", torch.ones(out))
        self.register_buffer("w_zero", torch.zeros(out, dtype=torch.int32))

    def quantized_params(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        w, b = self.layer.weight, self.layer.bias
        if not self.frozen:
            with torch.no_grad():
                amax = w.detach().abs().flatten(1).amax(1)
                self.w_scale.copy_(torch.clamp(amax / self.w_max, min=1e-8))
        wq = torch.fake_quantize_per_channel_affine(w, self.w_scale, self.w_zero, 0, W_MIN, W_MAX)
        if b is None or self.frozen:
            return wq, b
        step = (self._act[0].scale * self.w_scale).detach()
        return wq, b + (torch.round(b / step) * step - b).detach()

    @torch.no_grad()
    def freeze(self) -> None:
        """Fix the weight scales and store the bias on its int32 grid (before export)."""
        self.frozen = False
        _, b = self.quantized_params()
        if b is not None and self.layer.bias is not None:
            self.layer.bias.copy_(b)
        self.frozen = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.quantized_params()
        layer = self.layer
        if isinstance(layer, nn.Linear):
            return F.linear(x, w, b)
        if layer.padding_mode != "zeros":
            raise UnsupportedError(f"QAT: Conv2d padding_mode={layer.padding_mode!r}")
        return F.conv2d(x, w, b, layer.stride, layer.padding, layer.dilation, layer.groups)


def prepare_qat(
    model: nn.Module, momentum: float = 0.01, reduce_range: bool | None = None
) -> fx.GraphModule:
    """Trace `model`, fold BatchNorm, insert fake-quantization; returns a new module.
    `reduce_range` (7-bit weights): None follows this CPU's int8 default (on where onnxruntime's
    U8S8 kernel can saturate), as ptq-static does."""
    if reduce_range is None:
        from compress.quantization.isa import detect_isa, int8_defaults

        reduce_range = int8_defaults(detect_isa()).reduce_range
    from torch.fx.experimental.optimization import fuse

    try:
        with eval_mode(model):
            gm = fuse(model)
        assert isinstance(gm, fx.GraphModule)
    except Exception as e:  # fx raises many kinds of tracing errors
        raise UnsupportedError(
            f"QAT needs a model torch.fx can trace; tracing failed: {str(e).splitlines()[0]}",
            hint="use ptq-static instead (it works on the exported ONNX graph)",
        ) from e
    _Rewriter(gm, momentum, reduce_range).run()
    attach_spec(gm, spec_of(model))
    return gm


class _Rewriter:
    def __init__(self, gm: fx.GraphModule, momentum: float, reduce_range: bool) -> None:
        self.gm, self.momentum, self.reduce_range = gm, momentum, reduce_range
        self.modules = dict(gm.named_modules())
        self.fq_nodes: set[fx.Node] = set()
        self.count = 0

    def run(self) -> None:
        graph = self.gm.graph
        for node in list(graph.nodes):
            if self._is_layer(node):
                act = self._input_quant(node)
                name = str(node.target)
                self.modules[name] = QuantWeight(self.modules[name], act, self.reduce_range)
                self.gm.set_submodule(name, self.modules[name])
                self._output_quant(node)
            elif node.op == "call_function" and node.target in ADDS:
                self._output_quant(node)
        graph.lint()
        self.gm.recompile()
        if not self.count:
            raise UnsupportedError("QAT: the model has no Conv2d/Linear layers to quantize")

    def _is_layer(self, node: fx.Node) -> bool:
        return node.op == "call_module" and isinstance(
            self.modules.get(str(node.target)), (nn.Conv2d, nn.Linear)
        )

    def _new_fq(self) -> str:
        name = f"act_fq_{self.count}"
        self.count += 1
        self.modules[name] = ActFakeQuant(self.momentum)
        self.gm.add_module(name, self.modules[name])
        return name

    def _source_fq(self, node: Any) -> fx.Node | None:
        """The fake-quant node `node` comes from through value-preserving ops, if any."""
        while isinstance(node, fx.Node):
            if node in self.fq_nodes:
                return node
            if not _calls(node, self.modules, TRANSPARENT):
                return None
            node = node.args[0]
        return None

    def _input_quant(self, node: fx.Node) -> ActFakeQuant:
        """Quantize the layer's input: reuse an upstream quantizer, or add a fresh one."""
        arg = node.args[0]
        src = self._source_fq(arg)
        if src is not None and src is arg:
            return self.modules[str(src.target)]  # type: ignore[return-value]
        name = str(src.target) if src is not None else self._new_fq()
        with self.gm.graph.inserting_before(node):
            fq_node = self.gm.graph.call_module(name, (arg,))
        self.fq_nodes.add(fq_node)
        node.args = (fq_node, *node.args[1:])
        return self.modules[name]  # type: ignore[return-value]

    def _output_quant(self, node: fx.Node) -> None:
        """Quantize what `node` produces (after its ReLU if one is its only user)."""
        post = node
        users = list(node.users)
        if len(users) == 1 and _calls(users[0], self.modules, RELU):
            post = users[0]
        if all(u.op == "output" for u in post.users):
            return  # logits stay float
        name = self._new_fq()
        with self.gm.graph.inserting_after(post):
            fq_node = self.gm.graph.call_module(name, (post,))
        post.replace_all_uses_with(fq_node, delete_user_cb=lambda u: u is not fq_node)
        self.fq_nodes.add(fq_node)


def _calls(node: fx.Node, modules: dict[str, nn.Module], kinds: Any) -> bool:
    """`node` calls one of `kinds`: (module types, functions, tensor methods)."""
    mods, funcs, methods = kinds
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), mods)
    return node.target in {"call_function": funcs, "call_method": methods}.get(node.op, ())


def quantizers(model: nn.Module) -> list[ActFakeQuant]:
    return [m for m in model.modules() if isinstance(m, ActFakeQuant)]


@torch.no_grad()
def calibrate(model: nn.Module, calib: np.ndarray, batch_size: int = 64) -> None:
    """Initialize every activation range from min/max over the calibration inputs."""
    model.eval()
    fqs = quantizers(model)
    for fq in fqs:
        fq.observing = True
    try:
        for i in range(0, len(calib), batch_size):
            model(torch.from_numpy(calib[i : i + batch_size]))
    finally:
        for fq in fqs:
            fq.observing = False
    for fq in fqs:
        fq.update_qparams()


def freeze(model: nn.Module) -> None:
    """Fix weight scales and round biases: the model now computes exactly what is exported."""
    model.eval()
    for m in model.modules():
        if isinstance(m, QuantWeight):
            m.freeze()
