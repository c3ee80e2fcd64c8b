"""Doctor findings on crafted graphs: QDQ, ConvInteger, fp32 islands, odd widths, shapes, fp16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from compress.cli.app import app
from compress.export.doctor.diagnose import diagnose
from compress.export.onnx.convert import ExportConfig, export_onnx
from compress.models.errors import InvalidInputError, UsageError
from compress.models.zoo.registry import create_model


def _calibration(n: int = 4):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.it = iter(
                [{"input": rng.standard_normal((1, 1, 28, 28), dtype=np.float32)} for _ in range(n)]
            )

        def get_next(self):
            return next(self.it, None)

    return Reader()


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """LeNet-5 fp32, QDQ (static), QDQ with conv2 left fp32, ConvInteger (dynamic), fp16."""
    from onnxruntime.quantization import QuantFormat, quantize_dynamic, quantize_static

    root = tmp_path_factory.mktemp("doctor")
    model = create_model("lenet5")
    export_onnx(model, root / "fp32.onnx", ExportConfig(dynamic_batch=False))
    export_onnx(model, root / "fp16.onnx", ExportConfig(precision="fp16"))
    quantize_static(
        str(root / "fp32.onnx"),
        str(root / "qdq.onnx"),
        _calibration(),
        quant_format=QuantFormat.QDQ,
    )
    quantize_static(
        str(root / "fp32.onnx"),
        str(root / "island.onnx"),
        _calibration(),
        quant_format=QuantFormat.QDQ,
        nodes_to_exclude=["/conv2/Conv"],
    )
    quantize_dynamic(
        str(root / "fp32.onnx"), str(root / "dyn.onnx"), op_types_to_quantize=["Conv", "MatMul"]
    )
    return {p.stem: p for p in root.glob("*.onnx")}


def _codes(d) -> dict[str, str]:
    return {f.code: f.severity for f in d.findings}


def test_qdq_model_isolated(graphs: dict[str, Path]) -> None:
    d = diagnose(graphs["qdq"], isolate=True)  # the real path: session facts from a child
    assert d.quantized and d.op_counts["QuantizeLinear"] > 0
    assert d.session["optimized_ops"].get("QLinearConv", 0) == 2  # both convs fused to int8
    assert d.session["inner_qdq"] == 0
    codes = _codes(d)
    assert codes["qdq"] == "info" and "unfused_qdq" not in codes and "fp32_islands" not in codes
    assert codes["ep_assignment"] == "ok" and "hotspots" in codes
    qdq = d.by_code("qdq")[0]
    assert "QuantizeLinear" in qdq.detail and "quant_pre_process" in qdq.suggestion
    assert qdq.suggestion.startswith("nothing to do")  # fully fused: no advice to redo it


def test_fp32_island_and_unfused_qdq(graphs: dict[str, Path]) -> None:
    d = diagnose(graphs["island"], isolate=False)
    islands = d.by_code("fp32_islands")
    assert islands and "/conv2/Conv" in islands[0].detail
    unfused = d.by_code("unfused_qdq")
    assert unfused and unfused[0].severity == "warning" and unfused[0].suggestion


def test_conv_integer(graphs: dict[str, Path]) -> None:
    d = diagnose(graphs["dyn"], isolate=False)
    f = d.by_code("conv_integer")
    assert f and f[0].severity == "problem" and "static" in f[0].suggestion
    assert d.op_counts["ConvInteger"] == 2


def test_int8_without_dot_product_advises_reduce_range(
    graphs: dict[str, Path], monkeypatch
) -> None:
    monkeypatch.setattr("compress.export.doctor.checks.has_int8_dot_product", lambda: False)
    f = diagnose(graphs["qdq"], isolate=False).by_code("cpu_int8")[0]
    assert f.severity == "warning" and "reduce_range" in f.suggestion
    monkeypatch.setattr("compress.export.doctor.checks.has_int8_dot_product", lambda: True)
    assert diagnose(graphs["qdq"], isolate=False).by_code("cpu_int8")[0].severity == "info"


def test_fp32_lenet_widths_and_static_shape(graphs: dict[str, Path]) -> None:
    d = diagnose(graphs["fp32"], isolate=False)
    codes = _codes(d)
    assert not d.quantized and "qdq" not in codes and "conv_integer" not in codes
    ch = d.by_code("channels")[0]
    assert "out 6" in ch.detail and "in 6" in ch.detail and "8" in ch.suggestion
    assert codes["dynamic_shapes"] == "ok"


def test_fp16_on_cpu(graphs: dict[str, Path]) -> None:
    d = diagnose(graphs["fp16"], isolate=False)
    assert _codes(d)["fp16_on_cpu"] == "warning"
    assert _codes(d)["dynamic_shapes"] == "info"  # dynamic batch only


def test_dynamic_spatial_dims_crafted(tmp_path: Path) -> None:
    w = helper.make_tensor(
        "w", TensorProto.FLOAT, [12, 3, 3, 3], np.zeros(12 * 27, np.float32).tolist()
    )
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 12, "H", "W"])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "dyn.onnx"))
    d = diagnose(tmp_path / "dyn.onnx", isolate=False)
    codes = _codes(d)
    assert codes["dynamic_shapes"] == "warning"
    assert "out 12" in d.by_code("channels")[0].detail  # in 3 is the image: not flagged
    assert "in 3" not in d.by_code("channels")[0].detail


def test_bad_input(tmp_path: Path) -> None:
    (tmp_path / "x.onnx").write_bytes(b"\x00\x01 not onnx")
    with pytest.raises(InvalidInputError, match="not a valid ONNX file"):
        diagnose(tmp_path / "x.onnx")
    with pytest.raises(UsageError, match="doctor diagnoses onnxruntime runtimes"):
        diagnose(tmp_path / "x.onnx", runtime="torch")


def test_cli_doctor_on_zoo_model() -> None:
    r = CliRunner().invoke(app, ["doctor", "-m", "lenet5", "--weights", "random"])
    assert r.exit_code == 0, r.output
    assert "diagnosed its ONNX export" in r.output and "multiples of 8" in r.output
