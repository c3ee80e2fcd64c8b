"""Benchmark: JSON schema, every output format, ONNX inputs, static batch, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from compress.cli.app import app
from compress.export.bench.measure import BenchConfig, BenchModel, benchmark
from compress.export.bench.report import table_rows, to_markdown, write_reports
from compress.export.bench.results import SCHEMA
from compress.export.onnx.convert import ExportConfig, export_onnx
from compress.models.artifacts.artifact import new_card, save_model
from compress.models.data.datasets import DataConfig
from compress.models.errors import InvalidInputError, UsageError
from compress.models.zoo.registry import create_model
from compress.stages.bench import run_bench
from compress.stages.common import ModelRef
from compress.stages.export import run_export
from tests.conftest import FASHION_MINI

MINI = DataConfig(dataset="fashion-mnist", data_dir=str(FASHION_MINI))
FAST = {"warmup": 1, "iters": 3}
RESULT_FIELDS = {
    "model": str,
    "runtime": str,
    "batch_size": int,
    "providers": list,
    "fallback": bool,
    "threads": int,
    "iters": int,
    "p50_ms": float,
    "p90_ms": float,
    "p99_ms": float,
    "mean_ms": float,
    "std_ms": float,
    "min_ms": float,
    "max_ms": float,
    "throughput": float,
    "session_seconds": float,
    "precision": str,
    "input": str,
}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 'trained' PyTorch LeNet-5 artifact (accuracy in its card) and its ONNX export."""
    root = tmp_path_factory.mktemp("bench")
    model = create_model("lenet5")
    card = new_card(model, trained=False)
    card.metrics = {"test": {"top1": 0.9}}
    save_model(model, root / "pt", card)
    run_export(ModelRef(str(root / "pt")), root / "ox", ExportConfig(parity_samples=4), MINI)
    return {"pt": root / "pt", "ox": root / "ox"}


def test_json_schema_and_reports(artifacts: dict[str, Path], tmp_path: Path) -> None:
    calls: list[tuple[int, int, str]] = []
    refs = [ModelRef("lenet5", weights="random"), ModelRef(str(artifacts["ox"]))]
    cfg = BenchConfig(runtimes=("torch", "ort-cpu"), batch_sizes=(1, 2), threads=1, **FAST)
    report = run_bench(refs, cfg, progress=lambda d, t, w: calls.append((d, t, w)))
    d = json.loads(json.dumps(report.to_dict()))  # JSON-serializable as is
    assert d["schema"] == SCHEMA and "synthetic" in d["input"]
    env = d["environment"]
    assert {"cpu", "isa", "threads", "libraries", "gpu", "ort_providers"} <= set(env)
    assert {"avx2", "avx512", "avx512_vnni", "amx", "neon"} <= set(env["isa"])
    assert env["threads"] == 1 and "onnxruntime" in env["libraries"]
    # lenet5 on torch + ort-cpu, the ONNX artifact on ort-cpu only: 3 pairs x 2 batch sizes.
    assert len(d["results"]) == 6
    assert any("torch skipped" in n for n in d["notes"])
    for r in d["results"]:
        for key, typ in RESULT_FIELDS.items():
            assert isinstance(r[key], typ), (key, r[key])
        assert r["iters"] == 3 and r["input"] == "synthetic"
        assert r["min_ms"] <= r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["throughput"] > 0 and r["size_bytes"] > 100_000
        assert r["peak_rss_mb"] > 10
        assert r["speedup_vs_first"] is not None
    ort = [r for r in d["results"] if r["runtime"] == "ort-cpu"]
    assert all(r["providers"] == ["CPUExecutionProvider"] and not r["fallback"] for r in ort)
    lenet_ort = next(r for r in ort if r["model"] == "lenet5")
    assert lenet_ort["speedup_vs_torch"] > 0
    assert calls[-1][0] == calls[-1][1] == 6
    paths = write_reports(
        report,
        json_path=tmp_path / "b.json",
        csv_path=tmp_path / "b.csv",
        md_path=tmp_path / "b.md",
        plot_path=tmp_path / "b.png",
    )
    written = json.loads((tmp_path / "b.json").read_text())
    assert written["schema"] == SCHEMA and set(written["baselines"]) == {"1", "2"}
    assert all(r["speedup"]["fastest dense"] > 0 for r in written["results"])
    assert all(r["speedup"]["ort-cpu fp32"] > 0 for r in written["results"])
    rows = list(csv.DictReader((tmp_path / "b.csv").open()))
    assert len(rows) == 6 and rows[0]["p50_ms"]
    md = (tmp_path / "b.md").read_text()
    assert "| lenet5 | torch | 1 |" in md and "synthetic" in md
    assert "vs fastest dense" in md and "batch 1: fastest dense" in md
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    # The ONNX artifact's card has an accuracy: the accuracy-vs-latency plot is written too.
    assert tmp_path / "b-accuracy.png" in paths


def test_torch_artifact_accuracy_and_static_batch(
    artifacts: dict[str, Path], tmp_path: Path
) -> None:
    model = create_model("lenet5")
    export_onnx(model, tmp_path / "s.onnx", ExportConfig(dynamic_batch=False))
    cfg = BenchConfig(runtimes=("ort-cpu",), batch_sizes=(1, 4), **FAST)
    report = run_bench([ModelRef(str(artifacts["pt"])), ModelRef(str(tmp_path / "s.onnx"))], cfg)
    got = {(r.model, r.batch_size) for r in report.results}
    assert got == {("pt", 1), ("pt", 4), ("s.onnx", 1)}
    assert any("static batch 1" in n.text for n in report.notes)
    assert report.results[0].accuracy == 0.9
    assert len(table_rows(report)) == 3 and "s.onnx" in to_markdown(report)


def test_benchmark_library_with_in_memory_model() -> None:
    m = create_model("lenet5")
    bm = BenchModel(label="a", spec=m.spec, torch_model=m)
    report = benchmark([bm], BenchConfig(runtimes=("ort-cpu",), batch_sizes=(2,), seconds=0.05))
    r = report.results[0]
    assert r.iters >= 5 and r.size_bytes and r.size_bytes > 100_000  # min_iters, exported size


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"runtimes": ("tflite",)}, "unknown runtime 'tflite'"),
        ({"batch_sizes": (0,)}, "--batch-sizes must be >= 1"),
        ({"iters": 3, "seconds": 1.0}, "--iters or --seconds, not both"),
        ({"threads": 0}, "--threads must be >= 1"),
        ({"runtimes": ()}, "at least one --runtime"),
    ],
)
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        BenchConfig(**kwargs)


def test_onnx_shape_mismatch(tmp_path: Path) -> None:
    export_onnx(create_model("lenet5"), tmp_path / "m.onnx")
    cfg = BenchConfig(runtimes=("ort-cpu",), batch_sizes=(1,), **FAST)
    with pytest.raises(InvalidInputError, match="shape mismatch"):
        run_bench([ModelRef(str(tmp_path / "m.onnx"), input_size=32)], cfg)


def test_cli_bench(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        app,
        [
            "bench",
            "-m",
            "lenet5",
            "--weights",
            "random",
            "-r",
            "torch",
            "-r",
            "ort-cpu",
            "--batch-sizes",
            "1,2",
            "--iters",
            "2",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--json",
            str(tmp_path / "b.json"),
            "--md",
            str(tmp_path / "b.md"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "synthetic" in r.output and "ort-cpu" in r.output
    d = json.loads((tmp_path / "b.json").read_text())
    assert {(x["runtime"], x["batch_size"]) for x in d["results"]} == {
        ("torch", 1),
        ("torch", 2),
        ("ort-cpu", 1),
        ("ort-cpu", 2),
    }
    bad = CliRunner().invoke(app, ["bench", "-m", "lenet5", "-r", "ort-nope"])
    assert bad.exit_code == 2 and "unknown runtime" in bad.output


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_runtimes_record_cuda_memory_and_providers() -> None:
    import onnxruntime as ort

    runtimes = ["torch-cuda"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        runtimes.append("ort-cuda")
    m = create_model("lenet5")
    bm = BenchModel(label="a", spec=m.spec, torch_model=m)
    report = benchmark([bm], BenchConfig(runtimes=tuple(runtimes), batch_sizes=(4,), **FAST))
    for r in report.results:
        assert r.cuda_mem_mb is not None and r.cuda_mem_mb > 0
        assert r.providers[0] in ("cuda", "CUDAExecutionProvider") and not r.fallback


def _blocks(calls: list[str]) -> list[tuple[str, int]]:
    """Runs of equal labels: [("a", 2), ("b", 2), ...]."""
    out: list[tuple[str, int]] = []
    for c in calls:
        if out and out[-1][0] == c:
            out[-1] = (c, out[-1][1] + 1)
        else:
            out.append((c, 1))
    return out


@pytest.mark.parametrize("rounds", [1, 3])
def test_rounds_interleave_cases_and_pool_their_timings(rounds: int) -> None:
    calls: list[str] = []
    models = []
    for label in ("a", "b"):
        m = create_model("lenet5").eval()
        m.register_forward_hook(lambda *_, label=label: calls.append(label))
        models.append(BenchModel(label=label, spec=m.spec, torch_model=m))
    cfg = BenchConfig(runtimes=("torch",), batch_sizes=(1,), warmup=0, iters=6, rounds=rounds)
    report = benchmark(models, cfg)
    # one block of 6/rounds calls per model per round, models taking turns
    assert _blocks(calls) == [(x, 6 // rounds) for _ in range(rounds) for x in ("a", "b")]
    assert [r.iters for r in report.results] == [6, 6]
    assert report.results[1].speedup_vs_first is not None
    assert report.config["rounds"] == rounds


def test_rounds_split_the_time_budget() -> None:
    cfg = BenchConfig(seconds=3.0, rounds=4, min_iters=5)
    one = cfg.slice()
    assert (one.seconds, one.rounds, one.min_iters) == (0.75, 1, 2)
    assert BenchConfig(rounds=3).slice().seconds == 1.0  # default 3 s per case
    assert BenchConfig(iters=10, rounds=3).slice().iters == 4


@pytest.mark.parametrize("kwargs", [{"rounds": 0}, {"iters": 2, "rounds": 3}])
def test_rounds_validation(kwargs: dict) -> None:
    with pytest.raises(UsageError, match="rounds"):
        BenchConfig(**kwargs)


@pytest.mark.parametrize(
    "load, threads, busy",
    [(0.9, 2, False), (2.4, 2, False), (2.6, 2, True), (1.6, 1, True), (3.0, 4, False)],
)
def test_busy_cpu_is_flagged(load: float, threads: int, busy: bool) -> None:
    from compress.export.environment import busy_note

    env = {"load_average": [load, 1.0, 1.0], "logical_cores": 2, "threads": threads}
    note = busy_note(env)
    assert (note is not None) == busy
    if busy:
        assert f"load average {load:.2f}" in note


def test_a_busy_bench_says_so_in_its_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    import compress.export.bench.measure as bench_mod
    from compress.pipeline.report import honesty_notes

    real = bench_mod.capture_environment

    def busy_env(threads: int) -> dict:
        return {**real(threads), "load_average": [threads + 3.0, 1.0, 1.0]}

    monkeypatch.setattr(bench_mod, "capture_environment", busy_env)
    m = create_model("lenet5")
    report = benchmark(
        [BenchModel(label="a", spec=m.spec, torch_model=m)],
        BenchConfig(runtimes=("torch",), batch_sizes=(1,), **FAST),
    )
    assert any("CPU was busy" in n.text for n in report.notes)
    assert "CPU was busy" in to_markdown(report)
    assert any("CPU was busy" in n for n in honesty_notes([], report.environment))


def test_report_notes_tell_slower_from_noise() -> None:
    from compress.pipeline.report import honesty_notes

    rows = [
        {"stage": "train", "speedup": {}},
        {"stage": "prune", "speedup": {"ort-cpu": {"1": 0.98, "32": 1.5}}},
        {"stage": "quantize", "speedup": {"ort-cpu": {"1": 0.54}}},
    ]
    notes = honesty_notes(rows)
    assert "prune is no faster than the baseline on ort-cpu at batch 1 (0.98x" in notes[1]
    assert notes[2] == "quantize is SLOWER than the baseline on ort-cpu at batch 1 (0.54x)."
    assert len(notes) == 3  # the 1.5x gain is not a note
