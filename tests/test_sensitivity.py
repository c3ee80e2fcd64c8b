"""Pruning sensitivity: per-layer trials, the report files, and `prune --from-sensitivity`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from compress.cli.app import app
from compress.models.artifacts.artifact import load_model
from compress.models.errors import InvalidInputError, UsageError
from compress.models.zoo.registry import create_model
from compress.pruning.config import load_report, ratios_from_sensitivity
from compress.pruning.sensitivity import SensitivityConfig, analyze, markdown, write_report

runner = CliRunner()
RATIOS = (0.25, 0.5, 0.75)


def test_analyze_prunes_each_layer_alone(tmp_path):
    m = create_model("lenet5")
    before = {k: v.shape for k, v in m.state_dict().items()}
    seen = []

    def score(model):
        seen.append(sum(p.numel() for p in model.parameters()))
        return 0.5

    res = analyze(m, SensitivityConfig(ratios=[0.5, 0.25], latency=False), score, model_name="x")
    assert {k: v.shape for k, v in m.state_dict().items()} == before  # the input is untouched
    assert [layer.name for layer in res.layers] == ["fc2", "fc1", "conv2", "conv1"]
    conv1 = res.layers[-1]
    assert conv1.channels == 6 and [t.ratio for t in conv1.trials] == [0.25, 0.5]
    assert 0 < conv1.trials[0].macs_saved < conv1.trials[1].macs_saved < 1
    assert 0.2 < conv1.macs_share < 0.35  # conv1 is 117,600 of 416,520 MACs
    assert all(t.drop == 0.0 for layer in res.layers for t in layer.trials)
    assert len(seen) == 1 + 4 * 2 and max(seen[1:]) < seen[0]
    write_report(res, tmp_path)
    md = (tmp_path / "sensitivity.md").read_text()
    assert "| conv1 | 6 |" in md and "ratio 0.25" in md
    assert (tmp_path / "sensitivity.png").stat().st_size > 5000
    assert load_report(tmp_path)["layers"][0]["name"] == "fc2"


def test_latency_is_measured_per_trial():
    res = analyze(create_model("lenet5"), SensitivityConfig(ratios=[0.5]), None)
    assert res.base_latency_ms and res.base_latency_ms > 0
    assert all(t.latency_ms and t.latency_ms > 0 for layer in res.layers for t in layer.trials)
    assert "-" in markdown(res)  # no accuracy without a scorer


def report(drops):
    return {
        "base_top1": 0.9,
        "layers": [
            {
                "name": n,
                "trials": [{"ratio": r, "drop": d} for r, d in zip(RATIOS, ds, strict=True)],
            }
            for n, ds in drops.items()
        ],
    }


def test_ratios_from_sensitivity_takes_largest_ratio_within_budget():
    r = report({"a": [0.0, 0.005, 0.05], "b": [0.02, 0.03, 0.1], "c": [0.001, 0.2, 0.001]})
    assert ratios_from_sensitivity(r, 0.01) == {"a": 0.5, "c": 0.75}
    with pytest.raises(UsageError, match="no layer can be pruned"):
        ratios_from_sensitivity(report({"b": [0.02, 0.03, 0.1]}), 0.01)
    with pytest.raises(UsageError, match="untrained"):
        ratios_from_sensitivity({**r, "base_top1": None}, 0.01)


def test_load_report_rejects_other_files(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(InvalidInputError, match="not a sensitivity report"):
        load_report(tmp_path / "x.json")


def test_cli_sensitivity_then_prune_from_it(trained_lenet, tmp_path):
    sens = tmp_path / "sens"
    r = runner.invoke(
        app,
        [
            *("sensitivity", "--model", str(trained_lenet), "--ratios", "0.5", "--no-latency"),
            *("--val-limit", "200", "--out", str(sens)),
        ],
    )
    assert r.exit_code == 0, r.output
    data = json.loads((sens / "sensitivity.json").read_text())
    assert 0 < data["base_top1"] <= 1 and len(data["layers"]) == 4
    out = tmp_path / "p"
    r = runner.invoke(
        app,
        [
            *("prune", "--model", str(trained_lenet), "--from-sensitivity", str(sens)),
            *("--max-drop", "100", "--no-latency", "--out", str(out)),
        ],
    )
    assert r.exit_code == 0, r.output
    model, card = load_model(out)
    assert card.history[-1]["config"]["layer_ratios"] == {
        "fc2": 0.5,
        "fc1": 0.5,
        "conv2": 0.5,
        "conv1": 0.5,
    }
    assert model.conv2.out_channels == 8


def test_cli_sensitivity_bad_ratios(tmp_path):
    r = runner.invoke(
        app,
        [
            *("sensitivity", "--model", "lenet5", "--weights", "random"),
            *("--ratios", "0.5,1.5", "--out", str(tmp_path / "s")),
        ],
    )
    assert r.exit_code == 2 and "--ratios must be in (0, 1)" in r.output
