"""One timing loop and one session builder: compress.export.bench.timing / compress.export.runtimes.session, used everywhere.

A fake clock in `compress.export.bench.timing` makes every timed call take exactly 125 ms; `compress bench`,
pruning's latency target, `measure_latency` and the quantizer's `ortrun.latencies` must all
report exactly that, which they can only do if they all time through `compress.export.bench.timing`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from compress.export.bench import timing
from compress.export.bench.measure import BenchConfig, BenchModel, benchmark
from compress.export.bench.timing import Timings, time_calls, time_interleaved
from compress.export.runtimes.runner import create_session
from compress.export.runtimes.session import open_session
from compress.models.errors import InvalidInputError, UsageError
from compress.models.zoo.registry import create_model
from compress.pruning.latency import LatencyConfig, measure_latency, onnx_bytes
from compress.pruning.prune import PruneConfig, prune
from compress.quantization import ortrun

STEP_S = 0.125  # exact in binary, so fake durations come out exactly 125.0 ms


class FakeClock:
    """Each read advances by `step` seconds: a timed call (two reads) lasts exactly `step`."""

    def __init__(self, step: float = STEP_S) -> None:
        self.t = 0.0
        self.step = step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(timing, "perf_counter", clock)
    return clock


@pytest.fixture(scope="module")
def lenet_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("timing") / "lenet.onnx"
    path.write_bytes(onnx_bytes(create_model("lenet5"), torch.zeros(1, 1, 28, 28)))
    return path


def test_runs_stop_at_max_runs_after_warmup() -> None:
    calls: list[int] = []
    t = time_calls(lambda: calls.append(1), warmup=2, max_runs=4)
    assert len(calls) == 6 and t.runs == 4 and len(t.ms) == 4


def test_budget_stops_after_min_runs(fake_clock: FakeClock) -> None:
    # 3 clock reads per run (two timed, one budget check) of 0.125 s: 1 s ~ 3 runs, min 5.
    assert time_calls(lambda: None, warmup=0, min_runs=5, budget_s=1.0).runs == 5
    assert time_calls(lambda: None, warmup=0, min_runs=1, budget_s=1.0).runs == 3
    assert time_calls(lambda: None, warmup=0, max_runs=2, budget_s=100.0).runs == 2


def test_interleaved_calls_take_turns() -> None:
    order: list[str] = []
    fns = [lambda: order.append("a"), lambda: order.append("b")]
    a, b = time_interleaved(fns, warmup=0, max_runs=3)
    assert order == ["a", "b"] * 3 and a.runs == b.runs == 3


def test_statistics_are_numpy_percentiles() -> None:
    t = Timings((4.0, 1.0, 3.0, 2.0))
    assert t.median_ms == 2.5 and t.min_ms == 1.0 and t.max_ms == 4.0 and t.mean_ms == 2.5
    assert t.percentile(90) == pytest.approx(float(np.percentile([1, 2, 3, 4], 90)))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"max_runs": 0}, "runs >= 1"),
        ({"warmup": -1, "max_runs": 1}, "warm-up >= 0"),
        ({}, "a number of runs or a time budget"),
    ],
)
def test_bad_timing_arguments_are_usage_errors(kw: dict[str, int], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        time_calls(lambda: None, **kw)


def test_bench_pruning_and_quantizer_share_the_timing_loop(
    fake_clock: FakeClock, lenet_onnx: Path
) -> None:
    ms = STEP_S * 1e3
    model = create_model("lenet5")

    lat = measure_latency(model, LatencyConfig(warmup=1, runs=7))
    assert (lat.ort_ms, lat.torch_ms, lat.runs) == (ms, ms, 7)

    res = prune(create_model("lenet5"), PruneConfig(target_latency_ms=2 * ms))
    assert res.after == res.before and res.latency_trace[0]["ort_ms"] == ms

    bm = BenchModel("lenet", model.spec, torch_model=model, onnx_path=str(lenet_onnx))
    cfg = BenchConfig(runtimes=("torch", "ort-cpu"), batch_sizes=(1,), warmup=1, iters=7)
    report = benchmark([bm], cfg)
    assert {(r.runtime, r.p50_ms, r.iters) for r in report.results} == {
        ("torch", ms, 7),
        ("ort-cpu", ms, 7),
    }

    sample = np.zeros((2, 1, 28, 28), np.float32)
    assert ortrun.latencies([lenet_onnx], sample, (1,), warmup=1, runs=7) == [{1: ms}]


def test_every_session_gets_the_same_options(lenet_onnx: Path) -> None:
    sessions = [
        open_session(lenet_onnx, 1),
        open_session(lenet_onnx.read_bytes(), 1),
        ortrun.session(lenet_onnx, 1),
        create_session(lenet_onnx, "ort-cpu", 1).session,
    ]
    for s in sessions:
        so = s.get_session_options()
        assert (so.intra_op_num_threads, so.inter_op_num_threads) == (1, 1)
        assert so.log_severity_level == 3 and s.get_providers() == ["CPUExecutionProvider"]


def test_unloadable_model_is_a_typed_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(InvalidInputError, match="not a valid ONNX file"):
        ortrun.session(bad)
    with pytest.raises(InvalidInputError, match="in-memory ONNX graph"):
        open_session(b"garbage")
