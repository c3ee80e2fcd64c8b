"""The pipeline report reads top-down: headline first, speed-ups vs both baselines, no JSON dump.

Built from hand-made stage records (no training), shaped as a run writes them: a bench stage
whose record holds a dense case on a runtime faster than onnxruntime (as OpenVINO bf16 is on
AMX CPUs), so the two baselines differ.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from compress.pipeline.report import stage_rows, write_report

ENV = {
    "cpu": "Test CPU",
    "arch": "x86_64",
    "logical_cores": 2,
    "physical_cores": 2,
    "threads": 2,
    "isa": {"avx2": True, "avx512": True, "amx": False},
    "int8_dot_product": True,
    "load_average": [0.5, 0.4, 0.3],
    "libraries": {"torch": "2.13.0", "onnxruntime": "1.32.0"},
    "gpu": None,
}


def _case(model: str, runtime: str, precision: str, bs: int, p50: float, **kw: Any) -> dict:
    return {
        "model": model,
        "runtime": runtime,
        "precision": precision,
        "batch_size": bs,
        "p50_ms": p50,
        "p90_ms": p50 * 1.2,
        "throughput": bs / p50 * 1e3,
        **kw,
    }


CASES = [
    _case("01-train", "ort-cpu", "fp32", 1, 45.0),
    _case("01-train", "openvino", "fp32", 1, 18.5, effective_precision="bf16"),
    _case("01-train", "torch", "fp32", 1, 80.0),
    _case("02-prune", "ort-cpu", "fp32", 1, 12.0),
    _case("03-quantize", "ort-cpu", "int8", 1, 5.9),
    _case("03-quantize", "openvino", "int8", 1, 4.3),
]


def make_records(tmp: Path, cases: list[dict], with_cases: bool = True) -> list[dict]:
    def model(stage: str, n: int, **kw: Any) -> dict:
        return {
            "stage": stage,
            "kind": stage,
            "folder": f"0{n}-{stage}",
            "artifact": str(tmp / f"0{n}-{stage}"),
            "seconds": 1.0,
            **kw,
        }

    bench: dict = {"environment": ENV}
    if with_cases:  # what the bench stage records (its bench.json is not read back)
        dense = {"01-train": True, "02-prune": False, "03-quantize": False}
        bench["models"] = [{"label": k, "dense": v} for k, v in dense.items()]
        bench["cases"] = cases
    latency: dict = {}
    for c in cases:
        latency.setdefault(c["model"], {}).setdefault(c["runtime"], {})[str(c["batch_size"])] = {
            "p50_ms": c["p50_ms"],
            "p90_ms": c["p90_ms"],
        }
    return [
        model(
            "train",
            1,
            model_kind="pytorch",
            precision="fp32",
            bytes=240_000,
            val_top1=0.910,
            test_top1=0.905,
            summary={"params": 61706},
        ),
        model(
            "prune",
            2,
            model_kind="pytorch",
            precision="fp32",
            bytes=60_000,
            val_top1=0.905,
            test_top1=0.900,
            summary={"after": {"params": 15000}},
        ),
        model(
            "quantize",
            3,
            model_kind="onnx",
            precision="int8",
            bytes=24_000,
            val_top1=0.903,
            test_top1=0.899,
            summary={},
        ),
        {
            "stage": "bench",
            "kind": "bench",
            "folder": "04-bench",
            "artifact": None,
            "files": [str(tmp / "04-bench" / "bench.json")],
            "summary": {"latency": latency, **bench},
        },
    ]


class _Sections(HTMLParser):
    """Top-level <section id=...> ids in order, plus every <pre>/<code> seen."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.body_children: list[str] = []
        self.depth = 0
        self.code = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("pre", "code"):
            self.code += 1
        if tag == "body":
            self.depth = 1
        elif self.depth:
            if self.depth == 1:
                self.body_children.append(tag)
                if tag == "section":
                    self.ids.append(dict(attrs).get("id") or "")
            if tag not in ("br", "img", "meta"):
                self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth > 1 and tag not in ("br", "img", "meta"):
            self.depth -= 1


def _report(tmp_path: Path, cases: list[dict] = CASES) -> tuple[dict, str]:
    result = SimpleNamespace(
        stages=make_records(tmp_path, cases),
        gates=[{"gate": "whole run", "max_drop": 1.0, "drop": 0.7, "passed": True}],
        seconds=12.0,
    )
    report = write_report(result, "tiny", tmp_path)
    doc = json.loads(report.paths["json"].read_text())
    assert report.headline.to_dict() == doc["headline"]  # the typed headline is what was written
    return doc, report.paths["html"].read_text()


def test_html_opens_with_the_headline_then_plots_and_ends_with_a_compact_environment(tmp_path):
    _, page = _report(tmp_path)
    parsed = _Sections()
    parsed.feed(page)
    assert parsed.body_children[0] == "section"
    assert parsed.ids == ["headline", "plots", "stages", "notes", "environment"]
    assert parsed.code == 0 and '"cpu"' not in page and "{" not in page.split("<body>")[1]
    head = page.split('<section id="plots">')[0]
    for text in (
        "buys",
        "10.00x smaller",
        "-0.70 pt",
        "-0.60 pt",
        "vs fastest dense",
        "vs ort-cpu fp32",
        "whole run",
        "passed",
    ):
        assert text in head, text
    env = page.split('<section id="environment">')[1]
    assert "<td>CPU</td><td>Test CPU (x86_64)</td>" in env and "avx2, avx512" in env


def test_speedups_are_against_the_fastest_dense_case_and_ort_fp32_labelled(tmp_path):
    doc, _ = _report(tmp_path)
    base = doc["baselines"]["1"]
    assert base["fastest dense"]["where"] == "01-train on openvino bf16"
    assert base["ort-cpu fp32"]["where"] == "01-train on ort-cpu fp32"
    final = doc["rows"][-1]["speedups"]
    assert final["openvino int8"]["1"]["fastest dense"] == round(18.5 / 4.3, 3)
    assert final["openvino int8"]["1"]["ort-cpu fp32"] == round(45.0 / 4.3, 3)
    h = doc["headline"]
    assert h["accuracy"]["val"]["delta_pt"] == -0.7 and h["size_ratio"] == 10.0
    assert h["verdict"] == (
        "pruning + int8 buys 10.0x size and 4.30x speed on this CPU (Test CPU): at best 4.30x "
        "the fastest dense case (openvino int8, batch 1), for -0.60 pt test top-1."
    )


def test_verdict_says_size_not_speed_when_the_final_artifact_is_slower(tmp_path):
    slow = [c for c in CASES if c["model"] != "03-quantize"]
    slow.append(_case("03-quantize", "ort-cpu", "int8", 1, 40.0))
    doc, _ = _report(tmp_path, slow)
    assert "buys 10.0x size, not speed, on this CPU" in doc["headline"]["verdict"]
    assert (
        "at best 0.46x the fastest dense case (ort-cpu int8, batch 1)"
        in (doc["headline"]["verdict"])
    )


@pytest.mark.parametrize("with_cases", [True, False])
def test_rows_from_the_bench_cases_or_the_latency_summary(tmp_path, with_cases):
    rows = stage_rows(make_records(tmp_path, CASES, with_cases=with_cases))
    assert [r["stage"] for r in rows] == ["train", "prune", "quantize"]
    got = rows[1]["speedups"]["ort-cpu fp32"]["1"]["fastest dense"]
    assert got == round(18.5 / 12.0, 3)  # openvino's dense case is the fastest either way
    assert rows[1]["speedup"]["ort-cpu"]["1"] == pytest.approx(45.0 / 12.0)


def test_a_deploy_stage_shows_in_the_headline(tmp_path):
    records = make_records(tmp_path, CASES)
    records.append(
        {"stage": "deploy", "kind": "deploy", "folder": "05-deploy", "artifact": None,
         "summary": {"deployed": str(tmp_path / "05-deploy"), "runtime": "openvino",
                     "precision": "int8", "threads": 2, "val_top1": 0.9,
                     "speedup": {"batch_size": 1, "p50_ms": 4.1,
                                 "vs_fastest_dense": {"speedup": 4.512, "baseline": "openvino bf16"},
                                 "vs_ort_fp32": None}}}
    )  # fmt: skip
    result = SimpleNamespace(stages=records, gates=[], seconds=1.0)
    page = write_report(result, "tiny", tmp_path).paths["html"].read_text()
    head = page.split('<section id="plots">')[0]
    assert "<td>deployed</td><td>openvino int8, 2 threads; p50 4.1 ms at batch 1; 4.51x vs" in head


def test_without_a_bench_stage_the_verdict_says_speed_was_not_measured(tmp_path):
    records = [r for r in make_records(tmp_path, CASES) if r["kind"] != "bench"]
    result = SimpleNamespace(stages=records, gates=[], seconds=1.0)
    doc = json.loads(write_report(result, "tiny", tmp_path).paths["json"].read_text())
    assert doc["headline"]["verdict"] == (
        "pruning + int8 buys 10.0x size; speed was not measured (no bench stage), "
        "for -0.60 pt test top-1."
    )
