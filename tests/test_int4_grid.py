"""Training Linear weights on onnxruntime's int4 grid (`compress distill --int4-layers`): the grid
is MatMulNBits's own rounding, gradients pass through, the distilled artifact stores grid
values under torchvision's keys, and `compress quantize` picks the layers up and stores exactly
the trained weights in int4 (a model trained without the grid is not picked up)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from typer.testing import CliRunner

from compress.cli.app import app
from compress.distillation.distill import DistillConfig
from compress.models.artifacts.artifact import load_model, read_card
from compress.models.errors import UsageError
from compress.models.zoo.registry import create_model
from compress.quantization.context import QuantizeConfig
from compress.quantization.int4_trained import grid_nodes, module_of
from compress.stages.common import ModelRef
from compress.stages.distill import run_distill
from compress.stages.quantize import run_quantize
from compress.training.fit import TrainConfig
from compress.training.int4_grid import attach, fake_quant_int4, on_grid, snap
from tests.conftest import MINI

runner = CliRunner()


def ort_int4(w: np.ndarray, block: int) -> np.ndarray:
    """`w` (out x in) through onnxruntime's own blockwise symmetric int4 quantizer, dequantized."""
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    n, k = w.shape
    kb = -(-k // block)
    b = np.ascontiguousarray(np.pad(w.T, ((0, kb * block - k), (0, 0))), dtype=np.float32)
    packed = np.zeros((n, kb, block // 2), np.uint8)
    scales = np.zeros((n, kb), np.float32)
    zp = np.zeros((n, (kb + 1) // 2), np.uint8)
    quantize_matmul_4bits(packed, b, scales, zp, block, n, kb * block, True)
    return dequantize_nbits(packed, scales, k)


def dequantize_nbits(packed: np.ndarray, scales: np.ndarray, k: int) -> np.ndarray:
    """MatMulNBits's B (N x blocks x block/2 nibbles, zero point 8) as float (N x K)."""
    n, kb, half = packed.shape
    q = np.stack([packed & 0xF, packed >> 4], -1).reshape(n, kb, 2 * half).astype(np.int32) - 8
    return (q * scales.reshape(n, kb, 1)).reshape(n, -1)[:, :k]


@pytest.mark.parametrize(("shape", "block"), [((17, 250), 32), ((5, 70), 16), ((3, 128), 64)])
def test_the_grid_is_onnxruntimes_matmulnbits_rounding(shape, block) -> None:
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    ours = fake_quant_int4(w, block)
    np.testing.assert_allclose(ours.numpy(), ort_int4(w.numpy(), block), rtol=0, atol=1e-6)
    assert on_grid(ours, block) and not on_grid(w, block)
    assert len(torch.unique(ours[0, :block])) <= 16


def test_gradients_pass_straight_through_the_rounding() -> None:
    w = torch.randn(4, 40, requires_grad=True)
    (fake_quant_int4(w, 16) * torch.arange(40.0)).sum().backward()
    assert w.grad is not None
    assert torch.equal(w.grad, torch.arange(40.0).expand(4, 40))


def test_attach_and_snap_keep_torchvision_keys_and_store_grid_values() -> None:
    model = create_model("lenet5")
    keys = list(model.state_dict())
    attach(model, ["fc1", "fc2"], 32)
    assert any("parametrizations" in k for k in model.state_dict())
    assert snap(model) == ["fc1", "fc2"]
    assert sorted(model.state_dict()) == sorted(keys)
    assert on_grid(model.fc1.weight, 32) and on_grid(model.fc2.weight, 32)
    assert not on_grid(model.fc3.weight, 32)


@pytest.mark.parametrize(
    ("layers", "block", "message"),
    [
        (["pool1"], 32, "int4 layer 'pool1' is a MaxPool2d, not a Linear or convolution layer"),
        (["fc1", "nope"], 32, "int4 layer 'nope' is not a module of LeNet5"),
        (["fc1"], 24, "int4 block size must be a power of 2 >= 16, got 24"),
    ],
)
def test_bad_int4_layers_are_refused_before_anything_changes(layers, block, message) -> None:
    model = create_model("lenet5")
    with pytest.raises(UsageError, match=message):
        attach(model, layers, block)
    assert not any("parametrizations" in k for k in model.state_dict())


def test_distill_config_refuses_a_bad_block_size() -> None:
    with pytest.raises(UsageError, match="power of 2 >= 16"):
        DistillConfig(int4_layers="fc1", int4_block_size=100)
    assert DistillConfig(int4_layers="fc1, fc2").int4_layers == ["fc1", "fc2"]


@pytest.fixture(scope="module")
def grid_student(trained_lenet, tmp_path_factory):
    """The trained LeNet-5 distilled from itself for one epoch, conv2 and fc1 on the int4 grid."""
    from compress.models.data.datasets import DataConfig

    out = tmp_path_factory.mktemp("grid") / "student"
    data = DataConfig(dataset="fashion-mnist", data_dir=MINI, batch_size=64)
    run_distill(
        ModelRef(str(trained_lenet)), ModelRef(str(trained_lenet)),
        out, DistillConfig(int4_layers=["conv2", "fc1"], int4_block_size=32), data,
        train=TrainConfig(epochs=1, lr=1e-3, amp="off"),
    )  # fmt: skip
    return out


def test_the_distilled_artifact_lies_on_the_grid(grid_student) -> None:
    model, card = load_model(grid_student)
    assert on_grid(model.fc1.weight, 32) and on_grid(model.conv2.weight, 32)
    assert not on_grid(model.fc2.weight, 32)  # only the named layers
    assert not on_grid(model.conv1.weight, 32)
    kd = card.history[-1]["kd"]
    assert (kd["int4_layers"], kd["int4_block_size"]) == (["conv2", "fc1"], 32)


def test_quantize_stores_exactly_the_trained_int4_weights(grid_student, tmp_path) -> None:
    from compress.models.data.datasets import DataConfig

    out = tmp_path / "q"
    data = DataConfig(dataset="fashion-mnist", data_dir=MINI)
    summary = run_quantize(ModelRef(str(grid_student)), out, QuantizeConfig(max_drop=None), data)
    notes = [n.text for n in summary.result.notes]
    assert any(n.startswith("fc1 (/fc1/Gemm): int4, trained") for n in notes)
    assert any(n.startswith("conv2 (/conv2/Conv): int4, trained") for n in notes)
    g = onnx.load(str(out / "model.onnx")).graph
    node = next(n for n in g.node if n.op_type == "MatMulNBits")
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    stored = dequantize_nbits(inits[node.input[1]], inits[node.input[2]], 400)
    model, _ = load_model(grid_student)
    np.testing.assert_allclose(stored, model.fc1.weight.detach().numpy(), rtol=0, atol=1e-6)
    conv = next(n for n in g.node if n.name == "/conv2/Conv")
    dq = next(n for n in g.node if conv.input[1] in n.output)  # weight-only int4
    q, scale = inits[dq.input[0]].astype(np.float32), inits[dq.input[1]]
    conv_w = model.conv2.weight.detach().numpy()
    np.testing.assert_allclose(q * scale.reshape(-1, 1, 1, 1), conv_w, rtol=1e-6, atol=0)
    assert read_card(out).quantization["settings"]["layer_bits"]["/fc1/Gemm"] == 4


@pytest.mark.parametrize(
    ("node", "module"),
    [
        ("/fc1/first/MatMul", "fc1.first"),
        ("/features/features.0/Conv", "features.0"),
        ("/classifier/classifier.6/Gemm", "classifier.6"),
        ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
        ("/conv2/Conv", "conv2"),
    ],
)
def test_nodes_map_back_to_their_modules(node, module) -> None:
    assert module_of(node) == module


def test_a_model_trained_off_the_grid_is_not_picked_up(trained_lenet, tmp_path) -> None:
    from compress.export.onnx.convert import ExportConfig
    from compress.models.data.datasets import DataConfig
    from compress.stages.export import run_export

    run_export(ModelRef(str(trained_lenet)), tmp_path, ExportConfig(), DataConfig(data_dir=MINI))
    model = onnx.load(str(tmp_path / "model.onnx"))
    assert grid_nodes(model, ["fc1", "conv2"], 32) == {}


def test_cli_int4_layer_that_has_no_weights_is_one_line(trained_lenet, tmp_path) -> None:
    out = tmp_path / "o"
    res = runner.invoke(
        app,
        ["distill", "-t", str(trained_lenet), "-s", "lenet5", "--out", str(out),
         "--data-dir", MINI, "--epochs", "1", "--int4-layers", "fc1,relu3"],
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "int4 layer 'relu3' is a ReLU, not a Linear or convolution layer" in " ".join(
        res.output.split()
    )
    assert "Traceback" not in res.output and not out.exists()


def test_layer_bits_still_override_a_grid_trained_layer(grid_student, tmp_path) -> None:
    from compress.models.data.datasets import DataConfig

    cfg = QuantizeConfig(max_drop=None, layer_bits={"/fc1/Gemm": 8})
    summary = run_quantize(ModelRef(str(grid_student)), tmp_path, cfg, DataConfig(data_dir=MINI))
    assert "fc1 (/fc1/Gemm) was trained on the int4 grid but is stored at 8 bits" in " ".join(
        n.text for n in summary.result.notes
    )
    assert not any(
        n.op_type == "MatMulNBits" for n in onnx.load(str(tmp_path / "model.onnx")).graph.node
    )


def test_int4_layers_rounded_after_training_get_a_hint(grid_student, tmp_path) -> None:
    from compress.models.data.datasets import DataConfig

    cfg = QuantizeConfig(max_drop=None, latency=False, layer_bits={"/fc2/Gemm": 4})
    summary = run_quantize(ModelRef(str(grid_student)), tmp_path, cfg, DataConfig(data_dir=MINI))
    hint = [
        n.text for n in summary.result.notes if n.text.startswith("int4 rounded after training")
    ]
    assert hint == [
        "int4 rounded after training: fc2; `compress distill --int4-layers fc2` (or a recipe's "
        "distill `int4_layers`) trains them on the int4 grid first, so quantizing them loses "
        "nothing"
    ]
