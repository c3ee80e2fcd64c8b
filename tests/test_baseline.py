"""Speed-ups against the fastest dense baseline and onnxruntime fp32 (compress.export.bench.baseline)."""

from __future__ import annotations

from types import SimpleNamespace

from compress.export.bench.baseline import (
    FASTEST_DENSE,
    ORT_FP32,
    baseline_lines,
    dense_labels,
    find_baselines,
    is_dense,
    speedups,
    times,
)


def case(model, runtime, precision, bs, p50, **kw):
    return {"model": model, "runtime": runtime, "precision": precision, "batch_size": bs,
            "p50_ms": p50, **kw}  # fmt: skip


# The ResNet-50 table, shaped as bench results: a runtime nobody wrote code for
# ("openvino") counts as soon as its cases are in the results.
CASES = [
    case("dense", "ort-cpu", "fp32", 1, 45.0),
    case("dense", "openvino", "fp32", 1, 18.5, effective_precision="bf16"),
    case("dense", "torch", "fp32", 1, 80.7),
    case("dense", "torch-compile", "bf16", 1, 47.6),
    case("dense+int8", "ort-cpu", "int8", 1, 16.6),
    case("pruned+int8", "openvino", "int8", 1, 4.3),
    case("pruned+int8", "ort-cpu", "int8", 1, 5.9),
    case("dense", "ort-cpu", "fp32", 32, 900.0),
]


def test_fastest_dense_is_any_runtime_and_precision_and_ort_fp32_is_labelled_apart():
    base = find_baselines(CASES, {"dense"})
    fast, ort = base[1][FASTEST_DENSE], base[1][ORT_FP32]
    assert (fast.runtime, fast.precision, fast.p50_ms) == ("openvino", "bf16", 18.5)
    assert (ort.runtime, ort.precision, ort.p50_ms) == ("ort-cpu", "fp32", 45.0)
    up = speedups(CASES[5], base)
    assert up[FASTEST_DENSE] == round(18.5 / 4.3, 3) and up[ORT_FP32] == round(45 / 4.3, 3)
    assert base[32][FASTEST_DENSE].p50_ms == 900.0  # per batch size


def test_quantized_pruned_fallen_back_and_gate_failing_cases_never_count_as_baseline():
    cases = [
        *CASES,
        case("dense", "ort-cuda", "fp32", 1, 1.0, fallback=True),
        case("dense", "openvino", "bf16", 1, 2.0, gate_passed=False),
        case("dense", "ort-cpu", "int8", 1, 3.0),
        case("pruned", "ort-cpu", "fp32", 1, 9.0),
    ]
    assert find_baselines(cases, {"dense"})[1][FASTEST_DENSE].p50_ms == 18.5
    strict = find_baselines(cases, {"dense"}, passes=lambda c: c["precision"] == "fp32")
    assert strict[1][FASTEST_DENSE].runtime == "openvino"  # asked fp32; ran bf16 on its own
    assert strict[1][FASTEST_DENSE].precision == "bf16"


def test_no_ort_case_says_so_and_a_shared_baseline_reads_as_one_line():
    only = find_baselines([case("d", "torch", "fp32", 1, 2.0)], {"d"})
    assert ORT_FP32 not in only[1] and speedups(case("d", "torch", "fp32", 1, 1.0), only) == {
        FASTEST_DENSE: 2.0,
        ORT_FP32: None,
    }
    assert "no ort-cpu fp32 case was measured" in baseline_lines(only)[1]
    same = find_baselines([case("d", "ort-cpu", "fp32", 1, 2.0)], {"d"})
    assert baseline_lines(same) == [
        "batch 1: fastest dense = ort-cpu fp32 baseline = d on ort-cpu fp32, p50 2.000 ms."
    ]


def test_dense_from_the_card_lineage_or_the_first_model():
    card = SimpleNamespace(precision="fp32", history=[{"stage": "train"}])
    assert is_dense(card) is True and is_dense(None) is None
    assert is_dense(SimpleNamespace(precision="fp32", history=[{"stage": "prune"}])) is False
    assert is_dense(SimpleNamespace(precision="int8", history=[])) is False
    models = [{"label": "a", "dense": None}, {"label": "b", "dense": None}]
    assert dense_labels(models) == {"a"}  # nothing known: the first (reference) model
    assert dense_labels([{"label": "p", "dense": False}, {"label": "z", "dense": None}]) == set()
    assert dense_labels([{"label": "a", "dense": False}, {"label": "b", "dense": True}]) == {"b"}


def test_times_keeps_small_ratios_readable():
    assert [times(x) for x in (None, 12.34, 1.046, 0.0123)] == ["-", "12.3x", "1.05x", "0.012x"]


def test_bench_terminal_table_reads_at_80_columns():
    import io

    from rich.console import Console

    from compress.export.bench.report import terminal_table
    from compress.export.bench.results import BenchReport, CaseResult

    def row(model: str, runtime: str, precision: str, bs: int, p50: float) -> CaseResult:
        return CaseResult(model, runtime, bs, [], False, 2, 10, p50, p50, p50, p50, 0.0, p50,
                          p50, bs / p50 * 1e3, 400.0, 0.1, None, 250_000, 0.0, precision,
                          None)  # fmt: skip

    results = [
        row("01-train", "ort-cpu", "fp32", 32, 0.36),
        row("01-train", "torch", "fp32", 32, 45.76),
        row("04-quantize", "ort-cpu", "int8", 32, 1.11),
    ]
    report = BenchReport({}, {}, [{"label": "01-train", "dense": True}], results)
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(terminal_table(report, 80))
    text = out.getvalue()
    assert "…" not in text and "04-quantize" in text and "0.008x" in text
    assert "p99 ms" not in text and max(len(line) for line in text.splitlines()) <= 80
