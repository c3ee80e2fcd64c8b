"""ONNX export: parity for every zoo model, the export stage, ONNX artifacts, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from compress.cli.app import app
from compress.export.onnx.convert import ExportConfig, export_onnx
from compress.export.onnx.file import external_data_path, read_metadata
from compress.export.onnx.parity import ParityReport, compare
from compress.export.runtimes.probe import interpret_probe, probe_in_subprocess
from compress.export.runtimes.runner import (
    check_runtime,
    create_session,
    inspect_onnx,
    onnx_artifact_runner,
    run_batched,
    torch_runner,
)
from compress.models.artifacts.artifact import ONNX, new_card, read_card, save_model
from compress.models.data.datasets import DataConfig, synthetic_batch
from compress.models.errors import (
    InvalidInputError,
    QualityGateError,
    UnsupportedError,
    UsageError,
)
from compress.models.zoo.registry import create_model
from compress.stages.common import ModelRef
from compress.stages.evaluate import run_eval
from compress.stages.export import run_export
from tests.conftest import FASHION_MINI

MINI = DataConfig(dataset="fashion-mnist", data_dir=str(FASHION_MINI))
runner = CliRunner()

# Every zoo model at a small input: (name, in_channels, input_size).
ZOO_SMALL = [
    ("lenet5", 1, 28),
    ("alexnet", 1, 28),
    ("vgg16", 1, 28),
    ("vgg16_bn", 1, 28),
    ("resnet18", 3, 32),
    ("resnet50", 3, 32),
]


def _parity_of(model: torch.nn.Module, path: Path, batch: int = 4, precision: str = "fp32"):
    x = synthetic_batch(model.spec, batch, seed=1).numpy()
    ref = torch_runner(model).run(x)
    out = create_session(path, "ort-cpu").run(x)
    return compare(ref, out, precision)


@pytest.mark.parametrize(("name", "channels", "size"), ZOO_SMALL)
def test_parity_every_zoo_model(tmp_path: Path, name: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, in_channels=channels, input_size=size).eval()
    res = export_onnx(model, tmp_path / "m.onnx")
    assert res.opset == 17 and res.bytes > 0 and not res.external_data
    report = _parity_of(model, tmp_path / "m.onnx")
    assert report.passed, report.summary()
    assert report.max_abs_diff <= 1e-4
    info = inspect_onnx(tmp_path / "m.onnx")
    assert info.input_shape == ["batch", channels, size, size]
    # Shared constants are inlined: an Identity in front of a bias blocks QDQ fusion later.
    assert "Identity" not in {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}


def test_compare_gates() -> None:
    ref = np.array([[1.0, 2.0, 3.0], [3.0, 0.0, 0.0]])
    assert compare(ref, ref + 5e-5).passed
    bad = compare(ref, ref + 1e-2)
    assert not bad.passed and "outside atol" in bad.failures[0]
    assert compare(ref, ref + 9e-3, "fp16").passed  # fp16: max abs 1e-2 and cosine
    flipped = ref.copy()
    flipped[0] = [1.0, 3.0, 2.0]  # top-1 changes, far beyond any tie
    r = compare(ref, flipped, "fp16")
    assert not r.passed and r.min_cosine < 0.999
    nan = compare(ref, ref * np.nan)
    assert not nan.passed and "NaN" in nan.failures[0]
    # A near-tie whose argmax flips inside the tolerance is not a disagreement.
    tie = np.array([[1.0, 1.00001]])
    t = compare(tie, np.array([[1.00002, 1.00001]]))
    assert t.top1_agreement == 0.0 and t.top1_agreement_tie_aware == 1.0 and t.passed
    with pytest.raises(UsageError, match="no parity gate for precision 'int3'"):
        compare(ref, ref, "int3")


def test_run_export_untrained_writes_artifact(tmp_path: Path) -> None:
    out = tmp_path / "onnx"
    summary = run_export(ModelRef("lenet5", weights="random"), out, ExportConfig(), MINI)
    card = read_card(out)
    assert card.kind == "onnx" and not card.trained
    assert card.gates["parity"]["passed"] and card.gates["parity"]["inputs"] == "random"
    assert [h["stage"] for h in card.history] == ["create", "export"]
    assert ONNX in card.files and summary.parity["max_abs_diff"] <= 1e-4
    assert summary.export["path"] == str(out / ONNX)
    meta = read_metadata(out / ONNX)
    assert meta["compress.architecture"] == "lenet5"
    assert json.loads(meta["compress.spec"])["input_size"] == 28
    onnx.checker.check_model(str(out / ONNX), full_check=True)


def test_onnx_input_is_the_one_answer_to_is_it_onnx(tmp_path: Path) -> None:
    """An ONNX artifact (file + card) or a bare .onnx file is ONNX; nothing else is."""
    import shutil

    from compress.models.artifacts.resolve import onnx_input
    from tests.conftest import USER_MODEL

    onnx_art = tmp_path / "onnx"
    run_export(ModelRef("lenet5", weights="random"), onnx_art, ExportConfig(), MINI)
    found = onnx_input(onnx_art)
    assert found is not None and found.file == onnx_art / ONNX
    assert found.card is not None and found.card.kind == "onnx"
    bare = tmp_path / "bare.onnx"
    shutil.copy(onnx_art / ONNX, bare)
    assert onnx_input(str(bare)) == type(found)(bare, None)
    model = create_model("lenet5")
    torch_art = save_model(model, tmp_path / "pt", new_card(model))
    for ref in (torch_art, "lenet5", USER_MODEL, tmp_path / "gone.onnx", tmp_path):
        assert onnx_input(ref) is None, ref


def test_trained_artifact_parity_on_real_data_and_eval(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("lenet5")
    card = new_card(
        model, trained=True, dataset={"dataset": "fashion-mnist", "data_dir": MINI.data_dir}
    )
    card.metrics = {"test": {"top1": 0.5}}
    save_model(model, tmp_path / "pt", card)
    run_export(
        ModelRef(str(tmp_path / "pt")), tmp_path / "ox", ExportConfig(parity_samples=40), None
    )
    ocard = read_card(tmp_path / "ox")
    parity = ocard.gates["parity"]
    assert parity["inputs"] == "val" and parity["samples"] == 40 and parity["passed"]
    assert ocard.trained and ocard.metrics["test"]["top1"] == 0.5
    # ONNX artifacts are evaluated on the same data as PyTorch ones, with the same result.
    pt = run_eval(ModelRef(str(tmp_path / "pt")), MINI, split="test", limit=100)
    ox = run_eval(ModelRef(str(tmp_path / "ox")), MINI, split="test", limit=100)
    assert ox.result.samples == pt.result.samples == 100
    assert ox.result.top1 == pt.result.top1
    assert ox.result.loss == pytest.approx(pt.result.loss, abs=1e-4)


def test_fp16_static_and_external_data(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("lenet5").eval()
    fp32 = export_onnx(model, tmp_path / "a.onnx")
    fp16 = export_onnx(model, tmp_path / "h.onnx", ExportConfig(precision="fp16"))
    assert fp16.bytes < 0.6 * fp32.bytes
    report = _parity_of(model, tmp_path / "h.onnx", precision="fp16")
    assert report.passed and report.min_cosine >= 0.999
    # Static batch: the predictor still takes any batch size (padding the tail).
    export_onnx(model, tmp_path / "s.onnx", ExportConfig(dynamic_batch=False))
    sess = create_session(tmp_path / "s.onnx")
    assert sess.input_shape[0] == 1
    x = synthetic_batch(model.spec, 5).numpy()
    assert np.allclose(run_batched(sess, x), torch_runner(model).run(x), atol=1e-4)
    # External data when the weights pass the threshold (2 GB in real use).
    ext = export_onnx(model, tmp_path / "e.onnx", ExportConfig(external_data_threshold=1000))
    assert ext.external_data and external_data_path(tmp_path / "e.onnx").stat().st_size > 200_000
    assert (tmp_path / "e.onnx").stat().st_size < 50_000
    assert _parity_of(model, tmp_path / "e.onnx").passed


def test_optimize_rechecks_parity(tmp_path: Path) -> None:
    cfg = ExportConfig(optimize="extended", parity_samples=8)
    run_export(ModelRef("lenet5", weights="random"), tmp_path / "o", cfg, MINI)
    card = read_card(tmp_path / "o")
    assert card.gates["parity_unoptimized"]["passed"] and card.gates["parity"]["passed"]
    ops = {n.op_type for n in onnx.load(str(tmp_path / "o" / ONNX)).graph.node}
    assert "FusedConv" in ops  # onnxruntime's fused op: the file really is the optimized graph
    assert read_metadata(tmp_path / "o" / ONNX)["compress.architecture"] == "lenet5"


@pytest.mark.slow  # the torch.export-based exporter takes ~5 s even for LeNet-5
def test_dynamo_exporter(tmp_path: Path) -> None:
    model = create_model("lenet5").eval()
    res = export_onnx(model, tmp_path / "d.onnx", ExportConfig(exporter="dynamo"))
    assert res.exporter == "dynamo" and res.opset == 17
    assert _parity_of(model, tmp_path / "d.onnx").passed


def test_gate_failure_keeps_marked_artifact(tmp_path: Path, monkeypatch) -> None:
    def failing(*args, **kwargs) -> ParityReport:
        ref = np.array([[1.0, 0.0]])
        return compare(ref, ref + 1.0, "fp32")

    monkeypatch.setattr("compress.stages.export.check_parity", failing)
    out = tmp_path / "bad"
    with pytest.raises(QualityGateError, match="parity gate failed") as e:
        run_export(ModelRef("lenet5", weights="random"), out, ExportConfig(), MINI)
    assert e.value.artifact == str(out) and e.value.exit_code == 5
    card = read_card(out)
    assert (out / ONNX).is_file() and card.gates["parity"]["passed"] is False


def test_bad_onnx_files(tmp_path: Path) -> None:
    model = create_model("lenet5").eval()
    export_onnx(model, tmp_path / "ok.onnx", ExportConfig(dynamic_batch=False))
    data = (tmp_path / "ok.onnx").read_bytes()
    (tmp_path / "trunc.onnx").write_bytes(data[: len(data) // 3])
    (tmp_path / "text.onnx").write_text("<html>not a model</html>")
    for name, match in (
        ("trunc.onnx", "not a valid ONNX file|no graph inputs"),
        ("text.onnx", "not a valid ONNX file"),
        ("missing.onnx", "ONNX file not found"),
    ):
        with pytest.raises(InvalidInputError, match=match):
            create_session(tmp_path / name)
    proto = onnx.load(str(tmp_path / "ok.onnx"))
    proto.opset_import[0].version = onnx.defs.onnx_opset_version() + 5
    onnx.save(proto, str(tmp_path / "future.onnx"))
    with pytest.raises(UnsupportedError, match="opset"):
        create_session(tmp_path / "future.onnx")
    sess = create_session(tmp_path / "ok.onnx")
    with pytest.raises(InvalidInputError, match="input shape"):
        sess.run(np.zeros((1, 1, 32, 32), np.float32))
    with pytest.raises(UsageError, match="unknown runtime 'tensorflow'"):
        check_runtime("tensorflow")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(UnsupportedError, match="CUDA"):
            create_session(tmp_path / "ok.onnx", "ort-cuda")


def test_probe_isolation(tmp_path: Path) -> None:
    export_onnx(create_model("lenet5"), tmp_path / "ok.onnx")
    report = probe_in_subprocess(tmp_path / "ok.onnx")
    assert report.providers == ["CPUExecutionProvider"] and report.output_shape == [1, 10]
    with pytest.raises(InvalidInputError, match=r"crashed \(SIGSEGV\)"):
        interpret_probe("m.onnx", -11, "", "")
    err = json.dumps({"type": "UnsupportedError", "message": "no kernel", "hint": None})
    with pytest.raises(UnsupportedError, match="no kernel"):
        interpret_probe("m.onnx", 1, err + "\n", "")


def test_onnx_file_predictor_uses_metadata(tmp_path: Path) -> None:
    run_export(ModelRef("lenet5", weights="random"), tmp_path / "a", ExportConfig(), MINI)
    runner, card = onnx_artifact_runner(tmp_path / "a" / ONNX)
    assert card.kind == "onnx" and card.model_spec.input_size == 28
    assert runner.predict(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    export_onnx(create_model("lenet5"), tmp_path / "bare.onnx")
    with pytest.raises(InvalidInputError, match="metadata"):
        onnx_artifact_runner(tmp_path / "bare.onnx")


def test_cli_export_and_errors(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    r = runner.invoke(
        app,
        [
            "export",
            "-m",
            "lenet5",
            "--weights",
            "random",
            "--out",
            str(out),
            "--static",
            "--json",
            str(tmp_path / "s.json"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "parity passed" in r.output
    assert json.loads((tmp_path / "s.json").read_text())["export"]["dynamic_batch"] is False
    again = runner.invoke(app, ["export", "-m", "lenet5", "--out", str(out)])
    assert again.exit_code == 2 and "exists" in again.output
    (tmp_path / "t.onnx").write_bytes(b"\x08\x07garbage")
    bad = runner.invoke(app, ["bench", "-m", str(tmp_path / "t.onnx")])
    assert bad.exit_code == 3 and "Traceback" not in bad.output
    onx = runner.invoke(app, ["export", "-m", str(out), "--out", str(tmp_path / "o2")])
    assert onx.exit_code == 3 and "ONNX artifact" in onx.output
    exp = runner.invoke(
        app, ["export", "-m", "lenet5", "--out", str(tmp_path / "x"), "--exporter", "jit"]
    )
    assert exp.exit_code == 2
