"""Recipes end to end on the committed subset: every stage, resume, gates, report, tune."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compress.models.errors import QualityGateError
from compress.pipeline.recipe import parse_recipe
from compress.pipeline.runner import run_pipeline
from tests.conftest import FASHION_MINI, cli

FULL = f"""\
name: tiny
model: lenet5
data: {{data_dir: {FASHION_MINI}, batch_size: 64}}
max_drop: 90
stages:
  - train: {{epochs: 2, amp: "off"}}
  - prune: {{ratio: 0.25, latency: false, max_drop: 90}}
  - distill: {{epochs: 1, amp: "off"}}
  - quantize: {{method: ptq-static, samples: 40, max_drop: null, latency: false}}
  - bench: {{batch_sizes: [1], runtimes: [torch, ort-cpu], iters: 3, warmup: 1}}
"""


def test_whole_chain_runs_and_reports(tmp_path):
    from compress.pipeline.report import write_report

    result = run_pipeline(parse_recipe(FULL), tmp_path / "run")
    kinds = [r["kind"] for r in result.stages]
    assert kinds == ["train", "prune", "distill", "quantize", "bench"]
    by = {r["kind"]: r for r in result.stages}
    assert by["quantize"]["model_kind"] == "onnx" and by["quantize"]["precision"] == "int8"
    assert by["prune"]["bytes"] < by["train"]["bytes"]
    assert by["quantize"]["bytes"] < by["distill"]["bytes"]
    lat = by["bench"]["summary"]["latency"]
    assert set(lat) == {"01-train", "02-prune", "03-distill", "04-quantize"}
    assert lat["04-quantize"]["ort-cpu"]["1"]["p50_ms"] > 0
    report = write_report(result, "tiny", tmp_path / "run")
    paths = report.paths
    doc = json.loads(paths["json"].read_text())
    assert report.headline.to_dict() == doc["headline"]  # what the terminal prints
    assert [r["stage"] for r in report.rows] == [r["stage"] for r in doc["rows"]]
    assert [r["stage"] for r in doc["rows"]] == ["train", "prune", "distill", "quantize"]
    rows = doc["rows"]
    assert rows[1]["params"] < rows[0]["params"] and rows[1]["macs"] < rows[0]["macs"]
    assert rows[3]["params"] == rows[2]["params"]  # quantize keeps the architecture
    assert rows[3]["size_ratio"] > rows[2]["size_ratio"] > 1
    assert doc["gates"][-1]["passed"] is True
    html = paths["html"].read_text()
    assert "data:image/png;base64," in html and "quantize" in html
    assert html.index('id="headline"') < html.index('id="plots"') < html.index('id="environment"')
    base = doc["baselines"]["1"]  # the trained (dense) model, on whichever runtime was fastest
    assert base["fastest dense"]["model"] == "01-train" and base["ort-cpu fp32"]["p50_ms"] > 0
    assert rows[3]["speedups"]["ort-cpu int8"]["1"]["fastest dense"] > 0
    assert " buys " in doc["headline"]["verdict"] and doc["headline"]["final_stage"] == "quantize"
    for name in ("accuracy_latency.png", "size.png", "latency_runtime.png"):
        assert (tmp_path / "run" / name).stat().st_size > 1000


SHORT = f"""\
name: short
model: lenet5
data: {{data_dir: {FASHION_MINI}, batch_size: 64}}
stages:
  - train: {{epochs: 1, amp: "off"}}
  - export: {{parity_samples: 8}}
"""


def test_resume_skips_finished_stages_and_reruns_changed_ones(tmp_path, monkeypatch):
    import compress.stages.export as export_stage

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_stage, "run_export", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(parse_recipe(SHORT), tmp_path / "run")
    assert (tmp_path / "run" / "01-train" / "stage.json").is_file()
    assert not (tmp_path / "run" / "02-export").exists()
    monkeypatch.undo()
    r = run_pipeline(parse_recipe(SHORT), tmp_path / "run", resume=True)
    assert r.stages[0].get("resumed") is True and not r.stages[1].get("resumed")
    again = run_pipeline(parse_recipe(SHORT), tmp_path / "run", resume=True)
    assert all(s.get("resumed") for s in again.stages)
    changed = parse_recipe(SHORT, overrides=["train.lr=0.002"])
    r3 = run_pipeline(changed, tmp_path / "run", resume=True)
    assert not r3.stages[0].get("resumed") and not r3.stages[1].get("resumed")


ONE_STAGE = f"""\
name: one
model: lenet5
data: {{data_dir: {FASHION_MINI}, batch_size: 64, limit: 200}}
stages:
  - train: {{epochs: 1, amp: "off"}}
"""


def test_cli_and_api_resume_a_missing_folder_alike(tmp_path, monkeypatch, caplog):
    """`compress run --resume` is `compress.run_recipe(resume=True)`: a folder that does not
    exist yet is started afresh, with the same one-line warning, records and report."""
    import logging

    import compress
    import compress.api

    recipe = tmp_path / "r.yaml"
    recipe.write_text(ONE_STAGE)
    with caplog.at_level(logging.WARNING, logger="compress.pipeline.runner"):
        api = compress.run_recipe(recipe, tmp_path / "api", resume=True)
    assert "does not exist yet; starting the run from its first stage" in caplog.text
    calls: list[tuple] = []
    real = compress.api.run_recipe
    monkeypatch.setattr(
        compress.api, "run_recipe", lambda *a, **k: calls.append(a) or real(*a, **k)
    )
    r = cli("run", str(recipe), "--out", str(tmp_path / "cli"), "--resume")
    assert r.exit_code == 0, r.output
    assert len(calls) == 1 and calls[0][2].resume is True  # the CLI's RunConfig
    assert "does not exist yet; starting the run from its first stage" in " ".join(r.output.split())
    for out in ("api", "cli"):
        doc = json.loads((tmp_path / out / "report.json").read_text())
        assert [s["kind"] for s in doc["stages"]] == ["train"]
        assert not doc["stages"][0].get("resumed")
    assert api.report is not None and api.report.paths["json"] == tmp_path / "api" / "report.json"


def test_failed_gate_keeps_artifacts_and_exits_5(tmp_path):
    strict = SHORT.replace("stages:", "max_drop: -100\nstages:")
    with pytest.raises(QualityGateError, match="validation top-1 dropped") as e:
        run_pipeline(parse_recipe(strict), tmp_path / "run")
    assert e.value.exit_code == 5
    assert (tmp_path / "run" / "02-export" / "model.onnx").is_file()


TUNE = f"""\
name: tunetest
model: lenet5
data: {{data_dir: {FASHION_MINI}, batch_size: 64, limit: 200}}
stages:
  - train: {{epochs: 1, amp: "off"}}
  - bench: {{batch_sizes: [1], runtimes: [torch], iters: 3, warmup: 1}}
search:
  train.lr: {{low: 0.001, high: 0.01, log: true}}
"""


def _tune(recipe: Path, out: Path, db: str, trials: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "compress",
            "tune",
            str(recipe),
            "--out",
            str(out),
            "--trials",
            str(trials),
            "--storage",
            db,
            "--objectives",
            "accuracy,latency",
            "--json",
            str(out.with_suffix(".json")),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_tune_persists_and_a_second_process_resumes(tmp_path):
    recipe = tmp_path / "tune.yaml"
    recipe.write_text(TUNE)
    db = f"sqlite:///{tmp_path / 'study.db'}"
    first = _tune(recipe, tmp_path / "t", db, 1)
    assert first.returncode == 0, first.stderr[-2000:]
    second = _tune(recipe, tmp_path / "t", db, 2)
    assert second.returncode == 0, second.stderr[-2000:]
    out = json.loads((tmp_path / "t.json").read_text())
    assert out["trials"] == 2 and out["pareto"]
    best = Path(out["best_recipes"]["accuracy"])
    assert "lr:" in best.read_text() and "search" not in best.read_text()
    dry = subprocess.run(
        [
            sys.executable,
            "-m",
            "compress",
            "run",
            str(best),
            "--out",
            str(tmp_path / "x"),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stderr


def test_bad_storage_fails_before_training(tmp_path):
    recipe = tmp_path / "tune.yaml"
    recipe.write_text(TUNE)
    r = _tune(recipe, tmp_path / "t", "postgresql://nobody@127.0.0.1:1/x", 1)
    assert r.returncode == 2 and "cannot be opened" in r.stderr
    assert not (tmp_path / "t" / "trials").exists()


def test_a_non_main_rank_leaves_rank0_stages_and_records_to_rank_0(tmp_path, monkeypatch):
    """Under torchrun, rank 1 must not export, benchmark or write records into the shared
    folder: it takes rank 0's outcome instead (here: rank 1 simulated in one process)."""
    from compress.distributed import collectives
    from compress.models.artifacts.artifact import new_card, save_model
    from compress.models.zoo.registry import create_model
    from compress.pipeline.kinds import StageOutcome

    parent = tmp_path / "parent"
    save_model(create_model("lenet5"), parent, new_card(create_model("lenet5"), trained=True))
    recipe = parse_recipe(
        f"name: r\nmodel: {parent}\ndata: {{dataset: fashion-mnist, data_dir: {FASHION_MINI}}}\n"
        "stages:\n  - export: {}\n"
        "  - bench: {batch_sizes: [1], runtimes: [ort-cpu], iters: 2}\n"
    )
    received: list[object] = []

    def rank0_says(obj, src=0):  # what rank 0 broadcasts after it ran the step
        received.append(obj)
        return ("ok", StageOutcome(artifact=None, summary={"from": "rank 0"}))

    monkeypatch.setattr(collectives, "group_active", lambda: True)
    monkeypatch.setattr(collectives, "is_main", lambda: False)
    monkeypatch.setattr(collectives, "barrier", lambda: None)
    monkeypatch.setattr(collectives, "broadcast_object", rank0_says)
    out = tmp_path / "run"
    result = run_pipeline(recipe, out)
    assert [s["summary"] for s in result.stages] == [{"from": "rank 0"}] * 2
    assert len(received) == 5  # out-dir check, 2 stages, 2 records: all left to rank 0
    assert list(out.iterdir()) == []  # this rank wrote nothing


def test_stage_options_are_hashed_under_their_recipe_names():
    """A stage's options are keyed as a recipe spells them ("train", "prune"), in the
    --dry-run JSON and in the input hash; the data config is an input too."""
    from dataclasses import asdict

    from compress.models.data.datasets import DataConfig
    from compress.pipeline import runner as pipeline

    recipe = parse_recipe(
        "name: r\nmodel: lenet5\nstages:\n  - train: {epochs: 1}\n  - prune: {ratio: 0.5}\n"
        "  - distill: {epochs: 1, teacher: train}\n"
    )
    train, prune_st, distill = pipeline.plan(recipe)
    assert set(train.to_dict()["options"]) == {"train"}
    assert set(prune_st.to_dict()["options"]) == {"prune", "finetune"}
    assert set(distill.to_dict()["options"]) == {"distill", "train", "_extra"}
    data = DataConfig(dataset="fashion-mnist")
    payload = {
        "kind": "train",
        "options": {"train": asdict(train.config["train"])},
        "input": "lenet5",
        "data": asdict(data),
    }
    expected = pipeline.hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    assert pipeline.input_hash(train, "lenet5", data, {}) == expected
    reordered = DataConfig(dataset="fashion-mnist", order_seed=3)
    assert pipeline.input_hash(train, "lenet5", reordered, {}) != expected


def test_resume_of_an_older_record_says_which_stages_rerun(tmp_path, caplog):
    """A record written before the options were keyed by stage name hashes differently: its
    stage re-runs on --resume, and one warning says which and why (not silently)."""
    import logging

    from compress.pipeline.runner import RECORD, RECORD_FORMAT

    out = tmp_path / "run"
    first = run_pipeline(parse_recipe(ONE_STAGE), out)
    record = out / "01-train" / RECORD
    assert json.loads(record.read_text())["format"] == RECORD_FORMAT == 2
    with caplog.at_level(logging.WARNING, logger="compress.pipeline.runner"):
        same = run_pipeline(parse_recipe(ONE_STAGE), out, resume=True)
    assert same.stages[0].get("resumed") and "older compress" not in caplog.text
    older = {k: v for k, v in json.loads(record.read_text()).items() if k != "format"}
    record.write_text(json.dumps({**older, "input_hash": "a format-1 hash"}))
    with caplog.at_level(logging.WARNING, logger="compress.pipeline.runner"):
        again = run_pipeline(parse_recipe(ONE_STAGE), out, resume=True)
    assert not again.stages[0].get("resumed")
    warned = [r.getMessage() for r in caplog.records if "older compress" in r.getMessage()]
    assert warned == [
        "--resume: train re-runs: recorded by an older compress (run record format < 2), "
        "whose input hashes are computed differently"
    ]
    assert first.stages[0]["input_hash"] == again.stages[0]["input_hash"]


def test_api_dry_run_plans_and_runs_nothing(tmp_path):
    """`compress.run_recipe(dry_run=True)` is `compress run --dry-run`: the plan, no folder."""
    import compress

    recipe = tmp_path / "r.yaml"
    recipe.write_text(ONE_STAGE)
    r = compress.run_recipe(recipe, tmp_path / "out", dry_run=True)
    assert [s["kind"] for s in r.stages] == ["train"] and r.stages[0]["folder"] == "01-train"
    assert not (tmp_path / "out").exists()
