"""int4 weights and per-layer bit widths: config checks, the opset and layer checks, what each
layer computes in (read from onnxruntime's optimized graph), --bits auto, and the CLI's one-line
errors with their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from compress.models.errors import UnsupportedError, UsageError
from compress.quantization import int4
from compress.quantization.calibration import calibration_inputs
from compress.quantization.quantize import QuantizeConfig, quantize
from tests.conftest import MINI, cli


@pytest.fixture(scope="module")
def lenet_onnx(trained_lenet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from compress.export.onnx.convert import ExportConfig
    from compress.models.data.datasets import DataConfig
    from compress.stages.common import ModelRef
    from compress.stages.export import run_export

    out = tmp_path_factory.mktemp("q4") / "lenet5-onnx"
    run_export(ModelRef(str(trained_lenet)), out, ExportConfig(), DataConfig(data_dir=MINI))
    return out


@pytest.fixture(scope="module")
def bundle():
    from compress.models.data.datasets import DataConfig, load_data
    from compress.models.zoo.registry import create_model, spec_of

    return load_data(
        DataConfig(dataset="fashion-mnist", data_dir=MINI), spec_of(create_model("lenet5"))
    )


def _q(src: Path, cfg: QuantizeConfig, bundle, out: Path, **replace_cfg):
    from dataclasses import replace

    cfg = replace(cfg, **replace_cfg) if replace_cfg else cfg
    calib = calibration_inputs(bundle.val, 64, seed=0)
    return quantize(src / "model.onnx", cfg, calib, out, val=bundle.loader("val"), num_classes=10)


# ----------------------------------------------------------------------------- config and checks


@pytest.mark.parametrize("bits", [3, "2", "16", "int4"])
def test_bit_widths_other_than_4_8_auto_are_refused(bits) -> None:
    with pytest.raises(UsageError, match="--weight-bits must be 4, 8 or auto"):
        QuantizeConfig(weight_bits=bits)


def test_bits_config_normalizes_and_validates() -> None:
    assert QuantizeConfig(weight_bits="4").weight_bits == 4
    assert QuantizeConfig(weight_bits="AUTO").weight_bits == "auto"
    assert not QuantizeConfig().lowers_bits and QuantizeConfig(layer_bits={"a": 4}).lowers_bits
    with pytest.raises(UsageError, match="ptq-static"):
        QuantizeConfig(weight_bits=4, method="fp16")
    with pytest.raises(UsageError, match="--target-size"):
        QuantizeConfig(weight_bits=4, target_size_kb=10)
    with pytest.raises(UsageError, match="--block-size"):
        QuantizeConfig(weight_bits=4, block_size=24)


def test_opset_below_21_or_beyond_the_runtime_is_refused() -> None:
    int4.check_opset(21)  # the installed runtime runs standard int4 at 21
    with pytest.raises(UnsupportedError, match="need opset >= 21"):
        int4.check_opset(17)
    with pytest.raises(UnsupportedError, match="can't run int4"):
        int4.check_opset(99)


def test_layer_that_cannot_take_int4_says_which(lenet_onnx: Path) -> None:
    model = onnx.load(str(lenet_onnx / "model.onnx"))
    layers = int4.weighted_layers(model)
    assert list(layers.values()) == ["Conv", "Conv", "Gemm", "Gemm", "Gemm"]
    pool = next(n.name for n in model.graph.node if n.op_type == "MaxPool")
    with pytest.raises(UnsupportedError, match=rf"{pool} can't take 4-bit.*MaxPool"):
        int4.check_layer_bits(model, {pool: 4})
    with pytest.raises(UsageError, match="bit widths are 4, 8 or 32"):
        int4.check_layer_bits(model, {next(iter(layers)): 6})
    with pytest.raises(UsageError, match="no node named"):
        int4.check_layer_bits(model, {"/nope": 4})


# ----------------------------------------------------------------------------- building


def test_int4_linear_computes_in_int4_and_conv_is_dequantized(lenet_onnx, bundle, tmp_path):
    cfg = QuantizeConfig(weight_bits=4, samples=64, max_drop=None, latency=False)
    r = _q(lenet_onnx, cfg, bundle, tmp_path / "q4.onnx")
    assert r.precision == "int4"
    compute = {row["layer"]: (row["op"], row["weight_bits"], row["compute"]) for row in r.layers}
    assert {c for op, _, c in compute.values() if op == "Gemm"} == {"int4"}
    assert {c for op, _, c in compute.values() if op == "Conv"} == {"dequantized at run time"}
    assert all(bits == 4 for _, bits, _ in compute.values())
    assert r.size_ratio < 0.22  # 4-bit weights plus scales
    assert r.quantized["top1_agreement"] >= 0.8
    assert any("dequantized at run time" in n.text for n in r.notes)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q4.onnx")).graph.node}
    assert "MatMulNBits" in ops and "Gemm" not in ops


def test_int4_weights_are_stored_two_per_byte(lenet_onnx, bundle, tmp_path):
    import numpy as np
    from onnx import TensorProto, numpy_helper

    cfg = QuantizeConfig(weight_bits=4, samples=64, max_drop=None, latency=False)
    _q(lenet_onnx, cfg, bundle, tmp_path / "q4.onnx")
    weights = [
        t
        for t in onnx.load(str(tmp_path / "q4.onnx")).graph.initializer
        if t.data_type == TensorProto.INT4
    ]
    assert weights  # the convolutions' weight-only int4
    for t in weights:
        n = int(np.prod(t.dims))
        assert len(t.raw_data) == (n + 1) // 2 and not t.int32_data
        assert numpy_helper.to_array(t).size == n


def test_mixed_layer_bits_int8_still_fuses(lenet_onnx, bundle, tmp_path):
    model = onnx.load(str(lenet_onnx / "model.onnx"))
    names = list(int4.weighted_layers(model))
    bits = {names[0]: 8, names[1]: 8, names[2]: 4, names[4]: 32}  # fc2 keeps the default 8
    cfg = QuantizeConfig(layer_bits=bits, samples=64, max_drop=None, latency=False)
    r = _q(lenet_onnx, cfg, bundle, tmp_path / "mixed.onnx")
    compute = {row["layer"]: row["compute"] for row in r.layers}
    assert r.precision == "mixed"
    assert compute[names[0]] == compute[names[1]] == compute[names[3]] == "int8"
    assert compute[names[2]] == "int4"
    assert compute[names[4]] == "fp32" and r.fallback_nodes == [names[4]]
    assert any(n.text.startswith("kept in fp32") and names[4] in n.text for n in r.notes)


def test_qoperator_mixed_model_is_smaller_and_reports_its_int8_weights(
    lenet_onnx, bundle, tmp_path
):
    names = list(int4.weighted_layers(onnx.load(str(lenet_onnx / "model.onnx"))))
    cfg = QuantizeConfig(layer_bits={names[2]: 4}, samples=64, max_drop=None, latency=False)
    qdq = _q(lenet_onnx, cfg, bundle, tmp_path / "qdq.onnx")
    qop = _q(lenet_onnx, cfg, bundle, tmp_path / "qop.onnx", format="qoperator")
    rows = {row["layer"]: row for row in qop.layers}
    assert {rows[n]["weight_bits"] for n in names if n != names[2]} == {8}
    assert {rows[n]["compute"] for n in names if n != names[2]} == {"int8"}
    assert (rows[names[2]]["weight_bits"], rows[names[2]]["compute"]) == (4, "int4")
    assert (tmp_path / "qop.onnx").stat().st_size < (tmp_path / "qdq.onnx").stat().st_size
    assert abs(qop.quantized["val_top1"] - qdq.quantized["val_top1"]) <= 0.02


def test_short_names_shrinks_the_file_not_the_result(lenet_onnx, tmp_path):
    import shutil

    import numpy as np

    from compress.quantization import ortrun

    src, dst = lenet_onnx / "model.onnx", tmp_path / "short.onnx"
    shutil.copyfile(src, dst)
    assert int4.short_names(dst) > 0
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    ref, out = ortrun.run(ortrun.session(src), x), ortrun.run(ortrun.session(dst), x)
    assert np.array_equal(ref, out)
    layers = int4.weighted_layers(onnx.load(str(dst)))
    assert list(layers) == list(int4.weighted_layers(onnx.load(str(src))))  # names kept


def test_bits_auto_lists_each_layer_and_meets_the_budget(lenet_onnx, bundle, tmp_path):
    cfg = QuantizeConfig(weight_bits="auto", samples=64, max_drop=2.0, latency=False)
    r = _q(lenet_onnx, cfg, bundle, tmp_path / "auto.onnx")
    assert len(r.sensitivity) == 5
    assert {row["chosen_bits"] for row in r.sensitivity} <= {4, 8, 32}
    assert all({"int8_drop_pts", "int4_drop_pts"} <= set(row) for row in r.sensitivity)
    assert r.budget_met and r.drop_pts is not None and r.drop_pts <= 2.0
    assert r.size_ratio < 1.0  # something was lowered


def test_target_size_stops_lowering_once_the_file_fits(lenet_onnx, bundle, tmp_path):
    big = QuantizeConfig(weight_bits="auto", target_size_kb=10_000, samples=64, latency=False)
    r = _q(lenet_onnx, big, bundle, tmp_path / "big.onnx")
    assert r.precision == "fp32" and {row["chosen_bits"] for row in r.sensitivity} == {32}
    assert any(n.text.startswith("kept in fp32") for n in r.notes)  # never silent
    small = QuantizeConfig(weight_bits="auto", target_size_kb=150, samples=64, latency=False)
    s = _q(lenet_onnx, small, bundle, tmp_path / "small.onnx", max_drop=None)
    assert s.quantized["bytes"] < r.quantized["bytes"]
    assert any(row["chosen_bits"] < 32 for row in s.sensitivity)


def test_bits_auto_needs_accuracy(lenet_onnx, bundle, tmp_path):
    calib = calibration_inputs(bundle.val, 64, seed=0)
    with pytest.raises(UsageError, match="trained model"):
        quantize(
            lenet_onnx / "model.onnx",
            QuantizeConfig(weight_bits="auto"),
            calib,
            tmp_path / "x.onnx",
        )


# ----------------------------------------------------------------------------- CLI


def test_cli_int4_reports_per_layer(trained_lenet, tmp_path):
    out = tmp_path / "int4"
    res = cli(
        "quantize", "--model", str(trained_lenet), "--out", str(out), "--data-dir", MINI,
        "--weight-bits", "4", "--samples", "64", "--max-drop", "100", "--no-latency",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "per layer" in res.output and "computes in int4" in res.output
    card = json.loads((out / "card.json").read_text())
    assert card["precision"] == "int4"
    layers = card["quantization"]["layers"]
    assert [r["compute"] for r in layers].count("int4") == 3


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("--weight-bits", "3"), 2, "--weight-bits must be 4, 8 or auto"),
        (("--weight-bits", "4", "--int4-opset", "17"), 4, "need opset >= 21"),
        (("--weight-bits", "4", "--layer-bits", "/pool1/MaxPool=4"), 4, "MaxPool"),
        (("--layer-bits", "fc1"), 2, "NODE=BITS"),
    ],
)
def test_cli_bad_bits_input_is_one_line(lenet_onnx, tmp_path, args, code, text):
    out = tmp_path / "o"
    res = cli("quantize", "--model", str(lenet_onnx), "--out", str(out), "--data-dir", MINI, *args)
    assert res.exit_code == code, res.output
    assert text in res.output and "Traceback" not in res.output
    assert not out.exists()
