"""OpenVINO and torch-compile runtimes, precision as a bench axis, and their refusals."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from compress.cli.app import app
from compress.export.bench.measure import (
    BenchConfig,
    BenchModel,
    benchmark,
    plan_cases,
    precisions_of,
)
from compress.export.onnx.convert import ExportConfig, export_onnx
from compress.export.runtimes import openvino_runtime
from compress.export.runtimes.precision import cpu_bf16, parse_precisions, refuse, unavailable
from compress.export.runtimes.probe import child_pythonpath
from compress.export.runtimes.runner import (
    RUNTIMES,
    check_runtime,
    create_session,
    onnx_runner,
    torch_runner,
)
from compress.export.runtimes.sigstack import current_sigaltstack
from compress.models.errors import UnsupportedError, UsageError
from compress.models.zoo.registry import create_model

NO_BF16 = frozenset({"avx2", "avx512f"})
WITH_BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"})
BF16_REASON = cpu_bf16()


@pytest.fixture(scope="module")
def lenet_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rt") / "lenet.onnx"
    export_onnx(create_model("lenet5").eval(), path, ExportConfig())
    return path


@pytest.fixture
def no_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend this CPU lacks native bf16, whatever it really has."""
    monkeypatch.setattr(
        "compress.export.runtimes.precision.cpu_bf16", lambda flags=None: cpu_bf16(NO_BF16)
    )


def test_registry_names_are_stable() -> None:
    assert {"torch", "ort-cpu", "openvino", "openvino-gpu", "torch-compile"} <= set(RUNTIMES)


# ----------------------------------------------------------------------------- precision


@pytest.mark.parametrize(
    ("runtime", "precision", "artifact", "flags", "reason"),
    [
        ("openvino", "fp32", "fp32", NO_BF16, None),
        ("openvino", "bf16", "fp32", WITH_BF16, None),
        ("openvino", "bf16", "fp32", NO_BF16, "no native bf16"),
        ("torch-compile", "bf16", "fp32", NO_BF16, "no native bf16"),
        ("ort-cpu", "bf16", "fp32", WITH_BF16, "no bf16 execution"),
        ("openvino", "fp16", "fp32", WITH_BF16, "GPU precision"),
        ("torch-cuda", "fp16", "fp32", NO_BF16, None),
        ("torch-cuda", "bf16", "fp32", NO_BF16, None),  # GPUs: no CPU flags needed
        ("ort-cpu", "int8", "fp32", NO_BF16, "int8 artifacts"),
        ("openvino", "int8", "int8", NO_BF16, None),
        ("openvino", "fp32", "int8", NO_BF16, "runs as int8"),
        ("torch", "int8", "int8", NO_BF16, "PyTorch runtimes"),
        ("ort-cpu", "fp16", "fp16", NO_BF16, None),  # an fp16 artifact runs as it is
        # int4 / mixed-width artifacts (`--weight-bits 4`, `--bits auto`) run as they are too
        ("ort-cpu", "mixed", "mixed", NO_BF16, None),
        ("ort-cpu", "int4", "int4", NO_BF16, None),
        ("torch", "mixed", "mixed", NO_BF16, "PyTorch runtimes"),
        ("ort-cpu", "fp32", "int4", NO_BF16, "runs as int4"),
    ],
)
def test_which_pairs_run_and_why_not(
    runtime: str, precision: str, artifact: str, flags: frozenset[str], reason: str | None
) -> None:
    got = unavailable(runtime, precision, artifact, flags)
    assert got == reason if reason is None else reason in (got or "")


def test_precision_parsing_and_refusal(no_bf16: None) -> None:
    assert parse_precisions("fp32, BF16,fp32") == ("fp32", "bf16")
    assert parse_precisions(None) is None
    with pytest.raises(UsageError, match="unknown precision"):
        parse_precisions("fp8")
    with pytest.raises(UnsupportedError, match="no native bf16") as e:
        refuse("openvino", "bf16")
    assert e.value.exit_code == 4
    refuse("ort-cpu", "mixed", "mixed")  # a mixed int4/int8 artifact runs as it is
    with pytest.raises(UsageError, match="unknown precision 'mixed'"):
        refuse("ort-cpu", "mixed")  # but "mixed" is no run-time precision of an fp32 model


# ----------------------------------------------------------------------------- openvino


def test_openvino_matches_onnxruntime_and_records_precision(lenet_onnx: Path) -> None:
    runner = onnx_runner(lenet_onnx, "openvino", threads=1, precision="fp32")
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    ref = create_session(lenet_onnx, "ort-cpu", 1).run(x)
    out = runner.run(x)
    assert out.shape == (3, 10) and np.allclose(out, ref, atol=1e-4)
    assert runner.effective_precision == "fp32" and runner.create_seconds > 0
    assert runner.providers == ["OpenVINO CPU (fp32)"] and runner.runtime == "openvino"


def test_openvino_leaves_the_threads_signal_stack_as_it_was(lenet_onnx: Path) -> None:
    """OpenVINO's CPU plugin installs its own sigaltstack while a compiled model lives."""
    before = current_sigaltstack()
    runner = onnx_runner(lenet_onnx, "openvino", threads=1, precision="fp32")
    runner.run(np.zeros((1, 1, 28, 28), np.float32))
    assert current_sigaltstack() == before
    del runner
    gc.collect()
    assert current_sigaltstack() == before


def test_a_python_signal_after_openvino_does_not_kill_the_process(lenet_onnx: Path) -> None:
    """Two compiled models released first-in first-out left the first one's unmapped stack
    installed; the next Python-handled signal (SIGCHLD from a DataLoader, SIGINT) then killed
    the process with SIGSEGV and no traceback. Run in a child: unfixed, it dies."""
    code = (
        "import faulthandler, os, signal; faulthandler.enable()\n"
        "from compress.export.runtimes.runner import onnx_runner\n"
        f"a = onnx_runner({str(lenet_onnx)!r}, 'openvino', threads=1, precision='fp32')\n"
        f"b = onnx_runner({str(lenet_onnx)!r}, 'openvino', threads=1, precision='fp32')\n"
        "del a\n"
        "del b\n"
        "signal.signal(signal.SIGUSR1, lambda *a: print('handled'))\n"
        "os.kill(os.getpid(), signal.SIGUSR1)\n"
    )
    env = {**os.environ, "PYTHONPATH": child_pythonpath()}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0 and "handled" in proc.stdout, (proc.returncode, proc.stderr[-2000:])


@pytest.mark.skipif(BF16_REASON is not None, reason=f"bf16: {BF16_REASON}")
def test_openvino_bf16_where_the_cpu_has_it(lenet_onnx: Path) -> None:
    runner = onnx_runner(lenet_onnx, "openvino", threads=1, precision="bf16")
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    ref = create_session(lenet_onnx, "ort-cpu", 1).run(x)
    assert runner.effective_precision == "bf16"
    assert np.allclose(runner.run(x), ref, atol=0.1)  # bf16: ~3 significant digits


def test_openvino_not_installed_names_the_install(
    monkeypatch: pytest.MonkeyPatch, lenet_onnx: Path
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(UnsupportedError, match="openvino") as e:
        check_runtime("openvino")
    assert e.value.exit_code == 4 and e.value.hint == "pip install openvino"
    res = CliRunner().invoke(app, ["bench", "-m", str(lenet_onnx), "-r", "openvino"])
    assert res.exit_code == 4 and "pip install openvino" in res.output


def test_openvino_device_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    class Core:
        available_devices = ("CPU",)

    monkeypatch.setattr(openvino_runtime, "ov_core", Core)
    with pytest.raises(UnsupportedError, match="no GPU device") as e:
        check_runtime("openvino-gpu")
    assert "intel-opencl-icd" in (e.value.hint or "")


def test_openvino_unreadable_op_is_named(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in ("x", "y")]
    node = helper.make_node("FooBar", ["x"], ["y"], domain="com.weird")
    model = helper.make_model(
        helper.make_graph([node], "g", [io[0]], [io[1]]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.weird", 1)],
    )
    onnx.save(model, tmp_path / "bad.onnx")
    with pytest.raises(UnsupportedError, match=r"OpenVINO could not read .*FooBar"):
        onnx_runner(tmp_path / "bad.onnx", "openvino")


# ----------------------------------------------------------------------------- bench axis


def test_bench_precision_axis_skips_with_reasons(no_bf16: None) -> None:
    m = create_model("lenet5")
    cfg = BenchConfig(
        runtimes=("torch", "ort-cpu", "openvino"),
        batch_sizes=(2,),
        precisions=("fp32", "bf16", "int8"),
        threads=1,
        warmup=1,
        iters=3,
    )
    report = benchmark([BenchModel(label="a", spec=m.spec, torch_model=m)], cfg)
    ran = {(r.runtime, r.precision) for r in report.results}
    assert ran == {("torch", "fp32"), ("ort-cpu", "fp32"), ("openvino", "fp32")}
    ov = next(r for r in report.results if r.runtime == "openvino")
    assert ov.effective_precision == "fp32" and ov.providers == ["OpenVINO CPU (fp32)"]
    skipped = {(s["runtime"], s["precision"]): s["reason"] for s in report.skipped}
    assert len(skipped) == 6 and "no native bf16" in skipped["openvino", "bf16"]
    assert "int8 artifacts" in skipped["torch", "int8"]
    assert report.to_dict()["skipped"] == report.skipped
    assert any("openvino skipped (bf16:" in n.text for n in report.notes)


def test_cli_bench_precision(lenet_onnx: Path, no_bf16: None) -> None:
    args = ["bench", "-m", str(lenet_onnx), "-r", "openvino", "-r", "ort-cpu"]
    res = CliRunner().invoke(
        app, [*args, "--precision", "fp32,bf16", "--batch-sizes", "1", "--iters", "2"]
    )
    assert res.exit_code == 0, res.output
    assert "openvino" in res.output and "no native bf16" in res.output
    bad = CliRunner().invoke(app, [*args, "--precision", "fp8"])
    assert bad.exit_code == 2 and "unknown precision" in bad.output


# ----------------------------------------------------------------------------- torch-compile


def test_torch_refuses_bf16_without_the_isa(no_bf16: None) -> None:
    with pytest.raises(UnsupportedError, match="no native bf16"):
        torch_runner(create_model("lenet5"), "torch-compile", "bf16")


@pytest.mark.slow
def test_torch_compile_matches_eager_and_reports_compile_time() -> None:
    model = create_model("lenet5").eval()
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    eager = torch_runner(model, "torch").run(x)
    runner = torch_runner(model, "torch-compile", example_shape=(2, 1, 28, 28))
    compiled_once = runner.create_seconds
    assert compiled_once > 0.5  # the compile itself, timed apart from any latency
    assert np.allclose(runner.run(x), eager, atol=1e-4)
    assert runner.create_seconds == compiled_once  # same shape: no recompilation
    assert list(runner.compile_seconds) == ["2x1x28x28"]  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- eval


MINI_ARGS = ["--dataset", "fashion-mnist", "--data-dir", "tests/data/fashion-mini"]


def test_eval_measures_accuracy_where_the_model_runs(trained_lenet: Path) -> None:
    from compress.models.data.datasets import DataConfig
    from compress.stages.common import ModelRef
    from compress.stages.evaluate import run_eval

    data = DataConfig(dataset="fashion-mnist", data_dir="tests/data/fashion-mini")
    ref = ModelRef(str(trained_lenet))
    torch_r = run_eval(ref, data, limit=128)
    ov = run_eval(ref, data, limit=128, runtime="openvino", precision="fp32", threads=1)
    assert torch_r.where.runtime == "torch" and ov.where.runtime == "openvino"
    assert ov.where.effective_precision == "fp32"
    assert ov.result.samples == torch_r.result.samples == 128
    assert abs(ov.result.top1 - torch_r.result.top1) <= 1 / 128  # same model, same data
    assert torch_r.result.top1 > 0.3  # trained: far above chance, so the comparison means something


def test_cli_eval_refuses_what_the_hardware_lacks(trained_lenet: Path, no_bf16: None) -> None:
    base = ["eval", "-m", str(trained_lenet), *MINI_ARGS, "--limit", "8"]
    res = CliRunner().invoke(app, [*base, "-r", "openvino", "--precision", "bf16"])
    assert res.exit_code == 4 and "no native bf16" in res.output
    res = CliRunner().invoke(app, [*base, "-r", "ort-cpu", "--precision", "bf16"])
    assert res.exit_code == 4 and "no bf16 execution" in res.output
    res = CliRunner().invoke(app, [*base, "-r", "tflite"])
    assert res.exit_code == 2 and "unknown runtime" in res.output


# ----------------------------------------------------------------------------- doctor


def test_doctor_names_the_fastest_runtime_and_why(lenet_onnx: Path, no_bf16: None) -> None:
    from compress.export.doctor.diagnose import diagnose

    d = diagnose(lenet_onnx, threads=1, isolate=False, rank=True)
    (f,) = d.by_code("fastest_runtime")
    best = d.ranking[0]
    assert {r.runtime for r in d.ranking} == {"ort-cpu", "openvino"}
    assert [r.p50_ms for r in d.ranking] == sorted(r.p50_ms for r in d.ranking)
    assert f.title.startswith(f"fastest here: {best.runtime} {best.precision}")
    assert "why:" in f.detail and "no native bf16" in f.detail  # the skipped pair, with reason
    assert not diagnose(lenet_onnx, isolate=False).by_code("fastest_runtime")  # opt-in


@pytest.mark.parametrize(
    ("best", "why"),
    [
        ({"runtime": "openvino", "precision": "fp32", "effective_precision": "bf16"}, "chose bf16"),
        ({"runtime": "openvino", "precision": "int8", "effective_precision": "fp32"}, "int8"),
        ({"runtime": "openvino", "precision": "fp32", "effective_precision": "fp32"}, "OpenVINO"),
    ],
)
def test_doctor_verdict_explains(best: dict, why: str) -> None:
    from compress.export.doctor.diagnosis import RuntimeTiming
    from compress.export.doctor.rank import verdict

    ort = RuntimeTiming("ort-cpu", best["precision"], "fp32", 3.0)
    f = verdict([RuntimeTiming(**best, p50_ms=1.0), ort], [], [])
    assert why in f.detail and "3.00x faster than onnxruntime" in f.title
    from compress.models.notes import Note

    failed = Note("m: FAILED on openvino fp32: boom", "error")
    empty = verdict([], [], [Note("m: exported"), failed])
    assert empty.severity == "warning" and empty.detail == failed.text


def test_bench_accepts_a_card_whose_top1_is_unknown() -> None:
    from types import SimpleNamespace

    m = create_model("lenet5")
    card = SimpleNamespace(metrics={"test": {"top1": None}, "val": {"top1": 0.5}}, precision="fp32")
    assert BenchModel(label="a", spec=m.spec, torch_model=m, card=card).accuracy == 0.5


def test_torch_compile_without_a_compiler_names_the_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(UnsupportedError, match="no C\\+\\+ compiler") as e:
        check_runtime("torch-compile")
    assert e.value.exit_code == 4 and "g++" in (e.value.hint or "")


def test_available_runtimes_lists_what_runs_here(monkeypatch: pytest.MonkeyPatch) -> None:
    from compress.export.runtimes.runner import available_runtimes

    here = available_runtimes()
    assert {"torch", "ort-cpu", "openvino"} <= set(here)
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert available_runtimes(("ort-cpu", "openvino")) == ["ort-cpu"]  # not installed: left out


def test_int8_artifact_on_openvino_says_what_ran(tmp_path: Path) -> None:
    from compress.models.data.datasets import synthetic_batch
    from compress.quantization.quantize import QuantizeConfig, quantize

    model = create_model("lenet5").eval()
    export_onnx(model, tmp_path / "f.onnx", ExportConfig())
    calib = synthetic_batch(model.spec, 16).numpy()
    cfg = QuantizeConfig(samples=16, max_drop=None, latency=False)
    quantize(tmp_path / "f.onnx", cfg, calib, tmp_path / "q.onnx")
    runner = onnx_runner(tmp_path / "q.onnx", "openvino", 1, None, "int8")
    assert runner.effective_precision == "int8 (fp32 float ops)"
    x = calib[:4]
    ref = create_session(tmp_path / "q.onnx", "ort-cpu", 1).run(x)
    out = runner.run(x)
    assert np.allclose(out, ref, atol=0.05 * np.abs(ref).max())  # same int8 graph, same answer


def test_bench_config_precisions_from_a_recipe_list() -> None:
    cfg = BenchConfig(precisions=["fp32", "bf16", "fp32"])  # type: ignore[arg-type]  # YAML list
    assert cfg.precisions == ("fp32", "bf16")
    with pytest.raises(UsageError, match="unknown precision"):
        BenchConfig(precisions=("fp64",))


def test_recipe_bench_stage_takes_runtimes_and_precisions() -> None:
    from compress.pipeline.recipe import parse_recipe
    from compress.pipeline.runner import plan

    text = (
        "model: lenet5\nstages:\n  - train: {epochs: 1}\n  - export: {}\n"
        "  - bench: {runtimes: [ort-cpu, openvino], precisions: [fp32, bf16]}\n"
    )
    opts = plan(parse_recipe(text))[2].config["bench"]
    assert list(opts.runtimes) == ["ort-cpu", "openvino"]
    assert list(opts.precisions) == ["fp32", "bf16"]


def test_a_precision_list_still_times_quantized_artifacts_at_their_own() -> None:
    from types import SimpleNamespace

    spec = create_model("lenet5").spec
    dense = BenchModel("dense", spec, onnx_path="d.onnx", card=SimpleNamespace(precision="fp32"))
    q4 = BenchModel("q4", spec, onnx_path="q.onnx", card=SimpleNamespace(precision="int4"))
    cfg = BenchConfig(runtimes=("ort-cpu",), precisions=("fp32", "bf16"))
    plan = plan_cases([dense, q4], cfg.runtimes, lambda m: precisions_of(m, cfg.precisions), (1,))
    assert [(c.model.label, c.precision) for c in plan.cases] == [("dense", "fp32"), ("q4", "int4")]
    assert [(s.model, s.precision) for s in plan.skipped] == [("dense", "bf16")]
