"""int8/fp16 quantization: config checks, ISA defaults, calibration checks, static/dynamic/fp16
on a trained LeNet-5, accuracy-aware fallback, the quality gate, and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from compress.models.errors import InvalidInputError, QualityGateError, UnsupportedError, UsageError
from compress.quantization import graph as qgraph
from compress.quantization.calibration import calibration_inputs, check_calibration
from compress.quantization.fallback import fallback_search, steps
from compress.quantization.isa import detect_isa, int8_candidates, int8_defaults
from compress.quantization.quantize import QuantizeConfig, quantize
from tests.conftest import MINI, cli

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lenet_onnx(trained_lenet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained LeNet-5 exported to ONNX (parity-gated) by the export stage."""
    from compress.export.onnx.convert import ExportConfig
    from compress.models.data.datasets import DataConfig
    from compress.stages.common import ModelRef
    from compress.stages.export import run_export

    out = tmp_path_factory.mktemp("q") / "lenet5-onnx"
    data = DataConfig(dataset="fashion-mnist", data_dir=MINI)
    run_export(ModelRef(str(trained_lenet)), out, ExportConfig(), data)
    return out


def _run(src: Path, cfg: QuantizeConfig, calib, bundle, out: Path):
    return quantize(src, cfg, calib, out, val=bundle.loader("val"), num_classes=10)


# ----------------------------------------------------------------------------- config and ISA


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"method": "int4"}, "--method must be one of"),
        ({"calibration": "mse"}, "--calibration must be one of"),
        ({"format": "qlinear"}, "--format must be one of"),
        ({"reduce_range": "maybe"}, "--reduce-range must be auto, on or off"),
        ({"samples": 0}, "--samples must be >= 1"),
        ({"max_drop": -1.0}, "--max-drop must be >= 0"),
        ({"activation_type": "fp8"}, "--activation-type must be one of"),
        ({"max_fallback": -1}, "--max-fallback must be >= 0"),
        ({"method": "ptq-dynamic", "tune": True}, "--tune applies to ptq-static"),
        ({"amp": "fp8"}, "--amp must be one of"),
    ],
)
def test_config_rejects_bad_values(kw, match):
    with pytest.raises(UsageError, match=match):
        QuantizeConfig(**kw)


def test_config_parses_reduce_range():
    assert QuantizeConfig(reduce_range="on").reduce_range is True
    assert QuantizeConfig(reduce_range="off").reduce_range is False
    assert QuantizeConfig().reduce_range == "auto"


def test_isa_defaults_follow_the_instruction_set():
    vnni = detect_isa(frozenset({"avx2", "avx512f", "avx512_vnni"}), "x86_64")
    avx2 = detect_isa(frozenset({"avx2", "fma"}), "x86_64")
    arm = detect_isa(frozenset({"asimd", "asimddp"}), "arm64")
    assert vnni.vnni and not avx2.vnni and arm.arm_dot
    d = int8_defaults(vnni)
    assert (d.activation_type, d.weight_type, d.reduce_range) == ("uint8", "int8", False)
    assert int8_defaults(avx2).reduce_range is True
    assert "saturate" in int8_defaults(avx2).reason
    assert int8_defaults(arm).label == "S8S8"
    cands = int8_candidates(avx2)
    assert cands[0] == int8_defaults(avx2)
    keys = {(c.activation_type, c.weight_type, c.reduce_range) for c in cands}
    assert len(keys) == len(cands) >= 3


# ----------------------------------------------------------------------------- calibration


def test_calibration_subset_is_deterministic(bundle):
    a = calibration_inputs(bundle.val, 32, seed=0)
    b = calibration_inputs(bundle.val, 32, seed=0)
    c = calibration_inputs(bundle.val, 32, seed=1)
    assert a.shape == (32, 1, 28, 28) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_calibration_checks():
    shape = ("batch", 1, 28, 28)
    good = np.random.default_rng(0).normal(size=(32, 1, 28, 28)).astype(np.float32)
    check_calibration(good, shape)
    with pytest.raises(InvalidInputError, match="empty"):
        check_calibration(np.zeros((0, 1, 28, 28), np.float32), shape)
    with pytest.raises(InvalidInputError, match="axis 2"):
        check_calibration(good[:, :, :20], shape)
    with pytest.raises(InvalidInputError, match="rank"):
        check_calibration(good[:, 0], shape)
    with pytest.raises(InvalidInputError, match="only 8"):
        check_calibration(good[:8], shape)
    bad = good.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        check_calibration(bad, shape)
    with pytest.raises(InvalidInputError, match="constant"):
        check_calibration(np.ones_like(good), shape)


def test_empty_validation_split_is_refused():
    with pytest.raises(InvalidInputError, match="empty"):
        calibration_inputs([], 10)


# ----------------------------------------------------------------------------- static / dynamic


def test_static_int8_is_small_and_accurate(lenet_onnx, calib, bundle, tmp_path):
    src = lenet_onnx / "model.onnx"
    r = _run(src, QuantizeConfig(latency=False), calib, bundle, tmp_path / "q.onnx")
    assert r.precision == "int8" and r.settings["format"] == "qdq"
    assert r.size_ratio <= 0.30
    assert r.budget_met and r.drop_pts is not None and r.drop_pts <= 1.0
    assert r.settings["per_channel"] is True and r.settings["samples"] == 64
    assert r.isa["name"] in r.reason or "user" in r.reason
    ops = qgraph.inspect(tmp_path / "q.onnx").op_counts
    assert ops.get("QuantizeLinear", 0) > 0 and "ConvInteger" not in ops
    assert r.quantized["top1_agreement"] >= 0.9
    model = onnx.load(str(tmp_path / "q.onnx"))
    assert any(i.data_type == onnx.TensorProto.INT8 for i in model.graph.initializer)


def test_latency_is_measured_and_reported_plainly(lenet_onnx, calib, bundle, tmp_path):
    cfg = QuantizeConfig(format="qoperator", max_drop=None)
    r = quantize(lenet_onnx / "model.onnx", cfg, calib, tmp_path / "q.onnx")
    assert set(r.fp32["latency_ms"]) == set(r.quantized["latency_ms"]) == {1, 32}
    assert len(r.notes) == 2
    for b in (1, 32):
        slower = r.quantized["latency_ms"][b] >= r.fp32["latency_ms"][b]
        note = next(n for n in r.notes if f"batch {b} " in n.text)
        assert ("NOT faster" in note.text) == slower == (note.severity == "warning")
    assert r.fp32["val_top1"] is None  # no validation data given: no gate
    assert "QLinearConv" in qgraph.inspect(tmp_path / "q.onnx").op_counts


def test_dynamic_quantizes_only_linear_layers(lenet_onnx, calib, bundle, tmp_path):
    cfg = QuantizeConfig(method="ptq-dynamic", latency=False)
    r = _run(lenet_onnx / "model.onnx", cfg, calib, bundle, tmp_path / "d.onnx")
    ops = qgraph.inspect(tmp_path / "d.onnx").op_counts
    assert "ConvInteger" not in ops and ops["Conv"] == 2
    assert ops.get("MatMulInteger", 0) + ops.get("DynamicQuantizeMatMul", 0) >= 3
    assert r.budget_met and r.size_ratio < 0.35


def test_keep_float_nodes_stay_float(lenet_onnx, calib, bundle, tmp_path):
    cfg = QuantizeConfig(keep_float=("/conv1/Conv",), latency=False)
    r = _run(lenet_onnx / "model.onnx", cfg, calib, bundle, tmp_path / "k.onnx")
    assert r.fallback_nodes == ["/conv1/Conv"]
    model = onnx.load(str(tmp_path / "k.onnx"))
    conv1 = next(n for n in model.graph.node if n.name == "/conv1/Conv")
    weight = next(i for i in model.graph.initializer if i.name == conv1.input[1])
    assert weight.data_type == onnx.TensorProto.FLOAT
    with pytest.raises(UsageError, match="no node named /nope"):
        quantize(
            lenet_onnx / "model.onnx",
            QuantizeConfig(keep_float=("/nope",)),
            calib,
            tmp_path / "x.onnx",
        )


def test_compact_drops_zero_bias_zero_points(lenet_onnx, calib, tmp_path):
    quantize(lenet_onnx / "model.onnx", QuantizeConfig(latency=False), calib, tmp_path / "q.onnx")
    model = onnx.load(str(tmp_path / "q.onnx"))
    assert not model.graph.value_info
    int32 = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT32}
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int32]
    assert dq and all(len(n.input) == 2 for n in dq)


def _conv_only_onnx(path: Path) -> Path:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    torch.onnx.export(
        net.eval(),
        (torch.zeros(1, 1, 28, 28),),
        str(path),
        dynamo=False,
        input_names=["input"],
        dynamic_axes={"input": {0: "batch"}},
    )
    return path


def test_dynamic_on_a_conv_only_model_says_which_ops(calib, tmp_path):
    src = _conv_only_onnx(tmp_path / "conv.onnx")
    with pytest.raises(UnsupportedError, match=r"no MatMul/Gemm.*Conv x1"):
        quantize(src, QuantizeConfig(method="ptq-dynamic"), calib, tmp_path / "x.onnx")


def test_wrong_shaped_calibration_is_refused_before_work(lenet_onnx, tmp_path):
    x = np.random.default_rng(0).normal(size=(64, 3, 28, 28)).astype(np.float32)
    with pytest.raises(InvalidInputError, match="axis 1"):
        quantize(lenet_onnx / "model.onnx", QuantizeConfig(), x, tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()


def test_nan_weights_are_refused(lenet_onnx, calib, tmp_path):
    model = onnx.load(str(lenet_onnx / "model.onnx"))
    w = model.graph.initializer[0]
    arr = numpy_helper.to_array(w).copy()
    arr.flat[0] = np.nan
    w.CopyFrom(numpy_helper.from_array(arr, w.name))
    onnx.save(model, str(tmp_path / "nan.onnx"))
    with pytest.raises(InvalidInputError, match="NaN"):
        quantize(tmp_path / "nan.onnx", QuantizeConfig(), calib, tmp_path / "q.onnx")


def test_zero_scales_are_caught(lenet_onnx, calib, tmp_path):
    quantize(lenet_onnx / "model.onnx", QuantizeConfig(latency=False), calib, tmp_path / "q.onnx")
    model = onnx.load(str(tmp_path / "q.onnx"))
    for init in model.graph.initializer:
        if init.name.endswith("_scale") and "weight" in init.name:
            arr = numpy_helper.to_array(init).copy()
            arr.flat[0] = 0.0
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
            break
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(InvalidInputError, match="zero or non-finite scales"):
        qgraph.check_quantized(tmp_path / "bad.onnx")


# ----------------------------------------------------------------------------- fallback


def test_fallback_steps_and_search():
    assert steps(8) == [1, 2, 3, 4, 6, 8]
    assert steps(1) == [1] and steps(0) == []
    built: list[list[str]] = []

    def build(excl: list[str]) -> Path:
        built.append(list(excl))
        return Path(f"/m{len(excl)}")

    # accuracy recovers once the two worst nodes are float
    def score(p: Path) -> float:
        return 0.90 if int(str(p)[2:]) >= 2 else 0.80

    r = fallback_search(build, ["a", "b", "c"], score, 0.905, max_drop=1.0, limit=3)
    assert r.met and r.excluded == ["a", "b"] and built == [["a"], ["a", "b"]]
    r = fallback_search(build, ["a", "b", "c"], lambda p: 0.5, 0.9, max_drop=1.0, limit=2)
    assert not r.met and len(r.attempts) == 2


def test_fallback_recovers_accuracy_from_bad_ranges(lenet_onnx, calib, bundle, tmp_path):
    # Calibrating on shrunken inputs gives ranges far too small: int8 saturates and top-1
    # collapses; keeping the most sensitive nodes in float must bring it back within budget.
    cfg = QuantizeConfig(max_drop=1.0, max_fallback=5, latency=False)
    r = _run(lenet_onnx / "model.onnx", cfg, calib * 0.02, bundle, tmp_path / "q.onnx")
    assert r.candidates[0]["drop_pts"] > 1.0
    assert len(r.sensitivity) == 5 and r.fallback_nodes
    assert r.sensitivity[0]["sqnr_db"] <= r.sensitivity[-1]["sqnr_db"]
    assert r.budget_met and r.drop_pts <= 1.0
    assert r.fallback_nodes == [s["node"] for s in r.sensitivity[: len(r.fallback_nodes)]]


# ----------------------------------------------------------------------------- fp16


def test_fp16_keeps_fp32_io_and_passes_parity(lenet_onnx, calib, bundle, tmp_path):
    cfg = QuantizeConfig(method="fp16", latency=False)
    r = _run(lenet_onnx / "model.onnx", cfg, calib, bundle, tmp_path / "h.onnx")
    model = onnx.load(str(tmp_path / "h.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert r.quantized["parity"]["passed"] and r.budget_met
    assert 0.45 < r.size_ratio < 0.6


def test_mixed_fp16_keeps_sensitive_nodes_fp32_until_the_gate_holds(
    lenet_onnx, calib, tmp_path, monkeypatch
):
    from compress.export.onnx import parity

    strict = replace(parity.TOLERANCES["fp16"], atol=1e-9)  # only (nearly) fp32 nodes pass
    monkeypatch.setitem(parity.TOLERANCES, "fp16", strict)
    plain = quantize(
        lenet_onnx / "model.onnx",
        QuantizeConfig(method="fp16", latency=False, max_drop=None),
        calib,
        tmp_path / "h.onnx",
    )
    assert not plain.quantized["parity"]["passed"] and not plain.budget_met
    cfg = QuantizeConfig(method="fp16", mixed=True, max_fallback=32, latency=False, max_drop=None)
    r = quantize(lenet_onnx / "model.onnx", cfg, calib, tmp_path / "m.onnx")
    assert r.sensitivity and r.fallback_nodes
    assert r.quantized["parity"]["passed"] and r.budget_met


# ----------------------------------------------------------------------------- stage and CLI


def test_cli_quantizes_a_pytorch_artifact(trained_lenet, tmp_path):
    out = tmp_path / "int8"
    res = cli(
        "quantize", "--model", str(trained_lenet), "--out", str(out), "--data-dir", MINI,
        "--samples", "64", "--no-latency", "--json", str(tmp_path / "q.json"),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    card = json.loads((out / "card.json").read_text())
    assert card["kind"] == "onnx" and card["precision"] == "int8"
    stages = [h["stage"] for h in card["history"]]
    assert stages[-3:] == ["train", "export", "quantize"]
    assert card["gates"]["accuracy"]["passed"] is True
    assert card["quantization"]["why"] and card["quantization"]["size_ratio"] < 0.31
    assert card["metrics"]["test"]["top1"] > 0.3
    summary = json.loads((tmp_path / "q.json").read_text())
    assert summary["test"]["drop_pts"] <= 3.0
    ev = cli("eval", "--model", str(out), "--data-dir", MINI)
    assert ev.exit_code == 0, ev.output
    again = cli("quantize", "--model", str(trained_lenet), "--out", str(out), "--data-dir", MINI)
    assert again.exit_code == 2 and "exists" in again.output
    int8_again = cli(
        "quantize", "--model", str(out), "--out", str(tmp_path / "x"), "--data-dir", MINI
    )
    assert int8_again.exit_code == 2 and "already int8" in int8_again.output


def test_cli_bad_calibration_count_exits_3(lenet_onnx, tmp_path):
    res = cli(
        "quantize", "--model", str(lenet_onnx), "--out", str(tmp_path / "o"), "--data-dir", MINI,
        "--samples", "5",
    )  # fmt: skip
    assert res.exit_code == 3 and "calibration samples" in res.output
    assert not (tmp_path / "o").exists()


def test_missed_budget_keeps_the_artifact_and_exits_5(lenet_onnx, tmp_path, monkeypatch):
    import compress.stages.quantize as stage

    real = stage.calibration_inputs
    monkeypatch.setattr(stage, "calibration_inputs", lambda *a, **k: real(*a, **k) * 0.02)
    out = tmp_path / "bad"
    res = cli(
        "quantize", "--model", str(lenet_onnx), "--out", str(out), "--data-dir", MINI,
        "--samples", "64", "--max-fallback", "0", "--no-latency",
    )  # fmt: skip
    assert res.exit_code == 5, res.output
    card = json.loads((out / "card.json").read_text())
    assert card["gates"]["accuracy"]["passed"] is False
    assert card["gates"]["accuracy"]["drop_pts"] > 1.0
    with pytest.raises(QualityGateError, match="int8 accuracy gate failed"):
        from compress.models.data.datasets import DataConfig
        from compress.stages.common import ModelRef

        stage.run_quantize(
            ModelRef(str(lenet_onnx)),
            out,
            QuantizeConfig(samples=64, max_fallback=0, latency=False),
            DataConfig(dataset="fashion-mnist", data_dir=MINI),
            overwrite=True,
        )
