"""QAT: fake-quant insertion (fx), BN folding, calibration, export to QDQ with int8 weights, and
the ONNX model computing what the PyTorch fake-quant model computes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from compress.models.errors import UnsupportedError, UsageError
from compress.models.zoo.registry import attach_spec, create_model, spec_of
from compress.quantization.fake_quant import (
    ActFakeQuant,
    QuantWeight,
    calibrate,
    freeze,
    prepare_qat,
    quantizers,
)
from compress.quantization.qat import QATConfig, export_qdq, qat_finetune
from tests.conftest import MINI


def test_config_validation():
    with pytest.raises(UsageError, match="--epochs must be >= 0"):
        QATConfig(epochs=-1)
    with pytest.raises(UsageError, match="--lr must be > 0"):
        QATConfig(lr=0)


def test_prepare_inserts_and_shares_quantizers():
    gm = prepare_qat(create_model("lenet5"))
    code = gm.code
    # input, 4 relu outputs; conv2/fc1 reuse their producer's quantizer through pool/flatten
    assert len(quantizers(gm)) == 5
    assert code.count("self.act_fq_1(") == 2 and code.count("self.act_fq_2(") == 2
    layers = [m for m in gm.modules() if isinstance(m, QuantWeight)]
    assert len(layers) == 5
    assert spec_of(gm).name == "lenet5"


def test_batchnorm_is_folded_and_residual_adds_quantized():
    model = create_model("resnet18", input_size=32)
    gm = prepare_qat(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gm.modules())
    assert "add" in gm.code and len(quantizers(gm)) > 20
    x = torch.randn(2, *spec_of(model).input_shape)
    calibrate(gm, x.numpy())
    freeze(gm)
    with torch.no_grad():
        diff = (gm(x) - model.eval()(x)).abs().max()
    assert torch.isfinite(diff)


def test_untraceable_model_is_unsupported():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent control flow: fx can't trace it
                return self.fc(x)
            return -self.fc(x)

    model = Branchy()
    attach_spec(model, spec_of(create_model("lenet5")))
    with pytest.raises(UnsupportedError, match="trace"):
        prepare_qat(model)


def test_calibration_sets_finite_ranges(calib):
    gm = prepare_qat(create_model("lenet5"))
    calibrate(gm, calib)
    for fq in quantizers(gm):
        assert torch.isfinite(fq.scale) and fq.scale > 0
        assert 0 <= int(fq.zero_point) <= 255
    first = quantizers(gm)[0]  # normalized input: negative values, so a non-zero zero-point
    assert int(first.zero_point) > 0
    relu_fq: ActFakeQuant = quantizers(gm)[1]
    assert int(relu_fq.zero_point) == 0  # after ReLU the range starts at 0


def test_export_is_qdq_with_int8_weights_and_matches_pytorch(calib, tmp_path):
    gm = prepare_qat(create_model("lenet5"))
    calibrate(gm, calib)
    freeze(gm)
    path = tmp_path / "qat.onnx"
    folded = export_qdq(gm, path)
    assert folded == {"weights_folded": 5, "biases_quantized": 5}
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "ConvInteger" not in ops
    kinds = {i.data_type for i in model.graph.initializer if len(i.dims) >= 2}
    assert kinds == {onnx.TensorProto.INT8}  # every weight matrix stored as int8
    from compress.quantization import ortrun

    with torch.no_grad():
        ref = gm(torch.from_numpy(calib)).numpy()
    got = ortrun.run(ortrun.session(path), calib)
    assert np.mean(ref.argmax(1) == got.argmax(1)) >= 0.98
    assert np.abs(ref - got).max() < 0.05 * np.abs(ref).max()
    fp32_bytes = sum(p.numel() for p in create_model("lenet5").parameters()) * 4
    assert path.stat().st_size < 0.32 * fp32_bytes


def test_qat_finetune_trains_and_onnx_matches(bundle, calib, tmp_path):
    torch.manual_seed(0)
    model = create_model("lenet5")
    r = qat_finetune(model, bundle, QATConfig(epochs=1, lr=2e-3), calib, tmp_path / "q.onnx")
    assert len(r.fit["epochs"]) == 1 and r.quantizers == 5
    assert abs(r.onnx_val_top1 - r.fake_quant_val_top1) <= 0.02
    assert r.top1_agreement >= 0.98
    assert (tmp_path / "q.onnx").is_file()
    assert all(p.requires_grad for p in model.parameters())  # the input model is untouched


def test_cli_qat_on_a_pytorch_artifact(trained_lenet, tmp_path):
    from compress.cli.app import app

    out = tmp_path / "qat"
    res = CliRunner().invoke(
        app,
        [
            "quantize", "--model", str(trained_lenet), "--out", str(out), "--method", "qat",
            "--epochs", "1", "--lr", "1e-4", "--data-dir", MINI, "--samples", "64",
            "--no-latency", "--max-drop", "5",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    card = json.loads((out / "card.json").read_text())
    assert card["precision"] == "int8" and card["quantization"]["method"] == "qat"
    q = card["history"][-1]["result"]["quantized"]
    assert q["onnx_vs_fake_quant_top1_agreement"] >= 0.98
    onnx_in = CliRunner().invoke(
        app,
        ["quantize", "--model", str(out), "--out", str(tmp_path / "x"), "--method", "qat",
         "--data-dir", MINI],
    )  # fmt: skip
    assert onnx_in.exit_code == 2


@pytest.mark.parametrize(("reduce_range", "top"), [(True, 63), (False, 127)])
def test_weights_use_7_bits_where_the_int8_kernel_can_saturate(reduce_range, top):
    """On x86 without VNNI, onnxruntime's U8S8 kernel sums pairs in 16 bits and saturates with
    full-range weights: QAT then trains (and exports) 7-bit weights, as ptq-static does."""
    from compress.quantization.fake_quant import QuantWeight, prepare_qat

    qm = prepare_qat(create_model("lenet5"), reduce_range=reduce_range)
    layers = [m for m in qm.modules() if isinstance(m, QuantWeight)]
    assert layers
    for layer in layers:
        wq, _ = layer.quantized_params()
        codes = torch.round(wq / layer.w_scale.view(-1, *[1] * (wq.dim() - 1)))
        assert int(codes.abs().max()) == top
