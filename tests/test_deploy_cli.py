"""What `compress deploy` and `compress bench` print (speed-ups, p50 batch, runtime cells), and
deploy's session seconds counting compiles made while measuring."""

from __future__ import annotations

import numpy as np

from compress.cli.deploy_cmd import speedup_line

SPEEDUP = {"batch_size": 1, "p50_ms": 0.045}


def test_a_slower_deploy_is_called_slower() -> None:
    sp = {"speedup": 0.44, "label": "vs the dense baseline", "baseline": "ort-cpu/fp32/1t"}
    line = speedup_line({**sp, "baseline_p50_ms": 0.02}, SPEEDUP)
    assert "0.44x" in line and "0.020 -> 0.045 ms" in line and "batch 1" in line
    assert "SLOWER than the baseline" in line


def test_a_faster_deploy_is_not_called_slower() -> None:
    sp = {"speedup": 2.0, "label": "vs x", "baseline": "ort-cpu/fp32/1t", "baseline_p50_ms": 0.09}
    assert "SLOWER" not in speedup_line(sp, SPEEDUP)


def test_compile_time_spent_while_measuring_counts_as_session_time() -> None:
    from dataclasses import dataclass, field

    from compress.export.bench.cases import BenchModel, Case
    from compress.models.zoo.registry import create_model
    from compress.stages.deploy_gate import Trial, time_trials

    @dataclass
    class Compiling:  # like torch-compile: the first call per shape compiles
        runtime: str = "torch-compile"
        providers: list[str] = field(default_factory=lambda: ["inductor cpu"])
        create_seconds: float = 0.5
        shapes: set[tuple[int, ...]] = field(default_factory=set)

        def run(self, x: np.ndarray) -> np.ndarray:
            if x.shape not in self.shapes:
                self.shapes.add(x.shape)
                self.create_seconds += 2.0
            return np.zeros((x.shape[0], 10), np.float32)

    spec = create_model("lenet5").spec  # type: ignore[attr-defined]
    t = Trial(Case(BenchModel("l5", spec), "torch-compile", "fp32", 1), runner=Compiling())
    t.create_seconds = 0.5  # as open_trials records it, before any compile
    time_trials([t], (1, 4), seconds=0.02, rounds=1, warmup=0)
    assert t.status == "ok" and t.create_seconds == 4.5  # two shapes compiled
    assert t.to_dict()["session_seconds"] == 4.5


def test_bench_table_names_every_precision_when_they_differ() -> None:
    import io

    from rich.console import Console

    from compress.export.bench.report import terminal_table
    from compress.export.bench.results import BenchReport, CaseResult

    def row(runtime: str, precision: str, p50: float) -> CaseResult:
        return CaseResult("l5", runtime, 1, [], False, 2, 10, p50, p50, p50, p50, 0.0, p50,
                          p50, 1 / p50 * 1e3, 400.0, 0.1, None, 250_000, 0.0, precision,
                          None)  # fmt: skip

    rows = [row("openvino", "fp32", 0.06), row("openvino", "bf16", 0.04)]
    report = BenchReport({}, {}, [{"label": "l5", "dense": True}], rows)
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(terminal_table(report, 80))
    text = out.getvalue()
    assert "openvino fp32" in text and "openvino bf16" in text  # each on one line


def test_the_p50_column_names_its_batch() -> None:
    from compress.cli.deploy_cmd import p50_column

    cands = [{"status": "skipped"}, {"latency": {"32": {"p50_ms": 1.0}, "1": {"p50_ms": 0.1}}}]
    assert p50_column(cands) == "p50 ms b32"
    assert p50_column([{"status": "failed", "latency": {}}]) == "p50 ms"
